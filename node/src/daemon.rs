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

use crate::chain::{Chain, ContractState, KeyEvent, ParticipantSet, RunningState};
use crate::engine::{attempt_of, owner, Engine, Event, Job, KeyTask, NodeMessage};
use crate::metrics::{Metrics, PeerStatus, Stock};
use crate::p2p::noise::StaticKey;
use crate::p2p::{Incoming, Network, NetworkConfig, PeerInfo, Peers};
use crate::storage::Store;
use near_primitives::types::AccountId;
use primitives::derivation::Tweak;
use primitives::{
    near_key, DomainId, Payload, PendingRequest, RequestId, SignatureResponse, SignatureScheme,
};
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

/// The one domain this node signs for so far: domain 0, secp256k1 (Ed25519 and
/// further domains come with the scheme-per-folder node).
const SIGNING_DOMAIN: DomainId = DomainId::LEGACY_ECDSA;

/// What the signing engine was built for: the running set and the attempt its key
/// shares come from. A change rebuilds it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct SignerKey {
    epoch: u64,
    participants: Vec<u32>,
    threshold: usize,
    /// The key-event attempt of the running set's shares of our domain (`None`:
    /// the domain has no key yet).
    key_attempt: Option<u64>,
}

/// What the key engine was built for: one attempt of the contract's key event.
#[derive(Clone, Debug, PartialEq, Eq)]
struct KeyerKey {
    participants: Vec<u32>,
    threshold: usize,
    task: KeyTask,
}

/// A vote this node owes the contract for the key event's current attempt.
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
/// Key-event messages held while this node has not seen the key event yet.
const MAX_KEY_EARLY: usize = 4096;

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
            .signer
            .as_mut()
            .is_some_and(|e| e.take_awaiting_chain())
        {
            // A leader saw a request before us: read the chain now, not at the tick.
            poll_now.notify_one();
        }
        if let Some((net, _)) = network.as_ref() {
            for engine in node.signer.iter_mut().chain(node.keyer.iter_mut()) {
                for (to, bytes) in engine.drain_outbox() {
                    if let Err(e) = net.send(to, Arc::new(bytes)) {
                        tracing::debug!(peer = to.0, error = %e, "could not queue a message");
                    }
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
    /// Signs for the running set (whatever key event is under way).
    signer: Option<Engine>,
    signer_key: Option<SignerKey>,
    /// Runs the key event's current attempt, if this node takes part in it.
    keyer: Option<Engine>,
    keyer_key: Option<KeyerKey>,
    /// The key event as last read, for votes and reports.
    key_event: Option<KeyEvent>,
    owed_vote: Option<OwedVote>,
    vote_in_flight: bool,
    /// Attempts this node already reported failed.
    aborted: BTreeSet<u64>,
    /// Key-event messages that came before this node saw the key event.
    key_early: VecDeque<(ParticipantId, NodeMessage)>,
    /// The running participants, if a set is running.
    running_set: Option<Participants>,
    /// Everyone this node talks to: the running set and the key event's.
    everyone: Vec<ParticipantId>,
    requests: HashMap<RequestId, Tracked>,
    me: Option<ParticipantId>,
    last_heard: HashMap<ParticipantId, Instant>,
    /// Peers live at the last check, to notice who went silent.
    was_live: BTreeSet<ParticipantId>,
    /// Bulk peer messages (triple and presignature generation) not handled yet.
    backlog: VecDeque<(ParticipantId, NodeMessage)>,
    /// Key tasks this node cannot run, already logged.
    unsupported_logged: Option<String>,
}

/// Whether a message belongs to a key task (keygen, resharing).
fn is_key_message(message: &NodeMessage) -> bool {
    use threshold::wire::ProtocolKind;
    match message {
        NodeMessage::Start(start) => attempt_of(&start.job).is_some(),
        NodeMessage::Decline { job, .. } => attempt_of(job).is_some(),
        NodeMessage::Protocol(bytes) => threshold::wire::Header::decode(bytes)
            .is_ok_and(|(h, _)| matches!(h.kind, ProtocolKind::Keygen | ProtocolKind::Reshare)),
        _ => false,
    }
}

impl Node {
    fn new(config: NodeConfig) -> Self {
        Node {
            config,
            peers: Peers::default(),
            signer: None,
            signer_key: None,
            keyer: None,
            keyer_key: None,
            key_event: None,
            owed_vote: None,
            vote_in_flight: false,
            aborted: BTreeSet::new(),
            key_early: VecDeque::new(),
            running_set: None,
            everyone: Vec::new(),
            requests: HashMap::new(),
            me: None,
            last_heard: HashMap::new(),
            was_live: BTreeSet::new(),
            backlog: VecDeque::new(),
            unsupported_logged: None,
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
        self.key_event = key_event.cloned();
        let running_epoch = running.map(|r| r.epoch);
        if running_epoch != self.signer_key.as_ref().map(|k| k.epoch) {
            if let Some(epoch) = running_epoch {
                self.forget_old_shares(epoch, key_event.is_none());
            }
        }
        let Some(me) = self.me else {
            self.signer = None;
            self.keyer = None;
            return;
        };
        let signer_key = running.map(|r| SignerKey {
            epoch: r.epoch,
            participants: r.participants.ids(),
            threshold: r.threshold,
            key_attempt: r.domain(SIGNING_DOMAIN).map(|d| d.attempt),
        });
        if signer_key != self.signer_key {
            self.rebuild_signer(me, signer_key);
        }
        let keyer_key = key_event.and_then(|event| self.key_task(event, running));
        if keyer_key != self.keyer_key {
            self.rebuild_keyer(me, keyer_key);
        }
        self.settle_votes(writes);
        self.track_requests(&snapshot.pending);
    }

    /// Deletes the key shares the network has moved past: those of epochs before
    /// the running one (its keys are final), and, when no key event is under way,
    /// those of later epochs (left by attempts that never completed). Stolen old
    /// disks then hold no shares of the key.
    fn forget_old_shares(&self, running_epoch: u64, no_key_event: bool) {
        let store = &self.config.store;
        let epochs = match store.key_share_epochs(SIGNING_DOMAIN) {
            Ok(epochs) => epochs,
            Err(e) => {
                tracing::error!(error = %e, "cannot list the stored key shares");
                return;
            }
        };
        for epoch in epochs {
            let stale = epoch < running_epoch || (no_key_event && epoch > running_epoch);
            if !stale {
                continue;
            }
            match store.delete_key_share(SIGNING_DOMAIN, epoch) {
                Ok(_) => {
                    tracing::info!(epoch, running_epoch, "deleted a key share of a past epoch")
                }
                Err(e) => tracing::error!(epoch, error = %e, "cannot delete an old key share"),
            }
        }
    }

    /// The key task of the contract's key event, if this node can run it.
    fn key_task(&mut self, event: &KeyEvent, running: Option<&RunningState>) -> Option<KeyerKey> {
        let task = match (event.domain, running) {
            (Some(domain), _)
                if domain.id == SIGNING_DOMAIN && domain.scheme == SignatureScheme::Secp256k1 =>
            {
                Some(KeyTask::Generate {
                    epoch: event.epoch,
                    domain: domain.id,
                    attempt: event.attempt,
                })
            }
            (None, Some(previous)) if previous.domains.len() == 1 => {
                let key = previous.domain(SIGNING_DOMAIN)?;
                let old = to_participants(&previous.participants)?;
                let public_key = near_key::parse_secp256k1(&key.public_key).ok()?;
                Some(KeyTask::Reshare {
                    epoch: event.epoch,
                    domain: SIGNING_DOMAIN,
                    old_participants: old,
                    old_threshold: previous.threshold,
                    public_key,
                    attempt: event.attempt,
                })
            }
            _ => None,
        };
        if task.is_none() {
            let what = format!("{:?} in epoch {}", event.domain, event.epoch);
            if self.unsupported_logged.as_ref() != Some(&what) {
                tracing::error!(
                    domain = ?event.domain,
                    epoch = event.epoch,
                    "the contract's key event involves a domain this node cannot handle yet \
                     (only domain 0, secp256k1); it will not take part, and the event needs a \
                     threshold of vote_cancel_key_event to end"
                );
                self.unsupported_logged = Some(what);
            }
        }
        Some(KeyerKey {
            participants: event.participants.ids(),
            threshold: event.threshold,
            task: task?,
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

    /// The signing engine for the running set, with this node's share of the
    /// running epoch's key if it holds the one from the attempt the contract names.
    fn rebuild_signer(&mut self, me: ParticipantId, key: Option<SignerKey>) {
        let old = self.signer.take();
        self.signer_key = key.clone();
        let Some(key) = key else {
            return;
        };
        let Some(participants) = set_with(&key.participants, me) else {
            return;
        };
        let share = match key.key_attempt {
            None => None,
            Some(attempt) => match self.config.store.key_share_at(SIGNING_DOMAIN, key.epoch) {
                Ok(Some((stored, share))) if stored == attempt => Some(share),
                Ok(Some((stored, _))) => {
                    tracing::error!(
                        epoch = key.epoch,
                        stored,
                        attempt,
                        "the key share stored here is from another attempt than the one the \
                         contract completed: this node cannot sign until a resharing includes it"
                    );
                    None
                }
                Ok(None) => None,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the key share");
                    self.signer_key = None;
                    return;
                }
            },
        };
        // Stock made under another epoch's key shares can never be used again.
        if share.is_some() {
            match self.config.store.retire_other_epochs(key.epoch) {
                Ok(0) => {}
                Ok(n) => tracing::info!(retired = n, "retired stock of an earlier epoch"),
                Err(e) => tracing::error!(error = %e, "cannot retire old stock"),
            }
        }
        let keyless = key.key_attempt.is_some() && share.is_none();
        let mut engine = Engine::new(
            key.epoch,
            me,
            participants,
            key.threshold,
            share,
            self.config.store.clone(),
            self.config.protocol_timeout,
        );
        engine.set_stock_subset(self.config.stock_subset);
        // Peers that moved on first may have sent us runs of this set already.
        if let Some(mut old) = old {
            engine.adopt_early(old.take_early());
        }
        if let Some(keyer) = self.keyer.as_mut() {
            engine.adopt_early(keyer.take_early());
        }
        // The new engine learns the pending requests from this snapshot again.
        self.requests.clear();
        self.signer = Some(engine);
        tracing::info!(epoch = key.epoch, me = me.0, "signing engine ready");
        if keyless {
            tracing::error!(
                epoch = key.epoch,
                "this node holds no key share for the running epoch and cannot sign; \
                 it takes part again once a resharing includes it"
            );
        }
    }

    /// The key engine for the key event's current attempt (a new attempt is a new
    /// engine: runs and shares of the old one are void).
    fn rebuild_keyer(&mut self, me: ParticipantId, key: Option<KeyerKey>) {
        let old = self.keyer.take();
        self.keyer_key = key.clone();
        self.owed_vote = None;
        let Some(key) = key else {
            if let (Some(mut old), Some(signer)) = (old, self.signer.as_mut()) {
                signer.adopt_early(old.take_early());
            }
            return;
        };
        let Some(participants) = set_with(&key.participants, me) else {
            return;
        };
        let task = key.task.clone();
        let epoch = match &task {
            KeyTask::Generate { epoch, .. } | KeyTask::Reshare { epoch, .. } => *epoch,
        };
        let store = &self.config.store;
        let finished = match store.key_share_at(task.domain(), epoch) {
            Ok(Some((attempt, share))) if attempt == task.attempt() => Some(share),
            Ok(_) => None,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the key share");
                self.keyer_key = None;
                return;
            }
        };
        let mut engine = Engine::new(
            epoch,
            me,
            participants,
            key.threshold,
            None,
            store.clone(),
            self.config.protocol_timeout,
        );
        engine.set_key_task(Some(task.clone()));
        if let KeyTask::Reshare {
            old_participants, ..
        } = &task
        {
            // Resharing starts from the running epoch's share of the completed attempt.
            let input = self
                .signer
                .as_ref()
                .filter(|_| old_participants.contains(me));
            let share = self
                .signer_key
                .as_ref()
                .zip(input)
                .and_then(|(k, _)| store.key_share_at(task.domain(), k.epoch).ok().flatten())
                .filter(|(attempt, _)| {
                    Some(*attempt) == self.signer_key.as_ref().and_then(|k| k.key_attempt)
                })
                .map(|(_, share)| share);
            engine.set_reshare_input(share);
        }
        if let Some(share) = finished {
            // Restarted after storing this attempt's share: vote again, run nothing.
            engine.resume_finished_key_task(share);
        }
        if let Some(mut old) = old {
            engine.adopt_early(old.take_early());
        }
        tracing::info!(
            epoch,
            attempt = task.attempt(),
            me = me.0,
            "key engine ready"
        );
        self.keyer = Some(engine);
        for (from, message) in std::mem::take(&mut self.key_early) {
            self.handle(from, message);
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

    /// Tells the signing engine which requests are pending and forgets answered
    /// ones. The node derives each request's tweak itself from the predecessor and
    /// path, and checks the request id against the fields, trusting no RPC with it.
    fn track_requests(&mut self, pending: &[PendingRequest]) {
        let now = Instant::now();
        let current: BTreeSet<RequestId> = pending.iter().map(|r| r.request_id).collect();
        let engine = self.signer.as_mut();
        let mut gone = Vec::new();
        self.requests.retain(|id, _| {
            let keep = current.contains(id);
            if !keep {
                gone.push(*id);
            }
            keep
        });
        let Some(engine) = engine else {
            return;
        };
        for id in &gone {
            engine.remove_request(id);
        }
        for request in pending {
            if request.domain_id != SIGNING_DOMAIN {
                continue;
            }
            if let Some(tracked) = self.requests.get_mut(&request.request_id) {
                if tracked.entropy == request.entropy.0 {
                    continue;
                }
                // Made again under the same id while this node looked away: sign it
                // as the chain now shows it, as the other signers will.
                tracing::info!(request = %request.request_id, "request made again with new entropy");
                tracked.entropy = request.entropy.0;
            }
            let Payload::Ecdsa(payload) = &request.payload else {
                continue;
            };
            if !request.id_matches() {
                tracing::warn!(request = %request.request_id, "a pending request whose id does not match its fields; ignored");
                continue;
            }
            let Ok(tweak) = Tweak::derive(&request.predecessor, &request.path) else {
                tracing::warn!(request = %request.request_id, "a pending request with a tweak out of range; ignored");
                continue;
            };
            engine.add_request(
                request.request_id,
                SignTask {
                    payload: *payload,
                    tweak,
                    entropy: request.entropy.0,
                },
            );
            if self.requests.contains_key(&request.request_id) {
                continue; // a refreshed request keeps its place and any answer
            }
            self.config.metrics.requests_seen.inc();
            tracing::debug!(request = %request.request_id, "new request");
            self.requests.insert(
                request.request_id,
                Tracked {
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
        // Without a share of the running epoch's key (say it missed the end of a
        // resharing) and outside any key event this node cannot take part; staying
        // silent keeps the others from inviting it.
        let keyless = self.keyer.is_none()
            && self.signer.as_ref().is_some_and(|e| !e.has_key())
            && self
                .signer_key
                .as_ref()
                .is_some_and(|k| k.key_attempt.is_some());
        if keyless {
            return;
        }
        let ping = Arc::new(NodeMessage::Ping.encode());
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

    /// Routes a message: key-task traffic to the key engine (held until this node
    /// sees the key event), everything else to the signing engine.
    fn handle(&mut self, from: ParticipantId, message: NodeMessage) {
        let engine = if is_key_message(&message) {
            match self.keyer.as_mut() {
                Some(keyer) => keyer,
                None => {
                    if self.key_early.len() < MAX_KEY_EARLY {
                        self.key_early.push_back((from, message));
                    }
                    return;
                }
            }
        } else {
            match self.signer.as_mut() {
                Some(signer) => signer,
                None => return,
            }
        };
        if let Err(e) = engine.handle_message(from, message) {
            tracing::debug!(peer = from.0, error = %e, "ignored a peer message");
        }
    }

    /// Everything the node does on its own initiative: notice silent peers,
    /// expire runs, run the key task, top up stock, lead requests.
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
        if let Some(keyer) = self.keyer.as_mut() {
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
        let Some(engine) = self.signer.as_mut() else {
            return;
        };
        if !silent.is_empty() {
            engine.abandon_runs_with(&silent);
        }
        engine.expire(now);
        if !engine.has_key() {
            return;
        }
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
        let Some(engine) = self.signer.as_mut() else {
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
            // A pair of triples (made among one subset) counts as two runs: the cap
            // may be passed by one.
            match engine.propose_triples(live) {
                Ok(ids) => running_triples += ids.len(),
                Err(e) => {
                    tracing::debug!(error = %e, "cannot start a triple");
                    break;
                }
            }
        }
    }

    /// Publishes the stock (as this turn found it) and the runs under way.
    fn report_stock(&self, (triples, presignatures): (usize, usize)) {
        let running = self.signer.as_ref().map_or(0, |e| e.running());
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
            (self.signer.as_mut(), self.me, self.running_set.as_ref())
        else {
            return;
        };
        let retry_after = self.config.protocol_timeout;
        for (request_id, tracked) in self.requests.iter_mut() {
            let led_lately = tracked
                .led_at
                .is_some_and(|at| now.duration_since(at) < retry_after);
            if led_lately || tracked.answer.is_some() {
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
                    self.config.metrics.sign_runs_led.inc();
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
        if let Some(keyer) = self.keyer.as_mut() {
            let events: Vec<Event> = keyer.drain_events().collect();
            for event in events {
                self.on_key_event(event, writes);
            }
        }
        self.deliver_answers(writes);
        let Some(engine) = self.signer.as_mut() else {
            return;
        };
        let events: Vec<Event> = engine.drain_events().collect();
        let me = engine.me();
        let metrics = &self.config.metrics;
        for event in events {
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
                            response: SignatureResponse::Secp256k1(response),
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
                            if let Some(tracked) = self.requests.get_mut(&RequestId(request_id)) {
                                tracked.led_at = None;
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

    /// What the key engine reports: a stored share is voted for (and the vote
    /// repeated until the chain shows it); a failed run of the current attempt is
    /// reported, so the contract starts the next attempt now.
    fn on_key_event(&mut self, event: Event, writes: &mut JoinSet<WriteDone>) {
        let resharing = matches!(
            self.keyer_key.as_ref().map(|k| &k.task),
            Some(KeyTask::Reshare { .. })
        );
        match event {
            Event::KeyShareStored {
                epoch,
                attempt,
                public_key,
            } => {
                let key_text = near_key::to_near_string(&public_key);
                tracing::info!(epoch, attempt, public_key = %key_text, resharing, "key share stored");
                self.owed_vote = Some(OwedVote {
                    attempt,
                    public_key: (!resharing).then_some(key_text),
                    sent_at: None,
                });
                self.settle_votes(writes);
            }
            Event::Failed { job, reason } => {
                self.config.metrics.protocol_failures.inc();
                let Some(attempt) = attempt_of(&job) else {
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
