//! The log of changes to the pending requests, for nodes to follow.
//!
//! Why: every node used to read the whole `pending_requests` list every poll, a
//! cost that grows with the list. In a burst of 120 requests the five nodes of a
//! (5,3) network kept a tenth of the devnet's machine busy with it, and parsing the
//! answers cost them more. With the log a node reads the list once, then asks for
//! the changes since its last read (`pending_changes`), which costs what changed.
//!
//! Changes are numbered from 0 over the contract's life; the most recent
//! [`KEPT`] are stored. A reader whose next change is no longer kept reads the
//! list again. Layout: the number of changes so far at [`COUNT_KEY`] (u64, borsh);
//! change `i` at `prefix ‖ i` (the map's layout, `i` as u64 little end), where the
//! prefix is the contract's `PendingChanges` storage key.
//!
//! Like [`crate::slot::ProtocolSlot`], the log takes no bytes of the contract's
//! root: the root's layout, and so its state version, is unchanged.

use crate::store::LookupStore;
use borsh::io::{Read, Result as IoResult, Write};
use near_sdk::borsh::{self, BorshDeserialize, BorshSerialize};
use near_sdk::{env, near, IntoStorageKey};
use primitives::RequestId;
use std::cell::OnceCell;

/// How many of the latest changes are kept: two per request (added, removed), so
/// the last 512 requests' comings and goings. A node polls several times a second;
/// one that falls further behind (down, or its RPC out for a while) reads the list
/// again.
pub const KEPT: u64 = 1024;

/// The storage key of the number of changes so far.
const COUNT_KEY: &[u8] = b"pending_changes";

/// One change as stored: which request began or stopped waiting.
#[near(serializers = [borsh])]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoggedChange {
    Added(RequestId),
    Removed(RequestId),
}

/// The log, as a field of the contract.
pub struct ChangeLog {
    /// How many changes were ever logged: read on first use.
    count: OnceCell<u64>,
    /// Changed by this call: the count is written back when the root is.
    dirty: bool,
}

/// What [`ChangeLog::read`] found.
pub struct LoggedRange {
    /// The changes asked for, oldest first; `None` if the first is no longer kept.
    pub changes: Option<Vec<LoggedChange>>,
    /// One past the last change covered.
    pub next: u64,
    /// How many changes there have been.
    pub latest: u64,
}

impl ChangeLog {
    /// An empty log (a new contract).
    pub fn new() -> Self {
        ChangeLog {
            count: OnceCell::from(0),
            dirty: true,
        }
    }

    fn entries(prefix: impl IntoStorageKey) -> LookupStore<u64, LoggedChange> {
        LookupStore::new(prefix)
    }

    /// How many changes were ever logged.
    pub fn count(&self) -> u64 {
        *self.count.get_or_init(|| {
            env::storage_read(COUNT_KEY)
                .map(|bytes| {
                    u64::try_from_slice(&bytes)
                        .unwrap_or_else(|_| env::panic_str("the change count is corrupt"))
                })
                // A contract from before the log: nothing logged yet.
                .unwrap_or(0)
        })
    }

    /// Appends `change`, dropping the one that falls out of the kept window.
    pub fn record(&mut self, prefix: impl IntoStorageKey, change: LoggedChange) {
        let number = self.count();
        let mut entries = Self::entries(prefix);
        entries.insert(&number, &change);
        if let Some(dropped) = number.checked_sub(KEPT) {
            entries.remove(&dropped);
        }
        self.count = OnceCell::from(number + 1);
        self.dirty = true;
    }

    /// Changes `from..` (at most `limit`), if `from` is still kept.
    pub fn read(&self, prefix: impl IntoStorageKey, from: u64, limit: u32) -> LoggedRange {
        let latest = self.count();
        let oldest_kept = latest.saturating_sub(KEPT);
        if from < oldest_kept {
            return LoggedRange {
                changes: None,
                next: from,
                latest,
            };
        }
        // A reader ahead of this block (an RPC behind the one it read last) gets
        // nothing and keeps its place.
        let next = from.max(latest.min(from.saturating_add(u64::from(limit))));
        let entries = Self::entries(prefix);
        let changes = (from..next.min(latest))
            .map(|number| {
                entries.get(&number).unwrap_or_else(|| {
                    env::panic_str("inconsistent state: a kept change is missing")
                })
            })
            .collect();
        LoggedRange {
            changes: Some(changes),
            next,
            latest,
        }
    }
}

impl Default for ChangeLog {
    fn default() -> Self {
        Self::new()
    }
}

/// Takes no bytes of the root: writing the root writes the count, if changed.
impl BorshSerialize for ChangeLog {
    fn serialize<W: Write>(&self, _root: &mut W) -> IoResult<()> {
        if let (true, Some(count)) = (self.dirty, self.count.get()) {
            env::storage_write(COUNT_KEY, &borsh::to_vec(count)?);
        }
        Ok(())
    }
}

impl BorshDeserialize for ChangeLog {
    fn deserialize_reader<R: Read>(_root: &mut R) -> IoResult<Self> {
        Ok(ChangeLog {
            count: OnceCell::new(),
            dirty: false,
        })
    }
}
