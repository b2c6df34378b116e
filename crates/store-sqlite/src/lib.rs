//! # sessionguard-store-sqlite
//!
//! The durable embedded [`Store`] of sessionguard: one SQLite file, owned by one
//! process.
//!
//! **Read path: memory.** A [`MemoryIndex`] holds every user, epoch, session,
//! refresh token and API token. It is rebuilt from the file when the store is
//! opened and is the authoritative read copy afterwards: `load_session` (the
//! validation hot path), `load_refresh`, `load_api_token`, `user_epoch`, the
//! per-user lists, `find_user_by_username` and `get_user` never run SQL and never
//! block on I/O.
//!
//! **Write path: disk first, then memory, under one writer lock.** Every mutation
//! runs on Tokio's blocking pool and takes the single writer, a mutex around the
//! one SQLite connection. Holding it, the mutation decides its outcome from the
//! index (conflict, epoch moved, already revoked, already rotated...) — the index
//! is exact because every write goes through this lock — writes exactly that
//! outcome in one SQL transaction, commits, and only then applies the same change
//! to the index. An `Ok` therefore means the change is on disk, readers never see a
//! change that is not durable, and a failed transaction leaves the index untouched.
//! The compare-and-set of [`Store::rotate_refresh`] is this pattern too: of
//! simultaneous rotations the first to take the writer finds the token unrotated
//! and commits the rotation together with the successor; the others find it
//! rotated and return that rotation without writing.
//!
//! **Durability.** The file is in WAL mode with `synchronous=FULL`, so a commit is
//! fsynced before it is acknowledged: an acknowledged revocation or rotation
//! survives `kill -9` and power loss. The connection runs in `locking_mode=EXCLUSIVE`
//! and takes its lock when the store opens, so a second process opening the same
//! file (a second server on the same data directory, which would serve from a stale
//! cache) fails at once with [`DatabaseInUse`]. The file is created with mode 0600
//! (its directory, if created, 0700). It holds the ids and verifier hashes of
//! tokens, never their text, and for a rotated refresh token the successor's
//! verifier sealed under the predecessor's verifier, which the file does not hold.
//!
//! **Touches are buffered.** Recording activity happens on almost every request, so
//! [`Store::touch_session`] and [`Store::touch_api_token`] only update the index
//! (which enforces "never revive, never shorten", "never backwards") and note the
//! new value in a pending map. A background thread writes the pending maps in one
//! transaction about once a second; [`SqliteStore::flush`] and dropping the last
//! handle write them too. Losing buffered touches in a crash only gives sessions an
//! earlier idle deadline after restart — they end sooner, which is the safe
//! direction — and API tokens an older `last_used_at`.
//!
//! **Throttle records stay in memory.** The password throttle's counts and
//! known devices ([`Store::throttle_attempt`]) live in a [`ThrottleTable`] only,
//! never in the file: a restart gives clients their free attempts back and
//! makes known devices count by address again until they next sign in, which
//! the contract allows.

mod policy;
mod schema;

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, Transaction, TransactionBehavior, params};
use sessionguard_core::token::VerifierHash;
use sessionguard_core::{
    ApiTokenRecord, AuditEvent, ClientId, EARLIER_BUMPS, EpochBump, EventQuery, MemoryIndex,
    PasswordHash, ProfileName, Purged, Reason, RefreshState, Revocation, Rotation, SessionId,
    SessionLimit, SessionRecord, SessionState, Store, StoreError, StoreResult, Timestamp, TokenId,
    TokenRotation, UserAccess, UserEpoch, UserId, UserRecord,
};
use sessionguard_core::{Attempt, Settle, ThrottleKey, ThrottleLimit, ThrottleTable};

/// How often the background thread writes buffered touches.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// How long `open` waits for another connection's lock before reporting
/// [`DatabaseInUse`]. Only `open` can meet a foreign lock: afterwards this process
/// holds the file exclusively.
const BUSY_TIMEOUT: Duration = Duration::from_millis(200);

/// A [`Store`] on an SQLite file, with its read path in memory. Clones share the
/// same database; the file is closed (after writing buffered touches) when the
/// last clone is dropped.
#[derive(Clone)]
pub struct SqliteStore {
    shared: Arc<Shared>,
}

/// What the handles share. Its `Drop` stops the flusher thread before the
/// connection can close, so dropping the last handle releases the file at once.
struct Shared {
    inner: Arc<Inner>,
    flusher: Option<Flusher>,
}

/// The background touch writer: dropping `stop` disconnects its channel, which
/// ends the thread.
struct Flusher {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

/// The store proper, used by the handles, the blocking pool and the flusher.
///
/// Lock order: `writer`, then `touches`; the index's own lock is innermost.
struct Inner {
    path: PathBuf,
    index: MemoryIndex,
    /// The single writer. Every SQL statement after `open` runs under it.
    writer: Mutex<Connection>,
    /// Touches applied to the index but not yet written to disk.
    touches: Mutex<Pending>,
    /// The password throttle's records: in memory only (see the crate docs).
    throttle: ThrottleTable,
}

/// Touches and API-token uses applied to the index but not yet written to disk.
#[derive(Debug, Default)]
struct Pending {
    sessions: HashMap<SessionId, Touch>,
    /// The `last_used_at` the index holds for each API token.
    api_tokens: HashMap<TokenId, Timestamp>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.sessions.is_empty() && self.api_tokens.is_empty()
    }
}

/// A buffered touch: the values the index holds for the session.
#[derive(Debug, Clone, Copy)]
struct Touch {
    last_seen_at: Timestamp,
    idle_deadline: Timestamp,
}

/// The database file is locked by another connection: most likely another
/// sessionguard server using the same data directory. Returned by
/// [`SqliteStore::open`] as the source of a [`StoreError::Backend`].
#[derive(Debug)]
pub struct DatabaseInUse {
    path: PathBuf,
}

impl fmt::Display for DatabaseInUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the database {} is in use by another process \
             (is another sessionguard server running on the same data directory?)",
            self.path.display()
        )
    }
}

impl DatabaseInUse {
    /// The database file that is in use.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl StdError for DatabaseInUse {}

/// A failure to set up the database file, with the path in its message.
#[derive(Debug)]
struct OpenError(String);

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for OpenError {}

impl SqliteStore {
    /// Opens (creating if needed, with its parent directory) the database file at
    /// `path`, migrates the schema, loads the in-memory index and starts the
    /// background touch flusher. Blocking; call it at start-up.
    ///
    /// Fails with [`StoreError::Backend`] whose source is [`DatabaseInUse`] if
    /// another process (or another open store in this process) holds the file, and
    /// with [`StoreError::Corrupt`] naming the table and column if a stored row
    /// cannot be decoded.
    pub fn open(path: impl AsRef<Path>) -> StoreResult<SqliteStore> {
        let path = path.as_ref().to_path_buf();
        prepare_file(&path).map_err(|e| {
            StoreError::backend(OpenError(format!(
                "cannot create or open the database {}: {e}",
                path.display()
            )))
        })?;
        let mut conn = connect(&path)?;
        schema::migrate(&mut conn)?;
        let index = MemoryIndex::new();
        let loaded = schema::load_index(&conn, &index)?;
        tracing::info!(
            path = %path.display(),
            users = loaded.users,
            sessions = loaded.sessions,
            refresh_tokens = loaded.refresh_tokens,
            api_tokens = loaded.api_tokens,
            "opened the session store"
        );

        let inner = Arc::new(Inner {
            path,
            index,
            writer: Mutex::new(conn),
            touches: Mutex::new(Pending::default()),
            throttle: ThrottleTable::new(),
        });
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("sessionguard-touch-flusher".into())
            .spawn({
                let inner = Arc::clone(&inner);
                move || flush_loop(&inner, &stopped)
            })
            .map_err(StoreError::backend)?;
        Ok(SqliteStore {
            shared: Arc::new(Shared {
                inner,
                flusher: Some(Flusher { stop, thread }),
            }),
        })
    }

    /// Writes buffered session touches and API-token uses to disk now. Blocking.
    pub fn flush(&self) -> StoreResult<()> {
        self.shared.inner.flush()
    }

    fn inner(&self) -> &Inner {
        &self.shared.inner
    }

    /// Runs a mutation on the blocking pool (it takes the writer lock and fsyncs).
    async fn write<T, F>(&self, op: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> StoreResult<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.shared.inner);
        match tokio::task::spawn_blocking(move || op(&inner)).await {
            Ok(result) => result,
            Err(e) => {
                tracing::error!(error = %e, "a session store write task failed");
                Err(StoreError::backend(e))
            }
        }
    }
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner().path)
            .finish_non_exhaustive()
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(Flusher { stop, thread }) = self.flusher.take() {
            // Disconnecting the channel wakes the thread, which then returns.
            drop(stop);
            if thread.join().is_err() {
                tracing::error!("the touch flusher thread panicked");
            }
        }
        if let Err(e) = self.inner.flush() {
            tracing::warn!(
                error = %chain(&e),
                "could not write buffered touches on close; those sessions will end earlier \
                 and those API tokens show an older last use"
            );
        }
    }
}

fn flush_loop(inner: &Inner, stop: &mpsc::Receiver<()>) {
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(FLUSH_INTERVAL) {
        if let Err(e) = inner.flush() {
            // The batch was put back; the next round retries it.
            tracing::warn!(error = %chain(&e), "could not write buffered touches");
        }
    }
}

/// An error with its sources, for logs.
fn chain(e: &StoreError) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Creates the parent directory (0700) and the file (0600) if missing, and makes
/// the file 0600 in any case.
fn prepare_file(path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// Opens the connection with the durability settings and takes the exclusive lock.
fn connect(path: &Path) -> StoreResult<Connection> {
    // Busy or locked while setting up means another connection holds the file.
    let fail = |e: rusqlite::Error| match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            StoreError::backend(DatabaseInUse {
                path: path.to_path_buf(),
            })
        }
        _ => StoreError::backend(e),
    };
    let conn = Connection::open(path).map_err(fail)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(fail)?;
    // Exclusive before WAL: the WAL index then lives in process memory (no -shm
    // file), and the file lock, once taken, is held until the connection closes.
    conn.pragma_update(None, "locking_mode", "EXCLUSIVE")
        .map_err(fail)?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .map_err(fail)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::backend(OpenError(format!(
            "the database {} refused WAL mode (journal_mode is {mode})",
            path.display()
        ))));
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(fail)?;
    // Entering WAL mode already locks the file; a write transaction makes sure the
    // lock is taken now, not at the first write, so a second server fails here
    // instead of serving from a stale cache.
    conn.execute_batch("BEGIN EXCLUSIVE; COMMIT;")
        .map_err(fail)?;
    Ok(conn)
}

/// Runs `f` in one immediate transaction and commits it (an fsync, with
/// `synchronous=FULL`). On any error the transaction is rolled back.
fn write_tx(
    conn: &mut Connection,
    f: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<()>,
) -> StoreResult<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(StoreError::backend)?;
    f(&tx).map_err(StoreError::backend)?;
    tx.commit().map_err(StoreError::backend)
}

/// An epoch as SQLite's signed 64-bit integer.
fn epoch_sql(epoch: u64) -> StoreResult<i64> {
    i64::try_from(epoch).map_err(StoreError::backend)
}

impl Inner {
    fn writer(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the writer cannot leave a half-applied change: an
        // uncommitted transaction rolls back when dropped, and the index is changed
        // only after a commit, by steps that cannot fail.
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn touches(&self) -> MutexGuard<'_, Pending> {
        // The maps are always consistent: they are only inserted into, drained or
        // pruned, each by a single call.
        self.touches.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn insert_session(
        &self,
        record: SessionRecord,
        limit: SessionLimit,
    ) -> StoreResult<Vec<SessionId>> {
        let mut conn = self.writer();
        // Conflict, epoch and the limit, decided from the index: exact under the
        // writer lock, so two logins of one user are counted one after the other.
        let displaced = self.index.plan_insert(&record, limit)?;
        let ended: Vec<SessionState> = displaced
            .iter()
            .filter_map(|id| self.index.load_session(id).map(|(s, _)| s))
            .collect();
        let s = &record.state;
        let epoch = epoch_sql(s.epoch)?;
        let privileges = epoch_sql(s.privileges)?;
        write_tx(&mut conn, |tx| {
            tx.prepare_cached(
                "INSERT INTO sessions (id, verifier_hash, user_id, epoch, created_at,
                     last_seen_at, idle_deadline, absolute_deadline, revoked_reason,
                     revoked_at, user_agent, ip, profile, token_issued_at, elevated_until,
                     prev_verifier_hash, prev_valid_until, prev_reason, displaced,
                     displaced_user_agent, displaced_ip, csrf_basis, privileges)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,
                     ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23)",
            )?
            .execute(params![
                s.id.as_bytes(),
                s.verifier_hash.as_bytes(),
                s.user_id.as_str(),
                epoch,
                s.created_at.as_millis(),
                s.last_seen_at.as_millis(),
                s.idle_deadline.as_millis(),
                s.absolute_deadline.as_millis(),
                s.revoked.map(|r| r.reason.tag()),
                s.revoked.map(|r| r.at.as_millis()),
                record.client.user_agent(),
                record.client.ip().map(|ip| ip.to_string()),
                s.profile.as_ref().map(ProfileName::as_str),
                s.token_issued_at.as_millis(),
                s.elevated_until.map(Timestamp::as_millis),
                s.previous.map(|p| *p.verifier_hash.as_bytes()),
                s.previous.map(|p| p.valid_until.as_millis()),
                s.previous.map(|p| p.reason.tag()),
                s.displaced_by.is_some(),
                s.displaced_by.as_ref().and_then(|c| c.user_agent()),
                s.displaced_by
                    .as_ref()
                    .and_then(|c| c.ip())
                    .map(|ip| ip.to_string()),
                s.csrf_basis.map(|h| *h.as_bytes()),
                privileges,
            ])?;
            // Displaced sessions end like `revoke_session` ends them, deadlines
            // frozen as the index holds them, with the displacing client.
            let mut displace = tx.prepare_cached(
                "UPDATE sessions SET revoked_reason = ?2, revoked_at = ?3,
                     last_seen_at = ?4, idle_deadline = ?5, displaced = 1,
                     displaced_user_agent = ?6, displaced_ip = ?7
                 WHERE id = ?1",
            )?;
            for old in &ended {
                displace.execute(params![
                    old.id.as_bytes(),
                    Reason::Displaced.tag(),
                    s.created_at.as_millis(),
                    old.last_seen_at.as_millis(),
                    old.idle_deadline.as_millis(),
                    record.client.user_agent(),
                    record.client.ip().map(|ip| ip.to_string()),
                ])?;
            }
            Ok(())
        })?;
        // Planned under the writer lock, so this is exactly what
        // `MemoryIndex::insert_session` would do.
        self.index.apply_insert(record, &displaced);
        let mut touches = self.touches();
        for id in &displaced {
            touches.sessions.remove(id);
        }
        Ok(displaced)
    }

    fn revoke_session(&self, id: SessionId, revocation: Revocation) -> StoreResult<bool> {
        let mut conn = self.writer();
        let state = match self.index.load_session(&id) {
            Some((state, _)) if state.revoked.is_none() => state,
            _ => return Ok(false),
        };
        // The deadlines are frozen as the index holds them, buffered touch included,
        // so the tombstone on disk matches the one in memory.
        write_tx(&mut conn, |tx| {
            tx.prepare_cached(
                "UPDATE sessions SET revoked_reason = ?2, revoked_at = ?3,
                     last_seen_at = ?4, idle_deadline = ?5
                 WHERE id = ?1",
            )?
            .execute(params![
                id.as_bytes(),
                revocation.reason.tag(),
                revocation.at.as_millis(),
                state.last_seen_at.as_millis(),
                state.idle_deadline.as_millis(),
            ])?;
            Ok(())
        })?;
        let revoked = self.index.revoke_session(&id, revocation);
        debug_assert!(revoked, "checked under the writer lock");
        self.touches().sessions.remove(&id);
        Ok(true)
    }

    fn revoke_user_sessions(
        &self,
        user: UserId,
        bump: EpochBump,
        keep: Option<SessionId>,
    ) -> StoreResult<UserEpoch> {
        let mut conn = self.writer();
        let old = self.index.user_epoch(&user);
        let new = old.bumped(bump);
        // Exactly the condition `MemoryIndex::revoke_user_sessions` applies.
        let carried = keep.filter(|k| {
            matches!(
                self.index.load_session(k),
                Some((s, _)) if s.user_id == user && s.revoked.is_none() && s.epoch == old.epoch
            )
        });
        let cols = EpochCols::new(&new)?;
        write_tx(&mut conn, |tx| {
            tx.prepare_cached(
                "INSERT INTO users (id, epoch, bump_reason, bump_at, api_token_floor,
                     api_token_bump_reason, api_token_bump_at, prev1_reason, prev1_at,
                     prev2_reason, prev2_at, prev3_reason, prev3_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
                 ON CONFLICT (id) DO UPDATE SET epoch = excluded.epoch,
                     bump_reason = excluded.bump_reason, bump_at = excluded.bump_at,
                     api_token_floor = excluded.api_token_floor,
                     api_token_bump_reason = excluded.api_token_bump_reason,
                     api_token_bump_at = excluded.api_token_bump_at,
                     prev1_reason = excluded.prev1_reason, prev1_at = excluded.prev1_at,
                     prev2_reason = excluded.prev2_reason, prev2_at = excluded.prev2_at,
                     prev3_reason = excluded.prev3_reason, prev3_at = excluded.prev3_at",
            )?
            .execute(params![
                user.as_str(),
                cols.epoch,
                cols.bump_reason,
                cols.bump_at,
                cols.api_token_floor,
                cols.api_token_bump_reason,
                cols.api_token_bump_at,
                cols.prev[0].0,
                cols.prev[0].1,
                cols.prev[1].0,
                cols.prev[1].1,
                cols.prev[2].0,
                cols.prev[2].1,
            ])?;
            if let Some(k) = carried {
                tx.prepare_cached("UPDATE sessions SET epoch = ?2 WHERE id = ?1")?
                    .execute(params![k.as_bytes(), cols.epoch])?;
            }
            Ok(())
        })?;
        let applied = self.index.revoke_user_sessions(&user, bump, keep.as_ref());
        debug_assert_eq!(applied, new, "computed under the writer lock");
        Ok(applied)
    }

    fn purge(&self, cutoff: Timestamp) -> StoreResult<Purged> {
        let mut conn = self.writer();
        // Held until the index is purged, so that no touch can move a deadline
        // across `cutoff` between choosing the rows and purging the index: disk and
        // memory drop exactly the same records (a session's refresh tokens go with
        // it, so they depend on its deadline too). Touches wait for this one commit.
        let mut touches = self.touches();
        let doomed = self.index.purgeable(cutoff);
        if doomed.sessions.is_empty()
            && doomed.refresh_tokens.is_empty()
            && doomed.api_tokens.is_empty()
        {
            return Ok(Purged::default());
        }
        // By id rather than by a `WHERE` on deadlines: a buffered touch may not be
        // on disk yet, and the index is the authority on deadlines and epochs.
        write_tx(&mut conn, |tx| {
            let mut delete = tx.prepare_cached("DELETE FROM sessions WHERE id = ?1")?;
            for id in &doomed.sessions {
                delete.execute([id.as_bytes()])?;
            }
            let mut delete = tx.prepare_cached("DELETE FROM refresh_tokens WHERE id = ?1")?;
            for id in &doomed.refresh_tokens {
                delete.execute([id.as_bytes()])?;
            }
            let mut delete = tx.prepare_cached("DELETE FROM api_tokens WHERE id = ?1")?;
            for id in &doomed.api_tokens {
                delete.execute([id.as_bytes()])?;
            }
            Ok(())
        })?;
        let purged = self.index.delete(&doomed);
        debug_assert_eq!(
            purged,
            Purged {
                sessions: doomed.sessions.len() as u64,
                refresh_tokens: doomed.refresh_tokens.len() as u64,
                api_tokens: doomed.api_tokens.len() as u64,
            },
            "chosen under both locks"
        );
        for id in &doomed.sessions {
            touches.sessions.remove(id);
        }
        for id in &doomed.api_tokens {
            touches.api_tokens.remove(id);
        }
        Ok(purged)
    }

    fn create_user(&self, id: UserId, username: String, hash: PasswordHash) -> StoreResult<()> {
        let mut conn = self.writer();
        if self.index.find_user_by_username(&username).is_some() {
            return Err(StoreError::Conflict("username"));
        }
        if self.index.get_user(&id).is_some() {
            return Err(StoreError::Conflict("user"));
        }
        // A sidecar user may already have an epoch row: it keeps its epoch.
        write_tx(&mut conn, |tx| {
            tx.prepare_cached(
                "INSERT INTO users (id, username, password_hash, epoch) VALUES (?1, ?2, ?3, 0)
                 ON CONFLICT (id) DO UPDATE SET username = excluded.username,
                     password_hash = excluded.password_hash",
            )?
            .execute(params![id.as_str(), username, hash.as_phc()])?;
            Ok(())
        })?;
        self.index
            .create_user(&id, &username, hash)
            .expect("the conflict checks above were made under the writer lock");
        Ok(())
    }

    fn set_password(
        &self,
        id: UserId,
        hash: PasswordHash,
        bump: EpochBump,
    ) -> StoreResult<UserEpoch> {
        let mut conn = self.writer();
        if self.index.get_user(&id).is_none() {
            return Err(StoreError::NotFound("user"));
        }
        let new = self.index.user_epoch(&id).bumped(bump);
        let cols = EpochCols::new(&new)?;
        write_tx(&mut conn, |tx| {
            tx.prepare_cached(
                "UPDATE users SET password_hash = ?2, epoch = ?3, bump_reason = ?4,
                     bump_at = ?5, api_token_floor = ?6, api_token_bump_reason = ?7,
                     api_token_bump_at = ?8, prev1_reason = ?9, prev1_at = ?10,
                     prev2_reason = ?11, prev2_at = ?12, prev3_reason = ?13, prev3_at = ?14
                 WHERE id = ?1",
            )?
            .execute(params![
                id.as_str(),
                hash.as_phc(),
                cols.epoch,
                cols.bump_reason,
                cols.bump_at,
                cols.api_token_floor,
                cols.api_token_bump_reason,
                cols.api_token_bump_at,
                cols.prev[0].0,
                cols.prev[0].1,
                cols.prev[1].0,
                cols.prev[1].1,
                cols.prev[2].0,
                cols.prev[2].1,
            ])?;
            Ok(())
        })?;
        let applied = self
            .index
            .set_password(&id, hash, bump)
            .expect("the user was found above under the writer lock");
        debug_assert_eq!(applied, new, "computed under the writer lock");
        Ok(applied)
    }

    fn insert_refresh(&self, record: RefreshState) -> StoreResult<()> {
        let mut conn = self.writer();
        if self.index.load_refresh(&record.id).is_some() {
            return Err(StoreError::Conflict("refresh_token"));
        }
        write_tx(&mut conn, |tx| insert_refresh_row(tx, &record))?;
        // Checked under the writer lock: this is `MemoryIndex::insert_refresh`.
        self.index.restore_refresh(record);
        Ok(())
    }

    fn rotate_refresh(
        &self,
        id: TokenId,
        rotation: Rotation,
        successor: RefreshState,
    ) -> StoreResult<Option<Rotation>> {
        let mut conn = self.writer();
        // The checks of `MemoryIndex::rotate_refresh`, in its order. Under the
        // writer lock the index is exact, so this is the compare of the
        // compare-and-set: a loser returns here, without writing.
        if self.index.load_refresh(&successor.id).is_some() {
            return Err(StoreError::Conflict("refresh_token"));
        }
        let current = self
            .index
            .load_refresh(&id)
            .ok_or(StoreError::NotFound("refresh_token"))?;
        if let Some(done) = current.rotated {
            return Ok(Some(done));
        }
        // The set: the rotation and the successor commit together, or neither does.
        write_tx(&mut conn, |tx| {
            let changed = tx
                .prepare_cached(
                    "UPDATE refresh_tokens SET rotated_at = ?2, successor = ?3,
                         sealed_successor = ?4
                     WHERE id = ?1 AND rotated_at IS NULL",
                )?
                .execute(params![
                    id.as_bytes(),
                    rotation.at.as_millis(),
                    rotation.successor.as_bytes(),
                    rotation.sealed_successor.0,
                ])?;
            // The index said "not rotated"; if the file disagrees, write nothing.
            if changed != 1 {
                return Err(rusqlite::Error::StatementChangedRows(changed));
            }
            insert_refresh_row(tx, &successor)
        })?;
        let applied = self.index.rotate_refresh(&id, rotation, successor);
        debug_assert!(
            matches!(applied, Ok(None)),
            "checked under the writer lock: {applied:?}"
        );
        Ok(None)
    }

    fn insert_api_token(&self, record: ApiTokenRecord) -> StoreResult<()> {
        let mut conn = self.writer();
        if self.index.load_api_token(&record.id).is_some() {
            return Err(StoreError::Conflict("api_token"));
        }
        if self.index.user_epoch(&record.user_id).epoch != record.epoch {
            return Err(StoreError::EpochMoved);
        }
        let epoch = epoch_sql(record.epoch)?;
        write_tx(&mut conn, |tx| {
            tx.prepare_cached(
                "INSERT INTO api_tokens (id, verifier_hash, user_id, name, epoch,
                     created_at, expires_at, last_used_at, revoked_reason, revoked_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                record.id.as_bytes(),
                record.verifier_hash.as_bytes(),
                record.user_id.as_str(),
                record.name,
                epoch,
                record.created_at.as_millis(),
                record.expires_at.as_millis(),
                record.last_used_at.map(Timestamp::as_millis),
                record.revoked.map(|r| r.reason.tag()),
                record.revoked.map(|r| r.at.as_millis()),
            ])?;
            Ok(())
        })?;
        // Checked under the writer lock: this is `MemoryIndex::insert_api_token`.
        self.index.restore_api_token(record);
        Ok(())
    }

    fn revoke_api_token(&self, id: TokenId, revocation: Revocation) -> StoreResult<bool> {
        let mut conn = self.writer();
        let last_used_at = match self.index.load_api_token(&id) {
            Some((t, _)) if t.revoked.is_none() => t.last_used_at,
            _ => return Ok(false),
        };
        // The last use is written as the index holds it, buffered use included. A
        // use recorded after this read stays pending: it happened before the
        // revocation (the index refuses uses after it), and the flush writes it.
        write_tx(&mut conn, |tx| {
            tx.prepare_cached(
                "UPDATE api_tokens SET revoked_reason = ?2, revoked_at = ?3,
                     last_used_at = ?4
                 WHERE id = ?1",
            )?
            .execute(params![
                id.as_bytes(),
                revocation.reason.tag(),
                revocation.at.as_millis(),
                last_used_at.map(Timestamp::as_millis),
            ])?;
            Ok(())
        })?;
        let revoked = self.index.revoke_api_token(&id, revocation);
        debug_assert!(revoked, "checked under the writer lock");
        let mut touches = self.touches();
        if touches.api_tokens.get(&id).copied() <= last_used_at {
            touches.api_tokens.remove(&id);
        }
        Ok(true)
    }

    fn touch_session(&self, id: &SessionId, seen_at: Timestamp, idle_deadline: Timestamp) {
        // Index and pending map change together under `touches`, so a purge (which
        // holds it) sees either both or neither.
        let mut touches = self.touches();
        self.index.touch_session(id, seen_at, idle_deadline);
        if let Some((s, _)) = self.index.load_session(id)
            && s.revoked.is_none()
            && s.idle_deadline == idle_deadline
        {
            touches.sessions.insert(
                *id,
                Touch {
                    last_seen_at: s.last_seen_at,
                    idle_deadline,
                },
            );
        }
    }

    fn touch_api_token(&self, id: &TokenId, used_at: Timestamp) {
        let mut touches = self.touches();
        self.index.touch_api_token(id, used_at);
        if let Some((t, _)) = self.index.load_api_token(id) {
            // Only if the index took this use (it never goes backwards).
            if t.revoked.is_none() && t.last_used_at == Some(used_at) {
                touches.api_tokens.insert(*id, used_at);
            }
        }
    }

    fn flush(&self) -> StoreResult<()> {
        let mut conn = self.writer();
        let batch = std::mem::take(&mut *self.touches());
        if batch.is_empty() {
            return Ok(());
        }
        let written = write_tx(&mut conn, |tx| {
            // Guarded like the index: never revive a revoked session, never shorten.
            let mut update = tx.prepare_cached(
                "UPDATE sessions SET last_seen_at = MAX(last_seen_at, ?2), idle_deadline = ?3
                 WHERE id = ?1 AND revoked_reason IS NULL AND idle_deadline < ?3",
            )?;
            for (id, t) in &batch.sessions {
                update.execute(params![
                    id.as_bytes(),
                    t.last_seen_at.as_millis(),
                    t.idle_deadline.as_millis(),
                ])?;
            }
            // Never backwards. No revocation guard: every pending use was taken by
            // the index before the token was revoked (see `revoke_api_token`).
            let mut update = tx.prepare_cached(
                "UPDATE api_tokens SET last_used_at = ?2
                 WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at < ?2)",
            )?;
            for (id, used_at) in &batch.api_tokens {
                update.execute(params![id.as_bytes(), used_at.as_millis()])?;
            }
            Ok(())
        });
        if written.is_err() {
            // Retry with the next flush. A touch recorded meanwhile is newer (the
            // index only moves these values forward), so it wins.
            let mut touches = self.touches();
            for (id, t) in batch.sessions {
                touches.sessions.entry(id).or_insert(t);
            }
            for (id, used_at) in batch.api_tokens {
                touches.api_tokens.entry(id).or_insert(used_at);
            }
        }
        written
    }
}

/// Inserts a refresh-token row (with its rotation, if any).
fn insert_refresh_row(tx: &Transaction<'_>, r: &RefreshState) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO refresh_tokens (id, verifier_hash, session_id, user_id, created_at,
             rotated_at, successor, sealed_successor, client_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        r.id.as_bytes(),
        r.verifier_hash.as_bytes(),
        r.session_id.as_bytes(),
        r.user_id.as_str(),
        r.created_at.as_millis(),
        r.rotated.map(|x| x.at.as_millis()),
        r.rotated.map(|x| *x.successor.as_bytes()),
        r.rotated.map(|x| x.sealed_successor.0),
        r.client_id.as_ref().map(ClientId::as_str),
    ])?;
    Ok(())
}

/// A [`UserEpoch`] as the values of its `users` columns.
struct EpochCols {
    epoch: i64,
    bump_reason: Option<u8>,
    bump_at: Option<i64>,
    api_token_floor: i64,
    api_token_bump_reason: Option<u8>,
    api_token_bump_at: Option<i64>,
    /// `earlier_bumps` as (reason, at) pairs, newest first.
    prev: [(Option<u8>, Option<i64>); EARLIER_BUMPS],
}

impl EpochCols {
    fn new(e: &UserEpoch) -> StoreResult<Self> {
        Ok(EpochCols {
            epoch: epoch_sql(e.epoch)?,
            bump_reason: e.last_bump.map(|b| b.reason.tag()),
            bump_at: e.last_bump.map(|b| b.at.as_millis()),
            api_token_floor: epoch_sql(e.api_token_floor)?,
            api_token_bump_reason: e.api_token_bump.map(|b| b.reason.tag()),
            api_token_bump_at: e.api_token_bump.map(|b| b.at.as_millis()),
            prev: e
                .earlier_bumps
                .map(|b| (b.map(|b| b.reason.tag()), b.map(|b| b.at.as_millis()))),
        })
    }
}

impl Store for SqliteStore {
    async fn insert_session(
        &self,
        record: SessionRecord,
        limit: SessionLimit,
    ) -> StoreResult<Vec<SessionId>> {
        self.write(move |s| s.insert_session(record, limit)).await
    }

    async fn rotate_session_token(
        &self,
        id: &SessionId,
        expected: VerifierHash,
        rotation: TokenRotation,
    ) -> StoreResult<bool> {
        let id = *id;
        self.write(move |s| s.rotate_session_token(id, expected, rotation))
            .await
    }

    async fn load_session(&self, id: &SessionId) -> StoreResult<Option<(SessionState, UserEpoch)>> {
        Ok(self.inner().index.load_session(id))
    }

    async fn touch_session(
        &self,
        id: &SessionId,
        seen_at: Timestamp,
        idle_deadline: Timestamp,
    ) -> StoreResult<()> {
        self.inner().touch_session(id, seen_at, idle_deadline);
        Ok(())
    }

    async fn revoke_session(&self, id: &SessionId, revocation: Revocation) -> StoreResult<bool> {
        let id = *id;
        self.write(move |s| s.revoke_session(id, revocation)).await
    }

    async fn revoke_user_sessions(
        &self,
        user: &UserId,
        bump: EpochBump,
        keep: Option<&SessionId>,
    ) -> StoreResult<UserEpoch> {
        let (user, keep) = (user.clone(), keep.copied());
        self.write(move |s| s.revoke_user_sessions(user, bump, keep))
            .await
    }

    async fn user_epoch(&self, user: &UserId) -> StoreResult<UserEpoch> {
        Ok(self.inner().index.user_epoch(user))
    }

    async fn list_user_sessions(&self, user: &UserId) -> StoreResult<Vec<SessionRecord>> {
        Ok(self.inner().index.list_user_sessions(user))
    }

    async fn purge(&self, cutoff: Timestamp) -> StoreResult<Purged> {
        self.inner().throttle.purge(cutoff);
        self.write(move |s| s.purge(cutoff)).await
    }

    async fn create_user(
        &self,
        id: &UserId,
        username: &str,
        password_hash: PasswordHash,
    ) -> StoreResult<()> {
        let (id, username) = (id.clone(), username.to_owned());
        self.write(move |s| s.create_user(id, username, password_hash))
            .await
    }

    async fn find_user_by_username(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        Ok(self.inner().index.find_user_by_username(username))
    }

    async fn get_user(&self, id: &UserId) -> StoreResult<Option<UserRecord>> {
        Ok(self.inner().index.get_user(id))
    }

    async fn set_password(
        &self,
        id: &UserId,
        password_hash: PasswordHash,
        bump: EpochBump,
    ) -> StoreResult<UserEpoch> {
        let id = id.clone();
        self.write(move |s| s.set_password(id, password_hash, bump))
            .await
    }

    async fn insert_refresh(&self, record: RefreshState) -> StoreResult<()> {
        self.write(move |s| s.insert_refresh(record)).await
    }

    async fn load_refresh(&self, id: &TokenId) -> StoreResult<Option<RefreshState>> {
        Ok(self.inner().index.load_refresh(id))
    }

    async fn rotate_refresh(
        &self,
        id: &TokenId,
        rotation: Rotation,
        successor: RefreshState,
    ) -> StoreResult<Option<Rotation>> {
        let id = *id;
        self.write(move |s| s.rotate_refresh(id, rotation, successor))
            .await
    }

    async fn insert_api_token(&self, record: ApiTokenRecord) -> StoreResult<()> {
        self.write(move |s| s.insert_api_token(record)).await
    }

    async fn load_api_token(
        &self,
        id: &TokenId,
    ) -> StoreResult<Option<(ApiTokenRecord, UserEpoch)>> {
        Ok(self.inner().index.load_api_token(id))
    }

    async fn touch_api_token(&self, id: &TokenId, used_at: Timestamp) -> StoreResult<()> {
        self.inner().touch_api_token(id, used_at);
        Ok(())
    }

    async fn revoke_api_token(&self, id: &TokenId, revocation: Revocation) -> StoreResult<bool> {
        let id = *id;
        self.write(move |s| s.revoke_api_token(id, revocation))
            .await
    }

    async fn list_user_api_tokens(&self, user: &UserId) -> StoreResult<Vec<ApiTokenRecord>> {
        Ok(self.inner().index.list_user_api_tokens(user))
    }

    async fn user_access(&self, user: &UserId) -> StoreResult<UserAccess> {
        Ok(self.inner().index.user_access(user))
    }

    async fn set_user_access(&self, user: &UserId, access: UserAccess) -> StoreResult<UserEpoch> {
        let user = user.clone();
        self.write(move |s| s.set_user_access(user, access)).await
    }

    async fn append_event(&self, event: AuditEvent) -> StoreResult<u64> {
        self.write(move |s| s.append_event(&event)).await
    }

    async fn list_events(&self, query: &EventQuery) -> StoreResult<Vec<AuditEvent>> {
        let query = query.clone();
        self.write(move |s| s.list_events(&query)).await
    }

    async fn purge_events(&self, cutoff: Timestamp) -> StoreResult<u64> {
        self.write(move |s| s.purge_events(cutoff)).await
    }

    /// A query through the writer: the connection answers and no write holds the
    /// writer for longer than a probe waits.
    async fn ready(&self) -> StoreResult<()> {
        self.write(|s| {
            let conn = s.writer();
            conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))
                .map(drop)
                .map_err(StoreError::backend)
        })
        .await
    }

    async fn throttle_attempt(
        &self,
        key: &ThrottleKey,
        limit: ThrottleLimit,
        now: Timestamp,
        create: bool,
    ) -> StoreResult<Attempt> {
        Ok(self.inner().throttle.attempt(key, &limit, now, create))
    }

    async fn throttle_settle(
        &self,
        key: &ThrottleKey,
        settle: Settle,
        now: Timestamp,
    ) -> StoreResult<()> {
        self.inner().throttle.settle(key, settle, now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_has_the_durability_settings() {
        let dir = tempfile::TempDir::new().unwrap();
        let store = SqliteStore::open(dir.path().join("s.db")).unwrap();
        let conn = store.inner().writer();
        let pragma = |name: &str| -> String {
            conn.pragma_query_value(None, name, |r| r.get::<_, rusqlite::types::Value>(0))
                .map(|v| format!("{v:?}"))
                .unwrap()
        };
        assert_eq!(pragma("journal_mode"), r#"Text("wal")"#);
        assert_eq!(pragma("locking_mode"), r#"Text("exclusive")"#);
        assert_eq!(pragma("synchronous"), "Integer(2)", "FULL");
        assert_eq!(
            pragma("user_version"),
            format!("Integer({})", schema::VERSION)
        );
    }
}
