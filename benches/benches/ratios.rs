//! The `verify` ratios of PRODUCT.md, measured side by side so that clock drift cancels.
//!
//! On a shared or frequency-scaling machine, two benchmarks run one after the other can differ
//! by 20 % from drift alone, which hides the few percent that matter here. This harness
//! interleaves the three contestants of each algorithm in short time slices (tessera, raw,
//! jsonwebtoken, tessera, raw, ...), computes each round's ratios from slices a few tens of
//! milliseconds apart, and reports the median over the rounds, with the median time per
//! verification of each contestant.
//!
//! `cargo bench -p benches --bench ratios` prints a Markdown table; under `cargo test` (no
//! `--bench` argument) it runs one short round per algorithm as a smoke test.

use std::hint::black_box;
use std::time::{Duration, Instant};

use benches::{Contest, ALGORITHMS};

/// Rounds per algorithm (odd, for a true median) and the length of one contestant's slice.
const ROUNDS: usize = 41;
const SLICE: Duration = Duration::from_millis(20);

/// Iterations of `f` that take about `slice`; also warms `f` up.
fn calibrate(f: &mut dyn FnMut(), slice: Duration) -> u64 {
    let mut n = 1u64;
    loop {
        let start = Instant::now();
        for _ in 0..n {
            f();
        }
        let elapsed = start.elapsed();
        if elapsed >= slice / 4 {
            return ((n as f64) * slice.as_secs_f64() / elapsed.as_secs_f64()).ceil() as u64;
        }
        n *= 2;
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn time(ns: f64) -> String {
    let rate = 1e9 / ns;
    let rate = if rate >= 1e6 {
        format!("{:.2} M/s", rate / 1e6)
    } else {
        format!("{:.1} k/s", rate / 1e3)
    };
    if ns >= 1000.0 {
        format!("{:.2} µs ({rate})", ns / 1000.0)
    } else {
        format!("{ns:.0} ns ({rate})")
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (rounds, slice) = if full {
        (ROUNDS, SLICE)
    } else {
        (1, Duration::from_millis(1))
    };
    println!("| alg | tessera | raw | jsonwebtoken | tessera / raw | tessera / jsonwebtoken |");
    println!("|---|---|---|---|---|---|");
    for alg in ALGORITHMS {
        let contest = Contest::new(alg);
        let token = contest.fixture.token.as_str();
        let signature = contest.signature();
        let mut contestants: [Box<dyn FnMut() + '_>; 3] = [
            Box::new(|| {
                black_box(contest.tessera(black_box(token)).is_ok());
            }),
            Box::new(|| {
                black_box(contest.raw(black_box(signature)).is_ok());
            }),
            Box::new(|| {
                black_box(contest.jsonwebtoken(black_box(token)).is_ok());
            }),
        ];
        let iterations: Vec<u64> = contestants
            .iter_mut()
            .map(|f| calibrate(f, slice))
            .collect();
        let mut ns: [Vec<f64>; 3] = Default::default();
        for _ in 0..rounds {
            for (i, f) in contestants.iter_mut().enumerate() {
                let start = Instant::now();
                for _ in 0..iterations[i] {
                    f();
                }
                ns[i].push(start.elapsed().as_nanos() as f64 / iterations[i] as f64);
            }
        }
        let ratio = |other: usize| median((0..rounds).map(|k| ns[other][k] / ns[0][k]).collect());
        let (vs_raw, vs_jwt) = (ratio(1), ratio(2));
        let [t, r, j] = ns.map(median);
        println!(
            "| {} | {} | {} | {} | {vs_raw:.3} | {vs_jwt:.2}× |",
            alg.name(),
            time(t),
            time(r),
            time(j)
        );
    }
}
