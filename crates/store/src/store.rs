//! The store callers hold: one type over both backends.

use std::sync::Arc;

use engine::Revocation;

use crate::client::ClientRow;
use crate::config::StoreConfig;
use crate::error::StoreError;
use crate::opaque::OpaqueRow;
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

    /// Deletes, in one transaction, what expired before `before` (Unix seconds): revocation
    /// records of tokens (records by subject or client never expire and are kept), assertion
    /// replay records and opaque tokens; returns how many rows, all kinds together.
    pub async fn purge(&self, before: i64) -> Result<u64, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(s) => s.purge(before).await,
            Backend::Postgres(p) => p.purge(before).await,
        }
    }

    /// Adds a client registration; `false`, and nothing written, when the id is taken. A
    /// client added counts in [`Store::clients_version`] and wakes the followers, as
    /// [`Store::revoke`] does.
    pub async fn add_client(&self, row: &ClientRow) -> Result<bool, StoreError> {
        let added = match &self.inner.backend {
            Backend::Sqlite(s) => s.add_client(row).await?,
            Backend::Postgres(p) => p.add_client(row).await?,
        };
        self.woken_if(added)
    }

    /// Replaces the secret, the registration and `updated` of the client with `row.id`
    /// (`row.created` is ignored: the stored one is kept); `false`, and nothing written, when
    /// there is no such client. Counts and wakes as [`Store::add_client`] does.
    pub async fn update_client(&self, row: &ClientRow) -> Result<bool, StoreError> {
        let updated = match &self.inner.backend {
            Backend::Sqlite(s) => s.update_client(row).await?,
            Backend::Postgres(p) => p.update_client(row).await?,
        };
        self.woken_if(updated)
    }

    /// Removes a client; `false`, and nothing written, when there is no such client. Counts and
    /// wakes as [`Store::add_client`] does.
    pub async fn remove_client(&self, id: &str) -> Result<bool, StoreError> {
        let removed = match &self.inner.backend {
            Backend::Sqlite(s) => s.remove_client(id).await?,
            Backend::Postgres(p) => p.remove_client(id).await?,
        };
        self.woken_if(removed)
    }

    /// The client with this id, if any.
    pub async fn client(&self, id: &str) -> Result<Option<ClientRow>, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(s) => s.client(id).await,
            Backend::Postgres(p) => p.client(id).await,
        }
    }

    /// Every client, ordered by id (byte order, the same on both engines whatever the
    /// database's collation).
    pub async fn clients(&self) -> Result<Vec<ClientRow>, StoreError> {
        let mut rows = match &self.inner.backend {
            Backend::Sqlite(s) => s.clients().await?,
            Backend::Postgres(p) => p.clients().await?,
        };
        rows.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        Ok(rows)
    }

    /// A counter of the client writes that changed something (each add, update and remove
    /// that returned `true`), counted inside the writing transaction: a daemon that sees it
    /// change reloads every client. Read it before [`Store::clients`]: a write committed
    /// between the two is then read again at the next change, never missed.
    pub async fn clients_version(&self) -> Result<i64, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(s) => s.clients_version().await,
            Backend::Postgres(p) => p.clients_version().await,
        }
    }

    /// Records that the client assertion `jti` of `client_id`, valid until `exp`, was used:
    /// `true` when the pair was not recorded before (it is now), `false` when it was (a
    /// replay). Atomic between every daemon on the store. [`Store::purge`] forgets the pair
    /// after `exp`, so the caller must refuse an expired assertion before asking.
    pub async fn remember_once(
        &self,
        client_id: &str,
        jti: &str,
        exp: i64,
    ) -> Result<bool, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(s) => s.remember_once(client_id, jti, exp).await,
            Backend::Postgres(p) => p.remember_once(client_id, jti, exp).await,
        }
    }

    /// Records that the DPoP proof with this key (the SHA-256 of its key's thumbprint and its
    /// `jti`), good until `exp`, was accepted: `true` when no daemon of the store recorded it
    /// before (it is now), `false` when one did (a replay). One conditional insert, atomic
    /// between every daemon on the store; [`Store::purge`] forgets it after `exp`.
    pub async fn remember_proof(&self, key: &[u8; 32], exp: i64) -> Result<bool, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(s) => s.remember_proof(key, exp).await,
            Backend::Postgres(p) => p.remember_proof(key, exp).await,
        }
    }

    /// Stores an opaque access token by its hash; [`StoreError::Conflict`], and nothing
    /// written, when that hash is already stored.
    pub async fn put_opaque(&self, row: &OpaqueRow) -> Result<(), StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(s) => s.put_opaque(row).await,
            Backend::Postgres(p) => p.put_opaque(row).await,
        }
    }

    /// The opaque token with this hash (the SHA-256 of the token), if stored; expired ones
    /// too, until [`Store::purge`] deletes them: the caller checks `exp`.
    pub async fn opaque(&self, hash: &[u8; 32]) -> Result<Option<OpaqueRow>, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(s) => s.opaque(hash).await,
            Backend::Postgres(p) => p.opaque(hash).await,
        }
    }

    /// Wakes this process's followers after a write that changed something (other daemons
    /// hear PostgreSQL's `NOTIFY`, sent in the write's transaction); passes `changed` on.
    fn woken_if(&self, changed: bool) -> Result<bool, StoreError> {
        if changed {
            self.inner.wake.wake();
        }
        Ok(changed)
    }

    /// Resolves when another writer may have added records or changed clients (a PostgreSQL
    /// `NOTIFY`, carrying no data, or this process's own writes; a wake-up that came while nobody waited is kept
    /// for the next call); may resolve spuriously. Followers still poll: a notification is
    /// lost while the `LISTEN` connection is down, and SQLite has none from other processes.
    pub async fn changed(&self) {
        self.inner.wake.changed().await;
    }
}
