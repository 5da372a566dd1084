//! End-to-end tests of the HSM side against a real SoftHSM: each test makes its own token
//! directory and SoftHSM configuration, creates its own token through `tessera hsm init`, and
//! drives the real binary. The variables SoftHSM and tessera read are set on the child
//! processes only.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use aws_lc_rs::signature::{self as sig, UnparsedPublicKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;

use testkit::{SoftHsm, SOFTHSM_MODULE as MODULE};

const TIMEOUT: Duration = Duration::from_secs(120);
const LABEL: &str = "tessera-test";

/// A SoftHSM token of its own, removed when dropped.
struct Token {
    hsm: SoftHsm,
    dir: PathBuf,
}

impl Token {
    fn new(name: &str) -> Self {
        let hsm = SoftHsm::new(env!("CARGO_BIN_EXE_tessera"), name, LABEL);
        Token {
            dir: hsm.dir.clone(),
            hsm,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tessera"));
        cmd.args(args);
        self.hsm
            .env(&mut cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        wait(self.command(args).spawn().expect("spawn tessera"), args)
    }

    /// Runs and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "tessera {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8 stdout")
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, text).expect("write");
        path
    }
}

fn wait(child: std::process::Child, what: &[&str]) -> Output {
    testkit::process::wait_bounded(child, &format!("{what:?}"), TIMEOUT)
}

fn b64(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s).expect("base64url")
}

/// Verifies `token` with aws-lc-rs directly from the JWK, without the `jose` crate.
fn verify_independently(token: &str, jwk: &Value) {
    let (input, signature) = token.rsplit_once('.').expect("compact JWS");
    let signature = b64(signature);
    let s = |k: &str| jwk[k].as_str().expect("JWK member");
    let ok = match s("alg") {
        "RS256" | "PS256" => {
            let params: &sig::RsaParameters = if s("alg") == "RS256" {
                &sig::RSA_PKCS1_2048_8192_SHA256
            } else {
                &sig::RSA_PSS_2048_8192_SHA256
            };
            sig::RsaPublicKeyComponents {
                n: b64(s("n")),
                e: b64(s("e")),
            }
            .verify(params, input.as_bytes(), &signature)
            .is_ok()
        }
        alg @ ("ES256" | "ES384") => {
            let point = [vec![4], b64(s("x")), b64(s("y"))].concat();
            let verifier: &'static dyn sig::VerificationAlgorithm = if alg == "ES256" {
                &sig::ECDSA_P256_SHA256_FIXED
            } else {
                &sig::ECDSA_P384_SHA384_FIXED
            };
            UnparsedPublicKey::new(verifier, &point)
                .verify(input.as_bytes(), &signature)
                .is_ok()
        }
        "EdDSA" => UnparsedPublicKey::new(&sig::ED25519, b64(s("x")))
            .verify(input.as_bytes(), &signature)
            .is_ok(),
        other => panic!("unexpected alg {other}"),
    };
    assert!(ok, "{} signature does not verify independently", s("alg"));
}

fn jwks(token: &Token, now: &str) -> Vec<Value> {
    let text = token.ok(&["keys", "jwks", "--now", now]);
    let doc: Value = serde_json::from_str(&text).expect("JWKS JSON");
    doc["keys"].as_array().expect("keys").clone()
}

#[test]
fn every_algorithm_signs_tokens_that_verify() {
    let token = Token::new("algs");
    let algs = ["RS256", "PS256", "ES256", "ES384", "EdDSA"];
    for alg in algs {
        token.ok(&["keys", "generate", "--alg", alg, "--now", "1000"]);
    }
    // A 3072-bit key, on top: a second RS256 key waits as pending.
    let big: Value = serde_json::from_str(&token.ok(&[
        "keys", "generate", "--alg", "PS256", "--bits", "3072", "--now", "1000",
    ]))
    .expect("JSON");
    assert_eq!(big["state"], "pending");
    assert_eq!(b64(big["jwk"]["n"].as_str().expect("n")).len(), 384);

    let keys = jwks(&token, "1000");
    assert_eq!(keys.len(), 6);
    let jwks_file = token.write(
        "jwks.json",
        &format!("{{\"keys\":{}}}", Value::from(keys.clone())),
    );
    let claims = token.write(
        "claims.json",
        r#"{"sub":"alice","aud":"api://orders","scope":"read"}"#,
    );
    let claims_arg = format!("@{}", claims.display());
    for alg in algs {
        let jwt = token.ok(&[
            "token",
            "sign",
            "--alg",
            alg,
            "--claims",
            &claims_arg,
            "--ttl",
            "10m",
            "--now",
            "1000",
        ]);
        let jwt = jwt.trim();
        let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args([
                "verify",
                "--jwks",
                jwks_file.to_str().expect("path"),
                "--aud",
                "api://orders",
                "--now",
                "1100",
                jwt,
            ])
            .output()
            .expect("verify");
        assert!(
            out.status.success(),
            "{alg}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let verdict: Value = serde_json::from_slice(&out.stdout).expect("verdict");
        assert_eq!(verdict["header"]["alg"], alg);
        assert_eq!(verdict["claims"]["sub"], "alice");
        assert_eq!(verdict["claims"]["iat"], 1000);
        assert_eq!(verdict["claims"]["exp"], 1600);
        assert!(verdict["claims"]["jti"]
            .as_str()
            .is_some_and(|j| j.len() >= 22));
        let kid = verdict["header"]["kid"].as_str().expect("kid");
        let jwk = keys
            .iter()
            .find(|k| k["kid"] == kid)
            .expect("signing key is published");
        verify_independently(jwt, jwk);
    }
}

#[test]
fn private_keys_are_sensitive_and_never_extractable() {
    let token = Token::new("attrs");
    for alg in ["RS256", "ES256", "EdDSA"] {
        token.ok(&["keys", "generate", "--alg", alg]);
    }
    // pkcs11-tool (OpenSC) reads the PIN from a terminal: give it one, fed from the PIN file,
    // so the PIN never appears on a command line.
    assert!(
        Command::new("pkcs11-tool")
            .arg("--version")
            .output()
            .is_ok(),
        "pkcs11-tool is missing: run hsm/install.sh or apt-get install opensc"
    );
    let pkcs11_tool = format!(
        "pkcs11-tool --module {MODULE} --token-label {LABEL} --login --list-objects --type privkey"
    );
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", &pkcs11_tool, "/dev/null"])
        .env("SOFTHSM2_CONF", token.dir.join("softhsm2.conf"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script(1) from bsdutils");
    let mut stdin = child.stdin.take().expect("stdin");
    let pin = std::fs::read(token.dir.join("pin")).expect("pin");
    std::thread::spawn(move || {
        use std::io::Write;
        std::thread::sleep(Duration::from_millis(500));
        let _ = stdin.write_all(&pin);
    });
    let out = wait(child, &["pkcs11-tool"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let objects: Vec<&str> = text.split("Private Key Object").skip(1).collect();
    assert_eq!(objects.len(), 3, "{text}");
    for object in objects {
        assert!(
            object.contains("Usage:      sign\n") || object.contains("Usage:      sign\r\n"),
            "{object}"
        );
        assert!(
            object.contains("Access:     sensitive, always sensitive, never extractable, local"),
            "{object}"
        );
    }
}

#[test]
fn rotation_publishes_before_it_signs_and_retires_after() {
    let token = Token::new("rotate");
    // The timing is the token's: every later command, and a daemon, follow it.
    token.ok(&[
        "keys",
        "policy",
        "--publish-delay",
        "600",
        "--retention",
        "3600",
    ]);
    let old: Value =
        serde_json::from_str(&token.ok(&["keys", "generate", "--alg", "ES256", "--now", "1000"]))
            .expect("JSON");
    assert_eq!(old["state"], "active");
    let new: Value =
        serde_json::from_str(&token.ok(&["keys", "rotate", "--alg", "ES256", "--now", "2000"]))
            .expect("JSON");
    assert_eq!(new["state"], "pending");
    let (old_kid, new_kid) = (
        old["kid"].as_str().expect("kid"),
        new["kid"].as_str().expect("kid"),
    );

    let kid_of = |now: &str| {
        let jwt = token.ok(&[
            "token", "sign", "--alg", "ES256", "--claims", "{}", "--now", now,
        ]);
        let header: Value =
            serde_json::from_slice(&b64(jwt.split('.').next().expect("header"))).expect("header");
        header["kid"].as_str().expect("kid").to_owned()
    };
    // Published at once, signing only after the publish delay.
    let published = |now: &str| -> Vec<String> {
        let text = token.ok(&["keys", "jwks", "--now", now]);
        let doc: Value = serde_json::from_str(&text).expect("JSON");
        doc["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .map(|k| k["kid"].as_str().expect("kid").to_owned())
            .collect()
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let both = sorted(vec![old_kid.to_owned(), new_kid.to_owned()]);
    assert_eq!(sorted(published("2000")), both);
    assert_eq!(kid_of("2599"), old_kid);
    assert_eq!(kid_of("2600"), new_kid);
    // The old key is retired at the promotion and stays published for the retention period.
    let list: Value = serde_json::from_str(&token.ok(&["keys", "list", "--json", "--now", "2600"]))
        .expect("JSON");
    let states: Vec<(&str, &str)> = list
        .as_array()
        .expect("array")
        .iter()
        .map(|k| {
            (
                k["kid"].as_str().expect("kid"),
                k["state"].as_str().expect("state"),
            )
        })
        .collect();
    assert!(states.contains(&(old_kid, "retired")), "{states:?}");
    assert!(states.contains(&(new_kid, "active")), "{states:?}");
    assert_eq!(states.len(), 2);
    assert_eq!(sorted(published("6199")), both);
    assert_eq!(published("6200"), [new_kid]);

    // Retiring the active key stops signing at once.
    token.ok(&["keys", "retire", new_kid, "--now", "7000"]);
    let out = token.run(&[
        "token", "sign", "--alg", "ES256", "--claims", "{}", "--now", "7001",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no active ES256 key"));
}

/// The keys as `keys list --json` shows them: (kid, state, since), sorted by kid.
fn states(token: &Token, args: &[&str]) -> Vec<(String, String, i64)> {
    let list: Value =
        serde_json::from_str(&token.ok(&[&["keys", "list", "--json"], args].concat()))
            .expect("JSON");
    list.as_array()
        .expect("array")
        .iter()
        .map(|k| {
            (
                k["kid"].as_str().expect("kid").to_owned(),
                k["state"].as_str().expect("state").to_owned(),
                k["since"].as_i64().expect("since"),
            )
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[test]
fn read_only_commands_with_a_future_now_write_nothing() {
    let token = Token::new("read-only");
    let kid = |json: String| -> String {
        serde_json::from_str::<Value>(&json).expect("JSON")["kid"]
            .as_str()
            .expect("kid")
            .to_owned()
    };
    let old = kid(token.ok(&["keys", "generate", "--alg", "ES256"]));
    let new = kid(token.ok(&["keys", "rotate", "--alg", "ES256"]));
    let before = states(&token, &[]);
    let state_of = |list: &[(String, String, i64)], kid: &str| -> (String, i64) {
        let k = list.iter().find(|k| k.0 == kid).expect("listed");
        (k.1.clone(), k.2)
    };
    assert_eq!(state_of(&before, &old).0, "active");
    let (pending, since) = state_of(&before, &new);
    assert_eq!(pending, "pending");
    // In 2033 the rotation is long done: the pending key signs, the old one is retired since
    // the end of the publish delay, and is no longer published.
    let far = "2000000000";
    let future = states(&token, &["--now", far]);
    let ripe = since + 900;
    assert_eq!(state_of(&future, &old), ("retired".to_owned(), ripe));
    assert_eq!(state_of(&future, &new), ("active".to_owned(), ripe));
    assert_eq!(jwks(&token, far).len(), 1);
    token.ok(&["token", "sign", "--claims", "{}", "--now", far]);
    // None of that was written to the token.
    assert_eq!(states(&token, &[]), before);
    assert_eq!(jwks(&token, &unix_now().to_string()).len(), 2);
}

#[test]
fn explicit_exp_beyond_the_retention_is_refused() {
    let token = Token::new("exp-bound");
    token.ok(&["keys", "policy", "--retention", "3600"]);
    token.ok(&["keys", "generate", "--alg", "EdDSA", "--now", "1000"]);
    let sign = |claims: &str, ttl: &str| {
        token.run(&[
            "token", "sign", "--claims", claims, "--ttl", ttl, "--now", "1000",
        ])
    };
    // Regression: an `exp` in the claims skipped the bound that `--ttl` has.
    for (claims, ttl) in [
        (r#"{"exp":4601}"#, "1m"),
        (r#"{"exp":4600.5}"#, "1m"),
        (r#"{"exp":1e300}"#, "1m"),
        (r#"{"sub":"a"}"#, "3601"),
    ] {
        let out = sign(claims, ttl);
        assert_eq!(out.status.code(), Some(2), "{claims} --ttl {ttl}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("retention of 3600 s"), "{claims}: {err}");
        assert!(out.stdout.is_empty());
    }
    // An `exp` verifiers would refuse is refused here too.
    for claims in [r#"{"exp":"4600"}"#, r#"{"exp":null}"#] {
        let out = sign(claims, "1m");
        assert_eq!(out.status.code(), Some(2), "{claims}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("NumericDate"));
    }
    for (claims, ttl) in [
        (r#"{"exp":4600}"#, "1m"),
        ("{}", "1h"),
        (r#"{"exp":10}"#, "1m"),
    ] {
        let out = sign(claims, ttl);
        assert!(
            out.status.success(),
            "{claims}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

#[test]
fn pins_come_only_from_the_environment_or_a_file() {
    let token = Token::new("pins");
    token.ok(&["keys", "generate", "--alg", "EdDSA"]);
    // No PIN source.
    let out = token
        .command(&["keys", "list"])
        .env_remove("TESSERA_HSM_PIN_FILE")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("TESSERA_HSM_PIN"));
    // A wrong PIN is refused, and the PIN is not echoed.
    let out = token
        .command(&["keys", "list"])
        .env("TESSERA_HSM_PIN", "wrong-pin-9999")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("login refused"), "{err}");
    assert!(!err.contains("wrong-pin-9999"));
    // The right PIN from the environment works.
    let out = token
        .command(&["keys", "list"])
        .env("TESSERA_HSM_PIN", "test-pin-1234")
        .output()
        .expect("run");
    assert!(out.status.success());
    // There is no flag that takes a PIN.
    let out = token.run(&["keys", "list", "--pin", "test-pin-1234"]);
    assert_eq!(out.status.code(), Some(2));
    // Regression: a kid starting with '-' (base64url thumbprints can) was taken for a flag.
    for args in [
        &["keys", "retire", "-7feCO6JNY5voq"][..],
        &["token", "sign", "--claims", "{}", "--kid", "-7feCO6JNY5voq"][..],
    ] {
        let out = token.run(args);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("no key with kid"), "{args:?}: {err}");
    }
}

#[test]
fn pin_files_open_to_group_or_others_are_refused() {
    let token = Token::new("pin-mode");
    let pin = token.dir.join("pin");
    for mode in [0o644, 0o640, 0o604, 0o620, 0o602] {
        set_mode(&pin, mode);
        let out = token.run(&["keys", "list"]);
        assert_eq!(out.status.code(), Some(2), "mode {mode:o}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!(
                "PIN file {}: mode {mode:04o} is too open; chmod 600 it",
                pin.display()
            )),
            "{err}"
        );
        assert!(!err.contains("test-pin-1234"));
    }
    // `hsm init` reads its two PIN files under the same rule.
    let so_pin = token.dir.join("so-pin");
    set_mode(&so_pin, 0o644);
    set_mode(&pin, 0o600);
    let out = token.run(&[
        "hsm",
        "init",
        "--token",
        "other",
        "--so-pin-file",
        so_pin.to_str().expect("UTF-8"),
        "--pin-file",
        pin.to_str().expect("UTF-8"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("mode 0644 is too open"));
    // Owner-only modes are accepted.
    for mode in [0o600, 0o400] {
        set_mode(&pin, mode);
        token.ok(&["keys", "list"]);
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A stand-in PKCS#11 module: a shared library whose constructor records, when it is loaded
/// into tessera, whether `TESSERA_HSM_PIN` is still in the process environment, then leaves
/// tessera to fail for want of `C_GetFunctionList`. The module is the one piece of foreign code
/// tessera runs in its process, and what it sees is what any process it spawned would inherit.
const PROBE_MODULE: &str = r#"
#include <stdio.h>
#include <stdlib.h>
__attribute__((constructor)) static void probe(void) {
    const char *out = getenv("PIN_PROBE_OUT");
    FILE *f = out ? fopen(out, "w") : NULL;
    if (!f) return;
    fputs(getenv("TESSERA_HSM_PIN") ? "visible" : "absent", f);
    fclose(f);
}
"#;

#[test]
fn hsm_pin_variable_is_removed_once_read() {
    let token = Token::new("pin-env");
    let source = token.write("probe.c", PROBE_MODULE);
    let module = token.dir.join("probe.so");
    let cc = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&module)
        .arg(&source)
        .output()
        .expect("a C compiler (cc) to build the probe module");
    assert!(
        cc.status.success(),
        "{}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let seen = token.dir.join("seen");
    let module = module.to_str().expect("UTF-8 path");
    for args in [
        &["keys", "list", "--module", module][..],
        &["token", "sign", "--claims", "{}", "--module", module],
        &["serve", "--dev", "--listen", "127.0.0.1:0"],
    ] {
        let _ = std::fs::remove_file(&seen);
        let out = token
            .command(args)
            .env("TESSERA_HSM_PIN", "test-pin-1234")
            .env("TESSERA_HSM_MODULE", module)
            .env("PIN_PROBE_OUT", &seen)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let seen = std::fs::read_to_string(&seen)
            .unwrap_or_else(|e| panic!("{args:?}: the probe module was not loaded: {e}"));
        assert_eq!(seen, "absent", "{args:?}");
    }
}

/// Several threads sign at once through one `Hsm` and its session pool. PKCS#11 reads its
/// configuration from the environment once per process, so the test runs its signing half in a
/// child process of this test binary, with the child's own `SOFTHSM2_CONF`.
#[test]
fn concurrent_signing_from_threads() {
    if let Some(dir) = std::env::var_os("TESSERA_TEST_HSM_CHILD") {
        return sign_from_threads(Path::new(&dir));
    }
    let token = Token::new("threads");
    token.ok(&["keys", "generate", "--alg", "ES256"]);
    token.ok(&["keys", "generate", "--alg", "EdDSA"]);
    let child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "concurrent_signing_from_threads", "--nocapture"])
        .env("TESSERA_TEST_HSM_CHILD", &token.dir)
        .env("SOFTHSM2_CONF", token.dir.join("softhsm2.conf"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn test child");
    let out = wait(child, &["concurrent_signing_from_threads child"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("signed 200 tokens on 8 threads"), "{text}");
}

fn sign_from_threads(dir: &Path) {
    use pkcs11::{Hsm, HsmConfig, KeyState, Pin};
    let pin = Pin::from_file(&dir.join("pin")).expect("pin");
    let mut config = HsmConfig::new(MODULE, LABEL, pin);
    config.sessions = 3;
    let hsm = Hsm::open(&config).expect("open");
    let keys = hsm.keys().expect("keys");
    let active: Vec<_> = keys
        .iter()
        .filter(|k| k.life.state == KeyState::Active)
        .collect();
    assert_eq!(active.len(), 2);
    let jwks = format!(
        "{{\"keys\":[{}]}}",
        active.iter().map(|k| k.jwk()).collect::<Vec<_>>().join(",")
    );
    let set = jose::KeySet::from_jwks(jwks.as_bytes()).expect("JWKS").keys;
    let signed = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..8 {
            let (hsm, key, set, signed) = (&hsm, active[t % 2], &set, &signed);
            s.spawn(move || {
                for i in 0..25 {
                    let claims = format!(r#"{{"sub":"t{t}-{i}","exp":4000000000}}"#);
                    let header = jose::jws::header_json(key.life.alg, Some(&key.kid), None);
                    let input = jose::SigningInput::new(header.as_bytes(), claims.as_bytes());
                    let signature = hsm.sign(key, input.as_bytes()).expect("sign");
                    let jwt = input.into_compact(&signature);
                    let verified = jose::jwt::verify(&jwt, set, &jose::Validation::default(), 0)
                        .expect("verifies");
                    assert_eq!(
                        verified.str_claim("sub").as_deref(),
                        Some(&*format!("t{t}-{i}"))
                    );
                    signed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    println!("signed {} tokens on 8 threads", signed.into_inner());
}

/// The token disappears underneath a running signer and comes back: while it is gone, signing
/// fails with a typed error within the configured wait (no hang, no panic); once it is back,
/// the signer reconnects, finds its key again by id and signs. Runs its signing half in a child
/// process, like `concurrent_signing_from_threads`.
#[test]
fn signer_recovers_when_the_token_comes_back() {
    if let Some(dir) = std::env::var_os("TESSERA_TEST_HSM_RECOVER") {
        return recover_in_child(Path::new(&dir));
    }
    let token = Token::new("recover");
    token.ok(&["keys", "generate", "--alg", "ES256"]);
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "signer_recovers_when_the_token_comes_back",
            "--nocapture",
        ])
        .env("TESSERA_TEST_HSM_RECOVER", &token.dir)
        .env("SOFTHSM2_CONF", token.dir.join("softhsm2.conf"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn test child");
    let mut step = |name: &str| {
        let start = Instant::now();
        while !token.dir.join(name).exists() {
            assert!(start.elapsed() < TIMEOUT, "child never reached {name}");
            if let Ok(Some(status)) = child.try_wait() {
                panic!("child exited early ({status}) before {name}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    step("signed");
    std::fs::rename(token.dir.join("store"), token.dir.join("store.away")).expect("remove token");
    std::fs::write(token.dir.join("removed"), "").expect("signal");
    step("failed");
    std::fs::rename(token.dir.join("store.away"), token.dir.join("store")).expect("restore token");
    std::fs::write(token.dir.join("restored"), "").expect("signal");
    let out = wait(child, &["recovery child"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("recovered"), "{text}");
    println!("{text}");
}

fn recover_in_child(dir: &Path) {
    use pkcs11::{Hsm, HsmConfig, HsmError, Pin};
    let await_file = |name: &str| {
        let start = Instant::now();
        while !dir.join(name).exists() {
            assert!(start.elapsed() < TIMEOUT, "parent never wrote {name}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let mut config = HsmConfig::new(
        MODULE,
        LABEL,
        Pin::from_file(&dir.join("pin")).expect("pin"),
    );
    config.sessions = 2;
    config.wait = Duration::from_secs(2);
    let hsm = Hsm::open(&config).expect("open");
    let key = hsm.keys().expect("keys").remove(0);
    let jwks = format!("{{\"keys\":[{}]}}", key.jwk());
    let set = jose::KeySet::from_jwks(jwks.as_bytes()).expect("JWKS").keys;
    let sign_and_check = || -> Result<(), HsmError> {
        let input = jose::SigningInput::new(br#"{"alg":"ES256"}"#, br#"{"exp":4000000000}"#);
        let signature = hsm.sign(&key, input.as_bytes())?;
        jose::jws::verify(
            input.into_compact(&signature),
            &set,
            &jose::Limits::default(),
        )
        .expect("signature verifies");
        Ok(())
    };
    sign_and_check().expect("first signature");
    std::fs::write(dir.join("signed"), "").expect("signal");

    await_file("removed");
    let start = Instant::now();
    let err = sign_and_check().expect_err("signing without a token");
    let elapsed = start.elapsed();
    println!("while removed: {err} after {elapsed:?}");
    assert!(matches!(err, HsmError::Unavailable(_)), "{err:?}");
    assert!(elapsed < Duration::from_secs(4), "took {elapsed:?}");
    // The public keys stay available for verifiers.
    assert_eq!(hsm.cached_keys().len(), 1);
    std::fs::write(dir.join("failed"), "").expect("signal");

    await_file("restored");
    sign_and_check().expect("signature after the token came back");
    println!("recovered");
}
