//! Foreign-chain addresses of a derived key.

use alloc::string::String;
use k256::AffinePoint;
use sha3::{Digest, Keccak256};

/// The Ethereum address of a public key: the last 20 bytes of the Keccak-256 of the
/// 64-byte uncompressed key (without its `0x04` tag).
pub fn ethereum_address(key: &AffinePoint) -> [u8; 20] {
    let hash = Keccak256::digest(crate::near_key::to_uncompressed_xy(key));
    let mut address = [0u8; 20];
    address.copy_from_slice(&hash[12..]);
    address
}

/// The EIP-55 mixed-case checksum form, `0x`-prefixed.
///
/// ```
/// use primitives::k256::{ProjectivePoint, Scalar};
/// let key = (ProjectivePoint::GENERATOR * Scalar::ONE).to_affine();
/// let address = primitives::address::ethereum_address(&key);
/// assert_eq!(
///     primitives::address::to_checksum_string(&address),
///     "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"
/// );
/// ```
pub fn to_checksum_string(address: &[u8; 20]) -> String {
    let lower = hex::encode(address);
    let hash = Keccak256::digest(lower.as_bytes());
    let mut out = String::with_capacity(42);
    out.push_str("0x");
    for (i, c) in lower.chars().enumerate() {
        let nibble = (hash[i / 2] >> if i % 2 == 0 { 4 } else { 0 }) & 0x0f;
        out.push(if c.is_ascii_alphabetic() && nibble >= 8 {
            c.to_ascii_uppercase()
        } else {
            c
        });
    }
    out
}
