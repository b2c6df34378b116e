//! [`Instrumented`]: a store wrapper for tests that counts calls and can be made to
//! fail or panic, so tests can prove what reached the store and how failures are
//! answered.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use sessionguard_core::token::VerifierHash;
use sessionguard_core::{
    ApiTokenRecord, AuditEvent, EpochBump, EventQuery, PasswordHash, Purged, RefreshState,
    Revocation, Rotation, SessionId, SessionLimit, SessionRecord, SessionState, Store, StoreError,
    StoreResult, Timestamp, TokenId, TokenRotation, UserAccess, UserEpoch, UserId, UserRecord,
};
use sessionguard_core::{Attempt, Settle, ThrottleKey, ThrottleLimit};

const OK: u8 = 0;
const FAIL: u8 = 1;
const PANIC: u8 = 2;

/// What kind of call reached the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Load,
    Touch,
    Other,
}

/// Wraps a store: counts lookups (`load_*`) and touches (`touch_*`), and fails or
/// panics on demand. Clones share counters and mode.
#[derive(Debug, Clone, Default)]
pub struct Instrumented<S> {
    inner: S,
    loads: Arc<AtomicUsize>,
    touches: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
    mode: Arc<AtomicU8>,
}

impl<S: Store> Instrumented<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Instrumented {
            inner,
            loads: Arc::default(),
            touches: Arc::default(),
            calls: Arc::default(),
            mode: Arc::default(),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// How many `load_*` calls reached the store.
    pub fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }

    /// How many `touch_*` calls reached the store.
    pub fn touches(&self) -> usize {
        self.touches.load(Ordering::SeqCst)
    }

    /// How many calls of any kind reached the store (a networked store's round
    /// trips).
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// From now on every call fails with a backend error (whose message names a
    /// path, to prove it never reaches a response).
    pub fn fail_from_now(&self) {
        self.mode.store(FAIL, Ordering::SeqCst);
    }

    /// From now on every call panics.
    pub fn panic_from_now(&self) {
        self.mode.store(PANIC, Ordering::SeqCst);
    }

    fn enter(&self, kind: Kind) -> StoreResult<()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match kind {
            Kind::Load => self.loads.fetch_add(1, Ordering::SeqCst),
            Kind::Touch => self.touches.fetch_add(1, Ordering::SeqCst),
            Kind::Other => 0,
        };
        match self.mode.load(Ordering::SeqCst) {
            OK => Ok(()),
            FAIL => Err(StoreError::backend(std::io::Error::other(
                "disk /var/lib/secret-path is full",
            ))),
            _ => panic!("the instrumented store was told to panic"),
        }
    }
}

macro_rules! instrumented {
    ($($kind:ident $name:ident($($arg:ident: $ty:ty),*) -> $out:ty;)*) => {
        impl<S: Store> Store for Instrumented<S> {
            $(
                async fn $name(&self, $($arg: $ty),*) -> StoreResult<$out> {
                    self.enter(Kind::$kind)?;
                    self.inner.$name($($arg),*).await
                }
            )*
        }
    };
}

instrumented! {
    Other insert_session(record: SessionRecord, limit: SessionLimit) -> Vec<SessionId>;
    Other rotate_session_token(id: &SessionId, expected: VerifierHash, rotation: TokenRotation) -> bool;
    Load load_session(id: &SessionId) -> Option<(SessionState, UserEpoch)>;
    Touch touch_session(id: &SessionId, seen_at: Timestamp, idle_deadline: Timestamp) -> ();
    Other revoke_session(id: &SessionId, revocation: Revocation) -> bool;
    Other revoke_user_sessions(user: &UserId, bump: EpochBump, keep: Option<&SessionId>) -> UserEpoch;
    Other user_epoch(user: &UserId) -> UserEpoch;
    Other list_user_sessions(user: &UserId) -> Vec<SessionRecord>;
    Other purge(cutoff: Timestamp) -> Purged;
    Other create_user(id: &UserId, username: &str, password_hash: PasswordHash) -> ();
    Other find_user_by_username(username: &str) -> Option<UserRecord>;
    Other get_user(id: &UserId) -> Option<UserRecord>;
    Other set_password(id: &UserId, password_hash: PasswordHash, bump: EpochBump) -> UserEpoch;
    Other insert_refresh(record: RefreshState) -> ();
    Load load_refresh(id: &TokenId) -> Option<RefreshState>;
    Other rotate_refresh(id: &TokenId, rotation: Rotation, successor: RefreshState) -> Option<Rotation>;
    Other insert_api_token(record: ApiTokenRecord) -> ();
    Load load_api_token(id: &TokenId) -> Option<(ApiTokenRecord, UserEpoch)>;
    Touch touch_api_token(id: &TokenId, used_at: Timestamp) -> ();
    Other revoke_api_token(id: &TokenId, revocation: Revocation) -> bool;
    Other list_user_api_tokens(user: &UserId) -> Vec<ApiTokenRecord>;
    Other user_access(user: &UserId) -> UserAccess;
    Other set_user_access(user: &UserId, access: UserAccess) -> UserEpoch;
    Other append_event(event: AuditEvent) -> u64;
    Other list_events(query: &EventQuery) -> Vec<AuditEvent>;
    Other purge_events(cutoff: Timestamp) -> u64;
    Other ready() -> ();
    Other throttle_attempt(key: &ThrottleKey, limit: ThrottleLimit, now: Timestamp, create: bool) -> Attempt;
    Other throttle_settle(key: &ThrottleKey, settle: Settle, now: Timestamp) -> ();
}
