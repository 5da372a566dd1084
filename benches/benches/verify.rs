//! Group `verify`: full JWT verification of one realistic access token per algorithm.
//!
//! - `tessera`: `jose::jwt::verify` (split, header, key lookup by `kid`, signature, claims).
//! - `raw`: aws-lc-rs signature verification of the same signing input with a pre-parsed key
//!   and the signature decoded beforehand: the limit.
//! - `jsonwebtoken`: the crate (aws-lc-rs backend) with the same token and checks.
//!
//! Criterion measures each id in its own time window; on a shared machine the clock speed
//! drifts between windows, so the ratios come from `benches/benches/ratios.rs`, which
//! interleaves the three.

use std::hint::black_box;
use std::time::Duration;

use benches::{Contest, ALGORITHMS};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn verify(c: &mut Criterion) {
    let mut group = c.benchmark_group("verify");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));

    for alg in ALGORITHMS {
        let contest = Contest::new(alg);
        let name = alg.name();
        let token = contest.fixture.token.as_str();
        let signature = contest.signature();

        group.bench_function(BenchmarkId::new("tessera", name), |b| {
            b.iter(|| black_box(contest.tessera(black_box(token))))
        });
        group.bench_function(BenchmarkId::new("raw", name), |b| {
            b.iter(|| black_box(contest.raw(black_box(signature))))
        });
        group.bench_function(BenchmarkId::new("jsonwebtoken", name), |b| {
            b.iter(|| black_box(contest.jsonwebtoken(black_box(token))))
        });
    }
    group.finish();
}

criterion_group!(verify_group, verify);
criterion_main!(verify_group);
