//! Batch verification (POST /v1/verify).

use super::*;

#[tokio::test]
async fn batch_verify_keeps_order_and_filters_audience() {
    let setup = Setup::new("batch");
    let daemon = setup.start("batch_max_tokens = 5", "workers = 2", "");
    let auth = basic(CLIENT, SECRET);
    let now = unix_now();
    let orders = setup.issuer.sign(claims(json!({"jti": "a"})));
    let billing = setup
        .issuer
        .sign(claims(json!({"jti": "b", "aud": ["api://billing"]})));
    let expired = setup.issuer.sign(claims(json!({"exp": now - 3600})));
    let forged = tampered(&orders, claims(json!({"sub": "mallory"})));
    let batch = [
        orders.as_str(),
        expired.as_str(),
        forged.as_str(),
        "garbage",
        billing.as_str(),
    ];

    let reply = daemon.verify(Some(&auth), &json!({"tokens": batch})).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let results = reply.json()["results"].as_array().expect("results").clone();
    assert_eq!(results.len(), 5);
    assert_eq!(results[0]["active"], true);
    assert_eq!(results[0]["claims"]["jti"], "a");
    assert_eq!(results[0]["claims"]["email"], "alice@example.com");
    assert_eq!(
        results[1],
        json!({"active": false, "error": "expired"}),
        "{results:?}"
    );
    assert_eq!(
        results[2],
        json!({"active": false, "error": "bad_signature"})
    );
    assert_eq!(results[3], json!({"active": false, "error": "malformed"}));
    assert_eq!(results[4]["active"], true);
    assert_eq!(results[4]["claims"]["jti"], "b");

    let reply = daemon
        .verify(
            Some(&auth),
            &json!({"tokens": [&billing, &orders], "audience": "api://orders"}),
        )
        .await;
    let results = reply.json()["results"].clone();
    assert_eq!(
        results[0],
        json!({"active": false, "error": "invalid_audience"})
    );
    assert_eq!(results[1]["claims"]["jti"], "a");

    // The limit is 5 tokens.
    let six = json!({"tokens": [&orders, &orders, &orders, &orders, &orders, &orders]});
    let reply = daemon.verify(Some(&auth), &six).await;
    assert_eq!(reply.status, 413, "{}", reply.text());
    let reply = daemon.verify(Some(&auth), &json!({"tokens": []})).await;
    assert_eq!(reply.json(), json!({"results": []}));

    assert_invalid_client(&daemon.verify(None, &json!({"tokens": [&orders]})).await);
    assert_invalid_client(
        &daemon
            .verify(Some(&basic(CLIENT, "nope")), &json!({"tokens": [&orders]}))
            .await,
    );
    let reply = daemon
        .call(
            "POST",
            "/v1/verify",
            &[("authorization", &auth), ("content-type", "text/plain")],
            "{}",
        )
        .await;
    assert_eq!(reply.status, 415);
    let reply = daemon
        .verify(Some(&auth), &json!({"tokens": [&orders], "extra": 1}))
        .await;
    assert_eq!(reply.status, 400, "{}", reply.text());
}
