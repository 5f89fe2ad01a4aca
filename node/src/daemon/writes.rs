//! Chain writes: `respond` with the same signature until it lands or the request is
//! gone, and what each finished write reports back to the loop.

use super::votes::Vote;
use super::Node;
use crate::chain::{Chain, KeyEvent};
use primitives::{RequestId, SignatureResponse};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::{JoinError, JoinSet};

/// The chain writes under way, each its own task. The loop owns them: it hears
/// how each ended (a panic included), and at shutdown lets them finish or stops them.
pub(super) struct Writes {
    chain: Arc<Chain>,
    tasks: JoinSet<WriteDone>,
}

impl Writes {
    pub(super) fn new(chain: Arc<Chain>) -> Self {
        Writes {
            chain,
            tasks: JoinSet::new(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// The next write to finish (`None` if none is under way).
    pub(super) async fn next_done(&mut self) -> Option<Result<WriteDone, JoinError>> {
        self.tasks.join_next().await
    }

    /// Stops the writes still under way.
    pub(super) async fn abandon(&mut self) {
        self.tasks.shutdown().await;
    }

    /// Sends `respond` with a signature this node computed as leader.
    fn respond(&mut self, request_id: RequestId, first_seen: Instant, response: SignatureResponse) {
        let chain = self.chain.clone();
        self.tasks.spawn(async move {
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

    /// Sends this node's vote for the key event's attempt.
    pub(super) fn vote(&mut self, event: KeyEvent, vote: Vote) {
        let chain = self.chain.clone();
        self.tasks.spawn(async move {
            let result = match &vote {
                Vote::PublicKey(key) => chain.vote_pk(&event, key).await,
                Vote::Reshared => chain.vote_reshared(&event).await,
            };
            if let Err(e) = &result {
                tracing::warn!(attempt = event.attempt, error = %e, "voting failed; retrying while the attempt lasts");
            }
            WriteDone::Voted { ok: result.is_ok() }
        });
    }

    /// Reports that the key event's attempt failed here, so the next one starts now.
    pub(super) fn report_failed_attempt(&mut self, event: KeyEvent) {
        let chain = self.chain.clone();
        let attempt = event.attempt;
        self.tasks.spawn(async move {
            if let Err(e) = chain.vote_abort_key_event(&event).await {
                tracing::warn!(attempt, error = %e, "reporting the failed attempt failed");
            }
            WriteDone::Reported
        });
    }
}

/// What a finished chain write reports back to the loop.
pub(super) enum WriteDone {
    /// A vote landed (`ok`) or failed (it is sent again while the attempt lasts).
    Voted { ok: bool },
    /// A failed attempt was reported (or reporting it failed; the timeout ends it).
    Reported,
    /// `respond` landed (`Ok`) or failed, and whether the failure means the request
    /// is gone (answered by another leader, or timed out).
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
const RESPOND_BACKOFF: Duration = Duration::from_millis(500);

const RESPOND_BACKOFF_MAX: Duration = Duration::from_secs(30);

impl Answer {
    /// `response`, not sent yet, first due at `first_send`.
    pub(super) fn due_at(response: SignatureResponse, first_send: Instant) -> Self {
        Answer {
            response,
            sends: 0,
            next_send: first_send,
            in_flight: false,
        }
    }

    fn backoff(&self) -> Duration {
        let doublings = self.sends.saturating_sub(1).min(16);
        (RESPOND_BACKOFF * 2u32.pow(doublings)).min(RESPOND_BACKOFF_MAX)
    }
}

impl Node {
    /// Sends `respond` for every computed signature whose turn it is.
    pub(super) fn deliver_answers(&mut self) {
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
            self.writes
                .respond(*request_id, tracked.first_seen, answer.response.clone());
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
        // A request missing from the last reading of the chain keeps its answer
        // (and this outcome) in case it is back at the next.
        let tracked =
            super::requests::tracked_mut(&mut self.requests, &mut self.vanished, &request_id);
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
