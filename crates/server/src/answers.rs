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
    /// `/introspect`'s answer for `token`, made by `make` on first use and charged to the
    /// token's cache entry (its allocation and the header that shares it).
    pub fn introspection(
        engine: &crate::Verifier,
        token: &engine::Verified<Answers>,
        make: impl FnOnce() -> (Bytes, usize),
    ) -> Bytes {
        token
            .kept()
            .introspection
            .get_or_init(|| {
                let (answer, capacity) = make();
                engine.charge(token, engine::shared_bytes(capacity));
                answer
            })
            .clone()
    }

    /// `/v1/authz`'s answer for `token`, made on first use (the claims header if `claims`) and
    /// charged to the token's cache entry.
    pub fn authz<'t>(
        engine: &crate::Verifier,
        token: &'t engine::Verified<Answers>,
        claims: bool,
    ) -> &'t AuthzAnswer {
        token.kept().authz.get_or_init(|| {
            let answer = AuthzAnswer::of(token, claims);
            engine.charge(token, engine::shared_bytes(answer.values.len()));
            answer
        })
    }
}

impl engine::Kept for Answers {}

/// The span of a field the answer does not have: never within its values.
const ABSENT: (u32, u32) = (u32::MAX, 0);
/// The span of the `cnf` value, after those of the [`Field`]s.
const CNF: usize = 4;

/// An identity header of `/v1/authz`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Subject,
    Scope,
    ClientId,
    Issuer,
}

/// The identity headers of `/v1/authz`, values only (the names are configured), compact: the
/// texts of `sub`, the scopes, `client_id` (or `azp`) and `iss` one after another in one
/// allocation that every response's header values share, and the claims header a slice of the
/// compact token. The route rules check the scopes in the same text.
#[derive(Debug)]
pub struct AuthzAnswer {
    values: Bytes,
    /// Where each [`Field`] lies in `values`; [`ABSENT`] when the token has none, or one that
    /// cannot be a header value (control characters).
    spans: [(u32, u32); CNF + 1],
    /// Whether the token's scopes are scope-tokens ([`Identity::scopes`]): when not, the token
    /// is invalid for forward-auth.
    scopes_valid: bool,
    pub claims: Option<HeaderValue>,
    /// What the token is bound to (`cnf`); its value is the last span of `values`.
    bound: Bound,
}

/// A token's confirmation (`cnf`, RFC 7800): the key or certificate whose holder alone may use
/// it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binding<'a> {
    /// None: a bearer token.
    Bearer,
    /// `cnf.jkt` (RFC 9449): a DPoP key's RFC 7638 thumbprint.
    Jkt(&'a str),
    /// `cnf.x5t#S256` (RFC 8705): a client certificate's SHA-256.
    X5t(&'a str),
    /// A `cnf` this daemon cannot check (not an object, another confirmation method, both of
    /// the above, a value that is no header text): the token is refused, never taken as a
    /// bearer token.
    Unknown,
}

/// [`Binding`] without its value, kept in the answer (the value lies in its allocation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bound {
    Bearer,
    Jkt,
    X5t,
    Unknown,
}

/// The kind and value of `cnf`.
fn confirmation(cnf: Option<Value<'_>>) -> (Bound, Option<Cow<'_, str>>) {
    let Some(cnf) = cnf else {
        return (Bound::Bearer, None);
    };
    let Value::Object(cnf) = cnf else {
        return (Bound::Unknown, None);
    };
    let mut found = (Bound::Unknown, None);
    for (name, value) in cnf.iter() {
        let text = value.as_str().map(|s| s.to_str());
        let valid = text
            .as_deref()
            .is_some_and(|t| !t.is_empty() && HeaderValue::from_str(t).is_ok());
        found = match found.0 {
            Bound::Unknown if valid && name.eq_str("jkt") => (Bound::Jkt, text),
            Bound::Unknown if valid && name.eq_str("x5t#S256") => (Bound::X5t, text),
            _ => return (Bound::Unknown, None),
        };
    }
    found
}

impl AuthzAnswer {
    /// The answer for `token`, with the claims header if `claims` (it is off when its name is
    /// configured empty).
    pub fn of(token: &engine::Token<Answers>, claims: bool) -> Self {
        let jwt: &jose::Jwt = token;
        let identity = Identity::of(jwt);
        let scopes = identity.scopes();
        let scope = scopes
            .as_ref()
            .filter(|scopes| !scopes.is_empty())
            .map(|scopes| Cow::Owned(scopes.join(" ")));
        let client_id = Identity::text(identity.client_id).or_else(|| Identity::text(identity.azp));
        let (bound, cnf) = confirmation(identity.cnf);
        let texts = [
            Identity::text(identity.sub),
            scope,
            client_id,
            Identity::text(identity.iss),
            cnf,
        ]
        // A claim that cannot be a header value is left out.
        .map(|text| text.filter(|t| HeaderValue::from_str(t).is_ok()));
        let mut values = Vec::with_capacity(texts.iter().flatten().map(|t| t.len()).sum());
        let spans = texts.map(|text| {
            let Some(text) = text else {
                return ABSENT;
            };
            let start = values.len();
            values.extend_from_slice(text.as_bytes());
            // A token is far shorter than 4 GiB: every span fits.
            let at = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
            (at(start), at(values.len()))
        });
        AuthzAnswer {
            values: Bytes::from(values),
            spans,
            scopes_valid: scopes.is_some(),
            // The claims as the issuer signed them: the token's own payload segment, shared with
            // it (base64url: always a valid header value).
            claims: claims
                .then(|| HeaderValue::from_maybe_shared(token.payload_segment()).ok())
                .flatten(),
            bound,
        }
    }

    fn span(&self, field: Field) -> Option<std::ops::Range<usize>> {
        self.span_at(field as usize)
    }

    fn span_at(&self, at: usize) -> Option<std::ops::Range<usize>> {
        let (start, end) = self.spans[at];
        let span = start as usize..end as usize;
        (span.start <= span.end && span.end <= self.values.len()).then_some(span)
    }

    fn text(&self, field: Field) -> Option<&[u8]> {
        self.values.get(self.span(field)?)
    }

    /// The header value of `field`, sharing the answer's allocation (checked again as a header
    /// value: it was when the answer was made).
    pub fn value(&self, field: Field) -> Option<HeaderValue> {
        HeaderValue::from_maybe_shared(self.values.slice(self.span(field)?)).ok()
    }

    /// What the token is bound to.
    pub fn binding(&self) -> Binding<'_> {
        if self.bound == Bound::Bearer {
            return Binding::Bearer;
        }
        let value = self
            .span_at(CNF)
            .and_then(|span| std::str::from_utf8(&self.values[span]).ok());
        match (self.bound, value) {
            (Bound::Jkt, Some(jkt)) => Binding::Jkt(jkt),
            (Bound::X5t, Some(x5t)) => Binding::X5t(x5t),
            _ => Binding::Unknown,
        }
    }

    /// Whether the token's scopes are scope-tokens; when not, no rule may see them and no
    /// header may carry them.
    pub fn scopes_valid(&self) -> bool {
        self.scopes_valid
    }

    /// Whether the token holds scope `need`.
    pub fn has_scope(&self, need: &str) -> bool {
        self.scopes_valid
            && self
                .text(Field::Scope)
                .is_some_and(|scopes| scopes.split(|&b| b == b' ').any(|s| s == need.as_bytes()))
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
    cnf: Option<Value<'a>>,
}

impl<'a> Identity<'a> {
    pub fn of(jwt: &'a jose::Jwt) -> Self {
        let mut id = Identity::default();
        for (name, value) in jwt.claims() {
            // Compared after unescaping (`eq_str` compares the raw text when there is nothing
            // to unescape).
            let known = ["sub", "iss", "client_id", "azp", "scope", "scp", "cnf"]
                .into_iter()
                .find(|known| name.eq_str(known));
            let slot = match known {
                Some("sub") => &mut id.sub,
                Some("iss") => &mut id.iss,
                Some("client_id") => &mut id.client_id,
                Some("azp") => &mut id.azp,
                Some("scope") => &mut id.scope,
                Some("scp") => &mut id.scp,
                Some(_) => &mut id.cnf,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_token_is_one_small_allocation() {
        // The `Arc` a cached token lives in (two counts, then the token) stays in the
        // allocator's 256-byte class: a size class more is 64 bytes more per entry.
        let arc = 2 * size_of::<usize>() + size_of::<engine::Token<Answers>>();
        assert!(arc <= 256, "{arc} bytes");
    }
}
