//! One bad node cannot stop the network (DESIGN §8), with real processes. At
//! n = 4, t = 2 and at n = 5, t = 3 (one cluster each, the two tests run side by
//! side) the last node runs mpc-node's test-only misbehaviour, one behaviour after
//! another (every node restarted before each phase, so each phase starts from a
//! clean blame record): `decline`, `silent`, `garbage`, `wrong`, `replay`, `withhold`.
//! In each phase a steady load of requests in both domains comes in: at least
//! 95 % are answered within the yield window and every signature verifies; every
//! honest node's `/state` and `/metrics` name the offender, and no honest node is
//! left out by another; no node panics; every honest node's peak RSS (VmHWM) is
//! printed and stays below [`MAX_PEAK_RSS_KIB`].
//!
//! `withhold` is about a key event: under the load, a threshold of nodes votes to
//! add an Ed25519 domain, and the offender holds back its last message of each
//! keygen attempt from all peers but one (another each attempt). What DESIGN §5
//! asks, checked here: requests keep being answered with the current keys; the
//! attempts fail (at least two are replaced by the next) and the new domain gets
//! no key; each attempt's lucky peer stored a share of it, and deleted it when
//! the attempt was replaced or the event cancelled; once a threshold cancels the
//! event, no honest node holds any share of the new domain.
//!
//! `BYZANTINE_BEHAVIOURS=silent,wrong` runs only the named phases;
//! `BYZANTINE_KEEP=<new dir>` keeps the node homes and logs there.

use integration_tests::{eddsa_request, request, ArgsShape, Cluster, ClusterConfig};
use mpc_node::chain::{Chain, ContractState};
use primitives::{DomainConfig, DomainId, SignRequest, SignatureResponse, SignatureScheme};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// Requests sent per phase, one every [`PACE`], alternating secp256k1 and Ed25519.
const REQUESTS: usize = 60;
const PACE: Duration = Duration::from_millis(500);
/// The nodes' `presignature_target` (set below): a phase starts with full stock.
const PRESIGNATURE_TARGET: u64 = 4;
/// Far above what a node needs (a leak, e.g. an unbounded buffer fed by the
/// offender, fails the test).
const MAX_PEAK_RSS_KIB: u64 = 1024 * 1024;
const BEHAVIOURS: [&str; 6] = [
    "decline", "silent", "garbage", "wrong", "replay", "withhold",
];
/// The domain `withhold`'s key event tries to add (after 0 and 1).
const NEW_DOMAIN: DomainId = DomainId(2);

/// One `sign` call of the load, as it ended.
struct Call {
    k: usize,
    took: Duration,
    answer: Result<SignatureResponse, String>,
    user: Chain,
    request: SignRequest,
}

/// Sends the load in the background: request `k` goes out at `k × PACE`.
fn spawn_load(users: Vec<Chain>, tag: &str) -> JoinSet<Call> {
    let mut calls = JoinSet::new();
    for (k, user) in users.into_iter().enumerate() {
        let path = format!("byzantine-{tag}-{k}");
        calls.spawn(async move {
            tokio::time::sleep(PACE * k as u32).await;
            let request = if k % 2 == 0 {
                request([k as u8 + 1; 32], &path)
            } else {
                eddsa_request(vec![k as u8; 100], &path)
            };
            let sent = Instant::now();
            let answer = user
                .call("sign", ArgsShape::Current.args(&request), 300, 1)
                .await
                .map_err(|e| format!("sign: {e}"))
                .and_then(|bytes| {
                    serde_json::from_slice(&bytes).map_err(|e| format!("the answer of sign: {e}"))
                });
            Call {
                k,
                took: sent.elapsed(),
                answer,
                user,
                request,
            }
        });
    }
    calls
}

/// Waits for the load; returns how many requests were answered (and verified)
/// within the yield window, and the users for the next phase.
async fn collect_load(
    cluster: &Cluster,
    mut calls: JoinSet<Call>,
    tag: &str,
) -> (usize, Vec<Chain>) {
    let block_time = cluster.config.block_time;
    let window = block_time * cluster.config.yield_timeout_blocks as u32;
    let mut users: Vec<Option<Chain>> = (0..REQUESTS).map(|_| None).collect();
    let mut in_window = 0;
    let mut slowest = Duration::ZERO;
    while let Some(done) = calls.join_next().await {
        let call = done.expect("a load task panicked");
        let verified = call
            .answer
            .and_then(|s| cluster.verify(&call.user, &call.request, &s));
        // A transaction waits a block or two before `sign` runs and the window starts.
        if verified.is_ok() && call.took <= window + block_time * 10 {
            in_window += 1;
            slowest = slowest.max(call.took);
        } else {
            eprintln!(
                "{tag}: request {} not answered in the window ({:?}): {verified:?}",
                call.k, call.took
            );
        }
        users[call.k] = Some(call.user);
    }
    eprintln!("{tag}: {in_window}/{REQUESTS} answered within the window, slowest {slowest:?}");
    let users = users
        .into_iter()
        .map(|u| u.expect("every call returned its user"))
        .collect();
    (in_window, users)
}

fn node_client(cluster: &Cluster, i: usize) -> Chain {
    let node = &cluster.nodes[i];
    cluster.client(node.account.as_str(), node.account_key.clone())
}

/// Node `i` calls `method` (its account key may race the node's own
/// transactions, so a failure is tried again).
async fn node_call(cluster: &Cluster, i: usize, method: &str, args: serde_json::Value) {
    let mut last = String::new();
    for _ in 0..5 {
        match node_client(cluster, i)
            .call(method, args.clone(), 100, 0)
            .await
        {
            Ok(_) => return,
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    panic!("node {i}: {method}: {last}");
}

/// Restarts every node, the last one with `behaviour`, and waits until each
/// honest node sees every peer live and has its full stock of presignatures in
/// both domains (so every phase starts alike).
async fn restart_all(cluster: &mut Cluster, behaviour: &str) {
    let nodes = cluster.nodes.len();
    for i in 0..nodes {
        cluster.kill_node(i);
    }
    cluster.config.misbehave = vec![(nodes - 1, behaviour.to_string())];
    for i in 0..nodes {
        cluster.start_node(i).expect("restarting a node");
    }
    wait_ready(cluster).await;
}

async fn wait_ready(cluster: &Cluster) {
    let nodes = cluster.nodes.len();
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0..nodes - 1 {
        loop {
            let ready = cluster.node_state(i).await.is_ok_and(|state| {
                let live = state["participants"]
                    .as_array()
                    .is_some_and(|p| p.len() == nodes && p.iter().all(|p| p["live"] == true));
                let stocked = ["0", "1"].iter().all(|d| {
                    state["stock_by_domain"][d]["presignatures"]
                        .as_u64()
                        .is_some_and(|n| n >= PRESIGNATURE_TARGET)
                });
                live && stocked
            });
            if ready || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Waits (up to a minute) until every honest node names the offender, checks
/// what they say (and that no honest node excludes an honest peer), and returns
/// each one's record of it.
async fn offender_named(cluster: &Cluster, tag: &str) -> Vec<String> {
    let nodes = cluster.nodes.len();
    let bad = nodes - 1;
    let bad_account = cluster.nodes[bad].account.to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut records = Vec::new();
    for i in 0..bad {
        let state = loop {
            let state = cluster.node_state(i).await.unwrap();
            let named = state["blamed"]
                .as_array()
                .is_some_and(|b| b.iter().any(|p| p["account_id"] == bad_account.as_str()));
            if named || Instant::now() >= deadline {
                break state;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        let blamed = state["blamed"].as_array().cloned().unwrap_or_default();
        for other in &blamed {
            assert!(
                other["account_id"] == bad_account.as_str() || other["excluded"] == false,
                "{tag}: node {i} excluded an honest peer: {other}"
            );
        }
        let offender = blamed
            .iter()
            .find(|p| p["account_id"] == bad_account.as_str())
            .unwrap_or_else(|| panic!("{tag}: node {i} does not name {bad_account}: {blamed:?}"));
        let failures = offender["failures"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let total: u64 = failures.values().filter_map(|v| v.as_u64()).sum();
        assert!(total > 0, "{tag}: node {i}: {offender}");
        let (_, metrics) = cluster.http_get(i, "/metrics").await.unwrap();
        assert!(
            metrics.contains(&format!("mpc_peer_failures_total{{peer=\"{bad_account}\"")),
            "{tag}: node {i}'s /metrics names the offender"
        );
        records.push(format!(
            "node {i}: {} excluded={}",
            serde_json::Value::Object(failures),
            offender["excluded"]
        ));
    }
    records
}

/// Peak resident memory (VmHWM, KiB) of every honest node, checked against the
/// bound.
fn peak_rss(cluster: &Cluster, tag: &str) -> Vec<u64> {
    let honest = cluster.nodes.len() - 1;
    (0..honest)
        .map(|i| {
            let pid = cluster.node_pid(i).expect("the node runs");
            let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
                .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
            let kib = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or_else(|| panic!("no VmHWM in /proc/{pid}/status"));
            assert!(
                kib < MAX_PEAK_RSS_KIB,
                "{tag}: node {i} peaked at {kib} KiB, above {MAX_PEAK_RSS_KIB} KiB"
            );
            kib
        })
        .collect()
}

/// The log without terminal colours.
fn plain_log(cluster: &Cluster, i: usize) -> String {
    let log = cluster.nodes[i].log();
    let mut plain = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ ... m
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

/// The `withhold` phase: a keygen the offender keeps from completing, under load.
/// Returns the requests answered in the window, and the users.
async fn withhold_phase(
    cluster: &mut Cluster,
    users: Vec<Chain>,
    tag: &str,
) -> (usize, Vec<Chain>) {
    let threshold = cluster.config.threshold;
    let calls = spawn_load(users, tag);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let domains = vec![DomainConfig {
        id: NEW_DOMAIN,
        scheme: SignatureScheme::Ed25519,
    }];
    for i in 0..threshold {
        node_call(
            cluster,
            i,
            "vote_add_domains",
            serde_json::json!({ "domains": domains }),
        )
        .await;
    }
    // Attempts fail and are replaced while the load goes on.
    let mut attempts = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while attempts.len() < 3 && Instant::now() < deadline {
        match cluster.root.state().await {
            Ok(ContractState::Initializing {
                running, key_event, ..
            }) => {
                assert_eq!(running.domains.len(), 2, "{tag}: the new domain got a key");
                attempts.insert(key_event.attempt);
            }
            other => panic!("{tag}: expected keygen under way, found {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    eprintln!("{tag}: keygen attempts seen: {attempts:?}");
    assert!(
        attempts.len() >= 3,
        "{tag}: the attempts were not replaced (seen {attempts:?})"
    );
    let (answered, users) = collect_load(cluster, calls, tag).await;
    (answered, users)
}

/// After `withhold`: a threshold cancels the key event; then no honest node
/// holds a share of the new domain, and the nodes that stored one said they
/// deleted it.
async fn cancel_and_check_shares(cluster: &mut Cluster, tag: &str) {
    let nodes = cluster.nodes.len();
    for i in 0..cluster.config.threshold {
        node_call(cluster, i, "vote_cancel_key_event", serde_json::json!({})).await;
    }
    let running = cluster
        .wait_running(Duration::from_secs(30))
        .await
        .expect("back to Running");
    let ContractState::Running(running) = running else {
        unreachable!("wait_running returns Running")
    };
    assert_eq!(running.domains.len(), 2, "{tag}: the new domain has no key");
    for i in 0..nodes - 1 {
        let deadline = Instant::now() + Duration::from_secs(20);
        while cluster.node_state(i).await.unwrap()["contract_state"] != "Running" {
            assert!(
                Instant::now() < deadline,
                "{tag}: node {i} still sees the key event"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // The snapshot that showed Running deleted the last attempt's share.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for i in 0..nodes {
        cluster.kill_node(i);
    }
    let stored_one = |log: &str| {
        log.lines()
            .any(|l| l.contains("key share stored") && l.contains(&format!("domain={NEW_DOMAIN}")))
    };
    let mut lucky = Vec::new();
    for i in 0..nodes - 1 {
        let log = plain_log(cluster, i);
        if stored_one(&log) {
            lucky.push(i);
            assert!(
                log.contains("deleted the key share of an attempt that did not complete"),
                "{tag}: node {i} stored a share of an incomplete attempt and never deleted it"
            );
        }
        let epochs = cluster.stored_share_epochs(i, NEW_DOMAIN);
        assert!(
            epochs.is_empty(),
            "{tag}: node {i} keeps a share of domain {NEW_DOMAIN} (epochs {epochs:?}) from an attempt that did not complete"
        );
    }
    eprintln!("{tag}: honest nodes that stored (then deleted) a share of an incomplete attempt: {lucky:?}");
    assert!(
        !lucky.is_empty(),
        "{tag}: no honest node ever stored a share: the withheld message reached nobody, the scenario was not exercised"
    );
}

async fn every_behaviour(nodes: usize, threshold: usize) {
    let size = format!("n={nodes} t={threshold}");
    let chosen: Vec<String> = match std::env::var("BYZANTINE_BEHAVIOURS") {
        Ok(list) => list.split(',').map(|b| b.trim().to_string()).collect(),
        Err(_) => BEHAVIOURS.iter().map(|b| b.to_string()).collect(),
    };
    for b in &chosen {
        assert!(BEHAVIOURS.contains(&b.as_str()), "unknown behaviour {b}");
    }
    let test_start = Instant::now();
    // Built first (once for both tests), to tell build time from the test's own.
    integration_tests::misbehaving_node_binary().unwrap();
    eprintln!("{size}: binaries built in {:?}", test_start.elapsed());
    // Two clusters run side by side on a shared machine: a node starved of CPU for
    // a second must not look down (peers would abandon their runs with it and the
    // runs it kept would blame them), so the live window is the default's double.
    let mut config = ClusterConfig::new(nodes, threshold)
        .set("live_window_ms", "3000")
        .set("presignature_target", &PRESIGNATURE_TARGET.to_string());
    config.misbehave = vec![(nodes - 1, chosen[0].clone())];
    if let Ok(dir) = std::env::var("BYZANTINE_KEEP") {
        // The node homes and logs, kept for a look after the run.
        config.workdir = std::path::PathBuf::from(dir).join(format!("n{nodes}"));
        config.keep_dir = true;
    }
    let mut cluster = Cluster::start(config).await.unwrap();
    let mut users = cluster.user("load.test.near", REQUESTS).await.unwrap();
    eprintln!("{size}: network ready in {:?}", test_start.elapsed());
    let mut summary = Vec::new();
    let mut short = Vec::new();
    for (phase, behaviour) in chosen.iter().enumerate() {
        let tag = format!("{size} {behaviour}");
        let restarted = Instant::now();
        if phase == 0 {
            // The first stock is made before the first phase's blame record starts.
            wait_ready(&cluster).await;
        }
        restart_all(&mut cluster, behaviour).await;
        eprintln!("{tag}: nodes ready in {:?}", restarted.elapsed());
        let started = Instant::now();
        let answered;
        (answered, users) = if behaviour == "withhold" {
            withhold_phase(&mut cluster, users, &tag).await
        } else {
            let calls = spawn_load(users, &tag);
            collect_load(&cluster, calls, &tag).await
        };
        let named = offender_named(&cluster, &tag).await;
        for record in &named {
            eprintln!("{tag}: offender named by {record}");
        }
        let rss = peak_rss(&cluster, &tag);
        for i in 0..nodes {
            assert!(
                !cluster.nodes[i].log().contains("panicked at"),
                "{tag}: node {i} panicked"
            );
        }
        let line = format!(
            "{tag}: {answered}/{REQUESTS} answered in the window, offender {} named by {} of {} honest nodes, honest peak RSS {:?} MiB, phase {:?}",
            cluster.nodes[nodes - 1].account,
            named.len(),
            nodes - 1,
            rss.iter().map(|k| k / 1024).collect::<Vec<_>>(),
            started.elapsed()
        );
        eprintln!("{line}");
        summary.push(line);
        // Checked once every phase has run, so one slow phase still lets the
        // others report their figures.
        if answered * 100 < REQUESTS * 95 {
            short.push(format!(
                "{tag}: only {answered}/{REQUESTS} answered in time"
            ));
        }
        if behaviour == "withhold" {
            cancel_and_check_shares(&mut cluster, &tag).await;
        }
    }
    eprintln!("{size}: done in {:?}", test_start.elapsed());
    for line in summary {
        eprintln!("{line}");
    }
    cluster.shutdown().await;
    assert!(short.is_empty(), "{}", short.join("; "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_node_of_four_with_threshold_two_cannot_stop_signing() {
    every_behaviour(4, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_node_of_five_with_threshold_three_cannot_stop_signing() {
    every_behaviour(5, 3).await;
}
