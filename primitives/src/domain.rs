//! Domains: each root key belongs to a domain `{id, scheme}`.
//!
//! Ids are assigned in order and never reused. By the deployed network's convention
//! domain 0 is secp256k1 (ECDSA: Ethereum, Bitcoin, ...) and domain 1 is Ed25519
//! (Solana, Aptos, Sui, NEAR, ...); client libraries hard-code both.

use borsh::{BorshDeserialize, BorshSerialize};
use core::fmt;
use serde::{Deserialize, Serialize};

/// The id of a domain, as `sign`'s `domain_id` (alias `key_version`) names it.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Debug,
    Default,
    Serialize,
    Deserialize,
    BorshSerialize,
    BorshDeserialize,
)]
#[serde(transparent)]
pub struct DomainId(pub u64);

impl DomainId {
    /// Domain 0: the secp256k1 key the network started with.
    pub const LEGACY_ECDSA: DomainId = DomainId(0);

    pub fn next(self) -> DomainId {
        DomainId(self.0 + 1)
    }
}

impl fmt::Display for DomainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The signature scheme of a domain's key.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Debug,
    Serialize,
    Deserialize,
    BorshSerialize,
    BorshDeserialize,
)]
pub enum SignatureScheme {
    /// ECDSA over secp256k1; payloads are 32-byte hashes.
    Secp256k1,
    /// EdDSA over Curve25519 (RFC 8032); payloads are the message bytes.
    Ed25519,
}

impl SignatureScheme {
    pub fn name(self) -> &'static str {
        match self {
            SignatureScheme::Secp256k1 => "Secp256k1",
            SignatureScheme::Ed25519 => "Ed25519",
        }
    }

    /// The `payload_v2` variant requests in this scheme must use.
    pub fn payload_kind(self) -> &'static str {
        match self {
            SignatureScheme::Secp256k1 => "Ecdsa",
            SignatureScheme::Ed25519 => "Eddsa",
        }
    }
}

impl fmt::Display for SignatureScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A domain: which key, for which scheme.
#[derive(
    Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize, BorshSerialize, BorshDeserialize,
)]
pub struct DomainConfig {
    pub id: DomainId,
    pub scheme: SignatureScheme,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_forms() {
        let domain = DomainConfig {
            id: DomainId(1),
            scheme: SignatureScheme::Ed25519,
        };
        assert_eq!(
            serde_json::to_string(&domain).unwrap(),
            r#"{"id":1,"scheme":"Ed25519"}"#
        );
        let back: DomainConfig = serde_json::from_str(r#"{"id":0,"scheme":"Secp256k1"}"#).unwrap();
        assert_eq!(back.id, DomainId::LEGACY_ECDSA);
        assert_eq!(back.scheme, SignatureScheme::Secp256k1);
        assert!(serde_json::from_str::<SignatureScheme>(r#""Bls12381""#).is_err());
    }
}
