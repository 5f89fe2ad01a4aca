//! Who leads a request. Every node ranks the participants for each request by
//! [`leader_order`]. The first *live* one leads at once; the k-th live one also
//! leads once the request has waited `k ×`
//! [`NodeConfig::leader_grace`](super::NodeConfig::leader_grace), which replaces a
//! leader that is up but failing. A second answer is refused by the contract, so
//! at worst a fallback costs one wasted presignature.
//!
//! A node that starts leading a request says so to every peer
//! ([`NodeMessage::Leading`](crate::engine::NodeMessage::Leading)); while that
//! word is fresh and its sender live, no other node leads the request, whatever
//! its turn. Without it, a burst longer than the grace made every request's
//! fallback leaders sign it too, each answer after the first refused by the
//! contract: a presignature burnt per fallback, when presignatures are what a
//! burst is short of (40 % of them at (3,2) in one bench run). Only a peer's
//! first word per request counts, so a peer that says it leads and never signs
//! delays a request by [`HELD_BACK_FOR_GRACES`] grace periods at most.

use super::Node;
use primitives::RequestId;
use sha3::{Digest, Sha3_256};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use threshold::{ParticipantId, Participants};

/// How long a peer's word that it leads a request holds the others back, in
/// grace periods from when the word came.
const HELD_BACK_FOR_GRACES: u32 = 2;

/// Words of leading kept at most: the contract's pending requests are fewer,
/// so only a peer making up request ids fills it (and then words for real
/// requests are still taken while it lasts; the first word per request stays).
const MAX_LEADERS_HEARD: usize = 4096;

/// The peer that first said it leads a request, and when that came.
#[derive(Clone, Copy, Debug)]
pub(super) struct LeaderHeard {
    peer: ParticipantId,
    at: Instant,
}

/// Whether another live node's fresh word that it leads the request holds this
/// node back from leading it.
fn held_back(
    heard: Option<&LeaderHeard>,
    me: ParticipantId,
    live: &Participants,
    hold: Duration,
    now: Instant,
) -> bool {
    heard.is_some_and(|h| {
        h.peer != me && live.contains(h.peer) && now.saturating_duration_since(h.at) < hold
    })
}

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
        let hold = self.config.leader_grace * HELD_BACK_FOR_GRACES;
        // Domains out of usable presignatures this turn.
        let mut exhausted = BTreeSet::new();
        for (request_id, tracked) in self.requests.iter_mut() {
            let led_lately = tracked
                .led_at
                .is_some_and(|at| now.duration_since(at) < retry_after);
            if led_lately || tracked.answer.is_some() || exhausted.contains(&tracked.domain) {
                continue;
            }
            if held_back(self.leaders_heard.get(request_id), me, live, hold, now) {
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
                    self.announce.push((tracked.domain, *request_id));
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

    /// A peer's word that it leads `request_id` (only its first word counts).
    pub(super) fn heard_leader(
        &mut self,
        peer: ParticipantId,
        request_id: RequestId,
        now: Instant,
    ) {
        if self.leaders_heard.len() >= MAX_LEADERS_HEARD
            && !self.leaders_heard.contains_key(&request_id)
        {
            return;
        }
        self.leaders_heard
            .entry(request_id)
            .or_insert(LeaderHeard { peer, at: now });
    }

    /// Forgets words of leading for requests no longer pending, once they no
    /// longer hold anyone back (a word may come before the request is seen here).
    pub(super) fn forget_leaders_heard(&mut self, now: Instant) {
        let hold = self.config.leader_grace * HELD_BACK_FOR_GRACES;
        let requests = &self.requests;
        self.leaders_heard.retain(|id, heard| {
            requests.contains_key(id) || now.saturating_duration_since(heard.at) < hold
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_word_from_a_live_peer_holds_back_and_nothing_else_does() {
        let me = ParticipantId(0);
        let live = Participants::first(3).unwrap();
        let hold = Duration::from_secs(6);
        let now = Instant::now();
        let word = |peer: u32, age_ms: u64| LeaderHeard {
            peer: ParticipantId(peer),
            at: now - Duration::from_millis(age_ms),
        };
        assert!(held_back(Some(&word(1, 0)), me, &live, hold, now));
        assert!(held_back(Some(&word(2, 5_999)), me, &live, hold, now));
        // Stale, silent, our own, or no word at all: this node leads on its turn.
        assert!(!held_back(Some(&word(1, 6_000)), me, &live, hold, now));
        assert!(!held_back(Some(&word(7, 0)), me, &live, hold, now));
        assert!(!held_back(Some(&word(0, 0)), me, &live, hold, now));
        assert!(!held_back(None, me, &live, hold, now));
    }
}
