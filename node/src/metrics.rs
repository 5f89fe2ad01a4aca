//! What the node reports about itself: counters and a latency histogram in the
//! Prometheus text format (`/metrics`), and a JSON snapshot of its view of the
//! network (`/state`). Written by the daemon, read by the HTTP server.
//!
//! Hand-rolled on atomics: the handful of series below do not justify a metrics
//! framework, and the text format is stable and simple.

use crate::blame::{FailureKind, PeerBlame};
use crate::engine::StepKind;
use crate::p2p::NetworkStats;
use serde::Serialize;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
}

/// Upper bounds (seconds) of the latency buckets: from one fast block to the
/// yield timeout of the contract.
const LATENCY_BOUNDS: &[f64] = &[
    0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0,
];

/// Upper bounds (seconds) of the loop-lag buckets: from a millisecond to a stall
/// that makes peers drop this node's runs.
const LAG_BOUNDS: &[f64] = &[
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
];

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    pub fn set(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Upper bounds (seconds) of the protocol step buckets: from a signature share
/// to a long triple round on a busy machine.
const STEP_BOUNDS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0,
];

/// A histogram of durations with fixed buckets (cumulative, as Prometheus has them).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_micros: AtomicU64,
    max_micros: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
            max_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        for (bound, bucket) in self.bounds.iter().zip(self.buckets.iter()) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        let micros = elapsed.as_micros().min(u128::from(u64::MAX)) as u64;
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.max_micros.fetch_max(micros, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The upper bound of the bucket that holds the `q` quantile (0 < q ≤ 1), or
    /// the largest observation if that is above every bucket; `None` if empty.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let rank = (q * count as f64).ceil() as u64;
        let max = Duration::from_micros(self.max_micros.load(Ordering::Relaxed));
        let bound = self
            .bounds
            .iter()
            .zip(self.buckets.iter())
            .find(|(_, bucket)| bucket.load(Ordering::Relaxed) >= rank)
            .map(|(bound, _)| Duration::from_secs_f64(*bound));
        Some(bound.map_or(max, |b| b.min(max.max(Duration::from_micros(1)))))
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        self.render_series(out, name, "");
    }

    /// The series of this histogram, each with `labels` (`key="value",` pairs)
    /// before `le`.
    fn render_series(&self, out: &mut String, name: &str, labels: &str) {
        for (bound, bucket) in self.bounds.iter().zip(self.buckets.iter()) {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.count();
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let selector = labels.trim_end_matches(',');
        let selector = if selector.is_empty() {
            String::new()
        } else {
            format!("{{{selector}}}")
        };
        let _ = writeln!(out, "{name}_sum{selector} {sum}");
        let _ = writeln!(out, "{name}_count{selector} {count}");
    }
}

/// One participant as this node sees it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct PeerStatus {
    pub id: u32,
    pub account_id: String,
    pub url: String,
    /// Heard from recently (always true for this node itself).
    pub live: bool,
}

/// The node's view of the network, served as JSON on `/state`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct NodeStatus {
    pub account_id: String,
    /// This node's participant id, once the contract lists it.
    pub me: Option<u32>,
    /// `NotInitialized`, `Initializing`, `Running` or `Resharing`; empty before the
    /// first read.
    pub contract_state: String,
    /// The running (signing) set's epoch and threshold.
    pub epoch: Option<u64>,
    pub threshold: Option<usize>,
    /// The current attempt of the key event under way, if any.
    pub key_event_attempt: Option<u64>,
    pub participants: Vec<PeerStatus>,
    /// This node's own triples and presignatures of domain 0 usable now.
    pub stock: Stock,
    /// The same for every domain this node signs in, by domain id.
    pub stock_by_domain: std::collections::BTreeMap<u64, Stock>,
    /// Requests waiting on the contract.
    pub pending_requests: usize,
    /// Protocol runs under way here.
    pub running_protocols: usize,
    /// How late the loop comes back to its probe (see `Metrics::loop_lag`).
    pub loop_lag: LoopLag,
    /// Peers with failures on record here, excluded or not (see [`crate::blame`]).
    pub blamed: Vec<PeerBlame>,
}

/// Loop lag in milliseconds: bucket bounds for the quantiles, exact for the max.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct LoopLag {
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Stock {
    pub triples: usize,
    pub presignatures: usize,
}

/// Everything `/metrics`, `/state` and `/health` report.
#[derive(Debug)]
pub struct Metrics {
    /// Distinct sign requests seen pending on the contract.
    pub requests_seen: Counter,
    /// Answers this node sent and saw accepted by `respond`: of runs it led, or
    /// held as a backup for a leader whose own did not land.
    pub signatures: Counter,
    /// `respond` calls that failed (another leader answered first, or an error).
    pub respond_failures: Counter,
    /// Signing runs this node started as leader (each spends a presignature).
    pub sign_runs_led: Counter,
    /// Requests whose turn came to this node with none of its presignatures
    /// usable, passed on to the next live node at once.
    pub leads_passed: Counter,
    /// Answers held for requests this node did not lead: its copy as a
    /// co-signer, or a peer's answer it checked (either keeps it from signing the
    /// request again).
    pub answers_held: Counter,
    /// Protocol runs that ended without output (timeouts, unreachable peers, bad
    /// messages).
    pub protocol_failures: Counter,
    pub triples_generated: Counter,
    pub presignatures_generated: Counter,
    /// Failed reads of the contract.
    pub chain_errors: Counter,
    /// From first seeing a request to its `respond` landing, for requests led here.
    pub sign_latency: Histogram,
    /// How late the loop comes back to a periodic probe: time it spent on one
    /// turn's work (routing, reading stock, taking records) while others waited.
    pub loop_lag: Histogram,
    /// How long protocol steps take on the worker threads, per [`StepKind`]
    /// (in [`StepKind::ALL`] order; see [`Metrics::step_time`]).
    step_times: [Histogram; 4],
    /// CPU microseconds of the protocols' own code on worker threads, per kind of
    /// run (in [`StepKind::ALL`] order; see [`Metrics::add_protocol_cpu`]).
    protocol_cpu_micros: [Counter; 4],
    /// Protocol steps waiting for a worker thread.
    pub steps_queued: Gauge,
    status: Mutex<NodeStatus>,
    network: Mutex<Option<Arc<NetworkStats>>>,
    /// When the contract was last read successfully.
    last_chain_read: Mutex<Option<Instant>>,
}

impl Metrics {
    pub fn new(account_id: &str) -> Arc<Metrics> {
        Arc::new(Metrics {
            requests_seen: Counter::default(),
            signatures: Counter::default(),
            respond_failures: Counter::default(),
            sign_runs_led: Counter::default(),
            leads_passed: Counter::default(),
            answers_held: Counter::default(),
            protocol_failures: Counter::default(),
            triples_generated: Counter::default(),
            presignatures_generated: Counter::default(),
            chain_errors: Counter::default(),
            sign_latency: Histogram::new(LATENCY_BOUNDS),
            loop_lag: Histogram::new(LAG_BOUNDS),
            step_times: StepKind::ALL.map(|_| Histogram::new(STEP_BOUNDS)),
            protocol_cpu_micros: StepKind::ALL.map(|_| Counter::default()),
            steps_queued: Gauge::default(),
            status: Mutex::new(NodeStatus {
                account_id: account_id.to_string(),
                ..NodeStatus::default()
            }),
            network: Mutex::new(None),
            last_chain_read: Mutex::new(None),
        })
    }

    /// The step-time histogram of `kind`.
    pub fn step_time(&self, kind: StepKind) -> &Histogram {
        &self.step_times[kind_index(kind)]
    }

    /// Counts `cpu`, the CPU time a step of `kind` spent in the protocol's own
    /// code: over a stretch of work, what the cryptography cost in this node.
    pub fn add_protocol_cpu(&self, kind: StepKind, cpu: Duration) {
        let micros = u64::try_from(cpu.as_micros()).unwrap_or(u64::MAX);
        self.protocol_cpu_micros[kind_index(kind)].add(micros);
    }

    pub fn set_status(&self, update: impl FnOnce(&mut NodeStatus)) {
        update(&mut self.status.lock().expect("status lock"));
    }

    pub fn status(&self) -> NodeStatus {
        let mut status = self.status.lock().expect("status lock").clone();
        let ms = |q: f64| self.loop_lag.quantile(q).map(|d| d.as_secs_f64() * 1e3);
        status.loop_lag = LoopLag {
            p50_ms: ms(0.5),
            p99_ms: ms(0.99),
            max_ms: ms(1.0),
        };
        status
    }

    pub fn set_network(&self, stats: Arc<NetworkStats>) {
        *self.network.lock().expect("network lock") = Some(stats);
    }

    pub fn chain_read(&self) {
        *self.last_chain_read.lock().expect("chain read lock") = Some(Instant::now());
    }

    /// Healthy when the contract was read within `max_age`; otherwise why not.
    pub fn health(&self, max_age: Duration) -> Result<(), String> {
        match *self.last_chain_read.lock().expect("chain read lock") {
            Some(at) if at.elapsed() <= max_age => Ok(()),
            Some(at) => Err(format!(
                "the contract has not been read for {:.1} s",
                at.elapsed().as_secs_f64()
            )),
            None => Err("the contract has not been read yet".into()),
        }
    }

    /// The Prometheus text exposition of every series.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let series = |out: &mut String, kind: &str, name: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {value}");
        };
        let counters = [
            (
                "mpc_requests_seen_total",
                "Sign requests seen pending on the contract.",
                &self.requests_seen,
            ),
            (
                "mpc_signatures_total",
                "Answers sent by this node and accepted by the contract (its own leads, or backups).",
                &self.signatures,
            ),
            (
                "mpc_respond_failures_total",
                "respond calls that failed.",
                &self.respond_failures,
            ),
            (
                "mpc_sign_runs_led_total",
                "Signing runs started by this node as leader (each spends a presignature).",
                &self.sign_runs_led,
            ),
            (
                "mpc_leads_passed_total",
                "Requests passed on to the next leader for want of a usable presignature here.",
                &self.leads_passed,
            ),
            (
                "mpc_answers_held_total",
                "Answers held for requests led by another node (a co-signer's copy, or a peer's, checked).",
                &self.answers_held,
            ),
            (
                "mpc_protocol_failures_total",
                "Protocol runs that ended without output.",
                &self.protocol_failures,
            ),
            (
                "mpc_triples_generated_total",
                "Triples stored.",
                &self.triples_generated,
            ),
            (
                "mpc_presignatures_generated_total",
                "Presignatures stored.",
                &self.presignatures_generated,
            ),
            (
                "mpc_chain_errors_total",
                "Failed reads of the contract.",
                &self.chain_errors,
            ),
        ];
        for (name, help, counter) in counters {
            series(&mut out, "counter", name, help, counter.get());
        }
        self.sign_latency.render(
            &mut out,
            "mpc_sign_latency_seconds",
            "From first seeing a request to its respond landing (requests led here).",
        );
        self.loop_lag.render(
            &mut out,
            "mpc_loop_lag_seconds",
            "How late the node's loop served a periodic probe (work it did in one turn).",
        );
        let name = "mpc_step_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time of one protocol step on a worker thread, by kind of run."
        );
        let _ = writeln!(out, "# TYPE {name} histogram");
        for kind in StepKind::ALL {
            self.step_time(kind).render_series(
                &mut out,
                name,
                &format!("kind=\"{}\",", kind.name()),
            );
        }
        let name = "mpc_protocol_cpu_seconds_total";
        let _ = writeln!(
            out,
            "# HELP {name} CPU time of the protocols' own code on worker threads (the cryptography, without storing outputs), by kind of run."
        );
        let _ = writeln!(out, "# TYPE {name} counter");
        for (kind, micros) in StepKind::ALL.iter().zip(&self.protocol_cpu_micros) {
            let seconds = micros.get() as f64 / 1e6;
            let _ = writeln!(out, "{name}{{kind=\"{}\"}} {seconds:.6}", kind.name());
        }
        series(
            &mut out,
            "gauge",
            "mpc_steps_queued",
            "Protocol steps waiting for a worker thread.",
            self.steps_queued.get(),
        );
        let status = self.status();
        let gauges = [
            (
                "mpc_stock_triples",
                "Own triples usable now.",
                status.stock.triples,
            ),
            (
                "mpc_stock_presignatures",
                "Own presignatures usable now.",
                status.stock.presignatures,
            ),
            (
                "mpc_pending_requests",
                "Requests waiting on the contract.",
                status.pending_requests,
            ),
            (
                "mpc_running_protocols",
                "Protocol runs under way.",
                status.running_protocols,
            ),
            (
                "mpc_live_participants",
                "Participants heard from recently, this node included.",
                status.participants.iter().filter(|p| p.live).count(),
            ),
        ];
        for (name, help, value) in gauges {
            series(&mut out, "gauge", name, help, value as u64);
        }
        series(
            &mut out,
            "gauge",
            "mpc_excluded_peers",
            "Peers left out of new runs now because their runs kept failing.",
            status.blamed.iter().filter(|b| b.excluded).count() as u64,
        );
        let name = "mpc_peer_failures_total";
        let _ = writeln!(
            out,
            "# HELP {name} Failed runs and bad messages attributed to a peer, by kind."
        );
        let _ = writeln!(out, "# TYPE {name} counter");
        for blamed in &status.blamed {
            for kind in FailureKind::ALL {
                let count = blamed.failures.get(&kind).copied().unwrap_or(0);
                let _ = writeln!(
                    out,
                    "{name}{{peer=\"{}\",id=\"{}\",kind=\"{kind}\"}} {count}",
                    label(&blamed.account_id),
                    blamed.id
                );
            }
        }
        if let Some(stats) = self.network.lock().expect("network lock").clone() {
            let p2p = [
                ("accepted", &stats.accepted, "Connections accepted."),
                (
                    "failed_handshakes",
                    &stats.failed_handshakes,
                    "Handshakes that failed.",
                ),
                (
                    "unknown_peers",
                    &stats.unknown_peers,
                    "Handshakes from keys not registered on the contract.",
                ),
                (
                    "bad_frames",
                    &stats.bad_frames,
                    "Connections ended by a bad frame.",
                ),
                (
                    "impostors",
                    &stats.impostors,
                    "Dials refused: the peer proved another key.",
                ),
                (
                    "over_budget",
                    &stats.over_budget,
                    "Peers cut off for going over their byte budget.",
                ),
                (
                    "replaced_connections",
                    &stats.replaced_connections,
                    "Inbound connections replaced by a newer one from the same peer.",
                ),
                (
                    "evicted_handshakes",
                    &stats.evicted_handshakes,
                    "Unfinished handshakes dropped to make room for newer ones.",
                ),
                (
                    "bulk_refused",
                    &stats.bulk_refused,
                    "Bulk messages not queued: the peer's bulk queue was full.",
                ),
                (
                    "refused_while_cut_off",
                    &stats.refused_while_cut_off,
                    "Connections refused: their peer was cut off a moment ago.",
                ),
                ("messages_in", &stats.messages_in, "Messages received."),
                ("messages_out", &stats.messages_out, "Messages sent."),
            ];
            for (name, value, help) in p2p {
                series(
                    &mut out,
                    "counter",
                    &format!("mpc_p2p_{name}_total"),
                    help,
                    NetworkStats::get(value),
                );
            }
        }
        out
    }
}

/// A Prometheus label value: quotes, backslashes and newlines escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Where `kind` sits in [`StepKind::ALL`] (and in the per-kind series).
fn kind_index(kind: StepKind) -> usize {
    StepKind::ALL
        .iter()
        .position(|k| *k == kind)
        .expect("ALL lists every kind")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_buckets_and_the_max_is_exact() {
        let lag = Histogram::new(LAG_BOUNDS);
        assert_eq!(lag.quantile(0.5), None);
        for _ in 0..99 {
            lag.observe(Duration::from_micros(500));
        }
        lag.observe(Duration::from_millis(300));
        assert_eq!(lag.quantile(0.5), Some(Duration::from_millis(1)));
        assert_eq!(lag.quantile(0.99), Some(Duration::from_millis(1)));
        assert_eq!(lag.quantile(1.0), Some(Duration::from_millis(300)));
        // Beyond every bucket: the largest observation.
        lag.observe(Duration::from_secs(9));
        assert_eq!(lag.quantile(1.0), Some(Duration::from_secs(9)));
        let text = {
            let mut out = String::new();
            lag.render(&mut out, "lag", "help");
            out
        };
        assert!(text.contains("lag_bucket{le=\"0.001\"} 99"), "{text}");
        assert!(text.contains("lag_bucket{le=\"+Inf\"} 101"), "{text}");
    }

    #[test]
    fn step_times_are_reported_per_kind_with_the_queue_depth() {
        let metrics = Metrics::new("node.near");
        metrics
            .step_time(StepKind::Sign)
            .observe(Duration::from_micros(800));
        metrics
            .step_time(StepKind::Triple)
            .observe(Duration::from_millis(150));
        metrics.steps_queued.set(3);
        let text = metrics.render();
        for line in [
            "mpc_step_seconds_bucket{kind=\"sign\",le=\"0.001\"} 1",
            "mpc_step_seconds_count{kind=\"sign\"} 1",
            "mpc_step_seconds_bucket{kind=\"triple\",le=\"0.1\"} 0",
            "mpc_step_seconds_bucket{kind=\"triple\",le=\"0.2\"} 1",
            "mpc_step_seconds_count{kind=\"key\"} 0",
            "mpc_steps_queued 3",
        ] {
            assert!(text.contains(line), "missing {line}: {text}");
        }
        assert_eq!(text.matches("# TYPE mpc_step_seconds histogram").count(), 1);
    }

    #[test]
    fn protocol_cpu_adds_up_per_kind_in_seconds() {
        let metrics = Metrics::new("node.near");
        metrics.add_protocol_cpu(StepKind::Triple, Duration::from_micros(1_500_250));
        metrics.add_protocol_cpu(StepKind::Triple, Duration::from_millis(500));
        metrics.add_protocol_cpu(StepKind::Sign, Duration::from_micros(7));
        let text = metrics.render();
        for line in [
            "mpc_protocol_cpu_seconds_total{kind=\"triple\"} 2.000250",
            "mpc_protocol_cpu_seconds_total{kind=\"sign\"} 0.000007",
            "mpc_protocol_cpu_seconds_total{kind=\"presign\"} 0.000000",
        ] {
            assert!(text.contains(line), "missing {line}: {text}");
        }
    }
}
