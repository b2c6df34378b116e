//! Reason codes: why a session ended (invariant 3).

use std::fmt;

use crate::clock::Timestamp;

/// Why a session or token is not (or no longer) valid. The snake_case code from
/// [`Reason::code`] is part of the public API: it appears in problem documents as
/// `code`, in the audit log and in metrics, and never changes meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// The holder logged out.
    LoggedOut,
    /// The user's password changed; every older session ended.
    PasswordChanged,
    /// The user chose "sign out everywhere".
    SignedOutEverywhere,
    /// The user ended this session from their list of sessions.
    RevokedByUser,
    /// An administrator (or the app, in sidecar mode) ended it.
    RevokedByAdmin,
    /// A newer session displaced it under a concurrent-session limit.
    Displaced,
    /// A rotated refresh token was used again.
    RefreshReuseDetected,
    /// The session's privileges changed and its token was replaced.
    PrivilegeChanged,
    /// The same client logged in again; the session it presented was replaced.
    Superseded,
    /// No activity for longer than the idle timeout.
    IdleTimeout,
    /// Older than the absolute timeout.
    AbsoluteTimeout,
    /// Unknown, malformed, foreign or forged token.
    InvalidToken,
    /// The session's token was replaced by periodic renewal; the session lives on
    /// under its new token.
    Renewed,
}

impl Reason {
    /// Every reason, in storage-tag order.
    pub const ALL: [Reason; 13] = [
        Reason::LoggedOut,
        Reason::PasswordChanged,
        Reason::SignedOutEverywhere,
        Reason::RevokedByUser,
        Reason::RevokedByAdmin,
        Reason::Displaced,
        Reason::RefreshReuseDetected,
        Reason::PrivilegeChanged,
        Reason::Superseded,
        Reason::IdleTimeout,
        Reason::AbsoluteTimeout,
        Reason::InvalidToken,
        Reason::Renewed,
    ];

    /// The stable snake_case code.
    pub const fn code(self) -> &'static str {
        match self {
            Reason::LoggedOut => "logged_out",
            Reason::PasswordChanged => "password_changed",
            Reason::SignedOutEverywhere => "signed_out_everywhere",
            Reason::RevokedByUser => "revoked_by_user",
            Reason::RevokedByAdmin => "revoked_by_admin",
            Reason::Displaced => "displaced",
            Reason::RefreshReuseDetected => "refresh_reuse_detected",
            Reason::PrivilegeChanged => "privilege_changed",
            Reason::Superseded => "superseded",
            Reason::IdleTimeout => "idle_timeout",
            Reason::AbsoluteTimeout => "absolute_timeout",
            Reason::InvalidToken => "invalid_token",
            Reason::Renewed => "renewed",
        }
    }

    /// Parses a code produced by [`Reason::code`].
    pub fn from_code(code: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.code() == code)
    }

    /// A one-byte tag for compact storage; stable across versions.
    pub const fn tag(self) -> u8 {
        self as u8
    }

    /// The reason for a storage tag.
    pub fn from_tag(tag: u8) -> Option<Reason> {
        Reason::ALL.get(usize::from(tag)).copied()
    }

    /// A short sentence for humans, safe to show to the session's holder.
    pub const fn describe(self) -> &'static str {
        match self {
            Reason::LoggedOut => "The session was ended by logging out.",
            Reason::PasswordChanged => "The session was ended because the password was changed.",
            Reason::SignedOutEverywhere => "The session was ended by signing out everywhere.",
            Reason::RevokedByUser => "The session was ended from the account's session list.",
            Reason::RevokedByAdmin => "The session was ended by an administrator.",
            Reason::Displaced => "The session was ended because a newer sign-in displaced it.",
            Reason::RefreshReuseDetected => {
                "The session was ended because a used refresh token was presented again."
            }
            Reason::PrivilegeChanged => {
                "The session's token was replaced after a privilege change."
            }
            Reason::Superseded => "The session was replaced by a new sign-in from the same client.",
            Reason::IdleTimeout => "The session expired after a period of inactivity.",
            Reason::AbsoluteTimeout => "The session reached its maximum lifetime.",
            Reason::InvalidToken => "The credentials are missing, malformed or unknown.",
            Reason::Renewed => "The session's token was replaced by a newer one.",
        }
    }

    /// Whether a revocation may be stored with this reason. Timeouts and
    /// `invalid_token` are derived at check time, never stored.
    pub const fn is_revocation(self) -> bool {
        !matches!(
            self,
            Reason::IdleTimeout | Reason::AbsoluteTimeout | Reason::InvalidToken
        )
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A recorded end: why and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revocation {
    /// Why.
    pub reason: Reason,
    /// When.
    pub at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_tags_round_trip() {
        for (i, r) in Reason::ALL.into_iter().enumerate() {
            assert_eq!(usize::from(r.tag()), i);
            assert_eq!(Reason::from_tag(r.tag()), Some(r));
            assert_eq!(Reason::from_code(r.code()), Some(r));
        }
        assert_eq!(Reason::from_code("nope"), None);
        assert_eq!(Reason::from_tag(200), None);
    }

    #[test]
    fn derived_reasons_are_not_revocations() {
        assert!(Reason::LoggedOut.is_revocation());
        assert!(!Reason::IdleTimeout.is_revocation());
        assert!(!Reason::InvalidToken.is_revocation());
    }
}
