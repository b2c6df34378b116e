//! `sessionguard-axum` apps next to the real `sessionguard` binary: what the
//! server ends, the app refuses at its next request, with the reason — an
//! in-process app sharing the server's Redis, and an app in remote mode asking
//! the server (without a cache, and with one, which relaxes exactly that).

#![cfg(unix)]

mod process;

use std::path::Path;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::{get, post};
use http_body_util::BodyExt as _;
use process::{Browser, Running, http, json_field, login, post_as, start_with};
use serde_json::{Value, json};
use sessionguard_axum::{InProcess, Remote, Session, SessionRejection};
use sessionguard_core::{Engine, ManualClock, Policy, Timestamp, UserId};
use sessionguard_store_redis::{RedisConfig, RedisStore};
use sessionguard_test_kit::redis::RedisServer;
use tower::ServiceExt as _;

const ORIGIN: &str = "https://app.example";
const PASSWORD: &str = "correct horse battery staple";

async fn me(s: Session) -> Result<axum::Json<Value>, SessionRejection> {
    let who = s.identity().await?;
    Ok(axum::Json(json!({
        "user_id": s.user_id().as_str(),
        "username": who.username(),
        "session_id": s.session_id().map(|id| id.to_string()),
        "roles": who.roles(),
        "csrf": s.csrf_token(),
    })))
}

async fn act(_: Session) -> &'static str {
    "done"
}

/// One request through the app: status, body, `Set-Cookie`.
async fn call(app: &Router, method: &str, headers: &[(&str, &str)]) -> (StatusCode, Value) {
    let path = if method == "GET" { "/me" } else { "/act" };
    let mut b = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let res = app
        .clone()
        .oneshot(b.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&body)
        .unwrap_or(Value::String(String::from_utf8_lossy(&body).into_owned()));
    (status, value)
}

fn cookie(b: &Browser) -> String {
    format!("__Host-sg_session={}", b.cookie)
}

/// Alice, created on the server and logged in there; asserts that `app` sees
/// her session. Returns her id and her browser session.
async fn alice_through(server: &Running, app: &Router) -> (String, Browser) {
    let id = server.create_user("alice", PASSWORD);
    let browser = login(&server.addr, "alice", PASSWORD).unwrap();
    let (status, body) = call(app, "GET", &[("cookie", &cookie(&browser))]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], id.as_str());
    assert_eq!(body["username"], "alice");
    (id, browser)
}

/// `serve` with `public_origin` and `extra` configuration, on a data folder of
/// its own.
fn serve(dir: &Path, extra: &str) -> Running {
    let config = dir.join("sessionguard.toml");
    std::fs::write(&config, format!("public_origin = \"{ORIGIN}\"\n{extra}")).unwrap();
    start_with(
        dir.join("data").to_str().unwrap(),
        &["--config", config.to_str().unwrap()],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn an_in_process_app_on_the_servers_redis_sees_every_revocation_at_once() {
    let redis = RedisServer::start();
    let url = format!("redis://127.0.0.1:{}", redis.port());
    let dir = tempfile::tempdir().unwrap();
    let server = serve(
        dir.path(),
        &format!("[store]\nkind = \"redis\"\nurls = [\"{url}\"]\nprefix = \"shared\"\n"),
    );
    let mut config = RedisConfig::new([url]);
    config.prefix = "shared".into();
    let store = RedisStore::connect(config).await.unwrap();
    let sessions = InProcess::new(Engine::new(store, Policy::default()).unwrap(), ORIGIN);
    let app = Router::new().route("/me", get(me)).layer(sessions.layer());

    // A session the server made is the app's too.
    let (id, browser) = alice_through(&server, &app).await;

    // The server logs it out: the app refuses it at its next request.
    let (status, _, _) = post_as(&server.addr, &browser, "/v1/logout", "");
    assert_eq!(status, 204);
    let (status, body) = call(&app, "GET", &[("cookie", &cookie(&browser))]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["code"], "logged_out");

    // An admin revoke-all on the server ends the app's sessions too.
    let again = login(&server.addr, "alice", PASSWORD).unwrap();
    assert_eq!(
        call(&app, "GET", &[("cookie", &cookie(&again))]).await.0,
        StatusCode::OK
    );
    let bearer = format!("Bearer {}", server.admin);
    let (status, _, body) = http(
        &server.addr,
        "POST",
        &format!("/v1/admin/users/{id}/revoke"),
        &[
            ("authorization", &bearer),
            ("content-type", "application/json"),
        ],
        r#"{"reason":"revoked_by_admin"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(&app, "GET", &[("cookie", &cookie(&again))]).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("revoked_by_admin"))
    );

    // And the other way: a session the app makes, the server knows; the app's
    // logout ends it on the server.
    let headers = axum::http::HeaderMap::new();
    let logged_in = sessions
        .log_in(&UserId::new(&id).unwrap(), &headers, None)
        .await
        .unwrap();
    let app_cookie = format!("__Host-sg_session={}", logged_in.token().reveal().as_str());
    let status_of = |c: &str| {
        http(
            &server.addr,
            "GET",
            "/v1/session/status",
            &[("cookie", c)],
            "",
        )
    };
    let (status, _, body) = status_of(&app_cookie);
    assert_eq!(status, 200, "{body}");
    sessions.log_out(logged_in.session()).await.unwrap();
    let (status, _, body) = status_of(&app_cookie);
    assert_eq!(status, 401);
    assert_eq!(json_field(&body, "code"), "logged_out");
}

fn remote_app(remote: Remote<impl sessionguard_core::Clock + Clone>) -> Router {
    Router::new()
        .route("/me", get(me))
        .route("/act", post(act))
        .layer(remote.layer())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_remote_app_asks_the_server_and_sees_a_logout_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), "");
    let app = remote_app(Remote::new(&format!("http://{}", server.addr)).unwrap());

    let (status, body) = call(&app, "GET", &[]).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("missing_credentials"))
    );

    let (_, browser) = alice_through(&server, &app).await;
    let (_, body) = call(&app, "GET", &[("cookie", &cookie(&browser))]).await;
    assert_eq!(body["csrf"], browser.csrf.as_str());
    // Over kept-alive connections: many requests, each asked about.
    for _ in 0..20 {
        assert_eq!(
            call(&app, "GET", &[("cookie", &cookie(&browser))]).await.0,
            StatusCode::OK
        );
    }

    // The server's cross-site rule, and the app's anti-CSRF check with the
    // token the server gave.
    let c = cookie(&browser);
    let (status, body) = call(
        &app,
        "POST",
        &[("cookie", &c), ("sec-fetch-site", "cross-site")],
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("cross_origin_request"))
    );
    let (status, body) = call(&app, "POST", &[("cookie", &c), ("origin", ORIGIN)]).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("csrf_token_invalid"))
    );
    let (status, _) = call(
        &app,
        "POST",
        &[("cookie", &c), ("x-csrf-token", &browser.csrf)],
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // A logout on the server: the app's next request is refused, with the reason.
    let (status, _, _) = post_as(&server.addr, &browser, "/v1/logout", "");
    assert_eq!(status, 204);
    let (status, body) = call(&app, "GET", &[("cookie", &c)]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["code"], "logged_out");
    assert!(body["ended_at"].is_string(), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_remote_cache_relaxes_revocation_for_its_time_to_live_only() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), "");
    let clock = ManualClock::new(Timestamp::from_millis(
        i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap(),
    ));
    let remote = Remote::with_clock(&format!("http://{}", server.addr), clock.clone())
        .unwrap()
        .with_cache(Duration::from_secs(30), 1000);
    let app = remote_app(remote);
    server.create_user("alice", PASSWORD);
    let browser = login(&server.addr, "alice", PASSWORD).unwrap();
    let c = cookie(&browser);
    assert_eq!(call(&app, "GET", &[("cookie", &c)]).await.0, StatusCode::OK);

    let (status, _, _) = post_as(&server.addr, &browser, "/v1/logout", "");
    assert_eq!(status, 204);
    // Remembered: still accepted for reading, within the time to live...
    assert_eq!(call(&app, "GET", &[("cookie", &c)]).await.0, StatusCode::OK);
    // ...but a request that can change state is always asked about.
    let (status, body) = call(
        &app,
        "POST",
        &[("cookie", &c), ("x-csrf-token", &browser.csrf)],
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("logged_out"))
    );
    // Past the time to live, the server's answer again.
    clock.advance(Duration::from_secs(31));
    let (status, body) = call(&app, "GET", &[("cookie", &c)]).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("logged_out"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_server_refuses_requests() {
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = remote_app(Remote::new(&format!("http://127.0.0.1:{port}")).unwrap());
    let (status, body) = call(&app, "GET", &[("cookie", "__Host-sg_session=sgs_x")]).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("store_unavailable"))
    );
}
