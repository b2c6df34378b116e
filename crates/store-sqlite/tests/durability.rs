//! What the SQLite store promises beyond the shared conformance suite: what is on
//! disk and when, the exclusive lock, corrupt rows, schema upgrades, file
//! permissions and the absence of secrets in the file.

use std::error::Error as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rusqlite::Connection;
use sessionguard_core::{
    ApiTokenRecord, ClientId, ClientInfo, Engine, ManualClock, Policy, Reason, RefreshState,
    Revocation, Rotation, SealedSecret, SessionLimit, SessionRecord, SessionState, Store,
    StoreError, UserEpoch, UserId,
};
use sessionguard_store_sqlite::{DatabaseInUse, SqliteStore};
use sessionguard_test_kit::fixtures::{self, at, bump, bump_all, hash, rev, user};
use tempfile::TempDir;

/// A session of `user` at `epoch`, created at `at(0)` (idle deadline `at(1800)`).
fn session(user: &UserId, epoch: u64) -> SessionRecord {
    fixtures::session(user, epoch, 0).1
}

/// A refresh token of `session`, created at `at(created)`.
fn refresh(session: &SessionRecord, created: u64) -> RefreshState {
    fixtures::refresh(session, created).1
}

/// The rotation that replaces a refresh token by `successor` at `at(secs)`.
fn rotation_to(successor: &RefreshState, secs: u64) -> Rotation {
    Rotation {
        at: at(secs),
        successor: successor.id,
        sealed_successor: SealedSecret([0x5a; 32]),
    }
}

/// An API token of `user` at `epoch`, created at `at(created)`, valid for a day.
fn api_token(user: &UserId, epoch: u64, created: u64) -> ApiTokenRecord {
    fixtures::api_token(user, epoch, created).1
}

fn db(dir: &TempDir) -> PathBuf {
    dir.path().join("data").join("sessionguard.db")
}

fn open(dir: &TempDir) -> SqliteStore {
    SqliteStore::open(db(dir)).unwrap()
}

/// Copies the database file and its WAL, as they are on disk right now, into a new
/// directory: what a `kill -9` at this instant would leave behind.
fn crash_snapshot(dir: &TempDir) -> TempDir {
    let copy = TempDir::new().unwrap();
    let to = db(&copy);
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(db(dir), &to).unwrap();
    let wal = PathBuf::from(format!("{}-wal", db(dir).display()));
    if wal.exists() {
        std::fs::copy(&wal, format!("{}-wal", to.display())).unwrap();
    }
    copy
}

/// The error's message with all its sources.
fn chain(e: &StoreError) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out = format!("{out}: {s}");
        source = s.source();
    }
    out
}

/// Runs raw SQL on a closed store's file.
fn tamper(dir: &TempDir, sql: &str) {
    let conn = Connection::open(db(dir)).unwrap();
    conn.execute_batch(sql).unwrap();
}

fn open_corrupt(dir: &TempDir) -> String {
    match SqliteStore::open(db(dir)) {
        Err(StoreError::Corrupt(msg)) => msg,
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test]
async fn reopen_keeps_sessions_revocations_epochs_and_users() {
    let dir = TempDir::new().unwrap();
    let alice = user("u_alice");
    let sidecar = user("app-42");
    let live = session(&alice, 0);
    let logged_out = session(&alice, 0);
    let ended_by_bump = session(&alice, 0);
    let side = session(&sidecar, 0);
    {
        let store = open(&dir);
        store
            .create_user(&alice, "alice", hash("v1"))
            .await
            .unwrap();
        for r in [&live, &logged_out, &ended_by_bump, &side] {
            store
                .insert_session(r.clone(), SessionLimit::NONE)
                .await
                .unwrap();
        }
        assert!(
            store
                .revoke_session(&logged_out.state.id, rev(Reason::LoggedOut, 5))
                .await
                .unwrap()
        );
        store
            .revoke_user_sessions(&sidecar, bump(Reason::RevokedByAdmin, 6), None)
            .await
            .unwrap();
        store
            .revoke_user_sessions(
                &alice,
                bump(Reason::SignedOutEverywhere, 7),
                Some(&live.state.id),
            )
            .await
            .unwrap();
        store
            .set_password(&alice, hash("v2"), bump(Reason::PasswordChanged, 8))
            .await
            .unwrap();
        // A user created after its sidecar epoch row keeps the epoch.
        store
            .create_user(&sidecar, "app-user", hash("s1"))
            .await
            .unwrap();
    }

    let store = open(&dir);
    let alice_epoch = UserEpoch {
        epoch: 2,
        last_bump: Some(rev(Reason::PasswordChanged, 8)),
        earlier_bumps: [Some(rev(Reason::SignedOutEverywhere, 7)), None, None],
        ..UserEpoch::default()
    };
    assert_eq!(store.user_epoch(&alice).await.unwrap(), alice_epoch);
    assert_eq!(
        store.user_epoch(&sidecar).await.unwrap(),
        UserEpoch {
            epoch: 1,
            last_bump: Some(rev(Reason::RevokedByAdmin, 6)),
            ..UserEpoch::default()
        }
    );

    let (s, e) = store.load_session(&live.state.id).await.unwrap().unwrap();
    assert_eq!(
        s,
        SessionState {
            epoch: 1,
            ..live.state.clone()
        }
    );
    assert_eq!(e, alice_epoch);
    let (s, _) = store
        .load_session(&logged_out.state.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        s,
        SessionState {
            revoked: Some(rev(Reason::LoggedOut, 5)),
            ..logged_out.state.clone()
        }
    );
    let (s, _) = store
        .load_session(&ended_by_bump.state.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s, ended_by_bump.state);

    let mut listed = store.list_user_sessions(&alice).await.unwrap();
    listed.sort_by_key(|r| r.state.id);
    assert_eq!(listed.len(), 3);
    assert!(listed.iter().all(|r| r.client == live.client));

    let a = store.find_user_by_username("alice").await.unwrap().unwrap();
    assert_eq!(
        (a.id, a.password_hash, a.epoch),
        (alice.clone(), hash("v2"), 2)
    );
    let s = store.get_user(&sidecar).await.unwrap().unwrap();
    assert_eq!(
        (s.username.as_str(), s.password_hash, s.epoch),
        ("app-user", hash("s1"), 1)
    );
}

#[tokio::test]
async fn revocations_are_on_disk_when_the_call_returns() {
    let dir = TempDir::new().unwrap();
    let alice = user("alice");
    let one = session(&alice, 0);
    let other = session(&alice, 0);
    let store = open(&dir);
    store
        .create_user(&alice, "alice", hash("v1"))
        .await
        .unwrap();
    store
        .insert_session(one.clone(), SessionLimit::NONE)
        .await
        .unwrap();
    store
        .insert_session(other.clone(), SessionLimit::NONE)
        .await
        .unwrap();
    store
        .revoke_session(&one.state.id, rev(Reason::RevokedByUser, 3))
        .await
        .unwrap();
    store
        .set_password(&alice, hash("v2"), bump(Reason::PasswordChanged, 4))
        .await
        .unwrap();

    // What a crash right now would leave: no flush, no close.
    let copy = crash_snapshot(&dir);
    let recovered = open(&copy);
    let (s, e) = recovered
        .load_session(&one.state.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.revoked, Some(rev(Reason::RevokedByUser, 3)));
    assert_eq!(e.last_bump, Some(rev(Reason::PasswordChanged, 4)));
    let a = recovered.get_user(&alice).await.unwrap().unwrap();
    assert_eq!((a.password_hash, a.epoch), (hash("v2"), 1));
    drop(recovered);

    // And dropping without `flush` loses nothing acknowledged either.
    drop(store);
    let store = open(&dir);
    let (s, e) = store.load_session(&one.state.id).await.unwrap().unwrap();
    assert_eq!(s.revoked, Some(rev(Reason::RevokedByUser, 3)));
    assert_eq!(e.epoch, 1);
    assert!(store.load_session(&other.state.id).await.unwrap().is_some());
}

#[tokio::test]
async fn buffered_touches_reach_disk_on_flush_and_on_drop() {
    let dir = TempDir::new().unwrap();
    let rec = session(&user("alice"), 0);
    let id = rec.state.id;
    let store = open(&dir);
    store.insert_session(rec, SessionLimit::NONE).await.unwrap();

    store.touch_session(&id, at(600), at(2400)).await.unwrap();
    store.flush().unwrap();
    let copy = crash_snapshot(&dir);
    let (s, _) = open(&copy).load_session(&id).await.unwrap().unwrap();
    assert_eq!((s.last_seen_at, s.idle_deadline), (at(600), at(2400)));

    // A later touch, then an earlier one that must not shorten it.
    store.touch_session(&id, at(900), at(2700)).await.unwrap();
    store.touch_session(&id, at(700), at(2500)).await.unwrap();
    drop(store);
    let store = open(&dir);
    let (s, _) = store.load_session(&id).await.unwrap().unwrap();
    assert_eq!((s.last_seen_at, s.idle_deadline), (at(900), at(2700)));
}

#[tokio::test]
async fn revocation_freezes_a_buffered_touch_and_later_touches_are_ignored() {
    let dir = TempDir::new().unwrap();
    let rec = session(&user("alice"), 0);
    let id = rec.state.id;
    let store = open(&dir);
    store.insert_session(rec, SessionLimit::NONE).await.unwrap();
    store.touch_session(&id, at(600), at(2400)).await.unwrap();
    store
        .revoke_session(&id, rev(Reason::LoggedOut, 700))
        .await
        .unwrap();
    store.touch_session(&id, at(800), at(2600)).await.unwrap();
    let in_memory = store.load_session(&id).await.unwrap().unwrap().0;
    drop(store);

    let (s, _) = open(&dir).load_session(&id).await.unwrap().unwrap();
    assert_eq!(s, in_memory, "disk and memory agree");
    assert_eq!(
        (s.idle_deadline, s.revoked),
        (at(2400), Some(rev(Reason::LoggedOut, 700)))
    );
}

#[tokio::test]
async fn purge_removes_what_the_index_removes_even_with_buffered_touches() {
    let dir = TempDir::new().unwrap();
    let u = user("alice");
    let touched = session(&u, 0);
    let idle = session(&u, 0);
    let store = open(&dir);
    store
        .insert_session(touched.clone(), SessionLimit::NONE)
        .await
        .unwrap();
    store
        .insert_session(idle.clone(), SessionLimit::NONE)
        .await
        .unwrap();
    // On disk `touched` still has the old deadline (1800 s) until the flush.
    store
        .touch_session(&touched.state.id, at(1000), at(2800))
        .await
        .unwrap();
    assert_eq!(store.purge(at(1800)).await.unwrap().sessions, 1);
    drop(store);

    let store = open(&dir);
    assert!(store.load_session(&idle.state.id).await.unwrap().is_none());
    let (s, _) = store
        .load_session(&touched.state.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.idle_deadline, at(2800));
}

#[tokio::test]
async fn a_second_open_fails_while_the_file_is_in_use() {
    let dir = TempDir::new().unwrap();
    // An existing, migrated file: opening it needs no write of its own.
    drop(open(&dir));
    let first = open(&dir);
    let clone = first.clone();

    let err = SqliteStore::open(db(&dir)).unwrap_err();
    assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
    assert!(
        chain(&err).contains("is in use by another process"),
        "{}",
        chain(&err)
    );
    assert!(
        err.source()
            .unwrap()
            .downcast_ref::<DatabaseInUse>()
            .is_some()
    );

    // A raw reader cannot sneak in either: the lock is exclusive.
    let raw = Connection::open(db(&dir)).unwrap();
    raw.busy_timeout(Duration::ZERO).unwrap();
    assert!(
        raw.query_row("SELECT count(*) FROM sessions", [], |r| r.get::<_, i64>(0))
            .is_err()
    );
    drop(raw);

    // Dropping one clone keeps the file open; dropping the last releases it.
    drop(first);
    assert!(SqliteStore::open(db(&dir)).is_err());
    drop(clone);
    SqliteStore::open(db(&dir)).unwrap();
}

#[tokio::test]
async fn corrupt_rows_fail_open_with_table_and_column() {
    let dir = TempDir::new().unwrap();
    let rec = session(&user("alice"), 0);
    let (r0, r1) = (refresh(&rec, 1), refresh(&rec, 2));
    {
        let store = open(&dir);
        store
            .create_user(&user("bob"), "bob", hash("v1"))
            .await
            .unwrap();
        store.insert_session(rec, SessionLimit::NONE).await.unwrap();
        store.insert_refresh(r0.clone()).await.unwrap();
        store
            .rotate_refresh(&r0.id, rotation_to(&r1, 2), r1)
            .await
            .unwrap();
        store
            .insert_api_token(api_token(&user("alice"), 0, 0))
            .await
            .unwrap();
    }
    let cases = [
        ("UPDATE sessions SET id = x'0102'", "sessions.id"),
        (
            "UPDATE sessions SET verifier_hash = x'00'",
            "sessions.verifier_hash",
        ),
        (
            "UPDATE sessions SET revoked_reason = 200, revoked_at = 1",
            "sessions.revoked_reason",
        ),
        (
            "UPDATE sessions SET revoked_at = 1",
            "sessions.revoked_reason",
        ),
        ("UPDATE sessions SET user_id = ''", "sessions.user_id"),
        ("UPDATE sessions SET ip = 'not an ip'", "sessions.ip"),
        ("UPDATE sessions SET epoch = -1", "sessions.epoch"),
        ("UPDATE users SET epoch = -3", "users.epoch"),
        (
            "UPDATE users SET password_hash = NULL",
            "users.password_hash",
        ),
        (
            "UPDATE users SET bump_reason = 99, bump_at = 5",
            "users.bump_reason",
        ),
        // Records from a later epoch than their user's would outlive its next bump.
        ("UPDATE sessions SET epoch = 3", "sessions.epoch"),
        // The API-token floor.
        (
            "UPDATE users SET api_token_floor = -1",
            "users.api_token_floor",
        ),
        (
            "UPDATE users SET api_token_floor = 1",
            "users.api_token_floor",
        ),
        (
            "UPDATE users SET epoch = 1, bump_reason = 1, bump_at = 1, api_token_floor = 1",
            "users.api_token_bump_reason",
        ),
        (
            "UPDATE users SET api_token_bump_reason = 1, api_token_bump_at = 1",
            "users.api_token_bump_reason",
        ),
        (
            "UPDATE users SET api_token_bump_at = 1",
            "users.api_token_bump_reason",
        ),
        (
            "UPDATE users SET epoch = 1, bump_reason = 1, bump_at = 1, api_token_floor = 1,
                 api_token_bump_reason = 250, api_token_bump_at = 1",
            "users.api_token_bump_reason",
        ),
        (
            "UPDATE users SET prev2_reason = 250, prev2_at = 1",
            "users.prev2_reason",
        ),
        ("UPDATE users SET prev3_at = 1", "users.prev3_reason"),
        ("UPDATE users SET prev1_reason = 1", "users.prev1_at"),
        // Refresh tokens: the rotated one, then both.
        (
            "UPDATE refresh_tokens SET id = x'0102' WHERE rotated_at IS NOT NULL",
            "refresh_tokens.id",
        ),
        (
            "UPDATE refresh_tokens SET verifier_hash = x'00'",
            "refresh_tokens.verifier_hash",
        ),
        (
            "UPDATE refresh_tokens SET session_id = x'00'",
            "refresh_tokens.session_id",
        ),
        (
            "UPDATE refresh_tokens SET user_id = ''",
            "refresh_tokens.user_id",
        ),
        (
            "UPDATE refresh_tokens SET client_id = 'tab' || char(9) || 'bed'",
            "refresh_tokens.client_id",
        ),
        (
            "UPDATE refresh_tokens SET client_id = ''",
            "refresh_tokens.client_id",
        ),
        (
            "UPDATE refresh_tokens SET successor = x'01' WHERE rotated_at IS NOT NULL",
            "refresh_tokens.successor",
        ),
        (
            "UPDATE refresh_tokens SET sealed_successor = x'0101' WHERE rotated_at IS NOT NULL",
            "refresh_tokens.sealed_successor",
        ),
        (
            "UPDATE refresh_tokens SET successor = NULL",
            "refresh_tokens.successor",
        ),
        (
            "UPDATE refresh_tokens SET sealed_successor = NULL",
            "refresh_tokens.sealed_successor",
        ),
        (
            "UPDATE refresh_tokens SET rotated_at = NULL",
            "refresh_tokens.rotated_at",
        ),
        (
            "UPDATE refresh_tokens SET sealed_successor = zeroblob(32)
             WHERE rotated_at IS NULL",
            "refresh_tokens.rotated_at",
        ),
        // API tokens.
        ("UPDATE api_tokens SET id = x'0102'", "api_tokens.id"),
        (
            "UPDATE api_tokens SET verifier_hash = zeroblob(31)",
            "api_tokens.verifier_hash",
        ),
        ("UPDATE api_tokens SET user_id = ''", "api_tokens.user_id"),
        (
            "UPDATE api_tokens SET name = CAST(x'ff' AS TEXT)",
            "api_tokens.name",
        ),
        ("UPDATE api_tokens SET epoch = -1", "api_tokens.epoch"),
        ("UPDATE api_tokens SET epoch = 1", "api_tokens.epoch"),
        (
            "UPDATE api_tokens SET revoked_reason = 77, revoked_at = 1",
            "api_tokens.revoked_reason",
        ),
        (
            "UPDATE api_tokens SET revoked_at = 1",
            "api_tokens.revoked_reason",
        ),
        (
            "UPDATE api_tokens SET revoked_reason = 3",
            "api_tokens.revoked_at",
        ),
    ];
    for (sql, column) in cases {
        // Each case damages its own copy of the closed file.
        let copy = TempDir::new().unwrap();
        std::fs::create_dir_all(db(&copy).parent().unwrap()).unwrap();
        std::fs::copy(db(&dir), db(&copy)).unwrap();
        tamper(&copy, sql);
        let msg = open_corrupt(&copy);
        assert!(msg.starts_with(column), "{sql}: {msg}");
    }
    // The untouched original still opens.
    open(&dir);
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let dir = TempDir::new().unwrap();
    drop(open(&dir));
    tamper(&dir, "PRAGMA user_version = 99");
    let msg = open_corrupt(&dir);
    assert!(msg.contains("newer"), "{msg}");
}

#[tokio::test]
async fn the_file_holds_no_token_text_nor_verifier() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir);
    let clock = ManualClock::new(at(0));
    let engine = Engine::with_clock(store.clone(), clock.clone(), Policy::default()).unwrap();
    let issued = engine
        .create_session(&user("alice"), 0, ClientInfo::default())
        .await
        .unwrap();
    let text = issued.token.reveal();
    clock.advance(Duration::from_secs(120));
    engine.validate(&text).await.unwrap();
    store.flush().unwrap();

    let raw = URL_SAFE_NO_PAD.decode(&text[4..]).unwrap();
    let (id, verifier) = (&raw[..16], &raw[16..48]);
    let secrets: [&[u8]; 3] = [text.as_bytes(), text[4..].as_bytes(), verifier];
    let hash = issued.token.verifier_hash();

    let check = |label: &str, with_rows: bool| {
        let mut bytes = std::fs::read(db(&dir)).unwrap();
        if let Ok(wal) = std::fs::read(format!("{}-wal", db(&dir).display())) {
            bytes.extend(wal);
        }
        for s in secrets {
            assert!(!contains(&bytes, s), "{label}: a secret is in the file");
        }
        if with_rows {
            assert!(contains(&bytes, id), "{label}: the row is where we looked");
            assert!(
                contains(&bytes, hash.as_bytes()),
                "{label}: the hash is stored"
            );
        }
    };
    check("open", true);
    drop(engine);
    drop(store);
    check("closed", true);
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(unix)]
#[tokio::test]
async fn the_file_is_private() {
    use std::os::unix::fs::PermissionsExt;

    let dir = TempDir::new().unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let store = open(&dir);
    store
        .insert_session(session(&user("alice"), 0), SessionLimit::NONE)
        .await
        .unwrap();
    assert_eq!(mode(&db(&dir)), 0o600);
    assert_eq!(mode(db(&dir).parent().unwrap()), 0o700, "created directory");
    let wal = PathBuf::from(format!("{}-wal", db(&dir).display()));
    if wal.exists() {
        assert_eq!(mode(&wal), 0o600);
    }
    drop(store);

    // A file made readable by someone else is made private again at open.
    std::fs::set_permissions(db(&dir), std::fs::Permissions::from_mode(0o644)).unwrap();
    drop(open(&dir));
    assert_eq!(mode(&db(&dir)), 0o600);
}

#[tokio::test]
async fn debug_shows_the_path_only() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir);
    let shown = format!("{store:?}");
    assert!(shown.starts_with("SqliteStore"), "{shown}");
    assert!(shown.contains("sessionguard.db"), "{shown}");
}

#[tokio::test]
async fn rotations_are_on_disk_when_the_call_returns() {
    let dir = TempDir::new().unwrap();
    let s = session(&user("alice"), 0);
    let (r0, r1, late) = (refresh(&s, 1), refresh(&s, 2), refresh(&s, 3));
    let rotation = rotation_to(&r1, 2);
    let store = open(&dir);
    store
        .insert_session(s.clone(), SessionLimit::NONE)
        .await
        .unwrap();
    store.insert_refresh(r0.clone()).await.unwrap();
    assert_eq!(
        store
            .rotate_refresh(&r0.id, rotation, r1.clone())
            .await
            .unwrap(),
        None
    );

    // What a crash right now would leave: the rotation and its successor, so a
    // replay of the old token after a restart is still seen as reuse.
    let check = |store: SqliteStore| {
        let (r0, r1, late) = (r0.clone(), r1.clone(), late.clone());
        async move {
            let got = store.load_refresh(&r0.id).await.unwrap().unwrap();
            assert_eq!(
                got,
                RefreshState {
                    rotated: Some(rotation),
                    ..r0.clone()
                }
            );
            assert_eq!(store.load_refresh(&r1.id).await.unwrap(), Some(r1));
            assert_eq!(
                store
                    .rotate_refresh(&r0.id, rotation_to(&late, 3), late.clone())
                    .await
                    .unwrap(),
                Some(rotation),
                "the rotation still happened exactly once"
            );
            assert!(store.load_refresh(&late.id).await.unwrap().is_none());
        }
    };
    let copy = crash_snapshot(&dir);
    check(open(&copy)).await;

    // And dropping without `flush` loses nothing acknowledged either.
    drop(store);
    check(open(&dir)).await;
    // The loser's successor was not written by either check.
    let store = open(&dir);
    assert!(store.load_refresh(&late.id).await.unwrap().is_none());
}

#[tokio::test]
async fn api_token_floor_revocations_and_uses_survive() {
    let dir = TempDir::new().unwrap();
    let alice = user("u_alice");
    let used = api_token(&alice, 0, 0);
    let revoked = api_token(&alice, 0, 0);
    let newer = api_token(&alice, 1, 8);
    let floor = UserEpoch {
        epoch: 1,
        last_bump: Some(rev(Reason::PasswordChanged, 7)),
        earlier_bumps: [None; 3],
        api_token_floor: 1,
        api_token_bump: Some(rev(Reason::PasswordChanged, 7)),
        privileges: 0,
    };
    let store = open(&dir);
    store
        .create_user(&alice, "alice", hash("v1"))
        .await
        .unwrap();
    for t in [&used, &revoked] {
        store.insert_api_token(t.clone()).await.unwrap();
    }
    store.touch_api_token(&used.id, at(5)).await.unwrap();
    assert!(
        store
            .revoke_api_token(&revoked.id, rev(Reason::RevokedByUser, 6))
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .set_password(&alice, hash("v2"), bump_all(Reason::PasswordChanged, 7))
            .await
            .unwrap(),
        floor
    );
    store.insert_api_token(newer.clone()).await.unwrap();

    // A crash now: everything acknowledged is there; the buffered use may be lost
    // (the flusher may or may not have run), which only makes it older.
    let copy = crash_snapshot(&dir);
    {
        let recovered = open(&copy);
        assert_eq!(recovered.user_epoch(&alice).await.unwrap(), floor);
        let (t, e) = recovered.load_api_token(&used.id).await.unwrap().unwrap();
        assert_eq!(e, floor);
        assert!(
            t.last_used_at.is_none() || t.last_used_at == Some(at(5)),
            "{:?}",
            t.last_used_at
        );
        let (t, _) = recovered
            .load_api_token(&revoked.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(t.revoked, Some(rev(Reason::RevokedByUser, 6)));
        assert_eq!(
            recovered
                .load_api_token(&newer.id)
                .await
                .unwrap()
                .unwrap()
                .0,
            newer
        );
        let a = recovered.get_user(&alice).await.unwrap().unwrap();
        assert_eq!((a.password_hash, a.epoch), (hash("v2"), 1));
    }

    // After a flush the use is on disk.
    store.flush().unwrap();
    let copy = crash_snapshot(&dir);
    let (t, _) = open(&copy).load_api_token(&used.id).await.unwrap().unwrap();
    assert_eq!(t.last_used_at, Some(at(5)));

    // A buffered use is frozen by a revocation, a later use is ignored, and a bump
    // that leaves API tokens alone keeps the floor.
    store.touch_api_token(&newer.id, at(9)).await.unwrap();
    store
        .revoke_api_token(&newer.id, rev(Reason::RevokedByAdmin, 10))
        .await
        .unwrap();
    store.touch_api_token(&newer.id, at(11)).await.unwrap();
    let after = store
        .revoke_user_sessions(&alice, bump(Reason::SignedOutEverywhere, 12), None)
        .await
        .unwrap();
    assert_eq!(
        (after.epoch, after.api_token_floor, after.api_token_bump),
        (2, 1, floor.api_token_bump)
    );
    let copy = crash_snapshot(&dir);
    let in_memory = store.load_api_token(&newer.id).await.unwrap().unwrap().0;
    for recovered in [open(&copy), {
        drop(store);
        open(&dir)
    }] {
        let (t, e) = recovered.load_api_token(&newer.id).await.unwrap().unwrap();
        assert_eq!(t, in_memory, "disk and memory agree");
        assert_eq!(
            (t.last_used_at, t.revoked),
            (Some(at(9)), Some(rev(Reason::RevokedByAdmin, 10)))
        );
        assert_eq!(e, after);
        assert_eq!(
            recovered.list_user_api_tokens(&alice).await.unwrap().len(),
            3
        );
    }
}

#[tokio::test]
async fn purge_of_tokens_reaches_disk() {
    let dir = TempDir::new().unwrap();
    let u = user("alice");
    let old = session(&u, 0);
    let kept = SessionRecord {
        state: SessionState {
            idle_deadline: at(5000),
            ..session(&u, 0).state
        },
        client: ClientInfo::default(),
    };
    let (r_old, r_kept) = (refresh(&old, 1), refresh(&kept, 1));
    let expired = ApiTokenRecord {
        expires_at: at(1000),
        ..api_token(&u, 0, 0)
    };
    let live = api_token(&u, 0, 0);
    let store = open(&dir);
    for s in [&old, &kept] {
        store
            .insert_session(s.clone(), SessionLimit::NONE)
            .await
            .unwrap();
    }
    for r in [&r_old, &r_kept] {
        store.insert_refresh(r.clone()).await.unwrap();
    }
    for t in [&expired, &live] {
        store.insert_api_token(t.clone()).await.unwrap();
    }
    // A use buffered for a token about to be purged is dropped with it.
    store.touch_api_token(&expired.id, at(10)).await.unwrap();
    let purged = store.purge(at(1800)).await.unwrap();
    assert_eq!(
        (purged.sessions, purged.refresh_tokens, purged.api_tokens),
        (1, 1, 1)
    );
    let copy = crash_snapshot(&dir);
    for recovered in [open(&copy), {
        drop(store);
        open(&dir)
    }] {
        assert!(recovered.load_refresh(&r_old.id).await.unwrap().is_none());
        assert!(recovered.load_refresh(&r_kept.id).await.unwrap().is_some());
        assert!(
            recovered
                .load_api_token(&expired.id)
                .await
                .unwrap()
                .is_none()
        );
        let listed = recovered.list_user_api_tokens(&u).await.unwrap();
        assert_eq!(listed, vec![live.clone()]);
    }
}

#[tokio::test]
async fn the_file_holds_no_refresh_or_api_token_text() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir);
    let clock = ManualClock::new(at(0));
    let engine = Engine::with_clock(store.clone(), clock.clone(), Policy::default()).unwrap();
    let alice = user("alice");
    let issued = engine
        .create_session(&alice, 0, ClientInfo::default())
        .await
        .unwrap();
    let app = ClientId::first_party();
    let first = engine.issue_refresh(&issued.session, &app).await.unwrap();
    clock.advance(Duration::from_secs(1));
    let rotated = engine.refresh(&first.reveal(), &app).await.unwrap();
    // A retry within the grace window opens the sealed successor: same token.
    let again = engine.refresh(&first.reveal(), &app).await.unwrap();
    assert_eq!(*again.refresh.reveal(), *rotated.refresh.reveal());
    let (api, _) = engine
        .create_api_token(&alice, "ci", Some(Duration::from_secs(3600)))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(120));
    engine.validate_api_token(&api.reveal()).await.unwrap();
    store.flush().unwrap();
    let sealed = store
        .load_refresh(&first.id())
        .await
        .unwrap()
        .unwrap()
        .rotated
        .unwrap()
        .sealed_successor;

    let tokens = [&issued.token, &first, &rotated.refresh, &api];
    let mut secrets: Vec<Vec<u8>> = Vec::new();
    let mut stored: Vec<Vec<u8>> = vec![sealed.0.to_vec()];
    for t in tokens {
        let text = t.reveal();
        let raw = URL_SAFE_NO_PAD.decode(&text[4..]).unwrap();
        secrets.push(text.as_bytes().to_vec());
        secrets.push(text[4..].as_bytes().to_vec());
        secrets.push(raw[16..48].to_vec());
        stored.push(raw[..16].to_vec());
        stored.push(t.verifier_hash().as_bytes().to_vec());
    }

    let check = |label: &str| {
        let mut bytes = std::fs::read(db(&dir)).unwrap();
        if let Ok(wal) = std::fs::read(format!("{}-wal", db(&dir).display())) {
            bytes.extend(wal);
        }
        for s in &secrets {
            assert!(!contains(&bytes, s), "{label}: a secret is in the file");
        }
        for s in &stored {
            assert!(contains(&bytes, s), "{label}: a stored value is missing");
        }
    };
    check("open");
    drop(engine);
    drop(store);
    check("closed");
}

/// Migration 1 as released: what a database of schema version 1 holds.
const SCHEMA_V1: &str = "CREATE TABLE users (
         id            TEXT PRIMARY KEY NOT NULL,
         username      TEXT UNIQUE,
         password_hash TEXT,
         epoch         INTEGER NOT NULL,
         bump_reason   INTEGER,
         bump_at       INTEGER
     ) STRICT;
     CREATE TABLE sessions (
         id                BLOB PRIMARY KEY NOT NULL,
         verifier_hash     BLOB NOT NULL,
         user_id           TEXT NOT NULL,
         epoch             INTEGER NOT NULL,
         created_at        INTEGER NOT NULL,
         last_seen_at      INTEGER NOT NULL,
         idle_deadline     INTEGER NOT NULL,
         absolute_deadline INTEGER NOT NULL,
         revoked_reason    INTEGER,
         revoked_at        INTEGER,
         user_agent        TEXT,
         ip                TEXT
     ) STRICT;
     CREATE INDEX sessions_user_id ON sessions(user_id);
     CREATE INDEX sessions_idle_deadline ON sessions(idle_deadline);
     PRAGMA user_version = 1;";

#[tokio::test]
async fn a_version_1_database_is_upgraded() {
    let dir = TempDir::new().unwrap();
    let alice = user("u_alice");
    let live = session(&alice, 2);
    let bumped = Revocation {
        reason: Reason::PasswordChanged,
        at: at(40),
    };
    {
        std::fs::create_dir_all(db(&dir).parent().unwrap()).unwrap();
        let conn = Connection::open(db(&dir)).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        conn.execute_batch(SCHEMA_V1).unwrap();
        conn.execute(
            "INSERT INTO users (id, username, password_hash, epoch, bump_reason, bump_at)
             VALUES (?1, 'alice', ?2, 2, ?3, ?4)",
            rusqlite::params![
                alice.as_str(),
                hash("v1").as_phc(),
                bumped.reason.tag(),
                bumped.at.as_millis()
            ],
        )
        .unwrap();
        let s = &live.state;
        conn.execute(
            "INSERT INTO sessions (id, verifier_hash, user_id, epoch, created_at,
                 last_seen_at, idle_deadline, absolute_deadline, user_agent, ip)
             VALUES (?1, ?2, ?3, 2, ?4, ?5, ?6, ?7, ?8, ?9)",
            rusqlite::params![
                s.id.as_bytes(),
                s.verifier_hash.as_bytes(),
                s.user_id.as_str(),
                s.created_at.as_millis(),
                s.last_seen_at.as_millis(),
                s.idle_deadline.as_millis(),
                s.absolute_deadline.as_millis(),
                live.client.user_agent(),
                live.client.ip().map(|ip| ip.to_string()),
            ],
        )
        .unwrap();
    }

    let token = api_token(&alice, 2, 50);
    let r = refresh(&live, 50);
    let v1_epoch = UserEpoch {
        epoch: 2,
        last_bump: Some(bumped),
        // A version-1 file kept no history; a session it ended still finds
        // `last_bump` through `UserEpoch::bump_ending`.
        earlier_bumps: [None; 3],
        api_token_floor: 0,
        api_token_bump: None,
        privileges: 0,
    };
    {
        let store = open(&dir);
        // The old data, and the defaults of the new columns.
        assert_eq!(store.user_epoch(&alice).await.unwrap(), v1_epoch);
        let a = store.find_user_by_username("alice").await.unwrap().unwrap();
        assert_eq!(
            (a.id, a.password_hash, a.epoch),
            (alice.clone(), hash("v1"), 2)
        );
        let (s, e) = store.load_session(&live.state.id).await.unwrap().unwrap();
        assert_eq!((s, e), (live.state.clone(), v1_epoch));
        assert_eq!(
            store.list_user_sessions(&alice).await.unwrap(),
            vec![live.clone()]
        );
        assert!(store.list_user_api_tokens(&alice).await.unwrap().is_empty());

        // The new tables work.
        store.insert_api_token(token.clone()).await.unwrap();
        store.insert_refresh(r.clone()).await.unwrap();
        store
            .revoke_user_sessions(&alice, bump_all(Reason::RevokedByAdmin, 60), None)
            .await
            .unwrap();
    }
    {
        let store = open(&dir);
        let (t, e) = store.load_api_token(&token.id).await.unwrap().unwrap();
        assert_eq!(t, token);
        assert_eq!(
            (e.epoch, e.api_token_floor, e.api_token_bump),
            (3, 3, Some(rev(Reason::RevokedByAdmin, 60)))
        );
        assert_eq!(store.load_refresh(&r.id).await.unwrap(), Some(r));
    }

    // The file is at the current version, and the new tables are STRICT.
    let conn = Connection::open(db(&dir)).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 5);
    let strict: i64 = conn
        .query_row(
            "SELECT count(*) FROM pragma_table_list
             WHERE name IN ('users', 'sessions', 'refresh_tokens', 'api_tokens', 'events')
                 AND strict",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(strict, 5);
    let default: Option<String> = conn
        .query_row(
            "SELECT dflt_value FROM pragma_table_info('users') WHERE name = 'api_token_floor'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(default.as_deref(), Some("0"));
}

#[tokio::test]
async fn a_version_4_database_is_upgraded_and_its_refresh_tokens_bind_at_first_use() {
    let dir = TempDir::new().unwrap();
    let alice = user("u_alice");
    let live = session(&alice, 0);
    let (token, mut stored) = fixtures::refresh(&live, 1);
    stored.client_id = None;
    {
        // A version-4 file: today's schema without migration 5, as a release
        // with four migrations wrote it.
        let store = open(&dir);
        store
            .insert_session(live.clone(), SessionLimit::NONE)
            .await
            .unwrap();
        store.insert_refresh(stored.clone()).await.unwrap();
        drop(store);
        let conn = Connection::open(db(&dir)).unwrap();
        conn.execute_batch(
            "ALTER TABLE refresh_tokens DROP COLUMN client_id;
             PRAGMA user_version = 4;",
        )
        .unwrap();
    }

    let store = open(&dir);
    // Rows from before the migration have no client.
    assert_eq!(store.load_refresh(&stored.id).await.unwrap(), Some(stored));
    let clock = ManualClock::new(at(2));
    let engine = Engine::with_clock(store.clone(), clock, Policy::default()).unwrap();
    // Such a token works for the client that uses it first, and binds its
    // successor to that client; another client is then refused.
    let app = ClientId::new("mobile-app").unwrap();
    let next = engine.refresh(&token.reveal(), &app).await.unwrap();
    let bound = store
        .load_refresh(&next.refresh.id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bound.client_id, Some(app.clone()));
    let err = engine
        .refresh(&next.refresh.reveal(), &ClientId::first_party())
        .await
        .unwrap_err();
    assert!(
        matches!(err, sessionguard_core::Error::ClientMismatch),
        "{err}"
    );
    engine.refresh(&next.refresh.reveal(), &app).await.unwrap();
    drop(engine);
    drop(store);

    // The binding survives a reopen; the file is at version 5.
    let store = open(&dir);
    assert_eq!(
        store
            .load_refresh(&next.refresh.id())
            .await
            .unwrap()
            .unwrap()
            .client_id,
        Some(app)
    );
    drop(store);
    let conn = Connection::open(db(&dir)).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 5);
}
