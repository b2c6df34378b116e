//! Session policy: how long a session may live.

use std::time::Duration;

/// The rules every session is held to. Both timeouts are always on.
///
/// ```
/// use std::time::Duration;
/// use sessionguard_core::Policy;
///
/// let p = Policy::default();
/// assert_eq!(p.idle_timeout, Duration::from_secs(30 * 60));
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
}

/// The longest timeout accepted (about ten years): bounds deadline arithmetic.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(10 * 366 * 86_400);

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
        Ok(())
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
    fn touch_interval_is_a_small_fraction_of_idle() {
        assert_eq!(Policy::default().touch_interval(), Duration::from_secs(60));
        let p = Policy {
            idle_timeout: Duration::from_secs(60),
            ..Policy::default()
        };
        assert_eq!(p.touch_interval(), Duration::from_secs(3));
    }
}
