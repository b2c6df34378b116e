//! The auditor against three real frameworks' ordinary login with their
//! default session handling: Django 5.2 (`LoginView`, `LogoutView`,
//! `PasswordChangeView`, database sessions), Flask 3.1 with Flask-Login 0.6
//! (`login_user`, `logout_user`, Flask's signed cookie session), and Express 5
//! with express-session 1.19 (the user login of its README: `regenerate` at
//! login and logout; `MemoryStore`, the signed cookie `connect.sid`). The apps
//! are `tests/frameworks/*.py`, run by the Python of `target/audit-venv`, and
//! `tests/frameworks/express/app.js`, run by Node.js with the packages of its
//! `package-lock.json`; `scripts/test` installs both with pinned versions, and
//! a missing one fails the test.
//!
//! The expected findings, established by reading the installed source and
//! confirmed by these runs (claims: 3 s idle, 6 s absolute, one session):
//!
//! Django
//! - `cookie_attributes` (medium): `SESSION_COOKIE_SECURE` defaults to False, and
//!   `SESSION_EXPIRE_AT_BROWSER_CLOSE` to False, so the cookie has
//!   `Max-Age=1209600` (persistent); HttpOnly and SameSite=Lax are set; no
//!   `__Host-` prefix (`sessionid`).
//! - `concurrent_sessions` (medium): nothing limits a user's sessions.
//! - `idle_timeout`, `absolute_timeout` (medium): a database session expires
//!   `SESSION_COOKIE_AGE` (two weeks) after it was last saved; with
//!   `SESSION_SAVE_EVERY_REQUEST = False` that is two weeks after login, so it is
//!   alive seconds later, idle or not.
//! - ok: `logout` (`logout()` calls `session.flush()`, deleting the row);
//!   `password_change` (`PasswordChangeView` calls `update_session_auth_hash`, and
//!   `get_user()` refuses every other session whose stored HMAC of the password
//!   hash no longer matches); `fixation` (`login()` calls `cycle_key()`, the login
//!   page sets no session before login, and `SessionStore.load()` drops an
//!   unknown key instead of adopting it); `token_entropy` (32 characters of
//!   `[a-z0-9]` from `get_random_string`, about 165 bits).
//!
//! Flask + Flask-Login
//! - `cookie_attributes` (medium): `SESSION_COOKIE_SECURE` False and
//!   `SESSION_COOKIE_SAMESITE` None by default; HttpOnly set; not persistent
//!   (`session.permanent` is False).
//! - `logout` (high): the session is the signed cookie itself; `logout_user()`
//!   only removes `_user_id` from the *next* cookie, and the old cookie's
//!   signature stays valid (the server keeps no state to revoke).
//! - `password_change` (high): likewise nothing ends other cookies.
//! - `concurrent_sessions` (medium): no limit.
//! - `idle_timeout`, `absolute_timeout` (medium): the signature is checked with
//!   `max_age = PERMANENT_SESSION_LIFETIME` (31 days) from its timestamp.
//! - `token_entropy` (high): the cookie is `payload.timestamp.signature` with a
//!   payload that is the same for every login of the user (`_user_id`,
//!   `_fresh`, `_id` = a hash of the client's address and user agent) and a
//!   timestamp in seconds, so every login of the user within one second gets the
//!   very same cookie: the auditor sees identifiers repeat. (Without the
//!   secret key it still cannot be forged; what it lacks is a per-login value.)
//! - ok: `fixation` (the login page sets no cookie; a planted cookie fails the
//!   signature and is replaced).
//!
//! Express + express-session
//! - `cookie_attributes` (medium): the default cookie is `HttpOnly`, not
//!   `Secure`, with no `SameSite`, and no `Max-Age` (`cookie.maxAge` is null).
//! - `password_change` (high): the store has no index of a user's sessions and
//!   the app (like the README's) ends none.
//! - `concurrent_sessions` (medium): no limit.
//! - `idle_timeout`, `absolute_timeout` (medium): `MemoryStore` expires a
//!   session only by its cookie's `expires`, which is null by default: never.
//! - ok: `logout` and `fixation` (`regenerate` destroys the old session in the
//!   store, and a planted unsigned identifier fails the cookie signature; with
//!   `saveUninitialized: true` the pre-login session exists, and is replaced
//!   at login); `token_entropy`: the cookie is `s:` + 24 random bytes
//!   (`uid-safe`, base64url) + `.` + an HMAC-SHA256 signature, percent-encoded
//!   (`s%3A…`, `%2B`, `%2F`, so its length varies): analysed decoded, it is
//!   one length of base64 and passes.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sessionguard_audit::model::{CheckId, Outcome, Report, Severity};
use sessionguard_audit::recipe::Recipe;
use sessionguard_audit::report::{Format, render};
use sessionguard_audit::{AuditOptions, audit};

const USER: &str = "alice";
const PASSWORD: &str = "first password 1";

struct App(Child);

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn python() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/audit-venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run ./scripts/test, which installs the pinned Django, Flask and \
         Flask-Login into it",
        p.display()
    );
    p
}

/// Node.js, which `scripts/test` installs (Debian's `nodejs`) for the browser
/// tests too.
fn node() -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join("node"))
                .find(|p| p.is_file())
        })
        .expect("node is not installed: run ./scripts/test, which installs Node.js")
}

/// Starts a framework app, `script` (in `tests/frameworks`) run by
/// `interpreter`; returns it and its base URL.
fn start(interpreter: PathBuf, script: &str, args: &[&str]) -> (App, String) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/frameworks");
    let mut child = Command::new(interpreter)
        .arg(dir.join(script))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let app = App(child);
    let line = BufReader::new(stdout).lines().next().unwrap().unwrap();
    let url = line.strip_prefix("listening on ").unwrap().to_owned();
    (app, url)
}

async fn run(recipe_file: &str, url: &str, samples: usize) -> Report {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/frameworks");
    let text = std::fs::read_to_string(dir.join(recipe_file)).unwrap();
    let text = text
        .lines()
        .map(|l| {
            if l.starts_with("target =") {
                format!("target = \"{url}\"")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let recipe = Recipe::parse(&text, |_| None).unwrap();
    audit(
        recipe,
        AuditOptions {
            max_wait: Duration::from_secs(30),
            rate: Some(500.0),
            samples,
            fail_on: Severity::Info,
            ..AuditOptions::default()
        },
    )
    .await
    .unwrap()
}

fn outcome(r: &Report) -> Vec<(CheckId, Outcome, Option<Severity>)> {
    r.checks
        .iter()
        .map(|c| (c.id, c.result, c.severity))
        .collect()
}

/// The evidence steps of check `id` in `r`.
fn facts(r: &Report, id: CheckId) -> Vec<&str> {
    r.check(id)
        .unwrap()
        .evidence
        .iter()
        .map(|e| e.step.as_str())
        .collect()
}

/// Audits the app at `url` with `recipe_file` and `samples` identifiers, and
/// checks the outcome of every check against `expected` (showing the text
/// report otherwise) and that no password appears in the report.
async fn audited(
    recipe_file: &str,
    url: &str,
    samples: usize,
    expected: Vec<(CheckId, Outcome, Option<Severity>)>,
) -> Report {
    let r = run(recipe_file, url, samples).await;
    let text = render(&r, Format::Text, recipe_file, &Default::default());
    assert_eq!(outcome(&r), expected, "\n{text}");
    assert!(!text.contains(PASSWORD) && !text.contains("second password 2"));
    r
}

use CheckId::*;
use Outcome::{NotTested, Ok as Fine, Vulnerable as Vuln};
use Severity::{High, Medium};

#[tokio::test(flavor = "multi_thread")]
async fn django_defaults_leave_cookie_flags_concurrency_and_long_timeouts() {
    let db = tempfile::tempdir().unwrap();
    let db = db.path().join("db.sqlite3");
    let (_app, url) = start(
        python(),
        "django_app.py",
        &[db.to_str().unwrap(), USER, PASSWORD],
    );
    let r = audited(
        "django.toml",
        &url,
        200,
        vec![
            (Recipe, Fine, None),
            (CookieAttributes, Vuln, Some(Medium)),
            (Fixation, Fine, None),
            (Logout, Fine, None),
            (Jwt, NotTested, None),
            (ConcurrentSessions, Vuln, Some(Medium)),
            (TokenEntropy, Fine, None),
            (PasswordChange, Fine, None),
            (IdleTimeout, Vuln, Some(Medium)),
            (AbsoluteTimeout, Vuln, Some(Medium)),
        ],
    )
    .await;
    let facts = facts(&r, CookieAttributes);
    assert!(facts.iter().any(|f| f.contains("no Secure")), "{facts:?}");
    assert!(
        facts.iter().any(|f| f.contains("Max-Age=1209600")),
        "{facts:?}"
    );
    assert!(
        !facts.iter().any(|f| f.contains("HttpOnly attribute")),
        "{facts:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn flask_login_defaults_keep_sessions_alive_after_logout_and_password_change() {
    let (_app, url) = start(python(), "flask_app.py", &[USER, PASSWORD]);
    let r = audited(
        "flask.toml",
        &url,
        300,
        vec![
            (Recipe, Fine, None),
            (CookieAttributes, Vuln, Some(Medium)),
            (Fixation, Fine, None),
            (Logout, Vuln, Some(High)),
            (Jwt, NotTested, None),
            (ConcurrentSessions, Vuln, Some(Medium)),
            (TokenEntropy, Vuln, Some(High)),
            (PasswordChange, Vuln, Some(High)),
            (IdleTimeout, Vuln, Some(Medium)),
            (AbsoluteTimeout, Vuln, Some(Medium)),
        ],
    )
    .await;
    let entropy = r.check(TokenEntropy).unwrap();
    assert!(
        entropy.summary.contains("issued twice"),
        "{}",
        entropy.summary
    );
    let facts = facts(&r, CookieAttributes);
    assert!(facts.iter().any(|f| f.contains("no SameSite")), "{facts:?}");
    assert!(!facts.iter().any(|f| f.contains("persistent")), "{facts:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn express_session_defaults_keep_other_sessions_after_a_password_change() {
    let app_js = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/frameworks/express/node_modules/express-session/package.json");
    assert!(
        app_js.exists(),
        "express-session is missing: run ./scripts/test, which installs \
         tests/frameworks/express's packages with npm ci"
    );
    let (_app, url) = start(node(), "express/app.js", &[USER, PASSWORD]);
    let r = audited(
        "express.toml",
        &url,
        300,
        vec![
            (Recipe, Fine, None),
            (CookieAttributes, Vuln, Some(Medium)),
            (Fixation, Fine, None),
            (Logout, Fine, None),
            (Jwt, NotTested, None),
            (ConcurrentSessions, Vuln, Some(Medium)),
            (TokenEntropy, Fine, None),
            (PasswordChange, Vuln, Some(High)),
            (IdleTimeout, Vuln, Some(Medium)),
            (AbsoluteTimeout, Vuln, Some(Medium)),
        ],
    )
    .await;
    // The signed cookie is percent-encoded (`s%3A…`, `%2B`, `%2F`): analysed
    // decoded, one length, base64.
    let entropy = facts(&r, TokenEntropy);
    assert!(
        entropy.iter().any(|f| f.contains("percent-encoded")),
        "{entropy:?}"
    );
    assert!(
        entropy.iter().any(|f| f.contains("alphabet base64")),
        "{entropy:?}"
    );
    let facts = facts(&r, CookieAttributes);
    assert!(facts.iter().any(|f| f.contains("no Secure")), "{facts:?}");
    assert!(facts.iter().any(|f| f.contains("no SameSite")), "{facts:?}");
    assert!(!facts.iter().any(|f| f.contains("persistent")), "{facts:?}");
}
