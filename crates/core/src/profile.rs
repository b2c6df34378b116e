//! Named policy profiles: the rules a session is held to depend on whose it is.
//!
//! Three profiles are built in, with defaults taken from NIST SP 800-63B and the
//! OWASP Session Management Cheat Sheet:
//!
//! | profile     | idle | absolute | max sessions        | step-up | renewal |
//! |-------------|------|----------|---------------------|---------|---------|
//! | `standard`  | 30m  | 12h      | 10, evict oldest    | 5m      | off     |
//! | `sensitive` | 15m  | 12h      | 3, evict oldest     | 5m      | 1h      |
//! | `admin`     | 10m  | 8h       | 1, evict oldest     | 5m      | 30m     |
//!
//! A deployment picks a default profile and may override any field of any profile,
//! or define its own; a user can be assigned a profile (administrators get
//! `admin`). A session follows its user's profile.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::policy::{OnLimit, Policy, PolicyError};

/// A profile's name: 1 to 32 characters of `a-z`, `0-9`, `_` and `-`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProfileName(Arc<str>);

/// A string that cannot be a [`ProfileName`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a profile name is 1 to 32 characters of a-z, 0-9, '_' and '-'")]
pub struct InvalidProfileName;

impl ProfileName {
    /// Longest accepted name.
    pub const MAX_LEN: usize = 32;

    /// Validates and wraps `s`.
    pub fn new(s: &str) -> Result<Self, InvalidProfileName> {
        let ok = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if ok {
            Ok(ProfileName(Arc::from(s)))
        } else {
            Err(InvalidProfileName)
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProfileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ProfileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProfileName({:?})", &*self.0)
    }
}

/// The names of the built-in profiles.
pub const BUILT_IN: [&str; 3] = ["standard", "sensitive", "admin"];

/// The built-in profile `name`, if there is one.
pub fn built_in(name: &str) -> Option<Policy> {
    let standard = Policy::default();
    match name {
        "standard" => Some(standard),
        "sensitive" => Some(Policy {
            idle_timeout: Duration::from_secs(15 * 60),
            absolute_timeout: Duration::from_secs(12 * 3600),
            max_sessions: 3,
            on_limit: OnLimit::EvictOldest,
            step_up_ttl: Duration::from_secs(5 * 60),
            renewal_interval: Duration::from_secs(3600),
            ..standard
        }),
        "admin" => Some(Policy {
            idle_timeout: Duration::from_secs(10 * 60),
            absolute_timeout: Duration::from_secs(8 * 3600),
            max_sessions: 1,
            on_limit: OnLimit::EvictOldest,
            step_up_ttl: Duration::from_secs(5 * 60),
            renewal_interval: Duration::from_secs(30 * 60),
            api_token_max_ttl: Duration::from_secs(30 * 86_400),
            ..standard
        }),
        _ => None,
    }
}

/// A profile that cannot be used: names the profile and the offending key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    /// A field of a profile is out of bounds.
    #[error("profile {profile}: {source}")]
    Policy {
        /// The profile.
        profile: String,
        /// What is wrong.
        #[source]
        source: PolicyError,
    },
    /// The default profile is not defined.
    #[error("the default profile {0:?} is not defined")]
    UnknownDefault(String),
}

/// The profiles of a deployment and which one is the default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profiles {
    default: ProfileName,
    profiles: BTreeMap<ProfileName, Policy>,
}

impl Default for Profiles {
    /// The built-in profiles, `standard` by default.
    fn default() -> Self {
        let profiles = BUILT_IN
            .into_iter()
            .map(|n| {
                let policy = built_in(n).expect("listed as built in");
                (
                    ProfileName::new(n).expect("built-in names are valid"),
                    policy,
                )
            })
            .collect();
        Profiles {
            default: ProfileName::new("standard").expect("valid"),
            profiles,
        }
    }
}

impl Profiles {
    /// The built-in profiles with `standard` replaced by `policy`: what an engine
    /// built from a single policy uses.
    pub fn with_standard(policy: Policy) -> Self {
        let mut p = Profiles::default();
        p.insert(ProfileName::new("standard").expect("valid"), policy);
        p
    }

    /// Defines or replaces a profile.
    pub fn insert(&mut self, name: ProfileName, policy: Policy) {
        self.profiles.insert(name, policy);
    }

    /// Makes `name` the default profile (it must be defined by the time
    /// [`Profiles::validate`] runs).
    pub fn set_default(&mut self, name: ProfileName) {
        self.default = name;
    }

    /// Checks every profile and that the default exists.
    pub fn validate(&self) -> Result<(), ProfileError> {
        if !self.profiles.contains_key(&self.default) {
            return Err(ProfileError::UnknownDefault(self.default.to_string()));
        }
        for (name, policy) in &self.profiles {
            policy.validate().map_err(|source| ProfileError::Policy {
                profile: name.to_string(),
                source,
            })?;
        }
        Ok(())
    }

    /// The default profile's name.
    pub fn default_name(&self) -> &ProfileName {
        &self.default
    }

    /// The default profile.
    pub fn default_policy(&self) -> &Policy {
        self.profiles
            .get(&self.default)
            .expect("validated: the default profile is defined")
    }

    /// The profile `name`, if defined.
    pub fn get(&self, name: &str) -> Option<(&ProfileName, &Policy)> {
        let key = ProfileName::new(name).ok()?;
        self.profiles.get_key_value(&key)
    }

    /// The policy for a session or user of profile `name`: that profile, or the
    /// default one for `None` and for a name no longer defined.
    pub fn resolve(&self, name: Option<&ProfileName>) -> &Policy {
        name.and_then(|n| self.profiles.get(n))
            .unwrap_or_else(|| self.default_policy())
    }

    /// Every profile, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&ProfileName, &Policy)> {
        self.profiles.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_profiles_are_valid_and_as_documented() {
        let p = Profiles::default();
        p.validate().unwrap();
        assert_eq!(p.default_name().as_str(), "standard");
        let (_, sensitive) = p.get("sensitive").unwrap();
        assert_eq!(sensitive.idle_timeout, Duration::from_secs(900));
        assert_eq!(sensitive.max_sessions, 3);
        let (_, admin) = p.get("admin").unwrap();
        assert_eq!(admin.idle_timeout, Duration::from_secs(600));
        assert_eq!(admin.absolute_timeout, Duration::from_secs(8 * 3600));
        assert_eq!(admin.max_sessions, 1);
        assert_eq!(admin.on_limit, OnLimit::EvictOldest);
        assert_eq!(admin.step_up_ttl, Duration::from_secs(300));
    }

    #[test]
    fn names_are_checked() {
        assert!(ProfileName::new("admin").is_ok());
        assert!(ProfileName::new("tier-2_x").is_ok());
        assert!(ProfileName::new("").is_err());
        assert!(ProfileName::new("Admin").is_err());
        assert!(ProfileName::new(&"a".repeat(33)).is_err());
        assert!(ProfileName::new("a b").is_err());
    }

    #[test]
    fn unknown_or_missing_names_resolve_to_the_default() {
        let mut p = Profiles::default();
        p.set_default(ProfileName::new("sensitive").unwrap());
        p.validate().unwrap();
        let sensitive = built_in("sensitive").unwrap();
        assert_eq!(p.resolve(None), &sensitive);
        assert_eq!(
            p.resolve(Some(&ProfileName::new("gone").unwrap())),
            &sensitive
        );
        let admin = ProfileName::new("admin").unwrap();
        assert_eq!(p.resolve(Some(&admin)).max_sessions, 1);
    }

    #[test]
    fn a_missing_default_or_a_bad_field_is_refused_naming_the_profile() {
        let mut p = Profiles::default();
        p.set_default(ProfileName::new("nope").unwrap());
        assert_eq!(
            p.validate().unwrap_err(),
            ProfileError::UnknownDefault("nope".into())
        );
        let mut p = Profiles::default();
        p.insert(
            ProfileName::new("broken").unwrap(),
            Policy {
                idle_timeout: Duration::ZERO,
                ..Policy::default()
            },
        );
        let e = p.validate().unwrap_err().to_string();
        assert!(e.contains("broken") && e.contains("idle_timeout"), "{e}");
    }
}
