//! # sessionguard-audit
//!
//! `sessionguard audit`: a black-box auditor that checks any web app or API for
//! the session findings of a penetration test — session alive after logout or
//! after a password change, idle and absolute timeouts longer than claimed,
//! unlimited concurrent sessions, session fixation, weak cookie attributes,
//! refresh tokens alive after logout, reusable or immortal, forgeable JWTs and
//! predictable identifiers — with redacted before/after evidence.
//!
//! It is an HTTP client and nothing else: it knows the audited app only through
//! a [`recipe`] (how to log in, how to tell logged in from logged out, what the
//! app claims), and depends on no server code.
//!
//! An audit goes: read the recipe → self-test (the probe fails anonymously and
//! succeeds after a fresh login; otherwise stop) → the quick checks → the real
//! waits (bounded by `--max-wait`) → a [`model::Report`] rendered by [`report`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use sessionguard_audit::{AuditOptions, audit, recipe::Recipe};
//!
//! let recipe = Recipe::parse(&std::fs::read_to_string("recipe.toml")?, |v| std::env::var(v).ok())?;
//! let report = audit(recipe, AuditOptions::default()).await?;
//! for check in &report.checks {
//!     println!("{} {}", check.id, check.result.as_str());
//! }
//! # Ok(()) }
//! ```

pub mod agent;
pub mod checks;
pub mod cli;
pub mod cookie;
pub mod entropy;
pub mod har;
pub mod http;
pub mod jwt;
pub mod model;
pub mod progress;
pub mod recipe;
pub mod redact;
pub mod report;

use std::collections::BTreeSet;
use std::time::Duration;

use agent::{Agent, Options};
use model::{CheckId, Report, Severity};
use progress::Progress;
use recipe::Recipe;

/// Default `--max-wait`.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(10 * 60);
/// Default `--samples`.
pub const DEFAULT_SAMPLES: usize = 200;
/// Most `--samples`.
pub const MAX_SAMPLES: usize = 20_000;
/// Default `--rate` (requests per second).
pub const DEFAULT_RATE: f64 = 10.0;

/// How an audit runs.
#[derive(Debug)]
pub struct AuditOptions {
    /// The longest real wait (`--max-wait`).
    pub max_wait: Duration,
    /// Identifiers collected for `token_entropy` (`--samples`).
    pub samples: usize,
    /// Requests per second (`--rate`); `None` for no limit.
    pub rate: Option<f64>,
    /// Only these checks (`--only`); the self-test always runs.
    pub only: Option<BTreeSet<CheckId>>,
    /// The level at or above which a finding fails (`--fail-on`).
    pub fail_on: Severity,
    /// Where progress goes.
    pub progress: Progress,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            max_wait: DEFAULT_MAX_WAIT,
            samples: DEFAULT_SAMPLES,
            rate: Some(DEFAULT_RATE),
            only: None,
            fail_on: Severity::Low,
            progress: Progress::quiet(),
        }
    }
}

/// Why an audit could not give a complete report (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The recipe is invalid, or its self-test failed at the step named.
    #[error("recipe error: {0}")]
    Recipe(String),
    /// The target did not answer.
    #[error("target error: {0}")]
    Target(String),
    /// The password could not be changed back; the report of what was done.
    #[error("account error: {message}")]
    Restore {
        /// What failed and what to do.
        message: String,
        /// The checks done before.
        report: Box<Report>,
    },
}

/// Runs an audit.
pub async fn audit(recipe: Recipe, options: AuditOptions) -> Result<Report, AuditError> {
    let applicable: BTreeSet<CheckId> = checks::applicable(&recipe).into_iter().collect();
    let selected = match &options.only {
        None => applicable.clone(),
        Some(only) => {
            for id in only {
                if !applicable.contains(id) {
                    return Err(AuditError::Recipe(format!(
                        "--only {id}: the check does not apply to this recipe (it needs {})",
                        needs(*id)
                    )));
                }
            }
            only.clone()
        }
    };
    let http = http::Http::new(&recipe.target, options.rate).map_err(AuditError::Target)?;
    let target = redact::Redactor::new().redact(&strip_userinfo(&recipe.target));
    let agent = Agent::new(
        recipe,
        http,
        options.progress,
        Options {
            max_wait: options.max_wait,
            samples: options.samples,
        },
    );
    match checks::run(&agent, &selected).await {
        Ok(reports) => Ok(Report::new(
            target,
            reports,
            options.fail_on,
            agent.http.sent(),
        )),
        Err(checks::Stop::Recipe(s)) => Err(AuditError::Recipe(agent.redact(&s))),
        Err(checks::Stop::Target(s)) => Err(AuditError::Target(agent.redact(&s))),
        Err(checks::Stop::Restore(s, done)) => Err(AuditError::Restore {
            message: agent.redact(&s),
            report: Box::new(Report::new(
                target,
                done,
                options.fail_on,
                agent.http.sent(),
            )),
        }),
    }
}

fn needs(id: CheckId) -> &'static str {
    match id {
        CheckId::CookieAttributes | CheckId::Fixation => "a cookie session",
        CheckId::Logout => "[logout]",
        CheckId::PasswordChange => "[password_change]",
        CheckId::ApiTokenAfterPasswordChange => "[api_token] and [password_change]",
        CheckId::RefreshAfterLogout => "[refresh] and [logout]",
        _ => "[refresh]",
    }
}

fn strip_userinfo(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((_, host))
                if !rest.split('/').next().unwrap_or("").is_empty()
                    && rest.find('@') < rest.find('/').or(Some(usize::MAX)) =>
            {
                format!("{scheme}://{host}")
            }
            _ => url.to_owned(),
        },
        None => url.to_owned(),
    }
}
