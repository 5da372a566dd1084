//! What a client is registered for: grants, scopes, audiences, the token it gets, how it
//! authenticates, and what else of the daemon it may call. Kept in the store as a JSON
//! document ([`Registration::to_json`], [`Registration::from_json`]); parsed into checked
//! values once, when read.

use serde::{Deserialize, Serialize};

use crate::mtls::CertSubject;
use crate::scope::Scope;
use crate::sign::SignPolicy;

/// The grant types a client may be registered for.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    /// RFC 6749 section 4.4: machine clients acting for themselves.
    ClientCredentials,
}

/// How a client proves who it is at the token endpoint (RFC 8414's
/// `token_endpoint_auth_methods_supported` names).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// HTTP Basic with the form-encoded id and secret (RFC 6749 section 2.3.1).
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
    /// A JWT signed with one of the client's registered keys (RFC 7523, section 2.2).
    PrivateKeyJwt,
    /// A TLS client certificate that chains to the daemon's client CA and carries the
    /// registered name (RFC 8705 section 2.1).
    TlsClientAuth,
    /// A TLS client certificate registered with the client, in its JWK Set's `x5c`
    /// (RFC 8705 section 2.2).
    SelfSignedTlsClientAuth,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
            AuthMethod::TlsClientAuth => "tls_client_auth",
            AuthMethod::SelfSignedTlsClientAuth => "self_signed_tls_client_auth",
        }
    }

    /// Whether the client proves itself with a TLS client certificate (RFC 8705).
    pub fn uses_certificate(self) -> bool {
        matches!(
            self,
            AuthMethod::TlsClientAuth | AuthMethod::SelfSignedTlsClientAuth
        )
    }

    /// Whether the client holds a secret (the others hold keys).
    pub fn uses_secret(self) -> bool {
        matches!(
            self,
            AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost
        )
    }
}

/// What the client's access tokens are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenFormat {
    /// By value: a JWT (RFC 9068) signed by the HSM.
    #[default]
    Jwt,
    /// By reference: a random string whose claims stay in the store.
    Opaque,
}

/// What else of the daemon a client may call.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// `/introspect` and `/v1/verify`.
    Introspect,
    /// `POST /revoke` (RFC 7009) for tokens of any trusted issuer.
    Revoke,
    /// `/v1/revocations`: records by jti, subject and client, and their list.
    Admin,
    /// `POST /v1/sign`: tokens with its own claims, within its [`SignPolicy`].
    Sign,
}

/// Where a `private_key_jwt` client's public keys are (or a `self_signed_tls_client_auth`
/// client's certificates, in `x5c`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientKeys {
    /// A JWK Set document, registered with the client.
    Jwks(String),
    /// A `jwks_uri` the daemon fetches (https; plain http to loopback only).
    JwksUri(String),
}

/// The longest access-token lifetime a client may be registered for: a day.
pub const MAX_TOKEN_LIFETIME_S: u64 = 86_400;
/// The lifetime when none is registered: 15 minutes.
pub const DEFAULT_TOKEN_LIFETIME_S: u64 = 900;
/// Most audiences one client may be registered for.
pub const MAX_AUDIENCES: usize = 32;

/// A client's registration, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    pub grants: Vec<Grant>,
    /// The scopes it may ask for; what it gets when it asks for none.
    pub scopes: Scope,
    /// The audiences (resource indicators, RFC 8707) its tokens may name; all of them when it
    /// asks for none.
    pub audiences: Vec<String>,
    pub token_format: TokenFormat,
    /// Seconds.
    pub token_lifetime: u64,
    pub auth_method: AuthMethod,
    pub keys: Option<ClientKeys>,
    /// The name a `tls_client_auth` client's certificate carries.
    pub tls_subject: Option<CertSubject>,
    pub permissions: Vec<Permission>,
    /// What `/v1/sign` may sign for it (with the `sign` permission).
    pub sign: Option<SignPolicy>,
    /// Every token request must carry a DPoP proof (RFC 9449 section 5.2,
    /// `dpop_bound_access_tokens`): its tokens are all DPoP-bound.
    pub dpop_bound_access_tokens: bool,
}

/// Why a registration was refused: its writer's (the operator's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistrationError(pub String);

impl std::fmt::Display for RegistrationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RegistrationError {}

/// The stored form.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    #[serde(default)]
    grants: Vec<Grant>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default)]
    token_format: TokenFormat,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_lifetime_s: Option<u64>,
    auth_method: AuthMethod,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jwks: Option<Box<serde_json::value::RawValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jwks_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tls_client_auth_subject_dn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tls_client_auth_san_dns: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tls_client_auth_san_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tls_client_auth_san_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tls_client_auth_san_email: Option<String>,
    #[serde(default)]
    permissions: Vec<Permission>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sign: Option<SignPolicy>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    dpop_bound_access_tokens: bool,
}

impl Registration {
    /// A client of `auth_method` with nothing granted yet: no grants, scopes or audiences,
    /// JWT tokens of the default lifetime.
    pub fn new(auth_method: AuthMethod) -> Registration {
        Registration {
            grants: Vec::new(),
            scopes: Scope::default(),
            audiences: Vec::new(),
            token_format: TokenFormat::Jwt,
            token_lifetime: DEFAULT_TOKEN_LIFETIME_S,
            auth_method,
            keys: None,
            tls_subject: None,
            permissions: Vec::new(),
            sign: None,
            dpop_bound_access_tokens: false,
        }
    }

    /// Reads a stored registration and checks it as [`Registration::check`] does.
    pub fn from_json(text: &str) -> Result<Registration, RegistrationError> {
        let doc: Document =
            serde_json::from_str(text).map_err(|e| RegistrationError(e.to_string()))?;
        let scopes = Scope::from_tokens(&doc.scopes)
            .map_err(|e| RegistrationError(format!("scopes: {e}")))?;
        let keys = match (doc.jwks, doc.jwks_uri) {
            (Some(_), Some(_)) => {
                return Err(RegistrationError(
                    "jwks and jwks_uri: register one of them".into(),
                ))
            }
            (Some(jwks), None) => Some(ClientKeys::Jwks(jwks.get().to_owned())),
            (None, Some(uri)) => Some(ClientKeys::JwksUri(uri)),
            (None, None) => None,
        };
        let tls_subject = CertSubject::from_fields(&[
            (
                "tls_client_auth_subject_dn",
                doc.tls_client_auth_subject_dn.as_deref(),
            ),
            (
                "tls_client_auth_san_dns",
                doc.tls_client_auth_san_dns.as_deref(),
            ),
            (
                "tls_client_auth_san_uri",
                doc.tls_client_auth_san_uri.as_deref(),
            ),
            (
                "tls_client_auth_san_ip",
                doc.tls_client_auth_san_ip.as_deref(),
            ),
            (
                "tls_client_auth_san_email",
                doc.tls_client_auth_san_email.as_deref(),
            ),
        ])
        .map_err(RegistrationError)?;
        let registration = Registration {
            grants: doc.grants,
            scopes,
            audiences: doc.audiences,
            token_format: doc.token_format,
            token_lifetime: doc.token_lifetime_s.unwrap_or(DEFAULT_TOKEN_LIFETIME_S),
            auth_method: doc.auth_method,
            keys,
            tls_subject,
            permissions: doc.permissions,
            sign: doc.sign,
            dpop_bound_access_tokens: doc.dpop_bound_access_tokens,
        };
        registration.check()?;
        Ok(registration)
    }

    /// The stored form.
    pub fn to_json(&self) -> String {
        let (jwks, jwks_uri) = match &self.keys {
            Some(ClientKeys::Jwks(doc)) => (
                serde_json::value::RawValue::from_string(doc.clone()).ok(),
                None,
            ),
            Some(ClientKeys::JwksUri(uri)) => (None, Some(uri.clone())),
            None => (None, None),
        };
        let name = |field: &str| {
            self.tls_subject
                .as_ref()
                .filter(|s| s.field() == field)
                .map(CertSubject::value)
        };
        let doc = Document {
            grants: self.grants.clone(),
            scopes: self.scopes.tokens().map(str::to_owned).collect(),
            audiences: self.audiences.clone(),
            token_format: self.token_format,
            token_lifetime_s: Some(self.token_lifetime),
            auth_method: self.auth_method,
            jwks,
            jwks_uri,
            tls_client_auth_subject_dn: name("tls_client_auth_subject_dn"),
            tls_client_auth_san_dns: name("tls_client_auth_san_dns"),
            tls_client_auth_san_uri: name("tls_client_auth_san_uri"),
            tls_client_auth_san_ip: name("tls_client_auth_san_ip"),
            tls_client_auth_san_email: name("tls_client_auth_san_email"),
            permissions: self.permissions.clone(),
            sign: self.sign.clone(),
            dpop_bound_access_tokens: self.dpop_bound_access_tokens,
        };
        // A document of strings, numbers and checked JSON cannot fail to serialise.
        serde_json::to_string(&doc).unwrap_or_default()
    }

    /// The rules every registration keeps: a lifetime within a day, audiences that are
    /// absolute URIs without a fragment (RFC 8707), keys exactly for `private_key_jwt` (and
    /// only public, asymmetric ones), an audience for a client that is granted tokens.
    pub fn check(&self) -> Result<(), RegistrationError> {
        let fail = |m: String| Err(RegistrationError(m));
        if self.token_lifetime == 0 || self.token_lifetime > MAX_TOKEN_LIFETIME_S {
            return fail(format!(
                "token_lifetime_s: {} is not within 1 to {MAX_TOKEN_LIFETIME_S}",
                self.token_lifetime
            ));
        }
        if self.audiences.len() > MAX_AUDIENCES {
            return fail(format!("audiences: more than {MAX_AUDIENCES}"));
        }
        for (i, aud) in self.audiences.iter().enumerate() {
            if !is_resource_indicator(aud) {
                return fail(format!(
                    "audiences[{i}]: {aud:?} is not an absolute URI without a fragment"
                ));
            }
            if self.audiences[..i].contains(aud) {
                return fail(format!("audiences[{i}]: {aud:?} appears twice"));
            }
        }
        match (&self.sign, self.permissions.contains(&Permission::Sign)) {
            (Some(policy), true) => policy.check().map_err(RegistrationError)?,
            (None, true) => return fail("the sign permission needs a sign policy".into()),
            (Some(_), false) => return fail("a sign policy needs the sign permission".into()),
            (None, false) => {}
        }
        if !self.grants.is_empty() && self.audiences.is_empty() {
            return fail("audiences: a client that is granted tokens needs at least one".into());
        }
        match (&self.tls_subject, self.auth_method) {
            (None, AuthMethod::TlsClientAuth) => {
                return fail(
                    "tls_client_auth needs one certificate name (tls_client_auth_subject_dn, \
                     tls_client_auth_san_dns, _san_uri, _san_ip or _san_email)"
                        .into(),
                )
            }
            (Some(subject), m) if m != AuthMethod::TlsClientAuth => {
                return fail(format!(
                    "{}: {} is registered only for tls_client_auth",
                    m.as_str(),
                    subject.field()
                ))
            }
            _ => {}
        }
        match (&self.keys, self.auth_method) {
            (None, AuthMethod::PrivateKeyJwt) => {
                return fail("private_key_jwt needs the client's jwks or jwks_uri".into())
            }
            (None, AuthMethod::SelfSignedTlsClientAuth) => return fail(
                "self_signed_tls_client_auth needs the client's jwks with its certificates (x5c)"
                    .into(),
            ),
            (Some(ClientKeys::JwksUri(_)), AuthMethod::SelfSignedTlsClientAuth) => return fail(
                "self_signed_tls_client_auth: register the certificates in jwks (jwks_uri is not \
                     read for certificates)"
                    .into(),
            ),
            (Some(ClientKeys::Jwks(doc)), AuthMethod::SelfSignedTlsClientAuth) => {
                crate::mtls::registered_certificates(doc).map_err(RegistrationError)?;
            }
            (Some(_), m) if m != AuthMethod::PrivateKeyJwt => {
                return fail(format!(
                    "{}: keys are registered only for private_key_jwt and \
                     self_signed_tls_client_auth",
                    m.as_str()
                ))
            }
            (Some(ClientKeys::Jwks(doc)), _) => {
                client_key_set(doc).map_err(RegistrationError)?;
            }
            (Some(ClientKeys::JwksUri(uri)), _) => {
                let loopback_http = ["http://127.0.0.1", "http://[::1]", "http://localhost"]
                    .iter()
                    .any(|p| uri.starts_with(p));
                if !uri.starts_with("https://") && !loopback_http {
                    return fail(format!("jwks_uri: {uri:?} is not an https URL"));
                }
            }
            (None, _) => {}
        }
        Ok(())
    }
}

/// A client's JWK Set as assertions are verified with: public, asymmetric keys only (a shared
/// secret is `client_secret_jwt`, which tessera does not accept), at least one.
pub fn client_key_set(doc: &str) -> Result<jose::KeySet, String> {
    let jwks = jose::KeySet::from_jwks(doc.as_bytes()).map_err(|e| format!("jwks: {e}"))?;
    let keys = jwks.keys;
    if keys.is_empty() {
        return Err("jwks: no usable key".into());
    }
    if keys.iter().any(|k| k.alg().family() == jose::Family::Hmac) {
        return Err("jwks: a symmetric key (client_secret_jwt is not accepted)".into());
    }
    Ok(keys)
}

/// An absolute URI (`scheme ":" ...`) without a fragment, as RFC 8707 section 2 requires of a
/// `resource`.
pub fn is_resource_indicator(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once(':') else {
        return false;
    };
    let mut bytes = scheme.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        && !rest.is_empty()
        && text.len() <= 2048
        && !text.contains('#')
        && text.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> Registration {
        Registration {
            grants: vec![Grant::ClientCredentials],
            scopes: Scope::parse("orders:read orders:write").unwrap(),
            audiences: vec!["https://api.example/orders".into()],
            ..Registration::new(AuthMethod::ClientSecretBasic)
        }
    }

    #[test]
    fn registrations_round_trip_through_their_stored_form() {
        let r = machine();
        assert_eq!(Registration::from_json(&r.to_json()).unwrap(), r);
        assert!(!r.to_json().contains("dpop"), "false is left out");
        let bound = Registration {
            dpop_bound_access_tokens: true,
            ..machine()
        };
        assert_eq!(Registration::from_json(&bound.to_json()).unwrap(), bound);
        let mut keyed = Registration::new(AuthMethod::PrivateKeyJwt);
        let key = jose::SigningKey::generate(jose::Algorithm::ES256)
            .unwrap()
            .with_kid("k1");
        keyed.keys = Some(ClientKeys::Jwks(key.jwks()));
        assert_eq!(Registration::from_json(&keyed.to_json()).unwrap(), keyed);
        for subject in [
            CertSubject::SubjectDn("CN=orders,O=Example".into()),
            CertSubject::SanDns("orders.example".into()),
            CertSubject::SanUri("spiffe://example/orders".into()),
            CertSubject::SanIp("10.1.2.3".parse().unwrap()),
            CertSubject::SanEmail("ops@example.com".into()),
        ] {
            let mut named = Registration::new(AuthMethod::TlsClientAuth);
            named.tls_subject = Some(subject);
            assert_eq!(Registration::from_json(&named.to_json()).unwrap(), named);
        }
    }

    #[test]
    fn registrations_are_checked() {
        let refused = |r: Registration, what: &str| {
            let e = r.check().unwrap_err();
            assert!(e.0.contains(what), "{e} lacks {what}");
        };
        refused(
            Registration {
                token_lifetime: 0,
                ..machine()
            },
            "token_lifetime_s",
        );
        refused(
            Registration {
                audiences: vec![],
                ..machine()
            },
            "at least one",
        );
        refused(
            Registration {
                audiences: vec!["orders".into()],
                ..machine()
            },
            "absolute URI",
        );
        refused(
            Registration {
                audiences: vec!["https://a/#x".into()],
                ..machine()
            },
            "fragment",
        );
        refused(Registration::new(AuthMethod::PrivateKeyJwt), "jwks");
        let hmac =
            jose::SigningKey::hmac(jose::Algorithm::HS256, b"0123456789abcdef0123456789abcdef")
                .unwrap()
                .with_kid("h");
        let mut shared = Registration::new(AuthMethod::PrivateKeyJwt);
        shared.keys = Some(ClientKeys::Jwks(hmac.jwks()));
        refused(shared, "symmetric");
        let mut http = Registration::new(AuthMethod::PrivateKeyJwt);
        http.keys = Some(ClientKeys::JwksUri("http://keys.example/jwks".into()));
        refused(http, "https");
        let mut basic_with_keys = machine();
        basic_with_keys.keys = Some(ClientKeys::JwksUri("https://k.example/jwks".into()));
        refused(basic_with_keys, "only for private_key_jwt");
        refused(
            Registration::new(AuthMethod::TlsClientAuth),
            "one certificate name",
        );
        let mut named_basic = machine();
        named_basic.tls_subject = Some(CertSubject::SanDns("orders.example".into()));
        refused(named_basic, "only for tls_client_auth");
        refused(
            Registration::new(AuthMethod::SelfSignedTlsClientAuth),
            "x5c",
        );
        let key = jose::SigningKey::generate(jose::Algorithm::ES256)
            .unwrap()
            .with_kid("k1");
        let mut bare = Registration::new(AuthMethod::SelfSignedTlsClientAuth);
        bare.keys = Some(ClientKeys::Jwks(key.jwks()));
        refused(bare, "x5c");
        let mut remote = Registration::new(AuthMethod::SelfSignedTlsClientAuth);
        remote.keys = Some(ClientKeys::JwksUri("https://k.example/jwks".into()));
        refused(remote, "jwks_uri");
        assert!(Registration::from_json(
            r#"{"auth_method":"tls_client_auth","tls_client_auth_san_dns":"a.example",
                "tls_client_auth_san_uri":"spiffe://a"}"#
        )
        .unwrap_err()
        .0
        .contains("exactly one"));
        assert!(
            Registration::from_json(r#"{"auth_method":"client_secret_basic","extra":1}"#).is_err()
        );
        assert!(Registration::from_json(r#"{"auth_method":"none"}"#).is_err());
    }
}
