//! Why the store could not answer, and whose fault it is.

/// Why the store could not answer.
#[non_exhaustive]
#[derive(Debug)]
pub enum StoreError {
    /// The configuration is unusable (a bad URL, a path that cannot be created): the operator's.
    Config(String),
    /// The store cannot be reached or failed a statement (the network, the server, the disk).
    Unavailable(String),
    /// The schema in the store is newer than this binary knows: upgrade the binary.
    SchemaTooNew { found: i64, known: i64 },
    /// A row could not be read back as a record (written by something else).
    Corrupt(String),
    /// The write conflicts with what is stored (a key that is already taken): the caller's
    /// fault, and nothing was written.
    Conflict(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Config(m) => write!(f, "store configuration: {m}"),
            StoreError::Unavailable(m) => write!(f, "store unavailable: {m}"),
            StoreError::SchemaTooNew { found, known } => write!(
                f,
                "store schema version {found} is newer than this binary's {known}: upgrade tessera"
            ),
            StoreError::Corrupt(m) => write!(f, "store row unreadable: {m}"),
            StoreError::Conflict(m) => write!(f, "store conflict: {m}"),
        }
    }
}

impl std::error::Error for StoreError {}
