//! The protocol engine: which threshold protocol instances run, with whom, on what
//! inputs, and what becomes of their outputs. No I/O of its own: it takes messages
//! in ([`Engine::handle`]), and leaves messages to send ([`Engine::drain_outbox`])
//! and events ([`Engine::drain_events`]) for the node's driver.
//!
//! Coordination: the participant that wants a protocol run (the *proposer*) sends a
//! [`Start`] to the others, who check it and join. Ids of triples and presignatures
//! carry their proposer in the top 16 bits, and only the proposer may consume them
//! (two triples for its presignature, a presignature for a signature it leads), so
//! two proposers never race for the same record. Every party takes its own share
//! out of storage (gone for good, see [`crate::storage`]) before the protocol runs.
//!
//! A `Start` for signing names a request id only: each party signs the payload,
//! tweak and entropy of that request *as it sees it on the chain*, never values a
//! proposer supplies.

use crate::storage::{Stocked, Store, StoreError};
use borsh::{BorshDeserialize, BorshSerialize};
use k256::AffinePoint;
use primitives::SerializableAffinePoint;
use primitives::{DomainId, EcdsaSignature, RequestId};
use rand::RngCore;
use sha3::{Digest, Sha3_256};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use threshold::{
    generate_triple, keygen, presign, reshare, sign, Instance, InstanceId, KeyShare, ParticipantId,
    Participants, Presignature, Recipient, ReshareArgs, SignTask, Step, Triple,
};

/// Version byte of the node's peer message format.
const MESSAGE_VERSION: u8 = 2;
/// Messages buffered per instance that has not started here yet.
const MAX_EARLY_PER_INSTANCE: usize = 256;
/// Instances with buffered early messages.
const MAX_EARLY_INSTANCES: usize = 1024;
/// Invitations to sign kept until the request shows up on our side.
const MAX_DEFERRED: usize = 1024;

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

/// A message between nodes: version byte, then borsh.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum NodeMessage {
    /// Join a protocol run.
    Start(Start),
    /// A message of a running protocol (threshold wire format).
    Protocol(Vec<u8>),
    /// A heartbeat: says the sender is up. Peers count who is live from these.
    Ping,
    /// To a proposer: this node will not join `job` (and why), so the proposer
    /// ends the run now instead of at the timeout.
    Decline { job: Job, reason: String },
    /// To the owner: this node has stored its share of triple `id`.
    StoredTriple(u64),
    /// To the owner: this node has stored its share of presignature `id`.
    StoredPresignature(u64),
    /// From the owner: triple `id` was used without this holder; drop its share.
    RetireTriple(u64),
    /// From the owner: presignature `id` was used without this holder; drop it.
    RetirePresignature(u64),
}

impl NodeMessage {
    /// Whether the message should jump the queue: heartbeats and everything of
    /// signing and key tasks, which someone is waiting for, go before the bulk
    /// traffic of triple and presignature generation.
    pub fn is_urgent(&self) -> bool {
        use threshold::wire::ProtocolKind;
        match self {
            NodeMessage::Start(start) => {
                !matches!(start.job, Job::Triple { .. } | Job::Presign { .. })
            }
            NodeMessage::Protocol(message) => threshold::wire::Header::decode(message)
                // Refused at once, whatever it was.
                .map_or(true, |(header, _)| {
                    !matches!(header.kind, ProtocolKind::Triple | ProtocolKind::Presign)
                }),
            NodeMessage::Ping
            | NodeMessage::Decline { .. }
            | NodeMessage::StoredTriple(_)
            | NodeMessage::StoredPresignature(_)
            | NodeMessage::RetireTriple(_)
            | NodeMessage::RetirePresignature(_) => true,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![MESSAGE_VERSION];
        BorshSerialize::serialize(self, &mut out).expect("writing to a Vec cannot fail");
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, EngineError> {
        match bytes.first() {
            Some(&MESSAGE_VERSION) => NodeMessage::try_from_slice(&bytes[1..])
                .map_err(|e| EngineError::Malformed(e.to_string())),
            Some(&other) => Err(EngineError::Malformed(format!(
                "unknown message version {other}"
            ))),
            None => Err(EngineError::Malformed("empty message".into())),
        }
    }
}

/// A proposer's invitation to a protocol run.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Start {
    /// The epoch the run belongs to; nodes in another epoch refuse it.
    pub epoch: u64,
    pub participants: Vec<u32>,
    pub job: Job,
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum Job {
    /// Generate `domain`'s key in `epoch` (the contract is Initializing), in the
    /// contract's key-event attempt `attempt`: each attempt is a fresh instance.
    Keygen {
        epoch: u64,
        domain: u64,
        attempt: u64,
    },
    /// Reshare `domain`'s key into `epoch` (the contract is Resharing) in the
    /// contract's attempt `attempt`; the new participants are the run's.
    Reshare {
        epoch: u64,
        domain: u64,
        old_participants: Vec<u32>,
        old_threshold: u32,
        public_key: [u8; 33],
        attempt: u64,
    },
    Triple {
        id: u64,
    },
    Presign {
        id: u64,
        triples: (u64, u64),
    },
    Sign {
        request_id: [u8; 32],
        presignature: u64,
    },
}

/// The most characters of a peer's text (a `Decline` reason) that reach our logs.
const MAX_PEER_TEXT: usize = 200;

/// A peer's text as it may appear in our logs: control characters (newlines, escape
/// sequences) replaced, and cut to [`MAX_PEER_TEXT`] characters, so a peer can
/// neither forge log lines nor flood them.
pub fn peer_text(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(MAX_PEER_TEXT)
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect();
    if text.chars().nth(MAX_PEER_TEXT).is_some() {
        out.push('…');
    }
    out
}

/// The proposer that owns a triple or presignature id.
pub fn owner(id: u64) -> ParticipantId {
    ParticipantId((id >> 48) as u32)
}

/// What the contract asks of the key holders, as the driver reads it from the
/// contract state: one attempt of a key event. The attempt id is the contract's,
/// so every participant runs the same instance and a new attempt is a new task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyTask {
    /// Initializing: generate `domain`'s key among the engine's participants.
    Generate {
        epoch: u64,
        domain: DomainId,
        attempt: u64,
    },
    /// Resharing from the old participants to the engine's participants and
    /// threshold, keeping `public_key`.
    Reshare {
        epoch: u64,
        domain: DomainId,
        old_participants: Participants,
        old_threshold: usize,
        public_key: AffinePoint,
        attempt: u64,
    },
}

impl KeyTask {
    fn job(&self) -> Job {
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
                public_key: SerializableAffinePoint::from_point(public_key).affine_point,
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
}

/// The key-event attempt of a key job (`None` for stock and signing jobs).
pub fn attempt_of(job: &Job) -> Option<u64> {
    match job {
        Job::Keygen { attempt, .. } | Job::Reshare { attempt, .. } => Some(*attempt),
        _ => None,
    }
}

/// Something the driver should know.
#[derive(Debug, PartialEq)]
pub enum Event {
    /// A key share from key-event attempt `attempt`, already stored: vote for its
    /// public key (`vote_pk`) or report resharing done (`vote_reshared`).
    KeyShareStored {
        epoch: u64,
        attempt: u64,
        public_key: AffinePoint,
    },
    TripleStored(u64),
    PresignatureStored(u64),
    /// A signature for `request_id`; `leader` says whether this node proposed it
    /// (and so should `respond`).
    Signed {
        request_id: RequestId,
        response: EcdsaSignature,
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

enum Output {
    Key(Instance<KeyShare>),
    Triple(Instance<Triple>),
    Presign(Instance<Presignature>),
    Sign(Instance<EcdsaSignature>),
}

struct Running {
    job: Job,
    participants: Participants,
    started: Instant,
    leader: bool,
    output: Output,
}

/// Messages for a run that has not started here yet, and since when.
pub type EarlyMessages = (Instant, Vec<(ParticipantId, Vec<u8>)>);

/// One node's protocol engine for one epoch (participants, threshold, key share).
pub struct Engine {
    epoch: u64,
    me: ParticipantId,
    participants: Participants,
    threshold: usize,
    key: Option<KeyShare>,
    key_task: Option<KeyTask>,
    /// This node stored its share from the key task's attempt (a later attempt is
    /// a new task, set by the driver when the contract moves on).
    key_done: bool,
    /// The share the engine started with: the input to resharing, kept even
    /// after a new share is stored, in case a later attempt is needed.
    reshare_input: Option<KeyShare>,
    store: Arc<Store>,
    timeout: Duration,
    requests: HashMap<RequestId, SignTask>,
    running: HashMap<InstanceId, Running>,
    early: HashMap<InstanceId, EarlyMessages>,
    /// Invitations to sign requests this node has not seen on the chain yet.
    deferred: HashMap<(RequestId, ParticipantId), (Instant, Start)>,
    outbox: VecDeque<(ParticipantId, Vec<u8>)>,
    events: VecDeque<Event>,
    /// An invitation waits for a request this node has not seen yet.
    awaiting_chain: bool,
    /// Who has confirmed storing each of this node's own triples and
    /// presignatures made since it started (records older than that, found in
    /// storage, are taken to be held by all their holders).
    acks: HashMap<u64, (Instant, BTreeSet<u32>)>,
    /// Who takes part in the stock runs this node proposes.
    stock_subset: StockSubset,
    /// Stock proposals (triple pairs and presignatures) this node made: turns the
    /// rotation of [`Engine::stock_subset`].
    stock_proposals: u64,
}

impl Engine {
    pub fn new(
        epoch: u64,
        me: ParticipantId,
        participants: Participants,
        threshold: usize,
        key: Option<KeyShare>,
        store: Arc<Store>,
        timeout: Duration,
    ) -> Self {
        Engine {
            epoch,
            me,
            participants,
            threshold,
            reshare_input: key.clone(),
            key,
            key_task: None,
            key_done: false,
            store,
            timeout,
            requests: HashMap::new(),
            running: HashMap::new(),
            early: HashMap::new(),
            deferred: HashMap::new(),
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            awaiting_chain: false,
            acks: HashMap::new(),
            stock_subset: StockSubset::default(),
            stock_proposals: 0,
        }
    }

    /// Sets who takes part in the stock runs this node proposes from now on.
    pub fn set_stock_subset(&mut self, subset: StockSubset) {
        self.stock_subset = subset;
    }

    /// The instance id every party derives for `job` in this epoch.
    fn instance_of(&self, job: &Job) -> InstanceId {
        let mut hasher = Sha3_256::new();
        hasher.update(b"chain-signatures engine instance v1:");
        hasher.update(self.epoch.to_be_bytes());
        hasher.update(borsh::to_vec(job).expect("serialises"));
        InstanceId(hasher.finalize().into())
    }

    /// A new id owned by this node: its participant id, then 48 random bits.
    fn fresh_id(&self) -> u64 {
        (u64::from(self.me.0) << 48) | (rand::rngs::OsRng.next_u64() & ((1 << 48) - 1))
    }

    /// Sets what the contract asks of the key holders (or `None` when Running).
    pub fn set_key_task(&mut self, task: Option<KeyTask>) {
        if self.key_task != task {
            // Runs of the old task are void: their output must never be stored.
            self.running.retain(|_, r| attempt_of(&r.job).is_none());
            self.key_task = task;
            self.key_done = false;
        }
    }

    /// The old share resharing starts from (the previous epoch's), for an engine
    /// whose key task is a resharing this node held a share for.
    pub fn set_reshare_input(&mut self, share: Option<KeyShare>) {
        self.reshare_input = share;
    }

    /// This node already stored its share from the current attempt (before a
    /// restart): it takes no further part in the task, and reports the share again
    /// so the driver can repeat its vote.
    pub fn resume_finished_key_task(&mut self, share: KeyShare) {
        let Some(task) = &self.key_task else {
            return;
        };
        self.events.push_back(Event::KeyShareStored {
            epoch: self.epoch,
            attempt: task.attempt(),
            public_key: share.public_key,
        });
        self.key = Some(share);
        self.key_done = true;
    }

    /// Sets the key share of this engine's epoch (e.g. read back from storage).
    pub fn set_key(&mut self, share: Option<KeyShare>) {
        self.key = share;
    }

    /// Starts the key task (any participant may; all join the same run). Returns
    /// whether there was one to start.
    pub fn propose_key_task(&mut self) -> Result<bool, EngineError> {
        let Some(task) = self.key_task.clone() else {
            return Ok(false);
        };
        if self.key_done {
            return Ok(true);
        }
        let job = task.job();
        if self.running.contains_key(&self.instance_of(&job)) {
            return Ok(true);
        }
        let output = self.join_key_task(&task, &job)?;
        self.launch(job, self.participants.clone(), true, output);
        Ok(true)
    }

    fn join_key_task(&self, task: &KeyTask, job: &Job) -> Result<Output, EngineError> {
        let instance = self.instance_of(job);
        Ok(Output::Key(match task {
            KeyTask::Generate { .. } => {
                keygen(instance, self.me, self.participants.clone(), self.threshold)?
            }
            KeyTask::Reshare {
                old_participants,
                old_threshold,
                public_key,
                ..
            } => {
                let args = ReshareArgs {
                    old_participants: old_participants.clone(),
                    old_threshold: *old_threshold,
                    new_participants: self.participants.clone(),
                    new_threshold: self.threshold,
                    public_key: *public_key,
                };
                let old_share = self
                    .reshare_input
                    .as_ref()
                    .filter(|_| old_participants.contains(self.me));
                reshare(instance, self.me, args, old_share)?
            }
        }))
    }

    /// Records a request seen on the chain, so this node may sign it when asked.
    pub fn add_request(&mut self, request_id: RequestId, task: SignTask) {
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
    }

    /// Forgets a request (answered or expired).
    pub fn remove_request(&mut self, request_id: &RequestId) {
        self.requests.remove(request_id);
    }

    /// Proposes new triples among the live participants (`live`: those this node
    /// can reach, itself included; at least the threshold) and returns their ids.
    ///
    /// With [`StockSubset::Threshold`] it starts a *pair* of triples among one
    /// subset of exactly `threshold` participants (see [`Engine::stock_subset`]):
    /// a presignature's participants are its two triples' holders, so the two are
    /// made among the same subset. With [`StockSubset::All`] it starts one triple
    /// among every live participant.
    pub fn propose_triples(&mut self, live: &Participants) -> Result<Vec<u64>, EngineError> {
        let reachable = self.reachable(live)?;
        let (holders, count) = match self.stock_subset {
            StockSubset::All => (reachable, 1),
            StockSubset::Threshold => (self.stock_subset(&reachable)?, 2),
        };
        let mut ids = Vec::with_capacity(count);
        for _ in 0..count {
            let id = self.fresh_id();
            let job = Job::Triple { id };
            let instance = generate_triple(
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
    /// threshold): this node and `threshold - 1` of the others, a window that
    /// rotates over them. With the others in id order as `o[0..m]` and `k` this
    /// node's stock proposals so far, the window is `o[s], o[s+1], … (mod m)` with
    /// `s = (k + my id) mod m`. Consecutive proposals thus use different subsets
    /// whenever more than the threshold are live, every other participant is in
    /// the same share of them, a failed run is retried by the next proposal among
    /// another subset, and proposers start their windows at different places.
    fn stock_subset(&mut self, reachable: &Participants) -> Result<Participants, EngineError> {
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

    /// The holders of `stocked` that are live, if this node is one of them and they
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
        let now = Instant::now();
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

    /// How many of this node's own triples and presignatures it can use now or
    /// soon (once their holders confirm), with `live` reachable: its stock.
    ///
    /// With [`StockSubset::Threshold`] a triple counts only if another one has the
    /// same live holders (a presignature needs two): a triple whose partner's run
    /// failed waits, uncounted, for another such triple.
    pub fn own_stock(&self, live: &Participants) -> Result<(usize, usize), EngineError> {
        let triples = self.own_ready(self.store.triples()?, live, true);
        let triples = match self.stock_subset {
            StockSubset::All => triples.len(),
            StockSubset::Threshold => {
                let mut by_holders: HashMap<Vec<u32>, usize> = HashMap::new();
                for (_, mut holders) in triples {
                    holders.sort_unstable();
                    *by_holders.entry(holders).or_default() += 1;
                }
                by_holders.values().map(|n| n & !1).sum()
            }
        };
        Ok((
            triples,
            self.own_ready(self.store.presignatures()?, live, true)
                .len(),
        ))
    }

    /// How many of this node's own triples and presignatures every holder has
    /// confirmed storing, among `live`: what it can start runs with right now.
    pub fn own_confirmed_stock(&self, live: &Participants) -> Result<(usize, usize), EngineError> {
        Ok((
            self.own_confirmed(self.store.triples()?, live).len(),
            self.own_confirmed(self.store.presignatures()?, live).len(),
        ))
    }

    /// Proposes a presignature from two of this node's own triples whose live
    /// holders overlap in at least the threshold, among that overlap.
    pub fn propose_presignature(
        &mut self,
        live: &Participants,
    ) -> Result<Option<u64>, EngineError> {
        let mine = self.own_confirmed(self.store.triples()?, live);
        let mut pair = None;
        'search: for (i, (t0, h0)) in mine.iter().enumerate() {
            for (t1, h1) in &mine[i + 1..] {
                let common: Vec<u32> = h0.iter().copied().filter(|p| h1.contains(p)).collect();
                if common.len() >= self.threshold {
                    pair = Some((*t0, *t1, common));
                    break 'search;
                }
            }
        }
        let Some((t0, t1, common)) = pair else {
            return Ok(None);
        };
        let participants = Participants::new(common.into_iter().map(ParticipantId))?;
        self.retire_elsewhere(t0, &participants, NodeMessage::RetireTriple(t0))?;
        self.retire_elsewhere(t1, &participants, NodeMessage::RetireTriple(t1))?;
        let id = self.fresh_id();
        let job = Job::Presign {
            id,
            triples: (t0, t1),
        };
        self.acks.remove(&t0);
        self.acks.remove(&t1);
        let output = self.join_presign(&job, &participants, id, t0, t1)?;
        self.launch(job, participants, true, output);
        Ok(Some(id))
    }

    /// Leads signing of a known request with one of this node's presignatures,
    /// among the threshold of its holders: this node and the first live others.
    pub fn propose_sign(
        &mut self,
        request_id: RequestId,
        live: &Participants,
    ) -> Result<Option<u64>, EngineError> {
        let Some((presignature, holders)) = self
            .own_confirmed(self.store.presignatures()?, live)
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
            presignature,
            &signers,
            NodeMessage::RetirePresignature(presignature),
        )?;
        self.acks.remove(&presignature);
        let output = self.join_sign(&job, &signers, request_id, presignature)?;
        self.launch(job, signers, true, output);
        Ok(Some(presignature))
    }

    /// Ends every run that involves one of `gone` (peers that stopped answering):
    /// waiting for them would only end at the timeout. Their inputs stay consumed.
    pub fn abandon_runs_with(&mut self, gone: &[ParticipantId]) {
        let doomed: Vec<InstanceId> = self
            .running
            .iter()
            .filter(|(_, r)| attempt_of(&r.job).is_none())
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

    /// Sends `Start` to the other participants and runs the instance. Callers check
    /// that the run is not under way already: one instance per run, never replaced.
    fn launch(&mut self, job: Job, participants: Participants, leader: bool, output: Output) {
        assert!(
            !self.running.contains_key(&self.instance_of(&job)),
            "a run is launched at most once"
        );
        let start = NodeMessage::Start(Start {
            epoch: self.epoch,
            participants: participants.iter().map(|p| p.0).collect(),
            job: job.clone(),
        });
        if leader {
            let bytes = start.encode();
            for peer in participants.iter().filter(|p| *p != self.me) {
                self.outbox.push_back((peer, bytes.clone()));
            }
        }
        let instance = self.instance_of(&job);
        self.running.insert(
            instance,
            Running {
                job,
                participants,
                started: Instant::now(),
                leader,
                output,
            },
        );
        if let Some((_, early)) = self.early.remove(&instance) {
            for (from, message) in early {
                self.deliver(instance, from, &message);
            }
        }
        self.advance(instance);
    }

    fn join_presign(
        &self,
        job: &Job,
        participants: &Participants,
        id: u64,
        t0: u64,
        t1: u64,
    ) -> Result<Output, EngineError> {
        let key = self.key.as_ref().ok_or(EngineError::NoKey)?;
        if self.store.presignature_ids()?.contains(&id) {
            return Err(EngineError::Refused(format!(
                "presignature {id} exists already"
            )));
        }
        // Taken (and retired) before the protocol sees them.
        let triple0 = self.store.take_triple(t0)?;
        let triple1 = self.store.take_triple(t1)?;
        let (Some((epoch0, triple0)), Some((epoch1, triple1))) = (triple0, triple1) else {
            return Err(EngineError::Refused(format!(
                "triples {t0} and {t1} are not both available here"
            )));
        };
        if epoch0 != self.epoch || epoch1 != self.epoch {
            return Err(EngineError::Refused(format!(
                "triples {t0} and {t1} belong to another epoch"
            )));
        }
        Ok(Output::Presign(presign(
            self.instance_of(job),
            self.me,
            participants.clone(),
            key,
            triple0,
            triple1,
        )?))
    }

    fn join_sign(
        &self,
        job: &Job,
        signers: &Participants,
        request_id: RequestId,
        presignature: u64,
    ) -> Result<Output, EngineError> {
        let key = self.key.as_ref().ok_or(EngineError::NoKey)?;
        let task = self.requests.get(&request_id).cloned().ok_or_else(|| {
            EngineError::Refused(format!(
                "request {request_id} is not pending on the chain as seen here"
            ))
        })?;
        // Taken (and retired) before any signature share leaves this node.
        let (epoch, presig) = self.store.take_presignature(presignature)?.ok_or_else(|| {
            EngineError::Refused(format!("presignature {presignature} is not available here"))
        })?;
        if epoch != self.epoch {
            return Err(EngineError::Refused(format!(
                "presignature {presignature} belongs to epoch {epoch}"
            )));
        }
        Ok(Output::Sign(sign(
            self.instance_of(job),
            self.me,
            signers.clone(),
            presig,
            &key.public_key,
            &task,
        )?))
    }

    /// Handles a message from a peer. Errors are about that message only; the
    /// engine keeps running.
    pub fn handle(&mut self, from: ParticipantId, bytes: &[u8]) -> Result<(), EngineError> {
        self.handle_message(from, NodeMessage::decode(bytes)?)
    }

    /// [`Engine::handle`] for a message already decoded.
    pub fn handle_message(
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
                    self.failed(job, format!("participant {} declined: {reason}", from.0));
                }
                Ok(())
            }
            NodeMessage::RetireTriple(id) if owner(id) == from => {
                self.store.take_triple(id)?;
                Ok(())
            }
            NodeMessage::RetirePresignature(id) if owner(id) == from => {
                self.store.take_presignature(id)?;
                Ok(())
            }
            NodeMessage::RetireTriple(id) | NodeMessage::RetirePresignature(id) => {
                Err(EngineError::Refused(format!("only the owner retires {id}")))
            }
            NodeMessage::StoredTriple(id) | NodeMessage::StoredPresignature(id) => {
                if owner(id) == self.me {
                    self.acks
                        .entry(id)
                        .or_insert_with(|| (Instant::now(), BTreeSet::new()))
                        .1
                        .insert(from.0);
                }
                Ok(())
            }
            NodeMessage::Protocol(message) => {
                let (header, _) = threshold::wire::Header::decode(&message)?;
                if self.running.contains_key(&header.instance) {
                    self.deliver(header.instance, from, &message);
                    self.advance(header.instance);
                } else {
                    self.buffer_early(header.instance, from, message);
                }
                Ok(())
            }
        }
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
        if let Some(attempt) = attempt_of(&start.job) {
            let task = self
                .key_task
                .clone()
                .ok_or_else(|| EngineError::Refused("no key task is under way".into()))?;
            if self.key_done {
                // Our share of this epoch is stored and never replaced: another
                // run's output could not be used together with it.
                return Err(EngineError::Refused(
                    "this node finished the key task already".into(),
                ));
            }
            if task.job() != start.job || participants != self.participants {
                return Err(EngineError::Refused(format!(
                    "the key task (attempt {attempt}) differs from the contract's as seen \
                     here (attempt {})",
                    task.attempt()
                )));
            }
            if self.running.contains_key(&self.instance_of(&start.job)) {
                // Several participants may propose the key task; it is one run.
                return Ok(());
            }
            let output = self.join_key_task(&task, &start.job)?;
            self.launch(start.job, participants, false, output);
            return Ok(());
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
                Output::Triple(generate_triple(
                    instance,
                    self.me,
                    participants.clone(),
                    self.threshold,
                )?)
            }
            Job::Presign { id, triples } => {
                owned(*id)?;
                owned(triples.0)?;
                owned(triples.1)?;
                self.join_presign(&start.job, &participants, *id, triples.0, triples.1)?
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
                        .insert((request_id, from), (Instant::now(), start.clone()));
                    self.awaiting_chain = true;
                    return Ok(());
                }
                self.join_sign(&start.job, &participants, request_id, *presignature)?
            }
        };
        self.launch(start.job, participants, false, output);
        Ok(())
    }

    fn buffer_early(&mut self, instance: InstanceId, from: ParticipantId, message: Vec<u8>) {
        if !self.early.contains_key(&instance) && self.early.len() >= MAX_EARLY_INSTANCES {
            return;
        }
        let (_, queue) = self
            .early
            .entry(instance)
            .or_insert_with(|| (Instant::now(), Vec::new()));
        if queue.len() < MAX_EARLY_PER_INSTANCE {
            queue.push((from, message));
        }
    }

    fn deliver(&mut self, instance: InstanceId, from: ParticipantId, message: &[u8]) {
        let Some(running) = self.running.get_mut(&instance) else {
            return;
        };
        let result = match &mut running.output {
            Output::Key(i) => i.receive(from, message),
            Output::Triple(i) => i.receive(from, message),
            Output::Presign(i) => i.receive(from, message),
            Output::Sign(i) => i.receive(from, message),
        };
        if let Err(e) = result {
            tracing::debug!(peer = from.0, error = %e, "refused a protocol message");
        }
    }

    /// Pokes an instance until it waits, routing what it sends and what it outputs.
    fn advance(&mut self, instance: InstanceId) {
        loop {
            let Some(running) = self.running.get_mut(&instance) else {
                return;
            };
            let step = match &mut running.output {
                Output::Key(i) => i.poke().map(|s| s.map_done(|k| Done::Key(Box::new(k)))),
                Output::Triple(i) => i.poke().map(|s| s.map_done(|t| Done::Triple(Box::new(t)))),
                Output::Presign(i) => i.poke().map(|s| s.map_done(|p| Done::Presign(Box::new(p)))),
                Output::Sign(i) => i.poke().map(|s| s.map_done(Done::Sign)),
            };
            let participants: Vec<ParticipantId> = match &running.output {
                Output::Key(i) => i.participants().iter().collect(),
                Output::Triple(i) => i.participants().iter().collect(),
                Output::Presign(i) => i.participants().iter().collect(),
                Output::Sign(i) => i.participants().iter().collect(),
            };
            match step {
                Ok(Poked::Send(out)) => {
                    let bytes = NodeMessage::Protocol(out.message).encode();
                    match out.to {
                        Recipient::AllOthers => {
                            for peer in participants.into_iter().filter(|p| *p != self.me) {
                                self.outbox.push_back((peer, bytes.clone()));
                            }
                        }
                        Recipient::One(peer) => self.outbox.push_back((peer, bytes)),
                    }
                }
                Ok(Poked::Wait) => return,
                Ok(Poked::Done(done)) => {
                    let running = self.running.remove(&instance).expect("present above");
                    self.finish(running, done);
                    return;
                }
                Err(e) => {
                    let running = self.running.remove(&instance).expect("present above");
                    self.failed(running.job, e.to_string());
                    return;
                }
            }
        }
    }

    /// Tells the holders of record `id` outside `users` (the run about to consume
    /// it) to drop their shares, which nobody will ever use.
    fn retire_elsewhere(
        &mut self,
        id: u64,
        users: &Participants,
        retire: NodeMessage,
    ) -> Result<(), EngineError> {
        let stock = match retire {
            NodeMessage::RetireTriple(_) => self.store.triples()?,
            _ => self.store.presignatures()?,
        };
        let Some(record) = stock.into_iter().find(|s| s.id == id) else {
            return Ok(());
        };
        let bytes = retire.encode();
        for holder in record.holders.participants {
            if !users.contains(ParticipantId(holder)) && holder != self.me.0 {
                self.outbox
                    .push_back((ParticipantId(holder), bytes.clone()));
            }
        }
        Ok(())
    }

    /// Declines `job` to its proposer (key tasks excepted: those are proposed by
    /// everyone, and a refusal there is settled by attempts).
    fn decline(&mut self, proposer: ParticipantId, job: Job, reason: String) {
        if attempt_of(&job).is_none() {
            let decline = NodeMessage::Decline { job, reason };
            self.outbox.push_back((proposer, decline.encode()));
        }
    }

    /// Reports a run that ended without output (for a key task the driver tells
    /// the contract, which starts the next attempt).
    fn failed(&mut self, job: Job, reason: String) {
        self.events.push_back(Event::Failed { job, reason });
    }

    /// Messages that arrived for runs this engine never started, to hand to its
    /// successor (the next epoch's engine may be the one that starts them).
    pub fn take_early(&mut self) -> HashMap<InstanceId, EarlyMessages> {
        std::mem::take(&mut self.early)
    }

    /// Takes over a predecessor's early messages (see [`Engine::take_early`]).
    pub fn adopt_early(&mut self, early: HashMap<InstanceId, EarlyMessages>) {
        for (instance, (since, messages)) in early {
            if self.early.len() < MAX_EARLY_INSTANCES {
                self.early.insert(instance, (since, messages));
            }
        }
    }

    /// After storing a share of `id`: the owner records itself as a holder, anyone
    /// else tells the owner.
    fn confirm_stored(&mut self, id: u64, ack: NodeMessage) {
        if owner(id) == self.me {
            self.acks
                .entry(id)
                .or_insert_with(|| (Instant::now(), BTreeSet::new()))
                .1
                .insert(self.me.0);
        } else {
            self.outbox.push_back((owner(id), ack.encode()));
        }
    }

    fn finish(&mut self, running: Running, done: Done) {
        let event = match (running.job.clone(), done) {
            (Job::Keygen { .. } | Job::Reshare { .. }, Done::Key(_))
                if self.key_done
                    || self.key_task.as_ref().map(KeyTask::job).as_ref() != Some(&running.job) =>
            {
                Event::Failed {
                    job: running.job,
                    reason: "output of a key task run that is no longer current: discarded".into(),
                }
            }
            (
                Job::Keygen {
                    epoch,
                    domain,
                    attempt,
                }
                | Job::Reshare {
                    epoch,
                    domain,
                    attempt,
                    ..
                },
                Done::Key(share),
            ) => {
                match self
                    .store
                    .put_key_share(DomainId(domain), epoch, attempt, &share)
                {
                    Ok(()) => {
                        let public_key = share.public_key;
                        self.key = Some(*share);
                        self.key_done = true;
                        Event::KeyShareStored {
                            epoch,
                            attempt,
                            public_key,
                        }
                    }
                    Err(e) => Event::Failed {
                        job: running.job,
                        reason: e.to_string(),
                    },
                }
            }
            (Job::Triple { id }, Done::Triple(triple)) => {
                match self.store.add_triple(id, self.epoch, &triple) {
                    Ok(()) => {
                        self.confirm_stored(id, NodeMessage::StoredTriple(id));
                        Event::TripleStored(id)
                    }
                    Err(e) => Event::Failed {
                        job: running.job,
                        reason: e.to_string(),
                    },
                }
            }
            (Job::Presign { id, .. }, Done::Presign(presignature)) => {
                match self.store.add_presignature(id, self.epoch, &presignature) {
                    Ok(()) => {
                        self.confirm_stored(id, NodeMessage::StoredPresignature(id));
                        Event::PresignatureStored(id)
                    }
                    Err(e) => Event::Failed {
                        job: running.job,
                        reason: e.to_string(),
                    },
                }
            }
            (Job::Sign { request_id, .. }, Done::Sign(response)) => Event::Signed {
                request_id: RequestId(request_id),
                response,
                leader: running.leader,
            },
            (job, _) => Event::Failed {
                job,
                reason: "output of the wrong kind".into(),
            },
        };
        self.events.push_back(event);
    }

    /// Ends runs and early buffers older than the timeout (a peer died or a message
    /// was lost); their inputs stay consumed.
    pub fn expire(&mut self, now: Instant) {
        let timeout = self.timeout;
        let stale: Vec<InstanceId> = self
            .running
            .iter()
            .filter(|(_, r)| now.duration_since(r.started) > timeout)
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            let running = self.running.remove(&id).expect("listed above");
            self.failed(running.job, "timed out".into());
        }
        self.early
            .retain(|_, (since, _)| now.duration_since(*since) <= timeout);
        self.deferred
            .retain(|_, (since, _)| now.duration_since(*since) <= timeout);
        // Confirmations of records long since used or retired.
        self.acks
            .retain(|_, (since, _)| now.duration_since(*since) <= timeout * 4);
    }

    /// Messages to send: (recipient, bytes).
    pub fn drain_outbox(&mut self) -> impl Iterator<Item = (ParticipantId, Vec<u8>)> + '_ {
        self.outbox.drain(..)
    }

    pub fn drain_events(&mut self) -> impl Iterator<Item = Event> + '_ {
        self.events.drain(..)
    }

    /// Whether an invitation to sign arrived for a request this node has not seen
    /// on the chain yet (since the last call): the driver should read the chain now
    /// rather than at its next poll.
    pub fn take_awaiting_chain(&mut self) -> bool {
        std::mem::take(&mut self.awaiting_chain)
    }

    /// Runs under way.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Triple and presignature runs this node leads that are under way.
    pub fn running_led_generations(&self) -> (usize, usize) {
        let led = |kind: fn(&Job) -> bool| {
            self.running
                .values()
                .filter(|r| r.leader && kind(&r.job))
                .count()
        };
        (
            led(|job| matches!(job, Job::Triple { .. })),
            led(|job| matches!(job, Job::Presign { .. })),
        )
    }

    /// Whether this engine holds a key share of its epoch.
    pub fn has_key(&self) -> bool {
        self.key.is_some()
    }

    pub fn me(&self) -> ParticipantId {
        self.me
    }
}

enum Done {
    Key(Box<KeyShare>),
    Triple(Box<Triple>),
    Presign(Box<Presignature>),
    Sign(EcdsaSignature),
}

enum Poked {
    Send(threshold::Outgoing),
    Wait,
    Done(Done),
}

trait MapDone<T> {
    fn map_done(self, f: impl FnOnce(T) -> Done) -> Poked;
}

impl<T> MapDone<T> for Step<T> {
    fn map_done(self, f: impl FnOnce(T) -> Done) -> Poked {
        match self {
            Step::Send(out) => Poked::Send(out),
            Step::Wait => Poked::Wait,
            Step::Done(output) => Poked::Done(f(output)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_text_cannot_forge_or_flood_log_lines() {
        assert_eq!(peer_text("no stock"), "no stock");
        assert_eq!(
            peer_text("ok\n2026-01-01 INFO forged line\x1b[31m"),
            "ok\u{fffd}2026-01-01 INFO forged line\u{fffd}[31m"
        );
        let long = "x".repeat(10_000);
        let cut = peer_text(&long);
        assert_eq!(cut.chars().count(), MAX_PEER_TEXT + 1);
        assert!(cut.ends_with('…'));
    }
}
