//! NEP-297 events (`EVENT_JSON:{"standard":"chainsig","version":"1.0.0","event":...,"data":...}`).
//! Indexers and nodes may follow them; the `pending_requests` view is the source of
//! truth for work.

use near_sdk::{near, AccountId, NearToken};
use primitives::{DomainId, RequestId};

#[near(event_json(standard = "chainsig"))]
pub enum Event {
    /// A call to `sign` is waiting for the network (`duplicate`: an identical request
    /// was already waiting, and both get the same answer).
    #[event_version("1.0.0")]
    SignatureRequested {
        request_id: RequestId,
        predecessor: AccountId,
        domain_id: DomainId,
        path: String,
        block_height: u64,
        duplicate: bool,
    },
    /// A verified signature was delivered to `delivered` waiting calls.
    #[event_version("1.0.0")]
    SignatureResponded {
        request_id: RequestId,
        responder: AccountId,
        delivered: u32,
    },
    /// A wait timed out and the caller's gas paid for another one.
    #[event_version("1.0.0")]
    SignatureWaitExtended { request_id: RequestId, round: u32 },
    /// A call's waits ran out; its deposit was refunded.
    #[event_version("1.0.0")]
    SignatureTimedOut {
        request_id: RequestId,
        refunded: NearToken,
    },
    /// The protocol state moved (`to` is the new state's name).
    #[event_version("1.0.0")]
    StateChanged {
        from: String,
        to: String,
        epoch: Option<u64>,
    },
    /// A node asked to become a participant.
    #[event_version("1.0.0")]
    CandidateJoined { candidate: AccountId, url: String },
    /// A key event's attempt ended without completing (`reason`: a participant
    /// reported failure, or the votes disagreed on the key); the next one began.
    #[event_version("1.0.0")]
    KeyEventAttemptFailed {
        epoch: u64,
        domain_id: Option<DomainId>,
        attempt: u64,
        next_attempt: u64,
        reason: String,
    },
    /// A governance vote (`kind`: pk, join, leave, reshared, add_domains, abort,
    /// cancel, update).
    #[event_version("1.0.0")]
    Voted {
        voter: AccountId,
        kind: String,
        subject: String,
    },
    #[event_version("1.0.0")]
    UpdateProposed {
        id: u64,
        proposer: AccountId,
        code_len: u64,
        config: bool,
    },
    #[event_version("1.0.0")]
    UpdateApplied { id: u64 },
}
