//! JSON Web Tokens (RFC 7519): a verified JWS whose payload is a claims set, validated against a
//! [`Validation`] policy.

use std::borrow::Cow;

use crate::date::MAX_NUMERIC_DATE;
use crate::json::{self, JsonError, JsonStr, Object, Value};
use crate::jws::{self, Header, Limits};
use crate::{Algorithm, Error, KeySet, Malformed, Segment};

/// What a token must satisfy beyond its signature.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validation {
    /// `iss` must equal this exactly (no normalisation: no case folding, no trailing slash).
    pub issuer: Option<String>,
    /// `aud` must contain one of these exactly; empty means `aud` is not checked.
    pub audiences: Vec<String>,
    /// Explicit typing (RFC 8725 3.11): `typ` must name this media type, compared without case
    /// and with an optional `application/` prefix (`at+jwt` matches `application/at+jwt`).
    pub typ: Option<String>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    pub leeway: u64,
    /// Whether `exp` must be present.
    pub require_exp: bool,
    /// Claims that must be present, whatever their value.
    pub required_claims: Vec<String>,
    /// The longest lifetime accepted, in seconds: `exp - iat`, or without `iat`, `exp - now`
    /// (the leeway allowed). Requires `exp`.
    pub max_lifetime: Option<u64>,
    pub limits: Limits,
}

impl Validation {
    pub const DEFAULT_LEEWAY: u64 = 60;

    pub fn with_issuer(mut self, iss: impl Into<String>) -> Self {
        self.issuer = Some(iss.into());
        self
    }

    pub fn with_audience(mut self, aud: impl Into<String>) -> Self {
        self.audiences.push(aud.into());
        self
    }
}

impl Default for Validation {
    fn default() -> Self {
        Validation {
            issuer: None,
            audiences: Vec::new(),
            typ: None,
            leeway: Validation::DEFAULT_LEEWAY,
            require_exp: true,
            required_claims: Vec::new(),
            max_lifetime: None,
            limits: Limits::default(),
        }
    }
}

/// A verified and validated JWT. Holds the decoded header and claims; claim values borrow from
/// it. Compact (a cache keeps many): one allocation, the claims read from the text on demand.
#[derive(Debug)]
pub struct Jwt {
    /// The decoded header JSON, then the decoded claims JSON.
    text: Box<str>,
    header_len: u32,
    alg: Algorithm,
    /// `exp`, read when the claims were validated; NaN when the token has none.
    exp: f64,
}

impl Jwt {
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The protected header as JSON text (validated; may contain insignificant whitespace).
    pub fn header_json(&self) -> &str {
        self.text
            .get(..self.header_len as usize)
            .unwrap_or_default()
    }

    /// The header's `kid`, if it has one.
    pub fn kid(&self) -> Option<Cow<'_, str>> {
        match json::parse(self.header_json(), usize::MAX).ok()? {
            Value::Object(header) => header.get("kid")?.as_str().map(|k| k.to_str()),
            _ => None,
        }
    }

    /// The claims set as JSON text (validated; may contain insignificant whitespace).
    pub fn claims_json(&self) -> &str {
        self.text
            .get(self.header_len as usize..)
            .unwrap_or_default()
    }

    /// The memory this token holds beside itself: its decoded text, rounded by `allocated` to
    /// what the allocator hands out for it.
    pub fn heap_bytes(&self, allocated: impl Fn(usize) -> usize) -> usize {
        allocated(self.text.len())
    }

    /// The claims in document order, read from the claims' text (validated when the token was
    /// verified) as they are asked for.
    pub fn claims(&self) -> impl Iterator<Item = (JsonStr<'_>, Value<'_>)> {
        let object = self
            .claims_json()
            .trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r'));
        Object::trusted(object).iter()
    }

    /// `exp`, in seconds since the epoch, if the token has one.
    pub fn exp(&self) -> Option<f64> {
        (!self.exp.is_nan()).then_some(self.exp)
    }

    /// The claim called `name`.
    pub fn claim(&self, name: &str) -> Option<Value<'_>> {
        self.claims().find(|(n, _)| n.eq_str(name)).map(|(_, v)| v)
    }

    /// A string claim, decoded.
    pub fn str_claim(&self, name: &str) -> Option<Cow<'_, str>> {
        self.claim(name)?.as_str().map(|s| s.to_str())
    }

    /// `exp`, `nbf` or another NumericDate claim, in seconds since the epoch.
    pub fn numeric_claim(&self, name: &str) -> Option<f64> {
        match self.claim(name)? {
            Value::Number(n) => n.as_f64(),
            _ => None,
        }
    }
}

/// Verifies the signature of `token` with `keys` and validates it against `validation` at time
/// `now` (seconds since the Unix epoch).
#[inline]
pub fn verify(
    token: impl AsRef<[u8]>,
    keys: &KeySet,
    validation: &Validation,
    now: i64,
) -> Result<Jwt, Error> {
    let prepared = prepare(token.as_ref(), keys, validation)?;
    let valid = prepared
        .jws
        .key()
        .verify(prepared.jws.signing_input(), prepared.jws.signature());
    prepared.finish(valid.is_ok(), now)
}

/// `token` checked up to its signature as [`verify`] checks it (the header against
/// `validation` too), for a signature check made elsewhere: see [`jws::Prepared`].
pub fn prepare<'a>(
    token: &'a [u8],
    keys: &'a KeySet,
    validation: &'a Validation,
) -> Result<Prepared<'a>, Error> {
    let jws = jws::prepare_with(token, keys, &validation.limits, |header| {
        check_header(header, validation)
    })?;
    Ok(Prepared { jws, validation })
}

/// A JWT checked up to its signature; [`Prepared::finish`] takes the signature's verdict and
/// validates the claims.
#[derive(Debug)]
pub struct Prepared<'a> {
    jws: jws::Prepared<'a>,
    validation: &'a Validation,
}

impl<'a> Prepared<'a> {
    /// The signature check still to make: algorithm, key, signing input and signature.
    pub fn jws(&self) -> &jws::Prepared<'a> {
        &self.jws
    }

    /// Finishes with the verdict of the signature check (see [`jws::Prepared::finish`]), then
    /// decodes the payload and validates the claims at `now`.
    pub fn finish(self, signature_valid: bool, now: i64) -> Result<Jwt, Error> {
        let (buf, header_len, alg) = self.jws.finish(signature_valid)?.into_parts();
        let text = String::from_utf8(buf).map_err(|_| Malformed::Utf8(Segment::Payload))?;
        let exp = validate_claims(&text[header_len..], self.validation, now)?;
        // Kept as long as the token is (cached): no room to spare. The buffer had room for the
        // signature too; when that room is more than a little, the text moves to an allocation
        // of its own size (an allocator may shrink a block in place and keep its size class).
        let text = if text.capacity() - text.len() > 16 {
            Box::from(text.as_str())
        } else {
            text.into_boxed_str()
        };
        Ok(Jwt {
            text,
            header_len: u32::try_from(header_len).map_err(|_| Error::TooLarge {
                len: header_len,
                limit: u32::MAX as usize,
            })?,
            alg,
            // A NumericDate is never NaN: it lies in 0..=MAX_NUMERIC_DATE.
            exp: exp.unwrap_or(f64::NAN),
        })
    }
}

/// The `iss` that `token` claims, read without verifying anything: for routing a token to the
/// issuer whose keys must verify it. Verification then requires that same `iss`, so what is read
/// here only chooses which keys are tried. The payload must be strict base64url and a strict JSON
/// object; `iss` must be a string.
pub fn peek_issuer(token: impl AsRef<[u8]>, limits: &Limits) -> Result<String, Error> {
    let parts = jws::Compact::split(token.as_ref(), limits)?;
    let payload = crate::b64::decode(parts.payload).ok_or(Malformed::Base64(Segment::Payload))?;
    let text = std::str::from_utf8(&payload).map_err(|_| Malformed::Utf8(Segment::Payload))?;
    let mut iss = None;
    json::read_object(text, limits.max_json_depth, |name, value| {
        if name.eq_str("iss") {
            iss = Some(value.as_str().map(|s| s.to_str().into_owned()));
        }
        Ok(())
    })
    .map_err(|e: JsonError| Malformed::Json(Segment::Payload, e))?;
    match iss {
        Some(Some(iss)) => Ok(iss),
        Some(None) => Err(Error::InvalidClaim("iss must be a string")),
        None => Err(Error::MissingClaim("iss".into())),
    }
}

/// The `typ` of RFC 9701 introspection responses: signed by an authorization server for a
/// resource server, never an access token, so [`verify`] refuses it whatever the policy.
pub const INTROSPECTION_RESPONSE: &str = "token-introspection+jwt";

fn check_header(header: &Header<'_>, validation: &Validation) -> Result<(), Error> {
    if header
        .cty
        .is_some_and(|cty| media_type_is(&cty.to_str(), "jwt"))
    {
        return Err(Error::NestedToken);
    }
    if header
        .typ
        .is_some_and(|typ| media_type_is(&typ.to_str(), INTROSPECTION_RESPONSE))
    {
        return Err(Error::IntrospectionResponse);
    }
    if let Some(expected) = &validation.typ {
        let typ = header.typ.ok_or(Error::InvalidType)?;
        if !media_type_is(&typ.to_str(), expected) {
            return Err(Error::InvalidType);
        }
    }
    Ok(())
}

/// RFC 7515 4.1.9: media type names compare without case, and `application/` may be left out.
pub fn media_type_is(value: &str, expected: &str) -> bool {
    fn short(s: &str) -> &str {
        match s.get(..12) {
            Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &s[12..],
            _ => s,
        }
    }
    short(value).eq_ignore_ascii_case(short(expected))
}

/// The registered claims that are checked, as read from the claims set.
#[derive(Default)]
struct Registered<'a> {
    exp: Option<f64>,
    nbf: Option<f64>,
    iat: Option<f64>,
    iss: Option<JsonStr<'a>>,
    aud: Option<Value<'a>>,
}

/// Error type of the claims walk.
enum ClaimsError {
    Json(JsonError),
    Token(Error),
}

impl From<JsonError> for ClaimsError {
    fn from(e: JsonError) -> Self {
        ClaimsError::Json(e)
    }
}

/// A NumericDate claim: a JSON number in `0..=MAX_NUMERIC_DATE` (fractions allowed).
fn numeric_date(
    value: Value<'_>,
    wrong_type: &'static str,
    out_of_range: &'static str,
) -> Result<f64, ClaimsError> {
    let Value::Number(n) = value else {
        return Err(ClaimsError::Token(Error::InvalidClaim(wrong_type)));
    };
    match n.as_f64() {
        Some(date) if (0.0..=MAX_NUMERIC_DATE as f64).contains(&date) => Ok(date),
        _ => Err(ClaimsError::Token(Error::InvalidClaim(out_of_range))),
    }
}

fn string_claim<'a>(value: Value<'a>, what: &'static str) -> Result<JsonStr<'a>, ClaimsError> {
    value
        .as_str()
        .ok_or(ClaimsError::Token(Error::InvalidClaim(what)))
}

/// Validates the claims set `text` at `now`; answers its `exp`.
fn validate_claims(text: &str, v: &Validation, now: i64) -> Result<Option<f64>, Error> {
    let mut reg = Registered::default();
    let walk = json::read_object(text, v.limits.max_json_depth, |name, value| {
        match name.to_str().as_bytes() {
            b"exp" => {
                reg.exp = Some(numeric_date(
                    value,
                    "exp must be a NumericDate",
                    "exp must lie between 1970 and the end of 9999",
                )?)
            }
            b"nbf" => {
                reg.nbf = Some(numeric_date(
                    value,
                    "nbf must be a NumericDate",
                    "nbf must lie between 1970 and the end of 9999",
                )?)
            }
            b"iat" => {
                reg.iat = Some(numeric_date(
                    value,
                    "iat must be a NumericDate",
                    "iat must lie between 1970 and the end of 9999",
                )?)
            }
            b"iss" => reg.iss = Some(string_claim(value, "iss must be a string")?),
            b"sub" => {
                string_claim(value, "sub must be a string")?;
            }
            b"jti" => {
                string_claim(value, "jti must be a string")?;
            }
            b"aud" => {
                match value {
                    Value::String(_) => {}
                    Value::Array(items) if items.iter().all(|i| i.as_str().is_some()) => {}
                    _ => {
                        return Err(ClaimsError::Token(Error::InvalidClaim(
                            "aud must be a string or an array of strings",
                        )))
                    }
                }
                reg.aud = Some(value);
            }
            _ => {}
        }
        Ok(())
    });
    let claims = walk.map_err(|e| match e {
        ClaimsError::Json(e) => Error::Malformed(Malformed::Json(Segment::Payload, e)),
        ClaimsError::Token(e) => e,
    })?;

    let now = now as f64;
    let leeway = v.leeway as f64;
    match reg.exp {
        Some(exp) if now >= exp + leeway => return Err(Error::Expired),
        None if v.require_exp => return Err(Error::MissingClaim("exp".into())),
        _ => {}
    }
    if reg.nbf.is_some_and(|nbf| now + leeway < nbf) {
        return Err(Error::NotYetValid);
    }
    if let Some(max) = v.max_lifetime {
        let exp = reg.exp.ok_or_else(|| Error::MissingClaim("exp".into()))?;
        let lifetime = match reg.iat {
            Some(iat) if now + leeway < iat => return Err(Error::NotYetValid),
            Some(iat) => exp - iat,
            // Without iat the token may have been issued up to the leeway from now.
            None => exp - now - leeway,
        };
        if lifetime > max as f64 {
            return Err(Error::LifetimeExceeded);
        }
    }
    if let Some(expected) = &v.issuer {
        let iss = reg.iss.ok_or_else(|| Error::MissingClaim("iss".into()))?;
        if !iss.eq_str(expected) {
            return Err(Error::InvalidIssuer);
        }
    }
    if !v.audiences.is_empty() {
        let accepted = |s: JsonStr<'_>| v.audiences.iter().any(|a| s.eq_str(a));
        let ok = match reg.aud.ok_or_else(|| Error::MissingClaim("aud".into()))? {
            Value::String(s) => accepted(s),
            Value::Array(items) => items.iter().filter_map(|i| i.as_str()).any(accepted),
            _ => false,
        };
        if !ok {
            return Err(Error::InvalidAudience);
        }
    }
    if let Some(missing) = v.required_claims.iter().find(|r| claims.get(r).is_none()) {
        return Err(Error::MissingClaim(missing.as_str().into()));
    }
    Ok(reg.exp)
}

#[cfg(test)]
mod tests {
    use super::media_type_is;

    #[test]
    fn media_types_compare_without_case_or_prefix() {
        assert!(media_type_is("at+jwt", "at+jwt"));
        assert!(media_type_is("application/at+JWT", "at+jwt"));
        assert!(media_type_is("AT+JWT", "application/at+jwt"));
        assert!(!media_type_is("jwt", "at+jwt"));
        assert!(!media_type_is("application/jwt+at", "at+jwt"));
        assert!(!media_type_is("x-application/at+jwt", "at+jwt"));
        assert!(media_type_is("JWT", "jwt"));
    }
}
