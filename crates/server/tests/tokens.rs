//! The REST-API token flow end to end through the router, over an in-memory store
//! and a manual clock: the token endpoint (password and refresh grants), access
//! tokens as bearer credentials, logout and password change with tokens, personal
//! API tokens, introspection, revocation, the JWKS and key rotation, hostile JWTs,
//! and interoperability with an independent JOSE implementation.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{ADMIN_TOKEN, Grant, ORIGIN, PASSWORD, Req, START, TestApp, at};
use ed25519_dalek::Signer as _;
use ed25519_dalek::pkcs8::DecodePrivateKey as _;
use serde_json::{Value, json};
use sessionguard_core::{Clock as _, Reason, SessionId, Timestamp};
use sessionguard_jwt::{AccessClaims, JwtError};
use sessionguard_server::keys;
use sha2::{Digest as _, Sha256};

const NEW_PASSWORD: &str = "a brand new password";
const INTROSPECTION_TOKEN: &str = "resource-server-introspection-0123456789";

/// `START` in whole seconds.
fn start_secs() -> i64 {
    START.as_secs()
}

/// The decoded header and payload of a JWT.
fn jwt_parts(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let mut next = || -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap()).unwrap()
    };
    (next(), next())
}

fn b64(v: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(v)
}

fn json_b64(v: &Value) -> String {
    b64(serde_json::to_vec(v).unwrap())
}

#[track_caller]
fn assert_inactive(answer: &Value) {
    assert_eq!(answer, &json!({ "active": false }));
}

/// Asserts a 401 for a bearer credential with `code`, with the RFC 6750 challenge.
#[track_caller]
fn assert_bearer_refused(res: &common::Resp, code: &str) {
    res.problem(StatusCode::UNAUTHORIZED, code);
    assert_eq!(
        res.header("www-authenticate"),
        Some(r#"Bearer realm="sessionguard", error="invalid_token""#)
    );
}

/// Asserts that a token grant succeeded (and its answer has the right shape).
#[track_caller]
fn granted(res: common::Resp) {
    let _ = Grant::from(res);
}

async fn alice_tokens(app: &TestApp) -> Grant {
    app.create_user("alice", PASSWORD).await;
    app.token_login("alice", PASSWORD).await
}

// ------------------------------------------------------------ the seed scenario

#[tokio::test]
async fn seed_scenario_refresh_rotation_reuse_and_logout() {
    let app = TestApp::new();
    let user_id = app.create_user("alice", PASSWORD).await;
    let first = app.token_login("alice", PASSWORD).await;

    // The answer: RFC 6749 §5.1, no cookie, never cached.
    assert_eq!(first.body["token_type"], "Bearer");
    assert_eq!(first.body["expires_in"], 300);
    assert!(first.refresh.starts_with("sgr_"));
    assert_eq!(first.access.split('.').count(), 3);
    assert!(first.res.set_cookie().is_none());
    assert_eq!(first.res.header("cache-control"), Some("no-store"));
    assert_eq!(first.res.header("pragma"), Some("no-cache"));
    let (header, claims) = jwt_parts(&first.access);
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(
        header["kid"],
        app.state.keys().active().kid().as_str(),
        "{header}"
    );
    assert_eq!(claims["iss"], ORIGIN);
    assert_eq!(claims["aud"], ORIGIN);
    assert_eq!(claims["sub"], user_id.as_str());
    assert_eq!(claims["sid"], first.session_id.as_str());
    assert_eq!(claims["iat"], start_secs());
    assert_eq!(claims["exp"], start_secs() + 300);
    assert_eq!(claims["jti"].as_str().unwrap().len(), 22);
    // RFC 9068's client_id: a grant without one is the first party's.
    assert_eq!(claims["client_id"], "first-party");

    // The access token is a bearer credential here.
    let res = Req::get("/v1/session")
        .bearer(&first.access)
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.json()["session_id"], first.session_id.as_str());
    assert_eq!(res.json()["user_id"], user_id.as_str());

    // Refresh: a new pair for the same session.
    app.advance(1);
    let second = Grant::from(app.refresh(&first.refresh).await);
    assert_ne!(second.refresh, first.refresh);
    assert_ne!(second.access, first.access);
    assert_eq!(second.session_id, first.session_id);
    assert_eq!(jwt_parts(&second.access).1["iat"], start_secs() + 60);
    let res = Req::get("/v1/session")
        .bearer(&second.access)
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::OK);

    // The replaced refresh token, presented again beyond the grace window, is reuse:
    // the whole session ends.
    app.advance_secs(6);
    let res = app.refresh(&first.refresh).await;
    let e = res.oauth_error(
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "refresh_reuse_detected",
    );
    assert!(e["ended_at"].is_string(), "{e}");
    let res = app.refresh(&second.refresh).await;
    res.oauth_error(
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "refresh_reuse_detected",
    );
    let res = Req::get("/v1/session")
        .bearer(&second.access)
        .send(&app)
        .await;
    assert_bearer_refused(&res, "refresh_reuse_detected");

    // A fresh login, then logout with the access token.
    let fresh = app.token_login("alice", PASSWORD).await;
    assert_eq!(app.introspect(&fresh.access).await["active"], true);
    assert_eq!(app.introspect(&fresh.refresh).await["active"], true);
    app.advance(2);
    let res = Req::post("/v1/logout")
        .bearer(&fresh.access)
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    assert!(res.set_cookie().is_none());

    let res = app.refresh(&fresh.refresh).await;
    let e = res.oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "logged_out");
    let logged_out_at = START.saturating_add(Duration::from_secs(3 * 60 + 6));
    assert_eq!(e["ended_at"], logged_out_at.to_rfc3339());
    let res = Req::get("/v1/session")
        .bearer(&fresh.access)
        .send(&app)
        .await;
    assert_bearer_refused(&res, "logged_out");
    assert_inactive(&app.introspect(&fresh.access).await);
    assert_inactive(&app.introspect(&fresh.refresh).await);
}

// ------------------------------------------------------------- token endpoint

#[tokio::test]
async fn password_grant_accepts_json_and_client_id_and_is_origin_checked() {
    let app = TestApp::new();
    app.create_user("alice", PASSWORD).await;
    let res = Req::post("/v1/token")
        .json(json!({
            "grant_type": "password", "username": "alice", "password": PASSWORD,
            "client_id": "mobile-app"
        }))
        .send(&app)
        .await;
    let grant = Grant::from(res);
    assert_eq!(jwt_parts(&grant.access).1["client_id"], "mobile-app");
    // The refresh grant carries the client_id the client sends then.
    let res = Req::post("/v1/token")
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &grant.refresh),
            ("client_id", "mobile-app"),
        ])
        .send(&app)
        .await;
    let next = Grant::from(res);
    assert_eq!(jwt_parts(&next.access).1["client_id"], "mobile-app");

    let res = Req::post("/v1/token")
        .header("origin", "https://evil.example")
        .form(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PASSWORD),
        ])
        .send(&app)
        .await;
    res.oauth_error(
        StatusCode::FORBIDDEN,
        "invalid_request",
        "cross_origin_request",
    );
    let res = Req::post("/v1/token")
        .header("origin", ORIGIN)
        .form(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PASSWORD),
        ])
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::OK);
}

#[tokio::test]
async fn token_endpoint_errors_use_the_oauth_form() {
    let app = TestApp::new();
    app.create_user("alice", PASSWORD).await;
    let post = |pairs: &[(&str, &str)]| Req::post("/v1/token").form(pairs);

    let wrong = post(&[
        ("grant_type", "password"),
        ("username", "alice"),
        ("password", "not the password"),
    ])
    .send(&app)
    .await;
    let unknown = post(&[
        ("grant_type", "password"),
        ("username", "bob"),
        ("password", PASSWORD),
    ])
    .send(&app)
    .await;
    wrong.oauth_error(
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "invalid_credentials",
    );
    assert_eq!(wrong.body, unknown.body);
    assert_eq!(wrong.headers, unknown.headers);

    let res = post(&[("grant_type", "client_credentials")])
        .send(&app)
        .await;
    res.oauth_error(
        StatusCode::BAD_REQUEST,
        "unsupported_grant_type",
        "unsupported_grant_type",
    );
    let res = post(&[("username", "alice"), ("password", PASSWORD)])
        .send(&app)
        .await;
    let e = res.oauth_error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "malformed_request",
    );
    assert!(
        e["error_description"]
            .as_str()
            .unwrap()
            .contains("grant_type")
    );
    for pairs in [
        &[("grant_type", "password"), ("password", PASSWORD)][..],
        &[("grant_type", "password"), ("username", "alice")][..],
        &[("grant_type", "refresh_token")][..],
    ] {
        let res = post(pairs).send(&app).await;
        res.oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "malformed_request",
        );
    }
    let res = post(&[
        ("grant_type", "password"),
        ("username", "alice"),
        ("password", PASSWORD),
        ("client_id", "tab\there"),
    ])
    .send(&app)
    .await;
    res.oauth_error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "malformed_request",
    );
    let res = Req::post("/v1/token")
        .raw("text/plain", "grant_type=password")
        .send(&app)
        .await;
    res.oauth_error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "unsupported_media_type",
    );
    // Unknown, forged and other kinds of refresh token.
    for junk in [
        "sgr_nope",
        "garbage",
        &sessionguard_core::Token::generate(sessionguard_core::TokenKind::Refresh).reveal(),
        &sessionguard_core::Token::generate(sessionguard_core::TokenKind::Session).reveal(),
    ] {
        let res = app.refresh(junk).await;
        res.oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "invalid_token");
    }
}

#[tokio::test]
async fn password_grant_revokes_a_presented_session_token() {
    let app = TestApp::new();
    let cookie = app.alice().await;
    let res = Req::post("/v1/token")
        .cookie(&cookie.token)
        .form(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PASSWORD),
        ])
        .send(&app)
        .await;
    granted(res);
    let res = Req::get("/v1/session")
        .cookie(&cookie.token)
        .send(&app)
        .await;
    res.problem(StatusCode::UNAUTHORIZED, "superseded");
}

#[tokio::test]
async fn access_tokens_never_outlive_the_session() {
    let app = TestApp::with_extra("[policy]\nidle_timeout = \"30m\"\nabsolute_timeout = \"1h\"\n");
    let mut grant = alice_tokens(&app).await;
    for _ in 0..2 {
        app.advance(25);
        grant = Grant::from(app.refresh(&grant.refresh).await);
    }
    // 50 minutes in: 10 minutes left, more than the 5-minute lifetime.
    assert_eq!(grant.body["expires_in"], 300);
    app.advance(7);
    let grant = Grant::from(app.refresh(&grant.refresh).await);
    assert_eq!(
        grant.body["expires_in"], 180,
        "capped at the absolute deadline"
    );
    assert_eq!(jwt_parts(&grant.access).1["exp"], start_secs() + 3600);
    app.advance(3);
    let res = app.refresh(&grant.refresh).await;
    res.oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "absolute_timeout");
}

// ---------------------------------------------------------------- grace window

#[tokio::test]
async fn a_repeat_within_the_grace_window_gets_the_same_successor() {
    let app = TestApp::new();
    let grant = alice_tokens(&app).await;
    let a = Grant::from(app.refresh(&grant.refresh).await);
    app.advance_secs(4);
    let b = Grant::from(app.refresh(&grant.refresh).await);
    assert_eq!(a.refresh, b.refresh);
    assert_eq!(a.session_id, b.session_id);
    // The successor is the live token; the session lives on.
    let c = Grant::from(app.refresh(&b.refresh).await);
    assert_ne!(c.refresh, b.refresh);
    let res = Req::get("/v1/session").bearer(&c.access).send(&app).await;
    assert_eq!(res.status, StatusCode::OK);
}

#[tokio::test]
async fn without_a_grace_window_a_repeat_is_reuse() {
    let app = TestApp::with_extra("[policy]\nrefresh_reuse_grace = \"0s\"\n");
    let grant = alice_tokens(&app).await;
    let a = Grant::from(app.refresh(&grant.refresh).await);
    let res = app.refresh(&grant.refresh).await;
    res.oauth_error(
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "refresh_reuse_detected",
    );
    let res = app.refresh(&a.refresh).await;
    res.oauth_error(
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "refresh_reuse_detected",
    );
}

#[tokio::test]
async fn a_repeat_after_the_successor_was_used_is_reuse_even_within_grace() {
    let app = TestApp::new();
    let grant = alice_tokens(&app).await;
    let a = Grant::from(app.refresh(&grant.refresh).await);
    granted(app.refresh(&a.refresh).await);
    let res = app.refresh(&grant.refresh).await;
    res.oauth_error(
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "refresh_reuse_detected",
    );
}

/// Asserts that the session of the bearer `token` is alive (200 at `/v1/session`).
async fn assert_session_lives(app: &TestApp, token: &str) {
    let res = Req::get("/v1/session").bearer(token).send(app).await;
    assert_eq!(
        res.status,
        StatusCode::OK,
        "the session lives: {}",
        res.text()
    );
}

/// The codes of a user's audit events, oldest first, from the admin API.
async fn event_codes(app: &TestApp, user_id: &str) -> Vec<String> {
    let res = Req::get(&format!("/v1/admin/events?user_id={user_id}&limit=1000"))
        .bearer(ADMIN_TOKEN)
        .send(app)
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    res.json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect()
}

/// A password grant by `client_id`.
async fn token_login_as(app: &TestApp, client_id: &str) -> Grant {
    let res = Req::post("/v1/token")
        .form(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PASSWORD),
            ("client_id", client_id),
        ])
        .send(app)
        .await;
    Grant::from(res)
}

#[tokio::test]
async fn a_refresh_token_works_only_with_the_client_id_it_was_issued_to() {
    let app = TestApp::new();
    let user_id = app.create_user("alice", PASSWORD).await;
    let mobile = token_login_as(&app, "mobile-app").await;
    assert_eq!(jwt_parts(&mobile.access).1["client_id"], "mobile-app");

    // Another client_id, or none, is refused: invalid_grant, code
    // client_mismatch; nothing changes, and the attempt is on record.
    for res in [
        app.refresh_as(&mobile.refresh, "web").await,
        app.refresh(&mobile.refresh).await,
        app.refresh_as(&mobile.refresh, "first-party").await,
    ] {
        res.oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "client_mismatch");
    }
    let codes = event_codes(&app, &user_id).await;
    assert_eq!(
        codes
            .iter()
            .filter(|c| *c == "refresh_client_mismatch")
            .count(),
        3,
        "{codes:?}"
    );
    assert_session_lives(&app, &mobile.access).await;
    // Its own client_id works, and the new pair is that client's too.
    let next = Grant::from(app.refresh_as(&mobile.refresh, "mobile-app").await);
    assert_eq!(jwt_parts(&next.access).1["client_id"], "mobile-app");
    app.refresh(&next.refresh).await.oauth_error(
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "client_mismatch",
    );

    // A first-party login (no client_id) works without one, or with the
    // first-party id spelled out, and not for a named client.
    let first = app.token_login("alice", PASSWORD).await;
    assert_eq!(jwt_parts(&first.access).1["client_id"], "first-party");
    app.refresh_as(&first.refresh, "mobile-app")
        .await
        .oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "client_mismatch");
    let again = Grant::from(app.refresh_as(&first.refresh, "first-party").await);
    granted(app.refresh(&again.refresh).await);

    // A malformed client_id is a malformed request, never a mismatch.
    app.refresh_as(&again.refresh, "tab\there")
        .await
        .oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "malformed_request",
        );
}

#[tokio::test]
async fn a_repeat_within_grace_is_honoured_only_for_its_client_and_is_audited() {
    let app = TestApp::new();
    let user_id = app.create_user("alice", PASSWORD).await;
    let grant = token_login_as(&app, "mobile-app").await;
    let a = Grant::from(app.refresh_as(&grant.refresh, "mobile-app").await);
    app.advance_secs(2);
    // The retry of the client it was issued to: the same successor, on record.
    let b = Grant::from(app.refresh_as(&grant.refresh, "mobile-app").await);
    assert_eq!(a.refresh, b.refresh);
    let codes = event_codes(&app, &user_id).await;
    assert_eq!(codes.last().map(String::as_str), Some("refresh_repeated"));

    // The same token from another client inside the window is no retry: reuse,
    // and the session ends.
    app.refresh_as(&grant.refresh, "elsewhere")
        .await
        .oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "refresh_reuse_detected",
        );
    app.refresh_as(&b.refresh, "mobile-app").await.oauth_error(
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "refresh_reuse_detected",
    );
    let codes = event_codes(&app, &user_id).await;
    assert_eq!(
        codes.iter().filter(|c| *c == "refresh_repeated").count(),
        1,
        "{codes:?}"
    );
    assert!(
        codes.iter().any(|c| c == "refresh_reuse_detected"),
        "{codes:?}"
    );
}

// ------------------------------------------------------------------------ race

/// `n` refreshes of one token at once; the successful answers' refresh tokens.
async fn race(app: &TestApp, refresh: &str, n: usize) -> (Vec<String>, Vec<common::Resp>) {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let router = app.router.clone();
            let req = Req::post("/v1/token")
                .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh)])
                .build();
            // Each request on its own task, so that they really run in parallel on
            // the multi-threaded runtime.
            tokio::spawn(async move {
                use http_body_util::BodyExt as _;
                use tower::ServiceExt as _;
                let res = router.oneshot(req).await.unwrap();
                let status = res.status();
                let headers = res.headers().clone();
                let body = res.into_body().collect().await.unwrap().to_bytes();
                common::Resp {
                    status,
                    headers,
                    body,
                }
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut losers = Vec::new();
    for t in tasks {
        let res = t.await.unwrap();
        if res.status == StatusCode::OK {
            winners.push(res.json()["refresh_token"].as_str().unwrap().to_owned());
        } else {
            losers.push(res);
        }
    }
    (winners, losers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_refreshes_never_leave_two_live_successors() {
    for grace in ["5s", "0s"] {
        let app = TestApp::with_extra(&format!("[policy]\nrefresh_reuse_grace = \"{grace}\"\n"));
        app.create_user("alice", PASSWORD).await;
        for round in 0..20 {
            let grant = app.token_login("alice", PASSWORD).await;
            let (winners, losers) = race(&app, &grant.refresh, 8).await;
            let distinct: HashSet<_> = winners.iter().collect();
            assert_eq!(
                distinct.len(),
                1,
                "grace {grace}, round {round}: {winners:?}"
            );
            let mut alive = 0;
            for token in &distinct {
                if app.introspect(token).await["active"] == true {
                    alive += 1;
                }
            }
            assert!(alive <= 1, "grace {grace}, round {round}");
            for res in &losers {
                res.oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "refresh_reuse_detected",
                );
            }
            if grace == "5s" {
                assert!(
                    losers.is_empty(),
                    "within grace every racer gets the successor"
                );
                assert_eq!(alive, 1);
            } else {
                assert_eq!(winners.len(), 1, "exactly one racer rotates");
                assert_eq!(alive, 0, "the losers' reuse ended the session");
            }
        }
    }
}

// ------------------------------------------------------------ password change

#[tokio::test]
async fn password_change_with_an_access_token_returns_a_new_pair_and_ends_the_rest() {
    let app = TestApp::new();
    app.create_user("alice", PASSWORD).await;
    let res = Req::post("/v1/token")
        .form(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PASSWORD),
            ("client_id", "cli"),
        ])
        .send(&app)
        .await;
    let laptop = Grant::from(res);
    let phone = app.token_login("alice", PASSWORD).await;
    let api_token = create_api_token(&app, &laptop.access, "ci").await;
    app.advance(3);

    let res = Req::post("/v1/password")
        .bearer(&laptop.access)
        .json(json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD }))
        .send(&app)
        .await;
    let new = Grant::from(res);
    assert!(new.res.set_cookie().is_none());
    assert_eq!(new.body["token_type"], "Bearer");
    assert_eq!(new.body["expires_in"], 300);
    assert!(new.body.get("session_token").is_none());
    assert_ne!(new.session_id, laptop.session_id);
    assert_eq!(jwt_parts(&new.access).1["client_id"], "cli");

    let res = Req::get("/v1/session").bearer(&new.access).send(&app).await;
    assert_eq!(res.status, StatusCode::OK);
    // The new refresh token is the same client's.
    app.refresh(&new.refresh).await.oauth_error(
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "client_mismatch",
    );
    granted(app.refresh_as(&new.refresh, "cli").await);

    let res = Req::get("/v1/session")
        .bearer(&laptop.access)
        .send(&app)
        .await;
    assert_bearer_refused(&res, "password_changed");
    for (old, client) in [(&laptop.refresh, "cli"), (&phone.refresh, "first-party")] {
        let e = app.refresh_as(old, client).await.oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "password_changed",
        );
        assert_eq!(e["ended_at"], at(3));
    }
    assert_inactive(&app.introspect(&api_token).await);
    let err = app
        .state
        .engine()
        .validate_api_token(&api_token)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, sessionguard_core::Error::Rejected(r) if r.reason == Reason::PasswordChanged),
        "{err}"
    );
}

#[tokio::test]
async fn api_tokens_survive_a_password_change_when_the_policy_says_so() {
    let app = TestApp::with_extra("[policy]\nrevoke_api_tokens_on_password_change = false\n");
    let grant = alice_tokens(&app).await;
    let api_token = create_api_token(&app, &grant.access, "ci").await;
    let res = Req::post("/v1/password")
        .bearer(&grant.access)
        .json(json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD }))
        .send(&app)
        .await;
    let new = Grant::from(res);
    assert_eq!(app.introspect(&api_token).await["active"], true);
    let res = Req::get("/v1/api-tokens")
        .bearer(&new.access)
        .send(&app)
        .await;
    assert_eq!(res.json()["api_tokens"].as_array().unwrap().len(), 1);
    // The sessions still ended.
    app.refresh(&grant.refresh).await.oauth_error(
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "password_changed",
    );
}

#[tokio::test]
async fn a_wrong_current_password_changes_nothing_for_access_token_clients() {
    let app = TestApp::new();
    let grant = alice_tokens(&app).await;
    let res = Req::post("/v1/password")
        .bearer(&grant.access)
        .json(json!({ "current_password": "not the password", "new_password": NEW_PASSWORD }))
        .send(&app)
        .await;
    res.problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    granted(app.refresh(&grant.refresh).await);
}

// --------------------------------------------------------------------- logout

#[tokio::test]
async fn logout_with_a_refresh_token_in_the_header_or_the_body() {
    let app = TestApp::new();
    app.create_user("alice", PASSWORD).await;

    let a = app.token_login("alice", PASSWORD).await;
    let res = Req::post("/v1/logout").bearer(&a.refresh).send(&app).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    let res = Req::get("/v1/session").bearer(&a.access).send(&app).await;
    assert_bearer_refused(&res, "logged_out");

    let b = app.token_login("alice", PASSWORD).await;
    let res = Req::post("/v1/logout")
        .json(json!({ "refresh_token": b.refresh }))
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    app.refresh(&b.refresh).await.oauth_error(
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "logged_out",
    );

    let c = app.token_login("alice", PASSWORD).await;
    let res = Req::post("/v1/logout")
        .form(&[("refresh_token", &c.refresh)])
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());

    // A dead one says why; an unknown one is invalid_token.
    let res = Req::post("/v1/logout").bearer(&a.refresh).send(&app).await;
    assert_bearer_refused(&res, "logged_out");
    let res = Req::post("/v1/logout")
        .json(json!({ "refresh_token": "sgr_unknown" }))
        .send(&app)
        .await;
    res.problem(StatusCode::UNAUTHORIZED, "invalid_token");
    let forged = sessionguard_core::Token::generate(sessionguard_core::TokenKind::Refresh);
    let res = Req::post("/v1/logout")
        .bearer(&forged.reveal())
        .send(&app)
        .await;
    assert_bearer_refused(&res, "invalid_token");
}

#[tokio::test]
async fn logout_without_any_credential_is_refused_and_a_bad_body_is_malformed() {
    let app = TestApp::new();
    let res = Req::post("/v1/logout").send(&app).await;
    res.problem(StatusCode::UNAUTHORIZED, "invalid_token");
    let res = Req::post("/v1/logout")
        .raw("application/json", "{\"refresh_token\": ")
        .send(&app)
        .await;
    res.problem(StatusCode::BAD_REQUEST, "malformed_request");
    // An empty JSON body is no body.
    let grant = alice_tokens(&app).await;
    let res = Req::post("/v1/logout")
        .bearer(&grant.access)
        .raw("application/json", "")
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
}

// ------------------------------------------------------- access tokens as bearer

#[tokio::test]
async fn access_tokens_count_as_activity_only_where_sessions_do() {
    let app = TestApp::new();
    let grant = alice_tokens(&app).await;
    app.advance(4);
    let res = Req::get("/v1/session/status")
        .bearer(&grant.access)
        .send(&app)
        .await;
    assert_eq!(res.json()["idle_expires_at"], at(30));
    let res = Req::get("/v1/session")
        .bearer(&grant.access)
        .send(&app)
        .await;
    assert_eq!(res.json()["idle_expires_at"], at(34));
    // No CSRF token needed with a bearer access token.
    let other = app.token_login("alice", PASSWORD).await;
    let res = Req::post("/v1/sessions/revoke-others")
        .bearer(&grant.access)
        .header("sec-fetch-site", "cross-site")
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    let res = Req::get("/v1/session")
        .bearer(&other.access)
        .send(&app)
        .await;
    assert_bearer_refused(&res, "signed_out_everywhere");
}

#[tokio::test]
async fn an_access_token_whose_session_timed_out_says_so() {
    let app = TestApp::new();
    let grant = alice_tokens(&app).await;
    // Within the token's lifetime, but the session is idle past its deadline:
    // only possible with a long-lived token, so sign one by hand.
    let claims = AccessClaims::new(
        ORIGIN,
        jwt_parts(&grant.access).1["sub"].as_str().unwrap(),
        ORIGIN,
        SessionId::parse(&grant.session_id).unwrap(),
        START.saturating_add(Duration::from_secs(29 * 60)),
        Duration::from_secs(3600),
    );
    let long = app.state.keys().sign(&claims).unwrap();
    app.advance(31);
    let res = Req::get("/v1/session").bearer(&long).send(&app).await;
    assert_bearer_refused(&res, "idle_timeout");
}

// ------------------------------------------------------------------ API tokens

async fn create_api_token(app: &TestApp, bearer: &str, name: &str) -> String {
    let res = Req::post("/v1/api-tokens")
        .bearer(bearer)
        .json(json!({ "name": name }))
        .send(app)
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    res.json()["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn api_tokens_are_shown_once_listed_without_secret_and_bounded() {
    let app = TestApp::new();
    let grant = alice_tokens(&app).await;
    let res = Req::post("/v1/api-tokens")
        .bearer(&grant.access)
        .json(json!({ "name": "deploy bot", "expires_in": 3600 }))
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let created = res.json();
    let token = created["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("sga_"));
    assert_eq!(created["name"], "deploy bot");
    assert_eq!(created["created_at"], at(0));
    assert_eq!(created["expires_at"], at(60));
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 22);

    // The default lifetime is the maximum.
    app.advance(1);
    let res = Req::post("/v1/api-tokens")
        .bearer(&grant.access)
        .json(json!({ "name": "forever-ish" }))
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::CREATED);
    let default_expiry = START.saturating_add(Duration::from_secs(90 * 86_400 + 60));
    assert_eq!(res.json()["expires_at"], default_expiry.to_rfc3339());

    let res = Req::get("/v1/api-tokens")
        .bearer(&grant.access)
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(!res.text().contains(&token[4..]), "never the secret");
    let list = res.json()["api_tokens"].as_array().unwrap().clone();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["name"], "forever-ish", "newest first");
    assert_eq!(list[1]["id"], id.as_str());
    assert_eq!(list[1]["expires_at"], at(60));
    assert!(list[1]["last_used_at"].is_null());
    assert!(list[1].get("token").is_none());

    for (body, code) in [
        (
            json!({ "name": "x", "expires_in": 90 * 86_400 + 1 }),
            "invalid_expiry",
        ),
        (json!({ "name": "x", "expires_in": 0 }), "invalid_expiry"),
        (json!({ "name": "x", "expires_in": -5 }), "invalid_expiry"),
        (json!({ "name": "" }), "invalid_name"),
        (json!({ "name": "   " }), "invalid_name"),
        (json!({ "name": "a\nb" }), "invalid_name"),
        (json!({ "name": "n".repeat(101) }), "invalid_name"),
    ] {
        let res = Req::post("/v1/api-tokens")
            .bearer(&grant.access)
            .json(body)
            .send(&app)
            .await;
        res.problem(StatusCode::UNPROCESSABLE_ENTITY, code);
    }
    let res = Req::post("/v1/api-tokens")
        .bearer(&grant.access)
        .json(json!({ "name": "x", "expires_in": 90 * 86_400 }))
        .send(&app)
        .await;
    assert_eq!(
        res.status,
        StatusCode::CREATED,
        "exactly the maximum is fine"
    );
}

#[tokio::test]
async fn api_tokens_need_a_session_and_cookies_need_csrf() {
    let app = TestApp::new();
    let alice = app.alice().await;
    let body = json!({ "name": "from the browser" });
    let res = Req::post("/v1/api-tokens")
        .json(body.clone())
        .send(&app)
        .await;
    res.problem(StatusCode::UNAUTHORIZED, "invalid_token");
    let res = Req::post("/v1/api-tokens")
        .cookie(&alice.token)
        .header("origin", ORIGIN)
        .json(body.clone())
        .send(&app)
        .await;
    res.problem(StatusCode::FORBIDDEN, "csrf_token_invalid");
    let res = Req::post("/v1/api-tokens")
        .browser(&alice)
        .json(body.clone())
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let api_token = res.json()["token"].as_str().unwrap().to_owned();
    // A bearer session token works too; an API token does not manage API tokens.
    let res = Req::get("/v1/api-tokens")
        .bearer(&alice.token)
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::OK);
    let res = Req::get("/v1/api-tokens")
        .bearer(&api_token)
        .send(&app)
        .await;
    assert_bearer_refused(&res, "invalid_token");
}

#[tokio::test]
async fn users_delete_their_own_api_tokens_and_no_one_elses() {
    let app = TestApp::new();
    let alice = alice_tokens(&app).await;
    app.create_user("bob", PASSWORD).await;
    let bob = app.token_login("bob", PASSWORD).await;
    let res = Req::post("/v1/api-tokens")
        .bearer(&alice.access)
        .json(json!({ "name": "ci" }))
        .send(&app)
        .await;
    let id = res.json()["id"].as_str().unwrap().to_owned();
    let token = res.json()["token"].as_str().unwrap().to_owned();
    let uri = format!("/v1/api-tokens/{id}");

    let res = Req::delete(&uri).bearer(&bob.access).send(&app).await;
    res.problem(StatusCode::NOT_FOUND, "not_found");
    assert_eq!(app.introspect(&token).await["active"], true);
    let res = Req::delete("/v1/api-tokens/not-an-id")
        .bearer(&alice.access)
        .send(&app)
        .await;
    res.problem(StatusCode::NOT_FOUND, "not_found");

    let res = Req::delete(&uri).bearer(&alice.access).send(&app).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    assert_inactive(&app.introspect(&token).await);
    let res = Req::delete(&uri).bearer(&alice.access).send(&app).await;
    res.problem(StatusCode::NOT_FOUND, "not_found");
    let res = Req::get("/v1/api-tokens")
        .bearer(&alice.access)
        .send(&app)
        .await;
    assert_eq!(res.json(), json!({ "api_tokens": [] }));
}

#[tokio::test]
async fn api_token_introspection_follows_expiry_and_records_no_use() {
    let app = TestApp::new();
    let grant = alice_tokens(&app).await;
    let res = Req::post("/v1/api-tokens")
        .bearer(&grant.access)
        .json(json!({ "name": "short", "expires_in": 120 }))
        .send(&app)
        .await;
    let token = res.json()["token"].as_str().unwrap().to_owned();
    let user_id = jwt_parts(&grant.access).1["sub"].clone();
    app.advance(1);
    let touches = app.store.touches();
    let answer = app.introspect(&token).await;
    assert_eq!(
        answer,
        json!({
            "active": true, "token_type": "api_token", "sub": user_id,
            "exp": start_secs() + 120, "iat": start_secs(), "iss": ORIGIN
        })
    );
    assert_eq!(app.store.touches(), touches, "introspection records no use");
    let res = Req::get("/v1/api-tokens")
        .bearer(&grant.access)
        .send(&app)
        .await;
    assert!(res.json()["api_tokens"][0]["last_used_at"].is_null());
    app.advance(1);
    assert_inactive(&app.introspect(&token).await);
}

// --------------------------------------------------------------- introspection

#[tokio::test]
async fn introspection_needs_a_resource_server_credential() {
    let app = TestApp::with_extra(&format!(
        "introspection_tokens = [\"{INTROSPECTION_TOKEN}\"]\n"
    ));
    let grant = alice_tokens(&app).await;
    let body = [("token", grant.access.as_str())];

    let res = Req::post("/v1/introspect").form(&body).send(&app).await;
    res.problem(StatusCode::UNAUTHORIZED, "introspection_unauthorized");
    assert_eq!(
        res.header("www-authenticate"),
        Some(r#"Bearer realm="sessionguard""#)
    );
    for wrong in [
        format!("{INTROSPECTION_TOKEN}x"),
        grant.access.clone(),
        grant.refresh.clone(),
    ] {
        let res = Req::post("/v1/introspect")
            .bearer(&wrong)
            .form(&body)
            .send(&app)
            .await;
        res.problem(StatusCode::UNAUTHORIZED, "introspection_unauthorized");
    }
    for good in [ADMIN_TOKEN, INTROSPECTION_TOKEN] {
        let res = Req::post("/v1/introspect")
            .bearer(good)
            .form(&body)
            .send(&app)
            .await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text());
        assert_eq!(res.json()["active"], true);
        assert_eq!(res.header("cache-control"), Some("no-store"));
    }
    // JSON is accepted too.
    let res = Req::post("/v1/introspect")
        .bearer(INTROSPECTION_TOKEN)
        .json(json!({ "token": grant.refresh, "token_type_hint": "refresh_token" }))
        .send(&app)
        .await;
    assert_eq!(res.json()["token_type"], "refresh_token");
    let res = Req::post("/v1/introspect")
        .bearer(INTROSPECTION_TOKEN)
        .form(&[("token_type_hint", "access_token")])
        .send(&app)
        .await;
    res.problem(StatusCode::BAD_REQUEST, "malformed_request");
}

#[tokio::test]
async fn introspection_answers_for_every_token_kind_without_recording_activity() {
    let app = TestApp::with_extra("");
    let user_id = app.create_user("alice", PASSWORD).await;
    let res = Req::post("/v1/token")
        .form(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PASSWORD),
            ("client_id", "web"),
        ])
        .send(&app)
        .await;
    let grant = Grant::from(res);
    let cookie = app.login("alice", PASSWORD).await;
    app.advance(2);
    let touches = app.store.touches();

    let (_, claims) = jwt_parts(&grant.access);
    assert_eq!(
        app.introspect(&grant.access).await,
        json!({
            "active": true, "token_type": "access_token", "sub": user_id,
            "sid": grant.session_id, "exp": start_secs() + 300, "iat": start_secs(),
            "iss": ORIGIN, "aud": ORIGIN, "client_id": "web", "jti": claims["jti"]
        })
    );
    let idle_deadline = start_secs() + 30 * 60;
    assert_eq!(
        app.introspect(&grant.refresh).await,
        json!({
            "active": true, "token_type": "refresh_token", "sub": user_id,
            "sid": grant.session_id, "exp": idle_deadline, "iss": ORIGIN
        })
    );
    assert_eq!(
        app.introspect(&cookie.token).await,
        json!({
            "active": true, "token_type": "session_token", "sub": user_id,
            "sid": cookie.session_id(), "exp": idle_deadline, "iat": start_secs(),
            "iss": ORIGIN
        })
    );
    assert_eq!(
        app.store.touches(),
        touches,
        "introspection records no activity"
    );

    // Anything else is exactly {"active": false}.
    let rotated = grant.refresh.clone();
    granted(app.refresh_as(&grant.refresh, "web").await);
    for junk in [
        "",
        "junk",
        "sgs_",
        "a.b.c",
        "eyJhbGciOiJub25lIn0.e30.",
        &"x".repeat(5000),
        &rotated,
        &sessionguard_core::Token::generate(sessionguard_core::TokenKind::Session).reveal(),
        &sessionguard_core::Token::generate(sessionguard_core::TokenKind::ApiToken).reveal(),
    ] {
        assert_inactive(&app.introspect(junk).await);
    }
}

#[tokio::test]
async fn introspection_failures_of_the_store_are_not_inactive() {
    let app = TestApp::new();
    let grant = alice_tokens(&app).await;
    app.store.fail_from_now();
    for token in [&grant.access, &grant.refresh] {
        let res = Req::post("/v1/introspect")
            .bearer(ADMIN_TOKEN)
            .form(&[("token", token)])
            .send(&app)
            .await;
        res.problem(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable");
    }
}

// ------------------------------------------------------------------ revocation

async fn revoke(app: &TestApp, token: &str) {
    let res = Req::post("/v1/revoke")
        .form(&[("token", token), ("token_type_hint", "whatever")])
        .send(app)
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.json(), json!({}));
}

#[tokio::test]
async fn revocation_ends_every_token_kind() {
    let app = TestApp::new();
    app.create_user("alice", PASSWORD).await;

    let cookie = app.login("alice", PASSWORD).await;
    revoke(&app, &cookie.token).await;
    let res = Req::get("/v1/session")
        .cookie(&cookie.token)
        .send(&app)
        .await;
    res.problem(StatusCode::UNAUTHORIZED, "logged_out");

    let a = app.token_login("alice", PASSWORD).await;
    revoke(&app, &a.refresh).await;
    app.refresh(&a.refresh).await.oauth_error(
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "logged_out",
    );
    let res = Req::get("/v1/session").bearer(&a.access).send(&app).await;
    assert_bearer_refused(&res, "logged_out");

    let b = app.token_login("alice", PASSWORD).await;
    revoke(&app, &b.access).await;
    app.refresh(&b.refresh).await.oauth_error(
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "logged_out",
    );

    let c = app.token_login("alice", PASSWORD).await;
    let api_token = create_api_token(&app, &c.access, "ci").await;
    let res = Req::post("/v1/revoke")
        .json(json!({ "token": api_token }))
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_inactive(&app.introspect(&api_token).await);
    let err = app
        .state
        .engine()
        .validate_api_token(&api_token)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, sessionguard_core::Error::Rejected(r) if r.reason == Reason::RevokedByUser),
        "{err}"
    );
    // The session that created it is untouched.
    let res = Req::get("/v1/session").bearer(&c.access).send(&app).await;
    assert_eq!(res.status, StatusCode::OK);
}

#[tokio::test]
async fn revocation_refuses_access_tokens_issued_before_a_privilege_change() {
    let app = TestApp::new();
    let alice = app.create_user("alice", PASSWORD).await;
    let grant = app.token_login("alice", PASSWORD).await;
    // `iat` has whole seconds: a token of the change's own second still passes.
    app.advance_secs(2);

    // The administrator changes alice's roles: tokens issued before are refused
    // everywhere, revocation included, and end nothing.
    let res = Req::post(&format!("/v1/admin/users/{alice}"))
        .bearer(ADMIN_TOKEN)
        .json(json!({ "roles": ["auditor"] }))
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    revoke(&app, &grant.access).await;
    let res = Req::get("/v1/session")
        .bearer(&grant.access)
        .send(&app)
        .await;
    assert_bearer_refused(&res, "privilege_changed");
    app.advance_secs(2);
    let next = Grant::from(app.refresh(&grant.refresh).await);
    assert_session_lives(&app, &next.access).await;

    // The same after a step-up: the token it replaced ends nothing.
    app.advance_secs(2);
    let res = Req::post("/v1/session/elevate")
        .bearer(&next.access)
        .json(json!({ "password": PASSWORD }))
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let elevated = res.json()["access_token"].as_str().unwrap().to_owned();
    revoke(&app, &next.access).await;
    assert_session_lives(&app, &elevated).await;

    // The current token ends the session.
    revoke(&app, &elevated).await;
    let res = Req::get("/v1/session").bearer(&elevated).send(&app).await;
    assert_bearer_refused(&res, "logged_out");
}

#[tokio::test]
async fn revocation_answers_200_for_anything_and_400_only_without_a_token() {
    let app = TestApp::new();
    let grant = alice_tokens(&app).await;
    for junk in [
        "",
        "junk",
        "a.b.c",
        &sessionguard_core::Token::generate(sessionguard_core::TokenKind::Session).reveal(),
        &sessionguard_core::Token::generate(sessionguard_core::TokenKind::Refresh).reveal(),
        &sessionguard_core::Token::generate(sessionguard_core::TokenKind::ApiToken).reveal(),
        // A public session id alone proves nothing.
        &grant.session_id,
    ] {
        revoke(&app, junk).await;
    }
    // An access token with a forged signature revokes nothing.
    let (input, _) = grant.access.rsplit_once('.').unwrap();
    revoke(&app, &format!("{input}.{}", b64([0u8; 64]))).await;
    let res = Req::get("/v1/session")
        .bearer(&grant.access)
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::OK, "nothing was revoked");
    // Already revoked: still 200.
    revoke(&app, &grant.refresh).await;
    revoke(&app, &grant.refresh).await;

    let res = Req::post("/v1/revoke")
        .form(&[("token_type_hint", "refresh_token")])
        .send(&app)
        .await;
    res.oauth_error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "malformed_request",
    );
    let res = Req::post("/v1/revoke")
        .raw("application/json", "{")
        .send(&app)
        .await;
    res.oauth_error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "malformed_request",
    );
}

// --------------------------------------------------------------- hostile JWTs

/// Signs arbitrary headers and payloads with the app's active (Ed25519) key, to
/// build tokens that are validly signed yet wrong in some other way.
struct Forger {
    key: ed25519_dalek::SigningKey,
    kid: String,
}

impl Forger {
    fn of(app: &TestApp) -> Self {
        let secret = app.state.keys().to_json_secret();
        let doc: Value = serde_json::from_str(&secret).unwrap();
        let der = URL_SAFE_NO_PAD
            .decode(doc["keys"][0]["pkcs8"].as_str().unwrap())
            .unwrap();
        Forger {
            key: ed25519_dalek::SigningKey::from_pkcs8_der(&der).unwrap(),
            kid: doc["keys"][0]["kid"].as_str().unwrap().to_owned(),
        }
    }

    fn header(&self) -> Value {
        json!({ "alg": "EdDSA", "typ": "at+jwt", "kid": self.kid })
    }

    fn sign(&self, header: &Value, payload: &Value) -> String {
        let input = format!("{}.{}", json_b64(header), json_b64(payload));
        let sig = self.key.sign(input.as_bytes());
        format!("{input}.{}", b64(sig.to_bytes()))
    }
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

#[tokio::test]
async fn hostile_jwts_are_invalid_tokens_never_errors() {
    let app = TestApp::new();
    let grant = alice_tokens(&app).await;
    let forger = Forger::of(&app);
    let (good_header, good_claims) = jwt_parts(&grant.access);
    let good_sig = grant.access.rsplit('.').next().unwrap().to_owned();
    let now = start_secs();
    let with = |patch: Value| {
        let mut c = good_claims.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let jwk = app.state.keys().jwks()["keys"][0].clone();
    let x = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();

    let mut hostile: Vec<(&str, String)> = Vec::new();
    // alg: none, in several spellings, unsigned or with the genuine signature.
    for none in ["none", "None", "NONE", "nOnE"] {
        let h = json!({ "alg": none, "typ": "at+jwt", "kid": forger.kid });
        let input = format!("{}.{}", json_b64(&h), json_b64(&good_claims));
        hostile.push(("alg none, unsigned", format!("{input}.")));
        hostile.push(("alg none, genuine signature", format!("{input}.{good_sig}")));
        let h = json!({ "alg": none, "typ": "at+jwt" });
        hostile.push((
            "alg none without kid",
            format!("{}.{}.", json_b64(&h), json_b64(&good_claims)),
        ));
    }
    // HS256 with the public key as the HMAC secret (algorithm confusion).
    for secret in [
        x.clone(),
        jwk.to_string().into_bytes(),
        jwk["x"].as_str().unwrap().as_bytes().to_vec(),
    ] {
        let h = json!({ "alg": "HS256", "typ": "at+jwt", "kid": forger.kid });
        let input = format!("{}.{}", json_b64(&h), json_b64(&good_claims));
        let mac = hmac_sha256(&secret, input.as_bytes());
        hostile.push(("HS256 with the public key", format!("{input}.{}", b64(mac))));
    }
    // The other supported algorithm, and RS256, naming our key.
    for alg in ["ES256", "RS256", "EdDSA "] {
        let h = json!({ "alg": alg, "typ": "at+jwt", "kid": forger.kid });
        hostile.push(("wrong alg", forger.sign(&h, &good_claims)));
    }
    // Unknown, missing or path-like key ids.
    for kid in [
        json!("AAAAAAAAAAAAAAAAAAAAAA"),
        json!("../../../../etc/passwd"),
        json!("/dev/zero"),
        json!("https://evil.example/jwks.json"),
        json!(""),
        json!(42),
        Value::Null,
    ] {
        let mut h = forger.header();
        if kid.is_null() {
            h.as_object_mut().unwrap().remove("kid");
        } else {
            h["kid"] = kid;
        }
        hostile.push(("bad kid", forger.sign(&h, &good_claims)));
    }
    let mut jku = forger.header();
    jku["kid"] = json!("AAAAAAAAAAAAAAAAAAAAAA");
    jku["jku"] = json!("https://evil.example/jwks.json");
    hostile.push(("jku to a foreign key set", forger.sign(&jku, &good_claims)));
    // Tampered claims under the genuine signature.
    let header_b64 = grant.access.split('.').next().unwrap();
    for patch in [
        json!({ "sub": "u_mallory" }),
        json!({ "sid": SessionId::random().to_string() }),
        json!({ "exp": now + 86_400 }),
    ] {
        hostile.push((
            "tampered claims",
            format!("{header_b64}.{}.{good_sig}", json_b64(&with(patch))),
        ));
    }
    hostile.push((
        "truncated signature",
        grant.access[..grant.access.len() - 4].to_owned(),
    ));
    // Validly signed, but wrong.
    let h = forger.header();
    for (what, patch) in [
        (
            "future iat",
            json!({ "iat": now + 3600, "exp": now + 4000 }),
        ),
        ("future nbf", json!({ "nbf": now + 60 })),
        ("no exp", json!({ "exp": null })),
        ("no sid", json!({ "sid": null })),
        ("bad sid", json!({ "sid": "../x" })),
        ("no sub", json!({ "sub": null })),
        ("exp as a string", json!({ "exp": "tomorrow" })),
        ("wrong iss", json!({ "iss": "https://evil.example" })),
        ("no iss", json!({ "iss": null })),
        ("wrong aud", json!({ "aud": "https://other.example" })),
        (
            "wrong aud array",
            json!({ "aud": ["https://other.example"] }),
        ),
        ("expired", json!({ "exp": now })),
        (
            "unknown session",
            json!({ "sid": SessionId::random().to_string() }),
        ),
    ] {
        hostile.push((what, forger.sign(&h, &with(patch))));
    }
    for typ in [json!("JWT"), json!("jwt"), json!("dpop+jwt"), Value::Null] {
        let mut h = forger.header();
        if typ.is_null() {
            h.as_object_mut().unwrap().remove("typ");
        } else {
            h["typ"] = typ;
        }
        hostile.push(("wrong typ", forger.sign(&h, &good_claims)));
    }
    let mut crit = good_header.clone();
    crit["crit"] = json!(["exp"]);
    hostile.push(("crit header", forger.sign(&crit, &good_claims)));
    hostile.push((
        "header not an object",
        format!("{}.{}.{good_sig}", b64("[]"), json_b64(&good_claims)),
    ));
    hostile.push(("not base64", "a*b.c*d.e*f".to_owned()));
    hostile.push((
        "too long",
        format!("{header_b64}.{}.{good_sig}", "A".repeat(5000)),
    ));

    for (what, token) in &hostile {
        for req in [
            Req::get("/v1/session"),
            Req::get("/v1/session/status"),
            Req::post("/v1/logout"),
            Req::post("/v1/password")
                .json(json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD })),
        ] {
            let res = req.bearer(token).send(&app).await;
            assert_eq!(
                res.status,
                StatusCode::UNAUTHORIZED,
                "{what}: {}",
                res.text()
            );
            assert_bearer_refused(&res, "invalid_token");
        }
        assert_inactive(&app.introspect(token).await);
    }
    // The genuine token still works, and the password never changed.
    let res = Req::get("/v1/session")
        .bearer(&grant.access)
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::OK);
    app.token_login("alice", PASSWORD).await;
}

#[tokio::test]
async fn an_access_token_expires_at_exp_by_the_engine_clock() {
    let app = TestApp::new();
    let grant = alice_tokens(&app).await;
    app.advance_secs(299);
    let res = Req::get("/v1/session")
        .bearer(&grant.access)
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::OK);
    app.advance_secs(1);
    let res = Req::get("/v1/session")
        .bearer(&grant.access)
        .send(&app)
        .await;
    assert_bearer_refused(&res, "invalid_token");
    // The session itself lives on: a refresh gets a fresh access token.
    let next = Grant::from(app.refresh(&grant.refresh).await);
    let res = Req::get("/v1/session")
        .bearer(&next.access)
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::OK);
}

#[tokio::test]
async fn a_valid_jwt_of_a_revoked_session_gets_the_reason_not_invalid_token() {
    let app = TestApp::new();
    let grant = alice_tokens(&app).await;
    let sid = SessionId::parse(&grant.session_id).unwrap();
    app.advance(1);
    app.state
        .engine()
        .revoke(&sid, Reason::RevokedByAdmin)
        .await
        .unwrap();
    let res = Req::get("/v1/session")
        .bearer(&grant.access)
        .send(&app)
        .await;
    let p = res.problem(StatusCode::UNAUTHORIZED, "revoked_by_admin");
    assert_eq!(p["ended_at"], at(1));
    assert!(
        res.header("www-authenticate")
            .unwrap()
            .contains(r#"error="invalid_token""#)
    );
}

#[tokio::test]
async fn a_remembered_access_token_still_dies_with_its_session() {
    // The second use of an access token skips the signature computation
    // (`SignatureMemo`); the session's liveness is still checked every time.
    let app = TestApp::new();
    let grant = alice_tokens(&app).await;
    for _ in 0..2 {
        let res = Req::get("/v1/session")
            .bearer(&grant.access)
            .send(&app)
            .await;
        assert_eq!(res.status, StatusCode::OK);
    }
    assert_eq!(app.state.signature_memo().len(), 1);
    app.advance(1);
    let res = Req::post("/v1/logout")
        .bearer(&grant.refresh)
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    let res = Req::get("/v1/session")
        .bearer(&grant.access)
        .send(&app)
        .await;
    res.problem(StatusCode::UNAUTHORIZED, "logged_out");
    assert_eq!(app.state.signature_memo().len(), 1);
}

// ------------------------------------------------------------- JWKS and keys

#[tokio::test]
async fn the_jwks_is_public_cacheable_and_holds_no_private_material() {
    let app = TestApp::new();
    let res = Req::get("/.well-known/jwks.json").send(&app).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.header("cache-control"), Some("public, max-age=300"));
    assert_eq!(res.header("content-type"), Some("application/json"));
    let jwks = res.json();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let key = keys[0].as_object().unwrap();
    let mut members: Vec<_> = key.keys().map(String::as_str).collect();
    members.sort_unstable();
    assert_eq!(members, ["alg", "crv", "kid", "kty", "use", "x"]);
    let secret: Value = serde_json::from_str(&app.state.keys().to_json_secret()).unwrap();
    assert!(
        !res.text()
            .contains(secret["keys"][0]["pkcs8"].as_str().unwrap())
    );
    // Other endpoints stay uncacheable.
    let res = Req::get("/healthz").send(&app).await;
    assert_eq!(res.header("cache-control"), Some("no-store"));
}

fn jwks_kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

fn key_file_toml() -> String {
    format!(
        "public_origin = \"{ORIGIN}\"\nadmin_token = \"{ADMIN_TOKEN}\"\n[keys]\nrotation_period = \"1h\"\n"
    )
}

fn minutes(m: u64) -> Timestamp {
    START.saturating_add(Duration::from_secs(m * 60))
}

#[tokio::test]
async fn rotation_keeps_old_tokens_valid_until_exp_then_prunes_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let (app, mut keeper) = TestApp::with_key_file(&key_file_toml(), dir.path()).await;
    let file = dir.path().join(sessionguard_server::KEY_FILE);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the key file is private");
    }
    let first = app.state.keys().active().kid().as_str().to_owned();
    assert_eq!(
        keeper.check(&app.state).await.unwrap(),
        keys::KeyCheck::default(),
        "nothing to do yet"
    );

    // A session kept alive until just before the key falls due; its last access
    // token (first key) is signed at 58m and expires at 63m.
    let mut grant = alice_tokens(&app).await;
    for _ in 0..2 {
        app.advance(29);
        grant = Grant::from(app.refresh(&grant.refresh).await);
    }
    let old = grant.access.clone();
    assert_eq!(jwt_parts(&old).0["kid"], first.as_str());

    // 60m: the key is due. The old token still verifies, and is in the JWKS.
    app.advance(2);
    let check = keeper.check(&app.state).await.unwrap();
    let second = check.rotated.clone().expect("rotated").as_str().to_owned();
    assert_ne!(second, first);
    assert_eq!(check.pruned, 0);
    assert!(!check.reloaded);
    let on_disk =
        sessionguard_jwt::KeySet::from_json_secret(&std::fs::read_to_string(&file).unwrap())
            .unwrap();
    assert_eq!(on_disk.active().kid().as_str(), second, "saved");
    let res = Req::get("/.well-known/jwks.json").send(&app).await;
    assert_eq!(jwks_kids(&res.json()), [second.clone(), first.clone()]);
    let res = Req::get("/v1/session").bearer(&old).send(&app).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let newer = Grant::from(app.refresh(&grant.refresh).await);
    assert_eq!(jwt_parts(&newer.access).0["kid"], second.as_str());

    // 62m: nothing to prune yet; the old token is still good for a minute.
    app.advance(2);
    assert_eq!(
        keeper.check(&app.state).await.unwrap(),
        keys::KeyCheck::default()
    );
    let res = Req::get("/v1/session").bearer(&old).send(&app).await;
    assert_eq!(res.status, StatusCode::OK);

    // 65m: every token of the first key has expired; it is pruned.
    app.advance(3);
    let check = keeper.check(&app.state).await.unwrap();
    assert_eq!(check.pruned, 1);
    assert_eq!(check.rotated, None);
    let res = Req::get("/.well-known/jwks.json").send(&app).await;
    assert_eq!(jwks_kids(&res.json()), [second.as_str()]);
    let res = Req::get("/v1/session").bearer(&old).send(&app).await;
    assert_bearer_refused(&res, "invalid_token");
    // Even at a time it had not expired yet, the pruned key verifies nothing.
    let err = app
        .state
        .verifier()
        .verify(&app.state.keys(), &old, minutes(62))
        .unwrap_err();
    assert!(matches!(err, JwtError::UnknownKey), "{err:?}");
    // The session lives on, with tokens of the second key.
    let latest = Grant::from(app.refresh(&newer.refresh).await);
    assert_eq!(jwt_parts(&latest.access).0["kid"], second.as_str());
    let res = Req::get("/v1/session")
        .bearer(&latest.access)
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::OK);
}

#[tokio::test]
async fn a_key_file_changed_or_deleted_on_disk_is_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    let (app, mut keeper) = TestApp::with_key_file(&key_file_toml(), dir.path()).await;
    let file = dir.path().join(sessionguard_server::KEY_FILE);
    let first = app.state.keys().active().kid().as_str().to_owned();
    let grant = alice_tokens(&app).await;

    // What `sessionguard keys rotate` does, beside the running server.
    let rotated = keys::rotate_key_file(
        &file,
        sessionguard_jwt::Algorithm::EdDSA,
        Duration::from_secs(300),
        app.clock.now(),
    )
    .unwrap();
    let check = keeper.check(&app.state).await.unwrap();
    assert!(check.reloaded);
    assert_eq!(check.rotated, None);
    assert_eq!(app.state.keys().active().kid(), &rotated);
    let res = Req::get("/.well-known/jwks.json").send(&app).await;
    assert_eq!(jwks_kids(&res.json()), [rotated.to_string(), first.clone()]);
    let res = Req::get("/v1/session")
        .bearer(&grant.access)
        .send(&app)
        .await;
    assert_eq!(
        res.status,
        StatusCode::OK,
        "tokens of the retired key still verify"
    );
    let next = Grant::from(app.refresh(&grant.refresh).await);
    assert_eq!(jwt_parts(&next.access).0["kid"], rotated.as_str());
    assert_eq!(
        keeper.check(&app.state).await.unwrap(),
        keys::KeyCheck::default(),
        "a reload is not repeated"
    );

    // Deleted: the server writes back the keys it has.
    std::fs::remove_file(&file).unwrap();
    keeper.check(&app.state).await.unwrap();
    let on_disk =
        sessionguard_jwt::KeySet::from_json_secret(&std::fs::read_to_string(&file).unwrap())
            .unwrap();
    assert_eq!(on_disk.active().kid(), &rotated);

    // A corrupt file is refused; the server keeps its keys and says why.
    std::fs::write(&file, "{ not keys").unwrap();
    let err = keeper.check(&app.state).await.unwrap_err();
    assert!(
        matches!(err, keys::KeyError::Jwt(JwtError::InvalidKeyFile(_))),
        "{err:?}"
    );
    assert_eq!(app.state.keys().active().kid(), &rotated);
    let res = Req::get("/v1/session")
        .bearer(&next.access)
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::OK);
}

// ------------------------------------------------------------ interoperability

mod interop {
    use super::*;
    use jwt_simple::prelude::{
        ECDSAP256PublicKeyLike as _, ES256PublicKey, Ed25519PublicKey, EdDSAPublicKeyLike as _,
        JWTClaims, Token, UnixTimeStamp, VerificationOptions,
    };
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Extra {
        sid: String,
        client_id: Option<String>,
    }

    /// Verifies `token` with jwt-simple, from nothing but the JWKS: the JWK the
    /// token's `kid` names, with the algorithm that JWK declares.
    fn verify(jwks: &Value, token: &str, now: i64) -> Result<JWTClaims<Extra>, jwt_simple::Error> {
        let meta = Token::decode_metadata(token)?;
        let kid = meta.key_id().expect("a kid");
        let jwk = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid)
            .ok_or_else(|| jwt_simple::Error::msg("no such kid in the JWKS"))?;
        let options = VerificationOptions {
            required_signature_type: Some("at+jwt".into()),
            allowed_issuers: Some(HashSet::from([ORIGIN.to_owned()])),
            allowed_audiences: Some(HashSet::from([ORIGIN.to_owned()])),
            time_tolerance: Some(UnixTimeStamp::from_secs(0)),
            artificial_time: Some(UnixTimeStamp::from_secs(u64::try_from(now).unwrap())),
            ..VerificationOptions::default()
        };
        let raw = |c: &str| URL_SAFE_NO_PAD.decode(jwk[c].as_str().unwrap()).unwrap();
        match (jwk["kty"].as_str(), jwk["alg"].as_str()) {
            (Some("OKP"), Some("EdDSA")) => {
                Ed25519PublicKey::from_bytes(&raw("x"))?.verify_token(token, Some(options))
            }
            (Some("EC"), Some("ES256")) => {
                let mut sec1 = vec![0x04];
                sec1.extend(raw("x"));
                sec1.extend(raw("y"));
                ES256PublicKey::from_bytes(&sec1)?.verify_token(token, Some(options))
            }
            other => panic!("unexpected JWK {other:?}"),
        }
    }

    #[tokio::test]
    async fn access_tokens_verify_with_an_independent_implementation_from_the_jwks() {
        for alg in ["EdDSA", "ES256"] {
            let app = TestApp::with_extra(&format!("[keys]\nalgorithm = \"{alg}\"\n"));
            let user_id = app.create_user("alice", PASSWORD).await;
            let res = Req::post("/v1/token")
                .form(&[
                    ("grant_type", "password"),
                    ("username", "alice"),
                    ("password", PASSWORD),
                    ("client_id", "svc"),
                ])
                .send(&app)
                .await;
            let grant = Grant::from(res);
            assert_eq!(jwt_parts(&grant.access).0["alg"], alg);
            let jwks = Req::get("/.well-known/jwks.json").send(&app).await.json();

            let claims = verify(&jwks, &grant.access, start_secs() + 1).unwrap();
            assert_eq!(claims.subject.as_deref(), Some(user_id.as_str()));
            assert_eq!(claims.issuer.as_deref(), Some(ORIGIN));
            assert_eq!(claims.custom.sid, grant.session_id);
            assert_eq!(claims.custom.client_id.as_deref(), Some("svc"));
            assert_eq!(
                claims.expires_at.unwrap().as_secs(),
                u64::try_from(start_secs() + 300).unwrap()
            );

            // It refuses what it should: expiry, tampering, a foreign key set.
            assert!(verify(&jwks, &grant.access, start_secs() + 301).is_err());
            let (input, sig) = grant.access.rsplit_once('.').unwrap();
            let mut raw = URL_SAFE_NO_PAD.decode(sig).unwrap();
            raw[0] ^= 1;
            let forged = format!("{input}.{}", b64(&raw));
            assert!(verify(&jwks, &forged, start_secs() + 1).is_err());
            let other = TestApp::with_extra(&format!("[keys]\nalgorithm = \"{alg}\"\n"));
            let foreign = Req::get("/.well-known/jwks.json").send(&other).await.json();
            assert!(verify(&foreign, &grant.access, start_secs() + 1).is_err());
        }
    }
}
