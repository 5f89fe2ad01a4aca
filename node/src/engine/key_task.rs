//! The key share and the key task: which key-event attempt the contract asks this
//! engine's domain to run (keygen or resharing), joining and proposing its run,
//! resuming a task finished before a restart, and judging the stalled keygen runs
//! of an attempt that ended.

use super::instance::Output;
use super::judge::STALL_FRACTION;
use super::Engine;
use super::{EngineError, Event, Job, ReshareSpec, Scheme, Start};
use crate::blame::FailureKind;
use crate::storage::StoreError;
use primitives::DomainId;
use std::time::Instant;
use threshold::{ParticipantId, Participants};

/// What the contract asks of the key holders of one domain, as the daemon reads
/// it from the contract state: one attempt of a key event. The attempt id is the
/// contract's, so every participant runs the same instance and a new attempt is a
/// new task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyTask {
    /// Generate `domain`'s key among the engine's participants.
    Generate {
        epoch: u64,
        domain: DomainId,
        attempt: u64,
    },
    /// Reshare `domain`'s key `public_key` (as the contract shows it) from the old
    /// participants to the engine's participants and threshold.
    Reshare {
        epoch: u64,
        domain: DomainId,
        old_participants: Participants,
        old_threshold: usize,
        public_key: String,
        attempt: u64,
    },
}

impl KeyTask {
    /// The run of this task, with `facts` about the old key for a resharing.
    fn job(&self, facts: Vec<u8>) -> Job {
        match self {
            KeyTask::Generate {
                epoch,
                domain,
                attempt,
            } => Job::Keygen {
                epoch: *epoch,
                domain: domain.0,
                attempt: *attempt,
            },
            KeyTask::Reshare {
                epoch,
                domain,
                old_participants,
                old_threshold,
                public_key,
                attempt,
            } => Job::Reshare {
                epoch: *epoch,
                domain: domain.0,
                old_participants: old_participants.iter().collect(),
                old_threshold: *old_threshold as u32,
                public_key: public_key.clone(),
                facts,
                attempt: *attempt,
            },
        }
    }

    pub fn attempt(&self) -> u64 {
        match self {
            KeyTask::Generate { attempt, .. } | KeyTask::Reshare { attempt, .. } => *attempt,
        }
    }

    pub fn domain(&self) -> DomainId {
        match self {
            KeyTask::Generate { domain, .. } | KeyTask::Reshare { domain, .. } => *domain,
        }
    }

    pub fn epoch(&self) -> u64 {
        match self {
            KeyTask::Generate { epoch, .. } | KeyTask::Reshare { epoch, .. } => *epoch,
        }
    }
}

/// How an engine's key share for its epoch was found in storage.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyLoad {
    Loaded,
    /// None is stored.
    Missing,
    /// The stored share is from another key-event attempt (given).
    OtherAttempt(u64),
}

impl<S: Scheme> Engine<S> {
    pub(super) fn load_key(&mut self, attempt: u64) -> Result<KeyLoad, StoreError> {
        Ok(
            match self
                .store
                .key_share_at::<S::KeyShare>(self.domain, self.epoch)?
            {
                Some((stored, share)) if stored == attempt => {
                    self.key = Some(share);
                    KeyLoad::Loaded
                }
                Some((stored, _)) => KeyLoad::OtherAttempt(stored),
                None => KeyLoad::Missing,
            },
        )
    }

    /// Sets the share resharing starts from (see [`super::DomainEngine::load_reshare_input`]).
    fn set_reshare_input(&mut self, share: Option<S::KeyShare>) {
        self.reshare_facts = share.as_ref().map(S::reshare_facts);
        self.reshare_input = share;
    }

    /// The run of the current key task, if this node knows all its inputs (a
    /// newcomer to a resharing whose scheme needs facts about the old key learns
    /// them from an old holder's invitation).
    pub(super) fn key_job(&self) -> Option<Job> {
        let task = self.key_task.as_ref()?;
        let facts = match task {
            KeyTask::Reshare { .. } if S::RESHARE_NEEDS_FACTS => self.reshare_facts.clone()?,
            _ => Vec::new(),
        };
        Some(task.job(facts))
    }

    fn join_key_task(&self, job: &Job) -> Result<Output<S>, EngineError> {
        let task = self
            .key_task
            .as_ref()
            .ok_or_else(|| EngineError::Refused("no key task is under way".into()))?;
        let instance = self.instance_of(job);
        Ok(Output::Key(match (task, job) {
            (KeyTask::Generate { .. }, _) => {
                S::keygen(instance, self.me, self.participants.clone(), self.threshold)?
            }
            (
                KeyTask::Reshare {
                    old_participants,
                    old_threshold,
                    public_key,
                    ..
                },
                Job::Reshare { facts, .. },
            ) => {
                let spec = ReshareSpec {
                    old_participants,
                    old_threshold: *old_threshold,
                    public_key,
                    facts,
                    new_participants: self.participants.clone(),
                    new_threshold: self.threshold,
                    old_share: self
                        .reshare_input
                        .as_ref()
                        .filter(|_| old_participants.contains(self.me)),
                };
                S::reshare(instance, self.me, spec)?
            }
            (KeyTask::Reshare { .. }, _) => {
                return Err(EngineError::Refused("not a resharing run".into()))
            }
        }))
    }

    /// Joins the key task's run on an invitation. A newcomer to a resharing that
    /// needs facts about the old key takes them from the invitation: the
    /// protocol's confirmation round fails unless every party used the same.
    pub(super) fn join_key_start(
        &mut self,
        start: Start,
        participants: Participants,
    ) -> Result<(), EngineError> {
        let task = self
            .key_task
            .clone()
            .ok_or_else(|| EngineError::Refused("no key task is under way".into()))?;
        if self.key_done {
            // Our share of this epoch is stored and never replaced: another run's
            // output could not be used together with it.
            return Err(EngineError::Refused(
                "this node finished the key task already".into(),
            ));
        }
        if self.key_failed {
            return Err(EngineError::Refused(
                "this node's run of the key task failed; the next attempt runs anew".into(),
            ));
        }
        let expected = match (self.key_job(), &start.job) {
            (Some(job), _) => job,
            (None, Job::Reshare { facts, .. }) => task.job(facts.clone()),
            (None, _) => return Err(EngineError::Refused("not a resharing run".into())),
        };
        if expected != start.job || participants != self.participants {
            return Err(EngineError::Refused(format!(
                "the key task (attempt {}) differs from the contract's as seen here \
                 (attempt {})",
                start.job.attempt().unwrap_or_default(),
                task.attempt()
            )));
        }
        if self.running.contains_key(&self.instance_of(&start.job)) {
            // Several participants may propose the key task; it is one run.
            return Ok(());
        }
        if let Job::Reshare { facts, .. } = &start.job {
            self.reshare_facts.get_or_insert_with(|| facts.clone());
        }
        let output = self.join_key_task(&start.job)?;
        self.launch(start.job, participants, false, output);
        Ok(())
    }

    pub(super) fn set_key_task(&mut self, task: Option<KeyTask>) {
        if self.key_task != task {
            // Runs of the old task are void: their output must never be stored.
            self.running.retain(|_, r| r.job.attempt().is_none());
            self.key_task = task;
            self.key_done = false;
            self.key_failed = false;
        }
    }

    pub(super) fn load_reshare_input(
        &mut self,
        epoch: u64,
        attempt: u64,
    ) -> Result<bool, StoreError> {
        let share = self
            .store
            .key_share_at::<S::KeyShare>(self.domain, epoch)?
            .filter(|(stored, _)| *stored == attempt)
            .map(|(_, share)| share);
        let held = share.is_some();
        self.set_reshare_input(share);
        Ok(held)
    }

    pub(super) fn resume_finished_key_task(&mut self) -> Result<bool, StoreError> {
        let Some(task) = &self.key_task else {
            return Ok(false);
        };
        let (epoch, attempt) = (task.epoch(), task.attempt());
        let Some((stored, share)) = self.store.key_share_at::<S::KeyShare>(self.domain, epoch)?
        else {
            return Ok(false);
        };
        if stored != attempt {
            return Ok(false);
        }
        self.events.push_back(Event::KeyShareStored {
            domain: self.domain,
            epoch,
            attempt,
            public_key: S::public_key_text(&share),
        });
        self.key = Some(share);
        self.key_done = true;
        Ok(true)
    }

    pub(super) fn propose_key_task(&mut self) -> Result<bool, EngineError> {
        if self.key_task.is_none() {
            return Ok(false);
        }
        if self.key_done || self.key_failed {
            return Ok(true);
        }
        // A newcomer that needs facts about the old key waits for an old holder.
        let Some(job) = self.key_job() else {
            return Ok(true);
        };
        if self.running.contains_key(&self.instance_of(&job)) {
            return Ok(true);
        }
        let output = self.join_key_task(&job)?;
        self.launch(job, self.participants.clone(), true, output);
        Ok(true)
    }

    pub(super) fn judge_ended_attempt(&mut self, now: Instant) {
        self.note_progress(now);
        // Half the stall limit: long next to a keygen round (milliseconds), so a
        // run this quiet with one peer's message missing was held up by that peer.
        let quiet_limit = self.timeout / STALL_FRACTION / 2;
        let stalled: Vec<(ParticipantId, Job)> = self
            .running
            .values()
            .filter(|r| matches!(r.job, Job::Keygen { .. }))
            .filter(|r| r.away.is_none() && r.inbox.is_empty())
            .filter(|r| now.saturating_duration_since(r.progress.1) >= quiet_limit)
            // What the peer sent elsewhere does not excuse it, unlike for stock
            // runs (`expire`): key traffic never queues, and its first message of
            // the next attempt, which often comes before the snapshot that ends
            // this one, says nothing of its missing last one here.
            .filter_map(|r| Some((self.straggler(r)?, r.job.clone())))
            .collect();
        for (peer, job) in stalled {
            tracing::debug!(
                peer = peer.0,
                ?job,
                "an ended attempt's run waited on one peer"
            );
            self.blame(
                peer,
                FailureKind::Timeout,
                "a key run stalled on it until its attempt ended".into(),
            );
        }
    }
}
