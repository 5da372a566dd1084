//! By-reference access tokens: `tat_` (tessera access token), 256 random bits in base64url,
//! and a checksum, so that a typo, a truncated copy or a string that was never ours is told
//! apart without a lookup, and a leaked token is recognisable. Only the SHA-256 of the whole
//! text is stored.

use aws_lc_rs::digest::{digest, SHA256};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};

pub const OPAQUE_PREFIX: &str = "tat_";
/// 32 random bytes in unpadded base64url.
const RANDOM_CHARS: usize = 43;
/// 6 bytes of SHA-256 over the prefix and the random part, in base64url.
const CHECKSUM_CHARS: usize = 8;
const LEN: usize = OPAQUE_PREFIX.len() + RANDOM_CHARS + CHECKSUM_CHARS;

/// An opaque token's text. Its `Debug` shows none of it.
#[derive(Clone, PartialEq, Eq)]
pub struct OpaqueToken(String);

impl std::fmt::Debug for OpaqueToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OpaqueToken(..)")
    }
}

fn checksum(body: &str) -> String {
    jose::b64::encode(&digest(&SHA256, body.as_bytes()).as_ref()[..6])
}

impl OpaqueToken {
    /// A fresh token.
    pub fn generate() -> OpaqueToken {
        let mut random = [0u8; 32];
        // aws-lc-rs's system random source fails only when the OS has none: nothing can run then.
        if SystemRandom::new().fill(&mut random).is_err() {
            panic!("the system random source failed");
        }
        let mut text = String::with_capacity(LEN);
        text.push_str(OPAQUE_PREFIX);
        jose::b64::encode_append(&random, &mut text);
        let sum = checksum(&text);
        text.push_str(&sum);
        OpaqueToken(text)
    }

    /// `text` if it has the form of a token tessera made (prefix, length, alphabet, checksum):
    /// nothing else is worth a lookup.
    pub fn parse(text: &[u8]) -> Option<OpaqueToken> {
        if text.len() != LEN || !text.starts_with(OPAQUE_PREFIX.as_bytes()) {
            return None;
        }
        let text = std::str::from_utf8(text).ok()?;
        let (body, sum) = text.split_at(LEN - CHECKSUM_CHARS);
        if !body[OPAQUE_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return None;
        }
        (checksum(body) == sum).then(|| OpaqueToken(text.to_owned()))
    }

    /// Whether `text` starts like one of ours (a JWT never does: its first segment is base64url
    /// of `{`, which starts `ey`).
    pub fn looks_like(text: &[u8]) -> bool {
        text.starts_with(OPAQUE_PREFIX.as_bytes())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What the store keeps.
    pub fn hash(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(digest(&SHA256, self.0.as_bytes()).as_ref());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_carry_a_checksum() {
        let t = OpaqueToken::generate();
        assert_eq!(t.as_str().len(), LEN);
        assert!(t.as_str().starts_with("tat_"));
        assert_eq!(OpaqueToken::parse(t.as_str().as_bytes()), Some(t.clone()));
        assert_ne!(OpaqueToken::generate(), t);
        // One character off anywhere, one more, one less: not ours.
        let text = t.as_str();
        for i in OPAQUE_PREFIX.len()..LEN {
            let mut b = text.as_bytes().to_vec();
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            assert_eq!(OpaqueToken::parse(&b), None, "position {i}");
        }
        assert_eq!(OpaqueToken::parse(format!("{text}x").as_bytes()), None);
        assert_eq!(OpaqueToken::parse(&text.as_bytes()[..LEN - 1]), None);
        assert_eq!(OpaqueToken::parse(b"eyJhbGciOi.x.y"), None);
        assert!(!format!("{t:?}").contains(&text[4..10]));
        assert_ne!(t.hash(), OpaqueToken::generate().hash());
    }
}
