//! The bench's compute bound: the CPU time of the cryptography of one signature,
//! all parties in this process, with the `threshold` crate and no network.

use primitives::derivation::Tweak;
use primitives::ed25519::Ed25519Tweak;
use primitives::{EcdsaPayload, EddsaPayload, SignatureScheme};
use std::time::{Duration, Instant};
use threshold::local::{self, Schedule};
use threshold::{generate_triple, keygen, presign, sign, InstanceId, Participants, SignTask};

/// [`crypto_cost`] measured on every core at once, each running its own copy:
/// the mean of the cores' figures. That is what the cores can do together (they
/// share caches, memory and clock), and the nodes under load use them all; one
/// core alone, with the machine to itself, is faster (both are printed).
pub(crate) fn crypto_cost_on_every_core(
    scheme: SignatureScheme,
    n: usize,
    t: usize,
    cores: usize,
) -> Duration {
    let alone = crypto_cost(scheme, n, t);
    let together: Vec<Duration> = std::thread::scope(|scope| {
        let copies: Vec<_> = (0..cores)
            .map(|_| scope.spawn(move || crypto_cost(scheme, n, t)))
            .collect();
        copies
            .into_iter()
            .map(|copy| copy.join().expect("the cryptography does not panic"))
            .collect()
    });
    let mean = together.iter().sum::<Duration>() / together.len().max(1) as u32;
    eprintln!(
        "bench: cryptography per signature: {:.0} ms on one core alone, {:.0} ms on each of {cores} at once",
        alone.as_secs_f64() * 1e3,
        mean.as_secs_f64() * 1e3
    );
    mean
}

/// CPU seconds of the cryptography of one signature of `scheme`, all parties, one
/// thread: the median of several runs (this machine is shared and noisy). Stock is
/// made among `n` parties (the threshold with subsets), signatures among `t`.
fn crypto_cost(scheme: SignatureScheme, n: usize, t: usize) -> Duration {
    match scheme {
        SignatureScheme::Secp256k1 => ecdsa_cost(n, t),
        SignatureScheme::Ed25519 => eddsa_cost(n, t),
    }
}

/// FROST: nonce commitments among `n`, a signature among `t`.
fn eddsa_cost(n: usize, t: usize) -> Duration {
    use threshold::eddsa;
    let parties = Participants::first(n as u32).unwrap();
    let keys = local::run(
        parties
            .iter()
            .map(|me| eddsa::keygen(InstanceId([1; 32]), me, parties.clone(), t).unwrap())
            .collect(),
        &Schedule::default(),
    )
    .all_done()
    .unwrap();
    let task = eddsa::EddsaSignTask {
        payload: EddsaPayload::new(vec![7; 150]).unwrap(),
        tweak: Ed25519Tweak::derive("bench.near", "solana-1"),
    };
    let signers = Participants::first(t as u32).unwrap();
    median_time(|round| {
        let presignatures = local::run(
            parties
                .iter()
                .zip(&keys)
                .map(|(me, key)| {
                    eddsa::presign(InstanceId([50 + round; 32]), me, parties.clone(), key).unwrap()
                })
                .collect(),
            &Schedule::default(),
        )
        .all_done()
        .unwrap();
        local::run(
            signers
                .iter()
                .zip(keys.iter().zip(presignatures))
                .map(|(me, (key, presignature))| {
                    eddsa::sign(
                        InstanceId([90 + round; 32]),
                        me,
                        signers.clone(),
                        key,
                        presignature,
                        &task,
                    )
                    .unwrap()
                })
                .collect(),
            &Schedule::default(),
        )
        .all_done()
        .unwrap();
    })
}

/// cait-sith: two triples and a presignature among `n`, a signature among `t`.
fn ecdsa_cost(n: usize, t: usize) -> Duration {
    let parties = Participants::first(n as u32).unwrap();
    let keys = local::run(
        parties
            .iter()
            .map(|me| keygen(InstanceId([1; 32]), me, parties.clone(), t).unwrap())
            .collect(),
        &Schedule::default(),
    )
    .all_done()
    .unwrap();
    median_time(|round| {
        let mut triples = Vec::new();
        for k in 0..2u8 {
            triples.push(
                local::run(
                    parties
                        .iter()
                        .map(|me| {
                            generate_triple(
                                InstanceId([10 + k + 2 * round; 32]),
                                me,
                                parties.clone(),
                                t,
                            )
                            .unwrap()
                        })
                        .collect(),
                    &Schedule::default(),
                )
                .all_done()
                .unwrap(),
            );
        }
        let t1 = triples.pop().unwrap();
        let t0 = triples.pop().unwrap();
        let presignatures = local::run(
            parties
                .iter()
                .zip(keys.iter().zip(t0.into_iter().zip(t1)))
                .map(|(me, (key, (a, b)))| {
                    presign(InstanceId([50 + round; 32]), me, parties.clone(), key, a, b).unwrap()
                })
                .collect(),
            &Schedule::default(),
        )
        .all_done()
        .unwrap();
        let signers = Participants::first(t as u32).unwrap();
        let task = SignTask {
            payload: EcdsaPayload::new([7; 32]).unwrap(),
            tweak: Tweak::derive("bench.near", "ethereum-1").unwrap(),
            entropy: [round; 32],
        };
        local::run(
            signers
                .iter()
                .zip(presignatures)
                .map(|(me, presignature)| {
                    sign(
                        InstanceId([90 + round; 32]),
                        me,
                        signers.clone(),
                        presignature,
                        &keys[0].public_key,
                        &task,
                    )
                    .unwrap()
                })
                .collect(),
            &Schedule::default(),
        )
        .all_done()
        .unwrap();
    })
}

/// The median time of `ROUNDS` runs of `one` (given the round, for fresh
/// instance ids): this machine is shared and noisy.
fn median_time(mut one: impl FnMut(u8)) -> Duration {
    const ROUNDS: u8 = 9;
    let mut times: Vec<Duration> = (0..ROUNDS)
        .map(|round| {
            let started = Instant::now();
            one(round);
            started.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}
