//! Durability cases: what a store acknowledged is still there after reopening.
//!
//! Each case opens the store kept in a directory, works, drops it, and opens it
//! again; a store that only kept its data in memory fails them.

use std::future::Future;
use std::path::PathBuf;

use sessionguard_core::{
    Reason, RefreshState, Rotation, SealedSecret, SessionLimit, Store, UserEpoch,
};

use crate::fixtures::{api_token, at, bump, bump_all, hash, refresh, rev, session, user};

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
            store
                .insert_session(r.clone(), SessionLimit::NONE)
                .await
                .unwrap();
        }
        store
            .revoke_session(&logged_out.state.id, rev(Reason::LoggedOut, 5))
            .await
            .unwrap();
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
    }
    let store = open(dir).await;

    let (s, e) = store.load_session(&live.state.id).await.unwrap().unwrap();
    assert_eq!(s.epoch, 1, "the kept session was carried to epoch 1");
    assert_eq!(
        e,
        UserEpoch {
            epoch: 2,
            last_bump: Some(rev(Reason::PasswordChanged, 8)),
            earlier_bumps: [Some(rev(Reason::SignedOutEverywhere, 7)), None, None],
            ..UserEpoch::default()
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
            last_bump: Some(rev(Reason::RevokedByAdmin, 6)),
            ..UserEpoch::default()
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
        store
            .insert_session(old.clone(), SessionLimit::NONE)
            .await
            .unwrap();
        store
            .insert_session(new.clone(), SessionLimit::NONE)
            .await
            .unwrap();
        assert_eq!(store.purge(at(1800)).await.unwrap().sessions, 1);
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
        store.insert_session(rec, SessionLimit::NONE).await.unwrap();
        store.touch_session(&id, at(600), at(2400)).await.unwrap();
    }
    let store = open(dir).await;
    let (s, _) = store.load_session(&id).await.unwrap().unwrap();
    assert_eq!((s.last_seen_at, s.idle_deadline), (at(600), at(2400)));
}

/// Refresh tokens with their rotations, and API tokens with their revocations,
/// uses and the API-token floor, are all there after a reopen.
pub async fn tokens_survive_reopen<S, F, Fut>(dir: PathBuf, open: F)
where
    S: Store,
    F: Fn(PathBuf) -> Fut,
    Fut: Future<Output = S>,
{
    let u = user("alice");
    let (_t, s) = session(&u, 0, 0);
    // One issued before refresh tokens were bound to a client, one bound.
    let (_t, mut r0) = refresh(&s, 1);
    r0.client_id = None;
    let (_t, r1) = refresh(&s, 2);
    let rotation = Rotation {
        at: at(2),
        successor: r1.id,
        sealed_successor: SealedSecret([9; 32]),
    };
    let (_t, used) = api_token(&u, 0, 0);
    let (_t, revoked) = api_token(&u, 0, 0);
    let (_t, later) = api_token(&u, 1, 10);
    {
        let store = open(dir.clone()).await;
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
        store.insert_api_token(used.clone()).await.unwrap();
        store.insert_api_token(revoked.clone()).await.unwrap();
        store.touch_api_token(&used.id, at(5)).await.unwrap();
        store
            .revoke_api_token(&revoked.id, rev(Reason::RevokedByUser, 6))
            .await
            .unwrap();
        store
            .revoke_user_sessions(&u, bump_all(Reason::PasswordChanged, 7), None)
            .await
            .unwrap();
        store.insert_api_token(later.clone()).await.unwrap();
    }
    let store = open(dir).await;
    assert_eq!(
        store.load_refresh(&r0.id).await.unwrap(),
        Some(RefreshState {
            rotated: Some(rotation),
            ..r0
        })
    );
    assert_eq!(store.load_refresh(&r1.id).await.unwrap(), Some(r1));
    let (got, epoch) = store.load_api_token(&used.id).await.unwrap().unwrap();
    assert_eq!(got.last_used_at, Some(at(5)));
    assert_eq!(
        (epoch.epoch, epoch.api_token_floor, epoch.api_token_bump),
        (1, 1, Some(rev(Reason::PasswordChanged, 7)))
    );
    let (got, _) = store.load_api_token(&revoked.id).await.unwrap().unwrap();
    assert_eq!(got.revoked, Some(rev(Reason::RevokedByUser, 6)));
    assert_eq!(
        store.load_api_token(&later.id).await.unwrap().unwrap().0,
        later
    );
    assert_eq!(store.list_user_api_tokens(&u).await.unwrap().len(), 3);
}

/// Policy state acknowledged before the store is dropped is there after reopening:
/// a displacement with its client, a rotated token with its replaced one, a user's
/// profile, roles and privilege stamp, and the audit log (ids keep increasing).
pub async fn policy_state_survives_reopen<S, F, Fut>(dir: PathBuf, open: F)
where
    S: Store,
    F: Fn(PathBuf) -> Fut,
    Fut: Future<Output = S>,
{
    use sessionguard_core::{
        AuditEvent, ClientInfo, EventKind, EventQuery, OnLimit, ProfileName, ReplacedToken, Token,
        TokenKind, TokenRotation, UserAccess,
    };

    let alice = user("u_alice");
    let (_t, old) = session(&alice, 0, 0);
    let (_t, mut new) = session(&alice, 0, 10);
    new.client = ClientInfo::new(Some("Other/2.0"), None);
    let access = UserAccess::new(
        Some(ProfileName::new("sensitive").expect("valid")),
        vec!["admin".into(), "ops".into()],
    )
    .expect("valid roles");
    let next = Token::regenerate(TokenKind::Session, new.state.id);
    let rotation = TokenRotation {
        verifier_hash: next.verifier_hash(),
        issued_at: at(20),
        previous: ReplacedToken {
            verifier_hash: new.state.verifier_hash,
            valid_until: at(50),
            reason: Reason::Renewed,
        },
        elevated_until: Some(at(320)),
        profile: access.profile.clone(),
        privileges: 1,
        idle_deadline: at(920),
        absolute_deadline: at(12 * 3600),
        csrf_basis: new.state.verifier_hash,
    };
    let event = AuditEvent {
        id: 0,
        at: at(10),
        kind: EventKind::Displaced,
        user: Some(alice.clone()),
        session: Some(old.state.id),
        client: new.client.clone(),
        reason: Some(Reason::Displaced),
    };
    let last_id;
    let (displaced_state, rotated_state);
    {
        let store = open(dir.clone()).await;
        let limit = SessionLimit {
            max: 1,
            on_limit: OnLimit::EvictOldest,
        };
        store.insert_session(old.clone(), limit).await.unwrap();
        let displaced = store.insert_session(new.clone(), limit).await.unwrap();
        assert_eq!(displaced, vec![old.state.id]);
        assert!(
            store
                .rotate_session_token(&new.state.id, new.state.verifier_hash, rotation)
                .await
                .unwrap()
        );
        store.set_user_access(&alice, access.clone()).await.unwrap();
        store.append_event(event.clone()).await.unwrap();
        last_id = store.append_event(event.clone()).await.unwrap();
        displaced_state = store.load_session(&old.state.id).await.unwrap().unwrap();
        rotated_state = store.load_session(&new.state.id).await.unwrap().unwrap();
    }
    let store = open(dir).await;
    let (d, _) = store.load_session(&old.state.id).await.unwrap().unwrap();
    assert_eq!(d, displaced_state.0);
    assert_eq!(d.revoked, Some(rev(Reason::Displaced, 10)));
    assert_eq!(d.displaced_by.as_deref(), Some(&new.client));
    let (r, e) = store.load_session(&new.state.id).await.unwrap().unwrap();
    assert_eq!((&r, &e), (&rotated_state.0, &rotated_state.1));
    assert!(r.verifier_hash == next.verifier_hash());
    assert_eq!(r.elevated_until, Some(at(320)));
    assert_eq!(e.privileges, 1);
    assert_eq!(r.privileges, 1);
    assert_eq!(store.user_access(&alice).await.unwrap(), access);
    let all = EventQuery {
        user: Some(alice.clone()),
        since: None,
        cursor: None,
        newest_first: false,
        limit: 10,
    };
    let events = store.list_events(&all).await.unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(
        events[1],
        AuditEvent {
            id: last_id,
            ..event.clone()
        }
    );
    assert!(store.append_event(event).await.unwrap() > last_id);
}
