//! Child processes that cannot hang a test: each wait is bounded and kills the child past it.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `command` with `stdin` written to it (output captured), killing it if it takes longer
/// than `limit`.
pub fn run_bounded(mut command: Command, stdin: &[u8], limit: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
    let mut input = child.stdin.take().expect("stdin is piped");
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
pub fn wait_bounded(mut child: Child, what: &str, limit: Duration) -> Output {
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
pub fn first_line(child: &mut Child, limit: Duration) -> Option<String> {
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
