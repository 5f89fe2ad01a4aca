//! Between our types and frost-ed25519's: participant ids, scalars and points,
//! and frost's errors (whose culprits become our participant ids).
//!
//! frost-core is used without its `internals` and `serialization` features, so
//! everything crosses through its public 32-byte encodings: a scalar is 32 bytes
//! little-endian (canonical, below ℓ), a point its compressed Edwards form.

use crate::error::Error;
use crate::participants::{ParticipantId, Participants};
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::Scalar;
use frost_ed25519 as frost;
use primitives::ed25519::Ed25519PublicKey;
use std::collections::BTreeMap;

/// Our participant `id` is frost's identifier `id + 1` (frost's are non-zero
/// scalars; ours start at 0). Deterministic, so every party maps alike.
pub(crate) fn identifier(id: ParticipantId) -> frost::Identifier {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&(u64::from(id.0) + 1).to_le_bytes());
    frost::Identifier::deserialize(&bytes).expect("1..=2^32 is a non-zero canonical scalar")
}

/// The identifier as a scalar (for Lagrange coefficients).
pub(crate) fn identifier_scalar(id: ParticipantId) -> Scalar {
    Scalar::from(u64::from(id.0) + 1)
}

/// frost identifiers back to our ids, for naming culprits.
pub(crate) struct Ids(BTreeMap<frost::Identifier, ParticipantId>);

impl Ids {
    pub(crate) fn new(participants: &Participants) -> Self {
        Ids(participants.iter().map(|p| (identifier(p), p)).collect())
    }

    /// Our error for a frost error: [`Error::Misbehaved`] when frost names a culprit
    /// we know, else [`Error::VerificationFailed`].
    pub(crate) fn error(&self, e: frost::Error, during: &str) -> Error {
        match e.culprits().first().and_then(|c| self.0.get(c)) {
            Some(&culprit) => Error::Misbehaved {
                culprit,
                reason: format!("was caught in {during}: {e}"),
            },
            None => Error::VerificationFailed(format!("{during}: {e}")),
        }
    }
}

pub(crate) fn scalar_from_bytes(bytes: &[u8]) -> Option<Scalar> {
    let bytes: [u8; 32] = bytes.try_into().ok()?;
    Option::from(Scalar::from_canonical_bytes(bytes))
}

/// A point of the prime-order subgroup, not the identity.
pub(crate) fn point_from_bytes(bytes: &[u8]) -> Option<EdwardsPoint> {
    let bytes: [u8; 32] = bytes.try_into().ok()?;
    let point = CompressedEdwardsY(bytes).decompress()?;
    (point.is_torsion_free() && point != EdwardsPoint::default()).then_some(point)
}

pub(crate) fn signing_share(s: &Scalar) -> frost::keys::SigningShare {
    frost::keys::SigningShare::deserialize(s.as_bytes()).expect("a canonical scalar")
}

pub(crate) fn share_scalar(share: &frost::keys::SigningShare) -> Scalar {
    scalar_from_bytes(&share.serialize()).expect("frost writes canonical scalars")
}

pub(crate) fn verifying_share(p: &EdwardsPoint) -> Result<frost::keys::VerifyingShare, Error> {
    frost::keys::VerifyingShare::deserialize(p.compress().as_bytes())
        .map_err(|e| Error::VerificationFailed(format!("verifying share: {e}")))
}

pub(crate) fn verifying_key(key: &Ed25519PublicKey) -> Result<frost::VerifyingKey, Error> {
    frost::VerifyingKey::deserialize(key.as_bytes())
        .map_err(|e| Error::VerificationFailed(format!("group key: {e}")))
}

/// A frost element (verifying share or key) as our public key type.
pub(crate) fn public_key(
    serialized: Result<Vec<u8>, frost::Error>,
) -> Result<Ed25519PublicKey, Error> {
    let bytes = serialized.map_err(|e| Error::VerificationFailed(e.to_string()))?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| Error::VerificationFailed("a point is not 32 bytes".into()))?;
    Ed25519PublicKey::from_bytes(bytes).map_err(|e| Error::VerificationFailed(e.0))
}

/// The Lagrange coefficient at 0 of `me` within `set`, with identifiers id + 1.
pub(crate) fn lagrange(me: ParticipantId, set: &[ParticipantId]) -> Scalar {
    let xi = identifier_scalar(me);
    let (mut num, mut den) = (Scalar::ONE, Scalar::ONE);
    for &other in set.iter().filter(|p| **p != me) {
        let xj = identifier_scalar(other);
        num *= xj;
        den *= xj - xi;
    }
    num * den.invert()
}
