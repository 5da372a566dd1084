//! End-to-end tests of the `tessera` binary: the verification contract of PRODUCT.md (exit codes
//! 0/1/2, one JSON verdict per token on stdout, `-` for stdin, `--now`), run as a real process.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;

use testkit::{Algorithm, Issuer, Scratch};

const TIMEOUT: Duration = Duration::from_secs(30);
const NOW: i64 = 1_767_225_600;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs the binary with `args` and `stdin`, killing it if it runs past the timeout.
fn tessera(args: &[&str], stdin: &[u8]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tessera"));
    cmd.args(args);
    testkit::process::run_bounded(cmd, stdin, TIMEOUT)
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited normally, not by a signal")
}

fn verdicts(out: &Output) -> Vec<Value> {
    String::from_utf8(out.stdout.clone())
        .expect("stdout is UTF-8")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

/// An Ed25519 issuer (`kid` `k1`).
fn new_issuer() -> Issuer {
    Issuer::new(Algorithm::EdDSA, "k1")
}

fn claims(extra: &str) -> String {
    format!(
        r#"{{"iss":"https://issuer.example","sub":"alice","aud":["api://orders","api://billing"],"iat":{NOW},"exp":{}{extra}}}"#,
        NOW + 300
    )
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

#[test]
fn valid_token_prints_header_and_claims_and_exits_0() {
    let dir = Scratch::new("cli-valid");
    let issuer = new_issuer();
    let jwks = dir.write("jwks.json", issuer.jwks());
    let token = issuer.sign(claims(""));
    let now = NOW.to_string();
    let out = tessera(
        &[
            "verify",
            "--jwks",
            path_str(&jwks),
            "--now",
            &now,
            "--iss",
            "https://issuer.example",
            "--aud",
            "api://nope",
            "--aud",
            "api://billing",
            "--typ",
            "application/at+jwt",
            &token,
        ],
        b"",
    );
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let v = verdicts(&out);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0]["valid"], true);
    assert_eq!(v[0]["header"]["alg"], "EdDSA");
    assert_eq!(v[0]["header"]["kid"], "k1");
    assert_eq!(v[0]["claims"]["sub"], "alice");
    assert_eq!(v[0]["claims"]["aud"][1], "api://billing");
    assert!(out.stderr.is_empty());
}

#[test]
fn invalid_tokens_print_a_code_and_exit_1() {
    let dir = Scratch::new("cli-invalid");
    let issuer = new_issuer();
    let other = new_issuer();
    let jwks = dir.write("jwks.json", issuer.jwks());
    let now = NOW.to_string();
    let good = issuer.sign(claims(""));
    let (h, p, _) = {
        let mut it = good.split('.');
        (it.next().unwrap(), it.next().unwrap(), it.next().unwrap())
    };
    let none = format!("{}.{p}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#));
    let cases = [
        (other.sign(claims("")), "bad_signature"),
        (
            issuer.sign(format!(r#"{{"exp":{}}}"#, NOW - 3600)),
            "expired",
        ),
        (
            issuer.sign(format!(r#"{{"exp":{},"nbf":{}}}"#, NOW + 900, NOW + 600)),
            "not_yet_valid",
        ),
        (
            issuer.sign(claims("").replace("https://issuer.example", "https://issuer.example/")),
            "invalid_issuer",
        ),
        (
            issuer.sign(
                claims("")
                    .replace("api://orders", "api://order")
                    .replace("api://billing", "API://BILLING"),
            ),
            "invalid_audience",
        ),
        (issuer.sign(claims(r#","exp":1"#)), "malformed"),
        (issuer.sign(r#"{"exp":"soon"}"#), "invalid_claim"),
        (issuer.sign(r#"{"sub":"x"}"#), "missing_claim"),
        (
            issuer.sign_raw(r#"{"alg":"EdDSA","kid":"k1","cty":"JWT"}"#, claims("")),
            "nested_token",
        ),
        (
            issuer.sign_raw(
                r#"{"alg":"EdDSA","kid":"k1","crit":["exp"],"exp":1}"#,
                claims(""),
            ),
            "unsupported_critical_header",
        ),
        (
            issuer.sign_raw(r#"{"alg":"EdDSA","kid":"nope","typ":"at+jwt"}"#, claims("")),
            "unknown_key",
        ),
        (
            issuer.sign_raw(r#"{"alg":"EdDSA","kid":7}"#, claims("")),
            "invalid_header",
        ),
        (
            issuer.sign_raw(r#"{"alg":"EdDSA","kid":"k1","typ":"JWT"}"#, claims("")),
            "invalid_type",
        ),
        (none, "unsupported_algorithm"),
        (format!("{h}.{p}"), "malformed"),
        (format!("{h}.{p}.{}", "A".repeat(20_000)), "too_large"),
    ];
    let mut stdin = String::new();
    for (token, _) in &cases {
        stdin.push_str(token);
        stdin.push('\n');
    }
    let out = tessera(
        &[
            "verify",
            "--jwks",
            path_str(&jwks),
            "--now",
            &now,
            "--iss",
            "https://issuer.example",
            "--aud",
            "api://orders",
            "--aud",
            "api://billing",
            "--typ",
            "at+jwt",
            "-",
        ],
        stdin.as_bytes(),
    );
    assert_eq!(code(&out), 1, "{}", String::from_utf8_lossy(&out.stderr));
    let v = verdicts(&out);
    assert_eq!(v.len(), cases.len(), "one verdict per line");
    for ((_, expected), verdict) in cases.iter().zip(&v) {
        assert_eq!(verdict["valid"], false, "{verdict}");
        assert_eq!(verdict["error"], *expected, "{verdict}");
        assert!(verdict["detail"].as_str().is_some_and(|d| !d.is_empty()));
    }
    // A single token argument gives the same verdict and exit code.
    let out = tessera(
        &[
            "verify",
            "--jwks",
            path_str(&jwks),
            "--now",
            &now,
            &cases[0].0,
        ],
        b"",
    );
    assert_eq!(code(&out), 1);
    assert_eq!(verdicts(&out)[0]["error"], "bad_signature");
}

#[test]
fn stdin_mode_exits_0_only_when_every_token_is_valid() {
    let dir = Scratch::new("cli-stdin");
    let issuer = new_issuer();
    let jwks = dir.write("jwks.json", issuer.jwks());
    let now = NOW.to_string();
    let tokens: Vec<String> = (0..50)
        .map(|i| issuer.sign(claims(&format!(r#","n":{i}"#))))
        .collect();
    let all = tokens.join("\r\n") + "\r\n";
    let out = tessera(
        &["verify", "--jwks", path_str(&jwks), "--now", &now, "-"],
        all.as_bytes(),
    );
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stdout));
    let v = verdicts(&out);
    assert_eq!(v.len(), 50);
    for (i, verdict) in v.iter().enumerate() {
        assert_eq!(verdict["claims"]["n"], i, "verdicts keep input order");
    }
    // Without a token argument, stdin is read too; one bad line makes the exit code 1.
    let mixed = format!("{}\n\n{}", tokens[0], tokens[1]);
    let out = tessera(
        &["verify", "--jwks", path_str(&jwks), "--now", &now],
        mixed.as_bytes(),
    );
    assert_eq!(code(&out), 1);
    let v = verdicts(&out);
    assert_eq!(v.len(), 3);
    assert_eq!(
        [&v[0]["valid"], &v[1]["valid"], &v[2]["valid"]],
        [true, false, true]
    );
}

#[test]
fn empty_stdin_is_not_all_valid() {
    let dir = Scratch::new("cli-no-token");
    let issuer = new_issuer();
    let jwks = dir.write("jwks.json", issuer.jwks());
    for input in [&b""[..], b"\n", b"\n\r\n  \n\t\n"] {
        for cmd in [&["verify"][..], &["jws", "verify"]] {
            let args = [cmd, &["--jwks", path_str(&jwks), "-"]].concat();
            let out = tessera(&args, input);
            assert_eq!(code(&out), 2, "{args:?} with {input:?}");
            assert!(
                out.stdout.is_empty(),
                "{args:?} with {input:?}: no verdicts"
            );
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("no token"), "{args:?}: {err}");
        }
    }
    // Blank lines next to a token still get their verdicts, in order.
    let token = issuer.sign(claims(""));
    let out = tessera(
        &[
            "verify",
            "--jwks",
            path_str(&jwks),
            "--now",
            &NOW.to_string(),
        ],
        format!("\n{token}\n\n").as_bytes(),
    );
    assert_eq!(code(&out), 1);
    let v = verdicts(&out);
    assert_eq!(
        [&v[0]["valid"], &v[1]["valid"], &v[2]["valid"]],
        [false, true, false]
    );
}

#[test]
fn now_and_leeway_decide_expiry() {
    let dir = Scratch::new("cli-clock");
    let issuer = new_issuer();
    let jwks = dir.write("jwks.json", issuer.jwks());
    let token = issuer.sign(format!(r#"{{"exp":{NOW}}}"#));
    let run = |now: i64, leeway: &str| {
        let now = now.to_string();
        code(&tessera(
            &[
                "verify",
                "--jwks",
                path_str(&jwks),
                "--now",
                &now,
                "--leeway",
                leeway,
                &token,
            ],
            b"",
        ))
    };
    assert_eq!(run(NOW - 1, "0"), 0);
    assert_eq!(run(NOW, "0"), 1);
    assert_eq!(run(NOW + 59, "60"), 0);
    assert_eq!(run(NOW + 60, "60"), 1);
    // Without --now the real clock says 2026-01-01 + 5 min is long gone... or not yet: either
    // way the answer is a verdict, never a crash.
    assert!(matches!(
        code(&tessera(
            &["verify", "--jwks", path_str(&jwks), &token],
            b""
        )),
        0 | 1
    ));
}

/// Regression: `exp: 1e20` verified through the CLI. NumericDates outside 1970 to year 9999
/// are invalid claims.
#[test]
fn numeric_dates_outside_1970_to_9999_are_invalid_claims() {
    let dir = Scratch::new("cli-dates");
    let issuer = new_issuer();
    let jwks = dir.write("jwks.json", issuer.jwks());
    let now = NOW.to_string();
    let cases = [
        (r#"{"exp":253402300799}"#.to_string(), true),
        (format!(r#"{{"exp":{}.5,"nbf":0}}"#, NOW + 60), true),
        (r#"{"exp":1e20}"#.into(), false),
        (r#"{"exp":253402300800}"#.into(), false),
        (format!(r#"{{"exp":{},"nbf":-1}}"#, NOW + 60), false),
        (format!(r#"{{"exp":{},"iat":1e20}}"#, NOW + 60), false),
    ];
    let stdin: String = cases
        .iter()
        .map(|(claims, _)| issuer.sign(claims) + "\n")
        .collect();
    let out = tessera(
        &["verify", "--jwks", path_str(&jwks), "--now", &now, "-"],
        stdin.as_bytes(),
    );
    assert_eq!(code(&out), 1, "{}", String::from_utf8_lossy(&out.stderr));
    let v = verdicts(&out);
    assert_eq!(v.len(), cases.len());
    for ((claims, valid), verdict) in cases.iter().zip(&v) {
        assert_eq!(verdict["valid"], *valid, "{claims}: {verdict}");
        if !valid {
            assert_eq!(verdict["error"], "invalid_claim", "{claims}: {verdict}");
        }
    }
}

/// Regression: an RFC 9701 introspection response with `exp` verified as an access token. It
/// is refused with or without `--typ`; `jws verify` still checks its signature.
#[test]
fn introspection_responses_are_refused_as_access_tokens() {
    let dir = Scratch::new("cli-introspection");
    let issuer = new_issuer();
    let jwks = dir.write("jwks.json", issuer.jwks());
    let now = NOW.to_string();
    let answer = issuer.sign_raw(
        r#"{"alg":"EdDSA","kid":"k1","typ":"application/token-introspection+jwt"}"#,
        claims(r#","token_introspection":{"active":true,"sub":"alice"}"#),
    );
    for typ in [
        &[][..],
        &["--typ", "at+jwt"],
        &["--typ", "token-introspection+jwt"],
    ] {
        let mut args = vec!["verify", "--jwks", path_str(&jwks), "--now", &now];
        args.extend_from_slice(typ);
        args.push(&answer);
        let out = tessera(&args, b"");
        assert_eq!(code(&out), 1, "{typ:?}");
        assert_eq!(
            verdicts(&out)[0]["error"],
            "introspection_response",
            "{typ:?}"
        );
    }
    let out = tessera(&["jws", "verify", "--jwks", path_str(&jwks), &answer], b"");
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
}

/// `--max-lifetime` refuses tokens that live longer: `exp - iat`, or `exp - now` without `iat`.
#[test]
fn max_lifetime_bounds_a_tokens_lifetime() {
    let dir = Scratch::new("cli-lifetime");
    let issuer = new_issuer();
    let jwks = dir.write("jwks.json", issuer.jwks());
    let now = NOW.to_string();
    let cases = [
        (format!(r#"{{"iat":{NOW},"exp":{}}}"#, NOW + 300), "valid"),
        (
            format!(r#"{{"iat":{NOW},"exp":{}}}"#, NOW + 301),
            "lifetime_exceeded",
        ),
        (format!(r#"{{"exp":{}}}"#, NOW + 300), "valid"),
        (
            format!(r#"{{"exp":{}}}"#, NOW + 86_400),
            "lifetime_exceeded",
        ),
    ];
    for (claims, expected) in &cases {
        let token = issuer.sign(claims);
        let out = tessera(
            &[
                "verify",
                "--jwks",
                path_str(&jwks),
                "--now",
                &now,
                "--leeway",
                "0",
                "--max-lifetime",
                "300",
                &token,
            ],
            b"",
        );
        let v = &verdicts(&out)[0];
        if *expected == "valid" {
            assert_eq!(code(&out), 0, "{claims}: {v}");
        } else {
            assert_eq!(code(&out), 1, "{claims}: {v}");
            assert_eq!(v["error"], *expected, "{claims}");
        }
    }
    let out = tessera(
        &[
            "verify",
            "--jwks",
            path_str(&jwks),
            "--max-lifetime",
            "0",
            "-",
        ],
        b"",
    );
    assert_eq!(code(&out), 2, "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn jws_verify_checks_only_the_signature() {
    let dir = Scratch::new("cli-jws");
    let issuer = new_issuer();
    let jwks = dir.write("jwks.json", issuer.jwks());
    let token = issuer.sign_raw(r#"{"alg":"EdDSA"}"#, "not JSON at all \u{2603}");
    let out = tessera(&["jws", "verify", "--jwks", path_str(&jwks), &token], b"");
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let v = verdicts(&out);
    assert_eq!(v[0]["valid"], true);
    assert_eq!(v[0]["payload"], token.split('.').nth(1).unwrap());
    assert_eq!(v[0]["header"]["alg"], "EdDSA");
    // `verify` refuses the same token: its payload is not a claims set.
    let out = tessera(&["verify", "--jwks", path_str(&jwks), &token], b"");
    assert_eq!(code(&out), 1);
    assert_eq!(verdicts(&out)[0]["error"], "malformed");
    // The tampered token fails `jws verify` too.
    let bad = format!("{}x", &token[..token.len() - 1]);
    let out = tessera(&["jws", "verify", "--jwks", path_str(&jwks), &bad], b"");
    assert_eq!(code(&out), 1);
}

#[test]
fn published_vectors_verify_through_the_cli() {
    let dir = Scratch::new("cli-vectors");
    let mut count = 0;
    for file in ["rfc7515.json", "rfc7520.json", "rfc8037.json"] {
        let text =
            std::fs::read_to_string(root().join("tests/vectors").join(file)).expect("vectors");
        let doc: Value = serde_json::from_str(&text).expect("JSON");
        for v in doc["vectors"].as_array().expect("vectors") {
            let jwks = dir.write("jwks.json", &v["jwks"].to_string());
            let token = v["token"].as_str().expect("token");
            let out = tessera(&["jws", "verify", "--jwks", path_str(&jwks), token], b"");
            assert_eq!(
                code(&out),
                0,
                "{}: {}",
                v["name"],
                String::from_utf8_lossy(&out.stdout)
            );
            if v["claims"] == true {
                let now = v["now"].to_string();
                let out = tessera(
                    &["verify", "--jwks", path_str(&jwks), "--now", &now, token],
                    b"",
                );
                assert_eq!(code(&out), 0, "{}", v["name"]);
                assert_eq!(verdicts(&out)[0]["claims"]["iss"], "joe");
            }
            count += 1;
        }
    }
    assert_eq!(count, 9);
}

#[test]
fn example_tokens_give_their_documented_verdicts() {
    let examples = root().join("examples");
    let jwks = examples.join("jwks.json");
    let expected = [
        ("valid", None),
        ("expired", Some("expired")),
        ("wrong-audience", Some("invalid_audience")),
        ("tampered", Some("bad_signature")),
        ("alg-none", Some("unsupported_algorithm")),
        ("hs256-key-confusion", Some("key_algorithm_mismatch")),
    ];
    for (name, error) in expected {
        let token = std::fs::read(examples.join(format!("{name}.jwt"))).expect("example token");
        let out = tessera(
            &[
                "verify",
                "--jwks",
                path_str(&jwks),
                "--iss",
                "https://issuer.example",
                "--aud",
                "api://orders",
                "--now",
                "1767226200",
                "-",
            ],
            &token,
        );
        let v = verdicts(&out);
        match error {
            None => assert_eq!(
                (code(&out), &v[0]["valid"]),
                (0, &Value::Bool(true)),
                "{name}"
            ),
            Some(e) => assert_eq!((code(&out), &v[0]["error"]), (1, &Value::from(e)), "{name}"),
        }
    }
}

#[test]
fn configuration_errors_exit_2_with_a_message() {
    let dir = Scratch::new("cli-config");
    let issuer = new_issuer();
    let token = issuer.sign(claims(""));
    let private = dir.write(
        "private.json",
        r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"}]}"#,
    );
    let enc_only = dir.write(
        "enc.json",
        r#"{"keys":[{"kty":"OKP","crv":"Ed25519","use":"enc","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#,
    );
    let not_json = dir.write("bad.json", "{\"keys\":[");
    let dup = dir.write(
        "dup.json",
        &issuer.jwks().replace(
            "]}",
            &format!(",{}]}}", &issuer.jwks()[9..issuer.jwks().len() - 2]),
        ),
    );
    let missing = dir.join("missing.json");
    for (jwks, why) in [
        (&private, "private"),
        (&enc_only, "no usable"),
        (&not_json, "JSON"),
        (&dup, "duplicate kid"),
        (&missing, "missing.json"),
    ] {
        let out = tessera(&["verify", "--jwks", path_str(jwks), &token], b"");
        assert_eq!(code(&out), 2, "{why}");
        assert!(out.stdout.is_empty(), "{why}: nothing on stdout");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{why}: {err}");
        assert!(!err.contains(&token), "tokens never reach stderr");
    }
    // The skipped key is reported on stderr.
    assert!(String::from_utf8_lossy(
        &tessera(&["verify", "--jwks", path_str(&enc_only), &token], b"").stderr
    )
    .contains("skipped"));
    // Usage errors.
    assert_eq!(code(&tessera(&["verify", &token], b"")), 2);
    assert_eq!(
        code(&tessera(
            &[
                "verify",
                "--jwks",
                path_str(&private),
                "--now",
                "soon",
                &token
            ],
            b""
        )),
        2
    );
    assert_eq!(code(&tessera(&["nonsense"], b"")), 2);
}

#[test]
fn hostile_input_never_crashes_or_hangs() {
    let dir = Scratch::new("cli-hostile");
    let issuer = new_issuer();
    let jwks = dir.write("jwks.json", issuer.jwks());
    let mut input: Vec<u8> = Vec::new();
    let mut lines = 0;
    let mut push = |line: &[u8]| {
        input.extend_from_slice(line);
        input.push(b'\n');
        lines += 1;
    };
    push(b"\x00\x01\x02\xff\xfe");
    push(&[b'.'; 5000]);
    push(&vec![b'A'; 1 << 20]);
    push("é.ü.ß".as_bytes());
    push(format!("{}.e30.", URL_SAFE_NO_PAD.encode("[".repeat(3000))).as_bytes());
    push(
        format!(
            "{}.e30.AA",
            URL_SAFE_NO_PAD.encode(format!(
                "{{\"alg\":\"EdDSA\",\"x\":{}1{}}}",
                "[".repeat(100),
                "]".repeat(100)
            ))
        )
        .as_bytes(),
    );
    let mut seed = 0x9e3779b97f4a7c15u64;
    for _ in 0..200 {
        let len = (seed % 400) as usize;
        let line: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let alphabet = b"eyJhbGciOiJFZERTQSJ9._-.AZaz09\x00\xff{}\"";
                alphabet[(seed % alphabet.len() as u64) as usize]
            })
            .filter(|&b| b != b'\n')
            .collect();
        push(&line);
    }
    let out = tessera(&["verify", "--jwks", path_str(&jwks), "-"], &input);
    assert_eq!(code(&out), 1, "{}", String::from_utf8_lossy(&out.stderr));
    let v = verdicts(&out);
    assert_eq!(v.len(), lines);
    assert!(v.iter().all(|v| v["valid"] == false));
    assert_eq!(v[2]["error"], "too_large");
}

/// The signature attack classes, through the binary: each is refused with exit 1 and a JSON
/// verdict naming the reason.
#[test]
fn signature_attacks_are_refused_through_the_cli() {
    use aws_lc_rs::signature::{
        EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED_SIGNING,
    };
    let dir = Scratch::new("cli-attacks");
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .expect("keygen");
    let fixed =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).expect("key");
    let der =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).expect("key");
    let point = fixed.public_key().as_ref();
    let jwk = format!(
        r#"{{"kty":"EC","crv":"P-256","kid":"ec","x":"{}","y":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(&point[1..33]),
        URL_SAFE_NO_PAD.encode(&point[33..])
    );
    let jwks = dir.write("jwks.json", &format!("{{\"keys\":[{jwk}]}}"));
    let attacker = new_issuer();
    let attacker_jwk = attacker.jwks()[9..attacker.jwks().len() - 2].to_owned();

    let header = r#"{"alg":"ES256","kid":"ec"}"#;
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims(""))
    );
    let with_sig = |sig: &[u8]| format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig));
    let rng = SystemRandom::new();
    let good = fixed.sign(&rng, input.as_bytes()).expect("sign");
    let der_sig = der.sign(&rng, input.as_bytes()).expect("sign");
    let n = p256_order();
    let mut r_is_n = n.clone();
    r_is_n.extend_from_slice(&good.as_ref()[32..]);
    let cases = [
        (with_sig(good.as_ref()), None),
        (with_sig(&[0u8; 64]), Some("bad_signature")),
        (with_sig(&r_is_n), Some("bad_signature")),
        (with_sig(der_sig.as_ref()), Some("bad_signature")),
        (with_sig(&good.as_ref()[..63]), Some("bad_signature")),
        (with_sig(&[good.as_ref(), &[0]].concat()), Some("bad_signature")),
        // The attacker's own key, embedded in the header or named by jku/x5u, is never used.
        (
            attacker.sign_raw(
                &format!(r#"{{"alg":"EdDSA","kid":"ec","jwk":{attacker_jwk}}}"#),
                claims(""),
            ),
            Some("key_algorithm_mismatch"),
        ),
        (
            attacker.sign_raw(
                r#"{"alg":"EdDSA","jku":"http://127.0.0.1:9/jwks.json","x5u":"http://127.0.0.1:9/c.pem"}"#,
                claims(""),
            ),
            Some("unknown_key"),
        ),
        // kid traversal and injection strings name no key.
        (
            format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","kid":"../../../../etc/passwd"}"#),
                URL_SAFE_NO_PAD.encode(claims("")),
                URL_SAFE_NO_PAD.encode(good.as_ref())
            ),
            Some("unknown_key"),
        ),
        (
            format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","kid":"' OR '1'='1"}"#),
                URL_SAFE_NO_PAD.encode(claims("")),
                URL_SAFE_NO_PAD.encode(good.as_ref())
            ),
            Some("unknown_key"),
        ),
    ];
    let now = NOW.to_string();
    for (token, expected) in cases {
        let out = tessera(
            &["verify", "--jwks", path_str(&jwks), "--now", &now, &token],
            b"",
        );
        let v = verdicts(&out);
        match expected {
            None => assert_eq!(code(&out), 0, "{}", v[0]),
            Some(error) => {
                assert_eq!(code(&out), 1, "{}", v[0]);
                assert_eq!(v[0]["error"], error, "{}", v[0]);
            }
        }
    }
}

/// The order n of P-256, big-endian.
fn p256_order() -> Vec<u8> {
    (0..32)
        .map(|i| {
            u8::from_str_radix(
                &"FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551"
                    [2 * i..2 * i + 2],
                16,
            )
            .expect("hex")
        })
        .collect()
}
