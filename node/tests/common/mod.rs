//! Helpers for node tests against the devnet: accounts and the contract's wasm. All
//! transactions go through the node's own client, [`Chain`].

#![allow(dead_code)]

use mpc_node::chain::Chain;
use near_crypto::SecretKey;
use near_primitives::transaction::Action;
use near_primitives::types::AccountId;
use std::path::PathBuf;

pub const NEAR: u128 = 10u128.pow(24);

pub fn id(s: &str) -> AccountId {
    s.parse().unwrap()
}

/// Creates `name` with 50 NEAR and a fresh full-access key (plus `extra` actions in
/// the same transaction), paid by `parent`; returns the key.
pub async fn create(parent: &Chain, name: &str, extra: Vec<Action>) -> SecretKey {
    parent
        .create_account(&id(name), 50 * NEAR, extra)
        .await
        .unwrap_or_else(|e| panic!("creating {name}: {e}"))
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
