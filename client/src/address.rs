//! `chainsig address`: the address an account controls on a foreign chain under a
//! path, from a key the contract and a local derivation agree on.

use crate::ecdsa::{self, EcdsaKey};
use crate::eddsa::{self, Ed25519Key};
use crate::error::Result;
use crate::near::Near;
use crate::{bitcoin, ethereum, solana};
use near_primitives::types::AccountId;
use serde::Serialize;

/// The chains `address` knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForeignChain {
    Ethereum,
    /// P2WPKH on this network.
    Bitcoin(::bitcoin::Network),
    /// The Ed25519 key of domain 1.
    Solana,
}

#[derive(Clone, Debug, Serialize)]
pub struct AddressReport {
    pub chain: String,
    pub predecessor: String,
    pub path: String,
    /// `secp256k1:…` or `ed25519:…`: the contract's `derived_public_key`, equal to
    /// the local derivation from its `public_key`.
    pub derived_public_key: String,
    pub address: String,
}

pub async fn address(
    near: &Near,
    predecessor: &AccountId,
    path: &str,
    chain: ForeignChain,
) -> Result<AddressReport> {
    let secp256k1 = || EcdsaKey::fetch(near, predecessor, path, ecdsa::DOMAIN);
    let (chain, derived_public_key, address) = match chain {
        ForeignChain::Ethereum => {
            let key = secp256k1().await?;
            let address = ethereum::checksummed(&ethereum::address(&key));
            ("ethereum".to_string(), key.near_string(), address)
        }
        ForeignChain::Bitcoin(network) => {
            let key = secp256k1().await?;
            let address = bitcoin::p2wpkh_address(&key, network)?.to_string();
            (format!("bitcoin ({network})"), key.near_string(), address)
        }
        ForeignChain::Solana => {
            let key = Ed25519Key::fetch(near, predecessor, path, eddsa::DOMAIN).await?;
            let address = solana::address(&key.key).to_string();
            ("solana".to_string(), key.near_string(), address)
        }
    };
    Ok(AddressReport {
        chain,
        predecessor: predecessor.to_string(),
        path: path.to_string(),
        derived_public_key,
        address,
    })
}

impl std::fmt::Display for AddressReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} address of {} (path {:?}):",
            self.chain, self.predecessor, self.path
        )?;
        writeln!(f, "  {}", self.address)?;
        write!(
            f,
            "derived key (contract and local derivation agree): {}",
            self.derived_public_key
        )
    }
}
