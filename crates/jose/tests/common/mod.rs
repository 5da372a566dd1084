//! Shared helpers for the attack and property tests: jose's signing keys, with the byte-level
//! views of their public halves that attacks need; token builders that sign exactly the bytes
//! they are given; and a few byte-level tools (big-endian subtraction, DER, PEM).

#![allow(dead_code)]

use std::sync::OnceLock;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{
    self as sig, EcdsaKeyPair, EcdsaSigningAlgorithm, Ed25519KeyPair, KeyPair,
};
use aws_lc_rs::{hmac, rsa};
use jose::{b64, jws, Algorithm, Error, Family, KeySet, PublicJwk, SigningKey};

/// The verification time used by every test.
pub const NOW: i64 = 1_700_000_000;

/// A 32-byte HMAC secret.
pub const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

/// One RSA-2048 key pair for the whole test binary (generation is the slow part).
pub fn rsa_pair() -> &'static rsa::KeyPair {
    static KEY: OnceLock<rsa::KeyPair> = OnceLock::new();
    KEY.get_or_init(|| rsa::KeyPair::generate(rsa::KeySize::Rsa2048).expect("RSA-2048 key"))
}

/// A key that signs: jose's [`SigningKey`], with its stored form (the HMAC secret, or PKCS#8
/// DER) for the byte-level views of its public half that attacks need.
pub struct Signer {
    key: SigningKey,
    stored: Vec<u8>,
}

impl Signer {
    fn from_stored(alg: Algorithm, stored: Vec<u8>) -> Self {
        let key = SigningKey::from_stored(alg, &stored).unwrap_or_else(|e| panic!("{alg}: {e}"));
        Signer { key, stored }
    }

    pub fn hmac(alg: Algorithm, secret: &[u8]) -> Self {
        Signer::from_stored(alg, secret.to_vec())
    }

    pub fn hs256() -> Self {
        Signer::hmac(Algorithm::HS256, SECRET)
    }

    fn rsa(alg: Algorithm) -> Self {
        let pkcs8 = rsa_pair().as_der().expect("RSA PKCS#8");
        Signer::from_stored(alg, pkcs8.as_ref().to_vec())
    }

    pub fn rs256() -> Self {
        Signer::rsa(Algorithm::RS256)
    }

    pub fn ps256() -> Self {
        Signer::rsa(Algorithm::PS256)
    }

    pub fn ec(alg: Algorithm) -> Self {
        assert_eq!(
            alg.family(),
            Family::Ecdsa,
            "{alg} is not an ECDSA algorithm"
        );
        let (key, stored) = SigningKey::generate_stored(alg).expect("EC key");
        Signer { key, stored }
    }

    pub fn es256() -> Self {
        Signer::ec(Algorithm::ES256)
    }

    pub fn ed25519() -> Self {
        let (key, stored) = SigningKey::generate_stored(Algorithm::EdDSA).expect("Ed25519 key");
        Signer { key, stored }
    }

    pub fn alg(&self) -> Algorithm {
        self.key.alg()
    }

    /// Signs `message` in JWS form (raw R‖S for ECDSA).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.key.sign(message).expect("signature")
    }

    /// The public JWK (for HMAC, the secret) with this signer's `alg` and the given `kid`, and
    /// no `use`, so that a test can add its own.
    pub fn jwk(&self, kid: Option<&str>) -> String {
        let mut members = match self.key.public() {
            None => format!(r#""kty":"oct","k":"{}""#, b64::encode(&self.stored)),
            Some(PublicJwk::Rsa { n, e }) => format!(
                r#""kty":"RSA","n":"{}","e":"{}""#,
                b64::encode(&n),
                b64::encode(&e),
            ),
            Some(PublicJwk::Ec { crv, x, y }) => format!(
                r#""kty":"EC","crv":"{crv}","x":"{}","y":"{}""#,
                b64::encode(&x),
                b64::encode(&y),
            ),
            Some(PublicJwk::Ed25519 { x }) => {
                format!(r#""kty":"OKP","crv":"Ed25519","x":"{}""#, b64::encode(&x))
            }
            Some(other) => panic!("no JWK for {other:?}"),
        };
        members.push_str(&format!(r#","alg":"{}""#, self.alg()));
        if let Some(kid) = kid {
            members.push_str(&format!(r#","kid":"{kid}""#));
        }
        format!("{{{members}}}")
    }

    /// The public key as X.509 SubjectPublicKeyInfo DER (not for HMAC).
    pub fn spki_der(&self) -> Vec<u8> {
        let der = match self.alg().family() {
            Family::Hmac => panic!("HMAC keys have no public key"),
            Family::RsaPkcs1 | Family::RsaPss => rsa_pair().public_key().as_der(),
            Family::Ecdsa => self.ec_pair().public_key().as_der(),
            Family::EdDsa => self.ed_pair().public_key().as_der(),
        };
        der.expect("public key DER").as_ref().to_vec()
    }

    /// The raw public key bytes aws-lc-rs exposes (PKCS#1 RSAPublicKey, an uncompressed EC
    /// point, or the 32 Ed25519 bytes).
    pub fn raw_public(&self) -> Vec<u8> {
        match self.alg().family() {
            Family::Hmac => panic!("HMAC keys have no public key"),
            Family::RsaPkcs1 | Family::RsaPss => rsa_pair().public_key().as_ref().to_vec(),
            Family::Ecdsa => self.ec_pair().public_key().as_ref().to_vec(),
            Family::EdDsa => self.ed_pair().public_key().as_ref().to_vec(),
        }
    }

    fn ec_pair(&self) -> EcdsaKeyPair {
        let signing: &'static EcdsaSigningAlgorithm = match self.alg() {
            Algorithm::ES256 => &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
            Algorithm::ES384 => &sig::ECDSA_P384_SHA384_FIXED_SIGNING,
            _ => &sig::ECDSA_P521_SHA512_FIXED_SIGNING,
        };
        EcdsaKeyPair::from_pkcs8(signing, &self.stored).expect("EC PKCS#8")
    }

    fn ed_pair(&self) -> Ed25519KeyPair {
        Ed25519KeyPair::from_pkcs8(&self.stored).expect("Ed25519 PKCS#8")
    }

    /// A compact JWS over `header` and `payload` (JSON texts, encoded here).
    pub fn token(&self, header: &str, payload: &str) -> String {
        self.key.token(header, payload).expect("signature")
    }

    /// A compact JWS with the standard minimal header for this signer.
    pub fn jwt(&self, kid: Option<&str>, payload: &str) -> String {
        self.token(&jws::header_json(self.alg(), kid, None), payload)
    }

    /// A compact JWS over already-encoded segments, signed exactly as given (whatever they
    /// contain), so that only the encoding can be at fault.
    pub fn token_from_segments(&self, header: &str, payload: &str) -> String {
        let input = format!("{header}.{payload}");
        let signature = self.sign(input.as_bytes());
        format!("{input}.{}", b64::encode(&signature))
    }
}

/// HMAC with any secret, as an attacker would compute it (no minimum length).
pub fn hmac_sign(alg: Algorithm, secret: &[u8], message: &[u8]) -> Vec<u8> {
    let hash = match alg {
        Algorithm::HS256 => hmac::HMAC_SHA256,
        Algorithm::HS384 => hmac::HMAC_SHA384,
        Algorithm::HS512 => hmac::HMAC_SHA512,
        other => panic!("{other} is not an HMAC algorithm"),
    };
    hmac::sign(&hmac::Key::new(hash, secret), message)
        .as_ref()
        .to_vec()
}

/// A key set from a JWK Set document; nothing may be skipped.
pub fn key_set(jwks: &str) -> KeySet {
    let parsed = KeySet::from_jwks(jwks.as_bytes()).unwrap_or_else(|e| panic!("{jwks}: {e}"));
    assert!(parsed.skipped.is_empty(), "{:?}", parsed.skipped);
    parsed.keys
}

/// A key set of the signers' public JWKs, each with its kid.
pub fn key_set_of(keys: &[(&Signer, &str)]) -> KeySet {
    let jwks: Vec<String> = keys.iter().map(|(s, kid)| s.jwk(Some(kid))).collect();
    key_set(&format!(r#"{{"keys":[{}]}}"#, jwks.join(",")))
}

/// A claims set valid at [`NOW`] with the given extra members (JSON text without braces,
/// or empty).
pub fn claims(extra: &str) -> String {
    let base = format!(r#""sub":"alice","iat":{},"exp":{}"#, NOW - 10, NOW + 600);
    if extra.is_empty() {
        format!("{{{base}}}")
    } else {
        format!("{{{base},{extra}}}")
    }
}

/// The error code of a verification that must fail.
pub fn code<T: std::fmt::Debug>(result: Result<T, Error>) -> &'static str {
    match result {
        Ok(v) => panic!("expected an error, got Ok({v:?})"),
        Err(e) => e.code(),
    }
}

/// `a - b` for big-endian unsigned integers of the same length (`a >= b`).
pub fn be_sub(a: &[u8], b: &[u8]) -> Vec<u8> {
    assert_eq!(a.len(), b.len());
    let mut out = vec![0u8; a.len()];
    let mut borrow = 0i16;
    for i in (0..a.len()).rev() {
        let mut d = i16::from(a[i]) - i16::from(b[i]) - borrow;
        borrow = 0;
        if d < 0 {
            d += 256;
            borrow = 1;
        }
        out[i] = d as u8;
    }
    assert_eq!(borrow, 0, "be_sub underflow");
    out
}

/// `a + b` for little-endian unsigned integers of the same length (no overflow allowed).
pub fn le_add(a: &[u8], b: &[u8]) -> Vec<u8> {
    assert_eq!(a.len(), b.len());
    let mut out = vec![0u8; a.len()];
    let mut carry = 0u16;
    for i in 0..a.len() {
        let s = u16::from(a[i]) + u16::from(b[i]) + carry;
        out[i] = s as u8;
        carry = s >> 8;
    }
    assert_eq!(carry, 0, "le_add overflow");
    out
}

/// Bytes from a hex string.
pub fn hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

/// A DER `SEQUENCE { INTEGER r, INTEGER s }` from a raw R‖S signature.
pub fn ecdsa_der(raw: &[u8]) -> Vec<u8> {
    fn integer(mut v: &[u8]) -> Vec<u8> {
        while v.len() > 1 && v[0] == 0 && v[1] & 0x80 == 0 {
            v = &v[1..];
        }
        let mut out = vec![0x02];
        let pad = v[0] & 0x80 != 0;
        let len = v.len() + usize::from(pad);
        push_len(&mut out, len);
        if pad {
            out.push(0);
        }
        out.extend_from_slice(v);
        out
    }
    fn push_len(out: &mut Vec<u8>, len: usize) {
        if len < 0x80 {
            out.push(len as u8);
        } else {
            out.push(0x81);
            out.push(len as u8);
        }
    }
    let half = raw.len() / 2;
    let mut body = integer(&raw[..half]);
    body.extend(integer(&raw[half..]));
    let mut out = vec![0x30];
    push_len(&mut out, body.len());
    out.extend(body);
    out
}

/// Standard (padded, `+/`) base64, built from the strict base64url encoder.
pub fn std_base64(bytes: &[u8]) -> String {
    let mut s: String = b64::encode(bytes)
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    while !s.len().is_multiple_of(4) {
        s.push('=');
    }
    s
}

/// A PEM `PUBLIC KEY` block with 64-character lines, as `openssl` writes it.
pub fn pem(spki: &[u8]) -> String {
    let body = std_base64(spki);
    let mut out = String::from("-----BEGIN PUBLIC KEY-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str("-----END PUBLIC KEY-----\n");
    out
}
