//! Remote key sets: an issuer's `jwks_uri`, fetched over HTTPS (plain HTTP only for loopback
//! unless allowed explicitly), cached for its `Cache-Control: max-age` (default 10 minutes),
//! refreshed when stale, and kept stale when a refresh fails, but not for ever: once refreshes
//! have failed for longer than `max_stale`, the keys are dropped and the issuer's tokens refused
//! until a fetch succeeds (fail closed).
//!
//! A published set is someone else's document: a key in it that cannot be used (weak, malformed,
//! private, a `kid` shared within the document) is left out with its reason
//! ([`RemoteKeySet::skipped`]) and the other keys are used.
//!
//! A token with an unknown `kid` may mean the issuer rotated: [`RemoteKeySet::unknown_kid`]
//! refetches, but at most once per cool-down window (default 30 s) however many requests carry
//! unknown kids, and concurrent callers share that one fetch. Responses are bounded in size and
//! time.
//!
//! This is the one place the engine does network I/O.

use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jose::{KeySet, SkippedKey};

/// Where and how to fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteConfig {
    pub url: String,
    /// Allow plain `http://` to hosts other than loopback (dangerous: keys in the clear).
    pub dangerous_allow_http: bool,
    /// Freshness when the response says nothing (`Cache-Control: max-age` wins, within bounds).
    pub default_max_age: Duration,
    /// Bounds on the freshness a response may ask for.
    pub min_max_age: Duration,
    pub max_max_age: Duration,
    /// At most one fetch for unknown kids per window.
    pub cooldown: Duration,
    /// Whole request, headers and body.
    pub timeout: Duration,
    pub max_bytes: usize,
    /// How long refreshes may keep failing before the keys are dropped.
    pub max_stale: Duration,
}

impl RemoteConfig {
    pub fn new(url: impl Into<String>) -> Self {
        RemoteConfig {
            url: url.into(),
            dangerous_allow_http: false,
            default_max_age: Duration::from_secs(600),
            min_max_age: Duration::from_secs(60),
            max_max_age: Duration::from_secs(24 * 3600),
            cooldown: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
            max_bytes: 1 << 20,
            max_stale: Duration::from_secs(86_400),
        }
    }
}

/// Why a fetch failed.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoteError {
    /// The URL is not acceptable (scheme, plain HTTP to a non-loopback host, syntax).
    Url(String),
    /// Connection, TLS or protocol failure, or a timeout.
    Fetch(String),
    /// The server answered with a status other than 200.
    Status(u16),
    /// The body is larger than allowed.
    TooLarge,
    /// The body is not an acceptable JWK Set.
    KeySet(String),
}

impl std::fmt::Display for RemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RemoteError::Url(m) => write!(f, "JWKS URL: {m}"),
            RemoteError::Fetch(m) => write!(f, "JWKS fetch: {m}"),
            RemoteError::Status(s) => write!(f, "JWKS fetch: HTTP status {s}"),
            RemoteError::TooLarge => f.write_str("JWKS fetch: response too large"),
            RemoteError::KeySet(m) => write!(f, "JWKS: {m}"),
        }
    }
}

impl std::error::Error for RemoteError {}

type HttpsClient = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Empty<Bytes>,
>;

struct Fresh {
    keys: Arc<KeySet>,
    /// The keys of the document that were left out, and why.
    skipped: Arc<[SkippedKey]>,
    /// When the keys were fetched, and for how long they are fresh.
    fetched: Instant,
    max_age: Duration,
    /// SHA-256 of the document the keys came from.
    digest: Option<[u8; 32]>,
    /// The first failed fetch since the last one that succeeded.
    failing_since: Option<Instant>,
}

/// A JWK Set fetched from a URL and kept fresh.
pub struct RemoteKeySet {
    config: RemoteConfig,
    uri: hyper::Uri,
    client: HttpsClient,
    fresh: RwLock<Fresh>,
    /// Serialises fetches; holds when the last one for an unknown kid started.
    fetching: tokio::sync::Mutex<Option<Instant>>,
    fetches: std::sync::atomic::AtomicU64,
    failures: std::sync::atomic::AtomicU64,
    /// How many times the keys were dropped for having been stale too long.
    expirations: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for RemoteKeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteKeySet")
            .field("url", &self.config.url)
            .finish_non_exhaustive()
    }
}

/// The URL, checked: HTTPS, or HTTP to a loopback host (or anywhere when allowed explicitly).
fn check_url(config: &RemoteConfig) -> Result<hyper::Uri, RemoteError> {
    let uri: hyper::Uri = config
        .url
        .parse()
        .map_err(|e| RemoteError::Url(format!("{}: {e}", config.url)))?;
    let host = uri
        .host()
        .ok_or_else(|| RemoteError::Url(format!("{}: no host", config.url)))?;
    match uri.scheme_str() {
        Some("https") => Ok(uri),
        Some("http") => {
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let loopback =
                bare == "localhost" || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
            if loopback || config.dangerous_allow_http {
                Ok(uri)
            } else {
                Err(RemoteError::Url(format!(
                    "{}: plain HTTP is allowed only to loopback",
                    config.url
                )))
            }
        }
        _ => Err(RemoteError::Url(format!("{}: not http(s)", config.url))),
    }
}

/// `max-age` from a `Cache-Control` value; `no-cache`/`no-store` mean zero.
fn max_age(cache_control: Option<&str>) -> Option<Duration> {
    let value = cache_control?;
    let mut age = None;
    for directive in value.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-cache" || lower == "no-store" {
            return Some(Duration::ZERO);
        }
        if let Some(n) = lower.strip_prefix("max-age=") {
            age = n
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs);
        }
    }
    age
}

impl RemoteKeySet {
    /// Fetches the key set once; fails if the URL is refused or the first fetch fails.
    pub async fn new(config: RemoteConfig) -> Result<Self, RemoteError> {
        let set = RemoteKeySet::unfetched(config)?;
        set.fetch().await?;
        Ok(set)
    }

    /// A set with no keys yet, stale at once: the first [`RemoteKeySet::refresh`] fetches it.
    /// Fails only if the URL is refused.
    pub fn unfetched(config: RemoteConfig) -> Result<Self, RemoteError> {
        let uri = check_url(&config)?;
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(https);
        let set = RemoteKeySet {
            config,
            uri,
            client,
            fresh: RwLock::new(Fresh {
                keys: Arc::new(KeySet::default()),
                skipped: Arc::new([]),
                fetched: Instant::now(),
                max_age: Duration::ZERO,
                digest: None,
                failing_since: None,
            }),
            fetching: tokio::sync::Mutex::new(None),
            fetches: std::sync::atomic::AtomicU64::new(0),
            failures: std::sync::atomic::AtomicU64::new(0),
            expirations: std::sync::atomic::AtomicU64::new(0),
        };
        Ok(set)
    }

    /// The keys as last fetched (stale ones too: a failed refresh keeps them, until they have
    /// been stale for `max_stale`).
    pub fn keys(&self) -> Arc<KeySet> {
        Arc::clone(&self.fresh.read().unwrap_or_else(|e| e.into_inner()).keys)
    }

    /// The keys of the current document that were left out, and why.
    pub fn skipped(&self) -> Arc<[SkippedKey]> {
        Arc::clone(&self.fresh.read().unwrap_or_else(|e| e.into_inner()).skipped)
    }

    /// For how long fetches have been failing (since the first failure after the last success);
    /// `None` while the last fetch succeeded.
    pub fn failing_for(&self) -> Option<Duration> {
        let fresh = self.fresh.read().unwrap_or_else(|e| e.into_inner());
        fresh.failing_since.map(|since| since.elapsed())
    }

    /// How many times the keys were dropped because refreshes had failed for longer than
    /// `max_stale`.
    pub fn expirations(&self) -> u64 {
        self.expirations.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many fetches were made (for metrics and tests).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many fetches failed (the keys in use stayed as they were).
    pub fn failures(&self) -> u64 {
        self.failures.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the keys are past their freshness.
    pub fn is_stale(&self) -> bool {
        let fresh = self.fresh.read().unwrap_or_else(|e| e.into_inner());
        fresh.fetched.elapsed() >= fresh.max_age
    }

    /// Refetches if stale (a background task calls this periodically). On failure the stale keys
    /// stay in use and the error is returned for logging.
    pub async fn refresh(&self) -> Result<(), RemoteError> {
        if !self.is_stale() {
            return Ok(());
        }
        let _guard = self.fetching.lock().await;
        if !self.is_stale() {
            return Ok(()); // another caller refreshed meanwhile
        }
        self.fetch().await
    }

    /// A token named a `kid` the keys lack: refetch, at most once per cool-down window;
    /// callers that arrive while a fetch is running wait for it and share its result. Returns
    /// whether a fetch ran since the call. Either way the caller looks at [`RemoteKeySet::keys`]
    /// again: a fetch that finished just before the call may already hold the kid.
    pub async fn unknown_kid(&self) -> bool {
        let seen = self.fetches();
        let mut last = self.fetching.lock().await;
        if self.fetches() != seen {
            return true; // a fetch ran while this caller waited
        }
        if last.is_some_and(|at| at.elapsed() < self.config.cooldown) {
            return false;
        }
        *last = Some(Instant::now());
        let _ = self.fetch().await; // a failure keeps the stale keys
        true
    }

    async fn fetch(&self) -> Result<(), RemoteError> {
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let result = self.fetch_once().await;
        if result.is_err() {
            self.failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.failed();
        }
        result
    }

    /// A fetch failed: the keys stay, unless fetches have failed for longer than `max_stale`.
    fn failed(&self) {
        let mut fresh = self.fresh.write().unwrap_or_else(|e| e.into_inner());
        let since = *fresh.failing_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= self.config.max_stale && !fresh.keys.is_empty() {
            // A new (empty) set: the issuers see a change, swap it in and evict the verdicts its
            // old keys reached. The next good document is applied whatever its digest.
            fresh.keys = Arc::new(KeySet::default());
            fresh.skipped = Arc::new([]);
            fresh.digest = None;
            self.expirations
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    async fn fetch_once(&self) -> Result<(), RemoteError> {
        let request = hyper::Request::get(self.uri.clone())
            .header(
                hyper::header::ACCEPT,
                "application/jwk-set+json, application/json",
            )
            .body(Empty::new())
            .map_err(|e| RemoteError::Fetch(e.to_string()))?;
        let fetch = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| RemoteError::Fetch(e.to_string()))?;
            if response.status() != hyper::StatusCode::OK {
                return Err(RemoteError::Status(response.status().as_u16()));
            }
            let cache_control = response
                .headers()
                .get(hyper::header::CACHE_CONTROL)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = Limited::new(response.into_body(), self.config.max_bytes)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        RemoteError::TooLarge
                    } else {
                        RemoteError::Fetch(e.to_string())
                    }
                })?
                .to_bytes();
            Ok((body, cache_control))
        };
        let (body, cache_control) = tokio::time::timeout(self.config.timeout, fetch)
            .await
            .map_err(|_| RemoteError::Fetch("timed out".into()))??;
        let max_age = max_age(cache_control.as_deref())
            .unwrap_or(self.config.default_max_age)
            .max(self.config.min_max_age)
            .min(self.config.max_max_age);
        let mut digest = [0u8; 32];
        digest
            .copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &body).as_ref());
        let mut fresh = self.fresh.write().unwrap_or_else(|e| e.into_inner());
        if fresh.digest == Some(digest) {
            // The same document: the same keys, so nothing downstream sees a change (which would
            // evict the issuer's cached verdicts).
            fresh.fetched = Instant::now();
            fresh.max_age = max_age;
            fresh.failing_since = None;
            return Ok(());
        }
        drop(fresh);
        let jwks =
            KeySet::from_published_jwks(&body).map_err(|e| RemoteError::KeySet(e.to_string()))?;
        *self.fresh.write().unwrap_or_else(|e| e.into_inner()) = Fresh {
            keys: Arc::new(jwks.keys),
            skipped: jwks.skipped.into(),
            fetched: Instant::now(),
            max_age,
            digest: Some(digest),
            failing_since: None,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let ok = |u: &str| check_url(&RemoteConfig::new(u)).is_ok();
        assert!(ok("https://issuer.example/.well-known/jwks.json"));
        assert!(ok("http://127.0.0.1:8080/jwks"));
        assert!(ok("http://[::1]:8080/jwks"));
        assert!(ok("http://localhost/jwks"));
        assert!(!ok("http://issuer.example/jwks"));
        assert!(!ok("http://10.0.0.1/jwks"));
        assert!(!ok("ftp://issuer.example/jwks"));
        assert!(!ok("not a url"));
        let mut allowed = RemoteConfig::new("http://issuer.example/jwks");
        allowed.dangerous_allow_http = true;
        assert!(check_url(&allowed).is_ok());
    }

    #[test]
    fn cache_control() {
        assert_eq!(
            max_age(Some("public, max-age=3600")),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(
            max_age(Some("Max-Age=\"60\"")),
            Some(Duration::from_secs(60))
        );
        assert_eq!(max_age(Some("no-store")), Some(Duration::ZERO));
        assert_eq!(max_age(Some("public")), None);
        assert_eq!(max_age(None), None);
    }
}
