//! Trusted issuers: each binds its `iss`, its audiences, its algorithms and its keys into one
//! [`Policy`]. A token is routed to an issuer by what its header says about its key (`kid`, or
//! the algorithm when there is no `kid`), then verified with that issuer's keys *and* required to
//! claim that issuer, so a key of issuer A never verifies a token claiming issuer B.
//!
//! Keys come from a JWKS document read once, from a remote `jwks_uri` ([`RemoteKeySet`]), or
//! from a [`LocalKeySet`] its owner replaces (the daemon's HSM keys). Changed sets are applied by
//! [`Issuers::sync`], which swaps the issuer's keys and evicts the cache entries of keys that
//! left; [`Issuers::keep_fresh`] runs the refreshes in the background.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jose::{Algorithm, Error, KeySet, KeySetError, Limits, Validation};

use crate::cache::TokenCache;
use crate::remote::RemoteKeySet;
use crate::Policy;

/// One trusted issuer, as configured.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IssuerSpec {
    /// The exact `iss` its tokens carry.
    pub issuer: String,
    /// Accepted audiences; empty means `aud` is not checked.
    pub audiences: Vec<String>,
    /// Algorithms this issuer signs with; keys for others are left out. Empty means all.
    pub algorithms: Vec<Algorithm>,
    /// The header `typ` its tokens must carry (`at+jwt` for RFC 9068 access tokens), compared
    /// without case and with an optional `application/` prefix; `None`: not checked.
    pub typ: Option<String>,
    /// Claims its tokens must carry, whatever their value.
    pub required_claims: Vec<String>,
    /// The longest lifetime accepted, in seconds: `exp - iat`, or `exp - now` without `iat`.
    pub max_lifetime: Option<u64>,
}

impl IssuerSpec {
    /// The claims policy of this issuer's tokens.
    pub fn validation(&self) -> Validation {
        let mut validation = Validation::default().with_issuer(self.issuer.clone());
        validation.audiences = self.audiences.clone();
        validation.typ = self.typ.clone();
        validation.required_claims = self.required_claims.clone();
        validation.max_lifetime = self.max_lifetime;
        validation
    }
}

/// Where an issuer's keys come from.
#[derive(Clone, Debug)]
pub enum KeySource {
    /// A JWK Set document, read once.
    Jwks(Vec<u8>),
    /// A `jwks_uri`, kept fresh.
    Remote(Arc<RemoteKeySet>),
    /// Keys that the process itself keeps current (the HSM's published keys).
    Local(Arc<LocalKeySet>),
}

/// A key set its owner replaces; the issuers pick the change up at their next
/// [`Issuers::sync`].
#[derive(Debug, Default)]
pub struct LocalKeySet {
    keys: RwLock<Arc<KeySet>>,
}

impl LocalKeySet {
    pub fn new(keys: KeySet) -> Self {
        LocalKeySet {
            keys: RwLock::new(Arc::new(keys)),
        }
    }

    pub fn keys(&self) -> Arc<KeySet> {
        Arc::clone(&self.keys.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Replaces the keys (even with equal ones: the next sync re-applies them).
    pub fn set(&self, keys: KeySet) {
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
    }
}

/// A key set that changes while the issuers run.
#[derive(Clone, Debug)]
enum Dynamic {
    Remote(Arc<RemoteKeySet>),
    Local(Arc<LocalKeySet>),
}

impl Dynamic {
    fn keys(&self) -> Arc<KeySet> {
        match self {
            Dynamic::Remote(remote) => remote.keys(),
            Dynamic::Local(local) => local.keys(),
        }
    }

    fn remote(&self) -> Option<&Arc<RemoteKeySet>> {
        match self {
            Dynamic::Remote(remote) => Some(remote),
            Dynamic::Local(_) => None,
        }
    }
}

/// Why an issuer set was refused: the configuration's fault.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IssuersError {
    KeySet {
        issuer: String,
        error: KeySetError,
    },
    /// No key of this issuer fits its algorithms.
    NoKeys(String),
    DuplicateIssuer(String),
    /// Two issuers publish the same `kid`: tokens could not be routed.
    SharedKid {
        kid: String,
        issuers: (String, String),
    },
}

impl std::fmt::Display for IssuersError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IssuersError::KeySet { issuer, error } => write!(f, "issuer {issuer:?}: {error}"),
            IssuersError::NoKeys(issuer) => write!(f, "issuer {issuer:?}: no usable keys"),
            IssuersError::DuplicateIssuer(issuer) => write!(f, "issuer {issuer:?} twice"),
            IssuersError::SharedKid { kid, issuers } => write!(
                f,
                "kid {kid:?} is published by both {:?} and {:?}",
                issuers.0, issuers.1
            ),
        }
    }
}

impl std::error::Error for IssuersError {}

#[derive(Debug)]
struct Issuer {
    spec: IssuerSpec,
    policy: Arc<Policy>,
    dynamic: Option<Dynamic>,
    /// The changing key set last applied, to tell a refresh from no change.
    applied: RwLock<Option<Arc<KeySet>>>,
}

/// The trusted issuers, ready to route tokens.
#[derive(Debug, Default)]
pub struct Issuers {
    issuers: Vec<Issuer>,
    by_kid: RwLock<HashMap<String, usize>>,
    limits: Limits,
    /// Unique per `Issuers`, and bumped at every change of routing: the per-thread memo of
    /// routes is only believed for the same set and generation.
    id: u64,
    generation: AtomicU64,
    refused: std::sync::Mutex<Vec<String>>,
}

/// Per thread, the last few routes taken: (issuers id, generation, encoded header, issuer).
/// Routing is a function of the header and the key sets, and most traffic carries a handful of
/// distinct headers: this spares parsing the header again and any shared lock.
type RouteMemo = Vec<(u64, u64, Box<[u8]>, usize)>;
const ROUTE_MEMO: usize = 8;
/// Longer headers are not remembered.
const MEMO_HEADER: usize = 512;
thread_local! {
    static ROUTES: std::cell::RefCell<RouteMemo> = const { std::cell::RefCell::new(Vec::new()) };
}
static ISSUERS_IDS: AtomicU64 = AtomicU64::new(1);

impl Issuers {
    /// Builds the set from each issuer's spec and key source.
    pub fn new(issuers: Vec<(IssuerSpec, KeySource)>) -> Result<Self, IssuersError> {
        let mut set = Issuers {
            id: ISSUERS_IDS.fetch_add(1, Ordering::Relaxed),
            ..Issuers::default()
        };
        for (spec, source) in issuers {
            if set.issuers.iter().any(|i| i.spec.issuer == spec.issuer) {
                return Err(IssuersError::DuplicateIssuer(spec.issuer));
            }
            let (keys, dynamic, applied) = match source {
                KeySource::Jwks(doc) => {
                    let parsed = KeySet::from_jwks(&doc).map_err(|error| IssuersError::KeySet {
                        issuer: spec.issuer.clone(),
                        error,
                    })?;
                    (keep(&spec, parsed.keys.into_keys())?, None, None)
                }
                KeySource::Remote(remote) => {
                    let current = remote.keys();
                    (
                        filter_set(&spec, &current)?,
                        Some(Dynamic::Remote(remote)),
                        Some(current),
                    )
                }
                KeySource::Local(local) => {
                    let current = local.keys();
                    (
                        filter_set(&spec, &current)?,
                        Some(Dynamic::Local(local)),
                        Some(current),
                    )
                }
            };
            set.issuers.push(Issuer {
                policy: Arc::new(Policy::new(keys, spec.validation())),
                spec,
                dynamic,
                applied: RwLock::new(applied),
            });
        }
        let keys: Vec<Arc<KeySet>> = set.issuers.iter().map(|i| i.policy.keys()).collect();
        let map = set.kid_map(|i| &keys[i])?;
        *set.by_kid.write().unwrap_or_else(|e| e.into_inner()) = map;
        Ok(set)
    }

    /// Routing by kid over each issuer's keys as `keys_of` gives them.
    fn kid_map<'k>(
        &self,
        keys_of: impl Fn(usize) -> &'k KeySet,
    ) -> Result<HashMap<String, usize>, IssuersError> {
        let mut map: HashMap<String, usize> = HashMap::new();
        for (index, issuer) in self.issuers.iter().enumerate() {
            for key in keys_of(index).iter() {
                let Some(kid) = key.kid() else { continue };
                if let Some(&other) = map.get(kid) {
                    return Err(IssuersError::SharedKid {
                        kid: kid.into(),
                        issuers: (
                            self.issuers[other].spec.issuer.clone(),
                            issuer.spec.issuer.clone(),
                        ),
                    });
                }
                map.insert(kid.into(), index);
            }
        }
        Ok(map)
    }

    /// The issuer whose keys should verify `token`: by `kid`, or, without one, the only issuer
    /// with a key for the token's algorithm.
    pub fn route(&self, token: &[u8]) -> Result<&Arc<Policy>, Error> {
        let header = token.split(|&b| b == b'.').next().unwrap_or(token);
        let generation = self.generation.load(Ordering::Acquire);
        let remembered = ROUTES.with(|memo| {
            memo.borrow()
                .iter()
                .find(|(id, g, h, _)| *id == self.id && *g == generation && **h == *header)
                .map(|&(_, _, _, index)| index)
        });
        if let Some(index) = remembered {
            return Ok(&self.issuers[index].policy);
        }
        let index = self.route_index(token)?;
        // Remembered only if routing did not change meanwhile (sync bumps the generation
        // after swapping the routing map).
        if header.len() <= MEMO_HEADER && self.generation.load(Ordering::Acquire) == generation {
            ROUTES.with(|memo| {
                let mut memo = memo.borrow_mut();
                if memo.len() >= ROUTE_MEMO {
                    memo.remove(0);
                }
                memo.push((self.id, generation, header.into(), index));
            });
        }
        Ok(&self.issuers[index].policy)
    }

    fn route_index(&self, token: &[u8]) -> Result<usize, Error> {
        let (alg, kid) = jose::jws::peek_key(token, &self.limits)?;
        match kid {
            Some(kid) => self
                .by_kid
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&kid)
                .copied()
                .ok_or(Error::UnknownKey),
            None => {
                let mut fits = self
                    .issuers
                    .iter()
                    .enumerate()
                    .filter(|(_, i)| i.policy.keys().iter().any(|k| k.alg() == alg));
                match (fits.next(), fits.next()) {
                    (Some((index, _)), None) => Ok(index),
                    (None, _) => Err(Error::UnknownKey),
                    (Some(_), Some(_)) => Err(Error::AmbiguousKey),
                }
            }
        }
    }

    pub fn policies(&self) -> impl Iterator<Item = &Arc<Policy>> {
        self.issuers.iter().map(|i| &i.policy)
    }

    /// Whether any issuer's keys come from a `jwks_uri`.
    pub fn has_remote(&self) -> bool {
        self.remotes().next().is_some()
    }

    fn remotes(&self) -> impl Iterator<Item = &Arc<RemoteKeySet>> {
        self.issuers
            .iter()
            .filter_map(|i| i.dynamic.as_ref().and_then(Dynamic::remote))
    }

    /// The remote key sets, for metrics: `(issuer, set)`.
    pub fn remote_sets(&self) -> impl Iterator<Item = (&str, &Arc<RemoteKeySet>)> {
        self.issuers.iter().filter_map(|i| {
            let remote = i.dynamic.as_ref().and_then(Dynamic::remote)?;
            Some((i.spec.issuer.as_str(), remote))
        })
    }

    /// A token named an unknown `kid`: each remote key set may refetch (within its cool-down),
    /// all at once, then the issuers pick up what changed. Returns whether anything changed.
    pub async fn unknown_kid<V>(&self, cache: &TokenCache<V>) -> bool {
        let mut fetches = tokio::task::JoinSet::new();
        for remote in self.remotes() {
            let remote = Arc::clone(remote);
            fetches.spawn(async move { remote.unknown_kid().await });
        }
        let mut fetched = false;
        while let Some(ran) = fetches.join_next().await {
            fetched |= ran.unwrap_or(false);
        }
        // Within the cool-down nothing was fetched: nothing to apply, no write lock taken.
        fetched && self.sync(cache)
    }

    /// Refreshes stale remote key sets, all at once (failures keep the stale keys), then
    /// applies what changed, local key sets included.
    pub async fn refresh<V>(&self, cache: &TokenCache<V>) -> bool {
        let mut fetches = tokio::task::JoinSet::new();
        for remote in self.remotes().filter(|r| r.is_stale()) {
            let remote = Arc::clone(remote);
            fetches.spawn(async move { remote.refresh().await });
        }
        while fetches.join_next().await.is_some() {}
        self.sync(cache)
    }

    /// Runs [`Issuers::refresh`] every `every` on the current Tokio runtime, until the task is
    /// aborted: remote key sets are refetched when their `Cache-Control` age runs out, and
    /// local key set changes reach verification within `every`.
    pub fn keep_fresh(
        issuers: Arc<Issuers>,
        engine: crate::EngineHandle,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                issuers.refresh(engine.cache()).await;
            }
        })
    }

    /// Applies remote and local key sets that changed since last applied: each changed issuer's
    /// keys are swapped, every cache entry that issuer decided is evicted (a key may have left
    /// or been replaced under the same kid, and tokens without a kid name no key), and routing
    /// is rebuilt. Issuers are applied one by one: a set whose kids clash with another
    /// issuer's is not applied (its keys in force stay; the others go ahead) and is named in
    /// [`Issuers::refused`]. A set with no usable key is applied as empty: that issuer's tokens
    /// are refused until it publishes keys again. Returns whether anything changed.
    pub fn sync<V>(&self, cache: &TokenCache<V>) -> bool {
        // Held throughout, so that concurrent syncs apply one after the other.
        let mut by_kid = self.by_kid.write().unwrap_or_else(|e| e.into_inner());
        let mut current: Vec<Arc<KeySet>> = self.issuers.iter().map(|i| i.policy.keys()).collect();
        let mut applied_any = false;
        let mut refused = Vec::new();
        for (index, issuer) in self.issuers.iter().enumerate() {
            let Some(dynamic) = &issuer.dynamic else {
                continue;
            };
            let fetched = dynamic.keys();
            let applied = issuer.applied.read().unwrap_or_else(|e| e.into_inner());
            if applied.as_ref().is_some_and(|a| Arc::ptr_eq(a, &fetched)) {
                continue;
            }
            drop(applied);
            let keys = filter_set(&issuer.spec, &fetched).unwrap_or_default();
            let previous = std::mem::replace(&mut current[index], Arc::new(keys));
            match self.kid_map(|i| &current[i]) {
                Ok(map) => {
                    issuer.policy.set_keys(Arc::clone(&current[index]));
                    cache.evict_owner(issuer.policy.id());
                    *issuer.applied.write().unwrap_or_else(|e| e.into_inner()) = Some(fetched);
                    *by_kid = map;
                    applied_any = true;
                }
                Err(_) => {
                    current[index] = previous;
                    refused.push(issuer.spec.issuer.clone());
                }
            }
        }
        *self.refused.lock().unwrap_or_else(|e| e.into_inner()) = refused;
        if applied_any {
            // Routes remembered before this point are not believed any more.
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        applied_any
    }

    /// Issuers whose latest key set was not applied at the last sync because its kids clash
    /// with another issuer's (for logs and metrics).
    pub fn refused(&self) -> Vec<String> {
        self.refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The keys of a fetched set that `spec` accepts, as a new set (keys are shared, not copied).
fn filter_set(spec: &IssuerSpec, keys: &Arc<KeySet>) -> Result<KeySet, IssuersError> {
    keep(spec, keys.iter().cloned().collect())
}

fn keep(spec: &IssuerSpec, keys: Vec<jose::VerifyingKey>) -> Result<KeySet, IssuersError> {
    let keys: Vec<_> = keys
        .into_iter()
        .filter(|k| spec.algorithms.is_empty() || spec.algorithms.contains(&k.alg()))
        .collect();
    if keys.is_empty() {
        return Err(IssuersError::NoKeys(spec.issuer.clone()));
    }
    KeySet::new(keys).map_err(|error| IssuersError::KeySet {
        issuer: spec.issuer.clone(),
        error,
    })
}
