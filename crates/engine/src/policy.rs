//! What a token is verified against: one issuer's keys, swappable while verifications run, and
//! its claims policy.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use jose::{KeySet, Validation};

/// What a token is verified against: one issuer's keys and its claims policy. The keys can be
/// replaced while verifications run (a refreshed remote key set).
#[derive(Debug)]
pub struct Policy {
    /// Unique for the life of the process: cached verdicts are answered only to their policy.
    id: u64,
    /// The keys in force and their generation, bumped at every swap.
    keys: RwLock<(Arc<KeySet>, u64)>,
    pub validation: Validation,
}

static POLICY_IDS: AtomicU64 = AtomicU64::new(1);

impl Policy {
    pub fn new(keys: KeySet, validation: Validation) -> Self {
        Policy {
            id: POLICY_IDS.fetch_add(1, Ordering::Relaxed),
            keys: RwLock::new((Arc::new(keys), 0)),
            validation,
        }
    }

    /// The keys in force.
    pub fn keys(&self) -> Arc<KeySet> {
        self.keys_and_generation().0
    }

    pub(crate) fn keys_and_generation(&self) -> (Arc<KeySet>, u64) {
        let guard = self.keys.read().unwrap_or_else(|e| e.into_inner());
        (Arc::clone(&guard.0), guard.1)
    }

    pub(crate) fn generation(&self) -> u64 {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).1
    }

    /// Replaces the keys.
    pub fn set_keys(&self, keys: Arc<KeySet>) {
        let mut current = self.keys.write().unwrap_or_else(|e| e.into_inner());
        *current = (keys, current.1 + 1);
    }

    /// The id its cache entries carry.
    pub fn id(&self) -> u64 {
        self.id
    }
}
