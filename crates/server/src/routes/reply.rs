//! What the daemon sends: the reply type, JSON and text bodies, and the one place where
//! refusals become HTTP responses ([`Refusal::reply`]).

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use crate::clients::AuthError;

pub type Reply = Response<Full<Bytes>>;

/// Why a request was refused. Every status, header and body the daemon sends for a refusal is
/// decided in [`Refusal::reply`].
#[derive(Debug)]
pub enum Refusal {
    NotFound,
    Method(&'static str),
    /// The caller is not authenticated (`/introspect`, `/v1/verify`).
    Client(AuthError),
    BadRequest(&'static str),
    UnsupportedMediaType,
    TooLarge,
    NotAcceptable,
    Overloaded,
    Unavailable,
    /// The view of the shared store is older than `[store] max_lag_ms`: fail closed.
    StoreBehind,
    /// An authenticated client without the permission the endpoint needs.
    NotPermitted,
    Timeout,
    Internal,
    /// `/v1/authz`: the bearer token is missing, malformed, invalid or not enough (RFC 6750).
    Bearer(Challenge),
    /// `/token`: an RFC 6749 section 5.2 error; `basic` when the client authenticated with
    /// HTTP Basic (an `invalid_client` then carries the Basic challenge).
    /// `nonce` goes along as `DPoP-Nonce` (with `use_dpop_nonce`).
    OAuth {
        error: oauth::OAuthError,
        basic: bool,
        nonce: Option<String>,
    },
    /// `/v1/sign`: the claims break the caller's policy; 403 naming the rule.
    Policy(oauth::SignRefusal),
    /// `/v1/authz`: a DPoP-bound token refused (RFC 9449 section 7.1): an empty body and a
    /// `WWW-Authenticate: DPoP` challenge with the error and the proof algorithms accepted.
    /// `nonce` goes along as `DPoP-Nonce` (with `UseNonce`).
    Dpop {
        error: DpopError,
        algs: String,
        nonce: Option<String>,
    },
}

/// The header a server nonce goes in (RFC 9449 section 8.1).
pub const DPOP_NONCE: header::HeaderName = header::HeaderName::from_static("dpop-nonce");

/// The error of a DPoP challenge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)] // RFC 9449's error codes
pub enum DpopError {
    /// 400: no proof, two proofs, a malformed `Authorization: DPoP`.
    InvalidRequest,
    /// 401: the token is not valid, or not DPoP-bound.
    InvalidToken,
    /// 401: the proof fails a check of RFC 9449 section 4.3, or was used before.
    InvalidProof,
    /// 401: the proof carries no nonce this daemon gave out, or one that has lapsed (RFC 9449
    /// section 9); the answer carries a fresh one.
    UseNonce,
}

/// An RFC 6750 section 3 refusal of a bearer token: an empty body and a `WWW-Authenticate:
/// Bearer` challenge.
#[derive(Debug)]
pub enum Challenge {
    /// No bearer token: 401 with no error code (section 3.1).
    NoToken,
    /// A malformed Authorization header: 400 `invalid_request`.
    InvalidRequest,
    /// A token this daemon does not accept: 401 `invalid_token`.
    InvalidToken,
    /// A valid token that the route rules refuse: 403 `insufficient_scope`, with the scopes the
    /// route needs (space-separated), or without when no route matched.
    InsufficientScope(Option<String>),
}

impl Refusal {
    /// The one place where refusals become HTTP responses.
    pub fn reply(self) -> Reply {
        let error = |status: StatusCode, code: &str| {
            json(
                status,
                format!("{{\"error\":\"{code}\"}}"),
                Some("no-store"),
            )
        };
        match self {
            Refusal::NotFound => error(StatusCode::NOT_FOUND, "not_found"),
            Refusal::Method(allow) => {
                let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static(allow));
                r
            }
            Refusal::Client(AuthError::Busy) => Refusal::Overloaded.reply(),
            Refusal::Client(AuthError::Throttled(wait)) => {
                let mut r = error(StatusCode::TOO_MANY_REQUESTS, "too_many_requests");
                // Whole seconds, rounded up: never 0, which would invite a retry at once.
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
                r
            }
            Refusal::Client(_) => {
                // RFC 6749 section 5.2: invalid_client with a Basic challenge.
                let mut r = error(StatusCode::UNAUTHORIZED, "invalid_client");
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"tessera\""),
                );
                r
            }
            Refusal::BadRequest(code) => error(StatusCode::BAD_REQUEST, code),
            Refusal::UnsupportedMediaType => {
                error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Refusal::TooLarge => error(StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            Refusal::NotAcceptable => error(StatusCode::NOT_ACCEPTABLE, "not_acceptable"),
            Refusal::Overloaded | Refusal::Unavailable => {
                let code = if matches!(self, Refusal::Overloaded) {
                    "overloaded"
                } else {
                    "unavailable"
                };
                let mut r = error(StatusCode::SERVICE_UNAVAILABLE, code);
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                r
            }
            Refusal::StoreBehind => {
                let mut r = error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable");
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                r
            }
            // RFC 6749 section 5.2's code for a client not allowed what it asked.
            Refusal::NotPermitted => error(StatusCode::BAD_REQUEST, "unauthorized_client"),
            Refusal::Timeout => error(StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            Refusal::Internal => error(StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
            Refusal::OAuth {
                error,
                basic,
                nonce,
            } => {
                // Section 5.2: 400, except invalid_client, which may be 401 and must be when
                // the client used the Authorization header.
                let status = if error.code == oauth::ErrorCode::InvalidClient {
                    StatusCode::UNAUTHORIZED
                } else {
                    StatusCode::BAD_REQUEST
                };
                let mut r = json(status, error.to_json(), Some("no-store"));
                r.headers_mut()
                    .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
                if basic && status == StatusCode::UNAUTHORIZED {
                    r.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Basic realm=\"tessera\""),
                    );
                }
                if let Some(nonce) = nonce.and_then(|n| HeaderValue::from_str(&n).ok()) {
                    r.headers_mut().insert(DPOP_NONCE, nonce);
                }
                r
            }
            Refusal::Policy(refusal) => {
                let mut body = String::from("{\"error\":\"policy_refused\",\"rule\":\"");
                body.push_str(refusal.rule);
                body.push_str("\",\"error_description\":");
                jose::json::write_str(&mut body, &refusal.detail);
                body.push('}');
                json(StatusCode::FORBIDDEN, body, Some("no-store"))
            }
            Refusal::Bearer(challenge) => {
                let (status, value) = match challenge {
                    Challenge::NoToken => (
                        StatusCode::UNAUTHORIZED,
                        Some(HeaderValue::from_static("Bearer realm=\"tessera\"")),
                    ),
                    Challenge::InvalidRequest => (
                        StatusCode::BAD_REQUEST,
                        Some(HeaderValue::from_static(
                            "Bearer realm=\"tessera\", error=\"invalid_request\"",
                        )),
                    ),
                    Challenge::InvalidToken => (
                        StatusCode::UNAUTHORIZED,
                        Some(HeaderValue::from_static(
                            "Bearer realm=\"tessera\", error=\"invalid_token\"",
                        )),
                    ),
                    Challenge::InsufficientScope(None) => (
                        StatusCode::FORBIDDEN,
                        Some(HeaderValue::from_static(
                            "Bearer realm=\"tessera\", error=\"insufficient_scope\"",
                        )),
                    ),
                    // A scope that cannot be a header value leaves the challenge out.
                    Challenge::InsufficientScope(Some(scope)) => (
                        StatusCode::FORBIDDEN,
                        HeaderValue::from_str(&format!(
                            "Bearer realm=\"tessera\", error=\"insufficient_scope\", scope=\"{scope}\""
                        ))
                        .ok(),
                    ),
                };
                challenged(status, value)
            }
            Refusal::Dpop { error, algs, nonce } => {
                let (status, code) = match error {
                    DpopError::InvalidRequest => (StatusCode::BAD_REQUEST, "invalid_request"),
                    DpopError::InvalidToken => (StatusCode::UNAUTHORIZED, "invalid_token"),
                    DpopError::InvalidProof => (StatusCode::UNAUTHORIZED, "invalid_dpop_proof"),
                    DpopError::UseNonce => (StatusCode::UNAUTHORIZED, "use_dpop_nonce"),
                };
                let value =
                    HeaderValue::from_str(&format!("DPoP error=\"{code}\", algs=\"{algs}\"")).ok();
                let mut r = challenged(status, value);
                if let Some(nonce) = nonce.and_then(|n| HeaderValue::from_str(&n).ok()) {
                    r.headers_mut().insert(DPOP_NONCE, nonce);
                }
                r
            }
        }
    }
}

/// An empty answer with `status` and the `WWW-Authenticate` challenge `value`.
fn challenged(status: StatusCode, value: Option<HeaderValue>) -> Reply {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    if let Some(value) = value {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub fn json(status: StatusCode, body: impl Into<Bytes>, cache: Option<&'static str>) -> Reply {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(cache) = cache {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    }
    r
}

pub fn text(status: StatusCode, body: &'static str) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use hyper::body::Body as _;

    use super::*;

    #[test]
    fn bearer_challenges_are_empty_and_not_stored() {
        let realm = "Bearer realm=\"tessera\"";
        for (challenge, status, www) in [
            (Challenge::NoToken, 401, realm.to_string()),
            (
                Challenge::InvalidRequest,
                400,
                format!("{realm}, error=\"invalid_request\""),
            ),
            (
                Challenge::InvalidToken,
                401,
                format!("{realm}, error=\"invalid_token\""),
            ),
            (
                Challenge::InsufficientScope(None),
                403,
                format!("{realm}, error=\"insufficient_scope\""),
            ),
            (
                Challenge::InsufficientScope(Some("orders:read orders:write".into())),
                403,
                format!(
                    "{realm}, error=\"insufficient_scope\", scope=\"orders:read orders:write\""
                ),
            ),
        ] {
            let r = Refusal::Bearer(challenge).reply();
            assert_eq!(r.status().as_u16(), status, "{www}");
            assert_eq!(r.headers()[header::WWW_AUTHENTICATE], www.as_str());
            assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
            assert_eq!(r.headers().len(), 2, "{www}");
            assert_eq!(r.body().size_hint().exact(), Some(0));
        }
    }
}
