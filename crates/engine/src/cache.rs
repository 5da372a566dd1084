//! The verified-token cache: gateways send the same hot tokens again and again, and a token that
//! verified once need not be verified again until it expires.
//!
//! - Keyed by the token itself: a hit compares the token's bytes with those the entry's value
//!   holds ([`Keyed`]; a remembered failure holds its own), so a hit is exactly the token that
//!   was verified. The table is indexed by a fast keyed hash
//!   (aHash, seeded at random per cache): nobody outside can aim many tokens at one bucket or
//!   learn the layout, and a collision costs a comparison, never a wrong answer. The hash is
//!   computed once per lookup ([`TokenCache::key`]) and carried to the insert of a miss.
//! - Sharded by bits of that hash that the tables do not use; each shard is a mutex-guarded
//!   table, bounded in entries and in bytes, evicting in insertion order (oldest first).
//! - The byte bound is the memory the entries take: each entry is charged its value (as the
//!   caller weighs it, token included, each allocation rounded as the allocator rounds it), and
//!   what the caller makes of it later when it is made ([`TokenCache::charge`]); each shard adds
//!   its table's and its eviction queue's real allocations.
//! - A verified entry lives until `min(exp, now + ttl)`; a failed verification can be remembered
//!   for a short, separately bounded time, so a flood of one bad token costs one verification.
//! - Entries die when the key set of the issuer that decided them changes
//!   ([`TokenCache::evict_owner`], from `Issuers::sync`), or when a revocation hook names
//!   their `kid`, `jti`, `sub` or token (read from the cached value, [`Revocable`]).

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use hashbrown::HashTable;

/// Where a token lives in the cache: its keyed hash, computed once per lookup by
/// [`TokenCache::key`] and valid only for the cache that made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheKey(u64);

impl CacheKey {
    /// The shard: bits 40 and up (below the 7 top bits the table keeps as tags; its index uses
    /// the low bits).
    fn shard(self, mask: usize) -> usize {
        (self.0 >> 40) as usize & mask
    }
}

/// The most shards: the shard bits stay clear of the table's tag bits.
const MAX_SHARDS: usize = 1 << 16;

/// What an allocation of `n` bytes takes from the allocator: its size class. mimalloc (the
/// daemon's allocator) rounds small sizes up to a multiple of 8, and larger ones to a quarter of
/// the power of two below them (four size classes per doubling); taken as 16 below 64 bytes.
pub fn allocated(n: usize) -> usize {
    match n {
        0 => 0,
        1..=64 => n.next_multiple_of(16),
        _ => {
            let step = (1usize << (usize::BITS - 1 - n.leading_zeros())) / 4;
            n.next_multiple_of(step)
        }
    }
}

/// A verified value holds the token it was made from: the cache compares it on every hit and
/// keeps no copy of its own.
pub trait Keyed {
    fn token(&self) -> &[u8];
}

/// Read from a cached value by the revocation hooks (rarely: they scan every entry).
pub trait Revocable {
    /// The `kid` of the key the token was verified with.
    fn kid(&self) -> Option<Cow<'_, str>>;
    /// A string claim (`jti`, `sub`).
    fn str_claim(&self, name: &str) -> Option<Cow<'_, str>>;
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
    /// Number of shards (rounded up to a power of two, at most 65,536).
    pub shards: usize,
    /// Most verified entries, over all shards.
    pub max_entries: usize,
    /// Most bytes the verified entries take, over all shards: their tokens, their values and the
    /// shards' tables and queues.
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
    /// Verified entries.
    pub entries: usize,
    /// What the cache takes: every entry (verified or not) and the shards' tables and queues.
    pub bytes: usize,
    /// Remembered failures.
    pub negative: usize,
}

/// One entry of a shard's table: 48 bytes; the token is kept by its value.
struct Item<V> {
    hash: u64,
    verdict: Verdict<V>,
    /// Who decided: the verdict holds only for lookups by the same owner (a policy).
    owner: u64,
    /// Unix seconds after which the entry is dead.
    until: i64,
    /// Matches the entry's place in its eviction queue. Wraps after 2^32 inserts into one
    /// shard, far more than live in it at once (entries live at most `ttl`; the queues are
    /// compacted), so two live places never share one.
    seq: u32,
    /// What the entry is charged: its value and its token, as allocated.
    bytes: u32,
}

/// What an entry remembers: the verified value (which holds the token), or a failure with its
/// token, boxed so that the common entry stays small.
enum Verdict<V> {
    Valid(Arc<V>),
    Invalid(Box<(Bytes, &'static str)>),
}

impl<V: Keyed> Item<V> {
    fn is(&self, hash: u64, token: &[u8]) -> bool {
        self.hash == hash
            && match &self.verdict {
                Verdict::Valid(value) => value.token() == token,
                Verdict::Invalid(failure) => *failure.0 == *token,
            }
    }
}

impl<V> Item<V> {
    fn valid(&self) -> bool {
        matches!(self.verdict, Verdict::Valid(_))
    }

    fn cached(&self) -> Cached<V> {
        match &self.verdict {
            Verdict::Valid(value) => Cached::Valid(Arc::clone(value)),
            Verdict::Invalid(failure) => Cached::Invalid(failure.1),
        }
    }
}

/// An entry's place in an eviction queue: its hash and its sequence number.
type Place = (u64, u32);

struct Shard<V> {
    items: HashTable<Item<V>>,
    /// Insertion order of verified entries and of failures, for eviction.
    order: VecDeque<Place>,
    negative_order: VecDeque<Place>,
    next_seq: u32,
    /// Charged to the verified entries and to the failures.
    bytes: usize,
    negative_bytes: usize,
    valid: usize,
    negative: usize,
}

impl<V> Shard<V> {
    fn new() -> Self {
        Shard {
            items: HashTable::new(),
            order: VecDeque::new(),
            negative_order: VecDeque::new(),
            next_seq: 0,
            bytes: 0,
            negative_bytes: 0,
            valid: 0,
            negative: 0,
        }
    }

    /// What the table and the queues take.
    fn overhead(&self) -> usize {
        self.items.allocation_size()
            + (self.order.capacity() + self.negative_order.capacity()) * size_of::<Place>()
    }

    /// The overhead once one more entry is in: a full table doubles.
    fn overhead_with_one_more(&self) -> usize {
        let table = self.items.allocation_size();
        let grown = if self.items.len() == self.items.capacity() {
            (table * 2).max(4 * (size_of::<Item<V>>() + 1))
        } else {
            table
        };
        let queued = self.order.len() + self.negative_order.len() + 1;
        let queues = (self.order.capacity() + self.negative_order.capacity()).max(queued);
        grown + queues * size_of::<Place>()
    }

    fn account(&mut self, item: &Item<V>, add: bool) {
        let (count, bytes) = if item.valid() {
            (&mut self.valid, &mut self.bytes)
        } else {
            (&mut self.negative, &mut self.negative_bytes)
        };
        if add {
            *count += 1;
            *bytes += item.bytes as usize;
        } else {
            *count -= 1;
            *bytes -= item.bytes as usize;
        }
    }

    fn remove_place(&mut self, (hash, seq): Place, valid: bool) {
        if let Ok(entry) = self
            .items
            .find_entry(hash, |i| i.seq == seq && i.valid() == valid)
        {
            let (item, _) = entry.remove();
            self.account(&item, false);
        }
    }

    fn insert(&mut self, mut item: Item<V>) {
        item.seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.compact();
        let place = (item.hash, item.seq);
        if item.valid() {
            self.order.push_back(place);
        } else {
            self.negative_order.push_back(place);
        }
        self.account(&item, true);
        self.items.insert_unique(item.hash, item, |i| i.hash);
    }

    /// Pops the oldest places of a queue (skipping entries already gone) until `over` says stop.
    fn evict(&mut self, valid: bool, over: impl Fn(&Self) -> bool) {
        while over(self) {
            let queue = if valid {
                &mut self.order
            } else {
                &mut self.negative_order
            };
            let Some(place) = queue.pop_front() else {
                return;
            };
            self.remove_place(place, valid);
        }
    }

    /// Drops the places of entries that are gone from the eviction queues once the queues have
    /// grown past twice the live entries, so expired and replaced entries cannot make them grow
    /// without bound.
    fn compact(&mut self) {
        let live = self.items.len().max(16);
        if self.order.len() + self.negative_order.len() > 2 * live {
            let items = &self.items;
            let alive = |&(hash, seq): &Place| items.find(hash, |i| i.seq == seq).is_some();
            self.order.retain(alive);
            self.negative_order.retain(alive);
        }
    }

    fn retain(&mut self, keep: impl Fn(&Item<V>) -> bool) -> usize {
        let (mut dropped, mut valid, mut bytes, mut negative_bytes) = (0, 0, 0, 0);
        self.items.retain(|item| {
            let kept = keep(item);
            if !kept {
                dropped += 1;
                if item.valid() {
                    valid += 1;
                    bytes += item.bytes as usize;
                } else {
                    negative_bytes += item.bytes as usize;
                }
            }
            kept
        });
        self.valid -= valid;
        self.negative -= dropped - valid;
        self.bytes -= bytes;
        self.negative_bytes -= negative_bytes;
        dropped
    }
}

impl<V: Keyed> Shard<V> {
    fn remove(&mut self, hash: u64, token: &[u8]) -> Option<Item<V>> {
        let (item, _) = self
            .items
            .find_entry(hash, |i| i.is(hash, token))
            .ok()?
            .remove();
        self.account(&item, false);
        Some(item)
    }
}

/// The cache. `V` is the verified value handed back on a hit.
pub struct TokenCache<V> {
    shards: Box<[Mutex<Shard<V>>]>,
    hasher: ahash::RandomState,
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

/// Facts about a verified value that decide when its entry dies and what it is charged.
#[derive(Clone, Copy, Debug, Default)]
pub struct Facts {
    /// `exp`, in Unix seconds.
    pub exp: Option<i64>,
    /// The memory the value takes: its allocation and what it holds (the token too), each
    /// allocation as allocated.
    pub bytes: usize,
}

/// What `len` bytes kept in a `Bytes` take: their allocation and the header that lets it be
/// shared (a `Bytes` made from a `Vec` grows one when first cloned); nothing when empty.
pub fn shared_bytes(len: usize) -> usize {
    match len {
        0 => 0,
        len => allocated(len) + allocated(3 * size_of::<usize>()),
    }
}

impl<V> TokenCache<V> {
    pub fn new(config: CacheConfig) -> Self {
        let shards = config.shards.clamp(1, MAX_SHARDS).next_power_of_two();
        let per = |total: usize| total.div_ceil(shards).max(1);
        TokenCache {
            shards: (0..shards).map(|_| Mutex::new(Shard::new())).collect(),
            hasher: ahash::RandomState::new(),
            mask: shards - 1,
            per_shard_entries: per(config.max_entries),
            per_shard_bytes: per(config.max_bytes),
            per_shard_negative: per(config.max_negative),
            config,
        }
    }

    /// Where `token` lives in this cache.
    pub fn key(&self, token: &[u8]) -> CacheKey {
        CacheKey(self.hasher.hash_one(token))
    }

    fn shard(&self, key: CacheKey) -> std::sync::MutexGuard<'_, Shard<V>> {
        self.shards[key.shard(self.mask)]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// When a verified entry with this `exp` would die: `min(exp, now + ttl)`.
    fn until(&self, exp: Option<i64>, now: i64) -> i64 {
        exp.unwrap_or(i64::MAX)
            .min(now.saturating_add(self.config.ttl))
    }

    /// Whether a token verified at `now` with this `exp` would be kept at all (not with the
    /// cache off, nor once expired): the caller need not weigh a value that would not be.
    pub fn keeps(&self, exp: Option<i64>, now: i64) -> bool {
        self.until(exp, now) > now
    }

    /// Drops every entry `owner` decided (its key set changed: a key left or was replaced, and
    /// a token without a `kid` may have been verified with it).
    pub fn evict_owner(&self, owner: u64) -> usize {
        self.retain_all(|item| item.owner != owner)
    }

    fn retain_all(&self, keep: impl Fn(&Item<V>) -> bool) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
                shard.retain(&keep)
            })
            .sum()
    }

    pub fn stats(&self) -> CacheStats {
        self.shards
            .iter()
            .fold(CacheStats::default(), |acc, shard| {
                let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
                CacheStats {
                    entries: acc.entries + shard.valid,
                    bytes: acc.bytes + shard.bytes + shard.negative_bytes + shard.overhead(),
                    negative: acc.negative + shard.negative,
                }
            })
    }
}

impl<V: Keyed> TokenCache<V> {
    /// The verdict `owner` remembered for `token` at `now`, if any and still alive. A verdict
    /// is only ever answered to the owner (the policy) that reached it.
    pub fn get(&self, token: &[u8], owner: u64, now: i64) -> Option<Cached<V>> {
        self.get_by(self.key(token), token, |o| o == owner, now)
    }

    /// The verdict remembered for `token` (whose key is `key`) at `now`, if its owner is one
    /// that `owner` accepts and it is still alive.
    pub fn get_by(
        &self,
        key: CacheKey,
        token: &[u8],
        owner: impl Fn(u64) -> bool,
        now: i64,
    ) -> Option<Cached<V>> {
        let mut shard = self.shard(key);
        match shard.items.find(key.0, |i| i.is(key.0, token)) {
            Some(item) if !owner(item.owner) => None,
            Some(item) if now < item.until => Some(item.cached()),
            Some(_) => {
                shard.remove(key.0, token);
                None
            }
            None => None,
        }
    }

    /// Charges the entry of `value` (if it is still cached) with `bytes` more: what its caller
    /// made of it after it was inserted (a rendered answer). Evicts the shard's oldest entries
    /// while it is over its bound, this one too if it must.
    pub fn charge(&self, value: &Arc<V>, bytes: usize) {
        let token = value.token();
        let key = self.key(token);
        let max_bytes = self.per_shard_bytes;
        let mut shard = self.shard(key);
        let Some(item) = shard.items.find_mut(key.0, |i| i.is(key.0, token)) else {
            return;
        };
        match &item.verdict {
            Verdict::Valid(kept) if Arc::ptr_eq(kept, value) => {}
            _ => return,
        }
        let add = u32::try_from(bytes).unwrap_or(u32::MAX);
        item.bytes = item.bytes.saturating_add(add);
        shard.bytes += add as usize;
        shard.evict(true, |s| s.bytes + s.overhead() > max_bytes);
    }

    /// Remembers that the token `value` holds (whose key is `key`) verified, producing
    /// `value`, until `min(exp, now + ttl)`.
    pub fn insert_valid(&self, key: CacheKey, owner: u64, value: Arc<V>, facts: Facts, now: i64) {
        let until = self.until(facts.exp, now);
        let bytes = facts.bytes;
        if until <= now || bytes > self.per_shard_bytes {
            return;
        }
        let (max_entries, max_bytes) = (self.per_shard_entries, self.per_shard_bytes);
        let mut shard = self.shard(key);
        shard.remove(key.0, value.token());
        let item = Item {
            hash: key.0,
            verdict: Verdict::Valid(value),
            owner,
            until,
            seq: 0,
            // At most the shard's bound (checked above), which a u32 holds.
            bytes: u32::try_from(bytes).unwrap_or(u32::MAX),
        };
        shard.evict(true, |s| {
            s.valid + 1 > max_entries || s.bytes + s.overhead_with_one_more() + bytes > max_bytes
        });
        shard.insert(item);
    }

    /// Remembers briefly that `token` failed with `code`. A failure never replaces a live
    /// verified entry.
    pub fn insert_invalid(
        &self,
        key: CacheKey,
        token: Bytes,
        owner: u64,
        code: &'static str,
        now: i64,
    ) {
        if self.config.negative_ttl <= 0 {
            return;
        }
        let max = self.per_shard_negative;
        let mut shard = self.shard(key);
        match shard.items.find(key.0, |i| i.is(key.0, &token)) {
            Some(item) if item.valid() => return,
            Some(_) => {
                shard.remove(key.0, &token);
            }
            None => {}
        }
        shard.evict(false, |s| s.negative + 1 > max);
        // The token, its box and the entry's share of the table.
        let bytes = shared_bytes(token.len()) + allocated(size_of::<(Bytes, &str)>());
        shard.insert(Item {
            hash: key.0,
            verdict: Verdict::Invalid(Box::new((token, code))),
            owner,
            until: now.saturating_add(self.config.negative_ttl),
            seq: 0,
            bytes: u32::try_from(bytes).unwrap_or(u32::MAX),
        });
    }

    /// Revocation hook: drops the entry of this token.
    pub fn revoke_token(&self, token: &[u8]) -> bool {
        let key = self.key(token);
        self.shard(key).remove(key.0, token).is_some()
    }
}

impl<V: Revocable + Keyed> TokenCache<V> {
    /// Drops the verified entries whose value says `f`.
    fn revoke(&self, f: impl Fn(&V) -> bool) -> usize {
        self.retain_all(|item| match &item.verdict {
            Verdict::Valid(value) => !f(value),
            Verdict::Invalid(_) => true,
        })
    }

    /// Revocation hook: drops every entry verified with key `kid` (a compromised key).
    pub fn evict_kid(&self, kid: &str) -> usize {
        self.revoke(|v| v.kid().as_deref() == Some(kid))
    }

    /// Revocation hook: drops every entry with this `jti`.
    pub fn revoke_jti(&self, jti: &str) -> usize {
        self.revoke(|v| v.str_claim("jti").as_deref() == Some(jti))
    }

    /// Revocation hook: drops every entry with this `sub`.
    pub fn revoke_sub(&self, sub: &str) -> usize {
        self.revoke(|v| v.str_claim("sub").as_deref() == Some(sub))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value as the engine's are: it holds the token it was made from.
    #[derive(Clone, Debug, PartialEq)]
    struct Kept<T> {
        token: Bytes,
        value: T,
    }

    impl<T> Keyed for Kept<T> {
        fn token(&self) -> &[u8] {
            &self.token
        }
    }

    fn cache(shards: usize, max_entries: usize) -> TokenCache<Kept<String>> {
        TokenCache::new(CacheConfig {
            shards,
            max_entries,
            max_bytes: 1 << 20,
            ttl: 100,
            negative_ttl: 5,
            max_negative: 4,
        })
    }

    fn facts(exp: i64) -> Facts {
        Facts {
            exp: Some(exp),
            bytes: 10,
        }
    }

    fn kept<T>(token: &str, value: T) -> Arc<Kept<T>> {
        let token = Bytes::copy_from_slice(token.as_bytes());
        Arc::new(Kept { token, value })
    }

    fn put<T>(c: &TokenCache<Kept<T>>, token: &str, value: T, facts: Facts, now: i64) {
        c.insert_valid(c.key(token.as_bytes()), 0, kept(token, value), facts, now);
    }

    fn fail(c: &TokenCache<Kept<String>>, token: &str, code: &'static str, now: i64) {
        let token = Bytes::copy_from_slice(token.as_bytes());
        c.insert_invalid(c.key(&token), token, 0, code, now);
    }

    fn valid<T: Clone>(c: &TokenCache<Kept<T>>, token: &str, now: i64) -> Option<T> {
        match c.get(token.as_bytes(), 0, now) {
            Some(Cached::Valid(v)) => Some(v.value.clone()),
            _ => None,
        }
    }

    #[test]
    fn entries_live_until_exp_or_ttl() {
        let c = cache(4, 100);
        put(&c, "a.b.c", "claims".into(), facts(1050), 1000);
        assert_eq!(valid(&c, "a.b.c", 1049).as_deref(), Some("claims"));
        assert_eq!(valid(&c, "a.b.c", 1050), None, "dies at exp");
        assert_eq!(c.stats().entries, 0, "a dead entry is dropped when met");
        put(&c, "a.b.c", "claims".into(), facts(9999), 1000);
        assert!(valid(&c, "a.b.c", 1099).is_some());
        assert!(valid(&c, "a.b.c", 1100).is_none(), "dies at now + ttl");
        // Already expired: not stored.
        assert!(!c.keeps(Some(999), 1000) && c.keeps(Some(1001), 1000));
        put(&c, "a.b.c", "x".into(), facts(999), 1000);
        assert!(valid(&c, "a.b.c", 1000).is_none());
        // Another token is another entry, whatever it shares with the first.
        put(&c, "a.b.c", "claims".into(), facts(9999), 1000);
        assert!(valid(&c, "a.b.d", 1001).is_none());
        assert!(valid(&c, "a.b.", 1001).is_none());
        assert!(valid(&c, "a.b.cc", 1001).is_none());
    }

    #[test]
    fn a_hit_is_the_token_itself_even_when_hashes_collide() {
        let c = cache(1, 100);
        // Both under one key, as a collision of the keyed hash would put them.
        let key = c.key(b"t.one.x");
        c.insert_valid(key, 0, kept("t.one.x", "one".into()), facts(9999), 0);
        c.insert_valid(key, 0, kept("t.two.y", "two".into()), facts(9999), 0);
        let hit = |token: &str| match c.get_by(key, token.as_bytes(), |_| true, 1) {
            Some(Cached::Valid(v)) => Some(v.value.clone()),
            _ => None,
        };
        assert_eq!(hit("t.one.x").as_deref(), Some("one"));
        assert_eq!(hit("t.two.y").as_deref(), Some("two"));
        assert_eq!(hit("t.three.z"), None);
        assert_eq!(c.stats().entries, 2);
    }

    #[test]
    fn the_hash_is_keyed_per_cache() {
        let (a, b) = (cache(1, 1), cache(1, 1));
        let tokens = ["x.y.z", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30.sig"];
        assert!(tokens
            .iter()
            .any(|t| a.key(t.as_bytes()) != b.key(t.as_bytes())));
        assert!(tokens
            .iter()
            .all(|t| a.key(t.as_bytes()) == a.key(t.as_bytes())));
    }

    #[test]
    fn bounded_in_entries_oldest_first() {
        let c = cache(1, 3);
        for i in 0..5 {
            put(&c, &format!("t{i}"), format!("v{i}"), facts(9999), 0);
        }
        assert_eq!(c.stats().entries, 3);
        assert!(valid(&c, "t0", 1).is_none() && valid(&c, "t1", 1).is_none());
        assert_eq!(valid(&c, "t4", 1).as_deref(), Some("v4"));
    }

    #[test]
    fn bounded_by_the_bytes_entries_take_with_the_table() {
        let max_bytes = 64 << 10;
        let c: TokenCache<Kept<String>> = TokenCache::new(CacheConfig {
            shards: 1,
            max_bytes,
            ..CacheConfig::default()
        });
        let token = |i: usize| format!("{i:0>300}");
        let weighed = |i: usize| Facts {
            bytes: 10 + shared_bytes(token(i).len()),
            ..facts(9999)
        };
        for i in 0..10_000 {
            put(&c, &token(i), String::new(), weighed(i), 0);
            let stats = c.stats();
            assert!(
                stats.bytes <= max_bytes,
                "{} > {max_bytes} at {i}",
                stats.bytes
            );
        }
        assert_eq!(size_of::<Item<Kept<String>>>(), 48);
        let stats = c.stats();
        // Each entry is charged its 300-byte token (320 as allocated), its shared header, its
        // 10 bytes, and its share of the table (48-byte items) and the queue.
        let per_entry = stats.bytes / stats.entries;
        assert!(
            (350..700).contains(&per_entry),
            "{per_entry} bytes per entry"
        );
        assert!(stats.entries > max_bytes / 700, "{} entries", stats.entries);
        // The newest are kept.
        assert!(valid(&c, &token(9_999), 1).is_some());
        assert!(valid(&c, &token(0), 1).is_none());
        // One entry bigger than the whole budget is not kept.
        let huge = Facts {
            bytes: max_bytes + 1,
            ..facts(9999)
        };
        put(&c, "huge", "h".into(), huge, 0);
        assert!(valid(&c, "huge", 1).is_none());
    }

    #[test]
    fn what_is_made_later_is_charged_to_its_entry() {
        let c = cache(1, 100);
        let one = kept("t.one", String::new());
        c.insert_valid(c.key(b"t.one"), 0, Arc::clone(&one), facts(9999), 0);
        let before = c.stats().bytes;
        c.charge(&one, 1000);
        assert_eq!(c.stats().bytes, before + 1000);
        // Another value for the same token (one verified again) is not this entry.
        c.charge(&kept("t.one", String::new()), 1000);
        assert_eq!(c.stats().bytes, before + 1000);
        // Gone, the entry takes its charge with it.
        assert!(c.revoke_token(b"t.one"));
        let gone = c.stats().bytes;
        assert!(gone < before);
        c.charge(&one, 1000);
        assert_eq!(c.stats().bytes, gone);
        // A charge past the bound evicts, oldest first.
        let small: TokenCache<Kept<String>> = TokenCache::new(CacheConfig {
            shards: 1,
            max_bytes: 16 << 10,
            ..CacheConfig::default()
        });
        let (a, b) = (kept("a", String::new()), kept("b", String::new()));
        let heavy = Facts {
            bytes: 4 << 10,
            ..facts(9999)
        };
        small.insert_valid(small.key(b"a"), 0, Arc::clone(&a), heavy, 0);
        small.insert_valid(small.key(b"b"), 0, Arc::clone(&b), facts(9999), 0);
        small.charge(&b, 12 << 10);
        assert_eq!(small.stats().entries, 1);
        assert!(valid(&small, "a", 1).is_none() && valid(&small, "b", 1).is_some());
        assert!(small.stats().bytes <= 16 << 10);
    }

    #[test]
    fn allocations_round_up_to_size_classes() {
        assert_eq!(allocated(0), 0);
        assert_eq!(allocated(1), 16);
        assert_eq!(allocated(64), 64);
        assert_eq!(allocated(65), 80);
        assert_eq!(allocated(300), 320);
        assert_eq!(allocated(1000), 1024);
        assert_eq!(allocated(1025), 1280);
        for n in 1..5000 {
            let a = allocated(n);
            assert!(a >= n && a <= n + n / 4 + 16, "{n} -> {a}");
        }
    }

    #[test]
    fn failures_are_remembered_briefly_and_bounded() {
        let c = cache(1, 10);
        fail(&c, "bad", "bad_signature", 100);
        assert!(matches!(
            c.get(b"bad", 0, 104),
            Some(Cached::Invalid("bad_signature"))
        ));
        assert!(c.get(b"bad", 0, 105).is_none());
        // A flood of distinct bad tokens keeps at most max_negative of them...
        for i in 0..50 {
            fail(&c, &format!("bad{i}"), "malformed", 200);
        }
        assert_eq!(c.stats().negative, 4);
        // ...and never displaces a verified entry or replaces it.
        put(&c, "good", "ok".into(), facts(9999), 200);
        fail(&c, "good", "expired", 200);
        assert_eq!(valid(&c, "good", 201).as_deref(), Some("ok"));
        assert_eq!(c.stats().entries, 1);
    }

    #[test]
    fn verdicts_are_answered_only_to_their_owner() {
        let c = cache(4, 100);
        c.insert_valid(c.key(b"t"), 1, kept("t", "by one".into()), facts(9999), 0);
        assert!(c.get(b"t", 1, 1).is_some());
        assert!(c.get(b"t", 2, 1).is_none(), "another policy never sees it");
        let u = Bytes::from_static(b"u");
        c.insert_invalid(c.key(&u), u, 1, "expired", 0);
        assert!(c.get(b"u", 2, 1).is_none());
        assert_eq!(c.evict_owner(1), 2);
        assert_eq!((c.stats().entries, c.stats().negative), (0, 0));
    }

    #[derive(Clone, Debug, PartialEq)]
    struct Claims {
        kid: &'static str,
        jti: &'static str,
        sub: &'static str,
    }

    impl Revocable for Kept<Claims> {
        fn kid(&self) -> Option<Cow<'_, str>> {
            Some(self.value.kid.into())
        }

        fn str_claim(&self, name: &str) -> Option<Cow<'_, str>> {
            match name {
                "jti" => Some(self.value.jti.into()),
                "sub" => Some(self.value.sub.into()),
                _ => None,
            }
        }
    }

    #[test]
    fn keys_and_revocations_drop_entries() {
        let c: TokenCache<Kept<Claims>> = TokenCache::new(CacheConfig::default());
        let put = |token: &str, kid, jti, sub| {
            put(&c, token, Claims { kid, jti, sub }, facts(9999), 0);
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
        let stats = c.stats();
        assert_eq!((stats.entries, stats.negative), (0, 0));
        // What is left is the empty tables' and queues' allocations.
        let shards = c.shards.iter().map(|s| s.lock().unwrap().overhead()).sum();
        assert_eq!(stats.bytes, shards);
    }

    #[test]
    fn eviction_queues_stay_bounded_under_churn() {
        let c = cache(1, 1000);
        for i in 0..10_000 {
            let token = format!("t{i}");
            // Each entry expires before the next arrives.
            put(&c, &token, String::new(), facts(i + 1), i);
            assert!(c.get(token.as_bytes(), 0, i + 1).is_none());
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
                        put(c, &token, token.clone(), facts(9999), 0);
                        assert_eq!(valid(c, &token, 1), Some(token));
                    }
                });
            }
        });
        assert_eq!(c.stats().entries, 2000);
    }
}
