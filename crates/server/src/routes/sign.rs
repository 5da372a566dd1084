//! `POST /v1/sign`: issuers that mint their own claims have them signed by the HSM. The caller
//! is a client with the `sign` permission; its claims policy (`oauth::SignPolicy`) says which
//! `iss` and `aud` it may use, how long its tokens may live and which claims it may not set.
//! tessera sets `iat`, `exp`, `jti` and the header (`typ: JWT`: such a token never passes as one
//! of tessera's own access tokens, which are `at+jwt`). A refusal names the rule it broke.

use std::net::IpAddr;

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};

use crate::app::App;
use crate::config::Permission;

use super::reply::{json, Refusal, Reply};
use super::request::{body, caller, media_type_is};
use super::verdict::fingerprint;

/// The header's `typ` of what the signing API signs.
const TYP: &str = "JWT";

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SignRequest {
    /// Read again with jose's strict reader (duplicate members refused) by the policy.
    claims: Box<serde_json::value::RawValue>,
    lifetime_s: Option<u64>,
}

pub async fn sign(app: &App, request: Request<Incoming>, peer: IpAddr) -> Result<Reply, Refusal> {
    if request.method() != Method::POST {
        return Err(Refusal::Method("POST"));
    }
    let signer = app.signer.as_ref().ok_or(Refusal::NotFound)?;
    let client = caller(app, &request, peer, Permission::Sign).await?;
    if !media_type_is(request.headers(), "application/json") {
        return Err(Refusal::UnsupportedMediaType);
    }
    let body = body(app, request).await?;
    let asked: SignRequest =
        serde_json::from_slice(&body).map_err(|_| Refusal::BadRequest("invalid_request"))?;
    // The permission is granted only with a policy (a registration's rule).
    let policy = app
        .clients
        .get(&client)
        .and_then(|c| c.registration.sign.clone())
        .ok_or(Refusal::NotPermitted)?;
    let jti = oauth::new_jti();
    let claims = policy
        .apply(
            asked.claims.get(),
            asked.lifetime_s,
            crate::unix_now(),
            &jti,
        )
        .map_err(|refusal| {
            tracing::info!(client = %client, rule = refusal.rule, "signing refused");
            Refusal::Policy(refusal)
        })?;
    let signed = signer.sign_async(claims, TYP).await;
    let counter = if signed.is_ok() {
        &app.metrics.hsm_signatures
    } else {
        &app.metrics.hsm_errors
    };
    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let token = signed.map_err(|e| {
        tracing::error!(cause = %e, "token not signed");
        Refusal::Unavailable
    })?;
    tracing::info!(client = %client, jti = %jti, token = %fingerprint(token.as_bytes()), "token signed");
    let mut out = String::with_capacity(token.len() + 16);
    out.push_str("{\"token\":");
    jose::json::write_str(&mut out, &token);
    out.push('}');
    Ok(json(StatusCode::OK, out, Some("no-store")))
}
