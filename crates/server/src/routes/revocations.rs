//! `/v1/revocations`, for clients with the `admin` permission: `POST` records a revocation by
//! `jti`, by subject or by client (every token issued before a time), or by a token's SHA-256;
//! `GET` lists the store's records.

use std::fmt::Write as _;
use std::net::IpAddr;

use engine::Revocation;
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};

use crate::app::App;
use crate::config::Permission;

use super::reply::{json, Refusal, Reply};
use super::request::{body, caller, media_type_is};

/// Records listed by `GET`.
const LIST_LIMIT: usize = 1_000;

/// One record to write: exactly one of `jti`, `sub`, `client_id`, `token_sha256`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRevocation {
    jti: Option<String>,
    sub: Option<String>,
    client_id: Option<String>,
    /// Lowercase or uppercase hex of the compact token's SHA-256.
    token_sha256: Option<String>,
    /// The issuer of `jti` and `sub`.
    iss: Option<String>,
    /// When a `jti` or `token_sha256` record may go: the token's `exp`.
    exp: Option<i64>,
    /// `sub` and `client_id`: tokens issued before this are revoked (default: now).
    before: Option<i64>,
}

pub async fn revocations(
    app: &App,
    request: Request<Incoming>,
    peer: IpAddr,
) -> Result<Reply, Refusal> {
    if request.method() != Method::POST && request.method() != Method::GET {
        return Err(Refusal::Method("GET, POST"));
    }
    let client = caller(app, &request, peer, Permission::Admin).await?;
    if request.method() == Method::GET {
        return list(app).await;
    }
    if !media_type_is(request.headers(), "application/json") {
        return Err(Refusal::UnsupportedMediaType);
    }
    let body = body(app, request).await?;
    let new: NewRevocation =
        serde_json::from_slice(&body).map_err(|_| Refusal::BadRequest("invalid_request"))?;
    let revocation = new
        .into_revocation(crate::unix_now())
        .ok_or(Refusal::BadRequest("invalid_request"))?;
    let record = app
        .revocations
        .revoke(&app.engine, revocation)
        .await
        .map_err(|e| {
            tracing::error!(cause = %e, "revocation not recorded");
            Refusal::Unavailable
        })?;
    tracing::info!(client = %client, seq = record.seq, kind = record.revocation.kind(), "revocation added");
    Ok(json(StatusCode::CREATED, render(&record), Some("no-store")))
}

impl NewRevocation {
    /// The record asked for, if the members make exactly one.
    fn into_revocation(self, now: i64) -> Option<Revocation> {
        let named = [
            self.jti.is_some(),
            self.sub.is_some(),
            self.client_id.is_some(),
            self.token_sha256.is_some(),
        ];
        if named.iter().filter(|&&n| n).count() != 1 {
            return None;
        }
        let date = |t: i64| (0..=jose::date::MAX_NUMERIC_DATE).contains(&t).then_some(t);
        if let Some(jti) = self.jti {
            return (self.before.is_none() && !jti.is_empty()).then_some(Revocation::Jti {
                iss: self.iss?,
                jti,
                exp: date(self.exp?)?,
            });
        }
        if let Some(hex) = self.token_sha256 {
            return (self.iss.is_none() && self.before.is_none()).then_some(Revocation::Token {
                sha256: engine::revoked::sha256_from_hex(&hex)?,
                exp: date(self.exp?)?,
            });
        }
        if self.exp.is_some() {
            return None;
        }
        let before = date(self.before.unwrap_or(now))?;
        if let Some(sub) = self.sub {
            return Some(Revocation::Subject {
                iss: self.iss?,
                sub,
                before,
            });
        }
        let client_id = self.client_id?;
        self.iss
            .is_none()
            .then_some(Revocation::Client { client_id, before })
    }
}

async fn list(app: &App) -> Result<Reply, Refusal> {
    let records = app.revocations.list(LIST_LIMIT).await.map_err(|e| {
        tracing::error!(cause = %e, "revocations not listed");
        Refusal::Unavailable
    })?;
    let mut out = format!(
        "{{\"last_applied_seq\":{},\"revocations\":[",
        app.revocations.last_seq()
    );
    for (i, record) in records.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&render(record));
    }
    out.push_str("]}");
    Ok(json(StatusCode::OK, out, Some("no-store")))
}

/// One record as JSON, with the members `POST` takes.
fn render(record: &store::Record) -> String {
    let mut out = format!(
        "{{\"seq\":{},\"created\":{},\"kind\":\"{}\"",
        record.seq,
        record.created,
        record.revocation.kind()
    );
    let mut member = |name: &str, value: &str| {
        let _ = write!(out, ",\"{name}\":");
        jose::json::write_str(&mut out, value);
    };
    let time = match &record.revocation {
        Revocation::Jti { iss, jti, exp } => {
            member("iss", iss);
            member("jti", jti);
            ("exp", *exp)
        }
        Revocation::Subject { iss, sub, before } => {
            member("iss", iss);
            member("sub", sub);
            ("before", *before)
        }
        Revocation::Client { client_id, before } => {
            member("client_id", client_id);
            ("before", *before)
        }
        Revocation::Token { sha256, exp } => {
            member("token_sha256", &engine::revoked::sha256_hex(sha256));
            ("exp", *exp)
        }
    };
    let _ = write!(out, ",\"{}\":{}}}", time.0, time.1);
    out
}
