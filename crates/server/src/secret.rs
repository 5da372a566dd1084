//! Callers' secrets as they are stored, checked in constant time. Two forms:
//!
//! - `pbkdf2-sha256$ITERATIONS$SALT$HASH`, for secrets an operator chose (the configuration
//!   file's `[[clients]]`, made by `tessera client hash-secret`): slow by design, since a chosen
//!   secret may be guessable.
//! - `sha256$HASH`, for secrets tessera generated (`tessera clients add`, `rotate-secret`): 256
//!   random bits cannot be guessed, so a slow hash would add cost and no safety (the way API
//!   keys are stored); checked in microseconds, on the request's own thread.

use std::num::NonZeroU32;

use aws_lc_rs::pbkdf2;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine as _;
use engine::revoked::sha256;

/// A stored secret: `pbkdf2-sha256$ITERATIONS$SALT$HASH` or `sha256$HASH`, salt and hash in
/// unpadded base64url.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretHash(Scheme);

#[derive(Clone, PartialEq, Eq)]
enum Scheme {
    Pbkdf2 {
        iterations: NonZeroU32,
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
    /// Of a generated secret.
    Sha256([u8; 32]),
}

impl std::fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Scheme::Pbkdf2 { iterations, .. } => {
                write!(f, "SecretHash(pbkdf2-sha256, {iterations} iterations)")
            }
            Scheme::Sha256(_) => f.write_str("SecretHash(sha256, generated secret)"),
        }
    }
}

/// Why a stored secret hash was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretHashError(&'static str);

impl std::fmt::Display for SecretHashError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (expected pbkdf2-sha256$ITERATIONS$SALT$HASH, from `tessera client hash-secret`, \
             or sha256$HASH of a generated secret)",
            self.0
        )
    }
}

impl std::error::Error for SecretHashError {}

const PREFIX: &str = "pbkdf2-sha256";
const GENERATED_PREFIX: &str = "sha256";
/// How generated secrets start: tessera client secret.
pub const GENERATED_SECRET_PREFIX: &str = "tcs_";
/// OWASP's figure for PBKDF2-HMAC-SHA256.
pub const DEFAULT_ITERATIONS: u32 = 600_000;
pub(crate) const MIN_ITERATIONS: u32 = 1_000;

impl SecretHash {
    pub fn parse(text: &str) -> Result<Self, SecretHashError> {
        if let Some(hash) = text.strip_prefix("sha256$") {
            let hash = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(hash)
                .map_err(|_| SecretHashError("bad hash encoding"))?;
            let hash: [u8; 32] = hash
                .try_into()
                .map_err(|_| SecretHashError("hash not 32 bytes"))?;
            return Ok(SecretHash(Scheme::Sha256(hash)));
        }
        let mut parts = text.split('$');
        let (Some(PREFIX), Some(iterations), Some(salt), Some(hash), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(SecretHashError("not a PBKDF2-SHA256 hash"));
        };
        let iterations: u32 = iterations
            .parse()
            .map_err(|_| SecretHashError("bad iteration count"))?;
        if iterations < MIN_ITERATIONS {
            return Err(SecretHashError("fewer than 1000 iterations"));
        }
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let salt = b64
            .decode(salt)
            .map_err(|_| SecretHashError("bad salt encoding"))?;
        let hash = b64
            .decode(hash)
            .map_err(|_| SecretHashError("bad hash encoding"))?;
        if salt.len() < 16 || hash.len() != 32 {
            return Err(SecretHashError("salt under 16 bytes or hash not 32 bytes"));
        }
        Ok(SecretHash(Scheme::Pbkdf2 {
            iterations: NonZeroU32::new(iterations).ok_or(SecretHashError("zero iterations"))?,
            salt,
            hash,
        }))
    }

    /// A fresh secret (`tcs_` and 256 random bits in base64url) and its hash. The secret is
    /// shown once and never stored.
    pub fn generate() -> Result<(String, Self), SecretHashError> {
        let mut random = [0u8; 32];
        SystemRandom::new()
            .fill(&mut random)
            .map_err(|_| SecretHashError("the system random generator failed"))?;
        let secret = format!(
            "{GENERATED_SECRET_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random)
        );
        let hash = SecretHash(Scheme::Sha256(sha256(secret.as_bytes())));
        Ok((secret, hash))
    }

    /// Whether checking costs microseconds (a generated secret's hash) rather than a
    /// key-stretching run.
    pub fn is_fast(&self) -> bool {
        matches!(self.0, Scheme::Sha256(_))
    }

    /// Hashes `secret` with a fresh random salt.
    pub fn new(secret: &[u8], iterations: u32) -> Result<Self, SecretHashError> {
        let iterations = NonZeroU32::new(iterations.max(MIN_ITERATIONS))
            .ok_or(SecretHashError("zero iterations"))?;
        let mut salt = vec![0u8; 16];
        SystemRandom::new()
            .fill(&mut salt)
            .map_err(|_| SecretHashError("the system random generator failed"))?;
        let mut hash = vec![0u8; 32];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            iterations,
            &salt,
            secret,
            &mut hash,
        );
        Ok(SecretHash(Scheme::Pbkdf2 {
            iterations,
            salt,
            hash,
        }))
    }

    /// A hash no secret matches (a random salt and hash), costing `iterations` to check.
    pub(crate) fn decoy(iterations: u32) -> Self {
        let mut salt = vec![0u8; 16];
        let mut hash = vec![0u8; 32];
        // Without randomness the decoy is all zeros: it still matches nothing in practice and
        // costs the same.
        let random = SystemRandom::new();
        let _ = random.fill(&mut salt);
        let _ = random.fill(&mut hash);
        SecretHash(Scheme::Pbkdf2 {
            iterations: NonZeroU32::new(iterations.max(MIN_ITERATIONS)).unwrap_or(NonZeroU32::MIN),
            salt,
            hash,
        })
    }

    /// What one check costs: PBKDF2 iterations (0 for a generated secret's hash).
    pub fn iterations(&self) -> u32 {
        match &self.0 {
            Scheme::Pbkdf2 { iterations, .. } => iterations.get(),
            Scheme::Sha256(_) => 0,
        }
    }

    /// Whether `secret` is the one hashed (constant time in the comparison).
    pub fn verify(&self, secret: &[u8]) -> bool {
        match &self.0 {
            Scheme::Pbkdf2 {
                iterations,
                salt,
                hash,
            } => {
                pbkdf2::verify(pbkdf2::PBKDF2_HMAC_SHA256, *iterations, salt, secret, hash).is_ok()
            }
            Scheme::Sha256(hash) => {
                aws_lc_rs::constant_time::verify_slices_are_equal(&sha256(secret), hash).is_ok()
            }
        }
    }
}

impl std::fmt::Display for SecretHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        match &self.0 {
            Scheme::Pbkdf2 {
                iterations,
                salt,
                hash,
            } => write!(
                f,
                "{PREFIX}${iterations}${}${}",
                b64.encode(salt),
                b64.encode(hash)
            ),
            Scheme::Sha256(hash) => write!(f, "{GENERATED_PREFIX}${}", b64.encode(hash)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_round_trip_and_verify() {
        let hash = SecretHash::new(b"s3cret", 1000).unwrap();
        let text = hash.to_string();
        assert!(text.starts_with("pbkdf2-sha256$1000$"), "{text}");
        let parsed = SecretHash::parse(&text).unwrap();
        assert!(parsed.verify(b"s3cret"));
        assert!(!parsed.verify(b"s3cret "));
        assert!(!format!("{parsed:?}").contains(&text[20..]));
        for bad in [
            "",
            "s3cret",
            "pbkdf2-sha256$10$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "pbkdf2-sha1$1000$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "pbkdf2-sha256$1000$AAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "pbkdf2-sha256$1000$AAAAAAAAAAAAAAAAAAAAAA$AAAA",
            "pbkdf2-sha256$1000$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA$",
        ] {
            assert!(SecretHash::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn generated_secrets_are_hashed_fast() {
        let (secret, hash) = SecretHash::generate().unwrap();
        assert!(secret.starts_with("tcs_") && secret.len() == 47, "{secret}");
        assert!(hash.is_fast());
        let parsed = SecretHash::parse(&hash.to_string()).unwrap();
        assert_eq!(parsed, hash);
        assert!(parsed.verify(secret.as_bytes()));
        assert!(!parsed.verify(&secret.as_bytes()[..46]));
        assert!(!format!("{parsed:?}").contains(&hash.to_string()[7..]));
        assert_ne!(SecretHash::generate().unwrap().0, secret);
        for bad in ["sha256$", "sha256$AAAA", "sha256$!!"] {
            assert!(SecretHash::parse(bad).is_err(), "{bad}");
        }
    }
}
