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

pub mod noise;

use noise::{ChannelError, Receiver, Sender, StaticKey};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
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
    /// Longest wait between reconnection attempts (they start at 50 ms and double).
    pub max_backoff: Duration,
    /// Messages queued per peer while it is unreachable; beyond it, sends fail fast.
    pub queue_per_peer: usize,
}

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
        }
    }
}

/// A message from a peer.
#[derive(Debug, PartialEq, Eq)]
pub struct Incoming {
    pub from: ParticipantId,
    pub message: Vec<u8>,
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
            SendError::QueueFull(p) => {
                write!(f, "the queue to participant {} is full (unreachable?)", p.0)
            }
            SendError::ShutDown => f.write_str("the network is shutting down"),
        }
    }
}

impl std::error::Error for SendError {}

/// A running network layer.
pub struct Network {
    config: Arc<NetworkConfig>,
    peers: Peers,
    local_addr: SocketAddr,
    senders: Mutex<HashMap<ParticipantId, mpsc::Sender<Arc<Vec<u8>>>>>,
    stats: Arc<NetworkStats>,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl Network {
    /// Binds the listener and starts accepting peers. Messages from peers arrive on
    /// the returned receiver.
    pub async fn start(
        config: NetworkConfig,
        peers: Peers,
    ) -> std::io::Result<(Network, mpsc::Receiver<Incoming>)> {
        let listener = TcpListener::bind(config.listen).await?;
        let local_addr = listener.local_addr()?;
        let (incoming_tx, incoming_rx) = mpsc::channel(4096);
        let network = Network {
            config: Arc::new(config),
            peers,
            local_addr,
            senders: Mutex::new(HashMap::new()),
            stats: Arc::new(NetworkStats::default()),
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
        };
        network.tasks.spawn(accept_loop(
            listener,
            network.config.clone(),
            network.peers.clone(),
            incoming_tx,
            network.stats.clone(),
            network.cancel.clone(),
            network.tasks.clone(),
        ));
        Ok((network, incoming_rx))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn stats(&self) -> &Arc<NetworkStats> {
        &self.stats
    }

    /// Queues `message` for `to`. Delivery is best effort: a message in flight when a
    /// connection breaks is lost, and the protocol above times out and retries.
    pub fn send(&self, to: ParticipantId, message: Arc<Vec<u8>>) -> Result<(), SendError> {
        if self.cancel.is_cancelled() {
            return Err(SendError::ShutDown);
        }
        if self.peers.get(to).is_none() {
            return Err(SendError::UnknownPeer(to));
        }
        let mut senders = self.senders.lock().expect("sender map lock");
        let queue = senders.entry(to).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(self.config.queue_per_peer);
            self.tasks.spawn(sender_loop(
                to,
                rx,
                self.config.clone(),
                self.peers.clone(),
                self.stats.clone(),
                self.cancel.clone(),
            ));
            tx
        });
        queue.try_send(message).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SendError::QueueFull(to),
            mpsc::error::TrySendError::Closed(_) => SendError::ShutDown,
        })
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
    config: Arc<NetworkConfig>,
    peers: Peers,
    incoming: mpsc::Sender<Incoming>,
    stats: Arc<NetworkStats>,
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
                NetworkStats::bump(&stats.accepted);
                let task = serve_connection(
                    stream,
                    config.clone(),
                    peers.clone(),
                    incoming.clone(),
                    stats.clone(),
                );
                let cancel = cancel.clone();
                tasks.spawn(async move {
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        _ = task => {}
                    }
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

/// One inbound connection: handshake, identify the peer, forward its messages.
async fn serve_connection(
    stream: TcpStream,
    config: Arc<NetworkConfig>,
    peers: Peers,
    incoming: mpsc::Sender<Incoming>,
    stats: Arc<NetworkStats>,
) {
    let handshake = Receiver::handshake(stream, &config.key, &config.prologue);
    let mut receiver = match tokio::time::timeout(config.handshake_timeout, handshake).await {
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
    let Some(from) = peers
        .by_key(&receiver.remote_key())
        .filter(|id| *id != config.me)
    else {
        NetworkStats::bump(&stats.unknown_peers);
        tracing::warn!("refused a connection from a key that is not a registered participant");
        return;
    };
    loop {
        match receiver.recv().await {
            Ok(message) => {
                NetworkStats::bump(&stats.messages_in);
                if incoming.send(Incoming { from, message }).await.is_err() {
                    return;
                }
            }
            Err(ChannelError::Io(_)) => return,
            Err(e) => {
                NetworkStats::bump(&stats.bad_frames);
                tracing::warn!(peer = from.0, error = %e, "dropping a connection that sent a bad frame");
                return;
            }
        }
    }
}

/// Keeps a connection to `to` and writes its queued messages, reconnecting with
/// exponential backoff.
async fn sender_loop(
    to: ParticipantId,
    mut queue: mpsc::Receiver<Arc<Vec<u8>>>,
    config: Arc<NetworkConfig>,
    peers: Peers,
    stats: Arc<NetworkStats>,
    cancel: CancellationToken,
) {
    let mut backoff = Duration::from_millis(50);
    let mut pending: Option<Arc<Vec<u8>>> = None;
    loop {
        let connected = tokio::select! {
            _ = cancel.cancelled() => return,
            connected = connect(to, &config, &peers) => connected,
        };
        let mut sender = match connected {
            Ok(sender) => {
                backoff = Duration::from_millis(50);
                sender
            }
            Err(e) => {
                if matches!(e, ChannelError::UnexpectedPeerKey) {
                    NetworkStats::bump(&stats.impostors);
                }
                tracing::debug!(peer = to.0, error = %e, ?backoff, "cannot reach peer; retrying");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(config.max_backoff);
                continue;
            }
        };
        loop {
            let message = match pending.take() {
                Some(message) => message,
                None => tokio::select! {
                    _ = cancel.cancelled() => return,
                    next = queue.recv() => match next {
                        Some(message) => message,
                        None => return,
                    },
                },
            };
            match sender.send(&message).await {
                Ok(()) => NetworkStats::bump(&stats.messages_out),
                Err(e) => {
                    tracing::debug!(peer = to.0, error = %e, "connection to peer broke; reconnecting");
                    // Retry this message once on the next connection.
                    pending = Some(message);
                    break;
                }
            }
        }
    }
}

async fn connect(
    to: ParticipantId,
    config: &NetworkConfig,
    peers: &Peers,
) -> Result<Sender, ChannelError> {
    let peer = peers.get(to).ok_or_else(|| {
        ChannelError::Io(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "peer left the registry",
        ))
    })?;
    let attempt = async {
        let stream = TcpStream::connect(&peer.address).await?;
        Sender::handshake(stream, &config.key, &config.prologue, &peer.key).await
    };
    tokio::time::timeout(config.handshake_timeout, attempt)
        .await
        .unwrap_or_else(|_| Err(ChannelError::Io(std::io::ErrorKind::TimedOut.into())))
}
