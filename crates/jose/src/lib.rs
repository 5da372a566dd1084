//! The JOSE core of tessera: strict compact JWS and JWT verification on aws-lc-rs.
//!
//! Every token is hostile until verified. The rules, in the order they are applied:
//!
//! 1. The token's size is checked before anything is decoded ([`Limits`]).
//! 2. It has exactly three segments, each strict base64url ([`b64`]).
//! 3. The header is a JSON object read by a strict reader ([`json`]): UTF-8, no duplicate
//!    members, bounded depth. `alg` names a supported algorithm (`none` does not exist), `crit`
//!    is understood or refused, `jwk`/`jku`/`x5u`/`x5c` are never key sources.
//! 4. The key comes from the caller's [`KeySet`], by `kid` or as the only key for the
//!    algorithm, and must be pinned to the algorithm the header names.
//! 5. The signature is verified; only then is the payload decoded and its claims read and
//!    validated ([`Validation`]).
//!
//! This crate does no I/O, spawns nothing and holds no unsafe code.

#![forbid(unsafe_code)]

mod alg;
pub mod b64;
pub mod batch;
pub mod date;
mod error;
pub mod json;
mod jwk;
pub mod jws;
pub mod jwt;
pub mod proof;
mod sign;
mod thumbprint;

pub use alg::{Algorithm, Family};
pub use error::{Error, Malformed, Segment};
pub use jwk::{Jwks, KeyError, KeySet, KeySetError, SkipReason, SkippedKey, VerifyingKey};
pub use jws::{Jws, Limits, SigningInput};
pub use jwt::{Jwt, Validation};
pub use sign::{SignError, SigningKey};
pub use thumbprint::PublicJwk;
