//! Metrics, discovery, health, readiness and logs.

use super::*;

#[tokio::test]
async fn metrics_discovery_health_and_logs_without_tokens() {
    let setup = Setup::new("observe");
    let daemon = setup.start_with("", "workers = 2", "", &[("RUST_LOG", "debug")]);
    let url = daemon.url.clone();
    let auth = basic(CLIENT, SECRET);
    let good = setup.issuer.sign(claims(json!({})));
    let stranger = es256("k1").sign(claims(json!({"jti": "stranger"})));
    let expired = setup
        .issuer
        .sign(claims(json!({"exp": unix_now() - 3600, "jti": "old"})));
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
            "revocation_endpoint": format!("{url}/revoke"),
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic"],
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
    // The cache holds the valid token: its entry (the token, its claims, the answers) and the
    // tables take some kilobytes, not megabytes.
    assert_eq!(m("tessera_cache_entries{kind=\"valid\"}"), 1.0);
    let bytes = m("tessera_cache_bytes");
    assert!((1_000.0..4_000_000.0).contains(&bytes), "{bytes}");
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
    let good = format!("Bearer {}", setup.issuer.sign(claims(json!({}))));
    let bad = format!(
        "Bearer {}",
        setup.issuer.sign(claims(json!({"exp": unix_now() - 3600})))
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
