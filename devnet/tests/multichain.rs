//! The multichain contract (target/near/multichain.wasm) on the devnet's real VM.
//!
//! Test accounts play the MPC nodes: they hold the root secrets here, sign with the
//! derived secret (root + ε) and vote keys in themselves. Covered:
//! - init refusals (threshold 1, a shared p2p key), keygen votes to Running;
//! - `sign` in its three argument shapes (current `payload_v2`, legacy `payload` +
//!   `key_version`, the seed's top-level `payload`), each answered by `respond`, with
//!   the caller's outcome checked as the scheme-tagged JSON and verified against the
//!   `derived_public_key` view; refused responds and refused sign arguments;
//! - `vote_add_domains` for an Ed25519 domain, its keygen (one attempt aborted), and
//!   an Eddsa request answered by an Ed25519 `respond`;
//! - a keygen attempt that times out, then the next one completing;
//! - a resharing whose newcomer never votes: the old set keeps signing, a threshold
//!   cancels it;
//! - an unanswered request that waits again, times out and refunds.
//!
//! Figures (gas, storage per pending request) are printed with `eprintln!`; run with
//! `--nocapture` to see them.

mod common;

use common::*;
use ed25519_dalek::hazmat::{raw_sign, ExpandedSecretKey};
use near_crypto::{KeyType, SecretKey, Signer};
use near_jsonrpc_client::methods;
use near_jsonrpc_primitives::types::transactions::TransactionInfo;
use near_primitives::hash::CryptoHash;
use near_primitives::transaction::Action;
use near_primitives::views::{FinalExecutionOutcomeView, FinalExecutionStatus, TxExecutionStatus};
use primitives::curve25519_dalek::Scalar as EdScalar;
use primitives::derivation::{derive_public_key, Tweak};
use primitives::ed25519::{Ed25519PublicKey, Ed25519Tweak};
use primitives::k256::elliptic_curve::point::AffineCoordinates;
use primitives::k256::elliptic_curve::PrimeField;
use primitives::k256::{ProjectivePoint, Scalar};
use primitives::{
    near_key, DomainId, EcdsaPayload, EcdsaSignature, Ed25519Signature, EddsaPayload, Payload,
    RequestId, SignRequest, SignatureResponse,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha512};

const CONTRACT: &str = "signer.test.near";
const USER: &str = "alice.test.near";
const ETH_PATH: &str = "ethereum-1";
const SOL_PATH: &str = "solana-1";

// ---------------------------------------------------------------- the network's keys

fn ecdsa_root_secret() -> Scalar {
    Scalar::from(0x1234_5678_9abc_def0u64) * Scalar::from(0x0fed_cba9_8765_4321u64)
}

fn ecdsa_root_key() -> String {
    near_key::to_near_string(&(ProjectivePoint::GENERATOR * ecdsa_root_secret()).to_affine())
}

fn ed25519_root_secret() -> EdScalar {
    EdScalar::from_bytes_mod_order(*b"ed25519 root secret of the tests")
}

fn ed25519_root() -> Ed25519PublicKey {
    Ed25519PublicKey::from_point(primitives::curve25519_dalek::EdwardsPoint::mul_base(
        &ed25519_root_secret(),
    ))
}

/// What the MPC network would answer for an ECDSA request of `who`: a signature with
/// the derived secret `root + ε` and nonce `nonce`, normalised to low s.
fn ecdsa_response(who: &str, path: &str, payload: &EcdsaPayload, nonce: u64) -> SignatureResponse {
    let tweak = Tweak::derive(who, path).unwrap();
    let secret = ecdsa_root_secret() + tweak.as_scalar();
    let k = Scalar::from(nonce);
    let big_r = (ProjectivePoint::GENERATOR * k).to_affine();
    let r = Scalar::from_repr(big_r.x()).unwrap();
    let s = k.invert().unwrap() * (payload.to_scalar() + r * secret);
    EcdsaSignature::new(&big_r, &s).unwrap().into()
}

/// An RFC 8032 signature of `message` with the derived Ed25519 secret `root + ε`
/// (ed25519-dalek's raw signing with an expanded key built from that scalar; the
/// nonce prefix is derived from the scalar, so signing is deterministic).
fn ed25519_signature(who: &str, path: &str, message: &[u8]) -> [u8; 64] {
    let scalar = ed25519_root_secret() + Ed25519Tweak::derive(who, path).as_scalar();
    let mut hash_prefix = [0u8; 32];
    hash_prefix.copy_from_slice(&Sha512::digest(scalar.as_bytes())[32..]);
    let expanded = ExpandedSecretKey {
        scalar,
        hash_prefix,
    };
    let verifying_key = ed25519_dalek::VerifyingKey::from(&expanded);
    raw_sign::<Sha512>(&expanded, message, &verifying_key).to_bytes()
}

fn ed25519_response(signature: [u8; 64]) -> SignatureResponse {
    SignatureResponse::Ed25519 {
        signature: Ed25519Signature(signature),
    }
}

// ---------------------------------------------------------------- deployment

fn node_name(i: usize) -> String {
    format!("node{i}.test.near")
}

/// A node's registration, with p2p keys of its own.
fn candidate(i: usize) -> Value {
    let name = node_name(i);
    json!({
        "account_id": name,
        "url": format!("https://{name}:3000"),
        "cipher_pk": vec![i as u8 + 1; 32],
        "sign_pk": SecretKey::from_seed(KeyType::ED25519, &name).public_key().to_string(),
    })
}

/// The default config with another key-event timeout (every field is required).
fn config(key_event_timeout_blocks: u64) -> Value {
    json!({
        "sign_deposit": "1",
        "min_sign_gas": "20000000000000",
        "yield_callback_gas": "10000000000000",
        "timeout_fail_gas": "3000000000000",
        "max_path_len": 1024,
        "max_duplicate_requests": 16,
        "max_pending_requests": 1024,
        "max_pending_per_caller": 128,
        "key_event_timeout_blocks": key_event_timeout_blocks,
        "candidate_expiry_blocks": 100000,
        "migrate_gas": "100000000000000",
    })
}

struct Network {
    net: Net,
    contract: Signer,
    nodes: Vec<Signer>,
    user: Signer,
}

/// Creates the contract account, `n` node accounts and the user; nothing deployed.
async fn accounts(n: usize) -> Network {
    let net = start().await;
    let contract = net.create_account(CONTRACT, 50 * NEAR).await;
    let mut nodes = Vec::new();
    for i in 0..n {
        nodes.push(net.create_account(&node_name(i), 10 * NEAR).await);
    }
    let user = net.create_account(USER, 10 * NEAR).await;
    Network {
        net,
        contract,
        nodes,
        user,
    }
}

/// Deploy and `init` in one batch, as the contract requires.
async fn deploy_and_init(network: &Network, init_args: Value) -> FinalExecutionOutcomeView {
    network
        .net
        .send(
            &network.contract,
            &id(CONTRACT),
            vec![deploy(multichain_wasm()), call("init", init_args, 100, 0)],
        )
        .await
}

/// `n` nodes with `threshold`, initialised and generating domain 0's key.
async fn initializing(n: usize, threshold: usize, config: Value) -> Network {
    let network = accounts(n).await;
    let candidates: serde_json::Map<String, Value> =
        (0..n).map(|i| (node_name(i), candidate(i))).collect();
    let outcome = deploy_and_init(
        &network,
        json!({"threshold": threshold, "candidates": candidates, "config": config}),
    )
    .await;
    assert_success(&outcome);
    assert_eq!(network.view("version", json!({})).await, json!("0.1.0"));
    assert_eq!(network.view("config", json!({})).await, config);
    let state = network.state().await;
    assert_eq!(state_name(&state), "Initializing", "{state}");
    assert_eq!(
        key_event(&state)["domain"],
        json!({"id": 0, "scheme": "Secp256k1"})
    );
    network
}

/// `n` nodes with `threshold`, Running with domain 0 (secp256k1).
async fn running(n: usize, threshold: usize) -> Network {
    let network = initializing(n, threshold, config(10_000)).await;
    network.vote_keygen(&ecdsa_root_key()).await;
    let state = network.state().await;
    assert_eq!(state_name(&state), "Running", "{state}");
    assert_eq!(
        network.view("public_key", json!({})).await,
        json!(ecdsa_root_key())
    );
    network
}

impl Network {
    async fn view(&self, method: &str, args: Value) -> Value {
        self.net.view(&id(CONTRACT), method, args).await
    }

    async fn state(&self) -> Value {
        self.view("state", json!({})).await
    }

    async fn call(
        &self,
        signer: &Signer,
        method: &str,
        args: Value,
        deposit: u128,
    ) -> FinalExecutionOutcomeView {
        let tgas = if method == "sign" { 300 } else { 100 };
        self.net
            .send(
                signer,
                &id(CONTRACT),
                vec![call(method, args, tgas, deposit)],
            )
            .await
    }

    /// A call that must succeed; its JSON return value (null for none).
    async fn call_ok(&self, signer: &Signer, method: &str, args: Value) -> Value {
        let outcome = self.call(signer, method, args, 0).await;
        let value = assert_success(&outcome);
        if value.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&value).unwrap()
        }
    }

    /// A call that must fail with `expected` in its error.
    async fn call_refused(
        &self,
        signer: &Signer,
        method: &str,
        args: Value,
        deposit: u128,
        expected: &str,
    ) {
        let outcome = self.call(signer, method, args, deposit).await;
        let text = failure_text(&outcome);
        assert!(
            text.contains(expected),
            "{method} should fail with {expected:?}, got: {text}"
        );
    }

    /// Every participant of the keygen under way votes `public_key` for its current
    /// attempt (read from the `state` view); the last vote completes it.
    async fn vote_keygen(&self, public_key: &str) {
        let state = self.state().await;
        let event = key_event_id(&state);
        let voters: Vec<Signer> = participants_of(key_event(&state))
            .iter()
            .map(|name| self.node(name).clone())
            .collect();
        for (i, node) in voters.iter().enumerate() {
            let done = self
                .call_ok(
                    node,
                    "vote_pk",
                    json!({"key_event": event, "public_key": public_key}),
                )
                .await;
            assert_eq!(done, json!(i + 1 == voters.len()), "vote {i} of {event}");
        }
    }

    fn node(&self, name: &str) -> &Signer {
        self.nodes
            .iter()
            .find(|n| n.get_account_id().as_str() == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    /// Sends `sign(args)` with 300 Tgas and 1 yoctoNEAR without waiting for it.
    async fn sign_async(&self, args: Value) -> CryptoHash {
        let tx = self
            .net
            .sign_tx(&self.user, &id(CONTRACT), vec![call("sign", args, 300, 1)])
            .await;
        self.net
            .client
            .call(methods::broadcast_tx_async::RpcBroadcastTxAsyncRequest {
                signed_transaction: tx,
            })
            .await
            .expect("broadcast_tx_async")
    }

    /// Waits until the contract shows `request_id` as pending, as a node polling it
    /// would, and returns the `pending_request` view.
    async fn wait_pending(&self, request_id: &RequestId) -> Value {
        for _ in 0..500 {
            let pending = self
                .view("pending_request", json!({"request_id": request_id}))
                .await;
            if !pending.is_null() {
                return pending;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("request {request_id} never became pending")
    }

    async fn respond(
        &self,
        node: &Signer,
        request_id: &RequestId,
        response: &SignatureResponse,
    ) -> FinalExecutionOutcomeView {
        self.call(
            node,
            "respond",
            json!({"request_id": request_id, "response": response}),
            0,
        )
        .await
    }

    async fn storage_usage(&self) -> u64 {
        self.net.account(&id(CONTRACT)).await.storage_usage
    }

    async fn shutdown(self) {
        self.net.devnet.shutdown().await.unwrap();
    }
}

fn state_name(state: &Value) -> &str {
    match state {
        Value::String(name) => name,
        Value::Object(map) => map.keys().next().expect("one variant"),
        other => panic!("not a state: {other}"),
    }
}

fn state_body(state: &Value) -> &Value {
    &state[state_name(state)]
}

fn key_event(state: &Value) -> &Value {
    let event = &state_body(state)["key_event"];
    assert!(event.is_object(), "no key event in {state}");
    event
}

/// The id nodes vote with: `{"epoch", "domain_id", "attempt"}` of the current attempt.
fn key_event_id(state: &Value) -> Value {
    let event = key_event(state);
    json!({
        "epoch": event["epoch"],
        "domain_id": event["domain"].get("id").cloned().unwrap_or(Value::Null),
        "attempt": event["attempt"],
    })
}

fn participants_of(set: &Value) -> Vec<String> {
    set["participants"]["participants"]
        .as_object()
        .expect("participants")
        .keys()
        .cloned()
        .collect()
}

fn assert_success(outcome: &FinalExecutionOutcomeView) -> Vec<u8> {
    match &outcome.status {
        FinalExecutionStatus::SuccessValue(value) => value.clone(),
        other => panic!(
            "expected success, got {other:?}; receipts: {:#?}",
            outcome.receipts_outcome
        ),
    }
}

fn failure_text(outcome: &FinalExecutionOutcomeView) -> String {
    match &outcome.status {
        FinalExecutionStatus::Failure(error) => error.to_string(),
        other => panic!("expected a failure, got {other:?}"),
    }
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

/// Gas burnt by a transaction and every receipt of it.
fn total_gas(outcome: &FinalExecutionOutcomeView) -> u64 {
    outcome.transaction_outcome.outcome.gas_burnt.as_gas()
        + outcome
            .receipts_outcome
            .iter()
            .map(|r| r.outcome.gas_burnt.as_gas())
            .sum::<u64>()
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
        "gas of {label}: {} Ggas in all; transaction {} Ggas; receipts: {}",
        total_gas(outcome) / 1_000_000_000,
        outcome.transaction_outcome.outcome.gas_burnt.as_gas() / 1_000_000_000,
        receipts.join(", ")
    );
    // Where each receipt's gas went (nearcore's gas profile), biggest first.
    for receipt in &outcome.receipts_outcome {
        let mut profile: Vec<(u64, String)> = receipt
            .outcome
            .metadata
            .gas_profile
            .iter()
            .flatten()
            .filter(|entry| entry.gas_used.as_gas() > 0)
            .map(|entry| (entry.gas_used.as_gas(), entry.cost.clone()))
            .collect();
        profile.sort_by(|a, b| b.cmp(a));
        let top: Vec<String> = profile
            .iter()
            .take(8)
            .map(|(gas, cost)| format!("{cost} {}", gas / 1_000_000_000))
            .collect();
        if !top.is_empty() {
            eprintln!("  profile (Ggas): {}", top.join(", "));
        }
    }
}

/// Sends the calls at once (one transaction each, broadcast concurrently) and returns
/// their outcomes in order.
async fn send_together(net: &Net, calls: Vec<(&Signer, Action)>) -> Vec<FinalExecutionOutcomeView> {
    let mut txs = Vec::new();
    for (signer, action) in calls {
        txs.push(net.sign_tx(signer, &id(CONTRACT), vec![action]).await);
    }
    let handles: Vec<_> = txs
        .into_iter()
        .map(|signed_transaction| {
            let client = net.client.clone();
            tokio::spawn(async move {
                client
                    .call(methods::broadcast_tx_commit::RpcBroadcastTxCommitRequest {
                        signed_transaction,
                    })
                    .await
                    .expect("broadcast_tx_commit")
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for handle in handles {
        outcomes.push(handle.await.expect("the task ends"));
    }
    outcomes
}

/// The caller's result must be exactly the scheme-tagged ECDSA JSON, and verify for
/// `payload` under the `derived_public_key` view of (USER, `path`, domain 0).
async fn check_ecdsa_answer(
    network: &Network,
    outcome: &FinalExecutionOutcomeView,
    payload: &EcdsaPayload,
    path: &str,
) -> SignatureResponse {
    let value = assert_success(outcome);
    let json: Value = serde_json::from_slice(&value).expect("the result is JSON");
    let mut keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["big_r", "recovery_id", "s", "scheme"], "{json}");
    assert_eq!(json["scheme"], "Secp256k1");
    let big_r = json["big_r"]["affine_point"].as_str().unwrap();
    assert_eq!(big_r.len(), 66, "33-byte SEC1 hex: {big_r}");
    assert!(big_r.starts_with("02") || big_r.starts_with("03"));
    assert_eq!(json["s"]["scalar"].as_str().unwrap().len(), 64);
    assert!(json["recovery_id"].as_u64().unwrap() <= 1);

    let derived_text = network
        .view(
            "derived_public_key",
            json!({"path": path, "predecessor": USER, "domain_id": 0}),
        )
        .await;
    let derived = near_key::parse_secp256k1(derived_text.as_str().unwrap()).unwrap();
    let root = (ProjectivePoint::GENERATOR * ecdsa_root_secret()).to_affine();
    assert_eq!(
        derived,
        derive_public_key(&root, &Tweak::derive(USER, path).unwrap()),
        "the view derives root + ε·G"
    );
    let answer: SignatureResponse = serde_json::from_value(json).unwrap();
    let SignatureResponse::Secp256k1(signature) = &answer else {
        panic!("not ECDSA: {answer:?}")
    };
    signature
        .verify(payload, &derived)
        .expect("the signature verifies for the derived key (and recovers it)");
    answer
}

fn ecdsa_request_id(payload: &EcdsaPayload, path: &str) -> RequestId {
    RequestId::of(
        USER,
        &SignRequest {
            payload: Payload::Ecdsa(*payload),
            path: path.into(),
            domain_id: DomainId(0),
        },
    )
}

// ---------------------------------------------------------------- tests

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

/// Storage a finished request leaves: its two entries (added, removed) in the
/// contract's log of pending changes, each a change number and a request id with
/// NEAR's 40 bytes of per-record overhead. The log keeps the latest 1,024 changes
/// and deletes older ones, so this is bounded (the contract's unit tests check
/// the window).
const FINISHED_REQUEST_BYTES: u64 = 2 * (9 + 33 + 40);

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
    let value = assert_success(&outcome);
    let json: Value = serde_json::from_slice(&value).unwrap();
    let mut keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["scheme", "signature"], "{json}");
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
