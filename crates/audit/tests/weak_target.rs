//! The auditor against the deliberately weak target (`examples/weak_target`):
//! with every flaw off it reports nothing; with one flaw on, exactly the check
//! for that flaw is vulnerable and every other check stays clean. The waits are
//! real (the target's timeouts are a few seconds), as a black-box auditor's are.
//!
//! Each run also renders all four formats and asserts that no identifier, token,
//! anti-CSRF value, password or username the target handled appears in them.

#[path = "../examples/weak_target/app.rs"]
mod app;

use std::sync::Arc;
use std::time::Duration;

use sessionguard_audit::model::{CheckId, Outcome, Report, Severity};
use sessionguard_audit::recipe::Recipe;
use sessionguard_audit::report::{Format, render};
use sessionguard_audit::{AuditOptions, audit};

#[derive(Clone, Copy)]
enum Flow {
    Form,
    Api,
}

struct Run {
    report: Report,
    weak: Arc<app::Weak>,
}

async fn run(flow: Flow, flaws: &str, max_wait: Duration) -> Run {
    let config = app::Config::with_flaws(flaws).unwrap();
    let (username, password) = (config.username.clone(), config.password.clone());
    let weak = app::Weak::new(config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(app::serve(listener, weak.clone()));
    let file = match flow {
        Flow::Form => include_str!("../examples/weak_target/form.toml"),
        Flow::Api => include_str!("../examples/weak_target/api.toml"),
    };
    let text = file.replace("http://127.0.0.1:8001", &format!("http://{addr}"));
    let recipe = Recipe::parse(&text, |_| None).unwrap();
    let lines = recipe.lines.clone();
    let options = AuditOptions {
        max_wait,
        rate: Some(500.0),
        fail_on: Severity::Info,
        ..AuditOptions::default()
    };
    let report = audit(recipe, options).await.unwrap();
    server.abort();
    // Nothing secret in any format.
    let mut secrets = weak.issued.lock().unwrap().clone();
    secrets.extend([password, "second password 2".into(), username]);
    for format in [Format::Text, Format::Json, Format::Sarif, Format::Markdown] {
        let out = render(&report, format, "recipe.toml", &lines);
        for s in &secrets {
            assert!(
                !out.contains(s.as_str()),
                "{format:?} output shows a secret:\n{out}"
            );
        }
    }
    Run { report, weak }
}

/// The checks that found something, with their severities.
fn findings(r: &Report) -> Vec<(CheckId, Severity)> {
    r.checks
        .iter()
        .filter(|c| c.result == Outcome::Vulnerable)
        .map(|c| (c.id, c.severity.unwrap()))
        .collect()
}

fn assert_only(r: &Report, expected: &[(CheckId, Severity)]) {
    let got = findings(r);
    let text = render(r, Format::Text, "recipe.toml", &Default::default());
    assert_eq!(got, expected, "\n{text}");
}

const QUICK: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn the_form_login_without_flaws_has_no_finding_and_every_check_is_measured() {
    let r = run(Flow::Form, "", QUICK).await.report;
    assert_only(&r, &[]);
    let ids: Vec<CheckId> = r.checks.iter().map(|c| c.id).collect();
    assert_eq!(
        ids,
        vec![
            CheckId::Recipe,
            CheckId::CookieAttributes,
            CheckId::Fixation,
            CheckId::Logout,
            CheckId::Jwt,
            CheckId::ConcurrentSessions,
            CheckId::TokenEntropy,
            CheckId::PasswordChange,
            CheckId::ApiTokenAfterPasswordChange,
            CheckId::IdleTimeout,
            CheckId::AbsoluteTimeout,
        ],
        "exactly one entry per applicable check"
    );
    for c in &r.checks {
        let measured = c.result == Outcome::Ok;
        assert!(
            measured || c.id == CheckId::Jwt,
            "{:?} {:?}",
            c.id,
            c.reason
        );
    }
    assert!(
        r.check(CheckId::Jwt)
            .unwrap()
            .reason
            .as_deref()
            .unwrap()
            .contains("not a JWT")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_json_api_without_flaws_has_no_finding_and_measures_token_expiry() {
    let run = run(Flow::Api, "", Duration::from_secs(90)).await;
    let r = run.report;
    assert_only(&r, &[]);
    for c in &r.checks {
        assert_eq!(c.result, Outcome::Ok, "{:?} {:?}", c.id, c.reason);
    }
    let jwt = r.check(CheckId::Jwt).unwrap();
    assert!(
        jwt.notes
            .iter()
            .any(|n| n.contains("refused") && n.contains("after its exp")),
        "{:?}",
        jwt.notes
    );
    // The password was changed and changed back: the original still logs in.
    assert!(!run.weak.issued.lock().unwrap().is_empty());
}

macro_rules! flaw_test {
    ($name:ident, $flow:expr, $flaw:literal, $check:expr, $sev:expr) => {
        #[tokio::test(flavor = "multi_thread")]
        async fn $name() {
            let r = run($flow, $flaw, QUICK).await.report;
            assert_only(&r, &[($check, $sev)]);
        }
    };
}

flaw_test!(
    logout_that_only_clears_the_cookie_is_found,
    Flow::Form,
    "no_server_logout",
    CheckId::Logout,
    Severity::High
);
flaw_test!(
    sessions_kept_on_password_change_are_found,
    Flow::Form,
    "keep_sessions_on_password_change",
    CheckId::PasswordChange,
    Severity::High
);
flaw_test!(
    api_tokens_kept_on_password_change_are_found,
    Flow::Form,
    "keep_api_tokens_on_password_change",
    CheckId::ApiTokenAfterPasswordChange,
    Severity::High
);
flaw_test!(
    unlimited_sessions_are_found,
    Flow::Form,
    "unlimited_sessions",
    CheckId::ConcurrentSessions,
    Severity::Medium
);
flaw_test!(
    a_displaced_session_not_told_why_is_reported_as_info,
    Flow::Form,
    "silent_displacement",
    CheckId::ConcurrentSessions,
    Severity::Info
);
flaw_test!(
    a_missing_idle_timeout_is_found,
    Flow::Form,
    "no_idle_timeout",
    CheckId::IdleTimeout,
    Severity::Medium
);
flaw_test!(
    a_missing_absolute_timeout_is_found,
    Flow::Form,
    "no_absolute_timeout",
    CheckId::AbsoluteTimeout,
    Severity::Medium
);
flaw_test!(
    missing_cookie_flags_are_found,
    Flow::Form,
    "weak_cookie_flags",
    CheckId::CookieAttributes,
    Severity::Medium
);
flaw_test!(
    low_entropy_identifiers_are_found,
    Flow::Form,
    "low_entropy_ids",
    CheckId::TokenEntropy,
    Severity::High
);
flaw_test!(
    a_refresh_token_alive_after_logout_is_found,
    Flow::Api,
    "refresh_survives_logout",
    CheckId::RefreshAfterLogout,
    Severity::High
);
flaw_test!(
    a_reusable_refresh_token_is_found,
    Flow::Api,
    "refresh_reusable",
    CheckId::RefreshReuse,
    Severity::High
);
flaw_test!(
    a_refresh_token_outliving_the_session_is_found,
    Flow::Api,
    "refresh_outlives_session",
    CheckId::RefreshLifetime,
    Severity::Medium
);
flaw_test!(
    jwt_alg_none_is_found,
    Flow::Api,
    "jwt_alg_none",
    CheckId::Jwt,
    Severity::High
);
flaw_test!(
    a_jwt_signed_with_a_weak_secret_is_found,
    Flow::Api,
    "jwt_weak_secret",
    CheckId::Jwt,
    Severity::High
);

#[tokio::test(flavor = "multi_thread")]
async fn an_identifier_kept_at_login_is_fixation_of_kind_a() {
    let r = run(Flow::Form, "keep_id_at_login", QUICK).await.report;
    assert_only(&r, &[(CheckId::Fixation, Severity::High)]);
    let f = r.check(CheckId::Fixation).unwrap();
    assert!(
        f.summary.contains("(a)") && !f.summary.contains("(b)"),
        "{}",
        f.summary
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_planted_identifier_accepted_after_login_is_fixation_of_kind_b() {
    let r = run(Flow::Form, "accept_planted_ids", QUICK).await.report;
    assert_only(&r, &[(CheckId::Fixation, Severity::High)]);
    let f = r.check(CheckId::Fixation).unwrap();
    assert!(
        f.summary.contains("(b)") && !f.summary.contains("(a)"),
        "{}",
        f.summary
    );
}
