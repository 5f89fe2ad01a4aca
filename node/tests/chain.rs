//! The node's contract client against the devnet (nearcore's VM running our wasm),
//! through near-jsonrpc-client: reading the state and pending requests, voting the
//! key in attempt by attempt (every participant must vote the same key), answering
//! a user's `sign` with `respond`, and a resharing during which the old set keeps
//! answering.

use devnet::{Devnet, DevnetConfig};
use k256::elliptic_curve::point::AffineCoordinates;
use k256::elliptic_curve::PrimeField;
use k256::{AffinePoint, ProjectivePoint, Scalar};
use mpc_node::chain::{Chain, ChainError, ContractState, KeyEvent};
use near_crypto::{KeyType, SecretKey};
use near_primitives::transaction::{Action, DeployContractAction};
use primitives::derivation::Tweak;
use primitives::{
    near_key, DomainConfig, DomainId, EcdsaPayload, EcdsaSignature, Payload, PendingChange,
    PendingRequest, RequestId, SignRequest, SignRequestArgs, SignatureResponse, SignatureScheme,
};
use std::time::Duration;
use tokio::task::JoinHandle;

mod common;
use common::{create, id, multichain_wasm};
use mpc_node::chain::function_call;

/// A node's registration, with p2p keys of its own (they must be unique).
fn candidate(name: &str, i: u8) -> serde_json::Value {
    serde_json::json!({
        "account_id": name,
        "url": format!("127.0.0.1:{}", 4000 + u16::from(i)),
        "cipher_pk": vec![i; 32],
        "sign_pk": SecretKey::from_seed(KeyType::ED25519, name).public_key().to_string(),
    })
}

/// The default config, but with key-event attempts that outlast this test (every
/// field is required).
fn config() -> serde_json::Value {
    serde_json::json!({
        "sign_deposit": "1",
        "min_sign_gas": "20000000000000",
        "yield_callback_gas": "10000000000000",
        "timeout_fail_gas": "3000000000000",
        "max_path_len": 1024,
        "max_duplicate_requests": 16,
        "max_pending_requests": 1024,
        "max_pending_per_caller": 128,
        "key_event_timeout_blocks": 100_000,
        "candidate_expiry_blocks": 100_000,
        "migrate_gas": "100000000000000",
    })
}

/// Expects a transaction to fail with a contract error containing `text`.
fn assert_fails<T: std::fmt::Debug>(result: Result<T, ChainError>, text: &str) {
    match result {
        Err(ChainError::Failed(error)) => assert!(error.contains(text), "{error}"),
        other => panic!("expected a failure saying {text:?}, got {other:?}"),
    }
}

fn initializing(state: ContractState) -> KeyEvent {
    match state {
        ContractState::Initializing { key_event, .. } => key_event,
        other => panic!("expected Initializing, got {other:?}"),
    }
}

/// The one pending request, once the contract shows it.
async fn one_pending(chain: &Chain) -> PendingRequest {
    let mut pending = Vec::new();
    for _ in 0..100 {
        pending = chain.pending_requests().await.unwrap();
        if !pending.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let [found] = &pending[..] else {
        panic!("one pending request, got {pending:?}")
    };
    found.clone()
}

/// `sign` with the current argument shape, waiting for the answer in a task.
fn sign(user: Chain, request: &SignRequest) -> JoinHandle<Result<Vec<u8>, ChainError>> {
    let args = serde_json::json!({ "request": SignRequestArgs {
        payload_v2: Some(request.payload.clone()),
        path: request.path.clone(),
        domain_id: Some(request.domain_id),
        ..Default::default()
    }});
    tokio::spawn(async move { user.call("sign", args, 300, 1).await })
}

/// A signature by the derived secret (root secret + ε), as the MPC network makes
/// it: the nonce `k` is the test's choice.
fn ecdsa_sign(secret: Scalar, predecessor: &str, request: &SignRequest, k: u64) -> EcdsaSignature {
    let Payload::Ecdsa(payload) = &request.payload else {
        unreachable!("ECDSA requests only")
    };
    let tweak = Tweak::derive(predecessor, &request.path).unwrap();
    let k = Scalar::from(k);
    let big_r = (ProjectivePoint::GENERATOR * k).to_affine();
    let r = Scalar::from_repr(big_r.x()).unwrap();
    let s = k.invert().unwrap() * (payload.to_scalar() + r * (secret + tweak.as_scalar()));
    EcdsaSignature::new(&big_r, &s).unwrap()
}

/// A participant's `vote_join` for `candidate`: whether it started resharing.
async fn vote_join(chain: &Chain, candidate: &str) -> bool {
    let args = serde_json::json!({ "candidate": candidate });
    let value = chain.call("vote_join", args, 30, 0).await.unwrap();
    serde_json::from_slice(&value).unwrap()
}

fn point(secret: Scalar) -> AffinePoint {
    (ProjectivePoint::GENERATOR * secret).to_affine()
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
    let init = |args: serde_json::Value| function_call("init", &args, 100, 0);
    let good = serde_json::json!({ "threshold": 2, "candidates": candidates, "config": config() });
    assert_fails(
        root.transact(&contract, vec![init(good.clone())]).await,
        "init must be called by the contract account itself",
    );
    let as_contract = Chain::new(
        devnet.rpc_url(),
        contract.clone(),
        contract.clone(),
        contract_key,
    );
    // A threshold of one and a p2p key registered twice are refused.
    let mut one = good.clone();
    one["threshold"] = 1.into();
    assert_fails(
        as_contract.transact(&contract, vec![init(one)]).await,
        "threshold 1 is invalid for 3 participants: it must be at least 2",
    );
    let mut twice = good.clone();
    twice["candidates"]["node1.test.near"]["sign_pk"] =
        twice["candidates"]["node0.test.near"]["sign_pk"].clone();
    assert_fails(
        as_contract.transact(&contract, vec![init(twice)]).await,
        "this cipher_pk or sign_pk is already registered",
    );
    as_contract
        .transact(&contract, vec![init(good)])
        .await
        .expect("init by the contract account");
    let chains: Vec<Chain> = nodes
        .iter()
        .zip(&node_keys)
        .map(|(n, key)| Chain::new(devnet.rpc_url(), contract.clone(), id(n), key.clone()))
        .collect();

    // Initializing: no keys yet, and the keygen of domain 0 in its first attempt.
    let state = chains[0].state().await.unwrap();
    assert_eq!(state.name(), "Initializing");
    let running = state.running().expect("the set that will sign").clone();
    assert_eq!((running.epoch, running.threshold), (0, 2));
    assert!(running.domains.is_empty());
    assert_eq!(
        running.participants.participants[&id("node1.test.near")].id,
        1
    );
    assert_eq!(
        running.participants.participants[&id("node2.test.near")].cipher_pk,
        [2; 32]
    );
    let event = initializing(state);
    assert_eq!(
        event.domain,
        Some(DomainConfig {
            id: DomainId(0),
            scheme: SignatureScheme::Secp256k1
        })
    );
    assert_eq!((event.epoch, event.attempt, event.threshold), (0, 0, 2));
    assert_eq!(event.participants, running.participants);
    assert!(event.votes.is_empty());
    assert!(event.expires_at > devnet.height());

    // The "network" key: the test knows its secret. Another key, for a node whose
    // keygen went wrong.
    let secret = Scalar::from(0xC0FFEEu64) * Scalar::from(0x1234_5678u64);
    let root_point = point(secret);
    let root_text = near_key::to_near_string(&root_point);
    let other_text = near_key::to_near_string(&point(Scalar::from(99u64)));

    // Attempt 0: the votes disagree, so it can never complete: the next begins.
    assert!(!chains[0].vote_pk(&event, &root_text).await.unwrap());
    let outsider_key = create(&root, "mallory.test.near", vec![]).await;
    let mallory = Chain::new(
        devnet.rpc_url(),
        contract.clone(),
        id("mallory.test.near"),
        outsider_key,
    );
    assert_fails(
        mallory.vote_pk(&event, &root_text).await,
        "is not a participant of the key event under way",
    );
    assert!(!chains[1].vote_pk(&event, &other_text).await.unwrap());
    let event1 = initializing(chains[2].state().await.unwrap());
    assert_eq!(event1.attempt, 1);
    assert!(event1.votes.is_empty());
    assert_fails(
        chains[2].vote_pk(&event, &root_text).await,
        "key event attempt 0 is not current: the current attempt is 1",
    );

    // Attempt 1 fails at node 2, which reports it: the next begins at once.
    chains[2].vote_abort_key_event(&event1).await.unwrap();
    let event2 = initializing(chains[0].state().await.unwrap());
    assert_eq!(event2.attempt, 2);

    // Attempt 2: the threshold's votes are not enough; every participant's are.
    assert!(!chains[0].vote_pk(&event2, &root_text).await.unwrap());
    assert!(!chains[1].vote_pk(&event2, &root_text).await.unwrap());
    let seen = initializing(chains[2].state().await.unwrap());
    assert_eq!(seen.attempt, 2);
    assert_eq!(
        seen.votes,
        [id(nodes[0]), id(nodes[1])].into_iter().collect()
    );
    assert!(chains[2].vote_pk(&event2, &root_text).await.unwrap());
    let ContractState::Running(running) = chains[2].state().await.unwrap() else {
        panic!("expected Running")
    };
    assert_eq!(
        (running.epoch, running.participants.participants.len()),
        (0, 3)
    );
    let [domain] = &running.domains[..] else {
        panic!("one domain, got {:?}", running.domains)
    };
    assert_eq!(
        (
            domain.id,
            domain.scheme,
            domain.public_key.as_str(),
            domain.attempt
        ),
        (
            DomainId(0),
            SignatureScheme::Secp256k1,
            root_text.as_str(),
            2
        ),
        "the key of the attempt every participant voted for"
    );

    // A user asks for a signature; the call waits for the answer.
    let alice_key = create(&root, "alice.test.near", vec![]).await;
    let alice = Chain::new(
        devnet.rpc_url(),
        contract.clone(),
        id("alice.test.near"),
        alice_key.clone(),
    );
    let request = SignRequest {
        payload: Payload::Ecdsa(EcdsaPayload::new([0x77; 32]).unwrap()),
        path: "ethereum-1".into(),
        domain_id: DomainId(0),
    };
    let waiting = sign(alice, &request);

    // The node finds it among the pending requests, with everything it needs to
    // derive the tweak and check the id itself.
    let found = one_pending(&chains[0]).await;
    // The log of changes shows it too, for nodes that follow it.
    let (changes, _) = chains[0].pending_changes(0, 100).await.unwrap();
    assert_eq!(
        changes.changes,
        Some(vec![PendingChange::Added(found.clone())])
    );
    assert_eq!((changes.next, changes.latest), (1, 1));
    assert_eq!(found.predecessor, "alice.test.near");
    assert_eq!(found.sign_request(), request);
    assert_eq!(found.request_id, RequestId::of("alice.test.near", &request));
    assert!(found.id_matches());

    let response =
        SignatureResponse::Secp256k1(ecdsa_sign(secret, "alice.test.near", &request, 424242));

    // An outsider cannot answer; nor can anyone with a signature that does not
    // verify; a participant with a good one can.
    assert_fails(
        mallory.respond(&found.request_id, &response).await,
        "is not a participant",
    );
    let forged = SignatureResponse::Secp256k1(ecdsa_sign(
        secret + Scalar::ONE,
        "alice.test.near",
        &request,
        424242,
    ));
    assert_fails(
        chains[1].respond(&found.request_id, &forged).await,
        "invalid signature",
    );
    chains[2]
        .respond(&found.request_id, &response)
        .await
        .unwrap();

    let returned = waiting.await.unwrap().expect("sign returns once answered");
    let json: serde_json::Value = serde_json::from_slice(&returned).unwrap();
    assert_eq!(json["scheme"], "Secp256k1", "{json}");
    let returned: SignatureResponse = serde_json::from_slice(&returned).unwrap();
    assert_eq!(returned, response);
    assert!(chains[0].pending_requests().await.unwrap().is_empty());
    let (changes, _) = chains[0].pending_changes(1, 100).await.unwrap();
    assert_eq!(
        changes.changes,
        Some(vec![PendingChange::Removed(found.request_id)])
    );

    // Node 3 joins; a threshold of votes starts resharing to the four, in a fresh
    // attempt of a key event for epoch 1 (all domains: no domain id).
    let name3 = "node3.test.near";
    let key3 = create(&root, name3, vec![]).await;
    let node3 = Chain::new(devnet.rpc_url(), contract.clone(), id(name3), key3);
    let registration = candidate(name3, 3);
    node3
        .call(
            "join",
            serde_json::json!({
                "url": registration["url"],
                "cipher_pk": registration["cipher_pk"],
                "sign_pk": registration["sign_pk"],
            }),
            30,
            0,
        )
        .await
        .unwrap();
    assert!(!vote_join(&chains[0], name3).await);
    assert!(vote_join(&chains[1], name3).await);
    let ContractState::Resharing {
        previous,
        key_event,
        ..
    } = node3.state().await.unwrap()
    else {
        panic!("expected Resharing")
    };
    // The old set, unchanged, signs meanwhile (its governance votes, which the
    // view now shows too, record the join that started the resharing).
    assert_eq!(
        (
            previous.epoch,
            &previous.participants,
            previous.threshold,
            &previous.domains
        ),
        (
            running.epoch,
            &running.participants,
            running.threshold,
            &running.domains
        ),
        "the old set, unchanged, signs meanwhile"
    );
    assert_eq!((key_event.epoch, key_event.domain), (1, None));
    assert_eq!(key_event.participants.participants.len(), 4);
    assert_eq!(key_event.participants.participants[&id(name3)].id, 3);
    assert!(key_event.attempt > 2, "attempt ids are never reused");

    // While resharing, the old participants keep answering; the newcomer cannot yet.
    let alice = Chain::new(
        devnet.rpc_url(),
        contract.clone(),
        id("alice.test.near"),
        alice_key,
    );
    let request = SignRequest {
        payload: Payload::Ecdsa(EcdsaPayload::new([0x78; 32]).unwrap()),
        path: "ethereum-2".into(),
        domain_id: DomainId(0),
    };
    let waiting = sign(alice, &request);
    let found = one_pending(&node3).await;
    assert_eq!(found.request_id, RequestId::of("alice.test.near", &request));
    let response =
        SignatureResponse::Secp256k1(ecdsa_sign(secret, "alice.test.near", &request, 777));
    assert_fails(
        node3.respond(&found.request_id, &response).await,
        "is not a participant",
    );
    chains[0]
        .respond(&found.request_id, &response)
        .await
        .unwrap();
    let returned = waiting.await.unwrap().expect("answered during resharing");
    assert_eq!(
        serde_json::from_slice::<SignatureResponse>(&returned).unwrap(),
        response
    );

    // Every new participant reports its shares; the last report completes it.
    for chain in &chains {
        assert!(!chain.vote_reshared(&key_event).await.unwrap());
    }
    assert!(node3.vote_reshared(&key_event).await.unwrap());
    let ContractState::Running(reshared) = node3.state().await.unwrap() else {
        panic!("expected Running")
    };
    assert_eq!(
        (reshared.epoch, reshared.threshold, &reshared.participants),
        (1, 2, &key_event.participants)
    );
    assert_eq!(reshared.domains.len(), 1);
    assert_eq!(reshared.domains[0].public_key, root_text, "the same key");
    assert_eq!(
        reshared.domains[0].attempt, key_event.attempt,
        "shares of the resharing attempt"
    );
    devnet.shutdown().await.unwrap();
}
