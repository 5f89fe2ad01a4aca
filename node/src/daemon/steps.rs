//! The worker threads that run protocol steps (the cryptography), and steps
//! coming back from them to the engine that sent them.

use super::Node;
use crate::engine::{StepDone, WorkerPool};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Starts the workers (per core, one urgent and one stock); their completions
/// come back on the receiver, as the loop's `Event::StepDone`.
pub(super) fn start() -> std::io::Result<(Arc<WorkerPool>, mpsc::UnboundedReceiver<StepDone>)> {
    // Unbounded but small: at most one step per running instance is ever away.
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let threads = WorkerPool::threads_for_this_machine();
    let pool = WorkerPool::start(threads, move |done: StepDone| {
        if let Err(unsent) = done_tx.send(done) {
            // The loop is gone (shutting down): nobody will confirm what it stored.
            unsent.0.discard();
        }
    })?;
    tracing::info!(
        urgent_workers = threads,
        stock_workers = threads,
        "protocol step workers started"
    );
    Ok((Arc::new(pool), done_rx))
}

impl Node {
    /// A protocol step back from its worker: to the engine that sent it (signing
    /// or key engine of its domain; if that engine was replaced meanwhile, the
    /// step is void). Its frames and events leave with the turn's outbox drain.
    pub(super) fn on_step_done(&mut self, done: StepDone, pool: &WorkerPool) {
        let metrics = &self.config.metrics;
        metrics.step_time(done.tag.kind).observe(done.elapsed);
        if let Ok(output) = &done.output {
            metrics.add_protocol_cpu(done.tag.kind, output.protocol_cpu);
        }
        metrics.steps_queued.set(pool.queued() as u64);
        let domain = done.tag.domain;
        let signer = self.signers.get_mut(&domain).map(|s| &mut s.engine);
        let engine = signer
            .into_iter()
            .chain(self.keyers.get_mut(&domain))
            .find(|e| e.serial() == done.tag.engine);
        match engine {
            Some(engine) => {
                engine.step_done(done);
            }
            None => done.discard(),
        }
    }
}
