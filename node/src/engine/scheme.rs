//! What differs by signature scheme, as the generic [`Engine`](super::Engine)
//! sees it. Each scheme lives in its own folder (`crate::ecdsa`, `crate::eddsa`)
//! and implements [`Scheme`]; the engine, the stock, the key-event follower and
//! the daemon are written once over it. Adding a scheme is a new folder and one
//! line in [`crate::engine::for_domain`].

use super::EngineError;
use crate::storage::{RecordKind, SealedRecord, StockRecord};
use primitives::{PendingRequest, SignatureResponse, SignatureScheme};
use threshold::{Instance, InstanceId, ParticipantId, Participants};

/// A threshold signature scheme: its protocols, records and contract formats.
///
/// Stock: a presignature is made among its holders from the key share and
/// [`Scheme::TRIPLES_PER_PRESIGNATURE`] *triples* made beforehand among the same
/// holders (cait-sith's Beaver triples; schemes with none, like FROST, set it to
/// zero and never make any). A presignature is consumed by exactly one signature.
pub trait Scheme: Sized + Send + 'static {
    /// The contract's name of the scheme: the engine serves domains of it.
    const SCHEME: SignatureScheme;
    /// Where this scheme's triples and presignatures are stored.
    const TRIPLES: RecordKind;
    const PRESIGNATURES: RecordKind;
    /// How many triples one presignature consumes.
    const TRIPLES_PER_PRESIGNATURE: usize;
    /// Whether a newcomer to a resharing needs public facts about the old key that
    /// only old holders know ([`Scheme::reshare_facts`]), so it joins a run an old
    /// holder started rather than propose one itself.
    const RESHARE_NEEDS_FACTS: bool;

    type KeyShare: SealedRecord + Clone + Send;
    type Triple: StockRecord + Send;
    type Presignature: StockRecord + Send;
    /// What a signature is for, derived from a request as read on chain.
    type SignTask: Clone + Send;
    type Signature: Send;

    /// The root public key of `share`, as the contract writes it.
    fn public_key_text(share: &Self::KeyShare) -> String;

    /// Public facts about the old key that newcomers to a resharing need (sent
    /// in the run's invitation; the protocol's confirmation round checks that
    /// every party used the same). Empty when [`Scheme::RESHARE_NEEDS_FACTS`] is
    /// false.
    fn reshare_facts(share: &Self::KeyShare) -> Vec<u8>;

    fn keygen(
        instance: InstanceId,
        me: ParticipantId,
        participants: Participants,
        threshold: usize,
    ) -> Result<Instance<Self::KeyShare>, threshold::Error>;

    fn reshare(
        instance: InstanceId,
        me: ParticipantId,
        spec: ReshareSpec<'_, Self>,
    ) -> Result<Instance<Self::KeyShare>, EngineError>;

    fn generate_triple(
        instance: InstanceId,
        me: ParticipantId,
        participants: Participants,
        threshold: usize,
    ) -> Result<Instance<Self::Triple>, threshold::Error>;

    /// Makes a presignature among `participants` from `triples` (exactly
    /// [`Scheme::TRIPLES_PER_PRESIGNATURE`] of them, taken from storage).
    fn presign(
        instance: InstanceId,
        me: ParticipantId,
        participants: Participants,
        key: &Self::KeyShare,
        triples: Vec<Self::Triple>,
    ) -> Result<Instance<Self::Presignature>, threshold::Error>;

    fn sign(
        instance: InstanceId,
        me: ParticipantId,
        signers: Participants,
        key: &Self::KeyShare,
        presignature: Self::Presignature,
        task: &Self::SignTask,
    ) -> Result<Instance<Self::Signature>, threshold::Error>;

    /// What to sign for `request` (a request of a domain of this scheme), derived
    /// by this node from the request's fields (payload, predecessor and path,
    /// chain entropy), or why it cannot be signed.
    fn sign_task(request: &PendingRequest) -> Result<Self::SignTask, String>;

    /// The answer `respond` carries for `signature`.
    fn response(signature: Self::Signature) -> SignatureResponse;

    /// Whether `response` answers `task` under the key derived from `key`'s root
    /// for it, as the contract checks it: for an answer a peer shares, which this
    /// node then holds instead of signing the request itself.
    fn check_response(
        key: &Self::KeyShare,
        task: &Self::SignTask,
        response: &SignatureResponse,
    ) -> Result<(), String>;
}

/// The inputs of one party to a resharing of a key, as the contract's key event
/// and this node's records give them.
pub struct ReshareSpec<'a, S: Scheme> {
    pub old_participants: &'a Participants,
    pub old_threshold: usize,
    /// The root key being kept, as the contract shows it.
    pub public_key: &'a str,
    /// [`Scheme::reshare_facts`] of the old key (empty if the scheme needs none).
    pub facts: &'a [u8],
    pub new_participants: Participants,
    pub new_threshold: usize,
    /// This node's share of the old key, if it holds one.
    pub old_share: Option<&'a S::KeyShare>,
}
