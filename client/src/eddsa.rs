//! Ed25519 domains: the derived key of an account and path, and signatures checked
//! against it (RFC 8032, strict). The nodes do not sign Ed25519 yet; this serves
//! `chainsig sign` and `chainsig sol send` against networks that do.

use crate::error::{Error, Result};
use crate::near::Near;
use crate::progress::Progress;
use ed25519_dalek::{Signature, VerifyingKey};
use near_primitives::types::AccountId;
use primitives::ed25519::Ed25519PublicKey;
use primitives::{DomainId, Ed25519Signature, EddsaPayload, Payload, SignatureResponse};

/// The domain whose root key is Ed25519 by convention (DESIGN §4); Solana keys
/// live there.
pub const DOMAIN: DomainId = DomainId(1);

/// The Ed25519 key the network signs with for `predecessor` and `path` in `domain`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ed25519Key {
    pub predecessor: AccountId,
    pub path: String,
    pub domain: DomainId,
    pub key: Ed25519PublicKey,
}

impl Ed25519Key {
    /// The contract's derived key, checked against a local derivation from its root
    /// key (see [`crate::ecdsa::EcdsaKey::fetch`]).
    pub async fn fetch(
        near: &Near,
        predecessor: &AccountId,
        path: &str,
        domain: DomainId,
    ) -> Result<Ed25519Key> {
        let text = near.derived_key_text(predecessor, path, domain).await?;
        let from_contract = parse(&text)?;
        let root = parse(&near.root_key(domain).await?)?;
        let local = root.derive_for(predecessor.as_str(), path);
        if local != from_contract {
            return Err(Error::DerivationMismatch {
                contract: text,
                local: local.to_near_string(),
            });
        }
        Ok(Ed25519Key {
            predecessor: predecessor.clone(),
            path: path.to_string(),
            domain,
            key: local,
        })
    }

    pub fn near_string(&self) -> String {
        self.key.to_near_string()
    }

    /// Asks the network to sign `message` with this key and checks the answer.
    pub async fn sign(
        &self,
        near: &Near,
        message: EddsaPayload,
        progress: &Progress,
    ) -> Result<Ed25519Signature> {
        near.check_signer(&self.predecessor)?;
        let answer = near
            .sign(
                Payload::Eddsa(message.clone()),
                &self.path,
                self.domain,
                progress,
            )
            .await?;
        let SignatureResponse::Ed25519 { signature } = answer else {
            return Err(Error::BadAnswer(format!(
                "an Ed25519 signature expected, got {answer:?}"
            )));
        };
        self.verify(message.as_bytes(), &signature)?;
        Ok(signature)
    }

    pub fn verify(&self, message: &[u8], signature: &Ed25519Signature) -> Result<()> {
        verify(&self.key, message, signature)
    }
}

/// Checks that `signature` is `key`'s over `message`, strictly (canonical S, no
/// small-order R or key), as Solana's runtime and the contract check it.
pub fn verify(key: &Ed25519PublicKey, message: &[u8], signature: &Ed25519Signature) -> Result<()> {
    let bad = |reason: String| Error::BadSignature {
        key: key.to_near_string(),
        reason,
    };
    let verifying = VerifyingKey::from_bytes(key.as_bytes()).map_err(|e| bad(e.to_string()))?;
    verifying
        .verify_strict(message, &Signature::from_bytes(&signature.0))
        .map_err(|e| bad(e.to_string()))
}

fn parse(text: &str) -> Result<Ed25519PublicKey> {
    Ed25519PublicKey::parse(text).map_err(|e| Error::BadAnswer(format!("`{text}`: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    #[test]
    fn only_the_keys_own_signature_over_the_message_verifies() {
        let secret = SigningKey::from_bytes(&[3; 32]);
        let key = Ed25519Key {
            predecessor: "alice.test.near".parse().unwrap(),
            path: "solana-1".into(),
            domain: DomainId(1),
            key: Ed25519PublicKey::from_bytes(secret.verifying_key().to_bytes()).unwrap(),
        };
        let message = [7u8; 40];
        let signature = Ed25519Signature(secret.sign(&message).to_bytes());
        key.verify(&message, &signature).unwrap();
        let text = key.verify(&[8u8; 40], &signature).unwrap_err().to_string();
        assert!(
            text.starts_with("the signature the network returned does not verify for ed25519:"),
            "{text}"
        );
    }
}
