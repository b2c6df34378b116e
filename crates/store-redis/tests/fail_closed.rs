//! Failing closed, on one Redis server and on a Redis Cluster: the store refuses
//! to run while a master may evict keys, readiness fails while one may, and a
//! session or API token whose user's credential-epoch record was lost is refused
//! — also after a later login creates the record again — instead of being judged
//! against a record that forgot the password change that ended it.

use std::time::Duration;

use sessionguard_core::{
    ClientInfo, Engine, Error, ManualClock, Policy, Reason, Rejection, Store, StoreError,
    UserAccess, UserId,
};
use sessionguard_store_redis::{BackendError, RedisStore};
use sessionguard_test_kit::redis::{RedisCluster, RedisServer};

mod common;

use common::{backend_error, config, now, runtime};

/// The eviction refusal behind a store error, as `(node, policy)`.
fn eviction(e: &StoreError) -> Option<(String, String)> {
    match backend_error(e)? {
        BackendError::Eviction { node, policy } => Some((node.clone(), policy.clone())),
        _ => None,
    }
}

fn set_policy(cli: impl Fn(&[&str]) -> String, policy: &str) {
    let out = cli(&["config", "set", "maxmemory-policy", policy]);
    assert_eq!(out.trim(), "OK", "{out}");
}

#[test]
fn a_single_server_that_may_evict_is_refused_at_connect_and_fails_readiness() {
    let server = RedisServer::start();
    let node = format!("127.0.0.1:{}", server.port());
    runtime().block_on(async move {
        let cli = |args: &[&str]| server.cli(args);
        set_policy(cli, "allkeys-lru");
        let err = RedisStore::connect(config(vec![server.url()]))
            .await
            .unwrap_err();
        assert_eq!(
            eviction(&err),
            Some((node.clone(), "allkeys-lru".to_owned())),
            "{err:?}"
        );
        let message = sessionguard_store_redis_error_chain(&err);
        assert!(message.contains("needs noeviction"), "{message}");

        set_policy(cli, "noeviction");
        let store = RedisStore::connect(config(vec![server.url()]))
            .await
            .unwrap();
        store.ready().await.unwrap();

        // Changed while the store runs: readiness fails, and recovers with it.
        set_policy(cli, "volatile-ttl");
        let err = store.ready().await.unwrap_err();
        assert_eq!(eviction(&err), Some((node.clone(), "volatile-ttl".into())));
        set_policy(cli, "noeviction");
        store.ready().await.unwrap();

        // A server that does not answer is not ready either.
        drop(server);
        let err = store.ready().await.unwrap_err();
        assert!(eviction(&err).is_none(), "{err:?}");
    });
}

#[test]
fn on_a_cluster_every_master_must_keep_every_key() {
    let cluster = RedisCluster::start();
    runtime().block_on(async {
        let store = RedisStore::connect(config(cluster.urls())).await.unwrap();
        store.ready().await.unwrap();
        let masters = cluster.masters();
        assert_eq!(masters.len(), 3);
        let one = masters[1];
        set_policy(|args| cluster.cli(one, args), "allkeys-random");
        let err = store.ready().await.unwrap_err();
        assert_eq!(
            eviction(&err),
            Some((format!("127.0.0.1:{one}"), "allkeys-random".to_owned()))
        );
        let err = RedisStore::connect(config(cluster.urls()))
            .await
            .unwrap_err();
        assert_eq!(
            eviction(&err).map(|(node, _)| node),
            Some(format!("127.0.0.1:{one}"))
        );
        set_policy(|args| cluster.cli(one, args), "noeviction");
        store.ready().await.unwrap();
    });
}

/// The whole error chain, as the binary prints it.
fn sessionguard_store_redis_error_chain(e: &StoreError) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[track_caller]
fn refused<T: std::fmt::Debug>(r: Result<T, Error>) {
    match r {
        Err(Error::Rejected(r)) => assert_eq!(r, Rejection::INVALID),
        other => panic!("expected invalid_token, got {other:?}"),
    }
}

/// A password change ends a session; the user's epoch record is then lost (the
/// caller deletes it as an eviction would); neither the ended session nor the
/// ones created since pass, and a login that creates the record again does not
/// bring them back.
async fn lost_epoch_records_are_refused(store: RedisStore, delete_epochs: impl Fn(&UserId)) {
    const MIN: Duration = Duration::from_secs(60);
    // The engine's clock starts ten minutes ago, so that the records are older
    // than the slack a re-created record allows for clock differences.
    let clock = ManualClock::new(now().saturating_sub(10 * MIN));
    let engine = Engine::with_clock(store.clone(), clock.clone(), Policy::default()).unwrap();
    let user = UserId::new("app-alice").unwrap();
    let login = |epoch: u64| {
        let engine = &engine;
        let user = user.clone();
        async move {
            let issued = engine
                .create_session(&user, epoch, ClientInfo::default())
                .await
                .unwrap();
            issued.token.reveal().to_string()
        }
    };

    let ended = login(0).await;
    clock.advance(MIN);
    engine
        .revoke_user(&user, Reason::PasswordChanged)
        .await
        .unwrap();
    clock.advance(MIN);
    let current = login(1).await;
    let (api, _) = engine.create_api_token(&user, "ci", None).await.unwrap();
    let api = api.reveal().to_string();
    let r = match engine.validate(&ended).await {
        Err(Error::Rejected(r)) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(r.reason, Reason::PasswordChanged);
    engine.validate(&current).await.unwrap();
    engine.validate_api_token(&api).await.unwrap();

    // The record is lost: it would read as epoch 0, under which `ended` passes.
    clock.advance(7 * MIN);
    delete_epochs(&user);
    refused(engine.validate(&ended).await);
    refused(engine.validate(&current).await);
    refused(engine.validate_api_token(&api).await);

    // A new login creates the record again (epoch 0, as it reads now); what was
    // created before it stays refused.
    let after = login(0).await;
    engine.validate(&after).await.unwrap();
    refused(engine.validate(&ended).await);
    refused(engine.validate(&current).await);
    refused(engine.validate_api_token(&api).await);

    // An access change that creates the record judges nothing until the next
    // login anchors it.
    let bob = UserId::new("app-bob").unwrap();
    let bobs = engine
        .create_session(&bob, 0, ClientInfo::default())
        .await
        .unwrap()
        .token
        .reveal()
        .to_string();
    clock.advance(2 * MIN);
    delete_epochs(&bob);
    engine
        .update_user_access(&bob, UserAccess::default())
        .await
        .unwrap();
    refused(engine.validate(&bobs).await);
    let epoch = store.user_epoch(&bob).await.unwrap().epoch;
    let next = engine
        .create_session(&bob, epoch, ClientInfo::default())
        .await
        .unwrap();
    engine.validate(&next.token.reveal()).await.unwrap();
    refused(engine.validate(&bobs).await);
}

#[test]
fn lost_epoch_records_are_refused_on_a_single_server() {
    let server = RedisServer::start();
    runtime().block_on(async {
        let config = config(vec![server.url()]);
        let prefix = config.prefix.clone();
        let store = RedisStore::connect(config).await.unwrap();
        lost_epoch_records_are_refused(store, |user| {
            // The whole hash of the user's shard, as `maxmemory-policy` would.
            let key = format!("{prefix}:{{{:04x}}}:epoch", user.shard().0);
            assert_eq!(server.cli(&["del", &key]).trim(), "1");
        })
        .await;
    });
}

#[test]
fn lost_epoch_records_are_refused_on_a_cluster() {
    let cluster = RedisCluster::start();
    runtime().block_on(async {
        let config = config(cluster.urls());
        let prefix = config.prefix.clone();
        let store = RedisStore::connect(config).await.unwrap();
        lost_epoch_records_are_refused(store, |user| {
            // Only the user's own entry this time.
            let key = format!("{prefix}:{{{:04x}}}:epoch", user.shard().0);
            let port = cluster.master_of_key(&key);
            let out = cluster.cli(port, &["hdel", &key, user.as_str()]);
            assert_eq!(out.trim(), "1", "{out}");
        })
        .await;
    });
}
