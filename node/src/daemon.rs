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
//! [`NodeConfig::live_window`] is live. New triples and presignatures are made among
//! live participants, a signature among the threshold of live holders of a
//! presignature, and runs with a peer that goes silent are abandoned at once
//! instead of at the protocol timeout.
//!
//! Leading: every node ranks the participants for each request by
//! [`leader_order`]. The first *live* one leads at once; the k-th live one also
//! leads once the request has waited `k ×` [`NodeConfig::leader_grace`], which
//! replaces a leader that is up but failing. A second answer is refused by the
//! contract, so at worst a fallback costs one wasted presignature.

use crate::chain::{Chain, ContractState, ParticipantSet};
use crate::engine::{owner, Engine, Event, Job, KeyTask, NodeMessage};
use crate::metrics::{Metrics, PeerStatus, Stock};
use crate::p2p::noise::StaticKey;
use crate::p2p::{Incoming, Network, NetworkConfig, PeerInfo, Peers};
use crate::storage::Store;
use near_primitives::types::AccountId;
use primitives::derivation::Tweak;
use primitives::{near_key, PendingRequest, RequestId};
use sha3::{Digest, Sha3_256};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use threshold::{ParticipantId, Participants, SignTask};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Peer messages taken off the network per loop turn.
const MAX_DRAIN: usize = 1024;
/// Bulk messages held at most; beyond it generation runs lose messages and time out.
const MAX_BACKLOG: usize = 1 << 16;

/// What a node needs to run. [`NodeConfig::new`] fills in the defaults.
pub struct NodeConfig {
    pub account: AccountId,
    pub chain: Arc<Chain>,
    pub store: Arc<Store>,
    pub p2p_key: StaticKey,
    pub listen: SocketAddr,
    /// Names the network in p2p handshakes (the contract account).
    pub network_name: String,
    /// How often the contract is read.
    pub poll_interval: Duration,
    /// Triples and presignatures this node keeps in stock (of its own).
    pub triple_target: usize,
    pub presignature_target: usize,
    /// Generation runs (triples, presignatures) this node leads at once.
    pub max_concurrent_generations: usize,
    /// How long a protocol run may take before it is abandoned.
    pub protocol_timeout: Duration,
    /// How often heartbeats go to every peer.
    pub heartbeat: Duration,
    /// A peer not heard from for this long is treated as down.
    pub live_window: Duration,
    /// How long the k-th live node in a request's leader order waits (times k)
    /// before it leads the request too.
    pub leader_grace: Duration,
    pub metrics: Arc<Metrics>,
}

impl NodeConfig {
    pub fn new(
        account: AccountId,
        chain: Arc<Chain>,
        store: Arc<Store>,
        p2p_key: StaticKey,
        listen: SocketAddr,
        network_name: &str,
    ) -> Self {
        let metrics = Metrics::new(account.as_str());
        NodeConfig {
            account,
            chain,
            store,
            p2p_key,
            listen,
            network_name: network_name.to_string(),
            poll_interval: Duration::from_millis(200),
            triple_target: 8,
            presignature_target: 4,
            max_concurrent_generations: 4,
            protocol_timeout: Duration::from_secs(60),
            heartbeat: Duration::from_millis(250),
            live_window: Duration::from_millis(1500),
            leader_grace: Duration::from_secs(3),
            metrics,
        }
    }
}

/// The epoch an engine was built for; a change rebuilds the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
struct EngineKey {
    epoch: u64,
    participants: Vec<u32>,
    threshold: usize,
    task: Option<KeyTask>,
}

/// The deterministic leader order of a request: participants sorted by a hash of
/// the request id and their id. Every node computes the same order.
pub fn leader_order(request_id: &RequestId, participants: &Participants) -> Vec<ParticipantId> {
    let mut order: Vec<(ParticipantId, [u8; 32])> = participants
        .iter()
        .map(|p| {
            let mut hasher = Sha3_256::new();
            hasher.update(b"chain-signatures leader v1:");
            hasher.update(request_id.0);
            hasher.update(p.0.to_be_bytes());
            (p, hasher.finalize().into())
        })
        .collect();
    order.sort_by_key(|(_, rank)| *rank);
    order.into_iter().map(|(p, _)| p).collect()
}

fn to_participants(set: &ParticipantSet) -> Option<Participants> {
    Participants::new(set.participants.values().map(|p| ParticipantId(p.id))).ok()
}

fn peers_of(sets: &[&ParticipantSet]) -> BTreeMap<ParticipantId, PeerInfo> {
    sets.iter()
        .flat_map(|set| set.participants.values())
        .map(|p| {
            (
                ParticipantId(p.id),
                PeerInfo {
                    address: p.url.clone(),
                    key: p.cipher_pk,
                },
            )
        })
        .collect()
}

/// One read of the contract.
#[derive(Debug)]
struct Snapshot {
    state: ContractState,
    /// Pending requests (read only while Running).
    pending: Vec<PendingRequest>,
}

/// Reads the contract every `interval` and publishes what it saw.
async fn watch_chain(
    chain: Arc<Chain>,
    interval: Duration,
    publish: watch::Sender<Option<Arc<Snapshot>>>,
    poll_now: Arc<tokio::sync::Notify>,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
            _ = poll_now.notified() => {}
        }
        let read = async {
            let state = chain.state().await?;
            let pending = match state {
                ContractState::Running { .. } => chain.pending_requests().await?,
                _ => Vec::new(),
            };
            Ok::<_, crate::chain::ChainError>(Snapshot { state, pending })
        };
        let read = tokio::select! {
            _ = cancel.cancelled() => return,
            read = read => read,
        };
        match read {
            Ok(snapshot) => {
                if failing {
                    tracing::info!("reading the contract works again");
                }
                failing = false;
                metrics.chain_read();
                publish.send_replace(Some(Arc::new(snapshot)));
            }
            Err(e) => {
                metrics.chain_errors.inc();
                if !failing {
                    tracing::warn!(error = %e, "reading the contract failed; retrying every poll");
                }
                failing = true;
            }
        }
    }
}

/// What a finished chain write reports back to the loop.
enum WriteDone {
    Voted,
    Responded {
        request_id: RequestId,
        first_seen: Instant,
        ok: bool,
    },
}

/// Runs the node until `cancel` fires.
pub async fn run(config: NodeConfig, cancel: CancellationToken) -> std::io::Result<()> {
    let (publish, mut snapshots) = watch::channel(None);
    let poll_now = Arc::new(tokio::sync::Notify::new());
    let watcher = tokio::spawn(watch_chain(
        config.chain.clone(),
        config.poll_interval,
        publish,
        poll_now.clone(),
        config.metrics.clone(),
        cancel.child_token(),
    ));
    let mut heartbeat = tokio::time::interval(config.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut node = Node::new(config);
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
            changed = snapshots.changed() => {
                if changed.is_err() {
                    break Ok(()); // the watcher stopped: we are shutting down
                }
                let snapshot = snapshots.borrow_and_update().clone();
                if let Some(snapshot) = snapshot {
                    node.on_snapshot(&snapshot);
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
        if node
            .engine
            .as_mut()
            .is_some_and(|e| e.take_awaiting_chain())
        {
            // A leader saw a request before us: read the chain now, not at the tick.
            poll_now.notify_one();
        }
        if let (Some(engine), Some((net, _))) = (node.engine.as_mut(), network.as_ref()) {
            for (to, bytes) in engine.drain_outbox() {
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
    let _ = watcher.await;
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

/// A request as the loop tracks it.
struct Tracked {
    request: PendingRequest,
    first_seen: Instant,
    /// When this node last started leading it.
    led_at: Option<Instant>,
}

struct Node {
    config: NodeConfig,
    peers: Peers,
    engine: Option<Engine>,
    engine_key: Option<EngineKey>,
    /// The current participants (of the engine's epoch), if Running.
    running_set: Option<Participants>,
    requests: HashMap<RequestId, Tracked>,
    me: Option<ParticipantId>,
    last_heard: HashMap<ParticipantId, Instant>,
    /// Peers live at the last check, to notice who went silent.
    was_live: BTreeSet<ParticipantId>,
    /// Bulk peer messages (triple and presignature generation) not handled yet.
    backlog: VecDeque<(ParticipantId, NodeMessage)>,
}

impl Node {
    fn new(config: NodeConfig) -> Self {
        Node {
            config,
            peers: Peers::default(),
            engine: None,
            engine_key: None,
            running_set: None,
            requests: HashMap::new(),
            me: None,
            last_heard: HashMap::new(),
            was_live: BTreeSet::new(),
            backlog: VecDeque::new(),
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

    fn on_snapshot(&mut self, snapshot: &Snapshot) {
        let state = &snapshot.state;
        let (key, sets): (Option<EngineKey>, Vec<&ParticipantSet>) = match state {
            ContractState::NotInitialized => (None, vec![]),
            ContractState::Initializing {
                candidates,
                threshold,
            } => (
                Some(EngineKey {
                    epoch: 0,
                    participants: candidates.participants.values().map(|p| p.id).collect(),
                    threshold: *threshold,
                    task: Some(KeyTask::Generate { epoch: 0 }),
                }),
                vec![candidates],
            ),
            ContractState::Running {
                epoch,
                participants,
                threshold,
                ..
            } => (
                Some(EngineKey {
                    epoch: *epoch,
                    participants: participants.participants.values().map(|p| p.id).collect(),
                    threshold: *threshold,
                    task: None,
                }),
                vec![participants],
            ),
            ContractState::Resharing {
                old_epoch,
                old_participants,
                new_participants,
                threshold,
                public_key,
            } => {
                let task = to_participants(old_participants)
                    .zip(near_key::parse_secp256k1(public_key).ok())
                    .map(|(old, pk)| KeyTask::Reshare {
                        epoch: old_epoch + 1,
                        old_participants: old,
                        old_threshold: *threshold,
                        public_key: pk,
                    });
                (
                    Some(EngineKey {
                        epoch: old_epoch + 1,
                        participants: new_participants
                            .participants
                            .values()
                            .map(|p| p.id)
                            .collect(),
                        threshold: *threshold,
                        task,
                    }),
                    vec![old_participants, new_participants],
                )
            }
        };
        self.peers.replace(peers_of(&sets));
        self.me = sets
            .iter()
            .flat_map(|s| s.participants.values())
            .find(|p| p.account_id == self.config.account)
            .map(|p| ParticipantId(p.id));
        self.update_status(snapshot, &sets);
        self.running_set = match state {
            ContractState::Running { participants, .. } => to_participants(participants),
            _ => None,
        };
        let (Some(me), Some(key)) = (self.me, key) else {
            return;
        };
        match &self.engine_key {
            // Same epoch and set, another key task (keygen done, contract Running):
            // keep the engine and its runs, which peers may already have joined.
            Some(old)
                if old.epoch == key.epoch
                    && old.participants == key.participants
                    && old.threshold == key.threshold =>
            {
                if old.task != key.task {
                    if let Some(engine) = self.engine.as_mut() {
                        engine.set_key_task(key.task.clone());
                        // The share this node stored for the epoch, if it did.
                        match self.config.store.key_share_at(key.epoch) {
                            Ok(share) => engine.set_key(share),
                            Err(e) => tracing::error!(error = %e, "cannot read the key share"),
                        }
                        if key.task.is_none() && !engine.has_key() {
                            tracing::error!(
                                epoch = key.epoch,
                                "the key task ended without a share here: this node cannot \
                                 sign until a resharing includes it"
                            );
                        }
                    }
                    self.engine_key = Some(key);
                }
            }
            _ => self.rebuild_engine(me, &key),
        }
        self.track_requests(&snapshot.pending);
    }

    fn update_status(&self, snapshot: &Snapshot, sets: &[&ParticipantSet]) {
        let (name, epoch, threshold) = match &snapshot.state {
            ContractState::NotInitialized => ("NotInitialized", None, None),
            ContractState::Initializing { threshold, .. } => {
                ("Initializing", None, Some(*threshold))
            }
            ContractState::Running {
                epoch, threshold, ..
            } => ("Running", Some(*epoch), Some(*threshold)),
            ContractState::Resharing {
                old_epoch,
                threshold,
                ..
            } => ("Resharing", Some(*old_epoch), Some(*threshold)),
        };
        let participants: BTreeMap<u32, PeerStatus> = sets
            .iter()
            .flat_map(|s| s.participants.values())
            .map(|p| {
                let status = PeerStatus {
                    id: p.id,
                    account_id: p.account_id.to_string(),
                    url: p.url.clone(),
                    live: self.is_live(ParticipantId(p.id), Instant::now()),
                };
                (p.id, status)
            })
            .collect();
        self.config.metrics.set_status(|status| {
            status.me = self.me.map(|p| p.0);
            status.contract_state = name.to_string();
            status.epoch = epoch;
            status.threshold = threshold;
            status.participants = participants.into_values().collect();
            status.pending_requests = snapshot.pending.len();
        });
    }

    fn rebuild_engine(&mut self, me: ParticipantId, key: &EngineKey) {
        let Ok(participants) =
            Participants::new(key.participants.iter().copied().map(ParticipantId))
        else {
            return;
        };
        self.engine_key = Some(key.clone());
        if !participants.contains(me) {
            // Leaving: a node outside the new set has no engine.
            self.engine = None;
            return;
        }
        // Only the share of this very epoch signs; resharing starts from the
        // previous epoch's.
        let store = &self.config.store;
        let shares = store.key_share_at(key.epoch).and_then(|share| {
            let previous = match &key.task {
                Some(KeyTask::Reshare { epoch, .. }) => {
                    store.key_share_at(epoch.saturating_sub(1))?
                }
                _ => None,
            };
            Ok((share, previous))
        });
        let (share, previous) = match shares {
            Ok(shares) => shares,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the key share");
                self.engine_key = None;
                return;
            }
        };
        // Stock made under another epoch's key shares can never be used again.
        match self.config.store.retire_other_epochs(key.epoch) {
            Ok(0) => {}
            Ok(n) => tracing::info!(retired = n, "retired stock of an earlier epoch"),
            Err(e) => tracing::error!(error = %e, "cannot retire old stock"),
        }
        let mut engine = Engine::new(
            key.epoch,
            me,
            participants,
            key.threshold,
            share.clone(),
            self.config.store.clone(),
            self.config.protocol_timeout,
        );
        engine.set_key_task(key.task.clone());
        if previous.is_some() {
            engine.set_reshare_input(previous);
        }
        let keyless = share.is_none();
        if let (Some(_), Some(share)) = (&key.task, share) {
            // Restarted after storing this epoch's share: vote again, run nothing.
            engine.resume_finished_key_task(key.epoch, share);
        }
        // Peers that moved to the new epoch first may have sent us its messages.
        if let Some(mut old) = self.engine.take() {
            engine.adopt_early(old.take_early());
        }
        self.engine = Some(engine);
        tracing::info!(epoch = key.epoch, me = me.0, "engine ready");
        if key.task.is_none() && keyless {
            tracing::error!(
                epoch = key.epoch,
                "this node holds no key share for the running epoch and cannot sign; \
                 it takes part again once a resharing includes it"
            );
        }
    }

    /// Tells the engine which requests are pending and forgets answered ones.
    fn track_requests(&mut self, pending: &[PendingRequest]) {
        let now = Instant::now();
        let current: BTreeSet<RequestId> = pending.iter().map(|r| r.request_id).collect();
        let engine = self.engine.as_mut();
        let mut gone = Vec::new();
        self.requests.retain(|id, _| {
            let keep = current.contains(id);
            if !keep {
                gone.push(*id);
            }
            keep
        });
        if let Some(engine) = engine {
            for id in &gone {
                engine.remove_request(id);
            }
            for request in pending {
                if self.requests.contains_key(&request.request_id) {
                    continue;
                }
                let Ok(tweak) = Tweak::from_bytes(request.epsilon.scalar) else {
                    tracing::warn!(request = %request.request_id, "a pending request with an invalid tweak");
                    continue;
                };
                engine.add_request(
                    request.request_id,
                    SignTask {
                        payload: request.payload,
                        tweak,
                        entropy: request.entropy.0,
                    },
                );
                self.config.metrics.requests_seen.inc();
                tracing::debug!(request = %request.request_id, "new request");
                self.requests.insert(
                    request.request_id,
                    Tracked {
                        request: request.clone(),
                        first_seen: now,
                        led_at: None,
                    },
                );
            }
        }
    }

    fn is_live(&self, peer: ParticipantId, now: Instant) -> bool {
        Some(peer) == self.me
            || self
                .last_heard
                .get(&peer)
                .is_some_and(|at| now.duration_since(*at) <= self.config.live_window)
    }

    /// The engine's participants this node considers live (itself included).
    fn live_set(&self, now: Instant) -> Option<Participants> {
        let key = self.engine_key.as_ref()?;
        Participants::new(
            key.participants
                .iter()
                .map(|p| ParticipantId(*p))
                .filter(|p| self.is_live(*p, now)),
        )
        .ok()
    }

    fn send_heartbeats(&self, network: &Network) {
        // Without a share of the running epoch's key (say it missed the end of a
        // resharing) this node cannot take part; staying silent keeps the others
        // from inviting it.
        let keyless =
            self.running_set.is_some() && self.engine.as_ref().is_some_and(|e| !e.has_key());
        if keyless {
            return;
        }
        let ping = Arc::new(NodeMessage::Ping.encode());
        let peers: Vec<ParticipantId> = self
            .engine_key
            .iter()
            .flat_map(|k| k.participants.iter().map(|p| ParticipantId(*p)))
            .filter(|p| Some(*p) != self.me)
            .collect();
        for peer in peers {
            // A full queue means the peer is unreachable; the heartbeat is moot.
            let _ = network.send(peer, ping.clone());
        }
    }

    /// A message from a peer: proof of life, then handled at once if urgent
    /// (signing, key tasks, heartbeats), else queued behind earlier bulk traffic.
    fn on_message(&mut self, incoming: Incoming) {
        let from = incoming.from;
        self.last_heard.insert(from, Instant::now());
        let message = match NodeMessage::decode(&incoming.message) {
            Ok(message) => message,
            Err(e) => {
                tracing::debug!(peer = from.0, error = %e, "ignored a peer message");
                return;
            }
        };
        if message.is_urgent() {
            self.handle(from, message);
        } else if self.backlog.len() < MAX_BACKLOG {
            self.backlog.push_back((from, message));
        } else {
            tracing::warn!(peer = from.0, "backlog full; dropped a generation message");
        }
    }

    fn work_backlog(&mut self) {
        if let Some((from, message)) = self.backlog.pop_front() {
            self.handle(from, message);
        }
    }

    fn handle(&mut self, from: ParticipantId, message: NodeMessage) {
        if let Some(engine) = self.engine.as_mut() {
            if let Err(e) = engine.handle_message(from, message) {
                tracing::debug!(peer = from.0, error = %e, "ignored a peer message");
            }
        }
    }

    /// Everything the node does on its own initiative: notice silent peers,
    /// expire runs, run the key task, top up stock, lead requests.
    fn act(&mut self, now: Instant) {
        let Some(live) = self.live_set(now) else {
            return;
        };
        let live_now: BTreeSet<ParticipantId> = live.iter().collect();
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
        let Some(engine) = self.engine.as_mut() else {
            return;
        };
        if !silent.is_empty() {
            engine.abandon_runs_with(&silent);
        }
        engine.expire(now);
        if self.engine_key.as_ref().is_some_and(|k| k.task.is_some()) {
            // Every participant proposes; the engine makes it one run.
            if let Err(e) = engine.propose_key_task() {
                tracing::debug!(error = %e, "cannot take part in the key task");
            }
            return;
        }
        if self.running_set.is_none() {
            return;
        }
        let Some(engine) = self.engine.as_ref() else {
            return;
        };
        let stock = match engine.own_stock(&live) {
            Ok(stock) => stock,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the stock");
                return;
            }
        };
        self.report_stock(stock);
        self.stock(&live, stock);
        self.lead(&live, now);
    }

    /// Keeps this node's own stock of triples and presignatures topped up, with at
    /// most `max_concurrent_generations` of its runs under way.
    fn stock(&mut self, live: &Participants, (triples, presignatures): (usize, usize)) {
        let Some(engine) = self.engine.as_mut() else {
            return;
        };
        let (mut running_triples, mut running_presignatures) = engine.running_led_generations();
        let mut available_triples = triples;
        while running_triples + running_presignatures < self.config.max_concurrent_generations {
            if presignatures + running_presignatures < self.config.presignature_target
                && available_triples >= 2
            {
                match engine.propose_presignature(live) {
                    Ok(Some(_)) => {
                        running_presignatures += 1;
                        available_triples -= 2;
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => tracing::debug!(error = %e, "cannot start a presignature"),
                }
            }
            // Two triples per missing presignature, plus the triple stock itself.
            let missing_presignatures = self
                .config
                .presignature_target
                .saturating_sub(presignatures + running_presignatures);
            let wanted = self.config.triple_target.max(2 * missing_presignatures);
            if available_triples + running_triples >= wanted {
                break;
            }
            match engine.propose_triple(live) {
                Ok(_) => running_triples += 1,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot start a triple");
                    break;
                }
            }
        }
    }

    /// Publishes the stock (as this turn found it) and the runs under way.
    fn report_stock(&self, (triples, presignatures): (usize, usize)) {
        let running = self.engine.as_ref().map_or(0, |e| e.running());
        self.config.metrics.set_status(|status| {
            status.stock = Stock {
                triples,
                presignatures,
            };
            status.running_protocols = running;
        });
    }

    /// Leads the pending requests whose turn it is for this node.
    fn lead(&mut self, live: &Participants, now: Instant) {
        let (Some(engine), Some(me), Some(all)) =
            (self.engine.as_mut(), self.me, self.running_set.as_ref())
        else {
            return;
        };
        let retry_after = self.config.protocol_timeout;
        for (request_id, tracked) in self.requests.iter_mut() {
            if tracked
                .led_at
                .is_some_and(|at| now.duration_since(at) < retry_after)
            {
                continue;
            }
            let order = leader_order(request_id, all);
            let Some(rank) = order
                .iter()
                .filter(|p| live.contains(**p))
                .position(|p| *p == me)
            else {
                continue;
            };
            let turn = self.config.leader_grace * rank as u32;
            if now.duration_since(tracked.first_seen) < turn {
                continue;
            }
            match engine.propose_sign(*request_id, live) {
                Ok(Some(presignature)) => {
                    tracing::debug!(request = %request_id, presignature, waited_ms = now.duration_since(tracked.first_seen).as_millis() as u64, "leading a request");
                    if rank > 0 {
                        tracing::info!(request = %request_id, rank, "leading a request in place of a silent leader");
                    }
                    tracked.led_at = Some(now);
                }
                Ok(None) => {
                    tracing::debug!(request = %request_id, "no usable presignature to lead with yet");
                    return;
                }
                Err(e) => {
                    tracing::warn!(request = %request_id, error = %e, "cannot lead a request")
                }
            }
        }
    }

    fn on_events(&mut self, writes: &mut JoinSet<WriteDone>) {
        let Some(engine) = self.engine.as_mut() else {
            return;
        };
        let events: Vec<Event> = engine.drain_events().collect();
        let metrics = &self.config.metrics;
        for event in events {
            match event {
                Event::KeyShareStored { epoch, public_key } => {
                    let chain = self.config.chain.clone();
                    let key_text = near_key::to_near_string(&public_key);
                    let resharing = matches!(
                        self.engine_key.as_ref().and_then(|k| k.task.as_ref()),
                        Some(KeyTask::Reshare { .. })
                    );
                    tracing::info!(epoch, public_key = %key_text, resharing, "key share stored; voting");
                    writes.spawn(async move {
                        let result = if resharing {
                            chain.vote_reshared(epoch).await
                        } else {
                            chain.vote_pk(&key_text).await
                        };
                        if let Err(e) = result {
                            tracing::warn!(error = %e, "voting for the key failed");
                        }
                        WriteDone::Voted
                    });
                }
                Event::Signed {
                    request_id,
                    response,
                    leader: true,
                } => {
                    let Some(tracked) = self.requests.get(&request_id) else {
                        continue; // answered meanwhile
                    };
                    let request = tracked.request.signature_request();
                    let first_seen = tracked.first_seen;
                    tracing::debug!(request = %request_id, since_seen_ms = first_seen.elapsed().as_millis() as u64, "signed; responding");
                    let chain = self.config.chain.clone();
                    writes.spawn(async move {
                        let ok = match chain.respond(&request, &response).await {
                            Ok(()) => true,
                            Err(e) => {
                                tracing::warn!(request = %request_id, error = %e, "respond failed");
                                false
                            }
                        };
                        WriteDone::Responded {
                            request_id,
                            first_seen,
                            ok,
                        }
                    });
                }
                Event::Signed { .. } => {}
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
                        if owner(presignature) == engine.me() {
                            if let Some(tracked) = self.requests.get_mut(&RequestId(request_id)) {
                                tracked.led_at = None;
                            }
                        }
                    }
                }
            }
        }
    }

    fn on_write_done(&mut self, done: WriteDone) {
        let WriteDone::Responded {
            request_id,
            first_seen,
            ok,
        } = done
        else {
            return;
        };
        let metrics = &self.config.metrics;
        if ok {
            tracing::info!(request = %request_id, ms = first_seen.elapsed().as_millis() as u64, "answered a request");
            metrics.signatures.inc();
            metrics.sign_latency.observe(first_seen.elapsed());
        } else {
            metrics.respond_failures.inc();
            // Still pending? Then it may be led again at once.
            if let Some(tracked) = self.requests.get_mut(&request_id) {
                tracked.led_at = None;
            }
        }
    }
}
