//! What a calibration measured, as its JSON file holds it. Field names are the file format's;
//! keep them stable (`tessera capacity --calibration FILE` reads files written earlier).

use jose::Algorithm;
use serde::{Deserialize, Serialize};

/// Format version of [`Calibration`].
pub const FORMAT: u32 = 2;

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
    /// few miss ratios, in increasing order. The model reads it with
    /// [`HttpCost::miss_extra_us`].
    pub miss_rate_extra: Vec<MissRatePoint>,
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
    /// The extra CPU µs per miss at a miss ratio of `miss`, read off the measured points: each
    /// taken as at least 0 (noise; a miss is not cheaper than when every token misses), linear
    /// between them, the lowest ratio's figure below it (a lone miss wakes the worker as one in
    /// ten does), and falling linearly to 0 at a miss ratio of 1 (every token misses: the
    /// reference the points are measured against). The cost is far from linear in the ratio:
    /// on a 2-core VM a miss among 90 % hits costs some 60 µs more, one among 50 % nothing.
    pub fn miss_extra_us(&self, miss: f64) -> f64 {
        let miss = miss.clamp(0.0, 1.0);
        let points: Vec<(f64, f64)> = self
            .miss_rate_extra
            .iter()
            .map(|p| (p.miss, p.extra_us.max(0.0)))
            .chain([(1.0, 0.0)])
            .collect();
        let mut below = (0.0, points[0].1);
        for (m, extra) in points {
            if miss <= m {
                let (m0, e0) = below;
                return if m > m0 {
                    e0 + (extra - e0) * (miss - m0) / (m - m0)
                } else {
                    extra
                };
            }
            below = (m, extra);
        }
        0.0
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
        other.format = 1;
        assert_eq!(
            Calibration::from_json(&other.to_json()),
            Err(CalibrationError::Format(1))
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
    fn the_extra_cost_of_scattered_misses_is_read_off_the_points() {
        let point = |miss: f64, extra_us: f64| MissRatePoint { miss, extra_us };
        let mut http = sample().http;
        // No points: nothing extra.
        assert_eq!(http.miss_extra_us(0.3), 0.0);
        let on_line = [point(0.1, 60.0), point(0.5, 20.0)];
        http.miss_rate_extra = on_line.to_vec();
        let near = |a: f64, b: f64| (a - b).abs() < 1e-9;
        // At the points, below the lowest (held), between them, and down to 0 at 1.
        assert!(near(http.miss_extra_us(0.1), 60.0));
        assert!(near(http.miss_extra_us(0.01), 60.0));
        assert!(near(http.miss_extra_us(0.0), 60.0));
        assert!(near(http.miss_extra_us(0.3), 40.0));
        assert!(near(http.miss_extra_us(0.5), 20.0));
        assert!(near(http.miss_extra_us(0.75), 10.0));
        assert!(near(http.miss_extra_us(1.0), 0.0));
        // A point below 0 (noise) counts as 0.
        http.miss_rate_extra = vec![point(0.1, 64.0), point(0.5, -15.0)];
        assert!(near(http.miss_extra_us(0.5), 0.0));
        assert!(near(http.miss_extra_us(0.3), 32.0));
        assert!(near(http.miss_extra_us(0.9), 0.0));

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
        cal.http.miss_rate_extra[1].miss = 1.0;
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
