//! The verification engine of tessera: core-pinned verification workers with bounded admission
//! and batching ([`workers`]) in front of a verified-token cache ([`cache`]), and the trusted
//! issuers with their key sets, static, local or remote ([`issuers`], [`remote`]).
//!
//! No `unsafe` here; the clock is passed in by the caller; the only I/O is fetching remote key
//! sets ([`remote`]).

#![forbid(unsafe_code)]

pub mod cache;
pub mod issuers;
pub mod remote;
pub mod token;
pub mod workers;

pub use cache::{CacheConfig, CacheStats, Cached, Facts, TokenCache, TokenDigest};
pub use issuers::{
    Applied, IssuerSpec, IssuerState, Issuers, IssuersError, KeySource, LocalKeySet,
};
pub use remote::{RemoteConfig, RemoteError, RemoteKeySet};
pub use token::Token;
pub use workers::{Engine, EngineConfig, EngineError, EngineHandle, EngineStats, Policy, Verified};
