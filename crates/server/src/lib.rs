//! The tessera daemon's HTTP service: hyper 1 over Tokio, HTTP/1.1 and HTTP/2 (prior knowledge,
//! or ALPN under TLS), in front of the verification engine and the HSM signer.
//!
//! [`run`] serves a bound listener until `shutdown` resolves, then drains: `/readyz` fails, new
//! connections are still taken for the configured grace, then in-flight requests finish within
//! the drain timeout. Tests bind port 0 and pass their own shutdown future.
//!
//! This is the only crate that serves HTTP. No `unsafe`.

#![forbid(unsafe_code)]

pub mod answers;
pub mod app;
pub mod clients;
pub mod config;
pub mod dpop;
mod form;
pub mod metrics;
pub mod opaque;
mod path;
pub mod revocations;
pub mod routes;
pub mod secret;
pub mod signer;
mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

pub use answers::Answers;
pub use app::{load_multibuffer, App, Phase, StartError, Verifier};
pub use config::{Config, ConfigError, LogFormat};
pub use secret::SecretHash;
pub use tls::{ClientCertificate, TlsError};

/// Seconds since the Unix epoch (0 if the clock is before it): the wall clock of the daemon,
/// the planner and the CLI, read nowhere else.
pub fn unix_now() -> i64 {
    unix_time().unwrap_or(0)
}

/// Seconds since the Unix epoch; `None` if the system clock is before it.
pub fn unix_time() -> Option<i64> {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    i64::try_from(since.as_secs()).ok()
}

/// Serves `listener` with `app` until `shutdown` resolves, then drains and returns.
pub async fn run(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()>) {
    let limits = app.limits;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        // The header read time is kept by `supervise`, one timer per connection: hyper's own
        // allocates and registers a timer for every request.
        .header_read_timeout(None)
        .max_buf_size(limits.max_header_bytes)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(256)
        // Dead peers are found and their connections closed.
        .keep_alive_interval(std::time::Duration::from_secs(30))
        .keep_alive_timeout(std::time::Duration::from_secs(10));
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));

    app.set_phase(Phase::Ready);
    // Resolves when accepting must stop: after the shutdown signal and the grace during which
    // `/readyz` already fails but connections are still taken.
    let stopping = async {
        shutdown.await;
        app.set_phase(Phase::Draining);
        tracing::info!(
            grace_ms = limits.shutdown_grace.as_millis() as u64,
            "shutting down: draining"
        );
        tokio::time::sleep(limits.shutdown_grace).await;
    };
    tokio::pin!(stopping);
    loop {
        let accepted = tokio::select! {
            () = &mut stopping => break,
            accepted = async {
                let permit = Arc::clone(&connections).acquire_owned().await;
                (permit, listener.accept().await)
            } => accepted,
        };
        let (Ok(permit), accepted) = accepted else {
            break;
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off rather than spin.
                tracing::warn!(cause = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        app.metrics
            .connections_total
            .fetch_add(1, Ordering::Relaxed);
        let app = Arc::clone(&app);
        let builder = Arc::clone(&builder);
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            app.metrics.connections_open.fetch_add(1, Ordering::Relaxed);
            // The whole first request must arrive within the header read time, TLS handshake
            // included: hyper's own header timeout starts only once it has chosen HTTP/1.1, and
            // a client that sends nothing, or part of the HTTP/2 preface, would hold its
            // connection slot for ever.
            let activity = Arc::new(Activity::new());
            let deadline = activity.opened + app.limits.header_read_timeout;
            // The client certificate of a TLS handshake, known once it is done.
            let certificate = Arc::new(std::sync::OnceLock::<ClientCertificate>::new());
            let service = {
                // Requests clone this connection's own handle, not the shared one: its count
                // stays on this connection's thread.
                let app = Arc::new(Arc::clone(&app));
                let activity = Arc::clone(&activity);
                let certificate = Arc::clone(&certificate);
                service_fn(move |mut request: Request<Incoming>| {
                    let app = Arc::clone(&app);
                    let busy = Busy::start(&activity, request.version());
                    if let Some(certificate) = certificate.get() {
                        request.extensions_mut().insert(certificate.clone());
                    }
                    async move {
                        let reply = serve_request(&app, request, peer.ip()).await;
                        drop(busy);
                        Ok::<_, Infallible>(reply)
                    }
                })
            };
            let limits = &app.limits;
            match &app.tls {
                None => {
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    supervise(watcher.watch(conn.into_owned()), &activity, limits).await;
                }
                Some(tls) => {
                    let handshake =
                        tokio::time::timeout_at(deadline.into(), tls.acceptor.accept(stream)).await;
                    if let Ok(Ok(tls)) = handshake {
                        if let Some(presented) = ClientCertificate::of(tls.get_ref().1) {
                            let _ = certificate.set(presented);
                        }
                        let conn = builder.serve_connection(TokioIo::new(tls), service);
                        supervise(watcher.watch(conn.into_owned()), &activity, limits).await;
                    }
                }
            }
            app.metrics.connections_open.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!("no longer accepting; waiting for requests in flight");
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain timeout: closing the connections left");
    }
}

/// What a connection's requests are doing.
#[derive(Debug)]
struct Activity {
    opened: Instant,
    /// Requests started so far.
    started: AtomicU64,
    in_flight: AtomicUsize,
    /// When the last request ended, in nanoseconds after `opened`.
    ended_ns: AtomicU64,
    /// Whether the connection speaks HTTP/2 (known from its first request).
    http2: AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Activity {
            opened: Instant::now(),
            started: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            ended_ns: AtomicU64::new(0),
            http2: AtomicBool::new(false),
        }
    }

    /// When the connection last had nothing to do: when its last request ended, or when it
    /// was opened.
    fn quiet_since(&self) -> Instant {
        self.opened + std::time::Duration::from_nanos(self.ended_ns.load(Ordering::Relaxed))
    }
}

/// One request in flight on a connection, until dropped (answered or abandoned).
struct Busy(Arc<Activity>);

impl Busy {
    fn start(activity: &Arc<Activity>, version: hyper::Version) -> Self {
        if activity.started.fetch_add(1, Ordering::Relaxed) == 0
            && version == hyper::Version::HTTP_2
        {
            activity.http2.store(true, Ordering::Relaxed);
        }
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        Busy(Arc::clone(activity))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let activity = &self.0;
        let ended = activity.opened.elapsed().as_nanos();
        activity
            .ended_ns
            .fetch_max(u64::try_from(ended).unwrap_or(u64::MAX), Ordering::Relaxed);
        activity.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs a connection and drops it (which closes it) when it has nothing to do for too long, with
/// one timer per connection:
/// - its whole first request has not started within `header_read_timeout` of the accept (TLS
///   handshake included; hyper's own header timer would start only once it has chosen
///   HTTP/1.1, and a client that sends nothing, or part of the HTTP/2 preface, would hold its
///   slot for ever);
/// - HTTP/1.1: no request in flight and the next one not started within `header_read_timeout`
///   of the end of the last (a slow header, or an idle keep-alive connection);
/// - HTTP/2: no request in flight and none started for `idle_timeout` (it has no other idle
///   limit).
///
/// A request in flight is bounded elsewhere (body read time, engine admission, HSM sessions).
async fn supervise<F: Future>(connection: F, activity: &Activity, limits: &config::Limits) {
    let mut connection = std::pin::pin!(connection);
    let first = activity.opened + limits.header_read_timeout;
    let mut timer = Box::pin(tokio::time::sleep_until(first.into()));
    std::future::poll_fn(|cx| {
        if connection.as_mut().poll(cx).is_ready() {
            return std::task::Poll::Ready(());
        }
        while timer.as_mut().poll(cx).is_ready() {
            if activity.started.load(Ordering::Relaxed) == 0 {
                return std::task::Poll::Ready(());
            }
            let next = if activity.in_flight.load(Ordering::Relaxed) > 0 {
                Instant::now() + limits.header_read_timeout
            } else {
                let quiet = if activity.http2.load(Ordering::Relaxed) {
                    limits.idle_timeout
                } else {
                    limits.header_read_timeout
                };
                let deadline = activity.quiet_since() + quiet;
                if deadline <= Instant::now() {
                    return std::task::Poll::Ready(());
                }
                deadline
            };
            timer.as_mut().reset(next.into());
        }
        std::task::Poll::Pending
    })
    .await;
}

/// One request from `peer`: routed, bounded in time, counted.
async fn serve_request(
    app: &App,
    request: Request<Incoming>,
    peer: std::net::IpAddr,
) -> routes::Reply {
    let start = Instant::now();
    let endpoint = routes::endpoint(request.uri().path());
    // No timer per request: only a body can be held up by its client, and reading one is
    // bounded (routes/request.rs); everything else waits at most for the engine, whose admission
    // is bounded, or for the HSM, whose sessions are.
    let reply = routes::handle(app, endpoint, request, peer).await;
    app.metrics
        .request(endpoint, reply.status().as_u16(), start.elapsed());
    reply
}
