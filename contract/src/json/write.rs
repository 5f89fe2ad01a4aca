//! Values written as JSON through serde, byte for byte as `serde_json` writes them.

use serde::ser;
use std::fmt;

/// Writes `value` as compact JSON, byte for byte what `serde_json::to_vec` writes
/// for the types this contract returns and logs (no floats among them).
///
/// Why not `serde_json`: its serializer is generic over the output and the
/// formatter and inlines its writing into the code of every type it writes. Here
/// the writing is a few non-generic functions ([`Writer`]), so a type's code is its
/// fields and little else.
pub fn to_vec<T: ser::Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut writer = Writer(Vec::new());
    value
        .serialize(&mut writer)
        .unwrap_or_else(|e| near_sdk::env::panic_str(&format!("cannot write JSON: {e}")));
    writer.0
}

/// The output of [`to_vec`].
pub struct Writer(pub(super) Vec<u8>);

impl Writer {
    #[inline(never)]
    fn raw(&mut self, text: &str) {
        self.0.extend_from_slice(text.as_bytes());
    }

    #[inline(never)]
    fn byte(&mut self, byte: u8) {
        self.0.push(byte);
    }

    /// A JSON string, escaped as serde_json escapes.
    #[inline(never)]
    pub(super) fn string(&mut self, s: &str) {
        self.byte(b'"');
        for c in s.chars() {
            match c {
                '"' => self.raw("\\\""),
                '\\' => self.raw("\\\\"),
                '\u{8}' => self.raw("\\b"),
                '\u{c}' => self.raw("\\f"),
                '\n' => self.raw("\\n"),
                '\r' => self.raw("\\r"),
                '\t' => self.raw("\\t"),
                c if (c as u32) < 0x20 => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    let n = c as usize;
                    self.raw("\\u00");
                    self.byte(HEX[n >> 4]);
                    self.byte(HEX[n & 0xf]);
                }
                c => {
                    let mut buf = [0; 4];
                    self.raw(c.encode_utf8(&mut buf));
                }
            }
        }
        self.byte(b'"');
    }

    #[inline(never)]
    fn unsigned(&mut self, n: u64) {
        self.raw(&n.to_string());
    }

    #[inline(never)]
    fn signed(&mut self, n: i64) {
        self.raw(&n.to_string());
    }

    /// A separator before every element but the first.
    #[inline(never)]
    fn comma(&mut self, first: &mut bool) {
        if !std::mem::take(first) {
            self.byte(b',');
        }
    }

    /// `"key":`
    #[inline(never)]
    fn key(&mut self, first: &mut bool, key: &str) {
        self.comma(first);
        self.string(key);
        self.byte(b':');
    }

    fn compound(&mut self, open: u8) -> Compound<'_> {
        self.byte(open);
        Compound {
            writer: self,
            first: true,
            variant: false,
        }
    }

    /// `{"Variant":` then an inner compound, closed with an extra `}`.
    fn variant_compound(&mut self, variant: &str, open: u8) -> Compound<'_> {
        self.byte(b'{');
        self.string(variant);
        self.byte(b':');
        self.byte(open);
        Compound {
            writer: self,
            first: true,
            variant: true,
        }
    }
}

/// Why a value could not be written (a float, or a map key that is not a string).
#[derive(Debug)]
pub struct WriteError(String);

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WriteError {}

impl ser::Error for WriteError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        WriteError(msg.to_string())
    }
}

/// An array or object being written; `variant`: wrapped in `{"Variant": ...}`.
pub struct Compound<'a> {
    writer: &'a mut Writer,
    first: bool,
    variant: bool,
}

impl Compound<'_> {
    fn end(self, close: u8) -> Result<(), WriteError> {
        self.writer.byte(close);
        if self.variant {
            self.writer.byte(b'}');
        }
        Ok(())
    }

    fn element<T: ser::Serialize + ?Sized>(&mut self, value: &T) -> Result<(), WriteError> {
        self.writer.comma(&mut self.first);
        value.serialize(&mut *self.writer)
    }

    fn field<T: ser::Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), WriteError> {
        self.writer.key(&mut self.first, key);
        value.serialize(&mut *self.writer)
    }
}

impl<'a> ser::Serializer for &'a mut Writer {
    type Ok = ();
    type Error = WriteError;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    fn serialize_bool(self, v: bool) -> Result<(), WriteError> {
        self.raw(if v { "true" } else { "false" });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), WriteError> {
        self.serialize_i64(v.into())
    }
    fn serialize_i16(self, v: i16) -> Result<(), WriteError> {
        self.serialize_i64(v.into())
    }
    fn serialize_i32(self, v: i32) -> Result<(), WriteError> {
        self.serialize_i64(v.into())
    }
    fn serialize_i64(self, v: i64) -> Result<(), WriteError> {
        self.signed(v);
        Ok(())
    }
    fn serialize_i128(self, v: i128) -> Result<(), WriteError> {
        self.raw(&v.to_string());
        Ok(())
    }
    fn serialize_u8(self, v: u8) -> Result<(), WriteError> {
        self.serialize_u64(v.into())
    }
    fn serialize_u16(self, v: u16) -> Result<(), WriteError> {
        self.serialize_u64(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result<(), WriteError> {
        self.serialize_u64(v.into())
    }
    fn serialize_u64(self, v: u64) -> Result<(), WriteError> {
        self.unsigned(v);
        Ok(())
    }
    fn serialize_u128(self, v: u128) -> Result<(), WriteError> {
        self.raw(&v.to_string());
        Ok(())
    }
    fn serialize_f32(self, _v: f32) -> Result<(), WriteError> {
        Err(ser::Error::custom("floating-point numbers are not written"))
    }
    fn serialize_f64(self, _v: f64) -> Result<(), WriteError> {
        Err(ser::Error::custom("floating-point numbers are not written"))
    }
    fn serialize_char(self, v: char) -> Result<(), WriteError> {
        self.string(v.encode_utf8(&mut [0; 4]));
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), WriteError> {
        self.string(v);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), WriteError> {
        let mut seq = self.compound(b'[');
        for byte in v {
            seq.element(byte)?;
        }
        seq.end(b']')
    }
    fn serialize_none(self) -> Result<(), WriteError> {
        self.serialize_unit()
    }
    fn serialize_some<T: ser::Serialize + ?Sized>(self, value: &T) -> Result<(), WriteError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), WriteError> {
        self.raw("null");
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), WriteError> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), WriteError> {
        self.string(variant);
        Ok(())
    }
    fn serialize_newtype_struct<T: ser::Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), WriteError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: ser::Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), WriteError> {
        let mut map = self.compound(b'{');
        map.field(variant, value)?;
        map.end(b'}')
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Compound<'a>, WriteError> {
        Ok(self.compound(b'['))
    }
    fn serialize_tuple(self, _len: usize) -> Result<Compound<'a>, WriteError> {
        Ok(self.compound(b'['))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, WriteError> {
        Ok(self.compound(b'['))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, WriteError> {
        Ok(self.variant_compound(variant, b'['))
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Compound<'a>, WriteError> {
        Ok(self.compound(b'{'))
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, WriteError> {
        Ok(self.compound(b'{'))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, WriteError> {
        Ok(self.variant_compound(variant, b'{'))
    }
}

impl ser::SerializeSeq for Compound<'_> {
    type Ok = ();
    type Error = WriteError;
    fn serialize_element<T: ser::Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<(), WriteError> {
        self.element(value)
    }
    fn end(self) -> Result<(), WriteError> {
        Compound::end(self, b']')
    }
}

impl ser::SerializeTuple for Compound<'_> {
    type Ok = ();
    type Error = WriteError;
    fn serialize_element<T: ser::Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<(), WriteError> {
        self.element(value)
    }
    fn end(self) -> Result<(), WriteError> {
        Compound::end(self, b']')
    }
}

impl ser::SerializeTupleStruct for Compound<'_> {
    type Ok = ();
    type Error = WriteError;
    fn serialize_field<T: ser::Serialize + ?Sized>(&mut self, value: &T) -> Result<(), WriteError> {
        self.element(value)
    }
    fn end(self) -> Result<(), WriteError> {
        Compound::end(self, b']')
    }
}

impl ser::SerializeTupleVariant for Compound<'_> {
    type Ok = ();
    type Error = WriteError;
    fn serialize_field<T: ser::Serialize + ?Sized>(&mut self, value: &T) -> Result<(), WriteError> {
        self.element(value)
    }
    fn end(self) -> Result<(), WriteError> {
        Compound::end(self, b']')
    }
}

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = WriteError;
    fn serialize_key<T: ser::Serialize + ?Sized>(&mut self, key: &T) -> Result<(), WriteError> {
        self.writer.comma(&mut self.first);
        key.serialize(KeyWriter(&mut *self.writer))?;
        self.writer.byte(b':');
        Ok(())
    }
    fn serialize_value<T: ser::Serialize + ?Sized>(&mut self, value: &T) -> Result<(), WriteError> {
        value.serialize(&mut *self.writer)
    }
    fn end(self) -> Result<(), WriteError> {
        Compound::end(self, b'}')
    }
}

impl ser::SerializeStruct for Compound<'_> {
    type Ok = ();
    type Error = WriteError;
    fn serialize_field<T: ser::Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), WriteError> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), WriteError> {
        Compound::end(self, b'}')
    }
}

impl ser::SerializeStructVariant for Compound<'_> {
    type Ok = ();
    type Error = WriteError;
    fn serialize_field<T: ser::Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), WriteError> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), WriteError> {
        Compound::end(self, b'}')
    }
}

/// A map key: a string, or an integer written as one (as serde_json does).
struct KeyWriter<'a>(&'a mut Writer);

impl KeyWriter<'_> {
    fn quoted(self, digits: String) -> Result<(), WriteError> {
        self.0.string(&digits);
        Ok(())
    }
}

impl ser::Serializer for KeyWriter<'_> {
    type Ok = ();
    type Error = WriteError;
    type SerializeSeq = ser::Impossible<(), WriteError>;
    type SerializeTuple = ser::Impossible<(), WriteError>;
    type SerializeTupleStruct = ser::Impossible<(), WriteError>;
    type SerializeTupleVariant = ser::Impossible<(), WriteError>;
    type SerializeMap = ser::Impossible<(), WriteError>;
    type SerializeStruct = ser::Impossible<(), WriteError>;
    type SerializeStructVariant = ser::Impossible<(), WriteError>;

    fn serialize_str(self, v: &str) -> Result<(), WriteError> {
        self.0.string(v);
        Ok(())
    }
    fn serialize_u64(self, v: u64) -> Result<(), WriteError> {
        self.quoted(v.to_string())
    }
    fn serialize_u32(self, v: u32) -> Result<(), WriteError> {
        self.quoted(v.to_string())
    }
    fn serialize_i64(self, v: i64) -> Result<(), WriteError> {
        self.quoted(v.to_string())
    }
    fn serialize_newtype_struct<T: ser::Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), WriteError> {
        value.serialize(self)
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), WriteError> {
        self.serialize_str(variant)
    }

    // Anything else cannot be a key.
    fn serialize_bool(self, _v: bool) -> Result<(), WriteError> {
        Err(key_must_be_a_string())
    }
    fn serialize_i8(self, _v: i8) -> Result<(), WriteError> {
        Err(key_must_be_a_string())
    }
    fn serialize_i16(self, _v: i16) -> Result<(), WriteError> {
        Err(key_must_be_a_string())
    }
    fn serialize_i32(self, _v: i32) -> Result<(), WriteError> {
        Err(key_must_be_a_string())
    }
    fn serialize_u8(self, _v: u8) -> Result<(), WriteError> {
        Err(key_must_be_a_string())
    }
    fn serialize_u16(self, _v: u16) -> Result<(), WriteError> {
        Err(key_must_be_a_string())
    }
    fn serialize_f32(self, _v: f32) -> Result<(), WriteError> {
        Err(key_must_be_a_string())
    }
    fn serialize_f64(self, _v: f64) -> Result<(), WriteError> {
        Err(key_must_be_a_string())
    }
    fn serialize_char(self, _v: char) -> Result<(), WriteError> {
        Err(key_must_be_a_string())
    }
    fn serialize_bytes(self, _v: &[u8]) -> Result<(), WriteError> {
        Err(key_must_be_a_string())
    }
    fn serialize_none(self) -> Result<(), WriteError> {
        Err(key_must_be_a_string())
    }
    fn serialize_some<T: ser::Serialize + ?Sized>(self, _value: &T) -> Result<(), WriteError> {
        Err(key_must_be_a_string())
    }
    fn serialize_unit(self) -> Result<(), WriteError> {
        Err(key_must_be_a_string())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), WriteError> {
        Err(key_must_be_a_string())
    }
    fn serialize_newtype_variant<T: ser::Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<(), WriteError> {
        Err(key_must_be_a_string())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, WriteError> {
        Err(key_must_be_a_string())
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, WriteError> {
        Err(key_must_be_a_string())
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, WriteError> {
        Err(key_must_be_a_string())
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, WriteError> {
        Err(key_must_be_a_string())
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, WriteError> {
        Err(key_must_be_a_string())
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, WriteError> {
        Err(key_must_be_a_string())
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, WriteError> {
        Err(key_must_be_a_string())
    }
}

fn key_must_be_a_string() -> WriteError {
    WriteError("key must be a string".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::from_slice;
    use primitives::{Ed25519Signature, Payload, SignatureResponse};
    use std::collections::BTreeMap;

    /// Our writing next to serde_json's.
    fn writes_as_serde_json<T: ser::Serialize + ?Sized>(value: &T) {
        assert_eq!(
            String::from_utf8(to_vec(value)).unwrap(),
            near_sdk::serde_json::to_string(value).unwrap()
        );
    }

    #[test]
    fn writes_what_serde_json_writes() {
        use crate::config::Config;
        use crate::events::Event;
        use primitives::request::Entropy;
        use primitives::{DomainId, EddsaPayload, PendingRequest, RequestId};

        writes_as_serde_json(
            "quote \" backslash \\ controls \u{0}\u{1f}\u{7f}\n\r\t\u{8}\u{c} é😀",
        );
        writes_as_serde_json(&(u64::MAX, -5i64, u128::MAX, true, (), None::<u8>, Some('x')));
        writes_as_serde_json(&Config::default());
        let mut map = BTreeMap::new();
        map.insert("b".to_string(), vec![1u32, 2]);
        map.insert("a".to_string(), vec![]);
        writes_as_serde_json(&map);
        writes_as_serde_json(&BTreeMap::from([(7u64, "seven")]));
        let hex = "11".repeat(32);
        let response: SignatureResponse = from_slice(
            format!(
                r#"{{"scheme":"Secp256k1","big_r":{{"affine_point":"02{hex}"}},"s":{{"scalar":"{hex}"}},"recovery_id":1}}"#
            )
            .as_bytes(),
        )
        .unwrap();
        writes_as_serde_json(&response);
        writes_as_serde_json(&SignatureResponse::Ed25519 {
            signature: Ed25519Signature([9; 64]),
        });
        let pending = PendingRequest {
            request_id: RequestId([3; 32]),
            predecessor: "alice.near".into(),
            payload: Payload::Eddsa(EddsaPayload::new(vec![5; 40]).unwrap()),
            path: "solana-1".into(),
            domain_id: DomainId(1),
            entropy: Entropy([4; 32]),
            block_height: 9,
            waiting: 2,
        };
        writes_as_serde_json(&vec![pending.clone(), pending]);
        writes_as_serde_json(&[
            Event::SignatureRequested {
                request_id: RequestId([1; 32]),
                predecessor: "alice.near".parse().unwrap(),
                domain_id: DomainId(0),
                path: "a \"path\"".into(),
                block_height: 5,
                duplicate: false,
            },
            Event::StateChanged {
                from: "Running".into(),
                to: "Resharing".into(),
                epoch: None,
            },
            Event::UpdateApplied { id: 3 },
        ]);
    }
}
