//! The storage contract every backend implements.
//!
//! Each method documents what it must do *atomically* and what must be *durable*
//! when it returns `Ok`. The conformance suite in `sessionguard-test-kit` checks
//! every backend against these contracts; there are no default methods, so a
//! backend cannot silently inherit a weaker behaviour.

use std::error::Error as StdError;
use std::future::Future;

use crate::clock::Timestamp;
use crate::model::{
    PasswordHash, SessionId, SessionRecord, SessionState, UserEpoch, UserId, UserRecord,
};
use crate::reason::Revocation;

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

/// Where sessions, credential epochs and users live.
///
/// "Durable" below means: once the method returns `Ok`, the change survives a crash
/// of the process (and, for replicated backends, of one node).
pub trait Store: Send + Sync + 'static {
    /// Adds a new session.
    ///
    /// Atomically: fails with [`StoreError::Conflict`]`("session")` if the id exists
    /// (a record is never overwritten); fails with [`StoreError::EpochMoved`] if
    /// `record.state.epoch` is not the user's current epoch (a password change won
    /// the race); otherwise stores the record and indexes it under its user.
    /// `record.state.revoked` is `None`. Durable.
    fn insert_session(&self, record: SessionRecord)
    -> impl Future<Output = StoreResult<()>> + Send;

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
    /// Atomically: `epoch += 1` and `last_bump = revocation` (creating the user's
    /// epoch record if needed); if `keep` names an unrevoked session of this user
    /// that was current before the bump, it is carried to the new epoch and
    /// survives. Returns the new epoch. Durable.
    fn revoke_user_sessions(
        &self,
        user: &UserId,
        revocation: Revocation,
        keep: Option<&SessionId>,
    ) -> impl Future<Output = StoreResult<UserEpoch>> + Send;

    /// The user's current epoch (the default, epoch 0, for a user never seen).
    fn user_epoch(&self, user: &UserId) -> impl Future<Output = StoreResult<UserEpoch>> + Send;

    /// Every stored record of `user`, ended ones included (the engine filters), in
    /// no particular order.
    fn list_user_sessions(
        &self,
        user: &UserId,
    ) -> impl Future<Output = StoreResult<Vec<SessionRecord>>> + Send;

    /// Deletes every session whose `idle_deadline` is at or before `cutoff`, and
    /// returns how many. (A revoked session's idle deadline is frozen when it is
    /// revoked, and never later than its absolute deadline, so this removes exactly
    /// the records whose token could not have been valid since `cutoff`.)
    fn purge_sessions(&self, cutoff: Timestamp) -> impl Future<Output = StoreResult<u64>> + Send;

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

    /// Replaces the password hash and bumps the epoch with `revocation`, in one
    /// atomic step: there is no moment at which the new password works and old
    /// sessions are alive. [`StoreError::NotFound`]`("user")` for an unknown user.
    /// Returns the new epoch. Durable.
    fn set_password(
        &self,
        id: &UserId,
        password_hash: PasswordHash,
        revocation: Revocation,
    ) -> impl Future<Output = StoreResult<UserEpoch>> + Send;
}

/// A shared store is a store: lets tests and servers hand one backend to many tasks.
impl<S: Store> Store for std::sync::Arc<S> {
    fn insert_session(
        &self,
        record: SessionRecord,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        (**self).insert_session(record)
    }
    fn load_session(
        &self,
        id: &SessionId,
    ) -> impl Future<Output = StoreResult<Option<(SessionState, UserEpoch)>>> + Send {
        (**self).load_session(id)
    }
    fn touch_session(
        &self,
        id: &SessionId,
        seen_at: Timestamp,
        idle_deadline: Timestamp,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        (**self).touch_session(id, seen_at, idle_deadline)
    }
    fn revoke_session(
        &self,
        id: &SessionId,
        revocation: Revocation,
    ) -> impl Future<Output = StoreResult<bool>> + Send {
        (**self).revoke_session(id, revocation)
    }
    fn revoke_user_sessions(
        &self,
        user: &UserId,
        revocation: Revocation,
        keep: Option<&SessionId>,
    ) -> impl Future<Output = StoreResult<UserEpoch>> + Send {
        (**self).revoke_user_sessions(user, revocation, keep)
    }
    fn user_epoch(&self, user: &UserId) -> impl Future<Output = StoreResult<UserEpoch>> + Send {
        (**self).user_epoch(user)
    }
    fn list_user_sessions(
        &self,
        user: &UserId,
    ) -> impl Future<Output = StoreResult<Vec<SessionRecord>>> + Send {
        (**self).list_user_sessions(user)
    }
    fn purge_sessions(&self, cutoff: Timestamp) -> impl Future<Output = StoreResult<u64>> + Send {
        (**self).purge_sessions(cutoff)
    }
    fn create_user(
        &self,
        id: &UserId,
        username: &str,
        password_hash: PasswordHash,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        (**self).create_user(id, username, password_hash)
    }
    fn find_user_by_username(
        &self,
        username: &str,
    ) -> impl Future<Output = StoreResult<Option<UserRecord>>> + Send {
        (**self).find_user_by_username(username)
    }
    fn get_user(
        &self,
        id: &UserId,
    ) -> impl Future<Output = StoreResult<Option<UserRecord>>> + Send {
        (**self).get_user(id)
    }
    fn set_password(
        &self,
        id: &UserId,
        password_hash: PasswordHash,
        revocation: Revocation,
    ) -> impl Future<Output = StoreResult<UserEpoch>> + Send {
        (**self).set_password(id, password_hash, revocation)
    }
}
