//! Shutdown: SIGTERM drains, SIGINT closes idle connections.

use super::*;

#[tokio::test]
async fn sigterm_drains_requests_in_flight_and_exits_0() {
    let setup = Setup::new("drain");
    let mut daemon = setup.start("shutdown_grace_ms = 1000", "workers = 2", "");
    let token = setup.issuer.sign(claims(json!({})));
    let body = json!({"tokens": [&token]}).to_string();
    let (first, rest) = body.split_at(body.len() / 2);
    let head = format!(
        "POST /v1/verify HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        basic(CLIENT, SECRET),
        body.len()
    );
    let mut in_flight = TcpStream::connect(daemon.addr).await.expect("connect");
    in_flight
        .write_all(format!("{head}{first}").as_bytes())
        .await
        .expect("write");
    assert_eq!(daemon.get("/readyz").await.json()["status"], "ready");

    let signalled = Instant::now();
    daemon.signal("-TERM");
    // /readyz fails at once, on connections still accepted during the grace.
    let mut readyz = daemon.get("/readyz").await;
    while readyz.status == 200 && signalled.elapsed() < Duration::from_millis(800) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        readyz = daemon.get("/readyz").await;
    }
    println!("/readyz {} after {:?}", readyz.status, signalled.elapsed());
    assert_eq!(
        (readyz.status, readyz.json()["status"].clone()),
        (503, json!("draining"))
    );
    assert_eq!(daemon.get("/healthz").await.status, 200);
    // After the grace: no new connections.
    loop {
        match TcpStream::connect(daemon.addr).await {
            Err(_) => break,
            Ok(_) => {
                assert!(
                    signalled.elapsed() < Duration::from_secs(3),
                    "still accepting 3 s after SIGTERM with a 1 s grace"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let stopped_accepting = signalled.elapsed();
    println!("stopped accepting after {stopped_accepting:?}");
    assert!(stopped_accepting >= Duration::from_millis(900));

    // The request in flight still completes.
    in_flight.write_all(rest.as_bytes()).await.expect("write");
    let answer = read_until_closed(&mut in_flight, STEP)
        .await
        .expect("answer");
    assert_eq!(
        raw_status(&answer),
        Some(200),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let results: Value = serde_json::from_str(&raw_body(&answer)).expect("JSON body");
    assert_eq!(results["results"][0]["active"], true, "{results}");

    let status = daemon.wait_exit(Duration::from_secs(5)).await;
    println!("exited {status} after {:?}", signalled.elapsed());
    assert_eq!(status.code(), Some(0), "{}", daemon.finished_stderr());
    assert!(daemon.more_stdout().is_empty(), "one line on stdout");
}

#[tokio::test]
async fn sigint_closes_idle_connections_and_exits_0_at_once() {
    let setup = Setup::new("sigint");
    let mut daemon = setup.start("", "workers = 2", "");
    // An idle keep-alive connection after one request, and one that never sent a byte.
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
    let _silent = TcpStream::connect(daemon.addr).await.expect("connect");
    let h2 = send_h2(daemon.addr, "/healthz", &[]).await;
    assert_eq!(h2.status, 200);

    let signalled = Instant::now();
    daemon.signal("-INT");
    let status = daemon.wait_exit(Duration::from_secs(5)).await;
    let took = signalled.elapsed();
    println!("SIGINT: exited {status} after {took:?}");
    assert_eq!(status.code(), Some(0), "{}", daemon.finished_stderr());
    assert!(
        took < Duration::from_secs(2),
        "idle connections held the exit for {took:?}"
    );
    assert!(
        read_until_closed(&mut idle, Duration::from_secs(1))
            .await
            .is_some(),
        "the idle connection is closed"
    );
    assert!(TcpStream::connect(daemon.addr).await.is_err());
}

/// Regression: the listening line is printed before the SIGTERM/SIGINT handlers are installed
/// (they are installed when the shutdown future is first polled). A supervisor that stops the
/// daemon right after it announced itself either kills it with the default action (exit by
/// signal, no drain) or, when the signal lands while tokio registers the handler, loses the
/// signal and the daemon keeps running. The signal is sent by a shell that is already running
/// and waits on its stdin, so that it follows the listening line within microseconds.
#[test]
fn sigterm_right_after_the_listening_line_exits_0() {
    let dir = Scratch::new("early-term");
    let issuer = es256("e1");
    let jwks = dir.write("jwks.json", issuer.jwks());
    let mut outcomes = Vec::new();
    for _ in 0..30 {
        let mut cmd = tessera(&["serve", "--listen", "127.0.0.1:0"]);
        cmd.args(["--jwks", path_str(&jwks), "--iss", ISS])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("spawn tessera serve");
        let mut killer = Command::new("sh")
            .args(["-c", &format!("read _ && kill -TERM {}", child.id())])
            .stdin(Stdio::piped())
            .spawn()
            .expect("sh");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("listening line");
        assert!(line.starts_with("listening on "), "{line:?}");
        let mut trigger = killer.stdin.take().expect("stdin");
        trigger.write_all(b"\n").expect("trigger");
        drop(trigger);
        killer.wait().expect("sh");
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break Some(status);
            }
            if start.elapsed() > Duration::from_secs(3) {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        outcomes.push(status.map(|s| s.to_string()));
    }
    println!("{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|o| o.as_deref() == Some("exit status: 0")),
        "SIGTERM right after start must drain and exit 0 (None: still running 3 s later): \
         {outcomes:?}"
    );
}
