//! Receipt execution around nearcore's VM: actions, function calls, promise
//! dependencies, yields, gas accounting, refunds and rollback.
//!
//! The accounting follows nearcore's runtime: executing a receipt burns the
//! execution fees of the receipt and its actions plus what the VM burns; a
//! successful receipt refunds `prepaid - used` gas to the signer, a failed one
//! `prepaid - burnt` plus every attached deposit (to the predecessor), and its state
//! changes and outgoing receipts are discarded.

use crate::ext::{PendingReceipt, RuntimeExt};
use crate::fees;
use crate::receipt::{child_id, ActionReceipt, DataReceipt, Receipt, ReceiptBody};
use crate::store::Store;
use near_crypto::PublicKey;
use near_parameters::{ActionCosts, ExtCosts, RuntimeConfig};
use near_primitives::account::{AccessKey, Account, AccountContract};
use near_primitives::errors::{
    ActionError, ActionErrorKind, CompilationError, FunctionCallError, MethodResolveError,
    TxExecutionError,
};
use near_primitives::hash::CryptoHash;
use near_primitives::profile_data_v3::ProfileDataV3;
use near_primitives::transaction::{Action, ExecutionMetadata, ExecutionOutcome, ExecutionStatus};
use near_primitives::types::{AccountId, Balance, Gas};
use near_vm_runner::logic::types::PromiseResult;
use near_vm_runner::logic::{ReturnData, VMContext};
use near_vm_runner::{
    ContractCode, ContractRuntimeCache, FilesystemContractRuntimeCache, MockContractRuntimeCache,
};
use std::sync::Arc;

/// Accounts with at most this much storage need no balance for it (NEAR's
/// zero-balance accounts).
const ZERO_BALANCE_ACCOUNT_STORAGE_LIMIT: u64 = 770;

/// What the runtime needs to know about the block it executes in.
#[derive(Clone, Debug)]
pub struct BlockContext {
    pub height: u64,
    pub hash: CryptoHash,
    pub timestamp_ns: u64,
    pub random_value: CryptoHash,
    pub gas_price: u128,
}

/// The outcome of executing one receipt.
pub struct Executed {
    pub outcome: ExecutionOutcome,
    /// Receipts to deliver in the next block (calls, callbacks, data, refunds).
    pub new_receipts: Vec<Receipt>,
    /// Yields created: (account, data id, timeout height).
    pub new_yields: Vec<(AccountId, CryptoHash, u64)>,
}

/// nearcore's VM plus the protocol config, and the compiled-module cache.
pub struct Runtime {
    pub config: Arc<RuntimeConfig>,
    cache: Box<dyn ContractRuntimeCache>,
    pub yield_timeout: u64,
    pub chain_id: String,
}

/// Everything executing a receipt's actions produced so far.
struct ActionsState {
    gas_burnt: u64,
    /// Where `gas_burnt` went, as nearcore reports it (`gas_profile`).
    profile: ProfileDataV3,
    gas_used: u64,
    gas_burnt_for_function_call: u64,
    logs: Vec<String>,
    pending: Vec<PendingReceipt>,
    resumes: Vec<(CryptoHash, Vec<u8>)>,
    yields: Vec<(CryptoHash, u64)>,
    /// Balance sent to beneficiaries of deleted accounts.
    beneficiary_transfers: Vec<(AccountId, u128)>,
    return_data: ReturnData,
}

/// Adds a VM run's costs (host functions, actions it created, wasm instructions) to
/// a receipt's profile.
fn add_vm_profile(profile: &mut ProfileDataV3, vm: &near_vm_runner::ProfileDataV3) {
    use strum::IntoEnumIterator;
    for cost in ActionCosts::iter() {
        profile.add_action_cost(cost, vm.get_action_cost(cost));
    }
    for cost in ExtCosts::iter() {
        profile.add_ext_cost(cost, vm.get_ext_cost(cost));
    }
    profile.wasm_gas = profile.wasm_gas.saturating_add(vm.get_wasm_cost());
}

fn action_error(kind: ActionErrorKind) -> ActionErrorKind {
    kind
}

fn execution_error(message: impl Into<String>) -> ActionErrorKind {
    ActionErrorKind::FunctionCallError(FunctionCallError::ExecutionError(message.into()))
}

/// nearcore's conversion of VM errors into the protocol's error type: structured
/// for compilation and method resolution, the error's text otherwise.
pub fn convert_vm_error(
    error: &near_vm_runner::logic::errors::FunctionCallError,
) -> FunctionCallError {
    use near_vm_runner::logic::errors::{FunctionCallError as Vm, MethodResolveError as VmMethod};
    match error {
        Vm::CompilationError(e) => borsh::to_vec(e)
            .ok()
            .and_then(|bytes| borsh::from_slice::<CompilationError>(&bytes).ok())
            .map(FunctionCallError::CompilationError)
            .unwrap_or_else(|| FunctionCallError::ExecutionError(error.to_string())),
        Vm::MethodResolveError(e) => FunctionCallError::MethodResolveError(match e {
            VmMethod::MethodEmptyName => MethodResolveError::MethodEmptyName,
            VmMethod::MethodNotFound => MethodResolveError::MethodNotFound,
            VmMethod::MethodInvalidSignature => MethodResolveError::MethodInvalidSignature,
        }),
        Vm::LinkError { msg } => FunctionCallError::LinkError { msg: msg.clone() },
        other => FunctionCallError::ExecutionError(other.to_string()),
    }
}

/// The code an account runs, for the VM (`None` code makes the VM report
/// `CodeDoesNotExist`).
struct AccountCode {
    hash: CryptoHash,
    code: Option<Arc<ContractCode>>,
}

impl near_vm_runner::Contract for AccountCode {
    fn hash(&self) -> CryptoHash {
        self.hash
    }

    fn get_code(&self) -> Option<Arc<ContractCode>> {
        self.code.clone()
    }
}

/// Bytes an access key occupies in storage accounting.
pub fn access_key_storage(config: &RuntimeConfig, public_key: &PublicKey, key: &AccessKey) -> u64 {
    let pk = borsh::object_length(public_key).expect("keys encode") as u64;
    let ak = borsh::object_length(key).expect("keys encode") as u64;
    pk + ak + config.fees.storage_usage_config.num_extra_bytes_record
}

/// How much more balance `account` needs to pay for its storage, if any.
pub fn storage_shortfall(config: &RuntimeConfig, account: &Account) -> Option<u128> {
    let usage = account.storage_usage();
    if usage <= ZERO_BALANCE_ACCOUNT_STORAGE_LIMIT {
        return None;
    }
    let per_byte = config
        .fees
        .storage_usage_config
        .storage_amount_per_byte
        .as_yoctonear();
    let required = per_byte.saturating_mul(usage as u128);
    let available = account.amount().as_yoctonear() + account.locked().as_yoctonear();
    (available < required).then(|| required - available)
}

fn yocto(amount: u128) -> Balance {
    Balance::from_yoctonear(amount)
}

/// Compiled modules, shared by every devnet in the process: compiling a contract
/// takes long (seconds for a large one in a debug build). nearcore's filesystem cache
/// keeps loaded modules in memory and compiled code on disk (keyed by code hash and
/// VM config, so sharing it is safe), in `$DEVNET_CONTRACT_CACHE` or
/// `<temp dir>/devnet-contract-cache`; in memory only if that directory is unusable.
fn compiled_module_cache() -> Box<dyn ContractRuntimeCache> {
    static CACHE: std::sync::OnceLock<Box<dyn ContractRuntimeCache>> = std::sync::OnceLock::new();
    CACHE
        .get_or_init(|| {
            let dir = std::env::var_os("DEVNET_CONTRACT_CACHE")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| std::env::temp_dir().join("devnet-contract-cache"));
            match FilesystemContractRuntimeCache::with_memory_cache(
                &dir,
                None::<&str>,
                "compiled",
                64,
                None,
                512 * 1024 * 1024,
                near_vm_runner::noop_background_spawner(),
            ) {
                Ok(cache) => Box::new(cache),
                Err(_) => Box::new(MockContractRuntimeCache::default()),
            }
        })
        .handle()
}

impl Runtime {
    /// Prepares (or takes from the cache) and runs `method` of `code` in the VM: the
    /// one place function calls and views enter nearcore's runner.
    fn run_vm(
        &self,
        code: &AccountCode,
        context: &VMContext,
        ext: &mut RuntimeExt<'_>,
        method: &str,
    ) -> Result<near_vm_runner::logic::VMOutcome, near_vm_runner::logic::errors::VMRunnerError>
    {
        let wasm_config = self.config.wasm_config.clone();
        let gas_counter = context.make_gas_counter(&wasm_config);
        let prepared = near_vm_runner::prepare(
            code,
            wasm_config,
            Some(self.cache.as_ref()),
            gas_counter,
            method,
        );
        near_vm_runner::run(prepared, ext, context, self.config.fees.clone())
    }

    pub fn new(config: Arc<RuntimeConfig>, yield_timeout: u64, chain_id: String) -> Self {
        Runtime {
            config,
            cache: compiled_module_cache(),
            yield_timeout,
            chain_id,
        }
    }

    /// Runs an action receipt whose inputs are all available.
    pub fn apply_action_receipt(
        &self,
        store: &mut Store,
        receipt: &Receipt,
        action_receipt: &ActionReceipt,
        promise_results: Vec<PromiseResult>,
        block: &BlockContext,
    ) -> Executed {
        let receiver = &receipt.receiver;
        let is_refund = receipt.is_refund();
        let checkpoint = store.checkpoint();
        let mut account = store.account(receiver);
        let receipt_fee = fees::receipt_exec_fee(&self.config.fees);
        let mut profile = ProfileDataV3::default();
        profile.add_action_cost(ActionCosts::new_action_receipt, Gas::from_gas(receipt_fee));
        let mut state = ActionsState {
            profile,
            gas_burnt: receipt_fee,
            gas_used: receipt_fee,
            gas_burnt_for_function_call: 0,
            logs: Vec::new(),
            pending: Vec::new(),
            resumes: Vec::new(),
            yields: Vec::new(),
            beneficiary_transfers: Vec::new(),
            return_data: ReturnData::None,
        };
        let promise_results: Arc<[PromiseResult]> = promise_results.into();
        let mut result: Result<(), ActionError> = Ok(());
        for (index, action) in action_receipt.actions.iter().enumerate() {
            let parts = fees::action_exec_parts(&self.config.fees, action);
            let fee: u64 = parts.iter().map(|(_, gas)| *gas).sum();
            for (cost, gas) in parts {
                state.profile.add_action_cost(cost, Gas::from_gas(gas));
            }
            state.gas_burnt += fee;
            state.gas_used += fee;
            state.return_data = ReturnData::None;
            let applied = self.apply_action(
                store,
                receipt,
                action_receipt,
                action,
                index,
                &mut account,
                promise_results.clone(),
                block,
                &mut state,
            );
            if let Err(kind) = applied {
                result = Err(ActionError {
                    index: Some(index as u64),
                    kind,
                });
                break;
            }
        }
        if result.is_ok() {
            if let Some(account) = &account {
                if let Some(amount) = storage_shortfall(&self.config, account) {
                    result = Err(ActionError {
                        index: None,
                        kind: ActionErrorKind::LackBalanceForState {
                            account_id: receiver.clone(),
                            amount: yocto(amount),
                        },
                    });
                }
            }
        }
        match (&result, &account) {
            (Ok(()), Some(account)) => store.set_account(receiver, account),
            (Ok(()), None) => {}
            (Err(_), _) => {
                store.rollback(checkpoint);
                state.pending.clear();
                state.resumes.clear();
                state.yields.clear();
                state.beneficiary_transfers.clear();
            }
        }
        store.commit();

        let mut new_receipts: Vec<Receipt> = Vec::new();
        let mut refunds: Vec<Receipt> = Vec::new();
        let mut refund_index = state.pending.len() + state.resumes.len();
        let mut next_refund_id = || {
            refund_index += 1;
            child_id(&receipt.id, &block.hash, refund_index + 1_000_000)
        };
        if is_refund {
            state.gas_burnt = 0;
            state.gas_used = 0;
        } else {
            let total_deposit = fees::total_deposit(&action_receipt.actions);
            let prepaid = fees::prepaid_gas(&action_receipt.actions)
                + fees::exec_fees(&self.config.fees, &action_receipt.actions);
            let spent = if result.is_ok() {
                state.gas_used
            } else {
                state.gas_burnt
            };
            let gas_refund = prepaid.saturating_sub(spent);
            if result.is_err() && total_deposit > 0 {
                let to = action_receipt
                    .refund_to
                    .clone()
                    .unwrap_or_else(|| receipt.predecessor.clone());
                refunds.push(Receipt::refund(
                    next_refund_id(),
                    to,
                    total_deposit,
                    action_receipt.signer_public_key.clone(),
                ));
            }
            let gas_balance_refund = (gas_refund as u128) * action_receipt.gas_price;
            if gas_balance_refund > 0 {
                refunds.push(Receipt::refund(
                    next_refund_id(),
                    action_receipt.signer.clone(),
                    gas_balance_refund,
                    action_receipt.signer_public_key.clone(),
                ));
            }
        }
        for (beneficiary, amount) in std::mem::take(&mut state.beneficiary_transfers) {
            refunds.push(Receipt::refund(
                next_refund_id(),
                beneficiary,
                amount,
                action_receipt.signer_public_key.clone(),
            ));
        }

        // The contract's share of the gas its code burnt (nearcore's burnt gas reward).
        let mut tokens_burnt = (state.gas_burnt as u128) * block.gas_price;
        if !is_refund && state.gas_burnt_for_function_call > 0 {
            let ratio = self.config.fees.burnt_gas_reward;
            let reward_gas = state.gas_burnt_for_function_call as u128 * (*ratio.numer() as u128)
                / (*ratio.denom() as u128);
            let reward = reward_gas * block.gas_price;
            if let Some(mut account) = store.account(receiver) {
                account.set_amount(yocto(account.amount().as_yoctonear() + reward));
                store.set_account(receiver, &account);
                store.commit();
                tokens_burnt -= reward;
            }
        }

        // Where this receipt's result goes.
        let mut data_receipts = Vec::new();
        if !action_receipt.output_data_receivers.is_empty() {
            match (&result, &state.return_data) {
                (Ok(()), ReturnData::ReceiptIndex(index)) => {
                    state.pending[*index as usize]
                        .output_data_receivers
                        .extend(action_receipt.output_data_receivers.iter().cloned());
                }
                _ => {
                    let data = match (&result, &state.return_data) {
                        (Ok(()), ReturnData::Value(value)) => Some(value.clone()),
                        (Ok(()), _) => Some(Vec::new()),
                        (Err(_), _) => None,
                    };
                    for receiver in &action_receipt.output_data_receivers {
                        data_receipts.push((
                            receiver.receiver.clone(),
                            receiver.data_id,
                            data.clone(),
                        ));
                    }
                }
            }
        }

        let mut receipt_ids = Vec::new();
        let mut status_receipt = None;
        for (index, pending) in state.pending.into_iter().enumerate() {
            let id = child_id(&receipt.id, &block.hash, index);
            if let ReturnData::ReceiptIndex(returned) = state.return_data {
                if returned as usize == index {
                    status_receipt = Some(id);
                }
            }
            receipt_ids.push(id);
            new_receipts.push(Receipt {
                id,
                predecessor: receiver.clone(),
                receiver: pending.receiver,
                body: ReceiptBody::Action(ActionReceipt {
                    signer: action_receipt.signer.clone(),
                    signer_public_key: action_receipt.signer_public_key.clone(),
                    gas_price: action_receipt.gas_price,
                    output_data_receivers: pending.output_data_receivers,
                    input_data_ids: pending.input_data_ids,
                    actions: pending.actions,
                    refund_to: pending.refund_to,
                    is_yield: pending.is_yield,
                }),
            });
        }
        for refund in refunds {
            receipt_ids.push(refund.id);
            new_receipts.push(refund);
        }
        let data_base = new_receipts.len();
        let resumes = state
            .resumes
            .into_iter()
            .map(|(data_id, data)| (receiver.clone(), data_id, Some(data)));
        for (offset, (to, data_id, data)) in resumes.chain(data_receipts).enumerate() {
            new_receipts.push(Receipt {
                id: child_id(&receipt.id, &block.hash, data_base + offset + 2_000_000),
                predecessor: receiver.clone(),
                receiver: to,
                body: ReceiptBody::Data(DataReceipt { data_id, data }),
            });
        }

        let status = match result {
            Err(error) => ExecutionStatus::Failure(TxExecutionError::ActionError(error)),
            Ok(()) => match (state.return_data, status_receipt) {
                (ReturnData::ReceiptIndex(_), Some(id)) => ExecutionStatus::SuccessReceiptId(id),
                (ReturnData::Value(value), _) => ExecutionStatus::SuccessValue(value),
                _ => ExecutionStatus::SuccessValue(Vec::new()),
            },
        };
        let new_yields = state
            .yields
            .into_iter()
            .map(|(data_id, expires_at)| (receiver.clone(), data_id, expires_at))
            .collect();
        Executed {
            outcome: ExecutionOutcome {
                logs: state.logs,
                receipt_ids,
                gas_burnt: Gas::from_gas(state.gas_burnt),
                compute_usage: Some(state.gas_burnt),
                tokens_burnt: yocto(tokens_burnt),
                executor_id: receiver.clone(),
                status,
                metadata: ExecutionMetadata::V3(Box::new(state.profile)),
            },
            new_receipts,
            new_yields,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn apply_action(
        &self,
        store: &mut Store,
        receipt: &Receipt,
        action_receipt: &ActionReceipt,
        action: &Action,
        index: usize,
        account: &mut Option<Account>,
        promise_results: Arc<[PromiseResult]>,
        block: &BlockContext,
        state: &mut ActionsState,
    ) -> Result<(), ActionErrorKind> {
        let receiver = &receipt.receiver;
        let storage = &self.config.fees.storage_usage_config;
        if !matches!(action, Action::CreateAccount(_)) && account.is_none() {
            return Err(ActionErrorKind::AccountDoesNotExist {
                account_id: receiver.clone(),
            });
        }
        match action {
            Action::CreateAccount(_) => {
                if account.is_some() {
                    return Err(ActionErrorKind::AccountAlreadyExists {
                        account_id: receiver.clone(),
                    });
                }
                self.check_create_account(receiver, &receipt.predecessor)?;
                *account = Some(Account::new(
                    Balance::ZERO,
                    Balance::ZERO,
                    AccountContract::None,
                    storage.num_bytes_account,
                ));
            }
            Action::DeployContract(deploy) => {
                let acc = account.as_mut().expect("checked above");
                let old_len = acc
                    .local_contract_hash()
                    .and_then(|h| store.code_bytes(&h).map(|c| c.len() as u64))
                    .unwrap_or(0);
                let hash = store.put_code(deploy.code.clone());
                acc.set_contract(AccountContract::Local(hash))
                    .map_err(|e| execution_error(format!("cannot deploy: {e:?}")))?;
                acc.set_storage_usage(
                    acc.storage_usage().saturating_sub(old_len) + deploy.code.len() as u64,
                );
            }
            Action::FunctionCall(call) => {
                self.function_call(
                    store,
                    receipt,
                    action_receipt,
                    call,
                    index,
                    account.as_mut().expect("checked above"),
                    promise_results,
                    block,
                    state,
                )?;
            }
            Action::Transfer(transfer) => {
                let acc = account.as_mut().expect("checked above");
                acc.set_amount(yocto(
                    acc.amount().as_yoctonear() + transfer.deposit.as_yoctonear(),
                ));
            }
            Action::AddKey(add) => {
                if store.access_key(receiver, &add.public_key).is_some() {
                    return Err(action_error(ActionErrorKind::AddKeyAlreadyExists {
                        account_id: receiver.clone(),
                        public_key: Box::new(add.public_key.clone()),
                    }));
                }
                // nearcore starts a new key's nonce at a height-derived value, so that a
                // re-added key cannot replay old transactions.
                let key = AccessKey {
                    nonce: block.height.saturating_sub(1) * 1_000_000,
                    permission: add.access_key.permission.clone(),
                };
                let acc = account.as_mut().expect("checked above");
                acc.set_storage_usage(
                    acc.storage_usage() + access_key_storage(&self.config, &add.public_key, &key),
                );
                store.set_access_key(receiver, &add.public_key, &key);
            }
            Action::DeleteKey(delete) => {
                let Some(key) = store.access_key(receiver, &delete.public_key) else {
                    return Err(ActionErrorKind::DeleteKeyDoesNotExist {
                        account_id: receiver.clone(),
                        public_key: Box::new(delete.public_key.clone()),
                    });
                };
                let acc = account.as_mut().expect("checked above");
                acc.set_storage_usage(acc.storage_usage().saturating_sub(access_key_storage(
                    &self.config,
                    &delete.public_key,
                    &key,
                )));
                store.remove_access_key(receiver, &delete.public_key);
            }
            Action::DeleteAccount(delete) => {
                if &receipt.predecessor != receiver {
                    return Err(ActionErrorKind::ActorNoPermission {
                        account_id: receiver.clone(),
                        actor_id: receipt.predecessor.clone(),
                    });
                }
                let acc = account.take().expect("checked above");
                for key in store.keys_of_account(receiver) {
                    store.remove(&key);
                }
                let balance = acc.amount().as_yoctonear();
                if balance > 0 {
                    state
                        .beneficiary_transfers
                        .push((delete.beneficiary_id.clone(), balance));
                }
            }
            other => {
                return Err(execution_error(format!(
                    "the devnet does not support this action: {other:?}"
                )))
            }
        }
        Ok(())
    }

    fn check_create_account(
        &self,
        new: &AccountId,
        predecessor: &AccountId,
    ) -> Result<(), ActionErrorKind> {
        let creation = &self.config.account_creation_config;
        if new.is_top_level() {
            if new.len() < creation.min_allowed_top_level_account_length as usize
                && predecessor != &creation.registrar_account_id
            {
                return Err(ActionErrorKind::CreateAccountOnlyByRegistrar {
                    account_id: new.clone(),
                    registrar_account_id: creation.registrar_account_id.clone(),
                    predecessor_id: predecessor.clone(),
                });
            }
        } else if !new.is_sub_account_of(predecessor) {
            return Err(ActionErrorKind::CreateAccountNotAllowed {
                account_id: new.clone(),
                predecessor_id: predecessor.clone(),
            });
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn function_call(
        &self,
        store: &mut Store,
        receipt: &Receipt,
        action_receipt: &ActionReceipt,
        call: &near_primitives::transaction::FunctionCallAction,
        index: usize,
        account: &mut Account,
        promise_results: Arc<[PromiseResult]>,
        block: &BlockContext,
        state: &mut ActionsState,
    ) -> Result<(), ActionErrorKind> {
        let receiver = &receipt.receiver;
        let code = account.local_contract_hash().map(|hash| AccountCode {
            hash,
            code: store.code(&hash),
        });
        let code = code.unwrap_or(AccountCode {
            hash: CryptoHash::default(),
            code: None,
        });
        let mut seed = receipt.id.as_bytes().to_vec();
        seed.extend_from_slice(&(index as u64).to_le_bytes());
        seed.extend_from_slice(block.random_value.as_bytes());
        let context = VMContext {
            current_account_id: receiver.clone(),
            signer_account_id: action_receipt.signer.clone(),
            signer_account_pk: borsh::to_vec(&action_receipt.signer_public_key)
                .expect("keys encode"),
            predecessor_account_id: receipt.predecessor.clone(),
            refund_to_account_id: action_receipt
                .refund_to
                .clone()
                .unwrap_or_else(|| receipt.predecessor.clone()),
            input: call.args.clone().into(),
            promise_results,
            block_height: block.height,
            block_timestamp: block.timestamp_ns,
            epoch_height: 1,
            account_balance: account.amount(),
            account_locked_balance: account.locked(),
            storage_usage: account.storage_usage(),
            account_contract: account.contract().into_owned(),
            attached_deposit: call.deposit,
            prepaid_gas: call.gas,
            random_seed: CryptoHash::hash_bytes(&seed).as_bytes().to_vec(),
            view_config: None,
            output_data_receivers: action_receipt
                .output_data_receivers
                .iter()
                .map(|r| r.receiver.clone())
                .collect(),
        };
        let data_id_seed = CryptoHash::hash_bytes(&seed);
        let mut ext = RuntimeExt::new(
            store,
            receiver.clone(),
            data_id_seed,
            block.height,
            self.yield_timeout,
            self.chain_id.clone(),
        );
        let outcome = self.run_vm(&code, &context, &mut ext, &call.method_name);
        let mut outcome = match outcome {
            Ok(outcome) => outcome,
            Err(error) => return Err(execution_error(format!("the VM failed: {error:?}"))),
        };
        state.logs.append(&mut outcome.logs);
        add_vm_profile(&mut state.profile, &outcome.profile);
        state.gas_burnt += outcome.burnt_gas.as_gas();
        state.gas_burnt_for_function_call += outcome.burnt_gas.as_gas();
        if let Some(error) = &outcome.aborted {
            state.gas_used += outcome.used_gas.as_gas();
            return Err(ActionErrorKind::FunctionCallError(convert_vm_error(error)));
        }
        if let Some(what) = ext.unsupported {
            state.gas_used += outcome.used_gas.as_gas();
            return Err(execution_error(format!(
                "the devnet does not support {what}"
            )));
        }
        let mut used = outcome.used_gas.as_gas();
        // Unused gas goes to the function calls that asked for a share (by weight).
        let unused = call.gas.as_gas().saturating_sub(used);
        let total_weight: u64 = ext
            .receipts
            .iter()
            .flat_map(|r| r.gas_weights.iter().map(|(_, w)| *w))
            .sum();
        if unused > 0 && total_weight > 0 {
            let mut distributed = 0u64;
            let weighted: Vec<(usize, usize, u64)> = ext
                .receipts
                .iter()
                .enumerate()
                .flat_map(|(r, receipt)| receipt.gas_weights.iter().map(move |(a, w)| (r, *a, *w)))
                .collect();
            let last = weighted.len() - 1;
            for (i, (r, a, weight)) in weighted.into_iter().enumerate() {
                let share = if i == last {
                    unused - distributed
                } else {
                    (unused as u128 * weight as u128 / total_weight as u128) as u64
                };
                distributed += share;
                if let Action::FunctionCall(f) = &mut ext.receipts[r].actions[a] {
                    f.gas = Gas::from_gas(f.gas.as_gas() + share);
                }
            }
            used = call.gas.as_gas();
        }
        state.gas_used += used;
        account.set_amount(outcome.balance);
        account.set_storage_usage(outcome.storage_usage);
        state.pending.append(&mut ext.receipts);
        state.resumes.append(&mut ext.resumes);
        state.yields.append(&mut ext.created_yields);
        state.return_data = outcome.return_data;
        Ok(())
    }

    /// Runs a view call (no state changes, no promises) and returns its result and
    /// logs, or nearcore's error text.
    pub fn view_call(
        &self,
        store: &mut Store,
        account_id: &AccountId,
        method: &str,
        args: &[u8],
        block: &BlockContext,
    ) -> Result<(Vec<u8>, Vec<String>), ViewError> {
        let account = store.account(account_id).ok_or(ViewError::UnknownAccount)?;
        let Some(hash) = account.local_contract_hash() else {
            return Err(ViewError::NoCode);
        };
        let code = AccountCode {
            hash,
            code: store.code(&hash),
        };
        let max_gas = self.config.wasm_config.limit_config.max_gas_burnt;
        let context = VMContext {
            current_account_id: account_id.clone(),
            signer_account_id: account_id.clone(),
            signer_account_pk: Vec::new(),
            predecessor_account_id: account_id.clone(),
            refund_to_account_id: account_id.clone(),
            input: args.to_vec().into(),
            promise_results: Vec::new().into(),
            block_height: block.height,
            block_timestamp: block.timestamp_ns,
            epoch_height: 1,
            account_balance: account.amount(),
            account_locked_balance: account.locked(),
            storage_usage: account.storage_usage(),
            account_contract: account.contract().into_owned(),
            attached_deposit: Balance::ZERO,
            prepaid_gas: max_gas,
            random_seed: block.random_value.as_bytes().to_vec(),
            view_config: Some(near_primitives_core::config::ViewConfig {
                max_gas_burnt: max_gas,
            }),
            output_data_receivers: Vec::new(),
        };
        let checkpoint = store.checkpoint();
        let mut ext = RuntimeExt::new(
            store,
            account_id.clone(),
            CryptoHash::default(),
            block.height,
            self.yield_timeout,
            self.chain_id.clone(),
        );
        let outcome = self.run_vm(&code, &context, &mut ext, method);
        // Views never change state, whatever the VM did.
        store.rollback(checkpoint);
        let outcome = outcome.map_err(|e| ViewError::Execution(format!("{e:?}"), Vec::new()))?;
        if let Some(error) = outcome.aborted {
            return Err(ViewError::Execution(
                format!("wasm execution failed with error: {error:?}"),
                outcome.logs,
            ));
        }
        let result = match outcome.return_data {
            ReturnData::Value(value) => value,
            _ => Vec::new(),
        };
        Ok((result, outcome.logs))
    }
}

/// Why a view call gave no result.
#[derive(Debug)]
pub enum ViewError {
    UnknownAccount,
    NoCode,
    /// The VM's error text and the logs written before it.
    Execution(String, Vec<String>),
}
