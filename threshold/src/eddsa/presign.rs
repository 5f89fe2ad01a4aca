//! Nonce commitments made ahead of time (FROST round one, `round1::commit`), as
//! a two-round protocol among a signing set.
//!
//! | round | sent | body |
//! | --- | --- | --- |
//! | 1 | to all | our hiding ‖ binding nonce commitments (64 bytes) |
//! | 2 | to all | SHA3-256 of every commitment as we received it (32) |
//!
//! The output, an [`EddsaPresignature`], holds our secret nonces and everyone's
//! commitments, which every member then holds alike (round 2 checks that).

use super::codec::{self, point_from_bytes};
use super::machine::{Driven, Inbox, Machine, Out, Progress};
use super::records::{EddsaKeyShare, EddsaPresignature};
use crate::error::Error;
use crate::instance::Instance;
use crate::participants::{ParticipantId, Participants};
use crate::wire::{InstanceId, ProtocolKind};
use curve25519_dalek::Scalar;
use frost_ed25519 as frost;
use primitives::ed25519::Ed25519PublicKey;
use sha3::{Digest, Sha3_256};
use std::collections::BTreeMap;

const CONFIRM_DOMAIN: &[u8] = b"chain-signatures eddsa presign commitments confirmation v1";

type Commitments = BTreeMap<ParticipantId, (Ed25519PublicKey, Ed25519PublicKey)>;

/// Makes one set of FROST nonces and commitments for a later signature by
/// `participants` (at least `threshold` holders of `key`; any `threshold` of them
/// may later sign with it). Needs the key share only to hedge the nonces' entropy.
pub fn presign(
    instance: InstanceId,
    me: ParticipantId,
    participants: Participants,
    key: &EddsaKeyShare,
) -> Result<Instance<EddsaPresignature>, Error> {
    participants.check(me, key.threshold)?;
    if key.me != me {
        return Err(Error::BadParameters(
            "the key share belongs to another participant".into(),
        ));
    }
    if !participants.is_subset_of(&key.participants) {
        return Err(Error::BadParameters(
            "not every presign participant holds the key".into(),
        ));
    }
    let (nonces, commitments) = frost::round1::commit(
        &codec::signing_share(&key.signing_share),
        &mut rand::rngs::OsRng,
    );
    let scalar =
        |bytes: Vec<u8>| codec::scalar_from_bytes(&bytes).expect("frost nonces are canonical");
    let point = |bytes: Result<Vec<u8>, frost::Error>| codec::public_key(bytes);
    let hiding = scalar(nonces.hiding().serialize());
    let binding = scalar(nonces.binding().serialize());
    let mine = (
        point(commitments.hiding().serialize())?,
        point(commitments.binding().serialize())?,
    );
    let others: Vec<ParticipantId> = participants.iter().filter(|p| *p != me).collect();
    let machine = Presign {
        instance,
        me,
        participants: participants.clone(),
        threshold: key.threshold,
        public_key: key.public_key,
        nonces: Some((hiding, binding)),
        mine,
        commitments: None,
        started: false,
    };
    Ok(Instance::from_driver(
        ProtocolKind::EddsaPresign,
        instance,
        me,
        participants,
        Box::new(Driven::new(machine, Inbox::new(2, others))),
    ))
}

struct Presign {
    instance: InstanceId,
    me: ParticipantId,
    participants: Participants,
    threshold: usize,
    public_key: Ed25519PublicKey,
    nonces: Option<(Scalar, Scalar)>,
    mine: (Ed25519PublicKey, Ed25519PublicKey),
    commitments: Option<(Commitments, [u8; 32])>,
    started: bool,
}

impl Presign {
    fn digest(&self, commitments: &Commitments) -> [u8; 32] {
        let mut hasher = Sha3_256::new();
        hasher.update(CONFIRM_DOMAIN);
        hasher.update(self.instance.0);
        hasher.update(self.public_key.as_bytes());
        for (p, (d, e)) in commitments {
            hasher.update(p.0.to_le_bytes());
            hasher.update(d.as_bytes());
            hasher.update(e.as_bytes());
        }
        hasher.finalize().into()
    }
}

impl Machine for Presign {
    type Output = EddsaPresignature;

    fn advance(&mut self, inbox: &mut Inbox) -> Result<Progress<EddsaPresignature>, Error> {
        if !self.started {
            self.started = true;
            let mut body = self.mine.0.as_bytes().to_vec();
            body.extend_from_slice(self.mine.1.as_bytes());
            return Ok(Progress::Send(vec![Out::All(1, body)]));
        }
        let Some((commitments, digest)) = &self.commitments else {
            if !inbox.complete(1) {
                return Ok(Progress::Wait);
            }
            let mut commitments = Commitments::new();
            for (from, body) in inbox.take(1) {
                let decoded = (body.len() == 64)
                    .then(|| {
                        Some((
                            point_from_bytes(&body[..32])?,
                            point_from_bytes(&body[32..])?,
                        ))
                    })
                    .flatten()
                    .ok_or_else(|| Error::Misbehaved {
                        culprit: from,
                        reason: "sent invalid nonce commitments".into(),
                    })?;
                commitments.insert(
                    from,
                    (
                        Ed25519PublicKey::from_point(decoded.0),
                        Ed25519PublicKey::from_point(decoded.1),
                    ),
                );
            }
            commitments.insert(self.me, self.mine);
            let digest = self.digest(&commitments);
            self.commitments = Some((commitments, digest));
            return Ok(Progress::Send(vec![Out::All(2, digest.to_vec())]));
        };
        if !inbox.complete(2) {
            return Ok(Progress::Wait);
        }
        inbox.confirm(2, digest.as_slice(), "nonce commitments")?;
        let (hiding, binding) = self.nonces.take().ok_or(Error::WrongRound)?;
        Ok(Progress::Done(EddsaPresignature {
            me: self.me,
            participants: self.participants.clone(),
            threshold: self.threshold,
            public_key: self.public_key,
            hiding,
            binding,
            commitments: commitments.clone(),
        }))
    }
}
