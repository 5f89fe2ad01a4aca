//! What the engine tests share: nodes with an engine, a database and a real
//! network endpoint each; requests; pumping messages and steps until a condition
//! holds; looking at what each node stored and reported.

// What every test module uses, re-exported so that each starts with
// `use super::harness::*`.
pub(crate) use crate::suite::Suite;
pub(crate) use mpc_node::blame::{FailureKind, PeerReport};
pub(crate) use mpc_node::ecdsa::Ecdsa;
pub(crate) use mpc_node::engine::{
    Clock, DomainEngine, Engine, EngineError, EngineSetup, EngineTestApi, Event, Job, KeyLoad,
    KeyTask, ManualSteps, NodeMessage, RecordId, Scheme, Start, StockSubset,
};
pub(crate) use mpc_node::p2p::noise::StaticKey;
pub(crate) use mpc_node::p2p::{Incoming, Network, NetworkConfig, PeerInfo, Peers};
pub(crate) use mpc_node::storage::{StorageKey, Store};
pub(crate) use primitives::request::Entropy;
pub(crate) use primitives::{PendingRequest, RequestId, SignRequest, SignatureResponse};
pub(crate) use std::collections::BTreeMap;
pub(crate) use std::sync::Arc;
pub(crate) use std::time::{Duration, Instant};
pub(crate) use threshold::local::{self, Schedule};
pub(crate) use threshold::{InstanceId, ParticipantId, Participants};
pub(crate) use tokio::sync::mpsc;

/// One node of a test network: its engine, database, network endpoint, and what
/// its engine reported so far.
pub(crate) struct Node<S: Scheme> {
    pub(crate) me: u32,
    pub(crate) engine: Engine<S>,
    pub(crate) network: Option<Network>,
    pub(crate) incoming: mpsc::UnboundedReceiver<Incoming>,
    pub(crate) events: Vec<Event>,
    /// Messages this node's engine refused (only where a test tolerates them).
    pub(crate) refused: Vec<(u32, String)>,
    pub(crate) store: Arc<Store>,
    /// The engine's protocol steps, run by [`settle`] (as the daemon's workers
    /// would) in the order they were handed over.
    pub(crate) steps: Arc<ManualSteps>,
}

/// A request as every node would see it on the chain.
pub(crate) fn request<S: Suite>(predecessor: &str, path: &str, seed: u8) -> PendingRequest {
    let payload = S::payload(seed);
    let sign_request = SignRequest {
        payload: payload.clone(),
        path: path.into(),
        domain_id: S::DOMAIN,
    };
    PendingRequest {
        request_id: RequestId::of(predecessor, &sign_request),
        predecessor: predecessor.into(),
        payload,
        path: path.into(),
        domain_id: S::DOMAIN,
        entropy: Entropy([seed; 32]),
        block_height: 1,
        waiting: 1,
    }
}

/// The engine of `me` for `S::DOMAIN`, as the daemon builds one.
pub(crate) fn engine<S: Suite>(
    me: u32,
    epoch: u64,
    participants: &Participants,
    threshold: usize,
    store: &Arc<Store>,
    steps: &Arc<ManualSteps>,
    key: Option<S::KeyShare>,
) -> Engine<S> {
    Engine::new(
        EngineSetup {
            domain: S::DOMAIN,
            epoch,
            me: ParticipantId(me),
            participants: participants.clone(),
            threshold,
            store: store.clone(),
            timeout: Duration::from_secs(20),
            clock: Clock::system(),
            seed: EngineSetup::os_seed(),
            steps: steps.clone(),
        },
        key,
    )
}

/// `n` nodes with networks and databases, and engines of epoch 0 among all of
/// them with threshold 2 and no key (tests set engines per phase).
pub(crate) async fn keyless<S: Suite>(n: u32, dir: &std::path::Path) -> Vec<Node<S>> {
    let peers = Peers::default();
    let mut registry = BTreeMap::new();
    let mut nodes = Vec::new();
    let everyone = Participants::first(n).unwrap();
    for i in 0..n {
        let me = ParticipantId(i);
        let key = StaticKey::generate();
        let config = NetworkConfig::new(
            me,
            "127.0.0.1:0".parse().unwrap(),
            key.clone(),
            "engine-test",
        );
        let (network, incoming) = Network::start(config, peers.clone()).await.unwrap();
        registry.insert(
            me,
            PeerInfo {
                address: network.local_addr().to_string(),
                key: key.public(),
            },
        );
        let store = Arc::new(
            Store::open(&dir.join(format!("node{i}.redb")), &StorageKey::generate()).unwrap(),
        );
        let steps = ManualSteps::new();
        nodes.push(Node {
            me: i,
            engine: engine::<S>(i, 0, &everyone, 2, &store, &steps, None),
            steps,
            network: Some(network),
            incoming,
            events: Vec::new(),
            refused: Vec::new(),
            store,
        });
    }
    peers.replace(registry);
    nodes
}

/// `n` nodes holding shares of a key made in-process (epoch 0, attempt 0) with
/// `threshold`; returns the key's public key as the contract writes it.
pub(crate) async fn start<S: Suite>(
    n: u32,
    threshold: usize,
    dir: &std::path::Path,
) -> (Vec<Node<S>>, String) {
    let parties = Participants::first(n).unwrap();
    let shares: Vec<S::KeyShare> = local::run(
        parties
            .iter()
            .map(|me| S::keygen(InstanceId([1; 32]), me, parties.clone(), threshold).unwrap())
            .collect(),
        &Schedule::default(),
    )
    .all_done()
    .unwrap();
    let public_key = S::public_key_text(&shares[0]);
    let mut nodes = keyless::<S>(n, dir).await;
    for (node, share) in nodes.iter_mut().zip(shares) {
        node.store.put_key_share(S::DOMAIN, 0, 0, &share).unwrap();
        node.engine = engine::<S>(
            node.me,
            0,
            &parties,
            threshold,
            &node.store,
            &node.steps,
            Some(share),
        );
    }
    (nodes, public_key)
}

/// A frame as the daemon hands it over: decoded, checked to be for this domain,
/// then given to the engine.
pub(crate) fn handle<S: Suite>(
    engine: &mut Engine<S>,
    from: ParticipantId,
    frame: &[u8],
) -> Result<(), EngineError> {
    let (domain, message) = NodeMessage::decode(frame)?;
    assert_eq!(domain, S::DOMAIN, "a frame names its engine's domain");
    engine.handle_message(from, message)
}

/// Sends frames to their recipients over `node`'s network (a peer that is down
/// simply does not get them).
pub(crate) fn send<S: Scheme>(node: &Node<S>, frames: Vec<(ParticipantId, Vec<u8>)>) {
    let network = node.network.as_ref().expect("the node is up");
    for (to, bytes) in frames {
        let _ = network.send(to, Arc::new(bytes));
    }
}

/// Moves messages between engines and the network until `done` holds (or panics
/// after a bounded wait). Any refused message fails the test.
pub(crate) async fn pump<S: Suite>(
    nodes: &mut [Node<S>],
    what: &str,
    done: impl Fn(&[Node<S>]) -> bool,
) {
    pump_with(nodes, what, false, done).await
}

/// [`pump`], but with `tolerate_refusals` a refused message is recorded in the
/// node's `refused` list instead of failing the test.
pub(crate) async fn pump_with<S: Suite>(
    nodes: &mut [Node<S>],
    what: &str,
    tolerate_refusals: bool,
    done: impl Fn(&[Node<S>]) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done(nodes) {
        if Instant::now() >= deadline {
            let events: Vec<(u32, &Vec<Event>)> = nodes.iter().map(|n| (n.me, &n.events)).collect();
            let running: Vec<(u32, usize)> =
                nodes.iter().map(|n| (n.me, n.engine.running())).collect();
            panic!("timed out waiting for: {what}; events {events:?}; running {running:?}");
        }
        let mut idle = true;
        for node in nodes.iter_mut() {
            if node.network.is_none() {
                continue;
            }
            if settle(node) > 0 {
                idle = false;
            }
            let network = node.network.as_ref().expect("checked above");
            for (to, bytes) in node.engine.drain_outbox() {
                let _ = network.send(to, Arc::new(bytes));
                idle = false;
            }
            while let Ok(Incoming { from, message, .. }) = node.incoming.try_recv() {
                if let Err(e) = handle(&mut node.engine, from, &message) {
                    if !tolerate_refusals {
                        panic!("node {} refused a message from {}: {e}", node.me, from.0);
                    }
                    node.refused.push((from.0, e.to_string()));
                }
                idle = false;
            }
            node.events.extend(node.engine.drain_events());
        }
        if idle {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Runs every protocol step `node`'s engine handed over (and any they lead to)
/// and gives the results back, as the daemon's workers and loop do. Returns how
/// many ran.
pub(crate) fn settle<S: Scheme>(node: &mut Node<S>) -> usize {
    settle_engine(&mut node.engine, &node.steps)
}

/// [`settle`] for an engine outside a [`Node`] that shares the node's steps.
pub(crate) fn settle_engine<S: Scheme>(engine: &mut Engine<S>, steps: &ManualSteps) -> usize {
    let mut ran = 0;
    loop {
        let taken = steps.take();
        if taken.is_empty() {
            return ran;
        }
        for step in taken {
            ran += 1;
            engine.step_done(step.run());
        }
    }
}

pub(crate) fn count<S: Scheme>(nodes: &[Node<S>], pred: impl Fn(&Event) -> bool) -> usize {
    nodes
        .iter()
        .map(|n| n.events.iter().filter(|e| pred(e)).count())
        .sum()
}

pub(crate) fn participants(ids: &[u32]) -> Participants {
    Participants::new(ids.iter().copied().map(ParticipantId)).unwrap()
}

/// Participant ids as a `Start` lists them.
pub(crate) fn ids(list: &[u32]) -> Vec<ParticipantId> {
    list.iter().copied().map(ParticipantId).collect()
}

pub(crate) fn presignature_ids<S: Scheme>(node: &Node<S>) -> Vec<RecordId> {
    node.store.record_ids(S::PRESIGNATURES).unwrap()
}

/// Node `proposer` stocks one presignature among `live` (with ECDSA from two
/// triples it makes first among the same subset), and waits until every holder
/// confirmed storing it. Returns its id.
pub(crate) async fn stock_presignature<S: Suite>(
    nodes: &mut [Node<S>],
    proposer: usize,
    live: &Participants,
) -> RecordId {
    let per = S::TRIPLES_PER_PRESIGNATURE;
    if per > 0 {
        let before = nodes[proposer].engine.own_confirmed_stock(live).unwrap();
        let ids = nodes[proposer].engine.propose_triples(live).unwrap();
        assert_eq!(ids.len(), per, "one presignature's triples per proposal");
        pump(nodes, "the holders confirm the triples", |n| {
            n[proposer]
                .engine
                .own_confirmed_stock(live)
                .unwrap()
                .triples
                == before.triples + per
        })
        .await;
    }
    let before = nodes[proposer].engine.own_confirmed_stock(live).unwrap();
    let id = nodes[proposer]
        .engine
        .propose_presignature(live)
        .unwrap()
        .expect("the inputs of a presignature");
    pump(nodes, "the holders confirm the presignature", |n| {
        n[proposer]
            .engine
            .own_confirmed_stock(live)
            .unwrap()
            .presignatures
            == before.presignatures + 1
    })
    .await;
    id
}

/// The signatures `node` reported: (request, leader, response).
pub(crate) fn signed<S: Scheme>(node: &Node<S>) -> Vec<(RequestId, bool, &SignatureResponse)> {
    node.events
        .iter()
        .filter_map(|e| match e {
            Event::Signed {
                request_id,
                response,
                leader,
            } => Some((*request_id, *leader, response)),
            _ => None,
        })
        .collect()
}

/// The public keys of the shares the engines reported storing for `epoch` in the
/// contract's key-event attempt `attempt`.
pub(crate) fn stored_keys<S: Suite>(nodes: &[Node<S>], epoch: u64, attempt: u64) -> Vec<String> {
    nodes
        .iter()
        .flat_map(|n| n.events.iter())
        .filter_map(|e| match e {
            Event::KeyShareStored {
                domain,
                epoch: e,
                attempt: a,
                public_key,
            } if *e == epoch && *a == attempt => {
                assert_eq!(*domain, S::DOMAIN);
                Some(public_key.clone())
            }
            _ => None,
        })
        .collect()
}

/// The share of the domain's key a node's database holds for `epoch`: the
/// attempt that made it and its public key.
pub(crate) fn share_of<S: Suite>(node: &Node<S>, epoch: u64) -> Option<(u64, String)> {
    node.store
        .key_share_at::<S::KeyShare>(S::DOMAIN, epoch)
        .unwrap()
        .map(|(attempt, share)| (attempt, S::public_key_text(&share)))
}

/// The contract's keygen of the domain in epoch 0, attempt `attempt`.
pub(crate) fn generate<S: Suite>(attempt: u64) -> KeyTask {
    KeyTask::Generate {
        epoch: 0,
        domain: S::DOMAIN,
        attempt,
    }
}

/// A key engine as the daemon builds one for an attempt: epoch 0, nodes 0..3,
/// threshold 2, no key, the contract's task.
pub(crate) fn key_engine<S: Suite>(node: &Node<S>, task: KeyTask) -> Engine<S> {
    let mut engine = engine::<S>(
        node.me,
        0,
        &Participants::first(3).unwrap(),
        2,
        &node.store,
        &node.steps,
        None,
    );
    engine.set_key_task(Some(task));
    engine
}

pub(crate) fn is_refused(result: Result<(), EngineError>) -> bool {
    matches!(result, Err(EngineError::Refused(_)))
}

pub(crate) async fn shut_down<S: Scheme>(nodes: &mut [Node<S>]) {
    for node in nodes.iter_mut() {
        if let Some(network) = node.network.take() {
            network.shutdown().await;
        }
    }
}

/// What one stock proposal of `engine` starts: one presignature's triples (ECDSA)
/// or the presignature itself (no triples). Returns the ids.
pub(crate) fn propose_stock<S: Suite>(
    engine: &mut Engine<S>,
    live: &Participants,
) -> Vec<RecordId> {
    if S::TRIPLES_PER_PRESIGNATURE > 0 {
        engine.propose_triples(live).unwrap()
    } else {
        vec![engine.propose_presignature(live).unwrap().unwrap()]
    }
}

/// Hands `nodes[from]`'s outgoing frames straight to their recipients' engines
/// (no network). Returns how many moved.
pub(crate) fn route<S: Suite>(nodes: &mut [Node<S>], from: usize) -> usize {
    let frames = nodes[from].engine.drain_outbox();
    let moved = frames.len();
    for (to, bytes) in frames {
        let sender = ParticipantId(nodes[from].me);
        handle(&mut nodes[to.0 as usize].engine, sender, &bytes).unwrap();
    }
    moved
}

/// What `engine` has queued to send, decoded, with each recipient.
pub(crate) fn outbox_messages<S: Scheme>(
    engine: &mut Engine<S>,
) -> Vec<(ParticipantId, NodeMessage)> {
    engine
        .drain_outbox()
        .into_iter()
        .map(|(to, frame)| (to, NodeMessage::decode(&frame).unwrap().1))
        .collect()
}

/// Runs every node's steps and moves every frame until nothing moves.
pub(crate) fn exchange<S: Suite>(nodes: &mut [Node<S>]) {
    loop {
        let mut moved = 0;
        for i in 0..nodes.len() {
            moved += settle(&mut nodes[i]);
            moved += route(nodes, i);
            let events = nodes[i].engine.drain_events();
            nodes[i].events.extend(events);
        }
        if moved == 0 {
            return;
        }
    }
}

/// Gives every node a key engine for keygen attempt `attempt`.
pub(crate) fn key_engines_for_attempt<S: Suite>(nodes: &mut [Node<S>], attempt: u64) {
    for node in nodes.iter_mut() {
        node.engine = key_engine(node, generate::<S>(attempt));
    }
}

/// `node` blamed participant 2 alone, for a timeout.
pub(crate) fn assert_participant_2_alone_blamed<S: Scheme>(node: &mut Node<S>) {
    let reports = node.engine.drain_peer_reports();
    assert!(
        matches!(
            &reports[..],
            [PeerReport::Failure {
                peer: ParticipantId(2),
                kind: FailureKind::Timeout,
                ..
            }]
        ),
        "node {}: {reports:?}",
        node.me
    );
}

/// `node`'s run failed waiting on participant 2 (its reason contains `reason`),
/// and participant 2 alone was blamed for a timeout.
pub(crate) fn assert_run_failed_on_participant_2<S: Scheme>(node: &mut Node<S>, reason: &str) {
    assert_participant_2_alone_blamed(node);
    let failed = node.engine.drain_events();
    assert!(
        matches!(&failed[..], [Event::Failed { reason: why, .. }] if why.contains(reason)),
        "node {}: {failed:?}",
        node.me
    );
}

/// Every node learns `request` from the chain.
pub(crate) fn add_request_everywhere<S: Scheme>(nodes: &mut [Node<S>], request: &PendingRequest) {
    for node in nodes.iter_mut() {
        node.engine.add_request(request).unwrap();
    }
}

/// Node 0 leads `request` with `presignature` among `all`; returns once
/// `signers` nodes signed it.
pub(crate) async fn lead_and_sign<S: Suite>(
    nodes: &mut [Node<S>],
    request: &PendingRequest,
    all: &Participants,
    presignature: RecordId,
    signers: usize,
    what: &str,
) {
    assert_eq!(
        nodes[0]
            .engine
            .propose_sign(request.request_id, all)
            .unwrap(),
        Some(presignature)
    );
    pump(nodes, what, |n| {
        count(n, |e| matches!(e, Event::Signed { .. })) == signers
    })
    .await;
}
