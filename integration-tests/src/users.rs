//! What a test's user does: accounts with keys to spare, sign requests in each
//! of `sign`'s argument shapes, `sign` itself, and checking an answer against
//! the key derived for the caller, each scheme by an independent implementation.

use crate::{id, Cluster, NEAR};
use k256::AffinePoint;
use mpc_node::chain::Chain;
use near_crypto::SecretKey;
use near_primitives::account::{AccessKey, AccessKeyPermission};
use near_primitives::transaction::{Action, AddKeyAction};
use primitives::ed25519::Ed25519PublicKey;
use primitives::{
    derivation, DomainId, EcdsaPayload, EddsaPayload, Payload, SignRequest, SignRequestArgs,
    SignatureResponse,
};

/// An ECDSA sign request for `payload` (must be non-zero and below the curve
/// order) and `path`, in domain 0.
pub fn request(payload: [u8; 32], path: &str) -> SignRequest {
    SignRequest {
        payload: Payload::Ecdsa(EcdsaPayload::new(payload).expect("a valid payload")),
        path: path.into(),
        domain_id: DomainId::LEGACY_ECDSA,
    }
}

/// The domain of Ed25519 keys on every cluster (by the deployed convention).
pub const ED25519_DOMAIN: DomainId = DomainId(1);

/// An EdDSA sign request for `message` (32..=1232 bytes, e.g. a Solana message) and
/// `path`, in domain 1.
pub fn eddsa_request(message: Vec<u8>, path: &str) -> SignRequest {
    SignRequest {
        payload: Payload::Eddsa(EddsaPayload::new(message).expect("a valid Eddsa payload")),
        path: path.into(),
        domain_id: ED25519_DOMAIN,
    }
}

/// The three argument shapes `sign` accepts (DESIGN §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgsShape {
    /// `{"request": {"payload_v2": {"Ecdsa": "<hex>"}, "path", "domain_id"}}`
    Current,
    /// `{"request": {"payload": "<hex>", "path", "key_version"}}`
    Legacy,
    /// `{"payload": [32 bytes], "path"}`
    Seed,
}

impl ArgsShape {
    pub const ALL: [ArgsShape; 3] = [ArgsShape::Current, ArgsShape::Legacy, ArgsShape::Seed];

    /// The JSON arguments of `sign` for `request` in this shape. The legacy and seed
    /// shapes carry only ECDSA payloads (the seed's only domain 0).
    pub fn args(self, request: &SignRequest) -> serde_json::Value {
        let ecdsa = || match &request.payload {
            Payload::Ecdsa(payload) => *payload,
            Payload::Eddsa(_) => panic!("{self:?} arguments carry only ECDSA payloads"),
        };
        match self {
            ArgsShape::Current => serde_json::json!({ "request": SignRequestArgs {
                payload_v2: Some(request.payload.clone()),
                path: request.path.clone(),
                domain_id: Some(request.domain_id),
                ..Default::default()
            }}),
            ArgsShape::Legacy => serde_json::json!({ "request": SignRequestArgs {
                payload: Some(ecdsa()),
                path: request.path.clone(),
                key_version: Some(request.domain_id.0),
                ..Default::default()
            }}),
            ArgsShape::Seed => {
                assert_eq!(request.domain_id, DomainId::LEGACY_ECDSA);
                serde_json::json!({ "payload": ecdsa().as_bytes(), "path": request.path })
            }
        }
    }
}

impl Cluster {
    /// Creates account `name` with `keys` full-access keys; returns one client per
    /// key, so a test can have that many transactions in flight from one account.
    pub async fn user(&self, name: &str, keys: usize) -> Result<Vec<Chain>, String> {
        Ok(self
            .user_keys(name, keys)
            .await?
            .into_iter()
            .map(|key| self.client(name, key))
            .collect())
    }

    /// Creates account `name` with `keys` full-access keys; returns the keys.
    pub async fn user_keys(&self, name: &str, keys: usize) -> Result<Vec<SecretKey>, String> {
        let extra: Vec<SecretKey> = (1..keys)
            .map(|_| SecretKey::from_random(near_crypto::KeyType::ED25519))
            .collect();
        let actions = extra
            .iter()
            .map(|key| {
                Action::AddKey(Box::new(AddKeyAction {
                    public_key: key.public_key(),
                    access_key: AccessKey {
                        nonce: 0,
                        permission: AccessKeyPermission::FullAccess,
                    },
                }))
            })
            .collect();
        let first = self
            .root
            .create_account(&id(name), 100 * NEAR, actions)
            .await
            .map_err(|e| format!("creating {name}: {e}"))?;
        Ok(std::iter::once(first).chain(extra).collect())
    }

    /// A client of the contract signing as `account` with `key`.
    pub fn client(&self, account: &str, key: SecretKey) -> Chain {
        Chain::new(
            self.devnet.rpc_url(),
            self.contract.clone(),
            id(account),
            key,
        )
    }

    /// `user` calls `sign` (current argument shape) with 1 yoctoNEAR and `tgas` of
    /// gas; the signature.
    pub async fn sign(
        &self,
        user: &Chain,
        request: &SignRequest,
        tgas: u64,
    ) -> Result<SignatureResponse, String> {
        self.sign_in_shape(user, request, ArgsShape::Current, tgas)
            .await
    }

    /// Like [`Cluster::sign`], with the arguments in `shape`.
    pub async fn sign_in_shape(
        &self,
        user: &Chain,
        request: &SignRequest,
        shape: ArgsShape,
        tgas: u64,
    ) -> Result<SignatureResponse, String> {
        let answer = user
            .call("sign", shape.args(request), tgas, 1)
            .await
            .map_err(|e| format!("sign: {e}"))?;
        serde_json::from_slice(&answer).map_err(|e| format!("the answer of sign: {e}"))
    }

    /// Checks `signature` against the key derived for `user`'s account and the
    /// request's path, in the request's scheme. Ed25519 signatures are checked with
    /// `ring` (BoringSSL's code), an implementation independent of the one that
    /// signed (frost-ed25519 on curve25519-dalek) and of the contract's
    /// (nearcore's ed25519-dalek).
    pub fn verify(
        &self,
        user: &Chain,
        request: &SignRequest,
        signature: &SignatureResponse,
    ) -> Result<(), String> {
        if let Payload::Eddsa(message) = &request.payload {
            let derived = self
                .ed25519_public_key()
                .derive_for(user.account().as_str(), &request.path);
            let SignatureResponse::Ed25519 { signature } = signature else {
                return Err(format!(
                    "expected an Ed25519 answer to an EdDSA request, got {signature:?}"
                ));
            };
            return verify_ed25519(&derived, message.as_bytes(), &signature.0);
        }
        self.verify_ecdsa(user, request, signature).map(|_| ())
    }

    /// [`Cluster::verify`] for an ECDSA request; returns the derived key.
    pub fn verify_ecdsa(
        &self,
        user: &Chain,
        request: &SignRequest,
        signature: &SignatureResponse,
    ) -> Result<AffinePoint, String> {
        let derived = derivation::derive_public_key_for(
            &self.public_key(),
            user.account().as_str(),
            &request.path,
        )
        .map_err(|e| e.to_string())?;
        let (SignatureResponse::Secp256k1(signature), Payload::Ecdsa(payload)) =
            (signature, &request.payload)
        else {
            return Err(format!(
                "expected a secp256k1 answer to an ECDSA request, got {signature:?}"
            ));
        };
        signature
            .verify(payload, &derived)
            .map_err(|e| format!("the signature does not verify: {e}"))?;
        Ok(derived)
    }
}

/// Checks an Ed25519 signature with `ring`, independently of curve25519-dalek.
pub fn verify_ed25519(
    key: &Ed25519PublicKey,
    message: &[u8],
    signature: &[u8; 64],
) -> Result<(), String> {
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, key.as_bytes())
        .verify(message, signature)
        .map_err(|_| {
            format!(
                "the Ed25519 signature does not verify for {}",
                key.to_near_string()
            )
        })
}
