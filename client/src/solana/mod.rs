//! Solana: the address of a derived Ed25519 key (domain 1), and System transfers
//! from it whose message the network signs (Ed25519 signs the message bytes
//! themselves, so they are the `Eddsa` payload), relayed over JSON-RPC.

pub mod rpc;
pub mod transfer;

pub use rpc::{SignatureStatus, SolRpc};
pub use transfer::{
    assemble, payload, prepare, relay, send, send_with, transfer_message, wire, MessageSigner,
    NetworkSigner, Prepared, SolSend, SolSent,
};

use primitives::ed25519::Ed25519PublicKey;
pub use solana_hash::Hash;
pub use solana_pubkey::Pubkey;
pub use solana_signature::Signature;

/// Public RPC endpoints of Solana's clusters.
pub const MAINNET_BETA: &str = "https://api.mainnet-beta.solana.com";
pub const DEVNET: &str = "https://api.devnet.solana.com";
pub const TESTNET: &str = "https://api.testnet.solana.com";
/// `solana-test-validator`'s (and scripts/solana-rpc.mjs's) default address.
pub const LOCALHOST: &str = "http://127.0.0.1:8899";

/// 10⁹ lamports are one SOL.
pub const LAMPORTS_PER_SOL: u64 = 1_000_000_000;

/// The address of a derived key: its 32 bytes (base58 when written).
pub fn address(key: &Ed25519PublicKey) -> Pubkey {
    Pubkey::new_from_array(*key.as_bytes())
}

/// A base58 address of 32 bytes.
pub fn parse_address(text: &str) -> Result<Pubkey, String> {
    text.trim()
        .parse()
        .map_err(|e| format!("`{text}` is not a Solana address (base58 of 32 bytes): {e}"))
}

/// The cluster that goes with a NEAR network: mainnet-beta with mainnet, devnet
/// with testnet (where the apps that test against NEAR's testnet signer live).
pub fn default_rpc(near_network: &str) -> Option<&'static str> {
    match near_network {
        "mainnet" => Some(MAINNET_BETA),
        "testnet" => Some(DEVNET),
        _ => None,
    }
}

/// A cluster name (`mainnet-beta`, `devnet`, `testnet`, `localhost`) or a URL.
pub fn rpc_url(text: &str) -> Result<String, String> {
    Ok(match text {
        "mainnet-beta" | "mainnet" => MAINNET_BETA.into(),
        "devnet" => DEVNET.into(),
        "testnet" => TESTNET.into(),
        "localhost" => LOCALHOST.into(),
        url if url.starts_with("http://") || url.starts_with("https://") => url.into(),
        other => {
            return Err(format!(
            "`{other}` is neither a URL nor a cluster (mainnet-beta, devnet, testnet, localhost)"
        ))
        }
    })
}

/// `1.5 SOL (1500000000 lamports)`.
pub fn describe_lamports(lamports: u64) -> String {
    let whole = lamports / LAMPORTS_PER_SOL;
    let fraction = format!("{:09}", lamports % LAMPORTS_PER_SOL);
    let fraction = fraction.trim_end_matches('0');
    let sol = if fraction.is_empty() {
        whole.to_string()
    } else {
        format!("{whole}.{fraction}")
    };
    format!("{sol} SOL ({lamports} lamports)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_is_the_base58_of_the_derived_key() {
        // The testnet root key itself, read as a Solana address: primitives and
        // Solana's own type agree on the text.
        let root = Ed25519PublicKey::parse("ed25519:6vSEtQxrQj6txUMh33WC4ERyCWmNMRTdufDWAaDY3Un2")
            .unwrap();
        let derived = root.derive_for("alice.testnet", "solana-1");
        assert_eq!(address(&derived).to_string(), derived.solana_address());
        assert_eq!(
            parse_address(&derived.solana_address()).unwrap(),
            address(&derived)
        );
        assert!(parse_address("0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf")
            .unwrap_err()
            .contains("not a Solana address"));
        assert!(parse_address("3yZe7d").is_err(), "too short");
    }

    #[test]
    fn clusters_have_names_and_near_networks_have_clusters() {
        assert_eq!(rpc_url("devnet").unwrap(), DEVNET);
        assert_eq!(rpc_url("mainnet-beta").unwrap(), MAINNET_BETA);
        assert_eq!(rpc_url("http://127.0.0.1:9").unwrap(), "http://127.0.0.1:9");
        assert!(rpc_url("devnot").unwrap_err().contains("cluster"));
        assert_eq!(default_rpc("mainnet"), Some(MAINNET_BETA));
        assert_eq!(default_rpc("testnet"), Some(DEVNET));
        assert_eq!(default_rpc("localnet"), None);
    }

    #[test]
    fn lamports_read_as_sol() {
        assert_eq!(
            describe_lamports(1_500_000_000),
            "1.5 SOL (1500000000 lamports)"
        );
        assert_eq!(
            describe_lamports(LAMPORTS_PER_SOL),
            "1 SOL (1000000000 lamports)"
        );
        assert_eq!(describe_lamports(5000), "0.000005 SOL (5000 lamports)");
        assert_eq!(describe_lamports(0), "0 SOL (0 lamports)");
    }
}
