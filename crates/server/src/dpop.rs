//! The DPoP proofs this daemon has accepted (RFC 9449 section 11.1): each proof's `jti`, per key,
//! until its `iat` window has passed, so that no proof is accepted twice by this daemon.
//! Bounded: when full of proofs still in their window, new ones are refused (503), never let
//! through unremembered. With `[authz.dpop] replays = "store"` the store remembers them
//! instead ([`proof_key`] names a proof in both).

use std::collections::HashMap;
use std::sync::Mutex;

use aws_lc_rs::digest;

/// What a proof is remembered by, here and in the store: the SHA-256 of its key's thumbprint
/// and its `jti`. Both are client-chosen text of bounded length; the digest makes a fixed-size
/// key that no choice of `jti` can make collide with another key's (a thumbprint holds no
/// newline).
pub fn proof_key(jkt: &str, jti: &str) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(jkt.as_bytes());
    ctx.update(b"\n");
    ctx.update(jti.as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(ctx.finish().as_ref());
    key
}

/// Shards, so that concurrent requests rarely wait on one lock.
const SHARDS: usize = 16;

/// What remembering a proof found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Remembered {
    /// Its first use: it is now remembered.
    First,
    /// It was accepted before.
    Replayed,
    /// There is no room for it.
    Full,
}

/// The proofs of one shard: the digest of key and `jti`, and until when it is remembered.
type Shard = Mutex<HashMap<[u8; 32], i64>>;

#[derive(Debug)]
pub struct Replays {
    shards: Box<[Shard]>,
    per_shard: usize,
}

impl Replays {
    /// Room for about `max` proofs.
    pub fn new(max: usize) -> Replays {
        Replays {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: max.div_ceil(SHARDS).max(1),
        }
    }

    /// Remembers the proof `jti` of the key `jkt` until `until` (seconds), at `now`.
    pub fn remember(&self, jkt: &str, jti: &str, until: i64, now: i64) -> Remembered {
        let key = proof_key(jkt, jti);
        let shard = &self.shards[usize::from(key[0]) % SHARDS];
        let mut seen = shard.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&expires) = seen.get(&key) {
            if expires >= now {
                return Remembered::Replayed;
            }
        }
        if seen.len() >= self.per_shard {
            seen.retain(|_, expires| *expires >= now);
            if seen.len() >= self.per_shard {
                return Remembered::Full;
            }
        }
        seen.insert(key, until);
        Remembered::First
    }

    /// Proofs remembered now (some may have passed their window).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_is_accepted_once_within_its_window() {
        let replays = Replays::new(1024);
        assert_eq!(replays.remember("k1", "a", 160, 100), Remembered::First);
        assert_eq!(replays.remember("k1", "a", 160, 150), Remembered::Replayed);
        // The same jti from another key is another proof.
        assert_eq!(replays.remember("k2", "a", 160, 150), Remembered::First);
        // "k1\na" + "" is not "k1" + "\na": no way to collide by choice of jti.
        assert_eq!(replays.remember("k1\na", "", 160, 150), Remembered::First);
        // Past its window it may be forgotten (and a proof that old fails the iat check).
        assert_eq!(replays.remember("k1", "a", 300, 161), Remembered::First);
    }

    #[test]
    fn full_refuses_until_proofs_expire() {
        let replays = Replays::new(SHARDS);
        let mut full = 0;
        for i in 0..SHARDS * 8 {
            if replays.remember("k", &i.to_string(), 100, 50) == Remembered::Full {
                full += 1;
            }
        }
        assert!(full > 0);
        assert!(replays.len() <= SHARDS);
        // Once the remembered ones have expired, there is room again.
        assert_eq!(replays.remember("k", "late", 300, 200), Remembered::First);
    }
}
