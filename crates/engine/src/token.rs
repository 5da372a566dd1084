//! A verified token as the engine hands it out and caches it: the decoded header and claims,
//! and one slot where a caller keeps what it made of them.

use std::any::Any;
use std::ops::Deref;
use std::sync::OnceLock;

use jose::Jwt;

/// A verified token. Dereferences to its [`Jwt`]; shared (as [`crate::Verified`]) between the
/// cache and every caller that asks for the same token while its verdict is cached.
pub struct Token {
    jwt: Jwt,
    rendered: OnceLock<Box<dyn Any + Send + Sync>>,
}

impl Token {
    pub fn new(jwt: Jwt) -> Self {
        Token {
            jwt,
            rendered: OnceLock::new(),
        }
    }

    /// What `render` makes of this token, made on the first call and kept with the token (in
    /// the cache, for as long as its verdict): a caller's answer to one verified token is the
    /// same every time, so a cache hit need not make it again. One slot per token, so one type
    /// per program; `None` when the slot already holds another type.
    pub fn rendered<T: Any + Send + Sync>(&self, render: impl FnOnce(&Jwt) -> T) -> Option<&T> {
        self.rendered
            .get_or_init(|| Box::new(render(&self.jwt)))
            .downcast_ref()
    }
}

impl Deref for Token {
    type Target = Jwt;

    fn deref(&self) -> &Jwt {
        &self.jwt
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("jwt", &self.jwt)
            .field("rendered", &self.rendered.get().is_some())
            .finish()
    }
}

/// A verified token, shared between the cache and callers.
pub type Verified = std::sync::Arc<Token>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn token() -> Token {
        let secret = b"a key of at least thirty-two bytes!!";
        let key = jose::VerifyingKey::hmac(jose::Algorithm::HS256, secret, Some("k")).expect("key");
        let keys = jose::KeySet::new(vec![key]).expect("key set");
        let header = jose::jws::header_json(jose::Algorithm::HS256, Some("k"), None);
        let input = jose::SigningInput::new(header.as_bytes(), br#"{"sub":"alice","exp":2000}"#);
        let hmac = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
        let tag = aws_lc_rs::hmac::sign(&hmac, input.as_bytes());
        let signed = input.into_compact(tag.as_ref());
        let jwt =
            jose::jwt::verify(signed, &keys, &jose::Validation::default(), 1000).expect("valid");
        Token::new(jwt)
    }

    #[test]
    fn a_rendering_is_made_once_and_kept() {
        let token = token();
        let made = AtomicUsize::new(0);
        let render = |jwt: &Jwt| {
            made.fetch_add(1, Ordering::Relaxed);
            jwt.str_claim("sub").map(|s| s.into_owned())
        };
        assert_eq!(token.rendered(render), Some(&Some("alice".to_string())));
        assert_eq!(token.rendered(render), Some(&Some("alice".to_string())));
        assert_eq!(made.load(Ordering::Relaxed), 1);
        // Another type does not replace it.
        assert_eq!(token.rendered(|_| 7u32), None);
        // The token itself is still there to read.
        assert_eq!(token.str_claim("sub").as_deref(), Some("alice"));
    }
}
