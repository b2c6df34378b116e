//! What the SQLite store promises beyond the shared conformance suite: what is on
//! disk and when, the exclusive lock, corrupt rows, file permissions and the
//! absence of secrets in the file.

use std::error::Error as _;
use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rusqlite::Connection;
use sessionguard_core::{
    ClientInfo, Engine, ManualClock, PasswordHash, Policy, Reason, Revocation, SessionRecord,
    SessionState, Store, StoreError, Timestamp, Token, TokenKind, UserEpoch, UserId,
};
use sessionguard_store_sqlite::{DatabaseInUse, SqliteStore};
use tempfile::TempDir;

const T0: i64 = 1_800_000_000_000;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_millis(T0 + secs * 1000)
}

fn rev(reason: Reason, secs: i64) -> Revocation {
    Revocation {
        reason,
        at: at(secs),
    }
}

fn user(name: &str) -> UserId {
    UserId::new(name).unwrap()
}

fn hash(tag: &str) -> PasswordHash {
    PasswordHash::from_phc(format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA${tag}"))
}

/// A session created at `at(0)` with a 30-minute idle deadline.
fn session(user: &UserId, epoch: u64) -> SessionRecord {
    let token = Token::generate(TokenKind::Session);
    SessionRecord {
        state: SessionState {
            id: token.id(),
            verifier_hash: token.verifier_hash(),
            user_id: user.clone(),
            epoch,
            created_at: at(0),
            last_seen_at: at(0),
            idle_deadline: at(1800),
            absolute_deadline: at(12 * 3600),
            revoked: None,
        },
        client: ClientInfo::new(Some("curl/8.0"), Some(IpAddr::V6(Ipv6Addr::LOCALHOST))),
    }
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
            store.insert_session(r.clone()).await.unwrap();
        }
        assert!(
            store
                .revoke_session(&logged_out.state.id, rev(Reason::LoggedOut, 5))
                .await
                .unwrap()
        );
        store
            .revoke_user_sessions(&sidecar, rev(Reason::RevokedByAdmin, 6), None)
            .await
            .unwrap();
        store
            .revoke_user_sessions(
                &alice,
                rev(Reason::SignedOutEverywhere, 7),
                Some(&live.state.id),
            )
            .await
            .unwrap();
        store
            .set_password(&alice, hash("v2"), rev(Reason::PasswordChanged, 8))
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
    };
    assert_eq!(store.user_epoch(&alice).await.unwrap(), alice_epoch);
    assert_eq!(
        store.user_epoch(&sidecar).await.unwrap(),
        UserEpoch {
            epoch: 1,
            last_bump: Some(rev(Reason::RevokedByAdmin, 6))
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
    store.insert_session(one.clone()).await.unwrap();
    store.insert_session(other.clone()).await.unwrap();
    store
        .revoke_session(&one.state.id, rev(Reason::RevokedByUser, 3))
        .await
        .unwrap();
    store
        .set_password(&alice, hash("v2"), rev(Reason::PasswordChanged, 4))
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
    store.insert_session(rec).await.unwrap();

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
    store.insert_session(rec).await.unwrap();
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
    store.insert_session(touched.clone()).await.unwrap();
    store.insert_session(idle.clone()).await.unwrap();
    // On disk `touched` still has the old deadline (1800 s) until the flush.
    store
        .touch_session(&touched.state.id, at(1000), at(2800))
        .await
        .unwrap();
    assert_eq!(store.purge_sessions(at(1800)).await.unwrap(), 1);
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
    {
        let store = open(&dir);
        store
            .create_user(&user("bob"), "bob", hash("v1"))
            .await
            .unwrap();
        store.insert_session(rec).await.unwrap();
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
        .insert_session(session(&user("alice"), 0))
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
