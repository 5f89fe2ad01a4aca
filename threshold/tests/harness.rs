//! All parties of every protocol in one process, on the deterministic local network
//! with shuffled delivery and injected faults. Every signature is checked with k256
//! and with libsecp256k1 (the `secp256k1` crate) against the derived key computed by
//! `primitives`.

use k256::AffinePoint;
use primitives::derivation::{derive_public_key_for, Tweak};
use primitives::{near_key, EcdsaPayload, EcdsaSignature};
use threshold::local::{self, Schedule};
use threshold::{
    generate_triple, keygen, presign, reshare, sign, Error, KeyShare, ParticipantId, Participants,
    Presignature, ReshareArgs, SignTask, Triple,
};

use threshold::local::{instance_id as id, shuffled};

fn keygen_all(parties: &Participants, threshold: usize, seed: u64) -> Vec<KeyShare> {
    let instances = parties
        .iter()
        .map(|me| keygen(id(1, seed), me, parties.clone(), threshold).unwrap())
        .collect();
    local::run(instances, &shuffled(seed)).all_done().unwrap()
}

fn triples_all(parties: &Participants, threshold: usize, seed: u64) -> Vec<Triple> {
    let instances = parties
        .iter()
        .map(|me| generate_triple(id(3, seed), me, parties.clone(), threshold).unwrap())
        .collect();
    local::run(instances, &shuffled(seed)).all_done().unwrap()
}

/// Presignatures of `signers` (a subset of the key holders), in participant order.
fn presign_all(keys: &[KeyShare], signers: &Participants, seed: u64) -> Vec<Presignature> {
    let threshold = keys[0].threshold;
    let first = triples_all(signers, threshold, seed);
    let second = triples_all(signers, threshold, seed + 1000);
    let instances = signers
        .iter()
        .zip(first.into_iter().zip(second))
        .map(|(me, (t0, t1))| {
            let key = keys.iter().find(|k| k.me == me).unwrap();
            presign(id(4, seed), me, signers.clone(), key, t0, t1).unwrap()
        })
        .collect();
    local::run(instances, &shuffled(seed)).all_done().unwrap()
}

fn task(predecessor: &str, path: &str, payload: [u8; 32], entropy: [u8; 32]) -> SignTask {
    SignTask {
        payload: EcdsaPayload::new(payload).unwrap(),
        tweak: Tweak::derive(predecessor, path).unwrap(),
        entropy,
    }
}

fn sign_all(
    presignatures: Vec<Presignature>,
    signers: &Participants,
    root: &AffinePoint,
    task: &SignTask,
    seed: u64,
) -> Vec<EcdsaSignature> {
    let instances = presignatures
        .into_iter()
        .filter(|p| signers.is_subset_of(&p.participants))
        .zip(signers.iter())
        .map(|(p, me)| sign(id(5, seed), me, signers.clone(), p, root, task).unwrap())
        .collect();
    local::run(instances, &shuffled(seed)).all_done().unwrap()
}

/// Checks a response the way the contract and a relayer would, twice independently.
fn assert_valid(
    response: &EcdsaSignature,
    root: &AffinePoint,
    predecessor: &str,
    path: &str,
    task: &SignTask,
) {
    let derived = derive_public_key_for(root, predecessor, path).unwrap();
    response
        .verify(&task.payload, &derived)
        .expect("k256 verifies the signature for the derived key");

    let secp = secp256k1::Secp256k1::verification_only();
    let rs = response.check_form().unwrap();
    let recovery = secp256k1::ecdsa::RecoveryId::from_i32(response.recovery_id.into()).unwrap();
    let signature = secp256k1::ecdsa::RecoverableSignature::from_compact(&rs, recovery).unwrap();
    let message = secp256k1::Message::from_digest(*task.payload.as_bytes());
    let recovered = secp.recover_ecdsa(&message, &signature).unwrap();
    assert_eq!(
        recovered.serialize_uncompressed()[1..],
        near_key::to_uncompressed_xy(&derived)
    );
    secp.verify_ecdsa(&message, &signature.to_standard(), &recovered)
        .expect("libsecp256k1 verifies");
}

#[test]
fn keygen_triples_presign_sign_for_derived_keys() {
    for (n, t, seed) in [(3u32, 2usize, 11u64), (5, 3, 12)] {
        let parties = Participants::first(n).unwrap();
        let keys = keygen_all(&parties, t, seed);
        let root = keys[0].public_key;
        assert!(keys
            .iter()
            .all(|k| k.public_key == root && k.threshold == t));

        // All n presign; only t of them sign.
        let presignatures = presign_all(&keys, &parties, seed);
        let signers = Participants::new(parties.iter().take(t.max(2))).unwrap();
        let task = task("alice.near", "ethereum-1", [0x5a; 32], [9; 32]);
        let responses = sign_all(presignatures, &signers, &root, &task, seed);
        assert_eq!(responses.len(), signers.len());
        assert!(
            responses.iter().all(|r| r == &responses[0]),
            "every signer outputs the same signature"
        );
        assert_valid(&responses[0], &root, "alice.near", "ethereum-1", &task);
    }
}

#[test]
fn signatures_are_rerandomised_by_chain_entropy() {
    let parties = Participants::first(3).unwrap();
    let keys = keygen_all(&parties, 2, 21);
    let root = keys[0].public_key;
    let presignatures = presign_all(&keys, &parties, 21);
    let presig_r = presignatures[0].big_r;

    // The same presignature (restored from storage for the experiment) under two
    // entropies gives two unrelated nonces, neither the presignature's own R.
    let stored: Vec<Vec<u8>> = presignatures.iter().map(|p| p.to_bytes()).collect();
    let restore = || {
        stored
            .iter()
            .map(|b| Presignature::from_bytes(b).unwrap())
            .collect::<Vec<_>>()
    };
    let one = task("bob.near", "bitcoin-1", [7; 32], [1; 32]);
    let two = task("bob.near", "bitcoin-1", [7; 32], [2; 32]);
    let first = sign_all(restore(), &parties, &root, &one, 22);
    let second = sign_all(restore(), &parties, &root, &two, 23);
    assert_valid(&first[0], &root, "bob.near", "bitcoin-1", &one);
    assert_valid(&second[0], &root, "bob.near", "bitcoin-1", &two);
    assert_ne!(first[0].big_r, second[0].big_r);
    let presig_r = primitives::SerializableAffinePoint::from_point(&presig_r);
    assert_ne!(first[0].big_r, presig_r);

    // R' = δ·R with δ from the public inputs: every party could compute it.
    let derived = derive_public_key_for(&root, "bob.near", "bitcoin-1").unwrap();
    let delta = threshold::rerandomizer(&presignatures[0].big_r, &derived, &one);
    let expected = (k256::ProjectivePoint::from(presignatures[0].big_r) * delta).to_affine();
    assert_eq!(
        first[0].big_r,
        primitives::SerializableAffinePoint::from_point(&expected)
    );
}

#[test]
fn reshare_join_leave_and_threshold_change_keep_the_public_key() {
    let three = Participants::first(3).unwrap();
    let keys = keygen_all(&three, 2, 31);
    let root = keys[0].public_key;

    // Join: {0,1,2} t=2 -> {0,1,2,3} t=3.
    let four = Participants::first(4).unwrap();
    let args = ReshareArgs {
        old_participants: three.clone(),
        old_threshold: 2,
        new_participants: four.clone(),
        new_threshold: 3,
        public_key: root,
    };
    let instances = four
        .iter()
        .map(|me| reshare(id(2, 1), me, args.clone(), keys.iter().find(|k| k.me == me)).unwrap())
        .collect();
    let joined = local::run(instances, &shuffled(32)).all_done().unwrap();
    assert!(joined
        .iter()
        .all(|k| k.public_key == root && k.threshold == 3 && k.participants == four));

    // The newcomer signs with two old participants.
    let signers = Participants::new([1, 2, 3].map(ParticipantId)).unwrap();
    let presignatures = presign_all(&joined, &signers, 33);
    let sign_task = task("carol.near", "ethereum-7", [3; 32], [4; 32]);
    let responses = sign_all(presignatures, &signers, &root, &sign_task, 34);
    assert_valid(&responses[0], &root, "carol.near", "ethereum-7", &sign_task);

    // Leave: participant 0 goes, {1,2,3} t=2 (a threshold change too).
    let rest = Participants::new([1, 2, 3].map(ParticipantId)).unwrap();
    let args = ReshareArgs {
        old_participants: four.clone(),
        old_threshold: 3,
        new_participants: rest.clone(),
        new_threshold: 2,
        public_key: root,
    };
    let instances = rest
        .iter()
        .map(|me| {
            reshare(
                id(2, 2),
                me,
                args.clone(),
                joined.iter().find(|k| k.me == me),
            )
            .unwrap()
        })
        .collect();
    let left = local::run(instances, &shuffled(35)).all_done().unwrap();
    assert!(left
        .iter()
        .all(|k| k.public_key == root && k.threshold == 2));
    let signers = Participants::new([2, 3].map(ParticipantId)).unwrap();
    let presignatures = presign_all(&left, &signers, 36);
    let sign_task = task("dave.near", "p", [8; 32], [5; 32]);
    let responses = sign_all(presignatures, &signers, &root, &sign_task, 37);
    assert_valid(&responses[0], &root, "dave.near", "p", &sign_task);
}

#[test]
fn a_dropped_message_stalls_and_a_rerun_succeeds() {
    let parties = Participants::first(3).unwrap();
    let instances = parties
        .iter()
        .map(|me| keygen(id(1, 41), me, parties.clone(), 2).unwrap())
        .collect();
    let outcome = local::run(
        instances,
        &Schedule {
            shuffle_seed: Some(41),
            drop: Some(2),
            ..Schedule::default()
        },
    );
    assert!(
        outcome.stalled,
        "a lost message leaves someone waiting: the caller's timeout decides"
    );
    assert!(outcome.failures.is_empty());

    let instances = parties
        .iter()
        .map(|me| keygen(id(1, 42), me, parties.clone(), 2).unwrap())
        .collect();
    assert_eq!(
        local::run(instances, &shuffled(42))
            .all_done()
            .unwrap()
            .len(),
        3
    );
}

#[test]
fn a_message_delivered_twice_counts_once_in_every_protocol() {
    let parties = Participants::first(3).unwrap();
    let keygens = local::run_with_each_message_twice(
        || {
            parties
                .iter()
                .map(|me| keygen(id(1, 71), me, parties.clone(), 2).unwrap())
                .collect()
        },
        71,
    )
    .unwrap();
    for keys in &keygens {
        assert_eq!(keys.len(), 3);
        assert!(keys.iter().all(|k| k.public_key == keys[0].public_key));
    }

    // Stock and signing among a threshold subset, as the nodes make them; each
    // run starts from the same records, read back from their bytes.
    let keys = &keygens[0];
    let root = keys[0].public_key;
    let signers = Participants::new([0, 2].map(ParticipantId)).unwrap();
    let triples = local::run_with_each_message_twice(
        || {
            signers
                .iter()
                .map(|me| generate_triple(id(3, 72), me, signers.clone(), 2).unwrap())
                .collect()
        },
        72,
    )
    .unwrap();
    let stored =
        |triples: &[Triple]| -> Vec<Vec<u8>> { triples.iter().map(Triple::to_bytes).collect() };
    let (first, second) = (stored(&triples[0]), stored(&triples[1]));
    let presignatures = local::run_with_each_message_twice(
        || {
            signers
                .iter()
                .zip(first.iter().zip(&second))
                .map(|(me, (t0, t1))| {
                    let key = keys.iter().find(|k| k.me == me).unwrap();
                    let (t0, t1) = (
                        Triple::from_bytes(t0).unwrap(),
                        Triple::from_bytes(t1).unwrap(),
                    );
                    presign(id(4, 73), me, signers.clone(), key, t0, t1).unwrap()
                })
                .collect()
        },
        73,
    )
    .unwrap();
    for run in &presignatures {
        assert!(run.iter().all(|p| p.big_r == presignatures[0][0].big_r));
    }

    let made: Vec<Vec<u8>> = presignatures[0]
        .iter()
        .map(Presignature::to_bytes)
        .collect();
    let sign_task = task("erin.near", "twice", [6; 32], [2; 32]);
    let signatures = local::run_with_each_message_twice(
        || {
            signers
                .iter()
                .zip(&made)
                .map(|(me, p)| {
                    let p = Presignature::from_bytes(p).unwrap();
                    sign(id(5, 74), me, signers.clone(), p, &root, &sign_task).unwrap()
                })
                .collect()
        },
        74,
    )
    .unwrap();
    for run in &signatures {
        assert!(run.iter().all(|s| s == &signatures[0][0]));
    }
    assert_valid(&signatures[0][0], &root, "erin.near", "twice", &sign_task);
}

#[test]
fn garbage_aborts_the_instance_and_noise_is_refused_without_harm() {
    let parties = Participants::first(3).unwrap();

    // A garbled payload under a valid header reaches the protocol, which aborts
    // that instance with an error (no panic).
    for garble in 0..4 {
        let instances = parties
            .iter()
            .map(|me| generate_triple(id(3, 51), me, parties.clone(), 2).unwrap())
            .collect();
        let schedule = Schedule {
            shuffle_seed: Some(51),
            garble: Some(garble),
            ..Schedule::default()
        };
        let outcome = local::run(instances, &schedule);
        assert_eq!(
            outcome.failures.len(),
            1,
            "the receiver of the garbage aborts: {outcome:?}"
        );
        for error in outcome.failures.values() {
            assert!(matches!(error, Error::VerificationFailed(_)), "{error:?}");
        }
        assert!(
            outcome.outputs.is_empty() && outcome.stalled,
            "nobody gets a triple from a broken run"
        );
    }

    // Bytes that are no message are refused at the door; the run completes.
    let instances = parties
        .iter()
        .map(|me| keygen(id(1, 52), me, parties.clone(), 2).unwrap())
        .collect();
    let outcome = local::run(
        instances,
        &Schedule {
            shuffle_seed: Some(52),
            noise: Some(0),
            ..Schedule::default()
        },
    );
    assert_eq!(outcome.refused.len(), 1);
    assert!(matches!(
        outcome.refused[0].1,
        Error::MalformedMessage(_) | Error::UnsupportedVersion(_)
    ));
    assert_eq!(outcome.all_done().unwrap().len(), 3);
}

#[test]
fn instances_refuse_strangers_other_instances_and_late_messages() {
    let parties = Participants::first(3).unwrap();
    let me = ParticipantId(0);
    let mut instance = keygen(id(1, 61), me, parties.clone(), 2).unwrap();
    let mut other = keygen(id(1, 62), ParticipantId(1), parties.clone(), 2).unwrap();
    let threshold::Step::Send(out) = other.poke().unwrap() else {
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
    let mut future = out.message.clone();
    future[0] = 2;
    assert_eq!(
        instance.receive(ParticipantId(1), &future),
        Err(Error::UnsupportedVersion(2))
    );
    assert!(matches!(
        instance.receive(ParticipantId(1), &[1, 2, 3]),
        Err(Error::MalformedMessage(_))
    ));

    // A finished instance refuses everything: drive three parties by hand (FIFO)
    // so we keep hold of them after they finish.
    let mut all: Vec<_> = parties
        .iter()
        .map(|p| keygen(id(1, 63), p, parties.clone(), 2).unwrap())
        .collect();
    let mut queue: Vec<(ParticipantId, threshold::Outgoing)> = Vec::new();
    let mut last_message = Vec::new();
    for _ in 0..1000 {
        for party in all.iter_mut().filter(|p| !p.is_finished()) {
            while let threshold::Step::Send(out) = party.poke().unwrap() {
                queue.push((party.me(), out));
            }
        }
        let Some((from, out)) = queue.pop() else {
            break;
        };
        last_message = out.message.clone();
        for party in all
            .iter_mut()
            .filter(|p| p.me() != from && !p.is_finished())
        {
            if out.to == threshold::Recipient::AllOthers
                || out.to == threshold::Recipient::One(party.me())
            {
                party.receive(from, &out.message).unwrap();
            }
        }
    }
    assert!(all.iter().all(|p| p.is_finished()));
    assert_eq!(
        all[0].receive(ParticipantId(1), &last_message),
        Err(Error::WrongRound)
    );
    assert!(matches!(all[0].poke(), Err(Error::WrongRound)));
}

#[test]
fn bad_parameters_are_refused_up_front() {
    let three = Participants::first(3).unwrap();
    assert!(matches!(
        keygen(id(1, 71), ParticipantId(0), three.clone(), 4),
        Err(Error::BadParameters(_))
    ));
    assert!(matches!(
        keygen(id(1, 71), ParticipantId(0), three.clone(), 0),
        Err(Error::BadParameters(_))
    ));
    assert!(matches!(
        keygen(id(1, 71), ParticipantId(7), three.clone(), 2),
        Err(Error::BadParameters(_))
    ));
    assert!(Participants::new([ParticipantId(0)]).is_err());

    let keys = keygen_all(&three, 2, 72);
    // A newcomer without a share is fine, an old participant without one is not.
    let args = ReshareArgs {
        old_participants: three.clone(),
        old_threshold: 2,
        new_participants: Participants::first(4).unwrap(),
        new_threshold: 2,
        public_key: keys[0].public_key,
    };
    assert!(reshare(id(2, 73), ParticipantId(3), args.clone(), None).is_ok());
    assert!(matches!(
        reshare(id(2, 73), ParticipantId(1), args.clone(), None),
        Err(Error::BadParameters(_))
    ));
    assert!(matches!(
        reshare(id(2, 73), ParticipantId(0), args, Some(&keys[1])),
        Err(Error::BadParameters(_))
    ));

    // Triples of another threshold cannot make a presignature for this key.
    let mut t3 = triples_all(&three, 3, 74).into_iter();
    let mut t2 = triples_all(&three, 2, 75).into_iter();
    assert!(matches!(
        presign(
            id(4, 76),
            ParticipantId(0),
            three.clone(),
            &keys[0],
            t3.next().unwrap(),
            t2.next().unwrap()
        ),
        Err(Error::BadParameters(_))
    ));
    // Signers outside the presignature's participants.
    let pair = Participants::new([0, 1].map(ParticipantId)).unwrap();
    let presignatures = presign_all(&keys, &pair, 77);
    let outsiders = Participants::new([0, 2].map(ParticipantId)).unwrap();
    let sign_task = task("a.near", "p", [1; 32], [0; 32]);
    let mut presignatures = presignatures.into_iter();
    assert!(matches!(
        sign(
            id(5, 78),
            ParticipantId(0),
            outsiders,
            presignatures.next().unwrap(),
            &keys[0].public_key,
            &sign_task
        ),
        Err(Error::BadParameters(_))
    ));
}

#[test]
fn records_round_trip_and_refuse_corruption() {
    let parties = Participants::first(3).unwrap();
    let keys = keygen_all(&parties, 2, 81);
    let presignatures = presign_all(&keys, &parties, 81);
    let triples = triples_all(&parties, 2, 82);

    let key_bytes = keys[1].to_bytes();
    assert_eq!(key_bytes[0], threshold::RECORD_VERSION);
    assert_eq!(KeyShare::from_bytes(&key_bytes).unwrap(), keys[1]);
    let json = serde_json::to_string(&keys[1]).unwrap();
    assert_eq!(serde_json::from_str::<KeyShare>(&json).unwrap(), keys[1]);
    assert!(!format!("{:?}", keys[1]).contains(&format!("{:?}", key_bytes[20..30].to_vec())));

    let triple_bytes = triples[0].to_bytes();
    assert!(Triple::from_bytes(&triple_bytes).unwrap() == triples[0]);
    let presig_bytes = presignatures[2].to_bytes();
    assert!(Presignature::from_bytes(&presig_bytes).unwrap() == presignatures[2]);
    let json = serde_json::to_string(&presignatures[2]).unwrap();
    assert!(serde_json::from_str::<Presignature>(&json).unwrap() == presignatures[2]);

    let mut future = key_bytes.clone();
    future[0] = 9;
    assert_eq!(
        KeyShare::from_bytes(&future),
        Err(Error::UnsupportedVersion(9))
    );
    assert!(matches!(
        KeyShare::from_bytes(&key_bytes[..40]),
        Err(Error::CorruptRecord(_))
    ));
    assert!(matches!(
        KeyShare::from_bytes(&[]),
        Err(Error::CorruptRecord(_))
    ));
    let mut off_curve = presig_bytes.clone();
    // The point starts after version, participant count + ids, threshold and length.
    let point_at = 1 + 4 + 3 * 4 + 4 + 4 + 1;
    off_curve[point_at..point_at + 32].copy_from_slice(&[0xff; 32]);
    assert!(matches!(
        Presignature::from_bytes(&off_curve),
        Err(Error::CorruptRecord(_))
    ));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(8))]

    /// Any (n, t ≤ n), tweak and payload: the signature verifies for the derived key.
    #[test]
    fn any_size_tweak_and_payload_signs_correctly(
        n in 2u32..=5,
        t_seed in 0usize..100,
        account in "[a-z]{1,10}\\.near",
        path in "[a-z0-9,-]{0,16}",
        payload in proptest::array::uniform32(1u8..),
        entropy in proptest::array::uniform32(proptest::num::u8::ANY),
        seed in 0u64..1_000_000,
    ) {
        let t = 1 + t_seed % n as usize;
        let parties = Participants::first(n).unwrap();
        let keys = keygen_all(&parties, t, seed);
        let root = keys[0].public_key;
        let signers = Participants::new(parties.iter().skip((n as usize).saturating_sub(t.max(2)))).unwrap();
        let presignatures = presign_all(&keys, &signers, seed);
        let Ok(payload) = EcdsaPayload::new(payload) else { return Ok(()) };
        let sign_task = SignTask { payload, tweak: Tweak::derive(&account, &path).unwrap(), entropy };
        let responses = sign_all(presignatures, &signers, &root, &sign_task, seed);
        assert_valid(&responses[0], &root, &account, &path, &sign_task);
    }
}
