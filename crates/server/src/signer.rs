//! The daemon's own signing keys in the HSM: the published JWKS, the key set its own issuer
//! verifies with, and signatures (RFC 9701 introspection responses). Every method here blocks
//! on PKCS#11: callers run them on the blocking pool.

use std::sync::{Arc, RwLock};

use engine::LocalKeySet;
use jose::{Algorithm, KeyError, KeySet, SigningInput, VerifyingKey};
use pkcs11::{
    lifecycle, Hsm, HsmConfig, HsmError, KeyInfo, KeySpec, KeyState, Lifecycle, Pin, Policy,
};

use crate::config::HsmSettings;

/// Why the signer could not start or sign.
#[non_exhaustive]
#[derive(Debug)]
pub enum SignerError {
    /// The operator's: no PIN, neither `TESSERA_HSM_PIN` nor a PIN file.
    NoPin,
    /// The HSM's (or its configuration's): [`HsmError`] says which.
    Hsm(HsmError),
    /// The token's keys: no active key to sign with.
    NoActiveKey,
}

impl std::fmt::Display for SignerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignerError::NoPin => {
                f.write_str("no HSM PIN: set TESSERA_HSM_PIN, TESSERA_HSM_PIN_FILE or hsm.pin_file")
            }
            SignerError::Hsm(e) => write!(f, "HSM: {e}"),
            SignerError::NoActiveKey => f.write_str("the HSM has no active signing key"),
        }
    }
}

impl std::error::Error for SignerError {}

impl From<HsmError> for SignerError {
    fn from(e: HsmError) -> Self {
        SignerError::Hsm(e)
    }
}

#[derive(Debug)]
struct Published {
    /// The lifecycle timing, as the token holds it.
    policy: Policy,
    keys: Vec<KeyInfo>,
    jwks: Arc<str>,
}

/// The HSM keys as the daemon serves them.
pub struct Signer {
    hsm: Hsm,
    published: RwLock<Published>,
    local: Arc<LocalKeySet>,
    /// Signatures running at once: no more than there are cores to run them (nor sessions to
    /// run them on). A signature is CPU-bound (SoftHSM) or a round trip to a device; more
    /// threads than cores only switch between themselves and wait for sessions.
    running: tokio::sync::Semaphore,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").finish_non_exhaustive()
    }
}

/// The key set of the published keys, built from their values as [`KeySet::from_jwks`] reads
/// their JWKS: a key of a kind the verifier does not know is left out, and a key it refuses
/// (malformed, weak) leaves the set empty. Neither happens with keys the token generated.
fn local_set(keys: &[&KeyInfo]) -> KeySet {
    let mut set = Vec::with_capacity(keys.len());
    for key in keys {
        match VerifyingKey::from_public(key.life.alg, &key.public, Some(&key.kid)) {
            Ok(verifying) => set.push(verifying),
            Err(KeyError::Unusable(_)) => {}
            Err(_) => return KeySet::default(),
        }
    }
    KeySet::new(set).unwrap_or_default()
}

/// Preference when several algorithms have an active key.
const PREFERENCE: [Algorithm; 5] = [
    Algorithm::ES256,
    Algorithm::EdDSA,
    Algorithm::ES384,
    Algorithm::PS256,
    Algorithm::RS256,
];

impl Signer {
    /// Logs in to the token, creates the development key if asked, and reads the keys.
    pub fn open(settings: &HsmSettings, now: i64) -> Result<Signer, SignerError> {
        let pin = Pin::resolve(settings.pin.clone(), settings.pin_file.as_deref())
            .ok_or(SignerError::NoPin)??;
        let mut config = HsmConfig::new(&settings.module, &settings.token, pin);
        config.sessions = settings.sessions;
        let hsm = Hsm::open(&config)?;
        if let Some(alg) = settings.ensure_key {
            let (_, keys) = hsm.advance(now)?;
            if !keys
                .iter()
                .any(|k| k.life.alg == alg && k.life.state == KeyState::Active)
            {
                let key = hsm.generate(KeySpec::new(alg)?, KeyState::Active, now)?;
                tracing::info!(kid = %key.kid, %alg, "created a signing key");
            }
        }
        let signer = Signer {
            hsm,
            published: RwLock::new(Published {
                policy: Policy::default(),
                keys: Vec::new(),
                jwks: Arc::from("{\"keys\":[]}"),
            }),
            local: Arc::new(LocalKeySet::default()),
            running: tokio::sync::Semaphore::new(
                std::thread::available_parallelism()
                    .map_or(1, |n| n.get())
                    .min(settings.sessions.max(1)),
            ),
        };
        signer.reload(now)?;
        Ok(signer)
    }

    /// Applies due lifecycle transitions and re-reads the keys and the lifecycle policy (both
    /// kept on the token, shared with the CLI): the JWKS and the local key set follow. Returns
    /// whether the published set changed.
    pub fn reload(&self, now: i64) -> Result<bool, SignerError> {
        let (policy, keys) = self.hsm.advance(now)?;
        let published_keys: Vec<&KeyInfo> = keys
            .iter()
            .filter(|k| policy.published(&k.life, now))
            .collect();
        let jwks: Vec<String> = published_keys.iter().map(|k| k.jwk()).collect();
        let jwks = format!("{{\"keys\":[{}]}}", jwks.join(","));
        let mut published = self.published.write().unwrap_or_else(|e| e.into_inner());
        let changed = *published.jwks != *jwks;
        if changed {
            self.local.set(local_set(&published_keys));
        }
        *published = Published {
            policy,
            keys,
            jwks: jwks.into(),
        };
        Ok(changed)
    }

    /// The published JWK Set document.
    pub fn jwks(&self) -> Arc<str> {
        Arc::clone(
            &self
                .published
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .jwks,
        )
    }

    /// The key set this daemon's own issuer verifies with.
    pub fn local_keys(&self) -> Arc<LocalKeySet> {
        Arc::clone(&self.local)
    }

    /// Algorithms with an active key.
    pub fn algorithms(&self) -> Vec<Algorithm> {
        let published = self.published.read().unwrap_or_else(|e| e.into_inner());
        PREFERENCE
            .into_iter()
            .filter(|alg| {
                published
                    .keys
                    .iter()
                    .any(|k| k.life.alg == *alg && k.life.state == KeyState::Active)
            })
            .collect()
    }

    /// [`Signer::sign`] from async code: it waits its turn (at most one signature per core at
    /// once), then runs on the blocking pool.
    pub async fn sign_async(
        self: &Arc<Self>,
        claims: String,
        typ: &'static str,
    ) -> Result<String, SignerError> {
        let _turn =
            self.running.acquire().await.map_err(|_| {
                SignerError::Hsm(HsmError::Unavailable("the signer is closed".into()))
            })?;
        let signer = Arc::clone(self);
        tokio::task::spawn_blocking(move || signer.sign(&claims, typ))
            .await
            .map_err(|_| {
                SignerError::Hsm(HsmError::Unavailable("the signing task was lost".into()))
            })?
    }

    /// Signs `claims` (a JSON object) with the preferred key active at this moment (a
    /// rotation that fell due since the last reload counts): a compact JWS.
    pub fn sign(&self, claims: &str, typ: &str) -> Result<String, SignerError> {
        let key = {
            let published = self.published.read().unwrap_or_else(|e| e.into_inner());
            let lives: Vec<Lifecycle> = published.keys.iter().map(|k| k.life).collect();
            let lives = lifecycle::at(&lives, &published.policy, crate::unix_now());
            PREFERENCE
                .iter()
                .find_map(|alg| {
                    published
                        .keys
                        .iter()
                        .zip(&lives)
                        .rfind(|(_, life)| life.alg == *alg && life.state == KeyState::Active)
                })
                .map(|(key, _)| key.clone())
                .ok_or(SignerError::NoActiveKey)?
        };
        let header = jose::jws::header_json(key.life.alg, Some(&key.kid), Some(typ));
        let input = SigningInput::new(header.as_bytes(), claims.as_bytes());
        let signature = self.hsm.sign(&key, input.as_bytes())?;
        Ok(input.into_compact(&signature))
    }
}
