//! Key derivation: one master key, one key per (caller account, path).
//!
//! The tweak is `ε = SHA3-256(EPSILON_DERIVATION_PREFIX ‖ predecessor ‖ "," ‖ path)`,
//! read as a big-endian scalar, and the derived key is `root + ε·G`. A holder of a
//! share `xᵢ` of the root secret signs for the derived key by adding ε to the secret
//! (or, equivalently, to a presignature's σ), so the network never stores derived keys.
//!
//! These constants and formulas match the deployed NEAR MPC network bit for bit, so
//! addresses computed by other NEAR tools agree with ours.

use k256::elliptic_curve::PrimeField;
use k256::{AffinePoint, ProjectivePoint, Scalar};
use sha3::{Digest, Sha3_256};

/// The domain-separation prefix of the tweak hash, as deployed on NEAR.
pub const EPSILON_DERIVATION_PREFIX: &str = "near-mpc-recovery v0.1.0 epsilon derivation:";

/// The tweak hash `SHA3-256(prefix ‖ predecessor ‖ "," ‖ path)`, before it is read
/// as a scalar of a particular curve (big-endian for secp256k1, see [`Tweak`];
/// little-endian mod ℓ for Ed25519, see [`crate::ed25519::Ed25519Tweak`]).
pub fn tweak_hash(predecessor: &str, path: &str) -> [u8; 32] {
    let mut hasher = Sha3_256::new();
    hasher.update(EPSILON_DERIVATION_PREFIX.as_bytes());
    hasher.update(predecessor.as_bytes());
    hasher.update(b",");
    hasher.update(path.as_bytes());
    hasher.finalize().into()
}

/// The additive tweak ε for one (predecessor account, path) pair.
///
/// Serialised as its 32 big-endian bytes; always a canonical scalar (below the curve
/// order).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Tweak(Scalar);

/// A hash that is not a canonical scalar (≥ the curve order). It happens with
/// probability about 2⁻¹²⁸; the request cannot be served and should use another path.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TweakOutOfRange;

impl core::fmt::Display for TweakOutOfRange {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("the derivation hash of this account and path is not below the secp256k1 curve order; use another path")
    }
}

impl Tweak {
    /// Derives the tweak for `predecessor` (the NEAR account that calls `sign`) and `path`.
    pub fn derive(predecessor: &str, path: &str) -> Result<Self, TweakOutOfRange> {
        Self::from_bytes(tweak_hash(predecessor, path))
    }

    /// Reads a tweak from its 32 big-endian bytes, rejecting values ≥ the curve order.
    pub fn from_bytes(bytes: [u8; 32]) -> Result<Self, TweakOutOfRange> {
        Option::<Scalar>::from(Scalar::from_repr(bytes.into()))
            .map(Tweak)
            .ok_or(TweakOutOfRange)
    }

    /// The tweak's 32 big-endian bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes().into()
    }

    /// The tweak as a scalar, for adding it to key shares or presignatures.
    pub fn as_scalar(&self) -> &Scalar {
        &self.0
    }
}

/// The derived public key `root + ε·G`.
pub fn derive_public_key(root: &AffinePoint, tweak: &Tweak) -> AffinePoint {
    (ProjectivePoint::GENERATOR * tweak.0 + ProjectivePoint::from(*root)).to_affine()
}

/// The derived public key of `predecessor` and `path` under `root`.
pub fn derive_public_key_for(
    root: &AffinePoint,
    predecessor: &str,
    path: &str,
) -> Result<AffinePoint, TweakOutOfRange> {
    Ok(derive_public_key(root, &Tweak::derive(predecessor, path)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::near_key;
    use num_bigint::BigUint;

    const MAINNET_ROOT: &str = "secp256k1:3tFRbMqmoa6AAALMrEFAYCEoHcqKxeW38YptwowBVBtXK1vo36HDbUWuR6EZmoK4JcH6HDkNMGGqP1ouV7VZUWya";
    const TESTNET_ROOT: &str = "secp256k1:4NfTiv3UsGahebgTaHyD9vF8KYKMBnfd6kh94mK6xv8fGBiJB8TBtFMP5WWXz6B89Ac1fbpzPwAvoyQebemHFwx3";

    /// The same derivation computed with independent code: the hash by hand with the
    /// `sha3` crate, the big-endian reading with `num-bigint`, the curve arithmetic
    /// with libsecp256k1 (`secp256k1` crate's `add_exp_tweak`), the key text parsed
    /// with `bs58` directly.
    fn independent_derivation(root_text: &str, predecessor: &str, path: &str) -> [u8; 65] {
        let body = root_text.strip_prefix("secp256k1:").unwrap();
        let raw = bs58::decode(body).into_vec().unwrap();
        assert_eq!(raw.len(), 64);
        let mut sec1 = vec![0x04];
        sec1.extend_from_slice(&raw);
        let root = secp256k1::PublicKey::from_slice(&sec1).unwrap();

        let preimage = format!("near-mpc-recovery v0.1.0 epsilon derivation:{predecessor},{path}");
        let hash: [u8; 32] = Sha3_256::digest(preimage.as_bytes()).into();
        let order = BigUint::parse_bytes(
            b"FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141",
            16,
        )
        .unwrap();
        assert!(BigUint::from_bytes_be(&hash) < order);
        let tweak = secp256k1::Scalar::from_be_bytes(hash).unwrap();
        let secp = secp256k1::Secp256k1::verification_only();
        root.add_exp_tweak(&secp, &tweak)
            .unwrap()
            .serialize_uncompressed()
    }

    fn ours(root_text: &str, predecessor: &str, path: &str) -> [u8; 65] {
        let root = near_key::parse_secp256k1(root_text).unwrap();
        let derived = derive_public_key_for(&root, predecessor, path).unwrap();
        let mut out = [0u8; 65];
        out[0] = 4;
        out[1..].copy_from_slice(&near_key::to_uncompressed_xy(&derived));
        out
    }

    #[test]
    fn derivation_matches_independent_computation_on_public_root_keys() {
        for root in [MAINNET_ROOT, TESTNET_ROOT] {
            for (who, path) in [
                ("alice.near", "ethereum-1"),
                ("bob.testnet", "bitcoin-1"),
                ("dev-20240101-1234.testnet", ""),
                ("a.b.c.near", "a,b,c with spaces and ünïcödé"),
            ] {
                assert_eq!(
                    ours(root, who, path),
                    independent_derivation(root, who, path)
                );
            }
        }
    }

    #[test]
    fn tweak_bytes_are_the_big_endian_hash() {
        let tweak = Tweak::derive("alice.near", "ethereum-1").unwrap();
        let hash: [u8; 32] =
            Sha3_256::digest(b"near-mpc-recovery v0.1.0 epsilon derivation:alice.near,ethereum-1")
                .into();
        assert_eq!(tweak.to_bytes(), hash);
    }

    #[test]
    fn separator_keeps_accounts_and_paths_apart() {
        // "a.near" + "," + "b,c" and "a.near,b" + "," + "c" hash the same text; the
        // account id alphabet has no comma, so only the first pair can occur on NEAR.
        // Different paths of one account give different keys.
        let one = Tweak::derive("alice.near", "ethereum-1").unwrap();
        let two = Tweak::derive("alice.near", "ethereum-2").unwrap();
        let other = Tweak::derive("bob.near", "ethereum-1").unwrap();
        assert_ne!(one, two);
        assert_ne!(one, other);
    }

    #[test]
    fn tweak_at_or_above_the_order_is_rejected() {
        let order: [u8; 32] =
            hex::decode("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141")
                .unwrap()
                .try_into()
                .unwrap();
        assert_eq!(Tweak::from_bytes(order), Err(TweakOutOfRange));
        assert_eq!(Tweak::from_bytes([0xff; 32]), Err(TweakOutOfRange));
        let mut below = order;
        below[31] -= 1;
        assert!(Tweak::from_bytes(below).is_ok());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Any account and path: our derivation equals the independent one.
        #[test]
        fn derivation_matches_for_any_account_and_path(
            account in "[a-z0-9_-]{2,20}(\\.[a-z0-9_-]{1,10}){0,2}",
            path in "\\PC{0,40}",
        ) {
            proptest::prop_assert_eq!(
                ours(TESTNET_ROOT, &account, &path),
                independent_derivation(TESTNET_ROOT, &account, &path)
            );
        }
    }
}
