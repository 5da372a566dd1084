//! `tessera`: the command-line entry point. Thin: parsing arguments and printing results; the
//! work happens in the library crates.

#![forbid(unsafe_code)]

mod capacity;
mod clients;
mod keys;
mod revoke;
mod serve;
mod verify;

/// mimalloc: faster than the system allocator for the daemon's many small, short-lived buffers.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A high-throughput token service for APIs.
#[derive(Debug, Parser)]
#[command(name = "tessera", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Verify JWTs: signature and claims. Exit 0 if all are valid, 1 if any is not, 2 on usage
    /// or configuration errors.
    Verify(verify::VerifyArgs),
    /// JWS operations.
    Jws {
        #[command(subcommand)]
        command: JwsCommand,
    },
    /// HSM token set-up.
    Hsm {
        #[command(subcommand)]
        command: keys::HsmCommand,
    },
    /// Signing keys in the HSM: generate, list, rotate, retire, publish.
    Keys {
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// Tokens signed by the HSM keys.
    Token {
        #[command(subcommand)]
        command: keys::TokenCommand,
    },
    /// Run the daemon: introspection, batch verify, forward-auth, JWKS, metrics.
    Serve(serve::ServeArgs),
    /// Configuration files.
    Config {
        #[command(subcommand)]
        command: serve::ConfigCommand,
    },
    /// Callers of the introspection and batch verify endpoints.
    Client {
        #[command(subcommand)]
        command: serve::ClientCommand,
    },
    /// Clients registered in the shared store: add, list, show, remove, rotate-secret.
    Clients {
        #[command(subcommand)]
        command: clients::ClientsCommand,
    },
    /// Revoke tokens in the shared store: by jti, subject, client or the token itself.
    Revoke(revoke::RevokeArgs),
    /// The shared store.
    Store {
        #[command(subcommand)]
        command: revoke::StoreCommand,
    },
    /// Measure this machine for the capacity planner (about 30 s): CPU time per verification
    /// per algorithm, cache hits, HTTP requests.
    Calibrate(capacity::CalibrateArgs),
    /// Plan capacity for a workload: cores needed, CPU share per algorithm, expected p99.
    Capacity(capacity::CapacityArgs),
}

#[derive(Debug, Subcommand)]
enum JwsCommand {
    /// Verify only the signature of compact JWSs; the payload may be any bytes.
    Verify(verify::JwsVerifyArgs),
}

fn main() -> ExitCode {
    // First, while this is the only thread: the PIN leaves the environment, so that neither
    // the PKCS#11 module nor anything spawned can read it there.
    let env_pin = pkcs11::Pin::take_env("TESSERA_HSM_PIN");
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Verify(args) => verify::verify(args),
        Command::Jws {
            command: JwsCommand::Verify(args),
        } => verify::jws_verify(args),
        Command::Hsm { command } => keys::hsm(command),
        Command::Keys { command } => keys::keys(command, env_pin),
        Command::Token { command } => keys::token(command, env_pin),
        Command::Serve(args) => serve::serve(args, env_pin),
        Command::Config { command } => serve::config(command),
        Command::Client { command } => serve::client(command),
        Command::Clients { command } => clients::clients(command),
        Command::Revoke(args) => revoke::revoke(args),
        Command::Store { command } => revoke::store(command),
        Command::Calibrate(args) => capacity::calibrate(args),
        Command::Capacity(args) => capacity::capacity(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("tessera: {err:#}");
            ExitCode::from(2)
        }
    }
}
