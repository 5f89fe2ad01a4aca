//! The chain watcher: a task that reads the contract state and pending requests
//! every poll interval and publishes them on a `watch` channel, so RPC latency
//! never stalls the protocol loop.
//!
//! The pending requests are read whole once, then followed through the contract's
//! log of changes ([`PendingFollower`]): a poll costs what changed since the last
//! one, not the length of the list.

use crate::chain::{Chain, ChainError, ContractState};
use crate::metrics::Metrics;
use near_primitives::hash::CryptoHash;
use primitives::{PendingChange, PendingChanges, PendingRequest, RequestId};
use std::collections::BTreeMap;
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
    let mut follower = PendingFollower::default();
    let mut known_state: Option<KnownState> = None;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
            _ = poll_now.notified() => {}
        }
        let read = poll(&chain, &mut known_state, &mut follower);
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

/// The contract state last read, with its digest.
struct KnownState {
    digest: [u8; 32],
    state: ContractState,
}

/// One read of the contract: the log of changes (one view, which also carries the
/// state's digest), the state only if its digest changed, and the pending
/// requests if a set is running.
async fn poll(
    chain: &Chain,
    known: &mut Option<KnownState>,
    follower: &mut PendingFollower,
) -> Result<Snapshot, ChainError> {
    let (from, limit) = follower.cursor();
    let (page, block) = chain.pending_changes(from, limit).await?;
    let state = match known {
        Some(known) if known.digest == page.state_digest => known.state.clone(),
        _ => {
            // Read at the block the digest came from, so the two agree. An RPC that
            // cannot say which block it read gets no cache: a state older than the
            // digest kept with it would hide every change until the next one.
            let state = chain.state_at(block).await?;
            *known = block.map(|_| KnownState {
                digest: page.state_digest,
                state: state.clone(),
            });
            state
        }
    };
    let pending = match state.running() {
        Some(_) => follower.read(chain, page, block).await?,
        None => {
            *follower = PendingFollower::default();
            Vec::new()
        }
    };
    Ok(Snapshot { state, pending })
}

/// Changes read per view call, and pages read per poll at most (the rest waits
/// for the next poll, so a flood of changes cannot hold the watcher).
const CHANGES_PAGE: u32 = 100;
const MAX_PAGES_PER_POLL: usize = 16;

/// The pending requests as the watcher keeps them: the list read once, then the
/// contract's changes applied in order.
///
/// Why the list is read at the block where the log's place was read (or later,
/// on an RPC that serves the newest state whatever block is asked): the changes
/// between the two are applied again on top of a list that already has them, and
/// replaying a stretch of the log in order ends in the state its last change left
/// (each change sets one request's presence; an `Added` carries the request as it
/// waits at the read). A list older than the place could miss a request added
/// between the two, for good.
///
/// An RPC that does not say which block it read gets the list at the final block;
/// NEAR's RPC always says.
#[derive(Default)]
pub(super) struct PendingFollower {
    /// The next change to read; `None`: read the whole list first.
    next: Option<u64>,
    /// Each pending request with the order it arrived in here.
    requests: BTreeMap<RequestId, (u64, PendingRequest)>,
    arrived: u64,
}

impl PendingFollower {
    /// Where this poll reads the log from, and how far: nowhere (a page of none,
    /// which still says where the log stands) when the list must be read first.
    fn cursor(&self) -> (u64, u32) {
        match self.next {
            Some(next) => (next, CHANGES_PAGE),
            None => (0, 0),
        }
    }

    /// Brings the requests up to the chain's, starting from `page` (read at
    /// [`Self::cursor`], at `block` if the RPC said which), and returns them,
    /// oldest first.
    async fn read(
        &mut self,
        chain: &Chain,
        mut page: PendingChanges,
        mut block: Option<CryptoHash>,
    ) -> Result<Vec<PendingRequest>, ChainError> {
        for _ in 0..MAX_PAGES_PER_POLL {
            match (self.next, page.changes) {
                (None, _) => {
                    // At the block the log's place came from: "final" asked again
                    // of a load-balanced RPC could be an older block, without a
                    // request that place already counts.
                    let list = chain.pending_requests_at(block).await?;
                    self.restart(list, page.latest);
                }
                (Some(from), _) if page.latest < from => {
                    // An RPC answering from an older block than the last one, or a
                    // contract begun anew: the list read again is right either way.
                    tracing::info!(from, latest = page.latest, "the contract's log of pending requests is behind this node's place; reading the list again");
                    self.next = None;
                }
                (Some(from), None) => {
                    tracing::info!(from, latest = page.latest, "fell behind the contract's log of pending requests; reading the list again");
                    self.next = None;
                }
                (Some(_), Some(changes)) => {
                    self.apply(changes);
                    self.next = Some(page.next);
                    if page.next >= page.latest {
                        break;
                    }
                }
            }
            let (from, limit) = self.cursor();
            (page, block) = chain.pending_changes(from, limit).await?;
        }
        Ok(self.requests())
    }

    /// Starts over from the whole `list`, read after the log stood at `at`.
    fn restart(&mut self, list: Vec<PendingRequest>, at: u64) {
        self.requests.clear();
        self.apply(list.into_iter().map(PendingChange::Added));
        self.next = Some(at);
    }

    fn apply(&mut self, changes: impl IntoIterator<Item = PendingChange>) {
        for change in changes {
            match change {
                PendingChange::Added(request) => {
                    let arrived = match self.requests.get(&request.request_id) {
                        Some((arrived, _)) => *arrived,
                        None => {
                            self.arrived += 1;
                            self.arrived
                        }
                    };
                    self.requests.insert(request.request_id, (arrived, request));
                }
                PendingChange::Removed(id) => {
                    self.requests.remove(&id);
                }
            }
        }
    }

    /// The pending requests, in the order they arrived here.
    fn requests(&self) -> Vec<PendingRequest> {
        let mut in_order: Vec<&(u64, PendingRequest)> = self.requests.values().collect();
        in_order.sort_by_key(|(arrived, _)| *arrived);
        in_order.into_iter().map(|(_, r)| r.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use primitives::request::Entropy;
    use primitives::{DomainId, EcdsaPayload, Payload};

    fn request(byte: u8, entropy: u8) -> PendingRequest {
        PendingRequest {
            request_id: RequestId([byte; 32]),
            predecessor: "alice.near".into(),
            payload: Payload::Ecdsa(EcdsaPayload::new([byte; 32]).expect("a valid payload")),
            path: String::new(),
            domain_id: DomainId(0),
            entropy: Entropy([entropy; 32]),
            block_height: 1,
            waiting: 1,
        }
    }

    fn ids(follower: &PendingFollower) -> Vec<u8> {
        follower
            .requests()
            .iter()
            .map(|r| r.request_id.0[0])
            .collect()
    }

    #[test]
    fn changes_replayed_over_a_list_that_has_them_change_nothing() {
        // The log: 1 added, 2 added, 1 removed, 3 added, 1 added again (new entropy).
        let log = [
            PendingChange::Added(request(1, 0)),
            PendingChange::Added(request(2, 0)),
            PendingChange::Removed(RequestId([1; 32])),
            PendingChange::Added(request(3, 0)),
            PendingChange::Added(request(1, 7)),
        ];
        // The list read after change 2: requests 2, 3 and the new 1.
        for read_at in 0..=log.len() {
            let mut follower = PendingFollower::default();
            follower.restart(
                vec![request(2, 0), request(3, 0), request(1, 7)],
                read_at as u64,
            );
            follower.apply(log.iter().skip(read_at).cloned());
            let mut sorted = ids(&follower);
            sorted.sort();
            assert_eq!(sorted, vec![1, 2, 3], "log read from {read_at}");
            let one = follower
                .requests()
                .into_iter()
                .find(|r| r.request_id.0[0] == 1);
            assert_eq!(one.map(|r| r.entropy.0), Some([7; 32]));
        }
    }

    #[test]
    fn requests_come_out_in_the_order_they_arrived() {
        let mut follower = PendingFollower::default();
        follower.restart(vec![request(9, 0), request(4, 0)], 0);
        follower.apply([
            PendingChange::Added(request(2, 0)),
            PendingChange::Removed(RequestId([9; 32])),
            PendingChange::Added(request(7, 0)),
            // A replayed addition keeps its place.
            PendingChange::Added(request(4, 0)),
        ]);
        assert_eq!(ids(&follower), vec![4, 2, 7]);
    }
}
