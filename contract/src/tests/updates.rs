//! Unit tests: updates.

use super::*;

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
