//! JSON text into a [`Json`] tree: strict RFC 8259, one non-generic function.

use super::Error;

/// Deepest nesting of arrays and objects accepted: 127, as `serde_json`, whose
/// limit of 128 counts down to zero and refuses the 128th level.
pub(super) const MAX_DEPTH: usize = 127;

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
    /// `what` at the offending byte, `at` (see [`Parser::error_at`]).
    fn error(&self, what: &str) -> Error {
        self.error_at(self.at + 1, what)
    }

    /// `what` placed as `serde_json` places an error: at the line (from 1) and column
    /// of input position `end`, which is just after the offending byte (so the
    /// column is that byte's, counted from 1) or the end of the input.
    fn error_at(&self, end: usize, what: &str) -> Error {
        let end = self.input.len().min(end);
        let before = &self.input[..end];
        let line_start = before
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        let line = 1 + before[..line_start].iter().filter(|b| **b == b'\n').count();
        Error(format!("{what} at line {line} column {}", end - line_start))
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.at).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn literal(&mut self, text: &[u8], value: Json) -> Result<Json, Error> {
        for expected in text {
            match self.peek() {
                None => return Err(self.error("EOF while parsing a value")),
                Some(byte) if byte != *expected => return Err(self.error("expected ident")),
                Some(_) => self.at += 1,
            }
        }
        Ok(value)
    }

    /// After `[` or `{` (`first`) or after a member: whether another member follows
    /// (its comma eaten) or the `close` was eaten, decided and worded as
    /// `serde_json` does.
    fn more(&mut self, close: u8, first: bool) -> Result<bool, Error> {
        let (eof, expected) = if close == b']' {
            ("EOF while parsing a list", "expected `,` or `]`")
        } else {
            ("EOF while parsing an object", "expected `,` or `}`")
        };
        self.skip_whitespace();
        match self.peek() {
            Some(byte) if byte == close => {
                self.at += 1;
                return Ok(false);
            }
            None => return Err(self.error(eof)),
            Some(b',') if !first => {
                self.at += 1;
                self.skip_whitespace();
            }
            Some(_) if first => {}
            Some(_) => return Err(self.error(expected)),
        }
        if self.peek() == Some(close) {
            return Err(self.error("trailing comma"));
        }
        Ok(true)
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
                while self.more(b']', items.is_empty())? {
                    items.push(self.value(depth + 1)?);
                }
                Ok(Json::Array(items))
            }
            Some(b'{') => {
                self.at += 1;
                let mut members = Vec::new();
                while self.more(b'}', members.is_empty())? {
                    match self.peek() {
                        Some(b'"') => {}
                        None => return Err(self.error("EOF while parsing a value")),
                        Some(_) => return Err(self.error("key must be a string")),
                    }
                    let key = self.string()?;
                    self.skip_whitespace();
                    match self.peek() {
                        Some(b':') => self.at += 1,
                        None => return Err(self.error("EOF while parsing an object")),
                        Some(_) => return Err(self.error("expected `:`")),
                    }
                    members.push((key, self.value(depth + 1)?));
                }
                Ok(Json::Object(members))
            }
            Some(_) => Err(self.error("expected value")),
            None => Err(self.error("EOF while parsing a value")),
        }
    }

    /// One or more digits, or `serde_json`'s error for none.
    fn digits(&mut self) -> Result<(), Error> {
        let from = self.at;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
        match self.peek() {
            _ if self.at > from => Ok(()),
            None => Err(self.error("EOF while parsing a value")),
            Some(_) => Err(self.error("invalid number")),
        }
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> Result<Json, Error> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        if self.peek() == Some(b'0') {
            self.at += 1;
            if matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error("invalid number"));
            }
        } else {
            self.digits()?;
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.digits()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            self.digits()?;
        }
        // ASCII by construction.
        let text = String::from_utf8_lossy(&self.input[start..self.at]).into_owned();
        Ok(Json::Number(text))
    }

    /// A string at `"`; the input must be UTF-8 inside it.
    fn string(&mut self) -> Result<String, Error> {
        self.at += 1;
        let start = self.at;
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
                        _ => return Err(self.error_at(self.at, "invalid escape")),
                    };
                    let mut buf = [0; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                0..=0x1f => {
                    return Err(self.error_at(
                        self.at,
                        "control character (\\u0000-\\u001F) found while parsing a string",
                    ))
                }
                _ => out.push(byte),
            }
        }
        // Escapes are ASCII and decode to UTF-8: the text is UTF-8 if its input is,
        // and the error is placed at the first byte that is not.
        if let Err(e) = std::str::from_utf8(&self.input[start..self.at]) {
            self.at = start + e.valid_up_to();
            return Err(self.error("invalid unicode code point"));
        }
        String::from_utf8(out).map_err(|_| self.error("invalid unicode code point"))
    }

    /// The character of `\uXXXX` (after the `u`), with its low surrogate if any;
    /// refused as `serde_json` refuses it.
    fn unicode_escape(&mut self) -> Result<char, Error> {
        let high = self.hex4()?;
        if (0xdc00..0xe000).contains(&high) {
            return Err(self.error_at(self.at, "lone leading surrogate in hex escape"));
        }
        let code = if (0xd800..0xdc00).contains(&high) {
            for expected in [b'\\', b'u'] {
                match self.peek() {
                    None => return Err(self.error("EOF while parsing a string")),
                    Some(byte) if byte != expected => {
                        return Err(self.error("unexpected end of hex escape"))
                    }
                    Some(_) => self.at += 1,
                }
            }
            let low = self.hex4()?;
            if !(0xdc00..0xe000).contains(&low) {
                return Err(self.error_at(self.at, "lone leading surrogate in hex escape"));
            }
            0x10000 + ((high - 0xd800) << 10) + (low - 0xdc00)
        } else {
            high
        };
        char::from_u32(code).ok_or_else(|| self.error_at(self.at, "invalid unicode code point"))
    }

    fn hex4(&mut self) -> Result<u32, Error> {
        let input = self.input;
        let Some(digits) = input.get(self.at..self.at + 4) else {
            self.at = input.len();
            return Err(self.error("EOF while parsing a string"));
        };
        self.at += 4;
        let mut code = 0;
        for digit in digits {
            let digit = char::from(*digit)
                .to_digit(16)
                .ok_or_else(|| self.error_at(self.at, "invalid escape"))?;
            code = code * 16 + digit;
        }
        Ok(code)
    }
}
