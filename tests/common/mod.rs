//! What the end-to-end tests share: scratch directories and SoftHSM tokens of their own. Each
//! test file uses part of it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// A scratch directory for one test, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// `$TMPDIR/tessera-{name}-{pid}`, emptied.
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("tessera-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).expect("write scratch file");
        path
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A SoftHSM token of its own: a directory with its configuration, a user PIN file (`pin`) and
/// a security officer PIN file (`so-pin`), initialised with `tessera hsm init`. The variables
/// SoftHSM and tessera read are set on child processes only ([`SoftHsm::env`]).
pub struct SoftHsm {
    pub dir: PathBuf,
    pub label: &'static str,
}

impl SoftHsm {
    pub fn new(name: &str, label: &'static str) -> Self {
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
        let hsm = SoftHsm { dir, label };
        let (so, pin) = (hsm.dir.join("so-pin"), hsm.dir.join("pin"));
        let mut init = Command::new(env!("CARGO_BIN_EXE_tessera"));
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

/// Writes a file only its owner may read or write (mode 0600), as PIN files must be.
pub fn write_private(path: &Path, contents: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(contents.as_bytes()))
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Runs `command` with `stdin` written to it (output captured), killing it if it takes longer
/// than `limit`.
pub fn run_bounded(mut command: Command, stdin: &[u8], limit: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    // Written from a thread: a child that does not read its input must not block the test.
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let _ = input.write_all(&data);
    });
    let output = wait_bounded(child, &format!("{command:?}"), limit);
    writer.join().expect("stdin writer");
    output
}

/// Waits for `child`, killing it if it takes longer than `limit`; `what` names it in the panic.
pub fn wait_bounded(mut child: std::process::Child, what: &str, limit: Duration) -> Output {
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("{what} hung for {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.wait_with_output().expect("output")
}

/// The first line `child` writes to its piped stdout, if it comes within `limit` (the daemon's
/// `listening on ...`).
pub fn first_line(child: &mut std::process::Child, limit: Duration) -> Option<String> {
    use std::io::{BufRead, BufReader};
    let stdout = child.stdout.take()?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    rx.recv_timeout(limit).ok()
}
