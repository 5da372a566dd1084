//! End-to-end tests of `tessera serve`: the real binary on a free port, driven over HTTP/1.1
//! (a hyper client, and raw TCP where the test needs to misbehave) and HTTP/2 with prior
//! knowledge. Each test starts its own daemon with its own configuration in a scratch folder;
//! callers' secrets are hashed with `tessera client hash-secret` and never passed to the daemon
//! on a command line. The development-mode test makes its own SoftHSM token, as tests/hsm.rs
//! does.
//!
//! The daemon harness, issuers, claims, scratch folders and SoftHSM tokens come from the
//! testkit; this file holds what only these tests share (their configuration, the endpoints
//! they call, raw-TCP clients); the tests are in one file per topic beside it.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::signature::{self as sig, UnparsedPublicKey};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use testkit::daemon::{collect, request, send, send_h2, START, STEP};
use testkit::{tampered, unix_now, Algorithm, Claims, Daemon, Issuer, Reply, Scratch, SoftHsm};

// The tests, by topic; everything above and below them is the harness they share.
mod authz;
mod callers;
mod config;
mod dpop;
mod drain;
mod introspect;
mod keysets;
mod limits;
mod mtls;
mod observe;
mod revoke;
mod token;
mod verify;

const ISS: &str = "https://issuer.example";
const CLIENT: &str = "gateway";
const SECRET: &str = "gateway-secret-4711";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// The `tessera` binary with a clean environment for what it reads.
fn tessera(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tessera"));
    cmd.args(args)
        .env_remove("RUST_LOG")
        .env_remove("TESSERA_LOG_FORMAT")
        .env_remove("TESSERA_HSM_PIN")
        .env_remove("TESSERA_HSM_PIN_FILE")
        .env_remove("TESSERA_HSM_TOKEN")
        .env_remove("TESSERA_HSM_MODULE");
    cmd
}

/// Runs a short-lived command with `stdin`, killing it if it runs past 30 s.
fn run(cmd: Command, stdin: &[u8]) -> Output {
    testkit::process::run_bounded(cmd, stdin, START)
}

/// `secret_hash` for the configuration, made by the CLI from the secret on stdin.
fn hash_secret(secret: &str) -> String {
    hash_secret_with(secret, 1000)
}

/// `secret_hash` with this many PBKDF2 iterations.
fn hash_secret_with(secret: &str, iterations: u32) -> String {
    let out = run(
        tessera(&[
            "client",
            "hash-secret",
            "--iterations",
            &iterations.to_string(),
        ]),
        format!("{secret}\n").as_bytes(),
    );
    assert!(
        out.status.success(),
        "hash-secret: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hash = String::from_utf8(out.stdout)
        .expect("UTF-8")
        .trim()
        .to_owned();
    assert!(
        hash.starts_with(&format!("pbkdf2-sha256${iterations}$")),
        "{hash}"
    );
    hash
}

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

/// A short SHA-256 fingerprint of a token, as the daemon logs it: 12 hex characters.
fn fingerprint(token: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    d.as_ref()[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// Claims of a token valid now, with `extra` members added, replaced, or removed (null).
fn claims(extra: Value) -> Value {
    Claims::valid_now()
        .merge(json!({
            "iss": ISS,
            "sub": "alice",
            "aud": "api://orders",
            "client_id": "web",
            "scope": "orders:read profile",
            "jti": "jti-1",
            "email": "alice@example.com",
        }))
        .merge(extra)
        .into_value()
}

/// An ES256 issuer named `kid`.
fn es256(kid: &str) -> Issuer {
    Issuer::new(Algorithm::ES256, kid)
}

/// A scratch folder with a trusted issuer's JWKS and a client secret hash.
struct Setup {
    dir: Scratch,
    issuer: Issuer,
    hash: String,
}

impl Setup {
    fn new(name: &str) -> Self {
        let dir = Scratch::new(&format!("serve-{name}"));
        let issuer = es256("k1");
        dir.write("jwks.json", issuer.jwks());
        Setup {
            dir,
            issuer,
            hash: hash_secret(SECRET),
        }
    }

    /// A configuration: `server` lines under `[server]`, `engine` lines under `[engine]`,
    /// then `rest` after the issuer and the client.
    fn config(&self, server: &str, engine: &str, rest: &str) -> String {
        format!(
            r#"[server]
listen = "127.0.0.1:0"
{server}

[engine]
pin_cores = false
{engine}

[[issuers]]
issuer = "{ISS}"
jwks_file = "jwks.json"

[[clients]]
id = "{CLIENT}"
secret_hash = "{hash}"

{rest}
"#,
            hash = self.hash
        )
    }

    fn start(&self, server: &str, engine: &str, rest: &str) -> Daemon {
        self.start_with(server, engine, rest, &[])
    }

    fn start_with(&self, server: &str, engine: &str, rest: &str, env: &[(&str, &str)]) -> Daemon {
        let file = self
            .dir
            .write("tessera.toml", &self.config(server, engine, rest));
        let mut cmd = tessera(&["serve", "--config", path_str(&file)]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Daemon::spawn(cmd)
    }
}

/// The daemon's endpoints, as the tests call them.
trait Endpoints {
    async fn introspect(&self, auth: Option<&str>, token: &str) -> Reply;
    async fn introspect_with(
        &self,
        auth: Option<&str>,
        token: &str,
        extra: &[(&str, &str)],
    ) -> Reply;
    async fn verify(&self, auth: Option<&str>, body: &Value) -> Reply;
    async fn authz(
        &self,
        convention: Convention,
        method: &str,
        uri: &str,
        token: Option<&str>,
    ) -> Reply;
}

impl Endpoints for Daemon {
    async fn introspect(&self, auth: Option<&str>, token: &str) -> Reply {
        self.introspect_with(auth, token, &[]).await
    }

    async fn introspect_with(
        &self,
        auth: Option<&str>,
        token: &str,
        extra: &[(&str, &str)],
    ) -> Reply {
        let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
        if let Some(auth) = auth {
            headers.push(("authorization", auth));
        }
        headers.extend_from_slice(extra);
        self.call("POST", "/introspect", &headers, &format!("token={token}"))
            .await
    }

    async fn verify(&self, auth: Option<&str>, body: &Value) -> Reply {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(auth) = auth {
            headers.push(("authorization", auth));
        }
        self.call("POST", "/v1/verify", &headers, &body.to_string())
            .await
    }

    async fn authz(
        &self,
        convention: Convention,
        method: &str,
        uri: &str,
        token: Option<&str>,
    ) -> Reply {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(b) = &bearer {
            headers.push(("authorization", b));
        }
        match convention {
            Convention::Forwarded => {
                headers.push(("x-forwarded-method", method));
                headers.push(("x-forwarded-uri", uri));
                self.call("GET", "/v1/authz", &headers, "").await
            }
            Convention::Original => {
                headers.push(("x-original-method", method));
                headers.push(("x-original-uri", uri));
                self.call("GET", "/v1/authz", &headers, "").await
            }
            Convention::Envoy => {
                self.call(method, &format!("/v1/authz{uri}"), &headers, "")
                    .await
            }
        }
    }
}

async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let reading = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(limit, reading).await.ok()?;
    Some(got)
}

/// POSTs `body` to `/v1/verify` with chunked transfer coding, `piece` bytes a chunk and `pause`
/// between chunks, and reads the answer until the daemon closes. Writing stops at the first
/// error: a daemon that refuses the body may close before it has all arrived.
async fn verify_chunked(
    addr: SocketAddr,
    auth: &str,
    body: &str,
    piece: usize,
    pause: Duration,
) -> Vec<u8> {
    let head = format!(
        "POST /v1/verify HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("write");
    for chunk in body.as_bytes().chunks(piece) {
        let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), chunk, b"\r\n"].concat();
        if stream.write_all(&framed).await.is_err() {
            break;
        }
        tokio::time::sleep(pause).await;
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    read_until_closed(&mut stream, STEP)
        .await
        .expect("the daemon answers")
}

/// The status code of a raw HTTP/1.1 answer, if there is one.
fn raw_status(answer: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(answer);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// The body of a raw HTTP/1.1 answer with a Content-Length.
fn raw_body(answer: &[u8]) -> String {
    let text = String::from_utf8_lossy(answer);
    text.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

/// The value of one sample in a Prometheus text page, `series` being the name and labels.
fn metric(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Every `WWW-Authenticate` of a Bearer refusal names the realm.
fn assert_bearer(reply: &Reply, status: u16, challenge: &str) {
    assert_eq!(reply.status, status, "{reply:?}");
    assert_eq!(
        reply.header("www-authenticate"),
        Some(challenge),
        "{reply:?}"
    );
    assert!(reply.body.is_empty(), "{reply:?}");
    assert!(reply.header("location").is_none());
}

fn assert_invalid_client(reply: &Reply) {
    assert_eq!(reply.status, 401, "{reply:?}");
    assert_eq!(
        reply.header("www-authenticate"),
        Some("Basic realm=\"tessera\"")
    );
    assert_eq!(reply.json(), json!({"error": "invalid_client"}));
}

/// A SoftHSM token of its own, removed when dropped.
struct Token(SoftHsm);

const LABEL: &str = "tessera-serve-test";

impl Token {
    fn new(name: &str) -> Self {
        Token(SoftHsm::new(
            env!("CARGO_BIN_EXE_tessera"),
            &format!("serve-{name}"),
            LABEL,
        ))
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = tessera(args);
        self.0.env(&mut cmd);
        cmd
    }

    /// Runs and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = run(self.command(args), b"");
        assert!(
            out.status.success(),
            "tessera {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8 stdout")
    }
}

fn b64_json(segment: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).expect("base64url")).expect("JSON")
}

/// Verifies an ES256 compact JWS with aws-lc-rs, from the JWK's coordinates.
fn es256_verifies(jwt: &str, jwk: &Value) -> bool {
    let (input, signature) = jwt.rsplit_once('.').expect("compact JWS");
    let coordinate = |name: &str| {
        URL_SAFE_NO_PAD
            .decode(jwk[name].as_str().expect("JWK coordinate"))
            .expect("base64url")
    };
    let point = [vec![4], coordinate("x"), coordinate("y")].concat();
    let signature = URL_SAFE_NO_PAD.decode(signature).expect("base64url");
    UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, &point)
        .verify(input.as_bytes(), &signature)
        .is_ok()
}

/// A flood's answers by status, and the last `Retry-After`.
type FloodAnswers = (std::collections::BTreeMap<u16, usize>, Option<String>);

/// Connections from one source address that send wrong secrets to `/introspect` until stopped,
/// each its next request 50 ms after an answer.
struct Flood {
    stop: Arc<std::sync::atomic::AtomicBool>,
    seen: Arc<Mutex<FloodAnswers>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Flood {
    const CONNECTIONS: usize = 100;

    fn start(addr: SocketAddr, from: [u8; 4], auth: &str, token: &str) -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(FloodAnswers::default()));
        let tasks = (0..Self::CONNECTIONS)
            .map(|_| {
                let (stop, seen) = (Arc::clone(&stop), Arc::clone(&seen));
                let (auth, body) = (auth.to_owned(), format!("token={token}"));
                tokio::spawn(async move {
                    let headers = [
                        ("authorization", auth.as_str()),
                        ("content-type", "application/x-www-form-urlencoded"),
                    ];
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
                        socket
                            .bind(SocketAddr::from((from, 0)))
                            .expect("bind the source address");
                        let Ok(stream) = socket.connect(addr).await else {
                            continue;
                        };
                        let Ok((mut sender, conn)) =
                            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
                        else {
                            continue;
                        };
                        tokio::spawn(conn);
                        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                            let req = request("POST", addr, "/introspect", &headers, &body);
                            let Ok(response) = sender.send_request(req).await else {
                                break;
                            };
                            let reply = collect(response).await;
                            {
                                let mut seen = seen.lock().expect("flood log");
                                *seen.0.entry(reply.status).or_insert(0) += 1;
                                if let Some(v) = reply.header("retry-after") {
                                    seen.1 = Some(v.to_owned());
                                }
                            }
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                })
            })
            .collect();
        Flood { stop, seen, tasks }
    }

    /// Answers 429 so far.
    fn throttled(&self) -> usize {
        let seen = self.seen.lock().expect("flood log");
        seen.0.get(&429).copied().unwrap_or(0)
    }

    /// Stops the flood: its answers by status, and the last `Retry-After`.
    async fn stop(self) -> FloodAnswers {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for task in self.tasks {
            task.abort();
            let _ = task.await;
        }
        let seen = self.seen.lock().expect("flood log");
        seen.clone()
    }
}

/// Awaits several futures of the current task at once.
async fn join_all<F: std::future::Future<Output = Reply>>(futures: Vec<F>) -> Vec<Reply> {
    let mut pending: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut done: Vec<Option<Reply>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        for (future, slot) in pending.iter_mut().zip(done.iter_mut()) {
            if slot.is_none() {
                if let std::task::Poll::Ready(reply) = future.as_mut().poll(cx) {
                    *slot = Some(reply);
                }
            }
        }
        if done.iter().all(Option::is_some) {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    done.into_iter().map(|r| r.expect("answered")).collect()
}

const ROUTES: &str = r#"
[[authz.routes]]
prefix = "/orders"
methods = ["GET", "HEAD"]
scopes = ["orders:read"]

[[authz.routes]]
prefix = "/orders"
methods = ["POST", "DELETE"]
scopes = ["orders:write"]
audience = "api://orders"

[[authz.routes]]
prefix = "/orders/admin"
scopes = ["orders:admin"]
"#;

/// The three ways a gateway names the original request.
#[derive(Clone, Copy, Debug)]
enum Convention {
    /// Traefik, Caddy: X-Forwarded-Method and X-Forwarded-Uri.
    Forwarded,
    /// nginx auth_request: X-Original-Method and X-Original-URI.
    Original,
    /// Envoy ext_authz: the request itself, under /v1/authz.
    Envoy,
}

/// Serves a JWK Set document that the test changes while the daemon runs.
async fn serve_jwks(body: &str) -> (String, Arc<Mutex<String>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind key server");
    let url = format!("http://{}/jwks.json", listener.local_addr().expect("addr"));
    let document = Arc::new(Mutex::new(body.to_owned()));
    let served = Arc::clone(&document);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let served = Arc::clone(&served);
            let service = hyper::service::service_fn(move |_: Request<hyper::body::Incoming>| {
                let body = served.lock().expect("document").clone();
                async move {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from(
                        body,
                    ))))
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    (url, document)
}
