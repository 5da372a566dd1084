//! What a run sends: the target, and every request pre-encoded once, before the run, with the
//! answer it should get.

use std::net::{SocketAddr, ToSocketAddrs as _};

use anyhow::{bail, Context as _};
use base64::Engine as _;

use loadtest::http1::Verdicts;

use crate::tokens::Token;

/// Where requests go.
#[derive(Clone, Debug)]
pub struct Target {
    /// The URL requests go to, for the report.
    pub url: String,
    pub addr: SocketAddr,
    /// The `Host` header.
    pub host: String,
    /// The request target (path and query).
    pub path: String,
}

impl Target {
    /// An `http://` URL; its host is resolved now, once.
    pub fn parse(url: &str) -> anyhow::Result<Target> {
        let rest = match url.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => {
                bail!("{url}: https is not supported; load the daemon over plain http")
            }
            _ => bail!("{url}: not an http:// URL"),
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(at) if rest.as_bytes()[at] == b'/' => (&rest[..at], &rest[at..]),
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        if authority.is_empty() || authority.contains('@') {
            bail!("{url}: needs a host (and no user info)");
        }
        let visible = |s: &str| s.bytes().all(|b| b.is_ascii_graphic());
        if !visible(authority) || !visible(&path) {
            bail!("{url}: spaces and control characters must be percent-encoded");
        }
        let with_port = if authority.ends_with(']') || !authority.contains(':') {
            format!("{authority}:80")
        } else {
            authority.to_string()
        };
        let addr = with_port
            .to_socket_addrs()
            .with_context(|| format!("resolving {authority}"))?
            .next()
            .with_context(|| format!("{authority} has no address"))?;
        Ok(Target {
            url: format!("http://{authority}{path}"),
            addr,
            host: authority.to_string(),
            path,
        })
    }

    /// The same server, another path: `base` path prefix (without a trailing `/`) + `path`.
    pub fn join(&self, path: &str) -> Target {
        let base = self
            .path
            .split('?')
            .next()
            .unwrap_or("")
            .trim_end_matches('/');
        let path = format!("{base}{path}");
        Target {
            url: format!("http://{}{path}", self.host),
            addr: self.addr,
            host: self.host.clone(),
            path,
        }
    }
}

/// The answer a request should get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expect {
    pub status: u16,
    /// Introspection: whether the answer says `"active":true`.
    pub active: Option<bool>,
    /// Batch verify: how many of the answer's verdicts say `{"active":true` and how many
    /// `{"active":false`, in the order of the request's tokens' kinds.
    pub verdicts: Option<Verdicts>,
    /// Whether the answer's first body bytes (the [`PREFIX`](loadtest::http1::PREFIX) an
    /// answer keeps) contain this, such as `"access_token"` at the start of a token response.
    pub contains: Option<&'static [u8]>,
}

impl Expect {
    pub const OK: Expect = Expect {
        status: 200,
        active: None,
        verdicts: None,
        contains: None,
    };
}

/// One pre-encoded request.
#[derive(Clone)]
pub struct Request {
    pub bytes: Box<[u8]>,
    pub expect: Expect,
}

impl std::fmt::Debug for Request {
    // The bytes hold tokens and credentials: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("len", &self.bytes.len())
            .field("expect", &self.expect)
            .finish_non_exhaustive()
    }
}

/// HTTP Basic credentials of a client (introspection, batch verify, the token endpoint).
#[derive(Clone)]
pub struct Client {
    pub id: String,
    pub secret: String,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Client {
    fn header(&self) -> String {
        // RFC 6749 2.3.1: both parts form-encoded before they are joined.
        let joined = format!("{}:{}", form_encode(&self.id), form_encode(&self.secret));
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(joined)
        )
    }
}

fn head(method: &str, target: &Target) -> String {
    format!(
        "{method} {} HTTP/1.1\r\nHost: {}\r\n",
        target.path, target.host
    )
}

/// An authenticated `POST` of `body` to the target.
fn post(target: &Target, auth: &str, content_type: &str, body: &str, expect: Expect) -> Request {
    let mut r = head("POST", target);
    r.push_str(&format!(
        "Authorization: {auth}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    ));
    r.push_str(body);
    Request {
        bytes: r.into_bytes().into(),
        expect,
    }
}

/// `GET` of the target, expecting 200.
pub fn get(target: &Target) -> Vec<Request> {
    let mut r = head("GET", target);
    r.push_str("\r\n");
    vec![Request {
        bytes: r.into_bytes().into(),
        expect: Expect::OK,
    }]
}

/// Forward-auth: `Authorization: Bearer`, 200 for a valid token and 401 for the others.
pub fn authz(target: &Target, tokens: &[Token]) -> Vec<Request> {
    tokens
        .iter()
        .map(|t| {
            let mut r = head("GET", target);
            r.push_str("Authorization: Bearer ");
            r.push_str(&t.text);
            r.push_str("\r\n\r\n");
            Request {
                bytes: r.into_bytes().into(),
                expect: Expect {
                    status: if t.kind.is_valid() { 200 } else { 401 },
                    ..Expect::OK
                },
            }
        })
        .collect()
}

/// RFC 7662 introspection: 200, with `"active":true` exactly for the valid tokens.
pub fn introspect(target: &Target, tokens: &[Token], client: &Client) -> Vec<Request> {
    let auth = client.header();
    tokens
        .iter()
        .map(|t| {
            let body = format!("token={}", form_encode(&t.text));
            let expect = Expect {
                active: Some(t.kind.is_valid()),
                ..Expect::OK
            };
            post(
                target,
                &auth,
                "application/x-www-form-urlencoded",
                &body,
                expect,
            )
        })
        .collect()
}

/// What a token response starts with (RFC 6749 5.1, as the daemon writes it): within the first
/// [`PREFIX`](loadtest::http1::PREFIX) bytes of the body, where answers are checked.
pub const ACCESS_TOKEN: &[u8] = b"{\"access_token\":";

/// The token endpoint (RFC 6749 4.4): a client credentials grant, authenticated with HTTP Basic
/// (`client_secret_basic`), asking for `scope` if given; 200 with an `access_token` expected.
/// One request, sent again and again: every answer is a new token the daemon signed.
pub fn token(target: &Target, client: &Client, scope: Option<&str>) -> Vec<Request> {
    let mut body = String::from("grant_type=client_credentials");
    if let Some(scope) = scope {
        body.push_str("&scope=");
        body.push_str(&form_encode(scope));
    }
    let expect = Expect {
        contains: Some(ACCESS_TOKEN),
        ..Expect::OK
    };
    vec![post(
        target,
        &client.header(),
        "application/x-www-form-urlencoded",
        &body,
        expect,
    )]
}

/// Batch verify: `batch` tokens per request, taken in turn from `tokens` (wrapping around), as
/// many requests as it takes to send every token once.
pub fn verify_batch(
    target: &Target,
    tokens: &[Token],
    batch: usize,
    client: &Client,
) -> Vec<Request> {
    let auth = client.header();
    let count = tokens.len().div_ceil(batch).max(1);
    (0..count)
        .map(|j| {
            let mut body = String::from("{\"tokens\":[");
            let mut verdicts = Verdicts::default();
            for k in 0..batch {
                if k > 0 {
                    body.push(',');
                }
                let token = &tokens[(j * batch + k) % tokens.len()];
                jose::json::write_str(&mut body, &token.text);
                if token.kind.is_valid() {
                    verdicts.active += 1;
                } else {
                    verdicts.inactive += 1;
                }
            }
            body.push_str("]}");
            let expect = Expect {
                verdicts: Some(verdicts),
                ..Expect::OK
            };
            post(target, &auth, "application/json", &body, expect)
        })
        .collect()
}

/// `application/x-www-form-urlencoded` encoding of one value.
pub fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::Kind;

    #[test]
    fn urls() {
        let t = Target::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!((t.host.as_str(), t.path.as_str()), ("127.0.0.1:8080", "/"));
        assert_eq!(t.addr.port(), 8080);
        let t = Target::parse("http://127.0.0.1/a/b?x=1").unwrap();
        assert_eq!(t.path, "/a/b?x=1");
        assert_eq!(t.addr.port(), 80);
        let t = Target::parse("HTTP://[::1]:9/").unwrap();
        assert_eq!(t.addr.port(), 9);
        assert_eq!(t.join("/v1/authz").path, "/v1/authz");
        let t = Target::parse("http://127.0.0.1:1/prefix/").unwrap();
        assert_eq!(
            t.join("/introspect").url,
            "http://127.0.0.1:1/prefix/introspect"
        );
        for bad in [
            "https://x",
            "ftp://x",
            "127.0.0.1:80",
            "http://",
            "http://u@h/",
            "http://h/a b",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn requests_are_complete_http() {
        let t = Target::parse("http://127.0.0.1:1").unwrap();
        let tokens = [
            Token {
                text: "a.b.c".into(),
                kind: Kind::Valid,
            },
            Token {
                text: "d.e.f".into(),
                kind: Kind::Expired,
            },
        ];
        let r = authz(&t.join("/v1/authz"), &tokens);
        assert_eq!(
            &*r[1].bytes,
            b"GET /v1/authz HTTP/1.1\r\nHost: 127.0.0.1:1\r\nAuthorization: Bearer d.e.f\r\n\r\n"
        );
        assert_eq!(r[1].expect.status, 401);
        let client = Client {
            id: "dev".into(),
            secret: "dev-secret".into(),
        };
        let r = introspect(&t.join("/introspect"), &tokens, &client);
        let text = String::from_utf8(r[0].bytes.to_vec()).unwrap();
        assert!(text.starts_with("POST /introspect HTTP/1.1\r\n"));
        assert!(text.contains("Authorization: Basic ZGV2OmRldi1zZWNyZXQ=\r\n"));
        assert!(text.ends_with("Content-Length: 11\r\n\r\ntoken=a.b.c"));
        assert_eq!(r[1].expect.active, Some(false));
        let r = verify_batch(&t.join("/v1/verify"), &tokens, 3, &client);
        assert_eq!(r.len(), 1);
        assert!(String::from_utf8(r[0].bytes.to_vec())
            .unwrap()
            .ends_with("{\"tokens\":[\"a.b.c\",\"d.e.f\",\"a.b.c\"]}"));
        assert_eq!(form_encode("a b+c/é"), "a+b%2Bc%2F%C3%A9");
        // The token endpoint: both halves of the credentials form-encoded (RFC 6749 2.3.1).
        let odd = Client {
            id: "a b".into(),
            secret: "s:%".into(),
        };
        let r = token(&t.join("/token"), &odd, Some("orders:read orders:write"));
        assert_eq!(r.len(), 1);
        let text = String::from_utf8(r[0].bytes.to_vec()).unwrap();
        let basic = base64::engine::general_purpose::STANDARD.encode("a+b:s%3A%25");
        assert!(text.starts_with("POST /token HTTP/1.1\r\n"), "{text}");
        assert!(text.contains(&format!("Authorization: Basic {basic}\r\n")));
        assert!(text.contains("Content-Type: application/x-www-form-urlencoded\r\n"));
        assert!(text
            .ends_with("\r\n\r\ngrant_type=client_credentials&scope=orders%3Aread+orders%3Awrite"));
        assert_eq!(r[0].expect.status, 200);
        assert_eq!(r[0].expect.contains, Some(ACCESS_TOKEN));
        let r = token(&t.join("/token"), &client, None);
        assert!(String::from_utf8(r[0].bytes.to_vec())
            .unwrap()
            .ends_with("Content-Length: 29\r\n\r\ngrant_type=client_credentials"));
    }
}
