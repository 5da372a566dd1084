//! Keys generated for one calibration (never stored) and tokens signed with them, shaped like
//! the load harness's: `{"alg","kid","typ":"at+jwt"}` over `iss`, `sub`, `aud`, `scope`, `iat`,
//! `exp`, `jti`.

use jose::{Algorithm, SigningKey};

pub const ISSUER: &str = "https://calibrate.tessera.invalid";
pub const AUDIENCE: &str = "api://calibrate";

/// A key pair for one algorithm (jose's [`SigningKey`], `kid` `calibrate-ALG`).
#[derive(Debug)]
pub struct Signer {
    pub alg: Algorithm,
    key: SigningKey,
}

impl Signer {
    /// Generates a key: HS256 a random 32-byte secret, RS256/PS256 RSA-2048, ES256 P-256, ES384
    /// P-384, EdDSA Ed25519.
    pub fn generate(alg: Algorithm) -> Result<Signer, String> {
        if !matches!(
            alg,
            Algorithm::HS256
                | Algorithm::RS256
                | Algorithm::PS256
                | Algorithm::ES256
                | Algorithm::ES384
                | Algorithm::EdDSA
        ) {
            return Err(format!("no calibration key for {alg}"));
        }
        let key = SigningKey::generate(alg)
            .map_err(|e| e.to_string())?
            .with_kid(format!("calibrate-{}", alg.name()));
        Ok(Signer { alg, key })
    }

    /// Valid tokens numbered `numbers` (distinct numbers, distinct tokens), issued at `now` for
    /// an hour.
    pub fn tokens(&self, numbers: std::ops::Range<usize>, now: i64) -> Result<Vec<String>, String> {
        let header = self.key.header_json(Some("at+jwt"));
        numbers
            .map(|i| {
                let claims = format!(
                    "{{\"iss\":\"{ISSUER}\",\"sub\":\"calibrate-{i}\",\"aud\":\"{AUDIENCE}\",\
                     \"scope\":\"calibrate\",\"iat\":{now},\"exp\":{},\"jti\":\"{}-{i}\"}}",
                    now + 3600,
                    self.alg.name()
                );
                self.key.token(&header, &claims).map_err(|e| e.to_string())
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
