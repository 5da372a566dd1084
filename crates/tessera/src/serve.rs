//! `tessera serve`, `tessera config check` and `tessera client hash-secret`: the daemon's entry
//! points. The service itself is the `server` crate.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use server::config::{HsmSettings, IssuerConfig, KeysFrom};
use server::{Config, LogFormat, SecretHash};

use crate::keys::EnvPin;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The configuration file (TOML; see examples/tessera.toml).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["jwks", "dev"])]
    config: Option<PathBuf>,
    /// Address to listen on (overrides the file's server.listen).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Quick mode: trust the keys in this JWKS file or https:// URL...
    #[arg(
        long,
        value_name = "FILE|URL",
        requires = "iss",
        conflicts_with = "dev"
    )]
    jwks: Option<String>,
    /// ...for tokens from this issuer...
    #[arg(long, value_name = "ISS", requires = "jwks")]
    iss: Option<String>,
    /// ...with one of these audiences (repeatable; none: not checked)...
    #[arg(long, value_name = "AUD", requires = "jwks")]
    aud: Vec<String>,
    /// ...carrying this header `typ`, e.g. `at+jwt` (RFC 9068; none: not checked)...
    #[arg(long, value_name = "TYP", requires = "jwks")]
    typ: Option<String>,
    /// ...and living at most this long: `exp - iat`, or `exp - now` without `iat`.
    #[arg(long, value_name = "SECS", requires = "jwks")]
    max_lifetime: Option<u64>,
    /// Development mode: sign with the development SoftHSM token (creating an ES256 key if it has
    /// none), trust its own keys, and accept the introspection client `dev` / `dev-secret`.
    #[arg(long)]
    dev: bool,
    /// `text` or `json` (overrides the file's log.format).
    #[arg(long, env = "TESSERA_LOG_FORMAT", value_name = "FORMAT")]
    log_format: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check a configuration file: exit 0 if it is valid, 2 with the field at fault if not.
    Check { file: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Hash a client secret read from stdin, for `secret_hash` in the configuration.
    HashSecret {
        /// PBKDF2 iterations.
        #[arg(long, default_value_t = server::secret::DEFAULT_ITERATIONS)]
        iterations: u32,
    },
}

pub fn config(command: ConfigCommand) -> anyhow::Result<ExitCode> {
    let ConfigCommand::Check { file } = command;
    let config = Config::load(&file).with_context(|| format!("{}", file.display()))?;
    println!(
        "{}: ok ({} issuer(s), {} client(s), {} route(s), {})",
        file.display(),
        config.issuers.len(),
        config.clients.len(),
        config.authz.routes.len(),
        if config.hsm.is_some() {
            "HSM"
        } else {
            "no HSM"
        }
    );
    Ok(ExitCode::SUCCESS)
}

pub fn client(command: ClientCommand) -> anyhow::Result<ExitCode> {
    let ClientCommand::HashSecret { iterations } = command;
    let mut secret = String::new();
    std::io::stdin()
        .lock()
        .take(4096)
        .read_line(&mut secret)
        .context("reading the secret from stdin")?;
    let secret = secret.trim_end_matches(['\r', '\n']);
    if secret.is_empty() {
        bail!("no secret on stdin");
    }
    println!("{}", SecretHash::new(secret.as_bytes(), iterations)?);
    Ok(ExitCode::SUCCESS)
}

use std::io::Read as _;

pub fn serve(args: ServeArgs, env_pin: EnvPin) -> anyhow::Result<ExitCode> {
    let env_pin = env_pin.transpose()?;
    let mut config = match (&args.config, &args.jwks, args.dev) {
        (Some(file), _, _) => Config::load(file).with_context(|| format!("{}", file.display()))?,
        (None, Some(jwks), _) => Config::quick(
            args.listen.unwrap_or(([127, 0, 0, 1], 8080).into()),
            jwks,
            server::config::IssuerSpec {
                issuer: args.iss.clone().unwrap_or_default(),
                audiences: args.aud.clone(),
                typ: args.typ.clone(),
                max_lifetime: args.max_lifetime,
                ..server::config::IssuerSpec::default()
            },
        )?,
        (None, None, true) => Config::empty(([127, 0, 0, 1], 8080).into()),
        (None, None, false) => {
            bail!("nothing to trust: use --config FILE, --jwks FILE_OR_URL --iss ISS, or --dev")
        }
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(format) = &args.log_format {
        config.log.format = match format.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => bail!("--log-format {other:?}: use text or json"),
        };
    }
    init_logging(&config);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tessera-http")
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listening on {}", config.listen))?;
        let bound = listener.local_addr()?;
        let scheme = if config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let public_url = config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{bound}"));
        if args.dev {
            // The development client's secret is public: never on a reachable address.
            if !bound.ip().is_loopback() {
                bail!("--dev serves only on a loopback address (127.0.0.1 or ::1), not {bound}");
            }
            dev(&mut config, &public_url)?;
        }
        if let Some(hsm) = &mut config.hsm {
            hsm.pin = env_pin;
        }
        let app = server::App::start(&config, public_url.clone()).await?;
        // Installed before the line below: a signal sent as soon as it appears must drain.
        let shutdown = shutdown_signal()?;
        tracing::info!(%bound, issuers = config.issuers.len(), "listening");
        let mut stdout = std::io::stdout();
        writeln!(stdout, "listening on {scheme}://{bound}")?;
        stdout.flush()?;
        server::run(listener, app, shutdown).await;
        tracing::info!("stopped");
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Development mode: the development SoftHSM token (as `make run` and hsm/setup.sh make it),
/// an ES256 key, this daemon as the one trusted issuer, and a development client.
fn dev(config: &mut Config, public_url: &str) -> anyhow::Result<()> {
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let pin_file = std::env::var_os("TESSERA_HSM_PIN_FILE")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from("hsm/dev-pin")).filter(|p| p.exists()));
    config.hsm = Some(HsmSettings {
        module: env("TESSERA_HSM_MODULE", server::config::SOFTHSM_MODULE).into(),
        token: env("TESSERA_HSM_TOKEN", "tessera-dev"),
        pin_file,
        pin: None,
        sessions: 4,
        ensure_key: Some(jose::Algorithm::ES256),
    });
    // Its own access tokens are RFC 9068 JWTs: `typ` at+jwt, required.
    config.issuers = vec![IssuerConfig {
        spec: server::config::IssuerSpec {
            typ: Some(oauth::ACCESS_TOKEN_TYP.into()),
            ..engine_spec(public_url)
        },
        keys: KeysFrom::Hsm,
    }];
    config.clients = vec![server::config::Client::caller(
        "dev",
        // Development only: a well-known secret, hashed cheaply.
        SecretHash::new(b"dev-secret", 1000)?,
        // Development only: the dev client may also revoke and administer revocations.
        &[
            server::config::Permission::Introspect,
            server::config::Permission::Revoke,
            server::config::Permission::Admin,
        ],
    )];
    Ok(())
}

fn engine_spec(issuer: &str) -> server::config::IssuerSpec {
    server::config::IssuerSpec {
        issuer: issuer.into(),
        ..server::config::IssuerSpec::default()
    }
}

fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let _ = match config.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is called, not when the
/// future is first polled.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}
