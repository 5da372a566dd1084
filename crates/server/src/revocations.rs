//! The daemon's view of the shared store: revocation records applied to the engine's
//! in-memory set by `seq > last`, and the registered clients reloaded into [`Clients`] when
//! their version changes, at start, on a wake-up from the store (PostgreSQL `NOTIFY`) and on a
//! poll backstop; and how old that view is. Used by `app.rs`, the endpoints and the metrics.
//!
//! Every daemon of a cluster follows the same store the same way, so they converge without
//! talking to each other; a daemon whose view is older than `[store] max_lag_ms` fails closed
//! (unless the operator chose `serve_stale`), because it cannot know what was revoked since.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::revoked::EXPIRY_MARGIN_S;
use engine::{EngineHandle, Kept, Revocation};
use store::{Record, Store, StoreError};
use tokio::task::JoinHandle;

use crate::clients::{Clients, StoredClient};
use crate::config::{OnStoreLoss, StoreSettings};

/// Records fetched per statement while catching up.
const PAGE: usize = 1_000;
/// How often expired records are deleted from the store and dropped from memory.
const PURGE_EVERY: Duration = Duration::from_secs(600);

/// The daemon's view of the store.
#[derive(Debug)]
pub struct Follower {
    store: Store,
    poll: Duration,
    max_lag: Duration,
    on_loss: OnStoreLoss,
    /// The highest sequence number applied: everything at or below it is in the engine.
    last_seq: AtomicI64,
    /// Where the store's clients go, and the version of them last loaded (-1: none yet).
    clients: Arc<Clients>,
    clients_version: AtomicI64,
    /// When the last successful catch-up started (ms since `epoch`): the view is at least
    /// that fresh.
    fresh_at_ms: AtomicU64,
    epoch: Instant,
    failures: AtomicU64,
    failing: AtomicBool,
}

impl Follower {
    /// Opens the store (running its migrations), applies every record in it to `engine` and
    /// loads its clients into `clients`: a daemon starts with the whole revocation list or not
    /// at all.
    pub async fn start<R: Kept>(
        settings: &StoreSettings,
        engine: &EngineHandle<R>,
        clients: Arc<Clients>,
    ) -> Result<Arc<Follower>, StoreError> {
        let store = Store::open(&settings.backend, crate::unix_now()).await?;
        let follower = Arc::new(Follower {
            store,
            poll: settings.poll,
            max_lag: settings.max_lag,
            on_loss: settings.on_loss,
            last_seq: AtomicI64::new(0),
            clients,
            clients_version: AtomicI64::new(-1),
            fresh_at_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            failures: AtomicU64::new(0),
            failing: AtomicBool::new(false),
        });
        let applied = follower.catch_up(engine).await?;
        match settings.on_loss {
            OnStoreLoss::FailClosed => tracing::info!(
                store = kind(&settings.backend),
                records = applied,
                last_seq = follower.last_seq(),
                max_lag_ms = settings.max_lag.as_millis() as u64,
                "store followed; verification fails closed when it is unreachable for longer \
                 than max_lag_ms"
            ),
            OnStoreLoss::ServeStale => tracing::warn!(
                store = kind(&settings.backend),
                records = applied,
                last_seq = follower.last_seq(),
                max_lag_ms = settings.max_lag.as_millis() as u64,
                "store followed; on_store_loss = \"serve_stale\": when the store is unreachable \
                 verification goes on without the revocations written meanwhile"
            ),
        }
        Ok(follower)
    }

    /// Follows the store in the background: a catch-up on every wake-up and at least every
    /// `poll`, expired records purged now and then. Stops when the handle is aborted.
    pub fn follow<R: Kept>(self: &Arc<Self>, engine: EngineHandle<R>) -> JoinHandle<()> {
        let follower = Arc::clone(self);
        tokio::spawn(async move {
            let mut purged = Instant::now();
            loop {
                tokio::select! {
                    () = follower.store.changed() => {}
                    () = tokio::time::sleep(follower.poll) => {}
                }
                match follower.catch_up(&engine).await {
                    Ok(_) => {
                        if follower.failing.swap(false, Ordering::Relaxed) {
                            tracing::info!(
                                last_seq = follower.last_seq(),
                                "store reachable again; revocations caught up"
                            );
                        }
                    }
                    Err(e) => {
                        follower.failures.fetch_add(1, Ordering::Relaxed);
                        // Logged when it starts failing, then at debug: not a line per poll.
                        if !follower.failing.swap(true, Ordering::Relaxed) {
                            tracing::warn!(cause = %e, "store unreachable; revocations not followed");
                        } else {
                            tracing::debug!(cause = %e, "store still unreachable");
                        }
                    }
                }
                if purged.elapsed() >= PURGE_EVERY {
                    purged = Instant::now();
                    let now = crate::unix_now();
                    engine.revocations().purge(now);
                    if let Err(e) = follower.store.purge(now - EXPIRY_MARGIN_S).await {
                        tracing::debug!(cause = %e, "expired revocations not purged");
                    }
                }
            }
        })
    }

    /// Reloads the store's clients if their version moved since the last load.
    async fn reload_clients(&self) -> Result<(), StoreError> {
        let version = self.store.clients_version().await?;
        if version == self.clients_version.load(Ordering::Acquire) {
            return Ok(());
        }
        let rows = self.store.clients().await?;
        let stored: Vec<StoredClient<'_>> = rows
            .iter()
            .map(|row| StoredClient {
                id: &row.id,
                secret: row.secret.as_deref(),
                registration: &row.registration,
            })
            .collect();
        let taken = self.clients.replace_stored(&stored);
        self.clients_version.store(version, Ordering::Release);
        tracing::info!(version, clients = taken, "stored clients loaded");
        Ok(())
    }

    /// Applies every record after the last one applied and reloads the clients if they
    /// changed; returns how many records were applied.
    async fn catch_up<R: Kept>(&self, engine: &EngineHandle<R>) -> Result<usize, StoreError> {
        let started = self.epoch.elapsed();
        self.reload_clients().await?;
        let mut applied = 0;
        loop {
            let last = self.last_seq();
            let records = self.store.since(last, PAGE).await?;
            let full = records.len() == PAGE;
            if let Some(newest) = records.last().map(|r| r.seq) {
                applied += records.len();
                engine
                    .revocations()
                    .apply(records.into_iter().map(|r| r.revocation));
                self.last_seq.fetch_max(newest, Ordering::AcqRel);
            }
            if !full {
                break;
            }
        }
        self.fresh_at_ms
            .fetch_max(started.as_millis() as u64, Ordering::AcqRel);
        Ok(applied)
    }

    /// Writes a revocation to the store and applies it here at once (the other daemons follow
    /// it on their next catch-up).
    pub async fn revoke<R: Kept>(
        &self,
        engine: &EngineHandle<R>,
        revocation: Revocation,
    ) -> Result<Record, StoreError> {
        let record = self.store.revoke(&revocation, crate::unix_now()).await?;
        engine.revocations().apply([revocation]);
        tracing::info!(
            kind = record.revocation.kind(),
            seq = record.seq,
            "revocation recorded"
        );
        Ok(record)
    }

    /// The store itself, for what the endpoints write and read once (assertion `jti`s,
    /// opaque tokens).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The store's records, for the admin list.
    pub async fn list(&self, limit: usize) -> Result<Vec<Record>, StoreError> {
        self.store.list(limit).await
    }

    pub fn last_seq(&self) -> i64 {
        self.last_seq.load(Ordering::Acquire)
    }

    /// How old this daemon's view of the store is.
    pub fn lag(&self) -> Duration {
        let fresh = Duration::from_millis(self.fresh_at_ms.load(Ordering::Acquire));
        self.epoch.elapsed().saturating_sub(fresh)
    }

    /// Whether the view is older than the lag bound.
    pub fn behind(&self) -> bool {
        self.lag() > self.max_lag
    }

    /// Whether verification must fail closed now: behind, and the operator did not choose to
    /// serve stale.
    pub fn refuses(&self) -> bool {
        self.on_loss == OnStoreLoss::FailClosed && self.behind()
    }

    /// Catch-ups that failed (`tessera_store_sync_failures_total`).
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

/// The backend's name, for logs (never the URL: it may hold a password).
fn kind(config: &store::StoreConfig) -> &'static str {
    match config {
        store::StoreConfig::Sqlite { .. } => "sqlite",
        store::StoreConfig::Postgres { .. } => "postgresql",
    }
}
