//! An Ed25519 domain added by vote, its keygen (one attempt aborted), and an
//! Eddsa request answered.

use super::*;

#[tokio::test]
async fn ed25519_domain_is_added_generated_and_signs() {
    let network = running(3, 2).await;
    let domains = json!([{"id": 1, "scheme": "Ed25519"}]);
    network
        .call_refused(
            &network.nodes[0],
            "vote_add_domains",
            json!({"domains": [{"id": 2, "scheme": "Ed25519"}]}),
            0,
            "domain ids are assigned in order: the next domain is 1, got 2",
        )
        .await;
    let started = network
        .call_ok(
            &network.nodes[0],
            "vote_add_domains",
            json!({"domains": domains}),
        )
        .await;
    assert_eq!(started, json!(false), "one vote of a threshold of 2");
    assert_eq!(state_name(&network.state().await), "Running");
    let started = network
        .call_ok(
            &network.nodes[1],
            "vote_add_domains",
            json!({"domains": domains}),
        )
        .await;
    assert_eq!(started, json!(true));
    let state = network.state().await;
    assert_eq!(state_name(&state), "Initializing", "{state}");
    assert_eq!(state_body(&state)["generating"], domains);
    assert_eq!(key_event(&state)["domain"], domains[0]);
    assert_eq!(
        state_body(&state)["running"]["domains"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // While domain 1's key is generated, domain 0 keeps signing and domain 1 waits.
    let eddsa_args = |len: usize, byte: u8| json!({"request": {"payload_v2": {"Eddsa": hex::encode(vec![byte; len])}, "path": SOL_PATH, "domain_id": 1}});
    network
        .call_refused(
            &network.user,
            "sign",
            eddsa_args(100, 3),
            1,
            "domain 1 has no key yet",
        )
        .await;
    let payload = EcdsaPayload::new([0x33; 32]).unwrap();
    let sign_hash = network
        .sign_async(json!({"request": {"payload_v2": {"Ecdsa": hex::encode([0x33u8; 32])}, "path": ETH_PATH, "domain_id": 0}}))
        .await;
    let request_id = ecdsa_request_id(&payload, ETH_PATH);
    network.wait_pending(&request_id).await;
    let response = ecdsa_response(USER, ETH_PATH, &payload, 77);
    assert_success(
        &network
            .respond(&network.nodes[2], &request_id, &response)
            .await,
    );
    let outcome = tx_outcome(&network.net, sign_hash, USER).await;
    check_ecdsa_answer(&network, &outcome, &payload, ETH_PATH).await;

    // A participant reports its attempt failed: the next attempt begins at once.
    let aborted = key_event_id(&network.state().await);
    network
        .call_ok(
            &network.nodes[2],
            "vote_abort_key_event",
            json!({"key_event": aborted}),
        )
        .await;
    let state = network.state().await;
    let current = key_event_id(&state);
    assert_eq!(
        current["attempt"].as_u64().unwrap(),
        aborted["attempt"].as_u64().unwrap() + 1
    );
    network
        .call_refused(
            &network.nodes[0],
            "vote_pk",
            json!({"key_event": current, "public_key": ecdsa_root_key()}),
            0,
            "the public key must be a valid Ed25519 key",
        )
        .await;

    let root = ed25519_root();
    network.vote_keygen(&root.to_near_string()).await;
    let state = network.state().await;
    assert_eq!(state_name(&state), "Running", "{state}");
    let domain_list = &state_body(&state)["domains"];
    assert_eq!(domain_list.as_array().unwrap().len(), 2, "{state}");
    assert_eq!(domain_list[1]["id"], 1);
    assert_eq!(domain_list[1]["scheme"], "Ed25519");
    assert_eq!(domain_list[1]["public_key"], json!(root.to_near_string()));
    assert_eq!(domain_list[1]["attempt"], current["attempt"]);
    assert_eq!(
        network.view("public_key", json!({"domain_id": 1})).await,
        json!(root.to_near_string())
    );
    assert_eq!(
        network.view("public_key", json!({})).await,
        json!(ecdsa_root_key()),
        "domain 0 kept its key"
    );
    assert_eq!(network.view("latest_key_version", json!({})).await, 0);

    // An Eddsa request of 100 bytes, answered with Ed25519.
    let message = vec![0xabu8; 100];
    let eddsa_payload = Payload::Eddsa(EddsaPayload::new(message.clone()).unwrap());
    let request = SignRequest {
        payload: eddsa_payload.clone(),
        path: SOL_PATH.into(),
        domain_id: DomainId(1),
    };
    let request_id = RequestId::of(USER, &request);
    let sign_hash = network
        .sign_async(json!({"request": {"payload_v2": {"Eddsa": hex::encode(&message)}, "path": SOL_PATH, "domain_id": 1}}))
        .await;
    let pending = network.wait_pending(&request_id).await;
    assert_eq!(pending["payload"], json!({"Eddsa": hex::encode(&message)}));
    assert_eq!(pending["domain_id"], 1);

    let mut wrong = ed25519_signature(USER, SOL_PATH, &message);
    wrong[40] ^= 1;
    let bad_answers = [
        (
            ed25519_response(wrong),
            "invalid signature: the signature does not verify",
        ),
        (
            ed25519_response(ed25519_signature(USER, "solana-2", &message)),
            "invalid signature: the signature does not verify",
        ),
        (
            ecdsa_response(USER, SOL_PATH, &EcdsaPayload::new([1; 32]).unwrap(), 9),
            "invalid signature: domain 1 signs with Ed25519, the answer is Secp256k1",
        ),
    ];
    for (bad, expected) in bad_answers {
        let outcome = network.respond(&network.nodes[0], &request_id, &bad).await;
        let text = failure_text(&outcome);
        assert!(text.contains(expected), "{text}");
    }
    let signature = ed25519_signature(USER, SOL_PATH, &message);
    let respond = network
        .respond(&network.nodes[1], &request_id, &ed25519_response(signature))
        .await;
    assert_success(&respond);
    let outcome = tx_outcome(&network.net, sign_hash, USER).await;
    let json = answer_json(&outcome, &["scheme", "signature"]);
    assert_eq!(json["scheme"], "Ed25519");
    let bytes: Vec<u8> = json["signature"]
        .as_array()
        .expect("an array of integers")
        .iter()
        .map(|b| u8::try_from(b.as_u64().expect("an integer")).unwrap())
        .collect();
    assert_eq!(bytes.len(), 64);
    assert_eq!(bytes, signature);
    let derived_text = network
        .view(
            "derived_public_key",
            json!({"path": SOL_PATH, "predecessor": USER, "domain_id": 1}),
        )
        .await;
    let derived = Ed25519PublicKey::parse(derived_text.as_str().unwrap()).unwrap();
    assert_eq!(derived, root.derive_for(USER, SOL_PATH));
    let key = ed25519_dalek::VerifyingKey::from_bytes(derived.as_bytes()).unwrap();
    key.verify_strict(
        &message,
        &ed25519_dalek::Signature::from_bytes(&bytes.try_into().unwrap()),
    )
    .expect("the Ed25519 signature verifies (strictly) for the derived key");
    gas_report("sign (Eddsa, 100 bytes, answered)", &outcome);
    gas_report("respond (Ed25519, 100 bytes)", &respond);

    // The largest payload: its storage while pending, then answered.
    let message = vec![0x5au8; 1232];
    let request_id = RequestId::of(
        USER,
        &SignRequest {
            payload: Payload::Eddsa(EddsaPayload::new(message.clone()).unwrap()),
            path: SOL_PATH.into(),
            domain_id: DomainId(1),
        },
    );
    let storage_before = network.storage_usage().await;
    let sign_hash = network.sign_async(eddsa_args(1232, 0x5a)).await;
    network.wait_pending(&request_id).await;
    eprintln!(
        "storage of a pending Eddsa request (1232-byte payload): {} bytes",
        network.storage_usage().await - storage_before
    );
    let signature = ed25519_signature(USER, SOL_PATH, &message);
    let respond = network
        .respond(&network.nodes[2], &request_id, &ed25519_response(signature))
        .await;
    assert_success(&respond);
    gas_report("respond (Ed25519, 1232 bytes)", &respond);
    let outcome = tx_outcome(&network.net, sign_hash, USER).await;
    let answer: SignatureResponse = serde_json::from_slice(&assert_success(&outcome)).unwrap();
    assert_eq!(answer, ed25519_response(signature));
    assert_eq!(
        network.storage_usage().await,
        storage_before + FINISHED_REQUEST_BYTES
    );
    network.shutdown().await;
}
