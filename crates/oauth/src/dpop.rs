//! DPoP proofs (RFC 9449 section 4.3), checked without I/O: the JWS with the key it carries
//! ([`jose::proof`]), then `typ`, `htm`, `htu` (RFC 3986 normalisation, [`normalize_uri`]),
//! `iat` within a window of `now`, `jti`, `ath` for a proof presented with an access token, and
//! the key's RFC 7638 thumbprint against the token's `cnf.jkt`.
//!
//! What needs state is the caller's: that no `jti` is accepted twice within the window (the
//! daemon's replay cache, local or shared through the store) and whether a `nonce` is one the
//! server gave out.

use aws_lc_rs::digest;
use jose::json::{self, JsonError, Value};
use jose::{Algorithm, Limits};

/// The `typ` of a DPoP proof.
pub const PROOF_TYP: &str = "dpop+jwt";
/// The longest proof read (an RSA-4096 proof is under 2 KiB).
pub const MAX_PROOF_BYTES: usize = 8 * 1024;
/// The longest `jti` remembered.
pub const MAX_JTI_BYTES: usize = 256;
/// How far `iat` may lie from now by default, either way.
pub const DEFAULT_WINDOW_S: i64 = 60;
/// The algorithms proofs may be signed with by default: asymmetric, as section 4.3 requires.
pub const DEFAULT_ALGORITHMS: &[Algorithm] = &[
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::ES512,
    Algorithm::EdDSA,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
];

/// What a proof must match: the request it came with.
#[derive(Clone, Copy, Debug)]
pub struct Expected<'a> {
    /// The HTTP method of the original request.
    pub method: &'a str,
    /// The URI of the original request, absolute, as the protected API's configured public
    /// origin and the request's path make it (never from a client's `Host`).
    pub uri: &'a str,
    /// The access token the proof came with (`ath` is then required and checked); `None` at
    /// the token endpoint.
    pub access_token: Option<&'a str>,
    /// The thumbprint the token is bound to (`cnf.jkt`); `None` when a binding is being made.
    pub jkt: Option<&'a str>,
    pub now: i64,
    /// Seconds `iat` may lie from `now`, either way.
    pub window_s: i64,
    pub algorithms: &'a [Algorithm],
}

/// A proof that passed every stateless check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    /// The RFC 7638 thumbprint of the proof's key (base64url of SHA-256).
    pub jkt: String,
    pub jti: String,
    pub iat: i64,
    /// The proof's `nonce`, for the caller to check against the ones it gave out.
    pub nonce: Option<String>,
    pub alg: Algorithm,
}

/// Why a proof was refused: what the `invalid_dpop_proof` error's description says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

fn refused(what: impl Into<String>) -> Refused {
    Refused(what.into())
}

/// Checks `proof` against `expected` (RFC 9449 section 4.3, steps 2 to 12 less the replay
/// and nonce checks, which need state).
pub fn check(proof: &str, expected: &Expected<'_>) -> Result<Checked, Refused> {
    let mut limits = Limits::default();
    limits.max_token_len = MAX_PROOF_BYTES;
    let verified = jose::proof::verify(proof.as_bytes(), expected.algorithms, &limits)
        .map_err(|e| refused(format!("the proof: {e}")))?;
    if !verified
        .typ
        .as_deref()
        .is_some_and(|t| jose::jwt::media_type_is(t, PROOF_TYP))
    {
        return Err(refused("typ is not dpop+jwt"));
    }
    let payload =
        std::str::from_utf8(&verified.payload).map_err(|_| refused("claims are not UTF-8"))?;
    let claims = json::read_object::<JsonError>(payload, 4, |_, _| Ok(()))
        .map_err(|e| refused(format!("claims: {e}")))?;
    let string = |name: &'static str| -> Result<Option<String>, Refused> {
        match claims.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.to_str().into_owned())),
            Some(_) => Err(refused(format!("{name} must be a string"))),
        }
    };
    let required =
        |name: &'static str| string(name)?.ok_or_else(|| refused(format!("{name} is missing")));
    let jti = required("jti")?;
    if jti.is_empty() || jti.len() > MAX_JTI_BYTES {
        return Err(refused(format!("jti must be 1 to {MAX_JTI_BYTES} bytes")));
    }
    if required("htm")? != expected.method {
        return Err(refused("htm is not the request's method"));
    }
    let htu = required("htu")?;
    match (normalize_uri(&htu), normalize_uri(expected.uri)) {
        (Some(a), Some(b)) if a == b => {}
        (None, _) => return Err(refused("htu is not an http or https URI")),
        _ => return Err(refused("htu is not the request's URI")),
    }
    let iat = match claims.get("iat") {
        None => return Err(refused("iat is missing")),
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|n| n.abs() < 1e15)
            .ok_or_else(|| refused("iat must be a number"))?
            .floor() as i64,
        Some(_) => return Err(refused("iat must be a number")),
    };
    if (iat - expected.now).abs() > expected.window_s {
        return Err(refused("iat is outside the accepted window"));
    }
    match (expected.access_token, string("ath")?) {
        (Some(token), Some(ath)) => {
            let hash = digest::digest(&digest::SHA256, token.as_bytes());
            if jose::b64::encode(hash.as_ref()) != ath {
                return Err(refused("ath is not the access token's hash"));
            }
        }
        (Some(_), None) => return Err(refused("ath is missing")),
        (None, _) => {}
    }
    let nonce = string("nonce")?;
    let jkt = verified
        .key
        .public()
        .map(jose::PublicJwk::thumbprint)
        .ok_or_else(|| refused("the proof's key is not public"))?;
    if let Some(bound) = expected.jkt {
        if !constant_time_eq(bound.as_bytes(), jkt.as_bytes()) {
            return Err(refused(
                "the proof's key is not the one the token is bound to",
            ));
        }
    }
    Ok(Checked {
        jkt,
        jti,
        iat,
        nonce,
        alg: verified.alg,
    })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An `http` or `https` URI as RFC 9449 section 4.3 compares `htu`: without query and
/// fragment, RFC 3986 section 6.2.2 syntax-based normalisation (scheme and host in lower case,
/// percent-encodings in upper case and unreserved ones decoded, dot segments removed) and
/// section 6.2.3 scheme-based (the default port and an empty port dropped, an empty path made
/// `/`). `None` for anything else: another scheme, user information, a malformed authority,
/// port or escape, a character that is not URI text.
pub fn normalize_uri(uri: &str) -> Option<String> {
    if uri.len() > 8 * 1024 || !uri.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    let (scheme, rest) = uri.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port: u16 = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (literal, after) = v6.split_once(']')?;
            if !literal
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
            {
                return None;
            }
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':')?),
            };
            (format!("[{}]", literal.to_ascii_lowercase()), port)
        }
        None => {
            let (host, port) = match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            };
            let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
            if host.is_empty() || !host.bytes().all(allowed) {
                return None;
            }
            (host.to_ascii_lowercase(), port)
        }
    };
    let port = match port {
        None | Some("") => None,
        Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => {
            let port: u16 = p.parse().ok()?;
            (port != default_port).then(|| port.to_string())
        }
        Some(_) => return None,
    };
    let path = remove_dot_segments(&normalize_escapes(path)?);
    let mut out = format!("{scheme}://{host}");
    if let Some(port) = port {
        out.push(':');
        out.push_str(&port);
    }
    out.push_str(if path.is_empty() { "/" } else { &path });
    Some(out)
}

/// Percent-encodings in upper case, those of unreserved characters decoded.
fn normalize_escapes(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let value = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            if value.is_ascii_alphanumeric() || matches!(value, b'-' | b'.' | b'_' | b'~') {
                out.push(char::from(value));
            } else {
                out.push_str(&format!("%{value:02X}"));
            }
            i += 3;
        } else {
            out.push(char::from(bytes[i]));
            i += 1;
        }
    }
    Some(out)
}

/// RFC 3986 section 5.2.4.
fn remove_dot_segments(path: &str) -> String {
    let mut output: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    for (i, segment) in segments.iter().enumerate().skip(1) {
        let last = i == segments.len() - 1;
        match *segment {
            "." => {
                if last {
                    output.push("");
                }
            }
            ".." => {
                output.pop();
                if last {
                    output.push("");
                }
            }
            s => output.push(s),
        }
    }
    if output.is_empty() {
        return String::new();
    }
    let mut out = String::with_capacity(path.len());
    for segment in output {
        out.push('/');
        out.push_str(segment);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use jose::SigningKey;
    use serde_json::{json, Value as Json};

    const URI: &str = "https://api.example/orders/7";
    const TOKEN: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln";
    const NOW: i64 = 1_800_000_000;

    fn public_jwk(key: &SigningKey) -> Json {
        let mut jwk: Json = serde_json::from_str(&key.jwk()).expect("jwk");
        for member in ["kid", "alg", "use"] {
            jwk.as_object_mut().map(|o| o.remove(member));
        }
        jwk
    }

    fn ath(token: &str) -> String {
        jose::b64::encode(digest::digest(&digest::SHA256, token.as_bytes()).as_ref())
    }

    /// A proof by `key` for GET `URI` with `TOKEN`, its header and claims changed by the
    /// members of `header` and `claims` (null removes one).
    fn proof(key: &SigningKey, header: Json, claims: Json) -> String {
        let mut h = json!({"typ": "dpop+jwt", "alg": key.alg().name(), "jwk": public_jwk(key)});
        let mut c = json!({"jti": "e1j3V_bKic8-LAEB", "htm": "GET", "htu": URI, "iat": NOW,
            "ath": ath(TOKEN)});
        for (base, changes) in [(&mut h, header), (&mut c, claims)] {
            for (name, value) in changes.as_object().cloned().unwrap_or_default() {
                if value.is_null() {
                    base.as_object_mut().map(|o| o.remove(&name));
                } else {
                    base[&name] = value;
                }
            }
        }
        let input = jose::SigningInput::new(h.to_string().as_bytes(), c.to_string().as_bytes());
        let signature = key.sign(input.as_bytes()).expect("signature");
        input.into_compact(&signature)
    }

    fn expected<'a>(jkt: Option<&'a str>) -> Expected<'a> {
        Expected {
            method: "GET",
            uri: URI,
            access_token: Some(TOKEN),
            jkt,
            now: NOW,
            window_s: DEFAULT_WINDOW_S,
            algorithms: DEFAULT_ALGORITHMS,
        }
    }

    fn key() -> SigningKey {
        SigningKey::generate(Algorithm::ES256).expect("key")
    }

    #[test]
    fn a_fresh_proof_by_the_bound_key_passes() {
        for alg in [Algorithm::ES256, Algorithm::EdDSA] {
            let key = SigningKey::generate(alg).expect("key");
            let jkt = key.public().expect("public").thumbprint();
            let checked = check(
                &proof(&key, json!({}), json!({"nonce": "n1"})),
                &expected(Some(&jkt)),
            )
            .expect("valid");
            assert_eq!(checked.jkt, jkt);
            assert_eq!(checked.jti, "e1j3V_bKic8-LAEB");
            assert_eq!((checked.iat, checked.nonce.as_deref()), (NOW, Some("n1")));
        }
        // At the token endpoint: no access token, no binding yet.
        let key = key();
        let at_token = Expected {
            method: "POST",
            uri: "https://tessera.example/token",
            access_token: None,
            jkt: None,
            ..expected(None)
        };
        let p = proof(
            &key,
            json!({}),
            json!({"htm": "POST", "htu": "https://tessera.example/token", "ath": null}),
        );
        assert!(check(&p, &at_token).is_ok());
    }

    #[test]
    fn the_conformance_suites_negative_cases_are_refused() {
        let key = key();
        let jkt = key.public().expect("public").thumbprint();
        let refused = |p: String, what: &str| {
            let e = check(&p, &expected(Some(&jkt))).expect_err(what);
            assert!(e.0.contains(what), "{what}: {e}");
        };
        for claim in ["jti", "htm", "htu", "iat"] {
            refused(
                proof(&key, json!({}), json!({claim: null})),
                &format!("{claim} is missing"),
            );
        }
        refused(
            proof(&key, json!({}), json!({"ath": null})),
            "ath is missing",
        );
        refused(proof(&key, json!({"typ": "JWT"}), json!({})), "typ");
        refused(proof(&key, json!({"typ": null}), json!({})), "typ");
        // none: unsigned, whatever the header says.
        let header = json!({"typ": "dpop+jwt", "alg": "none", "jwk": public_jwk(&key)});
        let none = format!(
            "{}.{}.",
            jose::b64::encode(header.to_string().as_bytes()),
            jose::b64::encode(br#"{"jti":"x","htm":"GET"}"#)
        );
        refused(none, "algorithm");
        // A bad signature: another key signed a proof carrying this key.
        let other = SigningKey::generate(Algorithm::ES256).expect("key");
        refused(
            proof(&other, json!({"jwk": public_jwk(&key)}), json!({})),
            "signature",
        );
        // A private jwk.
        let mut private = public_jwk(&key);
        private["d"] = json!("AAAA");
        refused(proof(&key, json!({"jwk": private}), json!({})), "private");
        refused(proof(&key, json!({}), json!({"htm": "POST"})), "htm");
        refused(proof(&key, json!({}), json!({"htm": "get"})), "htm");
        refused(
            proof(
                &key,
                json!({}),
                json!({"htu": "https://api.example/orders/8"}),
            ),
            "htu",
        );
        refused(
            proof(
                &key,
                json!({}),
                json!({"htu": "https://other.example/orders/7"}),
            ),
            "htu",
        );
        refused(
            proof(
                &key,
                json!({}),
                json!({"htu": "http://api.example/orders/7"}),
            ),
            "htu",
        );
        refused(
            proof(
                &key,
                json!({}),
                json!({"htu": "https://api.example:8443/orders/7"}),
            ),
            "htu",
        );
        refused(proof(&key, json!({}), json!({"htu": "/orders/7"})), "htu");
        refused(proof(&key, json!({}), json!({"iat": NOW - 3600})), "iat");
        refused(proof(&key, json!({}), json!({"iat": NOW + 3600})), "iat");
        refused(proof(&key, json!({}), json!({"iat": "now"})), "iat");
        refused(
            proof(&key, json!({}), json!({"ath": ath("another token")})),
            "ath",
        );
        refused(proof(&key, json!({}), json!({"jti": ""})), "jti");
        refused(
            proof(&key, json!({}), json!({"jti": "j".repeat(300)})),
            "jti",
        );
        refused(proof(&key, json!({}), json!({"jti": 7})), "jti");
        // Another key, signing correctly: not the one the token is bound to.
        refused(proof(&other, json!({}), json!({})), "bound");
        // A window edge: exactly 60 s off passes, 61 does not.
        assert!(check(
            &proof(&key, json!({}), json!({"iat": NOW - 60})),
            &expected(Some(&jkt))
        )
        .is_ok());
        refused(proof(&key, json!({}), json!({"iat": NOW + 61})), "iat");
        // Duplicate claims are refused by the strict JSON reader.
        let header =
            json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": public_jwk(&key)}).to_string();
        let claims = format!(
            r#"{{"jti":"a","jti":"b","htm":"GET","htu":"{URI}","iat":{NOW},"ath":"{}"}}"#,
            ath(TOKEN)
        );
        let input = jose::SigningInput::new(header.as_bytes(), claims.as_bytes());
        let signature = key.sign(input.as_bytes()).expect("signature");
        refused(input.into_compact(&signature), "claims");
        // Oversized.
        let big = proof(&key, json!({}), json!({"pad": "p".repeat(MAX_PROOF_BYTES)}));
        refused(big, "proof");
    }

    #[test]
    fn htu_matches_by_rfc3986_normalisation() {
        let key = key();
        let jkt = key.public().expect("public").thumbprint();
        for htu in [
            "https://api.example/orders/7?page=2",
            "https://api.example/orders/7#top",
            "https://API.Example/orders/7",
            "HTTPS://api.example/orders/7",
            "https://api.example:443/orders/7",
            "https://api.example:/orders/7",
            "https://api.example/orders/%37",
            "https://api.example/orders/./7",
            "https://api.example/orders/x/../7",
        ] {
            let p = proof(&key, json!({}), json!({"htu": htu}));
            assert!(check(&p, &expected(Some(&jkt))).is_ok(), "{htu}");
        }
    }

    #[test]
    fn uris_normalise() {
        let n = |u: &str| normalize_uri(u);
        assert_eq!(n("http://A.example").as_deref(), Some("http://a.example/"));
        assert_eq!(
            n("http://a.example:80/x").as_deref(),
            Some("http://a.example/x")
        );
        assert_eq!(
            n("http://a.example:0080/x").as_deref(),
            Some("http://a.example/x")
        );
        assert_eq!(
            n("https://a.example:80/x").as_deref(),
            Some("https://a.example:80/x")
        );
        assert_eq!(
            n("https://[2001:DB8::1]:443/").as_deref(),
            Some("https://[2001:db8::1]/")
        );
        assert_eq!(
            n("https://a.example/%7e%2f").as_deref(),
            Some("https://a.example/~%2F")
        );
        assert_eq!(
            n("https://a.example/a/b/../../..").as_deref(),
            Some("https://a.example/")
        );
        assert_eq!(
            n("https://a.example/a/./b/.").as_deref(),
            Some("https://a.example/a/b/")
        );
        // The path's case is kept.
        assert_ne!(n("https://a.example/A"), n("https://a.example/a"));
        for bad in [
            "ftp://a.example/",
            "https://user@a.example/",
            "https:///x",
            "https://a.example:99999/",
            "https://a.example:x/",
            "https://a.example/%zz",
            "https://a.example/%4",
            "https://a example/",
            "https://a.example/\u{e9}",
            "//a.example/",
            "https://[::1/",
        ] {
            assert_eq!(n(bad), None, "{bad}");
        }
    }
}
