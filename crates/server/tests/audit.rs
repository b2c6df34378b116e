//! `sessionguard audit` (the built binary) against `sessionguard serve` (the
//! built binary, on port 0 with a temporary data folder): zero findings with the
//! default policy and with the `admin` profile (one session, evict oldest), for
//! the browser (cookie) flow and the API (access and refresh token) flow. The
//! timeouts are configured short so that the timeout checks are measured, in
//! real time, as a black-box auditor must. Also the command's exit codes.

#![cfg(unix)]

mod process;

use std::path::Path;
use std::process::{Command, Output};

use process::{Running, http, start_with};
use serde_json::Value;

const PASSWORD: &str = "first audit password";
const NEW_PASSWORD: &str = "second audit password";

/// The server's configuration: short timeouts so the auditor measures them.
/// The session limit is the default one (`standard`: 10, evict oldest).
const CONFIG: &str = r#"
[policy]
idle_timeout = "3s"
absolute_timeout = "10s"
step_up_ttl = "10s"
access_token_ttl = "1m"

[profiles.admin]
idle_timeout = "3s"
absolute_timeout = "10s"
step_up_ttl = "10s"
access_token_ttl = "1m"
"#;

/// The parts both recipes share: target, credentials, probe, logout, password
/// change and claims, around the flow's own login and session tables.
fn recipe(addr: &str, max_sessions: u32, flow: &str) -> String {
    format!(
        r#"
target = "http://{addr}"

[credentials]
username = "auditor"
password_env = "AUDIT_PASSWORD"
new_password_env = "AUDIT_NEW_PASSWORD"
{flow}
[probe]
path = "/v1/auth"
logged_in = {{ status = 200 }}

[logout]
path = "/v1/logout"

[password_change]
path = "/v1/password"
body = "json"
fields = {{ current_password = "{{password}}", new_password = "{{new_password}}" }}

[claims]
idle_timeout = "3s"
absolute_timeout = "10s"
max_sessions = {max_sessions}
"#
    )
}

/// The browser flow: `/v1/login`, the session cookie, the anti-CSRF header.
fn cookie_recipe(addr: &str, max_sessions: u32) -> String {
    let flow = r#"
[login]
path = "/v1/login"
body = "json"
fields = { username = "{username}", password = "{password}" }

[session]
cookie = "__Host-sg_session"
headers = { "X-CSRF-Token" = "{login.csrf_token}" }

[api_token]
path = "/v1/api-tokens"
body = "json"
fields = { name = "audit" }
token_field = "token"
"#;
    recipe(addr, max_sessions, flow)
}

/// The API flow: `/v1/token` grants, bearer access tokens, refresh tokens.
fn api_recipe(addr: &str, max_sessions: u32) -> String {
    let flow = r#"
[login]
path = "/v1/token"
body = "form"
fields = { grant_type = "password", username = "{username}", password = "{password}" }

[session]
bearer = "access_token"

[refresh]
path = "/v1/token"
body = "form"
fields = { grant_type = "refresh_token", refresh_token = "{refresh_token}" }
token_field = "refresh_token"
"#;
    recipe(addr, max_sessions, flow)
}

/// A server with the audit user, optionally assigned the `admin` profile.
fn server(dir: &Path, admin_profile: bool) -> Running {
    let config = dir.join("sessionguard.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let data = dir.join("data");
    let running = start_with(
        data.to_str().unwrap(),
        &["--config", config.to_str().unwrap()],
    );
    let id = running.create_user("auditor", PASSWORD);
    if admin_profile {
        let bearer = format!("Bearer {}", running.admin);
        let (status, _, body) = http(
            &running.addr,
            "POST",
            &format!("/v1/admin/users/{id}"),
            &[
                ("authorization", &bearer),
                ("content-type", "application/json"),
            ],
            r#"{"profile":"admin"}"#,
        );
        assert_eq!(status, 200, "{body}");
    }
    running
}

fn audit(dir: &Path, recipe: &str, args: &[&str]) -> (Output, String) {
    let file = dir.join("recipe.toml");
    std::fs::write(&file, recipe).unwrap();
    let out_file = dir.join("report.out");
    let _ = std::fs::remove_file(&out_file);
    let output = Command::new(env!("CARGO_BIN_EXE_sessionguard"))
        .arg("audit")
        .arg("--recipe")
        .arg(&file)
        .arg("--out")
        .arg(&out_file)
        .args(["--rate", "200/s"])
        .args(args)
        .env("AUDIT_PASSWORD", PASSWORD)
        .env("AUDIT_NEW_PASSWORD", NEW_PASSWORD)
        .output()
        .unwrap();
    let report = std::fs::read_to_string(&out_file).unwrap_or_default();
    (output, report)
}

fn results(report: &str) -> Vec<(String, String, Option<String>)> {
    let v: Value = serde_json::from_str(report).unwrap_or_else(|e| panic!("{e}: {report}"));
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_owned(),
                c["result"].as_str().unwrap().to_owned(),
                c["reason"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

fn assert_clean(output: &Output, report: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}\n{report}");
    for secret in [PASSWORD, NEW_PASSWORD, "sgs_", "sgr_", "sga_", "eyJ"] {
        assert!(
            !report.contains(secret),
            "{secret} in the report:\n{report}"
        );
    }
    for (id, result, _) in results(report) {
        assert_ne!(result, "vulnerable", "{id}:\n{report}");
    }
}

fn result_of<'a>(
    r: &'a [(String, String, Option<String>)],
    id: &str,
) -> &'a (String, String, Option<String>) {
    r.iter()
        .find(|c| c.0 == id)
        .unwrap_or_else(|| panic!("no {id} in {r:?}"))
}

#[test]
fn the_cookie_flow_of_the_default_policy_has_no_finding() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), false);
    let (out, report) = audit(
        dir.path(),
        &cookie_recipe(&s.addr, 10),
        &["--format", "json"],
    );
    assert_clean(&out, &report);
    let r = results(&report);
    for id in [
        "recipe",
        "cookie_attributes",
        "fixation",
        "logout",
        "concurrent_sessions",
        "token_entropy",
        "password_change",
        "idle_timeout",
        "absolute_timeout",
        "api_token_after_password_change",
    ] {
        assert_eq!(result_of(&r, id).1, "ok", "{id}: {report}");
    }
    // The account is left with its original password.
    assert!(process::login(&s.addr, "auditor", PASSWORD).is_ok());
    assert!(process::login(&s.addr, "auditor", NEW_PASSWORD).is_err());
}

#[test]
fn the_token_flow_of_the_default_policy_has_no_finding_with_jwt_expiry_measured() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), false);
    let (out, report) = audit(
        dir.path(),
        &api_recipe(&s.addr, 10),
        &["--format", "json", "--max-wait", "2m"],
    );
    assert_clean(&out, &report);
    let r = results(&report);
    for (id, result, reason) in &r {
        assert_eq!(result, "ok", "{id}: {reason:?}\n{report}");
    }
    assert!(
        report.contains("HS256 keyed with the public key"),
        "{report}"
    );
    assert!(report.contains("after its exp"), "{report}");
    assert!(process::login(&s.addr, "auditor", PASSWORD).is_ok());
}

#[test]
fn the_admin_profile_keeps_one_session_and_has_no_finding() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), true);
    let (out, report) = audit(
        dir.path(),
        &cookie_recipe(&s.addr, 1),
        &["--format", "json"],
    );
    assert_clean(&out, &report);
    let r = results(&report);
    assert_eq!(result_of(&r, "concurrent_sessions").1, "ok", "{report}");
    assert_eq!(result_of(&r, "logout").1, "ok", "{report}");
    assert_eq!(result_of(&r, "idle_timeout").1, "ok", "{report}");
    assert_eq!(result_of(&r, "absolute_timeout").1, "ok", "{report}");
    // With one session per user there is no other session to outlive a password change.
    let pc = result_of(&r, "password_change");
    assert_eq!(pc.1, "not_tested", "{report}");
    assert!(
        pc.2.as_deref().unwrap().contains("one session per user"),
        "{report}"
    );

    let (out, report) = audit(
        dir.path(),
        &api_recipe(&s.addr, 1),
        &["--format", "sarif", "--max-wait", "30s"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}\n{report}");
    let sarif: Value = serde_json::from_str(&report).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    assert_eq!(
        sarif["runs"][0]["results"].as_array().unwrap().len(),
        0,
        "{report}"
    );
    assert!(process::login(&s.addr, "auditor", PASSWORD).is_ok());
}

#[test]
fn exit_codes_say_findings_and_errors_apart() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), false);
    // A claim stricter than the server (it allows 10 sessions, the recipe claims
    // 2): a finding, exit 1 ...
    let strict = cookie_recipe(&s.addr, 2);
    let only = ["--only", "concurrent_sessions"];
    let (out, report) = audit(
        dir.path(),
        &strict,
        &[&only[..], &["--format", "markdown"]].concat(),
    );
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(
        report.contains("| `concurrent_sessions` | VULNERABLE (medium)"),
        "{report}"
    );
    // ... which --fail-on high does not fail on.
    let (out, _) = audit(
        dir.path(),
        &strict,
        &[&only[..], &["--fail-on", "high"]].concat(),
    );
    assert_eq!(out.status.code(), Some(0));

    // A wrong password: the self-test stops, exit 2, naming the step.
    let file = dir.path().join("recipe.toml");
    std::fs::write(&file, cookie_recipe(&s.addr, 10)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sessionguard"))
        .args(["audit", "--recipe"])
        .arg(&file)
        .env("AUDIT_PASSWORD", "not the password")
        .env("AUDIT_NEW_PASSWORD", NEW_PASSWORD)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("recipe error: login: the login answered 401"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("not the password") && !stderr.contains("panicked"),
        "{stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "no report for a recipe that does not work"
    );

    // An unknown key, an unreachable target: exit 2 with the cause.
    let (out, _) = audit(
        dir.path(),
        &cookie_recipe(&s.addr, 10).replace("[probe]", "[probe]\nstatus = 200"),
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("unknown field `status`"), "{stderr}");
    drop(s);
    let (out, _) = audit(dir.path(), &cookie_recipe("127.0.0.1:9", 10), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("target error") && stderr.contains("cannot connect"),
        "{stderr}"
    );
}

#[test]
fn init_writes_a_template_that_parses() {
    let out = Command::new(env!("CARGO_BIN_EXE_sessionguard"))
        .args(["audit", "init"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("# sessionguard audit recipe"), "{text}");
    assert!(text.contains("[claims]"));
}
