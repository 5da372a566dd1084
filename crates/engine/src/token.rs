//! A verified token as the engine hands it out and caches it: the decoded header and claims,
//! and what the engine's caller keeps with them.

use std::ops::Deref;
use std::sync::Arc;

use jose::Jwt;

/// What a caller of the engine keeps with each verified token: made empty (`Default`) when the
/// token is verified and kept with it in the cache for as long as its verdict, so that what the
/// caller makes of a token once (the daemon's rendered answers, in `OnceLock`s) serves every
/// cache hit. `()` keeps nothing.
pub trait Kept: Default + Send + Sync + 'static {}

impl<T: Default + Send + Sync + 'static> Kept for T {}

/// A verified token. Dereferences to its [`Jwt`]; shared (as [`Verified`]) between the cache and
/// every caller that asks for the same token while its verdict is cached.
pub struct Token<R = ()> {
    jwt: Jwt,
    kept: R,
}

impl<R: Kept> Token<R> {
    pub fn new(jwt: Jwt) -> Self {
        Token {
            jwt,
            kept: R::default(),
        }
    }
}

impl<R> Token<R> {
    /// What the caller keeps with this token.
    pub fn kept(&self) -> &R {
        &self.kept
    }
}

impl<R> Deref for Token<R> {
    type Target = Jwt;

    fn deref(&self) -> &Jwt {
        &self.jwt
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

    fn jwt() -> Jwt {
        let secret = b"a key of at least thirty-two bytes!!";
        let key = jose::VerifyingKey::hmac(jose::Algorithm::HS256, secret, Some("k")).expect("key");
        let keys = jose::KeySet::new(vec![key]).expect("key set");
        let signed = jose::SigningKey::hmac(jose::Algorithm::HS256, secret)
            .expect("HMAC key")
            .with_kid("k")
            .jwt(None, r#"{"sub":"alice","exp":2000}"#)
            .expect("sign");
        jose::jwt::verify(signed, &keys, &jose::Validation::default(), 1000).expect("valid")
    }

    #[test]
    fn what_a_caller_keeps_is_made_once_and_kept() {
        let token: Token<OnceLock<String>> = Token::new(jwt());
        let mut made = 0;
        for _ in 0..2 {
            let sub = token.kept().get_or_init(|| {
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
        let nothing: Token = Token::new(jwt());
        assert_eq!(nothing.kept(), &());
    }
}
