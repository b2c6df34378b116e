//! The in-memory store.
//!
//! [`MemoryIndex`] is the synchronous data structure; [`MemoryStore`] exposes it
//! through the [`Store`] trait. Durable backends may keep a `MemoryIndex` as their
//! read path and write through to disk, applying each change here only after it is
//! durable.
//!
//! # Layout
//!
//! A session check is one lookup in this index, and with many sessions it costs
//! cache misses more than instructions, so the index is laid out for that lookup
//! and for the memory a live session takes:
//!
//! - sessions live in a slab of fixed-size slots (96 bytes); a hash table of
//!   4-byte slab positions finds a slot by its session id;
//! - users live in a second slab; a slot holds its user's position, so a check
//!   reaches the user (id and epoch) without a second hash lookup;
//! - a user's sessions form a circular list threaded through their slots, so a
//!   user needs no list of its own;
//! - what most sessions and users never have — a revocation, a rotation, a
//!   profile, client metadata, an epoch bump, credentials — sits aside and costs
//!   nothing until it is set.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use hashbrown::HashTable;

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

/// A position in one of the index's slabs ([`Sessions::slots`],
/// [`Users::entries`], [`Users::cold`]).
type Ix = u32;

/// No position: the user of a vacant slot, a user without sessions or without
/// cold data.
const NIL: Ix = Ix::MAX;

fn to_ix(len: usize) -> Ix {
    Ix::try_from(len)
        .ok()
        .filter(|&ix| ix != NIL)
        .expect("an index holds fewer than 2^32 - 1 sessions or users (it would need 400 GB)")
}

fn at(ix: Ix) -> usize {
    ix as usize
}

/// Every session record, found by id.
#[derive(Debug, Default)]
struct Sessions {
    /// Positions in `slots`, hashed by their session id ([`id_hash`]).
    table: HashTable<Ix>,
    slots: Vec<Slot>,
    /// Positions of vacant slots (purged sessions), filled first.
    vacant: Vec<Ix>,
    /// Client metadata of the sessions that have some, by slot position: only
    /// the list of a user's sessions shows it, so it stays out of the slot.
    clients: HashMap<Ix, ClientInfo, BuildHasherDefault<IdHasher>>,
}

impl Sessions {
    fn find(&self, id: &SessionId) -> Option<Ix> {
        let slots = &self.slots;
        self.table
            .find(id_hash(id), |&ix| slots[at(ix)].id == *id)
            .copied()
    }

    fn get(&self, id: &SessionId) -> Option<&Slot> {
        self.find(id).map(|ix| &self.slots[at(ix)])
    }

    fn get_mut(&mut self, id: &SessionId) -> Option<&mut Slot> {
        let ix = self.find(id)?;
        Some(&mut self.slots[at(ix)])
    }

    fn len(&self) -> usize {
        self.table.len()
    }

    /// Stores `slot`, whose id is not stored yet, and returns its position.
    fn insert(&mut self, slot: Slot, client: ClientInfo) -> Ix {
        let hash = id_hash(&slot.id);
        let ix = match self.vacant.pop() {
            Some(ix) => {
                self.slots[at(ix)] = slot;
                ix
            }
            None => {
                let ix = to_ix(self.slots.len());
                self.slots.push(slot);
                ix
            }
        };
        let Sessions { table, slots, .. } = self;
        table.insert_unique(hash, ix, |&i| id_hash(&slots[at(i)].id));
        if client != ClientInfo::default() {
            self.clients.insert(ix, client);
        }
        ix
    }

    /// Forgets the session at `ix` and makes its slot vacant. The caller has
    /// unlinked it from its user's list.
    fn free(&mut self, ix: Ix) {
        let id = self.slots[at(ix)].id;
        if let Ok(entry) = self.table.find_entry(id_hash(&id), |&i| i == ix) {
            entry.remove();
        }
        let slot = &mut self.slots[at(ix)];
        slot.user = NIL;
        slot.rare = None;
        self.clients.remove(&ix);
        self.vacant.push(ix);
    }

    fn client(&self, ix: Ix) -> ClientInfo {
        self.clients.get(&ix).cloned().unwrap_or_default()
    }
}

/// A session as the index keeps it: what every check reads, in 96 bytes. The
/// rarely set fields are in [`Rare`]; [`Slot::state`] rebuilds the
/// [`SessionState`] the engine works with.
#[derive(Debug)]
struct Slot {
    id: SessionId,
    verifier_hash: VerifierHash,
    created_at: Timestamp,
    /// `last_seen_at`, `idle_deadline`, `absolute_deadline` and
    /// `token_issued_at` in milliseconds after `created_at` — unless
    /// [`Rare::wide`] holds the session's numbers.
    after: [u32; 4],
    /// The session's epoch and privilege count, unless [`Rare::wide`] holds them.
    epoch: u32,
    privileges: u32,
    /// The user's position in [`Users::entries`]; `NIL` while the slot is vacant.
    user: Ix,
    /// The user's next session: a user's sessions form a circular list, oldest
    /// first, whose newest session's `next` is the oldest.
    next: Ix,
    rare: Option<Box<Rare>>,
}

/// What most sessions never have.
#[derive(Debug, Default)]
struct Rare {
    revoked: Option<Revocation>,
    profile: Option<ProfileName>,
    elevated_until: Option<Timestamp>,
    previous: Option<ReplacedToken>,
    displaced_by: Option<Box<ClientInfo>>,
    csrf_basis: Option<VerifierHash>,
    /// The session's numbers, when one does not fit the slot's narrow fields (a
    /// deadline 50 days or more after login, a clock that went back, an epoch
    /// or privilege count of 2^32 or more).
    wide: Option<Box<Numbers>>,
}

impl Rare {
    fn is_empty(&self) -> bool {
        self.revoked.is_none()
            && self.profile.is_none()
            && self.elevated_until.is_none()
            && self.previous.is_none()
            && self.displaced_by.is_none()
            && self.csrf_basis.is_none()
            && self.wide.is_none()
    }
}

/// The numbers of a session, exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Numbers {
    created_at: Timestamp,
    last_seen_at: Timestamp,
    idle_deadline: Timestamp,
    absolute_deadline: Timestamp,
    token_issued_at: Timestamp,
    epoch: u64,
    privileges: u64,
}

impl Numbers {
    /// The slot's narrow form (`after`, `epoch`, `privileges`), if every number fits.
    fn narrow(&self) -> Option<([u32; 4], u32, u32)> {
        let created = self.created_at.as_millis();
        let after = |t: Timestamp| u32::try_from(t.as_millis().checked_sub(created)?).ok();
        Some((
            [
                after(self.last_seen_at)?,
                after(self.idle_deadline)?,
                after(self.absolute_deadline)?,
                after(self.token_issued_at)?,
            ],
            u32::try_from(self.epoch).ok()?,
            u32::try_from(self.privileges).ok()?,
        ))
    }
}

impl Slot {
    fn new(s: SessionState, user: Ix) -> Slot {
        let SessionState {
            id,
            verifier_hash,
            user_id: _,
            epoch,
            created_at,
            last_seen_at,
            idle_deadline,
            absolute_deadline,
            revoked,
            profile,
            privileges,
            token_issued_at,
            elevated_until,
            previous,
            displaced_by,
            csrf_basis,
        } = s;
        let rare = Rare {
            revoked,
            profile,
            elevated_until,
            previous,
            displaced_by,
            csrf_basis,
            wide: None,
        };
        let mut slot = Slot {
            id,
            verifier_hash,
            created_at,
            after: [0; 4],
            epoch: 0,
            privileges: 0,
            user,
            next: NIL,
            rare: (!rare.is_empty()).then(|| Box::new(rare)),
        };
        slot.set_numbers(Numbers {
            created_at,
            last_seen_at,
            idle_deadline,
            absolute_deadline,
            token_issued_at,
            epoch,
            privileges,
        });
        slot
    }

    fn numbers(&self) -> Numbers {
        if let Some(wide) = self.rare.as_deref().and_then(|r| r.wide.as_deref()) {
            return *wide;
        }
        // Exact: each offset was taken from a timestamp in range.
        let at = |k: usize| {
            Timestamp::from_millis(self.created_at.as_millis() + i64::from(self.after[k]))
        };
        Numbers {
            created_at: self.created_at,
            last_seen_at: at(0),
            idle_deadline: at(1),
            absolute_deadline: at(2),
            token_issued_at: at(3),
            epoch: self.epoch.into(),
            privileges: self.privileges.into(),
        }
    }

    fn set_numbers(&mut self, n: Numbers) {
        self.created_at = n.created_at;
        if let Some((after, epoch, privileges)) = n.narrow() {
            (self.after, self.epoch, self.privileges) = (after, epoch, privileges);
            if let Some(rare) = self.rare.as_deref_mut() {
                rare.wide = None;
                if rare.is_empty() {
                    self.rare = None;
                }
            }
        } else {
            (self.after, self.epoch, self.privileges) = ([0; 4], 0, 0);
            self.rare_mut().wide = Some(Box::new(n));
        }
    }

    fn update(&mut self, change: impl FnOnce(&mut Numbers)) {
        let mut n = self.numbers();
        change(&mut n);
        self.set_numbers(n);
    }

    fn revoked(&self) -> Option<Revocation> {
        self.rare.as_deref().and_then(|r| r.revoked)
    }

    fn rare_mut(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    fn state(&self, user_id: UserId) -> SessionState {
        let n = self.numbers();
        let rare = self.rare.as_deref();
        SessionState {
            id: self.id,
            verifier_hash: self.verifier_hash,
            user_id,
            epoch: n.epoch,
            created_at: n.created_at,
            last_seen_at: n.last_seen_at,
            idle_deadline: n.idle_deadline,
            absolute_deadline: n.absolute_deadline,
            revoked: rare.and_then(|r| r.revoked),
            profile: rare.and_then(|r| r.profile.clone()),
            privileges: n.privileges,
            token_issued_at: n.token_issued_at,
            elevated_until: rare.and_then(|r| r.elevated_until),
            previous: rare.and_then(|r| r.previous),
            displaced_by: rare.and_then(|r| r.displaced_by.clone()),
            csrf_basis: rare.and_then(|r| r.csrf_basis),
        }
    }
}

/// Every user that has, or had, a session, a token, credentials, an epoch or
/// access: found by id, never forgotten (their epochs must outlive their
/// sessions).
#[derive(Debug, Default)]
struct Users {
    /// Positions in `entries`, hashed by user id with a keyed hash: apps and
    /// clients choose user ids, so they could choose colliding ones.
    table: HashTable<Ix>,
    entries: Vec<UserEntry>,
    cold: Vec<UserCold>,
    hasher: RandomState,
}

/// A user as the index keeps it: 24 bytes until the user has an epoch bump,
/// access, credentials or API tokens ([`UserCold`]).
#[derive(Debug)]
struct UserEntry {
    id: UserId,
    /// The user's newest session (its `next` is the oldest); `NIL` if none.
    last: Ix,
    /// Position in [`Users::cold`]; `NIL` while the user has none.
    cold: Ix,
}

#[derive(Debug, Default)]
struct UserCold {
    epoch: UserEpoch,
    access: UserAccess,
    credentials: Option<(String, PasswordHash)>,
    api_tokens: Vec<TokenId>,
}

impl Users {
    fn find(&self, id: &UserId) -> Option<Ix> {
        let entries = &self.entries;
        self.table
            .find(self.hasher.hash_one(id), |&ix| entries[at(ix)].id == *id)
            .copied()
    }

    /// The user's position, adding the user if it is new.
    fn entry(&mut self, id: &UserId) -> Ix {
        if let Some(ix) = self.find(id) {
            return ix;
        }
        let ix = to_ix(self.entries.len());
        self.entries.push(UserEntry {
            id: id.clone(),
            last: NIL,
            cold: NIL,
        });
        let Users {
            table,
            entries,
            hasher,
            ..
        } = self;
        table.insert_unique(hasher.hash_one(id), ix, |&i| {
            hasher.hash_one(&entries[at(i)].id)
        });
        ix
    }

    fn cold(&self, u: Ix) -> Option<&UserCold> {
        self.cold.get(at(self.entries[at(u)].cold))
    }

    fn cold_of(&self, id: &UserId) -> Option<&UserCold> {
        self.find(id).and_then(|u| self.cold(u))
    }

    /// The user's cold data, created empty if it has none.
    fn cold_mut(&mut self, u: Ix) -> &mut UserCold {
        let entry = &mut self.entries[at(u)];
        if entry.cold == NIL {
            entry.cold = to_ix(self.cold.len());
            self.cold.push(UserCold::default());
        }
        &mut self.cold[at(entry.cold)]
    }

    fn epoch(&self, u: Ix) -> UserEpoch {
        self.cold(u).map(|c| c.epoch).unwrap_or_default()
    }

    fn epoch_of(&self, id: &UserId) -> UserEpoch {
        self.cold_of(id).map(|c| c.epoch).unwrap_or_default()
    }
}

#[derive(Debug, Default)]
struct Inner {
    sessions: Sessions,
    users: Users,
    usernames: HashMap<String, UserId>,
    refresh: IdMap<RefreshState>,
    api_tokens: IdMap<ApiTokenRecord>,
}

impl Inner {
    /// The positions of user `u`'s sessions, oldest first.
    fn sessions_of(&self, u: Ix) -> impl Iterator<Item = Ix> + '_ {
        let last = self.users.entries[at(u)].last;
        let slots = &self.sessions.slots;
        let mut next = if last == NIL {
            NIL
        } else {
            slots[at(last)].next
        };
        std::iter::from_fn(move || {
            let this = next;
            if this == NIL {
                return None;
            }
            next = if this == last {
                NIL
            } else {
                slots[at(this)].next
            };
            Some(this)
        })
    }

    /// Makes the slot at `ix` user `u`'s newest session.
    fn link(&mut self, u: Ix, ix: Ix) {
        let last = &mut self.users.entries[at(u)].last;
        let slots = &mut self.sessions.slots;
        if *last == NIL {
            slots[at(ix)].next = ix;
        } else {
            slots[at(ix)].next = slots[at(*last)].next;
            slots[at(*last)].next = ix;
        }
        *last = ix;
    }

    /// Stores `record` under its user (adding the user if new); its id is not
    /// stored yet.
    fn insert(&mut self, record: SessionRecord) {
        let u = self.users.entry(&record.state.user_id);
        let ix = self
            .sessions
            .insert(Slot::new(record.state, u), record.client);
        self.link(u, ix);
    }

    /// Forgets the sessions at `doomed` (distinct positions of stored sessions)
    /// and closes their users' lists over the gaps, in one walk per user.
    fn remove(&mut self, doomed: &[Ix]) {
        let mut users: Vec<Ix> = doomed
            .iter()
            .map(|&ix| self.sessions.slots[at(ix)].user)
            .collect();
        users.sort_unstable();
        users.dedup();
        for &ix in doomed {
            self.sessions.slots[at(ix)].user = NIL;
        }
        for u in users {
            // The marked slots still point along the old list.
            let kept: Vec<Ix> = self
                .sessions_of(u)
                .filter(|&ix| self.sessions.slots[at(ix)].user != NIL)
                .collect();
            self.users.entries[at(u)].last = NIL;
            for ix in kept {
                self.link(u, ix);
            }
        }
        for &ix in doomed {
            self.sessions.free(ix);
        }
    }

    fn state(&self, ix: Ix) -> SessionState {
        let slot = &self.sessions.slots[at(ix)];
        slot.state(self.users.entries[at(slot.user)].id.clone())
    }

    fn record(&self, ix: Ix) -> SessionRecord {
        SessionRecord {
            state: self.state(ix),
            client: self.sessions.client(ix),
        }
    }
}

/// A map keyed by token ids, hashed by [`IdHasher`].
type IdMap<V> = HashMap<TokenId, V, BuildHasherDefault<IdHasher>>;

/// The hash of a token id (of a session's slot position, for the client map):
/// its bytes folded with a multiply (no key). Every stored id was minted by the
/// engine from the OS CSPRNG, so stored keys are spread evenly whatever this
/// function; a client can only choose the ids it *looks up*, each lookup costing
/// one probe sequence as any other. So the keyed SipHash, there to stop a client
/// from filling a map with colliding keys, buys nothing here, and costs a fair
/// share of a session check. (Maps keyed by what clients or apps choose — user
/// ids, usernames — keep SipHash.)
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

fn id_hash(id: &TokenId) -> u64 {
    BuildHasherDefault::<IdHasher>::default().hash_one(id)
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
            Some(s) if s.revoked().is_none() && s.verifier_hash.ct_eq(&expected) => {
                s.verifier_hash = rotation.verifier_hash;
                let rare = s.rare_mut();
                rare.previous = Some(rotation.previous);
                rare.elevated_until = rotation.elevated_until;
                rare.profile = rotation.profile;
                rare.csrf_basis = Some(rotation.csrf_basis);
                s.update(|n| {
                    n.token_issued_at = rotation.issued_at;
                    n.privileges = rotation.privileges;
                    n.idle_deadline = rotation.idle_deadline;
                    n.absolute_deadline = rotation.absolute_deadline;
                    n.last_seen_at = n.last_seen_at.max(rotation.issued_at);
                });
                true
            }
            _ => false,
        }
    }

    /// Whether [`MemoryIndex::rotate_session_token`] would rotate now.
    pub fn can_rotate(&self, id: &SessionId, expected: VerifierHash) -> bool {
        matches!(
            self.read().sessions.get(id),
            Some(s) if s.revoked().is_none() && s.verifier_hash.ct_eq(&expected)
        )
    }

    /// See [`Store::user_access`].
    pub fn user_access(&self, user: &UserId) -> UserAccess {
        self.read()
            .users
            .cold_of(user)
            .map(|c| c.access.clone())
            .unwrap_or_default()
    }

    /// See [`Store::set_user_access`].
    pub fn set_user_access(&self, user: &UserId, access: UserAccess) -> UserEpoch {
        let mut g = self.write();
        let u = g.users.entry(user);
        let cold = g.users.cold_mut(u);
        cold.access = access;
        cold.epoch.privileges += 1;
        cold.epoch
    }

    /// See [`Store::load_session`].
    pub fn load_session(&self, id: &SessionId) -> Option<(SessionState, UserEpoch)> {
        let g = self.read();
        let ix = g.sessions.find(id)?;
        let user = g.sessions.slots[at(ix)].user;
        Some((g.state(ix), g.users.epoch(user)))
    }

    /// See [`Store::touch_session`].
    pub fn touch_session(&self, id: &SessionId, seen_at: Timestamp, idle_deadline: Timestamp) {
        let mut g = self.write();
        if let Some(s) = g.sessions.get_mut(id)
            && s.revoked().is_none()
            && idle_deadline > s.numbers().idle_deadline
        {
            s.update(|n| {
                n.idle_deadline = idle_deadline;
                n.last_seen_at = n.last_seen_at.max(seen_at);
            });
        }
    }

    /// See [`Store::revoke_session`].
    pub fn revoke_session(&self, id: &SessionId, revocation: Revocation) -> bool {
        let mut g = self.write();
        match g.sessions.get_mut(id) {
            Some(s) if s.revoked().is_none() => {
                s.rare_mut().revoked = Some(revocation);
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
        let u = inner.users.entry(user);
        let old = inner.users.epoch(u);
        let new = old.bumped(bump);
        inner.users.cold_mut(u).epoch = new;
        if let Some(s) = keep.and_then(|k| inner.sessions.get_mut(k))
            && s.user == u
            && s.revoked().is_none()
            && s.numbers().epoch == old.epoch
        {
            s.update(|n| n.epoch = new.epoch);
        }
        new
    }

    /// See [`Store::user_epoch`].
    pub fn user_epoch(&self, user: &UserId) -> UserEpoch {
        self.read().users.epoch_of(user)
    }

    /// See [`Store::list_user_sessions`].
    pub fn list_user_sessions(&self, user: &UserId) -> Vec<SessionRecord> {
        let g = self.read();
        g.users
            .find(user)
            .map(|u| g.sessions_of(u).map(|ix| g.record(ix)).collect())
            .unwrap_or_default()
    }

    /// What [`MemoryIndex::purge`] would delete for `cutoff`.
    pub fn purgeable(&self, cutoff: Timestamp) -> Purgeable {
        let g = self.read();
        let sessions: Vec<SessionId> = g
            .sessions
            .slots
            .iter()
            .filter(|s| s.user != NIL && s.numbers().idle_deadline <= cutoff)
            .map(|s| s.id)
            .collect();
        let refresh_tokens = g
            .refresh
            .values()
            .filter(|r| {
                g.sessions
                    .get(&r.session_id)
                    .is_none_or(|s| s.numbers().idle_deadline <= cutoff)
            })
            .map(|r| r.id)
            .collect();
        let api_tokens = g
            .api_tokens
            .values()
            .filter(|t| t.ends_at(&g.users.epoch_of(&t.user_id)) <= cutoff)
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
        let mut sessions: Vec<Ix> = doomed
            .sessions
            .iter()
            .filter_map(|id| inner.sessions.find(id))
            .collect();
        sessions.sort_unstable();
        sessions.dedup();
        inner.remove(&sessions);
        purged.sessions = sessions.len() as u64;
        for id in &doomed.refresh_tokens {
            purged.refresh_tokens += u64::from(inner.refresh.remove(id).is_some());
        }
        for id in &doomed.api_tokens {
            purged.api_tokens += u64::from(inner.api_tokens.remove(id).is_some());
        }
        if purged.api_tokens > 0 {
            let tokens = &inner.api_tokens;
            for cold in &mut inner.users.cold {
                cold.api_tokens.retain(|id| tokens.contains_key(id));
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
        if inner.users.epoch_of(&record.user_id).epoch != record.epoch {
            return Err(StoreError::EpochMoved);
        }
        let u = inner.users.entry(&record.user_id);
        inner.users.cold_mut(u).api_tokens.push(record.id);
        inner.api_tokens.insert(record.id, record);
        Ok(())
    }

    /// See [`Store::load_api_token`].
    pub fn load_api_token(&self, id: &TokenId) -> Option<(ApiTokenRecord, UserEpoch)> {
        let g = self.read();
        let t = g.api_tokens.get(id)?;
        Some((t.clone(), g.users.epoch_of(&t.user_id)))
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
            .cold_of(user)
            .map(|c| {
                c.api_tokens
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
        let u = inner.users.entry(&record.user_id);
        let cold = inner.users.cold_mut(u);
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
        let u = inner.users.entry(id);
        inner.users.cold_mut(u).credentials = Some((username.to_owned(), password_hash));
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
        if inner
            .users
            .cold_of(id)
            .is_some_and(|c| c.credentials.is_some())
        {
            return Err(StoreError::Conflict("user"));
        }
        let u = inner.users.entry(id);
        inner.users.cold_mut(u).credentials = Some((username.to_owned(), password_hash));
        inner.usernames.insert(username.to_owned(), id.clone());
        Ok(())
    }

    /// See [`Store::find_user_by_username`].
    pub fn find_user_by_username(&self, username: &str) -> Option<UserRecord> {
        let g = self.read();
        let id = g.usernames.get(username)?;
        user_record(id, g.users.cold_of(id)?)
    }

    /// See [`Store::get_user`].
    pub fn get_user(&self, id: &UserId) -> Option<UserRecord> {
        user_record(id, self.read().users.cold_of(id)?)
    }

    /// See [`Store::set_password`].
    pub fn set_password(
        &self,
        id: &UserId,
        password_hash: PasswordHash,
        bump: EpochBump,
    ) -> StoreResult<UserEpoch> {
        let mut g = self.write();
        let Some(u) = g.users.find(id) else {
            return Err(StoreError::NotFound("user"));
        };
        let cold = g.users.cold_mut(u);
        let Some((_, hash)) = cold.credentials.as_mut() else {
            return Err(StoreError::NotFound("user"));
        };
        *hash = password_hash;
        cold.epoch = cold.epoch.bumped(bump);
        Ok(cold.epoch)
    }

    /// Loads a record as it was persisted, bypassing the epoch check: for durable
    /// stores rebuilding the index at start-up. Replaces any record with the same id.
    pub fn restore_session(&self, record: SessionRecord) {
        let mut g = self.write();
        if let Some(ix) = g.sessions.find(&record.state.id) {
            g.remove(&[ix]);
        }
        g.insert(record);
    }

    /// Sets a user's epoch as it was persisted: for durable stores at start-up.
    pub fn restore_epoch(&self, user: &UserId, epoch: UserEpoch) {
        let mut g = self.write();
        let u = g.users.entry(user);
        g.users.cold_mut(u).epoch = epoch;
    }

    /// Sets a user's profile and roles as persisted: for durable stores at start-up.
    pub fn restore_access(&self, user: &UserId, access: UserAccess) {
        let mut g = self.write();
        let u = g.users.entry(user);
        g.users.cold_mut(u).access = access;
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
    if inner.sessions.find(&s.id).is_some() {
        return Err(StoreError::Conflict("session"));
    }
    let user = inner.users.find(&s.user_id);
    let epoch = user.map(|u| inner.users.epoch(u)).unwrap_or_default();
    if epoch.epoch != s.epoch {
        return Err(StoreError::EpochMoved);
    }
    let max = usize::try_from(limit.max).unwrap_or(usize::MAX);
    if max == 0 {
        return Ok(Vec::new());
    }
    let mut live: Vec<SessionState> = user
        .into_iter()
        .flat_map(|u| inner.sessions_of(u))
        .map(|ix| inner.state(ix))
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
            && old.revoked().is_none()
        {
            let rare = old.rare_mut();
            rare.revoked = Some(Revocation {
                reason: Reason::Displaced,
                at,
            });
            rare.displaced_by = Some(Box::new(record.client.clone()));
        }
    }
    inner.insert(record);
}

fn user_record(id: &UserId, cold: &UserCold) -> Option<UserRecord> {
    let (username, hash) = cold.credentials.as_ref()?;
    Some(UserRecord {
        id: id.clone(),
        username: username.clone(),
        password_hash: hash.clone(),
        epoch: cold.epoch.epoch,
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
    use std::mem::size_of;

    #[test]
    fn token_ids_that_differ_in_any_byte_hash_apart() {
        let base = TokenId::from_bytes([7; 16]);
        let mut seen = std::collections::HashSet::new();
        seen.insert(id_hash(&base) & 0xffff);
        for byte in 0..16 {
            let mut b = *base.as_bytes();
            b[byte] ^= 1;
            // The low bits (the bucket) move whichever byte changed.
            assert!(
                seen.insert(id_hash(&TokenId::from_bytes(b)) & 0xffff),
                "byte {byte}"
            );
        }
    }

    // The index holds every session in memory: these sizes are what a live session
    // costs (plus the tables' 4-byte positions and slack), so a field added inline
    // must be a decision.
    #[test]
    fn a_session_and_a_user_stay_small() {
        assert!(size_of::<Slot>() <= 96, "Slot: {}", size_of::<Slot>());
        assert!(
            size_of::<UserEntry>() <= 24,
            "UserEntry: {}",
            size_of::<UserEntry>()
        );
    }

    fn state(n: Numbers) -> SessionState {
        SessionState {
            id: SessionId::random(),
            verifier_hash: VerifierHash::from_bytes([1; 32]),
            user_id: UserId::new("u_slot").unwrap(),
            epoch: n.epoch,
            created_at: n.created_at,
            last_seen_at: n.last_seen_at,
            idle_deadline: n.idle_deadline,
            absolute_deadline: n.absolute_deadline,
            revoked: None,
            profile: None,
            privileges: n.privileges,
            token_issued_at: n.token_issued_at,
            elevated_until: None,
            previous: None,
            displaced_by: None,
            csrf_basis: None,
        }
    }

    const PLAIN: Numbers = Numbers {
        created_at: Timestamp::from_millis(1_800_000_000_000),
        last_seen_at: Timestamp::from_millis(1_800_000_000_001),
        idle_deadline: Timestamp::from_millis(1_800_000_000_002),
        absolute_deadline: Timestamp::from_millis(1_800_000_000_003),
        token_issued_at: Timestamp::from_millis(1_800_000_000_000),
        epoch: 2,
        privileges: 5,
    };

    #[test]
    fn a_slot_gives_back_the_record_it_was_made_from() {
        let plain = state(PLAIN);
        let slot = Slot::new(plain.clone(), 0);
        assert!(slot.rare.is_none(), "nothing rare in a fresh session");
        assert_eq!(slot.state(plain.user_id.clone()), plain);

        let mut rich = state(PLAIN);
        rich.profile = Some(ProfileName::new("admin").unwrap());
        rich.previous = Some(ReplacedToken {
            verifier_hash: VerifierHash::from_bytes([2; 32]),
            valid_until: Timestamp::from_millis(9),
            reason: Reason::Renewed,
        });
        rich.revoked = Some(Revocation {
            reason: Reason::LoggedOut,
            at: Timestamp::from_millis(7),
        });
        let slot = Slot::new(rich.clone(), 0);
        assert!(slot.rare.is_some());
        assert_eq!(slot.state(rich.user_id.clone()), rich);
    }

    #[test]
    fn numbers_that_do_not_fit_the_slot_are_kept_exactly() {
        let created = PLAIN.created_at;
        let far = created.saturating_add(std::time::Duration::from_secs(3_650 * 86_400));
        let cases = [
            // A ten-year absolute timeout: 2^32 ms is under 50 days.
            Numbers {
                absolute_deadline: far,
                ..PLAIN
            },
            // A clock that went back after login.
            Numbers {
                last_seen_at: Timestamp::from_millis(created.as_millis() - 1),
                ..PLAIN
            },
            Numbers {
                epoch: u64::from(u32::MAX) + 1,
                ..PLAIN
            },
            Numbers {
                privileges: u64::MAX,
                ..PLAIN
            },
            Numbers {
                created_at: Timestamp::from_millis(i64::MIN),
                last_seen_at: Timestamp::from_millis(i64::MAX),
                ..PLAIN
            },
        ];
        for n in cases {
            let s = state(n);
            let mut slot = Slot::new(s.clone(), 0);
            assert!(slot.rare.as_ref().is_some_and(|r| r.wide.is_some()));
            assert_eq!(slot.state(s.user_id.clone()), s, "{n:?}");
            // Back within range: narrow again, and nothing rare is left.
            slot.set_numbers(PLAIN);
            assert!(slot.rare.is_none(), "{n:?}");
            assert_eq!(slot.numbers(), PLAIN);
        }
    }

    fn session(user: &UserId, at_ms: i64) -> SessionRecord {
        let mut s = state(Numbers {
            created_at: Timestamp::from_millis(at_ms),
            last_seen_at: Timestamp::from_millis(at_ms),
            idle_deadline: Timestamp::from_millis(at_ms + 10),
            absolute_deadline: Timestamp::from_millis(at_ms + 100),
            token_issued_at: Timestamp::from_millis(at_ms),
            epoch: 0,
            privileges: 0,
        });
        s.user_id = user.clone();
        SessionRecord {
            state: s,
            client: ClientInfo::default(),
        }
    }

    fn listed(index: &MemoryIndex, user: &UserId) -> Vec<SessionId> {
        index
            .list_user_sessions(user)
            .into_iter()
            .map(|r| r.state.id)
            .collect()
    }

    #[test]
    fn a_users_sessions_stay_listed_in_order_through_purges_and_reuse() {
        let index = MemoryIndex::new();
        let (alice, bob) = (UserId::new("alice").unwrap(), UserId::new("bob").unwrap());
        let a: Vec<SessionId> = (0..5)
            .map(|i| {
                let r = session(&alice, i * 100);
                let id = r.state.id;
                index.insert_session(r, SessionLimit::NONE).unwrap();
                id
            })
            .collect();
        let b = session(&bob, 0);
        let b_id = b.state.id;
        index.insert_session(b, SessionLimit::NONE).unwrap();
        assert_eq!(listed(&index, &alice), a);

        // The first, a middle and the last of alice's sessions end.
        let doomed = Purgeable {
            sessions: vec![a[0], a[2], a[4], a[2], SessionId::random()],
            ..Purgeable::default()
        };
        assert_eq!(index.delete(&doomed).sessions, 3);
        assert_eq!(listed(&index, &alice), vec![a[1], a[3]]);
        assert_eq!(listed(&index, &bob), vec![b_id]);
        assert!(index.load_session(&a[0]).is_none());
        assert_eq!(index.session_count(), 3);

        // New sessions fill the vacant slots and join the end of their user's list.
        let late = session(&alice, 900);
        let late_id = late.state.id;
        index.insert_session(late, SessionLimit::NONE).unwrap();
        assert_eq!(listed(&index, &alice), vec![a[1], a[3], late_id]);
        let (s, _) = index.load_session(&late_id).unwrap();
        assert_eq!(s.user_id, alice);

        // Every one of a user's sessions can go.
        let all = Purgeable {
            sessions: vec![a[1], a[3], late_id],
            ..Purgeable::default()
        };
        assert_eq!(index.delete(&all).sessions, 3);
        assert!(listed(&index, &alice).is_empty());
        let again = session(&alice, 1_000);
        let again_id = again.state.id;
        index.insert_session(again, SessionLimit::NONE).unwrap();
        assert_eq!(listed(&index, &alice), vec![again_id]);
        assert_eq!(listed(&index, &bob), vec![b_id]);
    }

    #[test]
    fn a_restored_session_replaces_the_record_with_its_id() {
        let index = MemoryIndex::new();
        let (alice, bob) = (UserId::new("alice").unwrap(), UserId::new("bob").unwrap());
        let first = session(&alice, 0);
        let id = first.state.id;
        index.restore_session(first);
        let mut moved = session(&bob, 50);
        moved.state.id = id;
        index.restore_session(moved.clone());
        assert_eq!(index.session_count(), 1);
        assert!(listed(&index, &alice).is_empty());
        assert_eq!(index.list_user_sessions(&bob), vec![moved]);
    }
}
