//! A node flooding a peer cannot stop the network or blow up its victim's memory
//! (DESIGN §8: memory bounded by bytes per peer; a peer over budget is cut off
//! and penalised, nobody else). At n = 4, t = 2 and n = 5, t = 3 the last node
//! runs mpc-node's test-only `flood` misbehaviour: besides taking part honestly,
//! it writes valid-looking stock messages and garbage to one peer at a time as
//! fast as loopback allows (the next peer once cut off), while a steady load of
//! requests in both domains comes in. At least 95 % are answered within the
//! yield window, every signature verifies, every honest node names the flooder
//! (over budget) in `/state` and `/metrics`, no honest node blames an honest one
//! into exclusion, and every honest node's peak RSS stays bounded.

use integration_tests::{eddsa_request, request, Cluster, ClusterConfig};
use std::time::{Duration, Instant};

const REQUESTS: usize = 60;
const PACE: Duration = Duration::from_millis(500);
/// The bound on an honest node's peak RSS: far above what it needs (four peers'
/// budgets of 64 MiB plus the stock), far below what an unbounded queue reaches
/// at loopback speed within the test.
const MAX_PEAK_RSS_KIB: u64 = 1 << 20;

/// A process's peak resident set (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_node_of_four_is_cut_off_and_named_and_signing_goes_on() {
    flood(4, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_node_of_five_is_cut_off_and_named_and_signing_goes_on() {
    flood(5, 3).await;
}

async fn flood(nodes: usize, threshold: usize) {
    let flooder = nodes - 1;
    let shape = format!("n={nodes} t={threshold}");
    let mut config = ClusterConfig::new(nodes, threshold);
    config.misbehave = vec![(flooder, "flood".to_string())];
    let block_time = config.block_time;
    let window = block_time * config.yield_timeout_blocks as u32;
    let setup = Instant::now();
    let cluster = std::sync::Arc::new(Cluster::start(config).await.unwrap());
    let flooder_account = cluster.nodes[flooder].account.to_string();
    let pids = cluster.node_pids();
    assert_eq!(pids.len(), nodes, "every node runs");
    let users = cluster
        .user(&format!("load{nodes}.test.near"), REQUESTS)
        .await
        .unwrap();
    eprintln!("flood {shape}: network ready in {:?}", setup.elapsed());

    let started = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for (k, user) in users.into_iter().enumerate() {
        let cluster = cluster.clone();
        calls.spawn(async move {
            let path = format!("flood-{nodes}-{k}");
            let request = if k % 2 == 0 {
                request([k as u8 + 1; 32], &path)
            } else {
                eddsa_request(vec![k as u8; 100], &path)
            };
            let sent = Instant::now();
            let answer = cluster.sign(&user, &request, 300).await;
            let took = sent.elapsed();
            let verified = answer
                .as_ref()
                .map_err(|e| e.clone())
                .and_then(|s| cluster.verify(&user, &request, s));
            (k, took, verified)
        });
        tokio::time::sleep(PACE).await;
    }
    let mut in_window = 0;
    let mut slowest = Duration::ZERO;
    while let Some(done) = calls.join_next().await {
        let (k, took, verified) = done.unwrap();
        // A transaction waits a block or two before `sign` runs and the window starts.
        if verified.is_ok() && took <= window + block_time * 10 {
            in_window += 1;
            slowest = slowest.max(took);
        } else {
            eprintln!(
                "flood {shape}: request {k} not answered in the window ({took:?}): {verified:?}"
            );
        }
    }
    let share = in_window as f64 / REQUESTS as f64;
    eprintln!(
        "flood {shape}: {in_window}/{REQUESTS} answered within the window ({:.0} %), slowest {slowest:?}, load over {:?}",
        share * 100.0,
        started.elapsed()
    );

    // Peak memory of the honest nodes, while the flood still runs.
    let honest: Vec<usize> = (0..nodes).filter(|i| *i != flooder).collect();
    for &i in &honest {
        let peak = peak_rss_kib(pids[i]).expect("the node's /proc status");
        eprintln!("flood {shape}: node {i} peak RSS {} MiB", peak / 1024);
        assert!(
            peak < MAX_PEAK_RSS_KIB,
            "node {i} peaked at {peak} KiB under the flood"
        );
    }

    // Every honest node met the flood in turn: cut the flooder off (its network
    // counted it) and names it.
    for &i in &honest {
        let (_, metrics) = cluster.http_get(i, "/metrics").await.unwrap();
        let cut_offs: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("mpc_p2p_over_budget_total "))
            .and_then(|v| v.trim().parse().ok())
            .expect("the over-budget counter in /metrics");
        eprintln!("flood {shape}: node {i} cut the flooder off {cut_offs} times");
        assert!(cut_offs >= 1, "node {i} never cut the flooder off");
        let series = format!("mpc_peer_failures_total{{peer=\"{flooder_account}\"");
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with(&series) && l.contains("kind=\"over_budget\"")),
            "node {i}'s /metrics counts the flooder over budget"
        );
    }
    for &i in &honest {
        let state = cluster.node_state(i).await.unwrap();
        let blamed = state["blamed"].as_array().cloned().unwrap_or_default();
        eprintln!(
            "flood {shape}: node {i} blames {}",
            serde_json::Value::Array(blamed.clone())
        );
        let offender = blamed
            .iter()
            .find(|p| p["account_id"] == flooder_account.as_str())
            .unwrap_or_else(|| panic!("node {i} does not name {flooder_account}: {blamed:?}"));
        assert!(
            offender["failures"]["over_budget"].as_u64() >= Some(1),
            "{offender}"
        );
        for other in &blamed {
            assert!(
                other["account_id"] == flooder_account.as_str() || other["excluded"] == false,
                "node {i} excluded an honest peer: {other}"
            );
        }
    }
    for i in 0..nodes {
        assert!(
            !cluster.nodes[i].log().contains("panicked at"),
            "node {i} panicked"
        );
    }
    assert!(
        share >= 0.95,
        "only {in_window}/{REQUESTS} answered in time"
    );
    let Ok(cluster) = std::sync::Arc::try_unwrap(cluster) else {
        panic!("no other owners left");
    };
    cluster.shutdown().await;
}
