//! The signing API's claims policy: what a client with the `sign` permission may have tessera
//! sign. The caller brings the claims; tessera sets `iat`, `exp`, `jti` and the header. Every
//! refusal names the rule it broke.

use serde::{Deserialize, Serialize};

/// What a signing client may put in the tokens it has signed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignPolicy {
    /// The `iss` values it may use; a token must carry one of them.
    pub issuers: Vec<String>,
    /// The audiences its tokens may name; a token must name at least one, all of them listed.
    pub audiences: Vec<String>,
    /// The longest lifetime it may ask for, in seconds (also the default).
    pub max_lifetime_s: u64,
    /// Claims it may not set (besides `iat`, `exp`, `nbf` and `jti`, which tessera sets).
    #[serde(default)]
    pub forbidden_claims: Vec<String>,
}

/// Claims tessera sets itself: a caller's own are refused.
pub const RESERVED: [&str; 4] = ["iat", "exp", "nbf", "jti"];

/// Why a signing request was refused: the rule, and a detail safe to send the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignRefusal {
    /// `malformed_claims`, `reserved_claim`, `forbidden_claim`, `issuer_not_allowed`,
    /// `audience_not_allowed`, `audience_required`, `lifetime_exceeded`.
    pub rule: &'static str,
    pub detail: String,
}

impl std::fmt::Display for SignRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.rule, self.detail)
    }
}

impl std::error::Error for SignRefusal {}

fn refuse(rule: &'static str, detail: impl Into<String>) -> SignRefusal {
    SignRefusal {
        rule,
        detail: detail.into(),
    }
}

/// Most bytes of claims a caller may have signed.
pub const MAX_CLAIMS_BYTES: usize = 16 * 1024;

impl SignPolicy {
    /// Checks `claims` (a JSON object, read strictly) and the lifetime asked for (`None`: the
    /// longest allowed) and returns the claims to sign, with `iat`, `exp` and `jti` added.
    pub fn apply(
        &self,
        claims: &str,
        lifetime: Option<u64>,
        now: i64,
        jti: &str,
    ) -> Result<String, SignRefusal> {
        use jose::json::Value;
        if claims.len() > MAX_CLAIMS_BYTES {
            return Err(refuse("malformed_claims", "larger than 16 KiB"));
        }
        let object = match jose::json::parse(claims, 16) {
            Ok(Value::Object(object)) => object,
            Ok(_) => return Err(refuse("malformed_claims", "not a JSON object")),
            Err(e) => return Err(refuse("malformed_claims", e.to_string())),
        };
        let mut iss = None;
        let mut auds: Vec<String> = Vec::new();
        for (name, value) in object.iter() {
            let name = name.to_str();
            if RESERVED.contains(&&*name) {
                return Err(refuse(
                    "reserved_claim",
                    format!("{name} is set by tessera"),
                ));
            }
            if self.forbidden_claims.iter().any(|f| *f == name) {
                return Err(refuse("forbidden_claim", format!("{name} may not be set")));
            }
            match (&*name, value) {
                ("iss", Value::String(s)) => iss = Some(s.to_str().into_owned()),
                ("iss", _) => return Err(refuse("malformed_claims", "iss is not a string")),
                ("aud", Value::String(s)) => auds.push(s.to_str().into_owned()),
                ("aud", Value::Array(items)) => {
                    for item in items.iter() {
                        match item.as_str() {
                            Some(s) => auds.push(s.to_str().into_owned()),
                            None => {
                                return Err(refuse("malformed_claims", "aud holds a non-string"))
                            }
                        }
                    }
                }
                ("aud", _) => return Err(refuse("malformed_claims", "aud is not a string")),
                _ => {}
            }
        }
        match iss {
            Some(iss) if self.issuers.contains(&iss) => {}
            Some(iss) => {
                return Err(refuse(
                    "issuer_not_allowed",
                    format!("iss {iss:?} is not one this client may use"),
                ))
            }
            None => return Err(refuse("issuer_not_allowed", "iss is required")),
        }
        if auds.is_empty() {
            return Err(refuse("audience_required", "aud is required"));
        }
        if let Some(aud) = auds.iter().find(|a| !self.audiences.contains(a)) {
            return Err(refuse(
                "audience_not_allowed",
                format!("aud {aud:?} is not one this client may use"),
            ));
        }
        let lifetime = lifetime.unwrap_or(self.max_lifetime_s);
        if lifetime == 0 || lifetime > self.max_lifetime_s {
            return Err(refuse(
                "lifetime_exceeded",
                format!("lifetime must be 1 to {} s", self.max_lifetime_s),
            ));
        }
        let body = jose::json::minify(object.as_json());
        let inner = body[1..body.len() - 1].trim();
        let mut out = String::with_capacity(body.len() + 80);
        out.push('{');
        if !inner.is_empty() {
            out.push_str(inner);
            out.push(',');
        }
        out.push_str(&format!(
            "\"iat\":{now},\"exp\":{},\"jti\":",
            now + lifetime as i64
        ));
        jose::json::write_str(&mut out, jti);
        out.push('}');
        Ok(out)
    }

    /// The rules a policy keeps: at least one issuer and one audience, a lifetime within a
    /// day.
    pub fn check(&self) -> Result<(), String> {
        if self.issuers.is_empty() {
            return Err("sign policy: at least one issuer".into());
        }
        if self.audiences.is_empty() {
            return Err("sign policy: at least one audience".into());
        }
        if self.max_lifetime_s == 0 || self.max_lifetime_s > crate::MAX_TOKEN_LIFETIME_S {
            return Err(format!(
                "sign policy: max_lifetime_s must be 1 to {}",
                crate::MAX_TOKEN_LIFETIME_S
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> SignPolicy {
        SignPolicy {
            issuers: vec!["https://partner".into()],
            audiences: vec!["api://a".into(), "api://b".into()],
            max_lifetime_s: 600,
            forbidden_claims: vec!["roles".into()],
        }
    }

    #[test]
    fn claims_are_signed_within_the_policy() {
        let p = policy();
        let out = p
            .apply(
                r#"{ "iss": "https://partner", "aud": ["api://a"], "sub": "x" }"#,
                Some(60),
                100,
                "j",
            )
            .unwrap();
        assert_eq!(
            out,
            r#"{"iss":"https://partner","aud":["api://a"],"sub":"x","iat":100,"exp":160,"jti":"j"}"#
        );
        let full = p
            .apply(r#"{"iss":"https://partner","aud":"api://b"}"#, None, 0, "j")
            .unwrap();
        assert!(full.contains(r#""exp":600"#), "{full}");
    }

    #[test]
    fn refusals_name_the_rule() {
        let p = policy();
        let rule = |claims: &str, lifetime: Option<u64>| {
            p.apply(claims, lifetime, 0, "j").unwrap_err().rule
        };
        let ok = r#""iss":"https://partner","aud":"api://a""#;
        assert_eq!(
            rule(r#"{"iss":"https://other","aud":"api://a"}"#, None),
            "issuer_not_allowed"
        );
        assert_eq!(rule(r#"{"aud":"api://a"}"#, None), "issuer_not_allowed");
        assert_eq!(
            rule(
                r#"{"iss":"https://partner","aud":["api://a","api://c"]}"#,
                None
            ),
            "audience_not_allowed"
        );
        assert_eq!(
            rule(r#"{"iss":"https://partner"}"#, None),
            "audience_required"
        );
        assert_eq!(rule(&format!("{{{ok},\"exp\":5}}"), None), "reserved_claim");
        assert_eq!(
            rule(&format!("{{{ok},\"jti\":\"mine\"}}"), None),
            "reserved_claim"
        );
        assert_eq!(
            rule(&format!("{{{ok},\"roles\":[]}}"), None),
            "forbidden_claim"
        );
        assert_eq!(rule(&format!("{{{ok}}}"), Some(601)), "lifetime_exceeded");
        assert_eq!(rule(&format!("{{{ok}}}"), Some(0)), "lifetime_exceeded");
        assert_eq!(
            rule(&format!("{{{ok},\"iss\":\"x\"}}"), None),
            "malformed_claims"
        );
        assert_eq!(rule("[1]", None), "malformed_claims");
        assert_eq!(rule(&"x".repeat(20_000), None), "malformed_claims");
        assert!(policy().check().is_ok());
        assert!(SignPolicy {
            issuers: vec![],
            ..policy()
        }
        .check()
        .is_err());
    }
}
