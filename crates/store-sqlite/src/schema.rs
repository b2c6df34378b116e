//! The on-disk schema: ordered migrations, and decoding of stored rows into the
//! in-memory index at start-up.
//!
//! Tables: `users` (the credential epoch with its API-token floor, and credentials
//! if the user was created here), `sessions`, `refresh_tokens` (with the client
//! they were issued to, and their rotation: the successor's id and its verifier
//! sealed under the predecessor's verifier) and `api_tokens`. Tokens are stored as their public id and the hash of
//! their verifier, never as text.
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
    ApiTokenRecord, ClientId, ClientInfo, MemoryIndex, PasswordHash, ProfileName, Reason,
    RefreshState, ReplacedToken, Revocation, Rotation, SealedSecret, SessionId, SessionRecord,
    SessionState, StoreError, StoreResult, Timestamp, TokenId, UserAccess, UserEpoch, UserId,
};

use crate::policy::decode_roles;

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
    // 2: the API-token floor of the credential epoch, refresh tokens, API tokens.
    "ALTER TABLE users ADD COLUMN api_token_floor INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE users ADD COLUMN api_token_bump_reason INTEGER;
     ALTER TABLE users ADD COLUMN api_token_bump_at INTEGER;
     CREATE TABLE refresh_tokens (
         id               BLOB PRIMARY KEY NOT NULL,
         verifier_hash    BLOB NOT NULL,
         session_id       BLOB NOT NULL,
         user_id          TEXT NOT NULL,
         created_at       INTEGER NOT NULL,
         rotated_at       INTEGER,
         successor        BLOB,
         sealed_successor BLOB
     ) STRICT;
     CREATE INDEX refresh_tokens_session_id ON refresh_tokens(session_id);
     CREATE TABLE api_tokens (
         id             BLOB PRIMARY KEY NOT NULL,
         verifier_hash  BLOB NOT NULL,
         user_id        TEXT NOT NULL,
         name           TEXT NOT NULL,
         epoch          INTEGER NOT NULL,
         created_at     INTEGER NOT NULL,
         expires_at     INTEGER NOT NULL,
         last_used_at   INTEGER,
         revoked_reason INTEGER,
         revoked_at     INTEGER
     ) STRICT;
     CREATE INDEX api_tokens_user_id ON api_tokens(user_id);
     CREATE INDEX api_tokens_expires_at ON api_tokens(expires_at);",
    // 3: the bumps before the last one, newest first, so that a session ended by
    // an earlier bump keeps reporting that bump's reason.
    "ALTER TABLE users ADD COLUMN prev1_reason INTEGER;
     ALTER TABLE users ADD COLUMN prev1_at INTEGER;
     ALTER TABLE users ADD COLUMN prev2_reason INTEGER;
     ALTER TABLE users ADD COLUMN prev2_at INTEGER;
     ALTER TABLE users ADD COLUMN prev3_reason INTEGER;
     ALTER TABLE users ADD COLUMN prev3_at INTEGER;",
    // 4: session policies. Sessions follow a profile, carry the instant their
    // token was issued, a step-up deadline, the token the last rotation replaced
    // and, when displaced, the displacing client. Users have a profile, roles and
    // the instant those last changed. The audit log.
    "ALTER TABLE sessions ADD COLUMN profile TEXT;
     ALTER TABLE sessions ADD COLUMN privileges INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE sessions ADD COLUMN token_issued_at INTEGER;
     ALTER TABLE sessions ADD COLUMN elevated_until INTEGER;
     ALTER TABLE sessions ADD COLUMN prev_verifier_hash BLOB;
     ALTER TABLE sessions ADD COLUMN prev_valid_until INTEGER;
     ALTER TABLE sessions ADD COLUMN prev_reason INTEGER;
     ALTER TABLE sessions ADD COLUMN displaced INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE sessions ADD COLUMN displaced_user_agent TEXT;
     ALTER TABLE sessions ADD COLUMN displaced_ip TEXT;
     ALTER TABLE sessions ADD COLUMN csrf_basis BLOB;
     UPDATE sessions SET token_issued_at = created_at;
     ALTER TABLE users ADD COLUMN privileges INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE users ADD COLUMN profile TEXT;
     ALTER TABLE users ADD COLUMN roles TEXT;
     CREATE TABLE events (
         id         INTEGER PRIMARY KEY AUTOINCREMENT,
         at         INTEGER NOT NULL,
         kind       INTEGER NOT NULL,
         user_id    TEXT,
         session_id BLOB,
         user_agent TEXT,
         ip         TEXT,
         reason     INTEGER
     ) STRICT;
     CREATE INDEX events_user_id ON events(user_id, id);
     CREATE INDEX events_at ON events(at);",
    // 5: the client a refresh token was issued to. Rows stored before have none
    // (NULL): such a token binds its successor to the client that uses it first.
    "ALTER TABLE refresh_tokens ADD COLUMN client_id TEXT;",
];

/// The schema version this build writes: the number of migrations.
#[cfg(test)]
pub(crate) const VERSION: usize = MIGRATIONS.len();

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
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Loaded {
    pub(crate) users: usize,
    pub(crate) sessions: usize,
    pub(crate) refresh_tokens: usize,
    pub(crate) api_tokens: usize,
}

/// Rebuilds `index` from every stored user, session, refresh token and API token.
///
/// Users come first, so that each session and API token can be checked against its
/// user's epoch: a record from a later epoch than its user's cannot have been
/// written by this store, and would survive the user's next "sign out everywhere".
pub(crate) fn load_index(conn: &Connection, index: &MemoryIndex) -> StoreResult<Loaded> {
    let mut loaded = Loaded::default();

    for_each_row(
        conn,
        "users",
        "SELECT rowid, id, username, password_hash, epoch, bump_reason, bump_at,
                api_token_floor, api_token_bump_reason, api_token_bump_at,
                prev1_reason, prev1_at, prev2_reason, prev2_at, prev3_reason, prev3_at,
                privileges, profile, roles
         FROM users",
        |c| {
            let id = UserId::new(c.text(1, "id")?).map_err(|p| c.corrupt("id", p))?;
            let credentials = match (c.opt_text(2, "username")?, c.opt_text(3, "password_hash")?) {
                (Some(name), Some(hash)) => Some((name, hash)),
                (None, None) => None,
                (Some(_), None) => {
                    return Err(c.corrupt("password_hash", "NULL beside a username"));
                }
                (None, Some(_)) => {
                    return Err(c.corrupt("username", "NULL beside a password hash"));
                }
            };
            let epoch = c.epoch(4, "epoch")?;
            let last_bump = c.revocation((5, "bump_reason"), (6, "bump_at"))?;
            let api_token_floor = c.epoch(7, "api_token_floor")?;
            let api_token_bump =
                c.revocation((8, "api_token_bump_reason"), (9, "api_token_bump_at"))?;
            let earlier_bumps = [
                c.revocation((10, "prev1_reason"), (11, "prev1_at"))?,
                c.revocation((12, "prev2_reason"), (13, "prev2_at"))?,
                c.revocation((14, "prev3_reason"), (15, "prev3_at"))?,
            ];
            if api_token_floor > epoch {
                return Err(c.corrupt(
                    "api_token_floor",
                    format_args!("{api_token_floor} is above the epoch {epoch}"),
                ));
            }
            // The floor is only ever raised together with its reason. A floor
            // without one would not end the tokens below it, so refuse it.
            match (api_token_floor, api_token_bump) {
                (0, Some(_)) => {
                    return Err(c.corrupt("api_token_bump_reason", "set beside a floor of 0"));
                }
                (1.., None) => {
                    return Err(c.corrupt(
                        "api_token_bump_reason",
                        format_args!("NULL beside a floor of {api_token_floor}"),
                    ));
                }
                _ => {}
            }
            let privileges = c.epoch(16, "privileges")?;
            let profile = c.profile(17, "profile")?;
            let roles = decode_roles(c.opt_text(18, "roles")?);
            let access = UserAccess::new(profile, roles).map_err(|e| c.corrupt("roles", e))?;
            index.restore_epoch(
                &id,
                UserEpoch {
                    epoch,
                    last_bump,
                    earlier_bumps,
                    api_token_floor,
                    api_token_bump,
                    privileges,
                },
            );
            index.restore_access(&id, access);
            if let Some((name, hash)) = credentials {
                // `username` is UNIQUE in the table, so no two rows claim one name.
                index.restore_user(&id, name, PasswordHash::from_phc(hash.to_owned()));
            }
            loaded.users += 1;
            Ok(())
        },
    )?;

    for_each_row(
        conn,
        "sessions",
        "SELECT rowid, id, verifier_hash, user_id, epoch, created_at, last_seen_at,
                idle_deadline, absolute_deadline, revoked_reason, revoked_at,
                user_agent, ip, profile, token_issued_at, elevated_until,
                prev_verifier_hash, prev_valid_until, prev_reason, displaced,
                displaced_user_agent, displaced_ip, csrf_basis, privileges
         FROM sessions",
        |c| {
            let user_id = c.user_id(3, "user_id")?;
            let state = SessionState {
                id: SessionId::from_bytes(c.blob(1, "id")?),
                verifier_hash: VerifierHash::from_bytes(c.blob(2, "verifier_hash")?),
                epoch: c.record_epoch(4, "epoch", index, &user_id)?,
                user_id,
                created_at: c.timestamp(5, "created_at")?,
                last_seen_at: c.timestamp(6, "last_seen_at")?,
                idle_deadline: c.timestamp(7, "idle_deadline")?,
                absolute_deadline: c.timestamp(8, "absolute_deadline")?,
                revoked: c.revocation((9, "revoked_reason"), (10, "revoked_at"))?,
                profile: c.profile(13, "profile")?,
                token_issued_at: c.timestamp(14, "token_issued_at")?,
                elevated_until: c
                    .opt_integer(15, "elevated_until")?
                    .map(Timestamp::from_millis),
                previous: match (
                    c.opt_blob(16, "prev_verifier_hash")?,
                    c.revocation((18, "prev_reason"), (17, "prev_valid_until"))?,
                ) {
                    (None, None) => None,
                    (Some(hash), Some(r)) => Some(ReplacedToken {
                        verifier_hash: VerifierHash::from_bytes(hash),
                        valid_until: r.at,
                        reason: r.reason,
                    }),
                    (None, Some(_)) => {
                        return Err(c.corrupt("prev_verifier_hash", "NULL beside prev_reason"));
                    }
                    (Some(_), None) => {
                        return Err(c.corrupt("prev_reason", "NULL beside prev_verifier_hash"));
                    }
                },
                displaced_by: match c.integer(19, "displaced")? {
                    0 => None,
                    1 => Some(Box::new(ClientInfo::new(
                        c.opt_text(20, "displaced_user_agent")?,
                        c.ip(21, "displaced_ip")?,
                    ))),
                    n => return Err(c.corrupt("displaced", format_args!("{n} is not 0 or 1"))),
                },
                csrf_basis: c.opt_blob(22, "csrf_basis")?.map(VerifierHash::from_bytes),
                privileges: c.epoch(23, "privileges")?,
            };
            let user_agent = c.opt_text(11, "user_agent")?;
            let ip = c.ip(12, "ip")?;
            index.restore_session(SessionRecord {
                state,
                client: ClientInfo::new(user_agent, ip),
            });
            loaded.sessions += 1;
            Ok(())
        },
    )?;

    for_each_row(
        conn,
        "refresh_tokens",
        "SELECT rowid, id, verifier_hash, session_id, user_id, created_at, rotated_at,
                successor, sealed_successor, client_id
         FROM refresh_tokens",
        |c| {
            let rotated = match (
                c.opt_integer(6, "rotated_at")?,
                c.opt_blob(7, "successor")?,
                c.opt_blob(8, "sealed_successor")?,
            ) {
                (None, None, None) => None,
                (Some(at), Some(successor), Some(sealed)) => Some(Rotation {
                    at: Timestamp::from_millis(at),
                    successor: TokenId::from_bytes(successor),
                    sealed_successor: SealedSecret(sealed),
                }),
                (None, _, _) => {
                    return Err(c.corrupt("rotated_at", "NULL beside the successor columns"));
                }
                (Some(_), None, _) => {
                    return Err(c.corrupt("successor", "NULL beside rotated_at"));
                }
                (Some(_), Some(_), None) => {
                    return Err(c.corrupt("sealed_successor", "NULL beside rotated_at"));
                }
            };
            index.restore_refresh(RefreshState {
                id: TokenId::from_bytes(c.blob(1, "id")?),
                verifier_hash: VerifierHash::from_bytes(c.blob(2, "verifier_hash")?),
                session_id: SessionId::from_bytes(c.blob(3, "session_id")?),
                user_id: c.user_id(4, "user_id")?,
                created_at: c.timestamp(5, "created_at")?,
                client_id: c
                    .opt_text(9, "client_id")?
                    .map(|id| ClientId::new(id).map_err(|p| c.corrupt("client_id", p)))
                    .transpose()?,
                rotated,
            });
            loaded.refresh_tokens += 1;
            Ok(())
        },
    )?;

    for_each_row(
        conn,
        "api_tokens",
        "SELECT rowid, id, verifier_hash, user_id, name, epoch, created_at, expires_at,
                last_used_at, revoked_reason, revoked_at
         FROM api_tokens",
        |c| {
            let user_id = c.user_id(3, "user_id")?;
            index.restore_api_token(ApiTokenRecord {
                id: TokenId::from_bytes(c.blob(1, "id")?),
                verifier_hash: VerifierHash::from_bytes(c.blob(2, "verifier_hash")?),
                name: c.text(4, "name")?.to_owned(),
                epoch: c.record_epoch(5, "epoch", index, &user_id)?,
                user_id,
                created_at: c.timestamp(6, "created_at")?,
                expires_at: c.timestamp(7, "expires_at")?,
                last_used_at: c
                    .opt_integer(8, "last_used_at")?
                    .map(Timestamp::from_millis),
                revoked: c.revocation((9, "revoked_reason"), (10, "revoked_at"))?,
            });
            loaded.api_tokens += 1;
            Ok(())
        },
    )?;

    Ok(loaded)
}

/// Runs `sql` (whose column 0 is the rowid) and hands each row of `table` to `f`.
fn for_each_row(
    conn: &Connection,
    table: &'static str,
    sql: &str,
    mut f: impl FnMut(&Cols<'_, '_>) -> StoreResult<()>,
) -> StoreResult<()> {
    let mut stmt = conn.prepare(sql).map_err(StoreError::backend)?;
    let mut rows = stmt.query([]).map_err(StoreError::backend)?;
    while let Some(row) = rows.next().map_err(StoreError::backend)? {
        f(&Cols::new(row, table)?)?;
    }
    Ok(())
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

    fn opt_blob<const N: usize>(&self, idx: usize, column: &str) -> StoreResult<Option<[u8; N]>> {
        match self.value(idx, column)? {
            ValueRef::Null => Ok(None),
            ValueRef::Blob(b) => <[u8; N]>::try_from(b).map(Some).map_err(|_| {
                self.corrupt(
                    column,
                    format_args!("expected {N} bytes, found {}", b.len()),
                )
            }),
            other => Err(self.mismatch(column, "a blob", other)),
        }
    }

    fn blob<const N: usize>(&self, idx: usize, column: &str) -> StoreResult<[u8; N]> {
        self.opt_blob(idx, column)?
            .ok_or_else(|| self.corrupt(column, "unexpected NULL"))
    }

    fn timestamp(&self, idx: usize, column: &str) -> StoreResult<Timestamp> {
        self.integer(idx, column).map(Timestamp::from_millis)
    }

    fn ip(&self, idx: usize, column: &str) -> StoreResult<Option<IpAddr>> {
        self.opt_text(idx, column)?
            .map(str::parse::<IpAddr>)
            .transpose()
            .map_err(|e| self.corrupt(column, e))
    }

    fn profile(&self, idx: usize, column: &str) -> StoreResult<Option<ProfileName>> {
        self.opt_text(idx, column)?
            .map(ProfileName::new)
            .transpose()
            .map_err(|e| self.corrupt(column, e))
    }

    fn user_id(&self, idx: usize, column: &str) -> StoreResult<UserId> {
        UserId::new(self.text(idx, column)?).map_err(|p| self.corrupt(column, p))
    }

    /// The epoch a session or API token was created at, which is never later than
    /// its user's current epoch (users are loaded first).
    fn record_epoch(
        &self,
        idx: usize,
        column: &str,
        index: &MemoryIndex,
        user: &UserId,
    ) -> StoreResult<u64> {
        let epoch = self.epoch(idx, column)?;
        let current = index.user_epoch(user).epoch;
        if epoch > current {
            return Err(self.corrupt(
                column,
                format_args!("{epoch} is later than the user's epoch {current}"),
            ));
        }
        Ok(epoch)
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
