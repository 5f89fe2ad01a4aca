//! Keygen, nonce commitments and signing: derived keys, dropped, garbled and
//! stray messages, invalid shares, equivocation, bad parameters, records.

use super::*;

#[test]
fn keygen_presign_sign_for_derived_keys_with_t_and_more_signers() {
    for (n, t, seed) in [(3u32, 2usize, 11u64), (5, 3, 12)] {
        let parties = Participants::first(n).unwrap();
        let keys = keygen_all(&parties, t, seed);
        assert_consistent(&keys, &parties, t);
        let root = keys[0].public_key;

        // All n make nonce commitments; then exactly t of them sign ...
        let presignatures = presign_all(&keys, &parties, seed);
        let signers = Participants::new(parties.iter().skip(n as usize - t)).unwrap();
        let message = vec![0x5a; 32];
        let t1 = task("alice.near", "solana-1", message.clone());
        let signatures = sign_all(&keys, presignatures, &signers, &t1, seed);
        assert_eq!(signatures.len(), t);
        assert!(signatures.iter().all(|s| s == &signatures[0]));
        assert_valid(&signatures[0], &root, "alice.near", "solana-1", &message);
        let derived = root.derive_for("alice.near", "solana-1");
        eddsa::verify(&derived, &message, &signatures[0]).expect("verifies as made");
        // What a peer could send instead: another message, key or signature.
        let mut forged = signatures[0];
        forged.0[40] ^= 1;
        for (key, message, signature) in [
            (derived, &[0x5b; 32][..], &signatures[0]),
            (root, &message[..], &signatures[0]),
            (derived, &message[..], &forged),
        ] {
            assert!(matches!(
                eddsa::verify(&key, message, signature),
                Err(Error::VerificationFailed(_))
            ));
        }

        // ... and all n sign (more than t), another key and a long message.
        let presignatures = presign_all(&keys, &parties, seed + 100);
        let message = vec![0xa5; 1232];
        let t2 = task("bob.near", "", message.clone());
        let signatures = sign_all(&keys, presignatures, &parties, &t2, seed + 100);
        assert_eq!(signatures.len(), n as usize);
        assert!(signatures.iter().all(|s| s == &signatures[0]));
        assert_valid(&signatures[0], &root, "bob.near", "", &message);
    }
}

#[test]
fn a_dropped_message_stalls_and_a_rerun_succeeds() {
    let parties = Participants::first(3).unwrap();
    for drop in [0, 4, 7, 10] {
        let instances = parties
            .iter()
            .map(|me| eddsa::keygen(id(6, 41), me, parties.clone(), 2).unwrap())
            .collect();
        let outcome = local::run(
            instances,
            &Schedule {
                shuffle_seed: Some(41),
                drop: Some(drop),
                ..Schedule::default()
            },
        );
        assert!(
            outcome.stalled,
            "drop {drop}: someone waits for the lost message"
        );
        assert!(outcome.failures.is_empty());
        assert!(outcome.outputs.len() < 3);
    }
    keygen_all(&parties, 2, 42);
}

#[test]
fn a_message_delivered_twice_counts_once_in_keygen_presign_and_sign() {
    let parties = Participants::first(3).unwrap();
    let keygens = local::run_with_each_message_twice(
        || {
            parties
                .iter()
                .map(|me| eddsa::keygen(id(6, 71), me, parties.clone(), 2).unwrap())
                .collect()
        },
        71,
    )
    .unwrap();
    for keys in &keygens {
        assert_consistent(keys, &parties, 2);
    }

    // Commitments and signing among a threshold subset, as the nodes make them;
    // each signing run starts from the same records, read back from their bytes.
    let keys = &keygens[0];
    let root = keys[0].public_key;
    let signers = set(&[0, 2]);
    let presignatures = local::run_with_each_message_twice(
        || {
            signers
                .iter()
                .map(|me| eddsa::presign(id(7, 72), me, signers.clone(), key_of(keys, me)).unwrap())
                .collect()
        },
        72,
    )
    .unwrap();
    let made: Vec<Vec<u8>> = presignatures[0]
        .iter()
        .map(EddsaPresignature::to_bytes)
        .collect();
    let message = vec![0x17; 50];
    let t = task("erin.near", "twice", message.clone());
    let signatures = local::run_with_each_message_twice(
        || {
            let presignatures = made
                .iter()
                .map(|p| EddsaPresignature::from_bytes(p).unwrap())
                .collect();
            sign_instances(keys, presignatures, &signers, &t, 73)
        },
        73,
    )
    .unwrap();
    for run in &signatures {
        assert!(run.iter().all(|s| s == &signatures[0][0]));
    }
    assert_valid(&signatures[0][0], &root, "erin.near", "twice", &message);
}

#[test]
fn garbled_payloads_abort_the_receiver_with_a_typed_error() {
    let parties = Participants::first(3).unwrap();
    // Keygen: 6 round-1, 6 round-2 and 6 round-3 messages.
    for garble in 0..18 {
        let instances = parties
            .iter()
            .map(|me| eddsa::keygen(id(6, 51), me, parties.clone(), 2).unwrap())
            .collect();
        let outcome = local::run(
            instances,
            &Schedule {
                shuffle_seed: Some(51),
                garble: Some(garble),
                ..Schedule::default()
            },
        );
        // The run failed for the orchestrator; whoever did finish holds a share
        // consistent with the others (never a bad one).
        let outputs = one_typed_failure(outcome, garble);
        assert!(outputs.len() < 3);
        if !outputs.is_empty() {
            assert_consistent(&outputs, &parties, 2);
        }
    }

    // Signing: a garbled share names its sender.
    let keys = keygen_all(&parties, 2, 52);
    for garble in 0..6 {
        let presignatures = presign_all(&keys, &parties, 52 + garble as u64);
        let t = task("a.near", "p", vec![1; 40]);
        let instances = sign_instances(&keys, presignatures, &parties, &t, 52);
        let outcome = local::run(
            instances,
            &Schedule {
                garble: Some(garble),
                ..Schedule::default()
            },
        );
        assert_eq!(outcome.failures.len(), 1, "{outcome:?}");
        // FIFO: message k comes from the k/2-th party.
        let sender = ParticipantId(garble as u32 / 2);
        for error in outcome.failures.values() {
            assert!(
                matches!(error, Error::Misbehaved { culprit, .. } if *culprit == sender),
                "{error:?}"
            );
        }
    }
}

#[test]
fn junk_strangers_other_instances_and_late_messages_are_refused() {
    let parties = Participants::first(3).unwrap();
    // Bytes that are no message are refused at the door; the run completes.
    let instances = parties
        .iter()
        .map(|me| eddsa::keygen(id(6, 61), me, parties.clone(), 2).unwrap())
        .collect();
    let outcome = local::run(
        instances,
        &Schedule {
            shuffle_seed: Some(61),
            noise: Some(3),
            ..Schedule::default()
        },
    );
    assert_eq!(outcome.refused.len(), 1);
    assert!(matches!(
        outcome.refused[0].1,
        Error::MalformedMessage(_) | Error::UnsupportedVersion(_)
    ));
    let keys = outcome.all_done().unwrap();

    let me = ParticipantId(0);
    let mut instance = eddsa::keygen(id(6, 62), me, parties.clone(), 2).unwrap();
    let mut other = eddsa::keygen(id(6, 63), ParticipantId(1), parties.clone(), 2).unwrap();
    let Step::Send(out) = other.poke().unwrap() else {
        panic!("keygen starts by sending")
    };
    assert_eq!(
        instance.receive(ParticipantId(9), &out.message),
        Err(Error::WrongParticipant(ParticipantId(9)))
    );
    assert_eq!(
        instance.receive(me, &out.message),
        Err(Error::WrongParticipant(me))
    );
    assert_eq!(
        instance.receive(ParticipantId(1), &out.message),
        Err(Error::WrongInstance)
    );
    // The same instance id under the ECDSA keygen kind is another instance.
    let mut ecdsa = threshold::keygen(id(6, 63), me, parties.clone(), 2).unwrap();
    assert_eq!(
        ecdsa.receive(ParticipantId(1), &out.message),
        Err(Error::WrongInstance)
    );
    // A payload for an unknown round aborts the receiver, naming the sender.
    let mut forged = out.message.clone();
    forged[threshold::wire::HEADER_LEN] = 9;
    let mut receiver = eddsa::keygen(id(6, 63), me, parties.clone(), 2).unwrap();
    receiver.receive(ParticipantId(1), &forged).unwrap();
    assert!(matches!(
        receiver.poke(),
        Err(Error::Misbehaved {
            culprit: ParticipantId(1),
            ..
        })
    ));
    assert!(matches!(receiver.poke(), Err(Error::WrongRound)));

    // A finished instance refuses everything.
    let presignatures = presign_all(&keys, &parties, 64);
    let t = task("a.near", "p", vec![2; 32]);
    let mut all = sign_instances(&keys, presignatures, &parties, &t, 64);
    let (outputs, failures, last) = drive(&mut all, |_, _, _| {});
    assert_eq!((outputs.len(), failures.len()), (3, 0));
    assert_eq!(
        all[0].receive(ParticipantId(1), &last),
        Err(Error::WrongRound)
    );
    assert!(matches!(all[0].poke(), Err(Error::WrongRound)));
}

type Tamper<'a> = dyn FnMut(ParticipantId, ParticipantId, &mut Vec<u8>) + 'a;

/// Runs `instances` by hand, FIFO, letting `tamper(from, to, message)` change any
/// delivery. Returns outputs, failures and the last message delivered.
#[allow(clippy::type_complexity)]
fn drive<T>(
    instances: &mut [Instance<T>],
    mut tamper: impl FnMut(ParticipantId, ParticipantId, &mut Vec<u8>),
) -> (
    BTreeMap<ParticipantId, T>,
    BTreeMap<ParticipantId, Error>,
    Vec<u8>,
) {
    let tamper: &mut Tamper = &mut tamper;
    let ids: Vec<ParticipantId> = instances.iter().map(|i| i.me()).collect();
    let mut queue = VecDeque::new();
    let (mut outputs, mut failures) = (BTreeMap::new(), BTreeMap::new());
    let mut last = Vec::new();
    let poke = |party: &mut Instance<T>,
                queue: &mut VecDeque<(ParticipantId, ParticipantId, Vec<u8>)>,
                outputs: &mut BTreeMap<ParticipantId, T>,
                failures: &mut BTreeMap<ParticipantId, Error>| {
        while !party.is_finished() {
            match party.poke() {
                Ok(Step::Wait) => break,
                Ok(Step::Done(out)) => {
                    outputs.insert(party.me(), out);
                }
                Ok(Step::Send(out)) => {
                    for to in ids.iter().copied().filter(|p| *p != party.me()) {
                        if out.to == Recipient::AllOthers || out.to == Recipient::One(to) {
                            queue.push_back((party.me(), to, out.message.clone()));
                        }
                    }
                }
                Err(e) => {
                    failures.insert(party.me(), e);
                }
            }
        }
    };
    for party in instances.iter_mut() {
        poke(party, &mut queue, &mut outputs, &mut failures);
    }
    while let Some((from, to, mut message)) = queue.pop_front() {
        tamper(from, to, &mut message);
        let party = instances.iter_mut().find(|p| p.me() == to).unwrap();
        if party.is_finished() {
            continue;
        }
        last = message.clone();
        if party.receive(from, &message).is_ok() {
            poke(party, &mut queue, &mut outputs, &mut failures);
        }
    }
    (outputs, failures, last)
}

#[test]
fn an_invalid_signature_share_is_caught_and_its_sender_named() {
    let parties = Participants::first(4).unwrap();
    let keys = keygen_all(&parties, 3, 71);
    for cheater in [0u32, 2, 3] {
        let cheater = ParticipantId(cheater);
        let presignatures = presign_all(&keys, &parties, 72 + u64::from(cheater.0));
        let t = task("mallory.near", "x", vec![3; 100]);
        let mut instances = sign_instances(&keys, presignatures, &parties, &t, 72);
        // The cheater's share z becomes z + 1: well-formed, but wrong.
        let (outputs, failures, _) = drive(&mut instances, |from, _, message| {
            if from == cheater {
                let at = message.len() - 32;
                let z: [u8; 32] = message[at..].try_into().unwrap();
                let z = Scalar::from_canonical_bytes(z).unwrap() + Scalar::ONE;
                message[at..].copy_from_slice(z.as_bytes());
            }
        });
        // (The tampering is in transit: the cheater's own instance saw only good
        // shares.) Every honest signer refuses to output and names the cheater.
        assert_eq!(outputs.keys().collect::<Vec<_>>(), vec![&cheater]);
        assert_eq!(failures.len(), 3, "every honest signer catches it");
        for error in failures.values() {
            assert!(
                matches!(error, Error::Misbehaved { culprit, .. } if *culprit == cheater),
                "{error:?}"
            );
        }
    }
}

#[test]
fn the_confirmation_round_catches_an_equivocating_dealer() {
    // Party 0 runs keygen twice under one instance id and shows party 1 the first
    // round-1 package, party 2 the second: each is valid on its own.
    let parties = Participants::first(3).unwrap();
    let instance = id(6, 81);
    let mut twin = eddsa::keygen(instance, ParticipantId(0), parties.clone(), 2).unwrap();
    let Step::Send(other_package) = twin.poke().unwrap() else {
        panic!("keygen starts by sending")
    };
    let mut instances: Vec<_> = parties
        .iter()
        .map(|me| eddsa::keygen(instance, me, parties.clone(), 2).unwrap())
        .collect();
    let mut first = true;
    let (outputs, failures, _) = drive(&mut instances, |from, to, message| {
        if from == ParticipantId(0) && to == ParticipantId(2) && first {
            first = false;
            *message = other_package.message.clone();
        }
    });
    assert!(outputs.is_empty(), "{outputs:?}");
    for who in [1, 2] {
        assert!(
            matches!(&failures[&ParticipantId(who)], Error::VerificationFailed(why) if why.contains("other round-1 packages")),
            "{failures:?}"
        );
    }
}

#[test]
fn bad_parameters_are_refused_up_front() {
    let three = Participants::first(3).unwrap();
    for t in [0, 1, 4] {
        assert!(matches!(
            eddsa::keygen(id(6, 91), ParticipantId(0), three.clone(), t),
            Err(Error::BadParameters(_))
        ));
    }
    assert!(matches!(
        eddsa::keygen(id(6, 91), ParticipantId(7), three.clone(), 2),
        Err(Error::BadParameters(_))
    ));
    let keys = keygen_all(&three, 2, 92);
    // Presigning with a key of someone else, or with non-holders.
    assert!(matches!(
        eddsa::presign(id(7, 93), ParticipantId(0), three.clone(), &keys[1]),
        Err(Error::BadParameters(_))
    ));
    assert!(matches!(
        eddsa::presign(id(7, 93), ParticipantId(0), set(&[0, 5]), &keys[0]),
        Err(Error::BadParameters(_))
    ));
    // Signers outside the presignature's set, or fewer than the threshold.
    let presignatures = presign_all(&keys, &set(&[0, 1]), 94);
    let t = task("a.near", "p", vec![1; 32]);
    let mut presignatures = presignatures.into_iter();
    assert!(matches!(
        eddsa::sign(
            id(8, 95),
            ParticipantId(0),
            set(&[0, 2]),
            &keys[0],
            presignatures.next().unwrap(),
            &t
        ),
        Err(Error::BadParameters(_))
    ));
    let keys3 = keygen_all(&three, 3, 96);
    let presignatures = presign_all(&keys3, &three, 97);
    assert!(matches!(
        eddsa::sign(
            id(8, 98),
            ParticipantId(0),
            set(&[0, 1]),
            &keys3[0],
            presignatures.into_iter().next().unwrap(),
            &t
        ),
        Err(Error::BadParameters(_))
    ));
    // A presignature for another key.
    let presignatures = presign_all(&keys3, &three, 99);
    assert!(matches!(
        eddsa::sign(
            id(8, 99),
            ParticipantId(0),
            three.clone(),
            &keys[0],
            presignatures.into_iter().next().unwrap(),
            &t
        ),
        Err(Error::BadParameters(_))
    ));
}

#[test]
fn records_round_trip_and_refuse_corruption() {
    let parties = Participants::first(3).unwrap();
    let keys = keygen_all(&parties, 2, 101);
    let presignatures = presign_all(&keys, &parties, 102);

    let key_bytes = keys[1].to_bytes();
    assert_eq!(key_bytes[0], threshold::RECORD_VERSION);
    assert_eq!(EddsaKeyShare::from_bytes(&key_bytes).unwrap(), keys[1]);
    let json = serde_json::to_string(&keys[1]).unwrap();
    assert_eq!(
        serde_json::from_str::<EddsaKeyShare>(&json).unwrap(),
        keys[1]
    );
    assert!(format!("{:?}", keys[1]).contains("<secret>"));

    let presig_bytes = presignatures[2].to_bytes();
    assert!(EddsaPresignature::from_bytes(&presig_bytes).unwrap() == presignatures[2]);
    let json = serde_json::to_string(&presignatures[2]).unwrap();
    assert!(serde_json::from_str::<EddsaPresignature>(&json).unwrap() == presignatures[2]);

    let mut future = key_bytes.clone();
    future[0] = 9;
    assert_eq!(
        EddsaKeyShare::from_bytes(&future),
        Err(Error::UnsupportedVersion(9))
    );
    assert!(matches!(
        EddsaKeyShare::from_bytes(&key_bytes[..40]),
        Err(Error::CorruptRecord(_))
    ));
    assert!(matches!(
        EddsaKeyShare::from_bytes(&[]),
        Err(Error::CorruptRecord(_))
    ));

    // Layout: version, me, participant count + ids, threshold, signing share,
    // verifying share count, verifying shares, group key.
    let share_at = 1 + 4 + 4 + 3 * 4 + 4;
    let mut bad = key_bytes.clone();
    bad[share_at] ^= 1; // another share: no longer matches its verifying share
    assert!(matches!(
        EddsaKeyShare::from_bytes(&bad),
        Err(Error::CorruptRecord(_))
    ));
    let mut bad = key_bytes.clone();
    bad[share_at..share_at + 32].copy_from_slice(&[0xff; 32]); // not below ℓ
    assert!(matches!(
        EddsaKeyShare::from_bytes(&bad),
        Err(Error::CorruptRecord(_))
    ));
    let group_at = key_bytes.len() - 32;
    let mut bad = key_bytes.clone();
    bad[group_at..].copy_from_slice(keys[0].verifying_shares[&ParticipantId(0)].as_bytes());
    assert!(matches!(
        EddsaKeyShare::from_bytes(&bad),
        Err(Error::CorruptRecord(_))
    ));
    let mut bad = key_bytes.clone();
    let mut off = [0u8; 32];
    off[0] = 2; // y = 2 is on no Ed25519 point
    bad[group_at..].copy_from_slice(&off);
    assert!(matches!(
        EddsaKeyShare::from_bytes(&bad),
        Err(Error::CorruptRecord(_))
    ));

    // Presignature: version, me, ids, threshold, group key, hiding, binding, ...
    let hiding_at = 1 + 4 + 4 + 3 * 4 + 4 + 32;
    let mut bad = presig_bytes.clone();
    bad[hiding_at] ^= 1;
    assert!(matches!(
        EddsaPresignature::from_bytes(&bad),
        Err(Error::CorruptRecord(_))
    ));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(10))]

    /// Any (n, 2 ≤ t ≤ n), account, path and message length: the signature of a
    /// random t-subset verifies for the derived key.
    #[test]
    fn any_size_tweak_and_message_signs_correctly(
        n in 2u32..=5,
        t_seed in 0usize..100,
        account in "[a-z0-9_-]{2,12}\\.(near|testnet)",
        path in "\\PC{0,24}",
        message in proptest::collection::vec(proptest::num::u8::ANY, 32..=1232),
        skip in 0usize..5,
        seed in 0u64..1_000_000,
    ) {
        let t = 2 + t_seed % (n as usize - 1);
        let parties = Participants::first(n).unwrap();
        let keys = keygen_all(&parties, t, seed);
        let root = keys[0].public_key;
        let holders: Vec<ParticipantId> = parties.iter().collect();
        let signers = Participants::new(
            (0..t).map(|i| holders[(i + skip) % n as usize]),
        ).unwrap();
        let presignatures = presign_all(&keys, &signers, seed);
        let sign_task = EddsaSignTask {
            payload: EddsaPayload::new(message.clone()).unwrap(),
            tweak: Ed25519Tweak::derive(&account, &path),
        };
        let signatures = sign_all(&keys, presignatures, &signers, &sign_task, seed);
        assert_valid(&signatures[0], &root, &account, &path, &message);
    }
}
