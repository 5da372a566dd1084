//! Group `engine`: the verification engine's parts. Today: a verified-token cache hit.
//!
//! - `cache-hit/ES256`: `TokenCache::get` on a realistic ES256 access token, SHA-256 of the
//!   whole token included, in a cache holding 100 000 other verified tokens.
//! - `cache-hit-digest/ES256`: the same lookup with the digest already computed: the map alone.
//! - `routed-hit/ES256`: the cached path of the daemon's requests: `EngineHandle::verify` of a
//!   token the engine's cache holds (digest, lookup, the owner check; no routing, no worker
//!   hop), inside a current-thread runtime's `block_on`.
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
use engine::{CacheConfig, Cached, Engine, EngineConfig, Facts, TokenCache, TokenDigest};
use jose::Algorithm;

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

    let cache: TokenCache<jose::Jwt> = TokenCache::new(CacheConfig::default());
    for i in 0..100_000u32 {
        let other = format!("{token}{i}");
        let facts = Facts {
            exp,
            bytes: other.len(),
            ..Facts::default()
        };
        cache.insert_valid(
            TokenDigest::of(other.as_bytes()),
            1,
            Arc::clone(&jwt),
            facts,
            now,
        );
    }
    let key = TokenDigest::of(token.as_bytes());
    let facts = Facts {
        exp,
        kid: Some("bench-ES256"),
        bytes: token.len() * 2,
        ..Facts::default()
    };
    cache.insert_valid(key, 1, Arc::clone(&jwt), facts, now);
    assert!(matches!(
        cache.get(token.as_bytes(), 1, now),
        Some(Cached::Valid(_))
    ));

    group.bench_function(BenchmarkId::new("cache-hit", "ES256"), |b| {
        b.iter(|| black_box(cache.get(black_box(token.as_bytes()), 1, now)))
    });
    group.bench_function(BenchmarkId::new("cache-hit-digest", "ES256"), |b| {
        b.iter(|| black_box(cache.get_digest(black_box(&key), 1, now)))
    });
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

criterion_group!(engine_group, engine);
criterion_main!(engine_group);
