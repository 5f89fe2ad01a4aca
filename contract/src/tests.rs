//! Unit tests on near-sdk's mocked blockchain. The "network" here is a test-only
//! signer that holds the root secrets outright, computes the derived secret as
//! `secret + ε` and signs with textbook ECDSA (secp256k1) or RFC 8032 arithmetic
//! (Ed25519) and a chosen nonce: independent of the contract's verification code,
//! which must accept it.

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

fn candidates(names: &[&str]) -> BTreeMap<AccountId, CandidateInfo> {
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

// ---------------------------------------------------------------- init and keygen

#[test]
fn init_is_for_the_contract_account_with_a_sane_threshold() {
    as_caller(ALICE, 0);
    assert_refused(Error::InitByOther, || {
        MpcContract::init(2, candidates(&NODES), None, None)
    });
    as_caller(CONTRACT, 0);
    for threshold in [0, 1, 4] {
        assert_refused(
            Error::BadThreshold {
                threshold,
                participants: 3,
            },
            || MpcContract::init(threshold, candidates(&NODES), None, None),
        );
    }
    let mut mismatched = candidates(&NODES);
    mismatched.get_mut(&account(NODES[0])).unwrap().account_id = account(ALICE);
    assert_refused(
        Error::CandidateKeyMismatch {
            key: account(NODES[0]),
            account_id: account(ALICE),
        },
        || MpcContract::init(2, mismatched, None, None),
    );
    assert_refused(Error::NoCandidates, || {
        MpcContract::init(2, BTreeMap::new(), None, None)
    });
    let mut long_url = candidates(&NODES);
    long_url.get_mut(&account(NODES[1])).unwrap().url = "u".repeat(513);
    assert_refused(
        Error::CandidateField {
            what: "url",
            max: 512,
        },
        || MpcContract::init(2, long_url, None, None),
    );
    let bad_config = Config {
        sign_deposit: NearToken::from_yoctonear(0),
        ..Config::default()
    };
    assert_refused(
        Error::BadConfig("sign_deposit must be at least 1 yoctoNEAR"),
        || MpcContract::init(2, candidates(&NODES), Some(bad_config), None),
    );
    // p2p keys are unique among candidates.
    let mut same_cipher = candidates(&NODES);
    same_cipher.get_mut(&account(NODES[2])).unwrap().cipher_pk = [0; 32];
    assert_refused(Error::P2pKeyInUse, || {
        MpcContract::init(2, same_cipher, None, None)
    });
    let mut same_sign = candidates(&NODES);
    same_sign.get_mut(&account(NODES[2])).unwrap().sign_pk = candidate(NODES[1], 1).sign_pk;
    assert_refused(Error::P2pKeyInUse, || {
        MpcContract::init(2, same_sign, None, None)
    });
    // Domains continue from 0, in order.
    assert_refused(Error::NoDomains, || {
        MpcContract::init(2, candidates(&NODES), None, Some(vec![]))
    });
    assert_refused(
        Error::DomainIdOrder {
            expected: DomainId(0),
            got: DomainId(1),
        },
        || MpcContract::init(2, candidates(&NODES), None, Some(vec![ed25519_domain(1)])),
    );
    assert_refused(
        Error::DomainIdOrder {
            expected: DomainId(1),
            got: DomainId(2),
        },
        || {
            MpcContract::init(
                2,
                candidates(&NODES),
                None,
                Some(vec![secp256k1_domain(0), ed25519_domain(2)]),
            )
        },
    );

    as_caller(CONTRACT, 0);
    let contract = MpcContract::init(2, candidates(&NODES), None, None);
    let state = initializing_state(&contract);
    let ids: Vec<u32> = state
        .key_event
        .participants
        .participants
        .values()
        .map(|p| p.id)
        .collect();
    assert_eq!(ids, vec![0, 1, 2]);
    assert_eq!(
        state.generating,
        vec![secp256k1_domain(0)],
        "domain 0 by default"
    );
    assert_eq!(state.key_event.id(), event_id(0, Some(0), 0));
    assert_eq!(state.key_event.threshold, 2);
    assert_eq!(state.key_event.started_at, START);
    assert_eq!(state.key_event.expires_at, START + TIMEOUT);
    assert!(state.running.domains.is_empty());
    assert_eq!(event_names(), vec!["state_changed"]);
    assert_eq!(events()[0]["data"]["to"], "Initializing");
}

#[test]
fn uninitialised_contract_answers_views_and_refuses_work() {
    as_caller(ALICE, 1);
    let mut contract = MpcContract::default();
    assert_eq!(contract.state().name(), "NotInitialized");
    let not_ready = || Error::NotReady {
        state: "NotInitialized",
    };
    assert_refused(not_ready(), || contract.public_key(None));
    assert_refused(not_ready(), || contract.latest_key_version());
    assert_refused(not_ready(), || {
        contract.sign(Some(ecdsa_request(1, "p")), None, None, None)
    });
    as_caller(NODES[0], 0);
    assert_refused(not_ready(), || contract.vote_cancel_key_event());
    assert_refused(Error::NoKeyEvent, || {
        contract.vote_abort_key_event(event_id(0, Some(0), 0))
    });
}

#[test]
fn keygen_completes_only_when_every_participant_votes_the_same_key() {
    let mut contract = initializing(2);
    let attempt = event_id(0, Some(0), 0);
    as_caller(ALICE, 1);
    assert_refused(
        Error::DomainWithoutKey {
            domain: DomainId(0),
        },
        || contract.sign(Some(ecdsa_request(1, "p")), None, None, None),
    );
    assert_refused(
        Error::DomainWithoutKey {
            domain: DomainId(0),
        },
        || contract.public_key(None),
    );
    assert_refused(
        Error::NotInKeyEvent {
            account: account(ALICE),
        },
        || contract.vote_pk(attempt, root_public_key()),
    );

    as_caller(NODES[0], 0);
    assert_refused(
        Error::KeyNotOfScheme {
            scheme: SignatureScheme::Secp256k1,
        },
        || contract.vote_pk(attempt, ed_root_public_key()),
    );
    let off_curve = PublicKey::from_parts(CurveType::SECP256K1, vec![1; 64]).unwrap();
    assert_refused(
        Error::KeyNotOfScheme {
            scheme: SignatureScheme::Secp256k1,
        },
        || contract.vote_pk(attempt, off_curve),
    );
    let wrong_event = event_id(1, Some(0), 0);
    assert_refused(
        Error::WrongKeyEvent {
            expected: attempt,
            got: wrong_event,
        },
        || contract.vote_pk(wrong_event, root_public_key()),
    );
    let resharing_id = event_id(0, None, 0);
    assert_refused(
        Error::WrongKeyEvent {
            expected: attempt,
            got: resharing_id,
        },
        || contract.vote_pk(resharing_id, root_public_key()),
    );
    assert_refused(Error::AttemptOver { got: 1, current: 0 }, || {
        contract.vote_pk(event_id(0, Some(0), 1), root_public_key())
    });

    assert!(!contract.vote_pk(attempt, root_public_key()));
    assert_eq!(event_names(), vec!["voted"]);
    assert_eq!(events()[0]["data"]["kind"], "pk");
    assert!(
        !contract.vote_pk(attempt, root_public_key()),
        "voting twice is idempotent and counts once"
    );
    as_caller(NODES[1], 0);
    assert!(
        !contract.vote_pk(attempt, root_public_key()),
        "a threshold of votes is not enough: every participant must vote"
    );
    let event = key_event(&contract);
    assert_eq!(event.votes.len(), 2);
    assert_eq!(event.public_key, Some(root_public_key()));

    as_caller(NODES[2], 0);
    assert!(contract.vote_pk(attempt, root_public_key()));
    assert_eq!(event_names(), vec!["voted", "state_changed"]);
    let state = running_state(&contract);
    assert_eq!(state.epoch, 0);
    assert_eq!(state.participants.len(), 3);
    assert_eq!(
        state.domains,
        vec![domain_key(secp256k1_domain(0), root_public_key(), 0)],
        "the domain key records the attempt whose shares the nodes keep"
    );
    assert_eq!(state.next_domain_id, DomainId(1));
    assert_eq!(contract.public_key(None), root_public_key());
    assert_eq!(contract.public_key(Some(DomainId(0))), root_public_key());

    assert_refused(
        Error::WrongState {
            expected: "Initializing",
            actual: "Running",
        },
        || contract.vote_pk(attempt, root_public_key()),
    );
}

#[test]
fn a_vote_for_another_key_ends_the_attempt() {
    let mut contract = initializing(2);
    let first = event_id(0, Some(0), 0);
    as_caller(NODES[0], 0);
    assert!(!contract.vote_pk(first, root_public_key()));
    as_caller(NODES[1], 0);
    assert!(!contract.vote_pk(first, other_public_key()));
    assert_eq!(event_names(), vec!["voted", "key_event_attempt_failed"]);
    let failed = &events()[1]["data"];
    assert_eq!(failed["epoch"], 0);
    assert_eq!(failed["domain_id"], 0);
    assert_eq!(failed["attempt"], 0);
    assert_eq!(failed["next_attempt"], 1);
    assert_eq!(failed["reason"], "votes disagree on the public key");

    let event = key_event(&contract);
    assert_eq!(event.id(), event_id(0, Some(0), 1));
    assert!(
        event.votes.is_empty(),
        "the next attempt starts without votes"
    );
    assert_eq!(event.public_key, None);
    as_caller(NODES[2], 0);
    assert_refused(Error::AttemptOver { got: 0, current: 1 }, || {
        contract.vote_pk(first, root_public_key())
    });

    assert!(vote_keygen(&mut contract, &NODES, &other_public_key()));
    assert_eq!(
        running_state(&contract).domains,
        vec![domain_key(secp256k1_domain(0), other_public_key(), 1)]
    );
}

#[test]
fn attempts_roll_forward_by_timeout() {
    let mut contract = initializing(2);
    at_block(NODES[0], START + 50);
    assert!(!contract.vote_pk(event_id(0, Some(0), 0), root_public_key()));

    at_block(ALICE, START + TIMEOUT - 1);
    let event = key_event(&contract);
    assert_eq!((event.attempt, event.votes.len()), (0, 1));

    // The view shows the next attempt as soon as the current one expires, with
    // no transaction needed.
    at_block(ALICE, START + TIMEOUT);
    let event = key_event(&contract);
    assert_eq!(event.attempt, 1);
    assert_eq!(event.started_at, START + TIMEOUT);
    assert_eq!(event.expires_at, START + 2 * TIMEOUT);
    assert!(event.votes.is_empty());
    assert_eq!(event.public_key, None);
    at_block(NODES[1], START + TIMEOUT);
    assert_refused(Error::AttemptOver { got: 0, current: 1 }, || {
        contract.vote_pk(event_id(0, Some(0), 0), root_public_key())
    });

    // Several timeouts at once.
    let late = START + 3 * TIMEOUT + 60;
    at_block(ALICE, late);
    let event = key_event(&contract);
    assert_eq!(event.attempt, 3);
    assert_eq!(event.started_at, START + 3 * TIMEOUT);
    assert_eq!(event.expires_at, START + 4 * TIMEOUT);

    let mut completed = false;
    for node in NODES {
        at_block(node, late);
        completed = contract.vote_pk(event_id(0, Some(0), 3), root_public_key());
    }
    assert!(completed);
    assert_eq!(running_state(&contract).domains[0].attempt, 3);

    // The attempt counter moved past every attempt handed out, even those that only
    // timed out: the next key event gets attempt 4.
    for node in &NODES[..2] {
        at_block(node, late + 1);
        contract.vote_add_domains(vec![ed25519_domain(1)]);
    }
    assert_eq!(key_event_id(&contract), event_id(0, Some(1), 4));
}

#[test]
fn vote_abort_key_event_starts_the_next_attempt() {
    let mut contract = initializing(2);
    let first = event_id(0, Some(0), 0);
    as_caller(NODES[1], 0);
    assert!(!contract.vote_pk(first, root_public_key()));
    as_caller(ALICE, 0);
    assert_refused(
        Error::NotInKeyEvent {
            account: account(ALICE),
        },
        || contract.vote_abort_key_event(first),
    );
    as_caller(NODES[0], 0);
    let other_event = event_id(1, Some(0), 0);
    assert_refused(
        Error::WrongKeyEvent {
            expected: first,
            got: other_event,
        },
        || contract.vote_abort_key_event(other_event),
    );
    contract.vote_abort_key_event(first);
    assert_eq!(event_names(), vec!["voted", "key_event_attempt_failed"]);
    assert_eq!(events()[0]["data"]["kind"], "abort");
    let failed = &events()[1]["data"];
    assert_eq!(
        (failed["attempt"].as_u64(), failed["next_attempt"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(failed["reason"], "node0.near reported failure");
    let event = key_event(&contract);
    assert_eq!(event.id(), event_id(0, Some(0), 1));
    assert!(
        event.votes.is_empty(),
        "votes of the aborted attempt are gone"
    );
    assert_refused(Error::AttemptOver { got: 0, current: 1 }, || {
        contract.vote_abort_key_event(first)
    });

    assert!(vote_keygen(&mut contract, &NODES, &root_public_key()));
    assert_eq!(running_state(&contract).domains[0].attempt, 1);
    as_caller(NODES[0], 0);
    assert_refused(Error::NoKeyEvent, || {
        contract.vote_abort_key_event(event_id(0, Some(0), 1))
    });
}

#[test]
fn the_first_keygen_cannot_be_cancelled() {
    let mut contract = initializing(2);
    as_caller(ALICE, 0);
    assert_refused(
        Error::NotAParticipant {
            account: account(ALICE),
        },
        || contract.vote_cancel_key_event(),
    );
    as_caller(NODES[0], 0);
    assert_refused(Error::NothingToFallBackTo, || {
        contract.vote_cancel_key_event()
    });

    assert!(vote_keygen(&mut contract, &NODES, &root_public_key()));
    as_caller(NODES[0], 0);
    assert_refused(Error::NoKeyEvent, || contract.vote_cancel_key_event());
}

#[test]
fn init_with_two_domains_generates_both_keys_in_turn() {
    as_caller(CONTRACT, 0);
    let mut contract = MpcContract::init(2, candidates(&NODES), None, Some(both_domains()));
    let state = initializing_state(&contract);
    assert_eq!(state.generating, both_domains());
    assert_eq!(state.key_event.id(), event_id(0, Some(0), 0));
    as_caller(ALICE, 1);
    assert_refused(
        Error::DomainWithoutKey {
            domain: DomainId(1),
        },
        || contract.sign(Some(eddsa_request(1, "p")), None, None, None),
    );

    assert!(
        vote_keygen(&mut contract, &NODES, &root_public_key()),
        "the vote completes domain 0's keygen"
    );
    assert_eq!(
        event_names(),
        vec!["voted", "state_changed"],
        "and the next keygen begins"
    );
    let state = initializing_state(&contract);
    assert_eq!(state.generating, vec![ed25519_domain(1)]);
    assert_eq!(state.key_event.id(), event_id(0, Some(1), 1));
    assert_eq!(
        state.running.domains,
        vec![domain_key(secp256k1_domain(0), root_public_key(), 0)]
    );

    // Domain 0 signs while domain 1's key is generated.
    sign_and_answer(&mut contract, ALICE, &ecdsa_request(2, "p"), NODES[1]);
    assert_eq!(contract.public_key(None), root_public_key());
    assert_eq!(contract.latest_key_version(), DomainId(0));
    as_caller(ALICE, 1);
    assert_refused(
        Error::DomainWithoutKey {
            domain: DomainId(1),
        },
        || contract.sign(Some(eddsa_request(1, "p")), None, None, None),
    );

    as_caller(NODES[0], 0);
    let attempt = event_id(0, Some(1), 1);
    assert_refused(
        Error::KeyNotOfScheme {
            scheme: SignatureScheme::Ed25519,
        },
        || contract.vote_pk(attempt, root_public_key()),
    );
    assert!(vote_keygen(&mut contract, &NODES, &ed_root_public_key()));
    let state = running_state(&contract);
    assert_eq!(
        state.domains,
        vec![
            domain_key(secp256k1_domain(0), root_public_key(), 0),
            domain_key(ed25519_domain(1), ed_root_public_key(), 1),
        ]
    );
    assert_eq!(state.next_domain_id, DomainId(2));
    assert_eq!(contract.public_key(Some(DomainId(1))), ed_root_public_key());
    assert_eq!(contract.latest_key_version(), DomainId(0));
}

#[test]
fn init_running_starts_serving_existing_keys() {
    let domains = vec![
        domain_key(secp256k1_domain(0), root_public_key(), 7),
        domain_key(ed25519_domain(1), ed_root_public_key(), 9),
    ];
    as_caller(ALICE, 0);
    assert_refused(Error::InitByOther, || {
        MpcContract::init_running(5, candidates(&NODES), 2, domains.clone(), None)
    });
    as_caller(CONTRACT, 0);
    let secp = SignatureScheme::Secp256k1;
    assert_refused(Error::KeyNotOfScheme { scheme: secp }, || {
        let wrong = vec![domain_key(secp256k1_domain(0), ed_root_public_key(), 0)];
        MpcContract::init_running(5, candidates(&NODES), 2, wrong, None)
    });
    assert_refused(Error::KeyNotOfScheme { scheme: secp }, || {
        let off_curve = PublicKey::from_parts(CurveType::SECP256K1, vec![1; 64]).unwrap();
        let wrong = vec![domain_key(secp256k1_domain(0), off_curve, 0)];
        MpcContract::init_running(5, candidates(&NODES), 2, wrong, None)
    });
    assert_refused(
        Error::KeyNotOfScheme {
            scheme: SignatureScheme::Ed25519,
        },
        || {
            let wrong = vec![
                domain_key(secp256k1_domain(0), root_public_key(), 0),
                domain_key(ed25519_domain(1), root_public_key(), 0),
            ];
            MpcContract::init_running(5, candidates(&NODES), 2, wrong, None)
        },
    );
    assert_refused(
        Error::DomainIdOrder {
            expected: DomainId(0),
            got: DomainId(1),
        },
        || {
            let gap = vec![domain_key(ed25519_domain(1), ed_root_public_key(), 0)];
            MpcContract::init_running(5, candidates(&NODES), 2, gap, None)
        },
    );
    assert_refused(Error::NoDomains, || {
        MpcContract::init_running(5, candidates(&NODES), 2, vec![], None)
    });
    assert_refused(
        Error::BadThreshold {
            threshold: 3,
            participants: 2,
        },
        || MpcContract::init_running(5, candidates(&NODES[..2]), 3, domains.clone(), None),
    );
    assert_refused(
        Error::BadThreshold {
            threshold: 1,
            participants: 3,
        },
        || MpcContract::init_running(5, candidates(&NODES), 1, domains.clone(), None),
    );

    let mut contract = MpcContract::init_running(5, candidates(&NODES), 2, domains.clone(), None);
    assert_eq!(event_names(), vec!["state_changed"]);
    let state = running_state(&contract);
    assert_eq!(state.epoch, 5);
    assert_eq!(state.domains, domains);
    assert_eq!(state.next_domain_id, DomainId(2));
    sign_and_answer(&mut contract, ALICE, &ecdsa_request(13, "p"), NODES[1]);
    sign_and_answer(&mut contract, ALICE, &eddsa_request(13, "p"), NODES[2]);
    assert!(contract.pending_requests(None, None).is_empty());
}

// ---------------------------------------------------------------- views

#[test]
fn views_describe_the_contract() {
    let contract = running();
    assert_eq!(contract.latest_key_version(), DomainId(0));
    assert_eq!(contract.version(), env!("CARGO_PKG_VERSION"));
    assert_eq!(contract.experimental_signature_deposit(), U128(1));
    assert_eq!(contract.config(), &Config::default());
    let json = serde_json::to_value(contract.state()).unwrap();
    assert_eq!(json["Running"]["threshold"], 2);
    assert_eq!(
        json["Running"]["participants"]["participants"]["node1.near"]["id"],
        1
    );
    assert_eq!(
        json["Running"]["domains"][0],
        json!({"id": 0, "scheme": "Secp256k1", "public_key": String::from(&root_public_key()), "attempt": 0})
    );
    assert_eq!(
        serde_json::to_value(contract.latest_key_version()).unwrap(),
        json!(0)
    );

    // derived_public_key agrees with the test network's derived secret.
    let derived = contract.derived_public_key("ethereum-1".into(), Some(account(ALICE)), None);
    let secret = root_secret() + Tweak::derive(ALICE, "ethereum-1").unwrap().as_scalar();
    assert_eq!(derived, secp256k1_key(&secret));
    assert_eq!(
        contract.derived_public_key("ethereum-1".into(), Some(account(ALICE)), Some(DomainId(0))),
        derived
    );
    as_caller(ALICE, 0);
    assert_eq!(
        contract.derived_public_key("ethereum-1".into(), None, None),
        derived
    );
    assert_refused(
        Error::UnknownDomain {
            domain: DomainId(1),
        },
        || contract.public_key(Some(DomainId(1))),
    );
    assert_refused(
        Error::UnknownDomain {
            domain: DomainId(1),
        },
        || contract.derived_public_key("p".into(), None, Some(DomainId(1))),
    );
}

#[test]
fn ed25519_views_derive_as_the_primitives_and_the_test_network_do() {
    let contract = running_both();
    let root = contract.public_key(Some(DomainId(1)));
    assert_eq!(root, ed_root_public_key());
    assert!(String::from(&root).starts_with("ed25519:"));
    assert!(String::from(&contract.public_key(None)).starts_with("secp256k1:"));

    let derived =
        contract.derived_public_key("solana-1".into(), Some(account(ALICE)), Some(DomainId(1)));
    let parsed = Ed25519PublicKey::parse(&String::from(&ed_root_public_key())).unwrap();
    let expected = parsed.derive_for(ALICE, "solana-1");
    assert_eq!(&derived.as_bytes()[1..], expected.as_bytes());
    assert_eq!(String::from(&derived), expected.to_near_string());
    let secret = ed_root_secret() + Ed25519Tweak::derive(ALICE, "solana-1").as_scalar();
    assert_eq!(derived, ed25519_key(&secret));
    assert_ne!(
        derived,
        contract.derived_public_key("solana-2".into(), Some(account(ALICE)), Some(DomainId(1)))
    );
    assert_eq!(contract.latest_key_version(), DomainId(0));
}

#[test]
fn latest_key_version_is_the_newest_secp256k1_domain() {
    as_caller(CONTRACT, 0);
    let contract = MpcContract::init_running(
        0,
        candidates(&NODES),
        2,
        vec![
            domain_key(secp256k1_domain(0), root_public_key(), 0),
            domain_key(ed25519_domain(1), ed_root_public_key(), 0),
            domain_key(secp256k1_domain(2), other_public_key(), 0),
            domain_key(ed25519_domain(3), ed_other_public_key(), 0),
        ],
        None,
    );
    assert_eq!(contract.latest_key_version(), DomainId(2));
    assert_eq!(contract.public_key(Some(DomainId(2))), other_public_key());
}

// ---------------------------------------------------------------- sign

#[test]
fn sign_accepts_the_three_argument_shapes_with_one_answer() {
    let mut contract = running();
    let hex = "11".repeat(32);
    let bytes = [0x11u8; 32];
    // The shapes as they arrive in JSON (DESIGN §4).
    let current: SignRequestArgs = serde_json::from_value(
        json!({"payload_v2": {"Ecdsa": hex}, "path": "ethereum-1", "domain_id": 0}),
    )
    .unwrap();
    let legacy: SignRequestArgs =
        serde_json::from_value(json!({"payload": bytes, "path": "ethereum-1", "key_version": 0}))
            .unwrap();
    let legacy_hex: SignRequestArgs =
        serde_json::from_value(json!({"payload": hex, "path": "ethereum-1"})).unwrap();
    let seed_payload: EcdsaPayload = serde_json::from_value(json!(bytes)).unwrap();
    let id = request_id(ALICE, &current);
    assert_eq!(id, request_id(ALICE, &legacy));
    assert_eq!(id, request_id(ALICE, &legacy_hex));

    as_caller(ALICE, 1);
    contract.sign(Some(current), None, None, None);
    assert_eq!(event_names(), vec!["signature_requested"]);
    let event = &events()[0];
    assert_eq!(event["standard"], "chainsig");
    assert_eq!(event["version"], "1.0.0");
    assert_eq!(event["data"]["request_id"], id.to_string());
    assert_eq!(event["data"]["predecessor"], ALICE);
    assert_eq!(event["data"]["domain_id"], 0);
    assert_eq!(event["data"]["path"], "ethereum-1");
    assert_eq!(event["data"]["duplicate"], false);

    contract.sign(Some(legacy), None, None, None);
    contract.sign(Some(legacy_hex), None, None, None);
    // The seed's top-level shape, with and without the legacy key_version.
    contract.sign(None, Some(seed_payload), Some("ethereum-1".into()), None);
    contract.sign(None, Some(seed_payload), Some("ethereum-1".into()), Some(0));
    let all = events();
    assert_eq!(all.len(), 5);
    for later in &all[1..] {
        assert_eq!(later["data"]["request_id"], id.to_string());
        assert_eq!(later["data"]["duplicate"], true, "one request, one answer");
    }
    let pending = contract.pending_requests(None, None);
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].waiting, 5);

    // One response answers every call, whatever shape it used.
    let response = ecdsa_signature(ALICE, "ethereum-1", &seed_payload, 99);
    as_caller(NODES[0], 0);
    contract.respond(id, response.clone());
    assert_eq!(find_event("signature_responded")["data"]["delivered"], 5);
    as_caller(CONTRACT, 0);
    for ticket in tickets(&contract, &id) {
        assert_eq!(
            contract.resolve(id, ticket.id, None),
            Resolution::Answer(answer_json(&response))
        );
    }
    assert!(contract.pending.get(&id).is_none());
}

#[test]
fn pending_requests_show_what_nodes_need() {
    let mut contract = running();
    as_caller(ALICE, 1);
    contract.sign(
        None,
        Some(ecdsa_payload(1)),
        Some("ethereum-1".into()),
        None,
    );
    contract.sign(Some(ecdsa_request(2, "bitcoin-1")), None, None, None);
    let pending = contract.pending_requests(None, None);
    assert_eq!(pending.len(), 2);
    let first = &pending[0];
    assert_eq!(first.predecessor, ALICE);
    assert_eq!(first.payload, Payload::Ecdsa(ecdsa_payload(1)));
    assert_eq!(first.path, "ethereum-1");
    assert_eq!(first.domain_id, DomainId(0));
    assert_eq!(first.block_height, START);
    assert_eq!(first.entropy.0, [42; 32]);
    assert_eq!(first.waiting, 1);
    assert_eq!(
        first.request_id,
        request_id(ALICE, &ecdsa_request(1, "ethereum-1"))
    );
    assert!(first.id_matches());
    assert_eq!(
        contract.pending_request(first.request_id).as_ref(),
        Some(first)
    );

    // Pagination.
    assert_eq!(
        contract.pending_requests(Some(1), Some(10)),
        vec![pending[1].clone()]
    );
    assert_eq!(
        contract.pending_requests(Some(0), Some(1)),
        vec![pending[0].clone()]
    );
    assert!(contract.pending_requests(Some(2), None).is_empty());
}

#[test]
fn sign_with_an_eddsa_payload_on_the_ed25519_domain() {
    let mut contract = running_both();
    let args = eddsa_request(5, "solana-1");
    let id = sign_as(&mut contract, ALICE, &args);
    assert_eq!(find_event("signature_requested")["data"]["domain_id"], 1);
    let pending = contract.pending_request(id).unwrap();
    assert_eq!(pending.domain_id, DomainId(1));
    assert_eq!(
        pending.payload,
        Payload::Eddsa(EddsaPayload::new(message(5, 100)).unwrap())
    );
    assert!(pending.id_matches());
    let json = serde_json::to_value(&pending).unwrap();
    assert_eq!(json["payload"]["Eddsa"], hex::encode(message(5, 100)));

    // The same bytes as an ECDSA payload on domain 0 are another request.
    let ecdsa = SignRequestArgs {
        payload_v2: Some(Payload::Ecdsa(
            EcdsaPayload::new(message(5, 32).try_into().unwrap()).unwrap(),
        )),
        path: "solana-1".into(),
        domain_id: Some(DomainId(0)),
        ..Default::default()
    };
    let short = SignRequestArgs {
        payload_v2: Some(Payload::Eddsa(EddsaPayload::new(message(5, 32)).unwrap())),
        path: "solana-1".into(),
        domain_id: Some(DomainId(1)),
        ..Default::default()
    };
    assert_ne!(request_id(ALICE, &ecdsa), request_id(ALICE, &short));
    sign_as(&mut contract, ALICE, &ecdsa);
    sign_as(&mut contract, ALICE, &short);
    assert_eq!(contract.pending_requests(None, None).len(), 3);
}

#[test]
fn sign_refusals_have_stable_texts() {
    let mut contract = running();
    let request = ecdsa_request(1, "ethereum-1");
    as_caller(ALICE, 1);
    assert_refused(Error::SignArgsShape, || {
        contract.sign(Some(request.clone()), Some(ecdsa_payload(1)), None, None)
    });
    assert_refused(Error::SignArgsShape, || {
        contract.sign(Some(request.clone()), None, Some("p".into()), None)
    });
    assert_refused(Error::SignArgsShape, || {
        contract.sign(Some(request.clone()), None, None, Some(0))
    });
    assert_refused(Error::SignArgsMissing, || {
        contract.sign(None, Some(ecdsa_payload(1)), None, None)
    });
    assert_refused(Error::SignArgsMissing, || {
        contract.sign(None, None, Some("p".into()), None)
    });
    assert_refused(Error::SignArgsMissing, || {
        contract.sign(None, None, None, None)
    });

    // Both names of a field, or no payload at all.
    let both_payloads = SignRequestArgs {
        payload: Some(ecdsa_payload(1)),
        ..request.clone()
    };
    assert_refused(Error::SignArgs(SignArgsError::BothPayloads), || {
        contract.sign(Some(both_payloads), None, None, None)
    });
    let both_ids = SignRequestArgs {
        key_version: Some(0),
        ..request.clone()
    };
    assert_refused(Error::SignArgs(SignArgsError::BothDomainIds), || {
        contract.sign(Some(both_ids), None, None, None)
    });
    let no_payload = SignRequestArgs {
        path: "p".into(),
        domain_id: Some(DomainId(0)),
        ..Default::default()
    };
    assert_refused(Error::SignArgs(SignArgsError::NoPayload), || {
        contract.sign(Some(no_payload), None, None, None)
    });

    // Unknown domains, in every shape.
    let unknown = || Error::UnknownDomain {
        domain: DomainId(1),
    };
    assert_refused(unknown(), || {
        let args = SignRequestArgs {
            domain_id: Some(DomainId(1)),
            ..request.clone()
        };
        contract.sign(Some(args), None, None, None)
    });
    assert_refused(unknown(), || {
        let args = SignRequestArgs {
            payload: Some(ecdsa_payload(1)),
            path: "p".into(),
            key_version: Some(1),
            ..Default::default()
        };
        contract.sign(Some(args), None, None, None)
    });
    assert_refused(unknown(), || {
        contract.sign(None, Some(ecdsa_payload(1)), Some("p".into()), Some(1))
    });

    let long = "x".repeat(1025);
    assert_refused(
        Error::PathTooLong {
            len: 1025,
            max: 1024,
        },
        || contract.sign(None, Some(ecdsa_payload(1)), Some(long), None),
    );

    as_caller(ALICE, 0);
    assert_refused(
        Error::Deposit {
            required: NearToken::from_yoctonear(1),
            got: NearToken::from_yoctonear(0),
        },
        || contract.sign(Some(request.clone()), None, None, None),
    );

    testing_env!(context(ALICE, 1).prepaid_gas(Gas::from_tgas(19)).build());
    assert_refused(
        Error::Gas {
            required: Gas::from_tgas(20),
            got: Gas::from_tgas(19),
        },
        || contract.sign(Some(request.clone()), None, None, None),
    );
    assert!(
        contract.pending_requests(None, None).is_empty(),
        "refused calls store nothing"
    );
}

#[test]
fn the_payload_kind_must_match_the_domain_scheme() {
    let mut contract = running_both();
    as_caller(ALICE, 1);
    let ecdsa_on_ed25519 = || Error::PayloadScheme {
        domain: DomainId(1),
        scheme: SignatureScheme::Ed25519,
        got: "Ecdsa",
    };
    assert_refused(ecdsa_on_ed25519(), || {
        let args = SignRequestArgs {
            domain_id: Some(DomainId(1)),
            ..ecdsa_request(1, "p")
        };
        contract.sign(Some(args), None, None, None)
    });
    // The legacy `payload` is always ECDSA.
    assert_refused(ecdsa_on_ed25519(), || {
        let args = SignRequestArgs {
            payload: Some(ecdsa_payload(1)),
            path: "p".into(),
            key_version: Some(1),
            ..Default::default()
        };
        contract.sign(Some(args), None, None, None)
    });
    assert_refused(ecdsa_on_ed25519(), || {
        contract.sign(None, Some(ecdsa_payload(1)), Some("p".into()), Some(1))
    });
    assert_refused(
        Error::PayloadScheme {
            domain: DomainId(0),
            scheme: SignatureScheme::Secp256k1,
            got: "Eddsa",
        },
        || {
            let args = SignRequestArgs {
                domain_id: Some(DomainId(0)),
                ..eddsa_request(1, "p")
            };
            contract.sign(Some(args), None, None, None)
        },
    );
    // `domain_id` defaults to 0.
    assert_refused(
        Error::PayloadScheme {
            domain: DomainId(0),
            scheme: SignatureScheme::Secp256k1,
            got: "Eddsa",
        },
        || {
            let args = SignRequestArgs {
                domain_id: None,
                ..eddsa_request(1, "p")
            };
            contract.sign(Some(args), None, None, None)
        },
    );
    assert!(contract.pending_requests(None, None).is_empty());
}

#[test]
fn eddsa_payloads_are_32_to_1232_bytes() {
    // `sign`'s JSON arguments are read before the method runs: a payload of the
    // wrong length is a deserialisation error with the primitives' text.
    let read = |len: usize| {
        let args = json!({"request": {
            "payload_v2": {"Eddsa": "ab".repeat(len)},
            "path": "solana-1",
            "domain_id": 1
        }});
        serde_json::from_value::<SignRequestArgs>(args["request"].clone())
    };
    for bad in [31, 1233] {
        let text = read(bad).unwrap_err().to_string();
        assert!(
            text.contains(&EddsaPayloadError { len: bad }.to_string()),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "an Eddsa payload must be 32 to 1232 bytes, got {bad}"
            )),
            "{text}"
        );
        assert_eq!(
            EddsaPayload::new(vec![0xab; bad]),
            Err(EddsaPayloadError { len: bad })
        );
    }

    let mut contract = running_both();
    for good in [32, 1232] {
        let args = read(good).unwrap();
        let id = sign_as(&mut contract, ALICE, &args);
        assert_eq!(
            contract
                .pending_request(id)
                .unwrap()
                .payload
                .as_bytes()
                .len(),
            good
        );
    }
}

#[test]
fn excess_deposit_is_refunded_and_one_yocto_kept() {
    let mut contract = running();
    as_caller(ALICE, 1_000);
    contract.sign(Some(ecdsa_request(1, "p")), None, None, None);
    assert_eq!(transfers_to(ALICE), vec![NearToken::from_yoctonear(999)]);
    let id = request_id(ALICE, &ecdsa_request(1, "p"));
    assert_eq!(
        tickets(&contract, &id)[0].deposit,
        NearToken::from_yoctonear(1)
    );

    as_caller(ALICE, 1);
    contract.sign(Some(ecdsa_request(2, "p")), None, None, None);
    assert!(
        transfers_to(ALICE).is_empty(),
        "nothing to refund for an exact deposit"
    );
}

#[test]
fn identical_requests_share_one_entry_up_to_the_bound() {
    let mut contract = running_with(Config {
        max_duplicate_requests: 3,
        ..Config::default()
    });
    let request = ecdsa_request(7, "ethereum-1");
    let id = request_id(ALICE, &request);
    as_caller(ALICE, 1);
    contract.sign(Some(request.clone()), None, None, None);
    contract.sign(Some(request.clone()), None, None, None);
    assert_eq!(events()[1]["data"]["duplicate"], true);
    contract.sign(Some(request.clone()), None, None, None);
    assert_eq!(contract.pending_requests(None, None).len(), 1);
    assert_eq!(contract.pending_request(id).unwrap().waiting, 3);
    let ids: Vec<u64> = tickets(&contract, &id).iter().map(|t| t.id).collect();
    assert_eq!(ids, vec![0, 1, 2]);
    let data_ids: BTreeSet<CryptoHash> =
        tickets(&contract, &id).iter().map(|t| t.data_id).collect();
    assert_eq!(data_ids.len(), 3, "each call has its own yield");
    as_caller(ALICE, 1);
    assert_refused(Error::TooManyDuplicates { max: 3 }, || {
        contract.sign(Some(request.clone()), None, None, None)
    });
    assert_eq!(
        contract.pending_count_of(&account(ALICE)),
        1,
        "duplicates count once"
    );

    // The same payload and path from another account is another request.
    sign_as(&mut contract, BOB, &request);
    assert_eq!(contract.pending_requests(None, None).len(), 2);
}

#[test]
fn a_full_queue_says_busy() {
    let mut contract = running_with(Config {
        max_pending_requests: 2,
        ..Config::default()
    });
    sign_as(&mut contract, ALICE, &ecdsa_request(1, "p"));
    sign_as(&mut contract, BOB, &ecdsa_request(2, "p"));
    as_caller(ALICE, 1);
    assert_refused(Error::Busy { pending: 2 }, || {
        contract.sign(Some(ecdsa_request(3, "p")), None, None, None)
    });
    // A duplicate of a waiting request still joins it.
    contract.sign(Some(ecdsa_request(1, "p")), None, None, None);
    assert_eq!(events()[0]["data"]["duplicate"], true);
}

#[test]
fn one_caller_cannot_take_the_whole_queue() {
    let mut contract = running_with(Config {
        max_pending_per_caller: 2,
        ..Config::default()
    });
    let first = ecdsa_request(1, "p");
    sign_as(&mut contract, ALICE, &first);
    sign_as(&mut contract, ALICE, &ecdsa_request(2, "p"));
    assert_eq!(contract.pending_count_of(&account(ALICE)), 2);
    as_caller(ALICE, 1);
    assert_refused(Error::CallerBusy { max: 2 }, || {
        contract.sign(Some(ecdsa_request(3, "p")), None, None, None)
    });
    // A duplicate of one of its own requests is no new work.
    contract.sign(Some(first.clone()), None, None, None);
    assert_eq!(events()[0]["data"]["duplicate"], true);
    // Another account still gets served.
    sign_as(&mut contract, BOB, &ecdsa_request(3, "p"));
    assert_eq!(contract.pending_count_of(&account(BOB)), 1);
    assert_eq!(contract.pending_requests(None, None).len(), 3);

    // Once a request is done, its caller may ask again.
    let id = request_id(ALICE, &first);
    let response = network_signature(ALICE, &first, 17);
    as_caller(NODES[0], 0);
    contract.respond(id, response.clone());
    assert_eq!(
        contract.pending_count_of(&account(ALICE)),
        2,
        "an answer waiting for late callbacks still counts"
    );
    as_caller(CONTRACT, 0);
    for ticket in tickets(&contract, &id) {
        contract.resolve(id, ticket.id, None);
    }
    assert_eq!(contract.pending_count_of(&account(ALICE)), 1);
    sign_as(&mut contract, ALICE, &ecdsa_request(3, "p"));
    assert_eq!(contract.pending_count_of(&account(ALICE)), 2);

    // A timed-out request frees its place too.
    let second = request_id(ALICE, &ecdsa_request(2, "p"));
    testing_env!(context(CONTRACT, 0).prepaid_gas(Gas::from_tgas(11)).build());
    let ticket = tickets(&contract, &second)[0].id;
    assert!(matches!(
        contract.resolve(second, ticket, None),
        Resolution::TimedOut { .. }
    ));
    assert_eq!(contract.pending_count_of(&account(ALICE)), 1);
}

// ---------------------------------------------------------------- respond

#[test]
fn respond_resumes_every_waiting_call_and_clears_the_request() {
    let mut contract = running();
    // A participant signs and responds within one mocked block, so the mock still
    // knows the yields and `promise_yield_resume` reports them resumed.
    let who = NODES[2];
    let request = ecdsa_request(3, "ethereum-1");
    as_caller(who, 1);
    contract.sign(Some(request.clone()), None, None, None);
    contract.sign(Some(request.clone()), None, None, None);
    let id = request_id(who, &request);
    let response = network_signature(who, &request, 1001);
    contract.respond(id, response.clone());
    assert!(contract.pending.get(&id).is_none());
    assert_eq!(contract.pending_count_of(&account(who)), 0);
    let responded = find_event("signature_responded");
    // Both yields were resumed (a ticket leaves only when its resume succeeds), so
    // no call is left waiting for a late callback.
    assert_eq!(responded["data"]["delivered"], 0);
    assert_eq!(responded["data"]["responder"], who);
    assert_eq!(responded["data"]["request_id"], id.to_string());
}

#[test]
fn respond_refusals_leave_the_request_waiting() {
    let mut contract = running();
    let request = ecdsa_request(4, "ethereum-1");
    let id = sign_as(&mut contract, ALICE, &request);
    let good = network_signature(ALICE, &request, 77);
    let SignatureResponse::Secp256k1(good_ecdsa) = good.clone() else {
        panic!("an ECDSA answer")
    };

    as_caller(ALICE, 0);
    assert_refused(
        Error::NotAParticipant {
            account: account(ALICE),
        },
        || contract.respond(id, good.clone()),
    );

    as_caller(NODES[0], 0);
    // Signed for another path: verifies, but not for this request's derived key.
    let wrong_key = network_signature(ALICE, &ecdsa_request(4, "ethereum-2"), 77);
    assert_refused(Error::BadSignature(ResponseError::DoesNotVerify), || {
        contract.respond(id, wrong_key)
    });
    // Right key, other payload.
    let wrong_payload = network_signature(ALICE, &ecdsa_request(5, "ethereum-1"), 77);
    assert_refused(Error::BadSignature(ResponseError::DoesNotVerify), || {
        contract.respond(id, wrong_payload)
    });
    let mut flipped = good_ecdsa.clone();
    flipped.recovery_id ^= 1;
    assert_refused(Error::BadSignature(ResponseError::DoesNotVerify), || {
        contract.respond(id, flipped.into())
    });
    let mut high_s = good_ecdsa.clone();
    high_s.s = SerializableScalar::from_scalar(&-good_ecdsa.s.to_scalar().unwrap());
    assert_refused(Error::BadSignature(ResponseError::HighS), || {
        contract.respond(id, high_s.into())
    });
    let mut bad_id = good_ecdsa.clone();
    bad_id.recovery_id = 5;
    assert_refused(Error::BadSignature(ResponseError::BadRecoveryId), || {
        contract.respond(id, bad_id.into())
    });
    // An answer of the other scheme.
    let ed25519 = ed25519_signature(ALICE, "ethereum-1", &[4; 32], 77);
    assert_refused(
        Error::ResponseScheme {
            domain: DomainId(0),
            scheme: SignatureScheme::Secp256k1,
            got: SignatureScheme::Ed25519,
        },
        || contract.respond(id, ed25519),
    );
    let unknown = request_id(ALICE, &ecdsa_request(9, "ethereum-1"));
    assert_refused(Error::UnknownRequest, || {
        contract.respond(unknown, good.clone())
    });

    assert_eq!(
        contract.pending_request(id).unwrap().waiting,
        1,
        "still waiting after refusals"
    );
    contract.respond(id, good);
    assert!(contract.pending_request(id).is_none());
}

#[test]
fn ed25519_answers_are_verified_against_the_derived_key() {
    let mut contract = running_both();
    let args = eddsa_request(21, "solana-1");
    let id = sign_as(&mut contract, ALICE, &args);
    let msg = message(21, 100);
    let good = ed25519_signature(ALICE, "solana-1", &msg, 5);
    let SignatureResponse::Ed25519 { signature } = good else {
        panic!("an Ed25519 answer")
    };

    as_caller(NEWCOMER, 0);
    assert_refused(
        Error::NotAParticipant {
            account: account(NEWCOMER),
        },
        || contract.respond(id, good.clone()),
    );
    as_caller(NODES[1], 0);
    let does_not_verify = || Error::BadSignature(ResponseError::DoesNotVerify);
    // Another message.
    assert_refused(does_not_verify(), || {
        contract.respond(
            id,
            ed25519_signature(ALICE, "solana-1", &message(22, 100), 5),
        )
    });
    // The key of another path, and of another account.
    assert_refused(does_not_verify(), || {
        contract.respond(id, ed25519_signature(ALICE, "solana-2", &msg, 5))
    });
    assert_refused(does_not_verify(), || {
        contract.respond(id, ed25519_signature(BOB, "solana-1", &msg, 5))
    });
    // A flipped byte in R, and in S.
    for index in [3, 40] {
        let mut flipped = signature;
        flipped.0[index] ^= 1;
        assert_refused(does_not_verify(), || {
            contract.respond(id, SignatureResponse::Ed25519 { signature: flipped })
        });
    }
    // An answer of the other scheme.
    assert_refused(
        Error::ResponseScheme {
            domain: DomainId(1),
            scheme: SignatureScheme::Ed25519,
            got: SignatureScheme::Secp256k1,
        },
        || {
            contract.respond(
                id,
                ecdsa_signature(ALICE, "solana-1", &ecdsa_payload(21), 5),
            )
        },
    );
    assert_eq!(contract.pending_request(id).unwrap().waiting, 1);

    // The right answer is accepted; this later block no longer knows the yield, so
    // the answer waits for the callback, which returns it.
    contract.respond(id, good.clone());
    assert_eq!(find_event("signature_responded")["data"]["delivered"], 1);
    assert!(contract.pending_request(id).is_none());
    as_caller(NODES[0], 0);
    assert_refused(Error::AlreadyAnswered, || {
        contract.respond(id, good.clone())
    });
    as_caller(CONTRACT, 0);
    assert_eq!(
        contract.resolve(id, 0, None),
        Resolution::Answer(answer_json(&good))
    );
    assert!(contract.pending.get(&id).is_none());

    // Signed and answered in one block: the yield is resumed with the answer.
    let who = NODES[2];
    let args = eddsa_request(23, "solana-9");
    as_caller(who, 1);
    contract.sign(Some(args.clone()), None, None, None);
    let id = request_id(who, &args);
    let answer = network_signature(who, &args, 8);
    contract.respond(id, answer.clone());
    assert_eq!(find_event("signature_responded")["data"]["delivered"], 0);
    assert!(contract.pending.get(&id).is_none());
    as_caller(CONTRACT, 0);
    assert_eq!(
        contract.resolve(id, 1, Some(answer_json(&answer))),
        Resolution::Answer(answer_json(&answer))
    );
    resumed_with(&answer);
    // The resumed callback passes the answer on without any state: none is stored.
    assert!(env::storage_read(b"STATE").is_none());
    MpcContract::resolve_signature(id, 1);
    assert!(
        get_created_receipts().is_empty(),
        "an answer needs no follow-up"
    );
}

#[test]
fn an_answer_after_a_timeout_reaches_the_late_callback() {
    let mut contract = running();
    let request = ecdsa_request(6, "ethereum-1");
    let id = sign_as(&mut contract, ALICE, &request);
    let ticket = tickets(&contract, &id)[0].id;

    // A new mocked block no longer knows the yield: resume reports it gone, as the
    // runtime does once the yield has timed out.
    as_caller(NODES[1], 0);
    let response = network_signature(ALICE, &request, 4242);
    contract.respond(id, response.clone());
    assert_eq!(events()[0]["data"]["delivered"], 1);
    assert!(
        contract.pending_request(id).is_none(),
        "an answered request is no longer work"
    );
    as_caller(NODES[0], 0);
    assert_refused(Error::AlreadyAnswered, || {
        contract.respond(id, response.clone())
    });

    // A new identical request gets the stored answer at once.
    as_caller(ALICE, 5);
    contract.sign(Some(request.clone()), None, None, None);
    assert_eq!(transfers_to(ALICE), vec![NearToken::from_yoctonear(4)]);
    assert!(events().is_empty(), "no new request");

    as_caller(CONTRACT, 0);
    assert_eq!(
        contract.resolve(id, ticket, None),
        Resolution::Answer(answer_json(&response))
    );
    assert!(
        contract.pending.get(&id).is_none(),
        "the last ticket cleans up"
    );
}

// ---------------------------------------------------------------- the yield callback

#[test]
fn callback_returns_a_resumed_answer() {
    let mut contract = running();
    let request = ecdsa_request(8, "p");
    let id = sign_as(&mut contract, ALICE, &request);
    let response = network_signature(ALICE, &request, 5);
    as_caller(CONTRACT, 0);
    assert_eq!(
        contract.resolve(id, 0, Some(answer_json(&response))),
        Resolution::Answer(answer_json(&response))
    );
    resumed_with(&response);
    MpcContract::resolve_signature(id, 0);
    assert!(
        get_created_receipts().is_empty(),
        "an answer needs no follow-up"
    );
}

#[test]
fn a_timeout_waits_again_while_gas_lasts_then_refunds_and_fails() {
    let mut contract = running();
    let request = ecdsa_request(9, "p");
    let id = sign_as(&mut contract, ALICE, &request);
    let first_data_id = tickets(&contract, &id)[0].data_id;

    // Plenty of gas: wait again with a fresh yield. (Same mocked block as `sign`, so
    // the mock hands out a new data id.)
    assert_eq!(
        contract.resolve(id, 0, None),
        Resolution::WaitAgain { round: 2 }
    );
    assert_eq!(event_names().last().unwrap(), "signature_wait_extended");
    let ticket = &tickets(&contract, &id)[0];
    assert_eq!(ticket.round, 2);
    assert_ne!(ticket.data_id, first_data_id);
    assert!(
        contract.pending_request(id).is_some(),
        "nodes still see the request"
    );

    // Too little gas for another wait: refund the deposit and fail clearly.
    testing_env!(context(CONTRACT, 0).prepaid_gas(Gas::from_tgas(11)).build());
    assert_eq!(
        contract.resolve(id, 0, None),
        Resolution::TimedOut {
            refunded: NearToken::from_yoctonear(1)
        }
    );
    assert_eq!(transfers_to(ALICE), vec![NearToken::from_yoctonear(1)]);
    assert_eq!(event_names(), vec!["signature_timed_out"]);
    assert!(contract.pending.get(&id).is_none());
    assert_eq!(contract.pending_count_of(&account(ALICE)), 0);
    let text = abort_text(|| contract.fail_timed_out(id));
    assert!(
        text.contains(&format!("signature request {id} timed out")),
        "{text}"
    );
    assert!(text.contains("deposit was refunded"), "{text}");
}

#[test]
fn the_public_callback_fails_through_a_follow_up_call_on_timeout() {
    let mut contract = running();
    let id = sign_as(&mut contract, ALICE, &ecdsa_request(10, "p"));
    testing_env!(
        context(CONTRACT, 0).prepaid_gas(Gas::from_tgas(11)).build(),
        near_sdk::test_vm_config(),
        near_sdk::RuntimeFeesConfig::test(),
        Default::default(),
        vec![PromiseResult::Failed],
    );
    // A timeout loads the contract from storage.
    contract.pending.flush();
    contract.pending_by_caller.flush();
    env::state_write(&contract);
    MpcContract::resolve_signature(id, 0);
    let stored: MpcContract = env::state_read().unwrap();
    assert!(
        stored.pending_request(id).is_none(),
        "the timed-out request is gone from storage"
    );
    let calls: Vec<String> = get_created_receipts()
        .into_iter()
        .flat_map(|r| r.actions)
        .filter_map(|a| match a {
            MockAction::FunctionCallWeight { method_name, .. } => {
                Some(String::from_utf8(method_name).unwrap())
            }
            _ => None,
        })
        .collect();
    assert_eq!(calls, vec!["fail_timed_out"]);
}

// ---------------------------------------------------------------- domains

#[test]
fn vote_add_domains_generates_the_new_key_while_domain_0_signs() {
    let mut contract = running();
    as_caller(ALICE, 0);
    assert_refused(
        Error::NotAParticipant {
            account: account(ALICE),
        },
        || contract.vote_add_domains(vec![ed25519_domain(1)]),
    );
    as_caller(NODES[0], 0);
    assert_refused(Error::NoDomains, || contract.vote_add_domains(vec![]));
    assert_refused(
        Error::DomainIdOrder {
            expected: DomainId(1),
            got: DomainId(2),
        },
        || contract.vote_add_domains(vec![ed25519_domain(2)]),
    );
    assert_refused(
        Error::DomainIdOrder {
            expected: DomainId(1),
            got: DomainId(0),
        },
        || contract.vote_add_domains(vec![ed25519_domain(0)]),
    );
    assert_refused(
        Error::DomainIdOrder {
            expected: DomainId(2),
            got: DomainId(3),
        },
        || contract.vote_add_domains(vec![ed25519_domain(1), secp256k1_domain(3)]),
    );

    assert!(!contract.vote_add_domains(vec![ed25519_domain(1)]));
    assert_eq!(event_names(), vec!["voted"]);
    assert_eq!(events()[0]["data"]["kind"], "add_domains");
    assert_eq!(events()[0]["data"]["subject"], "1");
    as_caller(NODES[1], 0);
    assert!(
        !contract.vote_add_domains(vec![ed25519_domain(1), secp256k1_domain(2)]),
        "votes for different lists do not add up"
    );
    as_caller(NODES[2], 0);
    assert!(contract.vote_add_domains(vec![ed25519_domain(1)]));
    assert_eq!(event_names(), vec!["voted", "state_changed"]);
    let state = initializing_state(&contract);
    assert_eq!(state.generating, vec![ed25519_domain(1)]);
    assert_eq!(state.key_event.id(), event_id(0, Some(1), 1));
    assert_eq!(state.running.next_domain_id, DomainId(2));
    assert!(state.running.add_domains_votes.is_empty());

    // Domain 0 keeps signing; domain 1 has no key yet.
    sign_and_answer(&mut contract, ALICE, &ecdsa_request(1, "p"), NODES[0]);
    as_caller(ALICE, 1);
    let without_key = || Error::DomainWithoutKey {
        domain: DomainId(1),
    };
    assert_refused(without_key(), || {
        contract.sign(Some(eddsa_request(1, "p")), None, None, None)
    });
    assert_refused(without_key(), || contract.public_key(Some(DomainId(1))));
    assert_refused(
        Error::UnknownDomain {
            domain: DomainId(2),
        },
        || {
            contract.sign(
                Some(SignRequestArgs {
                    domain_id: Some(DomainId(2)),
                    ..eddsa_request(1, "p")
                }),
                None,
                None,
                None,
            )
        },
    );

    as_caller(NODES[0], 0);
    let attempt = event_id(0, Some(1), 1);
    assert_refused(
        Error::WrongState {
            expected: "Running",
            actual: "Initializing",
        },
        || contract.vote_add_domains(vec![ed25519_domain(2)]),
    );
    assert_refused(
        Error::KeyNotOfScheme {
            scheme: SignatureScheme::Ed25519,
        },
        || contract.vote_pk(attempt, root_public_key()),
    );
    let mut off_curve = [0u8; 32];
    off_curve[0] = 2;
    assert_refused(
        Error::KeyNotOfScheme {
            scheme: SignatureScheme::Ed25519,
        },
        || {
            let key = PublicKey::from_parts(CurveType::ED25519, off_curve.to_vec()).unwrap();
            contract.vote_pk(attempt, key)
        },
    );
    assert!(!vote_keygen(
        &mut contract,
        &NODES[..2],
        &ed_root_public_key()
    ));
    assert!(vote_keygen(
        &mut contract,
        &NODES[2..],
        &ed_root_public_key()
    ));
    let state = running_state(&contract);
    assert_eq!(
        state.domains,
        vec![
            domain_key(secp256k1_domain(0), root_public_key(), 0),
            domain_key(ed25519_domain(1), ed_root_public_key(), 1),
        ]
    );
    sign_and_answer(&mut contract, ALICE, &eddsa_request(1, "p"), NODES[1]);
}

#[test]
fn cancelled_domains_are_dropped_and_their_ids_never_reused() {
    let mut contract = running();
    for node in &NODES[..2] {
        as_caller(node, 0);
        contract.vote_add_domains(vec![ed25519_domain(1)]);
    }
    assert_eq!(key_event_id(&contract), event_id(0, Some(1), 1));
    // The attempt times out once before the cancel.
    at_block(NODES[0], START + TIMEOUT);
    assert_eq!(key_event_id(&contract), event_id(0, Some(1), 2));
    assert!(!contract.vote_cancel_key_event());
    assert_eq!(events()[0]["data"]["kind"], "cancel");
    at_block(NODES[2], START + TIMEOUT);
    assert!(contract.vote_cancel_key_event());
    assert_eq!(event_names(), vec!["voted", "state_changed"]);
    let state = running_state(&contract);
    assert_eq!(
        state.domains,
        vec![domain_key(secp256k1_domain(0), root_public_key(), 0)]
    );
    assert_eq!(state.next_domain_id, DomainId(2), "id 1 is spent");
    as_caller(ALICE, 1);
    assert_refused(
        Error::UnknownDomain {
            domain: DomainId(1),
        },
        || contract.sign(Some(eddsa_request(1, "p")), None, None, None),
    );

    as_caller(NODES[0], 0);
    assert_refused(
        Error::DomainIdOrder {
            expected: DomainId(2),
            got: DomainId(1),
        },
        || contract.vote_add_domains(vec![ed25519_domain(1)]),
    );
    for node in &NODES[..2] {
        as_caller(node, 0);
        contract.vote_add_domains(vec![ed25519_domain(2)]);
    }
    assert_eq!(
        key_event_id(&contract),
        event_id(0, Some(2), 3),
        "attempt ids continue past the cancelled event's last attempt"
    );
    assert!(vote_keygen(&mut contract, &NODES, &ed_root_public_key()));
    let state = running_state(&contract);
    assert_eq!(
        state
            .domains
            .iter()
            .map(DomainKey::config)
            .collect::<Vec<_>>(),
        vec![secp256k1_domain(0), ed25519_domain(2)]
    );
    assert_eq!(state.domains[1].attempt, 3);
}

// ---------------------------------------------------------------- resharing

#[test]
fn join_vote_join_and_reshare_keep_the_keys_and_serve_throughout() {
    let mut contract = running_both();
    as_caller(NEWCOMER, 0);
    let info = candidate(NEWCOMER, 3);
    contract.join(info.url.clone(), info.cipher_pk, info.sign_pk.clone());
    assert_eq!(event_names(), vec!["candidate_joined"]);
    as_caller(NODES[0], 0);
    assert_refused(
        Error::AlreadyParticipant {
            account: account(NODES[0]),
        },
        || contract.join("u".into(), [0; 32], candidate(NODES[0], 0).sign_pk),
    );
    as_caller("x.near", 0);
    assert_refused(
        Error::CandidateField {
            what: "url",
            max: 512,
        },
        || contract.join("u".repeat(513), [50; 32], candidate("x.near", 50).sign_pk),
    );
    as_caller(ALICE, 0);
    assert_refused(
        Error::NotAParticipant {
            account: account(ALICE),
        },
        || contract.vote_join(account(NEWCOMER)),
    );
    as_caller(NODES[0], 0);
    assert_refused(
        Error::NotACandidate {
            account: account(ALICE),
        },
        || contract.vote_join(account(ALICE)),
    );
    assert!(!contract.vote_join(account(NEWCOMER)));
    assert!(
        !contract.vote_join(account(NEWCOMER)),
        "a repeated vote counts once"
    );
    as_caller(NODES[1], 0);
    assert!(contract.vote_join(account(NEWCOMER)));
    let state = resharing_state(&contract);
    assert_eq!(state.previous.epoch, 0);
    let resharing = event_id(1, None, 2);
    assert_eq!(state.key_event.id(), resharing);
    assert_eq!(state.key_event.domain, None);
    assert_eq!(state.key_event.threshold, 2);
    assert_eq!(state.key_event.participants.len(), 4);
    assert_eq!(
        state.key_event.participants.participants[&account(NEWCOMER)].id,
        3
    );
    assert_eq!(contract.public_key(None), root_public_key());
    assert_eq!(contract.public_key(Some(DomainId(1))), ed_root_public_key());

    // Requests keep flowing during resharing, answered by the old participants.
    for request in [ecdsa_request(11, "p"), eddsa_request(11, "p")] {
        let id = sign_as(&mut contract, ALICE, &request);
        let response = network_signature(ALICE, &request, 31);
        as_caller(NEWCOMER, 0);
        assert_refused(
            Error::NotAParticipant {
                account: account(NEWCOMER),
            },
            || contract.respond(id, response.clone()),
        );
        as_caller(NODES[0], 0);
        contract.respond(id, response);
        assert!(contract.pending_request(id).is_none());
    }

    // Governance waits for resharing to finish.
    assert_refused(
        Error::WrongState {
            expected: "Running",
            actual: "Resharing",
        },
        || contract.vote_leave(account(NODES[2])),
    );
    as_caller(ALICE, 0);
    assert_refused(
        Error::NotInKeyEvent {
            account: account(ALICE),
        },
        || contract.vote_reshared(resharing),
    );
    as_caller(NEWCOMER, 0);
    let wrong_epoch = event_id(2, None, 2);
    assert_refused(
        Error::WrongKeyEvent {
            expected: resharing,
            got: wrong_epoch,
        },
        || contract.vote_reshared(wrong_epoch),
    );
    let keygen_id = event_id(1, Some(0), 2);
    assert_refused(
        Error::WrongKeyEvent {
            expected: resharing,
            got: keygen_id,
        },
        || contract.vote_reshared(keygen_id),
    );
    assert_refused(Error::AttemptOver { got: 1, current: 2 }, || {
        contract.vote_reshared(event_id(1, None, 1))
    });
    assert!(!contract.vote_reshared(resharing));
    assert_eq!(events()[0]["data"]["kind"], "reshared");
    assert!(
        !vote_resharing(&mut contract, &NODES[..2]),
        "three of four (beyond the threshold) are not enough"
    );
    assert!(vote_resharing(&mut contract, &NODES[2..]));
    let state = running_state(&contract);
    assert_eq!(state.epoch, 1);
    assert_eq!(state.participants.len(), 4);
    assert!(state.candidates.is_empty());
    assert_eq!(
        state.domains,
        vec![
            domain_key(secp256k1_domain(0), root_public_key(), 2),
            domain_key(ed25519_domain(1), ed_root_public_key(), 2),
        ],
        "the keys stay; every domain records the resharing attempt"
    );
    as_caller(NODES[0], 0);
    assert_refused(
        Error::WrongState {
            expected: "Resharing",
            actual: "Running",
        },
        || contract.vote_reshared(resharing),
    );

    // The newcomer now signs.
    sign_and_answer(&mut contract, ALICE, &ecdsa_request(12, "p"), NEWCOMER);
    sign_and_answer(&mut contract, ALICE, &eddsa_request(12, "p"), NEWCOMER);
}

#[test]
fn a_resharing_one_node_never_finishes_is_cancelled_back_to_the_old_set() {
    let mut contract = running_both();
    let before = running_state(&contract);
    start_join_resharing(&mut contract);
    let first = event_id(1, None, 2);
    assert_eq!(key_event_id(&contract), first);

    // Every old participant reports; the newcomer never does.
    assert!(!vote_resharing(&mut contract, &NODES));
    // The old set keeps signing both domains meanwhile.
    sign_and_answer(&mut contract, ALICE, &ecdsa_request(1, "p"), NODES[2]);
    sign_and_answer(&mut contract, ALICE, &eddsa_request(1, "p"), NODES[1]);

    // The attempt times out; the next one starts without the old votes.
    at_block(ALICE, START + TIMEOUT);
    let event = key_event(&contract);
    assert_eq!(event.id(), event_id(1, None, 3));
    assert!(event.votes.is_empty());

    // A threshold of the old set cancels.
    at_block(ALICE, START + TIMEOUT);
    assert_refused(
        Error::NotAParticipant {
            account: account(ALICE),
        },
        || contract.vote_cancel_key_event(),
    );
    at_block(NEWCOMER, START + TIMEOUT);
    assert_refused(
        Error::NotAParticipant {
            account: account(NEWCOMER),
        },
        || contract.vote_cancel_key_event(),
    );
    at_block(NODES[0], START + TIMEOUT);
    assert!(!contract.vote_cancel_key_event());
    assert!(
        !contract.vote_cancel_key_event(),
        "a repeated cancel vote counts once"
    );
    assert_eq!(contract.state().name(), "Resharing");
    at_block(NODES[2], START + TIMEOUT);
    assert!(contract.vote_cancel_key_event());
    assert_eq!(event_names(), vec!["voted", "state_changed"]);
    let changed = &events()[1]["data"];
    assert_eq!(changed["from"], "Resharing");
    assert_eq!(changed["to"], "Running");
    assert_eq!(changed["epoch"], 0);

    let after = running_state(&contract);
    assert_eq!(after.epoch, 0);
    assert_eq!(after.participants, before.participants);
    assert_eq!(after.threshold, before.threshold);
    assert_eq!(after.domains, before.domains, "same keys, same attempts");
    assert!(after.join_votes.votes.is_empty());
    assert_eq!(contract.public_key(None), root_public_key());
    assert_eq!(contract.public_key(Some(DomainId(1))), ed_root_public_key());
    sign_and_answer(&mut contract, ALICE, &ecdsa_request(2, "p"), NODES[0]);
    sign_and_answer(&mut contract, ALICE, &eddsa_request(2, "p"), NODES[2]);
    as_caller(NEWCOMER, 0);
    assert_refused(
        Error::NotAParticipant {
            account: account(NEWCOMER),
        },
        || {
            contract.respond(
                request_id(ALICE, &ecdsa_request(2, "p")),
                ecdsa_signature(ALICE, "p", &ecdsa_payload(2), 3),
            )
        },
    );

    // The newcomer is still a candidate; a new resharing gets a fresh attempt id,
    // past the abandoned attempt 3.
    assert!(after.candidates.contains_key(&account(NEWCOMER)));
    as_caller(NODES[0], 0);
    assert!(
        !contract.vote_join(account(NEWCOMER)),
        "old votes were cleared"
    );
    as_caller(NODES[1], 0);
    assert!(contract.vote_join(account(NEWCOMER)));
    assert_eq!(key_event_id(&contract), event_id(1, None, 4));
    assert!(vote_resharing(
        &mut contract,
        &[NODES[0], NODES[1], NODES[2], NEWCOMER]
    ));
    assert_eq!(running_state(&contract).domains[1].attempt, 4);
}

#[test]
fn vote_abort_during_resharing_starts_the_next_attempt() {
    let mut contract = running();
    start_join_resharing(&mut contract);
    let first = key_event_id(&contract);
    assert!(!vote_resharing(&mut contract, &NODES));
    as_caller(NEWCOMER, 0);
    contract.vote_abort_key_event(first);
    assert_eq!(event_names(), vec!["voted", "key_event_attempt_failed"]);
    assert_eq!(events()[1]["data"]["domain_id"], serde_json::Value::Null);
    let next = key_event_id(&contract);
    assert_eq!(next.attempt, first.attempt + 1);
    assert!(key_event(&contract).votes.is_empty());
    assert!(vote_resharing(
        &mut contract,
        &[NEWCOMER, NODES[0], NODES[1], NODES[2]]
    ));
    assert_eq!(running_state(&contract).domains[0].attempt, next.attempt);
}

#[test]
fn vote_leave_never_drops_below_the_threshold() {
    as_caller(CONTRACT, 0);
    let mut contract = MpcContract::init(2, candidates(&NODES[..2]), None, None);
    assert!(vote_keygen(&mut contract, &NODES[..2], &root_public_key()));
    assert_refused(
        Error::WouldBreakThreshold {
            left: 1,
            threshold: 2,
        },
        || contract.vote_leave(account(NODES[0])),
    );

    let mut contract = running();
    as_caller(NODES[0], 0);
    assert_refused(
        Error::NotAParticipant {
            account: account(ALICE),
        },
        || contract.vote_leave(account(ALICE)),
    );
    assert!(!contract.vote_leave(account(NODES[2])));
    as_caller(NODES[2], 0);
    assert!(
        contract.vote_leave(account(NODES[2])),
        "a participant may vote itself out"
    );
    let state = resharing_state(&contract);
    assert_eq!(state.key_event.participants.len(), 2);
    assert!(!state.key_event.participants.contains(&account(NODES[2])));
    let resharing = state.key_event.id();
    as_caller(NODES[2], 0);
    assert_refused(
        Error::NotInKeyEvent {
            account: account(NODES[2]),
        },
        || contract.vote_reshared(resharing),
    );
    assert!(vote_resharing(&mut contract, &NODES[..2]));
    let signers = running_state(&contract).participants;
    assert_eq!(signers.len(), 2);
    let ids: Vec<u32> = signers.participants.values().map(|p| p.id).collect();
    assert_eq!(ids, vec![0, 1], "participants keep their ids");
    as_caller(NODES[0], 0);
    assert_refused(
        Error::WouldBreakThreshold {
            left: 1,
            threshold: 2,
        },
        || contract.vote_leave(account(NODES[1])),
    );
}

// ---------------------------------------------------------------- candidates

#[test]
fn p2p_keys_must_be_unique() {
    let mut contract = running();
    let fresh = candidate(NEWCOMER, 3);
    as_caller(NEWCOMER, 0);
    // A participant's cipher_pk, or its sign_pk.
    assert_refused(Error::P2pKeyInUse, || {
        contract.join(fresh.url.clone(), [0; 32], fresh.sign_pk.clone())
    });
    assert_refused(Error::P2pKeyInUse, || {
        contract.join(
            fresh.url.clone(),
            fresh.cipher_pk,
            candidate(NODES[1], 1).sign_pk,
        )
    });
    contract.join(fresh.url.clone(), fresh.cipher_pk, fresh.sign_pk.clone());
    // A candidate's keys.
    let other = candidate("other.near", 4);
    as_caller("other.near", 0);
    assert_refused(Error::P2pKeyInUse, || {
        contract.join(other.url.clone(), fresh.cipher_pk, other.sign_pk.clone())
    });
    assert_refused(Error::P2pKeyInUse, || {
        contract.join(other.url.clone(), other.cipher_pk, fresh.sign_pk.clone())
    });
    contract.join(other.url.clone(), other.cipher_pk, other.sign_pk.clone());
    // A candidate may join again with its own keys (to update its url).
    as_caller(NEWCOMER, 0);
    contract.join("https://moved:3000".into(), fresh.cipher_pk, fresh.sign_pk);
    let state = running_state(&contract);
    assert_eq!(state.candidates.len(), 2);
    assert_eq!(
        state.candidates[&account(NEWCOMER)].info.url,
        "https://moved:3000"
    );
}

#[test]
fn candidates_expire() {
    let mut contract = running_with(Config {
        candidate_expiry_blocks: 10,
        ..Config::default()
    });
    let info = candidate(NEWCOMER, 3);
    at_block(NEWCOMER, START);
    contract.join(info.url.clone(), info.cipher_pk, info.sign_pk.clone());
    assert_eq!(
        running_state(&contract).candidates[&account(NEWCOMER)].joined_at,
        START
    );
    at_block(NODES[0], START + 9);
    assert!(!contract.vote_join(account(NEWCOMER)));
    at_block(NODES[1], START + 10);
    assert_refused(
        Error::CandidateExpired {
            account: account(NEWCOMER),
        },
        || contract.vote_join(account(NEWCOMER)),
    );
    assert_eq!(contract.state().name(), "Running");

    // An expired candidate holds no p2p keys: another account may register them,
    // and the join purges the expired candidate.
    at_block("other.near", START + 10);
    contract.join(
        "https://other:3000".into(),
        info.cipher_pk,
        info.sign_pk.clone(),
    );
    let state = running_state(&contract);
    assert_eq!(
        state.candidates.keys().cloned().collect::<Vec<_>>(),
        vec![account("other.near")]
    );
    at_block(NODES[1], START + 10);
    assert_refused(
        Error::NotACandidate {
            account: account(NEWCOMER),
        },
        || contract.vote_join(account(NEWCOMER)),
    );
}

#[test]
fn candidates_are_bounded_until_they_expire() {
    let mut contract = running_with(Config {
        candidate_expiry_blocks: 10,
        ..Config::default()
    });
    let join = |contract: &mut MpcContract, name: &str, index: u8, url: &str| {
        let info = candidate(name, index);
        contract.join(url.into(), info.cipher_pk, info.sign_pk);
    };
    for i in 0..32u8 {
        let name = format!("candidate{i}.near");
        at_block(&name, START);
        join(&mut contract, &name, 100 + i, "u");
    }
    at_block("candidate0.near", START + 5);
    join(&mut contract, "candidate0.near", 100, "https://updated");
    let state = running_state(&contract);
    assert_eq!(state.candidates.len(), 32);
    assert_eq!(
        state.candidates[&account("candidate0.near")].info.url,
        "https://updated",
        "re-joining updates"
    );
    assert_eq!(
        state.candidates[&account("candidate0.near")].joined_at,
        START + 5
    );
    at_block("candidate32.near", START + 9);
    assert_refused(Error::TooManyCandidates { max: 32 }, || {
        join(&mut contract, "candidate32.near", 132, "u")
    });

    // Once they expire, a join purges them and the cap frees up.
    at_block("candidate32.near", START + 10);
    join(&mut contract, "candidate32.near", 132, "u");
    let names: Vec<AccountId> = running_state(&contract).candidates.into_keys().collect();
    assert_eq!(
        names,
        vec![account("candidate0.near"), account("candidate32.near")],
        "only the candidate that re-joined later is left"
    );
}

// ---------------------------------------------------------------- updates

fn propose(contract: &mut MpcContract, who: &str, args: ProposeUpdateArgs, deposit: u128) -> u64 {
    testing_env!(context(who, deposit).build());
    contract.propose_update(args)
}

#[test]
fn config_updates_apply_with_a_threshold_of_votes() {
    let mut contract = running();
    let config = Config {
        max_path_len: 64,
        ..Config::default()
    };
    let args = ProposeUpdateArgs {
        code: None,
        config: Some(config.clone()),
    };
    as_caller(ALICE, 0);
    assert_refused(
        Error::NotAParticipant {
            account: account(ALICE),
        },
        || contract.propose_update(args.clone()),
    );
    as_caller(NODES[0], 0);
    assert_refused(Error::EmptyUpdate, || {
        contract.propose_update(ProposeUpdateArgs::default())
    });
    let bad = ProposeUpdateArgs {
        code: None,
        config: Some(Config {
            max_path_len: 0,
            ..Config::default()
        }),
    };
    assert_refused(Error::BadConfig("max_path_len must be at least 1"), || {
        contract.propose_update(bad)
    });
    let text = abort_text(|| contract.propose_update(args.clone()));
    assert!(
        text.contains("storing this update proposal needs a deposit of"),
        "{text}"
    );

    // The mock does not roll back a refused call's writes as the chain does: start
    // over on empty storage.
    near_sdk::mock::with_mocked_blockchain(|b| drop(b.take_storage()));
    let mut contract = running();
    let id = propose(&mut contract, NODES[0], args.clone(), 10u128.pow(22));
    let other = propose(&mut contract, NODES[2], args, 10u128.pow(22));
    assert_eq!(contract.proposed_updates().len(), 2);
    as_caller(NODES[0], 0);
    assert_refused(Error::UnknownUpdate { id: 99 }, || contract.vote_update(99));
    assert!(!contract.vote_update(id));
    as_caller(NODES[1], 0);
    assert!(contract.vote_update(id));
    assert_eq!(contract.config(), &config);
    assert!(
        contract.proposed_updates().is_empty(),
        "applying an update clears the others"
    );
    assert_eq!(
        transfers_to(NODES[0]),
        vec![NearToken::from_yoctonear(10u128.pow(22))]
    );
    assert_eq!(
        transfers_to(NODES[2]),
        vec![NearToken::from_yoctonear(10u128.pow(22))]
    );
    as_caller(NODES[1], 0);
    assert_refused(Error::UnknownUpdate { id: other }, || {
        contract.vote_update(other)
    });
    as_caller(ALICE, 1);
    assert_refused(Error::PathTooLong { len: 65, max: 64 }, || {
        contract.sign(None, Some(ecdsa_payload(1)), Some("p".repeat(65)), None)
    });
}

#[test]
fn code_updates_deploy_and_migrate() {
    let mut contract = running_both();
    let code = vec![0u8, 0x61, 0x73, 0x6d, 1, 0, 0, 0];
    let id = propose(
        &mut contract,
        NODES[0],
        ProposeUpdateArgs {
            code: Some(code.clone()),
            config: None,
        },
        10u128.pow(23),
    );
    let view = &contract.proposed_updates()[0];
    assert_eq!(view.code_len, Some(8));
    assert_eq!(
        view.code_sha256.as_deref(),
        Some(hex::encode(env::sha256(&code)).as_str())
    );
    as_caller(NODES[0], 0);
    contract.vote_update(id);
    as_caller(NODES[2], 0);
    assert!(contract.vote_update(id));
    let actions: Vec<MockAction> = get_created_receipts()
        .into_iter()
        .filter(|r| r.receiver_id.as_str() == CONTRACT)
        .flat_map(|r| r.actions)
        .collect();
    assert!(actions
        .iter()
        .any(|a| matches!(a, MockAction::DeployContract { code: c, .. } if *c == code)));
    assert!(actions.iter().any(|a| matches!(a,
        MockAction::FunctionCallWeight { method_name, .. } if method_name == b"migrate")));

    // `migrate` reads the stored state back unchanged.
    env::state_write(&contract);
    as_caller(CONTRACT, 0);
    let migrated = MpcContract::migrate();
    assert_eq!(migrated.state(), contract.state());
    assert_eq!(migrated.state_version, STATE_VERSION);
    assert_eq!(migrated.next_attempt, contract.next_attempt);

    for found in [STATE_VERSION + 1, 1] {
        contract.state_version = found;
        env::state_write(&contract);
        assert_refused(Error::StateVersion { found }, MpcContract::migrate);
    }
}

#[test]
fn calls_out_of_their_state_are_refused() {
    let mut contract = initializing(2);
    as_caller(NODES[0], 0);
    // The first keygen's participants are the running set, with no request to
    // answer yet.
    let request = ecdsa_request(1, "p");
    assert_refused(Error::UnknownRequest, || {
        contract.respond(
            request_id(ALICE, &request),
            network_signature(ALICE, &request, 3),
        )
    });
    let not_running = || Error::WrongState {
        expected: "Running",
        actual: "Initializing",
    };
    assert_refused(not_running(), || {
        contract.join("u".into(), [3; 32], candidate(NEWCOMER, 3).sign_pk)
    });
    assert_refused(not_running(), || contract.vote_join(account(NEWCOMER)));
    assert_refused(not_running(), || contract.vote_leave(account(NODES[2])));
    assert_refused(not_running(), || {
        contract.vote_add_domains(vec![ed25519_domain(1)])
    });
    assert_refused(
        Error::WrongState {
            expected: "Resharing",
            actual: "Initializing",
        },
        || contract.vote_reshared(event_id(0, None, 0)),
    );

    let mut contract = running();
    as_caller(NODES[0], 0);
    assert_refused(
        Error::WrongState {
            expected: "Resharing",
            actual: "Running",
        },
        || contract.vote_reshared(event_id(1, None, 1)),
    );
    assert_refused(Error::NoKeyEvent, || contract.vote_cancel_key_event());
    assert_refused(Error::NoKeyEvent, || {
        contract.vote_abort_key_event(event_id(0, Some(0), 0))
    });
    contract.vote_leave(account(NODES[2]));
    as_caller(NODES[1], 0);
    contract.vote_leave(account(NODES[2]));
    let resharing = key_event_id(&contract);
    assert_refused(
        Error::WrongState {
            expected: "Initializing",
            actual: "Resharing",
        },
        || contract.vote_pk(resharing, root_public_key()),
    );
    let not_running = || Error::WrongState {
        expected: "Running",
        actual: "Resharing",
    };
    assert_refused(not_running(), || {
        contract.join("u".into(), [3; 32], candidate(NEWCOMER, 3).sign_pk)
    });
    assert_refused(not_running(), || {
        contract.vote_add_domains(vec![ed25519_domain(1)])
    });
}

#[test]
fn only_signers_vote_on_updates_and_migrate_needs_state() {
    let mut contract = running();
    let id = propose(
        &mut contract,
        NODES[0],
        ProposeUpdateArgs {
            code: None,
            config: Some(Config::default()),
        },
        10u128.pow(22),
    );
    as_caller(ALICE, 0);
    assert_refused(
        Error::NotAParticipant {
            account: account(ALICE),
        },
        || contract.vote_update(id),
    );
    // During resharing only the old set (which holds the keys) votes.
    start_join_resharing(&mut contract);
    as_caller(NEWCOMER, 0);
    assert_refused(
        Error::NotAParticipant {
            account: account(NEWCOMER),
        },
        || contract.vote_update(id),
    );

    near_sdk::mock::with_mocked_blockchain(|b| drop(b.take_storage()));
    as_caller(CONTRACT, 0);
    assert_refused(
        Error::WrongState {
            expected: "initialized",
            actual: "NotInitialized",
        },
        MpcContract::migrate,
    );
}
