//! Callers' secrets as the configuration stores them: PBKDF2-SHA256 hashes
//! (`pbkdf2-sha256$ITERATIONS$SALT$HASH`), made by `tessera client hash-secret` and checked
//! in constant time.

use std::num::NonZeroU32;

use aws_lc_rs::pbkdf2;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine as _;

/// `pbkdf2-sha256$ITERATIONS$SALT$HASH`, salt and hash in unpadded base64url.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretHash {
    iterations: NonZeroU32,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

impl std::fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SecretHash(pbkdf2-sha256, {} iterations)",
            self.iterations
        )
    }
}

/// Why a stored secret hash was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretHashError(&'static str);

impl std::fmt::Display for SecretHashError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (expected pbkdf2-sha256$ITERATIONS$SALT$HASH, from `tessera client hash-secret`)",
            self.0
        )
    }
}

impl std::error::Error for SecretHashError {}

const PREFIX: &str = "pbkdf2-sha256";
/// OWASP's figure for PBKDF2-HMAC-SHA256.
pub const DEFAULT_ITERATIONS: u32 = 600_000;
pub(crate) const MIN_ITERATIONS: u32 = 1_000;

impl SecretHash {
    pub fn parse(text: &str) -> Result<Self, SecretHashError> {
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
        Ok(SecretHash {
            iterations: NonZeroU32::new(iterations).ok_or(SecretHashError("zero iterations"))?,
            salt,
            hash,
        })
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
        Ok(SecretHash {
            iterations,
            salt,
            hash,
        })
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
        SecretHash {
            iterations: NonZeroU32::new(iterations.max(MIN_ITERATIONS)).unwrap_or(NonZeroU32::MIN),
            salt,
            hash,
        }
    }

    /// What one check costs: PBKDF2 iterations.
    pub fn iterations(&self) -> u32 {
        self.iterations.get()
    }

    /// Whether `secret` is the one hashed (constant time in the comparison).
    pub fn verify(&self, secret: &[u8]) -> bool {
        pbkdf2::verify(
            pbkdf2::PBKDF2_HMAC_SHA256,
            self.iterations,
            &self.salt,
            secret,
            &self.hash,
        )
        .is_ok()
    }
}

impl std::fmt::Display for SecretHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        write!(
            f,
            "{PREFIX}${}${}${}",
            self.iterations,
            b64.encode(&self.salt),
            b64.encode(&self.hash)
        )
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
}
