//! Bitcoin: the P2WPKH address of a derived key, and spends of its outputs with one
//! network signature per input over the input's BIP-143 sighash.

pub mod esplora;
pub mod spend;

pub use esplora::Esplora;
pub use spend::{send, BtcSend, BtcSent, Inputs, Payment, Utxo};

use crate::ecdsa::EcdsaKey;
use crate::error::{Error, Result};
use ::bitcoin::{Address, CompressedPublicKey, Network};

/// A network by the names users know: mainnet (or bitcoin), testnet, testnet4,
/// signet, regtest.
pub fn parse_network(text: &str) -> Result<Network, String> {
    match text {
        "mainnet" => Ok(Network::Bitcoin),
        other => other.parse().map_err(|_| {
            format!(
                "`{text}` is not a Bitcoin network (mainnet, testnet, testnet4, signet, regtest)"
            )
        }),
    }
}

/// The key as Bitcoin writes it (33 bytes, compressed).
pub fn compressed_key(key: &EcdsaKey) -> Result<CompressedPublicKey> {
    CompressedPublicKey::from_slice(&key.compressed())
        .map_err(|e| Error::BadAnswer(format!("the derived key is not a Bitcoin key: {e}")))
}

/// The P2WPKH address of the key: bech32 of hash160 of the compressed key.
pub fn p2wpkh_address(key: &EcdsaKey, network: Network) -> Result<Address> {
    Ok(Address::p2wpkh(&compressed_key(key)?, network))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ecdsa::testing::LocalKey;

    #[test]
    fn the_generator_key_has_bip173s_example_address() {
        let mut one = [0u8; 32];
        one[31] = 1;
        let key = LocalKey::from_secret(one).key;
        // BIP-173's P2WPKH example is the hash160 of the generator's compressed key.
        assert_eq!(
            p2wpkh_address(&key, Network::Bitcoin).unwrap().to_string(),
            "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"
        );
        assert_eq!(
            p2wpkh_address(&key, Network::Testnet).unwrap().to_string(),
            "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx"
        );
        assert!(p2wpkh_address(&key, Network::Regtest)
            .unwrap()
            .to_string()
            .starts_with("bcrt1q"));
    }

    #[test]
    fn networks_parse_by_their_usual_names() {
        assert_eq!(parse_network("mainnet").unwrap(), Network::Bitcoin);
        assert_eq!(parse_network("regtest").unwrap(), Network::Regtest);
        assert!(parse_network("moonnet").unwrap_err().contains("regtest"));
    }
}
