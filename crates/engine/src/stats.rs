//! The engine's counters: each thread counts in its own stripe, summed when read
//! ([`EngineStats`], for the daemon's `/metrics`).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::striped::Striped;

/// Counters for the daemon's `/metrics`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineStats {
    pub valid: u64,
    pub invalid: u64,
    pub overloaded: u64,
    pub cache_hits: u64,
    /// Verdicts of valid taken back by a revocation record (counted in `valid` too: the
    /// token verified, then was refused as revoked).
    pub revoked: u64,
    pub batches: u64,
    /// Jobs over all batches: `batched_jobs / batches` is the mean batch size.
    pub batched_jobs: u64,
    pub in_flight: usize,
    /// Valid verdicts (from the workers and the cache), per algorithm, in `Algorithm::ALL` order.
    pub valid_by_alg: [(jose::Algorithm, u64); 13],
    /// Refused, per error code (cache answers included), codes with a zero count left out.
    pub invalid_by_code: Vec<(&'static str, u64)>,
    /// Vectorised calls and the lanes they filled, per kind (`lanes::KINDS`).
    pub lanes: Vec<(&'static str, u64, u64)>,
}

/// The engine's counters, one copy per stripe ([`Striped`]).
#[derive(Default)]
pub(crate) struct Stripe {
    pub(crate) valid_by_alg: [AtomicU64; 13],
    pub(crate) invalid_by_code: [AtomicU64; CODES],
    pub(crate) valid: AtomicU64,
    pub(crate) invalid: AtomicU64,
    pub(crate) overloaded: AtomicU64,
    pub(crate) cache_hits: AtomicU64,
    pub(crate) revoked: AtomicU64,
    pub(crate) batches: AtomicU64,
    pub(crate) batched_jobs: AtomicU64,
    pub(crate) lane_calls: [AtomicU64; 6],
    pub(crate) lane_fills: [AtomicU64; 6],
}

#[derive(Default)]
pub(crate) struct Counters {
    stripes: Striped<Stripe>,
}

/// Refusal codes counted one by one: jose's, then anything else.
pub(crate) const CODES: usize = jose::Error::CODES.len() + 1;

impl Counters {
    /// This thread's stripe.
    pub(crate) fn stripe(&self) -> &Stripe {
        self.stripes.mine()
    }

    pub(crate) fn invalid(&self, code: &'static str) {
        let stripe = self.stripe();
        stripe.invalid.fetch_add(1, Ordering::Relaxed);
        let i = jose::Error::CODES
            .iter()
            .position(|&c| c == code)
            .unwrap_or(CODES - 1);
        stripe.invalid_by_code[i].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn revoked(&self) {
        self.stripe().revoked.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn valid(&self, alg: jose::Algorithm) {
        let stripe = self.stripe();
        stripe.valid.fetch_add(1, Ordering::Relaxed);
        if let Some(i) = jose::Algorithm::ALL.iter().position(|&a| a == alg) {
            stripe.valid_by_alg[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn lanes(&self, tally: &crate::lanes::Tally) {
        if tally.calls.iter().all(|&c| c == 0) {
            return;
        }
        let stripe = self.stripe();
        for i in 0..tally.calls.len() {
            stripe.lane_calls[i].fetch_add(tally.calls[i], Ordering::Relaxed);
            stripe.lane_fills[i].fetch_add(tally.lanes[i], Ordering::Relaxed);
        }
    }

    pub(crate) fn add(&self, counter: impl Fn(&Stripe) -> &AtomicU64, n: u64) {
        counter(self.stripe()).fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn sum(&self, counter: impl Fn(&Stripe) -> &AtomicU64) -> u64 {
        self.stripes.sum(counter)
    }
}
