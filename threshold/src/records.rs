//! Durable, versioned formats for what a party keeps: its key share, triples and
//! presignatures.
//!
//! Binary form: one format-version byte (1), then the borsh encoding of the record.
//! The same records serialise with serde (for JSON inspection); scalars and points
//! are written as bytes and checked when read back.
//!
//! Key safety (DESIGN.md §7) rests on the caller, and is repeated on each type:
//! a [`Triple`] or a [`Presignature`] is used at most once, ever. The functions
//! that consume them take them by value, so a program cannot use one twice without
//! a copy from storage; storage must mark them consumed *before* the protocol that
//! uses them releases anything.

use crate::error::Error;
use crate::participants::{ParticipantId, Participants};
use borsh::{BorshDeserialize, BorshSerialize};
use k256::elliptic_curve::sec1::{FromEncodedPoint, ToEncodedPoint};
use k256::elliptic_curve::PrimeField;
use k256::{AffinePoint, EncodedPoint, Scalar};
use serde::{Deserialize, Serialize};
use std::fmt;

pub const RECORD_VERSION: u8 = 1;

pub(crate) fn encode<R: BorshSerialize>(record: &R) -> Vec<u8> {
    let mut out = vec![RECORD_VERSION];
    record
        .serialize(&mut out)
        .expect("writing to a Vec cannot fail");
    out
}

pub(crate) fn decode<R: BorshDeserialize>(bytes: &[u8]) -> Result<R, Error> {
    match bytes.first() {
        None => Err(Error::CorruptRecord("empty record".into())),
        Some(&RECORD_VERSION) => {
            R::try_from_slice(&bytes[1..]).map_err(|e| Error::CorruptRecord(e.to_string()))
        }
        Some(&other) => Err(Error::UnsupportedVersion(other)),
    }
}

fn scalar(bytes: &[u8; 32], what: &str) -> Result<Scalar, Error> {
    Option::from(Scalar::from_repr((*bytes).into())).ok_or_else(|| {
        Error::CorruptRecord(format!("{what} is not a scalar below the curve order"))
    })
}

fn point(bytes: &[u8], what: &str) -> Result<AffinePoint, Error> {
    let encoded = EncodedPoint::from_bytes(bytes)
        .map_err(|_| Error::CorruptRecord(format!("{what} is not a SEC1 point")))?;
    let point: Option<AffinePoint> = AffinePoint::from_encoded_point(&encoded).into();
    point.ok_or_else(|| Error::CorruptRecord(format!("{what} is not on the curve")))
}

fn point_bytes(point: &AffinePoint) -> Vec<u8> {
    point.to_encoded_point(true).as_bytes().to_vec()
}

pub(crate) fn ids(participants: &Participants) -> Vec<u32> {
    participants.iter().map(|p| p.0).collect()
}

pub(crate) fn participants(ids: &[u32]) -> Result<Participants, Error> {
    Participants::new(ids.iter().copied().map(ParticipantId))
        .map_err(|e| Error::CorruptRecord(e.to_string()))
}

pub(crate) fn check_threshold(threshold: u32, participants: &Participants) -> Result<usize, Error> {
    let threshold = threshold as usize;
    if threshold == 0 || threshold > participants.len() {
        return Err(Error::CorruptRecord(format!(
            "threshold {threshold} does not fit {} participants",
            participants.len()
        )));
    }
    Ok(threshold)
}

// ---------------------------------------------------------------- key share

/// A party's share of the root secret key, with the public key it belongs to.
/// Secret: keep it encrypted at rest.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "KeyShareRecord", into = "KeyShareRecord")]
pub struct KeyShare {
    pub me: ParticipantId,
    pub participants: Participants,
    pub threshold: usize,
    pub(crate) private_share: Scalar,
    pub public_key: AffinePoint,
}

#[derive(BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
struct KeyShareRecord {
    me: u32,
    participants: Vec<u32>,
    threshold: u32,
    private_share: [u8; 32],
    public_key: Vec<u8>,
}

impl From<KeyShare> for KeyShareRecord {
    fn from(k: KeyShare) -> Self {
        KeyShareRecord {
            me: k.me.0,
            participants: ids(&k.participants),
            threshold: k.threshold as u32,
            private_share: k.private_share.to_bytes().into(),
            public_key: point_bytes(&k.public_key),
        }
    }
}

impl TryFrom<KeyShareRecord> for KeyShare {
    type Error = Error;
    fn try_from(r: KeyShareRecord) -> Result<Self, Error> {
        let participants = participants(&r.participants)?;
        let threshold = check_threshold(r.threshold, &participants)?;
        let me = ParticipantId(r.me);
        if !participants.contains(me) {
            return Err(Error::CorruptRecord(
                "the share's owner is not a participant".into(),
            ));
        }
        Ok(KeyShare {
            me,
            participants,
            threshold,
            private_share: scalar(&r.private_share, "private share")?,
            public_key: point(&r.public_key, "public key")?,
        })
    }
}

impl KeyShare {
    pub fn to_bytes(&self) -> Vec<u8> {
        encode(&KeyShareRecord::from(self.clone()))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        decode::<KeyShareRecord>(bytes)?.try_into()
    }
}

impl fmt::Debug for KeyShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyShare")
            .field("me", &self.me)
            .field("participants", &self.participants)
            .field("threshold", &self.threshold)
            .field("private_share", &"<secret>")
            .field(
                "public_key",
                &primitives::near_key::to_near_string(&self.public_key),
            )
            .finish()
    }
}

// ---------------------------------------------------------------- triple

/// One party's share of a Beaver triple (a·b = c) with public commitments A, B, C.
///
/// **Use at most once, ever**: a presignature consumes two triples; using a triple
/// twice leaks the key. Mark it consumed in durable storage before presigning.
///
/// Deliberately not `Clone`: the only copy is the stored one.
#[derive(PartialEq, Eq, Deserialize)]
#[serde(try_from = "TripleRecord")]
pub struct Triple {
    pub participants: Participants,
    pub threshold: usize,
    pub(crate) a: Scalar,
    pub(crate) b: Scalar,
    pub(crate) c: Scalar,
    pub big_a: AffinePoint,
    pub big_b: AffinePoint,
    pub big_c: AffinePoint,
}

#[derive(BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
struct TripleRecord {
    participants: Vec<u32>,
    threshold: u32,
    a: [u8; 32],
    b: [u8; 32],
    c: [u8; 32],
    big_a: Vec<u8>,
    big_b: Vec<u8>,
    big_c: Vec<u8>,
}

impl From<&Triple> for TripleRecord {
    fn from(t: &Triple) -> Self {
        TripleRecord {
            participants: ids(&t.participants),
            threshold: t.threshold as u32,
            a: t.a.to_bytes().into(),
            b: t.b.to_bytes().into(),
            c: t.c.to_bytes().into(),
            big_a: point_bytes(&t.big_a),
            big_b: point_bytes(&t.big_b),
            big_c: point_bytes(&t.big_c),
        }
    }
}

impl TryFrom<TripleRecord> for Triple {
    type Error = Error;
    fn try_from(r: TripleRecord) -> Result<Self, Error> {
        let participants = participants(&r.participants)?;
        Ok(Triple {
            threshold: check_threshold(r.threshold, &participants)?,
            participants,
            a: scalar(&r.a, "a")?,
            b: scalar(&r.b, "b")?,
            c: scalar(&r.c, "c")?,
            big_a: point(&r.big_a, "A")?,
            big_b: point(&r.big_b, "B")?,
            big_c: point(&r.big_c, "C")?,
        })
    }
}

impl Serialize for Triple {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Serialize::serialize(&TripleRecord::from(self), serializer)
    }
}

impl Triple {
    pub fn to_bytes(&self) -> Vec<u8> {
        encode(&TripleRecord::from(self))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        decode::<TripleRecord>(bytes)?.try_into()
    }

    pub(crate) fn into_cait_sith(
        self,
    ) -> (
        cait_sith::triples::TripleShare<k256::Secp256k1>,
        cait_sith::triples::TriplePub<k256::Secp256k1>,
    ) {
        (
            cait_sith::triples::TripleShare {
                a: self.a,
                b: self.b,
                c: self.c,
            },
            cait_sith::triples::TriplePub {
                big_a: self.big_a,
                big_b: self.big_b,
                big_c: self.big_c,
                participants: self.participants.to_cait_sith(),
                threshold: self.threshold,
            },
        )
    }
}

impl fmt::Debug for Triple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Triple")
            .field("participants", &self.participants)
            .field("threshold", &self.threshold)
            .field("shares", &"<secret>")
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------- presignature

/// One party's share of a presignature: the nonce point R = g^(1/k) and shares of
/// k and σ = k·x, made before the message is known.
///
/// **Use at most once, ever**: two signatures from one presignature reveal the key.
/// Mark it consumed in durable storage *before* releasing a signature share. Signing
/// re-randomises it with chain entropy ([`crate::sign`]), so one made in advance
/// cannot be steered.
///
/// Deliberately not `Clone`: the only copy is the stored one.
#[derive(PartialEq, Eq, Deserialize)]
#[serde(try_from = "PresignatureRecord")]
pub struct Presignature {
    pub participants: Participants,
    pub threshold: usize,
    pub big_r: AffinePoint,
    pub(crate) k: Scalar,
    pub(crate) sigma: Scalar,
}

#[derive(BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
struct PresignatureRecord {
    participants: Vec<u32>,
    threshold: u32,
    big_r: Vec<u8>,
    k: [u8; 32],
    sigma: [u8; 32],
}

impl From<&Presignature> for PresignatureRecord {
    fn from(p: &Presignature) -> Self {
        PresignatureRecord {
            participants: ids(&p.participants),
            threshold: p.threshold as u32,
            big_r: point_bytes(&p.big_r),
            k: p.k.to_bytes().into(),
            sigma: p.sigma.to_bytes().into(),
        }
    }
}

impl TryFrom<PresignatureRecord> for Presignature {
    type Error = Error;
    fn try_from(r: PresignatureRecord) -> Result<Self, Error> {
        let participants = participants(&r.participants)?;
        Ok(Presignature {
            threshold: check_threshold(r.threshold, &participants)?,
            participants,
            big_r: point(&r.big_r, "R")?,
            k: scalar(&r.k, "k")?,
            sigma: scalar(&r.sigma, "sigma")?,
        })
    }
}

impl Serialize for Presignature {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Serialize::serialize(&PresignatureRecord::from(self), serializer)
    }
}

impl Presignature {
    pub fn to_bytes(&self) -> Vec<u8> {
        encode(&PresignatureRecord::from(self))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        decode::<PresignatureRecord>(bytes)?.try_into()
    }
}

impl fmt::Debug for Presignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Presignature")
            .field("participants", &self.participants)
            .field("threshold", &self.threshold)
            .field("big_r", &point_bytes(&self.big_r))
            .field("shares", &"<secret>")
            .finish()
    }
}
