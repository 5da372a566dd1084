//! Group `dpop`: what one DPoP proof (RFC 9449) costs the daemon beyond the access token, per
//! proof algorithm, on one core:
//!
//! - `signature`: the floor: the proof's signature checked with its key already parsed
//!   (`VerifyingKey::verify` over the signing input).
//! - `proof`: `jose::proof::verify`: the JWS split, its header read, the `jwk` parsed into a
//!   key, the signature checked.
//! - `check`: `oauth::dpop::check`, every stateless check of section 4.3 (the above, `typ`,
//!   `htm`, `htu` normalised, `iat`, `ath` hashed, the thumbprint against `cnf.jkt`).
//! - `check+nonce+local`: `check`, the daemon's nonce checked (`oauth::nonce::Nonces`), and the
//!   proof remembered in memory (`server::dpop::Replays`): what `/v1/authz` does per proof with
//!   `nonce = true` (or without nonces, less the nonce).
//!
//! And `dpop/replay-store`: one `Store::remember_proof` (the conditional insert of
//! `replays = "store"`) on a local SQLite file, awaited from a current-thread runtime. On
//! PostgreSQL a network round trip adds to it.
//!
//! Proofs are made before the measurement, each with its own `jti` (`remember` sees a new one
//! every time); the run is far shorter than the proofs' window.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use jose::{Algorithm, SigningKey};
use oauth::dpop::Expected;

const URI: &str = "https://api.example/orders/1";
/// Distinct proofs per algorithm: more than criterion asks for in the measured time.
const PROOFS: usize = 200_000;

fn dpop(c: &mut Criterion) {
    let mut group = c.benchmark_group("dpop");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));
    let token = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl";
    for alg in [Algorithm::ES256, Algorithm::EdDSA] {
        let key = SigningKey::generate(alg).expect("key");
        let jkt = key.public().expect("public").thumbprint();
        let nonces = oauth::nonce::Nonces::generate(60);
        let now = testkit::unix_now();
        let nonce = nonces.issue(now);
        let proofs: Vec<String> = (0..PROOFS)
            .map(|_| {
                let mut claims = testkit::dpop::claims("GET", URI, Some(token));
                claims["nonce"] = nonce.clone().into();
                testkit::dpop::sign(&key, &claims)
            })
            .collect();
        let expected = Expected {
            method: "GET",
            uri: URI,
            access_token: Some(token),
            jkt: Some(&jkt),
            now,
            window_s: 60,
            algorithms: &[Algorithm::ES256, Algorithm::EdDSA],
        };
        let checked = oauth::dpop::check(&proofs[0], &expected).expect("a valid proof");
        assert_eq!(checked.jkt, jkt);

        let verifying = key.verifying_key().expect("verifying key");
        let (input, signature) = proofs[0].rsplit_once('.').expect("compact");
        let signature = jose::b64::decode(signature.as_bytes()).expect("signature");
        group.bench_function(BenchmarkId::new("signature", alg.name()), |b| {
            b.iter(|| verifying.verify(black_box(input.as_bytes()), black_box(&signature)))
        });
        let limits = jose::Limits::default();
        group.bench_function(BenchmarkId::new("proof", alg.name()), |b| {
            b.iter(|| {
                jose::proof::verify(black_box(proofs[0].as_bytes()), &[alg], &limits)
                    .expect("verified")
            })
        });
        group.bench_function(BenchmarkId::new("check", alg.name()), |b| {
            b.iter(|| oauth::dpop::check(black_box(&proofs[0]), &expected).expect("checked"))
        });
        let replays = server::dpop::Replays::new(PROOFS * 2);
        let mut next = proofs.iter().cycle();
        group.bench_function(BenchmarkId::new("check+nonce+local", alg.name()), |b| {
            b.iter(|| {
                let proof = next.next().expect("proofs");
                let checked = oauth::dpop::check(black_box(proof), &expected).expect("checked");
                let verdict = nonces.check(checked.nonce.as_deref().unwrap_or(""), now);
                let remembered =
                    replays.remember(&checked.jkt, &checked.jti, checked.iat + 60, now);
                black_box((verdict, remembered))
            })
        });
    }

    let dir = testkit::Scratch::new("bench-dpop-store");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let config = store::StoreConfig::Sqlite {
        path: dir.join("store.sqlite3"),
    };
    let store = runtime
        .block_on(store::Store::open(&config, testkit::unix_now()))
        .expect("store");
    let mut n: u64 = 0;
    group.bench_function("replay-store/sqlite", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                n += 1;
                let mut key = [0u8; 32];
                key[..8].copy_from_slice(&n.to_be_bytes());
                let first = runtime
                    .block_on(store.remember_proof(&key, i64::MAX / 2))
                    .expect("remembered");
                assert!(first);
            }
            start.elapsed()
        })
    });
    group.finish();
}

criterion_group!(dpop_group, dpop);
criterion_main!(dpop_group);
