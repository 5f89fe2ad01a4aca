//! Maps and sets kept as sorted vectors, for the protocol state's small collections
//! (participants, candidates, votes: tens of entries at most).
//!
//! Why not `BTreeMap`/`BTreeSet`: each key and value type instantiates the B-tree's
//! node code, about a seventh of the wasm for our handful of collections, and every
//! receipt pays to load the code. A sorted vector does the same job in a fraction
//! of the code, and is as fast at these sizes.
//!
//! Both have exactly the formats of the B-tree collections they replace, so stored
//! state and the JSON of views and arguments are unchanged: borsh writes the length
//! and the entries in key order (and reading refuses entries out of order, which
//! keeps the binary search sound); JSON writes an object (map) or an array (set) in
//! key order, and reading takes any order (a repeated key: the last one counts).

use borsh::io::{Error as IoError, ErrorKind, Read, Result as IoResult, Write};
use borsh::{BorshDeserialize, BorshSerialize};
use near_sdk::serde::de::{MapAccess, SeqAccess, Visitor};
use near_sdk::serde::ser::{SerializeMap, SerializeSeq};
use near_sdk::serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Borrow;
use std::fmt;
use std::marker::PhantomData;

/// A map kept sorted by key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SortedMap<K, V> {
    entries: Vec<(K, V)>,
}

impl<K, V> Default for SortedMap<K, V> {
    fn default() -> Self {
        SortedMap {
            entries: Vec::new(),
        }
    }
}

impl<K: Ord, V> SortedMap<K, V> {
    pub fn new() -> Self {
        Self::default()
    }

    fn find<Q: Ord + ?Sized>(&self, key: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
    {
        self.entries.binary_search_by(|(k, _)| k.borrow().cmp(key))
    }

    /// Inserts or replaces; returns the value replaced.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.find(&key) {
            Ok(at) => Some(std::mem::replace(&mut self.entries[at].1, value)),
            Err(at) => {
                self.entries.insert(at, (key, value));
                None
            }
        }
    }

    pub fn get<Q: Ord + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.find(key).ok().map(|at| &self.entries[at].1)
    }

    pub fn get_mut<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        self.find(key).ok().map(|at| &mut self.entries[at].1)
    }

    pub fn contains_key<Q: Ord + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.find(key).is_ok()
    }

    pub fn remove<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.find(key).ok().map(|at| self.entries.remove(at).1)
    }

    /// The value at `key`, inserted as `V::default()` if absent.
    pub fn get_or_default(&mut self, key: K) -> &mut V
    where
        V: Default,
    {
        let at = match self.find(&key) {
            Ok(at) => at,
            Err(at) => {
                self.entries.insert(at, (key, V::default()));
                at
            }
        };
        &mut self.entries[at].1
    }
}

impl<K, V> SortedMap<K, V> {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        self.entries.retain_mut(|(k, v)| keep(k, v));
    }

    /// The entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.entries.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().map(|(_, v)| v)
    }

    pub fn into_keys(self) -> impl Iterator<Item = K> {
        self.entries.into_iter().map(|(k, _)| k)
    }

    pub fn into_values(self) -> impl Iterator<Item = V> {
        self.entries.into_iter().map(|(_, v)| v)
    }
}

impl<K: Ord, V, Q: Ord + ?Sized> std::ops::Index<&Q> for SortedMap<K, V>
where
    K: Borrow<Q>,
{
    type Output = V;

    fn index(&self, key: &Q) -> &V {
        self.get(key).expect("no entry for this key")
    }
}

/// `BTreeMap::from_iter`'s semantics for a list in any order: stably sorted (by
/// `sort`), then of each run of equal items (`same`) only the last kept. O(n log n),
/// where inserting one at a time into the vector would be O(n²).
fn sort_keep_last<T>(
    mut items: Vec<T>,
    sort: impl FnOnce(&mut [T]),
    same: impl Fn(&T, &T) -> bool,
) -> Vec<T> {
    sort(&mut items);
    // `dedup_by` keeps the first of a run: move each later one into its place.
    items.dedup_by(|later, kept| {
        let same = same(later, kept);
        if same {
            std::mem::swap(later, kept);
        }
        same
    });
    items
}

impl<K: Ord, V> SortedMap<K, V> {
    /// The map of `entries` in any order; of equal keys the last wins.
    fn from_unsorted(entries: Vec<(K, V)>) -> Self {
        SortedMap {
            entries: sort_keep_last(
                entries,
                |e| e.sort_by(|a, b| a.0.cmp(&b.0)),
                |a, b| a.0 == b.0,
            ),
        }
    }
}

/// One insert at a time: O(n log n) for entries in key order, as the contract
/// collects them (each goes last); input in any order is read with
/// `from_unsorted`. A later equal key replaces the value, as in `BTreeMap`.
impl<K: Ord, V> FromIterator<(K, V)> for SortedMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut map = SortedMap::new();
        for (k, v) in iter {
            map.insert(k, v);
        }
        map
    }
}

impl<K, V> IntoIterator for SortedMap<K, V> {
    type Item = (K, V);
    type IntoIter = std::vec::IntoIter<(K, V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl<'a, K, V> IntoIterator for &'a SortedMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = std::iter::Map<std::slice::Iter<'a, (K, V)>, fn(&'a (K, V)) -> (&'a K, &'a V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|(k, v)| (k, v))
    }
}

/// A set kept sorted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SortedSet<T> {
    items: Vec<T>,
}

impl<T> Default for SortedSet<T> {
    fn default() -> Self {
        SortedSet { items: Vec::new() }
    }
}

impl<T: Ord> SortedSet<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `item`; returns whether it was new.
    pub fn insert(&mut self, item: T) -> bool {
        match self.items.binary_search(&item) {
            Ok(_) => false,
            Err(at) => {
                self.items.insert(at, item);
                true
            }
        }
    }

    pub fn contains<Q: Ord + ?Sized>(&self, item: &Q) -> bool
    where
        T: Borrow<Q>,
    {
        self.items
            .binary_search_by(|t| t.borrow().cmp(item))
            .is_ok()
    }
}

impl<T> SortedSet<T> {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn clear(&mut self) {
        self.items.clear();
    }

    /// The items in order.
    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.items.iter()
    }
}

impl<T: Ord> SortedSet<T> {
    /// The set of `items` in any order.
    fn from_unsorted(items: Vec<T>) -> Self {
        SortedSet {
            items: sort_keep_last(items, <[T]>::sort, T::eq),
        }
    }
}

/// One insert at a time, as for [`SortedMap`].
impl<T: Ord> FromIterator<T> for SortedSet<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut set = SortedSet::new();
        for item in iter {
            set.insert(item);
        }
        set
    }
}

impl<'a, T> IntoIterator for &'a SortedSet<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

// ------------------------------------------------------------------ borsh

/// Refuses entries whose keys do not strictly increase (what borsh's strict mode
/// refuses for the B-tree collections).
fn check_ascending<T, K: Ord>(items: &[T], key: impl Fn(&T) -> &K) -> IoResult<()> {
    if items.windows(2).all(|pair| key(&pair[0]) < key(&pair[1])) {
        Ok(())
    } else {
        Err(IoError::new(
            ErrorKind::InvalidData,
            "keys were not serialized in ascending order",
        ))
    }
}

impl<K: BorshSerialize, V: BorshSerialize> BorshSerialize for SortedMap<K, V> {
    fn serialize<W: Write>(&self, writer: &mut W) -> IoResult<()> {
        self.entries.serialize(writer)
    }
}

impl<K: BorshDeserialize + Ord, V: BorshDeserialize> BorshDeserialize for SortedMap<K, V> {
    fn deserialize_reader<R: Read>(reader: &mut R) -> IoResult<Self> {
        let entries = Vec::<(K, V)>::deserialize_reader(reader)?;
        check_ascending(&entries, |(k, _)| k)?;
        Ok(SortedMap { entries })
    }
}

impl<T: BorshSerialize> BorshSerialize for SortedSet<T> {
    fn serialize<W: Write>(&self, writer: &mut W) -> IoResult<()> {
        self.items.serialize(writer)
    }
}

impl<T: BorshDeserialize + Ord> BorshDeserialize for SortedSet<T> {
    fn deserialize_reader<R: Read>(reader: &mut R) -> IoResult<Self> {
        let items = Vec::<T>::deserialize_reader(reader)?;
        check_ascending(&items, |t| t)?;
        Ok(SortedSet { items })
    }
}

// ------------------------------------------------------------------ JSON

impl<K: Serialize, V: Serialize> Serialize for SortedMap<K, V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.entries.len()))?;
        for (k, v) in &self.entries {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de, K: Deserialize<'de> + Ord, V: Deserialize<'de>> Deserialize<'de> for SortedMap<K, V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<K, V>(PhantomData<(K, V)>);
        impl<'de, K: Deserialize<'de> + Ord, V: Deserialize<'de>> Visitor<'de> for MapVisitor<K, V> {
            type Value = SortedMap<K, V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                // Collected, then sorted once (a later repeated key wins, as in
                // `BTreeMap`).
                let mut entries = Vec::new();
                while let Some(entry) = access.next_entry()? {
                    entries.push(entry);
                }
                Ok(SortedMap::from_unsorted(entries))
            }
        }
        deserializer.deserialize_map(MapVisitor(PhantomData))
    }
}

impl<T: Serialize> Serialize for SortedSet<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.items.len()))?;
        for item in &self.items {
            seq.serialize_element(item)?;
        }
        seq.end()
    }
}

impl<'de, T: Deserialize<'de> + Ord> Deserialize<'de> for SortedSet<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SetVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de> + Ord> Visitor<'de> for SetVisitor<T> {
            type Value = SortedSet<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a sequence")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = access.next_element()? {
                    items.push(item);
                }
                Ok(SortedSet::from_unsorted(items))
            }
        }
        deserializer.deserialize_seq(SetVisitor(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use near_sdk::serde_json;
    use std::collections::{BTreeMap, BTreeSet};

    #[test]
    fn formats_are_the_b_tree_collections() {
        let pairs = [(5u32, "e"), (1, "a"), (3, "c"), (1, "z")];
        let ours: SortedMap<u32, String> = pairs.iter().map(|(k, v)| (*k, v.to_string())).collect();
        let theirs: BTreeMap<u32, String> =
            pairs.iter().map(|(k, v)| (*k, v.to_string())).collect();
        assert_eq!(
            borsh::to_vec(&ours).unwrap(),
            borsh::to_vec(&theirs).unwrap()
        );
        assert_eq!(
            serde_json::to_string(&ours).unwrap(),
            serde_json::to_string(&theirs).unwrap()
        );
        let json = r#"{"9":"x","2":"y","9":"w"}"#;
        let ours: SortedMap<u32, String> = serde_json::from_str(json).unwrap();
        let theirs: BTreeMap<u32, String> = serde_json::from_str(json).unwrap();
        assert_eq!(
            ours.iter().collect::<Vec<_>>(),
            theirs.iter().collect::<Vec<_>>()
        );
        let bytes = borsh::to_vec(&theirs).unwrap();
        assert_eq!(
            SortedMap::<u32, String>::try_from_slice(&bytes).unwrap(),
            ours
        );

        let set: SortedSet<u8> = [3, 1, 2, 3].into_iter().collect();
        let btree: BTreeSet<u8> = [3, 1, 2, 3].into_iter().collect();
        assert_eq!(borsh::to_vec(&set).unwrap(), borsh::to_vec(&btree).unwrap());
        assert_eq!(
            serde_json::to_string(&set).unwrap(),
            serde_json::to_string(&btree).unwrap()
        );
        assert_eq!(
            serde_json::from_str::<SortedSet<u8>>("[2,1,2]")
                .unwrap()
                .len(),
            2
        );

        // Out of order or repeated keys are not a stored collection.
        let unordered = borsh::to_vec(&vec![2u8, 1]).unwrap();
        assert!(SortedSet::<u8>::try_from_slice(&unordered).is_err());
        let repeated = borsh::to_vec(&vec![(1u8, 0u8), (1, 1)]).unwrap();
        assert!(SortedMap::<u8, u8>::try_from_slice(&repeated).is_err());
    }

    #[test]
    fn unsorted_input_is_read_as_the_b_tree_collections_read_it() {
        // Keys out of order and repeated, far apart: the last value of a key wins.
        let keys: Vec<u32> = (0..500).map(|i| (i * 7919) % 211).collect();
        let pairs: Vec<(u32, usize)> = keys.iter().copied().zip(0..).collect();
        let ours: SortedMap<u32, usize> = pairs.iter().copied().collect();
        let theirs: BTreeMap<u32, usize> = pairs.iter().copied().collect();
        assert_eq!(ours.len(), 211);
        assert!(ours.iter().eq(theirs.iter()));
        let members: Vec<String> = pairs.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        let json = format!("{{{}}}", members.join(","));
        let ours: SortedMap<String, usize> = crate::json::from_slice(json.as_bytes()).unwrap();
        let theirs: BTreeMap<String, usize> = serde_json::from_str(&json).unwrap();
        assert_eq!(ours.len(), 211);
        assert!(ours.iter().eq(theirs.iter()));

        let set: SortedSet<u32> =
            crate::json::from_slice(serde_json::to_string(&keys).unwrap().as_bytes()).unwrap();
        let btree: BTreeSet<u32> = keys.iter().copied().collect();
        assert!(set.iter().eq(btree.iter()));
        assert_eq!(keys.iter().copied().collect::<SortedSet<u32>>(), set);
    }

    #[test]
    fn map_operations() {
        let mut map = SortedMap::new();
        assert_eq!(map.insert("b", 2), None);
        assert_eq!(map.insert("a", 1), None);
        assert_eq!(map.insert("b", 3), Some(2));
        assert_eq!(map.keys().copied().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(map["b"], 3);
        *map.get_or_default("c") += 4;
        assert_eq!(map.remove("a"), Some(1));
        map.retain(|_, v| *v > 3);
        assert_eq!(map.into_iter().collect::<Vec<_>>(), [("c", 4)]);
    }
}
