//! Serde helpers for fixed-size byte arrays written as hex strings.
//!
//! Input may be upper or lower case and may carry a `0x` prefix; output case is the
//! caller's choice (the deployed network writes signature parts in upper case).

use alloc::format;
use alloc::string::String;
use core::fmt;

/// Decodes `N` bytes from hex text, naming `what` in the error.
pub(crate) fn decode<const N: usize>(text: &str, what: &str) -> Result<[u8; N], String> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    if digits.len() != 2 * N {
        return Err(format!(
            "{what} must be {N} bytes ({} hex digits), got {} hex digits",
            2 * N,
            digits.len()
        ));
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(digits, &mut out).map_err(|e| format!("{what} is not valid hex: {e}"))?;
    Ok(out)
}

pub(crate) fn encode_upper(bytes: &[u8]) -> String {
    hex::encode_upper(bytes)
}

pub(crate) fn encode_lower(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// A serde visitor for a hex string of exactly `N` bytes.
pub(crate) struct HexVisitor<const N: usize> {
    pub what: &'static str,
}

impl<'de, const N: usize> serde::de::Visitor<'de> for HexVisitor<N> {
    type Value = [u8; N];

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} as a hex string of {N} bytes", self.what)
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        decode(v, self.what).map_err(E::custom)
    }
}
