//! Scopes (RFC 6749 section 3.3): space-separated tokens of printable ASCII without `"` and `\`.

/// A set of scope tokens in the order first given, each once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope(Vec<String>);

/// Why a scope string was refused: the sender's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeError(pub &'static str);

impl std::fmt::Display for ScopeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for ScopeError {}

/// Most scope tokens one scope may hold.
pub const MAX_TOKENS: usize = 64;
/// Longest scope token.
pub const MAX_TOKEN_LEN: usize = 128;

impl Scope {
    /// `scope = scope-token *( SP scope-token )`, `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
    /// Strict: one space between tokens, none around. A token given twice counts once.
    pub fn parse(text: &str) -> Result<Scope, ScopeError> {
        if text.is_empty() {
            return Err(ScopeError("an empty scope"));
        }
        let mut tokens: Vec<String> = Vec::new();
        for token in text.split(' ') {
            if token.is_empty() {
                return Err(ScopeError("scope tokens are separated by one space"));
            }
            if token.len() > MAX_TOKEN_LEN {
                return Err(ScopeError("a scope token is too long"));
            }
            if !token
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
            {
                return Err(ScopeError(
                    "a scope token has a character RFC 6749 does not allow",
                ));
            }
            if !tokens.iter().any(|t| t == token) {
                if tokens.len() == MAX_TOKENS {
                    return Err(ScopeError("too many scope tokens"));
                }
                tokens.push(token.to_owned());
            }
        }
        Ok(Scope(tokens))
    }

    /// From tokens already held (a registration's list), each checked as [`Scope::parse`] does.
    pub fn from_tokens<S: AsRef<str>>(tokens: &[S]) -> Result<Scope, ScopeError> {
        if tokens.is_empty() {
            return Ok(Scope::default());
        }
        let joined: Vec<&str> = tokens.iter().map(AsRef::as_ref).collect();
        Scope::parse(&joined.join(" "))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn tokens(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    pub fn contains(&self, token: &str) -> bool {
        self.0.iter().any(|t| t == token)
    }

    /// Whether every token of `self` is in `other`.
    pub fn is_subset_of(&self, other: &Scope) -> bool {
        self.0.iter().all(|t| other.contains(t))
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_parsed_strictly() {
        let s = Scope::parse("orders:read orders:write orders:read").unwrap();
        assert_eq!(s.to_string(), "orders:read orders:write");
        assert!(Scope::parse("orders:read").unwrap().is_subset_of(&s));
        assert!(!Scope::parse("admin").unwrap().is_subset_of(&s));
        for bad in ["", " a", "a ", "a  b", "a\"b", "a\\b", "caf\u{e9}", "a\tb"] {
            assert!(Scope::parse(bad).is_err(), "{bad:?}");
        }
        let many: Vec<String> = (0..65).map(|i| format!("s{i}")).collect();
        assert!(Scope::parse(&many.join(" ")).is_err());
        assert!(Scope::parse(&"x".repeat(129)).is_err());
        assert_eq!(
            Scope::from_tokens(&["a", "b"]).unwrap(),
            Scope::parse("a b").unwrap()
        );
        assert!(Scope::from_tokens::<&str>(&[]).unwrap().is_empty());
    }
}
