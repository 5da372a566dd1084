//! `tessera clients`: the clients registered in the shared store (the token endpoint's and
//! every other endpoint's callers besides those of the configuration file), managed directly
//! in the store as the configuration's `[store]` names it. Running daemons load a change on
//! their next catch-up (a wake-up from PostgreSQL, or the poll). Secrets are generated, printed
//! once and stored as hashes.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use oauth::{AuthMethod, ClientKeys, Grant, Permission, Registration, Scope, TokenFormat};
use serde_json::{json, Value};
use server::SecretHash;
use store::ClientRow;

use crate::revoke::{runtime, store_settings};

#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// Register a client; prints `{"client_id", "client_secret"}` (the secret only this once).
    Add(Box<AddArgs>),
    /// Every registered client, one JSON object a line.
    List(Target),
    /// One client, as JSON (exit 1 if there is none).
    Show(One),
    /// Remove a client: it can no longer authenticate (exit 1 if there was none).
    Remove(One),
    /// A new secret for a client; the old one stops working. Prints it once.
    RotateSecret(One),
}

#[derive(Debug, Args)]
pub struct Target {
    /// The daemon's configuration file, for its `[store]` (default: the embedded store in the
    /// state directory).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct One {
    #[command(flatten)]
    target: Target,
    #[arg(long, value_name = "ID")]
    id: String,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    #[command(flatten)]
    target: Target,
    /// The client id (no `:`).
    #[arg(long, value_name = "ID")]
    id: String,
    /// How it authenticates at /token: client_secret_basic, client_secret_post,
    /// private_key_jwt (with --jwks or --jwks-uri), tls_client_auth (with one --tls-* name) or
    /// self_signed_tls_client_auth (with --jwks whose keys carry their certificates in x5c).
    #[arg(long, value_name = "METHOD", default_value = "client_secret_basic")]
    auth: String,
    /// A grant it may use (client_credentials); repeat for several.
    #[arg(long, value_name = "GRANT")]
    grant: Vec<String>,
    /// A scope it may ask for; repeat for several.
    #[arg(long, value_name = "SCOPE")]
    scope: Vec<String>,
    /// An audience (resource indicator, an absolute URI) its tokens may name; repeat.
    #[arg(long, value_name = "URI")]
    audience: Vec<String>,
    /// Its access tokens: jwt (signed by the HSM) or opaque (by reference).
    #[arg(long, value_name = "FORMAT", default_value = "jwt")]
    format: String,
    /// Access-token lifetime in seconds (1 to 86400).
    #[arg(long, value_name = "SECS", default_value_t = oauth::DEFAULT_TOKEN_LIFETIME_S)]
    lifetime: u64,
    /// private_key_jwt: a JWK Set file with the client's public keys;
    /// self_signed_tls_client_auth: one whose keys carry the client's certificates (x5c).
    #[arg(long, value_name = "FILE", conflicts_with = "jwks_uri")]
    jwks: Option<PathBuf>,
    /// private_key_jwt: where the client publishes its keys (https).
    #[arg(long, value_name = "URL")]
    jwks_uri: Option<String>,
    /// tls_client_auth: the certificate's subject, in RFC 4514 form (as `openssl x509 -noout
    /// -subject -nameopt RFC2253` prints it).
    #[arg(long, value_name = "DN", group = "tls_name")]
    tls_subject_dn: Option<String>,
    /// tls_client_auth: a DNS name among the certificate's alternative names.
    #[arg(long, value_name = "NAME", group = "tls_name")]
    tls_san_dns: Option<String>,
    /// tls_client_auth: a URI among the certificate's alternative names.
    #[arg(long, value_name = "URI", group = "tls_name")]
    tls_san_uri: Option<String>,
    /// tls_client_auth: an IP address among the certificate's alternative names.
    #[arg(long, value_name = "ADDR", group = "tls_name")]
    tls_san_ip: Option<String>,
    /// tls_client_auth: an email address among the certificate's alternative names.
    #[arg(long, value_name = "EMAIL", group = "tls_name")]
    tls_san_email: Option<String>,
    /// What else it may call: introspect, revoke, admin, sign; repeat.
    #[arg(long, value_name = "PERMISSION")]
    permission: Vec<String>,
    /// sign: an `iss` its tokens may carry; repeat.
    #[arg(long, value_name = "ISS")]
    sign_issuer: Vec<String>,
    /// sign: an `aud` its tokens may name; repeat.
    #[arg(long, value_name = "AUD")]
    sign_audience: Vec<String>,
    /// sign: the longest lifetime of its tokens, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 900)]
    sign_max_lifetime: u64,
    /// sign: a claim it may not set; repeat.
    #[arg(long, value_name = "CLAIM")]
    sign_forbid: Vec<String>,
    /// Every token request of this client must carry a DPoP proof (RFC 9449
    /// `dpop_bound_access_tokens`): its tokens are all DPoP-bound.
    #[arg(long)]
    dpop_bound: bool,
}

/// A snake_case name as serde reads the enum.
fn named<T: serde::de::DeserializeOwned>(what: &str, name: &str) -> anyhow::Result<T> {
    serde_json::from_value(Value::String(name.to_owned()))
        .map_err(|_| anyhow::anyhow!("--{what} {name:?} is not one tessera knows"))
}

pub fn clients(command: ClientsCommand) -> anyhow::Result<ExitCode> {
    match command {
        ClientsCommand::Add(args) => add(*args),
        ClientsCommand::List(target) => with_store(&target, |store| async move {
            for row in store.clients().await? {
                println!("{}", describe(&row));
            }
            Ok(ExitCode::SUCCESS)
        }),
        ClientsCommand::Show(one) => with_store(&one.target, |store| async move {
            match store.client(&one.id).await? {
                Some(row) => {
                    println!("{}", describe(&row));
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    eprintln!("tessera: no client {:?}", one.id);
                    Ok(ExitCode::from(1))
                }
            }
        }),
        ClientsCommand::Remove(one) => with_store(&one.target, |store| async move {
            if store.remove_client(&one.id).await? {
                println!("{}", json!({ "client_id": one.id, "removed": true }));
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("tessera: no client {:?}", one.id);
                Ok(ExitCode::from(1))
            }
        }),
        ClientsCommand::RotateSecret(one) => with_store(&one.target, |store| async move {
            let Some(mut row) = store.client(&one.id).await? else {
                eprintln!("tessera: no client {:?}", one.id);
                return Ok(ExitCode::from(1));
            };
            let registration = Registration::from_json(&row.registration)
                .with_context(|| format!("client {:?}", one.id))?;
            if !registration.auth_method.uses_secret() {
                bail!(
                    "client {:?} authenticates with {}: it has no secret",
                    one.id,
                    registration.auth_method.as_str()
                );
            }
            let (secret, hash) = SecretHash::generate()?;
            row.secret = Some(hash.to_string());
            row.updated = server::unix_now();
            if !store.update_client(&row).await? {
                bail!("client {:?} was removed meanwhile", one.id);
            }
            println!(
                "{}",
                json!({ "client_id": one.id, "client_secret": secret })
            );
            Ok(ExitCode::SUCCESS)
        }),
    }
}

fn add(args: AddArgs) -> anyhow::Result<ExitCode> {
    if args.id.is_empty() || args.id.contains(':') || args.id.len() > 256 {
        bail!("--id must be 1 to 256 bytes, without ':'");
    }
    let auth_method: AuthMethod = named("auth", &args.auth)?;
    let mut registration = Registration::new(auth_method);
    registration.grants = args
        .grant
        .iter()
        .map(|g| named::<Grant>("grant", g))
        .collect::<anyhow::Result<_>>()?;
    registration.scopes = Scope::from_tokens(&args.scope).context("--scope")?;
    registration.audiences = args.audience.clone();
    registration.token_format = named::<TokenFormat>("format", &args.format)?;
    registration.token_lifetime = args.lifetime;
    registration.dpop_bound_access_tokens = args.dpop_bound;
    registration.permissions = args
        .permission
        .iter()
        .map(|p| named::<Permission>("permission", p))
        .collect::<anyhow::Result<_>>()?;
    if registration.permissions.contains(&Permission::Sign) {
        registration.sign = Some(oauth::SignPolicy {
            issuers: args.sign_issuer.clone(),
            audiences: args.sign_audience.clone(),
            max_lifetime_s: args.sign_max_lifetime,
            forbidden_claims: args.sign_forbid.clone(),
        });
    } else if !args.sign_issuer.is_empty() || !args.sign_audience.is_empty() {
        bail!("--sign-issuer and --sign-audience go with --permission sign");
    }
    registration.keys = match (&args.jwks, &args.jwks_uri) {
        (Some(file), _) => {
            let doc = std::fs::read_to_string(file)
                .with_context(|| format!("--jwks {}", file.display()))?;
            Some(ClientKeys::Jwks(doc))
        }
        (None, Some(uri)) => Some(ClientKeys::JwksUri(uri.clone())),
        (None, None) => None,
    };
    registration.tls_subject = oauth::mtls::CertSubject::from_fields(&[
        ("tls_client_auth_subject_dn", args.tls_subject_dn.as_deref()),
        ("tls_client_auth_san_dns", args.tls_san_dns.as_deref()),
        ("tls_client_auth_san_uri", args.tls_san_uri.as_deref()),
        ("tls_client_auth_san_ip", args.tls_san_ip.as_deref()),
        ("tls_client_auth_san_email", args.tls_san_email.as_deref()),
    ])
    .map_err(anyhow::Error::msg)?;
    registration.check()?;
    let secret = if auth_method.uses_secret() {
        Some(SecretHash::generate()?)
    } else {
        None
    };
    let now = server::unix_now();
    let row = ClientRow {
        id: args.id.clone(),
        secret: secret.as_ref().map(|(_, hash)| hash.to_string()),
        registration: registration.to_json(),
        created: now,
        updated: now,
    };
    with_store(&args.target, |store| async move {
        if !store.add_client(&row).await? {
            eprintln!("tessera: a client {:?} exists already", row.id);
            return Ok(ExitCode::from(1));
        }
        let mut out = json!({ "client_id": row.id });
        if let Some((secret, _)) = secret {
            out["client_secret"] = Value::String(secret);
        }
        println!("{out}");
        Ok(ExitCode::SUCCESS)
    })
}

/// A stored client as the CLI shows it: its registration, never its secret's hash.
fn describe(row: &ClientRow) -> Value {
    let registration: Value = serde_json::from_str(&row.registration).unwrap_or(Value::Null);
    json!({
        "client_id": row.id,
        "has_secret": row.secret.is_some(),
        "registration": registration,
        "created": row.created,
        "updated": row.updated,
    })
}

fn with_store<F, Fut>(target: &Target, work: F) -> anyhow::Result<ExitCode>
where
    F: FnOnce(store::Store) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<ExitCode>>,
{
    let settings = store_settings(target.config.as_deref())?;
    runtime()?.block_on(async {
        let store = store::Store::open(&settings.backend, server::unix_now()).await?;
        work(store).await
    })
}
