//! Unit tests: domains.

use super::*;

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
