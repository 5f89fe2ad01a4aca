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
//!
//! This file is the harness (accounts playing the nodes, their votes and
//! answers, outcome and gas helpers); the tests are by feature: `init`,
//! `signing` (the three shapes, shared answers, refusals, a timeout),
//! `domains` (an Ed25519 domain) and `key_events` (a keygen timeout, a stuck
//! resharing).

#[path = "../common/mod.rs"]
mod common;
mod domains;
mod init;
mod key_events;
mod signing;

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

/// The caller's result as JSON, which must be an object with exactly `fields`
/// (listed in sorted order).
fn answer_json(outcome: &FinalExecutionOutcomeView, fields: &[&str]) -> Value {
    let value = assert_success(outcome);
    let json: Value = serde_json::from_slice(&value).expect("the result is JSON");
    let mut keys: Vec<&str> = json
        .as_object()
        .expect("the result is an object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, fields, "{json}");
    json
}

/// The caller's result must be exactly the scheme-tagged ECDSA JSON, and verify for
/// `payload` under the `derived_public_key` view of (USER, `path`, domain 0).
async fn check_ecdsa_answer(
    network: &Network,
    outcome: &FinalExecutionOutcomeView,
    payload: &EcdsaPayload,
    path: &str,
) -> SignatureResponse {
    let json = answer_json(outcome, &["big_r", "recovery_id", "s", "scheme"]);
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

/// Storage a finished request leaves: its two entries (added, removed) in the
/// contract's log of pending changes, each a change number and a request id with
/// NEAR's 40 bytes of per-record overhead. The log keeps the latest 1,024 changes
/// and deletes older ones, so this is bounded (the contract's unit tests check
/// the window).
const FINISHED_REQUEST_BYTES: u64 = 2 * (9 + 33 + 40);
