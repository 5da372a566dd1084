//! PINs: read from an environment variable or a file, never from the command line, never
//! printed.

use std::fmt;
use std::path::Path;

use cryptoki::types::AuthPin;

use crate::HsmError;

/// A token PIN. Its `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct Pin(String);

impl Pin {
    /// The PIN in environment variable `var`.
    pub fn from_env(var: &str) -> Result<Self, HsmError> {
        match std::env::var(var) {
            Ok(pin) if !pin.is_empty() => Ok(Pin(pin)),
            _ => Err(HsmError::Pin(format!(
                "environment variable {var} is not set"
            ))),
        }
    }

    /// The PIN in `path`: its first line, without the line end.
    pub fn from_file(path: &Path) -> Result<Self, HsmError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| HsmError::Pin(format!("{}: {e}", path.display())))?;
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

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(<redacted>)")
    }
}
