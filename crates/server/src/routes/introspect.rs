//! `POST /introspect` (RFC 7662), answered as JSON or, on request, as a JWT signed by the
//! HSM (RFC 9701).

use std::net::IpAddr;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use jose::json::Value;

use crate::app::App;
use crate::config::Permission;

use super::reply::{json, Refusal, Reply};
use super::request::{body, caller, media_type_is, token_param};
use super::verdict::{by_value, log_refusal, verdict};
use crate::answers::{Answers, Identity};

const INTROSPECTION_JWT: &str = "application/token-introspection+jwt";
/// The claims RFC 7662 section 2.2 names that an active answer carries, and the confirmation
/// (RFC 9449 section 6.2, RFC 8705 section 3.2).
const INTROSPECTED: [&str; 10] = [
    "cnf",
    "scope",
    "client_id",
    "sub",
    "aud",
    "iss",
    "exp",
    "iat",
    "nbf",
    "jti",
];

pub async fn introspect(
    app: &App,
    request: Request<Incoming>,
    peer: IpAddr,
) -> Result<Reply, Refusal> {
    if request.method() != Method::POST {
        return Err(Refusal::Method("POST"));
    }
    let client = caller(app, &request, peer, Permission::Introspect).await?;
    let wants_jwt = request
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|m| {
            m.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case(INTROSPECTION_JWT)
        });
    if wants_jwt && app.signer.is_none() {
        return Err(Refusal::NotAcceptable);
    }
    if !media_type_is(request.headers(), "application/x-www-form-urlencoded") {
        return Err(Refusal::UnsupportedMediaType);
    }
    let body = body(app, request).await?;
    let params = crate::form::parse(&body).map_err(|_| Refusal::BadRequest("invalid_request"))?;
    let token = token_param(&params)?;
    let now = crate::unix_now();
    let answer = match by_value(app, token).await? {
        Some(token) => answer(app, token.as_bytes(), now).await?,
        None => INACTIVE,
    };
    if !wants_jwt {
        return Ok(json(StatusCode::OK, answer, Some("no-store")));
    }
    // Made from a String: always UTF-8, so never lossy.
    let answer = String::from_utf8_lossy(&answer);
    // RFC 9701: the answer inside a JWT signed by this daemon's key, its `iss` the RFC 8414
    // `issuer`.
    let mut claims = String::from("{\"iss\":");
    jose::json::write_str(&mut claims, &app.public_url);
    claims.push_str(",\"aud\":");
    jose::json::write_str(&mut claims, &client);
    claims.push_str(&format!(
        ",\"iat\":{now},\"token_introspection\":{answer}}}"
    ));
    let signer = app.signer.clone().ok_or(Refusal::NotAcceptable)?;
    let signed = signer
        .sign_async(claims, jose::jwt::INTROSPECTION_RESPONSE)
        .await;
    match signed {
        Ok(jwt) => {
            app.metrics
                .hsm_signatures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut r = Response::new(Full::new(Bytes::from(jwt)));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(INTROSPECTION_JWT),
            );
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            Ok(r)
        }
        Err(e) => {
            app.metrics
                .hsm_errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::error!(cause = %e, "introspection response not signed");
            Err(Refusal::Unavailable)
        }
    }
}

const INACTIVE: Bytes = Bytes::from_static(b"{\"active\":false}");

/// The JSON answer for `token` (a JWT: an opaque token's phantom one, or as sent).
async fn answer(app: &App, token: &[u8], now: i64) -> Result<Bytes, Refusal> {
    let result = app.engine.verify(token, now).await;
    Ok(match verdict(token, result)? {
        Ok(jwt) => {
            let answer = Answers::introspection(&app.engine, &jwt, || {
                active_answer(&jwt).map_or((INACTIVE, 0), |answer| {
                    let capacity = answer.capacity();
                    (Bytes::from(answer), capacity)
                })
            });
            if answer == INACTIVE {
                log_refusal(token, "invalid_scope");
            }
            answer
        }
        Err(_) => INACTIVE,
    })
}

/// `{"active":true, ...}` with the RFC 7662 members the token has, in one pass over the claims;
/// `None` when its scopes are not scope-tokens (`Identity::scopes`): a resource server that
/// splits `scope` on whitespace would read other scopes than the issuer granted.
fn active_answer(jwt: &jose::Jwt) -> Option<String> {
    Identity::of(jwt).scopes()?;
    // The most it can take: every claim is one, `azp` may become `client_id`, and the
    // members added.
    let mut out = String::with_capacity(jwt.claims_json().len() + 48);
    out.push_str("{\"active\":true");
    let mut client_id = false;
    let mut dpop = false;
    let mut azp = None;
    for (name, value) in jwt.claims() {
        if name.eq_str("azp") {
            azp = Some(value);
            continue;
        }
        // Compared after unescaping; written under the canonical name.
        let Some(&name) = INTROSPECTED.iter().find(|&&known| name.eq_str(known)) else {
            continue;
        };
        client_id |= name == "client_id";
        if name == "cnf" {
            dpop = matches!(value, Value::Object(cnf) if cnf.get("jkt").is_some());
        }
        push_member(&mut out, name, value);
    }
    // `azp` is the OpenID Connect name for the client.
    if let (false, Some(azp)) = (client_id, azp) {
        push_member(&mut out, "client_id", azp);
    }
    // A DPoP-bound token is of type DPoP (RFC 9449 section 6.2); a certificate-bound one
    // stays Bearer (RFC 8705).
    out.push_str(if dpop {
        ",\"token_type\":\"DPoP\"}"
    } else {
        ",\"token_type\":\"Bearer\"}"
    });
    Some(out)
}

fn push_member(out: &mut String, name: &str, value: Value<'_>) {
    out.push_str(",\"");
    out.push_str(name);
    out.push_str("\":");
    match value {
        // The raw text between the quotes, escapes kept: valid inside quotes.
        Value::String(s) => {
            out.push('"');
            out.push_str(s.raw());
            out.push('"');
        }
        other => out.push_str(&jose::json::minify(other.as_json())),
    }
}
