//! A verification worker's loop: take a batch (own queue, then the injector, then stealing),
//! sleep when there is nothing, gather more while it is too small for a vectorised call (a
//! yield to the submitting threads, at most twice), verify it (`lanes.rs`: eight signatures at
//! a time where the vectorised backend is loaded), fill the cache, answer. An idle worker never
//! sleeps to fill a batch: with nothing else runnable a yield returns at once, and a lone token
//! goes out on the single path.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_deque::{Steal, Worker};

use crate::cache::Facts;
use crate::error::EngineError;
use crate::lanes::{self, Signed, Tally};
use crate::shared::{Job, Shared};
use crate::token::{Kept, Token, Verified};

/// Takes up to `shared.batch` jobs: the local queue first, then the injector, then the other
/// workers' queues.
fn take_batch<R: Kept>(
    index: usize,
    shared: &Shared<R>,
    local: &Worker<Job<R>>,
    batch: &mut Vec<Job<R>>,
) {
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

/// Yields at most this many times for one batch.
const YIELDS: usize = 2;

/// Where the vectorised backend is loaded, a batch too small to fill a call gives the core to
/// the threads that submit (`sched_yield`) and takes what they queued meanwhile, until it is
/// full, a yield gains nothing, or `YIELDS` are spent. Under load a miss scattered among cache
/// hits would otherwise go out alone on the single path, at two to three times a lane's cost,
/// because the worker wakes for each one; the runtime thread sharing the core has requests
/// ready, and a yield lets it submit them first. With nothing else runnable on the core a
/// yield returns at once.
fn gather<T>(batch: &mut Vec<T>, mut take: impl FnMut(&mut Vec<T>)) {
    for _ in 0..YIELDS {
        let before = batch.len();
        if before >= multibuffer::LANES {
            return;
        }
        std::thread::yield_now();
        take(batch);
        if batch.len() == before {
            return;
        }
    }
}

/// How long an idle worker sleeps before it looks at the queues again with no wake-up.
const IDLE_CHECK: Duration = Duration::from_millis(250);

pub(crate) fn run_worker<R: Kept>(index: usize, shared: &Shared<R>, local: &Worker<Job<R>>) {
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
        if shared.multibuffer.is_some() {
            gather(&mut batch, |batch| take_batch(index, shared, local, batch));
        }
        shared.counters.add(|s| &s.batches, 1);
        shared.counters.add(|s| &s.batched_jobs, batch.len() as u64);
        // Tokens of one issuer together: its keys and policy stay hot in the cache; within it,
        // one `now` together, so that a batch straddling a second stays one run (`verify`).
        batch.sort_by_key(|job| (Arc::as_ptr(&job.policy) as usize, job.now));
        // A panic in the verifier would be a bug; it must not cost the admission slots, the
        // worker, or the callers' answers. The jobs are refused instead.
        let verdicts =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| verify(shared, &batch)))
                .unwrap_or_default();
        let mut verdicts = verdicts.into_iter();
        for job in batch.drain(..) {
            let result = match verdicts.next() {
                Some((generation, verdict)) => {
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        settle(shared, &job, generation, verdict)
                    }))
                    .unwrap_or(Err(EngineError::Internal))
                }
                None => Err(EngineError::Internal),
            };
            shared.in_flight.fetch_sub(1, Ordering::SeqCst);
            job.reply.send(result);
        }
    }
}

/// The verdicts of a batch, in its order, each with the generation of the keys it was verified
/// with: through the vectorised backend where one is loaded (see `lanes.rs`).
fn verify<R: Kept>(
    shared: &Shared<R>,
    batch: &[Job<R>],
) -> Vec<(u64, Result<jose::Jwt, jose::Error>)> {
    let keys: Vec<_> = batch
        .iter()
        .map(|job| job.policy.keys_and_generation())
        .collect();
    let signed: Vec<Signed<'_>> = batch
        .iter()
        .zip(&keys)
        .map(|(job, (keys, _))| Signed {
            token: &job.token,
            keys,
            validation: &job.policy.validation,
        })
        .collect();
    // One batch holds tokens of one `now` or a few (runs of one `now`, sorted so by the caller):
    // each is judged at its own; the signatures of one run share the vectorised calls.
    let mut verdicts = Vec::with_capacity(batch.len());
    let mut tally = Tally::default();
    let mut start = 0;
    while start < batch.len() {
        let now = batch[start].now;
        let end = start + batch[start..].iter().take_while(|j| j.now == now).count();
        verdicts.extend(lanes::verify_all(
            shared.multibuffer.as_deref(),
            &signed[start..end],
            now,
            &mut tally,
        ));
        start = end;
    }
    shared.counters.lanes(&tally);
    keys.iter().map(|(_, g)| *g).zip(verdicts).collect()
}

/// Fills the cache with a verdict and counts it.
fn settle<R: Kept>(
    shared: &Shared<R>,
    job: &Job<R>,
    generation: u64,
    verdict: Result<jose::Jwt, jose::Error>,
) -> Result<Verified<R>, EngineError> {
    match verdict {
        Ok(jwt) => {
            shared.counters.valid(jwt.alg());
            let jwt = Arc::new(Token::new(jwt, job.token.clone()));
            let exp = jwt.exp().map(|e| e as i64);
            if shared.cache.keeps(exp, job.now) {
                let facts = Facts {
                    exp,
                    bytes: jwt.footprint(),
                };
                shared.cache.insert_valid(
                    job.key,
                    job.policy.id(),
                    Arc::clone(&jwt),
                    facts,
                    job.now,
                );
            }
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
                shared.cache.insert_invalid(
                    job.key,
                    job.token.clone(),
                    job.policy.id(),
                    e.code(),
                    job.now,
                );
            }
            Err(EngineError::Invalid(e.code()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gathering_stops_when_full_when_nothing_came_or_after_the_last_yield() {
        // Two jobs come per take: two yields, then it stops with six.
        let mut batch = vec![0; 2];
        let mut takes = 0;
        gather(&mut batch, |b| {
            takes += 1;
            b.extend([0, 0]);
        });
        assert_eq!((batch.len(), takes), (6, YIELDS));
        // Nothing comes: one yield.
        let mut batch = vec![0];
        let mut takes = 0;
        gather(&mut batch, |_| takes += 1);
        assert_eq!((batch.len(), takes), (1, 1));
        // Full already: no yield.
        let mut batch = vec![0; multibuffer::LANES];
        gather(&mut batch, |_| panic!("a full batch took more"));
        assert_eq!(batch.len(), multibuffer::LANES);
    }
}
