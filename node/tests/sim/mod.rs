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

mod chain;
mod invariants;
mod schedule;
mod trace;

use chain::{KeyEvent, Request, RunningSet};
use invariants::Ledger;
use schedule::Envelope;
use trace::{digest, job_text, message_text};

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
