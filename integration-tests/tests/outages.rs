//! Outages under a steady load, with real node processes at n = 3, t = 2 (issue 13):
//! the NEAR RPC unreachable for 60 s (the nodes' RPC gate drops every connection),
//! the devnet stopped for 60 s and started again with the same chain (with
//! requests pending across the restart: the nodes' answers are refused for 5 s
//! before it stops), and one node
//! partitioned from its peers (not from the chain) for 60 s. A request goes out
//! every second before, during and after, in both domains, half of them with the
//! contract's minimum gas (a yield window or two, then a timeout). Afterwards every request the chain received was
//! answered with a signature that verifies or timed out with its deposit refunded
//! (the contract's event and each caller's balance to the yoctoNEAR), no nonce
//! repeats, requests sent well after the outage are all answered, and no node
//! panicked. Printed: the tally, and the presignatures spent, landed and burnt.
//!
//! The three run in parallel (about 4 minutes in all on 2 cores).

use integration_tests::load::{Fate, Load, Tally};
use integration_tests::{Cluster, ClusterConfig, ED25519_DOMAIN};
use primitives::DomainId;
use std::time::{Duration, Instant};

const OUTAGE: Duration = Duration::from_secs(60);
/// Load before the outage starts.
const BEFORE: Duration = Duration::from_secs(15);
/// Load after it ends.
const AFTER: Duration = Duration::from_secs(30);
/// Requests sent this long after the outage ended must all be answered.
const RECOVERY: Duration = Duration::from_secs(10);
/// How long the nodes' `respond`s are refused before the devnet stops.
const HELD_BEFORE_RESTART: Duration = Duration::from_secs(5);
const YIELD_BLOCKS: u64 = 50;
const PACE: Duration = Duration::from_secs(1);
/// Keys of the load account: enough for every request of the outage in flight.
const KEYS: usize = 90;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outage {
    RpcUnreachable,
    DevnetRestart,
    Partition { node: usize },
}

/// What the nodes' counters and stock say at one moment.
#[derive(Debug, Clone, Copy)]
struct Snapshot {
    sign_runs_led: u64,
    signatures: u64,
    presignatures_generated: u64,
    /// Usable presignatures over the nodes, domain 0 and domain 1.
    stock: [u64; 2],
}

async fn snapshot(cluster: &Cluster) -> Snapshot {
    let total = |name: &'static str| async move { cluster.metric_total(name).await.unwrap_or(0) };
    let mut stock = [0; 2];
    for i in 0..cluster.nodes.len() {
        if let Ok(state) = cluster.node_state(i).await {
            for (slot, domain) in [DomainId::LEGACY_ECDSA, ED25519_DOMAIN].iter().enumerate() {
                stock[slot] += state["stock_by_domain"][domain.0.to_string()]["presignatures"]
                    .as_u64()
                    .unwrap_or(0);
            }
        }
    }
    Snapshot {
        sign_runs_led: total("mpc_sign_runs_led_total").await,
        signatures: total("mpc_signatures_total").await,
        presignatures_generated: total("mpc_presignatures_generated_total").await,
        stock,
    }
}

/// The outage is real: the nodes lost what it takes away.
async fn check_in_force(cluster: &Cluster, outage: Outage, name: &str) {
    match outage {
        Outage::RpcUnreachable => {
            let dropped = cluster.rpc_gate.dropped_connections();
            // Hung reads do not fail until the connection closes, so the failed
            // reads are printed, and staleness is what every node's /health shows.
            let errors = cluster
                .metric_total("mpc_chain_errors_total")
                .await
                .unwrap();
            eprintln!(
                "{name}: {dropped} RPC connections dropped so far, {errors} failed chain reads"
            );
            assert!(dropped > 0, "{name}: the nodes did not lose the RPC");
            for i in 0..cluster.nodes.len() {
                let (status, why) = cluster.http_get(i, "/health").await.unwrap();
                eprintln!("{name}: node {i} /health {status}: {}", why.trim());
                assert_eq!(status, 503, "{name}: node {i} still reads the chain");
            }
        }
        Outage::DevnetRestart => {
            let down = cluster.root.state().await;
            assert!(down.is_err(), "{name}: the devnet still answers: {down:?}");
        }
        Outage::Partition { node } => {
            let live = |state: serde_json::Value| {
                state["participants"]
                    .as_array()
                    .map_or(0, |p| p.iter().filter(|p| p["live"] == true).count())
            };
            for i in 0..cluster.nodes.len() {
                let seen = live(cluster.node_state(i).await.unwrap());
                let expected = if i == node {
                    1
                } else {
                    cluster.nodes.len() - 1
                };
                eprintln!("{name}: node {i} sees {seen} live participants");
                assert_eq!(seen, expected, "{name}: node {i}'s view of the partition");
            }
            eprintln!(
                "{name}: {} peer connections cut or held so far",
                cluster.p2p_dropped_connections()
            );
        }
    }
}

async fn outage_under_load(outage: Outage) {
    let name = format!("{outage:?}");
    let mut config = ClusterConfig::new(3, 2);
    // 5 s yield windows: an impatient request sent into the outage times out and
    // is refunded well before it ends; a patient one outwaits it.
    config.yield_timeout_blocks = YIELD_BLOCKS;
    config.p2p_proxies = matches!(outage, Outage::Partition { .. });
    let setup = Instant::now();
    let mut cluster = Cluster::start(config).await.unwrap();
    for i in 0..3 {
        for domain in [DomainId::LEGACY_ECDSA, ED25519_DOMAIN] {
            cluster
                .wait_stock_in(i, domain, 1, Duration::from_secs(180))
                .await
                .unwrap();
        }
    }
    eprintln!("{name}: network ready in {:.0?}", setup.elapsed());

    // The load has its own clients, so the devnet can be restarted under it.
    let load_started = Instant::now();
    let prefix = match outage {
        Outage::RpcUnreachable => "rpc",
        Outage::DevnetRestart => "restart",
        Outage::Partition { .. } => "partition",
    };
    let load = Load::start(&cluster, prefix, 1, KEYS, PACE, 13)
        .await
        .unwrap();
    tokio::time::sleep(BEFORE).await;
    if outage == Outage::DevnetRestart {
        // The nodes answer in well under a second, so few requests would be
        // pending when the devnet stops: refusing their `respond`s for a few
        // seconds first leaves requests (and the nodes' kept signatures) waiting
        // across the restart.
        cluster.rpc_gate.refuse_transactions(true);
        tokio::time::sleep(HELD_BEFORE_RESTART).await;
    }
    let before = snapshot(&cluster).await;
    let outage_began = load_started.elapsed();
    eprintln!(
        "{name}: outage begins ({}); {before:?}",
        load.progress.line()
    );
    match outage {
        Outage::RpcUnreachable => cluster.rpc_gate.set_unreachable(true),
        Outage::DevnetRestart => cluster.devnet.pause().await.unwrap(),
        Outage::Partition { node } => cluster.partition_node(node).unwrap(),
    }
    let outage_start = Instant::now();
    let mut checked = false;
    while outage_start.elapsed() < OUTAGE {
        tokio::time::sleep(Duration::from_secs(15).min(OUTAGE - outage_start.elapsed())).await;
        eprintln!(
            "{name}: {:.0?} into the outage: {}",
            outage_start.elapsed(),
            load.progress.line()
        );
        if !checked && outage_start.elapsed() >= OUTAGE / 2 {
            checked = true;
            check_in_force(&cluster, outage, &name).await;
        }
    }
    let during = snapshot(&cluster).await;
    match outage {
        Outage::RpcUnreachable => cluster.rpc_gate.set_unreachable(false),
        Outage::DevnetRestart => {
            cluster.devnet.resume().await.unwrap();
            cluster.rpc_gate.refuse_transactions(false);
        }
        Outage::Partition { .. } => cluster.heal_partition(),
    }
    let outage_ended = load_started.elapsed();
    eprintln!("{name}: outage over; {during:?}");
    let partitioned_led_before = match outage {
        Outage::Partition { node } => cluster
            .node_metric(node, "mpc_signatures_total")
            .await
            .unwrap(),
        _ => 0.0,
    };
    tokio::time::sleep(AFTER).await;
    let (outcomes, accounts) = load.finish().await;
    let drained = load_started.elapsed();
    let after = snapshot(&cluster).await;

    let tally = Tally::of(&cluster, &outcomes, &accounts).await;
    let spent = after.sign_runs_led - before.sign_runs_led;
    let landed = after.signatures - before.signatures;
    eprintln!(
        "{name}: outage {:.0?}..{:.0?} of the load, drained at {:.0?}\n\
         {name}: {}\n\
         {name}: presignatures during the outage: {} spent (signing runs led), {} answers landed, \
         {} made; stock (domain 0, domain 1) {:?} before → {:?} at its end → {:?} after\n\
         {name}: from the outage's start to the end: {spent} spent, {landed} landed, \
         {} burnt without a landed answer",
        outage_began,
        outage_ended,
        drained,
        tally.line(),
        during.sign_runs_led - before.sign_runs_led,
        during.signatures - before.signatures,
        during.presignatures_generated - before.presignatures_generated,
        before.stock,
        during.stock,
        after.stock,
        spent.saturating_sub(landed),
    );
    for outcome in &outcomes {
        if !matches!(outcome.fate, Fate::Answered(_)) {
            eprintln!(
                "{name}: request {} (domain {}, {} Tgas, sent at {:.0?}): {:?} after {:.0?}",
                outcome.index,
                outcome.request.domain_id,
                outcome.tgas,
                outcome.sent_at.duration_since(load_started),
                outcome.fate,
                outcome.took
            );
        }
    }
    tally.check().unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(tally.answered > 0, "{name}: nothing was answered");
    if outage != Outage::DevnetRestart {
        // The load's own RPC never went away.
        assert_eq!(tally.never_received, 0, "{name}: requests lost");
    }

    // Service came back: requests sent a little after the outage are all answered.
    let late: Vec<_> = outcomes
        .iter()
        .filter(|o| o.sent_at.duration_since(load_started) > outage_ended + RECOVERY)
        .collect();
    assert!(!late.is_empty(), "{name}: no request after the outage");
    for outcome in &late {
        assert!(
            matches!(outcome.fate, Fate::Answered(_)),
            "{name}: request {} sent after recovery: {:?}",
            outcome.index,
            outcome.fate
        );
    }

    if let Outage::Partition { node } = outage {
        // The partitioned node is back: it sees every peer live and leads answers.
        let state = cluster.node_state(node).await.unwrap();
        let live = state["participants"]
            .as_array()
            .map(|p| p.iter().filter(|p| p["live"] == true).count())
            .unwrap_or(0);
        let led_after = cluster
            .node_metric(node, "mpc_signatures_total")
            .await
            .unwrap();
        eprintln!(
            "{name}: node {node} after the heal: {live} live participants, {} answers led",
            led_after - partitioned_led_before
        );
        assert_eq!(live, 3, "{name}: node {node} does not see its peers");
        assert!(
            led_after > partitioned_led_before,
            "{name}: node {node} led no answer after the heal"
        );
    }
    for i in 0..3 {
        assert!(
            !cluster.nodes[i].log().contains("panicked at"),
            "{name}: node {i} panicked"
        );
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rpc_unreachable_for_a_minute() {
    outage_under_load(Outage::RpcUnreachable).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_devnet_restarted_after_a_minute() {
    outage_under_load(Outage::DevnetRestart).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_partitioned_for_a_minute() {
    outage_under_load(Outage::Partition { node: 2 }).await;
}
