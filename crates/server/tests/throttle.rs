//! Password guessing over HTTP, on a manual clock: every password check
//! (login, the password grant, step-up, password change) is throttled — 429
//! `too_many_attempts` with `Retry-After`, growing waits — without locking the
//! real user's browser out; the hash queue is bounded (503 `server_busy`); and
//! failures reach the user's history coalesced. Each rule with a passing and a
//! failing case.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::{Login, PASSWORD, Req, Resp, TestApp};
use serde_json::json;

/// The throttle used here: 3 free failures per account and client, 10 per
/// client; waits of 10 s, 20 s, … 5 min.
const POLICY: &str = "[policy]\nthrottle_failures = 3\nthrottle_client_failures = 10\n\
                      throttle_delay = \"10s\"\nthrottle_max_delay = \"5m\"\n";

const WRONG: &str = "not the password, but a guess";
const ATTACKER: &str = "203.0.113.66:40000";
const HOME: &str = "198.51.100.7:50000";

fn app() -> TestApp {
    TestApp::with_extra(POLICY)
}

async fn login_from(app: &TestApp, peer: &str, user: &str, password: &str) -> Resp {
    Req::post("/v1/login")
        .peer(peer)
        .json(json!({ "username": user, "password": password }))
        .send(app)
        .await
}

/// The device cookie a response sets, as a request's `Cookie` pair.
fn device_cookie(res: &Resp) -> String {
    let set = res
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|v| v.starts_with("__Host-sg_device="))
        .unwrap_or_else(|| panic!("no device cookie in {:?}", res.headers));
    assert!(
        set.contains("; Secure; HttpOnly; SameSite=Strict; Max-Age="),
        "{set}"
    );
    set.split(';').next().unwrap().to_owned()
}

#[track_caller]
fn throttled(res: &Resp, retry_after: u64) {
    res.problem(StatusCode::TOO_MANY_REQUESTS, "too_many_attempts");
    assert_eq!(
        res.header("retry-after"),
        Some(retry_after.to_string().as_str())
    );
}

#[tokio::test]
async fn wrong_logins_are_answered_429_with_growing_retry_after_and_the_wait_ends() {
    let app = app();
    app.create_user("alice", PASSWORD).await;
    for _ in 0..3 {
        let res = login_from(&app, ATTACKER, "alice", WRONG).await;
        res.problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    // From now on no password is checked before the wait is over — not even
    // the right one, or the answer would tell a guesser when they hit it.
    throttled(&login_from(&app, ATTACKER, "alice", WRONG).await, 10);
    throttled(&login_from(&app, ATTACKER, "alice", PASSWORD).await, 10);
    app.advance_secs(4);
    throttled(&login_from(&app, ATTACKER, "alice", WRONG).await, 6);

    app.advance_secs(6);
    let res = login_from(&app, ATTACKER, "alice", WRONG).await;
    res.problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    throttled(&login_from(&app, ATTACKER, "alice", WRONG).await, 20);

    // The longest wait is max_delay: the account is never locked for good.
    for _ in 0..10 {
        app.advance(5);
        login_from(&app, ATTACKER, "alice", WRONG).await;
    }
    throttled(&login_from(&app, ATTACKER, "alice", WRONG).await, 300);
    app.advance(5);
    let res = login_from(&app, ATTACKER, "alice", PASSWORD).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
}

#[tokio::test]
async fn unknown_users_are_throttled_like_known_ones() {
    let app = app();
    for _ in 0..3 {
        let res = login_from(&app, ATTACKER, "nobody", WRONG).await;
        res.problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    throttled(&login_from(&app, ATTACKER, "nobody", WRONG).await, 10);
}

#[tokio::test]
async fn the_real_users_browser_still_signs_in_while_a_guesser_is_throttled() {
    let app = app();
    app.create_user("alice", PASSWORD).await;
    // Alice signed in from this browser before: it holds the device cookie.
    let earlier = login_from(&app, HOME, "alice", PASSWORD).await;
    assert_eq!(earlier.status, StatusCode::OK);
    let device = device_cookie(&earlier);

    // A guesser behind the same address (a shared NAT) gets alice throttled.
    for _ in 0..3 {
        login_from(&app, HOME, "alice", WRONG).await;
    }
    throttled(&login_from(&app, HOME, "alice", PASSWORD).await, 10);

    // Alice's browser is not held back, and its answer keeps the cookie fresh.
    let res = Req::post("/v1/login")
        .peer(HOME)
        .header("cookie", &device)
        .json(json!({ "username": "alice", "password": PASSWORD }))
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(device_cookie(&res), device, "the same device secret");

    // A cookie the server never issued for alice is no way around the wait.
    let forged = format!("__Host-sg_device=sgd_{}", "A".repeat(43));
    let res = Req::post("/v1/login")
        .peer(HOME)
        .header("cookie", &forged)
        .json(json!({ "username": "alice", "password": PASSWORD }))
        .send(&app)
        .await;
    throttled(&res, 10);
}

#[tokio::test]
async fn one_client_spraying_many_accounts_waits_and_other_clients_do_not() {
    let app = app();
    app.create_user("alice", PASSWORD).await;
    for i in 0..10 {
        login_from(&app, ATTACKER, &format!("user{i}"), WRONG).await;
    }
    throttled(&login_from(&app, ATTACKER, "alice", PASSWORD).await, 10);
    let res = login_from(&app, HOME, "alice", PASSWORD).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
}

#[tokio::test]
async fn the_password_grant_is_throttled_in_the_oauth_form() {
    let app = app();
    app.create_user("alice", PASSWORD).await;
    let grant = |password: &'static str| {
        Req::post("/v1/token").peer(ATTACKER).form(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", password),
        ])
    };
    for _ in 0..3 {
        let res = grant(WRONG).send(&app).await;
        res.oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "invalid_credentials",
        );
    }
    let res = grant(PASSWORD).send(&app).await;
    res.oauth_error(
        StatusCode::TOO_MANY_REQUESTS,
        "invalid_grant",
        "too_many_attempts",
    );
    assert_eq!(res.header("retry-after"), Some("10"));
    // Logins and grants count together: the cookie login waits too.
    throttled(&login_from(&app, ATTACKER, "alice", PASSWORD).await, 10);
    app.advance_secs(10);
    assert_eq!(grant(PASSWORD).send(&app).await.status, StatusCode::OK);
}

#[tokio::test]
async fn step_up_and_password_change_are_throttled_too() {
    let app = app();
    app.create_user("alice", PASSWORD).await;
    let session = Login::from(login_from(&app, HOME, "alice", PASSWORD).await);
    let elevate = |password: &str| {
        Req::post("/v1/session/elevate")
            .peer(ATTACKER)
            .bearer(&session.token)
            .json(json!({ "password": password }))
    };
    for _ in 0..3 {
        let res = elevate(WRONG).send(&app).await;
        res.problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    throttled(&elevate(PASSWORD).send(&app).await, 10);
    let change = Req::post("/v1/password")
        .peer(ATTACKER)
        .bearer(&session.token)
        .json(json!({ "current_password": PASSWORD, "new_password": "another long password" }));
    throttled(&change.send(&app).await, 10);

    // From another client, the same session's checks are not held back.
    let res = Req::post("/v1/session/elevate")
        .peer(HOME)
        .bearer(&session.token)
        .json(json!({ "password": PASSWORD }))
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
}

#[tokio::test]
async fn guessing_adds_two_events_to_the_users_history_not_one_per_guess() {
    let app = app();
    app.create_user("alice", PASSWORD).await;
    for _ in 0..20 {
        app.advance(5);
        login_from(&app, ATTACKER, "alice", WRONG).await;
    }
    let me = Login::from(login_from(&app, HOME, "alice", PASSWORD).await);
    let res = Req::get("/v1/events").bearer(&me.token).send(&app).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let kinds: Vec<String> = res.json()["events"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", res.text()))
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| *k == "login_failed").count(),
        1,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| *k == "login_throttled").count(),
        1,
        "{kinds:?}"
    );
}

#[tokio::test]
async fn a_full_hash_queue_answers_503_and_holds_nothing_against_the_client() {
    let app = TestApp::with_extra(&format!("{POLICY}[server]\npassword_hash_queue = 1\n"));
    app.create_user("alice", PASSWORD).await;
    // Occupy every worker and the queue with jobs that wait for a signal.
    let held = app.fill_hash_queue().await;

    // More attempts than the throttle's free ones: each is refused at once,
    // and none is counted against alice.
    for _ in 0..5 {
        // Bounded: an unbounded queue would wait here for the held jobs.
        let res = tokio::time::timeout(
            Duration::from_secs(10),
            login_from(&app, HOME, "alice", PASSWORD),
        )
        .await
        .expect("answered at once, not queued");
        res.problem(StatusCode::SERVICE_UNAVAILABLE, "server_busy");
        assert_eq!(res.header("retry-after"), Some("1"));
    }
    held.release().await;
    let res = login_from(&app, HOME, "alice", PASSWORD).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
}
