//! Compact JWS (RFC 7515): splitting, header rules, key selection, signature verification, and
//! building a compact JWS from a signature for issuers.
//!
//! The order of work is fixed and cheap-first: size limit, segments, header, key, signature.
//! The payload is decoded only after its signature has verified.

use std::borrow::Cow;

use crate::json::{self, Array, JsonError, JsonStr, Value};
use crate::{b64, Algorithm, Error, KeySet, Malformed, Segment, VerifyingKey};
pub(crate) use HeaderMemo as Memo;

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
    /// No member value is an object or array, so any depth limit admits the header.
    flat: bool,
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
        let mut flat = true;
        let string =
            |v: Value<'a>, what: &'static str| v.as_str().ok_or(Error::InvalidHeader(what));
        let object = json::read_object(text, limits.max_json_depth, |name, value| {
            flat &= !matches!(value, Value::Array(_) | Value::Object(_));
            match name.to_str().as_bytes() {
                b"alg" => alg = Some(string(value, "alg must be a string")?),
                b"kid" => kid = Some(string(value, "kid must be a string")?),
                b"typ" => typ = Some(string(value, "typ must be a string")?),
                b"cty" => cty = Some(string(value, "cty must be a string")?),
                b"crit" => crit = Some(value),
                // RFC 7797 unencoded payloads are not supported; b64 true is the default.
                b"b64" if value != Value::Bool(true) => {
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
        Ok(Header {
            alg,
            kid,
            typ,
            cty,
            flat,
        })
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
        let first = memchr::memchr(b'.', token).ok_or(Malformed::Segments)?;
        let second = memchr::memchr(b'.', &token[first + 1..])
            .map(|i| first + 1 + i)
            .ok_or(Malformed::Segments)?;
        if memchr::memchr(b'.', &token[second + 1..]).is_some() {
            return Err(Malformed::Segments.into());
        }
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

/// What the protected header of `token` says about its key: the algorithm and the `kid`. For
/// routing a token to the key set that should verify it; nothing here is verified, and the key
/// set's own checks still apply.
pub fn peek_key(
    token: impl AsRef<[u8]>,
    limits: &Limits,
) -> Result<(Algorithm, Option<String>), Error> {
    let parts = Compact::split(token.as_ref(), limits)?;
    let header = b64::decode(parts.header).ok_or(Malformed::Base64(Segment::Header))?;
    let text = std::str::from_utf8(&header).map_err(|_| Malformed::Utf8(Segment::Header))?;
    let header = Header::parse(text, limits)?;
    Ok((header.alg, header.kid.map(|k| k.to_str().into_owned())))
}

/// Verifies the signature of a compact JWS; the payload may be any bytes.
pub fn verify(token: impl AsRef<[u8]>, keys: &KeySet, limits: &Limits) -> Result<Jws, Error> {
    prepare_with(token.as_ref(), keys, limits, |_| Ok(()))?.verify()
}

/// A compact JWS checked up to its signature: segments split, header parsed and allowed, key
/// chosen (pinned to the header's algorithm), signature decoded. Nothing of the payload has
/// been read. What follows is the signature check, in this thread ([`Prepared::verify`]) or by
/// a batched backend that takes [`Prepared::key`], [`Prepared::signing_input`] and
/// [`Prepared::signature`] and reports its verdict to [`Prepared::finish`].
pub struct Prepared<'a> {
    keys: &'a KeySet,
    key: &'a VerifyingKey,
    limits: &'a Limits,
    parts: Compact<'a>,
    /// Decoded header JSON, then the decoded signature.
    buf: Vec<u8>,
    header_len: usize,
    alg: Algorithm,
    memo_hit: bool,
}

/// Checks `token` up to its signature, calling `check_header` on the parsed header before any
/// key is used.
pub(crate) fn prepare_with<'a>(
    token: &'a [u8],
    keys: &'a KeySet,
    limits: &'a Limits,
    check_header: impl FnOnce(&Header<'_>) -> Result<(), Error>,
) -> Result<Prepared<'a>, Error> {
    let parts = Compact::split(token, limits)?;
    let mut buf = Vec::with_capacity(
        b64::decoded_len_bound(parts.header.len())
            + b64::decoded_len_bound(parts.signature.len().max(parts.payload.len())),
    );
    // A depth limit of 0 refuses every header, so it never takes the memo.
    let memo = keys
        .memo()
        .filter(|m| *m.segment == *parts.header && limits.max_json_depth > 0);
    let (alg, key) = match memo {
        Some(memo) => {
            buf.extend_from_slice(memo.json.as_bytes());
            check_header(&memo.header())?;
            (memo.alg, keys.key(memo.key))
        }
        None => {
            b64::decode_append(parts.header, &mut buf).ok_or(Malformed::Base64(Segment::Header))?;
            let text = std::str::from_utf8(&buf).map_err(|_| Malformed::Utf8(Segment::Header))?;
            let header = Header::parse(text, limits)?;
            check_header(&header)?;
            (header.alg, keys.find_json(header.alg, header.kid)?)
        }
    };
    let header_len = buf.len();
    // The signature goes after the header in the same buffer, then makes way for the payload.
    b64::decode_append(parts.signature, &mut buf).ok_or(Malformed::Base64(Segment::Signature))?;
    Ok(Prepared {
        keys,
        key,
        limits,
        parts,
        buf,
        header_len,
        alg,
        memo_hit: memo.is_some(),
    })
}

impl std::fmt::Debug for Prepared<'_> {
    // Never prints the token or its signature.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("alg", &self.alg)
            .field("kid", &self.key.kid())
            .finish_non_exhaustive()
    }
}

impl<'a> Prepared<'a> {
    /// The header's algorithm, which is the key's.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The key that must verify the signature.
    pub fn key(&self) -> &'a VerifyingKey {
        self.key
    }

    /// `BASE64URL(header) '.' BASE64URL(payload)`, as the token carries it: what was signed.
    pub fn signing_input(&self) -> &'a [u8] {
        self.parts.signing_input
    }

    /// The decoded signature.
    pub fn signature(&self) -> &[u8] {
        &self.buf[self.header_len..]
    }

    /// Verifies the signature with the key in this thread, then finishes.
    #[inline]
    pub fn verify(self) -> Result<Jws, Error> {
        let valid = self
            .key
            .verify(self.parts.signing_input, self.signature())
            .is_ok();
        self.finish(valid)
    }

    /// Finishes with the verdict of a signature check made elsewhere on exactly
    /// [`Prepared::signature`] over [`Prepared::signing_input`] with [`Prepared::key`] and its
    /// algorithm: `BadSignature` unless `signature_valid`; otherwise the payload is decoded.
    pub fn finish(mut self, signature_valid: bool) -> Result<Jws, Error> {
        if !signature_valid {
            return Err(Error::BadSignature);
        }
        self.buf.truncate(self.header_len);
        if !self.memo_hit && self.keys.memo().is_none() {
            HeaderMemo::remember(self.keys, self.parts.header, &self.buf, self.limits);
        }
        b64::decode_append(self.parts.payload, &mut self.buf)
            .ok_or(Malformed::Base64(Segment::Payload))?;
        Ok(Jws {
            buf: self.buf,
            header_len: self.header_len,
            alg: self.alg,
        })
    }
}

/// The parsed form of a header that verified, kept by its [`KeySet`] so that the next tokens
/// of the same issuer, which share one header byte for byte, skip decoding and parsing it.
///
/// A hit is exactly what parsing would give: the memo is keyed by the whole encoded header,
/// holds only what the header alone decides (algorithm, key, `typ`, `cty`; policy checks still
/// run on every token), and is set once per key set, only from a token whose signature
/// verified, so hostile tokens cannot pin it. Headers with nested values are not kept, so no
/// depth limit is bypassed.
#[derive(Debug)]
pub(crate) struct HeaderMemo {
    segment: Box<[u8]>,
    json: Box<str>,
    alg: Algorithm,
    key: usize,
    typ: Option<(Box<str>, bool)>,
    cty: Option<(Box<str>, bool)>,
}

impl HeaderMemo {
    fn remember(keys: &KeySet, segment: &[u8], json: &[u8], limits: &Limits) {
        let Ok(text) = std::str::from_utf8(json) else {
            return;
        };
        let Ok(header) = Header::parse(text, limits) else {
            return;
        };
        let Ok(key) = keys.index_json(header.alg, header.kid) else {
            return;
        };
        if !header.flat {
            return;
        }
        let keep = |s: Option<JsonStr<'_>>| s.map(|s| (Box::from(s.raw()), s.is_escaped()));
        keys.set_memo(HeaderMemo {
            segment: segment.into(),
            json: text.into(),
            alg: header.alg,
            key,
            typ: keep(header.typ),
            cty: keep(header.cty),
        });
    }

    fn header(&self) -> Header<'_> {
        fn view(s: &Option<(Box<str>, bool)>) -> Option<JsonStr<'_>> {
            s.as_ref()
                .map(|(raw, escaped)| JsonStr::from_raw(raw, *escaped))
        }
        Header {
            alg: self.alg,
            kid: None,
            typ: view(&self.typ),
            cty: view(&self.cty),
            flat: true,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{jwt, Validation, VerifyingKey};

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn keys() -> KeySet {
        let a = VerifyingKey::hmac(Algorithm::HS256, SECRET, Some("a")).unwrap();
        let b = VerifyingKey::hmac(Algorithm::HS384, &[7; 48], Some("b")).unwrap();
        KeySet::new(vec![a, b]).unwrap()
    }

    fn token(header: &str, claims: &str, secret: &[u8]) -> String {
        let input = SigningInput::new(header.as_bytes(), claims.as_bytes());
        let hash = if header.contains("HS384") {
            aws_lc_rs::hmac::HMAC_SHA384
        } else {
            aws_lc_rs::hmac::HMAC_SHA256
        };
        let tag = aws_lc_rs::hmac::sign(&aws_lc_rs::hmac::Key::new(hash, secret), input.as_bytes());
        input.into_compact(tag.as_ref())
    }

    const HEADER: &str = r#"{"alg":"HS256","kid":"a","typ":"JWT"}"#;
    const CLAIMS: &str = r#"{"exp":2000000000}"#;

    #[test]
    fn memo_is_set_only_by_a_verified_token() {
        let keys = keys();
        let forged = token(HEADER, CLAIMS, b"wrong secret wrong secret wrong!");
        assert_eq!(
            verify(&forged, &keys, &Limits::default()).unwrap_err(),
            Error::BadSignature
        );
        assert!(keys.memo().is_none());
        verify(token(HEADER, CLAIMS, SECRET), &keys, &Limits::default()).unwrap();
        let memo = keys.memo().expect("memo set");
        assert_eq!(&*memo.json, HEADER);
        assert_eq!(memo.key, 0);
    }

    #[test]
    fn memo_hits_decide_exactly_as_parsing_does() {
        let keys = keys();
        verify(token(HEADER, CLAIMS, SECRET), &keys, &Limits::default()).unwrap();
        assert!(keys.memo().is_some());
        // Same header, wrong signature: refused.
        let forged = token(HEADER, CLAIMS, b"wrong secret wrong secret wrong!");
        assert_eq!(
            verify(&forged, &keys, &Limits::default()).unwrap_err(),
            Error::BadSignature
        );
        // Same header, policy checks still run: explicit typing refuses typ JWT.
        let mut policy = Validation {
            typ: Some("at+jwt".into()),
            ..Validation::default()
        };
        let good = token(HEADER, CLAIMS, SECRET);
        assert_eq!(
            jwt::verify(&good, &keys, &policy, 0).unwrap_err(),
            Error::InvalidType
        );
        policy.typ = Some("jwt".into());
        let jwt = jwt::verify(&good, &keys, &policy, 0).unwrap();
        assert_eq!(jwt.header_json(), HEADER);
        // Another header still parses and selects its own key.
        let other = token(r#"{"alg":"HS384","kid":"b"}"#, CLAIMS, &[7; 48]);
        assert_eq!(
            verify(&other, &keys, &Limits::default()).unwrap().alg(),
            Algorithm::HS384
        );
        // A depth limit of 0 refuses the remembered header as parsing would.
        let zero = Limits {
            max_json_depth: 0,
            ..Limits::default()
        };
        assert!(matches!(
            verify(&good, &keys, &zero),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn headers_with_nested_values_are_not_remembered() {
        let keys = keys();
        let nested = r#"{"alg":"HS256","kid":"a","jwk":{"kty":"oct"}}"#;
        verify(token(nested, CLAIMS, SECRET), &keys, &Limits::default()).unwrap();
        assert!(keys.memo().is_none());
    }
}
