//! The daemon's state: the engine, the trusted issuers, the callers, the signer, the metrics,
//! and whether it is ready. Built once from a [`Config`] by [`App::start`].

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use engine::{
    Applied, Engine, EngineHandle, IssuerSpec, Issuers, IssuersError, KeySource, Refresh,
    RemoteConfig, RemoteKeySet,
};
use hyper::header::HeaderName;
use tokio::task::JoinHandle;

use crate::answers::Answers;
use crate::clients::Clients;
use crate::config::{AuthzConfig, Config, KeysFrom, Limits, MultiBufferSetting};
use crate::metrics::Metrics;
use crate::revocations::Follower;
use crate::signer::{Signer, SignerError};

/// Why the daemon could not start.
#[non_exhaustive]
#[derive(Debug)]
pub enum StartError {
    /// The HSM could not be opened or read.
    Signer(SignerError),
    /// An issuer's JWKS file could not be read or was refused.
    Jwks {
        issuer: String,
        error: String,
    },
    /// An issuer's `jwks_uri` is refused (a fetch that fails at start is not an error: that
    /// issuer has no keys until one succeeds).
    Remote {
        issuer: String,
        error: String,
    },
    Issuers(IssuersError),
    /// The TLS certificate or key.
    Tls(crate::tls::TlsError),
    /// Nothing to verify with.
    NoIssuers,
    /// `[engine] multibuffer` names a library that cannot serve here.
    MultiBuffer(multibuffer::LoadError),
    /// The store could not be opened or read: a daemon starts with every revocation or not
    /// at all.
    Store(store::StoreError),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Signer(e) => write!(f, "{e}"),
            StartError::Jwks { issuer, error } => {
                write!(f, "issuer {issuer:?}: JWKS file: {error}")
            }
            StartError::Remote { issuer, error } => {
                write!(f, "issuer {issuer:?}: jwks_uri: {error}")
            }
            StartError::Issuers(e) => write!(f, "{e}"),
            StartError::Tls(e) => write!(f, "TLS: {e}"),
            StartError::NoIssuers => f.write_str("no trusted issuer is configured"),
            StartError::MultiBuffer(e) => write!(f, "engine.multibuffer: {e}"),
            StartError::Store(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// The daemon's engine: what it keeps with each verified token is its rendered answers.
pub type Verifier = EngineHandle<Answers>;

/// Where the daemon is in its life (`/readyz`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    Starting = 0,
    Ready = 1,
    Draining = 2,
}

/// `/v1/authz` settings with the header names parsed.
#[derive(Debug)]
pub struct Authz {
    pub config: AuthzConfig,
    /// The identity headers' names; `None` for those configured off (an empty name).
    pub subject: Option<HeaderName>,
    pub scope: Option<HeaderName>,
    pub client_id: Option<HeaderName>,
    pub issuer: Option<HeaderName>,
    pub claims: Option<HeaderName>,
    /// Set when `[authz] phantom` is on.
    pub phantom: Option<HeaderName>,
    pub cnf_jkt: Option<HeaderName>,
    pub cnf_x5t: Option<HeaderName>,
    /// The header a gateway forwards the client certificate in, and its form, when that is
    /// the configured source (`[authz.certificate]`).
    pub certificate_header: Option<(HeaderName, oauth::forwarded::Format)>,
    /// The DPoP proofs accepted at `/v1/authz` (and at `/token`), when they are remembered
    /// here.
    pub replays: crate::dpop::Replays,
    /// This daemon's DPoP nonces, when `[authz.dpop] nonce` is on.
    pub nonces: Option<oauth::nonce::Nonces>,
    /// `WWW-Authenticate: DPoP algs="..."`: the proof algorithms accepted.
    pub dpop_algs: String,
}

/// Everything a request handler needs.
pub struct App {
    pub limits: Limits,
    /// Verification: the trusted issuers, the cache and the workers.
    pub engine: Verifier,
    pub clients: Arc<Clients>,
    pub signer: Option<Arc<Signer>>,
    pub authz: Authz,
    pub metrics: Metrics,
    /// The issuer identifier and base URL of this daemon, without a trailing `/`: the `issuer`
    /// of the RFC 8414 document and the `iss` of RFC 9701 answers, one string for both.
    pub public_url: String,
    /// The RFC 8414 metadata document.
    pub discovery: String,
    pub tls: Option<crate::tls::Tls>,
    /// The shared store's revocations as this daemon follows them.
    pub revocations: Arc<Follower>,
    /// The phantom JWTs of opaque tokens.
    pub opaque: crate::opaque::Opaque,
    phase: AtomicU8,
    /// Owns the worker threads; stopped when the `App` goes.
    _engine: Engine<Answers>,
    refresher: JoinHandle<()>,
    follower: JoinHandle<()>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("public_url", &self.public_url)
            .field("phase", &self.phase())
            .finish_non_exhaustive()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.refresher.abort();
        self.follower.abort();
    }
}

impl App {
    /// Opens the HSM, loads or fetches every issuer's keys, starts the engine and the background
    /// refresh. Must run inside a Tokio runtime.
    pub async fn start(config: &Config, public_url: String) -> Result<Arc<App>, StartError> {
        let public_url = public_url.trim_end_matches('/').to_owned();
        let signer = match &config.hsm {
            Some(settings) => {
                let settings = settings.clone();
                let now = crate::unix_now();
                let signer = tokio::task::spawn_blocking(move || Signer::open(&settings, now))
                    .await
                    .map_err(|e| {
                        StartError::Signer(SignerError::Hsm(pkcs11::HsmError::Module(
                            e.to_string(),
                        )))
                    })?
                    .map_err(StartError::Signer)?;
                Some(Arc::new(signer))
            }
            None => None,
        };
        if config.issuers.is_empty() {
            return Err(StartError::NoIssuers);
        }
        let mut sources: Vec<(IssuerSpec, KeySource)> = Vec::new();
        for issuer in &config.issuers {
            let name = issuer.spec.issuer.clone();
            let source = match &issuer.keys {
                KeysFrom::File(path) => {
                    let doc = read_bounded(path, 1 << 20).map_err(|error| StartError::Jwks {
                        issuer: name.clone(),
                        error: format!("{}: {error}", path.display()),
                    })?;
                    KeySource::Jwks(doc)
                }
                KeysFrom::Url {
                    url,
                    dangerous_allow_http,
                    max_stale,
                } => {
                    let mut remote = RemoteConfig::new(url.clone());
                    remote.dangerous_allow_http = *dangerous_allow_http;
                    remote.max_stale = *max_stale;
                    let set = RemoteKeySet::unfetched(remote).map_err(|e| StartError::Remote {
                        issuer: name.clone(),
                        error: e.to_string(),
                    })?;
                    KeySource::Remote(Arc::new(set))
                }
                KeysFrom::Hsm => match &signer {
                    Some(signer) => KeySource::Local(signer.local_keys()),
                    None => {
                        return Err(StartError::Signer(SignerError::NoActiveKey));
                    }
                },
            };
            sources.push((issuer.spec.clone(), source));
        }
        // Every key server at once. One partner's key server being down must not stop the
        // daemon: that issuer's tokens are refused until a fetch succeeds (`/readyz` says so).
        let mut first_fetches = tokio::task::JoinSet::new();
        for (spec, source) in &sources {
            if let KeySource::Remote(remote) = source {
                let (issuer, remote) = (spec.issuer.clone(), Arc::clone(remote));
                first_fetches.spawn(async move { (issuer, remote.refresh().await) });
            }
        }
        while let Some(fetched) = first_fetches.join_next().await {
            if let Ok((issuer, Err(e))) = fetched {
                tracing::warn!(
                    issuer,
                    cause = %e,
                    "jwks_uri not fetched at start; this issuer's tokens are refused until a \
                     fetch succeeds"
                );
            }
        }
        for issuer in &config.issuers {
            if issuer.spec.audiences.is_empty() {
                tracing::warn!(
                    issuer = %issuer.spec.issuer,
                    "no audiences: tokens of this issuer for any audience are accepted"
                );
            }
        }
        let issuers = Arc::new(Issuers::new(sources).map_err(StartError::Issuers)?);
        let mut skips = SkipLog::default();
        skips.log_new(&issuers);
        for state in issuers.states().filter(|s| s.keys == 0) {
            tracing::warn!(
                issuer = state.issuer,
                "no usable keys: this issuer's tokens are refused"
            );
        }
        let multibuffer = load_multibuffer(&config.multibuffer)?;
        let engine = Engine::start_with(config.engine, issuers, multibuffer);
        let handle = engine.handle();
        let clients = Arc::new(Clients::new(&config.clients, config.limits.auth_failures));
        let revocations = Follower::start(&config.store, &handle, Arc::clone(&clients))
            .await
            .map_err(StartError::Store)?;
        let follower = revocations.follow(handle.clone());
        let refresher = handle.keep_fresh(
            config.refresh_every,
            DaemonRefresh {
                signer: signer.clone(),
                skips,
            },
        );
        let tls = match &config.tls {
            Some(files) => Some(crate::tls::acceptor(files).map_err(StartError::Tls)?),
            None => None,
        };
        // Checked when the configuration was read; an empty name turns the header off.
        let header = |name: &str| HeaderName::from_bytes(name.as_bytes()).ok();
        let h = &config.authz.headers;
        let authz = Authz {
            subject: header(&h.subject),
            scope: header(&h.scope),
            client_id: header(&h.client_id),
            issuer: header(&h.issuer),
            claims: header(&h.claims),
            phantom: header(&h.phantom).filter(|_| config.authz.phantom),
            cnf_jkt: header(&h.cnf_jkt),
            cnf_x5t: header(&h.cnf_x5t),
            certificate_header: match &config.authz.certificate {
                Some(crate::config::CertificateSource::Header { name, format }) => {
                    header(name).map(|name| (name, *format))
                }
                _ => None,
            },
            replays: crate::dpop::Replays::new(config.authz.dpop.max_remembered),
            nonces: config
                .authz
                .dpop
                .nonce
                .then(|| oauth::nonce::Nonces::generate(config.authz.dpop.window_s)),
            dpop_algs: config
                .authz
                .dpop
                .algorithms
                .iter()
                .map(|a| a.name())
                .collect::<Vec<_>>()
                .join(" "),
            config: config.authz.clone(),
        };
        let certificate_methods = tls.as_ref().map_or(&[][..], |t| {
            match (t.client_certificates, t.client_ca.is_some()) {
                (false, _) => &[][..],
                (true, false) => &["self_signed_tls_client_auth"][..],
                (true, true) => &["tls_client_auth", "self_signed_tls_client_auth"][..],
            }
        });
        let discovery = discovery(
            &public_url,
            signer.as_deref(),
            !config.clients.is_empty(),
            certificate_methods,
            &config.authz.dpop.algorithms,
        );
        Ok(Arc::new(App {
            limits: config.limits,
            engine: handle,
            clients,
            signer,
            authz,
            metrics: Metrics::default(),
            public_url,
            discovery,
            tls,
            revocations,
            opaque: crate::opaque::Opaque::default(),
            phase: AtomicU8::new(Phase::Starting as u8),
            _engine: engine,
            refresher,
            follower,
        }))
    }

    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::SeqCst) {
            0 => Phase::Starting,
            1 => Phase::Ready,
            _ => Phase::Draining,
        }
    }

    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::SeqCst);
    }

    /// Whether at least one issuer has keys to verify with: the daemon is of use. One issuer
    /// without keys (a partner publishing an empty set, its key server down for longer than
    /// `max_stale_s`) refuses that issuer's tokens, not the daemon's readiness.
    pub fn has_keys(&self) -> bool {
        self.engine.issuers().states().any(|s| s.keys > 0)
    }
}

/// Reads at most `limit` bytes of a file.
fn read_bounded(path: &std::path::Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut doc = Vec::new();
    std::fs::File::open(path)?
        .take(limit + 1)
        .read_to_end(&mut doc)?;
    if doc.len() as u64 > limit {
        return Err(std::io::Error::other("larger than 1 MiB"));
    }
    Ok(doc)
}

/// The skipped keys of each remote issuer's document, as last logged: each document's skips are
/// logged once, whichever path (the refresh, an unknown `kid`) fetched it.
#[derive(Default)]
struct SkipLog {
    logged: Vec<Arc<[jose::SkippedKey]>>,
    expirations: Vec<u64>,
}

impl SkipLog {
    fn log_new(&mut self, issuers: &Issuers) {
        let remotes: Vec<_> = issuers.remote_sets().collect();
        self.logged.resize_with(remotes.len(), || Arc::new([]));
        self.expirations.resize(remotes.len(), 0);
        for (i, (issuer, remote)) in remotes.into_iter().enumerate() {
            let skipped = remote.skipped();
            if !Arc::ptr_eq(&skipped, &self.logged[i]) {
                for key in skipped.iter() {
                    tracing::warn!(
                        issuer,
                        kid = key.kid.as_deref().unwrap_or("(none)"),
                        index = key.index,
                        reason = %key.reason,
                        "published key left out"
                    );
                }
                self.logged[i] = skipped;
            }
            let expirations = remote.expirations();
            if expirations != self.expirations[i] {
                tracing::error!(
                    issuer,
                    "keys dropped: refreshes have failed for longer than max_stale_s; this \
                     issuer's tokens are refused until a fetch succeeds"
                );
                self.expirations[i] = expirations;
            }
        }
    }
}

/// The daemon's part of each scheduled refresh ([`engine::EngineHandle::keep_fresh`]): the HSM
/// keys are re-read first (lifecycle transitions, keys added by the CLI), so that a change is
/// applied in the same tick; what was applied, skipped or is going stale is logged after.
struct DaemonRefresh {
    signer: Option<Arc<Signer>>,
    skips: SkipLog,
}

impl Refresh for DaemonRefresh {
    async fn before(&mut self) {
        if let Some(signer) = &self.signer {
            let signer = Arc::clone(signer);
            let now = crate::unix_now();
            match tokio::task::spawn_blocking(move || signer.reload(now)).await {
                Ok(Ok(true)) => tracing::info!("HSM keys changed"),
                Ok(Ok(false)) => {}
                Ok(Err(e)) => tracing::warn!(cause = %e, "HSM keys not re-read"),
                Err(e) => tracing::error!(cause = %e, "HSM reload task failed"),
            }
        }
    }

    fn after(&mut self, issuers: &Issuers, applied: &[Applied<'_>]) {
        for applied in applied {
            tracing::info!(
                issuer = applied.issuer,
                keys = applied.keys,
                "key set applied"
            );
        }
        self.skips.log_new(issuers);
        for state in issuers.states() {
            if let (Some(failing), true) = (state.failing_for, state.keys > 0) {
                tracing::warn!(
                    issuer = state.issuer,
                    failing_s = failing.as_secs(),
                    "serving stale keys"
                );
            }
        }
    }
}

/// RFC 8414 metadata, listing only what this daemon has; `public_url` has no trailing `/`.
/// The token endpoint and its methods exist with signing keys; introspection and revocation
/// with clients (configured ones, or the store's, which a daemon with keys may gain at any
/// time). `certificate_methods`: the RFC 8705 methods the TLS configuration allows.
fn discovery(
    public_url: &str,
    signer: Option<&Signer>,
    has_clients: bool,
    certificate_methods: &[&str],
    dpop_algorithms: &[jose::Algorithm],
) -> String {
    let mut out = String::from("{\"issuer\":");
    jose::json::write_str(&mut out, public_url);
    let endpoint = |out: &mut String, name: &str, path: &str| {
        out.push_str(&format!(",\"{name}\":"));
        jose::json::write_str(out, &format!("{public_url}{path}"));
    };
    let has_clients = has_clients || signer.is_some();
    if has_clients {
        endpoint(&mut out, "introspection_endpoint", "/introspect");
        out.push_str(
            ",\"introspection_endpoint_auth_methods_supported\":[\"client_secret_basic\"]",
        );
        endpoint(&mut out, "revocation_endpoint", "/revoke");
        out.push_str(",\"revocation_endpoint_auth_methods_supported\":[\"client_secret_basic\"]");
    }
    if let Some(signer) = signer {
        endpoint(&mut out, "jwks_uri", "/.well-known/jwks.json");
        endpoint(&mut out, "token_endpoint", "/token");
        out.push_str(",\"grant_types_supported\":[\"client_credentials\"]");
        out.push_str(
            ",\"token_endpoint_auth_methods_supported\":[\"client_secret_basic\",\
             \"client_secret_post\",\"private_key_jwt\"",
        );
        for method in certificate_methods {
            out.push_str(&format!(",\"{method}\""));
        }
        out.push(']');
        // What client assertions may be signed with: the asymmetric algorithms jose verifies.
        out.push_str(
            ",\"token_endpoint_auth_signing_alg_values_supported\":[\"ES256\",\"ES384\",\
             \"ES512\",\"EdDSA\",\"PS256\",\"PS384\",\"PS512\",\"RS256\",\"RS384\",\"RS512\"]",
        );
        out.push_str(",\"response_types_supported\":[]");
        // RFC 9449 section 5.1: the token endpoint binds tokens to DPoP keys...
        let dpop: Vec<String> = dpop_algorithms.iter().map(|a| format!("\"{a}\"")).collect();
        out.push_str(&format!(
            ",\"dpop_signing_alg_values_supported\":[{}]",
            dpop.join(",")
        ));
        // ...and RFC 8705 section 3.3: to the certificates clients authenticate with.
        if !certificate_methods.is_empty() {
            out.push_str(",\"tls_client_certificate_bound_access_tokens\":true");
        }
        let algs: Vec<String> = signer
            .algorithms()
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect();
        if !algs.is_empty() {
            out.push_str(&format!(
                ",\"introspection_signing_alg_values_supported\":[{}]",
                algs.join(",")
            ));
        }
    }
    out.push('}');
    out
}

/// Where `crypto/install.sh` of the source tree this binary was built from puts crypto_mb.
fn installed_crypto_mb() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crypto/lib")
}

/// Loads crypto_mb as `setting` says, and says once which path serves each algorithm and why.
/// Only a library named by path that cannot serve stops the start.
pub fn load_multibuffer(
    setting: &MultiBufferSetting,
) -> Result<Option<Arc<multibuffer::MultiBuffer>>, StartError> {
    use multibuffer::{LoadError, MultiBuffer, Source};
    let source = match setting {
        MultiBufferSetting::Off => {
            tracing::info!("multibuffer: off (engine.multibuffer = \"off\"): every signature on the single path");
            return Ok(None);
        }
        MultiBufferSetting::Auto => Source::Auto {
            folder: Some(installed_crypto_mb()),
        },
        MultiBufferSetting::Path(path) => Source::Path(path.clone()),
    };
    match MultiBuffer::load(&source) {
        Ok(mb) => {
            tracing::info!(
                version = mb.version(),
                path = %mb.path().display(),
                "multibuffer: active, AVX-512 IFMA: RS256/384/512 and PS256/384/512 (2048, 3072, \
                 4096-bit keys, e = 65537), ES256, ES384 and EdDSA verified 8 at a time in \
                 batches; HMAC, ES512, other RSA keys and lone tokens on the single path"
            );
            Ok(Some(Arc::new(mb)))
        }
        Err(e) if matches!(setting, MultiBufferSetting::Path(_)) => Err(StartError::MultiBuffer(e)),
        Err(e) => {
            match e {
                LoadError::NotApplicable => tracing::info!(
                    "multibuffer: not used: this CPU lacks avx512ifma; every signature on the single path"
                ),
                e => tracing::info!(
                    cause = %e,
                    "multibuffer: not used: no crypto_mb library (crypto/install.sh fetches one); \
                     every signature on the single path"
                ),
            }
            Ok(None)
        }
    }
}
