//! Unit tests on near-sdk's mocked blockchain. The "network" here is a test-only
//! ECDSA signer that holds the root secret outright, computes the derived key as
//! `secret + ε` and signs with textbook ECDSA and a chosen nonce: independent of the
//! contract's verification code, which must accept it.

use super::*;
use near_sdk::mock::MockAction;
use near_sdk::test_utils::{get_created_receipts, get_logs, VMContextBuilder};
use near_sdk::{testing_env, PromiseError};
use primitives::k256::elliptic_curve::PrimeField;
use primitives::k256::{ProjectivePoint, Scalar};
use primitives::response::SerializableScalar;
use std::panic::{catch_unwind, AssertUnwindSafe};

const CONTRACT: &str = "signer.near";
const ALICE: &str = "alice.near";
const NODES: [&str; 3] = ["node0.near", "node1.near", "node2.near"];
const NEWCOMER: &str = "node3.near";

fn account(name: &str) -> AccountId {
    name.parse().unwrap()
}

fn root_secret() -> Scalar {
    Scalar::from(0x1234_5678_9abc_def0u64) * Scalar::from(0x0fed_cba9_8765_4321u64)
}

fn root_public_key() -> PublicKey {
    let point = (ProjectivePoint::GENERATOR * root_secret()).to_affine();
    PublicKey::from_parts(
        CurveType::SECP256K1,
        near_key::to_uncompressed_xy(&point).to_vec(),
    )
    .unwrap()
}

fn other_public_key() -> PublicKey {
    let point = (ProjectivePoint::GENERATOR * Scalar::from(7u64)).to_affine();
    PublicKey::from_parts(
        CurveType::SECP256K1,
        near_key::to_uncompressed_xy(&point).to_vec(),
    )
    .unwrap()
}

fn candidate(name: &str, index: u8) -> CandidateInfo {
    CandidateInfo {
        account_id: account(name),
        url: format!("https://{name}:3000"),
        cipher_pk: [index; 32],
        sign_pk: "ed25519:6E8sCci9badyRkXb3JoRpBj5p8C6Tw41ELDZoiihKEtp"
            .parse()
            .unwrap(),
    }
}

fn candidates(names: &[&str]) -> BTreeMap<AccountId, CandidateInfo> {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| (account(n), candidate(n, i as u8)))
        .collect()
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
        .block_height(100)
        .random_seed([42; 32])
        .account_balance(NearToken::from_near(100));
    builder
}

fn as_caller(predecessor: &str, deposit: u128) {
    testing_env!(context(predecessor, deposit).build());
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
fn events() -> Vec<near_sdk::serde_json::Value> {
    get_logs()
        .iter()
        .filter_map(|line| line.strip_prefix("EVENT_JSON:"))
        .map(|json| near_sdk::serde_json::from_str(json).unwrap())
        .collect()
}

fn event_names() -> Vec<String> {
    events()
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect()
}

fn initializing(threshold: usize) -> MpcContract {
    as_caller(CONTRACT, 0);
    MpcContract::init(threshold, candidates(&NODES), None)
}

/// A contract that went through key generation: 3 participants, threshold 2.
fn running() -> MpcContract {
    let mut contract = initializing(2);
    as_caller(NODES[0], 0);
    assert!(!contract.vote_pk(root_public_key()));
    as_caller(NODES[1], 0);
    assert!(contract.vote_pk(root_public_key()));
    contract
}

fn payload(byte: u8) -> Payload {
    Payload::new([byte; 32]).unwrap()
}

fn sign_request(byte: u8, path: &str) -> SignRequest {
    SignRequest {
        payload: payload(byte),
        path: path.into(),
        key_version: 0,
    }
}

/// Calls `sign` as `who` in the deployed shape.
fn sign_as(contract: &mut MpcContract, who: &str, request: SignRequest) -> RequestId {
    as_caller(who, 1);
    contract.sign(Some(request.clone()), None, None, None);
    SignatureRequest::new(who, &request).unwrap().id()
}

/// The test network's answer: textbook ECDSA with the derived secret.
fn network_signature(who: &str, request: &SignRequest, nonce: u64) -> SignatureResponse {
    let tweak = Tweak::derive(who, &request.path).unwrap();
    let secret = root_secret() + tweak.as_scalar();
    let k = Scalar::from(nonce);
    let big_r = (ProjectivePoint::GENERATOR * k).to_affine();
    let r =
        Scalar::from_repr(primitives::k256::elliptic_curve::point::AffineCoordinates::x(&big_r))
            .unwrap();
    let s = k.invert().unwrap() * (request.payload.to_scalar() + r * secret);
    SignatureResponse::new(&big_r, &s).unwrap()
}

fn tickets(contract: &MpcContract, id: &RequestId) -> Vec<Ticket> {
    contract
        .pending
        .get(id)
        .map(|e| e.tickets.clone())
        .unwrap_or_default()
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

// ---------------------------------------------------------------- init and keygen

#[test]
fn init_is_for_the_contract_account_with_a_sane_threshold() {
    as_caller(ALICE, 0);
    assert_refused(Error::InitByOther, || {
        MpcContract::init(2, candidates(&NODES), None)
    });
    as_caller(CONTRACT, 0);
    assert_refused(
        Error::BadThreshold {
            threshold: 4,
            participants: 3,
        },
        || MpcContract::init(4, candidates(&NODES), None),
    );
    assert_refused(
        Error::BadThreshold {
            threshold: 0,
            participants: 3,
        },
        || MpcContract::init(0, candidates(&NODES), None),
    );
    let mut mismatched = candidates(&NODES);
    mismatched.get_mut(&account(NODES[0])).unwrap().account_id = account(ALICE);
    assert_refused(
        Error::CandidateKeyMismatch {
            key: account(NODES[0]),
            account_id: account(ALICE),
        },
        || MpcContract::init(2, mismatched, None),
    );
    assert_refused(Error::NoCandidates, || {
        MpcContract::init(1, BTreeMap::new(), None)
    });
    let mut long_url = candidates(&NODES);
    long_url.get_mut(&account(NODES[1])).unwrap().url = "u".repeat(513);
    assert_refused(
        Error::CandidateField {
            what: "url",
            max: 512,
        },
        || MpcContract::init(2, long_url, None),
    );
    let bad_config = Config {
        sign_deposit: NearToken::from_yoctonear(0),
        ..Config::default()
    };
    assert_refused(
        Error::BadConfig("sign_deposit must be at least 1 yoctoNEAR"),
        || MpcContract::init(2, candidates(&NODES), Some(bad_config)),
    );

    let contract = MpcContract::init(2, candidates(&NODES), None);
    let ProtocolContractState::Initializing(state) = contract.state() else {
        panic!("not Initializing")
    };
    let ids: Vec<u32> = state
        .candidates
        .participants
        .values()
        .map(|p| p.id)
        .collect();
    assert_eq!(ids, vec![0, 1, 2]);
    assert_eq!(event_names(), vec!["state_changed"]);
}

#[test]
fn uninitialised_contract_answers_views_and_refuses_work() {
    as_caller(ALICE, 1);
    let mut contract = MpcContract::default();
    assert_eq!(contract.state().name(), "NotInitialized");
    assert_refused(
        Error::NotReady {
            state: "NotInitialized",
        },
        || contract.public_key(),
    );
    assert_refused(
        Error::NotReady {
            state: "NotInitialized",
        },
        || contract.sign(Some(sign_request(1, "p")), None, None, None),
    );
}

#[test]
fn keygen_needs_a_threshold_of_candidates_agreeing_on_one_key() {
    let mut contract = initializing(2);
    as_caller(ALICE, 1);
    assert_refused(
        Error::NotReady {
            state: "Initializing",
        },
        || contract.sign(Some(sign_request(1, "p")), None, None, None),
    );
    assert_refused(
        Error::NotReady {
            state: "Initializing",
        },
        || contract.public_key(),
    );
    assert_refused(
        Error::NotACandidate {
            account: account(ALICE),
        },
        || contract.vote_pk(root_public_key()),
    );

    as_caller(NODES[0], 0);
    let ed25519: PublicKey = "ed25519:6E8sCci9badyRkXb3JoRpBj5p8C6Tw41ELDZoiihKEtp"
        .parse()
        .unwrap();
    assert_refused(Error::NotSecp256k1Key, || contract.vote_pk(ed25519.clone()));
    assert!(!contract.vote_pk(root_public_key()));
    assert!(
        !contract.vote_pk(root_public_key()),
        "voting twice is idempotent and counts once"
    );
    assert_refused(Error::VotedOtherKey, || {
        contract.vote_pk(other_public_key())
    });

    as_caller(NODES[1], 0);
    assert!(
        !contract.vote_pk(other_public_key()),
        "one vote for another key is not enough"
    );
    as_caller(NODES[2], 0);
    assert!(contract.vote_pk(root_public_key()));
    assert_eq!(event_names(), vec!["voted", "state_changed"]);
    let ProtocolContractState::Running(state) = contract.state() else {
        panic!("not Running")
    };
    assert_eq!(state.epoch, 0);
    assert_eq!(state.participants.len(), 3);
    assert_eq!(contract.public_key(), root_public_key());

    assert!(
        contract.vote_pk(root_public_key()),
        "late votes for the agreed key are fine"
    );
    assert_refused(Error::KeyMismatch, || contract.vote_pk(other_public_key()));
}

#[test]
fn views_describe_the_contract() {
    let contract = running();
    assert_eq!(contract.latest_key_version(), 0);
    assert_eq!(contract.version(), env!("CARGO_PKG_VERSION"));
    assert_eq!(contract.experimental_signature_deposit(), U128(1));
    assert_eq!(contract.config(), &Config::default());
    let json = near_sdk::serde_json::to_value(contract.state()).unwrap();
    assert_eq!(json["Running"]["threshold"], 2);
    assert_eq!(
        json["Running"]["participants"]["participants"]["node1.near"]["id"],
        1
    );

    // derived_public_key agrees with the test network's derived secret.
    let derived = contract.derived_public_key("ethereum-1".into(), Some(account(ALICE)));
    let secret = root_secret() + Tweak::derive(ALICE, "ethereum-1").unwrap().as_scalar();
    let expected = (ProjectivePoint::GENERATOR * secret).to_affine();
    assert_eq!(
        &derived.as_bytes()[1..],
        near_key::to_uncompressed_xy(&expected).as_slice()
    );
    as_caller(ALICE, 0);
    assert_eq!(
        contract.derived_public_key("ethereum-1".into(), None),
        derived
    );
}

// ---------------------------------------------------------------- sign

#[test]
fn sign_accepts_the_seed_and_the_deployed_argument_shapes() {
    let mut contract = running();
    as_caller(ALICE, 1);
    contract.sign(None, Some(payload(1)), Some("ethereum-1".into()), None);
    assert_eq!(event_names(), vec!["signature_requested"]);
    let event = &events()[0];
    assert_eq!(event["standard"], "chainsig");
    assert_eq!(event["version"], "1.0.0");
    assert_eq!(event["data"]["path"], "ethereum-1");
    assert_eq!(event["data"]["duplicate"], false);

    contract.sign(Some(sign_request(2, "bitcoin-1")), None, None, None);
    let pending = contract.pending_requests(None, None);
    assert_eq!(pending.len(), 2);
    let first = &pending[0];
    assert_eq!(first.predecessor, ALICE);
    assert_eq!(first.payload, payload(1));
    assert_eq!(first.path, "ethereum-1");
    assert_eq!(first.block_height, 100);
    assert_eq!(first.entropy.0, [42; 32]);
    assert_eq!(
        first.epsilon.scalar,
        Tweak::derive(ALICE, "ethereum-1").unwrap().to_bytes()
    );
    assert_eq!(first.waiting, 1);
    assert_eq!(
        first.request_id,
        SignatureRequest::new(ALICE, &sign_request(1, "ethereum-1"))
            .unwrap()
            .id()
    );
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
fn sign_refusals_have_stable_texts() {
    let mut contract = running();
    let request = sign_request(1, "ethereum-1");
    as_caller(ALICE, 1);
    assert_refused(Error::SignArgsShape, || {
        contract.sign(Some(request.clone()), Some(payload(1)), None, None)
    });
    assert_refused(Error::SignArgsShape, || {
        contract.sign(Some(request.clone()), None, None, Some(0))
    });
    assert_refused(Error::SignArgsMissing, || {
        contract.sign(None, Some(payload(1)), None, None)
    });
    assert_refused(Error::SignArgsMissing, || {
        contract.sign(None, None, None, None)
    });
    let long = "x".repeat(1025);
    assert_refused(
        Error::PathTooLong {
            len: 1025,
            max: 1024,
        },
        || contract.sign(None, Some(payload(1)), Some(long), None),
    );
    assert_refused(Error::KeyVersion { got: 1, latest: 0 }, || {
        contract.sign(None, Some(payload(1)), Some("p".into()), Some(1))
    });

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
fn excess_deposit_is_refunded_and_one_yocto_kept() {
    let mut contract = running();
    as_caller(ALICE, 1_000);
    contract.sign(Some(sign_request(1, "p")), None, None, None);
    assert_eq!(transfers_to(ALICE), vec![NearToken::from_yoctonear(999)]);
    let id = SignatureRequest::new(ALICE, &sign_request(1, "p"))
        .unwrap()
        .id();
    assert_eq!(
        tickets(&contract, &id)[0].deposit,
        NearToken::from_yoctonear(1)
    );

    as_caller(ALICE, 1);
    contract.sign(Some(sign_request(2, "p")), None, None, None);
    assert!(
        transfers_to(ALICE).is_empty(),
        "nothing to refund for an exact deposit"
    );
}

#[test]
fn identical_requests_share_one_entry_up_to_the_bound() {
    as_caller(CONTRACT, 0);
    let config = Config {
        max_duplicate_requests: 3,
        ..Config::default()
    };
    let mut contract = MpcContract::init(2, candidates(&NODES), Some(config));
    for node in &NODES[..2] {
        as_caller(node, 0);
        contract.vote_pk(root_public_key());
    }
    let request = sign_request(7, "ethereum-1");
    let id = SignatureRequest::new(ALICE, &request).unwrap().id();
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

    // The same payload and path from another account is another request.
    sign_as(&mut contract, "bob.near", request);
    assert_eq!(contract.pending_requests(None, None).len(), 2);
}

#[test]
fn a_full_queue_says_busy() {
    as_caller(CONTRACT, 0);
    let config = Config {
        max_pending_requests: 2,
        ..Config::default()
    };
    let mut contract = MpcContract::init(1, candidates(&NODES[..1]), Some(config));
    as_caller(NODES[0], 0);
    contract.vote_pk(root_public_key());
    sign_as(&mut contract, ALICE, sign_request(1, "p"));
    sign_as(&mut contract, ALICE, sign_request(2, "p"));
    as_caller(ALICE, 1);
    assert_refused(Error::Busy { pending: 2 }, || {
        contract.sign(Some(sign_request(3, "p")), None, None, None)
    });
    // A duplicate of a waiting request still joins it.
    contract.sign(Some(sign_request(1, "p")), None, None, None);
}

// ---------------------------------------------------------------- respond

#[test]
fn respond_resumes_every_waiting_call_and_clears_the_request() {
    let mut contract = running();
    // A participant signs and responds within one mocked block, so the mock still
    // knows the yields and `promise_yield_resume` reports them resumed.
    let who = NODES[2];
    let request = sign_request(3, "ethereum-1");
    as_caller(who, 1);
    contract.sign(Some(request.clone()), None, None, None);
    contract.sign(Some(request.clone()), None, None, None);
    let id = SignatureRequest::new(who, &request).unwrap().id();
    let response = network_signature(who, &request, 1001);
    contract.respond(
        SignatureRequest::new(who, &request).unwrap(),
        response.clone(),
    );
    assert!(contract.pending.get(&id).is_none());
    let responded = events()
        .into_iter()
        .find(|e| e["event"] == "signature_responded")
        .unwrap();
    // Both yields were resumed (a ticket leaves only when its resume succeeds), so
    // no call is left waiting for a late callback.
    assert_eq!(responded["data"]["delivered"], 0);
    assert_eq!(responded["data"]["responder"], who);
}

#[test]
fn respond_refusals_leave_the_request_waiting() {
    let mut contract = running();
    let request = sign_request(4, "ethereum-1");
    let id = sign_as(&mut contract, ALICE, request.clone());
    let signature_request = SignatureRequest::new(ALICE, &request).unwrap();
    let good = network_signature(ALICE, &request, 77);

    as_caller(ALICE, 0);
    assert_refused(
        Error::NotAParticipant {
            account: account(ALICE),
        },
        || contract.respond(signature_request.clone(), good.clone()),
    );

    as_caller(NODES[0], 0);
    // Signed for another path: verifies, but not for this request's derived key.
    let wrong_key = network_signature(ALICE, &sign_request(4, "ethereum-2"), 77);
    assert_refused(Error::BadSignature(ResponseError::DoesNotVerify), || {
        contract.respond(signature_request.clone(), wrong_key)
    });
    // Right key, other payload.
    let wrong_payload = network_signature(ALICE, &sign_request(5, "ethereum-1"), 77);
    assert_refused(Error::BadSignature(ResponseError::DoesNotVerify), || {
        contract.respond(signature_request.clone(), wrong_payload)
    });
    let mut flipped = good.clone();
    flipped.recovery_id ^= 1;
    assert_refused(Error::BadSignature(ResponseError::DoesNotVerify), || {
        contract.respond(signature_request.clone(), flipped)
    });
    let mut high_s = good.clone();
    high_s.s = SerializableScalar::from_scalar(&-good.s.to_scalar().unwrap());
    assert_refused(Error::BadSignature(ResponseError::HighS), || {
        contract.respond(signature_request.clone(), high_s)
    });
    let mut bad_id = good.clone();
    bad_id.recovery_id = 5;
    assert_refused(Error::BadSignature(ResponseError::BadRecoveryId), || {
        contract.respond(signature_request.clone(), bad_id)
    });
    let unknown = SignatureRequest::new(ALICE, &sign_request(9, "ethereum-1")).unwrap();
    assert_refused(Error::UnknownRequest, || {
        contract.respond(unknown, good.clone())
    });

    assert_eq!(
        contract.pending_request(id).unwrap().waiting,
        1,
        "still waiting after refusals"
    );
}

#[test]
fn an_answer_after_a_timeout_reaches_the_late_callback() {
    let mut contract = running();
    let request = sign_request(6, "ethereum-1");
    let id = sign_as(&mut contract, ALICE, request.clone());
    let ticket = tickets(&contract, &id)[0].id;

    // A new mocked block no longer knows the yield: resume reports it gone, as the
    // runtime does once the yield has timed out.
    as_caller(NODES[1], 0);
    let response = network_signature(ALICE, &request, 4242);
    contract.respond(
        SignatureRequest::new(ALICE, &request).unwrap(),
        response.clone(),
    );
    assert_eq!(events()[0]["data"]["delivered"], 1);
    assert!(
        contract.pending_request(id).is_none(),
        "an answered request is no longer work"
    );
    as_caller(NODES[0], 0);
    assert_refused(Error::AlreadyAnswered, || {
        contract.respond(
            SignatureRequest::new(ALICE, &request).unwrap(),
            response.clone(),
        )
    });

    as_caller(CONTRACT, 0);
    assert_eq!(
        contract.resolve(id, ticket, None),
        Resolution::Answer(response)
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
    let request = sign_request(8, "p");
    let id = sign_as(&mut contract, ALICE, request.clone());
    let response = network_signature(ALICE, &request, 5);
    as_caller(CONTRACT, 0);
    assert_eq!(
        contract.resolve(id, 0, Some(response.clone())),
        Resolution::Answer(response.clone())
    );
    contract.resolve_signature(id, 0, Ok(response));
}

#[test]
fn a_timeout_waits_again_while_gas_lasts_then_refunds_and_fails() {
    let mut contract = running();
    let request = sign_request(9, "p");
    let id = sign_as(&mut contract, ALICE, request.clone());
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
    let id = sign_as(&mut contract, ALICE, sign_request(10, "p"));
    testing_env!(context(CONTRACT, 0).prepaid_gas(Gas::from_tgas(11)).build());
    contract.resolve_signature(id, 0, Err(PromiseError::Failed));
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

// ---------------------------------------------------------------- resharing

#[test]
fn join_vote_join_and_reshare_keep_the_key_and_serve_throughout() {
    let mut contract = running();
    as_caller(NEWCOMER, 0);
    contract.join(
        "https://node3:3000".into(),
        [9; 32],
        candidate(NEWCOMER, 9).sign_pk,
    );
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
        || contract.join("u".repeat(513), [0; 32], candidate(NODES[0], 0).sign_pk),
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
    let ProtocolContractState::Resharing(state) = contract.state().clone() else {
        panic!("not Resharing")
    };
    assert_eq!(state.old_epoch, 0);
    assert_eq!(state.new_participants.len(), 4);
    assert_eq!(
        state.new_participants.participants[&account(NEWCOMER)].id,
        3
    );
    assert_eq!(contract.public_key(), root_public_key());

    // Requests keep flowing during resharing, answered by the old participants.
    let request = sign_request(11, "p");
    let id = sign_as(&mut contract, ALICE, request.clone());
    let response = network_signature(ALICE, &request, 31);
    as_caller(NEWCOMER, 0);
    assert_refused(
        Error::NotAParticipant {
            account: account(NEWCOMER),
        },
        || {
            contract.respond(
                SignatureRequest::new(ALICE, &request).unwrap(),
                response.clone(),
            )
        },
    );
    as_caller(NODES[0], 0);
    contract.respond(SignatureRequest::new(ALICE, &request).unwrap(), response);
    assert!(contract.pending_request(id).is_none());

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
        Error::NotANewParticipant {
            account: account(ALICE),
        },
        || contract.vote_reshared(1),
    );
    as_caller(NEWCOMER, 0);
    assert_refused(
        Error::WrongEpoch {
            expected: 1,
            got: 2,
        },
        || contract.vote_reshared(2),
    );
    assert!(!contract.vote_reshared(1));
    as_caller(NODES[2], 0);
    assert!(contract.vote_reshared(1));
    let ProtocolContractState::Running(state) = contract.state().clone() else {
        panic!("not Running")
    };
    assert_eq!(state.epoch, 1);
    assert_eq!(state.participants.len(), 4);
    assert!(state.candidates.is_empty());
    assert_eq!(state.public_key, root_public_key());
    as_caller(NODES[0], 0);
    assert!(
        contract.vote_reshared(1),
        "a late report for the finished epoch is fine"
    );
    assert_refused(
        Error::WrongState {
            expected: "Resharing",
            actual: "Running",
        },
        || contract.vote_reshared(2),
    );

    // The newcomer now signs.
    let request = sign_request(12, "p");
    sign_as(&mut contract, ALICE, request.clone());
    as_caller(NEWCOMER, 0);
    contract.respond(
        SignatureRequest::new(ALICE, &request).unwrap(),
        network_signature(ALICE, &request, 32),
    );
}

#[test]
fn vote_leave_never_drops_below_the_threshold() {
    as_caller(CONTRACT, 0);
    let mut contract = MpcContract::init(2, candidates(&NODES[..2]), None);
    for node in &NODES[..2] {
        as_caller(node, 0);
        contract.vote_pk(root_public_key());
    }
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
    let ProtocolContractState::Resharing(state) = contract.state().clone() else {
        panic!("not Resharing")
    };
    assert_eq!(state.new_participants.len(), 2);
    assert!(!state.new_participants.contains(&account(NODES[2])));
    as_caller(NODES[2], 0);
    assert_refused(
        Error::NotANewParticipant {
            account: account(NODES[2]),
        },
        || contract.vote_reshared(1),
    );
    for node in &NODES[..2] {
        as_caller(node, 0);
        contract.vote_reshared(1);
    }
    assert_eq!(contract.state().signers().unwrap().len(), 2);
    let ids: Vec<u32> = contract
        .state()
        .signers()
        .unwrap()
        .participants
        .values()
        .map(|p| p.id)
        .collect();
    assert_eq!(ids, vec![0, 1], "participants keep their ids");
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
        contract.sign(None, Some(payload(1)), Some("p".repeat(65)), None)
    });
}

#[test]
fn code_updates_deploy_and_migrate() {
    let mut contract = running();
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

    contract.state_version = STATE_VERSION + 1;
    env::state_write(&contract);
    assert_refused(
        Error::StateVersion {
            found: STATE_VERSION + 1,
        },
        MpcContract::migrate,
    );
}

#[test]
fn init_running_starts_serving_an_existing_key() {
    as_caller(ALICE, 0);
    assert_refused(Error::InitByOther, || {
        MpcContract::init_running(5, candidates(&NODES), 2, root_public_key(), None)
    });
    as_caller(CONTRACT, 0);
    let ed25519: PublicKey = "ed25519:6E8sCci9badyRkXb3JoRpBj5p8C6Tw41ELDZoiihKEtp"
        .parse()
        .unwrap();
    assert_refused(Error::NotSecp256k1Key, || {
        MpcContract::init_running(5, candidates(&NODES), 2, ed25519, None)
    });
    let off_curve = PublicKey::from_parts(CurveType::SECP256K1, vec![1; 64]).unwrap();
    assert_refused(Error::NotSecp256k1Key, || {
        MpcContract::init_running(5, candidates(&NODES), 2, off_curve, None)
    });
    assert_refused(
        Error::BadThreshold {
            threshold: 3,
            participants: 2,
        },
        || MpcContract::init_running(5, candidates(&NODES[..2]), 3, root_public_key(), None),
    );
    let mut contract = MpcContract::init_running(5, candidates(&NODES), 2, root_public_key(), None);
    let ProtocolContractState::Running(state) = contract.state() else {
        panic!("not Running")
    };
    assert_eq!(state.epoch, 5);
    let request = sign_request(13, "p");
    sign_as(&mut contract, ALICE, request.clone());
    as_caller(NODES[1], 0);
    contract.respond(
        SignatureRequest::new(ALICE, &request).unwrap(),
        network_signature(ALICE, &request, 3),
    );
    assert!(contract.pending_requests(None, None).is_empty());
}

#[test]
fn calls_out_of_their_state_are_refused() {
    let mut contract = initializing(2);
    let request = sign_request(1, "p");
    as_caller(NODES[0], 0);
    assert_refused(
        Error::NotReady {
            state: "Initializing",
        },
        || {
            contract.respond(
                SignatureRequest::new(ALICE, &request).unwrap(),
                network_signature(ALICE, &request, 3),
            )
        },
    );
    assert_refused(
        Error::WrongState {
            expected: "Running",
            actual: "Initializing",
        },
        || contract.join("u".into(), [0; 32], candidate(NEWCOMER, 3).sign_pk),
    );
    assert_refused(
        Error::WrongState {
            expected: "Running",
            actual: "Initializing",
        },
        || contract.vote_join(account(NEWCOMER)),
    );
    assert_refused(
        Error::WrongState {
            expected: "Resharing",
            actual: "Initializing",
        },
        || contract.vote_reshared(1),
    );
    assert_refused(
        Error::NotReady {
            state: "Initializing",
        },
        || contract.propose_update(ProposeUpdateArgs::default()),
    );

    let mut contract = running();
    as_caller(NODES[0], 0);
    contract.vote_leave(account(NODES[2]));
    as_caller(NODES[1], 0);
    contract.vote_leave(account(NODES[2]));
    assert_refused(
        Error::WrongState {
            expected: "Initializing",
            actual: "Resharing",
        },
        || contract.vote_pk(root_public_key()),
    );
    assert_refused(
        Error::WrongState {
            expected: "Running",
            actual: "Resharing",
        },
        || contract.join("u".into(), [0; 32], candidate(NEWCOMER, 3).sign_pk),
    );
}

#[test]
fn candidates_are_bounded() {
    let mut contract = running();
    for i in 0..32 {
        as_caller(&format!("candidate{i}.near"), 0);
        contract.join("u".into(), [0; 32], candidate(NEWCOMER, 3).sign_pk);
    }
    as_caller("candidate0.near", 0);
    contract.join(
        "https://updated".into(),
        [0; 32],
        candidate(NEWCOMER, 3).sign_pk,
    );
    let ProtocolContractState::Running(state) = contract.state() else {
        panic!("not Running")
    };
    assert_eq!(
        state.candidates[&account("candidate0.near")].url,
        "https://updated",
        "re-joining updates"
    );
    as_caller("candidate32.near", 0);
    assert_refused(Error::TooManyCandidates { max: 32 }, || {
        contract.join("u".into(), [0; 32], candidate(NEWCOMER, 3).sign_pk)
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
