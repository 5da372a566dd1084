//! The result of one run, as `--json` writes it and `--html` draws it. Field names are the JSON
//! format's; keep them stable (other tools read these files).

use serde::{Deserialize, Serialize};

/// Format version of [`Report`].
pub const FORMAT: u32 = 1;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub format: u32,
    /// `authz`, `introspect`, `verify-batch`, `token`, `jwks` or `get`.
    pub scenario: String,
    /// The URL requests went to.
    pub target: String,
    /// `closed` (fixed connections, as fast as answered) or `open` (fixed arrival rate).
    pub mode: String,
    /// Requests per second asked for (open loop only).
    pub rate: Option<f64>,
    pub connections: usize,
    pub threads: usize,
    /// `http1` or `http2`.
    pub protocol: String,
    /// HTTP/2: requests in flight per connection (`--streams`); absent under HTTP/1.1.
    #[serde(default)]
    pub streams: Option<usize>,
    pub duration_s: f64,
    pub warmup_s: f64,
    /// Token mix as asked: algorithm → share in percent.
    pub mix: Vec<(String, f64)>,
    /// How many different tokens were sent.
    pub distinct: usize,
    /// Share of deliberately invalid tokens, percent.
    pub invalid_pct: f64,
    /// Tokens per request (verify-batch only).
    pub batch: Option<usize>,
    /// Requests completed in the measured window (after warm-up).
    pub requests: u64,
    /// Answers by HTTP status, `("200", n)`.
    pub statuses: Vec<(String, u64)>,
    /// Failures without an answer, by kind (`connect`, `io`, `timeout`, `protocol`), and answers
    /// whose status was not the expected one (`unexpected_status`).
    pub errors: Vec<(String, u64)>,
    /// Completed requests per second over the measured window.
    pub throughput: f64,
    /// Latency summary, microseconds; open loop measures from each request's intended start.
    pub latency_us: Summary,
    /// One point per second of the measured window.
    pub timeline: Vec<Second>,
    /// The latency distribution: (percentile 0..=100, microseconds), ascending.
    pub distribution: Vec<(f64, u64)>,
    /// Free text: machine, versions, command line.
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

/// One second of the run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Second {
    /// Seconds since the measured window began (the start of this second).
    pub t: f64,
    pub requests: u64,
    pub errors: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}
