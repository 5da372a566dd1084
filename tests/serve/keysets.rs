//! Issuers and their key sets: routing, published sets, readiness per issuer.

use super::*;

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
    let partner = es256("k1");
    let weak = format!(
        r#"{{"kty":"RSA","alg":"RS256","kid":"weak","n":"{}","e":"AQAB"}}"#,
        URL_SAFE_NO_PAD.encode([0xc5u8; 128])
    );
    let keys: Value = serde_json::from_str(partner.jwks()).expect("jwks");
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
    let mine = setup.issuer.sign(claims(json!({})));
    let theirs = partner.sign(claims(json!({"iss": "https://partner.example"})));
    let forged = partner.sign(claims(json!({})));
    for (token, active) in [(&mine, true), (&theirs, true), (&forged, false)] {
        let reply = daemon.introspect(Some(&auth), token).await;
        assert_eq!(reply.json()["active"], active, "{}", reply.text());
    }
    let empty = setup
        .issuer
        .sign(claims(json!({"iss": "https://empty.example"})));
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
