//! The short load suite's summary, `target/loadtest/suite.json`, as `loadtest/suite.sh` writes
//! it: each contestant's throughput and p99 latency per round, and the ratios per round.

use serde::Deserialize;

/// Format version this reader understands.
pub const FORMAT: u32 = 1;

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Suite {
    pub format: u32,
    /// `2026-11-28T08:21Z`.
    pub date: String,
    /// `git rev-parse --short HEAD` when the suite ran.
    pub commit: String,
    pub rounds: usize,
    /// Length of one run, seconds.
    pub duration_s: f64,
    /// Load generator threads.
    pub threads: usize,
    pub contestants: Vec<Contestant>,
    pub ratios: Vec<SuiteRatio>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Contestant {
    /// `hello`, `authz`, ..., `engine`.
    pub name: String,
    /// `requests/s`, or `tokens/s` for the in-process engine.
    pub unit: String,
    /// Connections the load generator held (none for the in-process engine).
    pub connections: Option<usize>,
    /// One value per round.
    pub throughput: Vec<f64>,
    /// One value per round, microseconds; empty where there is no latency to report.
    #[serde(default)]
    pub p99_us: Vec<u64>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct SuiteRatio {
    /// `authz / hello`, `introspect / hello`, `verify-64 tokens/s / engine`.
    pub name: String,
    pub target: f64,
    /// One value per round.
    pub values: Vec<f64>,
}

impl Suite {
    pub fn parse(text: &str) -> Result<Suite, String> {
        let suite: Suite = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if suite.format != FORMAT {
            return Err(format!(
                "format {} (this reader knows {FORMAT})",
                suite.format
            ));
        }
        Ok(suite)
    }

    pub fn ratio(&self, name: &str) -> Option<&SuiteRatio> {
        self.ratios.iter().find(|r| r.name == name)
    }
}

#[cfg(test)]
pub const EXAMPLE: &str = r#"{
  "format": 1,
  "date": "2026-11-28T08:21Z",
  "commit": "3328335",
  "rounds": 2,
  "duration_s": 5,
  "threads": 2,
  "contestants": [
    {"name": "hello", "unit": "requests/s", "connections": 64, "throughput": [75942, 76476], "p99_us": [3445, 3263]},
    {"name": "introspect", "unit": "requests/s", "connections": 64, "throughput": [25658, 31541], "p99_us": [6359, 6687]},
    {"name": "engine", "unit": "tokens/s", "connections": null, "throughput": [21935, 14512], "p99_us": []}
  ],
  "ratios": [
    {"name": "introspect / hello", "target": 0.7, "values": [0.338, 0.412]},
    {"name": "verify-64 tokens/s / engine", "target": 0.85, "values": [0.805, 0.975]}
  ]
}"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_summary() {
        let suite = Suite::parse(EXAMPLE).unwrap();
        assert_eq!(suite.rounds, 2);
        assert_eq!(suite.contestants[0].name, "hello");
        assert_eq!(suite.contestants[0].throughput, [75942.0, 76476.0]);
        assert_eq!(suite.contestants[2].connections, None);
        assert!(suite.contestants[2].p99_us.is_empty());
        assert_eq!(
            suite.ratio("introspect / hello").unwrap().values,
            [0.338, 0.412]
        );
        assert!(suite.ratio("authz / hello").is_none());
    }

    #[test]
    fn refuses_another_format() {
        let text = EXAMPLE.replace(r#""format": 1"#, r#""format": 2"#);
        assert!(Suite::parse(&text).unwrap_err().contains("format 2"));
    }
}
