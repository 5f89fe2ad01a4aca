//! Helpers for node tests against the devnet: accounts and the contract's wasm. All
//! transactions go through the node's own client, [`Chain`].

#![allow(dead_code)]

use mpc_node::chain::Chain;
use near_crypto::{KeyType, SecretKey};
use near_primitives::account::{AccessKey, AccessKeyPermission};
use near_primitives::transaction::{Action, AddKeyAction, CreateAccountAction, TransferAction};
use near_primitives::types::{AccountId, Balance};
use std::path::PathBuf;

pub const NEAR: u128 = 10u128.pow(24);

pub fn id(s: &str) -> AccountId {
    s.parse().unwrap()
}

/// Creates `name` with 50 NEAR and a fresh full-access key (plus `extra` actions in
/// the same transaction), paid by `parent`; returns the key.
pub async fn create(parent: &Chain, name: &str, extra: Vec<Action>) -> SecretKey {
    let secret = SecretKey::from_random(KeyType::ED25519);
    let mut actions = vec![
        Action::CreateAccount(CreateAccountAction {}),
        Action::Transfer(TransferAction {
            deposit: Balance::from_yoctonear(50 * NEAR),
        }),
        Action::AddKey(Box::new(AddKeyAction {
            public_key: secret.public_key(),
            access_key: AccessKey {
                nonce: 0,
                permission: AccessKeyPermission::FullAccess,
            },
        })),
    ];
    actions.extend(extra);
    parent
        .transact(&id(name), actions)
        .await
        .unwrap_or_else(|e| panic!("creating {name}: {e}"));
    secret
}

/// The multichain wasm, built by scripts/build-contract.sh (a no-op when fresh).
pub fn multichain_wasm() -> Vec<u8> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let status = std::process::Command::new(root.join("scripts/build-contract.sh"))
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read(root.join("target/near/multichain.wasm")).unwrap()
}
