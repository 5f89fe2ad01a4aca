//! Unit tests on near-sdk's mocked blockchain. The "network" here is a test-only
//! signer that holds the root secrets outright, computes the derived secret as
//! `secret + ε` and signs with textbook ECDSA (secp256k1) or RFC 8032 arithmetic
//! (Ed25519) and a chosen nonce: independent of the contract's verification code,
//! which must accept it.
//!
//! This file holds the shared helpers (keys, the mocked chain, states, requests and
//! the test network); the tests sit in one file per feature, like the contract's API.

use super::*;
use crate::pending::Ticket;
use crate::sign::{answer_json, Resolution};
use crate::state::{KeyEventId, ResharingContractState};
use crate::update::ProposeUpdateArgs;
use near_sdk::mock::MockAction;
use near_sdk::serde_json::{self, json};
use near_sdk::test_utils::{get_created_receipts, get_logs, VMContextBuilder};
use near_sdk::{testing_env, CryptoHash, Gas, PromiseResult};
use primitives::curve25519_dalek::{EdwardsPoint, Scalar as EdScalar};
use primitives::ed25519::{Ed25519PublicKey, Ed25519Tweak};
use primitives::k256::elliptic_curve::point::AffineCoordinates;
use primitives::k256::elliptic_curve::PrimeField;
use primitives::k256::{ProjectivePoint, Scalar};
use primitives::near_key;
use primitives::request::{EddsaPayloadError, SignArgsError};
use primitives::response::{ResponseError, SerializableScalar};
use primitives::{
    EcdsaPayload, EcdsaSignature, Ed25519Signature, EddsaPayload, Payload, SignRequestArgs,
    SignatureResponse, Tweak,
};
use sha2::{Digest, Sha512};
use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};

const CONTRACT: &str = "signer.near";
const ALICE: &str = "alice.near";
const BOB: &str = "bob.near";
const NODES: [&str; 3] = ["node0.near", "node1.near", "node2.near"];
const NEWCOMER: &str = "node3.near";
/// The block every context starts in unless a test says otherwise.
const START: u64 = 100;
/// `Config::default().key_event_timeout_blocks`.
const TIMEOUT: u64 = 120;

fn account(name: &str) -> AccountId {
    name.parse().unwrap()
}

// ---------------------------------------------------------------- keys

fn root_secret() -> Scalar {
    Scalar::from(0x1234_5678_9abc_def0u64) * Scalar::from(0x0fed_cba9_8765_4321u64)
}

fn secp256k1_key(secret: &Scalar) -> PublicKey {
    let point = (ProjectivePoint::GENERATOR * secret).to_affine();
    PublicKey::from_parts(
        CurveType::SECP256K1,
        near_key::to_uncompressed_xy(&point).to_vec(),
    )
    .unwrap()
}

fn root_public_key() -> PublicKey {
    secp256k1_key(&root_secret())
}

fn other_public_key() -> PublicKey {
    secp256k1_key(&Scalar::from(7u64))
}

fn ed_root_secret() -> EdScalar {
    EdScalar::from(0x0123_4567_89ab_cdefu64) * EdScalar::from(0xfeed_face_cafe_beefu64)
}

fn ed25519_key(secret: &EdScalar) -> PublicKey {
    let point = EdwardsPoint::mul_base(secret).compress();
    PublicKey::from_parts(CurveType::ED25519, point.to_bytes().to_vec()).unwrap()
}

fn ed_root_public_key() -> PublicKey {
    ed25519_key(&ed_root_secret())
}

fn ed_other_public_key() -> PublicKey {
    ed25519_key(&EdScalar::from(11u64))
}

/// A node's p2p keys: distinct for every index (the contract refuses duplicates).
fn candidate(name: &str, index: u8) -> CandidateInfo {
    CandidateInfo {
        account_id: account(name),
        url: format!("https://{name}:3000"),
        cipher_pk: [index; 32],
        sign_pk: ed25519_key(&EdScalar::from(1000 + u64::from(index))),
    }
}

fn candidates(names: &[&str]) -> SortedMap<AccountId, CandidateInfo> {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| (account(n), candidate(n, i as u8)))
        .collect()
}

fn secp256k1_domain(id: u64) -> DomainConfig {
    DomainConfig {
        id: DomainId(id),
        scheme: SignatureScheme::Secp256k1,
    }
}

fn ed25519_domain(id: u64) -> DomainConfig {
    DomainConfig {
        id: DomainId(id),
        scheme: SignatureScheme::Ed25519,
    }
}

fn both_domains() -> Vec<DomainConfig> {
    vec![secp256k1_domain(0), ed25519_domain(1)]
}

fn domain_key(config: DomainConfig, public_key: PublicKey, attempt: u64) -> DomainKey {
    DomainKey {
        id: config.id,
        scheme: config.scheme,
        public_key,
        attempt,
    }
}

// ---------------------------------------------------------------- the mocked chain

/// The callback's context: the contract calls itself, its yield resumed with
/// `answer` as `respond` serialised it.
fn resumed_with(answer: &SignatureResponse) {
    testing_env!(
        context(CONTRACT, 0).build(),
        near_sdk::test_vm_config(),
        near_sdk::RuntimeFeesConfig::test(),
        Default::default(),
        vec![PromiseResult::Successful(answer_json(answer))],
    );
}

/// A call context: `predecessor` calls with 300 Tgas and `deposit` yoctoNEAR.
fn context(predecessor: &str, deposit: u128) -> VMContextBuilder {
    let mut builder = VMContextBuilder::new();
    builder
        .current_account_id(account(CONTRACT))
        .predecessor_account_id(account(predecessor))
        .signer_account_id(account(predecessor))
        .attached_deposit(NearToken::from_yoctonear(deposit))
        .prepaid_gas(Gas::from_tgas(300))
        .block_height(START)
        .random_seed([42; 32])
        .account_balance(NearToken::from_near(100));
    builder
}

fn as_caller(predecessor: &str, deposit: u128) {
    testing_env!(context(predecessor, deposit).build());
}

/// `predecessor` calls without a deposit in block `height`.
fn at_block(predecessor: &str, height: u64) {
    testing_env!(context(predecessor, 0).block_height(height).build());
}

/// Runs `f`, expects it to abort the call, and returns the panic text.
fn abort_text<R>(f: impl FnOnce() -> R) -> String {
    let payload = catch_unwind(AssertUnwindSafe(f))
        .err()
        .expect("the call should have been refused");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// Asserts that `f` aborts with exactly `error`'s text (as the mock reports it).
fn assert_refused<R>(error: Error, f: impl FnOnce() -> R) {
    let text = abort_text(f);
    let expected = format!("{:?}", error.to_string());
    let expected = &expected[1..expected.len() - 1];
    assert!(
        text.contains(expected),
        "expected refusal `{expected}`, got `{text}`"
    );
}

/// Events of the last call, parsed.
fn events() -> Vec<serde_json::Value> {
    get_logs()
        .iter()
        .filter_map(|line| line.strip_prefix("EVENT_JSON:"))
        .map(|json| serde_json::from_str(json).unwrap())
        .collect()
}

fn event_names() -> Vec<String> {
    events()
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect()
}

fn find_event(name: &str) -> serde_json::Value {
    events()
        .into_iter()
        .find(|e| e["event"] == name)
        .unwrap_or_else(|| panic!("no {name} event in {:?}", event_names()))
}

fn transfers_to(receiver: &str) -> Vec<NearToken> {
    get_created_receipts()
        .into_iter()
        .filter(|r| r.receiver_id.as_str() == receiver)
        .flat_map(|r| r.actions)
        .filter_map(|a| match a {
            MockAction::Transfer { deposit, .. } => Some(deposit),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------- states

fn initializing(threshold: usize) -> MpcContract {
    as_caller(CONTRACT, 0);
    MpcContract::init(threshold, candidates(&NODES), None, None)
}

fn key_event(contract: &MpcContract) -> KeyEvent {
    contract
        .state()
        .key_event()
        .cloned()
        .expect("a key event is under way")
}

fn key_event_id(contract: &MpcContract) -> KeyEventId {
    key_event(contract).id()
}

fn event_id(epoch: u64, domain: Option<u64>, attempt: u64) -> KeyEventId {
    KeyEventId {
        epoch,
        domain_id: domain.map(DomainId),
        attempt,
    }
}

/// Each of `nodes` votes `key` for the current keygen attempt (block `START`);
/// returns the last vote's answer.
fn vote_keygen(contract: &mut MpcContract, nodes: &[&str], key: &PublicKey) -> bool {
    let mut completed = false;
    for node in nodes {
        as_caller(node, 0);
        let id = key_event_id(contract);
        completed = contract.vote_pk(id, key.clone());
    }
    completed
}

/// Each of `nodes` reports the current resharing attempt done; returns the last answer.
fn vote_resharing(contract: &mut MpcContract, nodes: &[&str]) -> bool {
    let mut completed = false;
    for node in nodes {
        as_caller(node, 0);
        let id = key_event_id(contract);
        completed = contract.vote_reshared(id);
    }
    completed
}

fn running_state(contract: &MpcContract) -> RunningContractState {
    match contract.state() {
        ProtocolContractState::Running(state) => state,
        other => panic!("not Running but {}", other.name()),
    }
}

fn initializing_state(contract: &MpcContract) -> InitializingContractState {
    match contract.state() {
        ProtocolContractState::Initializing(state) => state,
        other => panic!("not Initializing but {}", other.name()),
    }
}

fn resharing_state(contract: &MpcContract) -> ResharingContractState {
    match contract.state() {
        ProtocolContractState::Resharing(state) => state,
        other => panic!("not Resharing but {}", other.name()),
    }
}

/// A contract that went through key generation of domain 0 with `config`:
/// 3 participants, threshold 2.
fn running_with(config: Config) -> MpcContract {
    as_caller(CONTRACT, 0);
    let mut contract = MpcContract::init(2, candidates(&NODES), Some(config), None);
    assert!(vote_keygen(&mut contract, &NODES, &root_public_key()));
    contract
}

/// A contract that went through key generation of domain 0: 3 participants,
/// threshold 2.
fn running() -> MpcContract {
    running_with(Config::default())
}

/// Running with domain 0 (secp256k1, attempt 0) and domain 1 (Ed25519, attempt 1).
fn running_both() -> MpcContract {
    as_caller(CONTRACT, 0);
    let mut contract = MpcContract::init(2, candidates(&NODES), None, Some(both_domains()));
    assert!(vote_keygen(&mut contract, &NODES, &root_public_key()));
    assert!(vote_keygen(&mut contract, &NODES, &ed_root_public_key()));
    contract
}

/// `NEWCOMER` joins and two participants vote it in: resharing to four begins.
fn start_join_resharing(contract: &mut MpcContract) {
    as_caller(NEWCOMER, 0);
    let info = candidate(NEWCOMER, 3);
    contract.join(info.url, info.cipher_pk, info.sign_pk);
    as_caller(NODES[0], 0);
    assert!(!contract.vote_join(account(NEWCOMER)));
    as_caller(NODES[1], 0);
    assert!(contract.vote_join(account(NEWCOMER)));
}

// ---------------------------------------------------------------- requests and the test network

fn ecdsa_payload(byte: u8) -> EcdsaPayload {
    EcdsaPayload::new([byte; 32]).unwrap()
}

/// A message of `len` bytes for an Ed25519 domain.
fn message(byte: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| byte.wrapping_add(i as u8)).collect()
}

/// The current shape: `payload_v2: {"Ecdsa": …}` for domain 0.
fn ecdsa_request(byte: u8, path: &str) -> SignRequestArgs {
    SignRequestArgs {
        payload_v2: Some(Payload::Ecdsa(ecdsa_payload(byte))),
        path: path.into(),
        domain_id: Some(DomainId(0)),
        ..Default::default()
    }
}

/// The current shape: `payload_v2: {"Eddsa": …}` (100 bytes) for domain 1.
fn eddsa_request(byte: u8, path: &str) -> SignRequestArgs {
    SignRequestArgs {
        payload_v2: Some(Payload::Eddsa(
            EddsaPayload::new(message(byte, 100)).unwrap(),
        )),
        path: path.into(),
        domain_id: Some(DomainId(1)),
        ..Default::default()
    }
}

fn request_id(who: &str, args: &SignRequestArgs) -> RequestId {
    RequestId::of(who, &args.clone().resolve().unwrap())
}

/// Calls `sign` as `who` with `{"request": args}` and a 1 yoctoNEAR deposit.
fn sign_as(contract: &mut MpcContract, who: &str, args: &SignRequestArgs) -> RequestId {
    as_caller(who, 1);
    contract.sign(Some(args.clone()), None, None, None);
    request_id(who, args)
}

/// The test network's ECDSA answer: textbook ECDSA with the derived secret.
fn ecdsa_signature(who: &str, path: &str, payload: &EcdsaPayload, nonce: u64) -> SignatureResponse {
    let secret = root_secret() + Tweak::derive(who, path).unwrap().as_scalar();
    let k = Scalar::from(nonce);
    let big_r = (ProjectivePoint::GENERATOR * k).to_affine();
    let r = Scalar::from_repr(big_r.x()).unwrap();
    let s = k.invert().unwrap() * (payload.to_scalar() + r * secret);
    EcdsaSignature::new(&big_r, &s).unwrap().into()
}

/// The test network's Ed25519 answer, RFC 8032 arithmetic with the derived secret
/// `a = s + ε`: `R = r·B`, `k = SHA-512(R ‖ A ‖ M) mod ℓ`, `S = r + k·a`.
fn ed25519_signature(who: &str, path: &str, message: &[u8], nonce: u64) -> SignatureResponse {
    let a = ed_root_secret() + Ed25519Tweak::derive(who, path).as_scalar();
    let big_a = EdwardsPoint::mul_base(&a).compress();
    let r = EdScalar::from(nonce) * EdScalar::from(0x9e37_79b9_7f4a_7c15u64);
    let big_r = EdwardsPoint::mul_base(&r).compress();
    let digest = Sha512::new()
        .chain_update(big_r.as_bytes())
        .chain_update(big_a.as_bytes())
        .chain_update(message)
        .finalize();
    let mut wide = [0u8; 64];
    wide.copy_from_slice(&digest);
    let k = EdScalar::from_bytes_mod_order_wide(&wide);
    let s = r + k * a;
    let mut signature = [0u8; 64];
    signature[..32].copy_from_slice(big_r.as_bytes());
    signature[32..].copy_from_slice(s.as_bytes());
    SignatureResponse::Ed25519 {
        signature: Ed25519Signature(signature),
    }
}

/// The test network's answer to `args` made by `who`, in the request's scheme.
fn network_signature(who: &str, args: &SignRequestArgs, nonce: u64) -> SignatureResponse {
    let request = args.clone().resolve().unwrap();
    match &request.payload {
        Payload::Ecdsa(payload) => ecdsa_signature(who, &request.path, payload, nonce),
        Payload::Eddsa(payload) => ed25519_signature(who, &request.path, payload.as_bytes(), nonce),
    }
}

fn tickets(contract: &MpcContract, id: &RequestId) -> Vec<Ticket> {
    contract
        .pending
        .get(id)
        .map(|e| e.tickets.clone())
        .unwrap_or_default()
}

/// `who` asks for `args`, a participant answers it (in a later block) and every
/// late callback collects the answer: the request is done.
fn sign_and_answer(contract: &mut MpcContract, who: &str, args: &SignRequestArgs, responder: &str) {
    let id = sign_as(contract, who, args);
    let response = network_signature(who, args, 4711);
    as_caller(responder, 0);
    contract.respond(id, response.clone());
    as_caller(CONTRACT, 0);
    for ticket in tickets(contract, &id) {
        assert_eq!(
            contract.resolve(id, ticket.id, None),
            Resolution::Answer(answer_json(&response))
        );
    }
    assert!(contract.pending.get(&id).is_none());
}

mod callback;
mod candidates;
mod changes;
mod domains;
mod entry;
mod keygen;
mod resharing;
mod respond;
mod sign;
mod updates;
mod views;
