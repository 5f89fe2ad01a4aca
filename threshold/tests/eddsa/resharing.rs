//! Resharing: joins, leaves and threshold changes keep the group key; faults
//! and lying dealers are caught and named.

use super::*;
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
        let outputs = one_typed_failure(outcome, garble);
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
fn reshare_a_message_delivered_twice_counts_once() {
    let old_set = Participants::first(3).unwrap();
    let old = keygen_all(&old_set, 2, 251);
    // Party 1 leaves, 3 joins, the threshold stays.
    let new_set = set(&[0, 2, 3]);
    let runs =
        local::run_with_each_message_twice(|| reshare_instances(&old[..], &new_set, 2, 252), 252)
            .unwrap();
    for keys in &runs {
        assert_consistent(keys, &new_set, 2);
        assert_eq!(keys[0].public_key, old[0].public_key);
    }
    sign_with(&runs[0], &set(&[2, 3]), &old[0].public_key, 253);
}

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
