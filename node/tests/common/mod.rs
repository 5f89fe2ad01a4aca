//! Helpers for node tests against the devnet: accounts, transactions, the wasm.

#![allow(dead_code)]

use near_crypto::{KeyType, SecretKey, Signer};
use near_jsonrpc_client::{methods, JsonRpcClient};
use near_primitives::account::{AccessKey, AccessKeyPermission};
use near_primitives::transaction::{
    Action, AddKeyAction, CreateAccountAction, FunctionCallAction, SignedTransaction, Transaction,
    TransactionV0, TransferAction,
};
use near_primitives::types::{AccountId, Balance, BlockReference, Finality, Gas};
use near_primitives::views::{FinalExecutionStatus, QueryRequest};
use std::path::PathBuf;

pub const NEAR: u128 = 10u128.pow(24);

pub fn id(s: &str) -> AccountId {
    s.parse().unwrap()
}

/// Sends `actions` from `signer` to `receiver` and waits for the final outcome.
pub async fn send(
    client: &JsonRpcClient,
    signer: &Signer,
    receiver: &AccountId,
    actions: Vec<Action>,
) -> FinalExecutionStatus {
    let key = client
        .call(methods::query::RpcQueryRequest {
            block_reference: BlockReference::Finality(Finality::Final),
            request: QueryRequest::ViewAccessKey {
                account_id: signer.get_account_id(),
                public_key: signer.public_key(),
            },
        })
        .await
        .unwrap();
    let near_jsonrpc_primitives::types::query::QueryResponseKind::AccessKey(key) = key.kind else {
        panic!()
    };
    let block = client
        .call(methods::block::RpcBlockRequest {
            block_reference: BlockReference::Finality(Finality::Final),
        })
        .await
        .unwrap();
    let transaction = Transaction::V0(TransactionV0 {
        signer_id: signer.get_account_id(),
        public_key: signer.public_key(),
        nonce: key.nonce + 1,
        receiver_id: receiver.clone(),
        block_hash: block.header.hash,
        actions,
    });
    let (hash, _) = transaction.get_hash_and_size();
    let signed_transaction = SignedTransaction::new(signer.sign(hash.as_ref()), transaction);
    client
        .call(methods::broadcast_tx_commit::RpcBroadcastTxCommitRequest { signed_transaction })
        .await
        .unwrap()
        .status
}

pub fn function_call(method: &str, args: serde_json::Value, tgas: u64, yocto: u128) -> Action {
    Action::FunctionCall(Box::new(FunctionCallAction {
        method_name: method.into(),
        args: serde_json::to_vec(&args).unwrap(),
        gas: Gas::from_teragas(tgas),
        deposit: Balance::from_yoctonear(yocto),
    }))
}

/// Creates `name` under the root with a fresh full-access key; returns its key.
pub async fn create(
    client: &JsonRpcClient,
    root: &Signer,
    name: &str,
    extra: Vec<Action>,
) -> SecretKey {
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
    let status = send(client, root, &id(name), actions).await;
    assert!(
        matches!(status, FinalExecutionStatus::SuccessValue(_)),
        "creating {name}: {status:?}"
    );
    secret
}

pub fn multichain_wasm() -> Vec<u8> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let status = std::process::Command::new(root.join("scripts/build-contract.sh"))
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read(root.join("target/near/multichain.wasm")).unwrap()
}

pub fn candidate(name: &str, i: u8) -> serde_json::Value {
    serde_json::json!({
        "account_id": name,
        "url": format!("127.0.0.1:{}", 4000 + u16::from(i)),
        "cipher_pk": vec![i; 32],
        "sign_pk": "ed25519:6E8sCci9badyRkXb3JoRpBj5p8C6Tw41ELDZoiihKEtp",
    })
}
