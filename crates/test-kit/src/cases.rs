//! One function per clause of the [`Store`] contract.

use std::collections::HashSet;
use std::sync::Arc;

use sessionguard_core::{
    ClientId, Reason, Rotation, SealedSecret, SessionLimit, Store, StoreError, UserEpoch,
};

use crate::fixtures::{api_token, at, bump, bump_all, hash, refresh, rev, session, user};

/// A stored record reads back field for field, and is listed under its user.
pub async fn insert_then_load_round_trips<S: Store>(store: S) {
    let u = user("alice");
    let (_t, rec) = session(&u, 0, 0);
    store
        .insert_session(rec.clone(), SessionLimit::NONE)
        .await
        .unwrap();
    let (state, epoch) = store.load_session(&rec.state.id).await.unwrap().unwrap();
    assert_eq!(state, rec.state);
    assert_eq!(epoch, UserEpoch::default());
    assert_eq!(store.list_user_sessions(&u).await.unwrap(), vec![rec]);
}

/// An id never stored reads as `None`, not an error.
pub async fn load_of_unknown_id_is_none<S: Store>(store: S) {
    let (_t, rec) = session(&user("alice"), 0, 0);
    assert!(store.load_session(&rec.state.id).await.unwrap().is_none());
}

/// Inserting an existing id fails and leaves the original untouched.
pub async fn insert_never_overwrites<S: Store>(store: S) {
    let u = user("alice");
    let (_t, rec) = session(&u, 0, 0);
    store
        .insert_session(rec.clone(), SessionLimit::NONE)
        .await
        .unwrap();
    let (_t2, mut other) = session(&user("mallory"), 0, 5);
    other.state.id = rec.state.id;
    let err = store
        .insert_session(other, SessionLimit::NONE)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict("session")), "{err:?}");
    let (state, _) = store.load_session(&rec.state.id).await.unwrap().unwrap();
    assert_eq!(state, rec.state);
    assert!(
        store
            .list_user_sessions(&user("mallory"))
            .await
            .unwrap()
            .is_empty()
    );
}

/// A session built on an epoch that has since moved is refused; one on the
/// current epoch is accepted.
pub async fn insert_with_stale_epoch_is_refused<S: Store>(store: S) {
    let u = user("alice");
    store
        .revoke_user_sessions(&u, bump(Reason::PasswordChanged, 1), None)
        .await
        .unwrap();
    let (_t, stale) = session(&u, 0, 2);
    let err = store
        .insert_session(stale.clone(), SessionLimit::NONE)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::EpochMoved), "{err:?}");
    assert!(store.load_session(&stale.state.id).await.unwrap().is_none());
    let (_t, current) = session(&u, 1, 2);
    store
        .insert_session(current, SessionLimit::NONE)
        .await
        .unwrap();
}

/// A touch moves the idle deadline forward, never back.
pub async fn touch_extends_but_never_shortens<S: Store>(store: S) {
    let (_t, rec) = session(&user("alice"), 0, 0);
    let id = rec.state.id;
    store.insert_session(rec, SessionLimit::NONE).await.unwrap();
    store.touch_session(&id, at(600), at(2400)).await.unwrap();
    let (s, _) = store.load_session(&id).await.unwrap().unwrap();
    assert_eq!((s.last_seen_at, s.idle_deadline), (at(600), at(2400)));
    store.touch_session(&id, at(300), at(2100)).await.unwrap();
    let (s, _) = store.load_session(&id).await.unwrap().unwrap();
    assert_eq!((s.last_seen_at, s.idle_deadline), (at(600), at(2400)));
}

/// A revoked session stays revoked, with its idle deadline frozen.
pub async fn touch_never_revives_a_revoked_session<S: Store>(store: S) {
    let (_t, rec) = session(&user("alice"), 0, 0);
    let id = rec.state.id;
    store.insert_session(rec, SessionLimit::NONE).await.unwrap();
    assert!(
        store
            .revoke_session(&id, rev(Reason::LoggedOut, 10))
            .await
            .unwrap()
    );
    store.touch_session(&id, at(20), at(1820)).await.unwrap();
    let (s, _) = store.load_session(&id).await.unwrap().unwrap();
    assert_eq!(s.revoked, Some(rev(Reason::LoggedOut, 10)));
    assert_eq!(s.idle_deadline, at(1800));
}

/// Touching an unknown id succeeds and creates nothing.
pub async fn touch_of_unknown_id_is_a_no_op<S: Store>(store: S) {
    let (_t, rec) = session(&user("alice"), 0, 0);
    store
        .touch_session(&rec.state.id, at(1), at(2))
        .await
        .unwrap();
    assert!(store.load_session(&rec.state.id).await.unwrap().is_none());
}

/// The first revocation is kept; later ones report `false` and change nothing.
pub async fn revoke_first_reason_wins<S: Store>(store: S) {
    let (_t, rec) = session(&user("alice"), 0, 0);
    let id = rec.state.id;
    store.insert_session(rec, SessionLimit::NONE).await.unwrap();
    assert!(
        store
            .revoke_session(&id, rev(Reason::LoggedOut, 5))
            .await
            .unwrap()
    );
    assert!(
        !store
            .revoke_session(&id, rev(Reason::RevokedByAdmin, 6))
            .await
            .unwrap()
    );
    let (s, _) = store.load_session(&id).await.unwrap().unwrap();
    assert_eq!(s.revoked, Some(rev(Reason::LoggedOut, 5)));
    let (_t, unknown) = session(&user("alice"), 0, 0);
    assert!(
        !store
            .revoke_session(&unknown.state.id, rev(Reason::LoggedOut, 5))
            .await
            .unwrap()
    );
}

/// Revoke-all bumps the user's epoch with its reason and leaves other users alone.
pub async fn revoke_user_bumps_epoch_with_reason<S: Store>(store: S) {
    let (alice, bob) = (user("alice"), user("bob"));
    let (_t, a) = session(&alice, 0, 0);
    let (_t, b) = session(&bob, 0, 0);
    store
        .insert_session(a.clone(), SessionLimit::NONE)
        .await
        .unwrap();
    store
        .insert_session(b.clone(), SessionLimit::NONE)
        .await
        .unwrap();
    let e = store
        .revoke_user_sessions(&alice, bump(Reason::PasswordChanged, 9), None)
        .await
        .unwrap();
    assert_eq!(
        e,
        UserEpoch {
            epoch: 1,
            last_bump: Some(rev(Reason::PasswordChanged, 9)),
            ..UserEpoch::default()
        }
    );
    let (s, ue) = store.load_session(&a.state.id).await.unwrap().unwrap();
    assert_eq!((s.epoch, ue), (0, e));
    assert_eq!(store.user_epoch(&alice).await.unwrap(), e);
    let (_, bob_epoch) = store.load_session(&b.state.id).await.unwrap().unwrap();
    assert_eq!(bob_epoch, UserEpoch::default());
}

/// `keep` carries exactly one live session of that user to the new epoch.
pub async fn revoke_user_keeps_only_the_named_live_session_of_that_user<S: Store>(store: S) {
    let (alice, bob) = (user("alice"), user("bob"));
    let (_t, keep) = session(&alice, 0, 0);
    let (_t, other) = session(&alice, 0, 0);
    let (_t, revoked) = session(&alice, 0, 0);
    let (_t, bobs) = session(&bob, 0, 0);
    for r in [&keep, &other, &revoked, &bobs] {
        store
            .insert_session(r.clone(), SessionLimit::NONE)
            .await
            .unwrap();
    }
    store
        .revoke_session(&revoked.state.id, rev(Reason::LoggedOut, 1))
        .await
        .unwrap();

    store
        .revoke_user_sessions(
            &alice,
            bump(Reason::SignedOutEverywhere, 2),
            Some(&keep.state.id),
        )
        .await
        .unwrap();
    let epoch_of = |id| {
        let store = &store;
        async move { store.load_session(&id).await.unwrap().unwrap().0.epoch }
    };
    assert_eq!(epoch_of(keep.state.id).await, 1);
    assert_eq!(epoch_of(other.state.id).await, 0);

    // A revoked session is not carried.
    store
        .revoke_user_sessions(
            &alice,
            bump(Reason::SignedOutEverywhere, 3),
            Some(&revoked.state.id),
        )
        .await
        .unwrap();
    assert_eq!(epoch_of(revoked.state.id).await, 0);
    // Neither is another user's session.
    store
        .revoke_user_sessions(
            &alice,
            bump(Reason::SignedOutEverywhere, 4),
            Some(&bobs.state.id),
        )
        .await
        .unwrap();
    assert_eq!(epoch_of(bobs.state.id).await, 0);
    // Nor one that was already out of date before the bump.
    store
        .revoke_user_sessions(
            &alice,
            bump(Reason::SignedOutEverywhere, 5),
            Some(&other.state.id),
        )
        .await
        .unwrap();
    assert_eq!(epoch_of(other.state.id).await, 0);
    assert_eq!(store.user_epoch(&alice).await.unwrap().epoch, 4);
}

/// Each bump adds one, records its reason, and keeps the earlier ones (newest
/// first) so that a session ended by an earlier bump keeps its reason.
pub async fn epoch_bumps_accumulate<S: Store>(store: S) {
    let u = user("alice");
    let reasons = [
        Reason::SignedOutEverywhere,
        Reason::RevokedByAdmin,
        Reason::PasswordChanged,
        Reason::RevokedByUser,
        Reason::Displaced,
    ];
    let mut e = UserEpoch::default();
    for (i, r) in reasons.into_iter().enumerate() {
        e = store
            .revoke_user_sessions(&u, bump(r, i as u64 + 1), None)
            .await
            .unwrap();
    }
    assert_eq!(e.epoch, 5);
    assert_eq!(e.last_bump, Some(rev(Reason::Displaced, 5)));
    assert_eq!(
        e.earlier_bumps,
        [
            Some(rev(Reason::RevokedByUser, 4)),
            Some(rev(Reason::PasswordChanged, 3)),
            Some(rev(Reason::RevokedByAdmin, 2)),
        ]
    );
    assert_eq!(store.user_epoch(&u).await.unwrap(), e);
    let e = store
        .set_password(&user("nobody"), hash("x"), bump(Reason::PasswordChanged, 9))
        .await;
    assert!(e.is_err());
}

/// Listing returns the user's records only, ended ones included.
pub async fn list_is_per_user_and_includes_ended_records<S: Store>(store: S) {
    let (alice, bob) = (user("alice"), user("bob"));
    let (_t, a1) = session(&alice, 0, 0);
    let (_t, a2) = session(&alice, 0, 1);
    let (_t, b1) = session(&bob, 0, 0);
    for r in [&a1, &a2, &b1] {
        store
            .insert_session(r.clone(), SessionLimit::NONE)
            .await
            .unwrap();
    }
    store
        .revoke_session(&a2.state.id, rev(Reason::LoggedOut, 2))
        .await
        .unwrap();
    let ids: HashSet<_> = store
        .list_user_sessions(&alice)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.state.id)
        .collect();
    assert_eq!(ids, HashSet::from([a1.state.id, a2.state.id]));
    assert_eq!(store.list_user_sessions(&bob).await.unwrap().len(), 1);
    assert!(
        store
            .list_user_sessions(&user("carol"))
            .await
            .unwrap()
            .is_empty()
    );
}

/// Purge deletes the records whose idle deadline is at or before the cutoff, and
/// nothing else.
pub async fn purge_removes_exactly_records_ended_by_cutoff<S: Store>(store: S) {
    let u = user("alice");
    let (_t, early) = session(&u, 0, 0); // idle deadline at 1800
    let (_t, edge) = session(&u, 0, 100); // 1900
    let (_t, late) = session(&u, 0, 200); // 2000
    for r in [&early, &edge, &late] {
        store
            .insert_session(r.clone(), SessionLimit::NONE)
            .await
            .unwrap();
    }
    assert_eq!(store.purge(at(1900)).await.unwrap().sessions, 2);
    assert!(store.load_session(&early.state.id).await.unwrap().is_none());
    assert!(store.load_session(&edge.state.id).await.unwrap().is_none());
    assert!(store.load_session(&late.state.id).await.unwrap().is_some());
    let listed = store.list_user_sessions(&u).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state.id, late.state.id);
    assert_eq!(store.purge(at(1900)).await.unwrap().sessions, 0);
}

/// Users are found by exact (case-sensitive) username and by id, with their epoch.
pub async fn users_are_found_by_exact_username_and_by_id<S: Store>(store: S) {
    let id = user("u_1");
    store.create_user(&id, "Alice", hash("a")).await.unwrap();
    let rec = store.find_user_by_username("Alice").await.unwrap().unwrap();
    assert_eq!(
        (rec.id.clone(), rec.username.as_str(), rec.epoch),
        (id.clone(), "Alice", 0)
    );
    assert_eq!(rec.password_hash, hash("a"));
    assert_eq!(store.get_user(&id).await.unwrap(), Some(rec));
    assert!(
        store
            .find_user_by_username("alice")
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.get_user(&user("u_2")).await.unwrap().is_none());
}

/// A taken username or id is refused.
pub async fn usernames_and_user_ids_are_unique<S: Store>(store: S) {
    store
        .create_user(&user("u_1"), "alice", hash("a"))
        .await
        .unwrap();
    let err = store
        .create_user(&user("u_2"), "alice", hash("b"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict("username")), "{err:?}");
    let err = store
        .create_user(&user("u_1"), "bob", hash("b"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict("user")), "{err:?}");
    assert!(store.find_user_by_username("bob").await.unwrap().is_none());
    assert_eq!(
        store
            .find_user_by_username("alice")
            .await
            .unwrap()
            .unwrap()
            .password_hash,
        hash("a")
    );
}

/// A password change replaces the hash and bumps the epoch together.
pub async fn set_password_swaps_hash_and_bumps_epoch<S: Store>(store: S) {
    let id = user("u_1");
    store.create_user(&id, "alice", hash("old")).await.unwrap();
    let e = store
        .set_password(&id, hash("new"), bump(Reason::PasswordChanged, 3))
        .await
        .unwrap();
    assert_eq!(
        e,
        UserEpoch {
            epoch: 1,
            last_bump: Some(rev(Reason::PasswordChanged, 3)),
            ..UserEpoch::default()
        }
    );
    let rec = store.find_user_by_username("alice").await.unwrap().unwrap();
    assert_eq!((rec.password_hash, rec.epoch), (hash("new"), 1));
    let err = store
        .set_password(&user("u_404"), hash("x"), bump(Reason::PasswordChanged, 3))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound("user")), "{err:?}");
}

/// A user known only by id (sidecar mode) has an epoch but no credentials.
pub async fn sidecar_user_has_epoch_without_credentials<S: Store>(store: S) {
    let id = user("app-user-42");
    store
        .revoke_user_sessions(&id, bump(Reason::RevokedByAdmin, 1), None)
        .await
        .unwrap();
    assert!(store.get_user(&id).await.unwrap().is_none());
    assert_eq!(store.user_epoch(&id).await.unwrap().epoch, 1);
    let err = store
        .set_password(&id, hash("x"), bump(Reason::PasswordChanged, 2))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound("user")), "{err:?}");
}

const TASKS: usize = 16;
const TRIALS: usize = 20;

/// Of many simultaneous revocations of one session exactly one succeeds, and its
/// reason is the one stored.
pub async fn concurrent_revokes_of_one_session_have_one_winner<S: Store>(store: S) {
    let store = Arc::new(store);
    let reasons = [
        Reason::LoggedOut,
        Reason::RevokedByAdmin,
        Reason::RevokedByUser,
        Reason::Displaced,
    ];
    for _ in 0..TRIALS {
        let (_t, rec) = session(&user("alice"), 0, 0);
        let id = rec.state.id;
        store.insert_session(rec, SessionLimit::NONE).await.unwrap();
        let handles: Vec<_> = (0..TASKS)
            .map(|i| {
                let store = Arc::clone(&store);
                let r = rev(reasons[i % reasons.len()], 10 + i as u64);
                tokio::spawn(async move { (r, store.revoke_session(&id, r).await.unwrap()) })
            })
            .collect();
        let mut winners = Vec::new();
        for h in handles {
            let (r, won) = h.await.unwrap();
            if won {
                winners.push(r);
            }
        }
        assert_eq!(winners.len(), 1, "exactly one revocation wins");
        let (s, _) = store.load_session(&id).await.unwrap().unwrap();
        assert_eq!(s.revoked, Some(winners[0]));
    }
}

/// Simultaneous revoke-alls are each counted: epochs 1..=N, each returned once.
pub async fn concurrent_epoch_bumps_are_never_lost<S: Store>(store: S) {
    let store = Arc::new(store);
    let u = user("alice");
    let handles: Vec<_> = (0..TASKS)
        .map(|i| {
            let (store, u) = (Arc::clone(&store), u.clone());
            tokio::spawn(async move {
                store
                    .revoke_user_sessions(&u, bump(Reason::RevokedByAdmin, i as u64), None)
                    .await
                    .unwrap()
                    .epoch
            })
        })
        .collect();
    let mut seen = Vec::new();
    for h in handles {
        seen.push(h.await.unwrap());
    }
    seen.sort_unstable();
    assert_eq!(seen, (1..=TASKS as u64).collect::<Vec<_>>());
    assert_eq!(store.user_epoch(&u).await.unwrap().epoch, TASKS as u64);
}

/// Of many simultaneous sign-ups for one username exactly one succeeds.
pub async fn concurrent_user_creation_has_one_winner<S: Store>(store: S) {
    let store = Arc::new(store);
    for trial in 0..TRIALS {
        let name = format!("user{trial}");
        let handles: Vec<_> = (0..TASKS)
            .map(|i| {
                let (store, name) = (Arc::clone(&store), name.clone());
                tokio::spawn(async move {
                    let id = user(&format!("u_{name}_{i}"));
                    store
                        .create_user(&id, &name, hash(&i.to_string()))
                        .await
                        .is_ok()
                })
            })
            .collect();
        let mut wins = 0;
        for h in handles {
            wins += usize::from(h.await.unwrap());
        }
        assert_eq!(wins, 1, "exactly one sign-up wins for {name}");
    }
}

/// Readers never see the new password hash with the old epoch.
pub async fn password_change_is_never_seen_half_done<S: Store>(store: S) {
    let store = Arc::new(store);
    let id = user("u_1");
    store.create_user(&id, "alice", hash("0")).await.unwrap();
    let reader = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            for _ in 0..2000 {
                let rec = store.find_user_by_username("alice").await.unwrap().unwrap();
                let n: u64 = rec
                    .password_hash
                    .as_phc()
                    .rsplit('$')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert_eq!(n, rec.epoch, "hash and epoch change together");
                tokio::task::yield_now().await;
            }
        })
    };
    for n in 1..=TRIALS as u64 {
        store
            .set_password(&id, hash(&n.to_string()), bump(Reason::PasswordChanged, n))
            .await
            .unwrap();
    }
    reader.await.unwrap();
}

/// Revoke-all with `keep`, racing other revoke-alls with `keep`: the keep check
/// and the bump are one step, so only the first bump finds its keeper current and
/// carries it (to epoch 1); every later keeper is already out of date. A store that
/// reads the epoch and carries the keeper in separate steps carries several.
pub async fn keep_during_revoke_all_is_atomic<S: Store>(store: S) {
    let store = Arc::new(store);
    for _ in 0..TRIALS {
        let u = user(&format!("u_{}", sessionguard_core::TokenId::random()));
        let mut ids = Vec::new();
        for _ in 0..TASKS {
            let (_t, rec) = session(&u, 0, 0);
            ids.push(rec.state.id);
            store.insert_session(rec, SessionLimit::NONE).await.unwrap();
        }
        let handles: Vec<_> = ids
            .iter()
            .map(|id| {
                let (store, u, id) = (Arc::clone(&store), u.clone(), *id);
                tokio::spawn(async move {
                    store
                        .revoke_user_sessions(&u, bump(Reason::SignedOutEverywhere, 1), Some(&id))
                        .await
                        .unwrap()
                })
            })
            .collect();
        for h in handles {
            h.await.unwrap();
        }
        assert_eq!(store.user_epoch(&u).await.unwrap().epoch, TASKS as u64);
        let mut epochs = Vec::new();
        for id in &ids {
            epochs.push(store.load_session(id).await.unwrap().unwrap().0.epoch);
        }
        epochs.sort_unstable();
        let mut expected = vec![0; TASKS - 1];
        expected.push(1);
        assert_eq!(
            epochs, expected,
            "exactly the first keeper was carried, once"
        );
    }
}

fn rotation_to(successor: &sessionguard_core::RefreshState, secs: u64) -> Rotation {
    Rotation {
        at: at(secs),
        successor: successor.id,
        sealed_successor: SealedSecret([secs as u8; 32]),
    }
}

/// A refresh token reads back as stored; an existing id is never overwritten.
pub async fn refresh_round_trips_and_is_never_overwritten<S: Store>(store: S) {
    let (_t, s) = session(&user("alice"), 0, 0);
    store
        .insert_session(s.clone(), SessionLimit::NONE)
        .await
        .unwrap();
    let (_t, r) = refresh(&s, 1);
    store.insert_refresh(r.clone()).await.unwrap();
    assert_eq!(store.load_refresh(&r.id).await.unwrap(), Some(r.clone()));
    let (_t, mut other) = refresh(&s, 2);
    other.id = r.id;
    let err = store.insert_refresh(other).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict("refresh_token")),
        "{err:?}"
    );
    assert_eq!(store.load_refresh(&r.id).await.unwrap(), Some(r));
    let (_t, unknown) = refresh(&s, 3);
    assert!(store.load_refresh(&unknown.id).await.unwrap().is_none());
}

/// A refresh token keeps the client it was issued to (or none, for one stored
/// before refresh tokens were bound to a client), and a successor keeps its own.
pub async fn refresh_tokens_keep_the_client_they_were_issued_to<S: Store>(store: S) {
    let (_t, s) = session(&user("alice"), 0, 0);
    store
        .insert_session(s.clone(), SessionLimit::NONE)
        .await
        .unwrap();
    let clients = [
        Some(ClientId::new("mobile app/2.0 (build 7); \"quoted\" ~").unwrap()),
        Some(ClientId::new(&"x".repeat(ClientId::MAX_LEN)).unwrap()),
        Some(ClientId::first_party()),
        None,
    ];
    let mut stored = Vec::new();
    for (i, client) in clients.into_iter().enumerate() {
        let (_t, mut r) = refresh(&s, i as u64);
        r.client_id = client;
        store.insert_refresh(r.clone()).await.unwrap();
        stored.push(r);
    }
    for r in &stored {
        assert_eq!(store.load_refresh(&r.id).await.unwrap().as_ref(), Some(r));
    }
    // The unbound one is rotated to a successor bound to the client that used it.
    let legacy = &stored[3];
    let (_t, successor) = refresh(&s, 10);
    assert_eq!(
        store
            .rotate_refresh(&legacy.id, rotation_to(&successor, 10), successor.clone())
            .await
            .unwrap(),
        None
    );
    let got = store.load_refresh(&successor.id).await.unwrap().unwrap();
    assert_eq!(got.client_id, Some(crate::fixtures::client()));
    let got = store.load_refresh(&legacy.id).await.unwrap().unwrap();
    assert_eq!((got.client_id, got.rotated.is_some()), (None, true));
}

/// The first rotation wins and stores the successor; later ones report it and
/// change nothing.
pub async fn rotate_refresh_happens_exactly_once<S: Store>(store: S) {
    let (_t, s) = session(&user("alice"), 0, 0);
    store
        .insert_session(s.clone(), SessionLimit::NONE)
        .await
        .unwrap();
    let (_t, r0) = refresh(&s, 1);
    store.insert_refresh(r0.clone()).await.unwrap();
    let (_t, r1) = refresh(&s, 2);
    let first = rotation_to(&r1, 2);
    assert_eq!(
        store
            .rotate_refresh(&r0.id, first, r1.clone())
            .await
            .unwrap(),
        None
    );
    let (_t, r1b) = refresh(&s, 3);
    let again = store
        .rotate_refresh(&r0.id, rotation_to(&r1b, 3), r1b.clone())
        .await
        .unwrap();
    assert_eq!(again, Some(first));
    assert!(
        store.load_refresh(&r1b.id).await.unwrap().is_none(),
        "the loser's successor is not stored"
    );
    assert_eq!(
        store.load_refresh(&r0.id).await.unwrap().unwrap().rotated,
        Some(first)
    );
    assert_eq!(store.load_refresh(&r1.id).await.unwrap(), Some(r1.clone()));
    // The successor's id must be fresh; an unknown token cannot be rotated.
    let clash = store
        .rotate_refresh(&r1.id, rotation_to(&r0, 4), r0.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(clash, StoreError::Conflict("refresh_token")),
        "{clash:?}"
    );
    assert_eq!(
        store.load_refresh(&r1.id).await.unwrap().unwrap().rotated,
        None
    );
    let (_t, ghost) = refresh(&s, 5);
    let (_t, next) = refresh(&s, 5);
    let err = store
        .rotate_refresh(&ghost.id, rotation_to(&next, 5), next)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound("refresh_token")),
        "{err:?}"
    );
}

/// Of many simultaneous rotations of one refresh token exactly one succeeds, and
/// only its successor exists afterwards.
pub async fn concurrent_rotations_of_one_refresh_token_have_one_winner<S: Store>(store: S) {
    let store = Arc::new(store);
    let (_t, s) = session(&user("alice"), 0, 0);
    store
        .insert_session(s.clone(), SessionLimit::NONE)
        .await
        .unwrap();
    for trial in 0..TRIALS as u64 {
        let (_t, r0) = refresh(&s, trial);
        store.insert_refresh(r0.clone()).await.unwrap();
        let handles: Vec<_> = (0..TASKS)
            .map(|i| {
                let (store, s, id) = (Arc::clone(&store), s.clone(), r0.id);
                tokio::spawn(async move {
                    let (_t, next) = refresh(&s, 100 + i as u64);
                    let won = store
                        .rotate_refresh(&id, rotation_to(&next, 100 + i as u64), next.clone())
                        .await
                        .unwrap()
                        .is_none();
                    (won, next.id)
                })
            })
            .collect();
        let mut winners = Vec::new();
        let mut losers = Vec::new();
        for h in handles {
            let (won, id) = h.await.unwrap();
            if won {
                winners.push(id)
            } else {
                losers.push(id)
            }
        }
        assert_eq!(winners.len(), 1, "exactly one rotation");
        let rotated = store
            .load_refresh(&r0.id)
            .await
            .unwrap()
            .unwrap()
            .rotated
            .unwrap();
        assert_eq!(rotated.successor, winners[0]);
        for id in losers {
            assert!(
                store.load_refresh(&id).await.unwrap().is_none(),
                "a losing successor leaked"
            );
        }
    }
}

/// Purging a session purges its refresh tokens.
pub async fn purge_takes_refresh_tokens_with_their_session<S: Store>(store: S) {
    let u = user("alice");
    let (_t, old) = session(&u, 0, 0);
    let (_t, new) = session(&u, 0, 1000);
    store
        .insert_session(old.clone(), SessionLimit::NONE)
        .await
        .unwrap();
    store
        .insert_session(new.clone(), SessionLimit::NONE)
        .await
        .unwrap();
    let (_t, r_old) = refresh(&old, 1);
    let (_t, r_new) = refresh(&new, 1001);
    store.insert_refresh(r_old.clone()).await.unwrap();
    store.insert_refresh(r_new.clone()).await.unwrap();
    let purged = store.purge(at(1800)).await.unwrap();
    assert_eq!((purged.sessions, purged.refresh_tokens), (1, 1));
    assert!(store.load_refresh(&r_old.id).await.unwrap().is_none());
    assert!(store.load_refresh(&r_new.id).await.unwrap().is_some());
}

/// An API token reads back with its user's epoch, is listed under its user, and is
/// never overwritten.
pub async fn api_token_round_trips_and_is_listed_per_user<S: Store>(store: S) {
    let (alice, bob) = (user("alice"), user("bob"));
    let (_t, a) = api_token(&alice, 0, 0);
    let (_t, b) = api_token(&bob, 0, 0);
    store.insert_api_token(a.clone()).await.unwrap();
    store.insert_api_token(b.clone()).await.unwrap();
    let (got, epoch) = store.load_api_token(&a.id).await.unwrap().unwrap();
    assert_eq!((got, epoch), (a.clone(), UserEpoch::default()));
    assert_eq!(
        store.list_user_api_tokens(&alice).await.unwrap(),
        vec![a.clone()]
    );
    let mut dup = b.clone();
    dup.id = a.id;
    let err = store.insert_api_token(dup).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict("api_token")), "{err:?}");
    assert_eq!(store.load_api_token(&a.id).await.unwrap().unwrap().0, a);
    assert!(
        store
            .list_user_api_tokens(&user("carol"))
            .await
            .unwrap()
            .is_empty()
    );
}

/// An API token built on an epoch that has moved is refused.
pub async fn api_token_with_stale_epoch_is_refused<S: Store>(store: S) {
    let u = user("alice");
    store
        .revoke_user_sessions(&u, bump(Reason::SignedOutEverywhere, 1), None)
        .await
        .unwrap();
    let (_t, stale) = api_token(&u, 0, 2);
    let err = store.insert_api_token(stale.clone()).await.unwrap_err();
    assert!(matches!(err, StoreError::EpochMoved), "{err:?}");
    assert!(store.load_api_token(&stale.id).await.unwrap().is_none());
    let (_t, current) = api_token(&u, 1, 2);
    store.insert_api_token(current).await.unwrap();
}

/// Revocation of an API token: the first reason wins; uses are recorded, never
/// backwards and never after revocation.
pub async fn api_token_revoke_and_touch<S: Store>(store: S) {
    let (_t, t) = api_token(&user("alice"), 0, 0);
    store.insert_api_token(t.clone()).await.unwrap();
    store.touch_api_token(&t.id, at(50)).await.unwrap();
    store.touch_api_token(&t.id, at(40)).await.unwrap();
    assert_eq!(
        store
            .load_api_token(&t.id)
            .await
            .unwrap()
            .unwrap()
            .0
            .last_used_at,
        Some(at(50))
    );
    assert!(
        store
            .revoke_api_token(&t.id, rev(Reason::RevokedByUser, 60))
            .await
            .unwrap()
    );
    assert!(
        !store
            .revoke_api_token(&t.id, rev(Reason::RevokedByAdmin, 61))
            .await
            .unwrap()
    );
    store.touch_api_token(&t.id, at(70)).await.unwrap();
    let (got, _) = store.load_api_token(&t.id).await.unwrap().unwrap();
    assert_eq!(got.revoked, Some(rev(Reason::RevokedByUser, 60)));
    assert_eq!(got.last_used_at, Some(at(50)));
    let (_t, unknown) = api_token(&user("alice"), 0, 0);
    assert!(
        !store
            .revoke_api_token(&unknown.id, rev(Reason::RevokedByUser, 1))
            .await
            .unwrap()
    );
    store.touch_api_token(&unknown.id, at(1)).await.unwrap();
}

/// A bump raises the API-token floor only when it says so, in both revoke-all and
/// password change.
pub async fn epoch_bump_ends_api_tokens_only_when_asked<S: Store>(store: S) {
    let id = user("u_1");
    store.create_user(&id, "alice", hash("0")).await.unwrap();
    let e = store
        .revoke_user_sessions(&id, bump(Reason::SignedOutEverywhere, 1), None)
        .await
        .unwrap();
    assert_eq!((e.epoch, e.api_token_floor, e.api_token_bump), (1, 0, None));
    let e = store
        .set_password(&id, hash("1"), bump_all(Reason::PasswordChanged, 2))
        .await
        .unwrap();
    assert_eq!((e.epoch, e.api_token_floor), (2, 2));
    assert_eq!(e.api_token_bump, Some(rev(Reason::PasswordChanged, 2)));
    let e = store
        .set_password(&id, hash("2"), bump(Reason::PasswordChanged, 3))
        .await
        .unwrap();
    assert_eq!((e.epoch, e.api_token_floor), (3, 2), "the floor stays");
    let e = store
        .revoke_user_sessions(&id, bump_all(Reason::RevokedByAdmin, 4), None)
        .await
        .unwrap();
    assert_eq!((e.epoch, e.api_token_floor), (4, 4));
    assert_eq!(store.user_epoch(&id).await.unwrap(), e);
}

/// Purge deletes API tokens that ended by the cutoff (expired, revoked, below the
/// floor) and keeps live ones.
pub async fn purge_removes_ended_api_tokens<S: Store>(store: S) {
    let u = user("alice");
    let (_t, expiring) = api_token(&u, 0, 0);
    let (_t, revoked) = api_token(&u, 0, 50_000);
    let (_t, floored) = api_token(&u, 0, 50_000);
    for t in [&expiring, &revoked, &floored] {
        store.insert_api_token(t.clone()).await.unwrap();
    }
    store
        .revoke_api_token(&revoked.id, rev(Reason::RevokedByUser, 60_000))
        .await
        .unwrap();
    store
        .revoke_user_sessions(&u, bump_all(Reason::PasswordChanged, 70_000), None)
        .await
        .unwrap();
    let (_t, live) = api_token(&u, 1, 70_001);
    store.insert_api_token(live.clone()).await.unwrap();

    let purged = |secs| {
        let store = &store;
        async move { store.purge(at(secs)).await.unwrap().api_tokens }
    };
    assert_eq!(purged(59_999).await, 0);
    assert_eq!(purged(60_000).await, 1, "the revoked one");
    assert_eq!(
        purged(80_000).await,
        2,
        "both below the floor raised at 70 000"
    );
    assert_eq!(purged(156_400).await, 0);
    let left: Vec<_> = store
        .list_user_api_tokens(&u)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(left, vec![live.id]);
    assert_eq!(purged(156_401).await, 1, "the live one, once expired");
    assert!(store.list_user_api_tokens(&u).await.unwrap().is_empty());
}

/// A store that holds data and answers is ready, and stays so after writes.
pub async fn a_working_store_is_ready<S: Store>(store: S) {
    store.ready().await.expect("a fresh store is ready");
    let u = user("ready");
    let (_t, s) = session(&u, 0, 1);
    store
        .insert_session(s.clone(), SessionLimit::NONE)
        .await
        .unwrap();
    store.ready().await.expect("a store in use is ready");
    assert!(store.load_session(&s.state.id).await.unwrap().is_some());
}
