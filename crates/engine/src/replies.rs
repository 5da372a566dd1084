//! Where verdicts go: a single verification's channel, or a place in a batch that its caller
//! awaits as one (woken once, by the last verdict in).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::oneshot;

use crate::error::EngineError;
use crate::token::{Kept, Verified};

/// One token's verdict as the engine answers it.
pub(crate) type Verdict<R> = Result<Verified<R>, EngineError>;

/// Where a job's verdict goes: its own channel, or its place in a batch awaited as one.
pub(crate) enum Reply<R: Kept> {
    One(oneshot::Sender<Verdict<R>>),
    Batch(Slot<R>),
}

impl<R: Kept> Reply<R> {
    pub(crate) fn send(self, result: Verdict<R>) {
        match self {
            // The caller may have gone away.
            Reply::One(sender) => drop(sender.send(result)),
            Reply::Batch(slot) => slot.send(result),
        }
    }
}

/// The verdicts of one batch, each in its place; the waiting caller is woken once, by the last
/// verdict in (a wake-up per token costs the caller's thread a context switch per token).
pub(crate) struct BatchReplies<R: Kept> {
    verdicts: Box<[OnceLock<Verdict<R>>]>,
    /// Places not answered yet.
    remaining: AtomicUsize,
    done: tokio::sync::Notify,
}

impl<R: Kept> BatchReplies<R> {
    pub(crate) fn new(len: usize) -> Arc<Self> {
        Arc::new(BatchReplies {
            verdicts: (0..len).map(|_| OnceLock::new()).collect(),
            remaining: AtomicUsize::new(len),
            done: tokio::sync::Notify::new(),
        })
    }

    /// The place of the batch's `index`th token.
    pub(crate) fn slot(self: &Arc<Self>, index: usize) -> Slot<R> {
        Slot {
            batch: Arc::clone(self),
            index,
        }
    }

    /// The verdicts in order, once every place is answered.
    pub(crate) async fn gather(&self) -> Vec<Verdict<R>> {
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
pub(crate) struct Slot<R: Kept> {
    batch: Arc<BatchReplies<R>>,
    index: usize,
}

impl<R: Kept> Slot<R> {
    pub(crate) fn send(self, result: Verdict<R>) {
        let _ = self.batch.verdicts[self.index].set(result);
        // Dropping counts it.
    }
}

impl<R: Kept> Drop for Slot<R> {
    fn drop(&mut self) {
        let _ = self.batch.verdicts[self.index].set(Err(EngineError::Shutdown));
        if self.batch.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.batch.done.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn a_batch_is_answered_in_order_once_every_place_is() {
        let batch = BatchReplies::<()>::new(3);
        let slots: Vec<Slot<()>> = (0..3).map(|index| batch.slot(index)).collect();
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
        assert!(block_on(BatchReplies::<()>::new(0).gather()).is_empty());
    }
}
