//! The Chain Signatures MPC node (`mpc-node`).
//!
//! Built so far: the peer-to-peer layer ([`p2p`]), durable storage ([`storage`]),
//! the protocol engine for keygen, resharing, triples, presignatures and signing
//! ([`engine`]) and the contract client ([`chain`]). The daemon loop that ties them
//! together, HTTP endpoints and the command line follow (issue 5).
#![forbid(unsafe_code)]

pub mod chain;
pub mod daemon;
pub mod engine;
pub mod p2p;
pub mod storage;
