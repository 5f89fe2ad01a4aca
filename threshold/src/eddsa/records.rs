//! Durable EdDSA records, in the same format as the ECDSA ones
//! ([`crate::RECORD_VERSION`] byte, then borsh; serde for inspection).

use super::codec::{lagrange, point_from_bytes, scalar_from_bytes};
use crate::error::Error;
use crate::participants::{ParticipantId, Participants};
use crate::records::{check_threshold, decode, encode, ids, participants};
use borsh::{BorshDeserialize, BorshSerialize};
use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::Scalar;
use primitives::ed25519::Ed25519PublicKey;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

fn point(bytes: &[u8; 32], what: &str) -> Result<EdwardsPoint, Error> {
    point_from_bytes(bytes)
        .ok_or_else(|| Error::CorruptRecord(format!("{what} is not a point of the Ed25519 group")))
}

fn scalar(bytes: &[u8; 32], what: &str) -> Result<Scalar, Error> {
    scalar_from_bytes(bytes)
        .ok_or_else(|| Error::CorruptRecord(format!("{what} is not a scalar below ℓ")))
}

// ---------------------------------------------------------------- key share

/// A party's share of an Ed25519 root key (FROST), with everyone's verifying shares
/// and the group key. Secret: keep it encrypted at rest.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "EddsaKeyShareRecord", into = "EddsaKeyShareRecord")]
pub struct EddsaKeyShare {
    pub me: ParticipantId,
    pub participants: Participants,
    pub threshold: usize,
    pub(crate) signing_share: Scalar,
    /// `sᵢ·B` for every participant i: checks signature shares.
    pub verifying_shares: BTreeMap<ParticipantId, Ed25519PublicKey>,
    /// The root key `s·B`.
    pub public_key: Ed25519PublicKey,
}

#[derive(BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
struct EddsaKeyShareRecord {
    me: u32,
    participants: Vec<u32>,
    threshold: u32,
    signing_share: [u8; 32],
    /// In participant order.
    verifying_shares: Vec<[u8; 32]>,
    public_key: [u8; 32],
}

impl From<EddsaKeyShare> for EddsaKeyShareRecord {
    fn from(k: EddsaKeyShare) -> Self {
        EddsaKeyShareRecord {
            me: k.me.0,
            participants: ids(&k.participants),
            threshold: k.threshold as u32,
            signing_share: k.signing_share.to_bytes(),
            verifying_shares: k.verifying_shares.values().map(|p| *p.as_bytes()).collect(),
            public_key: *k.public_key.as_bytes(),
        }
    }
}

impl TryFrom<EddsaKeyShareRecord> for EddsaKeyShare {
    type Error = Error;
    fn try_from(r: EddsaKeyShareRecord) -> Result<Self, Error> {
        let participants = participants(&r.participants)?;
        let threshold = check_threshold(r.threshold, &participants)?;
        let me = ParticipantId(r.me);
        if !participants.contains(me) {
            return Err(Error::CorruptRecord(
                "the share's owner is not a participant".into(),
            ));
        }
        if r.verifying_shares.len() != participants.len() {
            return Err(Error::CorruptRecord(format!(
                "{} verifying shares for {} participants",
                r.verifying_shares.len(),
                participants.len()
            )));
        }
        let mut verifying_shares = BTreeMap::new();
        for (p, bytes) in participants.iter().zip(&r.verifying_shares) {
            let share = point(bytes, "a verifying share")?;
            verifying_shares.insert(p, Ed25519PublicKey::from_point(share));
        }
        let key = EddsaKeyShare {
            me,
            threshold,
            signing_share: scalar(&r.signing_share, "the signing share")?,
            verifying_shares,
            public_key: Ed25519PublicKey::from_point(point(&r.public_key, "the group key")?),
            participants,
        };
        key.check().map_err(Error::CorruptRecord)?;
        Ok(key)
    }
}

impl EddsaKeyShare {
    pub fn to_bytes(&self) -> Vec<u8> {
        encode(&EddsaKeyShareRecord::from(self.clone()))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        decode::<EddsaKeyShareRecord>(bytes)?.try_into()
    }

    /// Internal consistency: our share matches our verifying share, and the first
    /// `threshold` verifying shares interpolate to the group key.
    pub(crate) fn check(&self) -> Result<(), String> {
        let mine = self
            .verifying_shares
            .get(&self.me)
            .ok_or("no verifying share of our own")?;
        if EdwardsPoint::mul_base(&self.signing_share) != *mine.point() {
            return Err("the signing share does not match its verifying share".into());
        }
        let set: Vec<ParticipantId> = self.participants.iter().take(self.threshold).collect();
        let group: EdwardsPoint = set
            .iter()
            .map(|p| lagrange(*p, &set) * self.verifying_shares[p].point())
            .sum();
        if group != *self.public_key.point() {
            return Err("the verifying shares do not interpolate to the group key".into());
        }
        Ok(())
    }
}

impl fmt::Debug for EddsaKeyShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EddsaKeyShare")
            .field("me", &self.me)
            .field("participants", &self.participants)
            .field("threshold", &self.threshold)
            .field("signing_share", &"<secret>")
            .field("public_key", &self.public_key.to_near_string())
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------- presignature

/// One party's FROST round-one nonces for one future signature, with the
/// commitments of every party of the presigning set (made by
/// [`crate::eddsa::presign`]).
///
/// **Use at most once, ever**: two signatures with the same nonces reveal the
/// signing share. Mark it consumed in durable storage *before* releasing a
/// signature share.
///
/// Deliberately not `Clone`: the only copy is the stored one.
#[derive(PartialEq, Eq, Deserialize)]
#[serde(try_from = "EddsaPresignatureRecord")]
pub struct EddsaPresignature {
    pub me: ParticipantId,
    /// The parties whose commitments are here; any `threshold` of them may sign.
    pub participants: Participants,
    pub threshold: usize,
    /// The root key this was made for.
    pub public_key: Ed25519PublicKey,
    pub(crate) hiding: Scalar,
    pub(crate) binding: Scalar,
    /// (hiding, binding) nonce commitments of every participant, ours included.
    pub commitments: BTreeMap<ParticipantId, (Ed25519PublicKey, Ed25519PublicKey)>,
}

#[derive(BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
struct EddsaPresignatureRecord {
    me: u32,
    participants: Vec<u32>,
    threshold: u32,
    public_key: [u8; 32],
    hiding: [u8; 32],
    binding: [u8; 32],
    /// (hiding, binding) in participant order.
    commitments: Vec<([u8; 32], [u8; 32])>,
}

impl From<&EddsaPresignature> for EddsaPresignatureRecord {
    fn from(p: &EddsaPresignature) -> Self {
        EddsaPresignatureRecord {
            me: p.me.0,
            participants: ids(&p.participants),
            threshold: p.threshold as u32,
            public_key: *p.public_key.as_bytes(),
            hiding: p.hiding.to_bytes(),
            binding: p.binding.to_bytes(),
            commitments: p
                .commitments
                .values()
                .map(|(d, e)| (*d.as_bytes(), *e.as_bytes()))
                .collect(),
        }
    }
}

impl TryFrom<EddsaPresignatureRecord> for EddsaPresignature {
    type Error = Error;
    fn try_from(r: EddsaPresignatureRecord) -> Result<Self, Error> {
        let participants = participants(&r.participants)?;
        let threshold = check_threshold(r.threshold, &participants)?;
        let me = ParticipantId(r.me);
        if !participants.contains(me) {
            return Err(Error::CorruptRecord(
                "the presignature's owner is not a participant".into(),
            ));
        }
        if r.commitments.len() != participants.len() {
            return Err(Error::CorruptRecord(format!(
                "{} commitments for {} participants",
                r.commitments.len(),
                participants.len()
            )));
        }
        let mut commitments = BTreeMap::new();
        for (p, (d, e)) in participants.iter().zip(&r.commitments) {
            commitments.insert(
                p,
                (
                    Ed25519PublicKey::from_point(point(d, "a hiding commitment")?),
                    Ed25519PublicKey::from_point(point(e, "a binding commitment")?),
                ),
            );
        }
        let presignature = EddsaPresignature {
            me,
            threshold,
            public_key: Ed25519PublicKey::from_point(point(&r.public_key, "the group key")?),
            hiding: scalar(&r.hiding, "the hiding nonce")?,
            binding: scalar(&r.binding, "the binding nonce")?,
            commitments,
            participants,
        };
        let (d, e) = &presignature.commitments[&me];
        if EdwardsPoint::mul_base(&presignature.hiding) != *d.point()
            || EdwardsPoint::mul_base(&presignature.binding) != *e.point()
        {
            return Err(Error::CorruptRecord(
                "the nonces do not match their commitments".into(),
            ));
        }
        Ok(presignature)
    }
}

impl Serialize for EddsaPresignature {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Serialize::serialize(&EddsaPresignatureRecord::from(self), serializer)
    }
}

impl EddsaPresignature {
    pub fn to_bytes(&self) -> Vec<u8> {
        encode(&EddsaPresignatureRecord::from(self))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        decode::<EddsaPresignatureRecord>(bytes)?.try_into()
    }
}

impl fmt::Debug for EddsaPresignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EddsaPresignature")
            .field("me", &self.me)
            .field("participants", &self.participants)
            .field("threshold", &self.threshold)
            .field("nonces", &"<secret>")
            .finish_non_exhaustive()
    }
}
