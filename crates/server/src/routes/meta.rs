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
    Ok(json(status, out, Some("no-store")))
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

pub fn metrics(app: &App, request: &Request<Incoming>) -> Result<Reply, Refusal> {
    only_get(request)?;
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
    Ok(r)
}
