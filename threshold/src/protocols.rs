//! Starting each protocol: parameter checks, then a cait-sith state machine wrapped
//! in an [`Instance`] whose output is one of our records.

use crate::error::Error;
use crate::instance::Instance;
use crate::participants::{ParticipantId, Participants};
use crate::records::{KeyShare, Presignature, Triple};
use crate::wire::{InstanceId, ProtocolKind};
use cait_sith::{FullSignature, KeygenOutput, PresignArguments, PresignOutput};
use k256::elliptic_curve::sec1::ToEncodedPoint;
use k256::elliptic_curve::PrimeField;
use k256::{AffinePoint, ProjectivePoint, Scalar, Secp256k1};
use primitives::derivation::{derive_public_key, Tweak};
use primitives::{EcdsaPayload, EcdsaSignature};
use sha3::{Digest, Sha3_256};

/// Distributed key generation among `participants`; any `threshold` of them can
/// later sign. No dealer: nobody ever holds the key.
pub fn keygen(
    instance: InstanceId,
    me: ParticipantId,
    participants: Participants,
    threshold: usize,
) -> Result<Instance<KeyShare>, Error> {
    participants.check(me, threshold)?;
    let protocol =
        cait_sith::keygen::<Secp256k1>(&participants.to_cait_sith(), me.into(), threshold)?;
    let set = participants.clone();
    Ok(Instance::new(
        ProtocolKind::Keygen,
        instance,
        me,
        participants,
        protocol,
        move |out: KeygenOutput<Secp256k1>| {
            Ok(KeyShare {
                me,
                participants: set,
                threshold,
                private_share: out.private_share,
                public_key: out.public_key,
            })
        },
    ))
}

/// The public facts of a resharing: who held the key, who will, and the key.
#[derive(Clone, Debug)]
pub struct ReshareArgs {
    pub old_participants: Participants,
    pub old_threshold: usize,
    pub new_participants: Participants,
    pub new_threshold: usize,
    pub public_key: AffinePoint,
}

/// Moves the key from the old participants to the new ones (join, leave, threshold
/// change) without changing the public key. Parties of the old set pass their
/// share; newcomers pass `None`. At least `old_threshold` old participants must be
/// in the new set.
pub fn reshare(
    instance: InstanceId,
    me: ParticipantId,
    args: ReshareArgs,
    old_share: Option<&KeyShare>,
) -> Result<Instance<KeyShare>, Error> {
    args.new_participants.check(me, args.new_threshold)?;
    if args.old_threshold == 0 || args.old_threshold > args.old_participants.len() {
        return Err(Error::BadParameters(
            "old threshold does not fit the old participants".into(),
        ));
    }
    if let Some(share) = old_share {
        if share.me != me
            || share.public_key != args.public_key
            || share.participants != args.old_participants
            || share.threshold != args.old_threshold
        {
            return Err(Error::BadParameters(
                "the old share does not belong to this resharing".into(),
            ));
        }
    } else if args.old_participants.contains(me) {
        return Err(Error::BadParameters(
            "an old participant must bring its old share".into(),
        ));
    }
    let protocol = cait_sith::reshare::<Secp256k1>(
        &args.old_participants.to_cait_sith(),
        args.old_threshold,
        &args.new_participants.to_cait_sith(),
        args.new_threshold,
        me.into(),
        old_share.map(|s| s.private_share),
        args.public_key,
    )?;
    let ReshareArgs {
        new_participants,
        new_threshold,
        public_key,
        ..
    } = args;
    let set = new_participants.clone();
    Ok(Instance::new(
        ProtocolKind::Reshare,
        instance,
        me,
        new_participants,
        protocol,
        move |share: Scalar| {
            Ok(KeyShare {
                me,
                participants: set,
                threshold: new_threshold,
                private_share: share,
                public_key,
            })
        },
    ))
}

/// Generates one Beaver triple shared among `participants` with `threshold`.
/// Triples do not depend on the key; two make one presignature.
pub fn generate_triple(
    instance: InstanceId,
    me: ParticipantId,
    participants: Participants,
    threshold: usize,
) -> Result<Instance<Triple>, Error> {
    participants.check(me, threshold)?;
    let protocol = cait_sith::triples::generate_triple::<Secp256k1>(
        &participants.to_cait_sith(),
        me.into(),
        threshold,
    )?;
    let set = participants.clone();
    Ok(Instance::new(
        ProtocolKind::Triple,
        instance,
        me,
        participants,
        protocol,
        move |(share, public): cait_sith::triples::TripleGenerationOutput<Secp256k1>| {
            Ok(Triple {
                participants: set,
                threshold,
                a: share.a,
                b: share.b,
                c: share.c,
                big_a: public.big_a,
                big_b: public.big_b,
                big_c: public.big_c,
            })
        },
    ))
}

/// Makes a presignature for `key` from two unused triples. Consumes the triples:
/// mark them used in durable storage before calling this.
pub fn presign(
    instance: InstanceId,
    me: ParticipantId,
    participants: Participants,
    key: &KeyShare,
    triple0: Triple,
    triple1: Triple,
) -> Result<Instance<Presignature>, Error> {
    let threshold = key.threshold;
    participants.check(me, threshold)?;
    if key.me != me {
        return Err(Error::BadParameters(
            "the key share belongs to another participant".into(),
        ));
    }
    for (what, set, t) in [
        ("key", &key.participants, key.threshold),
        ("first triple", &triple0.participants, triple0.threshold),
        ("second triple", &triple1.participants, triple1.threshold),
    ] {
        if !participants.is_subset_of(set) {
            return Err(Error::BadParameters(format!(
                "not every presign participant holds the {what}"
            )));
        }
        if t != threshold {
            return Err(Error::BadParameters(format!(
                "the {what} has threshold {t}, the key {threshold}"
            )));
        }
    }
    let args = PresignArguments {
        triple0: triple0.into_cait_sith(),
        triple1: triple1.into_cait_sith(),
        keygen_out: KeygenOutput {
            private_share: key.private_share,
            public_key: key.public_key,
        },
        threshold,
    };
    let protocol = cait_sith::presign::<Secp256k1>(&participants.to_cait_sith(), me.into(), args)?;
    let set = participants.clone();
    Ok(Instance::new(
        ProtocolKind::Presign,
        instance,
        me,
        participants,
        protocol,
        move |out: PresignOutput<Secp256k1>| {
            Ok(Presignature {
                participants: set,
                threshold,
                big_r: out.big_r,
                k: out.k,
                sigma: out.sigma,
            })
        },
    ))
}

/// What a signature is for: the payload, the caller's tweak, and chain entropy
/// (the request's block random seed). Every party must use the same task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignTask {
    pub payload: EcdsaPayload,
    pub tweak: Tweak,
    pub entropy: [u8; 32],
}

/// Domain separation of the re-randomisation hash.
const RERANDOMIZE_DOMAIN: &[u8] = b"chain-signatures presignature rerandomization v1";

/// The re-randomiser δ for signing `task` with the presignature whose nonce point is
/// `big_r`: a hash of everything public about the signature, so every party derives
/// the same δ, no party chooses it, and a presignature made in advance cannot steer
/// the final nonce.
pub fn rerandomizer(big_r: &AffinePoint, derived_key: &AffinePoint, task: &SignTask) -> Scalar {
    for counter in 0u32.. {
        let mut hasher = Sha3_256::new();
        hasher.update(RERANDOMIZE_DOMAIN);
        hasher.update(counter.to_be_bytes());
        hasher.update(big_r.to_encoded_point(true).as_bytes());
        hasher.update(derived_key.to_encoded_point(true).as_bytes());
        hasher.update(task.tweak.to_bytes());
        hasher.update(task.payload.as_bytes());
        hasher.update(task.entropy);
        let candidate: Option<Scalar> = Scalar::from_repr(hasher.finalize()).into();
        if let Some(delta) = candidate.filter(|d| !bool::from(d.is_zero())) {
            return delta;
        }
    }
    unreachable!("a 2^-128 event 2^32 times in a row")
}

/// Signs `task` with the derived key `root + ε·G`, consuming `presignature` (mark it
/// used in durable storage first). Any `threshold` parties that hold it may sign.
///
/// The presignature is tweaked and re-randomised before use: with δ from
/// [`rerandomizer`], R' = δ·R, k' = k/δ, σ' = (σ + ε·k)/δ, which is a presignature
/// for the derived key x + ε with a nonce nobody could predict when it was made.
pub fn sign(
    instance: InstanceId,
    me: ParticipantId,
    participants: Participants,
    presignature: Presignature,
    root_public_key: &AffinePoint,
    task: &SignTask,
) -> Result<Instance<EcdsaSignature>, Error> {
    participants.check(me, presignature.threshold)?;
    if !participants.is_subset_of(&presignature.participants) {
        return Err(Error::BadParameters(
            "not every signer holds this presignature".into(),
        ));
    }
    let derived_key = derive_public_key(root_public_key, &task.tweak);
    let delta = rerandomizer(&presignature.big_r, &derived_key, task);
    let delta_inv = Option::<Scalar>::from(delta.invert()).expect("δ is non-zero");
    let epsilon = task.tweak.as_scalar();
    let tweaked = PresignOutput::<Secp256k1> {
        big_r: (ProjectivePoint::from(presignature.big_r) * delta).to_affine(),
        k: presignature.k * delta_inv,
        sigma: (presignature.sigma + epsilon * &presignature.k) * delta_inv,
    };
    let payload = task.payload;
    let protocol = cait_sith::sign::<Secp256k1>(
        &participants.to_cait_sith(),
        me.into(),
        derived_key,
        tweaked,
        payload.to_scalar(),
    )?;
    Ok(Instance::new(
        ProtocolKind::Sign,
        instance,
        me,
        participants,
        protocol,
        move |sig: FullSignature<Secp256k1>| {
            EcdsaSignature::for_key(&sig.big_r, &sig.s, &derived_key, &payload)
                .map_err(|e| Error::VerificationFailed(e.to_string()))
        },
    ))
}
