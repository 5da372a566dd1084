//! A throw-away PostgreSQL cluster of a test's own: `initdb` into a fresh folder, the server on
//! a Unix socket in that folder (no TCP port), `fsync` off; stopped and removed when dropped.
//!
//! PostgreSQL refuses to run as root: as root, the folder is given to the `postgres` user
//! (which Debian's package creates) and the server runs as that user through `runuser`.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::process::{run_bounded, wait_bounded};

/// How long `initdb`, a start or a stop may take.
const STEP: Duration = Duration::from_secs(60);

/// A running throw-away PostgreSQL; stopped (immediately) and removed when dropped.
#[derive(Debug)]
pub struct Postgres {
    bin: PathBuf,
    dir: PathBuf,
    /// The data folder, inside `dir`.
    data: String,
    /// As root: the unprivileged user the server runs as.
    user: Option<&'static str>,
}

impl Postgres {
    /// Makes and starts a cluster; panics, saying how to get PostgreSQL, when it is missing.
    pub fn start() -> Postgres {
        let bin = binaries().unwrap_or_else(|| {
            panic!(
                "PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin nor by \
                 `pg_config --bindir`: install them (Debian: apt-get install postgresql; \
                 `make test` does it as root)"
            )
        });
        let root = is_root();
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Short: a Unix socket path is limited to about 100 bytes.
        let dir = PathBuf::from(format!("/tmp/tessera-pg-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("PostgreSQL folder");
        let user = root.then_some("postgres");
        if let Some(user) = user {
            let id = |flag: &str| -> u32 {
                let out = run_bounded(
                    {
                        let mut c = Command::new("id");
                        c.args([flag, user]);
                        c
                    },
                    b"",
                    STEP,
                );
                assert!(
                    out.status.success(),
                    "no {user} user to run PostgreSQL as (apt-get install postgresql creates it)"
                );
                String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse()
                    .expect("numeric id")
            };
            std::os::unix::fs::chown(&dir, Some(id("-u")), Some(id("-g")))
                .expect("give the folder to postgres");
        }
        let data = format!("{}/data", dir.display());
        let pg = Postgres {
            bin,
            dir,
            data,
            user,
        };
        pg.run_checked(
            "initdb",
            &[
                "-D",
                &pg.data,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        pg.start_again();
        pg
    }

    /// A connection string for `[store] url`.
    pub fn url(&self) -> String {
        format!("host={} user=postgres dbname=postgres", self.dir.display())
    }

    /// Stops the server (fast shutdown: sessions are ended, data is kept).
    pub fn stop(&self) {
        self.run_checked("pg_ctl", &["-D", &self.data, "-m", "fast", "-w", "stop"]);
    }

    /// Starts the server on the same data, socket in the same folder.
    pub fn start_again(&self) {
        let options = format!(
            "-c listen_addresses='' -c unix_socket_directories={dir} -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off -k {dir}",
            dir = self.dir.display()
        );
        let log = self.dir.join("server.log");
        self.run_checked(
            "pg_ctl",
            &[
                "-D",
                &self.data,
                "-o",
                &options,
                "-l",
                log.to_str().expect("UTF-8 path"),
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let program = self.bin.join(program);
        match self.user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(program).args(args);
                c
            }
            None => {
                let mut c = Command::new(program);
                c.args(args);
                c
            }
        }
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        run_bounded(self.command(program, args), b"", STEP)
    }

    fn run_checked(&self, program: &str, args: &[&str]) {
        let out = self.run(program, args);
        assert!(
            out.status.success(),
            "{program} {args:?}: {}\n{}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
        );
    }
}

impl Drop for Postgres {
    /// Stops the server without a checkpoint and removes the folder. Never panics (a panic in
    /// a drop during a failing test's unwinding would abort and hide the failure): a stop that
    /// cannot start or hangs is given up on.
    fn drop(&mut self) {
        let stop = self
            .command(
                "pg_ctl",
                &["-D", &self.data, "-m", "immediate", "-w", "stop"],
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        if let Ok(mut child) = stop {
            let start = std::time::Instant::now();
            while matches!(child.try_wait(), Ok(None)) && start.elapsed() < STEP {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The newest `/usr/lib/postgresql/N/bin` with `initdb` in it (Debian keeps the server
/// binaries there, off `PATH`), else what `pg_config --bindir` names.
fn binaries() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return Some(bin);
    }
    let mut pg_config = Command::new("pg_config");
    pg_config.arg("--bindir");
    // Spawned by hand: `run_bounded` panics when the program is missing, which here only
    // means "look elsewhere".
    let child = pg_config
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let out = wait_bounded(child, "pg_config --bindir", STEP);
    let bin = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    (out.status.success() && bin.join("initdb").exists()).then_some(bin)
}

/// Whether this process runs as root, from the `Uid:` line of `/proc/self/status` (its
/// effective id is the second field), so that no FFI is needed for `geteuid`.
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}
