//! PINs: read from an environment variable or a file, never from the command line, never
//! printed.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use cryptoki::types::AuthPin;

use crate::error::HsmError;

/// A token PIN. Its `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct Pin(String);

impl Pin {
    /// Takes the PIN in environment variable `var` out of the process environment: the
    /// variable is removed whatever it holds, so that nothing this process loads (the PKCS#11
    /// module) or spawns can read it. `None` when it is not set.
    ///
    /// Removing a variable is only sound while no other thread runs (another thread may read
    /// the environment at the same moment): call this at the start of `main`.
    pub fn take_env(var: &str) -> Option<Result<Self, HsmError>> {
        let value = std::env::var_os(var)?;
        std::env::remove_var(var);
        Some(match value.into_string() {
            Ok(pin) if !pin.is_empty() => Ok(Pin(pin)),
            Ok(_) => Err(HsmError::Pin(format!(
                "environment variable {var} is empty"
            ))),
            Err(_) => Err(HsmError::Pin(format!(
                "environment variable {var} is not UTF-8"
            ))),
        })
    }

    /// The PIN to log in with: `env` (the PIN taken from the environment) when there is one,
    /// else the one in `file`. `None` when there is neither.
    pub fn resolve(env: Option<Pin>, file: Option<&Path>) -> Option<Result<Self, HsmError>> {
        match (env, file) {
            (Some(pin), _) => Some(Ok(pin)),
            (None, Some(path)) => Some(Pin::from_file(path)),
            (None, None) => None,
        }
    }

    /// The PIN in `path`: its first line, without the line end. Like ssh with private keys,
    /// a file that its group or others may read or write is refused.
    pub fn from_file(path: &Path) -> Result<Self, HsmError> {
        let failed = |e: std::io::Error| HsmError::Pin(format!("{}: {e}", path.display()));
        let mut file = File::open(path).map_err(failed)?;
        // The mode of the file opened, not of whatever the path names a moment later.
        let mode = file.metadata().map_err(failed)?.mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(HsmError::PinFileMode {
                path: path.to_owned(),
                mode,
            });
        }
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(failed)?;
        let pin = text.lines().next().unwrap_or_default();
        if pin.is_empty() {
            return Err(HsmError::Pin(format!("{}: empty PIN", path.display())));
        }
        Ok(Pin(pin.to_owned()))
    }

    pub(crate) fn auth(&self) -> AuthPin {
        AuthPin::from(self.0.clone())
    }
}

/// Compared in constant time (the daemon's `HsmSettings`, which may hold one, derive equality).
impl PartialEq for Pin {
    fn eq(&self, other: &Self) -> bool {
        aws_lc_rs::constant_time::verify_slices_are_equal(self.0.as_bytes(), other.0.as_bytes())
            .is_ok()
    }
}

impl Eq for Pin {}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(<redacted>)")
    }
}
