//! The Chain Signatures MPC node (`mpc-node`).
//!
//! Built so far: the peer-to-peer layer ([`p2p`]) and durable storage
//! ([`storage`]). The chain watcher, protocol orchestration, HTTP endpoints and the
//! daemon itself follow (issue 5).
#![forbid(unsafe_code)]

pub mod p2p;
pub mod storage;
