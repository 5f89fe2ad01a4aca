//! The `multichain` contract: NEAR accounts ask for signatures, the MPC network
//! answers them.
//!
//! Request life cycle (see ARCHITECTURE.md for the whole system):
//! 1. `sign` resolves the request (three argument shapes), checks it against the
//!    domain's scheme, stores it under its [`RequestId`], emits
//!    `signature_requested` and yields (NEP-519). Identical requests share the entry.
//! 2. Nodes read `pending_requests`, sign with the key derived for the caller and
//!    path, and one of them calls `respond`.
//! 3. `respond` checks the signature (`ecrecover` for secp256k1, `ed25519_verify`
//!    for Ed25519) against the derived key and resumes every waiting call; a bad
//!    signature is refused and nothing is stored.
//! 4. `resolve_signature` (the yield callback) returns the signature to the caller,
//!    or on a timeout waits again while the caller's gas lasts, then fails with a
//!    clear error and refunds the deposit.
//!
//! The API is split by feature: [`sign`] (requests and answers), [`governance`]
//! (membership, domains and key events, updates), views here.

pub mod changes;
pub mod config;
pub mod entry;
pub mod errors;
pub mod events;
pub mod governance;
pub mod json;
pub mod keys;
pub mod pending;
pub mod sign;
pub mod slot;
pub mod sorted;
pub mod state;
pub mod store;
pub mod update;

use changes::{ChangeLog, LoggedChange};
use config::Config;
use errors::{fail, Error, OrFail};
use events::Event;
use near_sdk::json_types::U128;
use near_sdk::{env, near, AccountId, BorshStorageKey, CurveType, NearToken, PublicKey};
use pending::PendingEntry;
use primitives::derivation::tweak_hash;
use primitives::{
    DomainConfig, DomainId, PendingChange, PendingChanges, PendingRequest, RequestId,
    SignatureScheme,
};
use sorted::{SortedMap, SortedSet};
use state::{
    check_threshold, CandidateInfo, DomainKey, InitializingContractState, KeyEvent, Participants,
    ProtocolContractState, RunningContractState,
};
use store::{IterableStore, LookupStore};
use update::UpdateProposal;

/// The layout version of the stored state; `migrate` refuses newer ones.
pub const STATE_VERSION: u32 = 2;
/// Longest accepted `url` of a candidate, in bytes.
const MAX_URL_LEN: usize = 512;
/// How many candidates may wait for votes at once.
const MAX_CANDIDATES: usize = 32;
/// Default and largest page of `pending_requests`.
const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 500;

#[derive(BorshStorageKey)]
#[near]
enum StorageKey {
    Pending,
    Updates,
    PendingByCaller,
    PendingChanges,
}

#[near(contract_state)]
pub struct MpcContract {
    state_version: u32,
    protocol_state: slot::ProtocolSlot,
    /// What `sign` needs of the protocol state (kept in step by `transition`).
    domains: state::SignableDomains,
    config: Config,
    pending: IterableStore<RequestId, PendingEntry>,
    /// How many distinct requests each account has waiting (absent: none).
    pending_by_caller: LookupStore<AccountId, u32>,
    next_ticket: u64,
    updates: IterableStore<u64, UpdateProposal>,
    next_update_id: u64,
    /// The id the next key-event attempt gets; attempts are numbered contract-wide.
    next_attempt: u64,
    /// Requests that began or stopped waiting, for nodes to follow. Takes no bytes
    /// of the root (see [`changes`]).
    pending_changes: ChangeLog,
}

impl Default for MpcContract {
    /// What an account with our code but no state looks like: `NotInitialized`, so
    /// views answer and calls say what to do instead of failing obscurely.
    fn default() -> Self {
        MpcContract {
            protocol_state: slot::ProtocolSlot::not_initialized(),
            ..Self::with_state(ProtocolContractState::NotInitialized, Config::default())
        }
    }
}

impl MpcContract {
    // ------------------------------------------------------------------ init

    /// Starts key generation among `candidates` for `domains` (default: domain 0,
    /// secp256k1); `threshold` of them will be needed to sign. Only the contract
    /// account may call it (deploy and init in one batch).
    pub fn init(
        threshold: usize,
        candidates: SortedMap<AccountId, CandidateInfo>,
        config: Option<Config>,
        domains: Option<Vec<DomainConfig>>,
    ) -> Self {
        Self::require_self_call();
        let participants = checked_candidates(candidates);
        check_threshold(threshold, participants.len()).or_fail();
        let config = config.unwrap_or_default();
        config.validate().or_fail();
        let domains = domains.unwrap_or_else(|| {
            vec![DomainConfig {
                id: DomainId::LEGACY_ECDSA,
                scheme: SignatureScheme::Secp256k1,
            }]
        });
        state::check_new_domains(&domains, DomainId(0)).or_fail();
        let next_domain_id = DomainId(domains.len() as u64);
        let running =
            RunningContractState::new(0, participants, threshold, Vec::new(), next_domain_id);
        let mut contract = Self::with_state(ProtocolContractState::NotInitialized, config);
        let state = contract.keygen_state(running, domains);
        contract.transition(state);
        contract
    }

    /// Starts directly in `Running` with existing keys, for recovery and for moving a
    /// network to a new contract account. Only the contract account may call it.
    pub fn init_running(
        epoch: u64,
        participants: SortedMap<AccountId, CandidateInfo>,
        threshold: usize,
        domains: Vec<DomainKey>,
        config: Option<Config>,
    ) -> Self {
        Self::require_self_call();
        let participants = checked_candidates(participants);
        check_threshold(threshold, participants.len()).or_fail();
        let configs: Vec<DomainConfig> = domains.iter().map(DomainKey::config).collect();
        state::check_new_domains(&configs, DomainId(0)).or_fail();
        for domain in &domains {
            if !keys::key_fits_scheme(&domain.public_key, domain.scheme) {
                fail(Error::KeyNotOfScheme {
                    scheme: domain.scheme,
                });
            }
        }
        let config = config.unwrap_or_default();
        config.validate().or_fail();
        let next_domain_id = DomainId(domains.len() as u64);
        let state = ProtocolContractState::Running(RunningContractState::new(
            epoch,
            participants,
            threshold,
            domains,
            next_domain_id,
        ));
        let mut contract = Self::with_state(ProtocolContractState::NotInitialized, config);
        // Attempt ids continue after the ones the keys came from.
        contract.next_attempt = domains_attempt_after(&state);
        contract.transition(state);
        contract
    }

    // ------------------------------------------------------------------ views

    /// The root public key of a domain (default 0): `secp256k1:<base58 of 64 bytes>`
    /// or `ed25519:<base58 of 32 bytes>`.
    pub fn public_key(&self, domain_id: Option<DomainId>) -> PublicKey {
        let domain = domain_id.unwrap_or(DomainId::LEGACY_ECDSA);
        self.protocol_state
            .domain_key(domain)
            .or_fail()
            .public_key
            .clone()
    }

    /// The key `predecessor` (default: the caller, unavailable in view calls) signs
    /// with for `path` in a domain (default 0).
    pub fn derived_public_key(
        &self,
        path: String,
        predecessor: Option<AccountId>,
        domain_id: Option<DomainId>,
    ) -> PublicKey {
        let predecessor = predecessor.unwrap_or_else(env::predecessor_account_id);
        let domain = domain_id.unwrap_or(DomainId::LEGACY_ECDSA);
        let key = self.protocol_state.domain_key(domain).or_fail();
        let hash = tweak_hash(predecessor.as_str(), &path);
        let (curve, bytes) = match key.scheme {
            SignatureScheme::Secp256k1 => (
                CurveType::SECP256K1,
                keys::derive_secp256k1(key, &hash).or_fail().to_vec(),
            ),
            SignatureScheme::Ed25519 => (
                CurveType::ED25519,
                keys::derive_ed25519(key, hash)
                    .or_fail()
                    .as_bytes()
                    .to_vec(),
            ),
        };
        PublicKey::from_parts(curve, bytes)
            .unwrap_or_else(|_| env::panic_str("a derived key has the length of its scheme"))
    }

    /// The newest secp256k1 domain with a key: what legacy clients pass as
    /// `key_version` with an ECDSA `payload`.
    pub fn latest_key_version(&self) -> DomainId {
        self.protocol_state
            .running()
            .and_then(|r| {
                r.domains
                    .iter()
                    .rev()
                    .find(|d| d.scheme == SignatureScheme::Secp256k1)
            })
            .map(|d| d.id)
            .unwrap_or_else(|| {
                fail(Error::NotReady {
                    state: self.protocol_state.name(),
                })
            })
    }

    /// The protocol state at this block: participants, each domain and its key, and
    /// the key event under way with its current attempt.
    pub fn state(&self) -> ProtocolContractState {
        (*self.protocol_state)
            .clone()
            .rolled(env::block_height(), self.config.key_event_timeout_blocks)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_string()
    }

    /// The deposit `sign` needs, in yoctoNEAR.
    pub fn experimental_signature_deposit(&self) -> U128 {
        U128(self.config.sign_deposit.as_yoctonear())
    }

    /// Requests waiting for a signature, oldest first (positions shift as requests
    /// complete, so nodes should poll from 0 again rather than rely on an index).
    pub fn pending_requests(
        &self,
        from_index: Option<u32>,
        limit: Option<u32>,
    ) -> Vec<PendingRequest> {
        let limit = limit.unwrap_or(DEFAULT_PAGE).min(MAX_PAGE) as usize;
        self.pending
            .iter_from(from_index.unwrap_or(0))
            .filter(|(_, entry)| entry.answer.is_none())
            .take(limit)
            .map(|(id, entry)| entry.view(id))
            .collect()
    }

    /// The changes to the pending requests from change number `from` on (at most
    /// `limit`), each `Added` shown as the request waits now, and a digest of
    /// [`Self::state`]: what a node polls for, in one view. A node reads
    /// `pending_requests` once and then follows this (see [`changes`]); when `from`
    /// is no longer kept, `changes` is `None` and the node reads the list again.
    pub fn pending_changes(&self, from: u64, limit: Option<u32>) -> PendingChanges {
        let limit = limit.unwrap_or(DEFAULT_PAGE).min(MAX_PAGE);
        let range = self
            .pending_changes
            .read(StorageKey::PendingChanges, from, limit);
        let changes = range.changes.map(|logged| {
            logged
                .into_iter()
                .filter_map(|change| match change {
                    LoggedChange::Added(id) => self.pending_request(id).map(PendingChange::Added),
                    LoggedChange::Removed(id) => Some(PendingChange::Removed(id)),
                })
                .collect()
        });
        let state_digest =
            env::sha256_array(borsh::to_vec(&self.state()).unwrap_or_else(|_| env::abort()));
        PendingChanges {
            state_digest,
            changes,
            next: range.next,
            latest: range.latest,
        }
    }

    /// Notes that `request_id` began or stopped waiting, for [`Self::pending_changes`].
    pub(crate) fn log_pending(&mut self, change: LoggedChange) {
        self.pending_changes
            .record(StorageKey::PendingChanges, change);
    }

    /// One waiting request, if it still waits for an answer.
    pub fn pending_request(&self, request_id: RequestId) -> Option<PendingRequest> {
        self.pending
            .get(&request_id)
            .filter(|entry| entry.answer.is_none())
            .map(|entry| entry.view(request_id))
    }

    /// The open update proposals with their votes.
    pub fn proposed_updates(&self) -> Vec<update::UpdateView> {
        self.updates
            .iter_from(0)
            .map(|(id, p)| p.view(id))
            .collect()
    }

    /// Runs after a code update: reads the stored state and brings it to this
    /// code's layout. Only this code's own layout can be read: state version 1
    /// (one secp256k1 key, before domains and key events) has no conversion, and a
    /// network moves from it with `init_running` on a fresh account.
    pub fn migrate() -> Self {
        // The layout version is the state's first field (borsh: 4 bytes, little end).
        let raw = env::storage_read(b"STATE").unwrap_or_else(|| {
            fail(Error::WrongState {
                expected: "initialized",
                actual: "NotInitialized",
            })
        });
        let found = raw
            .first_chunk::<4>()
            .map(|bytes| u32::from_le_bytes(*bytes))
            .unwrap_or_default();
        if found != STATE_VERSION {
            fail(Error::StateVersion { found });
        }
        env::state_read().unwrap_or_else(|| fail(Error::StateVersion { found }))
    }
}

impl MpcContract {
    fn with_state(protocol_state: ProtocolContractState, config: Config) -> Self {
        protocol_state.assert_invariants();
        MpcContract {
            state_version: STATE_VERSION,
            domains: state::SignableDomains::of(&protocol_state),
            protocol_state: slot::ProtocolSlot::new(protocol_state),
            config,
            pending: IterableStore::new(StorageKey::Pending),
            pending_by_caller: LookupStore::new(StorageKey::PendingByCaller),
            next_ticket: 0,
            updates: IterableStore::new(StorageKey::Updates),
            next_update_id: 0,
            next_attempt: 0,
            pending_changes: ChangeLog::new(),
        }
    }

    fn require_self_call() {
        if env::predecessor_account_id() != env::current_account_id() {
            fail(Error::InitByOther);
        }
    }

    /// The caller, if it holds shares of the current keys.
    fn require_signer(&self) -> AccountId {
        let caller = env::predecessor_account_id();
        let signers = self.protocol_state.signers().unwrap_or_else(|| {
            fail(Error::NotReady {
                state: self.protocol_state.name(),
            })
        });
        if !signers.contains(&caller) {
            fail(Error::NotAParticipant { account: caller });
        }
        caller
    }

    /// A fresh attempt id.
    fn take_attempt(&mut self) -> u64 {
        let id = self.next_attempt;
        self.next_attempt += 1;
        id
    }

    /// Initializing: keygen for the first of `generating` while `running` signs.
    fn keygen_state(
        &mut self,
        running: RunningContractState,
        generating: Vec<DomainConfig>,
    ) -> ProtocolContractState {
        let attempt = self.take_attempt();
        let key_event = KeyEvent::new(
            running.epoch,
            generating.first().copied(),
            running.participants.clone(),
            running.threshold,
            attempt,
            env::block_height(),
            self.config.key_event_timeout_blocks,
        );
        ProtocolContractState::Initializing(InitializingContractState {
            running,
            generating,
            key_event,
            cancel_votes: SortedSet::new(),
        })
    }

    /// The state at this block with key-event attempts rolled forward, stored; keeps
    /// the attempt counter ahead of every attempt id handed out.
    fn roll_key_event(&mut self) {
        let now = env::block_height();
        let timeout = self.config.key_event_timeout_blocks;
        if let Some(event) = self.protocol_state.key_event_mut() {
            *event = event.clone().rolled(now, timeout);
            self.next_attempt = self.next_attempt.max(event.attempt + 1);
        }
    }

    fn transition(&mut self, next: ProtocolContractState) {
        next.assert_invariants();
        let from = self.protocol_state.name();
        emit_state_change(from, &next);
        self.domains = state::SignableDomains::of(&next);
        *self.protocol_state = next;
    }
}

/// Checks candidates given to `init`: keys match account ids, urls are bounded,
/// p2p keys are unique.
fn checked_candidates(candidates: SortedMap<AccountId, CandidateInfo>) -> Participants {
    if candidates.is_empty() {
        fail(Error::NoCandidates);
    }
    for (account, info) in &candidates {
        if account != &info.account_id {
            fail(Error::CandidateKeyMismatch {
                key: account.clone(),
                account_id: info.account_id.clone(),
            });
        }
        if info.url.len() > MAX_URL_LEN {
            fail(Error::CandidateField {
                what: "url",
                max: MAX_URL_LEN,
            });
        }
    }
    let participants = Participants::from_candidates(candidates.into_values());
    for info in participants.participants.values() {
        let as_candidate = CandidateInfo {
            account_id: info.account_id.clone(),
            url: String::new(),
            cipher_pk: info.cipher_pk,
            sign_pk: info.sign_pk.clone(),
        };
        if participants.uses_p2p_key(&as_candidate) {
            fail(Error::P2pKeyInUse);
        }
    }
    participants
}

/// The first attempt id above every attempt recorded in `state`'s keys.
fn domains_attempt_after(state: &ProtocolContractState) -> u64 {
    state
        .running()
        .and_then(|r| r.domains.iter().map(|d| d.attempt).max())
        .map_or(0, |a| a.saturating_add(1))
}

/// Sends `amount` back to `to` (nothing for zero). Uses the host functions directly:
/// near-sdk's `Promise` builder links code for every action kind into the wasm.
fn refund(to: &AccountId, amount: NearToken) {
    if !amount.is_zero() {
        let batch = env::promise_batch_create(to);
        env::promise_batch_action_transfer(batch, amount);
    }
}

fn emit_state_change(from: &str, next: &ProtocolContractState) {
    let epoch = next.running().map(|r| r.epoch);
    Event::StateChanged {
        from: from.into(),
        to: next.name().into(),
        epoch,
    }
    .emit();
}

fn emit_vote(voter: &AccountId, kind: &str, subject: &str) {
    Event::Voted {
        voter: voter.clone(),
        kind: kind.into(),
        subject: subject.into(),
    }
    .emit();
}

#[cfg(test)]
mod tests;
