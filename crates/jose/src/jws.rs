//! Compact JWS (RFC 7515): splitting, header rules, key selection, signature verification, and
//! building a compact JWS from a signature for issuers.
//!
//! The order of work is fixed and cheap-first: size limit, segments, header, key, signature.
//! The payload is decoded only after its signature has verified.

use std::borrow::Cow;

use crate::json::{self, Array, JsonError, JsonStr, Value};
use crate::{b64, Algorithm, Error, KeySet, Malformed, Segment};

/// Size and depth limits applied before and during parsing.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The longest token accepted, in bytes; checked before anything is decoded.
    pub max_token_len: usize,
    /// The deepest nesting of objects and arrays in the header and the claims.
    pub max_json_depth: usize,
}

impl Limits {
    pub const DEFAULT_MAX_TOKEN_LEN: usize = 16 * 1024;
    pub const DEFAULT_MAX_JSON_DEPTH: usize = 8;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_token_len: Limits::DEFAULT_MAX_TOKEN_LEN,
            max_json_depth: Limits::DEFAULT_MAX_JSON_DEPTH,
        }
    }
}

/// Header parameters registered for JWS by RFC 7515 and RFC 7518; `crit` may not name them
/// (RFC 7515 section 4.1.11).
const REGISTERED: [&str; 11] = [
    "alg", "jku", "jwk", "kid", "x5u", "x5c", "x5t", "x5t#S256", "typ", "cty", "crit",
];

/// The header members a verifier acts on. `jwk`, `jku`, `x5u` and `x5c` are deliberately absent:
/// they are never key sources and never fetched.
#[derive(Clone, Copy, Debug)]
pub struct Header<'a> {
    pub alg: Algorithm,
    pub kid: Option<JsonStr<'a>>,
    pub typ: Option<JsonStr<'a>>,
    pub cty: Option<JsonStr<'a>>,
}

impl<'a> Header<'a> {
    /// Parses and checks a protected header.
    pub fn parse(text: &'a str, limits: &Limits) -> Result<Self, Error> {
        let json_err = |e: JsonError| Error::Malformed(Malformed::Json(Segment::Header, e));
        let mut alg = None;
        let mut kid = None;
        let mut typ = None;
        let mut cty = None;
        let mut crit = None;
        let string =
            |v: Value<'a>, what: &'static str| v.as_str().ok_or(Error::InvalidHeader(what));
        let object = json::read_object(text, limits.max_json_depth, |name, value| {
            match &*name.to_str() {
                "alg" => alg = Some(string(value, "alg must be a string")?),
                "kid" => kid = Some(string(value, "kid must be a string")?),
                "typ" => typ = Some(string(value, "typ must be a string")?),
                "cty" => cty = Some(string(value, "cty must be a string")?),
                "crit" => crit = Some(value),
                // RFC 7797 unencoded payloads are not supported; b64 true is the default.
                "b64" if value != Value::Bool(true) => {
                    return Err(
                        Error::InvalidHeader("b64 (unencoded payload) is not supported").into(),
                    )
                }
                _ => {}
            }
            Ok(())
        });
        let object = object.map_err(|e| match e {
            HeaderError::Json(e) => json_err(e),
            HeaderError::Token(e) => e,
        })?;
        let alg = alg.ok_or(Error::InvalidHeader("alg is missing"))?;
        let alg = Algorithm::from_name(&alg.to_str()).ok_or(Error::UnsupportedAlgorithm)?;
        if let Some(crit) = crit {
            check_crit(crit, |name| object.get(name).is_some())?;
        }
        Ok(Header { alg, kid, typ, cty })
    }
}

/// The error type of the header walk: JSON problems and header rule violations.
enum HeaderError {
    Json(JsonError),
    Token(Error),
}

impl From<JsonError> for HeaderError {
    fn from(e: JsonError) -> Self {
        HeaderError::Json(e)
    }
}

impl From<Error> for HeaderError {
    fn from(e: Error) -> Self {
        HeaderError::Token(e)
    }
}

/// `crit` must be a non-empty array of distinct names of extension parameters present in the
/// header (RFC 7515 section 4.1.11). This verifier understands no extension, so a well-formed
/// `crit` is refused as not understood.
fn check_crit(crit: Value<'_>, present: impl Fn(&str) -> bool) -> Result<(), Error> {
    const INVALID: Error = Error::InvalidHeader("crit must list extension header names");
    let Value::Array(names) = crit else {
        return Err(INVALID);
    };
    let names: Vec<Cow<'_, str>> = Array::iter(&names)
        .map(|v| v.as_str().map(|s| s.to_str()).ok_or(INVALID))
        .collect::<Result<_, _>>()?;
    let distinct = names
        .iter()
        .enumerate()
        .all(|(i, n)| !names[..i].contains(n));
    if names.is_empty()
        || !distinct
        || names
            .iter()
            .any(|n| REGISTERED.contains(&&**n) || !present(n))
    {
        return Err(INVALID);
    }
    Err(Error::UnsupportedCritical)
}

/// The three segments of a compact JWS.
pub(crate) struct Compact<'t> {
    pub header: &'t [u8],
    pub payload: &'t [u8],
    pub signature: &'t [u8],
    /// `header '.' payload`: what was signed.
    pub signing_input: &'t [u8],
}

impl<'t> Compact<'t> {
    pub(crate) fn split(token: &'t [u8], limits: &Limits) -> Result<Self, Error> {
        if token.len() > limits.max_token_len {
            return Err(Error::TooLarge {
                len: token.len(),
                limit: limits.max_token_len,
            });
        }
        let mut dots = token
            .iter()
            .enumerate()
            .filter(|(_, &b)| b == b'.')
            .map(|(i, _)| i);
        let (Some(first), Some(second), None) = (dots.next(), dots.next(), dots.next()) else {
            return Err(Malformed::Segments.into());
        };
        Ok(Compact {
            header: &token[..first],
            payload: &token[first + 1..second],
            signature: &token[second + 1..],
            signing_input: &token[..second],
        })
    }
}

/// A JWS whose signature has been verified, holding its decoded header and payload.
#[derive(Debug)]
pub struct Jws {
    /// Decoded header JSON, then the decoded payload.
    buf: Vec<u8>,
    header_len: usize,
    alg: Algorithm,
}

impl Jws {
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The protected header as JSON text (validated; may contain insignificant whitespace).
    pub fn header_json(&self) -> &str {
        // The header was checked to be UTF-8 before it was parsed.
        std::str::from_utf8(&self.buf[..self.header_len]).unwrap_or_default()
    }

    pub fn payload(&self) -> &[u8] {
        &self.buf[self.header_len..]
    }

    pub(crate) fn into_parts(self) -> (Vec<u8>, usize, Algorithm) {
        (self.buf, self.header_len, self.alg)
    }
}

/// Verifies the signature of a compact JWS; the payload may be any bytes.
pub fn verify(token: impl AsRef<[u8]>, keys: &KeySet, limits: &Limits) -> Result<Jws, Error> {
    verify_with(token.as_ref(), keys, limits, |_| Ok(()))
}

/// Verifies the signature, calling `check_header` on the parsed header before any key is used.
pub(crate) fn verify_with(
    token: &[u8],
    keys: &KeySet,
    limits: &Limits,
    check_header: impl FnOnce(&Header<'_>) -> Result<(), Error>,
) -> Result<Jws, Error> {
    let parts = Compact::split(token, limits)?;
    let mut buf = Vec::with_capacity(
        b64::decoded_len_bound(parts.header.len())
            + b64::decoded_len_bound(parts.signature.len().max(parts.payload.len())),
    );
    b64::decode_append(parts.header, &mut buf).ok_or(Malformed::Base64(Segment::Header))?;
    let header_len = buf.len();
    let (alg, key) = {
        let text = std::str::from_utf8(&buf).map_err(|_| Malformed::Utf8(Segment::Header))?;
        let header = Header::parse(text, limits)?;
        check_header(&header)?;
        (header.alg, keys.find_json(header.alg, header.kid)?)
    };
    // The signature goes after the header in the same buffer, then makes way for the payload.
    b64::decode_append(parts.signature, &mut buf).ok_or(Malformed::Base64(Segment::Signature))?;
    key.verify(parts.signing_input, &buf[header_len..])?;
    buf.truncate(header_len);
    b64::decode_append(parts.payload, &mut buf).ok_or(Malformed::Base64(Segment::Payload))?;
    Ok(Jws {
        buf,
        header_len,
        alg,
    })
}

/// `BASE64URL(header) '.' BASE64URL(payload)`: the bytes an issuer signs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigningInput(String);

impl SigningInput {
    pub fn new(header_json: &[u8], payload: &[u8]) -> Self {
        let mut s = String::with_capacity((header_json.len() + payload.len()) * 4 / 3 + 8);
        b64::encode_append(header_json, &mut s);
        s.push('.');
        b64::encode_append(payload, &mut s);
        SigningInput(s)
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The compact JWS: the signing input, a dot, and the encoded signature (already in JWS
    /// form: raw R‖S for ECDSA).
    pub fn into_compact(self, signature: &[u8]) -> String {
        let mut s = self.0;
        s.push('.');
        b64::encode_append(signature, &mut s);
        s
    }
}

/// A minimal protected header: `{"alg":..,"kid":..,"typ":..}`.
pub fn header_json(alg: Algorithm, kid: Option<&str>, typ: Option<&str>) -> String {
    let mut s = String::with_capacity(64);
    s.push_str("{\"alg\":\"");
    s.push_str(alg.name());
    s.push('"');
    if let Some(kid) = kid {
        s.push_str(",\"kid\":");
        json::write_str(&mut s, kid);
    }
    if let Some(typ) = typ {
        s.push_str(",\"typ\":");
        json::write_str(&mut s, typ);
    }
    s.push('}');
    s
}
