//! Where protocol steps run. A *step* feeds a protocol instance the messages that
//! came for it and pokes it until it waits, finishes or fails: that is where the
//! cryptography happens, milliseconds to hundreds of milliseconds of it. The
//! engine hands each step to a [`StepRunner`] given in
//! [`EngineSetup`](super::EngineSetup) and takes the result back through
//! [`DomainEngine::step_done`](super::DomainEngine::step_done), so the caller's
//! loop only routes (DESIGN §8):
//! - [`WorkerPool`] (the daemon): one OS thread per core, taking the most urgent
//!   step first ([`StepKind`]: signing, then key events, then presignatures, then
//!   triples), each completion handed to a callback (the daemon sends it to its
//!   loop over a channel);
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

/// Steps waiting for a worker, most urgent kind first, then first come first
/// served.
#[derive(Default)]
pub struct StepQueue {
    heap: BinaryHeap<Queued>,
    next: u64,
}

struct Queued {
    kind: StepKind,
    seq: u64,
    work: StepWork,
}

impl Queued {
    /// Larger is served first (a max-heap): an earlier kind, then an older step.
    fn rank(&self) -> (std::cmp::Reverse<StepKind>, std::cmp::Reverse<u64>) {
        (std::cmp::Reverse(self.kind), std::cmp::Reverse(self.seq))
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
        self.heap.push(Queued {
            kind: work.tag.kind,
            seq,
            work,
        });
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

struct PoolState {
    queue: StepQueue,
    stopping: bool,
}

struct PoolShared {
    state: Mutex<PoolState>,
    ready: Condvar,
}

impl PoolShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        // A worker never panics while holding the lock (steps run outside it).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Worker threads that run steps most urgent first and hand each completion to
/// `done`. Dropping the pool lets running steps finish, drops queued ones and
/// joins the threads.
pub struct WorkerPool {
    shared: Arc<PoolShared>,
    threads: Vec<JoinHandle<()>>,
}

impl WorkerPool {
    /// One worker per core the machine offers (at least one).
    pub fn threads_for_this_machine() -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }

    pub fn start(
        threads: usize,
        done: impl Fn(StepDone) + Send + Sync + 'static,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(PoolShared {
            state: Mutex::new(PoolState {
                queue: StepQueue::default(),
                stopping: false,
            }),
            ready: Condvar::new(),
        });
        let done = Arc::new(done);
        let mut pool = WorkerPool {
            shared: shared.clone(),
            threads: Vec::new(),
        };
        for i in 0..threads.max(1) {
            let shared = shared.clone();
            let done = done.clone();
            let thread = std::thread::Builder::new()
                .name(format!("mpc-step-{i}"))
                .spawn(move || work(&shared, &*done))?;
            pool.threads.push(thread);
        }
        Ok(pool)
    }

    /// Steps waiting for a worker.
    pub fn queued(&self) -> usize {
        self.shared.lock().queue.len()
    }

    /// Takes no more steps: steps running now finish, queued ones never run (and
    /// the ones submitted later neither). The threads end; dropping the pool
    /// joins them.
    pub fn stop(&self) {
        self.shared.lock().stopping = true;
        self.shared.ready.notify_all();
    }
}

fn work(shared: &PoolShared, done: &(dyn Fn(StepDone) + Send + Sync)) {
    loop {
        let next = {
            let mut state = shared.lock();
            loop {
                if state.stopping {
                    return;
                }
                if let Some(next) = state.queue.pop() {
                    break next;
                }
                state = shared.ready.wait(state).unwrap_or_else(|e| e.into_inner());
            }
        };
        done(next.run());
    }
}

impl StepRunner for WorkerPool {
    fn submit(&self, work: StepWork) {
        self.shared.lock().queue.push(work);
        self.shared.ready.notify_one();
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

    fn work_of(kind: StepKind, ticket: u64) -> StepWork {
        let tag = StepTag {
            engine: 0,
            domain: DomainId(0),
            instance: InstanceId([0; 32]),
            ticket,
            kind,
        };
        StepWork::new(tag, || StepOutput {
            result: Box::new(()),
            stored: None,
        })
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
        let served: Vec<(StepKind, u64)> = std::iter::from_fn(|| queue.pop())
            .map(|w| (w.tag.kind, w.tag.ticket))
            .collect();
        // By kind, and first come first served within a kind.
        assert_eq!(
            served,
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
    fn a_busy_pool_takes_the_most_urgent_waiting_step_next() {
        let (done_tx, done_rx) = mpsc::channel();
        let pool = WorkerPool::start(1, move |done: StepDone| {
            done_tx.send(done.tag.ticket).unwrap();
        })
        .unwrap();
        // Hold the only worker until everything else is queued.
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (started_tx, started_rx) = mpsc::channel::<()>();
        let blocker = StepWork::new(
            StepTag {
                ticket: 100,
                ..work_of(StepKind::Triple, 0).tag
            },
            move || {
                started_tx.send(()).unwrap();
                release_rx.recv().unwrap();
                StepOutput {
                    result: Box::new(()),
                    stored: None,
                }
            },
        );
        pool.submit(blocker);
        started_rx.recv().unwrap();
        pool.submit(work_of(StepKind::Triple, 1));
        pool.submit(work_of(StepKind::Presign, 2));
        pool.submit(work_of(StepKind::Sign, 3));
        pool.submit(work_of(StepKind::Key, 4));
        assert_eq!(pool.queued(), 4);
        release_tx.send(()).unwrap();
        let finished: Vec<u64> = (0..5).map(|_| done_rx.recv().unwrap()).collect();
        assert_eq!(finished, vec![100, 3, 4, 2, 1]);
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
