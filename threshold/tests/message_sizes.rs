//! The largest message each protocol sends, at n = 5 (and n = 10 for ECDSA): the
//! node's p2p frame limit must leave room for every one of them. Run with
//! `--nocapture` to see the figures (measured: a triple message is about 40 KB at
//! n = 5 and n = 10, every other message under 1 KB).

use primitives::derivation::Tweak;
use primitives::ed25519::Ed25519Tweak;
use primitives::{EcdsaPayload, EddsaPayload};
use std::collections::{BTreeMap, VecDeque};
use threshold::eddsa::{self, EddsaReshareArgs, EddsaSignTask};
use threshold::{
    generate_triple, keygen, presign, reshare, sign, Instance, InstanceId, ParticipantId,
    Participants, Recipient, ReshareArgs, SignTask, Step,
};

/// What the node's transport allows (`mpc_node::p2p::noise::MAX_MESSAGE`); kept
/// in step by hand, as this crate cannot see the node's.
const NODE_FRAME_LIMIT: usize = 1 << 20;

fn id(tag: u8) -> InstanceId {
    InstanceId([tag; 32])
}

/// Runs every party first in, first out; returns the outputs in participant
/// order and the largest message any party sent.
fn run<T>(instances: Vec<Instance<T>>) -> (Vec<T>, usize) {
    let mut parties: BTreeMap<ParticipantId, Instance<T>> =
        instances.into_iter().map(|i| (i.me(), i)).collect();
    let ids: Vec<ParticipantId> = parties.keys().copied().collect();
    let mut queue: VecDeque<(ParticipantId, ParticipantId, Vec<u8>)> = VecDeque::new();
    let mut outputs = BTreeMap::new();
    let mut largest = 0;
    let poke = |id: ParticipantId,
                party: &mut Instance<T>,
                queue: &mut VecDeque<(ParticipantId, ParticipantId, Vec<u8>)>,
                outputs: &mut BTreeMap<ParticipantId, T>,
                largest: &mut usize| {
        while !party.is_finished() {
            match party.poke().expect("an honest run does not fail") {
                Step::Wait => break,
                Step::Done(output) => {
                    outputs.insert(id, output);
                }
                Step::Send(out) => {
                    *largest = (*largest).max(out.message.len());
                    let targets: Vec<ParticipantId> = match out.to {
                        Recipient::AllOthers => ids.iter().copied().filter(|p| *p != id).collect(),
                        Recipient::One(p) => vec![p],
                    };
                    for to in targets {
                        queue.push_back((id, to, out.message.clone()));
                    }
                }
            }
        }
    };
    for (id, party) in parties.iter_mut() {
        poke(*id, party, &mut queue, &mut outputs, &mut largest);
    }
    while let Some((from, to, message)) = queue.pop_front() {
        let party = parties.get_mut(&to).expect("a party");
        if party.is_finished() {
            continue;
        }
        party.receive(from, &message).expect("an honest message");
        poke(to, party, &mut queue, &mut outputs, &mut largest);
    }
    assert_eq!(outputs.len(), ids.len(), "every party finished");
    (outputs.into_values().collect(), largest)
}

fn ecdsa_sizes(n: u32, t: usize) -> Vec<(&'static str, usize)> {
    let all = Participants::first(n).unwrap();
    let (keys, keygen_max) = run(all
        .iter()
        .map(|me| keygen(id(1), me, all.clone(), t).unwrap())
        .collect());
    let root = keys[0].public_key;
    let signers = Participants::new((0..t as u32).map(ParticipantId)).unwrap();
    let (first, triple_all_max) = run(all
        .iter()
        .map(|me| generate_triple(id(2), me, all.clone(), t).unwrap())
        .collect());
    let (t0, triple_subset_max) = run(signers
        .iter()
        .map(|me| generate_triple(id(3), me, signers.clone(), t).unwrap())
        .collect());
    let (t1, _) = run(signers
        .iter()
        .map(|me| generate_triple(id(4), me, signers.clone(), t).unwrap())
        .collect());
    drop(first);
    let (presignatures, presign_max) = run(signers
        .iter()
        .zip(t0.into_iter().zip(t1))
        .map(|(me, (a, b))| {
            let key = keys.iter().find(|k| k.me == me).unwrap();
            presign(id(5), me, signers.clone(), key, a, b).unwrap()
        })
        .collect());
    let task = SignTask {
        payload: EcdsaPayload::new([7; 32]).unwrap(),
        tweak: Tweak::derive("alice.near", "path").unwrap(),
        entropy: [9; 32],
    };
    let (_, sign_max) = run(presignatures
        .into_iter()
        .zip(signers.iter())
        .map(|(p, me)| sign(id(6), me, signers.clone(), p, &root, &task).unwrap())
        .collect());
    let args = ReshareArgs {
        old_participants: all.clone(),
        old_threshold: t,
        new_participants: all.clone(),
        new_threshold: t,
        public_key: root,
    };
    let (_, reshare_max) = run(all
        .iter()
        .map(|me| reshare(id(7), me, args.clone(), keys.iter().find(|k| k.me == me)).unwrap())
        .collect());
    vec![
        ("ecdsa keygen", keygen_max),
        ("ecdsa triple (all n)", triple_all_max),
        ("ecdsa triple (t subset)", triple_subset_max),
        ("ecdsa presign", presign_max),
        ("ecdsa sign", sign_max),
        ("ecdsa reshare", reshare_max),
    ]
}

fn eddsa_sizes(n: u32, t: usize) -> Vec<(&'static str, usize)> {
    let all = Participants::first(n).unwrap();
    let (keys, keygen_max) = run(all
        .iter()
        .map(|me| eddsa::keygen(id(11), me, all.clone(), t).unwrap())
        .collect());
    let signers = Participants::new((0..t as u32).map(ParticipantId)).unwrap();
    let key_of = |me: ParticipantId| keys.iter().find(|k| k.me == me).unwrap();
    let (presignatures, presign_max) = run(signers
        .iter()
        .map(|me| eddsa::presign(id(12), me, signers.clone(), key_of(me)).unwrap())
        .collect());
    let task = EddsaSignTask {
        payload: EddsaPayload::new(vec![5; 1232]).unwrap(),
        tweak: Ed25519Tweak::derive("alice.near", "path"),
    };
    let (_, sign_max) = run(presignatures
        .into_iter()
        .map(|p| {
            let me = p.me;
            eddsa::sign(id(13), me, signers.clone(), key_of(me), p, &task).unwrap()
        })
        .collect());
    let args = EddsaReshareArgs::new(&keys[0], all.clone(), t);
    let (_, reshare_max) = run(all
        .iter()
        .map(|me| eddsa::reshare(id(14), me, args.clone(), Some(key_of(me))).unwrap())
        .collect());
    vec![
        ("eddsa keygen", keygen_max),
        ("eddsa presign", presign_max),
        ("eddsa sign", sign_max),
        ("eddsa reshare", reshare_max),
    ]
}

#[test]
fn every_protocol_message_fits_the_node_frame_limit_with_headroom() {
    let mut sizes = ecdsa_sizes(5, 3);
    sizes.extend(eddsa_sizes(5, 3));
    for (what, size) in ecdsa_sizes(10, 7) {
        sizes.push((what, size));
    }
    for (i, (what, size)) in sizes.iter().enumerate() {
        let n = if i < 10 { 5 } else { 10 };
        println!("n={n}: {what}: largest message {size} bytes");
    }
    let largest = sizes.iter().map(|(_, s)| *s).max().unwrap();
    // At least 16x headroom: the node's frame adds a few bytes of its own, and
    // larger networks or future protocol versions may send somewhat more.
    assert!(
        largest * 16 <= NODE_FRAME_LIMIT,
        "largest message {largest} bytes leaves too little headroom under {NODE_FRAME_LIMIT}"
    );
}
