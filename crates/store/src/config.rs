//! Where the store lives.

use std::path::PathBuf;

/// Where the store lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreConfig {
    /// An SQLite file (created with its folder when missing), WAL mode, one writer thread.
    Sqlite { path: PathBuf },
    /// A PostgreSQL server: `postgres://user@host/db?...` or key=value form; `sslmode=require`
    /// (or `verify-full`) connects with rustls against the web PKI roots. `pool` (at least 1)
    /// bounds the connections statements use; one more connection listens for changes.
    Postgres { url: String, pool: usize },
}
