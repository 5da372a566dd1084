//! `POST /v1/verify`: a batch of tokens, one verdict each.

use std::net::IpAddr;

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};

use crate::app::App;
use crate::config::Permission;

use super::reply::{json, Refusal, Reply};
use super::request::{body, caller, media_type_is};
use super::verdict::{has_audience, log_refusal, verdict};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyRequest {
    tokens: Vec<String>,
    audience: Option<String>,
}

pub async fn verify(app: &App, request: Request<Incoming>, peer: IpAddr) -> Result<Reply, Refusal> {
    if request.method() != Method::POST {
        return Err(Refusal::Method("POST"));
    }
    caller(app, &request, peer, Permission::Introspect).await?;
    if !media_type_is(request.headers(), "application/json") {
        return Err(Refusal::UnsupportedMediaType);
    }
    let body = body(app, request).await?;
    let parsed: VerifyRequest =
        serde_json::from_slice(&body).map_err(|_| Refusal::BadRequest("invalid_request"))?;
    if parsed.tokens.len() > app.limits.batch_max_tokens {
        return Err(Refusal::TooLarge);
    }
    let tokens: Vec<&[u8]> = parsed.tokens.iter().map(|t| t.as_bytes()).collect();
    let results = app.engine.verify_batch(&tokens, crate::unix_now()).await;
    let mut out = String::with_capacity(64 + 256 * tokens.len());
    out.push_str("{\"results\":[");
    for (i, (token, result)) in tokens.iter().zip(results).enumerate() {
        if i > 0 {
            out.push(',');
        }
        let verdict = verdict(token, result)?.and_then(|jwt| match &parsed.audience {
            Some(aud) if !has_audience(&jwt, aud) => {
                log_refusal(token, "invalid_audience");
                Err("invalid_audience")
            }
            _ => Ok(jwt),
        });
        match verdict {
            Ok(jwt) => {
                out.push_str("{\"active\":true,\"claims\":");
                out.push_str(jwt.claims_json());
                out.push('}');
            }
            Err(code) => out.push_str(&format!("{{\"active\":false,\"error\":\"{code}\"}}")),
        }
    }
    out.push_str("]}");
    Ok(json(StatusCode::OK, out, Some("no-store")))
}
