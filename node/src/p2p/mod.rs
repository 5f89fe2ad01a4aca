//! The peer-to-peer network between participants.
//!
//! Every node listens for its peers and dials each peer it sends to; a connection
//! carries messages one way (dialer to listener) over an authenticated, encrypted
//! channel ([`noise`]). Peers are known by the static keys they registered on the
//! contract ([`Peers`], kept current by the chain watcher): a listener accepts a
//! connection only from a key in the registry and attributes its messages to that
//! participant; a dialer talks only to the key registered for the peer it dials.
//!
//! Tasks: one listener task, one task per accepted connection, one sender task per
//! peer. All are owned by the [`Network`]'s tracker and stop on
//! [`Network::shutdown`]; none is detached.
//!
//! Bounds (DESIGN §8), so one peer cannot exhaust us or crowd out the others:
//! - inbound, every message is charged to its sender's byte budget
//!   ([`budget::Ledger`]) until the node lets it go; a peer over budget is cut off
//!   (connection dropped, its queued messages marked stale) and reported by
//!   [`Network::take_over_budget`], and its connections are refused for
//!   [`NetworkConfig::cut_off_for`], so a flood costs us at most a budget per
//!   period; the receive queue itself is unbounded in count, bounded by the
//!   budgets;
//! - one inbound connection per peer: a newly authenticated connection from a peer
//!   replaces its old one (not refused: a peer that restarted, or whose old
//!   connection died without a FIN, must get back in at once, and only the holder
//!   of the peer's key can do this to the peer's own connection);
//! - at most [`NetworkConfig::max_pending_handshakes`] connections that have not
//!   finished their handshake, each for at most the handshake timeout; when full,
//!   the oldest is dropped for the newcomer, so idle sockets cannot lock real
//!   peers out;
//! - outbound, two queues per peer: urgent (heartbeats, signing, key tasks,
//!   confirmations), always written first, and bulk (stock generation), bounded by
//!   bytes.

pub mod budget;
pub mod noise;
mod outbound;

use budget::{Charge, Ledger};
use noise::{ChannelError, Receiver, StaticKey};
use outbound::{sender_loop, Queues};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use threshold::ParticipantId;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How to reach a participant and the key it proves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// `host:port` of its peer-to-peer listener.
    pub address: String,
    /// Its X25519 static key (`cipher_pk` on the contract).
    pub key: [u8; 32],
}

/// The participants we may talk to, shared with whoever keeps it current.
#[derive(Clone, Default)]
pub struct Peers(Arc<RwLock<BTreeMap<ParticipantId, PeerInfo>>>);

impl Peers {
    pub fn new(peers: BTreeMap<ParticipantId, PeerInfo>) -> Self {
        Peers(Arc::new(RwLock::new(peers)))
    }

    /// Replaces the registry (e.g. after resharing changed the participants).
    pub fn replace(&self, peers: BTreeMap<ParticipantId, PeerInfo>) {
        *self.0.write().expect("peer registry lock") = peers;
    }

    /// Every participant in the registry.
    pub fn ids(&self) -> Vec<ParticipantId> {
        self.0
            .read()
            .expect("peer registry lock")
            .keys()
            .copied()
            .collect()
    }

    pub fn get(&self, id: ParticipantId) -> Option<PeerInfo> {
        self.0.read().expect("peer registry lock").get(&id).cloned()
    }

    /// The participant that registered `key`, if exactly one did.
    pub fn by_key(&self, key: &[u8; 32]) -> Option<ParticipantId> {
        let peers = self.0.read().expect("peer registry lock");
        let mut matches = peers
            .iter()
            .filter(|(_, p)| &p.key == key)
            .map(|(id, _)| *id);
        let first = matches.next()?;
        matches.next().is_none().then_some(first)
    }
}

/// Settings of the network layer.
#[derive(Clone, Debug)]
pub struct NetworkConfig {
    pub me: ParticipantId,
    pub listen: SocketAddr,
    pub key: StaticKey,
    /// Binds handshakes to one network, e.g. `b"chain-signatures p2p v1:" + contract id`.
    pub prologue: Vec<u8>,
    pub handshake_timeout: Duration,
    /// Longest wait between reconnection attempts (they start at 50 ms and double;
    /// a connection that lasts a second starts them over).
    pub max_backoff: Duration,
    /// Urgent messages queued per peer while it is unreachable; beyond it, sends
    /// fail fast.
    pub queue_per_peer: usize,
    /// Bytes of a peer's messages held here at a time, inbound (received, not yet
    /// handled) and, separately, outbound bulk traffic queued to it.
    pub peer_budget: usize,
    /// Inbound connections still in their handshake, at most.
    pub max_pending_handshakes: usize,
    /// How long a peer cut off for its budget is refused before it may connect
    /// again.
    pub cut_off_for: Duration,
}

/// The default of [`NetworkConfig::peer_budget`] (and of the node's
/// `peer_buffer_bytes` setting): room for dozens of the largest protocol message.
pub const DEFAULT_PEER_BUDGET: usize = 64 << 20;
/// The default of [`NetworkConfig::max_pending_handshakes`].
pub const DEFAULT_MAX_PENDING_HANDSHAKES: usize = 64;

impl NetworkConfig {
    pub fn new(me: ParticipantId, listen: SocketAddr, key: StaticKey, network_name: &str) -> Self {
        NetworkConfig {
            me,
            listen,
            key,
            prologue: format!("chain-signatures p2p v1:{network_name}").into_bytes(),
            handshake_timeout: Duration::from_secs(5),
            max_backoff: Duration::from_secs(5),
            queue_per_peer: 4096,
            peer_budget: DEFAULT_PEER_BUDGET,
            max_pending_handshakes: DEFAULT_MAX_PENDING_HANDSHAKES,
            cut_off_for: Duration::from_secs(5),
        }
    }
}

/// A message from a peer, with the bytes it is charged to the peer's budget
/// (given back when the charge is dropped: keep it with the message while the
/// message is held).
#[derive(Debug)]
pub struct Incoming {
    pub from: ParticipantId,
    pub message: Vec<u8>,
    pub charge: Charge,
}

/// Counters of what the network saw, for `/metrics` and tests.
#[derive(Debug, Default)]
pub struct NetworkStats {
    pub accepted: AtomicU64,
    /// Handshakes that failed: not our protocol, another network, garbage.
    pub failed_handshakes: AtomicU64,
    /// Valid handshakes from keys that are not in the registry.
    pub unknown_peers: AtomicU64,
    /// Connections ended by a bad frame (decryption failure, oversized message).
    pub bad_frames: AtomicU64,
    /// Dials refused because the listener proved another key than registered.
    pub impostors: AtomicU64,
    /// Peers cut off for going over their byte budget.
    pub over_budget: AtomicU64,
    /// Inbound connections replaced by a newer one from the same peer.
    pub replaced_connections: AtomicU64,
    /// Unfinished handshakes dropped to make room for newer ones.
    pub evicted_handshakes: AtomicU64,
    /// Bulk messages not queued because the peer's bulk queue was full.
    pub bulk_refused: AtomicU64,
    /// Connections refused because their peer was cut off a moment ago.
    pub refused_while_cut_off: AtomicU64,
    pub messages_in: AtomicU64,
    pub messages_out: AtomicU64,
}

impl NetworkStats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Why a message could not be queued.
#[derive(Debug, PartialEq, Eq)]
pub enum SendError {
    UnknownPeer(ParticipantId),
    QueueFull(ParticipantId),
    ShutDown,
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::UnknownPeer(p) => {
                write!(f, "participant {} is not in the peer registry", p.0)
            }
            SendError::QueueFull(p) => write!(
                f,
                "the queue to participant {} is full (unreachable or slow?)",
                p.0
            ),
            SendError::ShutDown => f.write_str("the network is shutting down"),
        }
    }
}

impl std::error::Error for SendError {}

/// A peer's outbound queues, read by its sender task.
struct Outbox {
    urgent: mpsc::Sender<Arc<Vec<u8>>>,
    bulk: mpsc::UnboundedSender<Arc<Vec<u8>>>,
    /// Bytes in `bulk` (and the one being written), bounded by the peer budget.
    bulk_bytes: Arc<AtomicUsize>,
}

/// What the network's tasks share.
struct Shared {
    config: NetworkConfig,
    peers: Peers,
    stats: Arc<NetworkStats>,
    ledger: Ledger,
    /// The live inbound connection of each peer (its number and how to end it).
    inbound: Mutex<HashMap<ParticipantId, (u64, CancellationToken)>>,
    /// Connections in their handshake, oldest first.
    handshaking: Mutex<VecDeque<(u64, CancellationToken)>>,
    /// Peers cut off for going over budget, until the node asks.
    over_budget: Mutex<Vec<ParticipantId>>,
    /// Peers cut off, refused until the instant given.
    cut_off_until: Mutex<HashMap<ParticipantId, Instant>>,
    next_connection: AtomicU64,
}

impl Shared {
    /// Admits a new connection to the handshake stage, dropping the oldest
    /// unfinished handshake if the stage is full.
    fn admit(&self, connection: u64, token: CancellationToken) {
        let mut handshaking = self.handshaking.lock().expect("handshake list lock");
        while handshaking.len() >= self.config.max_pending_handshakes.max(1) {
            let Some((_, oldest)) = handshaking.pop_front() else {
                break;
            };
            oldest.cancel();
            NetworkStats::bump(&self.stats.evicted_handshakes);
        }
        handshaking.push_back((connection, token));
    }

    fn handshake_over(&self, connection: u64) {
        let mut handshaking = self.handshaking.lock().expect("handshake list lock");
        handshaking.retain(|(c, _)| *c != connection);
    }

    /// Makes `connection` the one inbound connection of `peer`, ending any other.
    fn register_inbound(&self, peer: ParticipantId, connection: u64, token: CancellationToken) {
        let mut inbound = self.inbound.lock().expect("inbound map lock");
        if let Some((_, old)) = inbound.insert(peer, (connection, token)) {
            old.cancel();
            NetworkStats::bump(&self.stats.replaced_connections);
            tracing::debug!(
                peer = peer.0,
                "a new connection from the peer replaced its old one"
            );
        }
    }

    fn unregister_inbound(&self, peer: ParticipantId, connection: u64) {
        let mut inbound = self.inbound.lock().expect("inbound map lock");
        if inbound.get(&peer).is_some_and(|(c, _)| *c == connection) {
            inbound.remove(&peer);
        }
    }

    /// Ends `peer`'s inbound connection and makes its queued messages stale.
    fn cut_off(&self, peer: ParticipantId) {
        let until = Instant::now() + self.config.cut_off_for;
        self.cut_off_until
            .lock()
            .expect("cut-off map lock")
            .insert(peer, until);
        self.ledger.cut_off(peer);
        if let Some((_, token)) = self.inbound.lock().expect("inbound map lock").remove(&peer) {
            token.cancel();
        }
    }
}

/// A running network layer.
pub struct Network {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    outboxes: Mutex<HashMap<ParticipantId, Outbox>>,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl Network {
    /// Binds the listener and starts accepting peers. Messages from peers arrive on
    /// the returned receiver; it is unbounded in count because every message in it
    /// is charged to its sender's byte budget.
    pub async fn start(
        config: NetworkConfig,
        peers: Peers,
    ) -> std::io::Result<(Network, mpsc::UnboundedReceiver<Incoming>)> {
        let listener = TcpListener::bind(config.listen).await?;
        let local_addr = listener.local_addr()?;
        let (incoming_tx, incoming_rx) = mpsc::unbounded_channel();
        let network = Network {
            shared: Arc::new(Shared {
                ledger: Ledger::new(config.peer_budget),
                config,
                peers,
                stats: Arc::new(NetworkStats::default()),
                inbound: Mutex::new(HashMap::new()),
                handshaking: Mutex::new(VecDeque::new()),
                over_budget: Mutex::new(Vec::new()),
                cut_off_until: Mutex::new(HashMap::new()),
                next_connection: AtomicU64::new(0),
            }),
            local_addr,
            outboxes: Mutex::new(HashMap::new()),
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
        };
        network.tasks.spawn(accept_loop(
            listener,
            network.shared.clone(),
            incoming_tx,
            network.cancel.clone(),
            network.tasks.clone(),
        ));
        Ok((network, incoming_rx))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn stats(&self) -> &Arc<NetworkStats> {
        &self.shared.stats
    }

    /// The byte budgets of the peers' inbound messages.
    pub fn ledger(&self) -> &Ledger {
        &self.shared.ledger
    }

    /// Peers cut off for going over their budget since the last call (each once
    /// per cut-off), for the node to blame.
    pub fn take_over_budget(&self) -> Vec<ParticipantId> {
        std::mem::take(&mut *self.shared.over_budget.lock().expect("over-budget lock"))
    }

    /// Cuts `peer` off for going over a budget kept elsewhere (an engine's
    /// early-message buffer): drops its inbound connection and makes the messages
    /// it has queued here stale ([`Charge::is_current`]). It may connect again.
    pub fn cut_off(&self, peer: ParticipantId) {
        NetworkStats::bump(&self.shared.stats.over_budget);
        tracing::warn!(peer = peer.0, "cutting off a peer over its byte budget");
        self.shared.cut_off(peer);
    }

    /// Queues an urgent `message` for `to`: it is written before any bulk message.
    /// Delivery is best effort: a message in flight when a connection breaks is
    /// lost, and the protocol above times out and retries.
    pub fn send(&self, to: ParticipantId, message: Arc<Vec<u8>>) -> Result<(), SendError> {
        self.with_outbox(to, |outbox| {
            outbox.urgent.try_send(message).map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => SendError::QueueFull(to),
                mpsc::error::TrySendError::Closed(_) => SendError::ShutDown,
            })
        })
    }

    /// Queues a bulk `message` (stock generation) for `to`, behind every urgent
    /// one; refused when the bytes queued to `to` would exceed the peer budget.
    pub fn send_bulk(&self, to: ParticipantId, message: Arc<Vec<u8>>) -> Result<(), SendError> {
        let limit = self.shared.config.peer_budget;
        let stats = self.shared.stats.clone();
        self.with_outbox(to, |outbox| {
            let len = message.len();
            let reserved =
                outbox
                    .bulk_bytes
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                        (queued.saturating_add(len) <= limit).then_some(queued + len)
                    });
            if reserved.is_err() {
                NetworkStats::bump(&stats.bulk_refused);
                return Err(SendError::QueueFull(to));
            }
            outbox.bulk.send(message).map_err(|_| {
                outbox.bulk_bytes.fetch_sub(len, Ordering::AcqRel);
                SendError::ShutDown
            })
        })
    }

    fn with_outbox(
        &self,
        to: ParticipantId,
        queue: impl FnOnce(&Outbox) -> Result<(), SendError>,
    ) -> Result<(), SendError> {
        if self.cancel.is_cancelled() {
            return Err(SendError::ShutDown);
        }
        if self.shared.peers.get(to).is_none() {
            return Err(SendError::UnknownPeer(to));
        }
        let mut outboxes = self.outboxes.lock().expect("outbox map lock");
        let outbox = outboxes.entry(to).or_insert_with(|| {
            let (urgent, urgent_rx) = mpsc::channel(self.shared.config.queue_per_peer);
            let (bulk, bulk_rx) = mpsc::unbounded_channel();
            let bulk_bytes = Arc::new(AtomicUsize::new(0));
            self.tasks.spawn(sender_loop(
                to,
                Queues {
                    urgent: urgent_rx,
                    bulk: bulk_rx,
                    bulk_bytes: bulk_bytes.clone(),
                },
                self.shared.clone(),
                self.cancel.clone(),
            ));
            Outbox {
                urgent,
                bulk,
                bulk_bytes,
            }
        });
        queue(outbox)
    }

    /// Stops every task and waits for them.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    incoming: mpsc::UnboundedSender<Incoming>,
    cancel: CancellationToken,
    tasks: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, addr)) => {
                NetworkStats::bump(&shared.stats.accepted);
                let connection = shared.next_connection.fetch_add(1, Ordering::Relaxed);
                let token = cancel.child_token();
                shared.admit(connection, token.clone());
                let task = serve_connection(
                    stream,
                    connection,
                    token.clone(),
                    shared.clone(),
                    incoming.clone(),
                );
                let shared = shared.clone();
                tasks.spawn(async move {
                    tokio::select! {
                        _ = token.cancelled() => {}
                        _ = task => {}
                    }
                    shared.handshake_over(connection);
                    tracing::trace!(%addr, "inbound connection closed");
                });
            }
            // Out of file descriptors and the like: back off instead of spinning.
            Err(e) => {
                tracing::warn!(error = %e, "accepting a peer connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One inbound connection: handshake, identify the peer, forward its messages
/// charged to its budget.
async fn serve_connection(
    stream: TcpStream,
    connection: u64,
    token: CancellationToken,
    shared: Arc<Shared>,
    incoming: mpsc::UnboundedSender<Incoming>,
) {
    let config = &shared.config;
    let stats = &shared.stats;
    let handshake = Receiver::handshake(stream, &config.key, &config.prologue);
    let result = tokio::time::timeout(config.handshake_timeout, handshake).await;
    shared.handshake_over(connection);
    let mut receiver = match result {
        Ok(Ok(receiver)) => receiver,
        Ok(Err(e)) => {
            NetworkStats::bump(&stats.failed_handshakes);
            tracing::debug!(error = %e, "inbound handshake failed");
            return;
        }
        Err(_) => {
            NetworkStats::bump(&stats.failed_handshakes);
            tracing::debug!("inbound handshake timed out");
            return;
        }
    };
    let Some(from) = shared
        .peers
        .by_key(&receiver.remote_key())
        .filter(|id| *id != config.me)
    else {
        NetworkStats::bump(&stats.unknown_peers);
        tracing::warn!("refused a connection from a key that is not a registered participant");
        return;
    };
    let refused_until = shared
        .cut_off_until
        .lock()
        .expect("cut-off map lock")
        .get(&from)
        .copied();
    if refused_until.is_some_and(|until| Instant::now() < until) {
        NetworkStats::bump(&stats.refused_while_cut_off);
        tracing::debug!(peer = from.0, "refused a peer cut off a moment ago");
        return;
    }
    shared.register_inbound(from, connection, token);
    loop {
        match receiver.recv().await {
            Ok(message) => {
                NetworkStats::bump(&stats.messages_in);
                let charge = match shared.ledger.charge(from, message.len()) {
                    Ok(charge) => charge,
                    Err(over) => {
                        NetworkStats::bump(&stats.over_budget);
                        tracing::warn!(peer = from.0, %over, "cutting off a peer over its byte budget");
                        shared.cut_off(from);
                        shared
                            .over_budget
                            .lock()
                            .expect("over-budget lock")
                            .push(from);
                        break;
                    }
                };
                if incoming
                    .send(Incoming {
                        from,
                        message,
                        charge,
                    })
                    .is_err()
                {
                    break;
                }
            }
            Err(ChannelError::Io(_)) => break,
            Err(e) => {
                NetworkStats::bump(&stats.bad_frames);
                tracing::warn!(peer = from.0, error = %e, "dropping a connection that sent a bad frame");
                break;
            }
        }
    }
    shared.unregister_inbound(from, connection);
}
