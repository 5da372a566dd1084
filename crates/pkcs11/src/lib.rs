//! Signing keys in a PKCS#11 HSM, through `cryptoki`. The only crate of tessera that reaches
//! FFI, and it does so only through `cryptoki`'s safe API: this crate holds no `unsafe` code,
//! and its public API names no `cryptoki` type.
//!
//! One [`Hsm`] per process (PKCS#11 allows one initialisation per process): it loads the module,
//! finds the token by label (SoftHSM gives tokens random slot numbers), logs in once, and keeps a
//! bounded pool of open sessions so that several threads sign at once. Private keys are generated
//! inside the token as private, sensitive, never extractable, sign-only objects; public keys are
//! read back and published as JWKs whose `kid` is the RFC 7638 thumbprint, also stored as the
//! key pair's `CKA_ID`. The lifecycle state lives in the key pair's `CKA_LABEL`, its timing in a
//! data object beside them ([`lifecycle`]).
//!
//! By role: `session.rs` reaches the token (module, login, session pool, reconnection and
//! retry), `keys.rs` makes, lists and labels key pairs and keeps the policy object, `sign.rs`
//! holds the mechanism and signature form of each algorithm, `error.rs` what can go wrong and
//! `pin.rs` the PIN. This file is the [`Hsm`] that puts them together.

#![forbid(unsafe_code)]

mod error;
mod keys;
pub mod lifecycle;
mod pin;
mod session;
mod sign;

use std::fmt;
use std::path::Path;
use std::sync::Mutex;

use aws_lc_rs::digest;

pub use error::{CallError, HsmError};
pub use keys::{KeyInfo, KeySpec};
pub use lifecycle::{KeyState, Lifecycle, Policy};
pub use pin::Pin;
pub use session::HsmConfig;
pub use sign::RawSigner;

use session::Sessions;

/// A logged-in token that recovers: when the token reports a closed or invalid session or
/// handle, a removed device, a missing token or a lost login, the `Hsm` finalises the module,
/// initialises it again (a token re-created underneath a running process stays invisible until
/// then), logs in, finds its keys again by `CKA_ID`, and retries, backing off, for at most
/// [`HsmConfig::wait`]. While the token stays away, calls fail with [`HsmError::Unavailable`];
/// the public keys last read stay available from [`Hsm::cached_keys`].
pub struct Hsm {
    sessions: Sessions,
    cache: Mutex<Vec<KeyInfo>>,
}

impl fmt::Debug for Hsm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hsm")
            .field("token", &self.sessions.token())
            .field("generation", self.sessions.generation())
            .finish_non_exhaustive()
    }
}

impl Hsm {
    /// Creates and initialises a token labelled `label` in a free slot, with `so_pin` and the
    /// user `pin`, unless a token with that label exists already. Returns whether it created one.
    pub fn init_token(
        module: &Path,
        label: &str,
        so_pin: &Pin,
        pin: &Pin,
    ) -> Result<bool, HsmError> {
        session::init_token(module, label, so_pin, pin)
    }

    /// Loads the module, finds the token and logs in.
    pub fn open(config: &HsmConfig) -> Result<Self, HsmError> {
        Ok(Hsm {
            sessions: Sessions::open(config)?,
            cache: Mutex::new(Vec::new()),
        })
    }

    /// A [`RawSigner`] for `key`, on a session of its own: the bare `C_Sign` that
    /// [`Hsm::sign`] is measured against. Nothing here is needed to sign.
    pub fn raw_signer(&self, key: &KeyInfo) -> Result<RawSigner<'_>, HsmError> {
        let mechanism = sign::mechanism(key.life.alg)?;
        let (session, private) = self.sessions.dedicated(key)?;
        Ok(RawSigner::new(key.life.alg, mechanism, session, private))
    }

    /// The keys as last read from the token: what verifiers need while the token is away.
    pub fn cached_keys(&self) -> Vec<KeyInfo> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Generates a key pair inside the token, in lifecycle state `state` since `now`.
    pub fn generate(&self, spec: KeySpec, state: KeyState, now: i64) -> Result<KeyInfo, HsmError> {
        let life = Lifecycle {
            alg: spec.alg,
            state,
            since: now,
        };
        let template = keys::Template::new(spec, life)?;
        self.sessions
            .run(|c| c.with_session(|session| template.generate(session, c.generation)))
    }

    /// Every tessera key pair on the token, oldest first.
    pub fn keys(&self) -> Result<Vec<KeyInfo>, HsmError> {
        let keys = self
            .sessions
            .run(|c| c.with_session(|session| keys::list(session, c.generation)))?;
        *self.cache.lock().unwrap_or_else(|e| e.into_inner()) = keys.clone();
        Ok(keys)
    }

    /// Writes `life` into the labels of `key`'s pair.
    pub fn set_life(&self, key: &KeyInfo, life: Lifecycle) -> Result<(), HsmError> {
        self.sessions.run(|c| {
            let handles = c.handles(key)?;
            c.with_session(|session| keys::set_life(session, handles, &life))
        })
    }

    /// The keys in the states they have at `now` under the token's policy, and that policy.
    /// Computed from the labels: nothing is written to the token.
    pub fn keys_at(&self, now: i64) -> Result<(Policy, Vec<KeyInfo>), HsmError> {
        self.lifecycle_at(now, false)
    }

    /// Like [`Hsm::keys_at`], and writes the transitions due at `now` into the labels.
    pub fn advance(&self, now: i64) -> Result<(Policy, Vec<KeyInfo>), HsmError> {
        self.lifecycle_at(now, true)
    }

    fn lifecycle_at(&self, now: i64, write: bool) -> Result<(Policy, Vec<KeyInfo>), HsmError> {
        let policy = self.policy()?;
        let mut keys = self.keys()?;
        let lives: Vec<Lifecycle> = keys.iter().map(|k| k.life).collect();
        for (i, life) in lifecycle::plan(&lives, &policy, now) {
            if write {
                self.set_life(&keys[i], life)?;
            }
            keys[i].life = life;
        }
        Ok((policy, keys))
    }

    /// The lifecycle policy stored on the token; the default when none is.
    pub fn policy(&self) -> Result<Policy, HsmError> {
        self.sessions.run(|c| c.with_session(keys::policy))
    }

    /// Stores `policy` on the token, for every process that opens it.
    pub fn set_policy(&self, policy: &Policy) -> Result<(), HsmError> {
        self.sessions
            .run(|c| c.with_session(|session| keys::set_policy(session, policy)))
    }

    /// Signs `message` with `key`, returning the signature in JWS form (raw `r‖s` for ECDSA).
    pub fn sign(&self, key: &KeyInfo, message: &[u8]) -> Result<Vec<u8>, HsmError> {
        let alg = key.life.alg;
        let mechanism = sign::mechanism(alg)?;
        let digest = sign::prehash(alg).map(|hash| digest::digest(hash, message));
        let data = digest.as_ref().map_or(message, |d| d.as_ref());
        let signature = self.sessions.run(|c| {
            let (private, _) = c.handles(key)?;
            c.with_session(|session| sign::sign(session, &mechanism, private, data))
        })?;
        sign::jws_form(alg, signature)
    }
}
