//! The engine owns verification: the trusted issuers, the verified-token cache and the worker
//! threads (one per core, pinned when asked, fed through a lock-free injector queue; the loop is
//! in `worker.rs`). Callers hold an [`EngineHandle`] and say `verify(token, now)`,
//! `verify_batch(tokens, now)` and `refresh()`; each token is routed to the issuer it claims.
//!
//! Admission is bounded: the engine accepts at most `workers × queue_per_worker` verifications
//! in flight and answers [`EngineError::Overloaded`] at once beyond that, so there is no
//! unbounded queue anywhere. A hit in the verified-token cache is answered by the caller's own
//! thread without a worker hop; a miss goes to a worker, whose verdict fills the cache.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use crossbeam_deque::{Injector, Worker};
use tokio::sync::oneshot;

use crate::cache::{CacheConfig, CacheKey, Cached, TokenCache};
use crate::error::EngineError;
use crate::issuers::{Applied, Issuers};
use crate::policy::Policy;
use crate::replies::{BatchReplies, Reply};
use crate::revoked::{Revocations, REVOKED};
use crate::shared::{Job, Shared};
use crate::stats::{Counters, EngineStats, CODES};
use crate::token::{Kept, Token, Verified};
use crate::worker::run_worker;

/// How the engine runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// Worker threads; defaults to the number of cores.
    pub workers: usize,
    /// Pin worker `i` to core `i`.
    pub pin: bool,
    /// Verifications admitted per worker before the engine reports overload.
    pub queue_per_worker: usize,
    /// Most jobs a worker takes at once.
    pub batch: usize,
    pub cache: CacheConfig,
}

impl EngineConfig {
    /// The prefix of the worker threads' names (`tessera-verify-0`, ...): CPU accounting finds
    /// them by it.
    pub const THREAD_PREFIX: &'static str = "tessera-verify";

    /// How many verifications the engine admits at once; beyond, it answers
    /// [`EngineError::Overloaded`]. A batch larger than this could never be answered.
    pub fn capacity(&self) -> usize {
        self.workers
            .max(1)
            .saturating_mul(self.queue_per_worker.max(1))
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            pin: true,
            queue_per_worker: 1024,
            batch: 64,
            cache: CacheConfig::default(),
        }
    }
}

/// The running engine; dropping it stops the workers once every admitted verification is
/// answered, and joins them. `R` is what callers keep with each verified token ([`Kept`]).
pub struct Engine<R: Kept = ()> {
    handle: EngineHandle<R>,
    threads: Vec<JoinHandle<()>>,
}

/// A cheap, cloneable handle to submit verifications.
pub struct EngineHandle<R: Kept = ()> {
    shared: Arc<Shared<R>>,
}

impl<R: Kept> Clone for EngineHandle<R> {
    fn clone(&self) -> Self {
        EngineHandle {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<R: Kept> std::fmt::Debug for Engine<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("workers", &self.threads.len())
            .finish_non_exhaustive()
    }
}

impl<R: Kept> std::fmt::Debug for EngineHandle<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineHandle").finish_non_exhaustive()
    }
}

impl<R: Kept> Engine<R> {
    /// Starts the workers; the engine verifies tokens of `issuers` from now on, on the single
    /// path only.
    pub fn start(config: EngineConfig, issuers: Arc<Issuers>) -> Self {
        Engine::start_with(config, issuers, None)
    }

    /// Starts the workers, which verify the signatures of their batches eight at a time with
    /// `multibuffer` where it takes them (see `lanes.rs`).
    pub fn start_with(
        config: EngineConfig,
        issuers: Arc<Issuers>,
        multibuffer: Option<Arc<multibuffer::MultiBuffer>>,
    ) -> Self {
        let workers = config.workers.max(1);
        let locals: Vec<Worker<Job<R>>> = (0..workers).map(|_| Worker::new_fifo()).collect();
        let shared = Arc::new(Shared {
            injector: Injector::new(),
            stealers: locals.iter().map(Worker::stealer).collect(),
            in_flight: AtomicUsize::new(0),
            capacity: config.capacity(),
            batch: config.batch.max(1),
            shutdown: AtomicBool::new(false),
            sleeping: AtomicUsize::new(0),
            idle: Mutex::new(()),
            wake: Condvar::new(),
            cache: TokenCache::new(config.cache),
            revocations: Revocations::default(),
            issuers,
            counters: Counters::default(),
            multibuffer,
        });
        let cores = if config.pin {
            core_affinity::get_core_ids().unwrap_or_default()
        } else {
            Vec::new()
        };
        let threads = locals
            .into_iter()
            .enumerate()
            .map(|(i, local)| {
                let shared = Arc::clone(&shared);
                let core = (!cores.is_empty()).then(|| cores[i % cores.len()]);
                std::thread::Builder::new()
                    .name(format!("{}-{i}", EngineConfig::THREAD_PREFIX))
                    .spawn(move || {
                        if let Some(core) = core {
                            core_affinity::set_for_current(core);
                        }
                        run_worker(i, &shared, &local);
                    })
                    .unwrap_or_else(|e| panic!("cannot start verification worker {i}: {e}"))
            })
            .collect();
        Engine {
            handle: EngineHandle { shared },
            threads,
        }
    }

    pub fn handle(&self) -> EngineHandle<R> {
        self.handle.clone()
    }
}

impl<R: Kept> Drop for Engine<R> {
    fn drop(&mut self) {
        let shared = &self.handle.shared;
        shared.shutdown.store(true, Ordering::SeqCst);
        {
            let _guard = shared.idle.lock().unwrap_or_else(|e| e.into_inner());
            shared.wake.notify_all();
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl<R: Kept> EngineHandle<R> {
    /// Verifies `token` at time `now` (Unix seconds) with the issuer it claims (see
    /// [`Issuers::route`]); an unknown `kid` lets that issuer's remote key set refetch first.
    pub async fn verify(&self, token: &[u8], now: i64) -> Result<Verified<R>, EngineError> {
        let verdict = self.verify_unrevoked(token, now).await;
        self.unless_revoked(verdict)
    }

    /// The verdict before the revocation check.
    async fn verify_unrevoked(&self, token: &[u8], now: i64) -> Result<Verified<R>, EngineError> {
        let key = self.shared.cache.key(token);
        if let Some(hit) = self.cached(key, token, now) {
            return hit;
        }
        let issuers = &self.shared.issuers;
        let mut routed = issuers.route(token);
        // An unknown kid may mean its issuer rotated: let its remote key set refetch (at most
        // once per cool-down), then route again.
        if matches!(routed, Err(jose::Error::UnknownKey))
            && issuers.has_remote()
            && issuers.unknown_kid(&[token], &self.shared.cache).await
        {
            routed = issuers.route(token);
        }
        let policy = match routed {
            Ok(policy) => policy,
            Err(e) => {
                self.shared.counters.invalid(e.code());
                return Err(EngineError::Invalid(e.code()));
            }
        };
        self.admit()?;
        let (reply, receive) = oneshot::channel();
        self.push(token, key, policy, now, Reply::One(reply));
        // A reply dropped unanswered: the engine went away.
        receive.await.unwrap_or(Err(EngineError::Shutdown))
    }

    /// Verifies several tokens, each with the issuer it claims; the results come back in the
    /// same order. Every miss is queued before any is awaited, so the workers see the whole
    /// batch at once. Unknown kids let their issuers' remote key sets refetch once for the
    /// batch. Tokens the engine has no room for get [`EngineError::Overloaded`].
    pub async fn verify_batch(
        &self,
        tokens: &[&[u8]],
        now: i64,
    ) -> Vec<Result<Verified<R>, EngineError>> {
        let issuers = &self.shared.issuers;
        // Each token is a cache hit, or routed to its issuer.
        let mut steps: Vec<(CacheKey, Step<'_, R>)> = tokens
            .iter()
            .map(|token| {
                let key = self.shared.cache.key(token);
                let step = match self.cached(key, token, now) {
                    Some(hit) => Step::Hit(hit),
                    None => Step::Routed(issuers.route(token)),
                };
                (key, step)
            })
            .collect();
        let unknown =
            |step: &Step<'_, R>| matches!(step, Step::Routed(Err(jose::Error::UnknownKey)));
        if issuers.has_remote() && steps.iter().any(|(_, s)| unknown(s)) {
            let strangers: Vec<&[u8]> = tokens
                .iter()
                .zip(&steps)
                .filter(|(_, (_, s))| unknown(s))
                .map(|(t, _)| *t)
                .collect();
            if issuers.unknown_kid(&strangers, &self.shared.cache).await {
                for ((_, step), token) in steps.iter_mut().zip(tokens) {
                    if unknown(step) {
                        *step = Step::Routed(issuers.route(token));
                    }
                }
            }
        }
        let batch = BatchReplies::new(tokens.len());
        for (index, ((key, step), token)) in steps.into_iter().zip(tokens).enumerate() {
            let slot = batch.slot(index);
            match step {
                Step::Hit(hit) => slot.send(hit),
                Step::Routed(Ok(policy)) => match self.admit() {
                    Ok(()) => self.push(token, key, policy, now, Reply::Batch(slot)),
                    Err(e) => slot.send(Err(e)),
                },
                Step::Routed(Err(e)) => {
                    self.shared.counters.invalid(e.code());
                    slot.send(Err(EngineError::Invalid(e.code())));
                }
            }
        }
        let mut verdicts = batch.gather().await;
        for verdict in &mut verdicts {
            if let Ok(token) = verdict {
                if token.is_revoked(&self.shared.revocations) {
                    self.shared.counters.revoked();
                    *verdict = Err(EngineError::Invalid(REVOKED));
                }
            }
        }
        verdicts
    }

    /// `verdict`, unless it is valid and a revocation takes the token back. Runs after the
    /// cache, so a cached verdict never outlives a revocation.
    fn unless_revoked(
        &self,
        verdict: Result<Verified<R>, EngineError>,
    ) -> Result<Verified<R>, EngineError> {
        match verdict {
            Ok(token) if token.is_revoked(&self.shared.revocations) => {
                self.shared.counters.revoked();
                Err(EngineError::Invalid(REVOKED))
            }
            verdict => verdict,
        }
    }

    /// The cache's verdict on `token` (at `key`), if it has one (or the engine is down),
    /// answered before routing: routing is a function of the token's `iss`, so the issuer whose
    /// policy decided it is the one routing would reach again (an issuer's verdicts are evicted
    /// when its keys change). Only verdicts of these issuers' policies are taken.
    fn cached(
        &self,
        key: CacheKey,
        token: &[u8],
        now: i64,
    ) -> Option<Result<Verified<R>, EngineError>> {
        let shared = &self.shared;
        if shared.shutdown.load(Ordering::Relaxed) {
            return Some(Err(EngineError::Shutdown));
        }
        let owned = |owner| shared.issuers.owns(owner);
        let hit = match shared.cache.get_by(key, token, owned, now)? {
            Cached::Valid(jwt) => {
                shared.counters.valid(jwt.alg());
                Ok(jwt)
            }
            Cached::Invalid(code) => {
                shared.counters.invalid(code);
                Err(EngineError::Invalid(code))
            }
        };
        shared.counters.add(|s| &s.cache_hits, 1);
        Some(hit)
    }

    /// Counts one more verification in flight, or refuses it: `Overloaded` beyond capacity,
    /// `Shutdown` once the engine is stopping.
    fn admit(&self) -> Result<(), EngineError> {
        let shared = &self.shared;
        if shared.in_flight.fetch_add(1, Ordering::SeqCst) >= shared.capacity {
            shared.in_flight.fetch_sub(1, Ordering::SeqCst);
            shared.counters.add(|s| &s.overloaded, 1);
            return Err(EngineError::Overloaded);
        }
        // Counted in flight before looking at the flag: either this submit sees the shutdown, or
        // the workers see it in flight and stay until it is answered.
        if shared.shutdown.load(Ordering::SeqCst) {
            shared.in_flight.fetch_sub(1, Ordering::SeqCst);
            return Err(EngineError::Shutdown);
        }
        Ok(())
    }

    /// Queues an admitted job and wakes a sleeping worker.
    fn push(&self, token: &[u8], key: CacheKey, policy: &Arc<Policy>, now: i64, reply: Reply<R>) {
        let shared = &self.shared;
        shared.injector.push(Job {
            token: bytes::Bytes::copy_from_slice(token),
            key,
            policy: Arc::clone(policy),
            now,
            reply,
        });
        // Pairs with the sleeping worker's fence: the job is visible before `sleeping` is read.
        std::sync::atomic::fence(Ordering::SeqCst);
        if shared.sleeping.load(Ordering::SeqCst) > 0 {
            let _guard = shared.idle.lock().unwrap_or_else(|e| e.into_inner());
            shared.wake.notify_one();
        }
    }

    pub fn stats(&self) -> EngineStats {
        let c = &self.shared.counters;
        EngineStats {
            valid: c.sum(|s| &s.valid),
            invalid: c.sum(|s| &s.invalid),
            overloaded: c.sum(|s| &s.overloaded),
            cache_hits: c.sum(|s| &s.cache_hits),
            revoked: c.sum(|s| &s.revoked),
            batches: c.sum(|s| &s.batches),
            batched_jobs: c.sum(|s| &s.batched_jobs),
            in_flight: self.shared.in_flight.load(Ordering::Relaxed),
            valid_by_alg: std::array::from_fn(|i| {
                (jose::Algorithm::ALL[i], c.sum(|s| &s.valid_by_alg[i]))
            }),
            invalid_by_code: (0..CODES)
                .map(|i| {
                    let code = jose::Error::CODES.get(i).copied().unwrap_or("other");
                    (code, c.sum(|s| &s.invalid_by_code[i]))
                })
                .filter(|&(_, n)| n > 0)
                .collect(),
            lanes: crate::lanes::KINDS
                .iter()
                .enumerate()
                .map(|(i, &kind)| {
                    (
                        kind,
                        c.sum(|s| &s.lane_calls[i]),
                        c.sum(|s| &s.lane_fills[i]),
                    )
                })
                .collect(),
        }
    }

    /// The vectorised backend the workers use, if one is loaded.
    pub fn multibuffer(&self) -> Option<&multibuffer::MultiBuffer> {
        self.shared.multibuffer.as_deref()
    }

    /// The trusted issuers (their states, for readiness and metrics).
    pub fn issuers(&self) -> &Arc<Issuers> {
        &self.shared.issuers
    }

    /// Refetches stale remote key sets and applies every changed set (see
    /// [`Issuers::refresh`]), evicting the verdicts of keys that changed.
    pub async fn refresh(&self) -> Vec<Applied<'_>> {
        self.shared.issuers.refresh(&self.shared.cache).await
    }

    /// Runs [`EngineHandle::refresh`] every `every` on the current Tokio runtime, until the
    /// task is aborted, with `hooks` around each: remote key sets are refetched when their
    /// `Cache-Control` age runs out, and local key set changes reach verification within
    /// `every`. The first tick is skipped: the keys were just loaded.
    pub fn keep_fresh(
        &self,
        every: std::time::Duration,
        mut hooks: impl Refresh,
    ) -> tokio::task::JoinHandle<()> {
        let engine = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                hooks.before().await;
                let applied = engine.refresh().await;
                hooks.after(engine.issuers(), &applied);
            }
        })
    }

    /// Charges `token`'s cache entry (if it is still cached) with `bytes`: what the caller made
    /// of it and keeps with it ([`Kept`]), once it has made it.
    pub fn charge(&self, token: &Verified<R>, bytes: usize) {
        self.shared.cache.charge(token, bytes);
    }

    /// The cache, for revocation hooks.
    pub fn cache(&self) -> &TokenCache<Token<R>> {
        &self.shared.cache
    }

    /// The revocation records every verdict is checked against; their owner feeds them.
    pub fn revocations(&self) -> &Revocations {
        &self.shared.revocations
    }
}

/// What a caller runs around each scheduled refresh ([`EngineHandle::keep_fresh`]); `()` runs
/// nothing.
pub trait Refresh: Send + 'static {
    /// Before the key sets are refreshed (the daemon re-reads its HSM's keys here, so that a
    /// change is applied in the same tick).
    fn before(&mut self) -> impl std::future::Future<Output = ()> + Send {
        async {}
    }

    /// After, with the sets that were applied (the daemon logs them).
    fn after(&mut self, issuers: &Issuers, applied: &[Applied<'_>]) {
        let _ = (issuers, applied);
    }
}

impl Refresh for () {}

/// Where one token of a batch stands before it is queued.
enum Step<'i, R: Kept> {
    Hit(Result<Verified<R>, EngineError>),
    Routed(Result<&'i Arc<Policy>, jose::Error>),
}
