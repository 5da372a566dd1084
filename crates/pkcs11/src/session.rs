//! Reaching the token: the module load, the login, the bounded pool of sessions, and the
//! recovery that replaces the whole connection when the token goes away and comes back.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::{Attribute, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;

use crate::error::{ck, CallError, HsmError};
use crate::keys::KeyInfo;
use crate::pin::Pin;

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

/// The connection to the token, replaced when it breaks: when the token reports a closed or
/// invalid session or handle, a removed device, a missing token or a lost login, the module is
/// finalised and initialised again (a token re-created underneath a running process stays
/// invisible until then), the user logs in, keys are found again by `CKA_ID`, and the call is
/// retried, backing off, for at most [`HsmConfig::wait`].
pub(crate) struct Sessions {
    config: HsmConfig,
    /// `None` while the token is unreachable.
    connection: RwLock<Option<Connection>>,
    generation: AtomicU64,
    /// When the last reconnection was attempted.
    last_attempt: Mutex<Option<Instant>>,
}

impl Sessions {
    /// Loads the module, finds the token and logs in.
    pub(crate) fn open(config: &HsmConfig) -> Result<Self, HsmError> {
        let connection = Connection::open(config, 0)?;
        Ok(Sessions {
            config: config.clone(),
            connection: RwLock::new(Some(connection)),
            generation: AtomicU64::new(0),
            last_attempt: Mutex::new(None),
        })
    }

    /// The token's label.
    pub(crate) fn token(&self) -> &str {
        &self.config.token
    }

    /// How many times the connection was replaced.
    pub(crate) fn generation(&self) -> &AtomicU64 {
        &self.generation
    }

    /// Runs `f` on the current connection; if the token's answer says the connection broke,
    /// reconnects (backing off) and runs `f` again, all within [`HsmConfig::wait`].
    pub(crate) fn run<T>(
        &self,
        f: impl Fn(&Connection) -> Result<T, HsmError>,
    ) -> Result<T, HsmError> {
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
                Err(e) if e.recoverable() => {
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

    /// A new session of the current connection, outside the pool and logged in, with the
    /// handle of `key`'s private half in it. Not retried: the connection may break under it.
    pub(crate) fn dedicated(&self, key: &KeyInfo) -> Result<(Session, ObjectHandle), HsmError> {
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
        Ok((session, private))
    }
}

impl Drop for Sessions {
    fn drop(&mut self) {
        let connection = self.connection.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(connection) = connection.take() {
            connection.close();
        }
    }
}

/// One initialisation of the module: its sessions and the key handles valid in them.
pub(crate) struct Connection {
    pool: Pool,
    pub(crate) generation: u64,
    /// (private, public) handles found again by kid after a reconnection.
    handles: Mutex<HashMap<String, (ObjectHandle, ObjectHandle)>>,
    /// The token's slot, for sessions outside the pool.
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

    /// Lends a pooled session to `f`.
    pub(crate) fn with_session<T>(
        &self,
        f: impl FnOnce(&Session) -> Result<T, HsmError>,
    ) -> Result<T, HsmError> {
        let session = self.pool.take()?;
        let result = f(&session);
        self.pool.give(session);
        result
    }

    /// The (private, public) handles of `key` in this connection.
    pub(crate) fn handles(&self, key: &KeyInfo) -> Result<(ObjectHandle, ObjectHandle), HsmError> {
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

/// Creates and initialises a token labelled `label` in a free slot, with `so_pin` and the user
/// `pin`, unless a token with that label exists already. Returns whether it created one.
pub(crate) fn init_token(
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
