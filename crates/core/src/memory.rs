//! The in-memory store.
//!
//! [`MemoryIndex`] is the synchronous data structure; [`MemoryStore`] exposes it
//! through the [`Store`] trait. Durable backends may keep a `MemoryIndex` as their
//! read path and write through to disk, applying each change here only after it is
//! durable.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::clock::Timestamp;
use crate::model::{
    PasswordHash, SessionId, SessionRecord, SessionState, UserEpoch, UserId, UserRecord,
};
use crate::reason::Revocation;
use crate::store::{Store, StoreError, StoreResult};

#[derive(Debug, Default)]
struct UserEntry {
    epoch: UserEpoch,
    credentials: Option<(String, PasswordHash)>,
    sessions: Vec<SessionId>,
}

#[derive(Debug, Default)]
struct Inner {
    sessions: HashMap<SessionId, SessionRecord>,
    users: HashMap<UserId, UserEntry>,
    usernames: HashMap<String, UserId>,
}

/// Sessions, epochs and users in memory, behind one reader-writer lock.
///
/// One lock makes every compound operation trivially atomic; validation only takes
/// the read lock, and touches are coalesced by the engine, so writers are rare.
#[derive(Debug, Default)]
pub struct MemoryIndex {
    inner: RwLock<Inner>,
}

impl MemoryIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    // A panic while holding the lock cannot leave a half-applied change behind:
    // every mutation below checks first and then applies infallibly.
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// See [`Store::insert_session`].
    pub fn insert_session(&self, record: SessionRecord) -> StoreResult<()> {
        let mut g = self.write();
        let inner = &mut *g;
        if inner.sessions.contains_key(&record.state.id) {
            return Err(StoreError::Conflict("session"));
        }
        let user = inner.users.entry(record.state.user_id.clone()).or_default();
        if user.epoch.epoch != record.state.epoch {
            return Err(StoreError::EpochMoved);
        }
        user.sessions.push(record.state.id);
        inner.sessions.insert(record.state.id, record);
        Ok(())
    }

    /// See [`Store::load_session`].
    pub fn load_session(&self, id: &SessionId) -> Option<(SessionState, UserEpoch)> {
        let g = self.read();
        let rec = g.sessions.get(id)?;
        let epoch = g
            .users
            .get(&rec.state.user_id)
            .map(|u| u.epoch)
            .unwrap_or_default();
        Some((rec.state.clone(), epoch))
    }

    /// See [`Store::touch_session`].
    pub fn touch_session(&self, id: &SessionId, seen_at: Timestamp, idle_deadline: Timestamp) {
        let mut g = self.write();
        if let Some(rec) = g.sessions.get_mut(id) {
            let s = &mut rec.state;
            if s.revoked.is_none() && idle_deadline > s.idle_deadline {
                s.idle_deadline = idle_deadline;
                s.last_seen_at = s.last_seen_at.max(seen_at);
            }
        }
    }

    /// See [`Store::revoke_session`].
    pub fn revoke_session(&self, id: &SessionId, revocation: Revocation) -> bool {
        let mut g = self.write();
        match g.sessions.get_mut(id) {
            Some(rec) if rec.state.revoked.is_none() => {
                rec.state.revoked = Some(revocation);
                true
            }
            _ => false,
        }
    }

    /// See [`Store::revoke_user_sessions`].
    pub fn revoke_user_sessions(
        &self,
        user: &UserId,
        revocation: Revocation,
        keep: Option<&SessionId>,
    ) -> UserEpoch {
        let mut g = self.write();
        let inner = &mut *g;
        let entry = inner.users.entry(user.clone()).or_default();
        let old = entry.epoch.epoch;
        entry.epoch = UserEpoch {
            epoch: old + 1,
            last_bump: Some(revocation),
        };
        let new = entry.epoch;
        if let Some(rec) = keep.and_then(|k| inner.sessions.get_mut(k)) {
            let s = &mut rec.state;
            if &s.user_id == user && s.revoked.is_none() && s.epoch == old {
                s.epoch = new.epoch;
            }
        }
        new
    }

    /// See [`Store::user_epoch`].
    pub fn user_epoch(&self, user: &UserId) -> UserEpoch {
        self.read()
            .users
            .get(user)
            .map(|u| u.epoch)
            .unwrap_or_default()
    }

    /// See [`Store::list_user_sessions`].
    pub fn list_user_sessions(&self, user: &UserId) -> Vec<SessionRecord> {
        let g = self.read();
        g.users
            .get(user)
            .map(|u| {
                u.sessions
                    .iter()
                    .filter_map(|id| g.sessions.get(id).cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The ids that [`MemoryIndex::purge_sessions`] would delete for `cutoff`.
    pub fn purgeable_sessions(&self, cutoff: Timestamp) -> Vec<SessionId> {
        self.read()
            .sessions
            .values()
            .filter(|r| r.state.idle_deadline <= cutoff)
            .map(|r| r.state.id)
            .collect()
    }

    /// See [`Store::purge_sessions`].
    pub fn purge_sessions(&self, cutoff: Timestamp) -> u64 {
        let mut g = self.write();
        let inner = &mut *g;
        let mut purged = 0;
        inner.sessions.retain(|_, r| {
            let keep = r.state.idle_deadline > cutoff;
            purged += u64::from(!keep);
            keep
        });
        if purged > 0 {
            let sessions = &inner.sessions;
            for u in inner.users.values_mut() {
                u.sessions.retain(|id| sessions.contains_key(id));
            }
        }
        purged
    }

    /// See [`Store::create_user`].
    pub fn create_user(
        &self,
        id: &UserId,
        username: &str,
        password_hash: PasswordHash,
    ) -> StoreResult<()> {
        let mut g = self.write();
        let inner = &mut *g;
        if inner.usernames.contains_key(username) {
            return Err(StoreError::Conflict("username"));
        }
        let entry = inner.users.entry(id.clone()).or_default();
        if entry.credentials.is_some() {
            return Err(StoreError::Conflict("user"));
        }
        entry.credentials = Some((username.to_owned(), password_hash));
        inner.usernames.insert(username.to_owned(), id.clone());
        Ok(())
    }

    /// See [`Store::find_user_by_username`].
    pub fn find_user_by_username(&self, username: &str) -> Option<UserRecord> {
        let g = self.read();
        let id = g.usernames.get(username)?;
        user_record(id, g.users.get(id)?)
    }

    /// See [`Store::get_user`].
    pub fn get_user(&self, id: &UserId) -> Option<UserRecord> {
        user_record(id, self.read().users.get(id)?)
    }

    /// See [`Store::set_password`].
    pub fn set_password(
        &self,
        id: &UserId,
        password_hash: PasswordHash,
        revocation: Revocation,
    ) -> StoreResult<UserEpoch> {
        let mut g = self.write();
        match g.users.get_mut(id) {
            Some(UserEntry {
                credentials: Some((_, hash)),
                epoch,
                ..
            }) => {
                *hash = password_hash;
                *epoch = UserEpoch {
                    epoch: epoch.epoch + 1,
                    last_bump: Some(revocation),
                };
                Ok(*epoch)
            }
            _ => Err(StoreError::NotFound("user")),
        }
    }

    /// Loads a record as it was persisted, bypassing the epoch check: for durable
    /// stores rebuilding the index at start-up. Replaces any record with the same id.
    pub fn restore_session(&self, record: SessionRecord) {
        let mut g = self.write();
        let inner = &mut *g;
        let user = inner.users.entry(record.state.user_id.clone()).or_default();
        if !user.sessions.contains(&record.state.id) {
            user.sessions.push(record.state.id);
        }
        inner.sessions.insert(record.state.id, record);
    }

    /// Sets a user's epoch as it was persisted: for durable stores at start-up.
    pub fn restore_epoch(&self, user: &UserId, epoch: UserEpoch) {
        self.write().users.entry(user.clone()).or_default().epoch = epoch;
    }

    /// Number of stored session records (live and ended).
    pub fn session_count(&self) -> usize {
        self.read().sessions.len()
    }
}

fn user_record(id: &UserId, u: &UserEntry) -> Option<UserRecord> {
    let (username, hash) = u.credentials.as_ref()?;
    Some(UserRecord {
        id: id.clone(),
        username: username.clone(),
        password_hash: hash.clone(),
        epoch: u.epoch.epoch,
    })
}

/// A [`Store`] that keeps everything in process memory. Clones share the same data.
///
/// For tests, for embedding sessionguard in a single process that may forget its
/// sessions on restart, and as the read path of durable stores. Nothing survives the
/// process, so it does not meet the durability contract's crash clause.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    index: Arc<MemoryIndex>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The underlying index.
    pub fn index(&self) -> &MemoryIndex {
        &self.index
    }
}

impl Store for MemoryStore {
    async fn insert_session(&self, record: SessionRecord) -> StoreResult<()> {
        self.index.insert_session(record)
    }

    async fn load_session(&self, id: &SessionId) -> StoreResult<Option<(SessionState, UserEpoch)>> {
        Ok(self.index.load_session(id))
    }

    async fn touch_session(
        &self,
        id: &SessionId,
        seen_at: Timestamp,
        idle_deadline: Timestamp,
    ) -> StoreResult<()> {
        self.index.touch_session(id, seen_at, idle_deadline);
        Ok(())
    }

    async fn revoke_session(&self, id: &SessionId, revocation: Revocation) -> StoreResult<bool> {
        Ok(self.index.revoke_session(id, revocation))
    }

    async fn revoke_user_sessions(
        &self,
        user: &UserId,
        revocation: Revocation,
        keep: Option<&SessionId>,
    ) -> StoreResult<UserEpoch> {
        Ok(self.index.revoke_user_sessions(user, revocation, keep))
    }

    async fn user_epoch(&self, user: &UserId) -> StoreResult<UserEpoch> {
        Ok(self.index.user_epoch(user))
    }

    async fn list_user_sessions(&self, user: &UserId) -> StoreResult<Vec<SessionRecord>> {
        Ok(self.index.list_user_sessions(user))
    }

    async fn purge_sessions(&self, cutoff: Timestamp) -> StoreResult<u64> {
        Ok(self.index.purge_sessions(cutoff))
    }

    async fn create_user(
        &self,
        id: &UserId,
        username: &str,
        password_hash: PasswordHash,
    ) -> StoreResult<()> {
        self.index.create_user(id, username, password_hash)
    }

    async fn find_user_by_username(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        Ok(self.index.find_user_by_username(username))
    }

    async fn get_user(&self, id: &UserId) -> StoreResult<Option<UserRecord>> {
        Ok(self.index.get_user(id))
    }

    async fn set_password(
        &self,
        id: &UserId,
        password_hash: PasswordHash,
        revocation: Revocation,
    ) -> StoreResult<UserEpoch> {
        self.index.set_password(id, password_hash, revocation)
    }
}
