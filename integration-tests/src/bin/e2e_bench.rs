//! `make bench-e2e`: end-to-end latency and throughput of the whole system, next to
//! the pure cryptographic cost measured in the same run.
//!
//! For each shape (3,2) and (5,3): a cluster (devnet at 100 ms blocks, real
//! `mpc-node` processes built in release), then
//! - *latency*: sequential requests with presignatures in stock, each timed from
//!   sending `sign` to its result (p50 and p99, in ms and in blocks), the blocks
//!   from the one that ran `sign` to the one whose callback returned the
//!   signature (read from the transaction's outcome), and the
//!   nodes' share of it (mean, from a node first seeing the request to its
//!   `respond` being final, from the nodes' /metrics);
//! - *throughput*: a burst of concurrent requests, larger than the stock, so the
//!   rate includes generating triples and presignatures (sustained signatures/s,
//!   counted over the burst's second half of answers: by then the stock the
//!   nodes had stored before it is spent, so the rate is what they make, not
//!   what they had; node CPU per signature is taken over the same stretch);
//! - *latency under regeneration*: right after the burst, with the stock empty and
//!   regenerating at full speed, sequential requests (p99 in ms and the worst in
//!   blocks), and the worst node's loop lag p99 (how late its loop came back to a
//!   100 ms probe, over the whole run);
//! - *compute bound*: the CPU time of the cryptography of one signature (ECDSA:
//!   two triples, a presignature and a signature; Ed25519: FROST nonce
//!   commitments and a signature; all parties) measured with the `threshold`
//!   crate in this process, on every core at once, before the cluster starts and
//!   after it stops (the mean of the two); with `cores` cores the
//!   network cannot exceed cores / that time. Node CPU per signature is read from /proc, and so
//!   is the CPU this process (the devnet and the clients) used meanwhile, which the
//!   nodes could not have: the table also shows the bound with it taken away;
//! - *the cryptography in the run*: the CPU time the nodes' protocol code took
//!   over the same stretch (each node counts it per step on its worker threads,
//!   `mpc_protocol_cpu_seconds_total`), per signature, its share of the nodes'
//!   CPU, and the bound at that cost. Measured in the same seconds as the
//!   throughput, it does not move with this machine's speed between the
//!   separate measurements above (which moved by up to 20 % within one run).
//!   Work thrown away (runs that failed) would count in that cost and flatter
//!   this bound: the runs failed are printed with the presignatures' fate.
//!
//! Prints a Markdown table. Flags: `--latency N` (default 30), `--burst N` (default
//! 120; spread over accounts of 100 keys, under the contract's per-caller limit),
//! `--shapes 3x2,5x3`, `--set key=value` (a node setting, repeatable), `--subset
//! threshold|all|both` (the nodes' `stock_subset`; `both` measures each shape once
//! with each, on a fresh cluster, and ends with their sustained sig/s
//! side by side; without the flag the nodes' default), `--scheme
//! secp256k1|ed25519|both` (default both: each shape is measured for each; an
//! Ed25519 cluster also has domain 0, fully stocked before its requests start, so
//! the burst measures domain 1 alone). The crypto column is the cost with the
//! runs' size: `threshold` parties for `threshold`, n for `all`. Progress, each
//! sequential request's latency and where the presignatures went (sign runs led,
//! answers refused, leads passed on, shares stored, runs failed) go to stderr;
//! `BENCH_KEEP=1` keeps each cluster's folder with its node logs.

#[path = "e2e_bench/crypto.rs"]
mod crypto;

use crypto::crypto_cost_on_every_core;
use integration_tests::{eddsa_request, request, Cluster, ClusterConfig, ED25519_DOMAIN};
use mpc_node::chain::Chain;
use primitives::{DomainId, SignRequest, SignatureScheme};
use std::time::{Duration, Instant};

struct Args {
    latency: usize,
    burst: usize,
    shapes: Vec<(usize, usize)>,
    /// Node settings for config.toml (`--set key=value`).
    settings: Vec<(String, String)>,
    /// `stock_subset` values to measure each shape with (`None`: the default).
    subsets: Vec<Option<&'static str>>,
    /// The schemes to measure each shape with.
    schemes: Vec<SignatureScheme>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        latency: 30,
        burst: 120,
        shapes: vec![(3, 2), (5, 3)],
        settings: Vec::new(),
        subsets: vec![None],
        schemes: vec![SignatureScheme::Secp256k1, SignatureScheme::Ed25519],
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--latency" => args.latency = value()?.parse().map_err(|e| format!("{e}"))?,
            "--burst" => args.burst = value()?.parse().map_err(|e| format!("{e}"))?,
            "--set" => {
                let setting = value()?;
                let (key, value) = setting
                    .split_once('=')
                    .ok_or("--set takes key=value, e.g. max_concurrent_generations=8")?;
                args.settings.push((key.to_string(), value.to_string()));
            }
            "--subset" => {
                args.subsets = match value()?.as_str() {
                    "threshold" => vec![Some("threshold")],
                    "all" => vec![Some("all")],
                    "both" => vec![Some("threshold"), Some("all")],
                    other => return Err(format!("--subset {other}: threshold, all or both")),
                }
            }
            "--scheme" => {
                args.schemes = match value()?.as_str() {
                    "secp256k1" => vec![SignatureScheme::Secp256k1],
                    "ed25519" => vec![SignatureScheme::Ed25519],
                    "both" => vec![SignatureScheme::Secp256k1, SignatureScheme::Ed25519],
                    other => return Err(format!("--scheme {other}: secp256k1, ed25519 or both")),
                }
            }
            "--shapes" => {
                args.shapes = value()?
                    .split(',')
                    .map(|s| {
                        let (n, t) = s.split_once('x').ok_or("shapes look like 3x2,5x3")?;
                        Ok((
                            n.parse().map_err(|_| "bad n")?,
                            t.parse().map_err(|_| "bad t")?,
                        ))
                    })
                    .collect::<Result<_, &str>>()?
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(args)
}

/// CPU seconds used so far by process `pid` (user + system), from /proc.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after ") ".
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// The signature in a `sign` outcome, the height of the block that ran `sign` and
/// of the block that returned the signature to the caller (the yield's callback).
async fn answer_blocks(
    chain: &mpc_node::chain::Chain,
    outcome: &near_primitives::views::FinalExecutionOutcomeView,
) -> Result<(primitives::SignatureResponse, u64, u64), String> {
    use near_primitives::views::ExecutionStatusView;
    let contract = integration_tests::id(integration_tests::CONTRACT);
    let by_contract: Vec<_> = outcome
        .receipts_outcome
        .iter()
        .filter(|r| r.outcome.executor_id == contract)
        .collect();
    let asked = by_contract
        .first()
        .ok_or("no receipt ran on the contract")?;
    let (answer, signature) = by_contract
        .iter()
        .find_map(|r| match &r.outcome.status {
            ExecutionStatusView::SuccessValue(bytes) => serde_json::from_slice(bytes)
                .ok()
                .map(|s: primitives::SignatureResponse| (r, s)),
            _ => None,
        })
        .ok_or("no receipt returned a signature")?;
    let asked = chain
        .block_height(asked.block_hash)
        .await
        .map_err(|e| e.to_string())?;
    let answered = chain
        .block_height(answer.block_hash)
        .await
        .map_err(|e| e.to_string())?;
    Ok((signature, asked, answered))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// The `k`-th request of a run named `what` in `scheme`'s domain: distinct
/// payloads, a Solana-sized message for Ed25519.
fn nth_request(scheme: SignatureScheme, what: u8, k: usize) -> SignRequest {
    let mut payload = [what; 32];
    payload[..8].copy_from_slice(&(k as u64).to_be_bytes());
    match scheme {
        SignatureScheme::Secp256k1 => request(payload, "bench"),
        SignatureScheme::Ed25519 => eddsa_request([&payload[..], &[what; 118]].concat(), "bench"),
    }
}

/// Requests one account may have waiting at once in the bench (the contract's
/// `max_pending_per_caller` is 128 by default).
const KEYS_PER_ACCOUNT: usize = 100;

/// `count` clients for concurrent requests: keys of as many accounts as the
/// contract's per-caller limit needs (`bench0.test.near`, `bench1…`).
async fn burst_users(cluster: &Cluster, count: usize) -> Result<Vec<Chain>, String> {
    let mut users = Vec::with_capacity(count);
    for account in 0..count.div_ceil(KEYS_PER_ACCOUNT) {
        let keys = (count - users.len()).min(KEYS_PER_ACCOUNT);
        users.extend(
            cluster
                .user(&format!("bench{account}.test.near"), keys)
                .await?,
        );
    }
    Ok(users)
}

/// Requests timed while stock regenerates after the burst.
const REGEN_REQUESTS: usize = 10;

/// `count` requests of `user`, one after the other, each timed from sending `sign`
/// to its result and in blocks from the one that ran `sign` to the one that
/// answered; both sorted.
async fn sequential(
    cluster: &Cluster,
    user: &mpc_node::chain::Chain,
    scheme: SignatureScheme,
    what: u8,
    count: usize,
) -> Result<(Vec<Duration>, Vec<u64>), String> {
    let mut latencies = Vec::new();
    let mut blocks = Vec::new();
    for k in 0..count {
        let request = nth_request(scheme, what, k);
        let started = Instant::now();
        let outcome = user
            .call_outcome(
                "sign",
                integration_tests::ArgsShape::Current.args(&request),
                300,
                1,
            )
            .await
            .map_err(|e| e.to_string())?;
        latencies.push(started.elapsed());
        let (signature, asked, answered) = answer_blocks(user, &outcome).await?;
        cluster.verify(user, &request, &signature)?;
        blocks.push(answered - asked);
    }
    eprintln!(
        "bench: one by one (ms/blocks): {}",
        latencies
            .iter()
            .zip(&blocks)
            .map(|(l, b)| format!("{}/{b}", l.as_millis()))
            .collect::<Vec<_>>()
            .join(" ")
    );
    latencies.sort();
    blocks.sort();
    Ok((latencies, blocks))
}

struct Row {
    scheme: SignatureScheme,
    /// Blocks from the one that ran `sign` to the one that delivered the answer.
    blocks_p50: u64,
    blocks_max: u64,
    shape: (usize, usize),
    /// The nodes' `stock_subset` (`default` when not set).
    subset: &'static str,
    node_side: Duration,
    p50: Duration,
    p99: Duration,
    /// Sequential requests right after the burst, while stock regenerates.
    regen_p99: Duration,
    regen_blocks_max: u64,
    /// The largest of the nodes' loop-lag p99 (bucket bound), over the whole run.
    loop_lag_p99_ms: f64,
    throughput: f64,
    bound: f64,
    /// The bound with the cores the chain and clients used taken away.
    bound_beside_chain: f64,
    chain_cores: f64,
    crypto: Duration,
    node_cpu_per_signature: f64,
    /// CPU seconds of the nodes' protocol code per signature, over the same
    /// stretch: the cryptography measured in the run itself.
    protocol_cpu_per_signature: f64,
}

async fn measure(
    scheme: SignatureScheme,
    (n, t): (usize, usize),
    subset: Option<&'static str>,
    args: &Args,
) -> Result<Row, String> {
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let label = subset.unwrap_or("default");
    eprintln!("bench: {scheme} ({n},{t}) [{label}]: cryptography alone");
    // Stock runs among the threshold unless the nodes run them among all.
    let stock_parties = if subset == Some("all") { n } else { t };
    let crypto_before = crypto_cost_on_every_core(scheme, stock_parties, t, cores);
    eprintln!("bench: {scheme} ({n},{t}) [{label}]: starting the cluster");
    let mut config = ClusterConfig::new(n, t);
    let domain = match scheme {
        SignatureScheme::Secp256k1 => {
            config.domains = vec![SignatureScheme::Secp256k1];
            DomainId::LEGACY_ECDSA
        }
        SignatureScheme::Ed25519 => ED25519_DOMAIN,
    };
    for (key, value) in &args.settings {
        config = config.set(key, value);
    }
    if let Some(subset) = subset {
        config = config.set("stock_subset", &format!("\"{subset}\""));
    }
    config.keep_dir = std::env::var_os("BENCH_KEEP").is_some();
    let cluster = Cluster::start(config).await?;
    let mut users = burst_users(&cluster, args.burst.max(1) + 1).await?;
    let probe = users.pop().expect("one more than the burst");
    for i in 0..n {
        cluster
            .wait_stock_in(i, domain, 2, Duration::from_secs(300))
            .await?;
    }
    if scheme != SignatureScheme::Secp256k1 {
        // Domain 0 stocks up too; let it finish, so the burst measures our domain.
        let target = stock_target(args);
        for i in 0..n {
            cluster
                .wait_stock_in(i, DomainId::LEGACY_ECDSA, target, Duration::from_secs(600))
                .await?;
        }
    }

    eprintln!(
        "bench: {scheme} ({n},{t}): {} sequential requests",
        args.latency
    );
    let (latencies, blocks) = sequential(&cluster, &probe, scheme, 1, args.latency).await?;
    // The nodes' share of it: from seeing a request to their respond being final.
    let (mut sum, mut count) = (0.0, 0.0);
    for i in 0..n {
        sum += cluster
            .node_metric(i, "mpc_sign_latency_seconds_sum")
            .await?;
        count += cluster
            .node_metric(i, "mpc_sign_latency_seconds_count")
            .await?;
    }
    let node_side = Duration::from_secs_f64(sum / count.max(1.0));

    eprintln!(
        "bench: ({n},{t}): a burst of {} concurrent requests",
        args.burst
    );
    let pids: Vec<u32> = cluster.node_pids();
    let cpu_now = || -> f64 { pids.iter().filter_map(|p| cpu_seconds(*p)).sum() };
    let own_now = || cpu_seconds(std::process::id()).unwrap_or(0.0);
    let mut calls = tokio::task::JoinSet::new();
    let cluster = std::sync::Arc::new(cluster);
    for (k, user) in users.into_iter().enumerate() {
        let cluster = cluster.clone();
        calls.spawn(async move {
            let request = nth_request(scheme, 2, k);
            let signature = cluster.sign(&user, &request, 300).await?;
            cluster.verify(&user, &request, &signature).map(|_| ())
        });
    }
    // The second half of the answers is measured: from the answer that ends
    // the first half to the last.
    let half = calls.len() / 2;
    let mut answered = 0usize;
    let mut from = (Instant::now(), cpu_now(), own_now());
    let mut protocol_before = 0.0;
    while let Some(done) = calls.join_next().await {
        done.map_err(|e| e.to_string())??;
        answered += 1;
        if answered == half {
            from = (Instant::now(), cpu_now(), own_now());
            protocol_before = protocol_cpu(&cluster, n).await?;
        }
    }
    let (started, cpu_before, own_before) = from;
    let answered = answered - half;
    let elapsed = started.elapsed();
    let (cpu_after, own_after) = (cpu_now(), own_now());
    let protocol_after = protocol_cpu(&cluster, n).await?;
    // This process is the devnet (the chain) and the clients: the cores it used
    // were not available to the nodes.
    let chain_cores = (own_after - own_before) / elapsed.as_secs_f64();
    let Ok(cluster) = std::sync::Arc::try_unwrap(cluster) else {
        return Err("the cluster is still shared".into());
    };
    // Where the presignatures went, over the whole run so far.
    let mut totals = [0.0; 6];
    let names = [
        "mpc_sign_runs_led_total",
        "mpc_respond_failures_total",
        "mpc_leads_passed_total",
        "mpc_presignatures_generated_total",
        "mpc_triples_generated_total",
        "mpc_protocol_failures_total",
    ];
    for i in 0..n {
        for (total, name) in totals.iter_mut().zip(names) {
            *total += cluster.node_metric(i, name).await?;
        }
    }
    eprintln!(
        "bench: so far {} requests; sign runs led {}, respond failures {}, leads passed {}, shares stored: presignatures {}, triples {}; runs failed {}",
        args.latency + args.burst,
        totals[0],
        totals[1],
        totals[2],
        totals[3],
        totals[4],
        totals[5]
    );

    // The burst emptied the stock: the nodes now regenerate it at full speed, and
    // requests must still be answered within a few blocks.
    eprintln!(
        "bench: {scheme} ({n},{t}): {REGEN_REQUESTS} sequential requests while stock regenerates"
    );
    let (regen_latencies, regen_blocks) =
        sequential(&cluster, &probe, scheme, 3, REGEN_REQUESTS).await?;
    let mut loop_lag_p99_ms: f64 = 0.0;
    for i in 0..n {
        let state = cluster.node_state(i).await?;
        let p99 = state["loop_lag"]["p99_ms"].as_f64().unwrap_or(0.0);
        loop_lag_p99_ms = loop_lag_p99_ms.max(p99);
    }
    cluster.shutdown().await;
    // Measured again now and averaged: this machine's speed drifts (the figure
    // moved from 72 to 113 ms between runs of one day), and the cluster ran in
    // between.
    eprintln!("bench: {scheme} ({n},{t}) [{label}]: cryptography alone, again");
    let crypto_after = crypto_cost_on_every_core(scheme, stock_parties, t, cores);
    let crypto = (crypto_before + crypto_after) / 2;
    Ok(Row {
        scheme,
        blocks_p50: blocks[blocks.len() / 2],
        blocks_max: *blocks.last().expect("at least one request"),
        shape: (n, t),
        subset: label,
        node_side,
        p50: percentile(&latencies, 0.5),
        p99: percentile(&latencies, 0.99),
        regen_p99: percentile(&regen_latencies, 0.99),
        regen_blocks_max: *regen_blocks.last().expect("at least one request"),
        loop_lag_p99_ms,
        throughput: answered as f64 / elapsed.as_secs_f64(),
        bound: cores as f64 / crypto.as_secs_f64(),
        bound_beside_chain: (cores as f64 - chain_cores).max(0.0) / crypto.as_secs_f64(),
        chain_cores,
        crypto,
        node_cpu_per_signature: (cpu_after - cpu_before) / answered as f64,
        protocol_cpu_per_signature: (protocol_after - protocol_before) / answered as f64,
    })
}

/// CPU seconds the nodes' protocol code has used so far (all kinds of run, all
/// nodes), from their /metrics: the cryptography as it ran in this run.
async fn protocol_cpu(cluster: &Cluster, n: usize) -> Result<f64, String> {
    let mut total = 0.0;
    for i in 0..n {
        total += cluster
            .node_metric_sum(i, "mpc_protocol_cpu_seconds_total")
            .await?;
    }
    Ok(total)
}

/// The presignature stock each node keeps (the nodes' default unless `--set`).
fn stock_target(args: &Args) -> u64 {
    args.settings
        .iter()
        .find(|(key, _)| key == "presignature_target")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(mpc_node::tuning::Tuning::default().presignature_target)
}

async fn bench(args: Args) -> Result<(), String> {
    let mut rows = Vec::new();
    for scheme in &args.schemes {
        for shape in &args.shapes {
            for subset in &args.subsets {
                rows.push(measure(*scheme, *shape, *subset, &args).await?);
            }
        }
    }
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    println!(
        "| scheme | (n,t) | stock_subset | latency p50 | p99 | p50 blocks | request→answer blocks p50 (max) | nodes' share (mean) | throughput sig/s | crypto ms/sig (all parties) | node CPU ms/sig | compute bound sig/s ({cores} cores) | throughput / bound | devnet+clients cores | bound beside them | throughput / that bound |"
    );
    println!("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for row in &rows {
        println!(
            "| {} | ({},{}) | {} | {} ms | {} ms | {:.1} | {} ({}) | {} ms | {:.2} | {:.0} | {:.0} | {:.2} | {:.0} % | {:.2} | {:.2} | {:.0} % |",
            row.scheme,
            row.shape.0,
            row.shape.1,
            row.subset,
            row.p50.as_millis(),
            row.p99.as_millis(),
            row.p50.as_secs_f64() / 0.1,
            row.blocks_p50,
            row.blocks_max,
            row.node_side.as_millis(),
            row.throughput,
            row.crypto.as_secs_f64() * 1e3,
            row.node_cpu_per_signature * 1e3,
            row.bound,
            100.0 * row.throughput / row.bound,
            row.chain_cores,
            row.bound_beside_chain,
            100.0 * row.throughput / row.bound_beside_chain,
        );
    }
    println!();
    println!(
        "| scheme | (n,t) | stock_subset | node CPU ms/sig | protocol CPU in the nodes ms/sig | its share of node CPU | bound at that cost sig/s ({cores} cores) | throughput / that bound |"
    );
    println!("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |");
    for row in &rows {
        let in_run_bound = cores as f64 / row.protocol_cpu_per_signature;
        println!(
            "| {} | ({},{}) | {} | {:.0} | {:.0} | {:.0} % | {:.2} | {:.0} % |",
            row.scheme,
            row.shape.0,
            row.shape.1,
            row.subset,
            row.node_cpu_per_signature * 1e3,
            row.protocol_cpu_per_signature * 1e3,
            100.0 * row.protocol_cpu_per_signature / row.node_cpu_per_signature,
            in_run_bound,
            100.0 * row.throughput / in_run_bound,
        );
    }
    println!();
    println!(
        "| scheme | (n,t) | stock_subset | latency p99 while stock regenerates ({REGEN_REQUESTS} requests) | its request→answer blocks (max) | loop lag p99, worst node |"
    );
    println!("| --- | --- | --- | ---: | ---: | ---: |");
    for row in &rows {
        println!(
            "| {} | ({},{}) | {} | {} ms | {} | {:.1} ms |",
            row.scheme,
            row.shape.0,
            row.shape.1,
            row.subset,
            row.regen_p99.as_millis(),
            row.regen_blocks_max,
            row.loop_lag_p99_ms,
        );
    }
    if args.subsets.len() > 1 {
        println!();
        let names: Vec<&str> = args
            .subsets
            .iter()
            .map(|s| s.unwrap_or("default"))
            .collect();
        println!(
            "| scheme | (n,t) | {} |",
            names
                .iter()
                .map(|s| format!("sustained sig/s ({s})"))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        println!("| --- | --- |{}", " ---: |".repeat(names.len()));
        for scheme in &args.schemes {
            for (n, t) in &args.shapes {
                let figures: Vec<String> = names
                    .iter()
                    .map(|name| {
                        rows.iter()
                            .find(|r| {
                                r.scheme == *scheme && r.shape == (*n, *t) && r.subset == *name
                            })
                            .map_or("-".into(), |r| format!("{:.2}", r.throughput))
                    })
                    .collect();
                println!("| {scheme} | ({n},{t}) | {} |", figures.join(" | "));
            }
        }
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(why) => {
            eprintln!(
                "error: {why}\nusage: e2e-bench [--latency N] [--burst N] [--shapes 3x2,5x3] [--set key=value]... [--subset threshold|all|both] [--scheme secp256k1|ed25519|both]"
            );
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(bench(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("bench: failed: {why}");
            std::process::ExitCode::FAILURE
        }
    }
}
