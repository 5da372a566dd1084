//! Every family of `/metrics`, rendered here in the Prometheus text format. Requests are counted
//! in fixed arrays of atomics (no lock on the request path); the engine's, the issuers' and the
//! key sets' counters are read when the page is rendered ([`Metrics::page`]).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use engine::{EngineHandle, Issuers, Kept, Striped};

use crate::clients::Clients;
use crate::revocations::Follower;

/// The endpoints, as labelled in the metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Introspect,
    Verify,
    Authz,
    Jwks,
    Discovery,
    Metrics,
    Healthz,
    Readyz,
    Revoke,
    Revocations,
    Token,
    Sign,
    Other,
}

impl Endpoint {
    const ALL: [Endpoint; 13] = [
        Endpoint::Introspect,
        Endpoint::Verify,
        Endpoint::Authz,
        Endpoint::Jwks,
        Endpoint::Discovery,
        Endpoint::Metrics,
        Endpoint::Healthz,
        Endpoint::Readyz,
        Endpoint::Revoke,
        Endpoint::Revocations,
        Endpoint::Token,
        Endpoint::Sign,
        Endpoint::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Introspect => "introspect",
            Endpoint::Verify => "verify",
            Endpoint::Authz => "authz",
            Endpoint::Jwks => "jwks",
            Endpoint::Discovery => "discovery",
            Endpoint::Metrics => "metrics",
            Endpoint::Healthz => "healthz",
            Endpoint::Readyz => "readyz",
            Endpoint::Revoke => "revoke",
            Endpoint::Revocations => "revocations",
            Endpoint::Token => "token",
            Endpoint::Sign => "sign",
            Endpoint::Other => "other",
        }
    }
}

/// Status codes counted one by one; the rest by class.
const STATUSES: [u16; 16] = [
    200, 201, 400, 401, 403, 404, 405, 406, 408, 413, 415, 429, 431, 500, 503, 504,
];
const SLOTS: usize = STATUSES.len() + 1;
/// Latency bucket bounds, in microseconds.
const BUCKETS_US: [u64; 14] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
    5_000_000,
];

#[derive(Debug, Default)]
struct Latency {
    buckets: [AtomicU64; BUCKETS_US.len()],
    sum_us: AtomicU64,
    count: AtomicU64,
}

/// Request counters, one copy per stripe of request threads ([`Striped`]): the request threads
/// do not fight over the same cache lines; `/metrics` sums the copies.
#[derive(Debug, Default)]
struct Stripe {
    requests: [[AtomicU64; SLOTS]; Endpoint::ALL.len()],
    latency: [Latency; Endpoint::ALL.len()],
}

#[derive(Debug, Default)]
pub struct Metrics {
    stripes: Striped<Stripe>,
    pub connections_open: AtomicU64,
    pub connections_total: AtomicU64,
    pub hsm_errors: AtomicU64,
    pub hsm_signatures: AtomicU64,
    pub client_auth_failures: AtomicU64,
    /// Access tokens issued by `/token`.
    pub tokens_issued: AtomicU64,
}

fn slot(status: u16) -> usize {
    STATUSES
        .iter()
        .position(|&s| s == status)
        .unwrap_or(STATUSES.len())
}

impl Metrics {
    pub fn request(&self, endpoint: Endpoint, status: u16, took: Duration) {
        let e = endpoint as usize;
        let stripe = self.stripes.mine();
        stripe.requests[e][slot(status)].fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let latency = &stripe.latency[e];
        if let Some(b) = BUCKETS_US.iter().position(|&bound| us <= bound) {
            latency.buckets[b].fetch_add(1, Ordering::Relaxed);
        }
        latency.sum_us.fetch_add(us, Ordering::Relaxed);
        latency.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The whole `/metrics` page: this daemon's own families, then the engine's (read from
    /// `engine`), the issuers' and their key sets' (read from `issuers`).
    pub fn page<R: Kept>(
        &self,
        engine: &EngineHandle<R>,
        clients: &Clients,
        revocations: &Follower,
        phantom_minted: u64,
    ) -> String {
        self.render(|out| {
            let (configured, stored, left_out) = clients.counts();
            family(
                out,
                "tessera_clients",
                "gauge",
                "Clients, by where they are registered.",
            );
            let _ = writeln!(out, "tessera_clients{{source=\"config\"}} {configured}");
            let _ = writeln!(out, "tessera_clients{{source=\"store\"}} {stored}");
            family(
                out,
                "tessera_clients_left_out",
                "gauge",
                "Stored clients left out at the last reload (unreadable, or a configured id).",
            );
            let _ = writeln!(out, "tessera_clients_left_out {left_out}");
            let secret_hashes = clients.hashes();
            family(
                out,
                "tessera_phantom_tokens_minted_total",
                "counter",
                "JWTs minted for opaque tokens (one HSM signature each).",
            );
            let _ = writeln!(out, "tessera_phantom_tokens_minted_total {phantom_minted}");
            engine_families(out, engine, secret_hashes);
            revocation_families(out, engine, revocations);
            issuer_families(out, engine.issuers());
        })
    }

    /// Renders the request metrics; `extra` appends the other families.
    fn render(&self, extra: impl FnOnce(&mut String)) -> String {
        let mut out = String::with_capacity(8192);
        out.push_str("# HELP tessera_http_requests_total HTTP requests by endpoint and status.\n");
        out.push_str("# TYPE tessera_http_requests_total counter\n");
        let sum = |f: &dyn Fn(&Stripe) -> &AtomicU64| -> u64 { self.stripes.sum(f) };
        for endpoint in Endpoint::ALL {
            let e = endpoint as usize;
            for i in 0..SLOTS {
                let n = sum(&|s| &s.requests[e][i]);
                if n == 0 {
                    continue;
                }
                let status = STATUSES.get(i).map_or("other".to_string(), u16::to_string);
                let _ = writeln!(
                    out,
                    "tessera_http_requests_total{{endpoint=\"{}\",status=\"{status}\"}} {n}",
                    endpoint.name()
                );
            }
        }
        out.push_str("# HELP tessera_http_request_duration_seconds Time to answer, by endpoint.\n");
        out.push_str("# TYPE tessera_http_request_duration_seconds histogram\n");
        for endpoint in Endpoint::ALL {
            let e = endpoint as usize;
            let count = sum(&|s| &s.latency[e].count);
            if count == 0 {
                continue;
            }
            let name = endpoint.name();
            let mut cumulative = 0;
            for (b, bound) in BUCKETS_US.iter().enumerate() {
                cumulative += sum(&|s| &s.latency[e].buckets[b]);
                let _ = writeln!(
                    out,
                    "tessera_http_request_duration_seconds_bucket{{endpoint=\"{name}\",le=\"{}\"}} {cumulative}",
                    *bound as f64 / 1e6
                );
            }
            let _ = writeln!(
                out,
                "tessera_http_request_duration_seconds_bucket{{endpoint=\"{name}\",le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                out,
                "tessera_http_request_duration_seconds_sum{{endpoint=\"{name}\"}} {}",
                sum(&|s| &s.latency[e].sum_us) as f64 / 1e6
            );
            let _ = writeln!(
                out,
                "tessera_http_request_duration_seconds_count{{endpoint=\"{name}\"}} {count}"
            );
        }
        let gauge = |out: &mut String, name: &str, help: &str, kind: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        gauge(
            &mut out,
            "tessera_http_connections_open",
            "Connections being served.",
            "gauge",
            self.connections_open.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "tessera_http_connections_total",
            "Connections accepted.",
            "counter",
            self.connections_total.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "tessera_client_auth_failures_total",
            "Callers of introspect and verify refused.",
            "counter",
            self.client_auth_failures.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "tessera_tokens_issued_total",
            "Access tokens issued by the token endpoint.",
            "counter",
            self.tokens_issued.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "tessera_hsm_signatures_total",
            "Signatures made by the HSM.",
            "counter",
            self.hsm_signatures.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "tessera_hsm_errors_total",
            "HSM operations that failed.",
            "counter",
            self.hsm_errors.load(Ordering::Relaxed),
        );
        extra(&mut out);
        out
    }
}

/// Writes one metric family header.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
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

/// The engine's families: verdicts, admission, batches and the verified-token cache, with the
/// callers' secret hashes.
/// The revocations in force and how far behind the store this daemon's view is.
fn revocation_families<R: Kept>(out: &mut String, engine: &EngineHandle<R>, follower: &Follower) {
    let families: [(&str, &str, &str, String); 5] = [
        (
            "tessera_revoked_total",
            "counter",
            "Verdicts of valid taken back by a revocation record (reason revoked).",
            engine.stats().revoked.to_string(),
        ),
        (
            "tessera_revocations",
            "gauge",
            "Revocation records in force in this daemon's memory.",
            engine.revocations().len().to_string(),
        ),
        (
            "tessera_revocations_last_seq",
            "gauge",
            "The store's sequence number of the last revocation applied here.",
            follower.last_seq().to_string(),
        ),
        (
            "tessera_store_lag_seconds",
            "gauge",
            "Age of this daemon's view of the store (time since the last catch-up started).",
            format!("{:.3}", follower.lag().as_secs_f64()),
        ),
        (
            "tessera_store_sync_failures_total",
            "counter",
            "Catch-ups with the store that failed.",
            follower.failures().to_string(),
        ),
    ];
    for (name, kind, help, value) in families {
        family(out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }
}

fn engine_families<R: Kept>(out: &mut String, engine: &EngineHandle<R>, secret_hashes: u64) {
    family(
        out,
        "tessera_client_secret_hashes_total",
        "counter",
        "Callers' secrets hashed (PBKDF2 runs) to check them.",
    );
    let _ = writeln!(out, "tessera_client_secret_hashes_total {secret_hashes}");
    let s = engine.stats();
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
        "tessera_engine_multibuffer_active",
        "gauge",
        "1 when batches are verified eight signatures at a time with crypto_mb.",
    );
    let active = u8::from(engine.multibuffer().is_some());
    let _ = writeln!(out, "tessera_engine_multibuffer_active {active}");
    family(
        out,
        "tessera_engine_multibuffer_calls_total",
        "counter",
        "Vectorised calls, by kind of signature.",
    );
    for (kind, calls, _) in &s.lanes {
        let _ = writeln!(
            out,
            "tessera_engine_multibuffer_calls_total{{kind=\"{kind}\"}} {calls}"
        );
    }
    family(
        out,
        "tessera_engine_multibuffer_lanes_total",
        "counter",
        "Lanes those calls filled (at most 8 per call).",
    );
    for (kind, _, lanes) in &s.lanes {
        let _ = writeln!(
            out,
            "tessera_engine_multibuffer_lanes_total{{kind=\"{kind}\"}} {lanes}"
        );
    }
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
    let c = engine.cache().stats();
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
        "tessera_cache_bytes",
        "gauge",
        "Memory the verified-token cache takes: its entries (tokens, verdicts, rendered answers) \
         and its tables, as allocated.",
    );
    let _ = writeln!(out, "tessera_cache_bytes {}", c.bytes);
}

/// The issuers' families: remote key set fetches, skipped keys, expirations and keys in force.
fn issuer_families(out: &mut String, issuers: &Issuers) {
    family(
        out,
        "tessera_keyset_fetches_total",
        "counter",
        "Remote JWKS fetches by issuer and result.",
    );
    for (issuer, remote) in issuers.remote_sets() {
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
    for (issuer, remote) in issuers.remote_sets() {
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
    for (issuer, remote) in issuers.remote_sets() {
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
    for state in issuers.states() {
        let label = prometheus_label(state.issuer);
        let _ = writeln!(
            out,
            "tessera_issuer_keys{{issuer={label},state=\"{}\"}} {}",
            state.status(),
            state.keys
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_render_as_prometheus_text() {
        let m = Metrics::default();
        m.request(Endpoint::Authz, 200, Duration::from_micros(80));
        m.request(Endpoint::Authz, 401, Duration::from_micros(3000));
        m.request(Endpoint::Authz, 299, Duration::from_secs(9));
        let text = m.render(|out| out.push_str("extra 1\n"));
        assert!(text.contains("tessera_http_requests_total{endpoint=\"authz\",status=\"200\"} 1\n"));
        assert!(
            text.contains("tessera_http_requests_total{endpoint=\"authz\",status=\"other\"} 1\n")
        );
        assert!(text.contains(
            "tessera_http_request_duration_seconds_bucket{endpoint=\"authz\",le=\"0.0001\"} 1\n"
        ));
        assert!(text.contains(
            "tessera_http_request_duration_seconds_bucket{endpoint=\"authz\",le=\"0.005\"} 2\n"
        ));
        assert!(text.contains(
            "tessera_http_request_duration_seconds_bucket{endpoint=\"authz\",le=\"+Inf\"} 3\n"
        ));
        assert!(!text.contains("endpoint=\"introspect\""));
        assert!(text.ends_with("extra 1\n"));
    }
}
