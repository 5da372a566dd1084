//! The published JOSE test vectors (RFC 7515 appendix A, RFC 7520 section 4, RFC 8037 appendix
//! A.4), kept as data files in `tests/vectors/`, with one driver: each vector verifies, decodes
//! to exactly the published header and payload, and every tampered variant is refused.

use std::path::PathBuf;

use jose::{b64, KeySet, Limits, Validation};
use serde_json::Value;

struct Vector {
    name: String,
    alg: String,
    jwks: String,
    token: String,
    header: String,
    payload: String,
    claims_at: Option<i64>,
}

fn vectors() -> Vec<Vector> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable vector file");
        let doc: Value = serde_json::from_str(&text).expect("vector file is JSON");
        for v in doc["vectors"].as_array().expect("vectors array") {
            let s = |k: &str| {
                v[k].as_str()
                    .unwrap_or_else(|| panic!("{k} missing"))
                    .to_owned()
            };
            out.push(Vector {
                name: s("name"),
                alg: s("alg"),
                jwks: v["jwks"].to_string(),
                token: s("token"),
                header: s("header"),
                payload: s("payload"),
                claims_at: if v["claims"] == Value::Bool(true) {
                    Some(v["now"].as_i64().expect("now"))
                } else {
                    None
                },
            });
        }
    }
    out
}

fn keys(v: &Vector) -> KeySet {
    let jwks = KeySet::from_jwks(v.jwks.as_bytes())
        .unwrap_or_else(|e| panic!("{}: key set refused: {e}", v.name));
    assert!(jwks.skipped.is_empty(), "{}: {:?}", v.name, jwks.skipped);
    jwks.keys
}

#[test]
fn all_published_vectors_are_present() {
    let names: Vec<String> = vectors().into_iter().map(|v| v.name).collect();
    for expected in [
        "rfc7515-a1-hs256",
        "rfc7515-a2-rs256",
        "rfc7515-a3-es256",
        "rfc7515-a4-es512",
        "rfc7520-4.1-rs256",
        "rfc7520-4.2-ps384",
        "rfc7520-4.3-es512",
        "rfc7520-4.4-hs256",
        "rfc8037-a4-eddsa",
    ] {
        assert!(names.iter().any(|n| n == expected), "{expected} missing");
    }
}

#[test]
fn vectors_verify_and_decode_exactly() {
    for v in vectors() {
        let keys = keys(&v);
        let jws = jose::jws::verify(&v.token, &keys, &Limits::default())
            .unwrap_or_else(|e| panic!("{}: {e}", v.name));
        assert_eq!(jws.alg().name(), v.alg, "{}", v.name);
        assert_eq!(jws.header_json(), v.header, "{}", v.name);
        assert_eq!(jws.payload(), v.payload.as_bytes(), "{}", v.name);
        if let Some(now) = v.claims_at {
            let jwt = jose::jwt::verify(&v.token, &keys, &Validation::default(), now)
                .unwrap_or_else(|e| panic!("{}: {e}", v.name));
            assert_eq!(jwt.claims_json(), v.payload, "{}", v.name);
            assert_eq!(jwt.header_json(), v.header, "{}", v.name);
            // The vectors' tokens expired in 2011.
            let err = jose::jwt::verify(&v.token, &keys, &Validation::default(), 1_700_000_000)
                .expect_err("expired vector accepted");
            assert_eq!(err.code(), "expired", "{}", v.name);
        }
    }
}

/// Every single-character substitution anywhere in the token is refused.
#[test]
fn every_substituted_character_is_refused() {
    for v in vectors() {
        let keys = keys(&v);
        let token = v.token.as_bytes();
        for i in 0..token.len() {
            for replacement in [b'A', b'_', b'.', b'='] {
                if token[i] == replacement {
                    continue;
                }
                let mut t = token.to_vec();
                t[i] = replacement;
                let result = jose::jws::verify(&t, &keys, &Limits::default());
                assert!(
                    result.is_err(),
                    "{}: byte {i} set to {:?} still verifies",
                    v.name,
                    replacement as char
                );
            }
        }
    }
}

#[test]
fn structural_tampering_is_refused() {
    for v in vectors() {
        let keys = keys(&v);
        let parts: Vec<&str> = v.token.split('.').collect();
        let (h, p, s) = (parts[0], parts[1], parts[2]);
        let variants = [
            format!("{h}.{p}"),
            format!("{h}.{p}."),
            format!("{h}.{p}.{s}."),
            format!("{h}.{p}.{s}.{s}"),
            format!("{h}..{s}"),
            format!(".{p}.{s}"),
            format!("{h}.{p}.{}", &s[..s.len() - 4]),
            format!("{h}.{p}.{s}AAAA"),
            format!("{h}.{p}.{s}="),
            format!("{h}.{p}.{}", s.replace('-', "+").replace('_', "/")),
            format!("{h} .{p}.{s}"),
            format!("{h}.{p}.{s}\n"),
            format!("{p}.{h}.{s}"),
            // The same header and payload re-encoded with trailing whitespace in the payload.
            format!(
                "{h}.{}.{s}",
                b64::encode(format!("{} ", v.payload).as_bytes())
            ),
        ];
        for t in variants.into_iter().filter(|t| *t != v.token) {
            assert!(
                jose::jws::verify(&t, &keys, &Limits::default()).is_err(),
                "{}: {t:?} still verifies",
                v.name
            );
        }
        // The header re-signed under another algorithm claim is refused before any key is used.
        for alg in ["none", "HS256", "RS256", "ES256", "EdDSA"] {
            if alg == v.alg {
                continue;
            }
            let header = v.header.replacen(&v.alg, alg, 1);
            let t = format!("{}.{p}.{s}", b64::encode(header.as_bytes()));
            assert!(
                jose::jws::verify(&t, &keys, &Limits::default()).is_err(),
                "{}: alg {alg} accepted",
                v.name
            );
        }
    }
}
