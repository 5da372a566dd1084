//! A token request as the endpoint received it (RFC 6749 sections 2.3 and 4.4, RFC 7523
//! section 2.2, RFC 8707): the grant asked for and how the client authenticates.

use crate::assertion::ASSERTION_TYPE;
use crate::error::OAuthError;
use crate::registration::{is_resource_indicator, AuthMethod};
use crate::scope::Scope;

pub const GRANT_CLIENT_CREDENTIALS: &str = "client_credentials";

/// How the request authenticates its client: exactly one way (RFC 6749 section 2.3).
#[derive(Clone, PartialEq, Eq)]
pub enum ClientAuth {
    /// `Authorization: Basic`, already decoded.
    Basic { id: String, secret: String },
    /// `client_id` and `client_secret` in the body.
    Post { id: String, secret: String },
    /// `client_assertion` (with `client_assertion_type` the JWT bearer type); `client_id` is
    /// optional (RFC 7523 section 3: the assertion's `sub` names the client).
    Assertion {
        id: Option<String>,
        assertion: String,
    },
    /// `client_id` alone: the client authenticates with the TLS client certificate of the
    /// connection (RFC 8705 section 2), as registered (`tls_client_auth` or
    /// `self_signed_tls_client_auth`).
    Certificate { id: String },
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret nor the assertion.
        match self {
            ClientAuth::Basic { id, .. } => write!(f, "Basic({id:?})"),
            ClientAuth::Post { id, .. } => write!(f, "Post({id:?})"),
            ClientAuth::Assertion { id, .. } => write!(f, "Assertion({id:?})"),
            ClientAuth::Certificate { id } => write!(f, "Certificate({id:?})"),
        }
    }
}

impl ClientAuth {
    /// Whether a client registered for `method` may authenticate this way.
    pub fn accepts(&self, method: AuthMethod) -> bool {
        match self {
            ClientAuth::Basic { .. } => method == AuthMethod::ClientSecretBasic,
            ClientAuth::Post { .. } => method == AuthMethod::ClientSecretPost,
            ClientAuth::Assertion { .. } => method == AuthMethod::PrivateKeyJwt,
            ClientAuth::Certificate { .. } => method.uses_certificate(),
        }
    }

    /// The way it authenticates, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            ClientAuth::Basic { .. } => "client_secret_basic",
            ClientAuth::Post { .. } => "client_secret_post",
            ClientAuth::Assertion { .. } => "private_key_jwt",
            ClientAuth::Certificate { .. } => "tls_client_certificate",
        }
    }
}

/// A parsed token request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// As sent; [`crate::grant`] decides whether it is one this server issues for.
    pub grant_type: String,
    /// `None` when the client asked for no scope (it gets its registered ones).
    pub scope: Option<Scope>,
    /// RFC 8707 `resource` parameters, in order, each once.
    pub resources: Vec<String>,
    pub auth: ClientAuth,
}

/// Most `resource` parameters a request may carry.
pub const MAX_RESOURCES: usize = 8;
/// The longest client assertion read (a JWT signed with an RSA-4096 key is under 1.5 KiB).
pub const MAX_ASSERTION_BYTES: usize = 8 * 1024;

impl TokenRequest {
    /// Reads the form `params` (each name once, except `resource`: the caller's form reader
    /// refuses other repeats) and the decoded Basic credentials, if the request had them.
    pub fn parse<'a>(
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
        basic: Option<(String, String)>,
    ) -> Result<TokenRequest, OAuthError> {
        let mut grant_type = None;
        let mut scope = None;
        let mut resources: Vec<String> = Vec::new();
        let (mut client_id, mut client_secret) = (None, None);
        let (mut assertion_type, mut assertion) = (None, None);
        for (name, value) in params {
            // RFC 6749 section 3.2: a parameter without a value is as if it were not sent.
            if value.is_empty() {
                continue;
            }
            match name {
                "grant_type" => grant_type = Some(value),
                "scope" => scope = Some(value),
                "resource" => {
                    if !is_resource_indicator(value) {
                        return Err(OAuthError::new(
                            crate::ErrorCode::InvalidTarget,
                            "resource must be an absolute URI without a fragment",
                        ));
                    }
                    if resources.len() == MAX_RESOURCES {
                        return Err(OAuthError::new(
                            crate::ErrorCode::InvalidTarget,
                            "too many resource parameters",
                        ));
                    }
                    if !resources.iter().any(|r| r == value) {
                        resources.push(value.to_owned());
                    }
                }
                "client_id" => client_id = Some(value),
                "client_secret" => client_secret = Some(value),
                "client_assertion_type" => assertion_type = Some(value),
                "client_assertion" => assertion = Some(value),
                // Unknown parameters are ignored (RFC 6749 section 3.2).
                _ => {}
            }
        }
        let grant_type = grant_type
            .filter(|g| !g.is_empty())
            .ok_or_else(|| OAuthError::invalid_request("grant_type is missing"))?
            .to_owned();
        let scope = match scope {
            None => None,
            Some(text) => Some(Scope::parse(text).map_err(|e| {
                OAuthError::new(crate::ErrorCode::InvalidScope, format!("scope: {e}"))
            })?),
        };
        let two_ways =
            || OAuthError::invalid_request("the client authenticated in more than one way");
        let auth = match (basic, client_secret, assertion_type, assertion) {
            (Some(_), Some(_), _, _) | (Some(_), _, Some(_), _) | (Some(_), _, _, Some(_)) => {
                return Err(two_ways())
            }
            (_, Some(_), Some(_), _) | (_, Some(_), _, Some(_)) => return Err(two_ways()),
            (Some((id, secret)), None, None, None) => {
                if client_id.is_some_and(|c| c != id) {
                    return Err(OAuthError::invalid_request(
                        "client_id differs from the Basic credentials",
                    ));
                }
                ClientAuth::Basic { id, secret }
            }
            (None, Some(secret), None, None) => ClientAuth::Post {
                id: client_id
                    .filter(|c| !c.is_empty())
                    .ok_or_else(|| OAuthError::invalid_request("client_secret without client_id"))?
                    .to_owned(),
                secret: secret.to_owned(),
            },
            (None, None, Some(kind), Some(assertion)) => {
                if kind != ASSERTION_TYPE {
                    return Err(OAuthError::invalid_client(
                        "client_assertion_type is not the JWT bearer type",
                    ));
                }
                if assertion.len() > MAX_ASSERTION_BYTES {
                    return Err(OAuthError::invalid_client("client_assertion is too large"));
                }
                ClientAuth::Assertion {
                    id: client_id.map(str::to_owned),
                    assertion: assertion.to_owned(),
                }
            }
            (None, None, Some(_), None) | (None, None, None, Some(_)) => {
                return Err(OAuthError::invalid_request(
                    "client_assertion and client_assertion_type go together",
                ))
            }
            (None, None, None, None) => match client_id {
                Some(id) => ClientAuth::Certificate { id: id.to_owned() },
                None => return Err(OAuthError::invalid_client("no client authentication")),
            },
        };
        Ok(TokenRequest {
            grant_type,
            scope,
            resources,
            auth,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    fn parse(
        params: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> Result<TokenRequest, OAuthError> {
        TokenRequest::parse(
            params.iter().copied(),
            basic.map(|(i, s)| (i.to_owned(), s.to_owned())),
        )
    }

    #[test]
    fn one_way_of_authenticating() {
        let basic = Some(("c", "s"));
        let r = parse(&[("grant_type", "client_credentials")], basic).unwrap();
        assert!(r.auth.accepts(AuthMethod::ClientSecretBasic));
        let r = parse(
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "c"),
                ("client_secret", "s"),
            ],
            None,
        )
        .unwrap();
        assert_eq!(
            r.auth,
            ClientAuth::Post {
                id: "c".into(),
                secret: "s".into()
            }
        );
        let r = parse(
            &[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", "a.b.c"),
            ],
            None,
        )
        .unwrap();
        assert!(r.auth.accepts(AuthMethod::PrivateKeyJwt));
        let code = |params: &[(&str, &str)], basic| parse(params, basic).unwrap_err().code;
        let g = ("grant_type", "client_credentials");
        assert_eq!(
            code(&[g, ("client_secret", "s")], basic),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            code(&[g, ("client_secret", "s")], None),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            code(&[g, ("client_id", "other")], basic),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            code(
                &[
                    g,
                    ("client_id", "c"),
                    ("client_secret", "s"),
                    ("client_assertion", "x")
                ],
                None
            ),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            code(
                &[
                    g,
                    ("client_assertion_type", "urn:other"),
                    ("client_assertion", "x")
                ],
                None
            ),
            ErrorCode::InvalidClient
        );
        assert_eq!(
            code(&[g, ("client_assertion", "x")], None),
            ErrorCode::InvalidRequest
        );
        // client_id alone: the connection's certificate is to authenticate it (RFC 8705).
        let r = parse(&[g, ("client_id", "c")], None).unwrap();
        assert_eq!(r.auth, ClientAuth::Certificate { id: "c".into() });
        assert!(r.auth.accepts(AuthMethod::TlsClientAuth));
        assert!(r.auth.accepts(AuthMethod::SelfSignedTlsClientAuth));
        assert!(!r.auth.accepts(AuthMethod::ClientSecretPost));
        assert_eq!(code(&[g], None), ErrorCode::InvalidClient);
        assert_eq!(code(&[("scope", "a")], basic), ErrorCode::InvalidRequest);
        // Without a value, a parameter is not there (RFC 6749 section 3.2).
        let r = parse(
            &[
                g,
                ("scope", ""),
                ("resource", ""),
                ("client_id", ""),
                ("client_secret", ""),
            ],
            basic,
        )
        .unwrap();
        assert_eq!((r.scope, r.resources.len()), (None, 0));
        assert!(r.auth.accepts(AuthMethod::ClientSecretBasic));
    }

    #[test]
    fn scopes_and_resources() {
        let basic = Some(("c", "s"));
        let r = parse(
            &[
                ("grant_type", "client_credentials"),
                ("scope", "a b"),
                ("resource", "https://api.example/"),
                ("resource", "https://api.example/"),
                ("resource", "urn:x:y"),
            ],
            basic,
        )
        .unwrap();
        assert_eq!(r.scope.unwrap().to_string(), "a b");
        assert_eq!(r.resources, ["https://api.example/", "urn:x:y"]);
        let code = |params: &[(&str, &str)]| parse(params, basic).unwrap_err().code;
        let g = ("grant_type", "client_credentials");
        assert_eq!(code(&[g, ("scope", "a  b")]), ErrorCode::InvalidScope);
        assert_eq!(
            code(&[g, ("resource", "relative/path")]),
            ErrorCode::InvalidTarget
        );
        assert_eq!(
            code(&[g, ("resource", "https://a/#f")]),
            ErrorCode::InvalidTarget
        );
    }
}
