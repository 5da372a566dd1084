//! Group `engine`: the verification engine's parts. Today: a verified-token cache hit.
//!
//! - `cache-hit/ES256`: `TokenCache::get` on a realistic ES256 access token, SHA-256 of the
//!   whole token included, in a cache holding 100 000 other verified tokens.
//! - `cache-hit-digest/ES256`: the same lookup with the digest already computed: the map alone.
//! - `tessera/ES256`: full verification of the same token, for scale.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use benches::Contest;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use engine::{CacheConfig, Cached, Facts, TokenCache, TokenDigest};
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
    cache.insert_valid(key, Arc::clone(&jwt), facts, now);
    assert!(matches!(
        cache.get(token.as_bytes(), now),
        Some(Cached::Valid(_))
    ));

    group.bench_function(BenchmarkId::new("cache-hit", "ES256"), |b| {
        b.iter(|| black_box(cache.get(black_box(token.as_bytes()), now)))
    });
    group.bench_function(BenchmarkId::new("cache-hit-digest", "ES256"), |b| {
        b.iter(|| black_box(cache.get_digest(black_box(&key), now)))
    });
    group.bench_function(BenchmarkId::new("tessera", "ES256"), |b| {
        b.iter(|| black_box(contest.tessera(black_box(token))))
    });
    group.finish();
}

criterion_group!(engine_group, engine);
criterion_main!(engine_group);
