//! The deterministic simulator: N engines of one scheme in one process, each with
//! its own redb store in a temp dir, driven by a seeded scheduler over a simulated
//! clock (see `simulation.rs` for the scenarios and ARCHITECTURE.md, "The node").
//!
//! The world plays everything around the engines as the daemon and the contract
//! would: it builds signing engines for the running set and key engines for the
//! key event's current attempt, turns `KeyShareStored` into votes and key-run
//! failures into `vote_abort_key_event` (the next attempt), answers requests with
//! the leader's signature, and ticks each node as the daemon's loop does (expire,
//! propose the key task, top up stock, lead). The network is a bag of frames the
//! scheduler delivers in any order, drops, duplicates or delays; a node crashes
//! by losing its engines and in-flight frames, and restarts from its store.
//!
//! Everything that decides what happens next comes from one seed: the schedule,
//! the engines' record ids (each engine is seeded from it), the clock. The
//! protocols' own randomness still comes from the OS; it changes message bytes,
//! never the schedule, so the same seed gives the same run (checked by comparing
//! the traces of two runs).

#![allow(dead_code)]

use crate::suite::Suite;
use mpc_node::engine::{
    Clock, DomainEngine, Engine, EngineSetup, EngineTestApi, Event, Job, KeyTask, ManualSteps,
    NodeMessage, RecordId, StepDone, StepWork, StockTargets,
};
use mpc_node::storage::{StorageKey, Store};
use primitives::request::Entropy;
use primitives::{DomainId, PendingRequest, RequestId, SignRequest, SignatureResponse};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use threshold::local::{self, Schedule};
use threshold::{InstanceId, ParticipantId, Participants};

/// What may go wrong, per step of the faulty phase.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    /// A delivery drops the frame instead.
    pub drop: f64,
    /// A delivery keeps a copy of the frame to deliver again.
    pub duplicate: f64,
    /// Weight of "delay a pending frame" among the scheduler's choices.
    pub delay: u32,
    /// Weight of "crash a node" among the scheduler's choices.
    pub crash: u32,
    /// Crash nodes only while a key run is under way at some node (the family of
    /// crashes mid-keygen and mid-resharing), and at least once per run.
    pub crash_mid_key: bool,
    /// Weight of "a peer sends an acknowledgement for a record it does not own".
    pub forged_ack: u32,
}

/// One scenario: the world's nodes, where the key comes from, what happens to it,
/// and the requests to answer.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: &'static str,
    /// Nodes in the world, ids `0..nodes`.
    pub nodes: u32,
    /// The first key: made by the simulated nodes (a keygen event) or, to start
    /// from a running network, made in-process before the run (epoch 0, attempt 0).
    pub keygen_in_sim: bool,
    pub participants: Vec<u32>,
    pub threshold: usize,
    /// A resharing to (participants, threshold) once the key exists.
    pub reshare: Option<(Vec<u32>, usize)>,
    /// Requests to answer once the last key event completed.
    pub requests: usize,
    pub faults: Faults,
    /// Steps of the faulty phase.
    pub steps: usize,
    /// Steps the fault-free tail may take to finish the scenario (liveness).
    pub tail: usize,
}

/// How a run went, for the summary and for checks across runs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub steps: usize,
    pub delivered: usize,
    pub dropped: usize,
    pub duplicated: usize,
    pub crashes: usize,
    pub crashes_mid_key: usize,
    pub attempts: u64,
    pub signatures: usize,
    pub stock_stored: usize,
    pub forged_acks: usize,
    /// Protocol steps run, and those taken back before an earlier-run step of
    /// the same node (completions out of order).
    pub steps_run: usize,
    pub steps_reordered: usize,
    /// Steps that came back after their run had ended (or their engine was
    /// replaced) and were discarded.
    pub steps_void: usize,
    /// A digest of the schedule and its outcome: equal for equal seeds.
    pub trace_digest: u64,
}

const TIMEOUT: Duration = Duration::from_secs(10);
/// The contract's attempt lifetime: past it, the attempt rolls to the next.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(40);
/// A leader's turn after the one before it (the daemon's `leader_grace`).
const LEADER_GRACE: Duration = Duration::from_secs(1);
const TARGETS: StockTargets = StockTargets {
    triples: 2,
    presignatures: 1,
    max_concurrent: 1,
};

struct Envelope {
    from: u32,
    to: u32,
    bytes: Vec<u8>,
    /// Deliverable from this simulated time (ns) on.
    at: u64,
}

struct SimNode<S: Suite> {
    id: u32,
    path: std::path::PathBuf,
    key: StorageKey,
    /// `None` while the node is down.
    store: Option<Arc<Store>>,
    signer: Option<Engine<S>>,
    keyer: Option<Engine<S>>,
    was_live: BTreeSet<u32>,
    /// When this node last led each request.
    led: BTreeMap<RequestId, u64>,
    /// Where its engines hand their protocol steps (the daemon's workers).
    steps: Arc<ManualSteps>,
    /// Steps handed over and not run yet, and steps run (their record, if any,
    /// stored) whose results the engine has not taken back yet: the schedule runs
    /// and returns them in any order, as workers on several cores would.
    queued: Vec<StepWork>,
    ran: Vec<StepDone>,
}

struct RunningSet {
    epoch: u64,
    participants: Participants,
    threshold: usize,
    attempt: u64,
    public_key: String,
}

struct KeyEvent {
    epoch: u64,
    participants: Participants,
    threshold: usize,
    /// The key being reshared (old participants, old threshold, public key), or
    /// `None` for keygen.
    old: Option<(Participants, usize, String)>,
    attempt: u64,
    started: u64,
    votes: BTreeMap<u32, String>,
}

impl KeyEvent {
    fn task(&self, domain: DomainId) -> KeyTask {
        match &self.old {
            None => KeyTask::Generate {
                epoch: self.epoch,
                domain,
                attempt: self.attempt,
            },
            Some((old_participants, old_threshold, public_key)) => KeyTask::Reshare {
                epoch: self.epoch,
                domain,
                old_participants: old_participants.clone(),
                old_threshold: *old_threshold,
                public_key: public_key.clone(),
                attempt: self.attempt,
            },
        }
    }
}

struct Request {
    pending: PendingRequest,
    /// Simulated time it showed up on chain.
    since: u64,
    answered: bool,
}

/// What the invariants remember across steps.
#[derive(Default)]
struct Ledger {
    /// Stock ids each node ever held, per kind (by table name), and those gone.
    held: BTreeMap<(u32, &'static str), BTreeSet<RecordId>>,
    gone: BTreeMap<(u32, &'static str), BTreeSet<RecordId>>,
    /// The run that made each triple or presignature id.
    made_by: BTreeMap<RecordId, Job>,
    /// The run that consumed each triple or presignature id.
    used_by: BTreeMap<RecordId, Job>,
    /// Nonces of all signatures, with the request each answered.
    nonces: BTreeMap<Vec<u8>, (RequestId, u64)>,
}

pub struct World<S: Suite> {
    scenario: Scenario,
    seed: u64,
    rng: StdRng,
    base: Instant,
    /// Simulated nanoseconds since `base`, shared with the engines' clocks.
    time: Arc<AtomicU64>,
    nodes: Vec<SimNode<S>>,
    pending: Vec<Envelope>,
    running: Option<RunningSet>,
    event: Option<KeyEvent>,
    next_attempt: u64,
    next_epoch: u64,
    reshare_done: bool,
    requests: BTreeMap<RequestId, Request>,
    requests_issued: bool,
    ledger: Ledger,
    report: Report,
    trace: Vec<String>,
    step: usize,
    /// Whether the faulty phase is over.
    calm: bool,
    _dir: tempfile::TempDir,
}

fn participants(ids: &[u32]) -> Participants {
    Participants::new(ids.iter().copied().map(ParticipantId)).unwrap()
}

impl<S: Suite> World<S> {
    pub fn new(scenario: Scenario, seed: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = StdRng::seed_from_u64(seed);
        let nodes = (0..scenario.nodes)
            .map(|id| {
                let path = dir.path().join(format!("node{id}.redb"));
                let key = StorageKey::new(rng.gen());
                let store = Arc::new(Store::open(&path, &key).unwrap());
                SimNode {
                    id,
                    path,
                    key,
                    store: Some(store),
                    signer: None,
                    keyer: None,
                    was_live: BTreeSet::new(),
                    led: BTreeMap::new(),
                    steps: ManualSteps::new(),
                    queued: Vec::new(),
                    ran: Vec::new(),
                }
            })
            .collect();
        let mut world = World {
            seed,
            rng,
            base: Instant::now(),
            time: Arc::new(AtomicU64::new(0)),
            nodes,
            pending: Vec::new(),
            running: None,
            event: None,
            next_attempt: 0,
            next_epoch: 0,
            reshare_done: false,
            requests: BTreeMap::new(),
            requests_issued: false,
            ledger: Ledger::default(),
            report: Report::default(),
            trace: Vec::new(),
            step: 0,
            calm: false,
            _dir: dir,
            scenario,
        };
        let set = participants(&world.scenario.participants);
        let threshold = world.scenario.threshold;
        if world.scenario.keygen_in_sim {
            world.start_event(set, threshold, None);
        } else {
            world.key_outside(set, threshold);
        }
        world
    }

    fn now(&self) -> u64 {
        self.time.load(Ordering::SeqCst)
    }

    fn instant(&self) -> Instant {
        self.base + Duration::from_nanos(self.now())
    }

    /// Stops the run with the seed that reproduces it.
    #[track_caller]
    fn fail(&self, what: String) -> ! {
        // The whole schedule, for reading a replayed failure step by step.
        if let Ok(path) = std::env::var("SIM_TRACE") {
            std::fs::write(&path, self.trace.join("\n")).unwrap();
        }
        let tail: Vec<&String> = self.trace.iter().rev().take(40).collect();
        let tail: Vec<&&String> = tail.iter().rev().collect();
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| {
                let jobs = |e: &Option<Engine<S>>| {
                    e.as_ref().map(|e| {
                        e.running_jobs()
                            .into_iter()
                            .map(job_text)
                            .collect::<Vec<_>>()
                    })
                };
                format!(
                    "node {}: up {}, key runs {:?}, runs {:?}",
                    n.id,
                    n.store.is_some(),
                    jobs(&n.keyer),
                    jobs(&n.signer)
                )
            })
            .collect();
        panic!(
            "simulation {} ({}) failed at step {}: {what}\nnodes: {nodes:#?}\n\
             frames in flight: {}\nlast steps: {tail:#?}\n\
             replay: SIM_SEED={} cargo test -p mpc-node --test simulation {}::{}",
            self.scenario.name,
            S::NAME,
            self.step,
            self.pending.len(),
            self.seed,
            S::NAME,
            self.scenario.name,
        );
    }

    fn note(&mut self, line: String) {
        self.trace.push(format!(
            "{} t={}ms {line}",
            self.step,
            self.now() / 1_000_000
        ));
    }

    /// An engine as the daemon builds one, with the simulated clock and a seed
    /// drawn from the schedule (a restarted node draws a new one, as a restarted
    /// daemon seeds from the OS again).
    fn engine(&mut self, i: usize, epoch: u64, set: &Participants, threshold: usize) -> Engine<S> {
        let time = self.time.clone();
        let base = self.base;
        let seed: [u8; 32] = self.rng.gen();
        Engine::new(
            EngineSetup {
                domain: S::DOMAIN,
                epoch,
                me: ParticipantId(self.nodes[i].id),
                participants: set.clone(),
                threshold,
                store: self.nodes[i].store.clone().expect("the node is up"),
                timeout: TIMEOUT,
                clock: Clock::from_fn(move || {
                    base + Duration::from_nanos(time.load(Ordering::SeqCst))
                }),
                seed,
                steps: self.nodes[i].steps.clone(),
            },
            None,
        )
    }

    /// The key shares of a running network made before the run, stored as the
    /// contract's attempt 0 of epoch 0.
    fn key_outside(&mut self, set: Participants, threshold: usize) {
        let shares: Vec<S::KeyShare> = local::run(
            set.iter()
                .map(|me| S::keygen(InstanceId([7; 32]), me, set.clone(), threshold).unwrap())
                .collect(),
            &Schedule {
                shuffle_seed: Some(self.seed),
                ..Schedule::default()
            },
        )
        .all_done()
        .unwrap();
        let public_key = S::public_key_text(&shares[0]);
        for (p, share) in set.iter().zip(&shares) {
            let store = self.nodes[p.0 as usize].store.as_ref().unwrap();
            store.put_key_share(S::DOMAIN, 0, 0, share).unwrap();
        }
        self.next_epoch = 1;
        self.next_attempt = 1;
        self.complete(RunningSet {
            epoch: 0,
            participants: set,
            threshold,
            attempt: 0,
            public_key,
        });
    }

    /// The contract starts a key event (keygen, or resharing `old`).
    fn start_event(
        &mut self,
        set: Participants,
        threshold: usize,
        old: Option<(Participants, usize, String)>,
    ) {
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        self.event = Some(KeyEvent {
            epoch,
            participants: set,
            threshold,
            old,
            attempt: 0,
            started: 0,
            votes: BTreeMap::new(),
        });
        self.next_attempt_of_event("event starts");
    }

    /// The event's next attempt: new key engines at every live participant.
    fn next_attempt_of_event(&mut self, why: &str) {
        let attempt = self.next_attempt;
        self.next_attempt += 1;
        self.report.attempts += 1;
        let now = self.now();
        let event = self.event.as_mut().expect("a key event");
        event.attempt = attempt;
        event.started = now;
        event.votes.clear();
        self.note(format!("contract: attempt {attempt} ({why})"));
        for i in 0..self.nodes.len() {
            self.nodes[i].keyer = None;
            self.build_keyer(i);
        }
    }

    /// As the daemon's `rebuild_keyers`: a key engine for the current attempt if
    /// this node is up and in the new set.
    fn build_keyer(&mut self, i: usize) {
        let Some(event) = &self.event else { return };
        let me = ParticipantId(self.nodes[i].id);
        if self.nodes[i].store.is_none() || !event.participants.contains(me) {
            return;
        }
        let (epoch, set, threshold, task) = (
            event.epoch,
            event.participants.clone(),
            event.threshold,
            event.task(S::DOMAIN),
        );
        let old_holder = event
            .old
            .as_ref()
            .is_some_and(|(old, _, _)| old.contains(me));
        let mut engine = self.engine(i, epoch, &set, threshold);
        engine.set_key_task(Some(task));
        if old_holder {
            let running = self.running.as_ref().expect("resharing a running key");
            engine
                .load_reshare_input(running.epoch, running.attempt)
                .unwrap();
        }
        engine.resume_finished_key_task().unwrap();
        self.nodes[i].keyer = Some(engine);
        self.collect(i);
    }

    /// As the daemon's `build_signer`: a signing engine of the running set with
    /// the share of the completed attempt, and the pending requests.
    fn build_signer(&mut self, i: usize) {
        let Some(running) = &self.running else { return };
        let me = ParticipantId(self.nodes[i].id);
        if self.nodes[i].store.is_none() || !running.participants.contains(me) {
            return;
        }
        let (epoch, set, threshold, attempt) = (
            running.epoch,
            running.participants.clone(),
            running.threshold,
            running.attempt,
        );
        let mut engine = self.engine(i, epoch, &set, threshold);
        engine.load_key(attempt).unwrap();
        engine.retire_other_epochs().unwrap();
        for request in self.requests.values().filter(|r| !r.answered) {
            engine.add_request(&request.pending).unwrap();
        }
        self.nodes[i].signer = Some(engine);
    }

    /// The contract completes a key event: the new set runs.
    fn complete(&mut self, running: RunningSet) {
        self.note(format!(
            "contract: epoch {} running with attempt {}",
            running.epoch, running.attempt
        ));
        self.running = Some(running);
        self.event = None;
        for i in 0..self.nodes.len() {
            self.nodes[i].keyer = None;
            self.nodes[i].signer = None;
            self.build_signer(i);
        }
    }

    /// Moves a node's frames to the network and its events to the world, checking
    /// what it sends.
    fn collect(&mut self, i: usize) {
        let me = self.nodes[i].id;
        let mut frames = Vec::new();
        let mut events = Vec::new();
        let node = &mut self.nodes[i];
        for engine in [&mut node.keyer, &mut node.signer].into_iter().flatten() {
            frames.extend(engine.drain_outbox());
            events.extend(engine.drain_events());
        }
        node.queued.extend(node.steps.take());
        let now = self.now();
        let mut started: BTreeSet<Vec<u8>> = BTreeSet::new();
        for (to, bytes) in frames {
            let (domain, message) = NodeMessage::decode(&bytes).unwrap();
            if domain != S::DOMAIN {
                self.fail(format!("node {me} sent a frame for domain {domain:?}"));
            }
            match &message {
                // One launch sends the same Start to each peer.
                NodeMessage::Start(start) if started.insert(borsh::to_vec(&start.job).unwrap()) => {
                    self.check_launch(me, &start.job);
                }
                NodeMessage::StoredTriple(id) | NodeMessage::StoredPresignature(id)
                    if id.owner() != to =>
                {
                    self.fail(format!(
                        "node {me} acknowledged {id} to {}, not its owner",
                        to.0
                    ));
                }
                _ => {}
            }
            self.pending.push(Envelope {
                from: me,
                to: to.0,
                bytes,
                at: now,
            });
        }
        for event in events {
            self.on_event(i, event);
        }
    }

    /// A leader's new run: a record id is made by one run and used by one run.
    fn check_launch(&mut self, me: u32, job: &Job) {
        let (made, used): (Vec<RecordId>, Vec<RecordId>) = match job {
            Job::Triple { id } => (vec![*id], vec![]),
            Job::Presign { id, triples } => (vec![*id], triples.clone()),
            Job::Sign { presignature, .. } => (vec![], vec![*presignature]),
            Job::Keygen { .. } | Job::Reshare { .. } => return,
        };
        for id in made {
            if id.owner().0 != me {
                self.fail(format!("node {me} proposed {id}, owned by another"));
            }
            if let Some(earlier) = self.ledger.made_by.insert(id, job.clone()) {
                self.fail(format!(
                    "record id {id} made twice: {earlier:?} and {job:?}"
                ));
            }
        }
        for id in used {
            if let Some(earlier) = self.ledger.used_by.insert(id, job.clone()) {
                self.fail(format!("record {id} used twice: {earlier:?} and {job:?}"));
            }
        }
        self.note(format!("node {me} leads {}", job_text(job)));
    }

    fn on_event(&mut self, i: usize, event: Event) {
        let me = self.nodes[i].id;
        match event {
            Event::KeyShareStored {
                domain,
                epoch,
                attempt,
                public_key,
            } => {
                // A finished key task implies a stored share of that attempt.
                let store = self.nodes[i].store.as_ref().unwrap();
                let stored = store.key_share_at::<S::KeyShare>(domain, epoch).unwrap();
                match stored {
                    Some((a, share))
                        if a == attempt && S::public_key_text(&share) == public_key => {}
                    other => self.fail(format!(
                        "node {me} reported a share of epoch {epoch} attempt {attempt}, \
                         the store has attempt {:?}",
                        other.map(|(a, _)| a)
                    )),
                }
                self.note(format!("node {me} stored its share (attempt {attempt})"));
                let Some(event) = self.event.as_ref().filter(|e| e.attempt == attempt) else {
                    return; // a vote for an attempt that is over: the contract refuses it
                };
                if event
                    .old
                    .as_ref()
                    .is_some_and(|(_, _, old)| *old != public_key)
                {
                    self.fail(format!("resharing changed the key at node {me}"));
                }
                let event = self.event.as_mut().unwrap();
                event.votes.insert(me, public_key);
                self.settle_event();
            }
            Event::Failed { job, reason } => {
                self.note(format!("node {me} failed {}: {reason}", job_text(&job)));
                if job.attempt().is_some()
                    && self.event.as_ref().map(|e| e.attempt) == job.attempt()
                {
                    // vote_abort_key_event: any participant's report ends the attempt.
                    self.next_attempt_of_event(&format!("node {me} aborted"));
                }
            }
            Event::Signed {
                request_id,
                response,
                leader,
            } => self.on_signed(me, request_id, response, leader),
            Event::TripleStored(_) | Event::PresignatureStored(_) => {
                self.report.stock_stored += 1;
            }
        }
    }

    fn on_signed(
        &mut self,
        me: u32,
        request_id: RequestId,
        response: SignatureResponse,
        leader: bool,
    ) {
        let Some(request) = self.requests.get(&request_id) else {
            self.fail(format!("node {me} signed {request_id}, never requested"));
        };
        let running = self
            .running
            .as_ref()
            .expect("signatures need a running key");
        let p = &request.pending;
        if let Err(e) = S::verify(
            &running.public_key,
            &p.predecessor,
            &p.path,
            &p.payload,
            &response,
        ) {
            self.fail(format!(
                "node {me}'s signature for {request_id} does not verify: {e}"
            ));
        }
        if !leader {
            return;
        }
        // One leader per run: its nonce belongs to that run alone.
        let nonce = S::nonce(&response);
        let step = self.step as u64;
        if let Some((other, at)) = self.ledger.nonces.insert(nonce, (request_id, step)) {
            self.fail(format!(
                "nonce of node {me}'s signature for {request_id} repeats that of {other} (step {at})"
            ));
        }
        self.report.signatures += 1;
        self.note(format!("node {me} answered {request_id}"));
        self.requests.get_mut(&request_id).unwrap().answered = true;
        // `respond` landed: every node forgets the request.
        for node in &mut self.nodes {
            if let Some(signer) = &mut node.signer {
                signer.remove_request(&request_id);
            }
        }
    }

    /// The contract completes an attempt every new participant voted for, or
    /// rolls an expired one.
    fn settle_event(&mut self) {
        let Some(event) = &self.event else { return };
        if event.votes.len() == event.participants.len() {
            let keys: BTreeSet<&String> = event.votes.values().collect();
            if keys.len() != 1 {
                self.fail(format!(
                    "the shares of attempt {} give different keys: {keys:?}",
                    event.attempt
                ));
            }
            let public_key = keys.into_iter().next().unwrap().clone();
            // Every share of the completed event gives that key (as stored).
            for p in event.participants.iter() {
                if let Some(store) = &self.nodes[p.0 as usize].store {
                    let (a, share) = store
                        .key_share_at::<S::KeyShare>(S::DOMAIN, event.epoch)
                        .unwrap()
                        .expect("voted, so stored");
                    if a != event.attempt || S::public_key_text(&share) != public_key {
                        self.fail(format!("node {}'s stored share differs from its vote", p.0));
                    }
                }
            }
            let resharing = event.old.is_some();
            let running = RunningSet {
                epoch: event.epoch,
                participants: event.participants.clone(),
                threshold: event.threshold,
                attempt: event.attempt,
                public_key,
            };
            self.reshare_done |= resharing;
            self.complete(running);
        } else if self.now() - event.started > ATTEMPT_TIMEOUT.as_nanos() as u64 {
            self.next_attempt_of_event("attempt expired");
        }
    }

    /// The scenario's next phase once the current one completed.
    fn advance_scenario(&mut self) {
        if self.event.is_some() || self.running.is_none() {
            return;
        }
        if let (Some((set, threshold)), false) = (self.scenario.reshare.clone(), self.reshare_done)
        {
            let running = self.running.as_ref().unwrap();
            let old = (
                running.participants.clone(),
                running.threshold,
                running.public_key.clone(),
            );
            self.start_event(participants(&set), threshold, Some(old));
            return;
        }
        if !self.requests_issued {
            self.requests_issued = true;
            for k in 0..self.scenario.requests {
                let seed = (k % 250) as u8 + 1;
                let payload = S::payload(seed);
                let predecessor = "alice.near".to_string();
                let path = format!("sim-{k}");
                let request = SignRequest {
                    payload: payload.clone(),
                    path: path.clone(),
                    domain_id: S::DOMAIN,
                };
                let pending = PendingRequest {
                    request_id: RequestId::of(&predecessor, &request),
                    predecessor,
                    payload,
                    path,
                    domain_id: S::DOMAIN,
                    entropy: Entropy(self.rng.gen()),
                    block_height: 1,
                    waiting: 1,
                };
                for node in &mut self.nodes {
                    if let Some(signer) = &mut node.signer {
                        signer.add_request(&pending).unwrap();
                    }
                }
                let since = self.now();
                self.requests.insert(
                    pending.request_id,
                    Request {
                        pending,
                        since,
                        answered: false,
                    },
                );
            }
        }
    }

    /// Whether the scenario reached its end: every key event done, every request
    /// answered.
    pub fn finished(&self) -> bool {
        self.event.is_none()
            && self.running.is_some()
            && (self.scenario.reshare.is_none() || self.reshare_done)
            && self.requests_issued
            && self.requests.values().all(|r| r.answered)
    }

    fn up(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].store.is_some())
            .collect()
    }

    fn down(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].store.is_none())
            .collect()
    }

    fn key_run_under_way(&self) -> bool {
        self.nodes
            .iter()
            .filter_map(|n| n.keyer.as_ref())
            .any(|k| k.running() > 0)
    }

    /// One step of the schedule.
    fn step_once(&mut self) {
        self.step += 1;
        let faults = if self.calm {
            Faults::default()
        } else {
            self.scenario.faults
        };
        let deliverable = self.pending.iter().filter(|e| e.at <= self.now()).count();
        let crash_now = if faults.crash_mid_key {
            self.key_run_under_way() && self.down().is_empty()
        } else {
            self.down().is_empty()
        };
        // (weight, choice). The clock moves in small steps between deliveries, so
        // runs finish well within the timeout unless frames are lost or late; a
        // jump past the timeout is a rare stall, or what happens when the network
        // is idle (only timeouts can move things on then).
        let queued_steps: usize = self.nodes.iter().map(|n| n.queued.len()).sum();
        let ran_steps: usize = self.nodes.iter().map(|n| n.ran.len()).sum();
        let idle = deliverable == 0 && queued_steps == 0 && ran_steps == 0;
        let choices: [(u32, u8); 10] = [
            (if deliverable == 0 { 0 } else { 600 }, 0),
            (120, 1),
            (50, 2),
            (if idle { 100 } else { u32::from(!self.calm) }, 3),
            (
                if self.pending.is_empty() {
                    0
                } else {
                    faults.delay * 10
                },
                4,
            ),
            (if crash_now { faults.crash * 10 } else { 0 }, 5),
            (if self.down().is_empty() { 0 } else { 30 }, 6),
            (
                if self.running.is_some() {
                    faults.forged_ack * 10
                } else {
                    0
                },
                7,
            ),
            (if queued_steps == 0 { 0 } else { 300 }, 8),
            (if ran_steps == 0 { 0 } else { 300 }, 9),
        ];
        let total: u32 = choices.iter().map(|c| c.0).sum();
        let mut pick = self.rng.gen_range(0..total);
        let choice = choices
            .iter()
            .find(|(w, _)| {
                if pick < *w {
                    true
                } else {
                    pick -= w;
                    false
                }
            })
            .unwrap()
            .1;
        match choice {
            0 => self.deliver(faults),
            1 => {
                let up = self.up();
                let i = up[self.rng.gen_range(0..up.len())];
                self.act(i);
            }
            2 => {
                let by = self.rng.gen_range(1..10);
                self.advance_clock(Duration::from_millis(by));
            }
            3 => {
                let timeout = TIMEOUT.as_millis() as u64;
                let by = self.rng.gen_range(timeout / 2..timeout * 2);
                self.advance_clock(Duration::from_millis(by));
            }
            4 => {
                let k = self.rng.gen_range(0..self.pending.len());
                let delay = self.rng.gen_range(0..TIMEOUT.as_nanos() as u64);
                self.pending[k].at = self.now() + delay;
                self.note(format!(
                    "delay a frame {}→{}",
                    self.pending[k].from, self.pending[k].to
                ));
            }
            5 => {
                let up = self.up();
                let i = up[self.rng.gen_range(0..up.len())];
                self.crash(i);
            }
            6 => {
                let down = self.down();
                let i = down[self.rng.gen_range(0..down.len())];
                self.restart(i);
            }
            7 => self.forge_ack(),
            8 => self.run_step(queued_steps),
            9 => self.return_step(ran_steps),
            _ => unreachable!(),
        }
        self.settle_event();
        self.advance_scenario();
        self.check_invariants();
    }

    fn advance_clock(&mut self, by: Duration) {
        self.time.fetch_add(by.as_nanos() as u64, Ordering::SeqCst);
        self.note(format!("clock +{}ms", by.as_millis()));
    }

    /// Delivers a pending frame (any deliverable one: reordering), or drops or
    /// duplicates it.
    fn deliver(&mut self, faults: Faults) {
        let now = self.now();
        let ready: Vec<usize> = (0..self.pending.len())
            .filter(|k| self.pending[*k].at <= now)
            .collect();
        let k = ready[self.rng.gen_range(0..ready.len())];
        if self.rng.gen_bool(faults.drop) {
            let envelope = self.pending.remove(k);
            self.report.dropped += 1;
            self.note(format!("drop {}→{}", envelope.from, envelope.to));
            return;
        }
        let envelope = if self.rng.gen_bool(faults.duplicate) {
            self.report.duplicated += 1;
            let e = &self.pending[k];
            Envelope {
                from: e.from,
                to: e.to,
                bytes: e.bytes.clone(),
                at: e.at,
            }
        } else {
            self.pending.remove(k)
        };
        self.report.delivered += 1;
        let i = envelope.to as usize;
        let (_, message) = NodeMessage::decode(&envelope.bytes).unwrap();
        self.note(format!(
            "deliver {}→{} {}",
            envelope.from,
            envelope.to,
            message_text(&message)
        ));
        let node = &mut self.nodes[i];
        // As the daemon routes: key-event traffic to the key engine, the rest to
        // the signing engine; a frame for an engine not built here is lost.
        let engine = if message.is_key_event() {
            node.keyer.as_mut()
        } else {
            node.signer.as_mut()
        };
        let Some(engine) = engine else { return };
        if let Err(e) = engine.handle_message(ParticipantId(envelope.from), message) {
            self.note(format!("  refused: {e}"));
        }
        self.collect(i);
    }

    /// The `k`-th queued step of the world (over nodes in order) and its node.
    fn pick_step(&mut self, k: usize, of: fn(&SimNode<S>) -> usize) -> (usize, usize) {
        let mut k = k;
        for (i, node) in self.nodes.iter().enumerate() {
            if k < of(node) {
                return (i, k);
            }
            k -= of(node);
        }
        unreachable!("k is below the total")
    }

    /// A worker runs one of the queued steps (any node's, any of them): its
    /// cryptography, and the store write of a finished triple or presignature.
    fn run_step(&mut self, total: usize) {
        let pick = self.rng.gen_range(0..total);
        let (i, k) = self.pick_step(pick, |n| n.queued.len());
        let step = self.nodes[i].queued.remove(k);
        self.note(format!(
            "node {} runs a {} step",
            self.nodes[i].id,
            step.tag.kind.name()
        ));
        let done = step.run();
        self.report.steps_run += 1;
        self.nodes[i].ran.push(done);
    }

    /// The loop takes back one step that ran (any of them: completions come back
    /// in any order), as the daemon routes it: to the engine that sent it, or
    /// discarded if that engine is gone.
    fn return_step(&mut self, total: usize) {
        let pick = self.rng.gen_range(0..total);
        let (i, k) = self.pick_step(pick, |n| n.ran.len());
        let done = self.nodes[i].ran.remove(k);
        if k > 0 {
            self.report.steps_reordered += 1;
        }
        let me = self.nodes[i].id;
        self.note(format!(
            "node {me} takes back a {} step",
            done.tag.kind.name()
        ));
        let node = &mut self.nodes[i];
        let engine = [&mut node.keyer, &mut node.signer]
            .into_iter()
            .flatten()
            .find(|e| e.serial() == done.tag.engine);
        match engine {
            Some(engine) => {
                if !engine.step_done(done) {
                    self.report.steps_void += 1;
                }
            }
            None => {
                self.report.steps_void += 1;
                done.discard();
            }
        }
        self.collect(i);
    }

    /// The daemon's tick at node `i`.
    fn act(&mut self, i: usize) {
        let me = self.nodes[i].id;
        let now = self.instant();
        let up: Vec<u32> = self.up().into_iter().map(|i| self.nodes[i].id).collect();
        let live_now: BTreeSet<u32> = up.iter().copied().collect();
        let silent: Vec<ParticipantId> = self.nodes[i]
            .was_live
            .difference(&live_now)
            .map(|p| ParticipantId(*p))
            .collect();
        self.nodes[i].was_live = live_now;
        self.note(format!("node {me} acts"));
        if let Some(keyer) = &mut self.nodes[i].keyer {
            keyer.expire(now);
            let _ = keyer.propose_key_task();
        }
        let Ok(live) = Participants::new(up.iter().copied().map(ParticipantId)) else {
            self.collect(i);
            return;
        };
        // Requests this node leads now: its turn in a per-request order of the
        // live nodes has come (the daemon's leader order with grace).
        let sim_now = self.now();
        let mut lead = Vec::new();
        let holders: Vec<u32> = up
            .iter()
            .copied()
            .filter(|p| {
                self.running
                    .as_ref()
                    .is_some_and(|r| r.participants.contains(ParticipantId(*p)))
            })
            .collect();
        let my_place = holders.iter().position(|p| *p == me);
        for (id, request) in self.requests.iter().filter(|(_, r)| !r.answered) {
            let Some(place) = my_place else { break };
            let start = id.0[0] as usize % holders.len();
            let rank = (place + holders.len() - start) % holders.len();
            let turn = request.since + (LEADER_GRACE * rank as u32).as_nanos() as u64;
            let recent = self.nodes[i]
                .led
                .get(id)
                .is_some_and(|at| sim_now - at < TIMEOUT.as_nanos() as u64);
            if sim_now >= turn && !recent {
                lead.push(*id);
            }
        }
        if let Some(signer) = &mut self.nodes[i].signer {
            if !silent.is_empty() {
                signer.abandon_runs_with(&silent);
            }
            signer.expire(now);
            if signer.has_key() {
                if let Ok(stock) = signer.own_stock(&live) {
                    signer.top_up_stock(&live, stock, &TARGETS);
                }
                let mut led = Vec::new();
                for id in lead {
                    match signer.propose_sign(id, &live) {
                        Ok(Some(_)) => led.push(id),
                        Ok(None) => break,
                        Err(_) => {}
                    }
                }
                self.nodes[i]
                    .led
                    .extend(led.into_iter().map(|id| (id, sim_now)));
            }
        }
        self.collect(i);
    }

    /// The node loses its engines and the frames to and from it; its store stays.
    fn crash(&mut self, i: usize) {
        let me = self.nodes[i].id;
        if self.key_run_under_way() {
            self.report.crashes_mid_key += 1;
        }
        self.report.crashes += 1;
        self.note(format!("crash node {me}"));
        let node = &mut self.nodes[i];
        node.keyer = None;
        node.signer = None;
        node.led.clear();
        node.was_live.clear();
        // Steps on workers die with the process; what one stored stays stored.
        drop(node.steps.take());
        node.queued.clear();
        node.ran.clear();
        let store = node.store.take().unwrap();
        assert_eq!(
            Arc::strong_count(&store),
            1,
            "no engine keeps the store open"
        );
        drop(store);
        self.pending.retain(|e| e.from != me && e.to != me);
    }

    /// The node comes back from its store, as the daemon starts: a signing engine
    /// of the running set, a key engine of the current attempt (which reports a
    /// share it stored already, so its vote is repeated).
    fn restart(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.store = Some(Arc::new(Store::open(&node.path, &node.key).unwrap()));
        let me = node.id;
        self.note(format!("restart node {me}"));
        self.build_signer(i);
        self.build_keyer(i);
    }

    /// A peer acknowledges a record of another owner to a node: it must not count.
    fn forge_ack(&mut self) {
        let up = self.up();
        let i = up[self.rng.gen_range(0..up.len())];
        let me = self.nodes[i].id;
        let other =
            (me + 1 + self.rng.gen_range(0..self.nodes.len() as u32 - 1)) % self.nodes.len() as u32;
        let id = RecordId::new(ParticipantId(other), self.rng.gen_range(0..1 << 48));
        let message = if self.rng.gen_bool(0.5) {
            NodeMessage::StoredTriple(id)
        } else {
            NodeMessage::StoredPresignature(id)
        };
        self.report.forged_acks += 1;
        self.note(format!("forged ack to node {me} of {id}"));
        if let Some(signer) = &mut self.nodes[i].signer {
            let _ = signer.handle_message(ParticipantId(other), message);
        }
        self.collect(i);
    }

    /// The invariants, after every step.
    fn check_invariants(&mut self) {
        for i in 0..self.nodes.len() {
            let me = self.nodes[i].id;
            let Some(store) = self.nodes[i].store.clone() else {
                continue;
            };
            // Stock: an id stored at a node once is never stored there again.
            for kind in [S::TRIPLES, S::PRESIGNATURES] {
                let now: BTreeSet<RecordId> = store.record_ids(kind).unwrap().into_iter().collect();
                let key = (me, kind.name);
                let held = std::mem::replace(self.ledger.held.entry(key).or_default(), now.clone());
                let gone = self.ledger.gone.entry(key).or_default();
                let back: Vec<RecordId> = now.intersection(gone).copied().collect();
                gone.extend(held.difference(&now).copied());
                if !back.is_empty() {
                    self.fail(format!(
                        "node {me} stored {back:?} again after they were used"
                    ));
                }
            }
            for engine in [&self.nodes[i].keyer, &self.nodes[i].signer]
                .into_iter()
                .flatten()
            {
                // Acknowledgements only for own ids.
                if let Some(id) = engine
                    .acknowledged_ids()
                    .into_iter()
                    .find(|id| id.owner().0 != me)
                {
                    self.fail(format!(
                        "node {me} recorded an acknowledgement for {id}, not its own"
                    ));
                }
                // No key run without its task, and only the task's attempt.
                for job in engine.running_jobs() {
                    if let Some(attempt) = job.attempt() {
                        if engine.key_task().map(|t| t.attempt()) != Some(attempt) {
                            self.fail(format!("node {me} runs {job:?} without its key task"));
                        }
                    }
                }
            }
            // A stored share of the current attempt ⇔ the node's vote for it.
            if let Some(event) = &self.event {
                if event.participants.contains(ParticipantId(me)) {
                    let stored = store
                        .key_share_at::<S::KeyShare>(S::DOMAIN, event.epoch)
                        .unwrap()
                        .is_some_and(|(a, _)| a == event.attempt);
                    let voted = event.votes.contains_key(&me);
                    if stored != voted {
                        self.fail(format!(
                            "node {me}: share of attempt {} stored {stored}, voted {voted}",
                            event.attempt
                        ));
                    }
                }
            }
        }
    }

    /// Runs the faulty phase, then a fault-free tail in which the scenario must
    /// finish within `tail` steps.
    pub fn run(mut self) -> Report {
        for _ in 0..self.scenario.steps {
            if self.finished() {
                break;
            }
            self.step_once();
        }
        self.calm = true;
        self.note("faults stop".into());
        for i in self.down() {
            self.restart(i);
        }
        let calm_from = self.step;
        while !self.finished() {
            if self.step - calm_from >= self.scenario.tail {
                self.fail(format!(
                    "not finished {} steps after faults stopped (event: attempt {:?}, \
                     answered {}/{})",
                    self.scenario.tail,
                    self.event.as_ref().map(|e| (e.attempt, e.votes.len())),
                    self.requests.values().filter(|r| r.answered).count(),
                    self.requests.len(),
                ));
            }
            self.step_once();
        }
        if self.scenario.faults.crash_mid_key && self.report.crashes_mid_key == 0 {
            self.fail("no crash happened while a key run was under way".into());
        }
        self.report.steps = self.step;
        self.report.trace_digest = digest(&self.trace);
        self.report
    }
}

fn digest(trace: &[String]) -> u64 {
    use sha3::{Digest, Sha3_256};
    let mut hasher = Sha3_256::new();
    for line in trace {
        hasher.update(line.as_bytes());
        hasher.update(b"\n");
    }
    u64::from_be_bytes(hasher.finalize()[..8].try_into().unwrap())
}

fn job_text(job: &Job) -> String {
    match job {
        Job::Keygen { attempt, .. } => format!("keygen@{attempt}"),
        Job::Reshare { attempt, .. } => format!("reshare@{attempt}"),
        Job::Triple { id } => format!("triple {id}"),
        Job::Presign { id, .. } => format!("presign {id}"),
        Job::Sign { presignature, .. } => format!("sign with {presignature}"),
    }
}

fn message_text(message: &NodeMessage) -> String {
    match message {
        NodeMessage::Start(start) => format!("start {}", job_text(&start.job)),
        NodeMessage::Protocol(bytes) => match threshold::wire::Header::decode(bytes) {
            Ok((header, _)) => format!("protocol {:?}", header.kind),
            Err(_) => "protocol ?".into(),
        },
        NodeMessage::Ping => "ping".into(),
        NodeMessage::Decline { job, .. } => format!("decline {}", job_text(job)),
        NodeMessage::StoredTriple(id) => format!("stored triple {id}"),
        NodeMessage::StoredPresignature(id) => format!("stored presignature {id}"),
        NodeMessage::RetireTriple(id) => format!("retire triple {id}"),
        NodeMessage::RetirePresignature(id) => format!("retire presignature {id}"),
        NodeMessage::Leading(id) => format!("leading {}", hex::encode(&id[..4])),
        NodeMessage::Passing(id) => format!("passing {}", hex::encode(&id[..4])),
    }
}

/// The seeds to run: `SIM_SEED` alone (a replay), else `SIM_SEEDS` of them (a
/// handful by default), from `base` on.
pub fn seeds(base: u64, default: u64) -> Vec<u64> {
    if let Ok(seed) = std::env::var("SIM_SEED") {
        return vec![seed.trim().parse().expect("SIM_SEED is a number")];
    }
    let count = std::env::var("SIM_SEEDS")
        .map(|n| n.trim().parse().expect("SIM_SEEDS is a number"))
        .unwrap_or(default);
    (base..base + count).collect()
}

/// Runs `scenario` for every seed; prints a summary line.
pub fn run_seeds<S: Suite>(scenario: &Scenario, base: u64, default: u64) -> Vec<Report> {
    let started = Instant::now();
    let seeds = seeds(base, default);
    let reports: Vec<Report> = seeds
        .iter()
        .map(|seed| World::<S>::new(scenario.clone(), *seed).run())
        .collect();
    let sum = |f: fn(&Report) -> usize| reports.iter().map(f).sum::<usize>();
    eprintln!(
        "sim {} {}: {} seeds in {:.1?}: {} steps, {} delivered, {} dropped, {} duplicated, \
         {} crashes ({} mid-key), {} attempts, {} stock records, {} signatures, \
         {} protocol steps ({} returned out of order, {} void)",
        scenario.name,
        S::NAME,
        seeds.len(),
        started.elapsed(),
        sum(|r| r.steps),
        sum(|r| r.delivered),
        sum(|r| r.dropped),
        sum(|r| r.duplicated),
        sum(|r| r.crashes),
        sum(|r| r.crashes_mid_key),
        reports.iter().map(|r| r.attempts).sum::<u64>(),
        sum(|r| r.stock_stored),
        sum(|r| r.signatures),
        sum(|r| r.steps_run),
        sum(|r| r.steps_reordered),
        sum(|r| r.steps_void),
    );
    reports
}
