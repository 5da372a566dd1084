//! `POST /token` (RFC 6749 section 4.4): access tokens for machine clients, signed by the HSM
//! (RFC 9068) or by reference (opaque, their claims in the store). The client authenticates in
//! exactly the way it is registered for: `client_secret_basic`, `client_secret_post`,
//! `private_key_jwt` (RFC 7523, each assertion once), or the TLS client certificate of the
//! connection when tessera terminates TLS (RFC 8705: `tls_client_auth`, chained to the
//! configured client CAs and naming the registered subject, or `self_signed_tls_client_auth`,
//! one of the certificates registered). Every refusal is an RFC 6749 section 5.2 error; nothing
//! is issued on any of them, and neither secrets nor tokens are logged.

use std::net::IpAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode};
use oauth::{
    AccessClaims, AuthMethod, ClientAuth, Confirmation, ErrorCode, OAuthError, OpaqueToken,
    TokenFormat, TokenRequest,
};

use crate::app::App;
use crate::ClientCertificate;
use engine::revoked::sha256;

use crate::clients::{AssertionKeys, AuthError, ClientEntry};

use super::proof::Failure as ProofFailure;
use super::reply::{json, Refusal, Reply, DPOP_NONCE};
use super::request::{body, media_type_is};
use super::verdict::fingerprint;

pub async fn token(app: &App, request: Request<Incoming>, peer: IpAddr) -> Result<Reply, Refusal> {
    if request.method() != Method::POST {
        return Err(Refusal::Method("POST"));
    }
    // Without signing keys this daemon issues nothing.
    let signer = app.signer.as_ref().ok_or(Refusal::NotFound)?;
    let authorization = request.headers().get(header::AUTHORIZATION).cloned();
    let certificate = request.extensions().get::<ClientCertificate>().cloned();
    let basic = authorization.is_some();
    let refuse = |error: OAuthError| Refusal::OAuth {
        error,
        basic,
        nonce: None,
    };
    let proof = {
        let mut proofs = request.headers().get_all("dpop").iter();
        match (proofs.next(), proofs.next()) {
            (None, _) => None,
            (Some(proof), None) => Some(proof.to_str().map(str::to_owned).map_err(|_| {
                refuse(OAuthError::new(
                    ErrorCode::InvalidDpopProof,
                    "the DPoP header is not text",
                ))
            })?),
            (Some(_), Some(_)) => {
                return Err(refuse(OAuthError::new(
                    ErrorCode::InvalidDpopProof,
                    "one DPoP header, not several",
                )))
            }
        }
    };
    if !media_type_is(request.headers(), "application/x-www-form-urlencoded") {
        return Err(refuse(OAuthError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        )));
    }
    let credentials = match &authorization {
        None => None,
        Some(value) => Some(
            crate::clients::parse_basic(value.as_bytes())
                .ok_or_else(|| refuse(OAuthError::invalid_client("malformed Basic credentials")))?,
        ),
    };
    let body = body(app, request).await?;
    let params = crate::form::parse_repeating(&body, &["resource"]).map_err(|e| {
        refuse(OAuthError::invalid_request(match e {
            crate::form::FormError::Repeated(name) => format!("the parameter {name} is repeated"),
            _ => "a malformed form body".to_owned(),
        }))
    })?;
    let asked = TokenRequest::parse(
        params.iter().map(|(n, v)| (n.as_ref(), v.as_ref())),
        credentials,
    )
    .map_err(refuse)?;
    // RFC 9449 section 5: the proof for this request, checked before the client is (a
    // client retrying for a nonce has not spent its assertion), remembered once the client
    // is authenticated (no unauthenticated caller fills the replay cache).
    let now = crate::unix_now();
    let endpoint = format!("{}/token", app.public_url);
    let settings = &app.authz.config.dpop;
    let expected = oauth::dpop::Expected {
        method: "POST",
        uri: &endpoint,
        access_token: None,
        jkt: None,
        now,
        window_s: settings.window_s,
        algorithms: &settings.algorithms,
    };
    let proof_failed = |failure| match failure {
        ProofFailure::Invalid => refuse(OAuthError::new(
            ErrorCode::InvalidDpopProof,
            "the DPoP proof is not valid for this request",
        )),
        ProofFailure::UseNonce(nonce) => Refusal::OAuth {
            error: OAuthError::new(
                ErrorCode::UseDpopNonce,
                "the authorization server requires a nonce in DPoP proofs",
            ),
            basic,
            nonce: Some(nonce),
        },
        ProofFailure::Full => Refusal::Overloaded,
        ProofFailure::Unavailable => Refusal::Unavailable,
    };
    let proof = match &proof {
        None => None,
        Some(proof) => Some(super::proof::check(app, proof, &expected, b"").map_err(proof_failed)?),
    };
    let client = authenticate(
        app,
        &asked.auth,
        authorization.as_ref(),
        certificate.as_ref(),
        peer,
    )
        .await
        .map_err(|e| match e {
            Failure::OAuth(error) => {
                app.metrics
                    .client_auth_failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(%peer, method = asked.auth.name(), cause = %error, "token request: client refused");
                refuse(error)
            }
            Failure::Refusal(r) => r,
        })?;
    let issue =
        oauth::grant::client_credentials(&client.registration, &asked).map_err(|error| {
            tracing::info!(client = %client.id, cause = %error, "token request refused");
            refuse(error)
        })?;
    let cnf_x5t;
    let cnf = match &proof {
        Some(accepted) => {
            super::proof::remember(app, &accepted.checked, &expected, b"")
                .await
                .map_err(proof_failed)?;
            Some(Confirmation::Jkt(&accepted.checked.jkt))
        }
        None if client.registration.dpop_bound_access_tokens => {
            return Err(refuse(OAuthError::new(
                ErrorCode::InvalidDpopProof,
                "this client's tokens are DPoP-bound: the request needs a DPoP proof",
            )));
        }
        // RFC 8705 section 3: a client that authenticated with its certificate gets tokens
        // bound to it.
        None => match (&asked.auth, &certificate) {
            (ClientAuth::Certificate { .. }, Some(certificate)) => {
                cnf_x5t = jose::b64::encode(&sha256(certificate.leaf()));
                Some(Confirmation::X5tS256(&cnf_x5t))
            }
            _ => None,
        },
    };
    let lifetime = issue.lifetime as i64;
    let jti = oauth::new_jti();
    let claims = AccessClaims {
        iss: &app.public_url,
        sub: &client.id,
        aud: &issue.audiences,
        client_id: &client.id,
        scope: &issue.scope,
        iat: now,
        exp: now + lifetime,
        jti: &jti,
        cnf,
    }
    .to_json();
    let access_token = match issue.format {
        TokenFormat::Jwt => {
            let signed = signer.sign_async(claims, oauth::ACCESS_TOKEN_TYP).await;
            let counter = if signed.is_ok() {
                &app.metrics.hsm_signatures
            } else {
                &app.metrics.hsm_errors
            };
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            signed.map_err(|e| {
                tracing::error!(cause = %e, "access token not signed");
                Refusal::Unavailable
            })?
        }
        TokenFormat::Opaque => {
            let token = OpaqueToken::generate();
            let row = store::OpaqueRow {
                hash: token.hash(),
                client_id: client.id.to_string(),
                claims,
                exp: now + lifetime,
                created: now,
            };
            app.revocations
                .store()
                .put_opaque(&row)
                .await
                .map_err(|e| {
                    tracing::error!(cause = %e, "opaque token not stored");
                    Refusal::Unavailable
                })?;
            token.as_str().to_owned()
        }
    };
    app.metrics
        .tokens_issued
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(
        client = %client.id,
        jti = %jti,
        token = %fingerprint(access_token.as_bytes()),
        expires_in = lifetime,
        "access token issued"
    );
    let mut out = String::with_capacity(access_token.len() + 128);
    out.push_str("{\"access_token\":");
    jose::json::write_str(&mut out, &access_token);
    out.push_str(&format!(
        ",\"token_type\":\"{}\",\"expires_in\":{lifetime}",
        Confirmation::token_type(cnf)
    ));
    if !issue.scope.is_empty() {
        out.push_str(",\"scope\":");
        jose::json::write_str(&mut out, &issue.scope.to_string());
    }
    out.push('}');
    let mut reply = json(StatusCode::OK, out, Some("no-store"));
    reply
        .headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    let next_nonce = proof.and_then(|p| p.next_nonce);
    if let Some(nonce) = next_nonce.and_then(|n| HeaderValue::from_str(&n).ok()) {
        reply.headers_mut().insert(DPOP_NONCE, nonce);
    }
    Ok(reply)
}

/// Why a client was not authenticated: an RFC 6749 error, or a refusal of the daemon's own
/// (throttled, busy, the store unreachable).
enum Failure {
    OAuth(OAuthError),
    Refusal(Refusal),
}

impl From<AuthError> for Failure {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Busy | AuthError::Throttled(_) => Failure::Refusal(Refusal::Client(e)),
            _ => Failure::OAuth(OAuthError::invalid_client("client authentication failed")),
        }
    }
}

/// The client `auth` proves, registered for exactly that way of authenticating.
async fn authenticate(
    app: &App,
    auth: &ClientAuth,
    authorization: Option<&HeaderValue>,
    certificate: Option<&ClientCertificate>,
    peer: IpAddr,
) -> Result<Arc<ClientEntry>, Failure> {
    let id = match auth {
        ClientAuth::Basic { id, secret } => {
            // Remembered by the header as presented, like the other endpoints' callers.
            let key = sha256(authorization.map_or(&b""[..], HeaderValue::as_bytes));
            app.clients.check_secret(key, id, secret, peer).await?
        }
        ClientAuth::Post { id, secret } => {
            let mut presented = Vec::with_capacity(id.len() + secret.len() + 6);
            presented.extend_from_slice(b"post\n");
            presented.extend_from_slice(id.as_bytes());
            presented.push(b'\n');
            presented.extend_from_slice(secret.as_bytes());
            app.clients
                .check_secret(sha256(&presented), id, secret, peer)
                .await?
        }
        ClientAuth::Assertion { id, assertion } => {
            return assertion_client(app, id.as_deref(), assertion).await;
        }
        ClientAuth::Certificate { id } => {
            return certificate_client(app, id, certificate).map_err(Failure::OAuth);
        }
    };
    let client = app
        .clients
        .get(&id)
        .ok_or_else(|| Failure::OAuth(OAuthError::invalid_client("unknown client")))?;
    if !auth.accepts(client.registration.auth_method) {
        return Err(Failure::OAuth(OAuthError::invalid_client(
            "the client is registered for another authentication method",
        )));
    }
    Ok(client)
}

/// RFC 8705 section 2: the connection's client certificate is the registered client's. The
/// handshake proved the client holds its key; a `tls_client_auth` client's chain must lead to
/// one of the configured client CAs and its certificate carry the registered name, a
/// `self_signed_tls_client_auth` client's certificate must be one it registered.
fn certificate_client(
    app: &App,
    id: &str,
    certificate: Option<&ClientCertificate>,
) -> Result<Arc<ClientEntry>, OAuthError> {
    let refused = OAuthError::invalid_client;
    let client = app
        .clients
        .get(id)
        .filter(|c| c.registration.auth_method.uses_certificate())
        .ok_or_else(|| {
            refused("no client is registered for TLS client authentication under this client_id")
        })?;
    let certificate = certificate.ok_or_else(|| {
        refused("the client authenticates with a TLS client certificate, and none was presented")
    })?;
    match client.registration.auth_method {
        AuthMethod::TlsClientAuth => {
            let Some(ca) = app.tls.as_ref().and_then(|t| t.client_ca.as_ref()) else {
                tracing::warn!(client = %client.id, "tls_client_auth client, but no server.tls.client_ca to validate its certificate");
                return Err(refused("the client certificate cannot be validated here"));
            };
            if let Err(e) = ca.validates(certificate) {
                tracing::info!(client = %client.id, cause = %e, "client certificate not validated");
                return Err(refused(
                    "the client certificate is not issued by a trusted CA",
                ));
            }
            let named = client
                .registration
                .tls_subject
                .as_ref()
                .is_some_and(|subject| subject.matches(certificate.leaf()));
            if !named {
                return Err(refused(
                    "the client certificate does not carry the registered name",
                ));
            }
        }
        _ => {
            let leaf = certificate.leaf();
            if !client.certificates.iter().any(|c| c.as_slice() == leaf) {
                return Err(refused(
                    "the client certificate is not one the client registered",
                ));
            }
        }
    }
    Ok(client)
}

/// RFC 7523 section 3: the assertion verified with the client's keys, its `jti` recorded in
/// the store until its `exp` (a second use is refused, on every daemon of the store).
async fn assertion_client(
    app: &App,
    id: Option<&str>,
    assertion: &str,
) -> Result<Arc<ClientEntry>, Failure> {
    let claimed = oauth::assertion::claimed_client(assertion).map_err(Failure::OAuth)?;
    if id.is_some_and(|id| id != claimed) {
        return Err(Failure::OAuth(OAuthError::invalid_client(
            "client_id differs from the assertion's issuer",
        )));
    }
    let client = app
        .clients
        .get(&claimed)
        .filter(|c| c.registration.auth_method == oauth::AuthMethod::PrivateKeyJwt)
        .ok_or_else(|| {
            Failure::OAuth(OAuthError::invalid_client(
                "no client is registered for private_key_jwt under the assertion's issuer",
            ))
        })?;
    let audiences = [app.public_url.clone(), format!("{}/token", app.public_url)];
    let now = crate::unix_now();
    let verified = match &client.keys {
        Some(AssertionKeys::Set(keys)) => {
            oauth::assertion::verify(assertion, &client.id, keys, &audiences, now)
        }
        Some(AssertionKeys::Remote(remote)) => {
            if remote.is_stale() {
                if let Err(e) = remote.refresh().await {
                    tracing::warn!(client = %client.id, cause = %e, "client jwks_uri not fetched");
                }
            }
            let first =
                oauth::assertion::verify(assertion, &client.id, &remote.keys(), &audiences, now);
            // A key the set lacks may be a new one: refetch (at most once per cool-down).
            match first {
                Err(refused) if refused.is_unknown_key() && remote.unknown_kid().await => {
                    oauth::assertion::verify(assertion, &client.id, &remote.keys(), &audiences, now)
                }
                first => first,
            }
        }
        None => Err(oauth::assertion::Refused("no_keys")),
    }
    .map_err(|refused| Failure::OAuth(refused.into()))?;
    let fresh = app
        .revocations
        .store()
        .remember_once(&client.id, &verified.jti, verified.exp)
        .await
        .map_err(|e| {
            tracing::error!(cause = %e, "assertion jti not recorded");
            Failure::Refusal(Refusal::Unavailable)
        })?;
    if !fresh {
        return Err(Failure::OAuth(OAuthError::invalid_client(
            "the client assertion was used before",
        )));
    }
    Ok(client)
}
