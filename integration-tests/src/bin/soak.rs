//! `make soak`: a steady load of sign requests (both domains) while a random node is
//! killed (SIGKILL) and restarted every `--kill-every`, for `--minutes`. At the end:
//! every request the chain received was answered (a signature that verifies) or
//! timed out with its deposit refunded (the contract's event, and the load
//! account's balance to the yoctoNEAR); no nonce (ECDSA's R, Ed25519's R) repeats
//! across all answers; no node log holds a panic. Prints progress while it runs
//! and a summary table at the end; exits non-zero if a check fails (the node logs
//! are then kept, and their folder printed).
//!
//! Not part of `make test`: it runs for minutes by design.

use integration_tests::load::{Load, Tally};
use integration_tests::{Cluster, ClusterConfig, ED25519_DOMAIN};
use primitives::DomainId;
use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant};

const USAGE: &str = "usage: soak [--minutes M] [--kill-every SECONDS] [--down SECONDS] \
[--nodes N] [--threshold T] [--pace MS] [--seed S]

  --minutes M          how long the load runs (default 10; fractions allowed)
  --kill-every SECONDS a random node is killed with SIGKILL this often (default 30; `30s` works too)
  --down SECONDS       how long a killed node stays down before it is restarted (default 5)
  --nodes N            nodes in the network (default 3)
  --threshold T        the signing threshold (default 2)
  --pace MS            one sign request every MS milliseconds (default 500)
  --seed S             chooses the nodes killed and the payloads (default: from the clock; printed)";

struct Args {
    minutes: f64,
    kill_every: Duration,
    down: Duration,
    nodes: usize,
    threshold: usize,
    pace: Duration,
    seed: u64,
}

/// Seconds, with or without a trailing `s`.
fn seconds(text: &str) -> Result<Duration, String> {
    let number = text.strip_suffix('s').unwrap_or(text);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if !(value.is_finite() && value > 0.0) {
        return Err(format!("`{text}`: the duration must be positive"));
    }
    Ok(Duration::from_secs_f64(value))
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut args = Args {
        minutes: 10.0,
        kill_every: Duration::from_secs(30),
        down: Duration::from_secs(5),
        nodes: 3,
        threshold: 2,
        pace: Duration::from_millis(500),
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        if arg == "--help" || arg == "-h" {
            return Ok(None);
        }
        let value = it.next().ok_or(format!("{arg} needs a value"))?;
        let number = |what: &str| format!("{arg} {value}: not {what}");
        match arg.as_str() {
            "--minutes" => {
                args.minutes = value.parse().map_err(|_| number("a number"))?;
                if !(args.minutes.is_finite() && args.minutes > 0.0) {
                    return Err(format!("--minutes {value}: must be positive"));
                }
            }
            "--kill-every" => args.kill_every = seconds(&value)?,
            "--down" => args.down = seconds(&value)?,
            "--nodes" => args.nodes = value.parse().map_err(|_| number("a count"))?,
            "--threshold" => args.threshold = value.parse().map_err(|_| number("a count"))?,
            "--pace" => {
                let ms: u64 = value.parse().map_err(|_| number("milliseconds"))?;
                if ms == 0 {
                    return Err("--pace must be at least 1 ms".into());
                }
                args.pace = Duration::from_millis(ms);
            }
            "--seed" => args.seed = value.parse().map_err(|_| number("an integer"))?,
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if args.threshold < 2 || args.threshold > args.nodes {
        return Err(format!(
            "--threshold {} with --nodes {}: need 2 ≤ threshold ≤ nodes",
            args.threshold, args.nodes
        ));
    }
    if args.down >= args.kill_every {
        return Err("--down must be shorter than --kill-every".into());
    }
    Ok(Some(args))
}

fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return std::process::ExitCode::SUCCESS;
        }
        Err(why) => {
            eprintln!("error: {why}\n{USAGE}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(soak(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("soak: FAILED: {why}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn soak(args: Args) -> Result<(), String> {
    println!(
        "soak: {} min, n = {}, t = {}, a node killed every {:?} (down {:?}), a request every {:?}, seed {}",
        args.minutes, args.nodes, args.threshold, args.kill_every, args.down, args.pace, args.seed
    );
    let setup = Instant::now();
    let mut cluster = Cluster::start(ClusterConfig::new(args.nodes, args.threshold)).await?;
    for i in 0..args.nodes {
        for domain in [DomainId::LEGACY_ECDSA, ED25519_DOMAIN] {
            cluster
                .wait_stock_in(i, domain, 1, Duration::from_secs(300))
                .await?;
        }
    }
    println!(
        "soak: network ready in {:.0?}; logs in {}",
        setup.elapsed(),
        cluster.config.workdir.display()
    );
    // Enough keys for every request of a full yield window and more in flight.
    let keys =
        (Duration::from_secs(60).as_millis() / args.pace.as_millis()).clamp(20, 200) as usize;
    let load = Load::start(&cluster, "soak", 1, keys, args.pace, args.seed).await?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let started = Instant::now();
    let run_for = Duration::from_secs_f64(args.minutes * 60.0);
    let mut next_kill = args.kill_every;
    let mut next_progress = Duration::from_secs(10);
    let mut kills = vec![0usize; args.nodes];
    while started.elapsed() < run_for {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = started.elapsed();
        if now >= next_kill && now + args.down < run_for {
            next_kill += args.kill_every;
            let victim = rng.gen_range(0..args.nodes);
            kills[victim] += 1;
            cluster.kill_node(victim);
            println!("soak: {:>4.0?} SIGKILL node {victim}", now);
            tokio::time::sleep(args.down).await;
            cluster.start_node(victim)?;
            println!("soak: {:>4.0?} node {victim} restarted", started.elapsed());
        }
        if now >= next_progress {
            next_progress += Duration::from_secs(10);
            println!("soak: {:>4.0?} {}", now, load.progress.line());
        }
    }
    println!("soak: load stopped; waiting for the requests in flight");
    let all_busy = load
        .progress
        .all_busy
        .load(std::sync::atomic::Ordering::Relaxed);
    let (outcomes, accounts) = load.finish().await;
    let tally = Tally::of(&cluster, &outcomes, &accounts).await;
    let panics: Vec<usize> = (0..args.nodes)
        .filter(|&i| cluster.nodes[i].log().contains("panicked at"))
        .collect();

    println!("\n| soak | |\n| --- | --- |");
    let rows = [
        ("duration", format!("{:.1} min of load", args.minutes)),
        (
            "network",
            format!(
                "n = {}, t = {}, seed {}",
                args.nodes, args.threshold, args.seed
            ),
        ),
        (
            "SIGKILLs",
            format!(
                "{} (per node {:?}), each down {:?}",
                kills.iter().sum::<usize>(),
                kills,
                args.down
            ),
        ),
        ("requests received by the chain", tally.sent.to_string()),
        (
            "answered (verified)",
            format!(
                "{} (domain 0: {}, domain 1: {})",
                tally.answered,
                tally.answered_by_domain.get(&0).unwrap_or(&0),
                tally.answered_by_domain.get(&1).unwrap_or(&0)
            ),
        ),
        (
            "timed out, deposit refunded",
            tally.timed_out_refunded.to_string(),
        ),
        (
            "timed out, not refunded",
            tally.timed_out_not_refunded.to_string(),
        ),
        ("other failures", tally.failed.len().to_string()),
        ("unresolved", tally.unresolved.to_string()),
        (
            "never received (RPC refused)",
            tally.never_received.to_string(),
        ),
        ("ticks with every caller busy", all_busy.to_string()),
        (
            "latency of answers p50 / p99 / max",
            format!(
                "{:.1} s / {:.1} s / {:.1} s",
                tally.latency(0.5).as_secs_f64(),
                tally.latency(0.99).as_secs_f64(),
                tally.latency(1.0).as_secs_f64()
            ),
        ),
        ("repeated nonces (R)", tally.repeated_nonces.to_string()),
        ("bad signatures", tally.bad_signatures.len().to_string()),
        ("balances off", tally.balance_mismatches.len().to_string()),
        ("nodes that panicked", format!("{panics:?}")),
    ];
    for (what, value) in rows {
        println!("| {what} | {value} |");
    }
    println!();
    for failure in &tally.failed {
        println!("soak: failure: {failure}");
    }
    let mut problems = Vec::new();
    if let Err(e) = tally.check() {
        problems.push(e);
    }
    if !panics.is_empty() {
        problems.push(format!("nodes {panics:?} panicked"));
    }
    if tally.answered == 0 {
        problems.push("nothing was answered".into());
    }
    if problems.is_empty() {
        cluster.shutdown().await;
        println!("soak: OK");
        Ok(())
    } else {
        // Dropped without shutdown: the nodes are killed, their logs kept.
        let dir = cluster.config.workdir.display().to_string();
        Err(format!("{} (node logs in {dir})", problems.join("; ")))
    }
}
