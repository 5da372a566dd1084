//! Public keys as issuers publish them: the JWK of a signing key and its RFC 7638 thumbprint,
//! which serves as the `kid`.

use aws_lc_rs::digest;

use crate::{b64, json, Algorithm};

/// The public half of a signing key, in the members a JWK carries.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicJwk {
    /// `n`, `e`: big-endian, no leading zero octets.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// `crv` (`P-256`, `P-384`, `P-521`), `x`, `y`: full-length coordinates.
    Ec {
        crv: &'static str,
        x: Vec<u8>,
        y: Vec<u8>,
    },
    /// `x`: the 32-byte Ed25519 public key.
    Ed25519 { x: Vec<u8> },
}

impl PublicJwk {
    /// An EC key from an uncompressed SEC 1 point (`04 ‖ x ‖ y`), for the curve of `alg`.
    pub fn ec_from_point(alg: Algorithm, point: &[u8]) -> Option<Self> {
        let (crv, len) = match alg {
            Algorithm::ES256 => ("P-256", 32),
            Algorithm::ES384 => ("P-384", 48),
            Algorithm::ES512 => ("P-521", 66),
            _ => return None,
        };
        match point.split_first() {
            Some((0x04, xy)) if xy.len() == 2 * len => Some(PublicJwk::Ec {
                crv,
                x: xy[..len].to_vec(),
                y: xy[len..].to_vec(),
            }),
            _ => None,
        }
    }

    /// The required members in lexicographic order, as RFC 7638 section 3 hashes them.
    pub(crate) fn canonical(&self) -> String {
        match self {
            PublicJwk::Rsa { n, e } => format!(
                r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                b64::encode(e),
                b64::encode(n)
            ),
            PublicJwk::Ec { crv, x, y } => format!(
                r#"{{"crv":"{crv}","kty":"EC","x":"{}","y":"{}"}}"#,
                b64::encode(x),
                b64::encode(y)
            ),
            PublicJwk::Ed25519 { x } => {
                format!(
                    r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
                    b64::encode(x)
                )
            }
        }
    }

    /// The RFC 7638 JWK thumbprint (SHA-256), base64url.
    pub fn thumbprint(&self) -> String {
        b64::encode(digest::digest(&digest::SHA256, self.canonical().as_bytes()).as_ref())
    }

    /// The JWK for a verification key set: the canonical members plus `kid`, `alg` and
    /// `use: sig`.
    pub fn to_json(&self, kid: &str, alg: Algorithm) -> String {
        let canonical = self.canonical();
        let mut out = String::with_capacity(canonical.len() + 64);
        out.push_str(&canonical[..canonical.len() - 1]);
        out.push_str(",\"kid\":");
        json::write_str(&mut out, kid);
        out.push_str(",\"alg\":\"");
        out.push_str(alg.name());
        out.push_str("\",\"use\":\"sig\"}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7638 section 3.1: the thumbprint of the RFC 7517 appendix A.1 RSA key.
    #[test]
    fn rfc7638_example() {
        let n = b64::decode(
            b"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        )
        .unwrap();
        let key = PublicJwk::Rsa {
            n,
            e: vec![1, 0, 1],
        };
        assert_eq!(
            key.thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn published_jwk_parses_back_into_a_key_set() {
        let x = b64::decode(b"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo").unwrap();
        let key = PublicJwk::Ed25519 { x };
        // RFC 8037 appendix A.3.
        assert_eq!(
            key.thumbprint(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
        let kid = key.thumbprint();
        let jwks = format!("{{\"keys\":[{}]}}", key.to_json(&kid, Algorithm::EdDSA));
        let set = crate::KeySet::from_jwks(jwks.as_bytes()).unwrap();
        assert!(set.skipped.is_empty());
        assert!(set.keys.find(Algorithm::EdDSA, Some(&kid)).is_ok());
        assert!(PublicJwk::ec_from_point(Algorithm::ES256, &[4; 65]).is_some());
        assert!(PublicJwk::ec_from_point(Algorithm::ES256, &[4; 64]).is_none());
        assert!(PublicJwk::ec_from_point(Algorithm::RS256, &[4; 65]).is_none());
    }
}
