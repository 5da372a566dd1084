//! PostgreSQL: a `deadpool-postgres` pool for statements, TLS with rustls (the web PKI roots,
//! aws-lc-rs), and a `LISTEN` connection of its own that turns each `NOTIFY` into a wake-up.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::task::JoinHandle;
use tokio_postgres::AsyncMessage;
use tokio_postgres_rustls::MakeRustlsConnect;

use engine::Revocation;

use crate::client::ClientRow;
use crate::error::StoreError;
use crate::opaque::OpaqueRow;
use crate::record::Record;
use crate::schema::{self, Row};
use crate::wake::Wake;

/// How long a statement may wait for a connection, and a connection may take to be made
/// (`connect_timeout` when the URL sets none).
const WAIT: Duration = Duration::from_secs(5);
/// The most one call may take in all, a backstop over the pool's timeouts: a server that
/// accepted a statement and then went silent (a partition, not a refusal) must not hang a
/// caller until TCP keepalive notices.
const CALL_LIMIT: Duration = Duration::from_secs(10);
/// How long a pooled connection may take to answer the check made before each reuse; one
/// that does not is dropped and another is taken or made.
const RECYCLE: Duration = Duration::from_secs(2);
/// An arbitrary constant: the advisory lock two daemons migrating at once take in turn.
const MIGRATION_LOCK: i64 = 0x0074_6573_7365_7261;

#[derive(Debug)]
pub struct Postgres {
    pool: Pool,
    listener: JoinHandle<()>,
    /// Where the pool's connections go, for logs (never the URL: it may hold a password).
    host: String,
    pub version: i64,
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

fn unavailable(host: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("postgresql at {host}: {e}"))
}

/// Runs one call within [`CALL_LIMIT`]. A transaction cut off here is not committed: dropping
/// its `Transaction` queues a `ROLLBACK`, and the connection goes back to the pool, whose
/// next checkout verifies it (see [`RECYCLE`]) and drops it if it does not answer.
async fn bounded<T>(
    host: &str,
    call: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(CALL_LIMIT, call)
        .await
        .unwrap_or_else(|_| {
            Err(unavailable(
                host,
                format_args!("no answer in {CALL_LIMIT:?}"),
            ))
        })
}

/// tokio-postgres knows `disable`, `prefer` and `require`; the stricter libpq modes are taken
/// as `require`, which here is as strict: rustls always checks the certificate and its name.
fn normalise_sslmode(url: &str) -> String {
    url.replace("sslmode=verify-full", "sslmode=require")
        .replace("sslmode=verify-ca", "sslmode=require")
}

impl Postgres {
    pub async fn open(
        url: &str,
        size: usize,
        now: i64,
        wake: Arc<Wake>,
    ) -> Result<Postgres, StoreError> {
        if size == 0 {
            return Err(StoreError::Config("store.pool must be at least 1".into()));
        }
        // The parser's own message may quote the URL, password included: not repeated.
        let mut config =
            tokio_postgres::Config::from_str(&normalise_sslmode(url)).map_err(|_| {
                StoreError::Config("store.url is not a PostgreSQL connection string".into())
            })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(WAIT);
        }
        let host = hosts(&config);
        let tls = tls()?;
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            // Verified, not Fast: one empty query per checkout (cheap next to a follower's poll)
            // finds the connections a restarted or unreachable server left half-open, which
            // Fast (that only asks the client whether it has noticed) would hand out.
            ManagerConfig {
                recycling_method: RecyclingMethod::Verified,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(WAIT))
            .create_timeout(Some(WAIT))
            .recycle_timeout(Some(RECYCLE))
            .build()
            .map_err(|e| StoreError::Config(format!("store pool: {e}")))?;
        let version = bounded(&host, migrate(&pool, &host, now)).await?;
        let listener = tokio::spawn(listen(config, tls, host.clone(), wake));
        Ok(Postgres {
            pool,
            listener,
            host,
            version,
        })
    }

    async fn connection(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| unavailable(&self.host, e))
    }

    pub async fn revoke(&self, revocation: &Revocation, now: i64) -> Result<Record, StoreError> {
        bounded(&self.host, self.revoke_unbounded(revocation, now)).await
    }

    /// One transaction: the next number (which locks the sequence row until the commit, see
    /// [`schema::NEXT_SEQ`]), the row, the notification, the commit.
    async fn revoke_unbounded(
        &self,
        revocation: &Revocation,
        now: i64,
    ) -> Result<Record, StoreError> {
        let e = |e: tokio_postgres::Error| unavailable(&self.host, e);
        let mut client = self.connection().await?;
        let tx = client.transaction().await.map_err(e)?;
        let seq: i64 = tx
            .query_opt(schema::NEXT_SEQ, &[])
            .await
            .map_err(e)?
            .ok_or_else(|| StoreError::Corrupt("the revocations sequence row is missing".into()))?
            .try_get(0)
            .map_err(|e| StoreError::Corrupt(format!("the revocations sequence: {e}")))?;
        let row = Row::of(revocation);
        tx.execute(
            schema::INSERT,
            &[
                &seq,
                &row.kind,
                &row.iss,
                &row.subject,
                &row.at,
                &row.expires,
                &now,
            ],
        )
        .await
        .map_err(e)?;
        // Delivered to every listener when (and only if) the transaction commits.
        tx.batch_execute(&format!("NOTIFY {}", schema::CHANNEL))
            .await
            .map_err(e)?;
        tx.commit().await.map_err(e)?;
        Ok(Record {
            seq,
            created: now,
            revocation: revocation.clone(),
        })
    }

    pub async fn since(&self, after: i64, limit: usize) -> Result<Vec<Record>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.select(schema::SINCE, &[&after, &limit]).await
    }

    pub async fn list(&self, limit: usize) -> Result<Vec<Record>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.select(schema::LIST, &[&limit]).await
    }

    /// Every purge statement in one transaction; the rows deleted, all tables together.
    pub async fn purge(&self, before: i64) -> Result<u64, StoreError> {
        bounded(&self.host, async {
            let e = |e: tokio_postgres::Error| unavailable(&self.host, e);
            let mut client = self.connection().await?;
            let tx = client.transaction().await.map_err(e)?;
            let mut deleted = 0;
            for statement in schema::PURGE {
                deleted += tx.execute(statement, &[&before]).await.map_err(e)?;
            }
            tx.commit().await.map_err(e)?;
            Ok(deleted)
        })
        .await
    }

    pub async fn add_client(&self, row: &ClientRow) -> Result<bool, StoreError> {
        self.client_write(
            schema::ADD_CLIENT,
            &[
                &row.id,
                &row.secret,
                &row.registration,
                &row.created,
                &row.updated,
            ],
        )
        .await
    }

    pub async fn update_client(&self, row: &ClientRow) -> Result<bool, StoreError> {
        self.client_write(
            schema::UPDATE_CLIENT,
            &[&row.secret, &row.registration, &row.updated, &row.id],
        )
        .await
    }

    pub async fn remove_client(&self, id: &str) -> Result<bool, StoreError> {
        self.client_write(schema::REMOVE_CLIENT, &[&id]).await
    }

    /// One transaction: the clients' version counted (see [`schema::BUMP_CLIENTS`]), the
    /// write, the notification, the commit; `false`, and nothing written (the count and the
    /// notification included), when the write affected no row.
    async fn client_write(
        &self,
        sql: &str,
        args: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<bool, StoreError> {
        bounded(&self.host, async {
            let e = |e: tokio_postgres::Error| unavailable(&self.host, e);
            let mut client = self.connection().await?;
            let tx = client.transaction().await.map_err(e)?;
            if tx.execute(schema::BUMP_CLIENTS, &[]).await.map_err(e)? != 1 {
                return Err(StoreError::Corrupt(
                    "the clients sequence row is missing".into(),
                ));
            }
            if tx.execute(sql, args).await.map_err(e)? == 0 {
                // Dropping the transaction rolls the count back.
                return Ok(false);
            }
            // Delivered to every listener when (and only if) the transaction commits.
            tx.batch_execute(&format!("NOTIFY {}", schema::CHANNEL))
                .await
                .map_err(e)?;
            tx.commit().await.map_err(e)?;
            Ok(true)
        })
        .await
    }

    pub async fn client(&self, id: &str) -> Result<Option<ClientRow>, StoreError> {
        Ok(self
            .clients_where(schema::CLIENT, &[&id])
            .await?
            .into_iter()
            .next())
    }

    pub async fn clients(&self) -> Result<Vec<ClientRow>, StoreError> {
        self.clients_where(schema::CLIENTS, &[]).await
    }

    async fn clients_where(
        &self,
        sql: &str,
        args: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<ClientRow>, StoreError> {
        let rows = self.query(sql, args).await?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get(0).map_err(|e| {
                    StoreError::Corrupt(format!("a client whose id is not text: {e}"))
                })?;
                let read = || -> Result<_, tokio_postgres::Error> {
                    Ok((r.try_get(1)?, r.try_get(2)?, r.try_get(3)?, r.try_get(4)?))
                };
                let (secret, registration, created, updated) =
                    read().map_err(|e| StoreError::Corrupt(format!("client {id:?}: {e}")))?;
                Ok(ClientRow {
                    id,
                    secret,
                    registration,
                    created,
                    updated,
                })
            })
            .collect()
    }

    pub async fn clients_version(&self) -> Result<i64, StoreError> {
        self.query(schema::CLIENTS_VERSION, &[])
            .await?
            .first()
            .ok_or_else(|| StoreError::Corrupt("the clients sequence row is missing".into()))?
            .try_get(0)
            .map_err(|e| StoreError::Corrupt(format!("the clients sequence row: {e}")))
    }

    pub async fn remember_once(
        &self,
        client_id: &str,
        jti: &str,
        exp: i64,
    ) -> Result<bool, StoreError> {
        Ok(self
            .execute(schema::REMEMBER_ONCE, &[&client_id, &jti, &exp])
            .await?
            == 1)
    }

    pub async fn remember_proof(&self, key: &[u8; 32], exp: i64) -> Result<bool, StoreError> {
        let key: &[u8] = key;
        Ok(self.execute(schema::REMEMBER_PROOF, &[&key, &exp]).await? == 1)
    }

    pub async fn put_opaque(&self, row: &OpaqueRow) -> Result<(), StoreError> {
        let hash: &[u8] = &row.hash;
        let written = self
            .execute(
                schema::PUT_OPAQUE,
                &[&hash, &row.client_id, &row.claims, &row.exp, &row.created],
            )
            .await?;
        if written == 0 {
            return Err(StoreError::Conflict(
                "an opaque token with this hash is already stored".into(),
            ));
        }
        Ok(())
    }

    pub async fn opaque(&self, hash: &[u8; 32]) -> Result<Option<OpaqueRow>, StoreError> {
        let wanted: &[u8] = hash;
        let rows = self.query(schema::OPAQUE, &[&wanted]).await?;
        let Some(r) = rows.first() else {
            return Ok(None);
        };
        let read = || -> Result<_, tokio_postgres::Error> {
            Ok((
                r.try_get::<_, Vec<u8>>(0)?,
                r.try_get(1)?,
                r.try_get(2)?,
                r.try_get(3)?,
                r.try_get(4)?,
            ))
        };
        let (stored, client_id, claims, exp, created) = read().map_err(|e| {
            StoreError::Corrupt(format!(
                "opaque token {}: {e}",
                engine::revoked::sha256_hex(hash)
            ))
        })?;
        Ok(Some(OpaqueRow {
            hash: schema::opaque_hash(hash, stored)?,
            client_id,
            claims,
            exp,
            created,
        }))
    }

    /// One statement outside a transaction, within [`CALL_LIMIT`]; the rows it affected.
    async fn execute(
        &self,
        sql: &str,
        args: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        bounded(&self.host, async {
            let client = self.connection().await?;
            client
                .execute(sql, args)
                .await
                .map_err(|e| unavailable(&self.host, e))
        })
        .await
    }

    /// One query within [`CALL_LIMIT`]; the rows, unread.
    async fn query(
        &self,
        sql: &str,
        args: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        bounded(&self.host, async {
            let client = self.connection().await?;
            client
                .query(sql, args)
                .await
                .map_err(|e| unavailable(&self.host, e))
        })
        .await
    }

    async fn select(
        &self,
        sql: &str,
        args: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Record>, StoreError> {
        let rows = self.query(sql, args).await?;
        rows.iter()
            .map(|r| {
                let read = || -> Result<_, tokio_postgres::Error> {
                    Ok((
                        r.try_get::<_, i64>(0)?,
                        r.try_get::<_, String>(1)?,
                        r.try_get::<_, String>(2)?,
                        r.try_get::<_, String>(3)?,
                        r.try_get::<_, i64>(4)?,
                        r.try_get::<_, i64>(6)?,
                    ))
                };
                let (seq, kind, iss, subject, at, created) =
                    read().map_err(|e| StoreError::Corrupt(e.to_string()))?;
                schema::record(seq, &kind, iss, subject, at, created)
            })
            .collect()
    }
}

/// The hosts of a configuration, for logs.
fn hosts(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    hosts.join(",")
}

/// rustls with aws-lc-rs and the web PKI roots; used when the URL's `sslmode` asks for TLS
/// (tokio-postgres does not negotiate TLS over Unix sockets or with `sslmode=disable`).
fn tls() -> Result<MakeRustlsConnect, StoreError> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Config(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

async fn migrate(pool: &Pool, host: &str, now: i64) -> Result<i64, StoreError> {
    let e = |e: tokio_postgres::Error| unavailable(host, e);
    let mut client = pool.get().await.map_err(|e| unavailable(host, e))?;
    let tx = client.transaction().await.map_err(e)?;
    // Two daemons starting together migrate one after the other.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(e)?;
    tx.batch_execute(schema::MIGRATIONS_TABLE)
        .await
        .map_err(e)?;
    let current: i64 = tx
        .query_one(schema::CURRENT_VERSION, &[])
        .await
        .map_err(e)?
        .try_get(0)
        .map_err(|e| StoreError::Corrupt(format!("tessera_migrations: {e}")))?;
    for (version, statements) in schema::pending(current)? {
        for statement in statements {
            tx.batch_execute(statement).await.map_err(e)?;
        }
        tx.execute(schema::RECORD_MIGRATION, &[&version, &now])
            .await
            .map_err(e)?;
    }
    tx.commit().await.map_err(e)?;
    Ok(schema::VERSION)
}

/// Keeps a `LISTEN` connection open and wakes `wake` on every notification, reconnecting with
/// back-off (1 s, doubling, at most 10 s) when it fails. After each (re)connection it wakes
/// once too: notifications sent while it was down are lost, and the follower must look.
async fn listen(
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    host: String,
    wake: Arc<Wake>,
) {
    let mut backoff = Duration::from_secs(1);
    loop {
        match config.connect(tls.clone()).await {
            Ok((client, mut connection)) => {
                let notified = Arc::clone(&wake);
                // The connection's messages (notifications among them) arrive only while it is
                // polled: a task of its own polls it until it fails. Aborted with this task (a
                // dropped store), so the connection never outlives it.
                let driver = Driver(tokio::spawn(async move {
                    loop {
                        match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                            Some(Ok(AsyncMessage::Notification(_))) => notified.wake(),
                            Some(Ok(_)) => {}
                            Some(Err(e)) => return e.to_string(),
                            None => return "connection closed".to_owned(),
                        }
                    }
                }));
                match client
                    .batch_execute(&format!("LISTEN {}", schema::CHANNEL))
                    .await
                {
                    Ok(()) => {
                        backoff = Duration::from_secs(1);
                        wake.wake();
                        let cause = driver.finished().await;
                        tracing::warn!(%host, %cause, "store LISTEN connection lost; reconnecting");
                    }
                    Err(e) => tracing::warn!(%host, cause = %e, "store LISTEN failed"),
                }
                drop(client);
            }
            Err(e) => tracing::warn!(
                %host,
                cause = %e,
                retry_s = backoff.as_secs(),
                "store LISTEN connection not made"
            ),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// The task that polls the `LISTEN` connection; aborted when dropped.
struct Driver(JoinHandle<String>);

impl Driver {
    /// Why the connection ended.
    async fn finished(mut self) -> String {
        (&mut self.0).await.unwrap_or_else(|e| e.to_string())
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.0.abort();
    }
}
