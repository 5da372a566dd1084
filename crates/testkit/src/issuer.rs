//! A token issuer for tests: one of jose's signing keys with its `kid`, the JWK Set a verifier
//! is given, and tokens signed exactly as a test asks.

use std::fmt::Display;

use jose::{b64, Algorithm, SigningKey};

/// A signing key with a `kid` and its public JWK Set. Every method panics when signing fails:
/// setup that fails must fail the test.
#[derive(Debug)]
pub struct Issuer {
    key: SigningKey,
    jwks: String,
}

impl Issuer {
    /// A fresh random key for `alg` named `kid`.
    pub fn new(alg: Algorithm, kid: &str) -> Self {
        let key = SigningKey::generate(alg)
            .unwrap_or_else(|e| panic!("{alg} key: {e}"))
            .with_kid(kid);
        Issuer::from_key(key)
    }

    /// An issuer around an existing key (its `kid`, if any, is used as it is).
    pub fn from_key(key: SigningKey) -> Self {
        let jwks = key.jwks();
        Issuer { key, jwks }
    }

    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    pub fn kid(&self) -> Option<&str> {
        self.key.kid()
    }

    /// The one-key JWK Set document a verifier trusts this issuer with.
    pub fn jwks(&self) -> &str {
        &self.jwks
    }

    /// An access token (`typ: at+jwt`) over `claims` (JSON text or a value).
    pub fn sign(&self, claims: impl Display) -> String {
        self.sign_typed("at+jwt", claims)
    }

    /// A token with this `typ` over `claims`.
    pub fn sign_typed(&self, typ: &str, claims: impl Display) -> String {
        self.sign_raw(&self.key.header_json(Some(typ)), claims)
    }

    /// A token over exactly this header and payload text.
    pub fn sign_raw(&self, header: &str, payload: impl Display) -> String {
        self.key
            .token(header, &payload.to_string())
            .unwrap_or_else(|e| panic!("signing: {e}"))
    }

    /// A token over already-encoded segments, signed exactly as given (whatever they contain).
    pub fn sign_segments(&self, header: &str, payload: &str) -> String {
        let input = format!("{header}.{payload}");
        let signature = self
            .key
            .sign(input.as_bytes())
            .unwrap_or_else(|e| panic!("signing: {e}"));
        format!("{input}.{}", b64::encode(&signature))
    }
}

/// `token` with its payload replaced by `claims` and its header and signature kept.
pub fn tampered(token: &str, claims: impl Display) -> String {
    let mut parts = token.split('.');
    let header = parts.next().expect("a header segment");
    let signature = parts.nth(1).expect("a signature segment");
    format!(
        "{header}.{}.{signature}",
        b64::encode(claims.to_string().as_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Claims;

    #[test]
    fn an_issuer_signs_what_its_jwks_verifies() {
        let issuer = Issuer::new(Algorithm::ES256, "k1");
        let keys = jose::KeySet::from_jwks(issuer.jwks().as_bytes())
            .unwrap()
            .keys;
        let token = issuer.sign(Claims::valid_at(1000).with("sub", "alice"));
        let jwt = jose::jwt::verify(&token, &keys, &jose::Validation::default(), 1000).unwrap();
        assert_eq!(jwt.str_claim("sub").as_deref(), Some("alice"));
        let forged = tampered(&token, Claims::valid_at(1000).with("sub", "admin"));
        assert!(jose::jwt::verify(&forged, &keys, &jose::Validation::default(), 1000).is_err());
    }
}
