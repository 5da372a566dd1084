//! The key pairs on the token: what kind to generate and how (templates that keep the private
//! half inside), how they are listed and read back as JWKs, their lifecycle labels, and the
//! data object that holds the lifecycle [`Policy`].

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use jose::{Algorithm, PublicJwk};

use crate::error::{ck, HsmError};
use crate::lifecycle::{Lifecycle, Policy};

/// What kind of key to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeySpec {
    pub alg: Algorithm,
    /// RSA modulus size: 2048 or 3072 (RS256, PS256 only).
    pub rsa_bits: u32,
}

impl KeySpec {
    pub fn new(alg: Algorithm) -> Result<Self, HsmError> {
        match alg {
            Algorithm::RS256
            | Algorithm::PS256
            | Algorithm::ES256
            | Algorithm::ES384
            | Algorithm::EdDSA => Ok(KeySpec {
                alg,
                rsa_bits: 2048,
            }),
            other => Err(HsmError::Unsupported(format!("{other} keys in the HSM"))),
        }
    }

    pub fn with_rsa_bits(mut self, bits: u32) -> Result<Self, HsmError> {
        if !matches!(self.alg, Algorithm::RS256 | Algorithm::PS256) || ![2048, 3072].contains(&bits)
        {
            return Err(HsmError::Unsupported(format!(
                "{} with {bits} bits",
                self.alg
            )));
        }
        self.rsa_bits = bits;
        Ok(self)
    }
}

/// A key pair on the token.
#[derive(Clone, Debug)]
pub struct KeyInfo {
    /// The RFC 7638 thumbprint of the public key; also its `CKA_ID`.
    pub kid: String,
    pub life: Lifecycle,
    pub public: PublicJwk,
    /// RSA modulus size in bits, for display.
    pub bits: Option<usize>,
    pub(crate) private: ObjectHandle,
    pub(crate) public_handle: ObjectHandle,
    /// The connection the handles belong to.
    pub(crate) generation: u64,
}

impl KeyInfo {
    /// The public JWK, as published.
    pub fn jwk(&self) -> String {
        self.public.to_json(&self.kid, self.life.alg)
    }
}

/// DER of the named curves' OIDs, for `CKA_EC_PARAMS`.
const P256_OID: &[u8] = &[0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
const P384_OID: &[u8] = &[0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x22];
const ED25519_OID: &[u8] = &[0x06, 0x03, 0x2B, 0x65, 0x70];

/// `CKA_EC_POINT` is a DER OCTET STRING around the point (PKCS#11 2.40); some tokens return the
/// bare point. Accept both, telling them apart by length.
fn unwrap_ec_point(value: &[u8], raw_len: usize) -> Option<&[u8]> {
    if value.len() == raw_len {
        return Some(value);
    }
    match value {
        [0x04, len, rest @ ..] if usize::from(*len) == raw_len && rest.len() == raw_len => {
            Some(rest)
        }
        [0x04, 0x81, len, rest @ ..] if usize::from(*len) == raw_len && rest.len() == raw_len => {
            Some(rest)
        }
        _ => None,
    }
}

/// How a key pair of one kind is generated: private, sensitive, never extractable, sign-only
/// private halves; both halves labelled with their lifecycle.
pub(crate) struct Template {
    mechanism: Mechanism<'static>,
    public: Vec<Attribute>,
    private: Vec<Attribute>,
    life: Lifecycle,
}

impl Template {
    pub(crate) fn new(spec: KeySpec, life: Lifecycle) -> Result<Self, HsmError> {
        let label = Attribute::Label(life.label().into_bytes());
        let mut public = vec![
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::Encrypt(false),
            Attribute::Wrap(false),
            label.clone(),
        ];
        let private = vec![
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Decrypt(false),
            Attribute::Unwrap(false),
            Attribute::Derive(false),
            label,
        ];
        let mechanism = match spec.alg {
            Algorithm::RS256 | Algorithm::PS256 => {
                public.push(Attribute::ModulusBits(u64::from(spec.rsa_bits).into()));
                public.push(Attribute::PublicExponent(vec![0x01, 0x00, 0x01]));
                Mechanism::RsaPkcsKeyPairGen
            }
            Algorithm::ES256 => {
                public.push(Attribute::EcParams(P256_OID.to_vec()));
                Mechanism::EccKeyPairGen
            }
            Algorithm::ES384 => {
                public.push(Attribute::EcParams(P384_OID.to_vec()));
                Mechanism::EccKeyPairGen
            }
            Algorithm::EdDSA => {
                public.push(Attribute::EcParams(ED25519_OID.to_vec()));
                Mechanism::EccEdwardsKeyPairGen
            }
            other => return Err(HsmError::Unsupported(format!("{other} keys in the HSM"))),
        };
        Ok(Template {
            mechanism,
            public,
            private,
            life,
        })
    }

    /// Generates a key pair in `session`, then sets both halves' `CKA_ID` to the kid.
    pub(crate) fn generate(&self, session: &Session, generation: u64) -> Result<KeyInfo, HsmError> {
        let (public_handle, private_handle) = session
            .generate_key_pair(&self.mechanism, &self.public, &self.private)
            .map_err(ck("C_GenerateKeyPair"))?;
        let life = self.life;
        let (public_jwk, bits) = read_public(session, public_handle, life.alg)?;
        let kid = public_jwk.thumbprint();
        let id = Attribute::Id(kid.clone().into_bytes());
        for handle in [public_handle, private_handle] {
            session
                .update_attributes(handle, std::slice::from_ref(&id))
                .map_err(ck("C_SetAttributeValue"))?;
        }
        Ok(KeyInfo {
            kid,
            life,
            public: public_jwk,
            bits,
            private: private_handle,
            public_handle,
            generation,
        })
    }
}

/// The policy's data object, if the token has one; two are an error.
fn find_policy(session: &Session) -> Result<Option<ObjectHandle>, HsmError> {
    let found = session
        .find_objects(&[
            Attribute::Class(ObjectClass::DATA),
            Attribute::Label(POLICY_LABEL.as_bytes().to_vec()),
        ])
        .map_err(ck("C_FindObjects"))?;
    match found[..] {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        _ => Err(HsmError::Token(format!("several {POLICY_LABEL:?} objects"))),
    }
}

/// Every tessera key pair visible in `session` (labels parsed, public halves read back).
pub(crate) fn list(session: &Session, generation: u64) -> Result<Vec<KeyInfo>, HsmError> {
    let privates = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Sign(true),
        ])
        .map_err(ck("C_FindObjects"))?;
    let mut keys = Vec::new();
    for private in privates {
        let attrs = session
            .get_attributes(private, &[AttributeType::Label, AttributeType::Id])
            .map_err(ck("C_GetAttributeValue"))?;
        let (mut life, mut id) = (None, None);
        for attr in attrs {
            match attr {
                Attribute::Label(l) => life = Lifecycle::parse(&String::from_utf8_lossy(&l)),
                Attribute::Id(i) => id = String::from_utf8(i).ok(),
                _ => {}
            }
        }
        let (Some(life), Some(kid)) = (life, id) else {
            continue; // not a tessera key
        };
        let public_handle = session
            .find_objects(&[
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::Id(kid.clone().into_bytes()),
            ])
            .map_err(ck("C_FindObjects"))?
            .into_iter()
            .next()
            .ok_or_else(|| HsmError::Token(format!("no public key for kid {kid}")))?;
        let (public, bits) = read_public(session, public_handle, life.alg)?;
        if public.thumbprint() != kid {
            return Err(HsmError::Token(format!(
                "public key of {kid} does not match its id"
            )));
        }
        keys.push(KeyInfo {
            kid,
            life,
            public,
            bits,
            private,
            public_handle,
            generation,
        });
    }
    keys.sort_by_key(|k| (k.life.since, k.kid.clone()));
    Ok(keys)
}

/// Writes `life` into the labels of the key pair with these handles.
pub(crate) fn set_life(
    session: &Session,
    handles: (ObjectHandle, ObjectHandle),
    life: &Lifecycle,
) -> Result<(), HsmError> {
    let label = Attribute::Label(life.label().into_bytes());
    let (private, public) = handles;
    for handle in [public, private] {
        session
            .update_attributes(handle, std::slice::from_ref(&label))
            .map_err(ck("C_SetAttributeValue"))?;
    }
    Ok(())
}

/// `CKA_LABEL` of the data object that holds the lifecycle [`Policy`].
const POLICY_LABEL: &str = "tessera lifecycle policy";

/// The lifecycle policy stored on the token; the default when none is.
pub(crate) fn policy(session: &Session) -> Result<Policy, HsmError> {
    let Some(handle) = find_policy(session)? else {
        return Ok(Policy::default());
    };
    let value = session
        .get_attributes(handle, &[AttributeType::Value])
        .map_err(ck("C_GetAttributeValue"))?
        .into_iter()
        .find_map(|a| match a {
            Attribute::Value(v) => Some(v),
            _ => None,
        })
        .unwrap_or_default();
    std::str::from_utf8(&value)
        .ok()
        .and_then(Policy::parse)
        .ok_or_else(|| HsmError::Token(format!("malformed {POLICY_LABEL:?} object")))
}

/// Stores `policy` on the token, for every process that opens it.
pub(crate) fn set_policy(session: &Session, policy: &Policy) -> Result<(), HsmError> {
    let value = Attribute::Value(policy.value().into_bytes());
    match find_policy(session)? {
        Some(handle) => session
            .update_attributes(handle, std::slice::from_ref(&value))
            .map_err(ck("C_SetAttributeValue")),
        None => session
            .create_object(&[
                Attribute::Class(ObjectClass::DATA),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Modifiable(true),
                Attribute::Label(POLICY_LABEL.as_bytes().to_vec()),
                Attribute::Application(b"tessera".to_vec()),
                value,
            ])
            .map(drop)
            .map_err(ck("C_CreateObject")),
    }
}

/// The public half with `handle` as a JWK of `alg`, and its RSA modulus size.
fn read_public(
    session: &Session,
    handle: ObjectHandle,
    alg: Algorithm,
) -> Result<(PublicJwk, Option<usize>), HsmError> {
    let wanted = match alg {
        Algorithm::RS256 | Algorithm::PS256 => {
            vec![AttributeType::Modulus, AttributeType::PublicExponent]
        }
        _ => vec![AttributeType::EcPoint, AttributeType::KeyType],
    };
    let attrs = session
        .get_attributes(handle, &wanted)
        .map_err(ck("C_GetAttributeValue"))?;
    let (mut n, mut e, mut point, mut key_type) = (None, None, None, None);
    for attr in attrs {
        match attr {
            Attribute::Modulus(v) => n = Some(v),
            Attribute::PublicExponent(v) => e = Some(v),
            Attribute::EcPoint(v) => point = Some(v),
            Attribute::KeyType(t) => key_type = Some(t),
            _ => {}
        }
    }
    let strip = |mut v: Vec<u8>| {
        let zeros = v.iter().take_while(|&&b| b == 0).count();
        v.drain(..zeros);
        v
    };
    match alg {
        Algorithm::RS256 | Algorithm::PS256 => {
            let (Some(n), Some(e)) = (n, e) else {
                return Err(HsmError::Token(
                    "RSA public key without modulus or exponent".into(),
                ));
            };
            let n = strip(n);
            let bits = n.len() * 8 - n.first().map_or(8, |b| b.leading_zeros() as usize);
            Ok((PublicJwk::Rsa { n, e: strip(e) }, Some(bits)))
        }
        Algorithm::EdDSA => {
            if key_type.is_some_and(|t| t != KeyType::EC_EDWARDS) {
                return Err(HsmError::Token("EdDSA key is not an Edwards key".into()));
            }
            let point = point.ok_or_else(|| HsmError::Token("no CKA_EC_POINT".into()))?;
            let x = unwrap_ec_point(&point, 32)
                .ok_or_else(|| HsmError::Token("malformed Ed25519 CKA_EC_POINT".into()))?;
            Ok((PublicJwk::Ed25519 { x: x.to_vec() }, None))
        }
        _ => {
            let point = point.ok_or_else(|| HsmError::Token("no CKA_EC_POINT".into()))?;
            let len = if alg == Algorithm::ES384 { 97 } else { 65 };
            let raw = unwrap_ec_point(&point, len)
                .ok_or_else(|| HsmError::Token("malformed CKA_EC_POINT".into()))?;
            let jwk = PublicJwk::ec_from_point(alg, raw)
                .ok_or_else(|| HsmError::Token("EC point is not uncompressed".into()))?;
            Ok((jwk, None))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::unwrap_ec_point;

    #[test]
    fn ec_points_with_and_without_der_wrapping() {
        let raw = [4u8; 65];
        assert_eq!(unwrap_ec_point(&raw, 65), Some(&raw[..]));
        let mut der = vec![0x04, 65];
        der.extend_from_slice(&raw);
        assert_eq!(unwrap_ec_point(&der, 65), Some(&raw[..]));
        let ed = [9u8; 32];
        let mut der = vec![0x04, 32];
        der.extend_from_slice(&ed);
        assert_eq!(unwrap_ec_point(&der, 32), Some(&ed[..]));
        assert_eq!(unwrap_ec_point(&der[..20], 32), None);
        assert_eq!(unwrap_ec_point(&[0x04, 0x81, 97], 97), None);
    }
}
