//! State that several tessera daemons share, on engines people already run: SQLite (embedded,
//! the default for one machine) or PostgreSQL (for clusters). The only crate that speaks SQL.
//!
//! It holds revocation records ([`engine::Revocation`]), each with a sequence number that only
//! grows, in commit order, so that a daemon applies new records by `seq > last`; OAuth client
//! registrations ([`ClientRow`]) with a version counter daemons poll; the `jti`s of client
//! assertions already used (replay records); and opaque access tokens ([`OpaqueRow`]), by the
//! SHA-256 of the token.
//!
//! Both backends run the same statements (`schema.rs`); what differs is how they are driven:
//! SQLite from one thread of its own that owns the connection (`sqlite.rs`), PostgreSQL from a
//! connection pool plus one `LISTEN` connection (`postgres.rs`).

#![forbid(unsafe_code)]

mod client;
mod config;
mod error;
mod opaque;
mod postgres;
mod record;
mod schema;
mod sqlite;
mod store;
mod wake;

pub use crate::client::ClientRow;
pub use crate::config::StoreConfig;
pub use crate::error::StoreError;
pub use crate::opaque::OpaqueRow;
pub use crate::record::Record;
pub use crate::store::Store;
pub use engine::Revocation;
