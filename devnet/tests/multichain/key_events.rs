//! Key events that go wrong: a keygen attempt that times out, and a resharing
//! whose newcomer never votes.

use super::*;

#[tokio::test]
async fn keygen_attempt_times_out_and_the_next_one_completes() {
    const TIMEOUT: u64 = 50;
    let network = initializing(3, 2, config(TIMEOUT)).await;
    let state = network.state().await;
    let first = key_event(&state).clone();
    let first_id = key_event_id(&state);
    assert_eq!(
        first["expires_at"].as_u64().unwrap() - first["started_at"].as_u64().unwrap(),
        TIMEOUT
    );

    // Only one of three votes in time.
    let done = network
        .call_ok(
            &network.nodes[0],
            "vote_pk",
            json!({"key_event": first_id, "public_key": ecdsa_root_key()}),
        )
        .await;
    assert_eq!(done, json!(false));
    let state = network.state().await;
    assert_eq!(key_event(&state)["votes"], json!([node_name(0)]));
    assert_eq!(key_event(&state)["public_key"], json!(ecdsa_root_key()));

    // Past its expiry the attempt is replaced, without any transaction.
    let expires_at = first["expires_at"].as_u64().unwrap();
    let height = network.net.devnet.height();
    assert!(height < expires_at, "the vote came in time");
    eprintln!(
        "keygen timeout test: the partial vote was done {} blocks into a {TIMEOUT}-block attempt",
        height - first["started_at"].as_u64().unwrap()
    );
    network
        .net
        .client
        .call(
            methods::sandbox_fast_forward::RpcSandboxFastForwardRequest {
                delta_height: expires_at - height + 1,
            },
        )
        .await
        .expect("sandbox_fast_forward");
    let state = network.state().await;
    assert_eq!(state_name(&state), "Initializing");
    let second = key_event(&state);
    let old_attempt = first_id["attempt"].as_u64().unwrap();
    assert_eq!(
        second["attempt"].as_u64().unwrap(),
        old_attempt + 1,
        "{state}"
    );
    assert_eq!(second["started_at"].as_u64().unwrap(), expires_at);
    assert_eq!(second["expires_at"].as_u64().unwrap(), expires_at + TIMEOUT);
    assert_eq!(second["votes"], json!([]));
    assert_eq!(second["public_key"], Value::Null);
    network
        .call_refused(
            &network.nodes[1],
            "vote_pk",
            json!({"key_event": first_id, "public_key": ecdsa_root_key()}),
            0,
            &format!(
                "key event attempt {old_attempt} is not current: the current attempt is {}",
                old_attempt + 1
            ),
        )
        .await;

    // Everyone votes in the new attempt (at once, well within its 50 blocks).
    let second_id = key_event_id(&state);
    let votes = network
        .nodes
        .iter()
        .map(|node| {
            (
                node,
                call(
                    "vote_pk",
                    json!({"key_event": second_id, "public_key": ecdsa_root_key()}),
                    100,
                    0,
                ),
            )
        })
        .collect();
    for outcome in send_together(&network.net, votes).await {
        assert_success(&outcome);
    }
    eprintln!(
        "keygen timeout test: the new attempt completed {} blocks into its {TIMEOUT} blocks",
        network.net.devnet.height() - expires_at
    );
    let state = network.state().await;
    assert_eq!(state_name(&state), "Running", "{state}");
    let domain = &state_body(&state)["domains"][0];
    assert_eq!(domain["public_key"], json!(ecdsa_root_key()));
    assert_eq!(domain["attempt"], old_attempt + 1);
    network.shutdown().await;
}

#[tokio::test]
async fn resharing_with_a_silent_newcomer_keeps_signing_and_is_cancelled() {
    let mut network = running(3, 2).await;
    let newcomer_name = node_name(3);
    let newcomer = network.net.create_account(&newcomer_name, 10 * NEAR).await;
    network.nodes.push(newcomer.clone());
    let before = network.state().await;
    let mine = candidate(3);
    let join_args = |cipher_pk: &Value| json!({"url": mine["url"], "cipher_pk": cipher_pk, "sign_pk": mine["sign_pk"]});
    network
        .call_refused(
            &newcomer,
            "join",
            join_args(&candidate(0)["cipher_pk"]),
            0,
            "this cipher_pk or sign_pk is already registered",
        )
        .await;
    network
        .call_ok(&newcomer, "join", join_args(&mine["cipher_pk"]))
        .await;
    let voted = network
        .call_ok(
            &network.nodes[0],
            "vote_join",
            json!({"candidate": newcomer_name}),
        )
        .await;
    assert_eq!(voted, json!(false));
    let voted = network
        .call_ok(
            &network.nodes[1],
            "vote_join",
            json!({"candidate": newcomer_name}),
        )
        .await;
    assert_eq!(voted, json!(true));
    let state = network.state().await;
    assert_eq!(state_name(&state), "Resharing", "{state}");
    let event = key_event(&state);
    assert_eq!(event["epoch"], 1);
    assert_eq!(event["domain"], Value::Null);
    assert_eq!(participants_of(event).len(), 4);
    let event_id = key_event_id(&state);

    // The old participants report their shares; the newcomer never does.
    for node in &network.nodes[..3] {
        let done = network
            .call_ok(node, "vote_reshared", json!({"key_event": event_id}))
            .await;
        assert_eq!(done, json!(false));
    }
    let state = network.state().await;
    assert_eq!(state_name(&state), "Resharing");
    let votes = key_event(&state)["votes"].as_array().unwrap().clone();
    assert_eq!(votes.len(), 3);
    assert!(!votes.contains(&json!(newcomer_name)));

    // The old set keeps signing meanwhile; the newcomer may not answer yet.
    let payload = EcdsaPayload::new([0x44; 32]).unwrap();
    let request_id = ecdsa_request_id(&payload, ETH_PATH);
    let sign_hash = network
        .sign_async(json!({"request": {"payload_v2": {"Ecdsa": hex::encode([0x44u8; 32])}, "path": ETH_PATH, "domain_id": 0}}))
        .await;
    network.wait_pending(&request_id).await;
    let response = ecdsa_response(USER, ETH_PATH, &payload, 1234);
    let outcome = network.respond(&newcomer, &request_id, &response).await;
    assert!(failure_text(&outcome)
        .contains("node3.test.near is not a participant of the current epoch"));
    assert_success(
        &network
            .respond(&network.nodes[2], &request_id, &response)
            .await,
    );
    let outcome = tx_outcome(&network.net, sign_hash, USER).await;
    check_ecdsa_answer(&network, &outcome, &payload, ETH_PATH).await;

    // A threshold of the old set cancels; the newcomer has no say.
    network
        .call_refused(
            &newcomer,
            "vote_cancel_key_event",
            json!({}),
            0,
            "node3.test.near is not a participant of the current epoch",
        )
        .await;
    let cancelled = network
        .call_ok(&network.nodes[0], "vote_cancel_key_event", json!({}))
        .await;
    assert_eq!(cancelled, json!(false));
    let cancelled = network
        .call_ok(&network.nodes[2], "vote_cancel_key_event", json!({}))
        .await;
    assert_eq!(cancelled, json!(true));
    let state = network.state().await;
    assert_eq!(state_name(&state), "Running", "{state}");
    let running = state_body(&state);
    let previous = state_body(&before);
    assert_eq!(running["epoch"], 0);
    assert_eq!(running["participants"], previous["participants"]);
    assert_eq!(running["threshold"], 2);
    assert_eq!(
        running["domains"], previous["domains"],
        "the same key, the same shares"
    );
    assert_eq!(
        network.view("public_key", json!({})).await,
        json!(ecdsa_root_key())
    );
    network
        .call_refused(
            &network.nodes[0],
            "vote_reshared",
            json!({"key_event": event_id}),
            0,
            "this call needs the contract to be Resharing, but it is Running",
        )
        .await;
    network.shutdown().await;
}
