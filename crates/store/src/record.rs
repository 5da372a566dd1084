//! A revocation as stored.

use engine::Revocation;

/// A revocation as stored: its sequence number and when it was recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Unique, > 0, growing in commit order.
    pub seq: i64,
    /// Unix seconds when it was written.
    pub created: i64,
    pub revocation: Revocation,
}
