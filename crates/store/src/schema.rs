//! The one SQL dialect both backends run: the migrations, the statements, and how a
//! revocation (or an opaque token's hash) maps to a row. Placeholders are `$1, $2, ...`, each used once and in order, which
//! PostgreSQL reads as positions and SQLite numbers in order of appearance: the same text
//! serves both.

use engine::Revocation;

use crate::error::StoreError;
use crate::record::Record;

/// The schema version this binary knows; a store at a higher one is refused.
pub const VERSION: i64 = 3;

/// Created before anything else, inside the migration's transaction.
pub const MIGRATIONS_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS tessera_migrations (version BIGINT PRIMARY KEY, applied BIGINT NOT NULL)";

pub const CURRENT_VERSION: &str = "SELECT COALESCE(MAX(version), 0) FROM tessera_migrations";

pub const RECORD_MIGRATION: &str =
    "INSERT INTO tessera_migrations (version, applied) VALUES ($1, $2)";

/// Each migration's statements, by version (index + 1). A migration, once released, is never
/// changed: stores that ran it do not run it again.
pub const MIGRATIONS: [&[&str]; 3] = [
    &[
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
    ],
    &[
        // `NOT NULL` on the keys: SQLite (for old bugs' sake) lets a non-integer primary key be
        // NULL unless told otherwise.
        "CREATE TABLE tessera_clients (
        id TEXT NOT NULL PRIMARY KEY,
        secret TEXT NULL,
        registration TEXT NOT NULL,
        created BIGINT NOT NULL,
        updated BIGINT NOT NULL
    )",
        "INSERT INTO tessera_sequences (name, value) VALUES ('clients', 0)",
        "CREATE TABLE tessera_assertions (
        client_id TEXT NOT NULL,
        jti TEXT NOT NULL,
        exp BIGINT NOT NULL,
        PRIMARY KEY (client_id, jti)
    )",
        "CREATE INDEX tessera_assertions_exp ON tessera_assertions (exp)",
        // The hash is raw bytes, BYTEA: PostgreSQL's binary type, and a name SQLite accepts as
        // any other (NUMERIC affinity, which leaves a BLOB as it is). Both clients bind `&[u8]`
        // to it and read it back as `Vec<u8>`, so one text serves both, with no hex to encode.
        "CREATE TABLE tessera_opaque (
        hash BYTEA NOT NULL PRIMARY KEY,
        client_id TEXT NOT NULL,
        claims TEXT NOT NULL,
        exp BIGINT NOT NULL,
        created BIGINT NOT NULL
    )",
        "CREATE INDEX tessera_opaque_exp ON tessera_opaque (exp)",
    ],
    &[
        // DPoP proofs accepted by some daemon of the store, by the SHA-256 of key thumbprint
        // and `jti` (fixed-size, whatever the client chose), until their window has passed.
        "CREATE TABLE tessera_proofs (
        key BYTEA NOT NULL PRIMARY KEY,
        exp BIGINT NOT NULL
    )",
        "CREATE INDEX tessera_proofs_exp ON tessera_proofs (exp)",
    ],
];

/// The migrations a store at schema `current` still needs, each with its version, in order;
/// a store newer than this binary is refused.
pub fn pending(
    current: i64,
) -> Result<impl Iterator<Item = (i64, &'static [&'static str])>, StoreError> {
    if current > VERSION {
        return Err(StoreError::SchemaTooNew {
            found: current,
            known: VERSION,
        });
    }
    Ok(MIGRATIONS
        .iter()
        .enumerate()
        .map(|(i, statements)| (i as i64 + 1, *statements))
        .filter(move |(version, _)| *version > current))
}

/// Takes the next sequence number. The row lock it takes is held until the writing
/// transaction commits, so writers are serialised on it and numbers are given in commit
/// order: a reader that has seen `seq = n` never later finds a record below `n` that it missed
/// (a plain sequence or BIGSERIAL hands out numbers at insert time and lets a later number
/// commit first).
pub const NEXT_SEQ: &str =
    "UPDATE tessera_sequences SET value = value + 1 WHERE name = 'revocations' RETURNING value";

pub const INSERT: &str =
    "INSERT INTO tessera_revocations (seq, kind, iss, subject, at, expires, created) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";

pub const SINCE: &str =
    "SELECT seq, kind, iss, subject, at, expires, created FROM tessera_revocations \
     WHERE seq > $1 ORDER BY seq LIMIT $2";

pub const LIST: &str =
    "SELECT seq, kind, iss, subject, at, expires, created FROM tessera_revocations \
     ORDER BY seq DESC LIMIT $1";

/// What `purge` deletes, each statement given `$1 = before`: expired revocations (those by
/// subject or client never expire), replay records (assertions, proofs) and opaque tokens.
pub const PURGE: [&str; 4] = [
    "DELETE FROM tessera_revocations WHERE expires IS NOT NULL AND expires < $1",
    "DELETE FROM tessera_assertions WHERE exp < $1",
    "DELETE FROM tessera_opaque WHERE exp < $1",
    "DELETE FROM tessera_proofs WHERE exp < $1",
];

/// Counts a change to the clients, in the writing transaction; taken before the write, its row
/// lock (held until the commit) makes client writers run one at a time. Affects no row only
/// when the `'clients'` row is missing.
pub const BUMP_CLIENTS: &str =
    "UPDATE tessera_sequences SET value = value + 1 WHERE name = 'clients'";

pub const CLIENTS_VERSION: &str = "SELECT value FROM tessera_sequences WHERE name = 'clients'";

/// Affects no row when the id is taken.
pub const ADD_CLIENT: &str =
    "INSERT INTO tessera_clients (id, secret, registration, created, updated) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING";

/// `created` is kept. Affects no row when there is no such id.
pub const UPDATE_CLIENT: &str =
    "UPDATE tessera_clients SET secret = $1, registration = $2, updated = $3 WHERE id = $4";

pub const REMOVE_CLIENT: &str = "DELETE FROM tessera_clients WHERE id = $1";

pub const CLIENT: &str =
    "SELECT id, secret, registration, created, updated FROM tessera_clients WHERE id = $1";

/// In no order: PostgreSQL's `ORDER BY` on text follows the database's collation, SQLite's
/// the bytes; the caller sorts by id, in byte order, the same on both.
pub const CLIENTS: &str = "SELECT id, secret, registration, created, updated FROM tessera_clients";

/// Affects one row when the pair is new, none when it was recorded before: atomic on both
/// engines, between processes too (the primary key decides).
pub const REMEMBER_ONCE: &str =
    "INSERT INTO tessera_assertions (client_id, jti, exp) VALUES ($1, $2, $3) \
     ON CONFLICT DO NOTHING";

/// Affects one row when the proof is new, none when some daemon recorded it before. A record
/// past its `exp` that [`PURGE`] has not yet deleted still counts: the caller refuses proofs
/// that old before asking.
pub const REMEMBER_PROOF: &str =
    "INSERT INTO tessera_proofs (key, exp) VALUES ($1, $2) ON CONFLICT DO NOTHING";

/// Affects no row when the hash is taken.
pub const PUT_OPAQUE: &str = "INSERT INTO tessera_opaque (hash, client_id, claims, exp, created) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING";

pub const OPAQUE: &str =
    "SELECT hash, client_id, claims, exp, created FROM tessera_opaque WHERE hash = $1";

/// PostgreSQL's channel for "look": the notification carries no data.
pub const CHANNEL: &str = "tessera_revocations";

/// A revocation as the columns it is stored in.
pub struct Row {
    pub kind: &'static str,
    pub iss: String,
    pub subject: String,
    pub at: i64,
    pub expires: Option<i64>,
}

impl Row {
    pub fn of(revocation: &Revocation) -> Row {
        let (iss, subject, at) = match revocation {
            Revocation::Jti { iss, jti, exp } => (iss.clone(), jti.clone(), *exp),
            Revocation::Subject { iss, sub, before } => (iss.clone(), sub.clone(), *before),
            Revocation::Client { client_id, before } => (String::new(), client_id.clone(), *before),
            Revocation::Token { sha256, exp } => {
                (String::new(), engine::revoked::sha256_hex(sha256), *exp)
            }
        };
        Row {
            kind: revocation.kind(),
            iss,
            subject,
            at,
            expires: revocation.expires(),
        }
    }
}

/// A row read back, checked: written by something else, it may not be a record.
pub fn record(
    seq: i64,
    kind: &str,
    iss: String,
    subject: String,
    at: i64,
    created: i64,
) -> Result<Record, StoreError> {
    let revocation = match kind {
        "jti" => Revocation::Jti {
            iss,
            jti: subject,
            exp: at,
        },
        "subject" => Revocation::Subject {
            iss,
            sub: subject,
            before: at,
        },
        "client" => Revocation::Client {
            client_id: subject,
            before: at,
        },
        "token" => Revocation::Token {
            sha256: engine::revoked::sha256_from_hex(&subject).ok_or_else(|| {
                StoreError::Corrupt(format!("seq {seq}: token hash is not 64 hex digits"))
            })?,
            exp: at,
        },
        other => {
            return Err(StoreError::Corrupt(format!(
                "seq {seq}: unknown kind {other:?}"
            )))
        }
    };
    Ok(Record {
        seq,
        created,
        revocation,
    })
}

/// The hash column of an opaque token's row, checked: written by something else, it may not
/// be 32 bytes. `wanted` is the hash it was looked up by, to name the row.
pub fn opaque_hash(wanted: &[u8; 32], stored: Vec<u8>) -> Result<[u8; 32], StoreError> {
    let length = stored.len();
    <[u8; 32]>::try_from(stored).map_err(|_| {
        StoreError::Corrupt(format!(
            "opaque token {}: hash is {length} bytes, not 32",
            engine::revoked::sha256_hex(wanted)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_maps_to_a_row_and_back() {
        let all = [
            Revocation::Jti {
                iss: "i".into(),
                jti: "j".into(),
                exp: 5,
            },
            Revocation::Subject {
                iss: "i".into(),
                sub: "s".into(),
                before: 6,
            },
            Revocation::Client {
                client_id: "c".into(),
                before: 7,
            },
            Revocation::Token {
                sha256: [0xab; 32],
                exp: 8,
            },
        ];
        for revocation in all {
            let row = Row::of(&revocation);
            let back = record(1, row.kind, row.iss, row.subject, row.at, 9).expect("readable");
            assert_eq!(back.revocation, revocation);
        }
        assert!(matches!(
            record(1, "token", String::new(), "zz".into(), 1, 1),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            record(1, "nope", String::new(), String::new(), 1, 1),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn an_opaque_hash_must_be_32_bytes() {
        let wanted = [7; 32];
        assert_eq!(opaque_hash(&wanted, vec![7; 32]).expect("32 bytes"), wanted);
        match opaque_hash(&wanted, vec![7; 3]) {
            Err(StoreError::Corrupt(m)) => {
                assert!(m.contains(&engine::revoked::sha256_hex(&wanted)), "{m}");
                assert!(m.contains("3 bytes"), "{m}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
}
