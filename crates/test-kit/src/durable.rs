//! Durability cases: what a store acknowledged is still there after reopening.
//!
//! Each case opens the store kept in a directory, works, drops it, and opens it
//! again; a store that only kept its data in memory fails them.

use std::future::Future;
use std::path::PathBuf;

use sessionguard_core::{Reason, Store, UserEpoch};

use crate::fixtures::{at, hash, rev, session, user};

/// Sessions (with client info), revocations, epochs with their reasons and users
/// acknowledged before the store is dropped are all there after it is reopened.
pub async fn everything_acknowledged_survives_reopen<S, F, Fut>(dir: PathBuf, open: F)
where
    S: Store,
    F: Fn(PathBuf) -> Fut,
    Fut: Future<Output = S>,
{
    let alice = user("u_alice");
    let sidecar = user("app-7");
    let (_t, live) = session(&alice, 0, 0);
    let (_t, logged_out) = session(&alice, 0, 0);
    let (_t, side) = session(&sidecar, 0, 0);
    {
        let store = open(dir.clone()).await;
        store
            .create_user(&alice, "alice", hash("v1"))
            .await
            .unwrap();
        for r in [&live, &logged_out, &side] {
            store.insert_session(r.clone()).await.unwrap();
        }
        store
            .revoke_session(&logged_out.state.id, rev(Reason::LoggedOut, 5))
            .await
            .unwrap();
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
    }
    let store = open(dir).await;

    let (s, e) = store.load_session(&live.state.id).await.unwrap().unwrap();
    assert_eq!(s.epoch, 1, "the kept session was carried to epoch 1");
    assert_eq!(
        e,
        UserEpoch {
            epoch: 2,
            last_bump: Some(rev(Reason::PasswordChanged, 8))
        }
    );
    assert_eq!(s.verifier_hash, live.state.verifier_hash);

    let (s, _) = store
        .load_session(&logged_out.state.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.revoked, Some(rev(Reason::LoggedOut, 5)));

    let (s, e) = store.load_session(&side.state.id).await.unwrap().unwrap();
    assert_eq!(s, side.state);
    assert_eq!(
        e,
        UserEpoch {
            epoch: 1,
            last_bump: Some(rev(Reason::RevokedByAdmin, 6))
        }
    );

    let rec = store.find_user_by_username("alice").await.unwrap().unwrap();
    assert_eq!(
        (rec.id, rec.password_hash, rec.epoch),
        (alice.clone(), hash("v2"), 2)
    );

    let mut listed = store.list_user_sessions(&alice).await.unwrap();
    listed.sort_by_key(|r| r.state.id);
    let mut expected = vec![live.clone(), logged_out.clone()];
    expected.sort_by_key(|r| r.state.id);
    assert_eq!(listed.len(), 2);
    for (got, want) in listed.iter().zip(&expected) {
        assert_eq!(got.client, want.client, "client info survives");
    }
}

/// Purged records stay purged after reopening.
pub async fn purge_survives_reopen<S, F, Fut>(dir: PathBuf, open: F)
where
    S: Store,
    F: Fn(PathBuf) -> Fut,
    Fut: Future<Output = S>,
{
    let u = user("alice");
    let (_t, old) = session(&u, 0, 0);
    let (_t, new) = session(&u, 0, 1000);
    {
        let store = open(dir.clone()).await;
        store.insert_session(old.clone()).await.unwrap();
        store.insert_session(new.clone()).await.unwrap();
        assert_eq!(store.purge_sessions(at(1800)).await.unwrap(), 1);
    }
    let store = open(dir).await;
    assert!(store.load_session(&old.state.id).await.unwrap().is_none());
    assert!(store.load_session(&new.state.id).await.unwrap().is_some());
    assert_eq!(store.list_user_sessions(&u).await.unwrap().len(), 1);
}

/// A touch may be buffered, but after a clean close it is on disk; and reopening
/// never shows a deadline earlier than the one stored at insert.
pub async fn touch_survives_clean_reopen_and_never_moves_backwards<S, F, Fut>(dir: PathBuf, open: F)
where
    S: Store,
    F: Fn(PathBuf) -> Fut,
    Fut: Future<Output = S>,
{
    let (_t, rec) = session(&user("alice"), 0, 0);
    let id = rec.state.id;
    {
        let store = open(dir.clone()).await;
        store.insert_session(rec).await.unwrap();
        store.touch_session(&id, at(600), at(2400)).await.unwrap();
    }
    let store = open(dir).await;
    let (s, _) = store.load_session(&id).await.unwrap().unwrap();
    assert_eq!((s.last_seen_at, s.idle_deadline), (at(600), at(2400)));
}
