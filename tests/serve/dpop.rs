//! DPoP-bound tokens at `/v1/authz` (RFC 9449): a token with `cnf.jkt` passes only under the
//! `DPoP` scheme with one fresh proof by its key for the original method and URI (`htu` from the
//! configured origin, never from `Host`), each proof once; as `Bearer` it is refused, and so
//! are an unbound token under `DPoP` and a token bound in a way the daemon cannot check.

use super::*;

const ORIGIN: &str = "https://api.example";

/// A proof by `key` for `method` `htu`, with `ath` for `token`; `claims` replace members
/// (null removes one).
pub(super) fn proof(
    key: &jose::SigningKey,
    method: &str,
    htu: &str,
    token: &str,
    claims: Value,
) -> String {
    let mut body = testkit::dpop::claims(method, htu, Some(token));
    for (name, value) in claims.as_object().cloned().unwrap_or_default() {
        if value.is_null() {
            body.as_object_mut().map(|o| o.remove(&name));
        } else {
            body[&name] = value;
        }
    }
    testkit::dpop::sign(key, &body)
}

/// `/v1/authz` as nginx asks it (`X-Original-*`), with `authorization` and the `DPoP` headers.
async fn ask(
    daemon: &Daemon,
    method: &str,
    uri: &str,
    authorization: &str,
    proofs: &[&str],
) -> Reply {
    let mut headers = vec![
        ("x-original-method", method),
        ("x-original-uri", uri),
        ("authorization", authorization),
    ];
    for proof in proofs {
        headers.push(("dpop", proof));
    }
    daemon.call("GET", "/v1/authz", &headers, "").await
}

fn assert_dpop(reply: &Reply, status: u16, error: &str) {
    assert_eq!(reply.status, status, "{reply:?}");
    let challenge = reply.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with(&format!("DPoP error=\"{error}\", algs=\""))
            && challenge.contains("ES256"),
        "{challenge}"
    );
}

#[tokio::test]
async fn dpop_bound_tokens_pass_only_with_a_fresh_proof_by_their_key() {
    let setup = Setup::new("dpop");
    let daemon = setup.start(
        "",
        "workers = 2",
        &format!("[authz.dpop]\norigin = \"{ORIGIN}/\"\n[log]\nlevel = \"debug\"\n"),
    );
    let key = jose::SigningKey::generate(jose::Algorithm::ES256).expect("key");
    let jkt = key.public().expect("public").thumbprint();
    let bound = setup.issuer.sign(claims(json!({"cnf": {"jkt": jkt}})));
    let scheme = format!("DPoP {bound}");
    let htu = format!("{ORIGIN}/orders/42");

    // A fresh proof for the request: through, with the thumbprint it was checked against.
    let good = proof(&key, "GET", &htu, &bound, json!({}));
    let reply = ask(&daemon, "GET", "/orders/42?page=2", &scheme, &[&good]).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("x-auth-cnf-jkt"), Some(jkt.as_str()));
    assert_eq!(reply.header("x-auth-subject"), Some("alice"));
    // The same proof again: replayed.
    let again = ask(&daemon, "GET", "/orders/42?page=2", &scheme, &[&good]).await;
    assert_dpop(&again, 401, "invalid_dpop_proof");
    // htu as another client library writes it: upper-case host, default port, a query.
    let spelled = proof(
        &key,
        "GET",
        "https://API.example:443/orders/42?page=2",
        &bound,
        json!({}),
    );
    let reply = ask(&daemon, "GET", "/orders/42", &scheme, &[&spelled]).await;
    assert_eq!(reply.status, 200, "{reply:?}");

    // Refused before anything passes: another URI, another method, another key, an old
    // proof, a wrong ath, none or two proofs.
    let other_key = jose::SigningKey::generate(jose::Algorithm::ES256).expect("key");
    for (what, p) in [
        (
            "another path",
            proof(
                &key,
                "GET",
                &format!("{ORIGIN}/orders/43"),
                &bound,
                json!({}),
            ),
        ),
        (
            "another origin",
            proof(
                &key,
                "GET",
                "https://evil.example/orders/42",
                &bound,
                json!({}),
            ),
        ),
        (
            "another method",
            proof(&key, "DELETE", &htu, &bound, json!({})),
        ),
        (
            "another key",
            proof(&other_key, "GET", &htu, &bound, json!({})),
        ),
        (
            "an hour old",
            proof(&key, "GET", &htu, &bound, json!({"iat": unix_now() - 3600})),
        ),
        (
            "another token's ath",
            proof(&key, "GET", &htu, "another", json!({})),
        ),
    ] {
        let reply = ask(&daemon, "GET", "/orders/42", &scheme, &[&p]).await;
        assert_eq!(reply.status, 401, "{what}: {reply:?}");
        assert_dpop(&reply, 401, "invalid_dpop_proof");
    }
    let fresh = proof(&key, "GET", &htu, &bound, json!({}));
    assert_dpop(
        &ask(&daemon, "GET", "/orders/42", &scheme, &[]).await,
        400,
        "invalid_request",
    );
    assert_dpop(
        &ask(&daemon, "GET", "/orders/42", &scheme, &[&fresh, &fresh]).await,
        400,
        "invalid_request",
    );
    // The Host header is no source of htu: a proof for the Host the client sent is refused.
    let host = proof(
        &key,
        "GET",
        &format!("http://{}/orders/42", daemon.addr),
        &bound,
        json!({}),
    );
    assert_dpop(
        &ask(&daemon, "GET", "/orders/42", &scheme, &[&host]).await,
        401,
        "invalid_dpop_proof",
    );

    // The bound token as Bearer (a downgrade), even with a proof.
    let downgraded = ask(
        &daemon,
        "GET",
        "/orders/42",
        &format!("Bearer {bound}"),
        &[&fresh],
    )
    .await;
    assert_bearer(
        &downgraded,
        401,
        "Bearer realm=\"tessera\", error=\"invalid_token\"",
    );
    // An unbound token under DPoP, with a valid-looking proof for it.
    let plain = setup.issuer.sign(claims(json!({})));
    let p = proof(&key, "GET", &htu, &plain, json!({}));
    assert_dpop(
        &ask(
            &daemon,
            "GET",
            "/orders/42",
            &format!("DPoP {plain}"),
            &[&p],
        )
        .await,
        401,
        "invalid_token",
    );
    // Bound to a certificate, or by a confirmation method tessera does not check: refused,
    // never taken for bearer tokens.
    for cnf in [
        json!({"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}),
        json!({"jwk": {}}),
        json!("x"),
    ] {
        let token = setup.issuer.sign(claims(json!({"cnf": cnf})));
        let reply = ask(
            &daemon,
            "GET",
            "/orders/42",
            &format!("Bearer {token}"),
            &[],
        )
        .await;
        assert_bearer(
            &reply,
            401,
            "Bearer realm=\"tessera\", error=\"invalid_token\"",
        );
    }
    // The unbound token as Bearer is what it always was.
    let reply = ask(
        &daemon,
        "GET",
        "/orders/42",
        &format!("Bearer {plain}"),
        &[],
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("x-auth-cnf-jkt"), None);
    // Each refused for its own reason (the debug log says which), and no proof, token or key
    // in the log.
    let log = daemon.stderr();
    for cause in [
        "dpop_proof_replayed",
        "htu is not the request's URI",
        "htm is not the request's method",
        "not the one the token is bound to",
        "iat is outside the accepted window",
        "ath is not the access token's hash",
        "dpop_bound_as_bearer",
        "not_dpop_bound",
        "no_certificate_source",
        "unknown_confirmation",
    ] {
        assert!(log.contains(cause), "no {cause:?} in the log:\n{log}");
    }
    for secret in [&bound, &good, &plain] {
        assert!(
            !log.contains(secret.as_str()),
            "the log carries a token or proof"
        );
    }
}

#[tokio::test]
async fn without_an_origin_dpop_bound_tokens_are_refused() {
    let setup = Setup::new("dpop-no-origin");
    let daemon = setup.start("", "workers = 1", "");
    let key = jose::SigningKey::generate(jose::Algorithm::ES256).expect("key");
    let jkt = key.public().expect("public").thumbprint();
    let bound = setup.issuer.sign(claims(json!({"cnf": {"jkt": jkt}})));
    let p = proof(
        &key,
        "GET",
        &format!("{ORIGIN}/orders/1"),
        &bound,
        json!({}),
    );
    let reply = ask(&daemon, "GET", "/orders/1", &format!("DPoP {bound}"), &[&p]).await;
    assert_dpop(&reply, 401, "invalid_token");
}

/// The server nonce a refusal hands out: a 401 `use_dpop_nonce` with `DPoP-Nonce`.
fn nonce_of(reply: &Reply) -> String {
    assert_dpop(reply, 401, "use_dpop_nonce");
    reply
        .header("dpop-nonce")
        .unwrap_or_else(|| panic!("no DPoP-Nonce in {reply:?}"))
        .to_owned()
}

#[tokio::test]
async fn with_nonces_a_proof_is_good_only_at_the_daemon_whose_nonce_it_carries() {
    let setup = Setup::new("dpop-nonce");
    let config = format!("[authz.dpop]\norigin = \"{ORIGIN}\"\nnonce = true\n");
    let (a, b) = (
        setup.start("", "workers = 1", &config),
        setup.start("", "workers = 1", &config),
    );
    let key = jose::SigningKey::generate(jose::Algorithm::ES256).expect("key");
    let jkt = key.public().expect("public").thumbprint();
    let bound = setup.issuer.sign(claims(json!({"cnf": {"jkt": jkt}})));
    let scheme = format!("DPoP {bound}");
    let htu = format!("{ORIGIN}/orders/1");

    // No nonce: refused, with one to use (RFC 9449 section 9).
    let bare = proof(&key, "GET", &htu, &bound, json!({}));
    let nonce_a = nonce_of(&ask(&a, "GET", "/orders/1", &scheme, &[&bare]).await);
    // A made-up nonce is no better.
    let forged = proof(
        &key,
        "GET",
        &htu,
        &bound,
        json!({"nonce": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}),
    );
    assert_eq!(
        nonce_of(&ask(&a, "GET", "/orders/1", &scheme, &[&forged]).await),
        nonce_a,
        "one nonce per slot"
    );
    // With the daemon's nonce: through, once.
    let good = proof(&key, "GET", &htu, &bound, json!({"nonce": nonce_a}));
    let reply = ask(&a, "GET", "/orders/1", &scheme, &[&good]).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("x-auth-cnf-jkt"), Some(jkt.as_str()));
    assert_dpop(
        &ask(&a, "GET", "/orders/1", &scheme, &[&good]).await,
        401,
        "invalid_dpop_proof",
    );
    // The same proof at the other daemon: its nonce is not b's, so b's local replay cache
    // need not know it; the client is told to use b's nonce.
    let nonce_b = nonce_of(&ask(&b, "GET", "/orders/1", &scheme, &[&good]).await);
    assert_ne!(nonce_a, nonce_b, "each daemon's nonces are its own");
    // A fresh proof with a's nonce, sent to b first: refused there, and still good at a.
    let fresh = proof(&key, "GET", &htu, &bound, json!({"nonce": nonce_a}));
    nonce_of(&ask(&b, "GET", "/orders/1", &scheme, &[&fresh]).await);
    let reply = ask(&a, "GET", "/orders/1", &scheme, &[&fresh]).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    // A proof failing another check is invalid_dpop_proof whatever its nonce.
    let elsewhere = proof(
        &key,
        "GET",
        &format!("{ORIGIN}/orders/2"),
        &bound,
        json!({"nonce": nonce_b}),
    );
    assert_dpop(
        &ask(&b, "GET", "/orders/1", &scheme, &[&elsewhere]).await,
        401,
        "invalid_dpop_proof",
    );
    let with_b = proof(&key, "GET", &htu, &bound, json!({"nonce": nonce_b}));
    let reply = ask(&b, "GET", "/orders/1", &scheme, &[&with_b]).await;
    assert_eq!(reply.status, 200, "{reply:?}");
}

#[tokio::test]
async fn without_nonces_the_store_refuses_a_proof_replayed_to_a_second_daemon() {
    let setup = Setup::new("dpop-store");
    let config = format!(
        "[authz.dpop]\norigin = \"{ORIGIN}\"\nreplays = \"store\"\n\n[store]\npath = \"store.sqlite3\"\n"
    );
    let (a, b) = (
        setup.start("", "workers = 1", &config),
        setup.start("", "workers = 1", &config),
    );
    let key = jose::SigningKey::generate(jose::Algorithm::ES256).expect("key");
    let jkt = key.public().expect("public").thumbprint();
    let bound = setup.issuer.sign(claims(json!({"cnf": {"jkt": jkt}})));
    let scheme = format!("DPoP {bound}");
    let htu = format!("{ORIGIN}/orders/1");
    for (first, second) in [(&a, &b), (&b, &a)] {
        let p = proof(&key, "GET", &htu, &bound, json!({}));
        let reply = ask(first, "GET", "/orders/1", &scheme, &[&p]).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_dpop(
            &ask(second, "GET", "/orders/1", &scheme, &[&p]).await,
            401,
            "invalid_dpop_proof",
        );
        assert_dpop(
            &ask(first, "GET", "/orders/1", &scheme, &[&p]).await,
            401,
            "invalid_dpop_proof",
        );
    }
}
