//! The Chain Signatures MPC node (`mpc-node`).
//!
//! Built so far: the peer-to-peer layer ([`p2p`]), durable storage ([`storage`])
//! and the protocol engine for keygen, resharing, triples, presignatures and
//! signing ([`engine`]). The chain watcher, HTTP endpoints and the daemon itself
//! follow (issue 5).
#![forbid(unsafe_code)]

pub mod engine;
pub mod p2p;
pub mod storage;
