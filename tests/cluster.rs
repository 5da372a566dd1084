//! Several daemons on one PostgreSQL: a revocation on one is refused by the other within the
//! wake-up (measured), both fail closed when the store is gone for longer than `max_lag_ms` and
//! recover by themselves when it returns, a daemon restarted catches up from the store, and a
//! DPoP proof accepted by one daemon is refused by the other, with nonces and without.
//!
//! PostgreSQL is a throw-away cluster of the test's own (`testkit::Postgres`: `initdb` into a
//! temp dir, a Unix socket there, `fsync=off`), stopped when the test ends; `make test` installs
//! the `postgresql` package when it is missing (tests/deps.sh), and the test fails saying so
//! when it cannot find it.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};
use testkit::{Algorithm, Claims, Daemon, Issuer, Postgres, Reply, Scratch};

const ISS: &str = "https://issuer.example";
const SECRET: &str = "ops-secret-0815";

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

fn tessera(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tessera"));
    cmd.args(args)
        .env_remove("RUST_LOG")
        .env_remove("TESSERA_LOG_FORMAT");
    cmd
}

fn basic() -> String {
    format!("Basic {}", STANDARD.encode(format!("ops:{SECRET}")))
}

/// Daemons sharing one store: the same issuer and a client allowed everything.
struct Cluster {
    dir: Scratch,
    issuer: Issuer,
    hash: String,
    store: String,
}

impl Cluster {
    fn new(name: &str, postgres: &Postgres, store: &str) -> Self {
        let dir = Scratch::new(&format!("cluster-{name}"));
        let issuer = Issuer::new(Algorithm::ES256, "k1");
        dir.write("jwks.json", issuer.jwks());
        let out = testkit::process::run_bounded(
            tessera(&["client", "hash-secret", "--iterations", "1000"]),
            format!("{SECRET}\n").as_bytes(),
            Duration::from_secs(30),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let hash = String::from_utf8(out.stdout)
            .expect("UTF-8")
            .trim()
            .to_owned();
        let store = format!("url = \"{}\"\n{store}", postgres.url());
        Cluster {
            dir,
            issuer,
            hash,
            store,
        }
    }

    fn start(&self, name: &str) -> Daemon {
        self.start_with(name, "")
    }

    /// A daemon with `extra` in its configuration, before `[store]`.
    fn start_with(&self, name: &str, extra: &str) -> Daemon {
        let config = format!(
            r#"[server]
listen = "127.0.0.1:0"

[engine]
pin_cores = false
workers = 1

[[issuers]]
issuer = "{ISS}"
jwks_file = "jwks.json"

[[clients]]
id = "ops"
secret_hash = "{hash}"
permissions = ["introspect", "revoke", "admin"]

{extra}

[store]
{store}
"#,
            hash = self.hash,
            store = self.store
        );
        let file = self.dir.write(&format!("{name}.toml"), &config);
        Daemon::spawn(tessera(&["serve", "--config", path_str(&file)]))
    }

    fn token(&self, jti: &str) -> String {
        let claims = Claims::valid_now()
            .merge(json!({"iss": ISS, "sub": "alice", "jti": jti}))
            .into_value();
        self.issuer.sign(&claims)
    }
}

async fn authz(daemon: &Daemon, token: &str) -> u16 {
    let bearer = format!("Bearer {token}");
    daemon
        .call("GET", "/v1/authz", &[("authorization", &bearer)], "")
        .await
        .status
}

async fn revoke(daemon: &Daemon, token: &str) -> Reply {
    let auth = basic();
    daemon
        .call(
            "POST",
            "/revoke",
            &[
                ("authorization", &auth),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            &format!("token={token}"),
        )
        .await
}

/// Waits until `daemon` answers `status` for `token` on `/v1/authz`; how long it took.
async fn until_authz(daemon: &Daemon, token: &str, status: u16, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let got = authz(daemon, token).await;
        if got == status {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "/v1/authz still {got}, not {status}, after {limit:?}; stderr:\n{}",
            daemon.stderr()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn readyz_status(reply: &Reply) -> Value {
    reply.json()["status"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revocation_on_one_daemon_is_refused_by_the_other_within_the_wake_up() {
    let postgres = Postgres::start();
    // A long poll: what is measured is the LISTEN/NOTIFY wake-up, not the backstop.
    let cluster = Cluster::new("notify", &postgres, "poll_ms = 5000\nmax_lag_ms = 30000");
    let (a, b) = (cluster.start("a"), cluster.start("b"));
    let mut times = Vec::new();
    for i in 0..5 {
        let token = cluster.token(&format!("n-{i}"));
        assert_eq!(authz(&a, &token).await, 200);
        assert_eq!(
            authz(&b, &token).await,
            200,
            "cached on b before the revocation"
        );
        let start = Instant::now();
        assert_eq!(revoke(&a, &token).await.status, 200);
        assert_eq!(
            authz(&a, &token).await,
            401,
            "the daemon that revoked refuses at once"
        );
        until_authz(&b, &token, 401, Duration::from_secs(2)).await;
        times.push(start.elapsed());
    }
    times.sort();
    eprintln!(
        "propagation a -> b through PostgreSQL NOTIFY (revoke answered to b refusing), 5 runs: \
         min {:?}, median {:?}, max {:?}",
        times[0], times[2], times[4]
    );
    assert!(times[4] < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_store_both_fail_closed_and_recover_with_nothing_lost() {
    let postgres = Postgres::start();
    let cluster = Cluster::new("loss", &postgres, "poll_ms = 200\nmax_lag_ms = 1500");
    let (a, b) = (cluster.start("a"), cluster.start("b"));
    let before = cluster.token("before");
    let valid = cluster.token("valid");
    assert_eq!(revoke(&a, &before).await.status, 200);
    until_authz(&b, &before, 401, Duration::from_secs(2)).await;

    let stopped = Instant::now();
    postgres.stop();
    for daemon in [&a, &b] {
        until_authz(daemon, &valid, 503, Duration::from_secs(10)).await;
        let ready = daemon.get("/readyz").await;
        assert_eq!(ready.status, 503);
        assert_eq!(readyz_status(&ready), "store_behind");
    }
    // The view's age counts from the last catch-up that worked: up to poll_ms (and the
    // catch-up's own time) before the store went away.
    let failed_closed = stopped.elapsed();
    assert!(
        failed_closed >= Duration::from_millis(1500 - 300),
        "{failed_closed:?}: before max_lag_ms"
    );
    eprintln!("failed closed {failed_closed:?} after the store stopped (max_lag_ms = 1500)");
    // Writes fail while the store is away: the caller is told to retry, nothing is claimed done.
    assert_eq!(revoke(&a, &valid).await.status, 503);

    postgres.start_again();
    let restarted = Instant::now();
    for daemon in [&a, &b] {
        until_authz(daemon, &valid, 200, Duration::from_secs(15)).await;
        assert_eq!(readyz_status(&daemon.get("/readyz").await), "ready");
        assert_eq!(
            authz(daemon, &before).await,
            401,
            "a record written before the loss"
        );
    }
    eprintln!(
        "both serving again {:?} after the store came back",
        restarted.elapsed()
    );
    let after = cluster.token("after");
    assert_eq!(revoke(&b, &after).await.status, 200);
    until_authz(&a, &after, 401, Duration::from_secs(3)).await;
    let metrics = a.get("/metrics").await.text();
    assert!(
        metrics.contains("tessera_revocations_last_seq 2"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_daemon_catches_up_from_the_store() {
    let postgres = Postgres::start();
    let cluster = Cluster::new("restart", &postgres, "poll_ms = 200\nmax_lag_ms = 5000");
    let a = cluster.start("a");
    let mut b = cluster.start("b");
    let early = cluster.token("early");
    assert_eq!(revoke(&a, &early).await.status, 200);
    b.kill();
    // Written while b is down.
    let missed: Vec<String> = (0..20)
        .map(|i| cluster.token(&format!("missed-{i}")))
        .collect();
    for token in &missed {
        assert_eq!(revoke(&a, token).await.status, 200);
    }
    let b = cluster.start("b");
    for token in missed.iter().chain([&early]) {
        assert_eq!(
            authz(&b, token).await,
            401,
            "b forgot a record after its restart"
        );
    }
    let list = b
        .call("GET", "/v1/revocations", &[("authorization", &basic())], "")
        .await
        .json();
    assert_eq!(list["last_applied_seq"], 21);
    assert_eq!(list["revocations"].as_array().map(Vec::len), Some(21));
}

/// A DPoP proof (RFC 9449) by `key` for GET `htu` with `token`, carrying `nonce`.
fn dpop_proof(
    key: &jose::SigningKey,
    htu: &str,
    token: &str,
    jti: &str,
    nonce: Option<&str>,
) -> String {
    let mut claims = testkit::dpop::claims("GET", htu, Some(token));
    claims["jti"] = jti.into();
    if let Some(nonce) = nonce {
        claims["nonce"] = nonce.into();
    }
    testkit::dpop::sign(key, &claims)
}

/// `/v1/authz` for GET /orders/1 with `DPoP token` and `proof`: the status and any nonce.
async fn authz_dpop(daemon: &Daemon, token: &str, proof: &str) -> (u16, Option<String>) {
    let scheme = format!("DPoP {token}");
    let reply = daemon
        .call(
            "GET",
            "/v1/authz",
            &[
                ("x-original-method", "GET"),
                ("x-original-uri", "/orders/1"),
                ("authorization", &scheme),
                ("dpop", proof),
            ],
            "",
        )
        .await;
    (reply.status, reply.header("dpop-nonce").map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dpop_proof_accepted_by_one_daemon_is_refused_by_the_other_in_both_modes() {
    const ORIGIN: &str = "https://api.example";
    let postgres = Postgres::start();
    let cluster = Cluster::new("dpop", &postgres, "poll_ms = 1000");
    let key = jose::SigningKey::generate(jose::Algorithm::ES256).expect("key");
    let jkt = key.public().expect("public").thumbprint();
    let claims = Claims::valid_now()
        .merge(json!({"iss": ISS, "sub": "alice", "cnf": {"jkt": jkt}}))
        .into_value();
    let token = cluster.issuer.sign(&claims);
    let htu = format!("{ORIGIN}/orders/1");

    // With PostgreSQL, nonces are on by default: each daemon's replay cache is exact, because a
    // proof carries the nonce of the one daemon it can pass at.
    let origin = format!("[authz.dpop]\norigin = \"{ORIGIN}\"\n");
    let (a, b) = (
        cluster.start_with("a", &origin),
        cluster.start_with("b", &origin),
    );
    let (status, nonce_a) =
        authz_dpop(&a, &token, &dpop_proof(&key, &htu, &token, "n-0", None)).await;
    assert_eq!(status, 401, "a nonce is needed");
    let nonce_a = nonce_a.expect("DPoP-Nonce");
    let proof = dpop_proof(&key, &htu, &token, "n-1", Some(&nonce_a));
    assert_eq!(authz_dpop(&a, &token, &proof).await.0, 200);
    let (status, nonce_b) = authz_dpop(&b, &token, &proof).await;
    assert_eq!(status, 401, "a's proof at b");
    assert_ne!(
        nonce_b.as_deref(),
        Some(nonce_a.as_str()),
        "b gives its own nonce"
    );
    assert_eq!(authz_dpop(&a, &token, &proof).await.0, 401, "replayed at a");
    drop((a, b));

    // Without nonces, the store remembers every proof for both daemons.
    let shared = format!("{origin}nonce = false\n");
    let (c, d) = (
        cluster.start_with("c", &shared),
        cluster.start_with("d", &shared),
    );
    for (i, (first, second)) in [(&c, &d), (&d, &c)].into_iter().enumerate() {
        let proof = dpop_proof(&key, &htu, &token, &format!("s-{i}"), None);
        assert_eq!(
            authz_dpop(first, &token, &proof).await.0,
            200,
            "{}",
            first.stderr()
        );
        assert_eq!(
            authz_dpop(second, &token, &proof).await.0,
            401,
            "replayed at the other"
        );
        assert_eq!(
            authz_dpop(first, &token, &proof).await.0,
            401,
            "replayed at the first"
        );
    }
}
