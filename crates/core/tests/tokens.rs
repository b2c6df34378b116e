//! Refresh tokens and personal API tokens on a manual clock: every rule with a
//! passing and a failing case.

use std::sync::Arc;
use std::time::Duration;

use sessionguard_core::{
    ClientId, ClientInfo, Engine, Error, EventKind, EventQuery, ManualClock, MemoryStore,
    PasswordHash, Policy, Reason, Rejection, Store, Timestamp, Token, TokenKind, UserId,
    ValidSession,
};

const SEC: Duration = Duration::from_secs(1);
const MIN: Duration = Duration::from_secs(60);
const T0: Timestamp = Timestamp::from_millis(1_800_000_000_000);

struct Fixture {
    engine: Arc<Engine<MemoryStore, ManualClock>>,
    clock: ManualClock,
}

fn fixture_with(policy: Policy) -> Fixture {
    let clock = ManualClock::new(T0);
    let engine = Engine::with_clock(MemoryStore::new(), clock.clone(), policy).unwrap();
    Fixture {
        engine: Arc::new(engine),
        clock,
    }
}

fn fixture() -> Fixture {
    fixture_with(Policy::default())
}

fn alice() -> UserId {
    UserId::new("u_alice").unwrap()
}

/// The client the fixture's refresh tokens are issued to.
fn app() -> ClientId {
    ClientId::new("app").unwrap()
}

impl Fixture {
    /// A token login: a session and its first refresh token.
    async fn token_login(&self, user: &UserId) -> (ValidSession, String) {
        let epoch = self.engine.store().user_epoch(user).await.unwrap().epoch;
        let issued = self
            .engine
            .create_session(user, epoch, ClientInfo::default())
            .await
            .unwrap();
        let refresh = self
            .engine
            .issue_refresh(&issued.session, &app())
            .await
            .unwrap();
        (issued.session, refresh.reveal().to_string())
    }

    async fn refresh(&self, token: &str) -> Result<String, Rejection> {
        self.refresh_as(token, &app()).await
    }

    /// A refresh made by `client`.
    async fn refresh_as(&self, token: &str, client: &ClientId) -> Result<String, Rejection> {
        match self.engine.refresh(token, client).await {
            Ok(r) => Ok(r.refresh.reveal().to_string()),
            Err(Error::Rejected(r)) => Err(r),
            Err(e) => panic!("store failure: {e}"),
        }
    }

    /// Eight simultaneous refreshes of `token`, on the multi-threaded runtime.
    async fn race_refreshes(&self, token: &str) -> Vec<Result<String, Error>> {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (engine, token) = (Arc::clone(&self.engine), token.to_owned());
                tokio::spawn(async move {
                    engine
                        .refresh(&token, &app())
                        .await
                        .map(|r| r.refresh.reveal().to_string())
                })
            })
            .collect();
        let mut results = Vec::new();
        for h in handles {
            results.push(h.await.expect("a refresh task does not panic"));
        }
        results
    }

    async fn alive(&self, s: &ValidSession) -> Result<(), Reason> {
        match self.engine.validate_authenticated_id(&s.id(), false).await {
            Ok(_) => Ok(()),
            Err(Error::Rejected(r)) => Err(r.reason),
            Err(e) => panic!("store failure: {e}"),
        }
    }

    async fn with_password(&self, user: &UserId) {
        self.engine
            .store()
            .create_user(user, user.as_str(), PasswordHash::from_phc("h0".into()))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn refresh_rotates_and_each_successor_works_once() {
    let f = fixture();
    let (_s, r0) = f.token_login(&alice()).await;
    assert!(r0.starts_with("sgr_"));
    let r1 = f.refresh(&r0).await.unwrap();
    assert_ne!(r1, r0);
    let r2 = f.refresh(&r1).await.unwrap();
    assert_ne!(r2, r1);
}

#[tokio::test]
async fn refresh_counts_as_activity_but_never_passes_the_absolute_deadline() {
    let f = fixture();
    let (s, mut r) = f.token_login(&alice()).await;
    f.clock.advance(25 * MIN);
    r = f.refresh(&r).await.unwrap();
    f.clock.advance(25 * MIN); // 50 min after login, 25 after the refresh
    assert_eq!(
        f.alive(&s).await,
        Ok(()),
        "the refresh kept it from idling out"
    );
    r = f.refresh(&r).await.unwrap();
    for _ in 0..26 {
        f.clock.advance(25 * MIN);
        r = f.refresh(&r).await.unwrap();
    }
    // 11 h 40 min so far; the absolute deadline still holds at 12 h.
    f.clock.set(T0.saturating_add(12 * 60 * MIN));
    assert_eq!(
        f.refresh(&r).await.unwrap_err().reason,
        Reason::AbsoluteTimeout
    );
}

#[tokio::test]
async fn refresh_tokens_die_with_their_session() {
    let f = fixture();
    // Logout.
    let (s, r) = f.token_login(&alice()).await;
    f.engine.revoke(&s.id(), Reason::LoggedOut).await.unwrap();
    assert_eq!(f.refresh(&r).await.unwrap_err().reason, Reason::LoggedOut);
    // Password change.
    f.with_password(&alice()).await;
    let (s, r) = f.token_login(&alice()).await;
    f.engine
        .change_password(
            &s,
            PasswordHash::from_phc("h1".into()),
            ClientInfo::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        f.refresh(&r).await.unwrap_err().reason,
        Reason::PasswordChanged
    );
    // Idle timeout.
    let (_s, r) = f.token_login(&alice()).await;
    f.clock.advance(30 * MIN);
    assert_eq!(f.refresh(&r).await.unwrap_err().reason, Reason::IdleTimeout);
    // Admin revoke-all.
    let (_s, r) = f.token_login(&alice()).await;
    f.engine
        .revoke_user(&alice(), Reason::RevokedByAdmin)
        .await
        .unwrap();
    assert_eq!(
        f.refresh(&r).await.unwrap_err().reason,
        Reason::RevokedByAdmin
    );
}

#[tokio::test]
async fn reuse_after_the_grace_window_revokes_the_whole_session() {
    let f = fixture();
    let (s, r0) = f.token_login(&alice()).await;
    let r1 = f.refresh(&r0).await.unwrap();
    f.clock.advance(5 * SEC + Duration::from_millis(1));
    let err = f.refresh(&r0).await.unwrap_err();
    assert_eq!(err.reason, Reason::RefreshReuseDetected);
    assert_eq!(f.alive(&s).await, Err(Reason::RefreshReuseDetected));
    assert_eq!(
        f.refresh(&r1).await.unwrap_err().reason,
        Reason::RefreshReuseDetected
    );
}

#[tokio::test]
async fn a_repeat_within_the_grace_window_gets_the_same_successor() {
    let f = fixture();
    let (s, r0) = f.token_login(&alice()).await;
    let r1 = f.refresh(&r0).await.unwrap();
    f.clock.advance(5 * SEC);
    assert_eq!(f.refresh(&r0).await.unwrap(), r1, "a retry, not a theft");
    assert_eq!(f.alive(&s).await, Ok(()));
    let r2 = f.refresh(&r1).await.unwrap();
    assert_ne!(r2, r1);
}

/// The kinds of the user's audit events, oldest first.
async fn event_kinds(f: &Fixture, user: &UserId) -> Vec<EventKind> {
    f.engine
        .events(&EventQuery::of_user(user.clone()))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

#[tokio::test]
async fn a_refresh_token_works_only_for_the_client_it_was_issued_to() {
    let f = fixture();
    let (s, r0) = f.token_login(&alice()).await;
    let other = ClientId::new("other-app").unwrap();
    for client in [other, ClientId::first_party()] {
        let err = f.engine.refresh(&r0, &client).await.unwrap_err();
        assert!(matches!(err, Error::ClientMismatch), "{err}");
    }
    // Refused without a trace in the session: not revoked, the token unspent,
    // and the refusals on record.
    assert_eq!(f.alive(&s).await, Ok(()));
    let kinds = event_kinds(&f, &alice()).await;
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == EventKind::RefreshClientMismatch)
            .count(),
        2
    );
    let r1 = f.refresh(&r0).await.unwrap();
    // The successor is bound to the same client.
    let err = f
        .engine
        .refresh(&r1, &ClientId::first_party())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ClientMismatch), "{err}");
    f.refresh(&r1).await.unwrap();
}

#[tokio::test]
async fn a_repeat_within_grace_is_honoured_only_for_its_client_and_is_recorded() {
    let f = fixture();
    let (s, r0) = f.token_login(&alice()).await;
    let r1 = f.refresh(&r0).await.unwrap();
    f.clock.advance(2 * SEC);
    assert_eq!(f.refresh(&r0).await.unwrap(), r1);
    let kinds = event_kinds(&f, &alice()).await;
    assert_eq!(kinds.last(), Some(&EventKind::RefreshRepeated));
    assert!(!EventKind::RefreshRepeated.shown_to_user());
    assert!(EventKind::RefreshClientMismatch.shown_to_user());

    // The same repeat from another client is not a retry: it is reuse, and the
    // session ends.
    let thief = ClientId::new("elsewhere").unwrap();
    let err = f.refresh_as(&r0, &thief).await.unwrap_err();
    assert_eq!(err.reason, Reason::RefreshReuseDetected);
    assert_eq!(f.alive(&s).await, Err(Reason::RefreshReuseDetected));
    let kinds = event_kinds(&f, &alice()).await;
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == EventKind::RefreshRepeated)
            .count(),
        1
    );
    assert!(kinds.contains(&EventKind::RefreshReuseDetected));
}

#[tokio::test]
async fn the_grace_window_covers_only_the_just_rotated_token() {
    let f = fixture();
    let (s, r0) = f.token_login(&alice()).await;
    let r1 = f.refresh(&r0).await.unwrap();
    let _r2 = f.refresh(&r1).await.unwrap();
    // r0's successor (r1) is already used: r0 is reuse even within the window.
    assert_eq!(
        f.refresh(&r0).await.unwrap_err().reason,
        Reason::RefreshReuseDetected
    );
    assert_eq!(f.alive(&s).await, Err(Reason::RefreshReuseDetected));
}

#[tokio::test]
async fn zero_grace_makes_any_repeat_a_reuse() {
    let f = fixture_with({
        let mut p = Policy::default();
        p.refresh_reuse_grace = Duration::ZERO;
        p
    });
    let (s, r0) = f.token_login(&alice()).await;
    f.refresh(&r0).await.unwrap();
    assert_eq!(
        f.refresh(&r0).await.unwrap_err().reason,
        Reason::RefreshReuseDetected
    );
    assert_eq!(f.alive(&s).await, Err(Reason::RefreshReuseDetected));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_uses_of_one_token_rotate_it_once() {
    for _ in 0..50 {
        let f = fixture();
        let (s, r0) = f.token_login(&alice()).await;
        let mut successors: Vec<String> = f
            .race_refreshes(&r0)
            .await
            .into_iter()
            .map(|r| r.expect("within the grace window every use succeeds"))
            .collect();
        successors.sort();
        successors.dedup();
        assert_eq!(successors.len(), 1, "exactly one successor: {successors:?}");
        assert_eq!(f.alive(&s).await, Ok(()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_uses_without_grace_never_leave_a_live_successor_behind_a_reuse() {
    for _ in 0..50 {
        let f = fixture_with({
            let mut p = Policy::default();
            p.refresh_reuse_grace = Duration::ZERO;
            p
        });
        let (s, r0) = f.token_login(&alice()).await;
        let ok: Vec<String> = f
            .race_refreshes(&r0)
            .await
            .into_iter()
            .filter_map(Result::ok)
            .collect();
        assert!(ok.len() <= 1, "two live successors: {ok:?}");
        // The losers were reuse: the session, and so any successor, is dead.
        assert_eq!(f.alive(&s).await, Err(Reason::RefreshReuseDetected));
        for t in ok {
            assert_eq!(
                f.refresh(&t).await.unwrap_err().reason,
                Reason::RefreshReuseDetected
            );
        }
    }
}

#[tokio::test]
async fn foreign_or_forged_refresh_tokens_are_invalid_and_revoke_nothing() {
    let f = fixture();
    let (s, r0) = f.token_login(&alice()).await;
    let issued = f
        .engine
        .create_session(&alice(), 0, ClientInfo::default())
        .await
        .unwrap();
    let session_token = issued.token.reveal().to_string();
    let forged = {
        let id = Token::parse(&r0, TokenKind::Refresh).unwrap().id();
        Token::from_parts(TokenKind::Refresh, id, [3; 32])
            .reveal()
            .to_string()
    };
    for bad in [
        session_token.as_str(),
        &forged,
        "sgr_x",
        "",
        &"a".repeat(5000),
    ] {
        assert_eq!(
            f.refresh(bad).await.unwrap_err(),
            Rejection::INVALID,
            "{bad:.20}"
        );
    }
    assert!(
        !f.engine
            .revoke_by_refresh_token(&forged, Reason::LoggedOut)
            .await
            .unwrap()
    );
    assert_eq!(f.alive(&s).await, Ok(()));
    assert!(f.refresh(&r0).await.is_ok());
}

#[tokio::test]
async fn logout_with_a_refresh_token_ends_the_session() {
    let f = fixture();
    let (s, r0) = f.token_login(&alice()).await;
    assert!(
        f.engine
            .revoke_by_refresh_token(&r0, Reason::LoggedOut)
            .await
            .unwrap()
    );
    assert_eq!(f.alive(&s).await, Err(Reason::LoggedOut));
    assert_eq!(f.refresh(&r0).await.unwrap_err().reason, Reason::LoggedOut);
}

#[tokio::test]
async fn introspection_of_a_refresh_token_sees_only_the_current_one() {
    let f = fixture();
    let (s, r0) = f.token_login(&alice()).await;
    assert_eq!(
        f.engine.refresh_token_session(&r0).await.unwrap().id(),
        s.id()
    );
    let r1 = f.refresh(&r0).await.unwrap();
    assert!(
        f.engine.refresh_token_session(&r0).await.is_err(),
        "a rotated token is inactive"
    );
    assert!(f.engine.refresh_token_session(&r1).await.is_ok());
}

// Personal API tokens.

async fn api_token(f: &Fixture, user: &UserId, ttl: Option<Duration>) -> String {
    let (token, _) = f
        .engine
        .create_api_token(user, "ci deploy", ttl)
        .await
        .unwrap();
    token.reveal().to_string()
}

fn rejected<T: std::fmt::Debug>(r: Result<T, Error>) -> Rejection {
    match r {
        Err(Error::Rejected(r)) => r,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn api_tokens_work_until_they_expire() {
    let f = fixture();
    let t = api_token(&f, &alice(), Some(60 * MIN)).await;
    assert!(t.starts_with("sga_"));
    let v = f.engine.validate_api_token(&t).await.unwrap();
    assert_eq!((v.user_id(), v.name()), (&alice(), "ci deploy"));
    f.clock.advance(60 * MIN - Duration::from_millis(1));
    assert!(f.engine.validate_api_token(&t).await.is_ok());
    f.clock.advance(Duration::from_millis(1));
    let r = rejected(f.engine.validate_api_token(&t).await);
    assert_eq!(
        (r.reason, r.at),
        (Reason::AbsoluteTimeout, Some(T0.saturating_add(60 * MIN)))
    );
}

#[tokio::test]
async fn api_token_lifetime_and_name_are_bounded() {
    let f = fixture();
    let max = Policy::default().api_token_max_ttl;
    let (_, rec) = f
        .engine
        .create_api_token(&alice(), "default", None)
        .await
        .unwrap();
    assert_eq!(rec.expires_at, T0.saturating_add(max));
    for (name, ttl) in [
        ("too long", Some(max + SEC)),
        ("zero", Some(Duration::ZERO)),
        ("", None),
        ("   ", None),
        ("bad\nname", None),
    ] {
        let err = f
            .engine
            .create_api_token(&alice(), name, ttl)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)), "{name:?}: {err:?}");
    }
    let long = "n".repeat(101);
    assert!(
        f.engine
            .create_api_token(&alice(), &long, None)
            .await
            .is_err()
    );
    assert!(
        f.engine
            .create_api_token(&alice(), &"n".repeat(100), None)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn password_change_ends_api_tokens_by_default() {
    let f = fixture();
    f.with_password(&alice()).await;
    let t = api_token(&f, &alice(), None).await;
    let (s, _) = f.token_login(&alice()).await;
    f.clock.advance(MIN);
    f.engine
        .change_password(
            &s,
            PasswordHash::from_phc("h1".into()),
            ClientInfo::default(),
        )
        .await
        .unwrap();
    let r = rejected(f.engine.validate_api_token(&t).await);
    assert_eq!(
        (r.reason, r.at),
        (Reason::PasswordChanged, Some(T0.saturating_add(MIN)))
    );
    let later = api_token(&f, &alice(), None).await;
    assert!(
        f.engine.validate_api_token(&later).await.is_ok(),
        "tokens made afterwards live"
    );
}

#[tokio::test]
async fn api_tokens_can_be_kept_across_a_password_change() {
    let f = fixture_with({
        let mut p = Policy::default();
        p.revoke_api_tokens_on_password_change = false;
        p
    });
    f.with_password(&alice()).await;
    let t = api_token(&f, &alice(), None).await;
    let (s, _) = f.token_login(&alice()).await;
    f.engine
        .change_password(
            &s,
            PasswordHash::from_phc("h1".into()),
            ClientInfo::default(),
        )
        .await
        .unwrap();
    assert!(f.engine.validate_api_token(&t).await.is_ok());
}

#[tokio::test]
async fn only_password_revocations_end_api_tokens() {
    let f = fixture();
    let t = api_token(&f, &alice(), None).await;
    let (s, _) = f.token_login(&alice()).await;
    f.engine
        .revoke_others(&s, Reason::SignedOutEverywhere)
        .await
        .unwrap();
    f.engine
        .revoke_user(&alice(), Reason::RevokedByAdmin)
        .await
        .unwrap();
    assert!(f.engine.validate_api_token(&t).await.is_ok());
    f.engine
        .revoke_user(&alice(), Reason::PasswordChanged)
        .await
        .unwrap();
    assert_eq!(
        rejected(f.engine.validate_api_token(&t).await).reason,
        Reason::PasswordChanged
    );
}

#[tokio::test]
async fn users_list_and_revoke_only_their_own_api_tokens() {
    let f = fixture();
    let bob = UserId::new("u_bob").unwrap();
    let mine = api_token(&f, &alice(), None).await;
    let (_, rec) = f
        .engine
        .create_api_token(&alice(), "second", None)
        .await
        .unwrap();
    let bobs = api_token(&f, &bob, None).await;
    let bobs_id = Token::parse(&bobs, TokenKind::ApiToken).unwrap().id();
    assert!(matches!(
        f.engine.revoke_own_api_token(&alice(), &bobs_id).await,
        Err(Error::NotFound(_))
    ));
    assert!(f.engine.validate_api_token(&bobs).await.is_ok());
    assert_eq!(f.engine.list_api_tokens(&alice()).await.unwrap().len(), 2);
    f.engine
        .revoke_own_api_token(&alice(), &rec.id)
        .await
        .unwrap();
    let listed = f.engine.list_api_tokens(&alice()).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(f.engine.validate_api_token(&mine).await.is_ok());
}

#[tokio::test]
async fn api_token_checks_reject_other_kinds_and_forgeries() {
    let f = fixture();
    let t = api_token(&f, &alice(), None).await;
    let id = Token::parse(&t, TokenKind::ApiToken).unwrap().id();
    let forged = Token::from_parts(TokenKind::ApiToken, id, [1; 32])
        .reveal()
        .to_string();
    let (_s, refresh) = f.token_login(&alice()).await;
    for bad in [forged.as_str(), &refresh, "sga_", ""] {
        assert_eq!(
            rejected(f.engine.validate_api_token(bad).await),
            Rejection::INVALID
        );
    }
    assert!(
        !f.engine
            .revoke_api_token_by_token(&forged, Reason::RevokedByUser)
            .await
            .unwrap()
    );
    assert!(
        f.engine
            .revoke_api_token_by_token(&t, Reason::RevokedByUser)
            .await
            .unwrap()
    );
    assert_eq!(
        rejected(f.engine.validate_api_token(&t).await).reason,
        Reason::RevokedByUser
    );
}

#[tokio::test]
async fn api_token_use_is_recorded_at_most_once_a_minute() {
    let f = fixture();
    let t = api_token(&f, &alice(), None).await;
    let id = Token::parse(&t, TokenKind::ApiToken).unwrap().id();
    let last_used = || async {
        f.engine
            .store()
            .load_api_token(&id)
            .await
            .unwrap()
            .unwrap()
            .0
            .last_used_at
    };
    assert_eq!(last_used().await, None);
    f.engine.validate_api_token(&t).await.unwrap();
    assert_eq!(last_used().await, Some(T0));
    f.clock.advance(30 * SEC);
    f.engine.validate_api_token(&t).await.unwrap();
    assert_eq!(last_used().await, Some(T0));
    f.clock.advance(30 * SEC);
    f.engine.validate_api_token(&t).await.unwrap();
    assert_eq!(last_used().await, Some(T0.saturating_add(MIN)));
}

#[tokio::test]
async fn api_token_status_checks_without_recording_a_use() {
    let f = fixture();
    let t = api_token(&f, &alice(), Some(MIN)).await;
    let id = Token::parse(&t, TokenKind::ApiToken).unwrap().id();
    assert_eq!(f.engine.api_token_status(&t).await.unwrap().id(), id);
    let (rec, _) = f.engine.store().load_api_token(&id).await.unwrap().unwrap();
    assert_eq!(rec.last_used_at, None, "a status check is not a use");
    f.clock.advance(MIN);
    assert_eq!(
        rejected(f.engine.api_token_status(&t).await).reason,
        Reason::AbsoluteTimeout
    );
}
