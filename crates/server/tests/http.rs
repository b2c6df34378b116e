//! The HTTP API, end to end through the router (no sockets), over an in-memory
//! store and a manual clock: time is advanced, never slept.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::{ADMIN_TOKEN, Login, ORIGIN, PASSWORD, Req, TestApp, at};
use serde_json::json;
use sessionguard_core::{ClientInfo, UserId};

const COOKIE_ATTRS: &str = "; Path=/; Secure; HttpOnly; SameSite=Lax";

// ---------------------------------------------------------------- admin users

#[tokio::test]
async fn admin_creates_users_and_refuses_a_taken_username() {
    let app = TestApp::new();
    let id = app.create_user("alice", PASSWORD).await;
    assert!(id.starts_with("u_"));
    let res = Req::post("/v1/admin/users")
        .bearer(ADMIN_TOKEN)
        .json(json!({ "username": "alice", "password": "another password" }))
        .send(&app)
        .await;
    res.problem(StatusCode::CONFLICT, "username_taken");
}

#[tokio::test]
async fn admin_api_needs_the_admin_token() {
    let app = TestApp::new();
    let body = json!({ "username": "mallory", "password": PASSWORD });

    let res = Req::post("/v1/admin/users")
        .json(body.clone())
        .send(&app)
        .await;
    res.problem(StatusCode::UNAUTHORIZED, "admin_unauthorized");
    assert_eq!(
        res.header("www-authenticate"),
        Some(r#"Bearer realm="sessionguard""#)
    );

    let wrong = format!("{ADMIN_TOKEN}x");
    let res = Req::post("/v1/admin/users")
        .bearer(&wrong)
        .json(body.clone())
        .send(&app)
        .await;
    res.problem(StatusCode::UNAUTHORIZED, "admin_unauthorized");
    assert_eq!(
        res.header("www-authenticate"),
        Some(r#"Bearer realm="sessionguard", error="invalid_token""#)
    );

    // A user's session token is not an admin token.
    app.create_user("alice", PASSWORD).await;
    let alice = app.login("alice", PASSWORD).await;
    let res = Req::get("/v1/admin/users/x/sessions")
        .bearer(&alice.token)
        .send(&app)
        .await;
    res.problem(StatusCode::UNAUTHORIZED, "admin_unauthorized");
}

#[tokio::test]
async fn admin_api_is_disabled_without_a_configured_token() {
    let app = TestApp::with_toml(&format!("public_origin = \"{ORIGIN}\""));
    let res = Req::post("/v1/admin/users")
        .bearer(ADMIN_TOKEN)
        .json(json!({ "username": "alice", "password": PASSWORD }))
        .send(&app)
        .await;
    res.problem(StatusCode::UNAUTHORIZED, "admin_unauthorized");
}

#[tokio::test]
async fn weak_passwords_and_bad_usernames_are_refused() {
    let app = TestApp::new();
    let res = Req::post("/v1/admin/users")
        .bearer(ADMIN_TOKEN)
        .json(json!({ "username": "alice", "password": "short" }))
        .send(&app)
        .await;
    res.problem(StatusCode::UNPROCESSABLE_ENTITY, "weak_password");

    for name in ["", " alice", "alice\n", &"a".repeat(65)] {
        let res = Req::post("/v1/admin/users")
            .bearer(ADMIN_TOKEN)
            .json(json!({ "username": name, "password": PASSWORD }))
            .send(&app)
            .await;
        res.problem(StatusCode::BAD_REQUEST, "invalid_username");
    }
}

// ---------------------------------------------------------------------- login

#[tokio::test]
async fn login_sets_the_exact_cookie_and_never_returns_the_token() {
    let app = TestApp::new();
    let user_id = app.create_user("alice", PASSWORD).await;
    let login = app.login("alice", PASSWORD).await;

    assert_eq!(
        login.res.set_cookie().unwrap(),
        format!("__Host-sg_session={}{COOKIE_ATTRS}", login.token)
    );
    assert!(login.token.starts_with("sgs_"));
    assert!(!login.res.text().contains(&login.token));
    assert!(!login.res.text().contains(&login.token[4..]));
    let b = &login.body;
    assert_eq!(b["user_id"], user_id.as_str());
    assert_eq!(b["created_at"], at(0));
    assert_eq!(b["idle_expires_at"], at(30));
    assert_eq!(b["absolute_expires_at"], at(12 * 60));
    assert_eq!(b["session_id"].as_str().unwrap().len(), 22);
    assert!(b["csrf_token"].as_str().unwrap().len() >= 40);
    assert_eq!(login.res.header("cache-control"), Some("no-store"));
}

#[tokio::test]
async fn login_accepts_an_html_form() {
    let app = TestApp::new();
    app.create_user("alice", PASSWORD).await;
    let res = Req::post("/v1/login")
        .raw(
            "application/x-www-form-urlencoded",
            "username=alice&password=correct+horse+battery+staple",
        )
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert!(res.session_cookie().is_some());
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_answer() {
    let app = TestApp::new();
    app.create_user("alice", PASSWORD).await;
    let wrong = Req::post("/v1/login")
        .json(json!({ "username": "alice", "password": "not the password" }))
        .send(&app)
        .await;
    let unknown = Req::post("/v1/login")
        .json(json!({ "username": "bob", "password": PASSWORD }))
        .send(&app)
        .await;
    wrong.problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    unknown.problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    assert_eq!(wrong.body, unknown.body);
    assert_eq!(wrong.headers, unknown.headers);
    assert!(wrong.set_cookie().is_none());
}

#[tokio::test]
async fn login_revokes_the_session_it_was_presented_with() {
    let app = TestApp::new();
    let first = app.alice().await;
    let res = Req::post("/v1/login")
        .cookie(&first.token)
        .json(json!({ "username": "alice", "password": PASSWORD }))
        .send(&app)
        .await;
    let second = Login::from(res);
    assert_ne!(second.token, first.token);
    assert_ne!(second.session_id(), first.session_id());

    let res = Req::get("/v1/session")
        .cookie(&first.token)
        .send(&app)
        .await;
    let p = res.problem(StatusCode::UNAUTHORIZED, "superseded");
    assert_eq!(p["ended_at"], at(0));
    let res = Req::get("/v1/session")
        .cookie(&second.token)
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::OK);
}

#[tokio::test]
async fn a_failed_login_does_not_revoke_the_presented_session() {
    let app = TestApp::new();
    let first = app.alice().await;
    let res = Req::post("/v1/login")
        .cookie(&first.token)
        .json(json!({ "username": "alice", "password": "wrong password" }))
        .send(&app)
        .await;
    res.problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    let res = Req::get("/v1/session")
        .cookie(&first.token)
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::OK);
}

// ------------------------------------------------------------------- timeouts

#[tokio::test]
async fn session_check_extends_the_idle_deadline() {
    let app = TestApp::new();
    let alice = app.alice().await;
    app.advance(20);
    let res = Req::get("/v1/session")
        .cookie(&alice.token)
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::OK);
    let body = res.json();
    assert_eq!(body["last_seen_at"], at(20));
    assert_eq!(body["idle_expires_at"], at(50));
    app.advance(15);
    let res = Req::get("/v1/session")
        .cookie(&alice.token)
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::OK, "alive at 35m: {}", res.text());
}

#[tokio::test]
async fn status_check_does_not_extend_the_idle_deadline() {
    let app = TestApp::new();
    let alice = app.alice().await;
    app.advance(20);
    let res = Req::get("/v1/session/status")
        .cookie(&alice.token)
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json()["idle_expires_at"], at(30));
    assert_eq!(res.json()["last_seen_at"], at(0));
    assert_eq!(res.json()["csrf_token"], alice.csrf());
    app.advance(15);
    let res = Req::get("/v1/session/status")
        .cookie(&alice.token)
        .send(&app)
        .await;
    let p = res.problem(StatusCode::UNAUTHORIZED, "idle_timeout");
    assert_eq!(p["ended_at"], at(30));
}

#[tokio::test]
async fn an_idle_session_ends_with_idle_timeout() {
    let app = TestApp::new();
    let alice = app.alice().await;
    app.advance(29);
    let res = Req::get("/v1/session")
        .cookie(&alice.token)
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::OK);
    app.advance(31);
    let res = Req::get("/v1/session")
        .cookie(&alice.token)
        .send(&app)
        .await;
    let p = res.problem(StatusCode::UNAUTHORIZED, "idle_timeout");
    assert_eq!(p["ended_at"], at(59));
}

#[tokio::test]
async fn activity_does_not_extend_past_the_absolute_deadline() {
    let app = TestApp::new();
    let alice = app.alice().await;
    for _ in 0..35 {
        app.advance(20);
        let res = Req::get("/v1/session")
            .cookie(&alice.token)
            .send(&app)
            .await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    }
    // 11h40m: the idle deadline is capped by the absolute one.
    let res = Req::get("/v1/session/status")
        .cookie(&alice.token)
        .send(&app)
        .await;
    assert_eq!(res.json()["idle_expires_at"], at(12 * 60));
    app.advance(20);
    let res = Req::get("/v1/session")
        .cookie(&alice.token)
        .send(&app)
        .await;
    let p = res.problem(StatusCode::UNAUTHORIZED, "absolute_timeout");
    assert_eq!(p["ended_at"], at(12 * 60));
}

// --------------------------------------------------------------------- logout

#[tokio::test]
async fn logout_revokes_and_clears_the_cookie() {
    let app = TestApp::new();
    let alice = app.alice().await;
    app.advance(5);
    let res = Req::post("/v1/logout").browser(&alice).send(&app).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    assert_eq!(
        res.set_cookie(),
        Some("__Host-sg_session=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0")
    );

    app.advance(1);
    let res = Req::get("/v1/session")
        .cookie(&alice.token)
        .send(&app)
        .await;
    let p = res.problem(StatusCode::UNAUTHORIZED, "logged_out");
    assert_eq!(p["ended_at"], at(5));
    let res = Req::post("/v1/logout").browser(&alice).send(&app).await;
    res.problem(StatusCode::UNAUTHORIZED, "logged_out");
}

// ------------------------------------------------------------ password change

#[tokio::test]
async fn password_change_rotates_this_device_and_ends_every_other_session() {
    let app = TestApp::new();
    let laptop = app.alice().await;
    let phone = app.login("alice", PASSWORD).await;
    app.advance(3);

    let res = Req::post("/v1/password")
        .browser(&laptop)
        .json(json!({ "current_password": PASSWORD, "new_password": "a brand new password" }))
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let rotated = Login::from(res);
    assert_ne!(rotated.token, laptop.token);
    assert!(!rotated.res.text().contains(&rotated.token));
    assert_eq!(rotated.body["created_at"], at(3));
    assert_eq!(rotated.body["user_id"], laptop.body["user_id"]);

    let res = Req::get("/v1/session")
        .cookie(&rotated.token)
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::OK);
    for old in [&laptop, &phone] {
        let res = Req::get("/v1/session").cookie(&old.token).send(&app).await;
        let p = res.problem(StatusCode::UNAUTHORIZED, "password_changed");
        assert_eq!(p["ended_at"], at(3));
    }

    let res = Req::post("/v1/login")
        .json(json!({ "username": "alice", "password": PASSWORD }))
        .send(&app)
        .await;
    res.problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    app.login("alice", "a brand new password").await;
}

#[tokio::test]
async fn password_change_needs_the_current_password_and_a_strong_new_one() {
    let app = TestApp::new();
    let alice = app.alice().await;
    let res = Req::post("/v1/password")
        .browser(&alice)
        .json(
            json!({ "current_password": "wrong password", "new_password": "a brand new password" }),
        )
        .send(&app)
        .await;
    res.problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    let res = Req::post("/v1/password")
        .browser(&alice)
        .json(json!({ "current_password": PASSWORD, "new_password": "short" }))
        .send(&app)
        .await;
    res.problem(StatusCode::UNPROCESSABLE_ENTITY, "weak_password");
    // Nothing changed.
    let res = Req::get("/v1/session")
        .cookie(&alice.token)
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::OK);
    app.login("alice", PASSWORD).await;
}

#[tokio::test]
async fn bearer_password_change_returns_the_new_token_in_the_body() {
    let app = TestApp::new();
    let alice = app.alice().await;
    let res = Req::post("/v1/password")
        .bearer(&alice.token)
        .json(json!({ "current_password": PASSWORD, "new_password": "a brand new password" }))
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert!(res.set_cookie().is_none());
    let token = res.json()["session_token"].as_str().unwrap().to_owned();
    let res = Req::get("/v1/session").bearer(&token).send(&app).await;
    assert_eq!(res.status, StatusCode::OK);
    let res = Req::get("/v1/session")
        .bearer(&alice.token)
        .send(&app)
        .await;
    res.problem(StatusCode::UNAUTHORIZED, "password_changed");
}

// ------------------------------------------------------------ list of sessions

#[tokio::test]
async fn sessions_list_marks_the_current_one_and_shows_client_info() {
    let app = TestApp::new();
    app.create_user("alice", PASSWORD).await;
    let res = Req::post("/v1/login")
        .header("user-agent", "Laptop/1.0")
        .peer("192.0.2.7:5555")
        .json(json!({ "username": "alice", "password": PASSWORD }))
        .send(&app)
        .await;
    let laptop = Login::from(res);
    app.advance(2);
    let res = Req::post("/v1/login")
        .header("user-agent", "Phone/2.0")
        .json(json!({ "username": "alice", "password": PASSWORD }))
        .send(&app)
        .await;
    let phone = Login::from(res);

    let res = Req::get("/v1/sessions")
        .cookie(&laptop.token)
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::OK);
    let list = res.json()["sessions"].as_array().unwrap().clone();
    assert_eq!(list.len(), 2);
    let mine = list.iter().find(|s| s["current"] == true).unwrap();
    assert_eq!(mine["id"], laptop.session_id().as_str());
    assert_eq!(mine["user_agent"], "Laptop/1.0");
    assert_eq!(mine["ip"], "192.0.2.7");
    let other = list.iter().find(|s| s["current"] == false).unwrap();
    assert_eq!(other["id"], phone.session_id().as_str());
    assert_eq!(other["user_agent"], "Phone/2.0");
    assert!(other["ip"].is_null());
}

#[tokio::test]
async fn a_user_can_end_one_of_their_sessions_but_not_anyone_elses() {
    let app = TestApp::new();
    let laptop = app.alice().await;
    let phone = app.login("alice", PASSWORD).await;
    app.create_user("bob", PASSWORD).await;
    let bob = app.login("bob", PASSWORD).await;

    let uri = format!("/v1/sessions/{}", bob.session_id());
    let res = Req::delete(&uri).browser(&laptop).send(&app).await;
    res.problem(StatusCode::NOT_FOUND, "not_found");
    let res = Req::get("/v1/session").cookie(&bob.token).send(&app).await;
    assert_eq!(res.status, StatusCode::OK);

    let uri = format!("/v1/sessions/{}", phone.session_id());
    let res = Req::delete(&uri).browser(&laptop).send(&app).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    let res = Req::get("/v1/session")
        .cookie(&phone.token)
        .send(&app)
        .await;
    res.problem(StatusCode::UNAUTHORIZED, "revoked_by_user");
    // Already ended: no longer one of the caller's live sessions.
    let res = Req::delete(&uri).browser(&laptop).send(&app).await;
    res.problem(StatusCode::NOT_FOUND, "not_found");

    let res = Req::delete("/v1/sessions/not-an-id")
        .browser(&laptop)
        .send(&app)
        .await;
    res.problem(StatusCode::BAD_REQUEST, "invalid_session_id");
}

#[tokio::test]
async fn revoke_others_keeps_only_this_session() {
    let app = TestApp::new();
    let laptop = app.alice().await;
    let phone = app.login("alice", PASSWORD).await;
    let tablet = app.login("alice", PASSWORD).await;
    let res = Req::post("/v1/sessions/revoke-others")
        .browser(&laptop)
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    for other in [&phone, &tablet] {
        let res = Req::get("/v1/session")
            .cookie(&other.token)
            .send(&app)
            .await;
        res.problem(StatusCode::UNAUTHORIZED, "signed_out_everywhere");
    }
    let res = Req::get("/v1/sessions")
        .cookie(&laptop.token)
        .send(&app)
        .await;
    assert_eq!(res.json()["sessions"].as_array().unwrap().len(), 1);
}

// --------------------------------------------------------------------- bearer

#[tokio::test]
async fn bearer_works_like_the_cookie_and_wins_over_it() {
    let app = TestApp::new();
    let alice = app.alice().await;
    let res = Req::get("/v1/session")
        .bearer(&alice.token)
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json()["session_id"], alice.session_id().as_str());

    // Bearer wins: a bad bearer token fails even next to a good cookie.
    let res = Req::get("/v1/session")
        .cookie(&alice.token)
        .bearer("sgs_garbage")
        .send(&app)
        .await;
    res.problem(StatusCode::UNAUTHORIZED, "invalid_token");
    assert_eq!(
        res.header("www-authenticate"),
        Some(r#"Bearer realm="sessionguard", error="invalid_token""#)
    );
}

#[tokio::test]
async fn every_401_carries_a_bearer_challenge() {
    let app = TestApp::new();
    let res = Req::get("/v1/session").send(&app).await;
    res.problem(StatusCode::UNAUTHORIZED, "invalid_token");
    assert_eq!(
        res.header("www-authenticate"),
        Some(r#"Bearer realm="sessionguard""#)
    );
    let res = Req::get("/v1/session").cookie("sgs_nope").send(&app).await;
    res.problem(StatusCode::UNAUTHORIZED, "invalid_token");
    assert_eq!(
        res.header("www-authenticate"),
        Some(r#"Bearer realm="sessionguard""#)
    );
}

// -------------------------------------------------------------------- sidecar

#[tokio::test]
async fn sidecar_sessions_work_as_bearer_and_die_with_an_admin_revoke() {
    let app = TestApp::new();
    let res = Req::post("/v1/admin/sessions")
        .bearer(ADMIN_TOKEN)
        .json(json!({ "user_id": "app-user-42", "user_agent": "App/1", "ip": "2001:db8::1" }))
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let created = res.json();
    assert_eq!(created["user_id"], "app-user-42");
    assert_eq!(created["idle_expires_at"], at(30));
    let token = created["session_token"].as_str().unwrap().to_owned();

    let res = Req::get("/v1/session").bearer(&token).send(&app).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json()["session_id"], created["session_id"]);

    let res = Req::get("/v1/admin/users/app-user-42/sessions")
        .bearer(ADMIN_TOKEN)
        .send(&app)
        .await;
    let list = res.json()["sessions"].as_array().unwrap().clone();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["ip"], "2001:db8::1");
    assert_eq!(list[0]["user_agent"], "App/1");
    assert!(list[0].get("current").is_none());

    app.advance(7);
    let res = Req::post("/v1/admin/users/app-user-42/revoke")
        .bearer(ADMIN_TOKEN)
        .json(json!({ "reason": "password_changed" }))
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(
        res.json(),
        json!({ "user_id": "app-user-42", "reason": "password_changed", "revoked_at": at(7) })
    );
    let res = Req::get("/v1/session").bearer(&token).send(&app).await;
    let p = res.problem(StatusCode::UNAUTHORIZED, "password_changed");
    assert_eq!(p["ended_at"], at(7));
    assert!(
        res.header("www-authenticate")
            .unwrap()
            .contains("invalid_token")
    );
}

#[tokio::test]
async fn admin_revoke_accepts_only_admin_reasons_and_valid_ids() {
    let app = TestApp::new();
    for reason in ["logged_out", "idle_timeout", "nonsense"] {
        let res = Req::post("/v1/admin/users/someone/revoke")
            .bearer(ADMIN_TOKEN)
            .json(json!({ "reason": reason }))
            .send(&app)
            .await;
        res.problem(StatusCode::BAD_REQUEST, "invalid_reason");
    }
    let res = Req::post("/v1/admin/sessions")
        .bearer(ADMIN_TOKEN)
        .json(json!({ "user_id": "" }))
        .send(&app)
        .await;
    res.problem(StatusCode::BAD_REQUEST, "invalid_user_id");
    let res = Req::post("/v1/admin/sessions")
        .bearer(ADMIN_TOKEN)
        .json(json!({ "user_id": "u1", "ip": "not an ip" }))
        .send(&app)
        .await;
    res.problem(StatusCode::BAD_REQUEST, "malformed_request");
}

// ------------------------------------------------------ cross-site protection

#[tokio::test]
async fn login_refuses_cross_origin_browsers() {
    let app = TestApp::new();
    app.create_user("alice", PASSWORD).await;
    let login = |name: &'static str, value: &'static str| {
        Req::post("/v1/login")
            .header(name, value)
            .json(json!({ "username": "alice", "password": PASSWORD }))
    };
    let res = login("origin", "https://evil.example").send(&app).await;
    res.problem(StatusCode::FORBIDDEN, "cross_origin_request");
    let res = login("origin", "null").send(&app).await;
    res.problem(StatusCode::FORBIDDEN, "cross_origin_request");
    let res = login("sec-fetch-site", "cross-site").send(&app).await;
    res.problem(StatusCode::FORBIDDEN, "cross_origin_request");
    let res = login("sec-fetch-site", "same-site").send(&app).await;
    res.problem(StatusCode::FORBIDDEN, "cross_origin_request");

    let res = login("sec-fetch-site", "same-origin").send(&app).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let res = login("origin", ORIGIN).send(&app).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    // No browser headers: not a browser, nothing to forge.
    app.login("alice", PASSWORD).await;
}

#[tokio::test]
async fn cookie_logout_needs_the_csrf_token() {
    let app = TestApp::new();
    let alice = app.alice().await;
    let res = Req::post("/v1/logout")
        .cookie(&alice.token)
        .header("origin", ORIGIN)
        .send(&app)
        .await;
    res.problem(StatusCode::FORBIDDEN, "csrf_token_invalid");
    let res = Req::post("/v1/logout")
        .cookie(&alice.token)
        .header("origin", ORIGIN)
        .csrf("not-the-token")
        .send(&app)
        .await;
    res.problem(StatusCode::FORBIDDEN, "csrf_token_invalid");
    // Another session's token is not this session's.
    let other = app.login("alice", PASSWORD).await;
    let res = Req::post("/v1/logout")
        .cookie(&alice.token)
        .csrf(&other.csrf())
        .send(&app)
        .await;
    res.problem(StatusCode::FORBIDDEN, "csrf_token_invalid");
    let res = Req::get("/v1/session")
        .cookie(&alice.token)
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::OK, "still logged in");

    let res = Req::post("/v1/logout")
        .cookie(&alice.token)
        .header("origin", ORIGIN)
        .csrf(&alice.csrf())
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
}

#[tokio::test]
async fn cookie_requests_from_another_origin_are_refused_even_with_the_token() {
    let app = TestApp::new();
    let alice = app.alice().await;
    let res = Req::post("/v1/sessions/revoke-others")
        .cookie(&alice.token)
        .csrf(&alice.csrf())
        .header("origin", "https://evil.example")
        .send(&app)
        .await;
    res.problem(StatusCode::FORBIDDEN, "cross_origin_request");
    let res = Req::post("/v1/logout")
        .cookie(&alice.token)
        .csrf(&alice.csrf())
        .header("sec-fetch-site", "cross-site")
        .send(&app)
        .await;
    res.problem(StatusCode::FORBIDDEN, "cross_origin_request");
    // Safe methods are not checked.
    let res = Req::get("/v1/session")
        .cookie(&alice.token)
        .header("sec-fetch-site", "cross-site")
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::OK);
}

#[tokio::test]
async fn bearer_requests_need_no_csrf_token() {
    let app = TestApp::new();
    let alice = app.alice().await;
    let res = Req::post("/v1/logout")
        .bearer(&alice.token)
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    assert!(res.set_cookie().is_none());
    let res = Req::get("/v1/session")
        .bearer(&alice.token)
        .send(&app)
        .await;
    res.problem(StatusCode::UNAUTHORIZED, "logged_out");
}

// ------------------------------------------------------------- hostile input

#[tokio::test]
async fn malformed_bodies_get_problem_documents() {
    let app = TestApp::new();
    let res = Req::post("/v1/login")
        .raw("application/json", "{\"username\": ")
        .send(&app)
        .await;
    res.problem(StatusCode::BAD_REQUEST, "malformed_request");

    let res = Req::post("/v1/login")
        .raw("text/plain", "username=alice")
        .send(&app)
        .await;
    res.problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    let res = Req::post("/v1/admin/users")
        .bearer(ADMIN_TOKEN)
        .raw("application/x-www-form-urlencoded", "username=a&password=b")
        .send(&app)
        .await;
    res.problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");

    let res = Req::post("/v1/login")
        .json(json!({ "username": "alice" }))
        .send(&app)
        .await;
    let p = res.problem(StatusCode::UNPROCESSABLE_ENTITY, "malformed_request");
    assert!(p["detail"].as_str().unwrap().contains("password"));
    let res = Req::post("/v1/login")
        .raw("application/x-www-form-urlencoded", "username=alice")
        .send(&app)
        .await;
    res.problem(StatusCode::UNPROCESSABLE_ENTITY, "malformed_request");

    let res = Req::post("/v1/login")
        .json(json!({ "username": "alice", "password": 12345678 }))
        .send(&app)
        .await;
    res.problem(StatusCode::UNPROCESSABLE_ENTITY, "malformed_request");
    assert!(!res.text().contains("12345678"), "values are never echoed");
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let app = TestApp::new();
    let big = format!(
        "{{\"username\":\"alice\",\"password\":\"{}\"}}",
        "a".repeat(17 * 1024)
    );
    let res = Req::post("/v1/login")
        .raw("application/json", big)
        .send(&app)
        .await;
    res.problem(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
}

#[tokio::test]
async fn oversized_headers_are_refused() {
    let app = TestApp::new();
    let mut req = Req::get("/v1/session");
    for i in 0..5 {
        req = req.header(&format!("x-padding-{i}"), "p".repeat(4 * 1024));
    }
    let res = req.send(&app).await;
    res.problem(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "headers_too_large",
    );

    let res = Req::get("/v1/session")
        .bearer(&"a".repeat(10 * 1024))
        .send(&app)
        .await;
    res.problem(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "headers_too_large",
    );
    let res = Req::get("/healthz")
        .cookie(&"a".repeat(9 * 1024))
        .send(&app)
        .await;
    res.problem(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "headers_too_large",
    );
}

#[tokio::test]
async fn junk_tokens_are_invalid_tokens() {
    let app = TestApp::new();
    let res = Req::get("/v1/session")
        .bearer(&"a".repeat(7 * 1024))
        .send(&app)
        .await;
    res.problem(StatusCode::UNAUTHORIZED, "invalid_token");

    let res = Req::get("/v1/session")
        .header("cookie", b"__Host-sg_session=\xff\xfe\x80binary")
        .send(&app)
        .await;
    res.problem(StatusCode::UNAUTHORIZED, "invalid_token");
    let res = Req::get("/v1/session")
        .header("authorization", b"Bearer \xc3\x28")
        .send(&app)
        .await;
    res.problem(StatusCode::UNAUTHORIZED, "invalid_token");

    // A well-formed token of another kind, or a forged one.
    let res = Req::get("/v1/session")
        .bearer(&sessionguard_core::Token::generate(sessionguard_core::TokenKind::Refresh).reveal())
        .send(&app)
        .await;
    res.problem(StatusCode::UNAUTHORIZED, "invalid_token");
    let res = Req::get("/v1/session")
        .bearer(&sessionguard_core::Token::generate(sessionguard_core::TokenKind::Session).reveal())
        .send(&app)
        .await;
    res.problem(StatusCode::UNAUTHORIZED, "invalid_token");
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_get_problem_documents() {
    let app = TestApp::new();
    let res = Req::get("/nope").send(&app).await;
    res.problem(StatusCode::NOT_FOUND, "not_found");
    let res = Req::get("/v1/login").send(&app).await;
    res.problem(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    assert_eq!(res.header("allow"), Some("POST"));
    let res = Req::delete("/v1/sessions/revoke-others").send(&app).await;
    res.problem(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
}

#[tokio::test]
async fn store_failures_are_503_without_internals() {
    let app = TestApp::new();
    let alice = app.alice().await;
    app.store.fail_from_now();
    let res = Req::get("/v1/session")
        .cookie(&alice.token)
        .send(&app)
        .await;
    res.problem(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable");
    assert!(!res.text().contains("secret-path"));
    assert!(!res.text().contains("disk"));
    let res = Req::post("/v1/login")
        .json(json!({ "username": "alice", "password": PASSWORD }))
        .send(&app)
        .await;
    res.problem(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable");
}

#[tokio::test]
async fn a_panic_is_a_500_problem_document() {
    let app = TestApp::new();
    let alice = app.alice().await;
    app.store.panic_from_now();
    let res = Req::get("/v1/session")
        .cookie(&alice.token)
        .send(&app)
        .await;
    let p = res.problem(StatusCode::INTERNAL_SERVER_ERROR, "internal_error");
    assert!(!p.to_string().contains("panicked"));
}

#[tokio::test]
async fn healthz_answers_ok() {
    let app = TestApp::new();
    let res = Req::get("/healthz").send(&app).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json(), json!({ "status": "ok" }));
}

#[tokio::test]
async fn readyz_asks_the_store_and_healthz_never_does() {
    let app = TestApp::new();
    let res = Req::get("/readyz").send(&app).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.json(), json!({ "status": "ready" }));
    assert_eq!(res.header("cache-control"), Some("no-store"));
    let calls = app.store.calls();
    let res = Req::get("/healthz").send(&app).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(app.store.calls(), calls, "liveness never asks the store");

    // A store that cannot serve: not ready, without internals; still alive.
    app.store.fail_from_now();
    let res = Req::get("/readyz").send(&app).await;
    res.problem(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable");
    assert!(!res.text().contains("secret-path"), "{}", res.text());
    let res = Req::get("/healthz").send(&app).await;
    assert_eq!(res.status, StatusCode::OK);
}

// --------------------------------------------------------------------- reaper

/// Moves the paused Tokio clock by `d` and lets every task that became ready run.
async fn tick(d: Duration) {
    tokio::time::advance(d).await;
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn the_store_is_checked_at_every_interval_and_failures_do_not_stop_it() {
    let app = TestApp::new();
    let watch = sessionguard_server::spawn_store_watch(app.state.clone(), Duration::from_secs(30));
    tick(Duration::ZERO).await;
    let before = app.store.calls();
    tick(Duration::from_secs(29)).await;
    assert_eq!(app.store.calls(), before, "not before the interval");
    tick(Duration::from_secs(1)).await;
    assert_eq!(app.store.calls(), before + 1);
    app.store.fail_from_now();
    tick(Duration::from_secs(30)).await;
    tick(Duration::from_secs(30)).await;
    assert_eq!(app.store.calls(), before + 3, "checked again while failing");
    assert!(!watch.is_finished());
    watch.abort();
}

#[tokio::test(start_paused = true)]
async fn the_reaper_purges_sessions_past_their_tombstone_retention() {
    let app = TestApp::new();
    let engine = app.state.engine();
    let user = UserId::new("u1").unwrap();
    let ended = engine
        .create_session(&user, 0, ClientInfo::default())
        .await
        .unwrap();
    engine.logout(&ended.token.reveal()).await.unwrap();
    app.advance(20);
    let live = engine
        .create_session(&user, 0, ClientInfo::default())
        .await
        .unwrap();
    assert_eq!(app.store.inner().index().session_count(), 2);

    let reaper = sessionguard_server::spawn_reaper(app.state.clone(), Duration::from_secs(60));
    // Ended at 0 with its idle deadline at 30m; retention 1h: purgeable after 90m.
    // Two clocks move here, both by hand: `app.advance` moves the engine's
    // ManualClock, `tick` moves the paused Tokio clock (`start_paused`) to the
    // reaper's next tick and lets the reaper run. No wall time passes.
    app.advance(69);
    tick(Duration::from_secs(61)).await;
    assert_eq!(
        app.store.inner().index().session_count(),
        2,
        "at 89m it is 1 minute short"
    );
    app.advance(1);
    tick(Duration::from_secs(60)).await;
    assert_eq!(app.store.inner().index().session_count(), 1);
    reaper.abort();
    // The survivor is the live one (it has since timed out, but is still told why).
    let err = engine.status(&live.token.reveal()).await.unwrap_err();
    assert!(err.to_string().contains("idle_timeout"), "{err}");
}

#[tokio::test]
async fn a_json_body_must_be_an_object_not_an_array_of_its_fields() {
    let app = TestApp::new();
    let id = app.create_user("alice", PASSWORD).await;
    let res = Req::post(&format!("/v1/admin/users/{id}"))
        .bearer(ADMIN_TOKEN)
        .json(json!({ "profile": "admin" }))
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    // Serde would read `[null, null]` as `{"profile": null, "roles": null}`.
    Req::post(&format!("/v1/admin/users/{id}"))
        .bearer(ADMIN_TOKEN)
        .json(json!([null, null]))
        .send(&app)
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY, "malformed_request");
    let res = Req::get(&format!("/v1/admin/users/{id}"))
        .bearer(ADMIN_TOKEN)
        .send(&app)
        .await;
    assert_eq!(res.json()["profile"], "admin", "unchanged");
    Req::post("/v1/login")
        .json(json!(["alice", PASSWORD]))
        .send(&app)
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY, "malformed_request");
}
