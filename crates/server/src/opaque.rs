//! Opaque (by-reference) access tokens at the edge: a `tat_` token is looked up in the store by
//! its SHA-256 once, and its claims are minted, once, into a JWT signed by the HSM (the phantom
//! token). The endpoints then verify that JWT as any other token: through the engine's cache,
//! its revocation check and the route rules. A revocation of the opaque token is recorded by
//! its `jti`, which the phantom JWT carries too, so it reaches every daemon's cache the way JWT
//! revocations do.
//!
//! Each daemon keeps the phantom JWTs it minted, bounded, until their `exp`; concurrent first
//! requests for one token share one lookup and one signature.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use oauth::OpaqueToken;
use tokio::sync::OnceCell;

use crate::signer::{Signer, SignerError};

/// Most opaque tokens whose phantom JWT is kept (a JWT of ~500 bytes each: ~60 MiB at most).
const KEPT: usize = 100_000;

/// An opaque token resolved: its phantom JWT, as it goes upstream (`Bearer <JWT>`, made once),
/// and when both expire.
#[derive(Debug)]
pub struct Phantom {
    pub jwt: Box<str>,
    pub bearer: hyper::header::HeaderValue,
    pub exp: i64,
}

/// One token's lookup: set once, by the first request that finished it; `None` for a token
/// the store does not hold (or held expired).
type Resolution = OnceCell<Option<Arc<Phantom>>>;

/// Why an opaque token could not be resolved now (as opposed to being unknown or expired).
#[non_exhaustive]
#[derive(Debug)]
pub enum OpaqueError {
    /// The store did not answer.
    Store(store::StoreError),
    /// The HSM did not sign.
    Signer(SignerError),
    /// This daemon has no signing keys: it cannot mint phantom tokens.
    NoSigner,
    /// The daemon's: the signing task was lost, or its result is not a header value.
    Internal(&'static str),
}

impl std::fmt::Display for OpaqueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpaqueError::Store(e) => write!(f, "{e}"),
            OpaqueError::Signer(e) => write!(f, "{e}"),
            OpaqueError::NoSigner => f.write_str("no signing keys to mint a phantom token with"),
            OpaqueError::Internal(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for OpaqueError {}

/// The phantom JWTs of the opaque tokens this daemon has seen.
#[derive(Debug, Default)]
pub struct Opaque {
    kept: Mutex<HashMap<[u8; 32], Arc<Resolution>>>,
    minted: std::sync::atomic::AtomicU64,
}

impl Opaque {
    /// The phantom JWT of `token` when it is an opaque token of ours that the store holds and
    /// that has not expired at `now`; `Ok(None)` when it is not (unknown, malformed, expired:
    /// the caller answers as for an invalid token).
    pub async fn resolve(
        &self,
        token: &[u8],
        store: &store::Store,
        signer: Option<&Arc<Signer>>,
        now: i64,
    ) -> Result<Option<Arc<Phantom>>, OpaqueError> {
        let Some(token) = OpaqueToken::parse(token) else {
            return Ok(None);
        };
        let hash = token.hash();
        let cell = {
            let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
            if kept.len() >= KEPT && !kept.contains_key(&hash) {
                // Expired and unknown tokens go first; a map still full is started afresh.
                kept.retain(|_, cell| {
                    cell.get()
                        .is_some_and(|p| p.as_ref().is_some_and(|p| p.exp > now))
                });
                if kept.len() >= KEPT {
                    kept.clear();
                }
            }
            Arc::clone(kept.entry(hash).or_default())
        };
        let phantom = cell
            .get_or_try_init(|| async {
                let Some(row) = store.opaque(&hash).await.map_err(OpaqueError::Store)? else {
                    return Ok(None);
                };
                if row.exp <= now {
                    return Ok(None);
                }
                let signer = signer.ok_or(OpaqueError::NoSigner)?;
                let jwt = signer
                    .sign_async(row.claims, oauth::ACCESS_TOKEN_TYP)
                    .await
                    .map_err(OpaqueError::Signer)?;
                self.minted
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                // Base64url and dots: always a header value.
                let bearer = hyper::header::HeaderValue::try_from(format!("Bearer {jwt}"))
                    .map_err(|_| OpaqueError::Internal("a JWT that is not a header value"))?;
                Ok(Some(Arc::new(Phantom {
                    jwt: jwt.into(),
                    bearer,
                    exp: row.exp,
                })))
            })
            .await?;
        // An unknown token's answer is kept too (bounded, and dropped first when room is
        // needed): a flood of made-up tokens costs one store lookup each.
        Ok(phantom.as_ref().filter(|p| p.exp > now).map(Arc::clone))
    }

    /// The claims of `token` as the store holds them, for a revocation (`None` when it is not
    /// one of ours or not in the store).
    pub async fn claims(
        token: &[u8],
        store: &store::Store,
    ) -> Result<Option<store::OpaqueRow>, store::StoreError> {
        match OpaqueToken::parse(token) {
            Some(token) => store.opaque(&token.hash()).await,
            None => Ok(None),
        }
    }

    /// Phantom JWTs minted so far (one HSM signature each).
    pub fn minted(&self) -> u64 {
        self.minted.load(std::sync::atomic::Ordering::Relaxed)
    }
}
