//! What an audit finds: one [`CheckReport`] per check, with its result,
//! severity, CWE and redacted evidence. The check ids and the JSON shape are a
//! public contract.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// A check. Its [`CheckId::as_str`] is the stable id of the JSON contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CheckId {
    /// The recipe's self-test.
    Recipe,
    /// A session kept idle past the claimed idle timeout.
    IdleTimeout,
    /// A session kept active past the claimed absolute timeout.
    AbsoluteTimeout,
    /// The session replayed after logout.
    Logout,
    /// Another session replayed after a password change.
    PasswordChange,
    /// An API token used after a password change.
    ApiTokenAfterPasswordChange,
    /// More simultaneous sessions than claimed.
    ConcurrentSessions,
    /// A pre-login identifier that identifies the user after login.
    Fixation,
    /// The session cookie's attributes, and the identifier in URLs.
    CookieAttributes,
    /// A refresh token used after logout.
    RefreshAfterLogout,
    /// A rotated refresh token used again.
    RefreshReuse,
    /// A refresh token used past the absolute timeout.
    RefreshLifetime,
    /// Forged and tampered JWTs.
    Jwt,
    /// The randomness of session identifiers.
    TokenEntropy,
}

impl CheckId {
    /// Every check, in report order.
    pub const ALL: [CheckId; 14] = [
        CheckId::Recipe,
        CheckId::CookieAttributes,
        CheckId::Fixation,
        CheckId::Logout,
        CheckId::RefreshAfterLogout,
        CheckId::RefreshReuse,
        CheckId::Jwt,
        CheckId::ConcurrentSessions,
        CheckId::TokenEntropy,
        CheckId::PasswordChange,
        CheckId::ApiTokenAfterPasswordChange,
        CheckId::IdleTimeout,
        CheckId::AbsoluteTimeout,
        CheckId::RefreshLifetime,
    ];

    /// The stable id.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckId::Recipe => "recipe",
            CheckId::IdleTimeout => "idle_timeout",
            CheckId::AbsoluteTimeout => "absolute_timeout",
            CheckId::Logout => "logout",
            CheckId::PasswordChange => "password_change",
            CheckId::ApiTokenAfterPasswordChange => "api_token_after_password_change",
            CheckId::ConcurrentSessions => "concurrent_sessions",
            CheckId::Fixation => "fixation",
            CheckId::CookieAttributes => "cookie_attributes",
            CheckId::RefreshAfterLogout => "refresh_after_logout",
            CheckId::RefreshReuse => "refresh_reuse",
            CheckId::RefreshLifetime => "refresh_lifetime",
            CheckId::Jwt => "jwt",
            CheckId::TokenEntropy => "token_entropy",
        }
    }

    /// The CWE entries the check tests for.
    pub fn cwe(self) -> &'static [u32] {
        match self {
            CheckId::Recipe => &[],
            CheckId::IdleTimeout
            | CheckId::AbsoluteTimeout
            | CheckId::Logout
            | CheckId::PasswordChange
            | CheckId::ApiTokenAfterPasswordChange
            | CheckId::RefreshAfterLogout
            | CheckId::RefreshLifetime => &[613],
            CheckId::ConcurrentSessions => &[1018],
            CheckId::Fixation => &[384],
            CheckId::CookieAttributes => &[614, 1004, 1275, 598],
            CheckId::RefreshReuse => &[294, 613],
            CheckId::Jwt => &[347, 1391, 613],
            CheckId::TokenEntropy => &[330, 331],
        }
    }

    /// A one-line title.
    pub fn title(self) -> &'static str {
        match self {
            CheckId::Recipe => "The recipe logs in and the probe tells logged in from logged out",
            CheckId::IdleTimeout => "Session accepted after idling longer than the idle timeout",
            CheckId::AbsoluteTimeout => "Active session accepted past the absolute timeout",
            CheckId::Logout => "Session still accepted after logout",
            CheckId::PasswordChange => "Other sessions still accepted after a password change",
            CheckId::ApiTokenAfterPasswordChange => {
                "API token still accepted after a password change"
            }
            CheckId::ConcurrentSessions => "More simultaneous sessions than the limit",
            CheckId::Fixation => "Session fixation: a pre-login identifier is valid after login",
            CheckId::CookieAttributes => "Session cookie attributes and identifiers in URLs",
            CheckId::RefreshAfterLogout => "Refresh token still works after logout",
            CheckId::RefreshReuse => "Rotated refresh token still works, or reuse goes unnoticed",
            CheckId::RefreshLifetime => "Refresh token works past the absolute timeout",
            CheckId::Jwt => "Forged or tampered JWTs accepted",
            CheckId::TokenEntropy => "Session identifiers are predictable",
        }
    }

    /// What the check does, for SARIF rules and the docs.
    pub fn description(self) -> &'static str {
        match self {
            CheckId::Recipe => {
                "Self-test: the probe succeeds after a fresh login and fails without one."
            }
            CheckId::IdleTimeout => {
                "Logs in, stays idle for the claimed idle timeout plus a margin, and replays \
                 the session. Cookie Max-Age/Expires and JWT exp are reported as hints only."
            }
            CheckId::AbsoluteTimeout => {
                "Logs in and keeps the session active past the claimed absolute timeout plus \
                 a margin."
            }
            CheckId::Logout => "Replays the pre-logout cookie or bearer token after logout.",
            CheckId::PasswordChange => {
                "Creates a second session, changes the password from a first one, replays the \
                 second; the password is changed back at the end."
            }
            CheckId::ApiTokenAfterPasswordChange => {
                "Creates a personal API token, changes the password, and uses the token."
            }
            CheckId::ConcurrentSessions => {
                "Logs in once more than the claimed limit and counts the live sessions; a \
                 displaced session should be told why."
            }
            CheckId::Fixation => {
                "Whether an identifier the server issued before login, or one the client \
                 planted, identifies the user after login."
            }
            CheckId::CookieAttributes => {
                "Secure, HttpOnly, SameSite, the __Host- prefix, Domain scope and persistent \
                 expiry of the session cookie; the identifier in a URL."
            }
            CheckId::RefreshAfterLogout => "Uses the session's refresh token after logout.",
            CheckId::RefreshReuse => {
                "Rotates a refresh token twice, replays the first, then checks whether the \
                 family was revoked."
            }
            CheckId::RefreshLifetime => {
                "Keeps refreshing past the claimed absolute timeout plus a margin."
            }
            CheckId::Jwt => {
                "alg none, stripped signature, HS256 with the public key, embedded jwk, jku, \
                 kid path traversal, weak HMAC secrets, expired tokens, missing or excessive exp."
            }
            CheckId::TokenEntropy => {
                "Collects session identifiers and runs the FIPS 140-2 monobit, poker, runs and \
                 long-run tests and an effective-entropy estimate against ASVS (64 and 128 bits)."
            }
        }
    }
}

impl fmt::Display for CheckId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CheckId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CheckId::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<_> = CheckId::ALL.iter().map(|c| c.as_str()).collect();
                format!("unknown check id {s:?} (known: {})", known.join(", "))
            })
    }
}

impl Serialize for CheckId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A check's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The flaw was observed.
    Vulnerable,
    /// Measured, and the flaw was not observed.
    Ok,
    /// Not measured; the reason says why.
    NotTested,
}

impl Outcome {
    /// As in the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Vulnerable => "vulnerable",
            Outcome::Ok => "ok",
            Outcome::NotTested => "not_tested",
        }
    }
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Hardening.
    Low,
    /// Should be fixed.
    Medium,
    /// Exploitable session weakness.
    High,
}

impl Severity {
    /// As in the JSON and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }
}

impl FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "info" => Ok(Severity::Info),
            "low" => Ok(Severity::Low),
            "medium" => Ok(Severity::Medium),
            "high" => Ok(Severity::High),
            _ => Err(format!("{s:?} is not a severity (info, low, medium, high)")),
        }
    }
}

/// One redacted step of a check: what was sent and what came back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evidence {
    /// What the step was, e.g. "after logout: the pre-logout session replayed".
    pub step: String,
    /// The request, redacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// The response, redacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
}

/// The result of one check.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// Stable id.
    pub id: CheckId,
    /// Result.
    pub result: Outcome,
    /// Severity of a finding (`null` unless vulnerable).
    pub severity: Option<Severity>,
    /// CWE ids.
    pub cwe: Vec<u32>,
    /// Title.
    pub title: String,
    /// What was observed, in one or two sentences.
    pub summary: String,
    /// Why the check was not measured (for `not_tested`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Hints and parts that were not measured.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The redacted steps.
    pub evidence: Vec<Evidence>,
}

impl CheckReport {
    fn new(id: CheckId, result: Outcome, severity: Option<Severity>, summary: String) -> Self {
        CheckReport {
            id,
            result,
            severity,
            cwe: id.cwe().to_vec(),
            title: id.title().to_owned(),
            summary,
            reason: None,
            notes: Vec::new(),
            evidence: Vec::new(),
        }
    }

    /// A finding.
    pub fn vulnerable(id: CheckId, severity: Severity, summary: impl Into<String>) -> Self {
        CheckReport::new(id, Outcome::Vulnerable, Some(severity), summary.into())
    }

    /// Measured, no finding.
    pub fn ok(id: CheckId, summary: impl Into<String>) -> Self {
        CheckReport::new(id, Outcome::Ok, None, summary.into())
    }

    /// Not measured, with the reason.
    pub fn not_tested(id: CheckId, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        let mut r = CheckReport::new(
            id,
            Outcome::NotTested,
            None,
            format!("Not measured: {reason}"),
        );
        r.reason = Some(reason);
        r
    }

    /// Adds evidence.
    pub fn with_evidence(mut self, evidence: Vec<Evidence>) -> Self {
        self.evidence.extend(evidence);
        self
    }

    /// Adds a note.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    /// Whether this is a finding at or above `level`.
    pub fn fails(&self, level: Severity) -> bool {
        self.result == Outcome::Vulnerable && self.severity.is_some_and(|s| s >= level)
    }
}

/// A whole audit.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The audited base URL.
    pub target: String,
    /// The tool and its version.
    pub tool: Tool,
    /// One entry per check that applies to the recipe, in report order.
    pub checks: Vec<CheckReport>,
    /// Counts.
    pub summary: Summary,
}

/// The tool that wrote a report.
#[derive(Debug, Clone, Serialize)]
pub struct Tool {
    /// `sessionguard-audit`.
    pub name: &'static str,
    /// Crate version.
    pub version: &'static str,
}

/// Counts of a report.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Checks that found their flaw.
    pub vulnerable: usize,
    /// Checks measured without finding.
    pub ok: usize,
    /// Checks not measured.
    pub not_tested: usize,
    /// The `--fail-on` level.
    pub fail_on: Severity,
    /// Findings at or above it.
    pub failing: usize,
    /// Requests sent to the target.
    pub requests: u64,
}

impl Report {
    /// Builds the report and its summary.
    pub fn new(
        target: String,
        mut checks: Vec<CheckReport>,
        fail_on: Severity,
        requests: u64,
    ) -> Self {
        checks.sort_by_key(|c| CheckId::ALL.iter().position(|x| *x == c.id));
        let count = |o: Outcome| checks.iter().filter(|c| c.result == o).count();
        let summary = Summary {
            vulnerable: count(Outcome::Vulnerable),
            ok: count(Outcome::Ok),
            not_tested: count(Outcome::NotTested),
            fail_on,
            failing: checks.iter().filter(|c| c.fails(fail_on)).count(),
            requests,
        };
        Report {
            target,
            tool: Tool {
                name: "sessionguard-audit",
                version: env!("CARGO_PKG_VERSION"),
            },
            checks,
            summary,
        }
    }

    /// The entry of check `id`.
    pub fn check(&self, id: CheckId) -> Option<&CheckReport> {
        self.checks.iter().find(|c| c.id == id)
    }

    /// Ids of the checks that found their flaw at or above `level`.
    pub fn findings(&self, level: Severity) -> Vec<CheckId> {
        self.checks
            .iter()
            .filter(|c| c.fails(level))
            .map(|c| c.id)
            .collect()
    }
}
