//! Revocation at the edge: the records that take verified tokens back before they expire, kept
//! in memory per engine and checked after the cache on every verdict.
//!
//! A record names one token (by `jti` within its issuer, or by the SHA-256 of its compact form)
//! or every token of a subject or a client issued before a time. The set is fed by its owner
//! (the daemon applies the records of its store); the engine never reads a store itself.
//!
//! The check is cheap where it runs most: the set has a generation, bumped by every change,
//! and each verified token remembers the generation it was last found clean at, so a cached
//! token is checked in full once per change of the set, not once per request.

use std::hash::{Hash, Hasher, RandomState};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::RwLock;

use hashbrown::{Equivalent, HashMap};

use jose::Jwt;

/// What a revocation takes back.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Revocation {
    /// The token with this `jti` from issuer `iss`; kept until `exp`, the token's own expiry.
    Jti { iss: String, jti: String, exp: i64 },
    /// Every token of `sub` from issuer `iss` issued (`iat`) before `before`; a token without
    /// `iat` counts as issued before.
    Subject {
        iss: String,
        sub: String,
        before: i64,
    },
    /// Every token whose `client_id` claim is `client_id`, issued before `before` (by `iat`,
    /// as for a subject), whatever its issuer.
    Client { client_id: String, before: i64 },
    /// The token whose compact form has this SHA-256 (for tokens without a `jti`); kept until
    /// `exp`, the token's own expiry.
    Token { sha256: [u8; 32], exp: i64 },
}

impl Revocation {
    /// The kind, as logs, metrics and stores name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Revocation::Jti { .. } => "jti",
            Revocation::Subject { .. } => "subject",
            Revocation::Client { .. } => "client",
            Revocation::Token { .. } => "token",
        }
    }

    /// When the record stops mattering: the revoked token's expiry. Records by subject or
    /// client are kept until they are removed.
    pub fn expires(&self) -> Option<i64> {
        match self {
            Revocation::Jti { exp, .. } | Revocation::Token { exp, .. } => Some(*exp),
            Revocation::Subject { .. } | Revocation::Client { .. } => None,
        }
    }
}

/// The SHA-256 of a compact token: how [`Revocation::Token`] names it.
pub fn sha256(compact: &[u8]) -> [u8; 32] {
    let mut out = [0; 32];
    out.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, compact).as_ref());
    out
}

/// A token hash as text: 64 lowercase hex digits (stores, the admin API).
pub fn sha256_hex(sha256: &[u8; 32]) -> String {
    sha256.iter().map(|b| format!("{b:02x}")).collect()
}

/// A token hash from 64 hex digits of either case; `None` for anything else.
pub fn sha256_from_hex(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let digit = |c: u8| (c as char).to_digit(16);
        out[i] = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()?;
    }
    Some(out)
}

/// The code of a verdict taken back by a revocation ([`crate::EngineError::Invalid`]).
pub const REVOKED: &str = "revoked";

/// How long past its token's expiry a record is kept in memory: more than any leeway a policy
/// allows, so a record never expires while its token is still accepted.
pub const EXPIRY_MARGIN_S: i64 = 3_600;

/// The records in force, by what they are looked up with (SipHash, seeded per process).
#[derive(Default)]
struct Records {
    /// `(iss, jti)` → the token's `exp`.
    jti: HashMap<(String, String), i64, RandomState>,
    /// `(iss, sub)` → revoked when issued before this.
    subject: HashMap<(String, String), i64, RandomState>,
    /// `client_id` → revoked when issued before this.
    client: HashMap<String, i64, RandomState>,
    /// SHA-256 of the compact token → the token's `exp`.
    token: HashMap<[u8; 32], i64, RandomState>,
}

/// A borrowed `(iss, name)` that finds an owned pair without allocating: it hashes as the
/// tuple of Strings does (a `str` hashes as the `String` holding it).
struct Pair<'a>(&'a str, &'a str);

impl Hash for Pair<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.0, self.1).hash(state);
    }
}

impl Equivalent<(String, String)> for Pair<'_> {
    fn equivalent(&self, key: &(String, String)) -> bool {
        self.0 == key.0 && self.1 == key.1
    }
}

impl Records {
    fn len(&self) -> usize {
        self.jti.len() + self.subject.len() + self.client.len() + self.token.len()
    }

    fn insert(&mut self, record: Revocation) {
        match record {
            Revocation::Jti { iss, jti, exp } => {
                let at = self.jti.entry((iss, jti)).or_insert(exp);
                *at = (*at).max(exp);
            }
            Revocation::Subject { iss, sub, before } => {
                let at = self.subject.entry((iss, sub)).or_insert(before);
                *at = (*at).max(before);
            }
            Revocation::Client { client_id, before } => {
                let at = self.client.entry(client_id).or_insert(before);
                *at = (*at).max(before);
            }
            Revocation::Token { sha256, exp } => {
                let at = self.token.entry(sha256).or_insert(exp);
                *at = (*at).max(exp);
            }
        }
    }

    /// Drops the records whose tokens expired more than [`EXPIRY_MARGIN_S`] before `now`.
    fn purge(&mut self, now: i64) -> usize {
        let before = self.len();
        let live = |exp: &mut i64| exp.saturating_add(EXPIRY_MARGIN_S) >= now;
        self.jti.retain(|_, exp| live(exp));
        self.token.retain(|_, exp| live(exp));
        before - self.len()
    }

    /// The reason `jwt` (compact form `compact`) is revoked, if it is.
    fn revokes(&self, jwt: &Jwt, compact: &[u8]) -> bool {
        let issued = || jwt.numeric_claim("iat").unwrap_or(f64::NEG_INFINITY);
        let iss = jwt.str_claim("iss");
        let iss = iss.as_deref().unwrap_or("");
        if !self.jti.is_empty() {
            if let Some(jti) = jwt.str_claim("jti") {
                if self.jti.contains_key(&Pair(iss, &jti)) {
                    return true;
                }
            }
        }
        if !self.subject.is_empty() {
            if let Some(sub) = jwt.str_claim("sub") {
                if let Some(&before) = self.subject.get(&Pair(iss, &sub)) {
                    if issued() < before as f64 {
                        return true;
                    }
                }
            }
        }
        if !self.client.is_empty() {
            if let Some(client) = jwt.str_claim("client_id") {
                if let Some(&before) = self.client.get(client.as_ref()) {
                    if issued() < before as f64 {
                        return true;
                    }
                }
            }
        }
        if !self.token.is_empty() && self.token.contains_key(&sha256(compact)) {
            return true;
        }
        false
    }
}

/// The revocation records an engine checks every verdict against.
#[derive(Default)]
pub struct Revocations {
    records: RwLock<Records>,
    /// Bumped (under the write lock, after the change) by every change; 0 while the set has
    /// never held a record, which lets every check pass at once.
    generation: AtomicU32,
}

impl std::fmt::Debug for Revocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revocations")
            .field("records", &self.len())
            .field("generation", &self.generation.load(Ordering::Relaxed))
            .finish()
    }
}

/// The generation a token was last found clean at: kept with each verified token.
#[derive(Debug, Default)]
pub struct Checked(AtomicU32);

impl Revocations {
    /// Adds records; a record for something already revoked keeps the later time.
    pub fn apply(&self, records: impl IntoIterator<Item = Revocation>) {
        let mut set = self.records.write().unwrap_or_else(|e| e.into_inner());
        let mut changed = false;
        for record in records {
            set.insert(record);
            changed = true;
        }
        if changed {
            self.bump();
        }
    }

    /// Drops records whose tokens have expired (see [`EXPIRY_MARGIN_S`]); returns how many.
    pub fn purge(&self, now: i64) -> usize {
        let mut set = self.records.write().unwrap_or_else(|e| e.into_inner());
        set.purge(now)
    }

    /// How many records are in force.
    pub fn len(&self) -> usize {
        self.records.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn bump(&self) {
        // Generation 0 means "never held a record"; wrapping past it skips it.
        let next = self
            .generation
            .load(Ordering::Relaxed)
            .wrapping_add(1)
            .max(1);
        self.generation.store(next, Ordering::Release);
    }

    /// Whether the verified token `jwt` (compact form `compact`) is revoked. `checked` is the
    /// token's own memo: a token found clean at the set's current generation is not looked up
    /// again until the set changes.
    pub fn revokes(&self, jwt: &Jwt, compact: &[u8], checked: &Checked) -> bool {
        let generation = self.generation.load(Ordering::Acquire);
        if generation == 0 || checked.0.load(Ordering::Relaxed) == generation {
            return false;
        }
        // A change made after `generation` was read bumps it again: this token is looked up
        // once more on its next verdict.
        let set = self.records.read().unwrap_or_else(|e| e.into_inner());
        if set.revokes(jwt, compact) {
            return true;
        }
        checked.0.store(generation, Ordering::Relaxed);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jose::{Algorithm, SigningKey, Validation};

    fn token(claims: &str) -> (Jwt, String) {
        let key = SigningKey::generate(Algorithm::HS256).expect("key");
        let compact = key.jwt(None, claims).expect("sign");
        let keys = key.key_set().expect("keys");
        let jwt =
            jose::jwt::verify(&compact, &keys, &Validation::default(), 1_000).expect("valid token");
        (jwt, compact)
    }

    #[test]
    fn each_kind_revokes_only_what_it_names() {
        let claims = r#"{"iss":"https://a","sub":"alice","jti":"j1","client_id":"web","iat":900,"exp":2000}"#;
        let (jwt, compact) = token(claims);
        let cases = [
            (
                Revocation::Jti {
                    iss: "https://a".into(),
                    jti: "j1".into(),
                    exp: 2000,
                },
                true,
            ),
            (
                Revocation::Jti {
                    iss: "https://b".into(),
                    jti: "j1".into(),
                    exp: 2000,
                },
                false,
            ),
            (
                Revocation::Jti {
                    iss: "https://a".into(),
                    jti: "j2".into(),
                    exp: 2000,
                },
                false,
            ),
            (
                Revocation::Subject {
                    iss: "https://a".into(),
                    sub: "alice".into(),
                    before: 901,
                },
                true,
            ),
            (
                Revocation::Subject {
                    iss: "https://a".into(),
                    sub: "alice".into(),
                    before: 900,
                },
                false,
            ),
            (
                Revocation::Subject {
                    iss: "https://b".into(),
                    sub: "alice".into(),
                    before: 901,
                },
                false,
            ),
            (
                Revocation::Client {
                    client_id: "web".into(),
                    before: 901,
                },
                true,
            ),
            (
                Revocation::Client {
                    client_id: "web".into(),
                    before: 899,
                },
                false,
            ),
            (
                Revocation::Client {
                    client_id: "cli".into(),
                    before: 901,
                },
                false,
            ),
            (
                Revocation::Token {
                    sha256: sha256(compact.as_bytes()),
                    exp: 2000,
                },
                true,
            ),
            (
                Revocation::Token {
                    sha256: [7; 32],
                    exp: 2000,
                },
                false,
            ),
        ];
        for (record, revoked) in cases {
            let set = Revocations::default();
            set.apply([record.clone()]);
            let checked = Checked::default();
            assert_eq!(
                set.revokes(&jwt, compact.as_bytes(), &checked),
                revoked,
                "{record:?}"
            );
        }
    }

    #[test]
    fn a_token_without_iat_counts_as_issued_before() {
        let (jwt, compact) = token(r#"{"sub":"bob","exp":2000}"#);
        let set = Revocations::default();
        set.apply([Revocation::Subject {
            iss: String::new(),
            sub: "bob".into(),
            before: 1,
        }]);
        assert!(set.revokes(&jwt, compact.as_bytes(), &Checked::default()));
    }

    #[test]
    fn a_clean_token_is_looked_up_again_after_a_change() {
        let (jwt, compact) = token(r#"{"iss":"i","jti":"x","exp":2000}"#);
        let set = Revocations::default();
        let checked = Checked::default();
        assert!(!set.revokes(&jwt, compact.as_bytes(), &checked));
        set.apply([Revocation::Jti {
            iss: "i".into(),
            jti: "other".into(),
            exp: 2000,
        }]);
        assert!(!set.revokes(&jwt, compact.as_bytes(), &checked));
        set.apply([Revocation::Jti {
            iss: "i".into(),
            jti: "x".into(),
            exp: 2000,
        }]);
        assert!(set.revokes(&jwt, compact.as_bytes(), &checked));
    }

    #[test]
    fn token_hashes_read_back_from_hex() {
        let hash = sha256(b"t");
        assert_eq!(sha256_from_hex(&sha256_hex(&hash)), Some(hash));
        assert_eq!(
            sha256_from_hex(&sha256_hex(&hash).to_uppercase()),
            Some(hash)
        );
        for bad in ["", "00", &"g".repeat(64), &"0".repeat(63), &"é".repeat(32)] {
            assert_eq!(sha256_from_hex(bad), None, "{bad}");
        }
    }

    #[test]
    fn expired_records_are_purged_after_the_margin() {
        let set = Revocations::default();
        set.apply([
            Revocation::Jti {
                iss: "i".into(),
                jti: "old".into(),
                exp: 100,
            },
            Revocation::Jti {
                iss: "i".into(),
                jti: "new".into(),
                exp: 10_000,
            },
            Revocation::Subject {
                iss: "i".into(),
                sub: "s".into(),
                before: 50,
            },
        ]);
        assert_eq!(set.purge(100 + EXPIRY_MARGIN_S), 0);
        assert_eq!(set.purge(101 + EXPIRY_MARGIN_S), 1);
        assert_eq!(set.len(), 2);
    }
}
