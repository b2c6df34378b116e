//! The recipe: how to log in to the audited app, how to tell a live session from
//! a dead one, and what the app claims about its sessions.
//!
//! A recipe is a TOML file; its table and key names are a public contract (see
//! the README, "Audit your own app"). Unknown keys are an error naming the key,
//! and every placeholder is checked when the recipe is read, so a typo fails
//! before any request is sent.
//!
//! ```
//! use sessionguard_audit::recipe::Recipe;
//!
//! let recipe = Recipe::parse(r#"
//! target = "http://127.0.0.1:8001"
//! [credentials]
//! username = "alice"
//! password = "correct horse"
//! [login]
//! path = "/login"
//! fields = { username = "{username}", password = "{password}" }
//! [session]
//! cookie = "sessionid"
//! [probe]
//! path = "/me"
//! "#, |_| None).unwrap();
//! assert_eq!(recipe.probe.method, "GET");
//! assert_eq!(recipe.login.method, "POST");
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;
use zeroize::Zeroizing;

/// A recipe that cannot be used: the message names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RecipeError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, RecipeError> {
    Err(RecipeError(msg.into()))
}

/// How a request body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyKind {
    /// `application/x-www-form-urlencoded` (the default).
    Form,
    /// `application/json`.
    Json,
}

// ---- the file as written -------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    target: String,
    credentials: FileCredentials,
    login: FileLogin,
    session: FileSession,
    probe: FileProbe,
    logout: Option<FileEndpoint>,
    password_change: Option<FileEndpoint>,
    refresh: Option<FileTokenEndpoint>,
    api_token: Option<FileTokenEndpoint>,
    claims: Option<FileClaims>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCredentials {
    username: String,
    password: Option<String>,
    password_env: Option<String>,
    new_password: Option<String>,
    new_password_env: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLogin {
    path: String,
    method: Option<String>,
    body: Option<BodyKind>,
    #[serde(default)]
    fields: BTreeMap<String, toml::Value>,
    csrf_page: Option<String>,
    csrf_regex: Option<String>,
    csrf_field: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSession {
    cookie: Option<String>,
    bearer: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileProbe {
    path: String,
    method: Option<String>,
    logged_in: Option<FileLoggedIn>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLoggedIn {
    status: Option<u16>,
    body_regex: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEndpoint {
    path: String,
    method: Option<String>,
    body: Option<BodyKind>,
    #[serde(default)]
    fields: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTokenEndpoint {
    path: String,
    method: Option<String>,
    body: Option<BodyKind>,
    #[serde(default)]
    fields: BTreeMap<String, toml::Value>,
    token_field: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileClaims {
    idle_timeout: Option<String>,
    absolute_timeout: Option<String>,
    max_sessions: Option<u32>,
}

// ---- the validated recipe ------------------------------------------------------

/// A validated recipe.
#[derive(Clone)]
pub struct Recipe {
    /// Base URL of the app, without a trailing slash.
    pub target: String,
    /// Who the auditor logs in as.
    pub credentials: Credentials,
    /// The login request.
    pub login: Login,
    /// Where the session lives in the login's answer.
    pub session: SessionSpec,
    /// An authenticated request and how to tell logged in from logged out.
    pub probe: Probe,
    /// `[logout]`.
    pub logout: Option<Endpoint>,
    /// `[password_change]`.
    pub password_change: Option<Endpoint>,
    /// `[refresh]`: `token_field` names where the login and refresh answers carry
    /// the refresh token.
    pub refresh: Option<TokenEndpoint>,
    /// `[api_token]`: how the user creates a personal API token.
    pub api_token: Option<TokenEndpoint>,
    /// What the app claims, with NIST SP 800-63B-4 AAL2 for absent values.
    pub claims: Claims,
    /// The 1-based line of each top-level table (`"login"`, `"claims"`, …) in the
    /// file, for SARIF locations.
    pub lines: BTreeMap<String, usize>,
}

impl fmt::Debug for Recipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recipe")
            .field("target", &self.target)
            .field("credentials", &self.credentials)
            .field("session", &self.session)
            .field("claims", &self.claims)
            .finish_non_exhaustive()
    }
}

/// The account the auditor uses. Passwords never leave this struct except into
/// the requests that need them.
#[derive(Clone)]
pub struct Credentials {
    /// The username.
    pub username: Zeroizing<String>,
    /// The current password.
    pub password: Zeroizing<String>,
    /// The password the auditor changes to and back from.
    pub new_password: Option<Zeroizing<String>>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &"<redacted>")
            .field("password", &"<redacted>")
            .field(
                "new_password",
                &self.new_password.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// A value of a `fields` table: text with placeholders, or a literal number or
/// boolean (kept as such in JSON bodies).
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// Text; placeholders are expanded.
    Text(Template),
    /// A TOML integer, float or boolean, as JSON.
    Literal(serde_json::Value),
}

/// `[login]`.
#[derive(Debug, Clone)]
pub struct Login {
    /// Path (and query) of the login request.
    pub path: Template,
    /// HTTP method (default POST).
    pub method: String,
    /// Body encoding (default form).
    pub body: BodyKind,
    /// Body fields.
    pub fields: Vec<(String, FieldValue)>,
    /// Anti-CSRF token to fetch before logging in.
    pub csrf: Option<LoginCsrf>,
}

/// `csrf_page`, `csrf_regex`, `csrf_field`.
#[derive(Debug, Clone)]
pub struct LoginCsrf {
    /// The page to fetch.
    pub page: String,
    /// Its first capture group is the token.
    pub regex: Regex,
    /// The login field that carries it.
    pub field: String,
}

/// Where the session is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionKind {
    /// A cookie of this name.
    Cookie(String),
    /// A bearer token in this JSON field (dotted path) of the login answer.
    Bearer(String),
}

/// `[session]`.
#[derive(Debug, Clone)]
pub struct SessionSpec {
    /// Cookie or bearer.
    pub kind: SessionKind,
    /// Sent with every authenticated unsafe request.
    pub headers: Vec<(String, Template)>,
}

/// `[probe]`.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Path of the authenticated request.
    pub path: Template,
    /// Method (default GET).
    pub method: String,
    /// Status that means logged in (default 200).
    pub status: u16,
    /// A regex the body must match to mean logged in.
    pub body_regex: Option<Regex>,
}

/// A request the auditor makes as a logged-in user.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Path.
    pub path: Template,
    /// Method (default POST).
    pub method: String,
    /// Body encoding (default form).
    pub body: BodyKind,
    /// Body fields.
    pub fields: Vec<(String, FieldValue)>,
}

/// An endpoint whose answer carries a token.
#[derive(Debug, Clone)]
pub struct TokenEndpoint {
    /// The request.
    pub endpoint: Endpoint,
    /// JSON field (dotted path) of the token in the answer.
    pub token_field: String,
}

/// `[claims]`: the policy the app claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// Claimed idle timeout (default 1h, NIST SP 800-63B-4 AAL2).
    pub idle_timeout: Duration,
    /// Whether the idle timeout was written in the recipe.
    pub idle_claimed: bool,
    /// Claimed absolute timeout (default 24h, NIST SP 800-63B-4 AAL2).
    pub absolute_timeout: Duration,
    /// Whether the absolute timeout was written in the recipe.
    pub absolute_claimed: bool,
    /// Claimed most simultaneous sessions per user (default 1); 0 claims no limit.
    pub max_sessions: u32,
}

/// NIST SP 800-63B-4 §2.2.3 (AAL2): inactivity timeout SHOULD be at most 1 hour.
pub const AAL2_IDLE: Duration = Duration::from_secs(3600);
/// NIST SP 800-63B-4 §2.2.3 (AAL2): overall timeout SHOULD be at most 24 hours.
pub const AAL2_ABSOLUTE: Duration = Duration::from_secs(24 * 3600);

// ---- placeholders ----------------------------------------------------------------

/// One piece of a [`Template`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Literal text.
    Text(String),
    /// `{username}`.
    Username,
    /// `{password}`: the current password.
    Password,
    /// `{new_password}`.
    NewPassword,
    /// `{refresh_token}`: the session's latest refresh token.
    RefreshToken,
    /// `{login.FIELD}`: a JSON field (dotted path) of the session's latest login answer.
    Login(String),
    /// `{cookie.NAME}`: the value of a cookie the session holds (for double-submit
    /// anti-CSRF tokens).
    Cookie(String),
}

/// Text with placeholders; `{{` and `}}` are literal braces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(pub Vec<Piece>);

impl Template {
    /// Parses `s`; `key` names it in errors.
    pub fn parse(s: &str, key: &str) -> Result<Template, RecipeError> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    text.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    text.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => name.push(c),
                            None => return err(format!("{key}: unclosed placeholder {{{name}")),
                        }
                    }
                    let piece = match name.as_str() {
                        "username" => Piece::Username,
                        "password" => Piece::Password,
                        "new_password" => Piece::NewPassword,
                        "refresh_token" => Piece::RefreshToken,
                        n => match n.split_once('.') {
                            Some(("login", f)) if !f.is_empty() => Piece::Login(f.to_owned()),
                            Some(("cookie", c)) if !c.is_empty() => Piece::Cookie(c.to_owned()),
                            _ => {
                                return err(format!(
                                    "{key}: unknown placeholder {{{n}}} (known: {{username}}, \
                                     {{password}}, {{new_password}}, {{refresh_token}}, \
                                     {{login.FIELD}}, {{cookie.NAME}})"
                                ));
                            }
                        },
                    };
                    if !text.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    pieces.push(piece);
                }
                '}' => return err(format!("{key}: a lone '}}' (write '}}}}' for a brace)")),
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Template(pieces))
    }

    /// A template of plain text.
    pub fn literal(s: &str) -> Template {
        Template(vec![Piece::Text(s.to_owned())])
    }

    /// Whether any piece is `p`.
    pub fn uses(&self, p: &Piece) -> bool {
        self.0.contains(p)
    }

    /// Whether any piece satisfies `f`.
    pub fn any(&self, f: impl Fn(&Piece) -> bool) -> bool {
        self.0.iter().any(f)
    }
}

// ---- reading -------------------------------------------------------------------

fn method(m: Option<String>, default: &str, key: &str) -> Result<String, RecipeError> {
    let m = m.unwrap_or_else(|| default.to_owned()).to_ascii_uppercase();
    if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) {
        return err(format!("{key}.method: not an HTTP method"));
    }
    Ok(m)
}

fn path(p: &str, key: &str) -> Result<Template, RecipeError> {
    if !p.starts_with('/') {
        return err(format!(
            "{key}.path: must start with '/' (it is joined to target)"
        ));
    }
    Template::parse(p, &format!("{key}.path"))
}

fn fields(
    f: BTreeMap<String, toml::Value>,
    key: &str,
) -> Result<Vec<(String, FieldValue)>, RecipeError> {
    f.into_iter()
        .map(|(name, v)| {
            let k = format!("{key}.fields.{name}");
            let value = match v {
                toml::Value::String(s) => FieldValue::Text(Template::parse(&s, &k)?),
                toml::Value::Integer(i) => FieldValue::Literal(i.into()),
                toml::Value::Boolean(b) => FieldValue::Literal(b.into()),
                toml::Value::Float(x) => FieldValue::Literal(
                    serde_json::Number::from_f64(x)
                        .map(serde_json::Value::Number)
                        .ok_or_else(|| RecipeError(format!("{k}: not a finite number")))?,
                ),
                _ => return err(format!("{k}: must be a string, number or boolean")),
            };
            Ok((name, value))
        })
        .collect()
}

fn endpoint(e: FileEndpoint, key: &str) -> Result<Endpoint, RecipeError> {
    Ok(Endpoint {
        path: path(&e.path, key)?,
        method: method(e.method, "POST", key)?,
        body: e.body.unwrap_or(BodyKind::Form),
        fields: fields(e.fields, key)?,
    })
}

fn token_endpoint(e: FileTokenEndpoint, key: &str) -> Result<TokenEndpoint, RecipeError> {
    if e.token_field.is_empty() {
        return err(format!("{key}.token_field: must not be empty"));
    }
    Ok(TokenEndpoint {
        endpoint: endpoint(
            FileEndpoint {
                path: e.path,
                method: e.method,
                body: e.body,
                fields: e.fields,
            },
            key,
        )?,
        token_field: e.token_field,
    })
}

fn secret(
    value: Option<String>,
    env_name: Option<String>,
    key: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Zeroizing<String>>, RecipeError> {
    match (value, env_name) {
        (Some(_), Some(_)) => err(format!(
            "credentials.{key} and credentials.{key}_env: give one of them"
        )),
        (Some(v), None) => Ok(Some(Zeroizing::new(v))),
        (None, Some(var)) => match env(&var) {
            Some(v) if !v.is_empty() => Ok(Some(Zeroizing::new(v))),
            _ => err(format!(
                "credentials.{key}_env: the environment variable {var} is not set"
            )),
        },
        (None, None) => Ok(None),
    }
}

fn duration(v: Option<String>, key: &str) -> Result<Option<Duration>, RecipeError> {
    v.map(|s| {
        humantime::parse_duration(s.trim())
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                RecipeError(format!(
                    "claims.{key}: {s:?} is not a duration (write e.g. \"30m\", \"12h\")"
                ))
            })
    })
    .transpose()
}

fn regex(s: &str, key: &str) -> Result<Regex, RecipeError> {
    Regex::new(s).map_err(|e| RecipeError(format!("{key}: not a valid regex: {e}")))
}

/// The 1-based line of each `[table]` header in `text`.
fn table_lines(text: &str) -> BTreeMap<String, usize> {
    let mut lines = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix('[').filter(|r| !r.starts_with('[')) {
            if let Some(name) = rest.split(']').next() {
                lines.entry(name.trim().to_owned()).or_insert(i + 1);
            }
        } else if let Some((k, _)) = t.split_once('=')
            && k.trim() == "target"
        {
            lines.entry("target".to_owned()).or_insert(i + 1);
        }
    }
    lines
}

impl Recipe {
    /// Reads a recipe from TOML text. `env` looks up `*_env` variables.
    pub fn parse(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Recipe, RecipeError> {
        let file: File = toml::from_str(text).map_err(|e| {
            let msg = e.message().to_owned();
            let at = e
                .span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                    format!(" (line {line})")
                })
                .unwrap_or_default();
            RecipeError(format!("recipe: {msg}{at}"))
        })?;
        Recipe::from_file(file, &env, table_lines(text))
    }

    fn from_file(
        f: File,
        env: &dyn Fn(&str) -> Option<String>,
        lines: BTreeMap<String, usize>,
    ) -> Result<Recipe, RecipeError> {
        let target = f.target.trim().trim_end_matches('/').to_owned();
        let scheme_ok = target.starts_with("http://") || target.starts_with("https://");
        if !scheme_ok || target.len() <= "https://".len() {
            return err("target: must be an http:// or https:// base URL");
        }
        if target["https://".len()..].contains(['?', '#']) {
            return err("target: a base URL without query or fragment");
        }

        let c = f.credentials;
        if c.username.is_empty() {
            return err("credentials.username: must not be empty");
        }
        let password = secret(c.password, c.password_env, "password", env)?
            .ok_or_else(|| RecipeError("credentials.password: missing (or password_env)".into()))?;
        let new_password = secret(c.new_password, c.new_password_env, "new_password", env)?;
        if new_password.as_deref() == Some(&*password) {
            return err("credentials.new_password: must differ from the password");
        }

        let l = f.login;
        let csrf = match (l.csrf_page, l.csrf_regex, l.csrf_field) {
            (None, None, None) => None,
            (Some(page), Some(re), Some(field)) => {
                if !page.starts_with('/') {
                    return err("login.csrf_page: must start with '/'");
                }
                let regex = regex(&re, "login.csrf_regex")?;
                if regex.captures_len() < 2 {
                    return err("login.csrf_regex: needs a capture group around the token");
                }
                Some(LoginCsrf { page, regex, field })
            }
            _ => {
                return err(
                    "login: csrf_page, csrf_regex and csrf_field go together (give all three)",
                );
            }
        };
        let login = Login {
            path: path(&l.path, "login")?,
            method: method(l.method, "POST", "login")?,
            body: l.body.unwrap_or(BodyKind::Form),
            fields: fields(l.fields, "login")?,
            csrf,
        };

        let s = f.session;
        let kind = match (s.cookie, s.bearer) {
            (Some(c), None) if !c.is_empty() => SessionKind::Cookie(c),
            (None, Some(b)) if !b.is_empty() => SessionKind::Bearer(b),
            (Some(_), Some(_)) => return err("session: give cookie or bearer, not both"),
            _ => return err("session: give cookie = \"NAME\" or bearer = \"FIELD\""),
        };
        let headers = s
            .headers
            .into_iter()
            .map(|(k, v)| {
                let t = Template::parse(&v, &format!("session.headers.{k}"))?;
                Ok((k, t))
            })
            .collect::<Result<Vec<_>, RecipeError>>()?;
        let session = SessionSpec { kind, headers };

        let p = f.probe;
        let logged_in = p.logged_in.unwrap_or(FileLoggedIn {
            status: None,
            body_regex: None,
        });
        let probe = Probe {
            path: path(&p.path, "probe")?,
            method: method(p.method, "GET", "probe")?,
            status: logged_in.status.unwrap_or(200),
            body_regex: logged_in
                .body_regex
                .as_deref()
                .map(|r| regex(r, "probe.logged_in.body_regex"))
                .transpose()?,
        };
        if !(100..600).contains(&probe.status) {
            return err("probe.logged_in.status: not an HTTP status");
        }

        let logout = f.logout.map(|e| endpoint(e, "logout")).transpose()?;
        let password_change = f
            .password_change
            .map(|e| endpoint(e, "password_change"))
            .transpose()?;
        if password_change.is_some() && new_password.is_none() {
            return err(
                "credentials.new_password: [password_change] needs a new_password (or \
                 new_password_env) to change to and back from",
            );
        }
        let refresh = f
            .refresh
            .map(|e| token_endpoint(e, "refresh"))
            .transpose()?;
        let api_token = f
            .api_token
            .map(|e| token_endpoint(e, "api_token"))
            .transpose()?;

        let claims = f.claims.unwrap_or(FileClaims {
            idle_timeout: None,
            absolute_timeout: None,
            max_sessions: None,
        });
        let idle = duration(claims.idle_timeout, "idle_timeout")?;
        let absolute = duration(claims.absolute_timeout, "absolute_timeout")?;
        let claims = Claims {
            idle_timeout: idle.unwrap_or(AAL2_IDLE),
            idle_claimed: idle.is_some(),
            absolute_timeout: absolute.unwrap_or(AAL2_ABSOLUTE),
            absolute_claimed: absolute.is_some(),
            max_sessions: claims.max_sessions.unwrap_or(1),
        };

        let recipe = Recipe {
            target,
            credentials: Credentials {
                username: Zeroizing::new(c.username),
                password,
                new_password,
            },
            login,
            session,
            probe,
            logout,
            password_change,
            refresh,
            api_token,
            claims,
            lines,
        };
        recipe.check_placeholders()?;
        Ok(recipe)
    }

    /// Placeholders that can never have a value where they are used.
    fn check_placeholders(&self) -> Result<(), RecipeError> {
        let refresh_in = |t: &Template| t.uses(&Piece::RefreshToken);
        let login_fields = self.login.fields.iter().filter_map(|(k, v)| match v {
            FieldValue::Text(t) => Some((k, t)),
            FieldValue::Literal(_) => None,
        });
        for (k, t) in login_fields {
            if t.any(|p| matches!(p, Piece::Login(_) | Piece::RefreshToken)) {
                return err(format!(
                    "login.fields.{k}: {{login.FIELD}} and {{refresh_token}} have no value \
                     before the login"
                ));
            }
        }
        if refresh_in(&self.login.path) {
            return err("login.path: {refresh_token} has no value before the login");
        }
        if self.refresh.is_none() {
            let uses = self.session.headers.iter().any(|(_, t)| refresh_in(t))
                || [&self.logout, &self.password_change]
                    .into_iter()
                    .flatten()
                    .any(|e| {
                        e.fields.iter().any(|(_, v)| match v {
                            FieldValue::Text(t) => refresh_in(t),
                            FieldValue::Literal(_) => false,
                        })
                    });
            if uses {
                return err("{refresh_token} is used but the recipe has no [refresh] section");
            }
        }
        Ok(())
    }

    /// The name of the session cookie, for a cookie session.
    pub fn session_cookie(&self) -> Option<&str> {
        match &self.session.kind {
            SessionKind::Cookie(c) => Some(c),
            SessionKind::Bearer(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
target = "http://127.0.0.1:8001/"
[credentials]
username = "alice"
password = "pw-one"
[login]
path = "/login"
fields = { username = "{username}", password = "{password}" }
[session]
cookie = "sessionid"
[probe]
path = "/me"
"#;

    fn parse(text: &str) -> Result<Recipe, RecipeError> {
        Recipe::parse(text, |_| None)
    }

    #[test]
    fn a_minimal_recipe_takes_the_documented_defaults() {
        let r = parse(MINIMAL).unwrap();
        assert_eq!(r.target, "http://127.0.0.1:8001");
        assert_eq!(r.login.method, "POST");
        assert_eq!(r.login.body, BodyKind::Form);
        assert_eq!(r.probe.method, "GET");
        assert_eq!(r.probe.status, 200);
        assert_eq!(r.claims.idle_timeout, AAL2_IDLE);
        assert_eq!(r.claims.absolute_timeout, AAL2_ABSOLUTE);
        assert_eq!(r.claims.max_sessions, 1);
        assert!(!r.claims.idle_claimed);
        assert_eq!(r.lines["login"], 6);
    }

    #[test]
    fn an_unknown_key_is_named() {
        let e = parse(&MINIMAL.replace("[probe]", "[probe]\nstatuss = 200")).unwrap_err();
        assert!(e.0.contains("statuss"), "{e}");
        let e = parse(&format!("{MINIMAL}\n[claims]\nidle = \"5m\"")).unwrap_err();
        assert!(e.0.contains("idle"), "{e}");
        let e = parse(&format!("{MINIMAL}\n[extra]\na = 1")).unwrap_err();
        assert!(e.0.contains("extra"), "{e}");
    }

    #[test]
    fn an_unknown_placeholder_is_named_with_its_key() {
        let e = parse(&MINIMAL.replace("{password}", "{pasword}")).unwrap_err();
        assert!(e.0.contains("login.fields.password"), "{e}");
        assert!(e.0.contains("{pasword}"), "{e}");
    }

    #[test]
    fn placeholders_parse_into_pieces() {
        let t = Template::parse("a{login.csrf.token}b{{c}}{cookie.csrftoken}", "k").unwrap();
        assert_eq!(
            t.0,
            vec![
                Piece::Text("a".into()),
                Piece::Login("csrf.token".into()),
                Piece::Text("b{c}".into()),
                Piece::Cookie("csrftoken".into()),
            ]
        );
        assert!(Template::parse("{username", "k").is_err());
        assert!(Template::parse("x}", "k").is_err());
    }

    #[test]
    fn passwords_come_from_the_environment_when_asked() {
        let text = MINIMAL.replace("password = \"pw-one\"", "password_env = \"PW\"");
        let r = Recipe::parse(&text, |v| (v == "PW").then(|| "from-env".to_owned())).unwrap();
        assert_eq!(&*r.credentials.password, "from-env");
        let e = parse(&text).unwrap_err();
        assert!(e.0.contains("PW"), "{e}");
    }

    #[test]
    fn a_password_change_needs_a_new_password() {
        let text = format!("{MINIMAL}\n[password_change]\npath = \"/pw\"\n");
        let e = parse(&text).unwrap_err();
        assert!(e.0.contains("new_password"), "{e}");
        let ok = text.replace(
            "password = \"pw-one\"",
            "password = \"a\"\nnew_password = \"b\"",
        );
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn claims_are_durations_and_session_is_cookie_or_bearer() {
        let r = parse(&format!(
            "{MINIMAL}\n[claims]\nidle_timeout = \"90s\"\nmax_sessions = 3\n"
        ))
        .unwrap();
        assert_eq!(r.claims.idle_timeout, Duration::from_secs(90));
        assert!(r.claims.idle_claimed);
        assert_eq!(r.claims.max_sessions, 3);
        let e = parse(&format!("{MINIMAL}\n[claims]\nidle_timeout = \"soon\"\n")).unwrap_err();
        assert!(e.0.contains("claims.idle_timeout"), "{e}");
        let both = MINIMAL.replace("cookie = \"sessionid\"", "cookie = \"a\"\nbearer = \"b\"");
        assert!(parse(&both).is_err());
    }

    #[test]
    fn csrf_keys_go_together_and_need_a_group() {
        let t = MINIMAL.replace("[session]", "csrf_page = \"/login\"\n[session]");
        assert!(parse(&t).unwrap_err().0.contains("csrf_regex"));
        let t = MINIMAL.replace(
            "[session]",
            "csrf_page = \"/login\"\ncsrf_regex = 'value=\"x\"'\ncsrf_field = \"csrf\"\n[session]",
        );
        assert!(parse(&t).unwrap_err().0.contains("capture group"));
    }

    #[test]
    fn debug_output_hides_the_credentials() {
        let r = parse(MINIMAL).unwrap();
        let d = format!("{r:?}");
        assert!(!d.contains("pw-one") && !d.contains("alice"), "{d}");
    }
}
