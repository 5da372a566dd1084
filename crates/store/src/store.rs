//! The store callers hold: one type over both backends.

use std::sync::Arc;

use engine::Revocation;

use crate::config::StoreConfig;
use crate::error::StoreError;
use crate::postgres::Postgres;
use crate::record::Record;
use crate::sqlite::Sqlite;
use crate::wake::Wake;

/// The shared store; cheap to clone (clones share the connections and the wake-ups).
#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    backend: Backend,
    /// Woken by PostgreSQL notifications and by this process's own writes.
    wake: Arc<Wake>,
}

/// An enum, not a trait object: two backends, known here, with the same methods.
#[derive(Debug)]
enum Backend {
    Sqlite(Sqlite),
    Postgres(Postgres),
}

impl Store {
    /// Connects (SQLite: opens or creates the file and its folder) and runs the migrations
    /// this binary knows in one transaction, recording them as applied at `now`; refuses a
    /// store whose schema is newer. Must run in a Tokio runtime: PostgreSQL's `LISTEN`
    /// connection is a task of its own.
    pub async fn open(config: &StoreConfig, now: i64) -> Result<Store, StoreError> {
        let wake = Arc::new(Wake::default());
        let backend = match config {
            StoreConfig::Sqlite { path } => Backend::Sqlite(Sqlite::open(path, now).await?),
            StoreConfig::Postgres { url, pool } => {
                Backend::Postgres(Postgres::open(url, *pool, now, Arc::clone(&wake)).await?)
            }
        };
        Ok(Store {
            inner: Arc::new(Inner { backend, wake }),
        })
    }

    /// The schema version the store is at after `open`.
    pub fn schema_version(&self) -> i64 {
        match &self.inner.backend {
            Backend::Sqlite(s) => s.version,
            Backend::Postgres(p) => p.version,
        }
    }

    /// Which backend this is, as logs and metrics name it: `"sqlite"` or `"postgresql"`.
    pub fn kind(&self) -> &'static str {
        match &self.inner.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgresql",
        }
    }

    /// Writes one revocation, numbered after every record committed before it, and wakes the
    /// followers: this process's at once, other daemons' through PostgreSQL `NOTIFY`.
    pub async fn revoke(&self, revocation: &Revocation, now: i64) -> Result<Record, StoreError> {
        let record = match &self.inner.backend {
            Backend::Sqlite(s) => s.revoke(revocation, now).await?,
            Backend::Postgres(p) => p.revoke(revocation, now).await?,
        };
        self.inner.wake.wake();
        Ok(record)
    }

    /// Records with `seq > after`, in `seq` order, at most `limit`.
    pub async fn since(&self, after: i64, limit: usize) -> Result<Vec<Record>, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(s) => s.since(after, limit).await,
            Backend::Postgres(p) => p.since(after, limit).await,
        }
    }

    /// The newest records, newest first (descending `seq`), at most `limit`: for an operator
    /// looking at what was revoked lately.
    pub async fn list(&self, limit: usize) -> Result<Vec<Record>, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(s) => s.list(limit).await,
            Backend::Postgres(p) => p.list(limit).await,
        }
    }

    /// Deletes records whose token expired before `before` (Unix seconds); returns how many.
    /// Records by subject or client never expire and are kept.
    pub async fn purge(&self, before: i64) -> Result<u64, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(s) => s.purge(before).await,
            Backend::Postgres(p) => p.purge(before).await,
        }
    }

    /// Resolves when another writer may have added records (a PostgreSQL `NOTIFY`, carrying no
    /// data, or this process's own writes; a wake-up that came while nobody waited is kept
    /// for the next call); may resolve spuriously. Followers still poll: a notification is
    /// lost while the `LISTEN` connection is down, and SQLite has none from other processes.
    pub async fn changed(&self) {
        self.inner.wake.changed().await;
    }
}
