//! Ed25519 signatures from the network (domain 1, FROST): a request shaped the
//! way client libraries for the deployed signer send it, with a Solana-sized
//! message, is answered with a signature that `ring` (an implementation
//! independent of the signer's and of the contract's) accepts for the contract's
//! own `derived_public_key`. With one of three nodes killed, the other two still
//! sign in both domains.

use integration_tests::{eddsa_request, request, verify_ed25519, Cluster, ClusterConfig};
use primitives::ed25519::Ed25519PublicKey;
use primitives::SignatureResponse;
use serde_json::json;

/// The size of a Solana message with one system transfer (legacy format).
const SOLANA_TRANSFER_MESSAGE: usize = 150;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ed25519_requests_are_signed_in_domain_1_also_with_a_node_down() {
    let mut cluster = Cluster::start(ClusterConfig::new(3, 2)).await.unwrap();
    let user = cluster.user("sol.test.near", 1).await.unwrap().remove(0);
    let message: Vec<u8> = (0..SOLANA_TRANSFER_MESSAGE).map(|i| i as u8).collect();

    // Exactly what client libraries written for the deployed signer send.
    let answer = user
        .call(
            "sign",
            json!({ "request": {
                "payload_v2": { "Eddsa": hex::encode(&message) },
                "path": "solana-1",
                "domain_id": 1,
            } }),
            300,
            1,
        )
        .await
        .unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(answer["scheme"], "Ed25519", "{answer}");
    let signature: Vec<u8> = serde_json::from_value(answer["signature"].clone()).unwrap();
    let signature: [u8; 64] = signature.try_into().expect("64 bytes");

    // The key the contract derives for the caller, checked against our derivation.
    let derived: String = cluster
        .root
        .view(
            "derived_public_key",
            json!({ "path": "solana-1", "predecessor": "sol.test.near", "domain_id": 1 }),
        )
        .await
        .unwrap();
    let derived = Ed25519PublicKey::parse(&derived).unwrap();
    assert_eq!(
        derived,
        cluster
            .ed25519_public_key()
            .derive_for("sol.test.near", "solana-1")
    );
    verify_ed25519(&derived, &message, &signature).unwrap();
    let mut tampered = message.clone();
    tampered[0] ^= 1;
    assert!(verify_ed25519(&derived, &tampered, &signature).is_err());

    // One node down: the two others (the threshold) sign in both domains.
    cluster.kill_node(2);
    let requests = [
        eddsa_request(message.clone(), "solana-2"),
        request([0x44; 32], "ethereum-2"),
    ];
    for request in &requests {
        let response = cluster.sign(&user, request, 300).await.unwrap();
        cluster.verify(&user, request, &response).unwrap();
        let scheme = match response {
            SignatureResponse::Secp256k1(_) => "Secp256k1",
            SignatureResponse::Ed25519 { .. } => "Ed25519",
        };
        assert_eq!(scheme, request.payload.scheme().to_string());
    }
    cluster.shutdown().await;
}
