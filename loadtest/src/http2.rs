//! HTTP/2 with prior knowledge over cleartext TCP (what `tessera serve` accepts on its plain
//! port), through hyper's client connection. Each connection carries `--streams` lanes, each
//! with one request in flight; the lanes of a connection share it and open its replacement
//! together (one of them connects, the others wait for it).
//!
//! The requests are the scenario's HTTP/1.1 encoding taken apart once before the run: method,
//! `http://HOST/PATH` (so `:scheme`, `:authority` and `:path`), the other headers and the body.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http2::{self as conn, SendRequest};
use hyper::header::{HeaderMap, HeaderName, HeaderValue, HOST};
use hyper::{Method, Response, Uri, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::time::Sleep;

use crate::run::{self, Lane, Plan, Protocol};
use crate::scenario::{self, Expect};
use crate::stats::ErrorKind;
use loadtest::http1::{self, Answer};

type Sender = SendRequest<Full<Bytes>>;

/// A request ready for HTTP/2: each send clones its parts.
#[derive(Debug)]
pub struct Request {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    expect: Expect,
}

impl Request {
    /// Takes apart a scenario request (HTTP/1.1, as [`scenario`] encodes it): the request line,
    /// `Host` (which becomes the URI's authority), the other header fields, and the body.
    pub fn prepare(request: &scenario::Request) -> anyhow::Result<Request> {
        let bytes = &*request.bytes;
        let end = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .context("a request without the end of its head")?;
        let head =
            std::str::from_utf8(&bytes[..end]).context("a request head that is not UTF-8")?;
        let body = Bytes::copy_from_slice(&bytes[end + 4..]);
        let mut lines = head.split("\r\n");
        let line = lines.next().unwrap_or_default();
        let mut words = line.split(' ');
        let (Some(method), Some(path), Some("HTTP/1.1"), None) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            bail!("a request line that is not HTTP/1.1: {line:?}");
        };
        let method = Method::from_bytes(method.as_bytes()).context("the request method")?;
        let mut host = None;
        let mut headers = HeaderMap::new();
        for field in lines {
            let (name, value) = field
                .split_once(':')
                .with_context(|| format!("a header line without a colon: {field:?}"))?;
            let name = HeaderName::from_bytes(name.as_bytes()).context("a header name")?;
            let value = HeaderValue::from_str(value.trim()).context("a header value")?;
            if name == HOST {
                host = Some(value);
            } else {
                headers.append(name, value);
            }
        }
        let host = host.context("a request without Host")?;
        let host = host.to_str().context("the Host header")?;
        let uri: Uri = format!("http://{host}{path}")
            .parse()
            .with_context(|| format!("http://{host}{path} as a URI"))?;
        Ok(Request {
            method,
            uri,
            headers,
            body,
            expect: request.expect,
        })
    }

    fn build(&self) -> hyper::Request<Full<Bytes>> {
        let mut r = hyper::Request::new(Full::new(self.body.clone()));
        *r.method_mut() = self.method.clone();
        *r.uri_mut() = self.uri.clone();
        *r.version_mut() = Version::HTTP_2;
        *r.headers_mut() = self.headers.clone();
        r
    }
}

/// One HTTP/2 connection, shared by the lanes opened on it.
#[derive(Debug)]
struct Shared {
    addr: SocketAddr,
    /// The connection in use; `None` once retired, until a lane opens the next one.
    current: RefCell<Option<Sender>>,
    /// Counts connections opened and retired: a lane holding an older sender refreshes it.
    generation: Cell<u64>,
    /// Held by the lane that looks for a usable connection (and opens one if need be).
    opening: tokio::sync::Mutex<()>,
}

/// One stream at a time on a shared HTTP/2 connection.
#[derive(Debug)]
pub struct Stream {
    shared: Rc<Shared>,
    timeout: Duration,
    /// This lane's handle to the connection of `generation`.
    sender: Option<Sender>,
    generation: u64,
    /// Fires at or after the current request's deadline; moved forward lazily, as under
    /// HTTP/1.1.
    watchdog: Pin<Box<Sleep>>,
    connected: bool,
}

impl Stream {
    fn usable(&self) -> bool {
        self.generation == self.shared.generation.get()
            && self.sender.as_ref().is_some_and(|s| !s.is_closed())
    }

    /// Drops the connection this lane used: the next request (of any of its lanes) opens a new
    /// one. Requests in flight on it finish there.
    fn retire(&mut self) {
        if self.generation == self.shared.generation.get() {
            self.shared.current.borrow_mut().take();
            self.shared.generation.set(self.generation + 1);
        }
        self.sender = None;
    }
}

/// Gives the lane the shared connection, opening one if there is none or it closed (a `GOAWAY`
/// from the server, which is not an error). Whether it opened one goes to `opened`.
async fn obtain(
    shared: &Shared,
    sender: &mut Option<Sender>,
    generation: &mut u64,
    opened: &Cell<bool>,
) -> Result<(), ErrorKind> {
    let _turn = shared.opening.lock().await;
    let current = shared
        .current
        .borrow()
        .as_ref()
        .filter(|s| !s.is_closed())
        .cloned();
    if let Some(current) = current {
        *sender = Some(current);
        *generation = shared.generation.get();
        return Ok(());
    }
    let fresh = connect(shared.addr).await?;
    opened.set(true);
    let next = shared.generation.get() + 1;
    shared.generation.set(next);
    *shared.current.borrow_mut() = Some(fresh.clone());
    *sender = Some(fresh);
    *generation = next;
    Ok(())
}

/// Opens a TCP connection and starts HTTP/2 on it; its driver runs as a task of this thread.
async fn connect(addr: SocketAddr) -> Result<Sender, ErrorKind> {
    let tcp = http1::open(addr).await.map_err(|_| ErrorKind::Connect)?;
    let (sender, connection) = conn::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(tcp))
        .await
        .map_err(|_| ErrorKind::Connect)?;
    tokio::task::spawn_local(async move {
        // Its failures reach the requests in flight on it.
        let _ = connection.await;
    });
    Ok(sender)
}

/// Reads the answer to the end, keeping the first body bytes for the answer checks.
async fn read(response: Response<Incoming>, count: bool) -> Result<Answer, ErrorKind> {
    let mut answer = Answer::with_status(response.status().as_u16(), count);
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| kind(&e))?;
        if let Some(data) = frame.data_ref() {
            answer.keep(data);
        }
    }
    Ok(answer)
}

/// The error kind of a failed request: `io` for the socket or a connection that ended,
/// `protocol` for what HTTP/2 itself refused (a stream reset, a `GOAWAY` with an error, a
/// malformed answer).
fn kind(error: &hyper::Error) -> ErrorKind {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.is::<std::io::Error>() {
            return ErrorKind::Io;
        }
        source = e.source();
    }
    if error.is_closed() || error.is_canceled() || error.is_incomplete_message() {
        ErrorKind::Io
    } else {
        ErrorKind::Protocol
    }
}

impl Lane for Stream {
    type Request = Request;

    fn lanes(plan: &Plan, connections: usize) -> Vec<Self> {
        let streams = match plan.protocol {
            Protocol::Http2 { streams } => streams,
            Protocol::Http1 => 1,
        };
        let mut lanes = Vec::with_capacity(connections * streams);
        for _ in 0..connections {
            let shared = Rc::new(Shared {
                addr: plan.addr,
                current: RefCell::new(None),
                generation: Cell::new(0),
                opening: tokio::sync::Mutex::new(()),
            });
            for _ in 0..streams {
                lanes.push(Stream {
                    shared: Rc::clone(&shared),
                    timeout: plan.timeout,
                    sender: None,
                    generation: 0,
                    watchdog: Box::pin(tokio::time::sleep(plan.timeout)),
                    connected: false,
                });
            }
        }
        lanes
    }

    fn expect(request: &Request) -> Expect {
        request.expect
    }

    fn take_connected(&mut self) -> bool {
        std::mem::take(&mut self.connected)
    }

    async fn connect_early(&mut self) {
        let opened = Cell::new(false);
        let Stream {
            shared,
            sender,
            generation,
            timeout,
            ..
        } = self;
        let get = obtain(shared, sender, generation, &opened);
        let _ = tokio::time::timeout(*timeout, get).await;
        self.connected |= opened.get();
    }

    async fn exchange(&mut self, request: &Request, start: Instant) -> Result<Answer, ErrorKind> {
        let count = request.expect.verdicts.is_some();
        let (deadline, timeout) = (start + self.timeout, self.timeout);
        let had_connection = self.usable();
        let opened = Cell::new(false);
        let result = {
            let Stream {
                shared,
                sender,
                generation,
                watchdog,
                ..
            } = &mut *self;
            let io = async {
                if !had_connection {
                    obtain(shared, sender, generation, &opened).await?;
                }
                let Some(s) = sender.as_mut() else {
                    return Err(ErrorKind::Connect);
                };
                let response = s.send_request(request.build()).await;
                read(response.map_err(|e| kind(&e))?, count).await
            };
            run::watched(io, watchdog, deadline, timeout, || {
                had_connection || opened.get()
            })
            .await
        };
        self.connected |= opened.get();
        // A timeout or a connection that ended: the next request opens a new connection, as
        // under HTTP/1.1. A stream the server reset leaves the connection in use.
        if let Err(kind) = result {
            let closed = self.sender.as_ref().is_none_or(Sender::is_closed);
            if kind == ErrorKind::Timeout || closed {
                self.retire();
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{Client, Target};
    use crate::tokens::{Kind, Token};

    #[test]
    fn scenario_requests_become_http2_requests() {
        let t = Target::parse("http://127.0.0.1:1/base").unwrap();
        let tokens = [Token {
            text: "a.b.c".into(),
            kind: Kind::Expired,
        }];
        let r = Request::prepare(&scenario::authz(&t.join("/v1/authz/x?y=1"), &tokens)[0]).unwrap();
        assert_eq!(r.method, Method::GET);
        assert_eq!(r.uri, "http://127.0.0.1:1/base/v1/authz/x?y=1");
        assert_eq!(r.headers.len(), 1);
        assert_eq!(r.headers["authorization"], "Bearer a.b.c");
        assert!(r.body.is_empty());
        assert_eq!(r.expect.status, 401);

        let client = Client {
            id: "dev".into(),
            secret: "dev-secret".into(),
        };
        let r =
            Request::prepare(&scenario::introspect(&t.join("/introspect"), &tokens, &client)[0])
                .unwrap();
        assert_eq!(r.method, Method::POST);
        assert_eq!(r.uri.authority().map(|a| a.as_str()), Some("127.0.0.1:1"));
        assert_eq!(r.uri.path(), "/base/introspect");
        assert!(r.headers.get(HOST).is_none());
        assert_eq!(r.headers["content-length"], "11");
        assert_eq!(&r.body[..], b"token=a.b.c");
        assert_eq!(r.expect.active, Some(false));
        let built = r.build();
        assert_eq!(built.version(), Version::HTTP_2);
        assert_eq!(
            built.headers()["authorization"],
            "Basic ZGV2OmRldi1zZWNyZXQ="
        );

        let r =
            Request::prepare(&scenario::get(&Target::parse("http://[::1]:9").unwrap())[0]).unwrap();
        assert_eq!(r.uri, "http://[::1]:9/");
        assert!(r.headers.is_empty());
    }

    #[test]
    fn broken_requests_are_refused() {
        for bad in [
            &b"GET / HTTP/1.1\r\nHost: h\r\n"[..],
            b"GET / HTTP/1.0\r\nHost: h\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nno colon\r\n\r\n",
        ] {
            let r = scenario::Request {
                bytes: bad.into(),
                expect: Expect::OK,
            };
            assert!(
                Request::prepare(&r).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
