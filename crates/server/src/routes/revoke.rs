//! `POST /revoke` (RFC 7009): a client with the `revoke` permission takes back a token of any
//! trusted issuer. The answer is 200 whether the token was valid, unknown or already invalid
//! (section 2.2), so it tells nothing about the token.

use std::net::IpAddr;

use engine::Revocation;
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};

use crate::app::App;
use crate::config::Permission;

use super::reply::{json, Refusal, Reply};
use super::request::{body, caller, media_type_is, token_param};
use super::verdict::{fingerprint, verdict};

/// How long a token-hash record lasts for a token without `exp` (a policy that does not
/// require one): a day.
const NO_EXP_KEEP_S: i64 = 86_400;

pub async fn revoke(app: &App, request: Request<Incoming>, peer: IpAddr) -> Result<Reply, Refusal> {
    if request.method() != Method::POST {
        return Err(Refusal::Method("POST"));
    }
    let client = caller(app, &request, peer, Permission::Revoke).await?;
    if !media_type_is(request.headers(), "application/x-www-form-urlencoded") {
        return Err(Refusal::UnsupportedMediaType);
    }
    let body = body(app, request).await?;
    let params = crate::form::parse(&body).map_err(|_| Refusal::BadRequest("invalid_request"))?;
    let token = token_param(&params)?;
    // `token_type_hint` is only a hint (section 2.1): every token is looked up the same way.
    let now = crate::unix_now();
    let revocation = if oauth::OpaqueToken::looks_like(token.as_bytes()) {
        opaque_revocation(app, token).await?
    } else {
        jwt_revocation(app, token, now).await?
    };
    // Invalid, unknown, expired or already revoked: nothing to take back, and nothing to say.
    let Some(revocation) = revocation else {
        return Ok(done());
    };
    match app.revocations.revoke(&app.engine, revocation).await {
        Ok(record) => {
            tracing::info!(
                client = %client,
                token = %fingerprint(token.as_bytes()),
                seq = record.seq,
                "token revoked"
            );
            Ok(done())
        }
        Err(e) => {
            tracing::error!(cause = %e, "revocation not recorded");
            Err(Refusal::Unavailable)
        }
    }
}

/// A JWT this daemon accepts is revoked by its `jti` (or, without one, its SHA-256).
async fn jwt_revocation(app: &App, token: &str, now: i64) -> Result<Option<Revocation>, Refusal> {
    let result = app.engine.verify(token.as_bytes(), now).await;
    let Ok(jwt) = verdict(token.as_bytes(), result)? else {
        return Ok(None);
    };
    let iss = jwt
        .str_claim("iss")
        .map(|s| s.into_owned())
        .unwrap_or_default();
    // Kept until the token would expire anyway (rounded up: never a second early).
    let exp = jwt.exp().map_or(now + NO_EXP_KEEP_S, |e| e.ceil() as i64);
    let revocation = match jwt.str_claim("jti") {
        Some(jti) => Revocation::Jti {
            iss,
            jti: jti.into_owned(),
            exp,
        },
        None => Revocation::Token {
            sha256: engine::revoked::sha256(token.as_bytes()),
            exp,
        },
    };
    Ok(Some(revocation))
}

/// An opaque token is revoked by the `jti` of its claims, which its phantom JWT carries too:
/// the record reaches every daemon's cache as a JWT's does. Unknown: nothing to do.
async fn opaque_revocation(app: &App, token: &str) -> Result<Option<Revocation>, Refusal> {
    let store = app.revocations.store();
    let row = crate::opaque::Opaque::claims(token.as_bytes(), store)
        .await
        .map_err(|e| {
            tracing::error!(cause = %e, "opaque token not looked up");
            Refusal::Unavailable
        })?;
    let Some(row) = row else {
        return Ok(None);
    };
    // Written by the token endpoint: an object with `iss` and `jti`.
    let claim = |name: &str| match jose::json::parse(&row.claims, 4) {
        Ok(jose::json::Value::Object(claims)) => match claims.get(name) {
            Some(jose::json::Value::String(value)) => value.to_str().into_owned(),
            _ => String::new(),
        },
        _ => String::new(),
    };
    let (iss, jti) = (claim("iss"), claim("jti"));
    if jti.is_empty() {
        tracing::error!(token = %fingerprint(token.as_bytes()), "stored opaque token without a jti");
        return Err(Refusal::Internal);
    }
    Ok(Some(Revocation::Jti {
        iss,
        jti,
        exp: row.exp,
    }))
}

/// Section 2.2: 200, and a body the client ignores.
fn done() -> Reply {
    json(StatusCode::OK, "{}", Some("no-store"))
}
