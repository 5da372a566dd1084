//! SoftHSM tokens of their own, one per test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::run_bounded;
use crate::write_private;

/// Where the SoftHSM module is installed.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// A SoftHSM token of its own: a folder with its configuration, a user PIN file (`pin`) and
/// a security officer PIN file (`so-pin`), initialised with `tessera hsm init`. The variables
/// SoftHSM and tessera read are set on child processes only ([`SoftHsm::env`]). Removed when
/// dropped.
#[derive(Debug)]
pub struct SoftHsm {
    pub dir: PathBuf,
    pub label: &'static str,
}

impl SoftHsm {
    /// A token labelled `label` in `$TMPDIR/tessera-hsm-{name}-{pid}`, initialised by the
    /// `tessera` binary at `tessera` (a test's `env!("CARGO_BIN_EXE_tessera")`).
    pub fn new(tessera: impl AsRef<Path>, name: &str, label: &'static str) -> Self {
        let hsm = SoftHsm::folder(name, label);
        let (so, pin) = (hsm.dir.join("so-pin"), hsm.dir.join("pin"));
        let mut init = Command::new(tessera.as_ref());
        init.args(["hsm", "init", "--token", label, "--so-pin-file"])
            .arg(&so)
            .arg("--pin-file")
            .arg(&pin);
        hsm.env(&mut init);
        let out = run_bounded(init, b"", Duration::from_secs(120));
        assert!(
            out.status.success(),
            "hsm init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        hsm
    }

    /// The folder alone, with its configuration (`softhsm2.conf`) and PIN files, for a caller
    /// that initialises the token itself through PKCS#11 (the signing benchmarks).
    pub fn folder(name: &str, label: &'static str) -> Self {
        assert!(
            Path::new(SOFTHSM_MODULE).exists(),
            "SoftHSM is missing ({SOFTHSM_MODULE}): run hsm/install.sh or apt-get install softhsm2"
        );
        let dir = std::env::temp_dir().join(format!("tessera-hsm-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("store")).expect("token dir");
        std::fs::write(
            dir.join("softhsm2.conf"),
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                dir.join("store").display()
            ),
        )
        .expect("softhsm2.conf");
        write_private(&dir.join("pin"), "test-pin-1234\n");
        write_private(&dir.join("so-pin"), "test-so-pin-5678\n");
        SoftHsm { dir, label }
    }

    /// Points a child process at this token.
    pub fn env<'c>(&self, command: &'c mut Command) -> &'c mut Command {
        command
            .env("SOFTHSM2_CONF", self.dir.join("softhsm2.conf"))
            .env("TESSERA_HSM_MODULE", SOFTHSM_MODULE)
            .env("TESSERA_HSM_TOKEN", self.label)
            .env("TESSERA_HSM_PIN_FILE", self.dir.join("pin"))
            .env_remove("TESSERA_HSM_PIN")
    }
}

impl Drop for SoftHsm {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
