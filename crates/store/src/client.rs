//! An OAuth client registration as stored.

/// One registered client as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRow {
    /// The `client_id`, unique in the store.
    pub id: String,
    /// The secret's hash as its owner encodes it (e.g. "sha256$..."), or None (a client that
    /// authenticates with a key).
    pub secret: Option<String>,
    /// The registration, a JSON document the caller writes and reads; opaque to the store.
    pub registration: String,
    /// Unix seconds when it was added; kept by updates.
    pub created: i64,
    /// Unix seconds when it was last written.
    pub updated: i64,
}
