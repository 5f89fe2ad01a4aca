//! Who leads a request. Every node ranks the participants for each request by
//! [`leader_order`]. The first *live* one leads at once; the k-th live one also
//! leads once the request has waited `k ×`
//! [`NodeConfig::leader_grace`](super::NodeConfig::leader_grace), which replaces a
//! leader that is up but failing. A second answer is refused by the contract, so
//! at worst a fallback costs one wasted presignature.

use super::Node;
use primitives::RequestId;
use sha3::{Digest, Sha3_256};
use std::collections::BTreeSet;
use std::time::Instant;
use threshold::{ParticipantId, Participants};

/// The deterministic leader order of a request: participants sorted by a hash of
/// the request id and their id. Every node computes the same order.
pub fn leader_order(request_id: &RequestId, participants: &Participants) -> Vec<ParticipantId> {
    let mut order: Vec<(ParticipantId, [u8; 32])> = participants
        .iter()
        .map(|p| {
            let mut hasher = Sha3_256::new();
            hasher.update(b"chain-signatures leader v1:");
            hasher.update(request_id.0);
            hasher.update(p.0.to_be_bytes());
            (p, hasher.finalize().into())
        })
        .collect();
    order.sort_by_key(|(_, rank)| *rank);
    order.into_iter().map(|(p, _)| p).collect()
}

impl Node {
    /// Leads the pending requests whose turn it is for this node.
    pub(super) fn lead(&mut self, live: &Participants, now: Instant) {
        let (Some(me), Some(all)) = (self.me, self.running_set.as_ref()) else {
            return;
        };
        let retry_after = self.config.protocol_timeout;
        // Domains out of usable presignatures this turn.
        let mut exhausted = BTreeSet::new();
        for (request_id, tracked) in self.requests.iter_mut() {
            let led_lately = tracked
                .led_at
                .is_some_and(|at| now.duration_since(at) < retry_after);
            if led_lately || tracked.answer.is_some() || exhausted.contains(&tracked.domain) {
                continue;
            }
            let Some(signer) = self.signers.get_mut(&tracked.domain) else {
                continue;
            };
            let order = leader_order(request_id, all);
            let Some(rank) = order
                .iter()
                .filter(|p| live.contains(**p))
                .position(|p| *p == me)
            else {
                continue;
            };
            let turn = self.config.leader_grace * rank as u32;
            if now.duration_since(tracked.first_seen) < turn {
                continue;
            }
            match signer.engine.propose_sign(*request_id, live) {
                Ok(Some(presignature)) => {
                    self.config.metrics.sign_runs_led.inc();
                    tracing::debug!(request = %request_id, %presignature, waited_ms = now.duration_since(tracked.first_seen).as_millis() as u64, "leading a request");
                    if rank > 0 {
                        tracing::info!(request = %request_id, rank, "leading a request in place of a silent leader");
                    }
                    tracked.led_at = Some(now);
                }
                Ok(None) => {
                    tracing::debug!(request = %request_id, domain = tracked.domain.0, "no usable presignature to lead with yet");
                    exhausted.insert(tracked.domain);
                }
                Err(e) => {
                    tracing::warn!(request = %request_id, error = %e, "cannot lead a request")
                }
            }
        }
    }
}
