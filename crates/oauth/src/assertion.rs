//! Client assertions (RFC 7523 section 2.2, section 3): a JWT the client signs with one of its
//! registered keys. Checked like any token (strict JOSE, keys pinned to their algorithms, no
//! `none`), then: `iss` and `sub` are the client, `aud` names this server (its issuer or its
//! token endpoint), `exp` is required and near, `jti` is required. That a `jti` is used once is
//! the caller's to enforce (the store remembers it until `exp`).

use crate::error::OAuthError;

/// `client_assertion_type` for a JWT (RFC 7523 section 2.2).
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The longest life an assertion may have: `exp - iat`, or without `iat`, `exp - now`. An
/// hour, as common authorization servers take and client libraries sign by default (authlib);
/// the `jti` record makes each assertion work once however long it lives.
pub const MAX_LIFETIME_S: u64 = 3_600;
/// Clock skew tolerated on `exp`, `nbf` and `iat`.
pub const LEEWAY_S: u64 = 30;
/// Longest `jti` remembered.
pub const MAX_JTI_BYTES: usize = 256;

/// What the caller needs of a verified assertion: its `jti`, to record until `exp`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub jti: String,
    pub exp: i64,
}

/// Why an assertion was refused: the rule it broke (a `jose` error code such as `expired` or
/// `unknown_key`, or `sub`, `jti`, `exp`). The client is told `invalid_client` with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused(pub &'static str);

impl Refused {
    /// Whether the assertion names a key the client's set lacks (the set may be worth
    /// fetching again).
    pub fn is_unknown_key(self) -> bool {
        self.0 == jose::Error::UnknownKey.code()
    }
}

impl From<Refused> for OAuthError {
    fn from(refused: Refused) -> Self {
        OAuthError::invalid_client(format!("client assertion refused: {}", refused.0))
    }
}

/// The client an assertion claims to be (its unverified `iss`), to find its keys with; the
/// verification then requires `iss` and `sub` to be that client.
pub fn claimed_client(assertion: &str) -> Result<String, OAuthError> {
    jose::jwt::peek_issuer(assertion, &jose::Limits::default())
        .map_err(|_| OAuthError::invalid_client("the client assertion is not a JWT with an iss"))
}

/// Verifies `assertion` for `client_id` with the client's `keys`; `audiences` are the values
/// of `aud` that name this server. The description of a refusal names the rule, never the
/// assertion.
pub fn verify(
    assertion: &str,
    client_id: &str,
    keys: &jose::KeySet,
    audiences: &[String],
    now: i64,
) -> Result<Verified, Refused> {
    let mut validation = jose::Validation::default().with_issuer(client_id);
    validation.audiences = audiences.to_vec();
    validation.leeway = LEEWAY_S;
    validation.require_exp = true;
    validation.required_claims = vec!["jti".into(), "sub".into()];
    validation.max_lifetime = Some(MAX_LIFETIME_S);
    let jwt =
        jose::jwt::verify(assertion, keys, &validation, now).map_err(|e| Refused(e.code()))?;
    if jwt.str_claim("sub").as_deref() != Some(client_id) {
        return Err(Refused("sub"));
    }
    let jti = jwt
        .str_claim("jti")
        .filter(|j| !j.is_empty() && j.len() <= MAX_JTI_BYTES)
        .ok_or(Refused("jti"))?
        .into_owned();
    // Required by the validation above; rounded up so that the record outlives the assertion.
    let exp = jwt.exp().map(|e| e.ceil() as i64).ok_or(Refused("exp"))?;
    Ok(Verified { jti, exp })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;
    const AS: &str = "https://as.example";

    fn key() -> jose::SigningKey {
        jose::SigningKey::generate(jose::Algorithm::ES256)
            .unwrap()
            .with_kid("c1")
    }

    fn assertion(key: &jose::SigningKey, claims: &str) -> String {
        key.jwt(None, claims).unwrap()
    }

    #[test]
    fn assertions_are_checked() {
        let key = key();
        let keys = key.key_set().unwrap();
        let auds = [AS.to_owned(), format!("{AS}/token")];
        let good = format!(
            r#"{{"iss":"c","sub":"c","aud":"{AS}/token","jti":"j1","iat":{NOW},"exp":{}}}"#,
            NOW + 60
        );
        let token = assertion(&key, &good);
        assert_eq!(claimed_client(&token).unwrap(), "c");
        assert_eq!(
            verify(&token, "c", &keys, &auds, NOW).unwrap(),
            Verified {
                jti: "j1".into(),
                exp: NOW + 60
            }
        );
        let refused = |claims: String, why: &str| {
            let t = assertion(&key, &claims);
            let e = OAuthError::from(verify(&t, "c", &keys, &auds, NOW).unwrap_err());
            assert_eq!(e.code, crate::ErrorCode::InvalidClient);
            assert!(e.description.contains(why), "{} lacks {why}", e.description);
        };
        let exp = NOW + 60;
        refused(
            format!(r#"{{"iss":"c","sub":"c","aud":"https://other","jti":"j","exp":{exp}}}"#),
            "invalid_audience",
        );
        refused(
            format!(r#"{{"iss":"c","sub":"d","aud":"{AS}","jti":"j","exp":{exp}}}"#),
            "sub",
        );
        refused(
            format!(r#"{{"iss":"d","sub":"c","aud":"{AS}","jti":"j","exp":{exp}}}"#),
            "invalid_issuer",
        );
        refused(
            format!(r#"{{"iss":"c","sub":"c","aud":"{AS}","exp":{exp}}}"#),
            "missing_claim",
        );
        refused(
            format!(r#"{{"iss":"c","sub":"c","aud":"{AS}","jti":"j"}}"#),
            "missing_claim",
        );
        refused(
            format!(
                r#"{{"iss":"c","sub":"c","aud":"{AS}","jti":"j","exp":{}}}"#,
                NOW - 100
            ),
            "expired",
        );
        refused(
            format!(
                r#"{{"iss":"c","sub":"c","aud":"{AS}","jti":"j","exp":{}}}"#,
                NOW + 7200
            ),
            "lifetime",
        );
        refused(
            format!(r#"{{"iss":"c","sub":"c","aud":"{AS}","jti":"","exp":{exp}}}"#),
            "jti",
        );
        // Another key, `alg: none`, and a tampered signature.
        let other = assertion(&self::key(), &good);
        assert_eq!(
            verify(&other, "c", &keys, &auds, NOW),
            Err(Refused("bad_signature"))
        );
        let unknown = jose::SigningKey::generate(jose::Algorithm::ES256)
            .unwrap()
            .with_kid("c2");
        let refused = verify(&assertion(&unknown, &good), "c", &keys, &auds, NOW).unwrap_err();
        assert!(refused.is_unknown_key(), "{refused:?}");
        let b64 = |s: &str| jose::b64::encode(s.as_bytes());
        let none = format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(&good));
        assert!(verify(&none, "c", &keys, &auds, NOW).is_err());
        let mut tampered = token.clone();
        tampered.pop();
        tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
        assert!(verify(&tampered, "c", &keys, &auds, NOW).is_err());
        assert!(claimed_client("not a jwt").is_err());
    }
}
