//! The password throttle's rules on a manual clock, each with a passing and a
//! failing case: growing waits, no lockout of a known device, the per-client
//! count across accounts, attempts given back, and coalesced audit events.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use sessionguard_core::engine::PasswordAttempt;
use sessionguard_core::{
    Clock as _, DeviceSecret, Engine, Error, EventKind, EventQuery, ManualClock, MemoryStore,
    Policy, ThrottleRule, Timestamp, UserId,
};

const T0: Timestamp = Timestamp::from_millis(1_800_000_000_000);
const SEC: Duration = Duration::from_secs(1);

struct Fixture {
    engine: Engine<MemoryStore, ManualClock>,
    clock: ManualClock,
}

fn fixture(rule: ThrottleRule) -> Fixture {
    let clock = ManualClock::new(T0);
    let engine = Engine::with_clock(MemoryStore::new(), clock.clone(), Policy::default())
        .unwrap()
        .with_throttle(rule)
        .unwrap();
    Fixture { engine, clock }
}

/// 3 free failures per account and client, 10 per client; waits 1 s, 2 s, … 60 s.
fn rule() -> ThrottleRule {
    ThrottleRule {
        failures: 3,
        client_failures: 10,
        delay: SEC,
        max_delay: Duration::from_secs(60),
        ..ThrottleRule::default()
    }
}

fn ip(n: u8) -> Option<IpAddr> {
    Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, n)))
}

fn from<'a>(account: &'a str, client: Option<IpAddr>) -> PasswordAttempt<'a> {
    PasswordAttempt {
        account,
        client,
        device: None,
    }
}

impl Fixture {
    /// One wrong password; panics if the throttle refused to check it.
    async fn fail(&self, attempt: PasswordAttempt<'_>) {
        let check = self.engine.begin_password_check(attempt).await.unwrap();
        self.engine.password_failed(check, None, None).await;
    }

    /// When the throttle refuses `attempt` until, or `None` if it lets it through
    /// (the check is then given back).
    async fn refused_until(&self, attempt: PasswordAttempt<'_>) -> Option<Timestamp> {
        match self.engine.begin_password_check(attempt).await {
            Ok(check) => {
                self.engine.password_unchecked(check).await.unwrap();
                None
            }
            Err(Error::Throttled { retry_at }) => Some(retry_at),
            Err(e) => panic!("{e}"),
        }
    }

    /// The right password; returns the device secret to keep.
    async fn succeed(&self, attempt: PasswordAttempt<'_>) -> DeviceSecret {
        let check = self.engine.begin_password_check(attempt).await.unwrap();
        self.engine
            .password_verified(check, true)
            .await
            .unwrap()
            .expect("remembered")
    }
}

#[tokio::test]
async fn after_the_free_failures_each_attempt_waits_longer() {
    let f = fixture(rule());
    let alice = from("alice", ip(1));
    for _ in 0..3 {
        assert_eq!(f.refused_until(alice).await, None);
        f.fail(alice).await;
    }
    assert_eq!(f.refused_until(alice).await, Some(T0.saturating_add(SEC)));
    f.clock.advance(SEC);
    f.fail(alice).await; // the wait is over
    let now = f.clock.now();
    assert_eq!(
        f.refused_until(alice).await,
        Some(now.saturating_add(2 * SEC)),
        "and the next one is twice as long"
    );
    for _ in 0..10 {
        f.clock.advance(Duration::from_secs(60));
        f.fail(alice).await;
    }
    let now = f.clock.now();
    assert_eq!(
        f.refused_until(alice).await,
        Some(now.saturating_add(Duration::from_secs(60))),
        "never longer than max_delay: no permanent lockout"
    );
}

#[tokio::test]
async fn the_right_password_after_the_wait_clears_the_count() {
    let f = fixture(rule());
    let alice = from("alice", ip(1));
    for _ in 0..3 {
        f.fail(alice).await;
    }
    assert!(
        matches!(
            f.engine.begin_password_check(alice).await,
            Err(Error::Throttled { .. })
        ),
        "even the right password waits: it is not checked"
    );
    f.clock.advance(SEC);
    f.succeed(alice).await;
    for _ in 0..3 {
        assert_eq!(f.refused_until(alice).await, None);
        f.fail(alice).await;
    }
    assert!(
        f.refused_until(alice).await.is_some(),
        "counting starts over"
    );
}

#[tokio::test]
async fn a_known_device_is_not_locked_out_by_failures_from_its_own_address() {
    let f = fixture(rule());
    let device = f.succeed(from("alice", ip(1))).await;
    // An attacker at the same address (a shared NAT) guesses alice's password.
    let attacker = from("alice", ip(1));
    for _ in 0..3 {
        f.fail(attacker).await;
    }
    assert!(f.refused_until(attacker).await.is_some());

    // Alice's browser, holding its device secret, still gets its checks.
    let known = PasswordAttempt {
        device: Some(&device),
        ..from("alice", ip(1))
    };
    assert_eq!(f.refused_until(known).await, None);
    let check = f.engine.begin_password_check(known).await.unwrap();
    assert!(check.from_known_device());
    f.engine.password_verified(check, true).await.unwrap();

    // A secret the account never saw is just another client at that address.
    let forged = DeviceSecret::generate();
    let guess = PasswordAttempt {
        device: Some(&forged),
        ..from("alice", ip(1))
    };
    assert!(f.refused_until(guess).await.is_some());
    // And alice's secret is no help against another account.
    let other = PasswordAttempt {
        device: Some(&device),
        ..from("bob", ip(1))
    };
    for _ in 0..3 {
        f.fail(other).await;
    }
    assert!(f.refused_until(other).await.is_some());
}

#[tokio::test]
async fn a_known_device_that_fails_is_throttled_on_its_own_key() {
    let f = fixture(rule());
    let device = f.succeed(from("alice", ip(1))).await;
    let known = PasswordAttempt {
        device: Some(&device),
        ..from("alice", ip(9))
    };
    for _ in 0..3 {
        f.fail(known).await;
    }
    assert!(f.refused_until(known).await.is_some());
    assert_eq!(
        f.refused_until(from("alice", ip(9))).await,
        None,
        "its failures do not count against its address"
    );
}

#[tokio::test]
async fn a_client_spraying_many_accounts_waits_and_other_clients_do_not() {
    let f = fixture(rule());
    let names: Vec<String> = (0..10).map(|i| format!("user{i}")).collect();
    for name in &names {
        f.fail(from(name, ip(7))).await;
    }
    assert!(
        f.refused_until(from("fresh", ip(7))).await.is_some(),
        "the eleventh account from that client waits"
    );
    assert_eq!(f.refused_until(from("fresh", ip(8))).await, None);

    // The per-client refusal took back the account-and-client count it made.
    let off = fixture(ThrottleRule {
        client_failures: 0,
        ..rule()
    });
    for name in &names {
        off.fail(from(name, ip(7))).await;
    }
    assert_eq!(
        off.refused_until(from("fresh", ip(7))).await,
        None,
        "client_failures = 0 turns the per-client count off"
    );
}

#[tokio::test]
async fn a_refused_client_attempt_gives_its_account_count_back() {
    let f = fixture(ThrottleRule {
        client_failures: 2,
        ..rule()
    });
    f.fail(from("a", ip(3))).await;
    f.fail(from("b", ip(3))).await;
    for _ in 0..5 {
        assert!(f.refused_until(from("alice", ip(3))).await.is_some());
    }
    // Once the client's wait is over, alice's count is where it was: empty.
    f.clock.advance(SEC);
    f.fail(from("alice", ip(3))).await;
    f.clock.advance(2 * SEC);
    assert_eq!(
        f.refused_until(from("alice", ip(3))).await,
        None,
        "the five refused attempts were not counted for alice"
    );
}

#[tokio::test]
async fn unchecked_attempts_are_given_back() {
    let f = fixture(rule());
    let alice = from("alice", ip(1));
    for _ in 0..10 {
        let check = f.engine.begin_password_check(alice).await.unwrap();
        f.engine.password_unchecked(check).await.unwrap();
    }
    assert_eq!(f.refused_until(alice).await, None);
    // Dropped unsettled, an attempt stays counted.
    for _ in 0..3 {
        drop(f.engine.begin_password_check(alice).await.unwrap());
    }
    assert!(f.refused_until(alice).await.is_some());
}

#[tokio::test]
async fn failures_are_audited_once_per_streak_and_once_when_the_waits_start() {
    let f = fixture(ThrottleRule {
        client_failures: 0,
        ..rule()
    });
    let alice = UserId::new("u_alice").unwrap();
    let attempt = from("alice", ip(1));
    for _ in 0..30 {
        f.clock.advance(Duration::from_secs(60));
        let check = f.engine.begin_password_check(attempt).await.unwrap();
        f.engine.password_failed(check, Some(&alice), None).await;
    }
    let query = EventQuery {
        user: Some(alice.clone()),
        since: None,
        cursor: None,
        newest_first: false,
        limit: 100,
    };
    let events = f.engine.events(&query).await.unwrap();
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![EventKind::LoginFailed, EventKind::LoginThrottled],
        "30 failures, two events"
    );
    // Another client's streak is recorded on its own.
    let check = f
        .engine
        .begin_password_check(from("alice", ip(2)))
        .await
        .unwrap();
    f.engine.password_failed(check, Some(&alice), None).await;
    assert_eq!(f.engine.events(&query).await.unwrap().len(), 3);
}

#[test]
fn rules_that_would_not_throttle_are_refused() {
    for bad in [
        ThrottleRule {
            failures: 0,
            ..rule()
        },
        ThrottleRule {
            delay: Duration::ZERO,
            ..rule()
        },
        ThrottleRule {
            delay: Duration::from_secs(120),
            ..rule()
        },
        ThrottleRule {
            max_delay: Duration::from_secs(2 * 86_400),
            ..rule()
        },
    ] {
        assert!(bad.validate().is_err(), "{bad:?}");
    }
    assert!(rule().validate().is_ok());
}
