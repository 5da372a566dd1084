//! What the daemon sends: the reply type, JSON and text bodies, and the one place where
//! refusals become HTTP responses ([`Refusal::reply`]).

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use crate::clients::AuthError;

pub type Reply = Response<Full<Bytes>>;

/// Why a request was refused, before any token verdict.
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
    Timeout,
    Internal,
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
            Refusal::Timeout => error(StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            Refusal::Internal => error(StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        }
    }
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
