//! Unit tests: the yield callback.

use super::*;

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
