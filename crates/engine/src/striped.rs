//! Counters striped per thread: each thread writes to its own copy, on cache lines of its own,
//! and readers sum the copies. Callers answered on several cores at once (cache hits, HTTP
//! requests) then do not fight over the same lines. The engine's counters and the daemon's
//! request metrics both use it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// How many copies: threads beyond share, round robin.
const STRIPES: usize = 16;

/// One copy, alone on its cache lines (128 bytes: two lines, for the adjacent-line prefetcher).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded<T>(T);

/// `T` once per stripe; a thread always writes to the same stripe.
#[derive(Debug)]
pub struct Striped<T> {
    stripes: Box<[Padded<T>]>,
}

impl<T: Default> Default for Striped<T> {
    fn default() -> Self {
        Striped {
            stripes: (0..STRIPES).map(|_| Padded::default()).collect(),
        }
    }
}

impl<T> Striped<T> {
    /// This thread's copy.
    pub fn mine(&self) -> &T {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
        }
        &self.stripes[STRIPE.with(|s| *s)].0
    }

    /// Every copy, to read.
    pub fn all(&self) -> impl Iterator<Item = &T> {
        self.stripes.iter().map(|s| &s.0)
    }

    /// The sum over the copies of the counter `counter` picks.
    pub fn sum(&self, counter: impl Fn(&T) -> &AtomicU64) -> u64 {
        self.all().map(|s| counter(s).load(Ordering::Relaxed)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_many_threads_sum_up() {
        let counters: Striped<AtomicU64> = Striped::default();
        std::thread::scope(|scope| {
            for _ in 0..40 {
                scope.spawn(|| {
                    for _ in 0..1000 {
                        counters.mine().fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        assert_eq!(counters.sum(|c| c), 40_000);
        assert_eq!(counters.all().count(), STRIPES);
        // Each copy on its own cache lines.
        assert!(std::mem::align_of::<Padded<AtomicU64>>() >= 128);
    }
}
