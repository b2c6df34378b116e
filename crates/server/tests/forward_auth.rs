//! `GET /v1/auth`, forward authentication for reverse proxies, over the router
//! (oneshot) on a counted in-memory store and a manual clock. The same endpoint
//! behind real nginx, Caddy and Traefik is `tests/proxies.rs`.

mod common;

use axum::http::{Method, StatusCode};
use common::*;
use serde_json::json;

/// The user id of `alice` (created by [`TestApp::alice`]).
async fn alice_id(app: &TestApp, login: &Login) -> String {
    let res = Req::get("/v1/session/status")
        .cookie(&login.token)
        .send(app)
        .await;
    res.json()["user_id"].as_str().unwrap().to_owned()
}

#[track_caller]
fn refused(res: &Resp, code: &str, bearer: bool) {
    res.problem(StatusCode::UNAUTHORIZED, code);
    assert_eq!(res.header("x-auth-reason"), Some(code));
    let challenge = res.header("www-authenticate").unwrap();
    assert_eq!(
        challenge.contains("error=\"invalid_token\""),
        bearer,
        "{challenge}"
    );
    assert!(res.header("x-auth-user-id").is_none());
}

#[tokio::test]
async fn a_live_cookie_gets_200_with_the_identity_and_no_body() {
    let app = TestApp::new();
    let login = app.alice().await;
    let user_id = alice_id(&app, &login).await;
    let res = Req::get("/v1/auth").cookie(&login.token).send(&app).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert!(res.body.is_empty());
    assert_eq!(res.header("x-auth-user-id"), Some(user_id.as_str()));
    assert_eq!(res.header("x-auth-username"), Some("alice"));
    assert_eq!(
        res.header("x-auth-session-id"),
        Some(login.session_id().as_str())
    );
    assert_eq!(res.header("x-auth-roles"), Some(""));
    assert_eq!(
        res.header("x-auth-step-up-until"),
        login.body["step_up_expires_at"].as_str()
    );
    assert_eq!(res.header("x-auth-csrf-token"), Some(login.csrf().as_str()));
    assert!(res.header("set-cookie").is_none(), "nothing is due");
    assert_eq!(res.header("cache-control"), Some("no-store"));
}

#[tokio::test]
async fn no_credential_is_401_missing_credentials() {
    let app = TestApp::new();
    let res = Req::get("/v1/auth").send(&app).await;
    refused(&res, "missing_credentials", false);
    let res = Req::get("/v1/auth")
        .header("cookie", "other=1")
        .header("authorization", "Basic YTpi")
        .send(&app)
        .await;
    refused(&res, "missing_credentials", false);
}

#[tokio::test]
async fn any_method_is_answered() {
    let app = TestApp::new();
    let login = app.alice().await;
    for method in [Method::POST, Method::HEAD, Method::PUT, Method::DELETE] {
        let res = Req::new(method.clone(), "/v1/auth")
            .cookie(&login.token)
            .header("x-forwarded-method", "GET")
            .send(&app)
            .await;
        assert_eq!(res.status, StatusCode::OK, "{method}");
    }
}

#[tokio::test]
async fn a_logged_out_cookie_is_401_logged_out() {
    let app = TestApp::new();
    let login = app.alice().await;
    let res = Req::post("/v1/logout").browser(&login).send(&app).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    let res = Req::get("/v1/auth").cookie(&login.token).send(&app).await;
    refused(&res, "logged_out", false);
    assert!(res.json()["ended_at"].is_string());
}

#[tokio::test]
async fn an_idle_session_is_401_idle_timeout_and_a_forged_one_invalid_token() {
    let app = TestApp::new();
    let login = app.alice().await;
    app.advance(31);
    let res = Req::get("/v1/auth").cookie(&login.token).send(&app).await;
    refused(&res, "idle_timeout", false);
    let res = Req::get("/v1/auth").cookie("sgs_forged").send(&app).await;
    refused(&res, "invalid_token", false);
    let res = Req::get("/v1/auth")
        .header("cookie", b"__Host-sg_session=\xff".as_slice())
        .send(&app)
        .await;
    refused(&res, "invalid_token", false);
}

#[tokio::test]
async fn a_check_is_one_store_call() {
    let app = TestApp::new();
    let login = app.alice().await;
    // The first check of a user also reads its username and roles.
    let res = Req::get("/v1/auth").cookie(&login.token).send(&app).await;
    assert_eq!(res.status, StatusCode::OK);
    let before = app.store.calls();
    let res = Req::get("/v1/auth").cookie(&login.token).send(&app).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(
        app.store.calls() - before,
        1,
        "one load, no touch within the interval"
    );
    // A malformed credential never reaches the store.
    let before = app.store.calls();
    let res = Req::get("/v1/auth")
        .cookie("sgs_not-a-token")
        .send(&app)
        .await;
    refused(&res, "invalid_token", false);
    assert_eq!(app.store.calls(), before);
}

#[tokio::test]
async fn activity_through_the_proxy_extends_the_idle_deadline() {
    let app = TestApp::new();
    let login = app.alice().await;
    app.advance(20);
    let res = Req::get("/v1/auth").cookie(&login.token).send(&app).await;
    assert_eq!(res.status, StatusCode::OK);
    app.advance(20);
    let res = Req::get("/v1/auth").cookie(&login.token).send(&app).await;
    assert_eq!(
        res.status,
        StatusCode::OK,
        "40 minutes after login, 20 after the last request"
    );
}

#[tokio::test]
async fn a_role_change_is_seen_at_once_and_the_cookie_is_rotated() {
    let app = TestApp::new();
    let login = app.alice().await;
    let id = alice_id(&app, &login).await;
    let res = Req::post(&format!("/v1/admin/users/{id}"))
        .bearer(ADMIN_TOKEN)
        .json(json!({ "roles": ["ops", "admin"] }))
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let res = Req::get("/v1/auth").cookie(&login.token).send(&app).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.header("x-auth-roles"), Some("admin,ops"));
    let renewed = res
        .session_cookie()
        .expect("the privilege change rotates the cookie");
    assert_ne!(renewed, login.token);
    let res = Req::get("/v1/auth").cookie(&renewed).send(&app).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.header("x-auth-roles"), Some("admin,ops"));
    // Roles removed: the next check says so.
    Req::post(&format!("/v1/admin/users/{id}"))
        .bearer(ADMIN_TOKEN)
        .json(json!({ "roles": [] }))
        .send(&app)
        .await;
    let res = Req::get("/v1/auth").cookie(&renewed).send(&app).await;
    assert_eq!(res.header("x-auth-roles"), Some(""));
}

#[tokio::test]
async fn a_cookie_due_for_renewal_comes_back_in_set_cookie() {
    let app = TestApp::with_extra("[policy]\nrenewal_interval = \"10m\"\n");
    let login = app.alice().await;
    app.advance(11);
    let res = Req::get("/v1/auth").cookie(&login.token).send(&app).await;
    assert_eq!(res.status, StatusCode::OK);
    let set = res.set_cookie().unwrap();
    assert!(
        set.ends_with("; Path=/; Secure; HttpOnly; SameSite=Lax"),
        "{set}"
    );
    assert_ne!(res.session_cookie().unwrap(), login.token);
}

#[tokio::test]
async fn a_cross_origin_post_with_the_cookie_is_403_and_not_activity() {
    let app = TestApp::new();
    let login = app.alice().await;
    let before = app.store.calls();
    for (site_header, value) in [
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
        ("origin", "https://evil.example"),
        ("origin", "null"),
    ] {
        let res = Req::get("/v1/auth")
            .cookie(&login.token)
            .header("x-forwarded-method", "POST")
            .header(site_header, value)
            .send(&app)
            .await;
        res.problem(StatusCode::FORBIDDEN, "cross_origin_request");
        assert_eq!(res.header("x-auth-reason"), Some("cross_origin_request"));
        assert!(res.header("x-auth-user-id").is_none());
    }
    assert_eq!(app.store.calls(), before, "refused before the lookup");
    // nginx's name for the method, and the auth request's own method.
    let res = Req::get("/v1/auth")
        .cookie(&login.token)
        .header("x-original-method", "DELETE")
        .header("origin", "https://evil.example")
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let res = Req::post("/v1/auth")
        .cookie(&login.token)
        .header("sec-fetch-site", "cross-site")
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn same_origin_posts_and_cross_origin_reads_pass() {
    let app = TestApp::new();
    let login = app.alice().await;
    for (method, site_header, value) in [
        ("POST", "sec-fetch-site", "same-origin"),
        ("POST", "origin", ORIGIN),
        ("POST", "x-none", "no browser headers"),
        ("GET", "sec-fetch-site", "cross-site"),
        ("HEAD", "origin", "https://evil.example"),
    ] {
        let res = Req::get("/v1/auth")
            .cookie(&login.token)
            .header("x-forwarded-method", method)
            .header(site_header, value)
            .send(&app)
            .await;
        assert_eq!(
            res.status,
            StatusCode::OK,
            "{method} {site_header}: {value}"
        );
    }
}

#[tokio::test]
async fn bearer_credentials_are_not_subject_to_the_origin_rule() {
    let app = TestApp::new();
    app.create_user("alice", PASSWORD).await;
    let grant = app.token_login("alice", PASSWORD).await;
    let res = Req::get("/v1/auth")
        .bearer(&grant.access)
        .header("x-forwarded-method", "POST")
        .header("sec-fetch-site", "cross-site")
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
}

#[tokio::test]
async fn an_access_token_is_accepted_until_its_session_ends() {
    let app = TestApp::new();
    app.create_user("alice", PASSWORD).await;
    let grant = app.token_login("alice", PASSWORD).await;
    let res = Req::get("/v1/auth").bearer(&grant.access).send(&app).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.header("x-auth-username"), Some("alice"));
    assert_eq!(
        res.header("x-auth-session-id"),
        Some(grant.session_id.as_str())
    );
    let res = Req::post("/v1/logout")
        .bearer(&grant.access)
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    let res = Req::get("/v1/auth").bearer(&grant.access).send(&app).await;
    refused(&res, "logged_out", true);
    let res = Req::get("/v1/auth").bearer("eyJ.eyJ.sig").send(&app).await;
    refused(&res, "invalid_token", true);
}

#[tokio::test]
async fn a_bearer_session_token_is_accepted() {
    let app = TestApp::new();
    let login = app.alice().await;
    let res = Req::get("/v1/auth").bearer(&login.token).send(&app).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(
        res.header("x-auth-session-id"),
        Some(login.session_id().as_str())
    );
}

#[tokio::test]
async fn an_api_token_is_accepted_without_a_session_until_it_is_revoked() {
    let app = TestApp::new();
    let login = app.alice().await;
    let res = Req::post("/v1/api-tokens")
        .bearer(&login.token)
        .json(json!({ "name": "ci" }))
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let token = res.json()["token"].as_str().unwrap().to_owned();
    let id = res.json()["id"].as_str().unwrap().to_owned();
    let res = Req::get("/v1/auth").bearer(&token).send(&app).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.header("x-auth-username"), Some("alice"));
    assert!(res.header("x-auth-session-id").is_none());
    assert!(res.header("x-auth-step-up-until").is_none());
    let res = Req::delete(&format!("/v1/api-tokens/{id}"))
        .bearer(&login.token)
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    let res = Req::get("/v1/auth").bearer(&token).send(&app).await;
    refused(&res, "revoked_by_user", true);
}

#[tokio::test]
async fn a_refresh_token_is_not_a_credential_here() {
    let app = TestApp::new();
    app.create_user("alice", PASSWORD).await;
    let grant = app.token_login("alice", PASSWORD).await;
    let res = Req::get("/v1/auth").bearer(&grant.refresh).send(&app).await;
    refused(&res, "invalid_token", true);
}

#[tokio::test]
async fn identity_headers_sent_by_the_client_are_never_echoed() {
    let app = TestApp::new();
    let login = app.alice().await;
    let user_id = alice_id(&app, &login).await;
    let res = Req::get("/v1/auth")
        .cookie(&login.token)
        .header("x-auth-user-id", "mallory")
        .header("x-auth-roles", "admin")
        .send(&app)
        .await;
    assert_eq!(res.header("x-auth-user-id"), Some(user_id.as_str()));
    assert_eq!(res.header("x-auth-roles"), Some(""));
    let res = Req::get("/v1/auth")
        .header("x-auth-user-id", "mallory")
        .send(&app)
        .await;
    refused(&res, "missing_credentials", false);
}

#[tokio::test]
async fn redirect_login_sends_a_refused_browser_to_the_login_page() {
    let app = TestApp::new();
    let res = Req::get("/v1/auth?redirect=login")
        .header("x-forwarded-uri", "/app/orders?page=2")
        .header("x-forwarded-host", "app.example")
        .header("x-forwarded-proto", "https")
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::FOUND);
    assert_eq!(
        res.header("location"),
        Some(
            "https://app.example/login?return_to=https%3A%2F%2Fapp.example%2Fapp%2Forders%3Fpage%3D2"
        )
    );
    assert_eq!(res.header("x-auth-reason"), Some("missing_credentials"));
    assert!(res.body.is_empty());
    // Another origin's URL is never a return_to.
    let res = Req::get("/v1/auth?redirect=login")
        .header("x-original-uri", "/steal")
        .header("host", "evil.example")
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::FOUND);
    assert_eq!(res.header("location"), Some("https://app.example/login"));
}

#[tokio::test]
async fn redirect_login_keeps_the_reason_and_a_live_session_passes() {
    let app = TestApp::new();
    let login = app.alice().await;
    let res = Req::get("/v1/auth?redirect=login")
        .cookie(&login.token)
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::OK);
    Req::post("/v1/logout").browser(&login).send(&app).await;
    let res = Req::get("/v1/auth?redirect=login")
        .cookie(&login.token)
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::FOUND);
    assert_eq!(res.header("x-auth-reason"), Some("logged_out"));
    // A cross-site unsafe request is refused, not redirected.
    let res = Req::get("/v1/auth?redirect=login")
        .cookie(&login.token)
        .header("x-forwarded-method", "POST")
        .header("sec-fetch-site", "cross-site")
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_unknown_redirect_is_a_bad_query() {
    let app = TestApp::new();
    let res = Req::get("/v1/auth?redirect=https://evil.example")
        .send(&app)
        .await;
    res.problem(StatusCode::BAD_REQUEST, "invalid_query");
}

#[tokio::test]
async fn a_store_failure_fails_closed() {
    let app = TestApp::new();
    let login = app.alice().await;
    app.store.fail_from_now();
    let res = Req::get("/v1/auth").cookie(&login.token).send(&app).await;
    res.problem(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable");
    assert!(res.header("x-auth-user-id").is_none());
}
