//! Action fees from nearcore's fee config (`RuntimeFeesConfig`): what sending and
//! executing each action costs, in gas.

use near_parameters::{ActionCosts, RuntimeFeesConfig};
use near_primitives::transaction::Action;

fn send(fees: &RuntimeFeesConfig, cost: ActionCosts, sir: bool) -> u64 {
    fees.fee(cost).send_fee(sir).gas.as_gas()
}

fn exec(fees: &RuntimeFeesConfig, cost: ActionCosts) -> u64 {
    fees.fee(cost).exec_fee().gas.as_gas()
}

/// A fee's base cost and `bytes` times its per-byte cost, by cost category, for send
/// (`Some(sir)`) or execution (`None`).
fn cost(
    fees: &RuntimeFeesConfig,
    base: ActionCosts,
    per_byte: Option<(ActionCosts, u64)>,
    side: Option<bool>,
) -> Vec<(ActionCosts, u64)> {
    let one = |c| match side {
        Some(sir) => send(fees, c, sir),
        None => exec(fees, c),
    };
    let mut parts = vec![(base, one(base))];
    if let Some((byte_cost, bytes)) = per_byte {
        parts.push((byte_cost, one(byte_cost).saturating_mul(bytes)));
    }
    parts
}

/// The bytes a function-call access key's method names are charged for.
fn method_name_bytes(names: &[String]) -> u64 {
    names.iter().map(|n| n.len() as u64 + 1).sum()
}

fn action_cost(fees: &RuntimeFeesConfig, action: &Action, side: Option<bool>) -> u64 {
    action_cost_parts(fees, action, side)
        .into_iter()
        .map(|(_, gas)| gas)
        .fold(0, u64::saturating_add)
}

fn action_cost_parts(
    fees: &RuntimeFeesConfig,
    action: &Action,
    side: Option<bool>,
) -> Vec<(ActionCosts, u64)> {
    use near_primitives::account::AccessKeyPermission;
    match action {
        Action::CreateAccount(_) => cost(fees, ActionCosts::create_account, None, side),
        Action::DeployContract(a) => cost(
            fees,
            ActionCosts::deploy_contract_base,
            Some((ActionCosts::deploy_contract_byte, a.code.len() as u64)),
            side,
        ),
        Action::FunctionCall(a) => cost(
            fees,
            ActionCosts::function_call_base,
            Some((
                ActionCosts::function_call_byte,
                (a.method_name.len() + a.args.len()) as u64,
            )),
            side,
        ),
        Action::Transfer(_) => cost(fees, ActionCosts::transfer, None, side),
        Action::Stake(_) => cost(fees, ActionCosts::stake, None, side),
        Action::AddKey(a) => match &a.access_key.permission {
            AccessKeyPermission::FunctionCall(p) => cost(
                fees,
                ActionCosts::add_function_call_key_base,
                Some((
                    ActionCosts::add_function_call_key_byte,
                    method_name_bytes(&p.method_names),
                )),
                side,
            ),
            _ => cost(fees, ActionCosts::add_full_access_key, None, side),
        },
        Action::DeleteKey(_) => cost(fees, ActionCosts::delete_key, None, side),
        Action::DeleteAccount(_) => cost(fees, ActionCosts::delete_account, None, side),
        // Not supported by the devnet; validation refuses them before fees matter.
        _ => Vec::new(),
    }
}

/// Gas burnt when a receipt with `actions` is sent (`sir`: sender is receiver).
pub fn send_fees(fees: &RuntimeFeesConfig, actions: &[Action], sir: bool) -> u64 {
    let receipt = send(fees, ActionCosts::new_action_receipt, sir);
    actions
        .iter()
        .map(|a| action_cost(fees, a, Some(sir)))
        .fold(receipt, u64::saturating_add)
}

/// Gas prepaid for executing a receipt with `actions` (its fees, not attached gas).
pub fn exec_fees(fees: &RuntimeFeesConfig, actions: &[Action]) -> u64 {
    let receipt = exec(fees, ActionCosts::new_action_receipt);
    actions
        .iter()
        .map(|a| action_cost(fees, a, None))
        .fold(receipt, u64::saturating_add)
}

/// The execution fee of one action (burnt when it runs), by cost category.
pub fn action_exec_parts(fees: &RuntimeFeesConfig, action: &Action) -> Vec<(ActionCosts, u64)> {
    action_cost_parts(fees, action, None)
}

/// The execution fee of the receipt itself.
pub fn receipt_exec_fee(fees: &RuntimeFeesConfig) -> u64 {
    exec(fees, ActionCosts::new_action_receipt)
}

/// Gas attached to function calls in `actions`.
pub fn prepaid_gas(actions: &[Action]) -> u64 {
    actions
        .iter()
        .map(|a| match a {
            Action::FunctionCall(f) => f.gas.as_gas(),
            _ => 0,
        })
        .fold(0, u64::saturating_add)
}

/// Deposits attached to `actions`, in yoctoNEAR.
pub fn total_deposit(actions: &[Action]) -> u128 {
    actions
        .iter()
        .map(|a| match a {
            Action::FunctionCall(f) => f.deposit.as_yoctonear(),
            Action::Transfer(t) => t.deposit.as_yoctonear(),
            _ => 0,
        })
        .fold(0, u128::saturating_add)
}
