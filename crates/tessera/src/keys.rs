//! `tessera hsm`, `tessera keys` and `tessera token`: signing keys in a PKCS#11 HSM.
//!
//! The lifecycle (each key's state in its label, the publish delay and retention in a data
//! object) is kept on the token itself, so the CLI and the daemon see one lifecycle. Commands
//! that only read (`keys list`, `keys jwks`, `token sign`) compute the states at `--now` without
//! writing anything; commands that change keys (`generate`, `rotate`, `retire`, `policy`) first
//! write the transitions that are due.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use clap::{Args, Subcommand};
use jose::json::{self, JsonError};
use jose::{Algorithm, SigningInput};
use pkcs11::{Hsm, HsmConfig, KeyInfo, KeySpec, KeyState, Lifecycle, Pin, Policy};

/// The PIN taken from `TESSERA_HSM_PIN` at the start of `main`, if it was set.
pub type EnvPin = Option<Result<Pin, pkcs11::HsmError>>;

/// Where the HSM is. The PIN comes from `TESSERA_HSM_PIN` or the file `--pin-file` names,
/// never from the command line.
#[derive(Debug, Args)]
pub struct HsmArgs {
    /// PKCS#11 module.
    #[arg(long, env = "TESSERA_HSM_MODULE", default_value = HsmConfig::SOFTHSM_MODULE)]
    module: PathBuf,
    /// Label of the token holding the keys.
    #[arg(long, env = "TESSERA_HSM_TOKEN", default_value = "tessera-dev")]
    token: String,
    /// File whose first line is the user PIN (used when TESSERA_HSM_PIN is not set).
    #[arg(long, env = "TESSERA_HSM_PIN_FILE", value_name = "FILE")]
    pin_file: Option<PathBuf>,
    /// Act as if the time were this (seconds since the Unix epoch).
    #[arg(long, value_name = "UNIX")]
    now: Option<i64>,
}

impl HsmArgs {
    /// The PIN `main` took from `TESSERA_HSM_PIN`, else the PIN file's.
    fn pin(&self, env_pin: EnvPin) -> anyhow::Result<Pin> {
        match Pin::resolve(env_pin.transpose()?, self.pin_file.as_deref()) {
            Some(pin) => Ok(pin?),
            None => bail!("no PIN: set TESSERA_HSM_PIN or TESSERA_HSM_PIN_FILE (or --pin-file)"),
        }
    }

    fn open(&self, env_pin: EnvPin) -> anyhow::Result<Hsm> {
        let mut config = HsmConfig::new(&self.module, &self.token, self.pin(env_pin)?);
        config.sessions = 1;
        Hsm::open(&config).with_context(|| format!("token {:?}", self.token))
    }

    fn now(&self) -> anyhow::Result<i64> {
        self.now.map_or_else(crate::verify::unix_now, Ok)
    }
}

#[derive(Debug, Subcommand)]
pub enum HsmCommand {
    /// Create and initialise a token (idempotent): PINs are read from files.
    Init {
        #[arg(long, env = "TESSERA_HSM_MODULE", default_value = HsmConfig::SOFTHSM_MODULE)]
        module: PathBuf,
        #[arg(long, env = "TESSERA_HSM_TOKEN", default_value = "tessera-dev")]
        token: String,
        /// File whose first line is the security officer PIN.
        #[arg(long, value_name = "FILE")]
        so_pin_file: PathBuf,
        /// File whose first line is the user PIN.
        #[arg(long, value_name = "FILE")]
        pin_file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Generate a key in the HSM: active if none of its algorithm is, else pending.
    Generate(GenerateArgs),
    /// List the keys: kid, algorithm, state, since when, whether published.
    List {
        #[command(flatten)]
        hsm: HsmArgs,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Start a rotation: a pending key that becomes active after the publish delay.
    Rotate(GenerateArgs),
    /// Retire a key: it stops signing now and stays published for the retention period.
    Retire {
        #[command(flatten)]
        hsm: HsmArgs,
        /// The key's kid (thumbprints may start with `-`).
        #[arg(allow_hyphen_values = true)]
        kid: String,
    },
    /// Print the public JWK Set (pending, active and retained retired keys).
    Jwks {
        #[command(flatten)]
        hsm: HsmArgs,
    },
    /// Print the lifecycle timing kept on the token, or change it: the CLI and the daemon both
    /// follow it.
    Policy {
        #[command(flatten)]
        hsm: HsmArgs,
        /// Seconds a new key is published before it signs (at least the verifiers' JWKS cache
        /// time).
        #[arg(long, value_name = "SECS")]
        publish_delay: Option<u32>,
        /// Seconds a retired key stays published; also the longest token lifetime allowed.
        #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u32).range(1..))]
        retention: Option<u32>,
    },
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    hsm: HsmArgs,
    /// RS256, PS256, ES256, ES384 or EdDSA.
    #[arg(long, value_name = "ALG")]
    alg: String,
    /// RSA modulus size (2048 or 3072).
    #[arg(long, value_name = "BITS", default_value_t = 2048)]
    bits: u32,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Sign a JWT with the active HSM key and print the compact JWS.
    Sign(SignArgs),
}

#[derive(Debug, Args)]
pub struct SignArgs {
    #[command(flatten)]
    hsm: HsmArgs,
    /// The claims: a JSON object, or @FILE. `iat`, `exp` and `jti` are added unless present.
    #[arg(long, value_name = "JSON|@FILE")]
    claims: String,
    /// Lifetime for `exp`: seconds, or a number with s, m, h or d.
    #[arg(long, value_name = "DURATION", default_value = "15m")]
    ttl: String,
    /// Sign with the active key of this algorithm.
    #[arg(long, value_name = "ALG", conflicts_with = "kid")]
    alg: Option<String>,
    /// Sign with this key (it must be active; thumbprints may start with `-`).
    #[arg(long, value_name = "KID", allow_hyphen_values = true)]
    kid: Option<String>,
    /// The header's `typ`.
    #[arg(long, value_name = "TYP", default_value = "JWT")]
    typ: String,
}

fn algorithm(name: &str) -> anyhow::Result<Algorithm> {
    Algorithm::from_name(name).ok_or_else(|| anyhow!("unknown algorithm {name:?}"))
}

pub fn hsm(command: HsmCommand) -> anyhow::Result<ExitCode> {
    let HsmCommand::Init {
        module,
        token,
        so_pin_file,
        pin_file,
    } = command;
    let created = Hsm::init_token(
        &module,
        &token,
        &Pin::from_file(&so_pin_file)?,
        &Pin::from_file(&pin_file)?,
    )?;
    eprintln!(
        "tessera: token {token:?} {}",
        if created { "created" } else { "exists" }
    );
    Ok(ExitCode::SUCCESS)
}

pub fn keys(command: KeysCommand, env_pin: EnvPin) -> anyhow::Result<ExitCode> {
    match command {
        KeysCommand::Generate(args) => generate(&args, false, env_pin),
        KeysCommand::Rotate(args) => generate(&args, true, env_pin),
        KeysCommand::List { hsm, json } => {
            let now = hsm.now()?;
            let (policy, keys) = hsm.open(env_pin)?.keys_at(now)?;
            if json {
                let rows: Vec<String> = keys.iter().map(|k| key_json(k, &policy, now)).collect();
                println!("[{}]", rows.join(","));
            } else {
                println!(
                    "{:<44} {:<6} {:<8} {:<21} {:<9} SIZE",
                    "KID", "ALG", "STATE", "SINCE (UTC)", "PUBLISHED"
                );
                for k in &keys {
                    println!(
                        "{:<44} {:<6} {:<8} {:<21} {:<9} {}",
                        k.kid,
                        k.life.alg.name(),
                        k.life.state.name(),
                        jose::date::rfc3339(k.life.since),
                        if policy.published(&k.life, now) {
                            "yes"
                        } else {
                            "no"
                        },
                        k.bits.map_or_else(|| "-".into(), |b| b.to_string())
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::Retire { hsm, kid } => {
            let now = hsm.now()?;
            let token = hsm.open(env_pin)?;
            let (_, keys) = token.advance(now)?;
            let key = keys
                .iter()
                .find(|k| k.kid == kid)
                .ok_or_else(|| anyhow!("no key with kid {kid:?}"))?;
            if key.life.state == KeyState::Retired {
                bail!("key {kid} is already retired");
            }
            token.set_life(
                key,
                Lifecycle {
                    state: KeyState::Retired,
                    since: now,
                    ..key.life
                },
            )?;
            eprintln!("tessera: retired {kid}");
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::Jwks { hsm } => {
            let now = hsm.now()?;
            let (policy, keys) = hsm.open(env_pin)?.keys_at(now)?;
            let published: Vec<String> = keys
                .iter()
                .filter(|k| policy.published(&k.life, now))
                .map(KeyInfo::jwk)
                .collect();
            println!("{{\"keys\":[{}]}}", published.join(","));
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::Policy {
            hsm,
            publish_delay,
            retention,
        } => {
            let token = hsm.open(env_pin)?;
            let mut policy = token.policy()?;
            if publish_delay.is_some() || retention.is_some() {
                // The transitions due under the old timing are written under it.
                token.advance(hsm.now()?)?;
                if let Some(delay) = publish_delay {
                    policy.publish_delay = i64::from(delay);
                }
                if let Some(retention) = retention {
                    policy.retention = i64::from(retention);
                }
                token.set_policy(&policy)?;
            }
            println!(
                r#"{{"publish_delay":{},"retention":{}}}"#,
                policy.publish_delay, policy.retention
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn key_json(k: &KeyInfo, policy: &Policy, now: i64) -> String {
    format!(
        r#"{{"kid":"{}","alg":"{}","state":"{}","since":{},"published":{},"jwk":{}}}"#,
        k.kid,
        k.life.alg,
        k.life.state.name(),
        k.life.since,
        policy.published(&k.life, now),
        k.jwk()
    )
}

fn generate(args: &GenerateArgs, rotate: bool, env_pin: EnvPin) -> anyhow::Result<ExitCode> {
    let alg = algorithm(&args.alg)?;
    let mut spec = KeySpec::new(alg)?;
    if args.bits != 2048 {
        spec = spec.with_rsa_bits(args.bits)?;
    }
    let now = args.hsm.now()?;
    let token = args.hsm.open(env_pin)?;
    let (policy, keys) = token.advance(now)?;
    let has_active = keys
        .iter()
        .any(|k| k.life.alg == alg && k.life.state == KeyState::Active);
    // The first key of an algorithm signs at once: no verifier can hold a key set of that
    // issuer and algorithm that lacks it. Every later key waits out the publish delay.
    let state = if has_active || rotate && keys.iter().any(|k| k.life.alg == alg) {
        KeyState::Pending
    } else {
        KeyState::Active
    };
    let key = token.generate(spec, state, now)?;
    println!("{}", key_json(&key, &policy, now));
    Ok(ExitCode::SUCCESS)
}

/// Parses `15m`, `1h`, `30s`, `2d` or plain seconds.
fn duration(text: &str) -> anyhow::Result<i64> {
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, "s"),
    };
    let n: i64 = digits
        .parse()
        .with_context(|| format!("duration {text:?}"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => bail!("duration {text:?}: use s, m, h or d"),
    };
    n.checked_mul(scale)
        .filter(|&s| s > 0)
        .ok_or_else(|| anyhow!("duration {text:?} out of range"))
}

pub fn token(command: TokenCommand, env_pin: EnvPin) -> anyhow::Result<ExitCode> {
    let TokenCommand::Sign(args) = command;
    let claims_text = match args.claims.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("--claims @{path}"))?,
        None => args.claims.clone(),
    };
    let now = args.hsm.now()?;
    let ttl = duration(&args.ttl)?;
    let token = args.hsm.open(env_pin)?;
    let (policy, keys) = token.keys_at(now)?;
    if ttl > policy.retention {
        bail!(
            "--ttl {} exceeds the retention of {} s: a retired key would stop being published \
             while its tokens are still valid",
            args.ttl,
            policy.retention
        );
    }
    let claims = complete_claims(&claims_text, now, ttl, policy.retention)?;

    let active = keys.iter().filter(|k| k.life.state == KeyState::Active);
    let key = match (&args.kid, &args.alg) {
        (Some(kid), _) => {
            let key = keys
                .iter()
                .find(|k| &k.kid == kid)
                .ok_or_else(|| anyhow!("no key with kid {kid:?}"))?;
            if key.life.state != KeyState::Active {
                bail!("key {kid} is {}, not active", key.life.state.name());
            }
            key
        }
        (None, Some(alg)) => {
            let alg = algorithm(alg)?;
            keys.iter()
                .rfind(|k| k.life.state == KeyState::Active && k.life.alg == alg)
                .ok_or_else(|| anyhow!("no active {alg} key"))?
        }
        (None, None) => {
            let mut active = active;
            match (active.next(), active.next()) {
                (Some(key), None) => key,
                (None, _) => bail!("no active key: tessera keys generate --alg ALG"),
                (Some(_), Some(_)) => bail!("several active keys: choose one with --alg or --kid"),
            }
        }
    };
    let header = jose::jws::header_json(key.life.alg, Some(&key.kid), Some(&args.typ));
    let input = SigningInput::new(header.as_bytes(), claims.as_bytes());
    let signature = token.sign(key, input.as_bytes())?;
    println!("{}", input.into_compact(&signature));
    Ok(ExitCode::SUCCESS)
}

/// The claims with `iat`, `exp` and `jti` added where absent. An `exp` of the claims must be a
/// NumericDate at most `retention` seconds after `now`, as `--ttl` must be.
fn complete_claims(text: &str, now: i64, ttl: i64, retention: i64) -> anyhow::Result<String> {
    let (mut iat, mut exp, mut jti) = (false, None, false);
    let object = json::read_object::<JsonError>(text, 16, |name, value| {
        iat |= name.eq_str("iat");
        if name.eq_str("exp") {
            exp = Some(match value {
                json::Value::Number(n) => n.as_f64(),
                _ => None,
            });
        }
        jti |= name.eq_str("jti");
        Ok(())
    })
    .map_err(|e| anyhow!("--claims: {e}"))?;
    match exp {
        Some(None) => bail!("--claims: exp must be a NumericDate (seconds since the epoch)"),
        Some(Some(exp)) if exp - now as f64 > retention as f64 => bail!(
            "--claims: exp {exp} is {} s after now, beyond the retention of {retention} s: a \
             retired key would stop being published while the token is still valid",
            exp - now as f64
        ),
        _ => {}
    }
    let mut out = json::minify(object.as_json());
    out.pop(); // the closing brace
    let mut add = |member: String| {
        if !out.ends_with('{') {
            out.push(',');
        }
        out.push_str(&member);
    };
    if !iat {
        add(format!("\"iat\":{now}"));
    }
    if exp.is_none() {
        add(format!("\"exp\":{}", now + ttl));
    }
    if !jti {
        let mut bytes = [0u8; 16];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| anyhow!("the system random generator failed"))?;
        add(format!("\"jti\":\"{}\"", jose::b64::encode(&bytes)));
    }
    out.push('}');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{complete_claims, duration};

    #[test]
    fn durations() {
        assert_eq!(duration("90").unwrap(), 90);
        assert_eq!(duration("15m").unwrap(), 900);
        assert_eq!(duration("2h").unwrap(), 7200);
        assert_eq!(duration("1d").unwrap(), 86_400);
        for bad in ["", "0", "-5", "5w", "m", "99999999999999999999d"] {
            assert!(duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn explicit_exp_is_bounded_by_the_retention() {
        assert!(complete_claims(r#"{"exp":160}"#, 100, 1, 60).is_ok());
        for bad in [
            r#"{"exp":161}"#,
            r#"{"exp":160.001}"#,
            r#"{"exp":1e308}"#,
            r#"{"exp":1e400}"#,
            r#"{"exp":"150"}"#,
            r#"{"exp":[150]}"#,
            r#"{"exp":true}"#,
        ] {
            assert!(complete_claims(bad, 100, 1, 60).is_err(), "{bad}");
        }
    }

    #[test]
    fn claims_are_completed_without_overriding() {
        let c = complete_claims(r#"{ "sub": "alice" }"#, 100, 60, 60).unwrap();
        assert!(
            c.starts_with(r#"{"sub":"alice","iat":100,"exp":160,"jti":""#),
            "{c}"
        );
        let c = complete_claims(r#"{"iat":5,"exp":6,"jti":"x"}"#, 100, 60, 60).unwrap();
        assert_eq!(c, r#"{"iat":5,"exp":6,"jti":"x"}"#);
        let c = complete_claims("{}", 1, 1, 1).unwrap();
        assert!(c.starts_with(r#"{"iat":1,"exp":2,"jti":"#), "{c}");
        assert!(complete_claims(r#"{"a":1,"a":2}"#, 1, 1, 1).is_err());
        assert!(complete_claims("[1]", 1, 1, 1).is_err());
    }
}
