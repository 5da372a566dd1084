//! Keys generated for one calibration (never stored) and tokens signed with them, shaped like
//! the load harness's: `{"alg","kid","typ":"at+jwt"}` over `iss`, `sub`, `aud`, `scope`, `iat`,
//! `exp`, `jti`.

use jose::{Algorithm, SignError, SigningKey};

pub const ISSUER: &str = "https://calibrate.tessera.invalid";
pub const AUDIENCE: &str = "api://calibrate";

/// Why calibration keys or tokens could not be made.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FixtureError {
    /// The signing key refused to be made or to sign: this machine's random source or a library
    /// fault.
    Sign(SignError),
    /// No calibration key is made for this algorithm: a bug in the caller.
    Unsupported(Algorithm),
}

impl std::fmt::Display for FixtureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FixtureError::Sign(e) => write!(f, "{e}"),
            FixtureError::Unsupported(alg) => write!(f, "no calibration key for {alg}"),
        }
    }
}

impl std::error::Error for FixtureError {}

/// A key pair for one algorithm (jose's [`SigningKey`], `kid` `calibrate-ALG`).
#[derive(Debug)]
pub struct Signer {
    pub alg: Algorithm,
    key: SigningKey,
}

impl Signer {
    /// Generates a key: HS256 a random 32-byte secret, RS256/PS256 RSA-2048, ES256 P-256, ES384
    /// P-384, EdDSA Ed25519.
    pub fn generate(alg: Algorithm) -> Result<Signer, FixtureError> {
        if !matches!(
            alg,
            Algorithm::HS256
                | Algorithm::RS256
                | Algorithm::PS256
                | Algorithm::ES256
                | Algorithm::ES384
                | Algorithm::EdDSA
        ) {
            return Err(FixtureError::Unsupported(alg));
        }
        let key = SigningKey::generate(alg)
            .map_err(FixtureError::Sign)?
            .with_kid(format!("calibrate-{}", alg.name()));
        Ok(Signer { alg, key })
    }

    /// Valid tokens numbered `numbers` (distinct numbers, distinct tokens), issued at `now` for
    /// an hour.
    pub fn tokens(
        &self,
        numbers: std::ops::Range<usize>,
        now: i64,
    ) -> Result<Vec<String>, FixtureError> {
        let header = self.key.header_json(Some("at+jwt"));
        numbers
            .map(|i| {
                let claims = format!(
                    "{{\"iss\":\"{ISSUER}\",\"sub\":\"calibrate-{i}\",\"aud\":\"{AUDIENCE}\",\
                     \"scope\":\"calibrate\",\"iat\":{now},\"exp\":{},\"jti\":\"{}-{i}\"}}",
                    now + 3600,
                    self.alg.name()
                );
                self.key.token(&header, &claims).map_err(FixtureError::Sign)
            })
            .collect()
    }
}

/// The JWK Set of these signers' public keys (the HMAC secret included, as an `oct` key).
pub fn jwks(signers: &[Signer]) -> String {
    let keys: Vec<String> = signers.iter().map(|s| s.key.jwk()).collect();
    format!("{{\"keys\":[{}]}}", keys.join(","))
}

/// The claims policy the daemon applies to a quick-mode issuer.
pub fn validation() -> jose::Validation {
    jose::Validation::default()
        .with_issuer(ISSUER)
        .with_audience(AUDIENCE)
}
