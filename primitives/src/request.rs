//! What `sign` takes and what the contract keeps while the network works on it.
//!
//! `sign` accepts three shapes (DESIGN §4), all resolved to one [`SignRequest`]:
//! - current: `{"request": {"payload_v2": {"Ecdsa": "<hex>"} | {"Eddsa": "<hex>"}, "path", "domain_id"}}`
//! - legacy: `{"request": {"payload": [32 bytes] | "<hex>", "path", "key_version"}}`
//! - the seed's: `{"payload": [32 bytes], "path"}` (domain 0).

use crate::domain::{DomainId, SignatureScheme};
use crate::hex_array::{self, HexVisitor};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use borsh::{BorshDeserialize, BorshSerialize};
use core::fmt;
use k256::elliptic_curve::PrimeField;
use k256::Scalar;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha3::{Digest, Sha3_256};

/// The 32-byte digest an ECDSA chain signs (an Ethereum transaction hash, a Bitcoin
/// sighash, ...), read as a big-endian number.
///
/// ECDSA signs a scalar, so the payload must be non-zero and below the curve order;
/// [`Payload::new`] and deserialisation enforce it. In JSON it is accepted as an array
/// of 32 numbers (the seed's `[u8; 32]`) or as a hex string (optionally `0x`-prefixed),
/// and written as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, BorshSerialize, BorshDeserialize)]
pub struct EcdsaPayload([u8; 32]);

/// Why a payload was refused. The texts are part of the contract's API.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PayloadError {
    /// All zero bytes.
    Zero,
    /// At or above the secp256k1 curve order.
    NotBelowOrder,
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PayloadError::Zero => f.write_str("payload must not be zero"),
            PayloadError::NotBelowOrder => f.write_str(
                "payload must be below the secp256k1 curve order (a 32-byte big-endian hash to sign)",
            ),
        }
    }
}

impl EcdsaPayload {
    /// Checks that `bytes` is a non-zero scalar below the curve order.
    ///
    /// ```
    /// use primitives::EcdsaPayload;
    /// assert!(EcdsaPayload::new([1; 32]).is_ok());
    /// assert!(EcdsaPayload::new([0; 32]).is_err());
    /// assert!(EcdsaPayload::new([0xff; 32]).is_err());
    /// ```
    pub fn new(bytes: [u8; 32]) -> Result<Self, PayloadError> {
        // Byte comparisons, not field arithmetic: the contract checks every payload.
        if !crate::recover::below_order(&bytes) {
            Err(PayloadError::NotBelowOrder)
        } else if bytes == [0; 32] {
            Err(PayloadError::Zero)
        } else {
            Ok(EcdsaPayload(bytes))
        }
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The payload as the scalar ECDSA signs.
    pub fn to_scalar(&self) -> Scalar {
        Scalar::from_repr(self.0.into()).expect("Payload invariant: below the curve order")
    }
}

impl fmt::Debug for EcdsaPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EcdsaPayload({})", hex_array::encode_lower(&self.0))
    }
}

impl Serialize for EcdsaPayload {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex_array::encode_lower(&self.0))
    }
}

impl<'de> Deserialize<'de> for EcdsaPayload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PayloadVisitor;
        impl<'de> serde::de::Visitor<'de> for PayloadVisitor {
            type Value = [u8; 32];
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("payload as an array of 32 bytes or a hex string of 32 bytes")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<[u8; 32], E> {
                serde::de::Visitor::visit_str(HexVisitor::<32> { what: "payload" }, v)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<[u8; 32], A::Error> {
                let mut out = [0u8; 32];
                let mut len = 0usize;
                while let Some(byte) = seq.next_element::<u8>()? {
                    if len < 32 {
                        out[len] = byte;
                    }
                    len += 1;
                }
                if len != 32 {
                    return Err(serde::de::Error::custom(format!(
                        "payload must be 32 bytes, got {len}"
                    )));
                }
                Ok(out)
            }
        }
        let bytes = deserializer.deserialize_any(PayloadVisitor)?;
        EcdsaPayload::new(bytes).map_err(serde::de::Error::custom)
    }
}

/// The smallest and largest Ed25519 message `sign` accepts, in bytes (a Solana
/// transaction message fits in 1232).
pub const EDDSA_PAYLOAD_MIN: usize = 32;
pub const EDDSA_PAYLOAD_MAX: usize = 1232;

/// The message an Ed25519 chain signs (e.g. a Solana transaction message), 32 to
/// 1232 bytes, written as hex.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, BorshSerialize, BorshDeserialize)]
pub struct EddsaPayload(Vec<u8>);

impl EddsaPayload {
    pub fn new(bytes: Vec<u8>) -> Result<Self, EddsaPayloadError> {
        if !(EDDSA_PAYLOAD_MIN..=EDDSA_PAYLOAD_MAX).contains(&bytes.len()) {
            return Err(EddsaPayloadError { len: bytes.len() });
        }
        Ok(EddsaPayload(bytes))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// An Eddsa payload of the wrong length. The text is part of the contract's API.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct EddsaPayloadError {
    pub len: usize,
}

impl fmt::Display for EddsaPayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "an Eddsa payload must be {EDDSA_PAYLOAD_MIN} to {EDDSA_PAYLOAD_MAX} bytes, got {}",
            self.len
        )
    }
}

impl fmt::Debug for EddsaPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EddsaPayload({})", hex_array::encode_lower(&self.0))
    }
}

impl Serialize for EddsaPayload {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex_array::encode_lower(&self.0))
    }
}

impl<'de> Deserialize<'de> for EddsaPayload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EddsaVisitor;
        impl serde::de::Visitor<'_> for EddsaVisitor {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an Eddsa payload as a hex string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
                let digits = v.strip_prefix("0x").unwrap_or(v);
                hex::decode(digits)
                    .map_err(|e| E::custom(format!("the Eddsa payload is not valid hex: {e}")))
            }
        }
        let bytes = deserializer.deserialize_str(EddsaVisitor)?;
        EddsaPayload::new(bytes).map_err(serde::de::Error::custom)
    }
}

/// What to sign, tagged by scheme: `sign`'s `payload_v2`,
/// `{"Ecdsa": "<hex of 32 bytes>"}` or `{"Eddsa": "<hex of 32..=1232 bytes>"}`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub enum Payload {
    Ecdsa(EcdsaPayload),
    Eddsa(EddsaPayload),
}

impl Payload {
    /// The scheme a domain must have to sign this payload.
    pub fn scheme(&self) -> SignatureScheme {
        match self {
            Payload::Ecdsa(_) => SignatureScheme::Secp256k1,
            Payload::Eddsa(_) => SignatureScheme::Ed25519,
        }
    }

    /// The `payload_v2` variant's name.
    pub fn kind(&self) -> &'static str {
        self.scheme().payload_kind()
    }

    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Payload::Ecdsa(p) => p.as_bytes(),
            Payload::Eddsa(p) => p.as_bytes(),
        }
    }

    pub fn as_ecdsa(&self) -> Option<&EcdsaPayload> {
        match self {
            Payload::Ecdsa(p) => Some(p),
            Payload::Eddsa(_) => None,
        }
    }
}

/// The `request` argument of `sign` as it arrives: either payload field and either
/// domain field. [`SignRequestArgs::resolve`] checks the combination.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct SignRequestArgs {
    /// Legacy: an ECDSA payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<EcdsaPayload>,
    /// Current: a payload tagged by scheme.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_v2: Option<Payload>,
    pub path: String,
    /// Legacy name of `domain_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_version: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_id: Option<DomainId>,
}

/// Why `sign`'s arguments were refused before looking at any domain. The texts are
/// part of the contract's API.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SignArgsError {
    BothPayloads,
    NoPayload,
    BothDomainIds,
}

impl fmt::Display for SignArgsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SignArgsError::BothPayloads => {
                "give either `payload_v2` or the legacy `payload`, not both"
            }
            SignArgsError::NoPayload => {
                "sign needs a payload: `payload_v2` ({\"Ecdsa\": \"<hex>\"} or {\"Eddsa\": \"<hex>\"}) or the legacy `payload`"
            }
            SignArgsError::BothDomainIds => {
                "give either `domain_id` or its legacy name `key_version`, not both"
            }
        })
    }
}

impl SignRequestArgs {
    /// The request these arguments make: a payload, a path and a domain (0 unless
    /// given).
    pub fn resolve(self) -> Result<SignRequest, SignArgsError> {
        let payload = match (self.payload, self.payload_v2) {
            (Some(_), Some(_)) => return Err(SignArgsError::BothPayloads),
            (None, None) => return Err(SignArgsError::NoPayload),
            (Some(legacy), None) => Payload::Ecdsa(legacy),
            (None, Some(current)) => current,
        };
        let domain_id = match (self.key_version, self.domain_id) {
            (Some(_), Some(_)) => return Err(SignArgsError::BothDomainIds),
            (Some(version), None) => DomainId(version),
            (None, Some(id)) => id,
            (None, None) => DomainId::LEGACY_ECDSA,
        };
        Ok(SignRequest {
            payload,
            path: self.path,
            domain_id,
        })
    }
}

/// A sign request after its arguments were resolved.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct SignRequest {
    pub payload: Payload,
    pub path: String,
    pub domain_id: DomainId,
}

/// Identifies one signature request: SHA3-256 over the tweak hash (which binds the
/// caller and the path), the domain and the payload with its kind. Identical
/// requests share an id and so share one answer. Written as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, BorshSerialize, BorshDeserialize)]
pub struct RequestId(pub [u8; 32]);

/// Domain separation for [`RequestId`] hashes.
const REQUEST_ID_DOMAIN: &[u8] = b"chain-signatures request id v2:";

impl RequestId {
    /// The id of `payload` signed in `domain` for the tweak hash of (predecessor, path).
    pub fn new(tweak_hash: &[u8; 32], domain: DomainId, payload: &Payload) -> Self {
        let mut hasher = Sha3_256::new();
        hasher.update(REQUEST_ID_DOMAIN);
        hasher.update(tweak_hash);
        hasher.update(domain.0.to_be_bytes());
        hasher.update([payload.scheme() as u8]);
        hasher.update((payload.as_bytes().len() as u32).to_be_bytes());
        hasher.update(payload.as_bytes());
        RequestId(hasher.finalize().into())
    }

    /// The id of `request` made by `predecessor`.
    pub fn of(predecessor: &str, request: &SignRequest) -> Self {
        let hash = crate::derivation::tweak_hash(predecessor, &request.path);
        Self::new(&hash, request.domain_id, &request.payload)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex_array::encode_lower(&self.0))
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestId({self})")
    }
}

impl Serialize for RequestId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex_array::encode_lower(&self.0))
    }
}

impl<'de> Deserialize<'de> for RequestId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_str(HexVisitor::<32> { what: "request id" })
            .map(RequestId)
    }
}

/// 32 bytes written as lowercase hex: the chain's randomness at the block of a request.
#[derive(Clone, Copy, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize)]
pub struct Entropy(pub [u8; 32]);

impl Serialize for Entropy {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex_array::encode_lower(&self.0))
    }
}

impl<'de> Deserialize<'de> for Entropy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_str(HexVisitor::<32> { what: "entropy" })
            .map(Entropy)
    }
}

/// One request waiting for the network, as the contract's `pending_requests` view
/// shows it: everything a node needs to sign and `respond`. There is deliberately no
/// tweak here: a node derives it from `predecessor` and `path` itself.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct PendingRequest {
    pub request_id: RequestId,
    /// The account that called `sign`; with `path` it determines the tweak.
    pub predecessor: String,
    pub payload: Payload,
    pub path: String,
    pub domain_id: DomainId,
    /// The block random seed when the request was first made: chain entropy for
    /// re-randomising the presignature, so no single node can steer the nonce.
    pub entropy: Entropy,
    /// Height of the block in which the request was first made.
    pub block_height: u64,
    /// How many identical calls wait for this one answer.
    pub waiting: u32,
}

impl PendingRequest {
    /// The request as `sign` resolved it.
    pub fn sign_request(&self) -> SignRequest {
        SignRequest {
            payload: self.payload.clone(),
            path: self.path.clone(),
            domain_id: self.domain_id,
        }
    }

    /// Whether `request_id` is what this request's fields hash to (a node checks this
    /// before signing, so an RPC cannot pair an id with other content).
    pub fn id_matches(&self) -> bool {
        RequestId::of(&self.predecessor, &self.sign_request()) == self.request_id
    }
}

/// One change to the set of pending requests, as the contract's `pending_changes`
/// view shows it: a node that read `pending_requests` once follows these instead of
/// reading the whole list again every poll.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum PendingChange {
    /// The request began to wait, shown as it waits at the view's block (later
    /// changes to `waiting` are not logged). A request no longer pending then is
    /// left out (its `Removed` follows in the log).
    Added(PendingRequest),
    /// The request was answered or timed out: it waits no more.
    Removed(RequestId),
}

/// What `pending_changes(from, limit)` answers: everything a node polls for, in
/// one view. Changes are numbered from 0 over the contract's life; the contract
/// keeps the most recent ones only.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct PendingChanges {
    /// A digest of what the `state` view shows at this block (SHA-256 of its borsh
    /// bytes): a node reads `state` again only when this changes.
    pub state_digest: [u8; 32],
    /// Changes `from..next`, oldest first; `None` when change `from` is no longer
    /// kept: the reader has fallen behind and must read `pending_requests` again.
    pub changes: Option<Vec<PendingChange>>,
    /// Where to read from next time.
    pub next: u64,
    /// How many changes there have been so far (`next < latest`: more follow now).
    pub latest: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER_HEX: &str = "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141";

    #[test]
    fn ecdsa_payload_accepts_bytes_and_hex_and_writes_hex() {
        let from_array: EcdsaPayload = serde_json::from_str(&format!("{:?}", [7u8; 32])).unwrap();
        let from_hex: EcdsaPayload =
            serde_json::from_str(&format!("\"{}\"", "07".repeat(32))).unwrap();
        let from_0x: EcdsaPayload =
            serde_json::from_str(&format!("\"0x{}\"", "07".repeat(32))).unwrap();
        assert_eq!(from_array, EcdsaPayload::new([7; 32]).unwrap());
        assert_eq!(from_hex, from_array);
        assert_eq!(from_0x, from_array);
        assert_eq!(
            serde_json::to_string(&from_array).unwrap(),
            format!("\"{}\"", "07".repeat(32))
        );
    }

    #[test]
    fn ecdsa_payload_rejections_say_what_is_wrong() {
        let err = |json: &str| {
            serde_json::from_str::<EcdsaPayload>(json)
                .unwrap_err()
                .to_string()
        };
        assert!(err(&format!("{:?}", [1u8; 31])).contains("payload must be 32 bytes, got 31"));
        assert!(err(&format!("{:?}", [1u8; 33])).contains("payload must be 32 bytes, got 33"));
        assert!(err(&format!("\"{}\"", "ab".repeat(31)))
            .contains("payload must be 32 bytes (64 hex digits)"));
        assert!(err(&format!("\"{}\"", "zz".repeat(32))).contains("payload is not valid hex"));
        assert!(err(&format!("{:?}", [0u8; 32])).contains("payload must not be zero"));
        assert!(err(&format!("\"{ORDER_HEX}\"")).contains("below the secp256k1 curve order"));
        assert!(err("[256,0]").contains("u8"));
        assert!(err("{}").contains("payload as an array of 32 bytes or a hex string"));
    }

    #[test]
    fn largest_valid_ecdsa_payload_is_order_minus_one() {
        let mut bytes: [u8; 32] = hex::decode(ORDER_HEX).unwrap().try_into().unwrap();
        bytes[31] -= 1;
        assert!(EcdsaPayload::new(bytes).is_ok());
        bytes[31] += 1;
        assert_eq!(EcdsaPayload::new(bytes), Err(PayloadError::NotBelowOrder));
    }

    #[test]
    fn eddsa_payload_lengths() {
        let parse = |len: usize| {
            serde_json::from_str::<Payload>(&format!("{{\"Eddsa\":\"{}\"}}", "ab".repeat(len)))
        };
        for ok in [32, 100, 1232] {
            assert_eq!(parse(ok).unwrap().as_bytes().len(), ok);
        }
        for bad in [0, 31, 1233] {
            let text = parse(bad).unwrap_err().to_string();
            assert!(
                text.contains(&format!("must be 32 to 1232 bytes, got {bad}")),
                "{text}"
            );
        }
        let text = serde_json::from_str::<Payload>(r#"{"Eddsa":"xyz"}"#)
            .unwrap_err()
            .to_string();
        assert!(text.contains("not valid hex"), "{text}");
        let text = serde_json::from_str::<Payload>(r#"{"Bls":"00"}"#)
            .unwrap_err()
            .to_string();
        assert!(text.contains("unknown variant `Bls`"), "{text}");
    }

    fn args(json: &str) -> Result<SignRequest, String> {
        serde_json::from_str::<SignRequestArgs>(json)
            .map_err(|e| e.to_string())?
            .resolve()
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_three_shapes_resolve() {
        let hex = "11".repeat(32);
        let current = args(&format!(
            r#"{{"payload_v2":{{"Ecdsa":"{hex}"}},"path":"p","domain_id":0}}"#
        ))
        .unwrap();
        let legacy = args(&format!(
            r#"{{"payload":"{hex}","path":"p","key_version":0}}"#
        ))
        .unwrap();
        let seed = args(&format!(r#"{{"payload":{:?},"path":"p"}}"#, [0x11u8; 32])).unwrap();
        assert_eq!(current, legacy);
        assert_eq!(current, seed);
        assert_eq!(current.domain_id, DomainId(0));
        let eddsa = args(&format!(
            r#"{{"payload_v2":{{"Eddsa":"{hex}"}},"path":"p","domain_id":1}}"#
        ))
        .unwrap();
        assert_eq!(eddsa.payload.scheme(), SignatureScheme::Ed25519);
        assert_eq!(eddsa.domain_id, DomainId(1));
    }

    #[test]
    fn both_names_of_a_field_are_refused() {
        let hex = "11".repeat(32);
        assert_eq!(
            args(&format!(
                r#"{{"payload":"{hex}","payload_v2":{{"Ecdsa":"{hex}"}},"path":"p"}}"#
            )),
            Err(SignArgsError::BothPayloads.to_string())
        );
        assert_eq!(
            args(&format!(
                r#"{{"payload":"{hex}","path":"p","key_version":0,"domain_id":0}}"#
            )),
            Err(SignArgsError::BothDomainIds.to_string())
        );
        assert_eq!(
            args(r#"{"path":"p"}"#),
            Err(SignArgsError::NoPayload.to_string())
        );
    }

    #[test]
    fn request_id_binds_every_field() {
        let ecdsa = Payload::Ecdsa(EcdsaPayload::new([2; 32]).unwrap());
        let eddsa = Payload::Eddsa(EddsaPayload::new([2; 32].to_vec()).unwrap());
        let base = RequestId::new(&[1; 32], DomainId(0), &ecdsa);
        assert_ne!(base, RequestId::new(&[3; 32], DomainId(0), &ecdsa));
        assert_ne!(base, RequestId::new(&[1; 32], DomainId(1), &ecdsa));
        assert_ne!(base, RequestId::new(&[1; 32], DomainId(0), &eddsa));
        let json = serde_json::to_string(&base).unwrap();
        assert_eq!(json.len(), 66);
        assert_eq!(serde_json::from_str::<RequestId>(&json).unwrap(), base);
    }

    #[test]
    fn pending_request_id_check() {
        let request = SignRequest {
            payload: Payload::Ecdsa(EcdsaPayload::new([9; 32]).unwrap()),
            path: "p".into(),
            domain_id: DomainId(0),
        };
        let mut pending = PendingRequest {
            request_id: RequestId::of("alice.near", &request),
            predecessor: "alice.near".into(),
            payload: request.payload.clone(),
            path: request.path.clone(),
            domain_id: request.domain_id,
            entropy: Entropy([0; 32]),
            block_height: 1,
            waiting: 1,
        };
        assert!(pending.id_matches());
        pending.path = "q".into();
        assert!(!pending.id_matches());
    }
}
