//! A deterministic in-process network for running every party of a protocol in one
//! process: tests, benchmarks and examples.
//!
//! Delivery order comes from a seeded RNG ([`Schedule`]), so a failing run can be
//! replayed from its seed. (The protocols' own randomness comes from the OS, as
//! cait-sith draws it; the *schedule* is what is reproducible.) Faults can be
//! injected: a dropped message, a garbled one, or bytes that are no message at all.

use crate::error::Error;
use crate::instance::{Instance, Recipient, Step};
use crate::participants::ParticipantId;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, VecDeque};

/// How messages are delivered.
#[derive(Clone, Debug, Default)]
pub struct Schedule {
    /// `None`: first in, first out. `Some(seed)`: each step delivers a random pending
    /// message, which reorders and delays messages arbitrarily.
    pub shuffle_seed: Option<u64>,
    /// Drop the n-th message sent (counting from 0).
    pub drop: Option<usize>,
    /// Replace the body of the n-th message with random bytes, keeping our header
    /// and cait-sith's channel header, so it reaches the protocol step that waits for
    /// it and must be refused there.
    pub garble: Option<usize>,
    /// Deliver random bytes, not a message, just before the n-th message.
    pub noise: Option<usize>,
    /// Deliver the n-th message twice, as a transport does that sends again what a
    /// broken connection may have delivered already.
    pub repeat: Option<usize>,
}

/// First in, first out but for an order shuffled from `seed`; no other fault.
pub fn shuffled(seed: u64) -> Schedule {
    Schedule {
        shuffle_seed: Some(seed),
        ..Schedule::default()
    }
}

/// An instance id for runs of tests and benches: `tag` in every byte but the
/// first eight, which hold `n`.
pub fn instance_id(tag: u8, n: u64) -> crate::InstanceId {
    let mut bytes = [tag; 32];
    bytes[..8].copy_from_slice(&n.to_le_bytes());
    crate::InstanceId(bytes)
}

/// What a run produced.
#[derive(Debug)]
pub struct Outcome<T> {
    pub outputs: BTreeMap<ParticipantId, T>,
    /// Parties whose instance aborted, with why.
    pub failures: BTreeMap<ParticipantId, Error>,
    /// Deliveries the receiving instance refused (malformed bytes and the like);
    /// the instance keeps running, as it would behind a real transport.
    pub refused: Vec<(ParticipantId, Error)>,
    /// True when no message was left to deliver but some party had not finished.
    pub stalled: bool,
    /// Bytes each party sent.
    pub bytes_sent: BTreeMap<ParticipantId, u64>,
    /// Messages delivered in all.
    pub delivered: usize,
    /// Messages the parties sent in all (a broadcast counts once per recipient).
    pub sent: usize,
}

impl<T> Outcome<T> {
    /// The outputs if every party finished, else a description of what went wrong.
    pub fn all_done(self) -> Result<Vec<T>, String> {
        if self.failures.is_empty() && !self.stalled {
            Ok(self.outputs.into_values().collect())
        } else {
            Err(format!(
                "failures: {:?}, stalled: {}",
                self.failures, self.stalled
            ))
        }
    }
}

/// cait-sith starts each payload with a 20-byte channel tag and an 8-byte waitpoint.
const CAIT_SITH_HEADER_LEN: usize = 28;

struct Envelope {
    from: ParticipantId,
    to: ParticipantId,
    message: Vec<u8>,
}

/// Runs `instances` (one per party) until each finishes or fails, or nothing is
/// left to deliver.
pub fn run<T>(instances: Vec<Instance<T>>, schedule: &Schedule) -> Outcome<T> {
    let mut rng = StdRng::seed_from_u64(schedule.shuffle_seed.unwrap_or(0));
    let mut parties: BTreeMap<ParticipantId, Instance<T>> =
        instances.into_iter().map(|i| (i.me(), i)).collect();
    let ids: Vec<ParticipantId> = parties.keys().copied().collect();
    let mut outcome = Outcome {
        outputs: BTreeMap::new(),
        failures: BTreeMap::new(),
        refused: Vec::new(),
        stalled: false,
        bytes_sent: BTreeMap::new(),
        delivered: 0,
        sent: 0,
    };
    let mut queue: VecDeque<Envelope> = VecDeque::new();
    let mut sent = 0usize;

    // Poke one party until it waits, queueing what it sends.
    let mut advance = |id: ParticipantId,
                       party: &mut Instance<T>,
                       queue: &mut VecDeque<Envelope>,
                       outcome: &mut Outcome<T>,
                       rng: &mut StdRng| {
        while !party.is_finished() {
            match party.poke() {
                Ok(Step::Wait) => break,
                Ok(Step::Done(output)) => {
                    outcome.outputs.insert(id, output);
                }
                Ok(Step::Send(out)) => {
                    let targets: Vec<ParticipantId> = match out.to {
                        Recipient::AllOthers => ids.iter().copied().filter(|p| *p != id).collect(),
                        Recipient::One(p) => vec![p],
                    };
                    for to in targets {
                        let n = sent;
                        sent += 1;
                        if schedule.noise == Some(n) {
                            let junk: Vec<u8> =
                                (0..rng.gen_range(0..80)).map(|_| rng.gen()).collect();
                            queue.push_back(Envelope {
                                from: id,
                                to,
                                message: junk,
                            });
                        }
                        if schedule.drop == Some(n) {
                            continue;
                        }
                        let mut message = out.message.clone();
                        if schedule.garble == Some(n) {
                            for byte in message
                                .iter_mut()
                                .skip(crate::wire::HEADER_LEN + CAIT_SITH_HEADER_LEN)
                            {
                                *byte = rng.gen();
                            }
                        }
                        if schedule.repeat == Some(n) {
                            queue.push_back(Envelope {
                                from: id,
                                to,
                                message: message.clone(),
                            });
                        }
                        queue.push_back(Envelope {
                            from: id,
                            to,
                            message,
                        });
                    }
                }
                Err(e) => {
                    outcome.failures.insert(id, e);
                }
            }
        }
        outcome.bytes_sent.insert(id, party.bytes_sent());
    };

    for (id, party) in parties.iter_mut() {
        advance(*id, party, &mut queue, &mut outcome, &mut rng);
    }
    while !queue.is_empty() {
        let envelope = match schedule.shuffle_seed {
            Some(_) => {
                let index = rng.gen_range(0..queue.len());
                queue.swap_remove_back(index).expect("index in range")
            }
            None => queue.pop_front().expect("queue is not empty"),
        };
        let party = parties
            .get_mut(&envelope.to)
            .expect("messages go to parties of the run");
        if party.is_finished() {
            continue;
        }
        outcome.delivered += 1;
        match party.receive(envelope.from, &envelope.message) {
            Ok(()) => advance(envelope.to, party, &mut queue, &mut outcome, &mut rng),
            Err(e) => outcome.refused.push((envelope.to, e)),
        }
    }
    outcome.stalled = parties.values().any(|p| !p.is_finished());
    outcome.sent = sent;
    outcome
}

/// Runs the instances `make` builds once for every message they send, with that
/// message delivered twice (the copies apart, in an order shuffled from `seed`),
/// and returns each run's outputs. A transport that sends again what a broken
/// connection may have delivered must change nothing: every run must end as one
/// without the repeat does, with nothing refused.
pub fn run_with_each_message_twice<T>(
    make: impl Fn() -> Vec<Instance<T>>,
    seed: u64,
) -> Result<Vec<Vec<T>>, String> {
    let sent = run(make(), &Schedule::default()).sent;
    (0..sent)
        .map(|k| {
            let schedule = Schedule {
                shuffle_seed: Some(seed.wrapping_add(k as u64)),
                repeat: Some(k),
                ..Schedule::default()
            };
            let outcome = run(make(), &schedule);
            if !outcome.refused.is_empty() {
                return Err(format!(
                    "message {k} of {sent} twice: refused {:?}",
                    outcome.refused
                ));
            }
            outcome
                .all_done()
                .map_err(|e| format!("message {k} of {sent} twice: {e}"))
        })
        .collect()
}
