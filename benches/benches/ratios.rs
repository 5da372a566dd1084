//! The `verify` ratios of PRODUCT.md, measured side by side so that clock drift cancels.
//!
//! On a shared or frequency-scaling machine, two benchmarks run one after the other can differ
//! by 20 % from drift alone, which hides the few percent that matter here. This harness
//! interleaves the three contestants of each algorithm in short time slices (tessera, raw,
//! jsonwebtoken, tessera, raw, ...), computes each round's ratios from slices a few tens of
//! milliseconds apart, and reports the median over the rounds, with the median time per
//! verification of each contestant.
//!
//! A second table does the same for signing with keys in SoftHSM: `tessera` (`Hsm::sign`
//! through the session pool) against `pkcs11` (a bare `C_Sign` on one session, asked exactly
//! what tessera asks the token).
//!
//! `cargo bench -p benches --bench ratios` prints Markdown tables; with `-- --json PATH` it also
//! writes the same figures as JSON (`benches::ratios::Ratios`; a relative PATH is taken from the
//! `benches` directory, where cargo runs benchmarks). Under `cargo test` (no `--bench` argument)
//! it runs one short round per algorithm as a smoke test.

use std::hint::black_box;
use std::time::{Duration, Instant};

use benches::hsm::{assert_verifies, open_token, signing_input, LABEL};
use benches::ratios::{Ratios, SignRow, VerifyRow, FORMAT};
use benches::{Contest, ALGORITHMS};
use testkit::SoftHsm;

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

/// Runs `contestants` interleaved for `rounds` rounds of `slice` each; returns each one's
/// time per operation in every round, in nanoseconds.
fn interleave(
    contestants: &mut [Box<dyn FnMut() + '_>],
    rounds: usize,
    slice: Duration,
) -> Vec<Vec<f64>> {
    let iterations: Vec<u64> = contestants
        .iter_mut()
        .map(|f| calibrate(f, slice))
        .collect();
    let mut ns = vec![Vec::with_capacity(rounds); contestants.len()];
    for _ in 0..rounds {
        for (i, f) in contestants.iter_mut().enumerate() {
            let start = Instant::now();
            for _ in 0..iterations[i] {
                f();
            }
            ns[i].push(start.elapsed().as_nanos() as f64 / iterations[i] as f64);
        }
    }
    ns
}

/// The median over rounds of `ns[other] / ns[0]`.
fn ratio(ns: &[Vec<f64>], other: usize) -> f64 {
    median((0..ns[0].len()).map(|k| ns[other][k] / ns[0][k]).collect())
}

/// The median over rounds; `rounds` is at least one (and odd when full, for a true median).
fn median(values: Vec<f64>) -> f64 {
    planner::median(&values).expect("at least one round")
}

fn main() {
    // SoftHSM reads SOFTHSM2_CONF once, when the module is first initialised: set it first
    // thing, before any thread exists.
    let token_dir = SoftHsm::folder("bench-ratios", LABEL);
    std::env::set_var("SOFTHSM2_CONF", token_dir.dir.join("softhsm2.conf"));

    let args: Vec<String> = std::env::args().collect();
    let full = args.iter().any(|a| a == "--bench");
    let json = args
        .iter()
        .position(|a| a == "--json")
        .map(|i| args.get(i + 1).expect("--json takes a path").clone());
    let (rounds, slice) = if full {
        (ROUNDS, SLICE)
    } else {
        (1, Duration::from_millis(1))
    };
    let mut report = Ratios {
        format: FORMAT,
        rounds,
        slice_ms: slice.as_secs_f64() * 1e3,
        ..Ratios::default()
    };
    println!("{}", VerifyRow::HEADER);
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
        let ns = interleave(&mut contestants, rounds, slice);
        let (vs_raw, vs_jwt) = (ratio(&ns, 1), ratio(&ns, 2));
        let [t, r, j]: [f64; 3] = [0, 1, 2].map(|i| median(ns[i].clone()));
        let row = VerifyRow {
            alg: alg.name().to_owned(),
            tessera_ns: t,
            raw_ns: r,
            jsonwebtoken_ns: j,
            tessera_vs_raw: vs_raw,
            tessera_vs_jsonwebtoken: vs_jwt,
        };
        println!("{}", row.markdown());
        report.verify.push(row);
    }

    println!();
    println!("{}", SignRow::HEADER);
    let (hsm, keys) = open_token(&token_dir.dir, token_dir.label);
    for key in &keys {
        let input = signing_input(key);
        let message = input.as_bytes();
        let raw_signer = hsm.raw_signer(key).expect("a raw signing session");
        let data = raw_signer.input(message);
        let raw = raw_signer.sign(&data).expect("raw C_Sign");
        assert_verifies(key, &input, &raw, "raw PKCS#11");
        let ours = hsm.sign(key, message).expect("tessera signs");
        assert_verifies(key, &input, &ours, "tessera");
        let mut contestants: [Box<dyn FnMut() + '_>; 2] = [
            Box::new(|| {
                black_box(hsm.sign(key, black_box(message)).is_ok());
            }),
            Box::new(|| {
                black_box(raw_signer.sign(black_box(&data)).is_ok());
            }),
        ];
        let ns = interleave(&mut contestants, rounds, slice);
        let row = SignRow {
            alg: key.life.alg.name().to_owned(),
            tessera_ns: median(ns[0].clone()),
            pkcs11_ns: median(ns[1].clone()),
            tessera_vs_pkcs11: ratio(&ns, 1),
        };
        println!("{}", row.markdown());
        report.sign.push(row);
    }
    // Close the sessions and finalise the module before the token directory goes.
    drop(hsm);
    drop(token_dir);

    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&report).expect("the report serialises");
        std::fs::write(&path, text + "\n").unwrap_or_else(|e| panic!("writing {path}: {e}"));
    }
}
