//! The signature the network returns, in the deployed network's JSON shape, tagged
//! by scheme ([`SignatureResponse`]):
//! - `{"scheme": "Secp256k1", "big_r": {"affine_point": "<33-byte SEC1 hex>"}, "s": {"scalar": "<32-byte hex>"}, "recovery_id": 0|1}`
//! - `{"scheme": "Ed25519", "signature": [64 integers]}` (R ‖ S, RFC 8032).
//!
//! Signatures are always normalised to low s (s ≤ n/2), as Ethereum and Bitcoin
//! require; the recovery id then tells which of the two points with x = r is the
//! nonce point of the normalised signature. An Ethereum client uses `r = x(big_r)`,
//! `s`, and `yParity = recovery_id`.

use crate::hex_array::{self, HexVisitor};
use crate::request::EcdsaPayload as Payload;
use alloc::vec::Vec;
use borsh::{BorshDeserialize, BorshSerialize};
use core::fmt;
use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};
use k256::elliptic_curve::ops::LinearCombination;
use k256::elliptic_curve::point::AffineCoordinates;
use k256::elliptic_curve::scalar::IsHigh;
use k256::elliptic_curve::sec1::{FromEncodedPoint, ToEncodedPoint};
use k256::elliptic_curve::PrimeField;
use k256::{AffinePoint, EncodedPoint, ProjectivePoint, Scalar};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A scalar as `{"scalar": "<32-byte big-endian hex>"}` (upper case on output, any
/// case on input). The bytes are kept as given; [`SerializableScalar::to_scalar`]
/// checks them.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct SerializableScalar {
    #[serde(serialize_with = "upper_hex", deserialize_with = "hex32")]
    pub scalar: [u8; 32],
}

/// A curve point as `{"affine_point": "<33-byte compressed SEC1 hex>"}`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct SerializableAffinePoint {
    #[serde(serialize_with = "upper_hex", deserialize_with = "hex33")]
    pub affine_point: [u8; 33],
}

fn upper_hex<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&hex_array::encode_upper(bytes))
}

fn hex32<'de, D: Deserializer<'de>>(deserializer: D) -> Result<[u8; 32], D::Error> {
    deserializer.deserialize_str(HexVisitor::<32> { what: "scalar" })
}

fn hex33<'de, D: Deserializer<'de>>(deserializer: D) -> Result<[u8; 33], D::Error> {
    deserializer.deserialize_str(HexVisitor::<33> {
        what: "affine_point",
    })
}

impl SerializableScalar {
    pub fn from_scalar(scalar: &Scalar) -> Self {
        SerializableScalar {
            scalar: scalar.to_bytes().into(),
        }
    }

    /// The scalar, or `None` when the bytes are not below the curve order.
    pub fn to_scalar(&self) -> Option<Scalar> {
        Scalar::from_repr(self.scalar.into()).into()
    }
}

impl SerializableAffinePoint {
    pub fn from_point(point: &AffinePoint) -> Self {
        let encoded = point.to_encoded_point(true);
        let mut affine_point = [0u8; 33];
        affine_point.copy_from_slice(encoded.as_bytes());
        SerializableAffinePoint { affine_point }
    }

    /// The point, or `None` when the bytes are not a compressed point on the curve.
    pub fn to_point(&self) -> Option<AffinePoint> {
        let encoded = EncodedPoint::from_bytes(self.affine_point).ok()?;
        AffinePoint::from_encoded_point(&encoded).into()
    }
}

/// Why a signature response was refused. The texts are part of the contract's API.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ResponseError {
    BigRNotAPoint,
    RNotBelowOrder,
    SNotCanonical,
    HighS,
    BadRecoveryId,
    DoesNotVerify,
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ResponseError::BigRNotAPoint => "big_r is not a compressed secp256k1 point",
            ResponseError::RNotBelowOrder => "x(big_r) is not below the curve order",
            ResponseError::SNotCanonical => "s must be non-zero and below the curve order",
            ResponseError::HighS => {
                "s must be in the lower half of the curve order (negate s and flip recovery_id)"
            }
            ResponseError::BadRecoveryId => "recovery_id must be 0 or 1",
            ResponseError::DoesNotVerify => {
                "the signature does not verify for the payload and the derived key of this request"
            }
        })
    }
}

/// The network's answer to a sign request, tagged by the domain's scheme.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
#[serde(tag = "scheme")]
pub enum SignatureResponse {
    Secp256k1(EcdsaSignature),
    Ed25519 { signature: Ed25519Signature },
}

impl SignatureResponse {
    /// The ECDSA signature, if this is a secp256k1 answer.
    pub fn as_ecdsa(&self) -> Option<&EcdsaSignature> {
        match self {
            SignatureResponse::Secp256k1(signature) => Some(signature),
            SignatureResponse::Ed25519 { .. } => None,
        }
    }

    pub fn scheme(&self) -> crate::domain::SignatureScheme {
        match self {
            SignatureResponse::Secp256k1(_) => crate::domain::SignatureScheme::Secp256k1,
            SignatureResponse::Ed25519 { .. } => crate::domain::SignatureScheme::Ed25519,
        }
    }
}

impl From<EcdsaSignature> for SignatureResponse {
    fn from(signature: EcdsaSignature) -> Self {
        SignatureResponse::Secp256k1(signature)
    }
}

/// An Ed25519 signature `R ‖ S` (RFC 8032), written as an array of 64 integers.
#[derive(Clone, Copy, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize)]
pub struct Ed25519Signature(pub [u8; 64]);

impl Serialize for Ed25519Signature {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = serializer.serialize_seq(Some(64))?;
        for byte in self.0 {
            seq.serialize_element(&byte)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Ed25519Signature {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes = <Vec<u8> as Deserialize>::deserialize(deserializer)?;
        let len = bytes.len();
        bytes.try_into().map(Ed25519Signature).map_err(|_| {
            serde::de::Error::custom(alloc::format!(
                "an Ed25519 signature is 64 bytes, got {len}"
            ))
        })
    }
}

/// An ECDSA signature over secp256k1 with its nonce point and recovery id.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct EcdsaSignature {
    pub big_r: SerializableAffinePoint,
    pub s: SerializableScalar,
    pub recovery_id: u8,
}

impl EcdsaSignature {
    /// Builds the response for nonce point `big_r` and signature scalar `s`,
    /// normalising s to the lower half and setting the recovery id to match.
    pub fn new(big_r: &AffinePoint, s: &Scalar) -> Result<Self, ResponseError> {
        r_scalar(big_r)?;
        if bool::from(s.is_zero()) {
            return Err(ResponseError::SNotCanonical);
        }
        let mut recovery_id = u8::from(bool::from(big_r.y_is_odd()));
        let mut s = *s;
        if bool::from(s.is_high()) {
            s = -s;
            recovery_id ^= 1;
        }
        Ok(EcdsaSignature {
            big_r: SerializableAffinePoint::from_point(big_r),
            s: SerializableScalar::from_scalar(&s),
            recovery_id,
        })
    }

    /// Builds the response for a signature that must verify under `public_key`, when
    /// s may already have been normalised by whoever produced it (so the parity of
    /// `big_r` no longer tells the recovery id). Verifies the signature on the way:
    /// the effective nonce point s⁻¹·(h·G + r·P) must have x = r, and its parity is
    /// the recovery id. One multi-scalar multiplication.
    pub fn for_key(
        big_r: &AffinePoint,
        s: &Scalar,
        public_key: &AffinePoint,
        payload: &Payload,
    ) -> Result<Self, ResponseError> {
        let r = r_scalar(big_r)?;
        if bool::from(s.is_zero()) {
            return Err(ResponseError::SNotCanonical);
        }
        let s = if bool::from(s.is_high()) { -*s } else { *s };
        let s_inv = Option::<Scalar>::from(s.invert()).ok_or(ResponseError::SNotCanonical)?;
        let effective = ProjectivePoint::lincomb(
            &ProjectivePoint::GENERATOR,
            &(payload.to_scalar() * s_inv),
            &ProjectivePoint::from(*public_key),
            &(r * s_inv),
        )
        .to_affine();
        if effective == AffinePoint::IDENTITY || effective.x() != big_r.x() {
            return Err(ResponseError::DoesNotVerify);
        }
        Ok(EcdsaSignature {
            big_r: SerializableAffinePoint::from_point(big_r),
            s: SerializableScalar::from_scalar(&s),
            recovery_id: u8::from(bool::from(effective.y_is_odd())),
        })
    }

    /// Checks the form (a point, canonical low s, recovery id 0 or 1) and returns the
    /// 64-byte `r ‖ s` that `ecrecover` takes.
    pub fn check_form(&self) -> Result<[u8; 64], ResponseError> {
        let big_r = self.big_r.to_point().ok_or(ResponseError::BigRNotAPoint)?;
        let r = r_scalar(&big_r)?;
        let s = self.s.to_scalar().ok_or(ResponseError::SNotCanonical)?;
        if bool::from(s.is_zero()) {
            return Err(ResponseError::SNotCanonical);
        }
        if bool::from(s.is_high()) {
            return Err(ResponseError::HighS);
        }
        if self.recovery_id > 1 {
            return Err(ResponseError::BadRecoveryId);
        }
        let mut rs = [0u8; 64];
        rs[..32].copy_from_slice(&r.to_bytes());
        rs[32..].copy_from_slice(&self.s.scalar);
        Ok(rs)
    }

    /// Checks the form by bytes alone (no curve arithmetic, for the contract, which
    /// then lets `ecrecover` verify): `big_r` a compressed point encoding with
    /// x = r, 0 < r < n; 1 ≤ s ≤ n/2; recovery id 0 or 1. Returns `r ‖ s`. Whether
    /// `big_r` is on the curve is left to `ecrecover`, which fails otherwise.
    pub fn recover_form(&self) -> Result<[u8; 64], ResponseError> {
        let (prefix, x) = self
            .big_r
            .affine_point
            .split_first()
            .ok_or(ResponseError::BigRNotAPoint)?;
        if *prefix != 2 && *prefix != 3 {
            return Err(ResponseError::BigRNotAPoint);
        }
        let r: [u8; 32] = x.try_into().map_err(|_| ResponseError::BigRNotAPoint)?;
        if r == [0; 32] || !crate::recover::below_order(&r) {
            return Err(ResponseError::RNotBelowOrder);
        }
        let s = &self.s.scalar;
        if s == &[0; 32] || !crate::recover::below_order(s) {
            return Err(ResponseError::SNotCanonical);
        }
        if !crate::recover::is_low_s(s) {
            return Err(ResponseError::HighS);
        }
        if self.recovery_id > 1 {
            return Err(ResponseError::BadRecoveryId);
        }
        let mut rs = [0u8; 64];
        rs[..32].copy_from_slice(&r);
        rs[32..].copy_from_slice(s);
        Ok(rs)
    }

    /// The public key this signature verifies under for `payload`.
    pub fn recover_public_key(&self, payload: &Payload) -> Result<AffinePoint, ResponseError> {
        let rs = self.check_form()?;
        let signature = Signature::from_slice(&rs).map_err(|_| ResponseError::SNotCanonical)?;
        let recovery_id = RecoveryId::new(self.recovery_id == 1, false);
        VerifyingKey::recover_from_prehash(payload.as_bytes(), &signature, recovery_id)
            .map(|key| *key.as_affine())
            .map_err(|_| ResponseError::DoesNotVerify)
    }

    /// Verifies the signature over `payload` for `public_key` (a derived key).
    pub fn verify(&self, payload: &Payload, public_key: &AffinePoint) -> Result<(), ResponseError> {
        let rs = self.check_form()?;
        let signature = Signature::from_slice(&rs).map_err(|_| ResponseError::SNotCanonical)?;
        let key =
            VerifyingKey::from_affine(*public_key).map_err(|_| ResponseError::DoesNotVerify)?;
        use k256::ecdsa::signature::hazmat::PrehashVerifier;
        key.verify_prehash(payload.as_bytes(), &signature)
            .map_err(|_| ResponseError::DoesNotVerify)?;
        if self.recover_public_key(payload)? != *public_key {
            return Err(ResponseError::DoesNotVerify);
        }
        Ok(())
    }
}

/// `r = x(big_r)` as a scalar; ECDSA nonces whose x is not below the order are refused
/// (a probability-2⁻¹²⁸ case the recovery id 0|1 format cannot express).
fn r_scalar(big_r: &AffinePoint) -> Result<Scalar, ResponseError> {
    if big_r == &AffinePoint::IDENTITY {
        return Err(ResponseError::BigRNotAPoint);
    }
    Option::from(Scalar::from_repr(big_r.x())).ok_or(ResponseError::RNotBelowOrder)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k256::ecdsa::SigningKey;

    /// A textbook ECDSA signature with a chosen nonce, to control the high/low s case.
    fn sign_with_nonce(
        secret: &Scalar,
        nonce: &Scalar,
        payload: &Payload,
    ) -> (AffinePoint, Scalar) {
        let big_r = (ProjectivePoint::GENERATOR * nonce).to_affine();
        let r = Scalar::from_repr(big_r.x()).unwrap();
        let s = nonce.invert().unwrap() * (payload.to_scalar() + r * secret);
        (big_r, s)
    }

    #[test]
    fn normalises_high_s_and_verifies_with_libsecp256k1() {
        let secret = Scalar::from(123456789u64);
        let public = (ProjectivePoint::GENERATOR * secret).to_affine();
        let payload = Payload::new([0x42; 32]).unwrap();
        let mut saw = [false; 2];
        for k in 1..40u64 {
            let (big_r, s) = sign_with_nonce(&secret, &Scalar::from(k * 7919), &payload);
            saw[usize::from(bool::from(s.is_high()))] = true;
            let response = EcdsaSignature::new(&big_r, &s).unwrap();
            response.verify(&payload, &public).unwrap();
            assert_eq!(response.recover_public_key(&payload).unwrap(), public);

            // The same check by libsecp256k1, which also insists on low s.
            let secp = secp256k1::Secp256k1::new();
            let rs = response.check_form().unwrap();
            let id = secp256k1::ecdsa::RecoveryId::from_i32(response.recovery_id.into()).unwrap();
            let sig = secp256k1::ecdsa::RecoverableSignature::from_compact(&rs, id).unwrap();
            let msg = secp256k1::Message::from_digest(*payload.as_bytes());
            let recovered = secp.recover_ecdsa(&msg, &sig).unwrap();
            assert_eq!(
                recovered.serialize_uncompressed()[1..],
                crate::near_key::to_uncompressed_xy(&public)
            );
            secp.verify_ecdsa(&msg, &sig.to_standard(), &recovered)
                .unwrap();
        }
        assert_eq!(saw, [true, true], "both high and low s were exercised");
    }

    #[test]
    fn for_key_finds_the_recovery_id_of_a_pre_normalised_signature() {
        let secret = Scalar::from(987654321u64);
        let public = (ProjectivePoint::GENERATOR * secret).to_affine();
        let payload = Payload::new([0x24; 32]).unwrap();
        for k in 1..20u64 {
            let (big_r, s) = sign_with_nonce(&secret, &Scalar::from(k * 104729), &payload);
            let low = if bool::from(s.is_high()) { -s } else { s };
            let response = EcdsaSignature::for_key(&big_r, &low, &public, &payload).unwrap();
            response.verify(&payload, &public).unwrap();
        }
        let (big_r, s) = sign_with_nonce(&secret, &Scalar::from(3u64), &payload);
        let other = (ProjectivePoint::GENERATOR * Scalar::from(4u64)).to_affine();
        assert_eq!(
            EcdsaSignature::for_key(&big_r, &s, &other, &payload),
            Err(ResponseError::DoesNotVerify)
        );
    }

    #[test]
    fn json_shape_matches_the_deployed_network() {
        let key = SigningKey::from_slice(&[3; 32]).unwrap();
        let payload = Payload::new([5; 32]).unwrap();
        let (_, s) = sign_with_nonce(key.as_nonzero_scalar(), &Scalar::from(99u64), &payload);
        let big_r = (ProjectivePoint::GENERATOR * Scalar::from(99u64)).to_affine();
        let response = EcdsaSignature::new(&big_r, &s).unwrap();
        let json: serde_json::Value = serde_json::to_value(&response).unwrap();
        let r_hex = json["big_r"]["affine_point"].as_str().unwrap();
        let s_hex = json["s"]["scalar"].as_str().unwrap();
        assert_eq!(r_hex.len(), 66);
        assert!(r_hex.starts_with("02") || r_hex.starts_with("03"));
        assert_eq!(s_hex.len(), 64);
        assert_eq!(r_hex, r_hex.to_uppercase());
        assert!(json["recovery_id"].as_u64().unwrap() <= 1);
        // Lower case input is accepted too.
        let lower = serde_json::to_string(&json).unwrap().to_lowercase();
        assert_eq!(
            serde_json::from_str::<EcdsaSignature>(&lower).unwrap(),
            response
        );
    }

    #[test]
    fn responses_are_tagged_by_scheme() {
        let key = SigningKey::from_slice(&[3; 32]).unwrap();
        let payload = Payload::new([5; 32]).unwrap();
        let (big_r, s) = sign_with_nonce(key.as_nonzero_scalar(), &Scalar::from(99u64), &payload);
        let ecdsa: SignatureResponse = EcdsaSignature::new(&big_r, &s).unwrap().into();
        let json = serde_json::to_value(&ecdsa).unwrap();
        assert_eq!(json["scheme"], "Secp256k1");
        assert!(json["big_r"]["affine_point"].is_string());
        assert_eq!(
            serde_json::from_value::<SignatureResponse>(json).unwrap(),
            ecdsa
        );

        let eddsa = SignatureResponse::Ed25519 {
            signature: Ed25519Signature([7; 64]),
        };
        let json = serde_json::to_value(&eddsa).unwrap();
        assert_eq!(json["scheme"], "Ed25519");
        assert_eq!(json["signature"].as_array().unwrap().len(), 64);
        assert_eq!(json["signature"][0], 7);
        assert_eq!(
            serde_json::from_value::<SignatureResponse>(json).unwrap(),
            eddsa
        );

        let short = serde_json::json!({"scheme": "Ed25519", "signature": [1, 2, 3]});
        let text = serde_json::from_value::<SignatureResponse>(short)
            .unwrap_err()
            .to_string();
        assert!(text.contains("64 bytes, got 3"), "{text}");
    }

    #[test]
    fn the_byte_level_form_check_agrees_with_the_curve_check() {
        let secret = Scalar::from(4242u64);
        let payload = Payload::new([0x33; 32]).unwrap();
        for k in 1..12u64 {
            let (big_r, s) = sign_with_nonce(&secret, &Scalar::from(k * 31337), &payload);
            let good = EcdsaSignature::new(&big_r, &s).unwrap();
            assert_eq!(good.recover_form(), good.check_form());
            let mut high = good.clone();
            high.s = SerializableScalar::from_scalar(&-good.s.to_scalar().unwrap());
            assert_eq!(high.recover_form(), Err(ResponseError::HighS));
            let mut bad_id = good.clone();
            bad_id.recovery_id = 2;
            assert_eq!(bad_id.recover_form(), Err(ResponseError::BadRecoveryId));
            let mut zero_s = good.clone();
            zero_s.s.scalar = [0; 32];
            assert_eq!(zero_s.recover_form(), Err(ResponseError::SNotCanonical));
            let mut bad_prefix = good.clone();
            bad_prefix.big_r.affine_point[0] = 4;
            assert_eq!(bad_prefix.recover_form(), Err(ResponseError::BigRNotAPoint));
            let mut big_x = good.clone();
            big_x.big_r.affine_point[1..].copy_from_slice(&crate::recover::ORDER);
            assert_eq!(big_x.recover_form(), Err(ResponseError::RNotBelowOrder));
        }
    }

    #[test]
    fn malformed_responses_are_refused_with_reasons() {
        let secret = Scalar::from(77u64);
        let public = (ProjectivePoint::GENERATOR * secret).to_affine();
        let payload = Payload::new([0x11; 32]).unwrap();
        let (big_r, s) = sign_with_nonce(&secret, &Scalar::from(5u64), &payload);
        let good = EcdsaSignature::new(&big_r, &s).unwrap();

        let mut high = good.clone();
        high.s = SerializableScalar::from_scalar(&-good.s.to_scalar().unwrap());
        assert_eq!(high.check_form(), Err(ResponseError::HighS));

        let mut bad_id = good.clone();
        bad_id.recovery_id = 2;
        assert_eq!(bad_id.check_form(), Err(ResponseError::BadRecoveryId));

        let mut flipped = good.clone();
        flipped.recovery_id ^= 1;
        assert_eq!(
            flipped.verify(&payload, &public),
            Err(ResponseError::DoesNotVerify)
        );

        let mut not_point = good.clone();
        not_point.big_r.affine_point = [0x02; 33];
        not_point.big_r.affine_point[1..].copy_from_slice(&[0xff; 32]);
        assert_eq!(not_point.check_form(), Err(ResponseError::BigRNotAPoint));

        let mut zero_s = good.clone();
        zero_s.s.scalar = [0; 32];
        assert_eq!(zero_s.check_form(), Err(ResponseError::SNotCanonical));

        let other_payload = Payload::new([0x12; 32]).unwrap();
        assert_eq!(
            good.verify(&other_payload, &public),
            Err(ResponseError::DoesNotVerify)
        );
        assert_eq!(
            EcdsaSignature::new(&AffinePoint::IDENTITY, &s),
            Err(ResponseError::BigRNotAPoint)
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Any key, nonce and payload: the normalised response verifies with k256 and
        /// recovers the key with libsecp256k1.
        #[test]
        fn any_signature_normalises_and_verifies(
            secret in proptest::array::uniform32(proptest::num::u8::ANY),
            nonce in proptest::array::uniform32(proptest::num::u8::ANY),
            digest in proptest::array::uniform32(proptest::num::u8::ANY),
        ) {
            let to_scalar = |b: [u8; 32]| Option::<Scalar>::from(Scalar::from_repr(b.into()));
            let (Some(secret), Some(nonce)) = (to_scalar(secret), to_scalar(nonce)) else { return Ok(()) };
            let Ok(payload) = Payload::new(digest) else { return Ok(()) };
            if bool::from(secret.is_zero()) || bool::from(nonce.is_zero()) { return Ok(()); }
            let public = (ProjectivePoint::GENERATOR * secret).to_affine();
            let (big_r, s) = sign_with_nonce(&secret, &nonce, &payload);
            let Ok(response) = EcdsaSignature::new(&big_r, &s) else { return Ok(()) };
            proptest::prop_assert!(response.verify(&payload, &public).is_ok());

            let secp = secp256k1::Secp256k1::verification_only();
            let id = secp256k1::ecdsa::RecoveryId::from_i32(response.recovery_id.into()).unwrap();
            let sig = secp256k1::ecdsa::RecoverableSignature::from_compact(&response.check_form().unwrap(), id).unwrap();
            let recovered = secp.recover_ecdsa(&secp256k1::Message::from_digest(digest), &sig).unwrap();
            proptest::prop_assert_eq!(&recovered.serialize_uncompressed()[1..], &crate::near_key::to_uncompressed_xy(&public)[..]);
        }
    }
}
