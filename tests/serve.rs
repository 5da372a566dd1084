//! End-to-end tests of `tessera serve`: the real binary on a free port, driven over HTTP/1.1
//! (a hyper client, and raw TCP where the test needs to misbehave) and HTTP/2 with prior
//! knowledge. Each test starts its own daemon with its own configuration in a scratch folder;
//! callers' secrets are hashed with `tessera client hash-secret` and never passed to the daemon
//! on a command line. The development-mode test makes its own SoftHSM token, as tests/hsm.rs
//! does.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    self as sig, EcdsaKeyPair, KeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{HeaderMap, Request, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod common;
use common::{Scratch, SoftHsm};

/// How long the daemon may take to print its listening line.
const START: Duration = Duration::from_secs(30);
/// How long one HTTP exchange may take.
const STEP: Duration = Duration::from_secs(10);
const ISS: &str = "https://issuer.example";
const CLIENT: &str = "gateway";
const SECRET: &str = "gateway-secret-4711";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
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
    common::run_bounded(cmd, stdin, START)
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

/// An ES256 issuer: a key pair and its public JWK Set.
struct Issuer {
    key: EcdsaKeyPair,
    kid: String,
    jwks: String,
}

impl Issuer {
    fn new(kid: &str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("keygen");
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .expect("key");
        let point = key.public_key().as_ref();
        let jwks = format!(
            r#"{{"keys":[{{"kty":"EC","crv":"P-256","kid":"{kid}","alg":"ES256","use":"sig","x":"{}","y":"{}"}}]}}"#,
            URL_SAFE_NO_PAD.encode(&point[1..33]),
            URL_SAFE_NO_PAD.encode(&point[33..])
        );
        Issuer {
            key,
            kid: kid.into(),
            jwks,
        }
    }

    fn sign(&self, claims: &Value) -> String {
        self.sign_typed("at+jwt", claims)
    }

    fn sign_typed(&self, typ: &str, claims: &Value) -> String {
        let header = jose::jws::header_json(jose::Algorithm::ES256, Some(&self.kid), Some(typ));
        let input = jose::SigningInput::new(header.as_bytes(), claims.to_string().as_bytes());
        let signature = self
            .key
            .sign(&SystemRandom::new(), input.as_bytes())
            .expect("sign");
        input.into_compact(signature.as_ref())
    }
}

/// Claims of a token valid now, with `extra` members added, replaced, or removed (null).
fn claims(extra: Value) -> Value {
    let now = unix_now();
    let mut c = json!({
        "iss": ISS,
        "sub": "alice",
        "aud": "api://orders",
        "client_id": "web",
        "scope": "orders:read profile",
        "iat": now - 10,
        "nbf": now - 10,
        "exp": now + 300,
        "jti": "jti-1",
        "email": "alice@example.com",
    });
    let members = c.as_object_mut().expect("object");
    for (k, v) in extra.as_object().expect("object") {
        if v.is_null() {
            members.remove(k);
        } else {
            members.insert(k.clone(), v.clone());
        }
    }
    c
}

/// The same token with its payload replaced and the signature kept.
fn tampered(token: &str, claims: &Value) -> String {
    let mut parts = token.split('.');
    let header = parts.next().expect("header");
    let signature = parts.nth(1).expect("signature");
    format!(
        "{header}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
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
        let issuer = Issuer::new("k1");
        dir.write("jwks.json", &issuer.jwks);
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

/// A running `tessera serve`, killed when dropped.
struct Daemon {
    child: Child,
    addr: SocketAddr,
    url: String,
    stdout: mpsc::Receiver<String>,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_done: Option<std::thread::JoinHandle<()>>,
}

impl Daemon {
    /// Starts the daemon and waits for its listening line.
    fn spawn(mut cmd: Command) -> Daemon {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tessera serve");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stderr_done = {
            let mut pipe = child.stderr.take().expect("stderr");
            let stderr = Arc::clone(&stderr);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    stderr
                        .lock()
                        .expect("stderr lock")
                        .extend_from_slice(&buf[..n]);
                }
            })
        };
        let (lines, stdout) = mpsc::channel();
        let pipe = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let first = stdout.recv_timeout(START);
        let mut daemon = Daemon {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            url: String::new(),
            stdout,
            stderr,
            stderr_done: Some(stderr_done),
        };
        let line = match first {
            Ok(line) => line,
            Err(e) => {
                let _ = daemon.child.kill();
                let status = daemon.child.wait().expect("wait");
                panic!(
                    "no listening line ({e}; {status}); stderr:\n{}",
                    daemon.finished_stderr()
                );
            }
        };
        let addr = line
            .strip_prefix("listening on http://")
            .and_then(|a| a.parse::<SocketAddr>().ok())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        assert!(addr.ip().is_loopback() && addr.port() != 0, "{line}");
        daemon.addr = addr;
        daemon.url = format!("http://{addr}");
        daemon
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the daemon has logged so far.
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().expect("stderr lock")).into_owned()
    }

    /// Waits until the daemon has logged `needle` (the log pipe is read by a thread).
    fn wait_for_log(&self, needle: &str) {
        let start = Instant::now();
        while !self.stderr().contains(needle) {
            assert!(
                start.elapsed() < Duration::from_secs(3),
                "{needle:?} is not in the logs:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Everything the daemon logged, once it has exited.
    fn finished_stderr(&mut self) -> String {
        if let Some(reader) = self.stderr_done.take() {
            let _ = reader.join();
        }
        self.stderr()
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([name, &self.pid().to_string()])
            .status()
            .expect("kill(1)");
        assert!(status.success(), "kill {name}");
    }

    /// Waits for the daemon to exit; fails the test past `limit`. Asynchronous, so that the
    /// test's own client connections keep being served (HTTP/2 PINGs are answered) meanwhile.
    async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "the daemon did not exit within {limit:?}; stderr:\n{}",
                    self.finished_stderr()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Lines printed on stdout after the listening line.
    fn more_stdout(&self) -> Vec<String> {
        self.stdout.try_iter().collect()
    }

    async fn call(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
        send(self.addr, request(method, self.addr, path, headers, body)).await
    }

    async fn get(&self, path: &str) -> Reply {
        self.call("GET", path, &[], "").await
    }

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
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP answer, body read whole.
#[derive(Debug)]
struct Reply {
    status: u16,
    version: Version,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.text()))
    }
}

fn request(
    method: &str,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Request<Full<Bytes>> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("request")
}

async fn collect(response: hyper::Response<hyper::body::Incoming>) -> Reply {
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes().to_vec();
    Reply {
        status: parts.status.as_u16(),
        version: parts.version,
        headers: parts.headers,
        body,
    }
}

/// One request on a fresh HTTP/1.1 connection.
async fn send(addr: SocketAddr, request: Request<Full<Bytes>>) -> Reply {
    tokio::time::timeout(STEP, async {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("HTTP/1.1 handshake");
        tokio::spawn(conn);
        collect(sender.send_request(request).await.expect("response")).await
    })
    .await
    .unwrap_or_else(|_| panic!("no answer within {STEP:?}"))
}

/// One request on a fresh HTTP/2 connection with prior knowledge.
async fn send_h2(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    tokio::time::timeout(STEP, async {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .expect("HTTP/2 handshake");
        tokio::spawn(conn);
        let mut builder = Request::builder().uri(format!("http://{addr}{path}"));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder.body(Full::new(Bytes::new())).expect("request");
        collect(sender.send_request(request).await.expect("response")).await
    })
    .await
    .unwrap_or_else(|_| panic!("no HTTP/2 answer within {STEP:?}"))
}

/// Reads until the server closes the connection (or resets it), at most `limit`. Returns the
/// bytes read, or `None` if the connection was still open at the limit.
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

// ---- introspection ----

#[tokio::test]
async fn introspection_answers_active_only_for_trusted_valid_tokens() {
    let setup = Setup::new("introspect");
    let daemon = setup.start("", "workers = 2", "");
    let auth = basic(CLIENT, SECRET);
    let now = unix_now();

    let good_claims = claims(json!({}));
    let good = setup.issuer.sign(&good_claims);
    let reply = daemon.introspect(Some(&auth), &good).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let mut expected = good_claims.clone();
    expected.as_object_mut().expect("object").remove("email");
    expected["active"] = json!(true);
    expected["token_type"] = json!("Bearer");
    assert_eq!(reply.json(), expected, "the RFC 7662 members, nothing else");
    // Asked again, answered from the cache with the answer kept with the verdict: the same.
    let again = daemon.introspect(Some(&auth), &good).await;
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.text(), reply.text());
    // `azp` stands for `client_id`; an `aud` array is kept as an array.
    let azp = claims(json!({"aud": ["api://orders", "api://billing"], "azp": "mobile"}));
    let mut azp = azp.as_object().expect("object").clone();
    azp.remove("client_id");
    let answer = daemon
        .introspect(Some(&auth), &setup.issuer.sign(&Value::Object(azp)))
        .await
        .json();
    assert_eq!(answer["client_id"], "mobile");
    assert_eq!(answer["aud"], json!(["api://orders", "api://billing"]));

    let stranger = Issuer::new("k1");
    let outsider = Issuer::new("other");
    let inactive = [
        (
            "expired",
            setup.issuer.sign(&claims(json!({"exp": now - 3600}))),
        ),
        (
            "not yet valid",
            setup.issuer.sign(&claims(json!({"nbf": now + 3600}))),
        ),
        ("untrusted key, trusted kid", stranger.sign(&good_claims)),
        ("untrusted key and kid", outsider.sign(&good_claims)),
        (
            "trusted key, another issuer",
            setup
                .issuer
                .sign(&claims(json!({"iss": "https://evil.example"}))),
        ),
        (
            "tampered",
            tampered(&good, &claims(json!({"sub": "mallory"}))),
        ),
        ("garbage", "not-a-token".to_owned()),
    ];
    for (what, token) in &inactive {
        let reply = daemon.introspect(Some(&auth), token).await;
        assert_eq!(reply.status, 200, "{what}: {}", reply.text());
        assert_eq!(reply.json(), json!({"active": false}), "{what}");
        assert_eq!(reply.header("cache-control"), Some("no-store"), "{what}");
    }

    // Callers: none, wrong secret, unknown id, another scheme.
    assert_invalid_client(&daemon.introspect(None, &good).await);
    assert_invalid_client(
        &daemon
            .introspect(Some(&basic(CLIENT, "wrong")), &good)
            .await,
    );
    assert_invalid_client(
        &daemon
            .introspect(Some(&basic("nobody", SECRET)), &good)
            .await,
    );
    assert_invalid_client(
        &daemon
            .introspect(Some(&format!("Bearer {good}")), &good)
            .await,
    );
    // The caller is still known after the refusals.
    assert_eq!(
        daemon.introspect(Some(&auth), &good).await.json()["active"],
        true
    );

    // Request form.
    let form = |ct: &'static str, body: &'static str| {
        let auth = auth.clone();
        let daemon = &daemon;
        async move {
            daemon
                .call(
                    "POST",
                    "/introspect",
                    &[("authorization", &auth), ("content-type", ct)],
                    body,
                )
                .await
        }
    };
    let reply = form("application/json", "{\"token\":\"x\"}").await;
    assert_eq!(reply.status, 415, "{}", reply.text());
    let reply = form("application/x-www-form-urlencoded", "token_type_hint=x").await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json(), json!({"error": "invalid_request"}));
    let reply = form(
        "application/x-www-form-urlencoded; charset=UTF-8",
        "token=a.b.c",
    )
    .await;
    assert_eq!(reply.json(), json!({"active": false}));
    let reply = daemon.get("/introspect").await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("POST"));
    // A signed answer needs an HSM.
    let reply = daemon
        .introspect_with(
            Some(&auth),
            &good,
            &[("accept", "application/token-introspection+jwt")],
        )
        .await;
    assert_eq!(reply.status, 406, "{}", reply.text());
}

/// A SoftHSM token of its own, removed when dropped.
struct Token(SoftHsm);

const LABEL: &str = "tessera-serve-test";

impl Token {
    fn new(name: &str) -> Self {
        Token(SoftHsm::new(&format!("serve-{name}"), LABEL))
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

#[tokio::test]
async fn dev_mode_signs_introspection_answers_with_its_published_key() {
    let token = Token::new("dev");
    let daemon = Daemon::spawn(token.command(&["serve", "--dev", "--listen", "127.0.0.1:0"]));
    let url = daemon.url.clone();
    let auth = basic("dev", "dev-secret");
    let jwt_accept = [("accept", "application/token-introspection+jwt")];

    let jwks = daemon.get("/.well-known/jwks.json").await;
    assert_eq!(jwks.status, 200, "{}", jwks.text());
    assert_eq!(
        jwks.header("content-type"),
        Some("application/jwk-set+json")
    );
    let keys = jwks.json()["keys"].as_array().expect("keys").clone();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(
        (&keys[0]["kty"], &keys[0]["crv"]),
        (&json!("EC"), &json!("P-256"))
    );
    assert!(keys[0].get("d").is_none(), "no private part");

    let discovery = daemon
        .get("/.well-known/oauth-authorization-server")
        .await
        .json();
    assert_eq!(
        discovery,
        json!({
            "issuer": url,
            "introspection_endpoint": format!("{url}/introspect"),
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic"],
            "jwks_uri": format!("{url}/.well-known/jwks.json"),
            "introspection_signing_alg_values_supported": ["ES256"],
        })
    );

    let claims = format!(r#"{{"iss":"{url}","sub":"alice","scope":"read"}}"#);
    let access = token.ok(&["token", "sign", "--alg", "ES256", "--claims", &claims]);
    let access = access.trim();

    let plain = daemon.introspect(Some(&auth), access).await;
    assert_eq!(plain.status, 200, "{}", plain.text());
    assert_eq!(plain.json()["active"], true);
    assert_eq!(plain.json()["iss"], url.as_str());

    for (token_text, active) in [(access, true), ("not-a-token", false)] {
        let reply = daemon
            .introspect_with(Some(&auth), token_text, &jwt_accept)
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(
            reply.header("content-type"),
            Some("application/token-introspection+jwt")
        );
        assert_eq!(reply.header("cache-control"), Some("no-store"));
        let jwt = reply.text();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3, "{jwt}");
        let header = b64_json(parts[0]);
        assert_eq!(header["typ"], "token-introspection+jwt");
        assert_eq!(header["alg"], "ES256");
        let jwk = keys
            .iter()
            .find(|k| k["kid"] == header["kid"])
            .unwrap_or_else(|| panic!("kid {} is not published", header["kid"]));
        assert!(es256_verifies(&jwt, jwk), "signature");
        let forged = format!("{}.{}.{}", parts[0], parts[0], parts[2]);
        assert!(!es256_verifies(&forged, jwk), "the check can fail");
        let body = b64_json(parts[1]);
        assert_eq!(body["iss"], url.as_str());
        assert_eq!(body["aud"], "dev");
        let iat = body["iat"].as_i64().expect("iat");
        assert!((iat - unix_now()).abs() < 60, "iat {iat}");
        let inner = &body["token_introspection"];
        if active {
            assert_eq!(inner["active"], true, "{body}");
            assert_eq!(inner["sub"], "alice");
            assert_eq!(inner["scope"], "read");
            assert_eq!(inner["iss"], url.as_str());
            assert_eq!(inner["token_type"], "Bearer");
        } else {
            assert_eq!(inner, &json!({"active": false}));
        }
    }
    // The development client is the only one.
    assert_invalid_client(
        &daemon
            .introspect(Some(&basic("dev", "wrong-secret")), access)
            .await,
    );
}

/// The publish delay and retention are the token's, so the daemon signs with the key that the
/// CLI reports active, whatever either was started with.
#[tokio::test]
async fn daemon_and_cli_agree_on_the_active_key() {
    let token = Token::new("agree");
    let now = unix_now();
    let old = token.ok(&[
        "keys",
        "generate",
        "--alg",
        "ES256",
        "--now",
        &(now - 7200).to_string(),
    ]);
    let new = token.ok(&[
        "keys",
        "rotate",
        "--alg",
        "ES256",
        "--now",
        &(now - 600).to_string(),
    ]);
    let kid = |json: &str| -> String {
        serde_json::from_str::<Value>(json).expect("JSON")["kid"]
            .as_str()
            .expect("kid")
            .to_owned()
    };
    let (old, new) = (kid(&old), kid(&new));
    let active = || -> String {
        let list: Value =
            serde_json::from_str(&token.ok(&["keys", "list", "--json"])).expect("JSON");
        let active: Vec<&Value> = list
            .as_array()
            .expect("array")
            .iter()
            .filter(|k| k["state"] == "active")
            .collect();
        assert_eq!(active.len(), 1, "{list}");
        active[0]["kid"].as_str().expect("kid").to_owned()
    };
    // The default publish delay (900 s) has not passed since the rotation.
    assert_eq!(active(), old);
    // A shorter delay, kept on the token: the CLI sees the rotation done...
    let policy = token.ok(&[
        "keys",
        "policy",
        "--publish-delay",
        "300",
        "--retention",
        "3600",
    ]);
    assert_eq!(
        serde_json::from_str::<Value>(&policy).expect("JSON"),
        json!({"publish_delay": 300, "retention": 3600})
    );
    assert_eq!(active(), new);
    // ... and so does the daemon, which has no lifecycle settings of its own.
    let daemon = Daemon::spawn(token.command(&["serve", "--dev", "--listen", "127.0.0.1:0"]));
    let access = token.ok(&["token", "sign", "--alg", "ES256", "--claims", "{}"]);
    let reply = daemon
        .introspect_with(
            Some(&basic("dev", "dev-secret")),
            access.trim(),
            &[("accept", "application/token-introspection+jwt")],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let header = b64_json(reply.text().split('.').next().expect("header"));
    assert_eq!(header["kid"], new.as_str());
    assert_eq!(
        b64_json(access.split('.').next().expect("header"))["kid"],
        new.as_str()
    );
}

/// Regression: with a `public_url` ending in `/`, RFC 8414 named the issuer without the slash
/// and RFC 9701 answers were signed with it, two different strings. And an RFC 9701 answer
/// (`typ: token-introspection+jwt`) verified as an access token wherever its issuer's keys are
/// trusted and it carried `exp`.
#[tokio::test]
async fn rfc9701_answers_carry_the_discovery_issuer_and_are_not_access_tokens() {
    let token = Token::new("rfc9701");
    token.ok(&["keys", "generate", "--alg", "ES256"]);
    let setup = Setup::new("rfc9701");
    let pin = token.0.dir.join("pin");
    let config = setup.config(
        "public_url = \"https://tessera.example/\"",
        "",
        &format!(
            "[hsm]\ntoken = \"{LABEL}\"\npin_file = \"{}\"\n\n\
             [[issuers]]\nissuer = \"https://tessera.example\"\nhsm = true\n",
            pin.display()
        ),
    );
    let file = setup.dir.write("tessera.toml", &config);
    let daemon = Daemon::spawn(token.command(&["serve", "--config", path_str(&file)]));

    let discovery = daemon
        .get("/.well-known/oauth-authorization-server")
        .await
        .json();
    assert_eq!(
        discovery["issuer"], "https://tessera.example",
        "{discovery}"
    );
    assert_eq!(
        discovery["jwks_uri"],
        "https://tessera.example/.well-known/jwks.json"
    );
    let access = setup.issuer.sign(&claims(json!({})));
    let reply = daemon
        .introspect_with(
            Some(&basic(CLIENT, SECRET)),
            &access,
            &[("accept", "application/token-introspection+jwt")],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let answer = reply.text();
    let body = b64_json(answer.split('.').nth(1).expect("payload"));
    assert_eq!(body["iss"], discovery["issuer"], "{body}");
    assert_eq!(body["token_introspection"]["active"], true, "{body}");

    // Downstream, the answer verifies as a JWS, never as an access token.
    let jwks = daemon.get("/.well-known/jwks.json").await;
    let jwks = setup.dir.write("daemon-jwks.json", &jwks.text());
    let out = run(
        tessera(&["jws", "verify", "--jwks", path_str(&jwks), &answer]),
        b"",
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = run(
        tessera(&[
            "verify",
            "--jwks",
            path_str(&jwks),
            "--iss",
            "https://tessera.example",
            &answer,
        ]),
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    let verdict: Value = serde_json::from_slice(&out.stdout).expect("verdict");
    assert_eq!(verdict["error"], "introspection_response", "{verdict}");

    // Nor does the daemon take one, even with exp, from an issuer it trusts.
    let typed = setup
        .issuer
        .sign_typed("application/token-introspection+jwt", &claims(json!({})));
    let bearer = format!("Bearer {typed}");
    let reply = daemon
        .call("GET", "/v1/authz/orders", &[("authorization", &bearer)], "")
        .await;
    assert_bearer(
        &reply,
        401,
        "Bearer realm=\"tessera\", error=\"invalid_token\"",
    );
    let reply = daemon
        .introspect(Some(&basic(CLIENT, SECRET)), &typed)
        .await;
    assert_eq!(reply.json(), json!({"active": false}));
}

// ---- batch verify ----

/// Regression: the first requests of a client are refused with 503 while another check of the
/// same credential is running. Secret hashes are checked at most two at a time and a third
/// check is refused at once (`AuthError::Busy`), so a gateway that opens a few connections at
/// start, with the right secret and the default 600 000 PBKDF2 iterations, gets 503s.
#[tokio::test]
async fn concurrent_first_requests_of_one_client_are_all_answered() {
    let dir = Scratch::new("auth-burst");
    let issuer = Issuer::new("b1");
    dir.write("jwks.json", &issuer.jwks);
    let out = run(
        tessera(&["client", "hash-secret"]),
        format!("{SECRET}\n").as_bytes(),
    );
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).expect("UTF-8");
    let file = dir.write(
        "tessera.toml",
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[[issuers]]\nissuer = \"{ISS}\"\n\
             jwks_file = \"jwks.json\"\n\n[[clients]]\nid = \"{CLIENT}\"\nsecret_hash = \"{}\"\n",
            hash.trim()
        ),
    );
    let daemon = Daemon::spawn(tessera(&["serve", "--config", path_str(&file)]));
    let auth = basic(CLIENT, SECRET);
    let token = issuer.sign(&claims(json!({})));
    let replies = join_all(
        (0..6)
            .map(|_| daemon.introspect(Some(&auth), &token))
            .collect(),
    )
    .await;
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    println!("six concurrent first requests: {statuses:?}");
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
}

/// Regression: `client_secret_basic` secrets were tried both form-decoded and as sent, so a
/// wrong secret with a `+` or a `%` cost two PBKDF2 runs. RFC 6749 section 2.3.1 form-encodes
/// the client id and secret: they are decoded once, and each attempt costs one hash at most.
#[tokio::test]
async fn a_secret_with_plus_or_percent_costs_two_hashes() {
    const ODD: &str = "p+ss%word 1";
    let setup = Setup::new("auth-one-hash");
    let rest = format!(
        "[[clients]]\nid = \"odd\"\nsecret_hash = \"{}\"\n",
        hash_secret(ODD)
    );
    // Room for every wrong secret below from this one address.
    let daemon = setup.start("auth_failure_burst = 100", "workers = 1", &rest);
    let token = setup.issuer.sign(&claims(json!({})));
    let hashes = || async {
        let page = daemon.get("/metrics").await.text();
        metric(&page, "tessera_client_secret_hashes_total").expect("hash count")
    };
    let encoded = "p%2Bss%25word+1";
    for (what, id, secret, status, cost) in [
        ("the secret, form-encoded", "odd", encoded, 200, 1.0),
        ("a wrong secret with +", "odd", "wrong+guess", 401, 1.0),
        ("a wrong secret with %", "odd", "wrong%2Bguess", 401, 1.0),
        ("an unknown client", "nobody", "wrong+guess%21", 401, 1.0),
        // Read once, as RFC 6749 says: a secret sent unencoded is another secret.
        ("the secret, half encoded", "odd", "p+ss%25word+1", 401, 1.0),
        (
            "the secret as typed (no single reading)",
            "odd",
            ODD,
            401,
            0.0,
        ),
    ] {
        let before = hashes().await;
        let reply = daemon.introspect(Some(&basic(id, secret)), &token).await;
        assert_eq!(reply.status, status, "{what}: {}", reply.text());
        assert_eq!(hashes().await - before, cost, "{what}");
    }
}

/// Regression: every wrong secret cost a PBKDF2 run, two at a time, whoever sent it, so 100
/// connections sending wrong secrets kept the checks busy and a legitimate caller's first
/// introspection waited 3.4 to 5 s, up to the 503 line. Failed attempts are now limited per
/// source address: beyond a small bucket the flood is answered 429 with `Retry-After`, without
/// a hash, and the caller, from another address, is answered within 1 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_flood_delays_a_legitimate_first_introspection() {
    let setup = Setup::new("auth-flood");
    // Each check about 50 ms here (a sixth of the default 600 000 iterations): a queue of a
    // hundred still takes seconds.
    let rest = format!(
        "[[clients]]\nid = \"costly\"\nsecret_hash = \"{}\"\n",
        hash_secret_with(SECRET, 100_000)
    );
    let daemon = setup.start("", "workers = 1", &rest);
    let token = setup.issuer.sign(&claims(json!({})));
    let flood = Flood::start(
        daemon.addr,
        [127, 0, 0, 2],
        &basic("costly", "wrong"),
        &token,
    );
    // Until the flood is refused (or, without a limit, has filled the queue).
    let start = Instant::now();
    while flood.throttled() == 0 && start.elapsed() < Duration::from_secs(1) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let asked = Instant::now();
    let reply = daemon
        .introspect(Some(&basic("costly", SECRET)), &token)
        .await;
    let took = asked.elapsed();
    // The flood goes on a while: refused, not hashed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (statuses, retry_after) = flood.stop().await;
    println!(
        "first introspection during the flood: {} in {took:?}; flood answers {statuses:?}",
        reply.status
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(statuses.get(&429).is_some_and(|&n| n > 0), "{statuses:?}");
    assert!(
        retry_after
            .as_deref()
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|s| s >= 1),
        "Retry-After: {retry_after:?}"
    );
    // What the flood cost: a bucket's worth of hashes, not one per request.
    let page = daemon.get("/metrics").await.text();
    let hashes = metric(&page, "tessera_client_secret_hashes_total").expect("hash count");
    let wrong: usize = statuses.values().sum();
    assert!(
        hashes < 20.0 && wrong > 100,
        "{hashes} hashes for {wrong} wrong secrets"
    );
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

#[tokio::test]
async fn batch_verify_keeps_order_and_filters_audience() {
    let setup = Setup::new("batch");
    let daemon = setup.start("batch_max_tokens = 5", "workers = 2", "");
    let auth = basic(CLIENT, SECRET);
    let now = unix_now();
    let orders = setup.issuer.sign(&claims(json!({"jti": "a"})));
    let billing = setup
        .issuer
        .sign(&claims(json!({"jti": "b", "aud": ["api://billing"]})));
    let expired = setup.issuer.sign(&claims(json!({"exp": now - 3600})));
    let forged = tampered(&orders, &claims(json!({"sub": "mallory"})));
    let batch = [
        orders.as_str(),
        expired.as_str(),
        forged.as_str(),
        "garbage",
        billing.as_str(),
    ];

    let reply = daemon.verify(Some(&auth), &json!({"tokens": batch})).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let results = reply.json()["results"].as_array().expect("results").clone();
    assert_eq!(results.len(), 5);
    assert_eq!(results[0]["active"], true);
    assert_eq!(results[0]["claims"]["jti"], "a");
    assert_eq!(results[0]["claims"]["email"], "alice@example.com");
    assert_eq!(
        results[1],
        json!({"active": false, "error": "expired"}),
        "{results:?}"
    );
    assert_eq!(
        results[2],
        json!({"active": false, "error": "bad_signature"})
    );
    assert_eq!(results[3], json!({"active": false, "error": "malformed"}));
    assert_eq!(results[4]["active"], true);
    assert_eq!(results[4]["claims"]["jti"], "b");

    let reply = daemon
        .verify(
            Some(&auth),
            &json!({"tokens": [&billing, &orders], "audience": "api://orders"}),
        )
        .await;
    let results = reply.json()["results"].clone();
    assert_eq!(
        results[0],
        json!({"active": false, "error": "invalid_audience"})
    );
    assert_eq!(results[1]["claims"]["jti"], "a");

    // The limit is 5 tokens.
    let six = json!({"tokens": [&orders, &orders, &orders, &orders, &orders, &orders]});
    let reply = daemon.verify(Some(&auth), &six).await;
    assert_eq!(reply.status, 413, "{}", reply.text());
    let reply = daemon.verify(Some(&auth), &json!({"tokens": []})).await;
    assert_eq!(reply.json(), json!({"results": []}));

    assert_invalid_client(&daemon.verify(None, &json!({"tokens": [&orders]})).await);
    assert_invalid_client(
        &daemon
            .verify(Some(&basic(CLIENT, "nope")), &json!({"tokens": [&orders]}))
            .await,
    );
    let reply = daemon
        .call(
            "POST",
            "/v1/verify",
            &[("authorization", &auth), ("content-type", "text/plain")],
            "{}",
        )
        .await;
    assert_eq!(reply.status, 415);
    let reply = daemon
        .verify(Some(&auth), &json!({"tokens": [&orders], "extra": 1}))
        .await;
    assert_eq!(reply.status, 400, "{}", reply.text());
}

// ---- forward-auth ----

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

impl Daemon {
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

#[tokio::test]
async fn forward_auth_applies_route_rules_under_every_header_convention() {
    let setup = Setup::new("authz");
    let daemon = setup.start("", "workers = 2", ROUTES);
    let reader_claims = claims(json!({}));
    let reader = setup.issuer.sign(&reader_claims);
    let writer = setup.issuer.sign(&claims(json!({
        "scope": null,
        "scp": ["orders:read", "orders:write"],
        "sub": "bob",
    })));
    let wrong_audience = setup.issuer.sign(&claims(json!({
        "scope": "orders:read orders:write",
        "aud": "api://billing",
    })));
    let admin = setup.issuer.sign(&claims(json!({"scope": "orders:admin"})));
    let expired = setup
        .issuer
        .sign(&claims(json!({"exp": unix_now() - 3600})));
    let invalid = "Bearer realm=\"tessera\", error=\"invalid_token\"";
    let scope_error = |scope: &str| {
        format!("Bearer realm=\"tessera\", error=\"insufficient_scope\", scope=\"{scope}\"")
    };

    for c in [
        Convention::Forwarded,
        Convention::Original,
        Convention::Envoy,
    ] {
        let allowed = daemon
            .authz(c, "GET", "/orders/42?page=2", Some(&reader))
            .await;
        assert_eq!(allowed.status, 200, "{c:?}: {allowed:?}");
        assert!(allowed.body.is_empty());
        assert_eq!(allowed.header("x-auth-subject"), Some("alice"), "{c:?}");
        assert_eq!(allowed.header("x-auth-scope"), Some("orders:read profile"));
        assert_eq!(allowed.header("x-auth-client-id"), Some("web"));
        assert_eq!(allowed.header("x-auth-issuer"), Some(ISS));
        let claims_header = allowed.header("x-auth-claims").expect("x-auth-claims");
        let decoded: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims_header).expect("base64url"))
                .expect("claims JSON");
        assert_eq!(decoded, reader_claims, "{c:?}");

        // Missing scope for the method's rule; the writer has it, as an `scp` array.
        let refused = daemon.authz(c, "POST", "/orders", Some(&reader)).await;
        assert_bearer(&refused, 403, &scope_error("orders:write"));
        let written = daemon.authz(c, "POST", "/orders", Some(&writer)).await;
        assert_eq!(written.status, 200, "{c:?}: {written:?}");
        assert_eq!(written.header("x-auth-subject"), Some("bob"));
        assert_eq!(
            written.header("x-auth-scope"),
            Some("orders:read orders:write")
        );
        // The route's audience: a token for another audience is an invalid token there...
        let reply = daemon
            .authz(c, "DELETE", "/orders/7", Some(&wrong_audience))
            .await;
        assert_bearer(&reply, 401, invalid);
        // ...and fine where no audience is required.
        let reply = daemon
            .authz(c, "GET", "/orders/7", Some(&wrong_audience))
            .await;
        assert_eq!(reply.status, 200, "{c:?}: {reply:?}");

        // The longest prefix decides: /orders/admin needs orders:admin for any method.
        let reply = daemon
            .authz(c, "GET", "/orders/admin/users", Some(&reader))
            .await;
        assert_bearer(&reply, 403, &scope_error("orders:admin"));
        let reply = daemon
            .authz(c, "DELETE", "/orders/admin/users", Some(&admin))
            .await;
        assert_eq!(reply.status, 200, "{c:?}: {reply:?}");
        // The path is judged as a backend reads it: spellings of /orders/admin are
        // /orders/admin; what has no single reading is refused.
        for spelling in [
            "/orders/%61dmin/users",
            "/orders//admin/users",
            "/public/../orders/admin",
            "/orders/./admin",
        ] {
            let reply = daemon.authz(c, "GET", spelling, Some(&reader)).await;
            assert_bearer(&reply, 403, &scope_error("orders:admin"));
        }
        let reply = daemon
            .authz(c, "GET", "/orders%2fadmin", Some(&reader))
            .await;
        assert_eq!(reply.status, 400, "{c:?}: {reply:?}");
        assert_eq!(reply.json(), json!({"error": "invalid_path"}));
        // No rule: a valid token is enough.
        let reply = daemon.authz(c, "PUT", "/public/x", Some(&admin)).await;
        assert_eq!(reply.status, 200, "{c:?}: {reply:?}");

        // No token, an invalid one, an expired one.
        let reply = daemon.authz(c, "GET", "/orders/42", None).await;
        assert_bearer(&reply, 401, "Bearer realm=\"tessera\"");
        for bad in ["garbage", expired.as_str()] {
            let reply = daemon.authz(c, "GET", "/orders/42", Some(bad)).await;
            assert_bearer(&reply, 401, invalid);
            assert!(reply.header("x-auth-subject").is_none());
        }
    }

    // Both header families: they must agree, else one may come from the client.
    let bearer = format!("Bearer {reader}");
    let both = |method: &'static str, uri: &'static str| {
        let bearer = bearer.clone();
        let daemon = &daemon;
        async move {
            daemon
                .call(
                    "GET",
                    "/v1/authz",
                    &[
                        ("authorization", &bearer),
                        ("x-forwarded-method", "GET"),
                        ("x-forwarded-uri", "/orders/1"),
                        ("x-original-method", method),
                        ("x-original-uri", uri),
                    ],
                    "",
                )
                .await
        }
    };
    assert_eq!(both("GET", "/orders/1").await.status, 200);
    let reply = both("GET", "/orders/admin").await;
    assert_eq!(reply.status, 400, "{reply:?}");
    assert_eq!(
        reply.json(),
        json!({"error": "conflicting_forwarded_headers"})
    );
    assert_eq!(both("POST", "/orders/1").await.status, 400);
    // Another scheme is no token.
    let reply = daemon
        .call(
            "GET",
            "/v1/authz",
            &[("authorization", &basic(CLIENT, SECRET))],
            "",
        )
        .await;
    assert_bearer(&reply, 401, "Bearer realm=\"tessera\"");
}

#[tokio::test]
async fn forward_auth_over_http2_prior_knowledge() {
    let setup = Setup::new("h2");
    let daemon = setup.start("", "workers = 2", ROUTES);
    let reader = setup.issuer.sign(&claims(json!({})));
    let bearer = format!("Bearer {reader}");
    let reply = send_h2(
        daemon.addr,
        "/v1/authz",
        &[
            ("authorization", &bearer),
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/orders/42"),
        ],
    )
    .await;
    assert_eq!(reply.version, Version::HTTP_2);
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("x-auth-subject"), Some("alice"));
    assert_eq!(reply.header("x-auth-scope"), Some("orders:read profile"));
    assert_eq!(reply.header("x-auth-client-id"), Some("web"));
    assert_eq!(reply.header("x-auth-issuer"), Some(ISS));
    assert!(reply.header("x-auth-claims").is_some());
    // The same rules apply: the Envoy form, a write without the scope.
    let reply = send_h2(
        daemon.addr,
        "/v1/authz/orders/42",
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let reply = send_h2(
        daemon.addr,
        "/v1/authz",
        &[
            ("authorization", &bearer),
            ("x-forwarded-method", "DELETE"),
            ("x-forwarded-uri", "/orders/42"),
        ],
    )
    .await;
    assert_eq!(reply.status, 403, "{reply:?}");
    let reply = send_h2(daemon.addr, "/healthz", &[]).await;
    assert_eq!((reply.status, reply.text().as_str()), (200, "ok\n"));
}

// ---- limits ----

#[tokio::test]
async fn oversize_bodies_and_header_blocks_are_refused() {
    let setup = Setup::new("oversize");
    let daemon = setup.start(
        "max_body_bytes = 1024\nmax_header_bytes = 8192",
        "workers = 2",
        "",
    );
    let auth = basic(CLIENT, SECRET);
    let token = setup.issuer.sign(&claims(json!({})));
    let small = json!({"tokens": [&token]});
    assert!(small.to_string().len() < 1024);
    let reply = daemon.verify(Some(&auth), &small).await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    // By Content-Length.
    let padded = json!({"tokens": [&token], "audience": "x".repeat(1024)});
    let reply = daemon.verify(Some(&auth), &padded).await;
    assert_eq!(reply.status, 413, "{}", reply.text());
    assert_eq!(reply.json(), json!({"error": "too_large"}));
    let reply = daemon
        .introspect(Some(&auth), &format!("{token}&pad={}", "y".repeat(1100)))
        .await;
    assert_eq!(reply.status, 413, "{}", reply.text());

    // Chunked, without a length: refused while reading.
    let answer = verify_chunked(daemon.addr, &auth, &padded.to_string(), 300, Duration::ZERO).await;
    assert_eq!(
        raw_status(&answer),
        Some(413),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    // Chunked and within the limit, in pieces that arrive one by one: joined and verified.
    let pause = Duration::from_millis(5);
    let answer = verify_chunked(daemon.addr, &auth, &small.to_string(), 97, pause).await;
    assert_eq!(
        raw_status(&answer),
        Some(200),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(
        String::from_utf8_lossy(&answer).contains("\"active\":true"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    // A header block under the limit is served; one beyond it is refused with 431.
    let exchange = |size: usize| async move {
        let request = format!(
            "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: {}\r\nConnection: close\r\n\r\n",
            "p".repeat(size)
        );
        let mut stream = TcpStream::connect(daemon.addr).await.expect("connect");
        let _ = stream.write_all(request.as_bytes()).await;
        read_until_closed(&mut stream, STEP)
            .await
            .expect("the daemon answers or closes")
    };
    let answer = exchange(6000).await;
    assert_eq!(
        raw_status(&answer),
        Some(200),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let answer = exchange(12_000).await;
    println!(
        "header block of 12 kB: {:?}",
        String::from_utf8_lossy(&answer).lines().next()
    );
    assert_eq!(
        raw_status(&answer),
        Some(431),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    // HTTP/2: a header list beyond the limit is not served either.
    let big = "h".repeat(12_000);
    let reply = tokio::time::timeout(STEP, async {
        let stream = TcpStream::connect(daemon.addr).await.expect("connect");
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .expect("HTTP/2 handshake");
        tokio::spawn(conn);
        let request = Request::builder()
            .uri(format!("http://{}/healthz", daemon.addr))
            .header("x-padding", &big)
            .body(Full::new(Bytes::new()))
            .expect("request");
        match sender.send_request(request).await {
            Ok(response) => Some(collect(response).await),
            Err(_) => None,
        }
    })
    .await
    .expect("HTTP/2 answer or error in time");
    let status = reply.as_ref().map(|r| r.status);
    println!("HTTP/2 header list of 12 kB: {status:?}");
    assert_eq!(status, Some(431), "{reply:?}");
    assert_eq!(daemon.get("/healthz").await.status, 200);
}

#[tokio::test]
async fn a_slow_client_is_disconnected_and_others_are_served() {
    let setup = Setup::new("slow");
    let daemon = setup.start(
        "header_read_timeout_ms = 500\nbody_read_timeout_ms = 700",
        "workers = 2",
        "",
    );
    let start = Instant::now();
    let mut slow = TcpStream::connect(daemon.addr).await.expect("connect");
    slow.write_all(b"GET /healthz HT").await.expect("write");
    // Others are served meanwhile.
    for _ in 0..3 {
        assert_eq!(daemon.get("/healthz").await.status, 200);
    }
    let answer = read_until_closed(&mut slow, Duration::from_secs(5))
        .await
        .expect("the slow client is disconnected within 5 s");
    let took = start.elapsed();
    println!(
        "slow client disconnected after {took:?}: {:?}",
        String::from_utf8_lossy(&answer)
    );
    assert!(took >= Duration::from_millis(400), "{took:?}");
    assert_ne!(raw_status(&answer), Some(200));
    assert_eq!(daemon.get("/healthz").await.status, 200);

    // An idle keep-alive connection is closed the same way after its first request.
    let mut idle = TcpStream::connect(daemon.addr).await.expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(STEP, idle.read(&mut buf))
        .await
        .expect("answer in time")
        .expect("read");
    assert_eq!(raw_status(&buf[..n]), Some(200));
    let start = Instant::now();
    assert!(read_until_closed(&mut idle, Duration::from_secs(3))
        .await
        .is_some_and(|rest| rest.is_empty()));
    assert!(start.elapsed() >= Duration::from_millis(400));

    // A whole header, then a body that never comes: 408 after the request timeout.
    let start = Instant::now();
    let mut stalled = TcpStream::connect(daemon.addr).await.expect("connect");
    let head = format!(
        "POST /v1/verify HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"tokens\":",
        basic(CLIENT, SECRET)
    );
    stalled.write_all(head.as_bytes()).await.expect("write");
    let answer = read_until_closed(&mut stalled, Duration::from_secs(5))
        .await
        .expect("the stalled request is answered within 5 s");
    let took = start.elapsed();
    println!("stalled body answered after {took:?}");
    assert_eq!(
        raw_status(&answer),
        Some(408),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(took >= Duration::from_millis(600), "{took:?}");
    assert_eq!(
        raw_body(&answer),
        "{\"error\":\"request_timeout\"}",
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

/// The header read time counts from the end of the last request, not from the accept: a
/// keep-alive connection that keeps asking stays open for as long as it keeps asking, and its
/// next request, sent slowly, is cut off one header read time after the last answer.
#[tokio::test]
async fn the_header_read_time_counts_from_the_last_request() {
    let setup = Setup::new("keepalive");
    let daemon = setup.start("header_read_timeout_ms = 400", "workers = 1", "");
    let mut conn = TcpStream::connect(daemon.addr).await.expect("connect");
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    // Seven requests 200 ms apart: 1.4 s on one connection, each within 400 ms of the last.
    for i in 0..7 {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let n = tokio::time::timeout(STEP, conn.read(&mut buf))
            .await
            .expect("answer in time")
            .expect("read");
        assert_eq!(
            raw_status(&buf[..n]),
            Some(200),
            "request {i} after {:?}",
            start.elapsed()
        );
    }
    assert!(start.elapsed() >= Duration::from_millis(1200));
    // Now a header that never ends: closed 400 ms after the last answer (give or take).
    let answered = Instant::now();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHo")
        .await
        .expect("write");
    let rest = read_until_closed(&mut conn, Duration::from_secs(3))
        .await
        .expect("the slow header is cut off within 3 s");
    let took = answered.elapsed();
    println!("slow second header cut off {took:?} after the last answer: {rest:?}");
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert_ne!(raw_status(&rest), Some(200));
}

/// Regression: a connection that sends nothing at all is held forever. The server detects
/// HTTP/1.1 or HTTP/2 by reading the first bytes (hyper-util `auto`), and
/// `header_read_timeout` only starts once HTTP/1.1 is chosen, so a silent client (or one that
/// sends part of the HTTP/2 preface) holds a connection slot with no deadline.
#[tokio::test]
async fn a_silent_client_is_disconnected_after_the_header_read_timeout() {
    let setup = Setup::new("silent");
    let daemon = setup.start("header_read_timeout_ms = 500", "workers = 2", "");
    let start = Instant::now();
    let mut silent = TcpStream::connect(daemon.addr).await.expect("connect");
    let mut preface = TcpStream::connect(daemon.addr).await.expect("connect");
    preface
        .write_all(b"PRI * HTTP/2.0\r\n")
        .await
        .expect("write");
    assert_eq!(daemon.get("/healthz").await.status, 200);
    let closed = read_until_closed(&mut silent, Duration::from_secs(3)).await;
    println!(
        "silent client: closed {:?} after {:?}",
        closed.is_some(),
        start.elapsed()
    );
    assert!(
        closed.is_some(),
        "a client that sends nothing is still connected after 3 s (header_read_timeout 500 ms)"
    );
    let closed = read_until_closed(&mut preface, Duration::from_secs(1)).await;
    assert!(
        closed.is_some(),
        "a client that stalls in the HTTP/2 preface is still connected"
    );
}

#[tokio::test]
async fn an_overloaded_engine_answers_503_at_once_and_recovers() {
    let setup = Setup::new("overload");
    // The engine admits 4 verifications at once, and a batch may hold 4 tokens (the
    // configuration refuses batches larger than the engine can admit).
    let daemon = setup.start(
        "batch_max_tokens = 4",
        "workers = 1\nqueue_per_worker = 4",
        "",
    );
    let auth = basic(CLIENT, SECRET);
    let tokens: Vec<String> = (0..256)
        .map(|i| {
            setup
                .issuer
                .sign(&claims(json!({"jti": format!("overload-{i}")})))
        })
        .collect();
    // Authenticate once, so that the burst below meets only the engine's admission.
    let warm = daemon.verify(Some(&auth), &json!({"tokens": []})).await;
    assert_eq!(warm.status, 200, "{}", warm.text());
    // 64 requests of 4 distinct uncached tokens at once against one worker.
    let mut burst = tokio::task::JoinSet::new();
    for chunk in tokens.chunks(4) {
        let body = json!({ "tokens": chunk }).to_string();
        let headers = [
            ("content-type", "application/json"),
            ("authorization", auth.as_str()),
        ];
        let req = request("POST", daemon.addr, "/v1/verify", &headers, &body);
        let addr = daemon.addr;
        burst.spawn(async move {
            let start = Instant::now();
            let reply = send(addr, req).await;
            (reply, start.elapsed())
        });
    }
    let (mut served, mut refused) = (0, 0);
    while let Some(done) = burst.join_next().await {
        let (reply, took) = done.expect("request task");
        match reply.status {
            200 => served += 1,
            503 => {
                refused += 1;
                assert_eq!(reply.json(), json!({"error": "overloaded"}));
                let retry: u64 = reply
                    .header("retry-after")
                    .expect("Retry-After")
                    .parse()
                    .expect("Retry-After in seconds");
                assert!(retry >= 1);
                assert!(took < Duration::from_secs(1), "{took:?}");
            }
            other => panic!("unexpected {other}: {}", reply.text()),
        }
    }
    println!("64 batches of 4 against 1 worker x 4 slots: {served} served, {refused} refused");
    assert!(refused > 0, "no request was refused as overloaded");

    // Afterwards: served normally.
    let reply = daemon
        .verify(Some(&auth), &json!({"tokens": [&tokens[200]]}))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["results"][0]["active"], true);
    let bearer = format!("Bearer {}", tokens[201]);
    let reply = daemon
        .call("GET", "/v1/authz", &[("authorization", &bearer)], "")
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let page = daemon.get("/metrics").await.text();
    let overloaded = metric(&page, "tessera_engine_overloaded_total").expect("overload counter");
    assert!(overloaded >= 1.0, "{overloaded}");
    assert_eq!(metric(&page, "tessera_engine_in_flight"), Some(0.0));
}

// ---- drain ----

#[tokio::test]
async fn sigterm_drains_requests_in_flight_and_exits_0() {
    let setup = Setup::new("drain");
    let mut daemon = setup.start("shutdown_grace_ms = 1000", "workers = 2", "");
    let token = setup.issuer.sign(&claims(json!({})));
    let body = json!({"tokens": [&token]}).to_string();
    let (first, rest) = body.split_at(body.len() / 2);
    let head = format!(
        "POST /v1/verify HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        basic(CLIENT, SECRET),
        body.len()
    );
    let mut in_flight = TcpStream::connect(daemon.addr).await.expect("connect");
    in_flight
        .write_all(format!("{head}{first}").as_bytes())
        .await
        .expect("write");
    assert_eq!(daemon.get("/readyz").await.json()["status"], "ready");

    let signalled = Instant::now();
    daemon.signal("-TERM");
    // /readyz fails at once, on connections still accepted during the grace.
    let mut readyz = daemon.get("/readyz").await;
    while readyz.status == 200 && signalled.elapsed() < Duration::from_millis(800) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        readyz = daemon.get("/readyz").await;
    }
    println!("/readyz {} after {:?}", readyz.status, signalled.elapsed());
    assert_eq!(
        (readyz.status, readyz.json()["status"].clone()),
        (503, json!("draining"))
    );
    assert_eq!(daemon.get("/healthz").await.status, 200);
    // After the grace: no new connections.
    loop {
        match TcpStream::connect(daemon.addr).await {
            Err(_) => break,
            Ok(_) => {
                assert!(
                    signalled.elapsed() < Duration::from_secs(3),
                    "still accepting 3 s after SIGTERM with a 1 s grace"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let stopped_accepting = signalled.elapsed();
    println!("stopped accepting after {stopped_accepting:?}");
    assert!(stopped_accepting >= Duration::from_millis(900));

    // The request in flight still completes.
    in_flight.write_all(rest.as_bytes()).await.expect("write");
    let answer = read_until_closed(&mut in_flight, STEP)
        .await
        .expect("answer");
    assert_eq!(
        raw_status(&answer),
        Some(200),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let results: Value = serde_json::from_str(&raw_body(&answer)).expect("JSON body");
    assert_eq!(results["results"][0]["active"], true, "{results}");

    let status = daemon.wait_exit(Duration::from_secs(5)).await;
    println!("exited {status} after {:?}", signalled.elapsed());
    assert_eq!(status.code(), Some(0), "{}", daemon.finished_stderr());
    assert!(daemon.more_stdout().is_empty(), "one line on stdout");
}

#[tokio::test]
async fn sigint_closes_idle_connections_and_exits_0_at_once() {
    let setup = Setup::new("sigint");
    let mut daemon = setup.start("", "workers = 2", "");
    // An idle keep-alive connection after one request, and one that never sent a byte.
    let mut idle = TcpStream::connect(daemon.addr).await.expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(STEP, idle.read(&mut buf))
        .await
        .expect("answer in time")
        .expect("read");
    assert_eq!(raw_status(&buf[..n]), Some(200));
    let _silent = TcpStream::connect(daemon.addr).await.expect("connect");
    let h2 = send_h2(daemon.addr, "/healthz", &[]).await;
    assert_eq!(h2.status, 200);

    let signalled = Instant::now();
    daemon.signal("-INT");
    let status = daemon.wait_exit(Duration::from_secs(5)).await;
    let took = signalled.elapsed();
    println!("SIGINT: exited {status} after {took:?}");
    assert_eq!(status.code(), Some(0), "{}", daemon.finished_stderr());
    assert!(
        took < Duration::from_secs(2),
        "idle connections held the exit for {took:?}"
    );
    assert!(
        read_until_closed(&mut idle, Duration::from_secs(1))
            .await
            .is_some(),
        "the idle connection is closed"
    );
    assert!(TcpStream::connect(daemon.addr).await.is_err());
}

/// Regression: the listening line is printed before the SIGTERM/SIGINT handlers are installed
/// (they are installed when the shutdown future is first polled). A supervisor that stops the
/// daemon right after it announced itself either kills it with the default action (exit by
/// signal, no drain) or, when the signal lands while tokio registers the handler, loses the
/// signal and the daemon keeps running. The signal is sent by a shell that is already running
/// and waits on its stdin, so that it follows the listening line within microseconds.
#[test]
fn sigterm_right_after_the_listening_line_exits_0() {
    let dir = Scratch::new("early-term");
    let issuer = Issuer::new("e1");
    let jwks = dir.write("jwks.json", &issuer.jwks);
    let mut outcomes = Vec::new();
    for _ in 0..30 {
        let mut cmd = tessera(&["serve", "--listen", "127.0.0.1:0"]);
        cmd.args(["--jwks", path_str(&jwks), "--iss", ISS])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("spawn tessera serve");
        let mut killer = Command::new("sh")
            .args(["-c", &format!("read _ && kill -TERM {}", child.id())])
            .stdin(Stdio::piped())
            .spawn()
            .expect("sh");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("listening line");
        assert!(line.starts_with("listening on "), "{line:?}");
        let mut trigger = killer.stdin.take().expect("stdin");
        trigger.write_all(b"\n").expect("trigger");
        drop(trigger);
        killer.wait().expect("sh");
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break Some(status);
            }
            if start.elapsed() > Duration::from_secs(3) {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        outcomes.push(status.map(|s| s.to_string()));
    }
    println!("{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|o| o.as_deref() == Some("exit status: 0")),
        "SIGTERM right after start must drain and exit 0 (None: still running 3 s later): \
         {outcomes:?}"
    );
}

// ---- metrics, discovery, health, logs ----

#[tokio::test]
async fn metrics_discovery_health_and_logs_without_tokens() {
    let setup = Setup::new("observe");
    let daemon = setup.start_with("", "workers = 2", "", &[("RUST_LOG", "debug")]);
    let url = daemon.url.clone();
    let auth = basic(CLIENT, SECRET);
    let good = setup.issuer.sign(&claims(json!({})));
    let stranger = Issuer::new("k1").sign(&claims(json!({"jti": "stranger"})));
    let expired = setup
        .issuer
        .sign(&claims(json!({"exp": unix_now() - 3600, "jti": "old"})));
    // A token whose payload is not base64url.
    let malformed = format!(
        "{}.MalformedPayload!!Marker.c2lnbmF0dXJl",
        good.split('.').next().expect("header")
    );

    let reply = daemon.get("/healthz").await;
    assert_eq!((reply.status, reply.text().as_str()), (200, "ok\n"));
    let reply = daemon.get("/readyz").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json(),
        json!({"status": "ready", "issuers": [{"issuer": ISS, "state": "keys", "keys": 1}]})
    );
    let reply = daemon.get("/.well-known/jwks.json").await;
    assert_eq!(reply.status, 404, "no HSM, no JWKS");
    let reply = daemon.get("/.well-known/oauth-authorization-server").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json(),
        json!({
            "issuer": url,
            "introspection_endpoint": format!("{url}/introspect"),
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic"],
        })
    );
    assert_eq!(daemon.get("/nowhere").await.status, 404);
    assert_eq!(daemon.call("POST", "/metrics", &[], "").await.status, 405);

    // Traffic: accepted and refused tokens through every endpoint, twice for the cache.
    for _ in 0..2 {
        for token in [&good, &stranger, &expired, &malformed] {
            daemon.introspect(Some(&auth), token).await;
            let bearer = format!("Bearer {token}");
            daemon
                .call("GET", "/v1/authz", &[("authorization", &bearer)], "")
                .await;
            send_h2(daemon.addr, "/v1/authz", &[("authorization", &bearer)]).await;
        }
        daemon
            .verify(
                Some(&auth),
                &json!({"tokens": [&good, &stranger, &expired, &malformed]}),
            )
            .await;
    }
    daemon
        .introspect(Some(&basic(CLIENT, "wrong")), &good)
        .await;

    let page = daemon.get("/metrics").await;
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/plain")));
    let page = page.text();
    let m = |series: &str| metric(&page, series).unwrap_or_else(|| panic!("{series}:\n{page}"));
    let requests = |endpoint: &str, status: u16| {
        m(&format!(
            "tessera_http_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}}"
        ))
    };
    assert_eq!(requests("introspect", 200), 8.0);
    assert_eq!(requests("introspect", 401), 1.0);
    assert_eq!(requests("authz", 200), 4.0);
    assert_eq!(requests("authz", 401), 12.0);
    assert_eq!(requests("verify", 200), 2.0);
    assert_eq!(requests("healthz", 200), 1.0);
    assert_eq!(requests("jwks", 404), 1.0);
    assert_eq!(requests("other", 404), 1.0);
    assert_eq!(requests("metrics", 405), 1.0);
    assert_eq!(
        m("tessera_verifications_total{outcome=\"invalid\",reason=\"bad_signature\"}"),
        8.0,
        "the stranger's token"
    );
    assert_eq!(
        m("tessera_verifications_total{outcome=\"invalid\",reason=\"malformed\"}"),
        8.0,
        "the malformed one: its payload is read (strictly) to route it to its issuer"
    );
    assert_eq!(
        m("tessera_verifications_total{outcome=\"invalid\",reason=\"expired\"}"),
        8.0
    );
    assert!(m("tessera_cache_hits_total") >= 7.0, "{page}");
    assert_eq!(m("tessera_client_auth_failures_total"), 1.0);
    assert!(m("tessera_http_connections_total") >= 25.0);
    assert!(page.contains("# TYPE tessera_http_requests_total counter"));
    assert!(page.contains("tessera_http_request_duration_seconds_count{endpoint=\"introspect\"} 9"));

    // Refusals are logged with the token's fingerprint...
    for refused in [&stranger, &expired, &malformed] {
        daemon.wait_for_log(&fingerprint(refused));
    }
    let logs = daemon.stderr();
    assert!(logs.contains("listening"), "{logs}");
    // ...and no token, no part of one, and no secret ever is.
    for token in [&good, &stranger, &expired, &malformed] {
        for part in token.split('.') {
            assert!(!logs.contains(part), "a token part is in the logs:\n{logs}");
        }
    }
    assert!(!logs.contains(SECRET));
    assert!(!logs.contains(auth.trim_start_matches("Basic ")));
}

/// Regression: valid verdicts answered from the cache are missing from
/// `tessera_verifications_total{outcome="valid"}`, while invalid ones answered from the cache
/// are counted under their reason: the valid series undercounts as soon as the cache works.
#[tokio::test]
async fn cached_valid_verdicts_are_counted_in_verifications_total() {
    let setup = Setup::new("cached-metric");
    let daemon = setup.start("", "workers = 2", "");
    let good = format!("Bearer {}", setup.issuer.sign(&claims(json!({}))));
    let bad = format!(
        "Bearer {}",
        setup
            .issuer
            .sign(&claims(json!({"exp": unix_now() - 3600})))
    );
    for _ in 0..3 {
        for bearer in [&good, &bad] {
            daemon
                .call("GET", "/v1/authz", &[("authorization", bearer)], "")
                .await;
        }
    }
    let page = daemon.get("/metrics").await.text();
    assert_eq!(
        metric(&page, "tessera_cache_hits_total"),
        Some(4.0),
        "{page}"
    );
    assert_eq!(
        metric(
            &page,
            "tessera_verifications_total{outcome=\"invalid\",reason=\"expired\"}"
        ),
        Some(3.0),
        "{page}"
    );
    assert_eq!(
        metric(
            &page,
            "tessera_verifications_total{outcome=\"valid\",alg=\"ES256\"}"
        ),
        Some(3.0),
        "three valid verdicts, two of them from the cache:\n{page}"
    );
}

#[tokio::test]
async fn quick_mode_trusts_one_issuer_and_has_no_callers() {
    let dir = Scratch::new("quick");
    let issuer = Issuer::new("q1");
    let jwks = dir.write("jwks.json", &issuer.jwks);
    let daemon = Daemon::spawn(tessera(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--jwks",
        path_str(&jwks),
        "--iss",
        ISS,
        "--aud",
        "api://orders",
    ]));
    let reply = daemon.get("/.well-known/oauth-authorization-server").await;
    assert_eq!(reply.json(), json!({"issuer": daemon.url}));
    let good = format!("Bearer {}", issuer.sign(&claims(json!({}))));
    let reply = daemon
        .call("GET", "/v1/authz/orders", &[("authorization", &good)], "")
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let other = format!(
        "Bearer {}",
        issuer.sign(&claims(json!({"aud": "api://billing"})))
    );
    let reply = daemon
        .call("GET", "/v1/authz/orders", &[("authorization", &other)], "")
        .await;
    assert_bearer(
        &reply,
        401,
        "Bearer realm=\"tessera\", error=\"invalid_token\"",
    );
    let token = issuer.sign(&claims(json!({})));
    assert_invalid_client(
        &daemon
            .introspect(Some(&basic(CLIENT, SECRET)), &token)
            .await,
    );
}

/// Quick mode's `--typ` and `--max-lifetime` reach the issuer's policy.
#[tokio::test]
async fn quick_mode_requires_typ_and_bounds_lifetime() {
    let dir = Scratch::new("quick-policy");
    let issuer = Issuer::new("q1");
    let jwks = dir.write("jwks.json", &issuer.jwks);
    let quick = |extra: &[&str]| {
        let mut args = vec![
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--jwks",
            path_str(&jwks),
            "--iss",
            ISS,
        ];
        args.extend_from_slice(extra);
        tessera(&args)
    };
    let daemon = Daemon::spawn(quick(&["--typ", "at+jwt", "--max-lifetime", "600"]));
    let now = unix_now();
    for (token, status) in [
        (issuer.sign(&claims(json!({}))), 200),
        (issuer.sign_typed("JWT", &claims(json!({}))), 401),
        (issuer.sign(&claims(json!({"exp": now + 3600}))), 401),
        (
            issuer.sign(&claims(json!({"iat": null, "exp": now + 3600}))),
            401,
        ),
        (issuer.sign(&claims(json!({"iat": null}))), 200),
    ] {
        let bearer = format!("Bearer {token}");
        let reply = daemon
            .call("GET", "/v1/authz/orders", &[("authorization", &bearer)], "")
            .await;
        assert_eq!(
            reply.status,
            status,
            "{}",
            b64_json(token.split('.').nth(1).unwrap())
        );
    }
    drop(daemon);
    for (extra, named) in [
        (&["--max-lifetime", "0"][..], "--max-lifetime"),
        (&["--typ", ""], "--typ"),
        (&["--typ", "application/token-introspection+jwt"], "--typ"),
    ] {
        let out = run(quick(extra), b"");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains(named), "{extra:?}: {err}");
        assert!(out.stdout.is_empty(), "no listening line");
    }
}

/// `[[issuers]]` `typ`, `required_claims` and `max_lifetime_s` reach the issuer's policy, and
/// bad values are refused naming the field.
#[tokio::test]
async fn issuer_typ_required_claims_and_max_lifetime_are_enforced() {
    let setup = Setup::new("issuer-policy");
    let policy = "typ = \"application/at+jwt\"\nrequired_claims = [\"sub\", \"jti\"]\nmax_lifetime_s = 600\n";
    let config = setup.config("", "", "").replace(
        "jwks_file = \"jwks.json\"\n",
        &format!("jwks_file = \"jwks.json\"\n{policy}"),
    );
    assert!(config.contains(policy));
    let file = setup.dir.write("tessera.toml", &config);
    let daemon = Daemon::spawn(tessera(&["serve", "--config", path_str(&file)]));
    let now = unix_now();
    let issuer = &setup.issuer;
    for (token, active) in [
        (issuer.sign(&claims(json!({}))), true),
        (issuer.sign_typed("JWT", &claims(json!({}))), false),
        (issuer.sign(&claims(json!({"jti": null}))), false),
        (issuer.sign(&claims(json!({"sub": null}))), false),
        (issuer.sign(&claims(json!({"exp": now + 3600}))), false),
        (
            issuer.sign(&claims(json!({"iat": null, "exp": now + 3600}))),
            false,
        ),
    ] {
        let reply = daemon
            .introspect(Some(&basic(CLIENT, SECRET)), &token)
            .await;
        assert_eq!(
            reply.json()["active"],
            active,
            "{}",
            b64_json(token.split('.').nth(1).unwrap())
        );
    }
    drop(daemon);

    for (line, field) in [
        ("max_lifetime_s = 0", "issuers[0].max_lifetime_s"),
        ("typ = \"\"", "issuers[0].typ"),
        ("typ = \"token-introspection+jwt\"", "issuers[0].typ"),
        (
            "required_claims = [\"sub\", \"\"]",
            "issuers[0].required_claims",
        ),
    ] {
        let bad = config.replace(policy, &format!("{line}\n"));
        let file = setup.dir.write("bad.toml", &bad);
        let out = run(tessera(&["config", "check", path_str(&file)]), b"");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{line}: {err}");
        assert!(err.contains(field), "{line}: {err}");
    }
}

// ---- configuration ----

#[test]
fn config_check_exit_codes_name_the_field() {
    let example = root().join("examples/tessera.toml");
    let out = run(tessera(&["config", "check", path_str(&example)]), b"");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));

    let dir = Scratch::new("config");
    let hash = hash_secret("s");
    let good = format!(
        "[[issuers]]\nissuer = \"{ISS}\"\njwks_file = \"jwks.json\"\n\n[[clients]]\nid = \"c\"\nsecret_hash = \"{hash}\"\n"
    );
    let file = dir.write("good.toml", &good);
    let out = run(tessera(&["config", "check", path_str(&file)]), b"");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let cases = [
        ("[server]\nmax_body_bytes = 0\n", "server.max_body_bytes"),
        (
            "[server]\nmax_header_bytes = 4096\n",
            "server.max_header_bytes",
        ),
        ("[server]\nlisten = \"localhost\"\n", "server.listen"),
        (
            "[server]\nheader_read_timeout_ms = 0\n",
            "server.header_read_timeout_ms",
        ),
        ("[server]\nlisten_addr = \"127.0.0.1:1\"\n", "listen_addr"),
        (
            "[engine]\nqueue_per_worker = 0\n",
            "engine.queue_per_worker",
        ),
        (
            "[[authz.routes]]\nprefix = \"orders\"\n",
            "authz.routes[0].prefix",
        ),
        (
            "[[issuers]]\nissuer = \"x\"\nhsm = true\n",
            "issuers[1].hsm",
        ),
    ];
    for (i, (text, field)) in cases.iter().enumerate() {
        let file = dir.write(&format!("bad-{i}.toml"), &format!("{good}\n{text}"));
        let out = run(tessera(&["config", "check", path_str(&file)]), b"");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{field}: {err}");
        assert!(err.contains(field), "{field}: {err}");
        assert!(out.stdout.is_empty());
    }
    let mut clients = good.replace(&hash, "plain-text");
    let file = dir.write("bad-hash.toml", &clients);
    let out = run(tessera(&["config", "check", path_str(&file)]), b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("clients[0].secret_hash"));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("plain-text"));

    // `serve` refuses the same file the same way, before listening.
    clients.push_str("[server]\nlisten = \"127.0.0.1:0\"\n");
    let file = dir.write("serve-bad.toml", &clients);
    let out = run(tessera(&["serve", "--config", path_str(&file)]), b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("clients[0].secret_hash"));
    assert!(out.stdout.is_empty(), "no listening line");
}

/// With `original_from` naming the gateway, only its header family counts: a client's own
/// headers of another family are ignored, and a request without the gateway's pair (both
/// method and URI) did not come through the gateway. Repeated headers are refused.
#[tokio::test]
async fn forward_auth_reads_only_the_configured_gateways_headers() {
    let setup = Setup::new("authz-from");
    let rest = format!("[authz]\noriginal_from = \"x-original\"\n{ROUTES}");
    let daemon = setup.start("", "workers = 1", &rest);
    let reader = format!("Bearer {}", setup.issuer.sign(&claims(json!({}))));
    let call = |headers: Vec<(&'static str, &'static str)>| {
        let reader = reader.clone();
        let daemon = &daemon;
        async move {
            let mut all: Vec<(&str, &str)> = vec![("authorization", reader.as_str())];
            all.extend(headers);
            daemon.call("GET", "/v1/authz", &all, "").await
        }
    };
    // The gateway's pair decides: reading orders is allowed, deleting is not.
    let get = vec![
        ("x-original-method", "GET"),
        ("x-original-uri", "/orders/1"),
    ];
    assert_eq!(call(get.clone()).await.status, 200);
    let delete = vec![
        ("x-original-method", "DELETE"),
        ("x-original-uri", "/orders/1"),
    ];
    assert_eq!(call(delete.clone()).await.status, 403);
    // A client's X-Forwarded-* changes nothing.
    let mut smuggled = delete.clone();
    smuggled.extend([
        ("x-forwarded-method", "GET"),
        ("x-forwarded-uri", "/orders/1"),
    ]);
    assert_eq!(call(smuggled).await.status, 403);
    // Half the pair: refused, whatever the rest says.
    let half = vec![("x-original-uri", "/orders/1")];
    assert_eq!(call(half).await.status, 400);
    // The method given twice (a client's and the gateway's): refused.
    let twice = vec![
        ("x-original-method", "GET"),
        ("x-original-method", "DELETE"),
        ("x-original-uri", "/orders/1"),
    ];
    assert_eq!(call(twice).await.status, 400);
    // An empty bearer token is a malformed request (RFC 6750 section 3.1).
    let empty = daemon
        .call("GET", "/v1/authz", &[("authorization", "Bearer ")], "")
        .await;
    assert_eq!(empty.status, 400, "{empty:?}");
}

/// Regression: `scope` was split on spaces and passed on as it came, so a token with
/// `"scope": "orders:read\tadmin"` met an `orders:read` rule and reached the backend with a tab
/// in `X-Auth-Scope`, which a backend splitting on whitespace reads as a second scope, `admin`
/// (an `scp` item with a space was left out, the rest kept). A `scope` or `scp` that is not
/// RFC 6749 scope-tokens (`%x21 / %x23-5B / %x5D-7E`) split by single spaces now makes the
/// token invalid for forward-auth, whatever the route, and inactive for introspection.
#[tokio::test]
async fn scope_with_a_tab_reads_as_another_scope_downstream() {
    let setup = Setup::new("authz-scope");
    let daemon = setup.start("", "workers = 1", ROUTES);
    let auth = basic(CLIENT, SECRET);
    let invalid = "Bearer realm=\"tessera\", error=\"invalid_token\"";
    for (what, extra) in [
        ("a tab", json!({"scope": "orders:read\tadmin"})),
        ("a newline", json!({"scope": "orders:read\nadmin"})),
        ("a quote", json!({"scope": "orders:read \"admin\""})),
        ("a backslash", json!({"scope": "orders:read ad\\min"})),
        ("two spaces", json!({"scope": "orders:read  admin"})),
        ("a trailing space", json!({"scope": "orders:read "})),
        ("non-ASCII", json!({"scope": "orders:read caf\u{e9}"})),
        (
            "an scp item with a tab",
            json!({"scope": null, "scp": ["orders:read", "orders:write\tadmin"]}),
        ),
        (
            "an scp item with a space",
            json!({"scope": null, "scp": ["orders:read", "orders:write admin"]}),
        ),
        (
            "an empty scp item",
            json!({"scope": null, "scp": ["orders:read", ""]}),
        ),
        (
            "an scp string with a tab",
            json!({"scope": null, "scp": "orders:read\tadmin"}),
        ),
        (
            "a clean scope beside a bad scp",
            json!({"scope": "orders:read", "scp": ["admin\tx"]}),
        ),
    ] {
        let token = setup.issuer.sign(&claims(extra));
        // A route that needs orders:read, and a path without rules: the token passes neither.
        for (method, path) in [("GET", "/orders/1"), ("PUT", "/public/x")] {
            let reply = daemon
                .authz(Convention::Forwarded, method, path, Some(&token))
                .await;
            assert_eq!(reply.status, 401, "{what}, {method} {path}: {reply:?}");
            assert_bearer(&reply, 401, invalid);
            assert!(reply.header("x-auth-scope").is_none(), "{what}");
        }
        let reply = daemon.introspect(Some(&auth), &token).await;
        assert_eq!(reply.json(), json!({"active": false}), "{what}");
    }
    // Every scope-token character passes, and is copied as it came.
    let odd = "!#$%&'()*+,-./09:;<=>?@AZ[]^_`az{|}~ orders:read";
    let token = setup.issuer.sign(&claims(json!({"scope": odd})));
    let reply = daemon
        .authz(Convention::Forwarded, "GET", "/orders/1", Some(&token))
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("x-auth-scope"), Some(odd));
    assert_eq!(
        daemon.introspect(Some(&auth), &token).await.json()["scope"],
        odd
    );
    let token = setup
        .issuer
        .sign(&claims(json!({"scope": null, "scp": ["orders:read", "a"]})));
    let reply = daemon
        .authz(Convention::Forwarded, "GET", "/orders/1", Some(&token))
        .await;
    assert_eq!(
        reply.header("x-auth-scope"),
        Some("orders:read a"),
        "{reply:?}"
    );
}

/// Regression: under `original_from = "any"`, half a header family was completed from the
/// `/v1/authz` request itself. nginx sends its auth sub-request as `GET`, so behind the nginx
/// manual's recipe (`X-Original-URI` alone) a `DELETE` was judged as a `GET`. Half a family is
/// now refused (400), as it already was where the gateway is named.
#[tokio::test]
async fn half_a_header_family_takes_the_subrequest_method() {
    let setup = Setup::new("authz-half");
    let daemon = setup.start("", "workers = 1", ROUTES);
    let bearer = format!("Bearer {}", setup.issuer.sign(&claims(json!({}))));
    for half in [
        [("x-original-uri", "/orders/1")],
        [("x-forwarded-uri", "/orders/1")],
        [("x-original-method", "GET")],
        [("x-forwarded-method", "GET")],
    ] {
        let mut headers = vec![("authorization", bearer.as_str())];
        headers.extend(half);
        let reply = daemon.call("GET", "/v1/authz", &headers, "").await;
        assert_eq!(reply.status, 400, "{half:?}: {reply:?}");
        assert_eq!(
            reply.json(),
            json!({"error": "missing_forwarded_headers"}),
            "{half:?}"
        );
    }
    // One half of each family is no whole one either.
    let reply = daemon
        .call(
            "GET",
            "/v1/authz",
            &[
                ("authorization", &bearer),
                ("x-forwarded-method", "GET"),
                ("x-original-uri", "/orders/1"),
            ],
            "",
        )
        .await;
    assert_eq!(reply.status, 400, "{reply:?}");
    // A whole family, or none (the Envoy form), is read as before.
    let reply = daemon
        .authz(
            Convention::Original,
            "DELETE",
            "/orders/1",
            Some(&bearer[7..]),
        )
        .await;
    assert_eq!(reply.status, 403, "{reply:?}");
    let reply = daemon
        .authz(Convention::Envoy, "GET", "/orders/1", Some(&bearer[7..]))
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
}

/// Regression: route prefixes were compared byte for byte, so `GET /ORDERS/ADMIN` escaped the
/// `/orders/admin` rule (and `POST /Orders` the write rule), although Express, ASP.NET/IIS and
/// others route every spelling to the same handler. `path_case = "sensitive"` keeps the old
/// comparison for backends that route them apart.
#[tokio::test]
async fn route_prefix_bypass_by_letter_case() {
    let setup = Setup::new("authz-case");
    let daemon = setup.start("", "workers = 1", ROUTES);
    let reader = setup.issuer.sign(&claims(json!({})));
    let scope_error = |scope: &str| {
        format!("Bearer realm=\"tessera\", error=\"insufficient_scope\", scope=\"{scope}\"")
    };
    for c in [
        Convention::Forwarded,
        Convention::Original,
        Convention::Envoy,
    ] {
        for spelling in ["/ORDERS/ADMIN", "/Orders/Admin/users", "/orders/%41dmin"] {
            let reply = daemon.authz(c, "GET", spelling, Some(&reader)).await;
            assert_bearer(&reply, 403, &scope_error("orders:admin"));
        }
        let reply = daemon.authz(c, "POST", "/Orders/7", Some(&reader)).await;
        assert_bearer(&reply, 403, &scope_error("orders:write"));
        // What the rules let through is answered as before.
        let reply = daemon.authz(c, "GET", "/ORDERS/7", Some(&reader)).await;
        assert_eq!(reply.status, 200, "{c:?}: {reply:?}");
        assert_eq!(reply.header("x-auth-scope"), Some("orders:read profile"));
    }

    let sensitive = setup.start(
        "",
        "workers = 1",
        &format!("[authz]\npath_case = \"sensitive\"\n{ROUTES}"),
    );
    let reply = sensitive
        .authz(Convention::Forwarded, "GET", "/ORDERS/ADMIN", Some(&reader))
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let reply = sensitive
        .authz(Convention::Forwarded, "GET", "/orders/admin", Some(&reader))
        .await;
    assert_bearer(&reply, 403, &scope_error("orders:admin"));
}

/// Regression: an HTTP/2 connection that stayed open with nothing to do was never closed, so
/// idle clients could take every connection slot. It is closed after `idle_timeout_ms`.
#[tokio::test]
async fn an_idle_http2_connection_is_closed() {
    let setup = Setup::new("h2-idle");
    let daemon = setup.start(
        "idle_timeout_ms = 400\nheader_read_timeout_ms = 300",
        "workers = 1",
        "",
    );
    let tcp = TcpStream::connect(daemon.addr).await.expect("connect");
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("h2 handshake");
    let closed = tokio::spawn(conn);
    let request = Request::get(format!("http://{}/healthz", daemon.addr))
        .body(http_body_util::Empty::<Bytes>::new())
        .expect("request");
    let reply = send.send_request(request).await.expect("h2 request");
    assert_eq!(reply.status(), 200);
    drop(reply);
    let start = Instant::now();
    // Closed by the server: the client's connection task ends (how it ends does not matter).
    let _ = tokio::time::timeout(Duration::from_secs(5), closed)
        .await
        .expect("the idle connection was not closed")
        .expect("connection task");
    println!("idle HTTP/2 connection closed after {:?}", start.elapsed());
    assert!(start.elapsed() >= Duration::from_millis(300));
    // The daemon still serves.
    assert_eq!(daemon.get("/healthz").await.status, 200);
}

// ---- issuers and their key sets ----

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

/// Regression: one partner could take the daemon down. A partner publishing `{"keys":[]}`, a
/// key server that does not answer, a partner using the same `kid` as another issuer, or one
/// key tessera cannot use each stopped the start ("no usable keys", a failed fetch, "kid is
/// published by both", a refused document), and a running daemon without keys for one issuer
/// answered 503 on `/readyz`. Now each issuer stands on its own: the daemon starts and is ready
/// while one issuer has keys, `/readyz` says how each stands, a shared `kid` is looked up within
/// the issuer a token claims, and unusable keys are left out, logged and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_one_partner_cannot_take_the_daemon_down() {
    let setup = Setup::new("partners");
    let (empty_url, _empty) = serve_jwks(r#"{"keys":[]}"#).await;
    // Partner B signs with a key it also calls k1 (the main issuer's kid), and publishes a weak
    // RSA key next to it.
    let partner = Issuer::new("k1");
    let weak = format!(
        r#"{{"kty":"RSA","alg":"RS256","kid":"weak","n":"{}","e":"AQAB"}}"#,
        URL_SAFE_NO_PAD.encode([0xc5u8; 128])
    );
    let keys: Value = serde_json::from_str(&partner.jwks).expect("jwks");
    let doc = format!(r#"{{"keys":[{},{weak}]}}"#, keys["keys"][0]);
    let (partner_url, _partner_doc) = serve_jwks(&doc).await;
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_url = format!("http://{}/jwks.json", silent.local_addr().expect("addr"));
    drop(silent); // nothing listens there
    let rest = format!(
        r#"[[issuers]]
issuer = "https://empty.example"
jwks_uri = "{empty_url}"

[[issuers]]
issuer = "https://partner.example"
jwks_uri = "{partner_url}"

[[issuers]]
issuer = "https://down.example"
jwks_uri = "{silent_url}"
max_stale_s = 60
"#
    );
    let daemon = setup.start("", "", &rest);
    let auth = basic(CLIENT, SECRET);

    let ready = daemon.get("/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    let states = ready.json();
    assert_eq!(states["status"], "ready");
    let state = |iss: &str| {
        states["issuers"]
            .as_array()
            .expect("issuers")
            .iter()
            .find(|i| i["issuer"] == iss)
            .cloned()
            .unwrap_or_else(|| panic!("{iss} not in {states}"))
    };
    assert_eq!(state(ISS)["state"], "keys");
    assert_eq!(
        state("https://partner.example")["keys"],
        1,
        "{}",
        daemon.stderr()
    );
    assert_eq!(state("https://empty.example")["state"], "no_keys");
    let down = state("https://down.example");
    assert_eq!(down["state"], "no_keys");
    assert!(down["failing_since"].is_string(), "{down}");

    // The same kid under two issuers: each issuer's tokens verify with its own key only.
    let mine = setup.issuer.sign(&claims(json!({})));
    let theirs = partner.sign(&claims(json!({"iss": "https://partner.example"})));
    let forged = partner.sign(&claims(json!({})));
    for (token, active) in [(&mine, true), (&theirs, true), (&forged, false)] {
        let reply = daemon.introspect(Some(&auth), token).await;
        assert_eq!(reply.json()["active"], active, "{}", reply.text());
    }
    let empty = setup
        .issuer
        .sign(&claims(json!({"iss": "https://empty.example"})));
    let reply = daemon.introspect(Some(&auth), &empty).await;
    assert_eq!(reply.json()["active"], false);

    daemon.wait_for_log("published key left out");
    let page = daemon.get("/metrics").await.text();
    assert_eq!(
        metric(
            &page,
            r#"tessera_keyset_skipped_keys{issuer="https://partner.example"}"#
        ),
        Some(1.0),
        "{page}"
    );
    assert_eq!(
        metric(
            &page,
            r#"tessera_issuer_keys{issuer="https://empty.example",state="no_keys"}"#
        ),
        Some(0.0),
        "{page}"
    );
    let logs = daemon.stderr();
    assert!(logs.contains("weak"), "{logs}");
}
