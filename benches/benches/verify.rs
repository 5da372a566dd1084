//! Group `verify`: full JWT verification of one realistic access token per algorithm.
//!
//! - `tessera`: `jose::jwt::verify` (split, header, key lookup by `kid`, signature, claims).
//! - `raw`: aws-lc-rs signature verification of the same signing input with a pre-parsed key
//!   and the signature decoded beforehand: the limit.
//! - `jsonwebtoken`: the crate (aws-lc-rs backend) with the same token and checks.
//!
//! Before each algorithm is measured, every implementation must accept the token and reject a
//! copy with one signature character changed, so an error path is never what gets timed.

use std::hint::black_box;
use std::time::Duration;

use benches::{jsonwebtoken_validation, tessera_validation, Claims, Fixture, ALGORITHMS, SUBJECT};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// Panics unless all three implementations accept the fixture's token and reject it tampered.
fn check(
    fixture: &Fixture,
    keys: &jose::KeySet,
    validation: &jose::Validation,
    raw: &benches::RawVerifier,
    jwt_key: &jsonwebtoken::DecodingKey,
    jwt_validation: &jsonwebtoken::Validation,
) {
    let alg = fixture.signer.alg();
    let token = &fixture.token;
    let tampered = fixture.tampered_token();

    let jwt = jose::jwt::verify(token.as_bytes(), keys, validation, fixture.now)
        .unwrap_or_else(|e| panic!("{alg}: tessera rejects the token: {e:?}"));
    assert_eq!(jwt.alg(), alg);
    assert_eq!(
        jwt.str_claim("sub").as_deref(),
        Some(SUBJECT),
        "{alg}: tessera sub"
    );
    match jose::jwt::verify(tampered.as_bytes(), keys, validation, fixture.now) {
        Err(jose::Error::BadSignature) => {}
        other => panic!("{alg}: tessera on a tampered token: {other:?}"),
    }

    raw.verify(fixture.signing_input(), &fixture.signature())
        .unwrap_or_else(|_| panic!("{alg}: raw rejects the token"));
    let bad_signature = benches::decoded_signature(&tampered);
    assert_ne!(bad_signature, fixture.signature());
    assert!(
        raw.verify(fixture.signing_input(), &bad_signature).is_err(),
        "{alg}: raw accepts a tampered signature"
    );

    let data = jsonwebtoken::decode::<Claims>(token, jwt_key, jwt_validation)
        .unwrap_or_else(|e| panic!("{alg}: jsonwebtoken rejects the token: {e:?}"));
    assert_eq!(data.claims.sub, SUBJECT, "{alg}: jsonwebtoken sub");
    match jsonwebtoken::decode::<Claims>(&tampered, jwt_key, jwt_validation) {
        Err(e) if *e.kind() == jsonwebtoken::errors::ErrorKind::InvalidSignature => {}
        other => panic!("{alg}: jsonwebtoken on a tampered token: {other:?}"),
    }
}

fn verify(c: &mut Criterion) {
    let mut group = c.benchmark_group("verify");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));

    for alg in ALGORITHMS {
        let fixture = Fixture::new(alg);
        let name = alg.name();
        let token = fixture.token.as_str();

        let keys = fixture.signer.key_set();
        let validation = tessera_validation();
        let now = fixture.now;

        let raw = fixture.signer.raw_verifier();
        let signing_input = fixture.signing_input();
        let signature = fixture.signature();

        let jwt_key = fixture.signer.jsonwebtoken_key();
        let jwt_validation = jsonwebtoken_validation(fixture.signer.jsonwebtoken_alg());

        check(
            &fixture,
            &keys,
            &validation,
            &raw,
            &jwt_key,
            &jwt_validation,
        );

        group.bench_function(BenchmarkId::new("tessera", name), |b| {
            b.iter(|| {
                black_box(jose::jwt::verify(
                    black_box(token.as_bytes()),
                    &keys,
                    &validation,
                    now,
                ))
            })
        });
        group.bench_function(BenchmarkId::new("raw", name), |b| {
            b.iter(|| black_box(raw.verify(black_box(signing_input), black_box(&signature))))
        });
        group.bench_function(BenchmarkId::new("jsonwebtoken", name), |b| {
            b.iter(|| {
                black_box(jsonwebtoken::decode::<Claims>(
                    black_box(token),
                    &jwt_key,
                    &jwt_validation,
                ))
            })
        });
    }
    group.finish();
}

criterion_group!(verify_group, verify);
criterion_main!(verify_group);
