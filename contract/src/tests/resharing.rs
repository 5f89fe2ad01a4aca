//! Unit tests: resharing.

use super::*;

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
