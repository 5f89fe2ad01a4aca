//! FROST Ed25519: every protocol with all parties in one process, on the
//! deterministic local network with shuffled delivery and injected faults. Every
//! signature is checked with ed25519-dalek's `verify_strict` against the derived
//! key computed by `primitives`, and again with the RFC 8032 equation computed
//! directly on curve25519-dalek points.

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::Scalar;
use primitives::ed25519::{Ed25519PublicKey, Ed25519Tweak};
use primitives::{Ed25519Signature, EddsaPayload};
use sha2::{Digest, Sha512};
use std::collections::{BTreeMap, VecDeque};
use threshold::eddsa::{self, EddsaKeyShare, EddsaPresignature, EddsaSignTask};
use threshold::local::{self, Schedule};
use threshold::{Error, Instance, InstanceId, ParticipantId, Participants, Recipient, Step};

fn id(tag: u8, n: u64) -> InstanceId {
    let mut bytes = [tag; 32];
    bytes[..8].copy_from_slice(&n.to_le_bytes());
    InstanceId(bytes)
}

fn shuffled(seed: u64) -> Schedule {
    Schedule {
        shuffle_seed: Some(seed),
        ..Schedule::default()
    }
}

fn set(ids: &[u32]) -> Participants {
    Participants::new(ids.iter().copied().map(ParticipantId)).unwrap()
}

fn keygen_all(parties: &Participants, threshold: usize, seed: u64) -> Vec<EddsaKeyShare> {
    let instances = parties
        .iter()
        .map(|me| eddsa::keygen(id(6, seed), me, parties.clone(), threshold).unwrap())
        .collect();
    local::run(instances, &shuffled(seed)).all_done().unwrap()
}

fn key_of(keys: &[EddsaKeyShare], me: ParticipantId) -> &EddsaKeyShare {
    keys.iter().find(|k| k.me == me).unwrap()
}

/// Presignatures of `holders` (a subset of the key holders), in participant order.
fn presign_all(
    keys: &[EddsaKeyShare],
    holders: &Participants,
    seed: u64,
) -> Vec<EddsaPresignature> {
    let instances = holders
        .iter()
        .map(|me| eddsa::presign(id(7, seed), me, holders.clone(), key_of(keys, me)).unwrap())
        .collect();
    local::run(instances, &shuffled(seed)).all_done().unwrap()
}

fn sign_instances(
    keys: &[EddsaKeyShare],
    presignatures: Vec<EddsaPresignature>,
    signers: &Participants,
    task: &EddsaSignTask,
    seed: u64,
) -> Vec<Instance<Ed25519Signature>> {
    presignatures
        .into_iter()
        .filter(|p| signers.contains(p.me))
        .map(|p| {
            let me = p.me;
            eddsa::sign(id(8, seed), me, signers.clone(), key_of(keys, me), p, task).unwrap()
        })
        .collect()
}

fn sign_all(
    keys: &[EddsaKeyShare],
    presignatures: Vec<EddsaPresignature>,
    signers: &Participants,
    task: &EddsaSignTask,
    seed: u64,
) -> Vec<Ed25519Signature> {
    let instances = sign_instances(keys, presignatures, signers, task, seed);
    local::run(instances, &shuffled(seed)).all_done().unwrap()
}

fn task(predecessor: &str, path: &str, message: Vec<u8>) -> EddsaSignTask {
    EddsaSignTask {
        payload: EddsaPayload::new(message).unwrap(),
        tweak: Ed25519Tweak::derive(predecessor, path),
    }
}

/// Checks a signature as a Solana validator (ed25519-dalek, strict) and, separately,
/// by the RFC 8032 equation [S]B = R + [k]A, k = SHA-512(R ‖ A ‖ M) mod ℓ.
fn assert_valid(
    signature: &Ed25519Signature,
    root: &Ed25519PublicKey,
    predecessor: &str,
    path: &str,
    message: &[u8],
) {
    let derived = root.derive_for(predecessor, path);
    let key = ed25519_dalek::VerifyingKey::from_bytes(derived.as_bytes()).unwrap();
    key.verify_strict(message, &ed25519_dalek::Signature::from_bytes(&signature.0))
        .expect("ed25519-dalek verifies the signature for the derived key");

    let (r_bytes, s_bytes) = signature.0.split_at(32);
    let r = CompressedEdwardsY(r_bytes.try_into().unwrap())
        .decompress()
        .expect("R is a point");
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes.try_into().unwrap()))
        .expect("S is canonical");
    let a = CompressedEdwardsY(*derived.as_bytes())
        .decompress()
        .unwrap();
    let mut hash = Sha512::new();
    hash.update(r_bytes);
    hash.update(derived.as_bytes());
    hash.update(message);
    let k = Scalar::from_bytes_mod_order_wide(&hash.finalize().into());
    assert_eq!(EdwardsPoint::mul_base(&s), r + k * a, "RFC 8032 equation");
}

/// Every output key share is consistent: same group key, parameters, verifying
/// shares, and its own share matches (the record round-trip re-checks that).
fn assert_consistent(keys: &[EddsaKeyShare], parties: &Participants, threshold: usize) {
    for key in keys {
        assert_eq!(key.public_key, keys[0].public_key);
        assert_eq!(key.verifying_shares, keys[0].verifying_shares);
        assert_eq!(&key.participants, parties);
        assert_eq!(key.threshold, threshold);
        assert_eq!(&EddsaKeyShare::from_bytes(&key.to_bytes()).unwrap(), key);
    }
}

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
        assert_eq!(outcome.failures.len(), 1, "garble {garble}: {outcome:?}");
        for error in outcome.failures.values() {
            assert!(
                matches!(
                    error,
                    Error::Misbehaved { .. } | Error::VerificationFailed(_)
                ),
                "{error:?}"
            );
        }
        // The run failed for the orchestrator; whoever did finish holds a share
        // consistent with the others (never a bad one).
        let outputs: Vec<EddsaKeyShare> = outcome.outputs.into_values().collect();
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

// ---------------------------------------------------------------- resharing

use threshold::eddsa::EddsaReshareArgs;

/// Reshares `old` (the old holders' shares) to `new_set` with `new_t`, every
/// party of `new_set` taking part; returns the new shares in participant order.
fn reshare_instances(
    old: &[EddsaKeyShare],
    new_set: &Participants,
    new_t: usize,
    seed: u64,
) -> Vec<Instance<EddsaKeyShare>> {
    let args = EddsaReshareArgs::new(&old[0], new_set.clone(), new_t);
    new_set
        .iter()
        .map(|me| {
            let mine = old.iter().find(|k| k.me == me);
            eddsa::reshare(id(9, seed), me, args.clone(), mine).unwrap()
        })
        .collect()
}

fn reshare_all(
    old: &[EddsaKeyShare],
    new_set: &Participants,
    new_t: usize,
    seed: u64,
) -> Vec<EddsaKeyShare> {
    let instances = reshare_instances(old, new_set, new_t, seed);
    local::run(instances, &shuffled(seed)).all_done().unwrap()
}

/// Presigns among `signers` with `keys` and signs; the signature verifies for
/// the derived key of `root`.
fn sign_with(keys: &[EddsaKeyShare], signers: &Participants, root: &Ed25519PublicKey, seed: u64) {
    let presignatures = presign_all(keys, signers, seed);
    let message = seed.to_le_bytes().repeat(5);
    let t = task("carol.near", "after-reshare", message.clone());
    let signatures = sign_all(keys, presignatures, signers, &t, seed);
    assert!(signatures.iter().all(|s| s == &signatures[0]));
    assert_valid(
        &signatures[0],
        root,
        "carol.near",
        "after-reshare",
        &message,
    );
}

/// λ at 0 of `me` within `set`, frost identifiers id + 1.
fn lagrange_at_zero(me: ParticipantId, set: &[ParticipantId]) -> Scalar {
    let x = |p: ParticipantId| Scalar::from(u64::from(p.0) + 1);
    let (mut num, mut den) = (Scalar::ONE, Scalar::ONE);
    for &other in set.iter().filter(|p| **p != me) {
        num *= x(other);
        den *= x(other) - x(me);
    }
    num * den.invert()
}

fn interpolate(points: &[(ParticipantId, Ed25519PublicKey)]) -> EdwardsPoint {
    let set: Vec<ParticipantId> = points.iter().map(|(p, _)| *p).collect();
    points
        .iter()
        .map(|(p, y)| lagrange_at_zero(*p, &set) * y.point())
        .sum()
}

#[test]
fn reshare_join_leave_and_threshold_change_keep_the_group_key_and_sign() {
    /// (old set, old t, new set, new t, signers afterwards)
    type Case<'a> = (&'a [u32], usize, &'a [u32], usize, &'a [u32]);
    let cases: [Case; 4] = [
        (&[0, 1, 2], 2, &[0, 1, 2, 3], 3, &[1, 2, 3]), // join
        (&[0, 1, 2, 3], 3, &[0, 2, 3], 2, &[0, 3]),    // leave
        (&[0, 1, 2], 2, &[0, 1, 2], 3, &[0, 1, 2]),    // threshold change
        (&[0, 1, 2, 3], 2, &[1, 3, 4, 5, 6], 4, &[3, 4, 5, 6]), // join and leave
    ];
    for (case, (old_set, old_t, new_set, new_t, signers)) in cases.into_iter().enumerate() {
        let seed = 200 + case as u64 * 10;
        let (old_set, new_set, signers) = (set(old_set), set(new_set), set(signers));
        let old = keygen_all(&old_set, old_t, seed);
        let root = old[0].public_key;
        let new = reshare_all(&old, &new_set, new_t, seed + 1);
        assert_eq!(new.len(), new_set.len());
        assert_consistent(&new, &new_set, new_t);
        assert_eq!(
            new[0].public_key, root,
            "case {case}: the group key is kept"
        );
        // Shares are fresh: no holder keeps its old verifying share.
        for key in &new {
            if let Some(before) = old.iter().find(|k| k.me == key.me) {
                assert_ne!(
                    before.verifying_shares[&key.me],
                    key.verifying_shares[&key.me]
                );
            }
        }
        // new_t new verifying shares interpolate to the key; new_t − 1 new ones
        // with an old one (old shares do not combine with new) do not.
        let fresh: Vec<_> = new[0]
            .verifying_shares
            .iter()
            .take(new_t)
            .map(|(p, y)| (*p, *y))
            .collect();
        assert_eq!(interpolate(&fresh), *root.point());
        let mut mixed = fresh.clone();
        let (leaver, stale) = old[0].verifying_shares.iter().last().unwrap();
        mixed.retain(|(p, _)| p != leaver);
        mixed.truncate(new_t - 1);
        mixed.push((*leaver, *stale));
        assert_ne!(interpolate(&mixed), *root.point());
        // Newcomers and old holders sign together with the new shares.
        sign_with(&new, &signers, &root, seed + 2);
        // And the new shares reshare again (same set, back to the old threshold).
        let back = reshare_all(&new, &new_set, old_t, seed + 3);
        assert_consistent(&back, &new_set, old_t);
        assert_eq!(back[0].public_key, root);
        let last_t = Participants::new(new_set.iter().skip(new_set.len() - old_t)).unwrap();
        sign_with(&back, &last_t, &root, seed + 4);
    }
}

#[test]
fn reshare_a_dropped_message_stalls_garbage_aborts_and_junk_is_refused() {
    let old_set = Participants::first(3).unwrap();
    let new_set = Participants::first(4).unwrap();
    let old = keygen_all(&old_set, 2, 301);
    // 3 dealers: 3 commitments to 3 others, 3 shares to 3 others; 4 × 3 digests.
    let messages = 9 + 9 + 12;
    for drop in [0, 5, 11, 20, messages - 1] {
        let outcome = local::run(
            reshare_instances(&old, &new_set, 3, 302),
            &Schedule {
                shuffle_seed: Some(302),
                drop: Some(drop),
                ..Schedule::default()
            },
        );
        assert!(outcome.stalled, "drop {drop}");
        assert!(outcome.failures.is_empty(), "drop {drop}: {outcome:?}");
        assert!(outcome.outputs.len() < 4);
    }
    for garble in 0..messages {
        let outcome = local::run(
            reshare_instances(&old, &new_set, 3, 303),
            &Schedule {
                shuffle_seed: Some(303),
                garble: Some(garble),
                ..Schedule::default()
            },
        );
        assert_eq!(outcome.failures.len(), 1, "garble {garble}: {outcome:?}");
        for error in outcome.failures.values() {
            assert!(
                matches!(
                    error,
                    Error::Misbehaved { .. } | Error::VerificationFailed(_)
                ),
                "{error:?}"
            );
        }
        let outputs: Vec<EddsaKeyShare> = outcome.outputs.into_values().collect();
        assert!(outputs.len() < 4);
        if !outputs.is_empty() {
            assert_consistent(&outputs, &new_set, 3);
            assert_eq!(outputs[0].public_key, old[0].public_key);
        }
    }
    let outcome = local::run(
        reshare_instances(&old, &new_set, 3, 304),
        &Schedule {
            shuffle_seed: Some(304),
            noise: Some(7),
            ..Schedule::default()
        },
    );
    assert_eq!(outcome.refused.len(), 1);
    let new = outcome.all_done().unwrap();
    assert_consistent(&new, &new_set, 3);

    // A newcomer (not a dealer) that sends a round-1 commitment is named.
    let mut dealer = reshare_instances(&old, &new_set, 3, 305).remove(0);
    let Step::Send(out) = dealer.poke().unwrap() else {
        panic!("a dealer starts by sending")
    };
    let mut receiver = reshare_instances(&old, &new_set, 3, 305).remove(1);
    receiver.receive(ParticipantId(3), &out.message).unwrap();
    assert!(matches!(
        receiver.poke(),
        Err(Error::Misbehaved {
            culprit: ParticipantId(3),
            ..
        })
    ));
}

/// Runs `instances` in lock-step batches: everything sent in a batch is handed
/// to `tamper` as a whole (from, to, message), then delivered.
#[allow(clippy::type_complexity)]
fn batched<T>(
    instances: &mut [Instance<T>],
    mut tamper: impl FnMut(usize, &mut Vec<(ParticipantId, ParticipantId, Vec<u8>)>),
) -> (BTreeMap<ParticipantId, T>, BTreeMap<ParticipantId, Error>) {
    let ids: Vec<ParticipantId> = instances.iter().map(|i| i.me()).collect();
    let (mut outputs, mut failures) = (BTreeMap::new(), BTreeMap::new());
    for batch_no in 0.. {
        let mut batch = Vec::new();
        for party in instances.iter_mut() {
            while !party.is_finished() {
                match party.poke() {
                    Ok(Step::Wait) => break,
                    Ok(Step::Done(out)) => {
                        outputs.insert(party.me(), out);
                    }
                    Ok(Step::Send(out)) => {
                        for to in ids.iter().copied().filter(|p| *p != party.me()) {
                            if out.to == Recipient::AllOthers || out.to == Recipient::One(to) {
                                batch.push((party.me(), to, out.message.clone()));
                            }
                        }
                    }
                    Err(e) => {
                        failures.insert(party.me(), e);
                    }
                }
            }
        }
        if batch.is_empty() {
            break;
        }
        tamper(batch_no, &mut batch);
        for (from, to, message) in batch {
            let party = instances.iter_mut().find(|p| p.me() == to).unwrap();
            if !party.is_finished() {
                let _ = party.receive(from, &message);
            }
        }
    }
    (outputs, failures)
}

const ROUND_AT: usize = threshold::wire::HEADER_LEN;

#[test]
fn reshare_a_dealer_that_sends_a_wrong_share_is_named() {
    let old_set = Participants::first(4).unwrap();
    let old = keygen_all(&old_set, 3, 401);
    let new_set = set(&[0, 1, 2, 4]);
    for cheater in [0u32, 2] {
        let cheater = ParticipantId(cheater);
        let victim = ParticipantId(4);
        let mut instances = reshare_instances(&old, &new_set, 2, 402 + u64::from(cheater.0));
        let (outputs, failures) = batched(&mut instances, |_, batch| {
            for (from, to, message) in batch.iter_mut() {
                if *from == cheater && *to == victim && message[ROUND_AT] == 2 {
                    let at = ROUND_AT + 1;
                    let share: [u8; 32] = message[at..].try_into().unwrap();
                    let share = Scalar::from_canonical_bytes(share).unwrap() + Scalar::ONE;
                    message[at..].copy_from_slice(share.as_bytes());
                }
            }
        });
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(
            matches!(&failures[&victim], Error::Misbehaved { culprit, reason } if *culprit == cheater && reason.contains("fails its commitment")),
            "{failures:?}"
        );
        // The others' shares are fine (and the victim holds none).
        assert_eq!(outputs.len(), 3);
        let outputs: Vec<EddsaKeyShare> = outputs.into_values().collect();
        assert_consistent(&outputs, &new_set, 2);
    }
}

#[test]
fn reshare_a_dealer_that_shares_another_secret_is_refused() {
    // Dealer 1 shares f(x) + 1 instead of f(x): its commitment's constant term
    // moves by B and every share by 1, so each share matches the commitment and
    // everyone sees the same commitments (the cheater even confirms the digest
    // the others compute) — only the check against its old verifying share fails.
    let old_set = Participants::first(3).unwrap();
    let old = keygen_all(&old_set, 2, 501);
    let new_set = Participants::first(4).unwrap();
    let cheater = ParticipantId(1);
    let mut instances = reshare_instances(&old, &new_set, 3, 502);
    let (outputs, failures) = batched(&mut instances, |batch_no, batch| {
        let honest_digest = batch
            .iter()
            .find(|(from, _, m)| *from != cheater && m[ROUND_AT] == 3)
            .map(|(_, _, m)| m.clone());
        for (from, _, message) in batch.iter_mut() {
            if *from != cheater {
                continue;
            }
            match message[ROUND_AT] {
                1 => {
                    let at = ROUND_AT + 1;
                    let c0 = CompressedEdwardsY(message[at..at + 32].try_into().unwrap())
                        .decompress()
                        .unwrap();
                    let moved = c0 + EdwardsPoint::mul_base(&Scalar::ONE);
                    message[at..at + 32].copy_from_slice(moved.compress().as_bytes());
                }
                2 => {
                    let at = ROUND_AT + 1;
                    let share: [u8; 32] = message[at..].try_into().unwrap();
                    let share = Scalar::from_canonical_bytes(share).unwrap() + Scalar::ONE;
                    message[at..].copy_from_slice(share.as_bytes());
                }
                3 => {
                    assert_eq!(batch_no, 1);
                    *message = honest_digest.clone().unwrap();
                }
                _ => {}
            }
        }
    });
    assert!(
        outputs.is_empty(),
        "nobody keeps a share of another key: {outputs:?}"
    );
    for (who, error) in &failures {
        if *who != cheater {
            assert!(
                matches!(error, Error::Misbehaved { culprit, reason } if *culprit == cheater && reason.contains("constant term")),
                "{who:?}: {error:?}"
            );
        }
    }
    assert_eq!(failures.len(), 4, "{failures:?}");
}

#[test]
fn reshare_the_confirmation_round_catches_an_equivocating_dealer() {
    // Dealer 0 deals twice under one instance and shows party 3 the second
    // dealing (commitment and share, each valid on its own).
    let old_set = Participants::first(3).unwrap();
    let old = keygen_all(&old_set, 2, 601);
    let new_set = Participants::first(4).unwrap();
    let mut twin = reshare_instances(&old, &new_set, 2, 602).remove(0);
    let mut twin_messages = Vec::new();
    while let Ok(Step::Send(out)) = twin.poke() {
        twin_messages.push(out);
    }
    let mut instances = reshare_instances(&old, &new_set, 2, 602);
    let (outputs, failures) = batched(&mut instances, |_, batch| {
        for (from, to, message) in batch.iter_mut() {
            if *from == ParticipantId(0) && *to == ParticipantId(3) && message[ROUND_AT] != 3 {
                *message = twin_messages
                    .iter()
                    .find(|out| {
                        out.message[ROUND_AT] == message[ROUND_AT]
                            && (out.to == Recipient::AllOthers
                                || out.to == Recipient::One(ParticipantId(3)))
                    })
                    .unwrap()
                    .message
                    .clone();
            }
        }
    });
    assert!(outputs.is_empty(), "{outputs:?}");
    assert_eq!(failures.len(), 4);
    for error in failures.values() {
        assert!(
            matches!(error, Error::VerificationFailed(why) if why.contains("other resharing commitments")),
            "{error:?}"
        );
    }
}

#[test]
fn reshare_a_newcomer_given_wrong_public_inputs_fails_without_blaming_anyone() {
    let old_set = Participants::first(3).unwrap();
    let old = keygen_all(&old_set, 2, 701);
    let other_key = keygen_all(&old_set, 2, 702);
    let new_set = Participants::first(4).unwrap();
    let mut instances = reshare_instances(&old, &new_set, 3, 703);
    // Party 3 is told the facts of another key (self-consistent, so accepted).
    instances[3] = eddsa::reshare(
        id(9, 703),
        ParticipantId(3),
        EddsaReshareArgs::new(&other_key[0], new_set.clone(), 3),
        None,
    )
    .unwrap();
    let (outputs, failures) = batched(&mut instances, |_, _| {});
    assert!(outputs.is_empty());
    assert_eq!(failures.len(), 4);
    assert!(failures
        .values()
        .all(|e| matches!(e, Error::VerificationFailed(_))));
}

#[test]
fn reshare_bad_parameters_are_refused_up_front() {
    let old_set = Participants::first(4).unwrap();
    let old = keygen_all(&old_set, 3, 801);
    let other = keygen_all(&old_set, 3, 802);
    let new_set = Participants::first(5).unwrap();
    let args = EddsaReshareArgs::new(&old[0], new_set.clone(), 3);
    let refused = |me: u32, args: EddsaReshareArgs, share: Option<&EddsaKeyShare>| {
        matches!(
            eddsa::reshare(id(9, 803), ParticipantId(me), args, share),
            Err(Error::BadParameters(_))
        )
    };
    assert!(
        refused(0, args.clone(), None),
        "an old holder without its share"
    );
    assert!(
        refused(4, args.clone(), Some(&old[0])),
        "a newcomer with a share"
    );
    assert!(
        refused(0, args.clone(), Some(&old[1])),
        "someone else's share"
    );
    assert!(
        refused(0, args.clone(), Some(&other[0])),
        "a share of another key"
    );
    assert!(refused(9, args.clone(), None), "not a new participant");
    for t in [0, 1, 6] {
        let mut bad = args.clone();
        bad.new_threshold = t;
        assert!(refused(4, bad, None), "new threshold {t}");
    }
    // Fewer than old_threshold old holders stay: nobody can deal.
    let few = EddsaReshareArgs::new(&old[0], set(&[0, 1, 7]), 2);
    assert!(refused(7, few, None));
    // Verifying shares that do not interpolate to the key.
    let mut bad = args.clone();
    bad.old_verifying_shares = other[0].verifying_shares.clone();
    assert!(refused(4, bad, None));
    let mut bad = args.clone();
    bad.old_verifying_shares.remove(&ParticipantId(2));
    assert!(refused(4, bad, None));
    assert!(!refused(4, args, None));
}
