//! The worker engine against direct verification: same verdicts, cache hits, bounded admission,
//! batching under load, shutdown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::{CacheConfig, Engine, EngineConfig, EngineError, IssuerSpec, Issuers, KeySource};
use jose::{Algorithm, KeySet, SigningKey, Validation};

const NOW: i64 = 1_800_000_000;
const ISS: &str = "https://issuer.example";

/// An ES256 issuer, `ISS`, with one key `k`.
struct Issuer {
    key: SigningKey,
    jwks: String,
}

impl Issuer {
    fn new() -> Self {
        let key = SigningKey::generate(Algorithm::ES256)
            .expect("keygen")
            .with_kid("k");
        let jwks = key.jwks();
        Issuer { key, jwks }
    }

    /// The engine's trusted issuers: this one, as `iss`.
    fn issuers_as(&self, iss: &str) -> Arc<Issuers> {
        let spec = IssuerSpec {
            issuer: iss.into(),
            ..IssuerSpec::default()
        };
        let source = KeySource::Jwks(self.jwks.clone().into_bytes());
        Arc::new(Issuers::new(vec![(spec, source)]).expect("issuers"))
    }

    fn keys(&self) -> KeySet {
        KeySet::from_jwks(self.jwks.as_bytes()).expect("JWKS").keys
    }

    fn issuers(&self) -> Arc<Issuers> {
        self.issuers_as(ISS)
    }

    /// The engine started for this issuer.
    fn engine(&self, config: EngineConfig) -> Engine {
        Engine::start(config, self.issuers())
    }

    /// `claims` (a JSON object's members, without braces) with this issuer's `iss`, signed.
    fn token(&self, members: &str) -> String {
        self.sign(&format!(r#"{{"iss":"{ISS}",{members}}}"#))
    }

    fn sign(&self, claims: &str) -> String {
        self.key.jwt(None, claims).expect("sign")
    }
}

fn config(workers: usize, queue: usize) -> EngineConfig {
    EngineConfig {
        workers,
        pin: false,
        queue_per_worker: queue,
        batch: 64,
        cache: CacheConfig::default(),
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(f)
}

#[test]
fn verdicts_match_direct_verification() {
    let issuer = Issuer::new();
    let engine = issuer.engine(config(2, 64));
    let handle = engine.handle();
    let mut tokens: Vec<String> = (0..20)
        .map(|i| issuer.token(&format!(r#""sub":"u{i}","exp":{}"#, NOW + 60)))
        .collect();
    tokens.push(issuer.token(&format!(r#""exp":{}"#, NOW - 3600)));
    tokens.push("not.a.token".into());
    tokens.push(Issuer::new().token(&format!(r#""exp":{}"#, NOW + 60)));
    let refs: Vec<&[u8]> = tokens.iter().map(|t| t.as_bytes()).collect();
    let results = block_on(handle.verify_batch(&refs, NOW));
    assert_eq!(results.len(), tokens.len());
    for (token, result) in tokens.iter().zip(&results) {
        let direct = jose::jwt::verify(
            token,
            &issuer.keys(),
            &Validation::default().with_issuer(ISS),
            NOW,
        );
        match (direct, result) {
            (Ok(d), Ok(e)) => assert_eq!(d.claims_json(), e.claims_json()),
            (Err(d), Err(EngineError::Invalid(code))) => assert_eq!(d.code(), *code),
            (d, e) => panic!("direct {d:?} vs engine {e:?}"),
        }
    }
    assert_eq!(
        results[0]
            .as_ref()
            .map(|j| j.str_claim("sub").map(|s| s.into_owned())),
        Ok(Some("u0".into()))
    );
    let stats = handle.stats();
    assert_eq!((stats.valid, stats.invalid), (20, 3));
    assert_eq!(stats.in_flight, 0);
    let es256 = stats
        .valid_by_alg
        .iter()
        .find(|(a, _)| *a == Algorithm::ES256);
    assert_eq!(es256, Some(&(Algorithm::ES256, 20)));
    let mut codes = stats.invalid_by_code.clone();
    codes.sort();
    assert_eq!(
        codes,
        [("bad_signature", 1), ("expired", 1), ("malformed", 1)]
    );
}

#[test]
fn repeats_are_answered_from_the_cache() {
    let issuer = Issuer::new();
    let engine = issuer.engine(config(1, 16));
    let handle = engine.handle();
    let token = issuer.token(&format!(r#""sub":"a","jti":"j1","exp":{}"#, NOW + 60));
    let first = block_on(handle.verify(token.as_bytes(), NOW)).expect("valid");
    let second = block_on(handle.verify(token.as_bytes(), NOW + 1)).expect("valid");
    assert!(Arc::ptr_eq(&first, &second));
    assert_eq!(handle.stats().cache_hits, 1);
    // Revoking by jti drops the verified entry: the next request is verified again.
    assert_eq!(handle.cache().revoke_jti("j1"), 1);
    block_on(handle.verify(token.as_bytes(), NOW)).expect("valid");
    assert_eq!(handle.stats().cache_hits, 1);
    // Past exp the cache no longer answers, and the worker says expired.
    let late = block_on(handle.verify(token.as_bytes(), NOW + 200));
    assert_eq!(late.err(), Some(EngineError::Invalid("expired")));
    // A bad token is remembered briefly: the flood costs one verification.
    let bad = format!("{}x", &token[..token.len() - 1]);
    for _ in 0..5 {
        let r = block_on(handle.verify(bad.as_bytes(), NOW));
        assert!(matches!(r, Err(EngineError::Invalid(_))));
    }
    assert_eq!(handle.stats().cache_hits, 1 + 4);
}

#[test]
fn overload_is_answered_at_once() {
    let issuer = Issuer::new();
    let engine = issuer.engine(config(1, 2));
    let handle = engine.handle();
    let tokens: Vec<String> = (0..200)
        .map(|i| issuer.token(&format!(r#""n":{i},"exp":{}"#, NOW + 60)))
        .collect();
    let refs: Vec<&[u8]> = tokens.iter().map(|t| t.as_bytes()).collect();
    let start = Instant::now();
    let results = block_on(handle.verify_batch(&refs, NOW));
    let elapsed = start.elapsed();
    let overloaded = results
        .iter()
        .filter(|r| matches!(r, Err(EngineError::Overloaded)))
        .count();
    let valid = results.iter().filter(|r| r.is_ok()).count();
    assert!(overloaded > 0, "capacity 2 admitted all 200");
    assert_eq!(overloaded + valid, 200);
    // Only the admitted ones were verified; the rest cost nothing.
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert_eq!(handle.stats().overloaded as usize, overloaded);
    assert_eq!(handle.stats().in_flight, 0);
}

#[test]
fn workers_batch_under_load() {
    let issuer = Issuer::new();
    let engine = issuer.engine(config(1, 1024));
    let handle = engine.handle();
    let tokens: Vec<String> = (0..300)
        .map(|i| issuer.token(&format!(r#""n":{i},"exp":{}"#, NOW + 60)))
        .collect();
    let refs: Vec<&[u8]> = tokens.iter().map(|t| t.as_bytes()).collect();
    let results = block_on(handle.verify_batch(&refs, NOW));
    assert!(results.iter().all(Result::is_ok));
    // Verdicts come back in order.
    for (i, r) in results.iter().enumerate() {
        let n = r.as_ref().expect("valid").numeric_claim("n");
        assert_eq!(n, Some(i as f64));
    }
    let stats = handle.stats();
    assert_eq!(stats.batched_jobs, 300);
    assert!(stats.batches < 300, "no batching: {stats:?}");
}

#[test]
fn shutdown_refuses_new_work() {
    let issuer = Issuer::new();
    let engine = issuer.engine(config(2, 16));
    let handle = engine.handle();
    let token = issuer.token(&format!(r#""exp":{}"#, NOW + 60));
    drop(engine);
    let r = block_on(handle.verify(token.as_bytes(), NOW));
    assert_eq!(r.err(), Some(EngineError::Shutdown));
}

#[test]
fn shutdown_answers_everything_already_admitted() {
    let issuer = Issuer::new();
    let engine = issuer.engine(config(2, 1024));
    let handle = engine.handle();
    let tokens: Vec<String> = (0..200)
        .map(|i| issuer.token(&format!(r#""n":{i},"exp":{}"#, NOW + 60)))
        .collect();
    let caller = std::thread::spawn(move || {
        let refs: Vec<&[u8]> = tokens.iter().map(|t| t.as_bytes()).collect();
        block_on(handle.verify_batch(&refs, NOW))
    });
    std::thread::sleep(Duration::from_millis(2));
    drop(engine); // joins the workers
    let results = caller.join().expect("caller thread");
    assert_eq!(results.len(), 200);
    // Each was either verified or refused at admission: none is left hanging.
    assert!(results
        .iter()
        .all(|r| r.is_ok() || matches!(r, Err(EngineError::Shutdown))));
}

/// Regression: a verdict cached under one policy was answered to another. Verdicts are now
/// reached by routing on the token's `iss`: a token claiming A and the same claims under B,
/// signed by one key both publish, are each answered for their own issuer, from the cache too.
#[test]
fn cached_verdicts_belong_to_their_issuer() {
    let issuer = Issuer::new();
    let both = || {
        let spec = |iss: &str| IssuerSpec {
            issuer: iss.into(),
            ..IssuerSpec::default()
        };
        let keys = || KeySource::Jwks(issuer.jwks.clone().into_bytes());
        Arc::new(Issuers::new(vec![(spec("A"), keys()), (spec("B"), keys())]).expect("issuers"))
    };
    let engine: Engine = Engine::start(config(1, 16), both());
    let handle = engine.handle();
    let for_a = issuer.sign(&format!(r#"{{"iss":"A","exp":{}}}"#, NOW + 60));
    let for_c = issuer.sign(&format!(r#"{{"iss":"C","exp":{}}}"#, NOW + 60));
    for _ in 0..2 {
        let a = block_on(handle.verify(for_a.as_bytes(), NOW)).expect("valid for A");
        assert_eq!(a.str_claim("iss").as_deref(), Some("A"));
        let c = block_on(handle.verify(for_c.as_bytes(), NOW));
        assert_eq!(c.err(), Some(EngineError::Invalid("invalid_issuer")));
    }
    assert_eq!(
        handle.stats().cache_hits,
        1,
        "A's second answer, from the cache"
    );
    // Another engine, trusting only B, has its own cache and refuses A's token.
    let only_b: Engine = Engine::start(config(1, 16), issuer.issuers_as("B"));
    let r = block_on(only_b.handle().verify(for_a.as_bytes(), NOW));
    assert_eq!(r.err(), Some(EngineError::Invalid("invalid_issuer")));
}

#[test]
fn a_revocation_takes_back_cached_and_batched_verdicts() {
    let issuer = Issuer::new();
    let engine = issuer.engine(config(1, 16));
    let handle = engine.handle();
    let gone = issuer.token(&format!(
        r#""sub":"a","jti":"j1","iat":{NOW},"exp":{}"#,
        NOW + 60
    ));
    let kept = issuer.token(&format!(
        r#""sub":"b","jti":"j2","iat":{NOW},"exp":{}"#,
        NOW + 60
    ));
    block_on(handle.verify(gone.as_bytes(), NOW)).expect("valid before the record");
    handle.revocations().apply([engine::Revocation::Jti {
        iss: ISS.into(),
        jti: "j1".into(),
        exp: NOW + 60,
    }]);
    // The cached verdict does not outlive the record; the other token is untouched.
    let revoked = Some(EngineError::Invalid("revoked"));
    assert_eq!(block_on(handle.verify(gone.as_bytes(), NOW)).err(), revoked);
    block_on(handle.verify(kept.as_bytes(), NOW)).expect("another jti stays valid");
    let batch = block_on(handle.verify_batch(&[gone.as_bytes(), kept.as_bytes()], NOW));
    assert_eq!(batch[0].as_ref().err(), revoked.as_ref());
    assert!(batch[1].is_ok());
    // Every token of subject b issued before NOW + 1: the cached verdict of `kept` goes too.
    handle.revocations().apply([engine::Revocation::Subject {
        iss: ISS.into(),
        sub: "b".into(),
        before: NOW + 1,
    }]);
    assert_eq!(block_on(handle.verify(kept.as_bytes(), NOW)).err(), revoked);
    let later = issuer.token(&format!(
        r#""sub":"b","iat":{},"exp":{}"#,
        NOW + 5,
        NOW + 60
    ));
    block_on(handle.verify(later.as_bytes(), NOW + 5)).expect("issued after the record");
    assert_eq!(handle.stats().revoked, 3);
}
