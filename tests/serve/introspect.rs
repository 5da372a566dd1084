//! Introspection (RFC 7662) and its signed answers (RFC 9701), development mode, the HSM keys the daemon signs with.

use super::*;

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
        .introspect(Some(&auth), &setup.issuer.sign(Value::Object(azp)))
        .await
        .json();
    assert_eq!(answer["client_id"], "mobile");
    assert_eq!(answer["aud"], json!(["api://orders", "api://billing"]));

    let stranger = es256("k1");
    let outsider = es256("other");
    let inactive = [
        (
            "expired",
            setup.issuer.sign(claims(json!({"exp": now - 3600}))),
        ),
        (
            "not yet valid",
            setup.issuer.sign(claims(json!({"nbf": now + 3600}))),
        ),
        ("untrusted key, trusted kid", stranger.sign(&good_claims)),
        ("untrusted key and kid", outsider.sign(&good_claims)),
        (
            "trusted key, another issuer",
            setup
                .issuer
                .sign(claims(json!({"iss": "https://evil.example"}))),
        ),
        (
            "tampered",
            tampered(&good, claims(json!({"sub": "mallory"}))),
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
            "revocation_endpoint": format!("{url}/revoke"),
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic"],
            "jwks_uri": format!("{url}/.well-known/jwks.json"),
            "token_endpoint": format!("{url}/token"),
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported":
                ["client_secret_basic", "client_secret_post", "private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": [
                "ES256", "ES384", "ES512", "EdDSA", "PS256", "PS384", "PS512",
                "RS256", "RS384", "RS512"
            ],
            "response_types_supported": [],
            "dpop_signing_alg_values_supported": [
                "ES256", "ES384", "ES512", "EdDSA", "PS256", "PS384", "PS512",
                "RS256", "RS384", "RS512"
            ],
            "introspection_signing_alg_values_supported": ["ES256"],
        })
    );

    let claims = format!(r#"{{"iss":"{url}","sub":"alice","scope":"read"}}"#);
    let access = token.ok(&[
        "token", "sign", "--alg", "ES256", "--typ", "at+jwt", "--claims", &claims,
    ]);
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
    let access = token.ok(&[
        "token", "sign", "--alg", "ES256", "--typ", "at+jwt", "--claims", "{}",
    ]);
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
    let access = setup.issuer.sign(claims(json!({})));
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
        .sign_typed("application/token-introspection+jwt", claims(json!({})));
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
