//! One suite, run against both backends: each case is a function over a [`Db`], driven once on
//! SQLite in a scratch folder and once on a throw-away PostgreSQL cluster (testkit's
//! `Postgres`); `on_both!` makes the two tests (`sqlite::case`, `postgres::case`). What only
//! PostgreSQL has (notifications between processes, a server that goes away) follows.

use std::future::Future;
use std::time::{Duration, Instant};

use store::{ClientRow, OpaqueRow, Revocation, Store, StoreConfig, StoreError};
use testkit::{Postgres, Scratch};

const NOW: i64 = 1_800_000_000;

/// The schema version this binary migrates to.
const VERSION: i64 = 3;

/// No case may take longer, whatever the store does.
const CASE_LIMIT: Duration = Duration::from_secs(90);

/// A database of a test's own, and a way to reach it behind the store's back (each engine's
/// own client), as another program would.
enum Db {
    Sqlite(Scratch),
    Postgres(Postgres),
}

impl Db {
    fn sqlite(name: &str) -> Db {
        Db::Sqlite(Scratch::new(&format!("store-{name}")))
    }

    fn postgres() -> Db {
        Db::Postgres(Postgres::start())
    }

    fn config(&self) -> StoreConfig {
        match self {
            // A folder that does not exist yet: the store creates it.
            Db::Sqlite(dir) => StoreConfig::Sqlite {
                path: dir.join("nested/store.sqlite3"),
            },
            Db::Postgres(pg) => StoreConfig::Postgres {
                url: pg.url(),
                pool: 4,
            },
        }
    }

    async fn open(&self) -> Store {
        Store::open(&self.config(), NOW).await.expect("open")
    }

    /// Runs one statement directly; returns the first column of the first row, if any.
    async fn sql(&self, statement: &str) -> Option<i64> {
        match self {
            Db::Sqlite(dir) => {
                let path = dir.join("nested/store.sqlite3");
                let connection = rusqlite::Connection::open(path).expect("sqlite open");
                let mut prepared = connection.prepare(statement).expect("prepare");
                let mut rows = prepared.query([]).expect("query");
                let row = rows.next().expect("step");
                row.and_then(|r| r.get(0).ok())
            }
            Db::Postgres(pg) => {
                let (client, connection) =
                    tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
                        .await
                        .expect("postgres connect");
                tokio::spawn(connection);
                let rows = client.query(statement, &[]).await.expect("query");
                rows.first().and_then(|r| r.try_get(0).ok())
            }
        }
    }
}

macro_rules! on_both {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $case() {
                    let db = super::Db::sqlite(stringify!($case));
                    super::bounded(super::$case(&db)).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $case() {
                    let db = super::Db::postgres();
                    super::bounded(super::$case(&db)).await;
                }
            )*
        }
    };
}

on_both!(
    every_kind_round_trips,
    seq_grows_and_since_returns_only_newer,
    purge_removes_only_expired_jti_and_token_records,
    reopening_runs_no_migration_twice_and_keeps_records,
    a_newer_schema_is_refused,
    an_unreadable_row_is_corrupt,
    concurrent_writers_get_every_number_once,
    own_writes_wake_changed,
    clients_add_update_remove_and_list_in_byte_order,
    the_clients_version_counts_only_writes_that_changed_something,
    a_client_write_wakes_changed,
    remember_once_is_true_once_and_another_store_sees_the_record,
    concurrent_remember_once_of_one_pair_is_true_once,
    a_proof_is_remembered_once_across_stores_and_purged_after_exp,
    opaque_tokens_round_trip_and_a_duplicate_conflicts,
    purge_removes_expired_assertions_and_opaque_tokens_and_keeps_live_ones,
    a_version_1_store_migrates_and_keeps_its_records,
);

async fn bounded(case: impl Future<Output = ()>) {
    tokio::time::timeout(CASE_LIMIT, case)
        .await
        .expect("the case finished in time");
}

fn every_kind() -> Vec<Revocation> {
    vec![
        Revocation::Jti {
            iss: "https://a".into(),
            jti: "j-1".into(),
            exp: NOW + 60,
        },
        Revocation::Subject {
            iss: "https://a".into(),
            sub: "alice".into(),
            before: NOW,
        },
        Revocation::Client {
            client_id: "web".into(),
            before: NOW - 5,
        },
        Revocation::Token {
            sha256: [0x5a; 32],
            exp: NOW - 10,
        },
    ]
}

fn jti(iss: &str, n: usize, exp: i64) -> Revocation {
    Revocation::Jti {
        iss: iss.into(),
        jti: format!("{n}"),
        exp,
    }
}

fn seqs(records: &[store::Record]) -> Vec<i64> {
    records.iter().map(|r| r.seq).collect()
}

async fn every_kind_round_trips(db: &Db) {
    let store = db.open().await;
    assert_eq!(store.schema_version(), VERSION);
    for revocation in every_kind() {
        let record = store.revoke(&revocation, NOW + 1).await.expect("revoke");
        assert_eq!(record.revocation, revocation);
        assert_eq!(record.created, NOW + 1);
    }
    let back = store.since(0, 100).await.expect("since");
    assert_eq!(
        back.iter()
            .map(|r| r.revocation.clone())
            .collect::<Vec<_>>(),
        every_kind()
    );
    assert!(back.iter().all(|r| r.created == NOW + 1));
    // The token hash is stored as lowercase hex, as the other tools read it.
    assert_eq!(
        db.sql("SELECT COUNT(*) FROM tessera_revocations WHERE kind = 'token' AND subject = lower(subject)")
            .await,
        Some(1)
    );
}

async fn seq_grows_and_since_returns_only_newer(db: &Db) {
    let store = db.open().await;
    for n in 0..5 {
        let record = store.revoke(&jti("i", n, NOW), NOW).await.expect("revoke");
        assert_eq!(record.seq, n as i64 + 1);
    }
    assert_eq!(
        seqs(&store.since(0, 100).await.expect("since")),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(seqs(&store.since(2, 2).await.expect("since")), [3, 4]);
    assert_eq!(seqs(&store.since(5, 100).await.expect("since")), [0i64; 0]);
    // The admin listing: newest first.
    assert_eq!(seqs(&store.list(3).await.expect("list")), [5, 4, 3]);
}

async fn purge_removes_only_expired_jti_and_token_records(db: &Db) {
    let store = db.open().await;
    for revocation in every_kind() {
        store.revoke(&revocation, NOW).await.expect("revoke");
    }
    // The token record expired at NOW - 10; the jti one expires at NOW + 60; subject and
    // client records never expire.
    assert_eq!(store.purge(NOW).await.expect("purge"), 1);
    let kinds: Vec<_> = store
        .since(0, 100)
        .await
        .expect("since")
        .iter()
        .map(|r| r.revocation.kind())
        .collect();
    assert_eq!(kinds, ["jti", "subject", "client"]);
    assert_eq!(store.purge(NOW).await.expect("purge again"), 0);
    assert_eq!(store.purge(NOW + 61).await.expect("purge later"), 1);
    assert_eq!(store.since(0, 100).await.expect("since").len(), 2);
}

async fn reopening_runs_no_migration_twice_and_keeps_records(db: &Db) {
    let store = db.open().await;
    store.revoke(&jti("i", 1, NOW), NOW).await.expect("revoke");
    store.revoke(&jti("i", 2, NOW), NOW).await.expect("revoke");
    drop(store);
    let store = Store::open(&db.config(), NOW + 100).await.expect("reopen");
    assert_eq!(store.schema_version(), VERSION);
    assert_eq!(
        db.sql("SELECT COUNT(*) FROM tessera_migrations").await,
        Some(VERSION)
    );
    assert_eq!(
        db.sql("SELECT applied FROM tessera_migrations WHERE version = 1")
            .await,
        Some(NOW),
        "the first open's migration stands"
    );
    assert_eq!(seqs(&store.since(0, 100).await.expect("since")), [1, 2]);
    let next = store.revoke(&jti("i", 3, NOW), NOW).await.expect("revoke");
    assert_eq!(next.seq, 3, "the sequence goes on where it was");
}

async fn a_newer_schema_is_refused(db: &Db) {
    drop(db.open().await);
    // What a newer binary would leave behind.
    db.sql("INSERT INTO tessera_migrations (version, applied) VALUES (999, 0)")
        .await;
    match Store::open(&db.config(), NOW).await {
        Err(StoreError::SchemaTooNew {
            found: 999,
            known: VERSION,
        }) => {}
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

async fn an_unreadable_row_is_corrupt(db: &Db) {
    let store = db.open().await;
    store.revoke(&jti("i", 1, NOW), NOW).await.expect("revoke");
    // Rows another program wrote: a kind this binary does not know, a hash that is not hex.
    db.sql(
        "INSERT INTO tessera_revocations (seq, kind, iss, subject, at, expires, created) \
         VALUES (10, 'device', '', 'x', 1, NULL, 1)",
    )
    .await;
    db.sql(
        "INSERT INTO tessera_revocations (seq, kind, iss, subject, at, expires, created) \
         VALUES (20, 'token', '', 'not-hex', 1, 1, 1)",
    )
    .await;
    for after in [1, 10] {
        match store.since(after, 1).await {
            Err(StoreError::Corrupt(m)) => assert!(!m.is_empty()),
            other => panic!("expected Corrupt after {after}, got {other:?}"),
        }
    }
    // What was before them still reads.
    assert_eq!(seqs(&store.since(0, 1).await.expect("since")), [1]);
}

/// Two stores on one database writing at once: unique numbers, no gaps, and a reader that
/// follows `seq > last` while they write misses nothing.
async fn concurrent_writers_get_every_number_once(db: &Db) {
    let (a, b) = (db.open().await, db.open().await);
    let write = |store: Store, name: &'static str| {
        tokio::spawn(async move {
            let mut seqs = Vec::new();
            for n in 0..50 {
                let record = store.revoke(&jti(name, n, NOW), NOW).await.expect("revoke");
                seqs.push(record.seq);
                tokio::task::yield_now().await;
            }
            seqs
        })
    };
    let (wa, wb) = (write(a.clone(), "a"), write(b.clone(), "b"));
    let follower = {
        let reader = b.clone();
        tokio::spawn(async move {
            let (mut last, mut seen) = (0, Vec::new());
            while seen.len() < 100 {
                for record in reader.since(last, 7).await.expect("since") {
                    last = record.seq;
                    seen.push(record.seq);
                }
            }
            seen
        })
    };
    let mut all = wa.await.expect("writer a");
    all.extend(wb.await.expect("writer b"));
    all.sort_unstable();
    assert_eq!(all, (1..=100).collect::<Vec<_>>(), "unique, without gaps");
    let seen = follower.await.expect("follower");
    assert_eq!(
        seen,
        (1..=100).collect::<Vec<_>>(),
        "the follower skipped or repeated a record"
    );
    for after in 0..100 {
        let rest = a.since(after, 1000).await.expect("since");
        assert_eq!(seqs(&rest), (after + 1..=100).collect::<Vec<_>>());
    }
}

async fn own_writes_wake_changed(db: &Db) {
    let store = db.open().await;
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move { store.changed().await })
    };
    store.revoke(&jti("i", 1, NOW), NOW).await.expect("revoke");
    tokio::time::timeout(Duration::from_secs(1), waiter)
        .await
        .expect("woken by its own write")
        .expect("waiter");
}

fn client(id: &str, secret: Option<&str>, registration: &str, at: i64) -> ClientRow {
    ClientRow {
        id: id.into(),
        secret: secret.map(Into::into),
        registration: registration.into(),
        created: at,
        updated: at,
    }
}

fn ids(rows: &[ClientRow]) -> Vec<&str> {
    rows.iter().map(|r| r.id.as_str()).collect()
}

fn opaque(hash: u8, exp: i64) -> OpaqueRow {
    OpaqueRow {
        hash: [hash; 32],
        client_id: "web".into(),
        claims: format!(r#"{{"sub":"alice","n":{hash}}}"#),
        exp,
        created: NOW,
    }
}

async fn clients_add_update_remove_and_list_in_byte_order(db: &Db) {
    let store = db.open().await;
    assert_eq!(store.clients().await.expect("clients"), []);
    assert_eq!(store.client("web").await.expect("client"), None);
    let web = client("web", Some("sha256$abc"), r#"{"redirect_uris":[]}"#, NOW);
    assert!(store.add_client(&web).await.expect("add"));
    assert_eq!(
        store.client("web").await.expect("client"),
        Some(web.clone())
    );
    // A duplicate id writes nothing.
    let other = client("web", None, "{}", NOW + 1);
    assert!(!store.add_client(&other).await.expect("add again"));
    assert_eq!(
        store.client("web").await.expect("client"),
        Some(web.clone())
    );
    // Byte order, whatever the database's collation: upper case before lower, '-' before
    // letters.
    for id in ["a-app", "Z", "B-app", "ab"] {
        let row = client(id, None, "{}", NOW);
        assert!(store.add_client(&row).await.expect("add"));
    }
    assert_eq!(
        ids(&store.clients().await.expect("clients")),
        ["B-app", "Z", "a-app", "ab", "web"]
    );
    // An update replaces the secret, the registration and `updated`, and keeps `created`.
    let mut changed = client("web", None, r#"{"jwks":{}}"#, NOW + 50);
    changed.created = NOW + 999;
    assert!(store.update_client(&changed).await.expect("update"));
    assert_eq!(
        store.client("web").await.expect("client"),
        Some(ClientRow {
            id: "web".into(),
            secret: None,
            registration: r#"{"jwks":{}}"#.into(),
            created: NOW,
            updated: NOW + 50,
        })
    );
    assert!(!store
        .update_client(&client("nobody", None, "{}", NOW))
        .await
        .expect("update absent"));
    assert_eq!(store.client("nobody").await.expect("client"), None);
    assert!(store.remove_client("Z").await.expect("remove"));
    assert!(!store.remove_client("Z").await.expect("remove again"));
    assert_eq!(
        ids(&store.clients().await.expect("clients")),
        ["B-app", "a-app", "ab", "web"]
    );
    // A second store on the same database reads the same.
    let second = db.open().await;
    assert_eq!(
        second.clients().await.expect("clients"),
        store.clients().await.expect("clients")
    );
}

async fn the_clients_version_counts_only_writes_that_changed_something(db: &Db) {
    let store = db.open().await;
    let version = || async { store.clients_version().await.expect("version") };
    assert_eq!(version().await, 0);
    let web = client("web", None, "{}", NOW);
    assert!(store.add_client(&web).await.expect("add"));
    assert_eq!(version().await, 1);
    assert!(!store.add_client(&web).await.expect("add again"));
    assert_eq!(version().await, 1, "a failed add counts nothing");
    assert!(store.update_client(&web).await.expect("update"));
    assert_eq!(version().await, 2);
    let nobody = client("nobody", None, "{}", NOW);
    assert!(!store.update_client(&nobody).await.expect("update absent"));
    assert_eq!(version().await, 2, "a failed update counts nothing");
    assert!(store.remove_client("web").await.expect("remove"));
    assert_eq!(version().await, 3);
    assert!(!store.remove_client("web").await.expect("remove again"));
    assert_eq!(version().await, 3, "a failed remove counts nothing");
    // Another store on the database (another daemon) sees the same counter.
    let second = db.open().await;
    assert_eq!(second.clients_version().await.expect("version"), 3);
    assert!(second.add_client(&web).await.expect("add"));
    assert_eq!(version().await, 4);
    // Revocations have their own sequence.
    store.revoke(&jti("i", 1, NOW), NOW).await.expect("revoke");
    assert_eq!(version().await, 4);
}

async fn a_client_write_wakes_changed(db: &Db) {
    let store = db.open().await;
    let web = client("web", None, "{}", NOW);
    // A future does nothing until awaited: each write runs after its waiter is waiting.
    wakes(&store, store.add_client(&web)).await;
    wakes(&store, store.update_client(&web)).await;
    wakes(&store, store.remove_client("web")).await;
}

/// Runs `write` (a client write that changes something) while a follower waits on `changed`.
async fn wakes(store: &Store, write: impl Future<Output = Result<bool, StoreError>>) {
    // Swallows a leftover permit (the previous write's), if any.
    let _ = tokio::time::timeout(Duration::from_millis(50), store.changed()).await;
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move { store.changed().await })
    };
    assert!(write.await.expect("client write"));
    tokio::time::timeout(Duration::from_secs(1), waiter)
        .await
        .expect("woken by its own client write")
        .expect("waiter");
}

async fn remember_once_is_true_once_and_another_store_sees_the_record(db: &Db) {
    let (a, b) = (db.open().await, db.open().await);
    assert!(a
        .remember_once("web", "j-1", NOW + 60)
        .await
        .expect("first"));
    assert!(!a
        .remember_once("web", "j-1", NOW + 60)
        .await
        .expect("replay"));
    // Another daemon on the same database: the same record.
    assert!(!b
        .remember_once("web", "j-1", NOW + 60)
        .await
        .expect("replay elsewhere"));
    // The pair is the key: the same jti of another client, another jti of the same client.
    assert!(b
        .remember_once("app", "j-1", NOW + 60)
        .await
        .expect("other client"));
    assert!(b
        .remember_once("web", "j-2", NOW + 60)
        .await
        .expect("other jti"));
    assert!(!a
        .remember_once("app", "j-1", NOW + 60)
        .await
        .expect("replay"));
    assert_eq!(
        db.sql("SELECT COUNT(*) FROM tessera_assertions").await,
        Some(3)
    );
}

async fn concurrent_remember_once_of_one_pair_is_true_once(db: &Db) {
    let (a, b) = (db.open().await, db.open().await);
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(8));
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let store = if n % 2 == 0 { a.clone() } else { b.clone() };
            let start = std::sync::Arc::clone(&start);
            tokio::spawn(async move {
                start.wait().await;
                store
                    .remember_once("web", "j-once", NOW + 60)
                    .await
                    .expect("remember")
            })
        })
        .collect();
    let mut first = 0;
    for task in tasks {
        if task.await.expect("task") {
            first += 1;
        }
    }
    assert_eq!(first, 1, "exactly one use of the assertion is the first");
}

async fn a_proof_is_remembered_once_across_stores_and_purged_after_exp(db: &Db) {
    let (a, b) = (db.open().await, db.open().await);
    assert!(a.remember_proof(&[7; 32], NOW + 60).await.expect("first"));
    assert!(!a.remember_proof(&[7; 32], NOW + 60).await.expect("replay"));
    // Another daemon on the same database sees the record.
    assert!(!b
        .remember_proof(&[7; 32], NOW + 60)
        .await
        .expect("elsewhere"));
    assert!(b.remember_proof(&[8; 32], NOW - 1).await.expect("other"));
    // Concurrent first uses of one proof at both: one of them is the first.
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let store = if n % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { store.remember_proof(&[9; 32], NOW + 60).await })
        })
        .collect();
    let mut first = 0;
    for task in tasks {
        first += usize::from(task.await.expect("task").expect("remember"));
    }
    assert_eq!(first, 1, "exactly one use of the proof is the first");
    assert_eq!(a.purge(NOW).await.expect("purge"), 1);
    // Purged: forgotten (callers refuse proofs that old before asking); the live ones stay.
    assert!(a.remember_proof(&[8; 32], NOW - 1).await.expect("purged"));
    assert!(!b.remember_proof(&[7; 32], NOW + 60).await.expect("kept"));
    assert_eq!(db.sql("SELECT COUNT(*) FROM tessera_proofs").await, Some(3));
}

async fn opaque_tokens_round_trip_and_a_duplicate_conflicts(db: &Db) {
    let store = db.open().await;
    let row = opaque(0x11, NOW + 60);
    assert_eq!(store.opaque(&row.hash).await.expect("absent"), None);
    store.put_opaque(&row).await.expect("put");
    assert_eq!(
        store.opaque(&row.hash).await.expect("get"),
        Some(row.clone())
    );
    assert_eq!(store.opaque(&[0x12; 32]).await.expect("other"), None);
    // The hash is stored as its 32 bytes.
    assert_eq!(
        db.sql("SELECT CAST(length(hash) AS BIGINT) FROM tessera_opaque")
            .await,
        Some(32)
    );
    let mut again = opaque(0x11, NOW + 600);
    again.claims = "{}".into();
    match store.put_opaque(&again).await {
        Err(StoreError::Conflict(m)) => assert!(m.contains("hash"), "{m}"),
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(
        store.opaque(&row.hash).await.expect("get"),
        Some(row),
        "the duplicate wrote nothing"
    );
    let second = db.open().await;
    assert!(second.opaque(&[0x11; 32]).await.expect("get").is_some());
}

async fn purge_removes_expired_assertions_and_opaque_tokens_and_keeps_live_ones(db: &Db) {
    let store = db.open().await;
    for revocation in every_kind() {
        store.revoke(&revocation, NOW).await.expect("revoke");
    }
    assert!(store
        .remember_once("web", "old", NOW - 1)
        .await
        .expect("old"));
    assert!(store.remember_once("web", "edge", NOW).await.expect("edge"));
    assert!(store
        .remember_once("web", "live", NOW + 60)
        .await
        .expect("live"));
    for row in [opaque(1, NOW - 1), opaque(2, NOW), opaque(3, NOW + 60)] {
        store.put_opaque(&row).await.expect("put");
    }
    // Before NOW: the token revocation (NOW - 10), one pair, one opaque token; what expires
    // at NOW itself is kept.
    assert_eq!(store.purge(NOW).await.expect("purge"), 3);
    assert_eq!(store.purge(NOW).await.expect("purge again"), 0);
    assert!(!store.remember_once("web", "edge", NOW).await.expect("edge"));
    assert!(!store
        .remember_once("web", "live", NOW + 60)
        .await
        .expect("live"));
    assert_eq!(store.opaque(&[1; 32]).await.expect("get"), None);
    assert_eq!(
        store.opaque(&[2; 32]).await.expect("get"),
        Some(opaque(2, NOW))
    );
    assert_eq!(
        store.opaque(&[3; 32]).await.expect("get"),
        Some(opaque(3, NOW + 60))
    );
    // A purged pair is forgotten (callers refuse an expired assertion before asking).
    assert!(store
        .remember_once("web", "old", NOW - 1)
        .await
        .expect("old"));
    // Later: the jti revocation (NOW + 60) is not yet expired at NOW + 60, nor the live ones.
    assert_eq!(store.purge(NOW + 60).await.expect("purge later"), 3);
    assert_eq!(store.purge(NOW + 61).await.expect("purge last"), 3);
    assert_eq!(
        db.sql("SELECT COUNT(*) FROM tessera_assertions").await,
        Some(0)
    );
    assert_eq!(db.sql("SELECT COUNT(*) FROM tessera_opaque").await, Some(0));
    assert_eq!(
        store.since(0, 100).await.expect("since").len(),
        2,
        "records by subject and client never expire"
    );
}

/// What a version-1 binary created, verbatim: the migrations table and migration 1.
const VERSION_1: [&str; 6] = [
    "CREATE TABLE IF NOT EXISTS tessera_migrations (version BIGINT PRIMARY KEY, applied BIGINT NOT NULL)",
    "CREATE TABLE tessera_sequences (name TEXT PRIMARY KEY, value BIGINT NOT NULL)",
    "INSERT INTO tessera_sequences (name, value) VALUES ('revocations', 0)",
    "CREATE TABLE tessera_revocations (
        seq BIGINT PRIMARY KEY,
        kind TEXT NOT NULL,
        iss TEXT NOT NULL DEFAULT '',
        subject TEXT NOT NULL,
        at BIGINT NOT NULL,
        expires BIGINT NULL,
        created BIGINT NOT NULL
    )",
    "CREATE INDEX tessera_revocations_expires ON tessera_revocations (expires)",
    "INSERT INTO tessera_migrations (version, applied) VALUES (1, 1700000000)",
];

async fn a_version_1_store_migrates_and_keeps_its_records(db: &Db) {
    if let Db::Sqlite(dir) = db {
        std::fs::create_dir_all(dir.join("nested")).expect("the store's folder");
    }
    for statement in VERSION_1 {
        db.sql(statement).await;
    }
    // Two records, as version 1 wrote them (a token hash as hex), and its sequence.
    db.sql(
        "INSERT INTO tessera_revocations (seq, kind, iss, subject, at, expires, created) \
         VALUES (1, 'jti', 'https://a', 'j-1', 1800000060, 1800000060, 1700000001)",
    )
    .await;
    let hex = "5a".repeat(32);
    db.sql(&format!(
        "INSERT INTO tessera_revocations (seq, kind, iss, subject, at, expires, created) \
         VALUES (2, 'token', '', '{hex}', 1799999990, 1799999990, 1700000002)"
    ))
    .await;
    db.sql("UPDATE tessera_sequences SET value = 2 WHERE name = 'revocations'")
        .await;

    let store = db.open().await;
    assert_eq!(store.schema_version(), VERSION);
    assert_eq!(
        db.sql("SELECT COUNT(*) FROM tessera_migrations").await,
        Some(VERSION)
    );
    assert_eq!(
        db.sql("SELECT applied FROM tessera_migrations WHERE version = 1")
            .await,
        Some(1_700_000_000),
        "migration 1 is not run again"
    );
    for later in 2..=VERSION {
        assert_eq!(
            db.sql(&format!(
                "SELECT applied FROM tessera_migrations WHERE version = {later}"
            ))
            .await,
            Some(NOW)
        );
    }
    let records = store.since(0, 100).await.expect("since");
    assert_eq!(seqs(&records), [1, 2]);
    assert_eq!(
        records
            .iter()
            .map(|r| r.revocation.clone())
            .collect::<Vec<_>>(),
        [
            Revocation::Jti {
                iss: "https://a".into(),
                jti: "j-1".into(),
                exp: NOW + 60,
            },
            Revocation::Token {
                sha256: [0x5a; 32],
                exp: NOW - 10,
            },
        ]
    );
    assert_eq!(records[1].created, 1_700_000_002);
    let next = store.revoke(&jti("i", 3, NOW), NOW).await.expect("revoke");
    assert_eq!(next.seq, 3, "the sequence goes on where version 1 left it");
    // What version 2 added works from its start.
    assert_eq!(store.clients_version().await.expect("version"), 0);
    assert!(store
        .add_client(&client("web", None, "{}", NOW))
        .await
        .expect("add"));
    assert_eq!(store.clients_version().await.expect("version"), 1);
    assert!(store
        .remember_once("web", "j", NOW + 60)
        .await
        .expect("remember"));
    store.put_opaque(&opaque(9, NOW + 60)).await.expect("put");
    // And what version 3 added.
    assert!(store
        .remember_proof(&[3; 32], NOW + 60)
        .await
        .expect("remember proof"));
    drop(store);
    let store = Store::open(&db.config(), NOW + 100).await.expect("reopen");
    assert_eq!(
        db.sql("SELECT COUNT(*) FROM tessera_migrations").await,
        Some(VERSION),
        "no migration is run again"
    );
    assert_eq!(ids(&store.clients().await.expect("clients")), ["web"]);
}

// PostgreSQL alone: other processes' writes are heard, and the server may go away.

#[tokio::test(flavor = "multi_thread")]
async fn postgres_a_client_write_wakes_another_store_within_a_second() {
    let db = Db::postgres();
    bounded(async {
        let (a, b) = (db.open().await, db.open().await);
        // Let b's LISTEN connection come up; it wakes b once when it does.
        let _ = tokio::time::timeout(Duration::from_secs(5), b.changed()).await;
        // Swallows a leftover permit, if any.
        let _ = tokio::time::timeout(Duration::from_millis(200), b.changed()).await;
        assert!(a
            .add_client(&client("web", None, "{}", NOW))
            .await
            .expect("add"));
        tokio::time::timeout(Duration::from_secs(1), b.changed())
            .await
            .expect("b woken by a's NOTIFY within 1 s");
        assert_eq!(b.clients_version().await.expect("version"), 1);
        assert_eq!(ids(&b.clients().await.expect("clients")), ["web"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_changed_wakes_another_store_within_a_second() {
    let db = Db::postgres();
    bounded(async {
        let (a, b) = (db.open().await, db.open().await);
        // Let b's LISTEN connection come up; it wakes b once when it does.
        let _ = tokio::time::timeout(Duration::from_secs(5), b.changed()).await;
        // Swallows a leftover permit, if any.
        let _ = tokio::time::timeout(Duration::from_millis(200), b.changed()).await;
        let start = Instant::now();
        a.revoke(&jti("i", 1, NOW), NOW).await.expect("revoke");
        tokio::time::timeout(Duration::from_secs(1), b.changed())
            .await
            .expect("b woken by a's NOTIFY within 1 s");
        eprintln!("NOTIFY reached the other store in {:?}", start.elapsed());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_down_is_unavailable_in_bounded_time_and_the_pool_recovers() {
    let db = Db::postgres();
    bounded(async {
        let store = db.open().await;
        store.revoke(&jti("i", 1, NOW), NOW).await.expect("revoke");
        let Db::Postgres(pg) = &db else {
            unreachable!("Db::postgres makes a PostgreSQL database")
        };
        pg.stop();
        for _ in 0..2 {
            let start = Instant::now();
            match store.since(0, 10).await {
                Err(StoreError::Unavailable(m)) => eprintln!("down: {m}"),
                other => panic!("expected Unavailable, got {other:?}"),
            }
            assert!(
                start.elapsed() < Duration::from_secs(6),
                "{:?}",
                start.elapsed()
            );
            let start = Instant::now();
            assert!(matches!(
                store.revoke(&jti("i", 2, NOW), NOW).await,
                Err(StoreError::Unavailable(_))
            ));
            assert!(
                start.elapsed() < Duration::from_secs(6),
                "{:?}",
                start.elapsed()
            );
        }
        pg.start_again();
        // The same store, not reopened: the pool makes new connections.
        let start = Instant::now();
        let records = loop {
            match store.since(0, 10).await {
                Ok(records) => break records,
                Err(e) => assert!(start.elapsed() < Duration::from_secs(15), "{e}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(seqs(&records), [1], "the failed write left nothing");
        let record = store.revoke(&jti("i", 3, NOW), NOW).await.expect("revoke");
        assert_eq!(record.seq, 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_errors_never_show_the_password() {
    bounded(async {
        let url = "postgres://tessera:hunter2-secret@%2Fnonexistent-tessera/db";
        let err = Store::open(
            &StoreConfig::Postgres {
                url: url.into(),
                pool: 1,
            },
            NOW,
        )
        .await
        .expect_err("no server there");
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let bad = "postgres://tessera:hunter2-secret@%2Fnonexistent-tessera/db?sslmode=sometimes";
        let err = Store::open(
            &StoreConfig::Postgres {
                url: bad.into(),
                pool: 1,
            },
            NOW,
        )
        .await
        .expect_err("not a mode");
        assert!(matches!(err, StoreError::Config(_)), "{err:?}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let err = Store::open(
            &StoreConfig::Postgres {
                url: "host=/tmp".into(),
                pool: 0,
            },
            NOW,
        )
        .await
        .expect_err("no pool");
        assert!(matches!(err, StoreError::Config(_)), "{err:?}");
    })
    .await;
}

/// SQLite alone keeps whatever type a program writes into a column: rows of the new tables
/// that are not what the store wrote.
#[tokio::test(flavor = "multi_thread")]
async fn sqlite_unreadable_client_and_opaque_rows_are_corrupt_and_named() {
    let db = Db::sqlite("unreadable-v2-rows");
    bounded(async {
        let store = db.open().await;
        db.sql(
            "INSERT INTO tessera_clients (id, secret, registration, created, updated) \
             VALUES ('bad', NULL, X'00ff', 1, 1)",
        )
        .await;
        match store.client("bad").await {
            Err(StoreError::Corrupt(m)) => assert!(m.contains("\"bad\""), "{m}"),
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert!(matches!(store.clients().await, Err(StoreError::Corrupt(_))));
        let hash = "ab".repeat(32);
        db.sql(&format!(
            "INSERT INTO tessera_opaque (hash, client_id, claims, exp, created) \
             VALUES (X'{hash}', 'web', X'00', 1, 1)"
        ))
        .await;
        match store.opaque(&[0xab; 32]).await {
            Err(StoreError::Corrupt(m)) => assert!(m.contains(&hash), "{m}"),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_path_that_cannot_be_created_is_a_config_error() {
    let dir = Scratch::new("store-sqlite-bad-path");
    let file = dir.write("a-file", "");
    let err = Store::open(
        &StoreConfig::Sqlite {
            path: file.join("store.sqlite3"),
        },
        NOW,
    )
    .await
    .expect_err("a file is no folder");
    assert!(matches!(err, StoreError::Config(_)), "{err:?}");
}
