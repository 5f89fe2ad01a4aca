//! A run's protocol state and one step of it: the instance of whichever output
//! (key share, triple, presignature, signature), what a step fed it and what it
//! sent, and the step itself as a worker runs it (storing a finished triple or
//! presignature there, off the loop).

use super::steps::{thread_cpu_time, StepOutput, StoredRecord};
use super::{RecordId, Scheme, StepKind};
use crate::storage::{Store, StoreError};
use std::sync::Arc;
use threshold::{Instance, ParticipantId, Step};

pub(super) enum Output<S: Scheme> {
    Key(Instance<S::KeyShare>),
    Triple(Instance<S::Triple>),
    Presign(Instance<S::Presignature>),
    Sign(Instance<S::Signature>),
}
pub(super) enum Done<S: Scheme> {
    Key(Box<S::KeyShare>),
    Triple(Box<S::Triple>),
    Presign(Box<S::Presignature>),
    /// A triple or presignature, stored by the step that made it (on its worker).
    Stored(Result<(), StoreError>),
    Sign(S::Signature),
}
enum Poked<S: Scheme> {
    Send(threshold::Outgoing),
    Wait,
    Done(Done<S>),
}
fn poked<S: Scheme, T>(step: Step<T>, done: impl FnOnce(T) -> Done<S>) -> Poked<S> {
    match step {
        Step::Send(out) => Poked::Send(out),
        Step::Wait => Poked::Wait,
        Step::Done(output) => Poked::Done(done(output)),
    }
}
impl<S: Scheme> Output<S> {
    fn receive(&mut self, from: ParticipantId, message: &[u8]) -> Result<(), threshold::Error> {
        match self {
            Output::Key(i) => i.receive(from, message),
            Output::Triple(i) => i.receive(from, message),
            Output::Presign(i) => i.receive(from, message),
            Output::Sign(i) => i.receive(from, message),
        }
    }

    fn poke(&mut self) -> Result<Poked<S>, threshold::Error> {
        Ok(match self {
            Output::Key(i) => poked(i.poke()?, |k| Done::Key(Box::new(k))),
            Output::Triple(i) => poked(i.poke()?, |t| Done::Triple(Box::new(t))),
            Output::Presign(i) => poked(i.poke()?, |p| Done::Presign(Box::new(p))),
            Output::Sign(i) => poked(i.poke()?, Done::Sign),
        })
    }

    pub(super) fn kind(&self) -> StepKind {
        match self {
            Output::Key(_) => StepKind::Key,
            Output::Triple(_) => StepKind::Triple,
            Output::Presign(_) => StepKind::Presign,
            Output::Sign(_) => StepKind::Sign,
        }
    }
}
/// Where a stock run's last step stores its record.
pub(super) struct RecordTarget {
    pub(super) store: Arc<Store>,
    pub(super) id: RecordId,
    pub(super) epoch: u64,
}
/// What a step did, for [`DomainEngine::step_done`].
pub(super) struct StepResult<S: Scheme> {
    /// How the instance took each message fed to it, in order.
    pub(super) receipts: Vec<(ParticipantId, Result<(), threshold::Error>)>,
    pub(super) sent: Vec<threshold::Outgoing>,
    pub(super) end: StepEnd<S>,
}
pub(super) enum StepEnd<S: Scheme> {
    /// The instance waits for more messages: its state comes back.
    Wait(Output<S>),
    Done(Done<S>),
    Failed(threshold::Error),
}
/// Pokes `output` until it waits (`None`), ends (its output) or fails; what it
/// sends meanwhile goes to `sent`.
fn poke_until_settled<S: Scheme>(
    output: &mut Output<S>,
    sent: &mut Vec<threshold::Outgoing>,
) -> Result<Option<Done<S>>, threshold::Error> {
    loop {
        match output.poke()? {
            Poked::Send(out) => sent.push(out),
            Poked::Wait => return Ok(None),
            Poked::Done(done) => return Ok(Some(done)),
        }
    }
}

/// One step of an instance, as a worker runs it: the messages that came, then
/// pokes until it waits; a finished triple or presignature is stored here too, so
/// the durable write is off the loop as well.
pub(super) fn run_step<S: Scheme>(
    mut output: Output<S>,
    inbox: Vec<(ParticipantId, Vec<u8>)>,
    record: Option<RecordTarget>,
) -> StepOutput {
    let cpu_at_start = thread_cpu_time();
    let receipts = inbox
        .into_iter()
        .map(|(from, message)| (from, output.receive(from, &message)))
        .collect();
    let mut sent = Vec::new();
    let settled = poke_until_settled(&mut output, &mut sent);
    // Read once the instance has settled, before a record is written: the write
    // is storage, not protocol. (The thread clock is a system call: one per step,
    // not one per poke.)
    let protocol_cpu = thread_cpu_time().saturating_sub(cpu_at_start);
    let mut stored = None;
    let end = match settled {
        Ok(None) => StepEnd::Wait(output),
        Ok(Some(done)) => {
            let kind_and_write = match (&done, &record) {
                (Done::Triple(t), Some(r)) => Some((
                    S::TRIPLES,
                    r.store.add_record(S::TRIPLES, r.id, r.epoch, t.as_ref()),
                )),
                (Done::Presign(p), Some(r)) => Some((
                    S::PRESIGNATURES,
                    r.store
                        .add_record(S::PRESIGNATURES, r.id, r.epoch, p.as_ref()),
                )),
                _ => None,
            };
            match (kind_and_write, record) {
                (Some((kind, written)), Some(r)) => {
                    if written.is_ok() {
                        stored = Some(StoredRecord {
                            store: r.store,
                            kind,
                            id: r.id,
                        });
                    }
                    StepEnd::Done(Done::Stored(written))
                }
                _ => StepEnd::Done(done),
            }
        }
        Err(e) => StepEnd::Failed(e),
    };
    StepOutput {
        result: Box::new(StepResult::<S> {
            receipts,
            sent,
            end,
        }),
        stored,
        protocol_cpu,
    }
}
