//! Session policy: how long a session may live, how many a user may hold, and
//! when its token is replaced.

use std::time::Duration;

/// The rules every session is held to. Both timeouts are always on.
///
/// ```
/// use std::time::Duration;
/// use sessionguard_core::Policy;
///
/// let p = Policy::default();
/// assert_eq!(p.idle_timeout, Duration::from_secs(30 * 60));
/// assert_eq!(p.max_sessions, 10);
/// assert_eq!(p.absolute_timeout, Duration::from_secs(12 * 3600));
/// p.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Policy {
    /// A session with no activity for this long ends with `idle_timeout`.
    /// Default 30 minutes (OWASP: 15–30 minutes for most applications).
    pub idle_timeout: Duration,
    /// A session ends with `absolute_timeout` this long after login, whatever its
    /// activity. Default 12 hours (NIST SP 800-63B, AAL2).
    pub absolute_timeout: Duration,
    /// How long an ended session's record (its tombstone) is kept after the last
    /// moment its token could have been valid, so that a returning client is told
    /// why it was signed out. Default 1 hour.
    pub tombstone_retention: Duration,
    /// Lifetime of a JWT access token. Default 5 minutes.
    pub access_token_ttl: Duration,
    /// A rotated refresh token presented again within this window returns the same
    /// successor (a client retrying after a network error, several tabs) instead of
    /// revoking the session. Default 5 seconds; zero disables it.
    pub refresh_reuse_grace: Duration,
    /// Longest lifetime of a personal API token. Default 90 days.
    pub api_token_max_ttl: Duration,
    /// Whether a password change (and an admin revoke-all with `password_changed`)
    /// also ends the user's API tokens. Default `true`.
    pub revoke_api_tokens_on_password_change: bool,
    /// Most live sessions a user may hold at once; 0 means no limit (an explicit
    /// choice, which `policy check` flags). Default 10: generous for one person's
    /// devices, and never unlimited out of the box.
    pub max_sessions: u32,
    /// What a login does when the user already holds `max_sessions` live sessions.
    pub on_limit: OnLimit,
    /// How long a re-authentication (step-up) counts, and how long after login a
    /// session counts as freshly authenticated. Sensitive actions (password change,
    /// API-token creation) need a session within this window. Default 5 minutes.
    pub step_up_ttl: Duration,
    /// A session's token is replaced when it is older than this, on the next
    /// request that can carry the new one (OWASP "renewal timeout"); zero turns
    /// renewal off. Default zero.
    pub renewal_interval: Duration,
    /// After a renewal, how long the replaced token keeps working so that requests
    /// already in flight do not fail. Default 30 seconds.
    pub renewal_overlap: Duration,
}

/// What a login does at the concurrent-session limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnLimit {
    /// The login succeeds and the least recently used session ends with reason
    /// `displaced` (its holder is told when and from which client).
    #[default]
    EvictOldest,
    /// The login fails with `session_limit_reached`; the user can sign out
    /// another session first.
    RejectNew,
}

impl OnLimit {
    /// The configuration value: `evict_oldest` or `reject_new`.
    pub const fn as_str(self) -> &'static str {
        match self {
            OnLimit::EvictOldest => "evict_oldest",
            OnLimit::RejectNew => "reject_new",
        }
    }

    /// Parses a configuration value.
    pub fn parse(s: &str) -> Option<OnLimit> {
        [OnLimit::EvictOldest, OnLimit::RejectNew]
            .into_iter()
            .find(|o| o.as_str() == s)
    }
}

/// The concurrent-session limit a store enforces when it inserts a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimit {
    /// Most live sessions; 0 means no limit.
    pub max: u32,
    /// What to do at the limit.
    pub on_limit: OnLimit,
}

impl SessionLimit {
    /// No limit.
    pub const NONE: SessionLimit = SessionLimit {
        max: 0,
        on_limit: OnLimit::EvictOldest,
    };
}

/// The longest timeout accepted (about ten years): bounds deadline arithmetic.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(10 * 366 * 86_400);

/// The shortest timeout accepted: timeouts cannot be turned off.
const MIN_TIMEOUT: Duration = Duration::from_secs(1);

/// The built-in `standard` profile's concurrent-session limit.
pub const DEFAULT_MAX_SESSIONS: u32 = 10;

/// The highest finite `max_sessions`.
pub const MAX_SESSIONS: u32 = 10_000;

/// The coarsest granularity at which idle touches are written to a store.
const MAX_TOUCH_INTERVAL: Duration = Duration::from_secs(60);

impl Default for Policy {
    fn default() -> Self {
        Policy {
            idle_timeout: Duration::from_secs(30 * 60),
            absolute_timeout: Duration::from_secs(12 * 3600),
            tombstone_retention: Duration::from_secs(3600),
            access_token_ttl: Duration::from_secs(5 * 60),
            refresh_reuse_grace: Duration::from_secs(5),
            api_token_max_ttl: Duration::from_secs(90 * 86_400),
            revoke_api_tokens_on_password_change: true,
            max_sessions: DEFAULT_MAX_SESSIONS,
            on_limit: OnLimit::EvictOldest,
            step_up_ttl: Duration::from_secs(5 * 60),
            renewal_interval: Duration::ZERO,
            renewal_overlap: Duration::from_secs(30),
        }
    }
}

/// A policy setting that cannot be used. Names the offending key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy.{key}: {problem}")]
pub struct PolicyError {
    /// The configuration key, e.g. `idle_timeout`.
    pub key: &'static str,
    /// What is wrong with it.
    pub problem: &'static str,
}

impl Policy {
    /// Checks that every timeout is usable: non-zero (timeouts cannot be turned
    /// off), at least one second, at most [`MAX_TIMEOUT`], and the idle timeout no
    /// longer than the absolute one.
    pub fn validate(&self) -> Result<(), PolicyError> {
        for (key, d) in [
            ("idle_timeout", self.idle_timeout),
            ("absolute_timeout", self.absolute_timeout),
        ] {
            if d < Duration::from_secs(1) {
                return Err(PolicyError {
                    key,
                    problem: "must be at least 1s (timeouts cannot be disabled)",
                });
            }
            if d > MAX_TIMEOUT {
                return Err(PolicyError {
                    key,
                    problem: "must be at most 10 years",
                });
            }
        }
        if self.idle_timeout > self.absolute_timeout {
            return Err(PolicyError {
                key: "idle_timeout",
                problem: "must not be longer than absolute_timeout",
            });
        }
        if self.access_token_ttl < Duration::from_secs(1) {
            return Err(PolicyError {
                key: "access_token_ttl",
                problem: "must be at least 1s",
            });
        }
        if self.access_token_ttl > Duration::from_secs(24 * 3600) {
            return Err(PolicyError {
                key: "access_token_ttl",
                problem: "must be at most 24h (access tokens are short-lived by design)",
            });
        }
        if self.refresh_reuse_grace > Duration::from_secs(60) {
            return Err(PolicyError {
                key: "refresh_reuse_grace",
                problem: "must be at most 60s",
            });
        }
        if self.api_token_max_ttl < Duration::from_secs(60) || self.api_token_max_ttl > MAX_TIMEOUT
        {
            return Err(PolicyError {
                key: "api_token_max_ttl",
                problem: "must be between 1m and 10 years",
            });
        }
        if self.tombstone_retention > MAX_TIMEOUT {
            return Err(PolicyError {
                key: "tombstone_retention",
                problem: "must be at most 10 years",
            });
        }
        if self.step_up_ttl < Duration::from_secs(1) || self.step_up_ttl > self.absolute_timeout {
            return Err(PolicyError {
                key: "step_up_ttl",
                problem: "must be at least 1s and at most absolute_timeout",
            });
        }
        if !self.renewal_interval.is_zero() && self.renewal_interval < Duration::from_secs(60) {
            return Err(PolicyError {
                key: "renewal_interval",
                problem: "must be 0s (off) or at least 1m",
            });
        }
        if self.renewal_interval > MAX_TIMEOUT {
            return Err(PolicyError {
                key: "renewal_interval",
                problem: "must be at most 10 years",
            });
        }
        if self.renewal_overlap > Duration::from_secs(5 * 60) {
            return Err(PolicyError {
                key: "renewal_overlap",
                problem: "must be at most 5m",
            });
        }
        if self.max_sessions > MAX_SESSIONS {
            return Err(PolicyError {
                key: "max_sessions",
                problem: "must be at most 10000 (0 means unlimited)",
            });
        }
        Ok(())
    }

    /// Moves the values a configuration did not set so that they fit the ones it
    /// did: a default never contradicts an explicit value. `is_set` says whether a
    /// field (by its key, e.g. `"absolute_timeout"`) was given explicitly.
    ///
    /// An unset `absolute_timeout` grows to the explicit `idle_timeout` and
    /// `step_up_ttl`; then an unset `idle_timeout` or `step_up_ttl` shrinks to the
    /// absolute timeout (never below one second). Explicit values are never changed, so two explicit values
    /// that contradict each other are still refused by [`Policy::validate`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use sessionguard_core::Policy;
    ///
    /// let mut p = Policy::default();
    /// p.absolute_timeout = Duration::from_secs(6);
    /// p.fit_unset(|key| key == "absolute_timeout");
    /// assert_eq!(p.idle_timeout, Duration::from_secs(6));
    /// assert_eq!(p.step_up_ttl, Duration::from_secs(6));
    /// p.validate().unwrap();
    /// ```
    pub fn fit_unset(&mut self, is_set: impl Fn(&str) -> bool) {
        if !is_set("absolute_timeout") {
            for (key, explicit) in [
                ("idle_timeout", self.idle_timeout),
                ("step_up_ttl", self.step_up_ttl),
            ] {
                if is_set(key) && explicit > self.absolute_timeout {
                    self.absolute_timeout = explicit;
                }
            }
        }
        // Never below the shortest usable value: an unusable absolute timeout is
        // reported as itself, not through a value derived from it.
        let fit = |d: Duration| d.min(self.absolute_timeout).max(MIN_TIMEOUT);
        if !is_set("idle_timeout") {
            self.idle_timeout = fit(self.idle_timeout);
        }
        if !is_set("step_up_ttl") {
            self.step_up_ttl = fit(self.step_up_ttl);
        }
    }

    /// The concurrent-session limit of this policy.
    pub fn session_limit(&self) -> SessionLimit {
        SessionLimit {
            max: self.max_sessions,
            on_limit: self.on_limit,
        }
    }

    /// How stale a session's stored last-seen time may be before a check writes a
    /// new one: a twentieth of the idle timeout, at most a minute.
    ///
    /// Skipping a write only leaves the stored idle deadline *earlier* than the
    /// ideal one, so coalescing can end a session slightly early, never late.
    pub fn touch_interval(&self) -> Duration {
        (self.idle_timeout / 20).min(MAX_TOUCH_INTERVAL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Policy::default().validate().unwrap();
    }

    #[test]
    fn zero_timeouts_are_rejected_naming_the_key() {
        let p = Policy {
            idle_timeout: Duration::ZERO,
            ..Policy::default()
        };
        assert_eq!(p.validate().unwrap_err().key, "idle_timeout");
        let p = Policy {
            absolute_timeout: Duration::ZERO,
            idle_timeout: Duration::ZERO,
            ..Policy::default()
        };
        assert_eq!(p.validate().unwrap_err().key, "idle_timeout");
        let p = Policy {
            absolute_timeout: Duration::from_millis(10),
            ..Policy::default()
        };
        assert_eq!(p.validate().unwrap_err().key, "absolute_timeout");
    }

    #[test]
    fn idle_longer_than_absolute_is_rejected() {
        let p = Policy {
            idle_timeout: Duration::from_secs(7200),
            absolute_timeout: Duration::from_secs(3600),
            ..Policy::default()
        };
        assert!(
            p.validate()
                .unwrap_err()
                .to_string()
                .contains("idle_timeout")
        );
    }

    #[test]
    fn token_settings_are_bounded() {
        let bad = [
            Policy {
                access_token_ttl: Duration::ZERO,
                ..Policy::default()
            },
            Policy {
                access_token_ttl: Duration::from_secs(2 * 86_400),
                ..Policy::default()
            },
            Policy {
                refresh_reuse_grace: Duration::from_secs(120),
                ..Policy::default()
            },
            Policy {
                api_token_max_ttl: Duration::from_secs(1),
                ..Policy::default()
            },
        ];
        let keys: Vec<_> = bad.iter().map(|p| p.validate().unwrap_err().key).collect();
        assert_eq!(
            keys,
            [
                "access_token_ttl",
                "access_token_ttl",
                "refresh_reuse_grace",
                "api_token_max_ttl"
            ]
        );
        let zero_grace = Policy {
            refresh_reuse_grace: Duration::ZERO,
            ..Policy::default()
        };
        zero_grace.validate().unwrap();
    }

    #[test]
    fn limit_step_up_and_renewal_settings_are_bounded() {
        let bad = [
            Policy {
                step_up_ttl: Duration::ZERO,
                ..Policy::default()
            },
            Policy {
                step_up_ttl: Duration::from_secs(13 * 3600),
                ..Policy::default()
            },
            Policy {
                renewal_interval: Duration::from_secs(10),
                ..Policy::default()
            },
            Policy {
                renewal_overlap: Duration::from_secs(600),
                ..Policy::default()
            },
            Policy {
                max_sessions: MAX_SESSIONS + 1,
                ..Policy::default()
            },
        ];
        let keys: Vec<_> = bad.iter().map(|p| p.validate().unwrap_err().key).collect();
        assert_eq!(
            keys,
            [
                "step_up_ttl",
                "step_up_ttl",
                "renewal_interval",
                "renewal_overlap",
                "max_sessions"
            ]
        );
        let good = Policy {
            max_sessions: 1,
            on_limit: OnLimit::RejectNew,
            renewal_interval: Duration::from_secs(60),
            renewal_overlap: Duration::ZERO,
            ..Policy::default()
        };
        good.validate().unwrap();
        assert_eq!(
            good.session_limit(),
            SessionLimit {
                max: 1,
                on_limit: OnLimit::RejectNew
            }
        );
        assert_eq!(OnLimit::parse("reject_new"), Some(OnLimit::RejectNew));
        assert_eq!(OnLimit::parse("evict_oldest"), Some(OnLimit::EvictOldest));
        assert_eq!(OnLimit::parse("random"), None);
    }

    #[test]
    fn unset_values_fit_the_explicit_ones_and_explicit_ones_never_move() {
        let secs = Duration::from_secs;
        // A short absolute timeout pulls the unset idle timeout and step-up with it.
        let mut p = Policy {
            absolute_timeout: secs(6),
            ..Policy::default()
        };
        p.fit_unset(|k| k == "absolute_timeout");
        assert_eq!((p.idle_timeout, p.step_up_ttl), (secs(6), secs(6)));
        p.validate().unwrap();
        // A long explicit idle timeout or step-up pushes the unset absolute one.
        let mut p = Policy {
            idle_timeout: secs(13 * 3600),
            ..Policy::default()
        };
        p.fit_unset(|k| k == "idle_timeout");
        assert_eq!(p.absolute_timeout, secs(13 * 3600));
        p.validate().unwrap();
        // Values that already fit stay as they are.
        let mut p = Policy::default();
        p.fit_unset(|_| false);
        assert_eq!(p, Policy::default());
        // Two explicit values that contradict each other are left to be refused.
        let mut p = Policy {
            idle_timeout: secs(3600),
            absolute_timeout: secs(1800),
            step_up_ttl: secs(3600),
            ..Policy::default()
        };
        p.fit_unset(|_| true);
        assert_eq!(
            (p.idle_timeout, p.absolute_timeout, p.step_up_ttl),
            (secs(3600), secs(1800), secs(3600))
        );
        assert_eq!(p.validate().unwrap_err().key, "idle_timeout");
        let mut p = Policy {
            absolute_timeout: secs(60),
            step_up_ttl: secs(120),
            ..Policy::default()
        };
        p.fit_unset(|k| k == "absolute_timeout" || k == "step_up_ttl");
        assert_eq!(p.idle_timeout, secs(60));
        assert_eq!(p.validate().unwrap_err().key, "step_up_ttl");
    }

    #[test]
    fn touch_interval_is_a_small_fraction_of_idle() {
        assert_eq!(Policy::default().touch_interval(), Duration::from_secs(60));
        let p = Policy {
            idle_timeout: Duration::from_secs(60),
            ..Policy::default()
        };
        assert_eq!(p.touch_interval(), Duration::from_secs(3));
    }
}
