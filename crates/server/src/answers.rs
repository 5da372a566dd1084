//! What the daemon answers for one verified token, kept with it in the engine's cache, and the
//! identity claims those answers are made of.

use std::borrow::Cow;
use std::sync::OnceLock;

use hyper::body::Bytes;
use hyper::header::HeaderValue;
use jose::json::Value;

/// What the daemon answers for one verified token, made on the token's first use and kept with
/// it in the engine's cache (what the engine's caller keeps, `engine::Token::kept`): a cached
/// token costs no rendering.
#[derive(Debug, Default)]
pub struct Answers {
    /// `/introspect`'s JSON answer.
    pub introspection: OnceLock<Bytes>,
    /// `/v1/authz`'s identity headers.
    pub authz: OnceLock<AuthzAnswer>,
}

impl Answers {
    /// Calls `f` with the answers kept with `token`.
    pub fn with<R>(token: &engine::Token<Answers>, f: impl FnOnce(&Answers) -> R) -> R {
        f(token.kept())
    }
}

impl engine::Kept for Answers {
    /// Both answers as they will be made (either may never be): the introspection JSON (the
    /// RFC 7662 members, at most the claims' text, in a `Bytes` shared with the responses) and
    /// the identity headers (one allocation each, the claims header a slice of the token the
    /// cache keeps anyway), with the scopes.
    fn footprint(token: &engine::Token<Answers>) -> usize {
        use engine::allocated;
        let shared = allocated(3 * size_of::<usize>());
        let claims = token.claims_json().len();
        let introspection = allocated(64 + claims) + shared;
        let identity = Identity::of(token);
        let text = |v: Option<Value<'_>>| Identity::text(v).map_or(0, |s| allocated(s.len()));
        let scopes = identity.scopes().unwrap_or_default();
        let scope_words: usize = scopes.iter().map(|s| allocated(s.len())).sum();
        let scope_line = scopes.iter().map(|s| s.len() + 1).sum::<usize>();
        let authz = text(identity.sub)
            + text(identity.iss)
            + text(identity.client_id.or(identity.azp))
            + allocated(scope_line)
            + allocated(scopes.len() * size_of::<String>())
            + scope_words;
        introspection + authz
    }
}

/// The identity headers of `/v1/authz`, values only (the names are configured), and the scopes
/// its route rules check: `None` when the token's scopes are not scope-tokens
/// ([`Identity::scopes`]), which makes the token invalid for forward-auth.
#[derive(Debug)]
pub struct AuthzAnswer {
    pub scopes: Option<Vec<String>>,
    pub subject: Option<HeaderValue>,
    pub scope: Option<HeaderValue>,
    pub client_id: Option<HeaderValue>,
    pub issuer: Option<HeaderValue>,
    pub claims: Option<HeaderValue>,
}

impl AuthzAnswer {
    /// The answer for `token`, with the claims header if `claims` (it is off when its name is
    /// configured empty).
    pub fn of(token: &engine::Token<Answers>, claims: bool) -> Self {
        let jwt: &jose::Jwt = token;
        // A claim that cannot be a header value (control characters) is left out.
        let value = |value: Option<Cow<'_, str>>| match value? {
            Cow::Owned(v) => HeaderValue::from_maybe_shared(Bytes::from(v)).ok(),
            Cow::Borrowed(v) => HeaderValue::from_str(v).ok(),
        };
        let identity = Identity::of(jwt);
        let scopes: Option<Vec<String>> = identity
            .scopes()
            .map(|scopes| scopes.into_iter().map(Cow::into_owned).collect());
        AuthzAnswer {
            subject: value(Identity::text(identity.sub)),
            scope: value(
                scopes
                    .as_ref()
                    .filter(|scopes| !scopes.is_empty())
                    .map(|scopes| Cow::Owned(scopes.join(" "))),
            ),
            client_id: value(
                Identity::text(identity.client_id).or_else(|| Identity::text(identity.azp)),
            ),
            issuer: value(Identity::text(identity.iss)),
            // The claims as the issuer signed them: the token's own payload segment, shared with
            // it (base64url: always a valid header value).
            claims: claims
                .then(|| HeaderValue::from_maybe_shared(token.payload_segment()).ok())
                .flatten(),
            scopes,
        }
    }
}

/// The claims forward-auth answers with, read in one pass.
#[derive(Debug, Default)]
pub struct Identity<'a> {
    sub: Option<Value<'a>>,
    iss: Option<Value<'a>>,
    client_id: Option<Value<'a>>,
    azp: Option<Value<'a>>,
    scope: Option<Value<'a>>,
    scp: Option<Value<'a>>,
}

impl<'a> Identity<'a> {
    pub fn of(jwt: &'a jose::Jwt) -> Self {
        let mut id = Identity::default();
        for (name, value) in jwt.claims() {
            // Compared after unescaping (`eq_str` compares the raw text when there is nothing
            // to unescape).
            let known = ["sub", "iss", "client_id", "azp", "scope", "scp"]
                .into_iter()
                .find(|known| name.eq_str(known));
            let slot = match known {
                Some("sub") => &mut id.sub,
                Some("iss") => &mut id.iss,
                Some("client_id") => &mut id.client_id,
                Some("azp") => &mut id.azp,
                Some("scope") => &mut id.scope,
                Some(_) => &mut id.scp,
                None => continue,
            };
            *slot = Some(value);
        }
        id
    }

    fn text(value: Option<Value<'a>>) -> Option<Cow<'a, str>> {
        value?.as_str().map(|s| s.to_str())
    }

    /// `scope` (RFC 6749 scope-tokens separated by single spaces, as RFC 8693 and RFC 9068 use
    /// it) or else `scp` (an array of scope-tokens, or a string like `scope`, as some issuers
    /// write it). `None` when either claim, read as scopes, holds anything else (a tab, a
    /// newline, a quote, an empty item): a backend that splits on whitespace would read other
    /// scopes than the route rules saw.
    pub fn scopes(&self) -> Option<Vec<Cow<'a, str>>> {
        // An empty string names no scope.
        let words = |s: Cow<'a, str>| -> Option<Vec<Cow<'a, str>>> {
            let words: Vec<Cow<'a, str>> = match s {
                Cow::Borrowed("") => Vec::new(),
                Cow::Borrowed(s) => s.split(' ').map(Cow::Borrowed).collect(),
                Cow::Owned(s) if s.is_empty() => Vec::new(),
                Cow::Owned(s) => s.split(' ').map(|w| Cow::Owned(w.to_string())).collect(),
            };
            words.iter().all(|w| is_scope_token(w)).then_some(words)
        };
        let scp = match self.scp {
            Some(Value::Array(items)) => {
                let items = items.iter().map(|v| v.as_str().map(|s| s.to_str()));
                Some(
                    items
                        .map(|item| item.filter(|s| is_scope_token(s)))
                        .collect::<Option<Vec<_>>>()?,
                )
            }
            Some(Value::String(s)) => Some(words(s.to_str())?),
            _ => None,
        };
        match Identity::text(self.scope) {
            Some(scope) => words(scope),
            None => Some(scp.unwrap_or_default()),
        }
    }
}

/// An RFC 6749 section 3.3 scope-token: one or more of `%x21 / %x23-5B / %x5D-7E` (visible
/// ASCII but `"` and `\`).
pub fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E))
}
