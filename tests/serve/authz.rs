//! Forward-auth (/v1/authz): gateway header conventions, route rules, scopes, identity headers.

use super::*;

#[tokio::test]
async fn forward_auth_applies_route_rules_under_every_header_convention() {
    let setup = Setup::new("authz");
    let daemon = setup.start("", "workers = 2", ROUTES);
    let reader_claims = claims(json!({}));
    let reader = setup.issuer.sign(&reader_claims);
    let writer = setup.issuer.sign(claims(json!({
        "scope": null,
        "scp": ["orders:read", "orders:write"],
        "sub": "bob",
    })));
    let wrong_audience = setup.issuer.sign(claims(json!({
        "scope": "orders:read orders:write",
        "aud": "api://billing",
    })));
    let admin = setup.issuer.sign(claims(json!({"scope": "orders:admin"})));
    let expired = setup.issuer.sign(claims(json!({"exp": unix_now() - 3600})));
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
    let reader = setup.issuer.sign(claims(json!({})));
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

/// With `original_from` naming the gateway, only its header family counts: a client's own
/// headers of another family are ignored, and a request without the gateway's pair (both
/// method and URI) did not come through the gateway. Repeated headers are refused.
#[tokio::test]
async fn forward_auth_reads_only_the_configured_gateways_headers() {
    let setup = Setup::new("authz-from");
    let rest = format!("[authz]\noriginal_from = \"x-original\"\n{ROUTES}");
    let daemon = setup.start("", "workers = 1", &rest);
    let reader = format!("Bearer {}", setup.issuer.sign(claims(json!({}))));
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
        let token = setup.issuer.sign(claims(extra));
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
    let token = setup.issuer.sign(claims(json!({"scope": odd})));
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
        .sign(claims(json!({"scope": null, "scp": ["orders:read", "a"]})));
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
    let bearer = format!("Bearer {}", setup.issuer.sign(claims(json!({}))));
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
    let reader = setup.issuer.sign(claims(json!({})));
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

/// Regression: a path with a character beyond ASCII was read byte by byte as Latin-1 once it
/// needed decoding (`/café/%61` as `/cafÃ©/a`), and route prefixes were compared as written,
/// so the `/café` rule missed `/café/%61` and `/caf%C3%A9/x`, and let them through. Paths and
/// prefixes now have one spelling: characters beyond ASCII as the escapes of their UTF-8 bytes.
#[tokio::test]
async fn route_prefix_bypass_by_spelling_beyond_ascii() {
    let setup = Setup::new("authz-utf8");
    let rules = "[[authz.routes]]\nprefix = \"/café\"\nscopes = [\"cafe:admin\"]\n";
    let daemon = setup.start("", "workers = 1", rules);
    let reader = setup.issuer.sign(claims(json!({})));
    let refused = "Bearer realm=\"tessera\", error=\"insufficient_scope\", scope=\"cafe:admin\"";
    for spelling in ["/caf%C3%A9/x", "/caf%c3%a9", "/caf%C3%A9/%61"] {
        let reply = daemon
            .authz(Convention::Forwarded, "GET", spelling, Some(&reader))
            .await;
        assert_bearer(&reply, 403, refused);
    }
    // A header value is ASCII: raw UTF-8 there has no reading, and is refused.
    let reply = daemon
        .authz(Convention::Forwarded, "GET", "/café", Some(&reader))
        .await;
    assert_eq!(reply.status, 400, "{reply:?}");
    // Raw UTF-8 in the request target (Envoy's path_prefix), with and without an escape.
    for target in [
        "/v1/authz/café/%61",
        "/v1/authz/café/x",
        "/v1/authz/caf%C3%A9",
    ] {
        let mut stream = TcpStream::connect(daemon.addr).await.expect("connect");
        let request = format!(
            "GET {target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {reader}\r\n\
             Connection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.expect("write");
        let answer = read_until_closed(&mut stream, STEP)
            .await
            .expect("an answer");
        assert_eq!(
            raw_status(&answer),
            Some(403),
            "{target}: {}",
            String::from_utf8_lossy(&answer)
        );
    }
    let reply = daemon
        .authz(Convention::Forwarded, "GET", "/cafe/x", Some(&reader))
        .await;
    assert_eq!(reply.status, 200, "another path: {reply:?}");
}

/// `[authz.headers]` renames the identity headers, and an empty name leaves one out: with
/// `claims = ""` no claims header is sent, and nothing else changes.
#[tokio::test]
async fn identity_headers_can_be_renamed_or_left_out() {
    let setup = Setup::new("authz-headers");
    let headers = "[authz.headers]\nclaims = \"\"\nsubject = \"X-User\"\n";
    let daemon = setup.start("", "workers = 1", &format!("{headers}{ROUTES}"));
    let token = setup.issuer.sign(claims(json!({})));
    for round in 0..2 {
        // The second answer comes from the cache, with the answer rendered for the first.
        let reply = daemon
            .authz(Convention::Forwarded, "GET", "/orders/1", Some(&token))
            .await;
        assert_eq!(reply.status, 200, "{round}: {reply:?}");
        assert_eq!(reply.header("x-user"), Some("alice"));
        assert_eq!(reply.header("x-auth-subject"), None);
        assert_eq!(reply.header("x-auth-claims"), None);
        assert_eq!(reply.header("x-auth-issuer"), Some(ISS));
    }
    // Left on, the claims header is the token's own payload segment.
    let on = setup.start("", "workers = 1", ROUTES);
    let reply = on
        .authz(Convention::Forwarded, "GET", "/orders/1", Some(&token))
        .await;
    assert_eq!(reply.header("x-auth-claims"), token.split('.').nth(1));
}
