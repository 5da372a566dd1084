//! Shared fixtures for the criterion benchmarks: freshly generated key pairs, realistic access
//! tokens signed with them, the matching public JWK Sets, and the three verifiers compared
//! side by side (tessera, raw aws-lc-rs, the `jsonwebtoken` crate).
//!
//! Everything here runs outside the timed loops; setup panics on any failure.

#![forbid(unsafe_code)]

pub mod hsm;
pub mod ratios;
pub mod units;

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{self as sig, ParsedPublicKey, RsaPublicKeyComponents};
use aws_lc_rs::{error::Unspecified, hmac};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jose::{Algorithm, PublicJwk, SigningKey};
use serde_json::json;

/// The algorithms the benchmarks compare, in the order they are reported.
pub const ALGORITHMS: [Algorithm; 5] = [
    Algorithm::HS256,
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::EdDSA,
];

pub const ISSUER: &str = "https://issuer.example";
pub const AUDIENCE: &str = "api://orders";
pub const SUBJECT: &str = "user-1234567890";
/// Lifetime of the benchmark tokens, in seconds.
pub const LIFETIME: i64 = 3600;

/// The current Unix time in seconds (the `jsonwebtoken` crate reads the system clock, so the
/// tokens must be valid now).
pub fn now() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("system clock before 1970");
    i64::try_from(since.as_secs()).expect("time fits i64")
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The claims of a realistic access token issued at `now`, as JSON text.
pub fn access_token_claims(now: i64) -> String {
    json!({
        "iss": ISSUER,
        "sub": SUBJECT,
        "aud": AUDIENCE,
        "exp": now + LIFETIME,
        "iat": now,
        "nbf": now,
        "jti": "8f14e45f-ceea-467f-a9d3-1b2c3d4e5f60",
        "scope": "orders:read orders:write",
        "client_id": "web-frontend",
    })
    .to_string()
}

/// The claims of [`access_token_claims`], as the `jsonwebtoken` crate deserializes them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: u64,
    pub iat: u64,
    pub nbf: u64,
    pub jti: String,
    pub scope: String,
    pub client_id: String,
}

/// The public (for HMAC: shared) key material, as the JWK members carry it, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicKey {
    /// `k`: the shared secret.
    Oct { k: Vec<u8> },
    /// `n`, `e`: big-endian, no leading zero octets.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// `x`, `y`: P-256 coordinates, 32 bytes each.
    Ec { x: Vec<u8>, y: Vec<u8> },
    /// `x`: the 32-byte Ed25519 public key.
    Okp { x: Vec<u8> },
}

/// A freshly generated key pair for one algorithm that signs tokens (jose's [`SigningKey`]).
#[derive(Debug)]
pub struct Signer {
    key: SigningKey,
    public: PublicKey,
}

impl Signer {
    /// Generates a key for `alg` (HS256: a random 32-byte secret; RS256/PS256: RSA-2048;
    /// ES256: P-256; EdDSA: Ed25519), with `kid` `bench-ALG`.
    pub fn generate(alg: Algorithm) -> Self {
        assert!(ALGORITHMS.contains(&alg), "no benchmark fixture for {alg}");
        let (key, stored) = SigningKey::generate_stored(alg).expect("key generation");
        let public = match key.public() {
            None => PublicKey::Oct { k: stored },
            Some(PublicJwk::Rsa { n, e }) => PublicKey::Rsa { n, e },
            Some(PublicJwk::Ec { x, y, .. }) => PublicKey::Ec { x, y },
            Some(PublicJwk::Ed25519 { x }) => PublicKey::Okp { x },
            Some(other) => panic!("no benchmark fixture for {other:?}"),
        };
        Signer {
            key: key.with_kid(format!("bench-{}", alg.name())),
            public,
        }
    }

    pub fn alg(&self) -> Algorithm {
        self.key.alg()
    }

    pub fn kid(&self) -> &str {
        // Set by `generate`.
        self.key.kid().unwrap_or_default()
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The JWS signature of `message` (ECDSA in the fixed R‖S form JWS uses).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.key.sign(message).expect("signing")
    }

    /// The protected header `{"alg":ALG,"kid":"bench-ALG","typ":"JWT"}`.
    pub fn header_json(&self) -> String {
        self.key.header_json(Some("JWT"))
    }

    /// A compact JWS of `claims_json` under [`Signer::header_json`].
    pub fn token(&self, claims_json: &str) -> String {
        self.key
            .token(&self.header_json(), claims_json)
            .expect("signing")
    }

    /// The public key as one JWK object, with `kid` and `alg`.
    pub fn jwk(&self) -> serde_json::Value {
        serde_json::from_str(&self.key.jwk()).expect("the JWK is JSON")
    }

    /// A JWK Set document holding only this key.
    pub fn jwks_json(&self) -> String {
        self.key.jwks()
    }

    /// tessera's key set, parsed from [`Signer::jwks_json`]; panics unless exactly this key
    /// was taken and nothing was skipped.
    pub fn key_set(&self) -> jose::KeySet {
        let jwks = jose::KeySet::from_jwks(self.jwks_json().as_bytes()).expect("JWK Set parses");
        assert!(jwks.skipped.is_empty(), "skipped keys: {:?}", jwks.skipped);
        assert_eq!(jwks.keys.len(), 1, "one key in the set");
        jwks.keys
    }

    /// The raw aws-lc-rs verifier for this key: the limit to compare against.
    pub fn raw_verifier(&self) -> RawVerifier {
        let parsed = |alg: &'static dyn sig::VerificationAlgorithm, bytes: &[u8]| {
            RawVerifier::Public(ParsedPublicKey::new(alg, bytes).expect("public key parses"))
        };
        match (&self.public, self.alg()) {
            (PublicKey::Oct { k }, _) => RawVerifier::Hmac(hmac::Key::new(hmac::HMAC_SHA256, k)),
            (PublicKey::Rsa { n, e }, alg) => {
                let params: &'static sig::RsaParameters = if alg == Algorithm::RS256 {
                    &sig::RSA_PKCS1_2048_8192_SHA256
                } else {
                    &sig::RSA_PSS_2048_8192_SHA256
                };
                let key = RsaPublicKeyComponents { n, e }
                    .to_parsed_public_key(params)
                    .expect("RSA public key parses");
                RawVerifier::Public(key)
            }
            (PublicKey::Ec { x, y }, _) => {
                let point: Vec<u8> = [&[0x04][..], x, y].concat();
                parsed(&sig::ECDSA_P256_SHA256_FIXED, &point)
            }
            (PublicKey::Okp { x }, _) => parsed(&sig::ED25519, x),
        }
    }

    /// The `jsonwebtoken` crate's key, built from the JWK member strings.
    pub fn jsonwebtoken_key(&self) -> jsonwebtoken::DecodingKey {
        use jsonwebtoken::DecodingKey;
        let key = match &self.public {
            PublicKey::Oct { k } => Ok(DecodingKey::from_secret(k)),
            PublicKey::Rsa { n, e } => DecodingKey::from_rsa_components(&b64(n), &b64(e)),
            PublicKey::Ec { x, y } => DecodingKey::from_ec_components(&b64(x), &b64(y)),
            PublicKey::Okp { x } => DecodingKey::from_ed_components(&b64(x)),
        };
        key.expect("jsonwebtoken key")
    }

    /// The `jsonwebtoken` crate's algorithm for this key.
    pub fn jsonwebtoken_alg(&self) -> jsonwebtoken::Algorithm {
        use jsonwebtoken::Algorithm as J;
        match self.alg() {
            Algorithm::HS256 => J::HS256,
            Algorithm::RS256 => J::RS256,
            Algorithm::PS256 => J::PS256,
            Algorithm::ES256 => J::ES256,
            Algorithm::EdDSA => J::EdDSA,
            other => panic!("no jsonwebtoken mapping for {other}"),
        }
    }
}

/// tessera's policy for the benchmark tokens: issuer and audience pinned, `exp` required,
/// the default 60 s leeway.
pub fn tessera_validation() -> jose::Validation {
    jose::Validation::default()
        .with_issuer(ISSUER)
        .with_audience(AUDIENCE)
}

/// The benchmark tokens' issuer as the engine trusts it: tessera's policy for them
/// ([`tessera_validation`]) with `keys`.
pub fn issuers(keys: jose::KeySet) -> std::sync::Arc<engine::Issuers> {
    let spec = engine::IssuerSpec {
        issuer: ISSUER.into(),
        audiences: vec![AUDIENCE.into()],
        ..engine::IssuerSpec::default()
    };
    let issuers = engine::Issuers::new(vec![(spec, engine::KeySource::Keys(keys))])
        .expect("the benchmark issuer");
    std::sync::Arc::new(issuers)
}

/// The same policy for the `jsonwebtoken` crate. `nbf` is checked too, as tessera checks it
/// whenever it is present.
pub fn jsonwebtoken_validation(alg: jsonwebtoken::Algorithm) -> jsonwebtoken::Validation {
    let mut v = jsonwebtoken::Validation::new(alg);
    v.set_issuer(&[ISSUER]);
    v.set_audience(&[AUDIENCE]);
    v.leeway = 60;
    v.validate_exp = true;
    v.validate_nbf = true;
    v
}

/// Signature verification alone, with the key parsed once: what aws-lc-rs does at best.
// The HMAC key is large, but it stays inline: the limit should not pay for an indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum RawVerifier {
    Hmac(hmac::Key),
    Public(ParsedPublicKey),
}

impl RawVerifier {
    #[inline]
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), Unspecified> {
        match self {
            RawVerifier::Hmac(key) => hmac::verify(key, message, signature),
            RawVerifier::Public(key) => key.verify_sig(message, signature),
        }
    }
}

/// One algorithm's benchmark material: the signer, an access token issued now, and the three
/// verifiers' ready-made inputs.
#[derive(Debug)]
pub struct Fixture {
    pub signer: Signer,
    /// The time the token was issued at, and the `now` passed to tessera.
    pub now: i64,
    pub claims_json: String,
    pub token: String,
}

impl Fixture {
    pub fn new(alg: Algorithm) -> Self {
        let signer = Signer::generate(alg);
        let now = now();
        let claims_json = access_token_claims(now);
        let token = signer.token(&claims_json);
        Fixture {
            signer,
            now,
            claims_json,
            token,
        }
    }

    /// `BASE64URL(header) '.' BASE64URL(claims)`.
    pub fn signing_input(&self) -> &[u8] {
        signing_input(&self.token)
    }

    /// The decoded signature.
    pub fn signature(&self) -> Vec<u8> {
        decoded_signature(&self.token)
    }

    /// The token with one signature character changed (the first, so that whole bits of the
    /// signature change and the encoding stays canonical base64url).
    pub fn tampered_token(&self) -> String {
        tamper_signature(&self.token)
    }
}

fn split_signature(token: &str) -> (&str, &str) {
    token.rsplit_once('.').expect("compact JWS has dots")
}

/// The signing input of a compact JWS.
pub fn signing_input(token: &str) -> &[u8] {
    split_signature(token).0.as_bytes()
}

/// The decoded signature of a compact JWS.
pub fn decoded_signature(token: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(split_signature(token).1)
        .expect("signature is base64url")
}

/// `token` with the first signature character replaced by another base64url character.
pub fn tamper_signature(token: &str) -> String {
    let (input, signature) = split_signature(token);
    let mut chars = signature.chars();
    let first = chars.next().expect("non-empty signature");
    let replacement = if first == 'A' { 'B' } else { 'A' };
    let tampered = format!("{input}.{replacement}{}", chars.as_str());
    assert_ne!(tampered, token);
    tampered
}

/// One algorithm's three contestants, ready to verify the same token, each checked to accept
/// it and to refuse a tampered copy so that an error path is never what gets timed.
#[derive(Debug)]
pub struct Contest {
    pub fixture: Fixture,
    keys: jose::KeySet,
    validation: jose::Validation,
    raw: RawVerifier,
    signature: Vec<u8>,
    jwt_key: jsonwebtoken::DecodingKey,
    jwt_validation: jsonwebtoken::Validation,
}

impl Contest {
    /// Builds the contestants for `alg`; panics unless all three accept the token and reject
    /// it with one signature character changed.
    pub fn new(alg: Algorithm) -> Self {
        let fixture = Fixture::new(alg);
        let contest = Contest {
            keys: fixture.signer.key_set(),
            validation: tessera_validation(),
            raw: fixture.signer.raw_verifier(),
            signature: fixture.signature(),
            jwt_key: fixture.signer.jsonwebtoken_key(),
            jwt_validation: jsonwebtoken_validation(fixture.signer.jsonwebtoken_alg()),
            fixture,
        };
        contest.check();
        contest
    }

    /// Full verification by tessera: split, header, key, signature, claims.
    #[inline]
    pub fn tessera(&self, token: &str) -> Result<jose::Jwt, jose::Error> {
        jose::jwt::verify(
            token.as_bytes(),
            &self.keys,
            &self.validation,
            self.fixture.now,
        )
    }

    /// The limit: aws-lc-rs signature verification of the token's signing input, key parsed
    /// and signature decoded beforehand.
    #[inline]
    pub fn raw(&self, signature: &[u8]) -> Result<(), Unspecified> {
        self.raw.verify(self.fixture.signing_input(), signature)
    }

    /// The `jsonwebtoken` crate with the same checks.
    #[inline]
    pub fn jsonwebtoken(
        &self,
        token: &str,
    ) -> jsonwebtoken::errors::Result<jsonwebtoken::TokenData<Claims>> {
        jsonwebtoken::decode::<Claims>(token, &self.jwt_key, &self.jwt_validation)
    }

    /// The decoded signature the `raw` contestant checks.
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    fn check(&self) {
        let alg = self.fixture.signer.alg();
        let token = &self.fixture.token;
        let tampered = self.fixture.tampered_token();

        let jwt = self
            .tessera(token)
            .unwrap_or_else(|e| panic!("{alg}: tessera rejects the token: {e:?}"));
        assert_eq!(jwt.alg(), alg);
        assert_eq!(jwt.str_claim("sub").as_deref(), Some(SUBJECT), "{alg}");
        match self.tessera(&tampered) {
            Err(jose::Error::BadSignature) => {}
            other => panic!("{alg}: tessera on a tampered token: {other:?}"),
        }

        self.raw(&self.signature)
            .unwrap_or_else(|_| panic!("{alg}: raw rejects the token"));
        let bad_signature = decoded_signature(&tampered);
        assert_ne!(bad_signature, self.signature);
        assert!(
            self.raw(&bad_signature).is_err(),
            "{alg}: raw accepts a tampered signature"
        );

        let data = self
            .jsonwebtoken(token)
            .unwrap_or_else(|e| panic!("{alg}: jsonwebtoken rejects the token: {e:?}"));
        assert_eq!(data.claims.sub, SUBJECT, "{alg}: jsonwebtoken sub");
        match self.jsonwebtoken(&tampered) {
            Err(e) if *e.kind() == jsonwebtoken::errors::ErrorKind::InvalidSignature => {}
            other => panic!("{alg}: jsonwebtoken on a tampered token: {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every contest's setup checks that all three verifiers accept its token and refuse a
    /// tampered copy.
    #[test]
    fn every_algorithm_sets_up_a_fair_contest() {
        for alg in ALGORITHMS {
            let contest = Contest::new(alg);
            assert_eq!(
                contest.fixture.signer.kid(),
                format!("bench-{}", alg.name())
            );
        }
    }
}
