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
use benches::ratios::{BatchRow, Ratios, SignRow, VerifyRow, FORMAT};
use benches::{Contest, ALGORITHMS};
use engine::lanes::{self, Signed, Tally};
use jose::Algorithm;
use multibuffer::{MultiBuffer, Source};
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

/// Tokens per batch in the batched table: what `/v1/verify` callers send and a busy worker takes.
const BATCH: usize = 64;

/// The engine's batched verification of 64 distinct tokens against the single path and the raw
/// signature checks of the same tokens, per algorithm with a vectorised lane.
fn batched(report: &mut Ratios, rounds: usize, slice: Duration) {
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crypto/lib");
    let mb = match MultiBuffer::load(&Source::Auto {
        folder: Some(folder),
    }) {
        Ok(mb) => {
            report.multibuffer = format!("active: {}", mb.version());
            Some(mb)
        }
        Err(e) => {
            report.multibuffer = format!("not used: {e}");
            None
        }
    };
    println!();
    println!(
        "Batches of {BATCH} tokens; multibuffer {}",
        report.multibuffer
    );
    println!("{}", BatchRow::HEADER);
    let validation = benches::tessera_validation();
    for alg in [
        Algorithm::RS256,
        Algorithm::PS256,
        Algorithm::ES256,
        Algorithm::EdDSA,
    ] {
        let signer = benches::Signer::generate(alg);
        let keys = signer.key_set();
        let raw = signer.raw_verifier();
        let now = benches::now();
        let claims = benches::access_token_claims(now);
        let tokens: Vec<String> = (0..BATCH)
            .map(|i| signer.token(&claims.replacen("{", &format!("{{\"n\":{i},"), 1)))
            .collect();
        let inputs: Vec<(&[u8], Vec<u8>)> = tokens
            .iter()
            .map(|t| (benches::signing_input(t), benches::decoded_signature(t)))
            .collect();
        let signed: Vec<Signed<'_>> = tokens
            .iter()
            .map(|t| Signed {
                token: t.as_bytes(),
                keys: &keys,
                validation: &validation,
            })
            .collect();
        let mut tally = Tally::default();
        let all_valid = lanes::verify_all(mb.as_ref(), &signed, now, &mut tally)
            .iter()
            .all(Result::is_ok);
        assert!(all_valid, "{alg}: the batched path refused a valid token");
        let mut contestants: [Box<dyn FnMut() + '_>; 4] = [
            Box::new(|| {
                let mut tally = Tally::default();
                black_box(lanes::verify_all(
                    mb.as_ref(),
                    black_box(&signed),
                    now,
                    &mut tally,
                ));
            }),
            Box::new(|| {
                for t in &tokens {
                    black_box(jose::jwt::verify(black_box(t), &keys, &validation, now).is_ok());
                }
            }),
            Box::new(|| {
                for (message, signature) in &inputs {
                    black_box(raw.verify(black_box(message), signature).is_ok());
                }
            }),
            Box::new(|| {
                let mut tally = Tally::default();
                black_box(lanes::verify_all(None, black_box(&signed), now, &mut tally));
            }),
        ];
        let ns = interleave(&mut contestants, rounds, slice);
        let per_token = |i: usize| median(ns[i].clone()) / BATCH as f64;
        let row = BatchRow {
            alg: alg.name().to_owned(),
            batched_ns: per_token(0),
            single_ns: per_token(1),
            raw_ns: per_token(2),
            batched_vs_single: ratio(&ns, 1),
            batched_vs_raw: ratio(&ns, 2),
            unvectorised_ns: per_token(3),
            // The single path's throughput is the reference here.
            unvectorised_vs_single: median((0..ns[1].len()).map(|k| ns[1][k] / ns[3][k]).collect()),
        };
        println!("{}", row.markdown());
        report.batch.push(row);
    }
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

    batched(&mut report, rounds, slice);

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
