//! The endpoints. Each handler turns a request into a [`Reply`]; refusals are mapped to HTTP in
//! one place ([`Refusal::reply`]). Callers see vague verdicts (`active: false`,
//! `invalid_token`); logs and metrics get the precise reason, with tokens as fingerprints.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::OnceLock;

use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use jose::json::Value;

use crate::app::{App, Phase};
use crate::clients::AuthError;
use crate::config::OriginalFrom;
use crate::metrics::Endpoint;

pub type Reply = Response<Full<Bytes>>;

/// Which endpoint a path belongs to.
pub fn endpoint(path: &str) -> Endpoint {
    match path {
        "/introspect" => Endpoint::Introspect,
        "/v1/verify" => Endpoint::Verify,
        "/v1/authz" => Endpoint::Authz,
        p if p.starts_with("/v1/authz/") => Endpoint::Authz,
        "/.well-known/jwks.json" => Endpoint::Jwks,
        "/.well-known/oauth-authorization-server" => Endpoint::Discovery,
        "/metrics" => Endpoint::Metrics,
        "/healthz" => Endpoint::Healthz,
        "/readyz" => Endpoint::Readyz,
        _ => Endpoint::Other,
    }
}

/// Answers `request`, which came from `peer`.
pub async fn handle(
    app: &App,
    endpoint: Endpoint,
    request: Request<Incoming>,
    peer: IpAddr,
) -> Reply {
    let result = match endpoint {
        Endpoint::Introspect => introspect(app, request, peer).await,
        Endpoint::Verify => verify(app, request, peer).await,
        Endpoint::Authz => Ok(authz(app, &request).await),
        Endpoint::Jwks => jwks(app, &request),
        Endpoint::Discovery => only_get(&request).map(|()| {
            json(
                StatusCode::OK,
                app.discovery.clone(),
                Some("public, max-age=300"),
            )
        }),
        Endpoint::Metrics => only_get(&request).map(|()| metrics(app)),
        Endpoint::Healthz => only_get(&request).map(|()| text(StatusCode::OK, "ok\n")),
        Endpoint::Readyz => only_get(&request).map(|()| readyz(app)),
        Endpoint::Other => Err(Refusal::NotFound),
    };
    result.unwrap_or_else(Refusal::reply)
}

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

fn json(status: StatusCode, body: impl Into<Bytes>, cache: Option<&'static str>) -> Reply {
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

fn text(status: StatusCode, body: &'static str) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn only_get(request: &Request<Incoming>) -> Result<(), Refusal> {
    match *request.method() {
        Method::GET | Method::HEAD => Ok(()),
        _ => Err(Refusal::Method("GET, HEAD")),
    }
}

/// The request body, at most `max_body_bytes` (413 beyond, by Content-Length or while reading).
async fn body(app: &App, request: Request<Incoming>) -> Result<Bytes, Refusal> {
    let limit = app.limits.max_body_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(Refusal::TooLarge);
    }
    // The body usually came with the header: only a body still on its way arms the timer
    // that bounds how long a client may take to send it.
    let mut incoming = request.into_body();
    let mut reading = std::pin::pin!(read_body(&mut incoming, limit));
    let first = std::future::poll_fn(|cx| {
        std::task::Poll::Ready(std::future::Future::poll(reading.as_mut(), cx))
    })
    .await;
    match first {
        std::task::Poll::Ready(result) => result,
        std::task::Poll::Pending => tokio::time::timeout(app.limits.body_read_timeout, reading)
            .await
            .map_err(|_| Refusal::Timeout)?,
    }
}

/// The whole body, at most `limit` bytes: a body that came in one piece is taken as it came
/// (no copy), pieces are joined. Trailers are ignored.
async fn read_body(body: &mut Incoming, limit: usize) -> Result<Bytes, Refusal> {
    let mut first: Option<Bytes> = None;
    let mut joined: Vec<u8> = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| Refusal::BadRequest("invalid_request"))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total = total.saturating_add(data.len());
        if total > limit {
            return Err(Refusal::TooLarge);
        }
        match first.take() {
            None if joined.is_empty() => first = Some(data),
            earlier => {
                if let Some(earlier) = earlier {
                    joined.extend_from_slice(&earlier);
                }
                joined.extend_from_slice(&data);
            }
        }
    }
    Ok(first.unwrap_or_else(|| Bytes::from(joined)))
}

/// Whether the request's media type (parameters aside) is `expected`, in any case.
fn media_type_is(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(expected))
}

async fn caller(
    app: &App,
    request: &Request<Incoming>,
    peer: IpAddr,
) -> Result<std::sync::Arc<str>, Refusal> {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    app.clients
        .authenticate(authorization, peer)
        .await
        .map_err(|e| {
            if e != AuthError::Busy {
                app.metrics
                    .client_auth_failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                match e {
                    // A flood is answered cheaply: not a log line each.
                    AuthError::Throttled(_) => {
                        tracing::debug!(%peer, "caller throttled after failed attempts")
                    }
                    _ => tracing::info!(reason = ?e, %peer, "caller refused"),
                }
            }
            Refusal::Client(e)
        })
}

/// A short SHA-256 fingerprint of a token, for logs.
pub fn fingerprint(token: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token);
    d.as_ref()[..6].iter().map(|b| format!("{b:02x}")).collect()
}

fn log_refusal(token: &[u8], code: &str) {
    if tracing::enabled!(tracing::Level::DEBUG) {
        tracing::debug!(token = %fingerprint(token), reason = code, "token refused");
    }
}

/// The engine's verdict on one token: `Ok(Some(jwt))`, `Ok(None)` when invalid (logged), or a
/// refusal of the whole request.
fn verdict(
    token: &[u8],
    result: Result<engine::Verified, engine::EngineError>,
) -> Result<Result<engine::Verified, &'static str>, Refusal> {
    use engine::EngineError;
    match result {
        Ok(jwt) => Ok(Ok(jwt)),
        Err(EngineError::Invalid(code)) => {
            log_refusal(token, code);
            Ok(Err(code))
        }
        Err(EngineError::Overloaded) => Err(Refusal::Overloaded),
        Err(EngineError::Shutdown) => Err(Refusal::Unavailable),
        Err(e) => {
            tracing::error!(token = %fingerprint(token), cause = %e, "verification failed");
            Ok(Err("internal_error"))
        }
    }
}

// ---- POST /introspect (RFC 7662, RFC 9701) ----

const INTROSPECTION_JWT: &str = "application/token-introspection+jwt";
/// The claims RFC 7662 section 2.2 names that an active answer carries.
const INTROSPECTED: [&str; 9] = [
    "scope",
    "client_id",
    "sub",
    "aud",
    "iss",
    "exp",
    "iat",
    "nbf",
    "jti",
];

async fn introspect(app: &App, request: Request<Incoming>, peer: IpAddr) -> Result<Reply, Refusal> {
    if request.method() != Method::POST {
        return Err(Refusal::Method("POST"));
    }
    let client = caller(app, &request, peer).await?;
    let wants_jwt = request
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|m| {
            m.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case(INTROSPECTION_JWT)
        });
    if wants_jwt && app.signer.is_none() {
        return Err(Refusal::NotAcceptable);
    }
    if !media_type_is(request.headers(), "application/x-www-form-urlencoded") {
        return Err(Refusal::UnsupportedMediaType);
    }
    let body = body(app, request).await?;
    let params = crate::form::parse(&body).map_err(|_| Refusal::BadRequest("invalid_request"))?;
    let token = params
        .iter()
        .find(|(name, _)| name == "token")
        .map(|(_, value)| value.as_ref())
        .ok_or(Refusal::BadRequest("invalid_request"))?;
    let now = crate::unix_now();
    let result = app
        .engine
        .verify_routed(token.as_bytes(), &app.issuers, now)
        .await;
    let answer = match verdict(token.as_bytes(), result)? {
        Ok(jwt) => {
            let answer = Answers::with(&jwt, |answers| {
                answers
                    .introspection
                    .get_or_init(|| active_answer(&jwt).map_or(INACTIVE, Bytes::from))
                    .clone()
            });
            if answer == INACTIVE {
                log_refusal(token.as_bytes(), "invalid_scope");
            }
            answer
        }
        Err(_) => INACTIVE,
    };
    if !wants_jwt {
        return Ok(json(StatusCode::OK, answer, Some("no-store")));
    }
    // Made from a String: always UTF-8, so never lossy.
    let answer = String::from_utf8_lossy(&answer);
    // RFC 9701: the answer inside a JWT signed by this daemon's key, its `iss` the RFC 8414
    // `issuer`.
    let mut claims = String::from("{\"iss\":");
    jose::json::write_str(&mut claims, &app.public_url);
    claims.push_str(",\"aud\":");
    jose::json::write_str(&mut claims, &client);
    claims.push_str(&format!(
        ",\"iat\":{now},\"token_introspection\":{answer}}}"
    ));
    let signer = app.signer.clone().ok_or(Refusal::NotAcceptable)?;
    let signed = tokio::task::spawn_blocking(move || {
        signer.sign(&claims, jose::jwt::INTROSPECTION_RESPONSE)
    })
    .await
    .map_err(|_| Refusal::Internal)?;
    match signed {
        Ok(jwt) => {
            app.metrics
                .hsm_signatures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut r = Response::new(Full::new(Bytes::from(jwt)));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(INTROSPECTION_JWT),
            );
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            Ok(r)
        }
        Err(e) => {
            app.metrics
                .hsm_errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::error!(cause = %e, "introspection response not signed");
            Err(Refusal::Unavailable)
        }
    }
}

const INACTIVE: Bytes = Bytes::from_static(b"{\"active\":false}");

/// `{"active":true, ...}` with the RFC 7662 members the token has, in one pass over the claims;
/// `None` when its scopes are not scope-tokens (`Identity::scopes`): a resource server that
/// splits `scope` on whitespace would read other scopes than the issuer granted.
fn active_answer(jwt: &jose::Jwt) -> Option<String> {
    Identity::of(jwt).scopes()?;
    let mut out = String::with_capacity(64 + jwt.claims_json().len());
    out.push_str("{\"active\":true");
    let mut client_id = false;
    let mut azp = None;
    for (name, value) in jwt.claims() {
        if name.eq_str("azp") {
            azp = Some(value);
            continue;
        }
        // Compared after unescaping; written under the canonical name.
        let Some(&name) = INTROSPECTED.iter().find(|&&known| name.eq_str(known)) else {
            continue;
        };
        client_id |= name == "client_id";
        push_member(&mut out, name, value);
    }
    // `azp` is the OpenID Connect name for the client.
    if let (false, Some(azp)) = (client_id, azp) {
        push_member(&mut out, "client_id", azp);
    }
    out.push_str(",\"token_type\":\"Bearer\"}");
    Some(out)
}

fn push_member(out: &mut String, name: &str, value: Value<'_>) {
    out.push_str(",\"");
    out.push_str(name);
    out.push_str("\":");
    match value {
        // The raw text between the quotes, escapes kept: valid inside quotes.
        Value::String(s) => {
            out.push('"');
            out.push_str(s.raw());
            out.push('"');
        }
        other => out.push_str(&jose::json::minify(other.as_json())),
    }
}

// ---- POST /v1/verify ----

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyRequest {
    tokens: Vec<String>,
    audience: Option<String>,
}

async fn verify(app: &App, request: Request<Incoming>, peer: IpAddr) -> Result<Reply, Refusal> {
    if request.method() != Method::POST {
        return Err(Refusal::Method("POST"));
    }
    caller(app, &request, peer).await?;
    if !media_type_is(request.headers(), "application/json") {
        return Err(Refusal::UnsupportedMediaType);
    }
    let body = body(app, request).await?;
    let parsed: VerifyRequest =
        serde_json::from_slice(&body).map_err(|_| Refusal::BadRequest("invalid_request"))?;
    if parsed.tokens.len() > app.limits.batch_max_tokens {
        return Err(Refusal::TooLarge);
    }
    let tokens: Vec<&[u8]> = parsed.tokens.iter().map(|t| t.as_bytes()).collect();
    let results = app
        .engine
        .verify_routed_batch(&tokens, &app.issuers, crate::unix_now())
        .await;
    let mut out = String::with_capacity(64 + 256 * tokens.len());
    out.push_str("{\"results\":[");
    for (i, (token, result)) in tokens.iter().zip(results).enumerate() {
        if i > 0 {
            out.push(',');
        }
        let verdict = verdict(token, result)?.and_then(|jwt| match &parsed.audience {
            Some(aud) if !has_audience(&jwt, aud) => {
                log_refusal(token, "invalid_audience");
                Err("invalid_audience")
            }
            _ => Ok(jwt),
        });
        match verdict {
            Ok(jwt) => {
                out.push_str("{\"active\":true,\"claims\":");
                out.push_str(jwt.claims_json());
                out.push('}');
            }
            Err(code) => out.push_str(&format!("{{\"active\":false,\"error\":\"{code}\"}}")),
        }
    }
    out.push_str("]}");
    Ok(json(StatusCode::OK, out, Some("no-store")))
}

fn has_audience(jwt: &jose::Jwt, audience: &str) -> bool {
    match jwt.claim("aud") {
        Some(Value::String(s)) => s.eq_str(audience),
        Some(Value::Array(items)) => items
            .iter()
            .any(|v| v.as_str().is_some_and(|s| s.eq_str(audience))),
        _ => false,
    }
}

/// What the daemon answers for one verified token, made on the token's first use and kept with
/// it in the engine's cache (`engine::Token::rendered`): a cached token costs no rendering.
#[derive(Default)]
struct Answers {
    /// `/introspect`'s JSON answer.
    introspection: OnceLock<Bytes>,
    /// `/v1/authz`'s identity headers.
    authz: OnceLock<AuthzAnswer>,
}

impl Answers {
    /// Calls `f` with the answers kept with `token`.
    fn with<R>(token: &engine::Token, f: impl FnOnce(&Answers) -> R) -> R {
        match token.rendered(|_| Answers::default()) {
            Some(answers) => f(answers),
            // The slot holds something else (nothing else in the daemon puts anything there):
            // made afresh.
            None => f(&Answers::default()),
        }
    }
}

/// The identity headers of `/v1/authz`, values only (the names are configured), and the scopes
/// its route rules check: `None` when the token's scopes are not scope-tokens
/// ([`Identity::scopes`]), which makes the token invalid for forward-auth.
struct AuthzAnswer {
    scopes: Option<Vec<String>>,
    subject: Option<HeaderValue>,
    scope: Option<HeaderValue>,
    client_id: Option<HeaderValue>,
    issuer: Option<HeaderValue>,
    claims: Option<HeaderValue>,
}

impl AuthzAnswer {
    fn of(jwt: &jose::Jwt) -> Self {
        // A claim that cannot be a header value (control characters) is left out.
        let value = |value: Option<Cow<'_, str>>| match value? {
            Cow::Owned(v) => HeaderValue::from_maybe_shared(Bytes::from(v)).ok(),
            Cow::Borrowed(v) => HeaderValue::from_str(v).ok(),
        };
        let identity = Identity::of(jwt);
        let scopes: Option<Vec<String>> = identity
            .scopes()
            .map(|scopes| scopes.into_iter().map(Cow::into_owned).collect());
        AuthzAnswer {
            subject: value(Identity::text(identity.sub)),
            scope: value(
                scopes
                    .as_ref()
                    .filter(|scopes| !scopes.is_empty())
                    .map(|scopes| Cow::Owned(scopes.join(" "))),
            ),
            client_id: value(
                Identity::text(identity.client_id).or_else(|| Identity::text(identity.azp)),
            ),
            issuer: value(Identity::text(identity.iss)),
            // The claims as the issuer wrote them (whitespace between tokens, if any, is valid
            // JSON).
            claims: value(Some(Cow::Owned(
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(jwt.claims_json()),
            ))),
            scopes,
        }
    }
}

/// The claims forward-auth answers with, read in one pass.
#[derive(Default)]
struct Identity<'a> {
    sub: Option<Value<'a>>,
    iss: Option<Value<'a>>,
    client_id: Option<Value<'a>>,
    azp: Option<Value<'a>>,
    scope: Option<Value<'a>>,
    scp: Option<Value<'a>>,
}

impl<'a> Identity<'a> {
    fn of(jwt: &'a jose::Jwt) -> Self {
        let mut id = Identity::default();
        for (name, value) in jwt.claims() {
            // Compared after unescaping (`eq_str` compares the raw text when there is nothing
            // to unescape).
            let known = ["sub", "iss", "client_id", "azp", "scope", "scp"]
                .into_iter()
                .find(|known| name.eq_str(known));
            let slot = match known {
                Some("sub") => &mut id.sub,
                Some("iss") => &mut id.iss,
                Some("client_id") => &mut id.client_id,
                Some("azp") => &mut id.azp,
                Some("scope") => &mut id.scope,
                Some(_) => &mut id.scp,
                None => continue,
            };
            *slot = Some(value);
        }
        id
    }

    fn text(value: Option<Value<'a>>) -> Option<Cow<'a, str>> {
        value?.as_str().map(|s| s.to_str())
    }

    /// `scope` (RFC 6749 scope-tokens separated by single spaces, as RFC 8693 and RFC 9068 use
    /// it) or else `scp` (an array of scope-tokens, or a string like `scope`, as some issuers
    /// write it). `None` when either claim, read as scopes, holds anything else (a tab, a
    /// newline, a quote, an empty item): a backend that splits on whitespace would read other
    /// scopes than the route rules saw.
    fn scopes(&self) -> Option<Vec<Cow<'a, str>>> {
        // An empty string names no scope.
        let words = |s: Cow<'a, str>| -> Option<Vec<Cow<'a, str>>> {
            let words: Vec<Cow<'a, str>> = match s {
                Cow::Borrowed("") => Vec::new(),
                Cow::Borrowed(s) => s.split(' ').map(Cow::Borrowed).collect(),
                Cow::Owned(s) if s.is_empty() => Vec::new(),
                Cow::Owned(s) => s.split(' ').map(|w| Cow::Owned(w.to_string())).collect(),
            };
            words.iter().all(|w| is_scope_token(w)).then_some(words)
        };
        let scp = match self.scp {
            Some(Value::Array(items)) => {
                let items = items.iter().map(|v| v.as_str().map(|s| s.to_str()));
                Some(
                    items
                        .map(|item| item.filter(|s| is_scope_token(s)))
                        .collect::<Option<Vec<_>>>()?,
                )
            }
            Some(Value::String(s)) => Some(words(s.to_str())?),
            _ => None,
        };
        match Identity::text(self.scope) {
            Some(scope) => words(scope),
            None => Some(scp.unwrap_or_default()),
        }
    }
}

/// An RFC 6749 section 3.3 scope-token: one or more of `%x21 / %x23-5B / %x5D-7E` (visible
/// ASCII but `"` and `\`).
fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E))
}

// ---- /v1/authz (forward-auth) ----

/// The original request a gateway asks about: method and normalised path. Method and URI come
/// together from one header family, `X-Forwarded-*` (Traefik, Caddy) or `X-Original-*` (nginx),
/// or from the request itself with `/v1/authz` stripped (Envoy). When both families are present
/// they must agree: a client may have sent one of them through a gateway that sets the other.
/// Half a family (a method without a URI, or the reverse) is refused.
fn original(
    request: &Request<Incoming>,
    from: OriginalFrom,
) -> Result<(&str, Cow<'_, str>), Refusal> {
    // One pass over the request's headers (a handful) rather than four hashed lookups. A header
    // given twice may be one from the client and one from the gateway: refused.
    let mut found: [Option<&HeaderValue>; 4] = [None; 4];
    for (name, value) in request.headers() {
        let slot = match name.as_str() {
            "x-forwarded-method" => 0,
            "x-forwarded-uri" => 1,
            "x-original-method" => 2,
            "x-original-uri" => 3,
            _ => continue,
        };
        if found[slot].replace(value).is_some() {
            return Err(Refusal::BadRequest("repeated_forwarded_header"));
        }
    }
    let mut text = [None; 4];
    for (text, value) in text.iter_mut().zip(found) {
        *text = value
            .map(HeaderValue::to_str)
            .transpose()
            .map_err(|_| Refusal::BadRequest("invalid_request"))?;
    }
    let forwarded = (text[0], text[1]);
    let original = (text[2], text[3]);
    let present = |f: &(Option<&str>, Option<&str>)| f.0.is_some() || f.1.is_some();
    let family = match from {
        // Only the configured source counts; the others are whatever the client sent.
        OriginalFrom::XForwarded => Some(forwarded),
        OriginalFrom::XOriginal => Some(original),
        OriginalFrom::Request => None,
        OriginalFrom::Any => match (present(&forwarded), present(&original)) {
            (true, true) if forwarded != original => {
                return Err(Refusal::BadRequest("conflicting_forwarded_headers"))
            }
            (true, _) => Some(forwarded),
            (false, true) => Some(original),
            (false, false) => None,
        },
    };
    if let Some((None, _) | (_, None)) = family {
        // Gateways set both. Half a family did not come whole from one: completing it from the
        // request itself would judge nginx's sub-request method (always GET) for a DELETE.
        return Err(Refusal::BadRequest("missing_forwarded_headers"));
    }
    let (method, uri) = family.unwrap_or((None, None));
    let method = method.unwrap_or(request.method().as_str());
    let path = match uri {
        Some(uri) => uri,
        None => {
            // Envoy ext_authz (HTTP) appends the original path to the configured prefix.
            let path = request.uri().path();
            match path.strip_prefix("/v1/authz") {
                Some("") => "/",
                Some(rest) => rest,
                None => path,
            }
        }
    };
    let path = crate::path::normalize_path(path).ok_or(Refusal::BadRequest("invalid_path"))?;
    Ok((method, path))
}

/// The bearer token: `Ok(None)` when the request carries none (no header, another scheme),
/// `Err` when it carries a malformed one (RFC 6750 section 3.1: `invalid_request`).
fn bearer(request: &Request<Incoming>) -> Result<Option<&str>, ()> {
    let Some(value) = request.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| ())?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    match token.trim() {
        "" => Err(()),
        token => Ok(Some(token)),
    }
}

fn challenge(status: StatusCode, value: String) -> Reply {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(&value) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// RFC 6750 section 3.1: the token is not one this daemon accepts.
fn invalid_token() -> Reply {
    challenge(
        StatusCode::UNAUTHORIZED,
        "Bearer realm=\"tessera\", error=\"invalid_token\"".into(),
    )
}

async fn authz(app: &App, request: &Request<Incoming>) -> Reply {
    let (method, path) = match original(request, app.authz.config.original_from) {
        Ok(original) => original,
        Err(refusal) => return refusal.reply(),
    };
    let token = match bearer(request) {
        Ok(Some(token)) => token,
        // RFC 6750 section 3.1: no error code when no credentials were presented...
        Ok(None) => return challenge(StatusCode::UNAUTHORIZED, "Bearer realm=\"tessera\"".into()),
        // ...and 400 for a malformed request.
        Err(()) => {
            return challenge(
                StatusCode::BAD_REQUEST,
                "Bearer realm=\"tessera\", error=\"invalid_request\"".into(),
            )
        }
    };
    let result = app
        .engine
        .verify_routed(token.as_bytes(), &app.issuers, crate::unix_now())
        .await;
    let jwt = match verdict(token.as_bytes(), result) {
        Ok(Ok(jwt)) => jwt,
        Ok(Err(_)) => return invalid_token(),
        Err(refusal) => return refusal.reply(),
    };
    Answers::with(&jwt, |answers| {
        let answer = answers.authz.get_or_init(|| AuthzAnswer::of(&jwt));
        authorize(app, method, &path, token, &jwt, answer)
    })
}

/// The route rules applied to a verified token, and the identity headers when they let it pass.
fn authorize(
    app: &App,
    method: &str,
    path: &str,
    token: &str,
    jwt: &jose::Jwt,
    answer: &AuthzAnswer,
) -> Reply {
    // Scopes that a backend could read otherwise than the rules do: no rule may see them and
    // no header may carry them, whatever the route.
    let Some(held) = &answer.scopes else {
        log_refusal(token.as_bytes(), "invalid_scope");
        return invalid_token();
    };
    let rules = &app.authz.config;
    let route = rules
        .routes
        .iter()
        .filter(|r| rules.path_case.has_prefix(path, &r.prefix))
        .filter(|r| {
            r.methods.is_empty() || r.methods.iter().any(|m| m.eq_ignore_ascii_case(method))
        })
        .max_by_key(|r| r.prefix.len());
    match route {
        None if rules.deny_unmatched => {
            log_refusal(token.as_bytes(), "no_route");
            return challenge(
                StatusCode::FORBIDDEN,
                "Bearer realm=\"tessera\", error=\"insufficient_scope\"".into(),
            );
        }
        None => {}
        Some(route) => {
            if let Some(aud) = &route.audience {
                if !has_audience(jwt, aud) {
                    log_refusal(token.as_bytes(), "invalid_audience");
                    return invalid_token();
                }
            }
            if !route
                .scopes
                .iter()
                .all(|need| held.iter().any(|h| h == need))
            {
                log_refusal(token.as_bytes(), "insufficient_scope");
                return challenge(
                    StatusCode::FORBIDDEN,
                    format!(
                        "Bearer realm=\"tessera\", error=\"insufficient_scope\", scope=\"{}\"",
                        route.scopes.join(" ")
                    ),
                );
            }
        }
    }
    let mut r = Response::new(Full::new(Bytes::new()));
    // Room for the identity headers, Cache-Control and what hyper adds (Content-Length, Date):
    // no growing on the way.
    *r.headers_mut() = HeaderMap::with_capacity(10);
    let h = r.headers_mut();
    let a = &app.authz;
    for (name, value) in [
        (&a.subject, &answer.subject),
        (&a.scope, &answer.scope),
        (&a.client_id, &answer.client_id),
        (&a.issuer, &answer.issuer),
        (&a.claims, &answer.claims),
    ] {
        if let Some(value) = value {
            h.insert(name.clone(), value.clone());
        }
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

// ---- keys, metadata, health ----

fn jwks(app: &App, request: &Request<Incoming>) -> Result<Reply, Refusal> {
    only_get(request)?;
    let signer = app.signer.as_ref().ok_or(Refusal::NotFound)?;
    let mut r = Response::new(Full::new(Bytes::from(signer.jwks().to_string())));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/jwk-set+json"),
    );
    // Shorter than the publish delay, so that verifiers see a pending key before it signs.
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    Ok(r)
}

/// Ready while serving and at least one issuer has keys; the body says how each issuer stands
/// (`keys`, `stale` with `failing_since`, or `no_keys`), so that one issuer without keys is seen
/// without taking the daemon out of its load balancer.
fn readyz(app: &App) -> Reply {
    let (status, word) = match app.phase() {
        Phase::Ready if app.has_keys() => (StatusCode::OK, "ready"),
        Phase::Ready => (StatusCode::SERVICE_UNAVAILABLE, "no_keys"),
        Phase::Starting => (StatusCode::SERVICE_UNAVAILABLE, "starting"),
        Phase::Draining => (StatusCode::SERVICE_UNAVAILABLE, "draining"),
    };
    let now = crate::unix_now();
    let mut out = format!("{{\"status\":\"{word}\",\"issuers\":[");
    for (i, state) in app.issuers.states().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"issuer\":");
        jose::json::write_str(&mut out, state.issuer);
        out.push_str(&format!(
            ",\"state\":\"{}\",\"keys\":{}",
            state.status(),
            state.keys
        ));
        if let Some(failing) = state.failing_for {
            let since = now.saturating_sub(failing.as_secs() as i64);
            out.push_str(",\"failing_since\":");
            jose::json::write_str(&mut out, &jose::date::rfc3339(since));
        }
        out.push('}');
    }
    out.push_str("]}");
    json(status, out, Some("no-store"))
}

/// A Prometheus label value, quoted: backslash, double quote and line feed escaped.
fn prometheus_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn metrics(app: &App) -> Reply {
    use crate::metrics::family;
    use std::fmt::Write as _;
    let body = app.metrics.render(|out| {
        family(
            out,
            "tessera_client_secret_hashes_total",
            "counter",
            "Callers' secrets hashed (PBKDF2 runs) to check them.",
        );
        let _ = writeln!(
            out,
            "tessera_client_secret_hashes_total {}",
            app.clients.hashes()
        );
        let s = app.engine.stats();
        family(
            out,
            "tessera_verifications_total",
            "counter",
            "Verdicts by outcome, algorithm (valid) and reason (invalid).",
        );
        for (alg, n) in s.valid_by_alg.iter().filter(|(_, n)| *n > 0) {
            let _ = writeln!(
                out,
                "tessera_verifications_total{{outcome=\"valid\",alg=\"{alg}\"}} {n}"
            );
        }
        for (code, n) in &s.invalid_by_code {
            let _ = writeln!(
                out,
                "tessera_verifications_total{{outcome=\"invalid\",reason=\"{code}\"}} {n}"
            );
        }
        family(
            out,
            "tessera_engine_overloaded_total",
            "counter",
            "Verifications refused because every queue was full.",
        );
        let _ = writeln!(out, "tessera_engine_overloaded_total {}", s.overloaded);
        family(
            out,
            "tessera_engine_in_flight",
            "gauge",
            "Verifications admitted and not yet answered.",
        );
        let _ = writeln!(out, "tessera_engine_in_flight {}", s.in_flight);
        family(
            out,
            "tessera_engine_batches_total",
            "counter",
            "Batches the workers took.",
        );
        let _ = writeln!(out, "tessera_engine_batches_total {}", s.batches);
        family(
            out,
            "tessera_engine_batched_jobs_total",
            "counter",
            "Verifications taken in those batches.",
        );
        let _ = writeln!(out, "tessera_engine_batched_jobs_total {}", s.batched_jobs);
        family(
            out,
            "tessera_cache_hits_total",
            "counter",
            "Verdicts answered from the verified-token cache.",
        );
        let _ = writeln!(out, "tessera_cache_hits_total {}", s.cache_hits);
        let verdicts = s.valid + s.invalid;
        family(
            out,
            "tessera_cache_hit_ratio",
            "gauge",
            "Cache hits over all verdicts since start.",
        );
        let ratio = if verdicts == 0 {
            0.0
        } else {
            s.cache_hits as f64 / verdicts as f64
        };
        let _ = writeln!(out, "tessera_cache_hit_ratio {ratio}");
        let c = app.engine.cache().stats();
        family(
            out,
            "tessera_cache_entries",
            "gauge",
            "Entries in the verified-token cache.",
        );
        let _ = writeln!(out, "tessera_cache_entries{{kind=\"valid\"}} {}", c.entries);
        let _ = writeln!(
            out,
            "tessera_cache_entries{{kind=\"invalid\"}} {}",
            c.negative
        );
        family(
            out,
            "tessera_keyset_fetches_total",
            "counter",
            "Remote JWKS fetches by issuer and result.",
        );
        for (issuer, remote) in app.issuers.remote_sets() {
            let label = prometheus_label(issuer);
            let (fetches, failures) = (remote.fetches(), remote.failures());
            let _ = writeln!(
                out,
                "tessera_keyset_fetches_total{{issuer={label},result=\"ok\"}} {}",
                fetches - failures.min(fetches)
            );
            let _ = writeln!(
                out,
                "tessera_keyset_fetches_total{{issuer={label},result=\"error\"}} {failures}"
            );
        }
        family(
            out,
            "tessera_keyset_skipped_keys",
            "gauge",
            "Keys of an issuer's current published set left out as unusable (see the log).",
        );
        for (issuer, remote) in app.issuers.remote_sets() {
            let label = prometheus_label(issuer);
            let skipped = remote.skipped().len();
            let _ = writeln!(
                out,
                "tessera_keyset_skipped_keys{{issuer={label}}} {skipped}"
            );
        }
        family(
            out,
            "tessera_keyset_expirations_total",
            "counter",
            "Times an issuer's keys were dropped after failing refreshes for max_stale_s.",
        );
        for (issuer, remote) in app.issuers.remote_sets() {
            let label = prometheus_label(issuer);
            let n = remote.expirations();
            let _ = writeln!(
                out,
                "tessera_keyset_expirations_total{{issuer={label}}} {n}"
            );
        }
        family(
            out,
            "tessera_issuer_keys",
            "gauge",
            "Keys in force per issuer, with its state (keys, stale, no_keys).",
        );
        for state in app.issuers.states() {
            let label = prometheus_label(state.issuer);
            let _ = writeln!(
                out,
                "tessera_issuer_keys{{issuer={label},state=\"{}\"}} {}",
                state.status(),
                state.keys
            );
        }
    });
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}
