//! The node's main loop: it reads the contract, keeps an [`Engine`] for the current
//! epoch, feeds it peers' messages, stocks triples and presignatures, leads the
//! requests it is the leader of, and writes results back to the chain.
//!
//! One task owns the loop; chain writes (votes, responses) run in a [`JoinSet`] it
//! owns too, so nothing is detached and a cancelled node stops everything.

use crate::chain::{Chain, ContractState, ParticipantSet};
use crate::engine::{owner, Engine, Event, KeyTask};
use crate::p2p::noise::StaticKey;
use crate::p2p::{Network, NetworkConfig, PeerInfo, Peers};
use crate::storage::Store;
use near_primitives::types::AccountId;
use primitives::derivation::Tweak;
use primitives::{near_key, PendingRequest, RequestId, SignatureRequest};
use sha3::{Digest, Sha3_256};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use threshold::{ParticipantId, Participants, SignTask};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// What a node needs to run.
pub struct NodeConfig {
    pub account: AccountId,
    pub chain: Arc<Chain>,
    pub store: Arc<Store>,
    pub p2p_key: StaticKey,
    pub listen: SocketAddr,
    /// Names the network in p2p handshakes (the contract account).
    pub network_name: String,
    pub poll_interval: Duration,
    /// Triples and presignatures this node keeps in stock (of its own).
    pub triple_target: usize,
    pub presignature_target: usize,
    /// How long a protocol run may take before it is abandoned.
    pub protocol_timeout: Duration,
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

/// Runs the node until `cancel` fires.
pub async fn run(config: NodeConfig, cancel: CancellationToken) -> std::io::Result<()> {
    let peers = Peers::default();
    let network_config = NetworkConfig::new(
        ParticipantId(u32::MAX),
        config.listen,
        config.p2p_key.clone(),
        &config.network_name,
    );
    let mut node = Node {
        config,
        peers: peers.clone(),
        engine: None,
        engine_key: None,
        led: HashMap::new(),
        me: None,
    };
    let mut writes: JoinSet<()> = JoinSet::new();
    // The network learns our id once the contract lists us; until then we only listen.
    let mut network: Option<(Network, tokio::sync::mpsc::Receiver<crate::p2p::Incoming>)> = None;
    let mut tick = tokio::time::interval(node.config.poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let incoming = async {
            match network.as_mut() {
                Some((_, rx)) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {
                if let Err(e) = node.on_tick().await {
                    tracing::warn!(error = %e, "reading the contract failed; retrying");
                }
                if network.is_none() {
                    if let Some(me) = node.me {
                        let mut cfg = network_config.clone();
                        cfg.me = me;
                        network = Some(Network::start(cfg, peers.clone()).await?);
                    }
                }
            }
            Some(message) = incoming => {
                if let Some(engine) = node.engine.as_mut() {
                    if let Err(e) = engine.handle(message.from, &message.message) {
                        tracing::debug!(peer = message.from.0, error = %e, "ignored a peer message");
                    }
                }
            }
            Some(done) = writes.join_next(), if !writes.is_empty() => {
                if let Err(e) = done {
                    tracing::warn!(error = %e, "a chain write task failed");
                }
            }
        }
        if let (Some(engine), Some((net, _))) = (node.engine.as_mut(), network.as_ref()) {
            for (to, bytes) in engine.drain_outbox() {
                if let Err(e) = net.send(to, Arc::new(bytes)) {
                    tracing::debug!(peer = to.0, error = %e, "could not queue a message");
                }
            }
        }
        node.on_events(&mut writes);
    }
    writes.shutdown().await;
    if let Some((net, _)) = network {
        net.shutdown().await;
    }
    Ok(())
}

struct Node {
    config: NodeConfig,
    peers: Peers,
    engine: Option<Engine>,
    engine_key: Option<EngineKey>,
    /// Requests this node leads, and when it last tried.
    led: HashMap<RequestId, Instant>,
    me: Option<ParticipantId>,
}

impl Node {
    async fn on_tick(&mut self) -> Result<(), crate::chain::ChainError> {
        let state = self.config.chain.state().await?;
        let (key, sets): (Option<EngineKey>, Vec<&ParticipantSet>) = match &state {
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
        let Some(me) = self.me else { return Ok(()) };
        let Some(key) = key else { return Ok(()) };
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
                    }
                    self.engine_key = Some(key.clone());
                }
            }
            _ => self.rebuild_engine(me, &key),
        }
        let Some(engine) = self.engine.as_mut() else {
            return Ok(());
        };
        engine.expire(Instant::now());
        if key.task.is_some() {
            // Every participant proposes; the engine makes it one run.
            if let Err(e) = engine.propose_key_task() {
                tracing::debug!(error = %e, "cannot take part in the key task");
            }
            return Ok(());
        }
        if let ContractState::Running { participants, .. } = &state {
            self.stock();
            let pending = self.config.chain.pending_requests().await?;
            self.lead(participants, &pending);
        }
        Ok(())
    }

    fn rebuild_engine(&mut self, me: ParticipantId, key: &EngineKey) {
        let Ok(participants) =
            Participants::new(key.participants.iter().copied().map(ParticipantId))
        else {
            return;
        };
        if !participants.contains(me) {
            // Leaving: a node outside the new set has no engine.
            self.engine = None;
            self.engine_key = Some(key.clone());
            return;
        }
        let share = match self.config.store.key_share() {
            Ok(share) => share.map(|(_, share)| share),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the key share");
                return;
            }
        };
        let mut engine = Engine::new(
            key.epoch,
            me,
            participants,
            key.threshold,
            share,
            self.config.store.clone(),
            self.config.protocol_timeout,
        );
        engine.set_key_task(key.task.clone());
        self.engine = Some(engine);
        self.engine_key = Some(key.clone());
        tracing::info!(epoch = key.epoch, me = me.0, "engine ready");
    }

    /// Keeps this node's own stock of triples and presignatures topped up, one run
    /// of each kind at a time.
    fn stock(&mut self) {
        let (Some(engine), Some(me)) = (self.engine.as_mut(), self.me) else {
            return;
        };
        if engine.running() > 0 {
            return;
        }
        let store = &self.config.store;
        let own = |ids: Vec<u64>| ids.into_iter().filter(|id| owner(*id) == me).count();
        let triples = own(store.triple_ids().unwrap_or_default());
        let presignatures = own(store.presignature_ids().unwrap_or_default());
        if presignatures < self.config.presignature_target && triples >= 2 {
            let _ = engine.propose_presignature();
        } else if triples < self.config.triple_target {
            let _ = engine.propose_triple();
        }
    }

    /// Tells the engine about pending requests and leads those this node leads.
    fn lead(&mut self, participants: &ParticipantSet, pending: &[PendingRequest]) {
        let (Some(engine), Some(me), Some(set)) =
            (self.engine.as_mut(), self.me, to_participants(participants))
        else {
            return;
        };
        let now = Instant::now();
        let retry_after = self.config.protocol_timeout;
        self.led.retain(|id, since| {
            pending.iter().any(|r| r.request_id == *id)
                && now.duration_since(*since) < retry_after * 4
        });
        for request in pending {
            let Ok(tweak) = Tweak::from_bytes(request.epsilon.scalar) else {
                continue;
            };
            let task = SignTask {
                payload: request.payload,
                tweak,
                entropy: request.entropy.0,
            };
            engine.add_request(request.request_id, task);
            let order = leader_order(&request.request_id, &set);
            if order.first() != Some(&me) {
                continue;
            }
            if self
                .led
                .get(&request.request_id)
                .is_some_and(|since| now.duration_since(*since) < retry_after)
            {
                continue;
            }
            match engine.propose_sign(request.request_id, set.clone()) {
                Ok(Some(_)) => {
                    self.led.insert(request.request_id, now);
                }
                Ok(None) => tracing::debug!("no presignature yet to lead a request"),
                Err(e) => tracing::warn!(error = %e, "cannot lead a request"),
            }
        }
    }

    fn on_events(&mut self, writes: &mut JoinSet<()>) {
        let Some(engine) = self.engine.as_mut() else {
            return;
        };
        let events: Vec<Event> = engine.drain_events().collect();
        for event in events {
            match event {
                Event::KeyShareStored { epoch, public_key } => {
                    let chain = self.config.chain.clone();
                    let key_text = near_key::to_near_string(&public_key);
                    let resharing = self.engine_key.as_ref().and_then(|k| k.task.clone());
                    writes.spawn(async move {
                        let result = match resharing {
                            Some(KeyTask::Reshare { .. }) => chain.vote_reshared(epoch).await,
                            _ => chain.vote_pk(&key_text).await,
                        };
                        if let Err(e) = result {
                            tracing::warn!(error = %e, "voting for the key failed");
                        }
                    });
                }
                Event::Signed {
                    request_id,
                    response,
                    leader: true,
                } => {
                    let chain = self.config.chain.clone();
                    let pending = self.config.chain.clone();
                    writes.spawn(async move {
                        let request = match pending
                            .view::<Option<PendingRequest>>(
                                "pending_request",
                                serde_json::json!({ "request_id": request_id }),
                            )
                            .await
                        {
                            Ok(Some(request)) => request.signature_request(),
                            Ok(None) => return,
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot read the request to respond");
                                return;
                            }
                        };
                        let request: SignatureRequest = request;
                        if let Err(e) = chain.respond(&request, &response).await {
                            tracing::warn!(error = %e, "respond failed");
                        }
                    });
                }
                Event::Signed { .. } | Event::TripleStored(_) | Event::PresignatureStored(_) => {}
                Event::Failed { job, reason } => {
                    tracing::info!(?job, %reason, "a protocol run ended without output")
                }
            }
        }
    }
}
