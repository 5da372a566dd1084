//! The verified-token cache: gateways send the same hot tokens again and again, and a token that
//! verified once need not be verified again until it expires.
//!
//! - Keyed by the SHA-256 of the whole token: a collision cannot be crafted, so a hit is as good
//!   as a verification. Inside a shard the digest is hashed again with a per-process random
//!   SipHash key, so that nobody can aim many entries at one bucket either.
//! - Sharded by the digest's first bytes; each shard is a mutex-guarded map, bounded in entries
//!   and in bytes, evicting in insertion order (oldest first).
//! - A verified entry lives until `min(exp, now + ttl)`; a failed verification can be remembered
//!   for a short, separately bounded time, so a flood of one bad token costs one verification.
//! - Entries die when the key set of the issuer that decided them changes
//!   ([`TokenCache::evict_owner`], from `Issuers::sync`), or when a revocation hook names
//!   their `kid`, `jti`, `sub` or token.

use std::collections::hash_map::{Entry, RandomState};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use aws_lc_rs::digest;

/// SHA-256 of a whole compact token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TokenDigest([u8; 32]);

impl TokenDigest {
    pub fn of(token: &[u8]) -> Self {
        let mut out = [0u8; 32];
        out.copy_from_slice(digest::digest(&digest::SHA256, token).as_ref());
        TokenDigest(out)
    }

    fn shard(&self, mask: usize) -> usize {
        usize::from(u16::from_le_bytes([self.0[0], self.0[1]])) & mask
    }
}

/// What the cache remembers about a token.
#[derive(Debug)]
pub enum Cached<V> {
    /// It verified; `V` is what the verifier produced (claims and the like).
    Valid(Arc<V>),
    /// It failed with this error code.
    Invalid(&'static str),
}

impl<V> Clone for Cached<V> {
    fn clone(&self) -> Self {
        match self {
            Cached::Valid(v) => Cached::Valid(Arc::clone(v)),
            Cached::Invalid(code) => Cached::Invalid(code),
        }
    }
}

/// Bounds and lifetimes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    /// Number of shards (rounded up to a power of two).
    pub shards: usize,
    /// Most verified entries, over all shards.
    pub max_entries: usize,
    /// Most bytes of verified entries (as estimated by the caller), over all shards.
    pub max_bytes: usize,
    /// Longest a verified entry lives, in seconds, whatever its `exp`.
    pub ttl: i64,
    /// How long a failure is remembered, in seconds; 0 disables the negative cache.
    pub negative_ttl: i64,
    /// Most failures remembered, over all shards.
    pub max_negative: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            shards: 64,
            max_entries: 1 << 20,
            max_bytes: 512 << 20,
            ttl: 300,
            negative_ttl: 5,
            max_negative: 1 << 16,
        }
    }
}

/// Counters for the daemon's metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub entries: usize,
    pub bytes: usize,
    pub negative: usize,
}

struct Item<V> {
    verdict: Cached<V>,
    /// Who decided: the verdict holds only for lookups by the same owner (a policy).
    owner: u64,
    /// Unix seconds after which the entry is dead.
    until: i64,
    bytes: usize,
    kid: Option<Arc<str>>,
    jti: Option<Box<str>>,
    sub: Option<Box<str>>,
}

struct Shard<V> {
    items: HashMap<TokenDigest, Item<V>, RandomState>,
    /// Insertion order of verified entries and of failures, for eviction.
    order: VecDeque<TokenDigest>,
    negative_order: VecDeque<TokenDigest>,
    bytes: usize,
    valid: usize,
    negative: usize,
}

impl<V> Shard<V> {
    fn remove(&mut self, key: &TokenDigest) -> Option<Item<V>> {
        let item = self.items.remove(key)?;
        match item.verdict {
            Cached::Valid(_) => {
                self.valid -= 1;
                self.bytes -= item.bytes;
            }
            Cached::Invalid(_) => self.negative -= 1,
        }
        Some(item)
    }

    /// Pops the oldest keys of `order` (skipping keys already gone) until `over` says stop.
    fn evict(&mut self, negative: bool, over: impl Fn(&Self) -> bool) {
        while over(self) {
            let queue = if negative {
                &mut self.negative_order
            } else {
                &mut self.order
            };
            let Some(key) = queue.pop_front() else {
                return;
            };
            let matches = self
                .items
                .get(&key)
                .is_some_and(|i| matches!(i.verdict, Cached::Invalid(_)) == negative);
            if matches {
                self.remove(&key);
            }
        }
    }

    /// Drops keys of entries that are gone from the eviction queues once the queues have grown
    /// past twice the live entries, so expired and replaced entries cannot make them grow
    /// without bound.
    fn compact(&mut self) {
        let live = self.items.len().max(16);
        if self.order.len() + self.negative_order.len() > 2 * live {
            let items = &self.items;
            self.order.retain(|k| items.contains_key(k));
            self.negative_order.retain(|k| items.contains_key(k));
        }
    }

    fn retain(&mut self, keep: impl Fn(&Item<V>) -> bool) {
        let dead: Vec<TokenDigest> = self
            .items
            .iter()
            .filter(|(_, item)| !keep(item))
            .map(|(k, _)| *k)
            .collect();
        for key in dead {
            self.remove(&key);
        }
    }
}

/// The cache. `V` is the verified value handed back on a hit.
pub struct TokenCache<V> {
    shards: Box<[Mutex<Shard<V>>]>,
    mask: usize,
    config: CacheConfig,
    per_shard_entries: usize,
    per_shard_bytes: usize,
    per_shard_negative: usize,
}

impl<V> std::fmt::Debug for TokenCache<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Facts about a verified token that decide when its entry dies.
#[derive(Clone, Debug, Default)]
pub struct Facts<'a> {
    /// `exp`, in Unix seconds.
    pub exp: Option<i64>,
    pub kid: Option<&'a str>,
    pub jti: Option<&'a str>,
    pub sub: Option<&'a str>,
    /// The caller's estimate of the memory the value holds.
    pub bytes: usize,
}

impl<V> TokenCache<V> {
    pub fn new(config: CacheConfig) -> Self {
        let shards = config.shards.max(1).next_power_of_two();
        let per = |total: usize| total.div_ceil(shards).max(1);
        TokenCache {
            shards: (0..shards)
                .map(|_| {
                    Mutex::new(Shard {
                        items: HashMap::with_hasher(RandomState::new()),
                        order: VecDeque::new(),
                        negative_order: VecDeque::new(),
                        bytes: 0,
                        valid: 0,
                        negative: 0,
                    })
                })
                .collect(),
            mask: shards - 1,
            per_shard_entries: per(config.max_entries),
            per_shard_bytes: per(config.max_bytes),
            per_shard_negative: per(config.max_negative),
            config,
        }
    }

    fn shard(&self, key: &TokenDigest) -> std::sync::MutexGuard<'_, Shard<V>> {
        self.shards[key.shard(self.mask)]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The verdict `owner` remembered for `token` at `now`, if any and still alive. A verdict
    /// is only ever answered to the owner (the policy) that reached it.
    pub fn get(&self, token: &[u8], owner: u64, now: i64) -> Option<Cached<V>> {
        self.get_digest(&TokenDigest::of(token), owner, now)
    }

    pub fn get_digest(&self, key: &TokenDigest, owner: u64, now: i64) -> Option<Cached<V>> {
        self.get_digest_by(key, |o| o == owner, now)
    }

    /// The verdict remembered for the token with digest `key` at `now`, if its owner is one
    /// that `owner` accepts and it is still alive.
    pub fn get_digest_by(
        &self,
        key: &TokenDigest,
        owner: impl Fn(u64) -> bool,
        now: i64,
    ) -> Option<Cached<V>> {
        let mut shard = self.shard(key);
        match shard.items.get(key) {
            Some(item) if !owner(item.owner) => None,
            Some(item) if now < item.until => Some(item.verdict.clone()),
            Some(_) => {
                shard.remove(key);
                None
            }
            None => None,
        }
    }

    /// Remembers that `token` verified, producing `value`, until `min(exp, now + ttl)`.
    pub fn insert_valid(
        &self,
        key: TokenDigest,
        owner: u64,
        value: Arc<V>,
        facts: Facts<'_>,
        now: i64,
    ) {
        let until = facts
            .exp
            .map_or(i64::MAX, |exp| exp)
            .min(now.saturating_add(self.config.ttl));
        if until <= now || facts.bytes > self.per_shard_bytes {
            return;
        }
        let item = Item {
            verdict: Cached::Valid(value),
            owner,
            until,
            bytes: facts.bytes,
            kid: facts.kid.map(Arc::from),
            jti: facts.jti.map(Box::from),
            sub: facts.sub.map(Box::from),
        };
        let (max_entries, max_bytes) = (self.per_shard_entries, self.per_shard_bytes);
        let mut shard = self.shard(&key);
        shard.remove(&key);
        shard.evict(false, |s| {
            s.valid + 1 > max_entries || s.bytes + item.bytes > max_bytes
        });
        shard.valid += 1;
        shard.bytes += item.bytes;
        shard.compact();
        shard.order.push_back(key);
        shard.items.insert(key, item);
    }

    /// Remembers briefly that `token` failed with `code`. A failure never replaces a live
    /// verified entry.
    pub fn insert_invalid(&self, key: TokenDigest, owner: u64, code: &'static str, now: i64) {
        if self.config.negative_ttl <= 0 {
            return;
        }
        let max = self.per_shard_negative;
        let mut shard = self.shard(&key);
        match shard.items.entry(key) {
            Entry::Occupied(e) if matches!(e.get().verdict, Cached::Valid(_)) => return,
            Entry::Occupied(_) => {
                shard.remove(&key);
            }
            Entry::Vacant(_) => {}
        }
        shard.evict(true, |s| s.negative + 1 > max);
        shard.negative += 1;
        shard.compact();
        shard.negative_order.push_back(key);
        shard.items.insert(
            key,
            Item {
                verdict: Cached::Invalid(code),
                owner,
                until: now.saturating_add(self.config.negative_ttl),
                bytes: 0,
                kid: None,
                jti: None,
                sub: None,
            },
        );
    }

    /// Revocation hook: drops every entry verified with key `kid` (a compromised key).
    pub fn evict_kid(&self, kid: &str) -> usize {
        self.retain_all(|item| item.kid.as_deref() != Some(kid))
    }

    /// Drops every entry `owner` decided (its key set changed: a key left or was replaced, and
    /// a token without a `kid` may have been verified with it).
    pub fn evict_owner(&self, owner: u64) -> usize {
        self.retain_all(|item| item.owner != owner)
    }

    /// Revocation hook: drops every entry with this `jti`.
    pub fn revoke_jti(&self, jti: &str) -> usize {
        self.retain_all(|item| item.jti.as_deref() != Some(jti))
    }

    /// Revocation hook: drops every entry with this `sub`.
    pub fn revoke_sub(&self, sub: &str) -> usize {
        self.retain_all(|item| item.sub.as_deref() != Some(sub))
    }

    /// Revocation hook: drops the entry of this token.
    pub fn revoke_token(&self, token: &[u8]) -> bool {
        let key = TokenDigest::of(token);
        self.shard(&key).remove(&key).is_some()
    }

    fn retain_all(&self, keep: impl Fn(&Item<V>) -> bool) -> usize {
        let mut dropped = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            let before = shard.items.len();
            shard.retain(&keep);
            dropped += before - shard.items.len();
        }
        dropped
    }

    pub fn stats(&self) -> CacheStats {
        self.shards
            .iter()
            .fold(CacheStats::default(), |acc, shard| {
                let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
                CacheStats {
                    entries: acc.entries + shard.valid,
                    bytes: acc.bytes + shard.bytes,
                    negative: acc.negative + shard.negative,
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(shards: usize, max_entries: usize) -> TokenCache<String> {
        TokenCache::new(CacheConfig {
            shards,
            max_entries,
            max_bytes: 1 << 20,
            ttl: 100,
            negative_ttl: 5,
            max_negative: 4,
        })
    }

    fn facts(exp: i64) -> Facts<'static> {
        Facts {
            exp: Some(exp),
            bytes: 10,
            ..Facts::default()
        }
    }

    fn valid(c: &TokenCache<String>, token: &str, now: i64) -> Option<String> {
        match c.get(token.as_bytes(), 0, now) {
            Some(Cached::Valid(v)) => Some((*v).clone()),
            _ => None,
        }
    }

    #[test]
    fn entries_live_until_exp_or_ttl() {
        let c = cache(4, 100);
        let key = TokenDigest::of(b"a.b.c");
        c.insert_valid(key, 0, Arc::new("claims".into()), facts(1050), 1000);
        assert_eq!(valid(&c, "a.b.c", 1049).as_deref(), Some("claims"));
        assert_eq!(valid(&c, "a.b.c", 1050), None, "dies at exp");
        assert_eq!(c.stats().entries, 0, "a dead entry is dropped when met");
        c.insert_valid(key, 0, Arc::new("claims".into()), facts(9999), 1000);
        assert!(valid(&c, "a.b.c", 1099).is_some());
        assert!(valid(&c, "a.b.c", 1100).is_none(), "dies at now + ttl");
        // Already expired: not stored.
        c.insert_valid(key, 0, Arc::new("x".into()), facts(999), 1000);
        assert!(valid(&c, "a.b.c", 1000).is_none());
        // Another token is another key, whatever it shares with the first.
        c.insert_valid(key, 0, Arc::new("claims".into()), facts(9999), 1000);
        assert!(valid(&c, "a.b.d", 1001).is_none());
    }

    #[test]
    fn bounded_in_entries_and_bytes_oldest_first() {
        let c = cache(1, 3);
        for i in 0..5 {
            let key = TokenDigest::of(format!("t{i}").as_bytes());
            c.insert_valid(key, 0, Arc::new(format!("v{i}")), facts(9999), 0);
        }
        assert_eq!(c.stats().entries, 3);
        assert!(valid(&c, "t0", 1).is_none() && valid(&c, "t1", 1).is_none());
        assert_eq!(valid(&c, "t4", 1).as_deref(), Some("v4"));

        let c: TokenCache<String> = TokenCache::new(CacheConfig {
            shards: 1,
            max_bytes: 25,
            ..CacheConfig::default()
        });
        for i in 0..4 {
            let key = TokenDigest::of(format!("t{i}").as_bytes());
            c.insert_valid(key, 0, Arc::new(format!("v{i}")), facts(9999), 0);
        }
        assert_eq!(
            c.stats(),
            CacheStats {
                entries: 2,
                bytes: 20,
                negative: 0
            }
        );
        // One entry bigger than the whole budget is not kept.
        let huge = Facts {
            bytes: 26,
            ..facts(9999)
        };
        c.insert_valid(TokenDigest::of(b"huge"), 0, Arc::new("h".into()), huge, 0);
        assert!(valid(&c, "huge", 1).is_none());
    }

    #[test]
    fn failures_are_remembered_briefly_and_bounded() {
        let c = cache(1, 10);
        let bad = TokenDigest::of(b"bad");
        c.insert_invalid(bad, 0, "bad_signature", 100);
        assert!(matches!(
            c.get(b"bad", 0, 104),
            Some(Cached::Invalid("bad_signature"))
        ));
        assert!(c.get(b"bad", 0, 105).is_none());
        // A flood of distinct bad tokens keeps at most max_negative of them...
        for i in 0..50 {
            c.insert_invalid(
                TokenDigest::of(format!("bad{i}").as_bytes()),
                0,
                "malformed",
                200,
            );
        }
        assert_eq!(c.stats().negative, 4);
        // ...and never displaces a verified entry or replaces it.
        let good = TokenDigest::of(b"good");
        c.insert_valid(good, 0, Arc::new("ok".into()), facts(9999), 200);
        c.insert_invalid(good, 0, "expired", 200);
        assert_eq!(valid(&c, "good", 201).as_deref(), Some("ok"));
        assert_eq!(c.stats().entries, 1);
    }

    #[test]
    fn verdicts_are_answered_only_to_their_owner() {
        let c = cache(4, 100);
        let key = TokenDigest::of(b"t");
        c.insert_valid(key, 1, Arc::new("by one".into()), facts(9999), 0);
        assert!(c.get(b"t", 1, 1).is_some());
        assert!(c.get(b"t", 2, 1).is_none(), "another policy never sees it");
        c.insert_invalid(TokenDigest::of(b"u"), 1, "expired", 0);
        assert!(c.get(b"u", 2, 1).is_none());
    }

    #[test]
    fn keys_and_revocations_drop_entries() {
        let c = cache(8, 100);
        let put = |token: &str, kid: &'static str, jti: &'static str, sub: &'static str| {
            let f = Facts {
                exp: Some(9999),
                kid: Some(kid),
                jti: Some(jti),
                sub: Some(sub),
                bytes: 1,
            };
            c.insert_valid(
                TokenDigest::of(token.as_bytes()),
                0,
                Arc::new(token.into()),
                f,
                0,
            );
        };
        put("t1", "k1", "j1", "alice");
        put("t2", "k1", "j2", "bob");
        put("t3", "k2", "j3", "alice");
        put("t4", "k2", "j4", "carol");
        assert_eq!(c.evict_kid("k1"), 2);
        assert!(valid(&c, "t1", 1).is_none() && valid(&c, "t3", 1).is_some());
        assert_eq!(c.revoke_sub("alice"), 1);
        assert!(valid(&c, "t3", 1).is_none());
        assert_eq!(c.revoke_jti("j4"), 1);
        assert!(!c.revoke_token(b"t4"));
        put("t5", "k2", "j5", "dave");
        assert!(c.revoke_token(b"t5"));
        assert_eq!(c.stats(), CacheStats::default());
    }

    #[test]
    fn eviction_queues_stay_bounded_under_churn() {
        let c = cache(1, 1000);
        for i in 0..10_000 {
            let key = TokenDigest::of(format!("t{i}").as_bytes());
            // Each entry expires before the next arrives.
            c.insert_valid(key, 0, Arc::new(String::new()), facts(i + 1), i);
            assert!(c.get_digest(&key, 0, i + 1).is_none());
        }
        let shard = c.shards[0].lock().unwrap();
        assert!(shard.order.len() <= 64, "{}", shard.order.len());
    }

    #[test]
    fn shared_between_threads() {
        let c = Arc::new(cache(16, 10_000));
        std::thread::scope(|s| {
            for t in 0..4 {
                let c = &c;
                s.spawn(move || {
                    for i in 0..500 {
                        let token = format!("t{t}-{i}");
                        c.insert_valid(
                            TokenDigest::of(token.as_bytes()),
                            0,
                            Arc::new(token.clone()),
                            facts(9999),
                            0,
                        );
                        assert_eq!(valid(c, &token, 1), Some(token));
                    }
                });
            }
        });
        assert_eq!(c.stats().entries, 2000);
    }
}
