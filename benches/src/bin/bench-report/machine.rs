//! What the report says about where and when it ran: the CPU, the kernel, the commit, the time.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// CPU features that decide which targets can be met (PRODUCT.md: AVX-512 IFMA for batched
/// Ed25519; SHA extensions for the cache key).
const FEATURES: [&str; 4] = ["avx2", "avx512f", "avx512ifma", "sha_ni"];

/// `AMD EPYC, 2 logical CPUs, Linux 6.18.44; CPU features: avx2, sha_ni (not: avx512f, ...)`.
pub fn describe() -> String {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let os = fs::read_to_string("/proc/sys/kernel/ostype")
        .map_or_else(|_| std::env::consts::OS.to_owned(), |t| t.trim().to_owned());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| os.clone(), |r| format!("{os} {}", r.trim()));
    let model = field(&cpuinfo, "model name").unwrap_or("unknown CPU");
    let cpus = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let cpus = if cpus > 0 {
        cpus
    } else {
        std::thread::available_parallelism().map_or(0, |n| n.get())
    };
    let mut line = format!("{model}, {cpus} logical CPUs, {kernel}");
    if let Some(flags) = field(&cpuinfo, "flags") {
        let flags: Vec<&str> = flags.split_whitespace().collect();
        let (has, lacks): (Vec<&str>, Vec<&str>) = FEATURES.iter().partition(|f| flags.contains(f));
        line.push_str(&format!("; CPU features: {}", list(&has)));
        if !lacks.is_empty() {
            line.push_str(&format!(" (not: {})", lacks.join(", ")));
        }
    }
    line
}

fn list(items: &[&str]) -> String {
    if items.is_empty() {
        "none of interest".to_owned()
    } else {
        items.join(", ")
    }
}

/// The value of the first `name : value` line of /proc/cpuinfo.
fn field<'a>(cpuinfo: &'a str, name: &str) -> Option<&'a str> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == name).then(|| value.trim())
    })
}

/// `commit b67e0cd` with ` (clean)` or ` with uncommitted changes in N paths`; changes to
/// `report` itself (the document being regenerated) do not count.
pub fn commit(report: Option<&Path>) -> String {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").args(args).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
    };
    let Some(head) = git(&["rev-parse", "--short", "HEAD"]) else {
        return "commit unknown (not a git checkout)".to_owned();
    };
    let exclude = report.and_then(|report| {
        let top = git(&["rev-parse", "--show-toplevel"])?;
        let top = fs::canonicalize(top).ok()?;
        let report = fs::canonicalize(report).ok()?;
        let relative = report.strip_prefix(top).ok()?;
        Some(format!(":(top,exclude){}", relative.display()))
    });
    let mut args = vec!["status", "--porcelain", "--", ":(top)"];
    if let Some(exclude) = &exclude {
        args.push(exclude);
    }
    match git(&args) {
        Some(status) if status.is_empty() => format!("commit {head} (clean)"),
        Some(status) => format!(
            "commit {head} with uncommitted changes in {} paths",
            status.lines().count()
        ),
        None => format!("commit {head} (tree state unknown)"),
    }
}

/// Seconds since the Unix epoch (0 before it).
pub fn unix(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `2026-11-28 09:41 UTC`.
pub fn utc(time: SystemTime) -> String {
    let text = jose::date::rfc3339(unix(time));
    format!("{} {} UTC", &text[..10], &text[11..16])
}

/// `09:41`.
pub fn clock(time: SystemTime) -> String {
    jose::date::rfc3339(unix(time))[11..16].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn formats_utc() {
        assert_eq!(utc(at(0)), "1970-01-01 00:00 UTC");
        // 2026-01-01T00:00:00Z, the examples' issue time.
        assert_eq!(utc(at(1_767_225_600)), "2026-01-01 00:00 UTC");
        assert_eq!(utc(at(1_767_225_600 + 600)), "2026-01-01 00:10 UTC");
        // 2024-02-29T23:59:59Z: a leap day.
        assert_eq!(utc(at(1_709_251_199)), "2024-02-29 23:59 UTC");
        assert_eq!(utc(at(1_709_251_200)), "2024-03-01 00:00 UTC");
        assert_eq!(clock(at(1_709_251_199)), "23:59");
    }

    #[test]
    fn reads_cpuinfo_fields() {
        let cpuinfo = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 sha_ni\n\n\
                       processor\t: 1\nmodel name\t: AMD EPYC\n";
        assert_eq!(field(cpuinfo, "model name"), Some("AMD EPYC"));
        assert_eq!(field(cpuinfo, "flags"), Some("fpu avx2 sha_ni"));
        assert_eq!(field(cpuinfo, "bogomips"), None);
    }
}
