//! The in-memory store.
//!
//! [`MemoryIndex`] is the synchronous data structure; [`MemoryStore`] exposes it
//! through the [`Store`] trait. Durable backends may keep a `MemoryIndex` as their
//! read path and write through to disk, applying each change here only after it is
//! durable.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::audit::{AuditEvent, EventQuery};
use crate::clock::Timestamp;
use crate::engine::verdict;
use crate::model::{
    ApiTokenRecord, ClientInfo, EpochBump, PasswordHash, RefreshState, ReplacedToken, Rotation,
    SessionId, SessionRecord, SessionState, TokenRotation, UserAccess, UserEpoch, UserId,
    UserRecord,
};
use crate::policy::{OnLimit, SessionLimit};
use crate::profile::ProfileName;
use crate::reason::{Reason, Revocation};
use crate::store::Purged;
use crate::store::{Store, StoreError, StoreResult};
use crate::throttle::{Attempt, Settle, ThrottleKey, ThrottleLimit, ThrottleTable};
use crate::token::{TokenId, VerifierHash};

/// A user as the index keeps it. Most users have never had their epoch bumped,
/// their access set, a password or an API token (a sidecar user is only its
/// sessions), so those parts sit behind pointers that stay empty until needed.
#[derive(Debug, Default)]
struct UserEntry {
    /// `None`: the zero epoch ([`UserEpoch::default`]).
    epoch: Option<Box<UserEpoch>>,
    sessions: Vec<SessionId>,
    cold: Option<Box<UserCold>>,
}

#[derive(Debug, Default)]
struct UserCold {
    access: UserAccess,
    credentials: Option<(String, PasswordHash)>,
    api_tokens: Vec<TokenId>,
}

impl UserEntry {
    fn epoch(&self) -> UserEpoch {
        self.epoch.as_deref().copied().unwrap_or_default()
    }

    fn epoch_mut(&mut self) -> &mut UserEpoch {
        self.epoch.get_or_insert_with(Box::default)
    }

    fn cold(&self) -> Option<&UserCold> {
        self.cold.as_deref()
    }

    fn cold_mut(&mut self) -> &mut UserCold {
        self.cold.get_or_insert_with(Box::default)
    }

    fn add_session(&mut self, id: SessionId) {
        if !self.sessions.contains(&id) {
            // Most users hold one session: no room for four until a second comes.
            if self.sessions.is_empty() {
                self.sessions.reserve_exact(1);
            }
            self.sessions.push(id);
        }
    }
}

/// A session as the index keeps it (its id is the map's key): what every check
/// reads, inline; the fields that most sessions never set (step-up, rotation,
/// displacement, a non-default profile) and the client metadata behind pointers.
/// [`Slot::state`] rebuilds the [`SessionState`] the engine works with.
#[derive(Debug)]
struct Slot {
    verifier_hash: VerifierHash,
    user_id: UserId,
    epoch: u64,
    privileges: u64,
    created_at: Timestamp,
    last_seen_at: Timestamp,
    idle_deadline: Timestamp,
    absolute_deadline: Timestamp,
    token_issued_at: Timestamp,
    revoked: Option<Revocation>,
    rare: Option<Box<Rare>>,
    client: Option<Box<ClientInfo>>,
}

#[derive(Debug, Default)]
struct Rare {
    profile: Option<ProfileName>,
    elevated_until: Option<Timestamp>,
    previous: Option<ReplacedToken>,
    displaced_by: Option<Box<ClientInfo>>,
    csrf_basis: Option<VerifierHash>,
}

impl Slot {
    fn new(record: SessionRecord) -> Box<Slot> {
        let SessionRecord { state: s, client } = record;
        let rare = (s.profile.is_some()
            || s.elevated_until.is_some()
            || s.previous.is_some()
            || s.displaced_by.is_some()
            || s.csrf_basis.is_some())
        .then(|| {
            Box::new(Rare {
                profile: s.profile,
                elevated_until: s.elevated_until,
                previous: s.previous,
                displaced_by: s.displaced_by,
                csrf_basis: s.csrf_basis,
            })
        });
        Box::new(Slot {
            verifier_hash: s.verifier_hash,
            user_id: s.user_id,
            epoch: s.epoch,
            privileges: s.privileges,
            created_at: s.created_at,
            last_seen_at: s.last_seen_at,
            idle_deadline: s.idle_deadline,
            absolute_deadline: s.absolute_deadline,
            token_issued_at: s.token_issued_at,
            revoked: s.revoked,
            rare,
            client: (client != ClientInfo::default()).then(|| Box::new(client)),
        })
    }

    fn state(&self, id: SessionId) -> SessionState {
        let rare = self.rare.as_deref();
        SessionState {
            id,
            verifier_hash: self.verifier_hash,
            user_id: self.user_id.clone(),
            epoch: self.epoch,
            created_at: self.created_at,
            last_seen_at: self.last_seen_at,
            idle_deadline: self.idle_deadline,
            absolute_deadline: self.absolute_deadline,
            revoked: self.revoked,
            profile: rare.and_then(|r| r.profile.clone()),
            privileges: self.privileges,
            token_issued_at: self.token_issued_at,
            elevated_until: rare.and_then(|r| r.elevated_until),
            previous: rare.and_then(|r| r.previous),
            displaced_by: rare.and_then(|r| r.displaced_by.clone()),
            csrf_basis: rare.and_then(|r| r.csrf_basis),
        }
    }

    fn record(&self, id: SessionId) -> SessionRecord {
        SessionRecord {
            state: self.state(id),
            client: self.client.as_deref().cloned().unwrap_or_default(),
        }
    }

    fn rare_mut(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }
}

#[derive(Debug, Default)]
struct Inner {
    sessions: IdMap<Box<Slot>>,
    users: HashMap<UserId, UserEntry>,
    usernames: HashMap<String, UserId>,
    refresh: IdMap<RefreshState>,
    api_tokens: IdMap<ApiTokenRecord>,
}

/// A map keyed by token ids, hashed by [`IdHasher`].
type IdMap<V> = HashMap<TokenId, V, BuildHasherDefault<IdHasher>>;

/// The hash of a token id: its bytes folded with a multiply (no key). Every
/// stored id was minted by the engine from the OS CSPRNG, so stored keys are
/// spread evenly whatever this function; a client can only choose the ids it
/// *looks up*, each lookup costing one probe sequence as any other. So the
/// keyed SipHash, there to stop a client from filling a map with colliding
/// keys, buys nothing here, and costs a fair share of a session check. (Maps
/// keyed by what clients or apps choose — user ids, usernames — keep SipHash.)
#[derive(Debug, Default, Clone, Copy)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(23) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn finish(&self) -> u64 {
        // SplitMix64's finaliser: every input bit reaches the low bits (the
        // bucket) and the high ones (the control byte).
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// The records a purge at some cutoff deletes (see [`MemoryIndex::purgeable`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Purgeable {
    /// Sessions whose idle deadline is at or before the cutoff.
    pub sessions: Vec<SessionId>,
    /// Refresh tokens of those sessions (and of sessions already gone).
    pub refresh_tokens: Vec<TokenId>,
    /// API tokens that ended at or before the cutoff.
    pub api_tokens: Vec<TokenId>,
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
    pub fn insert_session(
        &self,
        record: SessionRecord,
        limit: SessionLimit,
    ) -> StoreResult<Vec<SessionId>> {
        let mut g = self.write();
        let displaced = plan_insert(&g, &record, limit)?;
        apply_insert(&mut g, record, &displaced);
        Ok(displaced)
    }

    /// What [`Store::insert_session`] would do with `record` now: the sessions it
    /// would displace, or why it fails. A durable store calls it under its writer
    /// lock, writes the outcome, then applies it with [`MemoryIndex::apply_insert`].
    pub fn plan_insert(
        &self,
        record: &SessionRecord,
        limit: SessionLimit,
    ) -> StoreResult<Vec<SessionId>> {
        plan_insert(&self.read(), record, limit)
    }

    /// Stores `record` and displaces `displaced` as planned by
    /// [`MemoryIndex::plan_insert`] (under the same writer lock).
    pub fn apply_insert(&self, record: SessionRecord, displaced: &[SessionId]) {
        apply_insert(&mut self.write(), record, displaced);
    }

    /// See [`Store::rotate_session_token`].
    pub fn rotate_session_token(
        &self,
        id: &SessionId,
        expected: VerifierHash,
        rotation: TokenRotation,
    ) -> bool {
        let mut g = self.write();
        match g.sessions.get_mut(id) {
            Some(s) if s.revoked.is_none() && s.verifier_hash.ct_eq(&expected) => {
                s.verifier_hash = rotation.verifier_hash;
                s.token_issued_at = rotation.issued_at;
                s.privileges = rotation.privileges;
                s.idle_deadline = rotation.idle_deadline;
                s.absolute_deadline = rotation.absolute_deadline;
                s.last_seen_at = s.last_seen_at.max(rotation.issued_at);
                let rare = s.rare_mut();
                rare.previous = Some(rotation.previous);
                rare.elevated_until = rotation.elevated_until;
                rare.profile = rotation.profile;
                rare.csrf_basis = Some(rotation.csrf_basis);
                true
            }
            _ => false,
        }
    }

    /// Whether [`MemoryIndex::rotate_session_token`] would rotate now.
    pub fn can_rotate(&self, id: &SessionId, expected: VerifierHash) -> bool {
        matches!(
            self.read().sessions.get(id),
            Some(s) if s.revoked.is_none() && s.verifier_hash.ct_eq(&expected)
        )
    }

    /// See [`Store::user_access`].
    pub fn user_access(&self, user: &UserId) -> UserAccess {
        self.read()
            .users
            .get(user)
            .and_then(UserEntry::cold)
            .map(|c| c.access.clone())
            .unwrap_or_default()
    }

    /// See [`Store::set_user_access`].
    pub fn set_user_access(&self, user: &UserId, access: UserAccess) -> UserEpoch {
        let mut g = self.write();
        let entry = g.users.entry(user.clone()).or_default();
        entry.cold_mut().access = access;
        entry.epoch_mut().privileges += 1;
        entry.epoch()
    }

    /// See [`Store::load_session`].
    pub fn load_session(&self, id: &SessionId) -> Option<(SessionState, UserEpoch)> {
        let g = self.read();
        let slot = g.sessions.get(id)?;
        let epoch = g
            .users
            .get(&slot.user_id)
            .map(UserEntry::epoch)
            .unwrap_or_default();
        Some((slot.state(*id), epoch))
    }

    /// See [`Store::touch_session`].
    pub fn touch_session(&self, id: &SessionId, seen_at: Timestamp, idle_deadline: Timestamp) {
        let mut g = self.write();
        if let Some(s) = g.sessions.get_mut(id)
            && s.revoked.is_none()
            && idle_deadline > s.idle_deadline
        {
            s.idle_deadline = idle_deadline;
            s.last_seen_at = s.last_seen_at.max(seen_at);
        }
    }

    /// See [`Store::revoke_session`].
    pub fn revoke_session(&self, id: &SessionId, revocation: Revocation) -> bool {
        let mut g = self.write();
        match g.sessions.get_mut(id) {
            Some(s) if s.revoked.is_none() => {
                s.revoked = Some(revocation);
                true
            }
            _ => false,
        }
    }

    /// See [`Store::revoke_user_sessions`].
    pub fn revoke_user_sessions(
        &self,
        user: &UserId,
        bump: EpochBump,
        keep: Option<&SessionId>,
    ) -> UserEpoch {
        let mut g = self.write();
        let inner = &mut *g;
        let entry = inner.users.entry(user.clone()).or_default();
        let old = entry.epoch().epoch;
        let new = entry.epoch().bumped(bump);
        *entry.epoch_mut() = new;
        if let Some(s) = keep.and_then(|k| inner.sessions.get_mut(k))
            && &s.user_id == user
            && s.revoked.is_none()
            && s.epoch == old
        {
            s.epoch = new.epoch;
        }
        new
    }

    /// See [`Store::user_epoch`].
    pub fn user_epoch(&self, user: &UserId) -> UserEpoch {
        self.read()
            .users
            .get(user)
            .map(UserEntry::epoch)
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
                    .filter_map(|id| g.sessions.get(id).map(|s| s.record(*id)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// What [`MemoryIndex::purge`] would delete for `cutoff`.
    pub fn purgeable(&self, cutoff: Timestamp) -> Purgeable {
        let g = self.read();
        let sessions: Vec<SessionId> = g
            .sessions
            .iter()
            .filter(|(_, s)| s.idle_deadline <= cutoff)
            .map(|(id, _)| *id)
            .collect();
        let refresh_tokens = g
            .refresh
            .values()
            .filter(|r| {
                g.sessions
                    .get(&r.session_id)
                    .is_none_or(|s| s.idle_deadline <= cutoff)
            })
            .map(|r| r.id)
            .collect();
        let api_tokens = g
            .api_tokens
            .values()
            .filter(|t| {
                let epoch = g
                    .users
                    .get(&t.user_id)
                    .map(UserEntry::epoch)
                    .unwrap_or_default();
                t.ends_at(&epoch) <= cutoff
            })
            .map(|t| t.id)
            .collect();
        Purgeable {
            sessions,
            refresh_tokens,
            api_tokens,
        }
    }

    /// See [`Store::purge`].
    pub fn purge(&self, cutoff: Timestamp) -> Purged {
        let doomed = self.purgeable(cutoff);
        self.delete(&doomed)
    }

    /// Deletes exactly the listed records (and their index entries).
    pub fn delete(&self, doomed: &Purgeable) -> Purged {
        let mut g = self.write();
        let inner = &mut *g;
        let mut purged = Purged::default();
        for id in &doomed.sessions {
            purged.sessions += u64::from(inner.sessions.remove(id).is_some());
        }
        for id in &doomed.refresh_tokens {
            purged.refresh_tokens += u64::from(inner.refresh.remove(id).is_some());
        }
        for id in &doomed.api_tokens {
            purged.api_tokens += u64::from(inner.api_tokens.remove(id).is_some());
        }
        if purged.sessions + purged.api_tokens > 0 {
            let (sessions, tokens) = (&inner.sessions, &inner.api_tokens);
            for u in inner.users.values_mut() {
                u.sessions.retain(|id| sessions.contains_key(id));
                if let Some(cold) = u.cold.as_deref_mut() {
                    cold.api_tokens.retain(|id| tokens.contains_key(id));
                }
            }
        }
        purged
    }

    /// See [`Store::insert_refresh`].
    pub fn insert_refresh(&self, record: RefreshState) -> StoreResult<()> {
        let mut g = self.write();
        if g.refresh.contains_key(&record.id) {
            return Err(StoreError::Conflict("refresh_token"));
        }
        g.refresh.insert(record.id, record);
        Ok(())
    }

    /// See [`Store::load_refresh`].
    pub fn load_refresh(&self, id: &TokenId) -> Option<RefreshState> {
        self.read().refresh.get(id).cloned()
    }

    /// See [`Store::rotate_refresh`].
    pub fn rotate_refresh(
        &self,
        id: &TokenId,
        rotation: Rotation,
        successor: RefreshState,
    ) -> StoreResult<Option<Rotation>> {
        let mut g = self.write();
        let inner = &mut *g;
        if inner.refresh.contains_key(&successor.id) {
            return Err(StoreError::Conflict("refresh_token"));
        }
        let current = inner
            .refresh
            .get_mut(id)
            .ok_or(StoreError::NotFound("refresh_token"))?;
        if let Some(done) = current.rotated {
            return Ok(Some(done));
        }
        current.rotated = Some(rotation);
        inner.refresh.insert(successor.id, successor);
        Ok(None)
    }

    /// See [`Store::insert_api_token`].
    pub fn insert_api_token(&self, record: ApiTokenRecord) -> StoreResult<()> {
        let mut g = self.write();
        let inner = &mut *g;
        if inner.api_tokens.contains_key(&record.id) {
            return Err(StoreError::Conflict("api_token"));
        }
        let user = inner.users.entry(record.user_id.clone()).or_default();
        if user.epoch().epoch != record.epoch {
            return Err(StoreError::EpochMoved);
        }
        user.cold_mut().api_tokens.push(record.id);
        inner.api_tokens.insert(record.id, record);
        Ok(())
    }

    /// See [`Store::load_api_token`].
    pub fn load_api_token(&self, id: &TokenId) -> Option<(ApiTokenRecord, UserEpoch)> {
        let g = self.read();
        let t = g.api_tokens.get(id)?;
        let epoch = g
            .users
            .get(&t.user_id)
            .map(UserEntry::epoch)
            .unwrap_or_default();
        Some((t.clone(), epoch))
    }

    /// See [`Store::touch_api_token`].
    pub fn touch_api_token(&self, id: &TokenId, used_at: Timestamp) {
        if let Some(t) = self.write().api_tokens.get_mut(id)
            && t.revoked.is_none()
            && t.last_used_at.is_none_or(|l| l < used_at)
        {
            t.last_used_at = Some(used_at);
        }
    }

    /// See [`Store::revoke_api_token`].
    pub fn revoke_api_token(&self, id: &TokenId, revocation: Revocation) -> bool {
        match self.write().api_tokens.get_mut(id) {
            Some(t) if t.revoked.is_none() => {
                t.revoked = Some(revocation);
                true
            }
            _ => false,
        }
    }

    /// See [`Store::list_user_api_tokens`].
    pub fn list_user_api_tokens(&self, user: &UserId) -> Vec<ApiTokenRecord> {
        let g = self.read();
        g.users
            .get(user)
            .and_then(UserEntry::cold)
            .map(|u| {
                u.api_tokens
                    .iter()
                    .filter_map(|id| g.api_tokens.get(id).cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Loads an API token as it was persisted, bypassing the epoch check: for
    /// durable stores rebuilding the index at start-up.
    pub fn restore_api_token(&self, record: ApiTokenRecord) {
        let mut g = self.write();
        let inner = &mut *g;
        let cold = inner
            .users
            .entry(record.user_id.clone())
            .or_default()
            .cold_mut();
        if !cold.api_tokens.contains(&record.id) {
            cold.api_tokens.push(record.id);
        }
        inner.api_tokens.insert(record.id, record);
    }

    /// Loads a refresh token as it was persisted: for durable stores at start-up.
    pub fn restore_refresh(&self, record: RefreshState) {
        self.write().refresh.insert(record.id, record);
    }

    /// Loads a user's credentials as persisted: for durable stores at start-up.
    /// Replaces any credentials the user had.
    pub fn restore_user(&self, id: &UserId, username: &str, password_hash: PasswordHash) {
        let mut g = self.write();
        let inner = &mut *g;
        inner
            .users
            .entry(id.clone())
            .or_default()
            .cold_mut()
            .credentials = Some((username.to_owned(), password_hash));
        inner.usernames.insert(username.to_owned(), id.clone());
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
        let entry = inner.users.entry(id.clone()).or_default().cold_mut();
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
        bump: EpochBump,
    ) -> StoreResult<UserEpoch> {
        let mut g = self.write();
        let Some(user) = g.users.get_mut(id) else {
            return Err(StoreError::NotFound("user"));
        };
        let Some((_, hash)) = user
            .cold
            .as_deref_mut()
            .and_then(|c| c.credentials.as_mut())
        else {
            return Err(StoreError::NotFound("user"));
        };
        *hash = password_hash;
        let epoch = user.epoch().bumped(bump);
        *user.epoch_mut() = epoch;
        Ok(epoch)
    }

    /// Loads a record as it was persisted, bypassing the epoch check: for durable
    /// stores rebuilding the index at start-up. Replaces any record with the same id.
    pub fn restore_session(&self, record: SessionRecord) {
        let mut g = self.write();
        let inner = &mut *g;
        let id = record.state.id;
        let user = inner.users.entry(record.state.user_id.clone()).or_default();
        user.add_session(id);
        inner.sessions.insert(id, Slot::new(record));
    }

    /// Sets a user's epoch as it was persisted: for durable stores at start-up.
    pub fn restore_epoch(&self, user: &UserId, epoch: UserEpoch) {
        *self
            .write()
            .users
            .entry(user.clone())
            .or_default()
            .epoch_mut() = epoch;
    }

    /// Sets a user's profile and roles as persisted: for durable stores at start-up.
    pub fn restore_access(&self, user: &UserId, access: UserAccess) {
        self.write()
            .users
            .entry(user.clone())
            .or_default()
            .cold_mut()
            .access = access;
    }

    /// Number of stored session records (live and ended).
    pub fn session_count(&self) -> usize {
        self.read().sessions.len()
    }
}

fn plan_insert(
    inner: &Inner,
    record: &SessionRecord,
    limit: SessionLimit,
) -> StoreResult<Vec<SessionId>> {
    let s = &record.state;
    if inner.sessions.contains_key(&s.id) {
        return Err(StoreError::Conflict("session"));
    }
    let user = inner.users.get(&s.user_id);
    let epoch = user.map(UserEntry::epoch).unwrap_or_default();
    if epoch.epoch != s.epoch {
        return Err(StoreError::EpochMoved);
    }
    let max = usize::try_from(limit.max).unwrap_or(usize::MAX);
    if max == 0 {
        return Ok(Vec::new());
    }
    let mut live: Vec<SessionState> = user
        .into_iter()
        .flat_map(|u| &u.sessions)
        .filter_map(|id| inner.sessions.get(id).map(|slot| slot.state(*id)))
        .filter(|st| verdict(st, &epoch, s.created_at).is_ok())
        .collect();
    if live.len() < max {
        return Ok(Vec::new());
    }
    if limit.on_limit == OnLimit::RejectNew {
        return Err(StoreError::LimitReached);
    }
    live.sort_by_key(|st| (st.last_seen_at, st.created_at, st.id));
    Ok(live[..=live.len() - max].iter().map(|st| st.id).collect())
}

fn apply_insert(inner: &mut Inner, record: SessionRecord, displaced: &[SessionId]) {
    let at = record.state.created_at;
    for id in displaced {
        if let Some(old) = inner.sessions.get_mut(id)
            && old.revoked.is_none()
        {
            old.revoked = Some(Revocation {
                reason: Reason::Displaced,
                at,
            });
            old.rare_mut().displaced_by = Some(Box::new(record.client.clone()));
        }
    }
    let id = record.state.id;
    let user = inner.users.entry(record.state.user_id.clone()).or_default();
    user.add_session(id);
    inner.sessions.insert(id, Slot::new(record));
}

fn user_record(id: &UserId, u: &UserEntry) -> Option<UserRecord> {
    let (username, hash) = u.cold()?.credentials.as_ref()?;
    Some(UserRecord {
        id: id.clone(),
        username: username.clone(),
        password_hash: hash.clone(),
        epoch: u.epoch().epoch,
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
    events: Arc<Mutex<EventLog>>,
    throttle: Arc<ThrottleTable>,
}

/// An audit log in memory.
#[derive(Debug, Default)]
pub struct EventLog {
    last_id: u64,
    events: Vec<AuditEvent>,
}

impl EventLog {
    /// Appends `event`, assigning the next id.
    pub fn append(&mut self, mut event: AuditEvent) -> u64 {
        self.last_id += 1;
        event.id = self.last_id;
        self.events.push(event);
        self.last_id
    }

    /// See [`Store::list_events`].
    pub fn list(&self, query: &EventQuery) -> Vec<AuditEvent> {
        let matching = |e: &&AuditEvent| query.matches(e);
        if query.newest_first {
            let it = self.events.iter().rev().filter(matching);
            it.take(query.page_size()).cloned().collect()
        } else {
            let it = self.events.iter().filter(matching);
            it.take(query.page_size()).cloned().collect()
        }
    }

    /// See [`Store::purge_events`].
    pub fn purge(&mut self, cutoff: Timestamp) -> u64 {
        let before = self.events.len();
        self.events.retain(|e| e.at >= cutoff);
        (before - self.events.len()) as u64
    }
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
    async fn insert_session(
        &self,
        record: SessionRecord,
        limit: SessionLimit,
    ) -> StoreResult<Vec<SessionId>> {
        self.index.insert_session(record, limit)
    }

    async fn rotate_session_token(
        &self,
        id: &SessionId,
        expected: VerifierHash,
        rotation: TokenRotation,
    ) -> StoreResult<bool> {
        Ok(self.index.rotate_session_token(id, expected, rotation))
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
        bump: EpochBump,
        keep: Option<&SessionId>,
    ) -> StoreResult<UserEpoch> {
        Ok(self.index.revoke_user_sessions(user, bump, keep))
    }

    async fn user_epoch(&self, user: &UserId) -> StoreResult<UserEpoch> {
        Ok(self.index.user_epoch(user))
    }

    async fn list_user_sessions(&self, user: &UserId) -> StoreResult<Vec<SessionRecord>> {
        Ok(self.index.list_user_sessions(user))
    }

    async fn purge(&self, cutoff: Timestamp) -> StoreResult<Purged> {
        self.throttle.purge(cutoff);
        Ok(self.index.purge(cutoff))
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
        bump: EpochBump,
    ) -> StoreResult<UserEpoch> {
        self.index.set_password(id, password_hash, bump)
    }

    async fn insert_refresh(&self, record: RefreshState) -> StoreResult<()> {
        self.index.insert_refresh(record)
    }

    async fn load_refresh(&self, id: &TokenId) -> StoreResult<Option<RefreshState>> {
        Ok(self.index.load_refresh(id))
    }

    async fn rotate_refresh(
        &self,
        id: &TokenId,
        rotation: Rotation,
        successor: RefreshState,
    ) -> StoreResult<Option<Rotation>> {
        self.index.rotate_refresh(id, rotation, successor)
    }

    async fn insert_api_token(&self, record: ApiTokenRecord) -> StoreResult<()> {
        self.index.insert_api_token(record)
    }

    async fn load_api_token(
        &self,
        id: &TokenId,
    ) -> StoreResult<Option<(ApiTokenRecord, UserEpoch)>> {
        Ok(self.index.load_api_token(id))
    }

    async fn touch_api_token(&self, id: &TokenId, used_at: Timestamp) -> StoreResult<()> {
        self.index.touch_api_token(id, used_at);
        Ok(())
    }

    async fn revoke_api_token(&self, id: &TokenId, revocation: Revocation) -> StoreResult<bool> {
        Ok(self.index.revoke_api_token(id, revocation))
    }

    async fn list_user_api_tokens(&self, user: &UserId) -> StoreResult<Vec<ApiTokenRecord>> {
        Ok(self.index.list_user_api_tokens(user))
    }

    async fn user_access(&self, user: &UserId) -> StoreResult<UserAccess> {
        Ok(self.index.user_access(user))
    }

    async fn set_user_access(&self, user: &UserId, access: UserAccess) -> StoreResult<UserEpoch> {
        Ok(self.index.set_user_access(user, access))
    }

    async fn append_event(&self, event: AuditEvent) -> StoreResult<u64> {
        Ok(self.events().append(event))
    }

    async fn list_events(&self, query: &EventQuery) -> StoreResult<Vec<AuditEvent>> {
        Ok(self.events().list(query))
    }

    async fn purge_events(&self, cutoff: Timestamp) -> StoreResult<u64> {
        Ok(self.events().purge(cutoff))
    }

    /// Always ready: the memory store has nothing to reach and loses nothing on
    /// its own.
    async fn ready(&self) -> StoreResult<()> {
        Ok(())
    }

    async fn throttle_attempt(
        &self,
        key: &ThrottleKey,
        limit: ThrottleLimit,
        now: Timestamp,
        create: bool,
    ) -> StoreResult<Attempt> {
        Ok(self.throttle.attempt(key, &limit, now, create))
    }

    async fn throttle_settle(
        &self,
        key: &ThrottleKey,
        settle: Settle,
        now: Timestamp,
    ) -> StoreResult<()> {
        self.throttle.settle(key, settle, now);
        Ok(())
    }
}

impl MemoryStore {
    fn events(&self) -> std::sync::MutexGuard<'_, EventLog> {
        self.events.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_ids_that_differ_in_any_byte_hash_apart() {
        use std::hash::BuildHasher as _;
        let build = BuildHasherDefault::<IdHasher>::default();
        let hash = |id: &TokenId| build.hash_one(id);
        let base = TokenId::from_bytes([7; 16]);
        let mut seen = std::collections::HashSet::new();
        seen.insert(hash(&base) & 0xffff);
        for byte in 0..16 {
            let mut b = *base.as_bytes();
            b[byte] ^= 1;
            // The low bits (the bucket) move whichever byte changed.
            assert!(
                seen.insert(hash(&TokenId::from_bytes(b)) & 0xffff),
                "byte {byte}"
            );
        }
    }
    use std::mem::size_of;

    // The index holds every session in memory: these sizes are what a live session
    // costs (plus the map's slack), so a field added inline must be a decision.
    #[test]
    fn a_session_and_a_user_stay_small() {
        assert!(size_of::<Slot>() <= 136, "Slot: {}", size_of::<Slot>());
        assert!(
            size_of::<UserEntry>() <= 40,
            "UserEntry: {}",
            size_of::<UserEntry>()
        );
    }

    #[test]
    fn a_slot_gives_back_the_record_it_was_made_from() {
        let state = |profile: Option<ProfileName>, previous: Option<ReplacedToken>| SessionState {
            id: SessionId::random(),
            verifier_hash: VerifierHash::from_bytes([1; 32]),
            user_id: UserId::new("u_slot").unwrap(),
            epoch: 2,
            created_at: Timestamp::from_millis(1),
            last_seen_at: Timestamp::from_millis(2),
            idle_deadline: Timestamp::from_millis(3),
            absolute_deadline: Timestamp::from_millis(4),
            revoked: None,
            profile,
            privileges: 5,
            token_issued_at: Timestamp::from_millis(1),
            elevated_until: None,
            previous,
            displaced_by: None,
            csrf_basis: None,
        };
        let plain = SessionRecord {
            state: state(None, None),
            client: ClientInfo::default(),
        };
        let slot = Slot::new(plain.clone());
        assert!(slot.rare.is_none() && slot.client.is_none());
        assert_eq!(slot.record(plain.state.id), plain);

        let rich = SessionRecord {
            state: state(
                Some(ProfileName::new("admin").unwrap()),
                Some(ReplacedToken {
                    verifier_hash: VerifierHash::from_bytes([2; 32]),
                    valid_until: Timestamp::from_millis(9),
                    reason: Reason::Renewed,
                }),
            ),
            client: ClientInfo::new(Some("agent"), None),
        };
        let slot = Slot::new(rich.clone());
        assert!(slot.rare.is_some() && slot.client.is_some());
        assert_eq!(slot.record(rich.state.id), rich);
    }
}
