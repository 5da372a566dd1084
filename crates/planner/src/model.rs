//! The capacity model: from a [`Calibration`] and a [`Workload`] to CPU demand, cores and
//! latency.
//!
//! CPU time per request (microseconds on one core), with `m = 1 - h` the cache miss ratio,
//! `sᵢ` the share of algorithm `i` among the tokens and `r` the calibration's reference
//! algorithm (whose tokens never seen before it measured):
//!
//! - one token per request (`/v1/authz`, batch 1):
//!   `C(m) + m · Σᵢ sᵢ · (authz_missᵢ - authz_miss_r)`, where `C(m)` is the measured cost of a
//!   request when a share `m` of the tokens are new `r` tokens, read off the line through
//!   (0, `authz_cached`) and the measured points (`HttpCost::authz_new`, the last at m = 1),
//!   and the sum adds what each algorithm's miss costs more than the reference's, as measured
//!   when every token misses;
//! - `B` tokens per request (`/v1/verify`, batch B > 1):
//!   `verify_fixed + B · (verify_per_token + m · Σᵢ sᵢ · (verify_miss + batchedᵢ - batched_r))`.
//!
//! Every figure has a spread; the plan's spread is the sum, over the figures, of how far its
//! CPU time per request moves when that figure moves by its spread.
//!
//! Demand in cores is requests per second times that; cores = ⌈demand / utilisation target⌉.
//! Latency comes from an M/M/c queue (see [`crate::queue`]) with c = cores, λ = requests per
//! second and 1/μ = the mean CPU time per request.

use std::fmt;
use std::str::FromStr;

use jose::Algorithm;
use serde::Serialize;

use crate::calibration::Calibration;
use crate::queue;

/// Which algorithms sign the tokens, and in what shares (summing to 1).
#[derive(Clone, Debug, PartialEq)]
pub struct Mix {
    shares: Vec<(Algorithm, f64)>,
}

/// Why a mix was refused: the caller's input.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MixError {
    Empty,
    /// An item that is not `ALG=WEIGHT` (or a bare `ALG`, weight 1).
    Syntax(String),
    /// Not a JWS algorithm name (names are case-sensitive: `ES256`, `EdDSA`).
    UnknownAlgorithm(String),
    /// A weight that is not a positive number.
    Weight(String),
    Duplicate(Algorithm),
}

impl fmt::Display for MixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MixError::Empty => f.write_str("empty mix: give ALG=WEIGHT,... (RS256=50,ES256=50)"),
            MixError::Syntax(item) => write!(f, "{item:?} is not ALG=WEIGHT"),
            MixError::UnknownAlgorithm(name) => write!(
                f,
                "{name:?} is not a JWS algorithm (HS256, RS256, PS256, ES256, ES384, EdDSA, ...)"
            ),
            MixError::Weight(item) => write!(f, "{item:?}: the weight must be a positive number"),
            MixError::Duplicate(alg) => write!(f, "{alg} appears twice in the mix"),
        }
    }
}

impl std::error::Error for MixError {}

impl Mix {
    /// `RS256=50,ES256=30,EdDSA=20`: weights are relative (they need not sum to 100); a bare
    /// `ES256` is weight 1. Spaces around items are ignored.
    pub fn parse(text: &str) -> Result<Mix, MixError> {
        if text.trim().is_empty() {
            return Err(MixError::Empty);
        }
        let mut weights = Vec::new();
        for item in text.split(',').map(str::trim) {
            let (name, weight) = match item.split_once('=') {
                Some((name, weight)) => (name.trim(), weight.trim()),
                None => (item, "1"),
            };
            if name.is_empty() {
                return Err(MixError::Syntax(item.to_string()));
            }
            let alg = Algorithm::from_name(name)
                .ok_or_else(|| MixError::UnknownAlgorithm(name.to_string()))?;
            let weight: f64 = weight
                .parse()
                .map_err(|_| MixError::Weight(item.to_string()))?;
            weights.push((alg, weight));
        }
        Mix::new(&weights)
    }

    /// From relative weights.
    pub fn new(weights: &[(Algorithm, f64)]) -> Result<Mix, MixError> {
        if weights.is_empty() {
            return Err(MixError::Empty);
        }
        for (i, (alg, weight)) in weights.iter().enumerate() {
            if !(weight.is_finite() && *weight > 0.0) {
                return Err(MixError::Weight(format!("{alg}={weight}")));
            }
            if weights[..i].iter().any(|(a, _)| a == alg) {
                return Err(MixError::Duplicate(*alg));
            }
        }
        let total: f64 = weights.iter().map(|(_, w)| w).sum();
        Ok(Mix {
            shares: weights.iter().map(|&(a, w)| (a, w / total)).collect(),
        })
    }

    /// Each algorithm with its share, in the order given; the shares sum to 1.
    pub fn shares(&self) -> &[(Algorithm, f64)] {
        &self.shares
    }
}

impl FromStr for Mix {
    type Err = MixError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mix::parse(s)
    }
}

impl fmt::Display for Mix {
    /// As percentages: `RS256=50,ES256=30,EdDSA=20`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (alg, share)) in self.shares.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let pct = share * 100.0;
            if (pct - pct.round()).abs() < 1e-9 {
                write!(f, "{alg}={}", pct.round())?;
            } else {
                write!(f, "{alg}={pct:.2}")?;
            }
        }
        Ok(())
    }
}

/// The traffic to plan for.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    /// Tokens verified per second.
    pub rps: f64,
    pub mix: Mix,
    /// Share of tokens answered from the verified-token cache, 0 to 1.
    pub cache_hit: f64,
    /// Tokens per request: 1 is `/v1/authz` (forward-auth, one token per request); more is
    /// `POST /v1/verify` with that many tokens in each request.
    pub batch: u32,
    /// The latency the 99th percentile of requests must stay under, in milliseconds.
    pub p99_target_ms: Option<f64>,
}

/// Why there is no plan: the caller's input, or a calibration that lacks an algorithm.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq)]
pub enum PlanError {
    /// The calibration has no figures for this algorithm.
    NotCalibrated(Algorithm),
    /// Requests per second: a positive number.
    Rps(f64),
    /// The cache hit ratio: 0 to 1.
    CacheHit(f64),
    /// Tokens per request: at least 1.
    Batch,
    /// The utilisation target: more than 0, at most 1.
    Utilisation(f64),
    /// The p99 target: a positive number of milliseconds.
    P99Target(f64),
    /// Cores: at least 1.
    Cores,
    /// The calibration's reference algorithm has no figures (a file edited by hand).
    NoReference(String),
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::NotCalibrated(alg) => write!(f, "the calibration has no figures for {alg}"),
            PlanError::Rps(v) => write!(f, "requests per second {v}: must be a positive number"),
            PlanError::CacheHit(v) => write!(f, "cache hit ratio {v}: must be between 0 and 1"),
            PlanError::Batch => f.write_str("batch: at least 1 token per request"),
            PlanError::Utilisation(v) => {
                write!(f, "utilisation target {v}: must be above 0 and at most 1")
            }
            PlanError::P99Target(v) => write!(f, "p99 target {v} ms: must be a positive number"),
            PlanError::Cores => f.write_str("cores: at least 1"),
            PlanError::NoReference(alg) => {
                write!(
                    f,
                    "the calibration's reference algorithm {alg:?} has no figures"
                )
            }
        }
    }
}

impl std::error::Error for PlanError {}

/// A part of the CPU demand.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Share {
    /// `http` (parsing, routing, answering), `cache` (the lookup every token pays), or an
    /// algorithm name (verifying the tokens that miss the cache, and their hop to the engine).
    pub part: String,
    /// Share of the CPU demand, 0 to 1; the shares of a plan sum to 1.
    pub share: f64,
    /// CPU microseconds per request.
    pub us_per_request: f64,
    /// Cores this part keeps busy.
    pub cores: f64,
}

/// The answer: what the workload needs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plan {
    /// Tokens per second, as asked.
    pub rps: f64,
    /// The mix, in percent.
    pub mix: Vec<(String, f64)>,
    pub cache_hit: f64,
    pub batch: u32,
    /// `/v1/authz` or `/v1/verify`.
    pub endpoint: String,
    pub requests_per_s: f64,
    /// Mean CPU time per request and per token, microseconds on one core.
    pub cpu_us_per_request: f64,
    pub cpu_us_per_token: f64,
    /// How far `cpu_us_per_request` may be off, from the calibration's spreads: ± µs.
    pub cpu_us_per_request_spread: f64,
    /// CPU demand, in cores kept busy...
    pub demand_cores: f64,
    /// ...± this.
    pub demand_cores_spread: f64,
    pub utilisation_target: f64,
    /// Cores needed at the utilisation target...
    pub cores: u32,
    /// ...and if the CPU time per request is at the top of its spread.
    pub cores_high: u32,
    /// Utilisation on those cores.
    pub utilisation: f64,
    pub shares: Vec<Share>,
    /// Erlang C on those cores: the probability that a request waits.
    pub wait_probability: f64,
    /// Expected p99 latency on those cores, milliseconds (queueing + mean service).
    pub p99_ms: f64,
    pub p99_target_ms: Option<f64>,
    /// Whether `p99_ms` meets the target.
    pub p99_met: Option<bool>,
    /// The fewest cores whose p99 meets the target; absent without a target, or when the
    /// mean CPU time of one request already exceeds it.
    pub cores_for_p99: Option<u32>,
    /// Cores to provision: the larger of `cores` and `cores_for_p99`.
    pub recommended_cores: u32,
    /// Most tokens per second `recommended_cores` can verify (at 100 % busy)...
    pub max_rps: f64,
    /// ...at least this and at most this, from the spread of the CPU time per request.
    pub max_rps_low: f64,
    pub max_rps_high: f64,
}

/// CPU time per request, by part.
struct Costs {
    http_us: f64,
    cache_us: f64,
    algorithms: Vec<(Algorithm, f64)>,
}

impl Costs {
    fn total(&self) -> f64 {
        self.http_us + self.cache_us + self.algorithms.iter().map(|(_, c)| c).sum::<f64>()
    }
}

fn costs(cal: &Calibration, mix: &Mix, cache_hit: f64, batch: u32) -> Result<Costs, PlanError> {
    if !(0.0..=1.0).contains(&cache_hit) {
        return Err(PlanError::CacheHit(cache_hit));
    }
    if batch == 0 {
        return Err(PlanError::Batch);
    }
    let miss = 1.0 - cache_hit;
    let h = &cal.http;
    let reference = cal
        .reference()
        .map_err(|_| PlanError::NoReference(h.reference.clone()))?;
    let b = f64::from(batch);
    // What every token's miss costs at this ratio, beyond a cached request, with reference
    // tokens: read off the measured request costs (batch 1), or measured per token (batches).
    let reference_us = if batch == 1 {
        cal.authz_reference_us(miss) - h.authz_cached_us.us
    } else {
        b * miss * (h.verify_miss_us.us - reference.batched_us.us)
    };
    let mut algorithms = Vec::with_capacity(mix.shares().len());
    for &(alg, share) in mix.shares() {
        let a = cal.algorithm(alg).ok_or(PlanError::NotCalibrated(alg))?;
        let own = if batch == 1 {
            miss * cal.authz_difference_us(a, reference, miss)
        } else {
            b * miss * a.batched_us.us
        };
        algorithms.push((alg, share * (reference_us + own)));
    }
    let (http_us, cache_us) = if batch == 1 {
        let cache = cal.cache_hit_us.us.min(h.authz_cached_us.us);
        (h.authz_cached_us.us - cache, cache)
    } else {
        let cache = cal.cache_hit_us.us.min(h.verify_per_token_us.us);
        (
            h.verify_fixed_us.us + b * (h.verify_per_token_us.us - cache),
            b * cache,
        )
    };
    Ok(Costs {
        http_us,
        cache_us,
        algorithms,
    })
}

/// How far the CPU time per request moves when each figure of the calibration moves by its
/// spread, summed over the figures (each figure's error taken at its worst, none cancelling).
fn spread(cal: &Calibration, mix: &Mix, cache_hit: f64, batch: u32) -> Result<f64, PlanError> {
    let base = costs(cal, mix, cache_hit, batch)?.total();
    let count = cal.figures().len();
    let mut sum = 0.0;
    for k in 0..count {
        let mut up = cal.clone();
        if let Some((_, e)) = up.figures_mut().into_iter().nth(k) {
            e.us += e.spread_us;
        }
        sum += (costs(&up, mix, cache_hit, batch)?.total() - base).abs();
    }
    Ok(sum)
}

/// Tokens per second, with the range the calibration's spreads allow.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Throughput {
    pub rps: f64,
    /// With every cost at the top of its spread...
    pub low: f64,
    /// ...and at the bottom (infinite if the spread reaches zero cost).
    pub high: f64,
}

impl Throughput {
    fn of(tokens_per_request: f64, cores: f64, per_request: f64, spread: f64) -> Throughput {
        let at = |us: f64| {
            if us > 0.0 {
                cores * 1e6 / us * tokens_per_request
            } else {
                f64::INFINITY
            }
        };
        Throughput {
            rps: at(per_request),
            low: at(per_request + spread),
            high: at(per_request - spread),
        }
    }
}

/// The most tokens per second `cores` cores can verify, busy all the time, with this mix,
/// hit ratio and batch size.
pub fn max_rps(
    cal: &Calibration,
    mix: &Mix,
    cache_hit: f64,
    batch: u32,
    cores: u32,
) -> Result<Throughput, PlanError> {
    if cores == 0 {
        return Err(PlanError::Cores);
    }
    let per_request = costs(cal, mix, cache_hit, batch)?.total();
    let spread = spread(cal, mix, cache_hit, batch)?;
    Ok(Throughput::of(
        f64::from(batch),
        f64::from(cores),
        per_request,
        spread,
    ))
}

/// What `workload` needs on the calibrated machine, keeping cores at most `utilisation` busy
/// (0.7 is a common target: headroom for bursts and a short queue).
pub fn plan(cal: &Calibration, workload: &Workload, utilisation: f64) -> Result<Plan, PlanError> {
    if !(workload.rps.is_finite() && workload.rps > 0.0) {
        return Err(PlanError::Rps(workload.rps));
    }
    if !(utilisation > 0.0 && utilisation <= 1.0) {
        return Err(PlanError::Utilisation(utilisation));
    }
    if let Some(t) = workload.p99_target_ms {
        if !(t.is_finite() && t > 0.0) {
            return Err(PlanError::P99Target(t));
        }
    }
    let batch = workload.batch;
    let costs = costs(cal, &workload.mix, workload.cache_hit, batch)?;
    let per_request = costs.total();
    let per_request_spread = spread(cal, &workload.mix, workload.cache_hit, batch)?;
    let requests_per_s = workload.rps / f64::from(batch);
    let demand = requests_per_s * per_request / 1e6;
    let demand_spread = requests_per_s * per_request_spread / 1e6;
    // The epsilon keeps a demand of exactly n × utilisation at n cores despite rounding.
    let cores_for = |demand: f64| ((demand / utilisation) - 1e-9).ceil().max(1.0) as u32;
    let cores = cores_for(demand);
    let service_rate = 1e6 / per_request;
    let p99_ms =
        |servers: u32| 1e3 * queue::response_quantile(servers, requests_per_s, service_rate, 0.99);
    let p99 = p99_ms(cores);
    let cores_for_p99 = workload
        .p99_target_ms
        .and_then(|target| fewest_cores(demand, target, p99_ms, per_request / 1e3));
    let recommended = cores.max(cores_for_p99.unwrap_or(0));
    let throughput = Throughput::of(
        f64::from(batch),
        f64::from(recommended),
        per_request,
        per_request_spread,
    );

    let mut shares = vec![
        ("http".to_string(), costs.http_us),
        ("cache".to_string(), costs.cache_us),
    ];
    shares.extend(
        costs
            .algorithms
            .iter()
            .map(|(alg, us)| (alg.name().to_string(), *us)),
    );
    let shares = shares
        .into_iter()
        .map(|(part, us)| Share {
            part,
            share: us / per_request,
            us_per_request: us,
            cores: requests_per_s * us / 1e6,
        })
        .collect();
    Ok(Plan {
        rps: workload.rps,
        mix: workload
            .mix
            .shares()
            .iter()
            .map(|(a, s)| (a.name().to_string(), s * 100.0))
            .collect(),
        cache_hit: workload.cache_hit,
        batch,
        endpoint: if batch == 1 {
            "/v1/authz"
        } else {
            "/v1/verify"
        }
        .to_string(),
        requests_per_s,
        cpu_us_per_request: per_request,
        cpu_us_per_token: per_request / f64::from(batch),
        cpu_us_per_request_spread: per_request_spread,
        demand_cores: demand,
        demand_cores_spread: demand_spread,
        utilisation_target: utilisation,
        cores,
        cores_high: cores_for(demand + demand_spread),
        utilisation: demand / f64::from(cores),
        shares,
        wait_probability: queue::erlang_c(cores, demand),
        p99_ms: p99,
        p99_target_ms: workload.p99_target_ms,
        p99_met: workload.p99_target_ms.map(|t| p99 <= t),
        cores_for_p99,
        recommended_cores: recommended,
        max_rps: throughput.rps,
        max_rps_low: throughput.low,
        max_rps_high: throughput.high,
    })
}

/// The fewest cores whose p99 (`p99_ms`, falling with cores) is at most `target` ms, if any:
/// none when the mean service time (`service_ms`) alone is over it.
fn fewest_cores(
    demand: f64,
    target: f64,
    p99_ms: impl Fn(u32) -> f64,
    service_ms: f64,
) -> Option<u32> {
    if service_ms > target {
        return None;
    }
    // Stable from ⌊demand⌋ + 1; grow until met, then bisect.
    let mut lo = (demand.floor() as u32).saturating_add(1).max(1);
    if p99_ms(lo) <= target {
        return Some(lo);
    }
    let mut hi = lo;
    loop {
        hi = hi.saturating_mul(2);
        if p99_ms(hi) <= target {
            break;
        }
        if hi == u32::MAX {
            return None;
        }
        lo = hi;
    }
    // p99(lo) > target >= p99(hi).
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if p99_ms(mid) <= target {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(hi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calibration::tests::sample;

    fn mix(text: &str) -> Mix {
        Mix::parse(text).unwrap()
    }

    fn workload(rps: f64, text: &str, cache_hit: f64, batch: u32) -> Workload {
        Workload {
            rps,
            mix: mix(text),
            cache_hit,
            batch,
            p99_target_ms: None,
        }
    }

    #[test]
    fn mixes_parse_and_normalise() {
        let m = mix("RS256=50,ES256=30, EdDSA=20");
        assert_eq!(
            m.shares(),
            &[
                (Algorithm::RS256, 0.5),
                (Algorithm::ES256, 0.3),
                (Algorithm::EdDSA, 0.2)
            ]
        );
        assert_eq!(m.to_string(), "RS256=50,ES256=30,EdDSA=20");
        assert_eq!(mix("ES256").shares(), &[(Algorithm::ES256, 1.0)]);
        assert_eq!(mix("HS256=1,ES256=3").to_string(), "HS256=25,ES256=75");
        assert_eq!(
            mix("HS256=1,ES256=2").to_string(),
            "HS256=33.33,ES256=66.67"
        );
        assert_eq!("EdDSA=7".parse::<Mix>().unwrap(), mix("EdDSA=100"));
    }

    #[test]
    fn bad_mixes_are_refused_with_the_reason() {
        assert_eq!(Mix::parse(""), Err(MixError::Empty));
        assert_eq!(Mix::parse("  "), Err(MixError::Empty));
        assert_eq!(Mix::new(&[]), Err(MixError::Empty));
        assert!(matches!(Mix::parse("ES256=1,"), Err(MixError::Syntax(_))));
        assert!(matches!(Mix::parse("=5"), Err(MixError::Syntax(_))));
        assert_eq!(
            Mix::parse("es256=1"),
            Err(MixError::UnknownAlgorithm("es256".into()))
        );
        assert_eq!(
            Mix::parse("none=1"),
            Err(MixError::UnknownAlgorithm("none".into()))
        );
        for bad in [
            "ES256=0",
            "ES256=-1",
            "ES256=x",
            "ES256=",
            "ES256=inf",
            "ES256=NaN",
        ] {
            assert!(matches!(Mix::parse(bad), Err(MixError::Weight(_))), "{bad}");
        }
        assert_eq!(
            Mix::parse("ES256=1,RS256=1,ES256=2"),
            Err(MixError::Duplicate(Algorithm::ES256))
        );
    }

    #[test]
    fn shares_sum_to_one_and_add_up_to_the_demand() {
        let cal = sample();
        for (text, hit, batch) in [
            ("RS256=50,ES256=30,EdDSA=20", 0.9, 1),
            ("ES256", 0.0, 1),
            ("HS256=10,EdDSA=90", 1.0, 1),
            ("RS256=50,ES256=50", 0.5, 64),
        ] {
            let p = plan(&cal, &workload(10_000.0, text, hit, batch), 0.7).unwrap();
            let sum: f64 = p.shares.iter().map(|s| s.share).sum();
            assert!((sum - 1.0).abs() < 1e-12, "{text}: {sum}");
            let cores: f64 = p.shares.iter().map(|s| s.cores).sum();
            assert!((cores - p.demand_cores).abs() < 1e-9, "{text}");
            assert!(p.shares.iter().all(|s| s.share >= 0.0));
        }
    }

    #[test]
    fn the_cost_follows_the_formula() {
        let cal = sample();
        // All hits: the cached request.
        let p = plan(&cal, &workload(1000.0, "ES256", 1.0, 1), 0.7).unwrap();
        assert!((p.cpu_us_per_request - 20.0).abs() < 1e-12);
        // All misses: the measured miss.
        let p = plan(&cal, &workload(1000.0, "ES256", 0.0, 1), 0.7).unwrap();
        assert!((p.cpu_us_per_request - 110.0).abs() < 1e-12);
        // Half and half, two algorithms: 20 + 0.5 · (0.5 · 30 + 0.5 · 90).
        let p = plan(&cal, &workload(1000.0, "RS256=1,ES256=1", 0.5, 1), 0.7).unwrap();
        assert!((p.cpu_us_per_request - 50.0).abs() < 1e-12);
        // Scattered misses cost more: measured at 30 µs a request at half misses (the line
        // from 20 gave 26): 30 + 0.5 · (0.5 · 18 + 0.5 · 78).
        let mut slow = cal.clone();
        slow.http.authz_new.insert(
            0,
            crate::calibration::MissPoint {
                miss: 0.5,
                us: crate::calibration::Estimate::new(30.0, 0.0),
            },
        );
        let p = plan(&slow, &workload(1000.0, "RS256=1,ES256=1", 0.5, 1), 0.7).unwrap();
        assert!((p.cpu_us_per_request - 54.0).abs() < 1e-12);
        // ...and less than at all misses: 32 + 0.75 · 78 at 75 % misses, on the line to it.
        let p = plan(&slow, &workload(1000.0, "ES256", 0.25, 1), 0.7).unwrap();
        assert!((p.cpu_us_per_request - (31.0 + 0.75 * 78.0)).abs() < 1e-12);
        // New tokens cost more per batched miss: 30 + 10 · (2 + 8 + 78).
        let mut slow = cal.clone();
        slow.http.verify_miss_us.us = 8.0;
        let p = plan(&slow, &workload(1000.0, "ES256", 0.0, 10), 0.7).unwrap();
        assert!((p.cpu_us_per_request - 910.0).abs() < 1e-9);
        // A batch of 10, no hits: 30 + 10 · (2 + 1 · (80 + 1)).
        let p = plan(&cal, &workload(1000.0, "ES256", 0.0, 10), 0.7).unwrap();
        assert!((p.cpu_us_per_request - 860.0).abs() < 1e-9);
        assert!((p.cpu_us_per_token - 86.0).abs() < 1e-9);
        assert!((p.requests_per_s - 100.0).abs() < 1e-12);
        assert_eq!(p.endpoint, "/v1/verify");
    }

    #[test]
    fn cores_cover_the_demand_at_the_utilisation_target() {
        let cal = sample();
        // 20 µs per request: 35 000 requests/s are 0.7 cores, exactly one core at 0.7.
        let p = plan(&cal, &workload(35_000.0, "ES256", 1.0, 1), 0.7).unwrap();
        assert!((p.demand_cores - 0.7).abs() < 1e-12);
        assert_eq!(p.cores, 1);
        let p = plan(&cal, &workload(35_001.0, "ES256", 1.0, 1), 0.7).unwrap();
        assert_eq!(p.cores, 2);
        let p = plan(&cal, &workload(35_001.0, "ES256", 1.0, 1), 1.0).unwrap();
        assert_eq!(p.cores, 1);
        assert!(p.utilisation <= 1.0);
    }

    #[test]
    fn more_traffic_or_fewer_hits_never_needs_fewer_cores() {
        let cal = sample();
        let mut last = (0.0, 0);
        for rps in [1e3, 1e4, 5e4, 1e5, 1e6] {
            let p = plan(&cal, &workload(rps, "RS256=50,ES256=50", 0.8, 1), 0.7).unwrap();
            assert!(p.demand_cores > last.0 && p.cores >= last.1, "{rps}");
            last = (p.demand_cores, p.cores);
        }
        let mut last = (f64::INFINITY, u32::MAX);
        for hit in [0.0, 0.25, 0.5, 0.9, 1.0] {
            let p = plan(&cal, &workload(1e5, "ES256", hit, 1), 0.7).unwrap();
            assert!(p.demand_cores < last.0 && p.cores <= last.1, "{hit}");
            last = (p.demand_cores, p.cores);
        }
        // Batching spreads the fixed cost of a request.
        let one = plan(&cal, &workload(1e5, "ES256", 1.0, 1), 0.7).unwrap();
        let many = plan(&cal, &workload(1e5, "ES256", 1.0, 64), 0.7).unwrap();
        assert!(many.cpu_us_per_token < one.cpu_us_per_token);
    }

    #[test]
    fn max_rps_is_cores_over_the_cost() {
        let cal = sample();
        let m = mix("ES256");
        let rps = |hit, batch, cores| max_rps(&cal, &m, hit, batch, cores).unwrap().rps;
        assert!((rps(1.0, 1, 1) - 50_000.0).abs() < 1e-6);
        assert!((rps(1.0, 1, 4) - 200_000.0).abs() < 1e-6);
        assert!((rps(0.0, 1, 1) - 1e6 / 110.0).abs() < 1e-6);
        // Tokens per second with batches: 10 tokens per 860 µs.
        assert!((rps(0.0, 10, 1) - 1e7 / 860.0).abs() < 1e-6);
        // Without spreads, no range.
        let t = max_rps(&cal, &m, 0.0, 1, 1).unwrap();
        assert_eq!((t.low, t.high), (t.rps, t.rps));
        assert_eq!(max_rps(&cal, &m, 1.0, 1, 0), Err(PlanError::Cores));
    }

    #[test]
    fn the_p99_target_finds_the_fewest_cores() {
        let cal = sample();
        let mut w = workload(30_000.0, "ES256", 0.0, 1);
        // 110 µs per request: 3.3 cores busy.
        w.p99_target_ms = Some(0.5);
        let p = plan(&cal, &w, 0.7).unwrap();
        let needed = p.cores_for_p99.unwrap();
        let p99 = |c| 1e3 * queue::response_quantile(c, 30_000.0, 1e6 / 110.0, 0.99);
        assert!(p99(needed) <= 0.5);
        assert!(needed == 4 || p99(needed - 1) > 0.5);
        assert_eq!(p.recommended_cores, p.cores.max(needed));
        assert_eq!(p.p99_met, Some(p.p99_ms <= 0.5));
        // Under the service time itself: unreachable.
        w.p99_target_ms = Some(0.1);
        let p = plan(&cal, &w, 0.7).unwrap();
        assert_eq!(p.cores_for_p99, None);
        assert_eq!(p.p99_met, Some(false));
        // A loose target is met by the utilisation target's cores.
        w.p99_target_ms = Some(100.0);
        let p = plan(&cal, &w, 0.7).unwrap();
        assert_eq!(p.p99_met, Some(true));
        assert!(p.cores_for_p99.unwrap() <= p.cores);
        assert_eq!(p.recommended_cores, p.cores);
    }

    #[test]
    fn the_spreads_of_the_figures_add_up_in_the_plan() {
        let mut cal = sample();
        // ± 1 µs on the cached request, ± 2 µs on the every-token-new request, ± 3 µs on
        // ES256's miss when every token misses.
        cal.http.authz_cached_us.spread_us = 1.0;
        cal.http.authz_new[0].us.spread_us = 2.0;
        cal.algorithms[2].authz_miss_us.spread_us = 3.0;
        // All hits: only the cached request's spread counts.
        let p = plan(&cal, &workload(1000.0, "ES256", 1.0, 1), 0.7).unwrap();
        assert!((p.cpu_us_per_request_spread - 1.0).abs() < 1e-9);
        // All misses, ES256: 32 + (110 - 32): the reference's spread and ES256's (the
        // cached request's cancels out).
        let p = plan(&cal, &workload(1000.0, "ES256", 0.0, 1), 0.7).unwrap();
        assert!((p.cpu_us_per_request_spread - 5.0).abs() < 1e-9);
        // Half misses: 20 + 0.5 · (32 - 20) + 0.5 · (110 - 32), ES256's difference at 0.5
        // on the line from its scattered point (0.1) to every token missing (1), 4/9 of the
        // way: 0.5 · 1 + 0.5 · 2 + 0.5 · 4/9 · 3.
        let spread = 0.5 + 1.0 + 0.5 * 4.0 / 9.0 * 3.0;
        let p = plan(&cal, &workload(1000.0, "ES256", 0.5, 1), 0.7).unwrap();
        assert!((p.cpu_us_per_request_spread - spread).abs() < 1e-9);
        assert!((p.demand_cores_spread - 1000.0 * spread / 1e6).abs() < 1e-12);
        let t = max_rps(&cal, &mix("ES256"), 0.5, 1, 2).unwrap();
        // 65 ± 2.17 µs per request on 2 cores.
        assert!((t.rps - 2e6 / 65.0).abs() < 1e-6);
        assert!((t.low - 2e6 / (65.0 + spread)).abs() < 1e-6);
        assert!((t.high - 2e6 / (65.0 - spread)).abs() < 1e-6);
        assert!((p.max_rps_low - 1e6 / (65.0 + spread)).abs() < 1e-6);
        // A demand at the edge: more cores if the costs are at their top.
        let p = plan(&cal, &workload(10_500.0, "ES256", 0.5, 1), 0.7).unwrap();
        assert_eq!((p.cores, p.cores_high), (1, 2));
    }

    #[test]
    fn bad_workloads_are_refused() {
        let cal = sample();
        let ok = workload(1000.0, "ES256", 0.5, 1);
        let mut w = ok.clone();
        w.rps = 0.0;
        assert_eq!(plan(&cal, &w, 0.7), Err(PlanError::Rps(0.0)));
        let mut w = ok.clone();
        w.cache_hit = 1.5;
        assert_eq!(plan(&cal, &w, 0.7), Err(PlanError::CacheHit(1.5)));
        let mut w = ok.clone();
        w.batch = 0;
        assert_eq!(plan(&cal, &w, 0.7), Err(PlanError::Batch));
        let mut w = ok.clone();
        w.p99_target_ms = Some(-1.0);
        assert_eq!(plan(&cal, &w, 0.7), Err(PlanError::P99Target(-1.0)));
        assert_eq!(plan(&cal, &ok, 0.0), Err(PlanError::Utilisation(0.0)));
        assert_eq!(plan(&cal, &ok, 1.5), Err(PlanError::Utilisation(1.5)));
        let mut w = ok;
        w.mix = mix("PS256");
        assert_eq!(
            plan(&cal, &w, 0.7),
            Err(PlanError::NotCalibrated(Algorithm::PS256))
        );
    }
}
