//! What tests may ask of an engine beyond [`DomainEngine`](super::DomainEngine):
//! proposing stock on demand, and looking at its runs, key task and
//! acknowledgements for invariant checks; and [`ManualSteps`], a step runner whose
//! steps run when the test says. Only with the cargo feature `test-api`
//! (the node's own tests switch it on through their dev-dependency on this
//! crate); never in `cargo build` or release builds.

use super::StockCount;
use super::{Engine, EngineError, Job, KeyTask, RecordId, Scheme, StepRunner, StepWork};
use std::sync::{Arc, Mutex};
use threshold::Participants;

/// Test access to an [`Engine`] (see the module docs).
pub trait EngineTestApi {
    /// Proposes one stock proposal's triples now (see [`Engine::propose_triples`]).
    fn propose_triples(&mut self, live: &Participants) -> Result<Vec<RecordId>, EngineError>;
    /// Proposes a presignature now (see [`Engine::propose_presignature`]).
    fn propose_presignature(
        &mut self,
        live: &Participants,
    ) -> Result<Option<RecordId>, EngineError>;
    /// How many of this node's own triples and presignatures every holder has
    /// confirmed storing, among `live`: what it can start runs with right now.
    fn own_confirmed_stock(&self, live: &Participants) -> Result<StockCount, EngineError>;
    /// The jobs of the runs under way here (the simulation: no key run without
    /// its key task).
    fn running_jobs(&self) -> Vec<&Job>;
    /// The key task this engine follows, if any.
    fn key_task(&self) -> Option<&KeyTask>;
    /// The record ids this node holds confirmations of storing for (the
    /// simulation: only its own ids).
    fn acknowledged_ids(&self) -> Vec<RecordId>;
}

impl<S: Scheme> EngineTestApi for Engine<S> {
    fn propose_triples(&mut self, live: &Participants) -> Result<Vec<RecordId>, EngineError> {
        Engine::propose_triples(self, live)
    }

    fn propose_presignature(
        &mut self,
        live: &Participants,
    ) -> Result<Option<RecordId>, EngineError> {
        Engine::propose_presignature(self, live)
    }

    fn own_confirmed_stock(&self, live: &Participants) -> Result<StockCount, EngineError> {
        Ok(StockCount {
            triples: self
                .own_confirmed(self.store.records(S::TRIPLES)?, live)
                .len(),
            presignatures: self
                .own_confirmed(self.store.records(S::PRESIGNATURES)?, live)
                .len(),
        })
    }

    fn running_jobs(&self) -> Vec<&Job> {
        self.running.values().map(|r| &r.job).collect()
    }

    fn key_task(&self) -> Option<&KeyTask> {
        self.key_task.as_ref()
    }

    fn acknowledged_ids(&self) -> Vec<RecordId> {
        self.acks.keys().copied().collect()
    }
}

/// Steps kept until the caller runs them ([`ManualSteps::take`], then
/// [`StepWork::run`] and [`DomainEngine::step_done`](super::DomainEngine::step_done)):
/// for tests and the simulation, whose schedule decides when each completes.
#[derive(Default)]
pub struct ManualSteps {
    queue: Mutex<Vec<StepWork>>,
}

impl ManualSteps {
    pub fn new() -> Arc<Self> {
        Arc::new(ManualSteps::default())
    }

    /// The steps submitted since the last call, in submission order.
    pub fn take(&self) -> Vec<StepWork> {
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn len(&self) -> usize {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl StepRunner for ManualSteps {
    fn submit(&self, work: StepWork) {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(work);
    }
}
