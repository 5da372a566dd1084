//! `tessera revoke` and `tessera store migrate`: the shared store, reached directly (no daemon
//! in between), as the configuration's `[store]` names it. Running daemons apply a new record
//! on their next catch-up (a wake-up from PostgreSQL, or the poll).

use std::io::{BufRead, Read as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use engine::Revocation;
use server::config::StoreSettings;
use server::Config;

#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The daemon's configuration file, for its `[store]` (default: the embedded store in the
    /// state directory).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Revoke the token with this `jti` (with --iss and --exp).
    #[arg(long, value_name = "JTI", conflicts_with_all = ["sub", "client", "token"], requires_all = ["iss", "exp"])]
    jti: Option<String>,
    /// Revoke every token of this subject (with --iss) issued before --before.
    #[arg(long, value_name = "SUB", conflicts_with_all = ["client", "token"], requires = "iss")]
    sub: Option<String>,
    /// Revoke every token with this `client_id` issued before --before.
    #[arg(long, value_name = "CLIENT_ID", conflicts_with = "token")]
    client: Option<String>,
    /// Revoke one token by its SHA-256; `-` reads it from stdin (keeps it off the process list).
    #[arg(long, value_name = "TOKEN|-")]
    token: Option<String>,
    /// The issuer of --jti or --sub.
    #[arg(long, value_name = "ISS")]
    iss: Option<String>,
    /// When the record may go: the token's `exp` (Unix seconds). For --token, read from the
    /// token's (unverified) payload when not given.
    #[arg(long, value_name = "UNIX")]
    exp: Option<i64>,
    /// For --sub and --client: tokens issued (`iat`) before this are revoked (default: now).
    #[arg(long, value_name = "UNIX")]
    before: Option<i64>,
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Create or upgrade the store's schema (the daemon also does it at start).
    Migrate {
        /// The daemon's configuration file, for its `[store]`.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

pub fn revoke(args: RevokeArgs) -> anyhow::Result<ExitCode> {
    let settings = store_settings(args.config.as_deref())?;
    let now = server::unix_now();
    let before = args.before.unwrap_or(now);
    let revocation = match (&args.jti, &args.sub, &args.client, &args.token) {
        (Some(jti), None, None, None) => Revocation::Jti {
            iss: args.iss.clone().unwrap_or_default(),
            jti: jti.clone(),
            exp: args.exp.context("--jti needs --exp")?,
        },
        (None, Some(sub), None, None) => Revocation::Subject {
            iss: args.iss.clone().unwrap_or_default(),
            sub: sub.clone(),
            before,
        },
        (None, None, Some(client), None) => Revocation::Client {
            client_id: client.clone(),
            before,
        },
        (None, None, None, Some(token)) => {
            let token = if token == "-" {
                let mut line = String::new();
                std::io::stdin()
                    .lock()
                    .take(64 * 1024)
                    .read_line(&mut line)
                    .context("reading the token from stdin")?;
                line.trim().to_owned()
            } else {
                token.clone()
            };
            if token.is_empty() {
                bail!("no token given");
            }
            let exp = match args.exp {
                Some(exp) => exp,
                None => payload_exp(&token).context(
                    "the token's payload has no readable exp: give --exp with the token's expiry",
                )?,
            };
            Revocation::Token {
                sha256: engine::revoked::sha256(token.as_bytes()),
                exp,
            }
        }
        _ => bail!("say what to revoke: one of --jti, --sub, --client, --token"),
    };
    if args.exp.is_some()
        && matches!(
            revocation,
            Revocation::Subject { .. } | Revocation::Client { .. }
        )
    {
        bail!("--exp applies to --jti and --token; --sub and --client take --before");
    }
    if args.before.is_some()
        && matches!(
            revocation,
            Revocation::Jti { .. } | Revocation::Token { .. }
        )
    {
        bail!("--before applies to --sub and --client");
    }
    let record = runtime()?.block_on(async {
        let store = store::Store::open(&settings.backend, now).await?;
        store.revoke(&revocation, now).await
    })?;
    println!(
        "{{\"seq\":{},\"kind\":\"{}\"}}",
        record.seq,
        record.revocation.kind()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn store(command: StoreCommand) -> anyhow::Result<ExitCode> {
    let StoreCommand::Migrate { config } = command;
    let settings = store_settings(config.as_deref())?;
    let version = runtime()?.block_on(async {
        let store = store::Store::open(&settings.backend, server::unix_now()).await?;
        Ok::<_, store::StoreError>(store.schema_version())
    })?;
    println!("store schema at version {version}");
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn store_settings(config: Option<&std::path::Path>) -> anyhow::Result<StoreSettings> {
    Ok(match config {
        Some(file) => {
            Config::load(file)
                .with_context(|| format!("{}", file.display()))?
                .store
        }
        None => StoreSettings::embedded(),
    })
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
}

/// `exp` from a compact token's payload, unverified: it only bounds how long the record is
/// kept, and a record kept too long refuses nothing that is not that very token.
fn payload_exp(token: &str) -> Option<i64> {
    let payload = token.split('.').nth(1)?;
    let bytes = jose::b64::decode(payload.as_bytes())?;
    let text = std::str::from_utf8(&bytes).ok()?;
    match jose::json::parse(text, 16).ok()? {
        jose::json::Value::Object(object) => match object.get("exp")? {
            jose::json::Value::Number(n) => n.as_f64().map(|e| e.ceil() as i64),
            _ => None,
        },
        _ => None,
    }
}
