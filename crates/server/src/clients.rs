//! The callers of `/introspect` and `/v1/verify`: client ids with secrets stored as PBKDF2
//! password hashes, presented with HTTP Basic (RFC 6749 section 2.3.1).
//!
//! A hash costs hundreds of milliseconds by design, so a verified credential is remembered (by
//! the SHA-256 of the whole header value, bounded) and hash checks run on the blocking pool,
//! a few at a time: a flood of wrong secrets cannot take the request threads. Failed checks are
//! limited per source address ([`Failures`]), so that a flood cannot keep the few checks busy
//! either.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::digest::{digest, SHA256};
use base64::Engine as _;

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

/// The configured clients and the credentials already verified.
#[derive(Debug)]
pub struct Clients {
    clients: HashMap<String, Arc<SecretHash>>,
    /// What each client may call.
    permissions: HashMap<String, Vec<Permission>>,
    /// SHA-256 of an accepted `Authorization` value → the client id.
    verified: Mutex<HashMap<[u8; 32], Arc<str>>>,
    checks: Arc<tokio::sync::Semaphore>,
    /// Checked for unknown client ids, as costly as the costliest real hash.
    decoy: Arc<SecretHash>,
    /// Unique per `Clients`, for the per-thread memo.
    id: u64,
    /// Secret hashes computed so far (`tessera_client_secret_hashes_total`).
    hashes: Arc<AtomicU64>,
    failures: Arc<Failures>,
}

/// Per request thread, the last credentials this thread saw verified: (whose, digest, client).
/// Spares the shared map's lock on the hot path; the client set never changes after start.
const THREAD_MEMO: usize = 4;
type Memo = Vec<(u64, [u8; 32], Arc<str>)>;
thread_local! {
    static MEMO: std::cell::RefCell<Memo> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Clients {
    pub fn new(clients: &[Client], failures: FailureLimit) -> Self {
        Clients {
            clients: clients
                .iter()
                .map(|c| (c.id.clone(), Arc::new(c.secret.clone())))
                .collect(),
            permissions: clients
                .iter()
                .map(|c| (c.id.clone(), c.permissions.clone()))
                .collect(),
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
        }
    }

    /// Whether the authenticated client `id` may call what `permission` covers.
    pub fn permits(&self, id: &str, permission: Permission) -> bool {
        self.permissions
            .get(id)
            .is_some_and(|granted| granted.contains(&permission))
    }

    /// Secret hashes computed so far (each a full PBKDF2 run).
    pub fn hashes(&self) -> u64 {
        self.hashes.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// The client id the `Authorization` header value proves, sent from `peer`.
    pub async fn authenticate(
        &self,
        authorization: Option<&[u8]>,
        peer: IpAddr,
    ) -> Result<Arc<str>, AuthError> {
        let value = authorization.ok_or(AuthError::Missing)?;
        let key: [u8; 32] = digest(&SHA256, value)
            .as_ref()
            .try_into()
            .map_err(|_| AuthError::Refused)?;
        if let Some(id) = self.remembered(&key) {
            return Ok(id);
        }
        let (id, secret) = parse_basic(value).ok_or(AuthError::Refused)?;
        // An unknown client costs the same hash as a known one, so that the time taken does
        // not tell which client ids exist.
        let (hash, known) = match self.clients.get(&id) {
            Some(hash) => (Arc::clone(hash), true),
            None => (Arc::clone(&self.decoy), false),
        };
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
        let id: Arc<str> = id.into();
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if verified.len() >= REMEMBERED {
            verified.clear();
        }
        verified.insert(key, Arc::clone(&id));
        Ok(id)
    }

    fn remembered(&self, key: &[u8; 32]) -> Option<Arc<str>> {
        let local = MEMO.with(|memo| {
            memo.borrow()
                .iter()
                .find(|(owner, digest, _)| *owner == self.id && digest == key)
                .map(|(_, _, client)| Arc::clone(client))
        });
        if local.is_some() {
            return local;
        }
        let shared = self
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()?;
        MEMO.with(|memo| {
            let mut memo = memo.borrow_mut();
            if memo.len() >= THREAD_MEMO {
                memo.remove(0);
            }
            // A copy of its own, so that its count stays on this thread.
            memo.push((self.id, *key, Arc::from(&*shared)));
        });
        Some(shared)
    }
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
fn parse_basic(value: &[u8]) -> Option<(String, String)> {
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
            &[Client {
                id: "gw".into(),
                secret: SecretHash::new(b"pw", 1000).unwrap(),
                permissions: vec![crate::config::Permission::Introspect],
            }],
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
