//! What of the load-test harness other crates use: its HTTP/1.1 client ([`http1`]), which the
//! capacity planner loads the daemon with too, and the JSON format of its reports ([`report`]),
//! which the harness's tests read back. The `tessera-loadtest` binary (`src/main.rs`) holds the
//! rest: the command line, scenarios, the load loops, HTTP/2 and the reports' rendering.
//!
//! The library returns typed errors; only the binary uses `anyhow`.

#![forbid(unsafe_code)]

pub mod http1;
pub mod report;
