//! The node's main loop: it follows the contract, keeps an [`Engine`] for the
//! current epoch, feeds it peers' messages, stocks triples and presignatures, leads
//! the requests it should lead, and writes results back to the chain.
//!
//! Tasks, all owned here and stopped on cancellation (nothing is detached):
//! - the *chain watcher* reads the contract state and pending requests every poll
//!   interval and publishes them on a `watch` channel, so RPC latency never stalls
//!   the protocol loop;
//! - the *loop* below owns the engine and the network, and does everything else;
//! - *chain writes* (votes, responds) run in a [`JoinSet`] and report back to it.
//!
//! Liveness: every node sends a heartbeat to every peer; a peer heard from within
//! [`NodeConfig::live_window`] is live. New triples are made in pairs among a
//! rotating subset of exactly the threshold of live participants (or all of them,
//! see [`NodeConfig::stock_subset`]), a presignature among the live holders of two
//! triples, a signature among the threshold of live holders of a presignature
//! (with subsets: all of them), and runs with a peer that goes silent are abandoned at once
//! instead of at the protocol timeout.
//!
//! Leading: every node ranks the participants for each request by
//! [`leader_order`]. The first *live* one leads at once; the k-th live one also
//! leads once the request has waited `k ×` [`NodeConfig::leader_grace`], which
//! replaces a leader that is up but failing. A second answer is refused by the
//! contract, so at worst a fallback costs one wasted presignature.

mod config;
mod engines;
mod epoch;
mod inbox;
mod leader;
mod liveness;
mod requests;
mod stock;
mod votes;
mod watcher;
mod writes;

pub use config::NodeConfig;
pub use leader::leader_order;

use crate::blame::Blame;
use crate::chain::KeyEvent;
use crate::engine::{owner, DomainEngine, Event, Job, NodeMessage, StockTargets};
use crate::metrics::Metrics;
use crate::p2p::{Incoming, Network, NetworkConfig, Peers};
use engines::{KeyerKey, Signer};
use primitives::{DomainId, RequestId};
use requests::Tracked;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use threshold::{ParticipantId, Participants};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use votes::OwedVote;
use watcher::Watcher;
use writes::{Answer, WriteDone};

/// How often the loop probes its own lag (`Metrics::loop_lag`).
const LAG_PROBE: Duration = Duration::from_millis(100);

/// Peer messages taken off the network per loop turn.
const MAX_DRAIN: usize = 1024;

/// Runs the node until `cancel` fires.
pub async fn run(config: NodeConfig, cancel: CancellationToken) -> std::io::Result<()> {
    let mut watcher = Watcher::spawn(
        config.chain.clone(),
        config.poll_interval,
        config.metrics.clone(),
        cancel.child_token(),
    );
    let mut heartbeat = tokio::time::interval(config.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Skip, not Burst: after a stall, one late probe reports it, not a backlog of them.
    let mut lag_probe = tokio::time::interval(LAG_PROBE);
    lag_probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut node = Node::new(config);
    #[cfg(feature = "misbehave")]
    {
        node.misbehave = crate::misbehave::Misbehave::from_env()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        if let Some(m) = &node.misbehave {
            tracing::warn!(behaviour = ?m.behaviour(), "MISBEHAVING ON PURPOSE (test build)");
        }
    }
    #[cfg(not(feature = "misbehave"))]
    if std::env::var_os("MPC_MISBEHAVE").is_some() {
        tracing::warn!("MPC_MISBEHAVE is ignored: this build has no misbehave feature");
    }
    let mut writes: JoinSet<WriteDone> = JoinSet::new();
    let mut network: Option<(Network, mpsc::Receiver<Incoming>)> = None;
    let mut act = false;
    let result = loop {
        let incoming = async {
            match network.as_mut() {
                Some((_, rx)) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => break Ok(()),
            changed = watcher.snapshots.changed() => {
                if changed.is_err() {
                    break Ok(()); // the watcher stopped: we are shutting down
                }
                let snapshot = watcher.snapshots.borrow_and_update().clone();
                if let Some(snapshot) = snapshot {
                    node.on_snapshot(&snapshot, &mut writes);
                }
                if network.is_none() {
                    if let Some(me) = node.me {
                        let config = node.network_config(me);
                        let peers = node.peers.clone();
                        match start_network(config, peers, &node.config.metrics).await {
                            Ok(started) => network = Some(started),
                            Err(e) => break Err(e),
                        }
                    }
                }
                act = true;
            }
            _ = heartbeat.tick() => {
                if let Some((net, _)) = network.as_ref() {
                    node.send_heartbeats(net);
                }
                act = true;
            }
            Some(message) = incoming => node.on_message(message),
            due = lag_probe.tick() => node.config.metrics.loop_lag.observe(due.elapsed()),
            // Bulk messages waiting: take one per turn (below), between the rest.
            _ = std::future::ready(()), if !node.backlog.is_empty() => {}
            Some(done) = writes.join_next(), if !writes.is_empty() => match done {
                Ok(done) => node.on_write_done(done),
                Err(e) => tracing::error!(error = %e, "a chain write task panicked"),
            },
        }
        // Everything that arrived meanwhile: urgent messages are handled now, bulk
        // generation traffic joins the backlog, which moves one message per turn.
        if let Some((_, rx)) = network.as_mut() {
            for _ in 0..MAX_DRAIN {
                let Ok(message) = rx.try_recv() else { break };
                node.on_message(message);
            }
        }
        // Liveness is judged only after taking in what arrived: a long turn must
        // not make queued heartbeats look like silence.
        if std::mem::take(&mut act) {
            node.act(Instant::now());
        }
        node.work_backlog();
        let awaiting_chain = node
            .signers
            .values_mut()
            .fold(false, |any, s| s.engine.take_awaiting_chain() | any);
        if awaiting_chain {
            // A leader saw a request before us: read the chain now, not at the tick.
            watcher.poll_now.notify_one();
        }
        if let Some((net, _)) = network.as_ref() {
            let signers = node.signers.values_mut().map(|s| &mut s.engine);
            let frames: Vec<(ParticipantId, Vec<u8>)> = signers
                .chain(node.keyers.values_mut())
                .flat_map(|engine| engine.drain_outbox())
                .collect();
            // The one place frames leave the node.
            #[cfg(feature = "misbehave")]
            let frames = match node.misbehave.as_mut() {
                Some(m) => m.outgoing(frames),
                None => frames,
            };
            for (to, bytes) in frames {
                if let Err(e) = net.send(to, Arc::new(bytes)) {
                    tracing::debug!(peer = to.0, error = %e, "could not queue a message");
                }
            }
        }
        node.on_events(&mut writes);
    };
    // Graceful stop: let in-flight chain writes finish (a respond already signed
    // should land), then stop the network and the watcher.
    cancel.cancel();
    let drain = async {
        while let Some(done) = writes.join_next().await {
            if let Ok(done) = done {
                node.on_write_done(done);
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(10), drain)
        .await
        .is_err()
    {
        tracing::warn!("chain writes still running at shutdown were abandoned");
        writes.shutdown().await;
    }
    if let Some((net, _)) = network {
        net.shutdown().await;
    }
    watcher.stopped().await;
    result
}

async fn start_network(
    config: NetworkConfig,
    peers: Peers,
    metrics: &Metrics,
) -> std::io::Result<(Network, mpsc::Receiver<Incoming>)> {
    let me = config.me;
    let started = Network::start(config, peers).await?;
    metrics.set_network(started.0.stats().clone());
    tracing::info!(me = me.0, listen = %started.0.local_addr(), "p2p network up");
    Ok(started)
}

struct Node {
    config: NodeConfig,
    peers: Peers,
    /// Sign for the running set, one per domain with a key (whatever key event
    /// is under way).
    signers: BTreeMap<DomainId, Signer>,
    /// Run the key event's current attempt, one per domain it covers, if this
    /// node takes part in it.
    keyers: BTreeMap<DomainId, Box<dyn DomainEngine>>,
    keyer_key: Option<KeyerKey>,
    /// The running epoch whose past shares were last deleted (once per epoch).
    shares_pruned_for: Option<u64>,
    /// Domains whose share of the current attempt is stored here.
    keys_stored: BTreeMap<DomainId, String>,
    /// The key event as last read, for votes and reports.
    key_event: Option<KeyEvent>,
    owed_vote: Option<OwedVote>,
    vote_in_flight: bool,
    /// Attempts this node already reported failed.
    aborted: BTreeSet<u64>,
    /// Messages that came before this node had an engine for them (it saw the
    /// key event or the domain's key later than the sender), with when they came;
    /// tried again whenever engines are rebuilt, dropped after the protocol timeout.
    unrouted: VecDeque<(Instant, ParticipantId, DomainId, NodeMessage)>,
    /// The running participants, if a set is running.
    running_set: Option<Participants>,
    /// The running set's threshold.
    running_threshold: usize,
    /// Peers whose runs keep failing, left out of new runs for a while.
    blame: Blame,
    /// Everyone this node talks to: the running set and the key event's.
    everyone: Vec<ParticipantId>,
    requests: BTreeMap<RequestId, Tracked>,
    me: Option<ParticipantId>,
    last_heard: HashMap<ParticipantId, Instant>,
    /// Peers live at the last check, to notice who went silent.
    was_live: BTreeSet<ParticipantId>,
    /// Bulk peer messages (stock generation) not handled yet.
    backlog: VecDeque<(ParticipantId, DomainId, NodeMessage)>,
    /// A test build's misbehaviour, if `MPC_MISBEHAVE` names one.
    #[cfg(feature = "misbehave")]
    misbehave: Option<crate::misbehave::Misbehave>,
}

impl Node {
    fn new(config: NodeConfig) -> Self {
        Node {
            config,
            peers: Peers::default(),
            signers: BTreeMap::new(),
            keyers: BTreeMap::new(),
            keyer_key: None,
            shares_pruned_for: None,
            keys_stored: BTreeMap::new(),
            key_event: None,
            owed_vote: None,
            vote_in_flight: false,
            aborted: BTreeSet::new(),
            unrouted: VecDeque::new(),
            running_set: None,
            running_threshold: 0,
            blame: Blame::default(),
            everyone: Vec::new(),
            requests: BTreeMap::new(),
            me: None,
            last_heard: HashMap::new(),
            was_live: BTreeSet::new(),
            backlog: VecDeque::new(),
            #[cfg(feature = "misbehave")]
            misbehave: None,
        }
    }

    fn network_config(&self, me: ParticipantId) -> NetworkConfig {
        NetworkConfig::new(
            me,
            self.config.listen,
            self.config.p2p_key.clone(),
            &self.config.network_name,
        )
    }

    /// Everything the node does on its own initiative: notice silent peers,
    /// expire runs, run the key tasks, top up stock, lead requests.
    fn act(&mut self, now: Instant) {
        let everyone = Participants::new(self.everyone.iter().copied()).ok();
        let live_now: BTreeSet<ParticipantId> = everyone
            .iter()
            .flat_map(|set| set.iter())
            .filter(|p| self.is_live(*p, now))
            .collect();
        let silent: Vec<ParticipantId> = self.was_live.difference(&live_now).copied().collect();
        for peer in &silent {
            tracing::warn!(peer = peer.0, "peer went silent; abandoning its runs");
        }
        for peer in live_now.difference(&self.was_live) {
            if Some(*peer) != self.me {
                tracing::info!(peer = peer.0, "peer is live");
            }
        }
        self.was_live = live_now;
        for keyer in self.keyers.values_mut() {
            keyer.expire(now);
            // Every participant proposes; the engine makes it one run.
            if let Err(e) = keyer.propose_key_task() {
                tracing::debug!(error = %e, "cannot take part in the key task");
            }
        }
        let Some(running) = self.running_set.clone() else {
            return;
        };
        let Some(live) = self.live_of(&running, now) else {
            return;
        };
        // Runs already under way with an excluded peer go on (or time out); new
        // stock, signatures and leads leave it out.
        let eligible = self.eligible(&live, now);
        let targets = StockTargets {
            triples: self.config.triple_target,
            presignatures: self.config.presignature_target,
            max_concurrent: self.config.max_concurrent_generations,
        };
        let mut stocks = BTreeMap::new();
        for (domain, signer) in self.signers.iter_mut() {
            let engine = &mut signer.engine;
            if !silent.is_empty() {
                engine.abandon_runs_with(&silent);
            }
            engine.expire(now);
            if !engine.has_key() {
                continue;
            }
            let stock = match engine.own_stock(&eligible) {
                Ok(stock) => stock,
                Err(e) => {
                    tracing::error!(domain = domain.0, error = %e, "cannot read the stock");
                    continue;
                }
            };
            engine.top_up_stock(&eligible, stock, &targets);
            stocks.insert(*domain, stock);
        }
        self.report_stock(&stocks);
        self.report_blame(now);
        self.lead(&eligible, now);
    }

    fn on_events(&mut self, writes: &mut JoinSet<WriteDone>) {
        self.take_peer_reports();
        let key_events: Vec<Event> = self
            .keyers
            .values_mut()
            .flat_map(|keyer| keyer.drain_events())
            .collect();
        for event in key_events {
            self.on_key_event(event, writes);
        }
        self.deliver_answers(writes);
        let metrics = &self.config.metrics;
        for signer in self.signers.values_mut() {
            let me = signer.engine.me();
            for event in signer.engine.drain_events() {
                match event {
                    Event::Signed {
                        request_id,
                        response,
                        leader: true,
                    } => {
                        let Some(tracked) = self.requests.get_mut(&request_id) else {
                            continue; // answered meanwhile
                        };
                        if tracked.answer.is_none() {
                            tracing::debug!(request = %request_id, since_seen_ms = tracked.first_seen.elapsed().as_millis() as u64, "signed; responding");
                            tracked.answer = Some(Answer {
                                response,
                                sends: 0,
                                next_send: Instant::now(),
                                in_flight: false,
                            });
                        }
                    }
                    Event::Signed { .. } | Event::KeyShareStored { .. } => {}
                    Event::TripleStored(_) => metrics.triples_generated.inc(),
                    Event::PresignatureStored(_) => metrics.presignatures_generated.inc(),
                    Event::Failed { job, reason } => {
                        metrics.protocol_failures.inc();
                        tracing::info!(?job, %reason, "a protocol run ended without output");
                        if let Job::Sign {
                            request_id,
                            presignature,
                        } = job
                        {
                            // Our own failed lead may be retried at once (with another
                            // presignature; this one is spent).
                            if owner(presignature) == me {
                                if let Some(tracked) = self.requests.get_mut(&RequestId(request_id))
                                {
                                    tracked.led_at = None;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
