//! Callers of /introspect and /v1/verify: Basic credentials, hash checks, floods of wrong secrets.

use super::*;

/// Regression: the first requests of a client are refused with 503 while another check of the
/// same credential is running. Secret hashes are checked at most two at a time and a third
/// check is refused at once (`AuthError::Busy`), so a gateway that opens a few connections at
/// start, with the right secret and the default 600 000 PBKDF2 iterations, gets 503s.
#[tokio::test]
async fn concurrent_first_requests_of_one_client_are_all_answered() {
    let dir = Scratch::new("auth-burst");
    let issuer = es256("b1");
    dir.write("jwks.json", issuer.jwks());
    let out = run(
        tessera(&["client", "hash-secret"]),
        format!("{SECRET}\n").as_bytes(),
    );
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).expect("UTF-8");
    let file = dir.write(
        "tessera.toml",
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[[issuers]]\nissuer = \"{ISS}\"\n\
             jwks_file = \"jwks.json\"\n\n[[clients]]\nid = \"{CLIENT}\"\nsecret_hash = \"{}\"\n",
            hash.trim()
        ),
    );
    let daemon = Daemon::spawn(tessera(&["serve", "--config", path_str(&file)]));
    let auth = basic(CLIENT, SECRET);
    let token = issuer.sign(claims(json!({})));
    let replies = join_all(
        (0..6)
            .map(|_| daemon.introspect(Some(&auth), &token))
            .collect(),
    )
    .await;
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    println!("six concurrent first requests: {statuses:?}");
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
}

/// Regression: `client_secret_basic` secrets were tried both form-decoded and as sent, so a
/// wrong secret with a `+` or a `%` cost two PBKDF2 runs. RFC 6749 section 2.3.1 form-encodes
/// the client id and secret: they are decoded once, and each attempt costs one hash at most.
#[tokio::test]
async fn a_secret_with_plus_or_percent_costs_two_hashes() {
    const ODD: &str = "p+ss%word 1";
    let setup = Setup::new("auth-one-hash");
    let rest = format!(
        "[[clients]]\nid = \"odd\"\nsecret_hash = \"{}\"\n",
        hash_secret(ODD)
    );
    // Room for every wrong secret below from this one address.
    let daemon = setup.start("auth_failure_burst = 100", "workers = 1", &rest);
    let token = setup.issuer.sign(claims(json!({})));
    let hashes = || async {
        let page = daemon.get("/metrics").await.text();
        metric(&page, "tessera_client_secret_hashes_total").expect("hash count")
    };
    let encoded = "p%2Bss%25word+1";
    for (what, id, secret, status, cost) in [
        ("the secret, form-encoded", "odd", encoded, 200, 1.0),
        ("a wrong secret with +", "odd", "wrong+guess", 401, 1.0),
        ("a wrong secret with %", "odd", "wrong%2Bguess", 401, 1.0),
        ("an unknown client", "nobody", "wrong+guess%21", 401, 1.0),
        // Read once, as RFC 6749 says: a secret sent unencoded is another secret.
        ("the secret, half encoded", "odd", "p+ss%25word+1", 401, 1.0),
        (
            "the secret as typed (no single reading)",
            "odd",
            ODD,
            401,
            0.0,
        ),
    ] {
        let before = hashes().await;
        let reply = daemon.introspect(Some(&basic(id, secret)), &token).await;
        assert_eq!(reply.status, status, "{what}: {}", reply.text());
        assert_eq!(hashes().await - before, cost, "{what}");
    }
}

/// Regression: every wrong secret cost a PBKDF2 run, two at a time, whoever sent it, so 100
/// connections sending wrong secrets kept the checks busy and a legitimate caller's first
/// introspection waited 3.4 to 5 s, up to the 503 line. Failed attempts are now limited per
/// source address: beyond a small bucket the flood is answered 429 with `Retry-After`, without
/// a hash, and the caller, from another address, is answered within 1 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_flood_delays_a_legitimate_first_introspection() {
    let setup = Setup::new("auth-flood");
    // Each check about 50 ms here (a sixth of the default 600 000 iterations): a queue of a
    // hundred still takes seconds.
    let rest = format!(
        "[[clients]]\nid = \"costly\"\nsecret_hash = \"{}\"\n",
        hash_secret_with(SECRET, 100_000)
    );
    let daemon = setup.start("", "workers = 1", &rest);
    let token = setup.issuer.sign(claims(json!({})));
    let flood = Flood::start(
        daemon.addr,
        [127, 0, 0, 2],
        &basic("costly", "wrong"),
        &token,
    );
    // Until the flood is refused (or, without a limit, has filled the queue).
    let start = Instant::now();
    while flood.throttled() == 0 && start.elapsed() < Duration::from_secs(1) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let asked = Instant::now();
    let reply = daemon
        .introspect(Some(&basic("costly", SECRET)), &token)
        .await;
    let took = asked.elapsed();
    // The flood goes on a while: refused, not hashed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (statuses, retry_after) = flood.stop().await;
    println!(
        "first introspection during the flood: {} in {took:?}; flood answers {statuses:?}",
        reply.status
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(statuses.get(&429).is_some_and(|&n| n > 0), "{statuses:?}");
    assert!(
        retry_after
            .as_deref()
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|s| s >= 1),
        "Retry-After: {retry_after:?}"
    );
    // What the flood cost: a bucket's worth of hashes, not one per request.
    let page = daemon.get("/metrics").await.text();
    let hashes = metric(&page, "tessera_client_secret_hashes_total").expect("hash count");
    let wrong: usize = statuses.values().sum();
    assert!(
        hashes < 20.0 && wrong > 100,
        "{hashes} hashes for {wrong} wrong secrets"
    );
}
