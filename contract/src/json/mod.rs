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
//! refused where it is read rather than parsed as a float (`-0` too, which
//! `serde_json` reads as a float). Unlike `serde_json`, a struct must be an object
//! (not also an array of its fields).
//!
//! Errors: a syntax error is `serde_json`'s text and position ("expected value at
//! line 1 column 1"; the column counts bytes from 1, as there). A type error, found
//! in the tree after parsing, has `serde_json`'s text but no position: no
//! " at line L column C". Arguments are at most 64 KiB (checked in `entry.rs`).

mod parse;
mod read;
mod write;

pub use parse::{parse, Json};
pub use read::{bytes32, from_slice, signature_response, take_member, Error};
pub use write::{to_vec, Compound, WriteError, Writer};
