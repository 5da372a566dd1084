//! The token endpoint (`POST /token`, client credentials) driven end to end by OAuth 2.0 client
//! libraries nobody here wrote: Python's authlib and requests-oauth2client, with PyJWT verifying
//! the access tokens (tests/oauth-clients/authlib_cc.py), and JavaScript's oauth4webapi, which
//! also introspects and revokes (tests/oauth-clients/oauth4webapi_cc.mjs).
//! DPoP (RFC 9449) end to end: oauth4webapi gets DPoP-bound tokens and the `dpop` package makes
//! the proofs it brings to the forward-auth endpoint `/v1/authz`
//! (tests/oauth-clients/oauth4webapi_dpop.mjs); requests-oauth2client does the same with its own
//! DPoP key and token (tests/oauth-clients/requests_oauth2client_dpop.py). Both meet server
//! nonces at `/token` and at `/v1/authz`.
//! tests/oauth-clients/install.sh installs them at pinned versions under target/oauth-clients/.
//!
//! Each test makes its own SoftHSM token with an ES256 key, a configuration whose issuer is
//! the daemon's public URL (a port picked before the start, so that the URL is known), clients
//! registered with `tessera clients add` in the store of that configuration (the
//! private_key_jwt client's key made by the Python side, its public set registered), then starts
//! the daemon and runs one script against it. The DPoP tests' configuration adds `[authz.dpop]`
//! (the origin of the APIs behind the gateway, server nonces on) and nginx's forward-auth headers
//! with a route rule for `/orders`; their clients are a DPoP-bound one (`--dpop-bound`) and an
//! ordinary one. Secrets reach the scripts in their environment, never on a command line.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::process::run_bounded;
use testkit::{Daemon, Scratch, SoftHsm};

const LABEL: &str = "tessera-oauth-clients";
const AUDIENCE: &str = "https://api.example/orders";
const SCOPE: &str = "orders:read";
/// The public origin of the APIs behind the gateway, in `[authz.dpop]`: a proof's `htu` is it
/// and the original path.
const ORIGIN: &str = "https://api.example";
/// The path the DPoP scripts' requests name, as nginx passes it in `X-Original-URI`.
const PATH: &str = "/orders/1";
/// The first install downloads the packages; later ones only check a stamp.
const INSTALL: Duration = Duration::from_secs(600);
/// One script's whole run.
const SCRIPT: Duration = Duration::from_secs(60);
/// One CLI command.
const CLI: Duration = Duration::from_secs(30);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs tests/oauth-clients/install.sh once for all the tests of this process; the folder it
/// installed into.
fn installed() -> &'static Path {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = root().join("target/oauth-clients");
        let mut cmd = Command::new("bash");
        cmd.arg(root().join("tests/oauth-clients/install.sh"))
            .env("TESSERA_OAUTH_CLIENTS_DIR", &dir);
        let start = Instant::now();
        let out = run_bounded(cmd, b"", INSTALL);
        eprintln!("install.sh: {:.1?}", start.elapsed());
        if out.status.success() {
            Ok(dir)
        } else {
            Err(format!(
                "tests/oauth-clients/install.sh failed ({}):\n{}{}",
                out.status,
                text(&out.stdout),
                text(&out.stderr)
            ))
        }
    });
    match dir {
        Ok(dir) => dir,
        Err(e) => panic!("{e}"),
    }
}

/// A loopback port free now, for the daemon to listen on and name in its public URL.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A daemon with its own token, store and registered clients, and the scripts' inputs.
struct Setup {
    hsm: SoftHsm,
    dir: Scratch,
    config: PathBuf,
    url: String,
    clients: Value,
}

impl Setup {
    /// The daemon for the client-credentials scripts: three clients, one per authentication
    /// method.
    fn new(name: &str) -> Setup {
        let tools = installed();
        let mut setup = Setup::base(name, "");

        // The private_key_jwt client's key, made where it is used: client.jwk (private) and
        // client-jwks.json (the public set registered).
        let mut keygen = Command::new(tools.join("venv/bin/python"));
        keygen
            .arg(root().join("tests/oauth-clients/authlib_cc.py"))
            .args(["keygen", path_str(setup.dir.path())])
            .env("PYTHONDONTWRITEBYTECODE", "1");
        let out = run_bounded(keygen, b"", CLI);
        assert!(
            out.status.success(),
            "keygen: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        let private: Value = serde_json::from_str(
            &std::fs::read_to_string(setup.dir.join("client.jwk")).expect("client.jwk"),
        )
        .expect("client.jwk is JSON");
        let jwks = setup.dir.join("client-jwks.json");

        let basic = setup.add(
            &format!("{name}-basic"),
            "client_secret_basic",
            &["--permission", "introspect", "--permission", "revoke"],
        );
        let post = setup.add(&format!("{name}-post"), "client_secret_post", &[]);
        let jwt = setup.add(
            &format!("{name}-jwt"),
            "private_key_jwt",
            &["--jwks", path_str(&jwks)],
        );
        assert!(jwt.get("client_secret").is_none(), "{jwt}");
        setup.clients = json!({
            "basic": basic,
            "post": post,
            "jwt": {"client_id": jwt["client_id"], "private_jwk": private},
            "audience": AUDIENCE,
            "scope": SCOPE,
        });
        setup
    }

    /// A token with one ES256 key, and a configuration whose issuer is the daemon's public
    /// URL, with `extra` appended; no clients yet.
    fn base(name: &str, extra: &str) -> Setup {
        let hsm = SoftHsm::new(
            env!("CARGO_BIN_EXE_tessera"),
            &format!("oauth-{name}"),
            LABEL,
        );
        let dir = Scratch::new(&format!("oauth-clients-{name}"));
        let mut setup = Setup {
            hsm,
            dir,
            config: PathBuf::new(),
            url: format!("http://127.0.0.1:{}", free_port()),
            clients: Value::Null,
        };
        setup.ok(&["keys", "generate", "--alg", "ES256"]);
        let url = &setup.url;
        let port = url.rsplit(':').next().expect("port");
        let config = format!(
            r#"[server]
listen = "127.0.0.1:{port}"
public_url = "{url}"

[engine]
pin_cores = false

[hsm]
token = "{LABEL}"
pin_file = "{pin}"

[[issuers]]
issuer = "{url}"
hsm = true
typ = "at+jwt"
audiences = ["{AUDIENCE}"]

[store]
path = "store.sqlite3"
{extra}"#,
            pin = setup.hsm.dir.join("pin").display(),
        );
        setup.config = setup.dir.write("tessera.toml", &config);
        setup
    }

    /// The daemon for the DPoP scripts: `[authz.dpop]` with nonces, and two client_secret_basic
    /// clients, one registered `--dpop-bound` and one not.
    fn dpop(name: &str) -> Setup {
        installed();
        // nginx's headers only, every request under a route rule that the tokens meet, and
        // DPoP with server nonces.
        let extra = format!(
            r#"
[authz]
original_from = "x-original"
deny_unmatched = true

[authz.dpop]
origin = "{ORIGIN}"
window_s = 60
nonce = true

[[authz.routes]]
prefix = "/orders"
methods = ["GET", "HEAD"]
scopes = ["{SCOPE}"]
audience = "{AUDIENCE}"
"#
        );
        let mut setup = Setup::base(name, &extra);
        let bound = setup.add(
            &format!("{name}-dpop"),
            "client_secret_basic",
            &["--dpop-bound"],
        );
        let plain = setup.add(&format!("{name}-plain"), "client_secret_basic", &[]);
        setup.clients = json!({
            "dpop": bound,
            "plain": plain,
            "audience": AUDIENCE,
            "scope": SCOPE,
            "origin": ORIGIN,
            "path": PATH,
        });
        setup
    }

    /// The `tessera` binary pointed at this token, with a clean environment for what it reads.
    fn tessera(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tessera"));
        cmd.args(args)
            .env_remove("RUST_LOG")
            .env_remove("TESSERA_LOG_FORMAT")
            .env("STATE_DIRECTORY", self.dir.join("state"));
        self.hsm.env(&mut cmd);
        cmd
    }

    /// Runs the CLI and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = run_bounded(self.tessera(args), b"", CLI);
        assert!(
            out.status.success(),
            "tessera {args:?}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// `tessera clients add` for client_credentials with both scopes and the audience; its
    /// one JSON object (with `client_secret` unless private_key_jwt).
    fn add(&self, id: &str, auth: &str, extra: &[&str]) -> Value {
        let mut args = vec![
            "clients",
            "add",
            "--config",
            path_str(&self.config),
            "--id",
            id,
            "--auth",
            auth,
            "--grant",
            "client_credentials",
            "--scope",
            "orders:read",
            "--scope",
            "orders:write",
            "--audience",
            AUDIENCE,
        ];
        args.extend_from_slice(extra);
        let out = self.ok(&args);
        let added: Value = serde_json::from_str(out.trim())
            .unwrap_or_else(|e| panic!("clients add prints one JSON object ({e}): {out:?}"));
        assert_eq!(added["client_id"], id, "{added}");
        if auth != "private_key_jwt" {
            let secret = added["client_secret"].as_str().unwrap_or_default();
            assert!(secret.starts_with("tcs_"), "{added}");
        }
        added
    }

    fn serve(&self) -> Daemon {
        let daemon = Daemon::spawn(self.tessera(&["serve", "--config", path_str(&self.config)]));
        assert_eq!(
            daemon.url, self.url,
            "the daemon listens where its public_url says"
        );
        daemon
    }

    /// Runs `program script` against the daemon with the inputs in its environment; panics with
    /// everything both sides said unless it exits 0.
    fn script(&self, daemon: &mut Daemon, program: &Path, script: &str) -> Output {
        let mut cmd = Command::new(program);
        cmd.arg(root().join("tests/oauth-clients").join(script))
            .env("TESSERA_URL", &self.url)
            .env("TESSERA_CLIENTS", self.clients.to_string())
            .env("OAUTH_CLIENTS_DIR", installed())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            // Loopback only: no proxy in between.
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost");
        for proxy in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"] {
            cmd.env_remove(proxy).env_remove(proxy.to_lowercase());
        }
        let start = Instant::now();
        let out = run_bounded(cmd, b"", SCRIPT);
        eprintln!(
            "{script}: {:.1?}, {}\n{}{}",
            start.elapsed(),
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
        if !out.status.success() {
            daemon.kill();
            panic!(
                "{script} failed ({}):\n--- stdout\n{}--- stderr\n{}--- daemon stderr\n{}",
                out.status,
                text(&out.stdout),
                text(&out.stderr),
                daemon.finished_stderr()
            );
        }
        out
    }
}

#[test]
fn authlib_and_requests_oauth2client_get_tokens_pyjwt_verifies() {
    let setup = Setup::new("py");
    let mut daemon = setup.serve();
    let python = installed().join("venv/bin/python");
    let out = setup.script(&mut daemon, &python, "authlib_cc.py");
    assert!(text(&out.stdout).contains("all checks passed"));
}

#[test]
fn oauth4webapi_gets_validates_introspects_and_revokes() {
    let setup = Setup::new("js");
    let mut daemon = setup.serve();
    let out = setup.script(&mut daemon, Path::new("node"), "oauth4webapi_cc.mjs");
    assert!(text(&out.stdout).contains("all checks passed"));
}

#[test]
fn oauth4webapi_gets_dpop_bound_tokens_dpop_proofs_pass_forward_auth() {
    let setup = Setup::dpop("js-dpop");
    let mut daemon = setup.serve();
    let out = setup.script(&mut daemon, Path::new("node"), "oauth4webapi_dpop.mjs");
    assert!(text(&out.stdout).contains("all checks passed"));
}

#[test]
fn requests_oauth2client_gets_dpop_bound_tokens_its_proofs_pass_forward_auth() {
    let setup = Setup::dpop("py-dpop");
    let mut daemon = setup.serve();
    let python = installed().join("venv/bin/python");
    let out = setup.script(&mut daemon, &python, "requests_oauth2client_dpop.py");
    assert!(text(&out.stdout).contains("all checks passed"));
}
