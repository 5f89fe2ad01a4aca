//! 100 concurrent sign requests from five accounts (twenty keys each, so all are
//! in flight at once): every one is answered exactly once with a valid signature,
//! none is lost, and no two signatures share an R (no presignature or nonce is
//! used twice). The requests mix the domains (a quarter are Ed25519, with
//! Solana-sized messages) and the three argument shapes `sign` accepts.

use integration_tests::{eddsa_request, request, ArgsShape, Cluster, ClusterConfig};
use primitives::SignatureResponse;
use std::collections::HashSet;
use std::time::{Duration, Instant};

const ACCOUNTS: usize = 5;
const PER_ACCOUNT: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_requests_are_each_answered_once() {
    let setup = Instant::now();
    let cluster = Cluster::start(ClusterConfig::new(3, 2)).await.unwrap();
    let mut users = Vec::new();
    for a in 0..ACCOUNTS {
        let keys = cluster
            .user(&format!("user{a}.test.near"), PER_ACCOUNT)
            .await
            .unwrap();
        users.extend(
            keys.into_iter()
                .enumerate()
                .map(move |(k, chain)| (a, k, chain)),
        );
    }
    eprintln!("network and accounts ready in {:?}", setup.elapsed());
    let started = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    let cluster = std::sync::Arc::new(cluster);
    for (a, k, user) in users {
        let cluster = cluster.clone();
        calls.spawn(async move {
            let mut payload = [0u8; 32];
            payload[0] = 1 + a as u8;
            payload[1] = k as u8;
            let path = format!("path-{k}");
            let (request, shape) = if k % 4 == 3 {
                let message = [payload.as_slice(), &[0x5a; 180]].concat();
                (eddsa_request(message, &path), ArgsShape::Current)
            } else {
                (
                    request(payload, &path),
                    ArgsShape::ALL[k % ArgsShape::ALL.len()],
                )
            };
            let answer = cluster.sign_in_shape(&user, &request, shape, 300).await;
            (user, request, answer)
        });
    }
    let mut big_rs = HashSet::new();
    let mut answered = 0;
    while let Some(done) = calls.join_next().await {
        let (user, request, answer) = done.unwrap();
        let signature = answer.unwrap_or_else(|e| panic!("{} lost a request: {e}", user.account()));
        cluster.verify(&user, &request, &signature).unwrap();
        let big_r = match &signature {
            SignatureResponse::Secp256k1(ecdsa) => ecdsa.big_r.affine_point.to_vec(),
            SignatureResponse::Ed25519 { signature } => signature.0[..32].to_vec(),
        };
        assert!(
            big_rs.insert(big_r),
            "two signatures share R: a presignature or nonce was used twice"
        );
        answered += 1;
    }
    let elapsed = started.elapsed();
    assert_eq!(answered, ACCOUNTS * PER_ACCOUNT);
    eprintln!(
        "{answered} requests answered in {:.1} s ({:.1}/s)",
        elapsed.as_secs_f64(),
        answered as f64 / elapsed.as_secs_f64()
    );

    // Exactly one respond per request landed, across the nodes; none is pending.
    let landed = cluster
        .settled_metric_total(
            "mpc_signatures_total",
            answered as u64,
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(landed, answered as u64);
    let pending: Vec<serde_json::Value> = cluster
        .root
        .view("pending_requests", serde_json::json!({}))
        .await
        .unwrap();
    assert!(pending.is_empty(), "left pending: {pending:?}");
    let Ok(cluster) = std::sync::Arc::try_unwrap(cluster) else {
        panic!("no other owners left");
    };
    let stopping = Instant::now();
    cluster.shutdown().await;
    eprintln!("shut down in {:?}", stopping.elapsed());
}
