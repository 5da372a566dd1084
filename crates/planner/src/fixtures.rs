//! Keys generated for one calibration (never stored) and tokens signed with them, shaped like
//! the load harness's: `{"alg","kid","typ":"at+jwt"}` over `iss`, `sub`, `aud`, `scope`, `iat`,
//! `exp`, `jti`.

use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
use jose::Algorithm;
use serde_json::{json, Value};

pub const ISSUER: &str = "https://calibrate.tessera.invalid";
pub const AUDIENCE: &str = "api://calibrate";

enum Private {
    Hmac(Box<hmac::Key>),
    Rsa(RsaKeyPair, &'static dyn sig::RsaEncoding),
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// A key pair for one algorithm and its public JWK.
pub struct Signer {
    pub alg: Algorithm,
    kid: String,
    private: Private,
    jwk: Value,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

fn b64(bytes: &[u8]) -> String {
    jose::b64::encode(bytes)
}

/// Why calibration keys or tokens could not be made.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FixtureError {
    /// The crypto library refused an operation (`what`): this machine's random source or a
    /// library fault.
    Crypto(&'static str),
    /// The crypto library returned an EC public key in an unexpected form: a library fault.
    EcEncoding,
    /// No calibration key is made for this algorithm: a bug in the caller.
    Unsupported(Algorithm),
}

impl std::fmt::Display for FixtureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FixtureError::Crypto(what) => write!(f, "{what} failed"),
            FixtureError::EcEncoding => f.write_str("unexpected EC public key encoding"),
            FixtureError::Unsupported(alg) => write!(f, "no calibration key for {alg}"),
        }
    }
}

impl std::error::Error for FixtureError {}

fn failed(what: &'static str) -> impl Fn(aws_lc_rs::error::Unspecified) -> FixtureError {
    move |_| FixtureError::Crypto(what)
}

impl Signer {
    /// Generates a key: HS256 a random 32-byte secret, RS256/PS256 RSA-2048, ES256 P-256, ES384
    /// P-384, EdDSA Ed25519.
    pub fn generate(alg: Algorithm) -> Result<Signer, FixtureError> {
        let kid = format!("calibrate-{}", alg.name());
        let (private, jwk) = match alg {
            Algorithm::HS256 => {
                let mut k = [0u8; 32];
                SystemRandom::new()
                    .fill(&mut k)
                    .map_err(failed("random secret"))?;
                (
                    Private::Hmac(Box::new(hmac::Key::new(hmac::HMAC_SHA256, &k))),
                    json!({"kty": "oct", "k": b64(&k)}),
                )
            }
            Algorithm::RS256 | Algorithm::PS256 => {
                let pair = RsaKeyPair::generate(KeySize::Rsa2048)
                    .map_err(failed("RSA-2048 key generation"))?;
                let public = pair.public_key();
                let jwk = json!({
                    "kty": "RSA",
                    "n": b64(public.modulus().big_endian_without_leading_zero()),
                    "e": b64(public.exponent().big_endian_without_leading_zero()),
                });
                let padding: &'static dyn sig::RsaEncoding = if alg == Algorithm::RS256 {
                    &sig::RSA_PKCS1_SHA256
                } else {
                    &sig::RSA_PSS_SHA256
                };
                (Private::Rsa(pair, padding), jwk)
            }
            Algorithm::ES256 | Algorithm::ES384 => {
                let (signing, crv, len) = if alg == Algorithm::ES256 {
                    (&sig::ECDSA_P256_SHA256_FIXED_SIGNING, "P-256", 32)
                } else {
                    (&sig::ECDSA_P384_SHA384_FIXED_SIGNING, "P-384", 48)
                };
                let pair = EcdsaKeyPair::generate(signing).map_err(failed("EC key generation"))?;
                let point = pair.public_key().as_ref();
                if point.len() != 1 + 2 * len || point[0] != 0x04 {
                    return Err(FixtureError::EcEncoding);
                }
                let jwk = json!({
                    "kty": "EC",
                    "crv": crv,
                    "x": b64(&point[1..1 + len]),
                    "y": b64(&point[1 + len..]),
                });
                (Private::Ecdsa(pair), jwk)
            }
            Algorithm::EdDSA => {
                let pair = Ed25519KeyPair::generate().map_err(failed("Ed25519 key generation"))?;
                let jwk =
                    json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref())});
                (Private::Ed25519(pair), jwk)
            }
            other => return Err(FixtureError::Unsupported(other)),
        };
        let mut jwk = jwk;
        jwk["kid"] = json!(kid);
        jwk["alg"] = json!(alg.name());
        Ok(Signer {
            alg,
            kid,
            private,
            jwk,
        })
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, FixtureError> {
        Ok(match &self.private {
            Private::Hmac(key) => hmac::sign(key, message).as_ref().to_vec(),
            Private::Rsa(pair, padding) => {
                let mut out = vec![0u8; pair.public_modulus_len()];
                pair.sign(*padding, &SystemRandom::new(), message, &mut out)
                    .map_err(failed("RSA signing"))?;
                out
            }
            Private::Ecdsa(pair) => pair
                .sign(&SystemRandom::new(), message)
                .map_err(failed("ECDSA signing"))?
                .as_ref()
                .to_vec(),
            Private::Ed25519(pair) => pair.sign(message).as_ref().to_vec(),
        })
    }

    /// Valid tokens numbered `numbers` (distinct numbers, distinct tokens), issued at `now` for
    /// an hour.
    pub fn tokens(
        &self,
        numbers: std::ops::Range<usize>,
        now: i64,
    ) -> Result<Vec<String>, FixtureError> {
        let header = jose::jws::header_json(self.alg, Some(&self.kid), Some("at+jwt"));
        numbers
            .map(|i| {
                let claims = format!(
                    "{{\"iss\":\"{ISSUER}\",\"sub\":\"calibrate-{i}\",\"aud\":\"{AUDIENCE}\",\
                     \"scope\":\"calibrate\",\"iat\":{now},\"exp\":{},\"jti\":\"{}-{i}\"}}",
                    now + 3600,
                    self.alg.name()
                );
                let input = jose::SigningInput::new(header.as_bytes(), claims.as_bytes());
                let signature = self.sign(input.as_bytes())?;
                Ok(input.into_compact(&signature))
            })
            .collect()
    }
}

/// The JWK Set of these signers' public keys (the HMAC secret included, as an `oct` key).
pub fn jwks(signers: &[Signer]) -> String {
    json!({ "keys": signers.iter().map(|s| s.jwk.clone()).collect::<Vec<_>>() }).to_string()
}

/// The claims policy the daemon applies to a quick-mode issuer.
pub fn validation() -> jose::Validation {
    jose::Validation::default()
        .with_issuer(ISSUER)
        .with_audience(AUDIENCE)
}
