//! Writes the example key set and tokens in `examples/` that `make run` verifies.
//!
//! `cargo run -p tessera --example make-examples -- examples` makes a fresh ES256 key pair, keeps
//! only its public half (`jwks.json`), and signs one valid token and a few hostile ones. The
//! private key is dropped when the program ends.

use std::path::PathBuf;

use jose::{b64, Algorithm, SigningKey};

/// 2026-01-01T00:00:00Z: the tokens are issued then; `make run` verifies at `NOW`.
const IAT: i64 = 1_767_225_600;
const NOW: i64 = IAT + 600;
const KID: &str = "example-es256";
const ISS: &str = "https://issuer.example";

fn claims(aud: &str, iat: i64, exp: i64) -> String {
    format!(
        r#"{{"iss":"{ISS}","sub":"user-42","aud":"{aud}","iat":{iat},"exp":{exp},"jti":"ex-{iat}-{aud}","scope":"orders:read"}}"#
    )
}

fn main() -> anyhow::Result<()> {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "examples".into()));
    let key = SigningKey::generate(Algorithm::ES256)?.with_kid(KID);
    let jwk = key.jwk();
    let jwks = format!("{{\"keys\":[{jwk}]}}\n");

    let sign = |claims: &str| key.jwt(Some("JWT"), claims);

    let valid = sign(&claims("api://orders", IAT, IAT + 3600))?;
    let expired = sign(&claims("api://orders", IAT - 7200, IAT - 3600))?;
    let wrong_audience = sign(&claims("api://billing", IAT, IAT + 3600))?;
    // The valid token's payload swapped for another subject's, signature kept.
    let parts: Vec<&str> = valid.split('.').collect();
    let forged = claims("api://orders", IAT, IAT + 3600).replace("user-42", "admin");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64::encode(forged.as_bytes()),
        parts[2]
    );
    // alg none with the claims of a valid token and no signature.
    let none = format!(
        "{}.{}.",
        b64::encode(br#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    // Key confusion: HS256 "signed" with the public JWK text as the HMAC secret.
    let confusion = SigningKey::hmac(Algorithm::HS256, jwk.as_bytes())?
        .with_kid(KID)
        .jwt(Some("JWT"), &forged)?;

    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("jwks.json"), jwks)?;
    for (name, token) in [
        ("valid", valid),
        ("expired", expired),
        ("wrong-audience", wrong_audience),
        ("tampered", tampered),
        ("alg-none", none),
        ("hs256-key-confusion", confusion),
    ] {
        std::fs::write(dir.join(format!("{name}.jwt")), format!("{token}\n"))?;
    }
    println!("wrote {} (verify at --now {NOW})", dir.display());
    Ok(())
}
