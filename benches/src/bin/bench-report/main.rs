//! Writes the generated section of docs/BENCHMARKS.md from the results of a `make bench` run.
//!
//! ```text
//! bench-report [--criterion DIR] [--ratios FILE] [--suite FILE] [--memory FILE]
//!              [--since UNIX_SECONDS] [--note TEXT] [--write FILE]
//! ```
//!
//! - `--criterion`: criterion's output directory (`target/criterion`): every benchmark id's
//!   median, confidence interval and throughput.
//! - `--ratios`: the JSON the `ratios` bench writes with `-- --json FILE`.
//! - `--suite`: the JSON summary `loadtest/suite.sh` writes (`target/loadtest/suite.json`).
//! - `--memory`: the JSON `loadtest/memory.sh` writes (`target/loadtest/memory.json`).
//! - `--since`: when the run began. Criterion results written before it are left out of the
//!   report (criterion keeps results of ids no longer measured), named as such; a `--ratios`,
//!   `--suite` or `--memory` file written before it is an error.
//! - `--write`: the document whose section between `<!-- make bench: begin -->` and
//!   `<!-- make bench: end -->` is replaced; everything else in it stays byte for byte. Without
//!   it the section goes to stdout.
//!
//! A source not given is said to be absent from the report; the targets it would have measured
//! are listed as not in this report.

#![forbid(unsafe_code)]

mod criterion;
mod machine;
mod memory;
mod render;
mod splice;
mod suite;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use benches::ratios::{Ratios, FORMAT as RATIOS_FORMAT};

#[derive(Debug, Default)]
struct Args {
    criterion: Option<PathBuf>,
    ratios: Option<PathBuf>,
    suite: Option<PathBuf>,
    memory: Option<PathBuf>,
    since: Option<SystemTime>,
    note: Option<String>,
    write: Option<PathBuf>,
}

const USAGE: &str = "usage: bench-report [--criterion DIR] [--ratios FILE] [--suite FILE] \
                     [--memory FILE] [--since UNIX_SECONDS] [--note TEXT] [--write FILE]";

fn parse(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args::default();
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} takes a value"));
        match flag.as_str() {
            "--criterion" => parsed.criterion = Some(value()?.into()),
            "--ratios" => parsed.ratios = Some(value()?.into()),
            "--suite" => parsed.suite = Some(value()?.into()),
            "--memory" => parsed.memory = Some(value()?.into()),
            "--since" => {
                let text = value()?;
                let seconds: u64 = text
                    .parse()
                    .map_err(|_| format!("--since takes Unix seconds, not {text:?}"))?;
                parsed.since = Some(UNIX_EPOCH + Duration::from_secs(seconds));
            }
            "--note" => parsed.note = Some(value()?),
            "--write" => parsed.write = Some(value()?.into()),
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(parsed)
}

/// The text of `path` and when it was last written; an error if that was before `since`.
fn read_current(path: &Path, since: Option<SystemTime>) -> Result<(String, SystemTime), String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let written = fs::metadata(path)
        .and_then(|m| m.modified())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some(since) = since {
        if written < since {
            return Err(format!(
                "{} was written {}, before this run began ({}): not a result of this run",
                path.display(),
                machine::utc(written),
                machine::utc(since)
            ));
        }
    }
    Ok((text, written))
}

fn run(args: Args) -> Result<String, String> {
    let criterion = match &args.criterion {
        Some(dir) => {
            let results = criterion::read(dir, args.since)?;
            if results.current.is_empty() {
                return Err(format!(
                    "{}: no criterion results{}",
                    dir.display(),
                    if args.since.is_some() {
                        " written since this run began"
                    } else {
                        ""
                    }
                ));
            }
            Some(results)
        }
        None => None,
    };
    let ratios = match &args.ratios {
        Some(path) => {
            let (text, written) = read_current(path, args.since)?;
            let ratios: Ratios =
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            if ratios.format != RATIOS_FORMAT {
                return Err(format!(
                    "{}: format {} (this reader knows {RATIOS_FORMAT})",
                    path.display(),
                    ratios.format
                ));
            }
            Some((ratios, written))
        }
        None => None,
    };
    let suite = match &args.suite {
        Some(path) => {
            let (text, _) = read_current(path, args.since)?;
            Some(suite::Suite::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?)
        }
        None => None,
    };
    let memory = match &args.memory {
        Some(path) => {
            let (text, _) = read_current(path, args.since)?;
            Some(memory::Memory::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?)
        }
        None => None,
    };

    let machine = machine::describe();
    let commit = machine::commit(args.write.as_deref());
    let inputs = render::Inputs {
        generated: SystemTime::now(),
        machine: &machine,
        commit: &commit,
        note: args.note.as_deref(),
        criterion: criterion.as_ref(),
        ratios: ratios.as_ref().map(|(r, t)| (r, *t)),
        suite: suite.as_ref(),
        memory: memory.as_ref(),
    };
    let section = render::section(&inputs);

    let Some(path) = &args.write else {
        print!("{section}");
        return Ok(String::new());
    };
    let document = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let updated =
        splice::splice(&document, &section).map_err(|e| format!("{}: {e}", path.display()))?;
    // Write beside it and rename, so that a failure leaves the old document whole.
    let mut temporary = path.clone().into_os_string();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    fs::write(&temporary, updated).map_err(|e| format!("{}: {e}", temporary.display()))?;
    fs::rename(&temporary, path).map_err(|e| format!("{}: {e}", path.display()))?;

    let mut sources = Vec::new();
    if let Some(c) = &criterion {
        let mut s = format!("{} criterion ids", c.current.len());
        if !c.stale.is_empty() {
            s.push_str(&format!(" ({} older ones left out)", c.stale.len()));
        }
        sources.push(s);
    }
    if ratios.is_some() {
        sources.push("the interleaved ratios".to_owned());
    }
    if suite.is_some() {
        sources.push("the load suite".to_owned());
    }
    if memory.is_some() {
        sources.push("the memory run".to_owned());
    }
    Ok(format!(
        "bench-report: wrote the `make bench` section of {} ({}; {commit})",
        path.display(),
        if sources.is_empty() {
            "no results".to_owned()
        } else {
            sources.join(", ")
        }
    ))
}

fn main() -> ExitCode {
    let result = parse(std::env::args().skip(1)).and_then(run);
    match result {
        Ok(message) => {
            if !message.is_empty() {
                eprintln!("{message}");
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("bench-report: {message}");
            ExitCode::FAILURE
        }
    }
}

/// A scratch directory for tests, removed on drop.
#[cfg(test)]
mod scratch {
    use std::path::PathBuf;

    #[derive(Debug)]
    pub struct Scratch(pub PathBuf);

    impl Scratch {
        pub fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("bench-report-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("a scratch directory");
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
