//! The protocol state machine: who the participants are, which keys they hold, and
//! the key events that move the network between states.
//!
//! ```text
//! NotInitialized --init--> Initializing(keygen of each domain in turn) --> Running(epoch 0)
//! Running(e) --vote_add_domains--> Initializing(keygen of the new domains) --> Running(e)
//! Running(e) --vote_join / vote_leave--> Resharing(e -> e+1, all domains) --> Running(e+1)
//! Initializing / Resharing --vote_cancel_key_event (threshold of signers)--> Running(e)
//! ```
//! Whatever the state, the running set (participants, threshold and the keys they
//! hold) keeps signing: [`ProtocolContractState::running`]. A key event is a series
//! of attempts ([`KeyEvent`]); an attempt completes only when every participant of
//! the new set voted for it, and ends after `key_event_timeout_blocks` or when one of
//! them reports it failed. Attempt ids come from one contract-wide counter and are
//! never reused, so a node's protocol instance for (epoch, domain, attempt) is unique.
//!
//! Invariants (asserted on every transition): `2 <= threshold <= participants` for
//! every participant set; domain ids strictly increase along `domains` and stay
//! below `next_domain_id`; a domain's key has the domain's scheme.

use crate::errors::{fail, Error};
use crate::sorted::{SortedMap, SortedSet};
use near_sdk::{near, AccountId, PublicKey};
use primitives::{DomainConfig, DomainId, SignatureScheme};

/// What a node registers: where to reach it and the keys that authenticate and
/// encrypt its peer-to-peer traffic.
#[near(serializers = [borsh, json])]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CandidateInfo {
    pub account_id: AccountId,
    /// The node's peer-to-peer address, e.g. `https://node1.example.com:3000`.
    pub url: String,
    /// The node's key for encrypting peer-to-peer messages to it.
    #[serde(deserialize_with = "crate::json::bytes32")]
    pub cipher_pk: [u8; 32],
    /// The node's key for authenticating its peer-to-peer messages.
    pub sign_pk: PublicKey,
}

/// A candidate that called `join`, waiting for votes until its request expires.
#[near(serializers = [borsh, json])]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub info: CandidateInfo,
    /// The block of its `join`; it expires `candidate_expiry_blocks` later.
    pub joined_at: u64,
}

/// A participant: a candidate with the protocol id it keeps for as long as it stays.
#[near(serializers = [borsh, json])]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParticipantInfo {
    /// The party number used by the threshold protocols.
    pub id: u32,
    pub account_id: AccountId,
    pub url: String,
    #[serde(deserialize_with = "crate::json::bytes32")]
    pub cipher_pk: [u8; 32],
    pub sign_pk: PublicKey,
}

/// The participants of one epoch, by account; ids are never reused.
#[near(serializers = [borsh, json])]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Participants {
    pub next_id: u32,
    pub participants: SortedMap<AccountId, ParticipantInfo>,
}

impl Participants {
    pub fn from_candidates(candidates: impl IntoIterator<Item = CandidateInfo>) -> Self {
        let mut participants = Participants::default();
        for candidate in candidates {
            participants.insert(candidate);
        }
        participants
    }

    pub fn insert(&mut self, candidate: CandidateInfo) {
        let info = ParticipantInfo {
            id: self.next_id,
            account_id: candidate.account_id.clone(),
            url: candidate.url,
            cipher_pk: candidate.cipher_pk,
            sign_pk: candidate.sign_pk,
        };
        self.next_id += 1;
        self.participants.insert(candidate.account_id, info);
    }

    pub fn contains(&self, account: &AccountId) -> bool {
        self.participants.contains_key(account)
    }

    pub fn len(&self) -> usize {
        self.participants.len()
    }

    pub fn is_empty(&self) -> bool {
        self.participants.is_empty()
    }

    pub fn without(&self, account: &AccountId) -> Self {
        let mut rest = self.clone();
        rest.participants.remove(account);
        rest
    }

    /// Whether a participant other than `account` registered either p2p key.
    pub fn uses_p2p_key(&self, info: &CandidateInfo) -> bool {
        self.participants.values().any(|p| {
            p.account_id != info.account_id
                && (p.cipher_pk == info.cipher_pk || p.sign_pk == info.sign_pk)
        })
    }
}

/// Votes for one subject each (a candidate to admit, a participant to remove), by voter.
#[near(serializers = [borsh, json])]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Votes {
    pub votes: SortedMap<AccountId, SortedSet<AccountId>>,
}

impl Votes {
    /// Records `voter`'s vote for `subject` and returns how many votes it now has,
    /// counting only voters in `electorate` (participants may have left since voting).
    pub fn cast(
        &mut self,
        subject: &AccountId,
        voter: &AccountId,
        electorate: &Participants,
    ) -> usize {
        let voters = self.votes.get_or_default(subject.clone());
        voters.insert(voter.clone());
        voters.iter().filter(|v| electorate.contains(v)).count()
    }
}

/// A domain with its root public key (`secp256k1:…` or `ed25519:…`).
#[near(serializers = [borsh, json])]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainKey {
    pub id: DomainId,
    pub scheme: SignatureScheme,
    pub public_key: PublicKey,
    /// The key-event attempt whose shares the current participants hold (keygen, or
    /// the resharing into this epoch). Nodes keep the share from exactly this attempt.
    pub attempt: u64,
}

impl DomainKey {
    pub fn config(&self) -> DomainConfig {
        DomainConfig {
            id: self.id,
            scheme: self.scheme,
        }
    }
}

/// Names one attempt of one key event, as nodes vote for it:
/// `{"epoch": 1, "domain_id": 0, "attempt": 7}` (`domain_id` is null for resharing,
/// which covers every domain).
#[near(serializers = [borsh, json])]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyEventId {
    pub epoch: u64,
    pub domain_id: Option<DomainId>,
    pub attempt: u64,
}

/// One key event (a domain's keygen, or resharing every domain) and its current
/// attempt. Attempts end by timeout without a transaction: [`KeyEvent::rolled`]
/// computes which attempt is current at a block height, and every call and view
/// sees the event rolled forward to its block.
#[near(serializers = [borsh, json])]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyEvent {
    /// The epoch whose shares this event makes.
    pub epoch: u64,
    /// The domain whose key is generated; `None` for resharing (all domains).
    pub domain: Option<DomainConfig>,
    /// Who must take part (and all vote) for an attempt to complete.
    pub participants: Participants,
    pub threshold: usize,
    pub attempt: u64,
    /// The block the current attempt began in.
    pub started_at: u64,
    /// The first block in which the current attempt no longer counts.
    pub expires_at: u64,
    /// Participants that voted for the current attempt.
    pub votes: SortedSet<AccountId>,
    /// Keygen: the public key the current attempt's votes agree on.
    pub public_key: Option<PublicKey>,
}

impl KeyEvent {
    pub fn new(
        epoch: u64,
        domain: Option<DomainConfig>,
        participants: Participants,
        threshold: usize,
        attempt: u64,
        now: u64,
        timeout: u64,
    ) -> Self {
        KeyEvent {
            epoch,
            domain,
            participants,
            threshold,
            attempt,
            started_at: now,
            expires_at: now.saturating_add(timeout),
            votes: SortedSet::new(),
            public_key: None,
        }
    }

    pub fn id(&self) -> KeyEventId {
        KeyEventId {
            epoch: self.epoch,
            domain_id: self.domain.map(|d| d.id),
            attempt: self.attempt,
        }
    }

    /// The event as it stands at block `now`: attempts that timed out are replaced
    /// by their successors (ids counting on), each lasting `timeout` blocks.
    pub fn rolled(mut self, now: u64, timeout: u64) -> Self {
        if now >= self.expires_at {
            let timeout = timeout.max(1);
            let missed = (now - self.expires_at) / timeout + 1;
            self.attempt = self.attempt.saturating_add(missed);
            self.started_at = self.expires_at + (missed - 1) * timeout;
            self.expires_at = self.started_at.saturating_add(timeout);
            self.votes.clear();
            self.public_key = None;
        }
        self
    }

    /// Ends the current attempt now and starts the next.
    pub fn restart(&mut self, now: u64, timeout: u64) {
        self.attempt = self.attempt.saturating_add(1);
        self.started_at = now;
        self.expires_at = now.saturating_add(timeout);
        self.votes.clear();
        self.public_key = None;
    }

    /// Refuses a vote that names another event or an attempt that is not current.
    pub fn check_id(&self, id: &KeyEventId) -> Result<(), Error> {
        if id.epoch != self.epoch || id.domain_id != self.domain.map(|d| d.id) {
            return Err(Error::WrongKeyEvent {
                expected: self.id(),
                got: *id,
            });
        }
        if id.attempt != self.attempt {
            return Err(Error::AttemptOver {
                got: id.attempt,
                current: self.attempt,
            });
        }
        Ok(())
    }

    pub fn require_participant(&self, account: &AccountId) -> Result<(), Error> {
        if self.participants.contains(account) {
            Ok(())
        } else {
            Err(Error::NotInKeyEvent {
                account: account.clone(),
            })
        }
    }

    /// Whether every participant has voted for the current attempt.
    pub fn complete(&self) -> bool {
        self.participants
            .participants
            .keys()
            .all(|p| self.votes.contains(p))
    }
}

/// The set that signs: participants, threshold, and the keys they hold shares of.
#[near(serializers = [borsh, json])]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunningContractState {
    pub epoch: u64,
    pub participants: Participants,
    pub threshold: usize,
    /// The domains with keys, by increasing id.
    pub domains: Vec<DomainKey>,
    /// The id the next added domain gets (ids are never reused).
    pub next_domain_id: DomainId,
    /// Nodes that called `join` and wait for votes.
    pub candidates: SortedMap<AccountId, Candidate>,
    pub join_votes: Votes,
    pub leave_votes: Votes,
    /// Proposed domain lists to add, by voter.
    pub add_domains_votes: SortedMap<AccountId, Vec<DomainConfig>>,
}

impl RunningContractState {
    pub fn new(
        epoch: u64,
        participants: Participants,
        threshold: usize,
        domains: Vec<DomainKey>,
        next_domain_id: DomainId,
    ) -> Self {
        RunningContractState {
            epoch,
            participants,
            threshold,
            domains,
            next_domain_id,
            candidates: SortedMap::new(),
            join_votes: Votes::default(),
            leave_votes: Votes::default(),
            add_domains_votes: SortedMap::new(),
        }
    }

    pub fn domain(&self, id: DomainId) -> Option<&DomainKey> {
        self.domains.iter().find(|d| d.id == id)
    }

    /// The same set with its governance votes cleared (after a key event).
    pub fn without_votes(mut self) -> Self {
        self.join_votes = Votes::default();
        self.leave_votes = Votes::default();
        self.add_domains_votes.clear();
        self
    }

    /// Whether a participant or a pending candidate other than `info.account_id`
    /// registered either of `info`'s p2p keys.
    pub fn uses_p2p_key(&self, info: &CandidateInfo) -> bool {
        self.participants.uses_p2p_key(info)
            || self.candidates.values().any(|c| {
                c.info.account_id != info.account_id
                    && (c.info.cipher_pk == info.cipher_pk || c.info.sign_pk == info.sign_pk)
            })
    }
}

/// Keys are being generated for `generating`, one domain at a time, while `running`
/// signs for the domains it already has keys for (none at the very start).
#[near(serializers = [borsh, json])]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitializingContractState {
    pub running: RunningContractState,
    /// Domains still waiting for a key; the key event is for the first.
    pub generating: Vec<DomainConfig>,
    pub key_event: KeyEvent,
    /// Signers voting to give up on the new domains.
    pub cancel_votes: SortedSet<AccountId>,
}

/// Every domain's key is being reshared to `key_event.participants` (with
/// `key_event.threshold`), while `previous` keeps signing.
#[near(serializers = [borsh, json])]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResharingContractState {
    pub previous: RunningContractState,
    pub key_event: KeyEvent,
    /// Signers of `previous` voting to cancel the resharing.
    pub cancel_votes: SortedSet<AccountId>,
}

#[near(serializers = [borsh, json])]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProtocolContractState {
    NotInitialized,
    Initializing(InitializingContractState),
    Running(RunningContractState),
    Resharing(ResharingContractState),
}

impl ProtocolContractState {
    pub fn name(&self) -> &'static str {
        match self {
            ProtocolContractState::NotInitialized => "NotInitialized",
            ProtocolContractState::Initializing(_) => "Initializing",
            ProtocolContractState::Running(_) => "Running",
            ProtocolContractState::Resharing(_) => "Resharing",
        }
    }

    /// The set that signs now, whatever key event is under way.
    pub fn running(&self) -> Option<&RunningContractState> {
        match self {
            ProtocolContractState::NotInitialized => None,
            ProtocolContractState::Initializing(s) => Some(&s.running),
            ProtocolContractState::Running(s) => Some(s),
            ProtocolContractState::Resharing(s) => Some(&s.previous),
        }
    }

    /// The participants who hold shares of the current keys and may `respond`.
    pub fn signers(&self) -> Option<&Participants> {
        self.running().map(|r| &r.participants)
    }

    pub fn threshold(&self) -> Option<usize> {
        self.running().map(|r| r.threshold)
    }

    pub fn key_event(&self) -> Option<&KeyEvent> {
        match self {
            ProtocolContractState::Initializing(s) => Some(&s.key_event),
            ProtocolContractState::Resharing(s) => Some(&s.key_event),
            _ => None,
        }
    }

    pub fn key_event_mut(&mut self) -> Option<&mut KeyEvent> {
        match self {
            ProtocolContractState::Initializing(s) => Some(&mut s.key_event),
            ProtocolContractState::Resharing(s) => Some(&mut s.key_event),
            _ => None,
        }
    }

    /// The state as it stands at block `now` (key-event attempts rolled forward).
    pub fn rolled(mut self, now: u64, timeout: u64) -> Self {
        if let Some(event) = self.key_event_mut() {
            *event = event.clone().rolled(now, timeout);
        }
        self
    }

    /// The key a request for `id` is signed with, or why there is none (the same
    /// answers as [`SignableDomains::scheme`]).
    pub fn domain_key(&self, id: DomainId) -> Result<&DomainKey, Error> {
        let running = self
            .running()
            .ok_or(Error::NotReady { state: self.name() })?;
        if let Some(key) = running.domain(id) {
            return Ok(key);
        }
        match self {
            ProtocolContractState::Initializing(s) if s.generating.iter().any(|d| d.id == id) => {
                Err(Error::DomainWithoutKey { domain: id })
            }
            _ => Err(Error::UnknownDomain { domain: id }),
        }
    }

    pub fn running_mut(&mut self) -> &mut RunningContractState {
        let actual = self.name();
        match self {
            ProtocolContractState::Running(s) => s,
            _ => fail(Error::WrongState {
                expected: "Running",
                actual,
            }),
        }
    }

    /// Asserts the state machine's invariants.
    pub fn assert_invariants(&self) {
        let mut sets: Vec<(usize, usize)> = Vec::new();
        if let Some(running) = self.running() {
            sets.push((running.threshold, running.participants.len()));
            assert_domains(running);
        }
        if let Some(event) = self.key_event() {
            sets.push((event.threshold, event.participants.len()));
            assert!(
                event.started_at < event.expires_at,
                "invariant broken: empty attempt"
            );
        }
        if let ProtocolContractState::Initializing(s) = self {
            let first_new = s.running.domains.last().map(|d| d.id.next());
            for (i, d) in s.generating.iter().enumerate() {
                assert!(
                    d.id < s.running.next_domain_id
                        && first_new.is_none_or(|first| d.id >= first)
                        && (i == 0 || s.generating[i - 1].id < d.id),
                    "invariant broken: generating domain {} out of order",
                    d.id
                );
            }
            assert_eq!(
                s.key_event.domain,
                s.generating.first().copied(),
                "invariant broken: keygen is not for the first domain waiting"
            );
        }
        for (threshold, n) in sets {
            assert!(
                threshold >= 2 && threshold <= n,
                "invariant broken: threshold {threshold} with {n} participants"
            );
        }
    }
}

fn assert_domains(running: &RunningContractState) {
    for pair in running.domains.windows(2) {
        assert!(pair[0].id < pair[1].id, "invariant broken: domain order");
    }
    for d in &running.domains {
        assert!(
            d.id < running.next_domain_id,
            "invariant broken: domain {} at or above next_domain_id",
            d.id
        );
        assert!(
            crate::keys::key_has_scheme_shape(&d.public_key, d.scheme),
            "invariant broken: domain {} key does not fit its scheme",
            d.id
        );
    }
}

/// What `sign` needs to know of the domains, kept in the contract's root and
/// updated on every transition, so that `sign` does not read the protocol state.
#[near(serializers = [borsh])]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SignableDomains {
    /// Whether a set is running (else requests are refused as not ready).
    pub running: bool,
    /// Domains with keys.
    pub keyed: Vec<DomainConfig>,
    /// Domains whose keys are being generated.
    pub generating: Vec<DomainConfig>,
}

impl SignableDomains {
    pub fn of(state: &ProtocolContractState) -> Self {
        SignableDomains {
            running: state.running().is_some(),
            keyed: state
                .running()
                .map(|r| r.domains.iter().map(DomainKey::config).collect())
                .unwrap_or_default(),
            generating: match state {
                ProtocolContractState::Initializing(s) => s.generating.clone(),
                _ => Vec::new(),
            },
        }
    }

    /// The scheme requests in domain `id` are signed with, or why they cannot be.
    pub fn scheme(&self, id: DomainId) -> Result<SignatureScheme, Error> {
        if !self.running {
            return Err(Error::NotReady {
                state: "NotInitialized",
            });
        }
        if let Some(domain) = self.keyed.iter().find(|d| d.id == id) {
            return Ok(domain.scheme);
        }
        if self.generating.iter().any(|d| d.id == id) {
            return Err(Error::DomainWithoutKey { domain: id });
        }
        Err(Error::UnknownDomain { domain: id })
    }
}

/// `2 <= threshold <= participants`, or the error that says why not. A threshold of
/// one would let any single node sign alone.
pub fn check_threshold(threshold: usize, participants: usize) -> Result<(), Error> {
    if threshold < 2 || threshold > participants {
        return Err(Error::BadThreshold {
            threshold,
            participants,
        });
    }
    Ok(())
}

/// Domains to add must continue the ids from `next` in order, and the list must not
/// be empty.
pub fn check_new_domains(domains: &[DomainConfig], next: DomainId) -> Result<(), Error> {
    if domains.is_empty() {
        return Err(Error::NoDomains);
    }
    let mut expected = next;
    for d in domains {
        if d.id != expected {
            return Err(Error::DomainIdOrder {
                expected,
                got: d.id,
            });
        }
        expected = expected.next();
    }
    Ok(())
}
