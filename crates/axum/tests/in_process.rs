//! The layer and extractors in-process, against every store: memory, the
//! embedded SQLite store, and Redis (a `redis-server` started by the test).
//! One suite of cases, each with a passing and a failing request, on a manual
//! clock.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use sessionguard_axum::{InProcess, RequireRole, Role, Session, SessionRejection, StepUp};
use sessionguard_core::{
    Clock, Engine, ManualClock, MemoryStore, Policy, Store, Timestamp, UserAccess, UserId,
};
use sessionguard_jwt::{AccessClaims, Algorithm, KeySet, Verifier};
use sessionguard_store_redis::{RedisConfig, RedisStore};
use sessionguard_store_sqlite::SqliteStore;
use sessionguard_test_kit::Instrumented;
use sessionguard_test_kit::redis::RedisServer;
use tower::ServiceExt as _;

const ORIGIN: &str = "https://app.example";
const T0: Timestamp = Timestamp::from_millis(1_800_000_000_000);
const MIN: Duration = Duration::from_secs(60);

struct Admin;
impl Role for Admin {
    const NAME: &'static str = "admin";
}

type Sessions<S> = InProcess<S, ManualClock>;

fn app<S: Store>(sessions: &Sessions<S>) -> Router {
    Router::new()
        .route("/me", get(me))
        .route("/maybe", get(maybe))
        .route("/admin", get(admin))
        .route("/sensitive", get(sensitive))
        .route("/act", post(act))
        .route("/login/{user}", post(login::<S>))
        .route("/logout", post(logout::<S>))
        .route("/password", post(password::<S>))
        .layer(sessions.layer())
        .with_state(sessions.clone())
}

async fn me(s: Session) -> Result<axum::Json<Value>, SessionRejection> {
    let who = s.identity().await?;
    Ok(axum::Json(json!({
        "user_id": s.user_id().as_str(),
        "username": who.username(),
        "session_id": s.session_id().map(|id| id.to_string()),
        "api_token": s.api_token_id().map(|id| id.to_string()),
        "roles": who.roles(),
        "csrf": s.csrf_token(),
    })))
}

async fn maybe(s: Option<Session>) -> String {
    s.map_or_else(|| "anonymous".to_owned(), |s| s.user_id().to_string())
}

async fn admin(RequireRole(s, ..): RequireRole<Admin>) -> String {
    format!("admin {}", s.user_id())
}

async fn sensitive(StepUp(s): StepUp) -> String {
    format!("elevated {}", s.user_id())
}

async fn act(_: Session, body: String) -> String {
    body
}

async fn login<S: Store>(
    State(sessions): State<Sessions<S>>,
    Path(user): Path<String>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, SessionRejection> {
    let user = UserId::new(&user).unwrap();
    Ok((sessions.log_in(&user, &headers, None).await?, "in"))
}

async fn logout<S: Store>(
    State(sessions): State<Sessions<S>>,
    s: Session,
) -> Result<impl IntoResponse, SessionRejection> {
    Ok((sessions.log_out(&s).await?, "out"))
}

async fn password<S: Store>(
    State(sessions): State<Sessions<S>>,
    s: Session,
    headers: HeaderMap,
) -> Result<impl IntoResponse, SessionRejection> {
    Ok((
        sessions.password_changed(&s, &headers, None).await?,
        "changed",
    ))
}

/// A response, read whole.
struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.body))
    }

    /// Asserts a problem document with this status and code.
    #[track_caller]
    fn problem(&self, status: StatusCode, code: &str) {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(
            self.headers["content-type"], "application/problem+json",
            "{}",
            self.body
        );
        assert_eq!(self.json()["code"], code, "{}", self.body);
    }

    /// The session token a `Set-Cookie` carries, if any.
    fn cookie(&self) -> Option<String> {
        let v = self.headers.get("set-cookie")?.to_str().unwrap();
        let token = v.strip_prefix("__Host-sg_session=")?.split(';').next()?;
        (!token.is_empty()).then(|| token.to_owned())
    }
}

struct Client {
    app: Router,
}

impl Client {
    async fn send(&self, req: Request<Body>) -> Resp {
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        Resp {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        self.send(request("GET", path, headers, "")).await
    }

    async fn post(&self, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
        self.send(request("POST", path, headers, body)).await
    }

    /// Logs `user` in through the app; returns the cookie's token.
    async fn login(&self, user: &str) -> String {
        let res = self.post(&format!("/login/{user}"), &[], "").await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        res.cookie().expect("the login sets the session cookie")
    }
}

fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Body::from(body.to_owned())).unwrap()
}

fn cookie(token: &str) -> String {
    format!("__Host-sg_session={token}")
}

/// Every case, against one store.
async fn suite<S: Store>(store: S) {
    let clock = ManualClock::new(T0);
    let engine = Engine::with_clock(store, clock.clone(), Policy::default()).unwrap();
    let sessions = InProcess::new(engine, ORIGIN);
    let c = Client {
        app: app(&sessions),
    };

    // No credential: 401 missing_credentials; Option<Session> is None.
    c.get("/me", &[])
        .await
        .problem(StatusCode::UNAUTHORIZED, "missing_credentials");
    assert_eq!(c.get("/maybe", &[]).await.body, "anonymous");
    let res = c.get("/me", &[("cookie", &cookie("sgs_forged"))]).await;
    res.problem(StatusCode::UNAUTHORIZED, "invalid_token");
    assert!(res.headers.contains_key("www-authenticate"));

    // A login through the app: the cookie works on the next request.
    let alice = c.login("alice").await;
    let res = c.get("/me", &[("cookie", &cookie(&alice))]).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.json()["user_id"], "alice");
    assert!(res.json()["session_id"].is_string());
    assert_eq!(
        c.get("/maybe", &[("cookie", &cookie(&alice))]).await.body,
        "alice"
    );
    let csrf = res.json()["csrf"].as_str().unwrap().to_owned();

    // A login from another site is refused (login CSRF).
    let res = c
        .post("/login/alice", &[("sec-fetch-site", "cross-site")], "")
        .await;
    res.problem(StatusCode::FORBIDDEN, "cross_origin_request");

    // The role guard: 403 without the role; the role, once assigned, is seen at
    // the next request, and the cookie is rotated (privilege change).
    let res = c.get("/admin", &[("cookie", &cookie(&alice))]).await;
    res.problem(StatusCode::FORBIDDEN, "role_required");
    let user = UserId::new("alice").unwrap();
    let access = UserAccess::new(None, vec!["admin".into()]).unwrap();
    sessions
        .engine()
        .update_user_access(&user, access)
        .await
        .unwrap();
    let res = c.get("/admin", &[("cookie", &cookie(&alice))]).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let alice = res
        .cookie()
        .expect("the privilege change rotates the cookie");
    assert_eq!(
        c.get("/me", &[("cookie", &cookie(&alice))]).await.json()["roles"],
        json!(["admin"])
    );

    // The step-up guard: a fresh login counts as recently authenticated for
    // step_up_ttl (5 minutes by default), then no longer.
    let res = c.get("/sensitive", &[("cookie", &cookie(&alice))]).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    clock.advance(6 * MIN);
    let res = c.get("/sensitive", &[("cookie", &cookie(&alice))]).await;
    res.problem(StatusCode::FORBIDDEN, "step_up_required");

    // State-changing cookie requests: the origin rule, then the anti-CSRF token
    // (header or form field; the handler gets the body whole).
    let ck = cookie(&alice);
    let res = c
        .post(
            "/act",
            &[("cookie", &ck), ("origin", "https://evil.example")],
            "x",
        )
        .await;
    res.problem(StatusCode::FORBIDDEN, "cross_origin_request");
    let res = c
        .post("/act", &[("cookie", &ck), ("origin", ORIGIN)], "x")
        .await;
    res.problem(StatusCode::FORBIDDEN, "csrf_token_invalid");
    let res = c
        .post("/act", &[("cookie", &ck), ("x-csrf-token", "wrong")], "x")
        .await;
    res.problem(StatusCode::FORBIDDEN, "csrf_token_invalid");
    let res = c
        .post(
            "/act",
            &[("cookie", &ck), ("x-csrf-token", &csrf)],
            "payload",
        )
        .await;
    assert_eq!((res.status, res.body.as_str()), (StatusCode::OK, "payload"));
    let form = format!("a=1&csrf_token={csrf}");
    let res = c
        .post(
            "/act",
            &[
                ("cookie", &ck),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            &form,
        )
        .await;
    assert_eq!(
        (res.status, res.body.as_str()),
        (StatusCode::OK, form.as_str())
    );
    let res = c
        .post(
            "/act",
            &[
                ("cookie", &ck),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            "csrf_token=wrong",
        )
        .await;
    res.problem(StatusCode::FORBIDDEN, "csrf_token_invalid");
    // A bearer token is not ambient: no token needed.
    let res = c
        .post(
            "/act",
            &[
                ("authorization", &format!("Bearer {alice}")),
                ("sec-fetch-site", "cross-site"),
            ],
            "b",
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);

    // Idle timeout: 30 minutes without a request.
    let idle = c.login("idler").await;
    clock.advance(31 * MIN);
    c.get("/me", &[("cookie", &cookie(&idle))])
        .await
        .problem(StatusCode::UNAUTHORIZED, "idle_timeout");
    assert_eq!(
        c.get("/maybe", &[("cookie", &cookie(&idle))]).await.body,
        "anonymous"
    );

    // Logout: the session ends in the store; the cookie is cleared.
    let bob = c.login("bob").await;
    let bob_csrf = c.get("/me", &[("cookie", &cookie(&bob))]).await.json()["csrf"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = c
        .post(
            "/logout",
            &[("cookie", &cookie(&bob)), ("x-csrf-token", &bob_csrf)],
            "",
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert!(
        res.headers["set-cookie"]
            .to_str()
            .unwrap()
            .ends_with("Max-Age=0")
    );
    c.get("/me", &[("cookie", &cookie(&bob))])
        .await
        .problem(StatusCode::UNAUTHORIZED, "logged_out");

    // Password change: every other session ends; this device gets a new one.
    let carol_a = c.login("carol").await;
    let carol_b = c.login("carol").await;
    let res = c
        .post(
            "/password",
            &[("authorization", &format!("Bearer {carol_a}"))],
            "",
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let carol_new = res.cookie().unwrap();
    for old in [&carol_a, &carol_b] {
        c.get("/me", &[("cookie", &cookie(old))])
            .await
            .problem(StatusCode::UNAUTHORIZED, "password_changed");
    }
    assert_eq!(
        c.get("/me", &[("cookie", &cookie(&carol_new))])
            .await
            .status,
        StatusCode::OK
    );

    // A login revokes the session token it was sent with (no fixation).
    let dave = c.login("dave").await;
    let res = c
        .post("/login/dave", &[("cookie", &cookie(&dave))], "")
        .await;
    assert_eq!(res.status, StatusCode::OK);
    c.get("/me", &[("cookie", &cookie(&dave))])
        .await
        .problem(StatusCode::UNAUTHORIZED, "superseded");

    // A personal API token: a credential without a session, never elevated.
    let erin = UserId::new("erin").unwrap();
    let (token, _) = sessions
        .engine()
        .create_api_token(&erin, "ci", None)
        .await
        .unwrap();
    let bearer = format!("Bearer {}", token.reveal().as_str());
    let res = c.get("/me", &[("authorization", &bearer)]).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert!(res.json()["session_id"].is_null());
    assert!(res.json()["api_token"].is_string());
    c.get("/sensitive", &[("authorization", &bearer)])
        .await
        .problem(StatusCode::FORBIDDEN, "step_up_required");

    // Access tokens: refused until accepted, then checked with their session.
    let frank = c.login("frank").await;
    let frank_sid = c.get("/me", &[("cookie", &cookie(&frank))]).await.json()["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let keys = KeySet::generate(Algorithm::EdDSA, clock.now());
    let claims = AccessClaims::new(
        "https://auth.example",
        "frank",
        "https://api.example",
        sessionguard_core::TokenId::parse(&frank_sid).unwrap(),
        clock.now(),
        Duration::from_secs(300),
    );
    let jwt = format!("Bearer {}", keys.sign(&claims).unwrap());
    c.get("/me", &[("authorization", &jwt)])
        .await
        .problem(StatusCode::UNAUTHORIZED, "invalid_token");
    sessions.accept_access_tokens(
        Verifier::new("https://auth.example", "https://api.example"),
        keys,
    );
    let res = c.get("/me", &[("authorization", &jwt)]).await;
    assert_eq!(res.json()["user_id"], "frank", "{}", res.body);
    let frank_csrf = res.json()["csrf"].as_str().unwrap().to_owned();
    c.post(
        "/logout",
        &[("cookie", &cookie(&frank)), ("x-csrf-token", &frank_csrf)],
        "",
    )
    .await;
    c.get("/me", &[("authorization", &jwt)])
        .await
        .problem(StatusCode::UNAUTHORIZED, "logged_out");
}

#[tokio::test]
async fn the_layer_over_the_memory_store() {
    suite(MemoryStore::new()).await;
}

#[tokio::test]
async fn the_layer_over_the_embedded_sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("sessions.db")).unwrap();
    suite(store).await;
}

#[tokio::test]
async fn the_layer_over_redis() {
    let redis = RedisServer::start();
    let mut config = RedisConfig::new([format!("redis://127.0.0.1:{}", redis.port())]);
    config.prefix = "axum-test".into();
    let store = RedisStore::connect(config).await.unwrap();
    suite(store).await;
}

#[tokio::test]
async fn a_check_is_one_store_call_and_a_store_failure_refuses() {
    let store = Instrumented::new(MemoryStore::new());
    let engine =
        Engine::with_clock(store.clone(), ManualClock::new(T0), Policy::default()).unwrap();
    let sessions = InProcess::new(engine, ORIGIN);
    let c = Client {
        app: app(&sessions),
    };
    let alice = c.login("alice").await;
    c.get("/me", &[("cookie", &cookie(&alice))]).await;
    let before = store.calls();
    let res = c.get("/me", &[("cookie", &cookie(&alice))]).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(store.calls() - before, 1, "one load; identity remembered");
    let before = store.calls();
    c.get("/me", &[("cookie", &cookie("sgs_malformed"))]).await;
    assert_eq!(
        store.calls(),
        before,
        "a malformed token never reaches the store"
    );

    store.fail_from_now();
    let res = c.get("/me", &[("cookie", &cookie(&alice))]).await;
    res.problem(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable");
    assert!(
        !res.body.contains("/"),
        "the cause is logged, never shown: {}",
        res.body
    );
    let res = c.get("/maybe", &[("cookie", &cookie(&alice))]).await;
    res.problem(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable");
}

#[tokio::test]
async fn an_extractor_without_the_layer_is_a_wiring_error() {
    let app: Router = Router::new().route("/me", get(me));
    let c = Client { app };
    c.get("/me", &[])
        .await
        .problem(StatusCode::INTERNAL_SERVER_ERROR, "internal_error");
}

#[tokio::test]
async fn oversized_headers_are_refused() {
    let engine =
        Engine::with_clock(MemoryStore::new(), ManualClock::new(T0), Policy::default()).unwrap();
    let c = Client {
        app: app(&InProcess::new(engine, ORIGIN)),
    };
    let big = "a".repeat(8 * 1024 + 1);
    c.get("/maybe", &[("cookie", &big)]).await.problem(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "headers_too_large",
    );
}
