//! The `--home` directory, laid out like near-sandbox's: `genesis.json`,
//! `config.json`, `validator_key.json` (the root account's key) and `data/` (the
//! saved chain).

use crate::chain::Genesis;
use crate::node::DevnetConfig;
use near_crypto::{KeyFile, KeyType, SecretKey};
use serde::{Deserialize, Serialize};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `genesis.json`: what the chain starts with.
#[derive(Serialize, Deserialize)]
pub struct GenesisFile {
    pub chain_id: String,
    pub genesis_time_ns: u64,
    pub root_account: near_primitives::types::AccountId,
    /// yoctoNEAR, as a decimal string.
    pub root_balance: String,
    /// yoctoNEAR per gas, as a decimal string.
    pub gas_price: String,
    pub yield_timeout_blocks: u64,
}

/// `config.json`: how the node runs (command-line flags override it).
#[derive(Serialize, Deserialize)]
pub struct ConfigFile {
    pub rpc_addr: String,
    pub block_time_ms: u64,
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> io::Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot read {}: {e}. Run `devnet --home <dir> init` first",
                path.display()
            ),
        )
    })?;
    serde_json::from_str(&text)
        .map_err(|e| io::Error::other(format!("{} is not valid: {e}", path.display())))
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(value)?)
}

/// Creates `home` with a new genesis and root key (like `near-sandbox init`).
/// Refuses to overwrite an existing home.
pub fn init(home: &Path, chain_id: &str, yield_timeout_blocks: u64) -> io::Result<()> {
    std::fs::create_dir_all(home.join("data"))?;
    let key_path = home.join("validator_key.json");
    if key_path.exists() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} already exists: this home is initialised (delete it to start over)",
                key_path.display()
            ),
        ));
    }
    let defaults = DevnetConfig::new(
        SocketAddr::from(([127, 0, 0, 1], 3030)),
        Duration::from_secs(1),
    );
    let genesis = GenesisFile {
        chain_id: chain_id.to_string(),
        genesis_time_ns: defaults.genesis.genesis_time_ns,
        root_account: defaults.genesis.root_account.clone(),
        root_balance: defaults.genesis.root_balance.to_string(),
        gas_price: defaults.genesis.gas_price.to_string(),
        yield_timeout_blocks,
    };
    write_json(&home.join("genesis.json"), &genesis)?;
    write_json(
        &home.join("config.json"),
        &ConfigFile {
            rpc_addr: "127.0.0.1:3030".to_string(),
            block_time_ms: 1000,
        },
    )?;
    let secret_key = SecretKey::from_random(KeyType::ED25519);
    KeyFile {
        account_id: genesis.root_account,
        public_key: secret_key.public_key(),
        secret_key,
    }
    .write_to_file(&key_path)?;
    // near-sandbox also writes a node key; tools that look for it find the same key.
    std::fs::copy(&key_path, home.join("node_key.json"))?;
    Ok(())
}

/// The run configuration stored in `home`, with optional overrides.
pub fn load(
    home: &Path,
    rpc_addr: Option<SocketAddr>,
    block_time_ms: Option<u64>,
) -> io::Result<DevnetConfig> {
    let genesis: GenesisFile = read_json(&home.join("genesis.json"))?;
    let config: ConfigFile = read_json(&home.join("config.json"))?;
    let key = KeyFile::from_file(&home.join("validator_key.json")).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot read {}/validator_key.json: {e}", home.display()),
        )
    })?;
    let parse_u128 = |what: &str, text: &str| {
        text.parse::<u128>().map_err(|_| {
            io::Error::other(format!(
                "genesis.json: {what} must be a decimal number, not {text:?}"
            ))
        })
    };
    let rpc_addr = match rpc_addr {
        Some(addr) => addr,
        None => config.rpc_addr.parse().map_err(|_| {
            io::Error::other(format!(
                "config.json: rpc_addr {:?} is not HOST:PORT",
                config.rpc_addr
            ))
        })?,
    };
    Ok(DevnetConfig {
        rpc_addr,
        block_time: Duration::from_millis(block_time_ms.unwrap_or(config.block_time_ms).max(1)),
        genesis: Genesis {
            chain_id: genesis.chain_id,
            root_account: key.account_id,
            root_public_key: key.public_key,
            root_balance: parse_u128("root_balance", &genesis.root_balance)?,
            gas_price: parse_u128("gas_price", &genesis.gas_price)?,
            yield_timeout_blocks: genesis.yield_timeout_blocks,
            genesis_time_ns: genesis.genesis_time_ns,
        },
        root_secret_key: key.secret_key,
        state_file: Some(state_file(home)),
    })
}

/// Where the chain is saved between runs.
pub fn state_file(home: &Path) -> PathBuf {
    home.join("data").join("chain.borsh")
}
