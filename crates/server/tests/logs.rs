//! JSON logs: the binary with `log_format = "json"` (here from
//! `SESSIONGUARD_LOG_FORMAT`), at debug level, through a login, a failed
//! login, a password change, a logout, a token grant and a refresh: every line
//! of standard error is one JSON object, and none carries a password, a token,
//! a cookie value, an anti-CSRF token or the admin token.

mod process;

use std::fs::File;
use std::process::Stdio;

use process::{Server, cookie_of, http, json_field, set_cookie, startup};

const ADMIN_TOKEN: &str = "admin-token-for-the-log-test-0123456789";
const PASSWORD: &str = "first password, long enough";
const NEW_PASSWORD: &str = "second password, also long";
const WRONG_PASSWORD: &str = "a wrong password for alice";

/// Runs the flows against a server logging in `format`; returns its log lines
/// and every secret the flows met.
fn run_flows(format: &str) -> (Vec<String>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("stderr.log");
    let data = dir.path().join("data");
    let server = Server::start_logging(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[
            ("RUST_LOG", "debug"),
            ("SESSIONGUARD_LOG_FORMAT", format),
            ("SESSIONGUARD_ADMIN_TOKEN", ADMIN_TOKEN),
        ],
        Stdio::from(File::create(&log_path).unwrap()),
    );
    let (_, addr) = startup(&server);
    let admin = format!("Bearer {ADMIN_TOKEN}");
    let json = ("content-type", "application/json");
    let form = ("content-type", "application/x-www-form-urlencoded");
    let mut secrets = vec![
        ADMIN_TOKEN.to_owned(),
        PASSWORD.to_owned(),
        NEW_PASSWORD.to_owned(),
        WRONG_PASSWORD.to_owned(),
    ];

    let (status, _, body) = http(
        &addr,
        "POST",
        "/v1/admin/users",
        &[("authorization", &admin), json],
        &format!(r#"{{"username":"alice","password":"{PASSWORD}"}}"#),
    );
    assert_eq!(status, 201, "{body}");

    // A login, and a failed one.
    let login = format!(r#"{{"username":"alice","password":"{PASSWORD}"}}"#);
    let (status, head, body) = http(&addr, "POST", "/v1/login", &[json], &login);
    assert_eq!(status, 200, "{body}");
    let session = cookie_of(&head);
    let csrf = json_field(&body, "csrf_token");
    secrets.extend([session.clone(), csrf.clone()]);
    secrets.extend(set_cookie(&head, "__Host-sg_device"));
    let wrong = format!(r#"{{"username":"alice","password":"{WRONG_PASSWORD}"}}"#);
    let (status, _, _) = http(&addr, "POST", "/v1/login", &[json], &wrong);
    assert_eq!(status, 401);

    // A password change with the cookie, then a logout with the new cookie.
    let cookie = format!("__Host-sg_session={session}");
    let change = format!(r#"{{"current_password":"{PASSWORD}","new_password":"{NEW_PASSWORD}"}}"#);
    let (status, head, body) = http(
        &addr,
        "POST",
        "/v1/password",
        &[("cookie", &cookie), ("x-csrf-token", &csrf), json],
        &change,
    );
    assert_eq!(status, 200, "{body}");
    let session = cookie_of(&head);
    let csrf = json_field(&body, "csrf_token");
    secrets.extend([session.clone(), csrf.clone()]);
    let cookie = format!("__Host-sg_session={session}");
    let (status, _, body) = http(
        &addr,
        "POST",
        "/v1/logout",
        &[("cookie", &cookie), ("x-csrf-token", &csrf)],
        "",
    );
    assert_eq!(status, 204, "{body}");
    // The old cookie replayed: refused, and logged as such.
    let (status, _, _) = http(&addr, "GET", "/v1/session", &[("cookie", &cookie)], "");
    assert_eq!(status, 401);

    // A token grant and a refresh.
    let grant = format!(
        "grant_type=password&username=alice&password={}",
        urlencode(NEW_PASSWORD)
    );
    let (status, _, body) = http(&addr, "POST", "/v1/token", &[form], &grant);
    assert_eq!(status, 200, "{body}");
    let access = json_field(&body, "access_token");
    let refresh = json_field(&body, "refresh_token");
    secrets.extend([access.clone(), refresh.clone()]);
    let (status, _, body) = http(
        &addr,
        "POST",
        "/v1/token",
        &[form],
        &format!("grant_type=refresh_token&refresh_token={refresh}"),
    );
    assert_eq!(status, 200, "{body}");
    secrets.extend([
        json_field(&body, "access_token"),
        json_field(&body, "refresh_token"),
    ]);
    let bearer = format!("Bearer {access}");
    let (status, _, _) = http(
        &addr,
        "GET",
        "/v1/session",
        &[("authorization", &bearer)],
        "",
    );
    assert_eq!(status, 200);

    assert_eq!(server.terminate(), Some(0));
    let logs = std::fs::read_to_string(&log_path).unwrap();
    (logs.lines().map(str::to_owned).collect(), secrets)
}

/// `s` as a form value, as a client would send it.
fn urlencode(s: &str) -> String {
    let pair = serde_urlencoded::to_string([("", s)]).unwrap();
    pair.trim_start_matches('=').to_owned()
}

/// The secrets `line` carries, as they are or in a form a logger could
/// write them (JSON-escaped, percent-encoded).
fn leaked<'a>(line: &str, secrets: &'a [String]) -> Vec<&'a str> {
    secrets
        .iter()
        .filter(|s| {
            let escaped = serde_json::to_string(s).unwrap();
            let escaped = escaped.trim_matches('"');
            line.contains(s.as_str()) || line.contains(escaped) || line.contains(&urlencode(s))
        })
        .map(String::as_str)
        .collect()
}

#[test]
fn json_logs_are_one_object_per_line_and_carry_no_secret() {
    let (lines, secrets) = run_flows("json");
    assert!(lines.len() >= 10, "too few log lines: {lines:#?}");
    let mut events = Vec::new();
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line}"));
        assert!(v.is_object(), "{line}");
        for key in ["timestamp", "level", "target"] {
            assert!(v[key].is_string(), "{key} missing: {line}");
        }
        if let Some(e) = v["fields"]["event"].as_str() {
            events.push(e.to_owned());
        }
        let found = leaked(line, &secrets);
        assert!(found.is_empty(), "secret in a log line: {line}");
    }
    // The flows' lifecycle events are there: the logs are not merely empty.
    for event in [
        "login_succeeded",
        "login_failed",
        "password_changed",
        "logged_out",
        "refreshed",
    ] {
        assert!(
            events.iter().any(|e| e == event),
            "{event} not logged: {events:?}"
        );
    }
    // Request spans carry the method and the route template, never the path's values.
    assert!(
        lines.iter().any(|l| l.contains(r#""path":"/v1/login""#)),
        "no request span in the logs"
    );
}

#[test]
fn text_logs_are_not_json_and_carry_no_secret_either() {
    let (lines, secrets) = run_flows("text");
    assert!(!lines.is_empty());
    assert!(
        lines
            .iter()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_err()),
        "text lines"
    );
    for line in &lines {
        assert!(
            leaked(line, &secrets).is_empty(),
            "secret in a log line: {line}"
        );
    }
}
