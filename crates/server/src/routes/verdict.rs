//! The engine's verdict on a token as the endpoints read it: invalid tokens logged by
//! fingerprint, the whole request refused when the engine cannot answer.

use std::sync::Arc;

use jose::json::Value;

use super::reply::Refusal;

use crate::answers::Answers;
use crate::app::App;

/// A token as the engine verifies it.
pub enum ByValue<'t> {
    /// A JWT, as sent.
    Sent(&'t str),
    /// An opaque token's phantom JWT.
    Phantom(Arc<crate::opaque::Phantom>),
}

impl ByValue<'_> {
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            ByValue::Sent(token) => token.as_bytes(),
            ByValue::Phantom(phantom) => phantom.jwt.as_bytes(),
        }
    }
}

/// What the engine verifies for `token`: the token itself, or for an opaque token of ours its
/// phantom JWT (`crate::opaque`); `None` for an opaque token that is unknown or expired.
pub async fn by_value<'t>(app: &App, token: &'t str) -> Result<Option<ByValue<'t>>, Refusal> {
    if !oauth::OpaqueToken::looks_like(token.as_bytes()) {
        return Ok(Some(ByValue::Sent(token)));
    }
    match app
        .opaque
        .resolve(
            token.as_bytes(),
            app.revocations.store(),
            app.signer.as_ref(),
            crate::unix_now(),
        )
        .await
    {
        Ok(Some(phantom)) => Ok(Some(ByValue::Phantom(phantom))),
        Ok(None) => {
            log_refusal(token.as_bytes(), "unknown_opaque_token");
            Ok(None)
        }
        Err(e) => {
            tracing::error!(token = %fingerprint(token.as_bytes()), cause = %e, "opaque token not resolved");
            Err(Refusal::Unavailable)
        }
    }
}

/// A short SHA-256 fingerprint of a token, for logs.
pub fn fingerprint(token: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token);
    d.as_ref()[..6].iter().map(|b| format!("{b:02x}")).collect()
}

pub fn log_refusal(token: &[u8], code: &str) {
    if tracing::enabled!(tracing::Level::DEBUG) {
        tracing::debug!(token = %fingerprint(token), reason = code, "token refused");
    }
}

/// The engine's verdict on one token: `Ok(Some(jwt))`, `Ok(None)` when invalid (logged), or a
/// refusal of the whole request.
pub fn verdict(
    token: &[u8],
    result: Result<engine::Verified<Answers>, engine::EngineError>,
) -> Result<Result<engine::Verified<Answers>, &'static str>, Refusal> {
    use engine::EngineError;
    match result {
        Ok(jwt) => Ok(Ok(jwt)),
        Err(EngineError::Invalid(code)) => {
            log_refusal(token, code);
            Ok(Err(code))
        }
        Err(EngineError::Overloaded) => Err(Refusal::Overloaded),
        Err(EngineError::Shutdown) => Err(Refusal::Unavailable),
        Err(e) => {
            tracing::error!(token = %fingerprint(token), cause = %e, "verification failed");
            Ok(Err("internal_error"))
        }
    }
}

pub fn has_audience(jwt: &jose::Jwt, audience: &str) -> bool {
    match jwt.claim("aud") {
        Some(Value::String(s)) => s.eq_str(audience),
        Some(Value::Array(items)) => items
            .iter()
            .any(|v| v.as_str().is_some_and(|s| s.eq_str(audience))),
        _ => false,
    }
}
