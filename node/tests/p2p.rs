//! The peer-to-peer layer over real sockets on 127.0.0.1: authenticated delivery,
//! large messages, strangers, impostors, garbage and reconnection.

use mpc_node::p2p::noise::{Sender, StaticKey};
use mpc_node::p2p::{Incoming, Network, NetworkConfig, NetworkStats, PeerInfo, Peers, SendError};
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use threshold::ParticipantId;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

const NETWORK: &str = "signer.test.near";
const WAIT: Duration = Duration::from_secs(10);

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Starts `n` nodes that know each other; returns them, the registry and their keys.
async fn start_nodes(
    n: u32,
) -> (
    Vec<(Network, mpsc::Receiver<Incoming>)>,
    Peers,
    Vec<StaticKey>,
) {
    let keys: Vec<StaticKey> = (0..n).map(|_| StaticKey::generate()).collect();
    let peers = Peers::default();
    let mut nodes = Vec::new();
    let mut registry = BTreeMap::new();
    for (i, key) in keys.iter().enumerate() {
        let id = ParticipantId(i as u32);
        let config = NetworkConfig::new(id, loopback(), key.clone(), NETWORK);
        let (network, incoming) = Network::start(config, peers.clone()).await.unwrap();
        registry.insert(
            id,
            PeerInfo {
                address: network.local_addr().to_string(),
                key: key.public(),
            },
        );
        nodes.push((network, incoming));
    }
    peers.replace(registry);
    (nodes, peers, keys)
}

async fn next(incoming: &mut mpsc::Receiver<Incoming>) -> Incoming {
    tokio::time::timeout(WAIT, incoming.recv())
        .await
        .expect("a message within the wait")
        .expect("network runs")
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

#[tokio::test]
async fn messages_reach_their_peer_attributed_to_the_sender() {
    let (mut nodes, _, _) = start_nodes(3).await;
    nodes[0]
        .0
        .send(ParticipantId(1), Arc::new(b"hello from 0".to_vec()))
        .unwrap();
    nodes[2]
        .0
        .send(ParticipantId(1), Arc::new(b"hello from 2".to_vec()))
        .unwrap();
    let mut got = [next(&mut nodes[1].1).await, next(&mut nodes[1].1).await];
    got.sort_by_key(|m| m.from);
    assert_eq!(
        got[0],
        Incoming {
            from: ParticipantId(0),
            message: b"hello from 0".to_vec()
        }
    );
    assert_eq!(
        got[1],
        Incoming {
            from: ParticipantId(2),
            message: b"hello from 2".to_vec()
        }
    );

    // Many messages in order, and one large enough to span many Noise chunks.
    let big: Vec<u8> = (0..1_500_000u32).map(|i| (i % 251) as u8).collect();
    for i in 0..50u8 {
        nodes[1]
            .0
            .send(ParticipantId(2), Arc::new(vec![i; 100]))
            .unwrap();
    }
    nodes[1]
        .0
        .send(ParticipantId(2), Arc::new(big.clone()))
        .unwrap();
    for i in 0..50u8 {
        assert_eq!(next(&mut nodes[2].1).await.message, vec![i; 100]);
    }
    assert_eq!(next(&mut nodes[2].1).await.message, big);

    assert_eq!(
        nodes[0].0.send(ParticipantId(9), Arc::new(vec![1])),
        Err(SendError::UnknownPeer(ParticipantId(9)))
    );
    for (network, _) in nodes {
        network.shutdown().await;
    }
}

#[tokio::test]
async fn strangers_impostors_and_garbage_are_refused_and_service_continues() {
    let (mut nodes, peers, _) = start_nodes(2).await;
    let target = nodes[0].0.local_addr();

    // A stranger: valid Noise handshake with a key nobody registered.
    let stranger = StaticKey::generate();
    let stream = TcpStream::connect(target).await.unwrap();
    let prologue = format!("chain-signatures p2p v1:{NETWORK}").into_bytes();
    let mut sender = Sender::handshake(
        stream,
        &stranger,
        &prologue,
        &peers.get(ParticipantId(0)).unwrap().key,
    )
    .await
    .unwrap();
    let _ = sender.send(b"let me in").await;
    let stats = nodes[0].0.stats();
    eventually("the stranger is refused", || {
        NetworkStats::get(&stats.unknown_peers) == 1
    })
    .await;

    // Another network's node (other prologue) cannot complete the handshake.
    let stream = TcpStream::connect(target).await.unwrap();
    let other = Sender::handshake(
        stream,
        &stranger,
        b"another network",
        &peers.get(ParticipantId(0)).unwrap().key,
    )
    .await;
    assert!(other.is_err());

    // Garbage instead of a handshake, and garbage after a valid handshake.
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut raw = TcpStream::connect(target).await.unwrap();
    let junk: Vec<u8> = (0..300).map(|_| rng.gen()).collect();
    raw.write_all(&junk).await.unwrap();
    drop(raw);
    eventually("garbage handshakes fail", || {
        NetworkStats::get(&stats.failed_handshakes) >= 2
    })
    .await;

    // An impostor at participant 1's address: node 0 refuses to send to it.
    let impostor_key = StaticKey::generate();
    let impostor = Network::start(
        NetworkConfig::new(ParticipantId(1), loopback(), impostor_key, NETWORK),
        peers.clone(),
    )
    .await
    .unwrap();
    let mut registry = BTreeMap::new();
    registry.insert(ParticipantId(0), peers.get(ParticipantId(0)).unwrap());
    registry.insert(
        ParticipantId(1),
        PeerInfo {
            address: impostor.0.local_addr().to_string(),
            key: peers.get(ParticipantId(1)).unwrap().key,
        },
    );
    let fooled = Peers::new(registry);
    let lookalike = Network::start(
        NetworkConfig::new(ParticipantId(0), loopback(), StaticKey::generate(), NETWORK),
        fooled,
    )
    .await
    .unwrap();
    lookalike
        .0
        .send(ParticipantId(1), Arc::new(b"secret".to_vec()))
        .unwrap();
    eventually("the impostor is detected", || {
        NetworkStats::get(&lookalike.0.stats().impostors) >= 1
    })
    .await;
    lookalike.0.shutdown().await;
    impostor.0.shutdown().await;

    // The real peer still gets through.
    nodes[1]
        .0
        .send(ParticipantId(0), Arc::new(b"still here".to_vec()))
        .unwrap();
    assert_eq!(
        next(&mut nodes[0].1).await,
        Incoming {
            from: ParticipantId(1),
            message: b"still here".to_vec()
        }
    );
    for (network, _) in nodes {
        network.shutdown().await;
    }
}

#[tokio::test]
async fn a_tampered_frame_ends_only_that_connection() {
    let (mut nodes, peers, keys) = start_nodes(2).await;
    let target = nodes[0].0.local_addr();
    let prologue = format!("chain-signatures p2p v1:{NETWORK}").into_bytes();
    let node0_key = peers.get(ParticipantId(0)).unwrap().key;

    // Participant 1, by hand: a valid handshake and message, then a frame whose
    // ciphertext was tampered with.
    let stream = TcpStream::connect(target).await.unwrap();
    let mut sender = Sender::handshake(stream, &keys[1], &prologue, &node0_key)
        .await
        .unwrap();
    sender.send(b"genuine").await.unwrap();
    assert_eq!(
        next(&mut nodes[0].1).await,
        Incoming {
            from: ParticipantId(1),
            message: b"genuine".to_vec()
        }
    );
    let mut stream = sender.into_stream();
    let mut forged = vec![0u8, 40];
    forged.extend((0..40u8).map(|i| i.wrapping_mul(37)));
    stream.write_all(&forged).await.unwrap();
    let stats = nodes[0].0.stats();
    eventually("the tampered connection is dropped", || {
        NetworkStats::get(&stats.bad_frames) == 1
    })
    .await;

    // Participant 1's node is unaffected and gets through on its own connection.
    nodes[1]
        .0
        .send(ParticipantId(0), Arc::new(b"after".to_vec()))
        .unwrap();
    assert_eq!(
        next(&mut nodes[0].1).await,
        Incoming {
            from: ParticipantId(1),
            message: b"after".to_vec()
        }
    );
    for (network, _) in nodes {
        network.shutdown().await;
    }
}

#[tokio::test]
async fn senders_reconnect_when_a_peer_comes_back() {
    let (mut nodes, peers, keys) = start_nodes(2).await;
    nodes[0]
        .0
        .send(ParticipantId(1), Arc::new(b"one".to_vec()))
        .unwrap();
    assert_eq!(next(&mut nodes[1].1).await.message, b"one");

    // Node 1 goes away and comes back on a new port with the same key.
    let (old, _) = nodes.pop().unwrap();
    let key1 = keys[1].clone();
    old.shutdown().await;
    let mut registry = BTreeMap::new();
    registry.insert(ParticipantId(0), peers.get(ParticipantId(0)).unwrap());
    let config = NetworkConfig::new(ParticipantId(1), loopback(), key1.clone(), NETWORK);
    let (back, mut back_incoming) = Network::start(config, peers.clone()).await.unwrap();
    registry.insert(
        ParticipantId(1),
        PeerInfo {
            address: back.local_addr().to_string(),
            key: key1.public(),
        },
    );
    peers.replace(registry);

    // Messages sent meanwhile and after arrive once the sender reconnects.
    for i in 0..5u8 {
        nodes[0]
            .0
            .send(ParticipantId(1), Arc::new(vec![i]))
            .unwrap();
    }
    let mut got = Vec::new();
    while got.len() < 5 {
        let m = next(&mut back_incoming).await;
        assert_eq!(m.from, ParticipantId(0));
        got.push(m.message[0]);
    }
    // The message in flight when the old connection broke may be retried once.
    got.dedup();
    assert_eq!(got, vec![0, 1, 2, 3, 4]);
    back.shutdown().await;
    for (network, _) in nodes {
        network.shutdown().await;
    }
}
