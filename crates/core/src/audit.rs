//! The audit log: every lifecycle event, stored durably with the sessions
//! (invariant 10).
//!
//! The engine records an [`AuditEvent`] for each login (and failed or refused
//! login), refresh, token rotation, step-up, logout, revocation with its reason,
//! displacement, refresh-token reuse, password change and API-token change. Events
//! name users and sessions by their public ids and never hold a secret.
//!
//! The client (user agent, IP) of an event is the client of the request that
//! caused it. A server sets it once per request with [`with_client`]; the engine
//! reads it when it records, so engine methods do not each take it.

use std::fmt;
use std::future::Future;

use crate::clock::Timestamp;
use crate::model::{ClientInfo, SessionId, UserId};
use crate::reason::Reason;

/// What happened. The snake_case code from [`EventKind::code`] is part of the
/// public API (audit queries, JSON lines) and never changes meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventKind {
    /// A login succeeded and created a session.
    LoginSucceeded,
    /// A login failed (unknown user or wrong password).
    LoginFailed,
    /// A login was refused by the concurrent-session limit (`reject_new`).
    LoginRefused,
    /// A refresh token was used and rotated.
    Refreshed,
    /// A session's token was replaced by periodic renewal.
    TokenRenewed,
    /// A session's token was replaced because its privileges changed.
    TokenRotated,
    /// The session's holder re-authenticated (step-up).
    Elevated,
    /// A sensitive action was refused because the session needs a step-up.
    StepUpRequired,
    /// The holder logged out.
    LoggedOut,
    /// One session was revoked (the reason says why).
    SessionRevoked,
    /// Every session of a user was ended at once (the reason says why).
    UserSessionsRevoked,
    /// A session was displaced by a newer login under the concurrent-session limit.
    Displaced,
    /// A rotated refresh token was presented again; its session was revoked.
    RefreshReuseDetected,
    /// The password was changed.
    PasswordChanged,
    /// A personal API token was created.
    ApiTokenCreated,
    /// A personal API token was revoked.
    ApiTokenRevoked,
    /// An administrator changed the user's profile or roles.
    UserUpdated,
    /// The refresh token its session had just rotated was presented again within
    /// the grace window by the client it was issued to, and got the same
    /// successor (a retry, or a replay by whoever holds a copy: either way, on
    /// record).
    RefreshRepeated,
    /// A refresh token was presented by a client other than the one it was
    /// issued to, and refused.
    RefreshClientMismatch,
    /// Password checks now wait: for the user from one client (or known device)
    /// after repeated wrong passwords, or, without a user, for one client across
    /// accounts. The failures in between are not stored one by one.
    LoginThrottled,
}

impl EventKind {
    /// Every kind, in storage-tag order.
    pub const ALL: [EventKind; 20] = [
        EventKind::LoginSucceeded,
        EventKind::LoginFailed,
        EventKind::LoginRefused,
        EventKind::Refreshed,
        EventKind::TokenRenewed,
        EventKind::TokenRotated,
        EventKind::Elevated,
        EventKind::StepUpRequired,
        EventKind::LoggedOut,
        EventKind::SessionRevoked,
        EventKind::UserSessionsRevoked,
        EventKind::Displaced,
        EventKind::RefreshReuseDetected,
        EventKind::PasswordChanged,
        EventKind::ApiTokenCreated,
        EventKind::ApiTokenRevoked,
        EventKind::UserUpdated,
        EventKind::RefreshRepeated,
        EventKind::RefreshClientMismatch,
        EventKind::LoginThrottled,
    ];

    /// The stable snake_case code.
    pub const fn code(self) -> &'static str {
        match self {
            EventKind::LoginSucceeded => "login_succeeded",
            EventKind::LoginFailed => "login_failed",
            EventKind::LoginRefused => "login_refused",
            EventKind::Refreshed => "refreshed",
            EventKind::TokenRenewed => "token_renewed",
            EventKind::TokenRotated => "token_rotated",
            EventKind::Elevated => "elevated",
            EventKind::StepUpRequired => "step_up_required",
            EventKind::LoggedOut => "logged_out",
            EventKind::SessionRevoked => "session_revoked",
            EventKind::UserSessionsRevoked => "user_sessions_revoked",
            EventKind::Displaced => "displaced",
            EventKind::RefreshReuseDetected => "refresh_reuse_detected",
            EventKind::PasswordChanged => "password_changed",
            EventKind::ApiTokenCreated => "api_token_created",
            EventKind::ApiTokenRevoked => "api_token_revoked",
            EventKind::UserUpdated => "user_updated",
            EventKind::RefreshRepeated => "refresh_repeated",
            EventKind::RefreshClientMismatch => "refresh_client_mismatch",
            EventKind::LoginThrottled => "login_throttled",
        }
    }

    /// Parses a code produced by [`EventKind::code`].
    pub fn from_code(code: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.code() == code)
    }

    /// A one-byte tag for compact storage; stable across versions.
    pub const fn tag(self) -> u8 {
        self as u8
    }

    /// The kind for a storage tag.
    pub fn from_tag(tag: u8) -> Option<EventKind> {
        EventKind::ALL.get(usize::from(tag)).copied()
    }

    /// Whether the event is a security event its user is shown in their own
    /// history (sign-ins, sign-outs, changes, refused uses of their tokens);
    /// token refreshes, their retries and renewals are not.
    pub const fn shown_to_user(self) -> bool {
        !matches!(
            self,
            EventKind::Refreshed
                | EventKind::RefreshRepeated
                | EventKind::TokenRenewed
                | EventKind::StepUpRequired
        )
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// Position in the log, assigned by the store: increasing, never reused. 0
    /// before the event is stored.
    pub id: u64,
    /// When.
    pub at: Timestamp,
    /// What.
    pub kind: EventKind,
    /// Whose, if known (a failed login of an unknown name has none).
    pub user: Option<UserId>,
    /// Which session, if one is concerned.
    pub session: Option<SessionId>,
    /// The client of the request that caused it.
    pub client: ClientInfo,
    /// Why, for revocations and refusals.
    pub reason: Option<Reason>,
}

/// Which events to list: a filter and a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventQuery {
    /// Only this user's events.
    pub user: Option<UserId>,
    /// Only events at or after this time.
    pub since: Option<Timestamp>,
    /// Only events with an id above this one (the cursor of the previous page,
    /// oldest first) or below it (newest first).
    pub cursor: Option<u64>,
    /// Newest first instead of oldest first.
    pub newest_first: bool,
    /// At most this many (capped at [`EventQuery::MAX_LIMIT`]).
    pub limit: usize,
}

impl EventQuery {
    /// The largest page.
    pub const MAX_LIMIT: usize = 1000;

    /// The first page of `user`'s events, oldest first, as large as a page gets.
    ///
    /// ```
    /// use sessionguard_core::{EventQuery, UserId};
    ///
    /// let q = EventQuery::of_user(UserId::new("alice").unwrap());
    /// assert_eq!((q.newest_first, q.page_size()), (false, EventQuery::MAX_LIMIT));
    /// ```
    pub fn of_user(user: UserId) -> Self {
        EventQuery {
            user: Some(user),
            since: None,
            cursor: None,
            newest_first: false,
            limit: Self::MAX_LIMIT,
        }
    }

    /// Whether `e` passes the filter and the cursor.
    pub fn matches(&self, e: &AuditEvent) -> bool {
        self.user
            .as_ref()
            .is_none_or(|u| e.user.as_ref() == Some(u))
            && self.since.is_none_or(|s| e.at >= s)
            && self.cursor.is_none_or(|c| {
                if self.newest_first {
                    e.id < c
                } else {
                    e.id > c
                }
            })
    }

    /// The page size actually used.
    pub fn page_size(&self) -> usize {
        self.limit.min(Self::MAX_LIMIT)
    }
}

/// The client of the current task: given, or built when an event needs it.
enum Source {
    Ready(ClientInfo),
    Lazy(Box<dyn Fn() -> ClientInfo + Send + Sync>),
}

/// The client a [`ClientScope`] holds for the future it runs (opaque).
pub struct ClientSource(Source);

impl fmt::Debug for ClientSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            Source::Ready(_) => "ClientSource::Ready",
            Source::Lazy(_) => "ClientSource::Lazy",
        })
    }
}

/// The future [`with_client_from`] returns: `F`, run with a client in scope. A
/// named type, so that middleware can hold it without boxing.
pub type ClientScope<F> = tokio::task::futures::TaskLocalFuture<ClientSource, F>;

tokio::task_local! {
    static CLIENT: ClientSource;
}

/// Runs `f` with `client` as the client of every event it records.
pub async fn with_client<F: Future>(client: ClientInfo, f: F) -> F::Output {
    CLIENT.scope(ClientSource(Source::Ready(client)), f).await
}

/// Runs `f` with the client that `client` builds as the client of every event it
/// records: built only if an event is recorded, so a request that records none
/// (most validations) pays nothing for it.
pub fn with_client_from<G, F>(client: G, f: F) -> ClientScope<F>
where
    G: Fn() -> ClientInfo + Send + Sync + 'static,
    F: Future,
{
    CLIENT.scope(ClientSource(Source::Lazy(Box::new(client))), f)
}

/// The client set by [`with_client`] or [`with_client_from`] for the current
/// task, or an empty one.
pub fn current_client() -> ClientInfo {
    CLIENT
        .try_with(|s| match &s.0 {
            Source::Ready(c) => c.clone(),
            Source::Lazy(build) => build(),
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_tags_round_trip() {
        for (i, k) in EventKind::ALL.into_iter().enumerate() {
            assert_eq!(usize::from(k.tag()), i);
            assert_eq!(EventKind::from_tag(k.tag()), Some(k));
            assert_eq!(EventKind::from_code(k.code()), Some(k));
        }
        assert_eq!(EventKind::from_code("nope"), None);
        assert_eq!(EventKind::from_tag(250), None);
    }

    #[test]
    fn queries_filter_by_user_time_and_cursor() {
        let alice = UserId::new("alice").unwrap();
        let ev = |id, at, user: Option<&UserId>| AuditEvent {
            id,
            at: Timestamp::from_millis(at),
            kind: EventKind::LoggedOut,
            user: user.cloned(),
            session: None,
            client: ClientInfo::default(),
            reason: None,
        };
        let q = EventQuery {
            user: Some(alice.clone()),
            since: Some(Timestamp::from_millis(10)),
            cursor: Some(5),
            newest_first: false,
            limit: 10,
        };
        assert!(q.matches(&ev(6, 10, Some(&alice))));
        assert!(!q.matches(&ev(5, 10, Some(&alice))), "at the cursor");
        assert!(!q.matches(&ev(6, 9, Some(&alice))), "before since");
        assert!(!q.matches(&ev(6, 10, None)), "another user");
        let back = EventQuery {
            newest_first: true,
            ..q
        };
        assert!(back.matches(&ev(4, 10, Some(&alice))));
        assert!(!back.matches(&ev(6, 10, Some(&alice))));
        assert_eq!(
            EventQuery {
                limit: 5000,
                ..back
            }
            .page_size(),
            EventQuery::MAX_LIMIT
        );
    }

    #[tokio::test]
    async fn the_client_is_scoped_to_the_task() {
        assert_eq!(current_client(), ClientInfo::default());
        let c = ClientInfo::new(Some("agent"), None);
        let seen = with_client(c.clone(), async { current_client() }).await;
        assert_eq!(seen, c);
        assert_eq!(current_client(), ClientInfo::default());
        let built = c.clone();
        let seen = with_client_from(move || built.clone(), async { current_client() }).await;
        assert_eq!(seen, c);
    }
}
