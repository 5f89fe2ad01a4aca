//! Our `External`: what the NEAR VM calls for storage, promises and yields while a
//! contract runs. Storage goes to the journaled [`Store`]; promises become
//! [`PendingReceipt`]s that the runtime turns into receipts if the call succeeds.

use crate::receipt::{DataReceiver, SYSTEM_ACCOUNT};
use crate::store::{Column, Key, Store, YieldEntry};
use near_crypto::PublicKey;
use near_primitives::account::{AccessKey, AccessKeyPermission, FunctionCallPermission};
use near_primitives::hash::CryptoHash;
use near_primitives::transaction::{
    Action, AddKeyAction, CreateAccountAction, DeleteAccountAction, DeleteKeyAction,
    DeployContractAction, FunctionCallAction, StakeAction, TransferAction,
};
use near_primitives::types::{AccountId, Balance, Gas, GasWeight, Nonce, NonceIndex};
use near_primitives_core::hash::YieldId;
use near_primitives_core::universal_state_init::{
    DecodeMode, RawStateInit, StateInitError, UniversalStateInitCounts,
};
use near_vm_runner::logic::types::{
    ActionIndex, GlobalContractDeployMode, GlobalContractIdentifier, ReceiptIndex,
};
use near_vm_runner::logic::{External, HostError, StorageAccessTracker, VMLogicError, ValuePtr};
use std::cell::RefCell;
use std::collections::HashSet;

/// Trie nodes a storage access is charged for. NEAR charges the nodes on the path
/// through the shard's trie; our state is a flat map, so we assume a typical depth.
/// Documented in devnet/README.md ("Gas").
pub const TRIE_DEPTH_ESTIMATE: u64 = 10;

/// A receipt a contract asked for, not yet created (the call may still fail).
#[derive(Debug)]
pub struct PendingReceipt {
    pub receiver: AccountId,
    pub actions: Vec<Action>,
    pub input_data_ids: Vec<CryptoHash>,
    pub output_data_receivers: Vec<DataReceiver>,
    /// Gas weights of function-call actions: (action index, weight).
    pub gas_weights: Vec<(usize, u64)>,
    pub refund_to: Option<AccountId>,
    pub is_yield: bool,
}

/// The state of one contract execution as the VM sees it.
pub struct RuntimeExt<'a> {
    pub store: &'a mut Store,
    pub account_id: AccountId,
    pub receipts: Vec<PendingReceipt>,
    /// Yields created by this call: (data id, timeout height).
    pub created_yields: Vec<(CryptoHash, u64)>,
    /// Data delivered by `promise_yield_resume`.
    pub resumes: Vec<(CryptoHash, Vec<u8>)>,
    /// Set when the contract used a host feature the devnet does not implement.
    pub unsupported: Option<&'static str>,
    data_id_seed: CryptoHash,
    data_count: u64,
    block_height: u64,
    yield_timeout: u64,
    chain_id: String,
    touched: RefCell<HashSet<Vec<u8>>>,
}

struct StoredValue(Vec<u8>);

impl ValuePtr for StoredValue {
    fn len(&self) -> u32 {
        self.0.len() as u32
    }

    fn deref(&self, _: &mut dyn StorageAccessTracker) -> Result<Vec<u8>, VMLogicError> {
        Ok(self.0.clone())
    }
}

impl<'a> RuntimeExt<'a> {
    pub fn new(
        store: &'a mut Store,
        account_id: AccountId,
        data_id_seed: CryptoHash,
        block_height: u64,
        yield_timeout: u64,
        chain_id: String,
    ) -> Self {
        RuntimeExt {
            store,
            account_id,
            receipts: Vec::new(),
            created_yields: Vec::new(),
            resumes: Vec::new(),
            unsupported: None,
            data_id_seed,
            data_count: 0,
            block_height,
            yield_timeout,
            chain_id,
            touched: RefCell::new(HashSet::new()),
        }
    }

    fn data_key(&self, key: &[u8]) -> Key {
        Key::new(&self.account_id, Column::ContractData, key)
    }

    /// Charges the trie nodes of an access: full price the first time a key is seen in
    /// this call, the cached price afterwards (like nearcore's chunk cache).
    fn charge_access(
        &self,
        tracker: &mut dyn StorageAccessTracker,
        key: &[u8],
    ) -> Result<(), VMLogicError> {
        if self.touched.borrow_mut().insert(key.to_vec()) {
            tracker.trie_node_touched(TRIE_DEPTH_ESTIMATE)
        } else {
            tracker.cached_trie_node_access(TRIE_DEPTH_ESTIMATE)
        }
    }

    fn push_action(&mut self, receipt_index: ReceiptIndex, action: Action) -> usize {
        let receipt = &mut self.receipts[receipt_index as usize];
        receipt.actions.push(action);
        receipt.actions.len() - 1
    }

    fn new_receipt(
        &mut self,
        receiver: AccountId,
        input_data_ids: Vec<CryptoHash>,
        is_yield: bool,
    ) -> ReceiptIndex {
        self.receipts.push(PendingReceipt {
            receiver,
            actions: Vec::new(),
            input_data_ids,
            output_data_receivers: Vec::new(),
            gas_weights: Vec::new(),
            refund_to: None,
            is_yield,
        });
        (self.receipts.len() - 1) as ReceiptIndex
    }

    fn unsupported(&mut self, what: &'static str) {
        self.unsupported.get_or_insert(what);
    }
}

fn decode_method_names(names: Vec<Vec<u8>>) -> Result<Vec<String>, VMLogicError> {
    names
        .into_iter()
        .map(|n| String::from_utf8(n).map_err(|_| HostError::InvalidMethodName.into()))
        .collect()
}

impl External for RuntimeExt<'_> {
    fn storage_set(
        &mut self,
        tracker: &mut dyn StorageAccessTracker,
        key: &[u8],
        value: &[u8],
    ) -> Result<Option<Vec<u8>>, VMLogicError> {
        self.charge_access(tracker, key)?;
        let old = self.store.set(self.data_key(key), value.to_vec());
        if let Some(old) = &old {
            tracker.deref_write_evicted_value_bytes(old.len() as u64)?;
        }
        Ok(old)
    }

    fn storage_get<'b>(
        &'b self,
        tracker: &mut dyn StorageAccessTracker,
        key: &[u8],
    ) -> Result<Option<Box<dyn ValuePtr + 'b>>, VMLogicError> {
        self.charge_access(tracker, key)?;
        Ok(self
            .store
            .get(&self.data_key(key))
            .map(|v| Box::new(StoredValue(v.clone())) as Box<dyn ValuePtr>))
    }

    fn storage_remove(
        &mut self,
        tracker: &mut dyn StorageAccessTracker,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, VMLogicError> {
        self.charge_access(tracker, key)?;
        let old = self.store.remove(&self.data_key(key));
        if let Some(old) = &old {
            tracker.deref_removed_value_bytes(old.len() as u64)?;
        }
        Ok(old)
    }

    fn storage_has_key(
        &mut self,
        tracker: &mut dyn StorageAccessTracker,
        key: &[u8],
    ) -> Result<bool, VMLogicError> {
        self.charge_access(tracker, key)?;
        Ok(self.store.get(&self.data_key(key)).is_some())
    }

    fn generate_data_id(&mut self) -> CryptoHash {
        let mut bytes = self.data_id_seed.as_bytes().to_vec();
        bytes.extend_from_slice(&self.data_count.to_le_bytes());
        self.data_count += 1;
        CryptoHash::hash_bytes(&bytes)
    }

    fn get_recorded_storage_size(&self) -> usize {
        0
    }

    fn storage_proof_size_before_receipt(&self) -> usize {
        0
    }

    fn validator_stake(&self, _account_id: &AccountId) -> Result<Option<Balance>, VMLogicError> {
        Ok(None)
    }

    fn validator_total_stake(&self) -> Result<Balance, VMLogicError> {
        Ok(Balance::ZERO)
    }

    fn chain_id(&self) -> String {
        self.chain_id.clone()
    }

    fn create_action_receipt(
        &mut self,
        receipt_indices: Vec<ReceiptIndex>,
        receiver_id: AccountId,
    ) -> Result<ReceiptIndex, VMLogicError> {
        let mut input_data_ids = Vec::with_capacity(receipt_indices.len());
        for index in receipt_indices {
            let data_id = self.generate_data_id();
            let dependency =
                self.receipts
                    .get_mut(index as usize)
                    .ok_or(HostError::InvalidReceiptIndex {
                        receipt_index: index,
                    })?;
            dependency.output_data_receivers.push(DataReceiver {
                data_id,
                receiver: receiver_id.clone(),
            });
            input_data_ids.push(data_id);
        }
        Ok(self.new_receipt(receiver_id, input_data_ids, false))
    }

    fn create_promise_yield_receipt(
        &mut self,
        receiver_id: AccountId,
    ) -> Result<(ReceiptIndex, CryptoHash), VMLogicError> {
        let data_id = self.generate_data_id();
        let expires_at = self.block_height + self.yield_timeout;
        self.store.set_yield(
            &data_id,
            &YieldEntry {
                account_id: receiver_id.clone(),
                expires_at,
            },
        );
        self.created_yields.push((data_id, expires_at));
        Ok((self.new_receipt(receiver_id, vec![data_id], true), data_id))
    }

    fn create_promise_yield_receipt_with_id(
        &mut self,
        _receiver_id: AccountId,
        _user_yield_id: YieldId,
    ) -> Result<Option<(ReceiptIndex, CryptoHash)>, VMLogicError> {
        self.unsupported("promise_yield_create_with_id");
        Ok(None)
    }

    fn submit_promise_resume_data(
        &mut self,
        data_id: CryptoHash,
        data: Vec<u8>,
    ) -> Result<bool, VMLogicError> {
        // Only the account that created the yield may resume it, and only once; a yield
        // that timed out is gone from the store already.
        let account = self.account_id.clone();
        if !self.store.remove_yield(&account, &data_id) {
            return Ok(false);
        }
        self.resumes.push((data_id, data));
        Ok(true)
    }

    fn submit_promise_resume_data_with_yield_id(
        &mut self,
        _user_yield_id: YieldId,
        _data: Vec<u8>,
    ) -> Result<bool, VMLogicError> {
        self.unsupported("promise_yield_resume_with_id");
        Ok(false)
    }

    fn append_action_create_account(&mut self, receipt_index: ReceiptIndex) {
        self.push_action(receipt_index, Action::CreateAccount(CreateAccountAction {}));
    }

    fn append_action_deploy_contract(&mut self, receipt_index: ReceiptIndex, code: Vec<u8>) {
        self.push_action(
            receipt_index,
            Action::DeployContract(DeployContractAction { code }),
        );
    }

    fn append_action_deploy_global_contract(
        &mut self,
        _receipt_index: ReceiptIndex,
        _code: Vec<u8>,
        _mode: GlobalContractDeployMode,
    ) {
        self.unsupported("global contracts");
    }

    fn append_action_use_global_contract(
        &mut self,
        _receipt_index: ReceiptIndex,
        _contract_id: GlobalContractIdentifier,
    ) {
        self.unsupported("global contracts");
    }

    fn append_action_deterministic_state_init(
        &mut self,
        _receipt_index: ReceiptIndex,
        _contract_id: GlobalContractIdentifier,
        _amount: Balance,
    ) -> ActionIndex {
        self.unsupported("deterministic state init");
        0
    }

    fn set_deterministic_state_init_data_entry(
        &mut self,
        _receipt_index: ReceiptIndex,
        _action_index: ActionIndex,
        _key: Vec<u8>,
        _value: Vec<u8>,
    ) -> Result<(), VMLogicError> {
        self.unsupported("deterministic state init");
        Ok(())
    }

    fn check_state_init(&self, _state_init: &RawStateInit) -> Result<(), StateInitError> {
        Err(StateInitError::Malformed)
    }

    fn state_init_send_counts(
        &self,
        state_init: &RawStateInit,
        _mode: DecodeMode,
    ) -> UniversalStateInitCounts {
        UniversalStateInitCounts {
            num_bytes: state_init.0.len() as u64,
            num_entries: 0,
            num_keys: 0,
        }
    }

    fn append_action_universal_state_init(
        &mut self,
        _receipt_index: ReceiptIndex,
        _state_init: RawStateInit,
        _amount: Balance,
    ) {
        self.unsupported("universal state init");
    }

    fn append_action_function_call_weight(
        &mut self,
        receipt_index: ReceiptIndex,
        method_name: Vec<u8>,
        args: Vec<u8>,
        attached_deposit: Balance,
        prepaid_gas: Gas,
        gas_weight: GasWeight,
    ) -> Result<(), VMLogicError> {
        let method_name =
            String::from_utf8(method_name).map_err(|_| HostError::InvalidMethodName)?;
        let index = self.push_action(
            receipt_index,
            Action::FunctionCall(Box::new(FunctionCallAction {
                method_name,
                args,
                gas: prepaid_gas,
                deposit: attached_deposit,
            })),
        );
        if gas_weight.0 > 0 {
            self.receipts[receipt_index as usize]
                .gas_weights
                .push((index, gas_weight.0));
        }
        Ok(())
    }

    fn append_action_transfer(&mut self, receipt_index: ReceiptIndex, deposit: Balance) {
        self.push_action(receipt_index, Action::Transfer(TransferAction { deposit }));
    }

    fn append_action_transfer_to_gas_key(
        &mut self,
        _receipt_index: ReceiptIndex,
        _public_key: PublicKey,
        _deposit: Balance,
    ) {
        self.unsupported("gas keys");
    }

    fn append_action_add_gas_key_with_full_access(
        &mut self,
        _receipt_index: ReceiptIndex,
        _public_key: PublicKey,
        _num_nonces: NonceIndex,
    ) {
        self.unsupported("gas keys");
    }

    fn append_action_add_gas_key_with_function_call(
        &mut self,
        _receipt_index: ReceiptIndex,
        _public_key: PublicKey,
        _num_nonces: NonceIndex,
        _allowance: Option<Balance>,
        _receiver_id: AccountId,
        _method_names: Vec<Vec<u8>>,
    ) -> Result<(), VMLogicError> {
        self.unsupported("gas keys");
        Ok(())
    }

    fn append_action_stake(
        &mut self,
        receipt_index: ReceiptIndex,
        stake: Balance,
        public_key: PublicKey,
    ) {
        self.push_action(
            receipt_index,
            Action::Stake(Box::new(StakeAction { stake, public_key })),
        );
    }

    fn append_action_add_key_with_full_access(
        &mut self,
        receipt_index: ReceiptIndex,
        public_key: PublicKey,
        nonce: Nonce,
    ) {
        self.push_action(
            receipt_index,
            Action::AddKey(Box::new(AddKeyAction {
                public_key,
                access_key: AccessKey {
                    nonce,
                    permission: AccessKeyPermission::FullAccess,
                },
            })),
        );
    }

    fn append_action_add_key_with_function_call(
        &mut self,
        receipt_index: ReceiptIndex,
        public_key: PublicKey,
        nonce: Nonce,
        allowance: Option<Balance>,
        receiver_id: AccountId,
        method_names: Vec<Vec<u8>>,
    ) -> Result<(), VMLogicError> {
        let method_names = decode_method_names(method_names)?;
        self.push_action(
            receipt_index,
            Action::AddKey(Box::new(AddKeyAction {
                public_key,
                access_key: AccessKey {
                    nonce,
                    permission: AccessKeyPermission::FunctionCall(FunctionCallPermission {
                        allowance,
                        receiver_id: receiver_id.to_string(),
                        method_names,
                    }),
                },
            })),
        );
        Ok(())
    }

    fn append_action_delete_key(&mut self, receipt_index: ReceiptIndex, public_key: PublicKey) {
        self.push_action(
            receipt_index,
            Action::DeleteKey(Box::new(DeleteKeyAction { public_key })),
        );
    }

    fn append_action_delete_account(
        &mut self,
        receipt_index: ReceiptIndex,
        beneficiary_id: AccountId,
    ) {
        self.push_action(
            receipt_index,
            Action::DeleteAccount(DeleteAccountAction { beneficiary_id }),
        );
    }

    fn get_receipt_receiver(&self, receipt_index: ReceiptIndex) -> &AccountId {
        &self.receipts[receipt_index as usize].receiver
    }

    fn set_refund_to(&mut self, receipt_index: ReceiptIndex, refund_to: AccountId) {
        self.receipts[receipt_index as usize].refund_to = Some(refund_to);
    }

    fn post_quantum_keys_enabled(&self) -> bool {
        false
    }
}

/// Whether `account` is the system account refunds come from.
pub fn is_system(account: &AccountId) -> bool {
    account.as_str() == SYSTEM_ACCOUNT
}
