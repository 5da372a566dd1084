//! Issuer binding: a token is routed by the issuer it claims, then by its header to one of that
//! issuer's keys, and must claim that issuer, so a key of issuer A never verifies a token claiming
//! issuer B, and two issuers may use the same `kid`.

use std::sync::Arc;

use engine::{Engine, EngineConfig, EngineError, IssuerSpec, Issuers, IssuersError, KeySource};
use jose::{jws, Algorithm, SigningKey};

const NOW: i64 = 1_800_000_000;

/// An ES256 key that tests publish under several kids.
struct Es256 {
    /// PKCS#8, to make the key again with another kid.
    stored: Vec<u8>,
    key: SigningKey,
}

impl Es256 {
    fn new() -> Self {
        let (key, stored) = SigningKey::generate_stored(Algorithm::ES256).expect("keygen");
        Es256 { stored, key }
    }

    /// The public JWK, published as `kid`.
    fn jwk(&self, kid: &str) -> String {
        SigningKey::from_stored(Algorithm::ES256, &self.stored)
            .expect("stored key")
            .with_kid(kid)
            .jwk()
    }

    /// `claims` signed, the header naming `kid`.
    fn token(&self, kid: Option<&str>, claims: &str) -> String {
        let header = jws::header_json(Algorithm::ES256, kid, None);
        self.key.token(&header, claims).expect("sign")
    }
}

fn spec(issuer: &str, audiences: &[&str], algorithms: &[Algorithm]) -> IssuerSpec {
    IssuerSpec {
        issuer: issuer.into(),
        audiences: audiences.iter().map(|a| a.to_string()).collect(),
        algorithms: algorithms.to_vec(),
        ..IssuerSpec::default()
    }
}

fn jwks(keys: &[String]) -> KeySource {
    KeySource::Jwks(format!("{{\"keys\":[{}]}}", keys.join(",")).into_bytes())
}

fn claims(iss: &str, aud: &str) -> String {
    format!(r#"{{"iss":"{iss}","aud":"{aud}","exp":{}}}"#, NOW + 60)
}

/// An engine with `workers` unpinned workers, verifying for `issuers`.
fn engine(workers: usize, issuers: Issuers) -> Engine {
    let config = EngineConfig {
        workers,
        pin: false,
        ..EngineConfig::default()
    };
    Engine::start(config, Arc::new(issuers))
}

fn verify(engine: &Engine, token: &str) -> Result<(), EngineError> {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(engine.handle().verify(token.as_bytes(), NOW))
        .map(|_| ())
}

#[test]
fn a_key_of_one_issuer_never_verifies_a_token_claiming_another() {
    let (a, b) = (Es256::new(), Es256::new());
    let issuers = Issuers::new(vec![
        (
            spec("https://a.example", &["api"], &[]),
            jwks(&[a.jwk("a1")]),
        ),
        (
            spec("https://b.example", &["api"], &[]),
            jwks(&[b.jwk("b1")]),
        ),
    ])
    .expect("issuers");
    let engine = engine(1, issuers);
    assert_eq!(
        verify(
            &engine,
            &a.token(Some("a1"), &claims("https://a.example", "api"))
        ),
        Ok(())
    );
    assert_eq!(
        verify(
            &engine,
            &b.token(Some("b1"), &claims("https://b.example", "api"))
        ),
        Ok(())
    );
    // A's key signing a token that claims B: routed to B by its iss, where a1 is unknown.
    assert_eq!(
        verify(
            &engine,
            &a.token(Some("a1"), &claims("https://b.example", "api"))
        ),
        Err(EngineError::Invalid("unknown_key"))
    );
    // An issuer trusted nowhere here.
    assert_eq!(
        verify(
            &engine,
            &a.token(Some("a1"), &claims("https://c.example", "api"))
        ),
        Err(EngineError::Invalid("invalid_issuer"))
    );
    // A's key with B's kid: routed to B, whose key does not verify it.
    assert_eq!(
        verify(
            &engine,
            &a.token(Some("b1"), &claims("https://b.example", "api"))
        ),
        Err(EngineError::Invalid("bad_signature"))
    );
    // Unknown kid; no kid while two issuers sign ES256 is routed by iss.
    assert_eq!(
        verify(
            &engine,
            &a.token(Some("zz"), &claims("https://a.example", "api"))
        ),
        Err(EngineError::Invalid("unknown_key"))
    );
    assert_eq!(
        verify(&engine, &a.token(None, &claims("https://a.example", "api"))),
        Ok(())
    );
    // Audiences are the issuer's own.
    assert_eq!(
        verify(
            &engine,
            &a.token(Some("a1"), &claims("https://a.example", "other"))
        ),
        Err(EngineError::Invalid("invalid_audience"))
    );
}

#[test]
fn issuer_configuration_is_checked() {
    let (a, b) = (Es256::new(), Es256::new());
    let ed_jwk = SigningKey::generate(Algorithm::EdDSA)
        .expect("keygen")
        .with_kid("e1")
        .jwk();
    let twice = Issuers::new(vec![
        (spec("https://a.example", &[], &[]), jwks(&[a.jwk("a1")])),
        (spec("https://a.example", &[], &[]), jwks(&[b.jwk("b1")])),
    ]);
    assert!(matches!(twice, Err(IssuersError::DuplicateIssuer(_))));
    let none = Issuers::new(vec![(
        spec("https://a.example", &[], &[Algorithm::RS256]),
        jwks(&[a.jwk("a1")]),
    )]);
    assert!(matches!(none, Err(IssuersError::NoKeys(_))));
    let bad = Issuers::new(vec![(
        spec("https://a.example", &[], &[]),
        KeySource::Jwks(b"{}".to_vec()),
    )]);
    assert!(matches!(bad, Err(IssuersError::KeySet { .. })));
    // An algorithm list leaves other keys out.
    let only_ed = Issuers::new(vec![(
        spec("https://a.example", &[], &[Algorithm::EdDSA]),
        jwks(&[a.jwk("a1"), ed_jwk]),
    )])
    .expect("issuers");
    assert_eq!(
        only_ed.policies().next().expect("one issuer").keys().len(),
        1
    );
    assert!(only_ed.route(a.token(Some("a1"), "{}").as_bytes()).is_err());
}

/// A routed batch answers each token with its own issuer's verdict, in order, whatever the mix.
#[test]
fn routed_batches_answer_in_order_with_each_issuers_verdict() {
    let (a, b) = (Es256::new(), Es256::new());
    let issuers = Issuers::new(vec![
        (spec("https://a.example", &[], &[]), jwks(&[a.jwk("a1")])),
        (spec("https://b.example", &[], &[]), jwks(&[b.jwk("b1")])),
    ])
    .expect("issuers");
    let engine = engine(2, issuers);
    let mut tokens = Vec::new();
    let mut expected = Vec::new();
    for i in 0..40 {
        let (token, verdict) = match i % 5 {
            0 => (
                a.token(Some("a1"), &claims("https://a.example", "x")),
                Ok(()),
            ),
            1 => (
                b.token(Some("b1"), &claims("https://b.example", "x")),
                Ok(()),
            ),
            2 => (
                a.token(Some("a1"), &claims("https://b.example", "x")),
                Err(EngineError::Invalid("unknown_key")),
            ),
            3 => (
                a.token(Some("nope"), &claims("https://a.example", "x")),
                Err(EngineError::Invalid("unknown_key")),
            ),
            _ => (
                "not.a.token".to_string(),
                Err(EngineError::Invalid("malformed")),
            ),
        };
        tokens.push(token);
        expected.push(verdict);
    }
    let refs: Vec<&[u8]> = tokens.iter().map(|t| t.as_bytes()).collect();
    let results = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(engine.handle().verify_batch(&refs, NOW));
    let results: Vec<Result<(), EngineError>> =
        results.into_iter().map(|r| r.map(|_| ())).collect();
    assert_eq!(results, expected);
}

/// Regression: a `kid` was looked up across every issuer, so two issuers publishing the same
/// `kid` (common: "1", "default", "key-1") refused to start ("kid is published by both"). Now
/// the `kid` is looked up within the issuer the token claims: each issuer's tokens verify with
/// its own key, and neither key verifies the other's tokens.
#[test]
fn regression_the_same_kid_under_two_issuers_is_not_an_error() {
    let (a, b) = (Es256::new(), Es256::new());
    let issuers = Issuers::new(vec![
        (spec("https://a.example", &[], &[]), jwks(&[a.jwk("1")])),
        (spec("https://b.example", &[], &[]), jwks(&[b.jwk("1")])),
    ])
    .expect("the same kid under two issuers is accepted");
    let engine = engine(1, issuers);
    let verdict =
        |signer: &Es256, iss: &str| verify(&engine, &signer.token(Some("1"), &claims(iss, "x")));
    assert_eq!(verdict(&a, "https://a.example"), Ok(()));
    assert_eq!(verdict(&b, "https://b.example"), Ok(()));
    assert_eq!(
        verdict(&a, "https://b.example"),
        Err(EngineError::Invalid("bad_signature"))
    );
    assert_eq!(
        verdict(&b, "https://a.example"),
        Err(EngineError::Invalid("bad_signature"))
    );
}

/// Regression: a token without a `kid` was routed to the only issuer with a key of its
/// algorithm; once a second issuer had a key of that algorithm, the first issuer's kid-less
/// tokens were refused as `ambiguous_key`. Now they are routed by `iss`.
#[test]
fn regression_a_kidless_token_keeps_verifying_when_another_issuer_has_its_algorithm() {
    let (a, b) = (Es256::new(), Es256::new());
    let token = a.token(None, &claims("https://a.example", "x"));
    let alone = engine(
        1,
        Issuers::new(vec![(
            spec("https://a.example", &[], &[]),
            jwks(&[a.jwk("a1")]),
        )])
        .expect("issuers"),
    );
    assert_eq!(verify(&alone, &token), Ok(()));
    let with_b = engine(
        1,
        Issuers::new(vec![
            (spec("https://a.example", &[], &[]), jwks(&[a.jwk("a1")])),
            (spec("https://b.example", &[], &[]), jwks(&[b.jwk("b1")])),
        ])
        .expect("issuers"),
    );
    assert_eq!(verify(&with_b, &token), Ok(()));
    // B's kid-less token is B's, and A's key does not verify it.
    assert_eq!(
        verify(&with_b, &b.token(None, &claims("https://b.example", "x"))),
        Ok(())
    );
    assert_eq!(
        verify(&with_b, &a.token(None, &claims("https://b.example", "x"))),
        Err(EngineError::Invalid("bad_signature"))
    );
}

/// An issuer's `typ`, required claims and maximum lifetime are part of its policy: the engine
/// refuses its tokens that lack them.
#[test]
fn an_issuers_typ_required_claims_and_max_lifetime_are_its_policy() {
    let a = Es256::new();
    let spec = IssuerSpec {
        typ: Some("at+jwt".into()),
        required_claims: vec!["jti".into()],
        max_lifetime: Some(600),
        ..spec("https://a.example", &["api"], &[])
    };
    let issuers = Issuers::new(vec![(spec.clone(), jwks(&[a.jwk("a1")]))]).expect("issuers");
    let policy = issuers.policies().next().expect("one policy");
    assert_eq!(policy.validation, spec.validation());
    let v = &policy.validation;
    assert_eq!(v.issuer.as_deref(), Some("https://a.example"));
    assert_eq!(v.audiences, ["api"]);
    assert_eq!(v.typ.as_deref(), Some("at+jwt"));
    assert_eq!(v.required_claims, ["jti"]);
    assert_eq!(v.max_lifetime, Some(600));
    let engine = engine(1, issuers);
    // No typ: refused before the claims are read.
    assert_eq!(
        verify(
            &engine,
            &a.token(Some("a1"), &claims("https://a.example", "api"))
        ),
        Err(EngineError::Invalid("invalid_type"))
    );
}
