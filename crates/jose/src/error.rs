//! Why a token was refused. Each variant has a stable snake_case [`Error::code`]; the
//! [`Display`](fmt::Display) text is the detail for logs and forensics.

use std::fmt;

use crate::json::JsonError;
use crate::Algorithm;

/// A part of a compact JWS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Segment {
    Header,
    Payload,
    Signature,
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Segment::Header => "header",
            Segment::Payload => "payload",
            Segment::Signature => "signature",
        })
    }
}

/// How a token's structure is broken. Always the token's fault.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// Not exactly three dot-separated segments.
    Segments,
    /// A segment is not strict base64url (alphabet, no padding, no whitespace, zero unused bits).
    Base64(Segment),
    /// A decoded header or payload is not UTF-8.
    Utf8(Segment),
    /// A decoded header or claims set is not an acceptable JSON object.
    Json(Segment, JsonError),
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformed::Segments => f.write_str("a compact JWS has exactly three segments"),
            Malformed::Base64(s) => write!(f, "{s} is not strict unpadded base64url"),
            Malformed::Utf8(s) => write!(f, "{s} is not UTF-8"),
            Malformed::Json(s, e) => write!(f, "{s}: {e}"),
        }
    }
}

/// A verification failure. Everything here is the token's fault (or its issuer's); key set and
/// configuration problems are [`crate::KeySetError`].
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The token is longer than the configured limit; nothing was decoded.
    TooLarge {
        len: usize,
        limit: usize,
    },
    Malformed(Malformed),
    /// `alg` names no supported algorithm (`none` in any spelling included).
    UnsupportedAlgorithm,
    /// A header member is missing or has the wrong type or value.
    InvalidHeader(&'static str),
    /// `crit` lists an extension this verifier does not understand, or is itself invalid.
    UnsupportedCritical,
    /// `cty: JWT`: nested tokens are not accepted.
    NestedToken,
    /// Explicit typing was required and `typ` does not match.
    InvalidType,
    /// `typ: token-introspection+jwt`: an RFC 9701 introspection response, which is never an
    /// access token, whatever the policy.
    IntrospectionResponse,
    /// No key matches the `kid`, or no key is pinned to the token's algorithm.
    UnknownKey,
    /// No `kid` and several keys fit the algorithm.
    AmbiguousKey,
    /// The selected key is pinned to another algorithm than the token claims.
    KeyAlgorithmMismatch {
        key: Algorithm,
        token: Algorithm,
    },
    BadSignature,
    Expired,
    /// `nbf` (or, with a maximum lifetime, `iat`) lies in the future.
    NotYetValid,
    /// `exp - iat` (without `iat`: `exp - now`) exceeds the maximum lifetime.
    LifetimeExceeded,
    MissingClaim(Box<str>),
    /// A claim has the wrong JSON type.
    InvalidClaim(&'static str),
    InvalidIssuer,
    InvalidAudience,
}

impl Error {
    /// Every code [`Error::code`] returns.
    pub const CODES: [&'static str; 19] = [
        "too_large",
        "malformed",
        "unsupported_algorithm",
        "invalid_header",
        "unsupported_critical_header",
        "nested_token",
        "invalid_type",
        "introspection_response",
        "unknown_key",
        "ambiguous_key",
        "key_algorithm_mismatch",
        "bad_signature",
        "expired",
        "not_yet_valid",
        "lifetime_exceeded",
        "missing_claim",
        "invalid_claim",
        "invalid_issuer",
        "invalid_audience",
    ];

    /// A stable snake_case code for machines (CLI verdicts, metrics).
    pub fn code(&self) -> &'static str {
        match self {
            Error::TooLarge { .. } => "too_large",
            Error::Malformed(_) => "malformed",
            Error::UnsupportedAlgorithm => "unsupported_algorithm",
            Error::InvalidHeader(_) => "invalid_header",
            Error::UnsupportedCritical => "unsupported_critical_header",
            Error::NestedToken => "nested_token",
            Error::InvalidType => "invalid_type",
            Error::IntrospectionResponse => "introspection_response",
            Error::UnknownKey => "unknown_key",
            Error::AmbiguousKey => "ambiguous_key",
            Error::KeyAlgorithmMismatch { .. } => "key_algorithm_mismatch",
            Error::BadSignature => "bad_signature",
            Error::Expired => "expired",
            Error::NotYetValid => "not_yet_valid",
            Error::LifetimeExceeded => "lifetime_exceeded",
            Error::MissingClaim(_) => "missing_claim",
            Error::InvalidClaim(_) => "invalid_claim",
            Error::InvalidIssuer => "invalid_issuer",
            Error::InvalidAudience => "invalid_audience",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::TooLarge { len, limit } => {
                write!(f, "token is {len} bytes, over the {limit}-byte limit")
            }
            Error::Malformed(m) => write!(f, "malformed token: {m}"),
            Error::UnsupportedAlgorithm => f.write_str("alg is not a supported algorithm"),
            Error::InvalidHeader(what) => write!(f, "invalid header: {what}"),
            Error::UnsupportedCritical => {
                f.write_str("crit names an extension that is not understood")
            }
            Error::NestedToken => f.write_str("nested tokens (cty JWT) are not accepted"),
            Error::InvalidType => f.write_str("typ does not match the required type"),
            Error::IntrospectionResponse => f.write_str(
                "typ token-introspection+jwt: an introspection response is not an access token",
            ),
            Error::UnknownKey => f.write_str("no key in the key set matches the token"),
            Error::AmbiguousKey => {
                f.write_str("token has no kid and several keys fit its algorithm")
            }
            Error::KeyAlgorithmMismatch { key, token } => {
                write!(f, "key is pinned to {key}, token claims {token}")
            }
            Error::BadSignature => f.write_str("signature does not verify"),
            Error::Expired => f.write_str("token has expired (exp)"),
            Error::NotYetValid => f.write_str("token is not valid yet (nbf or iat)"),
            Error::LifetimeExceeded => {
                f.write_str("exp - iat (or exp - now, without iat) exceeds the maximum lifetime")
            }
            Error::MissingClaim(name) => write!(f, "required claim {name} is missing"),
            Error::InvalidClaim(what) => write!(f, "invalid claim: {what}"),
            Error::InvalidIssuer => f.write_str("iss does not match the expected issuer"),
            Error::InvalidAudience => f.write_str("aud does not contain an expected audience"),
        }
    }
}

impl std::error::Error for Error {}

impl From<Malformed> for Error {
    fn from(m: Malformed) -> Self {
        Error::Malformed(m)
    }
}
