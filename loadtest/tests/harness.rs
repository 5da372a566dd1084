//! The real `tessera-loadtest` binary against small hyper servers started here.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use base64::Engine as _;
use http_body_util::BodyExt as _;
use hyper::body::{Body, Bytes, Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use loadtest::report::Report;
use testkit::{unix_now, Scratch};

// ---- servers ----------------------------------------------------------------------------------

/// A body sent in the given chunks, with no length announced: hyper sends it chunked.
struct Chunks(VecDeque<Bytes>);

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.get_mut().0.pop_front().map(|b| Ok(Frame::data(b))))
    }
}

type Reply = Response<Chunks>;
type Handler = Arc<
    dyn Fn(Request<Incoming>, u64) -> Pin<Box<dyn Future<Output = Reply> + Send>> + Send + Sync,
>;

fn reply(status: u16, body: &'static str) -> Reply {
    let mut r = Response::new(Chunks(VecDeque::from([Bytes::from_static(
        body.as_bytes(),
    )])));
    *r.status_mut() = hyper::StatusCode::from_u16(status).expect("status");
    // A one-chunk body of known length: sent with Content-Length.
    r.headers_mut().insert(
        hyper::header::CONTENT_LENGTH,
        hyper::header::HeaderValue::from(body.len()),
    );
    r
}

struct Server {
    addr: SocketAddr,
    requests: Arc<AtomicU64>,
    connections: Arc<AtomicU64>,
}

/// How a test server speaks.
#[derive(Clone, Copy)]
enum Http {
    One,
    /// HTTP/2 with prior knowledge.
    Two,
    /// HTTP/2, ending each connection after this many requests on it: gracefully (`GOAWAY`,
    /// the requests in flight finish) or by dropping it.
    TwoEndingAfter {
        requests: u64,
        graceful: bool,
    },
}

/// Serves `handler` (given the request and its number, from 1) over HTTP/1.1 on 127.0.0.1 from
/// a thread of its own, for the rest of the test process.
fn serve(handler: Handler) -> Server {
    serve_with(Http::One, handler)
}

fn serve_with(http: Http, handler: Handler) -> Server {
    let requests = Arc::new(AtomicU64::new(0));
    let connections = Arc::new(AtomicU64::new(0));
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let requests = Arc::clone(&requests);
        let connections = Arc::clone(&connections);
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                tx.send(listener.local_addr().expect("addr")).expect("send");
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    connections.fetch_add(1, Ordering::Relaxed);
                    let handler = Arc::clone(&handler);
                    let requests = Arc::clone(&requests);
                    tokio::spawn(async move {
                        let on_this = Arc::new(AtomicU64::new(0));
                        let end = Arc::new(tokio::sync::Notify::new());
                        let service = {
                            let end = Arc::clone(&end);
                            service_fn(move |request| {
                                let n = requests.fetch_add(1, Ordering::Relaxed) + 1;
                                let here = on_this.fetch_add(1, Ordering::Relaxed) + 1;
                                if let Http::TwoEndingAfter { requests, .. } = http {
                                    if here == requests {
                                        end.notify_one();
                                    }
                                }
                                let answer = handler(request, n);
                                async move { reset_or(answer.await) }
                            })
                        };
                        let io = TokioIo::new(stream);
                        match http {
                            Http::One => {
                                let _ = hyper::server::conn::http1::Builder::new()
                                    .serve_connection(io, service)
                                    .await;
                            }
                            Http::Two | Http::TwoEndingAfter { .. } => {
                                let connection =
                                    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                                        .serve_connection(io, service);
                                let mut connection = std::pin::pin!(connection);
                                tokio::select! {
                                    _ = connection.as_mut() => {}
                                    () = end.notified() => {
                                        if let Http::TwoEndingAfter { graceful: true, .. } = http {
                                            connection.as_mut().graceful_shutdown();
                                            let _ = connection.await;
                                        }
                                    }
                                }
                            }
                        }
                    });
                }
            });
        });
    }
    Server {
        addr: rx.recv_timeout(Duration::from_secs(10)).expect("server up"),
        requests,
        connections,
    }
}

/// A reply with this header makes the service fail instead: hyper resets the HTTP/2 stream.
const RESET: &str = "x-test-reset";

fn reset() -> Reply {
    let mut r = reply(200, "");
    r.headers_mut()
        .insert(RESET, hyper::header::HeaderValue::from_static("please"));
    r
}

fn reset_or(reply: Reply) -> Result<Reply, std::io::Error> {
    if reply.headers().contains_key(RESET) {
        Err(std::io::Error::other("reset requested"))
    } else {
        Ok(reply)
    }
}

fn handler<F, Fut>(f: F) -> Handler
where
    F: Fn(Request<Incoming>, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Reply> + Send + 'static,
{
    Arc::new(move |request, n| Box::pin(f(request, n)))
}

// ---- the binary -------------------------------------------------------------------------------

fn loadtest(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tessera-loadtest"));
    command
        .args(args)
        .env_remove("TESSERA_LOADTEST_CLIENT_SECRET");
    for (k, v) in env {
        command.env(k, v);
    }
    let started = Instant::now();
    let out = command.output().expect("run tessera-loadtest");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the run took {:?}",
        started.elapsed()
    );
    out
}

fn ok(out: &Output) -> &Output {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn report(path: &Path) -> Report {
    let text = std::fs::read_to_string(path).expect("the JSON report");
    serde_json::from_str(&text).expect("a Report")
}

fn url(server: &Server, path: &str) -> String {
    format!("http://{}{path}", server.addr)
}

fn count(pairs: &[(String, u64)], key: &str) -> u64 {
    pairs.iter().find(|(k, _)| k == key).map_or(0, |(_, n)| *n)
}

// ---- tests ------------------------------------------------------------------------------------

#[test]
fn closed_loop_counts_requests_and_statuses_and_writes_the_report() {
    let server = serve(handler(|_, _| async { reply(200, "hello\n") }));
    let dir = Scratch::new("loadtest-closed");
    let (json, html) = (dir.join("r.json"), dir.join("r.html"));
    let out = loadtest(
        &[
            "get",
            &url(&server, "/"),
            "--connections",
            "4",
            "--threads",
            "2",
            "--duration",
            "1s",
            "--warmup",
            "200ms",
            "--json",
            json.to_str().expect("path"),
            "--html",
            html.to_str().expect("path"),
        ],
        &[],
    );
    ok(&out);
    let r = report(&json);
    assert_eq!(r.format, 1);
    assert_eq!(
        (r.scenario.as_str(), r.mode.as_str(), r.protocol.as_str()),
        ("get", "closed", "http1")
    );
    assert_eq!((r.connections, r.threads, r.rate), (4, 2, None));
    assert!(r.requests > 50, "{} requests", r.requests);
    assert_eq!(r.statuses, vec![("200".to_string(), r.requests)]);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    // The server also saw the warm-up.
    assert!(server.requests.load(Ordering::Relaxed) >= r.requests);
    assert!((r.throughput - r.requests as f64 / r.duration_s).abs() < 1e-6);
    assert_eq!(r.timeline.len(), 1);
    assert_eq!(
        r.timeline.iter().map(|s| s.requests).sum::<u64>(),
        r.requests
    );
    let l = &r.latency_us;
    assert!(l.min <= l.p50 && l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.p999);
    assert!(l.p999 <= l.max && l.min > 0);
    assert_eq!(r.distribution.first(), Some(&(0.0, l.min)));
    assert_eq!(r.distribution.last(), Some(&(100.0, l.max)));
    assert!(std::fs::metadata(&html).expect("the HTML report").len() > 0);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains(&format!("requests     {}", r.requests)),
        "{table}"
    );
}

#[test]
fn open_loop_charges_a_stall_to_every_request_it_held_up() {
    stall_is_charged(Http::One, &["--connections", "4"], "every connection busy");
}

#[test]
fn open_loop_over_http2_keeps_the_rate_and_charges_a_stall() {
    // One connection, four streams: as many requests in flight as the HTTP/1.1 run.
    let server = stall_is_charged(
        Http::Two,
        &["--http2", "--connections", "1", "--streams", "4"],
        "every stream busy",
    );
    assert_eq!(server.connections.load(Ordering::Relaxed), 1);
}

/// An open loop at 200/s for 2 s, with 4 requests in flight at most, against a server that
/// stalls for 300 ms.
fn stall_is_charged(http: Http, lanes: &[&str], busy_note: &str) -> Server {
    // Request 100 (half a second in at 200/s) stops the server for 300 ms: everything that
    // arrives meanwhile waits until then.
    let stall_until: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let server = serve_with(
        http,
        handler(move |_, n| {
            let stall_until = Arc::clone(&stall_until);
            async move {
                let until = {
                    let mut s = stall_until.lock().expect("lock");
                    if n == 100 {
                        *s = Some(Instant::now() + Duration::from_millis(300));
                    }
                    *s
                };
                if let Some(until) = until {
                    tokio::time::sleep_until(until.into()).await;
                }
                reply(200, "ok")
            }
        }),
    );
    let dir = Scratch::new("loadtest-open");
    let json = dir.join("r.json");
    let target = url(&server, "/");
    let mut args = vec![
        "get",
        &target,
        "--rate",
        "200",
        "--threads",
        "1",
        "--duration",
        "2s",
        "--warmup",
        "0s",
        "--json",
        json.to_str().expect("path"),
    ];
    args.extend_from_slice(lanes);
    ok(&loadtest(&args, &[]));
    let r = report(&json);
    assert_eq!((r.mode.as_str(), r.rate), ("open", Some(200.0)));
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    // About 400 requests, 60 of them due during the stall.
    assert!((300..=420).contains(&r.requests), "{} requests", r.requests);
    assert!(r.latency_us.max >= 250_000, "{:?}", r.latency_us);
    assert!(r.latency_us.p99 >= 200_000, "{:?}", r.latency_us);
    // Measured from their intended start, some 40 requests waited 100 ms or more; measured from
    // when they were sent, only the 4 in flight would have.
    let p95 = r
        .distribution
        .iter()
        .find(|(p, _)| *p == 95.0)
        .map(|(_, us)| *us)
        .expect("p95");
    assert!(p95 >= 75_000, "p95 {p95} µs: {:?}", r.distribution);
    assert!(
        r.notes.iter().any(|n| n.contains(busy_note)),
        "{:?}",
        r.notes
    );
    // Every request the server saw was due in the window and answered.
    assert_eq!(server.requests.load(Ordering::Relaxed), r.requests);
    server
}

#[test]
fn chunked_answers_and_connection_close_are_handled() {
    // Odd requests: a chunked body in three chunks; even ones: `Connection: close`.
    let server = serve(handler(|_, n| async move {
        if n % 2 == 1 {
            Response::new(Chunks(VecDeque::from([
                Bytes::from_static(b"hel"),
                Bytes::from_static(b"lo, "),
                Bytes::from_static(b"chunks\n"),
            ])))
        } else {
            let mut r = reply(200, "bye\n");
            r.headers_mut().insert(
                hyper::header::CONNECTION,
                hyper::header::HeaderValue::from_static("close"),
            );
            r
        }
    }));
    let dir = Scratch::new("loadtest-chunked");
    let json = dir.join("r.json");
    ok(&loadtest(
        &[
            "get",
            &url(&server, "/"),
            "-c",
            "2",
            "-t",
            "1",
            "-d",
            "1s",
            "--warmup",
            "0s",
            "--json",
            json.to_str().expect("path"),
        ],
        &[],
    ));
    let r = report(&json);
    assert!(r.requests > 20, "{} requests", r.requests);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.statuses, vec![("200".to_string(), r.requests)]);
    // Every close was followed by a new connection.
    let connections = server.connections.load(Ordering::Relaxed);
    assert!(
        connections * 2 + 4 >= server.requests.load(Ordering::Relaxed),
        "{connections} connections for {} requests",
        server.requests.load(Ordering::Relaxed)
    );
}

#[test]
fn a_server_answering_500_is_counted_as_unexpected_status() {
    let server = serve(handler(|_, _| async { reply(500, "broken\n") }));
    let dir = Scratch::new("loadtest-500");
    let json = dir.join("r.json");
    ok(&loadtest(
        &[
            "jwks",
            "--url",
            &url(&server, ""),
            "-c",
            "2",
            "-d",
            "500ms",
            "--warmup",
            "0s",
            "--quiet",
            "--json",
            json.to_str().expect("path"),
        ],
        &[],
    ));
    let r = report(&json);
    assert!(r.target.ends_with("/.well-known/jwks.json"), "{}", r.target);
    assert!(r.requests > 0);
    assert_eq!(r.statuses, vec![("500".to_string(), r.requests)]);
    assert_eq!(
        r.errors,
        vec![("unexpected_status".to_string(), r.requests)]
    );
    assert_eq!(r.timeline.iter().map(|s| s.errors).sum::<u64>(), r.requests);
}

const ISS: &str = "https://issuer.loadtest.example";
const AUD: &str = "api://loadtest";

fn make_keys(dir: &Scratch) -> (PathBuf, jose::KeySet) {
    let keys = dir.join("keys");
    ok(&loadtest(
        &["keys", "--out", keys.to_str().expect("path"), "--hs256"],
        &[],
    ));
    let jwks = std::fs::read(keys.join("jwks.json")).expect("jwks.json");
    let set = jose::KeySet::from_jwks(&jwks).expect("a key set jose accepts");
    assert!(set.skipped.is_empty(), "{:?}", set.skipped);
    assert_eq!(set.keys.len(), 4);
    (keys, set.keys)
}

#[test]
fn keys_make_a_jwks_that_verifies_the_signed_tokens() {
    let dir = Scratch::new("loadtest-keys");
    let (keys, set) = make_keys(&dir);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for name in [
            "rs256.pk8",
            "es256.pk8",
            "eddsa.pk8",
            "hs256.key",
            "jwks.json",
        ] {
            let mode = std::fs::metadata(keys.join(name))
                .expect(name)
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
    }
    // A second `keys` into the same directory keeps the first set.
    let again = loadtest(&["keys", "--out", keys.to_str().expect("path")], &[]);
    assert_eq!(again.status.code(), Some(2));

    let out = ok(&loadtest(
        &[
            "tokens",
            "--keys",
            keys.to_str().expect("path"),
            "--iss",
            ISS,
            "--aud",
            AUD,
            "--mix",
            "RS256=25,ES256=25,EdDSA=25,HS256=25",
            "--distinct",
            "16",
            "--invalid",
            "25",
        ],
        &[],
    ))
    .stdout
    .clone();
    let lines: Vec<&str> = std::str::from_utf8(&out).expect("UTF-8").lines().collect();
    assert_eq!(lines.len(), 16);
    let validation = jose::Validation::default()
        .with_issuer(ISS)
        .with_audience(AUD);
    let mut algs = std::collections::HashSet::new();
    let mut invalid = Vec::new();
    for line in lines {
        let mut words = line.split(' ');
        let token = words.next().expect("token");
        match words.next() {
            None => {
                let jwt = jose::jwt::verify(token, &set, &validation, unix_now())
                    .unwrap_or_else(|e| panic!("{token}: {e}"));
                assert_eq!(jwt.str_claim("iss").as_deref(), Some(ISS));
                algs.insert(jwt.alg());
            }
            Some(kind) => {
                let error = jose::jwt::verify(token, &set, &validation, unix_now())
                    .expect_err("an invalid token");
                invalid.push((kind.to_string(), error));
            }
        }
    }
    assert_eq!(algs.len(), 4, "every algorithm of the mix: {algs:?}");
    let kinds: Vec<&str> = invalid.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds.len(), 4);
    for kind in ["expired", "bad_signature", "wrong_audience"] {
        assert!(kinds.contains(&kind), "{kinds:?}");
    }
    for (kind, error) in &invalid {
        let expected = match kind.as_str() {
            "expired" => jose::Error::Expired,
            "bad_signature" => jose::Error::BadSignature,
            _ => jose::Error::InvalidAudience,
        };
        assert_eq!(error, &expected, "{kind}");
    }
}

#[test]
fn introspection_takes_the_secret_from_the_environment_and_checks_verdicts() {
    let dir = Scratch::new("loadtest-introspect");
    let (keys, set) = make_keys(&dir);
    let set = Arc::new(set);
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("gateway:s3cret")
    );
    // An introspection endpoint that verifies with the harness's JWKS.
    let server = serve(handler(move |request: Request<Incoming>, _| {
        let set = Arc::clone(&set);
        let basic = basic.clone();
        async move {
            let authorized = request
                .headers()
                .get(hyper::header::AUTHORIZATION)
                .is_some_and(|v| v.as_bytes() == basic.as_bytes());
            if !authorized || request.uri().path() != "/introspect" {
                return reply(401, "{\"error\":\"invalid_client\"}");
            }
            let body = request
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes();
            let token = body.strip_prefix(b"token=").unwrap_or_default();
            let validation = jose::Validation::default()
                .with_issuer(ISS)
                .with_audience(AUD);
            if jose::jwt::verify(token, &set, &validation, unix_now()).is_ok() {
                reply(200, "{\"active\":true,\"token_type\":\"Bearer\"}")
            } else {
                reply(200, "{\"active\":false}")
            }
        }
    }));
    let json = dir.join("r.json");
    let args = [
        "introspect",
        "--url",
        &url(&server, ""),
        "--client-id",
        "gateway",
        "--keys",
        keys.to_str().expect("path"),
        "--iss",
        ISS,
        "--aud",
        AUD,
        "--mix",
        "ES256=50,EdDSA=50",
        "--distinct",
        "20",
        "--invalid",
        "30",
        "-c",
        "2",
        "-d",
        "1s",
        "--warmup",
        "0s",
        "--json",
        json.to_str().expect("path"),
    ];
    // Without a secret: refused before any load.
    let refused = loadtest(&args, &[]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("TESSERA_LOADTEST_CLIENT_SECRET"));
    assert_eq!(server.requests.load(Ordering::Relaxed), 0);

    ok(&loadtest(
        &args,
        &[("TESSERA_LOADTEST_CLIENT_SECRET", "s3cret")],
    ));
    let r = report(&json);
    assert_eq!(r.scenario, "introspect");
    assert!(r.requests > 20, "{} requests", r.requests);
    assert_eq!(r.statuses, vec![("200".to_string(), r.requests)]);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!((r.distinct, r.invalid_pct), (20, 30.0));
    assert_eq!(
        r.mix,
        vec![("ES256".to_string(), 50.0), ("EdDSA".to_string(), 50.0)]
    );
    assert!(!r.notes.iter().any(|n| n.contains("s3cret")));

    // The wrong secret: every answer is a 401 nobody expected.
    ok(&loadtest(
        &args,
        &[("TESSERA_LOADTEST_CLIENT_SECRET", "wrong")],
    ));
    let r = report(&json);
    assert_eq!(count(&r.errors, "unexpected_status"), r.requests);
}

/// A batch verify endpoint in the daemon's answer format, verifying with the harness's JWKS;
/// `lie`: every token said active. The answer goes out in 7-byte chunks, so verdicts straddle
/// them.
fn batch_server(http: Http, set: Arc<jose::KeySet>, lie: bool) -> Server {
    serve_with(
        http,
        handler(move |request: Request<Incoming>, _| {
            let set = Arc::clone(&set);
            async move {
                let body = request
                    .into_body()
                    .collect()
                    .await
                    .expect("body")
                    .to_bytes();
                let parsed: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
                let validation = jose::Validation::default()
                    .with_issuer(ISS)
                    .with_audience(AUD);
                let results: Vec<String> = parsed["tokens"]
                    .as_array()
                    .expect("tokens")
                    .iter()
                    .map(|t| {
                        let token = t.as_str().expect("a token").as_bytes();
                        match jose::jwt::verify(token, &set, &validation, unix_now()) {
                            Ok(jwt) => {
                                format!("{{\"active\":true,\"claims\":{}}}", jwt.claims_json())
                            }
                            Err(_) if lie => "{\"active\":true,\"claims\":{}}".to_string(),
                            Err(_) => "{\"active\":false,\"error\":\"invalid_token\"}".to_string(),
                        }
                    })
                    .collect();
                let answer = format!("{{\"results\":[{}]}}", results.join(","));
                let chunks = answer
                    .as_bytes()
                    .chunks(7)
                    .map(Bytes::copy_from_slice)
                    .collect();
                Response::new(Chunks(chunks))
            }
        }),
    )
}

#[test]
fn batch_verify_checks_every_verdict() {
    let dir = Scratch::new("loadtest-batch");
    let (keys, set) = make_keys(&dir);
    let set = Arc::new(set);
    for http in [Http::One, Http::Two] {
        for lie in [false, true] {
            let server = batch_server(http, Arc::clone(&set), lie);
            let json = dir.join("r.json");
            let target = url(&server, "");
            let mut args = vec![
                "verify-batch",
                "--url",
                &target,
                "--batch",
                "16",
                "--client-id",
                "gateway",
                "--keys",
                keys.to_str().expect("path"),
                "--iss",
                ISS,
                "--aud",
                AUD,
                "--distinct",
                "64",
                "--invalid",
                "25",
                "-c",
                "2",
                "-d",
                "1s",
                "--warmup",
                "0s",
                "--json",
                json.to_str().expect("path"),
            ];
            if matches!(http, Http::Two) {
                args.push("--http2");
            }
            ok(&loadtest(
                &args,
                &[("TESSERA_LOADTEST_CLIENT_SECRET", "s3cret")],
            ));
            let r = report(&json);
            assert!(r.requests > 4, "{} requests", r.requests);
            assert_eq!(r.statuses, vec![("200".to_string(), r.requests)]);
            if lie {
                // Every request holds invalid tokens (16 of 64, spread): each answer is wrong.
                assert_eq!(
                    count(&r.errors, "unexpected_answer"),
                    r.requests,
                    "{:?}",
                    r.errors
                );
            } else {
                assert!(r.errors.is_empty(), "{:?}", r.errors);
            }
        }
    }
}

/// A token endpoint in the daemon's answer format: 200 with an access token for the client
/// `svc one` / `p@ss:w0rd` (form-encoded in its Basic credentials) asking for the scope
/// `orders:read`; a 200 without one when no scope is asked; 401 otherwise.
fn token_server(http: Http) -> Server {
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("svc+one:p%40ss%3Aw0rd")
    );
    serve_with(
        http,
        handler(move |request: Request<Incoming>, _| {
            let basic = basic.clone();
            async move {
                let header = |name| {
                    request
                        .headers()
                        .get(name)
                        .map(|v| v.as_bytes().to_vec())
                        .unwrap_or_default()
                };
                let form =
                    header(hyper::header::CONTENT_TYPE) == b"application/x-www-form-urlencoded";
                let authorized = header(hyper::header::AUTHORIZATION) == basic.as_bytes();
                if request.method() != hyper::Method::POST
                    || request.uri().path() != "/token"
                    || !form
                    || !authorized
                {
                    return reply(401, "{\"error\":\"invalid_client\"}");
                }
                let body = request
                    .into_body()
                    .collect()
                    .await
                    .expect("body")
                    .to_bytes();
                match &body[..] {
                    b"grant_type=client_credentials&scope=orders%3Aread" => reply(
                        200,
                        "{\"access_token\":\"a.b.c\",\"token_type\":\"Bearer\",\"expires_in\":900}",
                    ),
                    b"grant_type=client_credentials" => reply(200, "{\"token_type\":\"Bearer\"}"),
                    _ => reply(400, "{\"error\":\"invalid_request\"}"),
                }
            }
        }),
    )
}

#[test]
fn token_grants_read_the_secret_file_and_check_for_an_access_token() {
    let dir = Scratch::new("loadtest-token");
    let secret = dir.join("secret");
    testkit::write_private(&secret, "p@ss:w0rd\n");
    let wrong = dir.join("wrong");
    testkit::write_private(&wrong, "nope\n");
    let json = dir.join("r.json");
    for http in [Http::One, Http::Two] {
        let server = token_server(http);
        let target = url(&server, "");
        let run = |secret: &Path, scope: Option<&str>| {
            let mut args = vec![
                "token",
                "--url",
                &target,
                "--client-id",
                "svc one",
                "--secret-file",
                secret.to_str().expect("path"),
                "-c",
                "2",
                "-d",
                "1s",
                "--warmup",
                "0s",
                "--json",
                json.to_str().expect("path"),
            ];
            if let Some(scope) = scope {
                args.extend(["--scope", scope]);
            }
            if matches!(http, Http::Two) {
                args.push("--http2");
            }
            ok(&loadtest(&args, &[]));
            report(&json)
        };
        let r = run(&secret, Some("orders:read"));
        assert_eq!(r.scenario, "token");
        assert!(r.target.ends_with("/token"), "{}", r.target);
        assert!(r.requests > 10, "{} requests", r.requests);
        assert_eq!(r.statuses, vec![("200".to_string(), r.requests)]);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert!(!r.notes.iter().any(|n| n.contains("p@ss")));
        // A 200 without an access token is an unexpected answer.
        let r = run(&secret, None);
        assert_eq!(count(&r.errors, "unexpected_answer"), r.requests);
        // The wrong secret: every answer is a 401 nobody expected.
        let r = run(&wrong, Some("orders:read"));
        assert_eq!(count(&r.errors, "unexpected_status"), r.requests);
    }
    // The secret never on the command line: a missing file fails before any load.
    let server = token_server(Http::One);
    let out = loadtest(
        &[
            "token",
            "--url",
            &url(&server, ""),
            "--secret-file",
            dir.join("missing").to_str().expect("path"),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(server.requests.load(Ordering::Relaxed), 0);
}

#[test]
fn ctrl_c_ends_the_run_early_with_a_report() {
    let server = serve(handler(|_, _| async { reply(200, "ok\n") }));
    let dir = Scratch::new("loadtest-ctrl-c");
    let json = dir.join("r.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tessera-loadtest"))
        .args([
            "get",
            &url(&server, "/"),
            "-c",
            "2",
            "-d",
            "30s",
            "--warmup",
            "0s",
            "--quiet",
            "--json",
            json.to_str().expect("path"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run tessera-loadtest");
    std::thread::sleep(Duration::from_millis(1500));
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("tessera-loadtest went on after Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(130));
    let r = report(&json);
    assert!(
        (0.5..10.0).contains(&r.duration_s),
        "a window of {} s",
        r.duration_s
    );
    assert!(r.requests > 0 && r.errors.is_empty(), "{r:?}");
    assert_eq!(server.requests.load(Ordering::Relaxed), r.requests);
    assert!((r.throughput - r.requests as f64 / r.duration_s).abs() < 1e-6);
    assert!(r.timeline.len() <= r.duration_s.ceil() as usize);
    assert!(
        r.notes.iter().any(|n| n.contains("interrupted")),
        "{:?}",
        r.notes
    );
}

// ---- HTTP/2 -----------------------------------------------------------------------------------

/// The `TCP connections opened: N` note.
fn connections_opened(r: &Report) -> u64 {
    r.notes
        .iter()
        .find_map(|n| n.strip_prefix("TCP connections opened: "))
        .and_then(|n| n.parse().ok())
        .expect("the connections note")
}

#[test]
fn http2_closed_loop_keeps_connections_times_streams_in_flight() {
    let in_flight = Arc::new(AtomicU64::new(0));
    let most = Arc::new(AtomicU64::new(0));
    let server = {
        let (in_flight, most) = (Arc::clone(&in_flight), Arc::clone(&most));
        serve_with(
            Http::Two,
            handler(move |request, _| {
                let (in_flight, most) = (Arc::clone(&in_flight), Arc::clone(&most));
                async move {
                    if request.version() != hyper::Version::HTTP_2 {
                        return reply(505, "HTTP/2 only\n");
                    }
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    reply(200, "hello\n")
                }
            }),
        )
    };
    let dir = Scratch::new("loadtest-h2-closed");
    let (json, html) = (dir.join("r.json"), dir.join("r.html"));
    let out = ok(&loadtest(
        &[
            "get",
            &url(&server, "/"),
            "--http2",
            "--streams",
            "4",
            "-c",
            "2",
            "-t",
            "2",
            "-d",
            "1s",
            "--warmup",
            "0s",
            "--json",
            json.to_str().expect("path"),
            "--html",
            html.to_str().expect("path"),
        ],
        &[],
    ))
    .stdout
    .clone();
    let r = report(&json);
    assert_eq!(
        (r.protocol.as_str(), r.streams, r.connections, r.threads),
        ("http2", Some(4), 2, 2)
    );
    assert!(r.requests > 100, "{} requests", r.requests);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.statuses, vec![("200".to_string(), r.requests)]);
    // Without a warm-up every request the server answered counts, once.
    assert_eq!(server.requests.load(Ordering::Relaxed), r.requests);
    assert_eq!(server.connections.load(Ordering::Relaxed), 2);
    assert_eq!(connections_opened(&r), 2);
    assert_eq!(most.load(Ordering::SeqCst), 8, "2 connections × 4 streams");
    let table = String::from_utf8_lossy(&out);
    assert!(
        table.contains("2 connections on 2 threads, HTTP/2 with 4 streams per connection"),
        "{table}"
    );
    let page = std::fs::read_to_string(&html).expect("the HTML report");
    assert!(page.contains("HTTP/2 with 4 streams per connection"));
}

#[test]
fn http2_answers_are_checked_and_reset_streams_counted() {
    // Every third request a 500, every fifth stream reset by the server.
    let server = serve_with(
        Http::Two,
        handler(|_, n| async move {
            if n % 5 == 0 {
                reset()
            } else if n % 3 == 0 {
                reply(500, "broken\n")
            } else {
                reply(200, "ok\n")
            }
        }),
    );
    let dir = Scratch::new("loadtest-h2-errors");
    let json = dir.join("r.json");
    ok(&loadtest(
        &[
            "jwks",
            "--url",
            &url(&server, ""),
            "--http2",
            "--streams",
            "3",
            "-c",
            "1",
            "-d",
            "500ms",
            "--warmup",
            "0s",
            "--quiet",
            "--json",
            json.to_str().expect("path"),
        ],
        &[],
    ));
    let r = report(&json);
    let seen = server.requests.load(Ordering::Relaxed);
    assert!(seen > 30, "{seen} requests");
    let (resets, failures) = (seen / 5, seen / 3 - seen / 15);
    assert_eq!(count(&r.errors, "protocol"), resets, "{:?}", r.errors);
    assert_eq!(count(&r.errors, "unexpected_status"), failures);
    assert_eq!(count(&r.statuses, "500"), failures);
    assert_eq!(count(&r.statuses, "200"), seen - resets - failures);
    assert_eq!(r.requests, seen - resets);
    assert_eq!(r.errors.len(), 2, "{:?}", r.errors);
    // A reset stream leaves its connection in use.
    assert_eq!(server.connections.load(Ordering::Relaxed), 1);
}

/// Half a second of `get` over one HTTP/2 connection with 4 streams; its report.
fn get_h2_4_streams(server: &Server, dir: &Scratch) -> Report {
    let json = dir.join("r.json");
    ok(&loadtest(
        &[
            "get",
            &url(server, "/"),
            "--http2",
            "--streams",
            "4",
            "-c",
            "1",
            "-d",
            "500ms",
            "--warmup",
            "0s",
            "--quiet",
            "--json",
            json.to_str().expect("path"),
        ],
        &[],
    ));
    report(&json)
}

#[test]
fn http2_goaway_opens_a_new_connection_without_errors() {
    let server = serve_with(
        Http::TwoEndingAfter {
            requests: 50,
            graceful: true,
        },
        handler(|_, _| async { reply(200, "ok\n") }),
    );
    let dir = Scratch::new("loadtest-h2-goaway");
    let r = get_h2_4_streams(&server, &dir);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(server.requests.load(Ordering::Relaxed), r.requests);
    let connections = server.connections.load(Ordering::Relaxed);
    assert!(
        connections >= 2,
        "{connections} connections for {} requests",
        r.requests
    );
    assert_eq!(connections_opened(&r), connections);
}

#[test]
fn http2_connection_errors_are_counted_and_the_connection_reopened() {
    let server = serve_with(
        Http::TwoEndingAfter {
            requests: 50,
            graceful: false,
        },
        handler(|_, _| async { reply(200, "ok\n") }),
    );
    let dir = Scratch::new("loadtest-h2-drop");
    let r = get_h2_4_streams(&server, &dir);
    let connections = server.connections.load(Ordering::Relaxed);
    assert!(connections >= 3, "{connections} connections");
    assert_eq!(connections_opened(&r), connections);
    // Only the requests in flight when a connection was dropped failed: 4 at most each time.
    let io = count(&r.errors, "io");
    assert!(io >= 1 && io <= 4 * connections, "{:?}", r.errors);
    assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
    assert_eq!(r.statuses, vec![("200".to_string(), r.requests)]);
    // Each dropped connection had answered all but the last 4 of its requests.
    assert!(
        r.requests >= 46 * (connections - 1),
        "{} requests",
        r.requests
    );
}

#[test]
fn streams_need_http2() {
    let out = loadtest(&["get", "http://127.0.0.1:9/", "--streams", "4"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--streams needs --http2"));
    let out = loadtest(
        &["get", "http://127.0.0.1:9/", "--http2", "--streams", "0"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--streams must be at least 1"));
}
