//! What a calibration measured, as its JSON file holds it. Field names are the file format's;
//! keep them stable (`tessera capacity --calibration FILE` reads files written earlier).

use jose::Algorithm;
use serde::{Deserialize, Serialize};

/// Format version of [`Calibration`]. Format 3 gives each figure its spread and replaces
/// format 2's derived miss extras (`new_token_extra_us`, `miss_rate_extra`) with measured
/// request costs; format 4 adds each algorithm's scattered misses (`authz_scattered`). Older
/// files are refused ("calibrate again").
pub const FORMAT: u32 = 4;

/// The costs of one machine. Every figure is CPU time on one core, in microseconds, with its
/// spread.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub format: u32,
    pub machine: Machine,
    /// When it was measured: RFC 3339, UTC.
    pub date: String,
    /// The time asked for, and the time it took, in seconds.
    pub budget_s: f64,
    pub took_s: f64,
    /// How CPU time was read: `schedstat` (nanoseconds per thread) or `stat` (clock ticks per
    /// thread).
    pub clock: String,
    /// CPU time other processes used while this ran, in cores (busy time over elapsed time).
    /// Above about 0.1 they competed for the cores and the figures are suspect.
    pub other_load_cores: f64,
    /// Per algorithm.
    pub algorithms: Vec<AlgorithmCost>,
    /// A verified-token cache hit through `EngineHandle::verify`: SHA-256 of the token and the
    /// lookup.
    pub cache_hit_us: Estimate,
    pub http: HttpCost,
}

/// One figure: CPU µs and how far it may be off. A measured figure is the mean of two
/// consecutive estimates that agreed (within 5 %), its spread half their distance; a figure
/// derived from measured ones carries the sum of their spreads, scaled as it uses them.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub us: f64,
    /// The figure is `us ± spread_us`.
    pub spread_us: f64,
}

impl Estimate {
    pub fn new(us: f64, spread_us: f64) -> Estimate {
        Estimate { us, spread_us }
    }

    /// The spread relative to the figure (0.02 is ± 2 %).
    pub fn relative(&self) -> f64 {
        self.spread_us / self.us.abs()
    }
}

/// The machine a calibration ran on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// `model name` from /proc/cpuinfo.
    pub cpu: String,
    /// Cores this process may run on.
    pub cores: usize,
    /// The kernel release.
    pub kernel: String,
}

/// The cost of one algorithm.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlgorithmCost {
    /// The JWS `alg` name.
    pub alg: String,
    /// `jose::jwt::verify` in the calling thread: signature and claims.
    pub single_us: Estimate,
    /// The same in an engine worker fed batches of 64 (the worker's CPU time per token).
    pub batched_us: Estimate,
    /// The daemon's CPU time for one `/v1/authz` request whose token misses the cache, when
    /// every token misses (a few hundred tokens cycling through a 16-entry cache): HTTP,
    /// routing, lookup, the hop to the engine, verification, the cache insert and the answer.
    /// The model uses its difference from the reference algorithm's.
    pub authz_miss_us: Estimate,
    /// The daemon's CPU time per `/v1/authz` request when about one token in 10 misses, one
    /// at a time among hits on tokens verified shortly before (the same 16-entry cache). Where
    /// the vectorised backend is loaded, a miss among hits may go out alone on the single path
    /// (when the engine finds no others to gather with it) and cost nearer `single_us` than
    /// `batched_us`: the model uses this point at low miss ratios. Absent where the calibration could not measure it steadily (a
    /// busy machine): the model then uses the cost with every token missing at every ratio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authz_scattered: Option<MissPoint>,
}

/// The daemon's CPU time per HTTP request (its own threads only: the load generator's CPU is
/// not counted).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HttpCost {
    /// `GET /v1/authz` with a token answered from the cache.
    pub authz_cached_us: Estimate,
    /// The algorithm of the tokens never seen before that `authz_new` and `verify_miss_us`
    /// measure (cheap to sign in quantity, cheap to verify: the miss's own cost dominates).
    pub reference: String,
    /// `GET /v1/authz` per request, in the daemon's default cache, when a share of the tokens
    /// are new (`reference` tokens never seen before, scattered one at a time among hits on
    /// tokens sent earlier), in increasing order of that share; the last at a share of 1
    /// (every token new). What a request costs at a miss ratio between the points is read
    /// off the line through them and (0, `authz_cached_us`): never a difference divided by a
    /// small share, never extrapolated.
    pub authz_new: Vec<MissPoint>,
    /// `GET /v1/authz` with cached tokens in the service the scattered points
    /// (`AlgorithmCost::authz_scattered`) were measured in: what their hits cost. Absent with
    /// them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scattered_cached_us: Option<Estimate>,
    /// `POST /v1/verify`: the part of a request that does not depend on its tokens...
    pub verify_fixed_us: Estimate,
    /// ...and the part per token answered from the cache.
    pub verify_per_token_us: Estimate,
    /// What a token of a `/v1/verify` batch costs more than a cached one when it is new
    /// (`reference`, batches of 64 never seen before): its verification, the hop to the engine,
    /// the insert.
    pub verify_miss_us: Estimate,
    /// The share of its core the daemon used while `authz_cached_us` was measured: near 1.0
    /// when the load generator kept it saturated, as it is at its maximum throughput.
    pub server_busy: f64,
    /// The load: keep-alive connections (`/v1/authz`; `/v1/verify` used 8) and client threads.
    pub connections: usize,
    pub client_threads: usize,
    /// The core the daemon's threads were pinned to, if any (the client ran on the others).
    pub server_core: Option<usize>,
}

/// What a `/v1/authz` request cost at one share of new tokens.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MissPoint {
    /// Share of tokens that missed the cache, above 0, at most 1 (as the daemon counted them).
    pub miss: f64,
    /// CPU µs per request.
    pub us: Estimate,
}

/// Why a calibration file was refused: the file's fault.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq)]
pub enum CalibrationError {
    /// Not JSON of this shape.
    Json(String),
    /// Another format version.
    Format(u32),
    /// An algorithm name that is not a JWS algorithm, or one listed twice, or a reference
    /// algorithm without figures.
    Algorithm(String),
    /// A cost that is not a positive finite number, or a spread that is negative or not
    /// finite, or a miss ratio out of order or range.
    Value { field: String, value: f64 },
}

impl std::fmt::Display for CalibrationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CalibrationError::Json(e) => write!(f, "not a calibration file: {e}"),
            CalibrationError::Format(v) => write!(
                f,
                "calibration format {v}, this version reads format {FORMAT}: calibrate again"
            ),
            CalibrationError::Algorithm(name) => {
                write!(
                    f,
                    "algorithm {name:?} unknown, listed twice or without figures"
                )
            }
            CalibrationError::Value { field, value } => {
                write!(f, "{field} = {value}: out of range")
            }
        }
    }
}

impl std::error::Error for CalibrationError {}

/// The format field alone, read before the rest: an older file is refused as such, not as
/// JSON of the wrong shape.
#[derive(Deserialize)]
struct Version {
    format: u32,
}

impl Calibration {
    /// Reads and checks a calibration file's contents.
    pub fn from_json(text: &str) -> Result<Calibration, CalibrationError> {
        let version: Version =
            serde_json::from_str(text).map_err(|e| CalibrationError::Json(e.to_string()))?;
        if version.format != FORMAT {
            return Err(CalibrationError::Format(version.format));
        }
        let cal: Calibration =
            serde_json::from_str(text).map_err(|e| CalibrationError::Json(e.to_string()))?;
        cal.check()?;
        Ok(cal)
    }

    /// The calibration as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        // Plain structs of strings and numbers: serialising cannot fail (a non-finite number
        // becomes null, which `from_json` then refuses).
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Every figure with its name, as the checks and the error propagation see them.
    pub fn figures(&self) -> Vec<(String, Estimate)> {
        let mut cal = self.clone();
        cal.figures_mut()
            .into_iter()
            .map(|(name, e)| (name, *e))
            .collect()
    }

    pub(crate) fn figures_mut(&mut self) -> Vec<(String, &mut Estimate)> {
        let mut all = Vec::new();
        for a in &mut self.algorithms {
            all.push((format!("{}.single_us", a.alg), &mut a.single_us));
            all.push((format!("{}.batched_us", a.alg), &mut a.batched_us));
            all.push((format!("{}.authz_miss_us", a.alg), &mut a.authz_miss_us));
            if let Some(p) = &mut a.authz_scattered {
                all.push((format!("{}.authz_scattered.us", a.alg), &mut p.us));
            }
        }
        all.push(("cache_hit_us".into(), &mut self.cache_hit_us));
        let h = &mut self.http;
        all.push(("http.authz_cached_us".into(), &mut h.authz_cached_us));
        if let Some(e) = &mut h.scattered_cached_us {
            all.push(("http.scattered_cached_us".into(), e));
        }
        for (i, p) in h.authz_new.iter_mut().enumerate() {
            all.push((format!("http.authz_new[{i}].us"), &mut p.us));
        }
        all.push(("http.verify_fixed_us".into(), &mut h.verify_fixed_us));
        all.push((
            "http.verify_per_token_us".into(),
            &mut h.verify_per_token_us,
        ));
        all.push(("http.verify_miss_us".into(), &mut h.verify_miss_us));
        all
    }

    fn check(&self) -> Result<(), CalibrationError> {
        let value = |field: String, value: f64| Err(CalibrationError::Value { field, value });
        let mut seen = Vec::new();
        for a in &self.algorithms {
            let alg = Algorithm::from_name(&a.alg)
                .filter(|alg| !seen.contains(alg))
                .ok_or_else(|| CalibrationError::Algorithm(a.alg.clone()))?;
            seen.push(alg);
        }
        // Every figure is a cost: a negative one is noise, never a figure.
        for (field, e) in self.figures() {
            if !(e.us.is_finite() && e.us > 0.0) {
                return value(field, e.us);
            }
            if !(e.spread_us.is_finite() && e.spread_us >= 0.0) {
                return value(format!("{field}.spread_us"), e.spread_us);
            }
        }
        if !self.other_load_cores.is_finite() {
            return value("other_load_cores".into(), self.other_load_cores);
        }
        let h = &self.http;
        let reference = self.reference()?;
        for (i, point) in h.authz_new.iter().enumerate() {
            if !(point.miss > 0.0 && point.miss <= 1.0)
                || h.authz_new[..i].iter().any(|p| p.miss >= point.miss)
            {
                return value(format!("http.authz_new[{i}].miss"), point.miss);
            }
        }
        match h.authz_new.last() {
            Some(last) if last.miss == 1.0 => {}
            last => {
                return value(
                    "http.authz_new.last().miss".into(),
                    last.map_or(0.0, |p| p.miss),
                )
            }
        }
        // A request whose token misses cannot cost less than one answered from the cache.
        for (i, point) in h.authz_new.iter().enumerate() {
            if point.us.us <= h.authz_cached_us.us {
                return value(format!("http.authz_new[{i}].us"), point.us.us);
            }
        }
        // Scattered points for every algorithm with the hit cost they are read against, or
        // none at all.
        let scattered = self
            .algorithms
            .iter()
            .filter(|a| a.authz_scattered.is_some())
            .count();
        if h.scattered_cached_us.is_some() != (scattered > 0)
            || (scattered > 0 && scattered != self.algorithms.len())
        {
            return value(
                "authz_scattered (algorithms measured)".into(),
                scattered as f64,
            );
        }
        for a in &self.algorithms {
            if let Some(p) = &a.authz_scattered {
                if !(p.miss > 0.0 && p.miss < 1.0) {
                    return value(format!("{}.authz_scattered.miss", a.alg), p.miss);
                }
            }
        }
        // What a miss of each algorithm adds, as the model reads it: positive.
        for a in &self.algorithms {
            if let Some(scattered) = self.authz_scattered_extra_us(a, reference) {
                if !(scattered.is_finite() && scattered > 0.0) {
                    return value(
                        format!("{}: /v1/authz per scattered miss", a.alg),
                        scattered,
                    );
                }
            }
            let authz = self.authz_miss_extra_us(a, reference);
            if !(authz.is_finite() && authz > 0.0) {
                return value(format!("{}: /v1/authz per miss", a.alg), authz);
            }
            let batch = self.verify_miss_extra_us(a, reference);
            if !(batch.is_finite() && batch > 0.0) {
                return value(format!("{}: /v1/verify per miss", a.alg), batch);
            }
        }
        Ok(())
    }

    /// The costs of `alg`, if it was calibrated.
    pub fn algorithm(&self, alg: Algorithm) -> Option<&AlgorithmCost> {
        self.algorithms.iter().find(|a| a.alg == alg.name())
    }

    /// The reference algorithm's costs.
    pub fn reference(&self) -> Result<&AlgorithmCost, CalibrationError> {
        Algorithm::from_name(&self.http.reference)
            .and_then(|alg| self.algorithm(alg))
            .ok_or_else(|| CalibrationError::Algorithm(self.http.reference.clone()))
    }

    /// What a `/v1/authz` request costs at a miss ratio of `miss` (0 to 1) when the misses
    /// are `reference` tokens: on the line through (0, `authz_cached_us`) and the measured
    /// points.
    pub fn authz_reference_us(&self, miss: f64) -> f64 {
        let miss = miss.clamp(0.0, 1.0);
        let h = &self.http;
        let mut below = (0.0, h.authz_cached_us.us);
        for p in &h.authz_new {
            if miss <= p.miss {
                let (m0, c0) = below;
                return c0 + (p.us.us - c0) * (miss - m0) / (p.miss - m0);
            }
            below = (p.miss, p.us.us);
        }
        below.1
    }

    /// What one `/v1/authz` miss of `alg` costs beyond a cached request when every token is
    /// new: the reference's measured cost, plus what `alg`'s miss costs more than the
    /// reference's (their difference when every token misses, measured moments apart).
    pub fn authz_miss_extra_us(&self, alg: &AlgorithmCost, reference: &AlgorithmCost) -> f64 {
        self.authz_reference_us(1.0) - self.http.authz_cached_us.us + alg.authz_miss_us.us
            - reference.authz_miss_us.us
    }

    /// What one `/v1/authz` miss of `alg` costs beyond a cached request when misses come one
    /// at a time among hits (about one in 10): the reference's cost at that ratio, read off its
    /// line, plus what `alg`'s scattered miss costs more than the reference's; `None` where the
    /// scattered points were not measured.
    pub fn authz_scattered_extra_us(
        &self,
        alg: &AlgorithmCost,
        reference: &AlgorithmCost,
    ) -> Option<f64> {
        let at = alg.authz_scattered.as_ref()?.miss;
        Some(
            (self.authz_reference_us(at) - self.http.authz_cached_us.us) / at
                + self.scattered_difference_us(alg, reference)?,
        )
    }

    /// What a scattered miss of `alg` costs more than one of `reference`, per miss: each
    /// point's request cost above a cached request in the same service over its own miss
    /// ratio; `None` where they were not measured.
    pub fn scattered_difference_us(
        &self,
        alg: &AlgorithmCost,
        reference: &AlgorithmCost,
    ) -> Option<f64> {
        let cached = self.http.scattered_cached_us?.us;
        let per_miss = |p: &MissPoint| (p.us.us - cached) / p.miss;
        Some(
            per_miss(alg.authz_scattered.as_ref()?) - per_miss(reference.authz_scattered.as_ref()?),
        )
    }

    /// What a miss of `alg` costs more than one of `reference` at a miss ratio of `miss`,
    /// per miss. Misses scattered among hits go out one at a time on the single path, misses
    /// in quantity share vectorised calls where the backend is loaded: the difference is the
    /// scattered one up to the ratio it was measured at, the one with every token missing at
    /// 1, and on the line between them in between. Without a vectorised backend the two agree
    /// and the ratio does not matter; without scattered points, the one with every token
    /// missing is used at every ratio.
    pub fn authz_difference_us(
        &self,
        alg: &AlgorithmCost,
        reference: &AlgorithmCost,
        miss: f64,
    ) -> f64 {
        let high = alg.authz_miss_us.us - reference.authz_miss_us.us;
        let (Some(low), Some(a), Some(r)) = (
            self.scattered_difference_us(alg, reference),
            &alg.authz_scattered,
            &reference.authz_scattered,
        ) else {
            return high;
        };
        let at = (a.miss + r.miss) / 2.0;
        if miss <= at {
            low
        } else {
            low + (high - low) * ((miss - at) / (1.0 - at)).min(1.0)
        }
    }

    /// What one token of a `/v1/verify` batch costs more than a cached one when it is new and
    /// signed with `alg`: the reference's measured cost plus the difference of their batched
    /// verifications.
    pub fn verify_miss_extra_us(&self, alg: &AlgorithmCost, reference: &AlgorithmCost) -> f64 {
        self.http.verify_miss_us.us + alg.batched_us.us - reference.batched_us.us
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn exact(us: f64) -> Estimate {
        Estimate::new(us, 0.0)
    }

    /// A calibration with round numbers and no spread, for the model's tests.
    pub fn sample() -> Calibration {
        // Scattered misses cost what misses do when every token misses (no vectorised
        // backend): one in 10 requests, 20 µs a cached request plus a tenth of the miss.
        let alg = |alg: &str, single_us: f64, authz_miss_us: f64| AlgorithmCost {
            alg: alg.into(),
            single_us: exact(single_us),
            batched_us: exact(single_us),
            authz_miss_us: exact(authz_miss_us),
            authz_scattered: Some(MissPoint {
                miss: 0.1,
                us: exact(20.0 + 0.1 * (authz_miss_us - 20.0)),
            }),
        };
        Calibration {
            format: FORMAT,
            machine: Machine {
                cpu: "test".into(),
                cores: 2,
                kernel: "test".into(),
            },
            date: "2026-01-01T00:00:00Z".into(),
            budget_s: 30.0,
            took_s: 30.0,
            clock: "schedstat".into(),
            other_load_cores: 0.0,
            algorithms: vec![
                alg("HS256", 2.0, 32.0),
                alg("RS256", 20.0, 50.0),
                alg("ES256", 80.0, 110.0),
                alg("EdDSA", 30.0, 60.0),
            ],
            cache_hit_us: exact(0.5),
            http: HttpCost {
                authz_cached_us: exact(20.0),
                reference: "HS256".into(),
                // New tokens cost what cycling ones do, and misses cost the same at every
                // ratio: the line from (0, 20) to (1, 32).
                authz_new: vec![MissPoint {
                    miss: 1.0,
                    us: exact(32.0),
                }],
                scattered_cached_us: Some(exact(20.0)),
                verify_fixed_us: exact(30.0),
                verify_per_token_us: exact(2.0),
                verify_miss_us: exact(3.0),
                server_busy: 1.0,
                connections: 64,
                client_threads: 1,
                server_core: Some(1),
            },
        }
    }

    fn refused(cal: &Calibration) -> bool {
        matches!(
            Calibration::from_json(&cal.to_json()),
            Err(CalibrationError::Value { .. })
        )
    }

    #[test]
    fn files_round_trip_and_bad_ones_are_refused() {
        let cal = sample();
        assert_eq!(Calibration::from_json(&cal.to_json()).unwrap(), cal);

        let mut other = cal.clone();
        other.format = 2;
        assert_eq!(
            Calibration::from_json(&other.to_json()),
            Err(CalibrationError::Format(2))
        );
        let mut other = cal.clone();
        other.algorithms[0].alg = "none".into();
        assert!(matches!(
            Calibration::from_json(&other.to_json()),
            Err(CalibrationError::Algorithm(_))
        ));
        let mut other = cal.clone();
        other.algorithms[1].alg = "HS256".into();
        assert!(matches!(
            Calibration::from_json(&other.to_json()),
            Err(CalibrationError::Algorithm(_))
        ));
        let mut other = cal.clone();
        other.http.reference = "PS256".into();
        assert!(matches!(
            Calibration::from_json(&other.to_json()),
            Err(CalibrationError::Algorithm(_))
        ));
        let mut other = cal.clone();
        other.algorithms[2].single_us.us = 0.0;
        assert!(refused(&other));
        let mut other = cal.clone();
        other.http.verify_fixed_us.us = f64::NAN;
        assert!(Calibration::from_json(&other.to_json()).is_err());
        let mut other = cal.clone();
        other.http.verify_per_token_us.spread_us = -1.0;
        assert!(refused(&other));
        assert!(matches!(
            Calibration::from_json("{}"),
            Err(CalibrationError::Json(_))
        ));
        assert!(matches!(
            Calibration::from_json("[1, 2"),
            Err(CalibrationError::Json(_))
        ));
    }

    #[test]
    fn a_format_2_file_is_refused_as_such() {
        let old = r#"{"format": 2, "machine": {"cpu": "x", "cores": 2, "kernel": "k"},
            "http": {"new_token_extra_us": -12.11, "miss_rate_extra": []}}"#;
        assert_eq!(
            Calibration::from_json(old),
            Err(CalibrationError::Format(2))
        );
    }

    #[test]
    fn regression_negative_costs_are_refused_not_used() {
        // Format 2 printed "-12.11 µs more per miss": a difference of two noisy figures.
        // Every figure of format 3 is a measured or summed cost: none may be negative.
        let mut cal = sample();
        cal.http.verify_miss_us.us = -12.11;
        assert!(refused(&cal));
        // A miss ratio's request cheaper than a cached request is noise too.
        let mut cal = sample();
        cal.http.authz_new[0].us.us = 19.0;
        assert!(refused(&cal));
        // An algorithm whose miss would cost nothing beyond a cached request.
        let mut cal = sample();
        cal.algorithms[1].authz_miss_us.us = 15.0;
        assert!(refused(&cal));
    }

    #[test]
    fn the_request_cost_is_read_off_the_measured_points() {
        let point = |miss: f64, us: f64| MissPoint {
            miss,
            us: exact(us),
        };
        let mut cal = sample();
        let near = |a: f64, b: f64| (a - b).abs() < 1e-9;
        // One point: the line from the cached request.
        assert!(near(cal.authz_reference_us(0.0), 20.0));
        assert!(near(cal.authz_reference_us(0.5), 26.0));
        assert!(near(cal.authz_reference_us(1.0), 32.0));
        // Scattered misses cost more each: 10 % misses measured at 30 µs a request.
        cal.http.authz_new = vec![point(0.1, 30.0), point(0.5, 40.0), point(1.0, 60.0)];
        assert!(Calibration::from_json(&cal.to_json()).is_ok());
        assert!(near(cal.authz_reference_us(0.05), 25.0));
        assert!(near(cal.authz_reference_us(0.1), 30.0));
        assert!(near(cal.authz_reference_us(0.3), 35.0));
        assert!(near(cal.authz_reference_us(0.75), 50.0));
        assert!(near(cal.authz_reference_us(1.0), 60.0));
        // Out of order, or without the every-token-new point: refused.
        cal.http.authz_new.swap(0, 1);
        assert!(refused(&cal));
        cal.http.authz_new = vec![point(0.1, 30.0), point(0.5, 40.0)];
        assert!(refused(&cal));
        cal.http.authz_new = vec![point(0.0, 30.0), point(1.0, 40.0)];
        assert!(refused(&cal));
    }

    #[test]
    fn a_miss_costs_the_reference_plus_the_algorithms_difference() {
        let cal = sample();
        let reference = cal.reference().unwrap();
        let es = cal.algorithm(Algorithm::ES256).unwrap();
        assert_eq!(
            cal.authz_miss_extra_us(es, reference),
            32.0 - 20.0 + 110.0 - 32.0
        );
        assert_eq!(cal.verify_miss_extra_us(es, reference), 3.0 + 80.0 - 2.0);
        assert!(cal.algorithm(Algorithm::PS256).is_none());
        assert_eq!(cal.figures().len(), 4 * 4 + 1 + 2 + 1 + 3);
    }

    #[test]
    fn scattered_misses_cost_the_single_path_and_misses_in_quantity_the_batched_one() {
        let mut cal = sample();
        // ES256 on a machine with the vectorised backend: a lone miss 80 µs more than an
        // HS256 one (its single path), every token missing 30 µs more (its batched calls).
        let es = cal
            .algorithms
            .iter_mut()
            .find(|a| a.alg == "ES256")
            .unwrap();
        es.authz_miss_us = exact(32.0 + 30.0);
        es.authz_scattered = Some(MissPoint {
            miss: 0.1,
            us: exact(20.0 + 0.1 * (12.0 + 80.0)),
        });
        let reference = cal.reference().unwrap().clone();
        let es = cal.algorithm(Algorithm::ES256).unwrap().clone();
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(close(
            cal.scattered_difference_us(&es, &reference).unwrap(),
            80.0
        ));
        assert!(close(
            cal.authz_scattered_extra_us(&es, &reference).unwrap(),
            92.0
        ));
        // Up to the ratio it was measured at, the scattered difference; at 1, the batched
        // one; on the line between them in between.
        assert!(close(cal.authz_difference_us(&es, &reference, 0.01), 80.0));
        assert!(close(cal.authz_difference_us(&es, &reference, 0.1), 80.0));
        assert!(close(cal.authz_difference_us(&es, &reference, 0.55), 55.0));
        assert!(close(cal.authz_difference_us(&es, &reference, 1.0), 30.0));
        // Without scattered points, the difference with every token missing at every ratio.
        let mut without = cal.clone();
        without.http.scattered_cached_us = None;
        for a in &mut without.algorithms {
            a.authz_scattered = None;
        }
        assert_eq!(
            Calibration::from_json(&without.to_json()),
            Ok(without.clone())
        );
        assert!(close(
            without.authz_difference_us(&es, &reference, 0.01),
            30.0
        ));
        // Some algorithms with points and some without, a point whose misses cost less than a
        // cached request, or a ratio of 1: refused.
        without.algorithms[0].authz_scattered = cal.algorithms[0].authz_scattered.clone();
        assert!(refused(&without));
        let mut bad = cal.clone();
        bad.algorithms[2].authz_scattered.as_mut().unwrap().us = exact(19.0);
        assert!(refused(&bad));
        let mut bad = cal;
        bad.algorithms[1].authz_scattered.as_mut().unwrap().miss = 1.0;
        assert!(refused(&bad));
    }
}
