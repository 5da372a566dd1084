//! `tessera calibrate` and `tessera capacity`: the capacity planner's commands. The
//! measurements and the model are the `planner` crate.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use planner::{Calibration, Estimate, Mix, Plan, Throughput, Workload};

/// Other processes' load (in cores) above which a calibration is reported as suspect.
const OTHER_LOAD: f64 = 0.1;

/// The budget of the calibration `tessera capacity` runs when it is given none.
const QUICK: Duration = Duration::from_secs(10);

#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// Write the calibration as JSON to FILE (for `tessera capacity --calibration FILE`).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Seconds to spend measuring (at least 5; 30 gives steady figures).
    #[arg(long, value_name = "N", default_value_t = 30)]
    seconds: u64,
    /// Print the calibration as JSON instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct CapacityArgs {
    /// Tokens to verify per second.
    #[arg(long, value_name = "N")]
    rps: f64,
    /// Algorithms of the tokens and their shares: RS256=50,ES256=30,EdDSA=20.
    #[arg(long, value_name = "MIX")]
    mix: Mix,
    /// Share of tokens answered from the verified-token cache, 0 to 1.
    #[arg(long, value_name = "RATIO")]
    cache_hit: f64,
    /// Tokens per request: 1 is /v1/authz (forward-auth); more is POST /v1/verify with that
    /// many tokens per request.
    #[arg(long, value_name = "N", default_value_t = 1)]
    batch: u32,
    /// The p99 latency to meet, in milliseconds.
    #[arg(long, value_name = "MS")]
    p99_ms: Option<f64>,
    /// Keep cores at most this busy (0 to 1).
    #[arg(long, value_name = "RATIO", default_value_t = 0.7)]
    utilisation: f64,
    /// A calibration written by `tessera calibrate --out FILE`; without it, this machine is
    /// calibrated quickly first (about 10 s).
    #[arg(long, value_name = "FILE")]
    calibration: Option<PathBuf>,
    /// Also the most tokens per second this many cores verify, busy all the time.
    #[arg(long, value_name = "N")]
    cores: Option<u32>,
    /// Print JSON instead of the table.
    #[arg(long)]
    json: bool,
}

pub fn calibrate(args: CalibrateArgs) -> anyhow::Result<ExitCode> {
    if args.seconds < planner::MIN_BUDGET.as_secs() {
        bail!(
            "--seconds {}: at least {} (shorter runs measure mostly noise)",
            args.seconds,
            planner::MIN_BUDGET.as_secs()
        );
    }
    eprintln!(
        "tessera: calibrating this machine for about {} s; keep it otherwise idle",
        args.seconds
    );
    let cal = measure(Duration::from_secs(args.seconds))?;
    if args.json {
        emit(&(cal.to_json() + "\n"))?;
    } else {
        emit(&calibration_table(&cal))?;
    }
    if let Some(out) = &args.out {
        std::fs::write(out, cal.to_json() + "\n")
            .with_context(|| format!("writing {}", out.display()))?;
        eprintln!("tessera: wrote {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}

pub fn capacity(args: CapacityArgs) -> anyhow::Result<ExitCode> {
    let (cal, source) = match &args.calibration {
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            let cal =
                Calibration::from_json(&text).with_context(|| format!("{}", file.display()))?;
            (cal, file.display().to_string())
        }
        None => {
            eprintln!(
                "tessera: no --calibration FILE: calibrating this machine first (about {} s; \
                 `tessera calibrate --out FILE` once gives steadier figures)",
                QUICK.as_secs()
            );
            (measure(QUICK)?, "measured now".to_string())
        }
    };
    let workload = Workload {
        rps: args.rps,
        mix: args.mix.clone(),
        cache_hit: args.cache_hit,
        batch: args.batch,
        p99_target_ms: args.p99_ms,
    };
    let plan = planner::plan(&cal, &workload, args.utilisation)?;
    let on_cores = match args.cores {
        Some(cores) => Some((
            cores,
            planner::max_rps(&cal, &args.mix, args.cache_hit, args.batch, cores)?,
        )),
        None => None,
    };
    if args.json {
        let mut out = serde_json::json!({
            "calibration": {
                "source": source,
                "machine": cal.machine,
                "date": cal.date,
            },
            "plan": plan,
        });
        if let Some((cores, t)) = on_cores {
            out["max_rps_on_cores"] = serde_json::json!({
                "cores": cores,
                "rps": t.rps,
                "rps_low": t.low,
                "rps_high": t.high,
            });
        }
        emit(&(serde_json::to_string_pretty(&out)? + "\n"))?;
    } else {
        emit(&plan_table(&plan, &cal, &source, &args.mix, on_cores))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn measure(budget: Duration) -> anyhow::Result<Calibration> {
    let mut progress = |step: &str| eprintln!("tessera: calibrate: {step}");
    let cal = planner::calibrate(budget, &mut progress)?;
    if cal.other_load_cores > OTHER_LOAD {
        eprintln!(
            "tessera: other processes used {:.2} cores while calibrating: the figures may be \
             high; calibrate again on a quieter machine",
            cal.other_load_cores
        );
    }
    Ok(cal)
}

/// Writes to stdout; a closed pipe is an error, not a panic.
fn emit(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("writing to stdout")
}

/// A figure with its spread: `12.34 ± 0.20`.
fn pm(e: Estimate) -> String {
    format!("{:.2} ± {:.2}", e.us, e.spread_us)
}

fn calibration_table(cal: &Calibration) -> String {
    use std::fmt::Write as _;
    let m = &cal.machine;
    let h = &cal.http;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "machine   {}, {} cores, Linux {} (CPU time from {})",
        m.cpu, m.cores, m.kernel, cal.clock
    );
    let _ = writeln!(
        out,
        "date      {}, {:.1} s of a {:.0} s budget; other processes used {:.2} cores meanwhile",
        cal.date, cal.took_s, cal.budget_s, cal.other_load_cores
    );
    let _ = writeln!(
        out,
        "figures   CPU µs on one core, ± half the distance between two consecutive estimates \
         that agreed (sums of those where derived)"
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "CPU µs on one core          single           batched    /v1/authz miss   a new token's miss  a scattered miss"
    );
    let reference = cal.reference().ok();
    for a in &cal.algorithms {
        let new = reference.map_or(f64::NAN, |r| cal.authz_miss_extra_us(a, r));
        let scattered = reference
            .and_then(|r| cal.authz_scattered_extra_us(a, r))
            .map_or_else(|| "not measured".to_string(), |us| format!("{us:.2}"));
        let _ = writeln!(
            out,
            "{:<20} {:>15}   {:>15}   {:>15}   {:>14.2} ± {:.2}   {:>14}",
            a.alg,
            pm(a.single_us),
            pm(a.batched_us),
            pm(a.authz_miss_us),
            new,
            plan_spread(cal, a),
            scattered,
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "cache hit            {} µs", pm(cal.cache_hit_us));
    let _ = writeln!(
        out,
        "/v1/authz, cached    {} µs per request (the service's core {:.0} % busy)",
        pm(h.authz_cached_us),
        h.server_busy * 100.0
    );
    for p in &h.authz_new {
        let _ = writeln!(
            out,
            "/v1/authz, new       {} µs per request when {:.1} % of tokens are new {} tokens, \
             scattered",
            pm(p.us),
            p.miss * 100.0,
            h.reference
        );
    }
    let _ = writeln!(
        out,
        "/v1/verify           {} µs per request + {} µs per cached token; a new {} token \
         adds {} µs",
        pm(h.verify_fixed_us),
        pm(h.verify_per_token_us),
        h.reference,
        pm(h.verify_miss_us)
    );
    let _ = writeln!(
        out,
        "model                a request at a miss ratio costs what the line through the cached \
         and new-token points says; another algorithm's miss adds its difference from {}'s: \
         when misses are scattered (one new token in 10, a lone miss on the single path), when \
         every token is new (misses in quantity, vectorised where the backend is loaded), and \
         on the line between them in between",
        h.reference
    );
    let core = h
        .server_core
        .map_or_else(|| "unpinned".to_string(), |c| format!("core {c}"));
    let _ = writeln!(
        out,
        "load                 {} connections from {} client thread(s); the service on {core}",
        h.connections, h.client_threads
    );
    out
}

/// The spread of what a new token's `/v1/authz` miss of `alg` costs beyond a cached request,
/// as the planner computes it (every token missing).
fn plan_spread(cal: &Calibration, a: &planner::AlgorithmCost) -> f64 {
    let Some(alg) = jose::Algorithm::from_name(&a.alg) else {
        return f64::NAN;
    };
    let Ok(mix) = Mix::new(&[(alg, 1.0)]) else {
        return f64::NAN;
    };
    let Ok(plan) = planner::plan(
        cal,
        &Workload {
            rps: 1.0,
            mix,
            cache_hit: 0.0,
            batch: 1,
            p99_target_ms: None,
        },
        1.0,
    ) else {
        return f64::NAN;
    };
    plan.cpu_us_per_request_spread
}

fn plan_table(
    plan: &Plan,
    cal: &Calibration,
    source: &str,
    mix: &Mix,
    on_cores: Option<(u32, Throughput)>,
) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let per = if plan.batch == 1 {
        "one token per request".to_string()
    } else {
        format!("{} tokens per request", plan.batch)
    };
    let _ = writeln!(
        out,
        "workload      {} tokens/s, {mix}, {:.0} % cache hits, {} ({per})",
        rate(plan.rps),
        plan.cache_hit * 100.0,
        plan.endpoint
    );
    let _ = writeln!(
        out,
        "calibration   {source} ({}, {} cores, {})",
        cal.machine.cpu, cal.machine.cores, cal.date
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "CPU           {:.2} ± {:.2} µs per request ({:.1} %), {:.2} µs per token",
        plan.cpu_us_per_request,
        plan.cpu_us_per_request_spread,
        100.0 * plan.cpu_us_per_request_spread / plan.cpu_us_per_request,
        plan.cpu_us_per_token
    );
    let _ = writeln!(
        out,
        "demand        {:.2} ± {:.2} cores busy",
        plan.demand_cores, plan.demand_cores_spread
    );
    let high = if plan.cores_high > plan.cores {
        format!("; {} at the top of the spread", plan.cores_high)
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "cores         {} at ≤ {:.0} % utilisation ({:.0} % busy{high})",
        plan.cores,
        plan.utilisation_target * 100.0,
        plan.utilisation * 100.0
    );
    let _ = writeln!(
        out,
        "p99           {} (M/M/{}: {:.1} % of requests wait)",
        ms(plan.p99_ms),
        plan.cores,
        plan.wait_probability * 100.0
    );
    if let Some(target) = plan.p99_target_ms {
        let verdict = match (plan.p99_met, plan.cores_for_p99) {
            (Some(true), Some(fewest)) => format!("met (the fewest cores that meet it: {fewest})"),
            (_, Some(fewest)) => format!("not met on {} cores: needs {fewest}", plan.cores),
            (_, None) => "out of reach: one request's CPU time alone exceeds it".to_string(),
        };
        let _ = writeln!(out, "p99 target    {target} ms: {verdict}");
    }
    let _ = writeln!(
        out,
        "provision     {} (at most {} tokens/s when busy all the time, {} to {})",
        cores(plan.recommended_cores),
        rate(plan.max_rps),
        rate(plan.max_rps_low),
        rate(plan.max_rps_high)
    );
    if let Some((n, t)) = on_cores {
        let _ = writeln!(
            out,
            "on {:<10} at most {} tokens/s ({} to {})",
            cores(n),
            rate(t.rps),
            rate(t.low),
            rate(t.high)
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "CPU share     share    cores   µs/request");
    for s in &plan.shares {
        let _ = writeln!(
            out,
            "  {:<10} {:>6.1} %  {:>6.2}   {:>10.2}",
            s.part,
            s.share * 100.0,
            s.cores,
            s.us_per_request
        );
    }
    out
}

fn cores(n: u32) -> String {
    if n == 1 {
        "1 core".to_string()
    } else {
        format!("{n} cores")
    }
}

fn rate(rps: f64) -> String {
    if !rps.is_finite() {
        "unbounded".to_string()
    } else if rps >= 10_000.0 {
        format!("{:.1} k", rps / 1e3)
    } else {
        format!("{rps:.0}")
    }
}

fn ms(value: f64) -> String {
    if !value.is_finite() {
        "unbounded (the cores are saturated)".to_string()
    } else if value < 1.0 {
        format!("{:.0} µs", value * 1e3)
    } else {
        format!("{value:.2} ms")
    }
}
