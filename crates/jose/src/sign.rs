//! A software signing key: a private key pinned to one [`Algorithm`], as the load harness, the
//! capacity planner, the benchmarks and the tests issue their tokens with. Keys are generated
//! at random or read from PKCS#8 DER (an HMAC key from its secret); each signs a compact JWS and
//! hands out its public half as a JWK, a one-key JWK Set document, or a [`VerifyingKey`] /
//! [`KeySet`] for this crate's verifier.
//!
//! Like the rest of the crate it does no I/O: where a key is stored is its owner's business.

use std::fmt;

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};

use crate::alg::{Algorithm, Family};
use crate::{b64, json, jws, KeyError, KeySet, KeySetError, PublicJwk, SigningInput, VerifyingKey};

/// Why a signing key could not be made or could not sign. Never a token's fault.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignError {
    /// The caller's key bytes: not a key of the algorithm's type.
    Rejected(&'static str),
    /// The caller's HMAC secret is shorter than the hash output (RFC 7518 section 3.2).
    WeakSecret,
    /// The crypto library failed to generate randomness, a key or a signature.
    Crypto(&'static str),
}

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignError::Rejected(why) => write!(f, "signing key rejected: {why}"),
            SignError::WeakSecret => f.write_str("HMAC secret shorter than the hash output"),
            SignError::Crypto(what) => write!(f, "{what} failed"),
        }
    }
}

impl std::error::Error for SignError {}

/// A private (for HMAC, shared) key pinned to one algorithm, with an optional `kid`.
pub struct SigningKey {
    alg: Algorithm,
    kid: Option<String>,
    private: Private,
}

enum Private {
    /// The key and its secret (the secret is all an HMAC verifier needs). Boxed: an aws-lc-rs
    /// HMAC key holds its precomputed context inline.
    Hmac(Box<hmac::Key>, Vec<u8>),
    Rsa(RsaKeyPair, &'static dyn sig::RsaEncoding),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

fn hmac_hash(alg: Algorithm) -> Option<hmac::Algorithm> {
    match alg {
        Algorithm::HS256 => Some(hmac::HMAC_SHA256),
        Algorithm::HS384 => Some(hmac::HMAC_SHA384),
        Algorithm::HS512 => Some(hmac::HMAC_SHA512),
        _ => None,
    }
}

fn rsa_padding(alg: Algorithm) -> Option<&'static dyn sig::RsaEncoding> {
    Some(match alg {
        Algorithm::RS256 => &sig::RSA_PKCS1_SHA256,
        Algorithm::RS384 => &sig::RSA_PKCS1_SHA384,
        Algorithm::RS512 => &sig::RSA_PKCS1_SHA512,
        Algorithm::PS256 => &sig::RSA_PSS_SHA256,
        Algorithm::PS384 => &sig::RSA_PSS_SHA384,
        Algorithm::PS512 => &sig::RSA_PSS_SHA512,
        _ => return None,
    })
}

fn ec_signing(alg: Algorithm) -> Option<&'static sig::EcdsaSigningAlgorithm> {
    match alg {
        Algorithm::ES256 => Some(&sig::ECDSA_P256_SHA256_FIXED_SIGNING),
        Algorithm::ES384 => Some(&sig::ECDSA_P384_SHA384_FIXED_SIGNING),
        Algorithm::ES512 => Some(&sig::ECDSA_P521_SHA512_FIXED_SIGNING),
        _ => None,
    }
}

impl SigningKey {
    /// A fresh random key for `alg`: HMAC a secret as long as the hash output, RSA 2048 bits,
    /// ECDSA on the algorithm's curve, EdDSA Ed25519.
    pub fn generate(alg: Algorithm) -> Result<Self, SignError> {
        Ok(Self::generate_stored(alg)?.0)
    }

    /// A fresh random key for `alg` and its stored form (PKCS#8 DER; for HMAC the secret),
    /// which [`SigningKey::from_stored`] reads back.
    pub fn generate_stored(alg: Algorithm) -> Result<(Self, Vec<u8>), SignError> {
        let stored = match alg.family() {
            Family::Hmac => {
                let mut secret = vec![0u8; alg.hmac_len()];
                SystemRandom::new()
                    .fill(&mut secret)
                    .map_err(|_| SignError::Crypto("random secret"))?;
                secret
            }
            Family::RsaPkcs1 | Family::RsaPss => RsaKeyPair::generate(KeySize::Rsa2048)
                .ok()
                .and_then(|k| k.as_der().ok())
                .map(|d| d.as_ref().to_vec())
                .ok_or(SignError::Crypto("RSA-2048 key generation"))?,
            Family::Ecdsa => ec_signing(alg)
                .and_then(|signing| EcdsaKeyPair::generate(signing).ok())
                .and_then(|k| k.to_pkcs8v1().ok())
                .map(|d| d.as_ref().to_vec())
                .ok_or(SignError::Crypto("EC key generation"))?,
            Family::EdDsa => Ed25519KeyPair::generate()
                .ok()
                .and_then(|k| k.to_pkcs8().ok())
                .map(|d| d.as_ref().to_vec())
                .ok_or(SignError::Crypto("Ed25519 key generation"))?,
        };
        let key = Self::from_stored(alg, &stored)?;
        Ok((key, stored))
    }

    /// A key from its stored form: the secret for HMAC, PKCS#8 DER for the others.
    pub fn from_stored(alg: Algorithm, stored: &[u8]) -> Result<Self, SignError> {
        match alg.family() {
            Family::Hmac => Self::hmac(alg, stored),
            _ => Self::from_pkcs8(alg, stored),
        }
    }

    /// An HMAC key from its secret, at least as long as the hash output.
    pub fn hmac(alg: Algorithm, secret: &[u8]) -> Result<Self, SignError> {
        let hash = hmac_hash(alg).ok_or(SignError::Rejected("not an HMAC algorithm"))?;
        if secret.len() < alg.hmac_len() {
            return Err(SignError::WeakSecret);
        }
        let key = Box::new(hmac::Key::new(hash, secret));
        Ok(SigningKey::new(alg, Private::Hmac(key, secret.to_vec())))
    }

    /// An RSA, ECDSA or Ed25519 key from PKCS#8 DER.
    pub fn from_pkcs8(alg: Algorithm, der: &[u8]) -> Result<Self, SignError> {
        let private = if let Some(padding) = rsa_padding(alg) {
            let pair = RsaKeyPair::from_pkcs8(der)
                .map_err(|_| SignError::Rejected("not an RSA PKCS#8 key"))?;
            Private::Rsa(pair, padding)
        } else if let Some(signing) = ec_signing(alg) {
            let pair = EcdsaKeyPair::from_pkcs8(signing, der)
                .map_err(|_| SignError::Rejected("not a PKCS#8 key on the algorithm's curve"))?;
            Private::Ec(pair)
        } else if alg == Algorithm::EdDSA {
            let pair = Ed25519KeyPair::from_pkcs8(der)
                .map_err(|_| SignError::Rejected("not an Ed25519 PKCS#8 key"))?;
            Private::Ed(pair)
        } else {
            return Err(SignError::Rejected("HMAC keys are secrets, not PKCS#8"));
        };
        Ok(SigningKey::new(alg, private))
    }

    fn new(alg: Algorithm, private: Private) -> Self {
        SigningKey {
            alg,
            kid: None,
            private,
        }
    }

    /// The same key with `kid` in its headers and its JWK.
    #[must_use]
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The public half, as issuers publish it (`None` for HMAC, which has only a secret).
    pub fn public(&self) -> Option<PublicJwk> {
        match &self.private {
            Private::Hmac(..) => None,
            Private::Rsa(pair, _) => {
                let public = pair.public_key();
                Some(PublicJwk::Rsa {
                    n: public.modulus().big_endian_without_leading_zero().to_vec(),
                    e: public.exponent().big_endian_without_leading_zero().to_vec(),
                })
            }
            Private::Ec(pair) => PublicJwk::ec_from_point(self.alg, pair.public_key().as_ref()),
            Private::Ed(pair) => Some(PublicJwk::Ed25519 {
                x: pair.public_key().as_ref().to_vec(),
            }),
        }
    }

    /// The JWS signature of `message` (ECDSA in the fixed `R‖S` form JWS uses).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        Ok(match &self.private {
            Private::Hmac(key, _) => hmac::sign(key, message).as_ref().to_vec(),
            Private::Rsa(pair, padding) => {
                let mut out = vec![0u8; pair.public_modulus_len()];
                pair.sign(*padding, &SystemRandom::new(), message, &mut out)
                    .map_err(|_| SignError::Crypto("RSA signing"))?;
                out
            }
            Private::Ec(pair) => pair
                .sign(&SystemRandom::new(), message)
                .map_err(|_| SignError::Crypto("ECDSA signing"))?
                .as_ref()
                .to_vec(),
            Private::Ed(pair) => pair.sign(message).as_ref().to_vec(),
        })
    }

    /// A compact JWS over `header_json` and `payload`, both encoded here and signed as given.
    pub fn token(&self, header_json: &str, payload: &str) -> Result<String, SignError> {
        let input = SigningInput::new(header_json.as_bytes(), payload.as_bytes());
        let signature = self.sign(input.as_bytes())?;
        Ok(input.into_compact(&signature))
    }

    /// A compact JWS of `payload` under [`SigningKey::header_json`].
    pub fn jwt(&self, typ: Option<&str>, payload: &str) -> Result<String, SignError> {
        self.token(&self.header_json(typ), payload)
    }

    /// The minimal protected header of this key: its `alg` and `kid`, and `typ` when given.
    pub fn header_json(&self, typ: Option<&str>) -> String {
        jws::header_json(self.alg, self.kid(), typ)
    }

    /// The JWK a verifier trusts this key with: the public members (for HMAC, `kty: oct` and
    /// the secret `k`), then `kid` when set, `alg` and `use: sig`.
    pub fn jwk(&self) -> String {
        let members = match (&self.private, self.public()) {
            (Private::Hmac(_, secret), _) => {
                format!("{{\"kty\":\"oct\",\"k\":\"{}\"}}", b64::encode(secret))
            }
            (_, Some(public)) => public.canonical(),
            // Not reached: every key made here has a public half or is HMAC.
            (_, None) => String::from("{}"),
        };
        let mut out = String::with_capacity(members.len() + 64);
        out.push_str(&members[..members.len() - 1]);
        if out.len() > 1 {
            out.push(',');
        }
        if let Some(kid) = &self.kid {
            out.push_str("\"kid\":");
            json::write_str(&mut out, kid);
            out.push(',');
        }
        out.push_str("\"alg\":\"");
        out.push_str(self.alg.name());
        out.push_str("\",\"use\":\"sig\"}");
        out
    }

    /// A JWK Set document holding only this key.
    pub fn jwks(&self) -> String {
        format!("{{\"keys\":[{}]}}", self.jwk())
    }

    /// The key this crate verifies this key's signatures with (refused as any JWK would be,
    /// e.g. an RSA key read from PKCS#8 that is under 2048 bits).
    pub fn verifying_key(&self) -> Result<VerifyingKey, KeyError> {
        match (&self.private, self.public()) {
            (Private::Hmac(_, secret), _) => VerifyingKey::hmac(self.alg, secret, self.kid()),
            (_, Some(public)) => VerifyingKey::from_public(self.alg, &public, self.kid()),
            (_, None) => Err(KeyError::Invalid("public key")),
        }
    }

    /// A key set of this key alone.
    pub fn key_set(&self) -> Result<KeySet, KeySetError> {
        let key = self.verifying_key().map_err(|error| KeySetError::Key {
            index: 0,
            kid: self.kid().map(Into::into),
            error,
        })?;
        KeySet::new(vec![key])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{jwt, Error, Limits, Validation};

    #[test]
    fn every_algorithm_signs_what_its_public_half_verifies() {
        for alg in Algorithm::ALL {
            let key = SigningKey::generate(alg)
                .unwrap()
                .with_kid(format!("k-{alg}"));
            let token = key.jwt(Some("at+jwt"), r#"{"exp":4000000000}"#).unwrap();
            // Through the key set built directly...
            let set = key.key_set().unwrap();
            let verified = jwt::verify(&token, &set, &Validation::default(), 0)
                .unwrap_or_else(|e| panic!("{alg}: {e}"));
            assert_eq!(verified.alg(), alg);
            // ... and through the published JWK Set document.
            let jwks = KeySet::from_jwks(key.jwks().as_bytes()).unwrap();
            assert!(jwks.skipped.is_empty(), "{alg}: {:?}", jwks.skipped);
            assert_eq!(jwks.keys.len(), 1);
            assert!(jwt::verify(&token, &jwks.keys, &Validation::default(), 0).is_ok());
        }
    }

    #[test]
    fn a_tampered_token_is_refused() {
        for alg in [Algorithm::HS256, Algorithm::ES256, Algorithm::EdDSA] {
            let key = SigningKey::generate(alg).unwrap();
            let set = key.key_set().unwrap();
            let token = key.jwt(None, r#"{"sub":"alice"}"#).unwrap();
            let forged = key.jwt(None, r#"{"sub":"admin"}"#).unwrap();
            let (input, signature) = token.rsplit_once('.').unwrap();
            let (forged_input, forged_signature) = forged.rsplit_once('.').unwrap();
            for bad in [
                format!("{forged_input}.{signature}"),
                format!("{input}.{forged_signature}"),
            ] {
                let result = jws::verify(&bad, &set, &Limits::default());
                assert_eq!(result.err(), Some(Error::BadSignature), "{alg}");
            }
            let other = SigningKey::generate(alg).unwrap().key_set().unwrap();
            let result = jws::verify(&token, &other, &Limits::default());
            assert_eq!(result.err(), Some(Error::BadSignature), "{alg}");
        }
    }

    #[test]
    fn stored_keys_read_back_to_the_same_key() {
        for alg in [
            Algorithm::HS256,
            Algorithm::RS256,
            Algorithm::ES384,
            Algorithm::EdDSA,
        ] {
            let (key, stored) = SigningKey::generate_stored(alg).unwrap();
            let again = SigningKey::from_stored(alg, &stored).unwrap();
            assert_eq!(again.jwk(), key.jwk(), "{alg}");
            let token = again.jwt(None, "{}").unwrap();
            let set = key.key_set().unwrap();
            assert!(jws::verify(&token, &set, &Limits::default()).is_ok());
        }
    }

    #[test]
    fn wrong_key_material_is_refused() {
        let (_, ed) = SigningKey::generate_stored(Algorithm::EdDSA).unwrap();
        assert!(matches!(
            SigningKey::from_pkcs8(Algorithm::ES256, &ed),
            Err(SignError::Rejected(_))
        ));
        assert!(matches!(
            SigningKey::from_pkcs8(Algorithm::HS256, &ed),
            Err(SignError::Rejected(_))
        ));
        assert_eq!(
            SigningKey::hmac(Algorithm::HS256, &[7; 31]).err(),
            Some(SignError::WeakSecret)
        );
        assert!(SigningKey::hmac(Algorithm::RS256, &[7; 32]).is_err());
    }

    #[test]
    fn the_jwk_carries_kid_alg_and_use() {
        let key = SigningKey::hmac(Algorithm::HS256, &[0; 32]).unwrap();
        assert_eq!(
            key.jwk(),
            r#"{"kty":"oct","k":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","alg":"HS256","use":"sig"}"#
        );
        let key = key.with_kid("a\"b");
        assert!(key.jwk().contains(r#""kid":"a\"b","alg":"HS256""#));
        assert_eq!(key.header_json(None), r#"{"alg":"HS256","kid":"a\"b"}"#);
    }
}
