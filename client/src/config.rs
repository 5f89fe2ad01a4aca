//! Where chainsig finds its NEAR network, contract, account and foreign RPCs: flags
//! (and their environment variables) first, then the config file, then the defaults
//! of the deployed signers on testnet and mainnet.

use crate::error::{Error, Result};
use near_primitives::types::AccountId;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// A NEAR network chainsig knows: its public RPC and the deployed signer contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KnownNetwork {
    pub name: &'static str,
    pub rpc: &'static str,
    pub contract: &'static str,
}

pub const TESTNET: KnownNetwork = KnownNetwork {
    name: "testnet",
    rpc: "https://rpc.testnet.near.org",
    contract: "v1.signer-prod.testnet",
};

pub const MAINNET: KnownNetwork = KnownNetwork {
    name: "mainnet",
    rpc: "https://rpc.mainnet.near.org",
    contract: "v1.signer",
};

impl KnownNetwork {
    pub fn find(name: &str) -> Option<KnownNetwork> {
        [TESTNET, MAINNET].into_iter().find(|n| n.name == name)
    }
}

/// The config file (TOML). Every key is optional; flags and environment variables
/// win over it.
///
/// ```toml
/// near_network = "testnet"          # names the ~/.near-credentials/<network> folder too
/// near_rpc = "https://rpc.testnet.near.org"
/// contract = "v1.signer-prod.testnet"
/// account = "you.testnet"
/// eth_rpc = "https://sepolia.example"
/// esplora = "https://esplora.example/testnet/api"
/// bitcoin_network = "testnet"
/// sol_rpc = "devnet"                # a cluster name or a URL
/// ```
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub near_network: Option<String>,
    pub near_rpc: Option<String>,
    pub contract: Option<String>,
    pub account: Option<String>,
    /// A secret key or the path of a near-cli credentials file.
    pub near_key: Option<String>,
    pub credentials_dir: Option<PathBuf>,
    pub eth_rpc: Option<String>,
    pub esplora: Option<String>,
    pub bitcoin_network: Option<String>,
    /// A Solana JSON-RPC URL or cluster name (default: by the NEAR network).
    pub sol_rpc: Option<String>,
    /// Where it was read from.
    #[serde(skip)]
    pub path: Option<PathBuf>,
}

impl ConfigFile {
    /// Reads `explicit` (which must exist), or else the default file if there is one.
    pub fn load(explicit: Option<&Path>) -> Result<ConfigFile> {
        match explicit {
            Some(path) => Self::read(path),
            None => match default_path() {
                Some(path) if path.exists() => Self::read(&path),
                _ => Ok(ConfigFile::default()),
            },
        }
    }

    pub fn read(path: &Path) -> Result<ConfigFile> {
        let fail = |reason: String| Error::Config {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let mut file: ConfigFile = toml::from_str(&text).map_err(|e| fail(e.to_string()))?;
        file.path = Some(path.to_path_buf());
        Ok(file)
    }
}

/// `$XDG_CONFIG_HOME/chainsig/config.toml`, else `~/.config/chainsig/config.toml`.
pub fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".config")))?;
    Some(base.join("chainsig").join("config.toml"))
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The NEAR side as given on the command line (`None`: not given).
#[derive(Clone, Debug, Default)]
pub struct NearOptions {
    pub network: Option<String>,
    pub rpc: Option<String>,
    pub contract: Option<String>,
    pub account: Option<String>,
    pub near_key: Option<String>,
    pub credentials_dir: Option<PathBuf>,
}

/// The NEAR side, resolved.
#[derive(Clone, Debug)]
pub struct NearSettings {
    pub network: String,
    pub rpc: String,
    pub contract: AccountId,
    /// Needed to sign, and as the default owner of the keys `address` shows.
    pub account: Option<AccountId>,
    pub near_key: Option<String>,
    pub credentials_dir: PathBuf,
}

impl NearSettings {
    pub fn resolve(flags: &NearOptions, file: &ConfigFile) -> Result<NearSettings> {
        let network = first(&flags.network, &file.near_network).unwrap_or_else(|| "testnet".into());
        let known = KnownNetwork::find(&network);
        let no_default = |what, flag, key| Error::NoDefault {
            what,
            network: network.clone(),
            flag,
            key,
        };
        let rpc = first(&flags.rpc, &file.near_rpc)
            .or_else(|| known.map(|n| n.rpc.to_string()))
            .ok_or_else(|| no_default("RPC address", "near-rpc", "near_rpc"))?;
        let contract = first(&flags.contract, &file.contract)
            .or_else(|| known.map(|n| n.contract.to_string()))
            .ok_or_else(|| no_default("signer contract", "contract", "contract"))?;
        let account = first(&flags.account, &file.account)
            .map(|a| parse_account(&a))
            .transpose()?;
        let credentials_dir = flags
            .credentials_dir
            .clone()
            .or_else(|| file.credentials_dir.clone())
            .or_else(|| home().map(|h| h.join(".near-credentials")))
            .unwrap_or_else(|| PathBuf::from(".near-credentials"));
        Ok(NearSettings {
            contract: parse_account(&contract)?,
            network,
            rpc,
            account,
            near_key: first(&flags.near_key, &file.near_key),
            credentials_dir,
        })
    }

    /// The account that signs.
    pub fn signer(&self) -> Result<&AccountId> {
        self.account.as_ref().ok_or(Error::NoAccount)
    }
}

/// The flag's value if given, else the file's.
pub fn first(flag: &Option<String>, file: &Option<String>) -> Option<String> {
    flag.clone().or_else(|| file.clone())
}

pub fn parse_account(text: &str) -> Result<AccountId> {
    text.parse()
        .map_err(|e| Error::invalid("NEAR account id", format!("`{text}`: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_networks_default_to_the_deployed_signers() {
        let testnet =
            NearSettings::resolve(&NearOptions::default(), &ConfigFile::default()).unwrap();
        assert_eq!(testnet.network, "testnet");
        assert_eq!(testnet.contract.as_str(), "v1.signer-prod.testnet");
        assert_eq!(testnet.rpc, TESTNET.rpc);
        assert!(matches!(testnet.signer(), Err(Error::NoAccount)));

        let flags = NearOptions {
            network: Some("mainnet".into()),
            account: Some("you.near".into()),
            ..Default::default()
        };
        let mainnet = NearSettings::resolve(&flags, &ConfigFile::default()).unwrap();
        assert_eq!(mainnet.contract.as_str(), "v1.signer");
        assert_eq!(mainnet.signer().unwrap().as_str(), "you.near");
    }

    #[test]
    fn flags_win_over_the_file_and_other_networks_need_both_addresses() {
        let file: ConfigFile = toml::from_str(
            r#"
            near_network = "localnet"
            near_rpc = "http://127.0.0.1:3030"
            account = "alice.test.near"
            eth_rpc = "http://127.0.0.1:8545"
            "#,
        )
        .unwrap();
        let missing = NearSettings::resolve(&NearOptions::default(), &file).unwrap_err();
        let text = missing.to_string();
        assert!(
            text.contains("localnet") && text.contains("--contract"),
            "{text}"
        );

        let flags = NearOptions {
            contract: Some("signer.test.near".into()),
            account: Some("bob.test.near".into()),
            ..Default::default()
        };
        let settings = NearSettings::resolve(&flags, &file).unwrap();
        assert_eq!(settings.rpc, "http://127.0.0.1:3030");
        assert_eq!(settings.account.unwrap().as_str(), "bob.test.near");
    }

    #[test]
    fn config_files_with_unknown_keys_or_bad_accounts_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "near_netwrok = \"testnet\"\n").unwrap();
        let text = ConfigFile::load(Some(&path)).unwrap_err().to_string();
        assert!(text.contains("near_netwrok"), "{text}");
        assert!(ConfigFile::load(Some(&dir.path().join("none.toml"))).is_err());

        let flags = NearOptions {
            account: Some("Not An Account".into()),
            ..Default::default()
        };
        let text = NearSettings::resolve(&flags, &ConfigFile::default())
            .unwrap_err()
            .to_string();
        assert!(text.contains("NEAR account id"), "{text}");
    }
}
