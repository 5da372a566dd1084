//! Configuration: the file, quick mode, per-issuer policy, `config check`.

use super::*;

#[tokio::test]
async fn quick_mode_trusts_one_issuer_and_has_no_callers() {
    let dir = Scratch::new("quick");
    let issuer = es256("q1");
    let jwks = dir.write("jwks.json", issuer.jwks());
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
    let good = format!("Bearer {}", issuer.sign(claims(json!({}))));
    let reply = daemon
        .call("GET", "/v1/authz/orders", &[("authorization", &good)], "")
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let other = format!(
        "Bearer {}",
        issuer.sign(claims(json!({"aud": "api://billing"})))
    );
    let reply = daemon
        .call("GET", "/v1/authz/orders", &[("authorization", &other)], "")
        .await;
    assert_bearer(
        &reply,
        401,
        "Bearer realm=\"tessera\", error=\"invalid_token\"",
    );
    let token = issuer.sign(claims(json!({})));
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
    let issuer = es256("q1");
    let jwks = dir.write("jwks.json", issuer.jwks());
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
        (issuer.sign(claims(json!({}))), 200),
        (issuer.sign_typed("JWT", claims(json!({}))), 401),
        (issuer.sign(claims(json!({"exp": now + 3600}))), 401),
        (
            issuer.sign(claims(json!({"iat": null, "exp": now + 3600}))),
            401,
        ),
        (issuer.sign(claims(json!({"iat": null}))), 200),
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
        (issuer.sign(claims(json!({}))), true),
        (issuer.sign_typed("JWT", claims(json!({}))), false),
        (issuer.sign(claims(json!({"jti": null}))), false),
        (issuer.sign(claims(json!({"sub": null}))), false),
        (issuer.sign(claims(json!({"exp": now + 3600}))), false),
        (
            issuer.sign(claims(json!({"iat": null, "exp": now + 3600}))),
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
