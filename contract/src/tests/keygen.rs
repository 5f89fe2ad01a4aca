//! Unit tests: init and keygen.

use super::*;

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
        MpcContract::init(2, SortedMap::new(), None, None)
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
