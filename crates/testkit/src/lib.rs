//! What tessera's tests, benchmarks and fixtures share, so that each test reads as its
//! scenario: scratch folders ([`Scratch`]), an issuer that signs tokens and publishes its key
//! ([`Issuer`], over jose's [`SigningKey`]), claims valid now with overrides ([`Claims`]),
//! SoftHSM tokens of their own ([`SoftHsm`]), throw-away PostgreSQL clusters ([`Postgres`]),
//! child processes that cannot hang a test ([`process`]) and a running daemon to talk HTTP to
//! ([`Daemon`]).
//!
//! Only ever a dev-dependency. Setup failures panic with what went wrong: a test that cannot
//! set up must fail loudly.

#![forbid(unsafe_code)]

mod claims;
pub mod daemon;
pub mod dpop;
mod issuer;
mod postgres;
pub mod process;
mod scratch;
mod softhsm;

pub use claims::{unix_now, Claims};
pub use daemon::{Daemon, Reply};
pub use issuer::{tampered, Issuer};
pub use jose::{Algorithm, SigningKey};
pub use postgres::Postgres;
pub use scratch::{write_private, Scratch};
pub use softhsm::{SoftHsm, SOFTHSM_MODULE};
