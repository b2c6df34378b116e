//! The storage contract every backend implements.
//!
//! Each method documents what it must do *atomically* and what must be *durable*
//! when it returns `Ok`. The conformance suite in `sessionguard-test-kit` checks
//! every backend against these contracts; there are no default methods, so a
//! backend cannot silently inherit a weaker behaviour.

use std::error::Error as StdError;
use std::future::Future;

use crate::audit::{AuditEvent, EventQuery};
use crate::clock::Timestamp;
use crate::model::{
    ApiTokenRecord, EpochBump, PasswordHash, RefreshState, Rotation, SessionId, SessionRecord,
    SessionState, TokenRotation, UserAccess, UserEpoch, UserId, UserRecord,
};
use crate::policy::SessionLimit;
use crate::reason::Revocation;
use crate::throttle::{Attempt, Settle, ThrottleKey, ThrottleLimit};
use crate::token::{TokenId, VerifierHash};

/// A failure of a store operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A record with this key already exists (`"session"`, `"username"`, `"user"`).
    #[error("{0} already exists")]
    Conflict(&'static str),
    /// The user's credential epoch is no longer the one the caller read.
    #[error("the user's credential epoch changed")]
    EpochMoved,
    /// The user already holds the most live sessions the policy allows, and the
    /// policy says to refuse new ones.
    #[error("the user has reached the concurrent-session limit")]
    LimitReached,
    /// The record the operation needs does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The backend failed (I/O, connection, disk full...). The operation may or may
    /// not have been applied; it was not acknowledged.
    #[error("store backend failed")]
    Backend(#[source] Box<dyn StdError + Send + Sync>),
    /// Stored data could not be decoded.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Wraps a backend error.
    pub fn backend(e: impl StdError + Send + Sync + 'static) -> Self {
        StoreError::Backend(Box::new(e))
    }
}

/// Result of store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// How many records a purge deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Session records.
    pub sessions: u64,
    /// Refresh-token records.
    pub refresh_tokens: u64,
    /// API-token records.
    pub api_tokens: u64,
}

/// Where sessions, refresh and API tokens, credential epochs and users live.
///
/// "Durable" below means: once the method returns `Ok`, the change survives a crash
/// of the process (and, for replicated backends, of one node).
///
/// Every record's id is in its user's [`crate::Shard`]
/// (`id.shard() == user.shard()`; the engine mints ids so): a distributed store may
/// rely on it to keep a user's records together, and may refuse records that
/// break it.
pub trait Store: Send + Sync + 'static {
    /// Adds a new session, enforcing the user's concurrent-session limit.
    ///
    /// Atomically: fails with [`StoreError::Conflict`]`("session")` if the id exists
    /// (a record is never overwritten); fails with [`StoreError::EpochMoved`] if
    /// `record.state.epoch` is not the user's current epoch (a password change won
    /// the race). Then, if `limit.max` is not 0 and the user already has `limit.max`
    /// or more sessions live at `record.state.created_at` (by [`crate::verdict`]):
    /// with `reject_new` fails with [`StoreError::LimitReached`]; with
    /// `evict_oldest` revokes the least recently seen of them (`last_seen_at`, then
    /// `created_at`, then id) until `limit.max - 1` remain, each with reason
    /// `displaced` at `created_at` and `displaced_by` set to `record.client`. Stores
    /// the record and indexes it under its user, and returns the displaced ids. So
    /// no number of simultaneous logins leaves more than `limit.max` live sessions.
    /// `record.state.revoked` is `None`. Durable.
    fn insert_session(
        &self,
        record: SessionRecord,
        limit: SessionLimit,
    ) -> impl Future<Output = StoreResult<Vec<SessionId>>> + Send;

    /// Replaces the token of session `id`, exactly once per token.
    ///
    /// Atomically: if the session exists, is not revoked and its `verifier_hash` is
    /// `expected`, sets `verifier_hash`, `token_issued_at`, `previous`,
    /// `elevated_until`, `profile`, `privileges`, `idle_deadline`,
    /// `absolute_deadline` and `csrf_basis` from `rotation` (and `last_seen_at` to `rotation.issued_at` if
    /// later) and returns
    /// `true`; otherwise changes nothing and returns `false` — so of simultaneous
    /// rotations of one token, exactly one wins. Durable.
    fn rotate_session_token(
        &self,
        id: &SessionId,
        expected: VerifierHash,
        rotation: TokenRotation,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// The session's state and its user's current epoch, or `None` if no record
    /// exists (never stored, or purged). On networked backends this is one round
    /// trip; it is the hot path.
    fn load_session(
        &self,
        id: &SessionId,
    ) -> impl Future<Output = StoreResult<Option<(SessionState, UserEpoch)>>> + Send;

    /// Records activity: sets `idle_deadline`, and `last_seen_at` to the later of
    /// the stored and the given time — only if the session exists, is not revoked,
    /// and `idle_deadline` is later than the stored one. Never revives, never
    /// shortens. May be buffered: losing a touch in a crash only ends a session
    /// earlier.
    fn touch_session(
        &self,
        id: &SessionId,
        seen_at: Timestamp,
        idle_deadline: Timestamp,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Revokes one session. Atomically sets `revoked` if it is not already set (the
    /// first reason wins) and returns whether this call revoked it; `false` also for
    /// an unknown id. Durable.
    fn revoke_session(
        &self,
        id: &SessionId,
        revocation: Revocation,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Ends every session of `user` in O(1) by bumping the credential epoch.
    ///
    /// Atomically: the user's epoch becomes [`UserEpoch::bumped`]`(bump)` (creating
    /// the user's epoch record if needed), which also raises the API-token floor
    /// when `bump.end_api_tokens`; if `keep` names an unrevoked session of this user
    /// that was current before the bump, it is carried to the new epoch and
    /// survives. Returns the new epoch. Durable.
    fn revoke_user_sessions(
        &self,
        user: &UserId,
        bump: EpochBump,
        keep: Option<&SessionId>,
    ) -> impl Future<Output = StoreResult<UserEpoch>> + Send;

    /// The user's current epoch (the default, epoch 0, for a user never seen).
    fn user_epoch(&self, user: &UserId) -> impl Future<Output = StoreResult<UserEpoch>> + Send;

    /// Every stored session record of `user`, ended ones included (the engine
    /// filters), in no particular order.
    fn list_user_sessions(
        &self,
        user: &UserId,
    ) -> impl Future<Output = StoreResult<Vec<SessionRecord>>> + Send;

    /// Deletes what can no longer matter at `cutoff`: every session whose
    /// `idle_deadline` is at or before it (a revoked session's idle deadline is
    /// frozen when it is revoked, and never later than its absolute deadline, so
    /// these are exactly the records whose token could not have been valid since
    /// `cutoff`), the refresh tokens of those sessions and of sessions already gone,
    /// and every API token whose [`ApiTokenRecord::ends_at`] is at or before it.
    fn purge(&self, cutoff: Timestamp) -> impl Future<Output = StoreResult<Purged>> + Send;

    /// Adds a user with credentials. Fails with [`StoreError::Conflict`]
    /// (`"username"` or `"user"`) if either is taken. Durable.
    fn create_user(
        &self,
        id: &UserId,
        username: &str,
        password_hash: PasswordHash,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// The user with this exact username, with its current epoch.
    fn find_user_by_username(
        &self,
        username: &str,
    ) -> impl Future<Output = StoreResult<Option<UserRecord>>> + Send;

    /// The user with this id, with its current epoch. `None` for unknown ids and
    /// for sidecar users (who have an epoch but no credentials here).
    fn get_user(&self, id: &UserId)
    -> impl Future<Output = StoreResult<Option<UserRecord>>> + Send;

    /// Replaces the password hash and bumps the epoch with `bump`, in one atomic
    /// step: there is no moment at which the new password works and old sessions
    /// (or, with `bump.end_api_tokens`, old API tokens) are alive.
    /// [`StoreError::NotFound`]`("user")` for an unknown user. Returns the new epoch.
    /// Durable.
    fn set_password(
        &self,
        id: &UserId,
        password_hash: PasswordHash,
        bump: EpochBump,
    ) -> impl Future<Output = StoreResult<UserEpoch>> + Send;

    /// Adds a refresh token. Fails with [`StoreError::Conflict`]`("refresh_token")`
    /// if the id exists. `record.rotated` is `None`. Durable.
    fn insert_refresh(&self, record: RefreshState) -> impl Future<Output = StoreResult<()>> + Send;

    /// The refresh token's record, or `None`.
    fn load_refresh(
        &self,
        id: &TokenId,
    ) -> impl Future<Output = StoreResult<Option<RefreshState>>> + Send;

    /// Replaces refresh token `id` by `successor`, exactly once.
    ///
    /// Atomically: if `id` is not rotated yet, sets its `rotated` to `rotation`,
    /// stores `successor`, and returns `None` (this call rotated it). If it was
    /// already rotated, changes nothing and returns that earlier rotation — so of
    /// any number of simultaneous uses of one token, exactly one rotates it.
    /// [`StoreError::NotFound`]`("refresh_token")` for an unknown id;
    /// [`StoreError::Conflict`]`("refresh_token")` if the successor's id exists.
    /// Durable.
    fn rotate_refresh(
        &self,
        id: &TokenId,
        rotation: Rotation,
        successor: RefreshState,
    ) -> impl Future<Output = StoreResult<Option<Rotation>>> + Send;

    /// Adds a personal API token. Atomically: [`StoreError::Conflict`]`("api_token")`
    /// if the id exists; [`StoreError::EpochMoved`] if `record.epoch` is not the
    /// user's current epoch; otherwise stores it under its user. Durable.
    fn insert_api_token(
        &self,
        record: ApiTokenRecord,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// The API token's record and its user's current epoch, or `None`.
    fn load_api_token(
        &self,
        id: &TokenId,
    ) -> impl Future<Output = StoreResult<Option<(ApiTokenRecord, UserEpoch)>>> + Send;

    /// Records a use: sets `last_used_at` if the token exists, is not revoked and
    /// `used_at` is later. May be buffered.
    fn touch_api_token(
        &self,
        id: &TokenId,
        used_at: Timestamp,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Revokes one API token; the first reason wins; returns whether this call
    /// revoked it (`false` for unknown ids). Durable.
    fn revoke_api_token(
        &self,
        id: &TokenId,
        revocation: Revocation,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Every stored API token of `user`, ended ones included, in no particular order.
    fn list_user_api_tokens(
        &self,
        user: &UserId,
    ) -> impl Future<Output = StoreResult<Vec<ApiTokenRecord>>> + Send;

    /// The profile and roles assigned to `user` (the default, none, for a user
    /// never assigned any).
    fn user_access(&self, user: &UserId) -> impl Future<Output = StoreResult<UserAccess>> + Send;

    /// Assigns a profile and roles to `user` and, in the same atomic step,
    /// increments the user's [`UserEpoch::privileges`] (creating the user's epoch
    /// record if needed), so every session issued under a lower count is rotated at
    /// its next use. Returns the user's epoch. Durable.
    fn set_user_access(
        &self,
        user: &UserId,
        access: UserAccess,
    ) -> impl Future<Output = StoreResult<UserEpoch>> + Send;

    /// Appends `event` to the audit log, assigning its id (greater than every id
    /// before it), and returns the id. Durable.
    fn append_event(&self, event: AuditEvent) -> impl Future<Output = StoreResult<u64>> + Send;

    /// The events that match `query`, in id order (descending with
    /// `newest_first`), at most `query.page_size()` of them.
    fn list_events(
        &self,
        query: &EventQuery,
    ) -> impl Future<Output = StoreResult<Vec<AuditEvent>>> + Send;

    /// Deletes the events recorded before `cutoff`; returns how many.
    fn purge_events(&self, cutoff: Timestamp) -> impl Future<Output = StoreResult<u64>> + Send;

    /// Whether the store can serve now, for readiness probes and periodic
    /// checks (never on the request path): `Ok`, or why not. A networked backend
    /// makes a round trip; a backend that could drop records on its own (Redis with
    /// an evicting `maxmemory-policy`, which could drop a credential epoch and so
    /// bring ended sessions back) reports that too, as an error.
    fn ready(&self) -> impl Future<Output = StoreResult<()>> + Send;
    /// Counts one password attempt on `key` at `now`, unless the key must wait
    /// ([`crate::throttle`]).
    ///
    /// Atomically: reads the key's [`crate::ThrottleState`] (a record whose keep
    /// time has passed counts as absent); if there is none and `create` is false,
    /// changes nothing and answers [`Attempt::Unknown`]; an absent record is
    /// otherwise a state with no failures. If [`crate::ThrottleState::retry_at`]
    /// under `limit` is later than `now`, changes nothing and answers
    /// [`Attempt::Throttled`] with that time. Otherwise stores
    /// [`crate::ThrottleState::counted`]`(now)`, keeps the record until at least
    /// `now + limit.window` (never shortening a longer keep time), and answers
    /// [`Attempt::Counted`] with the new count. So of simultaneous attempts on one
    /// key, never more are counted than the limit lets through.
    ///
    /// Throttle records need not be durable: a store may keep them in memory only
    /// (a restart then gives clients their free attempts back), and a networked
    /// store shares them between its nodes.
    fn throttle_attempt(
        &self,
        key: &ThrottleKey,
        limit: ThrottleLimit,
        now: Timestamp,
        create: bool,
    ) -> impl Future<Output = StoreResult<Attempt>> + Send;

    /// Settles a check counted on `key`, atomically: [`Settle::Forget`] deletes
    /// the record; [`Settle::Release`] takes one failure back from a live record,
    /// if it has any, and changes nothing else (the time of the last attempt
    /// stays); [`Settle::Trust`] sets the
    /// failures to 0 and keeps the record until `until` (creating it if absent).
    fn throttle_settle(
        &self,
        key: &ThrottleKey,
        settle: Settle,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<()>> + Send;
}

/// Forwards every method of [`Store`] to `(**self)`.
macro_rules! forward_store {
    ($($name:ident($($arg:ident: $ty:ty),*) -> $out:ty;)*) => {
        $(
            fn $name(&self, $($arg: $ty),*) -> impl Future<Output = StoreResult<$out>> + Send {
                (**self).$name($($arg),*)
            }
        )*
    };
}

/// A shared store is a store: lets tests and servers hand one backend to many tasks.
impl<S: Store> Store for std::sync::Arc<S> {
    forward_store! {
        insert_session(record: SessionRecord, limit: SessionLimit) -> Vec<SessionId>;
        rotate_session_token(id: &SessionId, expected: VerifierHash, rotation: TokenRotation) -> bool;
        load_session(id: &SessionId) -> Option<(SessionState, UserEpoch)>;
        touch_session(id: &SessionId, seen_at: Timestamp, idle_deadline: Timestamp) -> ();
        revoke_session(id: &SessionId, revocation: Revocation) -> bool;
        revoke_user_sessions(user: &UserId, bump: EpochBump, keep: Option<&SessionId>) -> UserEpoch;
        user_epoch(user: &UserId) -> UserEpoch;
        list_user_sessions(user: &UserId) -> Vec<SessionRecord>;
        purge(cutoff: Timestamp) -> Purged;
        create_user(id: &UserId, username: &str, password_hash: PasswordHash) -> ();
        find_user_by_username(username: &str) -> Option<UserRecord>;
        get_user(id: &UserId) -> Option<UserRecord>;
        set_password(id: &UserId, password_hash: PasswordHash, bump: EpochBump) -> UserEpoch;
        insert_refresh(record: RefreshState) -> ();
        load_refresh(id: &TokenId) -> Option<RefreshState>;
        rotate_refresh(id: &TokenId, rotation: Rotation, successor: RefreshState) -> Option<Rotation>;
        insert_api_token(record: ApiTokenRecord) -> ();
        load_api_token(id: &TokenId) -> Option<(ApiTokenRecord, UserEpoch)>;
        touch_api_token(id: &TokenId, used_at: Timestamp) -> ();
        revoke_api_token(id: &TokenId, revocation: Revocation) -> bool;
        list_user_api_tokens(user: &UserId) -> Vec<ApiTokenRecord>;
        user_access(user: &UserId) -> UserAccess;
        set_user_access(user: &UserId, access: UserAccess) -> UserEpoch;
        append_event(event: AuditEvent) -> u64;
        list_events(query: &EventQuery) -> Vec<AuditEvent>;
        purge_events(cutoff: Timestamp) -> u64;
        ready() -> ();
        throttle_attempt(key: &ThrottleKey, limit: ThrottleLimit, now: Timestamp, create: bool) -> Attempt;
        throttle_settle(key: &ThrottleKey, settle: Settle, now: Timestamp) -> ();
    }
}
