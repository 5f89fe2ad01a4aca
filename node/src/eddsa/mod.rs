//! EdDSA over Ed25519 (ZF FROST, through the `threshold` crate): DKG, resharing
//! by verifiable redistribution, nonce commitments stocked as presignatures, one
//! round of signature shares aggregated by every signer.

use crate::engine::{EngineError, ReshareSpec, Scheme};
use crate::storage::{RecordKind, SealedRecord, StockRecord};
use borsh::{BorshDeserialize, BorshSerialize};
use primitives::ed25519::{Ed25519PublicKey, Ed25519Tweak};
use primitives::{Ed25519Signature, Payload, PendingRequest, SignatureResponse, SignatureScheme};
use std::collections::BTreeMap;
use threshold::eddsa::{self, EddsaKeyShare, EddsaPresignature, EddsaReshareArgs, EddsaSignTask};
use threshold::{Instance, InstanceId, ParticipantId, Participants};

/// The EdDSA scheme of Ed25519 domains.
pub enum Eddsa {}

/// FROST makes no triples: a presignature (nonce commitments) needs only the key.
pub enum NoTriple {}

impl SealedRecord for NoTriple {
    fn to_bytes(&self) -> Vec<u8> {
        match *self {}
    }
    fn from_bytes(_: &[u8]) -> Result<Self, threshold::Error> {
        Err(threshold::Error::BadParameters(
            "EdDSA has no triples".into(),
        ))
    }
}

impl StockRecord for NoTriple {
    fn holders(&self) -> &Participants {
        match *self {}
    }
}

/// The facts a newcomer to a resharing needs: every old holder's verifying share
/// `sᵢ·B`, against which each dealer's commitment is checked.
#[derive(BorshSerialize, BorshDeserialize)]
struct VerifyingShares(Vec<(u32, [u8; 32])>);

impl Scheme for Eddsa {
    const SCHEME: SignatureScheme = SignatureScheme::Ed25519;
    const TRIPLES: RecordKind =
        RecordKind::new("eddsa triple", "eddsa_triples", "used_eddsa_triples");
    const PRESIGNATURES: RecordKind = RecordKind::new(
        "eddsa presignature",
        "eddsa_presignatures",
        "used_eddsa_presignatures",
    );
    const TRIPLES_PER_PRESIGNATURE: usize = 0;
    const RESHARE_NEEDS_FACTS: bool = true;

    type KeyShare = EddsaKeyShare;
    type Triple = NoTriple;
    type Presignature = EddsaPresignature;
    type SignTask = EddsaSignTask;
    type Signature = Ed25519Signature;

    fn public_key_text(share: &EddsaKeyShare) -> String {
        share.public_key.to_near_string()
    }

    fn reshare_facts(share: &EddsaKeyShare) -> Vec<u8> {
        let shares = share
            .verifying_shares
            .iter()
            .map(|(id, key)| (id.0, *key.as_bytes()))
            .collect();
        borsh::to_vec(&VerifyingShares(shares)).expect("serialises")
    }

    fn keygen(
        instance: InstanceId,
        me: ParticipantId,
        participants: Participants,
        threshold: usize,
    ) -> Result<Instance<EddsaKeyShare>, threshold::Error> {
        eddsa::keygen(instance, me, participants, threshold)
    }

    fn reshare(
        instance: InstanceId,
        me: ParticipantId,
        spec: ReshareSpec<'_, Self>,
    ) -> Result<Instance<EddsaKeyShare>, EngineError> {
        let public_key = Ed25519PublicKey::parse(spec.public_key).map_err(|e| {
            EngineError::Refused(format!("the key to reshare is not an Ed25519 key: {e}"))
        })?;
        let facts = VerifyingShares::try_from_slice(spec.facts).map_err(|e| {
            EngineError::Refused(format!("unreadable verifying shares of the old key: {e}"))
        })?;
        let mut old_verifying_shares = BTreeMap::new();
        for (id, bytes) in facts.0 {
            let key = Ed25519PublicKey::from_bytes(bytes).map_err(|e| {
                EngineError::Refused(format!("a verifying share of the old key: {e}"))
            })?;
            old_verifying_shares.insert(ParticipantId(id), key);
        }
        let args = EddsaReshareArgs {
            old_participants: spec.old_participants.clone(),
            old_threshold: spec.old_threshold,
            old_verifying_shares,
            new_participants: spec.new_participants,
            new_threshold: spec.new_threshold,
            public_key,
        };
        Ok(eddsa::reshare(instance, me, args, spec.old_share)?)
    }

    fn generate_triple(
        _instance: InstanceId,
        _me: ParticipantId,
        _participants: Participants,
        _threshold: usize,
    ) -> Result<Instance<NoTriple>, threshold::Error> {
        Err(threshold::Error::BadParameters(
            "EdDSA has no triples".into(),
        ))
    }

    fn presign(
        instance: InstanceId,
        me: ParticipantId,
        participants: Participants,
        key: &EddsaKeyShare,
        triples: Vec<NoTriple>,
    ) -> Result<Instance<EddsaPresignature>, threshold::Error> {
        debug_assert!(triples.is_empty(), "NoTriple has no values");
        eddsa::presign(instance, me, participants, key)
    }

    fn sign(
        instance: InstanceId,
        me: ParticipantId,
        signers: Participants,
        key: &EddsaKeyShare,
        presignature: EddsaPresignature,
        task: &EddsaSignTask,
    ) -> Result<Instance<Ed25519Signature>, threshold::Error> {
        eddsa::sign(instance, me, signers, key, presignature, task)
    }

    fn sign_task(request: &PendingRequest) -> Result<EddsaSignTask, String> {
        let Payload::Eddsa(payload) = &request.payload else {
            return Err("an Ecdsa payload in an Ed25519 domain".into());
        };
        Ok(EddsaSignTask {
            payload: payload.clone(),
            tweak: Ed25519Tweak::derive(&request.predecessor, &request.path),
        })
    }

    fn response(signature: Ed25519Signature) -> SignatureResponse {
        SignatureResponse::Ed25519 { signature }
    }

    fn check_response(
        key: &EddsaKeyShare,
        task: &EddsaSignTask,
        response: &SignatureResponse,
    ) -> Result<(), String> {
        let SignatureResponse::Ed25519 { signature } = response else {
            return Err("a secp256k1 answer in an Ed25519 domain".into());
        };
        let derived = key.public_key.derive(&task.tweak);
        eddsa::verify(&derived, task.payload.as_bytes(), signature).map_err(|e| e.to_string())
    }
}
