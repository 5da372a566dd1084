//! OAuth 2.0 as tessera issues tokens, without I/O: what a client is registered for
//! ([`Registration`]), what a token request asks ([`TokenRequest`], RFC 6749 section 4.4 and
//! RFC 8707), how a client assertion is checked (RFC 7523, [`assertion`]), what a grant gives
//! ([`grant::client_credentials`]), the claims of the access tokens it mints (RFC 9068,
//! [`AccessClaims`]) and the by-reference tokens it hands out instead ([`OpaqueToken`]).
//!
//! The callers do the rest: the daemon reads requests and stores, the HSM signs. Errors are
//! the RFC 6749 section 5.2 codes ([`OAuthError`]) with a description safe to send the client.

#![forbid(unsafe_code)]

pub mod assertion;
pub mod dpop;
mod error;
pub mod forwarded;
pub mod grant;
mod mint;
pub mod mtls;
pub mod nonce;
mod opaque;
mod registration;
mod request;
mod scope;
pub mod sign;

pub use error::{ErrorCode, OAuthError};
pub use mint::{new_jti, AccessClaims, Confirmation, ACCESS_TOKEN_TYP};
pub use opaque::{OpaqueToken, OPAQUE_PREFIX};
pub use registration::{
    client_key_set, AuthMethod, ClientKeys, Grant, Permission, Registration, RegistrationError,
    TokenFormat, DEFAULT_TOKEN_LIFETIME_S, MAX_TOKEN_LIFETIME_S,
};
pub use request::{ClientAuth, TokenRequest, GRANT_CLIENT_CREDENTIALS};
pub use scope::{Scope, ScopeError};
pub use sign::{SignPolicy, SignRefusal};
