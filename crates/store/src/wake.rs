//! "Look again": the signal PostgreSQL notifications and this process's own writes give to
//! whoever follows the store.

use tokio::sync::Notify;

/// Wakes the callers of [`crate::Store::changed`]; carries no data.
#[derive(Debug, Default)]
pub struct Wake(Notify);

impl Wake {
    /// Wakes every caller waiting now, and leaves a permit for the next one: a follower that
    /// was busy reading when the signal came must not sleep through it. The permit may make a
    /// later wait return at once, a spurious wake-up that `changed` allows.
    pub fn wake(&self) {
        self.0.notify_waiters();
        self.0.notify_one();
    }

    /// Resolves at the next [`Wake::wake`], or at once if one came while nobody waited.
    pub async fn changed(&self) {
        self.0.notified().await;
    }
}
