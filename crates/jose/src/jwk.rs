//! JSON Web Keys (RFC 7517, RFC 7518 section 6, RFC 8037) parsed once into ready-to-verify keys.
//!
//! Each key is pinned to exactly one algorithm: its `alg`, or the single algorithm its type
//! allows (an EC key's curve, an Ed25519 key). Keys that say they are not for verification
//! (`use`, `key_ops`) or that this verifier does not support are skipped and reported; keys that
//! are malformed, weak, or carry private material refuse the whole set, because a key set that
//! is wrong in those ways is a configuration error to fix, not to guess around.

use std::fmt;
use std::sync::{Arc, OnceLock};

use aws_lc_rs::hmac;
use aws_lc_rs::signature::{self as sig, ParsedPublicKey, RsaPublicKeyComponents};

use crate::alg::{Algorithm, Family};
use crate::json::{self, JsonError, JsonStr, Object, Value};
use crate::{b64, jws, Error, PublicJwk};

/// Nesting allowed in a JWK Set document.
const JWKS_MAX_DEPTH: usize = 8;
/// RSA moduli this verifier accepts, in bits (RFC 7518 section 3.3 sets the floor).
const RSA_MIN_BITS: usize = 2048;
const RSA_MAX_BITS: usize = 8192;

/// A public (or, for HMAC, shared) key pinned to one algorithm, parsed into verification form.
/// Cloning shares the parsed key material.
#[derive(Clone)]
pub struct VerifyingKey {
    kid: Option<Box<str>>,
    alg: Algorithm,
    material: Material,
}

#[derive(Clone)]
enum Material {
    /// Boxed: an aws-lc-rs HMAC key holds its precomputed context inline (over 1 KiB).
    Hmac(Box<hmac::Key>),
    /// The parsed key, and its public components for verifiers that take them as they are
    /// (the vectorised backends).
    Public(ParsedPublicKey, Arc<PublicJwk>),
}

impl VerifyingKey {
    /// An HMAC key. The secret must be at least as long as the hash output (RFC 7518 3.2).
    pub fn hmac(alg: Algorithm, secret: &[u8], kid: Option<&str>) -> Result<Self, KeyError> {
        let hash = match alg {
            Algorithm::HS256 => hmac::HMAC_SHA256,
            Algorithm::HS384 => hmac::HMAC_SHA384,
            Algorithm::HS512 => hmac::HMAC_SHA512,
            _ => {
                return Err(KeyError::AlgorithmMismatch(
                    "HMAC keys verify HS256/384/512",
                ))
            }
        };
        if secret.len() < alg.hmac_len() {
            return Err(KeyError::Weak("HMAC secret shorter than the hash output"));
        }
        Ok(VerifyingKey {
            kid: kid.map(Into::into),
            alg,
            material: Material::Hmac(Box::new(hmac::Key::new(hash, secret))),
        })
    }

    /// Parses one JWK (a JSON object) into a verifying key.
    pub fn from_jwk(json: &[u8]) -> Result<Self, KeyError> {
        let text = std::str::from_utf8(json).map_err(|_| KeyError::Invalid("JWK is not UTF-8"))?;
        let obj = json::read_object::<JsonError>(text, JWKS_MAX_DEPTH, |_, _| Ok(()))
            .map_err(KeyError::Json)?;
        match parse_jwk(obj)? {
            Parsed::Key(key) => Ok(key),
            Parsed::Skip(reason) => Err(KeyError::Unusable(reason)),
        }
    }

    /// The key of a proof of possession ([`crate::proof`]): one JWK object, public and
    /// asymmetric, for `alg` (the proof's header names it; an RSA key needs no `alg` member of
    /// its own, and one it has must agree).
    pub fn from_proof_jwk(alg: Algorithm, json: &str) -> Result<Self, KeyError> {
        let obj = json::read_object::<JsonError>(json, JWKS_MAX_DEPTH, |_, _| Ok(()))
            .map_err(KeyError::Json)?;
        let key = match parse_jwk(obj)? {
            Parsed::Key(key) => key,
            Parsed::Skip(SkipReason::AlgorithmRequired)
                if string_member(obj, "kty")?.is_some_and(|k| k.eq_str("RSA")) =>
            {
                let n = required_bytes(obj, "n")?;
                let e = required_bytes(obj, "e")?;
                VerifyingKey {
                    kid: None,
                    alg,
                    material: rsa_material(rsa_params(alg)?, &n, &e)?,
                }
            }
            Parsed::Skip(reason) => return Err(KeyError::Unusable(reason)),
        };
        if key.public().is_none() {
            return Err(KeyError::Invalid("a proof key is asymmetric"));
        }
        if key.alg != alg {
            return Err(KeyError::AlgorithmMismatch(
                "the proof's alg is not the key's",
            ));
        }
        Ok(key)
    }

    /// A verifying key from the public half an issuer holds (an HSM key as `pkcs11` reads it),
    /// pinned to `alg`: the key, checks and refusals of [`VerifyingKey::from_jwk`] on
    /// `public.to_json(kid, alg)`, with no JSON text in between.
    pub fn from_public(
        alg: Algorithm,
        public: &PublicJwk,
        kid: Option<&str>,
    ) -> Result<Self, KeyError> {
        if kid.is_some_and(str::is_empty) {
            return Err(KeyError::Invalid("kid (empty)"));
        }
        let material = match public {
            PublicJwk::Rsa { n, e } => rsa_material(rsa_params(alg)?, n, e)?,
            PublicJwk::Ec { crv, x, y } => {
                let Some((curve_alg, verify_alg, len)) = ec_curve(crv) else {
                    let reason = SkipReason::UnsupportedCurve((*crv).into());
                    return Err(KeyError::Unusable(reason));
                };
                if alg != curve_alg {
                    return Err(KeyError::AlgorithmMismatch(EC_MISMATCH));
                }
                ec_material(curve_alg, verify_alg, len, x, y)?
            }
            PublicJwk::Ed25519 { x } => {
                if alg != Algorithm::EdDSA {
                    return Err(KeyError::AlgorithmMismatch(ED25519_MISMATCH));
                }
                ed25519_material(x)?
            }
        };
        Ok(VerifyingKey {
            kid: kid.map(Into::into),
            alg,
            material,
        })
    }

    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The public components of an asymmetric key (`None` for HMAC): for verifiers that take
    /// the numbers themselves. They passed every check the parsed key did.
    pub fn public(&self) -> Option<&PublicJwk> {
        match &self.material {
            Material::Hmac(_) => None,
            Material::Public(_, public) => Some(public),
        }
    }

    /// Checks `signature` over `message`. The algorithm is the key's own.
    #[inline]
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), Error> {
        let ok = match &self.material {
            Material::Hmac(key) => hmac::verify(key, message, signature).is_ok(),
            Material::Public(key, _) => key.verify_sig(message, signature).is_ok(),
        };
        if ok {
            Ok(())
        } else {
            Err(Error::BadSignature)
        }
    }
}

impl fmt::Debug for VerifyingKey {
    // Never prints key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// A set of verifying keys with unique `kid`s.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<VerifyingKey>,
    memo: OnceLock<jws::Memo>,
}

/// A parsed JWK Set: the usable keys, and the keys that were left out with the reason.
#[derive(Debug)]
pub struct Jwks {
    pub keys: KeySet,
    pub skipped: Vec<SkippedKey>,
}

impl KeySet {
    /// A set from keys; refuses duplicate `kid`s.
    pub fn new(keys: Vec<VerifyingKey>) -> Result<Self, KeySetError> {
        for (i, key) in keys.iter().enumerate() {
            if let Some(kid) = key.kid() {
                if keys[..i].iter().any(|k| k.kid() == Some(kid)) {
                    return Err(KeySetError::DuplicateKid(kid.into()));
                }
            }
        }
        Ok(KeySet {
            keys,
            memo: OnceLock::new(),
        })
    }

    /// Parses a JWK Set document (`{"keys": [...]}`) that the operator controls: a key that is
    /// malformed, weak or private refuses the whole document. Keys of kinds this verifier does
    /// not know are skipped (RFC 7517 section 5).
    pub fn from_jwks(json: &[u8]) -> Result<Jwks, KeySetError> {
        KeySet::parse_jwks(json, false)
    }

    /// Parses a JWK Set document published by someone else (a remote `jwks_uri`): a key that
    /// cannot be used (malformed, weak, carrying private members, or sharing its `kid` with
    /// another key of the document) is skipped with its reason instead of refusing the others.
    /// The document itself must still be a well-formed JWK Set.
    pub fn from_published_jwks(json: &[u8]) -> Result<Jwks, KeySetError> {
        KeySet::parse_jwks(json, true)
    }

    fn parse_jwks(json: &[u8], skip_unusable: bool) -> Result<Jwks, KeySetError> {
        let text = std::str::from_utf8(json).map_err(|_| KeySetError::NotUtf8)?;
        let mut keys_member = None;
        json::read_object::<JsonError>(text, JWKS_MAX_DEPTH, |name, value| {
            if name.eq_str("keys") {
                keys_member = Some(value);
            }
            Ok(())
        })
        .map_err(KeySetError::Json)?;
        let Some(Value::Array(entries)) = keys_member else {
            return Err(KeySetError::NotAKeySet);
        };
        let mut keys = Vec::new();
        let mut skipped = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            let Value::Object(obj) = entry else {
                let error = KeyError::Invalid("JWK is not an object");
                if skip_unusable {
                    let reason = SkipReason::Unusable(Box::new(error));
                    skipped.push(SkippedKey {
                        index,
                        kid: None,
                        reason,
                    });
                    continue;
                }
                return Err(KeySetError::Key {
                    index,
                    kid: None,
                    error,
                });
            };
            let kid = match obj.get("kid") {
                Some(Value::String(s)) => Some(s.to_str().into()),
                _ => None,
            };
            match parse_jwk(obj) {
                Ok(Parsed::Key(key)) => keys.push((index, key)),
                Ok(Parsed::Skip(reason)) => skipped.push(SkippedKey { index, kid, reason }),
                Err(error) if skip_unusable => skipped.push(SkippedKey {
                    index,
                    kid,
                    reason: SkipReason::Unusable(Box::new(error)),
                }),
                Err(error) => return Err(KeySetError::Key { index, kid, error }),
            }
        }
        if skip_unusable {
            // A kid two keys share cannot route a token to one of them: neither is used.
            let mut uses: std::collections::HashMap<&str, usize> = Default::default();
            for kid in keys.iter().filter_map(|(_, k)| k.kid()) {
                *uses.entry(kid).or_default() += 1;
            }
            let shared: std::collections::HashSet<Box<str>> = uses
                .into_iter()
                .filter(|&(_, n)| n > 1)
                .map(|(kid, _)| kid.into())
                .collect();
            if !shared.is_empty() {
                let (ambiguous, unique) = keys
                    .into_iter()
                    .partition(|(_, k)| k.kid().is_some_and(|kid| shared.contains(kid)));
                keys = unique;
                skipped.extend(ambiguous.into_iter().map(|(index, key)| SkippedKey {
                    index,
                    kid: key.kid().map(Into::into),
                    reason: SkipReason::SharedKid,
                }));
                skipped.sort_by_key(|s| s.index);
            }
        }
        Ok(Jwks {
            keys: KeySet::new(keys.into_iter().map(|(_, k)| k).collect())?,
            skipped,
        })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key with this `kid`, whatever its algorithm.
    pub fn find_kid(&self, kid: &str) -> Option<&VerifyingKey> {
        self.keys.iter().find(|k| k.kid() == Some(kid))
    }

    /// The keys, to build another set from.
    pub fn into_keys(self) -> Vec<VerifyingKey> {
        self.keys
    }

    pub fn iter(&self) -> impl Iterator<Item = &VerifyingKey> {
        self.keys.iter()
    }

    /// The key for a token with algorithm `alg` and optional `kid`.
    ///
    /// With a `kid`, the key with that `kid` must exist and be pinned to `alg`. Without one, the
    /// key must be the only one pinned to `alg`.
    pub fn find(&self, alg: Algorithm, kid: Option<&str>) -> Result<&VerifyingKey, Error> {
        self.select(alg, kid.map(|k| move |key: &str| key == k))
            .map(|i| &self.keys[i])
    }

    pub(crate) fn find_json(
        &self,
        alg: Algorithm,
        kid: Option<JsonStr<'_>>,
    ) -> Result<&VerifyingKey, Error> {
        self.index_json(alg, kid).map(|i| &self.keys[i])
    }

    pub(crate) fn index_json(
        &self,
        alg: Algorithm,
        kid: Option<JsonStr<'_>>,
    ) -> Result<usize, Error> {
        self.select(alg, kid.map(|k| move |key: &str| k.eq_str(key)))
    }

    pub(crate) fn key(&self, index: usize) -> &VerifyingKey {
        &self.keys[index]
    }

    pub(crate) fn memo(&self) -> Option<&jws::Memo> {
        self.memo.get()
    }

    pub(crate) fn set_memo(&self, memo: jws::Memo) {
        // A racing thread may have set it first; either memo is correct.
        let _ = self.memo.set(memo);
    }

    /// The index of the key for `alg` and `kid` (see [`KeySet::find`]).
    fn select(&self, alg: Algorithm, kid: Option<impl Fn(&str) -> bool>) -> Result<usize, Error> {
        match kid {
            Some(matches) => {
                let index = self
                    .keys
                    .iter()
                    .position(|k| k.kid().is_some_and(&matches))
                    .ok_or(Error::UnknownKey)?;
                let key = &self.keys[index];
                if key.alg == alg {
                    Ok(index)
                } else {
                    Err(Error::KeyAlgorithmMismatch {
                        key: key.alg,
                        token: alg,
                    })
                }
            }
            None => {
                let mut fits = self
                    .keys
                    .iter()
                    .enumerate()
                    .filter(|(_, k)| k.alg == alg)
                    .map(|(i, _)| i);
                match (fits.next(), fits.next()) {
                    (Some(index), None) => Ok(index),
                    (None, _) => Err(Error::UnknownKey),
                    (Some(_), Some(_)) => Err(Error::AmbiguousKey),
                }
            }
        }
    }
}

/// A key left out of a set, with the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedKey {
    pub index: usize,
    pub kid: Option<Box<str>>,
    pub reason: SkipReason,
}

/// Why a key is not usable for verification here. Not an error: RFC 7517 section 5 asks
/// implementations to ignore keys they do not understand.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// `use` is not `sig`.
    NotForSignatures,
    /// `key_ops` does not include `verify`.
    NoVerifyOperation,
    UnsupportedKeyType(Box<str>),
    UnsupportedCurve(Box<str>),
    UnsupportedAlgorithm(Box<str>),
    /// The key type allows several algorithms (RSA, oct) and the key has no `alg` to pin one.
    AlgorithmRequired,
    /// Only in a published key set ([`KeySet::from_published_jwks`]): the key is refused (weak,
    /// malformed, carries private members).
    Unusable(Box<KeyError>),
    /// Only in a published key set: another key of the document has the same `kid`.
    SharedKid,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::NotForSignatures => f.write_str("use is not \"sig\""),
            SkipReason::NoVerifyOperation => f.write_str("key_ops does not include \"verify\""),
            SkipReason::UnsupportedKeyType(k) => write!(f, "unsupported kty {k:?}"),
            SkipReason::UnsupportedCurve(c) => write!(f, "unsupported crv {c:?}"),
            SkipReason::UnsupportedAlgorithm(a) => write!(f, "unsupported alg {a:?}"),
            SkipReason::AlgorithmRequired => {
                f.write_str("alg is required to pin this key type to one algorithm")
            }
            SkipReason::Unusable(e) => write!(f, "{e}"),
            SkipReason::SharedKid => f.write_str("another key of the set has the same kid"),
        }
    }
}

/// Why a key was refused. The key set's fault.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyError {
    Json(JsonError),
    Missing(&'static str),
    Invalid(&'static str),
    /// An asymmetric key carries private members; a verification set holds public keys only.
    PrivateKeyMaterial,
    /// `alg` does not fit the key type or curve.
    AlgorithmMismatch(&'static str),
    Weak(&'static str),
    /// The crypto library refused the key (for example a point not on the curve).
    Rejected(&'static str),
    /// Only from [`VerifyingKey::from_jwk`]: the key is well formed but not usable here.
    Unusable(SkipReason),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Json(e) => write!(f, "{e}"),
            KeyError::Missing(m) => write!(f, "missing member {m}"),
            KeyError::Invalid(m) => write!(f, "invalid {m}"),
            KeyError::PrivateKeyMaterial => {
                f.write_str("private key members in a verification key set")
            }
            KeyError::AlgorithmMismatch(m) => write!(f, "alg does not fit the key: {m}"),
            KeyError::Weak(m) => write!(f, "key too weak: {m}"),
            KeyError::Rejected(m) => write!(f, "key rejected: {m}"),
            KeyError::Unusable(r) => write!(f, "key not usable: {r}"),
        }
    }
}

impl std::error::Error for KeyError {}

/// Why a key set was refused. The configuration's (or the key set publisher's) fault.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySetError {
    NotUtf8,
    Json(JsonError),
    /// The document has no `keys` array.
    NotAKeySet,
    Key {
        index: usize,
        kid: Option<Box<str>>,
        error: KeyError,
    },
    DuplicateKid(Box<str>),
}

impl fmt::Display for KeySetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySetError::NotUtf8 => f.write_str("key set is not UTF-8"),
            KeySetError::Json(e) => write!(f, "key set is not valid JSON: {e}"),
            KeySetError::NotAKeySet => f.write_str("not a JWK Set: no \"keys\" array"),
            KeySetError::Key { index, kid, error } => match kid {
                Some(kid) => write!(f, "key {index} (kid {kid:?}): {error}"),
                None => write!(f, "key {index}: {error}"),
            },
            KeySetError::DuplicateKid(kid) => write!(f, "duplicate kid {kid:?}"),
        }
    }
}

impl std::error::Error for KeySetError {}

enum Parsed {
    Key(VerifyingKey),
    Skip(SkipReason),
}

fn string_member<'a>(obj: Object<'a>, name: &'static str) -> Result<Option<JsonStr<'a>>, KeyError> {
    match obj.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(KeyError::Invalid(name)),
    }
}

fn required_bytes(obj: Object<'_>, name: &'static str) -> Result<Vec<u8>, KeyError> {
    let s = string_member(obj, name)?.ok_or(KeyError::Missing(name))?;
    // base64url has no characters that JSON escapes, so the raw text is the encoding.
    b64::decode(s.raw().as_bytes()).ok_or(KeyError::Invalid(name))
}

fn parse_jwk(obj: Object<'_>) -> Result<Parsed, KeyError> {
    let kty = string_member(obj, "kty")?
        .ok_or(KeyError::Missing("kty"))?
        .to_str();
    if string_member(obj, "kid")?.is_some_and(|k| k.raw().is_empty()) {
        return Err(KeyError::Invalid("kid (empty)"));
    }
    let private: &[&str] = match &*kty {
        "RSA" => &["d", "p", "q", "dp", "dq", "qi", "oth"],
        "EC" | "OKP" => &["d"],
        _ => &[],
    };
    if private.iter().any(|m| obj.get(m).is_some()) {
        return Err(KeyError::PrivateKeyMaterial);
    }
    if let Some(u) = string_member(obj, "use")? {
        if !u.eq_str("sig") {
            return Ok(Parsed::Skip(SkipReason::NotForSignatures));
        }
    }
    if let Some(ops) = obj.get("key_ops") {
        let Value::Array(ops) = ops else {
            return Err(KeyError::Invalid("key_ops"));
        };
        let mut names = Vec::new();
        for op in ops.iter() {
            let op = op.as_str().ok_or(KeyError::Invalid("key_ops"))?.to_str();
            if names.contains(&op) {
                return Err(KeyError::Invalid("key_ops (duplicate operation)"));
            }
            names.push(op);
        }
        if !names.iter().any(|op| op == "verify") {
            return Ok(Parsed::Skip(SkipReason::NoVerifyOperation));
        }
    }
    let alg = match string_member(obj, "alg")? {
        None => None,
        Some(name) => match Algorithm::from_name(&name.to_str()) {
            Some(alg) => Some(alg),
            None => {
                return Ok(Parsed::Skip(SkipReason::UnsupportedAlgorithm(
                    name.to_str().into(),
                )))
            }
        },
    };
    let kid = string_member(obj, "kid")?.map(|k| k.to_str().into());
    let (alg, material) = match &*kty {
        "RSA" => match alg {
            None => return Ok(Parsed::Skip(SkipReason::AlgorithmRequired)),
            Some(alg) => {
                let params = rsa_params(alg)?;
                let n = required_bytes(obj, "n")?;
                let e = required_bytes(obj, "e")?;
                (alg, rsa_material(params, &n, &e)?)
            }
        },
        "EC" => {
            let crv = string_member(obj, "crv")?.ok_or(KeyError::Missing("crv"))?;
            let Some((curve_alg, verify_alg, len)) = ec_curve(&crv.to_str()) else {
                let reason = SkipReason::UnsupportedCurve(crv.to_str().into());
                return Ok(Parsed::Skip(reason));
            };
            if alg.is_some_and(|a| a != curve_alg) {
                return Err(KeyError::AlgorithmMismatch(EC_MISMATCH));
            }
            let x = required_bytes(obj, "x")?;
            let y = required_bytes(obj, "y")?;
            (curve_alg, ec_material(curve_alg, verify_alg, len, &x, &y)?)
        }
        "OKP" => {
            let crv = string_member(obj, "crv")?.ok_or(KeyError::Missing("crv"))?;
            if !crv.eq_str("Ed25519") {
                return Ok(Parsed::Skip(SkipReason::UnsupportedCurve(
                    crv.to_str().into(),
                )));
            }
            if alg.is_some_and(|a| a != Algorithm::EdDSA) {
                return Err(KeyError::AlgorithmMismatch(ED25519_MISMATCH));
            }
            let x = required_bytes(obj, "x")?;
            (Algorithm::EdDSA, ed25519_material(&x)?)
        }
        "oct" => {
            let Some(alg) = alg else {
                return Ok(Parsed::Skip(SkipReason::AlgorithmRequired));
            };
            let k = required_bytes(obj, "k")?;
            let key = VerifyingKey::hmac(alg, &k, None)?;
            (alg, key.material)
        }
        other => return Ok(Parsed::Skip(SkipReason::UnsupportedKeyType(other.into()))),
    };
    Ok(Parsed::Key(VerifyingKey { kid, alg, material }))
}

/// The refusal of an EC key whose `alg` is not its curve's.
const EC_MISMATCH: &str = "EC keys verify the ES alg of their crv";
/// The refusal of an Ed25519 key whose `alg` is not EdDSA.
const ED25519_MISMATCH: &str = "Ed25519 keys verify EdDSA";

/// The EC curves verified here: the one algorithm each is pinned to, its aws-lc-rs form and
/// the length of its coordinates.
fn ec_curve(crv: &str) -> Option<(Algorithm, &'static sig::EcdsaVerificationAlgorithm, usize)> {
    match crv {
        "P-256" => Some((Algorithm::ES256, &sig::ECDSA_P256_SHA256_FIXED, 32)),
        "P-384" => Some((Algorithm::ES384, &sig::ECDSA_P384_SHA384_FIXED, 48)),
        "P-521" => Some((Algorithm::ES512, &sig::ECDSA_P521_SHA512_FIXED, 66)),
        _ => None,
    }
}

/// The aws-lc-rs verification of an RSA key pinned to `alg`.
fn rsa_params(alg: Algorithm) -> Result<&'static sig::RsaParameters, KeyError> {
    let params: &'static sig::RsaParameters = match alg {
        Algorithm::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
        _ => return Err(KeyError::AlgorithmMismatch("RSA keys verify RS* or PS*")),
    };
    debug_assert!(matches!(alg.family(), Family::RsaPkcs1 | Family::RsaPss));
    Ok(params)
}

/// An RSA public key from its modulus `n` and exponent `e` (big-endian).
fn rsa_material(
    params: &'static sig::RsaParameters,
    n: &[u8],
    e: &[u8],
) -> Result<Material, KeyError> {
    // RFC 7518 6.3.1: base64urlUInt uses the minimum number of octets.
    if n.first().is_none_or(|&b| b == 0) {
        return Err(KeyError::Invalid("n (empty or leading zero octet)"));
    }
    if e.first().is_none_or(|&b| b == 0) {
        return Err(KeyError::Invalid("e (empty or leading zero octet)"));
    }
    let bits = n.len() * 8 - n[0].leading_zeros() as usize;
    if bits < RSA_MIN_BITS {
        return Err(KeyError::Weak("RSA modulus shorter than 2048 bits"));
    }
    if bits > RSA_MAX_BITS {
        return Err(KeyError::Invalid("n (RSA modulus longer than 8192 bits)"));
    }
    if n[n.len() - 1] & 1 == 0 {
        return Err(KeyError::Invalid("n (even modulus)"));
    }
    // A sane public exponent: odd, at least 3, at most 32 bits.
    let exponent = e.iter().try_fold(0u64, |acc, &b| {
        (acc <= u64::from(u32::MAX) >> 8).then_some((acc << 8) | u64::from(b))
    });
    match exponent {
        Some(v) if v >= 3 && v & 1 == 1 && v <= u64::from(u32::MAX) => {}
        _ => {
            return Err(KeyError::Invalid(
                "e (not an odd exponent between 3 and 2^32)",
            ))
        }
    }
    let key = RsaPublicKeyComponents { n, e }
        .to_parsed_public_key(params)
        .map_err(|_| KeyError::Rejected("not an RSA public key"))?;
    let public = PublicJwk::Rsa {
        n: n.to_vec(),
        e: e.to_vec(),
    };
    Ok(Material::Public(key, Arc::new(public)))
}

/// An EC public key from its coordinates, `len` bytes each on its curve.
fn ec_material(
    curve: Algorithm,
    alg: &'static sig::EcdsaVerificationAlgorithm,
    len: usize,
    x: &[u8],
    y: &[u8],
) -> Result<Material, KeyError> {
    // RFC 7518 6.2.1.2: coordinates are the full field size.
    if x.len() != len {
        return Err(KeyError::Invalid("x (wrong length for the curve)"));
    }
    if y.len() != len {
        return Err(KeyError::Invalid("y (wrong length for the curve)"));
    }
    let mut point = Vec::with_capacity(1 + 2 * len);
    point.push(0x04);
    point.extend_from_slice(x);
    point.extend_from_slice(y);
    let key = ParsedPublicKey::new(alg, &point)
        .map_err(|_| KeyError::Rejected("point is not on the curve"))?;
    let public = PublicJwk::ec_from_point(curve, &point)
        .ok_or(KeyError::Invalid("x, y (wrong length for the curve)"))?;
    Ok(Material::Public(key, Arc::new(public)))
}

/// An Ed25519 public key.
fn ed25519_material(x: &[u8]) -> Result<Material, KeyError> {
    if x.len() != 32 {
        return Err(KeyError::Invalid("x (an Ed25519 key is 32 bytes)"));
    }
    let key = ParsedPublicKey::new(&sig::ED25519, x)
        .map_err(|_| KeyError::Rejected("not an Ed25519 public key"))?;
    let public = PublicJwk::Ed25519 { x: x.to_vec() };
    Ok(Material::Public(key, Arc::new(public)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{jws, Limits, SigningInput, SigningKey};

    /// A signer for `alg` and the public half an issuer holds of it.
    fn signer(alg: Algorithm) -> (SigningKey, PublicJwk) {
        let key = SigningKey::generate(alg).expect("signing key");
        let public = key.public().expect("an asymmetric key");
        (key, public)
    }

    /// The key `from_public` makes and the key its JWK parses into.
    fn both(
        alg: Algorithm,
        public: &PublicJwk,
        kid: &str,
    ) -> (
        Result<VerifyingKey, KeyError>,
        Result<VerifyingKey, KeyError>,
    ) {
        (
            VerifyingKey::from_public(alg, public, Some(kid)),
            VerifyingKey::from_jwk(public.to_json(kid, alg).as_bytes()),
        )
    }

    #[test]
    fn keys_from_values_verify_as_keys_from_json() {
        let algorithms = [
            Algorithm::RS256,
            Algorithm::PS256,
            Algorithm::ES256,
            Algorithm::ES384,
            Algorithm::ES512,
            Algorithm::EdDSA,
        ];
        for alg in algorithms {
            let (signer, public) = signer(alg);
            let kid = public.thumbprint();
            let (value, json) = both(alg, &public, &kid);
            let (value, json) = (value.expect("from_public"), json.expect("from_jwk"));
            assert_eq!(
                (value.kid(), value.alg()),
                (json.kid(), json.alg()),
                "{alg}"
            );

            let header = jws::header_json(alg, Some(&kid), Some("JWT"));
            let input = SigningInput::new(header.as_bytes(), br#"{"sub":"a"}"#);
            let signature = signer.sign(input.as_bytes()).expect("signature");
            let mut tampered = signature.clone();
            tampered[0] ^= 1;
            for (signature, valid) in [(signature, true), (tampered, false)] {
                let token = input.clone().into_compact(&signature);
                let verdicts = [&value, &json].map(|key| {
                    let set = KeySet::new(vec![key.clone()]).expect("one key");
                    jws::verify(&token, &set, &Limits::default())
                        .map(|jws| jws.alg())
                        .map_err(|e| e.code())
                });
                assert_eq!(verdicts[0], verdicts[1], "{alg}");
                assert_eq!(verdicts[0].is_ok(), valid, "{alg}: {verdicts:?}");
            }
        }
    }

    #[test]
    fn keys_from_values_are_refused_as_keys_from_json() {
        let (_, ec) = signer(Algorithm::ES256);
        let (_, ed) = signer(Algorithm::EdDSA);
        let (_, rsa) = signer(Algorithm::RS256);
        let weak = PublicJwk::Rsa {
            n: vec![0xC5; 128],
            e: vec![1, 0, 1],
        };
        let even = PublicJwk::Rsa {
            n: vec![0xC4; 256],
            e: vec![1, 0, 1],
        };
        let off_curve = PublicJwk::Ec {
            crv: "P-256",
            x: vec![1; 32],
            y: vec![2; 32],
        };
        let short = PublicJwk::Ec {
            crv: "P-384",
            x: vec![1; 32],
            y: vec![2; 32],
        };
        let unknown_curve = PublicJwk::Ec {
            crv: "secp256k1",
            x: vec![1; 32],
            y: vec![2; 32],
        };
        let cases = [
            (Algorithm::ES384, &ec),
            (Algorithm::RS256, &ec),
            (Algorithm::ES256, &ed),
            (Algorithm::ES256, &rsa),
            (Algorithm::HS256, &rsa),
            (Algorithm::RS256, &weak),
            (Algorithm::PS256, &even),
            (Algorithm::ES256, &off_curve),
            (Algorithm::ES384, &short),
            (Algorithm::ES256, &unknown_curve),
        ];
        for (alg, public) in cases {
            let (value, json) = both(alg, public, "k1");
            let (value, json) = (value.expect_err("refused"), json.expect_err("refused"));
            assert_eq!(value, json, "{alg} {public:?}");
        }
        let (value, json) = both(Algorithm::ES256, &ec, "");
        assert_eq!(value.expect_err("empty kid"), json.expect_err("empty kid"));
    }
}
