//! The multichain contract on the devnet's real VM: governance to Running, the full
//! sign → respond → result flow, and the yield timeout with re-yields and refund.

mod common;

use common::*;
use near_crypto::Signer;
use near_jsonrpc_client::methods;
use near_jsonrpc_primitives::types::transactions::TransactionInfo;
use near_primitives::hash::CryptoHash;
use near_primitives::views::{FinalExecutionOutcomeView, FinalExecutionStatus, TxExecutionStatus};
use primitives::derivation::{derive_public_key, Tweak};
use primitives::k256::elliptic_curve::point::AffineCoordinates;
use primitives::k256::elliptic_curve::PrimeField;
use primitives::k256::{ProjectivePoint, Scalar};
use primitives::{near_key, Payload, SignRequest, SignatureRequest, SignatureResponse};
use serde_json::json;

const CONTRACT: &str = "signer.test.near";
const NODES: [&str; 2] = ["node0.test.near", "node1.test.near"];
const USER: &str = "alice.test.near";
const PATH: &str = "ethereum-1";

fn root_secret() -> Scalar {
    Scalar::from(0x1234_5678_9abc_def0u64) * Scalar::from(0x0fed_cba9_8765_4321u64)
}

fn root_public_key() -> String {
    near_key::to_near_string(&(ProjectivePoint::GENERATOR * root_secret()).to_affine())
}

/// What the MPC network would answer: ECDSA with the key derived for `who`.
fn network_signature(who: &str, request: &SignRequest, nonce: u64) -> SignatureResponse {
    let tweak = Tweak::derive(who, &request.path).unwrap();
    let secret = root_secret() + tweak.as_scalar();
    let k = Scalar::from(nonce);
    let big_r = (ProjectivePoint::GENERATOR * k).to_affine();
    let r = Scalar::from_repr(big_r.x()).unwrap();
    let s = k.invert().unwrap() * (request.payload.to_scalar() + r * secret);
    SignatureResponse::new(&big_r, &s).unwrap()
}

struct Deployed {
    net: Net,
    nodes: Vec<Signer>,
    user: Signer,
}

/// Deploys and initialises the contract with two candidates, who vote the key in.
async fn running_contract() -> Deployed {
    let net = start().await;
    let wasm = multichain_wasm();
    let contract = net.create_account(CONTRACT, 50 * NEAR).await;
    let mut nodes = Vec::new();
    let mut candidates = serde_json::Map::new();
    for (i, name) in NODES.iter().enumerate() {
        nodes.push(net.create_account(name, 10 * NEAR).await);
        candidates.insert(
            name.to_string(),
            json!({
                "account_id": name,
                "url": format!("https://{name}:3000"),
                "cipher_pk": vec![i as u8; 32],
                "sign_pk": "ed25519:6E8sCci9badyRkXb3JoRpBj5p8C6Tw41ELDZoiihKEtp",
            }),
        );
    }
    let user = net.create_account(USER, 10 * NEAR).await;
    net.send_ok(
        &contract,
        &id(CONTRACT),
        vec![
            deploy(wasm),
            call(
                "init",
                json!({"threshold": 2, "candidates": candidates}),
                100,
                0,
            ),
        ],
    )
    .await;
    assert_eq!(
        net.view(&id(CONTRACT), "version", json!({})).await,
        json!("0.1.0")
    );
    let state = net.view(&id(CONTRACT), "state", json!({})).await;
    assert!(
        state.get("Initializing").is_some(),
        "state after init: {state}"
    );

    for node in &nodes {
        net.send_ok(
            node,
            &id(CONTRACT),
            vec![call(
                "vote_pk",
                json!({"public_key": root_public_key()}),
                30,
                0,
            )],
        )
        .await;
    }
    let state = net.view(&id(CONTRACT), "state", json!({})).await;
    assert!(state.get("Running").is_some(), "state after votes: {state}");
    Deployed { net, nodes, user }
}

fn payload() -> Payload {
    Payload::new([7u8; 32]).unwrap()
}

async fn tx_outcome(net: &Net, hash: CryptoHash, sender: &str) -> FinalExecutionOutcomeView {
    let response = net
        .client
        .call(methods::tx::RpcTransactionStatusRequest {
            transaction_info: TransactionInfo::TransactionId {
                tx_hash: hash,
                sender_account_id: id(sender),
            },
            wait_until: TxExecutionStatus::Final,
        })
        .await
        .expect("tx status");
    response
        .final_execution_outcome
        .expect("an outcome")
        .into_outcome()
}

fn gas_report(label: &str, outcome: &FinalExecutionOutcomeView) {
    let receipts: Vec<String> = outcome
        .receipts_outcome
        .iter()
        .filter(|r| r.outcome.gas_burnt.as_gas() > 0)
        .map(|r| {
            format!(
                "{} Ggas on {}",
                r.outcome.gas_burnt.as_gas() / 1_000_000_000,
                r.outcome.executor_id
            )
        })
        .collect();
    eprintln!(
        "gas of {label}: transaction {} Ggas; receipts: {}",
        outcome.transaction_outcome.outcome.gas_burnt.as_gas() / 1_000_000_000,
        receipts.join(", ")
    );
}

#[tokio::test]
async fn sign_respond_and_result_on_the_real_vm() {
    let Deployed { net, nodes, user } = running_contract().await;
    let request = SignRequest {
        payload: payload(),
        path: PATH.to_string(),
        key_version: 0,
    };
    let sign_tx = net
        .sign_tx(
            &user,
            &id(CONTRACT),
            vec![call("sign", json!({"request": {"payload": hex::encode([7u8; 32]), "path": PATH, "key_version": 0}}), 300, 1)],
        )
        .await;
    let sign_hash = net
        .client
        .call(methods::broadcast_tx_async::RpcBroadcastTxAsyncRequest {
            signed_transaction: sign_tx,
        })
        .await
        .expect("broadcast_tx_async");

    // The nodes find the request by polling the contract.
    let mut pending = json!([]);
    for _ in 0..100 {
        pending = net.view(&id(CONTRACT), "pending_requests", json!({})).await;
        if pending.as_array().is_some_and(|p| !p.is_empty()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        pending.as_array().map(Vec::len),
        Some(1),
        "pending: {pending}"
    );

    let response = network_signature(USER, &request, 42);

    // A failing call changes nothing and gives the deposit back: `sign` with too
    // little gas panics, and the 1 NEAR attached comes back (only gas is spent).
    let before = net.account(&id(USER)).await.amount.as_yoctonear();
    let refused = net
        .send(
            &user,
            &id(CONTRACT),
            vec![call(
                "sign",
                json!({"payload": vec![9u8; 32], "path": PATH}),
                15,
                NEAR,
            )],
        )
        .await;
    let FinalExecutionStatus::Failure(error) = &refused.status else {
        panic!("sign with 15 Tgas must fail: {:?}", refused.status)
    };
    assert!(
        format!("{error:?}").contains("sign needs at least 20 Tgas"),
        "error: {error:?}"
    );
    let spent = before - net.account(&id(USER)).await.amount.as_yoctonear();
    assert!(
        spent < NEAR / 1000,
        "only gas is spent, not the deposit: {spent}"
    );
    assert_eq!(
        net.view(&id(CONTRACT), "pending_requests", json!({}))
            .await
            .as_array()
            .map(Vec::len),
        Some(1),
        "the request still waits"
    );

    let respond = net
        .send(
            &nodes[0],
            &id(CONTRACT),
            vec![call(
                "respond",
                json!({"request": SignatureRequest::new(USER, &request).unwrap(), "response": response}),
                100,
                0,
            )],
        )
        .await;
    assert!(
        matches!(respond.status, FinalExecutionStatus::SuccessValue(_)),
        "respond: {:?}",
        respond.status
    );

    let outcome = tx_outcome(&net, sign_hash, USER).await;
    let FinalExecutionStatus::SuccessValue(value) = &outcome.status else {
        panic!("sign failed: {:?}", outcome.status)
    };
    let answer: SignatureResponse = serde_json::from_slice(value).expect("a SignatureResponse");
    assert_eq!(answer, response);
    let root = (ProjectivePoint::GENERATOR * root_secret()).to_affine();
    let derived = derive_public_key(&root, &Tweak::derive(USER, PATH).unwrap());
    answer
        .verify(&request.payload, &derived)
        .expect("the signature verifies for the derived key");
    assert_eq!(
        net.view(&id(CONTRACT), "pending_requests", json!({})).await,
        json!([])
    );
    gas_report("sign", &outcome);
    gas_report("respond", &respond);
    net.devnet.shutdown().await.unwrap();
}

#[tokio::test]
async fn unanswered_sign_waits_again_then_times_out_and_refunds() {
    let Deployed { net, user, .. } = running_contract().await;
    // 40 Tgas: enough for a few 200-block waits.
    let sign_tx = net
        .sign_tx(
            &user,
            &id(CONTRACT),
            vec![call(
                "sign",
                json!({"payload": vec![7u8; 32], "path": PATH}),
                40,
                1,
            )],
        )
        .await;
    let sign_hash = net
        .client
        .call(methods::broadcast_tx_async::RpcBroadcastTxAsyncRequest {
            signed_transaction: sign_tx,
        })
        .await
        .expect("broadcast_tx_async");

    let mut outcome = None;
    for _ in 0..50 {
        net.client
            .call(methods::sandbox_fast_forward::RpcSandboxFastForwardRequest { delta_height: 200 })
            .await
            .expect("sandbox_fast_forward");
        let status = net
            .client
            .call(methods::tx::RpcTransactionStatusRequest {
                transaction_info: TransactionInfo::TransactionId {
                    tx_hash: sign_hash,
                    sender_account_id: id(USER),
                },
                wait_until: TxExecutionStatus::None,
            })
            .await
            .expect("tx status");
        if status.final_execution_status == TxExecutionStatus::Final {
            outcome = status.final_execution_outcome.map(|o| o.into_outcome());
            break;
        }
    }
    let outcome = outcome.expect("the request ends within 50 × 200 blocks");
    let FinalExecutionStatus::Failure(error) = &outcome.status else {
        panic!("expected a timeout failure, got {:?}", outcome.status)
    };
    let text = format!("{error:?}");
    assert!(text.contains("timed out"), "error: {text}");
    let logs: Vec<&String> = outcome
        .receipts_outcome
        .iter()
        .flat_map(|r| &r.outcome.logs)
        .collect();
    let waits = logs
        .iter()
        .filter(|l| l.contains("signature_wait_extended"))
        .count();
    assert!(
        waits >= 1,
        "the callback waited again at least once: {logs:?}"
    );
    assert!(
        logs.iter().any(|l| l.contains("signature_timed_out")),
        "logs: {logs:?}"
    );
    // The deposit went back to the user (a transfer receipt from the contract).
    let refund = outcome
        .receipts_outcome
        .iter()
        .any(|r| r.outcome.executor_id.as_str() == USER && r.outcome.gas_burnt.as_gas() > 0);
    assert!(refund, "a refund transfer reached the user");
    assert_eq!(
        net.view(&id(CONTRACT), "pending_requests", json!({})).await,
        json!([])
    );
    eprintln!("timed out after {waits} extra waits");
    gas_report("timed-out sign", &outcome);
    net.devnet.shutdown().await.unwrap();
}
