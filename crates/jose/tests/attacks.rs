//! Known attacks on JWS/JWT verifiers, one test per class, each on real keys and real
//! signatures from aws-lc-rs. Every test first shows that the untampered token verifies, so
//! that no refusal below can come from a broken fixture; then it asserts the exact error code.

mod common;

use std::io::ErrorKind;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use aws_lc_rs::signature::KeyPair as _;
use common::*;
use jose::json::JsonError;
use jose::{
    b64, jws, jwt, Algorithm, Error, KeyError, KeySet, KeySetError, Limits, Malformed, Segment,
    SigningInput, SkipReason, Validation, VerifyingKey,
};

/// The P-256, P-384 and P-521 group orders, big-endian.
const P256_N: &str = "FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551";
const P384_N: &str =
    "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77A\
     ECEC196ACCC52973";
const P521_N: &str =
    "01FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFA51868783BF2F\
     966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409";
/// The Ed25519 group order L = 2^252 + 27742317777372353535851937790883648493, big-endian.
const ED25519_L: &str = "1000000000000000000000000000000014def9dea2f79cd65812631a5cf5d3ed";

/// Verifies as a JWT at [`NOW`] with the default policy; panics with the reason if refused.
fn verify_ok(token: &str, keys: &KeySet) -> jwt::Jwt {
    jwt::verify(token, keys, &Validation::default(), NOW)
        .unwrap_or_else(|e| panic!("{token}: refused ({}): {e}", e.code()))
}

/// The error of a token refused before its claims are read: `jws::verify` and `jwt::verify`
/// must agree.
fn refused(token: &str, keys: &KeySet) -> Error {
    let as_jws = jws::verify(token, keys, &Limits::default()).expect_err("jws::verify accepted");
    let as_jwt =
        jwt::verify(token, keys, &Validation::default(), NOW).expect_err("jwt::verify accepted");
    assert_eq!(as_jws, as_jwt, "{token}");
    as_jwt
}

/// The code of [`refused`].
fn refused_code(token: &str, keys: &KeySet) -> &'static str {
    refused(token, keys).code()
}

/// The error of a token whose signature verifies but whose claims are refused by `v`.
fn claims_refused(token: &str, keys: &KeySet, v: &Validation) -> Error {
    jws::verify(token, keys, &v.limits).unwrap_or_else(|e| panic!("signature refused: {e}"));
    jwt::verify(token, keys, v, NOW).expect_err("jwt::verify accepted")
}

/// `b64(header).b64(payload).signature_segment`, the signature segment taken as given.
fn compact(header: &str, payload: &str, signature_segment: &str) -> String {
    format!(
        "{}.{}.{signature_segment}",
        b64::encode(header.as_bytes()),
        b64::encode(payload.as_bytes())
    )
}

/// `jwk` with one more member.
fn with_member(jwk: &str, member: &str) -> String {
    format!("{},{member}}}", &jwk[..jwk.len() - 1])
}

#[test]
fn alg_none_in_any_case() {
    let signer = Signer::hs256();
    let keys = key_set_of(&[(&signer, "k")]);
    let payload = claims("");
    let valid = signer.jwt(Some("k"), &payload);
    verify_ok(&valid, &keys);
    let stolen = valid.rsplit('.').next().expect("signature segment");
    assert!(!stolen.is_empty());

    for name in ["none", "None", "NONE", "nOnE", r"\u006eone", "none ", ""] {
        for header in [
            format!(r#"{{"alg":"{name}"}}"#),
            format!(r#"{{"alg":"{name}","kid":"k","typ":"JWT"}}"#),
        ] {
            for signature in ["", stolen] {
                let token = compact(&header, &payload, signature);
                assert_eq!(
                    refused_code(&token, &keys),
                    "unsupported_algorithm",
                    "{header} with signature {signature:?}"
                );
            }
        }
    }
    // The same header shapes with the real algorithm verify.
    verify_ok(&signer.token(r#"{"alg":"HS256"}"#, &payload), &keys);
    verify_ok(
        &signer.token(r#"{"alg":"HS256","kid":"k","typ":"JWT"}"#, &payload),
        &keys,
    );
    // Nor is any other spelling of a real algorithm accepted.
    for name in [
        "hs256",
        "Hs256",
        "HS256 ",
        " HS256",
        "HS-256",
        "HMAC",
        "HS256\\u0000",
    ] {
        let header = format!(r#"{{"alg":"{name}","kid":"k"}}"#);
        let token = signer.token(&header, &payload);
        assert_eq!(
            refused_code(&token, &keys),
            "unsupported_algorithm",
            "{header}"
        );
    }
    // A missing or non-string alg is a header error, not "none".
    for header in [r#"{"kid":"k"}"#, r#"{"alg":null}"#, r#"{"alg":["HS256"]}"#] {
        let token = compact(header, &payload, stolen);
        assert_eq!(refused_code(&token, &keys), "invalid_header", "{header}");
    }
}

#[test]
fn hmac_key_confusion_with_public_key_as_secret() {
    let rsa = Signer::rs256();
    let ec = Signer::es256();
    let keys = key_set_of(&[(&rsa, "rsa"), (&ec, "ec")]);
    let payload = claims("");
    verify_ok(&rsa.jwt(Some("rsa"), &payload), &keys);
    verify_ok(&ec.jwt(Some("ec"), &payload), &keys);
    verify_ok(&rsa.jwt(None, &payload), &keys);
    verify_ok(&ec.jwt(None, &payload), &keys);

    for (victim, kid) in [(&rsa, "rsa"), (&ec, "ec")] {
        let der = victim.spki_der();
        let secrets: Vec<(&str, Vec<u8>)> = vec![
            ("PEM", pem(&der).into_bytes()),
            (
                "PEM, no final newline",
                pem(&der).trim_end().as_bytes().to_vec(),
            ),
            ("SubjectPublicKeyInfo DER", der.clone()),
            ("raw public key", victim.raw_public()),
            ("JWK JSON", victim.jwk(Some(kid)).into_bytes()),
            ("JWK JSON without kid", victim.jwk(None).into_bytes()),
        ];
        for (what, secret) in &secrets {
            for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
                for token_kid in [Some(kid), None] {
                    let header = jws::header_json(alg, token_kid, Some("JWT"));
                    let input = SigningInput::new(header.as_bytes(), payload.as_bytes());
                    let signature = hmac_sign(alg, secret, input.as_bytes());
                    let token = input.into_compact(&signature);
                    let err = refused(&token, &keys);
                    match token_kid {
                        Some(_) => {
                            assert_eq!(
                                err,
                                Error::KeyAlgorithmMismatch {
                                    key: victim.alg(),
                                    token: alg
                                },
                                "{what} {alg} with kid"
                            );
                            assert_eq!(err.code(), "key_algorithm_mismatch");
                        }
                        None => assert_eq!(err.code(), "unknown_key", "{what} {alg} without kid"),
                    }
                    // The forged token is a correct HMAC token: a verifier that used the public
                    // key bytes as an HMAC secret would have accepted it.
                    let naive = KeySet::new(vec![VerifyingKey::hmac(alg, secret, Some(kid))
                        .expect("public key bytes are long enough for HMAC")])
                    .expect("one key");
                    verify_ok(&token, &naive);
                }
            }
        }
    }
}

#[test]
fn key_algorithm_mismatch() {
    let rs = Signer::rs256();
    let ps = Signer::ps256();
    let ec = Signer::es256();
    let ec384 = Signer::ec(Algorithm::ES384);
    let ed = Signer::ed25519();
    let keys = key_set_of(&[(&rs, "rsa"), (&ec, "ec"), (&ec384, "ec384"), (&ed, "ed")]);
    let payload = claims("");
    verify_ok(&rs.jwt(Some("rsa"), &payload), &keys);
    verify_ok(&ec.jwt(Some("ec"), &payload), &keys);
    verify_ok(&ec384.jwt(Some("ec384"), &payload), &keys);
    verify_ok(&ed.jwt(Some("ed"), &payload), &keys);

    let mismatch = |signer: &Signer, kid: &str, key: Algorithm| {
        let token = signer.jwt(Some(kid), &payload);
        let err = refused(&token, &keys);
        assert_eq!(
            err.code(),
            "key_algorithm_mismatch",
            "{} as {kid}",
            signer.alg()
        );
        assert_eq!(
            err,
            Error::KeyAlgorithmMismatch {
                key,
                token: signer.alg()
            }
        );
    };
    mismatch(&rs, "ec", Algorithm::ES256); // RS256 token, kid of an ES256 key
    mismatch(&ps, "rsa", Algorithm::RS256); // PS256 token on the RS256-pinned key
    mismatch(&ec, "rsa", Algorithm::RS256);
    mismatch(&ec, "ec384", Algorithm::ES384);
    mismatch(&ec384, "ec", Algorithm::ES256);
    mismatch(&ed, "ec", Algorithm::ES256);
    mismatch(&rs, "ed", Algorithm::EdDSA);
    // Without a kid the PS256 token finds no PS256 key at all.
    assert_eq!(refused_code(&ps.jwt(None, &payload), &keys), "unknown_key");

    // The mirror image: the same RSA key pinned to PS256 refuses RS256.
    let ps_keys = key_set_of(&[(&ps, "rsa")]);
    verify_ok(&ps.jwt(Some("rsa"), &payload), &ps_keys);
    verify_ok(&ps.jwt(None, &payload), &ps_keys);
    let token = rs.jwt(Some("rsa"), &payload);
    assert_eq!(refused_code(&token, &ps_keys), "key_algorithm_mismatch");
    assert_eq!(
        refused_code(&rs.jwt(None, &payload), &ps_keys),
        "unknown_key"
    );

    // Two keys for the same algorithm and no kid: refuse to guess.
    let other = Signer::es256();
    let two = key_set_of(&[(&ec, "a"), (&other, "b")]);
    verify_ok(&ec.jwt(Some("a"), &payload), &two);
    verify_ok(&other.jwt(Some("b"), &payload), &two);
    assert_eq!(refused_code(&ec.jwt(None, &payload), &two), "ambiguous_key");
}

#[test]
fn rsa_and_hmac_signature_encoding() {
    let rs = Signer::rs256();
    let ps = Signer::ps256();
    let hs = Signer::hs256();
    let rs_keys = key_set_of(&[(&rs, "rsa"), (&hs, "hs")]);
    let ps_keys = key_set_of(&[(&ps, "rsa")]);
    let payload = claims("");

    // HMAC: the full tag, nothing more or less.
    let header = jws::header_json(Algorithm::HS256, Some("hs"), None);
    let input = SigningInput::new(header.as_bytes(), payload.as_bytes());
    let tag = hs.sign(input.as_bytes());
    verify_ok(&input.clone().into_compact(&tag), &rs_keys);
    for (what, sig) in [
        ("truncated to 16 bytes", tag[..16].to_vec()),
        ("31 bytes", tag[..31].to_vec()),
        ("zero appended", [&tag[..], &[0u8][..]].concat()),
        ("doubled", [&tag[..], &tag[..]].concat()),
        ("empty", Vec::new()),
        (
            "HS512 tag of the same secret",
            hmac_sign(Algorithm::HS512, SECRET, input.as_bytes()),
        ),
    ] {
        let token = input.clone().into_compact(&sig);
        assert_eq!(
            refused_code(&token, &rs_keys),
            "bad_signature",
            "HMAC {what}"
        );
    }

    // RSA: exactly the modulus length, below the modulus.
    let header = jws::header_json(Algorithm::RS256, Some("rsa"), None);
    let input = SigningInput::new(header.as_bytes(), payload.as_bytes());
    let sig = rs.sign(input.as_bytes());
    assert_eq!(sig.len(), 256);
    verify_ok(&input.clone().into_compact(&sig), &rs_keys);
    let n = rsa_pair()
        .public_key()
        .modulus()
        .big_endian_without_leading_zero()
        .to_vec();
    for (what, bad) in [
        ("zero prepended", [&[0u8][..], &sig[..]].concat()),
        ("truncated", sig[1..].to_vec()),
        ("zero appended", [&sig[..], &[0u8][..]].concat()),
        ("all zeros", vec![0; 256]),
        ("one", [&[0u8; 255][..], &[1u8][..]].concat()),
        ("all ones", vec![0xff; 256]),
        ("the modulus", n.clone()),
        ("empty", Vec::new()),
    ] {
        let token = input.clone().into_compact(&bad);
        assert_eq!(
            refused_code(&token, &rs_keys),
            "bad_signature",
            "RS256 {what}"
        );
    }

    // A PSS signature that happens to start with a zero byte may not be shortened.
    let header = jws::header_json(Algorithm::PS256, Some("rsa"), None);
    let input = SigningInput::new(header.as_bytes(), payload.as_bytes());
    let sig = (0..5000)
        .map(|_| ps.sign(input.as_bytes()))
        .find(|s| s[0] == 0)
        .expect("a PSS signature with a leading zero byte in 5000 tries");
    verify_ok(&input.clone().into_compact(&sig), &ps_keys);
    let token = input.clone().into_compact(&sig[1..]);
    assert_eq!(refused_code(&token, &ps_keys), "bad_signature");
}

/// Signs the standard claims with `signer` (an ECDSA signer) and returns the signing input,
/// the raw R‖S signature and the key set.
fn ecdsa_fixture(signer: &Signer) -> (SigningInput, Vec<u8>, KeySet) {
    let keys = key_set_of(&[(signer, "ec")]);
    let header = jws::header_json(signer.alg(), Some("ec"), None);
    let input = SigningInput::new(header.as_bytes(), claims("").as_bytes());
    let signature = signer.sign(input.as_bytes());
    (input, signature, keys)
}

#[test]
fn ecdsa_signature_malleability_and_encoding() {
    let signer = Signer::es256();
    let (input, good, keys) = ecdsa_fixture(&signer);
    assert_eq!(good.len(), 64);
    let with_sig = |sig: &[u8]| input.clone().into_compact(sig);
    verify_ok(&with_sig(&good), &keys);

    let n = hex(P256_N);
    let (r, s) = good.split_at(32);
    let cat = |a: &[u8], b: &[u8]| [a, b].concat();
    let mut n_plus_1 = n.clone();
    n_plus_1[31] += 1; // n ends in 0x51: no carry
    let ones = [0xffu8; 32];
    let zeros = [0u8; 32];

    let forged: Vec<(&str, Vec<u8>)> = vec![
        ("all zeros", vec![0; 64]),
        ("r = 0", cat(&zeros, s)),
        ("s = 0", cat(r, &zeros)),
        ("r = n", cat(&n, s)),
        ("s = n", cat(r, &n)),
        ("r = s = n", cat(&n, &n)),
        ("r = n + 1", cat(&n_plus_1, s)),
        ("s = n + 1", cat(r, &n_plus_1)),
        ("r, s = 2^256 - 1", cat(&ones, &ones)),
        ("r and s swapped", cat(s, r)),
        ("DER instead of R||S", ecdsa_der(&good)),
        ("63 bytes", good[..63].to_vec()),
        ("65 bytes, zero appended", cat(&good, &[0])),
        ("65 bytes, zero prepended", cat(&[0], &good)),
        ("0 bytes", Vec::new()),
        ("96 bytes (ES384 length)", cat(&good, &zeros)),
        (
            "132 bytes (ES512 length)",
            cat(&cat(&good, &good), &[0, 0, 0, 0]),
        ),
        (
            "r||s with r,s zero-extended to 33 bytes",
            cat(&cat(&[0], r), &cat(&[0], s)),
        ),
    ];
    for (what, sig) in &forged {
        assert_eq!(
            refused_code(&with_sig(sig), &keys),
            "bad_signature",
            "{what}"
        );
    }

    // ECDSA is malleable: (r, n - s) is also a valid signature, and JWS does not forbid it.
    let twin = be_sub(&n, s);
    assert_ne!(twin, s);
    verify_ok(&with_sig(&cat(r, &twin)), &keys);
}

#[test]
fn ecdsa_on_every_curve() {
    for (alg, n_hex, len) in [
        (Algorithm::ES256, P256_N, 32),
        (Algorithm::ES384, P384_N, 48),
        (Algorithm::ES512, P521_N, 66),
    ] {
        let n = hex(n_hex);
        assert_eq!(n.len(), len);
        let signer = Signer::ec(alg);
        let (input, good, keys) = ecdsa_fixture(&signer);
        assert_eq!(good.len(), 2 * len, "{alg}");
        let with_sig = |sig: &[u8]| input.clone().into_compact(sig);
        verify_ok(&with_sig(&good), &keys);
        let (r, s) = good.split_at(len);
        let twin = [r, &be_sub(&n, s)[..]].concat();
        verify_ok(&with_sig(&twin), &keys);
        for (what, sig) in [
            ("zeros", vec![0; 2 * len]),
            ("s = n", [r, &n[..]].concat()),
            ("r = n", [&n[..], s].concat()),
            ("truncated", good[..2 * len - 1].to_vec()),
            ("DER", ecdsa_der(&good)),
        ] {
            assert_eq!(
                refused_code(&with_sig(&sig), &keys),
                "bad_signature",
                "{alg}: {what}"
            );
        }
    }
}

#[test]
fn eddsa_non_canonical_s() {
    let signer = Signer::ed25519();
    let keys = key_set_of(&[(&signer, "ed")]);
    let header = jws::header_json(Algorithm::EdDSA, Some("ed"), None);
    let input = SigningInput::new(header.as_bytes(), claims("").as_bytes());
    let good = signer.sign(input.as_bytes());
    assert_eq!(good.len(), 64);
    let with_sig = |sig: &[u8]| input.clone().into_compact(sig);
    verify_ok(&with_sig(&good), &keys);

    let l_le: Vec<u8> = hex(ED25519_L).into_iter().rev().collect();
    let (r, s) = good.split_at(32);
    let s_plus_l = le_add(s, &l_le);
    let mut forged: Vec<(String, Vec<u8>)> = vec![
        ("S + L".into(), [r, &s_plus_l[..]].concat()),
        ("S = L".into(), [r, &l_le[..]].concat()),
        ("all zeros".into(), vec![0; 64]),
        ("63 bytes".into(), good[..63].to_vec()),
        ("65 bytes".into(), [&good[..], &[0u8][..]].concat()),
    ];
    for top in [0x20u8, 0x40, 0x80, 0xe0] {
        let mut high = s.to_vec();
        high[31] |= top;
        forged.push((
            format!("S with top bits {top:#04x} set"),
            [r, &high[..]].concat(),
        ));
    }
    let mut bad_r = good.clone();
    bad_r[0] ^= 1;
    forged.push(("R changed".into(), bad_r));
    for (what, sig) in &forged {
        assert_eq!(
            refused_code(&with_sig(sig), &keys),
            "bad_signature",
            "{what}"
        );
    }
}

#[test]
fn embedded_jwk_header_is_not_a_key_source() {
    let victim = Signer::es256();
    let attacker = Signer::es256();
    let keys = key_set_of(&[(&victim, "victim")]);
    let payload = claims("");
    verify_ok(&victim.jwt(Some("victim"), &payload), &keys);
    // A header jwk is ignored even on a genuine token.
    let own = format!(
        r#"{{"alg":"ES256","kid":"victim","jwk":{}}}"#,
        victim.jwk(Some("victim"))
    );
    verify_ok(&victim.token(&own, &payload), &keys);

    let their_jwk = attacker.jwk(None);
    let their_jwk_as_victim = attacker.jwk(Some("victim"));
    for (header, expected) in [
        (
            format!(r#"{{"alg":"ES256","kid":"victim","jwk":{their_jwk}}}"#),
            "bad_signature",
        ),
        (
            format!(r#"{{"alg":"ES256","kid":"victim","jwk":{their_jwk_as_victim}}}"#),
            "bad_signature",
        ),
        (
            format!(r#"{{"alg":"ES256","jwk":{their_jwk}}}"#),
            "bad_signature",
        ),
        (
            format!(
                r#"{{"alg":"ES256","kid":"attacker","jwk":{}}}"#,
                attacker.jwk(Some("attacker"))
            ),
            "unknown_key",
        ),
    ] {
        let token = attacker.token(&header, &payload);
        assert_eq!(refused_code(&token, &keys), expected, "{header}");
        // The forged token is genuine for the attacker's key: only the key source differs.
        let (input, sig) = token.rsplit_once('.').expect("three segments");
        VerifyingKey::from_jwk(their_jwk.as_bytes())
            .expect("attacker key")
            .verify(
                input.as_bytes(),
                &b64::decode(sig.as_bytes()).expect("signature"),
            )
            .expect("forged token verifies with the attacker's own key");
    }

    // An embedded symmetric key, with the algorithm switched to HMAC.
    let secret = b"attacker-chosen secret, 32 bytes".to_vec();
    let hs = Signer::hmac(Algorithm::HS256, &secret);
    let header = format!(
        r#"{{"alg":"HS256","jwk":{{"kty":"oct","k":"{}"}}}}"#,
        b64::encode(&secret)
    );
    assert_eq!(
        refused_code(&hs.token(&header, &payload), &keys),
        "unknown_key"
    );
    let header = format!(
        r#"{{"alg":"HS256","kid":"victim","jwk":{{"kty":"oct","k":"{}"}}}}"#,
        b64::encode(&secret)
    );
    assert_eq!(
        refused_code(&hs.token(&header, &payload), &keys),
        "key_algorithm_mismatch"
    );
}

#[test]
fn jku_x5u_x5c_are_never_fetched_or_used() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a local listener");
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let port = listener.local_addr().expect("local address").port();
    let url = format!("http://127.0.0.1:{port}/jwks.json");

    let victim = Signer::es256();
    let attacker = Signer::es256();
    let keys = key_set_of(&[(&victim, "victim")]);
    let payload = claims("");
    verify_ok(&victim.jwt(Some("victim"), &payload), &keys);

    let x5c = std_base64(&attacker.spki_der());
    let pointers = format!(r#""jku":"{url}","x5u":"{url}","x5c":["{x5c}"]"#);
    for (header, expected) in [
        (
            format!(r#"{{"alg":"ES256","kid":"victim",{pointers}}}"#),
            "bad_signature",
        ),
        (format!(r#"{{"alg":"ES256",{pointers}}}"#), "bad_signature"),
        (
            format!(r#"{{"alg":"ES256","kid":"attacker",{pointers}}}"#),
            "unknown_key",
        ),
        (
            format!(r#"{{"alg":"ES256","kid":"attacker","jku":"{url}"}}"#),
            "unknown_key",
        ),
        (
            format!(r#"{{"alg":"ES256","kid":"attacker","x5u":"{url}"}}"#),
            "unknown_key",
        ),
    ] {
        let token = attacker.token(&header, &payload);
        assert_eq!(refused_code(&token, &keys), expected, "{header}");
    }

    // A genuine token carrying the same headers verifies with the configured key only.
    let genuine = victim.token(
        &format!(r#"{{"alg":"ES256","kid":"victim",{pointers}}}"#),
        &payload,
    );
    verify_ok(&genuine, &keys);
    jws::verify(&genuine, &keys, &Limits::default()).expect("jws::verify");

    // Give any stray connection attempt time to land, then check nobody knocked.
    std::thread::sleep(Duration::from_millis(200));
    match listener.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        Ok((_, peer)) => panic!("the verifier connected to {url} from {peer}"),
        Err(e) => panic!("accept failed: {e}"),
    }
}

#[test]
fn kid_traversal_and_injection() {
    let signer = Signer::hs256();
    let keys = key_set_of(&[(&signer, "abc")]);
    let payload = claims("");
    let with_kid =
        |raw_kid: &str| signer.token(&format!(r#"{{"alg":"HS256","kid":{raw_kid}}}"#), &payload);
    verify_ok(&with_kid(r#""abc""#), &keys);

    let long = format!("\"{}\"", "a".repeat(4096));
    let unknown = [
        r#""../../../../dev/null""#,
        r#""..\/..\/..\/..\/dev\/null""#,
        r#""/etc/passwd""#,
        r#""file:///etc/passwd""#,
        r#""' OR '1'='1""#,
        r#""abc' OR '1'='1""#,
        r#""abc; DROP TABLE keys; --""#,
        r#""${jndi:ldap://127.0.0.1/a}""#,
        r#""\u0000""#,
        r#""abc\u0000""#,
        r#""\u0000abc""#,
        r#""abc\n""#,
        r#""ABC""#,
        r#""abc ""#,
        r#"" abc""#,
        r#""ab""#,
        r#""abcd""#,
        r#""*""#,
        r#""""#,
        r#""\u0061bc\u0000""#,
        long.as_str(),
    ];
    for raw_kid in unknown {
        assert_eq!(
            refused_code(&with_kid(raw_kid), &keys),
            "unknown_key",
            "kid {raw_kid}"
        );
    }
    for raw_kid in [
        "1",
        "0",
        "-1",
        "1.5",
        "null",
        "true",
        "{}",
        r#"{"kid":"abc"}"#,
        r#"["abc"]"#,
        "[]",
    ] {
        assert_eq!(
            refused_code(&with_kid(raw_kid), &keys),
            "invalid_header",
            "kid {raw_kid}"
        );
    }
    // JSON escapes that decode to the real kid select it: that is what the JSON says.
    for raw_kid in [r#""\u0061bc""#, r#""\u0061\u0062\u0063""#, r#""ab\u0063""#] {
        verify_ok(&with_kid(raw_kid), &keys);
    }
}

#[test]
fn unknown_or_invalid_crit() {
    let signer = Signer::hs256();
    let keys = key_set_of(&[(&signer, "k")]);
    let payload = claims("");
    let with = |members: &str| {
        signer.token(
            &format!(r#"{{"alg":"HS256","kid":"k",{members}}}"#),
            &payload,
        )
    };
    verify_ok(&with(r#""typ":"JWT""#), &keys);
    verify_ok(&with(r#""b64":true"#), &keys);

    for (members, expected) in [
        (
            r#""crit":["exp"],"exp":1700000000"#,
            "unsupported_critical_header",
        ),
        (
            r#""crit":["x-ext"],"x-ext":true"#,
            "unsupported_critical_header",
        ),
        (
            r#""crit":["b64"],"b64":true"#,
            "unsupported_critical_header",
        ),
        (
            r#""\u0063rit":["exp"],"exp":1700000000"#,
            "unsupported_critical_header",
        ),
        (r#""crit":[]"#, "invalid_header"),
        (r#""crit":["alg"]"#, "invalid_header"),
        (r#""crit":["kid"]"#, "invalid_header"),
        (r#""crit":["jku"],"jku":"https://x""#, "invalid_header"),
        (r#""crit":"b64""#, "invalid_header"),
        (r#""crit":"b64","b64":true"#, "invalid_header"),
        (r#""crit":["x-absent"]"#, "invalid_header"),
        (r#""crit":["exp","exp"],"exp":1"#, "invalid_header"),
        (r#""crit":[1]"#, "invalid_header"),
        (r#""crit":[["exp"]],"exp":1"#, "invalid_header"),
        (r#""crit":null"#, "invalid_header"),
        (r#""crit":{}"#, "invalid_header"),
        (r#""crit":true"#, "invalid_header"),
        (r#""b64":false,"crit":["b64"]"#, "invalid_header"),
        (r#""b64":false"#, "invalid_header"),
        (r#""b64":"false""#, "invalid_header"),
        (r#""b64":null"#, "invalid_header"),
    ] {
        assert_eq!(
            refused_code(&with(members), &keys),
            expected,
            "header members {members}"
        );
    }
}

#[test]
fn duplicate_members() {
    let signer = Signer::hs256();
    let keys = key_set_of(&[(&signer, "k")]);
    let payload = claims("");
    verify_ok(
        &signer.token(r#"{"alg":"HS256","kid":"k"}"#, &payload),
        &keys,
    );

    for header in [
        r#"{"alg":"HS256","alg":"none"}"#,
        r#"{"alg":"HS256","alg":"HS256"}"#,
        r#"{"alg":"RS256","\u0061lg":"HS256"}"#,
        r#"{"alg":"HS256","\u0061lg":"HS256"}"#,
        r#"{"alg":"HS256","kid":"k","kid":"other"}"#,
        r#"{"alg":"HS256","kid":"other","kid":"k"}"#,
        r#"{"alg":"HS256","kid":"k","x":{"a":1,"a":2}}"#,
    ] {
        let err = refused(&signer.token(header, &payload), &keys);
        assert_eq!(err.code(), "malformed", "{header}");
        assert!(
            matches!(
                err,
                Error::Malformed(Malformed::Json(
                    Segment::Header,
                    JsonError::DuplicateMember { .. }
                ))
            ),
            "{header}: {err:?}"
        );
    }

    let exp = NOW + 600;
    let mut many = String::from("{");
    for i in 0..40 {
        many.push_str(&format!(r#""m{i}":{i},"#));
    }
    many.push_str(&format!(r#""exp":{exp},"m7":0}}"#));
    let duplicated = [
        format!(r#"{{"exp":{exp},"exp":{}}}"#, exp + 1),
        format!(r#"{{"exp":{},"exp":{exp}}}"#, NOW - 1000),
        format!(r#"{{"exp":{exp},"\u0065xp":{exp}}}"#),
        format!(r#"{{"exp":{exp},"aud":"a","aud":"b"}}"#),
        format!(r#"{{"exp":{exp},"aud":["a"],"aud":"a"}}"#),
        format!(r#"{{"exp":{exp},"iss":"a","sub":"s","iss":"b"}}"#),
        format!(r#"{{"exp":{exp},"x":{{"a":1,"a":2}}}}"#),
        many,
    ];
    for text in &duplicated {
        let token = signer.jwt(Some("k"), text);
        let err = claims_refused(&token, &keys, &Validation::default());
        assert_eq!(err.code(), "malformed", "{text}");
        assert!(
            matches!(
                err,
                Error::Malformed(Malformed::Json(
                    Segment::Payload,
                    JsonError::DuplicateMember { .. }
                ))
            ),
            "{text}: {err:?}"
        );
    }
}

#[test]
fn wrong_claim_types_and_time_checks() {
    let signer = Signer::hs256();
    let keys = key_set_of(&[(&signer, "k")]);
    let v = Validation::default();
    let exp = NOW + 600;
    let ok = |text: &str, v: &Validation| {
        jwt::verify(signer.jwt(Some("k"), text), &keys, v, NOW)
            .unwrap_or_else(|e| panic!("{text}: refused ({}): {e}", e.code()))
    };
    let err = |text: &str, v: &Validation| claims_refused(&signer.jwt(Some("k"), text), &keys, v);
    ok(&claims(""), &v);
    ok(
        &format!(r#"{{"exp":{exp},"nbf":{NOW},"iat":{NOW},"iss":"i","aud":["a","b"],"sub":"s"}}"#),
        &v,
    );

    for text in [
        r#"{"exp":"1700000000"}"#.to_string(),
        r#"{"exp":null}"#.into(),
        r#"{"exp":true}"#.into(),
        r#"{"exp":[1700000600]}"#.into(),
        r#"{"exp":1e999}"#.into(),
        format!(r#"{{"exp":{exp},"nbf":true}}"#),
        format!(r#"{{"exp":{exp},"nbf":"0"}}"#),
        format!(r#"{{"exp":{exp},"iat":[1]}}"#),
        format!(r#"{{"exp":{exp},"iat":{{}}}}"#),
        format!(r#"{{"exp":{exp},"iss":1}}"#),
        format!(r#"{{"exp":{exp},"iss":null}}"#),
        format!(r#"{{"exp":{exp},"aud":1}}"#),
        format!(r#"{{"exp":{exp},"aud":["a",1]}}"#),
        format!(r#"{{"exp":{exp},"aud":[null]}}"#),
        format!(r#"{{"exp":{exp},"aud":{{"a":"b"}}}}"#),
        format!(r#"{{"exp":{exp},"sub":{{}}}}"#),
        format!(r#"{{"exp":{exp},"sub":1}}"#),
        format!(r#"{{"exp":{exp},"jti":2}}"#),
    ] {
        let e = err(&text, &v);
        assert_eq!(e.code(), "invalid_claim", "{text}");
    }

    for text in ["{}", r#"{"sub":"s"}"#, r#"{"EXP":1800000000}"#] {
        let e = err(text, &v);
        assert_eq!(e, Error::MissingClaim("exp".into()), "{text}");
        assert_eq!(e.code(), "missing_claim");
    }
    let mut no_exp = Validation::default();
    no_exp.require_exp = false;
    ok(r#"{"sub":"s"}"#, &no_exp);

    // exp: refused from exp + leeway on; default leeway 60.
    for (exp, fine) in [
        (NOW - 600, false),
        (NOW - 61, false),
        (NOW - 60, false),
        (NOW - 59, true),
        (NOW, true),
        (NOW + 1, true),
    ] {
        let text = format!(r#"{{"exp":{exp}}}"#);
        if fine {
            ok(&text, &v);
        } else {
            assert_eq!(err(&text, &v).code(), "expired", "{text}");
        }
    }
    let mut strict = Validation::default();
    strict.leeway = 0;
    assert_eq!(
        err(&format!(r#"{{"exp":{NOW}}}"#), &strict).code(),
        "expired"
    );
    ok(&format!(r#"{{"exp":{}}}"#, NOW + 1), &strict);

    // nbf: refused while now + leeway < nbf.
    for (nbf, fine) in [
        (NOW + 3600, false),
        (NOW + 61, false),
        (NOW + 60, true),
        (NOW, true),
        (NOW - 3600, true),
    ] {
        let text = format!(r#"{{"exp":{exp},"nbf":{nbf}}}"#);
        if fine {
            ok(&text, &v);
        } else {
            assert_eq!(err(&text, &v).code(), "not_yet_valid", "{text}");
        }
    }
}

/// Regression: `exp: 1e20` verified (as a token valid for ever), and negative or far-future
/// NumericDates were taken at face value. `exp`, `nbf` and `iat` outside
/// 0..=253402300799 (1970 to the end of year 9999) are invalid claims.
#[test]
fn numeric_dates_outside_1970_to_9999_are_invalid_claims() {
    let signer = Signer::hs256();
    let keys = key_set_of(&[(&signer, "k")]);
    let v = Validation::default();
    let exp = NOW + 600;
    let ok = |text: &str| {
        jwt::verify(signer.jwt(Some("k"), text), &keys, &v, NOW)
            .unwrap_or_else(|e| panic!("{text}: refused ({}): {e}", e.code()))
    };
    let err = |text: &str| claims_refused(&signer.jwt(Some("k"), text), &keys, &v);

    ok(r#"{"exp":253402300799}"#);
    ok(r#"{"exp":2.53402300799e11}"#);
    ok(&format!(r#"{{"exp":{exp}.5,"nbf":0,"iat":0.0}}"#));
    ok(&format!(r#"{{"exp":{exp},"nbf":-0,"iat":{NOW}.25}}"#));

    for text in [
        r#"{"exp":1e20}"#.to_string(),
        r#"{"exp":1E300}"#.into(),
        r#"{"exp":100000000000000000000}"#.into(),
        r#"{"exp":253402300800}"#.into(),
        r#"{"exp":253402300799.5}"#.into(),
        r#"{"exp":-1}"#.into(),
        r#"{"exp":-1e20}"#.into(),
        format!(r#"{{"exp":{exp},"nbf":-1}}"#),
        format!(r#"{{"exp":{exp},"nbf":-0.5}}"#),
        format!(r#"{{"exp":{exp},"nbf":1e20}}"#),
        format!(r#"{{"exp":{exp},"iat":-1}}"#),
        format!(r#"{{"exp":{exp},"iat":1e20}}"#),
        format!(r#"{{"exp":{exp},"iat":253402300800}}"#),
    ] {
        let e = err(&text);
        assert_eq!(e.code(), "invalid_claim", "{text}: {e}");
    }

    // Also where the policy would not look at the claim otherwise.
    let mut lenient = Validation::default();
    lenient.require_exp = false;
    let e = claims_refused(&signer.jwt(Some("k"), r#"{"nbf":1e300}"#), &keys, &lenient);
    assert_eq!(e.code(), "invalid_claim", "{e}");
}

#[test]
fn issuer_and_audience_near_misses() {
    let signer = Signer::hs256();
    let keys = key_set_of(&[(&signer, "k")]);
    let v = Validation::default()
        .with_issuer("https://issuer.example")
        .with_audience("api://orders");
    let token = |iss: &str, aud: &str| {
        signer.jwt(
            Some("k"),
            &format!(r#"{{"exp":{},"iss":{iss},"aud":{aud}}}"#, NOW + 600),
        )
    };
    let good_iss = r#""https://issuer.example""#;
    let good_aud = r#""api://orders""#;
    for (iss, aud) in [
        (good_iss, good_aud),
        (good_iss, r#"["api://orders"]"#),
        (good_iss, r#"["api://other","api://orders"]"#),
        (r#""https:\/\/issuer.example""#, r#""api:\/\/orders""#),
        (r#""\u0068ttps://issuer.example""#, good_aud),
    ] {
        jwt::verify(token(iss, aud), &keys, &v, NOW)
            .unwrap_or_else(|e| panic!("iss {iss} aud {aud}: {e}"));
    }

    for iss in [
        r#""https://issuer.example/""#,
        r#""https://issuer.example.evil""#,
        r#""https://ISSUER.example""#,
        r#""HTTPS://issuer.example""#,
        r#""http://issuer.example""#,
        r#""https://issuer.exampl""#,
        r#""https://issuer.example ""#,
        r#"" https://issuer.example""#,
        r#""https://issuer.example\u0000""#,
        r#""https://evil.example/https://issuer.example""#,
        r#""""#,
    ] {
        let e = claims_refused(&token(iss, good_aud), &keys, &v);
        assert_eq!(e.code(), "invalid_issuer", "iss {iss}");
    }
    for aud in [
        r#""api://orders/""#,
        r#""API://orders""#,
        r#""api://Orders""#,
        r#""api://orders2""#,
        r#""api://order""#,
        r#""api://orders ""#,
        r#""""#,
        r#"[]"#,
        r#"["api://orders/","API://orders","api://order"]"#,
    ] {
        let e = claims_refused(&token(good_iss, aud), &keys, &v);
        assert_eq!(e.code(), "invalid_audience", "aud {aud}");
    }

    // Absent claims that the policy requires.
    let no_iss = signer.jwt(
        Some("k"),
        &format!(r#"{{"exp":{},"aud":{good_aud}}}"#, NOW + 600),
    );
    assert_eq!(
        claims_refused(&no_iss, &keys, &v),
        Error::MissingClaim("iss".into())
    );
    let no_aud = signer.jwt(
        Some("k"),
        &format!(r#"{{"exp":{},"iss":{good_iss}}}"#, NOW + 600),
    );
    assert_eq!(
        claims_refused(&no_aud, &keys, &v),
        Error::MissingClaim("aud".into())
    );
}

/// A token of exactly `target` bytes, padded with a filler claim (and a header member when
/// the base64 lengths need it).
fn token_of_len(signer: &Signer, target: usize) -> String {
    for pad in 0..4 {
        let header = format!(r#"{{"alg":"HS256","kid":"k","x":"{}"}}"#, "h".repeat(pad));
        let filler = |n: usize| claims(&format!(r#""f":"{}""#, "f".repeat(n)));
        let base = signer.token(&header, &filler(0)).len();
        assert!(base < target);
        let guess = (target - base) * 3 / 4;
        for n in guess.saturating_sub(4)..guess + 4 {
            let token = signer.token(&header, &filler(n));
            if token.len() == target {
                return token;
            }
        }
    }
    panic!("no token of {target} bytes")
}

#[test]
fn oversize_and_deep_input() {
    let signer = Signer::hs256();
    let keys = key_set_of(&[(&signer, "k")]);
    let limit = Limits::default().max_token_len;
    assert_eq!(limit, Limits::DEFAULT_MAX_TOKEN_LEN);

    let at_limit = token_of_len(&signer, limit);
    assert_eq!(at_limit.len(), limit);
    verify_ok(&at_limit, &keys);
    jws::verify(&at_limit, &keys, &Limits::default()).expect("token of exactly the limit");
    let over = token_of_len(&signer, limit + 1);
    let err = refused(&over, &keys);
    assert_eq!(err.code(), "too_large");
    assert_eq!(
        err,
        Error::TooLarge {
            len: limit + 1,
            limit
        }
    );
    // Size is checked before anything else: garbage over the limit is too_large too.
    assert_eq!(refused_code(&"!".repeat(limit + 1), &keys), "too_large");
    // And a raised limit admits the same token.
    let mut roomy = Validation::default();
    roomy.limits.max_token_len = limit + 1;
    jwt::verify(&over, &keys, &roomy, NOW).expect("token within a raised limit");

    // Depth: the top-level object is level 1; eight levels pass, nine do not.
    let nested_arrays = |levels: usize| format!("{}1{}", "[".repeat(levels), "]".repeat(levels));
    let payload = claims("");
    let header = |levels: usize| {
        format!(
            r#"{{"alg":"HS256","kid":"k","x":{}}}"#,
            nested_arrays(levels)
        )
    };
    verify_ok(&signer.token(&header(7), &payload), &keys);
    for levels in [8, 9, 50, 1000] {
        let err = refused(&signer.token(&header(levels), &payload), &keys);
        assert!(
            matches!(
                err,
                Error::Malformed(Malformed::Json(Segment::Header, JsonError::TooDeep { .. }))
            ),
            "{levels}: {err:?}"
        );
    }
    let nested_objects =
        |levels: usize| format!("{}1{}", r#"{"a":"#.repeat(levels), "}".repeat(levels));
    verify_ok(
        &signer.jwt(Some("k"), &claims(&format!(r#""x":{}"#, nested_objects(7)))),
        &keys,
    );
    for levels in [8, 9, 1000] {
        let token = signer.jwt(
            Some("k"),
            &claims(&format!(r#""x":{}"#, nested_objects(levels))),
        );
        let err = claims_refused(&token, &keys, &Validation::default());
        assert!(
            matches!(
                err,
                Error::Malformed(Malformed::Json(Segment::Payload, JsonError::TooDeep { .. }))
            ),
            "{levels}: {err:?}"
        );
    }

    // A caller asking for unbounded depth still cannot make the reader recurse without end.
    let mut reckless = Validation::default();
    reckless.limits.max_token_len = 4 << 20;
    reckless.limits.max_json_depth = usize::MAX;
    let deep = signer.token(&header(200_000), &payload);
    let unclosed = signer.token(
        &format!(r#"{{"alg":"HS256","x":{}"#, "[".repeat(200_000)),
        &payload,
    );
    for token in [&deep, &unclosed] {
        let err = jwt::verify(token, &keys, &reckless, NOW).expect_err("deep header accepted");
        assert_eq!(err.code(), "malformed");
    }

    // Many members: linear work, not quadratic.
    let mut wide = Validation::default();
    wide.limits.max_token_len = 1 << 20;
    let members: Vec<String> = (0..5000).map(|i| format!(r#""m{i}":{i}"#)).collect();
    let wide_claims = claims(&members.join(","));
    let token = signer.jwt(Some("k"), &wide_claims);
    let start = Instant::now();
    let jwt = jwt::verify(&token, &keys, &wide, NOW).expect("5000-member claims set");
    let elapsed = start.elapsed();
    assert_eq!(jwt.claims().count(), 5003);
    assert!(
        elapsed < Duration::from_secs(1),
        "5000 claims took {elapsed:?}"
    );

    let dup = claims(&format!("{},\"m0\":1", members.join(",")));
    let token = signer.jwt(Some("k"), &dup);
    let start = Instant::now();
    let err = jwt::verify(&token, &keys, &wide, NOW).expect_err("duplicate at the end");
    assert_eq!(err.code(), "malformed");
    assert!(start.elapsed() < Duration::from_secs(1));

    let wide_header = format!(r#"{{"alg":"HS256","kid":"k",{}}}"#, members.join(","));
    let token = signer.token(&wide_header, &claims(""));
    let start = Instant::now();
    jwt::verify(&token, &keys, &wide, NOW).expect("5000-member header");
    assert!(start.elapsed() < Duration::from_secs(1));

    let auds: Vec<String> = (0..5000).map(|i| format!(r#""aud{i}""#)).collect();
    let token = signer.jwt(
        Some("k"),
        &claims(&format!(r#""aud":[{}]"#, auds.join(","))),
    );
    let start = Instant::now();
    jwt::verify(&token, &keys, &wide.clone().with_audience("aud4999"), NOW)
        .expect("audience at the end of 5000");
    assert!(start.elapsed() < Duration::from_secs(1));
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The same bytes with a non-zero unused bit in the last character.
fn dirty_trailing_bits(enc: &str) -> String {
    assert!(!enc.len().is_multiple_of(4), "{enc} has no unused bits");
    let last = enc.as_bytes()[enc.len() - 1];
    let v = ALPHABET
        .iter()
        .position(|&c| c == last)
        .expect("base64url character");
    assert_eq!(v & 1, 0, "canonical encodings have zero unused bits");
    format!("{}{}", &enc[..enc.len() - 1], ALPHABET[v | 1] as char)
}

/// Non-canonical spellings of the strict encoding `enc` (which must have unused bits and
/// contain a `-` or `_`).
fn non_canonical(enc: &str) -> Vec<(&'static str, String)> {
    let mid = enc.len() / 2;
    let insert = |s: &str| format!("{}{s}{}", &enc[..mid], &enc[mid..]);
    let mut padded = enc.to_string();
    while !padded.len().is_multiple_of(4) {
        padded.push('=');
    }
    let standard: String = enc
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    assert_ne!(standard, enc);
    vec![
        ("padded", padded),
        ("one =", format!("{enc}=")),
        ("=== ", format!("{enc}===")),
        ("%3D padding", format!("{enc}%3D")),
        ("standard alphabet", standard),
        ("space inside", insert(" ")),
        ("newline inside", insert("\n")),
        ("CRLF inside", insert("\r\n")),
        ("tab inside", insert("\t")),
        ("leading space", format!(" {enc}")),
        ("trailing newline", format!("{enc}\n")),
        ("non-ASCII inside", insert("é")),
        ("NUL inside", insert("\0")),
        ("unused bits set", dirty_trailing_bits(enc)),
    ]
}

/// `json` with leading whitespace chosen so that its strict encoding has unused bits and
/// holds a `-` or `_`.
fn awkward(json: &str) -> String {
    for spaces in 0..12 {
        let enc = b64::encode(format!("{}{json}", " ".repeat(spaces)).as_bytes());
        if !enc.len().is_multiple_of(4) && enc.contains(['-', '_']) {
            return enc;
        }
    }
    panic!("no awkward encoding of {json}")
}

#[test]
fn base64_strictness_on_every_segment() {
    let signer = Signer::hs256();
    let keys = key_set_of(&[(&signer, "k")]);
    let header = awkward(r#"{"alg":"HS256","kid":"k","x":"~~~???>>>~?>"}"#);
    let payload = awkward(&claims(r#""x":"~~~???>>>~?>""#));
    let good = signer.token_from_segments(&header, &payload);
    verify_ok(&good, &keys);

    let expect_base64 = |token: &str, segment: Segment, what: &str| {
        let err = refused(token, &keys);
        assert_eq!(err.code(), "malformed", "{segment} {what}");
        assert_eq!(err, Error::Malformed(Malformed::Base64(segment)), "{what}");
    };
    for (what, bad) in non_canonical(&header) {
        // Signed as sent: only the encoding is wrong.
        expect_base64(
            &signer.token_from_segments(&bad, &payload),
            Segment::Header,
            what,
        );
    }
    for (what, bad) in non_canonical(&payload) {
        expect_base64(
            &signer.token_from_segments(&header, &bad),
            Segment::Payload,
            what,
        );
    }
    // An HS256 signature is 43 characters (two unused bits); find one with a `-` or `_`.
    let (input, signature) = (0..200)
        .find_map(|jti| {
            let payload = b64::encode(claims(&format!(r#""jti":"{jti}""#)).as_bytes());
            let input = format!("{header}.{payload}");
            let sig = b64::encode(&signer.sign(input.as_bytes()));
            sig.contains(['-', '_']).then_some((input, sig))
        })
        .expect("a signature with - or _");
    assert_eq!(signature.len(), 43);
    verify_ok(&format!("{input}.{signature}"), &keys);
    for (what, bad) in non_canonical(&signature) {
        expect_base64(&format!("{input}.{bad}"), Segment::Signature, what);
    }

    // Segment count.
    let (h, rest) = good.split_once('.').expect("three segments");
    let (p, s) = rest.split_once('.').expect("three segments");
    for token in [
        String::new(),
        h.to_string(),
        format!("{h}.{p}"),
        format!("{h}.{p}.{s}.{s}"),
        format!("{h}.{p}.{s}."),
        format!(".{h}.{p}.{s}"),
        format!("{h}..{p}.{s}"),
        format!("{h}.{p}{s}"),
        "...".into(),
    ] {
        let err = refused(&token, &keys);
        assert_eq!(err, Error::Malformed(Malformed::Segments), "{token:?}");
    }
    // An empty signature segment decodes to no bytes, which do not verify.
    assert_eq!(refused_code(&format!("{h}.{p}."), &keys), "bad_signature");
    // An empty header is not a JSON object.
    assert_eq!(
        refused_code(&signer.token_from_segments("", p), &keys),
        "malformed"
    );
    // An empty payload is a valid JWS but not a JWT.
    let empty_payload = signer.token_from_segments(h, "");
    let jws = jws::verify(&empty_payload, &keys, &Limits::default()).expect("empty payload JWS");
    assert!(jws.payload().is_empty());
    assert_eq!(
        code(jwt::verify(
            &empty_payload,
            &keys,
            &Validation::default(),
            NOW
        )),
        "malformed"
    );
}

#[test]
fn nested_tokens_and_explicit_typing() {
    let signer = Signer::hs256();
    let keys = key_set_of(&[(&signer, "k")]);
    let payload = claims("");
    let with = |members: &str| {
        signer.token(
            &format!(r#"{{"alg":"HS256","kid":"k"{members}}}"#),
            &payload,
        )
    };
    verify_ok(&with(""), &keys);
    verify_ok(&with(r#","cty":"json""#), &keys);

    for cty in [
        "JWT",
        "jwt",
        "application/jwt",
        "Application/JWT",
        "APPLICATION/JWT",
    ] {
        let token = with(&format!(r#","cty":"{cty}""#));
        // The signature is fine: as a plain JWS it verifies.
        jws::verify(&token, &keys, &Limits::default()).expect("nested token as JWS");
        assert_eq!(
            code(jwt::verify(&token, &keys, &Validation::default(), NOW)),
            "nested_token",
            "cty {cty}"
        );
    }
    assert_eq!(refused_code(&with(r#","cty":1"#), &keys), "invalid_header");

    let mut typed = Validation::default();
    typed.typ = Some("at+jwt".into());
    for typ in [
        "at+jwt",
        "application/AT+JWT",
        "AT+JWT",
        "application/at+jwt",
    ] {
        let token = with(&format!(r#","typ":"{typ}""#));
        jwt::verify(&token, &keys, &typed, NOW).unwrap_or_else(|e| panic!("typ {typ}: {e}"));
    }
    for members in [
        r#","typ":"JWT""#,
        r#","typ":"jwt""#,
        r#","typ":"application/jwt""#,
        r#","typ":"at+jwt ""#,
        r#","typ":"application/at+jwt+x""#,
        r#","typ":"x-application/at+jwt""#,
        r#","typ":"""#,
        "",
    ] {
        let token = with(members);
        verify_ok(&token, &keys); // fine without explicit typing
        assert_eq!(
            code(jwt::verify(&token, &keys, &typed, NOW)),
            "invalid_type",
            "header members {members:?}"
        );
    }
    assert_eq!(
        code(jwt::verify(with(r#","typ":1"#), &keys, &typed, NOW)),
        "invalid_header"
    );
}

/// Regression: an RFC 9701 introspection response (`typ: token-introspection+jwt`) signed by a
/// trusted key verified as an access token when it carried `exp` and the policy did not ask
/// for explicit typing. It is refused whatever the policy, in any spelling of its media type.
#[test]
fn introspection_responses_are_not_access_tokens() {
    let signer = Signer::hs256();
    let keys = key_set_of(&[(&signer, "k")]);
    let payload = claims(r#""token_introspection":{"active":true,"sub":"alice"}"#);
    let with = |typ: &str| {
        signer.token(
            &format!(r#"{{"alg":"HS256","kid":"k","typ":"{typ}"}}"#),
            &payload,
        )
    };
    let mut typed = Validation::default();
    typed.typ = Some("token-introspection+jwt".into());
    for typ in [
        "token-introspection+jwt",
        "application/token-introspection+jwt",
        "Application/Token-Introspection+JWT",
        "TOKEN-INTROSPECTION+JWT",
        r#"token-introspection\u002bjwt"#,
    ] {
        let token = with(typ);
        // The signature is fine: as a plain JWS (how its recipient checks it) it verifies, and
        // the first header becomes the key set's memo, so memo hits are covered below too.
        jws::verify(&token, &keys, &Limits::default()).expect("introspection response as JWS");
        for v in [&Validation::default(), &typed] {
            let e = jwt::verify(&token, &keys, v, NOW).expect_err(typ);
            assert_eq!(e, Error::IntrospectionResponse, "typ {typ}");
            assert_eq!(e.code(), "introspection_response");
        }
    }
    for typ in ["token-introspection", "x-token-introspection+jwt", "at+jwt"] {
        verify_ok(&with(typ), &keys);
    }
}

/// The error of a refused key set.
fn key_set_refused(jwks: &str) -> KeySetError {
    match KeySet::from_jwks(jwks.as_bytes()) {
        Ok(parsed) => panic!("{jwks} accepted: {parsed:?}"),
        Err(e) => e,
    }
}

/// The key error at `index` of a refused key set.
fn key_refused(keys: &[String], index: usize) -> KeyError {
    let jwks = format!(r#"{{"keys":[{}]}}"#, keys.join(","));
    match key_set_refused(&jwks) {
        KeySetError::Key {
            index: at, error, ..
        } => {
            assert_eq!(at, index, "{jwks}");
            error
        }
        other => panic!("{jwks}: {other:?}"),
    }
}

#[test]
fn key_set_refusals_and_skips() {
    let rsa = Signer::rs256();
    let ec = Signer::es256();
    let hs = Signer::hs256();
    let good = vec![rsa.jwk(Some("rsa")), ec.jwk(Some("ec")), hs.jwk(Some("hs"))];
    let keys = key_set(&format!(r#"{{"keys":[{}]}}"#, good.join(",")));
    assert_eq!(keys.len(), 3);
    let payload = claims("");
    verify_ok(&rsa.jwt(Some("rsa"), &payload), &keys);
    verify_ok(&ec.jwt(Some("ec"), &payload), &keys);
    verify_ok(&hs.jwt(Some("hs"), &payload), &keys);

    let refused_with = |bad: String| {
        let mut set = good.clone();
        set.insert(1, bad);
        key_refused(&set, 1)
    };

    // RSA-1024: an odd 1024-bit modulus.
    let public = rsa_pair().public_key();
    let mut n1024 = public.modulus().big_endian_without_leading_zero()[..128].to_vec();
    n1024[0] |= 0x80;
    n1024[127] |= 1;
    let rsa1024 = format!(
        r#"{{"kty":"RSA","alg":"RS256","kid":"small","n":"{}","e":"AQAB"}}"#,
        b64::encode(&n1024)
    );
    assert!(matches!(refused_with(rsa1024), KeyError::Weak(_)));

    // Private members in a verification set.
    let rsa_private = with_member(&rsa.jwk(Some("p")), r#""d":"AQAB""#);
    assert_eq!(refused_with(rsa_private), KeyError::PrivateKeyMaterial);
    let rsa_prime = with_member(&rsa.jwk(Some("p")), r#""p":"AQAB""#);
    assert_eq!(refused_with(rsa_prime), KeyError::PrivateKeyMaterial);
    let ec_private = with_member(&ec.jwk(Some("p")), r#""d":"AQAB""#);
    assert_eq!(refused_with(ec_private), KeyError::PrivateKeyMaterial);

    // EC points: off the curve, wrong coordinate length.
    let point = ec.raw_public();
    let (x, y) = (&point[1..33], &point[33..]);
    let ec_jwk = |x: &[u8], y: &[u8], crv: &str, alg: &str| {
        format!(
            r#"{{"kty":"EC","crv":"{crv}","alg":"{alg}","kid":"e2","x":"{}","y":"{}"}}"#,
            b64::encode(x),
            b64::encode(y)
        )
    };
    verify_ok(
        &ec.jwt(Some("e2"), &payload),
        &key_set(&format!(
            r#"{{"keys":[{}]}}"#,
            ec_jwk(x, y, "P-256", "ES256")
        )),
    );
    let mut y_off = y.to_vec();
    y_off[31] ^= 1;
    assert!(matches!(
        refused_with(ec_jwk(x, &y_off, "P-256", "ES256")),
        KeyError::Rejected(_)
    ));
    assert!(matches!(
        refused_with(ec_jwk(&[0; 32], &[0; 32], "P-256", "ES256")),
        KeyError::Rejected(_)
    ));
    assert!(matches!(
        refused_with(ec_jwk(&x[1..], y, "P-256", "ES256")),
        KeyError::Invalid(_)
    ));
    assert!(matches!(
        refused_with(ec_jwk(&[&[0u8][..], x].concat(), y, "P-256", "ES256")),
        KeyError::Invalid(_)
    ));
    assert!(matches!(
        refused_with(ec_jwk(x, y, "P-256", "ES384")),
        KeyError::AlgorithmMismatch(_)
    ));
    assert!(matches!(
        refused_with(ec_jwk(x, y, "P-256", "RS256")),
        KeyError::AlgorithmMismatch(_)
    ));

    // A 31-byte HS256 secret.
    let short = format!(
        r#"{{"kty":"oct","alg":"HS256","kid":"short","k":"{}"}}"#,
        b64::encode(&SECRET[..31])
    );
    assert!(matches!(refused_with(short), KeyError::Weak(_)));
    assert!(matches!(
        VerifyingKey::hmac(Algorithm::HS256, &SECRET[..31], None),
        Err(KeyError::Weak(_))
    ));

    // Duplicate kid, in a document and through KeySet::new.
    let dup = format!(
        r#"{{"keys":[{},{}]}}"#,
        ec.jwk(Some("same")),
        rsa.jwk(Some("same"))
    );
    assert_eq!(
        key_set_refused(&dup),
        KeySetError::DuplicateKid("same".into())
    );
    let twice = KeySet::new(vec![
        VerifyingKey::hmac(Algorithm::HS256, SECRET, Some("same")).expect("key"),
        VerifyingKey::hmac(Algorithm::HS384, &[7; 48], Some("same")).expect("key"),
    ]);
    assert_eq!(
        twice.expect_err("duplicate kid accepted"),
        KeySetError::DuplicateKid("same".into())
    );

    // Skipped, not refused: an encryption key and an RSA key without alg.
    let enc = with_member(&rsa.jwk(Some("enc")), r#""use":"enc""#);
    let rsa_no_alg = {
        let public = rsa_pair().public_key();
        format!(
            r#"{{"kty":"RSA","kid":"noalg","n":"{}","e":"{}"}}"#,
            b64::encode(public.modulus().big_endian_without_leading_zero()),
            b64::encode(public.exponent().big_endian_without_leading_zero())
        )
    };
    let jwks = format!(r#"{{"keys":[{},{enc},{rsa_no_alg}]}}"#, ec.jwk(Some("ec")));
    let parsed = KeySet::from_jwks(jwks.as_bytes()).expect("skips are not refusals");
    assert_eq!(parsed.keys.len(), 1);
    assert_eq!(parsed.skipped.len(), 2);
    assert_eq!(parsed.skipped[0].index, 1);
    assert_eq!(parsed.skipped[0].kid.as_deref(), Some("enc"));
    assert_eq!(parsed.skipped[0].reason, SkipReason::NotForSignatures);
    assert_eq!(parsed.skipped[1].index, 2);
    assert_eq!(parsed.skipped[1].kid.as_deref(), Some("noalg"));
    assert_eq!(parsed.skipped[1].reason, SkipReason::AlgorithmRequired);
    // Skipped keys verify nothing.
    verify_ok(&ec.jwt(Some("ec"), &payload), &parsed.keys);
    assert_eq!(
        refused_code(&rsa.jwt(Some("enc"), &payload), &parsed.keys),
        "unknown_key"
    );
    assert_eq!(
        refused_code(&rsa.jwt(Some("noalg"), &payload), &parsed.keys),
        "unknown_key"
    );
    assert_eq!(
        refused_code(&rsa.jwt(None, &payload), &parsed.keys),
        "unknown_key"
    );
}
