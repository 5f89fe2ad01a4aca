//! NEAR's text form of secp256k1 public keys: `secp256k1:` followed by the base58 of
//! the 64-byte uncompressed point without its `0x04` tag.

use alloc::format;
use alloc::string::String;
use k256::elliptic_curve::sec1::{FromEncodedPoint, ToEncodedPoint};
use k256::{AffinePoint, EncodedPoint};

const PREFIX: &str = "secp256k1:";

/// Why a public key text was refused.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct KeyParseError(pub String);

impl core::fmt::Display for KeyParseError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses `secp256k1:<base58 of 64 bytes>` into a curve point.
///
/// ```
/// let text = "secp256k1:4NfTiv3UsGahebgTaHyD9vF8KYKMBnfd6kh94mK6xv8fGBiJB8TBtFMP5WWXz6B89Ac1fbpzPwAvoyQebemHFwx3";
/// let point = primitives::near_key::parse_secp256k1(text).unwrap();
/// assert_eq!(primitives::near_key::to_near_string(&point), text);
/// ```
pub fn parse_secp256k1(text: &str) -> Result<AffinePoint, KeyParseError> {
    let body = text.strip_prefix(PREFIX).ok_or_else(|| {
        KeyParseError(format!(
            "a secp256k1 public key must start with `{PREFIX}`, got `{text}`"
        ))
    })?;
    let raw = bs58::decode(body)
        .into_vec()
        .map_err(|e| KeyParseError(format!("the public key is not valid base58: {e}")))?;
    let raw: [u8; 64] = raw.try_into().map_err(|raw: alloc::vec::Vec<u8>| {
        KeyParseError(format!(
            "a secp256k1 public key is 64 bytes (x and y), got {}",
            raw.len()
        ))
    })?;
    from_uncompressed_xy(&raw)
}

/// Reads the 64-byte `x ‖ y` form (what NEAR stores and `ecrecover` returns).
pub fn from_uncompressed_xy(raw: &[u8; 64]) -> Result<AffinePoint, KeyParseError> {
    let encoded = EncodedPoint::from_untagged_bytes(raw.into());
    Option::from(AffinePoint::from_encoded_point(&encoded))
        .ok_or_else(|| KeyParseError("the public key is not a point on secp256k1".into()))
}

/// The 64-byte `x ‖ y` form of a point. The identity has no such form; it is written
/// as zeros, which no parser accepts back.
pub fn to_uncompressed_xy(point: &AffinePoint) -> [u8; 64] {
    let encoded = point.to_encoded_point(false);
    let mut out = [0u8; 64];
    if let Some(xy) = encoded.as_bytes().get(1..65) {
        out.copy_from_slice(xy);
    }
    out
}

/// The NEAR text form of a point: `secp256k1:<base58>`.
pub fn to_near_string(point: &AffinePoint) -> String {
    format!(
        "{PREFIX}{}",
        bs58::encode(to_uncompressed_xy(point)).into_string()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_other_curves_lengths_and_off_curve_points() {
        assert!(
            parse_secp256k1("ed25519:6E8sCci9badyRkXb3JoRpBj5p8C6Tw41ELDZoiihKEtp")
                .unwrap_err()
                .0
                .contains("must start with")
        );
        assert!(parse_secp256k1("secp256k1:3tFR")
            .unwrap_err()
            .0
            .contains("64 bytes"));
        assert!(parse_secp256k1("secp256k1:0OIl")
            .unwrap_err()
            .0
            .contains("base58"));
        let off_curve = format!("secp256k1:{}", bs58::encode([1u8; 64]).into_string());
        assert!(parse_secp256k1(&off_curve)
            .unwrap_err()
            .0
            .contains("not a point"));
    }
}
