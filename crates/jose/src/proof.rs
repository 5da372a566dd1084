//! Proofs of possession: a compact JWS verified with the public key in its own protected
//! header (`jwk`), as RFC 9449 DPoP proofs are. This is a path of its own: [`crate::jws`] and
//! the access-token path never read `jwk`, so no access token can bring its own key.
//!
//! What is checked here is the JWS: the size before anything is decoded, strict base64url, a
//! header object with an asymmetric `alg` from the caller's allow-list and a public `jwk` of
//! that algorithm (private members refused), no `crit`, and the signature. What the payload
//! means is the caller's (`oauth::dpop`).

use crate::error::{Error, Malformed, Segment};
use crate::json::{self, JsonError, Value};
use crate::jws::{Compact, Limits};
use crate::{b64, Algorithm, Family, KeyError, VerifyingKey};

/// A proof whose signature the key in its header verified.
#[derive(Debug)]
pub struct Proof {
    pub alg: Algorithm,
    /// The header's `typ`, if it has one.
    pub typ: Option<String>,
    /// The key the proof carried (its [`VerifyingKey::public`] gives the RFC 7638 thumbprint).
    pub key: VerifyingKey,
    /// The decoded payload (JSON, unparsed).
    pub payload: Vec<u8>,
}

/// Why a proof was refused.
#[derive(Debug, PartialEq)]
pub enum ProofError {
    /// The JWS itself: its size, encoding, header, algorithm or signature.
    Jws(Error),
    /// The `jwk` is missing, not an object, private, symmetric or not of the algorithm.
    Key(&'static str),
}

impl std::fmt::Display for ProofError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProofError::Jws(e) => write!(f, "{e}"),
            ProofError::Key(what) => write!(f, "jwk: {what}"),
        }
    }
}

impl std::error::Error for ProofError {}

impl From<Error> for ProofError {
    fn from(e: Error) -> Self {
        ProofError::Jws(e)
    }
}

impl From<Malformed> for ProofError {
    fn from(e: Malformed) -> Self {
        ProofError::Jws(e.into())
    }
}

/// Verifies `proof` with the key its header carries. `allowed`: the algorithms accepted; HMAC
/// never is, whatever the list says.
pub fn verify(proof: &[u8], allowed: &[Algorithm], limits: &Limits) -> Result<Proof, ProofError> {
    let compact = Compact::split(proof, limits)?;
    let header = b64::decode(compact.header).ok_or(Malformed::Base64(Segment::Header))?;
    let header = std::str::from_utf8(&header).map_err(|_| Malformed::Utf8(Segment::Header))?;
    let json_err = |e: JsonError| ProofError::Jws(Malformed::Json(Segment::Header, e).into());
    let (mut alg, mut typ, mut jwk, mut crit) = (None, None, None, false);
    let mut wrong = None;
    json::read_object::<JsonError>(header, limits.max_json_depth, |name, value| {
        match name.to_str().as_bytes() {
            b"alg" => alg = Some(value),
            b"typ" => typ = Some(value),
            b"jwk" => jwk = Some(value),
            b"crit" => crit = true,
            // A proof names its key by value; a reference to another would be ignored by one
            // verifier and followed by the next.
            b"kid" | b"jku" | b"x5u" | b"x5c" => wrong = Some(name.to_str().into_owned()),
            _ => {}
        }
        Ok(())
    })
    .map_err(json_err)?;
    if crit {
        return Err(Error::UnsupportedCritical.into());
    }
    if wrong.is_some() {
        return Err(Error::InvalidHeader("a proof carries its key in jwk only").into());
    }
    let alg = alg
        .ok_or(Error::InvalidHeader("alg is missing"))?
        .as_str()
        .ok_or(Error::InvalidHeader("alg must be a string"))?;
    let alg = Algorithm::from_name(&alg.to_str()).ok_or(Error::UnsupportedAlgorithm)?;
    if alg.family() == Family::Hmac || !allowed.contains(&alg) {
        return Err(Error::UnsupportedAlgorithm.into());
    }
    let typ = match typ {
        None => None,
        Some(v) => Some(
            v.as_str()
                .ok_or(Error::InvalidHeader("typ must be a string"))?
                .to_str()
                .into_owned(),
        ),
    };
    let Some(Value::Object(jwk)) = jwk else {
        return Err(ProofError::Key("missing, or not an object"));
    };
    let key = VerifyingKey::from_proof_jwk(alg, jwk.as_json()).map_err(|e| match e {
        KeyError::PrivateKeyMaterial => ProofError::Key("carries private key material"),
        KeyError::AlgorithmMismatch(_) => ProofError::Key("not a key of the proof's alg"),
        _ => ProofError::Key("not a usable public key"),
    })?;
    let signature = b64::decode(compact.signature).ok_or(Malformed::Base64(Segment::Signature))?;
    key.verify(compact.signing_input, &signature)?;
    let payload = b64::decode(compact.payload).ok_or(Malformed::Base64(Segment::Payload))?;
    Ok(Proof {
        alg,
        typ,
        key,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SigningKey;

    const ASYMMETRIC: &[Algorithm] = &[
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
        Algorithm::PS256,
        Algorithm::RS256,
    ];

    /// A proof signed by `key` with `header` (its members as given) over `payload`.
    fn signed(key: &SigningKey, header: &str, payload: &str) -> String {
        let input = crate::SigningInput::new(header.as_bytes(), payload.as_bytes());
        let signature = key.sign(input.as_bytes()).expect("signature");
        input.into_compact(&signature)
    }

    fn jwk_member(key: &SigningKey) -> String {
        let set: serde_json::Value = serde_json::from_str(&key.jwks()).expect("jwks");
        let mut jwk = set["keys"][0].clone();
        for member in ["kid", "alg", "use"] {
            jwk.as_object_mut().map(|o| o.remove(member));
        }
        jwk.to_string()
    }

    fn verify(proof: &str) -> Result<Proof, ProofError> {
        super::verify(proof.as_bytes(), ASYMMETRIC, &Limits::default())
    }

    #[test]
    fn a_proof_verifies_with_the_key_it_carries() {
        for alg in [Algorithm::ES256, Algorithm::EdDSA, Algorithm::ES384] {
            let key = SigningKey::generate(alg).expect("key");
            let header = format!(
                r#"{{"typ":"dpop+jwt","alg":"{alg}","jwk":{}}}"#,
                jwk_member(&key)
            );
            let proof = verify(&signed(&key, &header, r#"{"jti":"1"}"#)).expect("valid");
            assert_eq!(proof.alg, alg);
            assert_eq!(proof.typ.as_deref(), Some("dpop+jwt"));
            assert_eq!(proof.payload, br#"{"jti":"1"}"#);
            assert!(proof.key.public().is_some());
        }
    }

    #[test]
    fn an_rsa_proof_key_needs_no_alg_member() {
        let key = SigningKey::generate(Algorithm::PS256).expect("RSA key");
        let header = format!(
            r#"{{"typ":"dpop+jwt","alg":"PS256","jwk":{}}}"#,
            jwk_member(&key)
        );
        assert!(verify(&signed(&key, &header, "{}")).is_ok());
        // The same key under another RSA algorithm verifies nothing it did not sign.
        let header = format!(
            r#"{{"typ":"dpop+jwt","alg":"RS256","jwk":{}}}"#,
            jwk_member(&key)
        );
        assert_eq!(
            verify(&signed(&key, &header, "{}")).unwrap_err(),
            ProofError::Jws(Error::BadSignature)
        );
    }

    #[test]
    fn hostile_proofs_are_refused() {
        let key = SigningKey::generate(Algorithm::ES256).expect("key");
        let jwk = jwk_member(&key);
        let header =
            |extra: &str| format!(r#"{{"typ":"dpop+jwt","alg":"ES256","jwk":{jwk}{extra}}}"#);
        let good = signed(&key, &header(""), "{}");
        assert!(verify(&good).is_ok());

        // Another key's signature.
        let other = SigningKey::generate(Algorithm::ES256).expect("key");
        assert_eq!(
            verify(&signed(&other, &header(""), "{}")).unwrap_err(),
            ProofError::Jws(Error::BadSignature)
        );
        // A tampered payload.
        let mut parts: Vec<&str> = good.split('.').collect();
        parts[1] = "eyJhIjoxfQ";
        assert_eq!(
            verify(&parts.join(".")).unwrap_err(),
            ProofError::Jws(Error::BadSignature)
        );
        // none, HMAC and algorithms off the list.
        let none = format!(
            "{}.e30.",
            b64::encode(format!(r#"{{"alg":"none","jwk":{jwk}}}"#).as_bytes())
        );
        assert_eq!(
            verify(&none).unwrap_err(),
            ProofError::Jws(Error::UnsupportedAlgorithm)
        );
        let hmac = SigningKey::hmac(Algorithm::HS256, &[7; 32]).expect("hmac");
        let hs = signed(
            &hmac,
            r#"{"typ":"dpop+jwt","alg":"HS256","jwk":{"kty":"oct","k":"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc"}}"#,
            "{}",
        );
        assert_eq!(
            verify(&hs).unwrap_err(),
            ProofError::Jws(Error::UnsupportedAlgorithm)
        );
        assert_eq!(
            super::verify(good.as_bytes(), &[Algorithm::EdDSA], &Limits::default()).unwrap_err(),
            ProofError::Jws(Error::UnsupportedAlgorithm)
        );
        // A private jwk; no jwk; a jwk of another curve; a key referenced instead.
        let private = jwk.replacen('{', r#"{"d":"AAAA","#, 1);
        let with_private = format!(r#"{{"typ":"dpop+jwt","alg":"ES256","jwk":{private}}}"#);
        assert_eq!(
            verify(&signed(&key, &with_private, "{}")).unwrap_err(),
            ProofError::Key("carries private key material")
        );
        assert_eq!(
            verify(&signed(&key, r#"{"typ":"dpop+jwt","alg":"ES256"}"#, "{}")).unwrap_err(),
            ProofError::Key("missing, or not an object")
        );
        let p384 = SigningKey::generate(Algorithm::ES384).expect("key");
        let mixed = format!(
            r#"{{"typ":"dpop+jwt","alg":"ES256","jwk":{}}}"#,
            jwk_member(&p384)
        );
        assert_eq!(
            verify(&signed(&key, &mixed, "{}")).unwrap_err(),
            ProofError::Key("not a key of the proof's alg")
        );
        assert!(verify(&signed(&key, &header(r#","kid":"k""#), "{}")).is_err());
        assert!(verify(&signed(&key, &header(r#","x5c":["AA"]"#), "{}")).is_err());
        // crit, even naming a present member.
        assert_eq!(
            verify(&signed(&key, &header(r#","crit":["typ"]"#), "{}")).unwrap_err(),
            ProofError::Jws(Error::UnsupportedCritical)
        );
        // Size and shape.
        let limits = Limits {
            max_token_len: 64,
            ..Limits::default()
        };
        assert!(matches!(
            super::verify(good.as_bytes(), ASYMMETRIC, &limits),
            Err(ProofError::Jws(Error::TooLarge { .. }))
        ));
        for bad in ["", "a.b", "a.b.c.d", "!!.e30.AA", &format!("{good}=")] {
            assert!(verify(bad).is_err(), "{bad}");
        }
    }
}
