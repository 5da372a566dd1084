#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

//! Issuing and verifying agree: for every algorithm, a token assembled with `SigningInput` from
//! an aws-lc-rs signature verifies through a JWK Set, and the policy options of `Validation`
//! (maximum lifetime, required claims) decide as documented.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
use aws_lc_rs::{hmac, rand::SecureRandom};
use jose::{b64, jws, Algorithm, KeySet, SigningInput, Validation};

/// Signs a message the way JWS wants the signature.
type Sign = Box<dyn Fn(&[u8]) -> Vec<u8>>;

/// A signing function and the public JWK for one algorithm.
fn key_for(alg: Algorithm) -> (Sign, String) {
    let rng = SystemRandom::new();
    let name = alg.name();
    match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            let (hash, len) = match alg {
                Algorithm::HS256 => (hmac::HMAC_SHA256, 32),
                Algorithm::HS384 => (hmac::HMAC_SHA384, 48),
                _ => (hmac::HMAC_SHA512, 64),
            };
            let mut secret = vec![0u8; len];
            rng.fill(&mut secret).unwrap();
            let jwk = format!(
                r#"{{"kty":"oct","alg":"{name}","k":"{}"}}"#,
                b64::encode(&secret)
            );
            let key = hmac::Key::new(hash, &secret);
            (
                Box::new(move |m| hmac::sign(&key, m).as_ref().to_vec()),
                jwk,
            )
        }
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => {
            let padding: &'static dyn sig::RsaEncoding = match alg {
                Algorithm::RS256 => &sig::RSA_PKCS1_SHA256,
                Algorithm::RS384 => &sig::RSA_PKCS1_SHA384,
                Algorithm::RS512 => &sig::RSA_PKCS1_SHA512,
                Algorithm::PS256 => &sig::RSA_PSS_SHA256,
                Algorithm::PS384 => &sig::RSA_PSS_SHA384,
                _ => &sig::RSA_PSS_SHA512,
            };
            let pair = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
            let public = pair.public_key();
            let jwk = format!(
                r#"{{"kty":"RSA","alg":"{name}","n":"{}","e":"{}"}}"#,
                b64::encode(public.modulus().big_endian_without_leading_zero()),
                b64::encode(public.exponent().big_endian_without_leading_zero())
            );
            let sign = move |m: &[u8]| {
                let mut out = vec![0u8; pair.public_modulus_len()];
                pair.sign(padding, &SystemRandom::new(), m, &mut out)
                    .unwrap();
                out
            };
            (Box::new(sign), jwk)
        }
        Algorithm::ES256 | Algorithm::ES384 | Algorithm::ES512 => {
            let (signing, crv, len) = match alg {
                Algorithm::ES256 => (&sig::ECDSA_P256_SHA256_FIXED_SIGNING, "P-256", 32),
                Algorithm::ES384 => (&sig::ECDSA_P384_SHA384_FIXED_SIGNING, "P-384", 48),
                _ => (&sig::ECDSA_P521_SHA512_FIXED_SIGNING, "P-521", 66),
            };
            let pair = EcdsaKeyPair::generate(signing).unwrap();
            let point = pair.public_key().as_ref().to_vec();
            // No alg: an EC key is pinned by its curve.
            let jwk = format!(
                r#"{{"kty":"EC","crv":"{crv}","x":"{}","y":"{}"}}"#,
                b64::encode(&point[1..=len]),
                b64::encode(&point[len + 1..])
            );
            let sign = move |m: &[u8]| {
                pair.sign(&SystemRandom::new(), m)
                    .unwrap()
                    .as_ref()
                    .to_vec()
            };
            (Box::new(sign), jwk)
        }
        Algorithm::EdDSA => {
            let pair = Ed25519KeyPair::generate().unwrap();
            let jwk = format!(
                r#"{{"kty":"OKP","crv":"Ed25519","x":"{}"}}"#,
                b64::encode(pair.public_key().as_ref())
            );
            (Box::new(move |m| pair.sign(m).as_ref().to_vec()), jwk)
        }
        other => panic!("no key for {other}"),
    }
}

const NOW: i64 = 1_800_000_000;

fn sign(
    alg: Algorithm,
    sign: &dyn Fn(&[u8]) -> Vec<u8>,
    kid: Option<&str>,
    claims: &str,
) -> String {
    let header = jws::header_json(alg, kid, Some("at+jwt"));
    let input = SigningInput::new(header.as_bytes(), claims.as_bytes());
    let signature = sign(input.as_bytes());
    input.into_compact(&signature)
}

#[test]
fn every_algorithm_round_trips() {
    for alg in Algorithm::ALL {
        let (signer, jwk) = key_for(alg);
        let kid = format!("kid-\"{}\"", alg.name()); // a kid that needs JSON escaping
        let mut jwk_with_kid = jwk.clone();
        jwk_with_kid.insert_str(1, &format!(r#""kid":"kid-\"{}\"","#, alg.name()));
        let jwks = KeySet::from_jwks(format!(r#"{{"keys":[{jwk_with_kid}]}}"#).as_bytes())
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert!(jwks.skipped.is_empty());
        assert_eq!(jwks.keys.iter().next().map(|k| k.alg()), Some(alg));

        let claims = format!(r#"{{"sub":"ünïcode","exp":{},"iat":{NOW}}}"#, NOW + 60);
        let token = sign(alg, &*signer, Some(&kid), &claims);
        let mut policy = Validation::default();
        policy.typ = Some("at+jwt".into());
        let jwt = jose::jwt::verify(&token, &jwks.keys, &policy, NOW)
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(jwt.alg(), alg);
        assert_eq!(jwt.claims_json(), claims);
        assert_eq!(jwt.str_claim("sub").as_deref(), Some("ünïcode"));
        assert_eq!(jwt.numeric_claim("iat"), Some(NOW as f64));
        assert_eq!(
            jwt.header_json(),
            format!(
                r#"{{"alg":"{}","kid":"kid-\"{}\"","typ":"at+jwt"}}"#,
                alg, alg
            )
        );

        // The key found by kid also verifies through the programmatic lookup.
        assert!(jwks.keys.find(alg, Some(&kid)).is_ok());
        // A signature made by another key of the same algorithm does not verify.
        let (other, _) = key_for(alg);
        let forged = sign(alg, &*other, Some(&kid), &claims);
        let err = jose::jwt::verify(&forged, &jwks.keys, &policy, NOW).unwrap_err();
        assert_eq!(err.code(), "bad_signature", "{alg}");
    }
}

#[test]
fn maximum_lifetime_bounds_exp_minus_iat() {
    let (signer, jwk) = key_for(Algorithm::EdDSA);
    let keys = KeySet::from_jwks(format!(r#"{{"keys":[{jwk}]}}"#).as_bytes())
        .unwrap()
        .keys;
    let mut policy = Validation::default();
    policy.max_lifetime = Some(600);
    let check = |claims: &str| {
        // The key set's only EdDSA key has no kid, so the token carries none either.
        let token = sign(Algorithm::EdDSA, &*signer, None, claims);
        jose::jwt::verify(&token, &keys, &policy, NOW)
            .map(|_| ())
            .map_err(|e| e.code())
    };
    assert_eq!(
        check(&format!(r#"{{"iat":{NOW},"exp":{}}}"#, NOW + 600)),
        Ok(())
    );
    assert_eq!(
        check(&format!(r#"{{"iat":{NOW},"exp":{}}}"#, NOW + 601)),
        Err("lifetime_exceeded")
    );
    assert_eq!(
        check(&format!(r#"{{"iat":{},"exp":{}}}"#, NOW + 120, NOW + 300)),
        Err("not_yet_valid")
    );
}

/// Regression: with a maximum lifetime, a token without `iat` was refused as `missing_claim`
/// whatever its `exp`. Without `iat`, `exp` may lie at most the maximum lifetime (plus the
/// leeway) after now.
#[test]
fn maximum_lifetime_without_iat_bounds_exp_from_now() {
    let (signer, jwk) = key_for(Algorithm::EdDSA);
    let keys = KeySet::from_jwks(format!(r#"{{"keys":[{jwk}]}}"#).as_bytes())
        .unwrap()
        .keys;
    let mut policy = Validation::default();
    policy.max_lifetime = Some(600);
    let check = |claims: &str, policy: &Validation| {
        let token = sign(Algorithm::EdDSA, &*signer, None, claims);
        jose::jwt::verify(&token, &keys, policy, NOW)
            .map(|_| ())
            .map_err(|e| e.code())
    };
    let leeway = Validation::DEFAULT_LEEWAY as i64;
    for (exp, verdict) in [
        (NOW + 60, Ok(())),
        (NOW + 600, Ok(())),
        (NOW + 600 + leeway, Ok(())),
        (NOW + 601 + leeway, Err("lifetime_exceeded")),
        (NOW + 86_400 * 365 * 100, Err("lifetime_exceeded")),
    ] {
        assert_eq!(
            check(&format!(r#"{{"exp":{exp}}}"#), &policy),
            verdict,
            "exp {exp}"
        );
    }
    policy.leeway = 0;
    assert_eq!(
        check(&format!(r#"{{"exp":{}}}"#, NOW + 601), &policy),
        Err("lifetime_exceeded")
    );
    // Without exp there is nothing to bound.
    policy.require_exp = false;
    assert_eq!(check(r#"{"sub":"s"}"#, &policy), Err("missing_claim"));
}

#[test]
fn required_claims_and_optional_exp() {
    let (signer, jwk) = key_for(Algorithm::HS256);
    let keys = KeySet::from_jwks(format!(r#"{{"keys":[{jwk}]}}"#).as_bytes())
        .unwrap()
        .keys;
    let token = |claims: &str| sign(Algorithm::HS256, &*signer, None, claims);
    let mut policy = Validation::default();
    policy.required_claims = vec!["scope".into(), "client_id".into()];
    let exp = NOW + 60;
    let full = token(&format!(r#"{{"exp":{exp},"scope":"a","client_id":null}}"#));
    assert!(jose::jwt::verify(&full, &keys, &policy, NOW).is_ok());
    let partial = token(&format!(r#"{{"exp":{exp},"scope":"a"}}"#));
    let err = jose::jwt::verify(&partial, &keys, &policy, NOW).unwrap_err();
    assert_eq!(err, jose::Error::MissingClaim("client_id".into()));

    let no_exp = token(r#"{"sub":"x"}"#);
    let mut lenient = Validation::default();
    assert_eq!(
        jose::jwt::verify(&no_exp, &keys, &lenient, NOW)
            .unwrap_err()
            .code(),
        "missing_claim"
    );
    lenient.require_exp = false;
    assert!(jose::jwt::verify(&no_exp, &keys, &lenient, NOW).is_ok());
}

/// The two halves of a verification give what `verify` gives: the signature checked in this
/// thread and reported to `finish`, for valid and tampered tokens of every algorithm; a
/// verdict of "not valid" is `BadSignature` whatever the token; the key's public components
/// are the signer's.
#[test]
fn prepared_then_finished_is_verify() {
    let now = 1_767_225_600;
    let validation = Validation::default();
    for alg in Algorithm::ALL {
        let signer = jose::SigningKey::generate(alg).unwrap().with_kid("k");
        let keys = signer.key_set().unwrap();
        let payload = format!(r#"{{"sub":"a","exp":{}}}"#, now + 60);
        let good = signer.jwt(None, &payload).unwrap();
        let mut bad = good.clone().into_bytes();
        let last = bad.len() - 2;
        bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
        for token in [good.as_bytes(), &bad[..]] {
            let whole = jose::jwt::verify(token, &keys, &validation, now);
            let prepared = jose::jwt::prepare(token, &keys, &validation).unwrap();
            let jws = prepared.jws();
            assert_eq!(jws.alg(), alg);
            let valid = jws
                .key()
                .verify(jws.signing_input(), jws.signature())
                .is_ok();
            let halves = prepared.finish(valid, now);
            match (&whole, &halves) {
                (Ok(a), Ok(b)) => assert_eq!(a.claims_json(), b.claims_json()),
                (Err(a), Err(b)) => assert_eq!(a.code(), b.code(), "{alg:?}"),
                _ => panic!("{alg:?}: verify {whole:?}, halves {halves:?}"),
            }
        }
        let refused = jose::jwt::prepare(good.as_bytes(), &keys, &validation)
            .unwrap()
            .finish(false, now);
        assert!(matches!(refused, Err(jose::Error::BadSignature)), "{alg:?}");
        let key = keys.iter().next().unwrap();
        assert_eq!(key.public(), signer.public().as_ref(), "{alg:?}");
    }
}
