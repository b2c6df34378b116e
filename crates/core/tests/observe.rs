//! The engine tells its observer of each decision once, where it is decided:
//! every family of [`Observation`] with a case that reports it and one that
//! does not.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sessionguard_core::engine::PasswordAttempt;
use sessionguard_core::observe::{
    Credential, Observation, Observer, RefreshOutcome, RevocationScope, ThrottledBy,
};
use sessionguard_core::{
    ClientId, ClientInfo, Clock as _, Engine, ManualClock, MemoryStore, Policy, Reason,
    ThrottleRule, Timestamp, UserId,
};

const T0: Timestamp = Timestamp::from_millis(1_800_000_000_000);

/// Keeps every observation.
#[derive(Default)]
struct Recorder(Mutex<Vec<Observation>>);

impl Observer for Recorder {
    fn observe(&self, event: Observation) {
        self.0.lock().unwrap().push(event);
    }
}

impl Recorder {
    /// The observations since the last call.
    fn take(&self) -> Vec<Observation> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

struct Fixture {
    engine: Engine<MemoryStore, ManualClock>,
    clock: ManualClock,
    seen: Arc<Recorder>,
}

fn fixture() -> Fixture {
    let clock = ManualClock::new(T0);
    let seen = Arc::new(Recorder::default());
    let engine = Engine::with_clock(MemoryStore::new(), clock.clone(), Policy::default())
        .unwrap()
        .with_throttle(ThrottleRule {
            failures: 1,
            ..ThrottleRule::default()
        })
        .unwrap()
        .with_observer(seen.clone());
    Fixture {
        engine,
        clock,
        seen,
    }
}

fn alice() -> UserId {
    UserId::new("alice").unwrap()
}

fn check(credential: Credential, outcome: Result<(), Reason>) -> Observation {
    Observation::Check {
        credential,
        outcome,
    }
}

#[tokio::test]
async fn session_checks_are_reported_live_or_with_their_reason() {
    let f = fixture();
    let issued = f
        .engine
        .create_session(&alice(), 0, ClientInfo::default())
        .await
        .unwrap();
    assert_eq!(f.seen.take(), vec![], "a login is not a check");
    let token = issued.token.reveal();
    f.engine.validate(&token).await.unwrap();
    f.engine.status(&token).await.unwrap();
    f.engine.validate_renewing(&token).await.unwrap();
    let live = check(Credential::SessionToken, Ok(()));
    assert_eq!(f.seen.take(), vec![live, live, live]);

    assert!(f.engine.validate("sgs_forged").await.is_err());
    assert_eq!(
        f.seen.take(),
        vec![check(Credential::SessionToken, Err(Reason::InvalidToken))]
    );
    f.clock.advance(Duration::from_secs(31 * 60));
    assert!(f.engine.validate(&token).await.is_err());
    assert_eq!(
        f.seen.take(),
        vec![check(Credential::SessionToken, Err(Reason::IdleTimeout))]
    );
}

#[tokio::test]
async fn access_and_api_token_checks_name_their_credential() {
    let f = fixture();
    let s = f
        .engine
        .create_session(&alice(), 0, ClientInfo::default())
        .await
        .unwrap()
        .session;
    f.engine
        .validate_access(&s.id(), "alice", s.token_issued_at(), true)
        .await
        .unwrap();
    f.engine
        .validate_access(&s.id(), "mallory", s.token_issued_at(), true)
        .await
        .unwrap_err();
    assert_eq!(
        f.seen.take(),
        vec![
            check(Credential::AccessToken, Ok(())),
            check(Credential::AccessToken, Err(Reason::InvalidToken)),
        ],
        "one report per access-token check, not one per inner step"
    );

    let (token, _) = f
        .engine
        .create_api_token(&alice(), "ci", None)
        .await
        .unwrap();
    f.engine.validate_api_token(&token.reveal()).await.unwrap();
    f.engine.validate_api_token("sga_forged").await.unwrap_err();
    assert_eq!(
        f.seen.take(),
        vec![
            check(Credential::ApiToken, Ok(())),
            check(Credential::ApiToken, Err(Reason::InvalidToken)),
        ]
    );
}

#[tokio::test]
async fn revocations_are_reported_once_with_their_scope_and_reason() {
    let f = fixture();
    let s = f
        .engine
        .create_session(&alice(), 0, ClientInfo::default())
        .await
        .unwrap()
        .session;
    assert!(f.engine.revoke(&s.id(), Reason::LoggedOut).await.unwrap());
    assert!(!f.engine.revoke(&s.id(), Reason::LoggedOut).await.unwrap());
    assert_eq!(
        f.seen.take(),
        vec![Observation::Revoked {
            scope: RevocationScope::Session,
            reason: Reason::LoggedOut,
        }],
        "a second revocation of an ended session is not one"
    );
    f.engine
        .revoke_user(&alice(), Reason::RevokedByAdmin)
        .await
        .unwrap();
    assert_eq!(
        f.seen.take(),
        vec![Observation::Revoked {
            scope: RevocationScope::User,
            reason: Reason::RevokedByAdmin,
        }]
    );
}

#[tokio::test]
async fn displacement_at_the_limit_is_a_revocation() {
    let f = fixture();
    let user = alice();
    for _ in 0..Policy::default().max_sessions {
        f.engine
            .create_session(&user, 0, ClientInfo::default())
            .await
            .unwrap();
    }
    assert_eq!(f.seen.take(), vec![], "below the limit nothing ends");
    f.engine
        .create_session(&user, 0, ClientInfo::default())
        .await
        .unwrap();
    assert_eq!(
        f.seen.take(),
        vec![Observation::Revoked {
            scope: RevocationScope::Session,
            reason: Reason::Displaced,
        }]
    );
}

#[tokio::test]
async fn refresh_outcomes_are_reported() {
    let f = fixture();
    let app = ClientId::new("app").unwrap();
    let s = f
        .engine
        .create_session(&alice(), 0, ClientInfo::default())
        .await
        .unwrap()
        .session;
    let r1 = f.engine.issue_refresh(&s, &app).await.unwrap().reveal();
    let r2 = f.engine.refresh(&r1, &app).await.unwrap().refresh.reveal();
    f.engine.refresh(&r1, &app).await.unwrap();
    let other = ClientId::new("other").unwrap();
    f.engine.refresh(&r2, &other).await.unwrap_err();
    f.engine.refresh("sgr_forged", &app).await.unwrap_err();
    let refresh = |o| Observation::Refresh(o);
    assert_eq!(
        f.seen.take(),
        vec![
            refresh(RefreshOutcome::Rotated),
            refresh(RefreshOutcome::Repeated),
            refresh(RefreshOutcome::ClientMismatch),
            refresh(RefreshOutcome::Rejected(Reason::InvalidToken)),
        ]
    );
    f.clock.advance(Duration::from_secs(60));
    f.engine.refresh(&r1, &app).await.unwrap_err();
    assert_eq!(
        f.seen.take(),
        vec![
            refresh(RefreshOutcome::ReuseDetected),
            Observation::Revoked {
                scope: RevocationScope::Session,
                reason: Reason::RefreshReuseDetected,
            },
        ]
    );
    f.engine.refresh(&r2, &app).await.unwrap_err();
    assert_eq!(
        f.seen.take(),
        vec![refresh(RefreshOutcome::Rejected(
            Reason::RefreshReuseDetected
        ))]
    );
}

#[tokio::test]
async fn password_checks_are_reported_settled_or_throttled() {
    let f = fixture();
    let attempt = PasswordAttempt {
        account: "alice",
        client: Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7))),
        device: None,
    };
    let check = f.engine.begin_password_check(attempt).await.unwrap();
    f.engine.password_verified(check, false).await.unwrap();
    let check = f.engine.begin_password_check(attempt).await.unwrap();
    f.engine.password_failed(check, None, None).await;
    assert_eq!(
        f.seen.take(),
        vec![
            Observation::PasswordChecked { verified: true },
            Observation::PasswordChecked { verified: false },
        ]
    );
    f.engine.begin_password_check(attempt).await.unwrap_err();
    assert_eq!(
        f.seen.take(),
        vec![Observation::Throttled(ThrottledBy::AccountClient)]
    );
    f.clock.advance(Duration::from_secs(2));
    assert!(f.clock.now() > T0);
    let check = f.engine.begin_password_check(attempt).await.unwrap();
    f.engine.password_verified(check, false).await.unwrap();
    assert_eq!(
        f.seen.take(),
        vec![Observation::PasswordChecked { verified: true }],
        "once the wait is over nothing is throttled"
    );
}

#[tokio::test]
async fn an_engine_without_an_observer_decides_the_same() {
    let engine = Engine::new(MemoryStore::new(), Policy::default()).unwrap();
    let issued = engine
        .create_session(&alice(), 0, ClientInfo::default())
        .await
        .unwrap();
    engine.validate(&issued.token.reveal()).await.unwrap();
    assert!(engine.validate("sgs_forged").await.is_err());
}
