//! What the endpoints read from a request: method, body (bounded in size and time), media
//! type, and the authenticated caller.

use std::net::IpAddr;

use http_body_util::BodyExt;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request};

use crate::app::App;
use crate::clients::AuthError;
use crate::config::Permission;

use super::reply::Refusal;

pub fn only_get(request: &Request<Incoming>) -> Result<(), Refusal> {
    match *request.method() {
        Method::GET | Method::HEAD => Ok(()),
        _ => Err(Refusal::Method("GET, HEAD")),
    }
}

/// The request body, at most `max_body_bytes` (413 beyond, by Content-Length or while reading).
pub async fn body(app: &App, request: Request<Incoming>) -> Result<Bytes, Refusal> {
    let limit = app.limits.max_body_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(Refusal::TooLarge);
    }
    // The body usually came with the header: only a body still on its way arms the timer
    // that bounds how long a client may take to send it.
    let mut incoming = request.into_body();
    let mut reading = std::pin::pin!(read_body(&mut incoming, limit));
    let first = std::future::poll_fn(|cx| {
        std::task::Poll::Ready(std::future::Future::poll(reading.as_mut(), cx))
    })
    .await;
    match first {
        std::task::Poll::Ready(result) => result,
        std::task::Poll::Pending => tokio::time::timeout(app.limits.body_read_timeout, reading)
            .await
            .map_err(|_| Refusal::Timeout)?,
    }
}

/// The whole body, at most `limit` bytes: a body that came in one piece is taken as it came
/// (no copy), pieces are joined. Trailers are ignored.
pub async fn read_body(body: &mut Incoming, limit: usize) -> Result<Bytes, Refusal> {
    let mut first: Option<Bytes> = None;
    let mut joined: Vec<u8> = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| Refusal::BadRequest("invalid_request"))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total = total.saturating_add(data.len());
        if total > limit {
            return Err(Refusal::TooLarge);
        }
        match first.take() {
            None if joined.is_empty() => first = Some(data),
            earlier => {
                if let Some(earlier) = earlier {
                    joined.extend_from_slice(&earlier);
                }
                joined.extend_from_slice(&data);
            }
        }
    }
    Ok(first.unwrap_or_else(|| Bytes::from(joined)))
}

/// The `token` parameter of an RFC 7662 or RFC 7009 form, borrowed from the parsed body.
pub fn token_param<'a>(params: &'a [crate::form::Param<'a>]) -> Result<&'a str, Refusal> {
    params
        .iter()
        .find(|(name, _)| name == "token")
        .map(|(_, value)| value.as_ref())
        .ok_or(Refusal::BadRequest("invalid_request"))
}

/// Whether the request's media type (parameters aside) is `expected`, in any case.
pub fn media_type_is(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(expected))
}

/// The authenticated caller, if the configuration grants it `permission`.
pub async fn caller(
    app: &App,
    request: &Request<Incoming>,
    peer: IpAddr,
    permission: Permission,
) -> Result<std::sync::Arc<str>, Refusal> {
    let id = authenticated(app, request, peer).await?;
    if !app.clients.permits(&id, permission) {
        tracing::info!(client = %id, ?permission, "caller lacks the permission");
        return Err(Refusal::NotPermitted);
    }
    Ok(id)
}

async fn authenticated(
    app: &App,
    request: &Request<Incoming>,
    peer: IpAddr,
) -> Result<std::sync::Arc<str>, Refusal> {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    app.clients
        .authenticate(authorization, peer)
        .await
        .map_err(|e| {
            if e != AuthError::Busy {
                app.metrics
                    .client_auth_failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                match e {
                    // A flood is answered cheaply: not a log line each.
                    AuthError::Throttled(_) => {
                        tracing::debug!(%peer, "caller throttled after failed attempts")
                    }
                    _ => tracing::info!(reason = ?e, %peer, "caller refused"),
                }
            }
            Refusal::Client(e)
        })
}
