//! `init` refusals, then keygen votes up to Running.

use super::*;

#[tokio::test]
async fn init_refuses_threshold_one_and_shared_p2p_keys_then_keygen_runs() {
    let network = accounts(3).await;
    let candidates = |list: Vec<Value>| -> serde_json::Map<String, Value> {
        list.into_iter()
            .map(|c| (c["account_id"].as_str().unwrap().to_string(), c))
            .collect()
    };
    let three = candidates((0..3).map(candidate).collect());

    let outcome = deploy_and_init(&network, json!({"threshold": 1, "candidates": three})).await;
    let text = failure_text(&outcome);
    assert!(
        text.contains("threshold 1 is invalid for 3 participants: it must be at least 2"),
        "{text}"
    );

    let mut shared = candidate(2);
    shared["cipher_pk"] = candidate(0)["cipher_pk"].clone();
    let with_shared = candidates(vec![candidate(0), candidate(1), shared]);
    let outcome =
        deploy_and_init(&network, json!({"threshold": 2, "candidates": with_shared})).await;
    let text = failure_text(&outcome);
    assert!(
        text.contains("this cipher_pk or sign_pk is already registered"),
        "{text}"
    );

    // A failed batch deploys nothing: the same account initialises fine now.
    let outcome = deploy_and_init(&network, json!({"threshold": 2, "candidates": three})).await;
    assert_success(&outcome);
    let state = network.state().await;
    assert_eq!(state_name(&state), "Initializing");
    let event = key_event(&state);
    assert_eq!(event["threshold"], 2);
    assert_eq!(participants_of(event).len(), 3);
    network
        .call_refused(
            &network.nodes[0],
            "sign",
            json!({"payload": vec![7u8; 32], "path": ETH_PATH}),
            1,
            "domain 0 has no key yet",
        )
        .await;
    // Only participants vote, only keys of the domain's scheme.
    let event_id = key_event_id(&state);
    network
        .call_refused(
            &network.user,
            "vote_pk",
            json!({"key_event": event_id, "public_key": ecdsa_root_key()}),
            0,
            "alice.test.near is not a participant of the key event under way",
        )
        .await;
    network
        .call_refused(
            &network.nodes[0],
            "vote_pk",
            json!({"key_event": event_id, "public_key": ed25519_root().to_near_string()}),
            0,
            "the public key must be a valid Secp256k1 key",
        )
        .await;
    network.vote_keygen(&ecdsa_root_key()).await;
    let state = network.state().await;
    assert_eq!(state_name(&state), "Running", "{state}");
    let running = state_body(&state);
    assert_eq!(running["epoch"], 0);
    assert_eq!(running["domains"][0]["public_key"], json!(ecdsa_root_key()));
    assert_eq!(running["domains"][0]["scheme"], "Secp256k1");
    assert_eq!(network.view("latest_key_version", json!({})).await, 0);
    network.shutdown().await;
}
