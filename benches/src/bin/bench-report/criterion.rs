//! Reading criterion's results: every `GROUP/FUNCTION/VALUE/new/{benchmark,estimates}.json`
//! under its output directory (`target/criterion`).
//!
//! Criterion keeps the results of every id it ever measured there, including ids a benchmark no
//! longer has. With `since`, only results written at or after that time count as current (their
//! `estimates.json` is rewritten each time the id is measured); older ones are named as left out.

use std::fs;
use std::path::Path;
use std::time::SystemTime;

use serde::Deserialize;
use serde_json::Value;

/// One benchmark id's latest result.
#[derive(Clone, Debug, PartialEq)]
pub struct Measurement {
    /// `verify/tessera/HS256`.
    pub id: String,
    pub group: String,
    /// Median time per iteration, nanoseconds, with its confidence interval.
    pub median_ns: f64,
    pub lower_ns: f64,
    pub upper_ns: f64,
    /// 0.95 for a 95 % interval.
    pub confidence: f64,
    pub throughput: Option<Throughput>,
    /// When criterion wrote the estimates.
    pub written: SystemTime,
}

/// What one iteration processes, as the benchmark declared it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Throughput {
    Elements(u64),
    /// Reported in binary multiples (KiB/s).
    Bytes(u64),
    /// Reported in decimal multiples (kB/s).
    BytesDecimal(u64),
    Bits(u64),
}

impl Measurement {
    /// Iterations per second at the median.
    pub fn iterations_per_s(&self) -> f64 {
        1e9 / self.median_ns
    }

    /// Elements per second at the median, if the benchmark counts elements.
    pub fn elements_per_s(&self) -> Option<f64> {
        match self.throughput {
            Some(Throughput::Elements(n)) => Some(n as f64 * self.iterations_per_s()),
            _ => None,
        }
    }
}

#[derive(Debug, Default)]
pub struct Results {
    /// Current results, grouped: groups in the order they were measured, ids within a group in
    /// the order they were measured (the order the benchmark declares them).
    pub current: Vec<Measurement>,
    /// Ids whose results are older than `since`, sorted.
    pub stale: Vec<String>,
}

impl Results {
    pub fn get(&self, id: &str) -> Option<&Measurement> {
        self.current.iter().find(|m| m.id == id)
    }

    /// The groups of the current results, in order.
    pub fn groups(&self) -> Vec<&str> {
        let mut groups: Vec<&str> = Vec::new();
        for m in &self.current {
            if !groups.contains(&m.group.as_str()) {
                groups.push(&m.group);
            }
        }
        groups
    }
}

#[derive(Deserialize)]
struct BenchmarkFile {
    group_id: String,
    full_id: String,
    #[serde(default)]
    throughput: Option<Value>,
}

#[derive(Deserialize)]
struct EstimatesFile {
    median: Estimate,
}

#[derive(Deserialize)]
struct Estimate {
    point_estimate: f64,
    confidence_interval: Interval,
}

#[derive(Deserialize)]
struct Interval {
    confidence_level: f64,
    lower_bound: f64,
    upper_bound: f64,
}

/// Reads every result under `dir`; with `since`, results written before it are left out.
pub fn read(dir: &Path, since: Option<SystemTime>) -> Result<Results, String> {
    let mut found = Vec::new();
    walk(dir, &mut found)?;
    let mut results = Results::default();
    for m in found {
        match since {
            Some(since) if m.written < since => results.stale.push(m.id),
            _ => results.current.push(m),
        }
    }
    results.stale.sort();
    // Order: each group where its first id was measured, then measurement order within it.
    let first = |group: &str, all: &[Measurement]| {
        all.iter()
            .filter(|m| m.group == group)
            .map(|m| m.written)
            .min()
    };
    let all = results.current.clone();
    results.current.sort_by(|a, b| {
        (first(&a.group, &all), &a.group, a.written, &a.id).cmp(&(
            first(&b.group, &all),
            &b.group,
            b.written,
            &b.id,
        ))
    });
    Ok(results)
}

fn walk(dir: &Path, found: &mut Vec<Measurement>) -> Result<(), String> {
    let entries = fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let new = path.join("new");
        if new.join("benchmark.json").is_file() && new.join("estimates.json").is_file() {
            found.push(measurement(&new)?);
        } else if path.file_name().is_some_and(|n| n != "new" && n != "base") {
            walk(&path, found)?;
        }
    }
    Ok(())
}

/// One result from its `new` directory.
fn measurement(new: &Path) -> Result<Measurement, String> {
    let read = |name: &str| {
        let path = new.join(name);
        fs::read_to_string(&path)
            .map_err(|e| format!("{}: {e}", path.display()))
            .map(|text| (path, text))
    };
    let (path, text) = read("benchmark.json")?;
    let benchmark: BenchmarkFile =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let (path, text) = read("estimates.json")?;
    let estimates: EstimatesFile =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let written = fs::metadata(&path)
        .and_then(|m| m.modified())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let median = estimates.median;
    Ok(Measurement {
        id: benchmark.full_id,
        group: benchmark.group_id,
        median_ns: median.point_estimate,
        lower_ns: median.confidence_interval.lower_bound,
        upper_ns: median.confidence_interval.upper_bound,
        confidence: median.confidence_interval.confidence_level,
        throughput: benchmark.throughput.as_ref().and_then(throughput),
        written,
    })
}

/// Criterion serialises `Throughput::Elements(1)` as `{"Elements":1}`; a kind this reader does
/// not know is reported without a throughput.
fn throughput(value: &Value) -> Option<Throughput> {
    let (kind, n) = value.as_object()?.iter().next()?;
    let n = n.as_u64()?;
    match kind.as_str() {
        "Elements" => Some(Throughput::Elements(n)),
        "Bytes" => Some(Throughput::Bytes(n)),
        "BytesDecimal" => Some(Throughput::BytesDecimal(n)),
        "Bits" => Some(Throughput::Bits(n)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scratch::Scratch;
    use std::time::Duration;

    /// Writes a result as criterion 0.7 does (trimmed to the fields it always writes).
    fn result(root: &Path, id: &str, throughput: &str, median: f64, written: SystemTime) {
        let group = id.split('/').next().unwrap();
        let new = root.join(id).join("new");
        fs::create_dir_all(&new).unwrap();
        fs::create_dir_all(root.join(id).join("base")).unwrap();
        fs::write(
            new.join("benchmark.json"),
            format!(
                r#"{{"group_id":"{group}","function_id":"f","value_str":"v","throughput":{throughput},"full_id":"{id}","directory_name":"{id}","title":"{id}"}}"#
            ),
        )
        .unwrap();
        let estimate = |x: f64| {
            format!(
                r#"{{"confidence_interval":{{"confidence_level":0.95,"lower_bound":{},"upper_bound":{}}},"point_estimate":{x},"standard_error":1.0}}"#,
                x - 1.0,
                x + 2.0
            )
        };
        let path = new.join("estimates.json");
        fs::write(
            &path,
            format!(
                r#"{{"mean":{m},"median":{m},"median_abs_dev":{m},"slope":null,"std_dev":{m}}}"#,
                m = estimate(median)
            ),
        )
        .unwrap();
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(written)
            .unwrap();
    }

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn reads_median_interval_and_throughput() {
        let dir = Scratch::new("read");
        result(
            &dir.0,
            "verify/tessera/HS256",
            r#"{"Elements":1}"#,
            1840.0,
            at(100),
        );
        result(
            &dir.0,
            "engine/workers-2/ES256",
            r#"{"Elements":256}"#,
            1e7,
            at(200),
        );
        result(&dir.0, "engine/plain/ES256", "null", 50.0, at(201));
        let results = read(&dir.0, None).unwrap();
        assert!(results.stale.is_empty());
        let m = results.get("verify/tessera/HS256").unwrap();
        assert_eq!(m.group, "verify");
        assert_eq!(
            (m.median_ns, m.lower_ns, m.upper_ns, m.confidence),
            (1840.0, 1839.0, 1842.0, 0.95)
        );
        assert_eq!(m.throughput, Some(Throughput::Elements(1)));
        assert_eq!(m.written, at(100));
        let workers = results.get("engine/workers-2/ES256").unwrap();
        assert_eq!(workers.elements_per_s(), Some(25_600.0));
        let plain = results.get("engine/plain/ES256").unwrap();
        assert_eq!(plain.throughput, None);
        assert_eq!(plain.elements_per_s(), None);
    }

    #[test]
    fn orders_groups_and_ids_as_measured() {
        let dir = Scratch::new("order");
        result(&dir.0, "verify/tessera/HS256", "null", 1.0, at(10));
        result(&dir.0, "verify/raw/HS256", "null", 1.0, at(11));
        result(&dir.0, "verify/jsonwebtoken/HS256", "null", 1.0, at(12));
        result(&dir.0, "verify/tessera/RS256", "null", 1.0, at(13));
        result(&dir.0, "engine/cache-hit-hot/330", "null", 1.0, at(20));
        result(&dir.0, "sign/tessera/ES256", "null", 1.0, at(5));
        let results = read(&dir.0, None).unwrap();
        let ids: Vec<&str> = results.current.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "sign/tessera/ES256",
                "verify/tessera/HS256",
                "verify/raw/HS256",
                "verify/jsonwebtoken/HS256",
                "verify/tessera/RS256",
                "engine/cache-hit-hot/330",
            ]
        );
        assert_eq!(results.groups(), ["sign", "verify", "engine"]);
    }

    #[test]
    fn results_older_than_the_run_are_left_out_by_name() {
        let dir = Scratch::new("stale");
        result(&dir.0, "verify/tessera/HS256", "null", 1.0, at(1000));
        result(&dir.0, "verify/old-impl/HS256", "null", 1.0, at(999));
        result(&dir.0, "gone/x/y", "null", 1.0, at(10));
        let results = read(&dir.0, Some(at(1000))).unwrap();
        let ids: Vec<&str> = results.current.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["verify/tessera/HS256"]);
        assert_eq!(results.stale, ["gone/x/y", "verify/old-impl/HS256"]);
    }

    #[test]
    fn a_broken_file_is_an_error_naming_it() {
        let dir = Scratch::new("broken");
        result(&dir.0, "verify/tessera/HS256", "null", 1.0, at(10));
        let path = dir.0.join("verify/tessera/HS256/new/estimates.json");
        fs::write(&path, "{").unwrap();
        let err = read(&dir.0, None).unwrap_err();
        assert!(
            err.contains("verify/tessera/HS256/new/estimates.json"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_directory_is_an_error() {
        let dir = Scratch::new("missing");
        let err = read(&dir.0.join("nope"), None).unwrap_err();
        assert!(err.contains("nope"), "{err}");
    }
}
