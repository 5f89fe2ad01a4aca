//! Threshold ECDSA over secp256k1 and threshold EdDSA over Ed25519 ([`eddsa`]:
//! FROST) for Chain Signatures, as pure state machines: no
//! I/O and no clock. Each protocol run at each party is an [`Instance`]: feed it
//! messages with [`Instance::receive`], and [`Instance::poke`] it for messages to
//! send and, at the end, its output. The node runs instances over its network;
//! tests and benchmarks run all parties in one process with [`local::run`].
//!
//! The protocols are cait-sith 0.8's (Beaver-triple based threshold ECDSA, whose
//! specification names the rounds "Spec 1.x / 2.x"); this crate owns their
//! orchestration inputs, our wire and storage formats, the key derivation tweak and
//! presignature re-randomisation:
//!
//! | step | function | output |
//! | --- | --- | --- |
//! | distributed key generation | [`keygen`] | [`KeyShare`] |
//! | resharing (join, leave, new threshold; same public key) | [`reshare`] | [`KeyShare`] |
//! | Beaver triple generation (key-independent) | [`generate_triple`] | [`Triple`] |
//! | presigning (two triples, one key share) | [`presign`] | [`Presignature`] |
//! | signing for a derived key, one round | [`sign`] | [`primitives::EcdsaSignature`] |
//!
//! EdDSA (FROST, frost-ed25519 3.0) sits beside it in [`eddsa`] with the same
//! model: [`eddsa::keygen`] → [`EddsaKeyShare`], [`eddsa::reshare`] (new set or
//! threshold, same group key) → [`EddsaKeyShare`], [`eddsa::presign`] (nonce
//! commitments) → [`EddsaPresignature`], [`eddsa::sign`] →
//! [`primitives::Ed25519Signature`].
//!
//! Key-safety rules (DESIGN.md §7), enforced by types where possible: triples and
//! presignatures are consumed by value and must be marked used in durable storage
//! before use; signing re-randomises the presignature with chain entropy.
//!
//! ```
//! use threshold::{keygen, local, InstanceId, ParticipantId, Participants};
//!
//! let parties = Participants::first(3).unwrap();
//! let instances = parties
//!     .iter()
//!     .map(|me| keygen(InstanceId([1; 32]), me, parties.clone(), 2).unwrap())
//!     .collect();
//! let shares = local::run(instances, &local::Schedule::default()).all_done().unwrap();
//! assert!(shares.iter().all(|s| s.public_key == shares[0].public_key));
//! ```
#![forbid(unsafe_code)]

pub mod eddsa;
mod error;
mod instance;
pub mod local;
mod participants;
mod protocols;
mod records;
pub mod wire;

pub use eddsa::{EddsaKeyShare, EddsaPresignature, EddsaReshareArgs, EddsaSignTask};
pub use error::Error;
pub use instance::{Instance, Outgoing, Recipient, Step};
pub use participants::{ParticipantId, Participants};
pub use protocols::{
    generate_triple, keygen, presign, rerandomizer, reshare, sign, ReshareArgs, SignTask,
};
pub use records::{KeyShare, Presignature, Triple, RECORD_VERSION};
pub use wire::{InstanceId, ProtocolKind};
