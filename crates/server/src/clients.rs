//! The daemon's clients: those of the configuration file (read-only) and those registered in
//! the store (`tessera clients`), followed as the store changes. They call `/introspect`,
//! `/v1/verify`, `/revoke` and `/v1/revocations` with HTTP Basic (RFC 6749 section 2.3.1) as
//! their permissions say, and `/token` in the way they are registered for.
//!
//! A configured secret is a PBKDF2 hash that costs hundreds of milliseconds by design, so a
//! verified credential is remembered (by the SHA-256 of what was presented, bounded) and hash
//! checks run on the blocking pool, a few at a time: a flood of wrong secrets cannot take the
//! request threads. A generated secret's hash (`sha256$`) costs microseconds and is checked
//! where the request runs. Failed checks are limited per source address ([`Failures`]), so
//! that a flood cannot keep the few checks busy either. Remembered credentials belong to one
//! generation of the client table: a client removed or given a new secret in the store is not
//! remembered past the change.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use engine::revoked::sha256;
use engine::{RemoteConfig, RemoteKeySet};
use oauth::{ClientKeys, Registration};

use crate::config::{Client, FailureLimit, Permission};
use crate::secret::SecretHash;

/// Why a caller was not authenticated.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthError {
    /// The caller's: no `Authorization: Basic` header.
    Missing,
    /// The caller's: a malformed header, an unknown client or a wrong secret.
    Refused,
    /// The daemon's load: too many hash checks are running; try again later.
    Busy,
    /// The caller's source address: it failed too often; try again after this long.
    Throttled(Duration),
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthError::Missing => f.write_str("no Basic credentials"),
            AuthError::Refused => f.write_str("credentials refused"),
            AuthError::Busy => f.write_str("too many secret hash checks running"),
            AuthError::Throttled(wait) => {
                write!(f, "too many failed attempts: retry in {} s", wait.as_secs())
            }
        }
    }
}

impl std::error::Error for AuthError {}

/// Most remembered credentials; the memory is cleared when full.
const REMEMBERED: usize = 4096;
/// Hash checks running at once.
const CHECKS: usize = 2;
/// Longest wait for a turn to check a hash.
const CHECK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Where a `private_key_jwt` client's keys are.
#[derive(Debug)]
pub enum AssertionKeys {
    /// Registered with the client.
    Set(Arc<jose::KeySet>),
    /// Its `jwks_uri`, fetched when first needed and refreshed as the engine's remote sets are.
    Remote(Arc<RemoteKeySet>),
}

/// One client as the daemon knows it.
#[derive(Debug)]
pub struct ClientEntry {
    pub id: Arc<str>,
    secret: Option<Arc<SecretHash>>,
    pub registration: Registration,
    pub keys: Option<AssertionKeys>,
    /// The certificates (DER) a `self_signed_tls_client_auth` client registered.
    pub certificates: Vec<Vec<u8>>,
    /// From the store (else the configuration file).
    pub stored: bool,
}

impl ClientEntry {
    fn configured(client: &Client) -> ClientEntry {
        ClientEntry {
            id: client.id.as_str().into(),
            secret: Some(Arc::new(client.secret.clone())),
            registration: client.registration.clone(),
            keys: None,
            certificates: Vec::new(),
            stored: false,
        }
    }

    pub fn permits(&self, permission: Permission) -> bool {
        self.registration.permissions.contains(&permission)
    }
}

/// The clients of one generation: the configured ones and the store's as last read.
#[derive(Debug, Default)]
struct Table {
    generation: u64,
    by_id: HashMap<String, Arc<ClientEntry>>,
}

/// The clients and the credentials already verified.
#[derive(Debug)]
pub struct Clients {
    configured: Vec<Arc<ClientEntry>>,
    table: RwLock<Arc<Table>>,
    /// The table's generation, read without its lock.
    generation: AtomicU64,
    /// SHA-256 of accepted credentials → (the generation, the client id).
    verified: Mutex<HashMap<[u8; 32], Remembered>>,
    checks: Arc<tokio::sync::Semaphore>,
    /// Checked for unknown client ids, as costly as the costliest configured hash.
    decoy: Arc<SecretHash>,
    /// Unique per `Clients`, for the per-thread memo.
    id: u64,
    /// Secret hashes computed so far (`tessera_client_secret_hashes_total`).
    hashes: Arc<AtomicU64>,
    failures: Arc<Failures>,
    /// Stored clients left out of the last table (unreadable, or shadowing a configured one).
    left_out: AtomicU64,
}

/// A verified credential: the table generation it was verified in, and whose it is.
type Remembered = (u64, Arc<str>);

/// Per request thread, the last credentials this thread saw verified: (whose, generation,
/// digest, client). Spares the shared map's lock on the hot path.
const THREAD_MEMO: usize = 4;
type Memo = Vec<(u64, u64, [u8; 32], Arc<str>)>;
thread_local! {
    static MEMO: std::cell::RefCell<Memo> = const { std::cell::RefCell::new(Vec::new()) };
}

/// One stored client as [`Clients::replace_stored`] reads it.
#[derive(Debug)]
pub struct StoredClient<'a> {
    pub id: &'a str,
    pub secret: Option<&'a str>,
    pub registration: &'a str,
}

impl Clients {
    pub fn new(clients: &[Client], failures: FailureLimit) -> Self {
        let configured: Vec<Arc<ClientEntry>> = clients
            .iter()
            .map(|c| Arc::new(ClientEntry::configured(c)))
            .collect();
        let table = Table {
            generation: 0,
            by_id: configured
                .iter()
                .map(|c| (c.id.to_string(), Arc::clone(c)))
                .collect(),
        };
        Clients {
            configured,
            table: RwLock::new(Arc::new(table)),
            generation: AtomicU64::new(0),
            verified: Mutex::new(HashMap::new()),
            checks: Arc::new(tokio::sync::Semaphore::new(CHECKS)),
            decoy: Arc::new(SecretHash::decoy(
                clients
                    .iter()
                    .map(|c| c.secret.iterations())
                    .max()
                    .unwrap_or(crate::secret::MIN_ITERATIONS),
            )),
            id: {
                static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            },
            hashes: Arc::new(AtomicU64::new(0)),
            failures: Arc::new(Failures::new(failures, SOURCES)),
            left_out: AtomicU64::new(0),
        }
    }

    /// How many clients there are, (configured, stored), and how many stored ones the last
    /// reload left out.
    pub fn counts(&self) -> (usize, usize, u64) {
        let table = self.table();
        let stored = table.by_id.values().filter(|c| c.stored).count();
        (
            table.by_id.len() - stored,
            stored,
            self.left_out.load(Ordering::Relaxed),
        )
    }

    fn table(&self) -> Arc<Table> {
        Arc::clone(&self.table.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// The client `id`, if there is one.
    pub fn get(&self, id: &str) -> Option<Arc<ClientEntry>> {
        self.table().by_id.get(id).cloned()
    }

    /// Replaces the store's clients with `stored` (the configured ones stay, and win over a
    /// stored client of the same id). A stored client that cannot be read is left out and
    /// logged: it cannot authenticate until it is fixed. Credentials remembered so far are
    /// forgotten. Returns how many stored clients were taken.
    pub fn replace_stored(&self, stored: &[StoredClient<'_>]) -> usize {
        let old = self.table();
        let mut by_id: HashMap<String, Arc<ClientEntry>> = self
            .configured
            .iter()
            .map(|c| (c.id.to_string(), Arc::clone(c)))
            .collect();
        let mut taken = 0;
        for row in stored {
            if by_id.get(row.id).is_some_and(|c| !c.stored) {
                tracing::warn!(
                    client = row.id,
                    "a stored client has the id of a configured one: the configured one is used"
                );
                continue;
            }
            match stored_entry(row, old.by_id.get(row.id)) {
                Ok(entry) => {
                    by_id.insert(row.id.to_owned(), Arc::new(entry));
                    taken += 1;
                }
                Err(e) => {
                    tracing::error!(client = row.id, cause = %e, "stored client left out")
                }
            }
        }
        self.left_out
            .store((stored.len() - taken) as u64, Ordering::Relaxed);
        let generation = old.generation + 1;
        *self.table.write().unwrap_or_else(|e| e.into_inner()) =
            Arc::new(Table { generation, by_id });
        self.generation.store(generation, Ordering::Release);
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        taken
    }

    /// Whether the authenticated client `id` may call what `permission` covers. Asked on every
    /// request of the callers' endpoints: looked up under the read lock, no table or entry
    /// handle taken.
    pub fn permits(&self, id: &str, permission: Permission) -> bool {
        self.table
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .by_id
            .get(id)
            .is_some_and(|c| c.permits(permission))
    }

    /// Secret hashes computed so far (each a full PBKDF2 run).
    pub fn hashes(&self) -> u64 {
        self.hashes.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.table().by_id.is_empty()
    }

    /// The client id the `Authorization` header value proves, sent from `peer`.
    pub async fn authenticate(
        &self,
        authorization: Option<&[u8]>,
        peer: IpAddr,
    ) -> Result<Arc<str>, AuthError> {
        let value = authorization.ok_or(AuthError::Missing)?;
        let key = sha256(value);
        if let Some(id) = self.remembered(&key) {
            return Ok(id);
        }
        let (id, secret) = parse_basic(value).ok_or(AuthError::Refused)?;
        self.check_secret(key, &id, &secret, peer).await
    }

    /// The client `id` if `secret` is its secret, presented from `peer` in a form whose
    /// SHA-256 is `key` (the header value, or the form's id and secret).
    pub async fn check_secret(
        &self,
        key: [u8; 32],
        id: &str,
        secret: &str,
        peer: IpAddr,
    ) -> Result<Arc<str>, AuthError> {
        if let Some(id) = self.remembered(&key) {
            return Ok(id);
        }
        let generation = self.generation.load(Ordering::Acquire);
        // An unknown client costs the same hash as a known one, so that the time taken does
        // not tell which configured client ids exist.
        let (hash, known) = match self.get(id).and_then(|c| c.secret.clone()) {
            Some(hash) => (hash, true),
            None => (Arc::clone(&self.decoy), false),
        };
        if hash.is_fast() {
            let source = Source::of(peer);
            self.failures
                .allowed(source, Instant::now())
                .map_err(AuthError::Throttled)?;
            if !hash.verify(secret.as_bytes()) {
                let (source, _turn) = self.failures.turn(peer, Instant::now());
                self.failures.charge(source, Instant::now());
                return Err(AuthError::Refused);
            }
            return Ok(self.remember(key, generation, id));
        }
        // One check at a time per source address: a flood from one address holds at most one
        // of the checks, and a caller's concurrent first requests wait for the first one's
        // verdict (remembered when right) instead of spending hashes and failures.
        let (source, turn) = self.failures.turn(peer, Instant::now());
        let turn = tokio::time::timeout(CHECK_WAIT, turn.lock_owned())
            .await
            .map_err(|_| AuthError::Busy)?;
        if let Some(id) = self.remembered(&key) {
            return Ok(id);
        }
        self.failures
            .allowed(source, Instant::now())
            .map_err(AuthError::Throttled)?;
        // Checks wait their turn, for a bounded time; one that waited may find its credential
        // verified meanwhile by a request that carried the same header.
        let permit = tokio::time::timeout(CHECK_WAIT, Arc::clone(&self.checks).acquire_owned())
            .await
            .map_err(|_| AuthError::Busy)?
            .map_err(|_| AuthError::Busy)?;
        if let Some(id) = self.remembered(&key) {
            return Ok(id);
        }
        // The permit and the source's turn go with the hash: a client that disconnects frees
        // neither while the hash still runs, nor escapes the charge of a failed check.
        let hashes = Arc::clone(&self.hashes);
        let failures = Arc::clone(&self.failures);
        let secret = secret.to_owned();
        let checked = tokio::task::spawn_blocking(move || {
            hashes.fetch_add(1, Ordering::Relaxed);
            let ok = hash.verify(secret.as_bytes());
            if !ok || !known {
                failures.charge(source, Instant::now());
            }
            drop(permit);
            // The source's turn is given up once a right credential is remembered (below), so
            // that requests waiting with the same header find it there.
            (ok, turn)
        })
        .await;
        let Ok((ok, _turn)) = checked else {
            return Err(AuthError::Refused);
        };
        if !ok || !known {
            return Err(AuthError::Refused);
        }
        Ok(self.remember(key, generation, id))
    }

    fn remember(&self, key: [u8; 32], generation: u64, id: &str) -> Arc<str> {
        let id: Arc<str> = id.into();
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if verified.len() >= REMEMBERED {
            verified.clear();
        }
        verified.insert(key, (generation, Arc::clone(&id)));
        id
    }

    fn remembered(&self, key: &[u8; 32]) -> Option<Arc<str>> {
        let generation = self.generation.load(Ordering::Acquire);
        let local = MEMO.with(|memo| {
            memo.borrow()
                .iter()
                .find(|(owner, g, digest, _)| {
                    *owner == self.id && *g == generation && digest == key
                })
                .map(|(_, _, _, client)| Arc::clone(client))
        });
        if local.is_some() {
            return local;
        }
        let shared = self
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .filter(|(g, _)| *g == generation)
            .map(|(_, id)| Arc::clone(id))?;
        MEMO.with(|memo| {
            let mut memo = memo.borrow_mut();
            if memo.len() >= THREAD_MEMO {
                memo.remove(0);
            }
            // A copy of its own, so that its count stays on this thread.
            memo.push((self.id, generation, *key, Arc::from(&*shared)));
        });
        Some(shared)
    }
}

/// A stored client, checked; a `jwks_uri` already followed by the previous table keeps its
/// fetched keys.
fn stored_entry(
    row: &StoredClient<'_>,
    previous: Option<&Arc<ClientEntry>>,
) -> Result<ClientEntry, String> {
    let registration = Registration::from_json(row.registration).map_err(|e| e.to_string())?;
    let secret = match row.secret {
        Some(text) => Some(Arc::new(
            SecretHash::parse(text).map_err(|e| format!("secret: {e}"))?,
        )),
        None => None,
    };
    if registration.auth_method.uses_secret() && secret.is_none() {
        return Err(format!(
            "{} without a secret",
            registration.auth_method.as_str()
        ));
    }
    let mut certificates = Vec::new();
    let keys = match &registration.keys {
        None => None,
        Some(ClientKeys::Jwks(doc))
            if registration.auth_method == oauth::AuthMethod::SelfSignedTlsClientAuth =>
        {
            certificates = oauth::mtls::registered_certificates(doc)?;
            None
        }
        Some(ClientKeys::Jwks(doc)) => {
            Some(AssertionKeys::Set(Arc::new(oauth::client_key_set(doc)?)))
        }
        Some(ClientKeys::JwksUri(uri)) => {
            let same = previous.and_then(|p| match (&p.keys, &p.registration.keys) {
                (Some(AssertionKeys::Remote(remote)), Some(ClientKeys::JwksUri(old)))
                    if old == uri =>
                {
                    Some(Arc::clone(remote))
                }
                _ => None,
            });
            let remote = match same {
                Some(remote) => remote,
                None => Arc::new(
                    RemoteKeySet::unfetched(RemoteConfig::new(uri.clone()))
                        .map_err(|e| format!("jwks_uri: {e}"))?,
                ),
            };
            Some(AssertionKeys::Remote(remote))
        }
    };
    Ok(ClientEntry {
        id: row.id.into(),
        secret,
        registration,
        keys,
        certificates,
        stored: true,
    })
}

/// Most source addresses whose failures are remembered one by one (about 3 MiB); beyond, new
/// sources share one bucket until idle ones are forgotten.
const SOURCES: usize = 65_536;
/// Idle sources are looked for at most this often when the map is full.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Whose failures share a bucket: an IPv4 address, an IPv6 /64 (what one host or site is
/// commonly given), or every source that found the map full.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum Source {
    V4(std::net::Ipv4Addr),
    V6(u64),
    Overflow,
}

impl Source {
    fn of(peer: IpAddr) -> Self {
        match peer.to_canonical() {
            IpAddr::V4(v4) => Source::V4(v4),
            IpAddr::V6(v6) => Source::V6((v6.to_bits() >> 64) as u64),
        }
    }
}

/// Failed caller authentications per source, as token buckets kept in the generic cell rate
/// form: one instant per source, the time at which its bucket is full again. A source may
/// fail `burst` times at once, then once per `refill`; its checks run one at a time (its
/// turn), so that it cannot start more checks than its bucket allows. Bounded in memory: at
/// most `capacity` sources (plus the shared overflow bucket); idle sources with full buckets
/// are forgotten when room is needed.
#[derive(Debug)]
pub(crate) struct Failures {
    limit: FailureLimit,
    capacity: usize,
    state: Mutex<FailureMap>,
}

#[derive(Debug, Default)]
struct FailureMap {
    sources: HashMap<Source, SourceState>,
    swept: Option<Instant>,
}

#[derive(Debug)]
struct SourceState {
    /// When the bucket is full again.
    full_at: Instant,
    /// Held while one of the source's checks runs.
    turn: Arc<tokio::sync::Mutex<()>>,
}

impl Failures {
    fn new(limit: FailureLimit, capacity: usize) -> Self {
        Failures {
            limit,
            capacity,
            state: Mutex::new(FailureMap::default()),
        }
    }

    /// `peer`'s source (the overflow source when the map is full) and its turn.
    fn turn(&self, peer: IpAddr, now: Instant) -> (Source, Arc<tokio::sync::Mutex<()>>) {
        let source = Source::of(peer);
        let mut map = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let source = if map.sources.contains_key(&source) || map.has_room(self.capacity, now) {
            source
        } else {
            Source::Overflow
        };
        let state = map.sources.entry(source).or_insert_with(|| SourceState {
            full_at: now,
            turn: Arc::default(),
        });
        (source, Arc::clone(&state.turn))
    }

    /// Whether `source` may fail once more now, or how long until it may.
    fn allowed(&self, source: Source, now: Instant) -> Result<(), Duration> {
        let FailureLimit { burst, refill } = self.limit;
        let map = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some(state) = map.sources.get(&source) else {
            return Ok(());
        };
        // Empty while the bucket is full again only after `burst` or more refills.
        let empty_until = state
            .full_at
            .checked_sub(refill * burst.saturating_sub(1))
            .unwrap_or(now);
        if empty_until > now {
            return Err(empty_until - now);
        }
        Ok(())
    }

    /// Counts a failed check of `source`.
    fn charge(&self, source: Source, now: Instant) {
        let mut map = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(state) = map.sources.get_mut(&source) {
            state.full_at = state.full_at.max(now) + self.limit.refill;
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .sources
            .len()
    }
}

impl FailureMap {
    /// Whether a new source fits: when the map is full, idle sources whose buckets are full
    /// again are forgotten (at most once per [`SWEEP_EVERY`], so that rotating addresses cannot
    /// make every attempt scan the map).
    fn has_room(&mut self, capacity: usize, now: Instant) -> bool {
        if self.sources.len() < capacity {
            return true;
        }
        if self
            .swept
            .is_some_and(|swept| now.saturating_duration_since(swept) < SWEEP_EVERY)
        {
            return false;
        }
        self.swept = Some(now);
        self.sources.retain(|source, state| {
            *source == Source::Overflow || state.full_at > now || Arc::strong_count(&state.turn) > 1
        });
        self.sources.len() < capacity
    }
}

/// `Basic base64(urlencode(id) ":" urlencode(secret))` → (id, secret), each form-decoded once as
/// RFC 6749 section 2.3.1 says. A secret is one hash: trying other readings of it (as sent, for
/// clients that do not encode, such as `curl -u`) would make every wrong secret with a `+` or a
/// `%` cost two.
pub fn parse_basic(value: &[u8]) -> Option<(String, String)> {
    let value = std::str::from_utf8(value).ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((
        crate::form::decode(id.as_bytes())?.into_owned(),
        crate::form::decode(secret.as_bytes())?.into_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let header = format!("Basic {}", b64("my%20client:p%3Ass+word"));
        assert_eq!(
            parse_basic(header.as_bytes()),
            Some(("my client".into(), "p:ss word".into()))
        );
        assert_eq!(
            parse_basic(format!("basic {}", b64("a:b")).as_bytes()),
            Some(("a".into(), "b".into()))
        );
        // One reading only: a secret that is not form-encoded has none.
        assert_eq!(
            parse_basic(format!("Basic {}", b64("a:100%")).as_bytes()),
            None
        );
        assert_eq!(parse_basic(b"Bearer abc"), None);
        assert_eq!(
            parse_basic(format!("Basic {}", b64("nocolon")).as_bytes()),
            None
        );
        assert_eq!(parse_basic(b"Basic !!!"), None);
    }

    /// One client, `gw` with the secret `pw` (1000 iterations), `burst` failures per source.
    fn gateway(burst: u32) -> Clients {
        Clients::new(
            &[Client::caller(
                "gw",
                SecretHash::new(b"pw", 1000).unwrap(),
                &[Permission::Introspect],
            )],
            FailureLimit {
                burst,
                ..FailureLimit::default()
            },
        )
    }

    #[tokio::test]
    async fn clients_are_authenticated_and_remembered() {
        let clients = gateway(100);
        let peer = IpAddr::from([127, 0, 0, 1]);
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let good = format!("Basic {}", b64("gw:pw"));
        assert_eq!(
            clients.authenticate(None, peer).await,
            Err(AuthError::Missing)
        );
        assert_eq!(
            clients
                .authenticate(Some(good.as_bytes()), peer)
                .await
                .as_deref(),
            Ok("gw")
        );
        assert_eq!(
            clients
                .authenticate(Some(good.as_bytes()), peer)
                .await
                .as_deref(),
            Ok("gw")
        );
        for bad in ["gw:PW", "other:pw", "gw:"] {
            let header = format!("Basic {}", b64(bad));
            assert_eq!(
                clients.authenticate(Some(header.as_bytes()), peer).await,
                Err(AuthError::Refused),
                "{bad}"
            );
        }
    }

    #[test]
    fn failures_are_limited_per_source_within_bounded_memory() {
        let limit = FailureLimit {
            burst: 3,
            refill: Duration::from_millis(500),
        };
        let failures = Failures::new(limit, 4);
        // One failed check of `peer` at `now`, if it is allowed.
        let fail = |peer: IpAddr, now: Instant| {
            let (source, _turn) = failures.turn(peer, now);
            failures.allowed(source, now)?;
            failures.charge(source, now);
            Ok::<(), Duration>(())
        };
        let t0 = Instant::now();
        let a = IpAddr::from([192, 0, 2, 1]);
        // A burst; then refused with the wait for one refill.
        for _ in 0..3 {
            fail(a, t0).unwrap();
        }
        assert_eq!(fail(a, t0), Err(Duration::from_millis(500)));
        // Another source has its own bucket.
        let b = IpAddr::from([192, 0, 2, 2]);
        fail(b, t0).unwrap();
        // One refill later, one more failure.
        let t1 = t0 + Duration::from_millis(500);
        fail(a, t1).unwrap();
        assert!(fail(a, t1).is_err());
        // Successes are not counted.
        let t2 = t1 + Duration::from_secs(10);
        for _ in 0..10 {
            let (source, _turn) = failures.turn(a, t2);
            failures.allowed(source, t2).unwrap();
        }
        for _ in 0..3 {
            fail(a, t2).unwrap();
        }
        assert!(fail(a, t2).is_err());
        // An IPv6 /64 is one source; an IPv4-mapped address is its IPv4 address.
        let v6 = |last: u16| IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, last]);
        for last in 0..3 {
            fail(v6(last), t0).unwrap();
        }
        assert!(fail(v6(9), t0).is_err());
        let mapped = IpAddr::from([0, 0, 0, 0, 0, 0xffff, 0xc000, 0x0201]);
        assert!(fail(mapped, t2).is_err());
        // Rotating addresses: the map stays bounded and the newcomers share one bucket.
        for i in 0..100u8 {
            let _ = fail(IpAddr::from([198, 51, 100, i]), t2);
        }
        assert!(failures.len() <= 4 + 1, "{}", failures.len());
        assert!(fail(IpAddr::from([198, 51, 100, 200]), t2).is_err());
        // Once their buckets are full again, idle sources make room.
        let later = t2 + Duration::from_secs(60);
        let c = IpAddr::from([203, 0, 113, 1]);
        fail(c, later).unwrap();
        fail(c, later).unwrap();
        assert!(failures.len() <= 2, "{}", failures.len());
    }

    #[tokio::test]
    async fn stored_clients_are_replaced_and_not_remembered_past_a_change() {
        let clients = gateway(100);
        let peer = IpAddr::from([127, 0, 0, 1]);
        let registration = {
            let mut r = Registration::new(oauth::AuthMethod::ClientSecretPost);
            r.permissions = vec![Permission::Revoke];
            r.to_json()
        };
        let (first, first_hash) = SecretHash::generate().unwrap();
        let first_hash = first_hash.to_string();
        fn row<'a>(secret: &'a str, registration: &'a str) -> StoredClient<'a> {
            StoredClient {
                id: "svc",
                secret: Some(secret),
                registration,
            }
        }
        assert_eq!(
            clients.replace_stored(&[row(&first_hash, &registration)]),
            1
        );
        let key = sha256(first.as_bytes());
        assert_eq!(
            clients
                .check_secret(key, "svc", &first, peer)
                .await
                .as_deref(),
            Ok("svc")
        );
        assert!(clients.permits("svc", Permission::Revoke));
        assert!(!clients.permits("svc", Permission::Introspect));
        // Generated secrets cost no PBKDF2 run.
        assert_eq!(clients.hashes(), 0);
        // Rotated: the old secret is neither remembered nor right any more.
        let (second, second_hash) = SecretHash::generate().unwrap();
        assert_eq!(
            clients.replace_stored(&[row(&second_hash.to_string(), &registration)]),
            1
        );
        assert_eq!(
            clients.check_secret(key, "svc", &first, peer).await,
            Err(AuthError::Refused)
        );
        assert_eq!(
            clients
                .check_secret(sha256(second.as_bytes()), "svc", &second, peer)
                .await
                .as_deref(),
            Ok("svc")
        );
        // A stored client cannot take a configured one's id; an unreadable one is left out.
        let bad = StoredClient {
            id: "broken",
            secret: Some("sha256$nope"),
            registration: &registration,
        };
        let shadow = StoredClient {
            id: "gw",
            secret: Some(&first_hash),
            registration: &registration,
        };
        assert_eq!(clients.replace_stored(&[bad, shadow]), 0);
        assert!(clients.get("broken").is_none());
        assert!(clients.get("gw").is_some_and(|c| !c.stored));
        // Removed.
        assert!(clients.get("svc").is_none());
        assert_eq!(
            clients
                .check_secret(sha256(second.as_bytes()), "svc", &second, peer)
                .await,
            Err(AuthError::Refused)
        );
    }

    #[tokio::test]
    async fn concurrent_first_requests_cost_one_hash() {
        let clients = Arc::new(gateway(1));
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let good = format!("Basic {}", b64("gw:pw"));
        let peer = IpAddr::from([127, 0, 0, 1]);
        let tasks: Vec<_> = (0..6)
            .map(|_| {
                let (clients, good) = (Arc::clone(&clients), good.clone());
                tokio::spawn(async move { clients.authenticate(Some(good.as_bytes()), peer).await })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().as_deref(), Ok("gw"));
        }
        assert_eq!(clients.hashes(), 1);
        // A wrong secret empties this source's bucket of one: the next is refused unhashed.
        let wrong = format!("Basic {}", b64("gw:nope"));
        assert_eq!(
            clients.authenticate(Some(wrong.as_bytes()), peer).await,
            Err(AuthError::Refused)
        );
        assert!(matches!(
            clients
                .authenticate(Some(b"Basic Z3c6bm9wZTI="), peer)
                .await,
            Err(AuthError::Throttled(_))
        ));
        assert_eq!(clients.hashes(), 2);
        // Remembered credentials are not checked again, throttled source or not.
        assert_eq!(
            clients
                .authenticate(Some(good.as_bytes()), peer)
                .await
                .as_deref(),
            Ok("gw")
        );
    }
}
