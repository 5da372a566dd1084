//! Trusted issuers: each binds its `iss`, its audiences, its algorithms and its keys into one
//! [`Policy`]. A token is routed by the issuer it claims first (its `iss`, read unverified from
//! the payload), then by its key within that issuer (`kid`, or the algorithm when there is no
//! `kid`); verification then requires that same `iss`, so a key of issuer A never verifies a
//! token claiming issuer B, and two issuers may use the same `kid` without meeting.
//!
//! Keys come from a JWKS document read once, from a remote `jwks_uri` ([`RemoteKeySet`]), or
//! from a [`LocalKeySet`] its owner replaces (the daemon's HSM keys). Changed sets are applied by
//! [`Issuers::sync`], which swaps the issuer's keys and evicts the cache entries its old keys
//! reached; each issuer's set is applied on its own, so one issuer's document never holds up
//! another's. [`crate::EngineHandle::keep_fresh`] runs the refreshes in the background.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jose::{Algorithm, Error, KeySet, KeySetError, Limits, Validation};

use crate::cache::TokenCache;
use crate::policy::Policy;
use crate::remote::RemoteKeySet;

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
#[derive(Debug)]
pub enum KeySource {
    /// A JWK Set document, read once.
    Jwks(Vec<u8>),
    /// Keys in hand, fixed.
    Keys(KeySet),
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
    /// No key of this issuer's JWKS file fits its algorithms.
    NoKeys(String),
    DuplicateIssuer(String),
}

impl std::fmt::Display for IssuersError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IssuersError::KeySet { issuer, error } => write!(f, "issuer {issuer:?}: {error}"),
            IssuersError::NoKeys(issuer) => write!(f, "issuer {issuer:?}: no usable keys"),
            IssuersError::DuplicateIssuer(issuer) => write!(f, "issuer {issuer:?} twice"),
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
    /// Index in `issuers` by `iss`.
    by_iss: HashMap<String, usize>,
    /// The ids of the issuers' policies, sorted: whose cached verdicts a routed lookup may take.
    owners: Vec<u64>,
    limits: Limits,
}

/// How one issuer stands, for readiness and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuerState<'a> {
    pub issuer: &'a str,
    /// Keys in force.
    pub keys: usize,
    /// For how long fetches of the `jwks_uri` have been failing (`None`: the last one worked).
    pub failing_for: Option<Duration>,
}

impl IssuerState<'_> {
    /// `keys` (fresh keys, or keys its owner keeps), `stale` (keys kept while fetches fail) or
    /// `no_keys` (its tokens are refused).
    pub fn status(&self) -> &'static str {
        match (self.keys, self.failing_for) {
            (0, _) => "no_keys",
            (_, Some(_)) => "stale",
            (_, None) => "keys",
        }
    }
}

/// A key set applied by [`Issuers::sync`].
#[derive(Clone, Debug)]
pub struct Applied<'a> {
    pub issuer: &'a str,
    /// Keys now in force.
    pub keys: usize,
}

impl Issuers {
    /// Builds the set from each issuer's spec and key source. A JWKS file must hold a key that
    /// fits the issuer's algorithms; remote and local sets may be empty for now (their issuer's
    /// tokens are refused until they have keys).
    pub fn new(issuers: Vec<(IssuerSpec, KeySource)>) -> Result<Self, IssuersError> {
        let mut set = Issuers::default();
        for (spec, source) in issuers {
            if set.by_iss.contains_key(&spec.issuer) {
                return Err(IssuersError::DuplicateIssuer(spec.issuer));
            }
            let (keys, dynamic, applied) = match source {
                KeySource::Jwks(doc) => {
                    let parsed = KeySet::from_jwks(&doc).map_err(|error| IssuersError::KeySet {
                        issuer: spec.issuer.clone(),
                        error,
                    })?;
                    let keys = keep(&spec, parsed.keys.into_keys())?;
                    if keys.is_empty() {
                        return Err(IssuersError::NoKeys(spec.issuer.clone()));
                    }
                    (keys, None, None)
                }
                KeySource::Keys(keys) => {
                    let keys = keep(&spec, keys.into_keys())?;
                    if keys.is_empty() {
                        return Err(IssuersError::NoKeys(spec.issuer.clone()));
                    }
                    (keys, None, None)
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
            let policy = Arc::new(Policy::new(keys, spec.validation()));
            set.owners.push(policy.id());
            set.by_iss.insert(spec.issuer.clone(), set.issuers.len());
            set.issuers.push(Issuer {
                policy,
                spec,
                dynamic,
                applied: RwLock::new(applied),
            });
        }
        set.owners.sort_unstable();
        Ok(set)
    }

    /// The issuer whose keys should verify `token`: the one its `iss` names (read unverified;
    /// verification requires the same `iss`), if that issuer has a key for it: the `kid`'s, or,
    /// without a `kid`, one for the token's algorithm. `invalid_issuer` for an issuer not
    /// trusted here, `unknown_key` for a key the issuer does not have (yet).
    pub fn route(&self, token: &[u8]) -> Result<&Arc<Policy>, Error> {
        let index = self.issuer_of(token)?;
        let policy = &self.issuers[index].policy;
        let (alg, kid) = jose::jws::peek_key(token, &self.limits)?;
        let keys = policy.keys();
        let known = match &kid {
            Some(kid) => keys.find_kid(kid).is_some(),
            None => keys.iter().any(|k| k.alg() == alg),
        };
        if known {
            Ok(policy)
        } else {
            Err(Error::UnknownKey)
        }
    }

    /// The index of the issuer `token` claims.
    fn issuer_of(&self, token: &[u8]) -> Result<usize, Error> {
        let iss = jose::jwt::peek_issuer(token, &self.limits)?;
        self.by_iss.get(&iss).copied().ok_or(Error::InvalidIssuer)
    }

    /// Whether `owner` is the policy id of one of these issuers: a verdict cached by that policy
    /// is the verdict routing would reach (routing is a function of the token's `iss`, and an
    /// issuer's cached verdicts are evicted when its keys change).
    pub fn owns(&self, owner: u64) -> bool {
        self.owners.binary_search(&owner).is_ok()
    }

    pub fn policies(&self) -> impl Iterator<Item = &Arc<Policy>> {
        self.issuers.iter().map(|i| &i.policy)
    }

    /// Each issuer's state, in configuration order.
    pub fn states(&self) -> impl Iterator<Item = IssuerState<'_>> {
        self.issuers.iter().map(|i| {
            let remote = i.dynamic.as_ref().and_then(Dynamic::remote);
            IssuerState {
                issuer: &i.spec.issuer,
                keys: i.policy.keys().len(),
                failing_for: remote.and_then(|r| r.failing_for()),
            }
        })
    }

    /// Whether any issuer's keys come from a `jwks_uri`.
    pub fn has_remote(&self) -> bool {
        self.remote_sets().next().is_some()
    }

    /// The remote key sets, for metrics: `(issuer, set)`.
    pub fn remote_sets(&self) -> impl Iterator<Item = (&str, &Arc<RemoteKeySet>)> {
        self.issuers.iter().filter_map(|i| {
            let remote = i.dynamic.as_ref().and_then(Dynamic::remote)?;
            Some((i.spec.issuer.as_str(), remote))
        })
    }

    /// Tokens named keys their issuers lack: the remote key sets of those issuers (and only
    /// those) may refetch, each within its cool-down, all at once; then the issuers pick up what
    /// changed. Returns whether anything changed.
    pub async fn unknown_kid<V>(&self, tokens: &[&[u8]], cache: &TokenCache<V>) -> bool {
        let mut wanted: Vec<usize> = tokens
            .iter()
            .filter_map(|t| self.issuer_of(t).ok())
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        let mut fetches = tokio::task::JoinSet::new();
        for index in wanted {
            if let Some(remote) = self.issuers[index]
                .dynamic
                .as_ref()
                .and_then(Dynamic::remote)
            {
                let remote = Arc::clone(remote);
                fetches.spawn(async move { remote.unknown_kid().await });
            }
        }
        let mut fetched = false;
        while let Some(ran) = fetches.join_next().await {
            fetched |= ran.unwrap_or(false);
        }
        // Within the cool-down nothing was fetched: nothing to apply.
        fetched && !self.sync(cache).is_empty()
    }

    /// Refreshes stale remote key sets, all at once (a failure keeps the stale keys until they
    /// have been failing for their `max_stale`), then applies what changed, local key sets
    /// included.
    pub async fn refresh<V>(&self, cache: &TokenCache<V>) -> Vec<Applied<'_>> {
        let mut fetches = tokio::task::JoinSet::new();
        for (_, remote) in self.remote_sets().filter(|(_, r)| r.is_stale()) {
            let remote = Arc::clone(remote);
            fetches.spawn(async move { remote.refresh().await });
        }
        while fetches.join_next().await.is_some() {}
        self.sync(cache)
    }

    /// Applies remote and local key sets that changed since last applied, each issuer on its
    /// own: its keys are swapped and every cache entry it decided is evicted (a key may have
    /// left or been replaced under the same kid, and tokens without a kid name no key). A set
    /// with no usable key is applied as empty: that issuer's tokens are refused until it
    /// publishes keys again. Returns what was applied.
    pub fn sync<V>(&self, cache: &TokenCache<V>) -> Vec<Applied<'_>> {
        let mut applied_now = Vec::new();
        for issuer in &self.issuers {
            let Some(dynamic) = &issuer.dynamic else {
                continue;
            };
            // Held while this issuer's set is swapped, so that concurrent syncs apply one after
            // the other.
            let mut applied = issuer.applied.write().unwrap_or_else(|e| e.into_inner());
            let fetched = dynamic.keys();
            if applied.as_ref().is_some_and(|a| Arc::ptr_eq(a, &fetched)) {
                continue;
            }
            let keys = Arc::new(filter_set(&issuer.spec, &fetched).unwrap_or_default());
            issuer.policy.set_keys(Arc::clone(&keys));
            cache.evict_owner(issuer.policy.id());
            *applied = Some(fetched);
            applied_now.push(Applied {
                issuer: &issuer.spec.issuer,
                keys: keys.len(),
            });
        }
        applied_now
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
    KeySet::new(keys).map_err(|error| IssuersError::KeySet {
        issuer: spec.issuer.clone(),
        error,
    })
}
