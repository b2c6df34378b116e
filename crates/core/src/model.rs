//! The data model shared by the engine and every store.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use crate::clock::Timestamp;
use crate::reason::Revocation;
use crate::token::{TokenId, VerifierHash};

/// A session's public id: the selector of its token.
pub type SessionId = TokenId;

/// A user's id. For users created through sessionguard it is random; in sidecar
/// mode it is the app's own id. 1 to 128 bytes of UTF-8 without control characters.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(Arc<str>);

/// A string that cannot be a [`UserId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a user id is 1 to 128 bytes without control characters")]
pub struct InvalidUserId;

impl UserId {
    /// Longest accepted id, in bytes.
    pub const MAX_LEN: usize = 128;

    /// Validates and wraps `s`.
    pub fn new(s: &str) -> Result<Self, InvalidUserId> {
        if s.is_empty() || s.len() > Self::MAX_LEN || s.chars().any(char::is_control) {
            return Err(InvalidUserId);
        }
        Ok(UserId(Arc::from(s)))
    }

    /// A fresh random id (`u_` and 22 base64url characters).
    pub fn random() -> Self {
        UserId(Arc::from(format!("u_{}", TokenId::random())))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserId({:?})", &*self.0)
    }
}

/// What the client told us about itself at login, for the user's list of sessions.
/// Bounded: the user agent is cut to [`ClientInfo::MAX_USER_AGENT`] bytes and
/// stripped of control characters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    user_agent: Option<Box<str>>,
    ip: Option<IpAddr>,
}

impl ClientInfo {
    /// Longest user agent kept, in bytes.
    pub const MAX_USER_AGENT: usize = 256;

    /// Builds client metadata, sanitising the user agent.
    pub fn new(user_agent: Option<&str>, ip: Option<IpAddr>) -> Self {
        let user_agent = user_agent.map(|ua| {
            let mut out = String::with_capacity(ua.len().min(Self::MAX_USER_AGENT));
            for c in ua.chars().filter(|c| !c.is_control()) {
                if out.len() + c.len_utf8() > Self::MAX_USER_AGENT {
                    break;
                }
                out.push(c);
            }
            out.into_boxed_str()
        });
        ClientInfo { user_agent, ip }
    }

    /// The user agent, if any.
    pub fn user_agent(&self) -> Option<&str> {
        self.user_agent.as_deref()
    }

    /// The client's IP address, if known.
    pub fn ip(&self) -> Option<IpAddr> {
        self.ip
    }
}

/// The state of a session that validation needs. Stores persist every field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionState {
    /// Public id (token selector).
    pub id: SessionId,
    /// Hash of the token's secret verifier.
    pub verifier_hash: VerifierHash,
    /// Owner.
    pub user_id: UserId,
    /// The user's credential epoch when the session was created (or last kept
    /// through a revoke-all). Older than the user's current epoch means revoked.
    pub epoch: u64,
    /// Login time.
    pub created_at: Timestamp,
    /// Last recorded activity (coalesced: see [`crate::Policy::touch_interval`]).
    pub last_seen_at: Timestamp,
    /// The session ends with `idle_timeout` at this instant unless touched before.
    /// Never later than `absolute_deadline`.
    pub idle_deadline: Timestamp,
    /// The session ends with `absolute_timeout` at this instant, whatever happens.
    pub absolute_deadline: Timestamp,
    /// Set once when the session is revoked; never cleared.
    pub revoked: Option<Revocation>,
}

/// A session with its client metadata, as stored and as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Everything validation needs.
    pub state: SessionState,
    /// Where the session came from.
    pub client: ClientInfo,
}

/// A user's credential epoch: bumping it ends every session created before.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserEpoch {
    /// Current epoch; starts at 0.
    pub epoch: u64,
    /// The most recent bump: why and when. `None` while `epoch` is 0.
    pub last_bump: Option<Revocation>,
}

/// An argon2id hash in PHC string form. Not a secret in itself, but never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// Wraps a PHC string read back from a store.
    pub fn from_phc(s: String) -> Self {
        PasswordHash(s)
    }

    /// The PHC string, for stores.
    pub fn as_phc(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(..)")
    }
}

/// A user known to sessionguard (created through the admin API), with credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Id.
    pub id: UserId,
    /// Unique login name.
    pub username: String,
    /// argon2id hash of the password.
    pub password_hash: PasswordHash,
    /// Credential epoch at the time of reading. A session created after verifying
    /// this record's password carries this epoch, so a concurrent password change
    /// cannot leave it alive.
    pub epoch: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_id_bounds() {
        assert!(UserId::new("alice").is_ok());
        assert!(UserId::new(&"a".repeat(128)).is_ok());
        assert!(UserId::new("").is_err());
        assert!(UserId::new(&"a".repeat(129)).is_err());
        assert!(UserId::new("a\nb").is_err());
        assert!(UserId::random().as_str().starts_with("u_"));
    }

    #[test]
    fn client_info_is_bounded_and_sanitised() {
        let c = ClientInfo::new(Some("Mozilla\r\n/5.0"), None);
        assert_eq!(c.user_agent(), Some("Mozilla/5.0"));
        let long = "é".repeat(300);
        let c = ClientInfo::new(Some(&long), None);
        assert!(c.user_agent().unwrap().len() <= ClientInfo::MAX_USER_AGENT);
        assert!(c.user_agent().unwrap().chars().all(|ch| ch == 'é'));
    }

    #[test]
    fn password_hash_debug_is_opaque() {
        let h = PasswordHash::from_phc("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into());
        assert_eq!(format!("{h:?}"), "PasswordHash(..)");
    }
}
