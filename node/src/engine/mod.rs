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

mod message;
mod scheme;
pub mod steps;

pub use message::{owner, peer_text, Job, NodeMessage, Start};
pub use scheme::{ReshareSpec, Scheme};
pub use steps::{ManualSteps, StepDone, StepKind, StepRunner, StepTag, StepWork, WorkerPool};

use crate::blame::{FailureKind, PeerReport};
use crate::ecdsa::Ecdsa;
use crate::eddsa::Eddsa;
use crate::storage::{RecordKind, Stocked, Store, StoreError};
use primitives::{DomainId, PendingRequest, RequestId, SignatureResponse, SignatureScheme};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use sha3::{Digest, Sha3_256};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use steps::{StepOutput, StoredRecord};
use threshold::{Instance, InstanceId, ParticipantId, Participants, Recipient, Step};

/// Messages buffered per instance that has not started here yet.
const MAX_EARLY_PER_INSTANCE: usize = 256;
/// Instances with buffered early messages.
const MAX_EARLY_INSTANCES: usize = 1024;
/// Invitations to sign kept until the request shows up on our side.
const MAX_DEFERRED: usize = 1024;
/// Messages queued for a running instance while its step is on a worker, shared
/// equally among its participants.
const MAX_INBOX_PER_INSTANCE: usize = 1024;

/// Engines made in this process so far: each engine's serial tells its step
/// completions from those of an engine it replaced.
static ENGINES_MADE: AtomicU64 = AtomicU64::new(0);
/// Bytes of early messages buffered from one peer. Beyond it the peer is
/// reported over budget (the daemon cuts it off) and its early messages dropped,
/// so it cannot push out the others'. Honest early messages are a run's first
/// round or two, a few 40 KB triple messages per run at most.
const MAX_EARLY_BYTES_PER_PEER: usize = 16 << 20;
/// A run that took no message for this share of the protocol timeout, waiting on
/// one peer that sent nothing at all for as long, is ended early and that peer
/// blamed (see [`Engine::expire`]): keeping it would hold a generation slot until
/// the timeout. A quarter (7.5 s of the tests' 30 s, 15 s of the default 60 s)
/// leaves a wide margin for an honest peer behind a queue of stock traffic.
const STALL_FRACTION: u32 = 4;

/// Who proposed a stock or signing run (its record ids carry their owner);
/// `None` for key runs, which every participant proposes.
fn proposer(job: &Job) -> Option<ParticipantId> {
    match job {
        Job::Triple { id } | Job::Presign { id, .. } => Some(owner(*id)),
        Job::Sign { presignature, .. } => Some(owner(*presignature)),
        Job::Keygen { .. } | Job::Reshare { .. } => None,
    }
}

/// Who takes part in the triple and presignature runs a node proposes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StockSubset {
    /// Exactly `threshold` live participants, the proposer and a rotating window
    /// of the others (see [`Engine::stock_subset`]).
    #[default]
    Threshold,
    /// Every live participant.
    All,
}

impl StockSubset {
    pub fn as_str(&self) -> &'static str {
        match self {
            StockSubset::Threshold => "threshold",
            StockSubset::All => "all",
        }
    }
}

impl fmt::Display for StockSubset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for StockSubset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "threshold" => Ok(StockSubset::Threshold),
            "all" => Ok(StockSubset::All),
            other => Err(format!("unknown stock subset `{other}` (threshold or all)")),
        }
    }
}

/// What the contract asks of the key holders of one domain, as the daemon reads
/// it from the contract state: one attempt of a key event. The attempt id is the
/// contract's, so every participant runs the same instance and a new attempt is a
/// new task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyTask {
    /// Generate `domain`'s key among the engine's participants.
    Generate {
        epoch: u64,
        domain: DomainId,
        attempt: u64,
    },
    /// Reshare `domain`'s key `public_key` (as the contract shows it) from the old
    /// participants to the engine's participants and threshold.
    Reshare {
        epoch: u64,
        domain: DomainId,
        old_participants: Participants,
        old_threshold: usize,
        public_key: String,
        attempt: u64,
    },
}

impl KeyTask {
    /// The run of this task, with `facts` about the old key for a resharing.
    fn job(&self, facts: Vec<u8>) -> Job {
        match self {
            KeyTask::Generate {
                epoch,
                domain,
                attempt,
            } => Job::Keygen {
                epoch: *epoch,
                domain: domain.0,
                attempt: *attempt,
            },
            KeyTask::Reshare {
                epoch,
                domain,
                old_participants,
                old_threshold,
                public_key,
                attempt,
            } => Job::Reshare {
                epoch: *epoch,
                domain: domain.0,
                old_participants: old_participants.iter().map(|p| p.0).collect(),
                old_threshold: *old_threshold as u32,
                public_key: public_key.clone(),
                facts,
                attempt: *attempt,
            },
        }
    }

    pub fn attempt(&self) -> u64 {
        match self {
            KeyTask::Generate { attempt, .. } | KeyTask::Reshare { attempt, .. } => *attempt,
        }
    }

    pub fn domain(&self) -> DomainId {
        match self {
            KeyTask::Generate { domain, .. } | KeyTask::Reshare { domain, .. } => *domain,
        }
    }

    pub fn epoch(&self) -> u64 {
        match self {
            KeyTask::Generate { epoch, .. } | KeyTask::Reshare { epoch, .. } => *epoch,
        }
    }
}

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
    TripleStored(u64),
    PresignatureStored(u64),
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

/// A node's stock of one domain: its own records it can use now or soon.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StockCount {
    pub triples: usize,
    pub presignatures: usize,
}

/// How much stock to keep, and how many of its own generation runs a node may
/// have under way at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StockTargets {
    pub triples: usize,
    pub presignatures: usize,
    pub max_concurrent: usize,
}

/// How an engine's key share for its epoch was found in storage.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyLoad {
    Loaded,
    /// None is stored.
    Missing,
    /// The stored share is from another key-event attempt (given).
    OtherAttempt(u64),
}

/// Messages for a run that has not started here yet, and since when.
pub type EarlyMessages = (Instant, Vec<(ParticipantId, Vec<u8>)>);

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
    /// Where protocol steps run: a [`WorkerPool`] in the daemon, [`ManualSteps`]
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
    /// Leads signing of a known request with one of this node's presignatures.
    /// Returns the presignature, or `None` if none is usable now.
    fn propose_sign(
        &mut self,
        request_id: RequestId,
        live: &Participants,
    ) -> Result<Option<u64>, EngineError>;

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
    /// Frames to send: (recipient, bytes).
    fn drain_outbox(&mut self) -> Vec<(ParticipantId, Vec<u8>)>;
    fn drain_events(&mut self) -> Vec<Event>;
    /// What runs and messages showed about peers since the last call, for
    /// [`crate::blame::Blame`].
    fn drain_peer_reports(&mut self) -> Vec<PeerReport>;
    /// The contract ended this engine's key-event attempt (the next one began, or
    /// the event ended) before its runs finished here: a keygen run that was
    /// stalled on one straggler is blamed on it, as [`DomainEngine::expire`]
    /// would have done had the attempt lasted (a peer that withholds its last
    /// message must not escape blame because attempts are short).
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

enum Output<S: Scheme> {
    Key(Instance<S::KeyShare>),
    Triple(Instance<S::Triple>),
    Presign(Instance<S::Presignature>),
    Sign(Instance<S::Signature>),
}

enum Done<S: Scheme> {
    Key(Box<S::KeyShare>),
    Triple(Box<S::Triple>),
    Presign(Box<S::Presignature>),
    /// A triple or presignature, stored by the step that made it (on its worker).
    Stored(Result<(), StoreError>),
    Sign(S::Signature),
}

enum Poked<S: Scheme> {
    Send(threshold::Outgoing),
    Wait,
    Done(Done<S>),
}

fn poked<S: Scheme, T>(step: Step<T>, done: impl FnOnce(T) -> Done<S>) -> Poked<S> {
    match step {
        Step::Send(out) => Poked::Send(out),
        Step::Wait => Poked::Wait,
        Step::Done(output) => Poked::Done(done(output)),
    }
}

impl<S: Scheme> Output<S> {
    fn receive(&mut self, from: ParticipantId, message: &[u8]) -> Result<(), threshold::Error> {
        match self {
            Output::Key(i) => i.receive(from, message),
            Output::Triple(i) => i.receive(from, message),
            Output::Presign(i) => i.receive(from, message),
            Output::Sign(i) => i.receive(from, message),
        }
    }

    fn poke(&mut self) -> Result<Poked<S>, threshold::Error> {
        Ok(match self {
            Output::Key(i) => poked(i.poke()?, |k| Done::Key(Box::new(k))),
            Output::Triple(i) => poked(i.poke()?, |t| Done::Triple(Box::new(t))),
            Output::Presign(i) => poked(i.poke()?, |p| Done::Presign(Box::new(p))),
            Output::Sign(i) => poked(i.poke()?, Done::Sign),
        })
    }

    fn kind(&self) -> StepKind {
        match self {
            Output::Key(_) => StepKind::Key,
            Output::Triple(_) => StepKind::Triple,
            Output::Presign(_) => StepKind::Presign,
            Output::Sign(_) => StepKind::Sign,
        }
    }
}

/// Where a stock run's last step stores its record.
struct RecordTarget {
    store: Arc<Store>,
    id: u64,
    epoch: u64,
}

/// What a step did, for [`DomainEngine::step_done`].
struct StepResult<S: Scheme> {
    /// How the instance took each message fed to it, in order.
    receipts: Vec<(ParticipantId, Result<(), threshold::Error>)>,
    sent: Vec<threshold::Outgoing>,
    end: StepEnd<S>,
}

enum StepEnd<S: Scheme> {
    /// The instance waits for more messages: its state comes back.
    Wait(Output<S>),
    Done(Done<S>),
    Failed(threshold::Error),
}

/// One step of an instance, as a worker runs it: the messages that came, then
/// pokes until it waits; a finished triple or presignature is stored here too, so
/// the durable write is off the loop as well.
fn run_step<S: Scheme>(
    mut output: Output<S>,
    inbox: Vec<(ParticipantId, Vec<u8>)>,
    record: Option<RecordTarget>,
) -> StepOutput {
    let receipts = inbox
        .into_iter()
        .map(|(from, message)| (from, output.receive(from, &message)))
        .collect();
    let mut sent = Vec::new();
    let mut stored = None;
    let end = loop {
        match output.poke() {
            Ok(Poked::Send(out)) => sent.push(out),
            Ok(Poked::Wait) => break StepEnd::Wait(output),
            Ok(Poked::Done(done)) => {
                let kind_and_write = match (&done, &record) {
                    (Done::Triple(t), Some(r)) => Some((
                        S::TRIPLES,
                        r.store.add_record(S::TRIPLES, r.id, r.epoch, t.as_ref()),
                    )),
                    (Done::Presign(p), Some(r)) => Some((
                        S::PRESIGNATURES,
                        r.store
                            .add_record(S::PRESIGNATURES, r.id, r.epoch, p.as_ref()),
                    )),
                    _ => None,
                };
                break match (kind_and_write, record) {
                    (Some((kind, written)), Some(r)) => {
                        if written.is_ok() {
                            stored = Some(StoredRecord {
                                store: r.store,
                                kind,
                                id: r.id,
                            });
                        }
                        StepEnd::Done(Done::Stored(written))
                    }
                    _ => StepEnd::Done(done),
                };
            }
            Err(e) => break StepEnd::Failed(e),
        }
    };
    StepOutput {
        result: Box::new(StepResult::<S> {
            receipts,
            sent,
            end,
        }),
        stored,
    }
}

/// Triples for one presignature: their ids and their common live holders.
struct PickedTriples {
    ids: Vec<u64>,
    holders: Vec<u32>,
}

struct Running<S: Scheme> {
    job: Job,
    participants: Participants,
    started: Instant,
    leader: bool,
    /// The protocol state, or `None` while a step of it is on a worker (at most
    /// one step per instance is ever away, so no instance runs twice at once).
    output: Option<Output<S>>,
    /// The ticket of the step away, if one is.
    away: Option<u64>,
    /// Messages that came since the last step began, for the next one.
    inbox: Vec<(ParticipantId, Vec<u8>)>,
    /// The instance has not been poked yet (it may speak first).
    fresh: bool,
    /// Protocol messages taken from each peer, and handed out for each: at a
    /// timeout they tell whom the run was waiting on (see [`Engine::straggler`]).
    received: BTreeMap<ParticipantId, u32>,
    sent: BTreeMap<ParticipantId, u32>,
    /// Messages taken in total when [`Engine::expire`] last saw the count change,
    /// and when that was: how long the run has been stalled.
    progress: (u32, Instant),
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
    /// Bytes in `early` per sender, for [`MAX_EARLY_BYTES_PER_PEER`].
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
    acks: BTreeMap<u64, (Instant, BTreeSet<u32>)>,
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
            reshare_input: None,
            reshare_facts: None,
            store: setup.store,
            timeout: setup.timeout,
            requests: BTreeMap::new(),
            running: BTreeMap::new(),
            early: BTreeMap::new(),
            early_bytes: BTreeMap::new(),
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

    /// Sets the share resharing starts from (see [`DomainEngine::load_reshare_input`]).
    pub fn set_reshare_input(&mut self, share: Option<S::KeyShare>) {
        self.reshare_facts = share.as_ref().map(S::reshare_facts);
        self.reshare_input = share;
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

    /// A new id owned by this node: its participant id, then 48 random bits.
    fn fresh_id(&mut self) -> u64 {
        (u64::from(self.me.0) << 48) | (self.rng.next_u64() & ((1 << 48) - 1))
    }

    fn send(&mut self, to: ParticipantId, message: &NodeMessage) {
        self.outbox.push_back((to, message.encode(self.domain)));
    }

    /// The run of the current key task, if this node knows all its inputs (a
    /// newcomer to a resharing whose scheme needs facts about the old key learns
    /// them from an old holder's invitation).
    fn key_job(&self) -> Option<Job> {
        let task = self.key_task.as_ref()?;
        let facts = match task {
            KeyTask::Reshare { .. } if S::RESHARE_NEEDS_FACTS => self.reshare_facts.clone()?,
            _ => Vec::new(),
        };
        Some(task.job(facts))
    }

    fn join_key_task(&self, job: &Job) -> Result<Output<S>, EngineError> {
        let task = self
            .key_task
            .as_ref()
            .ok_or_else(|| EngineError::Refused("no key task is under way".into()))?;
        let instance = self.instance_of(job);
        Ok(Output::Key(match (task, job) {
            (KeyTask::Generate { .. }, _) => {
                S::keygen(instance, self.me, self.participants.clone(), self.threshold)?
            }
            (
                KeyTask::Reshare {
                    old_participants,
                    old_threshold,
                    public_key,
                    ..
                },
                Job::Reshare { facts, .. },
            ) => {
                let spec = ReshareSpec {
                    old_participants,
                    old_threshold: *old_threshold,
                    public_key,
                    facts,
                    new_participants: self.participants.clone(),
                    new_threshold: self.threshold,
                    old_share: self
                        .reshare_input
                        .as_ref()
                        .filter(|_| old_participants.contains(self.me)),
                };
                S::reshare(instance, self.me, spec)?
            }
            (KeyTask::Reshare { .. }, _) => {
                return Err(EngineError::Refused("not a resharing run".into()))
            }
        }))
    }

    /// Proposes new triples among the live participants (`live`: those this node
    /// can reach, itself included; at least the threshold) and returns their ids.
    ///
    /// With [`StockSubset::Threshold`] it starts the triples of one presignature
    /// among one subset of exactly `threshold` participants (see
    /// [`Engine::stock_subset`]): a presignature's participants are its triples'
    /// holders, so they are made among the same subset. With [`StockSubset::All`]
    /// it starts one triple among every live participant.
    pub fn propose_triples(&mut self, live: &Participants) -> Result<Vec<u64>, EngineError> {
        let reachable = self.reachable(live)?;
        let (holders, count) = match self.stock_subset {
            StockSubset::All => (reachable, 1),
            StockSubset::Threshold => (self.stock_subset(&reachable)?, S::TRIPLES_PER_PRESIGNATURE),
        };
        let mut ids = Vec::with_capacity(count);
        for _ in 0..count {
            let id = self.fresh_id();
            let job = Job::Triple { id };
            let instance = S::generate_triple(
                self.instance_of(&job),
                self.me,
                holders.clone(),
                self.threshold,
            )?;
            self.launch(job, holders.clone(), true, Output::Triple(instance));
            ids.push(id);
        }
        Ok(ids)
    }

    /// The participants of this node's next stock proposal, out of `reachable`
    /// (live participants of this epoch, this node included, at least the
    /// threshold): with [`StockSubset::Threshold`] this node and `threshold - 1`
    /// of the others, a window that rotates over them. With the others in id order
    /// as `o[0..m]` and `k` this node's stock proposals so far, the window is
    /// `o[s], o[s+1], … (mod m)` with `s = (k + my id) mod m`. Consecutive
    /// proposals thus use different subsets whenever more than the threshold are
    /// live, every other participant is in the same share of them, a failed run is
    /// retried by the next proposal among another subset, and proposers start their
    /// windows at different places.
    fn stock_subset(&mut self, reachable: &Participants) -> Result<Participants, EngineError> {
        if self.stock_subset == StockSubset::All {
            return Ok(reachable.clone());
        }
        let others: Vec<ParticipantId> = reachable.iter().filter(|p| *p != self.me).collect();
        let take = self.threshold.saturating_sub(1);
        let turn = self.stock_proposals;
        self.stock_proposals = self.stock_proposals.wrapping_add(1);
        if others.len() <= take {
            return Ok(reachable.clone());
        }
        let m = others.len() as u64;
        let start = (turn.wrapping_add(u64::from(self.me.0)) % m) as usize;
        let window = (0..take).map(|i| others[(start + i) % others.len()]);
        Ok(Participants::new(std::iter::once(self.me).chain(window))?)
    }

    /// `live` restricted to this epoch's participants, if it includes this node and
    /// reaches the threshold.
    fn reachable(&self, live: &Participants) -> Result<Participants, EngineError> {
        let set = Participants::new(live.iter().filter(|p| self.participants.contains(*p)))?;
        if !set.contains(self.me) || set.len() < self.threshold {
            return Err(EngineError::TooFewLive {
                live: set.len(),
                threshold: self.threshold,
            });
        }
        Ok(set)
    }

    /// The holders of a record that are live, if this node is one of them and they
    /// reach the threshold; records of other epochs are never usable.
    fn usable(&self, holders: &[u32], epoch: u64, live: &Participants) -> Option<Vec<u32>> {
        let set: Vec<u32> = holders
            .iter()
            .copied()
            .filter(|p| live.contains(ParticipantId(*p)))
            .collect();
        (epoch == self.epoch && set.contains(&self.me.0) && set.len() >= self.threshold)
            .then_some(set)
    }

    /// This node's own records of this epoch, with the live holders of each.
    fn own_usable(&self, stock: Vec<Stocked>, live: &Participants) -> Vec<(u64, Vec<u32>)> {
        stock
            .into_iter()
            .filter(|s| owner(s.id) == self.me)
            .filter_map(|s| {
                self.usable(&s.holders.participants, s.holders.epoch, live)
                    .map(|set| (s.id, set))
            })
            .collect()
    }

    /// Like [`Engine::own_usable`], but only with holders that confirmed storing
    /// their share: a run started before a holder finished its part would be
    /// refused by it. A record waits for every live holder's confirmation, up to
    /// the protocol timeout; after that (a confirmation was lost, or a holder never
    /// finished) it goes ahead with the holders that confirmed.
    fn own_confirmed(&self, stock: Vec<Stocked>, live: &Participants) -> Vec<(u64, Vec<u32>)> {
        self.own_ready(stock, live, false)
    }

    /// [`Engine::own_confirmed`], or (with `pending`) also the records still
    /// waiting for confirmations: what counts as stock.
    fn own_ready(
        &self,
        stock: Vec<Stocked>,
        live: &Participants,
        pending: bool,
    ) -> Vec<(u64, Vec<u32>)> {
        let now = self.clock.now();
        self.own_usable(stock, live)
            .into_iter()
            .filter_map(|(id, holders)| match self.acks.get(&id) {
                // Stored before this engine started: taken as held by all.
                None => Some((id, holders)),
                Some((_, acked)) if holders.iter().all(|p| acked.contains(p)) => {
                    Some((id, holders))
                }
                Some((since, acked)) if now.duration_since(*since) > self.timeout => {
                    let holders: Vec<u32> =
                        holders.into_iter().filter(|p| acked.contains(p)).collect();
                    (holders.contains(&self.me.0) && holders.len() >= self.threshold)
                        .then_some((id, holders))
                }
                Some(_) if pending => Some((id, holders)),
                Some(_) => None,
            })
            .collect()
    }

    /// How many of this node's own triples and presignatures every holder has
    /// confirmed storing, among `live`: what it can start runs with right now.
    pub fn own_confirmed_stock(&self, live: &Participants) -> Result<StockCount, EngineError> {
        Ok(StockCount {
            triples: self
                .own_confirmed(self.store.records(S::TRIPLES)?, live)
                .len(),
            presignatures: self
                .own_confirmed(self.store.records(S::PRESIGNATURES)?, live)
                .len(),
        })
    }

    /// The jobs of the runs under way here, for invariant checks (the simulation:
    /// no key run without its key task).
    pub fn running_jobs(&self) -> Vec<&Job> {
        self.running.values().map(|r| &r.job).collect()
    }

    /// The key task this engine follows, if any.
    pub fn key_task(&self) -> Option<&KeyTask> {
        self.key_task.as_ref()
    }

    /// The record ids this node holds confirmations of storing for, for invariant
    /// checks (the simulation: only its own ids).
    pub fn acknowledged_ids(&self) -> Vec<u64> {
        self.acks.keys().copied().collect()
    }

    /// `count` of this node's own confirmed triples whose live holders overlap in
    /// at least the threshold, and that overlap (the first such set found).
    fn pick_triples(
        &self,
        live: &Participants,
        count: usize,
    ) -> Result<Option<PickedTriples>, EngineError> {
        let mine = self.own_confirmed(self.store.records(S::TRIPLES)?, live);
        for (i, (first, holders)) in mine.iter().enumerate() {
            let mut picked = vec![*first];
            let mut common = holders.clone();
            for (id, others) in &mine[i + 1..] {
                if picked.len() == count {
                    break;
                }
                let overlap: Vec<u32> = common
                    .iter()
                    .copied()
                    .filter(|p| others.contains(p))
                    .collect();
                if overlap.len() >= self.threshold {
                    picked.push(*id);
                    common = overlap;
                }
            }
            if picked.len() == count {
                return Ok(Some(PickedTriples {
                    ids: picked,
                    holders: common,
                }));
            }
        }
        Ok(None)
    }

    /// Proposes a presignature: from this node's own triples whose live holders
    /// overlap in at least the threshold, among that overlap; or, for schemes
    /// without triples, among the next stock subset of live participants.
    pub fn propose_presignature(
        &mut self,
        live: &Participants,
    ) -> Result<Option<u64>, EngineError> {
        let (triples, participants) = if S::TRIPLES_PER_PRESIGNATURE == 0 {
            if self.key.is_none() {
                return Err(EngineError::NoKey);
            }
            let reachable = self.reachable(live)?;
            (Vec::new(), self.stock_subset(&reachable)?)
        } else {
            let Some(picked) = self.pick_triples(live, S::TRIPLES_PER_PRESIGNATURE)? else {
                return Ok(None);
            };
            (
                picked.ids,
                Participants::new(picked.holders.into_iter().map(ParticipantId))?,
            )
        };
        for id in &triples {
            self.retire_elsewhere(
                S::TRIPLES,
                *id,
                &participants,
                NodeMessage::RetireTriple(*id),
            )?;
            self.acks.remove(id);
        }
        let id = self.fresh_id();
        let job = Job::Presign { id, triples };
        let output = self.join_presign(&job, &participants)?;
        self.launch(job, participants, true, output);
        Ok(Some(id))
    }

    /// Sends `Start` to the other participants and runs the instance. Callers check
    /// that the run is not under way already: one instance per run, never replaced.
    fn launch(&mut self, job: Job, participants: Participants, leader: bool, output: Output<S>) {
        let instance = self.instance_of(&job);
        assert!(
            !self.running.contains_key(&instance),
            "a run is launched at most once"
        );
        if leader {
            let start = NodeMessage::Start(Start {
                epoch: self.epoch,
                participants: participants.iter().map(|p| p.0).collect(),
                job: job.clone(),
            })
            .encode(self.domain);
            for peer in participants.iter().filter(|p| *p != self.me) {
                self.outbox.push_back((peer, start.clone()));
            }
        }
        let started = self.clock.now();
        // A record this node owns is stored by its run's last step, on a worker,
        // before that step is back here: until then (`finish` confirms it) its
        // entry lacks this node, so storage holding it does not make it usable.
        if let Job::Triple { id } | Job::Presign { id, .. } = &job {
            if owner(*id) == self.me {
                self.acks
                    .entry(*id)
                    .or_insert_with(|| (started, BTreeSet::new()));
            }
        }
        self.running.insert(
            instance,
            Running {
                job,
                participants,
                started,
                leader,
                output: Some(output),
                away: None,
                inbox: Vec::new(),
                fresh: true,
                received: BTreeMap::new(),
                sent: BTreeMap::new(),
                progress: (0, started),
            },
        );
        if let Some((_, early)) = self.early.remove(&instance) {
            for (from, message) in &early {
                if let Some(held) = self.early_bytes.get_mut(from) {
                    *held = held.saturating_sub(message.len());
                }
            }
            for (from, message) in early {
                self.deliver(instance, from, message);
            }
        }
        self.advance(instance);
    }

    fn join_presign(
        &self,
        job: &Job,
        participants: &Participants,
    ) -> Result<Output<S>, EngineError> {
        let Job::Presign { id, triples } = job else {
            return Err(EngineError::Refused("not a presignature run".into()));
        };
        let key = self.key.as_ref().ok_or(EngineError::NoKey)?;
        if triples.len() != S::TRIPLES_PER_PRESIGNATURE {
            return Err(EngineError::Refused(format!(
                "a presignature takes {} triples, the run names {}",
                S::TRIPLES_PER_PRESIGNATURE,
                triples.len()
            )));
        }
        if self.store.record_ids(S::PRESIGNATURES)?.contains(id) {
            return Err(EngineError::Refused(format!(
                "presignature {id} exists already"
            )));
        }
        // Taken (and retired) before the protocol sees them.
        let mut taken = Vec::with_capacity(triples.len());
        for triple in triples {
            match self.store.take_record::<S::Triple>(S::TRIPLES, *triple)? {
                Some((epoch, record)) if epoch == self.epoch => taken.push(record),
                Some((epoch, _)) => {
                    return Err(EngineError::Refused(format!(
                        "triple {triple} belongs to epoch {epoch}"
                    )))
                }
                None => {
                    return Err(EngineError::Refused(format!(
                        "triple {triple} is not available here"
                    )))
                }
            }
        }
        Ok(Output::Presign(S::presign(
            self.instance_of(job),
            self.me,
            participants.clone(),
            key,
            taken,
        )?))
    }

    fn join_sign(
        &self,
        job: &Job,
        signers: &Participants,
        request_id: RequestId,
        presignature: u64,
    ) -> Result<Output<S>, EngineError> {
        let key = self.key.as_ref().ok_or(EngineError::NoKey)?;
        let task = self.requests.get(&request_id).ok_or_else(|| {
            EngineError::Refused(format!(
                "request {request_id} is not pending on the chain as seen here"
            ))
        })?;
        // Taken (and retired) before any signature share leaves this node.
        let (epoch, presig) = self
            .store
            .take_record::<S::Presignature>(S::PRESIGNATURES, presignature)?
            .ok_or_else(|| {
                EngineError::Refused(format!("presignature {presignature} is not available here"))
            })?;
        if epoch != self.epoch {
            return Err(EngineError::Refused(format!(
                "presignature {presignature} belongs to epoch {epoch}"
            )));
        }
        Ok(Output::Sign(S::sign(
            self.instance_of(job),
            self.me,
            signers.clone(),
            key,
            presig,
            task,
        )?))
    }

    fn handle_start(&mut self, from: ParticipantId, start: Start) -> Result<(), EngineError> {
        if start.epoch != self.epoch {
            return Err(EngineError::Refused(format!(
                "the run belongs to epoch {}, this node is in epoch {}",
                start.epoch, self.epoch
            )));
        }
        let participants =
            Participants::new(start.participants.iter().copied().map(ParticipantId))?;
        if !participants.contains(self.me) || !participants.contains(from) {
            return Err(EngineError::Refused(
                "the run's participants must include us and the proposer".into(),
            ));
        }
        if !participants.is_subset_of(&self.participants) {
            return Err(EngineError::Refused(
                "the run includes non-participants".into(),
            ));
        }
        if start.job.attempt().is_some() {
            return self.join_key_start(start, participants);
        }
        let instance = self.instance_of(&start.job);
        if self.running.contains_key(&instance) {
            return Err(EngineError::Refused("this run is already under way".into()));
        }
        let owned = |id: u64| {
            if owner(id) == from {
                Ok(())
            } else {
                Err(EngineError::Refused(format!(
                    "{id} is not owned by its proposer {}",
                    from.0
                )))
            }
        };
        let output = match &start.job {
            Job::Keygen { .. } | Job::Reshare { .. } => unreachable!("handled above"),
            Job::Triple { id } => {
                owned(*id)?;
                Output::Triple(S::generate_triple(
                    instance,
                    self.me,
                    participants.clone(),
                    self.threshold,
                )?)
            }
            Job::Presign { id, triples } => {
                owned(*id)?;
                triples.iter().try_for_each(|t| owned(*t))?;
                self.join_presign(&start.job, &participants)?
            }
            Job::Sign {
                request_id,
                presignature,
            } => {
                owned(*presignature)?;
                let request_id = RequestId(*request_id);
                if !self.requests.contains_key(&request_id) {
                    // The leader saw the request first; join once our view of the
                    // chain shows it too (or drop the invitation at the timeout).
                    if self.deferred.len() >= MAX_DEFERRED {
                        return Err(EngineError::Refused(
                            "too many invitations for requests not seen here yet".into(),
                        ));
                    }
                    self.deferred
                        .insert((request_id, from), (self.clock.now(), start.clone()));
                    self.awaiting_chain = true;
                    return Ok(());
                }
                self.join_sign(&start.job, &participants, request_id, *presignature)?
            }
        };
        self.launch(start.job, participants, false, output);
        Ok(())
    }

    /// Joins the key task's run on an invitation. A newcomer to a resharing that
    /// needs facts about the old key takes them from the invitation: the
    /// protocol's confirmation round fails unless every party used the same.
    fn join_key_start(
        &mut self,
        start: Start,
        participants: Participants,
    ) -> Result<(), EngineError> {
        let task = self
            .key_task
            .clone()
            .ok_or_else(|| EngineError::Refused("no key task is under way".into()))?;
        if self.key_done {
            // Our share of this epoch is stored and never replaced: another run's
            // output could not be used together with it.
            return Err(EngineError::Refused(
                "this node finished the key task already".into(),
            ));
        }
        let expected = match (self.key_job(), &start.job) {
            (Some(job), _) => job,
            (None, Job::Reshare { facts, .. }) => task.job(facts.clone()),
            (None, _) => return Err(EngineError::Refused("not a resharing run".into())),
        };
        if expected != start.job || participants != self.participants {
            return Err(EngineError::Refused(format!(
                "the key task (attempt {}) differs from the contract's as seen here \
                 (attempt {})",
                start.job.attempt().unwrap_or_default(),
                task.attempt()
            )));
        }
        if self.running.contains_key(&self.instance_of(&start.job)) {
            // Several participants may propose the key task; it is one run.
            return Ok(());
        }
        if let Job::Reshare { facts, .. } = &start.job {
            self.reshare_facts.get_or_insert_with(|| facts.clone());
        }
        let output = self.join_key_task(&start.job)?;
        self.launch(start.job, participants, false, output);
        Ok(())
    }

    fn buffer_early(&mut self, instance: InstanceId, from: ParticipantId, message: Vec<u8>) {
        let held = self.early_bytes.get(&from).copied().unwrap_or(0);
        if held + message.len() > MAX_EARLY_BYTES_PER_PEER {
            for (_, queue) in self.early.values_mut() {
                queue.retain(|(peer, _)| *peer != from);
            }
            self.early.retain(|_, (_, queue)| !queue.is_empty());
            self.early_bytes.remove(&from);
            self.blame(
                from,
                FailureKind::OverBudget,
                format!("{held} bytes of early messages buffered"),
            );
            return;
        }
        if !self.early.contains_key(&instance) && self.early.len() >= MAX_EARLY_INSTANCES {
            return;
        }
        let (_, queue) = self
            .early
            .entry(instance)
            .or_insert_with(|| (self.clock.now(), Vec::new()));
        if queue.len() < MAX_EARLY_PER_INSTANCE {
            *self.early_bytes.entry(from).or_default() += message.len();
            queue.push((from, message));
        }
    }

    /// Recomputes [`Engine::early_bytes`] after early messages were dropped in bulk.
    fn recount_early(&mut self) {
        self.early_bytes.clear();
        for (peer, message) in self.early.values().flat_map(|(_, queue)| queue.iter()) {
            *self.early_bytes.entry(*peer).or_default() += message.len();
        }
    }

    /// Queues a message for the instance's next step (see [`Engine::advance`]).
    fn deliver(&mut self, instance: InstanceId, from: ParticipantId, message: Vec<u8>) {
        let Some(running) = self.running.get_mut(&instance) else {
            return;
        };
        // A cap per sender, not per run: a participant that pads a run with junk
        // while its step is away loses its own excess, never another's messages
        // (which would leave that one looking behind, and blamed, at the timeout).
        let per_sender = MAX_INBOX_PER_INSTANCE / running.participants.len().max(1);
        let queued = running.inbox.iter().filter(|(p, _)| *p == from).count();
        if queued < per_sender {
            running.inbox.push((from, message));
        }
    }

    /// How the instance took a message a step fed it.
    fn receipt(
        &mut self,
        instance: InstanceId,
        from: ParticipantId,
        taken: Result<(), threshold::Error>,
    ) {
        match taken {
            Ok(()) => {
                if let Some(running) = self.running.get_mut(&instance) {
                    *running.received.entry(from).or_default() += 1;
                }
            }
            // Late messages of a run that just ended are normal.
            Err(threshold::Error::WrongRound) => {}
            Err(e) => {
                tracing::debug!(peer = from.0, error = %e, "refused a protocol message");
                // Our header with another protocol kind, or a run it is not in:
                // nothing an honest peer sends.
                if matches!(
                    e,
                    threshold::Error::WrongInstance | threshold::Error::WrongParticipant(_)
                ) {
                    self.blame(from, FailureKind::Malformed, e.to_string());
                }
            }
        }
    }

    fn blame(&mut self, peer: ParticipantId, kind: FailureKind, detail: String) {
        if peer != self.me {
            self.reports
                .push(PeerReport::Failure { peer, kind, detail });
        }
    }

    /// The one participant a stalled run was waiting on, if exactly one is behind.
    ///
    /// The runs blamed this way (triples, presignatures, signatures, keygen) are
    /// rounds in which every participant sends to every other: a peer is behind if
    /// it sent us fewer messages than we sent it. Its count is never compared with
    /// another peer's: a byzantine peer can pad its own count with well-formed
    /// junk (wrong rounds, replays, messages of other runs) to make an honest peer
    /// look behind, but it cannot make us send that peer more than it answered.
    /// Blame goes to a single straggler only: an honest peer stuck waiting on a
    /// silent one is behind too in some schedules (the silent one withheld from it
    /// alone), and then we cannot tell them apart, so nobody is blamed.
    fn straggler(&self, running: &Running<S>) -> Option<ParticipantId> {
        // Messages still queued for a step count as received: they came.
        let got = |p: &ParticipantId| {
            let queued = running.inbox.iter().filter(|(from, _)| from == p).count();
            running.received.get(p).copied().unwrap_or(0) + queued as u32
        };
        let sent = |p: &ParticipantId| running.sent.get(p).copied().unwrap_or(0);
        let behind: Vec<ParticipantId> = running
            .participants
            .iter()
            .filter(|p| *p != self.me)
            .filter(|p| got(p) < sent(p))
            .collect();
        match behind[..] {
            [one] => Some(one),
            _ => None,
        }
    }

    /// Hands the instance's next step to the step runner, unless one is away
    /// already or there is nothing to do (no new messages, and it has spoken).
    fn advance(&mut self, instance: InstanceId) {
        let Some(running) = self.running.get_mut(&instance) else {
            return;
        };
        if running.away.is_some() || (!running.fresh && running.inbox.is_empty()) {
            return;
        }
        let Some(output) = running.output.take() else {
            return;
        };
        running.fresh = false;
        let inbox = std::mem::take(&mut running.inbox);
        self.tickets += 1;
        running.away = Some(self.tickets);
        let record = match &running.job {
            Job::Triple { id } | Job::Presign { id, .. } => Some(RecordTarget {
                store: self.store.clone(),
                id: *id,
                epoch: self.epoch,
            }),
            _ => None,
        };
        let tag = StepTag {
            engine: self.serial,
            domain: self.domain,
            instance,
            ticket: self.tickets,
            kind: output.kind(),
            run_started: running.started,
        };
        self.steps.submit(StepWork::new(tag, move || {
            run_step::<S>(output, inbox, record)
        }));
    }

    /// Applies a step that came back for a run still waiting for it: what it
    /// sent, then the run's end or its next step.
    fn apply_step(&mut self, instance: InstanceId, result: StepResult<S>) {
        for (from, taken) in result.receipts {
            self.receipt(instance, from, taken);
        }
        let Some(running) = self.running.get_mut(&instance) else {
            return;
        };
        running.away = None;
        for out in result.sent {
            let bytes = NodeMessage::Protocol(out.message).encode(self.domain);
            match out.to {
                Recipient::AllOthers => {
                    let others = running.participants.iter().filter(|p| *p != self.me);
                    for peer in others {
                        *running.sent.entry(peer).or_default() += 1;
                        self.outbox.push_back((peer, bytes.clone()));
                    }
                }
                Recipient::One(peer) => {
                    *running.sent.entry(peer).or_default() += 1;
                    self.outbox.push_back((peer, bytes));
                }
            }
        }
        match result.end {
            StepEnd::Wait(output) => {
                running.output = Some(output);
                // Messages that came while the step was away.
                self.advance(instance);
            }
            StepEnd::Done(done) => {
                let running = self.running.remove(&instance).expect("present above");
                for peer in running.participants.iter().filter(|p| *p != self.me) {
                    self.reports.push(PeerReport::Success { peer });
                }
                self.finish(running, done);
            }
            StepEnd::Failed(e) => {
                let running = self.running.remove(&instance).expect("present above");
                // Only a check that names its culprit is blame; other aborts
                // (cait-sith's checks say what failed, not whose data it was)
                // could be any participant's doing.
                if let threshold::Error::Misbehaved { culprit, .. } = &e {
                    if running.participants.contains(*culprit) {
                        self.blame(*culprit, FailureKind::Misbehaved, e.to_string());
                    }
                }
                self.failed(running.job, e.to_string());
            }
        }
    }

    /// Tells the holders of record `id` of `kind` outside `users` (the run about to
    /// consume it) to drop their shares, which nobody will ever use.
    fn retire_elsewhere(
        &mut self,
        kind: RecordKind,
        id: u64,
        users: &Participants,
        retire: NodeMessage,
    ) -> Result<(), EngineError> {
        let Some(record) = self.store.records(kind)?.into_iter().find(|s| s.id == id) else {
            return Ok(());
        };
        for holder in record.holders.participants {
            if !users.contains(ParticipantId(holder)) && holder != self.me.0 {
                self.send(ParticipantId(holder), &retire);
            }
        }
        Ok(())
    }

    /// Declines `job` to its proposer (key tasks excepted: those are proposed by
    /// everyone, and a refusal there is settled by attempts).
    fn decline(&mut self, proposer: ParticipantId, job: Job, reason: String) {
        if job.attempt().is_none() {
            self.send(proposer, &NodeMessage::Decline { job, reason });
        }
    }

    /// Reports a run that ended without output (for a key task the daemon tells
    /// the contract, which starts the next attempt).
    fn failed(&mut self, job: Job, reason: String) {
        self.events.push_back(Event::Failed { job, reason });
    }

    /// After storing a share of `id`: the owner records itself as a holder, anyone
    /// else tells the owner.
    fn confirm_stored(&mut self, id: u64, ack: NodeMessage) {
        if owner(id) == self.me {
            self.acks
                .entry(id)
                .or_insert_with(|| (self.clock.now(), BTreeSet::new()))
                .1
                .insert(self.me.0);
        } else {
            self.send(owner(id), &ack);
        }
    }

    fn finish(&mut self, running: Running<S>, done: Done<S>) {
        let job = running.job;
        let event = match (&job, done) {
            (Job::Keygen { .. } | Job::Reshare { .. }, Done::Key(_))
                if self.key_done || self.key_job().as_ref() != Some(&job) =>
            {
                Event::Failed {
                    job,
                    reason: "output of a key task run that is no longer current: discarded".into(),
                }
            }
            (
                Job::Keygen { epoch, attempt, .. } | Job::Reshare { epoch, attempt, .. },
                Done::Key(share),
            ) => match self
                .store
                .put_key_share(self.domain, *epoch, *attempt, share.as_ref())
            {
                Ok(()) => {
                    let event = Event::KeyShareStored {
                        domain: self.domain,
                        epoch: *epoch,
                        attempt: *attempt,
                        public_key: S::public_key_text(&share),
                    };
                    self.key = Some(*share);
                    self.key_done = true;
                    event
                }
                Err(e) => Event::Failed {
                    job,
                    reason: e.to_string(),
                },
            },
            // Stored by the run's last step, on its worker.
            (Job::Triple { id }, Done::Stored(Ok(()))) => {
                let id = *id;
                self.confirm_stored(id, NodeMessage::StoredTriple(id));
                Event::TripleStored(id)
            }
            (Job::Presign { id, .. }, Done::Stored(Ok(()))) => {
                let id = *id;
                self.confirm_stored(id, NodeMessage::StoredPresignature(id));
                Event::PresignatureStored(id)
            }
            (_, Done::Stored(Err(e))) => Event::Failed {
                job,
                reason: e.to_string(),
            },
            (Job::Sign { request_id, .. }, Done::Sign(signature)) => Event::Signed {
                request_id: RequestId(*request_id),
                response: S::response(signature),
                leader: running.leader,
            },
            _ => Event::Failed {
                job,
                reason: "output of the wrong kind".into(),
            },
        };
        self.events.push_back(event);
    }

    /// Triple and presignature runs this node leads that are under way.
    fn running_led_generations(&self) -> StockCount {
        let led = |kind: fn(&Job) -> bool| {
            self.running
                .values()
                .filter(|r| r.leader && kind(&r.job))
                .count()
        };
        StockCount {
            triples: led(|job| matches!(job, Job::Triple { .. })),
            presignatures: led(|job| matches!(job, Job::Presign { .. })),
        }
    }
}

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
        Ok(
            match self
                .store
                .key_share_at::<S::KeyShare>(self.domain, self.epoch)?
            {
                Some((stored, share)) if stored == attempt => {
                    self.key = Some(share);
                    KeyLoad::Loaded
                }
                Some((stored, _)) => KeyLoad::OtherAttempt(stored),
                None => KeyLoad::Missing,
            },
        )
    }

    fn retire_other_epochs(&self) -> Result<usize, StoreError> {
        Ok(self.store.retire_other_epochs(S::TRIPLES, self.epoch)?
            + self
                .store
                .retire_other_epochs(S::PRESIGNATURES, self.epoch)?)
    }

    fn set_stock_subset(&mut self, subset: StockSubset) {
        self.stock_subset = subset;
    }

    fn set_key_task(&mut self, task: Option<KeyTask>) {
        if self.key_task != task {
            // Runs of the old task are void: their output must never be stored.
            self.running.retain(|_, r| r.job.attempt().is_none());
            self.key_task = task;
            self.key_done = false;
        }
    }

    fn load_reshare_input(&mut self, epoch: u64, attempt: u64) -> Result<bool, StoreError> {
        let share = self
            .store
            .key_share_at::<S::KeyShare>(self.domain, epoch)?
            .filter(|(stored, _)| *stored == attempt)
            .map(|(_, share)| share);
        let held = share.is_some();
        self.set_reshare_input(share);
        Ok(held)
    }

    fn resume_finished_key_task(&mut self) -> Result<bool, StoreError> {
        let Some(task) = &self.key_task else {
            return Ok(false);
        };
        let (epoch, attempt) = (task.epoch(), task.attempt());
        let Some((stored, share)) = self.store.key_share_at::<S::KeyShare>(self.domain, epoch)?
        else {
            return Ok(false);
        };
        if stored != attempt {
            return Ok(false);
        }
        self.events.push_back(Event::KeyShareStored {
            domain: self.domain,
            epoch,
            attempt,
            public_key: S::public_key_text(&share),
        });
        self.key = Some(share);
        self.key_done = true;
        Ok(true)
    }

    fn propose_key_task(&mut self) -> Result<bool, EngineError> {
        if self.key_task.is_none() {
            return Ok(false);
        }
        if self.key_done {
            return Ok(true);
        }
        // A newcomer that needs facts about the old key waits for an old holder.
        let Some(job) = self.key_job() else {
            return Ok(true);
        };
        if self.running.contains_key(&self.instance_of(&job)) {
            return Ok(true);
        }
        let output = self.join_key_task(&job)?;
        self.launch(job, self.participants.clone(), true, output);
        Ok(true)
    }

    fn add_request(&mut self, request: &PendingRequest) -> Result<(), String> {
        let task = S::sign_task(request)?;
        let request_id = request.request_id;
        self.requests.insert(request_id, task);
        let waiting: Vec<(RequestId, ParticipantId)> = self
            .deferred
            .keys()
            .filter(|(id, _)| *id == request_id)
            .copied()
            .collect();
        for key in waiting {
            let (_, start) = self.deferred.remove(&key).expect("listed above");
            let job = start.job.clone();
            if let Err(e) = self.handle_start(key.1, start) {
                tracing::debug!(error = %e, "a deferred invitation to sign was refused");
                if let EngineError::Refused(reason) = e {
                    self.decline(key.1, job, reason);
                }
            }
        }
        Ok(())
    }

    fn remove_request(&mut self, request_id: &RequestId) {
        self.requests.remove(request_id);
    }

    fn propose_sign(
        &mut self,
        request_id: RequestId,
        live: &Participants,
    ) -> Result<Option<u64>, EngineError> {
        let Some((presignature, holders)) = self
            .own_confirmed(self.store.records(S::PRESIGNATURES)?, live)
            .into_iter()
            .next()
        else {
            return Ok(None);
        };
        let others = holders.into_iter().filter(|p| *p != self.me.0);
        let signers = Participants::new(
            std::iter::once(self.me.0)
                .chain(others.take(self.threshold - 1))
                .map(ParticipantId),
        )?;
        let job = Job::Sign {
            request_id: request_id.0,
            presignature,
        };
        self.retire_elsewhere(
            S::PRESIGNATURES,
            presignature,
            &signers,
            NodeMessage::RetirePresignature(presignature),
        )?;
        self.acks.remove(&presignature);
        let output = self.join_sign(&job, &signers, request_id, presignature)?;
        self.launch(job, signers, true, output);
        Ok(Some(presignature))
    }

    /// With [`StockSubset::Threshold`] a triple counts only within a group of
    /// [`Scheme::TRIPLES_PER_PRESIGNATURE`] with the same live holders: a triple
    /// whose partner's run failed waits, uncounted, for another such triple.
    fn own_stock(&self, live: &Participants) -> Result<StockCount, EngineError> {
        let triples = self.own_ready(self.store.records(S::TRIPLES)?, live, true);
        let per = S::TRIPLES_PER_PRESIGNATURE;
        let triples = match self.stock_subset {
            StockSubset::All => triples.len(),
            StockSubset::Threshold if per == 0 => 0,
            StockSubset::Threshold => {
                let mut by_holders: HashMap<Vec<u32>, usize> = HashMap::new();
                for (_, mut holders) in triples {
                    holders.sort_unstable();
                    *by_holders.entry(holders).or_default() += 1;
                }
                by_holders.values().map(|n| n - n % per).sum()
            }
        };
        Ok(StockCount {
            triples,
            presignatures: self
                .own_ready(self.store.records(S::PRESIGNATURES)?, live, true)
                .len(),
        })
    }

    fn top_up_stock(&mut self, live: &Participants, stock: StockCount, targets: &StockTargets) {
        let per = S::TRIPLES_PER_PRESIGNATURE;
        let mut running = self.running_led_generations();
        let mut available_triples = stock.triples;
        while running.triples + running.presignatures < targets.max_concurrent {
            let missing = targets
                .presignatures
                .saturating_sub(stock.presignatures + running.presignatures);
            if missing > 0 && available_triples >= per {
                match self.propose_presignature(live) {
                    Ok(Some(_)) => {
                        running.presignatures += 1;
                        available_triples -= per;
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => tracing::debug!(error = %e, "cannot start a presignature"),
                }
            }
            if per == 0 {
                break; // presignatures come from the key alone: nothing else to make
            }
            // The triples of every missing presignature, plus the triple stock itself.
            let wanted = targets.triples.max(per * missing);
            if available_triples + running.triples >= wanted {
                break;
            }
            // One presignature's triples (made among one subset) count as that many
            // runs: the cap may be passed by all but one.
            match self.propose_triples(live) {
                Ok(ids) => running.triples += ids.len(),
                Err(e) => {
                    tracing::debug!(error = %e, "cannot start a triple");
                    break;
                }
            }
        }
    }

    fn handle_message(
        &mut self,
        from: ParticipantId,
        message: NodeMessage,
    ) -> Result<(), EngineError> {
        match message {
            NodeMessage::Start(start) => {
                let job = start.job.clone();
                let result = self.handle_start(from, start);
                if let Err(EngineError::Refused(reason)) = &result {
                    self.decline(from, job, reason.clone());
                }
                result
            }
            NodeMessage::Ping => Ok(()),
            NodeMessage::Decline { job, reason } => {
                let instance = self.instance_of(&job);
                let ours = self
                    .running
                    .get(&instance)
                    .is_some_and(|r| r.leader && r.participants.contains(from));
                if ours {
                    self.running.remove(&instance);
                    let reason = peer_text(&reason);
                    self.blame(from, FailureKind::Decline, reason.clone());
                    self.failed(job, format!("participant {} declined: {reason}", from.0));
                }
                Ok(())
            }
            NodeMessage::RetireTriple(id) if owner(id) == from => {
                self.store.retire_record(S::TRIPLES, id)?;
                Ok(())
            }
            NodeMessage::RetirePresignature(id) if owner(id) == from => {
                self.store.retire_record(S::PRESIGNATURES, id)?;
                Ok(())
            }
            NodeMessage::RetireTriple(id) | NodeMessage::RetirePresignature(id) => {
                Err(EngineError::Refused(format!("only the owner retires {id}")))
            }
            NodeMessage::StoredTriple(id) | NodeMessage::StoredPresignature(id) => {
                if owner(id) == self.me {
                    self.acks
                        .entry(id)
                        .or_insert_with(|| (self.clock.now(), BTreeSet::new()))
                        .1
                        .insert(from.0);
                }
                Ok(())
            }
            NodeMessage::Protocol(message) => {
                let header = match threshold::wire::Header::decode(&message) {
                    Ok((header, _)) => header,
                    Err(e) => {
                        self.blame(from, FailureKind::Malformed, e.to_string());
                        return Err(e.into());
                    }
                };
                self.heard.insert(from, self.clock.now());
                if self.running.contains_key(&header.instance) {
                    self.deliver(header.instance, from, message);
                    self.advance(header.instance);
                } else {
                    self.buffer_early(header.instance, from, message);
                }
                Ok(())
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        let timeout = self.timeout;
        let stall_limit = timeout / STALL_FRACTION;
        let mut ended: Vec<(InstanceId, bool)> = Vec::new();
        for (id, running) in self.running.iter_mut() {
            // Messages waiting for the next step came too; and a run whose step
            // is away on a worker is this node's to finish, not a peer's stall.
            let total = running.received.values().sum::<u32>() + running.inbox.len() as u32;
            if total != running.progress.0 || running.away.is_some() {
                running.progress = (total, now);
            }
            let stalled = now.duration_since(running.progress.1) >= stall_limit;
            if now.duration_since(running.started) > timeout {
                ended.push((*id, false));
            } else if stalled {
                ended.push((*id, true));
            }
        }
        for (id, early) in ended {
            // Only runs where every participant sends to every other in each round
            // are judged: stock, signing and keygen. Resharing is not symmetric
            // (newcomers deal nothing), and the contract's attempts settle it.
            let judged = !matches!(self.running[&id].job, Job::Reshare { .. });
            let running = &self.running[&id];
            // A participant that joined on an invitation blames only the proposer:
            // a byzantine proposer may have invited it alone (say, replaying an old
            // invitation with its old messages), leaving a third participant that
            // never heard of the run to look behind. The proposer itself invited
            // everyone, and every participant proposes a key run itself.
            let straggler = self.straggler(running).filter(|peer| {
                judged && (running.leader || proposer(&running.job).is_none_or(|p| p == *peer))
            });
            if early {
                // Ended early only with one peer to blame: for a stock or signing
                // run, a peer that sent this engine no protocol message at all for
                // as long (a live peer that stopped talking; an honest one behind
                // a long queue still answers in other runs); for keygen, whose
                // traffic never queues, the run's own stall is enough. Anything
                // else waits for the timeout: a key run's attempt is the
                // contract's to end, and a slow honest run may still finish.
                let key_run = self.running[&id].job.attempt().is_some();
                let quiet = |peer: ParticipantId| {
                    self.heard
                        .get(&peer)
                        .is_none_or(|at| now.duration_since(*at) >= stall_limit)
                };
                if !straggler.is_some_and(|peer| key_run || quiet(peer)) {
                    continue;
                }
            }
            let running = self.running.remove(&id).expect("listed above");
            let waited = if early { "stalled" } else { "timed out" };
            match straggler {
                Some(peer) => {
                    self.blame(
                        peer,
                        FailureKind::Timeout,
                        format!("a run {waited} waiting on it"),
                    );
                    self.failed(
                        running.job,
                        format!("{waited} waiting on participant {}", peer.0),
                    );
                }
                None => self.failed(running.job, waited.into()),
            }
        }
        let early_before = self.early.len();
        self.early
            .retain(|_, (since, _)| now.duration_since(*since) <= timeout);
        if self.early.len() != early_before {
            self.recount_early();
        }
        self.deferred
            .retain(|_, (since, _)| now.duration_since(*since) <= timeout);
        // Confirmations of records long since used or retired.
        self.acks
            .retain(|_, (since, _)| now.duration_since(*since) <= timeout * 4);
    }

    /// Waiting for gone peers would only end at the timeout; the runs' inputs stay
    /// consumed. Key-task runs are settled by the contract's attempts instead.
    fn abandon_runs_with(&mut self, gone: &[ParticipantId]) {
        let doomed: Vec<InstanceId> = self
            .running
            .iter()
            .filter(|(_, r)| r.job.attempt().is_none())
            .filter(|(_, r)| gone.iter().any(|p| r.participants.contains(*p)))
            .map(|(id, _)| *id)
            .collect();
        for id in doomed {
            let running = self.running.remove(&id).expect("listed above");
            self.failed(
                running.job,
                "a participant of the run became unreachable".into(),
            );
        }
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
        // Half the stall limit: long next to a keygen round (milliseconds), so a
        // peer this quiet while the others were done was holding the run up.
        let quiet_limit = self.timeout / STALL_FRACTION / 2;
        let stalled: Vec<(ParticipantId, Job)> = self
            .running
            .values()
            .filter(|r| matches!(r.job, Job::Keygen { .. }))
            .filter(|r| r.away.is_none() && r.inbox.is_empty())
            .filter(|r| now.saturating_duration_since(r.progress.1) >= quiet_limit)
            .filter_map(|r| Some((self.straggler(r)?, r.job.clone())))
            .filter(|(peer, _)| {
                self.heard
                    .get(peer)
                    .is_none_or(|at| now.saturating_duration_since(*at) >= quiet_limit)
            })
            .collect();
        for (peer, job) in stalled {
            tracing::debug!(
                peer = peer.0,
                ?job,
                "an ended attempt's run waited on one peer"
            );
            self.blame(
                peer,
                FailureKind::Timeout,
                "a key run stalled on it until its attempt ended".into(),
            );
        }
    }

    fn take_awaiting_chain(&mut self) -> bool {
        std::mem::take(&mut self.awaiting_chain)
    }

    fn running(&self) -> usize {
        self.running.len()
    }

    fn take_early(&mut self) -> BTreeMap<InstanceId, EarlyMessages> {
        self.early_bytes.clear();
        std::mem::take(&mut self.early)
    }

    fn adopt_early(&mut self, early: BTreeMap<InstanceId, EarlyMessages>) {
        for (instance, (since, messages)) in early {
            if self.early.len() < MAX_EARLY_INSTANCES {
                self.early.insert(instance, (since, messages));
            }
        }
        self.recount_early();
    }

    fn serial(&self) -> u64 {
        self.serial
    }

    fn step_done(&mut self, done: StepDone) -> bool {
        let tag = done.tag;
        let waiting = tag.engine == self.serial
            && self
                .running
                .get(&tag.instance)
                .is_some_and(|r| r.away == Some(tag.ticket));
        if !waiting {
            // The run ended while its step was away (abandoned, expired, declined,
            // voided by a new key task): its output is void.
            done.discard();
            return false;
        }
        let output = match done.output {
            Ok(output) => output,
            Err(why) => {
                let running = self.running.remove(&tag.instance).expect("checked above");
                self.failed(running.job, why);
                return true;
            }
        };
        match output.result.downcast::<StepResult<S>>() {
            Ok(result) => self.apply_step(tag.instance, *result),
            Err(_) => {
                // Only this engine makes steps with its serial: a bug, not input.
                let running = self.running.remove(&tag.instance).expect("checked above");
                self.failed(
                    running.job,
                    "a step came back with another scheme's result".into(),
                );
            }
        }
        true
    }

    fn steps_away(&self) -> usize {
        self.running.values().filter(|r| r.away.is_some()).count()
    }
}
