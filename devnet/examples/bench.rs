//! Throughput and block overhead of the devnet.
//!
//!   cargo run --release -p devnet --example bench
//!
//! Prints (1) how long producing an empty block takes, (2) how many simple
//! function-call transactions per second an in-process devnet with 100 ms blocks
//! executes end to end through JSON-RPC (submitted with broadcast_tx_async from 8
//! accounts, counted when their outcomes are final).

use devnet::chain::Chain;
use devnet::node::latest_runtime_config;
use devnet::{Devnet, DevnetConfig};
use near_crypto::{InMemorySigner, KeyType, SecretKey, Signer};
use near_jsonrpc_client::{methods, JsonRpcClient};
use near_jsonrpc_primitives::types::query::QueryResponseKind;
use near_jsonrpc_primitives::types::transactions::TransactionInfo;
use near_primitives::account::{AccessKey, AccessKeyPermission};
use near_primitives::hash::CryptoHash;
use near_primitives::transaction::{
    Action, AddKeyAction, CreateAccountAction, DeployContractAction, FunctionCallAction,
    SignedTransaction, Transaction, TransactionV0, TransferAction,
};
use near_primitives::types::{AccountId, Balance, BlockReference, Finality, Gas};
use near_primitives::views::{QueryRequest, TxExecutionStatus};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const ACCOUNTS: usize = 8;
const TXS_PER_ACCOUNT: u64 = 50;

fn sign(
    signer: &Signer,
    nonce: u64,
    receiver: &AccountId,
    block_hash: CryptoHash,
    actions: Vec<Action>,
) -> SignedTransaction {
    let tx = Transaction::V0(TransactionV0 {
        signer_id: signer.get_account_id(),
        public_key: signer.public_key(),
        nonce,
        receiver_id: receiver.clone(),
        block_hash,
        actions,
    });
    let (hash, _) = tx.get_hash_and_size();
    SignedTransaction::new(signer.sign(hash.as_ref()), tx)
}

async fn nonce_and_hash(client: &JsonRpcClient, signer: &Signer) -> (u64, CryptoHash) {
    let key = client
        .call(methods::query::RpcQueryRequest {
            block_reference: BlockReference::Finality(Finality::Final),
            request: QueryRequest::ViewAccessKey {
                account_id: signer.get_account_id(),
                public_key: signer.public_key(),
            },
        })
        .await
        .expect("access key");
    let QueryResponseKind::AccessKey(view) = key.kind else {
        panic!("an access key")
    };
    (view.nonce, key.block_hash)
}

async fn commit(
    client: &JsonRpcClient,
    signer: &Signer,
    receiver: &AccountId,
    actions: Vec<Action>,
) {
    let (nonce, hash) = nonce_and_hash(client, signer).await;
    let outcome = client
        .call(methods::broadcast_tx_commit::RpcBroadcastTxCommitRequest {
            signed_transaction: sign(signer, nonce + 1, receiver, hash, actions),
        })
        .await
        .expect("transaction");
    assert!(
        matches!(
            outcome.status,
            near_primitives::views::FinalExecutionStatus::SuccessValue(_)
        ),
        "{:?}",
        outcome.status
    );
}

fn contract_wasm() -> Vec<u8> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let status = std::process::Command::new(root.join("scripts/build-contract.sh"))
        .status()
        .expect("build script");
    assert!(status.success());
    std::fs::read(root.join("target/near/multichain.wasm")).expect("the contract wasm")
}

#[tokio::main]
async fn main() {
    // (1) Empty blocks, straight on the chain.
    let config = DevnetConfig::for_tests();
    let mut chain = Chain::new(&config.genesis, latest_runtime_config());
    let blocks = 2000u32;
    let start = Instant::now();
    for i in 0..blocks {
        chain.produce_block(1_000 + u64::from(i));
    }
    let per_block = start.elapsed() / blocks;
    println!(
        "empty block production: {per_block:?} per block ({:.3}% of a 100 ms block)",
        per_block.as_secs_f64() * 1000.0
    );

    // (2) Function calls through JSON-RPC on 100 ms blocks.
    let mut config = DevnetConfig::for_tests();
    config.block_time = Duration::from_millis(100);
    let devnet = Devnet::start(config).await.expect("devnet starts");
    let client = JsonRpcClient::connect(devnet.rpc_url());
    let root = InMemorySigner::from_secret_key(
        devnet.root_account().clone(),
        devnet.root_secret_key().clone(),
    );
    let contract: AccountId = "bench.test.near".parse().unwrap();
    let contract_key =
        InMemorySigner::from_secret_key(contract.clone(), SecretKey::from_random(KeyType::ED25519));
    let full = |pk| {
        Action::AddKey(Box::new(AddKeyAction {
            public_key: pk,
            access_key: AccessKey {
                nonce: 0,
                permission: AccessKeyPermission::FullAccess,
            },
        }))
    };
    commit(
        &client,
        &root,
        &contract,
        vec![
            Action::CreateAccount(CreateAccountAction {}),
            Action::Transfer(TransferAction {
                deposit: Balance::from_near(50),
            }),
            full(contract_key.public_key()),
            Action::DeployContract(DeployContractAction {
                code: contract_wasm(),
            }),
        ],
    )
    .await;
    let mut users = Vec::new();
    for i in 0..ACCOUNTS {
        let account: AccountId = format!("user{i}.test.near").parse().unwrap();
        let signer = InMemorySigner::from_secret_key(
            account.clone(),
            SecretKey::from_random(KeyType::ED25519),
        );
        commit(
            &client,
            &root,
            &account,
            vec![
                Action::CreateAccount(CreateAccountAction {}),
                Action::Transfer(TransferAction {
                    deposit: Balance::from_near(10),
                }),
                full(signer.public_key()),
            ],
        )
        .await;
        users.push(signer);
    }
    let call = Action::FunctionCall(Box::new(FunctionCallAction {
        method_name: "latest_key_version".to_string(),
        args: b"{}".to_vec(),
        gas: Gas::from_teragas(10),
        deposit: Balance::ZERO,
    }));
    let probe = Instant::now();
    for _ in 0..20 {
        client
            .call(methods::status::RpcStatusRequest)
            .await
            .unwrap();
    }
    println!("20 status calls: {:?}", probe.elapsed());
    let mut txs = Vec::new();
    for user in &users {
        let (nonce, hash) = nonce_and_hash(&client, user).await;
        for i in 1..=TXS_PER_ACCOUNT {
            txs.push((
                user.get_account_id(),
                sign(user, nonce + i, &contract, hash, vec![call.clone()]),
            ));
        }
    }
    let total = txs.len();
    let start = Instant::now();
    let mut hashes = Vec::new();
    for (sender, tx) in txs {
        let hash = client
            .call(methods::broadcast_tx_async::RpcBroadcastTxAsyncRequest {
                signed_transaction: tx,
            })
            .await
            .expect("broadcast_tx_async");
        hashes.push((sender, hash));
    }
    let submitted = start.elapsed();
    for (sender, hash) in hashes {
        let response = client
            .call(methods::tx::RpcTransactionStatusRequest {
                transaction_info: TransactionInfo::TransactionId {
                    tx_hash: hash,
                    sender_account_id: sender,
                },
                wait_until: TxExecutionStatus::Final,
            })
            .await
            .expect("final outcome");
        assert_eq!(response.final_execution_status, TxExecutionStatus::Final);
    }
    let elapsed = start.elapsed();
    println!(
        "{total} function-call transactions (latest_key_version on the multichain contract): submitted in {submitted:?}, all final after {elapsed:?}: {:.0} tx/s at 100 ms blocks",
        total as f64 / elapsed.as_secs_f64()
    );
    devnet.shutdown().await.expect("clean shutdown");
}
