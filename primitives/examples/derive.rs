//! Shows the key and Ethereum address a NEAR account controls through Chain
//! Signatures, computed locally from the network's public root key.
//!
//!   cargo run -p chain-signatures-primitives --example derive -- [OPTIONS] [ACCOUNT] [PATH]
//!
//! Options: --network testnet|mainnet (default testnet), --root <secp256k1:...> (any
//! root key, e.g. a local network's), --json.

use primitives::{address, derivation, near_key};
use std::process::ExitCode;

const TESTNET_ROOT: &str = "secp256k1:4NfTiv3UsGahebgTaHyD9vF8KYKMBnfd6kh94mK6xv8fGBiJB8TBtFMP5WWXz6B89Ac1fbpzPwAvoyQebemHFwx3";
const MAINNET_ROOT: &str = "secp256k1:3tFRbMqmoa6AAALMrEFAYCEoHcqKxeW38YptwowBVBtXK1vo36HDbUWuR6EZmoK4JcH6HDkNMGGqP1ouV7VZUWya";

const USAGE: &str =
    "usage: derive [--network testnet|mainnet] [--root secp256k1:...] [--json] [ACCOUNT] [PATH]
Prints the public key and Ethereum address that ACCOUNT (default alice.testnet)
controls for PATH (default ethereum-1) under the Chain Signatures root key.";

struct Args {
    network: String,
    root: String,
    json: bool,
    account: String,
    path: String,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        network: "testnet".into(),
        root: TESTNET_ROOT.into(),
        json: false,
        account: "alice.testnet".into(),
        path: "ethereum-1".into(),
    };
    let mut positional = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--json" => args.json = true,
            "-h" | "--help" => return Err(String::new()),
            "--network" => {
                args.network = it.next().ok_or("--network needs testnet or mainnet")?;
                args.root = match args.network.as_str() {
                    "testnet" => TESTNET_ROOT.into(),
                    "mainnet" => MAINNET_ROOT.into(),
                    other => {
                        return Err(format!("unknown network `{other}`: use testnet or mainnet"))
                    }
                };
            }
            "--root" => {
                args.root = it.next().ok_or("--root needs a key like secp256k1:...")?;
                args.network = "custom".into();
            }
            flag if flag.starts_with("--") => return Err(format!("unknown option `{flag}`")),
            _ => positional.push(arg),
        }
    }
    match positional.len() {
        0 => {}
        1 => args.account = positional.remove(0),
        2 => {
            args.path = positional.remove(1);
            args.account = positional.remove(0);
        }
        _ => return Err("too many arguments: give ACCOUNT and PATH at most".into()),
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(why) => {
            if !why.is_empty() {
                eprintln!("error: {why}\n");
            }
            eprintln!("{USAGE}");
            return if why.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
    };
    let root = match near_key::parse_secp256k1(&args.root) {
        Ok(root) => root,
        Err(e) => {
            eprintln!("error: --root: {e}");
            return ExitCode::from(2);
        }
    };
    let derived = match derivation::derive_public_key_for(&root, &args.account, &args.path) {
        Ok(key) => key,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let eth = address::to_checksum_string(&address::ethereum_address(&derived));
    let derived_text = near_key::to_near_string(&derived);
    if args.json {
        println!(
            "{{\"network\":\"{}\",\"root_public_key\":\"{}\",\"predecessor\":\"{}\",\"path\":\"{}\",\"derived_public_key\":\"{}\",\"ethereum_address\":\"{}\"}}",
            args.network, args.root, args.account, args.path.replace('"', "\\\""), derived_text, eth
        );
    } else {
        println!("network            {} ({})", args.network, args.root);
        println!("account, path      {}, {}", args.account, args.path);
        println!("derived public key {derived_text}");
        println!("Ethereum address   {eth}");
        println!("\nThis is computed locally from the public root key. The full local network");
        println!("(devnet, contract, MPC nodes signing end to end) arrives with the node.");
    }
    ExitCode::SUCCESS
}
