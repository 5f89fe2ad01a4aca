//! Threshold EdDSA over Ed25519: ZF's FROST (`frost-ed25519` 3.0, whose
//! frost-core NCC audited; RFC 9591) behind our own types, in the same
//! sans-I/O [`Instance`](crate::Instance) model, wire header and record format as
//! the ECDSA protocols beside it.
//!
//! | step | function | output |
//! | --- | --- | --- |
//! | distributed key generation (+ confirmation round) | [`keygen`] | [`EddsaKeyShare`] |
//! | nonce commitments, ahead of time (+ confirmation round) | [`presign`] | [`EddsaPresignature`] |
//! | signing for a derived key, one round | [`sign`] | [`primitives::Ed25519Signature`] |
//!
//! Resharing to a new set or threshold is **not implemented yet**: an EdDSA key
//! can be generated and used, not moved to other participants. (frost-core has
//! none; the plan in DESIGN.md §7 is the redistribution cait-sith uses for ECDSA,
//! built from frost-core's public VSS types, with a confirmation round.)
//!
//! **Participants.** Our [`ParticipantId`](crate::ParticipantId) `i` is frost's
//! identifier `i + 1`, at every party.
//!
//! **Why nonce commitments are a protocol.** FROST's round one needs no
//! interaction to *make* nonces, but every signer must sign over the same list of
//! commitments, so they must be exchanged before the message is known, and a
//! signer that saw a different list would produce a share the others reject
//! (blaming an honest party). [`presign`] therefore exchanges them among a signing
//! set and confirms with a hash that everyone holds the same list, exactly like
//! DKG's confirmation round. Its output is stocked like an ECDSA presignature:
//! not `Clone`, consumed by value by [`sign`], used at most once, ever (DESIGN.md
//! §7). Any `threshold` members of the presigning set may then sign with it, so a
//! presignature made among more than `threshold` parties survives some of them
//! being down. Unlike ECDSA no re-randomisation with chain entropy is needed: each
//! FROST nonce is `dᵢ + ρᵢ·eᵢ` with the binding factor `ρᵢ` a hash of the message,
//! the derived key and all commitments, fixed only once the request is known.
//!
//! **Tweak.** See [`sign`]: every holder adds ε to its share, verifying shares and
//! the group key move by ε·B.
//!
//! **Blame.** Checks that name a party (an invalid proof of knowledge, a secret
//! share that fails its commitment, a signature share that fails its verifying
//! share — frost's cheater detection —, or a payload that does not decode) abort
//! with [`Error::Misbehaved`](crate::Error::Misbehaved) naming it; a confirmation
//! hash that differs aborts with
//! [`Error::VerificationFailed`](crate::Error::VerificationFailed) (somebody
//! equivocated, not necessarily the sender).
//!
//! **Wire.** Payloads after the 34-byte header are one round byte and fixed-size
//! 32-byte encodings (scalars little-endian and canonical, points compressed and
//! checked to be in the prime-order subgroup); frost's own serialisation format
//! is not used.
//!
//! ```
//! use threshold::{eddsa, local, InstanceId, Participants};
//!
//! let parties = Participants::first(3).unwrap();
//! let instances = parties
//!     .iter()
//!     .map(|me| eddsa::keygen(InstanceId([1; 32]), me, parties.clone(), 2).unwrap())
//!     .collect();
//! let shares = local::run(instances, &local::Schedule::default()).all_done().unwrap();
//! assert!(shares.iter().all(|s| s.public_key == shares[0].public_key));
//! ```

mod codec;
mod dkg;
mod machine;
mod presign;
mod records;
mod sign;

pub use dkg::keygen;
pub use presign::presign;
pub use records::{EddsaKeyShare, EddsaPresignature};
pub use sign::{sign, EddsaSignTask};
