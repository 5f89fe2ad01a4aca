//! Judging runs that went quiet: when each run last took a message, which single
//! participant a stalled run waits on, and ending runs that timed out, stalled
//! on one straggler (blamed), or lost a peer.
//!
//! The invariant both rules keep: blame goes only to a peer this node can prove
//! behind from its own counts (it sent the peer more than the peer answered), and
//! only when it is the one such peer; anything else ends without blame.
//!
//! Counts alone can be gamed: a liar sends one honest participant junk under the
//! run's header (which its instance takes, then ignores or fails on), or its true
//! messages late, and the proposer the true messages on time. The honest one
//! waits, or aborts, and so answers the proposer's later rounds no more: it
//! looks behind, the liar does not. So:
//! - a participant whose instance has nothing away on a worker, nothing queued,
//!   and has sent nothing for half the stall limit says it waits
//!   ([`NodeMessage::Waiting`]), and again every half stall limit while that
//!   lasts (a notice that came before the run existed there is not lost for
//!   good); junk it took does not make it busy;
//! - one whose instance ended without output says that
//!   ([`NodeMessage::Abandoned`]);
//! - neither is counted behind in that run after;
//! - and a peer is blamed only if this node's last message to it is at least
//!   [`NOTICE_MARGIN`] of the stall limit old: time for an honest peer stuck
//!   since then to say it waits, however the liar timed its own messages.
//!
//! An honest node's notice is true: idle means nothing is left for it to do. A
//! liar's notice only spares the liar, which padding its count spares anyway.
//! The notices sharpen blame too: a silent peer that withheld from one
//! participant alone used to leave two peers behind; the one it starved now says
//! it waits, and the silent one is the sole straggler. What they give up: an
//! honest node whose messages of a run sit in its own backlog says it waits, and
//! is not blamed for being slow.

use super::message::{peer_text, NodeMessage, Start};
use super::{Engine, Job, Running, Scheme};
use crate::blame::FailureKind;
use primitives::RequestId;
use std::time::Instant;
use threshold::{InstanceId, ParticipantId};

/// A run that took no message for this share of the protocol timeout, waiting on
/// one peer that sent nothing at all for as long, is ended early and that peer
/// blamed (see [`Engine::expire`]): keeping it would hold a generation slot until
/// the timeout. A quarter (7.5 s of the tests' 30 s, 15 s of the default 60 s)
/// leaves a wide margin for an honest peer behind a queue of stock traffic.
pub(super) const STALL_FRACTION: u32 = 4;

/// How old, in quarters of the stall limit, this node's last message to a peer
/// must be before that peer may be blamed: an honest peer stuck since says it
/// waits after two quarters, and its word has the third to arrive.
const NOTICE_MARGIN: u32 = 3;

/// Who proposed a stock or signing run (its record ids carry their owner);
/// `None` for key runs, which every participant proposes.
fn proposer(job: &Job) -> Option<ParticipantId> {
    match job {
        Job::Triple { id } | Job::Presign { id, .. } => Some(id.owner()),
        Job::Sign { presignature, .. } => Some(presignature.owner()),
        Job::Keygen { .. } | Job::Reshare { .. } => None,
    }
}

impl<S: Scheme> Engine<S> {
    /// Notes when each run last took a message. Messages waiting for the next
    /// step came too; and a run whose step is away on a worker is this node's to
    /// finish, not a peer's stall.
    pub(super) fn note_progress(&mut self, now: Instant) {
        for running in self.running.values_mut() {
            let total = running.received.values().sum::<u32>() + running.inbox.len() as u32;
            if total != running.progress.0 || running.away.is_some() {
                running.progress = (total, now);
            }
        }
    }

    /// The one participant a stalled run was waiting on, if exactly one is behind.
    ///
    /// The runs blamed this way (triples, presignatures, signatures, keygen) are
    /// rounds in which every participant sends to every other: a peer is behind if
    /// it sent us fewer messages than we sent it. Its count is never compared with
    /// another peer's: a byzantine peer can pad its own count with well-formed
    /// junk (wrong rounds, replays, messages of other runs) to make an honest peer
    /// look behind, but it cannot make us send that peer more than it answered.
    /// Blame goes to a single straggler only: an honest peer stuck waiting on a
    /// silent one is behind too in some schedules (the silent one withheld from it
    /// alone), and then we cannot tell them apart, so nobody is blamed.
    pub(super) fn straggler(&self, running: &Running<S>) -> Option<ParticipantId> {
        // Messages still queued for a step count as received: they came.
        let got = |p: &ParticipantId| {
            let queued = running.inbox.iter().filter(|(from, _)| from == p).count();
            running.received.get(p).copied().unwrap_or(0) + queued as u32
        };
        let sent = |p: &ParticipantId| running.sent.get(p).copied().unwrap_or(0);
        let behind: Vec<ParticipantId> = running
            .participants
            .iter()
            .filter(|p| *p != self.me)
            .filter(|p| !running.waiting.contains(p) && !running.abandoned.contains(p))
            .filter(|p| got(p) < sent(p))
            .collect();
        match behind[..] {
            [one] => Some(one),
            _ => None,
        }
    }

    pub(super) fn expire(&mut self, now: Instant) {
        let timeout = self.timeout;
        let stall_limit = timeout / STALL_FRACTION;
        self.note_progress(now);
        let mut ended: Vec<(InstanceId, bool)> = Vec::new();
        for (id, running) in self.running.iter() {
            let stalled = now.duration_since(running.progress.1) >= stall_limit;
            if now.duration_since(running.started) > timeout {
                ended.push((*id, false));
            } else if stalled {
                ended.push((*id, true));
            }
        }
        for (id, early) in ended {
            // Only runs where every participant sends to every other in each round
            // are judged: stock, signing and keygen. Resharing is not symmetric
            // (newcomers deal nothing), and the contract's attempts settle it.
            let judged = !matches!(self.running[&id].job, Job::Reshare { .. });
            let running = &self.running[&id];
            // A participant that joined on an invitation blames only the proposer:
            // a byzantine proposer may have invited it alone (say, replaying an old
            // invitation with its old messages), leaving a third participant that
            // never heard of the run to look behind. The proposer itself invited
            // everyone, and every participant proposes a key run itself.
            let answer_time = stall_limit / STALL_FRACTION * NOTICE_MARGIN;
            let straggler = self.straggler(running).filter(|peer| {
                let last_sent = running.sent_at.get(peer).unwrap_or(&running.started);
                judged
                    && (running.leader || proposer(&running.job).is_none_or(|p| p == *peer))
                    && now.saturating_duration_since(*last_sent) >= answer_time
            });
            // A participant gave up on it, and nobody else is behind: waiting
            // longer changes nothing (see the module docs).
            let given_up = early && straggler.is_none() && !running.abandoned.is_empty();
            if early && !given_up {
                // Ended early only with one peer to blame: for a stock or signing
                // run, a peer that sent this engine no protocol message at all for
                // as long (a live peer that stopped talking; an honest one behind
                // a long queue still answers in other runs); for keygen, whose
                // traffic never queues, the run's own stall is enough. Anything
                // else waits for the timeout: a key run's attempt is the
                // contract's to end, and a slow honest run may still finish.
                let key_run = self.running[&id].job.attempt().is_some();
                let quiet = |peer: ParticipantId| {
                    self.heard
                        .get(&peer)
                        .is_none_or(|at| now.duration_since(*at) >= stall_limit)
                };
                if !straggler.is_some_and(|peer| key_run || quiet(peer)) {
                    continue;
                }
            }
            let running = self.running.remove(&id).expect("listed above");
            let waited = if early { "stalled" } else { "timed out" };
            match straggler {
                Some(peer) => {
                    self.blame(
                        peer,
                        FailureKind::Timeout,
                        format!("a run {waited} waiting on it"),
                    );
                    self.abandon(
                        running,
                        format!("{waited} waiting on participant {}", peer.0),
                    );
                }
                None if given_up => {
                    let by = running.abandoned.iter().map(|p| p.0).collect::<Vec<_>>();
                    self.abandon(running, format!("stalled, abandoned by {by:?}"));
                }
                None => self.abandon(running, waited.into()),
            }
        }
        // After the judging: a run ended above says `Abandoned` instead.
        self.say_waiting(now, stall_limit / 2);
        let early_before = self.early.len();
        self.early
            .retain(|_, (since, _)| now.duration_since(*since) <= timeout);
        if self.early.len() != early_before {
            self.recount_early();
        }
        self.deferred
            .retain(|_, (since, _)| now.duration_since(*since) <= timeout);
        // Confirmations of records long since used or retired.
        self.acks
            .retain(|_, (since, _)| now.duration_since(*since) <= timeout * 4);
    }

    /// Tells the other participants of every run idle here for `idle` (nothing
    /// away, nothing queued, nothing sent) that this node waits on them; again
    /// every `idle` while it stays so.
    fn say_waiting(&mut self, now: Instant, idle: std::time::Duration) {
        let mut notices = Vec::new();
        for running in self.running.values_mut() {
            let last_sent = running.sent_at.values().max().unwrap_or(&running.started);
            let quiet = running.away.is_none()
                && running.inbox.is_empty()
                && now.saturating_duration_since(*last_sent) >= idle;
            let due = running
                .said_waiting_at
                .is_none_or(|at| now.saturating_duration_since(at) >= idle);
            if quiet && due {
                running.said_waiting_at = Some(now);
                let others = running
                    .participants
                    .iter()
                    .filter(|p| *p != self.me && !running.abandoned.contains(p));
                let notice = NodeMessage::Waiting(running.job.clone());
                notices.extend(others.map(|p| (p, notice.clone())));
            }
        }
        for (peer, notice) in notices {
            self.send(peer, &notice);
        }
    }

    /// A participant's word that its instance of `job` waits idle (`ended`
    /// `None`) or ended without output (`Some(reason)`).
    pub(super) fn took_notice(&mut self, from: ParticipantId, job: Job, ended: Option<&str>) {
        let instance = self.instance_of(&job);
        if let Some(running) = self.running.get_mut(&instance) {
            if from != self.me && running.participants.contains(from) {
                match ended {
                    Some(reason) => {
                        tracing::debug!(
                            peer = from.0,
                            ?job,
                            reason = %peer_text(reason),
                            "a participant abandoned a run"
                        );
                        running.abandoned.insert(from);
                    }
                    None => {
                        running.waiting.insert(from);
                    }
                }
            }
            return;
        }
        if ended.is_none() {
            return;
        }
        // An invitation to sign still waiting for its request to show on chain
        // here: its proposer gave up on it.
        if let Job::Sign { request_id, .. } = &job {
            let key = (RequestId(*request_id), from);
            if self
                .deferred
                .get(&key)
                .is_some_and(|(_, start)| start.job == job)
            {
                self.deferred.remove(&key);
            }
        }
    }

    /// This node's `message` to `to` was refused: the outbound queue to `to` is
    /// full, so `to` never gets it, and the run it belongs to would wait on `to`
    /// until the stall rule. That run ends here now instead, and says so to its
    /// other participants. Nobody is blamed: a queue can fill behind a slow link
    /// as well as a peer that does not read, and this node cannot tell which
    /// (see the invariant above). Returns whether a run ended. Key-task runs are
    /// settled by the contract's attempts instead.
    pub(super) fn unsent(&mut self, to: ParticipantId, message: &NodeMessage) -> bool {
        let instance = match message {
            NodeMessage::Start(Start { job, .. }) | NodeMessage::Waiting(job) => {
                self.instance_of(job)
            }
            NodeMessage::Protocol(bytes) => match threshold::wire::Header::decode(bytes) {
                Ok((header, _)) => header.instance,
                Err(_) => return false,
            },
            _ => return false,
        };
        let ends = self
            .running
            .get(&instance)
            .is_some_and(|r| r.job.attempt().is_none() && r.participants.contains(to));
        if !ends {
            return false;
        }
        let mut running = self.running.remove(&instance).expect("present above");
        // Its notice would be refused like the message was.
        running.abandoned.insert(to);
        self.abandon(
            running,
            format!(
                "a message to participant {} was refused: the queue to it is full",
                to.0
            ),
        );
        true
    }

    /// Waiting for gone peers would only end at the timeout; the runs' inputs stay
    /// consumed. Key-task runs are settled by the contract's attempts instead.
    pub(super) fn abandon_runs_with(&mut self, gone: &[ParticipantId]) {
        let doomed: Vec<InstanceId> = self
            .running
            .iter()
            .filter(|(_, r)| r.job.attempt().is_none())
            .filter(|(_, r)| gone.iter().any(|p| r.participants.contains(*p)))
            .map(|(id, _)| *id)
            .collect();
        for id in doomed {
            let mut running = self.running.remove(&id).expect("listed above");
            // The gone ones cannot hear it; a participant that still reaches them
            // (a partition) must not take this node for the straggler.
            running.abandoned.extend(gone.iter().copied());
            self.abandon(
                running,
                "a participant of the run became unreachable".into(),
            );
        }
    }
}
