//! What can go wrong with the HSM, and whose fault it is.

use std::fmt;
use std::path::PathBuf;

use cryptoki::error::{Error as CkError, RvError};
use jose::Algorithm;

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

impl HsmError {
    /// Whether the token's answer means the connection, not the request, is broken.
    pub(crate) fn recoverable(&self) -> bool {
        match self {
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
}

/// The failure of one PKCS#11 call, as the module reported it.
pub struct CallError(pub(crate) CkError);

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

/// Maps the failure of the PKCS#11 call `op` to an [`HsmError`].
pub(crate) fn ck(op: &'static str) -> impl FnOnce(CkError) -> HsmError {
    move |error| HsmError::Pkcs11 {
        op,
        error: CallError(error),
    }
}
