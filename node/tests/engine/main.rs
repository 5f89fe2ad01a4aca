//! Engines, each with its own database, talking over the real peer-to-peer layer on
//! 127.0.0.1. The tests that do not depend on the signature scheme are written once
//! over [`Scheme`] (as ZF FROST writes its tests over the ciphersuite) and run for
//! ECDSA (cait-sith) and EdDSA (FROST): key generation then a burst of signatures
//! checked as a user would (secp256k1 recovery; ed25519-dalek `verify_strict`)
//! against the derived key; stock among rotating subsets of exactly the threshold;
//! resharing with a join, a leave and a threshold change that keeps the public
//! key, after which the new set signs; a presignature never used twice across a
//! restart; a peer declining; forged invitations and garbage frames refused
//! without harm; key generation and resharing as the contract's numbered attempts
//! (a new attempt voids the old one's runs, a share is replaced only by a later
//! attempt's, and a node that stored its share for an attempt takes no further
//! part in it). The tests of triples are ECDSA's alone.
//!
//! One test binary, its tests in modules by concern (`signing`, `stock`,
//! `key_events`, `refusals`, `steps_away`) over the shared `harness`.

#[path = "../suite/mod.rs"]
mod suite;

/// Runs a generic test for each scheme, as `module::scheme::name`.
macro_rules! for_each_scheme {
    ($($name:ident),* $(,)?) => {
        mod ecdsa {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name::<mpc_node::ecdsa::Ecdsa>().await
            })*
        }
        mod eddsa {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name::<mpc_node::eddsa::Eddsa>().await
            })*
        }
    };
}

mod harness;
mod key_events;
mod refusals;
mod signing;
mod steps_away;
mod stock;
