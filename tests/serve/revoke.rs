//! Revocation at the edge with the embedded store: RFC 7009 `/revoke`, the admin
//! `/v1/revocations`, `tessera revoke` against the store file of a running daemon, and a
//! restart that keeps every record.

use super::*;

const OPS: &str = "ops";

/// `[[clients]]` for `ops` (same secret as the gateway) with the revoke and admin
/// permissions, and `store` lines under `[store]`.
fn ops_and_store(hash: &str, store: &str) -> String {
    format!(
        r#"[[clients]]
id = "{OPS}"
secret_hash = "{hash}"
permissions = ["revoke", "admin"]

[store]
{store}
"#
    )
}

impl Setup {
    fn start_with_ops(&self, store: &str) -> Daemon {
        self.start("", "workers = 1", &ops_and_store(&self.hash, store))
    }
}

async fn revoke(daemon: &Daemon, auth: &str, body: &str) -> Reply {
    daemon
        .call(
            "POST",
            "/revoke",
            &[
                ("authorization", auth),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            body,
        )
        .await
}

async fn admin(daemon: &Daemon, method: &str, body: &Value) -> Reply {
    let auth = basic(OPS, SECRET);
    let body = if method == "GET" {
        String::new()
    } else {
        body.to_string()
    };
    daemon
        .call(
            method,
            "/v1/revocations",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            &body,
        )
        .await
}

/// Whether every endpoint refuses `token` (and `/introspect` says inactive).
async fn refused_everywhere(daemon: &Daemon, token: &str) -> bool {
    let gateway = basic(CLIENT, SECRET);
    let introspected = daemon.introspect(Some(&gateway), token).await.json();
    let authz = daemon
        .authz(Convention::Forwarded, "GET", "/orders", Some(token))
        .await;
    let verified = daemon
        .verify(Some(&gateway), &json!({ "tokens": [token] }))
        .await
        .json();
    introspected == json!({"active": false})
        && authz.status == 401
        && verified["results"][0] == json!({"active": false, "error": "revoked"})
}

fn metric(daemon_metrics: &str, name: &str) -> f64 {
    daemon_metrics
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
}

#[tokio::test]
async fn rfc7009_revoke_takes_a_token_back_on_every_endpoint() {
    let setup = Setup::new("revoke");
    let daemon = setup.start_with_ops("");
    let token = setup.issuer.sign(claims(json!({"jti": "r-1"})));
    let other = setup.issuer.sign(claims(json!({"jti": "r-2"})));
    let gateway = basic(CLIENT, SECRET);
    assert_eq!(
        daemon.introspect(Some(&gateway), &token).await.json()["active"],
        true
    );

    // Authentication first, then the permission; neither says anything about the token.
    let wrong = basic(OPS, "not-the-secret");
    let refused = revoke(&daemon, &wrong, &format!("token={token}")).await;
    assert_eq!(refused.status, 401, "{}", refused.text());
    assert_eq!(refused.json()["error"], "invalid_client");
    let unpermitted = revoke(&daemon, &gateway, &format!("token={token}")).await;
    assert_eq!(unpermitted.status, 400, "{}", unpermitted.text());
    assert_eq!(unpermitted.json()["error"], "unauthorized_client");
    let missing = revoke(&daemon, &basic(OPS, SECRET), "token_type_hint=access_token").await;
    assert_eq!(missing.status, 400);
    assert_eq!(missing.json()["error"], "invalid_request");
    assert_eq!(
        daemon.introspect(Some(&gateway), &token).await.json()["active"],
        true
    );

    let ops = basic(OPS, SECRET);
    let done = revoke(
        &daemon,
        &ops,
        &format!("token={token}&token_type_hint=access_token"),
    )
    .await;
    assert_eq!(done.status, 200, "{}", done.text());
    assert_eq!(done.header("cache-control"), Some("no-store"));
    assert!(
        refused_everywhere(&daemon, &token).await,
        "the cached verdict outlived the revocation"
    );
    // The other token of the same issuer and subject is untouched.
    assert_eq!(
        daemon.introspect(Some(&gateway), &other).await.json()["active"],
        true
    );
    // Revoked again, unknown, garbage: 200 all the same (section 2.2).
    for body in [
        format!("token={token}"),
        format!("token={}", es256("stranger").sign(claims(json!({})))),
        "token=not-a-token".to_owned(),
    ] {
        assert_eq!(revoke(&daemon, &ops, &body).await.status, 200, "{body}");
    }
    // A token without jti is revoked by its hash.
    let anonymous = setup.issuer.sign(claims(json!({"jti": null})));
    assert_eq!(
        daemon.introspect(Some(&gateway), &anonymous).await.json()["active"],
        true
    );
    assert_eq!(
        revoke(&daemon, &ops, &format!("token={anonymous}"))
            .await
            .status,
        200
    );
    assert!(refused_everywhere(&daemon, &anonymous).await);

    let metrics = daemon.get("/metrics").await.text();
    assert_eq!(metric(&metrics, "tessera_revocations"), 2.0);
    assert_eq!(metric(&metrics, "tessera_revocations_last_seq"), 2.0);
    assert!(metric(&metrics, "tessera_revoked_total") >= 6.0);
    assert!(metrics.contains("tessera_http_requests_total{endpoint=\"revoke\",status=\"200\"}"));
}

#[tokio::test]
async fn admin_revokes_by_subject_and_client_and_lists_the_records() {
    let setup = Setup::new("revocations");
    let daemon = setup.start_with_ops("");
    let now = unix_now();
    let alice = setup
        .issuer
        .sign(claims(json!({"jti": "a-1", "iat": now - 10})));
    let bob = setup.issuer.sign(claims(
        json!({"sub": "bob", "jti": "b-1", "iat": now - 10, "client_id": "cli"}),
    ));
    let gateway = basic(CLIENT, SECRET);
    for t in [&alice, &bob] {
        assert_eq!(
            daemon.introspect(Some(&gateway), t).await.json()["active"],
            true
        );
    }

    let made = admin(
        &daemon,
        "POST",
        &json!({"sub": "alice", "iss": ISS, "before": now}),
    )
    .await;
    assert_eq!(made.status, 201, "{}", made.text());
    assert_eq!(made.json()["kind"], "subject");
    assert!(refused_everywhere(&daemon, &alice).await);
    assert_eq!(
        daemon.introspect(Some(&gateway), &bob).await.json()["active"],
        true
    );
    // Alice's tokens issued after the record are accepted again.
    let fresh = setup
        .issuer
        .sign(claims(json!({"jti": "a-2", "iat": now + 1})));
    assert_eq!(
        daemon.introspect(Some(&gateway), &fresh).await.json()["active"],
        true
    );

    let made = admin(&daemon, "POST", &json!({"client_id": "cli"})).await;
    assert_eq!(made.status, 201, "{}", made.text());
    assert!(refused_everywhere(&daemon, &bob).await);

    for bad in [
        json!({}),
        json!({"sub": "alice", "client_id": "cli"}),
        json!({"jti": "x", "iss": ISS}),
        json!({"sub": "alice"}),
        json!({"client_id": "cli", "iss": ISS}),
        json!({"token_sha256": "00", "exp": now}),
        json!({"jti": "x", "iss": ISS, "exp": now, "extra": 1}),
    ] {
        let reply = admin(&daemon, "POST", &bad).await;
        assert_eq!(reply.status, 400, "{bad}: {}", reply.text());
    }
    // The gateway may introspect, not administer.
    let reply = daemon
        .call("GET", "/v1/revocations", &[("authorization", &gateway)], "")
        .await;
    assert_eq!(reply.status, 400);

    let list = admin(&daemon, "GET", &json!(null)).await;
    assert_eq!(list.status, 200, "{}", list.text());
    let list = list.json();
    assert_eq!(list["last_applied_seq"], 2);
    let records = list["revocations"].as_array().expect("records");
    assert_eq!(records.len(), 2, "{list}");
    assert!(records
        .iter()
        .any(|r| r["kind"] == "subject" && r["sub"] == "alice" && r["before"] == now));
    assert!(records
        .iter()
        .any(|r| r["kind"] == "client" && r["client_id"] == "cli"));
}

#[tokio::test]
async fn the_cli_revokes_in_the_store_of_a_running_daemon_and_a_restart_keeps_it() {
    let setup = Setup::new("revoke-cli");
    let store = "path = \"store.sqlite3\"\npoll_ms = 100\nmax_lag_ms = 5000";
    let daemon = setup.start_with_ops(store);
    let token = setup.issuer.sign(claims(json!({"jti": "c-1"})));
    let loose = setup.issuer.sign(claims(json!({"jti": null})));
    let gateway = basic(CLIENT, SECRET);
    for t in [&token, &loose] {
        assert_eq!(
            daemon.introspect(Some(&gateway), t).await.json()["active"],
            true
        );
    }
    let config = setup.dir.join("tessera.toml");
    let exp = (unix_now() + 3600).to_string();
    let out = run(
        tessera(&[
            "revoke",
            "--config",
            path_str(&config),
            "--jti",
            "c-1",
            "--iss",
            ISS,
            "--exp",
            &exp,
        ]),
        b"",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"{"seq":1,"kind":"jti"}"#
    );
    // The token on stdin, not on the command line; its exp read from its payload.
    let out = run(
        tessera(&["revoke", "--config", path_str(&config), "--token", "-"]),
        format!("{loose}\n").as_bytes(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Another process wrote: the daemon sees it by polling.
    let start = Instant::now();
    while !(refused_everywhere(&daemon, &token).await && refused_everywhere(&daemon, &loose).await)
    {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "not applied within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("poll propagation (poll_ms = 100): {:?}", start.elapsed());
    drop(daemon);

    let again = setup.start_with_ops(store);
    assert!(
        refused_everywhere(&again, &token).await,
        "a restart forgot the record"
    );
    assert!(refused_everywhere(&again, &loose).await);
    let metrics = again.get("/metrics").await.text();
    assert_eq!(metric(&metrics, "tessera_revocations_last_seq"), 2.0);

    // Usage errors exit 2 and say what to do.
    for args in [
        vec!["revoke", "--config", path_str(&config)],
        vec![
            "revoke",
            "--config",
            path_str(&config),
            "--jti",
            "x",
            "--iss",
            ISS,
        ],
        vec![
            "revoke",
            "--config",
            path_str(&config),
            "--client",
            "c",
            "--exp",
            "5",
        ],
    ] {
        let out = run(tessera(&args), b"");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}
