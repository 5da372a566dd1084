#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

//! The checks a batched backend's results go through (`jose::batch`), against aws-lc-rs's own
//! verification: the RSA encodings over the Wycheproof vectors (the public operation done here
//! with `num-bigint`), and `batch::lane`'s refusals before any arithmetic. Whatever verdict
//! aws-lc-rs gives (`valid` and `invalid` as the vectors say, `acceptable` either way), the
//! batched checks give the same.

use std::path::PathBuf;

use aws_lc_rs::signature::{self as sig, RsaPublicKeyComponents};
use jose::batch::{self, Hash, Lane, NoLane, RsaEncoding};
use jose::{Algorithm, Validation};
use num_bigint::BigUint;
use serde_json::Value;

fn wycheproof(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/vectors/wycheproof")
        .join(name);
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

fn hex(v: &Value) -> Vec<u8> {
    let s = v.as_str().unwrap();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// `s^e mod n` as long as `n`, or `None` when `s` is not a number below `n` of its length.
fn public_op(n: &[u8], e: &[u8], s: &[u8]) -> Option<Vec<u8>> {
    let (n_int, s_int) = (BigUint::from_bytes_be(n), BigUint::from_bytes_be(s));
    if s.len() != n.len() || s_int >= n_int {
        return None;
    }
    let m = s_int
        .modpow(&BigUint::from_bytes_be(e), &n_int)
        .to_bytes_be();
    let mut em = vec![0u8; n.len() - m.len()];
    em.extend_from_slice(&m);
    Some(em)
}

fn hash(name: &str) -> Hash {
    match name {
        "SHA-256" => Hash::Sha256,
        "SHA-384" => Hash::Sha384,
        "SHA-512" => Hash::Sha512,
        other => panic!("hash {other}"),
    }
}

/// Runs every vector of `file`; returns how many ran.
fn rsa_file(file: &str, pss: bool) -> usize {
    let doc = wycheproof(file);
    let mut ran = 0;
    for group in doc["testGroups"].as_array().unwrap() {
        let h = hash(group["sha"].as_str().unwrap());
        if pss {
            // RFC 7518: MGF1 with the same hash, a salt as long as the hash.
            let same_mgf = group["mgfSha"] == group["sha"];
            let s_len = group["sLen"].as_u64().unwrap() as usize;
            if !same_mgf || s_len != Hash::digest(h, b"").as_bytes().len() {
                continue;
            }
        }
        let mut n = hex(&group["publicKey"]["modulus"]);
        while n.first() == Some(&0) {
            n.remove(0);
        }
        let e = hex(&group["publicKey"]["publicExponent"]);
        let bits = n.len() * 8 - n[0].leading_zeros() as usize;
        let params: &'static sig::RsaParameters = match (pss, h) {
            (false, Hash::Sha256) => &sig::RSA_PKCS1_2048_8192_SHA256,
            (false, Hash::Sha384) => &sig::RSA_PKCS1_2048_8192_SHA384,
            (false, Hash::Sha512) => &sig::RSA_PKCS1_2048_8192_SHA512,
            (true, Hash::Sha256) => &sig::RSA_PSS_2048_8192_SHA256,
            (true, Hash::Sha384) => &sig::RSA_PSS_2048_8192_SHA384,
            (true, Hash::Sha512) => &sig::RSA_PSS_2048_8192_SHA512,
        };
        let encoding = if pss {
            RsaEncoding::Pss(h)
        } else {
            RsaEncoding::Pkcs1(h)
        };
        for t in group["tests"].as_array().unwrap() {
            let (msg, s) = (hex(&t["msg"]), hex(&t["sig"]));
            let reference = RsaPublicKeyComponents { n: &n, e: &e }
                .verify(params, &msg, &s)
                .is_ok();
            let batched = public_op(&n, &e, &s).is_some_and(|em| encoding.matches(&em, bits, &msg));
            let id = &t["tcId"];
            match t["result"].as_str().unwrap() {
                "valid" => assert!(batched && reference, "{file} #{id}: valid refused"),
                "invalid" => assert!(!batched && !reference, "{file} #{id}: invalid accepted"),
                _ => assert_eq!(
                    batched, reference,
                    "{file} #{id}: acceptable answered apart"
                ),
            }
            ran += 1;
        }
    }
    ran
}

#[test]
fn rsa_encodings_agree_with_aws_lc_on_wycheproof() {
    let mut ran = 0;
    for file in [
        "rsa_signature_2048_sha256_test.json",
        "rsa_signature_2048_sha384_test.json",
        "rsa_signature_2048_sha512_test.json",
        "rsa_signature_3072_sha256_test.json",
        "rsa_signature_4096_sha256_test.json",
    ] {
        ran += rsa_file(file, false);
    }
    for file in [
        "rsa_pss_2048_sha256_mgf1_32_test.json",
        "rsa_pss_2048_sha384_mgf1_48_test.json",
        "rsa_pss_3072_sha256_mgf1_32_test.json",
    ] {
        ran += rsa_file(file, true);
    }
    assert!(ran > 500, "only {ran} vectors ran");
}

/// Tokens of every algorithm with a lane: the lane's check on the public operation (or its
/// refusal) agrees with the single path, for valid tokens, tampered signatures, and signatures
/// out of range.
#[test]
fn lanes_agree_with_the_single_path() {
    let now = 1_767_225_600;
    let validation = Validation::default();
    for alg in Algorithm::ALL {
        let signer = jose::SigningKey::generate(alg).unwrap();
        let keys = signer.key_set().unwrap();
        let payload = format!(r#"{{"sub":"a","exp":{}}}"#, now + 60);
        let good = signer.jwt(None, &payload).unwrap();
        let (head, sig_b64) = good.rsplit_once('.').unwrap();
        let signature = jose::b64::decode(sig_b64.as_bytes()).unwrap();
        let mut variants = vec![good.clone()];
        for change in [0usize, signature.len() / 2, signature.len() - 1] {
            let mut s = signature.clone();
            s[change] ^= 0x40;
            variants.push(format!("{head}.{}", jose::b64::encode(&s)));
        }
        // All ones: above any RSA modulus and any curve order; S above the Ed25519 order.
        variants.push(format!(
            "{head}.{}",
            jose::b64::encode(&vec![0xff; signature.len()])
        ));
        // Zero r (or s): out of range.
        variants.push(format!(
            "{head}.{}",
            jose::b64::encode(&vec![0u8; signature.len()])
        ));
        for token in &variants {
            let prepared = jose::jwt::prepare(token.as_bytes(), &keys, &validation).unwrap();
            let jws = prepared.jws();
            let single = jws
                .key()
                .verify(jws.signing_input(), jws.signature())
                .is_ok();
            let batched = match batch::lane(jws) {
                Err(NoLane::Algorithm) => {
                    assert!(
                        matches!(
                            alg,
                            Algorithm::HS256
                                | Algorithm::HS384
                                | Algorithm::HS512
                                | Algorithm::ES512
                        ),
                        "{alg:?} has no lane"
                    );
                    continue;
                }
                Err(NoLane::Refused) => false,
                Ok(Lane::Rsa {
                    modulus,
                    exponent,
                    signature,
                    encoding,
                    message,
                }) => {
                    assert_eq!(message, jws.signing_input());
                    let bits = modulus.len() * 8 - modulus[0].leading_zeros() as usize;
                    public_op(modulus, exponent, signature)
                        .is_some_and(|em| encoding.matches(&em, bits, message))
                }
                // The curve arithmetic is the backend's; here the lane must carry exactly
                // what the single path checks.
                Ok(Lane::Ecdsa { r, s, digest, .. }) => {
                    assert_eq!([r, s].concat(), jws.signature());
                    let h = if alg == Algorithm::ES256 {
                        Hash::Sha256
                    } else {
                        Hash::Sha384
                    };
                    assert_eq!(digest.as_bytes(), h.digest(jws.signing_input()).as_bytes());
                    single
                }
                Ok(Lane::Ed25519 {
                    signature, message, ..
                }) => {
                    assert_eq!(signature, jws.signature());
                    assert_eq!(message, jws.signing_input());
                    single
                }
            };
            assert_eq!(batched, single, "{alg:?}: {token}");
        }
    }
}
