//! Measuring this machine. Everything runs in this process:
//!
//! 1. Keys for each algorithm are generated and tokens signed with them.
//! 2. On a thread pinned to one core (the "server core", the last this process may use):
//!    `jose::jwt::verify` in a loop per algorithm (single), an engine with one worker verifying
//!    batches of 64 (batched: the worker's CPU time per token), and cache hits through
//!    `EngineHandle::verify`.
//! 3. The daemon's service (`server` crate, one runtime worker, one engine worker, all pinned to
//!    the server core) loaded over loopback by a client on the other cores, 64 keep-alive
//!    connections. A service whose cache holds only 16 entries, so that every token misses:
//!    `/v1/authz` per algorithm. A service with the default cache: `/v1/verify` with 1 and 64
//!    cached tokens, `/v1/authz` with cached tokens, then with HS256 tokens never seen before
//!    (the reference: cheap to sign by the hundred thousand, cheap to verify, so that what a
//!    miss itself costs dominates), one in 10 requests, one in 2 and every one, scattered among
//!    hits on tokens sent earlier, and `/v1/verify` with 64 new HS256 tokens per request. The
//!    service's CPU time is read per thread, so the client's is not counted.
//!
//! Every figure is a direct measurement of a request's (or a call's) cost, never a difference
//! divided by a small share: the model reads the cost at a miss ratio off the measured ones,
//! and an algorithm's miss as the reference's plus their difference when every token misses.
//! Each probe is repeated until two consecutive estimates agree within [`TOLERANCE`] (at most
//! [`MAX_REPEATS`] times); the figure is their mean and its spread half their distance. An
//! estimate that is zero, negative or not finite is noise: it is measured again; a probe that
//! gives nothing else, or figures derived from probes that still come out negative after
//! [`RETRIES`] tries, fail the calibration with [`CalibrateError::Unstable`]. Every figure is
//! CPU time, not elapsed time, so a machine shared with other work skews it less (cache and
//! core sharing still do); the CPU time other processes used meanwhile is recorded.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use core_affinity::CoreId;
use engine::{CacheConfig, Engine, EngineConfig};
use server::unix_now;

use crate::calibration::{
    AlgorithmCost, Calibration, CalibrationError, Estimate, HttpCost, Machine, MissPoint, FORMAT,
};
use crate::cpu::{self, Clock};
use crate::fixtures::{self, FixtureError, Signer};
use crate::load::{self, Load, LoadError, Server};
use crate::stats::{self, median, SettleError};
use crate::ALGORITHMS;

/// The shortest budget: below it the measurements are mostly noise.
pub const MIN_BUDGET: Duration = Duration::from_secs(5);

/// Distinct tokens per algorithm; the cache-less service sees each again only after 255
/// others, long after its 16 entries have turned over.
const TOKENS: usize = 256;
/// In-process measurements are cut into this many parts; the median is kept.
const PARTS: u32 = 8;
/// Tokens per batch, for the engine and for `/v1/verify`.
const BATCH: usize = 64;
const CONNECTIONS: usize = 64;
/// Connections for `/v1/verify`: 8 × 64 tokens stay within one engine worker's admission.
const BATCH_CONNECTIONS: usize = 8;
/// Most client threads.
const CLIENT_THREADS: usize = 4;
/// Two consecutive estimates of a figure agree when they differ by at most this share of
/// their mean.
pub const TOLERANCE: f64 = 0.05;
/// Most estimates of one figure.
pub const MAX_REPEATS: u32 = 5;
/// The estimates a figure takes on average: the budget is shared as if each took this many.
const EXPECTED_REPEATS: f64 = 2.5;
/// Tries of the probes whose figures are derived (`/v1/verify`'s fixed and per-token parts)
/// before a negative one fails the calibration.
pub const RETRIES: u32 = 3;
/// Miss ratios probed on `/v1/authz` with new tokens (one new in this many requests), in
/// increasing order of the ratio; the last is every request.
const PROBES: [usize; 3] = [10, 2, 1];
/// A probe of new tokens only counts if the daemon saw at least this share of misses (fewer:
/// the requests wrapped around to tokens already sent, and it is measured again with more).
const ALL_NEW: f64 = 0.99;
/// Steps between a token's first sending and its next in the miss-ratio probes: several times
/// the requests in flight, so that its verdict is cached by then.
const REUSE: usize = 4 * CONNECTIONS;
/// The scattered-miss probe per algorithm: one new token in this many requests...
const SCATTER: usize = 10;
/// ...the others hits on tokens first sent this many new tokens earlier, in a service that
/// keeps this many verdicts (a quarter of [`TOKENS`]).
const NEAR: std::ops::Range<usize> = 16..40;
const SCATTER_ENTRIES: usize = 64;
/// Where HS256 (the reference) and ES256 are in [`ALGORITHMS`].
const HS256: usize = 0;
const ES256: usize = 3;
const CLIENT_ID: &str = "calibrate";
const CLIENT_SECRET: &str = "calibrate-secret";

/// Why calibration stopped.
#[non_exhaustive]
#[derive(Debug)]
pub enum CalibrateError {
    /// This machine's: no per-thread CPU time (`/proc/thread-self/schedstat` or `stat`): not
    /// Linux, or `/proc` is not mounted.
    NoCpuClock,
    /// This machine's crypto library: keys or tokens could not be made.
    Keys(FixtureError),
    /// This machine's: a thread, a runtime, the temporary key set file or the service's
    /// configuration could not be made.
    Setup(String),
    /// A bug here: a token signed here did not verify.
    Verify(String),
    /// The service would not start.
    Server(LoadError),
    /// A request failed or got an unexpected answer.
    Load(LoadError),
    /// A figure came out zero or not finite (a window where nothing ran): the machine was
    /// too busy to measure.
    Implausible(CalibrationError),
    /// The machine's: a probe gave no usable estimate (every one zero, negative or not
    /// finite), or figures derived from it stayed negative (a cost, or the rise of a request's
    /// cost with the miss ratio) or out of order, in every try; `last` is the last such value.
    /// Too busy or too erratic to measure.
    Unstable {
        probe: String,
        tries: u32,
        last: f64,
    },
}

impl std::fmt::Display for CalibrateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CalibrateError::NoCpuClock => f.write_str(
                "no per-thread CPU time in /proc (calibration needs Linux with /proc mounted)",
            ),
            CalibrateError::Keys(e) => write!(f, "setting up: {e}"),
            CalibrateError::Setup(e) => write!(f, "setting up: {e}"),
            CalibrateError::Verify(e) => write!(f, "a calibration token did not verify: {e}"),
            CalibrateError::Server(e) => write!(f, "starting the service: {e}"),
            CalibrateError::Load(e) => write!(f, "loading the service: {e}"),
            CalibrateError::Implausible(e) => {
                write!(f, "loading the service: implausible measurement: {e}")
            }
            CalibrateError::Unstable { probe, tries, last } => write!(
                f,
                "{probe}: unstable: no usable figure in {tries} tries (the last {last:.2}); \
                 the machine is too busy to measure: calibrate again on a quieter one"
            ),
        }
    }
}

impl std::error::Error for CalibrateError {}

/// Progress reports: one line per step.
pub type Progress<'a> = &'a mut dyn FnMut(&str);

/// How the budget is shared: the length of one estimate of each figure, as fractions of the
/// budget over [`EXPECTED_REPEATS`]. What is left covers key generation, signing and starting
/// the services.
struct Slots {
    single: Duration,
    batched: Duration,
    cache_hit: Duration,
    authz_cached: Duration,
    verify_one: Duration,
    verify_many: Duration,
    authz_miss: Duration,
    /// Each algorithm's scattered misses.
    scattered: Duration,
    verify_miss: Duration,
    /// Each miss-ratio probe.
    probe: Duration,
}

impl Slots {
    fn of(budget: Duration) -> Slots {
        let part = |f: f64| budget.mul_f64(f);
        Slots {
            single: part(0.012),
            batched: part(0.012),
            cache_hit: part(0.01),
            authz_cached: part(0.05),
            verify_one: part(0.04),
            verify_many: part(0.05),
            authz_miss: part(0.03),
            scattered: part(0.03),
            // Batches of new tokens cost some 50 times a cached request: fewer requests per
            // interval, and the 8 in flight weigh more at its ends; a longer window.
            verify_miss: part(0.07),
            probe: part(0.06),
        }
    }
}

/// Measures this machine within about `budget` (at least [`MIN_BUDGET`]; 30 s gives steady
/// figures, 10 s rough ones). Figures that need more than two estimates to agree take longer.
pub fn calibrate(budget: Duration, progress: Progress<'_>) -> Result<Calibration, CalibrateError> {
    let started = Instant::now();
    let budget = budget.max(MIN_BUDGET);
    let slots = Slots::of(budget.div_f64(EXPECTED_REPEATS));
    let clock = Clock::detect().ok_or(CalibrateError::NoCpuClock)?;
    let ticks_before = cpu::ticks();
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let (server_core, client_cores) = match cores.split_last() {
        Some((last, rest)) if !rest.is_empty() => (
            Some(*last),
            rest.iter().rev().take(CLIENT_THREADS).copied().collect(),
        ),
        _ => (None, Vec::new()),
    };

    progress("generating keys and signing tokens");
    let signers = ALGORITHMS
        .iter()
        .map(|&alg| Signer::generate(alg))
        .collect::<Result<Vec<_>, _>>()
        .map_err(CalibrateError::Keys)?;
    let now = unix_now();
    let tokens = signers
        .iter()
        .map(|s| s.tokens(0..TOKENS, now))
        .collect::<Result<Vec<_>, _>>()
        .map_err(CalibrateError::Keys)?;
    let jwks = fixtures::jwks(&signers);

    let dir = TempDir::create()?;
    let jwks_path = dir.write("jwks.json", jwks.as_bytes())?;
    let load = Load {
        connections: CONNECTIONS,
        client_cores,
        clock,
    };
    progress("verification in the calling thread, in an engine worker, cache hits");
    let (in_process, unsettled) = std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("tcal-verify".into())
            .spawn_scoped(s, || {
                if let Some(core) = server_core {
                    core_affinity::set_for_current(core);
                }
                let mut unsettled = Vec::new();
                let mut note = |step: &str| unsettled.push(step.to_string());
                in_process(&jwks, &tokens, now, &slots, clock, &mut note).map(|r| (r, unsettled))
            })
            .map_err(|e| CalibrateError::Setup(format!("starting a thread: {e}")))?
            .join()
            .map_err(|_| CalibrateError::Setup("the measuring thread panicked".into()))?
    })?;
    for line in unsettled {
        progress(&line);
    }
    let setup = HttpSetup {
        jwks_path: &jwks_path,
        tokens: &tokens,
        reference: &signers[HS256],
        now,
        slots: &slots,
        server_core,
        load: &load,
    };
    // A busy machine can make one HTTP run read as nonsense (a miss cheaper than a hit): such a
    // run is measured again, twice at most, before the calibration is refused.
    let mut attempt = 1;
    loop {
        let http = http(&setup, progress)?;
        let algorithms = ALGORITHMS
            .iter()
            .enumerate()
            .map(|(i, alg)| AlgorithmCost {
                alg: alg.name().to_string(),
                single_us: in_process.single_us[i],
                batched_us: in_process.batched_us[i],
                authz_miss_us: http.authz_miss_us[i],
                authz_scattered: http.authz_scattered[i].clone(),
            })
            .collect();
        let other_load_cores = match (ticks_before, cpu::ticks()) {
            (Some((busy0, own0)), Some((busy1, own1))) => {
                let other = busy1
                    .saturating_sub(busy0)
                    .saturating_sub(own1.saturating_sub(own0));
                other as f64 / 100.0 / started.elapsed().as_secs_f64()
            }
            _ => 0.0,
        };
        let cal = Calibration {
            format: FORMAT,
            machine: machine(),
            date: jose::date::rfc3339(unix_now()),
            budget_s: budget.as_secs_f64(),
            took_s: started.elapsed().as_secs_f64(),
            clock: clock.name().to_string(),
            other_load_cores,
            algorithms,
            cache_hit_us: in_process.cache_hit_us,
            http: http.cost,
        };
        // Catches a zero, negative or non-finite figure before it is saved.
        match Calibration::from_json(&cal.to_json()) {
            Err(e) if attempt < HTTP_ATTEMPTS => {
                progress(&format!(
                    "implausible HTTP figures ({e}): measuring the requests again"
                ));
                attempt += 1;
            }
            result => {
                drop(dir);
                return result.map_err(CalibrateError::Implausible);
            }
        }
    }
}

/// How many times the HTTP requests are measured before implausible figures refuse the
/// calibration.
const HTTP_ATTEMPTS: u32 = 3;

/// Estimates a figure with `measure` until two consecutive estimates agree (see
/// [`stats::settle`]); says so through `note` if none did.
fn settle(
    probe: &str,
    note: Progress<'_>,
    measure: impl FnMut() -> Result<f64, CalibrateError>,
) -> Result<Estimate, CalibrateError> {
    match stats::settle(TOLERANCE, MAX_REPEATS, measure) {
        Ok(s) => {
            if !s.agreed {
                note(&format!(
                    "{probe}: no two consecutive estimates within {:.0} % in {} tries: \
                     {:.2} ± {:.2} µs (median and half the range)",
                    TOLERANCE * 100.0,
                    s.repeats,
                    s.value,
                    s.spread
                ));
            }
            Ok(Estimate::new(s.value, s.spread))
        }
        Err(SettleError::Measure(e)) => Err(e),
        Err(SettleError::Unusable { repeats, last }) => Err(CalibrateError::Unstable {
            probe: probe.to_string(),
            tries: repeats,
            last,
        }),
    }
}

/// The in-process figures, per algorithm in [`ALGORITHMS`] order.
struct InProcess {
    single_us: Vec<Estimate>,
    batched_us: Vec<Estimate>,
    cache_hit_us: Estimate,
}

/// The calibration tokens' issuer, as the engine trusts it (the policy of
/// [`fixtures::validation`]).
fn issuers(jwks: &str) -> Result<Arc<engine::Issuers>, CalibrateError> {
    let spec = engine::IssuerSpec {
        issuer: fixtures::ISSUER.into(),
        audiences: vec![fixtures::AUDIENCE.into()],
        ..engine::IssuerSpec::default()
    };
    engine::Issuers::new(vec![(spec, engine::KeySource::Keys(key_set(jwks)?))])
        .map(Arc::new)
        .map_err(|e| CalibrateError::Verify(e.to_string()))
}

fn key_set(jwks: &str) -> Result<jose::KeySet, CalibrateError> {
    let parsed = jose::KeySet::from_jwks(jwks.as_bytes())
        .map_err(|e| CalibrateError::Setup(format!("the key set: {e}")))?;
    if !parsed.skipped.is_empty() {
        return Err(CalibrateError::Setup(format!(
            "keys skipped: {:?}",
            parsed.skipped
        )));
    }
    Ok(parsed.keys)
}

fn in_process(
    jwks: &str,
    tokens: &[Vec<String>],
    now: i64,
    slots: &Slots,
    clock: Clock,
    note: Progress<'_>,
) -> Result<InProcess, CalibrateError> {
    let keys = key_set(jwks)?;
    let validation = fixtures::validation();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| CalibrateError::Setup(format!("a runtime: {e}")))?;

    let mut single_us = Vec::new();
    for (alg, tokens) in ALGORITHMS.iter().zip(tokens) {
        for token in tokens {
            jose::jwt::verify(token, &keys, &validation, now)
                .map_err(|e| CalibrateError::Verify(format!("{alg}: {e}")))?;
        }
        let mut i = 0;
        let us = settle(&format!("{alg} in the calling thread"), note, || {
            Ok(per_op(clock, slots.single, || {
                let _ = std::hint::black_box(jose::jwt::verify(
                    &tokens[i % tokens.len()],
                    &keys,
                    &validation,
                    now,
                ));
                i += 1;
            }))
        })?;
        single_us.push(us);
    }

    let no_cache = CacheConfig {
        ttl: 0,
        negative_ttl: 0,
        ..CacheConfig::default()
    };
    let mut batched_us = Vec::new();
    {
        // Pinned workers go to the cores this thread may use: the server core.
        let config = EngineConfig {
            workers: 1,
            pin: true,
            batch: BATCH,
            cache: no_cache,
            ..EngineConfig::default()
        };
        // As the daemon runs them: eight signatures at a time where crypto_mb serves here.
        let multibuffer = server::load_multibuffer(&server::config::MultiBufferSetting::Auto)
            .map_err(|e| CalibrateError::Setup(e.to_string()))?;
        let engine: Engine = Engine::start_with(config, issuers(jwks)?, multibuffer);
        let handle = engine.handle();
        for (alg, tokens) in ALGORITHMS.iter().zip(tokens) {
            let refs: Vec<&[u8]> = tokens[..BATCH].iter().map(|t| t.as_bytes()).collect();
            let results = runtime.block_on(handle.verify_batch(&refs, now));
            if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
                return Err(CalibrateError::Verify(format!("{alg} in the engine: {e}")));
            }
            let us = settle(&format!("{alg} in an engine worker"), note, || {
                let parts: Vec<f64> = (0..PARTS)
                    .map(|_| {
                        let before = clock.threads(&[load::SERVER_THREADS[1]]);
                        let start = Instant::now();
                        let mut batches = 0u64;
                        while batches < 1 || start.elapsed() < slots.batched / PARTS {
                            let _ = runtime.block_on(handle.verify_batch(&refs, now));
                            batches += 1;
                        }
                        let ns = clock.threads(&[load::SERVER_THREADS[1]]).since(&before);
                        ns as f64 / 1e3 / (batches * BATCH as u64) as f64
                    })
                    .collect();
                Ok(median(&parts).unwrap_or(f64::NAN))
            })?;
            batched_us.push(us);
        }
    }

    let cache_hit_us = {
        let config = EngineConfig {
            workers: 1,
            pin: true,
            ..EngineConfig::default()
        };
        let engine: Engine = Engine::start(config, issuers(jwks)?);
        let handle = engine.handle();
        let token = tokens[ES256][0].as_bytes();
        runtime
            .block_on(handle.verify(token, now))
            .map_err(|e| CalibrateError::Verify(format!("ES256 in the engine: {e}")))?;
        settle("cache hits", note, || {
            let parts: Vec<f64> = (0..PARTS)
                .map(|_| {
                    let (start, cpu) = (Instant::now(), clock.this_thread());
                    let calls = runtime.block_on(async {
                        let mut calls = 0u64;
                        while calls < 256 || start.elapsed() < slots.cache_hit / PARTS {
                            for _ in 0..256 {
                                let _ = std::hint::black_box(handle.verify(token, now).await);
                            }
                            calls += 256;
                        }
                        calls
                    });
                    clock.this_thread().saturating_sub(cpu) as f64 / 1e3 / calls as f64
                })
                .collect();
            Ok(median(&parts).unwrap_or(f64::NAN))
        })?
    };
    Ok(InProcess {
        single_us,
        batched_us,
        cache_hit_us,
    })
}

/// Runs `op` for about `slot` (and at least a few times) on this thread; CPU µs per call, the
/// median over [`PARTS`] parts of the slot.
fn per_op(clock: Clock, slot: Duration, mut op: impl FnMut()) -> f64 {
    // A short warm-up: caches, branch predictors, the key set's header memo.
    for _ in 0..8 {
        op();
    }
    let parts: Vec<f64> = (0..PARTS)
        .map(|_| {
            let (start, cpu) = (Instant::now(), clock.this_thread());
            let mut n = 0u64;
            while n < 8 || start.elapsed() < slot / PARTS {
                for _ in 0..4 {
                    op();
                }
                n += 4;
            }
            clock.this_thread().saturating_sub(cpu) as f64 / 1e3 / n as f64
        })
        .collect();
    median(&parts).unwrap_or(f64::NAN)
}

struct Http {
    cost: HttpCost,
    authz_miss_us: Vec<Estimate>,
    authz_scattered: Vec<Option<MissPoint>>,
}

/// What the HTTP measurements work with.
struct HttpSetup<'a> {
    jwks_path: &'a std::path::Path,
    /// Per algorithm of [`ALGORITHMS`].
    tokens: &'a [Vec<String>],
    /// Signs the new tokens: HS256.
    reference: &'a Signer,
    now: i64,
    slots: &'a Slots,
    server_core: Option<CoreId>,
    load: &'a Load,
}

fn http(setup: &HttpSetup<'_>, progress: Progress<'_>) -> Result<Http, CalibrateError> {
    let HttpSetup {
        jwks_path,
        tokens,
        reference,
        now,
        slots,
        server_core,
        load,
    } = *setup;
    let measure = |server: &Server, requests: Vec<Box<[u8]>>, slot: Duration| {
        load.run(server.addr(), requests, slot / 4, slot * 3 / 4)
            .map_err(CalibrateError::Load)
    };
    // Batches of 64 from every connection would exceed what one engine worker admits
    // (queue_per_worker, 1024 tokens in flight): fewer connections for /v1/verify.
    let batch_load = Load {
        connections: BATCH_CONNECTIONS,
        ..load.clone()
    };
    let measure_batches = |server: &Server, requests: Vec<Box<[u8]>>, slot: Duration| {
        batch_load
            .run(server.addr(), requests, slot / 4, slot * 3 / 4)
            .map_err(CalibrateError::Load)
    };
    let es256 = &tokens[ES256];

    let tiny = CacheConfig {
        shards: 1,
        max_entries: 16,
        negative_ttl: 0,
        ..CacheConfig::default()
    };
    let missing =
        Server::start(config(jwks_path, tiny)?, server_core).map_err(CalibrateError::Server)?;
    let host = missing.addr().to_string();
    let mut authz_miss_us = Vec::new();
    for (alg, tokens) in ALGORITHMS.iter().zip(tokens) {
        let probe = format!("HTTP: /v1/authz, every {alg} token a cache miss");
        progress(&probe);
        let requests: Vec<Box<[u8]>> = tokens.iter().map(|t| authz(&host, t)).collect();
        check(&missing, &requests[0], None)?;
        authz_miss_us.push(settle(&probe, progress, || {
            Ok(measure(&missing, requests.clone(), slots.authz_miss)?.us_per_request)
        })?);
    }
    drop(missing);

    // A service that keeps `SCATTER_ENTRIES` verdicts; one token in `SCATTER` new (cycling
    // back only after the entries have turned over several times), the others hits on tokens
    // first sent `NEAR` new tokens earlier: still kept, and answered long since (64 requests
    // in flight span some 6 new tokens).
    let scattering = CacheConfig {
        shards: 1,
        max_entries: SCATTER_ENTRIES,
        negative_ttl: 0,
        ..CacheConfig::default()
    };
    let missing = Server::start(config(jwks_path, scattering)?, server_core)
        .map_err(CalibrateError::Server)?;
    let host = missing.addr().to_string();
    let hits: Vec<Box<[u8]>> = es256[..SCATTER_ENTRIES / 2]
        .iter()
        .map(|t| authz(&host, t))
        .collect();
    check(&missing, &hits[0], None)?;
    let patterns: Vec<Vec<Box<[u8]>>> = tokens
        .iter()
        .map(|tokens| {
            let cold: Vec<Box<[u8]>> = tokens.iter().map(|t| authz(&host, t)).collect();
            let n = cold.len();
            let mut requests = Vec::with_capacity(n * SCATTER);
            for i in 0..n {
                requests.push(cold[i].clone());
                for r in 0..SCATTER - 1 {
                    let back = NEAR.start + (i + 7 * r) % NEAR.len();
                    requests.push(cold[(i + n - back) % n].clone());
                }
            }
            requests
        })
        .collect();
    // A scattered miss of any algorithm costs at least what one of HS256 (the cheapest to
    // verify) does, and more than a hit, and some but not all requests miss: figures that say
    // otherwise caught the service in a passing state, and are measured again, all of them.
    let mut scattered = None;
    let mut last = f64::NAN;
    for attempt in 1..=RETRIES {
        let probe = "HTTP: /v1/authz, cached tokens, in the service of the scattered misses";
        progress(probe);
        let cached = settle(probe, progress, || {
            Ok(measure(&missing, hits.clone(), slots.scattered)?.us_per_request)
        })?;
        let mut points = Vec::new();
        for (alg, requests) in ALGORITHMS.iter().zip(&patterns) {
            let probe = format!("HTTP: /v1/authz, one new {alg} token in {SCATTER} requests");
            progress(&probe);
            let mut seen = Vec::new();
            let batching0 = missing.batching();
            let us = settle(&probe, progress, || {
                let (hits0, verdicts0) = missing.verdicts();
                let sample = measure(&missing, requests.clone(), slots.scattered)?;
                let (hits1, verdicts1) = missing.verdicts();
                seen.push(1.0 - (hits1 - hits0) as f64 / (verdicts1 - verdicts0).max(1) as f64);
                Ok(sample.us_per_request)
            })?;
            let batching1 = missing.batching();
            let (batches, jobs, lanes) = (
                batching1.0 - batching0.0,
                batching1.1 - batching0.1,
                batching1.2 - batching0.2,
            );
            progress(&format!(
                "{probe}: {:.2} jobs a batch, {:.1} % of them vectorised",
                jobs as f64 / batches.max(1) as f64,
                100.0 * lanes as f64 / jobs.max(1) as f64
            ));
            // The ratio of the estimates the figure is made of: the last two.
            let tail = &seen[seen.len().saturating_sub(2)..];
            let miss = tail.iter().sum::<f64>() / tail.len().max(1) as f64;
            points.push(MissPoint { miss, us });
        }
        let per_miss = |p: &MissPoint| (p.us.us - cached.us) / p.miss;
        let reference = per_miss(&points[HS256]);
        let cheapest = points.iter().map(per_miss).fold(f64::INFINITY, f64::min);
        let ratios = points.iter().all(|p| p.miss > 0.0 && p.miss < 1.0);
        if ratios && reference > 0.0 && reference.is_finite() && cheapest >= reference {
            scattered = Some((cached, points));
            break;
        }
        last = cheapest.min(reference);
        if attempt < RETRIES {
            progress(&format!(
                "HTTP: /v1/authz, scattered misses: {last:.2} µs a miss ({reference:.2} µs for \
                 HS256): noise, measuring again"
            ));
        }
    }
    // Not a reason to refuse the calibration: without them the model costs every miss as
    // misses in quantity do (which under-costs lone misses where the vectorised backend is
    // loaded), and says so.
    let (scattered_cached, authz_scattered) = match scattered {
        Some((cached, points)) => (Some(cached), points.into_iter().map(Some).collect()),
        None => {
            progress(&format!(
                "HTTP: /v1/authz, scattered misses: no steady figures in {RETRIES} tries \
                 (the last {last:.2} µs a miss): left out; the plan costs every miss as \
                 misses in quantity do"
            ));
            (None, vec![None; ALGORITHMS.len()])
        }
    };

    drop(missing);

    let cached = Server::start(config(jwks_path, CacheConfig::default())?, server_core)
        .map_err(CalibrateError::Server)?;
    let host = cached.addr().to_string();
    let probe = "HTTP: /v1/verify, 1 and 64 cached tokens per request";
    progress(probe);
    let one: Vec<Box<[u8]>> = es256[..BATCH]
        .iter()
        .map(|t| verify(&host, std::slice::from_ref(t)))
        .collect();
    check(&cached, &one[0], Some(1))?;
    let many = verify(&host, &es256[..BATCH]);
    check(&cached, &many, Some(BATCH))?;
    // Derived: the part per token is the difference over 63 tokens, the fixed part what is
    // left of one token's request. Both must come out positive; else measured again.
    let b = BATCH as f64;
    let mut derived = None;
    let mut last = f64::NAN;
    for _ in 0..RETRIES {
        let one = settle(probe, progress, || {
            Ok(measure_batches(&cached, one.clone(), slots.verify_one)?.us_per_request)
        })?;
        let many = settle(probe, progress, || {
            Ok(measure_batches(&cached, vec![many.clone()], slots.verify_many)?.us_per_request)
        })?;
        let per_token = Estimate::new(
            (many.us - one.us) / (b - 1.0),
            (many.spread_us + one.spread_us) / (b - 1.0),
        );
        let fixed = Estimate::new(one.us - per_token.us, one.spread_us + per_token.spread_us);
        if per_token.us > 0.0 && fixed.us > 0.0 {
            derived = Some((fixed, per_token));
            break;
        }
        last = per_token.us.min(fixed.us);
        progress(&format!(
            "{probe}: a negative figure ({:.2} µs fixed, {:.2} µs per token): noise, \
             measuring again",
            fixed.us, per_token.us
        ));
    }
    let (verify_fixed, verify_per_token) = derived.ok_or(CalibrateError::Unstable {
        probe: probe.to_string(),
        tries: RETRIES,
        last,
    })?;

    let probe = "HTTP: /v1/authz, cached tokens";
    progress(probe);
    let cached_requests: Vec<Box<[u8]>> = es256[..BATCH].iter().map(|t| authz(&host, t)).collect();
    let mut server_busy = f64::NAN;
    let authz_cached = settle(probe, progress, || {
        let sample = measure(&cached, cached_requests.clone(), slots.authz_cached)?;
        server_busy = sample.busy;
        Ok(sample.us_per_request)
    })?;

    // New tokens (signed now, numbered past every token signed so far, enough for the whole
    // estimate at twice the rate expected, twice more after an estimate that ran out), each
    // followed by `every - 1` hits on tokens first sent `REUSE`, 2 × `REUSE`, ... steps
    // earlier, so that misses come one at a time and hits spread over many tokens, as in
    // traffic from many users.
    let numbered = std::cell::Cell::new(TOKENS);
    let fresh = |count: usize| -> Result<Vec<String>, CalibrateError> {
        let first = numbered.get();
        numbered.set(first + count);
        reference
            .tokens(first..first + count, now)
            .map_err(CalibrateError::Keys)
    };
    let scattered = |every: usize, count: usize| -> Result<Vec<Box<[u8]>>, CalibrateError> {
        let cold: Vec<Box<[u8]>> = fresh(count)?.iter().map(|t| authz(&host, t)).collect();
        let mut requests = Vec::with_capacity(count * every);
        for i in 0..count {
            requests.push(cold[i].clone());
            for r in 1..every {
                // Before the first tokens have been sent often enough: the first token, which
                // the check below cached.
                let earlier = i.saturating_sub(r * REUSE);
                requests.push(cold[earlier].clone());
            }
        }
        Ok(requests)
    };
    // At least the cost of every token missing as HS256 tokens cycling did: the rate to sign
    // for errs high.
    let cycling_us = authz_miss_us[HS256].us.min(2.0 * authz_cached.us);
    // More misses never make a request cheaper: points that fall with the miss ratio beyond
    // their spreads caught the daemon in a passing state (seen here: every token new at 14.6
    // µs a request, one in two at 15.8 µs, each settled within 1 %, where other runs gave
    // 17 to 18 µs for every token new); they are measured again, all of them.
    let mut authz_new = Vec::new();
    for attempt in 1..=RETRIES {
        authz_new.clear();
        for every in PROBES {
            let probe = format!("HTTP: /v1/authz, one new HS256 token in {every} requests");
            progress(&probe);
            let miss = 1.0 / every as f64;
            let us = authz_cached.us + miss * (cycling_us - authz_cached.us).max(0.0);
            let mut margin = 2.0;
            let mut seen = Vec::new();
            let cost = settle(&probe, progress, || {
                let count =
                    (margin * slots.probe.as_secs_f64() * 1e6 / us * miss) as usize + CONNECTIONS;
                let requests = scattered(every, count)?;
                check(&cached, &requests[0], None)?;
                let (hits0, verdicts0) = cached.verdicts();
                let sample = measure(&cached, requests, slots.probe)?;
                let (hits1, verdicts1) = cached.verdicts();
                let ratio = 1.0 - (hits1 - hits0) as f64 / (verdicts1 - verdicts0).max(1) as f64;
                if every == 1 && ratio < ALL_NEW {
                    // The tokens ran out and came round again as hits: not this probe's figure.
                    margin *= 2.0;
                    return Ok(f64::NAN);
                }
                seen.push(if every == 1 { 1.0 } else { ratio });
                Ok(sample.us_per_request)
            })?;
            // The ratio of the estimates the figure is made of: the last two (or all).
            let tail = &seen[seen.len().saturating_sub(2)..];
            let miss = tail.iter().sum::<f64>() / tail.len().max(1) as f64;
            if !(miss > authz_new.last().map_or(0.0, |p: &MissPoint| p.miss) && miss <= 1.0) {
                return Err(CalibrateError::Unstable {
                    probe,
                    tries: MAX_REPEATS,
                    last: miss,
                });
            }
            authz_new.push(MissPoint { miss, us: cost });
        }
        match falling(&authz_new) {
            None => break,
            Some(w) => {
                progress(&format!(
                    "HTTP: /v1/authz, new HS256 tokens: {:.2} µs a request at {:.0} % misses, \
                     {:.2} µs at {:.0} %: noise, measuring again",
                    w[0].us.us,
                    w[0].miss * 100.0,
                    w[1].us.us,
                    w[1].miss * 100.0
                ));
                if attempt == RETRIES {
                    return Err(CalibrateError::Unstable {
                        probe: "HTTP: /v1/authz, new HS256 tokens".into(),
                        tries: RETRIES,
                        last: w[1].us.us - w[0].us.us,
                    });
                }
            }
        }
    }

    // Batches of new tokens: what a token costs more than a cached one when it misses.
    let probe = "HTTP: /v1/verify, 64 new HS256 tokens per request";
    progress(probe);
    let every_new = authz_new.last().map_or(cycling_us, |p| p.us.us);
    let batch_us = verify_fixed.us + b * (verify_per_token.us + every_new - authz_cached.us);
    let mut margin = 2.0;
    let verify_miss = settle(probe, progress, || {
        let batches = (margin * slots.verify_miss.as_secs_f64() * 1e6 / batch_us) as usize
            + 2 * BATCH_CONNECTIONS;
        // Checked with a batch of its own: one sent again would be a batch of hits.
        check(&cached, &verify(&host, &fresh(BATCH)?), Some(BATCH))?;
        let tokens = fresh(batches * BATCH)?;
        let requests: Vec<Box<[u8]>> = tokens.chunks(BATCH).map(|c| verify(&host, c)).collect();
        let (hits0, verdicts0) = cached.verdicts();
        let sample = measure_batches(&cached, requests, slots.verify_miss)?;
        let (hits1, verdicts1) = cached.verdicts();
        let ratio = 1.0 - (hits1 - hits0) as f64 / (verdicts1 - verdicts0).max(1) as f64;
        if ratio < ALL_NEW {
            margin *= 2.0;
            return Ok(f64::NAN);
        }
        // Per token, beyond what a batch of cached tokens costs.
        Ok((sample.us_per_request - verify_fixed.us) / b - verify_per_token.us)
    })?;
    let verify_miss = Estimate::new(
        verify_miss.us,
        verify_miss.spread_us + verify_fixed.spread_us / b + verify_per_token.spread_us,
    );
    drop(cached);

    Ok(Http {
        cost: HttpCost {
            authz_cached_us: authz_cached,
            reference: ALGORITHMS[HS256].name().to_string(),
            authz_new,
            scattered_cached_us: scattered_cached,
            verify_fixed_us: verify_fixed,
            verify_per_token_us: verify_per_token,
            verify_miss_us: verify_miss,
            server_busy,
            connections: load.connections,
            client_threads: load.client_cores.len().max(1),
            server_core: server_core.map(|c| c.id),
        },
        authz_miss_us,
        authz_scattered,
    })
}

/// Two neighbouring points whose request cost falls as the miss ratio grows, beyond their
/// spreads, if any.
fn falling(points: &[MissPoint]) -> Option<&[MissPoint]> {
    points
        .windows(2)
        .find(|w| w[1].us.us + w[1].us.spread_us < w[0].us.us - w[0].us.spread_us)
}

/// The service's configuration: quick mode for the calibration issuer, one engine worker, a
/// client for `/v1/verify`, and the given cache.
fn config(jwks: &std::path::Path, cache: CacheConfig) -> Result<server::Config, CalibrateError> {
    let path = jwks
        .to_str()
        .ok_or_else(|| CalibrateError::Setup("a temporary path that is not UTF-8".into()))?;
    let issuer = server::config::IssuerSpec {
        issuer: fixtures::ISSUER.into(),
        audiences: vec![fixtures::AUDIENCE.to_string()],
        ..server::config::IssuerSpec::default()
    };
    let mut config = server::Config::quick(([127, 0, 0, 1], 0).into(), path, issuer)
        .map_err(|e| CalibrateError::Setup(e.to_string()))?;
    config.engine = EngineConfig {
        workers: 1,
        pin: true,
        cache,
        ..EngineConfig::default()
    };
    config.clients = vec![server::config::Client::caller(
        CLIENT_ID,
        // Checked once, then remembered: cheap is enough.
        server::SecretHash::new(CLIENT_SECRET.as_bytes(), 1000)
            .map_err(|e| CalibrateError::Setup(e.to_string()))?,
        &[server::config::Permission::Introspect],
    )];
    // A store of its own beside the key set: a calibration never touches the daemon's state.
    config.store.backend = store_beside(jwks);
    Ok(config)
}

fn store_beside(jwks: &std::path::Path) -> server::config::StoreBackend {
    server::config::StoreBackend::Sqlite {
        path: jwks.with_extension("store.sqlite3"),
    }
}

/// `GET /v1/authz` as the load harness sends it.
fn authz(host: &str, token: &str) -> Box<[u8]> {
    format!("GET /v1/authz HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\r\n")
        .into_bytes()
        .into()
}

/// `POST /v1/verify` with these tokens, as the load harness sends it.
fn verify(host: &str, tokens: &[String]) -> Box<[u8]> {
    let mut body = String::from("{\"tokens\":[");
    for (i, t) in tokens.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push('"');
        body.push_str(t);
        body.push('"');
    }
    body.push_str("]}");
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
    format!(
        "POST /v1/verify HTTP/1.1\r\nHost: {host}\r\nAuthorization: Basic {basic}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
    .into()
}

/// Sends `request` once: it must get 200 and, for `/v1/verify`, `active: true` for each of
/// its `tokens`.
fn check(server: &Server, request: &[u8], tokens: Option<usize>) -> Result<(), CalibrateError> {
    let answer = load::request_once(server.addr(), request).map_err(CalibrateError::Load)?;
    if answer.status != 200 {
        return Err(CalibrateError::Verify(format!(
            "the service answered {} to a valid token",
            answer.status
        )));
    }
    if let Some(n) = tokens {
        let active = answer.verdicts().map_or(0, |v| v.active as usize);
        if active != n {
            return Err(CalibrateError::Verify(format!(
                "/v1/verify found {active} of {n} valid tokens active"
            )));
        }
    }
    Ok(())
}

/// A directory for the key set file, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn create() -> Result<TempDir, CalibrateError> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path =
            std::env::temp_dir().join(format!("tessera-calibrate-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&path)
            .map_err(|e| CalibrateError::Setup(format!("{}: {e}", path.display())))?;
        Ok(TempDir(path))
    }

    /// Writes `name` (mode 0600: the key set holds the HMAC secret).
    fn write(&self, name: &str, bytes: &[u8]) -> Result<PathBuf, CalibrateError> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let path = self.0.join(name);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| f.write_all(bytes))
            .map_err(|e| CalibrateError::Setup(format!("{}: {e}", path.display())))?;
        Ok(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// This machine: CPU model, cores this process may use, kernel release.
fn machine() -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    Machine {
        cpu,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        kernel,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_leaves_room_for_setup() {
        let s = Slots::of(Duration::from_secs(30).div_f64(EXPECTED_REPEATS));
        let once = s.single * 6
            + s.batched * 6
            + s.cache_hit
            + s.authz_cached
            + s.verify_one
            + s.verify_many
            + s.authz_miss * 6
            + s.verify_miss
            + s.probe * PROBES.len() as u32;
        assert!(
            once.mul_f64(EXPECTED_REPEATS) < Duration::from_secs(24),
            "{once:?}"
        );
        // The probes of new tokens end with every token new.
        assert_eq!(PROBES.last(), Some(&1));
        assert!(PROBES.windows(2).all(|w| w[0] > w[1]));
    }

    #[test]
    fn regression_a_request_cost_falling_with_more_misses_is_noise() {
        let point = |miss: f64, us: f64, spread_us: f64| MissPoint {
            miss,
            us: Estimate::new(us, spread_us),
        };
        // As seen: every token new cheaper than one in two, each settled within 1 %.
        let seen = [
            point(0.1, 9.14, 0.15),
            point(0.5, 15.77, 0.19),
            point(1.0, 14.56, 0.15),
        ];
        assert_eq!(falling(&seen).map(|w| w[1].miss), Some(1.0));
        // Rising, or falling within the spreads: kept.
        let rising = [
            point(0.1, 9.66, 0.06),
            point(0.5, 13.55, 1.29),
            point(1.0, 17.27, 0.21),
        ];
        assert!(falling(&rising).is_none());
        let within = [point(0.5, 13.6, 1.0), point(1.0, 13.0, 0.5)];
        assert!(falling(&within).is_none());
        assert!(falling(&[]).is_none());
    }

    #[test]
    fn the_algorithm_indices_match() {
        assert_eq!(ALGORITHMS[HS256], jose::Algorithm::HS256);
        assert_eq!(ALGORITHMS[ES256], jose::Algorithm::ES256);
    }
}
