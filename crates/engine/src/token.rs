//! A verified token as the engine hands it out and caches it: the token as it came, its decoded
//! header and claims, and what the engine's caller keeps with them.

use std::borrow::Cow;
use std::ops::Deref;
use std::sync::Arc;

use bytes::Bytes;
use jose::Jwt;

use crate::cache::{allocated, shared_bytes, Keyed, Revocable};
use crate::revoked::{Checked, Revocations};

/// What a caller of the engine keeps with each verified token: made empty (`Default`) when the
/// token is verified and kept with it in the cache for as long as its verdict, so that what the
/// caller makes of a token once (the daemon's rendered answers, in `OnceLock`s) serves every
/// cache hit. `()` keeps nothing. What it holds on the heap once filled in is charged to the
/// token's entry when it is made ([`crate::EngineHandle::charge`]).
pub trait Kept: Default + Send + Sync + 'static {}

impl Kept for () {}

/// A verified token. Dereferences to its [`Jwt`]; shared (as [`Verified`]) between the cache and
/// every caller that asks for the same token while its verdict is cached.
pub struct Token<R = ()> {
    jwt: Jwt,
    /// The compact token, shared with the cache entry that compares it.
    compact: Bytes,
    /// The revocation set's generation this token was last found clean at.
    checked: Checked,
    kept: R,
}

impl<R: Kept> Token<R> {
    pub fn new(jwt: Jwt, compact: Bytes) -> Self {
        Token {
            jwt,
            compact,
            checked: Checked::default(),
            kept: R::default(),
        }
    }

    /// What this token takes in memory as it is verified: its own allocation, the compact
    /// token and the decoded header and claims. What the caller keeps with it comes later.
    pub fn footprint(&self) -> usize {
        // The allocation of the `Arc` it is shared in: two counts, then the token.
        allocated(2 * size_of::<usize>() + size_of::<Self>())
            + shared_bytes(self.compact.len())
            + self.jwt.heap_bytes(allocated)
    }
}

impl<R> Token<R> {
    /// What the caller keeps with this token.
    pub fn kept(&self) -> &R {
        &self.kept
    }

    /// The compact token, as it was verified.
    pub fn compact(&self) -> &Bytes {
        &self.compact
    }

    /// Whether `revocations` takes this token back (looked up in full once per change of the
    /// set; see [`Revocations::revokes`]).
    pub fn is_revoked(&self, revocations: &Revocations) -> bool {
        revocations.revokes(&self.jwt, &self.compact, &self.checked)
    }

    /// The compact token's payload segment (base64url of the claims, as the issuer signed it).
    pub fn payload_segment(&self) -> Bytes {
        let mut dots = self
            .compact
            .iter()
            .enumerate()
            .filter(|(_, &b)| b == b'.')
            .map(|(i, _)| i);
        match (dots.next(), dots.next()) {
            (Some(first), Some(second)) => self.compact.slice(first + 1..second),
            _ => Bytes::new(),
        }
    }
}

impl<R> Deref for Token<R> {
    type Target = Jwt;

    fn deref(&self) -> &Jwt {
        &self.jwt
    }
}

impl<R> Keyed for Token<R> {
    fn token(&self) -> &[u8] {
        &self.compact
    }
}

impl<R> Revocable for Token<R> {
    fn kid(&self) -> Option<Cow<'_, str>> {
        self.jwt.kid()
    }

    fn str_claim(&self, name: &str) -> Option<Cow<'_, str>> {
        self.jwt.str_claim(name)
    }
}

impl<R> std::fmt::Debug for Token<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("jwt", &self.jwt)
            .finish_non_exhaustive()
    }
}

/// A verified token, shared between the cache and callers.
pub type Verified<R = ()> = Arc<Token<R>>;

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use super::*;

    #[derive(Default)]
    struct Subject(OnceLock<String>);

    impl Kept for Subject {}

    fn signed() -> String {
        let secret = b"a key of at least thirty-two bytes!!";
        jose::SigningKey::hmac(jose::Algorithm::HS256, secret)
            .expect("HMAC key")
            .with_kid("k")
            .jwt(None, r#"{"sub":"alice","exp":2000}"#)
            .expect("sign")
    }

    fn jwt(signed: &str) -> Jwt {
        let secret = b"a key of at least thirty-two bytes!!";
        let key = jose::VerifyingKey::hmac(jose::Algorithm::HS256, secret, Some("k")).expect("key");
        let keys = jose::KeySet::new(vec![key]).expect("key set");
        jose::jwt::verify(signed, &keys, &jose::Validation::default(), 1000).expect("valid")
    }

    #[test]
    fn what_a_caller_keeps_is_made_once_and_kept() {
        let signed = signed();
        let token: Token<Subject> = Token::new(jwt(&signed), Bytes::from(signed.clone()));
        let mut made = 0;
        for _ in 0..2 {
            let sub = token.kept().0.get_or_init(|| {
                made += 1;
                token
                    .str_claim("sub")
                    .map(|s| s.into_owned())
                    .unwrap_or_default()
            });
            assert_eq!(sub, "alice");
        }
        assert_eq!(made, 1);
        // The token itself is still there to read.
        assert_eq!(token.str_claim("sub").as_deref(), Some("alice"));
        assert_eq!(token.compact(), signed.as_bytes());
        let nothing: Token = Token::new(jwt(&signed), Bytes::from(signed.clone()));
        assert_eq!(nothing.kept(), &());
        // The token is charged its allocation, the compact token and the decoded text.
        let own = allocated(2 * size_of::<usize>() + size_of::<Token<Subject>>());
        let compact = allocated(signed.len()) + allocated(3 * size_of::<usize>());
        assert_eq!(
            token.footprint(),
            own + compact + token.heap_bytes(allocated)
        );
        assert!(token.heap_bytes(allocated) >= signed.len() / 2);
    }

    #[test]
    fn the_payload_segment_is_the_token_s_own() {
        let signed = signed();
        let token: Token = Token::new(jwt(&signed), Bytes::from(signed.clone()));
        let payload = signed.split('.').nth(1).expect("payload");
        assert_eq!(token.payload_segment(), payload.as_bytes());
        assert_eq!(
            token
                .kid()
                .as_deref()
                .zip(token.str_claim("sub").as_deref().map(str::len)),
            Some(("k", 5))
        );
    }
}
