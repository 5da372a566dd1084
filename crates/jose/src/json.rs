//! A strict, borrowing JSON reader for JOSE headers, claims and key sets.
//!
//! RFC 8259 grammar, plus the rules JOSE needs on hostile input: duplicate member names are
//! rejected in every object (compared after unescaping), nesting is bounded, escapes must encode
//! valid Unicode (no lone surrogates), and the text must be UTF-8 (the caller hands a `&str`).
//! Nothing is copied: strings, numbers and nested containers are borrowed spans of the input,
//! decoded only when asked for. Nested containers are fully validated when the outer document is
//! read, so iterating them later cannot fail.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

/// Why a JSON text was refused.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonError {
    /// The grammar was violated at this byte offset.
    Syntax { offset: usize },
    /// An object has two members with the same name.
    DuplicateMember { offset: usize },
    /// Objects and arrays are nested deeper than allowed.
    TooDeep { limit: usize },
    /// A `\u` escape encodes a lone surrogate, which is not Unicode.
    InvalidEscape { offset: usize },
    /// The document is valid JSON but not an object.
    NotAnObject,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Syntax { offset } => write!(f, "invalid JSON at byte {offset}"),
            Self::DuplicateMember { offset } => {
                write!(f, "duplicate member name at byte {offset}")
            }
            Self::TooDeep { limit } => write!(f, "JSON nested deeper than {limit} levels"),
            Self::InvalidEscape { offset } => {
                write!(f, "escape at byte {offset} is not a Unicode scalar value")
            }
            Self::NotAnObject => f.write_str("JSON document is not an object"),
        }
    }
}

impl std::error::Error for JsonError {}

/// A JSON string as it appears in the document, between its quotes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct JsonStr<'a> {
    raw: &'a str,
    escaped: bool,
}

impl<'a> JsonStr<'a> {
    /// The text between the quotes, escapes not decoded.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// The decoded string. Borrows unless the string holds escapes.
    pub fn to_str(&self) -> Cow<'a, str> {
        if self.escaped {
            Cow::Owned(unescape(self.raw))
        } else {
            Cow::Borrowed(self.raw)
        }
    }

    /// Whether the decoded string equals `other`.
    pub fn eq_str(&self, other: &str) -> bool {
        if self.escaped {
            unescape(self.raw) == other
        } else {
            self.raw == other
        }
    }

    fn same_name(&self, other: &JsonStr<'_>) -> bool {
        if self.escaped || other.escaped {
            self.to_str() == other.to_str()
        } else {
            self.raw == other.raw
        }
    }
}

impl fmt::Debug for JsonStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.to_str(), f)
    }
}

/// A JSON number, kept as its text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Number<'a>(&'a str);

impl<'a> Number<'a> {
    /// The number as written.
    pub fn raw(&self) -> &'a str {
        self.0
    }

    /// The value as a finite `f64`, or `None` when it overflows.
    pub fn as_f64(&self) -> Option<f64> {
        let s = self.0.as_bytes();
        // Fast path: a plain integer of up to 15 digits is exact in an f64.
        let (neg, digits) = match s.split_first() {
            Some((b'-', rest)) => (true, rest),
            _ => (false, s),
        };
        if !digits.is_empty() && digits.len() <= 15 {
            let mut v = 0i64;
            let mut plain = true;
            for &d in digits {
                plain &= d.is_ascii_digit();
                v = v * 10 + i64::from(d.wrapping_sub(b'0'));
            }
            if plain {
                return Some(if neg { -(v as f64) } else { v as f64 });
            }
        }
        self.0.parse::<f64>().ok().filter(|v| v.is_finite())
    }

    /// The value as an `i64` when it is written as an integer that fits.
    pub fn as_i64(&self) -> Option<i64> {
        self.0.parse::<i64>().ok()
    }
}

/// A validated JSON value borrowed from its document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    Number(Number<'a>),
    String(JsonStr<'a>),
    Array(Array<'a>),
    Object(Object<'a>),
}

impl<'a> Value<'a> {
    /// The JSON text of this value exactly as it appears in the document; for a string, the raw
    /// text between its quotes (escapes kept).
    pub fn as_json(&self) -> &'a str {
        match self {
            Value::Null => "null",
            Value::Bool(true) => "true",
            Value::Bool(false) => "false",
            Value::Number(n) => n.0,
            // The raw span sits between two quote bytes of the same document.
            Value::String(s) => s.raw,
            Value::Array(a) => a.0,
            Value::Object(o) => o.0,
        }
    }

    pub fn as_str(&self) -> Option<JsonStr<'a>> {
        match self {
            Value::String(s) => Some(*s),
            _ => None,
        }
    }

    /// The JSON type's name, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }
}

impl<'a> JsonStr<'a> {
    /// A string from its raw text between quotes; `escaped` says whether it holds escapes.
    pub(crate) fn from_raw(raw: &'a str, escaped: bool) -> Self {
        JsonStr { raw, escaped }
    }

    pub(crate) fn is_escaped(&self) -> bool {
        self.escaped
    }
}

/// A validated JSON array (its text, brackets included).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Array<'a>(&'a str);

impl<'a> Array<'a> {
    /// The elements in order.
    pub fn iter(&self) -> impl Iterator<Item = Value<'a>> + 'a {
        let mut r = Reader::trusted(self.0);
        r.pos = 1; // past '['
        let mut first = true;
        std::iter::from_fn(move || {
            r.skip_ws();
            if r.peek() == Some(b']') {
                return None;
            }
            if !first {
                r.pos += 1; // ','
                r.skip_ws();
            }
            first = false;
            r.value(0).ok()
        })
    }
}

/// A validated JSON object (its text, braces included).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Object<'a>(&'a str);

impl<'a> Object<'a> {
    /// An object already validated (the claims of a verified token): its text, braces
    /// included, without surrounding whitespace. Reading anything else yields what it can and
    /// stops; it never panics.
    pub(crate) fn trusted(text: &'a str) -> Self {
        Object(text)
    }

    /// The members in document order.
    pub fn iter(&self) -> impl Iterator<Item = (JsonStr<'a>, Value<'a>)> + 'a {
        let mut r = Reader::trusted(self.0);
        r.pos = 1; // past '{'
        let mut first = true;
        std::iter::from_fn(move || {
            r.skip_ws();
            if r.peek() == Some(b'}') {
                return None;
            }
            if !first {
                r.pos += 1; // ','
                r.skip_ws();
            }
            first = false;
            let name = r.string().ok()?;
            r.skip_ws();
            r.pos += 1; // ':'
            r.skip_ws();
            let value = r.value(0).ok()?;
            Some((name, value))
        })
    }

    /// The member called `name` (names are unique: duplicates were refused).
    pub fn get(&self, name: &str) -> Option<Value<'a>> {
        self.iter().find(|(n, _)| n.eq_str(name)).map(|(_, v)| v)
    }

    /// The object's JSON text.
    pub fn as_json(&self) -> &'a str {
        self.0
    }
}

/// Reads `text` as a JSON object, calling `member` for each top-level member in order.
///
/// The whole document is validated; `member` may stop the walk early by returning an error.
pub fn read_object<'a, E: From<JsonError>>(
    text: &'a str,
    max_depth: usize,
    mut member: impl FnMut(JsonStr<'a>, Value<'a>) -> Result<(), E>,
) -> Result<Object<'a>, E> {
    let mut r = Reader::new(text, max_depth);
    r.skip_ws();
    if r.peek() != Some(b'{') {
        // Distinguish "not JSON" from "JSON but not an object".
        return Err(match Reader::new(text, max_depth).document() {
            Ok(_) => JsonError::NotAnObject.into(),
            Err(e) => e.into(),
        });
    }
    let start = r.pos;
    r.object(1, &mut member)?;
    let object = Object(&text[start..r.pos]);
    r.skip_ws();
    if r.pos != r.b.len() {
        return Err(JsonError::Syntax { offset: r.pos }.into());
    }
    Ok(object)
}

/// Parses a whole JSON document of any type.
pub fn parse(text: &str, max_depth: usize) -> Result<Value<'_>, JsonError> {
    Reader::new(text, max_depth).document()
}

/// Removes insignificant whitespace from a JSON text that has already been validated.
pub fn minify(valid: &str) -> String {
    let mut out = String::with_capacity(valid.len());
    let mut in_string = false;
    let mut escape = false;
    for c in valid.chars() {
        if in_string {
            out.push(c);
            if escape {
                escape = false;
            } else if c == '\\' {
                escape = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            if c == '"' {
                in_string = true;
            }
            out.push(c);
        }
    }
    out
}

/// Appends `s` to `out` as a JSON string literal, quotes included.
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Member names seen in one object, for duplicate detection. Small objects compare linearly on
/// the stack, first by a fingerprint (length and first seven bytes, which decides names of up to
/// seven bytes alone); large ones move to a hash set so that hostile input cannot make this
/// quadratic. Escaped names compare by their decoded text.
struct Names<'a> {
    raw: [&'a str; Names::INLINE],
    heads: [u64; Names::INLINE],
    len: usize,
    /// Bit i set: name i holds escapes.
    escaped: u16,
    large: Option<HashSet<Cow<'a, str>>>,
}

impl<'a> Names<'a> {
    const INLINE: usize = 16;

    fn new() -> Self {
        Names {
            raw: [""; Names::INLINE],
            heads: [0; Names::INLINE],
            len: 0,
            escaped: 0,
            large: None,
        }
    }

    #[inline]
    fn head(raw: &str) -> u64 {
        let b = raw.as_bytes();
        let mut word = [0u8; 8];
        let n = b.len().min(7);
        word[1..=n].copy_from_slice(&b[..n]);
        word[0] = b.len() as u8;
        u64::from_le_bytes(word)
    }

    fn get(&self, i: usize) -> JsonStr<'a> {
        JsonStr {
            raw: self.raw[i],
            escaped: self.escaped & (1 << i) != 0,
        }
    }

    /// Records `name`; false if it was already there.
    #[inline]
    fn insert(&mut self, name: JsonStr<'a>) -> bool {
        if let Some(set) = &mut self.large {
            return set.insert(name.to_str());
        }
        let head = Names::head(name.raw);
        let duplicate = if self.escaped != 0 || name.escaped {
            (0..self.len).any(|i| self.get(i).same_name(&name))
        } else {
            let short = name.raw.len() <= 7;
            self.heads[..self.len]
                .iter()
                .zip(&self.raw[..self.len])
                .any(|(&h, &raw)| h == head && (short || raw == name.raw))
        };
        if duplicate {
            return false;
        }
        if self.len < Names::INLINE {
            self.raw[self.len] = name.raw;
            self.heads[self.len] = head;
            self.escaped |= u16::from(name.escaped) << self.len;
            self.len += 1;
        } else {
            let mut set: HashSet<Cow<'a, str>> =
                (0..self.len).map(|i| self.get(i).to_str()).collect();
            set.insert(name.to_str());
            self.large = Some(set);
        }
        true
    }
}

/// Bytes that end the fast scan of a string: the closing quote, an escape, a control character.
const STRING_STOP: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        table[i] = true;
        i += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// Hard cap on nesting whatever the caller asks, so that recursion stays shallow.
const DEPTH_CAP: usize = 64;

/// The index of the first byte at or after `i` that ends the plain part of a string (see
/// [`STRING_STOP`]), or `b.len()`. Eight bytes at a time: the lowest flagged byte of each
/// zero-byte test is exact (false positives only appear above a true hit), so the lowest bit of
/// the combined mask is the first stop byte.
#[inline]
fn scan_string(b: &[u8], mut i: usize) -> usize {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    while let Some(chunk) = b.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        let quote = w ^ (LO * u64::from(b'"'));
        let backslash = w ^ (LO * u64::from(b'\\'));
        let hits = (quote.wrapping_sub(LO) & !quote)
            | (backslash.wrapping_sub(LO) & !backslash)
            | (w.wrapping_sub(LO * 0x20) & !w);
        let hits = hits & HI;
        if hits != 0 {
            return i + (hits.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < b.len() && !STRING_STOP[b[i] as usize] {
        i += 1;
    }
    i
}

struct Reader<'a> {
    text: &'a str,
    b: &'a [u8],
    pos: usize,
    max_depth: usize,
}

impl<'a> Reader<'a> {
    fn new(text: &'a str, max_depth: usize) -> Self {
        Reader {
            text,
            b: text.as_bytes(),
            pos: 0,
            max_depth: max_depth.min(DEPTH_CAP),
        }
    }

    /// A reader over text that was validated before (iteration of nested containers).
    fn trusted(text: &'a str) -> Self {
        Reader::new(text, DEPTH_CAP)
    }

    fn document(&mut self) -> Result<Value<'a>, JsonError> {
        self.skip_ws();
        let v = self.value(0)?;
        self.skip_ws();
        if self.pos != self.b.len() {
            return Err(self.syntax());
        }
        Ok(v)
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn syntax(&self) -> JsonError {
        JsonError::Syntax { offset: self.pos }
    }

    #[inline]
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    #[inline]
    fn expect(&mut self, byte: u8) -> Result<(), JsonError> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.syntax())
        }
    }

    /// A value at nesting `depth` (the number of containers around it).
    fn value(&mut self, depth: usize) -> Result<Value<'a>, JsonError> {
        match self.peek() {
            Some(b'"') => self.string().map(Value::String),
            Some(b'{') => {
                let start = self.pos;
                self.object(depth + 1, &mut |_, _| Ok::<(), JsonError>(()))?;
                Ok(Value::Object(Object(&self.text[start..self.pos])))
            }
            Some(b'[') => {
                let start = self.pos;
                self.array(depth + 1)?;
                Ok(Value::Array(Array(&self.text[start..self.pos])))
            }
            Some(b't') => self.literal(b"true", Value::Bool(true)),
            Some(b'f') => self.literal(b"false", Value::Bool(false)),
            Some(b'n') => self.literal(b"null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number().map(Value::Number),
            _ => Err(self.syntax()),
        }
    }

    fn literal(&mut self, word: &[u8], v: Value<'a>) -> Result<Value<'a>, JsonError> {
        if self.b[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(v)
        } else {
            Err(self.syntax())
        }
    }

    fn object<E: From<JsonError>>(
        &mut self,
        depth: usize,
        member: &mut impl FnMut(JsonStr<'a>, Value<'a>) -> Result<(), E>,
    ) -> Result<(), E> {
        if depth > self.max_depth {
            return Err(JsonError::TooDeep {
                limit: self.max_depth,
            }
            .into());
        }
        self.expect(b'{')?;
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        let mut names = Names::new();
        loop {
            self.skip_ws();
            let at = self.pos;
            if self.peek() != Some(b'"') {
                return Err(self.syntax().into());
            }
            let name = self.string()?;
            if !names.insert(name) {
                return Err(JsonError::DuplicateMember { offset: at }.into());
            }
            self.skip_ws();
            self.expect(b':')?;
            self.skip_ws();
            // Strings and numbers, most members of a token, skip the general dispatch.
            let value = match self.peek() {
                Some(b'"') => Value::String(self.string()?),
                Some(b'-' | b'0'..=b'9') => Value::Number(self.number()?),
                _ => self.value(depth)?,
            };
            member(name, value)?;
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.syntax().into()),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<(), JsonError> {
        if depth > self.max_depth {
            return Err(JsonError::TooDeep {
                limit: self.max_depth,
            });
        }
        self.expect(b'[')?;
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.skip_ws();
            self.value(depth)?;
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.syntax()),
            }
        }
    }

    #[inline]
    fn string(&mut self) -> Result<JsonStr<'a>, JsonError> {
        self.expect(b'"')?;
        let start = self.pos;
        let mut escaped = false;
        loop {
            self.pos = scan_string(self.b, self.pos);
            let Some(&stop) = self.b.get(self.pos) else {
                return Err(self.syntax());
            };
            match stop {
                b'"' => {
                    let raw = &self.text[start..self.pos];
                    self.pos += 1;
                    return Ok(JsonStr { raw, escaped });
                }
                b'\\' => {
                    escaped = true;
                    self.escape()?;
                }
                _ => return Err(self.syntax()),
            }
        }
    }

    /// One escape sequence starting at the backslash.
    fn escape(&mut self) -> Result<(), JsonError> {
        let at = self.pos;
        self.pos += 1;
        match self.peek() {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.pos += 1;
                Ok(())
            }
            Some(b'u') => {
                self.pos += 1;
                let unit = self.hex4()?;
                match unit {
                    0xD800..=0xDBFF => {
                        // A high surrogate must be followed by an escaped low surrogate.
                        if self.b[self.pos..].starts_with(b"\\u") {
                            self.pos += 2;
                            if (0xDC00..=0xDFFF).contains(&self.hex4()?) {
                                return Ok(());
                            }
                        }
                        Err(JsonError::InvalidEscape { offset: at })
                    }
                    0xDC00..=0xDFFF => Err(JsonError::InvalidEscape { offset: at }),
                    _ => Ok(()),
                }
            }
            _ => Err(self.syntax()),
        }
    }

    fn hex4(&mut self) -> Result<u16, JsonError> {
        let digits = self.b.get(self.pos..self.pos + 4).ok_or(self.syntax())?;
        let mut v = 0u16;
        for &d in digits {
            let n = (d as char).to_digit(16).ok_or(self.syntax())?;
            v = (v << 4) | n as u16;
        }
        self.pos += 4;
        Ok(v)
    }

    #[inline]
    fn number(&mut self) -> Result<Number<'a>, JsonError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.syntax()),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.syntax());
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.syntax());
            }
            self.digits();
        }
        Ok(Number(&self.text[start..self.pos]))
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }
}

/// Decodes the escapes of a string that the reader has validated.
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('u') => {
                let hi = hex_unit(&mut chars);
                let code = if (0xD800..=0xDBFF).contains(&hi) {
                    chars.next(); // '\\'
                    chars.next(); // 'u'
                    let lo = hex_unit(&mut chars);
                    0x10000 + ((hi - 0xD800) << 10) + (lo.wrapping_sub(0xDC00) & 0x3FF)
                } else {
                    hi
                };
                // Validation refused lone surrogates, so every code is a scalar value.
                out.push(char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER));
            }
            Some(other) => out.push(other), // '"', '\\', '/'
            None => {}
        }
    }
    out
}

fn hex_unit(chars: &mut std::str::Chars<'_>) -> u32 {
    chars
        .take(4)
        .fold(0, |acc, c| (acc << 4) | c.to_digit(16).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Vec<(String, String)> {
        let mut seen = Vec::new();
        read_object::<JsonError>(text, 8, |n, v| {
            seen.push((n.to_str().into_owned(), v.as_json().to_owned()));
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{text:?} refused: {e}"));
        seen
    }

    fn err(text: &str) -> JsonError {
        match read_object::<JsonError>(text, 4, |_, _| Ok(())) {
            Ok(_) => panic!("{text:?} accepted"),
            Err(e) => e,
        }
    }

    #[test]
    fn reads_members_in_order() {
        let m = ok(" {\"a\" : 1,\r\n \"b\":[true,null,{\"c\":\"d\"}], \"e\":-0.5e+3}\n");
        assert_eq!(m[0], ("a".into(), "1".into()));
        assert_eq!(m[1].1, "[true,null,{\"c\":\"d\"}]");
        assert_eq!(m[2].1, "-0.5e+3");
    }

    #[test]
    fn refuses_duplicates_after_unescaping() {
        assert!(matches!(
            err(r#"{"alg":"a","alg":"b"}"#),
            JsonError::DuplicateMember { .. }
        ));
        assert!(matches!(
            err(r#"{"alg":"a","\u0061lg":"b"}"#),
            JsonError::DuplicateMember { .. }
        ));
        assert!(matches!(
            err(r#"{"x":{"k":1,"k":2}}"#),
            JsonError::DuplicateMember { .. }
        ));
        assert!(matches!(
            err(r#"{"client_id":1,"scope":2,"client_id":3}"#),
            JsonError::DuplicateMember { .. }
        ));
        assert!(matches!(
            err(r#"{"client_id":1,"client_\u0069d":3}"#),
            JsonError::DuplicateMember { .. }
        ));
        assert_eq!(ok(r#"{"client_id":1,"client_ie":2,"client_i":3}"#).len(), 3);
    }

    #[test]
    fn refuses_duplicates_in_large_objects() {
        let mut text = String::from("{");
        for i in 0..40 {
            text.push_str(&format!("\"m{i}\":{i},"));
        }
        text.push_str("\"m3\":0}");
        assert!(matches!(err(&text), JsonError::DuplicateMember { .. }));
        text.truncate(text.len() - 8);
        text.push('}');
        assert_eq!(ok(&text).len(), 40);
    }

    #[test]
    fn bounds_depth() {
        assert!(matches!(
            err(r#"{"a":[[[[1]]]]}"#),
            JsonError::TooDeep { limit: 4 }
        ));
        ok(r#"{"a":[[[1]]]}"#);
    }

    #[test]
    fn refuses_bad_grammar() {
        for bad in [
            "",
            "{",
            "{}x",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "{'a':1}",
            "{\"a\":01}",
            "{\"a\":1.}",
            "{\"a\":.5}",
            "{\"a\":+1}",
            "{\"a\":1e}",
            "{\"a\":tru}",
            "{\"a\":\"\u{1}\"}",
            "{\"a\":\"\\x\"}",
            "{\"a\":\"\\u12\"}",
            "{\"a\":NaN}",
            "{\"a\":[1,]}",
            "{\"a\":1}\u{a0}",
        ] {
            err(bad);
        }
        assert_eq!(err("[1]"), JsonError::NotAnObject);
    }

    #[test]
    fn refuses_lone_surrogates() {
        for bad in [
            r#"{"a":"\ud800"}"#,
            r#"{"a":"\udc00"}"#,
            r#"{"a":"\ud800\u0041"}"#,
        ] {
            assert!(matches!(err(bad), JsonError::InvalidEscape { .. }), "{bad}");
        }
        let m = ok(r#"{"a":"\ud83d\ude00\n\u00e9\/"}"#);
        let text = r#"{"a":"\ud83d\ude00\n\u00e9\/"}"#;
        let obj = read_object::<JsonError>(text, 4, |_, _| Ok(())).unwrap();
        assert_eq!(
            obj.get("a").and_then(|v| v.as_str()).unwrap().to_str(),
            "\u{1F600}\n\u{e9}/"
        );
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn iterates_nested_containers() {
        let text = r#"{"aud":[ "x", "y" ,"z" ], "o" : { "p" : 1 , "q" : [ ] } }"#;
        let obj = read_object::<JsonError>(text, 4, |_, _| Ok(())).unwrap();
        let Some(Value::Array(aud)) = obj.get("aud") else {
            panic!("aud is not an array")
        };
        let names: Vec<_> = aud.iter().map(|v| v.as_json()).collect();
        assert_eq!(names, ["x", "y", "z"]);
        let Some(Value::Object(o)) = obj.get("o") else {
            panic!("o is not an object")
        };
        assert_eq!(o.iter().count(), 2);
        assert_eq!(o.get("q").map(|v| v.as_json()), Some("[ ]"));
    }

    #[test]
    fn string_scan_finds_the_first_stop_byte() {
        for len in 0..40 {
            for stop in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
                for pos in 0..=len {
                    let mut b: Vec<u8> = (0..len).map(|i| b"az\x7f\x80\xff#!]"[i % 8]).collect();
                    if pos < len {
                        b[pos] = stop;
                    }
                    assert_eq!(scan_string(&b, 0), pos, "len {len} stop {stop} at {pos}");
                    // Bytes after the stop, stops included, do not change the answer.
                    b.extend_from_slice(b"\"\\\x01");
                    assert_eq!(scan_string(&b, 0), pos);
                }
            }
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(Number("1300819380").as_f64(), Some(1300819380.0));
        assert_eq!(Number("-12").as_f64(), Some(-12.0));
        assert_eq!(Number("1.5e3").as_f64(), Some(1500.0));
        assert_eq!(Number("1e999").as_f64(), None);
        assert_eq!(Number("99999999999999999999").as_i64(), None);
    }

    #[test]
    fn minify_keeps_strings() {
        assert_eq!(
            minify("{\"typ\":\"JWT\",\r\n \"a b\" : \"c \\\" d\"}"),
            "{\"typ\":\"JWT\",\"a b\":\"c \\\" d\"}"
        );
    }
}
