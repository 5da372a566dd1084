//! What a calibration measured, as its JSON file holds it. Field names are the file format's;
//! keep them stable (`tessera capacity --calibration FILE` reads files written earlier).

use jose::Algorithm;
use serde::{Deserialize, Serialize};

/// Format version of [`Calibration`].
pub const FORMAT: u32 = 1;

/// The costs of one machine. Every figure is CPU time on one core, in microseconds.
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
    pub cache_hit_us: f64,
    pub http: HttpCost,
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
    pub single_us: f64,
    /// The same in an engine worker fed batches of 64 (the worker's CPU time per token).
    pub batched_us: f64,
    /// The daemon's CPU time for one `/v1/authz` request whose token misses the cache, when
    /// every token misses: HTTP, routing, lookup, the hop to the engine, verification, the
    /// cache insert and the answer.
    pub authz_miss_us: f64,
}

/// The daemon's CPU time per HTTP request (its own threads only: the load generator's CPU is
/// not counted).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HttpCost {
    /// `GET /v1/authz` with a token answered from the cache.
    pub authz_cached_us: f64,
    /// `POST /v1/verify`: the part of a request that does not depend on its tokens...
    pub verify_fixed_us: f64,
    /// ...and the part per token answered from the cache.
    pub verify_per_token_us: f64,
    /// Per token of a `/v1/verify` batch that misses the cache, beyond its batched
    /// verification (`batched_us`): queueing, the reply, the cache insert.
    pub batch_miss_overhead_us: f64,
    /// What a miss on a token never seen before costs more than the misses above, which cycle
    /// a few hundred tokens through a 16-entry cache: the insert into the daemon's default
    /// cache as it grows, the token's bytes cold in the CPU's caches. Measured with EdDSA
    /// (`/v1/authz`, new tokens only, against the same tokens cycling, back to back) and added
    /// to every miss, batched or not.
    pub new_token_extra_us: f64,
    /// A miss costs more when misses are scattered among hits (the engine's worker sleeps
    /// between them and is woken for each) than when every token misses (the worker always has
    /// work): the extra CPU µs per miss, beyond `authz_miss_us`, as measured on `/v1/authz` at a
    /// few miss ratios...
    pub miss_rate_extra: Vec<MissRatePoint>,
    /// ...and the one figure the model uses, fitted to them: a miss costs
    /// `isolated_miss_extra_us × (1 - miss ratio)` more (least squares, weighted by how much
    /// each point says; never below 0).
    pub isolated_miss_extra_us: f64,
    /// The share of its core the daemon used while `authz_cached_us` was measured: near 1.0
    /// when the load generator kept it saturated, as it is at its maximum throughput.
    pub server_busy: f64,
    /// The load: keep-alive connections (`/v1/authz`; `/v1/verify` used 8) and client threads.
    pub connections: usize,
    pub client_threads: usize,
    /// The core the daemon's threads were pinned to, if any (the client ran on the others).
    pub server_core: Option<usize>,
}

/// The extra cost of a miss at one miss ratio.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MissRatePoint {
    /// Share of tokens that missed the cache, 0 to 1.
    pub miss: f64,
    pub extra_us: f64,
}

/// Why a calibration file was refused: the file's fault.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq)]
pub enum CalibrationError {
    /// Not JSON of this shape.
    Json(String),
    /// Another format version.
    Format(u32),
    /// An algorithm name that is not a JWS algorithm, or one listed twice.
    Algorithm(String),
    /// A cost that is not a finite number (or, where it must be, not positive).
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
                write!(f, "algorithm {name:?} unknown or listed twice")
            }
            CalibrationError::Value { field, value } => {
                write!(f, "{field} = {value}: out of range")
            }
        }
    }
}

impl std::error::Error for CalibrationError {}

impl Calibration {
    /// Reads and checks a calibration file's contents.
    pub fn from_json(text: &str) -> Result<Calibration, CalibrationError> {
        let cal: Calibration =
            serde_json::from_str(text).map_err(|e| CalibrationError::Json(e.to_string()))?;
        if cal.format != FORMAT {
            return Err(CalibrationError::Format(cal.format));
        }
        cal.check()?;
        Ok(cal)
    }

    /// The calibration as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        // Plain structs of strings and numbers: serialising cannot fail (a non-finite number
        // becomes null, which `from_json` then refuses).
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    fn check(&self) -> Result<(), CalibrationError> {
        let positive = |field: String, value: f64| {
            if value.is_finite() && value > 0.0 {
                Ok(())
            } else {
                Err(CalibrationError::Value { field, value })
            }
        };
        // Overheads are differences of two measurements: small, possibly negative, but finite.
        let finite = |field: String, value: f64| {
            if value.is_finite() {
                Ok(())
            } else {
                Err(CalibrationError::Value { field, value })
            }
        };
        let mut seen = Vec::new();
        for a in &self.algorithms {
            let alg = Algorithm::from_name(&a.alg)
                .filter(|alg| !seen.contains(alg))
                .ok_or_else(|| CalibrationError::Algorithm(a.alg.clone()))?;
            seen.push(alg);
            positive(format!("{}.single_us", a.alg), a.single_us)?;
            positive(format!("{}.batched_us", a.alg), a.batched_us)?;
            positive(format!("{}.authz_miss_us", a.alg), a.authz_miss_us)?;
        }
        positive("cache_hit_us".into(), self.cache_hit_us)?;
        finite("other_load_cores".into(), self.other_load_cores)?;
        let h = &self.http;
        positive("http.authz_cached_us".into(), h.authz_cached_us)?;
        positive("http.verify_per_token_us".into(), h.verify_per_token_us)?;
        finite("http.verify_fixed_us".into(), h.verify_fixed_us)?;
        finite(
            "http.batch_miss_overhead_us".into(),
            h.batch_miss_overhead_us,
        )?;
        finite("http.new_token_extra_us".into(), h.new_token_extra_us)?;
        if !(h.isolated_miss_extra_us.is_finite() && h.isolated_miss_extra_us >= 0.0) {
            return Err(CalibrationError::Value {
                field: "http.isolated_miss_extra_us".into(),
                value: h.isolated_miss_extra_us,
            });
        }
        for (i, point) in h.miss_rate_extra.iter().enumerate() {
            if !(point.miss > 0.0 && point.miss < 1.0)
                || h.miss_rate_extra[..i].iter().any(|p| p.miss >= point.miss)
            {
                return Err(CalibrationError::Value {
                    field: format!("http.miss_rate_extra[{i}].miss"),
                    value: point.miss,
                });
            }
            finite(
                format!("http.miss_rate_extra[{i}].extra_us"),
                point.extra_us,
            )?;
        }
        Ok(())
    }

    /// The costs of `alg`, if it was calibrated.
    pub fn algorithm(&self, alg: Algorithm) -> Option<&AlgorithmCost> {
        self.algorithms.iter().find(|a| a.alg == alg.name())
    }
}

impl HttpCost {
    /// The extra CPU µs per miss at a miss ratio of `miss`: `isolated_miss_extra_us` for a
    /// lone miss, falling linearly to 0 when every token misses.
    pub fn miss_extra_us(&self, miss: f64) -> f64 {
        self.isolated_miss_extra_us * (1.0 - miss.clamp(0.0, 1.0))
    }

    /// The fit of `isolated_miss_extra_us` to measured points: the extra per miss at ratio `m`
    /// is modelled as `E · (1 - m)`; a point's error in request cost is `m` times its error in
    /// extra, so points are weighted by `m²`. Negative fits (noise: a miss is never cheaper
    /// than when every token misses) become 0.
    pub fn fit_isolated_extra(points: &[MissRatePoint]) -> f64 {
        let (mut num, mut den) = (0.0, 0.0);
        for p in points {
            let (w, x) = (p.miss * p.miss, 1.0 - p.miss);
            num += w * x * p.extra_us;
            den += w * x * x;
        }
        if den > 0.0 {
            (num / den).max(0.0)
        } else {
            0.0
        }
    }
}

impl AlgorithmCost {
    /// What a cache miss on `/v1/authz` costs beyond the verification itself (`single_us`),
    /// when every token misses: the hop to the engine and back, the cache insert, the worker's
    /// wake-ups.
    pub fn authz_miss_overhead_us(&self, http: &HttpCost) -> f64 {
        self.authz_miss_us - http.authz_cached_us - self.single_us
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A calibration with round numbers, for the model's tests.
    pub fn sample() -> Calibration {
        let alg = |alg: &str, single_us: f64, authz_miss_us: f64| AlgorithmCost {
            alg: alg.into(),
            single_us,
            batched_us: single_us,
            authz_miss_us,
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
            cache_hit_us: 0.5,
            http: HttpCost {
                authz_cached_us: 20.0,
                verify_fixed_us: 30.0,
                verify_per_token_us: 2.0,
                batch_miss_overhead_us: 1.0,
                new_token_extra_us: 0.0,
                miss_rate_extra: Vec::new(),
                isolated_miss_extra_us: 0.0,
                server_busy: 1.0,
                connections: 64,
                client_threads: 1,
                server_core: Some(1),
            },
        }
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
        other.algorithms[2].single_us = 0.0;
        assert!(matches!(
            Calibration::from_json(&other.to_json()),
            Err(CalibrationError::Value { .. })
        ));
        let mut other = cal.clone();
        other.http.verify_fixed_us = f64::NAN;
        assert!(Calibration::from_json(&other.to_json()).is_err());
        assert!(matches!(
            Calibration::from_json("{}"),
            Err(CalibrationError::Json(_))
        ));
    }

    #[test]
    fn the_extra_cost_of_scattered_misses_is_fitted_and_fades() {
        let point = |miss: f64, extra_us: f64| MissRatePoint { miss, extra_us };
        // Points on the line E · (1 - m) give E back.
        let on_line = [point(0.1, 36.0), point(0.5, 20.0)];
        assert!((HttpCost::fit_isolated_extra(&on_line) - 40.0).abs() < 1e-9);
        // The point with more misses weighs more: its noise moves the cost less.
        let noisy = [point(0.1, 90.0), point(0.5, 20.0)];
        let fit = HttpCost::fit_isolated_extra(&noisy);
        assert!(fit > 40.0 && fit < 60.0, "{fit}");
        assert_eq!(HttpCost::fit_isolated_extra(&[point(0.5, -10.0)]), 0.0);
        assert_eq!(HttpCost::fit_isolated_extra(&[]), 0.0);

        let mut http = sample().http;
        assert_eq!(http.miss_extra_us(0.3), 0.0);
        http.isolated_miss_extra_us = 40.0;
        assert!((http.miss_extra_us(0.1) - 36.0).abs() < 1e-12);
        assert!((http.miss_extra_us(0.75) - 10.0).abs() < 1e-12);
        assert_eq!(http.miss_extra_us(1.0), 0.0);

        let mut cal = sample();
        cal.http = http;
        cal.http.miss_rate_extra = on_line.to_vec();
        assert!(Calibration::from_json(&cal.to_json()).is_ok());
        cal.http.miss_rate_extra.swap(0, 1);
        assert!(matches!(
            Calibration::from_json(&cal.to_json()),
            Err(CalibrationError::Value { .. })
        ));
        cal.http.miss_rate_extra.swap(0, 1);
        cal.http.isolated_miss_extra_us = -1.0;
        assert!(matches!(
            Calibration::from_json(&cal.to_json()),
            Err(CalibrationError::Value { .. })
        ));
    }

    #[test]
    fn the_miss_overhead_is_what_a_miss_adds_beyond_the_verification() {
        let cal = sample();
        let es = cal.algorithm(Algorithm::ES256).unwrap();
        assert_eq!(es.authz_miss_overhead_us(&cal.http), 110.0 - 20.0 - 80.0);
        assert!(cal.algorithm(Algorithm::PS256).is_none());
    }
}
