//! Every engine rule on a manual clock, each with a passing and a failing case.

use std::time::Duration;

use sessionguard_core::{
    ClientInfo, Engine, Error, ManualClock, MemoryStore, PasswordHash, Policy, Reason, Rejection,
    Store, Timestamp, Token, TokenKind, UserId,
};
use sessionguard_test_kit::Instrumented;

const MIN: Duration = Duration::from_secs(60);
const T0: Timestamp = Timestamp::from_millis(1_800_000_000_000);

type Counting = Instrumented<MemoryStore>;

struct Fixture {
    engine: Engine<Counting, ManualClock>,
    clock: ManualClock,
    store: Counting,
}

fn fixture() -> Fixture {
    let clock = ManualClock::new(T0);
    let store = Instrumented::new(MemoryStore::new());
    let engine = Engine::with_clock(store.clone(), clock.clone(), Policy::default()).unwrap();
    Fixture {
        engine,
        clock,
        store,
    }
}

fn alice() -> UserId {
    UserId::new("alice").unwrap()
}

impl Fixture {
    async fn login(&self, user: &UserId) -> String {
        let epoch = self.engine.store().user_epoch(user).await.unwrap().epoch;
        let issued = self
            .engine
            .create_session(user, epoch, ClientInfo::default())
            .await
            .unwrap();
        issued.token.reveal().to_string()
    }
    fn advance(&self, d: Duration) {
        self.clock.advance(d);
    }
}

#[track_caller]
fn rejected(r: Result<impl std::fmt::Debug, Error>) -> Rejection {
    match r {
        Err(Error::Rejected(r)) => r,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn idle_timeout_ends_an_inactive_session_at_its_deadline() {
    let f = fixture();
    let token = f.login(&alice()).await;
    f.advance(30 * MIN - Duration::from_millis(1));
    assert!(
        f.engine.status(&token).await.is_ok(),
        "alive just before the deadline"
    );
    f.advance(Duration::from_millis(1));
    let r = rejected(f.engine.validate(&token).await);
    assert_eq!(r.reason, Reason::IdleTimeout);
    assert_eq!(r.at, Some(T0.saturating_add(30 * MIN)));
}

#[tokio::test]
async fn activity_extends_the_idle_deadline() {
    let f = fixture();
    let token = f.login(&alice()).await;
    f.advance(20 * MIN);
    let s = f.engine.validate(&token).await.unwrap();
    assert_eq!(s.idle_deadline(), T0.saturating_add(50 * MIN));
    f.advance(20 * MIN); // 40 min after login, 20 after the last activity
    assert!(f.engine.validate(&token).await.is_ok());
}

#[tokio::test]
async fn absolute_timeout_is_not_extended_by_activity() {
    let f = fixture();
    let token = f.login(&alice()).await;
    for _ in 0..35 {
        f.advance(20 * MIN); // 35 × 20 min = 11 h 40 min
        f.engine.validate(&token).await.unwrap();
    }
    let s = f.engine.validate(&token).await.unwrap();
    assert_eq!(
        s.idle_deadline(),
        s.absolute_deadline(),
        "idle is capped by absolute"
    );
    f.advance(20 * MIN - Duration::from_millis(1));
    assert!(
        f.engine.validate(&token).await.is_ok(),
        "alive just before 12 h"
    );
    f.advance(Duration::from_millis(1));
    let r = rejected(f.engine.validate(&token).await);
    assert_eq!(r.reason, Reason::AbsoluteTimeout);
    assert_eq!(r.at, Some(T0.saturating_add(12 * 60 * MIN)));
}

#[tokio::test]
async fn status_never_extends_the_idle_deadline() {
    let f = fixture();
    let token = f.login(&alice()).await;
    f.advance(20 * MIN);
    let s = f.engine.status(&token).await.unwrap();
    assert_eq!(s.idle_deadline(), T0.saturating_add(30 * MIN));
    f.advance(10 * MIN);
    assert_eq!(
        rejected(f.engine.status(&token).await).reason,
        Reason::IdleTimeout
    );
    assert_eq!(f.store.touches(), 0);
}

#[tokio::test]
async fn touches_are_coalesced_but_the_deadline_is_never_late() {
    let f = fixture();
    let token = f.login(&alice()).await;
    // Many checks within one touch interval write at most once.
    f.advance(5 * MIN);
    for _ in 0..100 {
        f.engine.validate(&token).await.unwrap();
        f.advance(Duration::from_millis(100)); // 10 s in all, below the 60 s interval
    }
    assert_eq!(f.store.touches(), 1);
    // The enforced deadline is the written one: 30 min after the last write, even
    // though the last check was 10 s later. Early, never late.
    let written = T0.saturating_add(35 * MIN);
    let s = f.engine.status(&token).await.unwrap();
    assert_eq!(s.idle_deadline(), written);
    f.clock.set(written);
    assert_eq!(
        rejected(f.engine.status(&token).await).reason,
        Reason::IdleTimeout
    );
}

#[tokio::test]
async fn logout_ends_only_that_session_and_says_why() {
    let f = fixture();
    let phone = f.login(&alice()).await;
    let laptop = f.login(&alice()).await;
    f.advance(MIN);
    f.engine.logout(&phone).await.unwrap();
    let r = rejected(f.engine.validate(&phone).await);
    assert_eq!(
        (r.reason, r.at),
        (Reason::LoggedOut, Some(T0.saturating_add(MIN)))
    );
    assert!(f.engine.validate(&laptop).await.is_ok());
    // Logging out twice is a rejection, not a success.
    assert_eq!(
        rejected(f.engine.logout(&phone).await).reason,
        Reason::LoggedOut
    );
}

#[tokio::test]
async fn password_change_ends_every_session_and_reissues_this_device() {
    let f = fixture();
    let id = UserId::new("u_alice").unwrap();
    f.engine
        .store()
        .create_user(&id, "alice", PasswordHash::from_phc("old".into()))
        .await
        .unwrap();
    let this = f.login(&id).await;
    let other = f.login(&id).await;
    let current = f.engine.validate(&this).await.unwrap();
    f.advance(MIN);
    let issued = f
        .engine
        .change_password(
            &current,
            PasswordHash::from_phc("new".into()),
            ClientInfo::default(),
        )
        .await
        .unwrap();
    let fresh = issued.token.reveal();
    for old in [&this, &other] {
        let r = rejected(f.engine.validate(old).await);
        assert_eq!(
            (r.reason, r.at),
            (Reason::PasswordChanged, Some(T0.saturating_add(MIN)))
        );
    }
    let s = f.engine.validate(&fresh).await.unwrap();
    assert_ne!(s.id(), current.id());
    let user = f.engine.store().get_user(&id).await.unwrap().unwrap();
    assert_eq!(user.password_hash.as_phc(), "new");
}

#[tokio::test]
async fn a_session_created_on_a_stale_epoch_is_refused() {
    let f = fixture();
    let epoch_read_at_login = 0;
    f.engine
        .revoke_user(&alice(), Reason::PasswordChanged)
        .await
        .unwrap();
    let r = rejected(
        f.engine
            .create_session(&alice(), epoch_read_at_login, ClientInfo::default())
            .await,
    );
    assert_eq!(r.reason, Reason::PasswordChanged);
    assert!(
        f.engine
            .create_session(&alice(), 1, ClientInfo::default())
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn revoke_others_keeps_only_the_current_session() {
    let f = fixture();
    let this = f.login(&alice()).await;
    let other = f.login(&alice()).await;
    let bob = f.login(&UserId::new("bob").unwrap()).await;
    let current = f.engine.validate(&this).await.unwrap();
    f.engine
        .revoke_others(&current, Reason::SignedOutEverywhere)
        .await
        .unwrap();
    assert!(f.engine.validate(&this).await.is_ok());
    assert_eq!(
        rejected(f.engine.validate(&other).await).reason,
        Reason::SignedOutEverywhere
    );
    assert!(
        f.engine.validate(&bob).await.is_ok(),
        "other users are untouched"
    );
    // Sessions created afterwards live.
    let later = f.login(&alice()).await;
    assert!(f.engine.validate(&later).await.is_ok());
}

#[tokio::test]
async fn login_revokes_the_presented_token_and_never_adopts_it() {
    let f = fixture();
    // An attacker's own genuine session token, planted in the victim's browser.
    let planted = f.login(&UserId::new("mallory").unwrap()).await;
    let planted_id = Token::parse(&planted, TokenKind::Session).unwrap().id();
    let issued = f
        .engine
        .login(&alice(), 0, ClientInfo::default(), Some(&planted))
        .await
        .unwrap();
    assert_ne!(issued.session.id(), planted_id, "a fresh id is minted");
    assert_ne!(*issued.token.reveal(), planted);
    assert_eq!(
        rejected(f.engine.validate(&planted).await).reason,
        Reason::Superseded
    );
    assert_eq!(
        f.engine
            .validate(&issued.token.reveal())
            .await
            .unwrap()
            .user_id(),
        &alice()
    );
}

/// A token with a real session's public id and a verifier of the attacker's choice.
fn forge(genuine: &str) -> String {
    let id = Token::parse(genuine, TokenKind::Session).unwrap().id();
    Token::from_parts(TokenKind::Session, id, [7; 32])
        .reveal()
        .to_string()
}

#[tokio::test]
async fn login_with_a_forged_or_junk_token_revokes_nothing() {
    let f = fixture();
    let victim = f.login(&alice()).await;
    let forged = forge(&victim);
    for presented in [forged.as_str(), "sgs_junk", "", &"x".repeat(10_000)] {
        f.engine
            .login(&alice(), 0, ClientInfo::default(), Some(presented))
            .await
            .unwrap();
    }
    assert!(f.engine.validate(&victim).await.is_ok());
    assert!(
        !f.engine
            .revoke_token(&forged, Reason::LoggedOut)
            .await
            .unwrap()
    );
    assert!(
        f.engine
            .revoke_token(&victim, Reason::LoggedOut)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn malformed_tokens_are_rejected_without_a_store_lookup() {
    let f = fixture();
    let good = f.login(&alice()).await;
    let refresh = Token::generate(TokenKind::Refresh).reveal();
    let mut flipped = good.clone().into_bytes();
    flipped[20] = if flipped[20] == b'a' { b'b' } else { b'a' };
    let flipped = String::from_utf8(flipped).unwrap();
    for bad in [
        "",
        "sgs_",
        "Bearer x",
        &"A".repeat(74),
        &refresh,
        &flipped,
        &"é".repeat(37),
    ] {
        assert_eq!(
            rejected(f.engine.validate(bad).await),
            Rejection::INVALID,
            "{bad:?}"
        );
    }
    assert_eq!(f.store.loads(), 0);
    // A well-formed token nobody issued does reach the store, and is invalid there.
    let unknown = Token::generate(TokenKind::Session).reveal();
    assert_eq!(
        rejected(f.engine.validate(&unknown).await),
        Rejection::INVALID
    );
    assert_eq!(f.store.loads(), 1);
}

#[tokio::test]
async fn a_wrong_verifier_reveals_nothing_about_the_session() {
    let f = fixture();
    let token = f.login(&alice()).await;
    let forged = forge(&token);
    assert_eq!(
        rejected(f.engine.validate(&forged).await),
        Rejection::INVALID
    );
    f.engine.logout(&token).await.unwrap();
    // The genuine holder learns why; the forger learns nothing.
    assert_eq!(
        rejected(f.engine.validate(&token).await).reason,
        Reason::LoggedOut
    );
    assert_eq!(
        rejected(f.engine.validate(&forged).await),
        Rejection::INVALID
    );
    assert_eq!(rejected(f.engine.status(&forged).await), Rejection::INVALID);
}

#[tokio::test]
async fn the_earliest_end_is_the_reason_reported() {
    let f = fixture();
    let token = f.login(&alice()).await;
    let id = Token::parse(&token, TokenKind::Session).unwrap().id();
    f.advance(40 * MIN); // idle deadline passed at 30 min
    f.engine.revoke(&id, Reason::RevokedByAdmin).await.unwrap();
    let r = rejected(f.engine.validate(&token).await);
    assert_eq!(
        (r.reason, r.at),
        (Reason::IdleTimeout, Some(T0.saturating_add(30 * MIN)))
    );

    let token = f.login(&alice()).await;
    f.advance(MIN);
    f.engine
        .revoke_user(&alice(), Reason::SignedOutEverywhere)
        .await
        .unwrap();
    f.advance(60 * MIN); // later also idle
    assert_eq!(
        rejected(f.engine.validate(&token).await).reason,
        Reason::SignedOutEverywhere
    );
}

#[tokio::test]
async fn tombstones_keep_the_reason_until_purged_after_retention() {
    let f = fixture();
    let token = f.login(&alice()).await;
    f.engine.logout(&token).await.unwrap(); // idle deadline frozen at T0 + 30 min
    // Retention (1 h) runs from the last moment the token could have been valid.
    f.clock
        .set(T0.saturating_add(90 * MIN - Duration::from_millis(1)));
    assert_eq!(f.engine.purge_expired().await.unwrap().sessions, 0);
    assert_eq!(
        rejected(f.engine.validate(&token).await).reason,
        Reason::LoggedOut
    );
    f.clock.set(T0.saturating_add(90 * MIN));
    assert_eq!(f.engine.purge_expired().await.unwrap().sessions, 1);
    assert_eq!(
        rejected(f.engine.validate(&token).await),
        Rejection::INVALID
    );
}

#[tokio::test]
async fn users_end_only_their_own_sessions_by_id() {
    let f = fixture();
    let mine = f.login(&alice()).await;
    let other = f.login(&alice()).await;
    let bobs = f.login(&UserId::new("bob").unwrap()).await;
    let other_id = Token::parse(&other, TokenKind::Session).unwrap().id();
    let bobs_id = Token::parse(&bobs, TokenKind::Session).unwrap().id();
    assert!(matches!(
        f.engine.revoke_own(&alice(), &bobs_id).await,
        Err(Error::NotFound(_))
    ));
    assert!(f.engine.validate(&bobs).await.is_ok());
    f.engine.revoke_own(&alice(), &other_id).await.unwrap();
    assert_eq!(
        rejected(f.engine.validate(&other).await).reason,
        Reason::RevokedByUser
    );
    assert!(matches!(
        f.engine.revoke_own(&alice(), &other_id).await,
        Err(Error::NotFound(_))
    ));
    assert!(f.engine.validate(&mine).await.is_ok());
}

#[tokio::test]
async fn list_shows_live_sessions_most_recent_first() {
    let f = fixture();
    let a = f.login(&alice()).await;
    f.advance(2 * MIN);
    let b = f.login(&alice()).await;
    let c = f.login(&alice()).await;
    f.engine.logout(&c).await.unwrap();
    f.advance(2 * MIN);
    f.engine.validate(&a).await.unwrap();
    let ids: Vec<_> = f
        .engine
        .list_sessions(&alice())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.state.id)
        .collect();
    let id = |t: &str| Token::parse(t, TokenKind::Session).unwrap().id();
    assert_eq!(ids, vec![id(&a), id(&b)]);
}

#[tokio::test]
async fn csrf_token_is_per_session_and_checked_in_constant_time() {
    let f = fixture();
    let a = f.engine.validate(&f.login(&alice()).await).await.unwrap();
    let b = f.engine.validate(&f.login(&alice()).await).await.unwrap();
    assert!(a.verify_csrf(&a.csrf_token()));
    assert!(!a.verify_csrf(&b.csrf_token()));
    assert!(!a.verify_csrf(""));
    assert!(!a.verify_csrf(&a.csrf_token()[1..]));
}

#[tokio::test]
async fn debug_output_of_issued_sessions_holds_no_secret() {
    let f = fixture();
    let issued = f
        .engine
        .create_session(&alice(), 0, ClientInfo::default())
        .await
        .unwrap();
    let text = issued.token.reveal();
    let dbg = format!("{issued:?}");
    assert!(!dbg.contains(&text[4..]), "{dbg}");
    assert!(!dbg.contains(&issued.session.csrf_token()));
}

#[tokio::test]
async fn a_session_keeps_the_reason_of_the_bump_that_ended_it() {
    let f = fixture();
    let first = f.login(&alice()).await;
    f.advance(MIN);
    f.engine
        .revoke_user(&alice(), Reason::RevokedByAdmin)
        .await
        .unwrap();
    let second = f.login(&alice()).await;
    f.advance(MIN);
    f.engine
        .revoke_user(&alice(), Reason::PasswordChanged)
        .await
        .unwrap();
    let r = rejected(f.engine.validate(&first).await);
    assert_eq!(
        (r.reason, r.at),
        (Reason::RevokedByAdmin, Some(T0.saturating_add(MIN))),
        "a later password change does not rewrite why the first session ended"
    );
    let r = rejected(f.engine.validate(&second).await);
    assert_eq!(
        (r.reason, r.at),
        (Reason::PasswordChanged, Some(T0.saturating_add(2 * MIN)))
    );
}

#[tokio::test]
async fn a_check_is_one_store_call_cookie_renewal_included() {
    let f = fixture();
    let t = f.login(&alice()).await;
    let before = f.store.calls();
    f.engine.validate(&t).await.unwrap();
    assert_eq!(f.store.calls() - before, 1, "validate: one lookup");
    let before = f.store.calls();
    let v = f.engine.validate_renewing(&t).await.unwrap();
    assert!(v.new_token.is_none());
    assert_eq!(
        f.store.calls() - before,
        1,
        "a cookie check reads the epoch with the session"
    );
    // Past the touch interval, the check also writes the activity: two calls.
    f.advance(2 * MIN);
    let before = f.store.calls();
    f.engine.validate_renewing(&t).await.unwrap();
    assert_eq!(f.store.calls() - before, 2);
}

#[tokio::test]
async fn a_check_and_the_users_identity_cost_one_store_call_until_the_roles_change() {
    use sessionguard_core::UserAccess;
    let f = fixture();
    let user = alice();
    let set = |roles: &[&str]| {
        UserAccess::new(None, roles.iter().map(|r| (*r).to_owned()).collect()).unwrap()
    };
    f.engine
        .update_user_access(&user, set(&["editor"]))
        .await
        .unwrap();
    let token = f.login(&user).await;
    let s = f.engine.status(&token).await.unwrap();
    let first = f.engine.identity(&user, s.user_privileges()).await.unwrap();
    assert!(first.has_role("editor"));

    let before = f.store.calls();
    let s = f.engine.status(&token).await.unwrap();
    let again = f.engine.identity(&user, s.user_privileges()).await.unwrap();
    assert_eq!(
        f.store.calls() - before,
        1,
        "the check's one read, nothing more"
    );
    assert_eq!(again, first);

    // A change of roles moves the count the check reads: the identity is read anew.
    f.engine
        .update_user_access(&user, set(&["admin"]))
        .await
        .unwrap();
    let s = f.engine.status(&token).await.unwrap();
    let changed = f.engine.identity(&user, s.user_privileges()).await.unwrap();
    assert!(changed.has_role("admin"));
    assert!(!changed.has_role("editor"));
}

#[tokio::test]
async fn a_session_or_api_token_from_a_later_epoch_than_its_users_record_is_refused() {
    let f = fixture();
    let user = alice();
    f.engine
        .revoke_user(&user, Reason::PasswordChanged)
        .await
        .unwrap();
    // Created under epoch 1: live while the store remembers that epoch.
    let token = f.login(&user).await;
    let (api, _) = f.engine.create_api_token(&user, "ci", None).await.unwrap();
    let api = api.reveal().to_string();
    assert!(f.engine.validate(&token).await.is_ok());
    assert!(f.engine.validate_api_token(&api).await.is_ok());

    // The store loses the user's record (a Redis eviction, a restored backup):
    // it reads as epoch 0, below the session's and the token's own. Both are
    // refused rather than judged against a record that forgot the bumps.
    f.store
        .inner()
        .index()
        .restore_epoch(&user, sessionguard_core::UserEpoch::default());
    let r = rejected(f.engine.validate(&token).await);
    assert_eq!(r, Rejection::INVALID);
    let r = rejected(f.engine.validate_api_token(&api).await);
    assert_eq!(r, Rejection::INVALID);
    assert!(f.engine.list_sessions(&user).await.unwrap().is_empty());
}
