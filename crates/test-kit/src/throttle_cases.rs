//! Contract clauses of the password throttle's records
//! ([`Store::throttle_attempt`], [`Store::throttle_settle`]).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use sessionguard_core::{
    Attempt, DeviceSecret, Settle, Store, ThrottleKey, ThrottleLimit, ThrottleRule, Timestamp,
};

use crate::fixtures::at;

/// Three free failures, then waits of 1 s, 2 s, 4 s (the cap); records kept 16 s.
fn limit() -> ThrottleLimit {
    ThrottleRule {
        failures: 3,
        delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(4),
        ..ThrottleRule::default()
    }
    .account_limit()
}

fn key(n: u8) -> ThrottleKey {
    ThrottleKey::account_client("alice", Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, n))))
}

fn plus(t: Timestamp, ms: u64) -> Timestamp {
    t.saturating_add(Duration::from_millis(ms))
}

async fn attempt<S: Store>(store: &S, key: &ThrottleKey, now: Timestamp) -> Attempt {
    store
        .throttle_attempt(key, limit(), now, true)
        .await
        .unwrap()
}

/// The free failures are counted; then each attempt waits `delay × 2^k` after
/// the last counted one, up to `max_delay`; a refused attempt counts nothing.
pub async fn throttle_counts_then_makes_attempts_wait<S: Store>(store: S) {
    let k = key(1);
    let t = at(0);
    for n in 1..=3 {
        assert_eq!(
            attempt(&store, &k, t).await,
            Attempt::Counted { failures: n }
        );
    }
    let first_wait = Attempt::Throttled {
        retry_at: plus(t, 1000),
    };
    assert_eq!(attempt(&store, &k, t).await, first_wait);
    assert_eq!(
        attempt(&store, &k, plus(t, 999)).await,
        first_wait,
        "refused attempts do not count"
    );
    let t = plus(t, 1000);
    assert_eq!(
        attempt(&store, &k, t).await,
        Attempt::Counted { failures: 4 }
    );
    assert_eq!(
        attempt(&store, &k, t).await,
        Attempt::Throttled {
            retry_at: plus(t, 2000)
        }
    );
    let t = plus(t, 2000);
    assert_eq!(
        attempt(&store, &k, t).await,
        Attempt::Counted { failures: 5 }
    );
    let t = plus(t, 4000);
    assert_eq!(
        attempt(&store, &k, t).await,
        Attempt::Counted { failures: 6 }
    );
    assert_eq!(
        attempt(&store, &k, t).await,
        Attempt::Throttled {
            retry_at: plus(t, 4000)
        },
        "the wait stops growing at max_delay"
    );
    assert_eq!(
        attempt(&store, &key(2), t).await,
        Attempt::Counted { failures: 1 },
        "keys count apart"
    );
}

/// Without `create`, an absent record answers `Unknown` and stays absent; a
/// trusted one is counted like any other.
pub async fn throttle_does_not_create_records_unless_asked<S: Store>(store: S) {
    let k = ThrottleKey::known_device("alice", &DeviceSecret::generate());
    let t = at(0);
    for _ in 0..2 {
        assert_eq!(
            store.throttle_attempt(&k, limit(), t, false).await.unwrap(),
            Attempt::Unknown
        );
    }
    store.throttle_settle(&k, Settle::Release, t).await.unwrap();
    assert_eq!(
        store.throttle_attempt(&k, limit(), t, false).await.unwrap(),
        Attempt::Unknown,
        "releasing an absent record creates nothing"
    );
    store
        .throttle_settle(&k, Settle::Trust { until: at(86_400) }, t)
        .await
        .unwrap();
    assert_eq!(
        store.throttle_attempt(&k, limit(), t, false).await.unwrap(),
        Attempt::Counted { failures: 1 }
    );
}

/// `Forget` deletes, `Release` takes one failure back (never below none),
/// `Trust` resets the failures and keeps the record until its time.
pub async fn throttle_settles_forget_release_and_trust<S: Store>(store: S) {
    let k = key(3);
    let t = at(0);
    for _ in 0..3 {
        attempt(&store, &k, t).await;
    }
    store.throttle_settle(&k, Settle::Release, t).await.unwrap();
    assert_eq!(
        attempt(&store, &k, t).await,
        Attempt::Counted { failures: 3 },
        "one taken back, one counted again"
    );
    store.throttle_settle(&k, Settle::Forget, t).await.unwrap();
    assert_eq!(
        store.throttle_attempt(&k, limit(), t, false).await.unwrap(),
        Attempt::Unknown,
        "forgotten"
    );
    attempt(&store, &k, t).await;
    for _ in 0..3 {
        store.throttle_settle(&k, Settle::Release, t).await.unwrap();
    }
    assert_eq!(
        attempt(&store, &k, t).await,
        Attempt::Counted { failures: 1 },
        "never fewer than no failures"
    );

    let d = ThrottleKey::known_device("alice", &DeviceSecret::generate());
    let until = at(1000);
    store
        .throttle_settle(&d, Settle::Trust { until }, t)
        .await
        .unwrap();
    for _ in 0..3 {
        store.throttle_attempt(&d, limit(), t, false).await.unwrap();
    }
    assert!(matches!(
        store.throttle_attempt(&d, limit(), t, false).await.unwrap(),
        Attempt::Throttled { .. }
    ));
    store
        .throttle_settle(&d, Settle::Trust { until }, t)
        .await
        .unwrap();
    assert_eq!(
        store.throttle_attempt(&d, limit(), t, false).await.unwrap(),
        Attempt::Counted { failures: 1 },
        "trust resets the failures"
    );
    assert_eq!(
        store
            .throttle_attempt(&d, limit(), until, false)
            .await
            .unwrap(),
        Attempt::Unknown,
        "a trusted record lives until its time (counting extended it only to the window)"
    );
}

/// A record counts as absent once `window` has passed since the last attempt
/// counted on it, whatever it held.
pub async fn throttle_records_are_forgotten_after_their_window<S: Store>(store: S) {
    let k = key(4);
    let t = at(0);
    for _ in 0..3 {
        store.throttle_attempt(&k, limit(), t, true).await.unwrap();
    }
    let window = u64::try_from(limit().window.as_millis()).unwrap();
    assert_eq!(
        store
            .throttle_attempt(&k, limit(), plus(t, window - 1), false)
            .await
            .unwrap(),
        Attempt::Counted { failures: 4 },
        "kept through the window"
    );
    let later = plus(t, 2 * window);
    assert_eq!(
        store
            .throttle_attempt(&k, limit(), later, false)
            .await
            .unwrap(),
        Attempt::Unknown
    );
    assert_eq!(
        attempt(&store, &k, later).await,
        Attempt::Counted { failures: 1 },
        "counting starts over"
    );
}

/// Of many simultaneous attempts on one key, exactly the free ones are counted.
pub async fn simultaneous_attempts_never_pass_the_limit<S: Store>(store: S) {
    let store = Arc::new(store);
    let k = key(5);
    let t = at(0);
    let tasks: Vec<_> = (0..24)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.throttle_attempt(&k, limit(), t, true).await })
        })
        .collect();
    let mut counted = Vec::new();
    let mut throttled = 0;
    for task in tasks {
        match task.await.unwrap().unwrap() {
            Attempt::Counted { failures } => counted.push(failures),
            Attempt::Throttled { .. } => throttled += 1,
            Attempt::Unknown => panic!("created on demand"),
        }
    }
    counted.sort_unstable();
    assert_eq!(counted, vec![1, 2, 3], "each count handed out once");
    assert_eq!(throttled, 21);
}
