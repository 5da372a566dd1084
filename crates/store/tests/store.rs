//! One suite, run against both backends: SQLite in a scratch folder and a throw-away
//! PostgreSQL cluster (testkit's `Postgres`), each case a function over the store config.

use std::time::{Duration, Instant};

use store::{Revocation, Store, StoreConfig, StoreError};
use testkit::{Postgres, Scratch};

const NOW: i64 = 1_800_000_000;

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

async fn round_trip_purge_and_reopen(config: StoreConfig) {
    let store = Store::open(&config, NOW).await.expect("open");
    assert_eq!(store.schema_version(), 1);
    let mut seqs = Vec::new();
    for revocation in every_kind() {
        let record = store.revoke(&revocation, NOW).await.expect("revoke");
        assert_eq!(record.revocation, revocation);
        assert_eq!(record.created, NOW);
        seqs.push(record.seq);
    }
    assert_eq!(seqs, [1, 2, 3, 4]);
    let all = store.since(0, 100).await.expect("since");
    assert_eq!(
        all.iter().map(|r| r.revocation.clone()).collect::<Vec<_>>(),
        every_kind()
    );
    let newer = store.since(2, 1).await.expect("since");
    assert_eq!(newer.len(), 1);
    assert_eq!(newer[0].seq, 3);
    assert_eq!(
        store
            .list(2)
            .await
            .expect("list")
            .iter()
            .map(|r| r.seq)
            .collect::<Vec<_>>(),
        [4, 3]
    );
    // Only the records whose tokens expired before the time go; subject and client stay.
    assert_eq!(store.purge(NOW).await.expect("purge"), 1);
    assert_eq!(store.since(0, 100).await.expect("since").len(), 3);
    drop(store);
    // Reopened: no migration runs twice, the records and the sequence go on.
    let store = Store::open(&config, NOW + 1).await.expect("reopen");
    assert_eq!(store.since(0, 100).await.expect("since").len(), 3);
    let next = store.revoke(&every_kind()[0], NOW).await.expect("revoke");
    assert_eq!(next.seq, 5, "sequence numbers are never reused");
}

/// Two stores on one database writing at once: unique numbers, no gaps, and a reader that
/// follows `seq > last` while they write misses nothing.
async fn concurrent_writers_get_every_number_once(config: StoreConfig) {
    let a = Store::open(&config, NOW).await.expect("open a");
    let b = Store::open(&config, NOW).await.expect("open b");
    let write = |store: Store, name: &'static str| {
        tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..50 {
                let r = Revocation::Jti {
                    iss: name.into(),
                    jti: format!("{i}"),
                    exp: NOW + 60,
                };
                seqs.push(store.revoke(&r, NOW).await.expect("revoke").seq);
            }
            seqs
        })
    };
    let (wa, wb) = (write(a.clone(), "a"), write(b.clone(), "b"));
    let reader = {
        let reader = a.clone();
        tokio::spawn(async move {
            let (mut last, mut seen) = (0, Vec::new());
            let start = Instant::now();
            while seen.len() < 100 && start.elapsed() < Duration::from_secs(30) {
                for r in reader.since(last, 7).await.expect("since") {
                    last = r.seq;
                    seen.push(r.seq);
                }
            }
            seen
        })
    };
    let mut all: Vec<i64> = wa
        .await
        .expect("a")
        .into_iter()
        .chain(wb.await.expect("b"))
        .collect();
    all.sort();
    assert_eq!(all, (1..=100).collect::<Vec<_>>());
    let seen = reader.await.expect("reader");
    assert_eq!(
        seen,
        (1..=100).collect::<Vec<_>>(),
        "the follower skipped or repeated a record"
    );
}

/// `bump` marks the store as migrated to version 999, as a newer binary would.
async fn a_newer_schema_is_refused(
    config: StoreConfig,
    bump: impl std::future::Future<Output = ()>,
) {
    drop(Store::open(&config, NOW).await.expect("open"));
    bump.await;
    match Store::open(&config, NOW).await {
        Err(StoreError::SchemaTooNew {
            found: 999,
            known: 1,
        }) => {}
        other => panic!("{other:?}"),
    }
}

fn sqlite(dir: &Scratch) -> StoreConfig {
    StoreConfig::Sqlite {
        path: dir.join("nested/store.sqlite3"),
    }
}

fn postgres(pg: &Postgres) -> StoreConfig {
    StoreConfig::Postgres {
        url: pg.url(),
        pool: 4,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_suite() {
    let dir = Scratch::new("store-sqlite");
    round_trip_purge_and_reopen(sqlite(&dir)).await;
    let dir = Scratch::new("store-sqlite-concurrent");
    concurrent_writers_get_every_number_once(sqlite(&dir)).await;
    let dir = Scratch::new("store-sqlite-newer");
    let path = dir.join("nested/store.sqlite3");
    a_newer_schema_is_refused(sqlite(&dir), async {
        rusqlite::Connection::open(&path)
            .expect("open")
            .execute(BUMP, [])
            .expect("bump");
    })
    .await;
}

const BUMP: &str = "INSERT INTO tessera_migrations (version, applied) VALUES (999, 0)";

#[tokio::test(flavor = "multi_thread")]
async fn postgres_suite() {
    let pg = Postgres::start();
    round_trip_purge_and_reopen(postgres(&pg)).await;
    let pg = Postgres::start();
    concurrent_writers_get_every_number_once(postgres(&pg)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_wakes_other_stores_and_survives_a_restart() {
    let pg = Postgres::start();
    let config = postgres(&pg);
    let (a, b) = (
        Store::open(&config, NOW).await.expect("a"),
        Store::open(&config, NOW).await.expect("b"),
    );
    // The wake-up after b's LISTEN connected, then one for a's write.
    let _ = tokio::time::timeout(Duration::from_secs(2), b.changed()).await;
    let start = Instant::now();
    a.revoke(&every_kind()[0], NOW).await.expect("revoke");
    tokio::time::timeout(Duration::from_secs(1), b.changed())
        .await
        .expect("b woken by a's NOTIFY within 1 s");
    eprintln!("NOTIFY wake-up: {:?}", start.elapsed());

    pg.stop();
    let start = Instant::now();
    match b.since(0, 10).await {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("{other:?}"),
    }
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "{:?}",
        start.elapsed()
    );
    pg.start_again();
    let start = Instant::now();
    loop {
        match b.since(0, 10).await {
            Ok(records) => {
                assert_eq!(records.len(), 1);
                break;
            }
            Err(e) => assert!(start.elapsed() < Duration::from_secs(15), "{e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_refuses_a_newer_schema() {
    let pg = Postgres::start();
    let url = pg.url();
    a_newer_schema_is_refused(postgres(&pg), async {
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        client.batch_execute(BUMP).await.expect("bump");
    })
    .await;
}
