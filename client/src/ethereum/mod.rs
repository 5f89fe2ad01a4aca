//! Ethereum: the address of a derived key, EIP-1559 transactions signed by the
//! network and relayed, EIP-191 message signatures.

pub mod message;
pub mod rpc;
pub mod transaction;

pub use message::{sign_message, SignedMessage};
pub use rpc::{CallRequest, EthRpc, Receipt};
pub use transaction::{assemble, payload, prepare, relay, send, EthSend, EthSent};

use crate::ecdsa::EcdsaKey;
use alloy_primitives::utils::{format_ether, parse_units};
use alloy_primitives::{Address, U256};

/// The address of a derived key: the last 20 bytes of the Keccak-256 of its
/// uncompressed form (computed by `primitives`, which the contract shares).
pub fn address(key: &EcdsaKey) -> Address {
    Address::from(primitives::address::ethereum_address(&key.point))
}

/// The EIP-55 text of an address.
pub fn checksummed(address: &Address) -> String {
    primitives::address::to_checksum_string(&address.0 .0)
}

/// An address as `0x` + 40 hex digits; mixed case must be a valid EIP-55 checksum
/// (a typo is caught rather than paid).
pub fn parse_address(text: &str) -> Result<Address, String> {
    let digits = text.strip_prefix("0x").unwrap_or(text);
    let mixed = digits.chars().any(|c| c.is_ascii_uppercase())
        && digits.chars().any(|c| c.is_ascii_lowercase());
    let parsed = if mixed {
        Address::parse_checksummed(text, None).map_err(|e| e.to_string())
    } else {
        text.parse::<Address>().map_err(|e| e.to_string())
    };
    parsed.map_err(|e| format!("`{text}` is not an Ethereum address: {e}"))
}

/// An amount of ether: a whole number of wei (`1000`), or a decimal with a unit
/// (`0.5ether`, `30gwei`, `1 eth`).
pub fn parse_amount(text: &str) -> Result<U256, String> {
    let text = text.trim();
    if text.starts_with('-') {
        return Err(format!("`{text}` is negative"));
    }
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let parsed = if unit.is_empty() {
        U256::from_str_radix(number, 10).map_err(|e| e.to_string())
    } else {
        parse_units(number.trim(), unit.trim())
            .map(<U256 as From<_>>::from)
            .map_err(|e| e.to_string())
    };
    parsed.map_err(|e| format!("`{text}` is not an amount (e.g. 0.1ether, 20gwei, 1000): {e}"))
}

/// An amount in wei as a fee per gas (fits in 128 bits, as alloy's transactions want).
pub fn parse_fee(text: &str) -> Result<u128, String> {
    let amount = parse_amount(text)?;
    u128::try_from(amount).map_err(|_| format!("`{text}` is too large for a fee per gas"))
}

/// `1.5 ETH (1500000000000000000 wei)`.
pub fn describe_wei(wei: U256) -> String {
    let ether = format_ether(wei);
    let ether = ether.trim_end_matches('0').trim_end_matches('.');
    format!("{ether} ETH ({wei} wei)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ecdsa::testing::LocalKey;

    #[test]
    fn addresses_come_from_primitives_and_match_alloy() {
        // Secret key 1: the generator's well-known address.
        let mut secret = [0u8; 32];
        secret[31] = 1;
        let one = LocalKey::from_secret(secret);
        let address = address(&one.key);
        assert_eq!(
            checksummed(&address),
            "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"
        );
        assert_eq!(address.to_checksum(None), checksummed(&address));
    }

    #[test]
    fn addresses_with_a_bad_checksum_are_refused() {
        let good = "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf";
        assert_eq!(checksummed(&parse_address(good).unwrap()), good);
        assert!(parse_address(&good.to_lowercase()).is_ok());
        let typo = "0x7E5F4552091A69125d5DfCb7b8C2659029395BDf";
        assert!(parse_address(typo)
            .unwrap_err()
            .contains("not an Ethereum address"));
        assert!(parse_address("0x1234").is_err());
    }

    #[test]
    fn amounts_take_units() {
        let ether = U256::from(10u64).pow(U256::from(18));
        assert_eq!(parse_amount("1000").unwrap(), U256::from(1000));
        assert_eq!(parse_amount("0.5ether").unwrap(), ether / U256::from(2));
        assert_eq!(parse_amount("1 eth").unwrap(), ether);
        assert_eq!(parse_fee("30gwei").unwrap(), 30_000_000_000);
        assert!(parse_amount("-1").unwrap_err().contains("negative"));
        assert!(parse_amount("1.5").is_err(), "fractions of a wei");
        assert!(parse_amount("2 bananas").is_err());
        assert_eq!(
            describe_wei(ether + ether / U256::from(2)),
            "1.5 ETH (1500000000000000000 wei)"
        );
        assert_eq!(describe_wei(ether), "1 ETH (1000000000000000000 wei)");
    }
}
