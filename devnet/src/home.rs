//! The `--home` directory, laid out like near-sandbox's: `genesis.json`,
//! `config.json`, `validator_key.json` (the root account's key) and `data/` (the
//! saved chain).

use crate::chain::{Genesis, GenesisAccount};
use crate::node::DevnetConfig;
use near_crypto::PublicKey;
use near_crypto::{KeyFile, KeyType, SecretKey};
use near_primitives::types::AccountId;
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
    /// nearcore's fields that sandbox tools (sandbox-rs) read and extend: accounts
    /// and keys added here exist from the genesis block on.
    pub total_supply: String,
    pub records: Vec<serde_json::Value>,
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
        total_supply: defaults.genesis.root_balance.to_string(),
        records: Vec::new(),
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
///
/// Tools written for near-sandbox (near-workspaces, sandbox-rs) may rewrite
/// `genesis.json` and `config.json` in nearcore's own format; fields we know from
/// either format are read (`chain_id`, the root account's balance in `records`,
/// `rpc.addr`), everything else keeps its default.
pub fn load(
    home: &Path,
    rpc_addr: Option<SocketAddr>,
    block_time_ms: Option<u64>,
) -> io::Result<DevnetConfig> {
    let genesis: serde_json::Value = read_json(&home.join("genesis.json"))?;
    let config: serde_json::Value = read_json(&home.join("config.json"))?;
    let key = KeyFile::from_file(&home.join("validator_key.json")).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot read {}/validator_key.json: {e}", home.display()),
        )
    })?;
    let defaults = DevnetConfig::new(
        SocketAddr::from(([127, 0, 0, 1], 3030)),
        Duration::from_secs(1),
    );
    let decimal = |value: &serde_json::Value, what: &str| -> io::Result<Option<u128>> {
        match value {
            serde_json::Value::Null => Ok(None),
            serde_json::Value::String(text) => text.parse().map(Some).map_err(|_| {
                io::Error::other(format!(
                    "genesis.json: {what} must be a decimal number, not {text:?}"
                ))
            }),
            other => Err(io::Error::other(format!(
                "genesis.json: {what} must be a decimal string, not {other}"
            ))),
        }
    };
    // nearcore's format: the root account's record in `records`.
    let record_balance = genesis["records"].as_array().and_then(|records| {
        records.iter().find_map(|r| {
            let account = &r["Account"];
            (account["account_id"].as_str() == Some(key.account_id.as_str()))
                .then(|| account["account"]["amount"].clone())
        })
    });
    let accounts = genesis_records(&genesis, &key.account_id)?;
    let root_balance = match decimal(&genesis["root_balance"], "root_balance")? {
        Some(balance) => balance,
        None => decimal(
            &record_balance.unwrap_or_default(),
            "the root account's amount",
        )?
        .unwrap_or(defaults.genesis.root_balance),
    };
    let gas_price = decimal(&genesis["gas_price"], "gas_price")?
        .or(decimal(&genesis["min_gas_price"], "min_gas_price")?)
        .unwrap_or(defaults.genesis.gas_price);
    let configured_addr = config["rpc_addr"]
        .as_str()
        .or(config["rpc"]["addr"].as_str());
    let rpc_addr = match (rpc_addr, configured_addr) {
        (Some(addr), _) => addr,
        (None, Some(text)) => text.parse().map_err(|_| {
            io::Error::other(format!(
                "config.json: rpc address {text:?} is not HOST:PORT"
            ))
        })?,
        (None, None) => defaults.rpc_addr,
    };
    let block_time_ms = block_time_ms
        .or(config["block_time_ms"].as_u64())
        .unwrap_or(1000);
    Ok(DevnetConfig {
        rpc_addr,
        block_time: Duration::from_millis(block_time_ms.max(1)),
        genesis: Genesis {
            chain_id: genesis["chain_id"]
                .as_str()
                .unwrap_or(&defaults.genesis.chain_id)
                .to_string(),
            root_account: key.account_id,
            root_public_key: key.public_key,
            root_balance,
            accounts,
            gas_price,
            yield_timeout_blocks: genesis["yield_timeout_blocks"]
                .as_u64()
                .unwrap_or(defaults.genesis.yield_timeout_blocks),
            genesis_time_ns: genesis["genesis_time_ns"]
                .as_u64()
                .unwrap_or(defaults.genesis.genesis_time_ns),
        },
        root_secret_key: key.secret_key,
        state_file: Some(state_file(home)),
    })
}

/// The accounts and full-access keys in nearcore-style `records` (other than the root
/// account's balance, which `load` reads itself).
fn genesis_records(
    genesis: &serde_json::Value,
    root: &AccountId,
) -> io::Result<Vec<GenesisAccount>> {
    let mut accounts: Vec<GenesisAccount> = Vec::new();
    let Some(records) = genesis["records"].as_array() else {
        return Ok(accounts);
    };
    let bad = |what: String| io::Error::other(format!("genesis.json records: {what}"));
    let entry = |accounts: &mut Vec<GenesisAccount>, id: &str| -> io::Result<usize> {
        let account_id: AccountId = id
            .parse()
            .map_err(|_| bad(format!("invalid account id {id:?}")))?;
        if let Some(i) = accounts.iter().position(|a| a.account_id == account_id) {
            return Ok(i);
        }
        accounts.push(GenesisAccount {
            account_id,
            balance: 0,
            keys: Vec::new(),
        });
        Ok(accounts.len() - 1)
    };
    for record in records {
        if let Some(account) = record.get("Account") {
            let id = account["account_id"].as_str().unwrap_or_default();
            let i = entry(&mut accounts, id)?;
            if accounts[i].account_id != *root {
                let amount = account["account"]["amount"].as_str().unwrap_or("0");
                accounts[i].balance = amount
                    .parse()
                    .map_err(|_| bad(format!("amount {amount:?} of {id} is not a number")))?;
            }
        } else if let Some(key) = record.get("AccessKey") {
            let id = key["account_id"].as_str().unwrap_or_default();
            let text = key["public_key"].as_str().unwrap_or_default();
            let public_key: PublicKey = text
                .parse()
                .map_err(|_| bad(format!("public key {text:?} of {id}")))?;
            let i = entry(&mut accounts, id)?;
            accounts[i].keys.push(public_key);
        }
    }
    Ok(accounts)
}

/// Where the chain is saved between runs.
pub fn state_file(home: &Path) -> PathBuf {
    home.join("data").join("chain.borsh")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_home(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("devnet-home-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn init_then_load_round_trips() {
        let home = temp_home("ours");
        init(&home, "localnet", 7).unwrap();
        let config = load(&home, None, Some(50)).unwrap();
        assert_eq!(config.genesis.root_account.as_str(), "test.near");
        assert_eq!(config.genesis.yield_timeout_blocks, 7);
        assert_eq!(config.block_time, Duration::from_millis(50));
        assert_eq!(config.rpc_addr, "127.0.0.1:3030".parse().unwrap());
        assert!(init(&home, "localnet", 7).is_err(), "a second init refuses");
        std::fs::remove_dir_all(&home).unwrap();
    }

    #[test]
    fn reads_nearcores_formats_written_by_sandbox_tools() {
        let home = temp_home("nearcore");
        init(&home, "localnet", 200).unwrap();
        let genesis = serde_json::json!({
            "chain_id": "sandbox",
            "min_gas_price": "100000000",
            "total_supply": "6000",
            "records": [
                {"Account": {"account_id": "test.near", "account": {"amount": "5000", "locked": "0"}}},
                {"Account": {"account_id": "sandbox", "account": {"amount": "1000", "locked": "0"}}},
                {"AccessKey": {"account_id": "sandbox", "public_key": "ed25519:5BGSaf6YjVm7565VzWQHNxoyEjwr3jUpRJSGjREvU9dB", "access_key": {"nonce": 0, "permission": "FullAccess"}}},
            ],
        });
        write_json(&home.join("genesis.json"), &genesis).unwrap();
        write_json(
            &home.join("config.json"),
            &serde_json::json!({"rpc": {"addr": "0.0.0.0:4040"}}),
        )
        .unwrap();
        let config = load(&home, None, None).unwrap();
        assert_eq!(config.genesis.chain_id, "sandbox");
        assert_eq!(config.genesis.root_balance, 5000);
        let sandbox = config
            .genesis
            .accounts
            .iter()
            .find(|a| a.account_id.as_str() == "sandbox")
            .expect("the sandbox account from the records");
        assert_eq!(sandbox.balance, 1000);
        assert_eq!(sandbox.keys.len(), 1);
        assert_eq!(config.rpc_addr, "0.0.0.0:4040".parse().unwrap());
        std::fs::remove_dir_all(&home).unwrap();
    }
}
