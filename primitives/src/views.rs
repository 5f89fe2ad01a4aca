//! The contract's `state` view as nodes and clients read it (feature `views`,
//! native only).
//!
//! One definition of the JSON shape of `ProtocolContractState`, shared by the MPC
//! node (which follows key events and the running set) and the test harness. The
//! contract keeps its own state types (borsh-stored, near-sdk's `AccountId` and
//! `PublicKey`, and a wasm budget that rules out a second JSON path); its unit test
//! `state_view_matches_primitives` writes every variant with the contract's own JSON
//! writer, reads it back into these types and writes it again, and the two texts
//! must be equal, so a field added, renamed or dropped on either side fails there.
//!
//! Nothing here rejects fields it does not know: a node keeps working against a
//! contract that shows more than it reads.

use crate::domain::{DomainConfig, DomainId, SignatureScheme};
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::vec::Vec;
use near_account_id::AccountId;
use serde::{Deserialize, Serialize};

/// A participant as the contract lists it: its protocol id and how to reach it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Participant {
    /// The party number the threshold protocols use; assigned once, never reused.
    pub id: u32,
    pub account_id: AccountId,
    /// Its peer-to-peer address.
    pub url: String,
    /// The key its peer-to-peer traffic is encrypted to.
    pub cipher_pk: [u8; 32],
    /// The key that authenticates it to peers (`ed25519:…`).
    pub sign_pk: String,
}

/// The participants of one epoch, by account.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ParticipantSet {
    /// The id the next admitted participant gets.
    pub next_id: u32,
    pub participants: BTreeMap<AccountId, Participant>,
}

impl ParticipantSet {
    /// The participants' protocol ids, in account order.
    pub fn ids(&self) -> Vec<u32> {
        self.participants.values().map(|p| p.id).collect()
    }
}

/// A domain with its root key.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DomainKey {
    pub id: DomainId,
    pub scheme: SignatureScheme,
    /// `secp256k1:…` or `ed25519:…`.
    pub public_key: String,
    /// The key-event attempt whose shares the current participants hold.
    pub attempt: u64,
}

/// What a node registers with `join`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CandidateInfo {
    pub account_id: AccountId,
    pub url: String,
    pub cipher_pk: [u8; 32],
    pub sign_pk: String,
}

/// A node that called `join` and waits for votes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Candidate {
    pub info: CandidateInfo,
    /// The block of its `join`.
    pub joined_at: u64,
}

/// Votes for subjects (a candidate to admit, a participant to remove), by subject.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Votes {
    pub votes: BTreeMap<AccountId, BTreeSet<AccountId>>,
}

/// The set that signs now: participants, threshold, their keys and pending
/// governance.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunningState {
    pub epoch: u64,
    pub participants: ParticipantSet,
    pub threshold: usize,
    /// The domains with keys, by increasing id.
    pub domains: Vec<DomainKey>,
    /// The id the next added domain gets.
    pub next_domain_id: DomainId,
    pub candidates: BTreeMap<AccountId, Candidate>,
    pub join_votes: Votes,
    pub leave_votes: Votes,
    pub add_domains_votes: BTreeMap<AccountId, Vec<DomainConfig>>,
}

impl RunningState {
    pub fn domain(&self, id: DomainId) -> Option<&DomainKey> {
        self.domains.iter().find(|d| d.id == id)
    }
}

/// Names one attempt of one key event, as votes name it.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyEventId {
    pub epoch: u64,
    /// `None` for a resharing (every domain).
    pub domain_id: Option<DomainId>,
    pub attempt: u64,
}

/// A key event's current attempt, as the contract shows it at the block read.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyEvent {
    pub epoch: u64,
    /// The domain whose key is generated; `None` for resharing (all domains).
    pub domain: Option<DomainConfig>,
    pub participants: ParticipantSet,
    pub threshold: usize,
    pub attempt: u64,
    /// The block the current attempt began in.
    pub started_at: u64,
    /// The first block in which the current attempt no longer counts.
    pub expires_at: u64,
    /// Who voted for the current attempt.
    pub votes: BTreeSet<AccountId>,
    /// Keygen: the public key the current attempt's votes agree on.
    pub public_key: Option<String>,
}

impl KeyEvent {
    /// The id votes for this attempt name.
    pub fn id(&self) -> KeyEventId {
        KeyEventId {
            epoch: self.epoch,
            domain_id: self.domain.map(|d| d.id),
            attempt: self.attempt,
        }
    }
}

/// The contract's protocol state (the `state` view).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum ContractState {
    NotInitialized,
    /// Keys are generated for `generating` (the key event is for the first) while
    /// `running` signs with the domains it has.
    Initializing {
        running: RunningState,
        generating: Vec<DomainConfig>,
        key_event: KeyEvent,
        cancel_votes: BTreeSet<AccountId>,
    },
    Running(RunningState),
    /// Every key is reshared to the key event's participants while `previous` signs.
    Resharing {
        previous: RunningState,
        key_event: KeyEvent,
        cancel_votes: BTreeSet<AccountId>,
    },
}

impl ContractState {
    pub fn name(&self) -> &'static str {
        match self {
            ContractState::NotInitialized => "NotInitialized",
            ContractState::Initializing { .. } => "Initializing",
            ContractState::Running(_) => "Running",
            ContractState::Resharing { .. } => "Resharing",
        }
    }

    /// The set that signs now, whatever key event is under way.
    pub fn running(&self) -> Option<&RunningState> {
        match self {
            ContractState::NotInitialized => None,
            ContractState::Initializing { running, .. } => Some(running),
            ContractState::Running(running) => Some(running),
            ContractState::Resharing { previous, .. } => Some(previous),
        }
    }

    pub fn key_event(&self) -> Option<&KeyEvent> {
        match self {
            ContractState::Initializing { key_event, .. }
            | ContractState::Resharing { key_event, .. } => Some(key_event),
            _ => None,
        }
    }
}
