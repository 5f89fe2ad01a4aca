//! The pending requests as this node tracks them: handed to the signing engines,
//! refreshed when the chain's copy changes, forgotten once answered.

use super::leader::leader_order;
use super::writes::Answer;
use super::Node;
use crate::blame::FailureKind;
use crate::engine::{Event, Job, NodeMessage};
use primitives::{DomainId, PendingRequest, RequestId, SignatureResponse};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use threshold::{ParticipantId, Participants};

/// A request as the loop tracks it.
pub(super) struct Tracked {
    pub(super) domain: DomainId,
    pub(super) first_seen: Instant,
    /// The chain entropy the engine signs this request with (a request made again
    /// under the same id after a gap gets new entropy, and signers must agree).
    entropy: [u8; 32],
    /// When this node last started leading it.
    pub(super) led_at: Option<Instant>,
    /// When this node passed it on (`leader`): it had no usable presignature
    /// when its turn came.
    pub(super) passed_at: Option<Instant>,
    /// The running set in [`leader_order`](super::leader::leader_order), once
    /// computed (a hash per participant; `lead` runs many times a second).
    pub(super) leader_order: Option<Vec<ParticipantId>>,
    /// The signature this node computed for it, until `respond` lands.
    pub(super) answer: Option<Answer>,
}

impl Tracked {
    /// The running set `all` in the request's [`leader_order`], computed once.
    pub(super) fn leader_order(
        &mut self,
        request_id: &RequestId,
        all: &Participants,
    ) -> &[ParticipantId] {
        self.leader_order
            .get_or_insert_with(|| leader_order(request_id, all))
    }
}

/// How long a request that vanished from the chain's pending list is remembered
/// (its answer, whether this node led it), in case it shows up again: an RPC
/// that lags, or that reads every page of the list at its newest state (the
/// devnet does) while requests complete, can leave one out of a reading.
/// Forgotten at once, it came back as new and was signed again, a presignature
/// burnt on an answer the contract then refused (3 of 125 requests in one burst
/// at (3,2)).
const VANISHED_KEPT: Duration = Duration::from_secs(10);

/// Vanished requests remembered at most.
const MAX_VANISHED: usize = 4096;

/// How long a node holding an answer another node led waits before sending it
/// itself, in grace periods (plus one per place it ranks in the request's leader
/// order). A leader's `respond` lands within a block or two, so a backup goes
/// out only when the leader went down after signing or cannot reach the chain,
/// and backups of different ranks do not all go at once.
const BACKUP_AFTER_GRACES: u32 = 2;

/// How long a peer's answer to a request this node has not seen on the chain is
/// kept: a node reads the chain a poll or two behind another, or longer while
/// its RPC is slow or unreachable.
const EARLY_ANSWER_KEPT: Duration = Duration::from_secs(30);

/// Early answers kept per peer: an honest leader shares at most its own
/// signatures of the last poll or two; a liar's made-up request ids push out
/// only its own.
const MAX_EARLY_ANSWERS_PER_PEER: usize = 256;

/// Answers peers shared for requests this node had not seen on the chain yet,
/// by request and sender, each with when it came. A request that shows up takes
/// them ([`Node::track_requests`]), checked then as any shared answer.
#[derive(Default)]
pub(super) struct EarlyAnswers {
    answers: BTreeMap<(RequestId, ParticipantId), (DomainId, SignatureResponse, Instant)>,
    per_peer: BTreeMap<ParticipantId, usize>,
}

impl EarlyAnswers {
    /// Keeps `from`'s answer to `request_id` unless `from` has its fill kept.
    fn keep(
        &mut self,
        from: ParticipantId,
        domain: DomainId,
        request_id: RequestId,
        response: SignatureResponse,
        now: Instant,
    ) -> bool {
        let kept = self.per_peer.entry(from).or_default();
        if *kept >= MAX_EARLY_ANSWERS_PER_PEER || self.answers.contains_key(&(request_id, from)) {
            return false;
        }
        *kept += 1;
        self.answers
            .insert((request_id, from), (domain, response, now));
        true
    }

    /// The answers kept for `request_id`, taken out.
    fn take(
        &mut self,
        request_id: &RequestId,
    ) -> Vec<(ParticipantId, DomainId, SignatureResponse)> {
        let senders: Vec<ParticipantId> = self
            .answers
            .range((*request_id, ParticipantId(0))..=(*request_id, ParticipantId(u32::MAX)))
            .map(|((_, from), _)| *from)
            .collect();
        senders
            .into_iter()
            .filter_map(|from| {
                let (domain, response, _) = self.answers.remove(&(*request_id, from))?;
                self.forget_one_of(from);
                Some((from, domain, response))
            })
            .collect()
    }

    /// Drops the answers kept longer than [`EARLY_ANSWER_KEPT`].
    fn expire(&mut self, now: Instant) {
        let old: Vec<(RequestId, ParticipantId)> = self
            .answers
            .iter()
            .filter(|(_, (_, _, at))| now.duration_since(*at) >= EARLY_ANSWER_KEPT)
            .map(|(key, _)| *key)
            .collect();
        for key in old {
            self.answers.remove(&key);
            self.forget_one_of(key.1);
        }
    }

    fn forget_one_of(&mut self, from: ParticipantId) {
        if let Some(kept) = self.per_peer.get_mut(&from) {
            *kept = kept.saturating_sub(1);
            if *kept == 0 {
                self.per_peer.remove(&from);
            }
        }
    }
}

/// A request as tracked, also if it is missing from the last reading of the
/// chain (what happens to it meanwhile is kept, in case it is back at the next).
pub(super) fn tracked_mut<'a>(
    requests: &'a mut BTreeMap<RequestId, Tracked>,
    vanished: &'a mut BTreeMap<RequestId, (Instant, Tracked)>,
    id: &RequestId,
) -> Option<&'a mut Tracked> {
    match requests.get_mut(id) {
        Some(tracked) => Some(tracked),
        None => vanished.get_mut(id).map(|(_, tracked)| tracked),
    }
}

impl Node {
    /// Tells the signing engines which requests are pending and forgets answered
    /// ones (after [`VANISHED_KEPT`]: see there). The node derives each
    /// request's tweak itself from the predecessor and path, and checks the
    /// request id against the fields, trusting no RPC with it.
    pub(super) fn track_requests(&mut self, pending: &[PendingRequest]) {
        let now = Instant::now();
        let current: BTreeSet<RequestId> = pending.iter().map(|r| r.request_id).collect();
        let gone: Vec<RequestId> = self
            .requests
            .keys()
            .filter(|id| !current.contains(id))
            .copied()
            .collect();
        self.vanished
            .retain(|_, (at, _)| now.duration_since(*at) < VANISHED_KEPT);
        self.early_answers.expire(now);
        for id in gone {
            let Some(tracked) = self.requests.remove(&id) else {
                continue;
            };
            if let Some(signer) = self.signers.get_mut(&tracked.domain) {
                signer.engine.remove_request(&id);
            }
            if self.vanished.len() < MAX_VANISHED {
                self.vanished.insert(id, (now, tracked));
            }
        }
        self.forget_heard_of(now);
        for request in pending {
            let Some(signer) = self.signers.get_mut(&request.domain_id) else {
                continue;
            };
            if let Some(tracked) = self.requests.get_mut(&request.request_id) {
                if tracked.entropy == request.entropy.0 {
                    continue;
                }
                // Made again under the same id while this node looked away: sign it
                // as the chain now shows it, as the other signers will.
                tracing::info!(request = %request.request_id, "request made again with new entropy");
                tracked.entropy = request.entropy.0;
            }
            if !request.id_matches() {
                tracing::warn!(request = %request.request_id, "a pending request whose id does not match its fields; ignored");
                continue;
            }
            if let Err(why) = signer.engine.add_request(request) {
                tracing::warn!(request = %request.request_id, %why, "a pending request this node cannot sign; ignored");
                continue;
            }
            if self.requests.contains_key(&request.request_id) {
                continue; // a refreshed request keeps its place and any answer
            }
            if let Some((_, tracked)) = self.vanished.remove(&request.request_id) {
                if tracked.entropy == request.entropy.0 {
                    tracing::debug!(request = %request.request_id, "a request missing from one reading of the chain is back");
                    self.requests.insert(request.request_id, tracked);
                    continue;
                }
            }
            self.config.metrics.requests_seen.inc();
            tracing::debug!(request = %request.request_id, domain = request.domain_id.0, "new request");
            self.requests.insert(
                request.request_id,
                Tracked {
                    domain: request.domain_id,
                    first_seen: now,
                    entropy: request.entropy.0,
                    led_at: None,
                    passed_at: None,
                    leader_order: None,
                    answer: None,
                },
            );
            for (from, domain, response) in self.early_answers.take(&request.request_id) {
                self.take_shared_answer(from, domain, request.request_id, response);
            }
        }
    }

    /// What the signing engines report: a signature this node led becomes the
    /// request's answer (delivered by `deliver_answers`), stock made is counted,
    /// and a failed lead of ours may be retried at once. A run that ended frees a
    /// generation slot and may have made a presignature to lead with: the node
    /// acts this turn.
    pub(super) fn on_signer_events(&mut self) {
        let metrics = &self.config.metrics;
        let mut cosigned = Vec::new();
        for signer in self.signers.values_mut() {
            let me = signer.engine.me();
            for event in signer.engine.drain_events() {
                match event {
                    Event::Signed {
                        request_id,
                        response,
                        leader: true,
                    } => {
                        let Some(tracked) =
                            tracked_mut(&mut self.requests, &mut self.vanished, &request_id)
                        else {
                            continue; // answered meanwhile
                        };
                        tracing::debug!(request = %request_id, since_seen_ms = tracked.first_seen.elapsed().as_millis() as u64, "signed; responding");
                        let word = NodeMessage::Answer {
                            request_id: request_id.0,
                            response: response.clone(),
                        };
                        self.announce.push((tracked.domain, word));
                        let now = Instant::now();
                        match tracked.answer.as_mut() {
                            None => tracked.answer = Some(Answer::due_at(response, now)),
                            // A peer's answer came first: either lands, and as a
                            // leader this node sends now, not as a backup.
                            Some(held) => held.next_send = held.next_send.min(now),
                        }
                    }
                    Event::Signed {
                        request_id,
                        response,
                        leader: false,
                    } => cosigned.push((request_id, response)),
                    Event::KeyShareStored { .. } => {}
                    Event::TripleStored(_) => {
                        metrics.triples_generated.inc();
                        self.act_soon = true;
                    }
                    Event::PresignatureStored(_) => {
                        metrics.presignatures_generated.inc();
                        self.act_soon = true;
                    }
                    Event::Failed { job, reason } => {
                        metrics.protocol_failures.inc();
                        self.act_soon = true;
                        tracing::info!(?job, %reason, "a protocol run ended without output");
                        if let Job::Sign {
                            request_id,
                            presignature,
                        } = job
                        {
                            // Our own failed lead may be retried at once (with another
                            // presignature; this one is spent).
                            if presignature.owner() == me {
                                let id = RequestId(request_id);
                                if let Some(tracked) =
                                    tracked_mut(&mut self.requests, &mut self.vanished, &id)
                                {
                                    tracked.led_at = None;
                                }
                            }
                        }
                    }
                }
            }
        }
        let now = Instant::now();
        for (request_id, response) in cosigned {
            // The protocol checked it: the signers' outputs agree.
            self.hold_answer(request_id, response, now);
        }
    }

    /// A peer's answer to a request ([`NodeMessage::Answer`]): checked against
    /// the request as this node read it on the chain, then held. One that does
    /// not verify was made up by its sender (the transport authenticated it),
    /// which is blamed. One for a request this node has not seen (the peer reads
    /// the chain ahead of it) is kept until it does ([`EarlyAnswers`]).
    pub(super) fn take_shared_answer(
        &mut self,
        from: ParticipantId,
        domain: DomainId,
        request_id: RequestId,
        response: SignatureResponse,
    ) {
        let now = Instant::now();
        let Some(tracked) = tracked_mut(&mut self.requests, &mut self.vanished, &request_id) else {
            if self.signers.contains_key(&domain)
                && self
                    .early_answers
                    .keep(from, domain, request_id, response, now)
            {
                tracing::debug!(request = %request_id, peer = from.0, "keeping a peer's answer to a request not seen yet");
            }
            return;
        };
        let held = tracked.answer.is_some();
        let Some(signer) = self.signers.get(&domain).filter(|_| !held) else {
            return;
        };
        match signer.engine.check_answer(&request_id, &response) {
            Some(Ok(())) => {
                tracing::debug!(request = %request_id, peer = from.0, "holding a peer's answer");
                self.hold_answer(request_id, response, now);
            }
            Some(Err(why)) => {
                tracing::info!(request = %request_id, peer = from.0, %why, "a peer's answer does not verify");
                self.peer_failed(from, FailureKind::Misbehaved, &why, now);
            }
            None => {}
        }
    }

    /// Holds `response` as the answer to `request_id`, which another node led,
    /// unless an answer is held already. Holding it, this node leads the request
    /// no more (a signature of its own would burn a presignature on an answer
    /// the contract refuses), and sends it as a backup only if the request is
    /// still pending [`BACKUP_AFTER_GRACES`] grace periods later, plus one per
    /// place this node ranks in the request's leader order.
    fn hold_answer(&mut self, request_id: RequestId, response: SignatureResponse, now: Instant) {
        let Some(tracked) = tracked_mut(&mut self.requests, &mut self.vanished, &request_id) else {
            return;
        };
        if tracked.answer.is_some() {
            return;
        }
        let rank = match (self.me, self.running_set.as_ref()) {
            (Some(me), Some(all)) => tracked
                .leader_order(&request_id, all)
                .iter()
                .position(|p| *p == me)
                .unwrap_or(0),
            _ => 0,
        };
        let wait = self.config.leader_grace * (BACKUP_AFTER_GRACES + rank as u32);
        tracked.answer = Some(Answer::due_at(response, now + wait));
        self.config.metrics.answers_held.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use primitives::Ed25519Signature;

    fn answer(byte: u8) -> SignatureResponse {
        SignatureResponse::Ed25519 {
            signature: Ed25519Signature([byte; 64]),
        }
    }

    #[test]
    fn early_answers_are_taken_once_capped_per_peer_and_expire() {
        let (a, b) = (ParticipantId(1), ParticipantId(2));
        let d = DomainId(1);
        let (r1, r2) = (RequestId([1; 32]), RequestId([2; 32]));
        let now = Instant::now();
        let mut early = EarlyAnswers::default();
        assert!(early.keep(a, d, r1, answer(1), now));
        assert!(
            !early.keep(a, d, r1, answer(9), now),
            "one per request and peer"
        );
        assert!(early.keep(b, d, r1, answer(2), now));
        assert!(early.keep(a, d, r2, answer(3), now));

        let taken = early.take(&r1);
        assert_eq!(taken, vec![(a, d, answer(1)), (b, d, answer(2))]);
        assert!(early.take(&r1).is_empty(), "taken once");

        // A peer's fill: its further answers are not kept, another peer's are.
        let id = |k: usize| {
            let mut bytes = [7u8; 32];
            bytes[..8].copy_from_slice(&(k as u64).to_le_bytes());
            RequestId(bytes)
        };
        let fill = (0..MAX_EARLY_ANSWERS_PER_PEER * 2)
            .filter(|k| early.keep(a, d, id(*k), answer(4), now))
            .count();
        assert_eq!(fill, MAX_EARLY_ANSWERS_PER_PEER - 1, "r2 is still kept");
        assert!(early.keep(b, d, id(0), answer(5), now));

        // Kept answers expire; the peer may then share new ones.
        early.expire(now + EARLY_ANSWER_KEPT);
        assert!(early.take(&r2).is_empty() && early.take(&id(0)).is_empty());
        assert!(early.per_peer.is_empty());
        assert!(early.keep(a, d, r2, answer(6), now + EARLY_ANSWER_KEPT));
    }
}
