//! near-workspaces 0.24 spawning the `devnet` binary through NEAR_SANDBOX_BIN_PATH,
//! exactly as it spawns near-sandbox: accounts, deploy, call, view, transfer, keys.

mod common;

use common::*;
use near_workspaces::types::{AccessKey, KeyType, NearToken, SecretKey};
use serde_json::json;

#[tokio::test]
async fn near_workspaces_runs_on_the_devnet_binary() {
    // SAFETY-free in practice: this test binary has only this test, so no other
    // thread reads the environment while it is set.
    unsafe { std::env::set_var("NEAR_SANDBOX_BIN_PATH", env!("CARGO_BIN_EXE_devnet")) };
    let worker = near_workspaces::sandbox()
        .await
        .expect("near-workspaces starts the devnet");
    let wasm = contract_wasm("devnet-test-contract");
    let contract = worker.dev_deploy(&wasm).await.expect("dev_deploy");
    let user = worker
        .dev_create_account()
        .await
        .expect("dev_create_account");

    let echoed: u64 = user
        .call(contract.id(), "echo")
        .args_json(json!({"v": 42}))
        .transact()
        .await
        .expect("call")
        .json()
        .expect("a number");
    assert_eq!(echoed, 42);
    let viewed: u64 = contract
        .view("echo")
        .args_json(json!({"v": 7}))
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(viewed, 7);

    let before = user.view_account().await.unwrap().balance;
    let outcome = contract
        .as_account()
        .transfer_near(user.id(), NearToken::from_near(1))
        .await
        .unwrap();
    assert!(outcome.is_success());
    let after = user.view_account().await.unwrap().balance;
    assert_eq!(
        after.as_yoctonear() - before.as_yoctonear(),
        NearToken::from_near(1).as_yoctonear()
    );

    // Keys: add a full-access key, see it listed, delete it again.
    let extra = SecretKey::from_random(KeyType::ED25519).public_key();
    let added = user
        .batch(user.id())
        .add_key(extra.clone(), AccessKey::full_access())
        .transact()
        .await
        .unwrap();
    assert!(added.is_success(), "{added:?}");
    let keys = user.view_access_keys().await.unwrap();
    assert!(keys.iter().any(|k| k.public_key == extra));
    let deleted = user
        .batch(user.id())
        .delete_key(extra.clone())
        .transact()
        .await
        .unwrap();
    assert!(deleted.is_success(), "{deleted:?}");
    let keys = user.view_access_keys().await.unwrap();
    assert!(!keys.iter().any(|k| k.public_key == extra));
}
