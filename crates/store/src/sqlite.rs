//! SQLite: one writer thread owns the connection (WAL, `BEGIN IMMEDIATE` for every
//! read-modify-write); async callers send it commands and await the answer, so no Tokio worker
//! ever blocks on the disk.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::oneshot;

use engine::Revocation;

use crate::client::ClientRow;
use crate::error::StoreError;
use crate::opaque::OpaqueRow;
use crate::record::Record;
use crate::schema::{self, Row};

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

enum Command {
    Revoke(Revocation, i64, Reply<Record>),
    Since(i64, usize, Reply<Vec<Record>>),
    List(usize, Reply<Vec<Record>>),
    Purge(i64, Reply<u64>),
    AddClient(ClientRow, Reply<bool>),
    UpdateClient(ClientRow, Reply<bool>),
    RemoveClient(String, Reply<bool>),
    Client(String, Reply<Option<ClientRow>>),
    Clients(Reply<Vec<ClientRow>>),
    ClientsVersion(Reply<i64>),
    RememberOnce(String, String, i64, Reply<bool>),
    RememberProof([u8; 32], i64, Reply<bool>),
    PutOpaque(OpaqueRow, Reply<()>),
    Opaque([u8; 32], Reply<Option<OpaqueRow>>),
}

/// The handle of the writer thread; the thread ends when the last handle goes.
#[derive(Debug)]
pub struct Sqlite {
    commands: mpsc::Sender<Command>,
    pub version: i64,
}

impl Sqlite {
    pub async fn open(path: &Path, now: i64) -> Result<Sqlite, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Config(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        let (commands, queue) = mpsc::channel();
        let (opened, version) = oneshot::channel();
        let path = path.to_owned();
        std::thread::Builder::new()
            .name("tessera-store".into())
            .spawn(move || writer(path, now, queue, opened))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the store thread: {e}")))?;
        let version = version
            .await
            .map_err(|_| StoreError::Unavailable("the store thread stopped".into()))??;
        Ok(Sqlite { commands, version })
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(make(reply))
            .map_err(|_| StoreError::Unavailable("the store thread stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the store thread stopped".into()))?
    }

    pub async fn revoke(&self, revocation: &Revocation, now: i64) -> Result<Record, StoreError> {
        let revocation = revocation.clone();
        self.ask(|reply| Command::Revoke(revocation, now, reply))
            .await
    }

    pub async fn since(&self, after: i64, limit: usize) -> Result<Vec<Record>, StoreError> {
        self.ask(|reply| Command::Since(after, limit, reply)).await
    }

    pub async fn list(&self, limit: usize) -> Result<Vec<Record>, StoreError> {
        self.ask(|reply| Command::List(limit, reply)).await
    }

    pub async fn purge(&self, before: i64) -> Result<u64, StoreError> {
        self.ask(|reply| Command::Purge(before, reply)).await
    }

    pub async fn add_client(&self, row: &ClientRow) -> Result<bool, StoreError> {
        let row = row.clone();
        self.ask(|reply| Command::AddClient(row, reply)).await
    }

    pub async fn update_client(&self, row: &ClientRow) -> Result<bool, StoreError> {
        let row = row.clone();
        self.ask(|reply| Command::UpdateClient(row, reply)).await
    }

    pub async fn remove_client(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.ask(|reply| Command::RemoveClient(id, reply)).await
    }

    pub async fn client(&self, id: &str) -> Result<Option<ClientRow>, StoreError> {
        let id = id.to_owned();
        self.ask(|reply| Command::Client(id, reply)).await
    }

    pub async fn clients(&self) -> Result<Vec<ClientRow>, StoreError> {
        self.ask(Command::Clients).await
    }

    pub async fn clients_version(&self) -> Result<i64, StoreError> {
        self.ask(Command::ClientsVersion).await
    }

    pub async fn remember_once(
        &self,
        client_id: &str,
        jti: &str,
        exp: i64,
    ) -> Result<bool, StoreError> {
        let (client_id, jti) = (client_id.to_owned(), jti.to_owned());
        self.ask(|reply| Command::RememberOnce(client_id, jti, exp, reply))
            .await
    }

    pub async fn remember_proof(&self, key: &[u8; 32], exp: i64) -> Result<bool, StoreError> {
        let key = *key;
        self.ask(|reply| Command::RememberProof(key, exp, reply))
            .await
    }

    pub async fn put_opaque(&self, row: &OpaqueRow) -> Result<(), StoreError> {
        let row = row.clone();
        self.ask(|reply| Command::PutOpaque(row, reply)).await
    }

    pub async fn opaque(&self, hash: &[u8; 32]) -> Result<Option<OpaqueRow>, StoreError> {
        let hash = *hash;
        self.ask(|reply| Command::Opaque(hash, reply)).await
    }
}

fn unavailable(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(format!("sqlite: {e}"))
}

/// A row that failed to read: a column of the wrong type is the row's fault, anything else
/// the disk's.
fn unreadable(e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..) => {
            StoreError::Corrupt(format!("sqlite: {e}"))
        }
        e => unavailable(e),
    }
}

/// [`unreadable`], naming the row (`what`) when the row is at fault.
fn unreadable_row(what: &str, e: rusqlite::Error) -> StoreError {
    match unreadable(e) {
        StoreError::Corrupt(m) => StoreError::Corrupt(format!("{what}: {m}")),
        other => other,
    }
}

/// The writer thread: opens and migrates, says so, then answers commands until every handle
/// is gone.
fn writer(path: PathBuf, now: i64, queue: mpsc::Receiver<Command>, opened: Reply<i64>) {
    let mut connection = match connect(&path, now) {
        Ok((connection, version)) => {
            let _ = opened.send(Ok(version));
            connection
        }
        Err(e) => {
            let _ = opened.send(Err(e));
            return;
        }
    };
    while let Ok(command) = queue.recv() {
        match command {
            Command::Revoke(revocation, now, reply) => {
                let _ = reply.send(revoke(&mut connection, revocation, now));
            }
            Command::Since(after, limit, reply) => {
                let _ = reply.send(select(
                    &connection,
                    schema::SINCE,
                    &[&after, &limit_of(limit)],
                ));
            }
            Command::List(limit, reply) => {
                let _ = reply.send(select(&connection, schema::LIST, &[&limit_of(limit)]));
            }
            Command::Purge(before, reply) => {
                let _ = reply.send(purge(&mut connection, before));
            }
            Command::AddClient(row, reply) => {
                let _ = reply.send(client_write(
                    &mut connection,
                    schema::ADD_CLIENT,
                    params![
                        row.id,
                        row.secret,
                        row.registration,
                        row.created,
                        row.updated
                    ],
                ));
            }
            Command::UpdateClient(row, reply) => {
                let _ = reply.send(client_write(
                    &mut connection,
                    schema::UPDATE_CLIENT,
                    params![row.secret, row.registration, row.updated, row.id],
                ));
            }
            Command::RemoveClient(id, reply) => {
                let _ = reply.send(client_write(
                    &mut connection,
                    schema::REMOVE_CLIENT,
                    params![id],
                ));
            }
            Command::Client(id, reply) => {
                let _ = reply.send(
                    clients(&connection, schema::CLIENT, params![id])
                        .map(|rows| rows.into_iter().next()),
                );
            }
            Command::Clients(reply) => {
                let _ = reply.send(clients(&connection, schema::CLIENTS, []));
            }
            Command::ClientsVersion(reply) => {
                let _ = reply.send(clients_version(&connection));
            }
            Command::RememberOnce(client_id, jti, exp, reply) => {
                let _ = reply.send(
                    connection
                        .execute(schema::REMEMBER_ONCE, params![client_id, jti, exp])
                        .map(|n| n == 1)
                        .map_err(unavailable),
                );
            }
            Command::RememberProof(key, exp, reply) => {
                let _ = reply.send(
                    connection
                        .execute(schema::REMEMBER_PROOF, params![&key[..], exp])
                        .map(|n| n == 1)
                        .map_err(unavailable),
                );
            }
            Command::PutOpaque(row, reply) => {
                let _ = reply.send(put_opaque(&connection, &row));
            }
            Command::Opaque(hash, reply) => {
                let _ = reply.send(opaque(&connection, &hash));
            }
        }
    }
}

fn limit_of(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn connect(path: &Path, now: i64) -> Result<(Connection, i64), StoreError> {
    let mut connection = Connection::open(path)
        .map_err(|e| StoreError::Config(format!("cannot open {}: {e}", path.display())))?;
    connection
        .busy_timeout(Duration::from_secs(5))
        .map_err(unavailable)?;
    // WAL: readers in other processes (a second daemon, `tessera revoke`) never block the
    // writer; NORMAL is durable across process crashes, which is what WAL promises.
    let mode: String = connection
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(unavailable)?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(mode, "sqlite store not in WAL mode");
    }
    connection
        .execute_batch("PRAGMA synchronous = NORMAL")
        .map_err(unavailable)?;
    let version = migrate(&mut connection, now)?;
    Ok((connection, version))
}

fn migrate(connection: &mut Connection, now: i64) -> Result<i64, StoreError> {
    let tx = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(unavailable)?;
    tx.execute_batch(schema::MIGRATIONS_TABLE)
        .map_err(unavailable)?;
    let current: i64 = tx
        .query_row(schema::CURRENT_VERSION, [], |r| r.get(0))
        .map_err(unavailable)?;
    for (version, statements) in schema::pending(current)? {
        for statement in statements {
            tx.execute_batch(statement).map_err(unavailable)?;
        }
        tx.execute(schema::RECORD_MIGRATION, params![version, now])
            .map_err(unavailable)?;
    }
    tx.commit().map_err(unavailable)?;
    Ok(schema::VERSION)
}

/// One transaction: the next number, the row, the commit. `BEGIN IMMEDIATE` takes the
/// database's write lock before the sequence is read, so writers in other processes on the
/// same file (waiting up to `busy_timeout`) take numbers strictly after this one commits: the
/// commit order the followers' `seq > last` relies on (see [`schema::NEXT_SEQ`]).
fn revoke(
    connection: &mut Connection,
    revocation: Revocation,
    now: i64,
) -> Result<Record, StoreError> {
    let tx = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(unavailable)?;
    let seq: i64 = tx
        .query_row(schema::NEXT_SEQ, [], |r| r.get(0))
        .optional()
        .map_err(unavailable)?
        .ok_or_else(|| StoreError::Corrupt("the revocations sequence row is missing".into()))?;
    let row = Row::of(&revocation);
    tx.execute(
        schema::INSERT,
        params![
            seq,
            row.kind,
            row.iss,
            row.subject,
            row.at,
            row.expires,
            now
        ],
    )
    .map_err(unavailable)?;
    tx.commit().map_err(unavailable)?;
    Ok(Record {
        seq,
        created: now,
        revocation,
    })
}

fn select(
    connection: &Connection,
    sql: &str,
    args: &[&dyn rusqlite::ToSql],
) -> Result<Vec<Record>, StoreError> {
    let mut statement = connection.prepare_cached(sql).map_err(unavailable)?;
    let rows = statement
        .query_map(args, |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, i64>(6)?,
            ))
        })
        .map_err(unavailable)?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, kind, iss, subject, at, created) = row.map_err(unreadable)?;
        out.push(schema::record(seq, &kind, iss, subject, at, created)?);
    }
    Ok(out)
}

/// Every purge statement in one transaction; the rows deleted, all tables together.
fn purge(connection: &mut Connection, before: i64) -> Result<u64, StoreError> {
    let tx = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(unavailable)?;
    let mut deleted = 0;
    for statement in schema::PURGE {
        deleted += tx
            .execute(statement, params![before])
            .map_err(unavailable)? as u64;
    }
    tx.commit().map_err(unavailable)?;
    Ok(deleted)
}

/// One transaction: the clients' version counted (see [`schema::BUMP_CLIENTS`]), the write,
/// the commit; `false`, and nothing written (the count included), when the write affected no
/// row.
fn client_write(
    connection: &mut Connection,
    sql: &str,
    args: impl rusqlite::Params,
) -> Result<bool, StoreError> {
    let tx = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(unavailable)?;
    if tx.execute(schema::BUMP_CLIENTS, []).map_err(unavailable)? != 1 {
        return Err(StoreError::Corrupt(
            "the clients sequence row is missing".into(),
        ));
    }
    if tx.execute(sql, args).map_err(unavailable)? == 0 {
        // Dropping the transaction rolls the count back.
        return Ok(false);
    }
    tx.commit().map_err(unavailable)?;
    Ok(true)
}

fn clients_version(connection: &Connection) -> Result<i64, StoreError> {
    connection
        .query_row(schema::CLIENTS_VERSION, [], |r| r.get(0))
        .optional()
        .map_err(|e| unreadable_row("the clients sequence row", e))?
        .ok_or_else(|| StoreError::Corrupt("the clients sequence row is missing".into()))
}

fn clients(
    connection: &Connection,
    sql: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<ClientRow>, StoreError> {
    let mut statement = connection.prepare_cached(sql).map_err(unavailable)?;
    let mut rows = statement.query(args).map_err(unavailable)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(unavailable)? {
        let id: String = r
            .get(0)
            .map_err(|e| unreadable_row("a client whose id is not text", e))?;
        let what = format!("client {id:?}");
        out.push(ClientRow {
            secret: r.get(1).map_err(|e| unreadable_row(&what, e))?,
            registration: r.get(2).map_err(|e| unreadable_row(&what, e))?,
            created: r.get(3).map_err(|e| unreadable_row(&what, e))?,
            updated: r.get(4).map_err(|e| unreadable_row(&what, e))?,
            id,
        });
    }
    Ok(out)
}

fn put_opaque(connection: &Connection, row: &OpaqueRow) -> Result<(), StoreError> {
    let written = connection
        .execute(
            schema::PUT_OPAQUE,
            params![
                &row.hash[..],
                row.client_id,
                row.claims,
                row.exp,
                row.created
            ],
        )
        .map_err(unavailable)?;
    if written == 0 {
        return Err(StoreError::Conflict(
            "an opaque token with this hash is already stored".into(),
        ));
    }
    Ok(())
}

fn opaque(connection: &Connection, hash: &[u8; 32]) -> Result<Option<OpaqueRow>, StoreError> {
    let what = format!("opaque token {}", engine::revoked::sha256_hex(hash));
    let mut statement = connection
        .prepare_cached(schema::OPAQUE)
        .map_err(unavailable)?;
    let mut rows = statement.query(params![&hash[..]]).map_err(unavailable)?;
    let Some(r) = rows.next().map_err(unavailable)? else {
        return Ok(None);
    };
    let stored: Vec<u8> = r.get(0).map_err(|e| unreadable_row(&what, e))?;
    Ok(Some(OpaqueRow {
        hash: schema::opaque_hash(hash, stored)?,
        client_id: r.get(1).map_err(|e| unreadable_row(&what, e))?,
        claims: r.get(2).map_err(|e| unreadable_row(&what, e))?,
        exp: r.get(3).map_err(|e| unreadable_row(&what, e))?,
        created: r.get(4).map_err(|e| unreadable_row(&what, e))?,
    }))
}
