//! The claims of the access tokens tessera issues (RFC 9068 section 2.2).

use aws_lc_rs::rand::{SecureRandom, SystemRandom};

use crate::scope::Scope;

/// The `typ` of the header of a JWT access token (RFC 9068 section 2.1).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// An access token's claims, rendered as the JWT payload (or kept for an opaque token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessClaims<'a> {
    pub iss: &'a str,
    /// The client, for a client-credentials grant.
    pub sub: &'a str,
    pub aud: &'a [String],
    pub client_id: &'a str,
    pub scope: &'a Scope,
    pub iat: i64,
    pub exp: i64,
    pub jti: &'a str,
    /// What the token is bound to (RFC 7800 `cnf`); `None` for a bearer token.
    pub cnf: Option<Confirmation<'a>>,
}

/// The key or certificate whose holder alone may use a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Confirmation<'a> {
    /// A DPoP key's RFC 7638 thumbprint (RFC 9449 section 6.1): `cnf.jkt`.
    Jkt(&'a str),
    /// The base64url SHA-256 of a client certificate's DER (RFC 8705 section 3.1):
    /// `cnf.x5t#S256`.
    X5tS256(&'a str),
}

impl Confirmation<'_> {
    /// The `token_type` of a token bound so (RFC 9449 section 5: `DPoP`; RFC 8705: `Bearer`).
    pub fn token_type(this: Option<Self>) -> &'static str {
        match this {
            Some(Confirmation::Jkt(_)) => "DPoP",
            _ => "Bearer",
        }
    }
}

impl AccessClaims<'_> {
    /// The JSON object: `aud` a string when there is one audience, an array beyond; `scope`
    /// left out when empty.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(256);
        out.push_str("{\"iss\":");
        jose::json::write_str(&mut out, self.iss);
        out.push_str(",\"sub\":");
        jose::json::write_str(&mut out, self.sub);
        out.push_str(",\"aud\":");
        match self.aud {
            [one] => jose::json::write_str(&mut out, one),
            many => {
                out.push('[');
                for (i, aud) in many.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    jose::json::write_str(&mut out, aud);
                }
                out.push(']');
            }
        }
        out.push_str(",\"client_id\":");
        jose::json::write_str(&mut out, self.client_id);
        if !self.scope.is_empty() {
            out.push_str(",\"scope\":");
            jose::json::write_str(&mut out, &self.scope.to_string());
        }
        out.push_str(&format!(
            ",\"iat\":{},\"exp\":{},\"jti\":",
            self.iat, self.exp
        ));
        jose::json::write_str(&mut out, self.jti);
        if let Some(cnf) = self.cnf {
            let (name, value) = match cnf {
                Confirmation::Jkt(jkt) => ("jkt", jkt),
                Confirmation::X5tS256(x5t) => ("x5t#S256", x5t),
            };
            out.push_str(",\"cnf\":{\"");
            out.push_str(name);
            out.push_str("\":");
            jose::json::write_str(&mut out, value);
            out.push('}');
        }
        out.push('}');
        out
    }
}

/// A fresh `jti`: 128 random bits, base64url.
pub fn new_jti() -> String {
    let mut bytes = [0u8; 16];
    // aws-lc-rs's system random source fails only when the OS has none: nothing can run then.
    if SystemRandom::new().fill(&mut bytes).is_err() {
        panic!("the system random source failed");
    }
    jose::b64::encode(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_as_rfc_9068_names_them() {
        let scope = Scope::parse("a b").unwrap();
        let aud = vec!["https://api".to_owned()];
        let claims = AccessClaims {
            iss: "https://as",
            sub: "svc",
            aud: &aud,
            client_id: "svc",
            scope: &scope,
            iat: 10,
            exp: 20,
            jti: "j",
            cnf: None,
        };
        assert_eq!(
            claims.to_json(),
            r#"{"iss":"https://as","sub":"svc","aud":"https://api","client_id":"svc","scope":"a b","iat":10,"exp":20,"jti":"j"}"#
        );
        let two = vec!["https://a".to_owned(), "https://b".to_owned()];
        let empty = Scope::default();
        let json = AccessClaims {
            aud: &two,
            scope: &empty,
            ..claims
        }
        .to_json();
        assert!(
            json.contains(r#""aud":["https://a","https://b"]"#),
            "{json}"
        );
        assert!(!json.contains("scope"), "{json}");
        for (cnf, member, token_type) in [
            (
                Confirmation::Jkt("0ZcOCORZNYy"),
                r#""cnf":{"jkt":"0ZcOCORZNYy"}}"#,
                "DPoP",
            ),
            (
                Confirmation::X5tS256("bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"),
                r#""cnf":{"x5t#S256":"bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}}"#,
                "Bearer",
            ),
        ] {
            let json = AccessClaims {
                cnf: Some(cnf),
                ..claims.clone()
            }
            .to_json();
            assert!(json.ends_with(member), "{json}");
            serde_json::from_str::<serde_json::Value>(&json).expect("JSON");
            assert_eq!(Confirmation::token_type(Some(cnf)), token_type);
        }
        assert_eq!(Confirmation::token_type(None), "Bearer");
        assert_ne!(new_jti(), new_jti());
        assert_eq!(new_jti().len(), 22);
    }
}
