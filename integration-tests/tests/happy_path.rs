//! The seed's flow through a real client: near-workspaces (connected to the devnet
//! RPC) calls `sign` as a user; three `mpc-node` processes answer; the signature is
//! checked with k256 against the contract's own `derived_public_key` view. The
//! nodes' HTTP endpoints report what happened.

use integration_tests::{Cluster, ClusterConfig, CONTRACT};
use k256::ecdsa::signature::hazmat::PrehashVerifier;
use k256::ecdsa::{Signature, VerifyingKey};
use near_workspaces::network::ValidatorKey;
use near_workspaces::types::NearToken;
use primitives::{near_key, SignatureResponse};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_workspaces_user_gets_a_signature_for_its_derived_key() {
    let cluster = Cluster::start(ClusterConfig::new(3, 2)).await.unwrap();
    let root_key: near_workspaces::types::SecretKey = cluster
        .devnet
        .root_secret_key()
        .to_string()
        .parse()
        .unwrap();
    let worker = near_workspaces::sandbox()
        .rpc_addr(cluster.devnet.rpc_url())
        .validator_key(ValidatorKey::Known(
            cluster.devnet.root_account().as_str().parse().unwrap(),
            root_key,
        ))
        .await
        .expect("near-workspaces connects to the devnet");
    let bob = worker
        .root_account()
        .unwrap()
        .create_subaccount("bob")
        .initial_balance(NearToken::from_near(10))
        .transact()
        .await
        .unwrap()
        .into_result()
        .unwrap();
    let contract: near_workspaces::AccountId = CONTRACT.parse().unwrap();
    let payload = [0x42u8; 32];

    // Exactly what client libraries written for the deployed signer send.
    let outcome = bob
        .call(&contract, "sign")
        .args_json(json!({ "request": {
            "payload_v2": { "Ecdsa": hex::encode(payload) },
            "path": "ethereum-1",
            "domain_id": 0,
        } }))
        .deposit(NearToken::from_yoctonear(1))
        .max_gas()
        .transact()
        .await
        .unwrap();
    assert!(outcome.is_success(), "sign failed: {outcome:?}");
    let answer: serde_json::Value = outcome.json().unwrap();
    assert_eq!(answer["scheme"], "Secp256k1", "{answer}");
    for field in ["big_r", "s", "recovery_id"] {
        assert!(
            answer.get(field).is_some(),
            "the answer lacks {field}: {answer}"
        );
    }
    let response: SignatureResponse = serde_json::from_value(answer).unwrap();
    let SignatureResponse::Secp256k1(ecdsa) = &response else {
        panic!("a secp256k1 answer expected: {response:?}");
    };

    // The contract's view of bob's key for this path.
    let derived: String = worker
        .view(&contract, "derived_public_key")
        .args_json(json!({ "path": "ethereum-1", "predecessor": bob.id(), "domain_id": 0 }))
        .await
        .unwrap()
        .json()
        .unwrap();
    let derived = near_key::parse_secp256k1(&derived).unwrap();
    let verifying = VerifyingKey::from_affine(derived).unwrap();
    let rs = ecdsa.check_form().expect("a well-formed signature");
    let signature = Signature::from_slice(&rs).expect("r and s are valid scalars");
    verifying
        .verify_prehash(&payload, &signature)
        .expect("k256 verifies the signature for the contract's derived key");
    // The same key the client derives by itself from the root key.
    let user = cluster.client(
        bob.id().as_str(),
        near_crypto::SecretKey::from_random(near_crypto::KeyType::ED25519),
    );
    let request = integration_tests::request(payload, "ethereum-1");
    assert_eq!(
        cluster.verify_ecdsa(&user, &request, &response).unwrap(),
        derived
    );

    // The nodes report it: one of them led it, all are healthy and Running.
    for i in 0..3 {
        let (status, body) = cluster.http_get(i, "/health").await.unwrap();
        assert_eq!((status, body.trim()), (200, "ok"));
        let state = cluster.node_state(i).await.unwrap();
        assert_eq!(state["contract_state"], "Running");
        assert_eq!(state["participants"].as_array().unwrap().len(), 3);
        let seen = cluster
            .node_metric(i, "mpc_requests_seen_total")
            .await
            .unwrap();
        assert!(seen >= 1.0);
    }
    let signatures = cluster
        .settled_metric_total("mpc_signatures_total", 1, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(signatures, 1, "exactly one node's respond landed");
    let (status, _) = cluster.http_get(0, "/nope").await.unwrap();
    assert_eq!(status, 404);
    cluster.shutdown().await;
}
