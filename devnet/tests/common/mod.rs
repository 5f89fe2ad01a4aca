//! Test helpers: an in-process devnet on 127.0.0.1 and a real near-jsonrpc-client.

#![allow(dead_code)]

use devnet::{Devnet, DevnetConfig};
use near_crypto::{InMemorySigner, KeyType, PublicKey, SecretKey, Signer};
use near_jsonrpc_client::errors::{JsonRpcError, JsonRpcServerError};
use near_jsonrpc_client::{methods, JsonRpcClient};
use near_jsonrpc_primitives::types::query::QueryResponseKind;
use near_jsonrpc_primitives::types::transactions::RpcTransactionError;
use near_primitives::account::{AccessKey, AccessKeyPermission};
use near_primitives::hash::CryptoHash;
use near_primitives::transaction::{
    Action, AddKeyAction, CreateAccountAction, DeployContractAction, FunctionCallAction,
    SignedTransaction, Transaction, TransactionV0, TransferAction,
};
use near_primitives::types::{AccountId, Balance, BlockReference, Finality, Gas};
use near_primitives::views::{
    AccountView, FinalExecutionOutcomeView, FinalExecutionStatus, QueryRequest,
};
use std::path::PathBuf;
use std::process::Command;

pub const NEAR: u128 = 10u128.pow(24);

pub struct Net {
    pub devnet: Devnet,
    pub client: JsonRpcClient,
    pub root: Signer,
}

pub fn id(s: &str) -> AccountId {
    s.parse().unwrap()
}

pub async fn start() -> Net {
    start_with(DevnetConfig::for_tests()).await
}

pub async fn start_with(config: DevnetConfig) -> Net {
    let devnet = Devnet::start(config).await.expect("the devnet starts");
    let client = JsonRpcClient::connect(devnet.rpc_url());
    let root = InMemorySigner::from_secret_key(
        devnet.root_account().clone(),
        devnet.root_secret_key().clone(),
    );
    Net {
        devnet,
        client,
        root,
    }
}

pub fn signer_for(account: &AccountId) -> Signer {
    InMemorySigner::from_secret_key(account.clone(), SecretKey::from_random(KeyType::ED25519))
}

pub fn public_key(signer: &Signer) -> PublicKey {
    signer.public_key()
}

impl Net {
    pub async fn head_hash(&self) -> CryptoHash {
        let block = self
            .client
            .call(methods::block::RpcBlockRequest {
                block_reference: BlockReference::Finality(Finality::Final),
            })
            .await
            .expect("block");
        block.header.hash
    }

    pub async fn nonce(&self, signer: &Signer) -> u64 {
        let response = self
            .client
            .call(methods::query::RpcQueryRequest {
                block_reference: BlockReference::Finality(Finality::Final),
                request: QueryRequest::ViewAccessKey {
                    account_id: signer.get_account_id(),
                    public_key: signer.public_key(),
                },
            })
            .await
            .expect("the signer's access key");
        match response.kind {
            QueryResponseKind::AccessKey(key) => key.nonce,
            other => panic!("expected an access key, got {other:?}"),
        }
    }

    pub async fn sign_tx(
        &self,
        signer: &Signer,
        receiver: &AccountId,
        actions: Vec<Action>,
    ) -> SignedTransaction {
        let nonce = self.nonce(signer).await + 1;
        let block_hash = self.head_hash().await;
        sign(signer, nonce, receiver, block_hash, actions)
    }

    /// Sends a transaction with broadcast_tx_commit and returns its final outcome.
    pub async fn send(
        &self,
        signer: &Signer,
        receiver: &AccountId,
        actions: Vec<Action>,
    ) -> FinalExecutionOutcomeView {
        let signed_transaction = self.sign_tx(signer, receiver, actions).await;
        self.client
            .call(methods::broadcast_tx_commit::RpcBroadcastTxCommitRequest { signed_transaction })
            .await
            .expect("broadcast_tx_commit")
    }

    pub async fn send_ok(
        &self,
        signer: &Signer,
        receiver: &AccountId,
        actions: Vec<Action>,
    ) -> Vec<u8> {
        let outcome = self.send(signer, receiver, actions).await;
        match outcome.status {
            FinalExecutionStatus::SuccessValue(value) => value,
            other => panic!(
                "expected success, got {other:?}; receipts: {:#?}",
                outcome.receipts_outcome
            ),
        }
    }

    pub async fn account(&self, account: &AccountId) -> AccountView {
        let response = self
            .client
            .call(methods::query::RpcQueryRequest {
                block_reference: BlockReference::Finality(Finality::Final),
                request: QueryRequest::ViewAccount {
                    account_id: account.clone(),
                },
            })
            .await
            .expect("view_account");
        match response.kind {
            QueryResponseKind::ViewAccount(view) => view,
            other => panic!("expected an account, got {other:?}"),
        }
    }

    /// Creates `name` as a sub-account of the root with `balance` yoctoNEAR and a new
    /// full-access key.
    pub async fn create_account(&self, name: &str, balance: u128) -> Signer {
        let account = id(name);
        let signer = signer_for(&account);
        self.send_ok(
            &self.root,
            &account,
            vec![
                Action::CreateAccount(CreateAccountAction {}),
                Action::Transfer(TransferAction {
                    deposit: Balance::from_yoctonear(balance),
                }),
                add_full_key(signer.public_key()),
            ],
        )
        .await;
        signer
    }

    pub async fn view(
        &self,
        account: &AccountId,
        method: &str,
        args: serde_json::Value,
    ) -> serde_json::Value {
        let response = self
            .client
            .call(methods::query::RpcQueryRequest {
                block_reference: BlockReference::Finality(Finality::Final),
                request: QueryRequest::CallFunction {
                    account_id: account.clone(),
                    method_name: method.to_string(),
                    args: serde_json::to_vec(&args).unwrap().into(),
                },
            })
            .await
            .unwrap_or_else(|e| panic!("view {method}: {e:?}"));
        match response.kind {
            QueryResponseKind::CallResult(result) => {
                serde_json::from_slice(&result.result).unwrap()
            }
            other => panic!("expected a call result, got {other:?}"),
        }
    }
}

pub fn sign(
    signer: &Signer,
    nonce: u64,
    receiver: &AccountId,
    block_hash: CryptoHash,
    actions: Vec<Action>,
) -> SignedTransaction {
    let transaction = Transaction::V0(TransactionV0 {
        signer_id: signer.get_account_id(),
        public_key: signer.public_key(),
        nonce,
        receiver_id: receiver.clone(),
        block_hash,
        actions,
    });
    let (hash, _) = transaction.get_hash_and_size();
    SignedTransaction::new(signer.sign(hash.as_ref()), transaction)
}

pub fn add_full_key(public_key: PublicKey) -> Action {
    Action::AddKey(Box::new(AddKeyAction {
        public_key,
        access_key: AccessKey {
            nonce: 0,
            permission: AccessKeyPermission::FullAccess,
        },
    }))
}

pub fn call(method: &str, args: serde_json::Value, tgas: u64, deposit: u128) -> Action {
    Action::FunctionCall(Box::new(FunctionCallAction {
        method_name: method.to_string(),
        args: serde_json::to_vec(&args).unwrap(),
        gas: Gas::from_teragas(tgas),
        deposit: Balance::from_yoctonear(deposit),
    }))
}

pub fn deploy(code: Vec<u8>) -> Action {
    Action::DeployContract(DeployContractAction { code })
}

/// The multichain contract's wasm (see [`contract_wasm`]).
pub fn multichain_wasm() -> Vec<u8> {
    contract_wasm("multichain")
}

/// The wasm of contract package `package`, built by scripts/build-contract.sh (a
/// no-op when up to date) under a lock: tests running in parallel must not build
/// concurrently.
pub fn contract_wasm(package: &str) -> Vec<u8> {
    static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = BUILD
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let status = Command::new(root.join("scripts/build-contract.sh"))
        .arg(package)
        .status()
        .expect("scripts/build-contract.sh should start");
    assert!(
        status.success(),
        "scripts/build-contract.sh {package} failed (its output is above)"
    );
    let file = root
        .join("target/near")
        .join(format!("{}.wasm", package.replace('-', "_")));
    std::fs::read(&file).unwrap_or_else(|e| panic!("the build writes {}: {e}", file.display()))
}

/// The transaction error inside a client error, if it is one.
pub fn tx_error<T: std::fmt::Debug>(
    result: Result<T, JsonRpcError<RpcTransactionError>>,
) -> RpcTransactionError {
    match result {
        Err(JsonRpcError::ServerError(JsonRpcServerError::HandlerError(error))) => error,
        other => panic!("expected a transaction error, got {other:?}"),
    }
}
