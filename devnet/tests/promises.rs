//! Receipts on the real VM with a small test contract (devnet/test-contract):
//! `promise_and` with a callback, a failing branch, panics with refunds, storage
//! staking failure, and NEP-519 yield/resume including the timeout.

mod common;

use common::*;
use near_crypto::Signer;
use near_jsonrpc_client::{methods, JsonRpcClient};
use near_jsonrpc_primitives::types::query::QueryResponseKind;
use near_jsonrpc_primitives::types::transactions::{RpcTransactionResponse, TransactionInfo};
use near_primitives::errors::{ActionErrorKind, TxExecutionError};
use near_primitives::hash::CryptoHash;
use near_primitives::types::{BlockReference, Finality};
use near_primitives::views::{FinalExecutionStatus, QueryRequest, TxExecutionStatus};
use serde_json::json;

const A: &str = "a.test.near";
const B: &str = "b.test.near";

async fn with_contracts() -> (Net, Signer, Signer) {
    let net = start().await;
    let wasm = contract_wasm("devnet-test-contract");
    let a = net.create_account(A, 10 * NEAR).await;
    let b = net.create_account(B, 10 * NEAR).await;
    net.send_ok(&a, &id(A), vec![deploy(wasm.clone())]).await;
    net.send_ok(&b, &id(B), vec![deploy(wasm)]).await;
    (net, a, b)
}

/// `tx` for B's transaction `hash`, waiting until `wait_until`.
async fn tx_status(
    client: &JsonRpcClient,
    hash: CryptoHash,
    wait_until: TxExecutionStatus,
) -> RpcTransactionResponse {
    client
        .call(methods::tx::RpcTransactionStatusRequest {
            transaction_info: TransactionInfo::TransactionId {
                tx_hash: hash,
                sender_account_id: id(B),
            },
            wait_until,
        })
        .await
        .unwrap()
}

fn value(status: &FinalExecutionStatus) -> serde_json::Value {
    match status {
        FinalExecutionStatus::SuccessValue(bytes) => serde_json::from_slice(bytes).unwrap(),
        other => panic!("expected success, got {other:?}"),
    }
}

#[tokio::test]
async fn promise_and_delivers_both_results_to_the_callback() {
    let (net, a, _) = with_contracts().await;
    let both = net
        .send(
            &a,
            &id(A),
            vec![call(
                "call_both",
                json!({"a": A, "first": "echo", "b": B, "second": "echo"}),
                50,
                0,
            )],
        )
        .await;
    assert_eq!(value(&both.status), json!([1, 2]));
    // call_both, echo on A, echo on B, collect: four receipts that burnt gas.
    let executed = both
        .receipts_outcome
        .iter()
        .filter(|r| r.outcome.gas_burnt.as_gas() > 0)
        .count();
    assert_eq!(executed, 4, "{:#?}", both.receipts_outcome);

    // A failing branch reaches the callback as a failed result; the transaction
    // still succeeds because the callback does.
    let mixed = net
        .send(
            &a,
            &id(A),
            vec![call(
                "call_both",
                json!({"a": A, "first": "echo", "b": B, "second": "fail"}),
                50,
                0,
            )],
        )
        .await;
    assert_eq!(value(&mixed.status), json!([1, null]));
    let failed = mixed
        .receipts_outcome
        .iter()
        .any(|r| format!("{:?}", r.outcome.status).contains("this method always fails"));
    assert!(
        failed,
        "the failing receipt's outcome carries the panic message"
    );
    net.devnet.shutdown().await.unwrap();
}

#[tokio::test]
async fn panics_refund_deposits_and_storage_needs_balance() {
    let (net, a, _) = with_contracts().await;
    let before = net.account(&id(A)).await.amount.as_yoctonear();
    let failed = net
        .send(&a, &id(B), vec![call("fail", json!({}), 10, 2 * NEAR)])
        .await;
    let FinalExecutionStatus::Failure(error) = &failed.status else {
        panic!("fail must fail")
    };
    assert!(format!("{error:?}").contains("this method always fails"));
    let spent = before - net.account(&id(A)).await.amount.as_yoctonear();
    assert!(
        spent < NEAR / 1000,
        "the 2 NEAR came back, only gas is spent: {spent}"
    );

    // 10 NEAR pays for about 1 MB; 2 MB of data cannot be staked, so nothing is stored.
    let blob = net
        .send(
            &a,
            &id(A),
            vec![call("store", json!({"bytes": 2_000_000}), 300, 0)],
        )
        .await;
    match &blob.status {
        FinalExecutionStatus::Failure(TxExecutionError::ActionError(e)) => {
            assert!(
                matches!(e.kind, ActionErrorKind::LackBalanceForState { .. }),
                "{e:?}"
            )
        }
        other => panic!("expected LackBalanceForState, got {other:?}"),
    }
    let state = net
        .client
        .call(methods::query::RpcQueryRequest {
            block_reference: BlockReference::Finality(Finality::Final),
            request: QueryRequest::ViewState {
                account_id: id(A),
                prefix: b"blob".to_vec().into(),
                after_key: None,
                limit: None,
                include_proof: false,
            },
        })
        .await
        .unwrap();
    let QueryResponseKind::ViewState(state) = state.kind else {
        panic!("a state view")
    };
    assert!(
        state.values.is_empty(),
        "the failed receipt's write was rolled back"
    );
    net.send_ok(
        &a,
        &id(A),
        vec![call("store", json!({"bytes": 1000}), 30, 0)],
    )
    .await;
    net.devnet.shutdown().await.unwrap();
}

#[tokio::test]
async fn yield_resume_and_timeout() {
    let (net, a, b) = with_contracts().await;
    let wait = net
        .sign_tx(&b, &id(A), vec![call("wait", json!({}), 30, 0)])
        .await;
    let wait_hash = net
        .client
        .call(methods::broadcast_tx_async::RpcBroadcastTxAsyncRequest {
            signed_transaction: wait,
        })
        .await
        .unwrap();
    // A waiter for the final outcome, asked before the resume: it must wake at the
    // block that completes the receipt tree, not earlier and not never.
    let client = net.client.clone();
    let early_waiter =
        tokio::spawn(async move { tx_status(&client, wait_hash, TxExecutionStatus::Final).await });
    // Included but not executed: the yield is still waiting.
    let included = tx_status(&net.client, wait_hash, TxExecutionStatus::IncludedFinal).await;
    assert_eq!(
        included.final_execution_status,
        TxExecutionStatus::IncludedFinal
    );
    let pending = included.final_execution_outcome.unwrap().into_outcome();
    assert_eq!(pending.status, FinalExecutionStatus::Started);
    // Resume once the yield exists (the `wait` receipt has run).
    let mut resumed = json!(false);
    for _ in 0..50 {
        let outcome = net
            .send(
                &a,
                &id(A),
                vec![call("resume", json!({"value": "\"hello\""}), 30, 0)],
            )
            .await;
        resumed = value(&outcome.status);
        if resumed == json!(true) {
            break;
        }
    }
    assert_eq!(resumed, json!(true));
    let done = tx_status(&net.client, wait_hash, TxExecutionStatus::Final).await;
    let outcome = done.final_execution_outcome.unwrap().into_outcome();
    assert_eq!(value(&outcome.status), json!("\"hello\""));
    let early = early_waiter.await.unwrap();
    assert_eq!(early.final_execution_status, TxExecutionStatus::Final);
    let early = early.final_execution_outcome.unwrap().into_outcome();
    assert_eq!(value(&early.status), json!("\"hello\""));

    // Unanswered: after the timeout (200 blocks) the callback gets a failed result.
    let wait = net
        .sign_tx(&b, &id(A), vec![call("wait", json!({}), 30, 0)])
        .await;
    let wait_hash = net
        .client
        .call(methods::broadcast_tx_async::RpcBroadcastTxAsyncRequest {
            signed_transaction: wait,
        })
        .await
        .unwrap();
    net.client
        .call(methods::sandbox_fast_forward::RpcSandboxFastForwardRequest { delta_height: 205 })
        .await
        .unwrap();
    let done = tx_status(&net.client, wait_hash, TxExecutionStatus::Final).await;
    let outcome = done.final_execution_outcome.unwrap().into_outcome();
    assert_eq!(value(&outcome.status), json!("timeout"));
    // A late resume finds nothing waiting.
    let late = net
        .send(
            &a,
            &id(A),
            vec![call("resume", json!({"value": "\"late\""}), 30, 0)],
        )
        .await;
    assert_eq!(value(&late.status), json!(false));
    net.devnet.shutdown().await.unwrap();
}
