//! `chainsig sign`: any payload in any domain, for chains without a module here.
//! The domain's root key tells its scheme, and so what the payload must be.

use crate::ecdsa::{self, EcdsaKey};
use crate::eddsa::Ed25519Key;
use crate::error::{Error, Result};
use crate::near::Near;
use crate::progress::Progress;
use primitives::{DomainId, EddsaPayload, SignatureResponse, SignatureScheme};
use serde::Serialize;

/// A payload signed by the network and verified for the caller's derived key.
#[derive(Clone, Debug, Serialize)]
pub struct SignedPayload {
    pub predecessor: String,
    pub path: String,
    pub domain_id: DomainId,
    pub scheme: SignatureScheme,
    /// Hex.
    pub payload: String,
    pub derived_public_key: String,
    /// The contract's answer, as it gave it.
    pub signature: SignatureResponse,
}

/// Signs `payload` in `domain` with the key of the client's account and `path`:
/// for secp256k1 a 32-byte hash, for Ed25519 the message itself (32 to 1232 bytes).
pub async fn sign_payload(
    near: &Near,
    domain: DomainId,
    payload: Vec<u8>,
    path: &str,
    progress: &Progress,
) -> Result<SignedPayload> {
    let scheme = scheme_of(&near.root_key(domain).await?)?;
    let account = near.account();
    let hex_payload = hex::encode(&payload);
    let (derived_public_key, signature) = match scheme {
        SignatureScheme::Secp256k1 => {
            let hash: [u8; 32] = payload.try_into().map_err(|p: Vec<u8>| {
                Error::invalid(
                    "payload",
                    format!(
                        "a secp256k1 domain signs a 32-byte hash, got {} bytes",
                        p.len()
                    ),
                )
            })?;
            ecdsa::payload(hash)?;
            let key = EcdsaKey::fetch(near, &account, path, domain).await?;
            let signature = key.sign(near, hash, progress).await?;
            (key.near_string(), SignatureResponse::Secp256k1(signature))
        }
        SignatureScheme::Ed25519 => {
            let message = EddsaPayload::new(payload).map_err(|e| Error::invalid("payload", e))?;
            let key = Ed25519Key::fetch(near, &account, path, domain).await?;
            let signature = key.sign(near, message, progress).await?;
            (key.near_string(), SignatureResponse::Ed25519 { signature })
        }
    };
    Ok(SignedPayload {
        predecessor: account.to_string(),
        path: path.to_string(),
        domain_id: domain,
        scheme,
        payload: hex_payload,
        derived_public_key,
        signature,
    })
}

/// The scheme of a root key, from the prefix the contract writes.
pub fn scheme_of(root_key: &str) -> Result<SignatureScheme> {
    match root_key.split_once(':') {
        Some(("secp256k1", _)) => Ok(SignatureScheme::Secp256k1),
        Some(("ed25519", _)) => Ok(SignatureScheme::Ed25519),
        _ => Err(Error::BadAnswer(format!(
            "a root key of an unknown scheme: `{root_key}`"
        ))),
    }
}

impl std::fmt::Display for SignedPayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "signer:       {} (path {:?}, domain {})",
            self.predecessor, self.path, self.domain_id
        )?;
        writeln!(f, "derived key:  {}", self.derived_public_key)?;
        writeln!(f, "payload:      {}", self.payload)?;
        match &self.signature {
            SignatureResponse::Secp256k1(signature) => {
                let rs = hex::encode(signature.check_form().map_err(|_| std::fmt::Error)?);
                writeln!(f, "r:            {}", &rs[..64])?;
                writeln!(f, "s:            {}", &rs[64..])?;
                writeln!(f, "recovery id:  {}", signature.recovery_id)?;
                write!(
                    f,
                    "big_r:        {}",
                    hex::encode(signature.big_r.affine_point)
                )
            }
            SignatureResponse::Ed25519 { signature } => {
                write!(f, "signature:    {}", hex::encode(signature.0))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_keys_prefix_tells_the_scheme() {
        assert_eq!(
            scheme_of("secp256k1:4NfTiv").unwrap(),
            SignatureScheme::Secp256k1
        );
        assert_eq!(
            scheme_of("ed25519:6vSEtQ").unwrap(),
            SignatureScheme::Ed25519
        );
        assert!(scheme_of("bls12-381:xyz").is_err());
    }
}
