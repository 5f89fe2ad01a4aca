//! Unit tests: sign.

use super::*;

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
