//! Session policies over HTTP (issue 4), end to end through the router on a
//! manual clock: concurrent-session limits (`evict_oldest`, `reject_new`, and
//! their atomicity under parallel logins on the in-memory and the SQLite store),
//! step-up (`POST /v1/session/elevate` and the actions that require it), periodic
//! renewal with its overlap, admin changes of a user's profile and roles, and the
//! audit log through both event endpoints. Time is advanced, never slept.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use common::{ADMIN_TOKEN, Grant, Login, ORIGIN, PASSWORD, Req, Resp, START, TestApp, at};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use sessionguard_core::ManualClock;
use sessionguard_jwt::KeySet;
use sessionguard_server::{AppState, Config, DB_FILE, Overrides};
use sessionguard_store_sqlite::SqliteStore;
use tower::ServiceExt as _;

const NEW_PASSWORD: &str = "a brand new password";
const COOKIE_ATTRS: &str = "; Path=/; Secure; HttpOnly; SameSite=Lax";

/// `[policy]` for the default profile: two sessions, the oldest evicted.
const EVICT_TWO: &str = "[policy]\nmax_sessions = 2\non_limit = \"evict_oldest\"\n";
/// A custom default profile: two sessions, new logins refused at the limit.
const REJECT_TWO: &str = "[policy]\nprofile = \"partners\"\n\
                          [profiles.partners]\nmax_sessions = 2\non_limit = \"reject_new\"\n";

// ------------------------------------------------------------------ helpers

/// An RFC 3339 instant `secs` after [`START`].
fn at_secs(secs: u64) -> String {
    START.saturating_add(Duration::from_secs(secs)).to_rfc3339()
}

/// A cookie login as a browser with `user_agent` at the TCP peer `peer`.
fn login_from(username: &str, password: &str, user_agent: &str, peer: &str) -> Req {
    Req::post("/v1/login")
        .header("user-agent", user_agent)
        .peer(peer)
        .json(json!({ "username": username, "password": password }))
}

/// A password grant at the token endpoint.
fn token_login_req(username: &str, password: &str) -> Req {
    Req::post("/v1/token").form(&[
        ("grant_type", "password"),
        ("username", username),
        ("password", password),
    ])
}

/// A sidecar session for `user_id` through the admin API.
fn sidecar_req(user_id: &str) -> Req {
    Req::post("/v1/admin/sessions")
        .bearer(ADMIN_TOKEN)
        .json(json!({ "user_id": user_id }))
}

/// `GET /v1/session` with the cookie `token`.
async fn cookie_session(app: &TestApp, token: &str) -> Resp {
    Req::get("/v1/session").cookie(token).send(app).await
}

/// `GET /v1/session` with the bearer `token`.
async fn bearer_session(app: &TestApp, token: &str) -> Resp {
    Req::get("/v1/session").bearer(token).send(app).await
}

/// Asserts a 200 without a new session cookie; returns the body.
#[track_caller]
fn ok_unrotated(res: &Resp) -> Value {
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.set_cookie(), None, "no new cookie expected");
    res.json()
}

/// Asserts a 200 that carries a new session cookie (exact attributes); returns
/// the new token and the body.
#[track_caller]
fn ok_rotated(res: &Resp, old: &str) -> (String, Value) {
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let token = res.session_cookie().expect("a new session cookie");
    assert_ne!(token, old);
    assert!(token.starts_with("sgs_"));
    assert_eq!(
        res.set_cookie().unwrap(),
        format!("__Host-sg_session={token}{COOKIE_ATTRS}")
    );
    assert!(
        !res.text().contains(&token),
        "the token stays out of the body"
    );
    (token, res.json())
}

/// Asserts a 401 problem with `code` for a bearer credential (RFC 6750 challenge).
#[track_caller]
fn bearer_refused(res: &Resp, code: &str) -> Value {
    let p = res.problem(StatusCode::UNAUTHORIZED, code);
    assert_eq!(
        res.header("www-authenticate"),
        Some(r#"Bearer realm="sessionguard", error="invalid_token""#)
    );
    p
}

/// The ids of a user's live sessions, as the admin API lists them.
async fn live_sessions(app: &TestApp, user_id: &str) -> Vec<String> {
    let res = Req::get(&format!("/v1/admin/users/{user_id}/sessions"))
        .bearer(ADMIN_TOKEN)
        .send(app)
        .await;
    session_ids(&res)
}

fn session_ids(res: &Resp) -> Vec<String> {
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    res.json()["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect()
}

/// `POST /v1/session/elevate` as a same-origin browser page.
fn elevate_browser(login: &Login, password: &str) -> Req {
    Req::post("/v1/session/elevate")
        .browser(login)
        .json(json!({ "password": password }))
}

/// `POST /v1/password` as a same-origin browser page.
fn change_password_browser(login: &Login) -> Req {
    Req::post("/v1/password")
        .browser(login)
        .json(json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD }))
}

/// `POST /v1/admin/users/{id}` with `body`.
async fn update_user(app: &TestApp, user_id: &str, body: Value) -> Resp {
    Req::post(&format!("/v1/admin/users/{user_id}"))
        .bearer(ADMIN_TOKEN)
        .json(body)
        .send(app)
        .await
}

/// A [`Login`] for `token` with the session's anti-CSRF token `csrf` (for
/// browser requests after a rotation: the CSRF token does not change).
fn login_with(token: String, csrf: &str) -> Login {
    let body = json!({ "csrf_token": csrf });
    Login {
        token,
        body,
        res: Resp {
            status: StatusCode::OK,
            headers: Default::default(),
            body: Default::default(),
        },
    }
}

// ------------------------------------------------- the concurrent-session limit

#[tokio::test]
async fn evict_oldest_displaces_the_least_recently_used_session_and_says_by_whom() {
    // The built-in `sensitive` profile: three sessions, the oldest evicted.
    let app = TestApp::with_extra("[policy]\nprofile = \"sensitive\"\n");
    let user_id = app.create_user("alice", PASSWORD).await;
    let login = |ua: &'static str, peer: &'static str| {
        let app = &app;
        async move {
            let res = login_from("alice", PASSWORD, ua, peer).send(app).await;
            Login::from(res)
        }
    };
    let first = login("Laptop/1", "198.51.100.1:5000").await;
    app.advance(1);
    let second = login("Tablet/1", "198.51.100.2:5000").await;
    app.advance(1);
    let third = login("Desktop/1", "198.51.100.3:5000").await;
    // Within the limit: nobody is displaced.
    for s in [&first, &second, &third] {
        ok_unrotated(&cookie_session(&app, &s.token).await);
    }
    assert_eq!(live_sessions(&app, &user_id).await.len(), 3);

    // The first was just used again: the second is now the least recently used.
    app.advance(1);
    ok_unrotated(&cookie_session(&app, &first.token).await);
    app.advance(1);
    let fourth = login("Phone/7", "203.0.113.9:4444").await;

    let res = cookie_session(&app, &second.token).await;
    let p = res.problem(StatusCode::UNAUTHORIZED, "displaced");
    assert_eq!(p["ended_at"], at(4), "{p}");
    assert_eq!(
        p["displaced_by"],
        json!({ "user_agent": "Phone/7", "ip": "203.0.113.9" })
    );
    // Told the same way as a bearer token, and again on the next try.
    let res = bearer_session(&app, &second.token).await;
    let p = bearer_refused(&res, "displaced");
    assert_eq!(p["displaced_by"]["ip"], "203.0.113.9");
    for s in [&first, &third, &fourth] {
        ok_unrotated(&cookie_session(&app, &s.token).await);
    }
    let live: HashSet<String> = live_sessions(&app, &user_id).await.into_iter().collect();
    let expected: HashSet<String> = [&first, &third, &fourth]
        .iter()
        .map(|s| s.session_id())
        .collect();
    assert_eq!(live, expected);

    // Other rejections carry no `displaced_by`.
    let res = Req::post("/v1/logout").browser(&third).send(&app).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    let p = cookie_session(&app, &third.token)
        .await
        .problem(StatusCode::UNAUTHORIZED, "logged_out");
    assert!(p.get("displaced_by").is_none(), "{p}");
}

#[tokio::test]
async fn a_displaced_token_session_is_told_at_refresh_and_with_its_access_token() {
    let app = TestApp::with_extra(EVICT_TWO);
    app.create_user("alice", PASSWORD).await;
    let first = app.token_login("alice", PASSWORD).await;
    app.advance(1);
    let second = app.token_login("alice", PASSWORD).await;
    app.advance(1);
    // A cookie login counts against the same limit and displaces the first.
    let res = login_from("alice", PASSWORD, "Browser/2", "192.0.2.10:1234")
        .send(&app)
        .await;
    let cookie = Login::from(res);

    let res = app.refresh(&first.refresh).await;
    let e = res.oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "displaced");
    assert_eq!(e["ended_at"], at(2));
    assert_eq!(
        e["displaced_by"],
        json!({ "user_agent": "Browser/2", "ip": "192.0.2.10" })
    );
    let p = bearer_refused(&bearer_session(&app, &first.access).await, "displaced");
    assert_eq!(p["displaced_by"]["user_agent"], "Browser/2");

    // The others live on.
    let _ = Grant::from(app.refresh(&second.refresh).await);
    ok_unrotated(&cookie_session(&app, &cookie.token).await);
}

#[tokio::test]
async fn a_sidecar_login_displaces_in_the_name_of_the_client_it_names() {
    let app = TestApp::with_extra(EVICT_TWO);
    let mut tokens = Vec::new();
    for _ in 0..2 {
        let res = sidecar_req("app-user-1").send(&app).await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
        tokens.push(res.json()["session_token"].as_str().unwrap().to_owned());
        app.advance(1);
    }
    let res = Req::post("/v1/admin/sessions")
        .bearer(ADMIN_TOKEN)
        .header("user-agent", "the-app-server/1")
        .peer("10.0.0.1:9000")
        .json(json!({ "user_id": "app-user-1", "user_agent": "Safari/17", "ip": "2001:db8::7" }))
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let p = bearer_refused(&bearer_session(&app, &tokens[0]).await, "displaced");
    assert_eq!(
        p["displaced_by"],
        json!({ "user_agent": "Safari/17", "ip": "2001:db8::7" })
    );
    assert_eq!(
        bearer_session(&app, &tokens[1]).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn reject_new_refuses_every_kind_of_login_until_a_session_ends() {
    let app = TestApp::with_extra(REJECT_TWO);
    let user_id = app.create_user("alice", PASSWORD).await;
    let first = app.login("alice", PASSWORD).await;
    let tokens = app.token_login("alice", PASSWORD).await;

    // At the limit: the cookie login, the password grant and a sidecar session
    // are all refused.
    let res = login_from("alice", PASSWORD, "Browser/3", "192.0.2.1:1")
        .send(&app)
        .await;
    let p = res.problem(StatusCode::CONFLICT, "session_limit_reached");
    assert!(res.set_cookie().is_none());
    assert!(p["detail"].as_str().unwrap().contains("Sign out"), "{p}");
    let res = token_login_req("alice", PASSWORD).send(&app).await;
    // The token endpoint answers in the RFC 6749 §5.2 form, so 400.
    res.oauth_error(
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "session_limit_reached",
    );
    let res = sidecar_req(&user_id).send(&app).await;
    res.problem(StatusCode::CONFLICT, "session_limit_reached");
    // A wrong password is still a wrong password, not a limit.
    let res = login_from("alice", "not the password", "Browser/3", "192.0.2.1:1")
        .send(&app)
        .await;
    res.problem(StatusCode::UNAUTHORIZED, "invalid_credentials");

    // The sessions held are untouched, and one of them can end the other.
    ok_unrotated(&cookie_session(&app, &first.token).await);
    assert_eq!(
        bearer_session(&app, &tokens.access).await.status,
        StatusCode::OK
    );
    let res = Req::delete(&format!("/v1/sessions/{}", tokens.session_id))
        .browser(&first)
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    assert_eq!(live_sessions(&app, &user_id).await.len(), 1);

    // Now there is room for exactly one more.
    let again = app.login("alice", PASSWORD).await;
    let res = token_login_req("alice", PASSWORD).send(&app).await;
    res.oauth_error(
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "session_limit_reached",
    );
    // Sign out everywhere else makes room too.
    let res = Req::post("/v1/sessions/revoke-others")
        .browser(&again)
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    let _ = Grant::from(token_login_req("alice", PASSWORD).send(&app).await);
    assert_eq!(live_sessions(&app, &user_id).await.len(), 2);

    // Signing in again from a browser that presents its live session replaces
    // that session (`superseded`), so it fits.
    let res = Req::post("/v1/login")
        .cookie(&again.token)
        .json(json!({ "username": "alice", "password": PASSWORD }))
        .send(&app)
        .await;
    let replaced = Login::from(res);
    cookie_session(&app, &again.token)
        .await
        .problem(StatusCode::UNAUTHORIZED, "superseded");
    ok_unrotated(&cookie_session(&app, &replaced.token).await);
    assert_eq!(live_sessions(&app, &user_id).await.len(), 2);
}

#[tokio::test]
async fn reject_new_counts_only_live_sessions() {
    let app = TestApp::with_extra(REJECT_TWO);
    app.create_user("alice", PASSWORD).await;
    app.login("alice", PASSWORD).await;
    app.login("alice", PASSWORD).await;
    app.advance(29);
    let res = Req::post("/v1/login")
        .json(json!({ "username": "alice", "password": PASSWORD }))
        .send(&app)
        .await;
    res.problem(StatusCode::CONFLICT, "session_limit_reached");
    // Both ended by their idle timeout (30m): they no longer count.
    app.advance(1);
    app.login("alice", PASSWORD).await;
}

// ----------------------------------------------- the limit under parallel logins

/// An app for the race: a router over some store, and what keeps the store alive.
struct RaceApp {
    router: Router,
    _data: Option<tempfile::TempDir>,
}

impl RaceApp {
    fn memory(extra: &str) -> RaceApp {
        let app = TestApp::with_extra(extra);
        RaceApp {
            router: app.router.clone(),
            _data: None,
        }
    }

    /// Over the embedded SQLite store that `sessionguard serve` uses.
    fn sqlite(extra: &str) -> RaceApp {
        let data = tempfile::tempdir().unwrap();
        let toml =
            format!("public_origin = \"{ORIGIN}\"\nadmin_token = \"{ADMIN_TOKEN}\"\n{extra}");
        let config = Config::from_toml(&toml, |_| None, &Overrides::default()).unwrap();
        let store = SqliteStore::open(data.path().join(DB_FILE)).unwrap();
        let clock = ManualClock::new(START);
        let keys = KeySet::generate(config.keys.algorithm, START);
        let state = AppState::with_keys(&config, store, clock, keys).unwrap();
        RaceApp {
            router: sessionguard_server::router(state),
            _data: Some(data),
        }
    }
}

/// Sends one request through `router`.
async fn call(router: &Router, req: Req) -> Resp {
    let res = router.clone().oneshot(req.build()).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    Resp {
        status,
        headers,
        body,
    }
}

async fn live_count(router: &Router, user_id: &str) -> usize {
    let req = Req::get(&format!("/v1/admin/users/{user_id}/sessions")).bearer(ADMIN_TOKEN);
    session_ids(&call(router, req).await).len()
}

const RACE_TASKS: usize = 16;
const RACE_ROUNDS: usize = 20;

/// 16 tasks × 20 rounds of simultaneous logins of one user against a profile
/// with `max_sessions = 2`, each round started together (a barrier). The first
/// round is password logins (cookie logins and password grants, half each); the
/// others are sidecar sessions, which skip the deliberately slow password hash
/// and so reach the store closest together. After every login the live count is
/// read: it never exceeds 2. With `reject_new` (and no time passing) exactly two logins succeed;
/// with `evict_oldest` all do, and every other session is displaced exactly once.
async fn race(app: RaceApp, reject_new: bool) {
    let router = app.router.clone();
    let res = call(
        &router,
        Req::post("/v1/admin/users")
            .bearer(ADMIN_TOKEN)
            .json(json!({ "username": "alice", "password": PASSWORD })),
    )
    .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let user_id: Arc<str> = res.json()["id"].as_str().unwrap().into();
    let succeeded = Arc::new(AtomicUsize::new(0));

    let barrier = Arc::new(tokio::sync::Barrier::new(RACE_TASKS));
    let mut tasks = Vec::new();
    for task in 0..RACE_TASKS {
        let router = router.clone();
        let user_id = Arc::clone(&user_id);
        let succeeded = Arc::clone(&succeeded);
        let barrier = Arc::clone(&barrier);
        tasks.push(tokio::spawn(async move {
            for round in 0..RACE_ROUNDS {
                let kind = if round == 0 { task % 2 } else { 2 };
                barrier.wait().await;
                let (req, ok, refused) = match kind {
                    0 => (
                        Req::post("/v1/login")
                            .json(json!({ "username": "alice", "password": PASSWORD })),
                        StatusCode::OK,
                        StatusCode::CONFLICT,
                    ),
                    1 => (
                        token_login_req("alice", PASSWORD),
                        StatusCode::OK,
                        StatusCode::BAD_REQUEST,
                    ),
                    _ => (
                        sidecar_req(&user_id),
                        StatusCode::CREATED,
                        StatusCode::CONFLICT,
                    ),
                };
                let res = call(&router, req).await;
                if res.status == ok {
                    succeeded.fetch_add(1, Ordering::SeqCst);
                } else {
                    assert!(reject_new, "evict_oldest refused a login: {}", res.text());
                    assert_eq!(res.status, refused, "{}", res.text());
                    assert_eq!(res.json()["code"], "session_limit_reached");
                }
                let live = live_count(&router, &user_id).await;
                assert!(
                    live <= 2,
                    "{live} live sessions (task {task}, round {round})"
                );
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }

    let total = RACE_TASKS * RACE_ROUNDS;
    assert_eq!(live_count(&router, &user_id).await, 2);
    let succeeded = succeeded.load(Ordering::SeqCst);
    let req =
        Req::get(&format!("/v1/admin/events?user_id={user_id}&limit=1000")).bearer(ADMIN_TOKEN);
    let res = call(&router, req).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let mut counts = BTreeMap::new();
    for e in res.json()["events"].as_array().unwrap() {
        *counts
            .entry(e["event"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    let count = |k: &str| counts.get(k).copied().unwrap_or(0);
    if reject_new {
        assert_eq!(succeeded, 2);
        assert_eq!(count("login_refused"), total - 2, "{counts:?}");
        assert_eq!(count("displaced"), 0, "{counts:?}");
    } else {
        assert_eq!(succeeded, total);
        assert_eq!(count("displaced"), total - 2, "{counts:?}");
        assert_eq!(count("login_refused"), 0, "{counts:?}");
    }
    assert_eq!(count("login_succeeded"), succeeded, "{counts:?}");
}

/// `policy` for the race: 16 simultaneous password logins of one user from one
/// client are more than the password throttle lets through at once (it counts
/// each before its check), so the race, which is about the session limit,
/// raises that count.
fn race_config(policy: &str) -> String {
    policy.replacen("[policy]\n", "[policy]\nthrottle_failures = 100\n", 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_logins_never_exceed_the_limit_with_evict_oldest_in_memory() {
    race(RaceApp::memory(&race_config(EVICT_TWO)), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_logins_never_exceed_the_limit_with_reject_new_in_memory() {
    race(RaceApp::memory(&race_config(REJECT_TWO)), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_logins_never_exceed_the_limit_with_evict_oldest_on_sqlite() {
    race(RaceApp::sqlite(&race_config(EVICT_TWO)), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_logins_never_exceed_the_limit_with_reject_new_on_sqlite() {
    race(RaceApp::sqlite(&race_config(REJECT_TWO)), true).await;
}

#[tokio::test]
async fn out_of_the_box_ten_sessions_live_and_the_eleventh_login_displaces_the_oldest() {
    // The default configuration: no [policy] at all.
    let app = TestApp::new();
    let user_id = app.create_user("alice", PASSWORD).await;
    let mut logins = Vec::new();
    for i in 0..10 {
        app.advance(1);
        let ua = format!("Device/{i}");
        let res = login_from("alice", PASSWORD, &ua, "198.51.100.7:5000")
            .send(&app)
            .await;
        logins.push(Login::from(res));
    }
    // Ten at once are within the limit: all live.
    assert_eq!(live_sessions(&app, &user_id).await.len(), 10);
    for s in &logins {
        ok_unrotated(&cookie_session(&app, &s.token).await);
    }

    // The eleventh displaces the least recently used, whose holder is told why.
    app.advance(1);
    ok_unrotated(&cookie_session(&app, &logins[0].token).await);
    app.advance(1);
    let res = login_from("alice", PASSWORD, "Phone/11", "203.0.113.11:4000")
        .send(&app)
        .await;
    let eleventh = Login::from(res);
    let p = cookie_session(&app, &logins[1].token)
        .await
        .problem(StatusCode::UNAUTHORIZED, "displaced");
    assert_eq!(
        p["displaced_by"],
        json!({ "user_agent": "Phone/11", "ip": "203.0.113.11" })
    );
    let live: HashSet<String> = live_sessions(&app, &user_id).await.into_iter().collect();
    assert_eq!(live.len(), 10);
    assert!(live.contains(&eleventh.session_id()));
    assert!(live.contains(&logins[0].session_id()));
    assert!(!live.contains(&logins[1].session_id()));
}

// ------------------------------------------------------------------- step-up

#[tokio::test]
async fn elevate_with_a_cookie_sets_a_new_cookie_and_ends_the_old_one() {
    let app = TestApp::new();
    let login = app.alice().await;
    assert_eq!(login.body["step_up_expires_at"], at(5));
    app.advance(7);

    let res = elevate_browser(&login, PASSWORD).send(&app).await;
    let (token, body) = ok_rotated(&res, &login.token);
    assert_eq!(body["session_id"], login.session_id().as_str());
    assert_eq!(body["step_up_expires_at"], at(12));
    assert_eq!(body["csrf_token"], login.csrf().as_str(), "CSRF token kept");
    assert!(body.get("session_token").is_none(), "{body}");

    // The old cookie is dead at once; the new one works, same session.
    let p = cookie_session(&app, &login.token)
        .await
        .problem(StatusCode::UNAUTHORIZED, "privilege_changed");
    assert_eq!(p["ended_at"], at(7));
    let now = ok_unrotated(&cookie_session(&app, &token).await);
    assert_eq!(now["session_id"], login.session_id().as_str());
    assert_eq!(now["step_up_expires_at"], at(12));
    // It needs the CSRF token like any cookie-authenticated change.
    let res = Req::post("/v1/session/elevate")
        .cookie(&token)
        .header("sec-fetch-site", "same-origin")
        .json(json!({ "password": PASSWORD }))
        .send(&app)
        .await;
    res.problem(StatusCode::FORBIDDEN, "csrf_token_invalid");
}

#[tokio::test]
async fn elevate_with_a_bearer_session_token_returns_the_new_token_in_the_body() {
    let app = TestApp::new();
    let login = app.alice().await;
    app.advance(6);
    let res = Req::post("/v1/session/elevate")
        .bearer(&login.token)
        .json(json!({ "password": PASSWORD }))
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert!(res.set_cookie().is_none(), "bearer clients get no cookie");
    let body = res.json();
    let token = body["session_token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("sgs_"));
    assert_ne!(token, login.token);
    assert_eq!(body["step_up_expires_at"], at(11));

    let p = bearer_refused(
        &bearer_session(&app, &login.token).await,
        "privilege_changed",
    );
    assert_eq!(p["ended_at"], at(6));
    let res = bearer_session(&app, &token).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    // The elevated session may now create an API token.
    let res = Req::post("/v1/api-tokens")
        .bearer(&token)
        .json(json!({ "name": "ci" }))
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
}

#[tokio::test]
async fn elevate_with_an_access_token_returns_a_new_access_token() {
    let app = TestApp::new();
    app.create_user("alice", PASSWORD).await;
    let first = app.token_login("alice", PASSWORD).await;
    app.advance(6);
    // Access tokens live 5m: a refresh gives a live one, of a session too old
    // for sensitive actions.
    let grant = Grant::from(app.refresh(&first.refresh).await);
    let res = Req::post("/v1/api-tokens")
        .bearer(&grant.access)
        .json(json!({ "name": "ci" }))
        .send(&app)
        .await;
    res.problem(StatusCode::FORBIDDEN, "step_up_required");
    // (An access token issued in the same second as a rotation still passes:
    // `iat` has whole seconds.)
    app.advance_secs(1);
    let res = Req::post("/v1/session/elevate")
        .bearer(&grant.access)
        .json(json!({ "password": PASSWORD }))
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert!(res.set_cookie().is_none());
    let body = res.json();
    let access = body["access_token"].as_str().unwrap().to_owned();
    assert_ne!(access, grant.access);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 300);
    assert_eq!(body["session_id"], grant.session_id.as_str());
    assert_eq!(body["step_up_expires_at"], at_secs(11 * 60 + 1));
    assert!(body.get("session_token").is_none(), "{body}");
    assert!(body.get("refresh_token").is_none(), "{body}");

    // Access tokens issued before the step-up are refused from now on.
    let p = bearer_refused(
        &bearer_session(&app, &grant.access).await,
        "privilege_changed",
    );
    assert_eq!(p["ended_at"], at_secs(6 * 60 + 1));
    let res = Req::post("/v1/api-tokens")
        .bearer(&access)
        .json(json!({ "name": "ci" }))
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    // The refresh token still works, and its access tokens are accepted.
    app.advance_secs(1);
    let next = Grant::from(app.refresh(&grant.refresh).await);
    assert_eq!(
        bearer_session(&app, &next.access).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn elevate_with_a_wrong_password_is_refused_and_changes_nothing() {
    let app = TestApp::new();
    let login = app.alice().await;
    app.advance(6);
    for password in ["not the password", ""] {
        let res = elevate_browser(&login, password).send(&app).await;
        res.problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
        assert!(res.set_cookie().is_none());
    }
    // Still the same token, still not elevated.
    let body = ok_unrotated(&cookie_session(&app, &login.token).await);
    assert_eq!(body["step_up_expires_at"], at(5));
    let res = change_password_browser(&login).send(&app).await;
    res.problem(StatusCode::FORBIDDEN, "step_up_required");

    // A session of a sidecar user (no password here) cannot step up.
    let res = Req::post("/v1/admin/sessions")
        .bearer(ADMIN_TOKEN)
        .json(json!({ "user_id": "app-user-1" }))
        .send(&app)
        .await;
    let token = res.json()["session_token"].as_str().unwrap().to_owned();
    let res = Req::post("/v1/session/elevate")
        .bearer(&token)
        .json(json!({ "password": PASSWORD }))
        .send(&app)
        .await;
    res.problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    // And without a session there is nothing to elevate.
    let res = Req::post("/v1/session/elevate")
        .json(json!({ "password": PASSWORD }))
        .send(&app)
        .await;
    res.problem(StatusCode::UNAUTHORIZED, "invalid_token");
}

#[tokio::test]
async fn password_change_needs_a_recent_sign_in() {
    let app = TestApp::new();
    app.create_user("alice", PASSWORD).await;

    // Within step_up_ttl (5m) of the login: allowed.
    let fresh = app.login("alice", PASSWORD).await;
    app.advance_secs(4 * 60 + 59);
    let res = change_password_browser(&fresh).send(&app).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());

    // 5m after the login: refused, and the session lives on.
    let stale = app.login("alice", NEW_PASSWORD).await;
    app.advance(5);
    let res = Req::post("/v1/password")
        .browser(&stale)
        .json(json!({ "current_password": NEW_PASSWORD, "new_password": PASSWORD }))
        .send(&app)
        .await;
    let p = res.problem(StatusCode::FORBIDDEN, "step_up_required");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("/v1/session/elevate")
    );
    ok_unrotated(&cookie_session(&app, &stale.token).await);
    // The refusal comes before the password check: a wrong one is not probed.
    let res = Req::post("/v1/password")
        .browser(&stale)
        .json(json!({ "current_password": "wrong", "new_password": PASSWORD }))
        .send(&app)
        .await;
    res.problem(StatusCode::FORBIDDEN, "step_up_required");

    // After a step-up: allowed.
    let res = elevate_browser(&stale, NEW_PASSWORD).send(&app).await;
    let (token, _) = ok_rotated(&res, &stale.token);
    let elevated = login_with(token, &stale.csrf());
    let res = Req::post("/v1/password")
        .browser(&elevated)
        .json(json!({ "current_password": NEW_PASSWORD, "new_password": PASSWORD }))
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert!(res.session_cookie().is_some());
}

#[tokio::test]
async fn api_token_creation_needs_a_recent_sign_in() {
    let app = TestApp::new();
    let login = app.alice().await;
    let create = |token: &str| {
        Req::post("/v1/api-tokens")
            .bearer(token)
            .json(json!({ "name": "deploy" }))
    };
    let res = create(&login.token).send(&app).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());

    app.advance(5);
    let res = create(&login.token).send(&app).await;
    res.problem(StatusCode::FORBIDDEN, "step_up_required");
    // A token session is held to the same rule: fresh, then not.
    let grant = app.token_login("alice", PASSWORD).await;
    let res = create(&grant.access).send(&app).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    app.advance(5);
    // (Access tokens live 5m: a refresh gives a live one, of the same session.)
    let next = Grant::from(app.refresh(&grant.refresh).await);
    let res = create(&next.access).send(&app).await;
    res.problem(StatusCode::FORBIDDEN, "step_up_required");
    // Listing needs no step-up.
    let res = Req::get("/v1/api-tokens")
        .bearer(&login.token)
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.json()["api_tokens"].as_array().unwrap().len(), 2);

    // Elevated: allowed again, through the cookie flow this time.
    let res = Req::post("/v1/session/elevate")
        .bearer(&login.token)
        .json(json!({ "password": PASSWORD }))
        .send(&app)
        .await;
    let token = res.json()["session_token"].as_str().unwrap().to_owned();
    let elevated = login_with(token, &login.csrf());
    let res = Req::post("/v1/api-tokens")
        .browser(&elevated)
        .json(json!({ "name": "deploy" }))
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
}

#[tokio::test]
async fn an_elevation_lasts_step_up_ttl() {
    // step_up_ttl from [policy] overrides the profile's 5m.
    let app = TestApp::with_extra("[policy]\nstep_up_ttl = \"10m\"\n");
    let login = app.alice().await;
    assert_eq!(login.body["step_up_expires_at"], at(10));
    app.advance(20);
    let res = elevate_browser(&login, PASSWORD).send(&app).await;
    let (token, body) = ok_rotated(&res, &login.token);
    assert_eq!(body["step_up_expires_at"], at(30));
    let elevated = login_with(token, &login.csrf());
    let guarded = || Req::get("/v1/session?require=step_up").cookie(&elevated.token);

    app.advance_secs(10 * 60 - 1);
    assert_eq!(guarded().send(&app).await.status, StatusCode::OK);
    app.advance_secs(1);
    guarded()
        .send(&app)
        .await
        .problem(StatusCode::FORBIDDEN, "step_up_required");
    let res = Req::post("/v1/api-tokens")
        .browser(&elevated)
        .json(json!({ "name": "late" }))
        .send(&app)
        .await;
    res.problem(StatusCode::FORBIDDEN, "step_up_required");
}

#[tokio::test]
async fn require_step_up_guards_a_page() {
    let app = TestApp::new();
    let login = app.alice().await;
    let guarded = |token: &str| Req::get("/v1/session?require=step_up").bearer(token);

    let res = guarded(&login.token).send(&app).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.json()["session_id"], login.session_id().as_str());
    app.advance(5);
    guarded(&login.token)
        .send(&app)
        .await
        .problem(StatusCode::FORBIDDEN, "step_up_required");
    // Without the requirement the same session is fine.
    let res = bearer_session(&app, &login.token).await;
    assert_eq!(res.status, StatusCode::OK);
    // Unknown requirements are refused, not ignored.
    for query in [
        "require=",
        "require=STEP_UP",
        "require=mfa",
        "require=step_up%00",
    ] {
        let res = Req::get(&format!("/v1/session?{query}"))
            .bearer(&login.token)
            .send(&app)
            .await;
        let p = res.problem(StatusCode::BAD_REQUEST, "invalid_query");
        assert!(p["detail"].as_str().unwrap().contains("require"), "{p}");
    }
    let res = Req::post("/v1/session/elevate")
        .bearer(&login.token)
        .json(json!({ "password": PASSWORD }))
        .send(&app)
        .await;
    let token = res.json()["session_token"].as_str().unwrap().to_owned();
    assert_eq!(guarded(&token).send(&app).await.status, StatusCode::OK);
}

// ------------------------------------------------------------------- renewal

#[tokio::test]
async fn renewal_replaces_the_cookie_after_the_interval_and_the_old_one_overlaps() {
    let app = TestApp::with_extra("[policy]\nrenewal_interval = \"10m\"\n");
    let login = app.alice().await;
    let csrf = login.csrf();

    // Before the interval: the same cookie.
    app.advance_secs(10 * 60 - 1);
    ok_unrotated(&cookie_session(&app, &login.token).await);
    app.advance_secs(1);
    // A status check never renews (it is no activity).
    let res = Req::get("/v1/session/status")
        .cookie(&login.token)
        .send(&app)
        .await;
    ok_unrotated(&res);
    // The first real request after it: a new cookie, same session, same CSRF
    // token, and the idle deadline moved.
    let (renewed, body) = ok_rotated(&cookie_session(&app, &login.token).await, &login.token);
    assert_eq!(body["session_id"], login.session_id().as_str());
    assert_eq!(body["csrf_token"], csrf.as_str());
    assert_eq!(body["idle_expires_at"], at(40));
    ok_unrotated(&cookie_session(&app, &renewed).await);

    // Within the overlap (30s) the old cookie works, and is not renewed again.
    app.advance_secs(29);
    let body = ok_unrotated(&cookie_session(&app, &login.token).await);
    assert_eq!(body["session_id"], login.session_id().as_str());
    // The new cookie passes the CSRF check with the session's unchanged token.
    let res = Req::post("/v1/sessions/revoke-others")
        .browser(&login_with(renewed.clone(), &csrf))
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());

    // Then it is refused with `renewed`, from the end of the overlap.
    app.advance_secs(1);
    let p = cookie_session(&app, &login.token)
        .await
        .problem(StatusCode::UNAUTHORIZED, "renewed");
    assert_eq!(p["ended_at"], at_secs(10 * 60 + 30));
    ok_unrotated(&cookie_session(&app, &renewed).await);

    // And again one interval later; a refused request still carries the new
    // cookie, so the browser does not lose its session.
    app.advance(10);
    let res = Req::post("/v1/api-tokens")
        .browser(&login_with(renewed.clone(), &csrf))
        .json(json!({ "name": "x" }))
        .send(&app)
        .await;
    res.problem(StatusCode::FORBIDDEN, "step_up_required");
    let third = res.session_cookie().expect("the renewed cookie");
    assert_ne!(third, renewed);
    ok_unrotated(&cookie_session(&app, &third).await);
    ok_unrotated(&cookie_session(&app, &renewed).await);
    app.advance_secs(30);
    cookie_session(&app, &renewed)
        .await
        .problem(StatusCode::UNAUTHORIZED, "renewed");
    // A token two rotations back is refused too (only the last replaced token
    // is remembered, so it is no longer told why).
    let res = cookie_session(&app, &login.token).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{}", res.text());
}

#[tokio::test]
async fn the_overlap_follows_renewal_overlap_and_sensitive_renews_hourly() {
    let app = TestApp::with_extra("[policy]\nprofile = \"sensitive\"\nrenewal_overlap = \"2m\"\n");
    let login = app.alice().await;
    // Kept alive (idle 15m) until the profile's renewal interval, 1h.
    for _ in 0..5 {
        app.advance(10);
        ok_unrotated(&cookie_session(&app, &login.token).await);
    }
    app.advance(10);
    let (renewed, _) = ok_rotated(&cookie_session(&app, &login.token).await, &login.token);
    app.advance_secs(119);
    ok_unrotated(&cookie_session(&app, &login.token).await);
    app.advance_secs(1);
    let p = cookie_session(&app, &login.token)
        .await
        .problem(StatusCode::UNAUTHORIZED, "renewed");
    assert_eq!(p["ended_at"], at(62));
    ok_unrotated(&cookie_session(&app, &renewed).await);
}

#[tokio::test]
async fn without_a_renewal_interval_the_cookie_is_never_replaced() {
    // `standard`: renewal off.
    let app = TestApp::new();
    let login = app.alice().await;
    for _ in 0..35 {
        app.advance(20);
        ok_unrotated(&cookie_session(&app, &login.token).await);
    }
}

#[tokio::test]
async fn bearer_session_tokens_are_never_renewed() {
    let app = TestApp::with_extra("[policy]\nrenewal_interval = \"10m\"\n");
    let login = app.alice().await;
    for _ in 0..6 {
        app.advance(10);
        let res = bearer_session(&app, &login.token).await;
        let body = ok_unrotated(&res);
        assert!(body.get("session_token").is_none(), "{body}");
    }
    // An hour on, the token is still the current one: a status check works and
    // nothing says `renewed`.
    let res = Req::get("/v1/session/status")
        .bearer(&login.token)
        .send(&app)
        .await;
    ok_unrotated(&res);
}

// ------------------------------------------------- profiles and roles (admin)

#[tokio::test]
async fn the_built_in_profiles_hold_sessions_to_their_own_timeouts() {
    let app = TestApp::new();
    let users = [
        ("stan", "standard"),
        ("sena", "sensitive"),
        ("ada", "admin"),
    ];
    for (name, profile) in users {
        let id = app.create_user(name, PASSWORD).await;
        let res = update_user(&app, &id, json!({ "profile": profile })).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    }
    // Sessions created after the assignment (so none is due for a rotation).
    app.advance(1);
    let mut logins = Vec::new();
    for (name, _) in users {
        logins.push(app.login(name, PASSWORD).await);
    }
    let [standard, sensitive, admin] = &logins[..] else {
        unreachable!()
    };
    for (login, profile, idle, absolute) in [
        (standard, "standard", 30, 12 * 60),
        (sensitive, "sensitive", 15, 12 * 60),
        (admin, "admin", 10, 8 * 60),
    ] {
        assert_eq!(login.body["profile"], profile);
        assert_eq!(login.body["idle_expires_at"], at(1 + idle), "{profile}");
        assert_eq!(
            login.body["absolute_expires_at"],
            at(1 + absolute),
            "{profile}"
        );
        assert_eq!(login.body["step_up_expires_at"], at(6), "{profile}");
    }
    // Ten idle minutes end `admin`; fifteen end `sensitive`; thirty `standard`.
    app.advance(10);
    cookie_session(&app, &admin.token)
        .await
        .problem(StatusCode::UNAUTHORIZED, "idle_timeout");
    app.advance_secs(5 * 60 - 1);
    ok_unrotated(&cookie_session(&app, &sensitive.token).await);
    app.advance_secs(15 * 60);
    cookie_session(&app, &sensitive.token)
        .await
        .problem(StatusCode::UNAUTHORIZED, "idle_timeout");
    ok_unrotated(&cookie_session(&app, &standard.token).await);

    // `admin` renews its token every 30 minutes.
    let admin = app.login("ada", PASSWORD).await;
    for _ in 0..5 {
        app.advance(5);
        ok_unrotated(&cookie_session(&app, &admin.token).await);
    }
    app.advance(5);
    ok_rotated(&cookie_session(&app, &admin.token).await, &admin.token);

    // A `[profiles.admin]` table overrides the built-in values.
    let app = TestApp::with_extra("[profiles.admin]\nidle_timeout = \"5m\"\n");
    let id = app.create_user("ada", PASSWORD).await;
    let res = update_user(&app, &id, json!({ "profile": "admin" })).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    app.advance(1);
    let login = app.login("ada", PASSWORD).await;
    assert_eq!(login.body["idle_expires_at"], at(6));
    assert_eq!(login.body["absolute_expires_at"], at(1 + 8 * 60));
}

#[tokio::test]
async fn admin_shows_and_changes_a_users_profile_and_roles() {
    let app = TestApp::new();
    let id = app.create_user("alice", PASSWORD).await;
    let view = |profile: &str, assigned: bool, roles: Value| {
        json!({
            "user_id": id, "username": "alice", "profile": profile,
            "profile_assigned": assigned, "roles": roles,
        })
    };
    let res = Req::get(&format!("/v1/admin/users/{id}"))
        .bearer(ADMIN_TOKEN)
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.json(), view("standard", false, json!([])));

    // Roles come back sorted and without duplicates.
    let res = update_user(
        &app,
        &id,
        json!({ "profile": "admin", "roles": ["ops", "admin", "ops"] }),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.json(), view("admin", true, json!(["admin", "ops"])));
    // An absent field is kept.
    let res = update_user(&app, &id, json!({ "roles": ["auditor"] })).await;
    assert_eq!(res.json(), view("admin", true, json!(["auditor"])));
    let res = update_user(&app, &id, json!({})).await;
    assert_eq!(res.json(), view("admin", true, json!(["auditor"])));
    // `null` returns the user to the default profile; an explicit default is
    // an assignment.
    let res = update_user(&app, &id, json!({ "profile": null })).await;
    assert_eq!(res.json(), view("standard", false, json!(["auditor"])));
    let res = update_user(&app, &id, json!({ "profile": "standard", "roles": [] })).await;
    assert_eq!(res.json(), view("standard", true, json!([])));
    let res = Req::get(&format!("/v1/admin/users/{id}"))
        .bearer(ADMIN_TOKEN)
        .send(&app)
        .await;
    assert_eq!(res.json(), view("standard", true, json!([])));

    // Users of an app's own database (sidecar) have no username here.
    let res = update_user(&app, "app-user-42", json!({ "profile": "sensitive" })).await;
    assert_eq!(
        res.json(),
        json!({
            "user_id": "app-user-42", "profile": "sensitive",
            "profile_assigned": true, "roles": [],
        })
    );

    // The default profile is the configured one.
    let app = TestApp::with_extra(REJECT_TWO);
    let res = Req::get("/v1/admin/users/app-user-1")
        .bearer(ADMIN_TOKEN)
        .send(&app)
        .await;
    assert_eq!(res.json()["profile"], "partners");
    let res = update_user(&app, "app-user-1", json!({ "profile": "partners" })).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
}

#[tokio::test]
async fn admin_user_updates_are_validated_and_change_nothing_when_refused() {
    let app = TestApp::new();
    let id = app.create_user("alice", PASSWORD).await;
    let res = update_user(&app, &id, json!({ "roles": ["ops"] })).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    // Logged in after the change: nothing is pending for this session.
    app.advance_secs(1);
    let login = app.login("alice", PASSWORD).await;
    let before = Req::get(&format!("/v1/admin/users/{id}"))
        .bearer(ADMIN_TOKEN)
        .send(&app)
        .await
        .json();

    for profile in ["nope", "Admin", "", "admin "] {
        let res = update_user(&app, &id, json!({ "profile": profile })).await;
        res.problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_profile");
    }
    let too_many: Vec<String> = (0..33).map(|i| format!("r{i}")).collect();
    for roles in [
        json!(["has space"]),
        json!([""]),
        json!(["x".repeat(65)]),
        json!(["é"]),
        json!(too_many),
    ] {
        let res = update_user(&app, &id, json!({ "roles": roles })).await;
        res.problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_roles");
    }
    // A valid profile with invalid roles changes neither.
    let res = update_user(&app, &id, json!({ "profile": "admin", "roles": ["a b"] })).await;
    res.problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_roles");
    for body in [
        json!({ "role": ["ops"] }),
        json!({ "profile": 5 }),
        json!({ "roles": "ops" }),
        json!(["ops"]),
    ] {
        let res = update_user(&app, &id, body).await;
        res.problem(StatusCode::UNPROCESSABLE_ENTITY, "malformed_request");
    }
    let res = Req::post(&format!("/v1/admin/users/{id}"))
        .bearer(ADMIN_TOKEN)
        .raw("text/plain", "{}")
        .send(&app)
        .await;
    res.problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    for bad_id in ["%01", &"u".repeat(129)] {
        let res = update_user(&app, bad_id, json!({ "roles": [] })).await;
        res.problem(StatusCode::BAD_REQUEST, "invalid_user_id");
        let res = Req::get(&format!("/v1/admin/users/{bad_id}"))
            .bearer(ADMIN_TOKEN)
            .send(&app)
            .await;
        res.problem(StatusCode::BAD_REQUEST, "invalid_user_id");
    }
    // Only the admin may.
    for req in [
        Req::post(&format!("/v1/admin/users/{id}")).json(json!({ "profile": "admin" })),
        Req::post(&format!("/v1/admin/users/{id}"))
            .bearer(&login.token)
            .json(json!({ "profile": "admin" })),
        Req::get(&format!("/v1/admin/users/{id}")).bearer(&login.token),
    ] {
        let res = req.send(&app).await;
        res.problem(StatusCode::UNAUTHORIZED, "admin_unauthorized");
    }

    let after = Req::get(&format!("/v1/admin/users/{id}"))
        .bearer(ADMIN_TOKEN)
        .send(&app)
        .await
        .json();
    assert_eq!(after, before);
    // Nor was the session rotated.
    app.advance(1);
    ok_unrotated(&cookie_session(&app, &login.token).await);
}

#[tokio::test]
async fn a_profile_change_rotates_cookie_sessions_which_then_follow_the_new_profile() {
    let app = TestApp::new();
    let alice_id = app.create_user("alice", PASSWORD).await;
    app.create_user("bob", PASSWORD).await;
    let alice = app.login("alice", PASSWORD).await;
    let bob = app.login("bob", PASSWORD).await;
    let body = ok_unrotated(&cookie_session(&app, &alice.token).await);
    assert_eq!(body["roles"], json!([]));
    assert!(body.get("profile").is_none(), "default profile: {body}");

    app.advance(1);
    let res = update_user(
        &app,
        &alice_id,
        json!({ "profile": "admin", "roles": ["admin"] }),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());

    // The next request rotates the cookie; the session now follows `admin`
    // (idle 10m, absolute 8h from login) and shows the new roles.
    app.advance(1);
    let (token, body) = ok_rotated(&cookie_session(&app, &alice.token).await, &alice.token);
    assert_eq!(body["session_id"], alice.session_id().as_str());
    assert_eq!(body["profile"], "admin");
    assert_eq!(body["roles"], json!(["admin"]));
    assert_eq!(body["idle_expires_at"], at(12));
    assert_eq!(body["absolute_expires_at"], at(8 * 60));
    assert_eq!(body["csrf_token"], alice.csrf().as_str());
    // The new cookie is not rotated again.
    ok_unrotated(&cookie_session(&app, &token).await);
    // Bob's sessions are not touched.
    let body = ok_unrotated(&cookie_session(&app, &bob.token).await);
    assert_eq!(body["roles"], json!([]));

    // The old cookie works for the overlap (30s), then says `privilege_changed`.
    app.advance_secs(29);
    ok_unrotated(&cookie_session(&app, &alice.token).await);
    app.advance_secs(1);
    let p = cookie_session(&app, &alice.token)
        .await
        .problem(StatusCode::UNAUTHORIZED, "privilege_changed");
    assert_eq!(p["ended_at"], at_secs(2 * 60 + 30));

    // Ten idle minutes end the admin session; bob (standard, idle 30m) lives on.
    app.advance_secs(10 * 60 - 30);
    let p = cookie_session(&app, &token)
        .await
        .problem(StatusCode::UNAUTHORIZED, "idle_timeout");
    assert_eq!(p["ended_at"], at(12));
    ok_unrotated(&cookie_session(&app, &bob.token).await);

    // New logins follow the profile too: admin allows one session.
    let first = app.login("alice", PASSWORD).await;
    assert_eq!(first.body["profile"], "admin");
    assert_eq!(first.body["idle_expires_at"], at(22));
    let second = app.login("alice", PASSWORD).await;
    cookie_session(&app, &first.token)
        .await
        .problem(StatusCode::UNAUTHORIZED, "displaced");
    ok_unrotated(&cookie_session(&app, &second.token).await);
}

#[tokio::test]
async fn a_profile_with_fewer_sessions_ends_the_least_recently_used_at_once() {
    let app = TestApp::new();
    let id = app.create_user("alice", PASSWORD).await;
    let first = app.login("alice", PASSWORD).await;
    app.advance(1);
    let second = app.login("alice", PASSWORD).await;
    app.advance(1);
    let third = app.login("alice", PASSWORD).await;
    app.advance(1);
    ok_unrotated(&cookie_session(&app, &first.token).await);
    assert_eq!(live_sessions(&app, &id).await.len(), 3);

    // `sensitive` allows three: nothing ends.
    let res = update_user(&app, &id, json!({ "profile": "sensitive" })).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(live_sessions(&app, &id).await.len(), 3);
    // `admin` allows one: the most recently used one stays.
    app.advance(1);
    let res = update_user(&app, &id, json!({ "profile": "admin" })).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(live_sessions(&app, &id).await, vec![first.session_id()]);
    for ended in [&second, &third] {
        let p = cookie_session(&app, &ended.token)
            .await
            .problem(StatusCode::UNAUTHORIZED, "privilege_changed");
        assert_eq!(p["ended_at"], at(4));
    }
    let (_, body) = ok_rotated(&cookie_session(&app, &first.token).await, &first.token);
    assert_eq!(body["profile"], "admin");
}

#[tokio::test]
async fn a_role_change_refuses_older_access_tokens_until_the_client_refreshes() {
    let app = TestApp::new();
    let id = app.create_user("alice", PASSWORD).await;
    let grant = app.token_login("alice", PASSWORD).await;
    let body = bearer_session(&app, &grant.access).await.json();
    assert_eq!(body["roles"], json!([]));

    app.advance(1);
    let res = update_user(&app, &id, json!({ "profile": "admin", "roles": ["ops"] })).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    app.advance_secs(1);
    let p = bearer_refused(
        &bearer_session(&app, &grant.access).await,
        "privilege_changed",
    );
    assert!(p["ended_at"].is_string(), "{p}");
    // Refused again: it stays refused.
    bearer_refused(
        &bearer_session(&app, &grant.access).await,
        "privilege_changed",
    );

    // A refresh gives a working token for the same session, now under `admin`.
    app.advance_secs(1);
    let next = Grant::from(app.refresh(&grant.refresh).await);
    assert_eq!(next.session_id, grant.session_id);
    let res = bearer_session(&app, &next.access).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let body = res.json();
    assert_eq!(body["roles"], json!(["ops"]));
    assert_eq!(body["profile"], "admin");

    // A client that refreshes before using its old token gets a working one too.
    let other = app.token_login("alice", PASSWORD).await;
    app.advance(1);
    let res = update_user(&app, &id, json!({ "roles": ["ops", "audit"] })).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    app.advance_secs(1);
    let fresh = Grant::from(app.refresh(&other.refresh).await);
    app.advance_secs(5);
    let res = bearer_session(&app, &fresh.access).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.json()["roles"], json!(["audit", "ops"]));
}

/// Bearer session tokens (`sgs_`), which sidecar apps use, are rotated by
/// `GET /v1/session` after a profile change: the new token comes in the body and
/// follows the new profile; the old one overlaps, then ends.
#[tokio::test]
async fn a_profile_change_also_holds_bearer_session_tokens_to_the_new_profile() {
    let app = TestApp::new();
    let res = sidecar_req("app-user-7").send(&app).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let token = res.json()["session_token"].as_str().unwrap().to_owned();
    app.advance(1);
    let res = update_user(&app, "app-user-7", json!({ "profile": "admin" })).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    // Other endpoints do not rotate a bearer token (the client would not see it).
    let res = Req::get("/v1/sessions").bearer(&token).send(&app).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    app.advance(1);
    let res = bearer_session(&app, &token).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert!(
        res.session_cookie().is_none(),
        "bearer clients get no cookie"
    );
    let body = res.json();
    assert_eq!(body["profile"], "admin");
    let new = body["session_token"]
        .as_str()
        .expect("a new token")
        .to_owned();
    assert_ne!(new, token);
    // The old token overlaps for 30 s, then is refused.
    app.advance_secs(29);
    let res = bearer_session(&app, &token).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    app.advance_secs(1);
    bearer_session(&app, &token)
        .await
        .problem(StatusCode::UNAUTHORIZED, "privilege_changed");
    // The new token is not rotated again, and follows `admin` (idle 10m).
    let res = bearer_session(&app, &new).await;
    assert!(res.json().get("session_token").is_none(), "{}", res.text());
    app.advance(11);
    bearer_session(&app, &new)
        .await
        .problem(StatusCode::UNAUTHORIZED, "idle_timeout");
}

/// A change made in the same instant (millisecond) as the session's token was
/// issued still rotates it.
#[tokio::test]
async fn a_profile_change_in_the_same_instant_as_a_login_still_rotates_the_session() {
    let app = TestApp::new();
    let id = app.create_user("alice", PASSWORD).await;
    let login = app.login("alice", PASSWORD).await;
    // No time passes between the login and the change.
    let res = update_user(&app, &id, json!({ "profile": "admin", "roles": ["ops"] })).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    app.advance(1);
    let res = cookie_session(&app, &login.token).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert!(
        res.session_cookie().is_some(),
        "not rotated, still under the old profile: {}",
        res.text()
    );
}

#[tokio::test]
async fn the_admin_profile_caps_api_token_lifetimes_at_30_days() {
    let app = TestApp::new();
    let id = app.create_user("alice", PASSWORD).await;
    let res = update_user(&app, &id, json!({ "profile": "admin" })).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    app.advance(1);
    let login = app.login("alice", PASSWORD).await;
    let create = |secs: u64| {
        Req::post("/v1/api-tokens")
            .bearer(&login.token)
            .json(json!({ "name": "ci", "expires_in": secs }))
    };
    let res = create(30 * 86_400 + 1).send(&app).await;
    res.problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_expiry");
    let res = create(30 * 86_400).send(&app).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    // `standard` allows 90 days.
    let bob = {
        app.create_user("bob", PASSWORD).await;
        app.login("bob", PASSWORD).await
    };
    let res = Req::post("/v1/api-tokens")
        .bearer(&bob.token)
        .json(json!({ "name": "ci", "expires_in": 90 * 86_400 }))
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
}

// ------------------------------------------------------------------ audit log

/// `GET /v1/admin/events` with `query`; asserts 200 and returns the page.
async fn admin_events(app: &TestApp, query: &str) -> Value {
    let res = Req::get(&format!("/v1/admin/events{query}"))
        .bearer(ADMIN_TOKEN)
        .send(app)
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    res.json()
}

/// `GET /v1/events` with the bearer `token` and `query`; asserts 200 and
/// returns the page.
async fn own_events(app: &TestApp, token: &str, query: &str) -> Value {
    let res = Req::get(&format!("/v1/events{query}"))
        .bearer(token)
        .send(app)
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    res.json()
}

fn events(page: &Value) -> &Vec<Value> {
    page["events"].as_array().unwrap()
}

fn codes(page: &Value) -> Vec<&str> {
    events(page)
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect()
}

/// One expected event: code, session (by index into the scenario's sessions),
/// user agent, IP, reason and time.
struct Expected {
    event: &'static str,
    session: Option<usize>,
    user_agent: Option<&'static str>,
    ip: Option<&'static str>,
    reason: Option<&'static str>,
    at: String,
}

#[tokio::test]
async fn the_audit_trail_of_a_scenario_through_both_event_endpoints() {
    let app = TestApp::with_extra(EVICT_TWO);
    let alice_id = app.create_user("alice", PASSWORD).await;
    app.create_user("bob", PASSWORD).await;
    let mut sessions: Vec<String> = Vec::new();

    // 0m: a browser login (session 0).
    let s0 = Login::from(
        login_from("alice", PASSWORD, "Firefox/1", "198.51.100.1:1000")
            .send(&app)
            .await,
    );
    sessions.push(s0.session_id());
    // 1m: a wrong password, and an unknown user.
    app.advance(1);
    let res = login_from("alice", "wrong password", "curl/8", "203.0.113.5:2000")
        .send(&app)
        .await;
    res.problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    let res = login_from("nobody", PASSWORD, "curl/8", "203.0.113.5:2000")
        .send(&app)
        .await;
    res.problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    // 2m: a password grant (session 1); 3m: a refresh; 3m10s: the replaced
    // refresh token again, from elsewhere.
    app.advance(1);
    let grant = Grant::from(
        token_login_req("alice", PASSWORD)
            .header("user-agent", "App/2")
            .peer("198.51.100.2:3000")
            .send(&app)
            .await,
    );
    sessions.push(grant.session_id.clone());
    app.advance(1);
    let refresh = |token: &str, ua: &str, peer: &str| {
        Req::post("/v1/token")
            .header("user-agent", ua)
            .peer(peer)
            .form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
    };
    let _ = Grant::from(
        refresh(&grant.refresh, "App/2", "198.51.100.2:3000")
            .send(&app)
            .await,
    );
    app.advance_secs(10);
    let res = refresh(&grant.refresh, "Thief/1", "192.0.2.66:4000")
        .send(&app)
        .await;
    res.oauth_error(
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "refresh_reuse_detected",
    );
    // 4m: another browser login (session 2); 5m: bob signs in.
    app.advance_secs(50);
    let s2 = Login::from(
        login_from("alice", PASSWORD, "Firefox/1", "198.51.100.1:1000")
            .send(&app)
            .await,
    );
    sessions.push(s2.session_id());
    app.advance(1);
    let bob = app.login("bob", PASSWORD).await;
    // 6m: a login from a phone displaces session 0 (the least recently used).
    app.advance(1);
    let s3 = Login::from(
        login_from("alice", PASSWORD, "Phone/3", "203.0.113.9:5000")
            .send(&app)
            .await,
    );
    sessions.push(s3.session_id());
    cookie_session(&app, &s0.token)
        .await
        .problem(StatusCode::UNAUTHORIZED, "displaced");
    // 7m: session 2 signs out.
    app.advance(1);
    let res = Req::post("/v1/logout")
        .browser(&s2)
        .header("user-agent", "Firefox/1")
        .peer("198.51.100.1:1000")
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    // 8m: the phone changes the password: every session ends, the phone gets a
    // new one (session 4).
    app.advance(1);
    let res = change_password_browser(&s3)
        .header("user-agent", "Phone/3")
        .peer("203.0.113.9:5000")
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let s4 = Login::from(res);
    sessions.push(s4.session_id());

    let (ff, ff_ip) = (Some("Firefox/1"), Some("198.51.100.1"));
    let (phone, phone_ip) = (Some("Phone/3"), Some("203.0.113.9"));
    let (app_ua, app_ip) = (Some("App/2"), Some("198.51.100.2"));
    let e = |event, session, user_agent, ip, reason, at| Expected {
        event,
        session,
        user_agent,
        ip,
        reason,
        at,
    };
    let expected = [
        e("login_succeeded", Some(0), ff, ff_ip, None, at(0)),
        e(
            "login_failed",
            None,
            Some("curl/8"),
            Some("203.0.113.5"),
            None,
            at(1),
        ),
        e("login_succeeded", Some(1), app_ua, app_ip, None, at(2)),
        e("refreshed", Some(1), app_ua, app_ip, None, at(3)),
        e(
            "refresh_reuse_detected",
            Some(1),
            Some("Thief/1"),
            Some("192.0.2.66"),
            Some("refresh_reuse_detected"),
            at_secs(190),
        ),
        e("login_succeeded", Some(2), ff, ff_ip, None, at(4)),
        e(
            "displaced",
            Some(0),
            phone,
            phone_ip,
            Some("displaced"),
            at(6),
        ),
        e("login_succeeded", Some(3), phone, phone_ip, None, at(6)),
        e("logged_out", Some(2), ff, ff_ip, Some("logged_out"), at(7)),
        e(
            "password_changed",
            Some(3),
            phone,
            phone_ip,
            Some("password_changed"),
            at(8),
        ),
        e("login_succeeded", Some(4), phone, phone_ip, None, at(8)),
    ];
    let check = |got: &Value, want: &Expected| {
        assert_eq!(got["event"], want.event, "{got}");
        assert_eq!(got["user_id"], alice_id.as_str(), "{got}");
        assert_eq!(got["at"], want.at.as_str(), "{got}");
        match want.session {
            Some(i) => assert_eq!(got["session_id"], sessions[i].as_str(), "{got}"),
            None => assert!(got.get("session_id").is_none(), "{got}"),
        }
        assert_eq!(got["user_agent"], json!(want.user_agent), "{got}");
        assert_eq!(got["ip"], json!(want.ip), "{got}");
        match want.reason {
            Some(r) => assert_eq!(got["reason"], r, "{got}"),
            None => assert!(got.get("reason").is_none(), "{got}"),
        }
        assert!(got["id"].is_u64(), "{got}");
        assert!(!got["description"].as_str().unwrap().is_empty(), "{got}");
        // Never a secret.
        let text = got.to_string();
        for secret in [s0.token.as_str(), &grant.refresh, &grant.access, PASSWORD] {
            assert!(!text.contains(secret), "{got}");
        }
    };

    // The admin view: oldest first, the whole trail, nothing of bob's.
    let page = admin_events(&app, &format!("?user_id={alice_id}")).await;
    let got = events(&page);
    assert_eq!(got.len(), expected.len(), "{page}");
    for (g, w) in got.iter().zip(&expected) {
        check(g, w);
    }
    assert!(page.get("next_cursor").is_none(), "{page}");
    let ids: Vec<u64> = got.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert_eq!(
        got[0]["description"],
        "New sign-in from Firefox/1 (198.51.100.1)."
    );
    // Unfiltered: bob's sign-in and the unknown user's attempt (no user) too.
    let all = admin_events(&app, "").await;
    assert_eq!(events(&all).len(), expected.len() + 2);
    assert!(
        events(&all)
            .iter()
            .any(|e| e["event"] == "login_failed" && e.get("user_id").is_none())
    );

    // The user's own view: newest first, without the routine refresh.
    let page = own_events(&app, &s4.token, "").await;
    let got = events(&page);
    let shown: Vec<&Expected> = expected
        .iter()
        .rev()
        .filter(|w| w.event != "refreshed")
        .collect();
    assert_eq!(got.len(), shown.len(), "{page}");
    for (g, w) in got.iter().zip(shown) {
        check(g, w);
    }
    assert!(page.get("next_cursor").is_none(), "{page}");
    // Bob sees only his own.
    let page = own_events(&app, &bob.token, "").await;
    assert_eq!(codes(&page), ["login_succeeded"]);
    assert!(events(&page)[0]["user_id"] != alice_id.as_str());
}

#[tokio::test]
async fn admin_events_are_paged_and_filtered_by_user_and_time() {
    let app = TestApp::new();
    // Sidecar sessions, one a minute, alternating between two users.
    for i in 0..14 {
        app.advance(1);
        let user = if i % 2 == 0 { "app-alice" } else { "app-bob" };
        let res = sidecar_req(user).send(&app).await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    }
    let whole = admin_events(&app, "?user_id=app-alice").await;
    assert_eq!(events(&whole).len(), 7);
    assert!(events(&whole).iter().all(|e| e["user_id"] == "app-alice"));

    // Pages of 3: 3, 3, 1, in order, without gaps or repeats.
    let mut paged = Vec::new();
    let mut query = "?user_id=app-alice&limit=3".to_owned();
    let mut sizes = Vec::new();
    loop {
        let page = admin_events(&app, &query).await;
        sizes.push(events(&page).len());
        paged.extend(events(&page).iter().cloned());
        match page.get("next_cursor") {
            Some(c) => {
                let cursor = c.as_str().unwrap();
                assert_eq!(
                    cursor,
                    events(&page).last().unwrap()["id"].to_string(),
                    "the cursor is the last id"
                );
                query = format!("?user_id=app-alice&limit=3&cursor={cursor}");
            }
            None => break,
        }
    }
    assert_eq!(sizes, [3, 3, 1]);
    assert_eq!(&paged, events(&whole));

    // A page exactly as long as the rest still has a cursor; the next is empty.
    let page = admin_events(&app, "?user_id=app-alice&limit=7").await;
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let next = admin_events(&app, &format!("?user_id=app-alice&limit=7&cursor={cursor}")).await;
    assert!(events(&next).is_empty());
    assert!(next.get("next_cursor").is_none());

    // `since`: at or after the instant; with a cursor and a user.
    let page = admin_events(&app, &format!("?since={}", at(10))).await;
    let times: Vec<&str> = events(&page)
        .iter()
        .map(|e| e["at"].as_str().unwrap())
        .collect();
    assert_eq!(times, [at(10), at(11), at(12), at(13), at(14)]);
    let page = admin_events(&app, &format!("?user_id=app-bob&since={}&limit=2", at(9))).await;
    assert_eq!(events(&page).len(), 2);
    let cursor = page["next_cursor"].as_str().unwrap();
    let next = admin_events(
        &app,
        &format!("?user_id=app-bob&since={}&limit=2&cursor={cursor}", at(9)),
    )
    .await;
    let times: Vec<&str> = events(&next)
        .iter()
        .map(|e| e["at"].as_str().unwrap())
        .collect();
    assert_eq!(times, [at(14)]);
    // A future `since`, an unknown user, a cursor past the end: empty pages.
    for query in [
        format!("?since={}", at(60)),
        "?user_id=nobody".to_owned(),
        "?cursor=999999".to_owned(),
    ] {
        let page = admin_events(&app, &query).await;
        assert!(events(&page).is_empty(), "{query}: {page}");
        assert!(page.get("next_cursor").is_none());
    }
    // The limit's bounds are accepted.
    assert_eq!(events(&admin_events(&app, "?limit=1").await).len(), 1);
    assert_eq!(events(&admin_events(&app, "?limit=1000").await).len(), 14);
}

#[tokio::test]
async fn own_events_page_newest_first_past_hidden_routine_events() {
    // Unlimited sessions, so that the 61 sign-ins displace nothing.
    let app = TestApp::with_extra("[policy]\nmax_sessions = 0\n");
    let user_id = app.create_user("alice", PASSWORD).await;
    let mut grant = app.token_login("alice", PASSWORD).await;
    // 60 sign-ins (shown) interleaved with 60 refreshes (not shown).
    for _ in 0..60 {
        let res = sidecar_req(&user_id).send(&app).await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
        grant = Grant::from(app.refresh(&grant.refresh).await);
    }
    let token = grant.access;

    let first = own_events(&app, &token, "").await;
    assert_eq!(events(&first).len(), 50);
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let second = own_events(&app, &token, &format!("?cursor={cursor}")).await;
    assert_eq!(events(&second).len(), 11);
    assert!(second.get("next_cursor").is_none());
    let all: Vec<&Value> = events(&first).iter().chain(events(&second)).collect();
    assert!(all.iter().all(|e| e["event"] == "login_succeeded"));
    let ids: Vec<u64> = all.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    // The admin sees the refreshes.
    let page = admin_events(&app, &format!("?user_id={user_id}&limit=1000")).await;
    assert_eq!(
        codes(&page).iter().filter(|c| **c == "refreshed").count(),
        60
    );
}

#[tokio::test]
async fn every_event_kind_is_recorded_and_users_see_all_but_the_routine_ones() {
    let app = TestApp::with_extra(
        "[policy]\nrenewal_interval = \"10m\"\n\
         [profiles.one]\nmax_sessions = 1\n\
         [profiles.one-only]\nmax_sessions = 1\non_limit = \"reject_new\"\n",
    );
    let id = app.create_user("alice", PASSWORD).await;
    // login_succeeded, login_failed
    let main = app.login("alice", PASSWORD).await;
    let res = login_from("alice", "wrong", "x", "192.0.2.1:1")
        .send(&app)
        .await;
    res.problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    // refreshed, refresh_reuse_detected
    let grant = app.token_login("alice", PASSWORD).await;
    let _ = Grant::from(app.refresh(&grant.refresh).await);
    app.advance_secs(6);
    let res = app.refresh(&grant.refresh).await;
    res.oauth_error(
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "refresh_reuse_detected",
    );
    // step_up_required, then elevated, api_token_created, api_token_revoked
    app.advance(6);
    let res = Req::post("/v1/api-tokens")
        .bearer(&main.token)
        .json(json!({ "name": "ci" }))
        .send(&app)
        .await;
    res.problem(StatusCode::FORBIDDEN, "step_up_required");
    let res = Req::post("/v1/session/elevate")
        .bearer(&main.token)
        .json(json!({ "password": PASSWORD }))
        .send(&app)
        .await;
    let main_token = res.json()["session_token"].as_str().unwrap().to_owned();
    let res = Req::post("/v1/api-tokens")
        .bearer(&main_token)
        .json(json!({ "name": "ci" }))
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let api_id = res.json()["id"].as_str().unwrap().to_owned();
    let res = Req::delete(&format!("/v1/api-tokens/{api_id}"))
        .bearer(&main_token)
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    // token_renewed (a cookie 10m after its token was issued)
    let cookie = app.login("alice", PASSWORD).await;
    app.advance(10);
    let (renewed, _) = ok_rotated(&cookie_session(&app, &cookie.token).await, &cookie.token);
    // user_updated, token_rotated (a change after the token was issued)
    app.advance_secs(1);
    let res = update_user(&app, &id, json!({ "roles": ["ops"] })).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    app.advance(1);
    let (rotated, _) = ok_rotated(&cookie_session(&app, &renewed).await, &renewed);
    let cookie = login_with(rotated, &cookie.csrf());
    // session_revoked (by the user), logged_out, user_sessions_revoked
    let other = app.login("alice", PASSWORD).await;
    let res = Req::delete(&format!("/v1/sessions/{}", other.session_id()))
        .browser(&cookie)
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    let other = app.login("alice", PASSWORD).await;
    let res = Req::post("/v1/logout")
        .bearer(&other.token)
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    let res = Req::post("/v1/sessions/revoke-others")
        .browser(&cookie)
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    // displaced (profile `one`), login_refused (profile `one-only`)
    let res = update_user(&app, &id, json!({ "profile": "one" })).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    app.advance_secs(1);
    let last = app.login("alice", PASSWORD).await;
    let res = update_user(&app, &id, json!({ "profile": "one-only" })).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    app.advance_secs(1);
    let res = Req::post("/v1/login")
        .json(json!({ "username": "alice", "password": PASSWORD }))
        .send(&app)
        .await;
    res.problem(StatusCode::CONFLICT, "session_limit_reached");
    // password_changed (a fresh session may)
    let res = change_password_browser(&last).send(&app).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let last_token = Login::from(res).token;

    let all_kinds = [
        "login_succeeded",
        "login_failed",
        "login_refused",
        "refreshed",
        "token_renewed",
        "token_rotated",
        "elevated",
        "step_up_required",
        "logged_out",
        "session_revoked",
        "user_sessions_revoked",
        "displaced",
        "refresh_reuse_detected",
        "password_changed",
        "api_token_created",
        "api_token_revoked",
        "user_updated",
    ];
    let page = admin_events(&app, &format!("?user_id={id}")).await;
    let logged: HashSet<&str> = codes(&page).into_iter().collect();
    for kind in all_kinds {
        assert!(logged.contains(kind), "{kind} missing from {logged:?}");
    }
    let reason_of = |kind: &str| -> Vec<Value> {
        events(&page)
            .iter()
            .filter(|e| e["event"] == kind)
            .map(|e| e.get("reason").cloned().unwrap_or(Value::Null))
            .collect()
    };
    assert_eq!(reason_of("token_renewed"), [json!("renewed")]);
    // Every profile change after a login rotates that session once.
    let rotated = reason_of("token_rotated");
    assert!(!rotated.is_empty());
    assert!(
        rotated.iter().all(|r| r == "privilege_changed"),
        "{rotated:?}"
    );
    assert_eq!(reason_of("session_revoked"), [json!("revoked_by_user")]);
    assert_eq!(
        reason_of("user_sessions_revoked"),
        [json!("signed_out_everywhere")]
    );
    assert_eq!(reason_of("api_token_revoked"), [json!("revoked_by_user")]);
    assert_eq!(reason_of("elevated"), [Value::Null]);

    let page = own_events(&app, &last_token, "").await;
    let shown: HashSet<&str> = codes(&page).into_iter().collect();
    for kind in all_kinds {
        let routine = matches!(kind, "refreshed" | "token_renewed" | "step_up_required");
        assert_eq!(shown.contains(kind), !routine, "{kind} in {shown:?}");
    }
}

#[tokio::test]
async fn event_queries_with_bad_parameters_are_400_never_5xx() {
    let app = TestApp::new();
    let login = app.alice().await;
    let admin_cases: &[(&str, &str)] = &[
        ("limit=0", "invalid_query"),
        ("limit=1001", "invalid_query"),
        ("limit=-1", "invalid_query"),
        ("limit=abc", "invalid_query"),
        ("limit=", "invalid_query"),
        ("limit=99999999999999999999999", "invalid_query"),
        ("cursor=abc", "invalid_query"),
        ("cursor=-1", "invalid_query"),
        ("cursor=", "invalid_query"),
        ("cursor=1.5", "invalid_query"),
        ("since=yesterday", "invalid_query"),
        ("since=", "invalid_query"),
        ("since=2026-13-01T00:00:00Z", "invalid_query"),
        ("since=1969-12-31T23:59:59Z", "invalid_query"),
        ("user_id=", "invalid_user_id"),
        ("user_id=%01", "invalid_user_id"),
        ("nope=1", "malformed_request"),
        ("limit=1&limit=2", "malformed_request"),
    ];
    for (query, code) in admin_cases {
        let res = Req::get(&format!("/v1/admin/events?{query}"))
            .bearer(ADMIN_TOKEN)
            .send(&app)
            .await;
        let p = res.problem(StatusCode::BAD_REQUEST, code);
        if *code == "invalid_query" {
            let name = query.split('=').next().unwrap();
            assert!(p["detail"].as_str().unwrap().contains(name), "{p}");
        }
    }
    for (query, code) in [
        ("cursor=abc", "invalid_query"),
        ("cursor=-5", "invalid_query"),
        ("limit=5", "malformed_request"),
        ("user_id=someone-else", "malformed_request"),
    ] {
        let res = Req::get(&format!("/v1/events?{query}"))
            .bearer(&login.token)
            .send(&app)
            .await;
        res.problem(StatusCode::BAD_REQUEST, code);
    }
    // Odd encodings are answered, never with a server error.
    for query in [
        "since=%FF%FE",
        "user_id=%FF",
        "cursor=%00",
        "limit=%",
        "limit=1%",
        "&&&",
        "=",
        "user_id=a&user_id=b",
        "since=2026-11-28T12:00:00%2B01:00",
    ] {
        for req in [
            Req::get(&format!("/v1/admin/events?{query}")).bearer(ADMIN_TOKEN),
            Req::get(&format!("/v1/events?{query}")).bearer(&login.token),
        ] {
            let res = req.send(&app).await;
            assert!(
                res.status == StatusCode::OK || res.status == StatusCode::BAD_REQUEST,
                "{query}: {} {}",
                res.status,
                res.text()
            );
            if res.status == StatusCode::BAD_REQUEST {
                assert_eq!(res.header("content-type"), Some("application/problem+json"));
            }
        }
    }
    // Each endpoint needs its own credential.
    let res = Req::get("/v1/admin/events").send(&app).await;
    res.problem(StatusCode::UNAUTHORIZED, "admin_unauthorized");
    let res = Req::get("/v1/admin/events")
        .bearer(&login.token)
        .send(&app)
        .await;
    res.problem(StatusCode::UNAUTHORIZED, "admin_unauthorized");
    let res = Req::get("/v1/events").send(&app).await;
    res.problem(StatusCode::UNAUTHORIZED, "invalid_token");
    let res = Req::get("/v1/events").bearer(ADMIN_TOKEN).send(&app).await;
    res.problem(StatusCode::UNAUTHORIZED, "invalid_token");
}
