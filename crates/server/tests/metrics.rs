//! Prometheus metrics over HTTP: `GET /metrics` needs the admin token, and each
//! family moves with the traffic that it counts — and not with other traffic.
//! Oneshot over the router on a manual clock; the `metrics_listen` address is
//! tested against the binary.

mod common;
mod process;

use std::time::Duration;

use axum::http::StatusCode;
use common::*;
use serde_json::json;
use sessionguard_core::{ManualClock, MemoryStore};
use sessionguard_jwt::KeySet;
use sessionguard_server::metrics::CONTENT_TYPE;
use sessionguard_server::{AppState, Config, Metrics, Overrides};

/// The metrics text, read with the admin token.
async fn scrape(app: &TestApp) -> String {
    let res = Req::get("/metrics").bearer(ADMIN_TOKEN).send(app).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.header("content-type"), Some(CONTENT_TYPE));
    res.text()
}

/// The value of one series (`name{labels}` exactly as rendered); 0 when the
/// series is absent.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// How each of `series` moved between two scrapes.
fn moved(before: &str, after: &str, series: &str) -> f64 {
    value(after, series) - value(before, series)
}

fn check(credential: &str, outcome: &str) -> String {
    format!(
        "sessionguard_credential_checks_total{{credential=\"{credential}\",outcome=\"{outcome}\"}}"
    )
}

fn login_outcome(outcome: &str) -> String {
    format!("sessionguard_logins_total{{outcome=\"{outcome}\"}}")
}

fn requests(route: &str, status: &str) -> String {
    format!("sessionguard_http_requests_total{{route=\"{route}\",status=\"{status}\"}}")
}

#[tokio::test]
async fn metrics_need_the_admin_token() {
    let app = TestApp::new();
    Req::get("/metrics")
        .send(&app)
        .await
        .problem(StatusCode::UNAUTHORIZED, "admin_unauthorized");
    Req::get("/metrics")
        .bearer("not-the-admin-token-0123456789abcdef")
        .send(&app)
        .await
        .problem(StatusCode::UNAUTHORIZED, "admin_unauthorized");
    let text = scrape(&app).await;
    assert!(text.contains("# TYPE sessionguard_credential_checks_total counter"));
    assert!(text.contains("# HELP sessionguard_logins_total"));
}

#[tokio::test]
async fn metrics_are_refused_when_no_admin_token_is_configured() {
    let app = TestApp::with_toml(&format!("public_origin = \"{ORIGIN}\"\n"));
    Req::get("/metrics")
        .bearer(ADMIN_TOKEN)
        .send(&app)
        .await
        .problem(StatusCode::UNAUTHORIZED, "admin_unauthorized");
}

#[tokio::test]
async fn cookie_checks_count_as_valid_and_dead_ones_by_their_reason() {
    let app = TestApp::new();
    let alice = app.alice().await;
    let before = scrape(&app).await;
    let res = Req::get("/v1/session")
        .cookie(&alice.token)
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::OK);
    let after = scrape(&app).await;
    assert_eq!(
        moved(&before, &after, &check("session_token", "valid")),
        1.0
    );
    assert_eq!(
        moved(&before, &after, &check("session_token", "invalid_token")),
        0.0
    );

    Req::get("/v1/session")
        .cookie("sgs_forged")
        .send(&app)
        .await
        .problem(StatusCode::UNAUTHORIZED, "invalid_token");
    let res = Req::post("/v1/logout").browser(&alice).send(&app).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    Req::get("/v1/session")
        .cookie(&alice.token)
        .send(&app)
        .await
        .problem(StatusCode::UNAUTHORIZED, "logged_out");
    let last = scrape(&app).await;
    assert_eq!(
        moved(&after, &last, &check("session_token", "invalid_token")),
        1.0
    );
    assert_eq!(
        moved(&after, &last, &check("session_token", "logged_out")),
        1.0
    );
    assert_eq!(
        moved(
            &after,
            &last,
            "sessionguard_revocations_total{scope=\"session\",reason=\"logged_out\"}"
        ),
        1.0
    );
    assert_eq!(
        moved(
            &after,
            &last,
            "sessionguard_revocations_total{scope=\"user\",reason=\"logged_out\"}"
        ),
        0.0
    );
    assert_eq!(moved(&after, &last, &check("access_token", "valid")), 0.0);
}

#[tokio::test]
async fn access_token_checks_count_refused_signatures_and_live_sessions() {
    let app = TestApp::new();
    app.create_user("alice", PASSWORD).await;
    let grant = app.token_login("alice", PASSWORD).await;
    let before = scrape(&app).await;
    let res = Req::get("/v1/session")
        .bearer(&grant.access)
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::OK);
    let mut forged = grant.access.clone();
    forged.pop();
    forged.push(if grant.access.ends_with('A') {
        'B'
    } else {
        'A'
    });
    Req::get("/v1/session")
        .bearer(&forged)
        .send(&app)
        .await
        .problem(StatusCode::UNAUTHORIZED, "invalid_token");
    let after = scrape(&app).await;
    assert_eq!(moved(&before, &after, &check("access_token", "valid")), 1.0);
    assert_eq!(
        moved(&before, &after, &check("access_token", "invalid_token")),
        1.0
    );
    assert_eq!(
        moved(&before, &after, &check("session_token", "valid")),
        0.0
    );
}

#[tokio::test]
async fn forward_auth_counts_api_token_checks() {
    let app = TestApp::new();
    let alice = app.alice().await;
    let res = Req::post("/v1/api-tokens")
        .browser(&alice)
        .json(json!({ "name": "ci" }))
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let token = res.json()["token"].as_str().unwrap().to_owned();
    let before = scrape(&app).await;
    let res = Req::get("/v1/auth").bearer(&token).send(&app).await;
    assert_eq!(res.status, StatusCode::OK);
    let res = Req::get("/v1/auth").bearer("sga_forged").send(&app).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    let after = scrape(&app).await;
    assert_eq!(moved(&before, &after, &check("api_token", "valid")), 1.0);
    assert_eq!(
        moved(&before, &after, &check("api_token", "invalid_token")),
        1.0
    );
    assert_eq!(moved(&before, &after, &requests("/v1/auth", "2xx")), 1.0);
    assert_eq!(moved(&before, &after, &requests("/v1/auth", "4xx")), 1.0);
}

#[tokio::test]
async fn logins_count_by_outcome() {
    let app = TestApp::with_extra("[policy]\nthrottle_failures = 1\n");
    app.create_user("alice", PASSWORD).await;
    let before = scrape(&app).await;
    app.login("alice", PASSWORD).await;
    let after = scrape(&app).await;
    assert_eq!(moved(&before, &after, &login_outcome("succeeded")), 1.0);
    assert_eq!(
        moved(&before, &after, &login_outcome("invalid_credentials")),
        0.0
    );

    let wrong = || {
        Req::post("/v1/login")
            .peer("198.51.100.9:4000")
            .json(json!({ "username": "alice", "password": "not the password" }))
    };
    wrong()
        .send(&app)
        .await
        .problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    wrong()
        .send(&app)
        .await
        .problem(StatusCode::TOO_MANY_REQUESTS, "too_many_attempts");
    let last = scrape(&app).await;
    assert_eq!(
        moved(&after, &last, &login_outcome("invalid_credentials")),
        1.0
    );
    assert_eq!(
        moved(&after, &last, &login_outcome("too_many_attempts")),
        1.0
    );
    assert_eq!(moved(&after, &last, &login_outcome("succeeded")), 0.0);
    let throttled = "sessionguard_password_throttled_total{key=\"account_client\"}";
    assert_eq!(moved(&after, &last, throttled), 1.0);
    let failed = "sessionguard_password_checks_total{outcome=\"failed\"}";
    assert_eq!(moved(&after, &last, failed), 1.0);
}

#[tokio::test]
async fn refreshes_count_rotations_and_reuse() {
    let app = TestApp::new();
    app.create_user("alice", PASSWORD).await;
    let grant = app.token_login("alice", PASSWORD).await;
    let before = scrape(&app).await;
    let next = Grant::from(app.refresh(&grant.refresh).await);
    let after = scrape(&app).await;
    let rotated = "sessionguard_refreshes_total{outcome=\"rotated\"}";
    let reuse = "sessionguard_refreshes_total{outcome=\"reuse_detected\"}";
    assert_eq!(moved(&before, &after, rotated), 1.0);
    assert_eq!(moved(&before, &after, reuse), 0.0);

    app.advance(1); // past the grace window
    app.refresh(&grant.refresh).await.oauth_error(
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "refresh_reuse_detected",
    );
    app.refresh(&next.refresh).await.oauth_error(
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "refresh_reuse_detected",
    );
    let last = scrape(&app).await;
    assert_eq!(moved(&after, &last, reuse), 1.0);
    assert_eq!(moved(&after, &last, rotated), 0.0);
    let ended = "sessionguard_refreshes_total{outcome=\"refresh_reuse_detected\"}";
    assert_eq!(moved(&after, &last, ended), 1.0, "the next one is refused");
}

#[tokio::test]
async fn requests_count_by_route_template_never_by_raw_path() {
    let app = TestApp::new();
    let alice = app.alice().await;
    let before = scrape(&app).await;
    let id = "AAAAAAAAAAAAAAAAAAAAAA";
    let res = Req::delete(&format!("/v1/sessions/{id}"))
        .browser(&alice)
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND, "{}", res.text());
    Req::get("/no/such/route/secret-looking-path")
        .send(&app)
        .await
        .problem(StatusCode::NOT_FOUND, "not_found");
    let after = scrape(&app).await;
    assert_eq!(
        moved(&before, &after, &requests("/v1/sessions/{id}", "4xx")),
        1.0
    );
    assert_eq!(moved(&before, &after, &requests("unmatched", "4xx")), 1.0);
    assert_eq!(
        moved(&before, &after, &requests("/v1/sessions/{id}", "2xx")),
        0.0
    );
    assert!(!after.contains(id), "no raw path in any label");
    assert!(!after.contains("secret-looking-path"));
    assert!(!after.contains(&alice.token), "no token in any label");
    assert!(
        after.contains(
            "sessionguard_http_request_duration_seconds_bucket{route=\"/v1/login\",le=\"0.1\"}"
        ),
        "{after}"
    );
}

#[tokio::test]
async fn a_full_hash_queue_is_counted_as_shed() {
    let app = TestApp::with_extra("[server]\npassword_hash_queue = 0\n");
    app.create_user("alice", PASSWORD).await;
    let held = app.fill_hash_queue().await;
    let shed = "sessionguard_shed_total{cause=\"password_hash_queue\"}";
    let before = scrape(&app).await;
    assert_eq!(
        value(&before, shed),
        0.0,
        "nothing shed while there was room"
    );
    Req::post("/v1/login")
        .json(json!({ "username": "alice", "password": PASSWORD }))
        .send(&app)
        .await
        .problem(StatusCode::SERVICE_UNAVAILABLE, "server_busy");
    let after = scrape(&app).await;
    assert_eq!(moved(&before, &after, shed), 1.0);
    assert_eq!(moved(&before, &after, &login_outcome("server_busy")), 1.0);
    held.release().await;
}

#[tokio::test]
async fn store_calls_are_timed_and_failures_counted_by_operation() {
    let config = Config::from_toml(
        &format!("public_origin = \"{ORIGIN}\"\nadmin_token = \"{ADMIN_TOKEN}\"\n"),
        |_| None,
        &Overrides::default(),
    )
    .unwrap();
    let metrics = Metrics::new();
    let store = TestStore::new(MemoryStore::new());
    let measured = metrics.measure(store.clone());
    let state = AppState::with_metrics(
        &config,
        measured,
        ManualClock::new(START),
        KeySet::generate(config.keys.algorithm, START),
        None,
        metrics.clone(),
    )
    .unwrap();
    let router = sessionguard_server::router(state);
    let send = |req: Req| {
        let router = router.clone();
        async move {
            use tower::ServiceExt as _;
            router.oneshot(req.build()).await.unwrap()
        }
    };
    let loads = "sessionguard_store_call_duration_seconds_count{op=\"load_session\"}";
    let errors = "sessionguard_store_errors_total{op=\"load_session\"}";
    let res = send(Req::get("/v1/session").cookie(&forged_but_well_formed())).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let before = metrics.render();
    assert_eq!(value(&before, loads), 1.0, "{before}");
    assert_eq!(value(&before, errors), 0.0);

    store.fail_from_now();
    let res = send(Req::get("/v1/session").cookie(&forged_but_well_formed())).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let after = metrics.render();
    assert_eq!(moved(&before, &after, errors), 1.0);
    assert_eq!(moved(&before, &after, loads), 1.0);
    assert_eq!(
        value(&after, "sessionguard_store_errors_total{op=\"user_epoch\"}"),
        0.0
    );
}

/// A session token of the right form that no store holds: one lookup.
fn forged_but_well_formed() -> String {
    sessionguard_core::Token::generate(sessionguard_core::TokenKind::Session)
        .reveal()
        .to_string()
}

#[test]
fn the_metrics_listen_address_serves_metrics_without_authentication() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sessionguard.toml");
    std::fs::write(
        &config,
        format!(
            "admin_token = \"{ADMIN_TOKEN}\"\nmetrics_listen = \"127.0.0.1:0\"\n\
             [server]\nmax_connections = 1\n"
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let server = process::Server::start(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    let metrics_line = server.line();
    let metrics_url = metrics_line
        .strip_prefix("sessionguard metrics on http://")
        .unwrap_or_else(|| panic!("{metrics_line}"));
    let metrics_addr = metrics_url.strip_suffix("/metrics").unwrap().to_owned();
    let line = server.line();
    let addr = line
        .strip_prefix("sessionguard listening on http://")
        .unwrap_or_else(|| panic!("{line}"))
        .to_owned();

    let (status, head, body) = process::http(&metrics_addr, "GET", "/metrics", &[], "");
    assert_eq!(status, 200, "{head}{body}");
    assert_eq!(process::header(&head, "content-type"), Some(CONTENT_TYPE));
    assert!(body.contains("sessionguard_logins_total"), "{body}");
    let (status, _, _) = process::http(&metrics_addr, "GET", "/v1/session", &[], "");
    assert_eq!(status, 404, "only metrics on the metrics address");
    let (status, _, body) = process::http(&addr, "GET", "/metrics", &[], "");
    assert_eq!(
        status, 401,
        "the main address still needs the token: {body}"
    );

    // The one connection the main address allows is held open; the next is
    // shed, and the metrics address (its own limit) tells so.
    let held = std::net::TcpStream::connect(&addr).unwrap();
    let started = std::time::Instant::now();
    let shed = "sessionguard_shed_total{cause=\"connection_limit\"}";
    loop {
        let _ = process::try_http(&addr, "GET", "/healthz", &[], "");
        let (_, _, body) = process::http(&metrics_addr, "GET", "/metrics", &[], "");
        if value(&body, shed) >= 1.0 {
            assert!(
                value(&body, "sessionguard_open_connections") >= 1.0,
                "{body}"
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the refused connection was never counted: {body}"
        );
    }
    drop(held);
    assert_eq!(server.terminate(), Some(0));
}
