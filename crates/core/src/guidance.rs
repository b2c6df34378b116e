//! Guidance: what each setting of a policy profile is measured against, and where
//! that figure comes from.
//!
//! Every profile is mapped to a [`Level`] of published guidance:
//!
//! | profile | level |
//! |---|---|
//! | `standard` | NIST SP 800-63B-4 AAL2 and the OWASP Session Management Cheat Sheet |
//! | `sensitive` | AAL2 with OWASP's stricter advice, and a concurrent-session limit |
//! | `admin` | NIST SP 800-63B-4 AAL3 |
//! | any other name | as `standard` |
//!
//! The revision used is **NIST SP 800-63B-4** (SP 800-63-4, final, July 2025),
//! which replaced SP 800-63B (revision 3, 2017). Its reauthentication limits are:
//! AAL2 (§2.2.3) an overall timeout that SHOULD be no more than 24 hours and an
//! inactivity timeout that SHOULD be no more than 1 hour; AAL3 (§2.3.3) an
//! overall timeout that SHALL be no more than 12 hours and an inactivity timeout
//! that SHOULD be no more than 15 minutes. (Revision 3 said 12 hours / 30 minutes
//! at AAL2, 12 hours / 15 minutes at AAL3.)
//!
//! Where the standards name no figure (the step-up window, the refresh-token
//! grace window, renewal and API-token lifetimes), the figure is sessionguard's
//! own and its source says so. A setting beyond a required figure *exceeds* the
//! guidance; a setting beyond an advisory one gets an *advisory* note.
//!
//! ```
//! use sessionguard_core::Profiles;
//! use sessionguard_core::guidance::{self, Status};
//!
//! let reports = guidance::check(&Profiles::default());
//! assert_eq!(reports.len(), 3);
//! assert!(reports.iter().all(|r| r.exceeding().count() == 0));
//! assert!(reports[0].findings.iter().all(|f| f.status != Status::Exceeds));
//! ```

use std::fmt;
use std::time::Duration;

use crate::policy::Policy;
use crate::profile::{BUILT_IN, ProfileName, Profiles};

/// NIST SP 800-63B-4 §2.2.3, AAL2 reauthentication.
pub const NIST_AAL2: &str = "NIST SP 800-63B-4 §2.2.3 (AAL2)";
/// NIST SP 800-63B-4 §2.3.3, AAL3 reauthentication.
pub const NIST_AAL3: &str = "NIST SP 800-63B-4 §2.3.3 (AAL3)";
/// OWASP Session Management Cheat Sheet, "Session Expiration": idle timeouts of
/// 15–30 minutes for low-risk applications.
pub const OWASP_IDLE_LOW_RISK: &str = "OWASP Session Mgmt CS: 15-30m, low risk";
/// The same sentence, read at its strict end for sensitive applications.
pub const OWASP_IDLE_STRICT: &str = "OWASP Session Mgmt CS: strict end of 15-30m";
/// OWASP Session Management Cheat Sheet, "Simultaneous Session Logons": how many
/// to allow is the application's decision, and unlimited concurrent sessions are
/// a common penetration-test finding, so every level asks for some limit.
pub const OWASP_SIMULTANEOUS: &str = "OWASP Session Mgmt CS: simultaneous logons";
/// NIST SP 800-53 Rev. 5 AC-10, Concurrent Session Control: limit concurrent
/// sessions, e.g. for administrators and sensitive domains.
pub const NIST_AC10: &str = "NIST SP 800-53r5 AC-10";
/// OpenID FAPI 1.0 Part 1 (Baseline) §5.2.2 item 21: bearer access tokens live
/// under 10 minutes.
pub const FAPI_ACCESS_TOKEN: &str = "OpenID FAPI 1.0 Baseline §5.2.2-21";
/// The step-up window: sessionguard's figure (OWASP ASVS 5.0 V7.5 requires
/// re-authentication for sensitive operations but names no window); a
/// re-authentication counts no longer than the level's idle guidance.
pub const STEP_UP: &str = "sessionguard: idle guidance (ASVS 5.0 V7.5)";
/// The refresh-token reuse grace window: sessionguard's figure; RFC 9700 §4.14.2
/// relies on the reuse of a rotated refresh token being detected.
pub const REFRESH_GRACE: &str = "sessionguard (RFC 9700 §4.14.2)";
/// Periodic renewal: OWASP's "renewal timeout", which names no figure; the figure
/// is sessionguard's built-in one.
pub const RENEWAL: &str = "sessionguard (OWASP CS renewal timeout)";
/// Personal API tokens: sessionguard's built-in lifetimes; no standard names one.
pub const API_TOKEN: &str = "sessionguard (no published figure)";

/// The body of guidance a profile is measured against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Level {
    /// NIST SP 800-63B-4 AAL2 and the OWASP Session Management Cheat Sheet.
    Standard,
    /// AAL2 with OWASP's stricter advice and a concurrent-session limit.
    Sensitive,
    /// NIST SP 800-63B-4 AAL3.
    Admin,
}

impl Level {
    /// The level of the profile `name`: a built-in profile's own, `standard`'s for
    /// any other name.
    pub fn of(name: &ProfileName) -> Level {
        match name.as_str() {
            "sensitive" => Level::Sensitive,
            "admin" => Level::Admin,
            _ => Level::Standard,
        }
    }

    /// The built-in profile whose guidance this is.
    pub const fn profile(self) -> &'static str {
        match self {
            Level::Standard => "standard",
            Level::Sensitive => "sensitive",
            Level::Admin => "admin",
        }
    }

    /// What the level stands for, in words.
    pub const fn describe(self) -> &'static str {
        match self {
            Level::Standard => {
                "NIST SP 800-63B-4 (2025) AAL2 + OWASP Session Management Cheat Sheet"
            }
            Level::Sensitive => {
                "NIST SP 800-63B-4 (2025) AAL2 + OWASP's stricter advice, limited sessions"
            }
            Level::Admin => "NIST SP 800-63B-4 (2025) AAL3",
        }
    }

    /// The rules of this level, one per [`Setting`], in [`Setting::ALL`] order.
    pub fn rules(self) -> [Rule; 8] {
        let min = |m: u64| Duration::from_secs(m * 60);
        let hours = |h: u64| Duration::from_secs(h * 3600);
        let days = |d: u64| Duration::from_secs(d * 86_400);
        let (idle, idle_source) = match self {
            Level::Standard => (min(30), OWASP_IDLE_LOW_RISK),
            Level::Sensitive => (min(15), OWASP_IDLE_STRICT),
            Level::Admin => (min(15), NIST_AAL3),
        };
        let (absolute, absolute_source) = match self {
            Level::Standard | Level::Sensitive => (hours(24), NIST_AAL2),
            Level::Admin => (hours(12), NIST_AAL3),
        };
        let (sessions, sessions_source) = match self {
            Level::Standard => (Guidance::Limited, OWASP_SIMULTANEOUS),
            Level::Sensitive | Level::Admin => (Guidance::Limited, NIST_AC10),
        };
        let renewal = match self {
            Level::Standard => Guidance::Any,
            Level::Sensitive => Guidance::OnAtMost(hours(1)),
            Level::Admin => Guidance::OnAtMost(min(30)),
        };
        let api_tokens = match self {
            Level::Standard | Level::Sensitive => days(90),
            Level::Admin => days(30),
        };
        let required = |setting, guidance, source| Rule {
            setting,
            guidance,
            weight: Weight::Required,
            source,
        };
        let advisory = |setting, guidance, source| Rule {
            setting,
            guidance,
            weight: Weight::Advisory,
            source,
        };
        [
            required(Setting::IdleTimeout, Guidance::AtMost(idle), idle_source),
            required(
                Setting::AbsoluteTimeout,
                Guidance::AtMost(absolute),
                absolute_source,
            ),
            required(Setting::MaxSessions, sessions, sessions_source),
            required(Setting::StepUpTtl, Guidance::AtMost(idle), STEP_UP),
            required(
                Setting::AccessTokenTtl,
                Guidance::Under(min(10)),
                FAPI_ACCESS_TOKEN,
            ),
            required(
                Setting::RefreshReuseGrace,
                Guidance::AtMost(Duration::from_secs(10)),
                REFRESH_GRACE,
            ),
            advisory(Setting::RenewalInterval, renewal, RENEWAL),
            advisory(
                Setting::ApiTokenMaxTtl,
                Guidance::AtMost(api_tokens),
                API_TOKEN,
            ),
        ]
    }
}

/// A policy setting that guidance speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Setting {
    /// `idle_timeout`.
    IdleTimeout,
    /// `absolute_timeout`.
    AbsoluteTimeout,
    /// `max_sessions`.
    MaxSessions,
    /// `step_up_ttl`.
    StepUpTtl,
    /// `access_token_ttl`.
    AccessTokenTtl,
    /// `refresh_reuse_grace`.
    RefreshReuseGrace,
    /// `renewal_interval`.
    RenewalInterval,
    /// `api_token_max_ttl`.
    ApiTokenMaxTtl,
}

impl Setting {
    /// Every checked setting, in report order.
    pub const ALL: [Setting; 8] = [
        Setting::IdleTimeout,
        Setting::AbsoluteTimeout,
        Setting::MaxSessions,
        Setting::StepUpTtl,
        Setting::AccessTokenTtl,
        Setting::RefreshReuseGrace,
        Setting::RenewalInterval,
        Setting::ApiTokenMaxTtl,
    ];

    /// The configuration key, e.g. `idle_timeout`.
    pub const fn key(self) -> &'static str {
        match self {
            Setting::IdleTimeout => "idle_timeout",
            Setting::AbsoluteTimeout => "absolute_timeout",
            Setting::MaxSessions => "max_sessions",
            Setting::StepUpTtl => "step_up_ttl",
            Setting::AccessTokenTtl => "access_token_ttl",
            Setting::RefreshReuseGrace => "refresh_reuse_grace",
            Setting::RenewalInterval => "renewal_interval",
            Setting::ApiTokenMaxTtl => "api_token_max_ttl",
        }
    }

    /// The effective value of this setting in `policy`.
    pub fn value(self, policy: &Policy) -> Value {
        match self {
            Setting::IdleTimeout => Value::Duration(policy.idle_timeout),
            Setting::AbsoluteTimeout => Value::Duration(policy.absolute_timeout),
            Setting::MaxSessions => match policy.max_sessions {
                0 => Value::Unlimited,
                n => Value::Sessions(n),
            },
            Setting::StepUpTtl => Value::Duration(policy.step_up_ttl),
            Setting::AccessTokenTtl => Value::Duration(policy.access_token_ttl),
            Setting::RefreshReuseGrace => Value::Duration(policy.refresh_reuse_grace),
            Setting::RenewalInterval if policy.renewal_interval.is_zero() => Value::Off,
            Setting::RenewalInterval => Value::Duration(policy.renewal_interval),
            Setting::ApiTokenMaxTtl => Value::Duration(policy.api_token_max_ttl),
        }
    }
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// An effective setting, as a report shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    /// A duration.
    Duration(Duration),
    /// A feature turned off (a zero `renewal_interval`).
    Off,
    /// No concurrent-session limit (`max_sessions = 0`).
    Unlimited,
    /// A concurrent-session limit.
    Sessions(u32),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Duration(d) => write!(f, "{}", Human(*d)),
            Value::Off => f.write_str("off"),
            Value::Unlimited => f.write_str("unlimited"),
            Value::Sessions(n) => write!(f, "{n}"),
        }
    }
}

/// The figure a setting is measured against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Guidance {
    /// At most this long.
    AtMost(Duration),
    /// Strictly shorter than this.
    Under(Duration),
    /// Some limit (any number of sessions but unlimited).
    Limited,
    /// Turned on, at most this long.
    OnAtMost(Duration),
    /// The guidance leaves it to the application.
    Any,
}

impl Guidance {
    /// Whether `value` is within this guidance.
    pub fn admits(self, value: Value) -> bool {
        match (self, value) {
            (Guidance::Any, _) => true,
            (Guidance::AtMost(max) | Guidance::OnAtMost(max), Value::Duration(d)) => d <= max,
            (Guidance::AtMost(_), Value::Off) => true,
            (Guidance::Under(max), Value::Duration(d)) => d < max,
            (Guidance::Limited, Value::Sessions(_)) => true,
            _ => false,
        }
    }
}

impl fmt::Display for Guidance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Guidance::AtMost(d) => write!(f, "<= {}", Human(*d)),
            Guidance::Under(d) => write!(f, "< {}", Human(*d)),
            Guidance::Limited => f.write_str("limited"),
            Guidance::OnAtMost(d) => write!(f, "on, <= {}", Human(*d)),
            Guidance::Any => f.write_str("any"),
        }
    }
}

/// How a setting beyond its guidance counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weight {
    /// It exceeds the guidance: `policy check` fails.
    Required,
    /// It earns an advisory note only.
    Advisory,
}

/// One piece of guidance: a setting, its figure and where the figure comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// The setting.
    pub setting: Setting,
    /// The figure.
    pub guidance: Guidance,
    /// Whether missing it is a violation or a note.
    pub weight: Weight,
    /// The source, with its revision and section.
    pub source: &'static str,
}

impl Rule {
    /// Measures `policy` against this rule.
    pub fn check(&self, policy: &Policy) -> Finding {
        let value = self.setting.value(policy);
        let status = match (self.guidance.admits(value), self.weight) {
            (true, _) => Status::Ok,
            (false, Weight::Required) => Status::Exceeds,
            (false, Weight::Advisory) => Status::Advisory,
        };
        Finding {
            setting: self.setting,
            value,
            guidance: self.guidance,
            source: self.source,
            status,
        }
    }
}

/// How a setting compares with its guidance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Within the guidance.
    Ok,
    /// Beyond a required figure: a violation.
    Exceeds,
    /// Beyond an advisory figure: worth a look, not a violation.
    Advisory,
}

impl Status {
    /// The word a report shows.
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Exceeds => "EXCEEDS",
            Status::Advisory => "advisory",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One setting measured against its guidance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finding {
    /// The setting.
    pub setting: Setting,
    /// Its effective value.
    pub value: Value,
    /// The figure it is measured against.
    pub guidance: Guidance,
    /// Where the figure comes from.
    pub source: &'static str,
    /// The verdict.
    pub status: Status,
}

/// Every checked setting of one profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileReport {
    /// The profile.
    pub profile: ProfileName,
    /// Whether it is the deployment's default profile.
    pub is_default: bool,
    /// The guidance it is measured against.
    pub level: Level,
    /// One finding per [`Setting::ALL`], in that order.
    pub findings: Vec<Finding>,
}

impl ProfileReport {
    /// The findings that exceed their guidance.
    pub fn exceeding(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.status == Status::Exceeds)
    }

    /// The findings with an advisory note.
    pub fn advisories(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.status == Status::Advisory)
    }
}

/// Measures `policy` against the guidance of `level`.
pub fn check_policy(level: Level, policy: &Policy) -> Vec<Finding> {
    level.rules().iter().map(|r| r.check(policy)).collect()
}

/// Measures every profile against its guidance: the built-in profiles first
/// (`standard`, `sensitive`, `admin`), then the others by name.
pub fn check(profiles: &Profiles) -> Vec<ProfileReport> {
    let mut named: Vec<_> = profiles.iter().collect();
    named.sort_by_key(|(name, _)| {
        let built_in = BUILT_IN.iter().position(|b| *b == name.as_str());
        (built_in.unwrap_or(BUILT_IN.len()), *name)
    });
    named
        .into_iter()
        .map(|(name, policy)| {
            let level = Level::of(name);
            ProfileReport {
                profile: name.clone(),
                is_default: name == profiles.default_name(),
                level,
                findings: check_policy(level, policy),
            }
        })
        .collect()
}

/// A duration in the configuration's own notation: whole days from two days up
/// (`90d`), otherwise hours, minutes and seconds (`24h`, `1h30m`, `5s`, `0s`).
struct Human(Duration);

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const DAY: u64 = 86_400;
        let secs = self.0.as_secs();
        let millis = self.0.subsec_millis();
        if secs == 0 && millis == 0 {
            return f.write_str("0s");
        }
        if millis == 0 && secs >= 2 * DAY && secs.is_multiple_of(DAY) {
            return write!(f, "{}d", secs / DAY);
        }
        let parts = [
            (secs / 3600, "h"),
            (secs % 3600 / 60, "m"),
            (secs % 60, "s"),
            (u64::from(millis), "ms"),
        ];
        for (n, unit) in parts {
            if n != 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::OnLimit;

    const MIN: u64 = 60;
    const HOUR: u64 = 3600;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn finding(level: Level, setting: Setting, policy: &Policy) -> Finding {
        let rule = level
            .rules()
            .into_iter()
            .find(|r| r.setting == setting)
            .expect("every level has a rule per setting");
        rule.check(policy)
    }

    fn status(level: Level, setting: Setting, policy: Policy) -> Status {
        finding(level, setting, &policy).status
    }

    fn builtin(name: &str) -> Policy {
        crate::profile::built_in(name).unwrap()
    }

    #[test]
    fn every_level_has_one_rule_per_setting_in_report_order() {
        for level in [Level::Standard, Level::Sensitive, Level::Admin] {
            let settings: Vec<_> = level.rules().iter().map(|r| r.setting).collect();
            assert_eq!(settings, Setting::ALL);
        }
    }

    #[test]
    fn built_in_profiles_are_within_their_own_guidance() {
        let reports = check(&Profiles::default());
        let names: Vec<_> = reports.iter().map(|r| r.profile.as_str()).collect();
        assert_eq!(names, ["standard", "sensitive", "admin"]);
        for r in &reports {
            assert_eq!(Level::of(&r.profile).profile(), r.profile.as_str());
            assert!(r.findings.iter().all(|f| f.status == Status::Ok), "{r:?}");
            assert_eq!(r.is_default, r.profile.as_str() == "standard");
        }
    }

    #[test]
    fn user_defined_profiles_get_standard_guidance() {
        let name = ProfileName::new("partners").unwrap();
        assert_eq!(Level::of(&name), Level::Standard);
        assert_eq!(Level::of(&ProfileName::new("admin").unwrap()), Level::Admin);
        let mut profiles = Profiles::default();
        profiles.insert(name, builtin("admin"));
        let report = check(&profiles)
            .into_iter()
            .find(|r| r.profile.as_str() == "partners")
            .unwrap();
        assert_eq!(report.level, Level::Standard);
        assert_eq!(
            report.findings[0].guidance,
            Guidance::AtMost(secs(30 * MIN))
        );
    }

    #[test]
    fn idle_timeout_is_measured_per_level() {
        let idle = |d| Policy {
            idle_timeout: secs(d),
            ..Policy::default()
        };
        assert_eq!(
            status(Level::Standard, Setting::IdleTimeout, idle(30 * MIN)),
            Status::Ok
        );
        assert_eq!(
            status(Level::Standard, Setting::IdleTimeout, idle(30 * MIN + 1)),
            Status::Exceeds
        );
        assert_eq!(
            status(Level::Standard, Setting::IdleTimeout, idle(12 * HOUR)),
            Status::Exceeds
        );
        assert_eq!(
            status(Level::Sensitive, Setting::IdleTimeout, idle(15 * MIN)),
            Status::Ok
        );
        assert_eq!(
            status(Level::Sensitive, Setting::IdleTimeout, idle(20 * MIN)),
            Status::Exceeds
        );
        assert_eq!(
            status(Level::Admin, Setting::IdleTimeout, idle(10 * MIN)),
            Status::Ok
        );
        let f = finding(Level::Admin, Setting::IdleTimeout, &idle(30 * MIN));
        assert_eq!(f.status, Status::Exceeds);
        assert_eq!(f.source, NIST_AAL3);
        assert_eq!(f.value.to_string(), "30m");
        assert_eq!(f.guidance.to_string(), "<= 15m");
    }

    #[test]
    fn absolute_timeout_is_24h_at_aal2_and_12h_at_aal3() {
        let abs = |d| Policy {
            absolute_timeout: secs(d),
            ..Policy::default()
        };
        for level in [Level::Standard, Level::Sensitive] {
            assert_eq!(
                status(level, Setting::AbsoluteTimeout, abs(24 * HOUR)),
                Status::Ok
            );
            let f = finding(level, Setting::AbsoluteTimeout, &abs(48 * HOUR));
            assert_eq!((f.status, f.source), (Status::Exceeds, NIST_AAL2));
        }
        assert_eq!(
            status(Level::Admin, Setting::AbsoluteTimeout, abs(12 * HOUR)),
            Status::Ok
        );
        assert_eq!(
            status(Level::Admin, Setting::AbsoluteTimeout, abs(13 * HOUR)),
            Status::Exceeds
        );
    }

    #[test]
    fn unlimited_sessions_exceed_on_every_level() {
        let sessions = |n| Policy {
            max_sessions: n,
            on_limit: OnLimit::RejectNew,
            ..Policy::default()
        };
        assert_eq!(
            status(Level::Standard, Setting::MaxSessions, sessions(7)),
            Status::Ok
        );
        assert_eq!(
            status(Level::Standard, Setting::MaxSessions, Policy::default()),
            Status::Ok
        );
        let f = finding(Level::Standard, Setting::MaxSessions, &sessions(0));
        assert_eq!((f.status, f.source), (Status::Exceeds, OWASP_SIMULTANEOUS));
        assert_eq!(f.value.to_string(), "unlimited");
        for level in [Level::Sensitive, Level::Admin] {
            assert_eq!(status(level, Setting::MaxSessions, sessions(5)), Status::Ok);
            let f = finding(level, Setting::MaxSessions, &sessions(0));
            assert_eq!(f.status, Status::Exceeds);
            assert_eq!(f.value.to_string(), "unlimited");
            assert_eq!(f.guidance.to_string(), "limited");
            assert_eq!(f.source, NIST_AC10);
        }
    }

    #[test]
    fn step_up_window_is_bounded_by_the_idle_guidance() {
        let step_up = |d| Policy {
            step_up_ttl: secs(d),
            ..Policy::default()
        };
        assert_eq!(
            status(Level::Standard, Setting::StepUpTtl, step_up(30 * MIN)),
            Status::Ok
        );
        assert_eq!(
            status(Level::Standard, Setting::StepUpTtl, step_up(HOUR)),
            Status::Exceeds
        );
        assert_eq!(
            status(Level::Admin, Setting::StepUpTtl, step_up(5 * MIN)),
            Status::Ok
        );
        assert_eq!(
            status(Level::Admin, Setting::StepUpTtl, step_up(16 * MIN)),
            Status::Exceeds
        );
    }

    #[test]
    fn access_tokens_live_under_ten_minutes() {
        let ttl = |d| Policy {
            access_token_ttl: secs(d),
            ..Policy::default()
        };
        assert_eq!(
            status(Level::Standard, Setting::AccessTokenTtl, ttl(9 * MIN + 59)),
            Status::Ok
        );
        let f = finding(Level::Admin, Setting::AccessTokenTtl, &ttl(10 * MIN));
        assert_eq!((f.status, f.source), (Status::Exceeds, FAPI_ACCESS_TOKEN));
        assert_eq!(f.guidance.to_string(), "< 10m");
    }

    #[test]
    fn refresh_reuse_grace_is_at_most_ten_seconds() {
        let grace = |d| Policy {
            refresh_reuse_grace: secs(d),
            ..Policy::default()
        };
        assert_eq!(
            status(Level::Sensitive, Setting::RefreshReuseGrace, grace(0)),
            Status::Ok
        );
        assert_eq!(
            status(Level::Sensitive, Setting::RefreshReuseGrace, grace(10)),
            Status::Ok
        );
        assert_eq!(
            status(Level::Sensitive, Setting::RefreshReuseGrace, grace(30)),
            Status::Exceeds
        );
    }

    #[test]
    fn renewal_off_or_slow_is_advisory_where_recommended() {
        let renewal = |d| Policy {
            renewal_interval: secs(d),
            ..Policy::default()
        };
        assert_eq!(
            status(Level::Standard, Setting::RenewalInterval, renewal(0)),
            Status::Ok
        );
        assert_eq!(
            status(Level::Sensitive, Setting::RenewalInterval, renewal(HOUR)),
            Status::Ok
        );
        let f = finding(Level::Sensitive, Setting::RenewalInterval, &renewal(0));
        assert_eq!(f.status, Status::Advisory);
        assert_eq!(f.value.to_string(), "off");
        assert_eq!(f.guidance.to_string(), "on, <= 1h");
        assert_eq!(
            status(Level::Admin, Setting::RenewalInterval, renewal(2 * HOUR)),
            Status::Advisory
        );
        assert_eq!(
            status(Level::Admin, Setting::RenewalInterval, renewal(30 * MIN)),
            Status::Ok
        );
    }

    #[test]
    fn long_api_tokens_are_advisory() {
        let ttl = |d: u64| Policy {
            api_token_max_ttl: secs(d * 86_400),
            ..Policy::default()
        };
        assert_eq!(
            status(Level::Standard, Setting::ApiTokenMaxTtl, ttl(90)),
            Status::Ok
        );
        assert_eq!(
            status(Level::Standard, Setting::ApiTokenMaxTtl, ttl(365)),
            Status::Advisory
        );
        assert_eq!(
            status(Level::Admin, Setting::ApiTokenMaxTtl, ttl(30)),
            Status::Ok
        );
        assert_eq!(
            status(Level::Admin, Setting::ApiTokenMaxTtl, ttl(90)),
            Status::Advisory
        );
    }

    #[test]
    fn reports_list_exceeding_and_advisory_findings() {
        let mut profiles = Profiles::default();
        profiles.insert(
            ProfileName::new("admin").unwrap(),
            Policy {
                max_sessions: 0,
                renewal_interval: Duration::ZERO,
                ..builtin("admin")
            },
        );
        profiles.insert(ProfileName::new("aaa").unwrap(), Policy::default());
        let reports = check(&profiles);
        let names: Vec<_> = reports.iter().map(|r| r.profile.as_str()).collect();
        assert_eq!(names, ["standard", "sensitive", "admin", "aaa"]);
        let admin = &reports[2];
        let exceeding: Vec<_> = admin.exceeding().map(|f| f.setting).collect();
        assert_eq!(exceeding, [Setting::MaxSessions]);
        let advisories: Vec<_> = admin.advisories().map(|f| f.setting).collect();
        assert_eq!(advisories, [Setting::RenewalInterval]);
        let mut others = reports.iter().filter(|r| r.profile.as_str() != "admin");
        assert!(others.all(|r| r.exceeding().count() == 0));
    }

    #[test]
    fn durations_print_in_configuration_notation() {
        for (d, want) in [
            (Duration::ZERO, "0s"),
            (secs(5), "5s"),
            (secs(30 * MIN), "30m"),
            (secs(HOUR + 30 * MIN), "1h30m"),
            (secs(12 * HOUR), "12h"),
            (secs(24 * HOUR), "24h"),
            (secs(36 * HOUR), "36h"),
            (secs(2 * 86_400), "2d"),
            (secs(90 * 86_400), "90d"),
            (Duration::from_millis(1500), "1s500ms"),
        ] {
            assert_eq!(Human(d).to_string(), want);
        }
    }
}
