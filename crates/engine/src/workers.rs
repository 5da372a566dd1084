//! Verification workers: one thread per core (pinned when asked), fed through a lock-free
//! injector queue, each batching what is waiting and stealing from the others when idle.
//!
//! Admission is bounded: the engine accepts at most `workers × queue_per_worker` verifications
//! in flight and answers [`EngineError::Overloaded`] at once beyond that, so there is no
//! unbounded queue anywhere. A hit in the verified-token cache is answered by the caller's own
//! thread without a worker hop; a miss goes to a worker, whose verdict fills the cache.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_deque::{Injector, Steal, Stealer, Worker};
use jose::{KeySet, Validation};
use tokio::sync::oneshot;

use crate::cache::{CacheConfig, Cached, Facts, TokenCache, TokenDigest};
use crate::token::Token;

/// What a token is verified against: one issuer's keys and its claims policy. The keys can be
/// replaced while verifications run (a refreshed remote key set).
#[derive(Debug)]
pub struct Policy {
    /// Unique for the life of the process: cached verdicts are answered only to their policy.
    id: u64,
    /// The keys in force and their generation, bumped at every swap.
    keys: RwLock<(Arc<KeySet>, u64)>,
    pub validation: Validation,
}

static POLICY_IDS: AtomicU64 = AtomicU64::new(1);

impl Policy {
    pub fn new(keys: KeySet, validation: Validation) -> Self {
        Policy {
            id: POLICY_IDS.fetch_add(1, Ordering::Relaxed),
            keys: RwLock::new((Arc::new(keys), 0)),
            validation,
        }
    }

    /// The keys in force.
    pub fn keys(&self) -> Arc<KeySet> {
        self.keys_and_generation().0
    }

    fn keys_and_generation(&self) -> (Arc<KeySet>, u64) {
        let guard = self.keys.read().unwrap_or_else(|e| e.into_inner());
        (Arc::clone(&guard.0), guard.1)
    }

    fn generation(&self) -> u64 {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).1
    }

    /// Replaces the keys.
    pub fn set_keys(&self, keys: Arc<KeySet>) {
        let mut current = self.keys.write().unwrap_or_else(|e| e.into_inner());
        *current = (keys, current.1 + 1);
    }

    /// The id its cache entries carry.
    pub fn id(&self) -> u64 {
        self.id
    }
}

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

/// Refusal codes counted one by one: jose's, then anything else.
const CODES: usize = jose::Error::CODES.len() + 1;

impl Counters {
    /// This thread's stripe.
    fn stripe(&self) -> &Stripe {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
        }
        &self.stripes[STRIPE.with(|s| *s)]
    }

    fn invalid(&self, code: &'static str) {
        let stripe = self.stripe();
        stripe.invalid.fetch_add(1, Ordering::Relaxed);
        let i = jose::Error::CODES
            .iter()
            .position(|&c| c == code)
            .unwrap_or(CODES - 1);
        stripe.invalid_by_code[i].fetch_add(1, Ordering::Relaxed);
    }

    fn valid(&self, alg: jose::Algorithm) {
        let stripe = self.stripe();
        stripe.valid.fetch_add(1, Ordering::Relaxed);
        if let Some(i) = jose::Algorithm::ALL.iter().position(|&a| a == alg) {
            stripe.valid_by_alg[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    fn add(&self, counter: impl Fn(&Stripe) -> &AtomicU64, n: u64) {
        counter(self.stripe()).fetch_add(n, Ordering::Relaxed);
    }

    fn sum(&self, counter: impl Fn(&Stripe) -> &AtomicU64) -> u64 {
        self.stripes
            .iter()
            .map(|s| counter(s).load(Ordering::Relaxed))
            .sum()
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

/// Why the engine gave no verdict, or the verdict when it is a refusal.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EngineError {
    /// Every worker queue is full: retry later (the daemon answers 503 with Retry-After).
    Overloaded,
    /// The engine is shutting down.
    Shutdown,
    /// The token is not valid; the code is [`jose::Error::code`].
    Invalid(&'static str),
    /// The verifier failed unexpectedly (a bug): the token is refused.
    Internal,
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineError::Overloaded => f.write_str("verification engine overloaded"),
            EngineError::Shutdown => f.write_str("verification engine shut down"),
            EngineError::Invalid(code) => write!(f, "invalid token: {code}"),
            EngineError::Internal => f.write_str("internal error in the verification engine"),
        }
    }
}

impl std::error::Error for EngineError {}

/// A verified token, shared between the cache and callers.
pub type Verified = Arc<Token>;

/// Counters for the daemon's `/metrics`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineStats {
    pub valid: u64,
    pub invalid: u64,
    pub overloaded: u64,
    pub cache_hits: u64,
    pub batches: u64,
    /// Jobs over all batches: `batched_jobs / batches` is the mean batch size.
    pub batched_jobs: u64,
    pub in_flight: usize,
    /// Valid verdicts (from the workers and the cache), per algorithm, in `Algorithm::ALL` order.
    pub valid_by_alg: [(jose::Algorithm, u64); 13],
    /// Refused, per error code (cache answers included), codes with a zero count left out.
    pub invalid_by_code: Vec<(&'static str, u64)>,
}

struct Job {
    token: Box<[u8]>,
    digest: TokenDigest,
    policy: Arc<Policy>,
    now: i64,
    reply: Reply,
}

/// Where a job's verdict goes: its own channel, or its place in a batch awaited as one.
enum Reply {
    One(oneshot::Sender<Result<Verified, EngineError>>),
    Batch(Slot),
}

impl Reply {
    fn send(self, result: Result<Verified, EngineError>) {
        match self {
            // The caller may have gone away.
            Reply::One(sender) => drop(sender.send(result)),
            Reply::Batch(slot) => slot.send(result),
        }
    }
}

/// The verdicts of one batch, each in its place; the waiting caller is woken once, by the last
/// verdict in (a wake-up per token costs the caller's thread a context switch per token).
struct BatchReplies {
    verdicts: Box<[OnceLock<Result<Verified, EngineError>>]>,
    /// Places not answered yet.
    remaining: AtomicUsize,
    done: tokio::sync::Notify,
}

impl BatchReplies {
    fn new(len: usize) -> Arc<Self> {
        Arc::new(BatchReplies {
            verdicts: (0..len).map(|_| OnceLock::new()).collect(),
            remaining: AtomicUsize::new(len),
            done: tokio::sync::Notify::new(),
        })
    }

    /// The place of the batch's `index`th token.
    fn slot(self: &Arc<Self>, index: usize) -> Slot {
        Slot {
            batch: Arc::clone(self),
            index,
        }
    }

    /// The verdicts in order, once every place is answered.
    async fn gather(&self) -> Vec<Result<Verified, EngineError>> {
        // `notify_one` keeps its wake-up for a waiter still to come: none is lost.
        while self.remaining.load(Ordering::Acquire) > 0 {
            self.done.notified().await;
        }
        self.verdicts
            .iter()
            .map(|v| v.get().cloned().unwrap_or(Err(EngineError::Shutdown)))
            .collect()
    }
}

/// One token's place in a batch. Answered exactly once: by `send`, or, dropped unanswered (the
/// engine went away), with `Shutdown`.
struct Slot {
    batch: Arc<BatchReplies>,
    index: usize,
}

impl Slot {
    fn send(self, result: Result<Verified, EngineError>) {
        let _ = self.batch.verdicts[self.index].set(result);
        // Dropping counts it.
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let _ = self.batch.verdicts[self.index].set(Err(EngineError::Shutdown));
        if self.batch.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.batch.done.notify_one();
        }
    }
}

/// The counters of one group of threads: each thread counts in its own stripe, so that callers
/// answered from the cache on several cores do not fight over the same cache lines.
#[derive(Default)]
#[repr(align(128))]
struct Stripe {
    valid_by_alg: [AtomicU64; 13],
    invalid_by_code: [AtomicU64; CODES],
    valid: AtomicU64,
    invalid: AtomicU64,
    overloaded: AtomicU64,
    cache_hits: AtomicU64,
    batches: AtomicU64,
    batched_jobs: AtomicU64,
}

const STRIPES: usize = 16;

#[derive(Default)]
struct Counters {
    stripes: Box<[Stripe; STRIPES]>,
}

struct Shared {
    injector: Injector<Job>,
    stealers: Vec<Stealer<Job>>,
    in_flight: AtomicUsize,
    capacity: usize,
    batch: usize,
    shutdown: AtomicBool,
    sleeping: AtomicUsize,
    idle: Mutex<()>,
    wake: Condvar,
    cache: TokenCache<Token>,
    counters: Counters,
}

/// The running engine; dropping it stops the workers once every admitted verification is
/// answered, and joins them.
pub struct Engine {
    handle: EngineHandle,
    threads: Vec<JoinHandle<()>>,
}

/// A cheap, cloneable handle to submit verifications.
#[derive(Clone)]
pub struct EngineHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("workers", &self.threads.len())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for EngineHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineHandle").finish_non_exhaustive()
    }
}

impl Engine {
    pub fn start(config: EngineConfig) -> Self {
        let workers = config.workers.max(1);
        let locals: Vec<Worker<Job>> = (0..workers).map(|_| Worker::new_fifo()).collect();
        let shared = Arc::new(Shared {
            injector: Injector::new(),
            stealers: locals.iter().map(Worker::stealer).collect(),
            in_flight: AtomicUsize::new(0),
            capacity: workers * config.queue_per_worker.max(1),
            batch: config.batch.max(1),
            shutdown: AtomicBool::new(false),
            sleeping: AtomicUsize::new(0),
            idle: Mutex::new(()),
            wake: Condvar::new(),
            cache: TokenCache::new(config.cache),
            counters: Counters::default(),
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
                    .name(format!("tessera-verify-{i}"))
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

    pub fn handle(&self) -> EngineHandle {
        self.handle.clone()
    }
}

impl Drop for Engine {
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

impl EngineHandle {
    /// Verifies `token` against `policy` at time `now` (Unix seconds).
    pub async fn verify(
        &self,
        token: &[u8],
        policy: &Arc<Policy>,
        now: i64,
    ) -> Result<Verified, EngineError> {
        self.submit(token, policy, now).answer().await
    }

    /// Verifies `token` with the issuer its header routes it to (see [`crate::Issuers::route`]).
    pub async fn verify_routed(
        &self,
        token: &[u8],
        issuers: &crate::Issuers,
        now: i64,
    ) -> Result<Verified, EngineError> {
        let digest = TokenDigest::of(token);
        if let Some(hit) = self.cached_routed(&digest, issuers, now) {
            return hit;
        }
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
        match self.cached(&digest, policy, now) {
            Some(result) => result,
            None => self.enqueue(token, digest, policy, now).answer().await,
        }
    }

    /// A cached verification of the token with `digest` by one of `issuers`, answered before
    /// routing: routing is a function of the token's `iss`, so the issuer whose policy verified
    /// it is the one routing would reach again (its verdicts are evicted when its keys change).
    /// Only valid verdicts: a refusal may have been cached under a policy the token was given
    /// directly, so it is looked up after routing.
    fn cached_routed(
        &self,
        digest: &TokenDigest,
        issuers: &crate::Issuers,
        now: i64,
    ) -> Option<Result<Verified, EngineError>> {
        let shared = &self.shared;
        if shared.shutdown.load(Ordering::Relaxed) {
            return Some(Err(EngineError::Shutdown));
        }
        match shared
            .cache
            .get_digest_by(digest, |owner| issuers.owns(owner), now)?
        {
            Cached::Valid(jwt) => {
                shared.counters.valid(jwt.alg());
                shared.counters.add(|s| &s.cache_hits, 1);
                Some(Ok(jwt))
            }
            Cached::Invalid(_) => None,
        }
    }

    /// Verifies several tokens, each with the issuer its header routes it to; the results come
    /// back in the same order. Every miss is queued before any is awaited, so the workers see
    /// the whole batch at once. Unknown kids let remote key sets refetch once for the batch.
    pub async fn verify_routed_batch(
        &self,
        tokens: &[&[u8]],
        issuers: &crate::Issuers,
        now: i64,
    ) -> Vec<Result<Verified, EngineError>> {
        // Each token is a cache hit, or routed to its issuer.
        let mut steps: Vec<(TokenDigest, Step)> = tokens
            .iter()
            .map(|token| {
                let digest = TokenDigest::of(token);
                let step = match self.cached_routed(&digest, issuers, now) {
                    Some(hit) => Step::Hit(hit),
                    None => Step::Routed(issuers.route(token)),
                };
                (digest, step)
            })
            .collect();
        let unknown = |step: &Step| matches!(step, Step::Routed(Err(jose::Error::UnknownKey)));
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
        for (index, ((digest, step), token)) in steps.into_iter().zip(tokens).enumerate() {
            let slot = batch.slot(index);
            match step {
                Step::Hit(hit) => slot.send(hit),
                Step::Routed(Ok(policy)) => self.submit_digest_to(token, digest, policy, now, slot),
                Step::Routed(Err(e)) => {
                    self.shared.counters.invalid(e.code());
                    slot.send(Err(EngineError::Invalid(e.code())));
                }
            }
        }
        batch.gather().await
    }

    /// Verifies several tokens; the results come back in the same order. Tokens the engine has
    /// no room for get [`EngineError::Overloaded`].
    pub async fn verify_batch(
        &self,
        tokens: &[&[u8]],
        policy: &Arc<Policy>,
        now: i64,
    ) -> Vec<Result<Verified, EngineError>> {
        let batch = BatchReplies::new(tokens.len());
        for (index, token) in tokens.iter().enumerate() {
            let slot = batch.slot(index);
            self.submit_to(token, policy, now, slot);
        }
        batch.gather().await
    }

    fn submit(&self, token: &[u8], policy: &Arc<Policy>, now: i64) -> Submitted {
        let digest = TokenDigest::of(token);
        match self.cached(&digest, policy, now) {
            Some(result) => Submitted::Done(result),
            None => self.enqueue(token, digest, policy, now),
        }
    }

    /// As `submit`, for one token of a batch: answered in its place.
    fn submit_to(&self, token: &[u8], policy: &Arc<Policy>, now: i64, slot: Slot) {
        self.submit_digest_to(token, TokenDigest::of(token), policy, now, slot)
    }

    fn submit_digest_to(
        &self,
        token: &[u8],
        digest: TokenDigest,
        policy: &Arc<Policy>,
        now: i64,
        slot: Slot,
    ) {
        if let Some(result) = self.cached(&digest, policy, now) {
            return slot.send(result);
        }
        match self.admit() {
            Ok(()) => self.push(token, digest, policy, now, Reply::Batch(slot)),
            Err(e) => slot.send(Err(e)),
        }
    }

    /// The cache's verdict on the token with `digest`, if it has one (or the engine is down).
    fn cached(
        &self,
        digest: &TokenDigest,
        policy: &Policy,
        now: i64,
    ) -> Option<Result<Verified, EngineError>> {
        let shared = &self.shared;
        if shared.shutdown.load(Ordering::Relaxed) {
            return Some(Err(EngineError::Shutdown));
        }
        let hit = match shared.cache.get_digest(digest, policy.id, now)? {
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

    /// Admits the token and queues it for a worker, or refuses it as overloaded.
    fn enqueue(
        &self,
        token: &[u8],
        digest: TokenDigest,
        policy: &Arc<Policy>,
        now: i64,
    ) -> Submitted {
        if let Err(e) = self.admit() {
            return Submitted::Done(Err(e));
        }
        let (reply, receive) = oneshot::channel();
        self.push(token, digest, policy, now, Reply::One(reply));
        Submitted::Queued(receive)
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
    fn push(
        &self,
        token: &[u8],
        digest: TokenDigest,
        policy: &Arc<Policy>,
        now: i64,
        reply: Reply,
    ) {
        let shared = &self.shared;
        shared.injector.push(Job {
            token: token.into(),
            digest,
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
        }
    }

    /// The cache, for revocation hooks and key set changes.
    pub fn cache(&self) -> &TokenCache<Token> {
        &self.shared.cache
    }
}

/// Where one token of a routed batch stands before it is queued.
enum Step<'i> {
    Hit(Result<Verified, EngineError>),
    Routed(Result<&'i Arc<Policy>, jose::Error>),
}

enum Submitted {
    Done(Result<Verified, EngineError>),
    Queued(oneshot::Receiver<Result<Verified, EngineError>>),
}

impl Submitted {
    async fn answer(self) -> Result<Verified, EngineError> {
        match self {
            Submitted::Done(result) => result,
            Submitted::Queued(reply) => reply.await.unwrap_or(Err(EngineError::Shutdown)),
        }
    }
}

/// Takes up to `shared.batch` jobs: the local queue first, then the injector, then the other
/// workers' queues.
fn take_batch(index: usize, shared: &Shared, local: &Worker<Job>, batch: &mut Vec<Job>) {
    while batch.len() < shared.batch {
        if let Some(job) = local.pop() {
            batch.push(job);
            continue;
        }
        let stolen = std::iter::repeat_with(|| {
            shared
                .injector
                .steal_batch_with_limit_and_pop(local, shared.batch - batch.len())
                .or_else(|| {
                    shared
                        .stealers
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| *i != index)
                        .map(|(_, s)| s.steal())
                        .collect()
                })
        })
        .find(|s| !s.is_retry())
        .and_then(Steal::success);
        match stolen {
            Some(job) => batch.push(job),
            None => return,
        }
    }
}

/// How long an idle worker sleeps before it looks at the queues again with no wake-up.
const IDLE_CHECK: Duration = Duration::from_millis(250);

fn run_worker(index: usize, shared: &Shared, local: &Worker<Job>) {
    let mut batch = Vec::with_capacity(shared.batch);
    loop {
        take_batch(index, shared, local, &mut batch);
        if batch.is_empty() {
            if shared.shutdown.load(Ordering::SeqCst)
                && shared.in_flight.load(Ordering::SeqCst) == 0
            {
                return;
            }
            // Sleep until a submit wakes us. The fences pair with the submitter's (`push`):
            // either it sees this worker sleeping, or this worker sees its job. The timeout is
            // a backstop only: an idle engine wakes its workers a few times a second, not
            // hundreds.
            let guard = shared.idle.lock().unwrap_or_else(|e| e.into_inner());
            shared.sleeping.fetch_add(1, Ordering::SeqCst);
            std::sync::atomic::fence(Ordering::SeqCst);
            if shared.injector.is_empty() && !shared.shutdown.load(Ordering::SeqCst) {
                let _ = shared.wake.wait_timeout(guard, IDLE_CHECK);
            }
            shared.sleeping.fetch_sub(1, Ordering::SeqCst);
            continue;
        }
        shared.counters.add(|s| &s.batches, 1);
        shared.counters.add(|s| &s.batched_jobs, batch.len() as u64);
        // Tokens of one issuer together: its keys and policy stay hot in the cache.
        batch.sort_by_key(|job| Arc::as_ptr(&job.policy) as usize);
        for job in batch.drain(..) {
            // A panic in the verifier would be a bug; it must not cost the admission slot, the
            // worker, or the caller's answer. The job is refused instead.
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| verify_one(shared, &job)))
                    .unwrap_or(Err(EngineError::Internal));
            shared.in_flight.fetch_sub(1, Ordering::SeqCst);
            job.reply.send(result);
        }
    }
}

fn verify_one(shared: &Shared, job: &Job) -> Result<Verified, EngineError> {
    let (keys, generation) = job.policy.keys_and_generation();
    match jose::jwt::verify(&job.token, &keys, &job.policy.validation, job.now) {
        Ok(jwt) => {
            shared.counters.valid(jwt.alg());
            let jwt = Arc::new(Token::new(jwt));
            let kid = jwt.kid();
            let jti = jwt.str_claim("jti");
            let sub = jwt.str_claim("sub");
            let facts = Facts {
                exp: jwt.numeric_claim("exp").map(|e| e as i64),
                kid: kid.as_deref(),
                jti: jti.as_deref(),
                sub: sub.as_deref(),
                // The token's decoded header and claims, and what callers render of them
                // (`Token::rendered`: about the claims again, twice).
                bytes: job.token.len() * 4 + 256,
            };
            shared
                .cache
                .insert_valid(job.digest, job.policy.id, Arc::clone(&jwt), facts, job.now);
            // Keys swapped while this token was verified: the swap's eviction may have run
            // before the insert, so take the entry back out (it is verified again next time).
            if job.policy.generation() != generation {
                shared.cache.revoke_token(&job.token);
            }
            Ok(jwt)
        }
        Err(e) => {
            shared.counters.invalid(e.code());
            // A token that is not valid *yet* may be valid in a moment: not remembered.
            if !matches!(e, jose::Error::NotYetValid) {
                shared
                    .cache
                    .insert_invalid(job.digest, job.policy.id, e.code(), job.now);
            }
            Err(EngineError::Invalid(e.code()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn a_batch_is_answered_in_order_once_every_place_is() {
        let batch = BatchReplies::new(3);
        let slots: Vec<Slot> = (0..3).map(|index| batch.slot(index)).collect();
        let mut slots = slots.into_iter();
        let (first, second, third) = (slots.next(), slots.next(), slots.next());
        // Answered from other threads, out of order; one place is dropped unanswered.
        let answering = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            if let Some(third) = third {
                third.send(Err(EngineError::Invalid("expired")));
            }
            drop(first);
            std::thread::sleep(Duration::from_millis(20));
            if let Some(second) = second {
                second.send(Err(EngineError::Overloaded));
            }
        });
        let verdicts = block_on(batch.gather());
        answering.join().expect("answering thread");
        assert_eq!(
            verdicts
                .iter()
                .map(|v| v.as_ref().err())
                .collect::<Vec<_>>(),
            [
                Some(&EngineError::Shutdown),
                Some(&EngineError::Overloaded),
                Some(&EngineError::Invalid("expired"))
            ]
        );
        assert_eq!(batch.remaining.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn an_empty_batch_is_answered_at_once() {
        assert!(block_on(BatchReplies::new(0).gather()).is_empty());
    }
}
