//! secp256k1 (domain 0): the derived key of an account and path, and signatures
//! from the network checked against it before anything is relayed.

use crate::error::{Error, Result};
use crate::near::Near;
use crate::progress::Progress;
use k256::elliptic_curve::sec1::ToEncodedPoint;
use k256::AffinePoint;
use near_primitives::types::AccountId;
use primitives::{derivation, near_key, DomainId, EcdsaPayload, EcdsaSignature, Payload};

/// The domain whose root key is secp256k1 by convention (DESIGN §4); Ethereum and
/// Bitcoin keys live there.
pub const DOMAIN: DomainId = DomainId::LEGACY_ECDSA;

/// The secp256k1 key the network signs with for `predecessor` and `path` in `domain`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EcdsaKey {
    pub predecessor: AccountId,
    pub path: String,
    pub domain: DomainId,
    pub point: AffinePoint,
}

impl EcdsaKey {
    /// Asks the contract for the derived key and derives it here as well, from the
    /// contract's root key; the two must agree, so a wrong contract, a wrong RPC or a
    /// bug on either side shows before any funds are sent to the key's address.
    pub async fn fetch(
        near: &Near,
        predecessor: &AccountId,
        path: &str,
        domain: DomainId,
    ) -> Result<EcdsaKey> {
        let text = near.derived_key_text(predecessor, path, domain).await?;
        let from_contract = parse(&text)?;
        let root = parse(&near.root_key(domain).await?)?;
        let local = derivation::derive_public_key_for(&root, predecessor.as_str(), path)
            .map_err(|e| Error::Derivation(e.to_string()))?;
        if local != from_contract {
            return Err(Error::DerivationMismatch {
                contract: text,
                local: near_key::to_near_string(&local),
            });
        }
        Ok(EcdsaKey {
            predecessor: predecessor.clone(),
            path: path.to_string(),
            domain,
            point: local,
        })
    }

    /// `secp256k1:<base58 of 64 bytes>`, as the contract writes it.
    pub fn near_string(&self) -> String {
        near_key::to_near_string(&self.point)
    }

    /// The 33-byte compressed SEC1 form (Bitcoin's).
    pub fn compressed(&self) -> [u8; 33] {
        let encoded = self.point.to_encoded_point(true);
        let mut out = [0u8; 33];
        out.copy_from_slice(encoded.as_bytes());
        out
    }

    /// Asks the network to sign `hash` with this key and checks the answer.
    pub async fn sign(
        &self,
        near: &Near,
        hash: [u8; 32],
        progress: &Progress,
    ) -> Result<EcdsaSignature> {
        near.check_signer(&self.predecessor)?;
        let payload = payload(hash)?;
        let answer = near
            .sign(Payload::Ecdsa(payload), &self.path, self.domain, progress)
            .await?;
        let signature = answer.as_ecdsa().cloned().ok_or_else(|| {
            Error::BadAnswer(format!("a secp256k1 signature expected, got {answer:?}"))
        })?;
        self.verify(&payload, &signature)?;
        Ok(signature)
    }

    /// Checks that `signature` is this key's over `payload` (low s, right recovery id).
    pub fn verify(&self, payload: &EcdsaPayload, signature: &EcdsaSignature) -> Result<()> {
        signature
            .verify(payload, &self.point)
            .map_err(|e| Error::BadSignature {
                key: self.near_string(),
                reason: e.to_string(),
            })
    }
}

/// A 32-byte hash as an ECDSA payload (non-zero, below the curve order).
pub fn payload(hash: [u8; 32]) -> Result<EcdsaPayload> {
    EcdsaPayload::new(hash).map_err(|e| Error::UnsignablePayload(e.to_string()))
}

fn parse(text: &str) -> Result<AffinePoint> {
    near_key::parse_secp256k1(text).map_err(|e| Error::BadAnswer(format!("`{text}`: {e}")))
}

/// `r ‖ s` (64 bytes) of a well-formed signature.
pub fn compact(signature: &EcdsaSignature) -> Result<[u8; 64]> {
    signature
        .check_form()
        .map_err(|e| Error::BadAnswer(format!("malformed signature: {e}")))
}

#[cfg(test)]
pub(crate) mod testing {
    //! A local stand-in for the network: the derived secret is known, so tests can
    //! make the same signatures the MPC nodes would.
    use super::*;
    use k256::ecdsa::SigningKey;
    use primitives::SerializableAffinePoint;

    pub struct LocalKey {
        pub secret: SigningKey,
        pub key: EcdsaKey,
    }

    impl LocalKey {
        pub fn new(seed: u8) -> LocalKey {
            LocalKey::from_secret([seed; 32])
        }

        pub fn from_secret(secret: [u8; 32]) -> LocalKey {
            let secret = SigningKey::from_slice(&secret).unwrap();
            let point = *secret.verifying_key().as_affine();
            LocalKey {
                secret,
                key: EcdsaKey {
                    predecessor: "alice.test.near".parse().unwrap(),
                    path: "test-1".into(),
                    domain: DOMAIN,
                    point,
                },
            }
        }

        /// Signs like the network: low s, the nonce point R of the normalised
        /// signature and its parity as the recovery id, in the response's types.
        pub fn sign(&self, hash: [u8; 32]) -> EcdsaSignature {
            let (signature, recovery) = self.secret.sign_prehash_recoverable(&hash).unwrap();
            let (r, s) = signature.split_scalars();
            let mut sec1 = [0u8; 33];
            sec1[0] = 2 + u8::from(recovery.is_y_odd());
            sec1[1..].copy_from_slice(&r.to_bytes());
            let big_r = SerializableAffinePoint { affine_point: sec1 }
                .to_point()
                .unwrap();
            let signature = EcdsaSignature::new(&big_r, &s).unwrap();
            self.key
                .verify(&payload(hash).unwrap(), &signature)
                .unwrap();
            signature
        }
    }
}
