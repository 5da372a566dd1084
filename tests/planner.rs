//! End-to-end tests of the capacity planner: `tessera calibrate` serves the daemon in its own
//! process and loads it over loopback with the harness's HTTP/1.1 client; `tessera capacity`
//! plans from what it measured.

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use testkit::Scratch;

/// The shortest calibration takes about 5 s; a slow machine gets room.
const TIMEOUT: Duration = Duration::from_secs(120);

fn tessera(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tessera"));
    cmd.args(args);
    testkit::process::run_bounded(cmd, b"", TIMEOUT)
}

fn ok(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

fn positive(v: &Value, what: &str) -> f64 {
    let x = v
        .as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"));
    assert!(x > 0.0 && x.is_finite(), "{what} = {x}");
    x
}

#[test]
fn calibration_measures_the_daemon_over_http_and_feeds_the_plan() {
    let dir = Scratch::new("planner-calibrate");
    let file = dir.path().join("calibration.json");
    let file = file.to_str().expect("UTF-8 path");
    let out = tessera(&["calibrate", "--seconds", "5", "--out", file]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calibration: Value =
        serde_json::from_slice(&std::fs::read(file).expect("the calibration was written"))
            .expect("the calibration is JSON");

    // Every algorithm measured, and every HTTP figure comes from answered requests.
    let algorithms = calibration["algorithms"].as_array().expect("algorithms");
    assert_eq!(algorithms.len(), 6, "{calibration}");
    for a in algorithms {
        positive(&a["single_us"], "single_us");
        positive(&a["authz_miss_us"], "authz_miss_us");
    }
    let http = &calibration["http"];
    let cached = positive(&http["authz_cached_us"], "authz_cached_us");
    positive(&http["verify_fixed_us"], "verify_fixed_us");
    positive(&http["verify_per_token_us"], "verify_per_token_us");
    // A request answered from the cache costs less than one that verifies an ES384 signature.
    let es384 = algorithms
        .iter()
        .find(|a| a["alg"] == "ES384")
        .expect("ES384 measured");
    assert!(cached < positive(&es384["authz_miss_us"], "ES384 miss"));

    let plan = ok(&tessera(&[
        "capacity",
        "--calibration",
        file,
        "--rps",
        "2000",
        "--mix",
        "ES256=100",
        "--cache-hit",
        "0.5",
        "--json",
    ]));
    assert!(positive(&plan["plan"]["cores"], "cores") >= 1.0, "{plan}");
    positive(&plan["plan"]["max_rps"], "max_rps");
}
