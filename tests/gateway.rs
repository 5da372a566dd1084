//! `/v1/authz` behind real gateways: nginx with `auth_request`, and Caddy with `forward_auth`,
//! in front of the `tessera` binary and a small backend, as the README (Gateways) configures
//! them. Each test starts its own daemon, backend and gateway on loopback ports and counts what
//! reaches the backend.
//!
//! nginx is taken from /usr/sbin/nginx, Caddy from /usr/bin/caddy. When one is missing and the
//! test runs as root, it is installed with apt-get; otherwise the test fails and says how to
//! install it.

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

use testkit::{unix_now, Algorithm, Daemon, Issuer, Scratch, SoftHsm};

const ISS: &str = "https://issuer.example";
/// Longest wait for a process to start or for one HTTP exchange.
const WAIT: Duration = Duration::from_secs(20);
/// Longest wait for one apt-get step.
const APT_WAIT: Duration = Duration::from_secs(300);
/// Where nginx is looked for, first the Debian and Ubuntu location.
const NGINX_PATHS: [&str; 3] = [
    "/usr/sbin/nginx",
    "/usr/local/sbin/nginx",
    "/usr/local/nginx/sbin/nginx",
];
/// Where Caddy is looked for, first the Debian and Ubuntu location.
const CADDY_PATHS: [&str; 2] = ["/usr/bin/caddy", "/usr/local/bin/caddy"];

// ---- scratch space and processes ----

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Waits for `child` to exit within `limit`; kills it past that.
fn wait_bounded(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return Some(status);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A free loopback port: bound, then released for a server to take.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

// ---- the issuer ----

/// An ES256 issuer (`kid` `k1`).
fn new_issuer() -> Issuer {
    Issuer::new(Algorithm::ES256, "k1")
}

/// Claims from `ISS`, valid for five minutes, with `extra` members appended.
fn claims(extra: &str) -> String {
    let now = unix_now();
    format!(
        r#"{{"iss":"{ISS}","iat":{now},"exp":{}{extra}}}"#,
        now + 300
    )
}

// ---- the daemon ----

/// `tessera serve ARGS --listen 127.0.0.1:0`, listening.
fn start_daemon(args: &[&str]) -> Daemon {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tessera"));
    command
        .arg("serve")
        .args(args)
        .args(["--listen", "127.0.0.1:0"]);
    Daemon::spawn(command)
}

// ---- the backend ----

/// What the backend saw of one request.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    uri: String,
    subject: Option<String>,
    scope: Option<String>,
    client_id: Option<String>,
    issuer: Option<String>,
    claims: Option<String>,
    authorization: Option<String>,
    cnf_jkt: Option<String>,
    cnf_x5t: Option<String>,
}

/// The protected service: answers 200 with the `X-Auth-Subject` it received (or `none`) and
/// records every request. Runs until the test's runtime ends.
#[derive(Clone)]
struct Backend {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Backend {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind backend");
        let port = listener.local_addr().expect("backend address").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let log = log.clone();
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let log = log.clone();
                    async move {
                        let header = |name: &str| {
                            req.headers()
                                .get(name)
                                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                        };
                        let seen = Seen {
                            method: req.method().to_string(),
                            uri: req.uri().to_string(),
                            subject: header("x-auth-subject"),
                            scope: header("x-auth-scope"),
                            client_id: header("x-auth-client-id"),
                            issuer: header("x-auth-issuer"),
                            claims: header("x-auth-claims"),
                            authorization: header("authorization"),
                            cnf_jkt: header("x-auth-cnf-jkt"),
                            cnf_x5t: header("x-auth-cnf-x5t"),
                        };
                        let body = seen.subject.clone().unwrap_or_else(|| "none".into());
                        log.lock().expect("backend log").push(seen);
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(
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
        Backend { port, seen }
    }

    fn hits(&self) -> usize {
        self.seen.lock().expect("backend log").len()
    }

    fn last(&self) -> Seen {
        self.seen
            .lock()
            .expect("backend log")
            .last()
            .cloned()
            .expect("the backend was called")
    }
}

// ---- nginx ----

/// The nginx binary: found, or installed once per test process.
fn nginx_binary() -> &'static Path {
    static NGINX: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match NGINX.get_or_init(|| find_or_install("nginx", &NGINX_PATHS)) {
        Ok(path) => path,
        Err(why) => panic!("{why}"),
    }
}

/// The Caddy binary: found, or installed once per test process.
fn caddy_binary() -> &'static Path {
    static CADDY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match CADDY.get_or_init(|| find_or_install("caddy", &CADDY_PATHS)) {
        Ok(path) => path,
        Err(why) => panic!("{why}"),
    }
}

fn find_in(paths: &[&str]) -> Option<PathBuf> {
    paths.iter().map(PathBuf::from).find(|p| p.is_file())
}

/// The Debian `package`'s binary at one of `paths`, installed with apt-get when missing and
/// the tests run as root; otherwise why not, and how to get it.
fn find_or_install(package: &str, paths: &[&str]) -> Result<PathBuf, String> {
    if let Some(path) = find_in(paths) {
        return Ok(path);
    }
    // The owner of /proc/self is this process's effective user.
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if !root {
        return Err(format!(
            "{package} is needed for the gateway tests and was not found at {paths:?}; \
             install it (Debian and Ubuntu: `sudo apt-get install -y {package}`, or run \
             tests/deps.sh as root) and run the tests again"
        ));
    }
    let log = std::env::temp_dir().join(format!(
        "tessera-gateway-apt-{package}-{}.log",
        std::process::id()
    ));
    let apt = |args: &[&str]| -> Result<(), String> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let mut child = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("{package} is missing and apt-get could not run ({e})"))?;
        match wait_bounded(&mut child, APT_WAIT) {
            Some(status) if status.success() => Ok(()),
            Some(status) => Err(format!("apt-get {args:?}: {status}")),
            None => Err(format!("apt-get {args:?} ran past {APT_WAIT:?}")),
        }
    };
    let install = ["install", "-y", "--no-install-recommends", package];
    let result = apt(&install).or_else(|_| {
        // The package lists may be missing or stale.
        apt(&["update"])?;
        apt(&install)
    });
    let text = read_lossy(&log);
    let _ = std::fs::remove_file(&log);
    match (result, find_in(paths)) {
        (Ok(()), Some(path)) => Ok(path),
        (Ok(()), None) => Err(format!(
            "apt-get installed {package} but it is not at {paths:?}:\n{text}"
        )),
        (Err(e), _) => Err(format!(
            "{package} is missing and could not be installed: {e}; install it with \
             `apt-get install -y {package}`\n{text}"
        )),
    }
}

/// How the auth location tells tessera about the original request.
#[derive(Clone, Copy, Debug)]
enum AuthConf {
    /// the README (Gateways, nginx): X-Original-URI and X-Original-Method set, X-Forwarded-* cleared.
    Documented,
    /// X-Original-URI and X-Original-Method only, X-Forwarded-* not cleared.
    Minimal,
    /// The nginx manual's recipe: X-Original-URI alone.
    UriOnly,
    /// `Documented`, and the phantom JWT of tessera's answer forwarded as `Authorization`.
    Phantom,
    /// `Documented`, with the README's DPoP lines: the confirmation passed upstream, and the
    /// `DPoP-Nonce` of tessera's answers relayed to the client (refusals included).
    Dpop,
    /// `Documented`, over TLS with client certificates asked for (any issuer: tessera checks
    /// the token's binding), the certificate passed to tessera as the README's
    /// `X-SSL-Client-Cert` and the confirmation passed upstream.
    Mtls,
}

/// The nginx configuration of the README (Gateways, nginx), with every path inside `dir`.
fn nginx_conf(dir: &Path, port: u16, tessera: SocketAddr, backend: u16, auth: AuthConf) -> String {
    let d = path_str(dir);
    let clear_forwarded = match auth {
        AuthConf::Documented | AuthConf::Phantom | AuthConf::Dpop | AuthConf::Mtls => {
            "# tessera prefers X-Forwarded-*: the client's own must not reach it.
            proxy_set_header X-Forwarded-Uri \"\";
            proxy_set_header X-Forwarded-Method \"\";"
        }
        AuthConf::Minimal | AuthConf::UriOnly => "",
    };
    let method = match auth {
        AuthConf::Documented
        | AuthConf::Minimal
        | AuthConf::Phantom
        | AuthConf::Dpop
        | AuthConf::Mtls => "proxy_set_header X-Original-Method $request_method;",
        AuthConf::UriOnly => "",
    };
    let phantom = match auth {
        AuthConf::Phantom => {
            "# The phantom-token pattern: the JWT of tessera's answer replaces the opaque token.
            auth_request_set $tessera_phantom $upstream_http_authorization;
            proxy_set_header Authorization $tessera_phantom;"
        }
        AuthConf::Dpop => {
            "# DPoP: the key the proof was checked against goes upstream; a server nonce
            # goes back to the client, on a 401 too (auth_request relays WWW-Authenticate).
            auth_request_set $auth_cnf_jkt $upstream_http_x_auth_cnf_jkt;
            proxy_set_header X-Auth-Cnf-Jkt $auth_cnf_jkt;
            auth_request_set $dpop_nonce $upstream_http_dpop_nonce;
            add_header DPoP-Nonce $dpop_nonce always;"
        }
        AuthConf::Mtls => {
            "auth_request_set $auth_cnf_x5t $upstream_http_x_auth_cnf_x5t;
            proxy_set_header X-Auth-Cnf-X5t $auth_cnf_x5t;"
        }
        _ => "",
    };
    let (listen, certificate) = match auth {
        AuthConf::Mtls => (
            format!(
                "listen 127.0.0.1:{port} ssl;
        ssl_certificate {d}/server.pem;
        ssl_certificate_key {d}/server-key.pem;
        ssl_verify_client optional_no_ca;"
            ),
            "# The client's certificate, as nginx saw it (empty without one): set here, so
            # that a client's own header never reaches tessera.
            proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;",
        ),
        _ => (format!("listen 127.0.0.1:{port};"), ""),
    };
    format!(
        r#"# One process, in the foreground, so that the test can stop it with one kill.
daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;

events {{
    worker_connections 64;
}}

http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;

    server {{
        {listen}

        location / {{
            auth_request /_tessera;
            auth_request_set $auth_subject   $upstream_http_x_auth_subject;
            auth_request_set $auth_scope     $upstream_http_x_auth_scope;
            auth_request_set $auth_client_id $upstream_http_x_auth_client_id;
            auth_request_set $auth_issuer    $upstream_http_x_auth_issuer;
            auth_request_set $auth_claims    $upstream_http_x_auth_claims;
            # Always set, so that the client's own X-Auth-* never reach the backend (an empty
            # value drops the header).
            proxy_set_header X-Auth-Subject   $auth_subject;
            proxy_set_header X-Auth-Scope     $auth_scope;
            proxy_set_header X-Auth-Client-Id $auth_client_id;
            proxy_set_header X-Auth-Issuer    $auth_issuer;
            proxy_set_header X-Auth-Claims    $auth_claims;
            {phantom}
            proxy_pass http://127.0.0.1:{backend};
        }}

        location = /_tessera {{
            internal;
            proxy_pass http://{tessera}/v1/authz;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
            {method}
            {clear_forwarded}
            {certificate}
        }}
    }}
}}
"#
    )
}

/// A running nginx, killed when dropped.
struct Nginx {
    child: Child,
    port: u16,
}

impl Nginx {
    fn start(dir: &Scratch, tessera: SocketAddr, backend: &Backend, auth: AuthConf) -> Self {
        let nginx = nginx_binary();
        let error_log = dir.join("error.log");
        let mut last_error = String::new();
        // A port freed for nginx may be taken again before nginx binds it: try a few.
        for _ in 0..5 {
            let port = free_port();
            let conf = dir.write(
                "nginx.conf",
                &nginx_conf(dir.path(), port, tessera, backend.port, auth),
            );
            let _ = std::fs::remove_file(&error_log);
            let mut child = Command::new(nginx)
                .args(["-p", path_str(dir.path()), "-c", path_str(&conf)])
                .args(["-e", path_str(&error_log)])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn nginx");
            let start = Instant::now();
            loop {
                if let Some(status) = child.try_wait().expect("wait for nginx") {
                    let mut stderr = String::new();
                    if let Some(mut pipe) = child.stderr.take() {
                        let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
                    }
                    last_error = format!(
                        "nginx exited ({status}): {stderr}{}",
                        read_lossy(&error_log)
                    );
                    break;
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Nginx { child, port };
                }
                if start.elapsed() > WAIT {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "nginx did not listen in {WAIT:?}:\n{}",
                        read_lossy(&error_log)
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if !last_error.contains("Address already in use") {
                break;
            }
        }
        panic!("nginx did not start: {last_error}");
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- the client ----

/// One answer from the gateway.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    www_authenticate: Option<String>,
    /// Every response header, `name: value` a line.
    head: String,
    body: String,
}

struct Gateway {
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>,
    port: u16,
}

impl Gateway {
    fn new(port: u16) -> Self {
        let client = Client::builder(TokioExecutor::new()).build_http();
        Gateway { client, port }
    }

    /// `method path_and_query` through the gateway, with these request headers; `path_and_query`
    /// is sent as written, without normalisation.
    async fn send(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://127.0.0.1:{}{path}", self.port));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Empty::new()).expect("request");
        let exchange = async {
            let response = self.client.request(request).await.expect("gateway answers");
            let status = response.status();
            let www_authenticate = response
                .headers()
                .get("www-authenticate")
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            let head = response
                .headers()
                .iter()
                .fold(String::new(), |mut out, (n, v)| {
                    let _ = writeln!(out, "{n}: {}", String::from_utf8_lossy(v.as_bytes()));
                    out
                });
            let body = response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes();
            Answer {
                status,
                www_authenticate,
                head,
                body: String::from_utf8_lossy(&body).into_owned(),
            }
        };
        tokio::time::timeout(WAIT, exchange)
            .await
            .unwrap_or_else(|_| panic!("{method} {path}: no answer in {WAIT:?}"))
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Answer {
        self.with_token("GET", path, token, &[]).await
    }

    async fn with_token(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Answer {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> = extra.to_vec();
        if let Some(b) = &bearer {
            headers.push(("authorization", b));
        }
        self.send(method, path, &headers).await
    }
}

/// Everything one test needs: the daemon, the backend and nginx in front of both.
struct Stack {
    // Field order is drop order: nginx stops before the daemon, the scratch dir goes last.
    nginx: Nginx,
    daemon: Option<Daemon>,
    backend: Backend,
    gateway: Gateway,
    dir: Scratch,
}

impl Stack {
    /// `tessera serve --jwks --iss`: one trusted issuer, no route rules.
    async fn quick(name: &str, issuer: &Issuer) -> Self {
        let dir = Scratch::new(&format!("gateway-{name}"));
        let jwks = dir.write("jwks.json", issuer.jwks());
        let daemon = start_daemon(&["--jwks", path_str(&jwks), "--iss", ISS]);
        Self::around(dir, daemon, AuthConf::Documented).await
    }

    /// `tessera serve --config`, with `routes` appended to a configuration trusting `issuer`.
    async fn with_routes(name: &str, issuer: &Issuer, routes: &str, auth: AuthConf) -> Self {
        let dir = Scratch::new(&format!("gateway-{name}"));
        dir.write("jwks.json", issuer.jwks());
        let config = dir.write(
            "tessera.toml",
            &format!(
                "[engine]\nworkers = 2\npin_cores = false\n\n\
                 [[issuers]]\nissuer = \"{ISS}\"\njwks_file = \"jwks.json\"\n\n{routes}"
            ),
        );
        let daemon = start_daemon(&["--config", path_str(&config)]);
        Self::around(dir, daemon, auth).await
    }

    async fn around(dir: Scratch, daemon: Daemon, auth: AuthConf) -> Self {
        if let AuthConf::Mtls = auth {
            certificates(&dir);
        }
        let backend = Backend::start().await;
        let nginx = Nginx::start(&dir, daemon.addr, &backend, auth);
        let gateway = Gateway::new(nginx.port);
        Stack {
            nginx,
            daemon: Some(daemon),
            backend,
            gateway,
            dir,
        }
    }

    /// The logs, for a failure message.
    fn logs(&self) -> String {
        let mut out = String::new();
        if let Some(d) = &self.daemon {
            let _ = write!(out, "--- tessera\n{}", d.stderr());
        }
        let _ = write!(
            out,
            "--- nginx on port {}: error.log\n{}--- access.log\n{}",
            self.nginx.port,
            read_lossy(&self.dir.join("error.log")),
            read_lossy(&self.dir.join("access.log"))
        );
        out
    }

    /// Asserts that the request was refused with `status` and never reached the backend.
    async fn assert_refused(
        &self,
        what: &str,
        method: &str,
        path: &str,
        token: Option<&str>,
        extra: &[(&str, &str)],
        status: StatusCode,
    ) -> Answer {
        let before = self.backend.hits();
        let answer = self.gateway.with_token(method, path, token, extra).await;
        assert_eq!(answer.status, status, "{what}: {answer:?}\n{}", self.logs());
        assert_eq!(
            self.backend.hits(),
            before,
            "{what}: the backend was called: {:?}",
            self.backend.last()
        );
        answer
    }

    /// Asserts that the request reached the backend once and returns what the backend saw.
    async fn assert_allowed(
        &self,
        what: &str,
        method: &str,
        path: &str,
        token: &str,
        extra: &[(&str, &str)],
    ) -> (Answer, Seen) {
        let before = self.backend.hits();
        let answer = self
            .gateway
            .with_token(method, path, Some(token), extra)
            .await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "{what}: {answer:?}\n{}",
            self.logs()
        );
        assert_eq!(self.backend.hits(), before + 1, "{what}: one backend call");
        (answer, self.backend.last())
    }
}

// ---- the tests ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_passes_verified_identity_and_refuses_bad_tokens() {
    let issuer = new_issuer();
    let stack = Stack::quick("identity", &issuer).await;
    let alice = issuer.sign(claims(
        r#","sub":"alice","scope":"orders:read profile","client_id":"web""#,
    ));

    // A valid token: allowed, with the identity headers.
    let (answer, seen) = stack
        .assert_allowed("valid token", "GET", "/orders/42?x=1", &alice, &[])
        .await;
    assert_eq!(answer.body, "alice");
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.uri, "/orders/42?x=1");
    assert_eq!(seen.scope.as_deref(), Some("orders:read profile"));
    assert_eq!(seen.client_id.as_deref(), Some("web"));
    assert_eq!(seen.issuer.as_deref(), Some(ISS));
    let claims_json = URL_SAFE_NO_PAD
        .decode(seen.claims.expect("x-auth-claims"))
        .expect("x-auth-claims is base64url");
    let claims_json: serde_json::Value =
        serde_json::from_slice(&claims_json).expect("x-auth-claims is JSON");
    assert_eq!(claims_json["sub"], "alice");
    assert_eq!(claims_json["iss"], ISS);

    // The client's own identity headers are replaced by the verified ones.
    let forged = [
        ("x-auth-subject", "mallory"),
        ("x-auth-scope", "admin"),
        ("x-auth-client-id", "evil"),
        ("x-auth-claims", "e30"),
    ];
    let (answer, seen) = stack
        .assert_allowed("forged identity headers", "GET", "/orders", &alice, &forged)
        .await;
    assert_eq!(answer.body, "alice");
    assert_eq!(seen.scope.as_deref(), Some("orders:read profile"));
    assert_eq!(seen.client_id.as_deref(), Some("web"));
    assert_ne!(seen.claims.as_deref(), Some("e30"));

    // ...and dropped when the token has no such claim: never passed through.
    let anonymous = issuer.sign(claims(""));
    let (answer, seen) = stack
        .assert_allowed("token without sub", "GET", "/orders", &anonymous, &forged)
        .await;
    assert_eq!(answer.body, "none", "the forged subject must not pass");
    assert_eq!(seen.scope, None);
    assert_eq!(seen.client_id, None);

    // No token: 401 with a bare challenge.
    let answer = stack
        .assert_refused(
            "no token",
            "GET",
            "/orders",
            None,
            &[],
            StatusCode::UNAUTHORIZED,
        )
        .await;
    assert_eq!(
        answer.www_authenticate.as_deref(),
        Some(r#"Bearer realm="tessera""#),
        "nginx passes the challenge of a 401 on"
    );

    // Invalid tokens: 401 invalid_token.
    let expired = issuer.sign(format!(
        r#"{{"iss":"{ISS}","sub":"alice","iat":{},"exp":{}}}"#,
        unix_now() - 7200,
        unix_now() - 3600
    ));
    // Another subject under the same signature.
    let (head, rest) = alice.split_once('.').expect("compact JWS");
    let (_, sig) = rest.split_once('.').expect("compact JWS");
    let payload = URL_SAFE_NO_PAD.encode(claims(r#","sub":"admin""#));
    let tampered = format!("{head}.{payload}.{sig}");
    let mut bad_sig = alice.clone();
    let last = bad_sig.pop().expect("non-empty");
    bad_sig.push(if last == 'A' { 'B' } else { 'A' });
    let stranger = new_issuer().sign(claims(r#","sub":"alice""#));
    let other_iss = issuer.sign(claims(r#","sub":"alice""#).replace(ISS, "https://evil.example"));
    for (what, token) in [
        ("expired", expired.as_str()),
        ("tampered payload", tampered.as_str()),
        ("tampered signature", bad_sig.as_str()),
        ("another issuer's key", stranger.as_str()),
        ("untrusted iss", other_iss.as_str()),
        ("not a JWT", "not-a-token"),
    ] {
        let answer = stack
            .assert_refused(
                what,
                "GET",
                "/orders",
                Some(token),
                &[],
                StatusCode::UNAUTHORIZED,
            )
            .await;
        let challenge = answer.www_authenticate.unwrap_or_default();
        assert!(
            challenge.contains(r#"error="invalid_token""#),
            "{what}: {challenge:?}"
        );
    }

    // Another scheme is no bearer token.
    stack
        .assert_refused(
            "Basic credentials",
            "GET",
            "/orders",
            None,
            &[("authorization", "Basic YWxpY2U6c2VjcmV0")],
            StatusCode::UNAUTHORIZED,
        )
        .await;
    assert_eq!(
        stack.backend.hits(),
        3,
        "only the three valid requests got through"
    );
}

const ROUTES: &str = r#"
[[authz.routes]]
prefix = "/admin"
scopes = ["admin"]

[[authz.routes]]
prefix = "/orders"
methods = ["POST", "PUT", "PATCH", "DELETE"]
scopes = ["orders:write"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_applies_route_rules_to_the_original_method_and_uri() {
    let issuer = new_issuer();
    let stack = Stack::with_routes("routes", &issuer, ROUTES, AuthConf::Documented).await;
    let reader = issuer.sign(claims(r#","sub":"bob","scope":"orders:read""#));
    let admin = issuer.sign(claims(r#","sub":"root","scope":"admin orders:write""#));

    for path in ["/orders", "/orders/42?expand=items", "/"] {
        let (answer, _) = stack.assert_allowed(path, "GET", path, &reader, &[]).await;
        assert_eq!(answer.body, "bob");
    }
    for (method, path) in [
        ("GET", "/admin"),
        ("GET", "/admin/users?page=2"),
        ("DELETE", "/admin/users/7"),
        ("POST", "/orders"),
        ("DELETE", "/orders/42"),
    ] {
        stack
            .assert_refused(
                &format!("{method} {path} without the scope"),
                method,
                path,
                Some(&reader),
                &[],
                StatusCode::FORBIDDEN,
            )
            .await;
    }
    for (method, path) in [("GET", "/admin/users"), ("POST", "/orders")] {
        let (answer, seen) = stack
            .assert_allowed(&format!("{method} {path}"), method, path, &admin, &[])
            .await;
        assert_eq!(answer.body, "root");
        assert_eq!((seen.method.as_str(), seen.uri.as_str()), (method, path));
    }

    // The client cannot name another request for tessera to judge: whatever it sends in the
    // headers tessera reads, the gateway's own values decide.
    for (what, method, path, header) in [
        (
            "X-Forwarded-Uri",
            "GET",
            "/admin",
            ("x-forwarded-uri", "/orders"),
        ),
        (
            "X-Original-URI",
            "GET",
            "/admin",
            ("x-original-uri", "/orders"),
        ),
        (
            "X-Forwarded-Method",
            "POST",
            "/orders",
            ("x-forwarded-method", "GET"),
        ),
        (
            "X-Original-Method",
            "POST",
            "/orders",
            ("x-original-method", "GET"),
        ),
    ] {
        stack
            .assert_refused(
                &format!("{method} {path} with a forged {what}"),
                method,
                path,
                Some(&reader),
                &[header],
                StatusCode::FORBIDDEN,
            )
            .await;
    }

    // The Envoy form, straight to the daemon: the original path follows /v1/authz, the method
    // is the request's own.
    let daemon = stack.daemon.as_ref().expect("running").addr;
    let direct = Gateway::new(daemon.port());
    for (method, path, status) in [
        ("GET", "/v1/authz/orders/42?x=1", StatusCode::OK),
        ("GET", "/v1/authz/admin/users", StatusCode::FORBIDDEN),
        ("POST", "/v1/authz/orders", StatusCode::FORBIDDEN),
        ("GET", "/v1/authz", StatusCode::OK),
    ] {
        let answer = direct.with_token(method, path, Some(&reader), &[]).await;
        assert_eq!(answer.status, status, "{method} {path}: {answer:?}");
        if status == StatusCode::FORBIDDEN {
            let challenge = answer.www_authenticate.unwrap_or_default();
            assert!(
                challenge.contains(r#"error="insufficient_scope""#),
                "{method} {path}: {challenge:?}"
            );
        }
    }
}

/// A route rule matched the raw request target, so `/%61dmin` and `/orders/../admin`, which
/// nginx routes to the same location and which backends commonly read as `/admin`, were judged
/// as other paths than `/admin` and let through without the `admin` scope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_rule_bypass_by_encoded_or_dot_segment_path() {
    let issuer = new_issuer();
    let stack = Stack::with_routes("bypass", &issuer, ROUTES, AuthConf::Documented).await;
    let reader = issuer.sign(claims(r#","sub":"bob","scope":"orders:read""#));
    let mut let_through = Vec::new();
    for path in [
        "/%61dmin",
        "/%61dmin/users",
        "/orders/../admin",
        "/orders/%2e%2e/admin",
        "/./admin",
    ] {
        let before = stack.backend.hits();
        let answer = stack.gateway.get(path, Some(&reader)).await;
        if answer.status.is_success() || stack.backend.hits() != before {
            let_through.push(format!(
                "{path} -> {} (backend saw {:?})",
                answer.status,
                stack.backend.last().uri
            ));
        }
    }
    assert!(
        let_through.is_empty(),
        "paths that reach /admin without the admin scope:\n{}",
        let_through.join("\n")
    );
}

/// nginx sends its auth sub-request as `GET` whatever the client's method. Behind the nginx
/// manual's recipe, which sets `X-Original-URI` alone, tessera took the method from that
/// sub-request, so a reader's `DELETE /orders/42` was judged as `GET /orders/42` and reached
/// the backend. Half a header family is now refused (nginx answers 500), and the documented
/// configuration, which sends both headers, has the `DELETE` judged as a `DELETE`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_delete_judged_as_the_subrequest_get() {
    let issuer = new_issuer();
    let reader = issuer.sign(claims(r#","sub":"bob","scope":"orders:read""#));
    let writer = issuer.sign(claims(r#","sub":"carol","scope":"orders:write""#));

    let stack = Stack::with_routes("uri-only", &issuer, ROUTES, AuthConf::UriOnly).await;
    stack
        .assert_refused(
            "DELETE behind X-Original-URI alone",
            "DELETE",
            "/orders/42",
            Some(&reader),
            &[],
            StatusCode::INTERNAL_SERVER_ERROR,
        )
        .await;
    drop(stack);

    let stack = Stack::with_routes("delete", &issuer, ROUTES, AuthConf::Documented).await;
    stack
        .assert_refused(
            "a reader's DELETE",
            "DELETE",
            "/orders/42",
            Some(&reader),
            &[],
            StatusCode::FORBIDDEN,
        )
        .await;
    let (answer, seen) = stack
        .assert_allowed("a writer's DELETE", "DELETE", "/orders/42", &writer, &[])
        .await;
    assert_eq!(answer.body, "carol");
    assert_eq!(
        (seen.method.as_str(), seen.uri.as_str()),
        ("DELETE", "/orders/42")
    );
    stack
        .assert_allowed("a reader's GET", "GET", "/orders/42", &reader, &[])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_fails_closed_when_tessera_is_down() {
    let issuer = new_issuer();
    let mut stack = Stack::quick("down", &issuer).await;
    let alice = issuer.sign(claims(r#","sub":"alice""#));
    stack
        .assert_allowed("daemon up", "GET", "/orders", &alice, &[])
        .await;
    drop(stack.daemon.take());
    stack
        .assert_refused(
            "daemon down",
            "GET",
            "/orders",
            Some(&alice),
            &[],
            StatusCode::INTERNAL_SERVER_ERROR,
        )
        .await;
}

/// tessera read the method and the URI each from the first header family present, X-Forwarded-*
/// before X-Original-*. Behind nginx, which sets only X-Original-* (the nginx manual's recipe)
/// and passes the client's other headers on to the auth request, a client-sent
/// `X-Forwarded-Uri` or `X-Forwarded-Method` was judged instead of the real request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_x_forwarded_headers_override_the_gateway_x_original_headers() {
    let issuer = new_issuer();
    let stack = Stack::with_routes("forged", &issuer, ROUTES, AuthConf::Minimal).await;
    let reader = issuer.sign(claims(r#","sub":"bob","scope":"orders:read""#));
    stack
        .assert_refused(
            "GET /admin",
            "GET",
            "/admin",
            Some(&reader),
            &[],
            StatusCode::FORBIDDEN,
        )
        .await;
    let mut let_through = Vec::new();
    for (method, path, header) in [
        ("GET", "/admin", ("x-forwarded-uri", "/orders")),
        ("POST", "/orders", ("x-forwarded-method", "GET")),
        ("GET", "/admin", ("x-forwarded-uri", "/")),
    ] {
        let before = stack.backend.hits();
        let answer = stack
            .gateway
            .with_token(method, path, Some(&reader), &[header])
            .await;
        if answer.status.is_success() || stack.backend.hits() != before {
            let_through.push(format!(
                "{method} {path} with {}: {} -> {}",
                header.0, header.1, answer.status
            ));
        }
    }
    assert!(
        let_through.is_empty(),
        "requests let through without the needed scope:\n{}",
        let_through.join("\n")
    );
}

// ---- opaque tokens and their phantom JWTs ----

/// The daemon's own issuer (`[server] public_url`) and the audience of its tokens.
const PUBLIC_URL: &str = "https://tessera.example";
const ORDERS_API: &str = "https://api.example/orders";

/// `tessera ARGS` with the SoftHSM token's environment; its stdout.
fn tessera_ok(hsm: &SoftHsm, args: &[&str]) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tessera"));
    hsm.env(command.args(args));
    let out = testkit::process::run_bounded(command, b"", WAIT);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tessera {args:?}: {err}");
    String::from_utf8(out.stdout).expect("UTF-8 stdout")
}

/// `body` (`tat_` and 43 base64url characters) with its checksum: 6 bytes of its SHA-256.
fn with_checksum(body: &str) -> String {
    let out = testkit::process::run_bounded(Command::new("sha256sum"), body.as_bytes(), WAIT);
    let hex = String::from_utf8(out.stdout).expect("sha256sum");
    let sum: Vec<u8> = (0..6)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"))
        .collect();
    format!("{body}{}", URL_SAFE_NO_PAD.encode(sum))
}

fn b64_json(segment: &str) -> serde_json::Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).expect("base64url")).expect("JSON")
}

async fn post_form(daemon: &Daemon, path: &str, basic: &str, body: &str) -> testkit::Reply {
    let headers = [
        ("authorization", basic),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    daemon.call("POST", path, &headers, body).await
}

/// The phantom-token pattern behind nginx: the client holds an opaque token, the backend gets
/// its JWT (minted once by the HSM), and neither crosses to the other side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_forwards_the_phantom_jwt_and_the_client_never_sees_it() {
    let bin = env!("CARGO_BIN_EXE_tessera");
    let hsm = SoftHsm::new(bin, "gateway-phantom", "tessera-gateway");
    tessera_ok(&hsm, &["keys", "generate", "--alg", "ES256"]);
    let dir = Scratch::new("gateway-phantom");
    let config = dir.write(
        "tessera.toml",
        &format!(
            "[server]\npublic_url = \"{PUBLIC_URL}\"\n\n[engine]\nworkers = 2\npin_cores = false\n\n\
             [store]\npath = \"store.sqlite3\"\n\n[hsm]\ntoken = \"{}\"\npin_file = \"{}\"\n\n\
             [[issuers]]\nissuer = \"{PUBLIC_URL}\"\nhsm = true\ntyp = \"at+jwt\"\n\n\
             [authz]\nphantom = true\n",
            hsm.label,
            hsm.dir.join("pin").display()
        ),
    );
    let config = path_str(&config).to_owned();
    // Registered in the daemon's store before it starts; `Basic` credentials for each.
    let register = |id: &str, more: &[&str]| {
        let mut args = vec!["clients", "add", "--config", &config, "--id", id];
        args.extend_from_slice(more);
        let out: serde_json::Value =
            serde_json::from_str(&tessera_ok(&hsm, &args)).expect("clients add prints JSON");
        let secret = out["client_secret"].as_str().expect("client_secret");
        format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
    };
    let app = register(
        "orders-app",
        &[
            "--grant",
            "client_credentials",
            "--scope",
            "orders:read",
            "--audience",
            ORDERS_API,
            "--format",
            "opaque",
        ],
    );
    let revoker = register("revoker", &["--permission", "revoke"]);
    let mut serve = Command::new(bin);
    hsm.env(serve.args(["serve", "--config", &config, "--listen", "127.0.0.1:0"]));
    let daemon = Daemon::spawn(serve);
    let reply = post_form(&daemon, "/token", &app, "grant_type=client_credentials").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let opaque = reply.json()["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();
    assert!(opaque.starts_with("tat_"), "{opaque}");
    assert_eq!(
        with_checksum(&opaque[..47]),
        opaque,
        "the checksum as tessera makes it"
    );
    let stack = Stack::around(dir, daemon, AuthConf::Phantom).await;
    let daemon = stack.daemon.as_ref().expect("running");
    let minted = || async {
        let page = daemon.get("/metrics").await.text();
        page.lines()
            .find_map(|l| l.strip_prefix("tessera_phantom_tokens_minted_total "))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no phantom counter in /metrics:\n{page}"))
    };

    let mut jwts = Vec::new();
    for i in 0..3 {
        let (answer, seen) = stack
            .assert_allowed(&format!("opaque #{i}"), "GET", "/orders/42", &opaque, &[])
            .await;
        assert_eq!(answer.body, "orders-app");
        let jwt = seen
            .authorization
            .as_deref()
            .and_then(|a| a.strip_prefix("Bearer "))
            .unwrap_or_else(|| panic!("no phantom JWT upstream: {seen:?}"))
            .to_owned();
        // The client sees its own token's outcome, never the JWT.
        assert!(!answer.head.contains(&jwt), "{}", answer.head);
        assert!(!answer.body.contains(&jwt), "{}", answer.body);
        jwts.push(jwt);
    }
    assert!(jwts.iter().all(|j| *j == jwts[0]), "one JWT: {jwts:?}");
    assert_eq!(minted().await, "1", "one HSM signature for three requests");
    let parts: Vec<&str> = jwts[0].split('.').collect();
    assert_eq!(parts.len(), 3, "a compact JWS: {}", jwts[0]);
    let (header, payload) = (b64_json(parts[0]), b64_json(parts[1]));
    assert_eq!(header["typ"], "at+jwt", "{header}");
    assert_eq!(payload["iss"], PUBLIC_URL, "{payload}");
    assert_eq!(payload["sub"], "orders-app", "{payload}");
    assert_eq!(payload["client_id"], "orders-app", "{payload}");
    assert_eq!(payload["scope"], "orders:read", "{payload}");
    assert_eq!(payload["aud"], ORDERS_API, "{payload}");

    // A client that sends a JWT: the same configuration passes its token on as it came.
    let (_, seen) = stack
        .assert_allowed("a JWT client", "GET", "/orders/42", &jwts[0], &[])
        .await;
    assert_eq!(
        seen.authorization.as_deref(),
        Some(format!("Bearer {}", jwts[0]).as_str()),
        "{seen:?}"
    );

    // Never issued, mistyped (its checksum fails), then revoked: 401, and no backend call.
    let mut mistyped = opaque.clone();
    mistyped.replace_range(10..11, if &opaque[10..11] == "x" { "y" } else { "x" });
    let reply = post_form(daemon, "/revoke", &revoker, &format!("token={opaque}")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    for (what, token) in [
        (
            "never issued",
            with_checksum(&format!("tat_{}", "A".repeat(43))),
        ),
        ("mistyped", mistyped),
        ("revoked", opaque.clone()),
        ("the revoked token's phantom JWT", jwts[0].clone()),
    ] {
        let answer = stack
            .assert_refused(
                what,
                "GET",
                "/orders/42",
                Some(&token),
                &[],
                StatusCode::UNAUTHORIZED,
            )
            .await;
        let challenge = answer.www_authenticate.unwrap_or_default();
        assert!(
            challenge.contains(r#"error="invalid_token""#),
            "{what}: {challenge:?}"
        );
    }
    assert_eq!(minted().await, "1");
    let seen = stack.backend.seen.lock().expect("backend log");
    assert!(
        !format!("{seen:?}").contains("tat_"),
        "an opaque token reached the backend: {seen:?}"
    );
}

// ---- sender-constrained tokens ----

/// A DPoP proof (RFC 9449) by `key` for `method` `htu` and `token`, iat `iat`, with `nonce`.
fn dpop_proof(
    key: &jose::SigningKey,
    method: &str,
    htu: &str,
    token: &str,
    iat: i64,
    nonce: Option<&str>,
) -> String {
    let mut claims = testkit::dpop::claims(method, htu, Some(token));
    claims["iat"] = iat.into();
    if let Some(nonce) = nonce {
        claims["nonce"] = nonce.into();
    }
    testkit::dpop::sign(key, &claims)
}

/// A response header's value.
fn header_of<'a>(answer: &'a Answer, name: &str) -> Option<&'a str> {
    answer.head.lines().find_map(|line| {
        let (n, v) = line.split_once(": ")?;
        n.eq_ignore_ascii_case(name).then_some(v)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_passes_a_dpop_bound_token_only_with_a_fresh_proof_and_relays_nonces() {
    const ORIGIN: &str = "https://api.example";
    let issuer = new_issuer();
    let stack = Stack::with_routes(
        "dpop",
        &issuer,
        &format!("[authz.dpop]\norigin = \"{ORIGIN}\"\nnonce = true\n"),
        AuthConf::Dpop,
    )
    .await;
    let key = jose::SigningKey::generate(jose::Algorithm::ES256).expect("key");
    let jkt = key.public().expect("public").thumbprint();
    let token = issuer.sign(claims(&format!(
        r#","sub":"alice","scope":"orders:read","cnf":{{"jkt":"{jkt}"}}"#
    )));
    let scheme = format!("DPoP {token}");
    let htu = format!("{ORIGIN}/orders/1");
    let send = |method: &'static str, proofs: Vec<String>, authorization: String| {
        let stack = &stack;
        async move {
            let mut headers = vec![("authorization", authorization.as_str())];
            headers.extend(proofs.iter().map(|p| ("dpop", p.as_str())));
            let before = stack.backend.hits();
            let answer = stack
                .gateway
                .send(method, "/orders/1?page=2", &headers)
                .await;
            let reached = stack.backend.hits() - before;
            (answer, reached)
        }
    };

    // The first proof has no nonce: 401 use_dpop_nonce, relayed with its DPoP-Nonce.
    let now = unix_now();
    let (answer, reached) = send(
        "GET",
        vec![dpop_proof(&key, "GET", &htu, &token, now, None)],
        scheme.clone(),
    )
    .await;
    assert_eq!(
        (answer.status, reached),
        (StatusCode::UNAUTHORIZED, 0),
        "{answer:?}\n{}",
        stack.logs()
    );
    assert!(
        answer
            .www_authenticate
            .as_deref()
            .is_some_and(|c| c.starts_with("DPoP error=\"use_dpop_nonce\"")),
        "{answer:?}"
    );
    let nonce = header_of(&answer, "dpop-nonce")
        .unwrap_or_else(|| panic!("no DPoP-Nonce relayed: {answer:?}"))
        .to_owned();

    // With the nonce: through, the backend told which key the proof was checked against.
    let good = dpop_proof(&key, "GET", &htu, &token, now, Some(&nonce));
    let (answer, reached) = send("GET", vec![good.clone()], scheme.clone()).await;
    assert_eq!(
        (answer.status, reached),
        (StatusCode::OK, 1),
        "{answer:?}\n{}",
        stack.logs()
    );
    assert_eq!(answer.body, "alice");
    let seen = stack.backend.last();
    assert_eq!(seen.uri, "/orders/1?page=2");
    assert_eq!(seen.cnf_jkt.as_deref(), Some(jkt.as_str()));

    // Refused before the backend: the proof replayed, for another URI, another method, by
    // another key, an hour old; the token as Bearer; no proof; two proofs.
    let other = jose::SigningKey::generate(jose::Algorithm::ES256).expect("key");
    let proof = |k: &jose::SigningKey, method: &str, htu: &str, iat: i64| {
        dpop_proof(k, method, htu, &token, iat, Some(&nonce))
    };
    for (what, method, proofs, authorization) in [
        (
            "a replayed proof",
            "GET",
            vec![good.clone()],
            scheme.clone(),
        ),
        (
            "another URI",
            "GET",
            vec![proof(&key, "GET", &format!("{ORIGIN}/orders/2"), now)],
            scheme.clone(),
        ),
        (
            "another method",
            "DELETE",
            vec![proof(&key, "GET", &htu, now)],
            scheme.clone(),
        ),
        (
            "another key",
            "GET",
            vec![proof(&other, "GET", &htu, now)],
            scheme.clone(),
        ),
        (
            "an hour old",
            "GET",
            vec![proof(&key, "GET", &htu, now - 3600)],
            scheme.clone(),
        ),
        (
            "the token as Bearer",
            "GET",
            vec![proof(&key, "GET", &htu, now)],
            format!("Bearer {token}"),
        ),
        ("no proof", "GET", vec![], scheme.clone()),
        (
            "two proofs",
            "GET",
            vec![proof(&key, "GET", &htu, now), proof(&key, "GET", &htu, now)],
            scheme.clone(),
        ),
    ] {
        let (answer, reached) = send(method, proofs, authorization).await;
        assert_ne!(answer.status, StatusCode::OK, "{what}: {answer:?}");
        assert_eq!(reached, 0, "{what}: the backend was called");
    }
    // A fresh proof still passes: the refusals spent nothing.
    let (answer, reached) = send("GET", vec![proof(&key, "GET", &htu, now)], scheme.clone()).await;
    assert_eq!((answer.status, reached), (StatusCode::OK, 1), "{answer:?}");
}

/// openssl in `dir`, expected to succeed.
fn openssl(dir: &Scratch, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir.path())
        .output()
        .expect("openssl is missing: apt-get install openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `server.pem` (for 127.0.0.1 and localhost), and two self-signed client certificates of one subject,
/// `client.pem` and `other.pem`, each with its `-key.pem`.
fn certificates(dir: &Scratch) {
    dir.write(
        "x509.cnf",
        "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = unused\n\
         [server]\nbasicConstraints = critical, CA:FALSE\nsubjectAltName = IP:127.0.0.1, DNS:localhost\n\
         extendedKeyUsage = serverAuth\n\
         [client]\nbasicConstraints = critical, CA:FALSE\nextendedKeyUsage = clientAuth\n",
    );
    for (name, subject, section) in [
        ("server", "/CN=127.0.0.1", "server"),
        ("client", "/CN=orders", "client"),
        ("other", "/CN=orders", "client"),
    ] {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-config",
                "x509.cnf",
                "-extensions",
                section,
                "-subj",
                subject,
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "1",
                "-keyout",
                &format!("{name}-key.pem"),
                "-out",
                &format!("{name}.pem"),
            ],
        );
    }
}

/// `GET path` to the gateway over TLS, as `NAME.pem` (or without a certificate), with
/// `headers`: the status and the body.
async fn over_tls(
    dir: &Scratch,
    port: u16,
    certificate: Option<&str>,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, String) {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio_rustls::rustls;
    let pem = std::fs::read(dir.join("server.pem")).expect("server certificate");
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(&pem).expect("PEM"))
        .expect("root");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let config = match certificate {
        None => builder.with_no_client_auth(),
        Some(name) => {
            let cert = std::fs::read(dir.join(&format!("{name}.pem"))).expect("cert");
            let chain = vec![CertificateDer::from_pem_slice(&cert).expect("PEM")];
            let key = PrivateKeyDer::from_pem_file(dir.join(&format!("{name}-key.pem")))
                .expect("PEM key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client certificate")
        }
    };
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await
            .expect("TLS handshake");
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .expect("HTTP/1.1 handshake");
        tokio::spawn(conn);
        let mut request = Request::get(path).header("host", "localhost");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = send
            .send_request(request.body(Empty::<Bytes>::new()).expect("request"))
            .await
            .expect("answer");
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    };
    tokio::time::timeout(WAIT, exchange)
        .await
        .unwrap_or_else(|_| panic!("GET {path} over TLS: no answer in {WAIT:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_passes_a_certificate_bound_token_only_with_its_certificate() {
    use rustls_pki_types::pem::PemObject;
    let issuer = new_issuer();
    let stack = Stack::with_routes(
        "mtls",
        &issuer,
        "[authz.certificate]\nsource = \"header\"\nheader = \"X-SSL-Client-Cert\"\n",
        AuthConf::Mtls,
    )
    .await;
    let dir = &stack.dir;
    let x5t = |name: &str| {
        let pem = std::fs::read(dir.join(&format!("{name}.pem"))).expect("certificate");
        let der = rustls_pki_types::CertificateDer::from_pem_slice(&pem).expect("PEM");
        URL_SAFE_NO_PAD
            .encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der.as_ref()).as_ref())
    };
    let bound = issuer.sign(claims(&format!(
        r#","sub":"orders","cnf":{{"x5t#S256":"{}"}}"#,
        x5t("client")
    )));
    let bearer = format!("Bearer {bound}");
    let auth = [("authorization", bearer.as_str())];
    let port = stack.nginx.port;

    let before = stack.backend.hits();
    let (status, body) = over_tls(dir, port, Some("client"), "/orders/1", &auth).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "orders"),
        "{}",
        stack.logs()
    );
    assert_eq!(stack.backend.hits(), before + 1);
    assert_eq!(stack.backend.last().cnf_x5t, Some(x5t("client")));

    // Another certificate of the same subject, none, or none with the client's own copy of
    // the header (nginx overwrites it): refused before the backend.
    let pem = std::fs::read_to_string(dir.join("client.pem")).expect("PEM");
    let escaped: String = pem
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    let forged = [auth[0], ("x-ssl-client-cert", escaped.as_str())];
    for (what, certificate, headers) in [
        ("another certificate", Some("other"), &auth[..]),
        ("no certificate", None, &auth[..]),
        ("the client's own header", None, &forged[..]),
    ] {
        let before = stack.backend.hits();
        let (status, _) = over_tls(dir, port, certificate, "/orders/1", headers).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}\n{}", stack.logs());
        assert_eq!(
            stack.backend.hits(),
            before,
            "{what}: the backend was called"
        );
    }
    // An unbound token needs no certificate.
    let plain = issuer.sign(claims(r#","sub":"web""#));
    let plain = format!("Bearer {plain}");
    let (status, body) = over_tls(
        dir,
        port,
        None,
        "/orders/1",
        &[("authorization", plain.as_str())],
    )
    .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "web"));
}

// ---- Caddy ----

/// The README's Caddy lines (Gateways, Caddy, and sender-constrained tokens) with every path
/// inside `dir`: plain HTTP on `port`, and HTTPS with client certificates requested on
/// `tls_port`, both in front of `backend` with `forward_auth` to tessera.
fn caddyfile(dir: &Path, port: u16, tls_port: u16, tessera: SocketAddr, backend: u16) -> String {
    let d = path_str(dir);
    let route = |certificate: &str| {
        format!(
            r#"route {{
		request_header -X-Auth-Subject
		request_header -X-Auth-Scope
		request_header -X-Auth-Client-Id
		request_header -X-Auth-Issuer
		request_header -X-Auth-Claims
		request_header -X-Auth-Cnf-Jkt
		request_header -X-Auth-Cnf-X5t
		forward_auth {tessera} {{
			uri /v1/authz
			{certificate}
			copy_headers X-Auth-Subject X-Auth-Scope X-Auth-Client-Id X-Auth-Issuer X-Auth-Cnf-Jkt X-Auth-Cnf-X5t
		}}
		reverse_proxy 127.0.0.1:{backend}
	}}"#
        )
    };
    let plain = route("");
    let tls = route("header_up X-SSL-Client-Cert {http.request.tls.client.certificate_der_base64}");
    format!(
        r#"{{
	admin off
	auto_https off
	storage file_system {d}/caddy-data
}}

http://127.0.0.1:{port} {{
	{plain}
}}

https://localhost:{tls_port} {{
	tls {d}/server.pem {d}/server-key.pem {{
		client_auth {{
			mode request
		}}
	}}
	{tls}
}}
"#
    )
}

/// A running Caddy, killed when dropped.
struct Caddy {
    child: Child,
    port: u16,
    tls_port: u16,
}

impl Caddy {
    fn start(dir: &Scratch, tessera: SocketAddr, backend: &Backend) -> Self {
        let caddy = caddy_binary();
        let mut last_error = String::new();
        for _ in 0..5 {
            let (port, tls_port) = (free_port(), free_port());
            let file = dir.write(
                "Caddyfile",
                &caddyfile(dir.path(), port, tls_port, tessera, backend.port),
            );
            let log = dir.join("caddy.log");
            let out = std::fs::File::create(&log).expect("caddy log");
            let mut child = Command::new(caddy)
                .args(["run", "--adapter", "caddyfile", "--config", path_str(&file)])
                .env("HOME", dir.path())
                .env("XDG_DATA_HOME", dir.join("xdg-data"))
                .env("XDG_CONFIG_HOME", dir.join("xdg-config"))
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("log"))
                .stderr(out)
                .spawn()
                .expect("spawn caddy");
            let start = Instant::now();
            loop {
                if let Some(status) = child.try_wait().expect("wait for caddy") {
                    last_error = format!("caddy exited ({status}): {}", read_lossy(&log));
                    break;
                }
                let up = |p: u16| TcpStream::connect(("127.0.0.1", p)).is_ok();
                if up(port) && up(tls_port) {
                    return Caddy {
                        child,
                        port,
                        tls_port,
                    };
                }
                if start.elapsed() > WAIT {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("caddy did not listen in {WAIT:?}:\n{}", read_lossy(&log));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if !last_error.contains("address already in use") {
                break;
            }
        }
        panic!("caddy did not start: {last_error}");
    }
}

impl Drop for Caddy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_passes_sender_constrained_tokens_only_as_they_are_bound() {
    use rustls_pki_types::pem::PemObject;
    const ORIGIN: &str = "https://api.example";
    let issuer = new_issuer();
    let dir = Scratch::new("gateway-caddy");
    certificates(&dir);
    dir.write("jwks.json", issuer.jwks());
    let config = dir.write(
        "tessera.toml",
        &format!(
            "[engine]\nworkers = 2\npin_cores = false\n\n\
             [[issuers]]\nissuer = \"{ISS}\"\njwks_file = \"jwks.json\"\n\n\
             [authz]\noriginal_from = \"x-forwarded\"\n\n\
             [authz.dpop]\norigin = \"{ORIGIN}\"\nnonce = true\n\n\
             [authz.certificate]\nsource = \"header\"\nheader = \"X-SSL-Client-Cert\"\n"
        ),
    );
    let daemon = start_daemon(&["--config", path_str(&config)]);
    let backend = Backend::start().await;
    let caddy = Caddy::start(&dir, daemon.addr, &backend);
    let gateway = Gateway::new(caddy.port);
    let logs = || {
        format!(
            "--- tessera\n{}--- caddy\n{}",
            daemon.stderr(),
            read_lossy(&dir.join("caddy.log"))
        )
    };

    // DPoP: the nonce challenge comes back whole (Caddy returns tessera's refusal as it is).
    let key = jose::SigningKey::generate(jose::Algorithm::ES256).expect("key");
    let jkt = key.public().expect("public").thumbprint();
    let token = issuer.sign(claims(&format!(
        r#","sub":"alice","cnf":{{"jkt":"{jkt}"}}"#
    )));
    let scheme = format!("DPoP {token}");
    let htu = format!("{ORIGIN}/orders/1");
    let now = unix_now();
    let ask = |proofs: Vec<String>, authorization: String| {
        let (gateway, backend) = (&gateway, &backend);
        async move {
            let mut headers = vec![("authorization", authorization.as_str())];
            headers.extend(proofs.iter().map(|p| ("dpop", p.as_str())));
            let before = backend.hits();
            let answer = gateway.send("GET", "/orders/1", &headers).await;
            (answer, backend.hits() - before)
        }
    };
    let (answer, reached) = ask(
        vec![dpop_proof(&key, "GET", &htu, &token, now, None)],
        scheme.clone(),
    )
    .await;
    assert_eq!(
        (answer.status, reached),
        (StatusCode::UNAUTHORIZED, 0),
        "{answer:?}\n{}",
        logs()
    );
    assert!(
        answer
            .www_authenticate
            .as_deref()
            .is_some_and(|c| c.starts_with("DPoP error=\"use_dpop_nonce\"")),
        "{answer:?}"
    );
    let nonce = header_of(&answer, "dpop-nonce")
        .unwrap_or_else(|| panic!("no DPoP-Nonce: {answer:?}"))
        .to_owned();
    let good = dpop_proof(&key, "GET", &htu, &token, now, Some(&nonce));
    let (answer, reached) = ask(vec![good.clone()], scheme.clone()).await;
    assert_eq!(
        (answer.status, reached),
        (StatusCode::OK, 1),
        "{answer:?}\n{}",
        logs()
    );
    assert_eq!(backend.last().cnf_jkt.as_deref(), Some(jkt.as_str()));
    let other = jose::SigningKey::generate(jose::Algorithm::ES256).expect("key");
    for (what, proofs, authorization) in [
        ("a replayed proof", vec![good.clone()], scheme.clone()),
        (
            "another URI",
            vec![dpop_proof(
                &key,
                "GET",
                &format!("{ORIGIN}/admin"),
                &token,
                now,
                Some(&nonce),
            )],
            scheme.clone(),
        ),
        (
            "another method",
            vec![dpop_proof(&key, "POST", &htu, &token, now, Some(&nonce))],
            scheme.clone(),
        ),
        (
            "another key",
            vec![dpop_proof(&other, "GET", &htu, &token, now, Some(&nonce))],
            scheme.clone(),
        ),
        (
            "the token as Bearer",
            vec![dpop_proof(&key, "GET", &htu, &token, now, Some(&nonce))],
            format!("Bearer {token}"),
        ),
        ("no proof", vec![], scheme.clone()),
    ] {
        let (answer, reached) = ask(proofs, authorization).await;
        assert_ne!(answer.status, StatusCode::OK, "{what}: {answer:?}");
        assert_eq!(reached, 0, "{what}: the backend was called");
    }

    // Certificates: Caddy's certificate placeholder, over its TLS site.
    let pem = std::fs::read(dir.join("client.pem")).expect("certificate");
    let der = rustls_pki_types::CertificateDer::from_pem_slice(&pem).expect("PEM");
    let x5t = URL_SAFE_NO_PAD
        .encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der.as_ref()).as_ref());
    let bound = issuer.sign(claims(&format!(
        r#","sub":"orders","cnf":{{"x5t#S256":"{x5t}"}}"#
    )));
    let bearer = format!("Bearer {bound}");
    let auth = [("authorization", bearer.as_str())];
    let before = backend.hits();
    let (status, body) = over_tls(&dir, caddy.tls_port, Some("client"), "/orders/1", &auth).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "orders"),
        "{}",
        logs()
    );
    assert_eq!(backend.hits(), before + 1);
    assert_eq!(backend.last().cnf_x5t.as_deref(), Some(x5t.as_str()));
    let forged = [
        auth[0],
        ("x-ssl-client-cert", &STANDARD.encode(der.as_ref())),
    ];
    for (what, certificate, headers) in [
        ("another certificate", Some("other"), &auth[..]),
        ("no certificate", None, &auth[..]),
        ("the client's own header", None, &forged[..]),
    ] {
        let before = backend.hits();
        let (status, _) = over_tls(&dir, caddy.tls_port, certificate, "/orders/1", headers).await;
        // Without a certificate Caddy sends the placeholder as written, which tessera refuses
        // as no certificate at all (400); another certificate is an invalid token (401).
        let refused = match certificate {
            Some(_) => status == StatusCode::UNAUTHORIZED,
            None => status == StatusCode::BAD_REQUEST,
        };
        assert!(refused, "{what}: {status}\n{}", logs());
        assert_eq!(backend.hits(), before, "{what}: the backend was called");
    }
}
