//! The session behind an access token: what makes it accept the token.
//!
//! An access token (a JWT, `sessionguard-jwt`) names its session in `sid` and
//! its user in `sub`, and says when it was issued in `iat`. Once its signature
//! and claims are verified, the token is only as good as that session: the
//! session must be live ([`verdict`](super::verdict)), and
//! [`access_token_verdict`] must accept the token. Every front door (the
//! server, the middleware) applies the same rule through
//! [`Engine::validate_access`].

use crate::clock::{Clock, Timestamp};
use crate::model::SessionId;
use crate::observe::Credential;
use crate::reason::{Reason, Revocation};
use crate::store::Store;

use super::{Engine, Error, Rejection, Result, ValidSession};

/// Whether `session`, live and named by a verified access token, accepts that
/// token, issued to `sub` at `issued_at`:
///
/// - `sub` must be the session's user (the signature binds `sub` to `sid`, so a
///   mismatch is a bug somewhere, and is refused as `invalid_token` rather than
///   trusted);
/// - the token must not be older than the session's current token: a token
///   issued before the session's token was last rotated (a step-up, a change
///   of the user's profile or roles) belongs to the old privileges, and is
///   refused with `privilege_changed`. `iat` has whole seconds, so a token
///   issued in the same second as the rotation still passes.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use sessionguard_core::{ClientInfo, Engine, MemoryStore, Policy, Reason, UserId};
/// use sessionguard_core::access_token_verdict;
///
/// let engine = Engine::new(MemoryStore::new(), Policy::default()).unwrap();
/// let user = UserId::new("alice").unwrap();
/// let s = engine.create_session(&user, 0, ClientInfo::default()).await.unwrap().session;
/// assert!(access_token_verdict(&s, "alice", s.token_issued_at()).is_ok());
/// assert_eq!(access_token_verdict(&s, "mallory", s.token_issued_at()).unwrap_err().reason, Reason::InvalidToken);
/// # });
/// ```
pub fn access_token_verdict(
    session: &ValidSession,
    sub: &str,
    issued_at: Timestamp,
) -> Result<(), Rejection> {
    if sub != session.user_id().as_str() {
        return Err(Rejection::INVALID);
    }
    let current = session.token_issued_at();
    if issued_at.as_millis().div_euclid(1000) < current.as_millis().div_euclid(1000) {
        return Err(Rejection::ended(Revocation {
            reason: Reason::PrivilegeChanged,
            at: current,
        }));
    }
    Ok(())
}

impl<S: Store, C: Clock> Engine<S, C> {
    /// Checks the session `sid` of an access token whose signature and claims the
    /// caller **has verified** (`sub`, `iat` = `issued_at`): the session must be
    /// live ([`Engine::validate_authenticated_id`], recording activity with
    /// `touch`) and accept the token ([`access_token_verdict`]). A refused
    /// session or token is [`Error::Rejected`] with the reason.
    pub async fn validate_access(
        &self,
        sid: &SessionId,
        sub: &str,
        issued_at: Timestamp,
        touch: bool,
    ) -> Result<ValidSession> {
        let checked = match self.validate_authenticated_id(sid, touch).await {
            Ok(session) => access_token_verdict(&session, sub, issued_at)
                .map(|()| session)
                .map_err(Error::Rejected),
            Err(e) => Err(e),
        };
        self.observer.check(Credential::AccessToken, &checked);
        checked
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{ClientInfo, ManualClock, MemoryStore, Policy, UserAccess, UserId};

    const START: Timestamp = Timestamp::from_millis(1_800_000_000_500);

    async fn engine_with_session() -> (Engine<MemoryStore, ManualClock>, ManualClock, ValidSession)
    {
        let clock = ManualClock::new(START);
        let engine = Engine::with_clock(MemoryStore::new(), clock.clone(), Policy::default())
            .expect("the default policy is valid");
        let user = UserId::new("alice").unwrap();
        let issued = engine
            .create_session(&user, 0, ClientInfo::default())
            .await
            .unwrap();
        (engine, clock, issued.session)
    }

    #[tokio::test]
    async fn a_token_of_the_sessions_user_issued_with_its_token_is_accepted() {
        let (engine, _, s) = engine_with_session().await;
        assert!(access_token_verdict(&s, "alice", START).is_ok());
        let checked = engine
            .validate_access(&s.id(), "alice", START, true)
            .await
            .unwrap();
        assert_eq!(checked.id(), s.id());
    }

    #[tokio::test]
    async fn another_subject_is_an_invalid_token() {
        let (engine, _, s) = engine_with_session().await;
        assert_eq!(
            access_token_verdict(&s, "bob", START),
            Err(Rejection::INVALID)
        );
        let err = engine
            .validate_access(&s.id(), "bob", START, false)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Rejected(r) if r == Rejection::INVALID));
    }

    #[tokio::test]
    async fn a_token_older_than_the_sessions_token_is_refused_as_privilege_changed() {
        let (engine, clock, s) = engine_with_session().await;
        clock.advance(Duration::from_secs(2));
        let user = UserId::new("alice").unwrap();
        let access = UserAccess::new(None, vec!["admin".into()]).unwrap();
        engine.update_user_access(&user, access).await.unwrap();
        // The check after the change rotates the session's token (touch).
        let rotated = engine
            .validate_authenticated_id(&s.id(), true)
            .await
            .unwrap();
        let err = access_token_verdict(&rotated, "alice", START).unwrap_err();
        assert_eq!(err.reason, Reason::PrivilegeChanged);
        assert_eq!(err.at, Some(rotated.token_issued_at()));
        // Issued in the same second as the rotation: still accepted.
        let same_second =
            Timestamp::from_millis(rotated.token_issued_at().as_millis() / 1000 * 1000);
        assert!(access_token_verdict(&rotated, "alice", same_second).is_ok());
        let err = engine
            .validate_access(&s.id(), "alice", START, true)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Rejected(r) if r.reason == Reason::PrivilegeChanged));
    }

    #[tokio::test]
    async fn an_ended_session_refuses_its_tokens_with_its_reason() {
        let (engine, _, s) = engine_with_session().await;
        engine.revoke(&s.id(), Reason::LoggedOut).await.unwrap();
        let err = engine
            .validate_access(&s.id(), "alice", START, false)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Rejected(r) if r.reason == Reason::LoggedOut));
    }
}
