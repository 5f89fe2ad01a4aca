//! secp256k1 arithmetic for the contract, done by NEAR's `ecrecover` host function
//! instead of curve code in the wasm: smaller code and far less gas.
//!
//! `ecrecover(h, (r, s), v)` returns `Q = r⁻¹·(s·R − h·G)`, where `R` is the point
//! with x-coordinate `r` and y-parity `v`. Choosing `R = P` (so `r = x(P)`,
//! `v = parity(y(P))`), `s = r` and `h = −ε·r mod n` gives
//! `Q = r⁻¹·r·P + r⁻¹·ε·r·G = P + ε·G`: the derived key `root + ε·G` of
//! [`crate::derivation`]. The same call with the point's own coordinates also tells
//! whether a point is on the curve: `ecrecover` rebuilds `R` from `x` alone, so the
//! result equals `P + ε·G` for the stated `y` only if `(x, y)` is a curve point.
//!
//! Byte-level checks of signatures and scalars live here too, so the contract needs
//! no field or scalar arithmetic of its own. Everything is big-endian.

/// The order n of the secp256k1 group.
pub const ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe,
    0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48, 0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36, 0x41, 0x41,
];

/// ⌊n / 2⌋: the largest "low" s.
pub const HALF_ORDER: [u8; 32] = [
    0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0x5d, 0x57, 0x6e, 0x73, 0x57, 0xa4, 0x50, 0x1d, 0xdf, 0xe9, 0x2f, 0x46, 0x68, 0x1b, 0x20, 0xa0,
];

/// Whether `bytes` is a scalar: below n.
pub fn below_order(bytes: &[u8; 32]) -> bool {
    bytes < &ORDER
}

/// Whether `s` is a canonical low ECDSA s: 1 ≤ s ≤ ⌊n/2⌋.
pub fn is_low_s(s: &[u8; 32]) -> bool {
    s != &[0; 32] && s <= &HALF_ORDER
}

/// The arguments of one `ecrecover` call (malleability check off: `s` here need not
/// be low).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RecoverCall {
    pub hash: [u8; 32],
    /// `r ‖ s`.
    pub signature: [u8; 64],
    pub v: u8,
}

/// The `ecrecover` call that returns `P + tweak·G` for the point `P = (x, y)` given
/// as 64 bytes, or `None` when `x(P)` is zero or not below n (probability about
/// 2⁻¹²⁸ for a random point) or `tweak` is not below n.
pub fn tweak_add_call(point_xy: &[u8; 64], tweak: &[u8; 32]) -> Option<RecoverCall> {
    let (x, y) = point_xy.split_at(32);
    let r: [u8; 32] = x.try_into().ok()?;
    if r == [0; 32] || !below_order(&r) || !below_order(tweak) {
        return None;
    }
    let mut signature = [0u8; 64];
    signature[..32].copy_from_slice(&r);
    signature[32..].copy_from_slice(&r);
    Some(RecoverCall {
        hash: negate(&mul_mod_n(tweak, &r)),
        signature,
        v: y.last().copied()? & 1,
    })
}

type Limbs = [u64; 4];

fn to_limbs(bytes: &[u8; 32]) -> Limbs {
    let mut limbs = [0u64; 4];
    for (i, chunk) in bytes.chunks_exact(8).enumerate() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        limbs[3 - i] = u64::from_be_bytes(word);
    }
    limbs
}

fn from_limbs(limbs: &Limbs) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    for (i, chunk) in bytes.chunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(&limbs[3 - i].to_be_bytes());
    }
    bytes
}

/// `a + b`, with the carry out.
fn add(a: &Limbs, b: &Limbs) -> (Limbs, bool) {
    let mut out = [0u64; 4];
    let mut carry = false;
    for i in 0..4 {
        let (sum, c1) = a[i].overflowing_add(b[i]);
        let (sum, c2) = sum.overflowing_add(u64::from(carry));
        out[i] = sum;
        carry = c1 || c2;
    }
    (out, carry)
}

/// `a − b`, with the borrow out.
fn sub(a: &Limbs, b: &Limbs) -> (Limbs, bool) {
    let mut out = [0u64; 4];
    let mut borrow = false;
    for i in 0..4 {
        let (diff, b1) = a[i].overflowing_sub(b[i]);
        let (diff, b2) = diff.overflowing_sub(u64::from(borrow));
        out[i] = diff;
        borrow = b1 || b2;
    }
    (out, borrow)
}

/// `(a + b) mod n` for `a, b < n`.
fn add_mod_n(a: &Limbs, b: &Limbs, n: &Limbs) -> Limbs {
    let (sum, carry) = add(a, b);
    let (reduced, borrow) = sub(&sum, n);
    // The sum is at least n exactly when it overflowed 2²⁵⁶ or subtracting n did not.
    if carry || !borrow {
        reduced
    } else {
        sum
    }
}

/// `a·b mod n` for `a, b < n`, by double-and-add over the bits of `a`: a few
/// thousand wasm instructions, and no reduction constants to get wrong. Public
/// values only (no constant time needed: tweaks and r are public).
fn mul_mod_n(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let n = to_limbs(&ORDER);
    let b = to_limbs(b);
    let mut acc = [0u64; 4];
    for byte in a {
        for bit in (0..8).rev() {
            acc = add_mod_n(&acc, &acc, &n);
            if (byte >> bit) & 1 == 1 {
                acc = add_mod_n(&acc, &b, &n);
            }
        }
    }
    from_limbs(&acc)
}

/// `−a mod n` for `a < n`.
fn negate(a: &[u8; 32]) -> [u8; 32] {
    if a == &[0; 32] {
        return *a;
    }
    from_limbs(&sub(&to_limbs(&ORDER), &to_limbs(a)).0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k256::elliptic_curve::PrimeField;
    use k256::{ProjectivePoint, Scalar};

    fn scalar(bytes: [u8; 32]) -> Option<Scalar> {
        Option::from(Scalar::from_repr(bytes.into()))
    }

    /// What NEAR's host function does (nearcore calls libsecp256k1), with the
    /// malleability check off.
    fn ecrecover(call: &RecoverCall) -> Option<[u8; 64]> {
        let id = secp256k1::ecdsa::RecoveryId::from_i32(call.v.into()).ok()?;
        let signature =
            secp256k1::ecdsa::RecoverableSignature::from_compact(&call.signature, id).ok()?;
        let message = secp256k1::Message::from_digest(call.hash);
        let key = secp256k1::Secp256k1::verification_only()
            .recover_ecdsa(&message, &signature)
            .ok()?;
        key.serialize_uncompressed()[1..].try_into().ok()
    }

    #[test]
    fn order_constants() {
        let n = num_bigint::BigUint::from_bytes_be(&ORDER);
        assert_eq!(
            n.to_str_radix(16),
            "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141"
        );
        assert_eq!(num_bigint::BigUint::from_bytes_be(&HALF_ORDER), &n >> 1u32);
        assert!(!below_order(&ORDER));
        assert!(is_low_s(&HALF_ORDER));
        let mut above = HALF_ORDER;
        above[31] += 1;
        assert!(!is_low_s(&above));
        assert!(!is_low_s(&[0; 32]));
    }

    #[test]
    fn derived_keys_through_ecrecover_match_point_arithmetic() {
        for root in [
            "secp256k1:3tFRbMqmoa6AAALMrEFAYCEoHcqKxeW38YptwowBVBtXK1vo36HDbUWuR6EZmoK4JcH6HDkNMGGqP1ouV7VZUWya",
            "secp256k1:4NfTiv3UsGahebgTaHyD9vF8KYKMBnfd6kh94mK6xv8fGBiJB8TBtFMP5WWXz6B89Ac1fbpzPwAvoyQebemHFwx3",
        ] {
            let point = crate::near_key::parse_secp256k1(root).unwrap();
            let xy = crate::near_key::to_uncompressed_xy(&point);
            for (who, path) in [("alice.near", "ethereum-1"), ("bob.testnet", "")] {
                let tweak = crate::Tweak::derive(who, path).unwrap();
                let expected = crate::derivation::derive_public_key(&point, &tweak);
                let call = tweak_add_call(&xy, &tweak.to_bytes()).unwrap();
                assert_eq!(
                    ecrecover(&call).unwrap(),
                    crate::near_key::to_uncompressed_xy(&expected)
                );
            }
        }
    }

    #[test]
    fn a_zero_tweak_returns_the_point_itself() {
        let point = (ProjectivePoint::GENERATOR * Scalar::from(12345u64)).to_affine();
        let xy = crate::near_key::to_uncompressed_xy(&point);
        let call = tweak_add_call(&xy, &[0; 32]).unwrap();
        assert_eq!(call.hash, [0; 32]);
        assert_eq!(ecrecover(&call).unwrap(), xy);
    }

    #[test]
    fn a_point_off_the_curve_does_not_come_back() {
        let point = (ProjectivePoint::GENERATOR * Scalar::from(99u64)).to_affine();
        let mut xy = crate::near_key::to_uncompressed_xy(&point);
        xy[63] ^= 0x10; // same x and parity, another y: not on the curve
        let call = tweak_add_call(&xy, &[1; 32]).unwrap();
        let recovered = ecrecover(&call).unwrap();
        let genuine = crate::near_key::to_uncompressed_xy(&point);
        let expected_for_genuine = tweak_add_call(&genuine, &[1; 32])
            .and_then(|c| ecrecover(&c))
            .unwrap();
        assert_eq!(
            recovered, expected_for_genuine,
            "ecrecover rebuilds y from x"
        );
        assert_ne!(recovered[32..], xy[32..]);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// The modular arithmetic agrees with k256's scalar field.
        #[test]
        fn mul_and_negate_match_k256(
            a in proptest::array::uniform32(proptest::num::u8::ANY),
            b in proptest::array::uniform32(proptest::num::u8::ANY),
        ) {
            let (Some(sa), Some(sb)) = (scalar(a), scalar(b)) else { return Ok(()) };
            let expected: [u8; 32] = (sa * sb).to_bytes().into();
            proptest::prop_assert_eq!(mul_mod_n(&a, &b), expected);
            let negated: [u8; 32] = (-sa).to_bytes().into();
            proptest::prop_assert_eq!(negate(&a), negated);
        }

        /// Any point and tweak: ecrecover returns the point plus tweak·G.
        #[test]
        fn tweak_add_matches_k256(
            k in proptest::array::uniform32(proptest::num::u8::ANY),
            t in proptest::array::uniform32(proptest::num::u8::ANY),
        ) {
            let (Some(k), Some(t)) = (scalar(k), scalar(t)) else { return Ok(()) };
            if bool::from(k.is_zero()) { return Ok(()) }
            let point = (ProjectivePoint::GENERATOR * k).to_affine();
            let xy = crate::near_key::to_uncompressed_xy(&point);
            let Some(call) = tweak_add_call(&xy, &t.to_bytes().into()) else { return Ok(()) };
            let expected = (ProjectivePoint::from(point) + ProjectivePoint::GENERATOR * t).to_affine();
            proptest::prop_assert_eq!(
                ecrecover(&call).map(|q| q.to_vec()),
                Some(crate::near_key::to_uncompressed_xy(&expected).to_vec())
            );
        }
    }
}
