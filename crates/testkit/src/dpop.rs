//! DPoP proofs (RFC 9449 section 4.2) as a client makes them, for the tests that present them.

use std::sync::atomic::{AtomicUsize, Ordering};

use aws_lc_rs::digest;
use jose::SigningKey;
use serde_json::{json, Value};

/// `key`'s public JWK as a proof's header carries it: no `kid`, `alg` or `use`.
pub fn public_jwk(key: &SigningKey) -> Value {
    let mut jwk: Value = serde_json::from_str(&key.jwk()).expect("jwk");
    if let Some(members) = jwk.as_object_mut() {
        for member in ["kid", "alg", "use"] {
            members.remove(member);
        }
    }
    jwk
}

/// `ath`: the base64url SHA-256 of the access token.
pub fn ath(token: &str) -> String {
    jose::b64::encode(digest::digest(&digest::SHA256, token.as_bytes()).as_ref())
}

/// A `jti` no other proof of this process has.
pub fn fresh_jti() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "proof-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The claims of a proof for `htm` `htu` made now, with `ath` for `token` when there is one,
/// and a fresh `jti`.
pub fn claims(htm: &str, htu: &str, token: Option<&str>) -> Value {
    let mut claims = json!({"jti": fresh_jti(), "htm": htm, "htu": htu,
        "iat": crate::unix_now()});
    if let Some(token) = token {
        claims["ath"] = ath(token).into();
    }
    claims
}

/// The proof with these claims, signed by `key` (header `typ` `dpop+jwt`, `alg` the key's,
/// `jwk` its public half).
pub fn sign(key: &SigningKey, claims: &Value) -> String {
    let header = json!({"typ": "dpop+jwt", "alg": key.alg().name(), "jwk": public_jwk(key)});
    let input =
        jose::SigningInput::new(header.to_string().as_bytes(), claims.to_string().as_bytes());
    let signature = key.sign(input.as_bytes()).expect("signature");
    input.into_compact(&signature)
}
