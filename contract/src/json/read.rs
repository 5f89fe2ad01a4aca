//! Types read from a [`Json`] tree with serde.

use super::parse::{parse, Json};
use super::write::Writer;
use near_sdk::serde::Deserialize;
use primitives::{EcdsaSignature, Ed25519Signature, SignatureResponse, SignatureScheme};
use serde::de::value::StringDeserializer;
use serde::de::{self, DeserializeOwned, IntoDeserializer, Unexpected, Visitor};
use std::fmt;

/// Why input was refused: a syntax error, or serde's (or a type's own) message.
#[derive(Debug, PartialEq)]
pub struct Error(pub(super) String);

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

/// What `serde_json` writes for an `Unexpected`: serde's `Display` of it, but
/// "null" for the unit value (as `serde_json`) and a float just as "floating point".
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
        Unexpected::Unit => "null".into(),
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
/// no fraction or exponent and fits 64 bits. `-0` is not one: `serde_json` reads it
/// as the float -0.0, which an integer type refuses. (Not `str::parse`, which brings
/// a general parser per integer type.)
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
    } else if magnitude != 0 && magnitude <= i64::MAX as u64 + 1 {
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

#[cfg(test)]
mod tests {
    use super::super::parse::MAX_DEPTH;
    use super::*;
    use primitives::{EcdsaPayload, Payload, SignRequestArgs, SignatureResponse};
    use std::collections::BTreeMap;

    /// What serde_json makes of the same text, without the " at line L column C" it
    /// adds to a type error (ours carry no position; syntax errors are compared
    /// whole, below).
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
        serde_json_says::<SignRequestArgs>(&format!(
            r#"{{"payload_v2":{{"Ecdsa":"{hex}"}},"path":null}}"#
        ));
        serde_json_says::<Vec<u8>>("null");
        serde_json_says::<Option<String>>("[null]");
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

    #[test]
    fn syntax_errors_are_serde_json_s_with_its_position() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        let mut differ = Vec::new();
        for text in [
            "",
            " ",
            "not json",
            "\n\n  x",
            "{\n  \"a\": 1,\n  \"b\" 2\n}",
            "[1,\n 2\n x]",
            "[1",
            "[1,",
            "[1,]",
            "[1 2]",
            "{",
            "{\"a\"",
            "{\"a\":",
            "{\"a\":1",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{\"a\":1 \"b\":2}",
            "{a:1}",
            "{1:1}",
            "\"abc",
            "\"a\\",
            "\"\\x\"",
            "\"\\u12\"",
            "\"\\u12",
            "\"\\ud800\"",
            "\"\\ud800\\u0041\"",
            "\"\\udc00\"",
            "\"\u{1}\"",
            "\"a\nb\"",
            "nul",
            "nux",
            "tru",
            "falsy",
            "01",
            "1.",
            "1.e3",
            "1e",
            "1e+",
            "-",
            "-a",
            ".5",
            "+1",
            "[1] 2",
            "1 x",
            "{}\n\n}",
            "[\"\\ud83d\\ude00\", \"\\u00e9\", [], {}, -0.5e-3, true, false, null]",
            "[[1,2],{\"a\":[]},\n\"x\"\n,]",
            &deep(MAX_DEPTH + 1),
            &deep(MAX_DEPTH + 5),
        ]
        .into_iter()
        .map(str::as_bytes)
        .chain([&b"\"\xff\""[..], b"[\"a\",\n\"\xc3\"]"])
        {
            let ours = parse(text).map(|_| ()).map_err(|e| e.to_string());
            let theirs = near_sdk::serde_json::from_slice::<near_sdk::serde_json::Value>(text)
                .map(|_| ())
                .map_err(|e| e.to_string());
            let text = String::from_utf8_lossy(text);
            if ours != theirs {
                differ.push(format!("{text:?}: ours {ours:?}, serde_json {theirs:?}"));
            }
        }
        assert!(differ.is_empty(), "{}", differ.join("\n"));
        // The deepest nesting accepted is serde_json's.
        for depth in [MAX_DEPTH, MAX_DEPTH + 1] {
            let text = deep(depth);
            assert_eq!(
                parse(text.as_bytes()).is_ok(),
                near_sdk::serde_json::from_str::<near_sdk::serde_json::Value>(&text).is_ok(),
                "{depth}"
            );
        }
        assert!(parse(deep(MAX_DEPTH).as_bytes()).is_ok());
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
        // serde_json reads `-0` as a float, refused by an integer type (its text
        // then names the float, which ours does not format; see `describe`).
        assert_eq!(from_slice::<i64>(b"0"), Ok(0));
        assert!(near_sdk::serde_json::from_str::<i64>("-0").is_err());
        assert_eq!(
            from_slice::<i64>(b"-0").map_err(|e| e.to_string()),
            Err("the number -0 is not accepted: only integers fitting 64 bits are".into())
        );
        assert!(from_slice::<u32>(b"-0").is_err());
        serde_json_says::<u8>("-3");
        serde_json_says::<u8>("300");
    }
}
