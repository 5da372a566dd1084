//! What the engine's callers and workers share: the queues, admission, the sleeping workers,
//! the cache and the counters.

use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Condvar, Mutex};

use crossbeam_deque::{Injector, Stealer};

use crate::cache::{CacheKey, TokenCache};
use crate::issuers::Issuers;
use crate::policy::Policy;
use crate::replies::Reply;
use crate::revoked::Revocations;
use crate::stats::Counters;
use crate::token::{Kept, Token};

/// One admitted verification.
pub(crate) struct Job<R: Kept> {
    /// The token, shared with its cache entry once verified.
    pub(crate) token: bytes::Bytes,
    /// Where it goes in the cache.
    pub(crate) key: CacheKey,
    pub(crate) policy: Arc<Policy>,
    pub(crate) now: i64,
    pub(crate) reply: Reply<R>,
}

pub(crate) struct Shared<R: Kept> {
    pub(crate) injector: Injector<Job<R>>,
    pub(crate) stealers: Vec<Stealer<Job<R>>>,
    pub(crate) in_flight: AtomicUsize,
    pub(crate) capacity: usize,
    pub(crate) batch: usize,
    pub(crate) shutdown: AtomicBool,
    pub(crate) sleeping: AtomicUsize,
    pub(crate) idle: Mutex<()>,
    pub(crate) wake: Condvar,
    pub(crate) cache: TokenCache<Token<R>>,
    /// Checked after the cache on every valid verdict.
    pub(crate) revocations: Revocations,
    /// The trusted issuers tokens are routed to.
    pub(crate) issuers: Arc<Issuers>,
    pub(crate) counters: Counters,
    /// crypto_mb, where it is loaded and this CPU runs it.
    pub(crate) multibuffer: Option<Arc<multibuffer::MultiBuffer>>,
}
