//! ECDSA over secp256k1 (cait-sith, through the `threshold` crate): keygen,
//! resharing, Beaver triples, presignatures from two triples, one-round signing
//! re-randomised with chain entropy.

use crate::engine::{EngineError, ReshareSpec, Scheme};
use crate::storage::RecordKind;
use primitives::derivation::{derive_public_key, Tweak};
use primitives::{
    near_key, EcdsaSignature, Payload, PendingRequest, SignatureResponse, SignatureScheme,
};
use threshold::{
    Instance, InstanceId, KeyShare, ParticipantId, Participants, Presignature, ReshareArgs,
    SignTask, Triple,
};

/// The ECDSA scheme of secp256k1 domains.
pub enum Ecdsa {}

impl Scheme for Ecdsa {
    const SCHEME: SignatureScheme = SignatureScheme::Secp256k1;
    // The table names predate other schemes; stored stock stays readable.
    const TRIPLES: RecordKind = RecordKind::new("triple", "triples", "used_triples");
    const PRESIGNATURES: RecordKind =
        RecordKind::new("presignature", "presignatures", "used_presignatures");
    const TRIPLES_PER_PRESIGNATURE: usize = 2;
    const RESHARE_NEEDS_FACTS: bool = false;

    type KeyShare = KeyShare;
    type Triple = Triple;
    type Presignature = Presignature;
    type SignTask = SignTask;
    type Signature = EcdsaSignature;

    fn public_key_text(share: &KeyShare) -> String {
        near_key::to_near_string(&share.public_key)
    }

    fn reshare_facts(_share: &KeyShare) -> Vec<u8> {
        Vec::new()
    }

    fn keygen(
        instance: InstanceId,
        me: ParticipantId,
        participants: Participants,
        threshold: usize,
    ) -> Result<Instance<KeyShare>, threshold::Error> {
        threshold::keygen(instance, me, participants, threshold)
    }

    fn reshare(
        instance: InstanceId,
        me: ParticipantId,
        spec: ReshareSpec<'_, Self>,
    ) -> Result<Instance<KeyShare>, EngineError> {
        let public_key = near_key::parse_secp256k1(spec.public_key).map_err(|e| {
            EngineError::Refused(format!("the key to reshare is not a secp256k1 key: {e}"))
        })?;
        let args = ReshareArgs {
            old_participants: spec.old_participants.clone(),
            old_threshold: spec.old_threshold,
            new_participants: spec.new_participants,
            new_threshold: spec.new_threshold,
            public_key,
        };
        Ok(threshold::reshare(instance, me, args, spec.old_share)?)
    }

    fn generate_triple(
        instance: InstanceId,
        me: ParticipantId,
        participants: Participants,
        threshold: usize,
    ) -> Result<Instance<Triple>, threshold::Error> {
        threshold::generate_triple(instance, me, participants, threshold)
    }

    fn presign(
        instance: InstanceId,
        me: ParticipantId,
        participants: Participants,
        key: &KeyShare,
        triples: Vec<Triple>,
    ) -> Result<Instance<Presignature>, threshold::Error> {
        let [triple0, triple1]: [Triple; 2] = triples.try_into().map_err(|_| {
            threshold::Error::BadParameters("an ECDSA presignature takes two triples".into())
        })?;
        threshold::presign(instance, me, participants, key, triple0, triple1)
    }

    fn sign(
        instance: InstanceId,
        me: ParticipantId,
        signers: Participants,
        key: &KeyShare,
        presignature: Presignature,
        task: &SignTask,
    ) -> Result<Instance<EcdsaSignature>, threshold::Error> {
        threshold::sign(instance, me, signers, presignature, &key.public_key, task)
    }

    fn sign_task(request: &PendingRequest) -> Result<SignTask, String> {
        let Payload::Ecdsa(payload) = &request.payload else {
            return Err("an Eddsa payload in a secp256k1 domain".into());
        };
        let tweak = Tweak::derive(&request.predecessor, &request.path)
            .map_err(|_| "the tweak of the request is out of range".to_string())?;
        Ok(SignTask {
            payload: *payload,
            tweak,
            entropy: request.entropy.0,
        })
    }

    fn response(signature: EcdsaSignature) -> SignatureResponse {
        SignatureResponse::Secp256k1(signature)
    }

    fn check_response(
        key: &KeyShare,
        task: &SignTask,
        response: &SignatureResponse,
    ) -> Result<(), String> {
        let signature = response
            .as_ecdsa()
            .ok_or("an Ed25519 answer in a secp256k1 domain")?;
        let derived = derive_public_key(&key.public_key, &task.tweak);
        signature
            .verify(&task.payload, &derived)
            .map_err(|e| format!("the answer does not verify: {e}"))
    }
}
