//! The pending requests as this node tracks them: handed to the signing engines,
//! refreshed when the chain's copy changes, forgotten once answered.

use super::writes::Answer;
use super::Node;
use crate::engine::{Event, Job};
use primitives::{DomainId, PendingRequest, RequestId};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use threshold::ParticipantId;

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
        }
    }

    /// What the signing engines report: a signature this node led becomes the
    /// request's answer (delivered by `deliver_answers`), stock made is counted,
    /// and a failed lead of ours may be retried at once. A run that ended frees a
    /// generation slot and may have made a presignature to lead with: the node
    /// acts this turn.
    pub(super) fn on_signer_events(&mut self) {
        let metrics = &self.config.metrics;
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
                        if tracked.answer.is_none() {
                            tracing::debug!(request = %request_id, since_seen_ms = tracked.first_seen.elapsed().as_millis() as u64, "signed; responding");
                            tracked.answer = Some(Answer {
                                response,
                                sends: 0,
                                next_send: Instant::now(),
                                in_flight: false,
                            });
                        }
                    }
                    Event::Signed { .. } | Event::KeyShareStored { .. } => {}
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
    }
}
