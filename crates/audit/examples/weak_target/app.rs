//! A deliberately weak web app for testing the auditor: one switch per session
//! flaw, all off by default (then it has none of them).
//!
//! It serves a form login with a session cookie and an anti-CSRF token (a
//! double-submit `csrf` cookie), and a JSON API with HS256 access tokens,
//! rotating refresh tokens and personal API tokens. Every flaw is one switch:
//!
//! | flaw | what it does | the check that finds it |
//! |---|---|---|
//! | `no_server_logout` | logout only clears the cookie | `logout` |
//! | `keep_sessions_on_password_change` | other sessions survive a password change | `password_change` |
//! | `keep_api_tokens_on_password_change` | API tokens survive it | `api_token_after_password_change` |
//! | `unlimited_sessions` | no concurrent-session limit | `concurrent_sessions` |
//! | `silent_displacement` | a displaced session is not told why | `concurrent_sessions` (info) |
//! | `keep_id_at_login` | the pre-login session id is kept at login | `fixation` |
//! | `accept_planted_ids` | an id the client chose is adopted and kept at login | `fixation` |
//! | `no_idle_timeout` | sessions never idle out | `idle_timeout` |
//! | `no_absolute_timeout` | active sessions live for ever | `absolute_timeout` |
//! | `weak_cookie_flags` | no Secure, HttpOnly or SameSite | `cookie_attributes` |
//! | `low_entropy_ids` | ids are the time and a counter | `token_entropy` |
//! | `refresh_survives_logout` | a refresh token revives a logged-out session | `refresh_after_logout` |
//! | `refresh_reusable` | rotated refresh tokens keep working | `refresh_reuse` |
//! | `refresh_outlives_session` | refreshing works past the absolute timeout | `refresh_lifetime` |
//! | `jwt_alg_none` | access tokens with `alg: none` are accepted | `jwt` |
//! | `jwt_weak_secret` | access tokens are signed with the secret `secret` | `jwt` |

#![allow(dead_code, unreachable_pub)] // shared by the example and the tests, each using a part

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

/// The switches, by name.
pub const FLAWS: [&str; 16] = [
    "no_server_logout",
    "keep_sessions_on_password_change",
    "keep_api_tokens_on_password_change",
    "unlimited_sessions",
    "silent_displacement",
    "keep_id_at_login",
    "accept_planted_ids",
    "no_idle_timeout",
    "no_absolute_timeout",
    "weak_cookie_flags",
    "low_entropy_ids",
    "refresh_survives_logout",
    "refresh_reusable",
    "refresh_outlives_session",
    "jwt_alg_none",
    "jwt_weak_secret",
];

/// The session cookie's name.
pub const COOKIE: &str = "__Host-sid";

/// How the weak target runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Enabled flaws (names from [`FLAWS`]).
    pub flaws: HashSet<String>,
    /// Idle timeout.
    pub idle: Duration,
    /// Absolute timeout.
    pub absolute: Duration,
    /// Most live sessions per user.
    pub max_sessions: usize,
    /// Access-token lifetime.
    pub access_ttl: Duration,
    /// The one user.
    pub username: String,
    /// Its password.
    pub password: String,
}

impl Config {
    /// A config with `flaws` (comma-separated; unknown names are an error).
    pub fn with_flaws(list: &str) -> Result<Config, String> {
        let mut flaws = HashSet::new();
        for f in list.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            if !FLAWS.contains(&f) {
                return Err(format!("unknown flaw {f:?} (known: {})", FLAWS.join(", ")));
            }
            flaws.insert(f.to_owned());
        }
        Ok(Config {
            flaws,
            idle: Duration::from_secs(3),
            absolute: Duration::from_secs(8),
            max_sessions: 3,
            access_ttl: Duration::from_secs(300),
            username: "alice".into(),
            password: "first password 1".into(),
        })
    }
}

struct Sess {
    authenticated: bool,
    planted: bool,
    csrf: String,
    created: Instant,
    last: Instant,
    ended: Option<&'static str>,
    epoch: u64,
}

struct Refresh {
    session: String,
    family: u64,
    rotated: bool,
}

struct Inner {
    password: String,
    session_epoch: u64,
    api_epoch: u64,
    sessions: HashMap<String, Sess>,
    refresh: HashMap<String, Refresh>,
    revoked_families: HashSet<u64>,
    api_tokens: HashMap<String, u64>,
    counter: u64,
    families: u64,
}

/// The app's state, and every secret it issued (for the tests' redaction checks).
pub struct Weak {
    config: Config,
    secret: Vec<u8>,
    inner: Mutex<Inner>,
    /// Every identifier, token and anti-CSRF value issued.
    pub issued: Mutex<Vec<String>>,
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).expect("CSPRNG");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn json_res(status: StatusCode, v: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

/// Form or JSON body fields as strings.
fn fields(headers: &HeaderMap, body: &Bytes) -> HashMap<String, String> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct.contains("json") {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(m)) => m
                .into_iter()
                .map(|(k, v)| {
                    (
                        k,
                        v.as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| v.to_string()),
                    )
                })
                .collect(),
            _ => HashMap::new(),
        }
    } else {
        serde_urlencoded_pairs(body)
    }
}

fn serde_urlencoded_pairs(body: &[u8]) -> HashMap<String, String> {
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (unescape(k), unescape(v)))
        .collect()
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let h = |c: u8| char::from(c).to_digit(16);
                if let (Some(x), Some(y)) = (h(b[i + 1]), h(b[i + 2])) {
                    out.push((x * 16 + y) as u8);
                    i += 2;
                } else {
                    out.push(b'%');
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::to_owned)
}

/// Who a request is, or why not.
enum Auth {
    Session(String),
    ApiToken,
    None(Option<&'static str>),
}

impl Weak {
    /// A new app.
    pub fn new(config: Config) -> Arc<Weak> {
        let secret = if config.flaws.contains("jwt_weak_secret") {
            b"secret".to_vec()
        } else {
            let mut s = vec![0u8; 32];
            getrandom::fill(&mut s).expect("CSPRNG");
            s
        };
        Arc::new(Weak {
            inner: Mutex::new(Inner {
                password: config.password.clone(),
                session_epoch: 0,
                api_epoch: 0,
                sessions: HashMap::new(),
                refresh: HashMap::new(),
                revoked_families: HashSet::new(),
                api_tokens: HashMap::new(),
                counter: 0,
                families: 0,
            }),
            config,
            secret,
            issued: Mutex::new(Vec::new()),
        })
    }

    fn flaw(&self, f: &str) -> bool {
        self.config.flaws.contains(f)
    }

    fn record(&self, s: &str) {
        self.issued.lock().unwrap().push(s.to_owned());
    }

    fn new_id(&self, inner: &mut Inner) -> String {
        inner.counter += 1;
        let id = if self.flaw("low_entropy_ids") {
            format!("{:08x}{:04x}", now_secs(), inner.counter & 0xffff)
        } else {
            random_hex(32)
        };
        self.record(&id);
        id
    }

    fn set_cookie(&self, id: &str) -> HeaderValue {
        let v = if self.flaw("weak_cookie_flags") {
            format!("{COOKIE}={id}; Path=/")
        } else {
            format!("{COOKIE}={id}; Path=/; Secure; HttpOnly; SameSite=Lax")
        };
        HeaderValue::from_str(&v).expect("ASCII")
    }

    fn csrf_cookie(&self, csrf: &str) -> HeaderValue {
        HeaderValue::from_str(&format!("csrf={csrf}; Path=/; Secure; SameSite=Strict"))
            .expect("ASCII")
    }

    /// Why session `id` is not valid now, if it is not (`None` = valid).
    fn invalid(&self, inner: &Inner, id: &str, now: Instant) -> Option<Option<&'static str>> {
        let Some(s) = inner.sessions.get(id) else {
            return Some(None);
        };
        if !s.authenticated {
            return Some(None);
        }
        if let Some(r) = s.ended {
            return Some(Some(r));
        }
        if s.epoch != inner.session_epoch && !self.flaw("keep_sessions_on_password_change") {
            return Some(Some("password_changed"));
        }
        if !self.flaw("no_idle_timeout") && now.duration_since(s.last) >= self.config.idle {
            return Some(Some("idle_timeout"));
        }
        if !self.flaw("no_absolute_timeout")
            && now.duration_since(s.created) >= self.config.absolute
        {
            return Some(Some("absolute_timeout"));
        }
        None
    }

    fn authenticated_session(&self, inner: &mut Inner, now: Instant) -> Sess {
        let csrf = random_hex(16);
        self.record(&csrf);
        Sess {
            authenticated: true,
            planted: false,
            csrf,
            created: now,
            last: now,
            ended: None,
            epoch: inner.session_epoch,
        }
    }

    /// Enforces the session limit before a new session is added.
    fn make_room(&self, inner: &mut Inner, now: Instant) {
        if self.flaw("unlimited_sessions") {
            return;
        }
        loop {
            let mut live: Vec<(String, Instant)> = inner
                .sessions
                .iter()
                .filter(|(id, _)| self.invalid(inner, id, now).is_none())
                .map(|(id, s)| (id.clone(), s.last))
                .collect();
            if live.len() < self.config.max_sessions {
                break;
            }
            live.sort_by_key(|(_, last)| *last);
            let oldest = live[0].0.clone();
            inner.sessions.get_mut(&oldest).expect("listed").ended = Some("displaced");
        }
    }

    fn sign(&self, sid: &str, inner: &Inner) -> String {
        let s = &inner.sessions[sid];
        let now = now_secs();
        let mut exp = now + self.config.access_ttl.as_secs();
        if !self.flaw("no_absolute_timeout") {
            let left = self
                .config
                .absolute
                .saturating_sub(s.created.elapsed())
                .as_secs();
            exp = exp.min(now + left);
        }
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
        let claims = URL_SAFE_NO_PAD.encode(
            json!({"sub": self.config.username, "sid": sid, "iat": now, "exp": exp, "jti": random_hex(8)}).to_string(),
        );
        let input = format!("{header}.{claims}");
        let sig = URL_SAFE_NO_PAD.encode(hmac256(&self.secret, input.as_bytes()));
        let t = format!("{input}.{sig}");
        self.record(&t);
        t
    }

    /// The session id an access token names, if the token is acceptable.
    fn verify(&self, token: &str) -> Option<String> {
        let mut parts = token.split('.');
        let (h, p, s) = (parts.next()?, parts.next()?, parts.next()?);
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).ok()?).ok()?;
        let alg = header.get("alg")?.as_str()?;
        let ok = if alg == "HS256" {
            let expected =
                URL_SAFE_NO_PAD.encode(hmac256(&self.secret, format!("{h}.{p}").as_bytes()));
            !s.is_empty() && expected == s
        } else {
            self.flaw("jwt_alg_none") && alg.eq_ignore_ascii_case("none") && s.is_empty()
        };
        if !ok {
            return None;
        }
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).ok()?).ok()?;
        if claims.get("exp")?.as_u64()? <= now_secs() {
            return None;
        }
        claims.get("sid")?.as_str().map(str::to_owned)
    }

    fn auth(&self, inner: &mut Inner, headers: &HeaderMap, now: Instant) -> Auth {
        let (id, _is_cookie) = match bearer(headers) {
            Some(t) if t.starts_with("wt_api_") => {
                return match inner.api_tokens.get(&t) {
                    Some(e)
                        if *e == inner.api_epoch
                            || self.flaw("keep_api_tokens_on_password_change") =>
                    {
                        Auth::ApiToken
                    }
                    _ => Auth::None(Some("password_changed")),
                };
            }
            Some(t) => match self.verify(&t) {
                Some(sid) => (sid, false),
                None => return Auth::None(None),
            },
            None => match cookie(headers, COOKIE) {
                Some(c) => (c, true),
                None => return Auth::None(None),
            },
        };
        match self.invalid(inner, &id, now) {
            None => {
                inner.sessions.get_mut(&id).expect("valid").last = now;
                Auth::Session(id)
            }
            Some(reason) => Auth::None(reason),
        }
    }

    fn unauthorized(&self, reason: Option<&'static str>) -> Response {
        match reason {
            Some("displaced") if !self.flaw("silent_displacement") => json_res(
                StatusCode::UNAUTHORIZED,
                json!({"error": "session ended", "reason": "displaced: you signed in on another device"}),
            ),
            _ => json_res(StatusCode::UNAUTHORIZED, json!({"error": "login required"})),
        }
    }

    /// The cookie flow's anti-CSRF check: the header matches the session's token.
    fn csrf_ok(&self, inner: &Inner, headers: &HeaderMap, id: &str) -> bool {
        if bearer(headers).is_some() {
            return true;
        }
        let sent = headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
        inner
            .sessions
            .get(id)
            .is_some_and(|s| Some(s.csrf.as_str()) == sent)
    }

    /// The session an unsafe request acts for: authenticated by a session (not an
    /// API token) and, for a cookie, with the session's anti-CSRF header.
    fn acting_session(
        &self,
        inner: &mut Inner,
        headers: &HeaderMap,
        now: Instant,
    ) -> Result<String, Box<Response>> {
        let id = match self.auth(inner, headers, now) {
            Auth::Session(id) => id,
            Auth::ApiToken => return Err(Box::new(StatusCode::FORBIDDEN.into_response())),
            Auth::None(r) => return Err(Box::new(self.unauthorized(r))),
        };
        if !self.csrf_ok(inner, headers, &id) {
            return Err(Box::new(
                (StatusCode::FORBIDDEN, "bad anti-CSRF token").into_response(),
            ));
        }
        Ok(id)
    }

    fn token_pair(&self, inner: &mut Inner, sid: &str, family: Option<u64>) -> Value {
        let family = family.unwrap_or_else(|| {
            inner.families += 1;
            inner.families
        });
        let r = format!("wt_ref_{}", random_hex(24));
        self.record(&r);
        inner.refresh.insert(
            r.clone(),
            Refresh {
                session: sid.to_owned(),
                family,
                rotated: false,
            },
        );
        json!({"access_token": self.sign(sid, inner), "token_type": "Bearer", "refresh_token": r, "expires_in": self.config.access_ttl.as_secs()})
    }
}

fn hmac256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    use sha2::Digest as _;
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&sha2::Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
    let inner = sha2::Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(msg)
        .finalize();
    sha2::Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

type App = State<Arc<Weak>>;

async fn login_page(State(w): App, headers: HeaderMap) -> Response {
    let now = Instant::now();
    let mut inner = w.inner.lock().unwrap();
    let presented = cookie(&headers, COOKIE);
    let id = match presented {
        Some(id) if inner.sessions.contains_key(&id) => id,
        Some(id) if w.flaw("accept_planted_ids") => {
            let csrf = random_hex(16);
            w.record(&csrf);
            inner.sessions.insert(
                id.clone(),
                Sess {
                    authenticated: false,
                    planted: true,
                    csrf,
                    created: now,
                    last: now,
                    ended: None,
                    epoch: 0,
                },
            );
            id
        }
        _ => {
            let id = w.new_id(&mut inner);
            let csrf = random_hex(16);
            w.record(&csrf);
            inner.sessions.insert(
                id.clone(),
                Sess {
                    authenticated: false,
                    planted: false,
                    csrf,
                    created: now,
                    last: now,
                    ended: None,
                    epoch: 0,
                },
            );
            id
        }
    };
    let csrf = inner.sessions[&id].csrf.clone();
    let html = format!(
        "<html><body><form method=\"post\" action=\"/login\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input name=\"username\"><input name=\"password\" type=\"password\"></form></body></html>"
    );
    let mut res = (StatusCode::OK, [(header::CONTENT_TYPE, "text/html")], html).into_response();
    res.headers_mut()
        .append(header::SET_COOKIE, w.set_cookie(&id));
    res
}

async fn login(State(w): App, headers: HeaderMap, body: Bytes) -> Response {
    let now = Instant::now();
    let f = fields(&headers, &body);
    let mut inner = w.inner.lock().unwrap();
    let Some(pre) = cookie(&headers, COOKIE).filter(|id| inner.sessions.contains_key(id)) else {
        return (
            StatusCode::FORBIDDEN,
            "no pre-login session: load /login first",
        )
            .into_response();
    };
    if f.get("csrf") != Some(&inner.sessions[&pre].csrf) {
        return (StatusCode::FORBIDDEN, "bad anti-CSRF token").into_response();
    }
    if f.get("username") != Some(&w.config.username) || f.get("password") != Some(&inner.password) {
        return (StatusCode::UNAUTHORIZED, "wrong username or password").into_response();
    }
    w.make_room(&mut inner, now);
    let planted = inner.sessions[&pre].planted;
    let keep = w.flaw("keep_id_at_login") || (planted && w.flaw("accept_planted_ids"));
    let id = if keep {
        pre.clone()
    } else {
        inner.sessions.remove(&pre);
        w.new_id(&mut inner)
    };
    let sess = w.authenticated_session(&mut inner, now);
    let csrf = sess.csrf.clone();
    inner.sessions.insert(id.clone(), sess);
    let mut res = (StatusCode::SEE_OTHER, [(header::LOCATION, "/me")]).into_response();
    res.headers_mut()
        .append(header::SET_COOKIE, w.set_cookie(&id));
    res.headers_mut()
        .append(header::SET_COOKIE, w.csrf_cookie(&csrf));
    res
}

async fn me(State(w): App, headers: HeaderMap) -> Response {
    let now = Instant::now();
    let mut inner = w.inner.lock().unwrap();
    match w.auth(&mut inner, &headers, now) {
        Auth::Session(_) | Auth::ApiToken => {
            json_res(StatusCode::OK, json!({"user": w.config.username}))
        }
        Auth::None(reason) => w.unauthorized(reason),
    }
}

async fn logout(State(w): App, headers: HeaderMap) -> Response {
    let now = Instant::now();
    let mut inner = w.inner.lock().unwrap();
    let id = match w.acting_session(&mut inner, &headers, now) {
        Ok(id) => id,
        Err(res) => return *res,
    };
    if !w.flaw("no_server_logout") {
        inner.sessions.get_mut(&id).expect("valid").ended = Some("logged_out");
    }
    let mut res = if bearer(&headers).is_some() {
        StatusCode::NO_CONTENT.into_response()
    } else {
        (StatusCode::SEE_OTHER, [(header::LOCATION, "/login")]).into_response()
    };
    if bearer(&headers).is_none() {
        res.headers_mut().append(
            header::SET_COOKIE,
            HeaderValue::from_static(
                "__Host-sid=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0",
            ),
        );
    }
    res
}

async fn password(State(w): App, headers: HeaderMap, body: Bytes) -> Response {
    let now = Instant::now();
    let f = fields(&headers, &body);
    let mut inner = w.inner.lock().unwrap();
    let id = match w.acting_session(&mut inner, &headers, now) {
        Ok(id) => id,
        Err(res) => return *res,
    };
    if f.get("current_password") != Some(&inner.password) {
        return (StatusCode::FORBIDDEN, "wrong current password").into_response();
    }
    let Some(new) = f.get("new_password").filter(|p| p.len() >= 8) else {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            "the new password is too short",
        )
            .into_response();
    };
    inner.password = new.clone();
    inner.session_epoch += 1;
    if !w.flaw("keep_api_tokens_on_password_change") {
        inner.api_epoch += 1;
    }
    // This device keeps working with a re-issued session.
    inner.sessions.get_mut(&id).expect("valid").ended = Some("password_changed");
    let new_id = w.new_id(&mut inner);
    let sess = w.authenticated_session(&mut inner, now);
    let csrf = sess.csrf.clone();
    inner.sessions.insert(new_id.clone(), sess);
    if bearer(&headers).is_some() {
        let pair = w.token_pair(&mut inner, &new_id, None);
        return json_res(StatusCode::OK, pair);
    }
    let mut res = (StatusCode::SEE_OTHER, [(header::LOCATION, "/me")]).into_response();
    res.headers_mut()
        .append(header::SET_COOKIE, w.set_cookie(&new_id));
    res.headers_mut()
        .append(header::SET_COOKIE, w.csrf_cookie(&csrf));
    res
}

async fn api_tokens(State(w): App, headers: HeaderMap) -> Response {
    let now = Instant::now();
    let mut inner = w.inner.lock().unwrap();
    if let Err(res) = w.acting_session(&mut inner, &headers, now) {
        return *res;
    }
    // The token belongs to the target's one user.
    let t = format!("wt_api_{}", random_hex(24));
    w.record(&t);
    let epoch = inner.api_epoch;
    inner.api_tokens.insert(t.clone(), epoch);
    json_res(StatusCode::CREATED, json!({"token": t}))
}

async fn api_login(State(w): App, headers: HeaderMap, body: Bytes) -> Response {
    let now = Instant::now();
    let f = fields(&headers, &body);
    let mut inner = w.inner.lock().unwrap();
    if f.get("username") != Some(&w.config.username) || f.get("password") != Some(&inner.password) {
        return json_res(StatusCode::UNAUTHORIZED, json!({"error": "invalid_grant"}));
    }
    w.make_room(&mut inner, now);
    let id = w.new_id(&mut inner);
    let sess = w.authenticated_session(&mut inner, now);
    inner.sessions.insert(id.clone(), sess);
    let pair = w.token_pair(&mut inner, &id, None);
    json_res(StatusCode::OK, pair)
}

async fn api_refresh(State(w): App, headers: HeaderMap, body: Bytes) -> Response {
    let now = Instant::now();
    let f = fields(&headers, &body);
    let mut inner = w.inner.lock().unwrap();
    let refused = || json_res(StatusCode::UNAUTHORIZED, json!({"error": "invalid_grant"}));
    let Some(token) = f.get("refresh_token") else {
        return refused();
    };
    let Some(rec) = inner.refresh.get(token) else {
        return refused();
    };
    let (family, mut sid, rotated) = (rec.family, rec.session.clone(), rec.rotated);
    if inner.revoked_families.contains(&family) {
        return refused();
    }
    if rotated && !w.flaw("refresh_reusable") {
        inner.revoked_families.insert(family);
        if let Some(s) = inner.sessions.get_mut(&sid) {
            s.ended = Some("refresh_reuse_detected");
        }
        return refused();
    }
    match w.invalid(&inner, &sid, now) {
        None => {}
        Some(Some(r))
            if (r == "logged_out" && w.flaw("refresh_survives_logout"))
                || (r == "absolute_timeout" && w.flaw("refresh_outlives_session")) =>
        {
            // The flaw: a new session for the refresh token's holder.
            let id = w.new_id(&mut inner);
            let sess = w.authenticated_session(&mut inner, now);
            inner.sessions.insert(id.clone(), sess);
            sid = id;
        }
        Some(_) => return refused(),
    }
    inner.refresh.get_mut(token).expect("found").rotated = true;
    inner.sessions.get_mut(&sid).expect("valid").last = now;
    let pair = w.token_pair(&mut inner, &sid, Some(family));
    json_res(StatusCode::OK, pair)
}

/// The app's routes.
pub fn router(w: Arc<Weak>) -> Router {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/me", get(me))
        .route("/logout", post(logout))
        .route("/password", post(password))
        .route("/api-tokens", post(api_tokens))
        .route("/api/login", post(api_login))
        .route("/api/refresh", post(api_refresh))
        .route("/api/logout", post(logout))
        .route("/api/password", post(password))
        .with_state(w)
}

/// Serves the app on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, w: Arc<Weak>) {
    axum::serve(listener, router(w)).await.expect("serve");
}
