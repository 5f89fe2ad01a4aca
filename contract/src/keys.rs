//! Root keys of domains: whether a key fits its scheme, and the keys derived from
//! them. secp256k1 arithmetic goes through the host's `ecrecover`
//! ([`primitives::recover`]), so the wasm carries no secp256k1 curve code.

use crate::errors::Error;
use crate::state::DomainKey;
use near_sdk::{env, CurveType, PublicKey};
use primitives::ed25519::{Ed25519PublicKey, Ed25519Tweak};
use primitives::recover::{below_order, tweak_add_call};
use primitives::SignatureScheme;

/// The 64 bytes `x ‖ y` of a secp256k1 key.
fn secp256k1_xy(key: &PublicKey) -> Option<[u8; 64]> {
    if key.curve_type() != CurveType::SECP256K1 {
        return None;
    }
    key.as_bytes().get(1..)?.try_into().ok()
}

fn ed25519_bytes(key: &PublicKey) -> Option<[u8; 32]> {
    if key.curve_type() != CurveType::ED25519 {
        return None;
    }
    key.as_bytes().get(1..)?.try_into().ok()
}

/// `P + tweak·G` for the point `xy`, by one `ecrecover`; `None` when `xy` is not on
/// the curve with an x below the order, or the tweak is not below the order.
fn tweak_add(xy: &[u8; 64], tweak: &[u8; 32]) -> Option<[u8; 64]> {
    let call = tweak_add_call(xy, tweak)?;
    env::ecrecover(&call.hash, &call.signature, call.v, false)
}

/// Whether `key` is a public key of `scheme`: the right curve, and a point on it.
/// (A secp256k1 point with an x at or above the order, probability 2⁻¹²⁸, is
/// refused as well: its derived keys could not be computed here.)
pub fn key_fits_scheme(key: &PublicKey, scheme: SignatureScheme) -> bool {
    match scheme {
        SignatureScheme::Secp256k1 => {
            secp256k1_xy(key).is_some_and(|xy| tweak_add(&xy, &[0; 32]) == Some(xy))
        }
        SignatureScheme::Ed25519 => {
            ed25519_bytes(key).is_some_and(|raw| Ed25519PublicKey::from_bytes(raw).is_ok())
        }
    }
}

/// Whether `key` has the curve and length of `scheme` (the cheap part of
/// [`key_fits_scheme`], for invariants asserted on every transition).
pub fn key_has_scheme_shape(key: &PublicKey, scheme: SignatureScheme) -> bool {
    match scheme {
        SignatureScheme::Secp256k1 => secp256k1_xy(key).is_some(),
        SignatureScheme::Ed25519 => ed25519_bytes(key).is_some(),
    }
}

/// The secp256k1 key derived in `domain` for the tweak hash `hash` (read
/// big-endian): `root + ε·G`, as 64 bytes.
pub fn derive_secp256k1(domain: &DomainKey, hash: &[u8; 32]) -> Result<[u8; 64], Error> {
    if !below_order(hash) {
        return Err(Error::TweakOutOfRange);
    }
    secp256k1_xy(&domain.public_key)
        .and_then(|root| tweak_add(&root, hash))
        .ok_or(Error::KeyNotOfScheme {
            scheme: SignatureScheme::Secp256k1,
        })
}

/// The Ed25519 key derived in `domain` for the tweak hash `hash` (read
/// little-endian mod ℓ): `root + ε·B`.
pub fn derive_ed25519(domain: &DomainKey, hash: [u8; 32]) -> Result<Ed25519PublicKey, Error> {
    ed25519_bytes(&domain.public_key)
        .and_then(|raw| Ed25519PublicKey::from_bytes(raw).ok())
        .map(|root| root.derive(&Ed25519Tweak::from_hash(hash)))
        .ok_or(Error::KeyNotOfScheme {
            scheme: SignatureScheme::Ed25519,
        })
}
