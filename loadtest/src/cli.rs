//! The command line: key and token commands, and one load command per scenario.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand};
use jose::Algorithm;

use crate::run::{Plan, Protocol};
use crate::scenario::{self, Client, Request, Target};
use crate::tokens::{self, Kind, Spec, Token};
use crate::{html, keys, output, run};
use loadtest::report::{Report, FORMAT};

#[derive(Parser, Debug)]
#[command(
    name = "tessera-loadtest",
    version,
    about = "Open- and closed-loop HTTP/1.1 or HTTP/2 load against tessera, with HDR latency \
             reports.",
    after_help = "Latency is measured from each request's intended start in the open loop \
                  (--rate), so a stalled server is charged for every request it held up."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create signing keys (RS256, ES256, EdDSA; HS256 with --hs256) and the JWKS the daemon
    /// trusts: `tessera serve --jwks DIR/jwks.json --iss ISS`.
    Keys(KeysArgs),
    /// Print tokens signed as the load commands sign them, one per line (invalid ones followed
    /// by their kind).
    Tokens(TokenArgs),
    /// GET /v1/authz with `Authorization: Bearer` (forward-auth): 200 for valid tokens, 401 for
    /// invalid ones.
    Authz(AuthzArgs),
    /// POST /introspect (RFC 7662) with HTTP Basic and a form body `token=...`.
    Introspect(IntrospectArgs),
    /// POST /v1/verify with `{"tokens": [...]}`, --batch tokens per request, HTTP Basic.
    VerifyBatch(VerifyBatchArgs),
    /// POST /token (RFC 6749 4.4): client credentials grants with HTTP Basic, 200 with an
    /// `access_token` expected; every answer is a token the daemon signed.
    Token(GrantArgs),
    /// GET /.well-known/jwks.json.
    Jwks(JwksArgs),
    /// GET any http:// URL (a baseline, such as the hyper hello-world).
    Get(GetArgs),
}

#[derive(Args, Debug)]
struct KeysArgs {
    /// Directory for the private keys (PKCS#8 DER, mode 0600) and jwks.json.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Also an HS256 secret; jwks.json then holds it too (as an `oct` key) and is written 0600.
    #[arg(long)]
    hs256: bool,
    /// Replace an existing key set in DIR.
    #[arg(long)]
    force: bool,
}

#[derive(Args, Debug)]
struct LoadArgs {
    /// Open loop: requests per second over all connections. Without it: closed loop (each
    /// connection sends its next request when the answer came).
    #[arg(long, value_name = "R")]
    rate: Option<f64>,
    /// TCP connections, spread over the threads (HTTP/1.1: keep-alive, one request in flight
    /// each).
    #[arg(long, short = 'c', value_name = "N", default_value_t = 64)]
    connections: usize,
    /// Worker threads, each with its own event loop (default: the CPUs of --cpus, or all CPUs;
    /// never more than the connections).
    #[arg(long, short = 't', value_name = "T")]
    threads: Option<usize>,
    /// Pin the worker threads to these CPUs, round robin: `--cpus 0,1`.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    cpus: Vec<usize>,
    /// How long to measure (`10s`, `500ms`, `2m`; a bare number is seconds).
    #[arg(long, short = 'd', value_name = "TIME", default_value = "10s", value_parser = duration)]
    duration: Duration,
    /// Load before measuring, not counted.
    #[arg(long, value_name = "TIME", default_value = "2s", value_parser = duration)]
    warmup: Duration,
    /// A request without a complete answer after this long fails (`timeout`) and its
    /// connection is reopened.
    #[arg(long, value_name = "TIME", default_value = "10s", value_parser = duration)]
    timeout: Duration,
    /// Write the report as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write the report as a self-contained HTML page.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// HTTP/2 with prior knowledge over cleartext TCP (as `tessera serve` accepts on its plain
    /// port) instead of HTTP/1.1.
    #[arg(long)]
    http2: bool,
    /// With --http2: requests in flight on each connection (concurrent streams), so N
    /// connections carry N × M requests at once [default: 1].
    #[arg(long, value_name = "M")]
    streams: Option<usize>,
    /// No progress line on stderr.
    #[arg(long, short = 'q')]
    quiet: bool,
}

#[derive(Args, Debug)]
struct ServerArgs {
    /// The daemon's base URL (plain http).
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8080")]
    url: String,
}

#[derive(Args, Debug)]
struct TokenArgs {
    /// Sign tokens with the keys of DIR (made by `tessera-loadtest keys --out DIR`).
    #[arg(long, value_name = "DIR", conflicts_with = "tokens")]
    keys: Option<PathBuf>,
    /// `iss` of the signed tokens (the daemon's `--iss`).
    #[arg(long, value_name = "ISS")]
    iss: Option<String>,
    /// `aud` of the signed tokens (the daemon's `--aud`); without it, tokens carry no `aud`.
    #[arg(long, value_name = "AUD")]
    aud: Option<String>,
    /// `scope` of the signed tokens.
    #[arg(long, value_name = "SCOPES", default_value = "loadtest")]
    scope: String,
    /// Algorithms and their shares: `RS256=50,ES256=30,EdDSA=20` (RS256, ES256, EdDSA, HS256).
    #[arg(long, value_name = "ALG=SHARE,...", default_value = "ES256=100", value_parser = mix)]
    mix: Mix,
    /// How many different tokens (the daemon's cache sees each one again after this many).
    #[arg(long, value_name = "N", default_value_t = 1)]
    distinct: usize,
    /// Percent of the distinct tokens made invalid: expired, bad signature and (with --aud)
    /// wrong audience, in rotation.
    #[arg(long, value_name = "PCT", default_value_t = 0.0)]
    invalid: f64,
    /// Token lifetime (`exp - iat`).
    #[arg(long, value_name = "TIME", default_value = "1h", value_parser = duration)]
    ttl: Duration,
    /// Send the tokens of FILE instead (one per line; a second word other than `valid` marks a
    /// token the daemon should refuse).
    #[arg(long, value_name = "FILE")]
    tokens: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct ClientArgs {
    /// Client id (HTTP Basic).
    #[arg(
        long,
        value_name = "ID",
        env = "TESSERA_LOADTEST_CLIENT_ID",
        default_value = "dev"
    )]
    client_id: String,
    /// Its secret; prefer the environment variable or --client-secret-file, which keep it off
    /// the process list.
    #[arg(
        long,
        value_name = "SECRET",
        env = "TESSERA_LOADTEST_CLIENT_SECRET",
        hide_env_values = true
    )]
    client_secret: Option<String>,
    /// Read the secret from FILE (its first line) instead.
    #[arg(
        long,
        value_name = "FILE",
        visible_alias = "secret-file",
        conflicts_with = "client_secret"
    )]
    client_secret_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct AuthzArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The path asked (route rules match what follows `/v1/authz`).
    #[arg(long, value_name = "PATH", default_value = "/v1/authz")]
    path: String,
    #[command(flatten)]
    tokens: TokenArgs,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Args, Debug)]
struct IntrospectArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    tokens: TokenArgs,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Args, Debug)]
struct VerifyBatchArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Tokens per request.
    #[arg(long, value_name = "N", default_value_t = 16)]
    batch: usize,
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    tokens: TokenArgs,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Args, Debug)]
struct GrantArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    client: ClientArgs,
    /// The `scope` parameter asked for (space-separated scopes); without it, none is sent and
    /// the daemon grants what the client is registered for.
    #[arg(long, value_name = "SCOPES")]
    scope: Option<String>,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Args, Debug)]
struct JwksArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Args, Debug)]
struct GetArgs {
    /// The URL to GET (http://).
    url: String,
    /// The status every answer should have.
    #[arg(long, value_name = "CODE", default_value_t = 200,
          value_parser = clap::value_parser!(u16).range(100..=599))]
    expect_status: u16,
    #[command(flatten)]
    load: LoadArgs,
}

/// `--mix` as given: algorithm and weight.
#[derive(Clone, Debug)]
struct Mix(Vec<(Algorithm, f64)>);

fn mix(s: &str) -> Result<Mix, String> {
    let mut out: Vec<(Algorithm, f64)> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, share) = part.split_once('=').unwrap_or((part, "100"));
        let alg = Algorithm::from_name(name.trim())
            .filter(|a| keys::file_name(*a).is_some())
            .ok_or_else(|| format!("{name:?}: use RS256, ES256, EdDSA or HS256"))?;
        let share: f64 = share
            .trim()
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v > 0.0)
            .ok_or_else(|| format!("{part:?}: the share must be a positive number"))?;
        if out.iter().any(|(a, _)| *a == alg) {
            return Err(format!("{} appears twice", alg.name()));
        }
        out.push((alg, share));
    }
    if out.is_empty() {
        return Err("empty mix".into());
    }
    Ok(Mix(out))
}

/// `10s`, `500ms`, `2m`, `1h`, `1.5s`, or a bare number of seconds.
fn duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{s:?}: expected a duration such as 10s, 500ms or 2m"))?;
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => return Err(format!("{s:?}: unknown unit {other:?} (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(value * scale).map_err(|e| format!("{s:?}: {e}"))
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tessera-loadtest: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Keys(args) => keys_command(&args),
        Command::Tokens(args) => tokens_command(&args),
        Command::Authz(args) => {
            let target = Target::parse(&args.server.url)?.join(&args.path);
            let (tokens, spec) = load_tokens(&args.tokens, &args.load)?;
            let requests = scenario::authz(&target, &tokens);
            load(
                "authz",
                &target,
                requests,
                &args.load,
                Some((tokens, spec)),
                None,
            )
        }
        Command::Introspect(args) => {
            let target = Target::parse(&args.server.url)?.join("/introspect");
            let client = client(&args.client)?;
            let (tokens, spec) = load_tokens(&args.tokens, &args.load)?;
            let requests = scenario::introspect(&target, &tokens, &client);
            load(
                "introspect",
                &target,
                requests,
                &args.load,
                Some((tokens, spec)),
                None,
            )
        }
        Command::VerifyBatch(args) => {
            if args.batch == 0 {
                bail!("--batch must be at least 1");
            }
            let target = Target::parse(&args.server.url)?.join("/v1/verify");
            let client = client(&args.client)?;
            let (tokens, spec) = load_tokens(&args.tokens, &args.load)?;
            let requests = scenario::verify_batch(&target, &tokens, args.batch, &client);
            load(
                "verify-batch",
                &target,
                requests,
                &args.load,
                Some((tokens, spec)),
                Some(args.batch),
            )
        }
        Command::Token(args) => {
            let target = Target::parse(&args.server.url)?.join("/token");
            let client = client(&args.client)?;
            let requests = scenario::token(&target, &client, args.scope.as_deref());
            load("token", &target, requests, &args.load, None, None)
        }
        Command::Jwks(args) => {
            let target = Target::parse(&args.server.url)?.join("/.well-known/jwks.json");
            let requests = scenario::get(&target);
            load("jwks", &target, requests, &args.load, None, None)
        }
        Command::Get(args) => {
            let target = Target::parse(&args.url)?;
            let mut requests = scenario::get(&target);
            for r in &mut requests {
                r.expect.status = args.expect_status;
            }
            load("get", &target, requests, &args.load, None, None)
        }
    }
}

fn keys_command(args: &KeysArgs) -> anyhow::Result<ExitCode> {
    let mut algs = vec![Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];
    if args.hs256 {
        algs.push(Algorithm::HS256);
    }
    let made = keys::create(&args.out, &algs, args.force)?;
    for key in &made {
        println!(
            "{:<6} kid {}",
            key.alg().name(),
            key.kid().unwrap_or_default()
        );
    }
    let jwks = args.out.join(keys::JWKS);
    println!("wrote {} and the private keys", jwks.display());
    println!(
        "serve with: tessera serve --jwks {} --iss ISS [--aud AUD]",
        jwks.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn tokens_command(args: &TokenArgs) -> anyhow::Result<ExitCode> {
    let (tokens, _) = sign(args, None)?;
    let mut out = String::with_capacity(tokens.len() * 600);
    for t in &tokens {
        out.push_str(&t.text);
        if !t.kind.is_valid() {
            out.push(' ');
            out.push_str(t.kind.name());
        }
        out.push('\n');
    }
    use std::io::Write as _;
    std::io::stdout()
        .lock()
        .write_all(out.as_bytes())
        .context("writing the tokens")?;
    Ok(ExitCode::SUCCESS)
}

fn client(args: &ClientArgs) -> anyhow::Result<Client> {
    let secret = match (&args.client_secret_file, &args.client_secret) {
        (Some(file), _) => secret_file(file)?,
        (None, Some(secret)) => secret.clone(),
        (None, None) => bail!(
            "the client secret is missing: give --client-secret-file FILE or set \
             TESSERA_LOADTEST_CLIENT_SECRET (or --client-secret) for client {:?}",
            args.client_id
        ),
    };
    Ok(Client {
        id: args.client_id.clone(),
        secret,
    })
}

/// A client secret from the first line of `file` (its line end removed).
fn secret_file(file: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading the client secret from {}", file.display()))?;
    let secret = text.lines().next().unwrap_or_default();
    if secret.is_empty() {
        bail!("{}: no client secret on its first line", file.display());
    }
    Ok(secret.to_string())
}

/// The tokens of a load run, from `--tokens FILE` or signed with `--keys DIR`.
fn load_tokens(args: &TokenArgs, load: &LoadArgs) -> anyhow::Result<(Vec<Token>, Option<Spec>)> {
    if let Some(file) = &args.tokens {
        return Ok((tokens::read_file(file)?, None));
    }
    let run = load.warmup + load.duration;
    if args.ttl < run + Duration::from_secs(60) {
        bail!(
            "--ttl {:?} would let the tokens expire during the run ({:?} with the warm-up); \
             give at least a minute more",
            args.ttl,
            run
        );
    }
    let (tokens, spec) = sign(args, Some(load))?;
    Ok((tokens, Some(spec)))
}

fn sign(args: &TokenArgs, load: Option<&LoadArgs>) -> anyhow::Result<(Vec<Token>, Spec)> {
    let Some(dir) = &args.keys else {
        bail!(
            "no tokens: sign them with --keys DIR --iss ISS (make DIR with `tessera-loadtest keys \
             --out DIR`) or give --tokens FILE"
        );
    };
    let Some(iss) = args.iss.clone() else {
        bail!("--keys needs --iss ISS, the issuer the daemon trusts");
    };
    if !(0.0..=100.0).contains(&args.invalid) {
        bail!("--invalid is a percentage: 0 to 100");
    }
    let spec = Spec {
        iss,
        aud: args.aud.clone(),
        scope: args.scope.clone(),
        mix: args.mix.0.clone(),
        distinct: args.distinct,
        invalid_pct: args.invalid,
        ttl: args.ttl.as_secs(),
    };
    // Checked before the keys are read: a bad mix fails fast.
    tokens::layout(&spec)?;
    let algs: Vec<Algorithm> = spec.mix.iter().map(|(a, _)| *a).collect();
    let signing = keys::load(dir, &algs)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if spec.distinct >= 2_000 && load.is_some_and(|l| !l.quiet) {
        eprintln!(
            "tessera-loadtest: signing {} tokens on {threads} threads",
            spec.distinct
        );
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs();
    let tokens = tokens::generate(&spec, &signing, now, threads)?;
    Ok((tokens, spec))
}

/// Runs one load scenario and reports it.
fn load(
    scenario: &str,
    target: &Target,
    requests: Vec<Request>,
    args: &LoadArgs,
    tokens: Option<(Vec<Token>, Option<Spec>)>,
    batch: Option<usize>,
) -> anyhow::Result<ExitCode> {
    let protocol = match (args.http2, args.streams) {
        (false, Some(_)) => bail!(
            "--streams needs --http2: an HTTP/1.1 connection carries one request at a time \
             (raise --connections instead)"
        ),
        (false, None) => Protocol::Http1,
        (true, Some(0)) => bail!("--streams must be at least 1"),
        (true, streams) => Protocol::Http2 {
            streams: streams.unwrap_or(1),
        },
    };
    if args.connections == 0 {
        bail!("--connections must be at least 1");
    }
    if args.duration.is_zero() {
        bail!("--duration must be more than 0");
    }
    if args.timeout.is_zero() {
        bail!("--timeout must be more than 0");
    }
    if let Some(rate) = args.rate {
        if !(rate.is_finite() && rate > 0.0) {
            bail!("--rate must be a positive number of requests per second");
        }
    }
    let cpus_available = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = match args.threads {
        Some(0) => bail!("--threads must be at least 1"),
        Some(t) => t,
        None if !args.cpus.is_empty() => args.cpus.len(),
        None => cpus_available,
    }
    .min(args.connections);
    let report_base = Report {
        format: FORMAT,
        scenario: scenario.to_string(),
        target: target.url.clone(),
        mode: if args.rate.is_some() {
            "open"
        } else {
            "closed"
        }
        .to_string(),
        rate: args.rate,
        connections: args.connections,
        threads,
        protocol: match protocol {
            Protocol::Http1 => "http1",
            Protocol::Http2 { .. } => "http2",
        }
        .to_string(),
        streams: match protocol {
            Protocol::Http1 => None,
            Protocol::Http2 { streams } => Some(streams),
        },
        duration_s: args.duration.as_secs_f64(),
        warmup_s: args.warmup.as_secs_f64(),
        batch,
        ..Report::default()
    };
    let mut report = report_base;
    if let Some((tokens, spec)) = tokens {
        describe_tokens(&mut report, &tokens, spec.as_ref());
        // Only the encoded requests are needed from here on.
        drop(tokens);
    }
    let plan = Plan {
        addr: target.addr,
        requests,
        protocol,
        rate: args.rate,
        connections: args.connections,
        threads,
        cpus: args.cpus.clone(),
        warmup: args.warmup,
        duration: args.duration,
        timeout: args.timeout,
        progress: !args.quiet,
    };
    run::stop_on_ctrl_c()?;
    let measured = run::run(plan)?;
    if measured.window.is_zero() {
        eprintln!("tessera-loadtest: interrupted during the warm-up: nothing was measured");
        return Ok(ExitCode::from(130));
    }
    let recorded = measured.recorded;
    report.requests = recorded.requests;
    report.statuses = recorded.statuses();
    report.errors = recorded.errors();
    report.duration_s = measured.window.as_secs_f64();
    report.throughput = recorded.requests as f64 / report.duration_s;
    report.latency_us = recorded.summary();
    report.timeline = recorded.timeline();
    // An interrupted window has no seconds after the interruption.
    report
        .timeline
        .truncate(measured.window.as_secs_f64().ceil() as usize);
    report.distribution = recorded.distribution();
    report.notes.extend(notes(&recorded, args));
    if measured.interrupted {
        report.notes.push(format!(
            "interrupted (Ctrl-C) after {:.1} s of the {} s window: the figures cover that part",
            report.duration_s,
            args.duration.as_secs_f64()
        ));
    }
    print!("{}", output::table(&report));
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report).context("encoding the report")?;
        write(path, json.as_bytes())?;
    }
    if let Some(path) = &args.html {
        write(path, html::render(&report).as_bytes())?;
    }
    Ok(if measured.interrupted {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// The token fields of the report: the mix as asked (or as found in a token file), distinct
/// count, invalid share.
fn describe_tokens(report: &mut Report, tokens: &[Token], spec: Option<&Spec>) {
    report.distinct = tokens.len();
    let invalid = tokens.iter().filter(|t| !t.kind.is_valid()).count();
    report.invalid_pct = 100.0 * invalid as f64 / tokens.len().max(1) as f64;
    match spec {
        Some(spec) => {
            let sum: f64 = spec.mix.iter().map(|(_, w)| w).sum();
            report.mix = spec
                .mix
                .iter()
                .map(|(a, w)| (a.name().to_string(), 100.0 * w / sum))
                .collect();
            if (report.invalid_pct - spec.invalid_pct).abs() > 1e-9 {
                report.notes.push(format!(
                    "--invalid {} asked; {:.3}% of the {} tokens are invalid",
                    spec.invalid_pct,
                    report.invalid_pct,
                    tokens.len()
                ));
            }
            if invalid > 0 {
                let kinds: Vec<&str> = [Kind::Expired, Kind::BadSignature, Kind::WrongAudience]
                    .into_iter()
                    .filter(|k| tokens.iter().any(|t| t.kind == *k))
                    .map(Kind::name)
                    .collect();
                report
                    .notes
                    .push(format!("invalid tokens, in rotation: {}", kinds.join(", ")));
            }
        }
        None => {
            // A token file: the algorithms its tokens name.
            let mut counts: Vec<(String, usize)> = Vec::new();
            for t in tokens {
                let alg = jose::jws::peek_key(&t.text, &jose::Limits::default())
                    .map_or_else(|_| "unknown".to_string(), |(a, _)| a.name().to_string());
                match counts.iter_mut().find(|(a, _)| *a == alg) {
                    Some((_, n)) => *n += 1,
                    None => counts.push((alg, 1)),
                }
            }
            report.mix = counts
                .into_iter()
                .map(|(a, n)| (a, 100.0 * n as f64 / tokens.len() as f64))
                .collect();
        }
    }
}

fn notes(recorded: &crate::stats::Recorder, args: &LoadArgs) -> Vec<String> {
    let mut notes = Vec::new();
    notes.push(machine());
    notes.push(format!(
        "tessera-loadtest {}: {}",
        env!("CARGO_PKG_VERSION"),
        command_line()
    ));
    notes.push(format!("TCP connections opened: {}", recorded.connects));
    if args.rate.is_some() && recorded.late > 0 {
        notes.push(format!(
            "open loop: {} requests found every {} busy at their intended start \
             (their latency includes that wait)",
            recorded.late,
            if args.http2 { "stream" } else { "connection" }
        ));
    }
    if args.rate.is_some() && recorded.slow_wakes > 0 {
        notes.push(format!(
            "open loop: {} sends left more than 2 ms after their due time because the harness \
             thread was busy (measured from when they left): add --threads or CPUs",
            recorded.slow_wakes
        ));
    }
    notes
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| format!(", Linux {}", s.trim()))
        .unwrap_or_default();
    format!("machine: {cpus} CPUs, {model}{kernel}")
}

/// The command line, with a client secret given on it blanked out.
fn command_line() -> String {
    let mut out = Vec::new();
    let mut hide_next = false;
    for arg in std::env::args().skip(1) {
        if hide_next {
            out.push("***".to_string());
            hide_next = false;
        } else if arg == "--client-secret" {
            hide_next = true;
            out.push(arg);
        } else if arg.starts_with("--client-secret=") {
            out.push("--client-secret=***".to_string());
        } else {
            out.push(arg);
        }
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(duration("ten").is_err());
        assert!(duration("5d").is_err());
    }

    #[test]
    fn mixes() {
        let m = mix("RS256=50, ES256=30,EdDSA=20").unwrap();
        assert_eq!(
            m.0,
            vec![
                (Algorithm::RS256, 50.0),
                (Algorithm::ES256, 30.0),
                (Algorithm::EdDSA, 20.0)
            ]
        );
        assert_eq!(mix("HS256").unwrap().0, vec![(Algorithm::HS256, 100.0)]);
        for bad in [
            "",
            "PS256=1",
            "ES256=0",
            "ES256=-1",
            "ES256=1,ES256=2",
            "es256=1",
        ] {
            assert!(mix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_secret_file_gives_its_first_line() {
        let dir = std::env::temp_dir().join(format!("loadtest-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("secret");
        std::fs::write(&file, "tcs_abc\r\nignored\n").unwrap();
        assert_eq!(secret_file(&file).unwrap(), "tcs_abc");
        std::fs::write(&file, "\n").unwrap();
        assert!(secret_file(&file).is_err());
        assert!(secret_file(&dir.join("missing")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_command_line_parses() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
