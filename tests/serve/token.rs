//! The token endpoint, `POST /token` (RFC 6749 section 4.4, client credentials): tokens for
//! `client_secret_basic`, `client_secret_post` and `private_key_jwt` clients (RFC 7523), signed
//! by the daemon's own SoftHSM key as RFC 9068 access tokens and taken by its own endpoints;
//! RFC 6749 section 5.2 errors with nothing issued; hostile client assertions; store clients
//! followed while the daemon runs; RFC 8414 discovery; and logs that never carry a secret, a
//! token or an assertion.
//!
//! Each test makes its own SoftHSM token with an ES256 key and a configuration whose
//! `public_url` names the daemon's issuer (trusted by the daemon itself, `hsm = true`), with an
//! embedded store that `tessera clients` registers clients in.

use super::*;

const PUBLIC: &str = "https://tessera.example";
pub(super) const ORDERS: &str = "https://api.example/orders";
const BILLING: &str = "https://api.example/billing";
pub(super) const FORM: &str = "application/x-www-form-urlencoded";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const CC: (&str, &str) = ("grant_type", "client_credentials");
/// How long a change in the store may take to show in the daemon (`poll_ms = 100`).
const FOLLOW: Duration = Duration::from_secs(5);

/// A scratch folder with a SoftHSM token holding an ES256 key, and the configuration of a
/// daemon that signs with it and keeps its clients in `store.sqlite3` beside the file.
pub(super) struct Issuing {
    hsm: Token,
    dir: Scratch,
    config: PathBuf,
}

impl Issuing {
    /// `public_url`: the daemon's issuer, trusted by the daemon (else it is the bound address
    /// and the trusted issuer is another); `rest` is appended to the configuration.
    pub(super) fn new(name: &str, public_url: Option<&str>, rest: &str) -> Self {
        let hsm = Token::new(&format!("token-{name}"));
        hsm.ok(&["keys", "generate", "--alg", "ES256"]);
        let dir = Scratch::new(&format!("serve-token-{name}"));
        let public = public_url.map_or(String::new(), |u| format!("public_url = \"{u}\""));
        let trusted = public_url.unwrap_or("https://other.example");
        let config = format!(
            r#"[server]
listen = "127.0.0.1:0"
{public}
max_body_bytes = 65536
auth_failure_burst = 1000

[engine]
pin_cores = false
workers = 2

[log]
level = "debug"

[hsm]
token = "{LABEL}"
pin_file = "{pin}"

[[issuers]]
issuer = "{trusted}"
hsm = true
typ = "at+jwt"
audiences = ["{ORDERS}", "{BILLING}"]

[store]
path = "store.sqlite3"
poll_ms = 100
max_lag_ms = 5000

{rest}
"#,
            pin = hsm.0.dir.join("pin").display(),
        );
        let config = dir.write("tessera.toml", &config);
        Issuing { hsm, dir, config }
    }

    /// `tessera clients ARGS --config FILE`.
    fn clients(&self, args: &[&str]) -> Output {
        let mut all = vec!["clients"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--config", path_str(&self.config)]);
        run(self.hsm.command(&all), b"")
    }

    /// `tessera clients ARGS`, expected to succeed; its one JSON line.
    pub(super) fn clients_ok(&self, args: &[&str]) -> Value {
        let out = self.clients(args);
        assert!(
            out.status.success(),
            "clients {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "clients {args:?} ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// `clients add` for client_credentials with `orders:read orders:write` on both audiences
    /// and a lifetime of `lifetime` seconds; returns the secret, if the method has one.
    fn add(&self, id: &str, auth: &str, lifetime: u64, extra: &[&str]) -> Option<String> {
        let lifetime = lifetime.to_string();
        let mut args = vec![
            "add",
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
            ORDERS,
            "--audience",
            BILLING,
            "--lifetime",
            &lifetime,
        ];
        args.extend_from_slice(extra);
        let added = self.clients_ok(&args);
        assert_eq!(added["client_id"], id, "{added}");
        let secret = added["client_secret"].as_str().map(str::to_owned);
        if auth == "private_key_jwt" {
            assert!(secret.is_none(), "{added}");
        } else {
            assert!(
                secret.as_deref().is_some_and(|s| s.starts_with("tcs_")),
                "{added}"
            );
        }
        secret
    }

    /// An ES256 key for a private_key_jwt client, its public set written for `--jwks`.
    fn client_key(&self, name: &str) -> (jose::SigningKey, PathBuf) {
        let key = jose::SigningKey::generate(jose::Algorithm::ES256)
            .expect("ES256 key")
            .with_kid("c1");
        let file = self.dir.write(&format!("{name}-jwks.json"), &key.jwks());
        (key, file)
    }

    pub(super) fn serve(&self) -> Daemon {
        Daemon::spawn(
            self.hsm
                .command(&["serve", "--config", path_str(&self.config)]),
        )
    }
}

/// RFC 6749 appendix B: `application/x-www-form-urlencoded`, everything but the unreserved
/// characters escaped.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub(super) fn form(params: &[(&str, &str)]) -> String {
    params
        .iter()
        .map(|(name, value)| format!("{}={}", encode(name), encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// RFC 6749 section 2.3.1: the id and the secret form-encoded, then Basic.
fn client_basic(id: &str, secret: &str) -> String {
    basic(&encode(id), &encode(secret))
}

/// `POST /token` with a form body.
async fn token(daemon: &Daemon, auth: Option<&str>, params: &[(&str, &str)]) -> Reply {
    let mut headers = vec![("content-type", FORM)];
    if let Some(auth) = auth {
        headers.push(("authorization", auth));
    }
    daemon.call("POST", "/token", &headers, &form(params)).await
}

/// A client assertion for `client` signed by `key`: `aud` the token endpoint, a minute of life,
/// a fresh `jti`; `extra` members added, replaced or removed (null).
fn assertion(key: &jose::SigningKey, client: &str, extra: Value) -> String {
    static JTI: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = JTI.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let now = unix_now();
    let claims = Claims::new()
        .merge(json!({
            "iss": client,
            "sub": client,
            "aud": format!("{PUBLIC}/token"),
            "iat": now,
            "exp": now + 60,
            "jti": format!("assertion-{}-{n}", std::process::id()),
        }))
        .merge(extra);
    key.jwt(None, &claims.to_string())
        .expect("sign the assertion")
}

fn with_assertion<'a>(assertion: &'a str, rest: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut params = vec![
        CC,
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", assertion),
    ];
    params.extend_from_slice(rest);
    params
}

/// A 200 token response (RFC 6749 section 5.1) for `lifetime` seconds and `scope`; its token.
fn issued(reply: &Reply, lifetime: i64, scope: Option<&str>, what: &str) -> String {
    assert_eq!(reply.status, 200, "{what}: {}", reply.text());
    assert_eq!(reply.header("cache-control"), Some("no-store"), "{what}");
    assert_eq!(reply.header("pragma"), Some("no-cache"), "{what}");
    assert_eq!(
        reply.header("content-type"),
        Some("application/json"),
        "{what}"
    );
    let body = reply.json();
    assert_eq!(body["token_type"], "Bearer", "{what}: {body}");
    assert_eq!(body["expires_in"], lifetime, "{what}: {body}");
    assert_eq!(
        body.get("scope").and_then(Value::as_str),
        scope,
        "{what}: {body}"
    );
    let fields: Vec<&String> = body.as_object().expect("object").keys().collect();
    assert!(
        fields
            .iter()
            .all(|f| ["access_token", "token_type", "expires_in", "scope"].contains(&f.as_str())),
        "{what}: {body}"
    );
    body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no access_token in {body}"))
        .to_owned()
}

/// An RFC 6749 section 5.2 error: `status`, `error`, never a token, never cached.
fn refused(reply: &Reply, status: u16, error: &str, what: &str) {
    assert_eq!(reply.status, status, "{what}: {}", reply.text());
    let body = reply.json();
    assert_eq!(body["error"], error, "{what}: {body}");
    assert!(body.get("access_token").is_none(), "{what}: {body}");
    assert_eq!(reply.header("cache-control"), Some("no-store"), "{what}");
}

/// `invalid_client` with the Basic challenge RFC 6749 section 5.2 requires of a client that
/// used the Authorization header.
fn refused_basic(reply: &Reply, what: &str) {
    refused(reply, 401, "invalid_client", what);
    assert_eq!(
        reply.header("www-authenticate"),
        Some("Basic realm=\"tessera\""),
        "{what}"
    );
}

/// The header and claims of a compact JWT, unverified.
fn parts(jwt: &str) -> (Value, Value) {
    let mut segments = jwt.split('.');
    let header = b64_json(segments.next().expect("header"));
    let claims = b64_json(segments.next().expect("payload"));
    (header, claims)
}

/// Neither the daemon's stdout nor its stderr carries any of `secrets` (client secrets, access
/// tokens, assertions), nor their signature parts alone; the logs are there to look at (an
/// issued token is logged, by fingerprint).
fn never_logged(daemon: &Daemon, secrets: &[String]) {
    let mut logs = daemon.stderr();
    for line in daemon.more_stdout() {
        logs.push_str(&line);
        logs.push('\n');
    }
    assert!(logs.contains("access token issued"), "{logs}");
    assert!(!secrets.is_empty());
    for secret in secrets {
        assert!(secret.len() >= 16, "{secret:?} is too short to look for");
        let signature = secret.rsplit('.').next().filter(|s| s.len() >= 16);
        for needle in std::iter::once(secret.as_str()).chain(signature) {
            assert!(!logs.contains(needle), "{needle:?} is in the logs:\n{logs}");
        }
    }
}

#[tokio::test]
async fn client_credentials_issue_rfc9068_tokens_for_every_auth_method() {
    // The client_secret_post client is the configuration file's, the others the store's.
    let post_secret = "post-secret-0815-xyz";
    let post_client = format!(
        "{ROUTES}\n[[clients]]\nid = \"svc-post\"\nsecret_hash = \"{}\"\n\
         auth_method = \"client_secret_post\"\ngrants = [\"client_credentials\"]\n\
         scopes = [\"orders:read\", \"orders:write\"]\naudiences = [\"{ORDERS}\"]\n\
         token_lifetime_s = 300\n",
        hash_secret(post_secret)
    );
    let issuing = Issuing::new("issue", Some(PUBLIC), &post_client);
    let basic_secret = issuing
        .add("svc-basic", "client_secret_basic", 600, &[])
        .expect("secret");
    let (key, jwks) = issuing.client_key("svc-jwt");
    issuing.add(
        "svc-jwt",
        "private_key_jwt",
        120,
        &["--jwks", path_str(&jwks)],
    );
    let opaque_secret = issuing
        .add(
            "svc-opaque",
            "client_secret_basic",
            60,
            &["--format", "opaque"],
        )
        .expect("secret");
    let introspector =
        issuing.clients_ok(&["add", "--id", "introspector", "--permission", "introspect"])
            ["client_secret"]
            .as_str()
            .expect("secret")
            .to_owned();
    let daemon = issuing.serve();
    let daemon_jwks = daemon.get("/.well-known/jwks.json").await;
    assert_eq!(daemon_jwks.status, 200, "{}", daemon_jwks.text());
    let keys = daemon_jwks.json()["keys"].clone();
    let jwks_file = issuing.dir.write("daemon-jwks.json", &daemon_jwks.text());

    let basic_auth = client_basic("svc-basic", &basic_secret);
    let first_assertion = assertion(&key, "svc-jwt", json!({}));
    let issuer_assertion = assertion(&key, "svc-jwt", json!({"aud": PUBLIC}));
    // (what, reply, client, lifetime, scope, audience)
    let cases = [
        (
            "client_secret_basic, all its scopes and audiences",
            token(&daemon, Some(&basic_auth), &[CC]).await,
            "svc-basic",
            600,
            Some("orders:read orders:write"),
            json!([ORDERS, BILLING]),
        ),
        (
            "client_secret_basic, one scope, one resource",
            token(
                &daemon,
                Some(&basic_auth),
                &[CC, ("scope", "orders:read"), ("resource", BILLING)],
            )
            .await,
            "svc-basic",
            600,
            Some("orders:read"),
            json!(BILLING),
        ),
        (
            "client_secret_post",
            token(
                &daemon,
                None,
                &[
                    CC,
                    ("client_id", "svc-post"),
                    ("client_secret", post_secret),
                    ("scope", "orders:write"),
                ],
            )
            .await,
            "svc-post",
            300,
            Some("orders:write"),
            json!(ORDERS),
        ),
        (
            "private_key_jwt, aud the token endpoint, client_id given",
            token(
                &daemon,
                None,
                &with_assertion(
                    &first_assertion,
                    &[("client_id", "svc-jwt"), ("resource", ORDERS)],
                ),
            )
            .await,
            "svc-jwt",
            120,
            Some("orders:read orders:write"),
            json!(ORDERS),
        ),
        (
            "private_key_jwt, aud the issuer, no client_id",
            token(&daemon, None, &with_assertion(&issuer_assertion, &[])).await,
            "svc-jwt",
            120,
            Some("orders:read orders:write"),
            json!([ORDERS, BILLING]),
        ),
    ];
    // The media type may carry a charset parameter.
    let charset = daemon
        .call(
            "POST",
            "/token",
            &[
                (
                    "content-type",
                    "application/x-www-form-urlencoded; charset=UTF-8",
                ),
                ("authorization", &basic_auth),
            ],
            &form(&[CC]),
        )
        .await;
    issued(&charset, 600, Some("orders:read orders:write"), "charset");

    let mut secrets = vec![
        basic_secret.clone(),
        post_secret.to_owned(),
        introspector.clone(),
        first_assertion.clone(),
        issuer_assertion.clone(),
    ];
    let mut jtis = std::collections::BTreeSet::new();
    let introspect_auth = client_basic("introspector", &introspector);
    for (what, reply, client, lifetime, scope, aud) in cases {
        let access = issued(&reply, lifetime, scope, what);
        secrets.push(access.clone());
        let (header, claims) = parts(&access);
        assert_eq!(header["typ"], "at+jwt", "{what}: {header}");
        assert_eq!(header["alg"], "ES256", "{what}: {header}");
        let jwk = keys
            .as_array()
            .expect("keys")
            .iter()
            .find(|k| k["kid"] == header["kid"])
            .unwrap_or_else(|| panic!("{what}: kid {} not in {keys}", header["kid"]));
        assert!(es256_verifies(&access, jwk), "{what}");
        let now = unix_now();
        let iat = claims["iat"].as_i64().expect("iat");
        assert!((now - 5..=now).contains(&iat), "{what}: {claims}");
        let jti = claims["jti"].as_str().expect("jti").to_owned();
        assert!(
            !jti.is_empty() && jtis.insert(jti.clone()),
            "{what}: {claims}"
        );
        let mut expected = json!({
            "iss": PUBLIC,
            "sub": client,
            "aud": aud,
            "client_id": client,
            "iat": iat,
            "exp": iat + lifetime,
            "jti": jti,
        });
        if let Some(scope) = scope {
            expected["scope"] = json!(scope);
        }
        assert_eq!(claims, expected, "{what}");

        // Downstream, with nothing but the daemon's published keys.
        let out = run(
            tessera(&[
                "verify",
                "--jwks",
                path_str(&jwks_file),
                "--iss",
                PUBLIC,
                "--aud",
                claims["aud"].as_str().unwrap_or(ORDERS),
                "--typ",
                "at+jwt",
                &access,
            ]),
            b"",
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{what}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // And by the daemon itself.
        let reply = daemon.introspect(Some(&introspect_auth), &access).await;
        assert_eq!(reply.status, 200, "{what}: {}", reply.text());
        let answer = reply.json();
        assert_eq!(answer["active"], true, "{what}: {answer}");
        assert_eq!(answer["client_id"], client, "{what}: {answer}");
        assert_eq!(answer["iss"], PUBLIC, "{what}: {answer}");
        let authz = daemon
            .authz(Convention::Envoy, "GET", "/orders/42", Some(&access))
            .await;
        let readable = scope.is_some_and(|s| s.contains("orders:read"));
        assert_eq!(
            authz.status,
            if readable { 200 } else { 403 },
            "{what}: {}",
            authz.text()
        );
    }

    // By reference: a random string, its claims in the store, taken by the same endpoints.
    let reply = token(
        &daemon,
        Some(&client_basic("svc-opaque", &opaque_secret)),
        &[CC, ("scope", "orders:read")],
    )
    .await;
    let opaque = issued(&reply, 60, Some("orders:read"), "opaque");
    assert_eq!(opaque.split('.').count(), 1, "not a JWT: {opaque}");
    secrets.extend([opaque_secret, opaque.clone()]);
    let answer = daemon
        .introspect(Some(&introspect_auth), &opaque)
        .await
        .json();
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(answer["client_id"], "svc-opaque", "{answer}");
    assert_eq!(answer["exp"], answer["iat"].as_i64().expect("iat") + 60);
    let authz = daemon
        .authz(Convention::Envoy, "GET", "/orders/42", Some(&opaque))
        .await;
    assert_eq!(authz.status, 200, "{}", authz.text());
    assert_eq!(authz.header("x-auth-subject"), Some("svc-opaque"));
    never_logged(&daemon, &secrets);
}

#[tokio::test]
async fn refusals_are_rfc6749_errors_and_issue_nothing() {
    let issuing = Issuing::new("errors", Some(PUBLIC), "");
    let basic_secret = issuing
        .add("svc-basic", "client_secret_basic", 600, &[])
        .expect("secret");
    let post_secret = issuing
        .add("svc-post", "client_secret_post", 600, &[])
        .expect("secret");
    let no_grant = issuing.clients_ok(&[
        "add",
        "--id",
        "no-grant",
        "--scope",
        "orders:read",
        "--audience",
        ORDERS,
    ])["client_secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    let daemon = issuing.serve();
    let good = client_basic("svc-basic", &basic_secret);
    issued(
        &token(&daemon, Some(&good), &[CC]).await,
        600,
        Some("orders:read orders:write"),
        "the control",
    );

    let wrong = client_basic("svc-basic", "tcs_not-the-secret-at-all");
    refused_basic(
        &token(&daemon, Some(&wrong), &[CC]).await,
        "wrong secret, Basic",
    );
    fn post(secret: &str) -> [(&str, &str); 3] {
        [CC, ("client_id", "svc-post"), ("client_secret", secret)]
    }
    issued(
        &token(&daemon, None, &post(&post_secret)).await,
        600,
        Some("orders:read orders:write"),
        "the post control",
    );
    refused(
        &token(&daemon, None, &post("tcs_not-the-secret-at-all")).await,
        401,
        "invalid_client",
        "wrong secret, post",
    );
    let unknown = client_basic("nobody", &basic_secret);
    refused_basic(
        &token(&daemon, Some(&unknown), &[CC]).await,
        "unknown client, Basic",
    );
    refused(
        &token(
            &daemon,
            None,
            &[CC, ("client_id", "nobody"), ("client_secret", &post_secret)],
        )
        .await,
        401,
        "invalid_client",
        "unknown client, post",
    );
    let post_by_basic = client_basic("svc-post", &post_secret);
    refused_basic(
        &token(&daemon, Some(&post_by_basic), &[CC]).await,
        "a client_secret_post client using Basic",
    );
    refused(
        &token(
            &daemon,
            None,
            &[
                CC,
                ("client_id", "svc-basic"),
                ("client_secret", &basic_secret),
            ],
        )
        .await,
        401,
        "invalid_client",
        "a client_secret_basic client using the body",
    );
    refused(
        &token(&daemon, None, &[CC]).await,
        401,
        "invalid_client",
        "no client authentication",
    );

    let with = |extra: &[(&'static str, &'static str)]| {
        let mut params = vec![CC];
        params.extend_from_slice(extra);
        params
    };
    let cases: [(&str, Reply, u16, &str); 10] = [
        (
            "scope escalation",
            token(
                &daemon,
                Some(&good),
                &with(&[("scope", "orders:read orders:admin")]),
            )
            .await,
            400,
            "invalid_scope",
        ),
        (
            "a resource not registered",
            token(
                &daemon,
                Some(&good),
                &with(&[("resource", ORDERS), ("resource", "https://evil.example/")]),
            )
            .await,
            400,
            "invalid_target",
        ),
        (
            "a resource that is no absolute URI",
            token(&daemon, Some(&good), &with(&[("resource", "orders")])).await,
            400,
            "invalid_target",
        ),
        (
            "an unknown grant type",
            token(&daemon, Some(&good), &[("grant_type", "password")]).await,
            400,
            "unsupported_grant_type",
        ),
        (
            "a client not registered for the grant",
            token(&daemon, Some(&client_basic("no-grant", &no_grant)), &[CC]).await,
            400,
            "unauthorized_client",
        ),
        (
            "no grant type",
            token(&daemon, Some(&good), &[("scope", "orders:read")]).await,
            400,
            "invalid_request",
        ),
        (
            "grant_type twice",
            token(&daemon, Some(&good), &[CC, CC]).await,
            400,
            "invalid_request",
        ),
        (
            "scope twice",
            token(
                &daemon,
                Some(&good),
                &with(&[("scope", "orders:read"), ("scope", "orders:write")]),
            )
            .await,
            400,
            "invalid_request",
        ),
        (
            "Basic and client_secret in the body",
            token(
                &daemon,
                Some(&good),
                &[
                    CC,
                    ("client_id", "svc-basic"),
                    ("client_secret", &basic_secret),
                ],
            )
            .await,
            400,
            "invalid_request",
        ),
        (
            "a JSON body",
            daemon
                .call(
                    "POST",
                    "/token",
                    &[
                        ("content-type", "application/json"),
                        ("authorization", &good),
                    ],
                    r#"{"grant_type":"client_credentials"}"#,
                )
                .await,
            400,
            "invalid_request",
        ),
    ];
    for (what, reply, status, error) in &cases {
        refused(reply, *status, error, what);
        assert_eq!(
            reply.header("www-authenticate"),
            None,
            "{what}: only invalid_client challenges"
        );
    }

    // Over `max_body_bytes` (64 KiB here): refused before it is read.
    let padding = "x".repeat(1_000_000);
    let big = daemon
        .call(
            "POST",
            "/token",
            &[("content-type", FORM), ("authorization", &good)],
            &format!("grant_type=client_credentials&pad={padding}"),
        )
        .await;
    assert_eq!(big.status, 413, "{}", big.text());
    assert!(big.json().get("access_token").is_none());
    let get = daemon
        .call("GET", "/token", &[("authorization", &good)], "")
        .await;
    assert_eq!(get.status, 405, "{}", get.text());
    assert_eq!(get.header("allow"), Some("POST"));

    // Nothing was issued but the two controls.
    let page = daemon.get("/metrics").await.text();
    assert_eq!(
        metric(&page, "tessera_tokens_issued_total"),
        Some(2.0),
        "{page}"
    );
    never_logged(&daemon, &[basic_secret, post_secret, no_grant]);
}

#[tokio::test]
async fn hostile_client_assertions_are_invalid_client() {
    let issuing = Issuing::new("assertions", Some(PUBLIC), "");
    let (key, jwks) = issuing.client_key("svc-jwt");
    issuing.add(
        "svc-jwt",
        "private_key_jwt",
        120,
        &["--jwks", path_str(&jwks)],
    );
    let basic_secret = issuing
        .add("svc-basic", "client_secret_basic", 600, &[])
        .expect("secret");
    let daemon = issuing.serve();
    let scope = Some("orders:read orders:write");
    let mut secrets = vec![basic_secret.clone()];

    // Once only.
    let once = assertion(&key, "svc-jwt", json!({}));
    secrets.push(once.clone());
    let access = issued(
        &token(&daemon, None, &with_assertion(&once, &[])).await,
        120,
        scope,
        "the first use",
    );
    secrets.push(access);
    refused(
        &token(&daemon, None, &with_assertion(&once, &[])).await,
        401,
        "invalid_client",
        "the same assertion again",
    );

    let now = unix_now();
    // The longest life an assertion may have, past the clock leeway.
    let longest = oauth::assertion::MAX_LIFETIME_S as i64;
    let beyond = now + longest + oauth::assertion::LEEWAY_S as i64 + 60;
    let stranger = jose::SigningKey::generate(jose::Algorithm::ES256)
        .expect("ES256 key")
        .with_kid("c1");
    let none = {
        let payload = Claims::new()
            .merge(json!({
                "iss": "svc-jwt", "sub": "svc-jwt", "aud": format!("{PUBLIC}/token"),
                "iat": now, "exp": now + 60, "jti": "alg-none",
            }))
            .to_string();
        format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(payload)
        )
    };
    let tampered = {
        let good = assertion(&key, "svc-jwt", json!({}));
        let (input, signature) = good.rsplit_once('.').expect("JWS");
        let (header, _) = input.split_once('.').expect("JWS");
        let claims = assertion(&key, "svc-basic", json!({}));
        let payload = claims.split('.').nth(1).expect("payload");
        format!("{header}.{payload}.{signature}")
    };
    let hostile = [
        (
            "for another audience",
            assertion(
                &key,
                "svc-jwt",
                json!({"aud": "https://other.example/token"}),
            ),
        ),
        (
            "expired",
            assertion(&key, "svc-jwt", json!({"iat": now - 400, "exp": now - 120})),
        ),
        (
            "exp past the longest lifetime",
            assertion(&key, "svc-jwt", json!({"exp": beyond})),
        ),
        (
            "exp past the longest lifetime, no iat",
            assertion(&key, "svc-jwt", json!({"exp": beyond, "iat": null})),
        ),
        (
            "issued long ago, exp near",
            assertion(&key, "svc-jwt", json!({"iat": now - longest - 60})),
        ),
        (
            "issued an hour ahead",
            assertion(
                &key,
                "svc-jwt",
                json!({"iat": now + 3600, "exp": now + 3660}),
            ),
        ),
        (
            "not before an hour ahead",
            assertion(&key, "svc-jwt", json!({"nbf": now + 3600})),
        ),
        ("no exp", assertion(&key, "svc-jwt", json!({"exp": null}))),
        ("no jti", assertion(&key, "svc-jwt", json!({"jti": null}))),
        ("alg none", none),
        (
            "signed by another key",
            assertion(&stranger, "svc-jwt", json!({})),
        ),
        ("another payload under its signature", tampered),
        (
            "sub another client",
            assertion(&key, "svc-jwt", json!({"sub": "svc-basic"})),
        ),
        (
            "for a client that has a secret",
            assertion(&key, "svc-basic", json!({})),
        ),
        (
            "for an unknown client",
            assertion(&key, "nobody", json!({})),
        ),
        ("not a JWT", "not-a-jwt-at-all-0123456789".to_owned()),
    ];
    for (what, hostile) in &hostile {
        secrets.push(hostile.clone());
        refused(
            &token(&daemon, None, &with_assertion(hostile, &[])).await,
            401,
            "invalid_client",
            what,
        );
    }
    // The client_id beside it must be the assertion's; the type must be the JWT bearer one.
    let fresh = assertion(&key, "svc-jwt", json!({}));
    secrets.push(fresh.clone());
    refused(
        &token(
            &daemon,
            None,
            &with_assertion(&fresh, &[("client_id", "svc-basic")]),
        )
        .await,
        401,
        "invalid_client",
        "client_id another client",
    );
    refused(
        &token(
            &daemon,
            None,
            &[
                CC,
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:saml2-bearer",
                ),
                ("client_assertion", &fresh),
            ],
        )
        .await,
        401,
        "invalid_client",
        "another assertion type",
    );
    // Refusals before verification spent nothing: the same assertion still works once.
    let access = issued(
        &token(&daemon, None, &with_assertion(&fresh, &[])).await,
        120,
        scope,
        "the assertion refused for what came with it",
    );
    secrets.push(access);
    let page = daemon.get("/metrics").await.text();
    assert_eq!(
        metric(&page, "tessera_tokens_issued_total"),
        Some(2.0),
        "{page}"
    );
    never_logged(&daemon, &secrets);
}

#[tokio::test]
async fn store_clients_follow_rotation_and_removal_without_a_restart() {
    let issuing = Issuing::new("follow", Some(PUBLIC), "");
    let old = issuing
        .add("svc-basic", "client_secret_basic", 600, &[])
        .expect("secret");
    let daemon = issuing.serve();
    let scope = Some("orders:read orders:write");
    let status = |reply: Reply| reply.status;
    let old_auth = client_basic("svc-basic", &old);
    let mut secrets = vec![old.clone()];
    secrets.push(issued(
        &token(&daemon, Some(&old_auth), &[CC]).await,
        600,
        scope,
        "before the rotation",
    ));

    // A client added while the daemon runs.
    let late = issuing
        .add("svc-late", "client_secret_basic", 60, &[])
        .expect("secret");
    secrets.push(late.clone());
    let late_auth = client_basic("svc-late", &late);
    let start = Instant::now();
    while status(token(&daemon, Some(&late_auth), &[CC]).await) != 200 {
        assert!(start.elapsed() < FOLLOW, "the added client is not taken");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let rotated = issuing.clients_ok(&["rotate-secret", "--id", "svc-basic"]);
    assert_eq!(rotated["client_id"], "svc-basic", "{rotated}");
    let new = rotated["client_secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    assert!(new.starts_with("tcs_") && new != old, "{rotated}");
    secrets.push(new.clone());
    let new_auth = client_basic("svc-basic", &new);
    let start = Instant::now();
    loop {
        let (o, n) = (
            status(token(&daemon, Some(&old_auth), &[CC]).await),
            status(token(&daemon, Some(&new_auth), &[CC]).await),
        );
        if (o, n) == (401, 200) {
            break;
        }
        // Before the reload, or the reload fell between the two requests.
        assert!(
            matches!((o, n), (200, 401) | (200, 200)),
            "during the rotation: old {o}, new {n}"
        );
        assert!(
            start.elapsed() < FOLLOW,
            "the rotation is not taken: old {o}, new {n}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("rotation taken after {:?}", start.elapsed());
    refused_basic(
        &token(&daemon, Some(&old_auth), &[CC]).await,
        "the old secret after the rotation",
    );
    secrets.push(issued(
        &token(&daemon, Some(&new_auth), &[CC]).await,
        600,
        scope,
        "the new secret",
    ));
    let shown = issuing.clients_ok(&["show", "--id", "svc-basic"]);
    assert_eq!(shown["has_secret"], true, "{shown}");
    assert!(!shown.to_string().contains(&new), "{shown}");

    let removed = issuing.clients_ok(&["remove", "--id", "svc-basic"]);
    assert_eq!(removed, json!({"client_id": "svc-basic", "removed": true}));
    let start = Instant::now();
    loop {
        let reply = token(&daemon, Some(&new_auth), &[CC]).await;
        if reply.status == 401 {
            refused_basic(&reply, "a removed client");
            break;
        }
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert!(start.elapsed() < FOLLOW, "the removal is not taken");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("removal taken after {:?}", start.elapsed());
    assert_eq!(
        issuing
            .clients(&["show", "--id", "svc-basic"])
            .status
            .code(),
        Some(1)
    );
    // The other client is untouched.
    issued(
        &token(&daemon, Some(&late_auth), &[CC]).await,
        60,
        scope,
        "the other client",
    );
    let metrics = daemon.get("/metrics").await.text();
    assert!(
        metrics.contains("tessera_clients{source=\"store\"} 1\n")
            && metrics.contains("tessera_clients_left_out 0\n"),
        "{metrics}"
    );
    never_logged(&daemon, &secrets);
}

#[tokio::test]
async fn discovery_lists_the_token_endpoint_and_its_methods() {
    for public_url in [Some(PUBLIC), None] {
        let issuing = Issuing::new("discovery", public_url, "");
        let secret = issuing
            .add("svc-basic", "client_secret_basic", 600, &[])
            .expect("secret");
        let daemon = issuing.serve();
        let url = public_url.map_or(daemon.url.clone(), str::to_owned);
        let reply = daemon.get("/.well-known/oauth-authorization-server").await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let meta = reply.json();
        assert_eq!(meta["issuer"], url.as_str(), "{meta}");
        assert_eq!(meta["token_endpoint"], format!("{url}/token"), "{meta}");
        assert_eq!(meta["grant_types_supported"], json!(["client_credentials"]));
        assert_eq!(
            meta["token_endpoint_auth_methods_supported"],
            json!([
                "client_secret_basic",
                "client_secret_post",
                "private_key_jwt"
            ])
        );
        assert_eq!(
            meta["revocation_endpoint"],
            format!("{url}/revoke"),
            "{meta}"
        );
        assert_eq!(
            meta["jwks_uri"],
            format!("{url}/.well-known/jwks.json"),
            "{meta}"
        );
        let algs = meta["token_endpoint_auth_signing_alg_values_supported"]
            .as_array()
            .unwrap_or_else(|| panic!("{meta}"));
        assert!(algs.contains(&json!("ES256")), "{meta}");
        assert!(!algs.contains(&json!("none")), "{meta}");
        assert!(!algs
            .iter()
            .any(|a| a.as_str().is_some_and(|a| a.starts_with("HS"))));
        // The tokens name the same issuer.
        let access = issued(
            &token(&daemon, Some(&client_basic("svc-basic", &secret)), &[CC]).await,
            600,
            Some("orders:read orders:write"),
            "the token",
        );
        assert_eq!(parts(&access).1["iss"], url.as_str());
    }
}

/// RFC 6749 section 3.2: "Parameters sent without a value MUST be treated as if they were
/// omitted from the request."
#[tokio::test]
async fn parameters_without_a_value_are_treated_as_omitted() {
    let issuing = Issuing::new("empty", Some(PUBLIC), "");
    let secret = issuing
        .add("svc-basic", "client_secret_basic", 600, &[])
        .expect("secret");
    let daemon = issuing.serve();
    let auth = client_basic("svc-basic", &secret);
    for empty in ["scope", "resource", "client_id", "client_secret"] {
        issued(
            &token(&daemon, Some(&auth), &[CC, (empty, "")]).await,
            600,
            Some("orders:read orders:write"),
            &format!("{empty}="),
        );
    }
}

/// `POST /v1/sign`: a `sign` client's claims signed within its policy, with `iat`, `exp`,
/// `jti` and the header set by tessera; each broken rule named; other callers refused.
#[tokio::test]
async fn signing_api_signs_within_the_policy_and_names_the_rule_it_breaks() {
    let issuing = Issuing::new("sign", Some(PUBLIC), "");
    let partner = issuing.clients_ok(&[
        "add",
        "--id",
        "partner",
        "--permission",
        "sign",
        "--sign-issuer",
        "https://partner.example",
        "--sign-audience",
        ORDERS,
        "--sign-max-lifetime",
        "600",
        "--sign-forbid",
        "roles",
    ]);
    let secret = partner["client_secret"]
        .as_str()
        .expect("a secret")
        .to_owned();
    let other = issuing
        .add("svc", "client_secret_basic", 60, &[])
        .expect("secret");
    let daemon = issuing.serve();
    let sign = |auth: String, body: String| {
        let daemon = &daemon;
        async move {
            daemon
                .call(
                    "POST",
                    "/v1/sign",
                    &[
                        ("authorization", &auth),
                        ("content-type", "application/json"),
                    ],
                    &body,
                )
                .await
        }
    };
    let auth = client_basic("partner", &secret);
    let claims = |extra: &str| {
        format!(
            r#"{{"claims":{{"iss":"https://partner.example","aud":"{ORDERS}","sub":"u1"{extra}}},"lifetime_s":60}}"#
        )
    };
    let before = unix_now();
    let reply = sign(auth.clone(), claims("")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let token = reply.json()["token"].as_str().expect("token").to_owned();
    let (header, payload) = parts(&token);
    assert_eq!(header["typ"], "JWT", "{header}");
    assert_eq!(header["alg"], "ES256", "{header}");
    let jwks: Value = daemon.get("/.well-known/jwks.json").await.json();
    assert_eq!(jwks["keys"][0]["kid"], header["kid"], "{jwks}");
    assert_eq!(payload["iss"], "https://partner.example");
    assert_eq!(payload["sub"], "u1");
    let iat = payload["iat"].as_i64().expect("iat");
    assert!((before..=unix_now()).contains(&iat), "{payload}");
    assert_eq!(payload["exp"].as_i64(), Some(iat + 60), "{payload}");
    assert_eq!(payload["jti"].as_str().map(str::len), Some(22), "{payload}");
    let file = issuing.dir.write("sign-jwks.json", &jwks.to_string());
    let out = run(
        tessera(&[
            "verify",
            "--jwks",
            path_str(&file),
            "--iss",
            "https://partner.example",
            "--aud",
            ORDERS,
            "--typ",
            "JWT",
            &token,
        ]),
        b"",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    for (body, rule) in [
        (
            format!(r#"{{"claims":{{"iss":"https://evil.example","aud":"{ORDERS}"}}}}"#),
            "issuer_not_allowed",
        ),
        (
            r#"{"claims":{"iss":"https://partner.example","aud":"https://api.example/billing"}}"#
                .to_owned(),
            "audience_not_allowed",
        ),
        (
            r#"{"claims":{"iss":"https://partner.example"}}"#.to_owned(),
            "audience_required",
        ),
        (claims(r#","roles":["admin"]"#), "forbidden_claim"),
        (claims(r#","exp":99999999999"#), "reserved_claim"),
        (claims(r#","sub":"twice""#), "malformed_claims"),
        (
            format!(
                r#"{{"claims":{{"iss":"https://partner.example","aud":"{ORDERS}"}},"lifetime_s":601}}"#
            ),
            "lifetime_exceeded",
        ),
    ] {
        let reply = sign(auth.clone(), body.clone()).await;
        assert_eq!(reply.status, 403, "{body}: {}", reply.text());
        let answer = reply.json();
        assert_eq!(answer["error"], "policy_refused", "{body}: {answer}");
        assert_eq!(answer["rule"], rule, "{body}: {answer}");
    }
    // Not JSON of the request's shape; a client without the permission; no credentials.
    let reply = sign(auth.clone(), r#"{"claims":{},"extra":1}"#.into()).await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    let reply = sign(client_basic("svc", &other), claims("")).await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_eq!(reply.json()["error"], "unauthorized_client");
    let reply = sign(client_basic("partner", "tcs_wrong"), claims("")).await;
    assert_eq!(reply.status, 401, "{}", reply.text());
    let logs = daemon.stderr();
    assert!(logs.contains("token signed"), "{logs}");
    assert!(!logs.contains(&token) && !logs.contains(&secret), "{logs}");
}

/// private_key_jwt with a `jwks_uri`: fetched when the client first authenticates, and fetched
/// again when an assertion names a key the set lacks (the client rotated).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_key_jwt_follows_the_clients_jwks_uri() {
    let issuing = Issuing::new("jwks-uri", Some(PUBLIC), "");
    let first = jose::SigningKey::generate(jose::Algorithm::ES256)
        .expect("ES256 key")
        .with_kid("first");
    let (url, document) = serve_jwks(&first.jwks()).await;
    issuing.add("keyed", "private_key_jwt", 60, &["--jwks-uri", &url]);
    let daemon = issuing.serve();
    let grant = |key: &jose::SigningKey| {
        let assertion = assertion(key, "keyed", json!({}));
        let daemon = &daemon;
        async move { token(daemon, None, &with_assertion(&assertion, &[])).await }
    };
    let reply = grant(&first).await;
    issued(
        &reply,
        60,
        Some("orders:read orders:write"),
        "the first key",
    );
    // The client publishes a new key and signs with it: the daemon refetches and accepts it.
    let second = jose::SigningKey::generate(jose::Algorithm::ES256)
        .expect("ES256 key")
        .with_kid("second");
    *document.lock().expect("document") = second.jwks();
    let reply = grant(&second).await;
    issued(
        &reply,
        60,
        Some("orders:read orders:write"),
        "the rotated key",
    );
    // A key the client never published is refused.
    let stranger = jose::SigningKey::generate(jose::Algorithm::ES256)
        .expect("ES256 key")
        .with_kid("second");
    refused(
        &grant(&stranger).await,
        401,
        "invalid_client",
        "an unpublished key",
    );
}

/// `POST /token` with a form body, client_secret_basic, and these `DPoP` headers.
async fn token_with_proofs(
    daemon: &Daemon,
    auth: &str,
    params: &[(&str, &str)],
    proofs: &[&str],
) -> Reply {
    let mut headers = vec![("content-type", FORM), ("authorization", auth)];
    for proof in proofs {
        headers.push(("dpop", proof));
    }
    daemon.call("POST", "/token", &headers, &form(params)).await
}

#[tokio::test]
async fn a_dpop_proof_at_the_token_endpoint_binds_the_token_to_its_key() {
    const API: &str = "https://api.example";
    let issuing = Issuing::new(
        "dpop",
        Some(PUBLIC),
        &format!("[authz.dpop]\norigin = \"{API}\"\nalgorithms = [\"ES256\", \"EdDSA\"]\n"),
    );
    let secret = issuing
        .add("svc", "client_secret_basic", 600, &[])
        .expect("secret");
    let bound_secret = issuing
        .add("svc-dpop", "client_secret_basic", 600, &["--dpop-bound"])
        .expect("secret");
    let opaque_secret = issuing
        .add(
            "svc-opaque",
            "client_secret_basic",
            600,
            &["--format", "opaque"],
        )
        .expect("secret");
    let introspector =
        issuing.clients_ok(&["add", "--id", "introspector", "--permission", "introspect"])
            ["client_secret"]
            .as_str()
            .expect("secret")
            .to_owned();
    let introspect_auth = client_basic("introspector", &introspector);
    let daemon = issuing.serve();
    let auth = client_basic("svc", &secret);
    let key = jose::SigningKey::generate(jose::Algorithm::ES256).expect("key");
    let jkt = key.public().expect("public").thumbprint();
    let endpoint = format!("{PUBLIC}/token");
    let at_token = |claims: Value| super::dpop::proof(&key, "POST", &endpoint, "", claims);
    let no_ath = json!({"ath": null});

    // RFC 9449 section 5: a DPoP token, bound to the proof's key.
    let good = at_token(no_ath.clone());
    let reply = token_with_proofs(&daemon, &auth, &[CC], &[&good]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["token_type"], "DPoP", "{body}");
    let access = body["access_token"].as_str().expect("token").to_owned();
    assert_eq!(parts(&access).1["cnf"], json!({"jkt": jkt}));

    // It works as a DPoP token, with a proof by the key, and not as a bearer token.
    let htu = format!("{API}/orders/1");
    let use_proof = super::dpop::proof(&key, "GET", &htu, &access, json!({}));
    let authz = |authorization: String, proofs: Vec<String>| {
        let daemon = &daemon;
        async move {
            let mut headers = vec![
                ("x-original-method", "GET".to_owned()),
                ("x-original-uri", "/orders/1".to_owned()),
                ("authorization", authorization),
            ];
            headers.extend(proofs.into_iter().map(|p| ("dpop", p)));
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            daemon.call("GET", "/v1/authz", &headers, "").await
        }
    };
    let reply = authz(format!("DPoP {access}"), vec![use_proof]).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("x-auth-subject"), Some("svc"));
    let reply = authz(format!("Bearer {access}"), vec![]).await;
    assert_eq!(reply.status, 401, "{reply:?}");
    // Introspection says how it is bound (RFC 9449 section 6.2).
    let answer = daemon
        .introspect(Some(&introspect_auth), &access)
        .await
        .json();
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(answer["token_type"], "DPoP", "{answer}");
    assert_eq!(answer["cnf"], json!({"jkt": jkt}), "{answer}");

    // Refused, and nothing issued: the proof again, a proof for another endpoint or method, an
    // old one, two proofs, no JWS at all.
    let mut refusals = vec![
        ("replayed", vec![good.clone()]),
        (
            "another URI",
            vec![super::dpop::proof(
                &key,
                "POST",
                &format!("{PUBLIC}/revoke"),
                "",
                no_ath.clone(),
            )],
        ),
        (
            "another method",
            vec![super::dpop::proof(
                &key,
                "GET",
                &endpoint,
                "",
                no_ath.clone(),
            )],
        ),
        (
            "an hour old",
            vec![at_token(json!({"ath": null, "iat": unix_now() - 3600}))],
        ),
        (
            "two proofs",
            vec![at_token(no_ath.clone()), at_token(no_ath.clone())],
        ),
    ];
    refusals.push(("not a JWS", vec!["not.a.proof".to_owned()]));
    for (what, proofs) in refusals {
        let proofs: Vec<&str> = proofs.iter().map(String::as_str).collect();
        let reply = token_with_proofs(&daemon, &auth, &[CC], &proofs).await;
        refused(&reply, 400, "invalid_dpop_proof", what);
    }
    // A client registered for DPoP-bound tokens must send a proof; with one it gets them.
    let bound_auth = client_basic("svc-dpop", &bound_secret);
    let reply = token_with_proofs(&daemon, &bound_auth, &[CC], &[]).await;
    refused(
        &reply,
        400,
        "invalid_dpop_proof",
        "no proof from a DPoP-bound client",
    );
    let reply = token_with_proofs(&daemon, &bound_auth, &[CC], &[&at_token(no_ath.clone())]).await;
    assert_eq!(reply.json()["token_type"], "DPoP", "{}", reply.text());
    // A proof from an unauthenticated caller is checked, and then the caller refused.
    let reply = token_with_proofs(
        &daemon,
        &client_basic("svc", "wrong"),
        &[CC],
        &[&at_token(no_ath.clone())],
    )
    .await;
    refused_basic(&reply, "a wrong secret");
    // Without a proof, the same client still gets a bearer token.
    let plain = issued(
        &token(&daemon, Some(&auth), &[CC]).await,
        600,
        Some("orders:read orders:write"),
        "bearer",
    );
    assert!(parts(&plain).1.get("cnf").is_none());
    let answer = daemon
        .introspect(Some(&introspect_auth), &plain)
        .await
        .json();
    assert_eq!(answer["token_type"], "Bearer", "{answer}");

    // An opaque token carries the same binding, through its phantom JWT.
    let reply = token_with_proofs(
        &daemon,
        &client_basic("svc-opaque", &opaque_secret),
        &[CC],
        &[&at_token(no_ath.clone())],
    )
    .await;
    let body = reply.json();
    assert_eq!(body["token_type"], "DPoP", "{body}");
    let opaque = body["access_token"].as_str().expect("token").to_owned();
    let answer = daemon
        .introspect(Some(&introspect_auth), &opaque)
        .await
        .json();
    assert_eq!(
        (&answer["token_type"], &answer["cnf"]),
        (&json!("DPoP"), &json!({"jkt": jkt})),
        "{answer}"
    );
    let reply = authz(format!("Bearer {opaque}"), vec![]).await;
    assert_eq!(
        reply.status, 401,
        "an opaque DPoP token as Bearer: {reply:?}"
    );
    let p = super::dpop::proof(&key, "GET", &htu, &opaque, json!({}));
    let reply = authz(format!("DPoP {opaque}"), vec![p]).await;
    assert_eq!(
        reply.status, 200,
        "an opaque DPoP token with its proof: {reply:?}"
    );

    // Discovery names the proof algorithms (RFC 9449 section 5.1).
    let meta = daemon
        .get("/.well-known/oauth-authorization-server")
        .await
        .json();
    assert_eq!(
        meta["dpop_signing_alg_values_supported"],
        json!(["ES256", "EdDSA"]),
        "{meta}"
    );
    never_logged(&daemon, &[secret, access, good]);
}

#[tokio::test]
async fn with_nonces_the_token_endpoint_asks_for_one_and_takes_it() {
    let issuing = Issuing::new("dpop-nonce", Some(PUBLIC), "[authz.dpop]\nnonce = true\n");
    let secret = issuing
        .add("svc", "client_secret_basic", 600, &[])
        .expect("secret");
    let daemon = issuing.serve();
    let auth = client_basic("svc", &secret);
    let key = jose::SigningKey::generate(jose::Algorithm::ES256).expect("key");
    let endpoint = format!("{PUBLIC}/token");
    let bare = super::dpop::proof(&key, "POST", &endpoint, "", json!({"ath": null}));
    // RFC 9449 section 8: 400 use_dpop_nonce, with the nonce to use.
    let reply = token_with_proofs(&daemon, &auth, &[CC], &[&bare]).await;
    refused(&reply, 400, "use_dpop_nonce", "no nonce");
    let nonce = reply.header("dpop-nonce").expect("DPoP-Nonce").to_owned();
    let with = super::dpop::proof(
        &key,
        "POST",
        &endpoint,
        "",
        json!({"ath": null, "nonce": nonce}),
    );
    let reply = token_with_proofs(&daemon, &auth, &[CC], &[&with]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["token_type"], "DPoP");
}
