//! The sending side of the network: one task per peer that keeps a connection to
//! it (redialing with backoff) and writes its queued messages, urgent ones first,
//! several to a write.

use super::noise::{self, ChannelError, Sender};
use super::{NetworkConfig, NetworkStats, Peers, Shared};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use threshold::ParticipantId;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A peer's outbound queues, as its sender task reads them.
pub(super) struct Queues {
    pub(super) urgent: mpsc::Receiver<Arc<Vec<u8>>>,
    pub(super) bulk: mpsc::UnboundedReceiver<Arc<Vec<u8>>>,
    pub(super) bulk_bytes: Arc<AtomicUsize>,
}

/// A sender's first wait before dialing again; it doubles up to
/// [`NetworkConfig::max_backoff`], and starts over once a connection has lasted
/// [`LASTED`].
const INITIAL_BACKOFF: Duration = Duration::from_millis(50);
const LASTED: Duration = Duration::from_secs(1);

/// A sender stops adding queued messages to a write once it holds this many
/// bytes: about one Noise chunk, so an urgent message queued meanwhile waits for
/// little more than that (or one long message).
const BATCH_BYTES: usize = 64 << 10;

/// Messages written together, each with whether it is bulk (its bytes stay counted
/// against the peer's bulk queue until it is written or dropped).
#[derive(Default)]
struct Batch {
    messages: Vec<(Arc<Vec<u8>>, bool)>,
    bytes: usize,
}

impl Batch {
    fn push(&mut self, message: Arc<Vec<u8>>, bulk: bool) {
        self.bytes += message.len();
        self.messages.push((message, bulk));
    }

    /// Drops the messages no write would ever take (the connection stays fine).
    fn drop_oversized(&mut self, to: ParticipantId, queues: &Queues) {
        let (fit, oversized): (Vec<_>, Vec<_>) = std::mem::take(&mut self.messages)
            .into_iter()
            .partition(|(m, _)| m.len() <= noise::MAX_MESSAGE);
        for (message, _) in &oversized {
            let e = ChannelError::Oversized(message.len());
            tracing::error!(peer = to.0, error = %e, "dropped an outgoing message");
        }
        Batch {
            messages: oversized,
            bytes: 0,
        }
        .release(queues);
        self.bytes = fit.iter().map(|(m, _)| m.len()).sum();
        self.messages = fit;
    }

    /// Gives the bulk messages' bytes back to the queue's count.
    fn release(self, queues: &Queues) {
        for (message, bulk) in self.messages {
            if bulk {
                queues.bulk_bytes.fetch_sub(message.len(), Ordering::AcqRel);
            }
        }
    }
}

/// Keeps a connection to `to` and writes its queued messages, urgent ones first,
/// reconnecting with exponential backoff. Whatever is queued when the sender comes
/// for the next message goes out in one write ([`Batch`]).
pub(super) async fn sender_loop(
    to: ParticipantId,
    mut queues: Queues,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) {
    let config = &shared.config;
    let stats = &shared.stats;
    // Starts over only after a connection that lasted: a peer that takes the
    // handshake and then hangs up (it does not know our key yet, or cut us off)
    // must not make us redial in a tight loop.
    let mut backoff = INITIAL_BACKOFF;
    // A batch whose write failed, sent again on the next connection.
    let mut pending: Option<Batch> = None;
    loop {
        let connected = tokio::select! {
            _ = cancel.cancelled() => return,
            connected = connect(to, config, &shared.peers) => connected,
        };
        let (mut sender, connected_at) = match connected {
            Ok(sender) => (sender, Instant::now()),
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
            let batch = match pending.take() {
                Some(batch) => batch,
                None => {
                    let mut batch = Batch::default();
                    // `biased`: an urgent message never waits behind a bulk one.
                    let (first, bulk) = tokio::select! {
                        biased;
                        _ = cancel.cancelled() => return,
                        next = queues.urgent.recv() => match next {
                            Some(message) => (message, false),
                            None => return,
                        },
                        next = queues.bulk.recv() => match next {
                            Some(message) => (message, true),
                            None => return,
                        },
                    };
                    batch.push(first, bulk);
                    fill(&mut batch, &mut queues);
                    batch.drop_oversized(to, &queues);
                    batch
                }
            };
            let sendable: Vec<&[u8]> = batch.messages.iter().map(|(m, _)| m.as_slice()).collect();
            match sender.send_all(&sendable).await {
                Ok(()) => {
                    stats
                        .messages_out
                        .fetch_add(sendable.len() as u64, Ordering::Relaxed);
                    batch.release(&queues);
                }
                Err(e) => {
                    if connected_at.elapsed() >= LASTED {
                        backoff = INITIAL_BACKOFF;
                    }
                    tracing::debug!(peer = to.0, error = %e, ?backoff, "connection to peer broke; reconnecting");
                    pending = Some(batch);
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(config.max_backoff);
                    break;
                }
            }
        }
    }
}

/// Adds what is queued already to `batch`, urgent messages first, until it holds
/// [`BATCH_BYTES`].
fn fill(batch: &mut Batch, queues: &mut Queues) {
    while batch.bytes < BATCH_BYTES {
        let next = match queues.urgent.try_recv() {
            Ok(message) => (message, false),
            Err(_) => match queues.bulk.try_recv() {
                Ok(message) => (message, true),
                Err(_) => return,
            },
        };
        batch.push(next.0, next.1);
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
