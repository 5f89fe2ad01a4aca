//! Engines, each with its own database, talking over the real peer-to-peer layer on
//! 127.0.0.1. The tests that do not depend on the signature scheme are written once
//! over [`Scheme`] (as ZF FROST writes its tests over the ciphersuite) and run for
//! ECDSA (cait-sith) and EdDSA (FROST): key generation then a burst of signatures
//! checked as a user would (secp256k1 recovery; ed25519-dalek `verify_strict`)
//! against the derived key; stock among rotating subsets of exactly the threshold;
//! resharing with a join, a leave and a threshold change that keeps the public
//! key, after which the new set signs; a presignature never used twice across a
//! restart; a peer declining; forged invitations and garbage frames refused
//! without harm; key generation and resharing as the contract's numbered attempts
//! (a new attempt voids the old one's runs, a share is replaced only by a later
//! attempt's, and a node that stored its share for an attempt takes no further
//! part in it). The tests of triples are ECDSA's alone.

mod suite;

use mpc_node::blame::{FailureKind, PeerReport};
use mpc_node::ecdsa::Ecdsa;
use mpc_node::engine::{
    Clock, DomainEngine, Engine, EngineError, EngineSetup, Event, Job, KeyLoad, KeyTask,
    ManualSteps, NodeMessage, Scheme, Start, StockSubset,
};
use mpc_node::p2p::noise::StaticKey;
use mpc_node::p2p::{Incoming, Network, NetworkConfig, PeerInfo, Peers};
use mpc_node::storage::{StorageKey, Store};
use primitives::request::Entropy;
use primitives::{PendingRequest, RequestId, SignRequest, SignatureResponse};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use suite::Suite;
use threshold::local::{self, Schedule};
use threshold::{InstanceId, ParticipantId, Participants};
use tokio::sync::mpsc;

struct Node<S: Scheme> {
    me: u32,
    engine: Engine<S>,
    network: Option<Network>,
    incoming: mpsc::UnboundedReceiver<Incoming>,
    events: Vec<Event>,
    /// Messages this node's engine refused (only where a test tolerates them).
    refused: Vec<(u32, String)>,
    store: Arc<Store>,
    /// The engine's protocol steps, run by [`settle`] (as the daemon's workers
    /// would) in the order they were handed over.
    steps: Arc<ManualSteps>,
}

/// A request as every node would see it on the chain.
fn request<S: Suite>(predecessor: &str, path: &str, seed: u8) -> PendingRequest {
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
fn engine<S: Suite>(
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
async fn keyless<S: Suite>(n: u32, dir: &std::path::Path) -> Vec<Node<S>> {
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
async fn start<S: Suite>(
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
fn handle<S: Suite>(
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
fn send<S: Scheme>(node: &Node<S>, frames: Vec<(ParticipantId, Vec<u8>)>) {
    let network = node.network.as_ref().expect("the node is up");
    for (to, bytes) in frames {
        let _ = network.send(to, Arc::new(bytes));
    }
}

/// Moves messages between engines and the network until `done` holds (or panics
/// after a bounded wait). Any refused message fails the test.
async fn pump<S: Suite>(nodes: &mut [Node<S>], what: &str, done: impl Fn(&[Node<S>]) -> bool) {
    pump_with(nodes, what, false, done).await
}

/// [`pump`], but with `tolerate_refusals` a refused message is recorded in the
/// node's `refused` list instead of failing the test.
async fn pump_with<S: Suite>(
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
fn settle<S: Scheme>(node: &mut Node<S>) -> usize {
    let mut ran = 0;
    loop {
        let steps = node.steps.take();
        if steps.is_empty() {
            return ran;
        }
        for step in steps {
            ran += 1;
            node.engine.step_done(step.run());
        }
    }
}

fn count<S: Scheme>(nodes: &[Node<S>], pred: impl Fn(&Event) -> bool) -> usize {
    nodes
        .iter()
        .map(|n| n.events.iter().filter(|e| pred(e)).count())
        .sum()
}

fn participants(ids: &[u32]) -> Participants {
    Participants::new(ids.iter().copied().map(ParticipantId)).unwrap()
}

fn presignature_ids<S: Scheme>(node: &Node<S>) -> Vec<u64> {
    node.store.record_ids(S::PRESIGNATURES).unwrap()
}

fn triple_ids(node: &Node<Ecdsa>) -> Vec<u64> {
    node.store.record_ids(Ecdsa::TRIPLES).unwrap()
}

/// Node `proposer` stocks one presignature among `live` (with ECDSA from two
/// triples it makes first among the same subset), and waits until every holder
/// confirmed storing it. Returns its id.
async fn stock_presignature<S: Suite>(
    nodes: &mut [Node<S>],
    proposer: usize,
    live: &Participants,
) -> u64 {
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
fn signed<S: Scheme>(node: &Node<S>) -> Vec<(RequestId, bool, &SignatureResponse)> {
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
fn stored_keys<S: Suite>(nodes: &[Node<S>], epoch: u64, attempt: u64) -> Vec<String> {
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
fn share_of<S: Suite>(node: &Node<S>, epoch: u64) -> Option<(u64, String)> {
    node.store
        .key_share_at::<S::KeyShare>(S::DOMAIN, epoch)
        .unwrap()
        .map(|(attempt, share)| (attempt, S::public_key_text(&share)))
}

/// The contract's keygen of the domain in epoch 0, attempt `attempt`.
fn generate<S: Suite>(attempt: u64) -> KeyTask {
    KeyTask::Generate {
        epoch: 0,
        domain: S::DOMAIN,
        attempt,
    }
}

/// A Start of keygen attempt `attempt` among nodes 0..3, as any of them proposes it.
fn keygen_start<S: Suite>(attempt: u64) -> Vec<u8> {
    NodeMessage::Start(Start {
        epoch: 0,
        participants: vec![0, 1, 2],
        job: Job::Keygen {
            epoch: 0,
            domain: S::DOMAIN.0,
            attempt,
        },
    })
    .encode(S::DOMAIN)
}

/// A key engine as the daemon builds one for an attempt: epoch 0, nodes 0..3,
/// threshold 2, no key, the contract's task.
fn key_engine<S: Suite>(node: &Node<S>, task: KeyTask) -> Engine<S> {
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

fn is_refused(result: Result<(), EngineError>) -> bool {
    matches!(result, Err(EngineError::Refused(_)))
}

async fn shut_down<S: Scheme>(nodes: &mut [Node<S>]) {
    for node in nodes.iter_mut() {
        if let Some(network) = node.network.take() {
            network.shutdown().await;
        }
    }
}

// ------------------------------------------------------------------ ECDSA only

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triples_presignature_and_signature_over_the_network() {
    let dir = tempfile::tempdir().unwrap();
    let (mut nodes, root) = start::<Ecdsa>(3, 2, dir.path()).await;

    // Node 0 stocks two triples among all three (`StockSubset::All`), then a
    // presignature from them.
    let all = Participants::first(3).unwrap();
    nodes[0].engine.set_stock_subset(StockSubset::All);
    assert_eq!(nodes[0].engine.propose_triples(&all).unwrap().len(), 1);
    assert_eq!(nodes[0].engine.propose_triples(&all).unwrap().len(), 1);
    pump(&mut nodes, "two triples at three nodes", |n| {
        count(n, |e| matches!(e, Event::TripleStored(_))) == 6
    })
    .await;
    assert!(nodes.iter().all(|n| triple_ids(n).len() == 2));
    pump(&mut nodes, "the holders confirm the triples", |n| {
        n[0].engine.own_confirmed_stock(&all).unwrap().triples == 2
    })
    .await;
    let presignature = nodes[0]
        .engine
        .propose_presignature(&all)
        .unwrap()
        .expect("two own triples");
    pump(&mut nodes, "a presignature at three nodes", |n| {
        count(n, |e| matches!(e, Event::PresignatureStored(_))) == 3
    })
    .await;
    pump(&mut nodes, "the holders confirm the presignature", |n| {
        n[0].engine.own_confirmed_stock(&all).unwrap().presignatures == 1
    })
    .await;
    assert!(
        nodes.iter().all(|n| triple_ids(n).is_empty()),
        "the triples are used up"
    );
    assert!(nodes
        .iter()
        .all(|n| presignature_ids(n) == vec![presignature]));

    // A request, as every node sees it on the chain.
    let request = request::<Ecdsa>("alice.near", "ethereum-1", 0x33);
    for node in nodes.iter_mut() {
        node.engine.add_request(&request).unwrap();
    }

    // Node 2 goes down; nodes 0 and 1 (the threshold) sign.
    nodes[2].network.take().unwrap().shutdown().await;
    let signers = participants(&[0, 1]);
    assert_eq!(
        nodes[0]
            .engine
            .propose_sign(request.request_id, &signers)
            .unwrap(),
        Some(presignature)
    );
    pump(&mut nodes, "a signature at both signers", |n| {
        count(n, |e| matches!(e, Event::Signed { .. })) == 2
    })
    .await;
    for (i, node) in nodes[..2].iter().enumerate() {
        let [(id, leader, response)] = signed(node)[..] else {
            panic!("node {i} signed once")
        };
        assert_eq!(id, request.request_id);
        assert_eq!(leader, i == 0, "only the proposer leads");
        Ecdsa::verify(
            &root,
            "alice.near",
            "ethereum-1",
            &request.payload,
            response,
        )
        .unwrap();
    }

    // The presignature is gone at the signers: no second signature from it, ever.
    assert!(presignature_ids(&nodes[0]).is_empty());
    assert!(presignature_ids(&nodes[1]).is_empty());
    assert_eq!(
        nodes[0]
            .engine
            .propose_sign(request.request_id, &signers)
            .unwrap(),
        None
    );

    shut_down(&mut nodes).await;
}

#[tokio::test]
async fn forged_and_unknown_invitations_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut nodes, _) = start::<Ecdsa>(3, 2, dir.path()).await;
    let d = Ecdsa::DOMAIN;

    // Node 2 invites node 1 to sign with a presignature owned by node 0.
    // Ids carry their owner in the top 16 bits: this one is participant 0's.
    let owned_by_0 = 77u64;
    let forged = NodeMessage::Start(Start {
        epoch: 0,
        participants: vec![1, 2],
        job: Job::Sign {
            request_id: [1; 32],
            presignature: owned_by_0,
        },
    });
    assert!(is_refused(handle(
        &mut nodes[1].engine,
        ParticipantId(2),
        &forged.encode(d)
    )));

    // Node 0 invites node 1 to sign a request node 1 has not seen on the chain yet:
    // nothing starts until it has; then node 1 checks the rest (here: it holds no
    // such presignature) and still signs nothing.
    let pending = request::<Ecdsa>("x.near", "p", 2);
    let unknown = NodeMessage::Start(Start {
        epoch: 0,
        participants: vec![0, 1],
        job: Job::Sign {
            request_id: pending.request_id.0,
            presignature: owned_by_0,
        },
    });
    handle(&mut nodes[1].engine, ParticipantId(0), &unknown.encode(d)).unwrap();
    assert_eq!(nodes[1].engine.running(), 0, "deferred, not started");
    assert!(nodes[1].engine.take_awaiting_chain());
    nodes[1].engine.add_request(&pending).unwrap();
    assert_eq!(
        nodes[1].engine.running(),
        0,
        "no presignature 77 here: refused"
    );

    // Triples among the live participants (at least the threshold) are joined;
    // outsiders are refused.
    let partial = NodeMessage::Start(Start {
        epoch: 0,
        participants: vec![0, 1],
        job: Job::Triple { id: owned_by_0 + 1 },
    });
    handle(&mut nodes[1].engine, ParticipantId(0), &partial.encode(d))
        .expect("a triple among two of three, the threshold");
    assert_eq!(nodes[1].engine.running(), 1);
    let outsider = NodeMessage::Start(Start {
        epoch: 0,
        participants: vec![0, 1, 9],
        job: Job::Triple { id: owned_by_0 },
    });
    assert!(is_refused(handle(
        &mut nodes[1].engine,
        ParticipantId(0),
        &outsider.encode(d)
    )));

    // A run of another epoch (e.g. from before a resharing) is refused.
    let stale = NodeMessage::Start(Start {
        epoch: 5,
        participants: vec![0, 1, 2],
        job: Job::Triple { id: owned_by_0 },
    });
    assert!(is_refused(handle(
        &mut nodes[1].engine,
        ParticipantId(0),
        &stale.encode(d)
    )));

    // Bytes that are no frame.
    for garbage in [&[9u8, 9, 9][..], &[]] {
        assert!(matches!(
            NodeMessage::decode(garbage),
            Err(EngineError::Malformed(_))
        ));
    }
    assert_eq!(
        nodes[1].engine.running(),
        1,
        "nothing started but the triple among two"
    );

    shut_down(&mut nodes).await;
}

// ----------------------------------------------------------------- every scheme

/// Runs a generic test for each scheme, as `scheme::name`.
macro_rules! for_each_scheme {
    ($($name:ident),* $(,)?) => {
        mod ecdsa {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name::<mpc_node::ecdsa::Ecdsa>().await
            })*
        }
        mod eddsa {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name::<mpc_node::eddsa::Eddsa>().await
            })*
        }
    };
}

for_each_scheme!(
    keygen_then_a_burst_of_signatures,
    stock_runs_use_exactly_threshold_participants_in_rotating_subsets,
    a_threshold_subset_makes_stock_and_signs,
    resharing_with_a_join_a_leave_and_a_threshold_change_keeps_the_key,
    a_presignature_is_never_used_twice_across_a_restart,
    a_peer_declining_ends_the_run_and_garbage_does_no_harm,
    a_timed_out_run_blames_the_silent_participant_alone,
    a_stalled_run_ends_early_and_blames_the_silent_participant_alone,
    a_new_attempt_voids_the_old_attempts_runs_and_its_share_replaces_the_older_one,
    a_node_that_stored_its_share_refuses_the_attempt_again_and_runs_the_next,
    messages_that_come_while_a_step_is_away_wait_for_the_next_step,
    a_stock_run_that_ends_while_its_last_step_is_away_leaves_no_record,
    a_key_run_voided_while_its_step_is_away_stores_nothing,
    an_ended_attempt_blames_the_peer_that_withheld_its_last_key_message,
    a_key_run_that_failed_here_is_not_run_again_in_its_attempt,
);

/// Four nodes generate the key with the engines (threshold 3), every node stocks a
/// presignature among a threshold subset, then four requests are signed at once,
/// each led by another node; every signature verifies for its derived key.
async fn keygen_then_a_burst_of_signatures<S: Suite>() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = keyless::<S>(4, dir.path()).await;
    let all = Participants::first(4).unwrap();
    let task = KeyTask::Generate {
        epoch: 0,
        domain: S::DOMAIN,
        attempt: 0,
    };
    for node in nodes.iter_mut() {
        node.engine = engine::<S>(node.me, 0, &all, 3, &node.store, &node.steps, None);
        node.engine.set_key_task(Some(task.clone()));
        assert!(!node.engine.has_key());
    }
    // Two propose: one run happens.
    assert!(nodes[0].engine.propose_key_task().unwrap());
    assert!(nodes[2].engine.propose_key_task().unwrap());
    pump(&mut nodes, "keygen at four nodes", |n| {
        stored_keys(n, 0, 0).len() == 4
    })
    .await;
    let keys = stored_keys(&nodes, 0, 0);
    assert!(keys.iter().all(|k| *k == keys[0]), "one public key");
    let root = keys[0].clone();
    for node in &nodes {
        assert!(node.engine.has_key());
        assert_eq!(share_of(node, 0), Some((0, root.clone())));
    }

    // Every node stocks one presignature (ECDSA: from two triples) among a subset
    // of exactly the threshold, all four at once.
    let per = S::TRIPLES_PER_PRESIGNATURE;
    if per > 0 {
        for node in nodes.iter_mut() {
            assert_eq!(node.engine.propose_triples(&all).unwrap().len(), per);
        }
        pump(&mut nodes, "every node's triples confirmed", |n| {
            n.iter()
                .all(|n| n.engine.own_confirmed_stock(&all).unwrap().triples == per)
        })
        .await;
        assert_eq!(
            count(&nodes, |e| matches!(e, Event::TripleStored(_))),
            4 * per * 3,
            "each triple at exactly the threshold"
        );
    }
    for node in nodes.iter_mut() {
        node.engine
            .propose_presignature(&all)
            .unwrap()
            .expect("the inputs of a presignature");
    }
    pump(&mut nodes, "every node's presignature confirmed", |n| {
        n.iter()
            .all(|n| n.engine.own_confirmed_stock(&all).unwrap().presignatures == 1)
    })
    .await;
    assert_eq!(
        count(&nodes, |e| matches!(e, Event::PresignatureStored(_))),
        4 * 3
    );
    for node in &nodes {
        assert_eq!(
            node.engine.own_stock(&all).unwrap().presignatures,
            1,
            "node {}",
            node.me
        );
    }

    // Four requests, seen by every node; node i leads request i, all at once.
    let requests: Vec<PendingRequest> = (0..4u8)
        .map(|i| request::<S>(&format!("user{i}.near"), &format!("path-{i}"), 0x10 + i))
        .collect();
    for node in nodes.iter_mut() {
        for request in &requests {
            node.engine.add_request(request).unwrap();
        }
    }
    for (node, request) in nodes.iter_mut().zip(&requests) {
        node.engine
            .propose_sign(request.request_id, &all)
            .unwrap()
            .expect("an own presignature");
    }
    pump(&mut nodes, "four signatures at three signers each", |n| {
        count(n, |e| matches!(e, Event::Signed { .. })) == 4 * 3
    })
    .await;
    for (i, request) in requests.iter().enumerate() {
        let mut leaders = Vec::new();
        let mut signers = 0;
        for node in &nodes {
            for (id, leader, response) in signed(node) {
                if id != request.request_id {
                    continue;
                }
                signers += 1;
                if leader {
                    leaders.push(node.me);
                }
                S::verify(
                    &root,
                    &request.predecessor,
                    &request.path,
                    &request.payload,
                    response,
                )
                .unwrap();
            }
        }
        assert_eq!(signers, 3, "request {i}: the threshold signs");
        assert_eq!(leaders, vec![i as u32], "request {i}: its proposer leads");
    }
    // Every presignature was used once and is gone everywhere.
    for node in nodes.iter_mut() {
        assert!(presignature_ids(node).is_empty(), "node {}", node.me);
        assert_eq!(
            node.engine
                .propose_sign(requests[0].request_id, &all)
                .unwrap(),
            None
        );
    }

    shut_down(&mut nodes).await;
}

/// What one stock proposal of `engine` starts: one presignature's triples (ECDSA)
/// or the presignature itself (no triples). Returns the ids.
fn propose_stock<S: Suite>(engine: &mut Engine<S>, live: &Participants) -> Vec<u64> {
    if S::TRIPLES_PER_PRESIGNATURE > 0 {
        engine.propose_triples(live).unwrap()
    } else {
        vec![engine.propose_presignature(live).unwrap().unwrap()]
    }
}

/// The job of stock record `id` as [`propose_stock`] starts it.
fn stock_job<S: Suite>(id: u64) -> Job {
    if S::TRIPLES_PER_PRESIGNATURE > 0 {
        Job::Triple { id }
    } else {
        Job::Presign {
            id,
            triples: Vec::new(),
        }
    }
}

/// The participants of every stock run `node` started (from its `Start`s, drained
/// from its outbox), in order: (job, participants).
fn started_runs<S: Suite>(node: &mut Node<S>) -> Vec<(Job, Vec<u32>)> {
    let mut runs: Vec<(Job, Vec<u32>)> = Vec::new();
    for (_, bytes) in node.engine.drain_outbox() {
        if let Ok((domain, NodeMessage::Start(start))) = NodeMessage::decode(&bytes) {
            assert_eq!(domain, S::DOMAIN);
            if !runs.iter().any(|(job, _)| *job == start.job) {
                runs.push((start.job, start.participants));
            }
        }
    }
    runs
}

async fn stock_runs_use_exactly_threshold_participants_in_rotating_subsets<S: Suite>() {
    let dir = tempfile::tempdir().unwrap();
    let (mut nodes, _) = start::<S>(4, 2, dir.path()).await;
    let all = Participants::first(4).unwrap();
    let per_proposal = S::TRIPLES_PER_PRESIGNATURE.max(1);

    // The default: one presignature's stock per proposal (ECDSA: a pair of
    // triples, both among the same subset) among exactly the threshold, the
    // proposer included.
    let mut subsets = Vec::new();
    for _ in 0..6 {
        let ids = propose_stock(&mut nodes[0].engine, &all);
        assert_eq!(ids.len(), per_proposal, "one presignature's stock");
        let runs = started_runs(&mut nodes[0]);
        assert_eq!(runs.len(), per_proposal);
        for ((job, participants), id) in runs.iter().zip(&ids) {
            assert_eq!(*job, stock_job::<S>(*id));
            assert_eq!(participants.len(), 2, "exactly the threshold");
            assert!(participants.contains(&0), "the proposer takes part");
        }
        assert!(
            runs.iter().all(|(_, p)| *p == runs[0].1),
            "a presignature's triples among one subset"
        );
        subsets.push(runs[0].1.clone());
    }
    for pair in subsets.windows(2) {
        assert_ne!(
            pair[0], pair[1],
            "consecutive proposals rotate: {subsets:?}"
        );
    }
    // Every other participant takes its share: the rotation covers them all.
    for other in 1..4 {
        assert_eq!(
            subsets.iter().filter(|s| s.contains(&other)).count(),
            2,
            "{subsets:?}"
        );
    }

    // Only live participants: with node 3 down, node 3 is never picked.
    let live = participants(&[0, 1, 2]);
    for _ in 0..4 {
        propose_stock(&mut nodes[1].engine, &live);
        for (_, participants) in started_runs(&mut nodes[1]) {
            assert_eq!(participants.len(), 2);
            assert!(participants.contains(&1) && !participants.contains(&3));
        }
    }
    // With exactly the threshold live there is one subset: the live ones.
    let two = participants(&[0, 2]);
    for _ in 0..2 {
        propose_stock(&mut nodes[2].engine, &two);
        for (_, participants) in started_runs(&mut nodes[2]) {
            assert_eq!(participants, vec![0, 2]);
        }
    }
    // `all`: one run among every live participant.
    nodes[0].engine.set_stock_subset(StockSubset::All);
    let ids = if S::TRIPLES_PER_PRESIGNATURE > 0 {
        nodes[0].engine.propose_triples(&all).unwrap()
    } else {
        vec![nodes[0].engine.propose_presignature(&all).unwrap().unwrap()]
    };
    assert_eq!(ids.len(), 1);
    assert_eq!(started_runs(&mut nodes[0])[0].1, vec![0, 1, 2, 3]);

    shut_down(&mut nodes).await;
}

async fn a_threshold_subset_makes_stock_and_signs<S: Suite>() {
    let dir = tempfile::tempdir().unwrap();
    let (mut nodes, root) = start::<S>(3, 2, dir.path()).await;
    let all = Participants::first(3).unwrap();

    let presignature = stock_presignature(&mut nodes, 0, &all).await;
    let holders: Vec<u32> = nodes
        .iter()
        .filter(|n| presignature_ids(n) == vec![presignature])
        .map(|n| n.me)
        .collect();
    assert_eq!(holders.len(), 2, "exactly the threshold holds it");
    assert!(holders.contains(&0));
    for node in &nodes {
        let held = !presignature_ids(node).is_empty();
        assert_eq!(held, holders.contains(&node.me), "only its holders");
    }
    if S::TRIPLES_PER_PRESIGNATURE > 0 {
        let triple_holders = count(&nodes, |e| matches!(e, Event::TripleStored(_)));
        assert_eq!(
            triple_holders,
            2 * S::TRIPLES_PER_PRESIGNATURE,
            "the triples were made among the same two"
        );
    }
    assert_eq!(nodes[0].engine.own_stock(&all).unwrap().presignatures, 1);

    let request = request::<S>("carol.near", "ethereum-7", 0x55);
    for node in nodes.iter_mut() {
        node.engine.add_request(&request).unwrap();
    }
    assert_eq!(
        nodes[0]
            .engine
            .propose_sign(request.request_id, &all)
            .unwrap(),
        Some(presignature)
    );
    pump(&mut nodes, "a signature at the holders", |n| {
        count(n, |e| matches!(e, Event::Signed { .. })) == 2
    })
    .await;
    for node in &nodes {
        let signatures = signed(node);
        if !holders.contains(&node.me) {
            assert!(signatures.is_empty(), "node {} is no holder", node.me);
            continue;
        }
        let [(id, leader, response)] = signatures[..] else {
            panic!("node {} did not sign once", node.me)
        };
        assert_eq!(id, request.request_id);
        assert_eq!(leader, node.me == 0);
        S::verify(
            &root,
            "carol.near",
            "ethereum-7",
            &request.payload,
            response,
        )
        .unwrap();
    }

    // The outsider down: new runs leave it out.
    let outsider = (0..3).find(|p| !holders.contains(p)).unwrap();
    let live = Participants::new(holders.iter().copied().map(ParticipantId)).unwrap();
    let second = stock_presignature(&mut nodes, 0, &live).await;
    assert_ne!(second, presignature);
    assert!(presignature_ids(&nodes[outsider as usize]).is_empty());
    if S::TRIPLES_PER_PRESIGNATURE > 0 {
        assert!(nodes[outsider as usize]
            .store
            .record_ids(S::TRIPLES)
            .unwrap()
            .is_empty());
    }
    // A holder down: its presignatures are unusable.
    let other_holder = *holders.iter().find(|p| **p != 0).unwrap();
    let without_it = participants(&[0, outsider]);
    assert_eq!(
        nodes[0]
            .engine
            .own_stock(&without_it)
            .unwrap()
            .presignatures,
        0
    );
    assert_eq!(
        nodes[0]
            .engine
            .propose_sign(request.request_id, &without_it)
            .unwrap(),
        None,
        "holder {other_holder} is down"
    );

    shut_down(&mut nodes).await;
}

/// Epoch 0: nodes 0..3 hold the key with threshold 2. Epoch 1: node 0 leaves,
/// nodes 3 and 4 join, threshold 3. The public key stays; the new set signs.
async fn resharing_with_a_join_a_leave_and_a_threshold_change_keeps_the_key<S: Suite>() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = keyless::<S>(5, dir.path()).await;
    let old = Participants::first(3).unwrap();

    // Epoch 0: nodes 0..3 generate the key in the contract's attempt 0; two of them
    // propose, one run happens.
    for node in nodes.iter_mut().take(3) {
        node.engine = key_engine(node, generate::<S>(0));
    }
    nodes[0].engine.propose_key_task().unwrap();
    nodes[1].engine.propose_key_task().unwrap();
    pump(&mut nodes, "keygen at three nodes", |n| {
        stored_keys(n, 0, 0).len() == 3
    })
    .await;
    let keys = stored_keys(&nodes, 0, 0);
    assert!(keys.iter().all(|k| *k == keys[0]), "one public key");
    let public_key = keys[0].clone();
    assert!(
        nodes[..3]
            .iter()
            .all(|n| share_of(n, 0) == Some((0, public_key.clone()))),
        "each share is stored with the attempt that made it"
    );
    assert_eq!(share_of(&nodes[3], 0), None, "node 3 took no part");

    // Epoch 1 in the contract's attempt 1 (attempt ids count on across key
    // events). As in the daemon, the key engines start without a key; the old
    // holders that stay read their epoch-0 shares as the resharing input.
    let new = participants(&[1, 2, 3, 4]);
    let task = KeyTask::Reshare {
        epoch: 1,
        domain: S::DOMAIN,
        old_participants: old.clone(),
        old_threshold: 2,
        public_key: public_key.clone(),
        attempt: 1,
    };
    for node in nodes.iter_mut().skip(1) {
        node.engine = engine::<S>(node.me, 1, &new, 3, &node.store, &node.steps, None);
        node.engine.set_key_task(Some(task.clone()));
        let held = node.engine.load_reshare_input(0, 0).unwrap();
        assert_eq!(held, node.me < 3, "node {}", node.me);
        assert!(!node.engine.resume_finished_key_task().unwrap());
    }
    // A newcomer proposes first: with ECDSA it may; a scheme that needs facts
    // about the old key waits for an old holder's invitation.
    assert!(nodes[3].engine.propose_key_task().unwrap());
    let newcomer_runs = nodes[3].engine.running();
    assert_eq!(newcomer_runs, usize::from(!S::RESHARE_NEEDS_FACTS));
    // An old holder proposes; its invitation carries the facts newcomers need.
    assert!(nodes[1].engine.propose_key_task().unwrap());
    let frames = nodes[1].engine.drain_outbox();
    let starts: Vec<(ParticipantId, Job)> = frames
        .iter()
        .filter_map(|(to, bytes)| match NodeMessage::decode(bytes).unwrap() {
            (_, NodeMessage::Start(start)) => Some((*to, start.job)),
            _ => None,
        })
        .collect();
    assert_eq!(
        starts.iter().map(|(to, _)| to.0).collect::<Vec<_>>(),
        vec![2, 3, 4],
        "invites the new set only"
    );
    for (_, job) in &starts {
        let Job::Reshare {
            facts,
            public_key: key,
            ..
        } = job
        else {
            panic!("a resharing run: {job:?}")
        };
        assert_eq!(*key, public_key);
        assert_eq!(!facts.is_empty(), S::RESHARE_NEEDS_FACTS, "{facts:?}");
    }
    send(&nodes[1], frames);
    pump(&mut nodes, "resharing at four nodes", |n| {
        stored_keys(n, 1, 1).len() == 4
    })
    .await;
    assert!(
        stored_keys(&nodes, 1, 1).iter().all(|k| *k == public_key),
        "resharing keeps the public key"
    );
    for node in &nodes[1..] {
        assert_eq!(share_of(node, 1), Some((1, public_key.clone())));
        assert!(node.engine.has_key());
    }
    assert_eq!(share_of(&nodes[0], 1), None, "node 0 left");
    assert!(
        nodes[..3]
            .iter()
            .all(|n| share_of(n, 0) == Some((0, public_key.clone()))),
        "the old epoch's shares stay until the node retires them"
    );

    // The new set signs: newcomer 4 leads with old holder 2 and newcomer 3 (the
    // new threshold), from a presignature of their own.
    let signers = participants(&[2, 3, 4]);
    for node in nodes.iter_mut().skip(1) {
        let key = node
            .store
            .key_share_at::<S::KeyShare>(S::DOMAIN, 1)
            .unwrap()
            .map(|(_, share)| share);
        node.engine = engine::<S>(node.me, 1, &new, 3, &node.store, &node.steps, key);
    }
    let presignature = stock_presignature(&mut nodes, 4, &signers).await;
    for node in &nodes {
        assert_eq!(
            presignature_ids(node) == vec![presignature],
            signers.contains(ParticipantId(node.me)),
            "node {}",
            node.me
        );
    }
    let request = request::<S>("erin.near", "bitcoin-1", 0x44);
    for node in nodes.iter_mut().skip(1) {
        node.engine.add_request(&request).unwrap();
    }
    nodes[4]
        .engine
        .propose_sign(request.request_id, &signers)
        .unwrap()
        .expect("a presignature");
    pump(&mut nodes, "a signature at three signers", |n| {
        count(n, |e| matches!(e, Event::Signed { .. })) == 3
    })
    .await;
    for node in &nodes[2..] {
        let [(id, leader, response)] = signed(node)[..] else {
            panic!("node {} signed once", node.me)
        };
        assert_eq!(id, request.request_id);
        assert_eq!(leader, node.me == 4);
        S::verify(
            &public_key,
            "erin.near",
            "bitcoin-1",
            &request.payload,
            response,
        )
        .unwrap();
    }

    shut_down(&mut nodes).await;
}

/// A presignature is taken out of storage before its first use: after a restart
/// (at the proposer and at a signer that joined but never finished) nobody can
/// sign with it again, and the restarted engines still sign with fresh stock.
async fn a_presignature_is_never_used_twice_across_a_restart<S: Suite>() {
    let dir = tempfile::tempdir().unwrap();
    let (mut nodes, root) = start::<S>(3, 2, dir.path()).await;
    let all = Participants::first(3).unwrap();
    let presignature = stock_presignature(&mut nodes, 0, &all).await;
    let holder = nodes
        .iter()
        .find(|n| n.me != 0 && presignature_ids(n) == vec![presignature])
        .map(|n| n.me as usize)
        .expect("a second holder");
    let request = request::<S>("dave.near", "solana-1", 0x21);
    for node in nodes.iter_mut() {
        node.engine.add_request(&request).unwrap();
    }

    // Node 0 leads; its holder joins (taking its share of the presignature), then
    // both crash before any protocol message is exchanged.
    assert_eq!(
        nodes[0]
            .engine
            .propose_sign(request.request_id, &all)
            .unwrap(),
        Some(presignature)
    );
    let invitation = nodes[0]
        .engine
        .drain_outbox()
        .into_iter()
        .find(|(to, _)| to.0 as usize == holder)
        .map(|(_, frame)| frame)
        .expect("an invitation to the holder");
    handle(&mut nodes[holder].engine, ParticipantId(0), &invitation).unwrap();
    assert_eq!(nodes[holder].engine.running(), 1, "the holder joined");
    let _ = nodes[holder].engine.drain_outbox(); // lost in the crash
    for i in [0, holder] {
        assert!(presignature_ids(&nodes[i]).is_empty(), "taken at node {i}");
    }

    // Restart: fresh engines load their key shares from storage.
    for node in nodes.iter_mut() {
        node.engine = engine::<S>(node.me, 0, &all, 2, &node.store, &node.steps, None);
        assert!(!node.engine.has_key());
        assert_eq!(node.engine.load_key(0).unwrap(), KeyLoad::Loaded);
        assert!(node.engine.has_key());
        node.engine.add_request(&request).unwrap();
        node.events.clear();
    }
    assert_eq!(nodes[0].engine.own_stock(&all).unwrap().presignatures, 0);
    assert_eq!(
        nodes[0]
            .engine
            .propose_sign(request.request_id, &all)
            .unwrap(),
        None,
        "the proposer has no presignature left"
    );
    // The same invitation again (a replay, or the proposer's retry from before the
    // crash) is declined: the holder's share is gone.
    assert!(is_refused(handle(
        &mut nodes[holder].engine,
        ParticipantId(0),
        &invitation
    )));
    assert_eq!(nodes[holder].engine.running(), 0);
    let declines: Vec<(ParticipantId, NodeMessage)> = nodes[holder]
        .engine
        .drain_outbox()
        .into_iter()
        .map(|(to, frame)| (to, NodeMessage::decode(&frame).unwrap().1))
        .collect();
    assert!(
        matches!(&declines[..], [(ParticipantId(0), NodeMessage::Decline { job: Job::Sign { presignature: p, .. }, .. })] if *p == presignature),
        "{declines:?}"
    );

    // Fresh stock signs the request after the restart.
    let fresh = stock_presignature(&mut nodes, 0, &all).await;
    assert_ne!(fresh, presignature);
    assert_eq!(
        nodes[0]
            .engine
            .propose_sign(request.request_id, &all)
            .unwrap(),
        Some(fresh)
    );
    pump(&mut nodes, "a signature with fresh stock", |n| {
        count(n, |e| matches!(e, Event::Signed { .. })) == 2
    })
    .await;
    for node in &nodes {
        for (_, _, response) in signed(node) {
            S::verify(&root, "dave.near", "solana-1", &request.payload, response).unwrap();
        }
    }

    shut_down(&mut nodes).await;
}

/// A signer that cannot join declines, and the proposer ends the run at once (not
/// at the timeout). Frames that are garbage, or messages a peer may not send, are
/// refused and change nothing: the engines sign afterwards as before.
async fn a_peer_declining_ends_the_run_and_garbage_does_no_harm<S: Suite>() {
    let dir = tempfile::tempdir().unwrap();
    let (mut nodes, root) = start::<S>(3, 2, dir.path()).await;
    let all = Participants::first(3).unwrap();
    let d = S::DOMAIN;

    let presignature = stock_presignature(&mut nodes, 0, &all).await;
    let holder = nodes
        .iter()
        .find(|n| n.me != 0 && presignature_ids(n) == vec![presignature])
        .map(|n| n.me as usize)
        .expect("a second holder");
    let outsider = 3 - holder;

    // Garbage: no frame, another version, a cut frame, an unreadable message.
    let good = NodeMessage::Ping.encode(d);
    let mut other_version = good.clone();
    other_version[0] ^= 0xff;
    let mut bad_body = NodeMessage::StoredPresignature(presignature).encode(d);
    bad_body.truncate(bad_body.len() - 3);
    for garbage in [
        vec![],
        vec![9, 9, 9],
        other_version,
        good[..5].to_vec(),
        bad_body,
    ] {
        assert!(
            matches!(
                handle(&mut nodes[holder].engine, ParticipantId(0), &garbage),
                Err(EngineError::Malformed(_))
            ),
            "{garbage:?}"
        );
    }
    handle(&mut nodes[holder].engine, ParticipantId(0), &good).unwrap();
    // A protocol message that is no protocol message: refused, and blamed on its
    // sender (the frames above never reach an engine; the daemon blames those).
    nodes[holder].engine.drain_peer_reports();
    assert!(handle(
        &mut nodes[holder].engine,
        ParticipantId(0),
        &NodeMessage::Protocol(vec![0xde, 0xad, 0xbe, 0xef]).encode(d)
    )
    .is_err());
    assert!(
        matches!(
            &nodes[holder].engine.drain_peer_reports()[..],
            [PeerReport::Failure {
                peer: ParticipantId(0),
                kind: FailureKind::Malformed,
                ..
            }]
        ),
        "garbage is blamed on its sender"
    );
    // Only the owner retires a record: the outsider cannot make the holder drop
    // node 0's presignature.
    assert!(is_refused(handle(
        &mut nodes[holder].engine,
        ParticipantId(outsider as u32),
        &NodeMessage::RetirePresignature(presignature).encode(d)
    )));
    // Confirmations of records that are not ours are ignored.
    handle(
        &mut nodes[holder].engine,
        ParticipantId(outsider as u32),
        &NodeMessage::StoredPresignature(presignature).encode(d),
    )
    .unwrap();
    // An invitation to sign with a presignature its sender does not own.
    let forged = NodeMessage::Start(Start {
        epoch: 0,
        participants: vec![holder as u32, outsider as u32],
        job: Job::Sign {
            request_id: [7; 32],
            presignature,
        },
    });
    assert!(is_refused(handle(
        &mut nodes[holder].engine,
        ParticipantId(outsider as u32),
        &forged.encode(d)
    )));
    // A decline of a run the sender is not in, or that is not ours, is ignored.
    handle(
        &mut nodes[0].engine,
        ParticipantId(outsider as u32),
        &NodeMessage::Decline {
            job: Job::Sign {
                request_id: [7; 32],
                presignature,
            },
            reason: "spam\n".repeat(1000),
        }
        .encode(d),
    )
    .unwrap();
    for node in &mut nodes {
        assert_eq!(node.engine.running(), 0, "node {}", node.me);
        node.events.extend(node.engine.drain_events());
    }
    assert!(nodes.iter().all(|n| n
        .events
        .iter()
        .all(|e| !matches!(e, Event::Failed { .. } | Event::Signed { .. }))));
    assert_eq!(
        presignature_ids(&nodes[holder]),
        vec![presignature],
        "nothing was retired"
    );
    // The garbage went to the holder's outbox as nothing but declines to the
    // forger: send what it has.
    let replies = nodes[holder].engine.drain_outbox();
    assert!(
        replies.iter().all(|(to, _)| to.0 as usize == outsider),
        "{replies:?}"
    );
    send(&nodes[holder], replies);

    // The engines work as before: a signature with the presignature.
    let request = request::<S>("frank.near", "solana-2", 0x66);
    for node in nodes.iter_mut() {
        node.engine.add_request(&request).unwrap();
    }
    assert_eq!(
        nodes[0]
            .engine
            .propose_sign(request.request_id, &all)
            .unwrap(),
        Some(presignature)
    );
    pump(&mut nodes, "a signature after the garbage", |n| {
        count(n, |e| matches!(e, Event::Signed { .. })) == 2
    })
    .await;
    for node in &nodes {
        for (_, _, response) in signed(node) {
            S::verify(&root, "frank.near", "solana-2", &request.payload, response).unwrap();
        }
    }

    // Now a holder that lost its share (say it was retired there) declines the
    // next signature, and the proposer ends the run at once.
    let second = stock_presignature(&mut nodes, 0, &all).await;
    let holder = nodes
        .iter()
        .find(|n| n.me != 0 && presignature_ids(n) == vec![second])
        .map(|n| n.me as usize)
        .expect("a second holder");
    assert!(nodes[holder]
        .store
        .retire_record(S::PRESIGNATURES, second)
        .unwrap());
    let next = crate::request::<S>("grace.near", "solana-3", 0x77);
    for node in nodes.iter_mut() {
        node.engine.add_request(&next).unwrap();
        node.events.clear();
    }
    let started = Instant::now();
    assert_eq!(
        nodes[0].engine.propose_sign(next.request_id, &all).unwrap(),
        Some(second)
    );
    assert_eq!(nodes[0].engine.running(), 1);
    pump_with(&mut nodes, "the proposer hears the decline", true, |n| {
        count(n, |e| matches!(e, Event::Failed { .. })) == 1
    })
    .await;
    let [(from, why)] = &nodes[holder].refused[..] else {
        panic!("the holder refused once: {:?}", nodes[holder].refused)
    };
    assert_eq!(*from, 0);
    assert!(why.contains("not available"), "{why}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "ended long before the timeout"
    );
    let Some(Event::Failed { job, reason }) = nodes[0].events.first() else {
        panic!("the proposer's run failed: {:?}", nodes[0].events)
    };
    assert_eq!(
        *job,
        Job::Sign {
            request_id: next.request_id.0,
            presignature: second,
        }
    );
    assert!(
        reason.contains(&format!("participant {holder} declined"))
            && reason.contains("not available"),
        "{reason}"
    );
    assert_eq!(nodes[0].engine.running(), 0);
    assert_eq!(count(&nodes, |e| matches!(e, Event::Signed { .. })), 0);
    // The decline is blamed on the holder, and on nobody else; the signature
    // before it counted as a success with its co-signer.
    let reports = nodes[0].engine.drain_peer_reports();
    let failures: Vec<(ParticipantId, FailureKind, &str)> = reports
        .iter()
        .filter_map(|r| match r {
            PeerReport::Failure { peer, kind, detail } => Some((*peer, *kind, detail.as_str())),
            PeerReport::Success { .. } => None,
        })
        .collect();
    assert!(
        matches!(&failures[..], [(p, FailureKind::Decline, why)] if p.0 as usize == holder && why.contains("not available")),
        "{reports:?}"
    );
    assert!(reports
        .iter()
        .any(|r| matches!(r, PeerReport::Success { .. })));

    shut_down(&mut nodes).await;
}

/// Three nodes, the third silent (down from the start: it never sees the
/// invitation); node 0 proposes a stock run among all three, and the two others
/// exchange everything they can (2 s) until the run waits on the silent one.
async fn stall_a_run_on_a_silent_participant<S: Suite>(dir: &std::path::Path) -> Vec<Node<S>> {
    let (mut nodes, _root) = start::<S>(3, 2, dir).await;
    let all = Participants::first(3).unwrap();
    for node in nodes.iter_mut() {
        node.engine.drain_peer_reports();
    }
    nodes[2].network.take().unwrap().shutdown().await;
    nodes[0].engine.set_stock_subset(StockSubset::All);
    propose_stock(&mut nodes[0].engine, &all);
    let quiet = Instant::now() + Duration::from_secs(2);
    pump_with(&mut nodes, "the run stalls", true, |_| {
        Instant::now() >= quiet
    })
    .await;
    nodes
}

/// A stock run among three stalls because one of them is silent (down from the
/// start: it never saw the invitation). At the timeout the proposer blames the
/// silent one, and only it: the honest third participant sent all it could; that
/// one, a joiner, blames nobody but a proposer.
async fn a_timed_out_run_blames_the_silent_participant_alone<S: Suite>() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = stall_a_run_on_a_silent_participant::<S>(dir.path()).await;
    assert_eq!(nodes[0].engine.running(), 1);
    assert_eq!(nodes[1].engine.running(), 1);
    let after_timeout = Instant::now() + Duration::from_secs(21);
    // Node 1 joined on node 0's invitation: it blames only the proposer (node 0
    // could have invited it alone), so it lets the run go unjudged.
    nodes[1].engine.expire(after_timeout);
    assert!(nodes[1].engine.drain_peer_reports().is_empty());
    let failed = nodes[1].engine.drain_events();
    assert!(
        matches!(&failed[..], [Event::Failed { reason, .. }] if reason == "timed out"),
        "{failed:?}"
    );
    for node in nodes[..1].iter_mut() {
        node.engine.expire(after_timeout);
        assert_run_failed_on_participant_2(node, "waiting on participant 2");
    }
    shut_down(&mut nodes).await;
}

/// `node`'s run failed waiting on participant 2 (its reason contains `reason`),
/// and participant 2 alone was blamed for a timeout.
fn assert_run_failed_on_participant_2<S: Scheme>(node: &mut Node<S>, reason: &str) {
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
    let failed = node.engine.drain_events();
    assert!(
        matches!(&failed[..], [Event::Failed { reason: why, .. }] if why.contains(reason)),
        "node {}: {failed:?}",
        node.me
    );
}

/// As above, but the proposer judges the run as soon as it has taken no message
/// for a quarter of the timeout (20 s here) and the silent one sent nothing for as
/// long: it does not hold its slot until the timeout.
async fn a_stalled_run_ends_early_and_blames_the_silent_participant_alone<S: Suite>() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = stall_a_run_on_a_silent_participant::<S>(dir.path()).await;
    let now = Instant::now();
    // The joiner does not end it early: it blames no one but the proposer.
    nodes[1].engine.expire(now + Duration::from_secs(4));
    nodes[1].engine.expire(now + Duration::from_secs(10));
    assert_eq!(nodes[1].engine.running(), 1);
    assert!(nodes[1].engine.drain_peer_reports().is_empty());
    for node in nodes[..1].iter_mut() {
        // Not yet: the run took its last message just now.
        node.engine.expire(now + Duration::from_secs(4));
        assert_eq!(node.engine.running(), 1, "node {}", node.me);
        assert!(node.engine.drain_peer_reports().is_empty());
        node.engine.expire(now + Duration::from_secs(10));
        assert_eq!(node.engine.running(), 0, "node {}", node.me);
        assert_run_failed_on_participant_2(node, "stalled waiting on participant 2");
    }
    shut_down(&mut nodes).await;
}

async fn a_new_attempt_voids_the_old_attempts_runs_and_its_share_replaces_the_older_one<
    S: Suite,
>() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = keyless::<S>(3, dir.path()).await;

    // Attempt 3 completes at every node; say a vote never landed, so the contract
    // moves on to attempt 4 all the same.
    for node in nodes.iter_mut() {
        node.engine.set_key_task(Some(generate::<S>(3)));
    }
    nodes[0].engine.propose_key_task().unwrap();
    pump(&mut nodes, "attempt 3 at three nodes", |n| {
        stored_keys(n, 0, 3).len() == 3
    })
    .await;
    let first = stored_keys(&nodes, 0, 3)[0].clone();
    assert!(nodes
        .iter()
        .all(|n| share_of(n, 0) == Some((3, first.clone()))));

    // Every node starts attempt 4 (same engine: a new attempt is a new task), but
    // before any of its messages arrive the contract moves on to attempt 5 (a
    // participant reported attempt 4 failed).
    for node in nodes.iter_mut() {
        node.engine.set_key_task(Some(generate::<S>(4)));
        assert!(node.engine.propose_key_task().unwrap());
        assert_eq!(node.engine.running(), 1, "attempt 4 under way");
    }
    for node in nodes.iter_mut() {
        node.engine.set_key_task(Some(generate::<S>(5)));
        assert_eq!(node.engine.running(), 0, "attempt 4's run is void");
    }

    // A Start for any attempt but the current one is refused: one that is over, and
    // one the contract has not begun (a proposer cannot pick the attempt).
    for attempt in [3, 4, 6] {
        assert!(
            is_refused(handle(
                &mut nodes[1].engine,
                ParticipantId(0),
                &keygen_start::<S>(attempt)
            )),
            "attempt {attempt}"
        );
    }
    let reshare = NodeMessage::Start(Start {
        epoch: 0,
        participants: vec![0, 1, 2],
        job: Job::Reshare {
            epoch: 0,
            domain: S::DOMAIN.0,
            old_participants: vec![0, 1, 2],
            old_threshold: 2,
            public_key: first.clone(),
            facts: Vec::new(),
            attempt: 5,
        },
    });
    assert!(
        is_refused(handle(
            &mut nodes[1].engine,
            ParticipantId(0),
            &reshare.encode(S::DOMAIN)
        )),
        "attempt 5 is a keygen, not a resharing"
    );
    assert_eq!(nodes[1].engine.running(), 0, "nothing started");
    // Key tasks are settled by attempts: no declines go out (what is queued is
    // node 1's own attempt 4, sent on as it would have been).
    let frames = nodes[1].engine.drain_outbox();
    assert!(frames.iter().all(|(_, frame)| !matches!(
        NodeMessage::decode(frame).unwrap().1,
        NodeMessage::Decline { .. }
    )));
    send(&nodes[1], frames);

    // Attempt 5 runs; attempt 4's messages still in flight are refused on arrival.
    nodes[2].engine.propose_key_task().unwrap();
    pump_with(&mut nodes, "attempt 5 at three nodes", true, |n| {
        stored_keys(n, 0, 5).len() == 3
    })
    .await;
    for node in &nodes {
        // Messages from one peer arrive in order, and attempt 5 needed every peer's:
        // each peer's invitation to attempt 4 came first and was refused.
        assert_eq!(
            node.refused.len(),
            2,
            "node {}: {:?}",
            node.me,
            node.refused
        );
        assert!(
            node.refused
                .iter()
                .all(|(_, why)| why.contains("attempt 4")),
            "node {}: {:?}",
            node.me,
            node.refused
        );
    }
    assert!(
        stored_keys(&nodes, 0, 4).is_empty(),
        "attempt 4 stored nothing"
    );
    let keys = stored_keys(&nodes, 0, 5);
    assert!(keys.iter().all(|k| *k == keys[0]), "one public key");
    assert_ne!(keys[0], first, "a fresh key");
    assert!(
        nodes
            .iter()
            .all(|n| share_of(n, 0) == Some((5, keys[0].clone()))),
        "attempt 5's share replaced attempt 3's"
    );

    shut_down(&mut nodes).await;
}

async fn a_node_that_stored_its_share_refuses_the_attempt_again_and_runs_the_next<S: Suite>() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = keyless::<S>(3, dir.path()).await;
    for node in nodes.iter_mut() {
        node.engine = key_engine(node, generate::<S>(7));
    }
    nodes[1].engine.propose_key_task().unwrap();
    pump(&mut nodes, "attempt 7 at three nodes", |n| {
        stored_keys(n, 0, 7).len() == 3
    })
    .await;
    let key7 = stored_keys(&nodes, 0, 7)[0].clone();

    // Done with attempt 7: another run of it (a peer proposing it anew) is refused,
    // and proposing it starts nothing.
    for node in nodes.iter_mut() {
        let peer = ParticipantId((node.me + 1) % 3);
        match handle(&mut node.engine, peer, &keygen_start::<S>(7)) {
            Err(EngineError::Refused(why)) => assert!(why.contains("finished"), "{why}"),
            other => panic!("node {}: expected a refusal, got {other:?}", node.me),
        }
        assert!(node.engine.propose_key_task().unwrap());
        assert_eq!(node.engine.running(), 0);
    }

    // The same after a restart: a node that finds its attempt-7 share in storage
    // resumes as finished, reports the share again (so its vote can be repeated),
    // and refuses attempt 7.
    for node in nodes.iter_mut() {
        assert_eq!(share_of(node, 0), Some((7, key7.clone())));
        node.engine = key_engine(node, generate::<S>(7));
        assert!(node.engine.resume_finished_key_task().unwrap());
        assert!(node.engine.has_key());
        assert_eq!(
            node.engine.drain_events(),
            vec![Event::KeyShareStored {
                domain: S::DOMAIN,
                epoch: 0,
                attempt: 7,
                public_key: key7.clone(),
            }]
        );
        let peer = ParticipantId((node.me + 2) % 3);
        assert!(is_refused(handle(
            &mut node.engine,
            peer,
            &keygen_start::<S>(7)
        )));
        assert!(node.engine.propose_key_task().unwrap());
        assert_eq!(node.engine.running(), 0, "node {}", node.me);
    }

    // The contract moves on to attempt 8 (say a vote never landed): fresh engines
    // for it run (the attempt-7 share is not theirs to resume), and each share of
    // attempt 8 replaces the one of attempt 7.
    for node in nodes.iter_mut() {
        node.engine = key_engine(node, generate::<S>(8));
        assert!(!node.engine.resume_finished_key_task().unwrap());
        assert!(node.engine.propose_key_task().unwrap());
    }
    pump(&mut nodes, "attempt 8 at three nodes", |n| {
        stored_keys(n, 0, 8).len() == 3
    })
    .await;
    let key8 = stored_keys(&nodes, 0, 8)[0].clone();
    assert_ne!(key8, key7);
    assert!(nodes
        .iter()
        .all(|n| share_of(n, 0) == Some((8, key8.clone()))));

    shut_down(&mut nodes).await;
}

// ------------------------------------------------- protocol steps off the loop

/// Where the stock runs [`propose_stock`] starts store their record.
fn stock_kind<S: Suite>() -> mpc_node::storage::RecordKind {
    if S::TRIPLES_PER_PRESIGNATURE > 0 {
        S::TRIPLES
    } else {
        S::PRESIGNATURES
    }
}

/// Hands `nodes[from]`'s outgoing frames straight to their recipients' engines
/// (no network). Returns how many moved.
fn route<S: Suite>(nodes: &mut [Node<S>], from: usize) -> usize {
    let frames = nodes[from].engine.drain_outbox();
    let moved = frames.len();
    for (to, bytes) in frames {
        let sender = ParticipantId(nodes[from].me);
        handle(&mut nodes[to.0 as usize].engine, sender, &bytes).unwrap();
    }
    moved
}

/// Runs every node's steps and moves every frame until nothing moves.
fn exchange<S: Suite>(nodes: &mut [Node<S>]) {
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

/// A step is handed to the runner rather than run on the caller's turn; while it
/// is away, the instance's messages wait on it (never a second step of the same
/// instance at once) and go into the next step as soon as it comes back.
async fn messages_that_come_while_a_step_is_away_wait_for_the_next_step<S: Suite>() {
    let dir = tempfile::tempdir().unwrap();
    let (mut nodes, _root) = start::<S>(2, 2, dir.path()).await;
    let all = Participants::first(2).unwrap();
    nodes[0].engine.set_stock_subset(StockSubset::All);
    let ids = propose_stock(&mut nodes[0].engine, &all);
    assert_eq!(ids.len(), 1, "one run among all");
    assert_eq!(nodes[0].engine.steps_away(), 1);
    assert_eq!(nodes[0].steps.len(), 1, "handed over, not run");
    assert_eq!(route(&mut nodes, 0), 1, "the invitation");
    assert_eq!(nodes[1].engine.running(), 1, "node 1 joined");
    assert_eq!(settle(&mut nodes[1]), 1);
    assert!(route(&mut nodes, 1) > 0, "node 1's first messages");
    assert_eq!(
        nodes[0].steps.len(),
        1,
        "the messages wait for the step away: one step per instance"
    );
    let first = nodes[0].steps.take().pop().unwrap();
    assert!(nodes[0].engine.step_done(first.run()), "taken up");
    assert_eq!(
        nodes[0].steps.len(),
        1,
        "the messages that waited start the next step at once"
    );
    assert_eq!(nodes[0].engine.steps_away(), 1);
    exchange(&mut nodes);
    for node in &nodes {
        assert_eq!(node.engine.running(), 0, "node {}", node.me);
        assert!(
            node.store
                .record_ids(stock_kind::<S>())
                .unwrap()
                .contains(&ids[0]),
            "node {} stored the record",
            node.me
        );
        assert_eq!(
            count(std::slice::from_ref(node), |e| matches!(
                e,
                Event::TripleStored(_) | Event::PresignatureStored(_)
            )),
            1,
            "node {}",
            node.me
        );
    }
    shut_down(&mut nodes).await;
}

/// The last step of a stock run stores its record on the worker. If the run ends
/// here meanwhile (a participant went silent, or it timed out), the result that
/// comes back is void: the record is retired (never used, never stored again),
/// nothing is confirmed, and the run is reported failed once.
async fn a_stock_run_that_ends_while_its_last_step_is_away_leaves_no_record<S: Suite>() {
    let dir = tempfile::tempdir().unwrap();
    let (mut nodes, _root) = start::<S>(2, 2, dir.path()).await;
    let all = Participants::first(2).unwrap();
    nodes[0].engine.set_stock_subset(StockSubset::All);
    let kind = stock_kind::<S>();
    for ending in ["abandoned", "expired"] {
        let id = propose_stock(&mut nodes[0].engine, &all)[0];
        let mut ended = false;
        for _ in 0..100 {
            // Everything moves but node 0's steps, which run one at a time here.
            settle(&mut nodes[1]);
            route(&mut nodes, 1);
            route(&mut nodes, 0);
            let mut steps = nodes[0].steps.take();
            assert!(steps.len() <= 1, "one step per instance");
            let Some(step) = steps.pop() else { continue };
            let done = step.run();
            if nodes[0].store.record_ids(kind).unwrap().contains(&id) {
                // The last step stored the record; the run ends before it is back.
                match ending {
                    "abandoned" => nodes[0].engine.abandon_runs_with(&[ParticipantId(1)]),
                    _ => nodes[0]
                        .engine
                        .expire(Instant::now() + Duration::from_secs(60)),
                }
                assert_eq!(nodes[0].engine.running(), 0);
                assert!(!nodes[0].engine.step_done(done), "{ending}: void");
                ended = true;
                break;
            }
            nodes[0].engine.step_done(done);
        }
        assert!(ended, "{ending}: the run reached its last step");
        assert!(
            !nodes[0].store.record_ids(kind).unwrap().contains(&id),
            "{ending}: the record of the ended run is retired"
        );
        assert!(
            !nodes[0].store.retire_record(kind, id).unwrap(),
            "{ending}: nothing left to retire"
        );
        assert_eq!(nodes[0].engine.steps_away(), 0);
        assert!(nodes[0].steps.is_empty());
        let events = nodes[0].engine.drain_events();
        assert!(
            matches!(&events[..], [Event::Failed { .. }]),
            "{ending}: reported failed once, never stored: {events:?}"
        );
        // Node 1's copy is of no use to anyone: the owner never proposes it.
        exchange(&mut nodes);
        assert_eq!(nodes[0].engine.running(), 0);
    }
    shut_down(&mut nodes).await;
}

/// A key run whose task the contract replaced while its step was away: the step
/// comes back to nothing, and nothing of it is sent or stored.
async fn a_key_run_voided_while_its_step_is_away_stores_nothing<S: Suite>() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = keyless::<S>(3, dir.path()).await;
    for node in nodes.iter_mut() {
        node.engine = key_engine(node, generate::<S>(0));
    }
    assert!(nodes[0].engine.propose_key_task().unwrap());
    assert_eq!(nodes[0].engine.steps_away(), 1);
    let invitations = nodes[0].engine.drain_outbox();
    assert_eq!(invitations.len(), 2, "the Start to each peer");
    nodes[0].engine.set_key_task(Some(generate::<S>(1)));
    assert_eq!(nodes[0].engine.running(), 0, "attempt 0's run is void");
    let step = nodes[0].steps.take().pop().unwrap();
    assert_eq!(step.tag.kind, mpc_node::engine::StepKind::Key);
    assert!(!nodes[0].engine.step_done(step.run()), "void");
    assert!(nodes[0].engine.drain_outbox().is_empty(), "nothing sent");
    assert!(nodes[0].engine.drain_events().is_empty());
    assert_eq!(nodes[0].engine.steps_away(), 0);
    assert!(nodes[0].steps.is_empty(), "no next step");
    assert_eq!(share_of(&nodes[0], 0), None);
    shut_down(&mut nodes).await;
}

/// Moves every frame as [`exchange`] does, except that `withholder`'s protocol
/// messages to `victim` go out one behind (each held until its next one), as
/// mpc-node's test-only `withhold` does: its last message reaches the others but
/// never `victim`.
fn exchange_withholding<S: Suite>(nodes: &mut [Node<S>], withholder: usize, victim: usize) {
    let mut held: Option<Vec<u8>> = None;
    loop {
        let mut moved = 0;
        for i in 0..nodes.len() {
            moved += settle(&mut nodes[i]);
            let sender = ParticipantId(nodes[i].me);
            for (to, frame) in nodes[i].engine.drain_outbox() {
                moved += 1;
                let protocol = matches!(
                    NodeMessage::decode(&frame).unwrap().1,
                    NodeMessage::Protocol(_)
                );
                let frame = if i == withholder && to.0 as usize == victim && protocol {
                    match held.replace(frame) {
                        Some(previous) => previous,
                        None => continue,
                    }
                } else {
                    frame
                };
                handle(&mut nodes[to.0 as usize].engine, sender, &frame).unwrap();
            }
            let events = nodes[i].engine.drain_events();
            nodes[i].events.extend(events);
        }
        if moved == 0 {
            return;
        }
    }
}

/// Keygen attempt 0 among three: node 2 withholds its last message of the run
/// from node 0, so nodes 1 and 2 store their shares and node 0 waits on node 2
/// alone. The contract ends the attempt (say node 1's report of another run, or
/// its timeout) before node 0's stall rule fires; the key engine dropped for it
/// judges its run: node 2 is blamed once the run has been quiet long enough
/// (not while it was still taking messages), even though node 2's first message
/// of the next attempt reached node 0 before node 0 saw that attempt begin. Node 1,
/// which finished, blames nobody.
async fn an_ended_attempt_blames_the_peer_that_withheld_its_last_key_message<S: Suite>() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = keyless::<S>(3, dir.path()).await;
    for node in nodes.iter_mut() {
        node.engine = key_engine(node, generate::<S>(0));
    }
    assert!(nodes[1].engine.propose_key_task().unwrap());
    exchange_withholding(&mut nodes, 2, 0);
    assert_eq!(stored_keys(&nodes, 0, 0).len(), 2, "nodes 1 and 2 finished");
    assert_eq!(share_of(&nodes[0], 0), None, "node 0 waits on node 2");
    assert_eq!(nodes[0].engine.running(), 1);

    // Just after its last message the run is not judged: a peer may be slow.
    // (The run took that message a second ago, so node 2's message below is
    // newer than the quiet limit when the attempt ends.)
    let took_last = Instant::now() - Duration::from_secs(1);
    nodes[0].engine.expire(took_last);
    nodes[0].engine.judge_ended_attempt(took_last);
    assert!(nodes[0].engine.drain_peer_reports().is_empty());

    // Node 2 saw attempt 1 first and sent node 0 its first message of it, which
    // node 0's engine for attempt 0 holds for the engine to come.
    let mut next = key_engine(&nodes[2], generate::<S>(1));
    assert!(next.propose_key_task().unwrap());
    settle_engine(&mut next, &nodes[2].steps);
    let protocol: Vec<Vec<u8>> = next
        .drain_outbox()
        .into_iter()
        .filter(|(to, _)| to.0 == 0)
        .map(|(_, frame)| frame)
        .filter(|frame| {
            matches!(
                NodeMessage::decode(frame).unwrap().1,
                NodeMessage::Protocol(_)
            )
        })
        .collect();
    assert!(!protocol.is_empty(), "node 2's first message of attempt 1");
    for frame in &protocol {
        handle(&mut nodes[0].engine, ParticipantId(2), frame).unwrap();
    }

    // Attempt 0 ends 3 s after the run's last message, more than half the stall
    // limit (5 s here), and 2 s after node 2's message of attempt 1.
    let ended = took_last + Duration::from_secs(3);
    for node in nodes.iter_mut() {
        node.engine.judge_ended_attempt(ended);
    }
    let reports = nodes[0].engine.drain_peer_reports();
    assert!(
        matches!(
            &reports[..],
            [PeerReport::Failure {
                peer: ParticipantId(2),
                kind: FailureKind::Timeout,
                ..
            }]
        ),
        "{reports:?}"
    );
    for node in &mut nodes[1..] {
        let reports = node.engine.drain_peer_reports();
        assert!(
            reports
                .iter()
                .all(|r| matches!(r, PeerReport::Success { .. })),
            "node {}: {reports:?}",
            node.me
        );
    }
    shut_down(&mut nodes).await;
}

/// [`settle`] for an engine outside a [`Node`] that shares the node's steps.
fn settle_engine<S: Scheme>(engine: &mut Engine<S>, steps: &Arc<ManualSteps>) {
    loop {
        let taken = steps.take();
        if taken.is_empty() {
            return;
        }
        for step in taken {
            engine.step_done(step.run());
        }
    }
}

/// Node 2 withholds its last keygen message from node 0, whose run stalls and
/// ends (blaming node 2; the daemon then reports the attempt failed). Node 0 runs
/// the attempt no more: proposing it starts nothing and a peer's invitation to it
/// is refused, so no fresh first round of the same instance reaches the peers'
/// runs (it would count there as progress and hide what they wait on).
async fn a_key_run_that_failed_here_is_not_run_again_in_its_attempt<S: Suite>() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = keyless::<S>(3, dir.path()).await;
    for node in nodes.iter_mut() {
        node.engine = key_engine(node, generate::<S>(0));
    }
    assert!(nodes[1].engine.propose_key_task().unwrap());
    exchange_withholding(&mut nodes, 2, 0);
    assert_eq!(nodes[0].engine.running(), 1, "node 0 waits on node 2");
    let now = Instant::now();
    nodes[0].engine.expire(now);
    // Past the stall limit (a quarter of the 20 s timeout).
    nodes[0].engine.expire(now + Duration::from_secs(6));
    assert_eq!(nodes[0].engine.running(), 0);
    assert_run_failed_on_participant_2(&mut nodes[0], "stalled waiting on participant 2");

    assert!(
        nodes[0].engine.propose_key_task().unwrap(),
        "the task stands"
    );
    assert_eq!(nodes[0].engine.running(), 0, "but is not run again here");
    match handle(
        &mut nodes[0].engine,
        ParticipantId(1),
        &keygen_start::<S>(0),
    ) {
        Err(EngineError::Refused(why)) => assert!(why.contains("failed"), "{why}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(nodes[0].engine.running(), 0);
    assert!(nodes[0].engine.drain_outbox().is_empty(), "nothing sent");
    assert!(nodes[0].steps.is_empty(), "nothing to step");

    // The next attempt is a new task: node 0 runs it.
    nodes[0].engine.set_key_task(Some(generate::<S>(1)));
    assert!(nodes[0].engine.propose_key_task().unwrap());
    assert_eq!(nodes[0].engine.running(), 1);
    shut_down(&mut nodes).await;
}
