//! What `sign` takes and what the contract keeps while the network works on it.

use crate::derivation::{Tweak, TweakOutOfRange};
use crate::hex_array::{self, HexVisitor};
use crate::response::SerializableScalar;
use alloc::format;
use alloc::string::String;
use borsh::{BorshDeserialize, BorshSerialize};
use core::fmt;
use k256::elliptic_curve::PrimeField;
use k256::Scalar;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha3::{Digest, Sha3_256};

/// The 32-byte digest a foreign chain signs (an Ethereum transaction hash, a Bitcoin
/// sighash, ...), read as a big-endian number.
///
/// ECDSA signs a scalar, so the payload must be non-zero and below the curve order;
/// [`Payload::new`] and deserialisation enforce it. In JSON it is accepted as an array
/// of 32 numbers (the seed's `[u8; 32]`) or as a hex string (optionally `0x`-prefixed),
/// and written as an array.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, BorshSerialize, BorshDeserialize)]
pub struct Payload([u8; 32]);

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

impl Payload {
    /// Checks that `bytes` is a non-zero scalar below the curve order.
    ///
    /// ```
    /// use primitives::Payload;
    /// assert!(Payload::new([1; 32]).is_ok());
    /// assert!(Payload::new([0; 32]).is_err());
    /// assert!(Payload::new([0xff; 32]).is_err());
    /// ```
    pub fn new(bytes: [u8; 32]) -> Result<Self, PayloadError> {
        let scalar: Option<Scalar> = Scalar::from_repr(bytes.into()).into();
        match scalar {
            None => Err(PayloadError::NotBelowOrder),
            Some(s) if bool::from(s.is_zero()) => Err(PayloadError::Zero),
            Some(_) => Ok(Payload(bytes)),
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

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Payload({})", hex_array::encode_lower(&self.0))
    }
}

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Serialize::serialize(&self.0, serializer)
    }
}

impl<'de> Deserialize<'de> for Payload {
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
        Payload::new(bytes).map_err(serde::de::Error::custom)
    }
}

/// The arguments of `sign` in the deployed network's form:
/// `{"payload": [32 bytes] | "<hex>", "path": "ethereum-1", "key_version": 0}`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct SignRequest {
    pub payload: Payload,
    pub path: String,
    #[serde(default)]
    pub key_version: u32,
}

/// Identifies one signature request: SHA3-256 over the tweak (which binds the caller
/// and the path), the payload and the key version. Identical requests share an id and
/// so share one answer. Written as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, BorshSerialize, BorshDeserialize)]
pub struct RequestId(pub [u8; 32]);

/// Domain separation for [`RequestId`] hashes.
const REQUEST_ID_DOMAIN: &[u8] = b"chain-signatures request id v1:";

impl RequestId {
    pub fn new(tweak: &[u8; 32], payload: &[u8; 32], key_version: u32) -> Self {
        let mut hasher = Sha3_256::new();
        hasher.update(REQUEST_ID_DOMAIN);
        hasher.update(tweak);
        hasher.update(payload);
        hasher.update(key_version.to_be_bytes());
        RequestId(hasher.finalize().into())
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

/// The `request` argument of `respond`: which request a signature answers, in the
/// deployed network's shape (`epsilon` is the tweak, `payload_hash` the payload).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct SignatureRequest {
    pub epsilon: SerializableScalar,
    pub payload_hash: SerializableScalar,
    #[serde(default)]
    pub key_version: u32,
}

impl SignatureRequest {
    /// The request for `predecessor` signing `request`.
    pub fn new(predecessor: &str, request: &SignRequest) -> Result<Self, TweakOutOfRange> {
        let tweak = Tweak::derive(predecessor, &request.path)?;
        Ok(SignatureRequest {
            epsilon: SerializableScalar {
                scalar: tweak.to_bytes(),
            },
            payload_hash: SerializableScalar {
                scalar: *request.payload.as_bytes(),
            },
            key_version: request.key_version,
        })
    }

    pub fn id(&self) -> RequestId {
        RequestId::new(
            &self.epsilon.scalar,
            &self.payload_hash.scalar,
            self.key_version,
        )
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
/// shows it: everything a node needs to sign and `respond`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct PendingRequest {
    pub request_id: RequestId,
    /// The account that called `sign`; with `path` it determines the tweak.
    pub predecessor: String,
    pub payload: Payload,
    pub path: String,
    pub key_version: u32,
    /// The tweak ε of `predecessor` and `path`.
    pub epsilon: SerializableScalar,
    /// The block random seed when the request was first made: chain entropy for
    /// re-randomising the presignature, so no single node can steer the nonce.
    pub entropy: Entropy,
    /// Height of the block in which the request was first made.
    pub block_height: u64,
    /// How many identical calls wait for this one answer.
    pub waiting: u32,
}

impl PendingRequest {
    /// The `request` argument for `respond`.
    pub fn signature_request(&self) -> SignatureRequest {
        SignatureRequest {
            epsilon: self.epsilon.clone(),
            payload_hash: SerializableScalar {
                scalar: *self.payload.as_bytes(),
            },
            key_version: self.key_version,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER_HEX: &str = "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141";

    #[test]
    fn payload_accepts_bytes_and_hex() {
        let from_array: Payload = serde_json::from_str(&format!("{:?}", [7u8; 32])).unwrap();
        let from_hex: Payload = serde_json::from_str(&format!("\"{}\"", "07".repeat(32))).unwrap();
        let from_0x: Payload = serde_json::from_str(&format!("\"0x{}\"", "07".repeat(32))).unwrap();
        assert_eq!(from_array, Payload::new([7; 32]).unwrap());
        assert_eq!(from_hex, from_array);
        assert_eq!(from_0x, from_array);
        assert_eq!(
            serde_json::to_string(&from_array).unwrap(),
            format!("{:?}", [7u8; 32]).replace(' ', "")
        );
    }

    #[test]
    fn payload_rejections_say_what_is_wrong() {
        let err = |json: &str| {
            serde_json::from_str::<Payload>(json)
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
    fn largest_valid_payload_is_order_minus_one() {
        let mut bytes: [u8; 32] = hex::decode(ORDER_HEX).unwrap().try_into().unwrap();
        bytes[31] -= 1;
        assert!(Payload::new(bytes).is_ok());
        bytes[31] += 1;
        assert_eq!(Payload::new(bytes), Err(PayloadError::NotBelowOrder));
    }

    #[test]
    fn sign_request_deployed_shape_with_default_key_version() {
        let json = format!(
            "{{\"payload\":\"{}\",\"path\":\"ethereum-1\"}}",
            "11".repeat(32)
        );
        let request: SignRequest = serde_json::from_str(&json).unwrap();
        assert_eq!(request.key_version, 0);
        assert_eq!(request.path, "ethereum-1");
    }

    #[test]
    fn request_id_binds_every_field() {
        let base = RequestId::new(&[1; 32], &[2; 32], 0);
        assert_ne!(base, RequestId::new(&[3; 32], &[2; 32], 0));
        assert_ne!(base, RequestId::new(&[1; 32], &[3; 32], 0));
        assert_ne!(base, RequestId::new(&[1; 32], &[2; 32], 1));
        let json = serde_json::to_string(&base).unwrap();
        assert_eq!(json.len(), 66);
        assert_eq!(serde_json::from_str::<RequestId>(&json).unwrap(), base);
    }

    #[test]
    fn signature_request_id_matches_sign_request() {
        let sign = SignRequest {
            payload: Payload::new([9; 32]).unwrap(),
            path: "p".into(),
            key_version: 0,
        };
        let request = SignatureRequest::new("alice.near", &sign).unwrap();
        let tweak = Tweak::derive("alice.near", "p").unwrap();
        assert_eq!(request.id(), RequestId::new(&tweak.to_bytes(), &[9; 32], 0));
    }
}
