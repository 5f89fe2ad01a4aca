//! The `multichain` contract: NEAR accounts ask for signatures, the MPC network
//! answers them.
//!
//! Request life cycle (see ARCHITECTURE.md for the whole system):
//! 1. `sign` validates the request, stores it under its [`RequestId`], emits
//!    `signature_requested` and yields (NEP-519). Identical requests share the entry.
//! 2. Nodes read `pending_requests`, sign with the key derived for the caller and
//!    path, and one of them calls `respond`.
//! 3. `respond` checks the signature with `ecrecover` against the derived key and
//!    resumes every waiting call; a bad signature is refused and nothing is stored.
//! 4. `resolve_signature` (the yield callback) returns the signature to the caller,
//!    or on a timeout waits again while the caller's gas lasts, then fails with a
//!    clear error and refunds the deposit.

pub mod config;
pub mod errors;
pub mod events;
pub mod pending;
pub mod state;
pub mod update;

use config::Config;
use errors::{fail, Error, OrFail};
use events::Event;
use near_sdk::json_types::U128;
use near_sdk::serde::{Deserialize, Serialize};
use near_sdk::store::IterableMap;
use near_sdk::{
    env, near, AccountId, BorshStorageKey, CryptoHash, CurveType, Gas, GasWeight, NearToken,
    PublicKey,
};
use pending::{PendingEntry, Ticket};
use primitives::derivation::{derive_public_key, Tweak};
use primitives::k256::AffinePoint;
use primitives::response::ResponseError;
use primitives::SignatureResponse;
use primitives::{near_key, Payload, PendingRequest, RequestId, SignRequest, SignatureRequest};
use state::{
    check_threshold, CandidateInfo, InitializingContractState, Participants, ProtocolContractState,
    ResharingContractState, RunningContractState, Votes,
};
use std::collections::{BTreeMap, BTreeSet};
use update::{ProposeUpdateArgs, UpdateProposal};

/// The layout version of the stored state; `migrate` refuses newer ones.
pub const STATE_VERSION: u32 = 1;
/// The only key version so far: resharing keeps the key, so it never changes yet.
pub const LATEST_KEY_VERSION: u32 = 0;
/// Gas a timed-out callback needs beyond the next round's reserve to wait again.
const REYIELD_OVERHEAD: Gas = Gas::from_tgas(2);
/// Register the yield host function writes the new data id to.
const DATA_ID_REGISTER: u64 = 0;
/// Longest accepted `url` of a candidate, in bytes.
const MAX_URL_LEN: usize = 512;
/// How many candidates may wait for votes at once.
const MAX_CANDIDATES: usize = 32;
/// Default and largest page of `pending_requests`.
const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 500;

#[derive(BorshStorageKey)]
#[near]
enum StorageKey {
    Pending,
    Updates,
}

#[near(contract_state)]
pub struct MpcContract {
    state_version: u32,
    protocol_state: ProtocolContractState,
    config: Config,
    pending: IterableMap<RequestId, PendingEntry>,
    next_ticket: u64,
    updates: IterableMap<u64, UpdateProposal>,
    next_update_id: u64,
}

impl Default for MpcContract {
    /// What an account with our code but no state looks like: `NotInitialized`, so
    /// views answer and calls say what to do instead of failing obscurely.
    fn default() -> Self {
        Self::with_state(ProtocolContractState::NotInitialized, Config::default())
    }
}

/// What the yield callback decided.
#[derive(Debug, PartialEq)]
enum Resolution {
    Answer(SignatureResponse),
    WaitAgain { round: u32 },
    TimedOut { refunded: NearToken },
}

/// Arguments of the yield callback.
#[derive(Serialize, Deserialize)]
#[serde(crate = "near_sdk::serde")]
struct ResolveArgs {
    request_id: RequestId,
    ticket: u64,
}

#[near]
impl MpcContract {
    // ------------------------------------------------------------------ init

    /// Starts key generation among `candidates`; `threshold` of them will be needed
    /// to sign. Only the contract account may call it (deploy and init in one batch).
    #[init]
    pub fn init(
        threshold: usize,
        candidates: BTreeMap<AccountId, CandidateInfo>,
        config: Option<Config>,
    ) -> Self {
        Self::require_self_call();
        let candidates = checked_candidates(candidates);
        check_threshold(threshold, candidates.len()).or_fail();
        let config = config.unwrap_or_default();
        config.validate().or_fail();
        let state = ProtocolContractState::Initializing(InitializingContractState {
            candidates,
            threshold,
            pk_votes: BTreeMap::new(),
        });
        emit_state_change("NotInitialized", &state);
        Self::with_state(state, config)
    }

    /// Starts directly in `Running` with an existing key, for recovery and for
    /// moving a network to a new contract account. Only the contract account may call it.
    #[init]
    pub fn init_running(
        epoch: u64,
        participants: BTreeMap<AccountId, CandidateInfo>,
        threshold: usize,
        public_key: PublicKey,
        config: Option<Config>,
    ) -> Self {
        Self::require_self_call();
        let participants = checked_candidates(participants);
        check_threshold(threshold, participants.len()).or_fail();
        root_point(&public_key);
        let config = config.unwrap_or_default();
        config.validate().or_fail();
        let state = ProtocolContractState::Running(RunningContractState {
            epoch,
            participants,
            threshold,
            public_key,
            candidates: BTreeMap::new(),
            join_votes: Votes::default(),
            leave_votes: Votes::default(),
        });
        emit_state_change("NotInitialized", &state);
        Self::with_state(state, config)
    }

    // ------------------------------------------------------------------ signing

    /// Asks the network to sign `payload` with the key derived for the caller and
    /// `path`. Takes `{"payload", "path"[, "key_version"]}` or
    /// `{"request": {"payload", "path", "key_version"}}`. Returns the
    /// [`SignatureResponse`] once the network answers.
    #[payable]
    pub fn sign(
        &mut self,
        request: Option<SignRequest>,
        payload: Option<Payload>,
        path: Option<String>,
        key_version: Option<u32>,
    ) {
        if self.protocol_state.public_key().is_none() {
            fail(Error::NotReady {
                state: self.protocol_state.name(),
            });
        }
        let request = match (request, payload, path) {
            (Some(request), None, None) if key_version.is_none() => request,
            (None, Some(payload), Some(path)) => SignRequest {
                payload,
                path,
                key_version: key_version.unwrap_or(0),
            },
            (None, _, _) => fail(Error::SignArgsMissing),
            _ => fail(Error::SignArgsShape),
        };
        if request.path.len() > self.config.max_path_len as usize {
            fail(Error::PathTooLong {
                len: request.path.len(),
                max: self.config.max_path_len,
            });
        }
        if request.key_version > LATEST_KEY_VERSION {
            fail(Error::KeyVersion {
                got: request.key_version,
                latest: LATEST_KEY_VERSION,
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
        let signature_request = SignatureRequest::new(predecessor.as_str(), &request)
            .map_err(|_| Error::TweakOutOfRange)
            .or_fail();
        let request_id = signature_request.id();

        let duplicate = match self.pending.get(&request_id) {
            Some(PendingEntry {
                answer: Some(answer),
                ..
            }) => {
                // Answered a moment ago (late callbacks still hold the entry): no need
                // to wait. The deposit is kept as for any answered request.
                let answer = answer.clone();
                refund(&predecessor, attached.saturating_sub(required));
                return_json(&answer);
                return;
            }
            Some(entry) => {
                let max = self.config.max_duplicate_requests;
                if entry.tickets.len() >= max as usize {
                    fail(Error::TooManyDuplicates { max });
                }
                true
            }
            None if self.pending.len() >= self.config.max_pending_requests => fail(Error::Busy {
                pending: self.pending.len(),
            }),
            None => false,
        };

        let ticket_id = self.next_ticket;
        self.next_ticket += 1;
        let data_id = self.yield_for(request_id, ticket_id);
        let ticket = Ticket {
            id: ticket_id,
            data_id,
            deposit: required,
            round: 1,
        };
        if duplicate {
            self.pending
                .get_mut(&request_id)
                .expect("checked above")
                .tickets
                .push(ticket);
        } else {
            let entry = PendingEntry {
                predecessor: predecessor.clone(),
                payload: request.payload,
                path: request.path.clone(),
                key_version: request.key_version,
                epsilon: signature_request.epsilon.scalar,
                entropy: env::random_seed_array(),
                block_height: env::block_height(),
                tickets: vec![ticket],
                answer: None,
            };
            self.pending.insert(request_id, entry);
        }
        refund(&predecessor, attached.saturating_sub(required));
        Event::SignatureRequested {
            request_id,
            predecessor,
            payload: request.payload,
            path: request.path,
            key_version: request.key_version,
            epsilon: signature_request.epsilon,
            block_height: env::block_height(),
            duplicate,
        }
        .emit();
    }

    /// Delivers the network's signature for `request`. Only participants holding
    /// shares of the current key may call it; the signature must verify for the
    /// request's payload and derived key, or nothing changes.
    pub fn respond(&mut self, request: SignatureRequest, response: SignatureResponse) {
        let responder = env::predecessor_account_id();
        let signers = self.protocol_state.signers().unwrap_or_else(|| {
            fail(Error::NotReady {
                state: self.protocol_state.name(),
            })
        });
        if !signers.contains(&responder) {
            fail(Error::NotAParticipant { account: responder });
        }
        let root = root_point(
            self.protocol_state
                .public_key()
                .expect("signers have a key"),
        );
        let request_id = request.id();
        let entry = self
            .pending
            .get(&request_id)
            .unwrap_or_else(|| fail(Error::UnknownRequest));
        if entry.answer.is_some() {
            fail(Error::AlreadyAnswered);
        }
        verify_response(&root, entry, &response).or_fail();

        let entry = self.pending.get_mut(&request_id).expect("read above");
        let data = near_sdk::serde_json::to_vec(&response).expect("a response serialises");
        // A false return means that ticket's yield has already timed out: its callback
        // is on its way and will find the answer stored below.
        entry
            .tickets
            .retain(|ticket| !env::promise_yield_resume(&ticket.data_id, &data));
        let delivered = if entry.tickets.is_empty() {
            self.pending.remove(&request_id);
            0
        } else {
            entry.answer = Some(response);
            entry.tickets.len()
        };
        Event::SignatureResponded {
            request_id,
            responder,
            delivered: delivered as u32,
        }
        .emit();
    }

    /// The yield callback of `sign`: returns the signature, or handles a timeout.
    #[private]
    pub fn resolve_signature(
        &mut self,
        request_id: RequestId,
        ticket: u64,
        #[callback_result] result: Result<SignatureResponse, near_sdk::PromiseError>,
    ) {
        match self.resolve(request_id, ticket, result.ok()) {
            Resolution::Answer(response) => return_json(&response),
            // The new yield is already this call's result (see `yield_for`).
            Resolution::WaitAgain { .. } => {}
            Resolution::TimedOut { .. } => {
                let args = near_sdk::serde_json::json!({ "request_id": request_id });
                let failing = env::promise_create(
                    env::current_account_id(),
                    "fail_timed_out",
                    near_sdk::serde_json::to_vec(&args).expect("serialises"),
                    NearToken::from_yoctonear(0),
                    self.config.timeout_fail_gas,
                );
                env::promise_return(failing);
            }
        }
    }

    /// Ends a timed-out request with a clear error (its deposit is already refunded).
    #[private]
    pub fn fail_timed_out(&self, request_id: RequestId) {
        env::panic_str(&format!(
            "signature request {request_id} timed out: the MPC network did not answer in time. \
             The deposit was refunded; try again, or attach more gas to wait longer"
        ));
    }

    // ------------------------------------------------------------------ views

    /// The root public key, `secp256k1:<base58>`.
    pub fn public_key(&self) -> PublicKey {
        self.protocol_state
            .public_key()
            .cloned()
            .unwrap_or_else(|| {
                fail(Error::NotReady {
                    state: self.protocol_state.name(),
                })
            })
    }

    /// The key `predecessor` (default: the caller, unavailable in view calls) signs
    /// with for `path`.
    pub fn derived_public_key(&self, path: String, predecessor: Option<AccountId>) -> PublicKey {
        let predecessor = predecessor.unwrap_or_else(env::predecessor_account_id);
        let root = root_point(&self.public_key());
        let tweak = Tweak::derive(predecessor.as_str(), &path)
            .map_err(|_| Error::TweakOutOfRange)
            .or_fail();
        let derived = derive_public_key(&root, &tweak);
        PublicKey::from_parts(
            CurveType::SECP256K1,
            near_key::to_uncompressed_xy(&derived).to_vec(),
        )
        .expect("64 bytes make a secp256k1 key")
    }

    pub fn latest_key_version(&self) -> u32 {
        LATEST_KEY_VERSION
    }

    pub fn state(&self) -> &ProtocolContractState {
        &self.protocol_state
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_string()
    }

    /// The deposit `sign` needs, in yoctoNEAR.
    pub fn experimental_signature_deposit(&self) -> U128 {
        U128(self.config.sign_deposit.as_yoctonear())
    }

    /// Requests waiting for a signature, oldest first (positions shift as requests
    /// complete, so nodes should poll from 0 again rather than rely on an index).
    pub fn pending_requests(
        &self,
        from_index: Option<u32>,
        limit: Option<u32>,
    ) -> Vec<PendingRequest> {
        let from = from_index.unwrap_or(0) as usize;
        let limit = limit.unwrap_or(DEFAULT_PAGE).min(MAX_PAGE) as usize;
        self.pending
            .iter()
            .skip(from)
            .filter(|(_, entry)| entry.answer.is_none())
            .take(limit)
            .map(|(id, entry)| entry.view(*id))
            .collect()
    }

    /// One waiting request, if it still waits for an answer.
    pub fn pending_request(&self, request_id: RequestId) -> Option<PendingRequest> {
        self.pending
            .get(&request_id)
            .filter(|entry| entry.answer.is_none())
            .map(|entry| entry.view(request_id))
    }

    /// The open update proposals with their votes.
    pub fn proposed_updates(&self) -> Vec<update::UpdateView> {
        self.updates.iter().map(|(id, p)| p.view(*id)).collect()
    }

    // ------------------------------------------------------------------ governance

    /// A candidate votes for the public key its key generation produced. Once a
    /// threshold of candidates agree, the contract is Running. Returns whether it is.
    pub fn vote_pk(&mut self, public_key: PublicKey) -> bool {
        let voter = env::predecessor_account_id();
        root_point(&public_key);
        match &mut self.protocol_state {
            ProtocolContractState::Initializing(s) => {
                if !s.candidates.contains(&voter) {
                    fail(Error::NotACandidate { account: voter });
                }
                if s.pk_votes
                    .iter()
                    .any(|(key, voters)| key != &public_key && voters.contains(&voter))
                {
                    fail(Error::VotedOtherKey);
                }
                let voters = s.pk_votes.entry(public_key.clone()).or_default();
                voters.insert(voter.clone());
                let agreed = voters.len() >= s.threshold;
                emit_vote(&voter, "pk", &String::from(&public_key));
                if agreed {
                    let running = ProtocolContractState::Running(RunningContractState {
                        epoch: 0,
                        participants: s.candidates.clone(),
                        threshold: s.threshold,
                        public_key,
                        candidates: BTreeMap::new(),
                        join_votes: Votes::default(),
                        leave_votes: Votes::default(),
                    });
                    self.transition(running);
                }
                agreed
            }
            ProtocolContractState::Running(s) if s.public_key == public_key => true,
            ProtocolContractState::Running(_) => fail(Error::KeyMismatch),
            other => fail(Error::WrongState {
                expected: "Initializing",
                actual: other.name(),
            }),
        }
    }

    /// A node asks to become a participant; participants then `vote_join` it.
    pub fn join(&mut self, url: String, cipher_pk: [u8; 32], sign_pk: PublicKey) {
        let account = env::predecessor_account_id();
        let running = self.protocol_state.running_mut();
        if running.participants.contains(&account) {
            fail(Error::AlreadyParticipant { account });
        }
        if url.len() > MAX_URL_LEN {
            fail(Error::CandidateField {
                what: "url",
                max: MAX_URL_LEN,
            });
        }
        if !running.candidates.contains_key(&account) && running.candidates.len() >= MAX_CANDIDATES
        {
            fail(Error::TooManyCandidates {
                max: MAX_CANDIDATES,
            });
        }
        let info = CandidateInfo {
            account_id: account.clone(),
            url: url.clone(),
            cipher_pk,
            sign_pk,
        };
        running.candidates.insert(account.clone(), info);
        Event::CandidateJoined {
            candidate: account,
            url,
        }
        .emit();
    }

    /// A participant votes to admit `candidate`. A threshold of votes starts
    /// resharing to the participants plus the candidate. Returns whether it started.
    pub fn vote_join(&mut self, candidate: AccountId) -> bool {
        let voter = env::predecessor_account_id();
        let running = self.protocol_state.running_mut();
        if !running.participants.contains(&voter) {
            fail(Error::NotAParticipant { account: voter });
        }
        let info = running
            .candidates
            .get(&candidate)
            .cloned()
            .unwrap_or_else(|| {
                fail(Error::NotACandidate {
                    account: candidate.clone(),
                })
            });
        let votes = running
            .join_votes
            .cast(&candidate, &voter, &running.participants);
        emit_vote(&voter, "join", candidate.as_str());
        if votes < running.threshold {
            return false;
        }
        let mut new_participants = running.participants.clone();
        new_participants.insert(info);
        self.start_resharing(new_participants);
        true
    }

    /// A participant votes to remove `kick` (itself included). A threshold of votes
    /// starts resharing to the remaining participants. Returns whether it started.
    pub fn vote_leave(&mut self, kick: AccountId) -> bool {
        let voter = env::predecessor_account_id();
        let running = self.protocol_state.running_mut();
        if !running.participants.contains(&voter) {
            fail(Error::NotAParticipant { account: voter });
        }
        if !running.participants.contains(&kick) {
            fail(Error::NotAParticipant { account: kick });
        }
        let left = running.participants.len() - 1;
        if left < running.threshold {
            fail(Error::WouldBreakThreshold {
                left,
                threshold: running.threshold,
            });
        }
        let votes = running
            .leave_votes
            .cast(&kick, &voter, &running.participants);
        emit_vote(&voter, "leave", kick.as_str());
        if votes < running.threshold {
            return false;
        }
        let new_participants = running.participants.without(&kick);
        self.start_resharing(new_participants);
        true
    }

    /// A new participant reports that resharing into `epoch` finished. A threshold
    /// of reports makes the new participants the signers. Returns whether they are.
    pub fn vote_reshared(&mut self, epoch: u64) -> bool {
        let voter = env::predecessor_account_id();
        match &mut self.protocol_state {
            ProtocolContractState::Resharing(s) => {
                if !s.new_participants.contains(&voter) {
                    fail(Error::NotANewParticipant { account: voter });
                }
                if epoch != s.old_epoch + 1 {
                    fail(Error::WrongEpoch {
                        expected: s.old_epoch + 1,
                        got: epoch,
                    });
                }
                s.finished_votes.insert(voter.clone());
                emit_vote(&voter, "reshared", &epoch.to_string());
                if s.finished_votes.len() < s.threshold {
                    return false;
                }
                let running = ProtocolContractState::Running(RunningContractState {
                    epoch,
                    participants: s.new_participants.clone(),
                    threshold: s.threshold,
                    public_key: s.public_key.clone(),
                    candidates: BTreeMap::new(),
                    join_votes: Votes::default(),
                    leave_votes: Votes::default(),
                });
                self.transition(running);
                true
            }
            ProtocolContractState::Running(s) if s.epoch == epoch => true,
            other => fail(Error::WrongState {
                expected: "Resharing",
                actual: other.name(),
            }),
        }
    }

    /// A participant proposes new code, a new config, or both (borsh-encoded
    /// [`ProposeUpdateArgs`]). The deposit pays for storing the proposal; it is
    /// refunded when any update is applied. Returns the proposal id.
    #[payable]
    pub fn propose_update(&mut self, #[serializer(borsh)] args: ProposeUpdateArgs) -> u64 {
        let proposer = self.require_signer();
        if args.code.is_none() && args.config.is_none() {
            fail(Error::EmptyUpdate);
        }
        if let Some(config) = &args.config {
            config.validate().or_fail();
        }
        let id = self.next_update_id;
        self.next_update_id += 1;
        let code_len = args.code.as_ref().map_or(0, |c| c.len() as u64);
        let has_config = args.config.is_some();
        let before = env::storage_usage();
        let proposal = UpdateProposal {
            proposer: proposer.clone(),
            code: args.code,
            config: args.config,
            deposit: env::attached_deposit(),
            votes: BTreeSet::new(),
        };
        self.updates.insert(id, proposal);
        self.updates.flush();
        let used = env::storage_usage().saturating_sub(before);
        let required = env::storage_byte_cost().saturating_mul(used.into());
        if env::attached_deposit() < required {
            fail(Error::UpdateDeposit {
                required,
                got: env::attached_deposit(),
            });
        }
        Event::UpdateProposed {
            id,
            proposer,
            code_len,
            config: has_config,
        }
        .emit();
        id
    }

    /// A participant votes for update `id`. With a threshold of votes the update is
    /// applied: a new config at once, new code by deploying it and calling `migrate`.
    /// All open proposals are then cleared. Returns whether the update was applied.
    pub fn vote_update(&mut self, id: u64) -> bool {
        let voter = self.require_signer();
        let threshold = self
            .protocol_state
            .threshold()
            .expect("signers have a threshold");
        let signers = self.protocol_state.signers().expect("checked").clone();
        let proposal = self
            .updates
            .get_mut(&id)
            .unwrap_or_else(|| fail(Error::UnknownUpdate { id }));
        proposal.votes.insert(voter.clone());
        let votes = proposal
            .votes
            .iter()
            .filter(|v| signers.contains(v))
            .count();
        emit_vote(&voter, "update", &id.to_string());
        if votes < threshold {
            return false;
        }
        let proposal = self.updates.remove(&id).expect("read above");
        for (_, other) in self.updates.drain() {
            refund(&other.proposer, other.deposit);
        }
        refund(&proposal.proposer, proposal.deposit);
        if let Some(config) = proposal.config {
            self.config = config;
        }
        if let Some(code) = proposal.code {
            // Deploy and migrate in one receipt: if `migrate` fails, the old code stays.
            let batch = env::promise_batch_create(&env::current_account_id());
            env::promise_batch_action_deploy_contract(batch, &code);
            env::promise_batch_action_function_call(
                batch,
                "migrate",
                &[],
                NearToken::from_yoctonear(0),
                self.config.migrate_gas,
            );
        }
        Event::UpdateApplied { id }.emit();
        true
    }

    /// Runs after a code update: reads the stored state and brings it to this
    /// code's layout.
    #[private]
    #[init(ignore_state)]
    pub fn migrate() -> Self {
        let mut contract: MpcContract = env::state_read().unwrap_or_else(|| {
            fail(Error::WrongState {
                expected: "initialized",
                actual: "NotInitialized",
            })
        });
        if contract.state_version > STATE_VERSION {
            fail(Error::StateVersion {
                found: contract.state_version,
            });
        }
        contract.state_version = STATE_VERSION;
        contract
    }
}

impl MpcContract {
    fn with_state(protocol_state: ProtocolContractState, config: Config) -> Self {
        protocol_state.assert_invariants();
        MpcContract {
            state_version: STATE_VERSION,
            protocol_state,
            config,
            pending: IterableMap::new(StorageKey::Pending),
            next_ticket: 0,
            updates: IterableMap::new(StorageKey::Updates),
            next_update_id: 0,
        }
    }

    fn require_self_call() {
        if env::predecessor_account_id() != env::current_account_id() {
            fail(Error::InitByOther);
        }
    }

    /// The caller, if it holds a share of the current key.
    fn require_signer(&self) -> AccountId {
        let caller = env::predecessor_account_id();
        let signers = self.protocol_state.signers().unwrap_or_else(|| {
            fail(Error::NotReady {
                state: self.protocol_state.name(),
            })
        });
        if !signers.contains(&caller) {
            fail(Error::NotAParticipant { account: caller });
        }
        caller
    }

    /// Creates a yield whose callback is `resolve_signature(request_id, ticket)` and
    /// returns it as this call's result. The callback gets the configured gas plus
    /// all gas this call leaves unused. Returns the yield's data id.
    fn yield_for(&self, request_id: RequestId, ticket: u64) -> CryptoHash {
        let args =
            near_sdk::serde_json::to_vec(&ResolveArgs { request_id, ticket }).expect("serialises");
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
    fn resolve(
        &mut self,
        request_id: RequestId,
        ticket: u64,
        answer: Option<SignatureResponse>,
    ) -> Resolution {
        if let Some(response) = answer {
            return Resolution::Answer(response);
        }
        let Some(entry) = self.pending.get_mut(&request_id) else {
            // Unreachable while every ticket's entry outlives its yield.
            fail(Error::UnknownRequest);
        };
        if let Some(answer) = entry.answer.clone() {
            entry.remove_ticket(ticket);
            if entry.tickets.is_empty() {
                self.pending.remove(&request_id);
            }
            return Resolution::Answer(answer);
        }
        let remaining = env::prepaid_gas().saturating_sub(env::used_gas());
        if remaining
            >= self
                .config
                .yield_callback_gas
                .saturating_add(REYIELD_OVERHEAD)
        {
            let data_id = self.yield_for(request_id, ticket);
            let entry = self.pending.get_mut(&request_id).expect("read above");
            let slot = entry
                .ticket_mut(ticket)
                .unwrap_or_else(|| fail(Error::UnknownRequest));
            slot.data_id = data_id;
            slot.round += 1;
            let round = slot.round;
            Event::SignatureWaitExtended { request_id, round }.emit();
            return Resolution::WaitAgain { round };
        }
        let removed = entry
            .remove_ticket(ticket)
            .unwrap_or_else(|| fail(Error::UnknownRequest));
        let predecessor = entry.predecessor.clone();
        if entry.tickets.is_empty() {
            self.pending.remove(&request_id);
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

    fn start_resharing(&mut self, new_participants: Participants) {
        let running = self.protocol_state.running_mut();
        let resharing = ProtocolContractState::Resharing(ResharingContractState {
            old_epoch: running.epoch,
            old_participants: running.participants.clone(),
            new_participants,
            threshold: running.threshold,
            public_key: running.public_key.clone(),
            finished_votes: BTreeSet::new(),
        });
        self.transition(resharing);
    }

    fn transition(&mut self, next: ProtocolContractState) {
        next.assert_invariants();
        let from = self.protocol_state.name();
        emit_state_change(from, &next);
        self.protocol_state = next;
    }
}

/// Checks candidates given to `init`: keys match account ids, urls are bounded.
fn checked_candidates(candidates: BTreeMap<AccountId, CandidateInfo>) -> Participants {
    if candidates.is_empty() {
        fail(Error::NoCandidates);
    }
    for (account, info) in &candidates {
        if account != &info.account_id {
            fail(Error::CandidateKeyMismatch {
                key: account.clone(),
                account_id: info.account_id.clone(),
            });
        }
        if info.url.len() > MAX_URL_LEN {
            fail(Error::CandidateField {
                what: "url",
                max: MAX_URL_LEN,
            });
        }
    }
    Participants::from_candidates(candidates.into_values())
}

/// The curve point of a root public key, refusing keys that are not secp256k1.
fn root_point(key: &PublicKey) -> AffinePoint {
    if key.curve_type() != CurveType::SECP256K1 {
        fail(Error::NotSecp256k1Key);
    }
    let xy: &[u8; 64] = key.as_bytes()[1..]
        .try_into()
        .unwrap_or_else(|_| fail(Error::NotSecp256k1Key));
    near_key::from_uncompressed_xy(xy).unwrap_or_else(|_| fail(Error::NotSecp256k1Key))
}

/// Checks `response` against the request's payload and derived key with the host's
/// `ecrecover` (which also refuses high s).
fn verify_response(
    root: &AffinePoint,
    entry: &PendingEntry,
    response: &SignatureResponse,
) -> Result<(), Error> {
    let rs = response.check_form().map_err(Error::BadSignature)?;
    let tweak = Tweak::from_bytes(entry.epsilon).map_err(|_| Error::TweakOutOfRange)?;
    let expected = near_key::to_uncompressed_xy(&derive_public_key(root, &tweak));
    match env::ecrecover(entry.payload.as_bytes(), &rs, response.recovery_id, true) {
        Some(recovered) if recovered == expected => Ok(()),
        _ => Err(Error::BadSignature(ResponseError::DoesNotVerify)),
    }
}

fn return_json<T: Serialize>(value: &T) {
    env::value_return(near_sdk::serde_json::to_vec(value).expect("serialises"));
}

/// Sends `amount` back to `to` (nothing for zero). Uses the host functions directly:
/// near-sdk's `Promise` builder links code for every action kind into the wasm.
fn refund(to: &AccountId, amount: NearToken) {
    if !amount.is_zero() {
        let batch = env::promise_batch_create(to);
        env::promise_batch_action_transfer(batch, amount);
    }
}

fn emit_state_change(from: &str, next: &ProtocolContractState) {
    let epoch = match next {
        ProtocolContractState::Running(s) => Some(s.epoch),
        ProtocolContractState::Resharing(s) => Some(s.old_epoch + 1),
        _ => None,
    };
    Event::StateChanged {
        from: from.into(),
        to: next.name().into(),
        epoch,
    }
    .emit();
}

fn emit_vote(voter: &AccountId, kind: &str, subject: &str) {
    Event::Voted {
        voter: voter.clone(),
        kind: kind.into(),
        subject: subject.into(),
    }
    .emit();
}

#[cfg(test)]
mod tests;
