//! Shows the key and address a NEAR account controls through Chain Signatures,
//! computed locally from the network's public root key of a domain.
//!
//!   cargo run -p chain-signatures-primitives --example derive -- [OPTIONS] [ACCOUNT] [PATH]
//!
//! Options: --network testnet|mainnet (default testnet), --domain 0|1 (0: secp256k1,
//! an Ethereum address; 1: Ed25519, a Solana address; default 0), --root <key>
//! (any root key, `secp256k1:…` or `ed25519:…`, e.g. a local network's; it names
//! the scheme), --json.

use primitives::ed25519::Ed25519PublicKey;
use primitives::{address, derivation, near_key};
use std::process::ExitCode;

/// The deployed networks' root keys (DESIGN §4), by network and domain.
const ROOTS: [(&str, &str, &str); 2] = [
    (
        "testnet",
        "secp256k1:4NfTiv3UsGahebgTaHyD9vF8KYKMBnfd6kh94mK6xv8fGBiJB8TBtFMP5WWXz6B89Ac1fbpzPwAvoyQebemHFwx3",
        "ed25519:6vSEtQxrQj6txUMh33WC4ERyCWmNMRTdufDWAaDY3Un2",
    ),
    (
        "mainnet",
        "secp256k1:3tFRbMqmoa6AAALMrEFAYCEoHcqKxeW38YptwowBVBtXK1vo36HDbUWuR6EZmoK4JcH6HDkNMGGqP1ouV7VZUWya",
        "ed25519:G9hwngxWNKdmqMCmU1Yt6LPhFpayJeKFxyAV1HqMNLtF",
    ),
];

const USAGE: &str = "usage: derive [--network testnet|mainnet] [--domain 0|1] [--root KEY] [--json] [ACCOUNT] [PATH]
Prints the public key and address that ACCOUNT (default alice.testnet) controls for
PATH (default ethereum-1, or solana-1 in domain 1) under the Chain Signatures root
key: domain 0 (secp256k1) gives an Ethereum address, domain 1 (Ed25519) a Solana
address. --root takes any root key (secp256k1:... or ed25519:...) instead of the
network's.";

struct Args {
    network: String,
    domain: u64,
    root: Option<String>,
    json: bool,
    account: String,
    path: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        network: "testnet".into(),
        domain: 0,
        root: None,
        json: false,
        account: "alice.testnet".into(),
        path: None,
    };
    let mut positional = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--json" => args.json = true,
            "-h" | "--help" => return Err(String::new()),
            "--network" => {
                args.network = it.next().ok_or("--network needs testnet or mainnet")?;
                if !ROOTS.iter().any(|(name, _, _)| *name == args.network) {
                    return Err(format!(
                        "unknown network `{}`: use testnet or mainnet",
                        args.network
                    ));
                }
            }
            "--domain" => {
                args.domain = match it.next().as_deref() {
                    Some("0") => 0,
                    Some("1") => 1,
                    other => {
                        return Err(format!(
                            "--domain takes 0 (secp256k1) or 1 (Ed25519), got `{}`",
                            other.unwrap_or_default()
                        ))
                    }
                };
            }
            "--root" => {
                args.root = Some(it.next().ok_or("--root needs a key like secp256k1:...")?);
            }
            flag if flag.starts_with("--") => return Err(format!("unknown option `{flag}`")),
            _ => positional.push(arg),
        }
    }
    match positional.len() {
        0 => {}
        1 => args.account = positional.remove(0),
        2 => {
            args.path = Some(positional.remove(1));
            args.account = positional.remove(0);
        }
        _ => return Err("too many arguments: give ACCOUNT and PATH at most".into()),
    }
    Ok(args)
}

/// What an account controls: the derived key and its address on the domain's chain.
struct Derived {
    key: String,
    chain: &'static str,
    address: String,
}

fn derive(root: &str, account: &str, path: &str) -> Result<Derived, String> {
    if root.starts_with("ed25519:") {
        let root = Ed25519PublicKey::parse(root).map_err(|e| format!("--root: {e}"))?;
        let derived = root.derive_for(account, path);
        return Ok(Derived {
            key: derived.to_near_string(),
            chain: "Solana",
            address: derived.solana_address(),
        });
    }
    let root = near_key::parse_secp256k1(root).map_err(|e| format!("--root: {e}"))?;
    let derived =
        derivation::derive_public_key_for(&root, account, path).map_err(|e| e.to_string())?;
    Ok(Derived {
        key: near_key::to_near_string(&derived),
        chain: "Ethereum",
        address: address::to_checksum_string(&address::ethereum_address(&derived)),
    })
}

fn run(args: Args) -> Result<(), String> {
    let (network, root) = match &args.root {
        Some(root) => ("custom".to_string(), root.clone()),
        None => {
            let (_, secp256k1, ed25519) = ROOTS
                .iter()
                .find(|(name, _, _)| *name == args.network)
                .expect("checked when parsed");
            let root = if args.domain == 1 { ed25519 } else { secp256k1 };
            (args.network.clone(), root.to_string())
        }
    };
    let default_path = if root.starts_with("ed25519:") {
        "solana-1"
    } else {
        "ethereum-1"
    };
    let path = args.path.as_deref().unwrap_or(default_path);
    let derived = derive(&root, &args.account, path)?;
    if args.json {
        let mut out = serde_json::json!({
            "network": network,
            "root_public_key": root,
            "predecessor": args.account,
            "path": path,
            "derived_public_key": derived.key,
        });
        let address_field = format!("{}_address", derived.chain.to_lowercase());
        out[address_field] = derived.address.into();
        println!("{out}");
    } else {
        println!("network            {network} ({root})");
        println!("account, path      {}, {path}", args.account);
        println!("derived public key {}", derived.key);
        println!(
            "{:<18} {}",
            format!("{} address", derived.chain),
            derived.address
        );
        println!("\nComputed locally from the public root key; `make demo` runs a whole");
        println!("network on this machine that signs for such addresses.");
    }
    Ok(())
}

fn main() -> ExitCode {
    match parse_args() {
        Ok(args) => match run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(why) => {
                eprintln!("error: {why}");
                ExitCode::FAILURE
            }
        },
        Err(why) => {
            if !why.is_empty() {
                eprintln!("error: {why}\n");
            }
            eprintln!("{USAGE}");
            if why.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            }
        }
    }
}
