//! An opaque (by-reference) access token as stored: never the token, only its SHA-256.

/// One opaque access token as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpaqueRow {
    /// The SHA-256 of the token, the key it is looked up by.
    pub hash: [u8; 32],
    /// The client it was issued to.
    pub client_id: String,
    /// The token's claims as a JSON object, written and read by the caller.
    pub claims: String,
    /// Unix seconds when it expires; [`crate::Store::purge`] deletes it after.
    pub exp: i64,
    /// Unix seconds when it was issued.
    pub created: i64,
}
