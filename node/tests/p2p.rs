//! The peer-to-peer layer over real sockets on 127.0.0.1: authenticated delivery,
//! large messages, strangers, impostors, garbage and reconnection; byte budgets,
//! the handshake cap and urgent traffic ahead of bulk.

use mpc_node::p2p::noise::{Sender, StaticKey};
use mpc_node::p2p::{Incoming, Network, NetworkConfig, NetworkStats, PeerInfo, Peers, SendError};
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use threshold::ParticipantId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
    Vec<(Network, mpsc::UnboundedReceiver<Incoming>)>,
    Peers,
    Vec<StaticKey>,
) {
    start_nodes_with(n, |_| {}).await
}

/// [`start_nodes`] with each node's settings adjusted by `tweak`.
async fn start_nodes_with(
    n: u32,
    tweak: impl Fn(&mut NetworkConfig),
) -> (
    Vec<(Network, mpsc::UnboundedReceiver<Incoming>)>,
    Peers,
    Vec<StaticKey>,
) {
    let keys: Vec<StaticKey> = (0..n).map(|_| StaticKey::generate()).collect();
    let peers = Peers::default();
    let mut nodes = Vec::new();
    let mut registry = BTreeMap::new();
    for (i, key) in keys.iter().enumerate() {
        let id = ParticipantId(i as u32);
        let mut config = NetworkConfig::new(id, loopback(), key.clone(), NETWORK);
        tweak(&mut config);
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

async fn next(incoming: &mut mpsc::UnboundedReceiver<Incoming>) -> Incoming {
    tokio::time::timeout(WAIT, incoming.recv())
        .await
        .expect("a message within the wait")
        .expect("network runs")
}

/// Who sent a message and what, for comparisons.
fn parts(incoming: &Incoming) -> (ParticipantId, Vec<u8>) {
    (incoming.from, incoming.message.clone())
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
    assert_eq!(parts(&got[0]), (ParticipantId(0), b"hello from 0".to_vec()));
    assert_eq!(parts(&got[1]), (ParticipantId(2), b"hello from 2".to_vec()));

    // Many messages in order, and one large enough to span many Noise chunks.
    let big: Vec<u8> = (0..900_000u32).map(|i| (i % 251) as u8).collect();
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

    // Queued together, messages go out in shared writes and chunks: lengths
    // around a chunk's plaintext (65,519 bytes with the 4-byte length) and both
    // queues, each queue's messages in order.
    let sizes = [
        3usize, 65_515, 65_516, 65_519, 65_520, 70_000, 0, 131_040, 1,
    ];
    for (i, size) in sizes.iter().enumerate() {
        let message = Arc::new(vec![i as u8; *size]);
        if i % 2 == 0 {
            nodes[1].0.send(ParticipantId(2), message).unwrap();
        } else {
            nodes[1].0.send_bulk(ParticipantId(2), message).unwrap();
        }
    }
    let mut urgent = Vec::new();
    let mut bulk = Vec::new();
    for _ in 0..sizes.len() {
        let m = next(&mut nodes[2].1).await.message;
        let i = m.first().map_or(6, |b| usize::from(*b)); // the empty one is #6
        assert_eq!(m, vec![i as u8; sizes[i]], "message {i} arrived whole");
        if i % 2 == 0 {
            urgent.push(i)
        } else {
            bulk.push(i)
        }
    }
    assert_eq!(urgent, vec![0, 2, 4, 6, 8]);
    assert_eq!(bulk, vec![1, 3, 5, 7]);

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
        parts(&next(&mut nodes[0].1).await),
        (ParticipantId(1), b"still here".to_vec())
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
        parts(&next(&mut nodes[0].1).await),
        (ParticipantId(1), b"genuine".to_vec())
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
        parts(&next(&mut nodes[0].1).await),
        (ParticipantId(1), b"after".to_vec())
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

#[tokio::test]
async fn a_peer_that_hangs_up_after_the_handshake_is_redialed_with_backoff() {
    // Node 1 does not know node 0's key (its registry lags the chain's): it takes
    // each handshake, then hangs up. Node 0 keeps having messages for it.
    let keys = [StaticKey::generate(), StaticKey::generate()];
    let config = NetworkConfig::new(ParticipantId(1), loopback(), keys[1].clone(), NETWORK);
    let (listener, _) = Network::start(config, Peers::default()).await.unwrap();
    let mut registry = BTreeMap::new();
    registry.insert(
        ParticipantId(1),
        PeerInfo {
            address: listener.local_addr().to_string(),
            key: keys[1].public(),
        },
    );
    let config = NetworkConfig::new(ParticipantId(0), loopback(), keys[0].clone(), NETWORK);
    let (dialer, _) = Network::start(config, Peers::new(registry)).await.unwrap();
    for i in 0..150u8 {
        // Queue full while a dial waits is fine: the point is a steady supply.
        let _ = dialer.send(ParticipantId(1), Arc::new(vec![i]));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Waits of 50, 100, 200, 400 and 800 ms fit 6 dials in 1.5 s; redialing at
    // once made one per message.
    let dials = NetworkStats::get(&listener.stats().unknown_peers);
    assert!((1..=8).contains(&dials), "{dials} handshakes in 1.5 s");
    dialer.shutdown().await;
    listener.shutdown().await;
}

#[tokio::test]
async fn a_peer_over_budget_is_cut_off_while_another_keeps_flowing() {
    const BUDGET: usize = 256 << 10;
    let (mut nodes, peers, keys) = start_nodes_with(3, |c| {
        c.peer_budget = BUDGET;
        c.cut_off_for = Duration::from_millis(500);
    })
    .await;
    // Node 0 takes nothing off its queue meanwhile, as a busy node would not.
    for i in 0..64u32 {
        let _ = nodes[1]
            .0
            .send(ParticipantId(0), Arc::new(vec![i as u8; 16 << 10]));
    }
    let stats = nodes[0].0.stats().clone();
    eventually("node 1 is cut off", || {
        NetworkStats::get(&stats.over_budget) >= 1
    })
    .await;
    let cut = nodes[0].0.take_over_budget();
    assert!(cut.contains(&ParticipantId(1)), "{cut:?}");
    assert!(!cut.contains(&ParticipantId(2)), "{cut:?}");
    assert!(nodes[0].0.ledger().held(ParticipantId(1)) <= BUDGET);

    // Node 2's budget is its own: its messages arrive and are current.
    for i in 0..10u8 {
        nodes[2]
            .0
            .send(ParticipantId(0), Arc::new(vec![i; 1000]))
            .unwrap();
    }
    let mut from_two = 0;
    let mut stale_from_one = 0;
    while from_two < 10 {
        let m = next(&mut nodes[0].1).await;
        match m.from {
            ParticipantId(2) => {
                assert!(m.charge.is_current());
                from_two += 1;
            }
            _ => stale_from_one += usize::from(!m.charge.is_current()),
        }
    }
    // What node 1 had queued before the cut-off is marked for discarding.
    assert!(stale_from_one > 0);
    // Everything taken off the queue gave its bytes back.
    while let Ok(m) = nodes[0].1.try_recv() {
        drop(m);
    }
    assert_eq!(nodes[0].0.ledger().held(ParticipantId(2)), 0);

    // Node 1 is refused for a moment, then gets through again.
    let prologue = format!("chain-signatures p2p v1:{NETWORK}").into_bytes();
    let node0_key = peers.get(ParticipantId(0)).unwrap().key;
    let target = nodes[0].0.local_addr();
    let dial = || async {
        let stream = TcpStream::connect(target).await.unwrap();
        Sender::handshake(stream, &keys[1], &prologue, &node0_key)
            .await
            .unwrap()
    };
    let before = NetworkStats::get(&stats.refused_while_cut_off);
    let mut early = dial().await;
    let _ = early.send(b"too soon").await;
    eventually("node 1 is refused while cut off", || {
        NetworkStats::get(&stats.refused_while_cut_off) > before
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut later = dial().await;
    later.send(b"back").await.unwrap();
    loop {
        let m = next(&mut nodes[0].1).await;
        assert_ne!(m.message, b"too soon");
        if m.message == b"back" {
            assert!(m.charge.is_current());
            break;
        }
    }
    for (network, _) in nodes {
        network.shutdown().await;
    }
}

#[tokio::test]
async fn idle_sockets_cannot_lock_a_real_peer_out() {
    let (mut nodes, _, _) = start_nodes_with(2, |c| {
        c.max_pending_handshakes = 8;
        c.handshake_timeout = Duration::from_secs(2);
    })
    .await;
    let target = nodes[0].0.local_addr();
    // 50 connections that never say a word.
    let mut idle = Vec::new();
    for _ in 0..50 {
        idle.push(TcpStream::connect(target).await.unwrap());
    }
    let stats = nodes[0].0.stats().clone();
    eventually("all but the newest 8 are dropped", || {
        NetworkStats::get(&stats.evicted_handshakes) >= 42
    })
    .await;
    // The oldest was closed by node 0 (end of stream), not left hanging.
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(WAIT, idle[0].read(&mut byte)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");

    // A real peer gets in while the idle ones still hold their slots.
    let started = std::time::Instant::now();
    nodes[1]
        .0
        .send(ParticipantId(0), Arc::new(b"let me through".to_vec()))
        .unwrap();
    assert_eq!(
        parts(&next(&mut nodes[0].1).await),
        (ParticipantId(1), b"let me through".to_vec())
    );
    println!("a real peer got through in {:?}", started.elapsed());
    // The rest time out.
    eventually("idle handshakes time out", || {
        NetworkStats::get(&stats.failed_handshakes) >= 7
    })
    .await;
    for (network, _) in nodes {
        network.shutdown().await;
    }
}

#[tokio::test]
async fn garbage_frames_end_only_their_connection() {
    let (mut nodes, peers, keys) = start_nodes(3).await;
    let target = nodes[0].0.local_addr();
    let prologue = format!("chain-signatures p2p v1:{NETWORK}").into_bytes();
    let node0_key = peers.get(ParticipantId(0)).unwrap().key;
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    // Three kinds of garbage after a valid handshake as participant 1: random
    // ciphertext, a frame cut short, an empty frame.
    let junk: Vec<u8> = (0..500).map(|_| rng.gen()).collect();
    let mut cut_short = vec![0xff, 0xff];
    cut_short.extend_from_slice(&junk[..100]);
    let mut random = vec![0x01, 0xf4];
    random.extend_from_slice(&junk);
    let garbage: [Vec<u8>; 3] = [random, cut_short, vec![0, 0]];
    for bytes in garbage {
        let stream = TcpStream::connect(target).await.unwrap();
        let sender = Sender::handshake(stream, &keys[1], &prologue, &node0_key)
            .await
            .unwrap();
        let mut stream = sender.into_stream();
        stream.write_all(&bytes).await.unwrap();
        drop(stream);
    }
    let stats = nodes[0].0.stats().clone();
    eventually("the garbage connections are dropped", || {
        NetworkStats::get(&stats.bad_frames) >= 2
    })
    .await;
    // Nothing of it reached the node, and both peers still get through.
    for from in [1, 2] {
        nodes[from]
            .0
            .send(ParticipantId(0), Arc::new(vec![from as u8; 10]))
            .unwrap();
    }
    let mut got = [next(&mut nodes[0].1).await, next(&mut nodes[0].1).await];
    got.sort_by_key(|m| m.from);
    assert_eq!(parts(&got[0]), (ParticipantId(1), vec![1; 10]));
    assert_eq!(parts(&got[1]), (ParticipantId(2), vec![2; 10]));
    for (network, _) in nodes {
        network.shutdown().await;
    }
}

#[tokio::test]
async fn urgent_messages_overtake_a_full_bulk_queue() {
    const BUDGET: usize = 16 << 20;
    const BULK: usize = 256 << 10;
    let (mut nodes, _, _) = start_nodes_with(2, |c| c.peer_budget = BUDGET).await;
    // More bulk than the queue may hold: the excess is refused, not buffered.
    let mut queued = 0usize;
    let mut refused = 0usize;
    for i in 0..100u8 {
        match nodes[0]
            .0
            .send_bulk(ParticipantId(1), Arc::new(vec![i; BULK]))
        {
            Ok(()) => queued += 1,
            Err(SendError::QueueFull(_)) => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(queued * BULK <= BUDGET && refused > 0, "{queued} {refused}");
    let sent_at = std::time::Instant::now();
    nodes[0]
        .0
        .send(ParticipantId(1), Arc::new(b"heartbeat".to_vec()))
        .unwrap();
    let mut position = None;
    let mut bulk_seen = 0;
    let mut latency = Duration::ZERO;
    while bulk_seen < queued {
        let m = next(&mut nodes[1].1).await;
        if m.message == b"heartbeat" {
            position = Some(bulk_seen);
            latency = sent_at.elapsed();
        } else {
            bulk_seen += 1;
        }
    }
    let all_bulk = sent_at.elapsed();
    println!(
        "heartbeat after {position:?} of {queued} bulk messages, in {latency:?} \
         (all bulk: {all_bulk:?})"
    );
    // At most the bulk message already being written goes first.
    assert!(position.is_some_and(|p| p <= 1), "{position:?}");
    for (network, _) in nodes {
        network.shutdown().await;
    }
}
