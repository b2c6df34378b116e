//! [`Measured`]: a store that times each call and counts each failure, by
//! operation (`sessionguard_store_call_duration_seconds{op}`,
//! `sessionguard_store_errors_total{op}`).

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use metrics::{Counter, Histogram};
use sessionguard_core::audit::{AuditEvent, EventQuery};
use sessionguard_core::policy::SessionLimit;
use sessionguard_core::throttle::{Attempt, Settle, ThrottleKey, ThrottleLimit};
use sessionguard_core::token::VerifierHash;
use sessionguard_core::{
    ApiTokenRecord, EpochBump, PasswordHash, Purged, RefreshState, Revocation, Rotation, SessionId,
    SessionRecord, SessionState, Store, StoreError, StoreResult, Timestamp, TokenId, TokenRotation,
    UserAccess, UserEpoch, UserId, UserRecord,
};

use super::{Registrar, STORE_DURATION, STORE_ERRORS};

/// The handles of one store operation.
#[derive(Clone)]
struct OpHandles {
    duration: Histogram,
    errors: Counter,
}

/// The handles of every store operation, indexed by [`StoreOp`].
#[derive(Clone)]
pub(super) struct StoreMetrics(Arc<[OpHandles]>);

impl StoreMetrics {
    pub(super) fn register(r: &Registrar<'_>) -> Self {
        StoreMetrics(
            StoreOp::ALL
                .iter()
                .map(|op| OpHandles {
                    duration: r.histogram(STORE_DURATION, [("op", op.code())]),
                    errors: r.counter(STORE_ERRORS, [("op", op.code())]),
                })
                .collect(),
        )
    }

    fn record<T>(&self, op: StoreOp, started: Instant, result: &StoreResult<T>) {
        let Some(h) = self.0.get(op as usize) else {
            return;
        };
        h.duration.record(started.elapsed());
        // Refusals the contract defines (a taken username, a moved epoch, the
        // session limit, a missing record) are answers, not failures.
        if let Err(StoreError::Backend(_) | StoreError::Corrupt(_)) = result {
            h.errors.increment(1);
        }
    }
}

/// A store whose calls are timed and whose failures are counted, by
/// operation; it changes nothing else. Made by
/// [`Metrics::measure`](super::Metrics::measure).
#[derive(Clone)]
pub struct Measured<S> {
    inner: S,
    metrics: StoreMetrics,
}

impl<S> Measured<S> {
    pub(super) fn new(inner: S, metrics: StoreMetrics) -> Self {
        Measured { inner, metrics }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for Measured<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Measured").field(&self.inner).finish()
    }
}

/// Declares [`StoreOp`] and the [`Store`] impl of [`Measured`] from one list of
/// the trait's methods.
macro_rules! measured {
    ($($variant:ident $name:ident($($arg:ident: $ty:ty),*) -> $out:ty;)*) => {
        /// A method of [`Store`]: the `op` label of the store series.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[non_exhaustive]
        pub enum StoreOp {
            $(
                #[doc = concat!("`", stringify!($name), "`")]
                $variant,
            )*
        }

        impl StoreOp {
            /// Every operation.
            pub const ALL: &'static [StoreOp] = &[$(StoreOp::$variant),*];

            /// The label value: the method's name.
            pub const fn code(self) -> &'static str {
                match self {
                    $(StoreOp::$variant => stringify!($name),)*
                }
            }
        }

        impl<S: Store> Store for Measured<S> {
            $(
                async fn $name(&self, $($arg: $ty),*) -> StoreResult<$out> {
                    let started = Instant::now();
                    let result = self.inner.$name($($arg),*).await;
                    self.metrics.record(StoreOp::$variant, started, &result);
                    result
                }
            )*
        }
    };
}

measured! {
    InsertSession insert_session(record: SessionRecord, limit: SessionLimit) -> Vec<SessionId>;
    RotateSessionToken rotate_session_token(id: &SessionId, expected: VerifierHash, rotation: TokenRotation) -> bool;
    LoadSession load_session(id: &SessionId) -> Option<(SessionState, UserEpoch)>;
    TouchSession touch_session(id: &SessionId, seen_at: Timestamp, idle_deadline: Timestamp) -> ();
    RevokeSession revoke_session(id: &SessionId, revocation: Revocation) -> bool;
    RevokeUserSessions revoke_user_sessions(user: &UserId, bump: EpochBump, keep: Option<&SessionId>) -> UserEpoch;
    UserEpochOp user_epoch(user: &UserId) -> UserEpoch;
    ListUserSessions list_user_sessions(user: &UserId) -> Vec<SessionRecord>;
    Purge purge(cutoff: Timestamp) -> Purged;
    CreateUser create_user(id: &UserId, username: &str, password_hash: PasswordHash) -> ();
    FindUserByUsername find_user_by_username(username: &str) -> Option<UserRecord>;
    GetUser get_user(id: &UserId) -> Option<UserRecord>;
    SetPassword set_password(id: &UserId, password_hash: PasswordHash, bump: EpochBump) -> UserEpoch;
    InsertRefresh insert_refresh(record: RefreshState) -> ();
    LoadRefresh load_refresh(id: &TokenId) -> Option<RefreshState>;
    RotateRefresh rotate_refresh(id: &TokenId, rotation: Rotation, successor: RefreshState) -> Option<Rotation>;
    InsertApiToken insert_api_token(record: ApiTokenRecord) -> ();
    LoadApiToken load_api_token(id: &TokenId) -> Option<(ApiTokenRecord, UserEpoch)>;
    TouchApiToken touch_api_token(id: &TokenId, used_at: Timestamp) -> ();
    RevokeApiToken revoke_api_token(id: &TokenId, revocation: Revocation) -> bool;
    ListUserApiTokens list_user_api_tokens(user: &UserId) -> Vec<ApiTokenRecord>;
    UserAccessOp user_access(user: &UserId) -> UserAccess;
    SetUserAccess set_user_access(user: &UserId, access: UserAccess) -> UserEpoch;
    AppendEvent append_event(event: AuditEvent) -> u64;
    ListEvents list_events(query: &EventQuery) -> Vec<AuditEvent>;
    PurgeEvents purge_events(cutoff: Timestamp) -> u64;
    Ready ready() -> ();
    ThrottleAttempt throttle_attempt(key: &ThrottleKey, limit: ThrottleLimit, now: Timestamp, create: bool) -> Attempt;
    ThrottleSettle throttle_settle(key: &ThrottleKey, settle: Settle, now: Timestamp) -> ();
}
