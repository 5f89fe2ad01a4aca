//! Signature requests and answers: `sign`, `respond` and the yield callback.

use crate::changes::LoggedChange;
use crate::errors::{fail, Error, OrFail};
use crate::events::Event;
use crate::keys::{derive_ed25519, derive_secp256k1};
use crate::pending::{PendingEntry, Ticket};
use crate::state::DomainKey;
use crate::{refund, MpcContract};
use near_sdk::serde::Serialize;
use near_sdk::{env, AccountId, CryptoHash, Gas, GasWeight, NearToken};
use primitives::derivation::tweak_hash;
use primitives::recover::below_order;
use primitives::response::ResponseError;
use primitives::{
    EcdsaPayload, Payload, RequestId, SignRequest, SignRequestArgs, SignatureResponse,
    SignatureScheme,
};

/// Gas a timed-out callback needs beyond the next round's reserve to wait again.
const REYIELD_OVERHEAD: Gas = Gas::from_tgas(2);
/// Register the yield host function writes the new data id to.
const DATA_ID_REGISTER: u64 = 0;

/// The longest answer a yield is resumed with: an ECDSA answer is under 250 bytes
/// of JSON, an Ed25519 one under 300.
const MAX_ANSWER_LEN: usize = 1024;

/// What the yield callback decided.
#[derive(Debug, PartialEq)]
pub(crate) enum Resolution {
    /// The answer as the caller receives it: the JSON `respond` stored or resumed.
    Answer(Vec<u8>),
    WaitAgain {
        round: u32,
    },
    TimedOut {
        refunded: NearToken,
    },
}

/// Arguments of the yield callback.
#[derive(Serialize)]
#[serde(crate = "near_sdk::serde")]
struct ResolveArgs {
    request_id: RequestId,
    ticket: u64,
}

/// Arguments of `fail_timed_out`.
#[derive(Serialize)]
#[serde(crate = "near_sdk::serde")]
struct FailArgs {
    request_id: RequestId,
}

impl MpcContract {
    /// Asks the network to sign a payload with the key derived for the caller and
    /// `path` in a domain. Takes
    /// `{"request": {"payload_v2": {"Ecdsa"|"Eddsa": "<hex>"}, "path", "domain_id"}}`,
    /// the legacy `{"request": {"payload", "path", "key_version"}}`, or the seed's
    /// `{"payload", "path"}`. Returns the [`SignatureResponse`] once the network
    /// answers.
    pub fn sign(
        &mut self,
        request: Option<SignRequestArgs>,
        payload: Option<EcdsaPayload>,
        path: Option<String>,
        key_version: Option<u64>,
    ) {
        let args = match (request, payload, path) {
            (Some(request), None, None) if key_version.is_none() => request,
            (None, Some(payload), Some(path)) => SignRequestArgs {
                payload: Some(payload),
                path,
                key_version,
                ..Default::default()
            },
            (None, _, _) => fail(Error::SignArgsMissing),
            _ => fail(Error::SignArgsShape),
        };
        let request = args.resolve().map_err(Error::SignArgs).or_fail();
        let scheme = self.domains.scheme(request.domain_id).or_fail();
        if request.payload.scheme() != scheme {
            fail(Error::PayloadScheme {
                domain: request.domain_id,
                scheme,
                got: request.payload.kind(),
            });
        }
        if request.path.len() > self.config.max_path_len as usize {
            fail(Error::PathTooLong {
                len: request.path.len(),
                max: self.config.max_path_len,
            });
        }
        let required = self.config.sign_deposit;
        let attached = env::attached_deposit();
        if attached < required {
            fail(Error::Deposit {
                required,
                got: attached,
            });
        }
        if env::prepaid_gas() < self.config.min_sign_gas {
            fail(Error::Gas {
                required: self.config.min_sign_gas,
                got: env::prepaid_gas(),
            });
        }
        let predecessor = env::predecessor_account_id();
        let hash = tweak_hash(predecessor.as_str(), &request.path);
        if scheme == SignatureScheme::Secp256k1 && !below_order(&hash) {
            fail(Error::TweakOutOfRange);
        }
        let request_id = RequestId::new(&hash, request.domain_id, &request.payload);

        let waiting = self.pending.entry(&request_id);
        // For a new request: how many the caller has waiting already.
        let callers = match waiting.as_ref().map(|stored| &stored.value) {
            Some(PendingEntry {
                answer: Some(answer),
                ..
            }) => {
                // Answered a moment ago (late callbacks still hold the entry): no need
                // to wait. The deposit is kept as for any answered request.
                let json = answer_json(answer);
                refund(&predecessor, attached.saturating_sub(required));
                env::value_return(&json);
                return;
            }
            Some(entry) => {
                let max = self.config.max_duplicate_requests;
                if entry.tickets.len() >= max as usize {
                    fail(Error::TooManyDuplicates { max });
                }
                0
            }
            None if self.pending.len() >= self.config.max_pending_requests => fail(Error::Busy {
                pending: self.pending.len(),
            }),
            None => {
                let max = self.config.max_pending_per_caller;
                let mine = self.pending_by_caller.get(&predecessor).unwrap_or(0);
                if mine >= max {
                    fail(Error::CallerBusy { max });
                }
                mine
            }
        };
        let duplicate = waiting.is_some();

        let ticket_id = self.next_ticket;
        self.next_ticket += 1;
        let data_id = self.yield_for(request_id, ticket_id);
        let ticket = Ticket {
            id: ticket_id,
            data_id,
            deposit: required,
            round: 1,
        };
        match waiting {
            Some(mut stored) => {
                stored.value.tickets.push(ticket);
                self.pending.update(&request_id, &stored);
            }
            None => self.insert_pending(request_id, &predecessor, callers, &request, ticket),
        }
        refund(&predecessor, attached.saturating_sub(required));
        Event::SignatureRequested {
            request_id,
            predecessor,
            domain_id: request.domain_id,
            path: request.path,
            block_height: env::block_height(),
            duplicate,
        }
        .emit();
    }

    /// Delivers the network's signature for `request_id`. Only participants holding
    /// shares of the current keys may call it; the signature must verify for the
    /// request's payload and derived key, or nothing changes.
    pub fn respond(&mut self, request_id: RequestId, response: SignatureResponse) {
        let responder = self.require_signer();
        let mut stored = self
            .pending
            .entry(&request_id)
            .unwrap_or_else(|| fail(Error::UnknownRequest));
        let entry = &mut stored.value;
        if entry.answer.is_some() {
            fail(Error::AlreadyAnswered);
        }
        let domain = self.protocol_state.domain_key(entry.domain_id).or_fail();
        verify_response(domain, entry, &response).or_fail();

        let data = answer_json(&response);
        // A false return means that ticket's yield has already timed out: its callback
        // is on its way and will find the answer stored below.
        entry
            .tickets
            .retain(|ticket| !env::promise_yield_resume(&ticket.data_id, &data));
        let delivered = if entry.tickets.is_empty() {
            self.remove_pending(&request_id);
            0
        } else {
            // Answered: no longer pending for the nodes, though late callbacks
            // still hold the entry.
            entry.answer = Some(response);
            let waiting = entry.tickets.len();
            self.pending.update(&request_id, &stored);
            self.log_pending(LoggedChange::Removed(request_id));
            waiting
        };
        Event::SignatureResponded {
            request_id,
            responder,
            delivered: delivered as u32,
        }
        .emit();
    }

    /// The yield callback of `sign`: returns the signature, or handles a timeout.
    ///
    /// It runs once for every call of `sign`, paid by the caller, so the common case
    /// costs as little as it can: a yield resumed by `respond` carries the answer as
    /// the JSON `respond` verified and serialised, and it is passed on as it is,
    /// without reading or writing any state (`respond` already removed the ticket).
    /// Only a timeout loads the contract.
    pub fn resolve_signature(request_id: RequestId, ticket: u64) {
        if let Ok(json) = env::promise_result_checked(0, MAX_ANSWER_LEN) {
            env::value_return(&json);
            return;
        }
        let mut contract: MpcContract = env::state_read().unwrap_or_else(|| {
            fail(Error::WrongState {
                expected: "initialized",
                actual: "NotInitialized",
            })
        });
        contract.on_timeout(request_id, ticket);
        env::state_write(&contract);
    }
    /// Ends a timed-out request with a clear error (its deposit is already refunded).
    pub fn fail_timed_out(&self, request_id: RequestId) {
        env::panic_str(&format!(
            "signature request {request_id} timed out: the MPC network did not answer in time. \
             The deposit was refunded; try again, or attach more gas to wait longer"
        ));
    }
}

impl MpcContract {
    /// The yield of `ticket` timed out without an answer: return a late answer,
    /// wait again, or give up (see [`MpcContract::resolve`]).
    fn on_timeout(&mut self, request_id: RequestId, ticket: u64) {
        match self.resolve(request_id, ticket, None) {
            Resolution::Answer(json) => env::value_return(&json),
            // The new yield is already this call's result (see `yield_for`).
            Resolution::WaitAgain { .. } => {}
            Resolution::TimedOut { .. } => {
                let args = crate::json::to_vec(&FailArgs { request_id });
                let failing = env::promise_create(
                    env::current_account_id(),
                    "fail_timed_out",
                    args,
                    NearToken::from_yoctonear(0),
                    self.config.timeout_fail_gas,
                );
                env::promise_return(failing);
            }
        }
    }

    fn insert_pending(
        &mut self,
        request_id: RequestId,
        predecessor: &AccountId,
        callers: u32,
        request: &SignRequest,
        ticket: Ticket,
    ) {
        let entry = PendingEntry {
            predecessor: predecessor.clone(),
            payload: request.payload.clone(),
            path: request.path.clone(),
            domain_id: request.domain_id,
            entropy: env::random_seed_array(),
            block_height: env::block_height(),
            tickets: vec![ticket],
            answer: None,
        };
        self.pending.insert_new(&request_id, &entry);
        self.pending_by_caller.insert(predecessor, &(callers + 1));
        self.log_pending(LoggedChange::Added(request_id));
    }

    /// Drops a request and its place in its caller's count.
    pub(crate) fn remove_pending(&mut self, request_id: &RequestId) -> Option<PendingEntry> {
        let entry = self.pending.remove(request_id)?;
        if entry.answer.is_none() {
            // (An answered one left the nodes' view when its answer came.)
            self.log_pending(LoggedChange::Removed(*request_id));
        }
        match self.pending_by_caller.get(&entry.predecessor) {
            Some(n) if n > 1 => {
                self.pending_by_caller.insert(&entry.predecessor, &(n - 1));
            }
            _ => {
                self.pending_by_caller.remove(&entry.predecessor);
            }
        }
        Some(entry)
    }

    /// How many distinct requests `account` has waiting.
    pub fn pending_count_of(&self, account: &AccountId) -> u32 {
        self.pending_by_caller.get(account).unwrap_or(0)
    }

    /// Creates a yield whose callback is `resolve_signature(request_id, ticket)` and
    /// returns it as this call's result. The callback gets the configured gas plus
    /// all gas this call leaves unused. Returns the yield's data id.
    fn yield_for(&self, request_id: RequestId, ticket: u64) -> CryptoHash {
        let args = crate::json::to_vec(&ResolveArgs { request_id, ticket });
        let index = env::promise_yield_create(
            "resolve_signature",
            args,
            self.config.yield_callback_gas,
            GasWeight(1),
            DATA_ID_REGISTER,
        );
        env::promise_return(index);
        env::read_register(DATA_ID_REGISTER)
            .and_then(|bytes| bytes.try_into().ok())
            .expect("promise_yield_create writes a 32-byte data id")
    }

    /// What the yield callback does for `ticket` of `request_id`, given the resumed
    /// answer (`None`: the yield timed out). On a timeout it returns a stored answer
    /// if one came late, else waits again while the callback's gas allows, else
    /// refunds the deposit and gives up.
    pub(crate) fn resolve(
        &mut self,
        request_id: RequestId,
        ticket: u64,
        resumed: Option<Vec<u8>>,
    ) -> Resolution {
        if let Some(json) = resumed {
            return Resolution::Answer(json);
        }
        let Some(mut stored) = self.pending.entry(&request_id) else {
            // Unreachable while every ticket's entry outlives its yield.
            fail(Error::UnknownRequest);
        };
        let entry = &mut stored.value;
        if let Some(answer) = &entry.answer {
            let json = answer_json(answer);
            entry.remove_ticket(ticket);
            if entry.tickets.is_empty() {
                self.remove_pending(&request_id);
            } else {
                self.pending.update(&request_id, &stored);
            }
            return Resolution::Answer(json);
        }
        let remaining = env::prepaid_gas().saturating_sub(env::used_gas());
        if remaining
            >= self
                .config
                .yield_callback_gas
                .saturating_add(REYIELD_OVERHEAD)
        {
            let data_id = self.yield_for(request_id, ticket);
            let slot = entry
                .ticket_mut(ticket)
                .unwrap_or_else(|| fail(Error::UnknownRequest));
            slot.data_id = data_id;
            slot.round += 1;
            let round = slot.round;
            self.pending.update(&request_id, &stored);
            Event::SignatureWaitExtended { request_id, round }.emit();
            return Resolution::WaitAgain { round };
        }
        let removed = entry
            .remove_ticket(ticket)
            .unwrap_or_else(|| fail(Error::UnknownRequest));
        let predecessor = entry.predecessor.clone();
        if entry.tickets.is_empty() {
            self.remove_pending(&request_id);
        } else {
            self.pending.update(&request_id, &stored);
        }
        refund(&predecessor, removed.deposit);
        Event::SignatureTimedOut {
            request_id,
            refunded: removed.deposit,
        }
        .emit();
        Resolution::TimedOut {
            refunded: removed.deposit,
        }
    }
}

/// Checks `response` against the request's payload and the key derived in its
/// domain: secp256k1 with the host's `ecrecover` (which also refuses high s),
/// Ed25519 with the host's `ed25519_verify`.
fn verify_response(
    domain: &DomainKey,
    entry: &PendingEntry,
    response: &SignatureResponse,
) -> Result<(), Error> {
    if response.scheme() != domain.scheme {
        return Err(Error::ResponseScheme {
            domain: domain.id,
            scheme: domain.scheme,
            got: response.scheme(),
        });
    }
    let hash = tweak_hash(entry.predecessor.as_str(), &entry.path);
    match (response, &entry.payload) {
        (SignatureResponse::Secp256k1(signature), Payload::Ecdsa(payload)) => {
            let rs = signature.recover_form().map_err(Error::BadSignature)?;
            let expected = derive_secp256k1(domain, &hash)?;
            match env::ecrecover(payload.as_bytes(), &rs, signature.recovery_id, true) {
                Some(recovered) if recovered == expected => Ok(()),
                _ => Err(Error::BadSignature(ResponseError::DoesNotVerify)),
            }
        }
        (SignatureResponse::Ed25519 { signature }, Payload::Eddsa(payload)) => {
            let derived = derive_ed25519(domain, hash)?;
            if env::ed25519_verify(&signature.0, payload.as_bytes(), derived.as_bytes()) {
                Ok(())
            } else {
                Err(Error::BadSignature(ResponseError::DoesNotVerify))
            }
        }
        // `sign` stores only payloads that match their domain's scheme.
        _ => Err(Error::BadSignature(ResponseError::DoesNotVerify)),
    }
}

/// The answer as the caller receives it.
pub(crate) fn answer_json(response: &SignatureResponse) -> Vec<u8> {
    crate::json::to_vec(response)
}
