//! Contract clauses of session policies: the concurrent-session limit, token
//! rotation, user access (profile and roles) and the audit log.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use sessionguard_core::{
    AuditEvent, ClientInfo, EventKind, EventQuery, OnLimit, ProfileName, Reason, ReplacedToken,
    SessionId, SessionLimit, Store, StoreError, Token, TokenKind, TokenRotation, UserAccess,
    UserId, verdict,
};

use crate::fixtures::{at, bump, rev, session, user};

const fn limit(max: u32, on_limit: OnLimit) -> SessionLimit {
    SessionLimit { max, on_limit }
}

/// How many of `user`'s sessions are live at `T0 + secs`.
async fn live_count<S: Store>(store: &S, user: &UserId, secs: u64) -> usize {
    let epoch = store.user_epoch(user).await.unwrap();
    store
        .list_user_sessions(user)
        .await
        .unwrap()
        .iter()
        .filter(|r| verdict(&r.state, &epoch, at(secs)).is_ok())
        .count()
}

/// At the limit with `evict_oldest`, the least recently seen live session is
/// displaced — revoked with `displaced` at the new login's time, naming the new
/// login's client — and the new one is stored; below the limit nothing is.
pub async fn limit_evicts_the_least_recently_used<S: Store>(store: S) {
    let u = user("alice");
    let (_t, a) = session(&u, 0, 0);
    let (_t, b) = session(&u, 0, 10);
    store
        .insert_session(a.clone(), limit(2, OnLimit::EvictOldest))
        .await
        .unwrap();
    let none = store
        .insert_session(b.clone(), limit(2, OnLimit::EvictOldest))
        .await
        .unwrap();
    assert!(none.is_empty(), "below the limit nobody is displaced");
    // `a` is older but was used more recently than `b`.
    store
        .touch_session(&a.state.id, at(20), at(1820))
        .await
        .unwrap();

    let (_t, mut c) = session(&u, 0, 30);
    c.client = ClientInfo::new(
        Some("Evil/1.0"),
        Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9))),
    );
    let displaced = store
        .insert_session(c.clone(), limit(2, OnLimit::EvictOldest))
        .await
        .unwrap();
    assert_eq!(displaced, vec![b.state.id]);
    let (sb, _) = store.load_session(&b.state.id).await.unwrap().unwrap();
    assert_eq!(sb.revoked, Some(rev(Reason::Displaced, 30)));
    assert_eq!(sb.displaced_by.as_deref(), Some(&c.client));
    let (sa, _) = store.load_session(&a.state.id).await.unwrap().unwrap();
    assert_eq!(sa.revoked, None);
    assert_eq!(sa.displaced_by, None);
    assert!(store.load_session(&c.state.id).await.unwrap().is_some());
    assert_eq!(live_count(&store, &u, 30).await, 2);
}

/// At the limit with `reject_new`, the insert fails and nothing changes.
pub async fn limit_rejects_new_and_changes_nothing<S: Store>(store: S) {
    let u = user("alice");
    let (_t, a) = session(&u, 0, 0);
    store
        .insert_session(a.clone(), limit(1, OnLimit::RejectNew))
        .await
        .unwrap();
    let (_t, b) = session(&u, 0, 5);
    let err = store
        .insert_session(b.clone(), limit(1, OnLimit::RejectNew))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::LimitReached), "{err:?}");
    assert!(store.load_session(&b.state.id).await.unwrap().is_none());
    let (sa, _) = store.load_session(&a.state.id).await.unwrap().unwrap();
    assert_eq!(sa.revoked, None);
    // Another user is not affected by alice's count.
    let (_t, m) = session(&user("mallory"), 0, 5);
    store
        .insert_session(m, limit(1, OnLimit::RejectNew))
        .await
        .unwrap();
}

/// Only live sessions count: revoked, timed-out and epoch-ended ones do not.
pub async fn limit_counts_only_live_sessions<S: Store>(store: S) {
    let u = user("alice");
    let (_t, revoked) = session(&u, 0, 0);
    let (_t, idle) = session(&u, 0, 0);
    store
        .insert_session(revoked.clone(), SessionLimit::NONE)
        .await
        .unwrap();
    store
        .insert_session(idle.clone(), SessionLimit::NONE)
        .await
        .unwrap();
    store
        .revoke_session(&revoked.state.id, rev(Reason::LoggedOut, 1))
        .await
        .unwrap();
    // `idle` timed out at T0+1800; a login after that does not count it.
    let (_t, late) = session(&u, 0, 1800);
    let displaced = store
        .insert_session(late.clone(), limit(1, OnLimit::RejectNew))
        .await
        .unwrap();
    assert!(displaced.is_empty());
    // After a revoke-all, the session of the old epoch no longer counts either.
    store
        .revoke_user_sessions(&u, bump(Reason::SignedOutEverywhere, 1801), None)
        .await
        .unwrap();
    let (_t, fresh) = session(&u, 1, 1802);
    store
        .insert_session(fresh, limit(1, OnLimit::RejectNew))
        .await
        .unwrap();
    let (_t, over) = session(&u, 1, 1803);
    let err = store
        .insert_session(over, limit(1, OnLimit::RejectNew))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::LimitReached), "{err:?}");
}

const TASKS: usize = 12;
const TRIALS: usize = 25;

/// Many simultaneous logins of one user never leave more than `max` live
/// sessions, in either mode; with `reject_new` exactly `max` of them succeed.
pub async fn simultaneous_logins_never_exceed_the_limit<S: Store>(store: S) {
    let store = Arc::new(store);
    for trial in 0..TRIALS {
        for (max, mode) in [(1, OnLimit::EvictOldest), (3, OnLimit::RejectNew)] {
            let u = user(&format!("u_{trial}_{max}"));
            let handles: Vec<_> = (0..TASKS)
                .map(|_| {
                    let (store, u) = (Arc::clone(&store), u.clone());
                    tokio::spawn(async move {
                        let (_t, rec) = session(&u, 0, 0);
                        store.insert_session(rec, limit(max, mode)).await
                    })
                })
                .collect();
            let mut ok = 0;
            let mut displaced = HashSet::new();
            for h in handles {
                match h.await.unwrap() {
                    Ok(d) => {
                        ok += 1;
                        for id in d {
                            assert!(displaced.insert(id), "displaced twice: {id}");
                        }
                    }
                    Err(StoreError::LimitReached) => assert_eq!(mode, OnLimit::RejectNew),
                    Err(e) => panic!("{e:?}"),
                }
            }
            let live = live_count(&*store, &u, 0).await;
            assert_eq!(
                live, max as usize,
                "trial {trial}: {live} live, limit {max}"
            );
            match mode {
                OnLimit::RejectNew => assert_eq!(ok, max as usize),
                OnLimit::EvictOldest => {
                    assert_eq!(ok, TASKS);
                    assert_eq!(displaced.len(), TASKS - max as usize);
                }
            }
        }
    }
}

fn rotation(
    prev: &sessionguard_core::SessionState,
    secs: u64,
    reason: Reason,
) -> (Token, TokenRotation) {
    let t = Token::regenerate(TokenKind::Session, prev.id);
    let r = TokenRotation {
        verifier_hash: t.verifier_hash(),
        issued_at: at(secs),
        previous: ReplacedToken {
            verifier_hash: prev.verifier_hash,
            valid_until: at(secs + 30),
            reason,
        },
        elevated_until: Some(at(secs + 300)),
        profile: Some(ProfileName::new("admin").unwrap()),
        privileges: 3,
        idle_deadline: at(secs + 600),
        absolute_deadline: at(8 * 3600),
        csrf_basis: prev.verifier_hash,
    };
    (t, r)
}

/// A rotation applies every field when the expected verifier is current, and
/// changes nothing otherwise (stale verifier, revoked or unknown session).
pub async fn rotate_session_token_is_a_compare_and_set<S: Store>(store: S) {
    let u = user("alice");
    let (_t, rec) = session(&u, 0, 0);
    let id = rec.state.id;
    store
        .insert_session(rec.clone(), SessionLimit::NONE)
        .await
        .unwrap();
    let (_t1, r1) = rotation(&rec.state, 100, Reason::Renewed);
    assert!(
        store
            .rotate_session_token(&id, rec.state.verifier_hash, r1.clone())
            .await
            .unwrap()
    );
    let (s, _) = store.load_session(&id).await.unwrap().unwrap();
    assert_eq!(s.verifier_hash, r1.verifier_hash);
    assert_eq!(s.token_issued_at, at(100));
    assert_eq!(s.previous, Some(r1.previous));
    assert_eq!(s.elevated_until, Some(at(400)));
    assert_eq!(s.profile.as_ref().map(ProfileName::as_str), Some("admin"));
    assert_eq!(s.privileges, 3);
    assert_eq!(
        (s.idle_deadline, s.absolute_deadline),
        (at(700), at(8 * 3600))
    );
    assert_eq!(s.last_seen_at, at(100));
    assert!(s.csrf_basis == Some(rec.state.verifier_hash));
    assert_eq!((s.created_at, s.epoch, &s.user_id), (at(0), 0, &u));

    // The replaced verifier no longer rotates anything.
    let (_t2, r2) = rotation(&rec.state, 200, Reason::Renewed);
    assert!(
        !store
            .rotate_session_token(&id, rec.state.verifier_hash, r2)
            .await
            .unwrap()
    );
    let (again, _) = store.load_session(&id).await.unwrap().unwrap();
    assert_eq!(again, s);

    // A revoked session is never rotated, and unknown ids are a no-op.
    store
        .revoke_session(&id, rev(Reason::LoggedOut, 300))
        .await
        .unwrap();
    let (_t3, r3) = rotation(&s, 400, Reason::Renewed);
    assert!(
        !store
            .rotate_session_token(&id, s.verifier_hash, r3.clone())
            .await
            .unwrap()
    );
    let (_t, other) = session(&u, 0, 0);
    assert!(
        !store
            .rotate_session_token(&other.state.id, other.state.verifier_hash, r3)
            .await
            .unwrap()
    );
}

/// Of simultaneous rotations of one token, exactly one wins.
pub async fn simultaneous_rotations_have_one_winner<S: Store>(store: S) {
    let store = Arc::new(store);
    for _ in 0..TRIALS {
        let (_t, rec) = session(&user("alice"), 0, 0);
        let id = rec.state.id;
        store
            .insert_session(rec.clone(), SessionLimit::NONE)
            .await
            .unwrap();
        let handles: Vec<_> = (0..TASKS)
            .map(|_| {
                let store = Arc::clone(&store);
                let (_t, r) = rotation(&rec.state, 10, Reason::Renewed);
                let expected = rec.state.verifier_hash;
                tokio::spawn(async move {
                    let hash = r.verifier_hash;
                    store
                        .rotate_session_token(&id, expected, r)
                        .await
                        .unwrap()
                        .then_some(hash)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for h in handles {
            winners.extend(h.await.unwrap());
        }
        assert_eq!(winners.len(), 1);
        let (s, _) = store.load_session(&id).await.unwrap().unwrap();
        assert!(
            s.verifier_hash == winners[0],
            "the winner's token is current"
        );
    }
}

/// A user's profile and roles read back as set; setting them increments the
/// user's privilege count, which validation reads with each session.
pub async fn user_access_round_trips_and_counts_privilege_changes<S: Store>(store: S) {
    let u = user("alice");
    assert_eq!(store.user_access(&u).await.unwrap(), UserAccess::default());
    let (_t, rec) = session(&u, 0, 0);
    store
        .insert_session(rec.clone(), SessionLimit::NONE)
        .await
        .unwrap();
    let access = UserAccess::new(
        Some(ProfileName::new("admin").unwrap()),
        vec!["ops".into(), "billing:read".into()],
    )
    .unwrap();
    let epoch = store.set_user_access(&u, access.clone()).await.unwrap();
    assert_eq!(epoch.privileges, 1);
    assert_eq!(epoch.epoch, 0, "a privilege change is not an epoch bump");
    assert_eq!(store.user_access(&u).await.unwrap(), access);
    let (_, e) = store.load_session(&rec.state.id).await.unwrap().unwrap();
    assert_eq!(e.privileges, 1);
    let e = store
        .set_user_access(&u, UserAccess::default())
        .await
        .unwrap();
    assert_eq!(
        e.privileges, 2,
        "every change counts, even back to the default"
    );
    assert_eq!(store.user_access(&u).await.unwrap(), UserAccess::default());
    // An epoch bump keeps the count; a user never seen gets one too.
    let e = store
        .revoke_user_sessions(&u, bump(Reason::SignedOutEverywhere, 60), None)
        .await
        .unwrap();
    assert_eq!(e.privileges, 2);
    let sidecar = user("app-7");
    store
        .set_user_access(&sidecar, UserAccess::default())
        .await
        .unwrap();
    assert_eq!(store.user_epoch(&sidecar).await.unwrap().privileges, 1);
    assert_eq!(
        store.user_access(&user("bob")).await.unwrap(),
        UserAccess::default()
    );
}

fn event(kind: EventKind, user: Option<&UserId>, secs: u64) -> AuditEvent {
    AuditEvent {
        id: 0,
        at: at(secs),
        kind,
        user: user.cloned(),
        session: Some(SessionId::random()),
        client: ClientInfo::new(
            Some("Mozilla/5.0"),
            Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
        ),
        reason: Some(Reason::LoggedOut),
    }
}

/// Events get increasing ids, read back field for field, filter by user and
/// time, page by cursor in both orders, and are purged by age.
pub async fn audit_events_append_list_and_purge<S: Store>(store: S) {
    let (alice, bob) = (user("alice"), user("bob"));
    let mut stored = Vec::new();
    for (i, u) in [Some(&alice), Some(&bob), None, Some(&alice), Some(&alice)]
        .into_iter()
        .enumerate()
    {
        let e = event(EventKind::ALL[i], u, i as u64 * 10);
        let id = store.append_event(e.clone()).await.unwrap();
        if let Some(prev) = stored.last().map(|e: &AuditEvent| e.id) {
            assert!(id > prev, "ids increase");
        }
        stored.push(AuditEvent { id, ..e });
    }
    let all = EventQuery {
        user: None,
        since: None,
        cursor: None,
        newest_first: false,
        limit: 100,
    };
    assert_eq!(store.list_events(&all).await.unwrap(), stored);

    let alices = EventQuery {
        user: Some(alice.clone()),
        limit: 2,
        ..all.clone()
    };
    let page1 = store.list_events(&alices).await.unwrap();
    assert_eq!(page1, vec![stored[0].clone(), stored[3].clone()]);
    let page2 = store
        .list_events(&EventQuery {
            cursor: Some(page1[1].id),
            ..alices.clone()
        })
        .await
        .unwrap();
    assert_eq!(page2, vec![stored[4].clone()]);

    let newest = store
        .list_events(&EventQuery {
            newest_first: true,
            ..alices.clone()
        })
        .await
        .unwrap();
    assert_eq!(newest, vec![stored[4].clone(), stored[3].clone()]);
    let older = store
        .list_events(&EventQuery {
            newest_first: true,
            cursor: Some(newest[1].id),
            ..alices
        })
        .await
        .unwrap();
    assert_eq!(older, vec![stored[0].clone()]);

    let since = store
        .list_events(&EventQuery {
            since: Some(at(20)),
            ..all.clone()
        })
        .await
        .unwrap();
    assert_eq!(since, stored[2..].to_vec());

    assert_eq!(store.purge_events(at(30)).await.unwrap(), 3);
    assert_eq!(store.list_events(&all).await.unwrap(), stored[3..].to_vec());
    // Ids are never reused after a purge.
    let id = store
        .append_event(event(EventKind::LoggedOut, None, 100))
        .await
        .unwrap();
    assert!(id > stored[4].id);
}
