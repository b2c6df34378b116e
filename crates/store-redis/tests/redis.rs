//! What the Redis store promises beyond the shared conformance suite: round trips,
//! native expiry, `WAIT` before acknowledging, recovery from `NOSCRIPT` and from a
//! master failover, the shard rule, the shared signing keys, and its memory use.

use std::collections::BTreeMap;
use std::error::Error as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use sessionguard_core::{
    AuditEvent, ClientInfo, EventKind, EventQuery, OnLimit, Reason, ReplacedToken, Rotation,
    SealedSecret, SessionLimit, SessionRecord, Store, Timestamp, Token, TokenId, TokenKind,
    TokenRotation, UserAccess, UserId,
};
use sessionguard_store_redis::{BackendError, RedisConfig, RedisStore};
use sessionguard_test_kit::fixtures::{self, bump, hash, rev, user};
use sessionguard_test_kit::redis::{RedisCluster, RedisServer};

mod common;

use common::{backend_error, config, now, runtime};

async fn connect(config: RedisConfig) -> RedisStore {
    RedisStore::connect(config).await.unwrap()
}

async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap()
}

/// A session of `user` created at `at`, with the fixture's 30-minute idle and
/// 12-hour absolute deadlines.
fn session_at(user: &UserId, at: Timestamp) -> SessionRecord {
    let (_t, mut rec) = fixtures::session(user, 0, 0);
    let s = &mut rec.state;
    s.created_at = at;
    s.last_seen_at = at;
    s.token_issued_at = at;
    s.idle_deadline = at.saturating_add(Duration::from_secs(1800));
    s.absolute_deadline = at.saturating_add(Duration::from_secs(12 * 3600));
    rec
}

fn key(prefix: &str, kind: &str, id: &TokenId) -> String {
    format!("{prefix}:{{{:04x}}}:{kind}:{id}", id.shard().0)
}

fn user_set(prefix: &str, kind: &str, user: &UserId) -> String {
    format!("{prefix}:{{{:04x}}}:{kind}:{user}", user.shard().0)
}

/// A TCP proxy in front of a Redis server that counts round trips: on each
/// connection, every request that follows a reply (or opens the connection)
/// starts a new round trip, however the bytes are split into segments.
struct RoundTrips {
    port: u16,
    count: Arc<AtomicUsize>,
}

impl RoundTrips {
    fn start(upstream: u16) -> RoundTrips {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let count = Arc::new(AtomicUsize::new(0));
        let total = Arc::clone(&count);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let server = TcpStream::connect(("127.0.0.1", upstream)).unwrap();
                client.set_nodelay(true).unwrap();
                server.set_nodelay(true).unwrap();
                // 0: nothing yet, 1: last bytes were a request, 2: a reply.
                let last = Arc::new(AtomicU8::new(0));
                for (from, to, dir) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap(), 1),
                    (server, client, 2),
                ] {
                    let (last, total) = (Arc::clone(&last), Arc::clone(&total));
                    std::thread::spawn(move || pump(from, to, dir, &last, &total));
                }
            }
        });
        RoundTrips { port, count }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn now(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, dir: u8, last: &AtomicU8, total: &AtomicUsize) {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if last.swap(dir, Ordering::SeqCst) != dir && dir == 1 {
            total.fetch_add(1, Ordering::SeqCst);
        }
        if to.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

/// Every `Store` method's round trips, with a replica (so durable writes carry
/// their `WAIT`): validation is one, and so is every durable single-step write.
#[test]
fn round_trips_per_operation() {
    let primary = RedisServer::start();
    let _replica = primary.start_replica();
    let proxy = RoundTrips::start(primary.port());
    runtime().block_on(async {
        let store = connect(config(vec![proxy.url()])).await;
        assert_eq!(store.wait_replicas(), 1, "the replica is detected");
        let mut table: Vec<(&str, usize)> = Vec::new();
        macro_rules! measure {
            ($name:expr, $op:expr) => {{
                let before = proxy.now();
                let out = $op;
                table.push(($name, proxy.now() - before));
                out
            }};
        }
        let u = user("u_trips");
        let t0 = now();
        let rec = session_at(&u, t0);
        let id = rec.state.id;
        measure!(
            "insert_session (no limit)",
            store
                .insert_session(rec.clone(), SessionLimit::NONE)
                .await
                .unwrap()
        );
        let limited = session_at(&u, t0);
        let limit = SessionLimit {
            max: 5,
            on_limit: OnLimit::EvictOldest,
        };
        measure!(
            "insert_session (with a limit)",
            store.insert_session(limited, limit).await.unwrap()
        );
        let (state, _) = measure!(
            "load_session",
            store.load_session(&id).await.unwrap().unwrap()
        );
        measure!(
            "touch_session",
            store
                .touch_session(&id, t0, t0.saturating_add(Duration::from_secs(1900)))
                .await
                .unwrap()
        );
        let next = Token::regenerate(TokenKind::Session, id);
        let rotation = TokenRotation {
            verifier_hash: next.verifier_hash(),
            issued_at: t0,
            previous: ReplacedToken {
                verifier_hash: state.verifier_hash,
                valid_until: t0,
                reason: Reason::Renewed,
            },
            elevated_until: None,
            profile: None,
            privileges: 0,
            idle_deadline: state.idle_deadline,
            absolute_deadline: state.absolute_deadline,
            csrf_basis: state.verifier_hash,
        };
        assert!(measure!(
            "rotate_session_token",
            store
                .rotate_session_token(&id, state.verifier_hash, rotation)
                .await
                .unwrap()
        ));
        measure!(
            "list_user_sessions",
            store.list_user_sessions(&u).await.unwrap()
        );
        measure!(
            "revoke_session",
            store
                .revoke_session(&id, rev(Reason::LoggedOut, 1))
                .await
                .unwrap()
        );
        measure!(
            "revoke_user_sessions",
            store
                .revoke_user_sessions(&u, bump(Reason::SignedOutEverywhere, 2), None)
                .await
                .unwrap()
        );
        measure!("user_epoch", store.user_epoch(&u).await.unwrap());
        measure!(
            "create_user",
            store.create_user(&u, "trips", hash("0")).await.unwrap()
        );
        measure!(
            "find_user_by_username",
            store.find_user_by_username("trips").await.unwrap()
        );
        measure!("get_user", store.get_user(&u).await.unwrap());
        measure!(
            "set_password",
            store
                .set_password(&u, hash("1"), bump(Reason::PasswordChanged, 3))
                .await
                .unwrap()
        );
        let s2 = session_at(&u, t0);
        let mut s2 = s2;
        s2.state.epoch = 2;
        store
            .insert_session(s2.clone(), SessionLimit::NONE)
            .await
            .unwrap();
        let (_t, r0) = fixtures::refresh(&s2, 0);
        measure!(
            "insert_refresh",
            store.insert_refresh(r0.clone()).await.unwrap()
        );
        measure!("load_refresh", store.load_refresh(&r0.id).await.unwrap());
        let (_t, r1) = fixtures::refresh(&s2, 1);
        let rotation = Rotation {
            at: t0,
            successor: r1.id,
            sealed_successor: SealedSecret([7; 32]),
        };
        measure!(
            "rotate_refresh",
            store.rotate_refresh(&r0.id, rotation, r1).await.unwrap()
        );
        let (_t, mut api) = fixtures::api_token(&u, 2, 0);
        api.expires_at = t0.saturating_add(Duration::from_secs(86_400));
        measure!(
            "insert_api_token",
            store.insert_api_token(api.clone()).await.unwrap()
        );
        measure!(
            "load_api_token",
            store.load_api_token(&api.id).await.unwrap()
        );
        measure!(
            "touch_api_token",
            store.touch_api_token(&api.id, t0).await.unwrap()
        );
        measure!(
            "revoke_api_token",
            store
                .revoke_api_token(&api.id, rev(Reason::RevokedByUser, 4))
                .await
                .unwrap()
        );
        measure!(
            "list_user_api_tokens",
            store.list_user_api_tokens(&u).await.unwrap()
        );
        measure!("user_access", store.user_access(&u).await.unwrap());
        measure!(
            "set_user_access",
            store
                .set_user_access(&u, UserAccess::default())
                .await
                .unwrap()
        );
        let event = AuditEvent {
            id: 0,
            at: t0,
            kind: EventKind::LoggedOut,
            user: Some(u.clone()),
            session: Some(id),
            client: ClientInfo::default(),
            reason: Some(Reason::LoggedOut),
        };
        measure!("append_event", store.append_event(event).await.unwrap());
        let query = EventQuery {
            user: Some(u.clone()),
            since: None,
            cursor: None,
            newest_first: true,
            limit: 50,
        };
        measure!("list_events", store.list_events(&query).await.unwrap());
        measure!("purge_events", store.purge_events(t0).await.unwrap());
        measure!(
            "purge (this small keyspace)",
            store.purge(t0).await.unwrap()
        );

        let width = table.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
        eprintln!("round trips per operation (single server with one replica, WAIT 1):");
        for (name, trips) in &table {
            eprintln!("  {name:width$}  {trips}");
        }
        let trips: BTreeMap<&str, usize> = table.into_iter().collect();
        for (op, expected) in [
            ("load_session", 1),
            ("load_api_token", 1),
            ("load_refresh", 1),
            ("user_epoch", 1),
            ("touch_session", 1),
            ("revoke_session", 1),
            ("rotate_session_token", 1),
            ("rotate_refresh", 1),
            ("insert_session (no limit)", 1),
            ("insert_session (with a limit)", 2),
            ("revoke_user_sessions", 2),
            ("set_password", 2),
            ("revoke_api_token", 1),
            ("set_user_access", 1),
            ("append_event", 1),
        ] {
            assert_eq!(trips[op], expected, "{op}");
        }
    });
}

/// Records expire natively: a session at its idle deadline plus retention (moved
/// by touches, frozen by revocation), its user's set at the absolute deadline plus
/// retention, a refresh token with its session, an API token at its expiry plus
/// retention; never sooner than retention from now.
#[test]
fn records_carry_native_expiry() {
    let server = RedisServer::start();
    runtime().block_on(async {
        let mut cfg = config(vec![server.url()]);
        cfg.retention = Duration::from_secs(600);
        let prefix = cfg.prefix.clone();
        let retention = ms(cfg.retention);
        let store = connect(cfg).await;
        let conn = raw(&server.url()).await;
        let u = user("u_ttl");
        let t0 = now();
        let rec = session_at(&u, t0);
        let (id, idle, abs) = (
            rec.state.id,
            rec.state.idle_deadline,
            rec.state.absolute_deadline,
        );
        store
            .insert_session(rec.clone(), SessionLimit::NONE)
            .await
            .unwrap();
        let expiry = |key: String| {
            let mut conn = conn.clone();
            async move { conn.pexpire_time::<_, i64>(key).await.unwrap() }
        };
        assert_eq!(
            expiry(key(&prefix, "s", &id)).await,
            idle.as_millis() + retention
        );
        assert_eq!(
            expiry(user_set(&prefix, "us", &u)).await,
            abs.as_millis() + retention
        );

        let later = idle.saturating_add(Duration::from_secs(300));
        store.touch_session(&id, t0, later).await.unwrap();
        assert_eq!(
            expiry(key(&prefix, "s", &id)).await,
            later.as_millis() + retention,
            "a touch moves the expiry"
        );
        store
            .revoke_session(&id, rev(Reason::LoggedOut, 0))
            .await
            .unwrap();
        store
            .touch_session(&id, t0, later.saturating_add(Duration::from_secs(60)))
            .await
            .unwrap();
        assert_eq!(
            expiry(key(&prefix, "s", &id)).await,
            later.as_millis() + retention,
            "revocation freezes the expiry"
        );

        let (_t, refresh) = fixtures::refresh(&rec, 0);
        store.insert_refresh(refresh.clone()).await.unwrap();
        assert_eq!(
            expiry(key(&prefix, "r", &refresh.id)).await,
            abs.as_millis() + retention,
            "a refresh token lives as long as its session could"
        );

        let (_t, mut api) = fixtures::api_token(&u, 0, 0);
        api.expires_at = t0.saturating_add(Duration::from_secs(86_400));
        store.insert_api_token(api.clone()).await.unwrap();
        assert_eq!(
            expiry(key(&prefix, "a", &api.id)).await,
            api.expires_at.as_millis() + retention
        );
        assert_eq!(
            expiry(user_set(&prefix, "ua", &u)).await,
            api.expires_at.as_millis() + retention
        );

        // A record that ended long ago (a test clock in the past) is still kept
        // for the retention, not dropped at once. (Another user's: alice's epoch
        // record judges only what was created from her first session on.)
        let old = session_at(&user("u_ttl_old"), Timestamp::from_millis(1_000_000));
        let before = now().as_millis();
        store
            .insert_session(old.clone(), SessionLimit::NONE)
            .await
            .unwrap();
        let at = expiry(key(&prefix, "s", &old.state.id)).await;
        assert!(at >= before + retention, "{at} < {before} + {retention}");
        assert!(store.load_session(&old.state.id).await.unwrap().is_some());

        // The epoch record never expires.
        store
            .revoke_user_sessions(&u, bump(Reason::SignedOutEverywhere, 1), None)
            .await
            .unwrap();
        let epochs = format!("{prefix}:{{{:04x}}}:epoch", u.shard().0);
        assert_eq!(expiry(epochs).await, -1);
    });
}

/// With `wait_replicas` above the replicas there are, a durable write fails with
/// `NotAcknowledged` instead of answering success: no false acknowledgement. The
/// default detects the cluster's one replica per master and succeeds.
#[test]
fn durable_writes_wait_for_the_replicas_they_need_on_a_cluster() {
    let cluster = RedisCluster::start();
    runtime().block_on(async {
        let base = config(cluster.urls());
        let detected = connect(base.clone()).await;
        assert!(detected.is_cluster());
        assert_eq!(detected.wait_replicas(), 1, "one replica per master");
        let single_seed = connect(config(vec![cluster.urls()[0].clone()])).await;
        assert!(
            single_seed.is_cluster(),
            "one seed URL of a cluster is enough"
        );

        let u = user("u_wait");
        let rec = session_at(&u, now());
        detected
            .insert_session(rec.clone(), SessionLimit::NONE)
            .await
            .unwrap();
        assert!(
            detected
                .revoke_session(&rec.state.id, rev(Reason::LoggedOut, 1))
                .await
                .unwrap()
        );

        let mut strict = base;
        strict.wait_replicas = Some(2);
        strict.wait_timeout = Duration::from_millis(100);
        let strict = connect(strict).await;
        let other = session_at(&u, now());
        let started = Instant::now();
        let err = strict
            .insert_session(other.clone(), SessionLimit::NONE)
            .await
            .unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(100), "it waited");
        match backend_error(&err) {
            Some(BackendError::NotAcknowledged { wanted, acked, .. }) => {
                assert_eq!((*wanted, *acked), (2, 1));
            }
            other => panic!("expected NotAcknowledged, got {err:?} / {other:?}"),
        }
        let err = strict
            .revoke_user_sessions(&u, bump(Reason::PasswordChanged, 2), None)
            .await
            .unwrap_err();
        assert!(
            matches!(
                backend_error(&err),
                Some(BackendError::NotAcknowledged { .. })
            ),
            "{err:?}"
        );
        // Reads need no replica.
        assert!(strict.load_session(&rec.state.id).await.unwrap().is_some());
    });
}

/// Scripts are loaded once; after `SCRIPT FLUSH` (or on a freshly promoted
/// replica) calls fall back to `EVAL`, on the read path and on the durable
/// (script + `WAIT`) path alike.
#[test]
fn scripts_come_back_after_script_flush() {
    let primary = RedisServer::start();
    let _replica = primary.start_replica();
    runtime().block_on(async {
        let store = connect(config(vec![primary.url()])).await;
        assert_eq!(store.wait_replicas(), 1);
        let u = user("u_flush");
        let rec = session_at(&u, now());
        let id = rec.state.id;
        store.insert_session(rec, SessionLimit::NONE).await.unwrap();
        let flush = || assert_eq!(primary.cli(&["script", "flush"]).trim(), "OK");

        flush();
        assert!(store.load_session(&id).await.unwrap().is_some());
        flush();
        assert!(
            store
                .revoke_session(&id, rev(Reason::LoggedOut, 1))
                .await
                .unwrap()
        );
        flush();
        let limit = SessionLimit {
            max: 1,
            on_limit: OnLimit::EvictOldest,
        };
        let newer = session_at(&u, now());
        store.insert_session(newer, limit).await.unwrap();
        let (state, _) = store.load_session(&id).await.unwrap().unwrap();
        assert_eq!(state.revoked, Some(rev(Reason::LoggedOut, 1)));
    });
}

/// Records of one user stay in one slot: an id outside its user's shard is
/// refused, saying why (and an existing id is still a conflict first).
#[test]
fn records_outside_their_users_shard_are_refused() {
    let server = RedisServer::start();
    runtime().block_on(async {
        let store = connect(config(vec![server.url()])).await;
        let (alice, bob) = (user("alice"), user("bob"));
        assert_ne!(alice.shard(), bob.shard());
        let mut rec = session_at(&alice, now());
        rec.state.id = TokenId::random_in(bob.shard());
        let err = store
            .insert_session(rec.clone(), SessionLimit::NONE)
            .await
            .unwrap_err();
        assert!(
            matches!(
                backend_error(&err),
                Some(BackendError::ShardMismatch { .. })
            ),
            "{err:?}"
        );
        let message = err.source().unwrap().to_string();
        assert!(message.contains("shard"), "{message}");

        let (_t, mut api) = fixtures::api_token(&alice, 0, 0);
        api.id = TokenId::random_in(bob.shard());
        let err = store.insert_api_token(api).await.unwrap_err();
        assert!(
            matches!(
                backend_error(&err),
                Some(BackendError::ShardMismatch { .. })
            ),
            "{err:?}"
        );
        assert!(store.list_user_sessions(&alice).await.unwrap().is_empty());
    });
}

/// The servers' signing keys are one document, replaced by compare-and-set.
#[test]
fn signing_keys_are_swapped_by_compare_and_set() {
    let server = RedisServer::start();
    runtime().block_on(async {
        let store = connect(config(vec![server.url()])).await;
        assert_eq!(store.load_signing_keys().await.unwrap(), None);
        assert!(store.swap_signing_keys(None, r#"{"v":1}"#).await.unwrap());
        assert!(!store.swap_signing_keys(None, r#"{"v":9}"#).await.unwrap());
        assert!(
            !store
                .swap_signing_keys(Some(r#"{"v":0}"#), r#"{"v":9}"#)
                .await
                .unwrap()
        );
        assert!(
            store
                .swap_signing_keys(Some(r#"{"v":1}"#), r#"{"v":2}"#)
                .await
                .unwrap()
        );
        assert_eq!(
            store.load_signing_keys().await.unwrap().as_deref(),
            Some(r#"{"v":2}"#)
        );
    });
}

/// A revocation acknowledged before a master dies still holds after its replica
/// takes over, and the store recovers without being restarted (reads at once;
/// writes to the other masters too).
#[test]
fn acknowledged_revocations_survive_a_master_failover() {
    let mut cluster = RedisCluster::start();
    let rt = runtime();
    let cfg = config(cluster.urls());
    let prefix = cfg.prefix.clone();
    let (store, sessions) = rt.block_on(async {
        let store = connect(cfg).await;
        let mut sessions = Vec::new();
        for i in 0..30 {
            let u = user(&format!("u_failover_{i}"));
            let rec = session_at(&u, now());
            store
                .insert_session(rec.clone(), SessionLimit::NONE)
                .await
                .unwrap();
            assert!(
                store
                    .revoke_session(&rec.state.id, rev(Reason::LoggedOut, 1))
                    .await
                    .unwrap()
            );
            sessions.push(rec);
        }
        (store, sessions)
    });
    let victim = cluster.master_of_key(&key(&prefix, "s", &sessions[0].state.id));
    let on_victim = sessions
        .iter()
        .filter(|r| cluster.master_of_key(&key(&prefix, "s", &r.state.id)) == victim)
        .count();
    assert!(on_victim > 0);
    let started = Instant::now();
    let promoted = cluster.kill_master(victim);
    eprintln!(
        "failover: master {victim} killed, replica {promoted} promoted in {:.1?} \
         ({on_victim} of {} revoked sessions were on it)",
        started.elapsed(),
        sessions.len()
    );
    rt.block_on(async {
        for rec in &sessions {
            let deadline = Instant::now() + Duration::from_secs(15);
            let state = loop {
                match store.load_session(&rec.state.id).await {
                    Ok(found) => break found.expect("an acknowledged session survives"),
                    Err(e) => {
                        assert!(
                            Instant::now() < deadline,
                            "the store did not recover: {e:?}"
                        );
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            .0;
            assert_eq!(state.revoked, Some(rev(Reason::LoggedOut, 1)));
        }
        // Masters that still have their replica acknowledge writes as before; the
        // promoted one has no replica left, so its writes fail rather than being
        // acknowledged without one.
        let (mut written, mut refused) = (0, 0);
        for i in 0..60 {
            let u = user(&format!("u_after_{i}"));
            let rec = session_at(&u, now());
            let on_promoted = cluster.master_of_key(&key(&prefix, "s", &rec.state.id)) == promoted;
            if on_promoted && refused > 0 || !on_promoted && written > 0 {
                continue;
            }
            let result = store.insert_session(rec, SessionLimit::NONE).await;
            if on_promoted {
                let err = result.unwrap_err();
                assert!(
                    matches!(
                        backend_error(&err),
                        Some(BackendError::NotAcknowledged { acked: 0, .. })
                    ),
                    "{err:?}"
                );
                refused += 1;
            } else {
                result.unwrap();
                written += 1;
            }
        }
        assert!(
            written > 0 && refused > 0,
            "{written} written, {refused} refused"
        );
    });
}

/// Reports what a session costs in Redis: `MEMORY USAGE` of one session key, and
/// of every key of the store divided by the sessions (the user sets, epoch and
/// version entries included), for sessions like real ones.
#[test]
fn memory_per_session() {
    let server = RedisServer::start();
    runtime().block_on(async {
        let cfg = config(vec![server.url()]);
        let prefix = cfg.prefix.clone();
        let store = connect(cfg).await;
        let conn = raw(&server.url()).await;
        const USERS: usize = 200;
        const PER_USER: usize = 5;
        let mut first = None;
        for _ in 0..USERS {
            let u = user(&format!("u_{}", TokenId::random()));
            for _ in 0..PER_USER {
                let mut rec = session_at(&u, now());
                rec.client = ClientInfo::new(
                    Some(
                        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                         Chrome/131.0.0.0 Safari/537.36",
                    ),
                    Some("203.0.113.42".parse().unwrap()),
                );
                first.get_or_insert(rec.state.id);
                store.insert_session(rec, SessionLimit::NONE).await.unwrap();
            }
            store
                .revoke_user_sessions(&u, bump(Reason::SignedOutEverywhere, 1), None)
                .await
                .unwrap();
        }
        let usage = |key: String| {
            let mut conn = conn.clone();
            async move {
                redis::cmd("MEMORY")
                    .arg("USAGE")
                    .arg(key)
                    .arg("SAMPLES")
                    .arg(0)
                    .query_async::<Option<i64>>(&mut conn)
                    .await
                    .unwrap()
                    .unwrap_or(0)
            }
        };
        let one = usage(key(&prefix, "s", &first.unwrap())).await;
        let mut total = 0;
        let mut by_kind: BTreeMap<String, (i64, usize)> = BTreeMap::new();
        let mut keys: Vec<String> = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{prefix}:*"))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn.clone())
                .await
                .unwrap();
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        for k in keys {
            let bytes = usage(k.clone()).await;
            total += bytes;
            let kind = k.split(':').nth(2).unwrap_or("?").to_owned();
            let e = by_kind.entry(kind).or_default();
            e.0 += bytes;
            e.1 += 1;
        }
        let sessions = i64::try_from(USERS * PER_USER).unwrap();
        eprintln!("MEMORY USAGE, {USERS} users x {PER_USER} sessions:");
        eprintln!("  one session key: {one} bytes");
        for (kind, (bytes, count)) in &by_kind {
            eprintln!(
                "  {kind:6} {count:5} keys {bytes:8} bytes = {:5} bytes per session",
                bytes / sessions
            );
        }
        eprintln!("  all keys: {} bytes per session", total / sessions);
        assert!(one < 1024, "a session key takes {one} bytes");
        assert!(
            total / sessions < 2048,
            "{} bytes per session",
            total / sessions
        );
    });
}
