//! The daemon's configuration: a TOML file read once into validated types. The wire structs
//! (`File*`, serde) stay here; everything else sees [`Config`]. Errors name the field.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use engine::IssuerSpec;
use engine::{CacheConfig, EngineConfig};
use jose::Algorithm;
use serde::Deserialize;
pub use store::StoreConfig as StoreBackend;

use crate::secret::SecretHash;

/// A configuration error: always the operator's, in the file or the command line.
#[non_exhaustive]
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read.
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The file is not TOML of this file's shape (a syntax error, an unknown or mistyped key).
    Syntax(toml::de::Error),
    /// A value is refused: the field it concerns (`issuers[1].jwks_uri`, or a command-line
    /// flag such as `--iss`) and what is wrong with it.
    Field { field: String, message: String },
}

impl ConfigError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Field {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::Read { path, error } => write!(f, "{}: {error}", path.display()),
            ConfigError::Syntax(e) => write!(f, "{e}"),
            ConfigError::Field { field, message } => write!(f, "{field}: {message}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    /// The daemon's own issuer identifier and base URL (discovery, introspection JWTs).
    /// Defaults to `http(s)://` and the bound address.
    pub public_url: Option<String>,
    pub tls: Option<TlsFiles>,
    pub limits: Limits,
    pub engine: EngineConfig,
    /// Where the engine's vectorised backend (crypto_mb) comes from.
    pub multibuffer: MultiBufferSetting,
    pub log: LogConfig,
    pub hsm: Option<HsmSettings>,
    pub issuers: Vec<IssuerConfig>,
    pub clients: Vec<Client>,
    pub authz: AuthzConfig,
    /// How often key sets are refreshed in the background (remote sets only refetch when their
    /// `Cache-Control` age has run out) and the HSM keys re-read.
    pub refresh_every: Duration,
    /// The shared state (revocations) and how this daemon follows it.
    pub store: StoreSettings,
}

/// `[store]`: where the shared state lives and how far behind it this daemon may fall.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreSettings {
    pub backend: store::StoreConfig,
    /// The poll backstop: new records are looked for at least this often (PostgreSQL's
    /// `LISTEN` wakes the daemon sooner; polling alone must be, and is, correct).
    pub poll: Duration,
    /// How old this daemon's view of the store may grow (the store unreachable) before
    /// verification fails closed.
    pub max_lag: Duration,
    pub on_loss: OnStoreLoss,
}

/// `[store] on_store_loss`: what verification does once the view is older than `max_lag_ms`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnStoreLoss {
    /// 503 on `/v1/authz`, `/introspect` and `/v1/verify`; `/readyz` not ready.
    #[default]
    FailClosed,
    /// Keep verifying with the revocations already applied (records written meanwhile are
    /// not seen until the store is back). Logged loudly at start.
    ServeStale,
}

impl StoreSettings {
    /// The file name of the embedded store in the state directory.
    pub const SQLITE_FILE: &str = "store.sqlite3";

    /// The embedded default: SQLite in the daemon's state directory ([`state_dir`]).
    pub fn embedded() -> StoreSettings {
        StoreSettings {
            backend: store::StoreConfig::Sqlite {
                path: state_dir().join(Self::SQLITE_FILE),
            },
            poll: Duration::from_millis(1_000),
            max_lag: Duration::from_millis(10_000),
            on_loss: OnStoreLoss::FailClosed,
        }
    }
}

/// The daemon's state directory: `$STATE_DIRECTORY` (systemd's `StateDirectory=`), else
/// `$XDG_STATE_HOME/tessera`, else `~/.local/state/tessera`, else `./tessera-state`.
pub fn state_dir() -> PathBuf {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = var("STATE_DIRECTORY") {
        // systemd may list several, separated by ':'; the first is ours.
        let first = dir
            .to_string_lossy()
            .split(':')
            .next()
            .unwrap_or("")
            .to_owned();
        return PathBuf::from(first);
    }
    if let Some(dir) = var("XDG_STATE_HOME") {
        return dir.join("tessera");
    }
    if let Some(home) = var("HOME") {
        return home.join(".local/state/tessera");
    }
    PathBuf::from("tessera-state")
}

/// What a client may call besides the token endpoint (`introspect`, the default for a
/// `[[clients]]` entry; `revoke`; `admin`).
pub use oauth::Permission;

/// `[engine] multibuffer`: where crypto_mb comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum MultiBufferSetting {
    /// `"auto"` (the default): `TESSERA_CRYPTO_MB`, then the source tree's `crypto/lib`, then
    /// the system's library path; the single path when none loads or the CPU lacks IFMA.
    #[default]
    Auto,
    /// `"off"`: the single path only.
    Off,
    /// A path: this file, and the daemon does not start without it.
    Path(PathBuf),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Whether the handshake asks for a client certificate (RFC 8705 client authentication).
    pub client_auth: ClientCertMode,
    /// The CAs a `tls_client_auth` client's certificate must chain to (PEM).
    pub client_ca: Option<PathBuf>,
}

/// Whether the TLS handshake asks clients for a certificate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientCertMode {
    /// It does not (the default).
    #[default]
    None,
    /// It asks; a client without one is still served (and authenticates otherwise).
    Request,
    /// It asks, and a handshake without one fails.
    Require,
}

/// Protection limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub max_header_bytes: usize,
    pub max_body_bytes: usize,
    /// A client must send a request's whole header within this time.
    pub header_read_timeout: Duration,
    /// A request's body must have arrived this long after its header.
    pub body_read_timeout: Duration,
    /// A connection with no request for this long is closed (HTTP/2; HTTP/1.1 keep-alive is
    /// closed after the header read time).
    pub idle_timeout: Duration,
    /// Most tokens in one `/v1/verify` request.
    pub batch_max_tokens: usize,
    /// After SIGTERM: `/readyz` fails and connections are still accepted for this long...
    pub shutdown_grace: Duration,
    /// ...then in-flight requests get this long to finish.
    pub drain_timeout: Duration,
    /// Failed caller authentications allowed per source address.
    pub auth_failures: FailureLimit,
}

/// A token bucket of failed caller authentications (wrong secrets, unknown clients) per source
/// address (IPv6: per /64): `burst` at once, then one more each `refill`. Beyond it the caller
/// gets 429 without a hash being computed. A source's checks run one at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailureLimit {
    pub burst: u32,
    pub refill: Duration,
}

impl Default for FailureLimit {
    fn default() -> Self {
        // A flood from one address, at 600 000 iterations (about 0.3 s a hash), spends about a
        // second of one check at its start, then a third of one check's time.
        FailureLimit {
            burst: 3,
            refill: Duration::from_millis(500),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            max_header_bytes: 16 * 1024,
            max_body_bytes: 1024 * 1024,
            header_read_timeout: Duration::from_secs(5),
            body_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            batch_max_tokens: 256,
            shutdown_grace: Duration::ZERO,
            drain_timeout: Duration::from_secs(10),
            auth_failures: FailureLimit::default(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter (`info`, `server=debug`); `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// Where the signing keys are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HsmSettings {
    pub module: PathBuf,
    pub token: String,
    /// The PIN file; `pin` takes precedence.
    pub pin_file: Option<PathBuf>,
    /// The PIN the binary took from `TESSERA_HSM_PIN` at start; never read from the file.
    pub pin: Option<pkcs11::Pin>,
    pub sessions: usize,
    /// Create an active key of this algorithm at start when the token has no active key of it
    /// (development mode).
    pub ensure_key: Option<Algorithm>,
}

/// Where an issuer's keys come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeysFrom {
    File(PathBuf),
    Url {
        url: String,
        dangerous_allow_http: bool,
        /// How long refreshes may fail before the keys are dropped (fail closed).
        max_stale: Duration,
    },
    /// This daemon's own HSM keys.
    Hsm,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuerConfig {
    pub spec: IssuerSpec,
    pub keys: KeysFrom,
}

/// A client of the configuration file: a caller of `/introspect`, `/v1/verify`, `/revoke`,
/// `/v1/revocations` as its permissions say, and of `/token` when it is granted tokens.
/// Read-only: the store's clients are managed with `tessera clients`.
#[derive(Clone, Debug)]
pub struct Client {
    pub id: String,
    pub secret: SecretHash,
    pub registration: oauth::Registration,
}

impl Client {
    /// A caller with a secret and permissions, granted no tokens.
    pub fn caller(id: impl Into<String>, secret: SecretHash, permissions: &[Permission]) -> Client {
        let mut registration = oauth::Registration::new(oauth::AuthMethod::ClientSecretBasic);
        registration.permissions = permissions.to_vec();
        Client {
            id: id.into(),
            secret,
            registration,
        }
    }

    pub fn permissions(&self) -> &[Permission] {
        &self.registration.permissions
    }
}

/// Names of the identity headers `/v1/authz` answers with; an empty name leaves that header out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityHeaders {
    pub subject: String,
    pub scope: String,
    pub client_id: String,
    pub issuer: String,
    pub claims: String,
    /// Where the phantom JWT of an opaque token goes (`[authz] phantom = true`), as
    /// `Bearer <JWT>`.
    pub phantom: String,
    /// The thumbprint a DPoP-bound token's proof was checked against (`cnf.jkt`).
    pub cnf_jkt: String,
    /// The certificate hash a certificate-bound token was checked against (`cnf.x5t#S256`).
    pub cnf_x5t: String,
}

impl Default for IdentityHeaders {
    fn default() -> Self {
        IdentityHeaders {
            subject: "x-auth-subject".into(),
            scope: "x-auth-scope".into(),
            client_id: "x-auth-client-id".into(),
            issuer: "x-auth-issuer".into(),
            claims: "x-auth-claims".into(),
            phantom: "authorization".into(),
            cnf_jkt: "x-auth-cnf-jkt".into(),
            cnf_x5t: "x-auth-cnf-x5t".into(),
        }
    }
}

/// A forward-auth rule: requests whose path starts with `prefix` (and whose method is listed,
/// when methods are) need these scopes and this audience.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub prefix: String,
    pub methods: Vec<String>,
    pub scopes: Vec<String>,
    pub audience: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthzConfig {
    pub headers: IdentityHeaders,
    pub routes: Vec<Route>,
    /// Refuse (403) requests no route matches; by default a valid token is enough.
    pub deny_unmatched: bool,
    pub original_from: OriginalFrom,
    pub path_case: PathCase,
    /// The phantom-token pattern: a request with an opaque token is let through with its
    /// phantom JWT in `headers.phantom`, for the gateway to forward upstream.
    pub phantom: bool,
    pub dpop: DpopConfig,
    /// Where the client certificate that certificate-bound tokens (RFC 8705, `cnf.x5t#S256`)
    /// are checked against comes from; without one, such tokens are refused.
    pub certificate: Option<CertificateSource>,
}

/// The one source of the client certificate at `/v1/authz`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertificateSource {
    /// The TLS connection of the request: tessera terminates the clients' TLS itself.
    Tls,
    /// A header the gateway sets, overwriting any the client sent, in this form.
    Header {
        name: String,
        format: oauth::forwarded::Format,
    },
}

/// How DPoP-bound tokens (RFC 9449) are checked at `/v1/authz`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DpopConfig {
    /// The public origin of the APIs behind the gateway (`https://api.example`): with the
    /// original request's path, the URI a proof's `htu` must name. Without it, DPoP-bound
    /// tokens are refused.
    pub origin: Option<String>,
    /// How far a proof's `iat` may lie from now, either way.
    pub window_s: i64,
    /// The algorithms proofs may be signed with (asymmetric only).
    pub algorithms: Vec<jose::Algorithm>,
    /// Most proofs remembered at once (each until its window has passed); beyond, proofs are
    /// refused with 503 rather than let through unremembered.
    pub max_remembered: usize,
    /// Server nonces (RFC 9449 section 8): every proof must carry one this daemon gave out
    /// (`DPoP-Nonce`, with a 401 `use_dpop_nonce` to a proof without). A nonce is good only
    /// at the daemon that issued it, so this daemon's replay cache is exact for a cluster. On
    /// by default when the store is PostgreSQL (several daemons).
    pub nonce: bool,
    /// Where accepted proofs are remembered.
    pub replays: ReplayCheck,
}

/// Where the DPoP proofs a daemon accepted are remembered, so that none is accepted twice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReplayCheck {
    /// In this daemon's memory: exact for one daemon, and for a cluster with nonces on.
    #[default]
    Local,
    /// In the store, one conditional insert per proof: exact for every daemon on the store,
    /// without nonces, at the store's write rate. The default with PostgreSQL and no nonces.
    Store,
}

impl Default for DpopConfig {
    fn default() -> Self {
        DpopConfig {
            origin: None,
            window_s: oauth::dpop::DEFAULT_WINDOW_S,
            algorithms: oauth::dpop::DEFAULT_ALGORITHMS.to_vec(),
            max_remembered: 1 << 20,
            nonce: false,
            replays: ReplayCheck::Local,
        }
    }
}

/// How route prefixes are compared with the request's path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PathCase {
    /// ASCII case folded: `/Admin` falls under a `/admin` rule, as Express, ASP.NET/IIS and
    /// others route them to the same handler.
    #[default]
    Insensitive,
    /// Byte for byte, for backends that route `/Admin` and `/admin` apart.
    Sensitive,
}

impl PathCase {
    /// Whether `path` starts with `prefix` under this comparison.
    pub fn has_prefix(self, path: &str, prefix: &str) -> bool {
        match self {
            PathCase::Sensitive => path.starts_with(prefix),
            PathCase::Insensitive => path
                .as_bytes()
                .get(..prefix.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes())),
        }
    }
}

/// Where `/v1/authz` reads the original request's method and URI.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum OriginalFrom {
    /// `X-Forwarded-Method`/`-Uri` or `X-Original-Method`/`-URI`, whichever is present (both
    /// present and different, or one header of a pair alone: refused), else the request itself.
    #[default]
    #[serde(rename = "any")]
    Any,
    /// Only `X-Forwarded-Method` and `X-Forwarded-Uri` (Traefik, Caddy), both required.
    #[serde(rename = "x-forwarded")]
    XForwarded,
    /// Only `X-Original-Method` and `X-Original-URI` (nginx), both required.
    #[serde(rename = "x-original")]
    XOriginal,
    /// Only the request itself, `/v1/authz` stripped from its path (Envoy).
    #[serde(rename = "request")]
    Request,
}

// ---- the file format ----

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    server: FileServer,
    #[serde(default)]
    engine: FileEngine,
    #[serde(default)]
    log: FileLog,
    hsm: Option<FileHsm>,
    #[serde(default)]
    issuers: Vec<FileIssuer>,
    #[serde(default)]
    clients: Vec<FileClient>,
    #[serde(default)]
    authz: FileAuthz,
    store: Option<FileStore>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStore {
    path: Option<PathBuf>,
    url: Option<String>,
    pool: Option<usize>,
    poll_ms: Option<u64>,
    max_lag_ms: Option<u64>,
    on_store_loss: Option<OnStoreLoss>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileServer {
    listen: Option<String>,
    public_url: Option<String>,
    tls: Option<FileTls>,
    max_connections: Option<usize>,
    max_header_bytes: Option<usize>,
    max_body_bytes: Option<usize>,
    header_read_timeout_ms: Option<u64>,
    body_read_timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    batch_max_tokens: Option<usize>,
    shutdown_grace_ms: Option<u64>,
    drain_timeout_ms: Option<u64>,
    refresh_interval_s: Option<u64>,
    auth_failure_burst: Option<u32>,
    auth_failure_refill_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTls {
    cert: PathBuf,
    key: PathBuf,
    #[serde(default)]
    client_auth: ClientCertMode,
    client_ca: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEngine {
    workers: Option<usize>,
    pin_cores: Option<bool>,
    queue_per_worker: Option<usize>,
    batch: Option<usize>,
    cache_entries: Option<usize>,
    cache_bytes: Option<usize>,
    cache_ttl_s: Option<u64>,
    negative_ttl_s: Option<u64>,
    multibuffer: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLog {
    format: Option<LogFormat>,
    level: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHsm {
    module: Option<PathBuf>,
    token: String,
    pin_file: Option<PathBuf>,
    sessions: Option<usize>,
    publish_delay_s: Option<i64>,
    retention_s: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileIssuer {
    issuer: String,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default)]
    algorithms: Vec<String>,
    jwks_file: Option<PathBuf>,
    jwks_uri: Option<String>,
    #[serde(default)]
    hsm: bool,
    #[serde(default)]
    dangerous_allow_http: bool,
    max_stale_s: Option<u64>,
    typ: Option<String>,
    #[serde(default)]
    required_claims: Vec<String>,
    max_lifetime_s: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileClient {
    id: String,
    secret_hash: String,
    permissions: Option<Vec<Permission>>,
    /// `/token`: the grants, scopes and audiences, as `tessera clients add` registers them.
    #[serde(default)]
    grants: Vec<oauth::Grant>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    audiences: Vec<String>,
    token_format: Option<oauth::TokenFormat>,
    token_lifetime_s: Option<u64>,
    /// `client_secret_basic` (the default) or `client_secret_post`.
    auth_method: Option<oauth::AuthMethod>,
    /// Every token request must carry a DPoP proof.
    #[serde(default)]
    dpop_bound_access_tokens: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAuthz {
    #[serde(default)]
    deny_unmatched: bool,
    #[serde(default)]
    original_from: OriginalFrom,
    #[serde(default)]
    path_case: PathCase,
    #[serde(default)]
    phantom: bool,
    #[serde(default)]
    headers: FileHeaders,
    #[serde(default)]
    routes: Vec<FileRoute>,
    #[serde(default)]
    dpop: FileDpop,
    certificate: Option<FileCertificate>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCertificate {
    source: FileCertificateSource,
    header: Option<String>,
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum FileCertificateSource {
    Tls,
    Header,
    Xfcc,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDpop {
    origin: Option<String>,
    window_s: Option<i64>,
    algorithms: Option<Vec<String>>,
    max_remembered: Option<usize>,
    nonce: Option<bool>,
    replays: Option<FileReplays>,
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum FileReplays {
    Local,
    Store,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHeaders {
    subject: Option<String>,
    scope: Option<String>,
    client_id: Option<String>,
    issuer: Option<String>,
    claims: Option<String>,
    phantom: Option<String>,
    cnf_jkt: Option<String>,
    cnf_x5t: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRoute {
    prefix: String,
    #[serde(default)]
    methods: Vec<String>,
    #[serde(default)]
    scopes: Vec<String>,
    audience: Option<String>,
}

/// The default PKCS#11 module (SoftHSM on Debian).
pub const SOFTHSM_MODULE: &str = pkcs11::HsmConfig::SOFTHSM_MODULE;

/// `[authz.certificate]`, checked: a TLS source needs client certificates asked for, a header
/// source a header name (Envoy's by default for `xfcc`).
fn certificate_source(
    c: FileCertificate,
    tls: Option<&TlsFiles>,
) -> Result<CertificateSource, ConfigError> {
    let field = "authz.certificate.header";
    let name = |default: Option<&str>| -> Result<String, ConfigError> {
        let name = c.header.as_deref().or(default).ok_or_else(|| {
            ConfigError::new(field, "source = \"header\" needs the header's name")
        })?;
        let name = name.to_ascii_lowercase();
        if name.is_empty() || hyper::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(ConfigError::new(
                field,
                format!("{name:?} is not a header name"),
            ));
        }
        Ok(name)
    };
    Ok(match c.source {
        FileCertificateSource::Tls => {
            if c.header.is_some() {
                return Err(ConfigError::new(
                    field,
                    "goes with source = \"header\" or \"xfcc\"",
                ));
            }
            if !tls.is_some_and(|t| t.client_auth != ClientCertMode::None) {
                return Err(ConfigError::new(
                    "authz.certificate.source",
                    "\"tls\" needs [server.tls] with client_auth = \"request\" or \"require\"",
                ));
            }
            CertificateSource::Tls
        }
        FileCertificateSource::Header => CertificateSource::Header {
            name: name(None)?,
            format: oauth::forwarded::Format::Pem,
        },
        FileCertificateSource::Xfcc => CertificateSource::Header {
            name: name(Some("x-forwarded-client-cert"))?,
            format: oauth::forwarded::Format::Xfcc,
        },
    })
}

/// `[authz.dpop]`, checked; `shared` when the store is one several daemons use (PostgreSQL),
/// which decides the defaults of `nonce` and `replays`.
fn dpop_config(d: FileDpop, shared: bool) -> Result<DpopConfig, ConfigError> {
    let dd = DpopConfig::default();
    let origin = match d.origin {
        None => None,
        Some(origin) => {
            let origin = origin.trim_end_matches('/').to_owned();
            let normal = oauth::dpop::normalize_uri(&origin);
            if normal.is_none() || origin.matches('/').count() != 2 {
                return Err(ConfigError::new(
                    "authz.dpop.origin",
                    format!("{origin:?} is not an http(s) origin (scheme://host[:port])"),
                ));
            }
            Some(origin)
        }
    };
    let window_s = d.window_s.unwrap_or(dd.window_s);
    if !(1..=600).contains(&window_s) {
        return Err(ConfigError::new("authz.dpop.window_s", "must be 1 to 600"));
    }
    let algorithms = match d.algorithms {
        None => dd.algorithms,
        Some(names) => {
            let mut algs = Vec::new();
            for name in names {
                let alg = jose::Algorithm::from_name(&name)
                    .filter(|a| a.family() != jose::Family::Hmac)
                    .ok_or_else(|| {
                        ConfigError::new(
                            "authz.dpop.algorithms",
                            format!("{name:?} is not an asymmetric JWS algorithm"),
                        )
                    })?;
                algs.push(alg);
            }
            if algs.is_empty() {
                return Err(ConfigError::new("authz.dpop.algorithms", "is empty"));
            }
            algs
        }
    };
    let max_remembered = d.max_remembered.unwrap_or(dd.max_remembered);
    if max_remembered == 0 {
        return Err(ConfigError::new(
            "authz.dpop.max_remembered",
            "must be positive",
        ));
    }
    let nonce = d.nonce.unwrap_or(shared);
    let replays = match (d.replays, nonce) {
        (Some(FileReplays::Store), true) => return Err(ConfigError::new(
            "authz.dpop.replays",
            "\"store\" is for nonce = false: with nonces, each daemon's own replay cache is exact",
        )),
        (Some(FileReplays::Store), false) => ReplayCheck::Store,
        (Some(FileReplays::Local), _) => ReplayCheck::Local,
        (None, false) if shared => ReplayCheck::Store,
        (None, _) => ReplayCheck::Local,
    };
    Ok(DpopConfig {
        origin,
        window_s,
        algorithms,
        max_remembered,
        nonce,
        replays,
    })
}

impl Config {
    /// Reads and checks a configuration file. Relative paths in it are taken from the file's
    /// folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse(&text, base)
    }

    /// Checks a configuration text; `base` resolves relative paths.
    pub fn parse(text: &str, base: &Path) -> Result<Config, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(ConfigError::Syntax)?;
        let relative = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };

        let s = file.server;
        let listen = match s.listen {
            Some(text) => text.parse().map_err(|_| {
                ConfigError::new("server.listen", format!("{text:?} is not IP:PORT"))
            })?,
            None => SocketAddr::from(([127, 0, 0, 1], 8080)),
        };
        if let Some(url) = &s.public_url {
            check_url("server.public_url", url)?;
        }
        let d = Limits::default();
        let ms = |v: Option<u64>, default: Duration| v.map_or(default, Duration::from_millis);
        let limits = Limits {
            max_connections: positive(
                "server.max_connections",
                s.max_connections,
                d.max_connections,
            )?,
            max_header_bytes: positive(
                "server.max_header_bytes",
                s.max_header_bytes,
                d.max_header_bytes,
            )?,
            max_body_bytes: positive("server.max_body_bytes", s.max_body_bytes, d.max_body_bytes)?,
            header_read_timeout: ms(s.header_read_timeout_ms, d.header_read_timeout),
            body_read_timeout: ms(s.body_read_timeout_ms, d.body_read_timeout),
            idle_timeout: ms(s.idle_timeout_ms, d.idle_timeout),
            batch_max_tokens: positive(
                "server.batch_max_tokens",
                s.batch_max_tokens,
                d.batch_max_tokens,
            )?,
            shutdown_grace: ms(s.shutdown_grace_ms, d.shutdown_grace),
            drain_timeout: ms(s.drain_timeout_ms, d.drain_timeout),
            auth_failures: FailureLimit {
                burst: s.auth_failure_burst.unwrap_or(d.auth_failures.burst),
                refill: ms(s.auth_failure_refill_ms, d.auth_failures.refill),
            },
        };
        if limits.auth_failures.burst == 0 {
            return Err(ConfigError::new(
                "server.auth_failure_burst",
                "must be positive",
            ));
        }
        if limits.auth_failures.refill.is_zero() {
            return Err(ConfigError::new(
                "server.auth_failure_refill_ms",
                "must be positive",
            ));
        }
        if limits.header_read_timeout.is_zero() {
            return Err(ConfigError::new(
                "server.header_read_timeout_ms",
                "must be positive",
            ));
        }
        if limits.idle_timeout.is_zero() {
            return Err(ConfigError::new(
                "server.idle_timeout_ms",
                "must be positive",
            ));
        }
        if limits.body_read_timeout.is_zero() {
            return Err(ConfigError::new(
                "server.body_read_timeout_ms",
                "must be positive",
            ));
        }
        if limits.max_header_bytes < 8192 {
            return Err(ConfigError::new(
                "server.max_header_bytes",
                "must be at least 8192",
            ));
        }
        let refresh_every = Duration::from_secs(positive_u64(
            "server.refresh_interval_s",
            s.refresh_interval_s,
            30,
        )?);
        let tls = match s.tls {
            None => None,
            Some(t) => {
                if t.client_ca.is_some() && t.client_auth == ClientCertMode::None {
                    return Err(ConfigError::new(
                        "server.tls.client_ca",
                        "needs client_auth = \"request\" or \"require\"",
                    ));
                }
                Some(TlsFiles {
                    cert: relative(t.cert),
                    key: relative(t.key),
                    client_auth: t.client_auth,
                    client_ca: t.client_ca.map(&relative),
                })
            }
        };

        let e = file.engine;
        let de = EngineConfig::default();
        let dc = CacheConfig::default();
        let engine = EngineConfig {
            workers: match e.workers {
                None | Some(0) => de.workers,
                Some(n) => n,
            },
            pin: e.pin_cores.unwrap_or(de.pin),
            queue_per_worker: positive(
                "engine.queue_per_worker",
                e.queue_per_worker,
                de.queue_per_worker,
            )?,
            batch: positive("engine.batch", e.batch, de.batch)?,
            cache: CacheConfig {
                max_entries: e.cache_entries.unwrap_or(dc.max_entries),
                max_bytes: e.cache_bytes.unwrap_or(dc.max_bytes),
                ttl: e.cache_ttl_s.map_or(dc.ttl, |s| s as i64),
                negative_ttl: e.negative_ttl_s.map_or(dc.negative_ttl, |s| s as i64),
                ..dc
            },
        };

        let multibuffer = match e.multibuffer.as_deref() {
            None | Some("auto") => MultiBufferSetting::Auto,
            Some("off") => MultiBufferSetting::Off,
            Some("") => {
                return Err(ConfigError::new(
                    "engine.multibuffer",
                    "\"auto\", \"off\" or the path of libcrypto_mb.so",
                ))
            }
            Some(path) => MultiBufferSetting::Path(relative(PathBuf::from(path))),
        };
        let capacity = engine.capacity();
        if limits.batch_max_tokens > capacity {
            return Err(ConfigError::new(
                "server.batch_max_tokens",
                format!(
                    "{} exceeds what the engine admits at once (workers × queue_per_worker = \
                     {capacity}): such batches could never be answered",
                    limits.batch_max_tokens
                ),
            ));
        }

        let log = LogConfig {
            format: file.log.format.unwrap_or_default(),
            level: file.log.level.unwrap_or_else(|| "info".into()),
        };

        let hsm = match file.hsm {
            None => None,
            Some(h) => {
                if h.token.is_empty() {
                    return Err(ConfigError::new("hsm.token", "must not be empty"));
                }
                // The lifecycle timing is kept on the token, where the CLI reads it too.
                for (field, set, flag) in [
                    (
                        "hsm.publish_delay_s",
                        h.publish_delay_s.is_some(),
                        "--publish-delay",
                    ),
                    ("hsm.retention_s", h.retention_s.is_some(), "--retention"),
                ] {
                    if set {
                        return Err(ConfigError::new(
                            field,
                            format!(
                                "is kept on the token, so that the CLI and the daemon agree: \
                                 remove it and run `tessera keys policy {flag} SECS`"
                            ),
                        ));
                    }
                }
                Some(HsmSettings {
                    module: h.module.unwrap_or_else(|| SOFTHSM_MODULE.into()),
                    token: h.token,
                    pin_file: h.pin_file.map(relative),
                    pin: None,
                    sessions: positive("hsm.sessions", h.sessions, 4)?,
                    ensure_key: None,
                })
            }
        };

        let mut issuers = Vec::new();
        for (i, f) in file.issuers.into_iter().enumerate() {
            let field = |name: &str| format!("issuers[{i}].{name}");
            if f.issuer.is_empty() {
                return Err(ConfigError::new(field("issuer"), "must not be empty"));
            }
            let mut algorithms = Vec::new();
            for name in &f.algorithms {
                algorithms.push(Algorithm::from_name(name).ok_or_else(|| {
                    ConfigError::new(field("algorithms"), format!("unknown algorithm {name:?}"))
                })?);
            }
            if f.max_stale_s.is_some() && f.jwks_uri.is_none() {
                return Err(ConfigError::new(
                    field("max_stale_s"),
                    "applies only to keys from jwks_uri",
                ));
            }
            let keys = match (f.jwks_file, f.jwks_uri, f.hsm) {
                (Some(path), None, false) => KeysFrom::File(relative(path)),
                (None, Some(url), false) => {
                    check_url(&field("jwks_uri"), &url)?;
                    KeysFrom::Url {
                        url,
                        dangerous_allow_http: f.dangerous_allow_http,
                        max_stale: Duration::from_secs(positive_u64(
                            &field("max_stale_s"),
                            f.max_stale_s,
                            DEFAULT_MAX_STALE_S,
                        )?),
                    }
                }
                (None, None, true) => {
                    if hsm.is_none() {
                        return Err(ConfigError::new(field("hsm"), "needs an [hsm] section"));
                    }
                    KeysFrom::Hsm
                }
                _ => {
                    return Err(ConfigError::new(
                        format!("issuers[{i}]"),
                        "needs exactly one of jwks_file, jwks_uri, hsm = true",
                    ))
                }
            };
            if let Some(typ) = &f.typ {
                check_typ(&field("typ"), typ)?;
            }
            if f.required_claims.iter().any(String::is_empty) {
                return Err(ConfigError::new(
                    field("required_claims"),
                    "claim names must not be empty",
                ));
            }
            if f.max_lifetime_s == Some(0) {
                return Err(ConfigError::new(
                    field("max_lifetime_s"),
                    "must be positive",
                ));
            }
            issuers.push(IssuerConfig {
                spec: IssuerSpec {
                    issuer: f.issuer,
                    audiences: f.audiences,
                    algorithms,
                    typ: f.typ,
                    required_claims: f.required_claims,
                    max_lifetime: f.max_lifetime_s,
                },
                keys,
            });
        }

        let mut clients: Vec<Client> = Vec::new();
        for (i, c) in file.clients.into_iter().enumerate() {
            if c.id.is_empty() || c.id.contains(':') {
                return Err(ConfigError::new(
                    format!("clients[{i}].id"),
                    "must be non-empty and without ':'",
                ));
            }
            if clients.iter().any(|k| k.id == c.id) {
                return Err(ConfigError::new(
                    format!("clients[{i}].id"),
                    format!("{:?} appears twice", c.id),
                ));
            }
            let secret = SecretHash::parse(&c.secret_hash).map_err(|e| {
                ConfigError::new(format!("clients[{i}].secret_hash"), e.to_string())
            })?;
            let field = |name: &str| format!("clients[{i}].{name}");
            let auth_method = c
                .auth_method
                .unwrap_or(oauth::AuthMethod::ClientSecretBasic);
            if !auth_method.uses_secret() {
                return Err(ConfigError::new(
                    field("auth_method"),
                    "a configured client authenticates with its secret: client_secret_basic or \
                     client_secret_post (register key-holding clients with `tessera clients add`)",
                ));
            }
            let registration = oauth::Registration {
                grants: c.grants,
                scopes: oauth::Scope::from_tokens(&c.scopes)
                    .map_err(|e| ConfigError::new(field("scopes"), e.to_string()))?,
                audiences: c.audiences,
                token_format: c.token_format.unwrap_or_default(),
                token_lifetime: c
                    .token_lifetime_s
                    .unwrap_or(oauth::DEFAULT_TOKEN_LIFETIME_S),
                auth_method,
                keys: None,
                tls_subject: None,
                sign: None,
                dpop_bound_access_tokens: c.dpop_bound_access_tokens,
                permissions: c
                    .permissions
                    .unwrap_or_else(|| vec![Permission::Introspect]),
            };
            registration
                .check()
                .map_err(|e| ConfigError::new(format!("clients[{i}]"), e.to_string()))?;
            clients.push(Client {
                id: c.id,
                secret,
                registration,
            });
        }

        let a = file.authz;
        let dh = IdentityHeaders::default();
        let header =
            |name: &str, v: Option<String>, default: String| -> Result<String, ConfigError> {
                let v = v.unwrap_or(default).to_ascii_lowercase();
                // Empty: the header is not sent.
                if !v.is_empty() && hyper::header::HeaderName::from_bytes(v.as_bytes()).is_err() {
                    return Err(ConfigError::new(
                        format!("authz.headers.{name}"),
                        format!("{v:?} is not a header name"),
                    ));
                }
                Ok(v)
            };
        let headers = IdentityHeaders {
            subject: header("subject", a.headers.subject, dh.subject)?,
            scope: header("scope", a.headers.scope, dh.scope)?,
            client_id: header("client_id", a.headers.client_id, dh.client_id)?,
            issuer: header("issuer", a.headers.issuer, dh.issuer)?,
            claims: header("claims", a.headers.claims, dh.claims)?,
            phantom: header("phantom", a.headers.phantom, dh.phantom)?,
            cnf_jkt: header("cnf_jkt", a.headers.cnf_jkt, dh.cnf_jkt)?,
            cnf_x5t: header("cnf_x5t", a.headers.cnf_x5t, dh.cnf_x5t)?,
        };
        let certificate = match a.certificate {
            None => None,
            Some(c) => Some(certificate_source(c, tls.as_ref())?),
        };
        let store = store_settings(file.store.unwrap_or_default(), &relative)?;
        let shared = matches!(store.backend, store::StoreConfig::Postgres { .. });
        let dpop = dpop_config(a.dpop, shared)?;
        let mut routes = Vec::new();
        for (i, r) in a.routes.into_iter().enumerate() {
            if !r.prefix.starts_with('/') {
                return Err(ConfigError::new(
                    format!("authz.routes[{i}].prefix"),
                    "must start with '/'",
                ));
            }
            // Compared with requests' paths as normalised, so written the same way: `/café`
            // as `/caf%C3%A9`, `/%61dmin` as `/admin`.
            let prefix = crate::path::normalize_path(&r.prefix)
                .filter(|_| !r.prefix.contains(['?', '#']))
                .ok_or_else(|| {
                    ConfigError::new(
                        format!("authz.routes[{i}].prefix"),
                        format!("{:?} has no single reading as a path", r.prefix),
                    )
                })?
                .into_owned();
            let methods = r.methods.iter().map(|m| m.to_ascii_uppercase()).collect();
            routes.push(Route {
                prefix,
                methods,
                scopes: r.scopes,
                audience: r.audience,
            });
        }

        Ok(Config {
            listen,
            public_url: s.public_url,
            tls,
            limits,
            engine,
            multibuffer,
            log,
            hsm,
            issuers,
            clients,
            authz: AuthzConfig {
                headers,
                routes,
                deny_unmatched: a.deny_unmatched,
                original_from: a.original_from,
                path_case: a.path_case,
                phantom: a.phantom,
                dpop,
                certificate,
            },
            refresh_every,
            store,
        })
    }

    /// One trusted issuer, no callers, no route rules (`tessera serve --jwks --iss --aud --typ
    /// --max-lifetime`).
    pub fn quick(listen: SocketAddr, jwks: &str, spec: IssuerSpec) -> Result<Config, ConfigError> {
        let keys = if jwks.starts_with("https://") || jwks.starts_with("http://") {
            check_url("--jwks", jwks)?;
            KeysFrom::Url {
                url: jwks.into(),
                dangerous_allow_http: false,
                max_stale: Duration::from_secs(DEFAULT_MAX_STALE_S),
            }
        } else {
            KeysFrom::File(jwks.into())
        };
        if spec.issuer.is_empty() {
            return Err(ConfigError::new("--iss", "must not be empty"));
        }
        if let Some(typ) = &spec.typ {
            check_typ("--typ", typ)?;
        }
        if spec.max_lifetime == Some(0) {
            return Err(ConfigError::new("--max-lifetime", "must be positive"));
        }
        Ok(Config {
            listen,
            issuers: vec![IssuerConfig { spec, keys }],
            ..Config::empty(listen)
        })
    }

    /// Nothing trusted, defaults everywhere.
    pub fn empty(listen: SocketAddr) -> Config {
        Config {
            listen,
            public_url: None,
            tls: None,
            limits: Limits::default(),
            engine: EngineConfig::default(),
            multibuffer: MultiBufferSetting::default(),
            log: LogConfig::default(),
            hsm: None,
            issuers: Vec::new(),
            clients: Vec::new(),
            authz: AuthzConfig::default(),
            refresh_every: Duration::from_secs(30),
            store: StoreSettings::embedded(),
        }
    }
}

/// `[store]`, checked: exactly one of `path` (SQLite, relative to the file) and `url`
/// (PostgreSQL), or neither (the embedded default); the lag bound above the poll interval.
fn store_settings(
    f: FileStore,
    relative: &dyn Fn(PathBuf) -> PathBuf,
) -> Result<StoreSettings, ConfigError> {
    let d = StoreSettings::embedded();
    let backend = match (f.path, f.url) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                "store",
                "path (SQLite) and url (PostgreSQL) exclude each other",
            ))
        }
        (Some(path), None) => store::StoreConfig::Sqlite {
            path: relative(path),
        },
        (None, Some(url)) => {
            if !(url.starts_with("postgres://")
                || url.starts_with("postgresql://")
                || url.contains('='))
            {
                return Err(ConfigError::new(
                    "store.url",
                    "a PostgreSQL URL (postgres://...) or key=value connection string",
                ));
            }
            store::StoreConfig::Postgres {
                url,
                pool: positive("store.pool", f.pool, 8)?,
            }
        }
        (None, None) => d.backend,
    };
    if f.pool.is_some() && !matches!(backend, store::StoreConfig::Postgres { .. }) {
        return Err(ConfigError::new("store.pool", "applies only to store.url"));
    }
    let poll = Duration::from_millis(positive_u64("store.poll_ms", f.poll_ms, 1_000)?);
    let max_lag = Duration::from_millis(positive_u64("store.max_lag_ms", f.max_lag_ms, 10_000)?);
    if max_lag <= poll {
        return Err(ConfigError::new(
            "store.max_lag_ms",
            format!(
                "must exceed store.poll_ms ({} ms): a daemon that polls less often than its lag \
                 bound would fail closed between polls",
                poll.as_millis()
            ),
        ));
    }
    Ok(StoreSettings {
        backend,
        poll,
        max_lag,
        on_loss: f.on_store_loss.unwrap_or_default(),
    })
}

fn positive(field: &str, value: Option<usize>, default: usize) -> Result<usize, ConfigError> {
    match value {
        None => Ok(default),
        Some(0) => Err(ConfigError::new(field, "must be positive")),
        Some(n) => Ok(n),
    }
}

/// How long a remote issuer's refreshes may fail before its keys are dropped: a day.
const DEFAULT_MAX_STALE_S: u64 = 86_400;

fn positive_u64(field: &str, value: Option<u64>, default: u64) -> Result<u64, ConfigError> {
    match value {
        None => Ok(default),
        Some(0) => Err(ConfigError::new(field, "must be positive")),
        Some(n) => Ok(n),
    }
}

/// A required `typ`: a media type name, and not that of introspection responses, which are
/// never accepted as tokens.
fn check_typ(field: &str, typ: &str) -> Result<(), ConfigError> {
    if typ.is_empty() || !typ.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::new(
            field,
            format!("{typ:?} is not a media type such as \"at+jwt\""),
        ));
    }
    if jose::jwt::media_type_is(typ, jose::jwt::INTROSPECTION_RESPONSE) {
        return Err(ConfigError::new(
            field,
            format!("{typ:?} is the type of introspection responses, which are never accepted"),
        ));
    }
    Ok(())
}

fn check_url(field: &str, url: &str) -> Result<(), ConfigError> {
    match url.parse::<hyper::Uri>() {
        Ok(uri)
            if matches!(uri.scheme_str(), Some("http" | "https")) && uri.authority().is_some() =>
        {
            Ok(())
        }
        _ => Err(ConfigError::new(
            field,
            format!("{url:?} is not an http(s) URL"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_is_valid() {
        let text = include_str!("../../../examples/tessera.toml");
        let config = Config::parse(text, Path::new("/etc/tessera")).expect("example config");
        assert_eq!(config.issuers.len(), 3);
        assert_eq!(config.clients.len(), 3);
        assert_eq!(
            config.clients[2].registration.grants,
            [oauth::Grant::ClientCredentials]
        );
        assert_eq!(config.clients[0].permissions(), [Permission::Introspect]);
        assert_eq!(
            config.clients[1].permissions(),
            [Permission::Revoke, Permission::Admin]
        );
        assert_eq!(config.store.on_loss, OnStoreLoss::FailClosed);
        assert_eq!(config.store.poll, Duration::from_millis(1000));
        assert_eq!(config.authz.routes.len(), 2);
        assert_eq!(
            config.issuers[0].keys,
            KeysFrom::File("/etc/tessera/jwks.json".into())
        );
    }

    #[test]
    fn the_store_section_is_checked() {
        let parse = |store: &str| Config::parse(&format!("[store]\n{store}"), Path::new("/etc/t"));
        let sqlite = parse("path = \"s.db\"").expect("sqlite");
        assert_eq!(
            sqlite.store.backend,
            StoreBackend::Sqlite {
                path: "/etc/t/s.db".into()
            }
        );
        let pg = parse("url = \"postgres://db/t\"\npool = 3\non_store_loss = \"serve_stale\"")
            .expect("postgres");
        assert_eq!(
            pg.store.backend,
            StoreBackend::Postgres {
                url: "postgres://db/t".into(),
                pool: 3
            }
        );
        assert_eq!(pg.store.on_loss, OnStoreLoss::ServeStale);
        for (bad, field) in [
            ("path = \"a\"\nurl = \"postgres://db\"", "store"),
            ("url = \"mysql://db\"", "store.url"),
            ("path = \"a\"\npool = 2", "store.pool"),
            ("poll_ms = 0", "store.poll_ms"),
            ("poll_ms = 5000\nmax_lag_ms = 5000", "store.max_lag_ms"),
        ] {
            match parse(bad) {
                Err(ConfigError::Field { field: f, .. }) => assert_eq!(f, field, "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert!(matches!(
            parse("on_store_loss = \"maybe\""),
            Err(ConfigError::Syntax(_))
        ));
        // Without the section: the embedded store in the state directory.
        let none = Config::parse("", Path::new("/etc/t")).expect("empty");
        assert!(
            matches!(none.store.backend, StoreBackend::Sqlite { ref path } if path.ends_with(StoreSettings::SQLITE_FILE))
        );
    }

    /// Regression: route prefixes were compared as written with paths as normalised, so a
    /// prefix written `/café` or `/%61dmin` never matched (`/caf%C3%A9`, `/admin`).
    #[test]
    fn route_prefixes_are_written_as_paths_are_normalised() {
        let issuer = "[[issuers]]\nissuer = \"a\"\njwks_file = \"x\"\n";
        let prefix = |p: &str| {
            Config::parse(
                &format!("{issuer}[[authz.routes]]\nprefix = \"{p}\"\n"),
                Path::new("."),
            )
            .map(|c| c.authz.routes[0].prefix.clone())
            .map_err(|e| e.to_string())
        };
        assert_eq!(prefix("/café/").as_deref(), Ok("/caf%C3%A9/"));
        assert_eq!(prefix("/%61dmin").as_deref(), Ok("/admin"));
        assert_eq!(prefix("/orders/../admin").as_deref(), Ok("/admin"));
        assert_eq!(prefix("/admin").as_deref(), Ok("/admin"));
        for refused in ["/a%2fb", "/a?b", "/x#y", "/a\\\\b"] {
            let e = prefix(refused).expect_err(refused);
            assert!(e.starts_with("authz.routes[0].prefix:"), "{e}");
        }
    }

    #[test]
    fn identity_headers_are_renamed_or_turned_off() {
        let issuer = "[[issuers]]\nissuer = \"a\"\njwks_file = \"x\"\n";
        let parse = |extra: &str| Config::parse(&format!("{issuer}{extra}"), Path::new("."));
        let config =
            parse("[authz.headers]\nclaims = \"\"\nsubject = \"X-User\"\n").expect("valid");
        let h = &config.authz.headers;
        assert_eq!((h.claims.as_str(), h.subject.as_str()), ("", "x-user"));
        assert_eq!(h.issuer, IdentityHeaders::default().issuer);
        let err = parse("[authz.headers]\nscope = \"x y\"\n").expect_err("not a name");
        assert!(err.to_string().starts_with("authz.headers.scope:"), "{err}");
    }

    #[test]
    fn errors_name_the_field() {
        let err = |text: &str| {
            Config::parse(text, Path::new("."))
                .expect_err(text)
                .to_string()
        };
        assert!(err("[server]\nlisten = \"nope\"").starts_with("server.listen:"));
        assert!(err("[server]\nmax_body_bytes = 0").starts_with("server.max_body_bytes:"));
        assert!(err("[server]\nauth_failure_burst = 0").starts_with("server.auth_failure_burst:"));
        assert!(err("[server]\nauth_failure_refill_ms = 0")
            .starts_with("server.auth_failure_refill_ms:"));
        assert!(err("[[issuers]]\nissuer = \"a\"").starts_with("issuers[0]:"));
        assert!(
            err("[[issuers]]\nissuer = \"a\"\njwks_file = \"x\"\nalgorithms = [\"none\"]")
                .starts_with("issuers[0].algorithms:")
        );
        assert!(err("[[issuers]]\nissuer = \"a\"\nhsm = true").starts_with("issuers[0].hsm:"));
        // The lifecycle timing is the token's, shared with the CLI.
        for field in ["publish_delay_s", "retention_s"] {
            let e = err(&format!("[hsm]\ntoken = \"t\"\n{field} = 60"));
            assert!(e.starts_with(&format!("hsm.{field}:")), "{e}");
            assert!(e.contains("tessera keys policy"), "{e}");
        }
        assert!(err("[[clients]]\nid = \"c\"\nsecret_hash = \"plain\"")
            .starts_with("clients[0].secret_hash:"));
        assert!(err("[[authz.routes]]\nprefix = \"api\"").starts_with("authz.routes[0].prefix:"));
        assert!(err(
            "[engine]\nworkers = 1\nqueue_per_worker = 10\n[server]\nbatch_max_tokens = 11"
        )
        .starts_with("server.batch_max_tokens:"));
        // Unknown fields are refused with their name, typos included.
        assert!(
            err("[server]\nlisten_addr = \"x\"").contains("listen_addr"),
            "{}",
            err("[server]\nlisten_addr = \"x\"")
        );
        assert!(err("[[issuers]]\nissuer = \"a\"\njwks_uri = \"ftp://x\"")
            .starts_with("issuers[0].jwks_uri:"));
    }

    #[test]
    fn issuer_typ_required_claims_and_max_lifetime_reach_the_spec() {
        let issuer = "[[issuers]]\nissuer = \"a\"\njwks_file = \"x\"\n";
        let parse = |extra: &str| Config::parse(&format!("{issuer}{extra}"), Path::new("."));
        let config = parse(
            "typ = \"at+jwt\"\nrequired_claims = [\"sub\", \"jti\"]\nmax_lifetime_s = 3600\n",
        )
        .expect("valid");
        let spec = &config.issuers[0].spec;
        assert_eq!(spec.typ.as_deref(), Some("at+jwt"));
        assert_eq!(spec.required_claims, ["sub", "jti"]);
        assert_eq!(spec.max_lifetime, Some(3600));
        let spec = &parse("").expect("valid").issuers[0].spec;
        assert_eq!(
            (
                spec.typ.as_ref(),
                spec.required_claims.len(),
                spec.max_lifetime
            ),
            (None, 0, None)
        );

        for (extra, field) in [
            ("max_lifetime_s = 0", "issuers[0].max_lifetime_s:"),
            ("max_lifetime_s = -1", "max_lifetime_s"),
            ("typ = \"\"", "issuers[0].typ:"),
            ("typ = \"at + jwt\"", "issuers[0].typ:"),
            ("typ = \"token-introspection+jwt\"", "issuers[0].typ:"),
            (
                "typ = \"Application/Token-Introspection+JWT\"",
                "issuers[0].typ:",
            ),
            ("required_claims = [\"\"]", "issuers[0].required_claims:"),
        ] {
            let err = parse(extra).expect_err(extra).to_string();
            assert!(err.contains(field), "{extra}: {err}");
        }
    }

    #[test]
    fn dpop_nonces_and_replays_default_by_the_store_and_refuse_a_pointless_pair() {
        let issuer = "[[issuers]]\nissuer = \"a\"\njwks_file = \"x\"\n";
        let parse = |extra: &str| Config::parse(&format!("{issuer}{extra}"), Path::new("."));
        let postgres = "[store]\nurl = \"postgres://tessera@db/tessera\"\n";
        let dpop = |extra: &str| parse(extra).expect(extra).authz.dpop;
        // One daemon's SQLite: no nonces, replays in memory.
        let d = dpop("");
        assert_eq!((d.nonce, d.replays), (false, ReplayCheck::Local));
        // PostgreSQL (several daemons): nonces, so the local replay cache is exact...
        let d = dpop(postgres);
        assert_eq!((d.nonce, d.replays), (true, ReplayCheck::Local));
        // ...or, with nonces off, the store remembers every proof.
        let d = dpop(&format!("{postgres}[authz.dpop]\nnonce = false\n"));
        assert_eq!((d.nonce, d.replays), (false, ReplayCheck::Store));
        let d = dpop("[authz.dpop]\nreplays = \"store\"\n");
        assert_eq!((d.nonce, d.replays), (false, ReplayCheck::Store));
        let d = dpop(&format!(
            "{postgres}[authz.dpop]\nnonce = false\nreplays = \"local\"\n"
        ));
        assert_eq!((d.nonce, d.replays), (false, ReplayCheck::Local));
        for bad in [
            "[authz.dpop]\nnonce = true\nreplays = \"store\"\n",
            "[authz.dpop]\nreplays = \"redis\"\n",
        ] {
            let err = parse(bad).expect_err(bad).to_string();
            assert!(err.contains("replays"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_certificate_source_is_one_that_can_be_had() {
        let issuer = "[[issuers]]\nissuer = \"a\"\njwks_file = \"x\"\n";
        let parse = |extra: &str| Config::parse(&format!("{issuer}{extra}"), Path::new("."));
        let source = |extra: &str| parse(extra).expect(extra).authz.certificate;
        assert_eq!(source(""), None);
        assert_eq!(
            source("[authz.certificate]\nsource = \"xfcc\"\n"),
            Some(CertificateSource::Header {
                name: "x-forwarded-client-cert".into(),
                format: oauth::forwarded::Format::Xfcc,
            })
        );
        assert_eq!(
            source("[authz.certificate]\nsource = \"header\"\nheader = \"X-SSL-Client-Cert\"\n"),
            Some(CertificateSource::Header {
                name: "x-ssl-client-cert".into(),
                format: oauth::forwarded::Format::Pem,
            })
        );
        for (bad, field) in [
            ("source = \"tls\"", "authz.certificate.source"),
            ("source = \"header\"", "authz.certificate.header"),
            (
                "source = \"header\"\nheader = \"x y\"",
                "authz.certificate.header",
            ),
            (
                "source = \"tls\"\nheader = \"x\"",
                "authz.certificate.header",
            ),
            ("source = \"cookie\"", "source"),
        ] {
            let err = parse(&format!("[authz.certificate]\n{bad}\n"))
                .expect_err(bad)
                .to_string();
            assert!(err.contains(field), "{bad}: {err}");
        }
    }
}
