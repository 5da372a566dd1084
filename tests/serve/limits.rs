//! Protection: body and header limits, slow and silent clients, idle connections, engine overload.

use super::*;

#[tokio::test]
async fn oversize_bodies_and_header_blocks_are_refused() {
    let setup = Setup::new("oversize");
    let daemon = setup.start(
        "max_body_bytes = 1024\nmax_header_bytes = 8192",
        "workers = 2",
        "",
    );
    let auth = basic(CLIENT, SECRET);
    let token = setup.issuer.sign(claims(json!({})));
    let small = json!({"tokens": [&token]});
    assert!(small.to_string().len() < 1024);
    let reply = daemon.verify(Some(&auth), &small).await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    // By Content-Length.
    let padded = json!({"tokens": [&token], "audience": "x".repeat(1024)});
    let reply = daemon.verify(Some(&auth), &padded).await;
    assert_eq!(reply.status, 413, "{}", reply.text());
    assert_eq!(reply.json(), json!({"error": "too_large"}));
    let reply = daemon
        .introspect(Some(&auth), &format!("{token}&pad={}", "y".repeat(1100)))
        .await;
    assert_eq!(reply.status, 413, "{}", reply.text());

    // Chunked, without a length: refused while reading.
    let answer = verify_chunked(daemon.addr, &auth, &padded.to_string(), 300, Duration::ZERO).await;
    assert_eq!(
        raw_status(&answer),
        Some(413),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    // Chunked and within the limit, in pieces that arrive one by one: joined and verified.
    let pause = Duration::from_millis(5);
    let answer = verify_chunked(daemon.addr, &auth, &small.to_string(), 97, pause).await;
    assert_eq!(
        raw_status(&answer),
        Some(200),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(
        String::from_utf8_lossy(&answer).contains("\"active\":true"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    // A header block under the limit is served; one beyond it is refused with 431.
    let exchange = |size: usize| async move {
        let request = format!(
            "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: {}\r\nConnection: close\r\n\r\n",
            "p".repeat(size)
        );
        let mut stream = TcpStream::connect(daemon.addr).await.expect("connect");
        let _ = stream.write_all(request.as_bytes()).await;
        read_until_closed(&mut stream, STEP)
            .await
            .expect("the daemon answers or closes")
    };
    let answer = exchange(6000).await;
    assert_eq!(
        raw_status(&answer),
        Some(200),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let answer = exchange(12_000).await;
    println!(
        "header block of 12 kB: {:?}",
        String::from_utf8_lossy(&answer).lines().next()
    );
    assert_eq!(
        raw_status(&answer),
        Some(431),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    // HTTP/2: a header list beyond the limit is not served either.
    let big = "h".repeat(12_000);
    let reply = tokio::time::timeout(STEP, async {
        let stream = TcpStream::connect(daemon.addr).await.expect("connect");
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .expect("HTTP/2 handshake");
        tokio::spawn(conn);
        let request = Request::builder()
            .uri(format!("http://{}/healthz", daemon.addr))
            .header("x-padding", &big)
            .body(Full::new(Bytes::new()))
            .expect("request");
        match sender.send_request(request).await {
            Ok(response) => Some(collect(response).await),
            Err(_) => None,
        }
    })
    .await
    .expect("HTTP/2 answer or error in time");
    let status = reply.as_ref().map(|r| r.status);
    println!("HTTP/2 header list of 12 kB: {status:?}");
    assert_eq!(status, Some(431), "{reply:?}");
    assert_eq!(daemon.get("/healthz").await.status, 200);
}

#[tokio::test]
async fn a_slow_client_is_disconnected_and_others_are_served() {
    let setup = Setup::new("slow");
    let daemon = setup.start(
        "header_read_timeout_ms = 500\nbody_read_timeout_ms = 700",
        "workers = 2",
        "",
    );
    let start = Instant::now();
    let mut slow = TcpStream::connect(daemon.addr).await.expect("connect");
    slow.write_all(b"GET /healthz HT").await.expect("write");
    // Others are served meanwhile.
    for _ in 0..3 {
        assert_eq!(daemon.get("/healthz").await.status, 200);
    }
    let answer = read_until_closed(&mut slow, Duration::from_secs(5))
        .await
        .expect("the slow client is disconnected within 5 s");
    let took = start.elapsed();
    println!(
        "slow client disconnected after {took:?}: {:?}",
        String::from_utf8_lossy(&answer)
    );
    assert!(took >= Duration::from_millis(400), "{took:?}");
    assert_ne!(raw_status(&answer), Some(200));
    assert_eq!(daemon.get("/healthz").await.status, 200);

    // An idle keep-alive connection is closed the same way after its first request.
    let mut idle = TcpStream::connect(daemon.addr).await.expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(STEP, idle.read(&mut buf))
        .await
        .expect("answer in time")
        .expect("read");
    assert_eq!(raw_status(&buf[..n]), Some(200));
    let start = Instant::now();
    assert!(read_until_closed(&mut idle, Duration::from_secs(3))
        .await
        .is_some_and(|rest| rest.is_empty()));
    assert!(start.elapsed() >= Duration::from_millis(400));

    // A whole header, then a body that never comes: 408 after the request timeout.
    let start = Instant::now();
    let mut stalled = TcpStream::connect(daemon.addr).await.expect("connect");
    let head = format!(
        "POST /v1/verify HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"tokens\":",
        basic(CLIENT, SECRET)
    );
    stalled.write_all(head.as_bytes()).await.expect("write");
    let answer = read_until_closed(&mut stalled, Duration::from_secs(5))
        .await
        .expect("the stalled request is answered within 5 s");
    let took = start.elapsed();
    println!("stalled body answered after {took:?}");
    assert_eq!(
        raw_status(&answer),
        Some(408),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(took >= Duration::from_millis(600), "{took:?}");
    assert_eq!(
        raw_body(&answer),
        "{\"error\":\"request_timeout\"}",
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

/// The header read time counts from the end of the last request, not from the accept: a
/// keep-alive connection that keeps asking stays open for as long as it keeps asking, and its
/// next request, sent slowly, is cut off one header read time after the last answer.
#[tokio::test]
async fn the_header_read_time_counts_from_the_last_request() {
    let setup = Setup::new("keepalive");
    let daemon = setup.start("header_read_timeout_ms = 400", "workers = 1", "");
    let mut conn = TcpStream::connect(daemon.addr).await.expect("connect");
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    // Seven requests 200 ms apart: 1.4 s on one connection, each within 400 ms of the last.
    for i in 0..7 {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let n = tokio::time::timeout(STEP, conn.read(&mut buf))
            .await
            .expect("answer in time")
            .expect("read");
        assert_eq!(
            raw_status(&buf[..n]),
            Some(200),
            "request {i} after {:?}",
            start.elapsed()
        );
    }
    assert!(start.elapsed() >= Duration::from_millis(1200));
    // Now a header that never ends: closed 400 ms after the last answer (give or take).
    let answered = Instant::now();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHo")
        .await
        .expect("write");
    let rest = read_until_closed(&mut conn, Duration::from_secs(3))
        .await
        .expect("the slow header is cut off within 3 s");
    let took = answered.elapsed();
    println!("slow second header cut off {took:?} after the last answer: {rest:?}");
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert_ne!(raw_status(&rest), Some(200));
}

/// Regression: a connection that sends nothing at all is held forever. The server detects
/// HTTP/1.1 or HTTP/2 by reading the first bytes (hyper-util `auto`), and
/// `header_read_timeout` only starts once HTTP/1.1 is chosen, so a silent client (or one that
/// sends part of the HTTP/2 preface) holds a connection slot with no deadline.
#[tokio::test]
async fn a_silent_client_is_disconnected_after_the_header_read_timeout() {
    let setup = Setup::new("silent");
    let daemon = setup.start("header_read_timeout_ms = 500", "workers = 2", "");
    let start = Instant::now();
    let mut silent = TcpStream::connect(daemon.addr).await.expect("connect");
    let mut preface = TcpStream::connect(daemon.addr).await.expect("connect");
    preface
        .write_all(b"PRI * HTTP/2.0\r\n")
        .await
        .expect("write");
    assert_eq!(daemon.get("/healthz").await.status, 200);
    let closed = read_until_closed(&mut silent, Duration::from_secs(3)).await;
    println!(
        "silent client: closed {:?} after {:?}",
        closed.is_some(),
        start.elapsed()
    );
    assert!(
        closed.is_some(),
        "a client that sends nothing is still connected after 3 s (header_read_timeout 500 ms)"
    );
    let closed = read_until_closed(&mut preface, Duration::from_secs(1)).await;
    assert!(
        closed.is_some(),
        "a client that stalls in the HTTP/2 preface is still connected"
    );
}

#[tokio::test]
async fn an_overloaded_engine_answers_503_at_once_and_recovers() {
    let setup = Setup::new("overload");
    // The engine admits 4 verifications at once, and a batch may hold 4 tokens (the
    // configuration refuses batches larger than the engine can admit).
    let daemon = setup.start(
        "batch_max_tokens = 4",
        "workers = 1\nqueue_per_worker = 4",
        "",
    );
    let auth = basic(CLIENT, SECRET);
    let tokens: Vec<String> = (0..256)
        .map(|i| {
            setup
                .issuer
                .sign(claims(json!({"jti": format!("overload-{i}")})))
        })
        .collect();
    // Authenticate once, so that the burst below meets only the engine's admission.
    let warm = daemon.verify(Some(&auth), &json!({"tokens": []})).await;
    assert_eq!(warm.status, 200, "{}", warm.text());
    // 64 requests of 4 distinct uncached tokens at once against one worker.
    let mut burst = tokio::task::JoinSet::new();
    for chunk in tokens.chunks(4) {
        let body = json!({ "tokens": chunk }).to_string();
        let headers = [
            ("content-type", "application/json"),
            ("authorization", auth.as_str()),
        ];
        let req = request("POST", daemon.addr, "/v1/verify", &headers, &body);
        let addr = daemon.addr;
        burst.spawn(async move {
            let start = Instant::now();
            let reply = send(addr, req).await;
            (reply, start.elapsed())
        });
    }
    let (mut served, mut refused) = (0, 0);
    while let Some(done) = burst.join_next().await {
        let (reply, took) = done.expect("request task");
        match reply.status {
            200 => served += 1,
            503 => {
                refused += 1;
                assert_eq!(reply.json(), json!({"error": "overloaded"}));
                let retry: u64 = reply
                    .header("retry-after")
                    .expect("Retry-After")
                    .parse()
                    .expect("Retry-After in seconds");
                assert!(retry >= 1);
                assert!(took < Duration::from_secs(1), "{took:?}");
            }
            other => panic!("unexpected {other}: {}", reply.text()),
        }
    }
    println!("64 batches of 4 against 1 worker x 4 slots: {served} served, {refused} refused");
    assert!(refused > 0, "no request was refused as overloaded");

    // Afterwards: served normally.
    let reply = daemon
        .verify(Some(&auth), &json!({"tokens": [&tokens[200]]}))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["results"][0]["active"], true);
    let bearer = format!("Bearer {}", tokens[201]);
    let reply = daemon
        .call("GET", "/v1/authz", &[("authorization", &bearer)], "")
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let page = daemon.get("/metrics").await.text();
    let overloaded = metric(&page, "tessera_engine_overloaded_total").expect("overload counter");
    assert!(overloaded >= 1.0, "{overloaded}");
    assert_eq!(metric(&page, "tessera_engine_in_flight"), Some(0.0));
}

/// Regression: an HTTP/2 connection that stayed open with nothing to do was never closed, so
/// idle clients could take every connection slot. It is closed after `idle_timeout_ms`.
#[tokio::test]
async fn an_idle_http2_connection_is_closed() {
    let setup = Setup::new("h2-idle");
    let daemon = setup.start(
        "idle_timeout_ms = 400\nheader_read_timeout_ms = 300",
        "workers = 1",
        "",
    );
    let tcp = TcpStream::connect(daemon.addr).await.expect("connect");
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("h2 handshake");
    let closed = tokio::spawn(conn);
    let request = Request::get(format!("http://{}/healthz", daemon.addr))
        .body(http_body_util::Empty::<Bytes>::new())
        .expect("request");
    let reply = send.send_request(request).await.expect("h2 request");
    assert_eq!(reply.status(), 200);
    drop(reply);
    let start = Instant::now();
    // Closed by the server: the client's connection task ends (how it ends does not matter).
    let _ = tokio::time::timeout(Duration::from_secs(5), closed)
        .await
        .expect("the idle connection was not closed")
        .expect("connection task");
    println!("idle HTTP/2 connection closed after {:?}", start.elapsed());
    assert!(start.elapsed() >= Duration::from_millis(300));
    // The daemon still serves.
    assert_eq!(daemon.get("/healthz").await.status, 200);
}
