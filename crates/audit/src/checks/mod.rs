//! The checks, and the order they run in.
//!
//! Every check logs in afresh (a check may end its session), only the logout
//! check calls logout, and replays use the credentials exactly as they were
//! before the step under test. Quick checks run first; the real waits (idle and
//! absolute timeouts, refresh lifetime, JWT expiry) run last, each bounded by
//! `--max-wait`.

mod basic;
mod entropy;
mod jwt;
mod password;
mod timeouts;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::agent::{Agent, Cred, Fail, Pw, Session};
use crate::model::{CheckId, CheckReport};
use crate::recipe::Recipe;

/// The checks that apply to a recipe: those whose sections it has.
pub fn applicable(recipe: &Recipe) -> Vec<CheckId> {
    CheckId::ALL
        .into_iter()
        .filter(|c| match c {
            CheckId::CookieAttributes | CheckId::Fixation => recipe.session_cookie().is_some(),
            CheckId::Logout => recipe.logout.is_some(),
            CheckId::PasswordChange => recipe.password_change.is_some(),
            CheckId::ApiTokenAfterPasswordChange => {
                recipe.api_token.is_some() && recipe.password_change.is_some()
            }
            CheckId::RefreshAfterLogout => recipe.refresh.is_some() && recipe.logout.is_some(),
            CheckId::RefreshReuse | CheckId::RefreshLifetime => recipe.refresh.is_some(),
            _ => true,
        })
        .collect()
}

/// Why an audit stopped.
#[derive(Debug)]
pub enum Stop {
    /// The recipe's self-test failed at this step.
    Recipe(String),
    /// The target did not answer.
    Target(String),
    /// The account's password could not be changed back; the checks done so far.
    Restore(String, Vec<CheckReport>),
}

/// Runs the selected checks (the recipe self-test always).
pub async fn run(agent: &Agent, selected: &BTreeSet<CheckId>) -> Result<Vec<CheckReport>, Stop> {
    let on = |c: CheckId| selected.contains(&c);
    let mut out = Vec::new();
    let target = |e: Fail, out: &mut Vec<CheckReport>| match e {
        Fail::Target(e) => Stop::Target(e.to_string()),
        Fail::Step(s) => Stop::Target(s),
        Fail::Restore(s) => Stop::Restore(s, std::mem::take(out)),
    };

    agent.progress.step("recipe: self-test");
    let (report, first) = basic::self_test(agent).await?;
    out.push(report);

    macro_rules! step {
        ($name:expr, $fut:expr) => {{
            agent.progress.step($name);
            match $fut.await {
                Ok(reports) => out.extend(reports),
                Err(e) => return Err(target(e, &mut out)),
            }
        }};
    }

    if on(CheckId::CookieAttributes) {
        out.push(basic::cookie_attributes(agent, &first));
    }
    let mut jwt_parts = None;
    if on(CheckId::Jwt) {
        agent.progress.step("jwt: forged tokens");
        match jwt::forgeries(agent).await {
            Ok(p) => jwt_parts = Some(p),
            Err(e) => return Err(target(e, &mut out)),
        }
    }
    if on(CheckId::Fixation) {
        step!("fixation", guard(CheckId::Fixation, basic::fixation(agent)));
    }
    if on(CheckId::Logout) || on(CheckId::RefreshAfterLogout) {
        step!(
            "logout",
            basic::logout(agent, on(CheckId::Logout), on(CheckId::RefreshAfterLogout))
        );
    }
    if on(CheckId::RefreshReuse) {
        step!(
            "refresh_reuse",
            guard(CheckId::RefreshReuse, basic::refresh_reuse(agent))
        );
    }
    if on(CheckId::ConcurrentSessions) {
        step!(
            "concurrent_sessions",
            guard(CheckId::ConcurrentSessions, basic::concurrent(agent))
        );
    }
    if on(CheckId::TokenEntropy) {
        step!(
            "token_entropy: collecting identifiers",
            guard(CheckId::TokenEntropy, entropy::token_entropy(agent))
        );
    }
    if on(CheckId::PasswordChange) || on(CheckId::ApiTokenAfterPasswordChange) {
        step!(
            "password_change",
            password::password_change(
                agent,
                on(CheckId::PasswordChange),
                on(CheckId::ApiTokenAfterPasswordChange)
            )
        );
    }
    if on(CheckId::IdleTimeout) {
        step!(
            "idle_timeout",
            guard(CheckId::IdleTimeout, timeouts::idle(agent))
        );
    }
    if on(CheckId::AbsoluteTimeout) || on(CheckId::RefreshLifetime) {
        step!(
            "absolute_timeout",
            timeouts::absolute(
                agent,
                on(CheckId::AbsoluteTimeout),
                on(CheckId::RefreshLifetime)
            )
        );
    }
    if let Some(parts) = jwt_parts {
        agent.progress.step("jwt: expiry");
        match jwt::finish(agent, parts).await {
            Ok(r) => out.push(r),
            Err(e) => return Err(target(e, &mut out)),
        }
    }
    Ok(out)
}

/// Turns a step failure of a one-check function into its `not_tested` report.
async fn guard(
    id: CheckId,
    fut: impl std::future::Future<Output = Result<CheckReport, Fail>>,
) -> Result<Vec<CheckReport>, Fail> {
    match fut.await {
        Ok(r) => Ok(vec![r]),
        Err(Fail::Step(reason)) => Ok(vec![CheckReport::not_tested(id, reason)]),
        Err(e) => Err(e),
    }
}

/// The margin added to a claimed timeout before replaying: 5 % of it, at least
/// 2 s and at most 5 min (servers may round, coalesce writes, or sweep late).
pub fn margin(claim: Duration) -> Duration {
    (claim / 20).clamp(Duration::from_secs(2), Duration::from_secs(300))
}

/// How often a session is used to keep it active: a quarter of the claimed idle
/// timeout, between 0.5 s and 60 s.
pub fn keepalive(agent: &Agent) -> Duration {
    (agent.recipe.claims.idle_timeout / 4)
        .clamp(Duration::from_millis(500), Duration::from_secs(60))
        .max(agent.http.interval())
}

/// Sleeps until `until`, showing progress.
pub async fn wait_until(agent: &Agent, what: &str, until: Instant) {
    loop {
        let now = Instant::now();
        if now >= until {
            break;
        }
        agent.progress.waiting(what, until);
        let step = (until - now).min(Duration::from_secs(1));
        tokio::time::sleep(step).await;
    }
    agent.progress.done_waiting();
}

/// Formats a duration for reports, to the second (or millisecond below 10 s).
pub fn human(d: Duration) -> String {
    if d < Duration::from_secs(10) {
        let ms = d.as_millis() as u64;
        if ms.is_multiple_of(1000) {
            return format!("{}s", ms / 1000);
        }
        return format!("{:.1}s", d.as_secs_f64());
    }
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// Logs in and checks the probe accepts the new session (a step of a check).
pub async fn live_session(agent: &Agent, pw: Pw) -> Result<Session, Fail> {
    let mut s = agent
        .login(pw)
        .await
        .map_err(|e| relabel(e, "a fresh login failed"))?;
    let (ok, ex) = agent.probe(&s.cred()).await?;
    s.jar.apply(&ex.set_cookies);
    if !ok {
        return Err(Fail::Step(format!(
            "the probe answered {} right after a fresh login",
            ex.status
        )));
    }
    Ok(s)
}

/// Prefixes a step failure's reason.
pub fn relabel(e: Fail, what: &str) -> Fail {
    match e {
        Fail::Step(s) => Fail::Step(format!("{what}: {s}")),
        e => e,
    }
}

/// Whether `cred` passes the probe.
pub async fn accepted(agent: &Agent, cred: &Cred) -> Result<(bool, crate::http::Exchange), Fail> {
    agent.probe(cred).await
}
