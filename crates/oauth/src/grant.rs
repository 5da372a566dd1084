//! What a grant gives a client that has authenticated: the scope, the audiences, the
//! lifetime and the format of its access token.

use crate::error::{ErrorCode, OAuthError};
use crate::registration::{Grant, Registration, TokenFormat};
use crate::request::{TokenRequest, GRANT_CLIENT_CREDENTIALS};
use crate::scope::Scope;

/// The access token a grant decided on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    pub scope: Scope,
    pub audiences: Vec<String>,
    /// Seconds.
    pub lifetime: u64,
    pub format: TokenFormat,
}

/// RFC 6749 section 4.4 for an authenticated client: the grant must be one it is registered
/// for (`unauthorized_client`), the scope a subset of its scopes (`invalid_scope`; none asked
/// for is all of them), each `resource` one of its audiences (`invalid_target`; none asked for
/// is all of them).
pub fn client_credentials(
    registration: &Registration,
    request: &TokenRequest,
) -> Result<Issue, OAuthError> {
    if request.grant_type != GRANT_CLIENT_CREDENTIALS {
        return Err(OAuthError::new(
            ErrorCode::UnsupportedGrantType,
            "this server issues tokens for client_credentials",
        ));
    }
    if !registration.grants.contains(&Grant::ClientCredentials) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "the client is not registered for client_credentials",
        ));
    }
    let scope = match &request.scope {
        None => registration.scopes.clone(),
        Some(asked) if asked.is_subset_of(&registration.scopes) => asked.clone(),
        Some(_) => {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                "the scope asked for is not within the client's",
            ))
        }
    };
    let audiences = if request.resources.is_empty() {
        registration.audiences.clone()
    } else {
        if let Some(unknown) = request
            .resources
            .iter()
            .find(|r| !registration.audiences.contains(r))
        {
            // The client's own request: safe to echo, and it says which one.
            return Err(OAuthError::new(
                ErrorCode::InvalidTarget,
                format!("the client may not ask for the resource {unknown}"),
            ));
        }
        request.resources.clone()
    };
    if audiences.is_empty() {
        return Err(OAuthError::new(
            ErrorCode::InvalidTarget,
            "the client has no audience registered",
        ));
    }
    Ok(Issue {
        scope,
        audiences,
        lifetime: registration.token_lifetime,
        format: registration.token_format,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registration::AuthMethod;
    use crate::request::ClientAuth;

    fn registration() -> Registration {
        Registration {
            grants: vec![Grant::ClientCredentials],
            scopes: Scope::parse("a b").unwrap(),
            audiences: vec!["https://one".into(), "https://two".into()],
            ..Registration::new(AuthMethod::ClientSecretBasic)
        }
    }

    fn request(scope: Option<&str>, resources: &[&str]) -> TokenRequest {
        TokenRequest {
            grant_type: GRANT_CLIENT_CREDENTIALS.into(),
            scope: scope.map(|s| Scope::parse(s).unwrap()),
            resources: resources.iter().map(|r| r.to_string()).collect(),
            auth: ClientAuth::Basic {
                id: "c".into(),
                secret: "s".into(),
            },
        }
    }

    #[test]
    fn grants_stay_within_the_registration() {
        let r = registration();
        let all = client_credentials(&r, &request(None, &[])).unwrap();
        assert_eq!(all.scope.to_string(), "a b");
        assert_eq!(all.audiences, ["https://one", "https://two"]);
        assert_eq!(all.lifetime, r.token_lifetime);
        let narrow = client_credentials(&r, &request(Some("b"), &["https://two"])).unwrap();
        assert_eq!(narrow.scope.to_string(), "b");
        assert_eq!(narrow.audiences, ["https://two"]);
        let code =
            |req: TokenRequest, r: &Registration| client_credentials(r, &req).unwrap_err().code;
        assert_eq!(code(request(Some("a c"), &[]), &r), ErrorCode::InvalidScope);
        assert_eq!(
            code(request(None, &["https://three"]), &r),
            ErrorCode::InvalidTarget
        );
        let mut other = request(None, &[]);
        other.grant_type = "password".into();
        assert_eq!(code(other, &r), ErrorCode::UnsupportedGrantType);
        let no_grant = Registration {
            grants: vec![],
            ..registration()
        };
        assert_eq!(
            code(request(None, &[]), &no_grant),
            ErrorCode::UnauthorizedClient
        );
    }
}
