//! The chain watcher: a task that reads the contract state and pending requests
//! every poll interval and publishes them on a `watch` channel, so RPC latency
//! never stalls the protocol loop.

use crate::chain::{Chain, ContractState};
use crate::metrics::Metrics;
use primitives::PendingRequest;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// One read of the contract.
#[derive(Debug)]
pub(super) struct Snapshot {
    pub(super) state: ContractState,
    /// Pending requests (read whenever a set is running).
    pub(super) pending: Vec<PendingRequest>,
}

/// The running watcher, as the loop holds it: what it publishes, a way to ask for
/// a read before the next tick, and its task (awaited at shutdown).
pub(super) struct Watcher {
    pub(super) snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
    pub(super) poll_now: Arc<Notify>,
    task: JoinHandle<()>,
}

impl Watcher {
    /// Starts the watcher; it stops when `cancel` fires.
    pub(super) fn spawn(
        chain: Arc<Chain>,
        interval: Duration,
        metrics: Arc<Metrics>,
        cancel: CancellationToken,
    ) -> Self {
        let (publish, snapshots) = watch::channel(None);
        let poll_now = Arc::new(Notify::new());
        let task = tokio::spawn(watch_chain(
            chain,
            interval,
            publish,
            poll_now.clone(),
            metrics,
            cancel,
        ));
        Watcher {
            snapshots,
            poll_now,
            task,
        }
    }

    /// Waits for the task to end (after its cancellation); a panic is logged, not
    /// lost.
    pub(super) async fn stopped(self) {
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "the chain watcher task panicked");
        }
    }
}

/// Reads the contract every `interval` and publishes what it saw.
async fn watch_chain(
    chain: Arc<Chain>,
    interval: Duration,
    publish: watch::Sender<Option<Arc<Snapshot>>>,
    poll_now: Arc<Notify>,
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
            let pending = match state.running() {
                Some(_) => chain.pending_requests().await?,
                None => Vec::new(),
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
