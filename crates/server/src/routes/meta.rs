//! Keys, metadata and health: `/.well-known/jwks.json`, the RFC 8414 discovery document,
//! `/healthz`, `/readyz` and `/metrics`.

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};

use crate::app::{App, Phase};

use super::reply::{json, text, Refusal, Reply};
use super::request::only_get;

/// The HSM signer's public keys (404 without a signer).
pub fn jwks(app: &App, request: &Request<Incoming>) -> Result<Reply, Refusal> {
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

/// The RFC 8414 metadata document.
pub fn discovery(app: &App, request: &Request<Incoming>) -> Result<Reply, Refusal> {
    only_get(request)?;
    Ok(json(
        StatusCode::OK,
        app.discovery.clone(),
        Some("public, max-age=300"),
    ))
}

/// Alive: answers as long as the process serves.
pub fn healthz(request: &Request<Incoming>) -> Result<Reply, Refusal> {
    only_get(request)?;
    Ok(text(StatusCode::OK, "ok\n"))
}

/// Ready while serving and at least one issuer has keys; the body says how each issuer stands
/// (`keys`, `stale` with `failing_since`, or `no_keys`), so that one issuer without keys is seen
/// without taking the daemon out of its load balancer.
pub fn readyz(app: &App, request: &Request<Incoming>) -> Result<Reply, Refusal> {
    only_get(request)?;
    let (status, word) = match app.phase() {
        Phase::Ready if app.revocations.refuses() => {
            (StatusCode::SERVICE_UNAVAILABLE, "store_behind")
        }
        Phase::Ready if app.has_keys() => (StatusCode::OK, "ready"),
        Phase::Ready => (StatusCode::SERVICE_UNAVAILABLE, "no_keys"),
        Phase::Starting => (StatusCode::SERVICE_UNAVAILABLE, "starting"),
        Phase::Draining => (StatusCode::SERVICE_UNAVAILABLE, "draining"),
    };
    let now = crate::unix_now();
    let mut out = format!("{{\"status\":\"{word}\",\"issuers\":[");
    for (i, state) in app.engine.issuers().states().enumerate() {
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
    Ok(json(status, out, Some("no-store")))
}

/// Every metric family, in the Prometheus text format.
pub fn metrics(app: &App, request: &Request<Incoming>) -> Result<Reply, Refusal> {
    only_get(request)?;
    let body = app.metrics.page(
        &app.engine,
        &app.clients,
        &app.revocations,
        app.opaque.minted(),
    );
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(r)
}
