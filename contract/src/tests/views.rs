//! Unit tests: views.

use super::*;

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

/// The `state` view, as the contract writes it, read into the types nodes use
/// (`primitives::views`) and written again: the same text, so neither side has a
/// field the other lacks or names differently.
fn assert_view_round_trips(state: &ProtocolContractState) {
    let written = crate::json::to_vec(state);
    let contract_json: serde_json::Value = serde_json::from_slice(&written).unwrap();
    let read: primitives::views::ContractState = serde_json::from_slice(&written)
        .unwrap_or_else(|e| panic!("nodes cannot read the {} view: {e}", state.name()));
    assert_eq!(read.name(), state.name());
    assert_eq!(
        serde_json::to_value(&read).unwrap(),
        contract_json,
        "the {} view and primitives::views differ",
        state.name()
    );
}

#[test]
fn state_view_matches_primitives() {
    assert_view_round_trips(&ProtocolContractState::NotInitialized);

    // Initializing, with one vote (and so a key) on the current attempt.
    let mut contract = initializing(2);
    vote_keygen(&mut contract, &NODES[..1], &root_public_key());
    let state = contract.state();
    assert!(state.key_event().unwrap().public_key.is_some());
    assert_view_round_trips(&state);

    // Running, with a candidate and every kind of governance vote pending.
    let mut contract = running();
    as_caller(NEWCOMER, 0);
    let info = candidate(NEWCOMER, 3);
    contract.join(info.url, info.cipher_pk, info.sign_pk);
    as_caller(NODES[0], 0);
    assert!(!contract.vote_join(account(NEWCOMER)));
    assert!(!contract.vote_leave(account(NODES[2])));
    assert!(!contract.vote_add_domains(vec![ed25519_domain(1)]));
    let state = contract.state();
    let running = state.running().unwrap();
    assert!(!running.candidates.is_empty() && !running.add_domains_votes.is_empty());
    assert_view_round_trips(&state);

    // Resharing, with a cancel vote.
    start_join_resharing(&mut contract);
    as_caller(NODES[0], 0);
    assert!(!contract.vote_cancel_key_event());
    assert_view_round_trips(&contract.state());
}
