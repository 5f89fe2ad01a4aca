//! FROST Ed25519: every protocol with all parties in one process, on the
//! deterministic local network with shuffled delivery and injected faults. Every
//! signature is checked with ed25519-dalek's `verify_strict` against the derived
//! key computed by `primitives`, and again with the RFC 8032 equation computed
//! directly on curve25519-dalek points.
//!
//! This file holds what both halves use (runs of all parties, signature
//! checks); the tests are in `signing` (keygen, nonce commitments, signing,
//! faults, records) and `resharing`.

mod resharing;
mod signing;

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::Scalar;
use primitives::ed25519::{Ed25519PublicKey, Ed25519Tweak};
use primitives::{Ed25519Signature, EddsaPayload};
use sha2::{Digest, Sha512};
use std::collections::{BTreeMap, VecDeque};
use threshold::eddsa::{self, EddsaKeyShare, EddsaPresignature, EddsaSignTask};
use threshold::local::{self, Schedule};
use threshold::{Error, Instance, ParticipantId, Participants, Recipient, Step};

use threshold::local::{instance_id as id, shuffled};

fn set(ids: &[u32]) -> Participants {
    Participants::new(ids.iter().copied().map(ParticipantId)).unwrap()
}

fn keygen_all(parties: &Participants, threshold: usize, seed: u64) -> Vec<EddsaKeyShare> {
    let instances = parties
        .iter()
        .map(|me| eddsa::keygen(id(6, seed), me, parties.clone(), threshold).unwrap())
        .collect();
    local::run(instances, &shuffled(seed)).all_done().unwrap()
}

fn key_of(keys: &[EddsaKeyShare], me: ParticipantId) -> &EddsaKeyShare {
    keys.iter().find(|k| k.me == me).unwrap()
}

/// Presignatures of `holders` (a subset of the key holders), in participant order.
fn presign_all(
    keys: &[EddsaKeyShare],
    holders: &Participants,
    seed: u64,
) -> Vec<EddsaPresignature> {
    let instances = holders
        .iter()
        .map(|me| eddsa::presign(id(7, seed), me, holders.clone(), key_of(keys, me)).unwrap())
        .collect();
    local::run(instances, &shuffled(seed)).all_done().unwrap()
}

fn sign_instances(
    keys: &[EddsaKeyShare],
    presignatures: Vec<EddsaPresignature>,
    signers: &Participants,
    task: &EddsaSignTask,
    seed: u64,
) -> Vec<Instance<Ed25519Signature>> {
    presignatures
        .into_iter()
        .filter(|p| signers.contains(p.me))
        .map(|p| {
            let me = p.me;
            eddsa::sign(id(8, seed), me, signers.clone(), key_of(keys, me), p, task).unwrap()
        })
        .collect()
}

fn sign_all(
    keys: &[EddsaKeyShare],
    presignatures: Vec<EddsaPresignature>,
    signers: &Participants,
    task: &EddsaSignTask,
    seed: u64,
) -> Vec<Ed25519Signature> {
    let instances = sign_instances(keys, presignatures, signers, task, seed);
    local::run(instances, &shuffled(seed)).all_done().unwrap()
}

fn task(predecessor: &str, path: &str, message: Vec<u8>) -> EddsaSignTask {
    EddsaSignTask {
        payload: EddsaPayload::new(message).unwrap(),
        tweak: Ed25519Tweak::derive(predecessor, path),
    }
}

/// Checks a signature as a Solana validator (ed25519-dalek, strict) and, separately,
/// by the RFC 8032 equation [S]B = R + [k]A, k = SHA-512(R ‖ A ‖ M) mod ℓ.
fn assert_valid(
    signature: &Ed25519Signature,
    root: &Ed25519PublicKey,
    predecessor: &str,
    path: &str,
    message: &[u8],
) {
    let derived = root.derive_for(predecessor, path);
    let key = ed25519_dalek::VerifyingKey::from_bytes(derived.as_bytes()).unwrap();
    key.verify_strict(message, &ed25519_dalek::Signature::from_bytes(&signature.0))
        .expect("ed25519-dalek verifies the signature for the derived key");

    let (r_bytes, s_bytes) = signature.0.split_at(32);
    let r = CompressedEdwardsY(r_bytes.try_into().unwrap())
        .decompress()
        .expect("R is a point");
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes.try_into().unwrap()))
        .expect("S is canonical");
    let a = CompressedEdwardsY(*derived.as_bytes())
        .decompress()
        .unwrap();
    let mut hash = Sha512::new();
    hash.update(r_bytes);
    hash.update(derived.as_bytes());
    hash.update(message);
    let k = Scalar::from_bytes_mod_order_wide(&hash.finalize().into());
    assert_eq!(EdwardsPoint::mul_base(&s), r + k * a, "RFC 8032 equation");
}

/// Every output key share is consistent: same group key, parameters, verifying
/// shares, and its own share matches (the record round-trip re-checks that).
fn assert_consistent(keys: &[EddsaKeyShare], parties: &Participants, threshold: usize) {
    for key in keys {
        assert_eq!(key.public_key, keys[0].public_key);
        assert_eq!(key.verifying_shares, keys[0].verifying_shares);
        assert_eq!(&key.participants, parties);
        assert_eq!(key.threshold, threshold);
        assert_eq!(&EddsaKeyShare::from_bytes(&key.to_bytes()).unwrap(), key);
    }
}

/// A key run with message `garble` garbled: exactly one party fails, with a typed
/// error naming the garbling as misbehaviour or a failed check; returns the
/// shares of the parties that finished anyway.
fn one_typed_failure(outcome: local::Outcome<EddsaKeyShare>, garble: usize) -> Vec<EddsaKeyShare> {
    assert_eq!(outcome.failures.len(), 1, "garble {garble}: {outcome:?}");
    for error in outcome.failures.values() {
        assert!(
            matches!(
                error,
                Error::Misbehaved { .. } | Error::VerificationFailed(_)
            ),
            "{error:?}"
        );
    }
    outcome.outputs.into_values().collect()
}
