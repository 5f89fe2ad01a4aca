//! Requests waiting for the network.
//!
//! A request is stored once per request id; every call to `sign` for it holds a
//! ticket, one NEP-519 yield each. `respond` resumes every ticket's yield. A ticket
//! whose yield timed out just before the answer came keeps waiting for its callback,
//! which then finds the stored answer.

use near_sdk::{near, AccountId, CryptoHash, NearToken};
use primitives::request::Entropy;
use primitives::{DomainId, Payload, PendingRequest, RequestId, SignatureResponse};

#[near(serializers = [borsh])]
#[derive(Clone, Debug)]
pub struct Ticket {
    /// Unique across the contract's life; names the yield callback's call.
    pub id: u64,
    /// The current yield's data id (changes when the wait is extended).
    pub data_id: CryptoHash,
    /// What `sign` kept, refunded if the request times out.
    pub deposit: NearToken,
    /// How many waits this call has had so far, counting from 1.
    pub round: u32,
}

#[near(serializers = [borsh])]
#[derive(Clone, Debug)]
pub struct PendingEntry {
    pub predecessor: AccountId,
    pub payload: Payload,
    pub path: String,
    pub domain_id: DomainId,
    pub entropy: [u8; 32],
    pub block_height: u64,
    pub tickets: Vec<Ticket>,
    /// Set when the answer came while some ticket's yield had already timed out.
    pub answer: Option<SignatureResponse>,
}

impl PendingEntry {
    pub fn view(&self, request_id: RequestId) -> PendingRequest {
        PendingRequest {
            request_id,
            predecessor: self.predecessor.to_string(),
            payload: self.payload.clone(),
            path: self.path.clone(),
            domain_id: self.domain_id,
            entropy: Entropy(self.entropy),
            block_height: self.block_height,
            waiting: self.tickets.len() as u32,
        }
    }

    pub fn ticket_mut(&mut self, id: u64) -> Option<&mut Ticket> {
        self.tickets.iter_mut().find(|t| t.id == id)
    }

    pub fn remove_ticket(&mut self, id: u64) -> Option<Ticket> {
        let index = self.tickets.iter().position(|t| t.id == id)?;
        Some(self.tickets.swap_remove(index))
    }
}
