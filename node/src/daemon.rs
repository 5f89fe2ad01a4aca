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

use crate::blame::{Blame, FailureKind, PeerReport};
use crate::chain::{Chain, ContractState, KeyEvent, ParticipantSet, RunningState};
use crate::engine::{
    for_domain, owner, Clock, DomainEngine, EngineSetup, Event, Job, KeyLoad, KeyTask, NodeMessage,
    StockCount, StockTargets,
};
use crate::metrics::{Metrics, PeerStatus, Stock};
use crate::p2p::noise::StaticKey;
use crate::p2p::{Incoming, Network, NetworkConfig, PeerInfo, Peers};
use crate::storage::Store;
use near_primitives::types::AccountId;
use primitives::{DomainId, PendingRequest, RequestId, SignatureResponse, SignatureScheme};
use sha3::{Digest, Sha3_256};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use threshold::{ParticipantId, Participants};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How often the loop probes its own lag (`Metrics::loop_lag`).
const LAG_PROBE: Duration = Duration::from_millis(100);

/// Peer messages taken off the network per loop turn.
const MAX_DRAIN: usize = 1024;
/// Bulk messages held at most; beyond it generation runs lose messages and time out.
const MAX_BACKLOG: usize = 1 << 16;

/// What a node needs to run. [`NodeConfig::new`] fills in the defaults of
/// [`crate::tuning::Tuning`].
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
    /// Who takes part in the triple and presignature runs this node proposes.
    pub stock_subset: crate::engine::StockSubset,
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
        let mut config = NodeConfig {
            account,
            chain,
            store,
            p2p_key,
            listen,
            network_name: network_name.to_string(),
            poll_interval: Duration::ZERO,
            triple_target: 0,
            presignature_target: 0,
            max_concurrent_generations: 0,
            protocol_timeout: Duration::ZERO,
            heartbeat: Duration::ZERO,
            live_window: Duration::ZERO,
            leader_grace: Duration::ZERO,
            stock_subset: crate::engine::StockSubset::default(),
            metrics,
        };
        // The defaults live in one place: `Tuning::default`.
        crate::tuning::Tuning::default().apply(&mut config);
        config
    }
}

/// What a domain's signing engine was built for: the running set and the
/// attempt its key shares come from. A change rebuilds it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct SignerKey {
    scheme: SignatureScheme,
    epoch: u64,
    participants: Vec<u32>,
    threshold: usize,
    /// The key-event attempt of the running set's shares of the domain.
    key_attempt: u64,
}

/// The signing engine of one domain with a key.
struct Signer {
    engine: Box<dyn DomainEngine>,
    key: SignerKey,
}

/// What the key engines were built for: one attempt of the contract's key event,
/// with the task of each domain it covers (one for keygen, every domain for a
/// resharing).
#[derive(Clone, Debug, PartialEq, Eq)]
struct KeyerKey {
    participants: Vec<u32>,
    threshold: usize,
    tasks: Vec<(SignatureScheme, KeyTask)>,
}

impl KeyerKey {
    fn resharing(&self) -> bool {
        matches!(self.tasks.first(), Some((_, KeyTask::Reshare { .. })))
    }
}

/// A vote this node owes the contract for the key event's current attempt (once
/// every domain of the attempt has its share stored here).
#[derive(Clone, Debug)]
struct OwedVote {
    attempt: u64,
    /// `Some` for keygen (`vote_pk`), `None` for resharing (`vote_reshared`).
    public_key: Option<String>,
    /// When it was last sent; it is sent again while the chain does not show it.
    sent_at: Option<Instant>,
}

/// How long a vote the chain does not show yet waits before it is sent again.
const VOTE_RETRY: Duration = Duration::from_secs(3);
/// Messages held while this node has no engine for them yet (it has not seen the
/// key event, or the domain's key, that the sender has).
const MAX_UNROUTED: usize = 4096;

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

/// The participant set of `ids`, if it is a valid set that includes `me` (an engine
/// is built only for a set this node belongs to).
fn set_with(ids: &[u32], me: ParticipantId) -> Option<Participants> {
    Participants::new(ids.iter().copied().map(ParticipantId))
        .ok()
        .filter(|set| set.contains(me))
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
    /// Pending requests (read whenever a set is running).
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

/// What a finished chain write reports back to the loop.
enum WriteDone {
    /// `respond` landed (`Ok`) or failed, and whether the failure means the request
    /// is gone (answered by another leader, or timed out).
    Voted { ok: bool },
    /// A failed attempt was reported (or reporting it failed; the timeout ends it).
    Reported,
    Responded {
        request_id: RequestId,
        first_seen: Instant,
        result: Result<(), RespondFailure>,
    },
}

/// Why a `respond` did not land.
#[derive(Debug, PartialEq, Eq)]
enum RespondFailure {
    /// The contract no longer waits for it: sending again cannot help.
    RequestGone,
    /// Anything else (RPC down, nonce races, ...): worth sending again.
    Transient,
}

impl RespondFailure {
    fn of(error: &crate::chain::ChainError) -> Self {
        let text = error.to_string();
        // The contract's stable refusal texts for an answered or unknown request.
        if text.contains("no pending signature request matches")
            || text.contains("has already been answered")
        {
            RespondFailure::RequestGone
        } else {
            RespondFailure::Transient
        }
    }
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
            changed = snapshots.changed() => {
                if changed.is_err() {
                    break Ok(()); // the watcher stopped: we are shutting down
                }
                let snapshot = snapshots.borrow_and_update().clone();
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
            poll_now.notify_one();
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
    domain: DomainId,
    first_seen: Instant,
    /// The chain entropy the engine signs this request with (a request made again
    /// under the same id after a gap gets new entropy, and signers must agree).
    entropy: [u8; 32],
    /// When this node last started leading it.
    led_at: Option<Instant>,
    /// The signature this node computed for it, until `respond` lands.
    answer: Option<Answer>,
}

/// A signature to deliver. It is sent again with backoff while `respond` fails and
/// the request is still pending: a signature is never recomputed (and a
/// presignature spent) because a transaction failed (DESIGN §8).
struct Answer {
    response: SignatureResponse,
    sends: u32,
    next_send: Instant,
    in_flight: bool,
}

/// The first pause before sending a failed `respond` again; it doubles up to
/// [`RESPOND_BACKOFF_MAX`].
const RESPOND_BACKOFF: Duration = Duration::from_millis(500);
const RESPOND_BACKOFF_MAX: Duration = Duration::from_secs(30);

impl Answer {
    fn backoff(&self) -> Duration {
        let doublings = self.sends.saturating_sub(1).min(16);
        (RESPOND_BACKOFF * 2u32.pow(doublings)).min(RESPOND_BACKOFF_MAX)
    }
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

    fn on_snapshot(&mut self, snapshot: &Snapshot, writes: &mut JoinSet<WriteDone>) {
        let state = &snapshot.state;
        let running = state.running();
        let key_event = state.key_event();
        let sets: Vec<&ParticipantSet> = running
            .map(|r| &r.participants)
            .into_iter()
            .chain(key_event.map(|e| &e.participants))
            .collect();
        self.peers.replace(peers_of(&sets));
        self.me = sets
            .iter()
            .flat_map(|s| s.participants.values())
            .find(|p| p.account_id == self.config.account)
            .map(|p| ParticipantId(p.id));
        let mut everyone: Vec<ParticipantId> = sets
            .iter()
            .flat_map(|s| s.participants.values().map(|p| ParticipantId(p.id)))
            .collect();
        everyone.sort();
        everyone.dedup();
        self.everyone = everyone;
        self.update_status(snapshot, &sets);
        self.running_set = running.and_then(|r| to_participants(&r.participants));
        self.running_threshold = running.map_or(0, |r| r.threshold);
        self.key_event = key_event.cloned();
        let running_epoch = running.map(|r| r.epoch);
        if let Some(epoch) = running_epoch.filter(|e| Some(*e) != self.shares_pruned_for) {
            self.shares_pruned_for = Some(epoch);
            self.forget_old_shares(running, epoch, key_event.is_none());
        }
        let Some(me) = self.me else {
            self.signers.clear();
            self.keyers.clear();
            return;
        };
        let signer_keys: BTreeMap<DomainId, SignerKey> = running
            .map(|r| {
                r.domains
                    .iter()
                    .map(|d| {
                        let key = SignerKey {
                            scheme: d.scheme,
                            epoch: r.epoch,
                            participants: r.participants.ids(),
                            threshold: r.threshold,
                            key_attempt: d.attempt,
                        };
                        (d.id, key)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let rebuilt = self.rebuild_signers(me, signer_keys);
        let keyer_key = key_event.and_then(|event| self.key_tasks(event, running));
        if keyer_key != self.keyer_key {
            if let Some(previous) = self.keyer_key.take() {
                self.discard_failed_attempt(&previous, running);
            }
            self.rebuild_keyers(me, keyer_key);
            self.route_unrouted();
        } else if rebuilt {
            self.route_unrouted();
        }
        self.settle_votes(writes);
        self.track_requests(&snapshot.pending);
    }

    /// Deletes the key shares the network has moved past: those of epochs before
    /// the running one (its keys are final), and, when no key event is under way,
    /// those of later epochs (left by attempts that never completed). Stolen old
    /// disks then hold no shares of the keys.
    fn forget_old_shares(&self, running: Option<&RunningState>, epoch: u64, no_key_event: bool) {
        let store = &self.config.store;
        for domain in running.iter().flat_map(|r| r.domains.iter()) {
            let epochs = match store.key_share_epochs(domain.id) {
                Ok(epochs) => epochs,
                Err(e) => {
                    tracing::error!(error = %e, "cannot list the stored key shares");
                    return;
                }
            };
            let stale = epochs
                .into_iter()
                .filter(|e| *e < epoch || (no_key_event && *e > epoch));
            for old in stale {
                match store.delete_key_share(domain.id, old) {
                    Ok(_) => tracing::info!(
                        domain = domain.id.0,
                        epoch = old,
                        running_epoch = epoch,
                        "deleted a key share of a past epoch"
                    ),
                    Err(e) => {
                        tracing::error!(epoch = old, error = %e, "cannot delete an old key share")
                    }
                }
            }
        }
    }

    /// The key event moved on from the attempt of `previous` (a next attempt, or
    /// the event ended): a share this node stored from that attempt is deleted
    /// unless the running set now signs with it. An attempt that did not complete
    /// never will, so its shares are of no use, and a share kept would be a piece
    /// of a key nobody may use (DESIGN §5: a node discards any share from an
    /// attempt that did not complete).
    fn discard_failed_attempt(&self, previous: &KeyerKey, running: Option<&RunningState>) {
        let store = &self.config.store;
        for (_, task) in &previous.tasks {
            let (domain, epoch, attempt) = (task.domain(), task.epoch(), task.attempt());
            let completed = running.is_some_and(|r| {
                r.epoch == epoch
                    && r.domains
                        .iter()
                        .any(|d| d.id == domain && d.attempt == attempt)
            });
            if completed {
                continue;
            }
            match store.key_share_attempt(domain, epoch) {
                Ok(Some(stored)) if stored == attempt => {
                    match store.delete_key_share(domain, epoch) {
                        Ok(_) => tracing::info!(
                            domain = domain.0,
                            epoch,
                            attempt,
                            "deleted the key share of an attempt that did not complete"
                        ),
                        Err(e) => {
                            tracing::error!(domain = domain.0, epoch, error = %e, "cannot delete a key share")
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(domain = domain.0, epoch, error = %e, "cannot read a key share")
                }
            }
        }
    }

    /// The key tasks of the contract's key event: keygen of its domain, or the
    /// resharing of every domain of the running set.
    fn key_tasks(&mut self, event: &KeyEvent, running: Option<&RunningState>) -> Option<KeyerKey> {
        let tasks = match (event.domain, running) {
            (Some(domain), _) => vec![(
                domain.scheme,
                KeyTask::Generate {
                    epoch: event.epoch,
                    domain: domain.id,
                    attempt: event.attempt,
                },
            )],
            (None, Some(previous)) => {
                let old = to_participants(&previous.participants)?;
                previous
                    .domains
                    .iter()
                    .map(|key| {
                        let task = KeyTask::Reshare {
                            epoch: event.epoch,
                            domain: key.id,
                            old_participants: old.clone(),
                            old_threshold: previous.threshold,
                            public_key: key.public_key.clone(),
                            attempt: event.attempt,
                        };
                        (key.scheme, task)
                    })
                    .collect()
            }
            (None, None) => {
                tracing::error!(epoch = event.epoch, "a resharing without a running set");
                return None;
            }
        };
        Some(KeyerKey {
            participants: event.participants.ids(),
            threshold: event.threshold,
            tasks,
        })
    }

    fn update_status(&self, snapshot: &Snapshot, sets: &[&ParticipantSet]) {
        let running = snapshot.state.running();
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
            status.contract_state = snapshot.state.name().to_string();
            status.epoch = running.map(|r| r.epoch);
            status.threshold = running.map(|r| r.threshold);
            status.key_event_attempt = snapshot.state.key_event().map(|e| e.attempt);
            status.participants = participants.into_values().collect();
            status.pending_requests = snapshot.pending.len();
        });
    }

    /// The signing engines for the running set, one per domain with a key, each
    /// with this node's share of the running epoch's key if it holds the one from
    /// the attempt the contract names. Engines whose domain and set are unchanged
    /// are kept. Returns whether any engine was built.
    fn rebuild_signers(&mut self, me: ParticipantId, keys: BTreeMap<DomainId, SignerKey>) -> bool {
        let mut old = std::mem::take(&mut self.signers);
        let mut rebuilt = false;
        for (domain, key) in keys {
            match old.remove(&domain) {
                Some(signer) if signer.key == key => {
                    self.signers.insert(domain, signer);
                }
                previous => {
                    rebuilt = true;
                    if let Some(signer) = self.build_signer(me, domain, key, previous) {
                        self.signers.insert(domain, signer);
                    }
                }
            }
        }
        for domain in old.keys() {
            self.requests.retain(|_, t| t.domain != *domain);
        }
        rebuilt
    }

    /// Hands the messages held for want of an engine to the engines there are now.
    fn route_unrouted(&mut self) {
        let timeout = self.config.protocol_timeout;
        for (since, from, domain, message) in std::mem::take(&mut self.unrouted) {
            if since.elapsed() <= timeout {
                self.route(since, from, domain, message);
            }
        }
    }

    fn build_signer(
        &mut self,
        me: ParticipantId,
        domain: DomainId,
        key: SignerKey,
        previous: Option<Signer>,
    ) -> Option<Signer> {
        let participants = set_with(&key.participants, me)?;
        let mut engine = for_domain(
            key.scheme,
            EngineSetup {
                domain,
                epoch: key.epoch,
                me,
                participants,
                threshold: key.threshold,
                store: self.config.store.clone(),
                timeout: self.config.protocol_timeout,
                clock: Clock::system(),
                seed: EngineSetup::os_seed(),
            },
        );
        match engine.load_key(key.key_attempt) {
            Ok(KeyLoad::Loaded) => {
                // Stock made under another epoch's key shares can never be used again.
                match engine.retire_other_epochs() {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(
                        domain = domain.0,
                        retired = n,
                        "retired stock of an earlier epoch"
                    ),
                    Err(e) => tracing::error!(error = %e, "cannot retire old stock"),
                }
            }
            Ok(KeyLoad::OtherAttempt(stored)) => tracing::error!(
                domain = domain.0,
                epoch = key.epoch,
                stored,
                attempt = key.key_attempt,
                "the key share stored here is from another attempt than the one the \
                 contract completed: this node cannot sign in this domain until a \
                 resharing includes it"
            ),
            Ok(KeyLoad::Missing) => tracing::error!(
                domain = domain.0,
                epoch = key.epoch,
                "this node holds no key share of the domain for the running epoch and \
                 cannot sign in it; it takes part again once a resharing includes it"
            ),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the key share");
                return None;
            }
        }
        engine.set_stock_subset(self.config.stock_subset);
        // Peers that moved on first may have sent us runs of this set already.
        if let Some(mut previous) = previous {
            engine.adopt_early(previous.engine.take_early());
        }
        if let Some(keyer) = self.keyers.get_mut(&domain) {
            engine.adopt_early(keyer.take_early());
        }
        // The new engine learns the domain's pending requests from this snapshot again.
        self.requests.retain(|_, t| t.domain != domain);
        tracing::info!(domain = domain.0, scheme = ?key.scheme, epoch = key.epoch, me = me.0, "signing engine ready");
        Some(Signer { engine, key })
    }

    /// The key engines for the key event's current attempt, one per domain (a new
    /// attempt is new engines: runs and shares of the old one are void).
    fn rebuild_keyers(&mut self, me: ParticipantId, key: Option<KeyerKey>) {
        let mut old = std::mem::take(&mut self.keyers);
        self.keyer_key = key.clone();
        self.owed_vote = None;
        self.keys_stored.clear();
        let participants = key.as_ref().and_then(|k| set_with(&k.participants, me));
        let (Some(key), Some(participants)) = (key, participants) else {
            for (domain, mut keyer) in old {
                if let Some(signer) = self.signers.get_mut(&domain) {
                    signer.engine.adopt_early(keyer.take_early());
                }
            }
            return;
        };
        for (scheme, task) in &key.tasks {
            let domain = task.domain();
            let mut engine = for_domain(
                *scheme,
                EngineSetup {
                    domain,
                    epoch: task.epoch(),
                    me,
                    participants: participants.clone(),
                    threshold: key.threshold,
                    store: self.config.store.clone(),
                    timeout: self.config.protocol_timeout,
                    clock: Clock::system(),
                    seed: EngineSetup::os_seed(),
                },
            );
            engine.set_key_task(Some(task.clone()));
            if let KeyTask::Reshare {
                old_participants, ..
            } = task
            {
                // Resharing starts from the running epoch's share of the completed attempt.
                let signing = self.signers.get(&domain).map(|s| &s.key);
                if let Some(signing) = signing.filter(|_| old_participants.contains(me)) {
                    match engine.load_reshare_input(signing.epoch, signing.key_attempt) {
                        Ok(true) => {}
                        Ok(false) => tracing::warn!(
                            domain = domain.0,
                            "no share of the old key to reshare from"
                        ),
                        Err(e) => {
                            tracing::error!(error = %e, "cannot read the key share to reshare")
                        }
                    }
                }
            }
            match engine.resume_finished_key_task() {
                // Restarted after storing this attempt's share: vote again, run nothing.
                Ok(true) => {
                    tracing::info!(domain = domain.0, "this attempt's share is stored already")
                }
                Ok(false) => {}
                Err(e) => tracing::error!(error = %e, "cannot read the key share"),
            }
            if let Some(mut previous) = old.remove(&domain) {
                engine.adopt_early(previous.take_early());
            }
            tracing::info!(
                domain = domain.0,
                epoch = task.epoch(),
                attempt = task.attempt(),
                me = me.0,
                "key engine ready"
            );
            self.keyers.insert(domain, engine);
        }
    }

    /// Sends the vote this node owes for the key event's current attempt, unless the
    /// chain already shows it or one is on its way.
    fn settle_votes(&mut self, writes: &mut JoinSet<WriteDone>) {
        let (Some(owed), Some(event)) = (self.owed_vote.as_mut(), self.key_event.as_ref()) else {
            return;
        };
        if owed.attempt != event.attempt || event.votes.contains(&self.config.account) {
            if owed.attempt != event.attempt || owed.sent_at.is_some() {
                self.owed_vote = None;
            }
            return;
        }
        if self.vote_in_flight || owed.sent_at.is_some_and(|at| at.elapsed() < VOTE_RETRY) {
            return;
        }
        owed.sent_at = Some(Instant::now());
        self.vote_in_flight = true;
        let chain = self.config.chain.clone();
        let event = event.clone();
        let public_key = owed.public_key.clone();
        tracing::info!(
            attempt = event.attempt,
            keygen = public_key.is_some(),
            "voting for the key event's attempt"
        );
        writes.spawn(async move {
            let result = match &public_key {
                Some(key) => chain.vote_pk(&event, key).await,
                None => chain.vote_reshared(&event).await,
            };
            if let Err(e) = &result {
                tracing::warn!(attempt = event.attempt, error = %e, "voting failed; retrying while the attempt lasts");
            }
            WriteDone::Voted { ok: result.is_ok() }
        });
    }

    /// Tells the signing engines which requests are pending and forgets answered
    /// ones. The node derives each request's tweak itself from the predecessor and
    /// path, and checks the request id against the fields, trusting no RPC with it.
    fn track_requests(&mut self, pending: &[PendingRequest]) {
        let now = Instant::now();
        let current: BTreeSet<RequestId> = pending.iter().map(|r| r.request_id).collect();
        let mut gone = Vec::new();
        self.requests.retain(|id, tracked| {
            let keep = current.contains(id);
            if !keep {
                gone.push((tracked.domain, *id));
            }
            keep
        });
        for (domain, id) in &gone {
            if let Some(signer) = self.signers.get_mut(domain) {
                signer.engine.remove_request(id);
            }
        }
        for request in pending {
            let Some(signer) = self.signers.get_mut(&request.domain_id) else {
                continue;
            };
            if let Some(tracked) = self.requests.get_mut(&request.request_id) {
                if tracked.entropy == request.entropy.0 {
                    continue;
                }
                // Made again under the same id while this node looked away: sign it
                // as the chain now shows it, as the other signers will.
                tracing::info!(request = %request.request_id, "request made again with new entropy");
                tracked.entropy = request.entropy.0;
            }
            if !request.id_matches() {
                tracing::warn!(request = %request.request_id, "a pending request whose id does not match its fields; ignored");
                continue;
            }
            if let Err(why) = signer.engine.add_request(request) {
                tracing::warn!(request = %request.request_id, %why, "a pending request this node cannot sign; ignored");
                continue;
            }
            if self.requests.contains_key(&request.request_id) {
                continue; // a refreshed request keeps its place and any answer
            }
            self.config.metrics.requests_seen.inc();
            tracing::debug!(request = %request.request_id, domain = request.domain_id.0, "new request");
            self.requests.insert(
                request.request_id,
                Tracked {
                    domain: request.domain_id,
                    first_seen: now,
                    entropy: request.entropy.0,
                    led_at: None,
                    answer: None,
                },
            );
        }
    }

    fn is_live(&self, peer: ParticipantId, now: Instant) -> bool {
        Some(peer) == self.me
            || self
                .last_heard
                .get(&peer)
                .is_some_and(|at| now.duration_since(*at) <= self.config.live_window)
    }

    /// The members of `set` this node considers live (itself included).
    fn live_of(&self, set: &Participants, now: Instant) -> Option<Participants> {
        Participants::new(set.iter().filter(|p| self.is_live(*p, now))).ok()
    }

    fn send_heartbeats(&self, network: &Network) {
        // Without a share of any running key (say it missed the end of a resharing)
        // and outside any key event this node cannot take part; staying silent
        // keeps the others from inviting it.
        let keyless = self.keyers.is_empty()
            && !self.signers.is_empty()
            && self.signers.values().all(|s| !s.engine.has_key());
        if keyless {
            return;
        }
        let ping = Arc::new(NodeMessage::Ping.encode(DomainId::LEGACY_ECDSA));
        for peer in self.everyone.iter().filter(|p| Some(**p) != self.me) {
            // A full queue means the peer is unreachable; the heartbeat is moot.
            let _ = network.send(*peer, ping.clone());
        }
    }

    /// A message from a peer: proof of life, then handled at once if urgent
    /// (signing, key tasks, heartbeats), else queued behind earlier bulk traffic.
    fn on_message(&mut self, incoming: Incoming) {
        let from = incoming.from;
        self.last_heard.insert(from, Instant::now());
        let (domain, message) = match NodeMessage::decode(&incoming.message) {
            Ok(decoded) => decoded,
            Err(e) => {
                tracing::debug!(peer = from.0, error = %e, "ignored a peer message");
                // The transport authenticated the sender: these bytes are its own.
                self.peer_failed(from, FailureKind::Malformed, &e.to_string(), Instant::now());
                return;
            }
        };
        if message == NodeMessage::Ping {
            return;
        }
        #[cfg(feature = "misbehave")]
        let Some(message) = (match self.misbehave.as_mut() {
            Some(m) => m.incoming(from, domain, message),
            None => Some(message),
        }) else {
            return;
        };
        if message.is_urgent() {
            self.handle(from, domain, message);
        } else if self.backlog.len() < MAX_BACKLOG {
            self.backlog.push_back((from, domain, message));
        } else {
            tracing::warn!(peer = from.0, "backlog full; dropped a generation message");
        }
    }

    fn work_backlog(&mut self) {
        if let Some((from, domain, message)) = self.backlog.pop_front() {
            self.handle(from, domain, message);
        }
    }

    /// Routes a message to its domain's engine: key-task traffic to the key engine,
    /// everything else to the signing engine.
    fn handle(&mut self, from: ParticipantId, domain: DomainId, message: NodeMessage) {
        self.route(Instant::now(), from, domain, message);
    }

    /// [`Node::handle`] for a message that came at `since`: one for an engine this
    /// node does not have yet is held (see `Node::unrouted`).
    fn route(
        &mut self,
        since: Instant,
        from: ParticipantId,
        domain: DomainId,
        message: NodeMessage,
    ) {
        let engine = if message.is_key_event() {
            self.keyers.get_mut(&domain)
        } else {
            self.signers.get_mut(&domain).map(|s| &mut s.engine)
        };
        let Some(engine) = engine else {
            if self.unrouted.len() < MAX_UNROUTED {
                self.unrouted.push_back((since, from, domain, message));
            }
            return;
        };
        if let Err(e) = engine.handle_message(from, message) {
            tracing::debug!(peer = from.0, domain = domain.0, error = %e, "ignored a peer message");
        }
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

    /// `live` without the peers blame excludes now, unless that leaves fewer than
    /// the threshold: then a suspect peer is better than no service at all.
    fn eligible(&self, live: &Participants, now: Instant) -> Participants {
        let kept = live.iter().filter(|p| !self.blame.is_excluded(*p, now));
        match Participants::new(kept) {
            Ok(kept) if kept.len() >= self.running_threshold => kept,
            _ => live.clone(),
        }
    }

    /// Feeds what the engines learned about peers into the blame record.
    fn take_peer_reports(&mut self) {
        let now = Instant::now();
        let engines = self
            .signers
            .values_mut()
            .map(|s| &mut s.engine)
            .chain(self.keyers.values_mut());
        let reports: Vec<PeerReport> = engines.flat_map(|e| e.drain_peer_reports()).collect();
        for report in reports {
            match report {
                PeerReport::Failure { peer, kind, detail } => {
                    self.peer_failed(peer, kind, &detail, now)
                }
                PeerReport::Success { peer } => self.blame.success(peer, now),
            }
        }
    }

    fn peer_failed(&mut self, peer: ParticipantId, kind: FailureKind, detail: &str, now: Instant) {
        tracing::debug!(peer = peer.0, %kind, detail, "a run failed because of a peer");
        if let Some(exclusion) = self.blame.failure(peer, kind, now) {
            tracing::warn!(
                peer = peer.0,
                %kind,
                detail,
                exclusion_secs = exclusion.as_secs(),
                "a peer keeps failing our runs: left out of new runs for a while"
            );
        }
    }

    /// Publishes the blame record, with the peers' accounts.
    fn report_blame(&self, now: Instant) {
        let mut blamed = self.blame.report(now);
        self.config.metrics.set_status(|status| {
            for entry in blamed.iter_mut() {
                if let Some(peer) = status.participants.iter().find(|p| p.id == entry.id) {
                    entry.account_id = peer.account_id.clone();
                }
            }
            status.blamed = blamed;
        });
    }

    /// Publishes the stock (as this turn found it) and the runs under way.
    fn report_stock(&self, stocks: &BTreeMap<DomainId, StockCount>) {
        let running = self.signers.values().map(|s| s.engine.running()).sum();
        let stock = |count: &StockCount| Stock {
            triples: count.triples,
            presignatures: count.presignatures,
        };
        self.config.metrics.set_status(|status| {
            status.stock = stocks
                .get(&DomainId::LEGACY_ECDSA)
                .map(stock)
                .unwrap_or_default();
            status.stock_by_domain = stocks.iter().map(|(d, c)| (d.0, stock(c))).collect();
            status.running_protocols = running;
        });
    }

    /// Leads the pending requests whose turn it is for this node.
    fn lead(&mut self, live: &Participants, now: Instant) {
        let (Some(me), Some(all)) = (self.me, self.running_set.as_ref()) else {
            return;
        };
        let retry_after = self.config.protocol_timeout;
        // Domains out of usable presignatures this turn.
        let mut exhausted = BTreeSet::new();
        for (request_id, tracked) in self.requests.iter_mut() {
            let led_lately = tracked
                .led_at
                .is_some_and(|at| now.duration_since(at) < retry_after);
            if led_lately || tracked.answer.is_some() || exhausted.contains(&tracked.domain) {
                continue;
            }
            let Some(signer) = self.signers.get_mut(&tracked.domain) else {
                continue;
            };
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
            match signer.engine.propose_sign(*request_id, live) {
                Ok(Some(presignature)) => {
                    self.config.metrics.sign_runs_led.inc();
                    tracing::debug!(request = %request_id, presignature, waited_ms = now.duration_since(tracked.first_seen).as_millis() as u64, "leading a request");
                    if rank > 0 {
                        tracing::info!(request = %request_id, rank, "leading a request in place of a silent leader");
                    }
                    tracked.led_at = Some(now);
                }
                Ok(None) => {
                    tracing::debug!(request = %request_id, domain = tracked.domain.0, "no usable presignature to lead with yet");
                    exhausted.insert(tracked.domain);
                }
                Err(e) => {
                    tracing::warn!(request = %request_id, error = %e, "cannot lead a request")
                }
            }
        }
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

    /// Sends `respond` for every computed signature whose turn it is.
    fn deliver_answers(&mut self, writes: &mut JoinSet<WriteDone>) {
        let now = Instant::now();
        for (request_id, tracked) in self.requests.iter_mut() {
            let Some(answer) = tracked.answer.as_mut() else {
                continue;
            };
            if answer.in_flight || now < answer.next_send {
                continue;
            }
            answer.in_flight = true;
            answer.sends += 1;
            if answer.sends > 1 {
                tracing::info!(request = %request_id, send = answer.sends, "sending respond again");
            }
            let chain = self.config.chain.clone();
            let response = answer.response.clone();
            let (request_id, first_seen) = (*request_id, tracked.first_seen);
            writes.spawn(async move {
                let result = chain.respond(&request_id, &response).await.map_err(|e| {
                    tracing::warn!(request = %request_id, error = %e, "respond failed");
                    RespondFailure::of(&e)
                });
                WriteDone::Responded {
                    request_id,
                    first_seen,
                    result,
                }
            });
        }
    }

    /// What the key engines report: once every domain of the attempt has its share
    /// stored, the node votes (and repeats the vote until the chain shows it); a
    /// failed run of the current attempt is reported, so the contract starts the
    /// next attempt now.
    fn on_key_event(&mut self, event: Event, writes: &mut JoinSet<WriteDone>) {
        let Some(key) = self.keyer_key.as_ref() else {
            return;
        };
        let resharing = key.resharing();
        match event {
            Event::KeyShareStored {
                domain,
                epoch,
                attempt,
                public_key,
            } => {
                tracing::info!(domain = domain.0, epoch, attempt, %public_key, resharing, "key share stored");
                self.keys_stored.insert(domain, public_key);
                if self.keys_stored.len() < key.tasks.len() {
                    return;
                }
                // Keygen covers one domain: its key is the vote.
                let public_key = (!resharing)
                    .then(|| self.keys_stored.values().next().cloned())
                    .flatten();
                self.owed_vote = Some(OwedVote {
                    attempt,
                    public_key,
                    sent_at: None,
                });
                self.settle_votes(writes);
            }
            Event::Failed { job, reason } => {
                self.config.metrics.protocol_failures.inc();
                let Some(attempt) = job.attempt() else {
                    return;
                };
                let current = self.key_event.as_ref().filter(|e| e.attempt == attempt);
                let Some(event) = current.cloned() else {
                    tracing::debug!(attempt, %reason, "a key run of a past attempt ended");
                    return;
                };
                if !self.aborted.insert(attempt) {
                    return;
                }
                tracing::warn!(attempt, %reason, "the key event's attempt failed here; reporting it");
                let chain = self.config.chain.clone();
                writes.spawn(async move {
                    if let Err(e) = chain.vote_abort_key_event(&event).await {
                        tracing::warn!(attempt, error = %e, "reporting the failed attempt failed");
                    }
                    WriteDone::Reported
                });
            }
            _ => {}
        }
    }

    fn on_write_done(&mut self, done: WriteDone) {
        let (request_id, first_seen, result) = match done {
            WriteDone::Reported => return,
            WriteDone::Voted { ok } => {
                self.vote_in_flight = false;
                if !ok {
                    if let Some(owed) = self.owed_vote.as_mut() {
                        owed.sent_at = None;
                    }
                }
                return;
            }
            WriteDone::Responded {
                request_id,
                first_seen,
                result,
            } => (request_id, first_seen, result),
        };
        let metrics = &self.config.metrics;
        let tracked = self.requests.get_mut(&request_id);
        match result {
            Ok(()) => {
                tracing::info!(request = %request_id, ms = first_seen.elapsed().as_millis() as u64, "answered a request");
                metrics.signatures.inc();
                metrics.sign_latency.observe(first_seen.elapsed());
                // The next read of the chain drops the request; until then, no resend.
                if let Some(answer) = tracked.and_then(|t| t.answer.as_mut()) {
                    answer.next_send = Instant::now() + RESPOND_BACKOFF_MAX;
                    answer.in_flight = false;
                }
            }
            Err(failure) => {
                metrics.respond_failures.inc();
                let Some(tracked) = tracked else {
                    return;
                };
                match (failure, tracked.answer.as_mut()) {
                    (RespondFailure::Transient, Some(answer)) => {
                        answer.in_flight = false;
                        answer.next_send = Instant::now() + answer.backoff();
                    }
                    // Gone: keep the answer (never lead again); the next read drops it.
                    (RespondFailure::RequestGone, Some(answer)) => {
                        answer.next_send = Instant::now() + RESPOND_BACKOFF_MAX;
                        answer.in_flight = false;
                    }
                    (_, None) => {}
                }
            }
        }
    }
}
