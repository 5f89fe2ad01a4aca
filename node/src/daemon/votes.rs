//! What the key engines report, and what the node owes the contract for it: a vote
//! once every domain of the attempt has its share stored here (sent again until
//! the chain shows it), and a report of an attempt that failed here.

use super::Node;
use crate::engine::Event;
use std::time::{Duration, Instant};

/// What this node votes for an attempt that completed here.
#[derive(Clone, Debug)]
pub(super) enum Vote {
    /// Keygen: the domain's new public key (`vote_pk`).
    PublicKey(String),
    /// Resharing: the shares of every domain are in place (`vote_reshared`).
    Reshared,
}

/// A vote this node owes the contract for the key event's current attempt (once
/// every domain of the attempt has its share stored here).
#[derive(Clone, Debug)]
pub(super) struct OwedVote {
    pub(super) attempt: u64,
    pub(super) vote: Vote,
    /// When it was last sent; it is sent again while the chain does not show it.
    pub(super) sent_at: Option<Instant>,
}

/// How long a vote the chain does not show yet waits before it is sent again.
const VOTE_RETRY: Duration = Duration::from_secs(3);

impl Node {
    /// Sends the vote this node owes for the key event's current attempt, unless the
    /// chain already shows it or one is on its way.
    pub(super) fn settle_votes(&mut self) {
        let (Some(owed), Some(event)) = (self.owed_vote.as_mut(), self.key_event.as_ref()) else {
            return;
        };
        if owed.attempt != event.attempt || event.votes.contains(&self.config.account) {
            if owed.attempt != event.attempt || owed.sent_at.is_some() {
                self.owed_vote = None;
            }
            return;
        }
        if self.vote_in_flight || owed.sent_at.is_some_and(|at| at.elapsed() < VOTE_RETRY) {
            return;
        }
        owed.sent_at = Some(Instant::now());
        self.vote_in_flight = true;
        tracing::info!(
            attempt = event.attempt,
            keygen = matches!(owed.vote, Vote::PublicKey(_)),
            "voting for the key event's attempt"
        );
        self.writes.vote(event.clone(), owed.vote.clone());
    }

    /// What the key engines report: once every domain of the attempt has its share
    /// stored, the node votes (and repeats the vote until the chain shows it); a
    /// failed run of the current attempt is reported, so the contract starts the
    /// next attempt now.
    pub(super) fn on_key_event(&mut self, event: Event) {
        let Some(key) = self.keyer_key.as_ref() else {
            return;
        };
        let resharing = key.resharing();
        match event {
            Event::KeyShareStored {
                domain,
                epoch,
                attempt,
                public_key,
            } => {
                tracing::info!(domain = domain.0, epoch, attempt, %public_key, resharing, "key share stored");
                self.keys_stored.insert(domain, public_key);
                if self.keys_stored.len() < key.tasks.len() {
                    return;
                }
                // Keygen covers one domain: its key is the vote.
                let public_key = (!resharing)
                    .then(|| self.keys_stored.values().next().cloned())
                    .flatten();
                let vote = match public_key {
                    Some(key) => Vote::PublicKey(key),
                    None => Vote::Reshared,
                };
                self.owed_vote = Some(OwedVote {
                    attempt,
                    vote,
                    sent_at: None,
                });
                self.settle_votes();
            }
            Event::Failed { job, reason } => {
                self.config.metrics.protocol_failures.inc();
                let Some(attempt) = job.attempt() else {
                    return;
                };
                let current = self.key_event.as_ref().filter(|e| e.attempt == attempt);
                let Some(event) = current.cloned() else {
                    tracing::debug!(attempt, %reason, "a key run of a past attempt ended");
                    return;
                };
                if !self.aborted.insert(attempt) {
                    return;
                }
                tracing::warn!(attempt, %reason, "the key event's attempt failed here; reporting it");
                self.writes.report_failed_attempt(event);
            }
            _ => {}
        }
    }
}
