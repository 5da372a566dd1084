//! Group `engine`: the verification engine's parts: the verified-token cache, the routed cached
//! path, and the workers.
//!
//! - `cache-hit/N`: `TokenCache::get` (keyed hash, lookup, comparison of the token, the owner
//!   and expiry checks) of N-byte tokens in a cache of 1 M verified entries (330, 600 and
//!   1,000 bytes: an ES256 access token, one with more claims, an RS256 one), taking turns
//!   over 16,384 of them so that they are not all in the CPU's caches.
//! - `cache-hit-hot/N`: the same lookup of one token again and again: its entry in the CPU's
//!   caches, as for a gateway's hottest tokens.
//! - `cache-miss/N`: the same lookup of tokens the cache does not hold: what a miss adds.
//! - `routed-hit/ES256`: the cached path of the daemon's requests: `EngineHandle::verify` of a
//!   token the engine's cache holds (digest, lookup, the owner check; no routing, no worker
//!   hop), inside a current-thread runtime's `block_on`.
//! - `routed-hit-revoked-10k/ES256`: the same, with 10,000 revocation records in force (by
//!   jti, subject, client and token hash, none of them this token's): what the revocation
//!   check adds to a cached verdict once the token has been checked against the set.
//! - `revocation-check-10k/ES256`: the full check of one verified token against those 10,000
//!   records, as each cached token pays it once after every change of the set.
//! - `tessera/ES256`: full verification of the same token in the calling thread, for scale.
//! - `single/ES256`: one verification through an idle engine (cache off), routed to its issuer
//!   as every verification is: the added latency of routing and the worker hop at low load is
//!   `single - tessera`.
//! - `workers-N/ES256`: throughput of N workers (cache off), 256 distinct tokens per call to
//!   `verify_batch`; reported per token. N × one worker's rate is the ideal.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use benches::Contest;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use engine::{CacheConfig, Cached, Engine, EngineConfig, Facts, Keyed, TokenCache};
use jose::Algorithm;

// The daemon's allocator: the cache's memory is laid out as in the daemon.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn engine(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));

    let contest = Contest::new(Algorithm::ES256);
    let token = contest.fixture.token.as_str();
    let now = contest.fixture.now;
    let jwt = Arc::new(contest.tessera(token).expect("the token verifies"));
    let exp = jwt.numeric_claim("exp").map(|e| e as i64);

    cache_lookups(&mut group, &jwt, exp, now);
    group.bench_function(BenchmarkId::new("tessera", "ES256"), |b| {
        b.iter(|| black_box(contest.tessera(black_box(token))))
    });

    // The engine, with its cache off (ttl 0, no negative entries) so every call verifies.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let no_cache = CacheConfig {
        ttl: 0,
        negative_ttl: 0,
        ..CacheConfig::default()
    };
    let max_workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let tokens: Vec<String> = (0..256)
        .map(|i| {
            let claims = benches::access_token_claims(now)
                .replace("\"scope\"", &format!("\"n\":{i},\"scope\""));
            contest.fixture.signer.token(&claims)
        })
        .collect();
    let refs: Vec<&[u8]> = tokens.iter().map(|t| t.as_bytes()).collect();
    {
        let config = EngineConfig {
            workers: 1,
            pin: false,
            ..EngineConfig::default()
        };
        let engine: Engine =
            Engine::start(config, benches::issuers(contest.fixture.signer.key_set()));
        let handle = engine.handle();
        let verified = runtime.block_on(handle.verify(token.as_bytes(), now));
        assert!(verified.is_ok(), "the token verifies through its issuer");
        group.bench_function(BenchmarkId::new("routed-hit", "ES256"), |b| {
            b.iter(|| runtime.block_on(handle.verify(black_box(token.as_bytes()), now)))
        });
        handle.revocations().apply(ten_thousand_revocations(now));
        assert!(runtime
            .block_on(handle.verify(token.as_bytes(), now))
            .is_ok());
        group.bench_function(BenchmarkId::new("routed-hit-revoked-10k", "ES256"), |b| {
            b.iter(|| runtime.block_on(handle.verify(black_box(token.as_bytes()), now)))
        });
        let verified = runtime
            .block_on(handle.verify(token.as_bytes(), now))
            .expect("still valid");
        group.bench_function(BenchmarkId::new("revocation-check-10k", "ES256"), |b| {
            b.iter(|| {
                let fresh = engine::revoked::Checked::default();
                black_box(
                    handle
                        .revocations()
                        .revokes(&verified, verified.compact(), &fresh),
                )
            })
        });
    }
    for workers in 1..=max_workers {
        let config = EngineConfig {
            workers,
            pin: true,
            cache: no_cache,
            ..EngineConfig::default()
        };
        let engine: Engine =
            Engine::start(config, benches::issuers(contest.fixture.signer.key_set()));
        let handle = engine.handle();
        let results = runtime.block_on(handle.verify_batch(&refs, now));
        assert!(
            results.iter().all(Result::is_ok),
            "engine verifies the batch"
        );
        if workers == 1 {
            group.bench_function(BenchmarkId::new("single", "ES256"), |b| {
                b.iter(|| runtime.block_on(handle.verify(black_box(refs[0]), now)))
            });
        }
        group.throughput(Throughput::Elements(refs.len() as u64));
        group.bench_function(
            BenchmarkId::new(format!("workers-{workers}"), "ES256"),
            |b| b.iter(|| runtime.block_on(handle.verify_batch(black_box(&refs), now))),
        );
        group.throughput(Throughput::Elements(1));
    }
    group.finish();
}

/// 10,000 records of every kind, none naming the benchmark's token.
fn ten_thousand_revocations(now: i64) -> Vec<engine::Revocation> {
    use engine::Revocation;
    let iss = benches::ISSUER.to_owned();
    (0..10_000)
        .map(|i| match i % 4 {
            0 => Revocation::Jti {
                iss: iss.clone(),
                jti: format!("revoked-{i}"),
                exp: now + 3600,
            },
            1 => Revocation::Subject {
                iss: iss.clone(),
                sub: format!("user-{i}"),
                before: now,
            },
            2 => Revocation::Client {
                client_id: format!("client-{i}"),
                before: now,
            },
            _ => Revocation::Token {
                sha256: engine::revoked::sha256(format!("t{i}").as_bytes()),
                exp: now + 3600,
            },
        })
        .collect()
}

criterion_group!(engine_group, engine);
criterion_main!(engine_group);

/// A cached value as the engine's are: the token it was made from, and what verifying it gave.
struct Entry {
    token: bytes::Bytes,
    _jwt: Arc<jose::Jwt>,
}

impl Keyed for Entry {
    fn token(&self) -> &[u8] {
        &self.token
    }
}

/// The cache benches: 1 M entries, a third each of 330, 600 and 1,000-byte tokens.
fn cache_lookups(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    jwt: &Arc<jose::Jwt>,
    exp: Option<i64>,
    now: i64,
) {
    const SIZES: [usize; 3] = [330, 600, 1000];
    const ENTRIES: usize = 1 << 20;
    const HOT: usize = 1 << 14;
    let cache: TokenCache<Entry> = TokenCache::new(CacheConfig {
        max_entries: 2 * ENTRIES,
        max_bytes: 8 << 30,
        ..CacheConfig::default()
    });
    // Distinct tokens that share all but their last bytes, as tokens of one issuer share their
    // header and most claims (a hit compares all of them).
    let token = |size: usize, i: usize| {
        let tail = format!(".{i:016x}");
        let mut t = "e".repeat(size - tail.len());
        t.push_str(&tail);
        bytes::Bytes::from(t)
    };
    for i in 0..ENTRIES {
        let t = token(SIZES[i % 3], i);
        let facts = Facts { exp, bytes: 512 };
        let key = cache.key(&t);
        let entry = Entry {
            token: t,
            _jwt: Arc::clone(jwt),
        };
        cache.insert_valid(key, 1, Arc::new(entry), facts, now);
    }
    assert_eq!(cache.stats().entries, ENTRIES);
    for (n, size) in SIZES.into_iter().enumerate() {
        // Every third entry has this size; take 16,384 of them spread over the million.
        let hot: Vec<bytes::Bytes> = (0..HOT)
            .map(|i| token(size, n + 3 * ((i * 61) % (ENTRIES / 3))))
            .collect();
        assert!(hot
            .iter()
            .all(|t| matches!(cache.get(t, 1, now), Some(Cached::Valid(_)))));
        let mut turn = 0;
        group.bench_function(BenchmarkId::new("cache-hit", size), |b| {
            b.iter(|| {
                turn = (turn + 1) % HOT;
                black_box(cache.get(black_box(&hot[turn]), 1, now))
            })
        });
        let one = &hot[0];
        group.bench_function(BenchmarkId::new("cache-hit-hot", size), |b| {
            b.iter(|| black_box(cache.get(black_box(one), 1, now)))
        });
        let cold: Vec<bytes::Bytes> = (0..HOT).map(|i| token(size, ENTRIES + i)).collect();
        assert!(cold.iter().all(|t| cache.get(t, 1, now).is_none()));
        group.bench_function(BenchmarkId::new("cache-miss", size), |b| {
            b.iter(|| {
                turn = (turn + 1) % HOT;
                black_box(cache.get(black_box(&cold[turn]), 1, now))
            })
        });
    }
}
