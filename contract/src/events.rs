//! NEP-297 events (`EVENT_JSON:{"standard":"chainsig","version":"1.0.0","event":...,"data":...}`).
//! Indexers and nodes may follow them; the `pending_requests` view is the source of
//! truth for work.
//!
//! The log line is what near-sdk's `#[near(event_json)]` writes, written with
//! [`crate::json`] (near-sdk's goes through `serde_json` and a flattening wrapper).

use near_sdk::serde::Serialize;
use near_sdk::{env, AccountId, NearToken};
use primitives::{DomainId, RequestId};

/// The NEP-297 standard name of our events.
pub const STANDARD: &str = "chainsig";
/// Every event is at version 1.0.0.
pub const VERSION: &str = "1.0.0";

#[derive(Serialize)]
#[serde(
    crate = "near_sdk::serde",
    tag = "event",
    content = "data",
    rename_all = "snake_case"
)]
pub enum Event {
    /// A call to `sign` is waiting for the network (`duplicate`: an identical request
    /// was already waiting, and both get the same answer).
    SignatureRequested {
        request_id: RequestId,
        predecessor: AccountId,
        domain_id: DomainId,
        path: String,
        block_height: u64,
        duplicate: bool,
    },
    /// A verified signature was delivered to `delivered` waiting calls.
    SignatureResponded {
        request_id: RequestId,
        responder: AccountId,
        delivered: u32,
    },
    /// A wait timed out and the caller's gas paid for another one.
    SignatureWaitExtended {
        request_id: RequestId,
        round: u32,
    },
    /// A call's waits ran out; its deposit was refunded.
    SignatureTimedOut {
        request_id: RequestId,
        refunded: NearToken,
    },
    /// The protocol state moved (`to` is the new state's name).
    StateChanged {
        from: String,
        to: String,
        epoch: Option<u64>,
    },
    /// A node asked to become a participant.
    CandidateJoined {
        candidate: AccountId,
        url: String,
    },
    /// A key event's attempt ended without completing (`reason`: a participant
    /// reported failure, or the votes disagreed on the key); the next one began.
    KeyEventAttemptFailed {
        epoch: u64,
        domain_id: Option<DomainId>,
        attempt: u64,
        next_attempt: u64,
        reason: String,
    },
    /// A governance vote (`kind`: pk, join, leave, reshared, add_domains, abort,
    /// cancel, update).
    Voted {
        voter: AccountId,
        kind: String,
        subject: String,
    },
    UpdateProposed {
        id: u64,
        proposer: AccountId,
        code_len: u64,
        config: bool,
    },
    UpdateApplied {
        id: u64,
    },
}

impl Event {
    /// Logs the event: `EVENT_JSON:{"standard":"chainsig","version":"1.0.0","event":"<name>","data":{...}}`.
    pub fn emit(&self) {
        // `{"event":...,"data":...}` with the standard and version put in front.
        let body = crate::json::to_vec(self);
        let mut line =
            format!(r#"EVENT_JSON:{{"standard":"{STANDARD}","version":"{VERSION}","#).into_bytes();
        line.extend_from_slice(&body[1..]);
        env::log_str(std::str::from_utf8(&line).unwrap_or_else(|_| env::abort()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use near_sdk::test_utils::{get_logs, VMContextBuilder};
    use near_sdk::testing_env;

    #[test]
    fn the_log_line_is_near_sdks() {
        testing_env!(VMContextBuilder::new().build());
        Event::UpdateApplied { id: 3 }.emit();
        Event::SignatureWaitExtended {
            request_id: RequestId([0xab; 32]),
            round: 2,
        }
        .emit();
        assert_eq!(
            get_logs(),
            [
                r#"EVENT_JSON:{"standard":"chainsig","version":"1.0.0","event":"update_applied","data":{"id":3}}"#.to_string(),
                format!(
                    r#"EVENT_JSON:{{"standard":"chainsig","version":"1.0.0","event":"signature_wait_extended","data":{{"request_id":"{}","round":2}}}}"#,
                    "ab".repeat(32)
                ),
            ]
        );
    }
}
