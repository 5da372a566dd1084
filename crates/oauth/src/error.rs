//! Token endpoint errors as RFC 6749 section 5.2 names them.

use std::borrow::Cow;

/// The `error` of a refused token request (RFC 6749 section 5.2, RFC 8707 section 2).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// The client's: a missing, repeated or malformed parameter, or two ways of
    /// authenticating at once.
    InvalidRequest,
    /// The client's: unknown, not authenticated, or authenticated in a way it is not
    /// registered for. Answered 401.
    InvalidClient,
    /// The client's: a grant (assertion, code) that is invalid, expired or used.
    InvalidGrant,
    /// The client's: authenticated, but not registered for this grant type.
    UnauthorizedClient,
    /// The client's: a grant type this server does not issue for.
    UnsupportedGrantType,
    /// The client's: a scope it is not registered for, or malformed.
    InvalidScope,
    /// The client's: a `resource` it may not ask for (RFC 8707).
    InvalidTarget,
    /// The client's: a DPoP proof that fails a check or was used before (RFC 9449 section 5).
    InvalidDpopProof,
    /// The client's: a DPoP proof without a nonce the server gave out, or with a lapsed one
    /// (RFC 9449 section 8); the answer carries a fresh one.
    UseDpopNonce,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::InvalidTarget => "invalid_target",
            ErrorCode::InvalidDpopProof => "invalid_dpop_proof",
            ErrorCode::UseDpopNonce => "use_dpop_nonce",
        }
    }
}

/// A refused token request: the code and a description that is safe to send the client (it
/// never carries a secret, an assertion or a token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthError {
    pub code: ErrorCode,
    pub description: Cow<'static, str>,
}

impl OAuthError {
    pub fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        OAuthError {
            code,
            description: description.into(),
        }
    }

    pub fn invalid_request(description: impl Into<Cow<'static, str>>) -> Self {
        OAuthError::new(ErrorCode::InvalidRequest, description)
    }

    pub fn invalid_client(description: impl Into<Cow<'static, str>>) -> Self {
        OAuthError::new(ErrorCode::InvalidClient, description)
    }

    /// The RFC 6749 section 5.2 body: `{"error":...,"error_description":...}`.
    pub fn to_json(&self) -> String {
        let mut out = String::from("{\"error\":\"");
        out.push_str(self.code.as_str());
        out.push_str("\",\"error_description\":");
        // RFC 6749: the description is printable ASCII without `"` and `\`.
        let description: String = self
            .description
            .chars()
            .map(|c| match c {
                '\x20'..='\x7e' if c != '"' && c != '\\' => c,
                _ => '?',
            })
            .collect();
        jose::json::write_str(&mut out, &description);
        out.push('}');
        out
    }
}

impl std::fmt::Display for OAuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.description)
    }
}

impl std::error::Error for OAuthError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_stay_within_the_rfc_character_set() {
        let e = OAuthError::invalid_request("a \"quoted\" \\ caf\u{e9}\n");
        assert_eq!(
            e.to_json(),
            r#"{"error":"invalid_request","error_description":"a ?quoted? ? caf??"}"#
        );
    }
}
