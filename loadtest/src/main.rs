//! `tessera-loadtest`: open- and closed-loop HTTP/1.1 or HTTP/2 load against tessera (forward-auth,
//! introspection, batch verify, the token endpoint, JWKS) or any URL, with tokens it signs itself
//! and HDR latency reports. See loadtest/README.md.

#![forbid(unsafe_code)]

mod cli;
mod html;
mod http2;
mod keys;
mod output;
mod run;
mod scenario;
mod stats;
mod tokens;

fn main() -> std::process::ExitCode {
    cli::main()
}
