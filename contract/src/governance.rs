//! Membership, domains and key events, and updates: the calls nodes make to move
//! the network between states (see [`crate::state`] for the state machine).

use crate::errors::{fail, Error, OrFail};
use crate::events::Event;
use crate::sorted::SortedSet;
use crate::state::{
    check_new_domains, check_threshold, Candidate, CandidateInfo, DomainKey, KeyEvent, KeyEventId,
    Participants, ProtocolContractState, ResharingContractState, RunningContractState,
};
use crate::update::{ProposeUpdateArgs, UpdateProposal};
use crate::{emit_vote, refund, MpcContract, MAX_CANDIDATES, MAX_URL_LEN};
use near_sdk::{env, AccountId, NearToken, PublicKey};
use primitives::DomainConfig;

impl MpcContract {
    // ------------------------------------------------------------------ key events

    /// A participant of the keygen under way votes for the public key its attempt
    /// produced. The attempt completes when every participant voted the same key;
    /// a vote for a different key ends the attempt (it can never complete) and the
    /// next begins. Returns whether this vote completed the attempt.
    pub fn vote_pk(&mut self, key_event: KeyEventId, public_key: PublicKey) -> bool {
        let voter = env::predecessor_account_id();
        self.roll_key_event();
        let now = env::block_height();
        let timeout = self.config.key_event_timeout_blocks;
        let ProtocolContractState::Initializing(state) = &mut *self.protocol_state else {
            fail(Error::WrongState {
                expected: "Initializing",
                actual: self.protocol_state.name(),
            })
        };
        let event = &mut state.key_event;
        event.require_participant(&voter).or_fail();
        event.check_id(&key_event).or_fail();
        let domain = event.domain.expect("keygen names its domain");
        if !crate::keys::key_fits_scheme(&public_key, domain.scheme) {
            fail(Error::KeyNotOfScheme {
                scheme: domain.scheme,
            });
        }
        emit_vote(&voter, "pk", &String::from(&public_key));
        match &event.public_key {
            Some(agreed) if agreed != &public_key => {
                let failed = event.id();
                event.restart(now, timeout);
                self.next_attempt = self.next_attempt.max(event.attempt + 1);
                emit_attempt_failed(failed, event.attempt, "votes disagree on the public key");
                return false;
            }
            _ => event.public_key = Some(public_key.clone()),
        }
        event.votes.insert(voter);
        if !event.complete() {
            return false;
        }
        let attempt = event.attempt;
        let mut running = state.running.clone();
        let mut generating = state.generating.clone();
        generating.remove(0);
        running.domains.push(DomainKey {
            id: domain.id,
            scheme: domain.scheme,
            public_key,
            attempt,
        });
        let next = if generating.is_empty() {
            ProtocolContractState::Running(running.without_votes())
        } else {
            self.keygen_state(running, generating)
        };
        self.transition(next);
        true
    }

    /// A new participant reports that it holds its shares of every domain's key from
    /// the resharing attempt `key_event`. When all of them have, they become the
    /// signers of the next epoch. Returns whether this vote completed the resharing.
    pub fn vote_reshared(&mut self, key_event: KeyEventId) -> bool {
        let voter = env::predecessor_account_id();
        self.roll_key_event();
        let ProtocolContractState::Resharing(state) = &mut *self.protocol_state else {
            fail(Error::WrongState {
                expected: "Resharing",
                actual: self.protocol_state.name(),
            })
        };
        let event = &mut state.key_event;
        event.require_participant(&voter).or_fail();
        event.check_id(&key_event).or_fail();
        emit_vote(&voter, "reshared", &event.attempt.to_string());
        event.votes.insert(voter);
        if !event.complete() {
            return false;
        }
        let previous = &state.previous;
        let mut running = RunningContractState::new(
            event.epoch,
            event.participants.clone(),
            event.threshold,
            previous.domains.clone(),
            previous.next_domain_id,
        );
        for domain in &mut running.domains {
            domain.attempt = event.attempt;
        }
        running.candidates = previous
            .candidates
            .iter()
            .filter(|(account, _)| !running.participants.contains(account))
            .map(|(account, c)| (account.clone(), c.clone()))
            .collect();
        self.transition(ProtocolContractState::Running(running));
        true
    }

    /// A participant of the key event reports that attempt `key_event` failed for
    /// it: the attempt can never complete, so the next one begins at once.
    pub fn vote_abort_key_event(&mut self, key_event: KeyEventId) {
        let voter = env::predecessor_account_id();
        self.roll_key_event();
        let now = env::block_height();
        let timeout = self.config.key_event_timeout_blocks;
        let event = self
            .protocol_state
            .key_event_mut()
            .unwrap_or_else(|| fail(Error::NoKeyEvent));
        event.require_participant(&voter).or_fail();
        event.check_id(&key_event).or_fail();
        let failed = event.id();
        event.restart(now, timeout);
        let next = event.attempt;
        self.next_attempt = self.next_attempt.max(next + 1);
        emit_vote(&voter, "abort", &failed.attempt.to_string());
        emit_attempt_failed(failed, next, &format!("{voter} reported failure"));
    }

    /// A signer of the running set votes to cancel the key event under way: a
    /// threshold of votes goes back to Running on that set, which never stopped
    /// signing (a resharing is dropped; domains still without keys are dropped, and
    /// their ids are not reused). Returns whether the event was cancelled.
    pub fn vote_cancel_key_event(&mut self) -> bool {
        let voter = self.require_signer();
        let (running, votes) = match &mut *self.protocol_state {
            ProtocolContractState::Initializing(s) => {
                if s.running.domains.is_empty() {
                    fail(Error::NothingToFallBackTo);
                }
                s.cancel_votes.insert(voter.clone());
                (&s.running, &s.cancel_votes)
            }
            ProtocolContractState::Resharing(s) => {
                s.cancel_votes.insert(voter.clone());
                (&s.previous, &s.cancel_votes)
            }
            _ => fail(Error::NoKeyEvent),
        };
        emit_vote(&voter, "cancel", "key event");
        let count = votes
            .iter()
            .filter(|v| running.participants.contains(v))
            .count();
        if count < running.threshold {
            return false;
        }
        let back = running.clone().without_votes();
        self.roll_key_event();
        self.transition(ProtocolContractState::Running(back));
        true
    }

    /// A participant votes to add `domains` (ids continuing from `next_domain_id`, in
    /// order). When a threshold of participants voted for the same list, their keys
    /// are generated while the existing domains keep signing. Returns whether
    /// key generation started.
    pub fn vote_add_domains(&mut self, domains: Vec<DomainConfig>) -> bool {
        let voter = env::predecessor_account_id();
        let running = self.protocol_state.running_mut();
        if !running.participants.contains(&voter) {
            fail(Error::NotAParticipant { account: voter });
        }
        check_new_domains(&domains, running.next_domain_id).or_fail();
        running
            .add_domains_votes
            .insert(voter.clone(), domains.clone());
        let votes = running
            .add_domains_votes
            .iter()
            .filter(|(v, proposal)| running.participants.contains(v) && **proposal == domains)
            .count();
        let ids: Vec<String> = domains.iter().map(|d| d.id.to_string()).collect();
        emit_vote(&voter, "add_domains", &ids.join(","));
        if votes < running.threshold {
            return false;
        }
        let mut running = running.clone().without_votes();
        running.next_domain_id = domains.last().expect("checked non-empty").id.next();
        let next = self.keygen_state(running, domains);
        self.transition(next);
        true
    }

    // ------------------------------------------------------------------ membership

    /// A node asks to become a participant; participants then `vote_join` it. The
    /// request expires after `candidate_expiry_blocks`.
    pub fn join(&mut self, url: String, cipher_pk: [u8; 32], sign_pk: PublicKey) {
        let account = env::predecessor_account_id();
        let now = env::block_height();
        let expiry = self.config.candidate_expiry_blocks;
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
        let info = CandidateInfo {
            account_id: account.clone(),
            url: url.clone(),
            cipher_pk,
            sign_pk,
        };
        // Expired candidates are gone: they hold no p2p keys and no place.
        running
            .candidates
            .retain(|_, c| now < c.joined_at.saturating_add(expiry));
        if running.uses_p2p_key(&info) {
            fail(Error::P2pKeyInUse);
        }
        if !running.candidates.contains_key(&account) && running.candidates.len() >= MAX_CANDIDATES
        {
            fail(Error::TooManyCandidates {
                max: MAX_CANDIDATES,
            });
        }
        // A fresh request starts a fresh vote: votes for an expired one do not carry over.
        if !running.candidates.contains_key(&account) {
            running.join_votes.votes.remove(&account);
        }
        running.candidates.insert(
            account.clone(),
            Candidate {
                info,
                joined_at: now,
            },
        );
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
        let now = env::block_height();
        let expiry = self.config.candidate_expiry_blocks;
        let running = self.protocol_state.running_mut();
        if !running.participants.contains(&voter) {
            fail(Error::NotAParticipant { account: voter });
        }
        let entry = running
            .candidates
            .get(&candidate)
            .cloned()
            .unwrap_or_else(|| {
                fail(Error::NotACandidate {
                    account: candidate.clone(),
                })
            });
        if now >= entry.joined_at.saturating_add(expiry) {
            fail(Error::CandidateExpired { account: candidate });
        }
        let votes = running
            .join_votes
            .cast(&candidate, &voter, &running.participants);
        emit_vote(&voter, "join", candidate.as_str());
        if votes < running.threshold {
            return false;
        }
        let mut new_participants = running.participants.clone();
        new_participants.insert(entry.info);
        let threshold = running.threshold;
        self.start_resharing(new_participants, threshold);
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
        let threshold = running.threshold;
        self.start_resharing(new_participants, threshold);
        true
    }

    // ------------------------------------------------------------------ updates

    /// A participant proposes new code, a new config, or both (borsh-encoded
    /// [`ProposeUpdateArgs`]). The deposit pays for storing the proposal; it is
    /// refunded when any update is applied. Returns the proposal id.
    pub fn propose_update(&mut self, args: ProposeUpdateArgs) -> u64 {
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
            votes: SortedSet::new(),
        };
        self.updates.insert_new(&id, &proposal);
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
        let mut stored = self
            .updates
            .entry(&id)
            .unwrap_or_else(|| fail(Error::UnknownUpdate { id }));
        stored.value.votes.insert(voter.clone());
        let votes = stored
            .value
            .votes
            .iter()
            .filter(|v| signers.contains(v))
            .count();
        emit_vote(&voter, "update", &id.to_string());
        if votes < threshold {
            self.updates.update(&id, &stored);
            return false;
        }
        let proposal = stored.value;
        self.updates.remove(&id);
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
}

impl MpcContract {
    /// Resharing every domain's key to `new_participants` with `threshold`, while the
    /// running set keeps signing.
    fn start_resharing(&mut self, new_participants: Participants, threshold: usize) {
        check_threshold(threshold, new_participants.len()).or_fail();
        let attempt = self.take_attempt();
        let previous = self.protocol_state.running_mut().clone();
        let key_event = KeyEvent::new(
            previous.epoch + 1,
            None,
            new_participants,
            threshold,
            attempt,
            env::block_height(),
            self.config.key_event_timeout_blocks,
        );
        let resharing = ProtocolContractState::Resharing(ResharingContractState {
            previous,
            key_event,
            cancel_votes: SortedSet::new(),
        });
        self.transition(resharing);
    }
}

fn emit_attempt_failed(failed: KeyEventId, next_attempt: u64, reason: &str) {
    Event::KeyEventAttemptFailed {
        epoch: failed.epoch,
        domain_id: failed.domain_id,
        attempt: failed.attempt,
        next_attempt,
        reason: reason.into(),
    }
    .emit();
}
