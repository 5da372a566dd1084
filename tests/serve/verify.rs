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

/// `[engine] multibuffer`: `auto` loads crypto_mb where this CPU runs it and the daemon says
/// which path serves; a batch then goes through it (the lanes counted in `/metrics`) with the
/// verdicts of the single path; `off` keeps the single path; a path that does not load stops
/// the start.
#[tokio::test]
async fn multibuffer_serves_batches_when_it_loads() {
    let ifma = std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|c| c.contains("avx512ifma"));
    let setup = Setup::new("multibuffer");
    let auth = basic(CLIENT, SECRET);
    let mut tokens: Vec<String> = (0..16)
        .map(|i| setup.issuer.sign(claims(json!({"jti": format!("t{i}")}))))
        .collect();
    tokens[5] = tampered(&tokens[5], claims(json!({"sub": "mallory"})));
    let body = json!({ "tokens": tokens });
    for (setting, active) in [("\"auto\"", ifma), ("\"off\"", false)] {
        let daemon = setup.start(
            "",
            &format!("workers = 1\ncache_ttl_s = 0\nmultibuffer = {setting}"),
            "",
        );
        let said = if active {
            "multibuffer: active, AVX-512 IFMA"
        } else if setting == "\"off\"" {
            "multibuffer: off"
        } else {
            eprintln!("multi-buffer path not exercised: this CPU lacks avx512ifma");
            "multibuffer: not used: this CPU lacks avx512ifma"
        };
        daemon.wait_for_log(said);
        // A worker takes what is queued when it wakes: on a busy machine the first tokens of a
        // batch can be taken before the rest arrive, in runs too short for the library. Send the
        // batch again (the cache is off) until one call went through it, ten times at most.
        let mut sent = 0.0;
        let page = loop {
            let reply = daemon.verify(Some(&auth), &body).await;
            assert_eq!(reply.status, 200, "{}", reply.text());
            let results = reply.json()["results"].as_array().expect("results").clone();
            for (i, r) in results.iter().enumerate() {
                assert_eq!(r["active"], i != 5, "{setting}: token {i}: {r}");
            }
            sent += 1.0;
            let page = daemon.get("/metrics").await.text();
            let calls = metric(
                &page,
                "tessera_engine_multibuffer_calls_total{kind=\"p256\"}",
            );
            if !active || calls.is_some_and(|c| c >= 1.0) || sent >= 10.0 {
                break page;
            }
        };
        let m = |series: &str| metric(&page, series).unwrap_or_else(|| panic!("{series}:\n{page}"));
        assert_eq!(
            m("tessera_engine_multibuffer_active"),
            f64::from(u8::from(active))
        );
        let lanes = m("tessera_engine_multibuffer_lanes_total{kind=\"p256\"}");
        if active {
            // Each call filled 4 lanes or more, and no token went through it twice a batch.
            let calls = m("tessera_engine_multibuffer_calls_total{kind=\"p256\"}");
            assert!(
                calls >= 1.0 && lanes >= 4.0 * calls && lanes <= 16.0 * sent,
                "{calls} calls, {lanes} lanes, {sent} batches"
            );
        } else {
            assert_eq!(lanes, 0.0);
        }
    }
    let missing = setup.dir.path().join("no-such-libcrypto_mb.so");
    let out = run(
        {
            let file = setup.dir.write(
                "bad.toml",
                &setup.config("", &format!("multibuffer = \"{}\"", missing.display()), ""),
            );
            tessera(&["serve", "--config", path_str(&file)])
        },
        b"",
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("engine.multibuffer"), "{stderr}");
}
