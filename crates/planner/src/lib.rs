//! Capacity planning for the tessera daemon.
//!
//! Two halves:
//!
//! - [`calibrate`] measures this machine: CPU time per verification for each algorithm (in the
//!   calling thread and in an engine worker taking batches), the cost of a verified-token cache
//!   hit, and the daemon's own CPU time per HTTP request (`/v1/authz` answered from the cache,
//!   with every token missing, with a share of new tokens; `/v1/verify` batches), by serving
//!   the real `server` crate in this process and loading it over loopback. Each figure is
//!   measured until two consecutive estimates agree ([`settle`]) and keeps its spread. The
//!   result is a [`Calibration`], saved as JSON.
//! - [`plan`] turns a calibration and a [`Workload`] (tokens per second, algorithm mix, cache hit
//!   ratio, batch size, latency target) into a [`Plan`]: CPU demand, the cores needed at a target
//!   utilisation, the share of CPU per algorithm and the expected p99 from an M/M/c queue.
//!   [`max_rps`] is the most a given number of cores can answer. Both carry the uncertainty
//!   the calibration's spreads give them.
//!
//! The model and the queueing formulas do no I/O; only [`calibrate`] reads `/proc` (CPU time,
//! the CPU's name), writes a temporary key set file for the server it starts, and opens
//! loopback sockets.

#![forbid(unsafe_code)]

mod calibrate;
mod calibration;
mod cpu;
mod fixtures;
mod load;
mod model;
pub mod queue;
mod stats;

pub use calibrate::{calibrate, CalibrateError, Progress, MIN_BUDGET};
pub use calibration::{
    AlgorithmCost, Calibration, CalibrationError, Estimate, HttpCost, Machine, MissPoint, FORMAT,
};
pub use fixtures::FixtureError;
pub use load::LoadError;
pub use model::{max_rps, plan, Mix, MixError, Plan, PlanError, Share, Throughput, Workload};
pub use stats::{median, settle, SettleError, Settled};

/// The algorithms a calibration measures, in the order they are reported.
pub const ALGORITHMS: [jose::Algorithm; 6] = [
    jose::Algorithm::HS256,
    jose::Algorithm::RS256,
    jose::Algorithm::PS256,
    jose::Algorithm::ES256,
    jose::Algorithm::ES384,
    jose::Algorithm::EdDSA,
];
