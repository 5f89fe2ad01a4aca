//! `cargo bench -p threshold --bench eddsa`: FROST Ed25519 per party, ours
//! (instances on `local::run`, our wire format, confirmation rounds, records, the
//! tweak, verification of the output) next to raw frost-ed25519 called directly in
//! the same run (no messages: its byte counts are the sizes of the same
//! encodings, without our 34-byte header, round byte and confirmation rounds).
//! Raw signing also aggregates at every signer, as ours does. frost has no
//! resharing: its "raw" row is the same computation from frost's public pieces
//! (every party deals with `keys::split`, every party `SecretShare::verify`s every
//! dealt share), without our checks against the old verifying shares, the
//! confirmation round or the new verifying shares. All parties run in
//! this one process, one after another: time per party is wall time / n.
//!
//! Prints a Markdown table of medians.

use frost_ed25519 as frost;
use primitives::ed25519::Ed25519Tweak;
use primitives::EddsaPayload;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use threshold::eddsa::{self, EddsaKeyShare, EddsaSignTask};
use threshold::local::{self, Schedule};
use threshold::{InstanceId, Participants};

#[derive(Clone, Copy)]
struct Cost {
    time: Duration,
    bytes: u64,
}

fn ours<T>(build: impl FnOnce() -> Vec<threshold::Instance<T>>) -> (Vec<T>, Cost) {
    let start = Instant::now();
    let outcome = local::run(build(), &Schedule::default());
    let time = start.elapsed();
    let bytes = outcome.bytes_sent.values().sum();
    (
        outcome.all_done().expect("our run finishes"),
        Cost { time, bytes },
    )
}

fn median(costs: &[Cost]) -> Cost {
    let mut sorted = costs.to_vec();
    sorted.sort_by_key(|c| c.time);
    sorted[sorted.len() / 2]
}

fn ident(i: u16) -> frost::Identifier {
    frost::Identifier::try_from(i + 1).unwrap()
}

type RawKeys = (
    BTreeMap<frost::Identifier, frost::keys::KeyPackage>,
    frost::keys::PublicKeyPackage,
);

fn raw_dkg(n: u16, t: u16) -> (RawKeys, Cost) {
    let start = Instant::now();
    let mut rng = rand::rngs::OsRng;
    let mut bytes = 0u64;
    let mut secrets1 = BTreeMap::new();
    let mut packages1 = BTreeMap::new();
    for i in 0..n {
        let (s, p) = frost::keys::dkg::part1(ident(i), n, t, rng).unwrap();
        bytes += u64::from(n - 1) * (u64::from(t) * 32 + 64);
        secrets1.insert(ident(i), s);
        packages1.insert(ident(i), p);
    }
    let mut secrets2 = BTreeMap::new();
    let mut received2: BTreeMap<frost::Identifier, BTreeMap<_, _>> = BTreeMap::new();
    for (id, secret) in secrets1 {
        let others: BTreeMap<_, _> = packages1
            .iter()
            .filter(|(k, _)| **k != id)
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        let (s, out) = frost::keys::dkg::part2(secret, &others).unwrap();
        for (to, package) in out {
            bytes += 32;
            received2.entry(to).or_default().insert(id, package);
        }
        secrets2.insert(id, s);
    }
    let mut keys = BTreeMap::new();
    let mut public = None;
    for (id, secret) in &secrets2 {
        let others: BTreeMap<_, _> = packages1
            .iter()
            .filter(|(k, _)| *k != id)
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        let (key, pk) = frost::keys::dkg::part3(secret, &others, &received2[id]).unwrap();
        keys.insert(*id, key);
        public = Some(pk);
    }
    let _ = &mut rng;
    (
        (keys, public.unwrap()),
        Cost {
            time: start.elapsed(),
            bytes,
        },
    )
}

fn bench_size(n: u32, t: usize, iterations: usize) -> Vec<(&'static str, Vec<Cost>, Vec<Cost>)> {
    let parties = Participants::first(n).unwrap();
    let mut rows = vec![
        ("keygen (DKG)", Vec::new(), Vec::new()),
        ("nonce commitments (presign)", Vec::new(), Vec::new()),
        ("sign", Vec::new(), Vec::new()),
        ("reshare (same set and t)", Vec::new(), Vec::new()),
    ];
    let message = vec![0x42; 232];
    let task = EddsaSignTask {
        payload: EddsaPayload::new(message.clone()).unwrap(),
        tweak: Ed25519Tweak::derive("bench.near", "solana-1"),
    };
    for iteration in 0..iterations {
        let iid = |tag: u8| InstanceId([tag ^ iteration as u8; 32]);
        let (keys, cost) = ours(|| {
            parties
                .iter()
                .map(|me| eddsa::keygen(iid(1), me, parties.clone(), t).unwrap())
                .collect()
        });
        rows[0].1.push(cost);
        let keys: Vec<EddsaKeyShare> = keys;
        let ((raw_keys, raw_public), cost) = raw_dkg(n as u16, t as u16);
        rows[0].2.push(cost);

        let (presignatures, cost) = ours(|| {
            keys.iter()
                .map(|k| eddsa::presign(iid(2), k.me, parties.clone(), k).unwrap())
                .collect()
        });
        rows[1].1.push(cost);
        let start = Instant::now();
        let mut raw_nonces = BTreeMap::new();
        let mut raw_commitments = BTreeMap::new();
        for (id, key) in &raw_keys {
            let (nonces, commitments) =
                frost::round1::commit(key.signing_share(), &mut rand::rngs::OsRng);
            raw_nonces.insert(*id, nonces);
            raw_commitments.insert(*id, commitments);
        }
        rows[1].2.push(Cost {
            time: start.elapsed(),
            bytes: u64::from(n) * u64::from(n - 1) * 64,
        });

        let (_, cost) = ours(|| {
            keys.iter()
                .zip(presignatures)
                .map(|(k, p)| eddsa::sign(iid(3), k.me, parties.clone(), k, p, &task).unwrap())
                .collect()
        });
        rows[2].1.push(cost);
        let start = Instant::now();
        let package = frost::SigningPackage::new(raw_commitments, &message);
        let shares: BTreeMap<_, _> = raw_keys
            .iter()
            .map(|(id, key)| {
                (
                    *id,
                    frost::round2::sign(&package, &raw_nonces[id], key).unwrap(),
                )
            })
            .collect();
        for _ in 0..n {
            frost::aggregate(&package, &shares, &raw_public).unwrap();
        }
        rows[2].2.push(Cost {
            time: start.elapsed(),
            bytes: u64::from(n) * u64::from(n - 1) * 32,
        });

        let args = eddsa::EddsaReshareArgs::new(&keys[0], parties.clone(), t);
        let (_, cost) = ours(|| {
            keys.iter()
                .map(|k| eddsa::reshare(iid(4), k.me, args.clone(), Some(k)).unwrap())
                .collect()
        });
        rows[3].1.push(cost);
        let start = Instant::now();
        let identifiers: Vec<frost::Identifier> = (0..n as u16).map(ident).collect();
        let dealt: Vec<_> = raw_keys
            .values()
            .map(|key| {
                let secret =
                    frost::SigningKey::deserialize(&key.signing_share().serialize()).unwrap();
                frost::keys::split(
                    &secret,
                    n as u16,
                    t as u16,
                    frost::keys::IdentifierList::Custom(&identifiers),
                    &mut rand::rngs::OsRng,
                )
                .unwrap()
                .0
            })
            .collect();
        for shares in &dealt {
            for share in shares.values() {
                share.verify().unwrap();
            }
        }
        rows[3].2.push(Cost {
            time: start.elapsed(),
            bytes: u64::from(n) * u64::from(n - 1) * (t as u64 * 32 + 32),
        });
    }
    rows
}

fn main() {
    println!("| (n,t) | protocol | ours ms/party | raw frost ms/party | ours/raw time | ours B/party | raw B/party |");
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
    for (n, t, iterations) in [(3u32, 2usize, 15usize), (5, 3, 11)] {
        for (name, o, r) in bench_size(n, t, iterations) {
            let (o, r) = (median(&o), median(&r));
            let per = |c: Cost| c.time.as_secs_f64() * 1000.0 / f64::from(n);
            println!(
                "| ({n},{t}) | {name} | {:.3} | {:.3} | {:.2} | {} | {} |",
                per(o),
                per(r),
                o.time.as_secs_f64() / r.time.as_secs_f64(),
                o.bytes / u64::from(n),
                r.bytes / u64::from(n),
            );
        }
    }
}
