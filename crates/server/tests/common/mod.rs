//! Helpers for the HTTP tests: an app over an in-memory store and a manual clock,
//! a request builder, and readers for responses and problem documents.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use sessionguard_core::{ManualClock, MemoryStore, Timestamp};
use sessionguard_jwt::KeySet;
use sessionguard_server::keys::{self, KeyKeeper};
use sessionguard_server::{AppState, Config, KEY_FILE, Overrides};
use sessionguard_test_kit::Instrumented;
use tower::ServiceExt as _;

/// The admin token configured in tests.
pub const ADMIN_TOKEN: &str = "admin-token-for-tests-0123456789abcdef";
/// The configured public origin.
pub const ORIGIN: &str = "https://app.example";
/// A password that meets the rules.
pub const PASSWORD: &str = "correct horse battery staple";
/// 2026-11-28T12:00:00Z.
pub const START: Timestamp = Timestamp::from_millis(1_795_867_200_000);

/// The whole application over a [`TestStore`] and a [`ManualClock`].
pub struct TestApp {
    pub router: Router,
    pub clock: ManualClock,
    pub store: TestStore,
    pub state: AppState<TestStore, ManualClock>,
}

impl TestApp {
    /// An app with the admin API enabled and default policy.
    pub fn new() -> Self {
        Self::with_toml(&format!(
            "public_origin = \"{ORIGIN}\"\nadmin_token = \"{ADMIN_TOKEN}\"\n"
        ))
    }

    /// An app configured by `toml`.
    pub fn with_toml(toml: &str) -> Self {
        let config = Config::from_toml(toml, |_| None, &Overrides::default()).unwrap();
        let keys = KeySet::generate(config.keys.algorithm, START);
        Self::with_keys(&config, keys)
    }

    /// An app with the default test settings plus `extra` TOML (top-level keys
    /// first, then tables).
    pub fn with_extra(extra: &str) -> Self {
        Self::with_toml(&format!(
            "public_origin = \"{ORIGIN}\"\nadmin_token = \"{ADMIN_TOKEN}\"\n{extra}"
        ))
    }

    /// An app configured by `toml` whose signing keys live in the key file of
    /// `dir` (created if missing), with the keeper that maintains it.
    pub async fn with_key_file(toml: &str, dir: &std::path::Path) -> (Self, KeyKeeper) {
        let config = Config::from_toml(toml, |_| None, &Overrides::default()).unwrap();
        let (keys, keeper) = keys::load_or_create(
            keys::KeySource::File(dir.join(KEY_FILE)),
            config.keys.algorithm,
            START,
        )
        .await
        .unwrap();
        (Self::with_keys(&config, keys), keeper)
    }

    fn with_keys(config: &Config, keys: KeySet) -> Self {
        let clock = ManualClock::new(START);
        let store = Instrumented::new(MemoryStore::new());
        let state = AppState::with_keys(config, store.clone(), clock.clone(), keys).unwrap();
        TestApp {
            router: sessionguard_server::router(state.clone()),
            clock,
            store,
            state,
        }
    }

    /// Moves time forward.
    pub fn advance(&self, minutes: u64) {
        self.clock.advance(Duration::from_secs(minutes * 60));
    }

    /// Moves time forward by seconds.
    pub fn advance_secs(&self, secs: u64) {
        self.clock.advance(Duration::from_secs(secs));
    }

    /// A password grant at the token endpoint (form-encoded, as RFC 6749 says);
    /// panics unless it succeeds.
    pub async fn token_login(&self, username: &str, password: &str) -> Grant {
        let res = Req::post("/v1/token")
            .form(&[
                ("grant_type", "password"),
                ("username", username),
                ("password", password),
            ])
            .send(self)
            .await;
        Grant::from(res)
    }

    /// A refresh grant at the token endpoint made by `client_id`.
    pub async fn refresh_as(&self, refresh_token: &str, client_id: &str) -> Resp {
        Req::post("/v1/token")
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
                ("client_id", client_id),
            ])
            .send(self)
            .await
    }

    /// A refresh grant at the token endpoint (no `client_id`: first party).
    pub async fn refresh(&self, refresh_token: &str) -> Resp {
        Req::post("/v1/token")
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ])
            .send(self)
            .await
    }

    /// Introspects `token` with the admin token; returns the answer.
    pub async fn introspect(&self, token: &str) -> Value {
        let res = Req::post("/v1/introspect")
            .bearer(ADMIN_TOKEN)
            .form(&[("token", token)])
            .send(self)
            .await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text());
        res.json()
    }

    /// Sends one request through the router.
    pub async fn send(&self, req: Request<Body>) -> Resp {
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        Resp {
            status,
            headers,
            body,
        }
    }

    /// Creates a user through the admin API; returns its id.
    pub async fn create_user(&self, username: &str, password: &str) -> String {
        let res = Req::post("/v1/admin/users")
            .bearer(ADMIN_TOKEN)
            .json(json!({ "username": username, "password": password }))
            .send(self)
            .await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
        res.json()["id"].as_str().unwrap().to_owned()
    }

    /// Logs in with JSON; panics unless it succeeds.
    pub async fn login(&self, username: &str, password: &str) -> Login {
        let res = Req::post("/v1/login")
            .json(json!({ "username": username, "password": password }))
            .send(self)
            .await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text());
        Login::from(res)
    }

    /// Occupies every password-hash worker and queue place with jobs that wait
    /// until the returned [`HeldHashQueue`] is released.
    pub async fn fill_hash_queue(&self) -> HeldHashQueue {
        let capacity = self.state.password_hash_capacity();
        let (release, held) = std::sync::mpsc::channel::<()>();
        let held = std::sync::Arc::new(std::sync::Mutex::new(held));
        let mut jobs = Vec::new();
        for _ in 0..capacity {
            let (state, held) = (self.state.clone(), std::sync::Arc::clone(&held));
            jobs.push(tokio::spawn(async move {
                state
                    .with_hasher(move |_| {
                        let _ = held.lock().unwrap().recv();
                    })
                    .await
            }));
        }
        let started = std::time::Instant::now();
        while self.state.password_jobs() < capacity {
            assert!(started.elapsed() < Duration::from_secs(10), "jobs admitted");
            tokio::task::yield_now().await;
        }
        HeldHashQueue { release, jobs }
    }

    /// A user `alice` with [`PASSWORD`], logged in.
    pub async fn alice(&self) -> Login {
        self.create_user("alice", PASSWORD).await;
        self.login("alice", PASSWORD).await
    }
}

/// Password jobs holding every place of the hash queue ([`TestApp::fill_hash_queue`]).
pub struct HeldHashQueue {
    release: std::sync::mpsc::Sender<()>,
    jobs: Vec<tokio::task::JoinHandle<Result<(), sessionguard_server::ApiError>>>,
}

impl HeldHashQueue {
    /// Lets the jobs finish, and waits for them.
    pub async fn release(self) {
        for _ in &self.jobs {
            self.release.send(()).unwrap();
        }
        for job in self.jobs {
            job.await.unwrap().unwrap();
        }
    }
}

/// A successful login: the cookie's token and the body.
pub struct Login {
    pub token: String,
    pub body: Value,
    pub res: Resp,
}

impl From<Resp> for Login {
    fn from(res: Resp) -> Self {
        let token = res.session_cookie().expect("login sets the session cookie");
        Login {
            token,
            body: res.json(),
            res,
        }
    }
}

impl Login {
    /// The session's anti-CSRF token.
    pub fn csrf(&self) -> String {
        self.body["csrf_token"].as_str().unwrap().to_owned()
    }

    /// The session's id.
    pub fn session_id(&self) -> String {
        self.body["session_id"].as_str().unwrap().to_owned()
    }
}

/// A successful token grant: the pair and the body.
#[derive(Debug)]
pub struct Grant {
    pub access: String,
    pub refresh: String,
    pub session_id: String,
    pub body: Value,
    pub res: Resp,
}

impl From<Resp> for Grant {
    #[track_caller]
    fn from(res: Resp) -> Self {
        assert_eq!(res.status, StatusCode::OK, "{}", res.text());
        let body = res.json();
        let s = |k: &str| {
            body[k]
                .as_str()
                .unwrap_or_else(|| panic!("{k} in {body}"))
                .to_owned()
        };
        Grant {
            access: s("access_token"),
            refresh: s("refresh_token"),
            session_id: s("session_id"),
            body: body.clone(),
            res,
        }
    }
}

/// A request under construction.
pub struct Req {
    builder: axum::http::request::Builder,
    body: Body,
}

impl Req {
    pub fn new(method: Method, uri: &str) -> Self {
        Req {
            builder: Request::builder().method(method).uri(uri),
            body: Body::empty(),
        }
    }
    pub fn get(uri: &str) -> Self {
        Self::new(Method::GET, uri)
    }
    pub fn post(uri: &str) -> Self {
        Self::new(Method::POST, uri)
    }
    pub fn delete(uri: &str) -> Self {
        Self::new(Method::DELETE, uri)
    }
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        let value = HeaderValue::from_bytes(value.as_ref()).unwrap();
        self.builder = self.builder.header(name, value);
        self
    }
    pub fn cookie(self, token: &str) -> Self {
        self.header("cookie", format!("__Host-sg_session={token}"))
    }
    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", format!("Bearer {token}"))
    }
    pub fn csrf(self, token: &str) -> Self {
        self.header("x-csrf-token", token)
    }
    /// A cookie-authenticated request as a same-origin browser page sends it.
    pub fn browser(self, login: &Login) -> Self {
        self.cookie(&login.token)
            .header("sec-fetch-site", "same-origin")
            .csrf(&login.csrf())
    }
    pub fn json(mut self, body: Value) -> Self {
        self.builder = self
            .builder
            .header(header::CONTENT_TYPE, "application/json");
        self.body = Body::from(body.to_string());
        self
    }
    /// An `application/x-www-form-urlencoded` body.
    pub fn form(self, pairs: &[(&str, &str)]) -> Self {
        let body = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.raw("application/x-www-form-urlencoded", body)
    }
    pub fn raw(mut self, content_type: &str, body: impl Into<Body>) -> Self {
        self.builder = self.builder.header(header::CONTENT_TYPE, content_type);
        self.body = body.into();
        self
    }
    pub fn peer(mut self, addr: &str) -> Self {
        let addr: SocketAddr = addr.parse().unwrap();
        self.builder = self.builder.extension(ConnectInfo(addr));
        self
    }
    pub fn build(self) -> Request<Body> {
        self.builder.body(self.body).unwrap()
    }
    pub async fn send(self, app: &TestApp) -> Resp {
        app.send(self.build()).await
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// The `Set-Cookie` header, whole.
    pub fn set_cookie(&self) -> Option<&str> {
        self.header("set-cookie")
    }

    /// The session token set by `Set-Cookie`, if any.
    pub fn session_cookie(&self) -> Option<String> {
        let v = self.set_cookie()?;
        let value = v.strip_prefix("__Host-sg_session=")?.split(';').next()?;
        (!value.is_empty()).then(|| value.to_owned())
    }

    /// Asserts an RFC 9457 problem document with `status` and `code`; returns it.
    #[track_caller]
    pub fn problem(&self, status: StatusCode, code: &str) -> Value {
        assert_eq!(self.status, status, "body: {}", self.text());
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "body: {}",
            self.text()
        );
        let p = self.json();
        assert_eq!(p["code"], code, "{p}");
        assert_eq!(p["status"], status.as_u16(), "{p}");
        for key in ["type", "title", "detail"] {
            assert!(p[key].is_string(), "{key} missing in {p}");
        }
        p
    }
}

impl Resp {
    /// Asserts an RFC 6749 §5.2 error (`application/json`, not a problem
    /// document, never cached) with `status`, `error` and `code`; returns it.
    #[track_caller]
    pub fn oauth_error(&self, status: StatusCode, error: &str, code: &str) -> Value {
        assert_eq!(self.status, status, "body: {}", self.text());
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "body: {}",
            self.text()
        );
        assert_eq!(self.header("cache-control"), Some("no-store"));
        assert_eq!(self.header("pragma"), Some("no-cache"));
        let e = self.json();
        assert_eq!(e["error"], error, "{e}");
        assert_eq!(e["code"], code, "{e}");
        assert!(e["error_description"].is_string(), "{e}");
        e
    }
}

/// Percent-encodes a form value (RFC 3986 unreserved characters kept).
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An RFC 3339 instant `minutes` after [`START`].
pub fn at(minutes: u64) -> String {
    START
        .saturating_add(Duration::from_secs(minutes * 60))
        .to_rfc3339()
}

/// The store under test: memory, counted, breakable on demand.
pub type TestStore = Instrumented<MemoryStore>;
