//! The NEAR key that signs `sign` calls: given directly, or read from where near-cli
//! keeps it (`<credentials dir>/<network>/<account>.json`, with fields `account_id`,
//! `public_key` and `private_key`).

use crate::error::{Error, Result};
use near_crypto::{PublicKey, SecretKey};
use near_primitives::types::AccountId;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// A near-cli credentials file.
#[derive(Deserialize)]
struct CredentialsFile {
    account_id: Option<String>,
    public_key: Option<String>,
    // Older tools wrote `secret_key`.
    #[serde(alias = "secret_key")]
    private_key: String,
}

/// The key for `account`: `explicit` (a secret key such as `ed25519:…`, or the path
/// of a credentials file) if given, else `<credentials_dir>/<network>/<account>.json`.
pub fn load_secret_key(
    account: &AccountId,
    network: &str,
    explicit: Option<&str>,
    credentials_dir: &Path,
) -> Result<SecretKey> {
    match explicit {
        Some(text) if looks_like_key(text) => parse_key(text, "--near-key"),
        Some(path) => read_file(Path::new(path), account),
        None => {
            let path = default_file(credentials_dir, network, account);
            if !path.exists() {
                return Err(Error::NoNearKey {
                    account: account.to_string(),
                    path,
                });
            }
            read_file(&path, account)
        }
    }
}

/// Where near-cli keeps `account`'s key on `network`.
pub fn default_file(credentials_dir: &Path, network: &str, account: &AccountId) -> PathBuf {
    credentials_dir
        .join(network)
        .join(format!("{account}.json"))
}

fn looks_like_key(text: &str) -> bool {
    text.starts_with("ed25519:") || text.starts_with("secp256k1:")
}

fn parse_key(text: &str, origin: &str) -> Result<SecretKey> {
    text.trim().parse().map_err(|e| Error::BadNearKey {
        origin: origin.to_string(),
        reason: format!("not a NEAR secret key: {e}"),
    })
}

fn read_file(path: &Path, account: &AccountId) -> Result<SecretKey> {
    let origin = path.display().to_string();
    let bad = |reason: String| Error::BadNearKey {
        origin: origin.clone(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let file: CredentialsFile = serde_json::from_str(&text)
        .map_err(|e| bad(format!("not a near-cli credentials file: {e}")))?;
    if let Some(owner) = file.account_id.as_deref() {
        if owner != account.as_str() {
            return Err(bad(format!("it holds a key of {owner}, not of {account}")));
        }
    }
    let secret = parse_key(&file.private_key, &origin)?;
    if let Some(public) = file.public_key.as_deref() {
        let public: PublicKey = public
            .parse()
            .map_err(|e| bad(format!("its public_key does not parse: {e}")))?;
        if public != secret.public_key() {
            return Err(bad(
                "its public_key does not belong to its private_key".into()
            ));
        }
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use near_crypto::KeyType;

    fn account(name: &str) -> AccountId {
        name.parse().unwrap()
    }

    fn write(dir: &Path, network: &str, owner: &str, key: &SecretKey) -> PathBuf {
        let path = dir.join(network).join(format!("{owner}.json"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let json = serde_json::json!({
            "account_id": owner,
            "public_key": key.public_key().to_string(),
            "private_key": key.to_string(),
        });
        std::fs::write(&path, json.to_string()).unwrap();
        path
    }

    #[test]
    fn reads_near_cli_files_and_explicit_keys() {
        let dir = tempfile::tempdir().unwrap();
        let key = SecretKey::from_random(KeyType::ED25519);
        let alice = account("alice.testnet");
        let path = write(dir.path(), "testnet", "alice.testnet", &key);
        assert_eq!(
            load_secret_key(&alice, "testnet", None, dir.path()).unwrap(),
            key
        );
        let explicit = path.to_str().unwrap();
        assert_eq!(
            load_secret_key(&alice, "mainnet", Some(explicit), dir.path()).unwrap(),
            key
        );
        let literal = key.to_string();
        assert_eq!(
            load_secret_key(&alice, "testnet", Some(&literal), Path::new("/nowhere")).unwrap(),
            key
        );
    }

    #[test]
    fn says_where_it_looked_and_refuses_other_accounts_keys() {
        let dir = tempfile::tempdir().unwrap();
        let bob = account("bob.testnet");
        let text = load_secret_key(&bob, "testnet", None, dir.path())
            .unwrap_err()
            .to_string();
        assert!(text.starts_with("no NEAR key for bob.testnet"), "{text}");
        assert!(text.contains("testnet/bob.testnet.json") && text.contains("--near-key"));

        let key = SecretKey::from_random(KeyType::ED25519);
        let alices = write(dir.path(), "testnet", "alice.testnet", &key);
        let text = load_secret_key(&bob, "testnet", alices.to_str(), dir.path())
            .unwrap_err()
            .to_string();
        assert!(text.contains("holds a key of alice.testnet"), "{text}");

        let text = load_secret_key(&bob, "testnet", Some("ed25519:nope"), dir.path())
            .unwrap_err()
            .to_string();
        assert!(text.contains("not a NEAR secret key"), "{text}");
    }

    #[test]
    fn a_file_whose_public_key_does_not_match_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("carol.json");
        let key = SecretKey::from_random(KeyType::ED25519);
        let other = SecretKey::from_random(KeyType::ED25519);
        let json = serde_json::json!({
            "account_id": "carol.testnet",
            "public_key": other.public_key().to_string(),
            "private_key": key.to_string(),
        });
        std::fs::write(&path, json.to_string()).unwrap();
        let text = load_secret_key(
            &account("carol.testnet"),
            "testnet",
            path.to_str(),
            dir.path(),
        )
        .unwrap_err()
        .to_string();
        assert!(text.contains("does not belong"), "{text}");
    }
}
