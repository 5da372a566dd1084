//! The verification engine of tessera: core-pinned verification workers with bounded admission
//! and batching ([`workers`]) in front of a verified-token cache ([`cache`]), and the trusted
//! issuers with their key sets, static, local or remote ([`issuers`], [`remote`]).
//!
//! No `unsafe` here; the clock is passed in by the caller; the only I/O is fetching remote key
//! sets ([`remote`]).

#![forbid(unsafe_code)]

pub mod cache;
mod engine;
mod error;
pub mod issuers;
pub mod lanes;
mod policy;
pub mod remote;
mod replies;
pub mod revoked;
mod shared;
mod stats;
pub mod striped;
pub mod token;
mod worker;

pub use cache::{
    allocated, shared_bytes, CacheConfig, CacheKey, CacheStats, Cached, Facts, Keyed, Revocable,
    TokenCache,
};
pub use engine::{Engine, EngineConfig, EngineHandle, Refresh};
pub use error::EngineError;
pub use issuers::{
    Applied, IssuerSpec, IssuerState, Issuers, IssuersError, KeySource, LocalKeySet,
};
pub use lanes::{Signed, Tally};
pub use policy::Policy;
pub use remote::{RemoteConfig, RemoteError, RemoteKeySet};
pub use revoked::{Revocation, Revocations};
pub use stats::EngineStats;
pub use striped::Striped;
pub use token::{Kept, Token, Verified};
