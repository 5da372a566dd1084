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
//!    `/v1/authz` per algorithm and `/v1/verify` with 64 EdDSA tokens. A service with the
//!    default cache: `/v1/verify` with 1 and 64 cached tokens; then, back to back, `/v1/authz`
//!    with cached tokens, with one new EdDSA token in 10 requests and in 2 (the others hits on
//!    tokens sent earlier), with new EdDSA tokens only, and (on the first service) with EdDSA
//!    tokens cycling through its small cache: what a miss costs when misses are scattered
//!    among hits, and what a token never seen before costs more, against neighbours measured
//!    moments apart. The service's CPU time is read per thread, so the client's is not counted.
//!
//! Steps 2 and 3 run twice and the figures are averaged. Every figure is CPU time, not
//! elapsed time, so a machine shared with other work skews it less (cache and core sharing
//! still do); the CPU time other processes used meanwhile is recorded.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use core_affinity::CoreId;
use engine::{CacheConfig, Engine, EngineConfig};
use server::unix_now;

use crate::calibration::{
    AlgorithmCost, Calibration, CalibrationError, HttpCost, Machine, MissRatePoint, FORMAT,
};
use crate::cpu::{self, Clock};
use crate::fixtures::{self, FixtureError, Signer};
use crate::load::{self, Load, LoadError, Server};
use crate::stats::median;
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
/// Distinct tokens for `/v1/verify` with misses: 2 × [`BATCH_CONNECTIONS`] batches.
const BATCH_TOKENS: usize = 2 * BATCH_CONNECTIONS * BATCH;
/// Most client threads.
const CLIENT_THREADS: usize = 4;
/// Measurement passes.
const PASSES: u32 = 2;
/// Miss ratios probed on `/v1/authz` (one miss in this many requests), besides every one.
const PROBES: [usize; 2] = [10, 2];
/// Steps between a token's first sending and its next in the miss-ratio probes: several times
/// the requests in flight, so that its verdict is cached by then.
const REUSE: usize = 4 * CONNECTIONS;
/// Where ES256 and EdDSA are in [`ALGORITHMS`].
const ES256: usize = 3;
const EDDSA: usize = 5;
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
        }
    }
}

impl std::error::Error for CalibrateError {}

/// Progress reports: one line per step.
pub type Progress<'a> = &'a mut dyn FnMut(&str);

/// How a pass's budget is shared: fractions of it per measurement. What is left covers key
/// generation, signing and starting the services.
struct Slots {
    single: Duration,
    batched: Duration,
    cache_hit: Duration,
    authz_cached: Duration,
    verify_one: Duration,
    verify_many: Duration,
    authz_miss: Duration,
    verify_miss: Duration,
    /// Each miss-ratio probe, and the all-miss reference next to them.
    probe: Duration,
}

impl Slots {
    fn of(budget: Duration) -> Slots {
        let part = |f: f64| budget.mul_f64(f);
        Slots {
            single: part(0.012),
            batched: part(0.012),
            cache_hit: part(0.01),
            authz_cached: part(0.09),
            verify_one: part(0.04),
            verify_many: part(0.05),
            authz_miss: part(0.045),
            verify_miss: part(0.04),
            probe: part(0.045),
        }
    }
}

/// Measures this machine within about `budget` (at least [`MIN_BUDGET`]; 30 s gives steady
/// figures, 10 s rough ones).
pub fn calibrate(budget: Duration, progress: Progress<'_>) -> Result<Calibration, CalibrateError> {
    let started = Instant::now();
    let budget = budget.max(MIN_BUDGET);
    let slots = Slots::of(budget / PASSES);
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
    // Two passes, their figures averaged: the speed of a shared or virtual machine drifts over
    // seconds, and each quantity is then sampled at two moments.
    let mut passes = Vec::new();
    for pass in 1..=PASSES {
        progress(&format!(
            "pass {pass} of {PASSES}: verification in the calling thread, in an engine worker, \
             cache hits"
        ));
        let in_process = std::thread::scope(|s| {
            std::thread::Builder::new()
                .name("tcal-verify".into())
                .spawn_scoped(s, || {
                    if let Some(core) = server_core {
                        core_affinity::set_for_current(core);
                    }
                    in_process(&jwks, &tokens, now, &slots, clock)
                })
                .map_err(|e| CalibrateError::Setup(format!("starting a thread: {e}")))?
                .join()
                .map_err(|_| CalibrateError::Setup("the measuring thread panicked".into()))?
        })?;
        let mut say = |step: &str| progress(&format!("pass {pass} of {PASSES}: {step}"));
        let setup = HttpSetup {
            jwks_path: &jwks_path,
            tokens: &tokens,
            probe_signer: &signers[EDDSA],
            now,
            slots: &slots,
            server_core,
            load: &load,
        };
        let http = http(&setup, &in_process, &mut say)?;
        passes.push((in_process, http));
    }
    drop(dir);

    let mean = |f: &dyn Fn(&(InProcess, Http)) -> f64| {
        passes.iter().map(f).sum::<f64>() / passes.len() as f64
    };
    let algorithms = ALGORITHMS
        .iter()
        .enumerate()
        .map(|(i, alg)| AlgorithmCost {
            alg: alg.name().to_string(),
            single_us: mean(&|p| p.0.single_us[i]),
            batched_us: mean(&|p| p.0.batched_us[i]),
            authz_miss_us: mean(&|p| p.1.authz_miss_us[i]),
        })
        .collect();
    let first = &passes[0].1.cost;
    let mut http = HttpCost {
        authz_cached_us: mean(&|p| p.1.cost.authz_cached_us),
        verify_fixed_us: mean(&|p| p.1.cost.verify_fixed_us),
        verify_per_token_us: mean(&|p| p.1.cost.verify_per_token_us),
        batch_miss_overhead_us: mean(&|p| p.1.cost.batch_miss_overhead_us),
        new_token_extra_us: mean(&|p| p.1.cost.new_token_extra_us),
        miss_rate_extra: Vec::new(),
        server_busy: mean(&|p| p.1.cost.server_busy),
        connections: first.connections,
        client_threads: first.client_threads,
        server_core: first.server_core,
    };
    for k in 0..PROBES.len() {
        let points: Vec<&MissRatePoint> = passes
            .iter()
            .filter_map(|p| p.1.probes[k].as_ref())
            .collect();
        if points.is_empty() {
            continue;
        }
        let n = points.len() as f64;
        http.miss_rate_extra.push(MissRatePoint {
            miss: points.iter().map(|p| p.miss).sum::<f64>() / n,
            extra_us: points.iter().map(|p| p.extra_us).sum::<f64>() / n,
        });
    }
    http.miss_rate_extra
        .sort_by(|a, b| a.miss.total_cmp(&b.miss));
    http.miss_rate_extra.dedup_by(|a, b| a.miss == b.miss);
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
        cache_hit_us: mean(&|p| p.0.cache_hit_us),
        http,
    };
    // Catches a zero or non-finite figure (a window where nothing ran) before it is saved.
    Calibration::from_json(&cal.to_json()).map_err(CalibrateError::Implausible)
}

/// The in-process figures, per algorithm in [`ALGORITHMS`] order.
struct InProcess {
    single_us: Vec<f64>,
    batched_us: Vec<f64>,
    cache_hit_us: f64,
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
        let us = per_op(clock, slots.single, || {
            let _ = std::hint::black_box(jose::jwt::verify(
                &tokens[i % tokens.len()],
                &keys,
                &validation,
                now,
            ));
            i += 1;
        });
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
            batched_us.push(median(&parts).unwrap_or(f64::NAN));
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
                (clock.this_thread() - cpu) as f64 / 1e3 / calls as f64
            })
            .collect();
        median(&parts).unwrap_or(f64::NAN)
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
            (clock.this_thread() - cpu) as f64 / 1e3 / n as f64
        })
        .collect();
    median(&parts).unwrap_or(f64::NAN)
}

struct Http {
    /// Without `miss_rate_extra`: see `probes`.
    cost: HttpCost,
    authz_miss_us: Vec<f64>,
    /// Per entry of [`PROBES`], if its miss ratio could be measured.
    probes: Vec<Option<MissRatePoint>>,
}

/// What the HTTP measurements work with.
struct HttpSetup<'a> {
    jwks_path: &'a std::path::Path,
    /// Per algorithm of [`ALGORITHMS`].
    tokens: &'a [Vec<String>],
    /// Signs the new tokens of the miss-ratio probes.
    probe_signer: &'a Signer,
    now: i64,
    slots: &'a Slots,
    server_core: Option<CoreId>,
    load: &'a Load,
}

fn http(
    setup: &HttpSetup<'_>,
    in_process: &InProcess,
    progress: Progress<'_>,
) -> Result<Http, CalibrateError> {
    let HttpSetup {
        jwks_path,
        tokens,
        probe_signer,
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
    let eddsa = &tokens[EDDSA];

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
        progress(&format!("HTTP: /v1/authz, every {alg} token a cache miss"));
        let requests: Vec<Box<[u8]>> = tokens.iter().map(|t| authz(&host, t)).collect();
        check(&missing, &requests[0], None)?;
        authz_miss_us.push(measure(&missing, requests, slots.authz_miss)?.us_per_request);
    }
    progress("HTTP: /v1/verify, 64 EdDSA cache misses per request");
    // Twice as many distinct batches as connections: a batch must not be in flight twice, or
    // its second copy finds the first one's verdicts in the small cache.
    let batch_tokens = probe_signer
        .tokens(TOKENS..TOKENS + BATCH_TOKENS, now)
        .map_err(CalibrateError::Keys)?;
    let batches: Vec<Box<[u8]>> = batch_tokens
        .chunks(BATCH)
        .map(|c| verify(&host, c))
        .collect();
    check(&missing, &batches[0], Some(BATCH))?;
    let verify_miss = measure_batches(&missing, batches, slots.verify_miss)?;

    progress("HTTP: /v1/verify, 1 and 64 cached tokens per request");
    let cached = Server::start(config(jwks_path, CacheConfig::default())?, server_core)
        .map_err(CalibrateError::Server)?;
    let host = cached.addr().to_string();
    let one: Vec<Box<[u8]>> = es256[..BATCH]
        .iter()
        .map(|t| verify(&host, std::slice::from_ref(t)))
        .collect();
    check(&cached, &one[0], Some(1))?;
    let verify_one = measure_batches(&cached, one, slots.verify_one)?;
    let many = verify(&host, &es256[..BATCH]);
    check(&cached, &many, Some(BATCH))?;
    let verify_many = measure_batches(&cached, vec![many], slots.verify_many)?;

    progress("HTTP: /v1/authz, cached tokens");
    let authz_cached = measure(
        &cached,
        es256[..BATCH].iter().map(|t| authz(&host, t)).collect(),
        slots.authz_cached,
    )?;

    // Scattered misses: new EdDSA tokens (signed now, numbered past every token signed so far,
    // enough for the whole measurement at twice the rate the figures so far predict), each
    // followed by `every - 1` hits on tokens first sent `REUSE`, 2 × `REUSE`, ... steps
    // earlier, so that misses come one at a time and hits spread over many tokens, as in
    // traffic from many users. Then new tokens only: the reference the probes are compared
    // with, measured moments apart.
    let mut numbered = TOKENS + BATCH_TOKENS;
    let mut scattered = |every: usize, us: f64| -> Result<Vec<Box<[u8]>>, CalibrateError> {
        let miss = 1.0 / every as f64;
        let count = (2.0 * slots.probe.as_secs_f64() * 1e6 / us * miss) as usize + CONNECTIONS;
        let cold: Vec<Box<[u8]>> = probe_signer
            .tokens(numbered..numbered + count, now)
            .map_err(CalibrateError::Keys)?
            .iter()
            .map(|t| authz(&host, t))
            .collect();
        numbered += count;
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
    let eddsa_miss = authz_miss_us[EDDSA];
    let mut seen = Vec::new();
    for every in PROBES.into_iter().chain([1]) {
        progress(&format!(
            "HTTP: /v1/authz, one new EdDSA token in {every} requests"
        ));
        let miss = 1.0 / every as f64;
        let us = authz_cached.us_per_request + miss * (eddsa_miss - authz_cached.us_per_request);
        let requests = scattered(every, us)?;
        check(&cached, &requests[0], None)?;
        let (hits0, verdicts0) = cached.verdicts();
        let sample = measure(&cached, requests, slots.probe)?;
        let (hits1, verdicts1) = cached.verdicts();
        let ratio = 1.0 - (hits1 - hits0) as f64 / (verdicts1 - verdicts0).max(1) as f64;
        seen.push((ratio, sample.us_per_request));
    }
    drop(cached);
    // Right after the reference (new EdDSA tokens only), the same kind of miss on tokens that
    // cycle through the small cache: what a token never seen before costs more.
    progress("HTTP: /v1/authz, EdDSA tokens cycling through a small cache");
    let host = missing.addr().to_string();
    let cycling = eddsa.iter().map(|t| authz(&host, t)).collect();
    let cycling = measure(&missing, cycling, slots.probe)?.us_per_request;
    drop(missing);
    let cached_us = authz_cached.us_per_request;
    let (_, reference) = seen[PROBES.len()];
    let probes = seen[..PROBES.len()]
        .iter()
        .map(|&(miss, us)| {
            (miss > 0.0 && miss < 1.0).then(|| MissRatePoint {
                miss,
                extra_us: (us - cached_us) / miss - (reference - cached_us),
            })
        })
        .collect();

    let b = BATCH as f64;
    let per_token = (verify_many.us_per_request - verify_one.us_per_request) / (b - 1.0);
    let fixed = verify_one.us_per_request - per_token;
    let batch_miss_overhead = (verify_miss.us_per_request - verify_many.us_per_request) / b
        - in_process.batched_us[EDDSA];
    Ok(Http {
        cost: HttpCost {
            authz_cached_us: cached_us,
            verify_fixed_us: fixed,
            verify_per_token_us: per_token,
            batch_miss_overhead_us: batch_miss_overhead,
            new_token_extra_us: reference - cycling,
            miss_rate_extra: Vec::new(),
            server_busy: authz_cached.busy,
            connections: load.connections,
            client_threads: load.client_cores.len().max(1),
            server_core: server_core.map(|c| c.id),
        },
        authz_miss_us,
        probes,
    })
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
    config.clients = vec![server::config::Client {
        id: CLIENT_ID.into(),
        // Checked once, then remembered: cheap is enough.
        secret: server::SecretHash::new(CLIENT_SECRET.as_bytes(), 1000)
            .map_err(|e| CalibrateError::Setup(e.to_string()))?,
    }];
    Ok(config)
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
        let s = Slots::of(Duration::from_secs(30) / PASSES);
        let per_pass = s.single * 6
            + s.batched * 6
            + s.cache_hit
            + s.authz_cached
            + s.verify_one
            + s.verify_many
            + s.authz_miss * 6
            + s.verify_miss
            + s.probe * (PROBES.len() as u32 + 1);
        assert!(per_pass * PASSES < Duration::from_secs(24), "{per_pass:?}");
    }

    #[test]
    fn the_algorithm_indices_match() {
        assert_eq!(ALGORITHMS[ES256], jose::Algorithm::ES256);
        assert_eq!(ALGORITHMS[EDDSA], jose::Algorithm::EdDSA);
    }
}
