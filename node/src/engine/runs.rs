//! The runs under way: launching one (with its invitation) or joining one on a
//! peer's `Start`, handing each instance its messages and its next step, applying
//! what a step did, finishing (storing or reporting the output), and declines.
//! Runs that went quiet are judged in `judge.rs`.

use super::instance::{run_step, Done, Output, RecordTarget, StepEnd, StepResult};
use super::{
    peer_text, Engine, EngineError, Event, Job, NodeMessage, RecordId, Scheme, Start, StepDone,
    StepTag, StepWork,
};
use crate::blame::{FailureKind, PeerReport};
use primitives::RequestId;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Instant;
use threshold::{InstanceId, ParticipantId, Participants, Recipient};

/// Ended runs remembered (see [`EndedRuns`]): at ~100 runs/s, the last 40 s or so,
/// longer than a sender waits before it writes a broken connection's batch again.
const ENDED_REMEMBERED: usize = 4096;

/// Stock and signing runs that ended here lately. A sender whose connection broke
/// writes its last batch again on the next one, though the peer may have read
/// part of it: an invitation or protocol message of a run that ended here can
/// come twice. Its repeat must start nothing (a new instance under the old id
/// would wait for messages nobody sends) and take no room. Key runs are not
/// here: their instance is the contract's attempt, which `key_done` and
/// `key_failed` guard.
#[derive(Default)]
pub(super) struct EndedRuns {
    order: VecDeque<InstanceId>,
    /// Each run, with whether it finished here with its output.
    ids: BTreeMap<InstanceId, bool>,
}

impl EndedRuns {
    fn remember(&mut self, instance: InstanceId, finished: bool) {
        if self.ids.insert(instance, finished).is_none() {
            self.order.push_back(instance);
        }
        while self.order.len() > ENDED_REMEMBERED {
            if let Some(oldest) = self.order.pop_front() {
                self.ids.remove(&oldest);
            }
        }
        debug_assert_eq!(self.order.len(), self.ids.len());
    }

    pub(super) fn contains(&self, instance: &InstanceId) -> bool {
        self.ids.contains_key(instance)
    }

    /// Whether `instance` finished here with its output.
    fn finished(&self, instance: &InstanceId) -> bool {
        self.ids.get(instance).copied().unwrap_or(false)
    }
}

/// Invitations to sign kept until the request shows up on our side.
const MAX_DEFERRED: usize = 1024;
/// Messages queued for a running instance while its step is on a worker, shared
/// equally among its participants.
const MAX_INBOX_PER_INSTANCE: usize = 1024;
/// A run under way here: its job and participants, its protocol state, and the
/// message counts that tell whom it waits on.
pub(super) struct Running<S: Scheme> {
    pub(super) job: Job,
    pub(super) participants: Participants,
    pub(super) started: Instant,
    pub(super) leader: bool,
    /// The protocol state, or `None` while a step of it is on a worker (at most
    /// one step per instance is ever away, so no instance runs twice at once).
    pub(super) output: Option<Output<S>>,
    /// The ticket of the step away, if one is.
    pub(super) away: Option<u64>,
    /// Messages that came since the last step began, for the next one.
    pub(super) inbox: Vec<(ParticipantId, Vec<u8>)>,
    /// The instance has not been poked yet (it may speak first).
    pub(super) fresh: bool,
    /// Protocol messages taken from each peer, and handed out for each: at a
    /// timeout they tell whom the run was waiting on (see [`Engine::straggler`]).
    pub(super) received: BTreeMap<ParticipantId, u32>,
    pub(super) sent: BTreeMap<ParticipantId, u32>,
    /// Participants that said their instance of the run waits idle
    /// ([`NodeMessage::Waiting`]): never counted behind in it.
    pub(super) waiting: BTreeSet<ParticipantId>,
    /// Participants that said their instance of the run ended without output
    /// ([`NodeMessage::Abandoned`]): never counted behind, and the run cannot
    /// finish any more.
    pub(super) abandoned: BTreeSet<ParticipantId>,
    /// When this node last sent each peer a protocol message of the run (none
    /// yet: since the run started): a peer behind is blamed only once it had
    /// time to say it waits (see `judge.rs`).
    pub(super) sent_at: BTreeMap<ParticipantId, Instant>,
    /// When this node last told the others its instance waits idle.
    pub(super) said_waiting_at: Option<Instant>,
    /// Messages taken in total when [`Engine::expire`] last saw the count change,
    /// and when that was: how long the run has been stalled.
    pub(super) progress: (u32, Instant),
}

impl<S: Scheme> Engine<S> {
    /// Sends `Start` to the other participants and runs the instance. Callers check
    /// that the run is not under way already: one instance per run, never replaced.
    pub(super) fn launch(
        &mut self,
        job: Job,
        participants: Participants,
        leader: bool,
        output: Output<S>,
    ) {
        let instance = self.instance_of(&job);
        assert!(
            !self.running.contains_key(&instance),
            "a run is launched at most once"
        );
        if leader {
            let start = NodeMessage::Start(Start {
                epoch: self.epoch,
                participants: participants.iter().collect(),
                job: job.clone(),
            })
            .encode(self.domain);
            for peer in participants.iter().filter(|p| *p != self.me) {
                self.outbox.push_back((peer, start.clone()));
            }
        }
        let started = self.clock.now();
        // A record this node owns is stored by its run's last step, on a worker,
        // before that step is back here: until then (`finish` confirms it) its
        // entry lacks this node, so storage holding it does not make it usable.
        if let Job::Triple { id } | Job::Presign { id, .. } = &job {
            if id.owner() == self.me {
                self.acks
                    .entry(*id)
                    .or_insert_with(|| (started, BTreeSet::new()));
            }
        }
        self.running.insert(
            instance,
            Running {
                job,
                participants,
                started,
                leader,
                output: Some(output),
                away: None,
                inbox: Vec::new(),
                fresh: true,
                received: BTreeMap::new(),
                sent: BTreeMap::new(),
                waiting: BTreeSet::new(),
                abandoned: BTreeSet::new(),
                sent_at: BTreeMap::new(),
                said_waiting_at: None,
                progress: (0, started),
            },
        );
        if let Some((_, early)) = self.early.remove(&instance) {
            for (from, message) in &early {
                if let Some(held) = self.early_bytes.get_mut(from) {
                    *held = held.saturating_sub(message.len());
                }
            }
            for (from, message) in early {
                self.deliver(instance, from, message);
            }
        }
        self.advance(instance);
    }

    pub(super) fn join_presign(
        &self,
        job: &Job,
        participants: &Participants,
    ) -> Result<Output<S>, EngineError> {
        let Job::Presign { id, triples } = job else {
            return Err(EngineError::Refused("not a presignature run".into()));
        };
        let key = self.key.as_ref().ok_or(EngineError::NoKey)?;
        if triples.len() != S::TRIPLES_PER_PRESIGNATURE {
            return Err(EngineError::Refused(format!(
                "a presignature takes {} triples, the run names {}",
                S::TRIPLES_PER_PRESIGNATURE,
                triples.len()
            )));
        }
        if self.store.record_ids(S::PRESIGNATURES)?.contains(id) {
            return Err(EngineError::Refused(format!(
                "presignature {id} exists already"
            )));
        }
        // Taken (and retired) before the protocol sees them, in one commit.
        let mut taken = Vec::with_capacity(triples.len());
        let records = self.store.take_records::<S::Triple>(S::TRIPLES, triples)?;
        for (triple, record) in triples.iter().zip(records) {
            match record {
                Some((epoch, record)) if epoch == self.epoch => taken.push(record),
                Some((epoch, _)) => {
                    return Err(EngineError::Refused(format!(
                        "triple {triple} belongs to epoch {epoch}"
                    )))
                }
                None => {
                    return Err(EngineError::Refused(format!(
                        "triple {triple} is not available here"
                    )))
                }
            }
        }
        Ok(Output::Presign(S::presign(
            self.instance_of(job),
            self.me,
            participants.clone(),
            key,
            taken,
        )?))
    }

    pub(super) fn handle_start(
        &mut self,
        from: ParticipantId,
        start: Start,
    ) -> Result<(), EngineError> {
        if start.epoch != self.epoch {
            return Err(EngineError::Refused(format!(
                "the run belongs to epoch {}, this node is in epoch {}",
                start.epoch, self.epoch
            )));
        }
        let participants = Participants::new(start.participants.iter().copied())?;
        if !participants.contains(self.me) || !participants.contains(from) {
            return Err(EngineError::Refused(
                "the run's participants must include us and the proposer".into(),
            ));
        }
        if !participants.is_subset_of(&self.participants) {
            return Err(EngineError::Refused(
                "the run includes non-participants".into(),
            ));
        }
        if start.job.attempt().is_some() {
            return self.join_key_start(start, participants);
        }
        let instance = self.instance_of(&start.job);
        if let Some(running) = self.running.get(&instance) {
            if running.job == start.job && running.participants == participants {
                // The same invitation again: the transport's repeat.
                return Ok(());
            }
            return Err(EngineError::Refused("this run is already under way".into()));
        }
        let rounds_after_ours = matches!(
            &start.job,
            Job::Triple { .. } | Job::Presign { .. } if S::TRIPLES_PER_PRESIGNATURE > 0
        );
        if rounds_after_ours && self.ended.finished(&instance) {
            // A run of several rounds (ECDSA stock) finished here, so the
            // proposer's last messages, which answer ours, came after this
            // invitation on its ordered stream, and a transport's repeat of the
            // invitation (a failed batch written again) would have come before
            // them. This one was sent again on purpose (a replay). A one-round
            // run (signing, FROST commitments) can finish on the invitation's
            // own batch, so its repeat is forgiven below. Nothing starts.
            self.blame(
                from,
                FailureKind::Misbehaved,
                "invited again to a run that finished here".into(),
            );
            return Ok(());
        }
        if self.ended.contains(&instance) {
            // The repeat of an invitation to a run that ended here: nothing to do.
            return Ok(());
        }
        let owned = |id: RecordId| {
            if id.owner() == from {
                Ok(())
            } else {
                Err(EngineError::Refused(format!(
                    "{id} is not owned by its proposer {}",
                    from.0
                )))
            }
        };
        let output = match &start.job {
            Job::Keygen { .. } | Job::Reshare { .. } => unreachable!("handled above"),
            Job::Triple { id } => {
                owned(*id)?;
                Output::Triple(S::generate_triple(
                    instance,
                    self.me,
                    participants.clone(),
                    self.threshold,
                )?)
            }
            Job::Presign { id, triples } => {
                owned(*id)?;
                triples.iter().try_for_each(|t| owned(*t))?;
                self.join_presign(&start.job, &participants)?
            }
            Job::Sign {
                request_id,
                presignature,
            } => {
                owned(*presignature)?;
                let request_id = RequestId(*request_id);
                if !self.requests.contains_key(&request_id) {
                    // The leader saw the request first; join once our view of the
                    // chain shows it too (or drop the invitation at the timeout).
                    if self.deferred.len() >= MAX_DEFERRED {
                        return Err(EngineError::Refused(
                            "too many invitations for requests not seen here yet".into(),
                        ));
                    }
                    self.deferred
                        .insert((request_id, from), (self.clock.now(), start.clone()));
                    self.awaiting_chain = true;
                    return Ok(());
                }
                self.join_sign(&start.job, &participants, request_id, *presignature)?
            }
        };
        self.launch(start.job, participants, false, output);
        Ok(())
    }

    /// Queues a message for the instance's next step (see [`Engine::advance`]).
    fn deliver(&mut self, instance: InstanceId, from: ParticipantId, message: Vec<u8>) {
        let Some(running) = self.running.get_mut(&instance) else {
            return;
        };
        // A cap per sender, not per run: a participant that pads a run with junk
        // while its step is away loses its own excess, never another's messages
        // (which would leave that one looking behind, and blamed, at the timeout).
        let per_sender = MAX_INBOX_PER_INSTANCE / running.participants.len().max(1);
        let queued = running.inbox.iter().filter(|(p, _)| *p == from).count();
        if queued < per_sender {
            running.inbox.push((from, message));
        }
    }

    /// How the instance took a message a step fed it.
    fn receipt(
        &mut self,
        instance: InstanceId,
        from: ParticipantId,
        taken: Result<(), threshold::Error>,
    ) {
        match taken {
            Ok(()) => {
                if let Some(running) = self.running.get_mut(&instance) {
                    *running.received.entry(from).or_default() += 1;
                }
            }
            // Late messages of a run that just ended are normal.
            Err(threshold::Error::WrongRound) => {}
            Err(e) => {
                tracing::debug!(peer = from.0, error = %e, "refused a protocol message");
                // Our header with another protocol kind, or a run it is not in:
                // nothing an honest peer sends.
                if matches!(
                    e,
                    threshold::Error::WrongInstance | threshold::Error::WrongParticipant(_)
                ) {
                    self.blame(from, FailureKind::Malformed, e.to_string());
                }
            }
        }
    }

    /// Hands the instance's next step to the step runner, unless one is away
    /// already or there is nothing to do (no new messages, and it has spoken).
    fn advance(&mut self, instance: InstanceId) {
        let Some(running) = self.running.get_mut(&instance) else {
            return;
        };
        if running.away.is_some() || (!running.fresh && running.inbox.is_empty()) {
            return;
        }
        let Some(output) = running.output.take() else {
            return;
        };
        running.fresh = false;
        let inbox = std::mem::take(&mut running.inbox);
        self.tickets += 1;
        running.away = Some(self.tickets);
        let record = match &running.job {
            Job::Triple { id } | Job::Presign { id, .. } => Some(RecordTarget {
                store: self.store.clone(),
                id: *id,
                epoch: self.epoch,
            }),
            _ => None,
        };
        let tag = StepTag {
            engine: self.serial,
            domain: self.domain,
            instance,
            ticket: self.tickets,
            kind: output.kind(),
            run_started: running.started,
        };
        self.steps.submit(StepWork::new(tag, move || {
            run_step::<S>(output, inbox, record)
        }));
    }

    /// Applies a step that came back for a run still waiting for it: what it
    /// sent, then the run's end or its next step.
    fn apply_step(&mut self, instance: InstanceId, result: StepResult<S>) {
        for (from, taken) in result.receipts {
            self.receipt(instance, from, taken);
        }
        let Some(running) = self.running.get_mut(&instance) else {
            return;
        };
        running.away = None;
        let now = self.clock.now();
        for out in result.sent {
            let bytes = NodeMessage::Protocol(out.message).encode(self.domain);
            match out.to {
                Recipient::AllOthers => {
                    let others = running.participants.iter().filter(|p| *p != self.me);
                    for peer in others {
                        *running.sent.entry(peer).or_default() += 1;
                        running.sent_at.insert(peer, now);
                        self.outbox.push_back((peer, bytes.clone()));
                    }
                }
                Recipient::One(peer) => {
                    *running.sent.entry(peer).or_default() += 1;
                    running.sent_at.insert(peer, now);
                    self.outbox.push_back((peer, bytes));
                }
            }
        }
        match result.end {
            StepEnd::Wait(output) => {
                running.output = Some(output);
                // Messages that came while the step was away.
                self.advance(instance);
            }
            StepEnd::Done(done) => {
                let running = self.running.remove(&instance).expect("present above");
                for peer in running.participants.iter().filter(|p| *p != self.me) {
                    self.reports.push(PeerReport::Success { peer });
                }
                self.finish(running, done);
            }
            StepEnd::Failed(e) => {
                let running = self.running.remove(&instance).expect("present above");
                if let Some(culprit) = self.culprit_of(&running, &e) {
                    self.blame(culprit, FailureKind::Misbehaved, e.to_string());
                }
                self.abandon(running, e.to_string());
            }
        }
    }

    /// Ends a run here without output: tells its other participants (but those
    /// that abandoned it first) that this node sends nothing more there, so none
    /// of them takes it for a straggler, then reports the failure.
    pub(super) fn abandon(&mut self, running: Running<S>, reason: String) {
        self.remember_ended(&running.job, false);
        let notice = NodeMessage::Abandoned {
            job: running.job.clone(),
            reason: reason.clone(),
        };
        let told: Vec<ParticipantId> = running
            .participants
            .iter()
            .filter(|p| *p != self.me && !running.abandoned.contains(p))
            .collect();
        for peer in told {
            self.send(peer, &notice);
        }
        self.failed(running.job, reason);
    }

    /// Declines `job` to its proposer (key tasks excepted: those are proposed by
    /// everyone, and a refusal there is settled by attempts).
    pub(super) fn decline(&mut self, proposer: ParticipantId, job: Job, reason: String) {
        if job.attempt().is_none() {
            self.send(proposer, &NodeMessage::Decline { job, reason });
        }
    }

    /// Who a failed check of `running` is to blame on, if anyone can tell: the
    /// culprit a check names, or, in a run with one other participant, that
    /// participant (nobody else's data was in it). With more, a cait-sith check
    /// names whose message did not verify, but a liar can make an honest
    /// participant's message fail another's check (a confirmation hash over what
    /// the liar told each differently), so such an abort blames nobody.
    fn culprit_of(&self, running: &Running<S>, e: &threshold::Error) -> Option<ParticipantId> {
        let culprit = match e {
            threshold::Error::Misbehaved { culprit, .. } => *culprit,
            _ => {
                let mut others = running.participants.iter().filter(|p| *p != self.me);
                match (others.next(), others.next()) {
                    (Some(alone), None) => alone,
                    _ => return None,
                }
            }
        };
        (culprit != self.me && running.participants.contains(culprit)).then_some(culprit)
    }

    /// Notes that the run of `job` ended here (see [`EndedRuns`]).
    fn remember_ended(&mut self, job: &Job, finished: bool) {
        if job.attempt().is_none() {
            let instance = self.instance_of(job);
            self.ended.remember(instance, finished);
        }
    }

    pub(super) fn finish(&mut self, running: Running<S>, done: Done<S>) {
        self.remember_ended(&running.job, true);
        let job = running.job;
        let event = match (&job, done) {
            (Job::Keygen { .. } | Job::Reshare { .. }, Done::Key(_))
                if self.key_done || self.key_job().as_ref() != Some(&job) =>
            {
                Event::Failed {
                    job,
                    reason: "output of a key task run that is no longer current: discarded".into(),
                }
            }
            (
                Job::Keygen { epoch, attempt, .. } | Job::Reshare { epoch, attempt, .. },
                Done::Key(share),
            ) => match self
                .store
                .put_key_share(self.domain, *epoch, *attempt, share.as_ref())
            {
                Ok(()) => {
                    let event = Event::KeyShareStored {
                        domain: self.domain,
                        epoch: *epoch,
                        attempt: *attempt,
                        public_key: S::public_key_text(&share),
                    };
                    self.key = Some(*share);
                    self.key_done = true;
                    event
                }
                Err(e) => {
                    // Through `failed`, like any failed key run: not run again
                    // in this attempt.
                    self.failed(job, e.to_string());
                    return;
                }
            },
            // Stored by the run's last step, on its worker.
            (Job::Triple { id }, Done::Stored(Ok(()))) => {
                let id = *id;
                self.confirm_stored(id, NodeMessage::StoredTriple(id));
                Event::TripleStored(id)
            }
            (Job::Presign { id, .. }, Done::Stored(Ok(()))) => {
                let id = *id;
                self.confirm_stored(id, NodeMessage::StoredPresignature(id));
                Event::PresignatureStored(id)
            }
            (_, Done::Stored(Err(e))) => Event::Failed {
                job,
                reason: e.to_string(),
            },
            (Job::Sign { request_id, .. }, Done::Sign(signature)) => Event::Signed {
                request_id: RequestId(*request_id),
                response: S::response(signature),
                leader: running.leader,
            },
            _ => Event::Failed {
                job,
                reason: "output of the wrong kind".into(),
            },
        };
        self.events.push_back(event);
    }

    pub(super) fn handle_message(
        &mut self,
        from: ParticipantId,
        message: NodeMessage,
    ) -> Result<(), EngineError> {
        match message {
            NodeMessage::Start(start) => {
                let job = start.job.clone();
                let result = self.handle_start(from, start);
                if let Err(EngineError::Refused(reason)) = &result {
                    self.decline(from, job, reason.clone());
                }
                result
            }
            // The daemon's own: never handed to an engine.
            NodeMessage::Ping
            | NodeMessage::Leading(_)
            | NodeMessage::Passing(_)
            | NodeMessage::Answer { .. } => Ok(()),
            NodeMessage::Decline { job, reason } => {
                let instance = self.instance_of(&job);
                let ours = self
                    .running
                    .get(&instance)
                    .is_some_and(|r| r.leader && r.participants.contains(from));
                if ours {
                    let mut running = self.running.remove(&instance).expect("checked above");
                    let reason = peer_text(&reason);
                    self.blame(from, FailureKind::Decline, reason.clone());
                    // It never joined: nothing to tell it.
                    running.abandoned.insert(from);
                    self.abandon(
                        running,
                        format!("participant {} declined: {reason}", from.0),
                    );
                }
                Ok(())
            }
            NodeMessage::Waiting(job) => {
                self.took_notice(from, job, None);
                Ok(())
            }
            NodeMessage::Abandoned { job, reason } => {
                self.took_notice(from, job, Some(&reason));
                Ok(())
            }
            NodeMessage::RetireTriple(id) if id.owner() == from => {
                self.store.retire_record(S::TRIPLES, id)?;
                Ok(())
            }
            NodeMessage::RetirePresignature(id) if id.owner() == from => {
                self.store.retire_record(S::PRESIGNATURES, id)?;
                Ok(())
            }
            NodeMessage::RetireTriple(id) | NodeMessage::RetirePresignature(id) => {
                Err(EngineError::Refused(format!("only the owner retires {id}")))
            }
            NodeMessage::StoredTriple(id) | NodeMessage::StoredPresignature(id) => {
                // Only for a run of ours (its entry is made at launch): a peer's
                // confirmations of ids it made up take no room here.
                if let Some((_, acked)) = self.acks.get_mut(&id) {
                    acked.insert(from);
                }
                Ok(())
            }
            NodeMessage::Protocol(message) => {
                let header = match threshold::wire::Header::decode(&message) {
                    Ok((header, _)) => header,
                    Err(e) => {
                        self.blame(from, FailureKind::Malformed, e.to_string());
                        return Err(e.into());
                    }
                };
                self.heard.insert(from, self.clock.now());
                if self.running.contains_key(&header.instance) {
                    self.deliver(header.instance, from, message);
                    self.advance(header.instance);
                } else if !self.ended.contains(&header.instance) {
                    self.buffer_early(header.instance, from, message);
                }
                Ok(())
            }
        }
    }

    pub(super) fn step_done(&mut self, done: StepDone) -> bool {
        let tag = done.tag;
        let waiting = tag.engine == self.serial
            && self
                .running
                .get(&tag.instance)
                .is_some_and(|r| r.away == Some(tag.ticket));
        if !waiting {
            // The run ended while its step was away (abandoned, expired, declined,
            // voided by a new key task): its output is void.
            done.discard();
            return false;
        }
        let output = match done.output {
            Ok(output) => output,
            Err(why) => {
                let running = self.running.remove(&tag.instance).expect("checked above");
                self.abandon(running, why);
                return true;
            }
        };
        match output.result.downcast::<StepResult<S>>() {
            Ok(result) => self.apply_step(tag.instance, *result),
            Err(_) => {
                // Only this engine makes steps with its serial: a bug, not input.
                let running = self.running.remove(&tag.instance).expect("checked above");
                self.abandon(
                    running,
                    "a step came back with another scheme's result".into(),
                );
            }
        }
        true
    }
}
