//! The `sessionguard audit` command line. The `sessionguard` binary only wires
//! [`AuditArgs`] in and calls [`main`].
//!
//! Exit codes: 0 no finding at or above `--fail-on`; 1 findings; 2 a recipe,
//! credentials or target error (a one-paragraph message, never a backtrace).

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::model::{CheckId, Severity};
use crate::progress::Progress;
use crate::recipe::Recipe;
use crate::report::{Format, render};
use crate::{AuditError, AuditOptions, DEFAULT_SAMPLES, MAX_SAMPLES, audit};

/// Check any web app or API for session findings, black-box, with redacted evidence.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: Option<AuditCommand>,
    /// The recipe (TOML): how to log in, the probe, what the app claims.
    #[arg(long, value_name = "FILE", required = true)]
    recipe: Option<PathBuf>,
    /// Report format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Write the report to FILE instead of standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Exit 1 when a finding is at or above this severity.
    #[arg(long, value_name = "info|low|medium|high", default_value = "low", value_parser = parse_severity)]
    fail_on: Severity,
    /// Run only these checks (comma-separated ids; the recipe self-test always runs).
    #[arg(long, value_name = "ID,ID", value_delimiter = ',', value_parser = parse_check)]
    only: Vec<CheckId>,
    /// The longest real wait (idle and absolute timeouts, token expiry); a
    /// longer claim is reported as not tested.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    max_wait: Duration,
    /// At most N requests per second to the target.
    #[arg(long, value_name = "N/s", default_value = "10/s", value_parser = parse_rate)]
    rate: f64,
    /// Session identifiers collected for token_entropy (at most 20000).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_SAMPLES, value_parser = parse_samples)]
    samples: usize,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Write a commented recipe template (or, with --har, a draft from a
    /// browser's HAR export of a login).
    Init {
        /// A HAR file recorded while logging in and opening a page as the user.
        #[arg(long, value_name = "FILE")]
        har: Option<PathBuf>,
        /// Write the recipe to FILE instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

fn parse_severity(s: &str) -> Result<Severity, String> {
    s.parse()
}

fn parse_check(s: &str) -> Result<CheckId, String> {
    s.trim().parse()
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("{s:?}: {e} (write e.g. 90s, 15m, 2h)"))
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let n = s
        .trim()
        .strip_suffix("/s")
        .ok_or_else(|| format!("{s:?}: write the rate as N/s, e.g. 10/s"))?;
    let n: f64 = n
        .parse()
        .map_err(|_| format!("{s:?}: N must be a number"))?;
    if !(n > 0.0 && n.is_finite()) {
        return Err(format!("{s:?}: N must be above 0"));
    }
    Ok(n)
}

fn parse_samples(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if !(20..=MAX_SAMPLES).contains(&n) {
        return Err(format!("{n}: between 20 and {MAX_SAMPLES}"));
    }
    Ok(n)
}

fn write_out(out: Option<&Path>, text: &str) -> Result<(), String> {
    match out {
        Some(p) => {
            std::fs::write(p, text).map_err(|e| format!("cannot write {}: {e}", p.display()))
        }
        None => {
            let mut o = std::io::stdout().lock();
            o.write_all(text.as_bytes())
                .and_then(|()| o.flush())
                .map_err(|e| format!("cannot write to standard output: {e}"))
        }
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("sessionguard audit: {msg}");
    ExitCode::from(2)
}

/// Runs `sessionguard audit`.
pub fn main(args: AuditArgs) -> ExitCode {
    if let Some(AuditCommand::Init { har, out }) = args.command {
        let text = match har {
            None => Ok(TEMPLATE.to_owned()),
            Some(path) => std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
                .and_then(|t| crate::har::draft(&t)),
        };
        return match text.and_then(|t| write_out(out.as_deref(), &t)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        };
    }
    let Some(path) = args.recipe else {
        return fail("--recipe FILE is required");
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => return fail(&format!("cannot read the recipe {}: {e}", path.display())),
    };
    let recipe = match Recipe::parse(&text, |v| std::env::var(v).ok()) {
        Ok(r) => r,
        Err(e) => return fail(&format!("{}: {e}", path.display())),
    };
    let lines = recipe.lines.clone();
    let options = AuditOptions {
        max_wait: args.max_wait,
        samples: args.samples,
        rate: Some(args.rate),
        only: (!args.only.is_empty()).then(|| args.only.iter().copied().collect::<BTreeSet<_>>()),
        fail_on: args.fail_on,
        progress: Progress::stderr(),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    let recipe_uri = path.to_string_lossy().replace('\\', "/");
    match runtime.block_on(audit(recipe, options)) {
        Ok(report) => {
            let text = render(&report, args.format, &recipe_uri, &lines);
            if let Err(e) = write_out(args.out.as_deref(), &text) {
                return fail(&e);
            }
            if report.summary.failing > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(AuditError::Restore { message, report }) => {
            let text = render(&report, args.format, &recipe_uri, &lines);
            let _ = write_out(args.out.as_deref(), &text);
            fail(&format!("account error: {message}"))
        }
        Err(e) => fail(&e.to_string()),
    }
}

/// The template `sessionguard audit init` writes.
pub const TEMPLATE: &str = r#"# sessionguard audit recipe: how to log in to your app, how to tell a logged-in
# request from a logged-out one, and what your app claims about its sessions.
# Run it with: sessionguard audit --recipe recipe.toml
# Use an account made for the audit: the auditor logs in many times, changes its
# password and back, and creates an API token.

target = "http://127.0.0.1:8001"        # base URL of the app

[credentials]
username = "audit-user"
password_env = "AUDIT_PASSWORD"         # or password = "..."
new_password_env = "AUDIT_NEW_PASSWORD" # or new_password = "..."; changed to and back

[login]
path = "/login"
method = "POST"                         # default POST
body = "form"                           # form | json
fields = { username = "{username}", password = "{password}" }
# An anti-CSRF token on the login page (first capture group of the regex):
# csrf_page = "/login"
# csrf_regex = 'name="csrfmiddlewaretoken" value="([^"]+)"'
# csrf_field = "csrfmiddlewaretoken"

[session]
cookie = "sessionid"                    # the session cookie's name; or
# bearer = "access_token"               # the JSON field of the login answer that holds a bearer token
# Headers sent with every authenticated unsafe request. {login.FIELD} is a JSON
# field of the login answer; {cookie.NAME} a cookie the session holds.
# headers = { "X-CSRF-Token" = "{login.csrf_token}" }

[probe]                                 # an authenticated request
path = "/me"
method = "GET"                          # default GET
logged_in = { status = 200 }            # optionally body_regex = '...'

[logout]
path = "/logout"
method = "POST"

[password_change]
path = "/password"
body = "form"
fields = { current_password = "{password}", new_password = "{new_password}" }

# [refresh]                             # for token APIs
# path = "/token"
# body = "form"
# fields = { grant_type = "refresh_token", refresh_token = "{refresh_token}" }
# token_field = "refresh_token"         # where the login and refresh answers carry it

# [api_token]                           # how a user creates a personal API token
# path = "/api-tokens"
# body = "json"
# fields = { name = "audit" }
# token_field = "token"

[claims]                                # absent values are judged against NIST SP 800-63B-4 AAL2
idle_timeout = "30m"
absolute_timeout = "12h"
max_sessions = 1
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_is_a_valid_recipe() {
        let r = Recipe::parse(TEMPLATE, |v| Some(format!("value of {v}"))).unwrap();
        assert_eq!(r.claims.max_sessions, 1);
        assert!(r.password_change.is_some());
    }

    #[test]
    fn rates_and_samples_are_bounded() {
        assert_eq!(parse_rate("2.5/s").unwrap(), 2.5);
        assert!(parse_rate("10").is_err());
        assert!(parse_rate("0/s").is_err());
        assert!(parse_samples("19").is_err());
        assert!(parse_samples("20001").is_err());
        assert_eq!(parse_samples("200").unwrap(), 200);
    }
}
