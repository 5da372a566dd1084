//! SQLite: one writer thread owns the connection (WAL, `BEGIN IMMEDIATE` for every
//! read-modify-write); async callers send it commands and await the answer, so no Tokio worker
//! ever blocks on the disk.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::oneshot;

use engine::Revocation;

use crate::error::StoreError;
use crate::record::Record;
use crate::schema::{self, Row};

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

enum Command {
    Revoke(Revocation, i64, Reply<Record>),
    Since(i64, usize, Reply<Vec<Record>>),
    List(usize, Reply<Vec<Record>>),
    Purge(i64, Reply<u64>),
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
                let _ = reply.send(
                    connection
                        .execute(schema::PURGE, params![before])
                        .map(|n| n as u64)
                        .map_err(unavailable),
                );
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
    if current > schema::VERSION {
        return Err(StoreError::SchemaTooNew {
            found: current,
            known: schema::VERSION,
        });
    }
    for (i, statements) in schema::MIGRATIONS.iter().enumerate() {
        let version = i as i64 + 1;
        if version <= current {
            continue;
        }
        for statement in *statements {
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
