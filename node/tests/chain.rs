//! The node's contract client against the devnet (nearcore's VM running our wasm),
//! through near-jsonrpc-client: reading the state and pending requests, voting the
//! key in, and answering a user's `sign` with `respond`.

use devnet::{Devnet, DevnetConfig};
use k256::elliptic_curve::point::AffineCoordinates;
use k256::elliptic_curve::PrimeField;
use k256::{ProjectivePoint, Scalar};
use mpc_node::chain::{Chain, ChainError, ContractState};
use near_primitives::transaction::{Action, DeployContractAction};
use primitives::derivation::Tweak;
use primitives::{near_key, Payload, SignRequest, SignatureRequest, SignatureResponse};
use std::time::Duration;

mod common;
use common::{create, id, multichain_wasm};
use mpc_node::chain::function_call;

fn candidate(name: &str, i: u8) -> serde_json::Value {
    serde_json::json!({
        "account_id": name,
        "url": format!("127.0.0.1:{}", 4000 + u16::from(i)),
        "cipher_pk": vec![i; 32],
        "sign_pk": "ed25519:6E8sCci9badyRkXb3JoRpBj5p8C6Tw41ELDZoiihKEtp",
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_client_votes_the_key_in_and_answers_a_sign_request() {
    let devnet = Devnet::start(DevnetConfig::for_tests()).await.unwrap();
    let contract = id("signer.test.near");
    let root = Chain::new(
        devnet.rpc_url(),
        contract.clone(),
        devnet.root_account().clone(),
        devnet.root_secret_key().clone(),
    );
    let nodes = ["node0.test.near", "node1.test.near", "node2.test.near"];
    let mut node_keys = Vec::new();
    for name in nodes {
        node_keys.push(create(&root, name, vec![]).await);
    }
    let candidates: serde_json::Map<String, serde_json::Value> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.to_string(), candidate(n, i as u8)))
        .collect();
    let contract_key = create(
        &root,
        "signer.test.near",
        vec![Action::DeployContract(DeployContractAction {
            code: multichain_wasm(),
        })],
    )
    .await;
    // `init` only from the contract account itself.
    let init = function_call(
        "init",
        &serde_json::json!({ "threshold": 2, "candidates": candidates }),
        100,
        0,
    );
    match root.transact(&contract, vec![init.clone()]).await {
        Err(ChainError::Failed(text)) => {
            assert!(
                text.contains("init must be called by the contract account itself"),
                "{text}"
            )
        }
        other => panic!("init by another account must fail, got {other:?}"),
    }
    let as_contract = Chain::new(
        devnet.rpc_url(),
        contract.clone(),
        contract.clone(),
        contract_key,
    );
    as_contract
        .transact(&contract, vec![init])
        .await
        .expect("init by the contract account");
    let chains: Vec<Chain> = nodes
        .iter()
        .zip(&node_keys)
        .map(|(n, key)| Chain::new(devnet.rpc_url(), contract.clone(), id(n), key.clone()))
        .collect();

    let ContractState::Initializing {
        candidates,
        threshold,
    } = chains[0].state().await.unwrap()
    else {
        panic!("expected Initializing")
    };
    assert_eq!(threshold, 2);
    assert_eq!(candidates.participants[&id("node1.test.near")].id, 1);
    assert_eq!(
        candidates.participants[&id("node2.test.near")].cipher_pk,
        [2; 32]
    );

    // The "network" key: the test knows its secret.
    let secret = Scalar::from(0xC0FFEEu64) * Scalar::from(0x1234_5678u64);
    let root_point = (ProjectivePoint::GENERATOR * secret).to_affine();
    let root_text = near_key::to_near_string(&root_point);
    assert!(!chains[0].vote_pk(&root_text).await.unwrap());
    assert!(chains[1].vote_pk(&root_text).await.unwrap());
    let ContractState::Running {
        epoch,
        public_key,
        participants,
        ..
    } = chains[2].state().await.unwrap()
    else {
        panic!("expected Running")
    };
    assert_eq!(
        (epoch, public_key.as_str(), participants.participants.len()),
        (0, root_text.as_str(), 3)
    );

    // A user asks for a signature; the call waits for the answer.
    let alice_key = create(&root, "alice.test.near", vec![]).await;
    let alice = Chain::new(
        devnet.rpc_url(),
        contract.clone(),
        id("alice.test.near"),
        alice_key,
    );
    let request = SignRequest {
        payload: Payload::new([0x77; 32]).unwrap(),
        path: "ethereum-1".into(),
        key_version: 0,
    };
    let sign_args = serde_json::json!({ "request": request });
    let waiting = tokio::spawn(async move { alice.call("sign", sign_args, 300, 1).await });

    // The node finds it among the pending requests.
    let mut pending = Vec::new();
    for _ in 0..100 {
        pending = chains[0].pending_requests().await.unwrap();
        if !pending.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let [found] = &pending[..] else {
        panic!("one pending request, got {pending:?}")
    };
    assert_eq!(found.predecessor, "alice.test.near");
    assert_eq!(
        found.request_id,
        SignatureRequest::new("alice.test.near", &request)
            .unwrap()
            .id()
    );

    // Sign with the derived secret (root secret + ε), as the MPC network would.
    let tweak = Tweak::derive("alice.test.near", "ethereum-1").unwrap();
    let k = Scalar::from(424242u64);
    let big_r = (ProjectivePoint::GENERATOR * k).to_affine();
    let r = Scalar::from_repr(big_r.x()).unwrap();
    let s = k.invert().unwrap() * (request.payload.to_scalar() + r * (secret + tweak.as_scalar()));
    let response = SignatureResponse::new(&big_r, &s).unwrap();

    // An outsider cannot answer; a participant can.
    let outsider_key = create(&root, "mallory.test.near", vec![]).await;
    let mallory = Chain::new(
        devnet.rpc_url(),
        contract.clone(),
        id("mallory.test.near"),
        outsider_key,
    );
    match mallory.respond(&found.signature_request(), &response).await {
        Err(ChainError::Failed(text)) => assert!(text.contains("is not a participant"), "{text}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    chains[2]
        .respond(&found.signature_request(), &response)
        .await
        .unwrap();

    let returned = waiting.await.unwrap().expect("sign returns once answered");
    let returned: SignatureResponse = serde_json::from_slice(&returned).unwrap();
    assert_eq!(returned, response);
    assert!(chains[0].pending_requests().await.unwrap().is_empty());
    devnet.shutdown().await.unwrap();
}
