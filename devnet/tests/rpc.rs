//! The devnet through the real near-jsonrpc-client: accounts, transfers, keys,
//! views, and NEAR's error shapes for bad input.

mod common;

use common::*;
use near_jsonrpc_client::errors::{JsonRpcError, JsonRpcServerError};
use near_jsonrpc_client::methods;
use near_jsonrpc_primitives::types::query::{QueryResponseKind, RpcQueryError};
use near_jsonrpc_primitives::types::transactions::RpcTransactionError;
use near_primitives::account::{AccessKey, AccessKeyPermission, FunctionCallPermission};
use near_primitives::errors::{InvalidAccessKeyError, InvalidTxError};
use near_primitives::transaction::{Action, AddKeyAction, DeleteKeyAction, TransferAction};
use near_primitives::types::{Balance, BlockReference, Finality};
use near_primitives::views::QueryRequest;

#[tokio::test]
async fn accounts_transfers_and_keys() {
    let net = start().await;
    let status = net
        .client
        .call(methods::status::RpcStatusRequest)
        .await
        .expect("status");
    assert_eq!(status.chain_id, "localnet");
    let root_before = net.account(&id("test.near")).await.amount.as_yoctonear();

    let alice = net.create_account("alice.test.near", 10 * NEAR).await;
    let view = net.account(&id("alice.test.near")).await;
    assert_eq!(view.amount.as_yoctonear(), 10 * NEAR);
    assert!(
        view.storage_usage > 100,
        "account record plus key: {}",
        view.storage_usage
    );
    let root_after = net.account(&id("test.near")).await.amount.as_yoctonear();
    let spent = root_before - root_after;
    assert!(
        spent > 10 * NEAR && spent < 10 * NEAR + NEAR / 100,
        "10 NEAR plus gas, spent {spent}"
    );

    // Transfer back; the receiver gets exactly the deposit, the sender pays gas on top:
    // NEAR's fees for a transfer (new receipt + transfer action, sent and executed).
    let transfer = net
        .send(
            &alice,
            &id("test.near"),
            vec![Action::Transfer(TransferAction {
                deposit: Balance::from_yoctonear(NEAR),
            })],
        )
        .await;
    assert_eq!(
        transfer.transaction_outcome.outcome.gas_burnt.as_gas(),
        223_182_562_500
    );
    assert_eq!(
        transfer.receipts_outcome[0].outcome.gas_burnt.as_gas(),
        223_182_562_500
    );
    let alice_after = net
        .account(&id("alice.test.near"))
        .await
        .amount
        .as_yoctonear();
    assert!(alice_after < 9 * NEAR && alice_after > 9 * NEAR - NEAR / 100);

    // A function-call key, listed with its permission, then deleted.
    let fc_key = signer_for(&id("alice.test.near"));
    net.send_ok(
        &alice,
        &id("alice.test.near"),
        vec![Action::AddKey(Box::new(AddKeyAction {
            public_key: fc_key.public_key(),
            access_key: AccessKey {
                nonce: 0,
                permission: AccessKeyPermission::FunctionCall(FunctionCallPermission {
                    allowance: None,
                    receiver_id: "test.near".to_string(),
                    method_names: vec!["hello".to_string()],
                }),
            },
        }))],
    )
    .await;
    let list = net
        .client
        .call(methods::query::RpcQueryRequest {
            block_reference: BlockReference::Finality(Finality::Final),
            request: QueryRequest::ViewAccessKeyList {
                account_id: id("alice.test.near"),
                after_key: None,
                limit: None,
            },
        })
        .await
        .unwrap();
    let QueryResponseKind::AccessKeyList(list) = list.kind else {
        panic!("a key list")
    };
    assert_eq!(list.keys.len(), 2);

    // The function-call key may not transfer.
    let tx = net
        .sign_tx(
            &fc_key,
            &id("test.near"),
            vec![Action::Transfer(TransferAction {
                deposit: Balance::from_yoctonear(1),
            })],
        )
        .await;
    let error = tx_error(
        net.client
            .call(methods::broadcast_tx_commit::RpcBroadcastTxCommitRequest {
                signed_transaction: tx,
            })
            .await,
    );
    assert!(
        matches!(error, RpcTransactionError::InvalidTransaction { .. }),
        "got {error:?}"
    );

    net.send_ok(
        &alice,
        &id("alice.test.near"),
        vec![Action::DeleteKey(Box::new(DeleteKeyAction {
            public_key: fc_key.public_key(),
        }))],
    )
    .await;
    let key = net
        .client
        .call(methods::query::RpcQueryRequest {
            block_reference: BlockReference::Finality(Finality::Final),
            request: QueryRequest::ViewAccessKey {
                account_id: id("alice.test.near"),
                public_key: fc_key.public_key(),
            },
        })
        .await;
    assert!(
        matches!(
            key,
            Err(JsonRpcError::ServerError(JsonRpcServerError::HandlerError(
                RpcQueryError::UnknownAccessKey { .. }
            )))
        ),
        "got {key:?}"
    );
    net.devnet.shutdown().await.unwrap();
}

#[tokio::test]
async fn unknown_accounts_and_bad_transactions_get_nears_errors() {
    let net = start().await;
    let missing = net
        .client
        .call(methods::query::RpcQueryRequest {
            block_reference: BlockReference::Finality(Finality::Final),
            request: QueryRequest::ViewAccount {
                account_id: id("nobody.test.near"),
            },
        })
        .await;
    assert!(
        matches!(
            missing,
            Err(JsonRpcError::ServerError(JsonRpcServerError::HandlerError(
                RpcQueryError::UnknownAccount { .. }
            )))
        ),
        "got {missing:?}"
    );

    // A stale nonce.
    let root = &net.root;
    let nonce = net.nonce(root).await;
    let hash = net.head_hash().await;
    let stale = sign(root, nonce, &id("test.near"), hash, vec![]);
    let error = tx_error(
        net.client
            .call(methods::broadcast_tx_commit::RpcBroadcastTxCommitRequest {
                signed_transaction: stale,
            })
            .await,
    );
    assert!(
        matches!(error, RpcTransactionError::InvalidTransaction { .. }),
        "got {error:?}"
    );

    // A signature by another key.
    let mut forged = sign(root, nonce + 1, &id("test.near"), hash, vec![]);
    forged.signature = signer_for(&id("test.near")).sign(forged.get_hash().as_ref());
    let error = tx_error(
        net.client
            .call(methods::broadcast_tx_commit::RpcBroadcastTxCommitRequest {
                signed_transaction: forged,
            })
            .await,
    );
    assert!(
        matches!(error, RpcTransactionError::InvalidTransaction { .. }),
        "got {error:?}"
    );

    // An unknown signer.
    let stranger = signer_for(&id("stranger.test.near"));
    let tx = sign(&stranger, 1, &id("test.near"), hash, vec![]);
    let error = tx_error(
        net.client
            .call(methods::broadcast_tx_commit::RpcBroadcastTxCommitRequest {
                signed_transaction: tx,
            })
            .await,
    );
    assert!(
        matches!(error, RpcTransactionError::InvalidTransaction { .. }),
        "got {error:?}"
    );

    // Still alive and producing blocks.
    let before = net.devnet.height();
    net.send_ok(root, &id("test.near"), vec![]).await;
    assert!(net.devnet.height() > before);
    let _ = (
        InvalidTxError::Expired,
        InvalidAccessKeyError::RequiresFullAccess,
    );
    net.devnet.shutdown().await.unwrap();
}

/// Sends `body` as an HTTP POST to the devnet and returns the JSON answer.
async fn post_raw(net: &Net, body: &str) -> serde_json::Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = net
        .devnet
        .rpc_url()
        .trim_start_matches("http://")
        .to_string();
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "nearcore answers JSON-RPC errors with 200: {response}"
    );
    let body = response.split("\r\n\r\n").nth(1).expect("a body");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("JSON body ({e}): {body}"))
}

#[tokio::test]
async fn malformed_requests_get_nears_error_shapes_and_the_devnet_keeps_running() {
    let net = start().await;
    let cases = [
        (
            "{not json",
            "REQUEST_VALIDATION_ERROR",
            "PARSE_ERROR",
            -32700,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"no_such_method","params":{}}"#,
            "REQUEST_VALIDATION_ERROR",
            "METHOD_NOT_FOUND",
            -32601,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"query","params":{"request_type":"view_account","finality":"final"}}"#,
            "REQUEST_VALIDATION_ERROR",
            "PARSE_ERROR",
            -32700,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"broadcast_tx_async","params":["not base64!"]}"#,
            "REQUEST_VALIDATION_ERROR",
            "PARSE_ERROR",
            -32700,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tx","params":{"tx_hash":"11111111111111111111111111111111","sender_account_id":"test.near"}}"#,
            "HANDLER_ERROR",
            "UNKNOWN_TRANSACTION",
            -32000,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"block","params":{"block_id":999999}}"#,
            "HANDLER_ERROR",
            "UNKNOWN_BLOCK",
            -32000,
        ),
    ];
    for (body, name, cause, code) in cases {
        let answer = post_raw(&net, body).await;
        let error = &answer["error"];
        assert_eq!(error["name"], name, "{body} → {answer}");
        assert_eq!(error["cause"]["name"], cause, "{body} → {answer}");
        assert_eq!(error["code"], code, "{body} → {answer}");
    }
    // The legacy view error shape for a missing access key, as nearcore answers it.
    let answer = post_raw(
        &net,
        r#"{"jsonrpc":"2.0","id":1,"method":"query","params":{"request_type":"view_access_key","finality":"final","account_id":"test.near","public_key":"ed25519:6E8sCci9badyRkXb3JoRpBj5p8C6Tw41ELDZoiihKEtp"}}"#,
    )
    .await;
    assert!(
        answer["result"]["error"]
            .as_str()
            .unwrap()
            .contains("does not exist while viewing"),
        "{answer}"
    );
    let status = net
        .client
        .call(methods::status::RpcStatusRequest)
        .await
        .expect("still serving");
    assert_eq!(status.chain_id, "localnet");
    net.send_ok(&net.root, &id("test.near"), vec![]).await;
    net.devnet.shutdown().await.unwrap();
}

#[tokio::test]
async fn blocks_chunks_gas_price_send_tx_status_and_patch_state() {
    use near_jsonrpc_primitives::types::chunks::ChunkReference;
    use near_jsonrpc_primitives::types::transactions::TransactionInfo;
    use near_primitives::types::BlockId;
    use near_primitives::views::TxExecutionStatus;

    let net = start().await;
    // send_tx returns at once with wait_until NONE, and with the outcome when final.
    let tx = net.sign_tx(&net.root, &id("test.near"), vec![]).await;
    let hash = tx.get_hash();
    let quick = net
        .client
        .call(methods::send_tx::RpcSendTransactionRequest {
            signed_transaction: tx.clone(),
            wait_until: TxExecutionStatus::None,
        })
        .await
        .unwrap();
    assert_eq!(quick.final_execution_status, TxExecutionStatus::None);
    let done = net
        .client
        .call(methods::send_tx::RpcSendTransactionRequest {
            signed_transaction: tx,
            wait_until: TxExecutionStatus::Final,
        })
        .await
        .unwrap();
    assert_eq!(done.final_execution_status, TxExecutionStatus::Final);
    let outcome = done.final_execution_outcome.unwrap().into_outcome();
    let experimental = net
        .client
        .call(methods::tx_status::RpcTransactionStatusRequest {
            transaction_info: TransactionInfo::TransactionId {
                tx_hash: hash,
                sender_account_id: id("test.near"),
            },
            wait_until: TxExecutionStatus::Final,
        })
        .await
        .unwrap();
    assert_eq!(
        experimental
            .final_execution_outcome
            .unwrap()
            .into_outcome()
            .transaction_outcome
            .id,
        hash
    );

    // The block that included it, by hash and by height, and its chunk.
    let included = outcome.transaction_outcome.block_hash;
    let by_hash = net
        .client
        .call(methods::block::RpcBlockRequest {
            block_reference: BlockReference::BlockId(BlockId::Hash(included)),
        })
        .await
        .unwrap();
    let by_height = net
        .client
        .call(methods::block::RpcBlockRequest {
            block_reference: BlockReference::BlockId(BlockId::Height(by_hash.header.height)),
        })
        .await
        .unwrap();
    assert_eq!(by_height.header.hash, included);
    assert_eq!(
        by_height.header.prev_height,
        Some(by_hash.header.height - 1)
    );
    let chunk = net
        .client
        .call(methods::chunk::RpcChunkRequest {
            chunk_reference: ChunkReference::BlockShardId {
                block_id: BlockId::Hash(included),
                shard_id: 0.into(),
            },
        })
        .await
        .unwrap();
    assert_eq!(chunk.transactions.len(), 1);
    assert_eq!(chunk.transactions[0].hash, hash);

    let price = net
        .client
        .call(methods::gas_price::RpcGasPriceRequest { block_id: None })
        .await
        .unwrap();
    assert_eq!(price.gas_price.as_yoctonear(), 100_000_000);

    // sandbox_patch_state: an account with a balance and a key appears.
    let carol = signer_for(&id("carol.test.near"));
    let account = near_primitives::account::Account::new(
        Balance::from_yoctonear(5 * NEAR),
        Balance::ZERO,
        near_primitives::account::AccountContract::None,
        182,
    );
    net.client
        .call(methods::sandbox_patch_state::RpcSandboxPatchStateRequest {
            records: vec![
                near_primitives::state_record::StateRecord::Account {
                    account_id: id("carol.test.near"),
                    account,
                },
                near_primitives::state_record::StateRecord::AccessKey {
                    account_id: id("carol.test.near"),
                    public_key: carol.public_key().into(),
                    access_key: AccessKey::full_access(),
                },
            ],
        })
        .await
        .unwrap();
    assert_eq!(
        net.account(&id("carol.test.near"))
            .await
            .amount
            .as_yoctonear(),
        5 * NEAR
    );
    net.send_ok(
        &carol,
        &id("test.near"),
        vec![Action::Transfer(TransferAction {
            deposit: Balance::from_yoctonear(NEAR),
        })],
    )
    .await;
    net.devnet.shutdown().await.unwrap();
}

#[tokio::test]
async fn protocol_config_is_nearcores_latest() {
    let net = start().await;
    let config = net
        .client
        .call(
            methods::EXPERIMENTAL_protocol_config::RpcProtocolConfigRequest {
                block_reference: BlockReference::Finality(Finality::Final),
            },
        )
        .await
        .expect("EXPERIMENTAL_protocol_config");
    assert_eq!(config.chain_id, "localnet");
    let latest = devnet::node::latest_runtime_config();
    assert_eq!(
        config
            .runtime_config
            .wasm_config
            .limit_config
            .max_total_prepaid_gas,
        latest.wasm_config.limit_config.max_total_prepaid_gas
    );
    assert_eq!(
        config.protocol_version,
        near_primitives::version::PROTOCOL_VERSION
    );
    net.devnet.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_paused_devnet_refuses_connections_and_resumes_with_its_chain() {
    let mut net = start().await;
    let url = net.devnet.rpc_url().to_string();
    let bob = net.create_account("bob.test.near", 3 * NEAR).await;
    let paused_at = net.devnet.height();
    net.devnet.pause().await.unwrap();
    let refused = net.client.call(methods::status::RpcStatusRequest).await;
    assert!(
        refused.is_err(),
        "nothing listens while paused: {refused:?}"
    );
    // No blocks while paused.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(net.devnet.height(), paused_at);

    net.devnet.resume().await.unwrap();
    assert_eq!(net.devnet.rpc_url(), url, "the same address");
    assert!(net.devnet.height() >= paused_at);
    assert_eq!(
        net.account(&id("bob.test.near"))
            .await
            .amount
            .as_yoctonear(),
        3 * NEAR,
        "bob's account survived the restart"
    );
    // Blocks come again, and bob's key (and its nonce) still works.
    net.send_ok(
        &bob,
        &id("test.near"),
        vec![Action::Transfer(TransferAction {
            deposit: Balance::from_yoctonear(NEAR),
        })],
    )
    .await;
    assert!(net.devnet.height() > paused_at);
    net.devnet.shutdown().await.unwrap();
}
