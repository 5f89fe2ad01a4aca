//! The protocol state machine: who the participants are, which key they hold, and
//! the votes that move the network between states.
//!
//! ```text
//! NotInitialized --init--> Initializing --vote_pk (threshold votes)--> Running(epoch 0)
//! Running(e) --vote_join / vote_leave (threshold votes)--> Resharing(e -> e+1)
//! Resharing --vote_reshared (threshold of the new participants)--> Running(e+1)
//! ```
//! The public key never changes after key generation; during resharing the old
//! participants keep answering requests with their shares of it.
//!
//! Invariant (asserted on every transition): `1 <= threshold <= participants`.

use crate::errors::{fail, Error};
use near_sdk::{near, AccountId, PublicKey};
use std::collections::{BTreeMap, BTreeSet};

/// What a node registers: where to reach it and the keys that authenticate and
/// encrypt its peer-to-peer traffic.
#[near(serializers = [borsh, json])]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CandidateInfo {
    pub account_id: AccountId,
    /// The node's peer-to-peer address, e.g. `https://node1.example.com:3000`.
    pub url: String,
    /// The node's key for encrypting peer-to-peer messages to it.
    pub cipher_pk: [u8; 32],
    /// The node's key for authenticating its peer-to-peer messages.
    pub sign_pk: PublicKey,
}

/// A participant: a candidate with the protocol id it keeps for as long as it stays.
#[near(serializers = [borsh, json])]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParticipantInfo {
    /// The party number used by the threshold protocols.
    pub id: u32,
    pub account_id: AccountId,
    pub url: String,
    pub cipher_pk: [u8; 32],
    pub sign_pk: PublicKey,
}

/// The participants of one epoch, by account; ids are never reused.
#[near(serializers = [borsh, json])]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Participants {
    pub next_id: u32,
    pub participants: BTreeMap<AccountId, ParticipantInfo>,
}

impl Participants {
    pub fn from_candidates(candidates: impl IntoIterator<Item = CandidateInfo>) -> Self {
        let mut participants = Participants::default();
        for candidate in candidates {
            participants.insert(candidate);
        }
        participants
    }

    pub fn insert(&mut self, candidate: CandidateInfo) {
        let info = ParticipantInfo {
            id: self.next_id,
            account_id: candidate.account_id.clone(),
            url: candidate.url,
            cipher_pk: candidate.cipher_pk,
            sign_pk: candidate.sign_pk,
        };
        self.next_id += 1;
        self.participants.insert(candidate.account_id, info);
    }

    pub fn contains(&self, account: &AccountId) -> bool {
        self.participants.contains_key(account)
    }

    pub fn len(&self) -> usize {
        self.participants.len()
    }

    pub fn is_empty(&self) -> bool {
        self.participants.is_empty()
    }

    pub fn without(&self, account: &AccountId) -> Self {
        let mut rest = self.clone();
        rest.participants.remove(account);
        rest
    }
}

/// Votes for one subject each (a candidate to admit, a participant to remove), by voter.
#[near(serializers = [borsh, json])]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Votes {
    pub votes: BTreeMap<AccountId, BTreeSet<AccountId>>,
}

impl Votes {
    /// Records `voter`'s vote for `subject` and returns how many votes it now has,
    /// counting only voters in `electorate` (participants may have left since voting).
    pub fn cast(
        &mut self,
        subject: &AccountId,
        voter: &AccountId,
        electorate: &Participants,
    ) -> usize {
        let voters = self.votes.entry(subject.clone()).or_default();
        voters.insert(voter.clone());
        voters.iter().filter(|v| electorate.contains(v)).count()
    }
}

#[near(serializers = [borsh, json])]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitializingContractState {
    /// The parties of key generation, with their protocol ids.
    pub candidates: Participants,
    pub threshold: usize,
    /// Votes for the generated public key, by key.
    pub pk_votes: BTreeMap<PublicKey, BTreeSet<AccountId>>,
}

#[near(serializers = [borsh, json])]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunningContractState {
    pub epoch: u64,
    pub participants: Participants,
    pub threshold: usize,
    pub public_key: PublicKey,
    /// Nodes that called `join` and wait for votes.
    pub candidates: BTreeMap<AccountId, CandidateInfo>,
    pub join_votes: Votes,
    pub leave_votes: Votes,
}

#[near(serializers = [borsh, json])]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResharingContractState {
    pub old_epoch: u64,
    pub old_participants: Participants,
    pub new_participants: Participants,
    pub threshold: usize,
    pub public_key: PublicKey,
    /// New participants that reported resharing done.
    pub finished_votes: BTreeSet<AccountId>,
}

#[near(serializers = [borsh, json])]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProtocolContractState {
    NotInitialized,
    Initializing(InitializingContractState),
    Running(RunningContractState),
    Resharing(ResharingContractState),
}

impl ProtocolContractState {
    pub fn name(&self) -> &'static str {
        match self {
            ProtocolContractState::NotInitialized => "NotInitialized",
            ProtocolContractState::Initializing(_) => "Initializing",
            ProtocolContractState::Running(_) => "Running",
            ProtocolContractState::Resharing(_) => "Resharing",
        }
    }

    /// The key requests are signed with, once key generation has finished.
    pub fn public_key(&self) -> Option<&PublicKey> {
        match self {
            ProtocolContractState::Running(s) => Some(&s.public_key),
            ProtocolContractState::Resharing(s) => Some(&s.public_key),
            _ => None,
        }
    }

    /// The participants who hold shares of the current key and may `respond`.
    pub fn signers(&self) -> Option<&Participants> {
        match self {
            ProtocolContractState::Running(s) => Some(&s.participants),
            ProtocolContractState::Resharing(s) => Some(&s.old_participants),
            _ => None,
        }
    }

    pub fn threshold(&self) -> Option<usize> {
        match self {
            ProtocolContractState::NotInitialized => None,
            ProtocolContractState::Initializing(s) => Some(s.threshold),
            ProtocolContractState::Running(s) => Some(s.threshold),
            ProtocolContractState::Resharing(s) => Some(s.threshold),
        }
    }

    pub fn running_mut(&mut self) -> &mut RunningContractState {
        let actual = self.name();
        match self {
            ProtocolContractState::Running(s) => s,
            _ => fail(Error::WrongState {
                expected: "Running",
                actual,
            }),
        }
    }

    /// Asserts the state machine's invariant.
    pub fn assert_invariants(&self) {
        let (threshold, sizes): (usize, Vec<usize>) = match self {
            ProtocolContractState::NotInitialized => return,
            ProtocolContractState::Initializing(s) => (s.threshold, vec![s.candidates.len()]),
            ProtocolContractState::Running(s) => (s.threshold, vec![s.participants.len()]),
            ProtocolContractState::Resharing(s) => (
                s.threshold,
                vec![s.old_participants.len(), s.new_participants.len()],
            ),
        };
        for n in sizes {
            assert!(
                threshold >= 1 && threshold <= n,
                "invariant broken: threshold {threshold} with {n} participants"
            );
        }
    }
}

/// `1 <= threshold <= participants`, or the error that says why not.
pub fn check_threshold(threshold: usize, participants: usize) -> Result<(), Error> {
    if threshold == 0 || threshold > participants {
        return Err(Error::BadThreshold {
            threshold,
            participants,
        });
    }
    Ok(())
}
