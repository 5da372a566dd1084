//! CPU time of this process's threads, from `/proc` (Linux): nanoseconds from
//! `schedstat` where the kernel keeps it, clock ticks from `stat` otherwise.

use std::collections::HashMap;
use std::fs;

/// Where thread CPU time comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// `/proc/.../schedstat`: time on the CPU, nanoseconds.
    Schedstat,
    /// `/proc/.../stat`: user + system time, clock ticks (USER_HZ, 100 per second).
    Stat,
}

impl Clock {
    /// The best clock this system offers, if any.
    pub fn detect() -> Option<Clock> {
        if read_ns(Clock::Schedstat, "/proc/thread-self").is_some() {
            Some(Clock::Schedstat)
        } else if read_ns(Clock::Stat, "/proc/thread-self").is_some() {
            Some(Clock::Stat)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Clock::Schedstat => "schedstat",
            Clock::Stat => "stat",
        }
    }

    /// CPU time of the calling thread, nanoseconds.
    pub fn this_thread(self) -> u64 {
        read_ns(self, "/proc/thread-self").unwrap_or(0)
    }

    /// CPU time of every thread of this process whose name starts with one of `prefixes`, by
    /// thread id.
    pub fn threads(self, prefixes: &[&str]) -> Threads {
        let mut times = HashMap::new();
        let Ok(tasks) = fs::read_dir("/proc/self/task") else {
            return Threads(times);
        };
        for task in tasks.flatten() {
            let path = task.path();
            let Some(tid) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(comm) = fs::read_to_string(path.join("comm")) else {
                continue;
            };
            if !prefixes.iter().any(|p| comm.trim_end().starts_with(p)) {
                continue;
            }
            if let Some(ns) = path.to_str().and_then(|p| read_ns(self, p)) {
                times.insert(tid, ns);
            }
        }
        Threads(times)
    }
}

/// A snapshot of some threads' CPU times.
#[derive(Clone, Debug, Default)]
pub struct Threads(HashMap<u32, u64>);

impl Threads {
    /// CPU nanoseconds spent since `earlier` by the threads of this snapshot (a thread born in
    /// between counts from zero; one that ended in between is lost, so measure long-lived
    /// threads).
    pub fn since(&self, earlier: &Threads) -> u64 {
        self.0
            .iter()
            .map(|(tid, ns)| ns.saturating_sub(earlier.0.get(tid).copied().unwrap_or(0)))
            .sum()
    }

    #[cfg(test)]
    pub fn count(&self) -> usize {
        self.0.len()
    }
}

/// Busy time of the whole machine (every CPU, every process, interrupts included; steal
/// excluded) and of this process, in clock ticks (USER_HZ, 100 per second).
pub fn ticks() -> Option<(u64, u64)> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let cpu: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let busy = [0, 1, 2, 5, 6]
        .iter()
        .map(|&i| cpu.get(i).copied().unwrap_or(0))
        .sum();
    let own = read_ns(Clock::Stat, "/proc/self")? / 10_000_000;
    Some((busy, own))
}

fn read_ns(clock: Clock, task: &str) -> Option<u64> {
    match clock {
        Clock::Schedstat => {
            let text = fs::read_to_string(format!("{task}/schedstat")).ok()?;
            text.split_whitespace().next()?.parse().ok()
        }
        Clock::Stat => {
            let text = fs::read_to_string(format!("{task}/stat")).ok()?;
            // The name, in parentheses, may hold spaces: count fields after the last ')'.
            // Field 3 (state) comes first; utime and stime are fields 14 and 15.
            let rest = &text[text.rfind(')')? + 1..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: u64 = fields.get(11)?.parse().ok()?;
            let stime: u64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) * 10_000_000)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_thread_accumulates_cpu_time() {
        let Some(clock) = Clock::detect() else {
            panic!("no per-thread CPU time in /proc on this system");
        };
        let before = clock.this_thread();
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(60) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        assert!(clock.this_thread() > before);

        let worker = std::thread::Builder::new()
            .name("cpu-test-spin".into())
            .spawn(|| {
                let start = std::time::Instant::now();
                while start.elapsed() < std::time::Duration::from_millis(300) {
                    std::hint::black_box(0u64);
                }
            })
            .unwrap();
        let first = clock.threads(&["cpu-test-spin"]);
        std::thread::sleep(std::time::Duration::from_millis(150));
        let second = clock.threads(&["cpu-test-spin"]);
        worker.join().unwrap();
        assert_eq!(second.count(), 1);
        assert!(second.since(&first) > 0);
        assert_eq!(clock.threads(&["no-such-thread"]).count(), 0);
        assert!(ticks().is_some());
    }
}
