//! A running `tessera serve` for end-to-end tests, and the HTTP exchanges tests have with it.
//!
//! [`Daemon::spawn`] starts the command it is given (the test builds it: binary, arguments,
//! environment) with its stdout and stderr piped, waits for the `listening on ...` line and
//! keeps the rest of both streams for the test to read. The daemon is killed when dropped.
//! Unless the test gives it a `STATE_DIRECTORY`, each daemon gets a fresh one of its own (its
//! embedded store), so that no two tests share state.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{HeaderMap, Request, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

/// How long the daemon may take to print its listening line.
pub const START: Duration = Duration::from_secs(30);
/// How long one HTTP exchange may take.
pub const STEP: Duration = Duration::from_secs(10);

/// A running `tessera serve`, killed when dropped.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    /// Where it listens (loopback, a port it chose).
    pub addr: SocketAddr,
    /// `http://ADDR`, or `https://ADDR` when it serves TLS.
    pub url: String,
    stdout: mpsc::Receiver<String>,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_done: Option<JoinHandle<()>>,
    /// The state directory made for it, when the test gave none.
    _state: Option<crate::Scratch>,
}

impl Daemon {
    /// Starts `command` and waits for its listening line; panics with the daemon's stderr when
    /// it does not come within [`START`].
    pub fn spawn(mut command: Command) -> Daemon {
        let given = command
            .get_envs()
            .any(|(name, value)| name == "STATE_DIRECTORY" && value.is_some());
        let state = (!given).then(|| crate::Scratch::new("daemon-state"));
        if let Some(state) = &state {
            command.env("STATE_DIRECTORY", state.path());
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stderr_done = {
            let mut pipe = child.stderr.take().expect("stderr is piped");
            let stderr = Arc::clone(&stderr);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    stderr
                        .lock()
                        .expect("stderr lock")
                        .extend_from_slice(&buf[..n]);
                }
            })
        };
        let (lines, stdout) = mpsc::channel();
        let pipe = child.stdout.take().expect("stdout is piped");
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let first = stdout.recv_timeout(START);
        let mut daemon = Daemon {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            url: String::new(),
            stdout,
            stderr,
            stderr_done: Some(stderr_done),
            _state: state,
        };
        let line = match first {
            Ok(line) => line,
            Err(e) => {
                let _ = daemon.child.kill();
                let status = daemon.child.wait().expect("wait");
                panic!(
                    "no listening line ({e}; {status}); stderr:\n{}",
                    daemon.finished_stderr()
                );
            }
        };
        let url = line.strip_prefix("listening on ").unwrap_or_default();
        let addr = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .and_then(|a| a.parse::<SocketAddr>().ok())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        assert!(addr.ip().is_loopback() && addr.port() != 0, "{line}");
        daemon.addr = addr;
        daemon.url = url.to_owned();
        daemon
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the daemon has written to stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().expect("stderr lock")).into_owned()
    }

    /// Waits up to 3 s for `needle` to appear in the logs; panics with the logs if it does not.
    pub fn wait_for_log(&self, needle: &str) {
        let start = Instant::now();
        while !self.stderr().contains(needle) {
            assert!(
                start.elapsed() < Duration::from_secs(3),
                "{needle:?} is not in the logs:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// All of stderr, once the daemon has exited (or been killed).
    pub fn finished_stderr(&mut self) -> String {
        if let Some(reader) = self.stderr_done.take() {
            let _ = reader.join();
        }
        self.stderr()
    }

    /// Sends the daemon a signal by name (`-TERM`, `-HUP`, ...) with kill(1).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([name, &self.pid().to_string()])
            .status()
            .expect("kill(1)");
        assert!(status.success(), "kill {name}");
    }

    /// Kills the daemon now.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the daemon to exit; kills it and panics with its logs past `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            if start.elapsed() > limit {
                self.kill();
                panic!(
                    "the daemon did not exit within {limit:?}; stderr:\n{}",
                    self.finished_stderr()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The lines written to stdout after the listening line, so far.
    pub fn more_stdout(&self) -> Vec<String> {
        self.stdout.try_iter().collect()
    }

    /// One HTTP/1.1 exchange on a connection of its own.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Reply {
        send(self.addr, request(method, self.addr, path, headers, body)).await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Reply {
        self.call("GET", path, &[], "").await
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An HTTP answer, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the answer when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.text()))
    }
}

/// A request for `path` on `addr`, with these headers and body.
pub fn request(
    method: &str,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Request<Full<Bytes>> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("request")
}

/// Reads a whole response into a [`Reply`].
pub async fn collect(response: hyper::Response<hyper::body::Incoming>) -> Reply {
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes().to_vec();
    Reply {
        status: parts.status.as_u16(),
        version: parts.version,
        headers: parts.headers,
        body,
    }
}

/// Sends `request` over a new HTTP/1.1 connection to `addr`; panics past [`STEP`].
pub async fn send(addr: SocketAddr, request: Request<Full<Bytes>>) -> Reply {
    tokio::time::timeout(STEP, async {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("HTTP/1.1 handshake");
        tokio::spawn(conn);
        collect(sender.send_request(request).await.expect("response")).await
    })
    .await
    .unwrap_or_else(|_| panic!("no answer within {STEP:?}"))
}

/// `GET path` over a new HTTP/2 connection (prior knowledge) to `addr`; panics past [`STEP`].
pub async fn send_h2(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    tokio::time::timeout(STEP, async {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .expect("HTTP/2 handshake");
        tokio::spawn(conn);
        let mut builder = Request::builder().uri(format!("http://{addr}{path}"));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder.body(Full::new(Bytes::new())).expect("request");
        collect(sender.send_request(request).await.expect("response")).await
    })
    .await
    .unwrap_or_else(|_| panic!("no HTTP/2 answer within {STEP:?}"))
}
