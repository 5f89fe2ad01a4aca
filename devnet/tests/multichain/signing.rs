//! `sign` in each argument shape answered by `respond`, identical requests
//! sharing one answer, refused arguments, and a request nobody answers timing out
//! with its deposit refunded.

use super::*;

#[tokio::test]
async fn sign_in_all_three_argument_shapes_is_answered_by_respond() {
    let network = running(3, 2).await;
    let shapes = [
        (
            "current",
            [7u8; 32],
            json!({"request": {"payload_v2": {"Ecdsa": hex::encode([7u8; 32])}, "path": ETH_PATH, "domain_id": 0}}),
        ),
        (
            "legacy",
            [8u8; 32],
            json!({"request": {"payload": hex::encode([8u8; 32]), "path": ETH_PATH, "key_version": 0}}),
        ),
        (
            "seed",
            [9u8; 32],
            json!({"payload": vec![9u8; 32], "path": ETH_PATH}),
        ),
    ];
    for (i, (shape, bytes, args)) in shapes.into_iter().enumerate() {
        let payload = EcdsaPayload::new(bytes).unwrap();
        let request_id = ecdsa_request_id(&payload, ETH_PATH);
        let storage_before = network.storage_usage().await;
        let sign_hash = network.sign_async(args).await;
        let pending = network.wait_pending(&request_id).await;
        let storage_pending = network.storage_usage().await;
        assert_eq!(pending["request_id"], json!(request_id.to_string()));
        assert_eq!(pending["predecessor"], USER);
        assert_eq!(pending["path"], ETH_PATH);
        assert_eq!(pending["domain_id"], 0);
        assert_eq!(pending["payload"], json!({"Ecdsa": hex::encode(bytes)}));
        assert_eq!(pending["waiting"], 1);
        let listed = network.view("pending_requests", json!({})).await;
        assert_eq!(listed, json!([pending]), "{shape}");

        let response = ecdsa_response(USER, ETH_PATH, &payload, 42 + i as u64);
        if i == 0 {
            eprintln!(
                "storage of a pending Ecdsa request (32-byte payload): {} bytes",
                storage_pending - storage_before
            );
            // Refused answers change nothing: a non-participant, a signature of
            // another payload, a signature for another path.
            let outcome = network.respond(&network.user, &request_id, &response).await;
            assert!(
                failure_text(&outcome)
                    .contains("alice.test.near is not a participant of the current epoch"),
                "{}",
                failure_text(&outcome)
            );
            let other = EcdsaPayload::new([6u8; 32]).unwrap();
            for wrong in [
                ecdsa_response(USER, ETH_PATH, &other, 5),
                ecdsa_response(USER, "ethereum-2", &payload, 5),
            ] {
                let outcome = network
                    .respond(&network.nodes[1], &request_id, &wrong)
                    .await;
                let text = failure_text(&outcome);
                assert!(
                    text.contains("invalid signature: the signature does not verify"),
                    "{text}"
                );
            }
            let eddsa = ed25519_response([1; 64]);
            let outcome = network
                .respond(&network.nodes[1], &request_id, &eddsa)
                .await;
            let text = failure_text(&outcome);
            assert!(
                text.contains(
                    "invalid signature: domain 0 signs with Secp256k1, the answer is Ed25519"
                ),
                "{text}"
            );

            // A failing call changes nothing and gives its deposit back: `sign` with
            // too little gas panics, and the 1 NEAR attached comes back.
            let before = network.net.account(&id(USER)).await.amount.as_yoctonear();
            let refused = network
                .net
                .send(
                    &network.user,
                    &id(CONTRACT),
                    vec![call(
                        "sign",
                        json!({"payload": vec![9u8; 32], "path": ETH_PATH}),
                        15,
                        NEAR,
                    )],
                )
                .await;
            let text = failure_text(&refused);
            assert!(text.contains("sign needs at least 20 Tgas"), "{text}");
            let spent = before - network.net.account(&id(USER)).await.amount.as_yoctonear();
            assert!(spent < NEAR / 1000, "only gas is spent: {spent}");
            assert_eq!(
                network
                    .view("pending_request", json!({"request_id": request_id}))
                    .await,
                pending,
                "the request still waits, unchanged"
            );
        }

        let node = &network.nodes[i % network.nodes.len()];
        let respond = network.respond(node, &request_id, &response).await;
        assert_success(&respond);
        let outcome = tx_outcome(&network.net, sign_hash, USER).await;
        let answer = check_ecdsa_answer(&network, &outcome, &payload, ETH_PATH).await;
        assert_eq!(
            answer, response,
            "{shape}: the caller gets what was responded"
        );
        if i == 0 {
            gas_report("sign (current shape, answered)", &outcome);
            gas_report("respond (secp256k1)", &respond);
        }
        assert_eq!(
            network.storage_usage().await,
            storage_before + FINISHED_REQUEST_BYTES,
            "{shape}"
        );
        // A late or repeated answer is refused.
        let again = network.respond(node, &request_id, &response).await;
        assert!(failure_text(&again).contains("no pending signature request matches"));
    }
    assert_eq!(network.view("pending_requests", json!({})).await, json!([]));
    network.shutdown().await;
}

#[tokio::test]
async fn identical_requests_share_one_answer() {
    let network = running(2, 2).await;
    let payload = EcdsaPayload::new([0x55; 32]).unwrap();
    let request_id = ecdsa_request_id(&payload, ETH_PATH);
    let args = json!({"request": {"payload_v2": {"Ecdsa": hex::encode([0x55u8; 32])}, "path": ETH_PATH, "domain_id": 0}});
    let storage_before = network.storage_usage().await;
    let first = network.sign_async(args.clone()).await;
    network.wait_pending(&request_id).await;
    let storage_one = network.storage_usage().await;
    let second = network.sign_async(args).await;
    let mut waiting = Value::Null;
    for _ in 0..500 {
        waiting = network
            .view("pending_request", json!({"request_id": request_id}))
            .await["waiting"]
            .clone();
        if waiting == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(waiting, 2, "both calls wait on one entry");
    eprintln!(
        "storage of an identical second request (one more ticket): {} bytes",
        network.storage_usage().await - storage_one
    );
    let response = ecdsa_response(USER, ETH_PATH, &payload, 555);
    assert_success(
        &network
            .respond(&network.nodes[0], &request_id, &response)
            .await,
    );
    for hash in [first, second] {
        let outcome = tx_outcome(&network.net, hash, USER).await;
        let answer = check_ecdsa_answer(&network, &outcome, &payload, ETH_PATH).await;
        assert_eq!(answer, response);
    }
    assert_eq!(network.view("pending_requests", json!({})).await, json!([]));
    assert_eq!(
        network.storage_usage().await,
        storage_before + FINISHED_REQUEST_BYTES
    );
    network.shutdown().await;
}

#[tokio::test]
async fn sign_refusals_say_why() {
    let network = running(2, 2).await;
    let hex32 = hex::encode([7u8; 32]);
    let cases = [
        (
            json!({"request": {"payload": hex32, "payload_v2": {"Ecdsa": hex32}, "path": ETH_PATH}}),
            1,
            "give either `payload_v2` or the legacy `payload`, not both",
        ),
        (
            json!({"request": {"payload_v2": {"Ecdsa": hex32}, "path": ETH_PATH, "domain_id": 0, "key_version": 0}}),
            1,
            "give either `domain_id` or its legacy name `key_version`, not both",
        ),
        (
            json!({"request": {"payload_v2": {"Ecdsa": hex32}, "path": ETH_PATH}, "payload": vec![7u8; 32]}),
            1,
            "pass either `request`",
        ),
        (
            json!({"request": {"payload_v2": {"Eddsa": hex::encode([7u8; 40])}, "path": ETH_PATH, "domain_id": 0}}),
            1,
            "domain 0 signs with Secp256k1: its payload must be `Ecdsa`, got `Eddsa`",
        ),
        (
            json!({"request": {"payload_v2": {"Ecdsa": hex32}, "path": ETH_PATH, "domain_id": 1}}),
            1,
            "there is no domain 1",
        ),
        (
            json!({"request": {"payload_v2": {"Ecdsa": hex::encode([0u8; 32])}, "path": ETH_PATH, "domain_id": 0}}),
            1,
            "payload must not be zero",
        ),
        (
            json!({"request": {"payload_v2": {"Ecdsa": hex32}, "path": ETH_PATH, "domain_id": 0}}),
            0,
            "sign needs an attached deposit of 1 yoctoNEAR, got 0",
        ),
    ];
    for (args, deposit, expected) in cases {
        network
            .call_refused(&network.user, "sign", args, deposit, expected)
            .await;
    }
    assert_eq!(network.view("pending_requests", json!({})).await, json!([]));
    network.shutdown().await;
}

#[tokio::test]
async fn unanswered_sign_waits_again_then_times_out_and_refunds() {
    let network = running(2, 2).await;
    // 40 Tgas: enough for a few 200-block waits.
    let sign_tx = network
        .net
        .sign_tx(
            &network.user,
            &id(CONTRACT),
            vec![call(
                "sign",
                json!({"payload": vec![7u8; 32], "path": ETH_PATH}),
                40,
                1,
            )],
        )
        .await;
    let sign_hash = network
        .net
        .client
        .call(methods::broadcast_tx_async::RpcBroadcastTxAsyncRequest {
            signed_transaction: sign_tx,
        })
        .await
        .expect("broadcast_tx_async");

    let mut outcome = None;
    for _ in 0..50 {
        network
            .net
            .client
            .call(methods::sandbox_fast_forward::RpcSandboxFastForwardRequest { delta_height: 200 })
            .await
            .expect("sandbox_fast_forward");
        let status = network
            .net
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
    let text = failure_text(&outcome);
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
    assert_eq!(network.view("pending_requests", json!({})).await, json!([]));
    eprintln!("timed out after {waits} extra waits");
    gas_report("timed-out sign", &outcome);
    network.shutdown().await;
}
