#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

//! crypto_mb through this crate against aws-lc-rs, vector by vector, over the Wycheproof
//! vectors in `tests/vectors/wycheproof/`: RSA PKCS#1 v1.5 and PSS (the public operation here,
//! its result checked by `jose::batch`), ECDSA P-256 and P-384, Ed25519. Lanes are filled 8,
//! 1, 3, 7 and 5 at a time with the vectors of several keys mixed in one call. `valid` must be
//! accepted and `invalid` refused by both; `acceptable` answered alike.
//!
//! The library comes from `crypto/install.sh`; without it these tests fail and say so. On a CPU
//! without AVX-512 IFMA they say once that the multi-buffer path was not exercised.

use std::path::PathBuf;

use aws_lc_rs::signature::{self as sig, RsaPublicKeyComponents, UnparsedPublicKey};
use jose::batch::{self, Hash, RsaEncoding};
use multibuffer::{Curve, EcKey, EcdsaLane, Ed25519Lane, LoadError, MultiBuffer, RsaKey, Source};
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The library, or `None` on a CPU that cannot run it (said on stderr).
fn library() -> Option<MultiBuffer> {
    let folder = Some(root().join("crypto/lib"));
    match MultiBuffer::load(&Source::Auto { folder }) {
        Ok(mb) => Some(mb),
        Err(LoadError::NotApplicable) => {
            eprintln!("multi-buffer path not exercised: this CPU lacks avx512ifma");
            None
        }
        Err(e) => panic!("crypto_mb: {e}; run crypto/install.sh (make test does)"),
    }
}

fn vectors(name: &str) -> Value {
    let path = root().join("tests/vectors/wycheproof").join(name);
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

fn hex(v: &Value) -> Vec<u8> {
    let s = v.as_str().unwrap();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A number as exactly `size` big-endian bytes, or `None` if it does not fit.
fn fixed(mut bytes: Vec<u8>, size: usize) -> Option<Vec<u8>> {
    while bytes.len() > size && bytes[0] == 0 {
        bytes.remove(0);
    }
    if bytes.len() > size {
        return None;
    }
    let mut out = vec![0; size - bytes.len()];
    out.extend_from_slice(&bytes);
    Some(out)
}

/// How many lanes the next call takes.
const FILLS: [usize; 5] = [8, 1, 3, 7, 5];

fn check(file: &str, id: &Value, result: &str, mb: bool, reference: bool) {
    match result {
        "valid" => assert!(mb && reference, "{file} #{id}: valid refused (mb {mb})"),
        "invalid" => assert!(
            !mb && !reference,
            "{file} #{id}: invalid accepted (mb {mb})"
        ),
        _ => assert_eq!(mb, reference, "{file} #{id}: acceptable answered apart"),
    }
}

struct EcCase {
    key: EcKey,
    r: Vec<u8>,
    s: Vec<u8>,
    digest: Vec<u8>,
    reference: bool,
    result: String,
    id: Value,
}

fn ecdsa(mb: &MultiBuffer, file: &str, curve: Curve) -> usize {
    let (size, reference_alg, batch_curve) = match curve {
        Curve::P256 => (32, &sig::ECDSA_P256_SHA256_FIXED, batch::Curve::P256),
        Curve::P384 => (48, &sig::ECDSA_P384_SHA384_FIXED, batch::Curve::P384),
    };
    let order = batch_curve.order();
    let doc = vectors(file);
    let mut cases = Vec::new();
    let mut refused_early = 0;
    for group in doc["testGroups"].as_array().unwrap() {
        let key = &group["publicKey"];
        let (x, y) = (
            fixed(hex(&key["wx"]), size).unwrap(),
            fixed(hex(&key["wy"]), size).unwrap(),
        );
        let point = [&[0x04][..], &x, &y].concat();
        for t in group["tests"].as_array().unwrap() {
            let (msg, signature) = (hex(&t["msg"]), hex(&t["sig"]));
            let reference = UnparsedPublicKey::new(reference_alg, &point)
                .verify(&msg, &signature)
                .is_ok();
            let result = t["result"].as_str().unwrap().to_string();
            // What a caller checks before the call: the length and 0 < r, s < n; and the
            // digest modulo n.
            let (r, s) = signature.split_at(signature.len().min(size));
            let in_range = |v: &[u8]| v.iter().any(|&b| b != 0) && v < order;
            if signature.len() != 2 * size || !in_range(r) || !in_range(s) {
                check(file, &t["tcId"], &result, false, reference);
                refused_early += 1;
                continue;
            }
            cases.push(EcCase {
                key: EcKey::new(curve, &x, &y).unwrap(),
                r: r.to_vec(),
                s: s.to_vec(),
                digest: batch::ecdsa_digest(batch_curve, &msg).as_bytes().to_vec(),
                reference,
                result,
                id: t["tcId"].clone(),
            });
        }
    }
    let mut at = 0;
    for fill in FILLS.iter().cycle() {
        if at >= cases.len() {
            break;
        }
        let chunk = &cases[at..(at + fill).min(cases.len())];
        let lanes: Vec<EcdsaLane<'_>> = chunk
            .iter()
            .map(|c| EcdsaLane {
                key: &c.key,
                r: &c.r,
                s: &c.s,
                digest: &c.digest,
            })
            .collect();
        let verdicts = mb.ecdsa_verify(curve, &lanes).unwrap();
        for (i, c) in chunk.iter().enumerate() {
            check(file, &c.id, &c.result, verdicts.ok(i), c.reference);
        }
        at += chunk.len();
    }
    assert!(
        cases.len() > 100,
        "{file}: only {} cases reached the library",
        cases.len()
    );
    cases.len() + refused_early
}

#[test]
fn ecdsa_agrees_with_aws_lc() {
    let Some(mb) = library() else { return };
    let p256 = ecdsa(&mb, "ecdsa_secp256r1_sha256_p1363_test.json", Curve::P256);
    let p384 = ecdsa(&mb, "ecdsa_secp384r1_sha384_p1363_test.json", Curve::P384);
    assert!(
        p256 > 200 && p384 > 200,
        "{p256} P-256 and {p384} P-384 vectors"
    );
}

#[test]
fn ed25519_agrees_with_aws_lc() {
    let Some(mb) = library() else { return };
    let file = "ed25519_test.json";
    let doc = vectors(file);
    struct Case {
        public: [u8; 32],
        signature: [u8; 64],
        msg: Vec<u8>,
        reference: bool,
        result: String,
        id: Value,
    }
    let mut cases = Vec::new();
    let mut non_canonical_s = 0;
    for group in doc["testGroups"].as_array().unwrap() {
        let public: [u8; 32] = hex(&group["publicKey"]["pk"]).try_into().unwrap();
        for t in group["tests"].as_array().unwrap() {
            let (msg, signature) = (hex(&t["msg"]), hex(&t["sig"]));
            let reference = UnparsedPublicKey::new(&sig::ED25519, public)
                .verify(&msg, &signature)
                .is_ok();
            let result = t["result"].as_str().unwrap().to_string();
            let Ok(signature) = <[u8; 64]>::try_from(signature) else {
                check(file, &t["tcId"], &result, false, reference);
                continue;
            };
            // What a caller checks before the call: S below the group order.
            let (mut s_be, mut l_be) = (signature[32..].to_vec(), batch::ED25519_ORDER.to_vec());
            s_be.reverse();
            l_be.reverse();
            if s_be >= l_be {
                non_canonical_s += 1;
                check(file, &t["tcId"], &result, false, reference);
                continue;
            }
            cases.push(Case {
                public,
                signature,
                msg,
                reference,
                result,
                id: t["tcId"].clone(),
            });
        }
    }
    let mut at = 0;
    for fill in FILLS.iter().cycle() {
        if at >= cases.len() {
            break;
        }
        let chunk = &cases[at..(at + fill).min(cases.len())];
        let lanes: Vec<Ed25519Lane<'_>> = chunk
            .iter()
            .map(|c| Ed25519Lane {
                public: &c.public,
                signature: &c.signature,
                message: &c.msg,
            })
            .collect();
        let verdicts = mb.ed25519_verify(&lanes).unwrap();
        for (i, c) in chunk.iter().enumerate() {
            check(file, &c.id, &c.result, verdicts.ok(i), c.reference);
        }
        at += chunk.len();
    }
    assert!(
        cases.len() > 100 && non_canonical_s > 0,
        "{} cases",
        cases.len()
    );
}

fn rsa_file(mb: &MultiBuffer, file: &str, pss: bool) -> usize {
    let doc = vectors(file);
    struct Case {
        key: RsaKey,
        bits: usize,
        signature: Vec<u8>,
        msg: Vec<u8>,
        encoding: RsaEncoding,
        reference: bool,
        result: String,
        id: Value,
    }
    let mut cases = Vec::new();
    for group in doc["testGroups"].as_array().unwrap() {
        let h = match group["sha"].as_str().unwrap() {
            "SHA-256" => Hash::Sha256,
            "SHA-384" => Hash::Sha384,
            _ => Hash::Sha512,
        };
        let h_len = h.digest(b"").as_bytes().len();
        if pss && (group["mgfSha"] != group["sha"] || group["sLen"].as_u64() != Some(h_len as u64))
        {
            continue;
        }
        let mut n = hex(&group["publicKey"]["modulus"]);
        while n.first() == Some(&0) {
            n.remove(0);
        }
        let e = hex(&group["publicKey"]["publicExponent"]);
        let params: &'static sig::RsaParameters = match (pss, h) {
            (false, Hash::Sha256) => &sig::RSA_PKCS1_2048_8192_SHA256,
            (false, Hash::Sha384) => &sig::RSA_PKCS1_2048_8192_SHA384,
            (false, Hash::Sha512) => &sig::RSA_PKCS1_2048_8192_SHA512,
            (true, Hash::Sha256) => &sig::RSA_PSS_2048_8192_SHA256,
            (true, Hash::Sha384) => &sig::RSA_PSS_2048_8192_SHA384,
            (true, Hash::Sha512) => &sig::RSA_PSS_2048_8192_SHA512,
        };
        // Groups with e = 3 have no lane: the single path serves them.
        let Some(key) = RsaKey::new(&n, &e) else {
            assert_ne!(
                e,
                [1, 0, 1],
                "{file}: a 65537 key of {} bytes refused",
                n.len()
            );
            continue;
        };
        for t in group["tests"].as_array().unwrap() {
            let (msg, signature) = (hex(&t["msg"]), hex(&t["sig"]));
            let reference = RsaPublicKeyComponents { n: &n, e: &e }
                .verify(params, &msg, &signature)
                .is_ok();
            cases.push(Case {
                key: key.clone(),
                bits: key.bits() as usize,
                signature,
                msg,
                encoding: if pss {
                    RsaEncoding::Pss(h)
                } else {
                    RsaEncoding::Pkcs1(h)
                },
                reference,
                result: t["result"].as_str().unwrap().to_string(),
                id: t["tcId"].clone(),
            });
        }
    }
    let mut out = [[0u8; 512]; multibuffer::LANES];
    let mut at = 0;
    for fill in FILLS.iter().cycle() {
        if at >= cases.len() {
            break;
        }
        let chunk = &cases[at..(at + fill).min(cases.len())];
        let lanes: Vec<(&RsaKey, &[u8])> =
            chunk.iter().map(|c| (&c.key, &c.signature[..])).collect();
        let bits = chunk[0].key.bits();
        assert!(chunk.iter().all(|c| c.key.bits() == bits));
        let done = mb.rsa_public(bits, &lanes, &mut out).unwrap();
        for (i, c) in chunk.iter().enumerate() {
            let em = &out[i][..c.bits / 8];
            let verdict = done.ok(i) && c.encoding.matches(em, c.bits, &c.msg);
            check(file, &c.id, &c.result, verdict, c.reference);
        }
        at += chunk.len();
    }
    cases.len()
}

#[test]
fn rsa_public_operation_agrees_with_aws_lc() {
    let Some(mb) = library() else { return };
    let mut ran = 0;
    for file in [
        "rsa_signature_2048_sha256_test.json",
        "rsa_signature_2048_sha384_test.json",
        "rsa_signature_2048_sha512_test.json",
        "rsa_signature_3072_sha256_test.json",
        "rsa_signature_4096_sha256_test.json",
    ] {
        ran += rsa_file(&mb, file, false);
    }
    for file in [
        "rsa_pss_2048_sha256_mgf1_32_test.json",
        "rsa_pss_2048_sha384_mgf1_48_test.json",
        "rsa_pss_3072_sha256_mgf1_32_test.json",
    ] {
        ran += rsa_file(&mb, file, true);
    }
    assert!(ran > 500, "{ran} vectors");
}

/// Lanes of one call keep their own verdicts: one tampered lane among valid ones with
/// different keys fails alone, wherever it sits.
#[test]
fn a_lane_verdict_is_its_own() {
    let Some(mb) = library() else { return };
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
    let rng = SystemRandom::new();
    let msg = b"header.payload";
    let digest = Hash::Sha256.digest(msg).as_bytes().to_vec();
    let mut ec = Vec::new();
    let mut ed = Vec::new();
    for _ in 0..8 {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .unwrap();
        let point = pair.public_key().as_ref().to_vec();
        let key = EcKey::new(Curve::P256, &point[1..33], &point[33..]).unwrap();
        ec.push((key, pair.sign(&rng, msg).unwrap().as_ref().to_vec()));
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let public: [u8; 32] = pair.public_key().as_ref().try_into().unwrap();
        let signature: [u8; 64] = pair.sign(msg).as_ref().try_into().unwrap();
        ed.push((public, signature));
    }
    for bad in 0..8 {
        let mut ec_sigs: Vec<Vec<u8>> = ec.iter().map(|(_, s)| s.clone()).collect();
        ec_sigs[bad][40] ^= 1;
        let lanes: Vec<EcdsaLane<'_>> = ec
            .iter()
            .zip(&ec_sigs)
            .map(|((key, _), s)| EcdsaLane {
                key,
                r: &s[..32],
                s: &s[32..],
                digest: &digest,
            })
            .collect();
        let v = mb.ecdsa_verify(Curve::P256, &lanes).unwrap();
        assert_eq!((v.count(), v.ok(bad)), (7, false), "ECDSA lane {bad}");
        let mut ed_sigs: Vec<[u8; 64]> = ed.iter().map(|(_, s)| *s).collect();
        ed_sigs[bad][5] ^= 1;
        let lanes: Vec<Ed25519Lane<'_>> = ed
            .iter()
            .zip(&ed_sigs)
            .map(|((public, _), signature)| Ed25519Lane {
                public,
                signature,
                message: msg,
            })
            .collect();
        let v = mb.ed25519_verify(&lanes).unwrap();
        assert_eq!((v.count(), v.ok(bad)), (7, false), "Ed25519 lane {bad}");
    }
    // Calls the library cannot take are refused before it is called.
    assert!(mb.ed25519_verify(&[]).is_err());
    let nine: Vec<Ed25519Lane<'_>> = (0..9)
        .map(|i| Ed25519Lane {
            public: &ed[i % 8].0,
            signature: &ed[i % 8].1,
            message: msg,
        })
        .collect();
    assert!(mb.ed25519_verify(&nine).is_err());
}
