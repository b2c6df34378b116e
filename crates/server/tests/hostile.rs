//! A hostile-input corpus (invariant 9): over a thousand malformed, oversized,
//! forged or cross-site requests, built by small generator functions into one
//! table and run through the router with a manual clock, once over the in-memory
//! test store and once over the embedded SQLite store that `serve` uses.
//!
//! Every case must get a 4xx (never a 5xx: a panic would be the panic layer's
//! 500), an `application/problem+json` document with a stable `code` (RFC 6749
//! JSON with `error` and `code` for the token endpoint and RFC 7009 request
//! errors), `Cache-Control: no-store`, no `Set-Cookie`, a `WWW-Authenticate`
//! challenge on every 401 (with `error="invalid_token"` when the hostile value was
//! a bearer credential), and no echo of any token, password or hostile value in
//! the body or headers. Failing cases are collected and reported together, by name.
//! Afterwards every credential of the fixture must still work: no hostile request
//! changed anything.
//!
//! A second, smaller table holds junk for which RFC 7662 / RFC 7009 prescribe a
//! 200 (`{"active":false}`, `{}`), checked for their exact bodies. A raw-socket
//! test through the built binary covers what the router never sees: bytes that
//! hyper refuses before routing, truncated requests and short bodies.

mod common;
#[cfg(unix)]
mod process;

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{ADMIN_TOKEN, Grant, Login, ORIGIN, PASSWORD, Req, Resp, START, TestApp, urlencode};
use ed25519_dalek::Signer as _;
use ed25519_dalek::pkcs8::DecodePrivateKey as _;
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use sessionguard_core::{ManualClock, Token, TokenId, TokenKind};
use sessionguard_jwt::KeySet;
use sessionguard_server::{AppState, Config, DB_FILE, Overrides};
use sessionguard_store_sqlite::SqliteStore;
use sha2::{Digest, Sha256, Sha384, Sha512};
use tower::ServiceExt as _;

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

// -------------------------------------------------------------- the app

/// The application under attack: its router, clock and signing keys. The corpus
/// runs over the in-memory test store and over the embedded SQLite store that
/// `sessionguard serve` uses.
struct App {
    router: Router,
    clock: ManualClock,
    /// The key set with its private keys, for forging validly signed tokens.
    keys: String,
    _data: Option<tempfile::TempDir>,
}

impl App {
    fn memory() -> App {
        let t = TestApp::new();
        App {
            router: t.router.clone(),
            clock: t.clock.clone(),
            keys: t.state.keys().to_json_secret().to_string(),
            _data: None,
        }
    }

    fn sqlite() -> App {
        let data = tempfile::tempdir().unwrap();
        let toml = format!("public_origin = \"{ORIGIN}\"\nadmin_token = \"{ADMIN_TOKEN}\"\n");
        let config = Config::from_toml(&toml, |_| None, &Overrides::default()).unwrap();
        let store = SqliteStore::open(data.path().join(DB_FILE)).unwrap();
        let clock = ManualClock::new(START);
        let keys = KeySet::generate(config.keys.algorithm, START);
        let state = AppState::with_keys(&config, store, clock.clone(), keys).unwrap();
        App {
            router: sessionguard_server::router(state.clone()),
            clock,
            keys: state.keys().to_json_secret().to_string(),
            _data: Some(data),
        }
    }

    async fn send(&self, req: Request<Body>) -> Resp {
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

    async fn req(&self, req: Req) -> Resp {
        self.send(req.build()).await
    }

    fn advance(&self, minutes: u64) {
        self.clock.advance(Duration::from_secs(minutes * 60));
    }

    async fn create_user(&self, username: &str, password: &str) -> String {
        let res = self
            .req(
                Req::post("/v1/admin/users")
                    .bearer(ADMIN_TOKEN)
                    .json(json!({ "username": username, "password": password })),
            )
            .await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
        res.json()["id"].as_str().unwrap().to_owned()
    }

    async fn login(&self, username: &str, password: &str) -> Login {
        let res = self
            .req(Req::post("/v1/login").json(json!({ "username": username, "password": password })))
            .await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text());
        Login::from(res)
    }

    async fn token_login(&self, username: &str, password: &str) -> Grant {
        let req = Req::post("/v1/token").form(&[
            ("grant_type", "password"),
            ("username", username),
            ("password", password),
        ]);
        Grant::from(self.req(req).await)
    }

    async fn introspect(&self, token: &str) -> Value {
        let req = Req::post("/v1/introspect")
            .bearer(ADMIN_TOKEN)
            .form(&[("token", token)]);
        let res = self.req(req).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text());
        res.json()
    }
}

// ------------------------------------------------------------------- the table

/// What a case attacks, for the per-category counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Cat {
    SessionTokens,
    Cookies,
    Jwt,
    Headers,
    Bodies,
    Paths,
    Routes,
    Admin,
    CrossOrigin,
    Csrf,
    GrantType,
    IntrospectRevoke,
    Expired,
}

/// One hostile request and what its answer must be.
struct Case {
    cat: Cat,
    name: String,
    method: Method,
    uri: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    /// The exact status and `code`, when the case pins them.
    expect: Option<(u16, &'static str)>,
    /// Values the answer must never contain (besides the fixture's secrets).
    secrets: Vec<Vec<u8>>,
    /// The hostile value is a bearer credential: a 401 must say `invalid_token`.
    hostile_bearer: bool,
}

fn case(cat: Cat, name: impl Into<String>, method: Method, uri: impl Into<String>) -> Case {
    Case {
        cat,
        name: name.into(),
        method,
        uri: uri.into(),
        headers: Vec::new(),
        body: Vec::new(),
        expect: None,
        secrets: Vec::new(),
        hostile_bearer: false,
    }
}

fn get(cat: Cat, name: impl Into<String>, uri: impl Into<String>) -> Case {
    case(cat, name, Method::GET, uri)
}

fn post(cat: Cat, name: impl Into<String>, uri: impl Into<String>) -> Case {
    case(cat, name, Method::POST, uri)
}

fn delete(cat: Cat, name: impl Into<String>, uri: impl Into<String>) -> Case {
    case(cat, name, Method::DELETE, uri)
}

fn cat_bytes(a: &[u8], b: &[u8]) -> Vec<u8> {
    [a, b].concat()
}

impl Case {
    fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers
            .push((name.to_owned(), value.as_ref().to_vec()));
        self
    }

    /// A hostile bearer credential.
    fn bearer(self, token: impl AsRef<[u8]>) -> Self {
        let token = token.as_ref();
        let mut c = self
            .header("authorization", cat_bytes(b"Bearer ", token))
            .secret(token);
        c.hostile_bearer = true;
        c
    }

    /// A genuine bearer credential (the hostility is elsewhere).
    fn auth(self, token: &str) -> Self {
        self.header("authorization", format!("Bearer {token}"))
    }

    /// The session cookie with `value`.
    fn cookie(self, value: impl AsRef<[u8]>) -> Self {
        let value = value.as_ref();
        self.header("cookie", cat_bytes(b"__Host-sg_session=", value))
            .secret(value)
    }

    /// A genuine cookie session as a same-origin page sends it (cookie and CSRF).
    fn browser(self, login: &Login) -> Self {
        self.cookie(&login.token)
            .header("x-csrf-token", login.csrf())
    }

    fn json(self, body: &Value) -> Self {
        self.raw("application/json", body.to_string())
    }

    fn form(self, pairs: &[(&str, &str)]) -> Self {
        let body = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.raw("application/x-www-form-urlencoded", body)
    }

    fn raw(self, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        self.header("content-type", content_type).body(body)
    }

    fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    fn expect(mut self, status: u16, code: &'static str) -> Self {
        self.expect = Some((status, code));
        self
    }

    /// Marks `value` as never to be echoed (values under 8 bytes are too common
    /// to search for).
    fn secret(mut self, value: impl AsRef<[u8]>) -> Self {
        let value = value.as_ref();
        if value.len() >= 8 {
            self.secrets.push(value.to_vec());
        }
        self
    }

    fn request(&self) -> Result<Request<Body>, String> {
        let mut b = Request::builder()
            .method(self.method.clone())
            .uri(self.uri.as_str());
        for (name, value) in &self.headers {
            b = b.header(name.as_str(), value.as_slice());
        }
        b.body(Body::from(self.body.clone()))
            .map_err(|e| format!("the case cannot be built: {e}"))
    }
}

/// Per-category counts and every failure, by case name.
#[derive(Default)]
struct Report {
    counts: BTreeMap<Cat, usize>,
    failures: Vec<String>,
}

impl Report {
    fn total(&self) -> usize {
        self.counts.values().sum()
    }

    fn summary(&self) -> String {
        let counts: Vec<String> = self
            .counts
            .iter()
            .map(|(cat, n)| format!("{cat:?} {n}"))
            .collect();
        format!("{} hostile cases ({})", self.total(), counts.join(", "))
    }
}

/// Runs `cases` against `app`, recording every failure.
async fn run(app: &App, cases: Vec<Case>, global_secrets: &[Vec<u8>], report: &mut Report) {
    for c in cases {
        *report.counts.entry(c.cat).or_default() += 1;
        let problems = match c.request() {
            Ok(req) => {
                let res = app.send(req).await;
                let problems = check(&c, &res, global_secrets);
                if problems.is_empty() {
                    continue;
                }
                let mut excerpt = res.text();
                excerpt.truncate(300);
                format!(
                    "{}; got {} {:?}: {excerpt}",
                    problems.join("; "),
                    res.status,
                    res.header("content-type")
                )
            }
            Err(e) => e,
        };
        report
            .failures
            .push(format!("[{:?}] {}: {problems}", c.cat, c.name));
    }
}

/// Whether `haystack` contains `needle`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && needle.len() <= haystack.len()
        && haystack.windows(needle.len()).any(|w| w == needle)
}

/// The forms in which a secret could be echoed: as sent, JSON-escaped, and its
/// first 16 bytes (a truncated echo is still a leak).
fn echo_forms(secret: &[u8]) -> Vec<Vec<u8>> {
    let mut forms = vec![secret.to_vec()];
    let escaped = serde_json::to_string(&String::from_utf8_lossy(secret)).unwrap();
    forms.push(escaped.trim_matches('"').as_bytes().to_vec());
    if secret.len() > 16 {
        forms.push(secret[..16].to_vec());
    }
    forms
}

/// Every rule of invariant 9 for one answer; the list of what is wrong.
fn check(c: &Case, res: &Resp, global_secrets: &[Vec<u8>]) -> Vec<String> {
    let mut p = Vec::new();
    let status = res.status;
    if status.is_server_error() {
        p.push("a 5xx".to_owned());
    } else if !status.is_client_error() {
        p.push("not a 4xx".to_owned());
    }
    if let Some((want, _)) = c.expect
        && status.as_u16() != want
    {
        p.push(format!("expected status {want}"));
    }
    let path = c.uri.split('?').next().unwrap_or_default();
    let oauth = c.method == Method::POST
        && matches!(path, "/v1/token" | "/v1/revoke")
        && status != StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
    let content_type = res.header("content-type");
    if c.method == Method::HEAD {
        // A HEAD answer has the headers of the GET answer and no body (RFC 9110
        // §9.3.2): of the document, only its media type can be checked.
        if content_type != Some("application/problem+json") || !res.body.is_empty() {
            p.push("a HEAD answer must be a bodiless problem document".to_owned());
        }
    } else {
        check_document(c, res, oauth, &mut p);
    }
    if res.header("cache-control") != Some("no-store") {
        p.push("not Cache-Control: no-store".to_owned());
    }
    if res.headers.contains_key("set-cookie") {
        p.push("an error sets a cookie".to_owned());
    }
    if status == StatusCode::UNAUTHORIZED {
        match res.header("www-authenticate") {
            None => p.push("a 401 without WWW-Authenticate".to_owned()),
            Some(ch) => {
                if !ch.starts_with(r#"Bearer realm="sessionguard""#) {
                    p.push(format!("odd challenge {ch}"));
                }
                if c.hostile_bearer && !ch.contains(r#"error="invalid_token""#) {
                    p.push(
                        "a refused bearer credential without error=\"invalid_token\"".to_owned(),
                    );
                }
            }
        }
    }
    if status == StatusCode::METHOD_NOT_ALLOWED && !res.headers.contains_key("allow") {
        p.push("a 405 without Allow".to_owned());
    }
    let mut answer = res.body.to_vec();
    for (name, value) in &res.headers {
        answer.extend_from_slice(name.as_str().as_bytes());
        answer.extend_from_slice(value.as_bytes());
    }
    for secret in c.secrets.iter().chain(global_secrets) {
        if echo_forms(secret).iter().any(|f| contains(&answer, f)) {
            let shown = String::from_utf8_lossy(&secret[..secret.len().min(24)]).into_owned();
            p.push(format!("the answer echoes {shown:?}"));
        }
    }
    p
}

/// The body: a problem document, or for OAuth endpoints an RFC 6749 error, both
/// with a stable `code`.
fn check_document(c: &Case, res: &Resp, oauth: bool, p: &mut Vec<String>) {
    let status = res.status;
    let content_type = res.header("content-type");
    let doc: Option<Value> = serde_json::from_slice(&res.body).ok();
    let Some(doc) = doc.filter(Value::is_object) else {
        p.push("the body is not a JSON object".to_owned());
        return;
    };
    let code = doc["code"].as_str().unwrap_or_default();
    if code.is_empty() || !code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        p.push(format!("no stable snake_case code: {:?}", doc["code"]));
    }
    if let Some((_, want)) = c.expect
        && code != want
    {
        p.push(format!("expected code {want}"));
    }
    if oauth {
        if content_type != Some("application/json") {
            p.push("an OAuth error must be application/json".to_owned());
        }
        if doc["error"].as_str().is_none_or(str::is_empty) {
            p.push("no RFC 6749 error".to_owned());
        }
        if !doc["error_description"].is_string() {
            p.push("no error_description".to_owned());
        }
        if res.header("pragma") != Some("no-cache") {
            p.push("no Pragma: no-cache".to_owned());
        }
    } else {
        if content_type != Some("application/problem+json") {
            p.push("not application/problem+json".to_owned());
        }
        if doc["status"] != status.as_u16() {
            p.push("the document's status differs".to_owned());
        }
        for key in ["type", "title", "detail"] {
            if !doc[key].is_string() {
                p.push(format!("no {key}"));
            }
        }
    }
}

// -------------------------------------------------------------------- fixture

/// Signs arbitrary headers and payloads with the app's active (Ed25519) key, to
/// build tokens that are validly signed yet wrong in some other way.
struct Forger {
    key: ed25519_dalek::SigningKey,
    kid: String,
}

impl Forger {
    fn of(app: &App) -> Self {
        let doc: Value = serde_json::from_str(&app.keys).unwrap();
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

    fn sign_raw(&self, header: &[u8], payload: &[u8]) -> String {
        let input = format!("{}.{}", b64(header), b64(payload));
        let sig = self.key.sign(input.as_bytes());
        format!("{input}.{}", b64(sig.to_bytes()))
    }

    fn sign(&self, header: &Value, payload: &Value) -> String {
        self.sign_raw(
            header.to_string().as_bytes(),
            payload.to_string().as_bytes(),
        )
    }
}

fn b64(v: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(v)
}

fn json_b64(v: &Value) -> String {
    b64(v.to_string())
}

/// HMAC (RFC 2104) over any SHA-2 digest with block size `block`.
fn hmac<D: Digest>(block: usize, key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut k = if key.len() > block {
        D::digest(key).to_vec()
    } else {
        key.to_vec()
    };
    k.resize(block, 0);
    let pad = |byte: u8| k.iter().map(|b| b ^ byte).collect::<Vec<_>>();
    let inner = D::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    D::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

/// Alice with every kind of credential, and what hostile cases need to forge more.
struct Fx {
    user_id: String,
    /// A cookie (browser) session.
    browser: Login,
    /// Another session, used as a bearer session token.
    bearer: String,
    bearer_sid: String,
    bearer_csrf: String,
    /// A token-client session: access and refresh token.
    grant: Grant,
    api_token: String,
    api_token_id: String,
    forger: Forger,
    /// The active key's JWK, as the JWKS publishes it.
    jwk: Value,
}

impl Fx {
    async fn new(app: &App) -> Fx {
        let user_id = app.create_user("alice", PASSWORD).await;
        let browser = app.login("alice", PASSWORD).await;
        let second = app.login("alice", PASSWORD).await;
        let grant = app.token_login("alice", PASSWORD).await;
        let res = app
            .req(
                Req::post("/v1/api-tokens")
                    .bearer(&second.token)
                    .json(json!({ "name": "ci" })),
            )
            .await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
        let created = res.json();
        let jwks = app.req(Req::get("/.well-known/jwks.json")).await.json();
        Fx {
            user_id,
            bearer_sid: second.session_id(),
            bearer_csrf: second.csrf(),
            bearer: second.token.clone(),
            browser,
            grant,
            api_token: created["token"].as_str().unwrap().to_owned(),
            api_token_id: created["id"].as_str().unwrap().to_owned(),
            forger: Forger::of(app),
            jwk: jwks["keys"][0].clone(),
        }
    }

    /// Every genuine secret of the fixture: no answer may contain one.
    fn secrets(&self) -> Vec<Vec<u8>> {
        [
            self.browser.token.as_str(),
            &self.bearer,
            &self.grant.access,
            &self.grant.refresh,
            &self.api_token,
            ADMIN_TOKEN,
            PASSWORD,
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect()
    }
}

/// `s` with the byte at `i` replaced by `with`.
fn replace_at(s: &str, i: usize, with: &[u8]) -> Vec<u8> {
    let b = s.as_bytes();
    [&b[..i], with, &b[i + 1..]].concat()
}

/// `s` with its last character changed (for base64url: still in the alphabet).
fn flip_last(s: &str) -> String {
    let mut t = s.to_owned();
    let last = t.pop().unwrap();
    t.push(if last == 'A' { 'B' } else { 'A' });
    t
}

// ----------------------------------------------------------------- generators

/// Malformed, truncated, oversized or foreign strings presented as a session
/// token; `None` means the expected answer is 401 `invalid_token`.
/// A named hostile value and, when it is not 401 `invalid_token`, its answer.
type Variant = (String, Vec<u8>, Option<(u16, &'static str)>);

fn session_token_variants(fx: &Fx) -> Vec<Variant> {
    let g = fx.bearer.as_str();
    let v = |name: &str, value: &[u8]| (name.to_owned(), value.to_vec(), None);
    let too_big = Some((431, "headers_too_large"));
    let forged_verifier = Token::from_parts(
        TokenKind::Session,
        TokenId::parse(&fx.bearer_sid).unwrap(),
        [7; 32],
    )
    .reveal()
    .to_string();
    let unknown = Token::generate(TokenKind::Session).reveal().to_string();
    let mut out = vec![
        v("empty", b""),
        v("prefix only", b"sgs_"),
        v("one char short", &g.as_bytes()[..g.len() - 1]),
        v("one char long", format!("{g}A").as_bytes()),
        v("checksum flipped", flip_last(g).as_bytes()),
        v(
            "verifier char flipped",
            &replace_at(g, 40, if g.as_bytes()[40] == b'A' { b"B" } else { b"A" }),
        ),
        v("live selector, forged verifier", forged_verifier.as_bytes()),
        v("well-formed but unknown", unknown.as_bytes()),
        v("a refresh token (sgr_)", fx.grant.refresh.as_bytes()),
        v("an API token (sga_)", fx.api_token.as_bytes()),
        v(
            "prefix swapped to sgr_",
            format!("sgr_{}", &g[4..]).as_bytes(),
        ),
        v(
            "prefix swapped to sga_",
            format!("sga_{}", &g[4..]).as_bytes(),
        ),
        v(
            "prefix in upper case",
            format!("SGS_{}", &g[4..]).as_bytes(),
        ),
        v("non-base64 '+'", &replace_at(g, 10, b"+")),
        v("non-base64 '/'", &replace_at(g, 10, b"/")),
        v("non-base64 '!'", &replace_at(g, 10, b"!")),
        v("base64 padding appended", format!("{g}==").as_bytes()),
        v("obs-text byte 0x80", &replace_at(g, 10, b"\x80")),
        v("invalid UTF-8 0xff 0xfe", &replace_at(g, 10, b"\xff\xfe")),
        v("unicode character", &replace_at(g, 10, "é".as_bytes())),
        v("7 KiB", format!("sgs_{}", "A".repeat(7 * KIB)).as_bytes()),
        (
            "10 KiB".to_owned(),
            format!("sgs_{}", "A".repeat(10 * KIB)).into_bytes(),
            too_big,
        ),
        (
            "1 MiB".to_owned(),
            format!("sgs_{}", "A".repeat(MIB)).into_bytes(),
            too_big,
        ),
        v("path traversal", b"../../../../etc/passwd"),
        v("SQL injection", b"' OR '1'='1' --"),
        v("JSON", br#"{"sid":"x","admin":true}"#),
        v("percent-encoded NUL", b"sgs_%00%00"),
        v("percent-encoded CRLF", b"sgs_%0d%0aSet-Cookie:%20x=y"),
    ];
    // Control bytes, where the http crate lets them into a header value at all
    // (only HTAB: NUL and the rest are refused before any request exists, and
    // are sent over the wire in `wire` instead).
    for b in (0u8..0x20).chain([0x7f]) {
        let value = replace_at(g, 10, &[b]);
        if HeaderValue::from_bytes(&cat_bytes(b"Bearer ", &value)).is_ok() {
            out.push((format!("control byte {b:#04x} inside"), value, None));
        }
    }
    out
}

fn session_token_cases(fx: &Fx) -> Vec<Case> {
    let mut out = Vec::new();
    for (name, value, expect) in session_token_variants(fx) {
        let (status, code) = expect.unwrap_or((401, "invalid_token"));
        let targets = [
            ("cookie", get(Cat::SessionTokens, "", "/v1/session")),
            ("cookie", post(Cat::SessionTokens, "", "/v1/logout")),
            ("bearer", get(Cat::SessionTokens, "", "/v1/session/status")),
            (
                "bearer",
                post(Cat::SessionTokens, "", "/v1/sessions/revoke-others"),
            ),
        ];
        for (carrier, mut c) in targets {
            c.name = format!("{carrier} {name}: {} {}", c.method, c.uri);
            let c = if carrier == "cookie" {
                c.cookie(&value)
            } else {
                c.bearer(&value)
            };
            out.push(c.expect(status, code));
        }
    }
    out
}

fn cookie_cases(fx: &Fx) -> Vec<Case> {
    let g = fx.browser.token.as_str();
    let c = |name: &str| get(Cat::Cookies, name, "/v1/session");
    let many: String = (0..500)
        .map(|i| format!("c{i}=v{i}"))
        .collect::<Vec<_>>()
        .join("; ");
    vec![
        c("cookie without '='").header("cookie", "__Host-sg_session"),
        c("cookie name only, then another").header("cookie", "__Host-sg_session ; a=b"),
        c("duplicate session cookies, junk first").header(
            "cookie",
            format!("__Host-sg_session=junk-junk-junk; __Host-sg_session={g}"),
        ),
        c("duplicate session cookies, both junk").header(
            "cookie",
            "__Host-sg_session=junk-one; __Host-sg_session=junk-two",
        ),
        c("two Cookie headers, junk first")
            .header("cookie", "__Host-sg_session=junk-junk-junk")
            .header("cookie", format!("__Host-sg_session={g}")),
        c("500 cookies, none of them the session").header("cookie", &many),
        c("500 cookies, then a junk session")
            .header("cookie", format!("{many}; __Host-sg_session=junk-junk")),
        c("1000 empty pairs, then junk").header(
            "cookie",
            format!("{}__Host-sg_session=junk", ";".repeat(1000)),
        ),
        c("name in lower case").header("cookie", format!("__host-sg_session={g}")),
        c("name without the __Host- prefix").header("cookie", format!("sg_session={g}")),
        c("__Secure- instead of __Host-").header("cookie", format!("__Secure-sg_session={g}")),
        c("spaces around a junk value").header("cookie", " __Host-sg_session =  junk-junk  "),
        c("quoted junk").header("cookie", "__Host-sg_session=\"junk-junk\""),
        c("half-quoted genuine token").header("cookie", format!("__Host-sg_session=\"{g}")),
        c("'=' inside the value").header("cookie", "__Host-sg_session=sgs_a=b=c"),
        c("junk bearer beats a genuine cookie")
            .cookie(g)
            .bearer("junk-bearer-value"),
        c("two Authorization headers, junk first")
            .bearer("junk-bearer-value")
            .header("authorization", format!("Bearer {}", fx.bearer)),
        c("Basic scheme and no cookie").header("authorization", "Basic YWxpY2U6cGFzc3dvcmQ="),
        c("'Bearer' without a token").header("authorization", "Bearer"),
        c("'Bearer' and a tab").header("authorization", "Bearer\tjunk-junk-junk"),
    ]
    .into_iter()
    .map(|c| c.expect(401, "invalid_token"))
    .collect()
}

/// Hostile JWTs: `(name, token)`.
fn jwt_variants(fx: &Fx) -> Vec<(String, String)> {
    let f = &fx.forger;
    let access = &fx.grant.access;
    let mut seg = access.split('.');
    let (h64, p64, s64) = (
        seg.next().unwrap(),
        seg.next().unwrap(),
        seg.next().unwrap(),
    );
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p64).unwrap()).unwrap();
    let now = claims["iat"].as_i64().unwrap();
    let with = |patch: Value| {
        let mut c = claims.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let header_with = |patch: Value| {
        let mut h = f.header();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                h.as_object_mut().unwrap().remove(k);
            } else {
                h[k] = v.clone();
            }
        }
        h
    };
    let mut out: Vec<(String, String)> = Vec::new();
    let mut push = |name: String, token: String| out.push((name, token));

    for none in ["none", "None", "NONE", "nOnE"] {
        let h = json!({ "alg": none, "typ": "at+jwt", "kid": f.kid });
        let input = format!("{}.{}", json_b64(&h), json_b64(&claims));
        push(format!("alg {none}, unsigned"), format!("{input}."));
        push(
            format!("alg {none}, genuine signature"),
            format!("{input}.{s64}"),
        );
    }
    let h = json!({ "alg": "none", "typ": "at+jwt" });
    push(
        "alg none without kid".into(),
        format!("{}.{}.", json_b64(&h), json_b64(&claims)),
    );
    // Algorithm confusion: HMAC keyed with the public key, in three encodings.
    let x = URL_SAFE_NO_PAD
        .decode(fx.jwk["x"].as_str().unwrap())
        .unwrap();
    let secrets: [(&str, Vec<u8>); 3] = [
        ("raw public key", x),
        ("JWK JSON", fx.jwk.to_string().into_bytes()),
        (
            "base64url x",
            fx.jwk["x"].as_str().unwrap().as_bytes().to_vec(),
        ),
    ];
    for (what, key) in &secrets {
        for alg in ["HS256", "HS384", "HS512"] {
            let h = json!({ "alg": alg, "typ": "at+jwt", "kid": f.kid });
            let input = format!("{}.{}", json_b64(&h), json_b64(&claims));
            let mac = match alg {
                "HS256" => hmac::<Sha256>(64, key, input.as_bytes()),
                "HS384" => hmac::<Sha384>(128, key, input.as_bytes()),
                _ => hmac::<Sha512>(128, key, input.as_bytes()),
            };
            push(
                format!("{alg} keyed with the {what}"),
                format!("{input}.{}", b64(mac)),
            );
        }
    }
    for alg in [
        json!("RS256"),
        json!("ES256"),
        json!("PS256"),
        json!("EdDSA "),
        json!("eddsa"),
        json!(1),
        Value::Null,
    ] {
        push(
            format!("alg {alg} with an EdDSA signature"),
            f.sign(&header_with(json!({ "alg": alg })), &claims),
        );
    }
    for (what, kid) in [
        ("unknown kid", json!("AAAAAAAAAAAAAAAAAAAAAA")),
        ("kid ../../etc/passwd", json!("../../etc/passwd")),
        ("kid /dev/null", json!("/dev/null")),
        ("kid ..\\x", json!("..\\x")),
        ("kid URL", json!("https://evil.example/jwks.json")),
        ("kid of 65 chars", json!("k".repeat(65))),
        ("empty kid", json!("")),
        ("kid with NUL", json!("abc\u{0}def")),
        ("numeric kid", json!(42)),
        ("missing kid", Value::Null),
    ] {
        push(
            what.into(),
            f.sign(&header_with(json!({ "kid": kid })), &claims),
        );
    }
    push(
        "jku to a foreign key set".into(),
        f.sign(
            &header_with(
                json!({ "kid": "AAAAAAAAAAAAAAAAAAAAAA", "jku": "https://evil.example/k" }),
            ),
            &claims,
        ),
    );
    // An attacker's own key, embedded in the header and used to sign.
    let attacker = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let attacker_jwk = json!({
        "kty": "OKP", "crv": "Ed25519", "x": b64(attacker.verifying_key().to_bytes())
    });
    let input = format!(
        "{}.{}",
        json_b64(&header_with(json!({ "jwk": attacker_jwk }))),
        json_b64(&claims)
    );
    push(
        "embedded attacker jwk, signed by the attacker".into(),
        format!(
            "{input}.{}",
            b64(attacker.sign(input.as_bytes()).to_bytes())
        ),
    );
    push(
        "crit header".into(),
        f.sign(&header_with(json!({ "crit": ["exp"] })), &claims),
    );
    for (what, patch) in [
        ("sub", json!({ "sub": "u_mallory" })),
        ("sid", json!({ "sid": TokenId::random().to_string() })),
        ("exp", json!({ "exp": now + 86_400 })),
        ("aud", json!({ "aud": "https://evil.example" })),
        ("iss", json!({ "iss": "https://evil.example" })),
    ] {
        push(
            format!("{what} tampered under the genuine signature"),
            format!("{h64}.{}.{s64}", json_b64(&with(patch))),
        );
    }
    for (what, patch) in [
        (
            "expired (signed)",
            json!({ "exp": now - 1, "iat": now - 301 }),
        ),
        ("future nbf", json!({ "nbf": now + 60 })),
        (
            "future iat",
            json!({ "iat": now + 3600, "exp": now + 4000 }),
        ),
        ("no exp", json!({ "exp": null })),
        ("exp 1e300", json!({ "exp": 1e300 })),
        ("exp as a string", json!({ "exp": "tomorrow" })),
        ("no sid", json!({ "sid": null })),
        ("malformed sid", json!({ "sid": "../x" })),
        (
            "sub of another user (signed)",
            json!({ "sub": "u_mallory" }),
        ),
        (
            "wrong aud array",
            json!({ "aud": ["https://other.example"] }),
        ),
        ("no iss", json!({ "iss": null })),
    ] {
        push(what.into(), f.sign(&f.header(), &with(patch)));
    }
    for typ in [
        json!("JWT"),
        json!("jwt"),
        json!("at+jwt "),
        json!(7),
        Value::Null,
    ] {
        push(
            format!("typ {typ}"),
            f.sign(&header_with(json!({ "typ": typ })), &claims),
        );
    }
    push("2 segments".into(), format!("{h64}.{p64}"));
    push("4 segments".into(), format!("{access}.{s64}"));
    push("empty segments".into(), "..".into());
    push("non-base64 segments".into(), "a*b.c*d.e*f".into());
    push("base64 padding".into(), format!("{h64}=.{p64}=.{s64}="));
    push(
        "header JSON garbage".into(),
        format!("{}.{p64}.{s64}", b64(br#"{"alg":"EdDSA","#)),
    );
    push(
        "header not an object".into(),
        format!("{}.{p64}.{s64}", b64("[]")),
    );
    push(
        "duplicate alg (signed)".into(),
        f.sign_raw(
            format!(
                r#"{{"alg":"EdDSA","alg":"none","typ":"at+jwt","kid":"{}"}}"#,
                f.kid
            )
            .as_bytes(),
            claims.to_string().as_bytes(),
        ),
    );
    push(
        "deeply nested header".into(),
        format!(
            "{}.{p64}.{s64}",
            b64(format!("{{\"a\":{}", "[".repeat(600)))
        ),
    );
    push(
        "payload not JSON (signed)".into(),
        f.sign_raw(f.header().to_string().as_bytes(), b"garbage"),
    );
    push(
        "signature truncated".into(),
        access[..access.len() - 4].to_owned(),
    );
    push(
        "signature of another token".into(),
        format!("{h64}.{p64}.{}", b64([0u8; 64])),
    );
    push(
        "5 KiB".into(),
        format!("{h64}.{}.{s64}", "A".repeat(5 * KIB)),
    );
    out
}

fn jwt_cases(fx: &Fx) -> Vec<Case> {
    let mut out = Vec::new();
    let rotating = [
        post(Cat::Jwt, "", "/v1/logout"),
        post(Cat::Jwt, "", "/v1/password").json(&json!({
            "current_password": PASSWORD, "new_password": "a brand new password"
        })),
        get(Cat::Jwt, "", "/v1/sessions"),
        post(Cat::Jwt, "", "/v1/api-tokens").json(&json!({ "name": "evil" })),
        delete(Cat::Jwt, "", format!("/v1/sessions/{}", fx.bearer_sid)),
        post(Cat::Jwt, "", "/v1/sessions/revoke-others"),
        get(Cat::Jwt, "", "/v1/session/status"),
        delete(Cat::Jwt, "", format!("/v1/api-tokens/{}", fx.api_token_id)),
    ];
    for (i, (name, token)) in jwt_variants(fx).into_iter().enumerate() {
        let template = &rotating[i % rotating.len()];
        let mut other = case(Cat::Jwt, "", template.method.clone(), template.uri.clone());
        other.headers = template.headers.clone();
        other.body = template.body.clone();
        for mut c in [get(Cat::Jwt, "", "/v1/session"), other] {
            c.name = format!("{name}: {} {}", c.method, c.uri);
            out.push(c.bearer(&token).expect(401, "invalid_token"));
        }
    }
    // As a cookie, a JWT is not a session token at all, genuine or not.
    let unsigned = jwt_variants(fx).swap_remove(0).1;
    for (name, token) in [
        ("genuine access token", fx.grant.access.clone()),
        ("alg none access token", unsigned),
    ] {
        out.push(
            get(
                Cat::Jwt,
                format!("{name} as the session cookie"),
                "/v1/session",
            )
            .cookie(&token)
            .expect(401, "invalid_token"),
        );
    }
    out
}

fn header_cases(fx: &Fx) -> Vec<Case> {
    let mut block = get(Cat::Headers, "20 KiB header block", "/v1/session").auth(&fx.bearer);
    for i in 0..5 {
        block = block.header(&format!("x-pad-{i}"), "p".repeat(4 * KIB));
    }
    // In-process there is no hyper: 200 headers reach the router, which answers
    // by its own rules (hyper's limit of 100 is checked over the wire, below).
    let mut small = get(Cat::Headers, "200 small headers", "/v1/session");
    for i in 0..200 {
        small = small.header(&format!("x-h-{i}"), "v");
    }
    let mut wide = get(Cat::Headers, "200 headers of 100 bytes", "/v1/session").auth(&fx.bearer);
    for i in 0..200 {
        wide = wide.header(&format!("x-h-{i}"), "w".repeat(100));
    }
    let mut auths = get(Cat::Headers, "50 junk Authorization headers", "/v1/session");
    for i in 0..50 {
        auths = auths.header("authorization", format!("Bearer junk-{i:04}"));
    }
    auths.hostile_bearer = true;
    vec![
        block.expect(431, "headers_too_large"),
        get(Cat::Headers, "9 KiB Authorization", "/v1/session")
            .bearer("A".repeat(9 * KIB))
            .expect(431, "headers_too_large"),
        get(Cat::Headers, "9 KiB Cookie", "/healthz")
            .cookie("A".repeat(9 * KIB))
            .expect(431, "headers_too_large"),
        get(Cat::Headers, "17 KiB custom header", "/healthz")
            .header("x-big", "b".repeat(17 * KIB))
            .expect(431, "headers_too_large"),
        post(
            Cat::Headers,
            "9 KiB Authorization at the token endpoint",
            "/v1/token",
        )
        .bearer("A".repeat(9 * KIB))
        .form(&[("grant_type", "password")])
        .expect(431, "headers_too_large"),
        get(
            Cat::Headers,
            "9 KiB admin token",
            "/v1/admin/users/x/sessions",
        )
        .bearer("A".repeat(9 * KIB))
        .expect(431, "headers_too_large"),
        small.expect(401, "invalid_token"),
        wide.expect(431, "headers_too_large"),
        auths.expect(401, "invalid_token"),
        post(
            Cat::Headers,
            "12 KiB User-Agent with a bad body",
            "/v1/login",
        )
        .header("user-agent", "u".repeat(12 * KIB))
        .json(&json!({ "username": "alice" }))
        .expect(422, "malformed_request"),
    ]
}

/// An endpoint that takes a body: how to authenticate, a body that parses but
/// fails, and its fields.
struct BodyEndpoint {
    name: &'static str,
    uri: String,
    auth: Option<String>,
    base: Value,
    /// `(field, required)`.
    fields: Vec<(&'static str, bool)>,
    accepts_form: bool,
    /// Errors in the RFC 6749 form: the status of a malformed body is 400.
    oauth: bool,
}

impl BodyEndpoint {
    fn case(&self, name: impl std::fmt::Display) -> Case {
        let c = post(
            Cat::Bodies,
            format!("{}: {name}", self.name),
            self.uri.clone(),
        );
        match &self.auth {
            Some(token) => c.auth(token),
            None => c,
        }
    }

    /// The expected status of a well-formed body of the wrong shape.
    fn shape_status(&self) -> u16 {
        if self.oauth { 400 } else { 422 }
    }
}

fn body_endpoints(fx: &Fx) -> Vec<BodyEndpoint> {
    let e = |name, uri: &str, auth: Option<&str>, base: Value, fields, accepts_form, oauth| {
        BodyEndpoint {
            name,
            uri: uri.to_owned(),
            auth: auth.map(str::to_owned),
            base,
            fields,
            accepts_form,
            oauth,
        }
    };
    vec![
        e(
            "login",
            "/v1/login",
            None,
            json!({ "username": "nobody-hostile", "password": "pw-HOSTILE-0001" }),
            vec![("username", true), ("password", true)],
            true,
            false,
        ),
        e(
            "token",
            "/v1/token",
            None,
            json!({ "grant_type": "password", "username": "nobody-hostile", "password": "pw-HOSTILE-0002" }),
            vec![
                ("grant_type", false),
                ("username", false),
                ("password", false),
                ("refresh_token", false),
                ("client_id", false),
            ],
            true,
            true,
        ),
        e(
            "password",
            "/v1/password",
            Some(&fx.bearer),
            json!({ "current_password": "pw-HOSTILE-0003", "new_password": "pw-HOSTILE-0004" }),
            vec![("current_password", true), ("new_password", true)],
            false,
            false,
        ),
        e(
            "admin users",
            "/v1/admin/users",
            Some(ADMIN_TOKEN),
            json!({ "username": " bad name ", "password": "pw-HOSTILE-0005" }),
            vec![("username", true), ("password", true)],
            false,
            false,
        ),
        e(
            "admin sessions",
            "/v1/admin/sessions",
            Some(ADMIN_TOKEN),
            json!({ "user_id": "", "user_agent": "ua", "ip": "127.0.0.1" }),
            vec![("user_id", true), ("user_agent", false), ("ip", false)],
            false,
            false,
        ),
        e(
            "admin revoke",
            &format!("/v1/admin/users/{}/revoke", fx.user_id),
            Some(ADMIN_TOKEN),
            json!({ "reason": "logged_out" }),
            vec![("reason", true)],
            false,
            false,
        ),
        e(
            "api-tokens",
            "/v1/api-tokens",
            Some(&fx.bearer),
            json!({ "name": "", "expires_in": -1 }),
            vec![("name", true), ("expires_in", false)],
            false,
            false,
        ),
        e(
            "introspect",
            "/v1/introspect",
            Some(ADMIN_TOKEN),
            json!({ "token": "sgs_HOSTILE-0006" }),
            vec![("token", false)],
            true,
            false,
        ),
        e(
            "revoke",
            "/v1/revoke",
            None,
            json!({ "token": "sgs_HOSTILE-0007" }),
            vec![("token", false)],
            true,
            true,
        ),
        e(
            "logout",
            "/v1/logout",
            None,
            json!({ "refresh_token": "sgr_HOSTILE-0008" }),
            vec![("refresh_token", false)],
            true,
            false,
        ),
    ]
}

fn body_cases(fx: &Fx) -> Vec<Case> {
    let mut out = Vec::new();
    for ep in body_endpoints(fx) {
        let shape = ep.shape_status();
        // Every field, every wrong JSON type.
        for (field, required) in &ep.fields {
            let wrong = [
                ("a number", json!(987_654_321_987u64)),
                ("a boolean", json!(true)),
                ("an array", json!(["HOSTILE-array-value"])),
                (
                    "an object",
                    json!({ "HOSTILE-object-key": "HOSTILE-object-value" }),
                ),
                ("a float", json!(1.5)),
            ];
            for (what, value) in wrong {
                if *field == "expires_in" && what == "a number" {
                    continue; // a number is its type: covered by the range cases
                }
                let mut body = ep.base.clone();
                body[*field] = value;
                out.push(
                    ep.case(format!("`{field}` is {what}"))
                        .json(&body)
                        .secret("987654321987")
                        .secret("HOSTILE-array-value")
                        .secret("HOSTILE-object-value")
                        .expect(shape, "malformed_request"),
                );
            }
            if *required {
                let mut body = ep.base.clone();
                body[*field] = Value::Null;
                out.push(
                    ep.case(format!("`{field}` is null"))
                        .json(&body)
                        .expect(shape, "malformed_request"),
                );
                body.as_object_mut().unwrap().remove(*field);
                out.push(
                    ep.case(format!("`{field}` is missing"))
                        .json(&body)
                        .expect(shape, "malformed_request"),
                );
            }
        }
        // The whole body of the wrong shape, or not JSON at all.
        for (what, body) in [
            ("an array", "[]"),
            ("a string", "\"HOSTILE-top-level-string\""),
            ("a number", "42"),
            ("null", "null"),
        ] {
            out.push(
                ep.case(format!("body is {what}"))
                    .raw("application/json", body)
                    .secret("HOSTILE-top-level-string")
                    .expect(shape, "malformed_request"),
            );
        }
        let syntax_status = 400;
        for (what, body) in [
            ("truncated JSON", b"{\"a\": ".to_vec()),
            ("single quotes", b"{'token': 'x'}".to_vec()),
            ("trailing comma", b"{\"a\": 1,}".to_vec()),
            (
                "trailing garbage",
                format!("{} HOSTILE-trailing", ep.base).into_bytes(),
            ),
            ("a byte-order mark", b"\xef\xbb\xbf{}".to_vec()),
            ("a comment", b"// hi\n{}".to_vec()),
            ("NaN", b"{\"a\": NaN}".to_vec()),
            (
                "nesting 10 000 deep",
                [b"{\"a\":".as_slice(), &[b'['; 10_000][..]].concat(),
            ),
            (
                "1e309",
                format!("{{\"{}\": 1e309}}", ep.fields[0].0).into_bytes(),
            ),
            (
                "raw invalid UTF-8 bytes",
                [
                    b"{\"".as_slice(),
                    ep.fields[0].0.as_bytes(),
                    b"\": \"\xff\xfe\x80\"}",
                ]
                .concat(),
            ),
            (
                "a lone surrogate escape",
                format!("{{\"{}\": \"\\ud800\"}}", ep.fields[0].0).into_bytes(),
            ),
            (
                "a raw NUL",
                format!("{{\"{}\": \"a\u{0}b\"}}", ep.fields[0].0).into_bytes(),
            ),
        ] {
            let c = ep
                .case(format!("body with {what}"))
                .raw("application/json", body);
            // A JSON syntax error is 400 (it is found before any missing field).
            out.push(c.expect(syntax_status, "malformed_request"));
        }
        // Sizes.
        for (what, size) in [("17 KiB", 17 * KIB), ("1 MiB", MIB)] {
            let mut body = ep.base.clone();
            body["pad"] = json!("p".repeat(size));
            out.push(
                ep.case(format!("{what} body"))
                    .json(&body)
                    .expect(413, "payload_too_large"),
            );
        }
        // Media types.
        let (media_status, media_code) = if ep.oauth {
            (400, "unsupported_media_type")
        } else {
            (415, "unsupported_media_type")
        };
        let base = ep.base.to_string();
        let utf16: Vec<u8> = base.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let mut media = vec![
            ep.case("text/plain").raw("text/plain", base.clone()),
            ep.case("multipart/form-data").raw(
                "multipart/form-data; boundary=x",
                format!(
                    "--x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n{base}\r\n--x--\r\n"
                ),
            ),
            ep.case("no content type").body(base.clone()),
            ep.case("empty content type").raw("", base.clone()),
            ep.case("application/jsonx")
                .raw("application/jsonx", base.clone()),
            ep.case("content type of invalid UTF-8")
                .header("content-type", b"application/\xffjson")
                .body(base.clone()),
        ];
        if !ep.accepts_form {
            media.push(ep.case("a form where only JSON is accepted").raw(
                "application/x-www-form-urlencoded",
                "username=a&password=b&name=c&reason=d&user_id=e",
            ));
        }
        for c in media {
            // Logout ignores a body it does not understand, and then has no credential.
            let c = if ep.name == "logout" {
                c.expect(401, "invalid_token")
            } else {
                c.expect(media_status, media_code)
            };
            out.push(c);
        }
        out.push(
            ep.case("application/json; charset=utf-16")
                .raw("application/json; charset=utf-16", utf16)
                .expect(400, "malformed_request"),
        );
        out.push(ep.case("extra 15 KiB field").json(&{
            let mut b = ep.base.clone();
            if ep.name == "introspect" || ep.name == "revoke" {
                // With a token they would answer 200, as RFC 7662/7009 say.
                b.as_object_mut().unwrap().remove("token");
            }
            b["HOSTILE-extra"] = json!("x".repeat(15 * KIB));
            b
        }));
    }
    out.extend(body_semantic_cases(fx));
    out
}

/// Well-formed bodies with hostile values: numbers out of range, huge or
/// control-character fields, form garbage.
fn body_semantic_cases(fx: &Fx) -> Vec<Case> {
    let tokens = |name: &str| {
        post(Cat::Bodies, format!("api-tokens: {name}"), "/v1/api-tokens").auth(&fx.bearer)
    };
    let mut out = Vec::new();
    for (what, raw, code) in [
        ("expires_in negative", "-1", "invalid_expiry"),
        ("expires_in zero", "0", "invalid_expiry"),
        ("expires_in above the maximum", "7776001", "invalid_expiry"),
        (
            "expires_in i64::MAX",
            "9223372036854775807",
            "invalid_expiry",
        ),
        (
            "expires_in i64::MIN",
            "-9223372036854775808",
            "invalid_expiry",
        ),
        (
            "expires_in u64::MAX",
            "18446744073709551615",
            "malformed_request",
        ),
        (
            "expires_in u64::MAX + 1",
            "18446744073709551616",
            "malformed_request",
        ),
        (
            "expires_in i64::MIN - 1",
            "-9223372036854775809",
            "malformed_request",
        ),
        ("expires_in -0.0", "-0.0", "malformed_request"),
        ("expires_in 1e3", "1e3", "malformed_request"),
        ("expires_in as a string", "\"3600\"", "malformed_request"),
    ] {
        out.push(
            tokens(what)
                .raw(
                    "application/json",
                    format!(r#"{{"name":"ok","expires_in":{raw}}}"#),
                )
                .expect(422, code),
        );
    }
    out.push(
        tokens("expires_in 1e309")
            .raw("application/json", r#"{"name":"ok","expires_in":1e309}"#)
            .expect(400, "malformed_request"),
    );
    for (what, name) in [
        ("empty name", String::new()),
        ("101-character name", "n".repeat(101)),
        ("15 KiB name", "n".repeat(15 * KIB)),
        ("name with NUL", "a\u{0}b".to_owned()),
        ("name with a newline", "a\nb".to_owned()),
        ("name with ESC", "a\u{1b}[31mb".to_owned()),
    ] {
        out.push(
            tokens(what)
                .json(&json!({ "name": name }))
                .expect(422, "invalid_name"),
        );
    }
    let admin_users = |name: &str| {
        post(
            Cat::Bodies,
            format!("admin users: {name}"),
            "/v1/admin/users",
        )
        .auth(ADMIN_TOKEN)
    };
    for (what, username, code) in [
        ("empty username", String::new(), "invalid_username"),
        ("65-character username", "u".repeat(65), "invalid_username"),
        ("15 KiB username", "u".repeat(15 * KIB), "invalid_username"),
        (
            "username with NUL",
            "al\u{0}ice".to_owned(),
            "invalid_username",
        ),
        (
            "username with a trailing space",
            "alice ".to_owned(),
            "invalid_username",
        ),
        ("username taken", "alice".to_owned(), "username_taken"),
    ] {
        let status = if code == "username_taken" { 409 } else { 400 };
        out.push(
            admin_users(what)
                .json(&json!({ "username": username, "password": "pw-HOSTILE-long-enough" }))
                .secret("pw-HOSTILE-long-enough")
                .expect(status, code),
        );
    }
    for (what, password) in [
        ("7-character password", "HOSTILE".to_owned()),
        ("1025-byte password", "HOSTILE-".repeat(129)),
    ] {
        out.push(
            admin_users(what)
                .json(&json!({ "username": "mallory", "password": password }))
                .secret(&password)
                .expect(422, "weak_password"),
        );
    }
    let admin_sessions = |name: &str| {
        post(
            Cat::Bodies,
            format!("admin sessions: {name}"),
            "/v1/admin/sessions",
        )
        .auth(ADMIN_TOKEN)
    };
    for (what, body, status, code) in [
        (
            "empty user_id",
            json!({ "user_id": "" }),
            400,
            "invalid_user_id",
        ),
        (
            "129-byte user_id",
            json!({ "user_id": "u".repeat(129) }),
            400,
            "invalid_user_id",
        ),
        (
            "user_id with a newline",
            json!({ "user_id": "u\nx" }),
            400,
            "invalid_user_id",
        ),
        (
            "ip not an address",
            json!({ "user_id": "u_x", "ip": "HOSTILE-not-an-ip" }),
            400,
            "malformed_request",
        ),
        (
            "ip with a port",
            json!({ "user_id": "u_x", "ip": "127.0.0.1:80" }),
            400,
            "malformed_request",
        ),
        (
            "ip out of range",
            json!({ "user_id": "u_x", "ip": "256.0.0.1" }),
            400,
            "malformed_request",
        ),
    ] {
        out.push(
            admin_sessions(what)
                .json(&body)
                .secret("HOSTILE-not-an-ip")
                .expect(status, code),
        );
    }
    for (what, reason) in [
        ("reason logged_out", "logged_out"),
        ("reason empty", ""),
        ("reason in upper case", "REVOKED_BY_ADMIN"),
        ("reason with a NUL", "revoked_by_admin\u{0}"),
        ("reason 15 KiB", &"r".repeat(15 * KIB)),
    ] {
        out.push(
            post(
                Cat::Bodies,
                format!("admin revoke: {what}"),
                format!("/v1/admin/users/{}/revoke", fx.user_id),
            )
            .auth(ADMIN_TOKEN)
            .json(&json!({ "reason": reason }))
            .expect(400, "invalid_reason"),
        );
    }
    // Login: hostile values that parse. Each costs one argon2 verification
    // against the dummy hash, so there are few of them.
    let login = |name: &str| post(Cat::Bodies, format!("login: {name}"), "/v1/login");
    out.extend([
        login("1025-byte password")
            .json(&json!({ "username": "alice", "password": "HOSTILE-".repeat(129) }))
            .secret("HOSTILE-".repeat(129))
            .expect(401, "invalid_credentials"),
        login("15 KiB username")
            .json(&json!({ "username": "u".repeat(15 * KIB), "password": "pw-HOSTILE-0009" }))
            .secret("pw-HOSTILE-0009")
            .expect(401, "invalid_credentials"),
        login("username with NUL")
            .json(&json!({ "username": "alice\u{0}", "password": PASSWORD }))
            .expect(401, "invalid_credentials"),
        login("form with invalid UTF-8 bytes")
            .raw(
                "application/x-www-form-urlencoded",
                b"username=al\xffice&password=pw-HOSTILE-\xfe0010".to_vec(),
            )
            .secret("pw-HOSTILE-")
            .expect(401, "invalid_credentials"),
        login("form with percent-encoding garbage")
            .raw(
                "application/x-www-form-urlencoded",
                "username=%zz%&password=pw-HOSTILE-%zz0011%",
            )
            .secret("pw-HOSTILE-")
            .expect(401, "invalid_credentials"),
        login("form with a repeated key")
            .raw(
                "application/x-www-form-urlencoded",
                "username=alice&username=bob&password=pw-HOSTILE-0012",
            )
            .secret("pw-HOSTILE-0012")
            .expect(422, "malformed_request"),
        login("form missing the password")
            .raw("application/x-www-form-urlencoded", "username=alice")
            .expect(422, "malformed_request"),
        login("form of only separators")
            .raw("application/x-www-form-urlencoded", "&&&==&=")
            .expect(422, "malformed_request"),
        login("empty JSON body")
            .raw("application/json", "")
            .expect(400, "malformed_request"),
    ]);
    // Password change: wrong current password, or a weak new one.
    let password = |name: &str| {
        post(Cat::Bodies, format!("password: {name}"), "/v1/password").auth(&fx.bearer)
    };
    out.extend([
        password("new password too short")
            .json(&json!({ "current_password": PASSWORD, "new_password": "HOSTILE" }))
            .expect(422, "weak_password"),
        password("new password 1025 bytes")
            .json(&json!({ "current_password": PASSWORD, "new_password": "HOSTILE-".repeat(129) }))
            .secret("HOSTILE-".repeat(129))
            .expect(422, "weak_password"),
        password("current password 1025 bytes")
            .json(&json!({ "current_password": "HOSTILE-".repeat(129), "new_password": "a brand new password" }))
            .secret("HOSTILE-".repeat(129))
            .expect(401, "invalid_credentials"),
        password("wrong current password")
            .json(&json!({ "current_password": "pw-HOSTILE-0013", "new_password": "a brand new password" }))
            .secret("pw-HOSTILE-0013")
            .expect(401, "invalid_credentials"),
    ]);
    // Logout with a junk refresh token in the body.
    let logout = |name: &str| post(Cat::Bodies, format!("logout: {name}"), "/v1/logout");
    out.extend([
        logout("refresh_token empty")
            .json(&json!({ "refresh_token": "" }))
            .expect(401, "invalid_token"),
        logout("refresh_token a session token")
            .json(&json!({ "refresh_token": fx.bearer }))
            .expect(401, "invalid_token"),
        logout("refresh_token an API token")
            .json(&json!({ "refresh_token": fx.api_token }))
            .expect(401, "invalid_token"),
        logout("refresh_token with a flipped checksum")
            .json(&json!({ "refresh_token": flip_last(&fx.grant.refresh) }))
            .secret(flip_last(&fx.grant.refresh))
            .expect(401, "invalid_token"),
        logout("refresh_token 15 KiB")
            .json(&json!({ "refresh_token": format!("sgr_{}", "A".repeat(15 * KIB)) }))
            .expect(401, "invalid_token"),
        logout("refresh_token of invalid UTF-8 in a form")
            .raw(
                "application/x-www-form-urlencoded",
                b"refresh_token=sgr_\xff\xfeHOSTILE".to_vec(),
            )
            .expect(401, "invalid_token"),
        logout("refresh_token repeated in a form")
            .raw(
                "application/x-www-form-urlencoded",
                "refresh_token=sgr_HOSTILE-a&refresh_token=sgr_HOSTILE-b",
            )
            .expect(422, "malformed_request"),
        logout("junk bearer refresh token")
            .bearer("sgr_HOSTILE-refresh-token")
            .expect(401, "invalid_token"),
        logout("bearer refresh token with a flipped checksum")
            .bearer(flip_last(&fx.grant.refresh))
            .expect(401, "invalid_token"),
    ]);
    out
}

fn path_cases(fx: &Fx) -> Vec<Case> {
    let ids: [(&str, String); 16] = [
        ("1000 characters", "a".repeat(1000)),
        ("21 characters", "a".repeat(21)),
        ("23 characters", "a".repeat(23)),
        ("..", "..".to_owned()),
        ("percent-encoded ..", "%2e%2e".to_owned()),
        ("percent-encoded slash", "%2F".to_owned()),
        ("encoded traversal", "..%2F..%2Fetc%2Fpasswd".to_owned()),
        ("percent-encoded unicode", "%C3%A9%E2%80%AE".to_owned()),
        ("percent-encoded NUL", "%00".to_owned()),
        ("percent-encoded CRLF", "%0d%0a".to_owned()),
        ("space", "%20".to_owned()),
        ("lone %", "%".to_owned()),
        ("%zz", "%zz".to_owned()),
        ("%%", "%%".to_owned()),
        ("a session token", fx.bearer.clone()),
        ("an id with a dot", format!("{}.", fx.bearer_sid)),
    ];
    let mut out = Vec::new();
    for (what, id) in &ids {
        out.push(
            delete(
                Cat::Paths,
                format!("session id {what}"),
                format!("/v1/sessions/{id}"),
            )
            .auth(&fx.bearer)
            .expect(400, "invalid_session_id"),
        );
        out.push(
            delete(
                Cat::Paths,
                format!("API token id {what}"),
                format!("/v1/api-tokens/{id}"),
            )
            .auth(&fx.bearer)
            .expect(404, "not_found"),
        );
    }
    for (what, uri_id) in [("invalid UTF-8", "%ff%fe"), ("overlong UTF-8", "%c0%af")] {
        for uri in [
            format!("/v1/sessions/{uri_id}"),
            format!("/v1/api-tokens/{uri_id}"),
        ] {
            out.push(
                delete(Cat::Paths, format!("{what} in {uri}"), uri)
                    .auth(&fx.bearer)
                    .expect(400, "malformed_request"),
            );
        }
        out.push(
            get(
                Cat::Paths,
                format!("{what} in an admin user id"),
                format!("/v1/admin/users/{uri_id}/sessions"),
            )
            .auth(ADMIN_TOKEN)
            .expect(400, "malformed_request"),
        );
    }
    out.push(
        delete(
            Cat::Paths,
            "a well-formed id of no session",
            format!("/v1/sessions/{}", TokenId::random()),
        )
        .auth(&fx.bearer)
        .expect(404, "not_found"),
    );
    out.push(
        delete(
            Cat::Paths,
            "a well-formed id of no API token",
            format!("/v1/api-tokens/{}", TokenId::random()),
        )
        .auth(&fx.bearer)
        .expect(404, "not_found"),
    );
    for (what, id) in [
        ("129 bytes", "u".repeat(129)),
        ("percent-encoded NUL", "u%00x".to_owned()),
        ("percent-encoded newline", "u%0ax".to_owned()),
    ] {
        out.push(
            get(
                Cat::Paths,
                format!("admin user id {what} (sessions)"),
                format!("/v1/admin/users/{id}/sessions"),
            )
            .auth(ADMIN_TOKEN)
            .expect(400, "invalid_user_id"),
        );
        out.push(
            post(
                Cat::Paths,
                format!("admin user id {what} (revoke)"),
                format!("/v1/admin/users/{id}/revoke"),
            )
            .auth(ADMIN_TOKEN)
            .json(&json!({ "reason": "revoked_by_admin" }))
            .expect(400, "invalid_user_id"),
        );
    }
    out
}

/// Every route and the methods it allows (HEAD comes with GET).
const ROUTES: [(&str, &[&str]); 20] = [
    ("/healthz", &["GET"]),
    ("/readyz", &["GET"]),
    ("/.well-known/jwks.json", &["GET"]),
    ("/v1/login", &["POST"]),
    ("/v1/token", &["POST"]),
    ("/v1/introspect", &["POST"]),
    ("/v1/revoke", &["POST"]),
    ("/v1/logout", &["POST"]),
    ("/v1/session", &["GET"]),
    ("/v1/session/status", &["GET"]),
    ("/v1/password", &["POST"]),
    ("/v1/sessions", &["GET"]),
    ("/v1/sessions/revoke-others", &["POST"]),
    ("/v1/sessions/AAAAAAAAAAAAAAAAAAAAAA", &["DELETE"]),
    ("/v1/api-tokens", &["GET", "POST"]),
    ("/v1/api-tokens/AAAAAAAAAAAAAAAAAAAAAA", &["DELETE"]),
    ("/v1/admin/users", &["POST"]),
    ("/v1/admin/users/u_x/revoke", &["POST"]),
    ("/v1/admin/users/u_x/sessions", &["GET"]),
    ("/v1/admin/sessions", &["POST"]),
];

fn route_cases() -> Vec<Case> {
    let mut out = Vec::new();
    for (path, allowed) in ROUTES {
        for method in [
            "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT",
            "PROPFIND",
        ] {
            // HEAD is GET without the body.
            if allowed.contains(&method) || (method == "HEAD" && allowed.contains(&"GET")) {
                continue;
            }
            let m = Method::from_bytes(method.as_bytes()).unwrap();
            out.push(
                case(Cat::Routes, format!("{method} {path}"), m, path)
                    .expect(405, "method_not_allowed"),
            );
        }
    }
    for path in [
        "/",
        "/v2/session",
        "/v1",
        "/v1/",
        "/v1/session/",
        "/v1/Session",
        "//v1/session",
        "/v1/./session",
        "/v1/../v1/session",
        "/v1/sessions/a/b",
        "/v1/sessions/",
        "/v1/admin",
        "/v1/admin/users/",
        "/.well-known/openid-configuration",
        "/.well-known/jwks.json/x",
        "/metrics/",
        "/metrics/x",
        "/%00",
        "/v1/login%00",
        "/v1/login;jsessionid=x",
        "/v1/%2e%2e/healthz",
        "/healthz%2F..",
        &format!("/{}", "a".repeat(4 * KIB)),
    ] {
        out.push(
            get(Cat::Routes, format!("unknown route {path:.40}"), path).expect(404, "not_found"),
        );
    }
    out.push(
        post(Cat::Routes, "unknown route with a body", "/v1/nope")
            .json(&json!({}))
            .expect(404, "not_found"),
    );
    out
}

fn admin_cases(fx: &Fx) -> Vec<Case> {
    let routes = |name: &str| {
        vec![
            post(
                Cat::Admin,
                format!("{name}: create user"),
                "/v1/admin/users",
            )
            .json(&json!({ "username": "mallory", "password": "mallory's password" })),
            post(
                Cat::Admin,
                format!("{name}: sidecar session"),
                "/v1/admin/sessions",
            )
            .json(&json!({ "user_id": fx.user_id })),
            post(
                Cat::Admin,
                format!("{name}: revoke alice"),
                format!("/v1/admin/users/{}/revoke", fx.user_id),
            )
            .json(&json!({ "reason": "revoked_by_admin" })),
            get(
                Cat::Admin,
                format!("{name}: alice's sessions"),
                format!("/v1/admin/users/{}/sessions", fx.user_id),
            ),
            get(Cat::Admin, format!("{name}: metrics"), "/metrics"),
        ]
    };
    let upper = ADMIN_TOKEN.to_uppercase();
    let short = &ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1];
    type Apply<'a> = Box<dyn Fn(Case) -> Case + 'a>;
    let variants: Vec<(&str, Apply<'_>, (u16, &'static str))> = vec![
        (
            "missing",
            Box::new(|c: Case| c),
            (401, "admin_unauthorized"),
        ),
        (
            "wrong",
            Box::new(|c: Case| c.bearer("not-the-admin-token")),
            (401, "admin_unauthorized"),
        ),
        (
            "one char short",
            Box::new(move |c: Case| c.bearer(short)),
            (401, "admin_unauthorized"),
        ),
        (
            "one char long",
            Box::new(|c: Case| c.bearer(format!("{ADMIN_TOKEN}x"))),
            (401, "admin_unauthorized"),
        ),
        (
            "upper case",
            Box::new(move |c: Case| c.bearer(&upper)),
            (401, "admin_unauthorized"),
        ),
        (
            "empty",
            Box::new(|c: Case| c.bearer("")),
            (401, "admin_unauthorized"),
        ),
        (
            "7 KiB",
            Box::new(|c: Case| c.bearer("A".repeat(7 * KIB))),
            (401, "admin_unauthorized"),
        ),
        (
            "9 KiB",
            Box::new(|c: Case| c.bearer("A".repeat(9 * KIB))),
            (431, "headers_too_large"),
        ),
        (
            "non-ASCII",
            Box::new(|c: Case| c.bearer(format!("{ADMIN_TOKEN}é"))),
            (401, "admin_unauthorized"),
        ),
        (
            "invalid UTF-8",
            Box::new(|c: Case| c.bearer(b"admin-\xff\xfe-token")),
            (401, "admin_unauthorized"),
        ),
        (
            "Basic scheme",
            Box::new(|c: Case| c.header("authorization", format!("Basic {ADMIN_TOKEN}"))),
            (401, "admin_unauthorized"),
        ),
        (
            "Token scheme",
            Box::new(|c: Case| c.header("authorization", format!("Token {ADMIN_TOKEN}"))),
            (401, "admin_unauthorized"),
        ),
        (
            "as a cookie",
            Box::new(|c: Case| c.header("cookie", format!("admin_token={ADMIN_TOKEN}"))),
            (401, "admin_unauthorized"),
        ),
        (
            "in X-Admin-Token",
            Box::new(|c: Case| c.header("x-admin-token", ADMIN_TOKEN)),
            (401, "admin_unauthorized"),
        ),
        (
            "alice's session token",
            Box::new(|c: Case| c.bearer(&fx.bearer)),
            (401, "admin_unauthorized"),
        ),
        (
            "alice's access token",
            Box::new(|c: Case| c.bearer(&fx.grant.access)),
            (401, "admin_unauthorized"),
        ),
        (
            "alice's API token",
            Box::new(|c: Case| c.bearer(&fx.api_token)),
            (401, "admin_unauthorized"),
        ),
        (
            "junk bearer before the admin token",
            Box::new(|c: Case| {
                c.bearer("junk-admin-token")
                    .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
            }),
            (401, "admin_unauthorized"),
        ),
    ];
    let mut out = Vec::new();
    for (name, apply, (status, code)) in &variants {
        for c in routes(&format!("admin token {name}")) {
            out.push(apply(c).expect(*status, code));
        }
    }
    out.push(
        get(
            Cat::Admin,
            "admin token in the query string",
            format!(
                "/v1/admin/users/{}/sessions?access_token={ADMIN_TOKEN}",
                fx.user_id
            ),
        )
        .expect(401, "admin_unauthorized"),
    );
    out
}

fn cross_origin_cases(fx: &Fx) -> Vec<Case> {
    let refusals: [(&str, &str, &str); 8] = [
        ("Origin null", "origin", "null"),
        ("Origin evil", "origin", "https://evil.example"),
        (
            "Origin suffix",
            "origin",
            "https://app.example.evil.example",
        ),
        ("Origin other port", "origin", "https://app.example:8443"),
        ("Origin http", "origin", "http://app.example"),
        ("Origin with a path", "origin", "https://app.example/"),
        ("Sec-Fetch-Site cross-site", "sec-fetch-site", "cross-site"),
        ("Sec-Fetch-Site same-site", "sec-fetch-site", "same-site"),
    ];
    let targets = |fx: &Fx| {
        vec![
            post(Cat::CrossOrigin, "login", "/v1/login")
                .json(&json!({ "username": "alice", "password": PASSWORD })),
            post(Cat::CrossOrigin, "token", "/v1/token").form(&[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", PASSWORD),
            ]),
            post(Cat::CrossOrigin, "cookie logout", "/v1/logout").browser(&fx.browser),
            delete(
                Cat::CrossOrigin,
                "cookie DELETE session",
                format!("/v1/sessions/{}", fx.bearer_sid),
            )
            .browser(&fx.browser),
            delete(
                Cat::CrossOrigin,
                "cookie DELETE API token",
                format!("/v1/api-tokens/{}", fx.api_token_id),
            )
            .browser(&fx.browser),
            post(Cat::CrossOrigin, "cookie API token", "/v1/api-tokens")
                .browser(&fx.browser)
                .json(&json!({ "name": "evil" })),
            post(Cat::CrossOrigin, "cookie password", "/v1/password")
                .browser(&fx.browser)
                .json(
                    &json!({ "current_password": PASSWORD, "new_password": "mallory's password" }),
                ),
            post(
                Cat::CrossOrigin,
                "cookie revoke-others",
                "/v1/sessions/revoke-others",
            )
            .browser(&fx.browser),
        ]
    };
    let mut out = Vec::new();
    for (what, name, value) in refusals {
        for mut c in targets(fx) {
            c.name = format!("{} from {what}", c.name);
            out.push(c.header(name, value).expect(403, "cross_origin_request"));
        }
    }
    // Fetch metadata decides before Origin: a cross-site fetch naming our origin.
    for mut c in targets(fx) {
        c.name = format!("{} cross-site with our Origin", c.name);
        out.push(
            c.header("sec-fetch-site", "cross-site")
                .header("origin", ORIGIN)
                .expect(403, "cross_origin_request"),
        );
    }
    out
}

fn csrf_cases(fx: &Fx) -> Vec<Case> {
    let genuine = fx.browser.csrf();
    let variants: Vec<(&str, Option<Vec<u8>>)> = vec![
        ("missing", None),
        ("empty", Some(Vec::new())),
        (
            "another session's",
            Some(fx.bearer_csrf.clone().into_bytes()),
        ),
        ("last char flipped", Some(flip_last(&genuine).into_bytes())),
        (
            "one char short",
            Some(genuine.as_bytes()[..genuine.len() - 1].to_vec()),
        ),
        ("one char long", Some(format!("{genuine}A").into_bytes())),
        ("upper case", Some(genuine.to_uppercase().into_bytes())),
        ("7 KiB", Some("c".repeat(7 * KIB).into_bytes())),
        (
            "non-ASCII bytes",
            Some(cat_bytes(genuine.as_bytes(), b"\xff")),
        ),
        (
            "the session token",
            Some(fx.browser.token.clone().into_bytes()),
        ),
    ];
    let targets = |fx: &Fx| {
        vec![
            post(Cat::Csrf, "logout", "/v1/logout"),
            post(Cat::Csrf, "password", "/v1/password").json(
                &json!({ "current_password": PASSWORD, "new_password": "mallory's password" }),
            ),
            post(Cat::Csrf, "revoke-others", "/v1/sessions/revoke-others"),
            post(Cat::Csrf, "API token", "/v1/api-tokens").json(&json!({ "name": "evil" })),
            delete(
                Cat::Csrf,
                "DELETE session",
                format!("/v1/sessions/{}", fx.bearer_sid),
            ),
            delete(
                Cat::Csrf,
                "DELETE API token",
                format!("/v1/api-tokens/{}", fx.api_token_id),
            ),
        ]
    };
    let mut out = Vec::new();
    for (what, token) in &variants {
        for mut c in targets(fx) {
            c.name = format!("{}: CSRF token {what}", c.name);
            let mut c = c
                .cookie(&fx.browser.token)
                .header("sec-fetch-site", "same-origin");
            if let Some(t) = token {
                c = c.header("x-csrf-token", t);
            }
            out.push(c.expect(403, "csrf_token_invalid"));
        }
    }
    // The token anywhere but its header.
    out.push(
        post(
            Cat::Csrf,
            "logout: CSRF token in the query",
            format!("/v1/logout?csrf_token={genuine}"),
        )
        .cookie(&fx.browser.token)
        .expect(403, "csrf_token_invalid"),
    );
    out.push(
        post(Cat::Csrf, "logout: CSRF token in a cookie", "/v1/logout")
            .header(
                "cookie",
                format!(
                    "__Host-sg_session={}; csrf_token={genuine}",
                    fx.browser.token
                ),
            )
            .expect(403, "csrf_token_invalid"),
    );
    out.push(
        post(Cat::Csrf, "logout: CSRF token in the body", "/v1/logout")
            .cookie(&fx.browser.token)
            .json(&json!({ "csrf_token": genuine }))
            .expect(403, "csrf_token_invalid"),
    );
    out
}

fn grant_type_cases(fx: &Fx) -> Vec<Case> {
    let t = |name: &str| post(Cat::GrantType, format!("token: {name}"), "/v1/token");
    let form =
        |name: &str, body: &str| t(name).raw("application/x-www-form-urlencoded", body.to_owned());
    vec![
        form("grant_type unknown", "grant_type=authorization_code&code=x")
            .expect(400, "unsupported_grant_type"),
        form(
            "grant_type client_credentials",
            "grant_type=client_credentials",
        )
        .expect(400, "unsupported_grant_type"),
        form(
            "grant_type JWT bearer",
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer",
        )
        .expect(400, "unsupported_grant_type"),
        form("grant_type empty", "grant_type=&username=alice&password=x")
            .expect(400, "unsupported_grant_type"),
        form(
            "grant_type in upper case",
            "grant_type=PASSWORD&username=alice&password=x",
        )
        .expect(400, "unsupported_grant_type"),
        form(
            "grant_type with a trailing space",
            "grant_type=password+&username=alice",
        )
        .expect(400, "unsupported_grant_type"),
        form(
            "grant_type with NUL",
            "grant_type=password%00&username=alice",
        )
        .expect(400, "unsupported_grant_type"),
        form("grant_type %zz", "grant_type=%zz").expect(400, "unsupported_grant_type"),
        form("grant_type lone %", "grant_type=%").expect(400, "unsupported_grant_type"),
        form("grant_type of invalid UTF-8", "grant_type=%ff%fe")
            .expect(400, "unsupported_grant_type"),
        form(
            "grant_type repeated",
            "grant_type=password&grant_type=refresh_token",
        )
        .expect(400, "malformed_request"),
        form("grant_type missing", "username=alice&password=x").expect(400, "malformed_request"),
        form("empty body", "").expect(400, "malformed_request"),
        form(
            "password grant without username",
            "grant_type=password&password=x",
        )
        .expect(400, "malformed_request"),
        form(
            "password grant with an empty username",
            "grant_type=password&username=&password=x",
        )
        .expect(400, "malformed_request"),
        form(
            "password grant without password",
            "grant_type=password&username=alice",
        )
        .expect(400, "malformed_request"),
        form(
            "refresh grant without refresh_token",
            "grant_type=refresh_token",
        )
        .expect(400, "malformed_request"),
        t("refresh grant with a session token")
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", &fx.bearer),
            ])
            .expect(400, "invalid_token"),
        t("refresh grant with an access token")
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", &fx.grant.access),
            ])
            .expect(400, "invalid_token"),
        t("refresh grant with a flipped checksum")
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", &flip_last(&fx.grant.refresh)),
            ])
            .secret(flip_last(&fx.grant.refresh))
            .expect(400, "invalid_token"),
        t("refresh grant with a 15 KiB token")
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", &"A".repeat(15 * KIB)),
            ])
            .expect(400, "invalid_token"),
        t("refresh grant repeated refresh_token")
            .raw(
                "application/x-www-form-urlencoded",
                format!(
                    "grant_type=refresh_token&refresh_token=sgr_junk&refresh_token={}",
                    fx.grant.refresh
                ),
            )
            .expect(400, "malformed_request"),
        t("client_id of 256 characters")
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", "x"),
                ("client_id", &"c".repeat(256)),
            ])
            .expect(400, "malformed_request"),
        t("client_id with a control character")
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", "x"),
                ("client_id", "app\u{1}"),
            ])
            .expect(400, "malformed_request"),
        t("client_id non-ASCII")
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", "x"),
                ("client_id", "appé"),
            ])
            .expect(400, "malformed_request"),
        t("client_id empty")
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", "x"),
                ("client_id", ""),
            ])
            .expect(400, "malformed_request"),
        t("password grant, wrong password")
            .form(&[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", "pw-HOSTILE-0014"),
            ])
            .secret("pw-HOSTILE-0014")
            .expect(400, "invalid_credentials"),
        t("password grant, invalid UTF-8 username")
            .raw(
                "application/x-www-form-urlencoded",
                b"grant_type=password&username=al\xffice&password=pw-HOSTILE-0015".to_vec(),
            )
            .secret("pw-HOSTILE-0015")
            .expect(400, "invalid_credentials"),
        t("grant_type as a JSON array")
            .json(&json!({ "grant_type": ["password", "refresh_token"] }))
            .expect(400, "malformed_request"),
    ]
}

fn introspect_revoke_cases(fx: &Fx) -> Vec<Case> {
    let intro = |name: &str| {
        post(
            Cat::IntrospectRevoke,
            format!("introspect: {name}"),
            "/v1/introspect",
        )
    };
    let revoke = |name: &str| {
        post(
            Cat::IntrospectRevoke,
            format!("revoke: {name}"),
            "/v1/revoke",
        )
    };
    vec![
        intro("no caller credential")
            .form(&[("token", &fx.bearer)])
            .expect(401, "introspection_unauthorized"),
        intro("junk caller credential")
            .bearer("junk-introspection-token")
            .form(&[("token", &fx.bearer)])
            .expect(401, "introspection_unauthorized"),
        intro("a session token as the caller")
            .bearer(&fx.bearer)
            .form(&[("token", &fx.bearer)])
            .expect(401, "introspection_unauthorized"),
        intro("an access token as the caller")
            .bearer(&fx.grant.access)
            .form(&[("token", &fx.bearer)])
            .expect(401, "introspection_unauthorized"),
        intro("the admin token in Basic")
            .header("authorization", format!("Basic {ADMIN_TOKEN}"))
            .form(&[("token", &fx.bearer)])
            .expect(401, "introspection_unauthorized"),
        intro("no token")
            .auth(ADMIN_TOKEN)
            .form(&[("token_type_hint", "access_token")])
            .expect(400, "malformed_request"),
        intro("token null")
            .auth(ADMIN_TOKEN)
            .json(&json!({ "token": null }))
            .expect(400, "malformed_request"),
        intro("token repeated")
            .auth(ADMIN_TOKEN)
            .raw("application/x-www-form-urlencoded", "token=a&token=b")
            .expect(422, "malformed_request"),
        intro("empty form")
            .auth(ADMIN_TOKEN)
            .raw("application/x-www-form-urlencoded", "")
            .expect(400, "malformed_request"),
        revoke("no token")
            .form(&[("token_type_hint", "refresh_token")])
            .expect(400, "malformed_request"),
        revoke("token null")
            .json(&json!({ "token": null }))
            .expect(400, "malformed_request"),
        revoke("token repeated")
            .raw(
                "application/x-www-form-urlencoded",
                "token=sgs_a&token=sgs_b",
            )
            .expect(400, "malformed_request"),
        revoke("empty form")
            .raw("application/x-www-form-urlencoded", "")
            .expect(400, "malformed_request"),
        revoke("empty JSON body")
            .raw("application/json", "")
            .expect(400, "malformed_request"),
    ]
}

/// Junk for which the RFCs prescribe 200: introspection answers exactly
/// `{"active":false}` (RFC 7662 §2.2) and revocation `{}` (RFC 7009 §2.2).
/// Only values that are no live token of any kind, so that nothing is revoked.
fn rfc_200_cases(fx: &Fx) -> Vec<(Case, Value)> {
    let mut junk: Vec<(String, Vec<u8>)> = session_token_variants(fx)
        .into_iter()
        .filter(|(name, value, expect)| {
            expect.is_none()
                && !name.starts_with("a refresh token")
                && !name.starts_with("an API token")
                && !value.is_empty()
        })
        .map(|(name, value, _)| (name, value))
        .collect();
    junk.extend(
        jwt_variants(fx)
            .into_iter()
            .filter(|(name, _)| !name.contains("(signed)") || name.starts_with("expired"))
            .take(12)
            .map(|(name, token)| (format!("JWT {name}"), token.into_bytes())),
    );
    let mut out = Vec::new();
    for (name, value) in junk {
        let form = cat_bytes(
            b"token=",
            urlencode(&String::from_utf8_lossy(&value)).as_bytes(),
        );
        out.push((
            post(
                Cat::IntrospectRevoke,
                format!("introspect junk: {name}"),
                "/v1/introspect",
            )
            .auth(ADMIN_TOKEN)
            .raw("application/x-www-form-urlencoded", form.clone())
            .secret(&value),
            json!({ "active": false }),
        ));
        out.push((
            post(
                Cat::IntrospectRevoke,
                format!("revoke junk: {name}"),
                "/v1/revoke",
            )
            .raw("application/x-www-form-urlencoded", form)
            .secret(&value),
            json!({}),
        ));
    }
    out
}

// ------------------------------------------------------------------- the tests

#[tokio::test]
async fn hostile_input_gets_problem_documents_over_the_memory_store() {
    corpus("memory", App::memory, App::memory()).await;
}

#[tokio::test]
async fn hostile_input_gets_problem_documents_over_the_embedded_store() {
    corpus("sqlite", App::sqlite, App::sqlite()).await;
}

/// Runs the whole corpus against `app`, and the expired-credential cases against
/// a second app from `fresh` whose clock moves; fails with every failing case.
async fn corpus(store: &str, fresh: fn() -> App, app: App) {
    let fx = Fx::new(&app).await;
    let secrets = fx.secrets();
    let mut report = Report::default();

    let mut cases = Vec::new();
    cases.extend(session_token_cases(&fx));
    cases.extend(cookie_cases(&fx));
    cases.extend(jwt_cases(&fx));
    cases.extend(header_cases(&fx));
    cases.extend(body_cases(&fx));
    cases.extend(path_cases(&fx));
    cases.extend(route_cases());
    cases.extend(admin_cases(&fx));
    cases.extend(cross_origin_cases(&fx));
    cases.extend(csrf_cases(&fx));
    cases.extend(grant_type_cases(&fx));
    cases.extend(introspect_revoke_cases(&fx));
    run(&app, cases, &secrets, &mut report).await;

    // Junk answered 200 by RFC 7662 / 7009: exact bodies, no echo, no error.
    let mut rfc_failures = Vec::new();
    let rfc = rfc_200_cases(&fx);
    let rfc_count = rfc.len();
    for (c, want) in rfc {
        let res = app.send(c.request().unwrap()).await;
        let echoed = c
            .secrets
            .iter()
            .chain(&secrets)
            .any(|s| echo_forms(s).iter().any(|f| contains(&res.body, f)));
        let body: Option<Value> = serde_json::from_slice(&res.body).ok();
        if res.status != StatusCode::OK || body.as_ref() != Some(&want) || echoed {
            rfc_failures.push(format!("{}: {} {}", c.name, res.status, res.text()));
        }
    }

    // Expired credentials, on an app of their own whose clock moves.
    run_expired(&fresh(), &mut report).await;

    // Nothing hostile changed anything: every credential of the fixture still works.
    assert_fixture_intact(&app, &fx).await;

    eprintln!(
        "{store}: {}; {rfc_count} junk tokens answered 200 by RFC 7662/7009",
        report.summary()
    );
    assert!(report.total() >= 200, "{}", report.summary());
    assert!(
        report.failures.is_empty() && rfc_failures.is_empty(),
        "{store}: {} of {} hostile cases failed:\n{}\n{} of {rfc_count} RFC 200 cases failed:\n{}",
        report.failures.len(),
        report.total(),
        report.failures.join("\n"),
        rfc_failures.len(),
        rfc_failures.join("\n"),
    );
}

/// The last line of defence: if a handler ever panics, the panic layer's 500 is
/// still a problem document, uncacheable like every other answer, and echoes
/// nothing of the request.
#[tokio::test]
async fn a_panic_answer_is_an_uncacheable_problem_document() {
    let app = TestApp::new();
    let alice = app.alice().await;
    app.store.panic_from_now();
    let res = Req::get("/v1/session")
        .cookie(&alice.token)
        .send(&app)
        .await;
    res.problem(StatusCode::INTERNAL_SERVER_ERROR, "internal_error");
    assert_eq!(res.header("cache-control"), Some("no-store"));
    assert!(!contains(&res.body, alice.token.as_bytes()));
}

/// Genuine credentials past their time: an access token after its `exp`, then
/// every session after its idle deadline (time moves by the manual clock only).
async fn run_expired(app: &App, report: &mut Report) {
    app.create_user("alice", PASSWORD).await;
    let browser = app.login("alice", PASSWORD).await;
    let bearer = app.login("alice", PASSWORD).await;
    let grant = app.token_login("alice", PASSWORD).await;
    let secrets: Vec<Vec<u8>> = [&browser.token, &bearer.token, &grant.access, &grant.refresh]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();

    app.advance(6); // past the access token's 5 minutes
    let access = &grant.access;
    let sid = &bearer.session_id();
    let e = |c: Case| c.bearer(access).expect(401, "invalid_token");
    let cases = vec![
        e(get(
            Cat::Expired,
            "expired access token: GET /v1/session",
            "/v1/session",
        )),
        e(get(
            Cat::Expired,
            "expired access token: status",
            "/v1/session/status",
        )),
        e(post(
            Cat::Expired,
            "expired access token: logout",
            "/v1/logout",
        )),
        e(post(
            Cat::Expired,
            "expired access token: password",
            "/v1/password",
        )
        .json(&json!({ "current_password": PASSWORD, "new_password": "a brand new password" }))),
        e(get(
            Cat::Expired,
            "expired access token: API tokens",
            "/v1/api-tokens",
        )),
        e(post(
            Cat::Expired,
            "expired access token: new API token",
            "/v1/api-tokens",
        )
        .json(&json!({ "name": "late" }))),
        e(delete(
            Cat::Expired,
            "expired access token: DELETE session",
            format!("/v1/sessions/{sid}"),
        )),
        e(post(
            Cat::Expired,
            "expired access token: revoke-others",
            "/v1/sessions/revoke-others",
        )),
    ];
    run(app, cases, &secrets, report).await;
    assert_eq!(app.introspect(access).await, json!({ "active": false }));

    app.advance(31); // past every session's idle deadline
    let cases = vec![
        get(
            Cat::Expired,
            "idle cookie session: GET /v1/session",
            "/v1/session",
        )
        .cookie(&browser.token)
        .expect(401, "idle_timeout"),
        post(Cat::Expired, "idle cookie session: logout", "/v1/logout")
            .browser(&browser)
            .expect(401, "idle_timeout"),
        get(
            Cat::Expired,
            "idle bearer session: GET /v1/session",
            "/v1/session",
        )
        .bearer(&bearer.token)
        .expect(401, "idle_timeout"),
        post(
            Cat::Expired,
            "idle bearer session: password",
            "/v1/password",
        )
        .bearer(&bearer.token)
        .json(&json!({ "current_password": PASSWORD, "new_password": "a brand new password" }))
        .expect(401, "idle_timeout"),
        post(
            Cat::Expired,
            "idle session's refresh token: refresh grant",
            "/v1/token",
        )
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &grant.refresh),
        ])
        .expect(400, "idle_timeout"),
        post(
            Cat::Expired,
            "idle session's refresh token: logout body",
            "/v1/logout",
        )
        .json(&json!({ "refresh_token": grant.refresh }))
        .expect(401, "idle_timeout"),
        post(
            Cat::Expired,
            "idle session's refresh token: logout bearer",
            "/v1/logout",
        )
        .bearer(&grant.refresh)
        .expect(401, "idle_timeout"),
    ];
    run(app, cases, &secrets, report).await;
}

async fn assert_fixture_intact(app: &App, fx: &Fx) {
    let res = app
        .req(Req::get("/v1/session/status").cookie(&fx.browser.token))
        .await;
    assert_eq!(res.status, StatusCode::OK, "cookie session: {}", res.text());
    let res = app
        .req(Req::get("/v1/session/status").bearer(&fx.bearer))
        .await;
    assert_eq!(res.status, StatusCode::OK, "bearer session: {}", res.text());
    let res = app
        .req(Req::get("/v1/session/status").bearer(&fx.grant.access))
        .await;
    assert_eq!(res.status, StatusCode::OK, "access token: {}", res.text());
    assert_eq!(app.introspect(&fx.grant.refresh).await["active"], true);
    assert_eq!(app.introspect(&fx.api_token).await["active"], true);
    let res = app
        .req(Req::get(&format!("/v1/admin/users/{}/sessions", fx.user_id)).bearer(ADMIN_TOKEN))
        .await;
    assert_eq!(
        res.json()["sessions"].as_array().unwrap().len(),
        3,
        "{}",
        res.text()
    );
    // The password never changed, and no user was created.
    app.login("alice", PASSWORD).await;
    let res = app
        .req(
            Req::post("/v1/admin/users")
                .bearer(ADMIN_TOKEN)
                .json(json!({ "username": "mallory", "password": "mallory's password" })),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
}

// ------------------------------------------------------------ over the wire

/// What the hyper layer in front of the router does with bytes the router never
/// sees. Each request goes on a fresh connection; the server must answer 4xx or
/// close the connection, and `/healthz` must still answer afterwards. Every read
/// is bounded (a guard against hangs, not a timing assertion).
#[cfg(unix)]
mod wire {
    use std::io::{ErrorKind, Read as _, Write as _};
    use std::net::{Shutdown, TcpStream};
    use std::time::Duration;

    use super::process::{Server, startup};

    const GUARD: Duration = Duration::from_secs(10);

    #[derive(Debug)]
    enum Answer {
        /// A response: status and the whole head and body.
        Response(u16, String),
        /// Closed (or reset) without a response.
        Closed,
    }

    /// Sends `request` on a fresh connection (then half-closes it if `close`) and
    /// reads one response, or the close.
    fn exchange(addr: &str, request: &[u8], close: bool) -> Result<Answer, String> {
        let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(GUARD)).unwrap();
        s.set_write_timeout(Some(GUARD)).unwrap();
        // The server may refuse and close before it has read everything: a failed
        // write is then expected, and the answer is still read.
        let _ = s.write_all(request);
        if close {
            let _ = s.shutdown(Shutdown::Write);
        }
        let mut raw = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            match s.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => raw.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if complete(&raw) {
                        break;
                    }
                    return Err("neither an answer nor a close within the guard".to_owned());
                }
                Err(_) => break, // reset
            }
            if complete(&raw) {
                break;
            }
        }
        if raw.is_empty() {
            return Ok(Answer::Closed);
        }
        let text = String::from_utf8_lossy(&raw).into_owned();
        let status = text
            .strip_prefix("HTTP/1.1 ")
            .and_then(|r| r.get(..3))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("not an HTTP response: {text:.200}"))?;
        Ok(Answer::Response(status, text))
    }

    /// Whether `raw` holds a whole response (head and `Content-Length` body).
    fn complete(raw: &[u8]) -> bool {
        let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
            return false;
        };
        let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
        let len = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        raw.len() >= end + 4 + len
    }

    fn is_problem(response: &str) -> bool {
        response
            .to_ascii_lowercase()
            .contains("\r\ncontent-type: application/problem+json\r\n")
    }

    fn healthy(addr: &str) -> Result<(), String> {
        let req = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        match exchange(addr, req.as_bytes(), false)? {
            Answer::Response(200, _) => Ok(()),
            other => Err(format!("/healthz afterwards: {other:?}")),
        }
    }

    /// How a case must be answered.
    enum Want {
        /// A 4xx, or a close without an answer.
        RefusedOrClosed,
        /// Exactly this status: hyper's own answers are plain, not problem documents.
        Status(u16),
        /// A problem document from the router, with this status.
        Problem(u16),
    }

    #[test]
    fn bytes_the_router_never_sees_are_refused_and_the_server_stays_up() {
        let data = tempfile::tempdir().unwrap();
        let server = Server::start(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.path().to_str().unwrap(),
        ]);
        let (_, addr) = startup(&server);
        let a = addr.as_str();
        let head = |line: &str, extra: &str| {
            format!("{line}\r\nHost: {a}\r\nConnection: close\r\n{extra}\r\n").into_bytes()
        };
        let many: String = (0..200).map(|i| format!("X-H-{i}: v\r\n")).collect();
        let pad: String = (0..5)
            .map(|i| format!("X-Pad-{i}: {}\r\n", "p".repeat(4 * 1024)))
            .collect();
        let cases: Vec<(&str, Vec<u8>, bool, Want)> = vec![
            (
                "invalid UTF-8 in the path",
                [b"GET /v1/sessions/\xff\xfe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".as_slice()].concat(),
                false,
                Want::RefusedOrClosed,
            ),
            (
                "invalid UTF-8 in a DELETE path with a bearer",
                b"DELETE /v1/sessions/\xc3\x28 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sgs_x\r\nConnection: close\r\n\r\n".to_vec(),
                false,
                Want::RefusedOrClosed,
            ),
            (
                "control byte in a header name",
                b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad\x01Name: v\r\nConnection: close\r\n\r\n".to_vec(),
                false,
                Want::RefusedOrClosed,
            ),
            (
                "space in a header name",
                b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Name: v\r\nConnection: close\r\n\r\n".to_vec(),
                false,
                Want::RefusedOrClosed,
            ),
            (
                "byte 0xff in a header name",
                b"GET /healthz HTTP/1.1\r\nHost: x\r\n\xffX: v\r\nConnection: close\r\n\r\n".to_vec(),
                false,
                Want::RefusedOrClosed,
            ),
            (
                "obs-fold in a header value",
                head("GET /v1/session HTTP/1.1", "X-Folded: a\r\n b\r\n"),
                false,
                Want::RefusedOrClosed,
            ),
            (
                "obs-fold in Authorization",
                head("GET /v1/session HTTP/1.1", "Authorization: Bearer\r\n sgs_folded\r\n"),
                false,
                Want::RefusedOrClosed,
            ),
            (
                "NUL in a cookie",
                head("GET /v1/session HTTP/1.1", "Cookie: __Host-sg_session=sgs_a\0b\r\n"),
                false,
                Want::RefusedOrClosed,
            ),
            (
                "control byte in a bearer token",
                head("GET /v1/session HTTP/1.1", "Authorization: Bearer sgs_\x01\x02\r\n"),
                false,
                Want::RefusedOrClosed,
            ),
            (
                "conflicting Content-Length headers",
                head("POST /v1/login HTTP/1.1", "Content-Length: 2\r\nContent-Length: 3\r\n")
                    .into_iter()
                    .chain(*b"{}")
                    .collect(),
                false,
                Want::RefusedOrClosed,
            ),
            (
                "invalid chunked body",
                head(
                    "POST /v1/login HTTP/1.1",
                    "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n",
                )
                .into_iter()
                .chain(*b"zz\r\nnot a chunk\r\n")
                .collect(),
                true,
                Want::RefusedOrClosed,
            ),
            (
                "Content-Length and Transfer-Encoding together",
                head(
                    "POST /v1/login HTTP/1.1",
                    "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
                )
                .into_iter()
                .chain(*b"0\r\n\r\n")
                .collect(),
                false,
                Want::RefusedOrClosed,
            ),
            (
                "negative Content-Length",
                head("POST /v1/login HTTP/1.1", "Content-Length: -1\r\n"),
                false,
                Want::RefusedOrClosed,
            ),
            (
                "Content-Length beyond u64",
                head(
                    "POST /v1/login HTTP/1.1",
                    "Content-Length: 99999999999999999999999\r\n",
                ),
                false,
                Want::RefusedOrClosed,
            ),
            (
                "chunk size beyond u64",
                head(
                    "POST /v1/login HTTP/1.1",
                    "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n",
                )
                .into_iter()
                .chain(*b"FFFFFFFFFFFFFFFFFFFF\r\nx\r\n")
                .collect(),
                true,
                Want::RefusedOrClosed,
            ),
            (
                "Content-Length of 1 GiB, 20 KiB sent, then close",
                head(
                    "POST /v1/login HTTP/1.1",
                    "Content-Type: application/json\r\nContent-Length: 1073741824\r\n",
                )
                .into_iter()
                .chain(std::iter::repeat_n(b' ', 20 * 1024))
                .collect(),
                true,
                Want::RefusedOrClosed,
            ),
            (
                "64 KiB request target",
                head(&format!("GET /{} HTTP/1.1", "a".repeat(64 * 1024)), ""),
                false,
                Want::RefusedOrClosed,
            ),
            (
                "truncated request line, then close",
                b"GET /v1/ses".to_vec(),
                true,
                Want::RefusedOrClosed,
            ),
            (
                "connection closed mid-headers",
                b"GET /v1/session HTTP/1.1\r\nHost: x\r\nAuthorization: Bear".to_vec(),
                true,
                Want::RefusedOrClosed,
            ),
            (
                "body shorter than Content-Length, then close",
                head(
                    "POST /v1/login HTTP/1.1",
                    "Content-Type: application/json\r\nContent-Length: 100\r\n",
                )
                .into_iter()
                .chain(*br#"{"username":"alice""#)
                .collect(),
                true,
                Want::RefusedOrClosed,
            ),
            (
                // hyper allows 100 headers and answers more with its own plain 431
                // before any routing: no problem document is possible there.
                "200 small headers",
                head("GET /healthz HTTP/1.1", &many),
                false,
                Want::Status(431),
            ),
            (
                "20 KiB header block",
                head("GET /v1/session HTTP/1.1", &pad),
                false,
                Want::Problem(431),
            ),
            (
                "1 MiB cookie",
                head(
                    "GET /v1/session HTTP/1.1",
                    &format!("Cookie: __Host-sg_session={}\r\n", "A".repeat(1024 * 1024)),
                ),
                false,
                Want::RefusedOrClosed,
            ),
        ];
        let mut cases: Vec<(String, Vec<u8>, bool, Want)> = cases
            .into_iter()
            .map(|(name, request, close, want)| (name.to_owned(), request, close, want))
            .collect();
        // Every control byte in a session cookie (HTAB alone is allowed, and then
        // the router refuses the token).
        for b in (0u8..0x20).chain([0x7f]) {
            let mut request = head("GET /v1/session HTTP/1.1", "");
            request.truncate(request.len() - 2);
            request.extend_from_slice(b"Cookie: __Host-sg_session=sgs_a");
            request.push(b);
            request.extend_from_slice(b"b\r\n\r\n");
            cases.push((
                format!("control byte {b:#04x} in a cookie"),
                request,
                false,
                Want::RefusedOrClosed,
            ));
        }
        let mut failures = Vec::new();
        for (name, request, close, want) in cases {
            let answer = exchange(a, &request, close);
            eprintln!(
                "{name}: {}",
                match &answer {
                    Ok(Answer::Response(_, text)) => text.lines().next().unwrap_or_default(),
                    Ok(Answer::Closed) => "closed",
                    Err(e) => e,
                }
            );
            let verdict = match (answer, want) {
                (Err(e), _) => Err(e),
                (Ok(Answer::Closed), Want::RefusedOrClosed) => Ok(()),
                // hyper's own refusals have no body; anything with a body came
                // from the router and must be a problem document.
                (Ok(Answer::Response(s, text)), Want::RefusedOrClosed)
                    if (400..500).contains(&s)
                        && (text.ends_with("\r\n\r\n") || is_problem(&text)) =>
                {
                    Ok(())
                }
                (Ok(Answer::Response(s, _)), Want::Status(w)) if s == w => Ok(()),
                (Ok(Answer::Response(s, text)), Want::Problem(w))
                    if s == w && is_problem(&text) =>
                {
                    Ok(())
                }
                (Ok(other), _) => Err(format!("answered {other:?}")),
            };
            if let Err(e) = verdict.and_then(|()| healthy(a)) {
                failures.push(format!("{name}: {e:.300}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert_eq!(server.terminate(), Some(0));
    }
}
