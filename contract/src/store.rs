//! Maps in contract storage, laid out exactly as near-sdk's `store::IterableMap`
//! (SHA-256 keys) and `store::LookupMap` lay them out, so the stored state is the
//! same, but reading and writing storage directly.
//!
//! Why: near-sdk's collections cache what they touch in B-tree maps and write back
//! when dropped, code that each key and value type instantiates again; that was a
//! tenth of the wasm, and every receipt pays to load the code. These maps read on
//! `get` and write on `insert`/`remove`, so a caller changes a value by getting,
//! changing and inserting it back.
//!
//! Layouts (`P` is the map's prefix):
//! - [`IterableStore`]: the root holds the number of entries and two prefixes, `P v`
//!   and `P m`; key number `i` is at `P v ‖ i (u32, little end)`, and the value of key
//!   `k` at `sha256(P m ‖ borsh(k))`, followed by its key's number (u32). Removing an
//!   entry moves the last key into its place (near-sdk's `swap_remove`).
//! - [`LookupStore`]: the root holds `P`; the value of `k` is at `P ‖ borsh(k)`.

use borsh::{BorshDeserialize, BorshSerialize};
use near_sdk::env;
use near_sdk::IntoStorageKey;
use std::marker::PhantomData;

const INCONSISTENT: &str = "inconsistent state: a stored map lost an entry";

fn encode<T: BorshSerialize + ?Sized>(value: &T) -> Vec<u8> {
    borsh::to_vec(value).unwrap_or_else(|_| env::abort())
}

fn decode<T: BorshDeserialize>(bytes: &[u8]) -> T {
    T::try_from_slice(bytes).unwrap_or_else(|_| env::panic_str("cannot read a stored value"))
}

/// A map that keeps its keys in a list, so it can be iterated and paged through.
#[derive(BorshSerialize, BorshDeserialize)]
pub struct IterableStore<K, V> {
    len: u32,
    keys_prefix: Vec<u8>,
    values_prefix: Vec<u8>,
    #[borsh(skip)]
    types: PhantomData<fn() -> (K, V)>,
}

impl<K: BorshSerialize + BorshDeserialize, V: BorshSerialize + BorshDeserialize>
    IterableStore<K, V>
{
    pub fn new(prefix: impl IntoStorageKey) -> Self {
        let prefix = prefix.into_storage_key();
        IterableStore {
            len: 0,
            keys_prefix: [prefix.as_slice(), b"v"].concat(),
            values_prefix: [prefix.as_slice(), b"m"].concat(),
            types: PhantomData,
        }
    }

    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn value_key(&self, key: &K) -> [u8; 32] {
        let mut buffer = self.values_prefix.clone();
        key.serialize(&mut buffer).unwrap_or_else(|_| env::abort());
        env::sha256_array(&buffer)
    }

    fn index_key(&self, index: u32) -> Vec<u8> {
        [self.keys_prefix.as_slice(), &index.to_le_bytes()].concat()
    }

    /// The stored value and its key's number, as bytes: `borsh(value) ‖ index`.
    fn read_entry(&self, key: &K) -> Option<(Vec<u8>, u32)> {
        let mut bytes = env::storage_read(&self.value_key(key))?;
        let split = bytes
            .len()
            .checked_sub(4)
            .unwrap_or_else(|| env::panic_str(INCONSISTENT));
        let index = u32::from_le_bytes(bytes[split..].try_into().unwrap_or_else(|_| env::abort()));
        bytes.truncate(split);
        Some((bytes, index))
    }

    fn write_entry(&self, key: &K, mut value: Vec<u8>, index: u32) {
        value.extend_from_slice(&index.to_le_bytes());
        env::storage_write(&self.value_key(key), &value);
    }

    pub fn get(&self, key: &K) -> Option<V> {
        self.read_entry(key).map(|(bytes, _)| decode(&bytes))
    }

    /// The value of `key` to change and [`IterableStore::update`]: keeps the
    /// entry's place, so the update needs no second read.
    ///
    /// The place goes stale if another key is removed before the update (the last
    /// key may move into a removed key's place): update before removing any other
    /// key, or read the entry again after.
    pub fn entry(&self, key: &K) -> Option<Stored<V>> {
        self.read_entry(key).map(|(bytes, index)| Stored {
            value: decode(&bytes),
            index,
        })
    }

    /// Writes back a value read with [`IterableStore::entry`].
    pub fn update(&mut self, key: &K, stored: &Stored<V>) {
        self.write_entry(key, encode(&stored.value), stored.index);
    }

    pub fn contains_key(&self, key: &K) -> bool {
        env::storage_has_key(&self.value_key(key))
    }

    /// Inserts or replaces the value of `key` (a new key goes last).
    pub fn insert(&mut self, key: &K, value: &V) {
        match self.read_entry(key) {
            Some((_, index)) => self.write_entry(key, encode(value), index),
            None => self.insert_new(key, value),
        }
    }

    /// Adds `key`, which the caller knows is not in the map (saves a read).
    pub fn insert_new(&mut self, key: &K, value: &V) {
        let index = self.len;
        env::storage_write(&self.index_key(index), &encode(key));
        self.len += 1;
        self.write_entry(key, encode(value), index);
    }

    /// Removes `key`; the last key takes its place in the list.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        // The host hands back what it removed: no read before.
        if !env::storage_remove(&self.value_key(key)) {
            return None;
        }
        let mut bytes = env::storage_get_evicted().unwrap_or_else(|| env::abort());
        let split = bytes
            .len()
            .checked_sub(4)
            .unwrap_or_else(|| env::panic_str(INCONSISTENT));
        let index = u32::from_le_bytes(bytes[split..].try_into().unwrap_or_else(|_| env::abort()));
        bytes.truncate(split);
        let last = self
            .len
            .checked_sub(1)
            .unwrap_or_else(|| env::panic_str(INCONSISTENT));
        if index != last {
            let moved = env::storage_read(&self.index_key(last))
                .unwrap_or_else(|| env::panic_str(INCONSISTENT));
            env::storage_write(&self.index_key(index), &moved);
            let moved: K = decode(&moved);
            let (value, _) = self
                .read_entry(&moved)
                .unwrap_or_else(|| env::panic_str(INCONSISTENT));
            self.write_entry(&moved, value, index);
        }
        env::storage_remove(&self.index_key(last));
        self.len = last;
        Some(decode(&bytes))
    }

    /// The key at position `index` of the list.
    fn key_at(&self, index: u32) -> K {
        let bytes = env::storage_read(&self.index_key(index))
            .unwrap_or_else(|| env::panic_str(INCONSISTENT));
        decode(&bytes)
    }

    /// The entries from position `from` of the list on, in list order.
    pub fn iter_from(&self, from: u32) -> impl Iterator<Item = (K, V)> + '_ {
        (from..self.len).map(|index| {
            let key = self.key_at(index);
            let value = self
                .get(&key)
                .unwrap_or_else(|| env::panic_str(INCONSISTENT));
            (key, value)
        })
    }

    /// Removes every entry, returning them in list order.
    pub fn drain(&mut self) -> Vec<(K, V)> {
        let entries: Vec<(K, V)> = self.iter_from(0).collect();
        for index in 0..self.len {
            env::storage_remove(&self.index_key(index));
        }
        for (key, _) in &entries {
            env::storage_remove(&self.value_key(key));
        }
        self.len = 0;
        entries
    }
}

/// A value read for update, with its place in the list.
pub struct Stored<V> {
    pub value: V,
    index: u32,
}

/// A map without a list of its keys.
#[derive(BorshSerialize, BorshDeserialize)]
pub struct LookupStore<K, V> {
    prefix: Vec<u8>,
    #[borsh(skip)]
    types: PhantomData<fn() -> (K, V)>,
}

impl<K: BorshSerialize, V: BorshSerialize + BorshDeserialize> LookupStore<K, V> {
    pub fn new(prefix: impl IntoStorageKey) -> Self {
        LookupStore {
            prefix: prefix.into_storage_key(),
            types: PhantomData,
        }
    }

    fn key(&self, key: &K) -> Vec<u8> {
        let mut buffer = self.prefix.clone();
        key.serialize(&mut buffer).unwrap_or_else(|_| env::abort());
        buffer
    }

    pub fn get(&self, key: &K) -> Option<V> {
        env::storage_read(&self.key(key)).map(|bytes| decode(&bytes))
    }

    pub fn insert(&mut self, key: &K, value: &V) {
        env::storage_write(&self.key(key), &encode(value));
    }

    pub fn remove(&mut self, key: &K) {
        env::storage_remove(&self.key(key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use near_sdk::store::{IterableMap, LookupMap};
    use near_sdk::test_utils::VMContextBuilder;
    use near_sdk::testing_env;

    /// This test's storage as a sorted list of (key, value), taken out of the mock.
    fn take_storage() -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut all: Vec<_> =
            near_sdk::mock::with_mocked_blockchain(|b| b.take_storage().into_iter().collect());
        all.sort();
        all
    }

    #[test]
    fn layout_is_near_sdks() {
        // The same operations on both, in fresh storages: the same bytes result.
        let run_ours = || {
            let mut map = IterableStore::<String, u64>::new(b"p");
            let mut counts = LookupStore::<String, u32>::new(b"c");
            for (i, k) in ["a", "b", "c", "d"].iter().enumerate() {
                map.insert(&k.to_string(), &(i as u64));
                counts.insert(&k.to_string(), &(i as u32));
            }
            map.insert(&"b".to_string(), &7);
            assert_eq!(map.remove(&"a".to_string()), Some(0));
            counts.remove(&"a".to_string());
            assert_eq!(map.get(&"b".to_string()), Some(7));
            let order: Vec<_> = map.iter_from(0).collect();
            (
                borsh::to_vec(&map).unwrap(),
                borsh::to_vec(&counts).unwrap(),
                order,
            )
        };
        let run_sdk = || {
            let mut map = IterableMap::<String, u64>::new(b"p");
            let mut counts = LookupMap::<String, u32>::new(b"c");
            for (i, k) in ["a", "b", "c", "d"].iter().enumerate() {
                map.insert(k.to_string(), i as u64);
                counts.insert(k.to_string(), i as u32);
            }
            map.insert("b".to_string(), 7);
            assert_eq!(map.remove("a"), Some(0));
            counts.remove("a");
            map.flush();
            counts.flush();
            let order: Vec<_> = map.iter().map(|(k, v)| (k.clone(), *v)).collect();
            (
                borsh::to_vec(&map).unwrap(),
                borsh::to_vec(&counts).unwrap(),
                order,
            )
        };
        testing_env!(VMContextBuilder::new().build());
        let ours = run_ours();
        let our_storage = take_storage();
        testing_env!(VMContextBuilder::new().build());
        let sdk = run_sdk();
        assert_eq!(ours, sdk);
        assert_eq!(our_storage, take_storage());
    }
}
