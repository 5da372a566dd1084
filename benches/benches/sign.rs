//! Group `sign`: JWS signing with keys inside a PKCS#11 token (SoftHSM), per algorithm.
//!
//! - `tessera`: `pkcs11::Hsm::sign` through the session pool, on a realistic JWS signing input
//!   (for ES256 this includes the SHA-256 hash, done in software because SoftHSM has no
//!   `CKM_ECDSA_SHA256`).
//! - `pkcs11`: the limit: a bare `C_SignInit`/`C_Sign` loop (`pkcs11::RawSigner::sign`) on one
//!   session held for the whole benchmark, asking the token for exactly what tessera asks it
//!   (ES256: `CKM_ECDSA` over the precomputed digest; RS256: `CKM_SHA256_RSA_PKCS`; EdDSA:
//!   `CKM_EDDSA` over the signing input).
//! - `tessera-2-threads` (ES256, EdDSA): two threads signing through the same pool at once. The
//!   reported time is wall time divided by the signatures made by both threads together, i.e.
//!   aggregate throughput, not the latency of one signature.
//!
//! Setup makes a throwaway SoftHSM token directory and configuration, creates a token in it and
//! generates one key per algorithm; the directory is removed at the end.

use std::hint::black_box;
use std::time::{Duration, Instant};

use benches::hsm::{assert_verifies, open_token, signing_input, LABEL};
use criterion::{BenchmarkId, Criterion, Throughput};
use jose::Algorithm;
use pkcs11::{Hsm, KeyInfo};
use testkit::SoftHsm;

/// Algorithms also measured with two signing threads.
const THREADED: [Algorithm; 2] = [Algorithm::ES256, Algorithm::EdDSA];

fn sign(c: &mut Criterion, hsm: &Hsm, keys: &[KeyInfo]) {
    let mut group = c.benchmark_group("sign");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        // RS256 makes only 1-2k signatures/s in SoftHSM: keep the minimum iteration count of
        // criterion's linear sampling (n(n+1)/2 for n samples) well inside the 3 s.
        .sample_size(20)
        .throughput(Throughput::Elements(1));

    for key in keys {
        let alg = key.life.alg;
        let name = alg.name();
        let input = signing_input(key);
        let message = input.as_bytes();

        let signature = hsm
            .sign(key, message)
            .unwrap_or_else(|e| panic!("{alg}: tessera signing fails: {e}"));
        assert_verifies(key, &input, &signature, "tessera");

        group.bench_function(BenchmarkId::new("tessera", name), |b| {
            b.iter(|| black_box(hsm.sign(key, black_box(message))))
        });

        let raw = hsm
            .raw_signer(key)
            .unwrap_or_else(|e| panic!("{alg}: a raw signing session: {e}"));
        let data = raw.input(message);
        let signature = raw
            .sign(&data)
            .unwrap_or_else(|e| panic!("{alg}: raw C_Sign fails: {e}"));
        assert_verifies(key, &input, &signature, "raw PKCS#11");
        group.bench_function(BenchmarkId::new("pkcs11", name), |b| {
            b.iter(|| black_box(raw.sign(black_box(&data))))
        });
        drop(raw);

        if THREADED.contains(&alg) {
            // Aggregate throughput: `iters` signatures shared by two threads, timed on the wall
            // clock, so criterion reports wall time per signature over both threads.
            group.bench_function(BenchmarkId::new("tessera-2-threads", name), |b| {
                b.iter_custom(|iters| {
                    let half = iters / 2;
                    let start = Instant::now();
                    std::thread::scope(|scope| {
                        for n in [half, iters - half] {
                            scope.spawn(move || {
                                for _ in 0..n {
                                    black_box(hsm.sign(key, black_box(message)))
                                        .expect("HSM signing in a thread");
                                }
                            });
                        }
                    });
                    start.elapsed()
                })
            });
        }
    }
    group.finish();
}

fn main() {
    // SoftHSM reads SOFTHSM2_CONF once, when the module is first initialised, so it is set
    // here: first thing in main, before any thread exists and before anything touches PKCS#11.
    let token = SoftHsm::folder("bench-sign", LABEL);
    std::env::set_var("SOFTHSM2_CONF", token.dir.join("softhsm2.conf"));

    let (hsm, keys) = open_token(&token.dir, token.label);
    let mut criterion = Criterion::default().configure_from_args();
    sign(&mut criterion, &hsm, &keys);
    criterion.final_summary();

    // Close the sessions and finalise the module before the token directory goes.
    drop(hsm);
    drop(token);
}
