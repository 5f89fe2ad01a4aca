//! The chain: blocks, the transaction pool, receipt queues, postponed receipts
//! waiting for data, yield timeouts, and the execution outcomes they record
//! (read back as `tx` reports them in [`outcomes`]).
//!
//! Invariants:
//! - a transaction is converted to its receipt in the block that includes it; every
//!   receipt runs in the block after the one that produced it (as on NEAR);
//! - an action receipt runs once all its input data has arrived;
//! - a yield is in the store exactly while it waits: a resume or a timeout removes
//!   it, so each yield callback runs once.

use crate::fees;
use crate::receipt::{child_id, ActionReceipt, Receipt, ReceiptBody};
use crate::runtime::{storage_shortfall, BlockContext, Executed, Runtime};
use crate::store::Store;
use borsh::{BorshDeserialize, BorshSerialize};
use near_crypto::PublicKey;
use near_parameters::RuntimeConfig;
use near_primitives::account::{AccessKey, AccessKeyPermission, Account, AccountContract};
use near_primitives::errors::{ActionsValidationError, InvalidAccessKeyError, InvalidTxError};
use near_primitives::hash::CryptoHash;
use near_primitives::transaction::{
    Action, ExecutionMetadata, ExecutionOutcome, ExecutionOutcomeWithId, ExecutionStatus,
    SignedTransaction,
};
use near_primitives::types::{AccountId, Balance, Gas};
use near_vm_runner::logic::types::PromiseResult;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

mod outcomes;
pub use outcomes::{TxProgress, TxState};

/// How many blocks a transaction's `block_hash` stays valid (mainnet's value).
pub const TRANSACTION_VALIDITY_BLOCKS: u64 = 86_400;

/// What a new chain starts with.
#[derive(Clone, Debug)]
pub struct Genesis {
    pub chain_id: String,
    pub root_account: AccountId,
    pub root_public_key: PublicKey,
    pub root_balance: u128,
    /// More accounts to create at genesis (records of sandbox tools' genesis files).
    pub accounts: Vec<GenesisAccount>,
    /// Yocto per gas, constant (NEAR's minimum gas price).
    pub gas_price: u128,
    /// Blocks until an unanswered yield times out (NEAR: 200).
    pub yield_timeout_blocks: u64,
    pub genesis_time_ns: u64,
}

/// An account that exists from the genesis block on, with full-access keys.
#[derive(Clone, Debug)]
pub struct GenesisAccount {
    pub account_id: AccountId,
    pub balance: u128,
    pub keys: Vec<PublicKey>,
}

/// A produced block (the devnet has one shard and instant finality).
#[derive(Clone, Debug, BorshSerialize, BorshDeserialize)]
pub struct Block {
    pub height: u64,
    pub hash: CryptoHash,
    pub prev_hash: CryptoHash,
    pub timestamp_ns: u64,
    pub random_value: CryptoHash,
    pub gas_burnt: u64,
    pub tokens_burnt: u128,
    pub transactions: Vec<CryptoHash>,
}

/// A stored execution outcome.
#[derive(Clone, BorshSerialize, BorshDeserialize)]
struct StoredOutcome {
    block_hash: CryptoHash,
    outcome: ExecutionOutcomeWithId,
}

/// The whole chain state. Not thread-safe by itself: the node keeps it behind a lock.
#[derive(BorshSerialize, BorshDeserialize)]
pub struct Chain {
    #[borsh(skip)]
    runtime: Option<Runtime>,
    pub store: Store,
    chain_id: String,
    gas_price: u128,
    yield_timeout: u64,
    blocks: Vec<Block>,
    block_heights: HashMap<CryptoHash, u64>,
    pool: VecDeque<SignedTransaction>,
    /// Receipts to run in the next block.
    incoming: Vec<Receipt>,
    /// Action receipts waiting for input data: id → (receipt, data still missing).
    postponed: HashMap<CryptoHash, (Receipt, u32)>,
    /// (receiver, data id) → the postponed receipt waiting for it.
    waiting: HashMap<(AccountId, CryptoHash), CryptoHash>,
    received: HashMap<(AccountId, CryptoHash), Option<Vec<u8>>>,
    /// Timeout height → yields that may time out then.
    yield_timeouts: BTreeMap<u64, Vec<(AccountId, CryptoHash)>>,
    outcomes: HashMap<CryptoHash, StoredOutcome>,
    transactions: HashMap<CryptoHash, SignedTransaction>,
    rejected: HashMap<CryptoHash, InvalidTxError>,
}

fn now_hash(parts: &[&[u8]]) -> CryptoHash {
    CryptoHash::hash_bytes(&parts.concat())
}

impl Chain {
    /// A new chain with the genesis block and the root account.
    pub fn new(genesis: &Genesis, config: Arc<RuntimeConfig>) -> Chain {
        let mut store = Store::default();
        let root = GenesisAccount {
            account_id: genesis.root_account.clone(),
            balance: genesis.root_balance,
            keys: vec![genesis.root_public_key.clone()],
        };
        for account in std::iter::once(&root).chain(&genesis.accounts) {
            let key = AccessKey::full_access();
            let mut record = store.account(&account.account_id).unwrap_or_else(|| {
                Account::new(
                    Balance::ZERO,
                    Balance::ZERO,
                    AccountContract::None,
                    config.fees.storage_usage_config.num_bytes_account,
                )
            });
            record.set_amount(Balance::from_yoctonear(
                record.amount().as_yoctonear() + account.balance,
            ));
            for public_key in &account.keys {
                if store.access_key(&account.account_id, public_key).is_none() {
                    record.set_storage_usage(
                        record.storage_usage()
                            + crate::runtime::access_key_storage(&config, public_key, &key),
                    );
                    store.set_access_key(&account.account_id, public_key, &key);
                }
            }
            store.set_account(&account.account_id, &record);
        }
        store.commit();
        let hash = now_hash(&[genesis.chain_id.as_bytes(), b"genesis"]);
        let block = Block {
            height: 0,
            hash,
            prev_hash: CryptoHash::default(),
            timestamp_ns: genesis.genesis_time_ns,
            random_value: now_hash(&[hash.as_bytes(), b"random"]),
            gas_burnt: 0,
            tokens_burnt: 0,
            transactions: Vec::new(),
        };
        let mut chain = Chain {
            runtime: None,
            store,
            chain_id: genesis.chain_id.clone(),
            gas_price: genesis.gas_price,
            yield_timeout: genesis.yield_timeout_blocks,
            blocks: vec![block],
            block_heights: HashMap::from([(hash, 0)]),
            pool: VecDeque::new(),
            incoming: Vec::new(),
            postponed: HashMap::new(),
            waiting: HashMap::new(),
            received: HashMap::new(),
            yield_timeouts: BTreeMap::new(),
            outcomes: HashMap::new(),
            transactions: HashMap::new(),
            rejected: HashMap::new(),
        };
        chain.attach_runtime(config);
        chain
    }

    /// Connects a (restored) chain to the VM with `config`.
    pub fn attach_runtime(&mut self, config: Arc<RuntimeConfig>) {
        self.runtime = Some(Runtime::new(
            config,
            self.yield_timeout,
            self.chain_id.clone(),
        ));
    }

    pub fn runtime(&self) -> &Runtime {
        self.runtime
            .as_ref()
            .expect("the runtime is attached on creation and restore")
    }

    fn config(&self) -> &RuntimeConfig {
        &self.runtime().config
    }

    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }

    pub fn gas_price(&self) -> u128 {
        self.gas_price
    }

    pub fn head(&self) -> &Block {
        self.blocks.last().expect("the genesis block exists")
    }

    pub fn genesis(&self) -> &Block {
        &self.blocks[0]
    }

    pub fn block_by_height(&self, height: u64) -> Option<&Block> {
        self.blocks.get(usize::try_from(height).ok()?)
    }

    pub fn block_by_hash(&self, hash: &CryptoHash) -> Option<&Block> {
        self.block_heights
            .get(hash)
            .and_then(|h| self.block_by_height(*h))
    }

    /// The context views and receipts of the next block run in.
    pub fn head_context(&self) -> BlockContext {
        let head = self.head();
        BlockContext {
            height: head.height,
            hash: head.hash,
            timestamp_ns: head.timestamp_ns,
            random_value: head.random_value,
            gas_price: self.gas_price,
        }
    }

    // ---------------------------------------------------------------- transactions

    /// Checks `tx` against the current state (signature, key, nonce, block hash,
    /// permissions, balance) and queues it for the next block. A transaction that is
    /// already known is accepted again without effect.
    pub fn submit(&mut self, tx: SignedTransaction) -> Result<CryptoHash, InvalidTxError> {
        let hash = tx.get_hash();
        if self.transactions.contains_key(&hash) || self.pool.iter().any(|t| t.get_hash() == hash) {
            return Ok(hash);
        }
        self.verify(&tx)?;
        self.pool.push_back(tx);
        Ok(hash)
    }

    /// Validates `tx` and returns what it costs: (gas burnt on conversion, total
    /// balance to charge, the access key after use).
    fn verify(&self, tx: &SignedTransaction) -> Result<(u64, u128, AccessKey), InvalidTxError> {
        let t = &tx.transaction;
        let signer = t.signer_id();
        let public_key = t.public_key();
        let account =
            self.store
                .account(signer)
                .ok_or_else(|| InvalidTxError::SignerDoesNotExist {
                    signer_id: signer.clone(),
                })?;
        let mut key = self.store.access_key(signer, public_key).ok_or_else(|| {
            InvalidTxError::InvalidAccessKeyError(InvalidAccessKeyError::AccessKeyNotFound {
                account_id: signer.clone(),
                public_key: Box::new(public_key.clone()),
            })
        })?;
        if !tx.signature.verify(tx.get_hash().as_ref(), public_key) {
            return Err(InvalidTxError::InvalidSignature);
        }
        let nonce = t.nonce().nonce();
        if nonce <= key.nonce {
            return Err(InvalidTxError::InvalidNonce {
                tx_nonce: nonce,
                ak_nonce: key.nonce,
            });
        }
        let upper_bound = (self.head().height + 1) * 1_000_000;
        if nonce >= upper_bound {
            return Err(InvalidTxError::NonceTooLarge {
                tx_nonce: nonce,
                upper_bound,
            });
        }
        match self.block_by_hash(t.block_hash()) {
            Some(block) if self.head().height - block.height <= TRANSACTION_VALIDITY_BLOCKS => {}
            _ => return Err(InvalidTxError::Expired),
        }
        self.validate_actions(t.actions())?;

        let fees_config = &self.config().fees;
        let sir = signer == t.receiver_id();
        let burnt = fees::send_fees(fees_config, t.actions(), sir);
        let total_gas = burnt as u128
            + fees::exec_fees(fees_config, t.actions()) as u128
            + fees::prepaid_gas(t.actions()) as u128;
        let gas_cost = total_gas * self.gas_price;
        let cost = gas_cost + fees::total_deposit(t.actions());

        if let AccessKeyPermission::FunctionCall(permission) = &key.permission {
            let [Action::FunctionCall(call)] = t.actions() else {
                return Err(InvalidAccessKeyError::RequiresFullAccess.into());
            };
            if !call.deposit.is_zero() {
                return Err(InvalidAccessKeyError::DepositWithFunctionCall.into());
            }
            if t.receiver_id().as_str() != permission.receiver_id {
                return Err(InvalidAccessKeyError::ReceiverMismatch {
                    tx_receiver: t.receiver_id().clone(),
                    ak_receiver: permission.receiver_id.clone(),
                }
                .into());
            }
            if !permission.method_names.is_empty()
                && !permission
                    .method_names
                    .iter()
                    .any(|m| m == &call.method_name)
            {
                return Err(InvalidAccessKeyError::MethodNameMismatch {
                    method_name: call.method_name.clone(),
                }
                .into());
            }
        }
        let balance = account.amount().as_yoctonear();
        if balance < cost {
            return Err(InvalidTxError::NotEnoughBalance {
                signer_id: signer.clone(),
                balance: account.amount(),
                cost: Balance::from_yoctonear(cost),
            });
        }
        if let AccessKeyPermission::FunctionCall(permission) = &mut key.permission {
            if let Some(allowance) = permission.allowance {
                if allowance.as_yoctonear() < gas_cost {
                    return Err(InvalidAccessKeyError::NotEnoughAllowance {
                        account_id: signer.clone(),
                        public_key: Box::new(public_key.clone()),
                        allowance,
                        cost: Balance::from_yoctonear(gas_cost),
                    }
                    .into());
                }
                permission.allowance =
                    Some(Balance::from_yoctonear(allowance.as_yoctonear() - gas_cost));
            }
        }
        let mut after = account.clone();
        after.set_amount(Balance::from_yoctonear(balance - cost));
        if let Some(amount) = storage_shortfall(self.config(), &after) {
            return Err(InvalidTxError::LackBalanceForState {
                signer_id: signer.clone(),
                amount: Balance::from_yoctonear(amount),
            });
        }
        key.nonce = nonce;
        Ok((burnt, cost, key))
    }

    fn validate_actions(&self, actions: &[Action]) -> Result<(), InvalidTxError> {
        let limits = &self.config().wasm_config.limit_config;
        let mut total_gas: u64 = 0;
        for action in actions {
            match action {
                Action::FunctionCall(call) => {
                    if call.gas.as_gas() == 0 {
                        return Err(InvalidTxError::ActionsValidation(
                            ActionsValidationError::FunctionCallZeroAttachedGas,
                        ));
                    }
                    total_gas = total_gas.saturating_add(call.gas.as_gas());
                }
                Action::CreateAccount(_)
                | Action::DeployContract(_)
                | Action::Transfer(_)
                | Action::AddKey(_)
                | Action::DeleteKey(_)
                | Action::DeleteAccount(_) => {}
                _ => {
                    return Err(InvalidTxError::ActionsValidation(
                        ActionsValidationError::UnsupportedProtocolFeature {
                            protocol_feature: "this action on the devnet".to_string(),
                            version: near_primitives::version::PROTOCOL_VERSION,
                        },
                    ))
                }
            }
        }
        if total_gas > limits.max_total_prepaid_gas.as_gas() {
            return Err(InvalidTxError::ActionsValidation(
                ActionsValidationError::TotalPrepaidGasExceeded {
                    total_prepaid_gas: Gas::from_gas(total_gas),
                    limit: limits.max_total_prepaid_gas,
                },
            ));
        }
        Ok(())
    }

    /// Charges `tx` and turns it into its receipt (run in the next block).
    fn convert(
        &mut self,
        tx: SignedTransaction,
        block: &BlockContext,
    ) -> Result<Receipt, InvalidTxError> {
        let (burnt, cost, key) = self.verify(&tx)?;
        let t = &tx.transaction;
        let signer = t.signer_id().clone();
        let mut account = self.store.account(&signer).expect("verified");
        account.set_amount(Balance::from_yoctonear(
            account.amount().as_yoctonear() - cost,
        ));
        self.store.set_account(&signer, &account);
        self.store.set_access_key(&signer, t.public_key(), &key);
        self.store.commit();
        let hash = tx.get_hash();
        let receipt_id = child_id(&hash, &block.hash, 0);
        self.record(
            hash,
            block.hash,
            ExecutionOutcome {
                logs: Vec::new(),
                receipt_ids: vec![receipt_id],
                gas_burnt: Gas::from_gas(burnt),
                compute_usage: Some(burnt),
                tokens_burnt: Balance::from_yoctonear(burnt as u128 * self.gas_price),
                executor_id: signer.clone(),
                status: ExecutionStatus::SuccessReceiptId(receipt_id),
                metadata: ExecutionMetadata::V1,
            },
        );
        let receipt = Receipt {
            id: receipt_id,
            predecessor: signer.clone(),
            receiver: t.receiver_id().clone(),
            body: ReceiptBody::Action(ActionReceipt {
                signer,
                signer_public_key: t.public_key().clone(),
                gas_price: self.gas_price,
                output_data_receivers: Vec::new(),
                input_data_ids: Vec::new(),
                actions: t.actions().to_vec(),
                refund_to: None,
                is_yield: false,
            }),
        };
        self.transactions.insert(hash, tx);
        Ok(receipt)
    }

    fn record(&mut self, id: CryptoHash, block_hash: CryptoHash, outcome: ExecutionOutcome) {
        self.outcomes.insert(
            id,
            StoredOutcome {
                block_hash,
                outcome: ExecutionOutcomeWithId { id, outcome },
            },
        );
    }

    // ---------------------------------------------------------------- blocks

    /// Produces the next block at `timestamp_ns`: runs the receipts produced by the
    /// previous block, times out expired yields, and includes pending transactions.
    pub fn produce_block(&mut self, timestamp_ns: u64) -> &Block {
        let prev = self.head().clone();
        let height = prev.height + 1;
        let timestamp_ns = timestamp_ns.max(prev.timestamp_ns + 1);
        let hash = now_hash(&[
            prev.hash.as_bytes(),
            &height.to_le_bytes(),
            &timestamp_ns.to_le_bytes(),
        ]);
        let block = BlockContext {
            height,
            hash,
            timestamp_ns,
            random_value: now_hash(&[hash.as_bytes(), b"random"]),
            gas_price: self.gas_price,
        };
        let mut gas_burnt = 0u64;
        let mut tokens_burnt = 0u128;
        let mut next = Vec::new();

        let mut queue: VecDeque<Receipt> = std::mem::take(&mut self.incoming).into();
        // Yields that reach their timeout get a failed result now.
        let due: Vec<u64> = self
            .yield_timeouts
            .range(..=height)
            .map(|(h, _)| *h)
            .collect();
        for due_height in due {
            for (account, data_id) in self.yield_timeouts.remove(&due_height).unwrap_or_default() {
                if self.store.remove_yield(&account, &data_id) {
                    self.store.commit();
                    queue.push_back(Receipt {
                        id: child_id(&data_id, &hash, 0),
                        predecessor: account.clone(),
                        receiver: account,
                        body: ReceiptBody::Data(crate::receipt::DataReceipt {
                            data_id,
                            data: None,
                        }),
                    });
                }
            }
        }
        while let Some(receipt) = queue.pop_front() {
            if let Some(executed) = self.process_receipt(receipt, &block) {
                gas_burnt += executed.outcome.gas_burnt.as_gas();
                tokens_burnt += executed.outcome.tokens_burnt.as_yoctonear();
                for (account, data_id, expires_at) in executed.new_yields {
                    self.yield_timeouts
                        .entry(expires_at)
                        .or_default()
                        .push((account, data_id));
                }
                next.extend(executed.new_receipts);
            }
        }

        let mut included = Vec::new();
        while let Some(tx) = self.pool.pop_front() {
            let tx_hash = tx.get_hash();
            match self.convert(tx, &block) {
                Ok(receipt) => {
                    let outcome = &self.outcomes[&tx_hash].outcome.outcome;
                    gas_burnt += outcome.gas_burnt.as_gas();
                    tokens_burnt += outcome.tokens_burnt.as_yoctonear();
                    included.push(tx_hash);
                    next.push(receipt);
                }
                Err(error) => {
                    self.rejected.insert(tx_hash, error);
                }
            }
        }
        self.incoming = next;
        self.blocks.push(Block {
            height,
            hash,
            prev_hash: prev.hash,
            timestamp_ns,
            random_value: block.random_value,
            gas_burnt,
            tokens_burnt,
            transactions: included,
        });
        self.block_heights.insert(hash, height);
        self.head()
    }

    /// Delivers one receipt: stores data, runs ready action receipts, postpones the rest.
    fn process_receipt(&mut self, receipt: Receipt, block: &BlockContext) -> Option<Executed> {
        let receiver = receipt.receiver.clone();
        let ready = match &receipt.body {
            ReceiptBody::Data(data) => {
                let key = (receiver.clone(), data.data_id);
                self.received.insert(key.clone(), data.data.clone());
                let waiting_id = self.waiting.remove(&key)?;
                let (_, missing) = self.postponed.get_mut(&waiting_id)?;
                *missing -= 1;
                if *missing > 0 {
                    return None;
                }
                self.postponed.remove(&waiting_id)?.0
            }
            ReceiptBody::Action(action) => {
                let missing: Vec<CryptoHash> = action
                    .input_data_ids
                    .iter()
                    .filter(|id| !self.received.contains_key(&(receiver.clone(), **id)))
                    .copied()
                    .collect();
                if !missing.is_empty() {
                    for data_id in &missing {
                        self.waiting
                            .insert((receiver.clone(), *data_id), receipt.id);
                    }
                    self.postponed
                        .insert(receipt.id, (receipt, missing.len() as u32));
                    return None;
                }
                receipt
            }
        };
        let ReceiptBody::Action(action) = &ready.body else {
            unreachable!("only action receipts are postponed")
        };
        let results = action
            .input_data_ids
            .iter()
            .map(|id| match self.received.remove(&(receiver.clone(), *id)) {
                Some(Some(data)) => PromiseResult::Successful(data.into()),
                _ => PromiseResult::Failed,
            })
            .collect();
        let runtime = self.runtime.as_ref().expect("attached");
        let executed =
            runtime.apply_action_receipt(&mut self.store, &ready, action, results, block);
        self.record(ready.id, block.hash, executed.outcome.clone());
        Some(executed)
    }

    /// Runs view method `method` of `account_id` on the head state.
    pub fn view_call(
        &mut self,
        account_id: &AccountId,
        method: &str,
        args: &[u8],
    ) -> Result<(Vec<u8>, Vec<String>), crate::runtime::ViewError> {
        let context = self.head_context();
        let runtime = self.runtime.as_ref().expect("attached");
        runtime.view_call(&mut self.store, account_id, method, args, &context)
    }

    /// Replaces or adds state records (sandbox_patch_state).
    pub fn patch_account(&mut self, id: &AccountId, account: &Account) {
        self.store.set_account(id, account);
        self.store.commit();
    }
}
