//! Trusted issuers: each binds its `iss`, its audiences, its algorithms and its keys into one
//! [`Policy`]. A token is routed to an issuer by what its header says about its key (`kid`, or
//! the algorithm when there is no `kid`), then verified with that issuer's keys *and* required to
//! claim that issuer, so a key of issuer A never verifies a token claiming issuer B.
//!
//! Key sets come from a static JWKS document or from the HSM's published keys (as a JWKS); remote
//! `jwks_uri` sets are still to come.

use std::collections::HashMap;
use std::sync::Arc;

use jose::{Algorithm, Error, KeySet, KeySetError, Limits, Validation};

use crate::Policy;

/// One trusted issuer, as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuerSpec {
    /// The exact `iss` its tokens carry.
    pub issuer: String,
    /// Accepted audiences; empty means `aud` is not checked.
    pub audiences: Vec<String>,
    /// Algorithms this issuer signs with; keys for others are left out. Empty means all.
    pub algorithms: Vec<Algorithm>,
}

/// Why an issuer set was refused: the configuration's fault.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IssuersError {
    KeySet {
        issuer: String,
        error: KeySetError,
    },
    /// No key of this issuer fits its algorithms.
    NoKeys(String),
    DuplicateIssuer(String),
    /// Two issuers publish the same `kid`: tokens could not be routed.
    SharedKid {
        kid: String,
        issuers: (String, String),
    },
}

impl std::fmt::Display for IssuersError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IssuersError::KeySet { issuer, error } => write!(f, "issuer {issuer:?}: {error}"),
            IssuersError::NoKeys(issuer) => write!(f, "issuer {issuer:?}: no usable keys"),
            IssuersError::DuplicateIssuer(issuer) => write!(f, "issuer {issuer:?} twice"),
            IssuersError::SharedKid { kid, issuers } => write!(
                f,
                "kid {kid:?} is published by both {:?} and {:?}",
                issuers.0, issuers.1
            ),
        }
    }
}

impl std::error::Error for IssuersError {}

/// The trusted issuers, ready to route tokens.
#[derive(Debug, Default)]
pub struct Issuers {
    policies: Vec<Arc<Policy>>,
    by_kid: HashMap<String, usize>,
    limits: Limits,
}

impl Issuers {
    /// Builds the set from each issuer's spec and JWK Set document.
    pub fn new(issuers: Vec<(IssuerSpec, Vec<u8>)>) -> Result<Self, IssuersError> {
        let mut set = Issuers::default();
        let mut names: Vec<String> = Vec::new();
        for (spec, jwks) in issuers {
            if names.contains(&spec.issuer) {
                return Err(IssuersError::DuplicateIssuer(spec.issuer));
            }
            let parsed = KeySet::from_jwks(&jwks).map_err(|error| IssuersError::KeySet {
                issuer: spec.issuer.clone(),
                error,
            })?;
            let keys: Vec<_> = parsed
                .keys
                .into_keys()
                .into_iter()
                .filter(|k| spec.algorithms.is_empty() || spec.algorithms.contains(&k.alg()))
                .collect();
            if keys.is_empty() {
                return Err(IssuersError::NoKeys(spec.issuer));
            }
            let index = set.policies.len();
            for kid in keys.iter().filter_map(|k| k.kid()) {
                if let Some(&other) = set.by_kid.get(kid) {
                    return Err(IssuersError::SharedKid {
                        kid: kid.into(),
                        issuers: (names[other].clone(), spec.issuer.clone()),
                    });
                }
                set.by_kid.insert(kid.into(), index);
            }
            let keys = KeySet::new(keys).map_err(|error| IssuersError::KeySet {
                issuer: spec.issuer.clone(),
                error,
            })?;
            let mut validation = Validation::default().with_issuer(spec.issuer.clone());
            validation.audiences = spec.audiences;
            names.push(spec.issuer);
            set.policies.push(Arc::new(Policy { keys, validation }));
        }
        Ok(set)
    }

    /// The issuer whose keys should verify `token`: by `kid`, or, without one, the only issuer
    /// with a key for the token's algorithm.
    pub fn route(&self, token: &[u8]) -> Result<&Arc<Policy>, Error> {
        let (alg, kid) = jose::jws::peek_key(token, &self.limits)?;
        match kid {
            Some(kid) => self
                .by_kid
                .get(&kid)
                .map(|&i| &self.policies[i])
                .ok_or(Error::UnknownKey),
            None => {
                let mut fits = self
                    .policies
                    .iter()
                    .filter(|p| p.keys.iter().any(|k| k.alg() == alg));
                match (fits.next(), fits.next()) {
                    (Some(policy), None) => Ok(policy),
                    (None, _) => Err(Error::UnknownKey),
                    (Some(_), Some(_)) => Err(Error::AmbiguousKey),
                }
            }
        }
    }

    pub fn policies(&self) -> &[Arc<Policy>] {
        &self.policies
    }
}
