//! JSON for the contract's methods: arguments read with serde through a small
//! document parser of our own, results and events written by a small serializer of
//! our own, instead of `serde_json`.
//!
//! Why: every type instantiates the (de)serializer it is read or written with, and
//! `serde_json`'s inlines its lexer or its formatter into each of them; reading
//! alone was a fifth of the wasm, and every receipt pays to load the code (NEAR
//! charges by size). Here the input is parsed once into a [`Json`] tree by one
//! non-generic function, serde reads the types from the tree calling only the
//! visitor method a type asks for, and output goes through a few non-generic
//! writing functions ([`to_vec`]). The types keep their serde implementations, so
//! what is accepted and the error texts (a missing field, an unknown variant, a
//! payload that is not below the curve order) are serde's and our own, as before,
//! and the output is byte for byte `serde_json`'s (the tests compare both ways).
//!
//! The parser is strict RFC 8259 (no trailing commas, comments or garbage after the
//! value; escapes and surrogate pairs checked), nests at most [`MAX_DEPTH`] deep, and
//! keeps numbers as text: integers are read where a type asks for one, and a number
//! with a fraction or an exponent, which no argument of this contract takes, is
//! refused where it is read rather than parsed as a float. Unlike `serde_json`, a
//! struct must be an object (not also an array of its fields).

use near_sdk::serde::Deserialize;
use primitives::{EcdsaSignature, Ed25519Signature, SignatureResponse, SignatureScheme};
use serde::de::value::StringDeserializer;
use serde::de::{self, DeserializeOwned, IntoDeserializer, Unexpected, Visitor};
use serde::ser;
use std::fmt;

/// Deepest nesting of arrays and objects accepted (`serde_json`'s limit too).
const MAX_DEPTH: usize = 128;

/// A parsed JSON value. Objects keep their members in input order, duplicates
/// included: serde decides what a repeated key means (an error for a struct field).
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    /// The number's text, already checked against the JSON grammar.
    Number(String),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

/// Why input was refused: a syntax error, or serde's (or a type's own) message.
#[derive(Debug, PartialEq)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }

    // serde's own texts, but without going through `Unexpected`'s `Display`, which
    // formats floats (never met here) and would link float formatting.
    fn invalid_type(unexpected: Unexpected, expected: &dyn de::Expected) -> Self {
        Error(format!(
            "invalid type: {}, expected {expected}",
            describe(unexpected)
        ))
    }

    fn invalid_value(unexpected: Unexpected, expected: &dyn de::Expected) -> Self {
        Error(format!(
            "invalid value: {}, expected {expected}",
            describe(unexpected)
        ))
    }
}

/// What serde's `Display` of `Unexpected` writes (a float just as "floating point").
fn describe(unexpected: Unexpected) -> String {
    match unexpected {
        Unexpected::Bool(b) => format!("boolean `{b}`"),
        Unexpected::Unsigned(n) => format!("integer `{n}`"),
        Unexpected::Signed(n) => format!("integer `{n}`"),
        Unexpected::Float(_) => "floating point".into(),
        Unexpected::Char(c) => format!("character `{c}`"),
        // Quoted as JSON quotes it (serde writes `{:?}`: the same but for escapes).
        Unexpected::Str(s) => {
            let mut quoted = Writer(b"string ".to_vec());
            quoted.string(s);
            String::from_utf8(quoted.0).unwrap_or_default()
        }
        Unexpected::Bytes(_) => "byte array".into(),
        Unexpected::Unit => "unit value".into(),
        Unexpected::Option => "Option value".into(),
        Unexpected::NewtypeStruct => "newtype struct".into(),
        Unexpected::Seq => "sequence".into(),
        Unexpected::Map => "map".into(),
        Unexpected::Enum => "enum".into(),
        Unexpected::UnitVariant => "unit variant".into(),
        Unexpected::NewtypeVariant => "newtype variant".into(),
        Unexpected::TupleVariant => "tuple variant".into(),
        Unexpected::StructVariant => "struct variant".into(),
        Unexpected::Other(other) => other.into(),
    }
}

/// Reads a `T` from JSON text.
pub fn from_slice<T: DeserializeOwned>(input: &[u8]) -> Result<T, Error> {
    T::deserialize(parse(input)?)
}

/// Parses JSON text into a [`Json`] tree.
pub fn parse(input: &[u8]) -> Result<Json, Error> {
    let mut parser = Parser { input, at: 0 };
    let value = parser.value(0)?;
    parser.skip_whitespace();
    if parser.at != input.len() {
        return Err(parser.error("trailing characters"));
    }
    Ok(value)
}

struct Parser<'a> {
    input: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn error(&self, what: &str) -> Error {
        Error(format!("{what} at byte {}", self.at))
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.at).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// Consumes `byte` after optional whitespace, if it is next.
    fn eat(&mut self, byte: u8) -> bool {
        self.skip_whitespace();
        let found = self.peek() == Some(byte);
        if found {
            self.at += 1;
        }
        found
    }

    fn literal(&mut self, text: &[u8], value: Json) -> Result<Json, Error> {
        if self.input[self.at..].starts_with(text) {
            self.at += text.len();
            Ok(value)
        } else {
            Err(self.error("expected value"))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, Error> {
        self.skip_whitespace();
        match self.peek() {
            Some(b'n') => self.literal(b"null", Json::Null),
            Some(b't') => self.literal(b"true", Json::Bool(true)),
            Some(b'f') => self.literal(b"false", Json::Bool(false)),
            Some(b'"') => self.string().map(Json::String),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b'[' | b'{') if depth >= MAX_DEPTH => Err(self.error("recursion limit exceeded")),
            Some(b'[') => {
                self.at += 1;
                let mut items = Vec::new();
                if !self.eat(b']') {
                    loop {
                        items.push(self.value(depth + 1)?);
                        if self.eat(b']') {
                            break;
                        }
                        if !self.eat(b',') {
                            return Err(self.error("expected `,` or `]`"));
                        }
                    }
                }
                Ok(Json::Array(items))
            }
            Some(b'{') => {
                self.at += 1;
                let mut members = Vec::new();
                if !self.eat(b'}') {
                    loop {
                        self.skip_whitespace();
                        if self.peek() != Some(b'"') {
                            return Err(self.error("key must be a string"));
                        }
                        let key = self.string()?;
                        if !self.eat(b':') {
                            return Err(self.error("expected `:`"));
                        }
                        members.push((key, self.value(depth + 1)?));
                        if self.eat(b'}') {
                            break;
                        }
                        if !self.eat(b',') {
                            return Err(self.error("expected `,` or `}`"));
                        }
                    }
                }
                Ok(Json::Object(members))
            }
            Some(_) => Err(self.error("expected value")),
            None => Err(self.error("EOF while parsing a value")),
        }
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> Result<Json, Error> {
        let start = self.at;
        let digits = |p: &mut Self| {
            let from = p.at;
            while matches!(p.peek(), Some(b'0'..=b'9')) {
                p.at += 1;
            }
            p.at > from
        };
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        if self.peek() == Some(b'0') {
            self.at += 1;
        } else if !digits(self) {
            return Err(self.error("invalid number"));
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            if !digits(self) {
                return Err(self.error("invalid number"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if !digits(self) {
                return Err(self.error("invalid number"));
            }
        }
        // ASCII by construction.
        let text = String::from_utf8_lossy(&self.input[start..self.at]).into_owned();
        Ok(Json::Number(text))
    }

    /// A string at `"`; the input must be UTF-8 inside it.
    fn string(&mut self) -> Result<String, Error> {
        self.at += 1;
        let mut out = Vec::new();
        loop {
            let Some(byte) = self.peek() else {
                return Err(self.error("EOF while parsing a string"));
            };
            self.at += 1;
            match byte {
                b'"' => break,
                b'\\' => {
                    let Some(escape) = self.peek() else {
                        return Err(self.error("EOF while parsing a string"));
                    };
                    self.at += 1;
                    let c = match escape {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return Err(self.error("invalid escape")),
                    };
                    let mut buf = [0; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                0..=0x1f => return Err(self.error("control character in string")),
                _ => out.push(byte),
            }
        }
        String::from_utf8(out).map_err(|_| self.error("invalid UTF-8 in string"))
    }

    /// The character of `\uXXXX` (after the `u`), with its low surrogate if any.
    fn unicode_escape(&mut self) -> Result<char, Error> {
        let high = self.hex4()?;
        let code = if (0xd800..0xdc00).contains(&high) {
            if !self.input[self.at..].starts_with(b"\\u") {
                return Err(self.error("lone leading surrogate in hex escape"));
            }
            self.at += 2;
            let low = self.hex4()?;
            if !(0xdc00..0xe000).contains(&low) {
                return Err(self.error("invalid low surrogate in hex escape"));
            }
            0x10000 + ((high - 0xd800) << 10) + (low - 0xdc00)
        } else {
            high
        };
        char::from_u32(code).ok_or_else(|| self.error("invalid unicode code point"))
    }

    fn hex4(&mut self) -> Result<u32, Error> {
        let digits = self
            .input
            .get(self.at..self.at + 4)
            .and_then(|d| std::str::from_utf8(d).ok())
            .filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| self.error("invalid escape"))?;
        self.at += 4;
        u32::from_str_radix(digits, 16).map_err(|_| self.error("invalid escape"))
    }
}

impl Json {
    /// What serde calls this value in "invalid type" errors.
    fn unexpected(&self) -> Unexpected<'_> {
        match self {
            Json::Null => Unexpected::Unit,
            Json::Bool(b) => Unexpected::Bool(*b),
            Json::Number(text) => match integer(text) {
                Some(Integer::Unsigned(n)) => Unexpected::Unsigned(n),
                Some(Integer::Signed(n)) => Unexpected::Signed(n),
                None => Unexpected::Other("floating point"),
            },
            Json::String(s) => Unexpected::Str(s),
            Json::Array(_) => Unexpected::Seq,
            Json::Object(_) => Unexpected::Map,
        }
    }

    fn invalid_type(&self, expected: &dyn de::Expected) -> Error {
        de::Error::invalid_type(self.unexpected(), expected)
    }

    /// The integer this number is, or why it is not one.
    fn integer(&self, expected: &dyn de::Expected) -> Result<Integer, Error> {
        let Json::Number(text) = self else {
            return Err(self.invalid_type(expected));
        };
        integer(text).ok_or_else(|| {
            de::Error::custom(format_args!(
                "the number {text} is not accepted: only integers fitting 64 bits are"
            ))
        })
    }
}

enum Integer {
    Unsigned(u64),
    Signed(i64),
}

/// The integer a number's text (already checked against the grammar) is, if it has
/// no fraction or exponent and fits 64 bits. (Not `str::parse`, which brings a
/// general parser per integer type.)
fn integer(text: &str) -> Option<Integer> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(digits) => (true, digits),
        None => (false, text),
    };
    let mut magnitude: u64 = 0;
    for byte in digits.bytes() {
        let digit = byte.checked_sub(b'0').filter(|d| *d <= 9)?;
        magnitude = magnitude.checked_mul(10)?.checked_add(digit.into())?;
    }
    if !negative {
        Some(Integer::Unsigned(magnitude))
    } else if magnitude <= i64::MAX as u64 + 1 {
        Some(Integer::Signed((magnitude as i64).wrapping_neg()))
    } else {
        None
    }
}

impl<'de> de::Deserializer<'de> for Json {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Json::Null => visitor.visit_unit(),
            Json::Bool(b) => visitor.visit_bool(b),
            number @ Json::Number(_) => match number.integer(&visitor)? {
                Integer::Unsigned(n) => visitor.visit_u64(n),
                Integer::Signed(n) => visitor.visit_i64(n),
            },
            Json::String(s) => visitor.visit_string(s),
            Json::Array(items) => {
                let mut seq = de::value::SeqDeserializer::new(items.into_iter());
                let value = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(value)
            }
            Json::Object(members) => {
                let mut map = de::value::MapDeserializer::new(members.into_iter());
                let value = visitor.visit_map(&mut map)?;
                map.end()?;
                Ok(value)
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Json::Null => visitor.visit_none(),
            other => visitor.visit_some(other),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    /// `"Variant"` for a unit variant, `{"Variant": value}` for the others.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self {
            Json::String(variant) => visitor.visit_enum(Variant {
                name: variant,
                value: None,
            }),
            Json::Object(mut members) if members.len() == 1 => {
                let (name, value) = members.pop().expect("one member");
                visitor.visit_enum(Variant {
                    name,
                    value: Some(value),
                })
            }
            Json::Object(_) => Err(de::Error::invalid_value(
                Unexpected::Map,
                &"map with a single key",
            )),
            other => Err(other.invalid_type(&"string or map")),
        }
    }

    /// Unknown fields are skipped without looking at them.
    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    // What a type asks for is all it gets: each of these calls one method of the
    // visitor (serde_json's call every method a value could need), which keeps the
    // code per type small. The one difference it makes: a struct must be an object,
    // where serde_json also takes an array of the fields in order.

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Json::Bool(b) => visitor.visit_bool(b),
            other => Err(other.invalid_type(&visitor)),
        }
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.integer(&visitor)? {
            Integer::Unsigned(n) => visitor.visit_u64(n),
            Integer::Signed(n) => visitor.visit_i64(n),
        }
    }

    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Json::String(s) => visitor.visit_string(s),
            other => Err(other.invalid_type(&visitor)),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_string(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_string(visitor)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Json::Array(items) => {
                let mut seq = de::value::SeqDeserializer::new(items.into_iter());
                let value = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(value)
            }
            other => Err(other.invalid_type(&visitor)),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Json::Object(members) => {
                let mut map = de::value::MapDeserializer::new(members.into_iter());
                let value = visitor.visit_map(&mut map)?;
                map.end()?;
                Ok(value)
            }
            other => Err(other.invalid_type(&visitor)),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_map(visitor)
    }

    serde::forward_to_deserialize_any! {
        i128 u128 f32 f64 char bytes byte_buf unit unit_struct tuple_struct
    }
}

/// Takes member `name` out of an object, to read it by hand (as
/// [`signature_response`] is read); the rest is then read as usual.
pub fn take_member(json: &mut Json, name: &'static str) -> Result<Json, Error> {
    let Json::Object(members) = json else {
        return Err(json.invalid_type(&"a map"));
    };
    let mut found = members.iter().enumerate().filter(|(_, (k, _))| k == name);
    match (found.next(), found.next()) {
        (Some((at, _)), None) => Ok(members.remove(at).1),
        (None, _) => Err(de::Error::missing_field(name)),
        (Some(_), Some(_)) => Err(de::Error::duplicate_field(name)),
    }
}

/// Reads 32 bytes given as an array of 32 numbers, with serde's texts. (serde's
/// own `[u8; 32]` unrolls 32 element reads, 6 KB of wasm for each use.)
pub fn bytes32<'de, D: de::Deserializer<'de>>(deserializer: D) -> Result<[u8; 32], D::Error> {
    let bytes = Vec::<u8>::deserialize(deserializer)?;
    let len = bytes.len();
    bytes
        .try_into()
        .map_err(|_| de::Error::invalid_length(len, &"an array of length 32"))
}

/// Reads a [`SignatureResponse`]: `{"scheme": "Secp256k1" | "Ed25519", ...the
/// variant's fields}`, as its derived (internally tagged) `Deserialize` does. That
/// one buffers the input in serde's private `Content` type first, which brings a
/// second deserializer and float formatting into the wasm; here the tree is already
/// in memory, so the tag is taken out and the rest read as the variant.
pub fn signature_response(json: Json) -> Result<SignatureResponse, Error> {
    const TAG: &str = "scheme";
    let mut body = json;
    if !matches!(body, Json::Object(_)) {
        return Err(body.invalid_type(&"internally tagged enum SignatureResponse"));
    }
    let tag = take_member(&mut body, TAG)?;
    match SignatureScheme::deserialize(tag)? {
        SignatureScheme::Secp256k1 => {
            EcdsaSignature::deserialize(body).map(SignatureResponse::Secp256k1)
        }
        SignatureScheme::Ed25519 => {
            #[derive(Deserialize)]
            #[serde(crate = "near_sdk::serde")]
            struct Ed25519 {
                signature: Ed25519Signature,
            }
            let Ed25519 { signature } = Ed25519::deserialize(body)?;
            Ok(SignatureResponse::Ed25519 { signature })
        }
    }
}

impl<'de> IntoDeserializer<'de, Error> for Json {
    type Deserializer = Json;

    fn into_deserializer(self) -> Json {
        self
    }
}

/// An enum's variant name and, unless it was given as a bare string, its content.
struct Variant {
    name: String,
    value: Option<Json>,
}

impl<'de> de::EnumAccess<'de> for Variant {
    type Error = Error;
    type Variant = Content;

    fn variant_seed<S: de::DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Content), Error> {
        let name: StringDeserializer<Error> = self.name.into_deserializer();
        Ok((seed.deserialize(name)?, Content(self.value)))
    }
}

/// A variant's content (`None` for a bare variant name).
struct Content(Option<Json>);

impl<'de> de::VariantAccess<'de> for Content {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        match self.0 {
            None | Some(Json::Null) => Ok(()),
            Some(other) => Err(other.invalid_type(&"unit variant")),
        }
    }

    fn newtype_variant_seed<S: de::DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, Error> {
        match self.0 {
            Some(value) => seed.deserialize(value),
            None => Err(de::Error::invalid_type(
                Unexpected::UnitVariant,
                &"newtype variant",
            )),
        }
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Some(value @ Json::Array(_)) => de::Deserializer::deserialize_any(value, visitor),
            Some(other) => Err(other.invalid_type(&"tuple variant")),
            None => Err(de::Error::invalid_type(
                Unexpected::UnitVariant,
                &"tuple variant",
            )),
        }
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            Some(value @ (Json::Object(_) | Json::Array(_))) => {
                de::Deserializer::deserialize_any(value, visitor)
            }
            Some(other) => Err(other.invalid_type(&"struct variant")),
            None => Err(de::Error::invalid_type(
                Unexpected::UnitVariant,
                &"struct variant",
            )),
        }
    }
}

// ------------------------------------------------------------------ writing

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
pub struct Writer(Vec<u8>);

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
    fn string(&mut self, s: &str) {
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
    use primitives::{EcdsaPayload, Payload, SignRequestArgs, SignatureResponse};
    use std::collections::BTreeMap;

    /// What serde_json makes of the same text, without its " at line 1 column N".
    fn serde_json_says<T: DeserializeOwned + fmt::Debug + PartialEq>(text: &str) {
        serde_json_says_to(text, |t| from_slice::<T>(t));
    }

    fn serde_json_says_to<T: DeserializeOwned + fmt::Debug + PartialEq>(
        text: &str,
        ours: impl Fn(&[u8]) -> Result<T, Error>,
    ) {
        let ours = ours(text.as_bytes()).map_err(|e| e.to_string());
        let theirs = near_sdk::serde_json::from_str::<T>(text).map_err(|e| {
            let text = e.to_string();
            text.split(" at line ").next().unwrap().to_string()
        });
        assert_eq!(ours, theirs, "{text}");
    }

    #[test]
    fn reads_what_serde_json_reads_with_the_same_errors() {
        let hex = "11".repeat(32);
        serde_json_says::<SignRequestArgs>(&format!(
            r#"{{"payload_v2":{{"Ecdsa":"{hex}"}},"path":"p","domain_id":0,"extra":[1,{{"a":null}}]}}"#
        ));
        serde_json_says::<SignRequestArgs>(&format!(r#"{{"payload":"{hex}","path":"p"}}"#));
        serde_json_says::<SignRequestArgs>(r#"{"payload":[1,2,3],"path":"p"}"#);
        serde_json_says::<SignRequestArgs>(&format!(r#"{{"payload":{:?},"path":"p"}}"#, [0u8; 32]));
        serde_json_says::<SignRequestArgs>(r#"{"payload_v2":{"Bls":"00"},"path":"p"}"#);
        serde_json_says::<SignRequestArgs>(r#"{"payload_v2":"Ecdsa","path":"p"}"#);
        serde_json_says::<SignRequestArgs>(r#"{"path":"p","path":"q"}"#);
        serde_json_says::<SignRequestArgs>(r#"{"payload_v2":{"Ecdsa":"00"}}"#);
        serde_json_says::<SignRequestArgs>(r#"{"path":7}"#);
        serde_json_says::<Option<EcdsaPayload>>("null");
        serde_json_says::<Vec<u8>>("[1, 2, 256]");
        serde_json_says::<u32>("-1");
        serde_json_says::<BTreeMap<String, u64>>(r#"{"a":1,"b":2,"a":3}"#);
        serde_json_says::<Payload>(&format!(r#"{{"Ecdsa":"{hex}"}}"#));
    }

    #[test]
    fn responses_read_as_the_derived_deserialize_reads_them() {
        let hex = "11".repeat(32);
        let ed25519 = format!("{:?}", [7u8; 64]);
        for text in [
            format!(
                r#"{{"scheme":"Secp256k1","big_r":{{"affine_point":"02{hex}"}},"s":{{"scalar":"{hex}"}},"recovery_id":1}}"#
            ),
            format!(
                r#"{{"recovery_id":0,"s":{{"scalar":"{hex}"}},"scheme":"Secp256k1","big_r":{{"affine_point":"03{hex}"}},"extra":1}}"#
            ),
            format!(r#"{{"scheme":"Ed25519","signature":{ed25519}}}"#),
            format!(r#"{{"signature":{ed25519},"scheme":"Ed25519","big_r":7}}"#),
            r#"{"scheme":"Ed25519","signature":[1,2,3]}"#.into(),
            r#"{"scheme":"Ed25519"}"#.into(),
            format!(r#"{{"scheme":"Secp256k1","s":{{"scalar":"{hex}"}},"recovery_id":1}}"#),
            format!(
                r#"{{"scheme":"Secp256k1","big_r":{{"affine_point":"04{hex}"}},"s":{{"scalar":"{hex}"}},"recovery_id":1}}"#
            ),
            r#"{"scheme":"Bls"}"#.into(),
            r#"{"signature":[]}"#.into(),
            r#"{"scheme":"Ed25519","scheme":"Ed25519"}"#.into(),
        ] {
            serde_json_says_to::<SignatureResponse>(&text, |t| signature_response(parse(t)?));
        }
        // serde also reads a tagged enum from an array led by the tag; that form is
        // refused here (serde refuses `[]` too, for a missing tag).
        assert!(signature_response(parse(b"[]").unwrap()).is_err());
        assert!(signature_response(parse(br#"["Ed25519",[]]"#).unwrap()).is_err());
    }

    #[test]
    fn bytes32_reads_what_an_array_reads() {
        #[derive(Deserialize, Debug, PartialEq)]
        #[serde(crate = "near_sdk::serde")]
        struct Ours {
            #[serde(deserialize_with = "bytes32")]
            key: [u8; 32],
        }
        #[derive(Deserialize, Debug, PartialEq)]
        #[serde(crate = "near_sdk::serde")]
        struct Theirs {
            key: [u8; 32],
        }
        for key in [vec![7u8; 32], vec![7; 31], vec![]] {
            let text = format!(r#"{{"key":{key:?}}}"#);
            let ours = from_slice::<Ours>(text.as_bytes()).map(|o| o.key);
            let theirs = near_sdk::serde_json::from_str::<Theirs>(&text).map(|t| t.key);
            assert_eq!(
                ours.map_err(|e| e.to_string()),
                theirs.map_err(|e| e.to_string().split(" at line ").next().unwrap().to_string())
            );
        }
        assert!(from_slice::<Ours>(br#"{"key":"00"}"#).is_err());
        assert!(from_slice::<Ours>(format!(r#"{{"key":{:?}}}"#, [256u16; 32]).as_bytes()).is_err());
    }

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

    #[test]
    fn strings_and_numbers_follow_the_grammar() {
        assert_eq!(
            parse(br#" "a\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00" "#),
            Ok(Json::String("a\"\\/\u{8}\u{c}\n\r\té😀".into()))
        );
        assert_eq!(
            parse(b"[0, -1, 1.5e3, 2E-1]"),
            Ok(Json::Array(
                ["0", "-1", "1.5e3", "2E-1"]
                    .map(|n| Json::Number(n.into()))
                    .into()
            ))
        );
        for bad in [
            &b""[..],
            b"01",
            b"1.",
            b"-",
            b".5",
            b"[1,]",
            b"{\"a\":1,}",
            b"{a:1}",
            b"\"\\x\"",
            b"\"\\ud800\"",
            b"\"\x01\"",
            b"nul",
            b"[1] 2",
            b"\"\xff\"",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(parse(&[b'['; MAX_DEPTH + 1]).is_err());
        assert!(from_slice::<u64>(b"1.5").is_err());
        assert!(from_slice::<u64>(b"1e3").is_err());
        assert!(from_slice::<u64>(b"18446744073709551616").is_err());
        assert_eq!(from_slice::<u64>(b"18446744073709551615"), Ok(u64::MAX));
        assert_eq!(from_slice::<i64>(b"-9223372036854775808"), Ok(i64::MIN));
        assert!(from_slice::<i64>(b"-9223372036854775809").is_err());
        assert_eq!(from_slice::<i64>(b"-0"), Ok(0));
        serde_json_says::<u8>("-3");
        serde_json_says::<u8>("300");
    }
}
