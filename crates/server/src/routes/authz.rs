//! `/v1/authz` (forward-auth): the original request a gateway asks about, the bearer token,
//! the route rules, and the identity headers of a request let through.

use std::borrow::Cow;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Request, Response};

use crate::app::App;
use crate::config::{CertificateSource, OriginalFrom};
use crate::ClientCertificate;
use engine::revoked::sha256;

use super::proof::Failure;
use super::reply::{Challenge, DpopError, Refusal, Reply, DPOP_NONCE};
use super::verdict::{by_value, has_audience, log_refusal, verdict, ByValue};
use crate::answers::{Answers, AuthzAnswer, Binding, Field};

/// The original request a gateway asks about: method and normalised path. Method and URI come
/// together from one header family, `X-Forwarded-*` (Traefik, Caddy) or `X-Original-*` (nginx),
/// or from the request itself with `/v1/authz` stripped (Envoy). When both families are present
/// they must agree: a client may have sent one of them through a gateway that sets the other.
/// Half a family (a method without a URI, or the reverse) is refused.
/// Also returns the path as it came (with any query), which a DPoP proof's `htu` names.
fn original(
    request: &Request<Incoming>,
    from: OriginalFrom,
) -> Result<(&str, Cow<'_, str>, &str), Refusal> {
    // One pass over the request's headers (a handful) rather than four hashed lookups. A header
    // given twice may be one from the client and one from the gateway: refused.
    let mut found: [Option<&HeaderValue>; 4] = [None; 4];
    for (name, value) in request.headers() {
        let slot = match name.as_str() {
            "x-forwarded-method" => 0,
            "x-forwarded-uri" => 1,
            "x-original-method" => 2,
            "x-original-uri" => 3,
            _ => continue,
        };
        if found[slot].replace(value).is_some() {
            return Err(Refusal::BadRequest("repeated_forwarded_header"));
        }
    }
    let mut text = [None; 4];
    for (text, value) in text.iter_mut().zip(found) {
        *text = value
            .map(HeaderValue::to_str)
            .transpose()
            .map_err(|_| Refusal::BadRequest("invalid_request"))?;
    }
    let forwarded = (text[0], text[1]);
    let original = (text[2], text[3]);
    let present = |f: &(Option<&str>, Option<&str>)| f.0.is_some() || f.1.is_some();
    let family = match from {
        // Only the configured source counts; the others are whatever the client sent.
        OriginalFrom::XForwarded => Some(forwarded),
        OriginalFrom::XOriginal => Some(original),
        OriginalFrom::Request => None,
        OriginalFrom::Any => match (present(&forwarded), present(&original)) {
            (true, true) if forwarded != original => {
                return Err(Refusal::BadRequest("conflicting_forwarded_headers"))
            }
            (true, _) => Some(forwarded),
            (false, true) => Some(original),
            (false, false) => None,
        },
    };
    if let Some((None, _) | (_, None)) = family {
        // Gateways set both. Half a family did not come whole from one: completing it from the
        // request itself would judge nginx's sub-request method (always GET) for a DELETE.
        return Err(Refusal::BadRequest("missing_forwarded_headers"));
    }
    let (method, uri) = family.unwrap_or((None, None));
    let method = method.unwrap_or(request.method().as_str());
    let path = match uri {
        Some(uri) => uri,
        None => {
            // Envoy ext_authz (HTTP) appends the original path to the configured prefix.
            let path = request.uri().path();
            match path.strip_prefix("/v1/authz") {
                Some("") => "/",
                Some(rest) => rest,
                None => path,
            }
        }
    };
    let normal = crate::path::normalize_path(path).ok_or(Refusal::BadRequest("invalid_path"))?;
    Ok((method, normal, path))
}

/// How the access token came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheme {
    /// RFC 6750.
    Bearer,
    /// RFC 9449 section 7.1, with a proof in the `DPoP` header.
    Dpop,
}

/// The access token and its scheme: `Ok(None)` when the request carries none (no header,
/// another scheme), `Err` with the scheme when it carries a malformed one (RFC 6750 section
/// 3.1: `invalid_request`).
fn credentials(request: &Request<Incoming>) -> Result<Option<(&str, Scheme)>, Scheme> {
    let Some(value) = request.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| Scheme::Bearer)?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        Scheme::Bearer
    } else if scheme.eq_ignore_ascii_case("dpop") {
        Scheme::Dpop
    } else {
        return Ok(None);
    };
    match token.trim() {
        "" => Err(scheme),
        token => Ok(Some((token, scheme))),
    }
}

/// The one `DPoP` header of a request (RFC 9449 section 4.3, step 1).
fn proof_header(request: &Request<Incoming>) -> Option<&str> {
    let mut proofs = request.headers().get_all("dpop").iter();
    match (proofs.next(), proofs.next()) {
        (Some(proof), None) => proof.to_str().ok(),
        _ => None,
    }
}

/// Answers a gateway asking whether the original request may pass: 200 with the identity
/// headers, or a refusal.
pub async fn authz(app: &App, request: &Request<Incoming>) -> Result<Reply, Refusal> {
    let (method, path, raw_path) = original(request, app.authz.config.original_from)?;
    let dpop = |error| dpop_refusal(app, error);
    let (token, scheme) = match credentials(request) {
        Ok(Some(found)) => found,
        // RFC 6750 section 3.1: no error code when no credentials were presented...
        Ok(None) => return Err(Refusal::Bearer(Challenge::NoToken)),
        // ...and 400 for a malformed request.
        Err(Scheme::Bearer) => return Err(Refusal::Bearer(Challenge::InvalidRequest)),
        Err(Scheme::Dpop) => return Err(dpop(DpopError::InvalidRequest)),
    };
    let invalid = || match scheme {
        Scheme::Bearer => Refusal::Bearer(Challenge::InvalidToken),
        Scheme::Dpop => dpop(DpopError::InvalidToken),
    };
    let proof = match scheme {
        Scheme::Bearer => None,
        Scheme::Dpop => Some(proof_header(request).ok_or_else(|| dpop(DpopError::InvalidRequest))?),
    };
    let by_value = by_value(app, token).await?.ok_or_else(invalid)?;
    let now = crate::unix_now();
    let result = app.engine.verify(by_value.as_bytes(), now).await;
    let jwt = verdict(by_value.as_bytes(), result)?.map_err(|_| invalid())?;
    let answer = Answers::authz(&app.engine, &jwt, app.authz.claims.is_some());
    // What the token is bound to decides how it may come; a verdict on a proof is never
    // cached (each is checked, and remembered, on its request).
    let mut x5t_bound = None;
    let jkt = match (answer.binding(), proof) {
        (Binding::Bearer, None) => None,
        // RFC 8705 section 3: a certificate-bound token comes as Bearer, with its certificate.
        (Binding::X5t(x5t), None) => {
            check_certificate(app, request, x5t, token)?;
            x5t_bound = Some(x5t);
            None
        }
        (Binding::Jkt(jkt), Some(proof)) => {
            let uri = app
                .authz
                .config
                .dpop
                .origin
                .as_deref()
                .map(|origin| format!("{origin}{raw_path}"))
                .ok_or_else(|| {
                    tracing::warn!("a DPoP-bound token, and no [authz.dpop] origin to check its proof's htu with");
                    invalid()
                })?;
            let nonce = check_proof(app, proof, method, &uri, token, jkt, now).await?;
            Some((jkt, nonce))
        }
        (binding, _) => {
            let code = match binding {
                Binding::Jkt(_) => "dpop_bound_as_bearer",
                Binding::Bearer => "not_dpop_bound",
                Binding::X5t(_) => "certificate_bound_as_dpop",
                Binding::Unknown => "unknown_confirmation",
            };
            log_refusal(token.as_bytes(), code);
            return Err(invalid());
        }
    };
    let mut reply = authorize(app, method, &path, token, &jwt, answer)?;
    if let (Some(name), Some(x5t)) = (&app.authz.cnf_x5t, x5t_bound) {
        if let Ok(value) = HeaderValue::from_str(x5t) {
            reply.headers_mut().insert(name.clone(), value);
        }
    }
    if let Some((jkt, nonce)) = jkt {
        if let Some(name) = &app.authz.cnf_jkt {
            if let Ok(value) = HeaderValue::from_str(jkt) {
                reply.headers_mut().insert(name.clone(), value);
            }
        }
        // For the gateway to relay to the client (RFC 9449 section 8.2).
        if let Some(nonce) = nonce.and_then(|n| HeaderValue::from_str(&n).ok()) {
            reply.headers_mut().insert(DPOP_NONCE, nonce);
        }
    }
    // The phantom-token pattern: the opaque token's JWT goes upstream with the request.
    // A JWT sent as it is goes on as it came, so that one gateway configuration serves
    // clients of both kinds.
    if let Some(name) = &app.authz.phantom {
        let bearer = match &by_value {
            ByValue::Phantom(phantom) => Some(phantom.bearer.clone()),
            ByValue::Sent(_) => request.headers().get(header::AUTHORIZATION).cloned(),
        };
        if let Some(bearer) = bearer {
            reply.headers_mut().insert(name.clone(), bearer);
        }
    }
    Ok(reply)
}

/// A `WWW-Authenticate: DPoP` refusal naming the proof algorithms accepted.
fn dpop_refusal(app: &App, error: DpopError) -> Refusal {
    Refusal::Dpop {
        error,
        algs: app.authz.dpop_algs.clone(),
        nonce: None,
    }
}

/// RFC 9449 section 4.3: the proof for this request, by the key the token is bound to, and
/// never accepted before; the nonce the answer should carry, if any.
async fn check_proof(
    app: &App,
    proof: &str,
    method: &str,
    uri: &str,
    token: &str,
    jkt: &str,
    now: i64,
) -> Result<Option<String>, Refusal> {
    let settings = &app.authz.config.dpop;
    let expected = oauth::dpop::Expected {
        method,
        uri,
        access_token: Some(token),
        jkt: Some(jkt),
        now,
        window_s: settings.window_s,
        algorithms: &settings.algorithms,
    };
    match super::proof::accept(app, proof, &expected, token.as_bytes()).await {
        Ok(accepted) => Ok(accepted.next_nonce),
        Err(Failure::Invalid) => Err(dpop_refusal(app, DpopError::InvalidProof)),
        Err(Failure::UseNonce(nonce)) => Err(Refusal::Dpop {
            error: DpopError::UseNonce,
            algs: app.authz.dpop_algs.clone(),
            nonce: Some(nonce),
        }),
        Err(Failure::Full) => Err(Refusal::Overloaded),
        Err(Failure::Unavailable) => Err(Refusal::Unavailable),
    }
}

/// RFC 8705 section 3: the client certificate the gateway saw, from the one configured
/// source, is the one the token is bound to (`cnf.x5t#S256`, compared in constant time).
fn check_certificate(
    app: &App,
    request: &Request<Incoming>,
    x5t: &str,
    token: &str,
) -> Result<(), Refusal> {
    let invalid = |code| {
        log_refusal(token.as_bytes(), code);
        Refusal::Bearer(Challenge::InvalidToken)
    };
    let presented: Option<[u8; 32]> =
        match (&app.authz.config.certificate, &app.authz.certificate_header) {
            (None, _) => {
                tracing::warn!(
                    "a certificate-bound token, and no [authz.certificate] source to check it with"
                );
                return Err(invalid("no_certificate_source"));
            }
            (Some(CertificateSource::Tls), _) => request
                .extensions()
                .get::<ClientCertificate>()
                .map(|c| sha256(c.leaf())),
            (Some(CertificateSource::Header { .. }), Some((name, format))) => {
                let mut values = request.headers().get_all(name).iter();
                match (values.next(), values.next()) {
                    (None, _) => None,
                    (Some(value), None) => {
                        let value = value
                            .to_str()
                            .map_err(|_| Refusal::BadRequest("invalid_certificate_header"))?;
                        oauth::forwarded::certificate_sha256(value, *format).map_err(|e| {
                            tracing::info!(cause = %e, "forwarded client certificate not read");
                            Refusal::BadRequest("invalid_certificate_header")
                        })?
                    }
                    // One from the client and one from the gateway, maybe: refused.
                    (Some(_), Some(_)) => {
                        return Err(Refusal::BadRequest("repeated_certificate_header"))
                    }
                }
            }
            (Some(CertificateSource::Header { .. }), None) => return Err(Refusal::Internal),
        };
    let presented = presented.ok_or_else(|| invalid("no_client_certificate"))?;
    let presented = jose::b64::encode(&presented);
    let same = presented.len() == x5t.len()
        && presented
            .bytes()
            .zip(x5t.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err(invalid("certificate_mismatch"))
    }
}

/// The route rules applied to a verified token, and the identity headers when they let it pass.
fn authorize(
    app: &App,
    method: &str,
    path: &str,
    token: &str,
    jwt: &jose::Jwt,
    answer: &AuthzAnswer,
) -> Result<Reply, Refusal> {
    // Scopes that a backend could read otherwise than the rules do: no rule may see them and
    // no header may carry them, whatever the route.
    if !answer.scopes_valid() {
        log_refusal(token.as_bytes(), "invalid_scope");
        return Err(Refusal::Bearer(Challenge::InvalidToken));
    }
    let rules = &app.authz.config;
    let route = rules
        .routes
        .iter()
        .filter(|r| rules.path_case.has_prefix(path, &r.prefix))
        .filter(|r| {
            r.methods.is_empty() || r.methods.iter().any(|m| m.eq_ignore_ascii_case(method))
        })
        .max_by_key(|r| r.prefix.len());
    match route {
        None if rules.deny_unmatched => {
            log_refusal(token.as_bytes(), "no_route");
            return Err(Refusal::Bearer(Challenge::InsufficientScope(None)));
        }
        None => {}
        Some(route) => {
            if let Some(aud) = &route.audience {
                if !has_audience(jwt, aud) {
                    log_refusal(token.as_bytes(), "invalid_audience");
                    return Err(Refusal::Bearer(Challenge::InvalidToken));
                }
            }
            if !route.scopes.iter().all(|need| answer.has_scope(need)) {
                log_refusal(token.as_bytes(), "insufficient_scope");
                return Err(Refusal::Bearer(Challenge::InsufficientScope(Some(
                    route.scopes.join(" "),
                ))));
            }
        }
    }
    let mut r = Response::new(Full::new(Bytes::new()));
    // Room for the identity headers, Cache-Control and what hyper adds (Content-Length, Date):
    // no growing on the way.
    *r.headers_mut() = HeaderMap::with_capacity(10);
    let h = r.headers_mut();
    let a = &app.authz;
    for (name, field) in [
        (&a.subject, Field::Subject),
        (&a.scope, Field::Scope),
        (&a.client_id, Field::ClientId),
        (&a.issuer, Field::Issuer),
    ] {
        if let Some((name, value)) = name.as_ref().zip(answer.value(field)) {
            h.insert(name.clone(), value);
        }
    }
    if let (Some(name), Some(value)) = (&a.claims, &answer.claims) {
        h.insert(name.clone(), value.clone());
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}
