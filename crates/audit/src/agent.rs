//! The agent: logs in, probes and calls the app's endpoints the way the recipe
//! says, one simulated browser (a [`Session`]) at a time, registering every
//! secret it meets with the redactor.

use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use zeroize::Zeroizing;

use crate::cookie::Jar;
use crate::http::{Body, Exchange, Http, Request, SendError};
use crate::model::Evidence;
use crate::progress::Progress;
use crate::recipe::{BodyKind, Endpoint, FieldValue, Piece, Recipe, SessionKind, Template};
use crate::redact::{Kind, Redactor};

/// Why a step could not be done.
#[derive(Debug)]
pub enum Fail {
    /// The target did not answer: the audit stops (exit 2).
    Target(SendError),
    /// A step of a check did not work; the check is not measured, with this reason.
    Step(String),
    /// The account could not be restored (the password is not the original one).
    Restore(String),
}

impl From<SendError> for Fail {
    fn from(e: SendError) -> Fail {
        Fail::Target(e)
    }
}

/// Which password the account has: the recipe's `password` or its `new_password`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pw {
    /// The recipe's `password`.
    Original,
    /// The recipe's `new_password`.
    Changed,
}

/// Options of a run that checks read.
#[derive(Debug, Clone)]
pub struct Options {
    /// The longest real wait (`--max-wait`).
    pub max_wait: Duration,
    /// How many identifiers `token_entropy` collects (`--samples`).
    pub samples: usize,
}

/// What a request is authenticated with.
#[derive(Clone, Default)]
pub struct Cred {
    /// Cookies sent.
    pub jar: Jar,
    /// `Authorization: Bearer` value.
    pub bearer: Option<String>,
}

impl std::fmt::Debug for Cred {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cred")
            .field("cookies", &self.jar)
            .field("bearer", &self.bearer.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Cred {
    /// No credentials.
    pub fn anonymous() -> Cred {
        Cred::default()
    }

    /// A bearer token alone.
    pub fn bearer(token: &str) -> Cred {
        Cred {
            jar: Jar::new(),
            bearer: Some(token.to_owned()),
        }
    }
}

/// One logged-in simulated browser or API client.
#[derive(Clone)]
pub struct Session {
    /// Its cookies.
    pub jar: Jar,
    /// Its bearer token, for a bearer session.
    pub bearer: Option<String>,
    /// Its latest refresh token, when `[refresh]` is given.
    pub refresh: Option<String>,
    /// Its latest login answer, as JSON (for `{login.FIELD}`).
    pub answer: Option<Value>,
    /// The login exchange.
    pub login: Exchange,
    /// The cookies it held just before logging in.
    pub pre_login: Jar,
    /// The exchanges before the login (the anti-CSRF page).
    pub before: Vec<Exchange>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("cookies", &self.jar)
            .field("login", &self.login)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// The credential the session authenticates with.
    pub fn cred(&self) -> Cred {
        Cred {
            jar: self.jar.clone(),
            bearer: self.bearer.clone(),
        }
    }
}

/// Performs the recipe's requests.
#[derive(Debug)]
pub struct Agent {
    /// The recipe.
    pub recipe: Recipe,
    /// The client.
    pub http: Http,
    /// Every secret seen.
    pub redactor: Mutex<Redactor>,
    /// Progress on standard error.
    pub progress: Progress,
    /// Run options.
    pub options: Options,
}

/// A JSON member by dotted path.
pub fn json_path<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| match v {
        Value::Object(m) => m.get(k),
        Value::Array(a) => k.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

/// A JSON member by dotted path, as text (strings, numbers).
pub fn json_text(v: &Value, path: &str) -> Option<String> {
    match json_path(v, path)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Whether `method` changes state (and so carries `[session] headers`).
pub fn unsafe_method(method: &str) -> bool {
    !matches!(method, "GET" | "HEAD" | "OPTIONS" | "TRACE")
}

/// The values placeholders are expanded with.
#[derive(Clone, Copy, Debug)]
pub struct Vars<'a> {
    /// Which password is current.
    pub pw: Pw,
    /// The session whose `{login.FIELD}`, `{cookie.NAME}` and `{refresh_token}` apply.
    pub session: Option<&'a Session>,
    /// An explicit refresh token (refresh requests).
    pub refresh: Option<&'a str>,
}

impl Agent {
    /// A new agent.
    pub fn new(recipe: Recipe, http: Http, progress: Progress, options: Options) -> Agent {
        let mut redactor = Redactor::new();
        redactor.username(&recipe.credentials.username);
        redactor.register(&recipe.credentials.password, Kind::Password);
        if let Some(p) = &recipe.credentials.new_password {
            redactor.register(p, Kind::NewPassword);
        }
        Agent {
            recipe,
            http,
            redactor: Mutex::new(redactor),
            progress,
            options,
        }
    }

    /// Registers a secret; returns its label.
    pub fn secret(&self, value: &str, kind: Kind) -> String {
        self.redactor
            .lock()
            .expect("not poisoned")
            .register(value, kind)
    }

    /// Redacts text.
    pub fn redact(&self, text: &str) -> String {
        self.redactor.lock().expect("not poisoned").redact(text)
    }

    /// Evidence of one exchange.
    pub fn evidence(&self, step: impl Into<String>, ex: &Exchange) -> Evidence {
        let r = self.redactor.lock().expect("not poisoned");
        Evidence {
            step: step.into(),
            request: Some(ex.describe_request(&r)),
            response: Some(ex.describe_response(&r)),
        }
    }

    /// Evidence that is only a statement (already free of secrets or redacted here).
    pub fn fact(&self, step: impl AsRef<str>) -> Evidence {
        Evidence {
            step: self.redact(step.as_ref()),
            request: None,
            response: None,
        }
    }

    /// Sends a request, registering the cookie values it sets.
    pub async fn send(&self, req: Request) -> Result<Exchange, Fail> {
        let ex = self.http.send(req).await?;
        let session_cookie = self.recipe.session_cookie();
        for c in &ex.set_cookies {
            if !c.value.is_empty() {
                let kind = if Some(c.name.as_str()) == session_cookie {
                    Kind::Session
                } else {
                    Kind::Other
                };
                self.secret(&c.value, kind);
            }
        }
        Ok(ex)
    }

    fn password(&self, pw: Pw, new: bool) -> Result<Zeroizing<String>, String> {
        let c = &self.recipe.credentials;
        let original = || c.password.clone();
        let changed = || {
            c.new_password
                .clone()
                .ok_or_else(|| "{new_password} needs credentials.new_password".to_owned())
        };
        match (pw, new) {
            (Pw::Original, false) | (Pw::Changed, true) => Ok(original()),
            (Pw::Original, true) | (Pw::Changed, false) => changed(),
        }
    }

    /// Expands a template.
    pub fn expand(&self, t: &Template, v: Vars<'_>) -> Result<String, String> {
        let mut out = String::new();
        for p in &t.0 {
            match p {
                Piece::Text(s) => out.push_str(s),
                Piece::Username => out.push_str(&self.recipe.credentials.username),
                Piece::Password => out.push_str(&self.password(v.pw, false)?),
                Piece::NewPassword => out.push_str(&self.password(v.pw, true)?),
                Piece::RefreshToken => {
                    let r = v
                        .refresh
                        .or_else(|| v.session.and_then(|s| s.refresh.as_deref()))
                        .ok_or("{refresh_token}: the session has no refresh token")?;
                    out.push_str(r);
                }
                Piece::Login(f) => {
                    let answer = v
                        .session
                        .and_then(|s| s.answer.as_ref())
                        .ok_or_else(|| format!("{{login.{f}}}: the login answer is not JSON"))?;
                    let value = json_text(answer, f)
                        .ok_or_else(|| format!("{{login.{f}}}: the login answer has no {f}"))?;
                    out.push_str(&value);
                }
                Piece::Cookie(name) => {
                    let value = v.session.and_then(|s| s.jar.get(name)).ok_or_else(|| {
                        format!("{{cookie.{name}}}: the session has no {name} cookie")
                    })?;
                    out.push_str(value);
                }
            }
        }
        Ok(out)
    }

    fn body(
        &self,
        kind: BodyKind,
        fields: &[(String, FieldValue)],
        extra: Option<(&str, &str)>,
        v: Vars<'_>,
    ) -> Result<Option<Body>, String> {
        if fields.is_empty() && extra.is_none() {
            return Ok(None);
        }
        let mut pairs = Vec::new();
        for (k, f) in fields {
            let value = match f {
                FieldValue::Text(t) => Value::String(self.expand(t, v)?),
                FieldValue::Literal(l) => l.clone(),
            };
            pairs.push((k.clone(), value));
        }
        if let Some((k, val)) = extra {
            pairs.push((k.to_owned(), Value::String(val.to_owned())));
        }
        Ok(Some(match kind {
            BodyKind::Json => Body::Json(Value::Object(pairs.into_iter().collect())),
            BodyKind::Form => Body::Form(
                pairs
                    .into_iter()
                    .map(|(k, v)| {
                        let s = match v {
                            Value::String(s) => s,
                            other => other.to_string(),
                        };
                        (k, s)
                    })
                    .collect(),
            ),
        }))
    }

    fn with_cred(&self, mut req: Request, cred: &Cred) -> Request {
        if let Some(cookies) = cred.jar.header() {
            req = req.header("cookie", &cookies);
        }
        if let Some(b) = &cred.bearer {
            req = req.header("authorization", &format!("Bearer {b}"));
        }
        req
    }

    /// Logs in with a fresh browser.
    pub async fn login(&self, pw: Pw) -> Result<Session, Fail> {
        self.login_with(Jar::new(), pw).await
    }

    /// Logs in with the cookies in `jar` (to plant an identifier).
    pub async fn login_with(&self, mut jar: Jar, pw: Pw) -> Result<Session, Fail> {
        let login = &self.recipe.login;
        let mut extra = None;
        let mut before = Vec::new();
        if let Some(c) = &login.csrf {
            let req = self.with_cred(
                Request::new("GET", &c.page),
                &Cred {
                    jar: jar.clone(),
                    bearer: None,
                },
            );
            let ex = self.send(req).await?;
            jar.apply(&ex.set_cookies);
            let token = c
                .regex
                .captures(&ex.body)
                .and_then(|m| m.get(1))
                .map(|m| m.as_str().to_owned())
                .ok_or_else(|| {
                    Fail::Step(format!(
                        "login.csrf_regex did not match the page {} (status {})",
                        c.page, ex.status
                    ))
                })?;
            self.secret(&token, Kind::Other);
            extra = Some((c.field.clone(), token));
            before.push(ex);
        }
        let pre_login = jar.clone();
        let vars = Vars {
            pw,
            session: None,
            refresh: None,
        };
        let path = self.expand(&login.path, vars).map_err(Fail::Step)?;
        let body = self
            .body(
                login.body,
                &login.fields,
                extra.as_ref().map(|(k, v)| (k.as_str(), v.as_str())),
                vars,
            )
            .map_err(Fail::Step)?;
        let mut req = self.with_cred(
            Request::new(&login.method, &path),
            &Cred {
                jar: jar.clone(),
                bearer: None,
            },
        );
        req.body = body;
        let ex = self.send(req).await?;
        jar.apply(&ex.set_cookies);
        if ex.status >= 400 {
            return Err(Fail::Step(format!(
                "the login answered {} — check [credentials] and [login]\n{}",
                ex.status,
                ex.describe_response(&self.redactor.lock().expect("not poisoned"))
            )));
        }
        let answer = ex.json();
        let bearer = match &self.recipe.session.kind {
            SessionKind::Cookie(name) => {
                let v = jar.get(name).ok_or_else(|| {
                    Fail::Step(format!(
                        "the login answered {} but no {name} cookie is set — check [session] cookie",
                        ex.status
                    ))
                })?;
                self.secret(v, Kind::Session);
                None
            }
            SessionKind::Bearer(field) => {
                let token = answer.as_ref().and_then(|a| json_text(a, field)).ok_or_else(|| {
                    Fail::Step(format!(
                        "the login answered {} without a JSON field {field} — check [session] bearer",
                        ex.status
                    ))
                })?;
                self.secret(&token, Kind::Session);
                Some(token)
            }
        };
        let refresh = self.recipe.refresh.as_ref().and_then(|r| {
            let t = answer.as_ref().and_then(|a| json_text(a, &r.token_field))?;
            self.secret(&t, Kind::Refresh);
            Some(t)
        });
        if let Some(a) = &answer {
            self.register_answer(a);
        }
        Ok(Session {
            jar,
            bearer,
            refresh,
            answer,
            login: ex,
            pre_login,
            before,
        })
    }

    /// Registers the string members of an answer whose names speak of secrets.
    fn register_answer(&self, v: &Value) {
        if let Value::Object(m) = v {
            for (k, v) in m {
                let k = k.to_ascii_lowercase();
                let secretive = ["token", "csrf", "secret", "key", "session", "jwt"]
                    .iter()
                    .any(|w| k.contains(w));
                match v {
                    Value::String(s) if secretive => {
                        self.secret(s, Kind::Other);
                    }
                    Value::Object(_) => self.register_answer(v),
                    _ => {}
                }
            }
        }
    }

    /// The probe with `cred`: whether it says logged in, and the exchange.
    pub async fn probe(&self, cred: &Cred) -> Result<(bool, Exchange), Fail> {
        let p = &self.recipe.probe;
        let path = self
            .expand(
                &p.path,
                Vars {
                    pw: Pw::Original,
                    session: None,
                    refresh: None,
                },
            )
            .map_err(Fail::Step)?;
        let req = self.with_cred(Request::new(&p.method, &path), cred);
        let ex = self.send(req).await?;
        Ok((self.logged_in(&ex), ex))
    }

    /// Whether a probe's answer means logged in.
    pub fn logged_in(&self, ex: &Exchange) -> bool {
        let p = &self.recipe.probe;
        ex.status == p.status && p.body_regex.as_ref().is_none_or(|r| r.is_match(&ex.body))
    }

    /// Calls `endpoint` as `session` (its cookies or bearer token and, for an
    /// unsafe method, the `[session] headers`). Cookies set by the answer go into
    /// the session's jar.
    pub async fn call(
        &self,
        ep: &Endpoint,
        session: &mut Session,
        pw: Pw,
    ) -> Result<Exchange, Fail> {
        let vars = Vars {
            pw,
            session: Some(session),
            refresh: None,
        };
        let path = self.expand(&ep.path, vars).map_err(Fail::Step)?;
        let mut req = self.with_cred(Request::new(&ep.method, &path), &session.cred());
        if unsafe_method(&ep.method) {
            for (k, t) in &self.recipe.session.headers {
                let v = self.expand(t, vars).map_err(Fail::Step)?;
                req = req.header(k, &v);
            }
        }
        req.body = self
            .body(ep.body, &ep.fields, None, vars)
            .map_err(Fail::Step)?;
        let ex = self.send(req).await?;
        session.jar.apply(&ex.set_cookies);
        Ok(ex)
    }

    /// Uses a refresh token (sent in the body only, as an OAuth client does).
    /// Returns the exchange, and the new bearer and refresh tokens it carries.
    pub async fn refresh(&self, token: &str) -> Result<(Exchange, Option<Refreshed>), Fail> {
        let r = self
            .recipe
            .refresh
            .as_ref()
            .ok_or_else(|| Fail::Step("the recipe has no [refresh]".into()))?;
        let vars = Vars {
            pw: Pw::Original,
            session: None,
            refresh: Some(token),
        };
        let ep = &r.endpoint;
        let path = self.expand(&ep.path, vars).map_err(Fail::Step)?;
        let mut req = Request::new(&ep.method, &path);
        req.body = self
            .body(ep.body, &ep.fields, None, vars)
            .map_err(Fail::Step)?;
        let ex = self.send(req).await?;
        if ex.status >= 400 {
            return Ok((ex, None));
        }
        let answer = ex.json();
        let refresh = answer.as_ref().and_then(|a| json_text(a, &r.token_field));
        let bearer = match &self.recipe.session.kind {
            SessionKind::Bearer(f) => answer.as_ref().and_then(|a| json_text(a, f)),
            SessionKind::Cookie(name) => ex.set_cookie(name).map(|c| c.value.clone()),
        };
        if let Some(t) = &refresh {
            self.secret(t, Kind::Refresh);
        }
        if let Some(t) = &bearer {
            self.secret(t, Kind::Session);
        }
        if refresh.is_none() && bearer.is_none() {
            return Ok((ex, None));
        }
        Ok((ex, Some(Refreshed { bearer, refresh })))
    }

    /// Creates a personal API token as `session`.
    pub async fn create_api_token(
        &self,
        session: &mut Session,
    ) -> Result<(Exchange, String), Fail> {
        let a = self
            .recipe
            .api_token
            .as_ref()
            .ok_or_else(|| Fail::Step("the recipe has no [api_token]".into()))?;
        let ex = self.call(&a.endpoint, session, Pw::Original).await?;
        let token = ex.json().and_then(|v| json_text(&v, &a.token_field));
        match token {
            Some(t) if ex.status < 400 => {
                self.secret(&t, Kind::ApiToken);
                Ok((ex, t))
            }
            _ => Err(Fail::Step(format!(
                "creating an API token answered {} without a JSON field {}",
                ex.status, a.token_field
            ))),
        }
    }

    /// The session's identifier: its cookie value or bearer token.
    pub fn token_of(&self, s: &Session) -> Option<String> {
        match &self.recipe.session.kind {
            SessionKind::Cookie(name) => s.jar.get(name).map(str::to_owned),
            SessionKind::Bearer(_) => s.bearer.clone(),
        }
    }

    /// A credential made of the session identifier `token` alone.
    pub fn replay(&self, token: &str) -> Cred {
        match &self.recipe.session.kind {
            SessionKind::Cookie(name) => Cred {
                jar: Jar::with(name, token),
                bearer: None,
            },
            SessionKind::Bearer(_) => Cred::bearer(token),
        }
    }
}

/// What a refresh answered.
#[derive(Clone)]
pub struct Refreshed {
    /// The new session credential (bearer token or session cookie), if any.
    pub bearer: Option<String>,
    /// The new refresh token, if any.
    pub refresh: Option<String>,
}

impl std::fmt::Debug for Refreshed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Refreshed(<redacted>)")
    }
}
