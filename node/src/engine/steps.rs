//! Where protocol steps run. A *step* feeds a protocol instance the messages that
//! came for it and pokes it until it waits, finishes or fails: that is where the
//! cryptography happens, milliseconds to hundreds of milliseconds of it. The
//! engine hands each step to a [`StepRunner`] given in
//! [`EngineSetup`](super::EngineSetup) and takes the result back through
//! [`DomainEngine::step_done`](super::DomainEngine::step_done), so the caller's
//! loop only routes (DESIGN §8):
//! - [`WorkerPool`] (the daemon): per core, one urgent worker (signing and key
//!   events) and one stock worker (presignatures, then triples); within a class
//!   the most urgent kind first ([`StepKind`]), then the oldest run; each
//!   completion handed to a callback (the daemon sends it to its loop over a
//!   channel);
//! - `ManualSteps` (tests, the simulation; cargo feature `test-api`, in
//!   `test_api.rs`): steps wait in a list until the caller runs them, in whatever
//!   order its schedule picks, so runs stay deterministic and completions can
//!   come back in any order.
//!
//! A completion is tagged with its engine, instance and a ticket: an engine takes
//! back only the step it is waiting for, and a completion nobody takes (its run
//! was abandoned or its engine replaced meanwhile) is [`StepDone::discard`]ed,
//! which retires any stock record the step stored, so it is never used.

use crate::record_id::RecordId;
use crate::storage::{RecordKind, Store};
use primitives::DomainId;
use std::any::Any;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use threshold::InstanceId;

/// What a step works on, in the order steps are served (most urgent first): a
/// request waits on a signature, the contract on key events, and stock is made
/// ahead of need.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StepKind {
    Sign,
    Key,
    Presign,
    Triple,
}

impl StepKind {
    pub const ALL: [StepKind; 4] = [
        StepKind::Sign,
        StepKind::Key,
        StepKind::Presign,
        StepKind::Triple,
    ];

    /// Whether someone waits on this step now (a request, the contract), rather
    /// than on stock made ahead of need: urgent steps have workers of their own.
    pub fn is_urgent(&self) -> bool {
        matches!(self, StepKind::Sign | StepKind::Key)
    }

    pub fn name(&self) -> &'static str {
        match self {
            StepKind::Sign => "sign",
            StepKind::Key => "key",
            StepKind::Presign => "presign",
            StepKind::Triple => "triple",
        }
    }
}

/// Which step of which run a completion belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepTag {
    /// The engine that sent it ([`DomainEngine::serial`](super::DomainEngine::serial)).
    pub engine: u64,
    pub domain: DomainId,
    pub instance: InstanceId,
    /// Tells this step from earlier and later ones of the same instance.
    pub ticket: u64,
    pub kind: StepKind,
    /// When the step's run began on this node. Within a kind the oldest run's
    /// steps go first, so concurrent runs finish one after another rather than
    /// all together at the end: after the stock runs dry, the first presignature
    /// comes after one run's worth of work, not after every run's.
    pub run_started: Instant,
}

/// A stock record a step stored on its worker (the record's durable write is part
/// of its run's last step, off the loop).
pub struct StoredRecord {
    pub store: Arc<Store>,
    pub kind: RecordKind,
    pub id: RecordId,
}

/// What a step's work returns: the engine's own result (opened only by the engine
/// of the scheme that made it) and the record it stored, if any.
pub struct StepOutput {
    pub result: Box<dyn Any + Send>,
    pub stored: Option<StoredRecord>,
    /// CPU time the protocol's own code took on the worker's thread (taking in
    /// messages and poking), without storing its output: the cryptography.
    pub protocol_cpu: Duration,
}

/// CPU time this thread has used so far (the kernel's per-thread clock).
pub fn thread_cpu_time() -> Duration {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(now.tv_sec).unwrap_or(0),
        u32::try_from(now.tv_nsec).unwrap_or(0),
    )
}

type Work = Box<dyn FnOnce() -> StepOutput + Send>;

/// A step waiting to run.
pub struct StepWork {
    pub tag: StepTag,
    work: Work,
}

impl StepWork {
    pub fn new(tag: StepTag, work: impl FnOnce() -> StepOutput + Send + 'static) -> Self {
        StepWork {
            tag,
            work: Box::new(work),
        }
    }

    /// Runs the step here and now. A panic in the protocol code fails the run
    /// rather than the thread.
    pub fn run(self) -> StepDone {
        let started = Instant::now();
        let output = catch_unwind(AssertUnwindSafe(self.work)).map_err(|panic| {
            let text = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            format!("a protocol step panicked: {text}")
        });
        StepDone {
            tag: self.tag,
            output,
            elapsed: started.elapsed(),
        }
    }
}

/// A step that ran, to hand back to its engine.
pub struct StepDone {
    pub tag: StepTag,
    /// `Err` if the step panicked.
    pub output: Result<StepOutput, String>,
    /// How long the step took on its worker.
    pub elapsed: Duration,
}

impl StepDone {
    /// Drops a completion nobody takes back (its run was abandoned, or its engine
    /// replaced, while it ran): a record it stored is retired, since no holder
    /// confirmation or run will ever account for it.
    pub fn discard(self) {
        let Ok(StepOutput {
            stored: Some(record),
            ..
        }) = self.output
        else {
            return;
        };
        if let Err(e) = record.store.retire_record(record.kind, record.id) {
            tracing::warn!(id = %record.id, error = %e, "cannot retire the record of an abandoned run");
        }
    }
}

/// Runs the engine's steps somewhere and hands each completion back.
pub trait StepRunner: Send + Sync {
    fn submit(&self, work: StepWork);
}

/// Steps waiting for a worker: most urgent kind first, then the oldest run's,
/// then first come first served.
#[derive(Default)]
pub struct StepQueue {
    heap: BinaryHeap<Queued>,
    next: u64,
}

struct Queued {
    seq: u64,
    work: StepWork,
}

type Rank = (Reverse<StepKind>, Reverse<Instant>, Reverse<u64>);

impl Queued {
    /// Larger is served first (a max-heap): an earlier kind, then an older run,
    /// then an older step.
    fn rank(&self) -> Rank {
        let tag = &self.work.tag;
        (
            Reverse(tag.kind),
            Reverse(tag.run_started),
            Reverse(self.seq),
        )
    }
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.rank() == other.rank()
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.rank().cmp(&other.rank())
    }
}

impl StepQueue {
    pub fn push(&mut self, work: StepWork) {
        let seq = self.next;
        self.next += 1;
        self.heap.push(Queued { seq, work });
    }

    /// The most urgent step.
    pub fn pop(&mut self) -> Option<StepWork> {
        self.heap.pop().map(|q| q.work)
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

/// The two kinds of worker thread, each with its own queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WorkerClass {
    /// Signing and key-event steps.
    Urgent,
    /// Presignature and triple steps.
    Stock,
}

impl WorkerClass {
    fn of(kind: StepKind) -> Self {
        if kind.is_urgent() {
            WorkerClass::Urgent
        } else {
            WorkerClass::Stock
        }
    }

    fn name(self) -> &'static str {
        match self {
            WorkerClass::Urgent => "urgent",
            WorkerClass::Stock => "stock",
        }
    }
}

struct PoolState {
    urgent: StepQueue,
    stock: StepQueue,
    stopping: bool,
}

impl PoolState {
    fn queue(&mut self, class: WorkerClass) -> &mut StepQueue {
        match class {
            WorkerClass::Urgent => &mut self.urgent,
            WorkerClass::Stock => &mut self.stock,
        }
    }
}

struct PoolShared {
    state: Mutex<PoolState>,
    urgent_ready: Condvar,
    stock_ready: Condvar,
}

impl PoolShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        // A worker never panics while holding the lock (steps run outside it).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn ready(&self, class: WorkerClass) -> &Condvar {
        match class {
            WorkerClass::Urgent => &self.urgent_ready,
            WorkerClass::Stock => &self.stock_ready,
        }
    }
}

/// Worker threads that run steps and hand each completion to `done`, in two
/// classes ([`WorkerClass`]), one thread of each per core: urgent workers run
/// signing and key-event steps, stock workers presignature and triple steps, so
/// a signature never waits for a worker busy with stock. Both run at the node's
/// OS priority: stock at a lower one (tried) starved when something else took
/// the CPU (a flooding peer's traffic), and then requests waited on the very
/// presignatures it could not make. Within a class, steps are served most
/// urgent kind first, then oldest run first ([`StepQueue`]). Dropping the pool
/// lets running steps finish, drops queued ones and joins the threads.
pub struct WorkerPool {
    shared: Arc<PoolShared>,
    threads: Vec<JoinHandle<()>>,
}

impl WorkerPool {
    /// One worker of each class per core the machine offers (at least one).
    pub fn threads_for_this_machine() -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }

    /// Starts `threads` urgent workers and `threads` stock workers.
    pub fn start(
        threads: usize,
        done: impl Fn(StepDone) + Send + Sync + 'static,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(PoolShared {
            state: Mutex::new(PoolState {
                urgent: StepQueue::default(),
                stock: StepQueue::default(),
                stopping: false,
            }),
            urgent_ready: Condvar::new(),
            stock_ready: Condvar::new(),
        });
        let done = Arc::new(done);
        let mut pool = WorkerPool {
            shared: shared.clone(),
            threads: Vec::new(),
        };
        for class in [WorkerClass::Urgent, WorkerClass::Stock] {
            for i in 0..threads.max(1) {
                let shared = shared.clone();
                let done = done.clone();
                let thread = std::thread::Builder::new()
                    .name(format!("mpc-{}-{i}", class.name()))
                    .spawn(move || run_worker(&shared, class, &*done))?;
                pool.threads.push(thread);
            }
        }
        Ok(pool)
    }

    /// Steps waiting for a worker.
    pub fn queued(&self) -> usize {
        let state = self.shared.lock();
        state.urgent.len() + state.stock.len()
    }

    /// Takes no more steps: steps running now finish, queued ones never run (and
    /// the ones submitted later neither). The threads end; dropping the pool
    /// joins them.
    pub fn stop(&self) {
        self.shared.lock().stopping = true;
        self.shared.urgent_ready.notify_all();
        self.shared.stock_ready.notify_all();
    }
}

/// A worker's life: take the next step of its class, run it, hand it back.
fn run_worker(shared: &PoolShared, class: WorkerClass, done: &(dyn Fn(StepDone) + Send + Sync)) {
    loop {
        let next = {
            let mut state = shared.lock();
            loop {
                if state.stopping {
                    return;
                }
                if let Some(next) = state.queue(class).pop() {
                    break next;
                }
                state = shared
                    .ready(class)
                    .wait(state)
                    .unwrap_or_else(|e| e.into_inner());
            }
        };
        done(next.run());
    }
}

impl StepRunner for WorkerPool {
    fn submit(&self, work: StepWork) {
        let class = WorkerClass::of(work.tag.kind);
        self.shared.lock().queue(class).push(work);
        self.shared.ready(class).notify_one();
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        self.stop();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// One epoch for the runs of a test; `run_started(k)` is k ms after it.
    fn run_started(k: u64) -> Instant {
        static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *EPOCH.get_or_init(Instant::now) + Duration::from_millis(k)
    }

    /// A step of kind `kind` whose run began at `run_started(run)`.
    fn step_of_run(kind: StepKind, run: u64, ticket: u64) -> StepWork {
        let tag = StepTag {
            engine: 0,
            domain: DomainId(0),
            instance: InstanceId([0; 32]),
            ticket,
            kind,
            run_started: run_started(run),
        };
        StepWork::new(tag, || StepOutput {
            result: Box::new(()),
            stored: None,
            protocol_cpu: Duration::ZERO,
        })
    }

    fn work_of(kind: StepKind, ticket: u64) -> StepWork {
        step_of_run(kind, 0, ticket)
    }

    fn served(queue: &mut StepQueue) -> Vec<(StepKind, u64)> {
        std::iter::from_fn(|| queue.pop())
            .map(|w| (w.tag.kind, w.tag.ticket))
            .collect()
    }

    #[test]
    fn the_queue_serves_signing_then_key_events_then_presignatures_then_triples() {
        let mut queue = StepQueue::default();
        let order = [
            (StepKind::Triple, 0),
            (StepKind::Presign, 1),
            (StepKind::Triple, 2),
            (StepKind::Sign, 3),
            (StepKind::Key, 4),
            (StepKind::Sign, 5),
            (StepKind::Presign, 6),
        ];
        for (kind, ticket) in order {
            queue.push(work_of(kind, ticket));
        }
        assert_eq!(queue.len(), order.len());
        // By kind, and first come first served within a kind and run.
        assert_eq!(
            served(&mut queue),
            vec![
                (StepKind::Sign, 3),
                (StepKind::Sign, 5),
                (StepKind::Key, 4),
                (StepKind::Presign, 1),
                (StepKind::Presign, 6),
                (StepKind::Triple, 0),
                (StepKind::Triple, 2),
            ]
        );
        assert!(queue.is_empty());
    }

    #[test]
    fn within_a_kind_the_oldest_run_goes_first_whatever_the_arrival_order() {
        let mut queue = StepQueue::default();
        // Runs 30, 10 and 20 (ms after the epoch); their steps arrive interleaved.
        let arrivals = [
            (StepKind::Triple, 30, 0),
            (StepKind::Triple, 10, 1),
            (StepKind::Triple, 20, 2),
            (StepKind::Triple, 30, 3),
            (StepKind::Triple, 10, 4),
            (StepKind::Presign, 40, 5),
        ];
        for (kind, run, ticket) in arrivals {
            queue.push(step_of_run(kind, run, ticket));
        }
        // A newer run of a more urgent kind still comes first.
        assert_eq!(
            served(&mut queue),
            vec![
                (StepKind::Presign, 5),
                (StepKind::Triple, 1),
                (StepKind::Triple, 4),
                (StepKind::Triple, 2),
                (StepKind::Triple, 0),
                (StepKind::Triple, 3),
            ]
        );
    }

    /// A step that signals when it starts and then waits for its release.
    fn blocker(kind: StepKind, ticket: u64) -> (StepWork, mpsc::Receiver<()>, mpsc::Sender<()>) {
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (started_tx, started_rx) = mpsc::channel::<()>();
        let work = StepWork::new(work_of(kind, ticket).tag, move || {
            started_tx.send(()).unwrap();
            release_rx.recv().unwrap();
            StepOutput {
                result: Box::new(()),
                stored: None,
                protocol_cpu: Duration::ZERO,
            }
        });
        (work, started_rx, release_tx)
    }

    const WAIT: Duration = Duration::from_secs(10);

    #[test]
    fn the_thread_clock_counts_work_and_not_sleep() {
        let start = thread_cpu_time();
        std::thread::sleep(Duration::from_millis(60));
        let slept = thread_cpu_time().saturating_sub(start);
        assert!(slept < Duration::from_millis(30), "sleeping used {slept:?}");
        let start = thread_cpu_time();
        let wall = Instant::now();
        let mut x = 0u64;
        while wall.elapsed() < Duration::from_millis(60) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let worked = thread_cpu_time().saturating_sub(start);
        // Another process may take the core for part of the spin; not for all of it.
        assert!(
            worked > Duration::from_millis(5),
            "spinning used {worked:?}"
        );
        assert!(
            worked <= wall.elapsed() + Duration::from_millis(5),
            "{worked:?}"
        );
    }

    #[test]
    fn an_urgent_step_runs_while_every_stock_worker_is_busy() {
        let (done_tx, done_rx) = mpsc::channel();
        let pool = WorkerPool::start(1, move |done: StepDone| {
            done_tx.send(done.tag.ticket).unwrap();
        })
        .unwrap();
        let (stock, started, release) = blocker(StepKind::Triple, 100);
        pool.submit(stock);
        started.recv_timeout(WAIT).unwrap();
        pool.submit(work_of(StepKind::Sign, 1));
        pool.submit(work_of(StepKind::Key, 2));
        // Both urgent steps finish while the only stock worker is still held.
        let urgent: Vec<u64> = (0..2)
            .map(|_| done_rx.recv_timeout(WAIT).unwrap())
            .collect();
        assert_eq!(urgent, vec![1, 2]);
        release.send(()).unwrap();
        assert_eq!(done_rx.recv_timeout(WAIT).unwrap(), 100);
    }

    #[test]
    fn a_busy_class_takes_its_most_urgent_waiting_step_next() {
        let (done_tx, done_rx) = mpsc::channel();
        let pool = WorkerPool::start(1, move |done: StepDone| {
            done_tx.send(done.tag.ticket).unwrap();
        })
        .unwrap();
        let (stock, stock_started, stock_release) = blocker(StepKind::Triple, 100);
        let (urgent, urgent_started, urgent_release) = blocker(StepKind::Key, 200);
        pool.submit(stock);
        pool.submit(urgent);
        stock_started.recv_timeout(WAIT).unwrap();
        urgent_started.recv_timeout(WAIT).unwrap();
        pool.submit(step_of_run(StepKind::Triple, 20, 1));
        pool.submit(step_of_run(StepKind::Triple, 10, 2));
        pool.submit(step_of_run(StepKind::Presign, 30, 3));
        pool.submit(work_of(StepKind::Key, 4));
        pool.submit(work_of(StepKind::Sign, 5));
        assert_eq!(pool.queued(), 5);
        stock_release.send(()).unwrap();
        let stock: Vec<u64> = (0..4)
            .map(|_| done_rx.recv_timeout(WAIT).unwrap())
            .collect();
        assert_eq!(stock, vec![100, 3, 2, 1]);
        urgent_release.send(()).unwrap();
        let urgent: Vec<u64> = (0..3)
            .map(|_| done_rx.recv_timeout(WAIT).unwrap())
            .collect();
        assert_eq!(urgent, vec![200, 5, 4]);
        assert_eq!(pool.queued(), 0);
    }

    #[test]
    fn a_panicking_step_comes_back_as_an_error_and_the_worker_survives() {
        let (done_tx, done_rx) = mpsc::channel();
        let pool = WorkerPool::start(1, move |done: StepDone| {
            done_tx.send(done).unwrap();
        })
        .unwrap();
        pool.submit(StepWork::new(work_of(StepKind::Sign, 1).tag, || {
            panic!("boom")
        }));
        pool.submit(work_of(StepKind::Sign, 2));
        let first = done_rx.recv().unwrap();
        let Err(why) = first.output else {
            panic!("a panicking step must come back as an error");
        };
        assert!(why.contains("boom"), "{why}");
        let second = done_rx.recv().unwrap();
        assert_eq!(second.tag.ticket, 2);
        assert!(second.output.is_ok());
    }
}
