//! The endpoints, one file each. Each handler turns a request into a [`Reply`]; refusals are
//! mapped to HTTP in one place ([`Refusal::reply`]). Callers see vague verdicts (`active: false`,
//! `invalid_token`); logs and metrics get the precise reason, with tokens as fingerprints.
//!
//! Endpoint files use the leaf modules (`reply`, `request`, `verdict`, `proof`, `answers`), never each
//! other nor this one.

mod authz;
mod introspect;
mod meta;
mod proof;
mod reply;
mod request;
mod revocations;
mod revoke;
mod sign;
mod token;
mod verdict;
mod verify;

use std::net::IpAddr;

use hyper::body::Incoming;
use hyper::Request;

use crate::app::App;
use crate::metrics::Endpoint;

pub use reply::{Challenge, Refusal, Reply};
pub use verdict::fingerprint;

/// Which endpoint a path belongs to.
pub fn endpoint(path: &str) -> Endpoint {
    match path {
        "/introspect" => Endpoint::Introspect,
        "/v1/verify" => Endpoint::Verify,
        "/v1/authz" => Endpoint::Authz,
        p if p.starts_with("/v1/authz/") => Endpoint::Authz,
        "/.well-known/jwks.json" => Endpoint::Jwks,
        "/.well-known/oauth-authorization-server" => Endpoint::Discovery,
        "/metrics" => Endpoint::Metrics,
        "/healthz" => Endpoint::Healthz,
        "/readyz" => Endpoint::Readyz,
        "/revoke" => Endpoint::Revoke,
        "/v1/revocations" => Endpoint::Revocations,
        "/token" => Endpoint::Token,
        "/v1/sign" => Endpoint::Sign,
        _ => Endpoint::Other,
    }
}

/// Answers `request`, which came from `peer`.
pub async fn handle(
    app: &App,
    endpoint: Endpoint,
    request: Request<Incoming>,
    peer: IpAddr,
) -> Reply {
    // A daemon that cannot know what was revoked lately verifies nothing, nor issues to
    // clients that may have been removed or given new secrets meanwhile (unless the operator
    // chose to serve stale).
    if matches!(
        endpoint,
        Endpoint::Introspect
            | Endpoint::Verify
            | Endpoint::Authz
            | Endpoint::Token
            | Endpoint::Sign
    ) && app.revocations.refuses()
    {
        return Refusal::StoreBehind.reply();
    }
    let result = match endpoint {
        Endpoint::Introspect => introspect::introspect(app, request, peer).await,
        Endpoint::Verify => verify::verify(app, request, peer).await,
        Endpoint::Authz => authz::authz(app, &request).await,
        Endpoint::Jwks => meta::jwks(app, &request),
        Endpoint::Discovery => meta::discovery(app, &request),
        Endpoint::Metrics => meta::metrics(app, &request),
        Endpoint::Healthz => meta::healthz(&request),
        Endpoint::Readyz => meta::readyz(app, &request),
        Endpoint::Revoke => revoke::revoke(app, request, peer).await,
        Endpoint::Revocations => revocations::revocations(app, request, peer).await,
        Endpoint::Token => token::token(app, request, peer).await,
        Endpoint::Sign => sign::sign(app, request, peer).await,
        Endpoint::Other => Err(Refusal::NotFound),
    };
    result.unwrap_or_else(Refusal::reply)
}
