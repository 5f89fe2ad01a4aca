//! Resharing an Ed25519 key to a new participant set and threshold, keeping the
//! group key: the redistribution protocol of Desmedt–Jajodia (1997) made
//! verifiable with Feldman commitments as in Wong–Wang–Wing (2002), which is
//! also what cait-sith's `reshare` does for ECDSA. See [`super`] for the
//! write-up.
//!
//! | round | sent by | to | body |
//! | --- | --- | --- | --- |
//! | 1 | each dealer | all | Feldman commitment to its polynomial (new_t × 32 bytes) |
//! | 2 | each dealer | each other new holder | that holder's share of its polynomial (32) |
//! | 3 | everyone | all | SHA3-256 of the public inputs and every commitment received (32) |
//!
//! Dealers send rounds 1 and 2 together at the start; everyone sends round 3 once
//! all commitments are in, and outputs only when every digest equals its own and
//! every check passed.

use super::codec::{self, lagrange, point_from_bytes};
use super::machine::{Driven, Inbox, Machine, Out, Progress};
use super::records::EddsaKeyShare;
use crate::error::Error;
use crate::instance::Instance;
use crate::participants::{ParticipantId, Participants};
use crate::wire::{InstanceId, ProtocolKind};
use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::Scalar;
use frost::keys::{
    IdentifierList, PublicKeyPackage, SecretShare, SigningShare, VerifiableSecretSharingCommitment,
};
use frost_ed25519 as frost;
use primitives::ed25519::Ed25519PublicKey;
use sha3::{Digest, Sha3_256};
use std::collections::{BTreeMap, BTreeSet};

const CONFIRM_DOMAIN: &[u8] = b"chain-signatures eddsa reshare commitments confirmation v1";

/// The public facts of an EdDSA resharing: who held the key (with their verifying
/// shares), who will, and the key. Every party must pass the same facts; the
/// confirmation round compares them. Old holders have them in their
/// [`EddsaKeyShare`] ([`EddsaReshareArgs::new`]); newcomers get them from the
/// contract or the old holders (a wrong copy makes the run fail, never succeed
/// with another key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EddsaReshareArgs {
    pub old_participants: Participants,
    pub old_threshold: usize,
    /// `sᵢ·B` of every old participant.
    pub old_verifying_shares: BTreeMap<ParticipantId, Ed25519PublicKey>,
    pub new_participants: Participants,
    pub new_threshold: usize,
    /// The group key, which resharing keeps.
    pub public_key: Ed25519PublicKey,
}

impl EddsaReshareArgs {
    /// The facts for moving the key `old` belongs to to `new_participants` with
    /// `new_threshold`.
    pub fn new(old: &EddsaKeyShare, new_participants: Participants, new_threshold: usize) -> Self {
        EddsaReshareArgs {
            old_participants: old.participants.clone(),
            old_threshold: old.threshold,
            old_verifying_shares: old.verifying_shares.clone(),
            new_participants,
            new_threshold,
            public_key: old.public_key,
        }
    }

    /// The dealers: every old participant that is also in the new set (the run's
    /// participants), in id order. Every party computes the same list.
    pub fn dealers(&self) -> Vec<ParticipantId> {
        self.old_participants
            .iter()
            .filter(|p| self.new_participants.contains(*p))
            .collect()
    }
}

/// Moves an Ed25519 key to `args.new_participants` with `args.new_threshold`
/// (join, leave, threshold change) without changing the group key. Runs among
/// the new participants; the old participants among them (at least
/// `old_threshold`) deal and must pass their old share, newcomers pass `None`.
/// Old participants that leave take no part.
pub fn reshare(
    instance: InstanceId,
    me: ParticipantId,
    args: EddsaReshareArgs,
    old_share: Option<&EddsaKeyShare>,
) -> Result<Instance<EddsaKeyShare>, Error> {
    let bad = |why: &str| Err(Error::BadParameters(why.into()));
    args.new_participants.check(me, args.new_threshold)?;
    if args.new_threshold < 2 {
        return bad("FROST needs a threshold of at least 2");
    }
    let new_n = u16::try_from(args.new_participants.len())
        .map_err(|_| Error::BadParameters("too many participants for FROST".into()))?;
    if args.old_threshold == 0 || args.old_threshold > args.old_participants.len() {
        return bad("old threshold does not fit the old participants");
    }
    if args
        .old_verifying_shares
        .keys()
        .copied()
        .collect::<Vec<_>>()
        != args.old_participants.iter().collect::<Vec<_>>()
    {
        return bad("old verifying shares are not those of the old participants");
    }
    let dealers = args.dealers();
    if dealers.len() < args.old_threshold {
        return bad("fewer than old_threshold old participants are in the new set");
    }
    // The dealers' verifying shares must interpolate to the group key: then the
    // constant-commitment checks below pin the new secret to the old one.
    let group: EdwardsPoint = dealers
        .iter()
        .map(|p| lagrange(*p, &dealers) * args.old_verifying_shares[p].point())
        .sum();
    if group != *args.public_key.point() {
        return bad("the old verifying shares do not interpolate to the group key");
    }
    let mut mine = None;
    match (old_share, args.old_participants.contains(me)) {
        (Some(share), true) => {
            if share.me != me
                || share.participants != args.old_participants
                || share.threshold != args.old_threshold
                || share.public_key != args.public_key
                || share.verifying_shares != args.old_verifying_shares
            {
                return bad("the old share does not belong to this resharing");
            }
            mine = Some(deal(&args, share, &dealers, new_n)?);
        }
        (None, false) => {}
        (None, true) => return bad("an old participant must bring its old share"),
        (Some(_), false) => return bad("a newcomer has no old share"),
    }
    let others_dealing: Vec<ParticipantId> = dealers.iter().copied().filter(|p| *p != me).collect();
    let others: Vec<ParticipantId> = args.new_participants.iter().filter(|p| *p != me).collect();
    let inbox = Inbox::per_round(vec![others_dealing.clone(), others_dealing, others.clone()]);
    let participants = args.new_participants.clone();
    let machine = Reshare {
        instance,
        me,
        args,
        dealers,
        stage: Some(Stage::Start(mine)),
    };
    Ok(Instance::from_driver(
        ProtocolKind::EddsaReshare,
        instance,
        me,
        participants,
        Box::new(Driven::new(machine, inbox)),
    ))
}

/// Our dealing: a Feldman sharing of `λᵢ·sᵢ` for the new participants, made by
/// frost-core's `keys::split` (which draws the other coefficients from OsRng).
struct Dealing {
    /// The commitment, serialized (the round-1 body).
    commitment: Vec<u8>,
    /// Each new participant's share, ours included.
    shares: BTreeMap<ParticipantId, SigningShare>,
}

fn deal(
    args: &EddsaReshareArgs,
    share: &EddsaKeyShare,
    dealers: &[ParticipantId],
    new_n: u16,
) -> Result<Dealing, Error> {
    let weighted = lagrange(share.me, dealers) * share.signing_share;
    let key = frost::SigningKey::deserialize(weighted.as_bytes())
        .map_err(|e| Error::BadParameters(format!("the weighted share: {e}")))?;
    let new: Vec<ParticipantId> = args.new_participants.iter().collect();
    let identifiers: Vec<frost::Identifier> = new.iter().map(|p| codec::identifier(*p)).collect();
    let (shares, _) = frost::keys::split(
        &key,
        new_n,
        args.new_threshold as u16,
        IdentifierList::Custom(&identifiers),
        &mut rand::rngs::OsRng,
    )
    .map_err(|e| Error::BadParameters(e.to_string()))?;
    let mut commitment = None;
    let mut out = BTreeMap::new();
    for p in new {
        let secret = shares
            .get(&codec::identifier(p))
            .ok_or_else(|| Error::VerificationFailed("frost split left a holder out".into()))?;
        commitment.get_or_insert_with(|| secret.commitment().clone());
        out.insert(p, *secret.signing_share());
    }
    let commitment = commitment
        .ok_or_else(|| Error::VerificationFailed("no new participants".into()))?
        .serialize_whole()
        .map_err(|e| Error::VerificationFailed(e.to_string()))?;
    Ok(Dealing {
        commitment,
        shares: out,
    })
}

enum Stage {
    Start(Option<Dealing>),
    /// Waiting for every dealer's commitment.
    Commitments {
        own: Option<(Vec<u8>, SigningShare)>,
    },
    /// Waiting for the private shares and everyone's digest.
    Shares {
        commitments: BTreeMap<ParticipantId, Vec<u8>>,
        own_share: Option<SigningShare>,
        digest: [u8; 32],
    },
}

struct Reshare {
    instance: InstanceId,
    me: ParticipantId,
    args: EddsaReshareArgs,
    dealers: Vec<ParticipantId>,
    stage: Option<Stage>,
}

/// A dealer's commitment: decoded by frost-core, and as curve25519-dalek points
/// (to compare its constant term and sum the commitments coefficient-wise, which
/// frost-core's public API does not offer).
struct Decoded {
    frost: VerifiableSecretSharingCommitment,
    points: Vec<EdwardsPoint>,
}

fn decode_commitment(from: ParticipantId, body: &[u8], t: usize) -> Result<Decoded, Error> {
    let blame = |reason: String| Error::Misbehaved {
        culprit: from,
        reason,
    };
    if body.len() != t * 32 {
        return Err(blame(format!(
            "sent a {}-byte resharing commitment, not {}",
            body.len(),
            t * 32
        )));
    }
    let frost = VerifiableSecretSharingCommitment::deserialize_whole(body)
        .map_err(|e| blame(format!("sent an invalid resharing commitment: {e}")))?;
    let points = body
        .chunks_exact(32)
        .map(point_from_bytes)
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| blame("sent a commitment that is not in the prime-order group".into()))?;
    Ok(Decoded { frost, points })
}

impl Reshare {
    /// The digest of the public inputs and every dealer's commitment, which every
    /// party must compute alike.
    fn digest(&self, commitments: &BTreeMap<ParticipantId, Vec<u8>>) -> [u8; 32] {
        let a = &self.args;
        let mut hasher = Sha3_256::new();
        hasher.update(CONFIRM_DOMAIN);
        hasher.update(self.instance.0);
        let mut set = |parties: &Participants, t: usize| {
            hasher.update((parties.len() as u32).to_le_bytes());
            for p in parties.iter() {
                hasher.update(p.0.to_le_bytes());
            }
            hasher.update((t as u32).to_le_bytes());
        };
        set(&a.old_participants, a.old_threshold);
        set(&a.new_participants, a.new_threshold);
        hasher.update(a.public_key.as_bytes());
        for share in a.old_verifying_shares.values() {
            hasher.update(share.as_bytes());
        }
        for (p, body) in commitments {
            hasher.update(p.0.to_le_bytes());
            hasher.update((body.len() as u32).to_le_bytes());
            hasher.update(body);
        }
        hasher.finalize().into()
    }

    /// Checks every commitment and share, then assembles our new key share.
    fn finish(
        &self,
        commitments: &BTreeMap<ParticipantId, Vec<u8>>,
        mut shares: BTreeMap<ParticipantId, Vec<u8>>,
        own_share: Option<SigningShare>,
    ) -> Result<EddsaKeyShare, Error> {
        let t = self.args.new_threshold;
        let mut sum = vec![EdwardsPoint::default(); t];
        let mut secret = Scalar::ZERO;
        for &dealer in &self.dealers {
            let blame = |reason: String| Error::Misbehaved {
                culprit: dealer,
                reason,
            };
            let body = commitments.get(&dealer).ok_or_else(|| {
                Error::VerificationFailed(format!("no commitment of {}", dealer.0))
            })?;
            let decoded = decode_commitment(dealer, body, t)?;
            // Cᵢ,₀ = λᵢ·Yᵢ: the dealer shares exactly its weighted old share.
            let expected =
                lagrange(dealer, &self.dealers) * self.args.old_verifying_shares[&dealer].point();
            if decoded.points[0] != expected {
                return Err(blame(
                    "dealt a constant term that is not its Lagrange-weighted old share".into(),
                ));
            }
            let share = if dealer == self.me {
                own_share.ok_or_else(|| Error::VerificationFailed("no share of our own".into()))?
            } else {
                let body = shares.remove(&dealer).ok_or_else(|| {
                    Error::VerificationFailed(format!("no share from {}", dealer.0))
                })?;
                SigningShare::deserialize(&body)
                    .map_err(|e| blame(format!("sent an invalid resharing share: {e}")))?
            };
            // fᵢ(j)·B = Σₖ Cᵢ,ₖ·jᵏ (frost-core's vss_verify).
            SecretShare::new(codec::identifier(self.me), share, decoded.frost)
                .verify()
                .map_err(|e| {
                    blame(format!(
                        "sent a resharing share that fails its commitment: {e}"
                    ))
                })?;
            secret += codec::share_scalar(&share);
            for (total, point) in sum.iter_mut().zip(&decoded.points) {
                *total += point;
            }
        }
        // Σᵢ Cᵢ,₀ = Y: the new polynomial shares the old key.
        if sum[0] != *self.args.public_key.point() {
            return Err(Error::VerificationFailed(
                "the dealt constant terms do not sum to the group key".into(),
            ));
        }
        let summed = VerifiableSecretSharingCommitment::deserialize(
            sum.iter().map(|p| p.compress().to_bytes()),
        )
        .map_err(|e| Error::VerificationFailed(format!("summed commitment: {e}")))?;
        let identifiers: BTreeSet<frost::Identifier> = self
            .args
            .new_participants
            .iter()
            .map(codec::identifier)
            .collect();
        let public = PublicKeyPackage::from_commitment(&identifiers, &summed)
            .map_err(|e| Error::VerificationFailed(format!("new verifying shares: {e}")))?;
        let mut verifying_shares = BTreeMap::new();
        for p in self.args.new_participants.iter() {
            let share = public
                .verifying_shares()
                .get(&codec::identifier(p))
                .ok_or_else(|| {
                    Error::VerificationFailed(format!("no verifying share for {}", p.0))
                })?;
            verifying_shares.insert(p, codec::public_key(share.serialize())?);
        }
        let public_key = codec::public_key(public.verifying_key().serialize())?;
        if public_key != self.args.public_key {
            return Err(Error::VerificationFailed(
                "the new sharing is not of the group key".into(),
            ));
        }
        let key = EddsaKeyShare {
            me: self.me,
            participants: self.args.new_participants.clone(),
            threshold: t,
            signing_share: secret,
            verifying_shares,
            public_key,
        };
        key.check().map_err(Error::VerificationFailed)?;
        Ok(key)
    }
}

impl Machine for Reshare {
    type Output = EddsaKeyShare;

    fn advance(&mut self, inbox: &mut Inbox) -> Result<Progress<EddsaKeyShare>, Error> {
        let stage = self.stage.take().ok_or(Error::WrongRound)?;
        match stage {
            Stage::Start(None) => {
                self.stage = Some(Stage::Commitments { own: None });
                Ok(Progress::Send(Vec::new()))
            }
            Stage::Start(Some(mut dealing)) => {
                let own = dealing
                    .shares
                    .remove(&self.me)
                    .ok_or_else(|| Error::VerificationFailed("no share of our own".into()))?;
                let mut outs = vec![Out::All(1, dealing.commitment.clone())];
                for (p, share) in &dealing.shares {
                    outs.push(Out::To(*p, 2, share.serialize()));
                }
                self.stage = Some(Stage::Commitments {
                    own: Some((dealing.commitment, own)),
                });
                Ok(Progress::Send(outs))
            }
            Stage::Commitments { own } => {
                if !inbox.complete(1) {
                    self.stage = Some(Stage::Commitments { own });
                    return Ok(Progress::Wait);
                }
                let mut commitments = inbox.take(1);
                // Undecodable bytes name their sender at once; the checks against
                // the old verifying shares wait for the confirmation round, so a
                // party given wrong public inputs blames nobody.
                for (from, body) in &commitments {
                    decode_commitment(*from, body, self.args.new_threshold)?;
                }
                let own_share = match own {
                    Some((commitment, share)) => {
                        commitments.insert(self.me, commitment);
                        Some(share)
                    }
                    None => None,
                };
                let digest = self.digest(&commitments);
                self.stage = Some(Stage::Shares {
                    commitments,
                    own_share,
                    digest,
                });
                Ok(Progress::Send(vec![Out::All(3, digest.to_vec())]))
            }
            Stage::Shares {
                commitments,
                own_share,
                digest,
            } => {
                if !inbox.complete(2) || !inbox.complete(3) {
                    self.stage = Some(Stage::Shares {
                        commitments,
                        own_share,
                        digest,
                    });
                    return Ok(Progress::Wait);
                }
                inbox.confirm(3, &digest, "resharing commitments or inputs")?;
                let shares = inbox.take(2);
                self.finish(&commitments, shares, own_share)
                    .map(Progress::Done)
            }
        }
    }
}
