//! Ed25519 domains: the tweak, derived keys, NEAR's `ed25519:` key text and Solana
//! addresses.
//!
//! The tweak hash is the same as for secp256k1 ([`crate::derivation::tweak_hash`]),
//! but read **little-endian and reduced mod ℓ** (the order of the Ed25519 base
//! point), as the deployed network does. The derived key is `root + ε·B` in
//! compressed Edwards form; a holder of a share of the root secret signs for it by
//! adding ε to its share.

use crate::derivation::tweak_hash;
use crate::near_key::KeyParseError;
use alloc::format;
use alloc::string::String;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::Scalar;

const PREFIX: &str = "ed25519:";

/// The additive tweak ε of one (predecessor account, path) pair on Ed25519.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Ed25519Tweak(Scalar);

impl Ed25519Tweak {
    /// The tweak for `predecessor` (the account that calls `sign`) and `path`.
    pub fn derive(predecessor: &str, path: &str) -> Self {
        Self::from_hash(tweak_hash(predecessor, path))
    }

    /// Reads the 32-byte tweak hash little-endian, reduced mod ℓ. Every hash is a
    /// valid tweak.
    pub fn from_hash(hash: [u8; 32]) -> Self {
        Ed25519Tweak(Scalar::from_bytes_mod_order(hash))
    }

    /// The tweak as a scalar, for adding it to a signing share.
    pub fn as_scalar(&self) -> &Scalar {
        &self.0
    }
}

/// A point that is the public key of some Ed25519 secret: a valid compressed
/// Edwards y-coordinate. Kept in both forms: compressed for text and hashing, the
/// point for arithmetic.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Ed25519PublicKey {
    compressed: [u8; 32],
    point: EdwardsPoint,
}

impl Ed25519PublicKey {
    /// Reads a 32-byte compressed point, refusing bytes that are not on the curve.
    pub fn from_bytes(bytes: [u8; 32]) -> Result<Self, KeyParseError> {
        let point = CompressedEdwardsY(bytes)
            .decompress()
            .ok_or_else(|| KeyParseError("the public key is not a point on Ed25519".into()))?;
        Ok(Self::from_point(point))
    }

    pub fn from_point(point: EdwardsPoint) -> Self {
        Ed25519PublicKey {
            compressed: point.compress().to_bytes(),
            point,
        }
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.compressed
    }

    pub fn point(&self) -> &EdwardsPoint {
        &self.point
    }

    /// Parses NEAR's text form `ed25519:<base58 of 32 bytes>`.
    ///
    /// ```
    /// use primitives::ed25519::Ed25519PublicKey;
    /// let text = "ed25519:6vSEtQxrQj6txUMh33WC4ERyCWmNMRTdufDWAaDY3Un2";
    /// assert_eq!(Ed25519PublicKey::parse(text).unwrap().to_near_string(), text);
    /// ```
    pub fn parse(text: &str) -> Result<Self, KeyParseError> {
        let body = text.strip_prefix(PREFIX).ok_or_else(|| {
            KeyParseError(format!(
                "an Ed25519 public key must start with `{PREFIX}`, got `{text}`"
            ))
        })?;
        let raw = bs58::decode(body)
            .into_vec()
            .map_err(|e| KeyParseError(format!("the public key is not valid base58: {e}")))?;
        let raw: [u8; 32] = raw.try_into().map_err(|raw: alloc::vec::Vec<u8>| {
            KeyParseError(format!(
                "an Ed25519 public key is 32 bytes, got {}",
                raw.len()
            ))
        })?;
        Self::from_bytes(raw)
    }

    /// NEAR's text form, `ed25519:<base58>`.
    pub fn to_near_string(&self) -> String {
        format!("{PREFIX}{}", bs58::encode(self.compressed).into_string())
    }

    /// The derived key `self + ε·B`.
    pub fn derive(&self, tweak: &Ed25519Tweak) -> Ed25519PublicKey {
        Self::from_point(self.point + EdwardsPoint::mul_base(&tweak.0))
    }

    /// The derived key of `predecessor` and `path` under this root.
    pub fn derive_for(&self, predecessor: &str, path: &str) -> Ed25519PublicKey {
        self.derive(&Ed25519Tweak::derive(predecessor, path))
    }

    /// The Solana address of this key: the base58 of its 32 bytes.
    pub fn solana_address(&self) -> String {
        bs58::encode(self.compressed).into_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use num_bigint::BigUint;
    use sha3::{Digest, Sha3_256};

    const MAINNET_ROOT: &str = "ed25519:G9hwngxWNKdmqMCmU1Yt6LPhFpayJeKFxyAV1HqMNLtF";
    const TESTNET_ROOT: &str = "ed25519:6vSEtQxrQj6txUMh33WC4ERyCWmNMRTdufDWAaDY3Un2";

    /// Ed25519 arithmetic written out with big integers, independent of
    /// curve25519-dalek: affine twisted Edwards addition (RFC 8032 §5.1), point
    /// decoding by the RFC's square root, double-and-add.
    struct Curve {
        p: BigUint,
        d: BigUint,
        order: BigUint,
    }

    type Affine = (BigUint, BigUint);

    impl Curve {
        fn new() -> Self {
            let p = (BigUint::from(1u8) << 255u32) - BigUint::from(19u8);
            // d = -121665 / 121666 mod p
            let inv = BigUint::from(121666u32).modpow(&(&p - 2u32), &p);
            let d = (&p - BigUint::from(121665u32)) * inv % &p;
            let order = (BigUint::from(1u8) << 252u32)
                + BigUint::parse_bytes(b"14def9dea2f79cd65812631a5cf5d3ed", 16).unwrap();
            Curve { p, d, order }
        }
        fn inv(&self, x: &BigUint) -> BigUint {
            x.modpow(&(&self.p - 2u32), &self.p)
        }
        fn sub(&self, a: &BigUint, b: &BigUint) -> BigUint {
            (a + &self.p - (b % &self.p)) % &self.p
        }
        fn add(&self, a: &Affine, b: &Affine) -> Affine {
            let p = &self.p;
            let dxxyy = &self.d * &a.0 % p * &b.0 % p * &a.1 % p * &b.1 % p;
            let x = (&a.0 * &b.1 + &a.1 * &b.0) % p
                * self.inv(&((BigUint::from(1u8) + &dxxyy) % p))
                % p;
            let y = (&a.1 * &b.1 + &a.0 * &b.0) % p
                * self.inv(&self.sub(&BigUint::from(1u8), &dxxyy))
                % p;
            (x, y)
        }
        fn mul(&self, k: &BigUint, point: &Affine) -> Affine {
            let mut acc: Affine = (BigUint::from(0u8), BigUint::from(1u8));
            for i in (0..k.bits()).rev() {
                acc = self.add(&acc, &acc);
                if k.bit(i) {
                    acc = self.add(&acc, point);
                }
            }
            acc
        }
        fn decode(&self, bytes: &[u8; 32]) -> Affine {
            let p = &self.p;
            let mut le = *bytes;
            let sign = le[31] >> 7;
            le[31] &= 0x7f;
            let y = BigUint::from_bytes_le(&le);
            let yy = &y * &y % p;
            let u = self.sub(&yy, &BigUint::from(1u8));
            let v = (&self.d * &yy + 1u8) % p;
            let x2 = u * self.inv(&v) % p;
            let mut x = x2.modpow(&((p + 3u32) >> 3u32), p);
            if &x * &x % p != x2 {
                let sqrt_m1 = BigUint::from(2u8).modpow(&((p - 1u32) >> 2u32), p);
                x = x * sqrt_m1 % p;
            }
            assert_eq!(&x * &x % p, x2, "not on the curve");
            if (x.bit(0) as u8) != sign {
                x = self.sub(&BigUint::from(0u8), &x);
            }
            (x, y)
        }
        fn encode(&self, point: &Affine) -> [u8; 32] {
            let mut out = [0u8; 32];
            let y = point.1.to_bytes_le();
            out[..y.len()].copy_from_slice(&y);
            out[31] |= (point.0.bit(0) as u8) << 7;
            out
        }
        fn base(&self) -> Affine {
            // y = 4/5, x even (RFC 8032 §5.1).
            let y = BigUint::from(4u8) * self.inv(&BigUint::from(5u8)) % &self.p;
            let mut bytes = [0u8; 32];
            let le = y.to_bytes_le();
            bytes[..le.len()].copy_from_slice(&le);
            self.decode(&bytes)
        }
    }

    fn independent_derivation(root_text: &str, predecessor: &str, path: &str) -> [u8; 32] {
        let curve = Curve::new();
        let raw = bs58::decode(root_text.strip_prefix("ed25519:").unwrap())
            .into_vec()
            .unwrap();
        let root = curve.decode(&raw.try_into().unwrap());
        let preimage = format!("near-mpc-recovery v0.1.0 epsilon derivation:{predecessor},{path}");
        let hash = Sha3_256::digest(preimage.as_bytes());
        let epsilon = BigUint::from_bytes_le(&hash) % &curve.order;
        let tweak_point = curve.mul(&epsilon, &curve.base());
        curve.encode(&curve.add(&root, &tweak_point))
    }

    #[test]
    fn derivation_matches_independent_computation_on_public_root_keys() {
        for root_text in [MAINNET_ROOT, TESTNET_ROOT] {
            let root = Ed25519PublicKey::parse(root_text).unwrap();
            for (who, path) in [
                ("alice.near", "solana-1"),
                ("bob.testnet", ""),
                ("dev-20240101-1234.testnet", "aptos,1"),
                ("a.b.c.near", "ünïcödé path"),
            ] {
                assert_eq!(
                    root.derive_for(who, path).as_bytes(),
                    &independent_derivation(root_text, who, path),
                    "{root_text} {who} {path}"
                );
            }
        }
    }

    #[test]
    fn tweak_is_the_little_endian_hash_mod_order() {
        let hash = tweak_hash("alice.near", "solana-1");
        let curve = Curve::new();
        let expected = BigUint::from_bytes_le(&hash) % &curve.order;
        let ours = Ed25519Tweak::from_hash(hash);
        assert_eq!(
            BigUint::from_bytes_le(ours.as_scalar().as_bytes()),
            expected
        );
        // A hash above ℓ is reduced, not refused.
        let big = Ed25519Tweak::from_hash([0xff; 32]);
        assert!(BigUint::from_bytes_le(big.as_scalar().as_bytes()) < curve.order);
    }

    #[test]
    fn key_text_errors_say_what_is_wrong() {
        let err = |t: &str| Ed25519PublicKey::parse(t).unwrap_err().0;
        assert!(err("secp256k1:abc").contains("must start with `ed25519:`"));
        assert!(err("ed25519:0OIl").contains("base58"));
        assert!(err("ed25519:3tFR").contains("32 bytes"));
        // y = 2 is not the y-coordinate of any point on Ed25519.
        let mut off = [0u8; 32];
        off[0] = 2;
        let text = format!("ed25519:{}", bs58::encode(off).into_string());
        assert!(err(&text).contains("not a point"));
    }

    #[test]
    fn solana_address_is_the_base58_key() {
        let root = Ed25519PublicKey::parse(TESTNET_ROOT).unwrap();
        assert_eq!(
            root.solana_address(),
            TESTNET_ROOT.strip_prefix("ed25519:").unwrap()
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(16))]

        #[test]
        fn derivation_matches_for_any_account_and_path(
            account in "[a-z0-9_-]{2,20}(\\.[a-z0-9_-]{1,10}){0,2}",
            path in "\\PC{0,40}",
        ) {
            let root = Ed25519PublicKey::parse(MAINNET_ROOT).unwrap();
            let ours = *root.derive_for(&account, &path).as_bytes();
            proptest::prop_assert_eq!(ours, independent_derivation(MAINNET_ROOT, &account, &path));
        }
    }
}
