//! Chain writes: `respond` with the same signature until it lands or the request is
//! gone, and what each finished write reports back to the loop.

use super::Node;
use primitives::{RequestId, SignatureResponse};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// What a finished chain write reports back to the loop.
pub(super) enum WriteDone {
    /// `respond` landed (`Ok`) or failed, and whether the failure means the request
    /// is gone (answered by another leader, or timed out).
    Voted { ok: bool },
    /// A failed attempt was reported (or reporting it failed; the timeout ends it).
    Reported,
    Responded {
        request_id: RequestId,
        first_seen: Instant,
        result: Result<(), RespondFailure>,
    },
}

/// Why a `respond` did not land.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum RespondFailure {
    /// The contract no longer waits for it: sending again cannot help.
    RequestGone,
    /// Anything else (RPC down, nonce races, ...): worth sending again.
    Transient,
}

impl RespondFailure {
    pub(super) fn of(error: &crate::chain::ChainError) -> Self {
        let text = error.to_string();
        // The contract's stable refusal texts for an answered or unknown request.
        if text.contains("no pending signature request matches")
            || text.contains("has already been answered")
        {
            RespondFailure::RequestGone
        } else {
            RespondFailure::Transient
        }
    }
}

/// A signature to deliver. It is sent again with backoff while `respond` fails and
/// the request is still pending: a signature is never recomputed (and a
/// presignature spent) because a transaction failed (DESIGN §8).
pub(super) struct Answer {
    pub(super) response: SignatureResponse,
    pub(super) sends: u32,
    pub(super) next_send: Instant,
    pub(super) in_flight: bool,
}

/// The first pause before sending a failed `respond` again; it doubles up to
/// [`RESPOND_BACKOFF_MAX`].
pub(super) const RESPOND_BACKOFF: Duration = Duration::from_millis(500);

pub(super) const RESPOND_BACKOFF_MAX: Duration = Duration::from_secs(30);

impl Answer {
    pub(super) fn backoff(&self) -> Duration {
        let doublings = self.sends.saturating_sub(1).min(16);
        (RESPOND_BACKOFF * 2u32.pow(doublings)).min(RESPOND_BACKOFF_MAX)
    }
}

impl Node {
    /// Sends `respond` for every computed signature whose turn it is.
    pub(super) fn deliver_answers(&mut self, writes: &mut JoinSet<WriteDone>) {
        let now = Instant::now();
        for (request_id, tracked) in self.requests.iter_mut() {
            let Some(answer) = tracked.answer.as_mut() else {
                continue;
            };
            if answer.in_flight || now < answer.next_send {
                continue;
            }
            answer.in_flight = true;
            answer.sends += 1;
            if answer.sends > 1 {
                tracing::info!(request = %request_id, send = answer.sends, "sending respond again");
            }
            let chain = self.config.chain.clone();
            let response = answer.response.clone();
            let (request_id, first_seen) = (*request_id, tracked.first_seen);
            writes.spawn(async move {
                let result = chain.respond(&request_id, &response).await.map_err(|e| {
                    tracing::warn!(request = %request_id, error = %e, "respond failed");
                    RespondFailure::of(&e)
                });
                WriteDone::Responded {
                    request_id,
                    first_seen,
                    result,
                }
            });
        }
    }

    pub(super) fn on_write_done(&mut self, done: WriteDone) {
        let (request_id, first_seen, result) = match done {
            WriteDone::Reported => return,
            WriteDone::Voted { ok } => {
                self.vote_in_flight = false;
                if !ok {
                    if let Some(owed) = self.owed_vote.as_mut() {
                        owed.sent_at = None;
                    }
                }
                return;
            }
            WriteDone::Responded {
                request_id,
                first_seen,
                result,
            } => (request_id, first_seen, result),
        };
        let metrics = &self.config.metrics;
        let tracked = self.requests.get_mut(&request_id);
        match result {
            Ok(()) => {
                tracing::info!(request = %request_id, ms = first_seen.elapsed().as_millis() as u64, "answered a request");
                metrics.signatures.inc();
                metrics.sign_latency.observe(first_seen.elapsed());
                // The next read of the chain drops the request; until then, no resend.
                if let Some(answer) = tracked.and_then(|t| t.answer.as_mut()) {
                    answer.next_send = Instant::now() + RESPOND_BACKOFF_MAX;
                    answer.in_flight = false;
                }
            }
            Err(failure) => {
                metrics.respond_failures.inc();
                let Some(tracked) = tracked else {
                    return;
                };
                match (failure, tracked.answer.as_mut()) {
                    (RespondFailure::Transient, Some(answer)) => {
                        answer.in_flight = false;
                        answer.next_send = Instant::now() + answer.backoff();
                    }
                    // Gone: keep the answer (never lead again); the next read drops it.
                    (RespondFailure::RequestGone, Some(answer)) => {
                        answer.next_send = Instant::now() + RESPOND_BACKOFF_MAX;
                        answer.in_flight = false;
                    }
                    (_, None) => {}
                }
            }
        }
    }
}
