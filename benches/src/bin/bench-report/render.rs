//! The generated section of docs/BENCHMARKS.md, as Markdown.

use std::fmt::Write as _;
use std::time::SystemTime;

use benches::ratios::{BatchRow, Ratios, SignRow, VerifyRow};
use benches::units::{decimals, rate, time, time_unit};
use planner::median;

use crate::criterion::{Measurement, Results, Throughput};
use crate::machine::{clock, utc};
use crate::memory::Memory;
use crate::suite::Suite;

/// Everything one report is made of; `None` where a source is not part of it.
#[derive(Debug)]
pub struct Inputs<'a> {
    pub generated: SystemTime,
    /// [`crate::machine::describe`].
    pub machine: &'a str,
    /// [`crate::machine::commit`].
    pub commit: &'a str,
    /// A paragraph said after the header.
    pub note: Option<&'a str>,
    pub criterion: Option<&'a Results>,
    /// The `ratios` results and when they were written.
    pub ratios: Option<(&'a Ratios, SystemTime)>,
    pub suite: Option<&'a Suite>,
    pub memory: Option<&'a Memory>,
}

/// What a target is measured by.
#[derive(Clone, Copy, Debug)]
enum Measure {
    /// `ratios`' tessera / raw for an algorithm (criterion `verify` if there is no `ratios`).
    VerifyVsRaw(&'static str),
    /// `ratios`' tessera / jsonwebtoken for an algorithm (likewise).
    VerifyVsJsonwebtoken(&'static str),
    /// `ratios`' batched / single for an algorithm (the engine's 64-token batches).
    BatchedVsSingle(&'static str),
    /// Criterion `engine/cache-hit-hot/330`, per second.
    CacheHit,
    /// Criterion `engine/workers-N/ES256` against N × `engine/workers-1/ES256`.
    Workers,
    /// A ratio of the load suite, by name, per round.
    Suite(&'static str),
    /// `ratios`' tessera / pkcs11, one row per algorithm (criterion `sign` if no `ratios`).
    Sign,
    /// `loadtest/memory.sh`: the daemon's RSS at its cache bound.
    Memory,
    /// Measured elsewhere, or not yet.
    NotByMakeBench(&'static str),
}

struct Target {
    what: &'static str,
    /// As PRODUCT.md writes it.
    goal: &'static str,
    /// The least value that meets it.
    least: f64,
    measure: Measure,
}

/// The performance targets of PRODUCT.md, in its order.
const TARGETS: &[Target] = &[
    Target {
        what: "full JWT verification / raw signature check, RS256",
        goal: "≥ 0.95",
        least: 0.95,
        measure: Measure::VerifyVsRaw("RS256"),
    },
    Target {
        what: "same, PS256",
        goal: "≥ 0.95",
        least: 0.95,
        measure: Measure::VerifyVsRaw("PS256"),
    },
    Target {
        what: "same, ES256",
        goal: "≥ 0.95",
        least: 0.95,
        measure: Measure::VerifyVsRaw("ES256"),
    },
    Target {
        what: "same, EdDSA",
        goal: "≥ 0.95",
        least: 0.95,
        measure: Measure::VerifyVsRaw("EdDSA"),
    },
    Target {
        what: "HS256 full verification / jsonwebtoken",
        goal: "≥ 2×",
        least: 2.0,
        measure: Measure::VerifyVsJsonwebtoken("HS256"),
    },
    Target {
        what: "engine's batched verification / the single path, RS256, one core",
        goal: "≥ 2.5× on AVX-512 IFMA",
        least: 2.5,
        measure: Measure::BatchedVsSingle("RS256"),
    },
    Target {
        what: "same, ES256",
        goal: "≥ 2× on AVX-512 IFMA",
        least: 2.0,
        measure: Measure::BatchedVsSingle("ES256"),
    },
    Target {
        what: "same, EdDSA",
        goal: "≥ 2.5× on AVX-512 IFMA",
        least: 2.5,
        measure: Measure::BatchedVsSingle("EdDSA"),
    },
    Target {
        what: "verified-token cache hit (keyed hash, lookup, the token compared), a 330-byte token, one thread",
        goal: "≥ 10 M/s per core (≤ 100 ns)",
        least: 1e7,
        measure: Measure::CacheHit,
    },
    Target {
        what: "engine with N workers / N × one worker",
        goal: "≥ 0.9",
        least: 0.9,
        measure: Measure::Workers,
    },
    Target {
        what: "introspection of a cached token / hyper hello-world, servers pinned to one core",
        goal: "≥ 0.85",
        least: 0.85,
        measure: Measure::Suite("introspect / hello"),
    },
    Target {
        what: "forward-auth (`/v1/authz`) of a cached token / hyper hello-world (same layout)",
        goal: "≥ 0.85",
        least: 0.85,
        measure: Measure::Suite("authz / hello"),
    },
    Target {
        what: "the same without `X-Auth-Claims` (`[authz.headers] claims = \"\"`)",
        goal: "≥ 0.85",
        least: 0.85,
        measure: Measure::Suite("authz-noclaims / hello"),
    },
    Target {
        what: "batch verify over HTTP (64 tokens per request) / the in-process engine",
        goal: "≥ 0.85",
        least: 0.85,
        measure: Measure::Suite("verify-64 tokens/s / engine"),
    },
    Target {
        what: "HSM signing through the pool / raw PKCS#11 C_Sign",
        goal: "≥ 0.9",
        least: 0.9,
        measure: Measure::Sign,
    },
    Target {
        what: "daemon RSS at the cache bound (all-miss HS256, each token once)",
        goal: "≤ bound × 1.1 + base",
        least: 0.0,
        measure: Measure::Memory,
    },
    Target {
        what: "load harness / wrk against the same trivial endpoint",
        goal: "≥ 0.9",
        least: 0.9,
        measure: Measure::NotByMakeBench("`loadtest/vs-wrk.sh`"),
    },
    Target {
        what: "capacity planner prediction / measured maximum",
        goal: "within ±20 %",
        least: 0.0,
        measure: Measure::NotByMakeBench(""),
    },
];

const DRIFT: &str = "one id after the other: drift-prone";
/// The verdict on a ratio that only criterion measured, where `ratios` measures it properly.
const NOT_JUDGED: &str = "not judged: criterion's ratios drift (see \"Why two suites\")";

/// One row of the targets table.
#[derive(Debug, PartialEq)]
pub struct Row {
    pub what: String,
    pub goal: String,
    pub measured: String,
    pub from: String,
    pub verdict: String,
}

pub fn section(inputs: &Inputs<'_>) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail; the results of writeln! are ignored below for that reason.
    let _ = writeln!(out, "## Latest `make bench` run\n");
    let _ = writeln!(
        out,
        "Written on {} by `bench-report` (`benches/src/bin/bench-report`), which `make bench` \
         runs last: everything between the `make bench` markers of this file is replaced by the \
         next run; the reading of the figures is in the hand-written sections.\n",
        utc(inputs.generated)
    );
    let _ = writeln!(out, "- Machine: {}.", inputs.machine);
    let _ = writeln!(out, "- Tree: {}.", inputs.commit);
    let _ = writeln!(out);
    if let Some(note) = inputs.note {
        let _ = writeln!(out, "{note}\n");
    }

    let _ = writeln!(out, "### Against the targets\n");
    let _ = writeln!(
        out,
        "The targets of PRODUCT.md with what this run measured of them. Ratios are throughput \
         ratios (higher is better), compared with the target as shown; the load suite's are per \
         round, and where the rounds disagree their median decides.\n"
    );
    let _ = writeln!(
        out,
        "| target (PRODUCT.md) | goal | measured | from | verdict |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|");
    for row in targets(inputs) {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            row.what, row.goal, row.measured, row.from, row.verdict
        );
    }
    let _ = writeln!(out);

    ratios_tables(&mut out, inputs.ratios);
    suite_tables(&mut out, inputs.suite);
    criterion_tables(&mut out, inputs.criterion);
    out
}

/// The targets table's rows.
pub fn targets(inputs: &Inputs<'_>) -> Vec<Row> {
    let mut rows = Vec::new();
    for target in TARGETS {
        let row = |measured: String, from: String, verdict: String| Row {
            what: target.what.to_owned(),
            goal: target.goal.to_owned(),
            measured,
            from,
            verdict,
        };
        let absent = |source: &str| {
            row(
                "–".into(),
                "–".into(),
                format!("not in this report (no {source} results)"),
            )
        };
        match target.measure {
            Measure::VerifyVsRaw(alg) | Measure::VerifyVsJsonwebtoken(alg) => {
                let vs_raw = matches!(target.measure, Measure::VerifyVsRaw(_));
                let (other, decimals, suffix) = if vs_raw {
                    ("raw", 3, "")
                } else {
                    ("jsonwebtoken", 2, "×")
                };
                let interleaved = inputs.ratios.and_then(|(r, _)| {
                    let v = r.verify.iter().find(|v| v.alg == alg)?;
                    Some(if vs_raw {
                        v.tessera_vs_raw
                    } else {
                        v.tessera_vs_jsonwebtoken
                    })
                });
                let sequential = inputs.criterion.and_then(|c| {
                    let t = c.get(&format!("verify/tessera/{alg}"))?;
                    let o = c.get(&format!("verify/{other}/{alg}"))?;
                    Some(o.median_ns / t.median_ns)
                });
                rows.push(match (interleaved, sequential) {
                    (Some(v), _) => row(
                        format!("{v:.decimals$}{suffix}"),
                        "`ratios` (interleaved)".into(),
                        verdict(&[v], target.least, decimals),
                    ),
                    (None, Some(v)) => row(
                        format!("{v:.decimals$}{suffix}"),
                        format!("criterion `verify` ({DRIFT})"),
                        NOT_JUDGED.to_owned(),
                    ),
                    (None, None) => absent("`ratios` or criterion `verify`"),
                });
            }
            Measure::BatchedVsSingle(alg) => {
                let found = inputs.ratios.and_then(|(r, _)| {
                    let b = r.batch.iter().find(|b| b.alg == alg)?;
                    Some((b.batched_vs_single, r.multibuffer.as_str()))
                });
                rows.push(match found {
                    Some((v, mb)) if mb.starts_with("active") => row(
                        format!("{v:.2}×"),
                        "`ratios` (interleaved)".into(),
                        verdict(&[v], target.least, 2),
                    ),
                    Some((v, mb)) => row(
                        format!("{v:.2}×"),
                        "`ratios` (interleaved)".into(),
                        format!("not applicable here: multibuffer {mb}"),
                    ),
                    None => absent("`ratios` batch"),
                });
            }
            Measure::CacheHit => {
                let id = "engine/cache-hit-hot/330";
                rows.push(match inputs.criterion.and_then(|c| c.get(id)) {
                    Some(m) => {
                        let per_s = m.elements_per_s().unwrap_or(m.iterations_per_s());
                        row(
                            format!("{} ({})", rate(per_s), time(m.median_ns)),
                            format!("criterion `{id}`"),
                            verdict(&[per_s], target.least, 0),
                        )
                    }
                    None => absent(&format!("criterion `{id}`")),
                });
            }
            Measure::Workers => rows.push(match inputs.criterion.and_then(workers) {
                Some((n, one, many)) => {
                    let v = many / (n as f64 * one);
                    row(
                        format!(
                            "{v:.3}: {} with {n} workers, {} with one",
                            rate(many),
                            rate(one)
                        ),
                        format!("criterion `engine/workers-N/ES256` ({DRIFT})"),
                        verdict(&[v], target.least, 3),
                    )
                }
                None => absent("criterion `engine/workers-N`"),
            }),
            Measure::Suite(name) => rows.push(match inputs.suite.and_then(|s| s.ratio(name)) {
                Some(r) => row(
                    format!(
                        "{} (median {})",
                        r.values
                            .iter()
                            .map(|v| format!("{v:.3}"))
                            .collect::<Vec<_>>()
                            .join(", "),
                        median(&r.values).map_or("-".to_owned(), |m| format!("{m:.3}"))
                    ),
                    format!("`loadtest/suite.sh`, `{name}` per round"),
                    verdict(&r.values, target.least, 3),
                ),
                None => absent("load suite"),
            }),
            Measure::Sign => {
                let found = sign_ratios(inputs);
                if found.is_empty() {
                    rows.push(absent("`ratios` or criterion `sign`"));
                }
                for (alg, v, interleaved) in found {
                    let mut r = if interleaved {
                        row(
                            format!("{v:.3}"),
                            "`ratios` (interleaved)".to_owned(),
                            verdict(&[v], target.least, 3),
                        )
                    } else {
                        row(
                            format!("{v:.3}"),
                            format!("criterion `sign` ({DRIFT})"),
                            NOT_JUDGED.to_owned(),
                        )
                    };
                    r.what = format!("{}, {alg}", target.what);
                    rows.push(r);
                }
            }
            Measure::Memory => rows.push(match inputs.memory {
                Some(m) => {
                    let mib = |b: u64| format!("{:.0} MiB", b as f64 / 1048576.0);
                    row(
                        format!(
                            "{} with a {} bound and a {} base (at most {}); {} entries, {} bytes \
                             each as the cache counts",
                            mib(m.rss_bytes),
                            mib(m.bound_bytes),
                            mib(m.base_bytes),
                            mib(m.limit()),
                            m.entries,
                            m.cache_bytes / m.entries.max(1)
                        ),
                        format!("`loadtest/memory.sh`, {} tokens", m.tokens),
                        if m.rss_bytes <= m.limit() {
                            "met".to_owned()
                        } else {
                            "**not met**".to_owned()
                        },
                    )
                }
                None => absent("`loadtest/memory.sh`"),
            }),
            Measure::NotByMakeBench(elsewhere) => {
                let verdict = if elsewhere.is_empty() {
                    "not measured by `make bench`".to_owned()
                } else {
                    format!("not measured by `make bench` (see {elsewhere})")
                };
                rows.push(row("–".into(), "–".into(), verdict));
            }
        }
    }
    rows
}

/// The largest N with `engine/workers-N/ES256`, and the rates (elements per second) of one
/// worker and of N.
fn workers(criterion: &Results) -> Option<(u32, f64, f64)> {
    let one = criterion.get("engine/workers-1/ES256")?.elements_per_s()?;
    let (n, many) = criterion
        .current
        .iter()
        .filter_map(|m| {
            let n: u32 =
                m.id.strip_prefix("engine/workers-")?
                    .strip_suffix("/ES256")?
                    .parse()
                    .ok()?;
            Some((n, m.elements_per_s()?))
        })
        .filter(|(n, _)| *n > 1)
        .max_by_key(|(n, _)| *n)?;
    Some((n, one, many))
}

/// (alg, tessera / pkcs11, whether interleaved) for each signing algorithm measured: from
/// `ratios` if it is in the report, else from criterion `sign`.
fn sign_ratios(inputs: &Inputs<'_>) -> Vec<(String, f64, bool)> {
    if let Some((ratios, _)) = inputs.ratios {
        if !ratios.sign.is_empty() {
            return ratios
                .sign
                .iter()
                .map(|s| (s.alg.clone(), s.tessera_vs_pkcs11, true))
                .collect();
        }
    }
    let Some(criterion) = inputs.criterion else {
        return Vec::new();
    };
    criterion
        .current
        .iter()
        .filter_map(|t| {
            let alg = t.id.strip_prefix("sign/tessera/")?;
            let raw = criterion.get(&format!("sign/pkcs11/{alg}"))?;
            Some((alg.to_owned(), raw.median_ns / t.median_ns, false))
        })
        .collect()
}

/// `met` (every round), `**not met**` (none), or, when the rounds disagree, the verdict of
/// their median: `met by the median (K of N rounds)` or `**not met** by the median (K of N
/// rounds)`. Each value is compared as shown, rounded to `decimals`.
pub fn verdict(values: &[f64], least: f64, decimals: usize) -> String {
    let scale = 10f64.powf(decimals as f64);
    let meets = |v: f64| (v * scale).round() / scale >= least;
    let met = values.iter().filter(|v| meets(**v)).count();
    match (met, values.len()) {
        (_, 0) => "not in this report".to_owned(),
        (m, n) if m == n => "met".to_owned(),
        (0, _) => "**not met**".to_owned(),
        (m, n) if median(values).is_some_and(meets) => {
            format!("met by the median ({m} of {n} rounds)")
        }
        (m, n) => format!("**not met** by the median ({m} of {n} rounds)"),
    }
}

fn ratios_tables(out: &mut String, ratios: Option<(&Ratios, SystemTime)>) {
    let _ = writeln!(
        out,
        "### Interleaved ratios (`cargo bench -p benches --bench ratios`)\n"
    );
    let Some((ratios, written)) = ratios else {
        let _ = writeln!(out, "Not part of this report.\n");
        return;
    };
    let _ = writeln!(
        out,
        "Written {}; {} round{} of {} ms slices per contestant and algorithm. Times are \
         medians over the rounds, ratios the median of each round's ratio.\n",
        utc(written),
        ratios.rounds,
        if ratios.rounds == 1 { "" } else { "s" },
        ratios.slice_ms
    );
    if !ratios.verify.is_empty() {
        let _ = writeln!(out, "{}", VerifyRow::HEADER);
        for v in &ratios.verify {
            let _ = writeln!(out, "{}", v.markdown());
        }
        let _ = writeln!(out);
    }
    if !ratios.batch.is_empty() {
        let _ = writeln!(
            out,
            "The engine's 64-token batches (multibuffer {}):\n",
            ratios.multibuffer
        );
        let _ = writeln!(out, "{}", BatchRow::HEADER);
        for b in &ratios.batch {
            let _ = writeln!(out, "{}", b.markdown());
        }
        let _ = writeln!(out);
    }
    if !ratios.sign.is_empty() {
        let _ = writeln!(out, "{}", SignRow::HEADER);
        for s in &ratios.sign {
            let _ = writeln!(out, "{}", s.markdown());
        }
        let _ = writeln!(out);
    }
}

fn suite_tables(out: &mut String, suite: Option<&Suite>) {
    let _ = writeln!(out, "### Load suite (`loadtest/suite.sh`)\n");
    let Some(suite) = suite else {
        let _ = writeln!(out, "Not part of this report.\n");
        return;
    };
    let _ = writeln!(
        out,
        "Run {} at commit {}: {} rounds of {} s, {} load-generator threads, everything on the \
         same cores.\n",
        suite.date, suite.commit, suite.rounds, suite.duration_s, suite.threads
    );
    let rounds = 1..=suite.rounds;
    let _ = write!(out, "| contestant | connections |");
    for r in rounds.clone() {
        let _ = write!(out, " round {r}: per second (p99 µs) |");
    }
    let _ = writeln!(out, "\n|---|---|{}", "---|".repeat(suite.rounds));
    for c in &suite.contestants {
        let connections = c.connections.map_or("–".to_owned(), |n| n.to_string());
        let _ = write!(out, "| {} ({}) | {connections} |", c.name, c.unit);
        for i in 0..suite.rounds {
            let value = c
                .throughput
                .get(i)
                .map_or("–".to_owned(), |v| format!("{v:.0}"));
            match c.p99_us.get(i) {
                Some(p99) => {
                    let _ = write!(out, " {value} ({p99}) |");
                }
                None => {
                    let _ = write!(out, " {value} |");
                }
            }
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(out);
    let _ = write!(out, "| ratio | target |");
    for r in rounds {
        let _ = write!(out, " round {r} |");
    }
    let _ = writeln!(out, "\n|---|---|{}", "---|".repeat(suite.rounds));
    for ratio in &suite.ratios {
        let _ = write!(out, "| {} | {} |", ratio.name, ratio.target);
        for i in 0..suite.rounds {
            let value = ratio
                .values
                .get(i)
                .map_or("–".to_owned(), |v| format!("{v:.3}"));
            let _ = write!(out, " {value} |");
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(out);
}

fn criterion_tables(out: &mut String, criterion: Option<&Results>) {
    let _ = writeln!(out, "### Criterion\n");
    let Some(criterion) = criterion else {
        let _ = writeln!(out, "Not part of this report.\n");
        return;
    };
    let _ = writeln!(
        out,
        "Every benchmark id of the run: the median time per iteration with its confidence \
         interval, and the throughput at the median. Criterion measures each id in its own \
         window, one after the other; ratios between them carry the machine's drift (see \"Why \
         two suites\").\n"
    );
    for group in criterion.groups() {
        let ids: Vec<&Measurement> = criterion
            .current
            .iter()
            .filter(|m| m.group == group)
            .collect();
        let first = ids.iter().map(|m| m.written).min();
        let last = ids.iter().map(|m| m.written).max();
        if let (Some(first), Some(last)) = (first, last) {
            let span = if clock(first) == clock(last) {
                utc(first)
            } else {
                format!(
                    "{}–{} UTC",
                    utc(first).trim_end_matches(" UTC"),
                    clock(last)
                )
            };
            let _ = writeln!(out, "#### `{group}` (written {span})\n");
        }
        let confidence = ids.first().map_or(0.95, |m| m.confidence);
        let _ = writeln!(
            out,
            "| id | median ({:.0} % confidence interval) | throughput |",
            confidence * 100.0
        );
        let _ = writeln!(out, "|---|---|---|");
        for m in ids {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} |",
                m.id,
                median_and_interval(m),
                throughput(m)
            );
        }
        let _ = writeln!(out);
    }
    if !criterion.stale.is_empty() {
        let names: Vec<String> = criterion.stale.iter().map(|id| format!("`{id}`")).collect();
        let _ = writeln!(
            out,
            "Left out: {} older result{} under the criterion directory, written before this run \
             began (ids the benchmarks no longer measure, or did not measure this time): {}.\n",
            names.len(),
            if names.len() == 1 { "" } else { "s" },
            names.join(", ")
        );
    }
}

/// `1.84 µs (1.83–1.85)`: the interval in the median's unit.
fn median_and_interval(m: &Measurement) -> String {
    let (divisor, unit) = time_unit(m.median_ns);
    let p = decimals(m.median_ns / divisor);
    format!(
        "{:.p$} {unit} ({:.p$}–{:.p$})",
        m.median_ns / divisor,
        m.lower_ns / divisor,
        m.upper_ns / divisor
    )
}

/// `per_s` in the largest of `units` (each `base` times the one before) that keeps it ≥ 1.
fn scaled(per_s: f64, base: f64, units: [&str; 4]) -> String {
    let mut value = per_s;
    let mut unit = units[0];
    for next in &units[1..] {
        if value < base {
            break;
        }
        value /= base;
        unit = next;
    }
    format!("{value:.p$} {unit}", p = decimals(value))
}

/// The throughput cell of a criterion row.
fn throughput(m: &Measurement) -> String {
    let per_iteration = m.iterations_per_s();
    match m.throughput {
        None => "–".to_owned(),
        Some(Throughput::Elements(1)) => rate(per_iteration),
        Some(Throughput::Elements(n)) => {
            format!("{} ({n} per iteration)", rate(n as f64 * per_iteration))
        }
        Some(Throughput::Bytes(n)) => scaled(
            n as f64 * per_iteration,
            1024.0,
            ["B/s", "KiB/s", "MiB/s", "GiB/s"],
        ),
        Some(Throughput::BytesDecimal(n)) => scaled(
            n as f64 * per_iteration,
            1000.0,
            ["B/s", "kB/s", "MB/s", "GB/s"],
        ),
        Some(Throughput::Bits(n)) => scaled(
            n as f64 * per_iteration,
            1000.0,
            ["bit/s", "kbit/s", "Mbit/s", "Gbit/s"],
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::{Suite, EXAMPLE};
    use std::time::{Duration, UNIX_EPOCH};

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn measurement(id: &str, median_ns: f64, elements: u64, written: u64) -> Measurement {
        Measurement {
            id: id.to_owned(),
            group: id.split('/').next().unwrap().to_owned(),
            median_ns,
            lower_ns: median_ns * 0.99,
            upper_ns: median_ns * 1.02,
            confidence: 0.95,
            throughput: Some(Throughput::Elements(elements)),
            written: at(written),
        }
    }

    fn criterion() -> Results {
        Results {
            current: vec![
                measurement("verify/tessera/RS256", 30_000.0, 1, 10),
                measurement("verify/raw/RS256", 20_000.0, 1, 11),
                measurement("engine/cache-hit-hot/330", 444.0, 1, 20),
                measurement("engine/workers-1/ES256", 256.0 * 80_000.0, 256, 21),
                measurement("engine/workers-2/ES256", 256.0 * 50_000.0, 256, 22),
                measurement("engine/workers-4/ES256", 256.0 * 30_000.0, 256, 23),
                measurement("sign/tessera/ES256", 150_000.0, 1, 30),
                measurement("sign/pkcs11/ES256", 120_000.0, 1, 31),
            ],
            stale: vec!["verify/old/HS256".to_owned()],
        }
    }

    fn ratios() -> Ratios {
        Ratios {
            format: 1,
            rounds: 41,
            slice_ms: 20.0,
            verify: vec![
                VerifyRow {
                    alg: "HS256".into(),
                    tessera_ns: 1980.0,
                    raw_ns: 691.0,
                    jsonwebtoken_ns: 6820.0,
                    tessera_vs_raw: 0.349,
                    tessera_vs_jsonwebtoken: 3.5,
                },
                VerifyRow {
                    alg: "RS256".into(),
                    tessera_ns: 28_870.0,
                    raw_ns: 26_800.0,
                    jsonwebtoken_ns: 39_970.0,
                    tessera_vs_raw: 0.9496,
                    tessera_vs_jsonwebtoken: 1.38,
                },
            ],
            sign: vec![SignRow {
                alg: "ES256".into(),
                tessera_ns: 105_300.0,
                pkcs11_ns: 102_100.0,
                tessera_vs_pkcs11: 0.961,
            }],
            ..Ratios::default()
        }
    }

    fn inputs<'a>(
        criterion: Option<&'a Results>,
        ratios: Option<&'a Ratios>,
        suite: Option<&'a Suite>,
    ) -> Inputs<'a> {
        Inputs {
            generated: at(1_764_320_000),
            machine: "Test CPU, 2 logical CPUs, Linux 6.0",
            commit: "commit abc1234 (clean)",
            note: None,
            criterion,
            ratios: ratios.map(|r| (r, at(1_764_319_000))),
            suite,
            memory: None,
        }
    }

    #[test]
    fn the_memory_run_is_judged_against_its_bound() {
        let mut memory = Memory {
            format: 1,
            bound_bytes: 512 << 20,
            base_bytes: 21 << 20,
            rss_bytes: 538 << 20,
            entries: 286_272,
            cache_bytes: 536_870_000,
            tokens: 1_600_000,
        };
        let judged = |memory: &Memory| {
            let rows = targets(&Inputs {
                memory: Some(memory),
                ..inputs(None, None, None)
            });
            let r = row(
                &rows,
                "daemon RSS at the cache bound (all-miss HS256, each token once)",
            );
            (r.measured.clone(), r.verdict.clone())
        };
        let (measured, verdict) = judged(&memory);
        assert_eq!(
            measured,
            "538 MiB with a 512 MiB bound and a 21 MiB base (at most 584 MiB); 286272 entries, \
             1875 bytes each as the cache counts"
        );
        assert_eq!(verdict, "met");
        memory.rss_bytes = 600 << 20;
        assert_eq!(judged(&memory).1, "**not met**");
        let rows = targets(&inputs(None, None, None));
        assert!(row(
            &rows,
            "daemon RSS at the cache bound (all-miss HS256, each token once)"
        )
        .verdict
        .starts_with("not in this report"));
    }

    fn row<'a>(rows: &'a [Row], what: &str) -> &'a Row {
        rows.iter()
            .find(|r| r.what == what)
            .unwrap_or_else(|| panic!("no row {what:?}"))
    }

    #[test]
    fn verdicts() {
        assert_eq!(verdict(&[0.96], 0.95, 3), "met");
        assert_eq!(verdict(&[0.94], 0.95, 3), "**not met**");
        assert_eq!(
            verdict(&[0.94, 0.96, 0.97], 0.95, 3),
            "met by the median (2 of 3 rounds)"
        );
        assert_eq!(
            verdict(&[0.94, 0.93, 0.97], 0.95, 3),
            "**not met** by the median (1 of 3 rounds)"
        );
        // An even count: the mean of the middle two (0.95).
        assert_eq!(
            verdict(&[0.93, 0.94, 0.96, 0.97], 0.95, 3),
            "met by the median (2 of 4 rounds)"
        );
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[]), None);
        assert_eq!(verdict(&[], 0.95, 3), "not in this report");
        // Compared as shown: 0.9496 is shown as 0.950.
        assert_eq!(verdict(&[0.9496], 0.95, 3), "met");
        assert_eq!(verdict(&[0.9494], 0.95, 3), "**not met**");
        assert_eq!(verdict(&[4_999_999.6], 5e6, 0), "met");
    }

    #[test]
    fn every_target_has_a_row_even_without_results() {
        let rows = targets(&inputs(None, None, None));
        assert_eq!(rows.len(), TARGETS.len());
        for r in &rows {
            assert!(r.verdict.starts_with("not "), "{r:?}");
        }
        assert_eq!(
            row(
                &rows,
                "load harness / wrk against the same trivial endpoint"
            )
            .verdict,
            "not measured by `make bench` (see `loadtest/vs-wrk.sh`)"
        );
        assert_eq!(
            row(
                &rows,
                "introspection of a cached token / hyper hello-world, servers pinned to one core"
            )
            .verdict,
            "not in this report (no load suite results)"
        );
    }

    #[test]
    fn interleaved_ratios_are_judged_criterion_ones_are_not() {
        let criterion = criterion();
        let ratios = ratios();
        let rows = targets(&inputs(Some(&criterion), Some(&ratios), None));
        let rs256 = row(&rows, "full JWT verification / raw signature check, RS256");
        assert_eq!(
            (rs256.measured.as_str(), rs256.verdict.as_str()),
            ("0.950", "met")
        );
        assert_eq!(rs256.from, "`ratios` (interleaved)");
        let hs256 = row(&rows, "HS256 full verification / jsonwebtoken");
        assert_eq!(
            (hs256.measured.as_str(), hs256.verdict.as_str()),
            ("3.50×", "met")
        );
        let sign = row(
            &rows,
            "HSM signing through the pool / raw PKCS#11 C_Sign, ES256",
        );
        assert_eq!(
            (sign.measured.as_str(), sign.verdict.as_str()),
            ("0.961", "met")
        );
        // PS256 is in neither: not in this report.
        assert!(row(&rows, "same, PS256")
            .verdict
            .starts_with("not in this report"));

        let rows = targets(&inputs(Some(&criterion), None, None));
        let rs256 = row(&rows, "full JWT verification / raw signature check, RS256");
        assert_eq!(rs256.measured, "0.667");
        assert!(rs256.from.starts_with("criterion `verify`"), "{rs256:?}");
        assert_eq!(rs256.verdict, NOT_JUDGED);
        let sign = row(
            &rows,
            "HSM signing through the pool / raw PKCS#11 C_Sign, ES256",
        );
        assert_eq!(sign.measured, "0.800");
        assert_eq!(sign.verdict, NOT_JUDGED);
    }

    #[test]
    fn engine_figures_from_criterion() {
        let criterion = criterion();
        let rows = targets(&inputs(Some(&criterion), None, None));
        let cache = row(
            &rows,
            "verified-token cache hit (keyed hash, lookup, the token compared), a 330-byte token, one thread",
        );
        assert_eq!(cache.measured, "2.25 M/s (444 ns)");
        assert_eq!(cache.verdict, "**not met**");
        // The most workers measured: 4 at 33.3 k/s against 4 × 12.5 k/s.
        let workers = row(&rows, "engine with N workers / N × one worker");
        assert_eq!(
            workers.measured,
            "0.667: 33.3 k/s with 4 workers, 12.5 k/s with one"
        );
        assert_eq!(workers.verdict, "**not met**");
    }

    #[test]
    fn suite_ratios_are_judged_per_round() {
        let suite = Suite::parse(EXAMPLE).unwrap();
        let rows = targets(&inputs(None, None, Some(&suite)));
        let introspect = row(
            &rows,
            "introspection of a cached token / hyper hello-world, servers pinned to one core",
        );
        assert_eq!(introspect.measured, "0.338, 0.412 (median 0.375)");
        assert_eq!(introspect.verdict, "**not met**");
        let batch = row(
            &rows,
            "batch verify over HTTP (64 tokens per request) / the in-process engine",
        );
        // 0.805 and 0.975: the median, 0.890, meets 0.85.
        assert_eq!(batch.verdict, "met by the median (1 of 2 rounds)");
        // The example has no authz ratio.
        let authz = row(
            &rows,
            "forward-auth (`/v1/authz`) of a cached token / hyper hello-world (same layout)",
        );
        assert!(authz.verdict.starts_with("not in this report"));
    }

    #[test]
    fn the_section_has_every_figure() {
        let criterion = criterion();
        let ratios = ratios();
        let suite = Suite::parse(EXAMPLE).unwrap();
        let mut all = inputs(Some(&criterion), Some(&ratios), Some(&suite));
        all.note = Some("A note.");
        let text = section(&all);
        assert!(text.starts_with("## Latest `make bench` run\n"));
        assert!(
            text.ends_with("\n\n"),
            "ends with a blank line before the end marker"
        );
        for needle in [
            "2025-11-28 08:53 UTC",
            "Test CPU, 2 logical CPUs, Linux 6.0",
            "commit abc1234 (clean)",
            "A note.",
            "41 rounds of 20 ms",
            "| HS256 | 1.98 µs (505.1 k/s) | 691 ns (1.45 M/s) | 6.82 µs (146.6 k/s) | 0.349 | 3.50× |",
            "| ES256 | 105 µs (9.5 k/s) | 102 µs (9.8 k/s) | 0.961 |",
            "Run 2026-11-28T08:21Z at commit 3328335: 2 rounds of 5 s",
            "| hello (requests/s) | 64 | 75942 (3445) | 76476 (3263) |",
            "| engine (tokens/s) | – | 21935 | 14512 |",
            "| introspect / hello | 0.7 | 0.338 | 0.412 |",
            "#### `verify` (written 1970-01-01 00:00 UTC)",
            "| `verify/tessera/RS256` | 30.0 µs (29.7–30.6) | 33.3 k/s |",
            "| `engine/workers-2/ES256` | 12.8 ms (12.7–13.1) | 20.0 k/s (256 per iteration) |",
            "Left out: 1 older result under the criterion directory",
            "`verify/old/HS256`",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        // Every current criterion id is reported.
        for m in &criterion.current {
            assert!(text.contains(&format!("| `{}` |", m.id)), "{}", m.id);
        }
    }

    #[test]
    fn absent_sources_are_said_to_be() {
        let text = section(&inputs(None, None, None));
        assert_eq!(text.matches("Not part of this report.").count(), 3);
    }

    #[test]
    fn formats_times_and_rates() {
        assert_eq!(time(44.3), "44.3 ns");
        assert_eq!(time(444.0), "444 ns");
        assert_eq!(time(1840.0), "1.84 µs");
        assert_eq!(time(1_760_000.0), "1.76 ms");
        assert_eq!(rate(2.25e6), "2.25 M/s");
        assert_eq!(rate(544_200.0), "544.2 k/s");
        assert_eq!(rate(568.2), "568/s");
        let mut m = measurement("g/f/v", 1000.0, 1, 0);
        m.throughput = Some(Throughput::Bytes(1024 * 1024));
        // 1 MiB per microsecond: 10^6 MiB/s.
        assert_eq!(throughput(&m), "977 GiB/s");
        m.throughput = Some(Throughput::BytesDecimal(1000));
        assert_eq!(throughput(&m), "1.00 GB/s");
        m.throughput = None;
        assert_eq!(throughput(&m), "–");
    }
}
