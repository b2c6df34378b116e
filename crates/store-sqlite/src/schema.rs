//! The on-disk schema: ordered migrations, and decoding of stored rows into the
//! in-memory index at start-up.
//!
//! The schema version is `PRAGMA user_version`: the number of migrations applied.
//! Migrations are append-only; a released entry of [`MIGRATIONS`] is never edited.
//!
//! Every value read back is checked (type, length, range, reason tag), and a value
//! that does not decode yields [`StoreError::Corrupt`] naming the table, the column
//! and the row, so a damaged file stops start-up with a clear message instead of a
//! panic or a silently wrong session.

use std::fmt;
use std::net::IpAddr;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, Row, TransactionBehavior};
use sessionguard_core::token::VerifierHash;
use sessionguard_core::{
    ClientInfo, MemoryIndex, PasswordHash, Reason, Revocation, SessionId, SessionRecord,
    SessionState, StoreError, StoreResult, Timestamp, UserEpoch, UserId,
};

/// The migrations, in order. `user_version` is how many have been applied.
const MIGRATIONS: &[&str] = &[
    // 1: users (with their credential epoch) and sessions.
    "CREATE TABLE users (
         id            TEXT PRIMARY KEY NOT NULL,
         username      TEXT UNIQUE,
         password_hash TEXT,
         epoch         INTEGER NOT NULL,
         bump_reason   INTEGER,
         bump_at       INTEGER
     ) STRICT;
     CREATE TABLE sessions (
         id                BLOB PRIMARY KEY NOT NULL,
         verifier_hash     BLOB NOT NULL,
         user_id           TEXT NOT NULL,
         epoch             INTEGER NOT NULL,
         created_at        INTEGER NOT NULL,
         last_seen_at      INTEGER NOT NULL,
         idle_deadline     INTEGER NOT NULL,
         absolute_deadline INTEGER NOT NULL,
         revoked_reason    INTEGER,
         revoked_at        INTEGER,
         user_agent        TEXT,
         ip                TEXT
     ) STRICT;
     CREATE INDEX sessions_user_id ON sessions(user_id);
     CREATE INDEX sessions_idle_deadline ON sessions(idle_deadline);",
];

/// Brings the schema up to date in one transaction. Fails with
/// [`StoreError::Corrupt`] if the file was written by a newer schema.
pub(crate) fn migrate(conn: &mut Connection) -> StoreResult<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(StoreError::backend)?;
    let version: i64 = tx
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(StoreError::backend)?;
    let applied = usize::try_from(version)
        .map_err(|_| StoreError::Corrupt(format!("schema version {version} is negative")))?;
    if applied > MIGRATIONS.len() {
        return Err(StoreError::Corrupt(format!(
            "schema version {applied} is newer than this build supports ({}); \
             upgrade sessionguard",
            MIGRATIONS.len()
        )));
    }
    if applied == MIGRATIONS.len() {
        return Ok(());
    }
    for (n, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        tx.execute_batch(sql).map_err(StoreError::backend)?;
        tracing::info!(version = n + 1, "applied schema migration");
    }
    tx.pragma_update(None, "user_version", MIGRATIONS.len() as i64)
        .map_err(StoreError::backend)?;
    tx.commit().map_err(StoreError::backend)
}

/// How many rows [`load_index`] restored.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Loaded {
    pub(crate) users: usize,
    pub(crate) sessions: usize,
}

/// Rebuilds `index` from every stored user and session.
pub(crate) fn load_index(conn: &Connection, index: &MemoryIndex) -> StoreResult<Loaded> {
    let mut loaded = Loaded {
        users: 0,
        sessions: 0,
    };

    let mut stmt = conn
        .prepare(
            "SELECT rowid, id, username, password_hash, epoch, bump_reason, bump_at
             FROM users",
        )
        .map_err(StoreError::backend)?;
    let mut rows = stmt.query([]).map_err(StoreError::backend)?;
    while let Some(row) = rows.next().map_err(StoreError::backend)? {
        let c = Cols::new(row, "users")?;
        let id = UserId::new(c.text(1, "id")?).map_err(|p| c.corrupt("id", p))?;
        let credentials = match (c.opt_text(2, "username")?, c.opt_text(3, "password_hash")?) {
            (Some(name), Some(hash)) => Some((name, hash)),
            (None, None) => None,
            (Some(_), None) => return Err(c.corrupt("password_hash", "NULL beside a username")),
            (None, Some(_)) => return Err(c.corrupt("username", "NULL beside a password hash")),
        };
        let epoch = c.epoch(4, "epoch")?;
        let last_bump = c.revocation((5, "bump_reason"), (6, "bump_at"))?;
        index.restore_epoch(&id, UserEpoch { epoch, last_bump });
        if let Some((name, hash)) = credentials {
            index
                .create_user(&id, name, PasswordHash::from_phc(hash.to_owned()))
                .map_err(|e| c.corrupt("username", e))?;
        }
        loaded.users += 1;
    }
    drop(rows);
    drop(stmt);

    let mut stmt = conn
        .prepare(
            "SELECT rowid, id, verifier_hash, user_id, epoch, created_at, last_seen_at,
                    idle_deadline, absolute_deadline, revoked_reason, revoked_at,
                    user_agent, ip
             FROM sessions",
        )
        .map_err(StoreError::backend)?;
    let mut rows = stmt.query([]).map_err(StoreError::backend)?;
    while let Some(row) = rows.next().map_err(StoreError::backend)? {
        let c = Cols::new(row, "sessions")?;
        let state = SessionState {
            id: SessionId::from_bytes(c.blob(1, "id")?),
            verifier_hash: VerifierHash::from_bytes(c.blob(2, "verifier_hash")?),
            user_id: UserId::new(c.text(3, "user_id")?).map_err(|p| c.corrupt("user_id", p))?,
            epoch: c.epoch(4, "epoch")?,
            created_at: Timestamp::from_millis(c.integer(5, "created_at")?),
            last_seen_at: Timestamp::from_millis(c.integer(6, "last_seen_at")?),
            idle_deadline: Timestamp::from_millis(c.integer(7, "idle_deadline")?),
            absolute_deadline: Timestamp::from_millis(c.integer(8, "absolute_deadline")?),
            revoked: c.revocation((9, "revoked_reason"), (10, "revoked_at"))?,
        };
        let user_agent = c.opt_text(11, "user_agent")?;
        let ip = c
            .opt_text(12, "ip")?
            .map(|s| s.parse::<IpAddr>())
            .transpose()
            .map_err(|e| c.corrupt("ip", e))?;
        index.restore_session(SessionRecord {
            state,
            client: ClientInfo::new(user_agent, ip),
        });
        loaded.sessions += 1;
    }
    Ok(loaded)
}

/// One row being decoded: every accessor names `table.column` and the row in the
/// [`StoreError::Corrupt`] it returns.
struct Cols<'r, 's> {
    row: &'r Row<'s>,
    table: &'static str,
    rowid: i64,
}

impl<'r, 's> Cols<'r, 's> {
    /// Column 0 of every query is the rowid, used to point at the bad row.
    fn new(row: &'r Row<'s>, table: &'static str) -> StoreResult<Self> {
        let rowid = match row.get_ref(0).map_err(StoreError::backend)? {
            ValueRef::Integer(i) => i,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "{table}.rowid: expected an integer, found {}",
                    other.data_type()
                )));
            }
        };
        Ok(Cols { row, table, rowid })
    }

    fn corrupt(&self, column: &str, problem: impl fmt::Display) -> StoreError {
        StoreError::Corrupt(format!(
            "{}.{column} (rowid {}): {problem}",
            self.table, self.rowid
        ))
    }

    fn value(&self, idx: usize, column: &str) -> StoreResult<ValueRef<'r>> {
        self.row
            .get_ref(idx)
            .map_err(|e| self.corrupt(column, format_args!("unreadable: {e}")))
    }

    fn mismatch(&self, column: &str, expected: &str, found: ValueRef<'_>) -> StoreError {
        self.corrupt(
            column,
            format_args!("expected {expected}, found {}", found.data_type()),
        )
    }

    fn opt_integer(&self, idx: usize, column: &str) -> StoreResult<Option<i64>> {
        match self.value(idx, column)? {
            ValueRef::Null => Ok(None),
            ValueRef::Integer(i) => Ok(Some(i)),
            other => Err(self.mismatch(column, "an integer", other)),
        }
    }

    fn integer(&self, idx: usize, column: &str) -> StoreResult<i64> {
        self.opt_integer(idx, column)?
            .ok_or_else(|| self.corrupt(column, "unexpected NULL"))
    }

    fn epoch(&self, idx: usize, column: &str) -> StoreResult<u64> {
        let v = self.integer(idx, column)?;
        u64::try_from(v).map_err(|_| self.corrupt(column, format_args!("negative epoch {v}")))
    }

    fn opt_text(&self, idx: usize, column: &str) -> StoreResult<Option<&'r str>> {
        match self.value(idx, column)? {
            ValueRef::Null => Ok(None),
            ValueRef::Text(b) => std::str::from_utf8(b)
                .map(Some)
                .map_err(|_| self.corrupt(column, "text is not valid UTF-8")),
            other => Err(self.mismatch(column, "text", other)),
        }
    }

    fn text(&self, idx: usize, column: &str) -> StoreResult<&'r str> {
        self.opt_text(idx, column)?
            .ok_or_else(|| self.corrupt(column, "unexpected NULL"))
    }

    fn blob<const N: usize>(&self, idx: usize, column: &str) -> StoreResult<[u8; N]> {
        match self.value(idx, column)? {
            ValueRef::Blob(b) => <[u8; N]>::try_from(b).map_err(|_| {
                self.corrupt(
                    column,
                    format_args!("expected {N} bytes, found {}", b.len()),
                )
            }),
            other => Err(self.mismatch(column, "a blob", other)),
        }
    }

    /// A `(reason tag, time)` pair of columns: both NULL, or both set with a known tag.
    fn revocation(
        &self,
        (reason_idx, reason_col): (usize, &str),
        (at_idx, at_col): (usize, &str),
    ) -> StoreResult<Option<Revocation>> {
        match (
            self.opt_integer(reason_idx, reason_col)?,
            self.opt_integer(at_idx, at_col)?,
        ) {
            (None, None) => Ok(None),
            (Some(tag), Some(at)) => {
                let reason = u8::try_from(tag)
                    .ok()
                    .and_then(Reason::from_tag)
                    .ok_or_else(|| {
                        self.corrupt(reason_col, format_args!("unknown reason tag {tag}"))
                    })?;
                Ok(Some(Revocation {
                    reason,
                    at: Timestamp::from_millis(at),
                }))
            }
            (Some(_), None) => Err(self.corrupt(at_col, format_args!("NULL beside {reason_col}"))),
            (None, Some(_)) => Err(self.corrupt(reason_col, format_args!("NULL beside {at_col}"))),
        }
    }
}
