//! The verification engine of tessera. Today: the verified-token cache ([`cache`]). The
//! core-pinned workers, batching and issuer key sets of roadmap step 3 build on it.
//!
//! No I/O and no `unsafe` here; the clock is passed in by the caller.

#![forbid(unsafe_code)]

pub mod cache;

pub use cache::{CacheConfig, CacheStats, Cached, Facts, TokenCache, TokenDigest};
