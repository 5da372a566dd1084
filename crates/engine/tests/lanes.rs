#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

//! The batched path against the single path, verdict by verdict: random batches of 1 to 64
//! tokens of every algorithm with a lane (RSA keys of 2048, 3072 and 4096 bits, PKCS#1 and
//! PSS; P-256, P-384; Ed25519) and some without (HS256, ES512), mixing valid tokens, tampered
//! signatures, payloads and headers, tokens signed by another key under the same `kid`,
//! high-S ECDSA signatures, out-of-range `r`/`s`, Ed25519 signatures with `S + L`, and expired
//! tokens. `engine::lanes::verify_all` with crypto_mb must give exactly what
//! `jose::jwt::verify` gives, error code included; so must the engine's workers.
//!
//! crypto_mb comes from `crypto/install.sh`; without it these tests fail and say so. On a CPU
//! without AVX-512 IFMA they compare the single path with itself through the batched code and
//! say once that the multi-buffer path was not exercised.

use std::path::PathBuf;
use std::sync::Arc;

use aws_lc_rs::encoding::AsDer as _;
use engine::lanes::{self, Signed, Tally, KINDS};
use jose::{Algorithm, KeySet, SigningKey, Validation};
use multibuffer::{LoadError, MultiBuffer, Source};

const NOW: i64 = 1_767_225_600;

fn library() -> Option<MultiBuffer> {
    let folder = Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../crypto/lib"));
    match MultiBuffer::load(&Source::Auto { folder }) {
        Ok(mb) => Some(mb),
        Err(LoadError::NotApplicable) => {
            eprintln!("multi-buffer path not exercised: this CPU lacks avx512ifma");
            None
        }
        Err(e) => panic!("crypto_mb: {e}; run crypto/install.sh (make test does)"),
    }
}

/// A small deterministic generator: the seed is printed, so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One issuer's keys: a signer and an impostor with the same `kid`.
struct Issuer {
    alg: Algorithm,
    signer: SigningKey,
    impostor: SigningKey,
    keys: KeySet,
}

fn rsa(alg: Algorithm, size: aws_lc_rs::rsa::KeySize) -> SigningKey {
    let pair = aws_lc_rs::rsa::KeyPair::generate(size).unwrap();
    SigningKey::from_pkcs8(alg, pair.as_der().unwrap().as_ref()).unwrap()
}

fn issuers() -> Vec<Issuer> {
    use aws_lc_rs::rsa::KeySize;
    let mut made = Vec::new();
    let mut add = |alg: Algorithm, signer: SigningKey, impostor: SigningKey| {
        let signer = signer.with_kid("k");
        let keys = signer.key_set().unwrap();
        made.push(Issuer {
            alg,
            signer,
            impostor: impostor.with_kid("k"),
            keys,
        });
    };
    for alg in [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::ES512,
        Algorithm::EdDSA,
        Algorithm::HS256,
    ] {
        add(
            alg,
            SigningKey::generate(alg).unwrap(),
            SigningKey::generate(alg).unwrap(),
        );
    }
    add(
        Algorithm::RS256,
        rsa(Algorithm::RS256, KeySize::Rsa3072),
        rsa(Algorithm::RS256, KeySize::Rsa3072),
    );
    add(
        Algorithm::PS384,
        rsa(Algorithm::PS384, KeySize::Rsa4096),
        rsa(Algorithm::PS384, KeySize::Rsa4096),
    );
    made
}

/// `a - b` (big-endian, same length, a ≥ b).
fn sub(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = a.to_vec();
    let mut borrow = 0i16;
    for i in (0..out.len()).rev() {
        let d = i16::from(a[i]) - i16::from(b[i]) - borrow;
        out[i] = d.rem_euclid(256) as u8;
        borrow = i16::from(d < 0);
    }
    out
}

/// `a + b` little-endian (same length), the carry out dropped.
fn add_le(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut carry = 0u16;
    a.iter()
        .zip(b)
        .map(|(&x, &y)| {
            let s = u16::from(x) + u16::from(y) + carry;
            carry = s >> 8;
            s as u8
        })
        .collect()
}

fn with_signature(token: &str, signature: &[u8]) -> String {
    let (head, _) = token.rsplit_once('.').unwrap();
    format!("{head}.{}", jose::b64::encode(signature))
}

/// A token of `issuer`, made valid or hostile in one of several ways.
fn token(issuer: &Issuer, rng: &mut Rng) -> String {
    let exp = if rng.below(10) == 0 {
        NOW - 3600
    } else {
        NOW + 600
    };
    let payload = format!(r#"{{"sub":"u{}","exp":{exp}}}"#, rng.next() % 1000);
    let good = issuer.signer.jwt(None, &payload).unwrap();
    let signature = jose::b64::decode(good.rsplit_once('.').unwrap().1.as_bytes()).unwrap();
    match rng.below(9) {
        0..=2 => good,
        3 => {
            let mut s = signature.clone();
            let i = rng.below(s.len());
            s[i] ^= 1 << rng.below(8);
            with_signature(&good, &s)
        }
        4 => {
            // Another payload under the first one's signature.
            let other = issuer
                .signer
                .jwt(None, r#"{"sub":"mallory","exp":4000000000}"#)
                .unwrap();
            let mut parts: Vec<&str> = good.split('.').collect();
            parts[1] = other.split('.').nth(1).unwrap();
            parts.join(".")
        }
        5 => issuer.impostor.jwt(None, &payload).unwrap(),
        6 if issuer.alg == Algorithm::ES256 => {
            // High S: n - s verifies as well as s.
            let (r, s) = signature.split_at(32);
            with_signature(
                &good,
                &[r, &sub(jose::batch::Curve::P256.order(), s)].concat(),
            )
        }
        6 if issuer.alg == Algorithm::EdDSA => {
            // S + L: the same point, a malleable encoding; refused.
            let (r, s) = signature.split_at(32);
            with_signature(
                &good,
                &[r, &add_le(s, &jose::batch::ED25519_ORDER)].concat(),
            )
        }
        6 | 7 => {
            // Out of range: all ones (r, s above n; RSA above the modulus) or zero.
            let fill = if rng.below(2) == 0 { 0xff } else { 0x00 };
            with_signature(&good, &vec![fill; signature.len()])
        }
        _ => {
            // A header another key set would choose: a kid the set lacks.
            let header = format!(r#"{{"alg":"{}","kid":"other"}}"#, issuer.alg.name());
            issuer.signer.token(&header, &payload).unwrap()
        }
    }
}

fn outcome(r: &Result<jose::Jwt, jose::Error>) -> Result<String, &'static str> {
    match r {
        Ok(jwt) => Ok(jwt.claims_json().to_string()),
        Err(e) => Err(e.code()),
    }
}

#[test]
fn batches_verify_as_the_single_path_does() {
    let mb = library();
    let issuers = issuers();
    let validation = Validation::default();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("seed {seed}");
    let mut rng = Rng(seed);
    let mut tally = Tally::default();
    let mut compared = 0;
    for _ in 0..40 {
        let n = 1 + rng.below(64);
        // A batch of a few issuers, as a gateway's traffic is.
        let mix: Vec<usize> = (0..1 + rng.below(4))
            .map(|_| rng.below(issuers.len()))
            .collect();
        let tokens: Vec<(usize, String)> = (0..n)
            .map(|_| {
                let i = mix[rng.below(mix.len())];
                (i, token(&issuers[i], &mut rng))
            })
            .collect();
        let signed: Vec<Signed<'_>> = tokens
            .iter()
            .map(|(i, t)| Signed {
                token: t.as_bytes(),
                keys: &issuers[*i].keys,
                validation: &validation,
            })
            .collect();
        let batched = lanes::verify_all(mb.as_ref(), &signed, NOW, &mut tally);
        assert_eq!(batched.len(), n);
        for ((i, t), b) in tokens.iter().zip(&batched) {
            let single = jose::jwt::verify(t.as_bytes(), &issuers[*i].keys, &validation, NOW);
            assert_eq!(
                outcome(b),
                outcome(&single),
                "seed {seed}: {:?} token {t}",
                issuers[*i].alg
            );
            compared += 1;
        }
    }
    assert!(compared > 200);
    if mb.is_some() {
        // Every kind went through the library at least once.
        for (k, kind) in KINDS.iter().enumerate() {
            assert!(
                tally.calls[k] > 0,
                "seed {seed}: no {kind} call ({tally:?})"
            );
            assert!(
                tally.lanes[k] >= tally.calls[k] * 3,
                "{kind}: calls of fewer lanes than pay"
            );
            assert!(tally.lanes[k] <= tally.calls[k] * 8);
        }
    }
}

/// A lone token never waits for company, and a group too small to pay for a call goes to the
/// single path.
#[test]
fn small_groups_take_the_single_path() {
    let Some(mb) = library() else { return };
    let signer = SigningKey::generate(Algorithm::ES256).unwrap();
    let keys = signer.key_set().unwrap();
    let validation = Validation::default();
    let tokens: Vec<String> = (0..8)
        .map(|i| {
            signer
                .jwt(None, &format!(r#"{{"n":{i},"exp":{}}}"#, NOW + 60))
                .unwrap()
        })
        .collect();
    let signed: Vec<Signed<'_>> = tokens
        .iter()
        .map(|t| Signed {
            token: t.as_bytes(),
            keys: &keys,
            validation: &validation,
        })
        .collect();
    let p256 = KINDS.iter().position(|&k| k == "p256").unwrap();
    for (n, calls) in [(1, 0), (3, 0), (4, 1), (8, 1)] {
        let mut tally = Tally::default();
        let verdicts = lanes::verify_all(Some(&mb), &signed[..n], NOW, &mut tally);
        assert!(verdicts.iter().all(Result::is_ok));
        assert_eq!(tally.calls[p256], calls, "{n} tokens");
    }
}

/// The engine's workers use the library for their batches, and say so in their counters.
#[test]
fn the_engine_feeds_its_batches_to_the_library() {
    let Some(mb) = library() else { return };
    let signer = SigningKey::generate(Algorithm::EdDSA)
        .unwrap()
        .with_kid("k");
    let spec = engine::IssuerSpec {
        issuer: "https://issuer.example".into(),
        ..engine::IssuerSpec::default()
    };
    let issuers = engine::Issuers::new(vec![(
        spec,
        engine::KeySource::Keys(signer.key_set().unwrap()),
    )])
    .unwrap();
    let config = engine::EngineConfig {
        workers: 1,
        pin: false,
        cache: engine::CacheConfig {
            ttl: 0,
            negative_ttl: 0,
            ..engine::CacheConfig::default()
        },
        ..engine::EngineConfig::default()
    };
    let engine: engine::Engine =
        engine::Engine::start_with(config, Arc::new(issuers), Some(Arc::new(mb)));
    let handle = engine.handle();
    let mut tokens: Vec<String> = (0..64)
        .map(|i| {
            signer
                .jwt(
                    None,
                    &format!(
                        r#"{{"iss":"https://issuer.example","n":{i},"exp":{}}}"#,
                        NOW + 60
                    ),
                )
                .unwrap()
        })
        .collect();
    tokens[17] = with_signature(&tokens[17], &[7u8; 64]);
    let refs: Vec<&[u8]> = tokens.iter().map(|t| t.as_bytes()).collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let verdicts = runtime.block_on(handle.verify_batch(&refs, NOW));
    for (i, v) in verdicts.iter().enumerate() {
        assert_eq!(v.is_ok(), i != 17, "token {i}: {v:?}");
    }
    let stats = handle.stats();
    let (_, calls, lanes) = stats
        .lanes
        .iter()
        .find(|(k, _, _)| *k == "ed25519")
        .unwrap();
    assert!(*calls >= 1 && *lanes >= 3, "{:?}", stats.lanes);
    assert!(handle.multibuffer().is_some());
}
