//! `chainsig eth sign-message`: an EIP-191 personal message signed with the derived
//! key, as `personal_sign` and `eth_sign` would sign it.

use super::{address, checksummed};
use crate::ecdsa::{self, EcdsaKey};
use crate::error::Result;
use crate::near::Near;
use crate::progress::Progress;
use alloy_primitives::{eip191_hash_message, B256};
use primitives::EcdsaSignature;
use serde::Serialize;

/// A message signature in the form Ethereum tools take: 65 bytes `r ‖ s ‖ v`, with
/// v = 27 + recovery id.
#[derive(Clone, Debug, Serialize)]
pub struct SignedMessage {
    pub address: String,
    /// Hex of the message bytes.
    pub message: String,
    /// keccak256("\x19Ethereum Signed Message:\n" ‖ len ‖ message): what was signed.
    pub message_hash: B256,
    pub signature: String,
}

pub async fn sign_message(
    near: &Near,
    path: &str,
    message: &[u8],
    progress: &Progress,
) -> Result<SignedMessage> {
    let key = EcdsaKey::fetch(near, &near.account(), path, ecdsa::DOMAIN).await?;
    let hash = eip191_hash_message(message);
    let signature = key.sign(near, hash.0, progress).await?;
    Ok(SignedMessage {
        address: checksummed(&address(&key)),
        message: format!("0x{}", hex::encode(message)),
        message_hash: hash,
        signature: format!("0x{}", hex::encode(rsv(&signature)?)),
    })
}

/// `r ‖ s ‖ v`, v = 27 + recovery id.
pub fn rsv(signature: &EcdsaSignature) -> Result<[u8; 65]> {
    let rs = ecdsa::compact(signature)?;
    let mut out = [0u8; 65];
    out[..64].copy_from_slice(&rs);
    out[64] = 27 + signature.recovery_id;
    Ok(out)
}

impl std::fmt::Display for SignedMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "address:      {}", self.address)?;
        writeln!(f, "message hash: {}", self.message_hash)?;
        write!(f, "signature:    {}", self.signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ecdsa::testing::LocalKey;

    #[test]
    fn the_signature_recovers_to_the_address_as_ethereum_tools_do() {
        // The widely published EIP-191 hash of "Hello World".
        assert_eq!(
            eip191_hash_message(b"Hello World").to_string(),
            "0xa1de988600a42c4b4ab089b619297c17d53cffae5d5120d82d8a92d0bb3b78f2"
        );
        let local = LocalKey::new(9);
        let hash = eip191_hash_message(b"chainsig");
        let bytes = rsv(&local.sign(hash.0)).unwrap();
        assert!(bytes[64] == 27 || bytes[64] == 28);
        let recovered = k256::ecdsa::VerifyingKey::recover_from_prehash(
            &hash.0,
            &k256::ecdsa::Signature::from_slice(&bytes[..64]).unwrap(),
            k256::ecdsa::RecoveryId::from_byte(bytes[64] - 27).unwrap(),
        )
        .unwrap();
        assert_eq!(recovered.as_affine(), &local.key.point);
        assert_eq!(address(&local.key), {
            let point = *recovered.as_affine();
            alloy_primitives::Address::from(primitives::address::ethereum_address(&point))
        });
    }
}
