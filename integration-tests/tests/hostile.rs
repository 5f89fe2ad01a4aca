//! Hostile input against a running network: p2p connections that send garbage,
//! handshake with an unknown key, or (with a stolen registered key) send malformed
//! frames and messages; `respond` from a non-participant and with a wrong
//! signature. Each is refused, the counters say so, and the network keeps serving,
//! including a request made while every node was down.

use integration_tests::{request, ArgsShape, Cluster, ClusterConfig};
use k256::ecdsa::SigningKey;
use k256::elliptic_curve::point::DecompressPoint;
use k256::elliptic_curve::PrimeField;
use k256::{AffinePoint, Scalar};
use mpc_node::engine::{Job, NodeMessage, RecordId, Start};
use mpc_node::p2p::noise::{Sender, StaticKey};
use primitives::{EcdsaSignature, PendingRequest, SignatureResponse};
use std::time::{Duration, Instant};
use threshold::ParticipantId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Node `i`'s p2p key, as `mpc-node init` wrote it.
fn p2p_key(cluster: &Cluster, i: usize) -> StaticKey {
    let text = std::fs::read_to_string(cluster.nodes[i].home.join("p2p_key")).unwrap();
    let bytes = hex::decode(text.trim()).unwrap();
    StaticKey::from_parts(
        bytes[..32].try_into().unwrap(),
        bytes[32..].try_into().unwrap(),
    )
}

fn p2p_addr(cluster: &Cluster, i: usize) -> String {
    cluster.nodes[i].candidate["url"]
        .as_str()
        .unwrap()
        .to_string()
}

fn cipher_pk(cluster: &Cluster, i: usize) -> [u8; 32] {
    serde_json::from_value(cluster.nodes[i].candidate["cipher_pk"].clone()).unwrap()
}

/// A p2p channel to node 0 that authenticates as node 1, with node 1's stolen key.
async fn impostor_of_node_1(cluster: &Cluster, prologue: &[u8]) -> Sender {
    let stream = TcpStream::connect(&p2p_addr(cluster, 0)).await.unwrap();
    Sender::handshake(
        stream,
        &p2p_key(cluster, 1),
        prologue,
        &cipher_pk(cluster, 0),
    )
    .await
    .unwrap()
}

/// Waits (bounded) for the peer to close the connection.
async fn closed_by_peer(mut stream: TcpStream) -> bool {
    let mut buffer = [0u8; 64];
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            _ => {}
        }
    }
    false
}

/// A valid-form signature of `payload` by a random key: not the derived key's.
fn foreign_signature(payload: &[u8]) -> SignatureResponse {
    let key = SigningKey::random(&mut rand::rngs::OsRng);
    let (signature, recovery) = key.sign_prehash_recoverable(payload).unwrap();
    let big_r =
        AffinePoint::decompress(&signature.r().to_repr(), (recovery.is_y_odd() as u8).into())
            .unwrap();
    let s: Scalar = *signature.s();
    EcdsaSignature::new(&big_r, &s).unwrap().into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_peers_and_responders_are_refused_and_service_continues() {
    let mut cluster = Cluster::start(ClusterConfig::new(3, 2)).await.unwrap();
    let mut keys = cluster.user("mallory.test.near", 2).await.unwrap();
    let user = keys.remove(0);
    let user_in_background = keys.remove(0);
    let target = p2p_addr(&cluster, 0);
    let prologue = format!("chain-signatures p2p v1:{}", cluster.contract).into_bytes();

    // 1. Bytes that are no handshake.
    let mut garbage = TcpStream::connect(&target).await.unwrap();
    garbage.write_all(&[0xAB; 300]).await.unwrap();
    assert!(
        closed_by_peer(garbage).await,
        "garbage handshake is dropped"
    );

    // 2. A proper handshake with a key nobody registered.
    let stream = TcpStream::connect(&target).await.unwrap();
    let stranger = Sender::handshake(
        stream,
        &StaticKey::generate(),
        &prologue,
        &cipher_pk(&cluster, 0),
    )
    .await
    .expect("the handshake itself completes");
    assert!(
        closed_by_peer(stranger.into_stream()).await,
        "unknown key is dropped"
    );

    // 3. Node 1's stolen key: valid channel, then messages that are no messages,
    //    a forged invitation, and finally a frame that does not decrypt.
    let mut impostor = impostor_of_node_1(&cluster, &prologue).await;
    impostor.send(&[0xFF; 100]).await.unwrap();
    impostor.send(&[]).await.unwrap();
    let forged = NodeMessage::Start(Start {
        epoch: 0,
        participants: vec![ParticipantId(0), ParticipantId(1)],
        job: Job::Sign {
            request_id: [9; 32],
            // "Owned" by node 1, held by nobody.
            presignature: RecordId::new(ParticipantId(1), 0),
        },
    });
    impostor
        .send(&forged.encode(primitives::DomainId(0)))
        .await
        .unwrap();
    let mut raw = impostor.into_stream();
    raw.write_all(&[0x00, 0x20]).await.unwrap();
    raw.write_all(&[0x55; 32]).await.unwrap();
    assert!(
        closed_by_peer(raw).await,
        "an undecryptable frame ends the connection"
    );

    for counter in [
        "mpc_p2p_failed_handshakes_total",
        "mpc_p2p_unknown_peers_total",
        "mpc_p2p_bad_frames_total",
    ] {
        assert!(
            cluster.node_metric(0, counter).await.unwrap() >= 1.0,
            "{counter}"
        );
    }

    // The network still signs.
    let first = request([0x51; 32], "after-hostile-p2p");
    let signature = cluster
        .sign(&user, &first, 300)
        .await
        .expect("still serving");
    cluster.verify(&user, &first, &signature).unwrap();

    // 4. A request pending while every node is down, and forged answers to it.
    for i in 0..3 {
        cluster.stop_node(i).unwrap();
    }
    let second = request([0x52; 32], "while-down");
    let waiting = {
        let second = second.clone();
        tokio::spawn(async move {
            user_in_background
                .call("sign", ArgsShape::Current.args(&second), 300, 1)
                .await
        })
    };
    let pending = loop {
        let pending: Vec<PendingRequest> = cluster
            .root
            .view("pending_requests", serde_json::json!({}))
            .await
            .unwrap();
        if let Some(p) = pending.into_iter().next() {
            break p;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let forged = foreign_signature(second.payload.as_bytes());
    let args = serde_json::json!({ "request_id": pending.request_id, "response": forged });
    let outsider = user
        .call("respond", args.clone(), 100, 0)
        .await
        .expect_err("a non-participant cannot respond");
    assert!(
        outsider
            .to_string()
            .contains("is not a participant of the current epoch"),
        "{outsider}"
    );
    let node1 = cluster.client(
        cluster.nodes[1].account.as_str(),
        cluster.nodes[1].account_key.clone(),
    );
    let wrong = node1
        .call("respond", args, 100, 0)
        .await
        .expect_err("a wrong signature is refused");
    assert!(wrong.to_string().contains("invalid signature"), "{wrong}");

    // 5. Node 0 comes back alone (no threshold to sign with) and sees the
    //    request; node 1's stolen key tells it the forged answer is the answer.
    //    It does not verify, so node 0 does not hold it (it would then never
    //    sign the request) and blames node 1.
    cluster.start_node(0).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while cluster
        .node_state(0)
        .await
        .map_or(true, |state| state["pending_requests"].as_u64() != Some(1))
    {
        assert!(Instant::now() < deadline, "node 0 never saw the request");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut impostor = impostor_of_node_1(&cluster, &prologue).await;
    let lie = NodeMessage::Answer {
        request_id: pending.request_id.0,
        response: forged,
    };
    impostor
        .send(&lie.encode(primitives::DomainId(0)))
        .await
        .unwrap();
    let blamed = "mpc_peer_failures_total{peer=\"node1.test.near\",id=\"1\",kind=\"misbehaved\"}";
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, metrics) = cluster.http_get(0, "/metrics").await.unwrap();
        if metrics.lines().any(|line| {
            line.strip_prefix(blamed)
                .and_then(|count| count.trim().parse::<u64>().ok())
                .is_some_and(|count| count >= 1)
        }) {
            break;
        }
        assert!(Instant::now() < deadline, "node 1 blamed for the lie");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        cluster
            .node_metric(0, "mpc_answers_held_total")
            .await
            .unwrap(),
        0.0,
        "the lie is not held"
    );
    drop(impostor);

    // The others come back and the request that waited for them is answered.
    for i in 1..3 {
        cluster.start_node(i).unwrap();
    }
    let answer = tokio::time::timeout(Duration::from_secs(120), waiting)
        .await
        .expect("answered after the restart")
        .unwrap()
        .expect("sign succeeds");
    let signature: SignatureResponse = serde_json::from_slice(&answer).unwrap();
    cluster.verify(&user, &second, &signature).unwrap();
    cluster.shutdown().await;
}
