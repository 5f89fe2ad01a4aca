//! The chain state: one ordered key-value map with an undo journal.
//!
//! Every write records the previous value, so a failed receipt is undone with
//! [`Store::rollback`] to a checkpoint (NEAR discards all state changes of a failed
//! receipt). Keys are ordered by account first, which makes per-account prefix scans
//! (`view_state`, `view_access_key_list`) plain range reads.

use borsh::{BorshDeserialize, BorshSerialize};
use near_crypto::PublicKey;
use near_primitives::account::{AccessKey, Account};
use near_primitives::hash::CryptoHash;
use near_primitives::types::AccountId;
use near_vm_runner::ContractCode;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A state key: the owning account first, so that everything of one account is
/// contiguous in the map.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, BorshSerialize, BorshDeserialize)]
pub struct Key {
    pub account: AccountId,
    pub column: Column,
    pub bytes: Vec<u8>,
}

/// What a [`Key`] holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, BorshSerialize, BorshDeserialize)]
pub enum Column {
    /// The account record (`bytes` empty).
    Account,
    /// An access key; `bytes` is the borsh public key.
    AccessKey,
    /// Contract storage; `bytes` is the contract's key.
    ContractData,
    /// A NEP-519 yield still waiting for data; `bytes` is the data id.
    Yield,
}

impl Key {
    pub fn new(account: &AccountId, column: Column, bytes: impl Into<Vec<u8>>) -> Key {
        Key {
            account: account.clone(),
            column,
            bytes: bytes.into(),
        }
    }
}

/// A yield waiting for data, stored until it is resumed or times out.
#[derive(Clone, Debug, BorshSerialize, BorshDeserialize)]
pub struct YieldEntry {
    /// The account whose contract created the yield (only it may resume it).
    pub account_id: AccountId,
    /// The block height at which the yield times out.
    pub expires_at: u64,
}

/// The journaled state plus the content-addressed contract code.
#[derive(Default, BorshSerialize, BorshDeserialize)]
pub struct Store {
    map: BTreeMap<Key, Vec<u8>>,
    #[borsh(skip)]
    journal: Vec<(Key, Option<Vec<u8>>)>,
    /// Code by hash. Never journaled: code is immutable per hash, and an account only
    /// refers to it after a successful deploy.
    code: BTreeMap<CryptoHash, Vec<u8>>,
    #[borsh(skip)]
    code_cache: HashMap<CryptoHash, Arc<ContractCode>>,
}

impl Store {
    pub fn get(&self, key: &Key) -> Option<&Vec<u8>> {
        self.map.get(key)
    }

    /// Writes `value`, returning the previous one.
    pub fn set(&mut self, key: Key, value: Vec<u8>) -> Option<Vec<u8>> {
        let old = self.map.insert(key.clone(), value);
        self.journal.push((key, old.clone()));
        old
    }

    pub fn remove(&mut self, key: &Key) -> Option<Vec<u8>> {
        let old = self.map.remove(key);
        if old.is_some() {
            self.journal.push((key.clone(), old.clone()));
        }
        old
    }

    /// A point to roll back to.
    pub fn checkpoint(&self) -> usize {
        self.journal.len()
    }

    /// Undoes every write since `checkpoint`.
    pub fn rollback(&mut self, checkpoint: usize) {
        while self.journal.len() > checkpoint {
            let (key, old) = self.journal.pop().expect("length checked");
            match old {
                Some(value) => self.map.insert(key, value),
                None => self.map.remove(&key),
            };
        }
    }

    /// Makes every write so far permanent (forgets the journal).
    pub fn commit(&mut self) {
        self.journal.clear();
    }

    /// Number of keys in the state, for the trie-depth approximation.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    // ---------------------------------------------------------------- typed access

    pub fn account(&self, id: &AccountId) -> Option<Account> {
        self.get(&Key::new(id, Column::Account, []))
            .map(|bytes| Account::try_from_slice(bytes).expect("stored accounts decode"))
    }

    pub fn set_account(&mut self, id: &AccountId, account: &Account) {
        self.set(
            Key::new(id, Column::Account, []),
            borsh::to_vec(account).expect("accounts encode"),
        );
    }

    pub fn access_key(&self, id: &AccountId, public_key: &PublicKey) -> Option<AccessKey> {
        self.get(&access_key_key(id, public_key))
            .map(|bytes| AccessKey::try_from_slice(bytes).expect("stored keys decode"))
    }

    pub fn set_access_key(&mut self, id: &AccountId, public_key: &PublicKey, key: &AccessKey) {
        self.set(
            access_key_key(id, public_key),
            borsh::to_vec(key).expect("keys encode"),
        );
    }

    pub fn remove_access_key(&mut self, id: &AccountId, public_key: &PublicKey) {
        self.remove(&access_key_key(id, public_key));
    }

    /// All access keys of `id`, in key order.
    pub fn access_keys(&self, id: &AccountId) -> Vec<(PublicKey, AccessKey)> {
        self.map
            .range(Key::new(id, Column::AccessKey, [])..)
            .take_while(|(key, _)| &key.account == id && key.column == Column::AccessKey)
            .map(|(key, value)| {
                (
                    PublicKey::try_from_slice(&key.bytes).expect("stored public keys decode"),
                    AccessKey::try_from_slice(value).expect("stored keys decode"),
                )
            })
            .collect()
    }

    /// Contract storage of `id` whose keys start with `prefix`, in key order.
    pub fn contract_data(&self, id: &AccountId, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.map
            .range(Key::new(id, Column::ContractData, prefix)..)
            .take_while(|(key, _)| {
                &key.account == id
                    && key.column == Column::ContractData
                    && key.bytes.starts_with(prefix)
            })
            .map(|(key, value)| (key.bytes.clone(), value.clone()))
            .collect()
    }

    /// Every key of `id` (record, keys, data, yields), for deleting the account.
    pub fn keys_of_account(&self, id: &AccountId) -> Vec<Key> {
        self.map
            .range(Key::new(id, Column::Account, [])..)
            .map(|(key, _)| key)
            .take_while(|key| &key.account == id)
            .cloned()
            .collect()
    }

    /// The yield `data_id` of `account`, if it still waits.
    pub fn yield_entry(&self, account: &AccountId, data_id: &CryptoHash) -> Option<YieldEntry> {
        self.get(&Key::new(
            account,
            Column::Yield,
            data_id.as_bytes().to_vec(),
        ))
        .map(|bytes| YieldEntry::try_from_slice(bytes).expect("stored yields decode"))
    }

    pub fn set_yield(&mut self, data_id: &CryptoHash, entry: &YieldEntry) {
        self.set(
            Key::new(
                &entry.account_id,
                Column::Yield,
                data_id.as_bytes().to_vec(),
            ),
            borsh::to_vec(entry).expect("yields encode"),
        );
    }

    /// Removes a waiting yield; returns whether it was waiting.
    pub fn remove_yield(&mut self, account: &AccountId, data_id: &CryptoHash) -> bool {
        self.remove(&Key::new(
            account,
            Column::Yield,
            data_id.as_bytes().to_vec(),
        ))
        .is_some()
    }

    pub fn put_code(&mut self, code: Vec<u8>) -> CryptoHash {
        let hash = CryptoHash::hash_bytes(&code);
        self.code.entry(hash).or_insert(code);
        hash
    }

    /// The code with `hash`, shared (the VM's cache keys compiled modules by hash).
    pub fn code(&mut self, hash: &CryptoHash) -> Option<Arc<ContractCode>> {
        if let Some(code) = self.code_cache.get(hash) {
            return Some(code.clone());
        }
        let bytes = self.code.get(hash)?.clone();
        let code = Arc::new(ContractCode::new(bytes, Some(*hash)));
        self.code_cache.insert(*hash, code.clone());
        Some(code)
    }

    pub fn code_bytes(&self, hash: &CryptoHash) -> Option<&Vec<u8>> {
        self.code.get(hash)
    }
}

fn access_key_key(id: &AccountId, public_key: &PublicKey) -> Key {
    Key::new(
        id,
        Column::AccessKey,
        borsh::to_vec(public_key).expect("public keys encode"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> AccountId {
        s.parse().unwrap()
    }

    #[test]
    fn rollback_restores_values_and_removals() {
        let mut store = Store::default();
        store.set(
            Key::new(&id("a.near"), Column::ContractData, b"k".to_vec()),
            b"1".to_vec(),
        );
        store.commit();
        let cp = store.checkpoint();
        store.set(
            Key::new(&id("a.near"), Column::ContractData, b"k".to_vec()),
            b"2".to_vec(),
        );
        store.set(
            Key::new(&id("a.near"), Column::ContractData, b"new".to_vec()),
            b"3".to_vec(),
        );
        store.remove(&Key::new(
            &id("a.near"),
            Column::ContractData,
            b"k".to_vec(),
        ));
        store.rollback(cp);
        assert_eq!(
            store.contract_data(&id("a.near"), b""),
            vec![(b"k".to_vec(), b"1".to_vec())]
        );
    }

    #[test]
    fn prefix_scans_stay_within_one_account() {
        let mut store = Store::default();
        for account in ["a.near", "ab.near", "b.near"] {
            store.set(
                Key::new(&id(account), Column::ContractData, b"x1".to_vec()),
                vec![],
            );
            store.set(
                Key::new(&id(account), Column::ContractData, b"y".to_vec()),
                vec![],
            );
        }
        assert_eq!(store.contract_data(&id("ab.near"), b"x").len(), 1);
        assert_eq!(store.contract_data(&id("ab.near"), b"").len(), 2);
        assert_eq!(store.keys_of_account(&id("a.near")).len(), 2);
    }
}
