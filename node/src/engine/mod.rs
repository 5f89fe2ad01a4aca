//! The protocol engine of one domain: which threshold protocol instances run,
//! with whom, on what inputs, and what becomes of their outputs. Written once over
//! [`Scheme`]; the daemon holds one engine per domain (and one per domain of a key
//! event) behind [`DomainEngine`]. No network I/O of its own: it takes messages in
//! ([`DomainEngine::handle_message`]), and leaves frames to send
//! ([`DomainEngine::drain_outbox`]) and events ([`DomainEngine::drain_events`]) for
//! the daemon.
//!
//! Deterministic given its inputs: the time comes from an injected [`Clock`] and
//! the ids of the records it proposes from an RNG seeded by [`EngineSetup::seed`],
//! and its tables are ordered maps, so a simulation that feeds it the same
//! messages, times and seed sees it do the same things (`node/tests/simulation.rs`).
//! The threshold protocols still draw their own randomness from the OS: that
//! changes the bytes of their messages, never which messages they send.
//!
//! Protocol steps (feeding an instance its messages and poking it: the
//! cryptography) do not run on the caller's turn: each is handed to the
//! [`StepRunner`] of [`EngineSetup::steps`] and comes back through
//! [`DomainEngine::step_done`] (see [`steps`]). A running instance's state is
//! either here or away on a worker, at most one step of it at a time; messages
//! that come meanwhile wait on the instance for its next step, and a step that
//! comes back for a run that ended meanwhile is discarded.
//!
//! Coordination: the participant that wants a protocol run (the *proposer*) sends a
//! [`Start`] to the others, who check it and join. Ids of triples and presignatures
//! carry their proposer in the top 16 bits, and only the proposer may consume them
//! (triples for its presignature, a presignature for a signature it leads), so
//! two proposers never race for the same record. Every party takes its own share
//! out of storage (gone for good, see [`crate::storage`]) before the protocol runs.
//!
//! A `Start` for signing names a request id only: each party signs the payload,
//! tweak and entropy of that request *as it sees it on the chain*, never values a
//! proposer supplies.
//!
//! This file holds the engine's state, its setup, errors and events, and
//! [`DomainEngine`], whose methods hand over to the file of their concern:
//! `runs.rs` (launching, joining, delivering, stepping, finishing and expiring
//! runs), `instance.rs` (a run's protocol state and one step of it),
//! `key_task.rs` (the key share and the contract's key task), `stock.rs`
//! (proposing, counting and topping up stock), `signing.rs` (requests and
//! leading a signature), `early.rs` (messages for runs not started yet) and, for
//! tests only, `test_api.rs`.

mod early;
mod instance;
mod judge;
mod key_task;
mod message;
mod runs;
mod scheme;
mod signing;
pub mod steps;
mod stock;
#[cfg(feature = "test-api")]
mod test_api;

pub use crate::record_id::RecordId;
pub use early::EarlyMessages;
pub use key_task::{KeyLoad, KeyTask};
pub use message::{peer_text, Job, NodeMessage, Start};
pub use scheme::{ReshareSpec, Scheme};
pub use steps::{StepDone, StepKind, StepRunner, StepTag, StepWork, WorkerPool};
pub use stock::{StockCount, StockSubset, StockTargets};
#[cfg(feature = "test-api")]
pub use test_api::{EngineTestApi, ManualSteps};

use crate::blame::{FailureKind, PeerReport};
use crate::ecdsa::Ecdsa;
use crate::eddsa::Eddsa;
use crate::storage::{Store, StoreError};
use primitives::{DomainId, PendingRequest, RequestId, SignatureResponse, SignatureScheme};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use runs::Running;
use sha3::{Digest, Sha3_256};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use threshold::{InstanceId, ParticipantId, Participants};

/// Engines made in this process so far: each engine's serial tells its step
/// completions from those of an engine it replaced.
static ENGINES_MADE: AtomicU64 = AtomicU64::new(0);

/// Something the daemon should know.
#[derive(Debug, PartialEq)]
pub enum Event {
    /// A key share from key-event attempt `attempt`, already stored: vote for its
    /// public key (`vote_pk`) or report resharing done (`vote_reshared`).
    KeyShareStored {
        domain: DomainId,
        epoch: u64,
        attempt: u64,
        /// The root key, as the contract writes it.
        public_key: String,
    },
    TripleStored(RecordId),
    PresignatureStored(RecordId),
    /// A signature for `request_id`; `leader` says whether this node proposed it
    /// (and so should `respond`).
    Signed {
        request_id: RequestId,
        response: SignatureResponse,
        leader: bool,
    },
    /// A run that ended without output here (a peer misbehaved, timed out, or the
    /// inputs were missing).
    Failed {
        job: Job,
        reason: String,
    },
}

#[derive(Debug)]
pub enum EngineError {
    Malformed(String),
    /// A `Start` this node will not join, and why.
    Refused(String),
    NoKey,
    /// Fewer live participants than the threshold: nothing can be generated now.
    TooFewLive {
        live: usize,
        threshold: usize,
    },
    Store(StoreError),
    Protocol(threshold::Error),
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::Malformed(why) => write!(f, "malformed peer message: {why}"),
            EngineError::Refused(why) => write!(f, "refused to join a protocol run: {why}"),
            EngineError::NoKey => f.write_str("this node holds no key share yet"),
            EngineError::TooFewLive { live, threshold } => write!(
                f,
                "only {live} participants are reachable, fewer than the threshold {threshold}"
            ),
            EngineError::Store(e) => write!(f, "{e}"),
            EngineError::Protocol(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for EngineError {}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        EngineError::Store(e)
    }
}

impl From<threshold::Error> for EngineError {
    fn from(e: threshold::Error) -> Self {
        EngineError::Protocol(e)
    }
}

/// What every engine is built from.
#[derive(Clone)]
pub struct EngineSetup {
    pub domain: DomainId,
    pub epoch: u64,
    pub me: ParticipantId,
    pub participants: Participants,
    pub threshold: usize,
    pub store: Arc<Store>,
    pub timeout: Duration,
    /// The time: [`Clock::system`] in the daemon, a simulated clock in tests.
    pub clock: Clock,
    /// Seeds the engine's own randomness (the ids of the records it proposes):
    /// [`EngineSetup::os_seed`] in the daemon, a seed of the schedule in the
    /// simulation. The protocols' randomness is not drawn from it: the threshold
    /// crate takes that from the OS, which changes message bytes but never what
    /// the engine does next, so a simulated schedule still repeats exactly.
    pub seed: [u8; 32],
    /// Where protocol steps run: a [`WorkerPool`] in the daemon, `ManualSteps`
    /// in tests and the simulation (see [`steps`]).
    pub steps: Arc<dyn StepRunner>,
}

impl EngineSetup {
    /// A seed from the OS, for an engine outside the simulation.
    pub fn os_seed() -> [u8; 32] {
        let mut seed = [0; 32];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        seed
    }
}

/// Where an engine reads the time. The engine never looks at the system clock
/// itself, so a simulation can drive it (timeouts, confirmation waits, buffer
/// expiry) with a clock of its own and replay a run from its seed.
#[derive(Clone, Default)]
pub struct Clock(Option<Arc<dyn Fn() -> Instant + Send + Sync>>);

impl Clock {
    /// The system's monotonic clock.
    pub fn system() -> Self {
        Clock(None)
    }

    /// A clock that reads `now` (e.g. a simulated time).
    pub fn from_fn(now: impl Fn() -> Instant + Send + Sync + 'static) -> Self {
        Clock(Some(Arc::new(now)))
    }

    pub fn now(&self) -> Instant {
        match &self.0 {
            Some(now) => now(),
            None => Instant::now(),
        }
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Clock(injected)"
        } else {
            "Clock(system)"
        })
    }
}

/// An engine for a domain of `scheme`, without a key share yet. The one place
/// that lists the schemes a node serves.
pub fn for_domain(scheme: SignatureScheme, setup: EngineSetup) -> Box<dyn DomainEngine> {
    match scheme {
        SignatureScheme::Secp256k1 => Box::new(Engine::<Ecdsa>::new(setup, None)),
        SignatureScheme::Ed25519 => Box::new(Engine::<Eddsa>::new(setup, None)),
    }
}

/// The engine as the daemon drives it, whatever its scheme.
pub trait DomainEngine: Send {
    fn domain(&self) -> DomainId;
    fn me(&self) -> ParticipantId;
    /// Whether this engine holds a key share of its epoch.
    fn has_key(&self) -> bool;
    /// Reads this engine's share of its epoch from storage, if made by `attempt`.
    fn load_key(&mut self, attempt: u64) -> Result<KeyLoad, StoreError>;
    /// Retires stored stock of other epochs (it no longer matches the key shares).
    fn retire_other_epochs(&self) -> Result<usize, StoreError>;
    /// Sets who takes part in the stock runs this node proposes from now on.
    fn set_stock_subset(&mut self, subset: StockSubset);

    /// Sets what the contract asks of the key holders (or `None`).
    fn set_key_task(&mut self, task: Option<KeyTask>);
    /// Reads the share resharing starts from: this node's share of `epoch` made by
    /// `attempt`. Returns whether it holds one.
    fn load_reshare_input(&mut self, epoch: u64, attempt: u64) -> Result<bool, StoreError>;
    /// If this node stored its share of the current attempt already (before a
    /// restart), it takes no further part and reports the share again so the
    /// daemon can repeat its vote. Returns whether it had.
    fn resume_finished_key_task(&mut self) -> Result<bool, StoreError>;
    /// Starts the key task (any participant may; all join the same run). Returns
    /// whether there was one.
    fn propose_key_task(&mut self) -> Result<bool, EngineError>;

    /// Records a request seen on the chain (again, if its entropy changed), so this
    /// node may sign it when asked.
    fn add_request(&mut self, request: &PendingRequest) -> Result<(), String>;
    /// Forgets a request (answered or expired).
    fn remove_request(&mut self, request_id: &RequestId);
    /// Whether `response` answers a request this node has seen, under this
    /// engine's key (see [`Scheme::check_response`]); `None` if it cannot tell
    /// (no key share here, or the request not seen here yet).
    fn check_answer(
        &self,
        request_id: &RequestId,
        response: &SignatureResponse,
    ) -> Option<Result<(), String>>;
    /// Leads signing of a known request with one of this node's presignatures.
    /// Returns the presignature, or `None` if none is usable now.
    fn propose_sign(
        &mut self,
        request_id: RequestId,
        live: &Participants,
    ) -> Result<Option<RecordId>, EngineError>;

    /// This node's stock among `live`: records it can use now or soon.
    fn own_stock(&self, live: &Participants) -> Result<StockCount, EngineError>;
    /// Proposes stock runs until `targets` are met or enough of its runs are under way.
    fn top_up_stock(&mut self, live: &Participants, stock: StockCount, targets: &StockTargets);

    /// Handles a message from a peer. Errors are about that message only.
    fn handle_message(
        &mut self,
        from: ParticipantId,
        message: NodeMessage,
    ) -> Result<(), EngineError>;
    /// Ends runs and buffers older than the timeout.
    fn expire(&mut self, now: Instant);
    /// Ends every run that involves one of `gone` (peers that stopped answering).
    fn abandon_runs_with(&mut self, gone: &[ParticipantId]);
    /// This node's `message` to `to` could not be queued (the queue to `to` is
    /// full): ends the run it belongs to now. Returns whether a run ended.
    fn unsent(&mut self, to: ParticipantId, message: &NodeMessage) -> bool;
    /// Frames to send: (recipient, bytes).
    fn drain_outbox(&mut self) -> Vec<(ParticipantId, Vec<u8>)>;
    fn drain_events(&mut self) -> Vec<Event>;
    /// What runs and messages showed about peers since the last call, for
    /// [`crate::blame::Blame`].
    fn drain_peer_reports(&mut self) -> Vec<PeerReport>;
    /// The contract ended this engine's key-event attempt (the next one began, or
    /// the event ended) before its runs finished here: a keygen run that was
    /// stalled on one straggler (quiet for half the stall limit) is blamed on
    /// it, as [`DomainEngine::expire`] would have done had the attempt lasted (a
    /// peer that withholds its last message must not escape blame because
    /// another node's report ended the attempt first).
    fn judge_ended_attempt(&mut self, now: Instant);
    /// Whether an invitation to sign arrived for a request this node has not seen
    /// on the chain yet (since the last call).
    fn take_awaiting_chain(&mut self) -> bool;
    /// Runs under way.
    fn running(&self) -> usize;
    /// Messages for runs this engine never started, to hand to its successor.
    fn take_early(&mut self) -> BTreeMap<InstanceId, EarlyMessages>;
    /// Takes over a predecessor's early messages.
    fn adopt_early(&mut self, early: BTreeMap<InstanceId, EarlyMessages>);

    /// Tells this engine from any other made in this process (step completions
    /// carry it: [`StepTag::engine`]).
    fn serial(&self) -> u64;
    /// Takes back a step this engine handed to its runner: sends what the step
    /// sent, finishes or fails its run, and starts the next step if messages came
    /// meanwhile. A completion for a run that ended while its step was away (it
    /// was abandoned, expired or voided) is discarded. Returns whether the step
    /// was taken up (false: discarded).
    fn step_done(&mut self, done: StepDone) -> bool;
    /// Steps of this engine handed to its runner and not yet taken back.
    fn steps_away(&self) -> usize;
}

/// One node's protocol engine for one domain in one epoch (participants,
/// threshold, key share).
pub struct Engine<S: Scheme> {
    domain: DomainId,
    epoch: u64,
    me: ParticipantId,
    participants: Participants,
    threshold: usize,
    key: Option<S::KeyShare>,
    key_task: Option<KeyTask>,
    /// This node stored its share from the key task's attempt (a later attempt is
    /// a new task, set by the daemon when the contract moves on).
    key_done: bool,
    /// This node's run of the key task's attempt failed here. It is not run
    /// again: the peers' runs of the attempt (one instance id) are under way, so a
    /// fresh one would only hand them a stale first round, which counts as
    /// progress and hides what their runs wait on; the contract's next attempt
    /// is the next chance.
    key_failed: bool,
    /// The share resharing starts from (the previous epoch's), if this node held one.
    reshare_input: Option<S::KeyShare>,
    /// What newcomers need to know about the old key: from `reshare_input`, or
    /// (for a newcomer) from the first invitation to the resharing run.
    reshare_facts: Option<Vec<u8>>,
    store: Arc<Store>,
    timeout: Duration,
    requests: BTreeMap<RequestId, S::SignTask>,
    running: BTreeMap<InstanceId, Running<S>>,
    early: BTreeMap<InstanceId, EarlyMessages>,
    /// Stock and signing runs that ended here lately (their repeats start nothing).
    ended: runs::EndedRuns,
    /// Bytes in `early` per sender, for the cap per peer (see `early.rs`).
    early_bytes: BTreeMap<ParticipantId, usize>,
    /// Invitations to sign requests this node has not seen on the chain yet.
    deferred: BTreeMap<(RequestId, ParticipantId), (Instant, Start)>,
    outbox: VecDeque<(ParticipantId, Vec<u8>)>,
    events: VecDeque<Event>,
    /// Failures and successes attributable to peers, for the daemon's blame.
    reports: Vec<PeerReport>,
    /// An invitation waits for a request this node has not seen yet.
    awaiting_chain: bool,
    /// Who has confirmed storing each of this node's own triples and
    /// presignatures made since it started (records older than that, found in
    /// storage, are taken to be held by all their holders).
    acks: BTreeMap<RecordId, (Instant, BTreeSet<ParticipantId>)>,
    /// Who takes part in the stock runs this node proposes.
    stock_subset: StockSubset,
    /// Stock proposals this node made: turns the rotation of [`Engine::stock_subset`].
    stock_proposals: u64,
    /// When each peer last sent this engine a protocol message (any run).
    heard: BTreeMap<ParticipantId, Instant>,
    /// Where the engine reads the time (see [`Clock`]).
    clock: Clock,
    /// Draws record ids: seeded from outside, so a simulated run repeats exactly.
    rng: StdRng,
    /// Where protocol steps run.
    steps: Arc<dyn StepRunner>,
    /// See [`DomainEngine::serial`].
    serial: u64,
    /// The last ticket given to a step.
    tickets: u64,
}

impl<S: Scheme> Engine<S> {
    pub fn new(setup: EngineSetup, key: Option<S::KeyShare>) -> Self {
        Engine {
            domain: setup.domain,
            epoch: setup.epoch,
            me: setup.me,
            participants: setup.participants,
            threshold: setup.threshold,
            key,
            key_task: None,
            key_done: false,
            key_failed: false,
            reshare_input: None,
            reshare_facts: None,
            store: setup.store,
            timeout: setup.timeout,
            requests: BTreeMap::new(),
            running: BTreeMap::new(),
            early: BTreeMap::new(),
            early_bytes: BTreeMap::new(),
            ended: runs::EndedRuns::default(),
            deferred: BTreeMap::new(),
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            reports: Vec::new(),
            awaiting_chain: false,
            acks: BTreeMap::new(),
            stock_subset: StockSubset::default(),
            stock_proposals: 0,
            heard: BTreeMap::new(),
            clock: setup.clock,
            rng: StdRng::from_seed(setup.seed),
            steps: setup.steps,
            serial: ENGINES_MADE.fetch_add(1, Ordering::Relaxed),
            tickets: 0,
        }
    }

    /// The instance id every party derives for `job` of this domain in this epoch.
    fn instance_of(&self, job: &Job) -> InstanceId {
        let mut hasher = Sha3_256::new();
        hasher.update(b"chain-signatures engine instance v2:");
        hasher.update(self.domain.0.to_be_bytes());
        hasher.update(self.epoch.to_be_bytes());
        hasher.update(borsh::to_vec(job).expect("serialises"));
        InstanceId(hasher.finalize().into())
    }

    fn send(&mut self, to: ParticipantId, message: &NodeMessage) {
        self.outbox.push_back((to, message.encode(self.domain)));
    }

    fn blame(&mut self, peer: ParticipantId, kind: FailureKind, detail: String) {
        if peer != self.me {
            self.reports
                .push(PeerReport::Failure { peer, kind, detail });
        }
    }

    /// Reports a run that ended without output (for a key task the daemon tells
    /// the contract, which starts the next attempt; this node runs the attempt no
    /// more: see `key_failed`).
    fn failed(&mut self, job: Job, reason: String) {
        let current = self.key_task.as_ref().map(|task| task.attempt());
        if job.attempt().is_some() && job.attempt() == current {
            self.key_failed = true;
        }
        self.events.push_back(Event::Failed { job, reason });
    }
}

// Each method hands over to the inherent method of the same name in the file of
// its concern (`runs.rs`, `stock.rs`, ...). Those are visible inside `engine`
// only, so callers outside it always come here.
impl<S: Scheme> DomainEngine for Engine<S> {
    fn domain(&self) -> DomainId {
        self.domain
    }

    fn me(&self) -> ParticipantId {
        self.me
    }

    fn has_key(&self) -> bool {
        self.key.is_some()
    }

    fn load_key(&mut self, attempt: u64) -> Result<KeyLoad, StoreError> {
        Engine::load_key(self, attempt)
    }

    fn retire_other_epochs(&self) -> Result<usize, StoreError> {
        Engine::retire_other_epochs(self)
    }

    fn set_stock_subset(&mut self, subset: StockSubset) {
        Engine::set_stock_subset(self, subset)
    }

    fn set_key_task(&mut self, task: Option<KeyTask>) {
        Engine::set_key_task(self, task)
    }

    fn load_reshare_input(&mut self, epoch: u64, attempt: u64) -> Result<bool, StoreError> {
        Engine::load_reshare_input(self, epoch, attempt)
    }

    fn resume_finished_key_task(&mut self) -> Result<bool, StoreError> {
        Engine::resume_finished_key_task(self)
    }

    fn propose_key_task(&mut self) -> Result<bool, EngineError> {
        Engine::propose_key_task(self)
    }

    fn add_request(&mut self, request: &PendingRequest) -> Result<(), String> {
        Engine::add_request(self, request)
    }

    fn remove_request(&mut self, request_id: &RequestId) {
        Engine::remove_request(self, request_id)
    }

    fn check_answer(
        &self,
        request_id: &RequestId,
        response: &SignatureResponse,
    ) -> Option<Result<(), String>> {
        Engine::check_answer(self, request_id, response)
    }

    fn propose_sign(
        &mut self,
        request_id: RequestId,
        live: &Participants,
    ) -> Result<Option<RecordId>, EngineError> {
        Engine::propose_sign(self, request_id, live)
    }

    fn own_stock(&self, live: &Participants) -> Result<StockCount, EngineError> {
        Engine::own_stock(self, live)
    }

    fn top_up_stock(&mut self, live: &Participants, stock: StockCount, targets: &StockTargets) {
        Engine::top_up_stock(self, live, stock, targets)
    }

    fn handle_message(
        &mut self,
        from: ParticipantId,
        message: NodeMessage,
    ) -> Result<(), EngineError> {
        Engine::handle_message(self, from, message)
    }

    fn expire(&mut self, now: Instant) {
        Engine::expire(self, now)
    }

    fn abandon_runs_with(&mut self, gone: &[ParticipantId]) {
        Engine::abandon_runs_with(self, gone)
    }

    fn unsent(&mut self, to: ParticipantId, message: &NodeMessage) -> bool {
        Engine::unsent(self, to, message)
    }

    fn drain_outbox(&mut self) -> Vec<(ParticipantId, Vec<u8>)> {
        self.outbox.drain(..).collect()
    }

    fn drain_events(&mut self) -> Vec<Event> {
        self.events.drain(..).collect()
    }

    fn drain_peer_reports(&mut self) -> Vec<PeerReport> {
        std::mem::take(&mut self.reports)
    }

    fn judge_ended_attempt(&mut self, now: Instant) {
        Engine::judge_ended_attempt(self, now)
    }

    fn take_awaiting_chain(&mut self) -> bool {
        std::mem::take(&mut self.awaiting_chain)
    }

    fn running(&self) -> usize {
        self.running.len()
    }

    fn take_early(&mut self) -> BTreeMap<InstanceId, EarlyMessages> {
        Engine::take_early(self)
    }

    fn adopt_early(&mut self, early: BTreeMap<InstanceId, EarlyMessages>) {
        Engine::adopt_early(self, early)
    }

    fn serial(&self) -> u64 {
        self.serial
    }

    fn step_done(&mut self, done: StepDone) -> bool {
        Engine::step_done(self, done)
    }

    fn steps_away(&self) -> usize {
        self.running.values().filter(|r| r.away.is_some()).count()
    }
}
