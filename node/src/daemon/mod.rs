//! The node's main loop: it follows the contract, keeps engines for the current
//! epoch and key event, feeds them peers' messages, stocks triples and
//! presignatures, leads the requests it should lead, and writes results back to
//! the chain.
//!
//! Tasks, all owned here and stopped on cancellation (nothing is detached):
//! - the *chain watcher* ([`watcher`]) reads the contract state and pending
//!   requests every poll interval and publishes them on a `watch` channel, so RPC
//!   latency never stalls the protocol loop;
//! - the *loop* below owns the engines and the network, and does everything else;
//! - *chain writes* ([`writes`]: votes, reports, responds) run in a `JoinSet` and
//!   report back to it;
//! - *protocol steps* (the cryptography) run on a pool of worker threads
//!   ([`steps`]), one per core, signing first; each comes back as an [`Event`].
//!
//! The loop is [`Daemon::next_event`], which only waits for the next [`Event`],
//! and [`Daemon::handle_event`], which only hands it to the part of [`Node`] that
//! owns it; [`Daemon::end_turn`] then does what every turn ends with. A new source
//! of work is a variant of [`Event`], an arm in each of the two.
//!
//! Where the rest lives: [`epoch`] (what a snapshot changes), [`engines`] (signing
//! and key engines per domain), [`votes`], [`requests`], [`leader`], [`stock`],
//! [`liveness`] (heartbeats, live peers, blame), [`inbox`] (peer messages in,
//! engines' outboxes out) and [`steps`] (the protocol-step workers).

mod config;
mod engines;
mod epoch;
mod inbox;
mod leader;
mod liveness;
mod requests;
mod steps;
mod stock;
mod votes;
mod watcher;
mod writes;

pub use config::NodeConfig;
pub use leader::leader_order;

use crate::blame::Blame;
use crate::chain::KeyEvent;
use crate::engine::{
    DomainEngine, Event as EngineEvent, NodeMessage, StepDone, StepRunner, WorkerPool,
};
use crate::p2p::{Incoming, Network, NetworkConfig, Peers};
use engines::{KeyerKey, Signer};
use inbox::Inbox;
use primitives::{DomainId, RequestId};
use requests::Tracked;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};
use threshold::{ParticipantId, Participants};
use tokio::sync::mpsc;
use tokio::task::JoinError;
use tokio::time::{Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use votes::OwedVote;
use watcher::{Snapshot, Watcher};
use writes::{WriteDone, Writes};

/// How often the loop probes its own lag (`Metrics::loop_lag`).
const LAG_PROBE: Duration = Duration::from_millis(100);

/// Peer messages taken off the network per loop turn.
const MAX_DRAIN: usize = 1024;
/// The least time between two turns that act because stock moved or a peer
/// passed a request on ([`Node::act_soon`]): peers' messages cannot make the node
/// act (read its stock, judge its runs) more than 100 times a second. A later
/// turn, at the latest the next lag probe, acts if it is still owed.
const MIN_ACT_SPACING: Duration = Duration::from_millis(10);

/// How long chain writes under way at shutdown may take to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Runs the node until `cancel` fires.
pub async fn run(config: NodeConfig, cancel: CancellationToken) -> std::io::Result<()> {
    let (pool, steps_done) = steps::start()?;
    let node = Node::new(config, pool.clone());
    // Checked before any task starts, so a bad value leaves nothing running.
    #[cfg(feature = "misbehave")]
    let node = Node {
        misbehave: crate::misbehave::Misbehave::from_env()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
        ..node
    };
    #[cfg(feature = "misbehave")]
    if let Some(m) = &node.misbehave {
        tracing::warn!(behaviour = ?m.behaviour(), "MISBEHAVING ON PURPOSE (test build)");
    }
    #[cfg(not(feature = "misbehave"))]
    if std::env::var_os("MPC_MISBEHAVE").is_some() {
        tracing::warn!("MPC_MISBEHAVE is ignored: this build has no misbehave feature");
    }
    let watcher = Watcher::spawn(
        node.config.chain.clone(),
        node.config.poll_interval,
        node.config.metrics.clone(),
        cancel.child_token(),
    );
    let mut heartbeat = tokio::time::interval(node.config.heartbeat);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // Skip, not Burst: after a stall, one late probe reports it, not a backlog of them.
    let mut lag_probe = tokio::time::interval(LAG_PROBE);
    lag_probe.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut daemon = Daemon {
        node,
        cancel,
        watcher,
        heartbeat,
        lag_probe,
        pool,
        steps_done,
        network: None,
        act: false,
        acted_at: Instant::now(),
    };
    let result = daemon.main_loop().await;
    daemon.shutdown().await;
    result
}

/// One thing the loop reacts to.
enum Event {
    /// Shutdown was asked for.
    Cancelled,
    /// The chain watcher stopped: only at shutdown (or if its task panicked,
    /// which [`Watcher::stopped`] reports).
    WatcherStopped,
    /// The watcher published a new read of the contract.
    Snapshot(Option<Arc<Snapshot>>),
    /// Time to send heartbeats (and, at the end of the turn, to act).
    Heartbeat,
    /// A frame from a peer.
    Frame(Incoming),
    /// The lag probe's tick, with when it was due.
    LagProbe(tokio::time::Instant),
    /// Bulk messages are waiting: a turn that moves one (at its end), taken
    /// between the other events.
    Backlog,
    /// A chain write ended (or its task panicked).
    WriteDone(Result<WriteDone, JoinError>),
    /// A protocol step came back from the worker pool.
    StepDone(StepDone),
}

/// The p2p network and the frames it delivers.
struct Link {
    network: Network,
    incoming: mpsc::UnboundedReceiver<Incoming>,
}

/// The loop: the node's state and everything it waits on.
struct Daemon {
    node: Node,
    cancel: CancellationToken,
    watcher: Watcher,
    heartbeat: Interval,
    lag_probe: Interval,
    /// The worker threads that run protocol steps, and where their results come back.
    pool: Arc<WorkerPool>,
    steps_done: mpsc::UnboundedReceiver<StepDone>,
    /// Started once this node finds itself in a participant set.
    network: Option<Link>,
    /// Whether this turn ends with [`Node::act`] (after a snapshot or heartbeat).
    act: bool,
    /// When [`Node::act`] last ran.
    acted_at: Instant,
}

impl Daemon {
    async fn main_loop(&mut self) -> std::io::Result<()> {
        loop {
            let event = self.next_event().await;
            if self.handle_event(event).await?.is_break() {
                return Ok(());
            }
            self.end_turn();
        }
    }

    /// Waits for the next event; handles nothing.
    async fn next_event(&mut self) -> Event {
        let incoming = async {
            match self.network.as_mut() {
                Some(link) => link.incoming.recv().await,
                None => std::future::pending().await,
            }
        };
        let has_backlog = self.node.inbox.has_backlog();
        let writing = !self.node.writes.is_empty();
        tokio::select! {
            _ = self.cancel.cancelled() => Event::Cancelled,
            changed = self.watcher.snapshots.changed() => match changed {
                Ok(()) => Event::Snapshot(self.watcher.snapshots.borrow_and_update().clone()),
                Err(_) => Event::WatcherStopped,
            },
            _ = self.heartbeat.tick() => Event::Heartbeat,
            Some(message) = incoming => Event::Frame(message),
            due = self.lag_probe.tick() => Event::LagProbe(due),
            _ = std::future::ready(()), if has_backlog => Event::Backlog,
            Some(done) = self.node.writes.next_done(), if writing => Event::WriteDone(done),
            Some(done) = self.steps_done.recv() => Event::StepDone(done),
        }
    }

    /// Hands an event to the part of the node that owns it. `Break` stops the loop.
    async fn handle_event(&mut self, event: Event) -> std::io::Result<ControlFlow<()>> {
        match event {
            Event::Cancelled | Event::WatcherStopped => return Ok(ControlFlow::Break(())),
            Event::Snapshot(snapshot) => {
                if let Some(snapshot) = snapshot {
                    self.node.on_snapshot(&snapshot);
                }
                self.start_network().await?;
                self.act = true;
            }
            Event::Heartbeat => {
                if let Some(link) = self.network.as_ref() {
                    self.node.send_heartbeats(&link.network);
                    #[cfg(feature = "misbehave")]
                    self.node.start_flood(&self.cancel);
                }
                self.act = true;
            }
            Event::Frame(message) => self.node.on_message(message),
            Event::LagProbe(due) => self.node.config.metrics.loop_lag.observe(due.elapsed()),
            Event::Backlog => {}
            Event::WriteDone(Ok(done)) => self.node.on_write_done(done),
            Event::WriteDone(Err(e)) => {
                tracing::error!(error = %e, "a chain write task panicked")
            }
            Event::StepDone(done) => self.node.on_step_done(done, &self.pool),
        }
        Ok(ControlFlow::Continue(()))
    }

    /// What every turn ends with, whatever its event.
    fn end_turn(&mut self) {
        let node = &mut self.node;
        // Everything that arrived meanwhile: urgent messages are handled now, bulk
        // generation traffic joins the backlog, which moves one message per turn.
        if let Some(link) = self.network.as_mut() {
            for _ in 0..MAX_DRAIN {
                let Ok(message) = link.incoming.try_recv() else {
                    break;
                };
                node.on_message(message);
            }
        }
        if let Some(link) = self.network.as_ref() {
            node.enforce_budgets(&link.network);
        }
        node.work_backlog();
        node.on_events();
        // Liveness is judged only after taking in what arrived: a long turn must
        // not make queued heartbeats look like silence.
        let now = Instant::now();
        let soon = node.act_soon && now.duration_since(self.acted_at) >= MIN_ACT_SPACING;
        if std::mem::take(&mut self.act) || soon {
            node.act_soon = false;
            node.act(now);
            self.acted_at = now;
        }
        if node.take_awaiting_chain() {
            // A leader saw a request before us: read the chain now, not at the tick.
            self.watcher.poll_now.notify_one();
        }
        if let Some(link) = self.network.as_ref() {
            node.send_outboxes(&link.network);
        }
    }

    /// Starts the network once this node knows its participant id.
    async fn start_network(&mut self) -> std::io::Result<()> {
        let Some(me) = self.node.me.filter(|_| self.network.is_none()) else {
            return Ok(());
        };
        let config = self.node.network_config(me);
        let (network, incoming) = Network::start(config, self.node.peers.clone()).await?;
        self.node
            .config
            .metrics
            .set_network(network.stats().clone());
        tracing::info!(me = me.0, listen = %network.local_addr(), "p2p network up");
        self.network = Some(Link { network, incoming });
        Ok(())
    }

    /// Graceful stop: let in-flight chain writes finish (a respond already signed
    /// should land), then stop the network and the watcher.
    async fn shutdown(self) {
        let Daemon {
            mut node,
            cancel,
            watcher,
            network,
            pool,
            mut steps_done,
            ..
        } = self;
        cancel.cancel();
        // No new protocol work: steps running now finish, queued ones never run.
        pool.stop();
        let drain = async {
            while let Some(done) = node.writes.next_done().await {
                match done {
                    Ok(done) => node.on_write_done(done),
                    Err(e) => tracing::error!(error = %e, "a chain write task panicked"),
                }
            }
        };
        if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
            tracing::warn!("chain writes still running at shutdown were abandoned");
            node.writes.abandon().await;
        }
        if let Some(link) = network {
            link.network.shutdown().await;
        }
        watcher.stopped().await;
        // The engines hold the pool too: dropping them with it joins the worker
        // threads (off the runtime's threads: a step may still be finishing).
        // Then steps that came back unseen retire what they stored, so a restart
        // never finds a record nobody confirmed.
        let joined = tokio::task::spawn_blocking(move || drop((node, pool))).await;
        if let Err(e) = joined {
            tracing::error!(error = %e, "stopping the step workers failed");
        }
        while let Ok(done) = steps_done.try_recv() {
            done.discard();
        }
    }
}

/// The node's state. Each concern's file has the `impl Node` block that keeps
/// its part.
struct Node {
    config: NodeConfig,
    /// Where the engines' protocol steps run (the worker pool).
    steps: Arc<dyn StepRunner>,
    peers: Peers,
    me: Option<ParticipantId>,
    /// Everyone this node talks to: the running set and the key event's.
    everyone: Vec<ParticipantId>,

    // The epoch and its engines (`epoch`, `engines`).
    /// The running participants, if a set is running.
    running_set: Option<Participants>,
    /// The running set's threshold.
    running_threshold: usize,
    /// Sign for the running set, one per domain with a key (whatever key event
    /// is under way).
    signers: BTreeMap<DomainId, Signer>,
    /// Run the key event's current attempt, one per domain it covers, if this
    /// node takes part in it.
    keyers: BTreeMap<DomainId, Box<dyn DomainEngine>>,
    keyer_key: Option<KeyerKey>,
    /// The running epoch whose past shares were last deleted (once per epoch).
    shares_pruned_for: Option<u64>,

    // The key event's outcome (`votes`).
    /// The key event as last read, for votes and reports.
    key_event: Option<KeyEvent>,
    /// Domains whose share of the current attempt is stored here, with its
    /// public key.
    keys_stored: BTreeMap<DomainId, String>,
    owed_vote: Option<OwedVote>,
    vote_in_flight: bool,
    /// Attempts this node already reported failed.
    aborted: BTreeSet<u64>,

    // Requests and answers (`requests`, `leader`, `writes`).
    requests: BTreeMap<RequestId, Tracked>,
    /// Requests gone from the chain's list lately, with when (`requests`).
    vanished: BTreeMap<RequestId, (Instant, Tracked)>,
    /// Peers' answers to requests this node has not seen yet (`requests`).
    early_answers: requests::EarlyAnswers,
    /// Peers' words that they lead a request or passed it on (`leader`).
    heard_of: leader::WordsHeard,
    /// Words of leading and passing this node has for every peer this turn.
    announce: Vec<(DomainId, NodeMessage)>,
    /// Act at the end of this turn rather than at the next heartbeat: stock was
    /// made, confirmed or lost (a generation slot is free, a request may be led),
    /// or a peer passed a request on.
    act_soon: bool,
    writes: Writes,

    // Peers (`liveness`, `inbox`).
    last_heard: HashMap<ParticipantId, Instant>,
    /// Peers live at the last check, to notice who went silent.
    was_live: BTreeSet<ParticipantId>,
    /// Peers whose runs keep failing, left out of new runs for a while.
    blame: Blame,
    inbox: Inbox,
    /// A test build's misbehaviour, if `MPC_MISBEHAVE` names one.
    #[cfg(feature = "misbehave")]
    misbehave: Option<crate::misbehave::Misbehave>,
    /// Whether the `flood` misbehaviour's connection was started.
    #[cfg(feature = "misbehave")]
    flood_started: bool,
}

impl Node {
    fn new(config: NodeConfig, steps: Arc<dyn StepRunner>) -> Self {
        Node {
            writes: Writes::new(config.chain.clone()),
            config,
            steps,
            peers: Peers::default(),
            me: None,
            everyone: Vec::new(),
            running_set: None,
            running_threshold: 0,
            signers: BTreeMap::new(),
            keyers: BTreeMap::new(),
            keyer_key: None,
            shares_pruned_for: None,
            key_event: None,
            keys_stored: BTreeMap::new(),
            owed_vote: None,
            vote_in_flight: false,
            aborted: BTreeSet::new(),
            requests: BTreeMap::new(),
            vanished: BTreeMap::new(),
            early_answers: requests::EarlyAnswers::default(),
            heard_of: leader::WordsHeard::default(),
            announce: Vec::new(),
            act_soon: false,
            last_heard: HashMap::new(),
            was_live: BTreeSet::new(),
            blame: Blame::default(),
            inbox: Inbox::default(),
            #[cfg(feature = "misbehave")]
            misbehave: None,
            #[cfg(feature = "misbehave")]
            flood_started: false,
        }
    }

    fn network_config(&self, me: ParticipantId) -> NetworkConfig {
        let mut config = NetworkConfig::new(
            me,
            self.config.listen,
            self.config.p2p_key.clone(),
            &self.config.network_name,
        );
        config.peer_budget = self.config.peer_budget;
        config
    }

    /// Everything the node does on its own initiative: notice silent peers,
    /// expire runs, run the key tasks, top up stock, lead requests.
    fn act(&mut self, now: Instant) {
        self.expire_unrouted(now);
        let silent = self.notice_silent(now);
        self.run_key_tasks(now);
        let Some(running) = self.running_set.clone() else {
            return;
        };
        let Some(live) = self.live_of(&running, now) else {
            return;
        };
        // Runs already under way with an excluded peer go on (or time out); new
        // stock, signatures and leads leave it out.
        let eligible = self.eligible(&live, now);
        let stocks = self.tend_signers(&silent, &eligible, now);
        self.report_stock(&stocks);
        self.report_blame(now);
        self.lead(&eligible, now);
    }

    /// Takes in what the engines report: blame, key-event outcomes, signatures
    /// (whose `respond` goes out here) and finished or failed runs.
    fn on_events(&mut self) {
        self.take_peer_reports();
        let key_events: Vec<EngineEvent> = self
            .keyers
            .values_mut()
            .flat_map(|keyer| keyer.drain_events())
            .collect();
        for event in key_events {
            self.on_key_event(event);
        }
        self.deliver_answers();
        self.on_signer_events();
    }

    /// Whether a signing engine was invited to sign a request it has not seen on
    /// the chain yet (asked of every engine, which resets it).
    fn take_awaiting_chain(&mut self) -> bool {
        self.signers
            .values_mut()
            .fold(false, |any, s| s.engine.take_awaiting_chain() | any)
    }
}
