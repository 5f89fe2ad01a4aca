//! What the engine tests and the simulation need of a scheme beyond [`Scheme`]:
//! the domain its engines serve (distinct per scheme, so a frame naming the wrong
//! domain shows), a payload to sign, how a user checks a signature (k256 for
//! ECDSA, ed25519-dalek `verify_strict` for Ed25519), and its nonce commitment.
#![allow(dead_code)] // each test crate uses part of it

use mpc_node::ecdsa::Ecdsa;
use mpc_node::eddsa::Eddsa;
use mpc_node::engine::Scheme;
use primitives::derivation::derive_public_key_for;
use primitives::ed25519::Ed25519PublicKey;
use primitives::{near_key, DomainId, EcdsaPayload, EddsaPayload, Payload, SignatureResponse};

/// What the simulation needs of a scheme beyond [`Scheme`]: the domain, payloads,
/// and how a user checks a signature and reads its nonce.
pub trait Suite: Scheme {
    const DOMAIN: DomainId;
    const NAME: &'static str;

    /// A valid payload of this scheme, different for each `seed`.
    fn payload(seed: u8) -> Payload;

    /// Checks `response` over `payload` for the key derived from the root key
    /// `public_key` (the contract's text) for `predecessor` and `path`.
    fn verify(
        public_key: &str,
        predecessor: &str,
        path: &str,
        payload: &Payload,
        response: &SignatureResponse,
    ) -> Result<(), String>;

    /// The signature's nonce commitment R (never the same twice, or the key leaks).
    fn nonce(response: &SignatureResponse) -> Vec<u8>;
}

impl Suite for Ecdsa {
    const DOMAIN: DomainId = DomainId(0);
    const NAME: &'static str = "ecdsa";

    fn payload(seed: u8) -> Payload {
        Payload::Ecdsa(EcdsaPayload::new([seed; 32]).unwrap())
    }

    fn verify(
        public_key: &str,
        predecessor: &str,
        path: &str,
        payload: &Payload,
        response: &SignatureResponse,
    ) -> Result<(), String> {
        let root = near_key::parse_secp256k1(public_key).map_err(|e| e.to_string())?;
        let derived = derive_public_key_for(&root, predecessor, path).map_err(|e| e.to_string())?;
        let Payload::Ecdsa(payload) = payload else {
            return Err("not an ECDSA payload".into());
        };
        response
            .as_ecdsa()
            .ok_or("not an ECDSA signature")?
            .verify(payload, &derived)
            .map_err(|e| e.to_string())
    }

    fn nonce(response: &SignatureResponse) -> Vec<u8> {
        response.as_ecdsa().unwrap().big_r.affine_point.to_vec()
    }
}

impl Suite for Eddsa {
    const DOMAIN: DomainId = DomainId(1);
    const NAME: &'static str = "eddsa";

    fn payload(seed: u8) -> Payload {
        Payload::Eddsa(EddsaPayload::new(vec![seed; 200]).unwrap())
    }

    fn verify(
        public_key: &str,
        predecessor: &str,
        path: &str,
        payload: &Payload,
        response: &SignatureResponse,
    ) -> Result<(), String> {
        let derived = Ed25519PublicKey::parse(public_key)
            .map_err(|e| e.to_string())?
            .derive_for(predecessor, path);
        let SignatureResponse::Ed25519 { signature } = response else {
            return Err("not an Ed25519 signature".into());
        };
        let Payload::Eddsa(message) = payload else {
            return Err("not an EdDSA payload".into());
        };
        ed25519_dalek::VerifyingKey::from_bytes(derived.as_bytes())
            .map_err(|e| e.to_string())?
            .verify_strict(
                message.as_bytes(),
                &ed25519_dalek::Signature::from_bytes(&signature.0),
            )
            .map_err(|e| e.to_string())
    }

    fn nonce(response: &SignatureResponse) -> Vec<u8> {
        let SignatureResponse::Ed25519 { signature } = response else {
            panic!("an Ed25519 answer")
        };
        signature.0[..32].to_vec()
    }
}
