//! Unit tests: respond.

use super::*;

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
