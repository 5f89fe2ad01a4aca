//! `make bench-e2e`: end-to-end latency and throughput of the whole system, next to
//! the pure cryptographic cost measured in the same run.
//!
//! For each shape (3,2) and (5,3): a cluster (devnet at 100 ms blocks, real
//! `mpc-node` processes built in release), then
//! - *latency*: sequential requests with presignatures in stock, each timed from
//!   sending `sign` to its result (p50 and p99, in ms and in blocks);
//! - *throughput*: a burst of concurrent requests, larger than the stock, so the
//!   rate includes generating triples and presignatures (sustained signatures/s);
//! - *compute bound*: the CPU time of the cryptography of one signature (two
//!   triples, a presignature and a signature, all parties) measured with the
//!   `threshold` crate in this process; with `cores` cores the network cannot
//!   exceed cores / that time. Node CPU per signature is read from /proc.
//!
//! Prints a Markdown table. Flags: `--latency N` (default 30), `--burst N` (default
//! 60), `--shapes 3x2,5x3`.

use integration_tests::{request, Cluster, ClusterConfig};
use primitives::derivation::Tweak;
use primitives::Payload;
use std::time::{Duration, Instant};
use threshold::local::{self, Schedule};
use threshold::{generate_triple, keygen, presign, sign, InstanceId, Participants, SignTask};

struct Args {
    latency: usize,
    burst: usize,
    shapes: Vec<(usize, usize)>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        latency: 30,
        burst: 60,
        shapes: vec![(3, 2), (5, 3)],
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--latency" => args.latency = value()?.parse().map_err(|e| format!("{e}"))?,
            "--burst" => args.burst = value()?.parse().map_err(|e| format!("{e}"))?,
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

/// CPU seconds of the cryptography of one signature, all parties, one thread.
fn crypto_cost(n: usize, t: usize) -> Duration {
    let parties = Participants::first(n as u32).unwrap();
    let keys = local::run(
        parties
            .iter()
            .map(|me| keygen(InstanceId([1; 32]), me, parties.clone(), t).unwrap())
            .collect(),
        &Schedule::default(),
    )
    .all_done()
    .unwrap();
    let rounds = 5;
    let started = Instant::now();
    for round in 0..rounds {
        let mut triples = Vec::new();
        for k in 0..2u8 {
            triples.push(
                local::run(
                    parties
                        .iter()
                        .map(|me| {
                            generate_triple(
                                InstanceId([10 + k + 2 * round; 32]),
                                me,
                                parties.clone(),
                                t,
                            )
                            .unwrap()
                        })
                        .collect(),
                    &Schedule::default(),
                )
                .all_done()
                .unwrap(),
            );
        }
        let t1 = triples.pop().unwrap();
        let t0 = triples.pop().unwrap();
        let presignatures = local::run(
            parties
                .iter()
                .zip(keys.iter().zip(t0.into_iter().zip(t1)))
                .map(|(me, (key, (a, b)))| {
                    presign(InstanceId([50 + round; 32]), me, parties.clone(), key, a, b).unwrap()
                })
                .collect(),
            &Schedule::default(),
        )
        .all_done()
        .unwrap();
        let signers = Participants::first(t as u32).unwrap();
        let task = SignTask {
            payload: Payload::new([7; 32]).unwrap(),
            tweak: Tweak::derive("bench.near", "ethereum-1").unwrap(),
            entropy: [round; 32],
        };
        local::run(
            signers
                .iter()
                .zip(presignatures)
                .map(|(me, presignature)| {
                    sign(
                        InstanceId([90 + round; 32]),
                        me,
                        signers.clone(),
                        presignature,
                        &keys[0].public_key,
                        &task,
                    )
                    .unwrap()
                })
                .collect(),
            &Schedule::default(),
        )
        .all_done()
        .unwrap();
    }
    started.elapsed() / rounds as u32
}

/// CPU seconds used so far by process `pid` (user + system), from /proc.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after ") ".
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

struct Row {
    shape: (usize, usize),
    p50: Duration,
    p99: Duration,
    throughput: f64,
    bound: f64,
    crypto: Duration,
    node_cpu_per_signature: f64,
}

async fn measure(n: usize, t: usize, args: &Args) -> Result<Row, String> {
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    eprintln!("bench: ({n},{t}): cryptography alone");
    let crypto = crypto_cost(n, t);
    eprintln!("bench: ({n},{t}): starting the cluster");
    let cluster = Cluster::start(ClusterConfig::new(n, t)).await?;
    let users = cluster.user("bench.test.near", args.burst.max(1)).await?;
    for i in 0..n {
        cluster.wait_stock(i, 2, Duration::from_secs(300)).await?;
    }

    eprintln!("bench: ({n},{t}): {} sequential requests", args.latency);
    let mut latencies = Vec::new();
    for k in 0..args.latency {
        let mut payload = [1u8; 32];
        payload[..8].copy_from_slice(&(k as u64).to_be_bytes());
        let request = request(payload, "latency");
        let started = Instant::now();
        let signature = cluster.sign(&users[0], &request, 300).await?;
        latencies.push(started.elapsed());
        cluster.verify(&users[0], &request, &signature)?;
    }
    latencies.sort();

    eprintln!(
        "bench: ({n},{t}): a burst of {} concurrent requests",
        args.burst
    );
    let pids: Vec<u32> = cluster.node_pids();
    let cpu_before: f64 = pids.iter().filter_map(|p| cpu_seconds(*p)).sum();
    let started = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    let cluster = std::sync::Arc::new(cluster);
    for (k, user) in users.into_iter().enumerate() {
        let cluster = cluster.clone();
        calls.spawn(async move {
            let mut payload = [2u8; 32];
            payload[..8].copy_from_slice(&(k as u64).to_be_bytes());
            let request = request(payload, "burst");
            let signature = cluster.sign(&user, &request, 300).await?;
            cluster.verify(&user, &request, &signature).map(|_| ())
        });
    }
    let mut answered = 0usize;
    while let Some(done) = calls.join_next().await {
        done.map_err(|e| e.to_string())??;
        answered += 1;
    }
    let elapsed = started.elapsed();
    let cpu_after: f64 = pids.iter().filter_map(|p| cpu_seconds(*p)).sum();
    let Ok(cluster) = std::sync::Arc::try_unwrap(cluster) else {
        return Err("the cluster is still shared".into());
    };
    cluster.shutdown().await;
    Ok(Row {
        shape: (n, t),
        p50: percentile(&latencies, 0.5),
        p99: percentile(&latencies, 0.99),
        throughput: answered as f64 / elapsed.as_secs_f64(),
        bound: cores as f64 / crypto.as_secs_f64(),
        crypto,
        node_cpu_per_signature: (cpu_after - cpu_before) / answered as f64,
    })
}

async fn bench(args: Args) -> Result<(), String> {
    let mut rows = Vec::new();
    for (n, t) in &args.shapes {
        rows.push(measure(*n, *t, &args).await?);
    }
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    println!(
        "| (n,t) | latency p50 | p99 | p50 blocks | throughput sig/s | crypto ms/sig (all parties) | node CPU ms/sig | compute bound sig/s ({cores} cores) | throughput / bound |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for row in rows {
        println!(
            "| ({},{}) | {} ms | {} ms | {:.1} | {:.2} | {:.0} | {:.0} | {:.2} | {:.0} % |",
            row.shape.0,
            row.shape.1,
            row.p50.as_millis(),
            row.p99.as_millis(),
            row.p50.as_secs_f64() / 0.1,
            row.throughput,
            row.crypto.as_secs_f64() * 1e3,
            row.node_cpu_per_signature * 1e3,
            row.bound,
            100.0 * row.throughput / row.bound,
        );
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(why) => {
            eprintln!(
                "error: {why}\nusage: e2e-bench [--latency N] [--burst N] [--shapes 3x2,5x3]"
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
