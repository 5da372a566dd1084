//! Signing keys in a PKCS#11 HSM, through `cryptoki`. The only crate of tessera that reaches
//! FFI, and it does so only through `cryptoki`'s safe API: this crate holds no `unsafe` code.
//!
//! One [`Hsm`] per process (PKCS#11 allows one initialisation per process): it loads the module,
//! finds the token by label (SoftHSM gives tokens random slot numbers), logs in once, and keeps a
//! bounded pool of open sessions so that several threads sign at once. Private keys are generated
//! inside the token as private, sensitive, never extractable, sign-only objects; public keys are
//! read back and published as JWKs whose `kid` is the RFC 7638 thumbprint, also stored as the
//! key pair's `CKA_ID`. The lifecycle state lives in the key pair's `CKA_LABEL`, its timing in a
//! data object beside them ([`lifecycle`]).

#![forbid(unsafe_code)]

pub mod lifecycle;
mod pin;

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use aws_lc_rs::digest;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use jose::{Algorithm, PublicJwk};

pub use lifecycle::{KeyState, Lifecycle, Policy};
pub use pin::Pin;

/// Where the HSM is and how to log in.
#[derive(Clone, Debug)]
pub struct HsmConfig {
    /// The PKCS#11 module (for SoftHSM: `/usr/lib/softhsm/libsofthsm2.so`).
    pub module: PathBuf,
    /// The token's label.
    pub token: String,
    pub pin: Pin,
    /// Sessions kept open for signing; also the number of concurrent signers.
    pub sessions: usize,
    /// How long a signer waits for a free session before giving up.
    pub wait: Duration,
}

impl HsmConfig {
    pub const SOFTHSM_MODULE: &'static str = "/usr/lib/softhsm/libsofthsm2.so";

    pub fn new(module: impl Into<PathBuf>, token: impl Into<String>, pin: Pin) -> Self {
        HsmConfig {
            module: module.into(),
            token: token.into(),
            pin,
            sessions: 4,
            wait: Duration::from_secs(5),
        }
    }
}

/// Why an HSM operation failed. Never carries a PIN.
#[non_exhaustive]
#[derive(Debug)]
pub enum HsmError {
    /// The module could not be loaded or initialised (configuration).
    Module(String),
    /// No token with this label (configuration).
    TokenNotFound(String),
    /// The PIN could not be read (configuration).
    Pin(String),
    /// The PIN file may be read or written by its group or others (configuration).
    PinFileMode { path: PathBuf, mode: u32 },
    /// The token refused the PIN.
    Login(CallError),
    /// A PKCS#11 call failed.
    Pkcs11 { op: &'static str, error: CallError },
    /// No key pair with this `kid` on the token.
    KeyNotFound(String),
    /// No active key for this algorithm.
    NoActiveKey(Algorithm),
    /// The algorithm or key size is not supported for HSM keys.
    Unsupported(String),
    /// The token returned something unexpected (a malformed public key, a wrong-size signature).
    Token(String),
    /// Every session stayed busy for the configured wait.
    Busy,
    /// The token could not be reached within the configured wait (removed, not present, ...).
    Unavailable(String),
}

impl fmt::Display for HsmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HsmError::Module(m) => write!(f, "PKCS#11 module: {m}"),
            HsmError::TokenNotFound(label) => write!(f, "no token labelled {label:?}"),
            HsmError::Pin(m) => write!(f, "PIN: {m}"),
            HsmError::PinFileMode { path, mode } => write!(
                f,
                "PIN file {}: mode {mode:04o} is too open; chmod 600 it",
                path.display()
            ),
            HsmError::Login(e) => write!(f, "login refused: {e}"),
            HsmError::Pkcs11 { op, error } => write!(f, "{op}: {error}"),
            HsmError::KeyNotFound(kid) => write!(f, "no key with kid {kid:?}"),
            HsmError::NoActiveKey(alg) => write!(f, "no active {alg} key"),
            HsmError::Unsupported(m) => write!(f, "unsupported: {m}"),
            HsmError::Token(m) => write!(f, "unexpected answer from the token: {m}"),
            HsmError::Busy => f.write_str("all HSM sessions busy"),
            HsmError::Unavailable(m) => write!(f, "HSM unavailable: {m}"),
        }
    }
}

impl std::error::Error for HsmError {}

/// The failure of one PKCS#11 call, as the module reported it.
pub struct CallError(CkError);

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for CallError {}

fn ck(op: &'static str) -> impl FnOnce(CkError) -> HsmError {
    move |error| HsmError::Pkcs11 {
        op,
        error: CallError(error),
    }
}

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
    private: ObjectHandle,
    public_handle: ObjectHandle,
    /// The connection the handles belong to.
    generation: u64,
}

impl KeyInfo {
    /// The public JWK, as published.
    pub fn jwk(&self) -> String {
        self.public.to_json(&self.kid, self.life.alg)
    }
}

/// A bounded pool of sessions; a signer borrows one and gives it back.
struct Pool {
    idle: Mutex<Vec<Session>>,
    freed: Condvar,
    wait: Duration,
}

impl Pool {
    fn take(&self) -> Result<Session, HsmError> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let (mut idle, _) = self
            .freed
            .wait_timeout_while(idle, self.wait, |idle| idle.is_empty())
            .unwrap_or_else(|e| e.into_inner());
        idle.pop().ok_or(HsmError::Busy)
    }

    fn give(&self, session: Session) {
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(session);
        self.freed.notify_one();
    }
}

/// A logged-in token that recovers: when the token reports a closed or invalid session or
/// handle, a removed device, a missing token or a lost login, the `Hsm` finalises the module,
/// initialises it again (a token re-created underneath a running process stays invisible until
/// then), logs in, finds its keys again by `CKA_ID`, and retries, backing off, for at most
/// [`HsmConfig::wait`]. While the token stays away, calls fail with [`HsmError::Unavailable`];
/// the public keys last read stay available from [`Hsm::cached_keys`].
pub struct Hsm {
    config: HsmConfig,
    /// `None` while the token is unreachable.
    connection: RwLock<Option<Connection>>,
    generation: AtomicU64,
    /// When the last reconnection was attempted.
    last_attempt: Mutex<Option<Instant>>,
    cache: Mutex<Vec<KeyInfo>>,
}

/// One initialisation of the module: its sessions and the key handles valid in them.
struct Connection {
    pool: Pool,
    generation: u64,
    /// (private, public) handles found again by kid after a reconnection.
    handles: Mutex<HashMap<String, (ObjectHandle, ObjectHandle)>>,
    /// The token's slot, for sessions outside the pool ([`RawSigner`]).
    slot: Slot,
    ctx: Pkcs11,
}

impl Connection {
    fn open(config: &HsmConfig, generation: u64) -> Result<Self, HsmError> {
        let ctx = load(&config.module)?;
        let connect = || {
            let slot = find_token(&ctx, &config.token)?
                .ok_or_else(|| HsmError::TokenNotFound(config.token.clone()))?;
            let mut sessions = Vec::with_capacity(config.sessions.max(1));
            for _ in 0..config.sessions.max(1) {
                sessions.push(ctx.open_rw_session(slot).map_err(ck("C_OpenSession"))?);
            }
            // Login is per application: one login covers every session.
            login(&sessions[0], UserType::User, &config.pin)?;
            Ok((slot, sessions))
        };
        match connect() {
            Ok((slot, sessions)) => Ok(Connection {
                pool: Pool {
                    idle: Mutex::new(sessions),
                    freed: Condvar::new(),
                    wait: config.wait,
                },
                generation,
                handles: Mutex::new(HashMap::new()),
                slot,
                ctx,
            }),
            Err(e) => {
                let _ = ctx.finalize();
                Err(e)
            }
        }
    }

    fn close(self) {
        // Sessions close before the module finalises.
        drop(self.pool);
        let _ = self.ctx.finalize();
    }

    fn with_session<T>(
        &self,
        f: impl FnOnce(&Session) -> Result<T, HsmError>,
    ) -> Result<T, HsmError> {
        let session = self.pool.take()?;
        let result = f(&session);
        self.pool.give(session);
        result
    }

    /// The (private, public) handles of `key` in this connection.
    fn handles(&self, key: &KeyInfo) -> Result<(ObjectHandle, ObjectHandle), HsmError> {
        if key.generation == self.generation {
            return Ok((key.private, key.public_handle));
        }
        let mut cache = self.handles.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&found) = cache.get(&key.kid) {
            return Ok(found);
        }
        let find = |class| {
            self.with_session(|session| {
                session
                    .find_objects(&[
                        Attribute::Class(class),
                        Attribute::Id(key.kid.clone().into_bytes()),
                    ])
                    .map_err(ck("C_FindObjects"))
            })?
            .into_iter()
            .next()
            .ok_or_else(|| HsmError::KeyNotFound(key.kid.clone()))
        };
        let found = (
            find(ObjectClass::PRIVATE_KEY)?,
            find(ObjectClass::PUBLIC_KEY)?,
        );
        cache.insert(key.kid.clone(), found);
        Ok(found)
    }
}

impl fmt::Debug for Hsm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hsm")
            .field("token", &self.config.token)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl Drop for Hsm {
    fn drop(&mut self) {
        let connection = self.connection.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(connection) = connection.take() {
            connection.close();
        }
    }
}

/// Whether the token's answer means the connection, not the request, is broken.
fn recoverable(error: &HsmError) -> bool {
    match error {
        HsmError::Unavailable(_) | HsmError::TokenNotFound(_) | HsmError::Module(_) => true,
        HsmError::Pkcs11 {
            error: CallError(CkError::Pkcs11(rv, _)),
            ..
        } => matches!(
            rv,
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::ObjectHandleInvalid
                | RvError::KeyHandleInvalid
                | RvError::DeviceRemoved
                | RvError::DeviceError
                | RvError::TokenNotPresent
                | RvError::TokenNotRecognized
                | RvError::UserNotLoggedIn
                | RvError::CryptokiNotInitialized
                | RvError::GeneralError
        ),
        _ => false,
    }
}

fn load(module: &Path) -> Result<Pkcs11, HsmError> {
    let ctx =
        Pkcs11::new(module).map_err(|e| HsmError::Module(format!("{}: {e}", module.display())))?;
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .map_err(|e| HsmError::Module(format!("{}: C_Initialize: {e}", module.display())))?;
    Ok(ctx)
}

fn find_token(ctx: &Pkcs11, label: &str) -> Result<Option<Slot>, HsmError> {
    for slot in ctx
        .get_slots_with_initialized_token()
        .map_err(ck("C_GetSlotList"))?
    {
        let info = ctx.get_token_info(slot).map_err(ck("C_GetTokenInfo"))?;
        if info.label().trim_end() == label {
            return Ok(Some(slot));
        }
    }
    Ok(None)
}

fn login(session: &Session, user: UserType, pin: &Pin) -> Result<(), HsmError> {
    match session.login(user, Some(&pin.auth())) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
        Err(e) => Err(HsmError::Login(CallError(e))),
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

impl Hsm {
    /// Creates and initialises a token labelled `label` in a free slot, with `so_pin` and the
    /// user `pin`, unless a token with that label exists already. Returns whether it created one.
    pub fn init_token(
        module: &Path,
        label: &str,
        so_pin: &Pin,
        pin: &Pin,
    ) -> Result<bool, HsmError> {
        let ctx = load(module)?;
        if find_token(&ctx, label)?.is_some() {
            return Ok(false);
        }
        let slot = ctx
            .get_slots_with_token()
            .map_err(ck("C_GetSlotList"))?
            .into_iter()
            .find(|&s| {
                ctx.get_token_info(s)
                    .is_ok_and(|info| !info.token_initialized())
            })
            .ok_or_else(|| HsmError::Module("no free slot to initialise a token in".into()))?;
        ctx.init_token(slot, &so_pin.auth(), label)
            .map_err(ck("C_InitToken"))?;
        // Tokens move to a new slot once initialised: find it again by label.
        let slot = find_token(&ctx, label)?.ok_or_else(|| HsmError::TokenNotFound(label.into()))?;
        let session = ctx.open_rw_session(slot).map_err(ck("C_OpenSession"))?;
        login(&session, UserType::So, so_pin)?;
        session.init_pin(&pin.auth()).map_err(ck("C_InitPIN"))?;
        session.logout().map_err(ck("C_Logout"))?;
        Ok(true)
    }

    /// Loads the module, finds the token and logs in.
    pub fn open(config: &HsmConfig) -> Result<Self, HsmError> {
        let connection = Connection::open(config, 0)?;
        Ok(Hsm {
            config: config.clone(),
            connection: RwLock::new(Some(connection)),
            generation: AtomicU64::new(0),
            last_attempt: Mutex::new(None),
            cache: Mutex::new(Vec::new()),
        })
    }

    /// Runs `f` on the current connection; if the token's answer says the connection broke,
    /// reconnects (backing off) and runs `f` again, all within [`HsmConfig::wait`].
    fn run<T>(&self, f: impl Fn(&Connection) -> Result<T, HsmError>) -> Result<T, HsmError> {
        let deadline = Instant::now() + self.config.wait;
        let mut backoff = Duration::from_millis(20);
        loop {
            let (result, generation) = {
                let guard = self.connection.read().unwrap_or_else(|e| e.into_inner());
                match &*guard {
                    Some(c) => (f(c), Some(c.generation)),
                    None => (
                        Err(HsmError::Unavailable("token not connected".into())),
                        None,
                    ),
                }
            };
            match result {
                Err(e) if recoverable(&e) => {
                    if Instant::now() + backoff > deadline {
                        return Err(match e {
                            HsmError::Unavailable(_) => e,
                            other => HsmError::Unavailable(other.to_string()),
                        });
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                    // A refused PIN is not retried: a real token locks after a few failures.
                    if let Err(e @ HsmError::Login(_)) = self.reconnect(generation) {
                        return Err(e);
                    }
                }
                other => return other,
            }
        }
    }

    /// Replaces the connection `seen` with a new one, unless another thread already did or
    /// tried within the last 20 ms (waiting threads must not each reconnect, and log in, in
    /// turn). Returns the error of the attempt, if one was made and failed.
    fn reconnect(&self, seen: Option<u64>) -> Result<(), HsmError> {
        let mut guard = self.connection.write().unwrap_or_else(|e| e.into_inner());
        if guard.as_ref().map(|c| c.generation) != seen {
            return Ok(());
        }
        let mut last = self.last_attempt.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() && last.is_some_and(|at| at.elapsed() < Duration::from_millis(20)) {
            return Ok(());
        }
        *last = Some(Instant::now());
        if let Some(old) = guard.take() {
            old.close();
        }
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        match Connection::open(&self.config, generation) {
            Ok(connection) => {
                *guard = Some(connection);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// A [`RawSigner`] for `key`, on a session of its own: the bare `C_Sign` that
    /// [`Hsm::sign`] is measured against. Nothing here is needed to sign.
    pub fn raw_signer(&self, key: &KeyInfo) -> Result<RawSigner<'_>, HsmError> {
        let mechanism = mechanism(key.life.alg)?;
        let guard = self.connection.read().unwrap_or_else(|e| e.into_inner());
        let connection = guard
            .as_ref()
            .ok_or_else(|| HsmError::Unavailable("token not connected".into()))?;
        let (private, _) = connection.handles(key)?;
        // Login is per application: the new session is logged in already.
        let session = connection
            .ctx
            .open_rw_session(connection.slot)
            .map_err(ck("C_OpenSession"))?;
        Ok(RawSigner {
            session,
            private,
            mechanism,
            prehash: prehash(key.life.alg),
            _hsm: PhantomData,
        })
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
        self.run(|c| {
            c.with_session(|session| {
                generate_on(session, c.generation, &mechanism, &public, &private, life)
            })
        })
    }

    /// Every tessera key pair on the token, oldest first.
    pub fn keys(&self) -> Result<Vec<KeyInfo>, HsmError> {
        let keys = self.run(|c| c.with_session(|session| list_keys(session, c.generation)))?;
        *self.cache.lock().unwrap_or_else(|e| e.into_inner()) = keys.clone();
        Ok(keys)
    }

    /// Writes `life` into the labels of `key`'s pair.
    pub fn set_life(&self, key: &KeyInfo, life: Lifecycle) -> Result<(), HsmError> {
        let label = Attribute::Label(life.label().into_bytes());
        self.run(|c| {
            let (private, public) = c.handles(key)?;
            c.with_session(|session| {
                for handle in [public, private] {
                    session
                        .update_attributes(handle, std::slice::from_ref(&label))
                        .map_err(ck("C_SetAttributeValue"))?;
                }
                Ok(())
            })
        })
    }
}

/// Generates a key pair in `session`, then sets both halves' `CKA_ID` to the kid.
fn generate_on(
    session: &Session,
    generation: u64,
    mechanism: &Mechanism<'_>,
    public: &[Attribute],
    private: &[Attribute],
    life: Lifecycle,
) -> Result<KeyInfo, HsmError> {
    let (public_handle, private_handle) = session
        .generate_key_pair(mechanism, public, private)
        .map_err(ck("C_GenerateKeyPair"))?;
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
fn list_keys(session: &Session, generation: u64) -> Result<Vec<KeyInfo>, HsmError> {
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

/// `CKA_LABEL` of the data object that holds the lifecycle [`Policy`].
const POLICY_LABEL: &str = "tessera lifecycle policy";

impl Hsm {
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
        self.run(|c| {
            c.with_session(|session| {
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
            })
        })
    }

    /// Stores `policy` on the token, for every process that opens it.
    pub fn set_policy(&self, policy: &Policy) -> Result<(), HsmError> {
        let value = Attribute::Value(policy.value().into_bytes());
        self.run(|c| {
            c.with_session(|session| match find_policy(session)? {
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
                        value.clone(),
                    ])
                    .map(drop)
                    .map_err(ck("C_CreateObject")),
            })
        })
    }

    /// Signs `message` with `key`, returning the signature in JWS form (raw `r‖s` for ECDSA).
    pub fn sign(&self, key: &KeyInfo, message: &[u8]) -> Result<Vec<u8>, HsmError> {
        let alg = key.life.alg;
        let mechanism = mechanism(alg)?;
        let digest = prehash(alg).map(|hash| digest::digest(hash, message));
        let data = digest.as_ref().map_or(message, |d| d.as_ref());
        let signature = self.run(|c| {
            let (private, _) = c.handles(key)?;
            c.with_session(|session| {
                session
                    .sign(&mechanism, private, data)
                    .map_err(ck("C_Sign"))
            })
        })?;
        let expected = match alg {
            Algorithm::ES256 => Some(64),
            Algorithm::ES384 => Some(96),
            Algorithm::EdDSA => Some(64),
            _ => None,
        };
        if expected.is_some_and(|n| n != signature.len()) {
            return Err(HsmError::Token(format!(
                "{alg} signature of {} bytes",
                signature.len()
            )));
        }
        Ok(signature)
    }
}

/// One key and one session of its own, signing with the mechanism [`Hsm::sign`] uses: one
/// `C_Sign` per call and nothing else (no pool, no reconnection, no retry, no check of the
/// answer). The baseline the signing benchmarks measure [`Hsm::sign`] against.
pub struct RawSigner<'hsm> {
    session: Session,
    private: ObjectHandle,
    mechanism: Mechanism<'static>,
    prehash: Option<&'static digest::Algorithm>,
    /// The session closes before the `Hsm` finalises the module.
    _hsm: PhantomData<&'hsm Hsm>,
}

impl RawSigner<'_> {
    /// What the token is asked to sign for `message`: the message, or for ECDSA its digest.
    pub fn input(&self, message: &[u8]) -> Vec<u8> {
        match self.prehash {
            Some(hash) => digest::digest(hash, message).as_ref().to_vec(),
            None => message.to_vec(),
        }
    }

    /// One `C_Sign` over `input` (from [`RawSigner::input`]).
    pub fn sign(&self, input: &[u8]) -> Result<Vec<u8>, HsmError> {
        self.session
            .sign(&self.mechanism, self.private, input)
            .map_err(ck("C_Sign"))
    }
}

impl fmt::Debug for RawSigner<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawSigner").finish_non_exhaustive()
    }
}

/// The mechanism that signs for `alg`: PKCS #1 v1.5 or PSS (SHA-256, MGF1-SHA-256, 32-byte
/// salt) with SHA-256, pure EdDSA, or for ECDSA `CKM_ECDSA` over a digest made in software
/// ([`prehash`]), which returns `r‖s`.
fn mechanism(alg: Algorithm) -> Result<Mechanism<'static>, HsmError> {
    Ok(match alg {
        Algorithm::ES256 | Algorithm::ES384 => Mechanism::Ecdsa,
        Algorithm::RS256 => Mechanism::Sha256RsaPkcs,
        Algorithm::PS256 => Mechanism::Sha256RsaPkcsPss(PkcsPssParams {
            hash_alg: MechanismType::SHA256,
            mgf: PkcsMgfType::MGF1_SHA256,
            s_len: 32u64.into(),
        }),
        Algorithm::EdDSA => Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
        other => return Err(HsmError::Unsupported(format!("signing with {other}"))),
    })
}

/// The hash made in software before `C_Sign`, for the mechanisms that sign a digest: SoftHSM
/// has no `CKM_ECDSA_SHA256`.
fn prehash(alg: Algorithm) -> Option<&'static digest::Algorithm> {
    match alg {
        Algorithm::ES256 => Some(&digest::SHA256),
        Algorithm::ES384 => Some(&digest::SHA384),
        _ => None,
    }
}

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
