//! Types and checks shared by the `multichain` contract, the MPC node and clients.
//!
//! Everything here compiles for `wasm32-unknown-unknown` (the contract) and for the
//! host (nodes, devnet, clients), so the contract and the nodes can never disagree on
//! a format or a derivation.
//!
//! - [`derivation`]: the per-(caller, path) tweak ε and the derived public key
//!   `root + ε·G`, bit-compatible with the deployed NEAR MPC network.
//! - [`near_key`]: NEAR's `secp256k1:<base58>` public key strings.
//! - [`request`]: what `sign` takes ([`SignRequest`], [`Payload`]) and what the
//!   contract stores and shows nodes ([`SignatureRequest`], [`RequestId`],
//!   [`PendingRequest`]).
//! - [`response`]: the signature the network returns ([`SignatureResponse`]): low-s
//!   normalisation, recovery id, verification.
//!
//! ```
//! use primitives::{derivation, near_key};
//!
//! let root = near_key::parse_secp256k1(
//!     "secp256k1:3tFRbMqmoa6AAALMrEFAYCEoHcqKxeW38YptwowBVBtXK1vo36HDbUWuR6EZmoK4JcH6HDkNMGGqP1ouV7VZUWya",
//! ).unwrap();
//! let derived = derivation::derive_public_key_for(&root, "alice.near", "ethereum-1").unwrap();
//! assert!(near_key::to_near_string(&derived).starts_with("secp256k1:"));
//! ```
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod address;
pub mod derivation;
mod hex_array;
pub mod near_key;
pub mod request;
pub mod response;

pub use derivation::Tweak;
pub use request::{Payload, PendingRequest, RequestId, SignRequest, SignatureRequest};
pub use response::{SerializableAffinePoint, SerializableScalar, SignatureResponse};

/// Re-exported so that users of these types name the same curve implementation.
pub use k256;
