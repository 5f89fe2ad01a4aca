//! Three engines, each with its own database, talking over the real peer-to-peer
//! layer on 127.0.0.1: triples, a presignature, and a signature for a derived key
//! with one node down; forged and unknown invitations are refused; key generation
//! and resharing run as the contract's numbered attempts (a new attempt voids the
//! old one's runs, a share is replaced only by a later attempt's, and a node that
//! stored its share for an attempt takes no further part in it).

use mpc_node::engine::{Engine, EngineError, Event, Job, KeyTask, NodeMessage, Start, StockSubset};
use mpc_node::p2p::noise::StaticKey;
use mpc_node::p2p::{Incoming, Network, NetworkConfig, PeerInfo, Peers};
use mpc_node::storage::{StorageKey, Store};
use primitives::derivation::{derive_public_key_for, Tweak};
use primitives::{DomainId, EcdsaPayload, Payload, RequestId, SignRequest};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use threshold::local::{self, Schedule};
use threshold::{keygen, InstanceId, KeyShare, ParticipantId, Participants, SignTask};
use tokio::sync::mpsc;

/// The domain every test here signs in: domain 0, secp256k1.
const D0: DomainId = DomainId(0);

struct Node {
    me: u32,
    engine: Engine,
    network: Option<Network>,
    incoming: mpsc::Receiver<Incoming>,
    events: Vec<Event>,
    /// Messages this node's engine refused (only where a test tolerates them).
    refused: Vec<(u32, String)>,
    store: Arc<Store>,
}

/// A request as every node would see it on the chain, and the engine's task for it.
fn request(predecessor: &str, path: &str, payload: [u8; 32], entropy: u8) -> (RequestId, SignTask) {
    let payload = EcdsaPayload::new(payload).unwrap();
    let request = SignRequest {
        payload: Payload::Ecdsa(payload),
        path: path.into(),
        domain_id: D0,
    };
    let task = SignTask {
        payload,
        tweak: Tweak::derive(predecessor, path).unwrap(),
        entropy: [entropy; 32],
    };
    (RequestId::of(predecessor, &request), task)
}

async fn start(n: u32, threshold: usize, dir: &std::path::Path) -> (Vec<Node>, Vec<KeyShare>) {
    let parties = Participants::first(n).unwrap();
    let shares: Vec<KeyShare> = local::run(
        parties
            .iter()
            .map(|me| keygen(InstanceId([1; 32]), me, parties.clone(), threshold).unwrap())
            .collect(),
        &Schedule::default(),
    )
    .all_done()
    .unwrap();
    let peers = Peers::default();
    let mut registry = BTreeMap::new();
    let mut nodes = Vec::new();
    for (i, share) in shares.iter().enumerate() {
        let me = ParticipantId(i as u32);
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
        store.put_key_share(D0, 0, 0, share).unwrap();
        let engine = Engine::new(
            0,
            me,
            parties.clone(),
            threshold,
            Some(share.clone()),
            store.clone(),
            Duration::from_secs(20),
        );
        nodes.push(Node {
            me: me.0,
            engine,
            network: Some(network),
            incoming,
            events: Vec::new(),
            refused: Vec::new(),
            store,
        });
    }
    peers.replace(registry);
    (nodes, shares)
}

/// Moves messages between engines and the network until `done` holds (or panics
/// after a bounded wait). Any refused message fails the test.
async fn pump(nodes: &mut [Node], what: &str, done: impl Fn(&[Node]) -> bool) {
    pump_with(nodes, what, false, done).await
}

/// [`pump`], but with `tolerate_refusals` a refused message is recorded in the
/// node's `refused` list instead of failing the test.
async fn pump_with(
    nodes: &mut [Node],
    what: &str,
    tolerate_refusals: bool,
    done: impl Fn(&[Node]) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done(nodes) {
        if Instant::now() >= deadline {
            let events: Vec<(u32, &Vec<Event>)> = nodes.iter().map(|n| (n.me, &n.events)).collect();
            let running: Vec<(u32, usize)> =
                nodes.iter().map(|n| (n.me, n.engine.running())).collect();
            panic!("timed out waiting for: {what}; events {events:?}; running {running:?}");
        }
        let mut idle = true;
        for node in nodes.iter_mut() {
            let Some(network) = &node.network else {
                continue;
            };
            for (to, bytes) in node.engine.drain_outbox() {
                // A peer that is down simply does not get it.
                let _ = network.send(to, Arc::new(bytes));
                idle = false;
            }
            while let Ok(Incoming { from, message }) = node.incoming.try_recv() {
                if let Err(e) = node.engine.handle(from, &message) {
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

fn count(nodes: &[Node], pred: impl Fn(&Event) -> bool) -> usize {
    nodes
        .iter()
        .map(|n| n.events.iter().filter(|e| pred(e)).count())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triples_presignature_and_signature_over_the_network() {
    let dir = tempfile::tempdir().unwrap();
    let (mut nodes, shares) = start(3, 2, dir.path()).await;
    let root = shares[0].public_key;

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
    assert!(nodes
        .iter()
        .all(|n| n.store.triple_ids().unwrap().len() == 2));
    pump(&mut nodes, "the holders confirm the triples", |n| {
        n[0].engine.own_confirmed_stock(&all).unwrap().0 == 2
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
        n[0].engine.own_confirmed_stock(&all).unwrap().1 == 1
    })
    .await;
    assert!(
        nodes
            .iter()
            .all(|n| n.store.triple_ids().unwrap().is_empty()),
        "the triples are used up"
    );
    assert!(nodes
        .iter()
        .all(|n| n.store.presignature_ids().unwrap() == vec![presignature]));

    // A request, as every node sees it on the chain.
    let (request_id, task) = request("alice.near", "ethereum-1", [0x33; 32], 5);
    let payload = task.payload;
    for node in nodes.iter_mut() {
        node.engine.add_request(request_id, task.clone());
    }

    // Node 2 goes down; nodes 0 and 1 (the threshold) sign.
    nodes[2].network.take().unwrap().shutdown().await;
    let signers = Participants::new([ParticipantId(0), ParticipantId(1)]).unwrap();
    assert_eq!(
        nodes[0].engine.propose_sign(request_id, &signers).unwrap(),
        Some(presignature)
    );
    pump(&mut nodes, "a signature at both signers", |n| {
        count(n, |e| matches!(e, Event::Signed { .. })) == 2
    })
    .await;
    let derived = derive_public_key_for(&root, "alice.near", "ethereum-1").unwrap();
    for (i, node) in nodes[..2].iter().enumerate() {
        let Some(Event::Signed {
            request_id: id,
            response,
            leader,
        }) = node
            .events
            .iter()
            .find(|e| matches!(e, Event::Signed { .. }))
        else {
            unreachable!()
        };
        assert_eq!(*id, request_id);
        assert_eq!(*leader, i == 0, "only the proposer leads");
        response
            .verify(&payload, &derived)
            .expect("the signature verifies for the derived key");
    }

    // The presignature is gone at the signers: no second signature from it, ever.
    assert!(nodes[0].store.presignature_ids().unwrap().is_empty());
    assert!(nodes[1].store.presignature_ids().unwrap().is_empty());
    let signers = Participants::new([ParticipantId(0), ParticipantId(1)]).unwrap();
    assert_eq!(
        nodes[0].engine.propose_sign(request_id, &signers).unwrap(),
        None
    );

    for node in nodes {
        if let Some(network) = node.network {
            network.shutdown().await;
        }
    }
}

/// The participants of every stock run `node` started (from its `Start`s, drained
/// from its outbox), in order: (job, participants).
fn started_runs(node: &mut Node) -> Vec<(Job, Vec<u32>)> {
    let mut runs: Vec<(Job, Vec<u32>)> = Vec::new();
    for (_, bytes) in node.engine.drain_outbox() {
        if let Ok(NodeMessage::Start(start)) = NodeMessage::decode(&bytes) {
            if !runs.iter().any(|(job, _)| *job == start.job) {
                runs.push((start.job, start.participants));
            }
        }
    }
    runs
}

#[tokio::test]
async fn stock_runs_use_exactly_threshold_participants_in_rotating_subsets() {
    let dir = tempfile::tempdir().unwrap();
    let (mut nodes, _) = start(4, 2, dir.path()).await;
    let all = Participants::first(4).unwrap();

    // The default: a pair of triples per proposal, both among the same subset of
    // exactly the threshold, the proposer included.
    let mut subsets = Vec::new();
    for _ in 0..6 {
        let ids = nodes[0].engine.propose_triples(&all).unwrap();
        assert_eq!(ids.len(), 2, "a pair per proposal");
        let runs = started_runs(&mut nodes[0]);
        assert_eq!(runs.len(), 2);
        for ((job, participants), id) in runs.iter().zip(&ids) {
            assert_eq!(*job, Job::Triple { id: *id });
            assert_eq!(participants.len(), 2, "exactly the threshold");
            assert!(participants.contains(&0), "the proposer takes part");
        }
        assert_eq!(
            runs[0].1, runs[1].1,
            "both triples of a pair among one subset"
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
    let live = Participants::new([0, 1, 2].map(ParticipantId)).unwrap();
    for _ in 0..4 {
        nodes[1].engine.propose_triples(&live).unwrap();
        for (_, participants) in started_runs(&mut nodes[1]) {
            assert_eq!(participants.len(), 2);
            assert!(participants.contains(&1) && !participants.contains(&3));
        }
    }
    // With exactly the threshold live there is one subset: the live ones.
    let two = Participants::new([0, 2].map(ParticipantId)).unwrap();
    for _ in 0..2 {
        nodes[2].engine.propose_triples(&two).unwrap();
        for (_, participants) in started_runs(&mut nodes[2]) {
            assert_eq!(participants, vec![0, 2]);
        }
    }
    // `all` is today's behaviour: one triple among every live participant.
    nodes[0].engine.set_stock_subset(StockSubset::All);
    assert_eq!(nodes[0].engine.propose_triples(&all).unwrap().len(), 1);
    assert_eq!(started_runs(&mut nodes[0])[0].1, vec![0, 1, 2, 3]);

    shut_down(&mut nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_threshold_subset_makes_triples_a_presignature_and_a_signature() {
    let dir = tempfile::tempdir().unwrap();
    let (mut nodes, shares) = start(3, 2, dir.path()).await;
    let root = shares[0].public_key;
    let all = Participants::first(3).unwrap();

    let ids = nodes[0].engine.propose_triples(&all).unwrap();
    assert_eq!(ids.len(), 2);
    pump(&mut nodes, "a pair of triples at two nodes", |n| {
        count(n, |e| matches!(e, Event::TripleStored(_))) == 4
    })
    .await;
    let holders: Vec<u32> = nodes
        .iter()
        .filter(|n| !n.store.triple_ids().unwrap().is_empty())
        .map(|n| n.me)
        .collect();
    assert_eq!(holders.len(), 2, "exactly the threshold holds the triples");
    assert!(holders.contains(&0));
    pump(&mut nodes, "the holders confirm the triples", |n| {
        n[0].engine.own_confirmed_stock(&all).unwrap().0 == 2
    })
    .await;
    assert_eq!(nodes[0].engine.own_stock(&all).unwrap().0, 2, "one pair");
    nodes[0]
        .engine
        .propose_presignature(&all)
        .unwrap()
        .expect("a pair with the same holders");
    pump(&mut nodes, "a presignature at the two holders", |n| {
        count(n, |e| matches!(e, Event::PresignatureStored(_))) == 2
    })
    .await;
    for node in &nodes {
        let held = !node.store.presignature_ids().unwrap().is_empty();
        assert_eq!(held, holders.contains(&node.me), "the triples' holders");
    }
    pump(&mut nodes, "the holders confirm the presignature", |n| {
        n[0].engine.own_confirmed_stock(&all).unwrap().1 == 1
    })
    .await;

    let (request_id, task) = request("carol.near", "ethereum-7", [0x55; 32], 9);
    let payload = task.payload;
    for node in nodes.iter_mut() {
        node.engine.add_request(request_id, task.clone());
    }
    nodes[0]
        .engine
        .propose_sign(request_id, &all)
        .unwrap()
        .expect("a presignature");
    pump(&mut nodes, "a signature at the holders", |n| {
        count(n, |e| matches!(e, Event::Signed { .. })) == 2
    })
    .await;
    let derived = derive_public_key_for(&root, "carol.near", "ethereum-7").unwrap();
    for node in nodes.iter().filter(|n| holders.contains(&n.me)) {
        let Some(Event::Signed { response, .. }) = node
            .events
            .iter()
            .find(|e| matches!(e, Event::Signed { .. }))
        else {
            panic!("node {} did not sign", node.me)
        };
        response.verify(&payload, &derived).unwrap();
    }

    // A holder down: the presignatures it holds are unusable, and new runs leave
    // it out.
    let outsider = (0..3).find(|p| !holders.contains(p)).unwrap();
    let live = Participants::new(holders.iter().copied().map(ParticipantId)).unwrap();
    let ids = nodes[0].engine.propose_triples(&live).unwrap();
    pump(&mut nodes, "a second pair among the live holders", |n| {
        count(n, |e| matches!(e, Event::TripleStored(_))) == 8
    })
    .await;
    assert_eq!(ids.len(), 2);
    assert!(nodes[outsider as usize]
        .store
        .triple_ids()
        .unwrap()
        .is_empty());

    shut_down(&mut nodes).await;
}

#[tokio::test]
async fn forged_and_unknown_invitations_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut nodes, _) = start(3, 2, dir.path()).await;
    let refused = |result: Result<(), EngineError>| matches!(result, Err(EngineError::Refused(_)));

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
    assert!(refused(
        nodes[1].engine.handle(ParticipantId(2), &forged.encode())
    ));

    // Node 0 invites node 1 to sign a request node 1 has not seen on the chain yet:
    // nothing starts until it has; then node 1 checks the rest (here: it holds no
    // such presignature) and still signs nothing.
    let unknown = NodeMessage::Start(Start {
        epoch: 0,
        participants: vec![0, 1],
        job: Job::Sign {
            request_id: [2; 32],
            presignature: owned_by_0,
        },
    });
    nodes[1]
        .engine
        .handle(ParticipantId(0), &unknown.encode())
        .unwrap();
    assert_eq!(nodes[1].engine.running(), 0, "deferred, not started");
    let (_, task) = request("x.near", "p", [2; 32], 0);
    nodes[1].engine.add_request(RequestId([2; 32]), task);
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
    nodes[1]
        .engine
        .handle(ParticipantId(0), &partial.encode())
        .expect("a triple among two of three, the threshold");
    assert_eq!(nodes[1].engine.running(), 1);
    let outsider = NodeMessage::Start(Start {
        epoch: 0,
        participants: vec![0, 1, 9],
        job: Job::Triple { id: owned_by_0 },
    });
    assert!(refused(
        nodes[1].engine.handle(ParticipantId(0), &outsider.encode())
    ));

    // A run of another epoch (e.g. from before a resharing) is refused.
    let stale = NodeMessage::Start(Start {
        epoch: 5,
        participants: vec![0, 1, 2],
        job: Job::Triple { id: owned_by_0 },
    });
    assert!(refused(
        nodes[1].engine.handle(ParticipantId(0), &stale.encode())
    ));

    // Bytes that are no message.
    assert!(matches!(
        nodes[1].engine.handle(ParticipantId(0), &[9, 9, 9]),
        Err(EngineError::Malformed(_))
    ));
    assert!(matches!(
        nodes[1].engine.handle(ParticipantId(0), &[]),
        Err(EngineError::Malformed(_))
    ));
    assert_eq!(
        nodes[1].engine.running(),
        1,
        "nothing started but the triple among two"
    );

    for node in nodes.iter_mut() {
        if let Some(network) = node.network.take() {
            network.shutdown().await;
        }
    }
}

/// `n` nodes with networks and databases but no key: engines are set per phase.
async fn keyless(n: u32, dir: &std::path::Path) -> Vec<Node> {
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
            Store::open(&dir.join(format!("k{i}.redb")), &StorageKey::generate()).unwrap(),
        );
        let engine = Engine::new(
            0,
            me,
            everyone.clone(),
            2,
            None,
            store.clone(),
            Duration::from_secs(20),
        );
        nodes.push(Node {
            me: i,
            engine,
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

/// The public keys of the shares the engines reported storing for `epoch` in the
/// contract's key-event attempt `attempt`.
fn stored_keys(nodes: &[Node], epoch: u64, attempt: u64) -> Vec<k256::AffinePoint> {
    nodes
        .iter()
        .flat_map(|n| n.events.iter())
        .filter_map(|e| match e {
            Event::KeyShareStored {
                epoch: e,
                attempt: a,
                public_key,
            } if *e == epoch && *a == attempt => Some(*public_key),
            _ => None,
        })
        .collect()
}

/// The share of domain 0's key a node's database holds for `epoch`: the attempt
/// that made it and its public key.
fn share_of(node: &Node, epoch: u64) -> Option<(u64, k256::AffinePoint)> {
    node.store
        .key_share_at(D0, epoch)
        .unwrap()
        .map(|(attempt, share)| (attempt, share.public_key))
}

/// The contract's keygen of domain 0 in epoch 0, attempt `attempt`.
fn generate(attempt: u64) -> KeyTask {
    KeyTask::Generate {
        epoch: 0,
        domain: D0,
        attempt,
    }
}

/// A Start of keygen attempt `attempt` among nodes 0..3, as any of them proposes it.
fn keygen_start(attempt: u64) -> Vec<u8> {
    NodeMessage::Start(Start {
        epoch: 0,
        participants: vec![0, 1, 2],
        job: Job::Keygen {
            epoch: 0,
            domain: 0,
            attempt,
        },
    })
    .encode()
}

/// A key engine as the daemon builds one for an attempt: epoch 0, nodes 0..3,
/// threshold 2, no key, the contract's task.
fn key_engine(node: &Node, task: KeyTask) -> Engine {
    let mut engine = Engine::new(
        0,
        ParticipantId(node.me),
        Participants::first(3).unwrap(),
        2,
        None,
        node.store.clone(),
        Duration::from_secs(20),
    );
    engine.set_key_task(Some(task));
    engine
}

fn is_refused(result: Result<(), EngineError>) -> bool {
    matches!(result, Err(EngineError::Refused(_)))
}

async fn shut_down(nodes: &mut [Node]) {
    for node in nodes.iter_mut() {
        if let Some(network) = node.network.take() {
            network.shutdown().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keygen_then_resharing_to_a_newcomer_who_then_signs() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = keyless(4, dir.path()).await;
    let first_three = Participants::first(3).unwrap();

    // Epoch 0: nodes 0..3 generate the key in the contract's attempt 0; two of them
    // propose, one run happens.
    for node in nodes.iter_mut().take(3) {
        node.engine = key_engine(node, generate(0));
    }
    nodes[0].engine.propose_key_task().unwrap();
    nodes[1].engine.propose_key_task().unwrap();
    pump(&mut nodes, "keygen at three nodes", |n| {
        stored_keys(n, 0, 0).len() == 3
    })
    .await;
    let keys = stored_keys(&nodes, 0, 0);
    assert!(keys.iter().all(|k| *k == keys[0]), "one public key");
    let public_key = keys[0];
    assert!(
        nodes[..3]
            .iter()
            .all(|n| share_of(n, 0) == Some((0, public_key))),
        "each share is stored with the attempt that made it"
    );
    assert_eq!(share_of(&nodes[3], 0), None, "node 3 took no part");

    // Epoch 1: node 3 joins, threshold 3, in the contract's attempt 1 (attempt ids
    // count on across key events). As in the daemon, the key engine starts without
    // a key; the old holders bring their epoch-0 shares as the resharing input.
    let all_four = Participants::first(4).unwrap();
    let task = KeyTask::Reshare {
        epoch: 1,
        domain: D0,
        old_participants: first_three.clone(),
        old_threshold: 2,
        public_key,
        attempt: 1,
    };
    for node in nodes.iter_mut() {
        let share = node.store.key_share_at(D0, 0).unwrap().map(|(_, s)| s);
        node.engine = Engine::new(
            1,
            ParticipantId(node.me),
            all_four.clone(),
            3,
            None,
            node.store.clone(),
            Duration::from_secs(20),
        );
        node.engine.set_key_task(Some(task.clone()));
        node.engine.set_reshare_input(share);
    }
    nodes[3].engine.propose_key_task().unwrap();
    pump(&mut nodes, "resharing at four nodes", |n| {
        stored_keys(n, 1, 1).len() == 4
    })
    .await;
    assert!(
        stored_keys(&nodes, 1, 1).iter().all(|k| *k == public_key),
        "resharing keeps the public key"
    );
    assert!(nodes
        .iter()
        .all(|n| share_of(n, 1) == Some((1, public_key))));
    assert!(
        nodes[..3]
            .iter()
            .all(|n| share_of(n, 0) == Some((0, public_key))),
        "the old epoch's shares stay until the node retires them"
    );

    // The newcomer stocks a presignature and leads a signature with two old nodes.
    nodes[3].engine.set_stock_subset(StockSubset::All);
    nodes[3].engine.propose_triples(&all_four).unwrap();
    nodes[3].engine.propose_triples(&all_four).unwrap();
    pump(&mut nodes, "two triples at four nodes", |n| {
        count(n, |e| matches!(e, Event::TripleStored(_))) == 8
    })
    .await;
    pump(&mut nodes, "the holders confirm the triples", |n| {
        n[3].engine.own_confirmed_stock(&all_four).unwrap().0 == 2
    })
    .await;
    nodes[3]
        .engine
        .propose_presignature(&all_four)
        .unwrap()
        .expect("two own triples");
    pump(&mut nodes, "a presignature at four nodes", |n| {
        count(n, |e| matches!(e, Event::PresignatureStored(_))) == 4
    })
    .await;
    pump(&mut nodes, "the holders confirm the presignature", |n| {
        n[3].engine.own_confirmed_stock(&all_four).unwrap().1 == 1
    })
    .await;
    let (request_id, task) = request("erin.near", "bitcoin-1", [0x44; 32], 6);
    let payload = task.payload;
    for node in nodes.iter_mut() {
        node.engine.add_request(request_id, task.clone());
    }
    let signers = Participants::new([1, 2, 3].map(ParticipantId)).unwrap();
    nodes[3]
        .engine
        .propose_sign(request_id, &signers)
        .unwrap()
        .expect("a presignature");
    pump(&mut nodes, "a signature at three signers", |n| {
        count(n, |e| matches!(e, Event::Signed { .. })) == 3
    })
    .await;
    let derived = derive_public_key_for(&public_key, "erin.near", "bitcoin-1").unwrap();
    let Some(Event::Signed { response, .. }) = nodes[3]
        .events
        .iter()
        .find(|e| matches!(e, Event::Signed { .. }))
    else {
        unreachable!()
    };
    response
        .verify(&payload, &derived)
        .expect("verifies for the derived key of the unchanged root");

    shut_down(&mut nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_attempt_voids_the_old_attempts_runs_and_its_share_replaces_the_older_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = keyless(3, dir.path()).await;

    // Attempt 3 completes at every node; say a vote never landed, so the contract
    // moves on to attempt 4 all the same.
    for node in nodes.iter_mut() {
        node.engine.set_key_task(Some(generate(3)));
    }
    nodes[0].engine.propose_key_task().unwrap();
    pump(&mut nodes, "attempt 3 at three nodes", |n| {
        stored_keys(n, 0, 3).len() == 3
    })
    .await;
    let first = stored_keys(&nodes, 0, 3)[0];
    assert!(nodes.iter().all(|n| share_of(n, 0) == Some((3, first))));

    // Every node starts attempt 4 (same engine: a new attempt is a new task), but
    // before any of its messages arrive the contract moves on to attempt 5 (a
    // participant reported attempt 4 failed).
    for node in nodes.iter_mut() {
        node.engine.set_key_task(Some(generate(4)));
        assert!(node.engine.propose_key_task().unwrap());
        assert_eq!(node.engine.running(), 1, "attempt 4 under way");
    }
    for node in nodes.iter_mut() {
        node.engine.set_key_task(Some(generate(5)));
        assert_eq!(node.engine.running(), 0, "attempt 4's run is void");
    }

    // A Start for any attempt but the current one is refused: one that is over, and
    // one the contract has not begun (a proposer cannot pick the attempt).
    for attempt in [3, 4, 6] {
        assert!(
            is_refused(
                nodes[1]
                    .engine
                    .handle(ParticipantId(0), &keygen_start(attempt))
            ),
            "attempt {attempt}"
        );
    }
    let reshare = NodeMessage::Start(Start {
        epoch: 0,
        participants: vec![0, 1, 2],
        job: Job::Reshare {
            epoch: 0,
            domain: 0,
            old_participants: vec![0, 1, 2],
            old_threshold: 2,
            public_key: primitives::SerializableAffinePoint::from_point(&first).affine_point,
            attempt: 5,
        },
    });
    assert!(
        is_refused(nodes[1].engine.handle(ParticipantId(0), &reshare.encode())),
        "attempt 5 is a keygen, not a resharing"
    );
    assert_eq!(nodes[1].engine.running(), 0, "nothing started");

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
        nodes.iter().all(|n| share_of(n, 0) == Some((5, keys[0]))),
        "attempt 5's share replaced attempt 3's"
    );

    shut_down(&mut nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_stored_its_share_refuses_the_attempt_again_and_runs_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = keyless(3, dir.path()).await;
    for node in nodes.iter_mut() {
        node.engine = key_engine(node, generate(7));
    }
    nodes[1].engine.propose_key_task().unwrap();
    pump(&mut nodes, "attempt 7 at three nodes", |n| {
        stored_keys(n, 0, 7).len() == 3
    })
    .await;
    let key7 = stored_keys(&nodes, 0, 7)[0];

    // Done with attempt 7: another run of it (a peer proposing it anew) is refused,
    // and proposing it starts nothing.
    for node in nodes.iter_mut() {
        let peer = ParticipantId((node.me + 1) % 3);
        match node.engine.handle(peer, &keygen_start(7)) {
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
        let (attempt, share) = node.store.key_share_at(D0, 0).unwrap().unwrap();
        assert_eq!(attempt, 7);
        node.engine = key_engine(node, generate(7));
        node.engine.resume_finished_key_task(share);
        let events: Vec<Event> = node.engine.drain_events().collect();
        assert_eq!(
            events,
            vec![Event::KeyShareStored {
                epoch: 0,
                attempt: 7,
                public_key: key7,
            }]
        );
        let peer = ParticipantId((node.me + 2) % 3);
        assert!(is_refused(node.engine.handle(peer, &keygen_start(7))));
        assert!(node.engine.propose_key_task().unwrap());
        assert_eq!(node.engine.running(), 0, "node {}", node.me);
    }

    // The contract moves on to attempt 8 (say a vote never landed): fresh engines
    // for it run, and each share of attempt 8 replaces the one of attempt 7.
    for node in nodes.iter_mut() {
        node.engine = key_engine(node, generate(8));
        assert!(node.engine.propose_key_task().unwrap());
    }
    pump(&mut nodes, "attempt 8 at three nodes", |n| {
        stored_keys(n, 0, 8).len() == 3
    })
    .await;
    let key8 = stored_keys(&nodes, 0, 8)[0];
    assert_ne!(key8, key7);
    assert!(nodes.iter().all(|n| share_of(n, 0) == Some((8, key8))));

    shut_down(&mut nodes).await;
}
