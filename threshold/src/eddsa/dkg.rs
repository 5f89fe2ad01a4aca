//! FROST distributed key generation (frost-core's `keys::dkg::part1/2/3`, the
//! Pedersen DKG with proofs of knowledge of RFC 9591's companion spec), plus a
//! confirmation round.
//!
//! | round | sent | body |
//! | --- | --- | --- |
//! | 1 | to all | commitment to our polynomial (t × 32 bytes) ‖ proof of knowledge (64) |
//! | 2 | to each | that party's share of our polynomial (32) |
//! | 3 | to all | SHA3-256 of every round-1 package as we received it (32) |
//!
//! Rounds 2 and 3 go out together once all round-1 packages are in. A party
//! outputs its key share only when every other party's round-3 digest equals its
//! own, so a dealer that sent different commitments to different parties is
//! caught before anyone keeps a share.

use super::codec::{self, Ids};
use super::machine::{Driven, Inbox, Machine, Out, Progress};
use super::records::EddsaKeyShare;
use crate::error::Error;
use crate::instance::Instance;
use crate::participants::{ParticipantId, Participants};
use crate::wire::{InstanceId, ProtocolKind};
use frost::keys::dkg;
use frost_ed25519 as frost;
use sha3::{Digest, Sha3_256};
use std::collections::BTreeMap;

const CONFIRM_DOMAIN: &[u8] = b"chain-signatures eddsa keygen round-1 confirmation v1";

/// Distributed key generation among `participants`; any `threshold` (at least 2)
/// of them can later sign. No dealer: nobody ever holds the key.
pub fn keygen(
    instance: InstanceId,
    me: ParticipantId,
    participants: Participants,
    threshold: usize,
) -> Result<Instance<EddsaKeyShare>, Error> {
    participants.check(me, threshold)?;
    if threshold < 2 {
        return Err(Error::BadParameters(
            "FROST needs a threshold of at least 2".into(),
        ));
    }
    let n = u16::try_from(participants.len())
        .map_err(|_| Error::BadParameters("too many participants for FROST".into()))?;
    let (secret, package) = dkg::part1(
        codec::identifier(me),
        n,
        threshold as u16,
        rand::rngs::OsRng,
    )
    .map_err(|e| Error::BadParameters(e.to_string()))?;
    let others: Vec<ParticipantId> = participants.iter().filter(|p| *p != me).collect();
    let machine = Keygen {
        instance,
        me,
        participants: participants.clone(),
        threshold,
        ids: Ids::new(&participants),
        stage: Some(Stage::Start { secret, package }),
    };
    Ok(Instance::from_driver(
        ProtocolKind::EddsaKeygen,
        instance,
        me,
        participants,
        Box::new(Driven::new(machine, Inbox::new(3, others))),
    ))
}

enum Stage {
    Start {
        secret: dkg::round1::SecretPackage,
        package: dkg::round1::Package,
    },
    Round1 {
        secret: dkg::round1::SecretPackage,
        mine: Vec<u8>,
    },
    Round2 {
        secret: dkg::round2::SecretPackage,
        round1: BTreeMap<frost::Identifier, dkg::round1::Package>,
        digest: [u8; 32],
    },
}

struct Keygen {
    instance: InstanceId,
    me: ParticipantId,
    participants: Participants,
    threshold: usize,
    ids: Ids,
    stage: Option<Stage>,
}

fn encode_round1(package: &dkg::round1::Package) -> Result<Vec<u8>, Error> {
    let mut body = package
        .commitment()
        .serialize_whole()
        .map_err(|e| Error::VerificationFailed(e.to_string()))?;
    body.extend(
        package
            .proof_of_knowledge()
            .serialize()
            .map_err(|e| Error::VerificationFailed(e.to_string()))?,
    );
    Ok(body)
}

fn decode_round1(
    from: ParticipantId,
    body: &[u8],
    threshold: usize,
) -> Result<dkg::round1::Package, Error> {
    let blame = |reason: String| Error::Misbehaved {
        culprit: from,
        reason,
    };
    if body.len() != threshold * 32 + 64 {
        return Err(blame(format!(
            "sent a {}-byte round-1 package, not {}",
            body.len(),
            threshold * 32 + 64
        )));
    }
    let (commitment, proof) = body.split_at(threshold * 32);
    let commitment = frost::keys::VerifiableSecretSharingCommitment::deserialize_whole(commitment)
        .map_err(|e| blame(format!("sent an invalid commitment: {e}")))?;
    let proof = frost::Signature::deserialize(proof)
        .map_err(|e| blame(format!("sent an invalid proof of knowledge: {e}")))?;
    Ok(dkg::round1::Package::new(commitment, proof))
}

impl Keygen {
    /// The digest of all round-1 packages (ours included), which every party must
    /// compute alike.
    fn digest(&self, bodies: &BTreeMap<ParticipantId, Vec<u8>>) -> [u8; 32] {
        let mut hasher = Sha3_256::new();
        hasher.update(CONFIRM_DOMAIN);
        hasher.update(self.instance.0);
        hasher.update((self.threshold as u32).to_le_bytes());
        for (p, body) in bodies {
            hasher.update(p.0.to_le_bytes());
            hasher.update((body.len() as u32).to_le_bytes());
            hasher.update(body);
        }
        hasher.finalize().into()
    }
}

impl Machine for Keygen {
    type Output = EddsaKeyShare;

    fn advance(&mut self, inbox: &mut Inbox) -> Result<Progress<EddsaKeyShare>, Error> {
        let stage = self.stage.take().ok_or(Error::WrongRound)?;
        match stage {
            Stage::Start { secret, package } => {
                let mine = encode_round1(&package)?;
                self.stage = Some(Stage::Round1 {
                    secret,
                    mine: mine.clone(),
                });
                Ok(Progress::Send(vec![Out::All(1, mine)]))
            }
            Stage::Round1 { secret, mine } => {
                if !inbox.complete(1) {
                    self.stage = Some(Stage::Round1 { secret, mine });
                    return Ok(Progress::Wait);
                }
                let mut bodies = inbox.take(1);
                let mut round1 = BTreeMap::new();
                for (from, body) in &bodies {
                    round1.insert(
                        codec::identifier(*from),
                        decode_round1(*from, body, self.threshold)?,
                    );
                }
                bodies.insert(self.me, mine);
                let digest = self.digest(&bodies);
                let (secret, shares) =
                    dkg::part2(secret, &round1).map_err(|e| self.ids.error(e, "keygen round 1"))?;
                let mut outs: Vec<Out> = self
                    .participants
                    .iter()
                    .filter(|p| *p != self.me)
                    .map(|p| {
                        let share = &shares[&codec::identifier(p)];
                        Out::To(p, 2, share.signing_share().serialize())
                    })
                    .collect();
                outs.push(Out::All(3, digest.to_vec()));
                self.stage = Some(Stage::Round2 {
                    secret,
                    round1,
                    digest,
                });
                Ok(Progress::Send(outs))
            }
            Stage::Round2 {
                secret,
                round1,
                digest,
            } => {
                if !inbox.complete(2) || !inbox.complete(3) {
                    self.stage = Some(Stage::Round2 {
                        secret,
                        round1,
                        digest,
                    });
                    return Ok(Progress::Wait);
                }
                inbox.confirm(3, &digest, "round-1 packages")?;
                let mut round2 = BTreeMap::new();
                for (from, body) in inbox.take(2) {
                    let share = frost::keys::SigningShare::deserialize(&body).map_err(|e| {
                        Error::Misbehaved {
                            culprit: from,
                            reason: format!("sent an invalid secret share: {e}"),
                        }
                    })?;
                    round2.insert(codec::identifier(from), dkg::round2::Package::new(share));
                }
                let (key_package, public) = dkg::part3(&secret, &round1, &round2)
                    .map_err(|e| self.ids.error(e, "keygen round 2"))?;
                let mut verifying_shares = BTreeMap::new();
                for p in self.participants.iter() {
                    let share = public
                        .verifying_shares()
                        .get(&codec::identifier(p))
                        .ok_or_else(|| {
                            Error::VerificationFailed(format!("no verifying share for {}", p.0))
                        })?;
                    verifying_shares.insert(p, codec::public_key(share.serialize())?);
                }
                let key = EddsaKeyShare {
                    me: self.me,
                    participants: self.participants.clone(),
                    threshold: self.threshold,
                    signing_share: codec::share_scalar(key_package.signing_share()),
                    verifying_shares,
                    public_key: codec::public_key(public.verifying_key().serialize())?,
                };
                key.check().map_err(Error::VerificationFailed)?;
                Ok(Progress::Done(key))
            }
        }
    }
}
