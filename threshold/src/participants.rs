//! Who takes part: party ids as the contract assigns them.

use crate::error::Error;
use borsh::{BorshDeserialize, BorshSerialize};
use cait_sith::protocol::Participant;
use serde::{Deserialize, Serialize};

/// A party's protocol id: the `id` the contract gave the participant. Ids are
/// never reused, so an id names one node for the network's whole life.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    BorshSerialize,
    BorshDeserialize,
)]
pub struct ParticipantId(pub u32);

impl From<ParticipantId> for Participant {
    fn from(id: ParticipantId) -> Self {
        Participant::from(id.0)
    }
}

impl From<Participant> for ParticipantId {
    fn from(p: Participant) -> Self {
        ParticipantId(u32::from(p))
    }
}

/// A sorted set of at least two distinct participants.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Vec<ParticipantId>", into = "Vec<ParticipantId>")]
pub struct Participants(Vec<ParticipantId>);

impl Participants {
    /// Sorts `ids`; refuses duplicates and sets smaller than two (the protocols are
    /// multi-party).
    ///
    /// ```
    /// use threshold::{ParticipantId, Participants};
    /// let set = Participants::new([2, 0, 1].map(ParticipantId)).unwrap();
    /// assert_eq!(set.len(), 3);
    /// assert!(Participants::new([ParticipantId(1), ParticipantId(1)]).is_err());
    /// ```
    pub fn new(ids: impl IntoIterator<Item = ParticipantId>) -> Result<Self, Error> {
        let mut ids: Vec<ParticipantId> = ids.into_iter().collect();
        ids.sort();
        let before = ids.len();
        ids.dedup();
        if ids.len() != before {
            return Err(Error::BadParameters(
                "participant list has duplicates".into(),
            ));
        }
        if ids.len() < 2 {
            return Err(Error::BadParameters(format!(
                "at least 2 participants are needed, got {}",
                ids.len()
            )));
        }
        Ok(Participants(ids))
    }

    /// Participants `0..n`.
    pub fn first(n: u32) -> Result<Self, Error> {
        Self::new((0..n).map(ParticipantId))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, id: ParticipantId) -> bool {
        self.0.binary_search(&id).is_ok()
    }

    pub fn iter(&self) -> impl Iterator<Item = ParticipantId> + '_ {
        self.0.iter().copied()
    }

    /// Whether every member of `self` is in `other`.
    pub fn is_subset_of(&self, other: &Participants) -> bool {
        self.iter().all(|id| other.contains(id))
    }

    pub(crate) fn to_cait_sith(&self) -> Vec<Participant> {
        self.iter().map(Participant::from).collect()
    }

    /// Checks `1 <= threshold <= len` and that `me` is a member.
    pub(crate) fn check(&self, me: ParticipantId, threshold: usize) -> Result<(), Error> {
        if threshold == 0 || threshold > self.len() {
            return Err(Error::BadParameters(format!(
                "threshold {threshold} must be between 1 and the {} participants",
                self.len()
            )));
        }
        if !self.contains(me) {
            return Err(Error::BadParameters(format!(
                "participant {} is not in the list",
                me.0
            )));
        }
        Ok(())
    }
}

impl TryFrom<Vec<ParticipantId>> for Participants {
    type Error = Error;
    fn try_from(ids: Vec<ParticipantId>) -> Result<Self, Error> {
        Participants::new(ids)
    }
}

impl From<Participants> for Vec<ParticipantId> {
    fn from(p: Participants) -> Self {
        p.0
    }
}
