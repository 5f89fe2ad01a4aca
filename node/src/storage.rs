//! The node's durable state, in one redb database (ACID, crash-safe): its key
//! shares (one per domain and epoch, tagged with the key-event attempt that made
//! it) and its stock (triples, presignatures, nonce commitments: one table per
//! [`RecordKind`], named by each scheme). (No chain cursor: the
//! contract keeps every request pending until it is answered or times out, and the
//! node reads that whole list, so a restart cannot skip one.)
//!
//! Secrets are sealed with AES-256-GCM under the node's storage key (32 bytes the
//! operator supplies, never stored here), with the table and record id as associated
//! data, so a ciphertext cannot be moved to another slot. The database remembers a
//! sealed check value, so opening it with the wrong key fails at once with a clear
//! error rather than at the first signature. Triples and presignatures also carry a
//! clear label ([`Holders`]: epoch and holders), bound into the associated data, so
//! the node can choose records without opening them.
//!
//! Key safety: [`Store::take_record`] removes the record and writes a tombstone in
//! one committed transaction *before* returning it.
//! After a crash the record is gone, never used twice; an id once taken can never
//! be stored again.
//!
//! The calls block on disk I/O; async callers run them on a blocking thread.

use crate::record_id::RecordId;
use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use primitives::DomainId;
use rand::RngCore;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::fmt;
use std::path::Path;
use threshold::{
    EddsaKeyShare, EddsaPresignature, KeyShare, ParticipantId, Participants, Presignature, Triple,
};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

const KEY_CHECK: &str = "key_check";
const KEY_CHECK_PLAINTEXT: &[u8] = b"chain-signatures node storage v1";
const KEY_SHARE: &str = "key_share";

/// The 32-byte key that seals secrets at rest.
#[derive(Clone)]
pub struct StorageKey([u8; 32]);

impl StorageKey {
    pub fn new(bytes: [u8; 32]) -> Self {
        StorageKey(bytes)
    }

    /// Reads 64 hex digits (surrounding white space is ignored), as kept in an
    /// environment variable or a key file.
    pub fn from_hex(text: &str) -> Result<Self, StoreError> {
        let mut key = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut key).map_err(|_| {
            StoreError::BadKey("the storage key must be 64 hex digits (32 bytes)".into())
        })?;
        Ok(StorageKey(key))
    }

    pub fn generate() -> Self {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        StorageKey(key)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for StorageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StorageKey(<secret>)")
    }
}

#[derive(Debug)]
pub enum StoreError {
    Database(String),
    BadKey(String),
    /// The key does not open this database.
    WrongKey,
    /// A sealed record failed authentication or decoding: disk corruption or tampering.
    Corrupt(String),
    /// A triple or presignature id that is already stored or was already used.
    DuplicateId {
        kind: &'static str,
        id: RecordId,
    },
    /// A share of this domain's key for this epoch from the same or a later
    /// key-event attempt is stored already.
    KeyShareExists {
        domain: DomainId,
        epoch: u64,
        attempt: u64,
    },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Database(e) => write!(f, "storage error: {e}"),
            StoreError::BadKey(why) => f.write_str(why),
            StoreError::WrongKey => f.write_str(
                "the storage key does not open this database: use the key it was created with",
            ),
            StoreError::Corrupt(why) => write!(f, "corrupt record: {why}"),
            StoreError::KeyShareExists {
                domain,
                epoch,
                attempt,
            } => write!(
                f,
                "a share of domain {domain}'s key for epoch {epoch} from attempt {attempt} is \
                 stored already; only a later attempt's share replaces it"
            ),
            StoreError::DuplicateId { kind, id } => {
                write!(
                    f,
                    "{kind} {id} is already stored or was already used; ids are never reused"
                )
            }
        }
    }
}

impl std::error::Error for StoreError {}

fn db_error(e: impl fmt::Display) -> StoreError {
    StoreError::Database(e.to_string())
}

/// The node's database.
pub struct Store {
    db: Database,
    cipher: Aes256Gcm,
}

impl Store {
    /// Opens (or creates) the database at `path`, checking that `key` opens it.
    pub fn open(path: &Path, key: &StorageKey) -> Result<Store, StoreError> {
        let db = Database::create(path).map_err(db_error)?;
        let store = Store {
            db,
            cipher: Aes256Gcm::new_from_slice(&key.0).expect("32-byte key"),
        };
        let check = store.meta(KEY_CHECK)?;
        match check {
            Some(sealed) => {
                let plain = store
                    .open_sealed(KEY_CHECK, &sealed)
                    .map_err(|_| StoreError::WrongKey)?;
                if plain != KEY_CHECK_PLAINTEXT {
                    return Err(StoreError::WrongKey);
                }
            }
            None => {
                let sealed = store.seal(KEY_CHECK, KEY_CHECK_PLAINTEXT);
                store.put_meta(KEY_CHECK, &sealed)?;
            }
        }
        Ok(store)
    }

    fn seal(&self, slot: &str, plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plain,
                    aad: slot.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of bounded data");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        out
    }

    fn open_sealed(&self, slot: &str, sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        if sealed.len() < 12 + 16 {
            return Err(StoreError::Corrupt(format!("{slot}: too short")));
        }
        let (nonce, body) = sealed.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().expect("12 bytes");
        self.cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: body,
                    aad: slot.as_bytes(),
                },
            )
            .map_err(|_| StoreError::Corrupt(format!("{slot}: authentication failed")))
    }

    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let read = self.db.begin_read().map_err(db_error)?;
        let table = match read.open_table(META) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(db_error(e)),
        };
        Ok(table
            .get(name)
            .map_err(db_error)?
            .map(|v| v.value().to_vec()))
    }

    fn put_meta(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        let write = self.db.begin_write().map_err(db_error)?;
        write
            .open_table(META)
            .map_err(db_error)?
            .insert(name, value)
            .map_err(db_error)?;
        write.commit().map_err(db_error)
    }

    /// Stores this node's share of `domain`'s key for `epoch`, made by key-event
    /// attempt `attempt`. A share is replaced only by one from a later attempt: the
    /// contract numbers attempts contract-wide and never reuses them, so an earlier
    /// attempt's share can only be from an attempt that did not complete.
    pub fn put_key_share<K: SealedRecord>(
        &self,
        domain: DomainId,
        epoch: u64,
        attempt: u64,
        share: &K,
    ) -> Result<(), StoreError> {
        if let Some((stored, _)) = self.key_share_bytes(domain, epoch)? {
            if stored >= attempt {
                return Err(StoreError::KeyShareExists {
                    domain,
                    epoch,
                    attempt: stored,
                });
            }
        }
        let slot = key_share_slot(domain, epoch);
        let mut plain = attempt.to_be_bytes().to_vec();
        plain.extend_from_slice(&share.to_bytes());
        self.put_meta(&slot, &self.seal(&slot, &plain))
    }

    /// The epochs for which a share of `domain`'s key is stored, in order.
    pub fn key_share_epochs(&self, domain: DomainId) -> Result<Vec<u64>, StoreError> {
        let read = self.db.begin_read().map_err(db_error)?;
        let table = match read.open_table(META) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(db_error(e)),
        };
        let suffix = format!("/d{domain}");
        let mut epochs = Vec::new();
        for entry in table
            .range(format!("{KEY_SHARE}@").as_str()..)
            .map_err(db_error)?
        {
            let (name, _) = entry.map_err(db_error)?;
            let Some(rest) = name.value().strip_prefix(&format!("{KEY_SHARE}@")) else {
                break; // past the key-share slots
            };
            if let Some(epoch) = rest.strip_suffix(&suffix).and_then(|e| e.parse().ok()) {
                epochs.push(epoch);
            }
        }
        epochs.sort_unstable();
        Ok(epochs)
    }

    /// Deletes this node's share of `domain`'s key for `epoch` (a share of an epoch
    /// the network has moved past, or of an attempt that never completed): with it
    /// gone, old disks no longer hold the key in shares.
    pub fn delete_key_share(&self, domain: DomainId, epoch: u64) -> Result<bool, StoreError> {
        let slot = key_share_slot(domain, epoch);
        let write = self.db.begin_write().map_err(db_error)?;
        let removed = write
            .open_table(META)
            .map_err(db_error)?
            .remove(slot.as_str())
            .map_err(db_error)?
            .is_some();
        write.commit().map_err(db_error)?;
        Ok(removed)
    }

    /// The key-event attempt that made the share of `domain`'s key stored for
    /// `epoch`, if one is stored (whatever its scheme).
    pub fn key_share_attempt(
        &self,
        domain: DomainId,
        epoch: u64,
    ) -> Result<Option<u64>, StoreError> {
        Ok(self
            .key_share_bytes(domain, epoch)?
            .map(|(attempt, _)| attempt))
    }

    /// The share of `domain`'s key stored for `epoch`, with the key-event attempt
    /// that made it.
    pub fn key_share_at<K: SealedRecord>(
        &self,
        domain: DomainId,
        epoch: u64,
    ) -> Result<Option<(u64, K)>, StoreError> {
        let Some((attempt, bytes)) = self.key_share_bytes(domain, epoch)? else {
            return Ok(None);
        };
        let share = K::from_bytes(&bytes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(Some((attempt, share)))
    }

    fn key_share_bytes(
        &self,
        domain: DomainId,
        epoch: u64,
    ) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let slot = key_share_slot(domain, epoch);
        let Some(sealed) = self.meta(&slot)? else {
            return Ok(None);
        };
        let plain = self.open_sealed(&slot, &sealed)?;
        let (attempt, share) = plain
            .split_first_chunk::<8>()
            .ok_or_else(|| StoreError::Corrupt(format!("{slot}: too short")))?;
        Ok(Some((u64::from_be_bytes(*attempt), share.to_vec())))
    }

    /// Stores record `id` of `kind`, made in `epoch`. Fails if the id is stored or
    /// was ever used.
    pub fn add_record<R: StockRecord>(
        &self,
        kind: RecordKind,
        id: RecordId,
        epoch: u64,
        record: &R,
    ) -> Result<(), StoreError> {
        let label = Holders::new(epoch, record.holders()).encode();
        let mut value = label.clone();
        value.extend(self.seal(&record_slot(kind.name, id, &label), &record.to_bytes()));
        let key = id.to_u64();
        let write = self.db.begin_write().map_err(db_error)?;
        {
            let used = write.open_table(kind.used).map_err(db_error)?;
            let mut records = write.open_table(kind.records).map_err(db_error)?;
            if used.get(key).map_err(db_error)?.is_some()
                || records.get(key).map_err(db_error)?.is_some()
            {
                return Err(StoreError::DuplicateId {
                    kind: kind.name,
                    id,
                });
            }
            records.insert(key, value.as_slice()).map_err(db_error)?;
        }
        write.commit().map_err(db_error)
    }

    /// Takes record `id` of `kind` to use it: it is removed and its id tombstoned,
    /// durably, *before* this returns, so no restart can use it again. Returns the
    /// epoch it was made in with it.
    pub fn take_record<R: StockRecord>(
        &self,
        kind: RecordKind,
        id: RecordId,
    ) -> Result<Option<(u64, R)>, StoreError> {
        Ok(self.take_records(kind, &[id])?.pop().flatten())
    }

    /// [`Store::take_record`] for several records at once, in one committed
    /// transaction (one disk sync for all of them): each of `ids` that is stored
    /// is removed and tombstoned before this returns. The answers are in `ids`'
    /// order, `None` for an id not stored.
    pub fn take_records<R: StockRecord>(
        &self,
        kind: RecordKind,
        ids: &[RecordId],
    ) -> Result<Vec<Option<(u64, R)>>, StoreError> {
        let write = self.db.begin_write().map_err(db_error)?;
        let values = {
            let mut records = write.open_table(kind.records).map_err(db_error)?;
            let mut used = write.open_table(kind.used).map_err(db_error)?;
            let mut values = Vec::with_capacity(ids.len());
            for id in ids {
                let key = id.to_u64();
                let value = records
                    .remove(key)
                    .map_err(db_error)?
                    .map(|v| v.value().to_vec());
                if value.is_some() {
                    used.insert(key, ()).map_err(db_error)?;
                }
                values.push(value);
            }
            values
        };
        write.commit().map_err(db_error)?;
        ids.iter()
            .zip(values)
            .map(|(id, value)| value.map(|v| self.open_record(kind, *id, &v)).transpose())
            .collect()
    }

    /// A stored value of `kind` opened: its label's epoch and the record.
    fn open_record<R: StockRecord>(
        &self,
        kind: RecordKind,
        id: RecordId,
        value: &[u8],
    ) -> Result<(u64, R), StoreError> {
        let (holders, label_len) = Holders::decode(value)
            .ok_or_else(|| StoreError::Corrupt(format!("{}/{id}: bad label", kind.name)))?;
        let (label, sealed) = value.split_at(label_len);
        let plain = self.open_sealed(&record_slot(kind.name, id, label), sealed)?;
        let record = R::from_bytes(&plain).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok((holders.epoch, record))
    }

    /// Drops record `id` of `kind` (tombstoned like [`Store::take_record`]) without
    /// opening it. Returns whether it was there.
    pub fn retire_record(&self, kind: RecordKind, id: RecordId) -> Result<bool, StoreError> {
        let key = id.to_u64();
        let write = self.db.begin_write().map_err(db_error)?;
        let removed = {
            let mut records = write.open_table(kind.records).map_err(db_error)?;
            let removed = records.remove(key).map_err(db_error)?.is_some();
            if removed {
                write
                    .open_table(kind.used)
                    .map_err(db_error)?
                    .insert(key, ())
                    .map_err(db_error)?;
            }
            removed
        };
        write.commit().map_err(db_error)?;
        Ok(removed)
    }

    /// Every stored record of `kind`: id and holders (no secrets are opened).
    pub fn records(&self, kind: RecordKind) -> Result<Vec<Stocked>, StoreError> {
        let read = self.db.begin_read().map_err(db_error)?;
        let table = match read.open_table(kind.records) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(db_error(e)),
        };
        let mut out = Vec::new();
        for entry in table.iter().map_err(db_error)? {
            let (id, value) = entry.map_err(db_error)?;
            let id = RecordId::from_u64(id.value());
            // A row without a readable label (damaged) is skipped, not fatal: the
            // rest of the stock stays usable.
            match Holders::decode(value.value()) {
                Some((holders, _)) => out.push(Stocked { id, holders }),
                None => tracing::warn!(
                    kind = kind.name,
                    %id,
                    "skipping a stored record with a bad label"
                ),
            }
        }
        Ok(out)
    }

    /// The ids of the stored records of `kind`.
    pub fn record_ids(&self, kind: RecordKind) -> Result<Vec<RecordId>, StoreError> {
        Ok(self.records(kind)?.into_iter().map(|s| s.id).collect())
    }

    /// Retires every record of `kind` not made in `epoch`: after resharing they no
    /// longer match the key shares. Returns how many were retired.
    pub fn retire_other_epochs(&self, kind: RecordKind, epoch: u64) -> Result<usize, StoreError> {
        let mut retired = 0;
        for stocked in self.records(kind)? {
            if stocked.holders.epoch != epoch && self.retire_record(kind, stocked.id)? {
                retired += 1;
            }
        }
        Ok(retired)
    }
}

/// A secret this node keeps sealed: a key share or a stock record.
pub trait SealedRecord: Sized {
    fn to_bytes(&self) -> Vec<u8>;
    fn from_bytes(bytes: &[u8]) -> Result<Self, threshold::Error>;
}

/// A stock record (triple, presignature, nonce commitments): sealed, with the
/// participants that hold the other shares of it.
pub trait StockRecord: SealedRecord {
    fn holders(&self) -> &Participants;
}

/// Implements [`SealedRecord`] (and [`StockRecord`], for records with holders) for
/// a threshold record type with `to_bytes`/`from_bytes` and a `participants` field.
macro_rules! sealed_records {
    (keys: $($key:ty),*; stock: $($stock:ty),*) => {
        $(impl SealedRecord for $key {
            fn to_bytes(&self) -> Vec<u8> {
                <$key>::to_bytes(self)
            }
            fn from_bytes(bytes: &[u8]) -> Result<Self, threshold::Error> {
                <$key>::from_bytes(bytes)
            }
        })*
        $(sealed_records!(keys: $stock; stock:);
        impl StockRecord for $stock {
            fn holders(&self) -> &Participants {
                &self.participants
            }
        })*
    };
}

sealed_records!(keys: KeyShare, EddsaKeyShare; stock: Triple, Presignature, EddsaPresignature);

/// Where records of one kind live: their table, and the table of ids ever used.
#[derive(Clone, Copy)]
pub struct RecordKind {
    /// Names the kind in errors and logs, and in the sealing slot.
    pub name: &'static str,
    records: TableDefinition<'static, u64, &'static [u8]>,
    used: TableDefinition<'static, u64, ()>,
}

impl fmt::Debug for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl RecordKind {
    /// A kind stored in table `records`, with used ids in table `used`.
    pub const fn new(name: &'static str, records: &'static str, used: &'static str) -> Self {
        RecordKind {
            name,
            records: TableDefinition::new(records),
            used: TableDefinition::new(used),
        }
    }
}

/// The public label of a stored triple or presignature: the epoch it was made in
/// and the participants holding shares of it. Stored in the clear (it is not
/// secret) so the node can choose records without opening them, and bound to the
/// sealed record as associated data so it cannot be altered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holders {
    pub epoch: u64,
    pub participants: Vec<ParticipantId>,
}

impl Holders {
    fn new(epoch: u64, participants: &threshold::Participants) -> Self {
        Holders {
            epoch,
            participants: participants.iter().collect(),
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = self.epoch.to_be_bytes().to_vec();
        let count = u16::try_from(self.participants.len()).expect("fewer than 65536 participants");
        out.extend(count.to_be_bytes());
        for p in &self.participants {
            out.extend(p.0.to_be_bytes());
        }
        out
    }

    /// The label at the start of `value`, and its length in bytes.
    fn decode(value: &[u8]) -> Option<(Holders, usize)> {
        let epoch = u64::from_be_bytes(value.get(..8)?.try_into().ok()?);
        let count = u16::from_be_bytes(value.get(8..10)?.try_into().ok()?) as usize;
        let len = 10 + 4 * count;
        let participants = value
            .get(10..len)?
            .chunks_exact(4)
            .map(|c| ParticipantId(u32::from_be_bytes(c.try_into().expect("4 bytes"))))
            .collect();
        Some((
            Holders {
                epoch,
                participants,
            },
            len,
        ))
    }
}

/// A stored triple or presignature, as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stocked {
    pub id: RecordId,
    pub holders: Holders,
}

/// The sealed slot of a key share; its name is bound into the seal.
fn key_share_slot(domain: DomainId, epoch: u64) -> String {
    format!("{KEY_SHARE}@{epoch}/d{domain}")
}

/// The sealed slot of a stock record. The id is written as the `u64` it is on
/// disk (not its display form), so records sealed before ids had a type still open.
fn record_slot(kind: &str, id: RecordId, label: &[u8]) -> String {
    format!("{kind}/{}/{}", id.to_u64(), hex::encode(label))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sealing slot is associated data of every sealed record: it must name
    /// an id as the bare `u64` it always did, or records stored before ids had a
    /// type would no longer open.
    #[test]
    fn a_record_slot_names_its_id_as_the_stored_u64() {
        let id = RecordId::new(ParticipantId(1), 5);
        assert_eq!(
            record_slot("triple", id, &[0xab]),
            format!("triple/{}/ab", (1u64 << 48) | 5)
        );
    }
}
