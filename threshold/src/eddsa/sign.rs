//! FROST signing for a derived key, one online round (`round2::sign`, then
//! `aggregate` at every signer).
//!
//! | round | sent | body |
//! | --- | --- | --- |
//! | 1 | to all | our signature share (32 bytes) |
//!
//! **The tweak.** The derived key is `Y' = Y + ε·B` for the root `Y = s·B`. With
//! Shamir shares `sᵢ` of `s`, every holder uses `sᵢ' = sᵢ + ε`: for any signing set
//! S the Lagrange coefficients at 0 sum to one, so `Σ λᵢ(sᵢ + ε) = s + ε`, the
//! secret of `Y'`. Verifying shares move alike, `Yᵢ' = Yᵢ + ε·B`. We build frost's
//! `KeyPackage` and `PublicKeyPackage` from these tweaked values through its public
//! constructors; FROST's binding factors hash the derived key and the message, so
//! nonces made before either was known cannot be steered.

use super::codec::{self, Ids};
use super::machine::{Driven, Inbox, Machine, Out, Progress};
use super::records::{EddsaKeyShare, EddsaPresignature};
use crate::error::Error;
use crate::instance::Instance;
use crate::participants::{ParticipantId, Participants};
use crate::wire::{InstanceId, ProtocolKind};
use curve25519_dalek::edwards::EdwardsPoint;
use frost_ed25519 as frost;
use primitives::ed25519::{Ed25519PublicKey, Ed25519Tweak};
use primitives::{Ed25519Signature, EddsaPayload};
use std::collections::BTreeMap;

/// What an EdDSA signature is for: the message and the caller's tweak. Every
/// signer must use the same task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EddsaSignTask {
    pub payload: EddsaPayload,
    pub tweak: Ed25519Tweak,
}

/// Checks `signature` over `message` for `key` (a derived key) as RFC 8032 asks
/// (FROST's Ed25519 ciphersuite does the check, as it does for the signatures
/// [`sign`] makes): for a node that takes a signature from a peer instead of
/// signing itself.
pub fn verify(
    key: &Ed25519PublicKey,
    message: &[u8],
    signature: &Ed25519Signature,
) -> Result<(), Error> {
    let signature = frost::Signature::deserialize(&signature.0)
        .map_err(|e| Error::VerificationFailed(format!("not a signature: {e}")))?;
    codec::verifying_key(key)?
        .verify(message, &signature)
        .map_err(|e| Error::VerificationFailed(format!("the signature does not verify: {e}")))
}

/// Signs `task` with the derived key `root + ε·B`, consuming `presignature` (mark
/// it used in durable storage first). `participants` are the signers: at least the
/// key's threshold, all holders of the presignature. Every signer outputs the
/// signature, verified for the derived key.
pub fn sign(
    instance: InstanceId,
    me: ParticipantId,
    participants: Participants,
    key: &EddsaKeyShare,
    presignature: EddsaPresignature,
    task: &EddsaSignTask,
) -> Result<Instance<Ed25519Signature>, Error> {
    participants.check(me, key.threshold)?;
    if key.me != me || presignature.me != me {
        return Err(Error::BadParameters(
            "the key share or presignature belongs to another participant".into(),
        ));
    }
    if presignature.public_key != key.public_key || presignature.threshold != key.threshold {
        return Err(Error::BadParameters(
            "the presignature was made for another key".into(),
        ));
    }
    if !participants.is_subset_of(&presignature.participants) {
        return Err(Error::BadParameters(
            "not every signer holds this presignature".into(),
        ));
    }
    let threshold = key.threshold as u16;
    let epsilon = *task.tweak.as_scalar();
    let shift = EdwardsPoint::mul_base(&epsilon);
    let derived = key.public_key.derive(&task.tweak);
    let derived_key = codec::verifying_key(&derived)?;

    let mut verifying_shares = BTreeMap::new();
    for (p, share) in &key.verifying_shares {
        verifying_shares.insert(
            codec::identifier(*p),
            codec::verifying_share(&(share.point() + shift))?,
        );
    }
    let my_verifying = verifying_shares[&codec::identifier(me)];
    let public = frost::keys::PublicKeyPackage::new(verifying_shares, derived_key, Some(threshold));
    let key_package = frost::keys::KeyPackage::new(
        codec::identifier(me),
        codec::signing_share(&(key.signing_share + epsilon)),
        my_verifying,
        derived_key,
        threshold,
    );

    let mut commitments = BTreeMap::new();
    for p in participants.iter() {
        let (d, e) = &presignature.commitments[&p];
        let c = |point: &Ed25519PublicKey| {
            frost::round1::NonceCommitment::deserialize(point.as_bytes())
                .map_err(|e| Error::VerificationFailed(format!("nonce commitment: {e}")))
        };
        commitments.insert(
            codec::identifier(p),
            frost::round1::SigningCommitments::new(c(d)?, c(e)?),
        );
    }
    let package = frost::SigningPackage::new(commitments, task.payload.as_bytes());
    let nonce = |s: &curve25519_dalek::Scalar| {
        frost_core::round1::Nonce::<frost::Ed25519Sha512>::deserialize(s.as_bytes())
            .expect("a canonical scalar")
    };
    let nonces = frost::round1::SigningNonces::from_nonces(
        nonce(&presignature.hiding),
        nonce(&presignature.binding),
    );
    drop(presignature);
    let share = frost::round2::sign(&package, &nonces, &key_package)
        .map_err(|e| Error::VerificationFailed(format!("signing: {e}")))?;

    let others: Vec<ParticipantId> = participants.iter().filter(|p| *p != me).collect();
    let machine = Sign {
        me,
        ids: Ids::new(&participants),
        package,
        public,
        derived_key,
        share,
        sent: false,
    };
    Ok(Instance::from_driver(
        ProtocolKind::EddsaSign,
        instance,
        me,
        participants,
        Box::new(Driven::new(machine, Inbox::new(1, others))),
    ))
}

struct Sign {
    me: ParticipantId,
    ids: Ids,
    package: frost::SigningPackage,
    public: frost::keys::PublicKeyPackage,
    derived_key: frost::VerifyingKey,
    share: frost::round2::SignatureShare,
    sent: bool,
}

impl Machine for Sign {
    type Output = Ed25519Signature;

    fn advance(&mut self, inbox: &mut Inbox) -> Result<Progress<Ed25519Signature>, Error> {
        if !self.sent {
            self.sent = true;
            return Ok(Progress::Send(vec![Out::All(1, self.share.serialize())]));
        }
        if !inbox.complete(1) {
            return Ok(Progress::Wait);
        }
        let mut shares = BTreeMap::new();
        for (from, body) in inbox.take(1) {
            let share = frost::round2::SignatureShare::deserialize(&body).map_err(|e| {
                Error::Misbehaved {
                    culprit: from,
                    reason: format!("sent an unreadable signature share: {e}"),
                }
            })?;
            shares.insert(codec::identifier(from), share);
        }
        shares.insert(codec::identifier(self.me), self.share);
        let signature = frost::aggregate(&self.package, &shares, &self.public)
            .map_err(|e| self.ids.error(e, "signing"))?;
        self.derived_key
            .verify(self.package.message(), &signature)
            .map_err(|e| {
                Error::VerificationFailed(format!("the signature does not verify: {e}"))
            })?;
        let bytes: [u8; 64] = signature
            .serialize()
            .map_err(|e| Error::VerificationFailed(e.to_string()))?
            .try_into()
            .map_err(|_| Error::VerificationFailed("a signature is not 64 bytes".into()))?;
        Ok(Progress::Done(Ed25519Signature(bytes)))
    }
}
