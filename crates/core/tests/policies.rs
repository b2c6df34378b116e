//! Session policies in the engine, on a manual clock, each rule with a passing and
//! a failing case: concurrent-session limits, renewal, step-up, privilege
//! changes, profiles, and the audit trail they leave.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use sessionguard_core::{
    AuditEvent, ClientId, ClientInfo, Clock as _, Engine, Error, EventKind, EventQuery,
    ManualClock, MemoryStore, OnLimit, Policy, ProfileName, Profiles, Reason, Rejection, Store,
    Timestamp, UserAccess, UserId, audit,
};

const MIN: Duration = Duration::from_secs(60);
const T0: Timestamp = Timestamp::from_millis(1_800_000_000_000);

struct Fixture {
    engine: Engine<MemoryStore, ManualClock>,
    clock: ManualClock,
}

fn with_standard(policy: Policy) -> Fixture {
    let clock = ManualClock::new(T0);
    let engine = Engine::with_clock(MemoryStore::new(), clock.clone(), policy).unwrap();
    Fixture { engine, clock }
}

fn fixture() -> Fixture {
    with_standard(Policy::default())
}

fn alice() -> UserId {
    UserId::new("alice").unwrap()
}

fn client(agent: &str, last_octet: u8) -> ClientInfo {
    ClientInfo::new(
        Some(agent),
        Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, last_octet))),
    )
}

impl Fixture {
    async fn login_from(&self, user: &UserId, from: ClientInfo) -> Result<String, Error> {
        let epoch = self.engine.store().user_epoch(user).await.unwrap().epoch;
        let issued = self.engine.login(user, epoch, from, None).await?;
        Ok(issued.token.reveal().to_string())
    }

    async fn login(&self, user: &UserId) -> String {
        self.login_from(user, ClientInfo::default()).await.unwrap()
    }

    fn advance(&self, d: Duration) {
        self.clock.advance(d);
    }

    async fn assign(&self, user: &UserId, profile: &str) {
        let access = UserAccess::new(Some(ProfileName::new(profile).unwrap()), vec![]).unwrap();
        self.engine.update_user_access(user, access).await.unwrap();
    }

    async fn events(&self, user: &UserId) -> Vec<AuditEvent> {
        self.engine
            .events(&EventQuery::of_user(user.clone()))
            .await
            .unwrap()
    }

    async fn kinds(&self, user: &UserId) -> Vec<EventKind> {
        self.events(user).await.iter().map(|e| e.kind).collect()
    }
}

#[track_caller]
fn rejected(r: Result<impl std::fmt::Debug, Error>) -> Rejection {
    match r {
        Err(Error::Rejected(r)) => r,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn limited(max: u32, on_limit: OnLimit) -> Policy {
    let mut p = Policy::default();
    p.max_sessions = max;
    p.on_limit = on_limit;
    p
}

#[tokio::test]
async fn every_token_of_a_user_is_minted_in_the_users_shard() {
    let f = fixture();
    let issued = f
        .engine
        .create_session(&alice(), 0, ClientInfo::default())
        .await
        .unwrap();
    assert_eq!(issued.token.id().shard(), alice().shard());
    let refresh = f
        .engine
        .issue_refresh(&issued.session, &ClientId::first_party())
        .await
        .unwrap();
    assert_eq!(refresh.id().shard(), alice().shard());
    let (api, _) = f
        .engine
        .create_api_token(&alice(), "ci", None)
        .await
        .unwrap();
    assert_eq!(api.id().shard(), alice().shard());
    let bob = UserId::new("bob").unwrap();
    assert_ne!(alice().shard(), bob.shard(), "these two differ");
}

#[tokio::test]
async fn below_the_limit_every_session_lives() {
    let f = with_standard(limited(2, OnLimit::EvictOldest));
    let a = f.login(&alice()).await;
    let b = f.login(&alice()).await;
    assert!(f.engine.validate(&a).await.is_ok());
    assert!(f.engine.validate(&b).await.is_ok());
    assert!(!f.kinds(&alice()).await.contains(&EventKind::Displaced));
}

#[tokio::test]
async fn evict_oldest_displaces_the_least_recently_used_and_says_who_came() {
    let f = with_standard(limited(2, OnLimit::EvictOldest));
    let a = f.login(&alice()).await;
    f.advance(MIN);
    let b = f.login(&alice()).await;
    // `a` is older, but used after `b`: `b` is the least recently used.
    f.advance(5 * MIN);
    f.engine.validate(&a).await.unwrap();
    f.advance(MIN);
    let intruder = client("Intruder/1.0", 66);
    let c = f.login_from(&alice(), intruder.clone()).await.unwrap();
    let at = f.engine.clock().now();

    let r = rejected(f.engine.validate(&b).await);
    assert_eq!(r.reason, Reason::Displaced);
    assert_eq!(r.at, Some(at));
    assert_eq!(r.displaced_by.as_deref(), Some(&intruder));
    assert!(f.engine.validate(&a).await.is_ok());
    assert!(f.engine.validate(&c).await.is_ok());
    assert_eq!(f.engine.list_sessions(&alice()).await.unwrap().len(), 2);
    let displaced: Vec<_> = f
        .events(&alice())
        .await
        .into_iter()
        .filter(|e| e.kind == EventKind::Displaced)
        .collect();
    assert_eq!(displaced.len(), 1);
    assert_eq!(
        displaced[0].client, intruder,
        "recorded with the new login's client"
    );
    assert_eq!(displaced[0].reason, Some(Reason::Displaced));
}

#[tokio::test]
async fn reject_new_refuses_the_login_until_a_session_ends() {
    let f = with_standard(limited(1, OnLimit::RejectNew));
    let a = f.login(&alice()).await;
    let err = f.login_from(&alice(), client("Second/1.0", 2)).await;
    assert!(matches!(err, Err(Error::LimitReached)), "{err:?}");
    assert!(f.engine.validate(&a).await.is_ok(), "nobody was displaced");
    assert!(f.kinds(&alice()).await.contains(&EventKind::LoginRefused));
    // Signing out makes room; so does a timeout.
    f.engine.logout(&a).await.unwrap();
    let b = f.login(&alice()).await;
    f.advance(31 * MIN);
    assert_eq!(
        rejected(f.engine.validate(&b).await).reason,
        Reason::IdleTimeout
    );
    f.login(&alice()).await;
}

#[tokio::test]
async fn each_user_follows_the_limit_of_their_profile() {
    let f = fixture();
    // `standard` is unlimited.
    for _ in 0..5 {
        f.login(&alice()).await;
    }
    assert_eq!(f.engine.list_sessions(&alice()).await.unwrap().len(), 5);
    // `admin` allows one: assigning it trims at once, and logins displace.
    f.assign(&alice(), "admin").await;
    assert_eq!(f.engine.list_sessions(&alice()).await.unwrap().len(), 1);
    let first = f.login(&alice()).await;
    let second = f.login(&alice()).await;
    assert_eq!(
        rejected(f.engine.validate(&first).await).reason,
        Reason::Displaced
    );
    assert!(f.engine.validate(&second).await.is_ok());
}

fn renewing() -> Policy {
    let mut p = Policy::default();
    p.renewal_interval = 10 * MIN;
    p.renewal_overlap = Duration::from_secs(30);
    p
}

#[tokio::test]
async fn a_token_is_renewed_once_the_interval_passes_and_the_old_one_overlaps() {
    let f = with_standard(renewing());
    let old = f.login(&alice()).await;
    f.advance(9 * MIN);
    let v = f.engine.validate_renewing(&old).await.unwrap();
    assert!(v.new_token.is_none(), "not due yet");
    let csrf = v.session.csrf_token();

    f.advance(MIN);
    let v = f.engine.validate_renewing(&old).await.unwrap();
    let new = v.new_token.expect("due").reveal().to_string();
    assert_ne!(new, old);
    assert_eq!(v.session.token_issued_at(), f.engine.clock().now());
    assert_eq!(v.session.csrf_token(), csrf, "the anti-CSRF token survives");
    // In the overlap the old token still works, without being renewed again.
    f.advance(Duration::from_secs(29));
    let again = f.engine.validate_renewing(&old).await.unwrap();
    assert!(again.new_token.is_none());
    assert!(f.engine.validate(&new).await.is_ok());
    // After it, the old one is refused with `renewed`; the session lives on.
    f.advance(Duration::from_secs(1));
    let r = rejected(f.engine.validate(&old).await);
    assert_eq!(r.reason, Reason::Renewed);
    assert!(f.engine.validate(&new).await.is_ok());
    assert!(f.kinds(&alice()).await.contains(&EventKind::TokenRenewed));
}

#[tokio::test]
async fn renewal_is_off_by_default_and_never_happens_without_a_cookie() {
    let f = fixture();
    let t = f.login(&alice()).await;
    f.advance(25 * MIN);
    assert!(
        f.engine
            .validate_renewing(&t)
            .await
            .unwrap()
            .new_token
            .is_none()
    );

    let f = with_standard(renewing());
    let t = f.login(&alice()).await;
    f.advance(11 * MIN);
    // Plain validation (bearer tokens) never rotates: nobody would get the token.
    f.engine.validate(&t).await.unwrap();
    f.advance(20 * MIN);
    assert!(f.engine.validate(&t).await.is_ok());
}

#[tokio::test]
async fn simultaneous_renewals_hand_out_one_new_token() {
    let f = with_standard(renewing());
    let old = f.login(&alice()).await;
    f.advance(11 * MIN);
    let engine = std::sync::Arc::new(f.engine);
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (engine, old) = (engine.clone(), old.clone());
            tokio::spawn(async move { engine.validate_renewing(&old).await.unwrap() })
        })
        .collect();
    let mut new_tokens = Vec::new();
    for h in handles {
        if let Some(t) = h.await.unwrap().new_token {
            new_tokens.push(t.reveal().to_string());
        }
    }
    assert_eq!(
        new_tokens.len(),
        1,
        "one winner; the others ride the overlap"
    );
    assert!(engine.validate(&new_tokens[0]).await.is_ok());
}

#[tokio::test]
async fn step_up_counts_after_login_and_after_elevate_only() {
    let f = fixture();
    let t = f.login(&alice()).await;
    let s = f.engine.validate(&t).await.unwrap();
    assert!(
        f.engine.require_step_up(&s).await.is_ok(),
        "a fresh login counts"
    );
    f.advance(5 * MIN);
    let s = f.engine.validate(&t).await.unwrap();
    let err = f.engine.require_step_up(&s).await;
    assert!(matches!(err, Err(Error::StepUpRequired)), "{err:?}");

    let issued = f.engine.elevate(&s).await.unwrap();
    let new = issued.token.reveal().to_string();
    assert!(f.engine.require_step_up(&issued.session).await.is_ok());
    assert_eq!(
        issued.session.step_up_until(),
        f.engine.clock().now().saturating_add(5 * MIN)
    );
    // The old token died at once; the new one carries the elevation.
    let r = rejected(f.engine.validate(&t).await);
    assert_eq!(r.reason, Reason::PrivilegeChanged);
    assert_eq!(issued.session.csrf_token(), s.csrf_token());
    f.advance(4 * MIN);
    let s = f.engine.validate(&new).await.unwrap();
    assert!(f.engine.require_step_up(&s).await.is_ok());
    f.advance(MIN);
    let s = f.engine.validate(&new).await.unwrap();
    assert!(f.engine.require_step_up(&s).await.is_err());
    let kinds = f.kinds(&alice()).await;
    assert!(kinds.contains(&EventKind::Elevated));
    assert!(kinds.contains(&EventKind::StepUpRequired));
}

#[tokio::test]
async fn elevating_with_a_replaced_token_fails() {
    let f = with_standard(renewing());
    let old = f.login(&alice()).await;
    f.advance(11 * MIN);
    let stale = f.engine.validate(&old).await.unwrap();
    let new = f
        .engine
        .validate_renewing(&old)
        .await
        .unwrap()
        .new_token
        .unwrap();
    assert_eq!(
        rejected(f.engine.elevate(&stale).await).reason,
        Reason::PrivilegeChanged
    );
    let current = f.engine.validate(new.reveal().as_str()).await.unwrap();
    assert!(f.engine.elevate(&current).await.is_ok());
}

#[tokio::test]
async fn a_privilege_change_rotates_each_session_at_its_next_cookie_use() {
    let f = fixture();
    let t = f.login(&alice()).await;
    f.advance(MIN);
    let roles = UserAccess::new(None, vec!["billing".into()]).unwrap();
    f.engine.update_user_access(&alice(), roles).await.unwrap();
    // A bearer check does not rotate (there is no way to hand the token over).
    assert!(f.engine.validate(&t).await.is_ok());
    let v = f.engine.validate_renewing(&t).await.unwrap();
    let new = v.new_token.expect("rotated").reveal().to_string();
    // Rotated once only.
    assert!(
        f.engine
            .validate_renewing(&new)
            .await
            .unwrap()
            .new_token
            .is_none()
    );
    // The old token overlaps, then says why it was replaced.
    f.advance(Duration::from_secs(30));
    assert_eq!(
        rejected(f.engine.validate(&t).await).reason,
        Reason::PrivilegeChanged
    );
    let kinds = f.kinds(&alice()).await;
    assert!(kinds.contains(&EventKind::UserUpdated));
    assert!(kinds.contains(&EventKind::TokenRotated));
}

#[tokio::test]
async fn a_rotated_session_follows_its_new_profile_without_outliving_its_login() {
    let f = fixture();
    let t = f.login(&alice()).await;
    f.advance(MIN);
    f.assign(&alice(), "admin").await;
    let v = f.engine.validate_renewing(&t).await.unwrap();
    let new = v.new_token.unwrap().reveal().to_string();
    let s = v.session;
    assert_eq!(s.profile().map(ProfileName::as_str), Some("admin"));
    assert_eq!(
        s.idle_deadline(),
        f.engine.clock().now().saturating_add(10 * MIN)
    );
    assert_eq!(
        s.absolute_deadline(),
        T0.saturating_add(Duration::from_secs(8 * 3600))
    );
    // Idle 10 minutes now, not 30.
    f.advance(10 * MIN);
    assert_eq!(
        rejected(f.engine.validate(&new).await).reason,
        Reason::IdleTimeout
    );
}

#[tokio::test]
async fn an_authenticated_id_rotates_server_side_after_a_privilege_change() {
    let f = fixture();
    let t = f.login(&alice()).await;
    let s = f.engine.validate(&t).await.unwrap();
    f.advance(MIN);
    f.engine
        .update_user_access(&alice(), UserAccess::default())
        .await
        .unwrap();
    let peek = f
        .engine
        .validate_authenticated_id(&s.id(), false)
        .await
        .unwrap();
    assert_eq!(peek.token_issued_at(), T0, "a peek does not rotate");
    let touched = f
        .engine
        .validate_authenticated_id(&s.id(), true)
        .await
        .unwrap();
    assert_eq!(touched.token_issued_at(), f.engine.clock().now());
}

#[tokio::test]
async fn an_undefined_profile_cannot_be_assigned() {
    let f = fixture();
    let access = UserAccess::new(Some(ProfileName::new("nope").unwrap()), vec![]).unwrap();
    let err = f.engine.update_user_access(&alice(), access).await;
    assert!(matches!(err, Err(Error::InvalidInput(_))), "{err:?}");
    assert_eq!(
        f.engine.store().user_access(&alice()).await.unwrap(),
        UserAccess::default()
    );
}

#[tokio::test]
async fn roles_are_validated_and_canonical() {
    let ok = UserAccess::new(None, vec!["b".into(), "a:read".into(), "b".into()]).unwrap();
    assert_eq!(ok.roles, ["a:read", "b"]);
    assert!(UserAccess::new(None, vec![String::new()]).is_err());
    assert!(UserAccess::new(None, vec!["has space".into()]).is_err());
    assert!(UserAccess::new(None, vec!["x".repeat(65)]).is_err());
    assert!(UserAccess::new(None, (0..33).map(|i| format!("r{i}")).collect()).is_err());
}

#[tokio::test]
async fn profiles_set_each_users_timeouts() {
    let clock = ManualClock::new(T0);
    let mut profiles = Profiles::default();
    profiles.set_default(ProfileName::new("sensitive").unwrap());
    let engine = Engine::with_profiles(MemoryStore::new(), clock.clone(), profiles).unwrap();
    let f = Fixture { engine, clock };
    let t = f.login(&alice()).await;
    f.advance(14 * MIN);
    assert!(f.engine.validate(&t).await.is_ok(), "sensitive: idle 15m");
    f.advance(15 * MIN);
    assert_eq!(
        rejected(f.engine.validate(&t).await).reason,
        Reason::IdleTimeout
    );
}

#[tokio::test]
async fn every_lifecycle_event_is_recorded_with_its_client() {
    let f = fixture();
    let hash = |tag: &str| {
        sessionguard_core::PasswordHash::from_phc(format!(
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA${tag}"
        ))
    };
    f.engine
        .store()
        .create_user(&alice(), "alice", hash("v1"))
        .await
        .unwrap();
    let laptop = client("Laptop/1.0", 10);
    let t = audit::with_client(laptop.clone(), f.login_from(&alice(), laptop.clone()))
        .await
        .unwrap();
    let s = f.engine.validate(&t).await.unwrap();
    let refresh = f
        .engine
        .issue_refresh(&s, &ClientId::first_party())
        .await
        .unwrap();
    let next = f
        .engine
        .refresh(refresh.reveal().as_str(), &ClientId::first_party())
        .await
        .unwrap();
    // Reusing the replaced refresh token after the grace window ends the session.
    f.advance(MIN);
    let _ = f
        .engine
        .refresh(refresh.reveal().as_str(), &ClientId::first_party())
        .await;
    drop(next);
    let t2 = f.login(&alice()).await;
    let s2 = f.engine.validate(&t2).await.unwrap();
    f.engine
        .record(EventKind::LoginFailed, Some(&alice()), None, None)
        .await;
    f.engine
        .change_password(&s2, hash("v2"), ClientInfo::default())
        .await
        .unwrap();
    let t3 = f.login(&alice()).await;
    f.engine.logout(&t3).await.unwrap();
    f.engine
        .revoke_user(&alice(), Reason::RevokedByAdmin)
        .await
        .unwrap();

    let events = f.events(&alice()).await;
    let kinds: Vec<_> = events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::LoginSucceeded,
            EventKind::Refreshed,
            EventKind::RefreshReuseDetected,
            EventKind::LoginSucceeded,
            EventKind::LoginFailed,
            EventKind::PasswordChanged,
            EventKind::LoginSucceeded,
            EventKind::LoginSucceeded,
            EventKind::LoggedOut,
            EventKind::UserSessionsRevoked,
        ]
    );
    assert_eq!(events[0].client, laptop, "the scoped client is recorded");
    assert_eq!(events[0].session, Some(s.id()));
    assert_eq!(events[2].reason, Some(Reason::RefreshReuseDetected));
    assert_eq!(events[5].reason, Some(Reason::PasswordChanged));
    assert_eq!(events[8].reason, Some(Reason::LoggedOut));
    assert_eq!(events[9].reason, Some(Reason::RevokedByAdmin));
    assert!(events.windows(2).all(|w| w[0].id < w[1].id));
    assert!(events.iter().all(|e| e.user.as_ref() == Some(&alice())));
}

#[tokio::test]
async fn old_audit_events_are_purged_after_the_retention() {
    let clock = ManualClock::new(T0);
    let engine = Engine::with_clock(MemoryStore::new(), clock.clone(), Policy::default())
        .unwrap()
        .with_audit_retention(Duration::from_secs(86_400));
    let f = Fixture { engine, clock };
    f.login(&alice()).await;
    f.advance(Duration::from_secs(86_400));
    f.engine.purge_expired().await.unwrap();
    assert_eq!(
        f.events(&alice()).await.len(),
        1,
        "kept for exactly the retention"
    );
    f.advance(Duration::from_secs(1));
    f.engine.purge_expired().await.unwrap();
    assert!(f.events(&alice()).await.is_empty());
}

#[tokio::test]
async fn the_audit_mirror_sees_each_stored_event() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    let clock = ManualClock::new(T0);
    let engine = Engine::with_clock(MemoryStore::new(), clock.clone(), Policy::default())
        .unwrap()
        .with_audit_mirror(std::sync::Arc::new(move |e: &AuditEvent| {
            sink.lock().unwrap().push((e.id, e.kind));
        }));
    let f = Fixture { engine, clock };
    let t = f.login(&alice()).await;
    f.engine.logout(&t).await.unwrap();
    let stored: Vec<_> = f
        .events(&alice())
        .await
        .iter()
        .map(|e| (e.id, e.kind))
        .collect();
    assert_eq!(*seen.lock().unwrap(), stored);
    assert_eq!(stored.len(), 2);
}
