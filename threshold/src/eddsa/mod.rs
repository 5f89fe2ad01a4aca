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
//! | resharing to a new set or threshold, same group key (+ confirmation round) | [`reshare`] | [`EddsaKeyShare`] |
//!
//! **Resharing** ([`reshare`]). frost-core has no resharing to a new set or
//! threshold, so we compose the known redistribution protocol from its public
//! verifiable-secret-sharing types: Desmedt and Jajodia, "Redistributing secret
//! shares to new access structures and its applications" (GMU tech. report
//! ISSE-TR-97-01, 1997), made verifiable with Feldman commitments as in Wong,
//! Wang and Wing, "Verifiable secret redistribution for archive systems" (IEEE
//! SISW 2002). cait-sith's `reshare`, which [`crate::reshare`] uses for ECDSA, is
//! the same idea. The run is among the new participants; the old ones that stay
//! form the dealing set D (every party computes it from the inputs: the old
//! participants that are also new, in id order; at least `old_threshold` of
//! them, else the parameters are refused). With identifiers xᵢ = i + 1 and λᵢ
//! the Lagrange coefficient at 0 of i within D, the old key is s = Σ_{i∈D} λᵢsᵢ.
//!
//! 1. Each dealer i picks fᵢ of degree new_t − 1 with fᵢ(0) = λᵢsᵢ and the other
//!    coefficients from OsRng (`frost::keys::split` of λᵢsᵢ over the new
//!    identifiers), broadcasts the Feldman commitment Cᵢ,ₖ = aᵢ,ₖ·B
//!    (`VerifiableSecretSharingCommitment`), and sends fᵢ(xⱼ) privately to each
//!    new holder j. (Rounds 1 and 2, sent together.)
//! 2. Once all commitments are in, everyone broadcasts SHA3-256 of the public
//!    inputs (old and new sets and thresholds, group key Y, old verifying shares)
//!    and every commitment (round 3), and outputs nothing unless every digest
//!    equals its own: an equivocating dealer, or a party given other public
//!    inputs, aborts the run for everyone
//!    ([`Error::VerificationFailed`](crate::Error::VerificationFailed)).
//! 3. Each new holder j then checks, per dealer i, Cᵢ,₀ = λᵢ·Yᵢ against the
//!    dealer's old verifying share Yᵢ (so a dealer shares exactly its own
//!    weighted share; this also makes proofs of knowledge unnecessary, as no
//!    dealer chooses its constant term) and fᵢ(xⱼ)·B = Σₖ Cᵢ,ₖ·xⱼᵏ
//!    (`SecretShare::verify`); either failure names dealer i
//!    ([`Error::Misbehaved`](crate::Error::Misbehaved)). Then Σᵢ Cᵢ,₀ = Y.
//! 4. The new share is s'ⱼ = Σᵢ fᵢ(xⱼ); the commitments are summed
//!    coefficient-wise (on curve25519-dalek points: frost-core's `sum_commitments`
//!    is not public) and `PublicKeyPackage::from_commitment` evaluates the sum at
//!    every new identifier, giving every new verifying share Y'ⱼ = Σᵢ Σₖ Cᵢ,ₖ·xⱼᵏ
//!    and the group key, which must be Y.
//!
//! Newcomers need the old verifying shares as an input ([`EddsaReshareArgs`]);
//! old holders' records contain them. A newcomer given wrong ones fails the
//! confirmation round rather than accept another key. Old shares do not combine
//! with new ones (they lie on another polynomial); old holders should delete
//! theirs once the new set is confirmed. The run needs every new participant
//! (a missing one stalls it, like every protocol here).
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
//! share that fails its commitment, a resharing constant term that is not the
//! dealer's weighted old share, a signature share that fails its verifying
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
mod reshare;
mod sign;

pub use dkg::keygen;
pub use presign::presign;
pub use records::{EddsaKeyShare, EddsaPresignature};
pub use reshare::{reshare, EddsaReshareArgs};
pub use sign::{sign, verify, EddsaSignTask};
