//! The data model shared by the engine and every store.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use crate::clock::Timestamp;
use crate::profile::ProfileName;
use crate::reason::{Reason, Revocation};
use crate::token::{Shard, TokenId, VerifierHash};

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

    /// The shard of this user's records: the first two bytes of a SHA-256 of the
    /// id. Every token the engine mints for the user has its id in it.
    pub fn shard(&self) -> Shard {
        use sha2::{Digest, Sha256};
        let h = Sha256::new()
            .chain_update(b"sessionguard/shard/v1\0")
            .chain_update(self.0.as_bytes())
            .finalize();
        Shard(u16::from_be_bytes([h[0], h[1]]))
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

/// The OAuth client a grant was made for (RFC 6749 `client_id`): what a refresh
/// token is bound to and what its access tokens name in `client_id` (RFC 9068).
/// 1 to [`ClientId::MAX_LEN`] bytes of visible ASCII and spaces (RFC 6749 §A.1).
///
/// A client id is what a public client says it is, not a credential: binding a
/// refresh token to it keeps a token taken from one client from working in
/// another that names itself differently, and makes such attempts visible.
///
/// Grants made without a `client_id` — the first-party login of the password
/// grant, and the tokens derived from a session — are made for
/// [`ClientId::first_party`], `"first-party"`; sending that value explicitly is
/// the same as sending none.
///
/// ```
/// use sessionguard_core::ClientId;
///
/// let app = ClientId::new("mobile-app 2.1").unwrap();
/// assert_eq!(app.as_str(), "mobile-app 2.1");
/// assert!(ClientId::new("").is_err());
/// assert!(ClientId::new("tab\there").is_err());
/// assert_eq!(ClientId::first_party().as_str(), "first-party");
/// assert_eq!(ClientId::new_or_first_party(None).unwrap(), ClientId::first_party());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ClientId(Arc<str>);

/// A string that cannot be a [`ClientId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a client_id is 1 to 255 visible ASCII characters or spaces")]
pub struct InvalidClientId;

impl ClientId {
    /// Longest accepted id, in bytes.
    pub const MAX_LEN: usize = 255;

    /// The client of grants made without a `client_id`.
    pub const FIRST_PARTY: &'static str = "first-party";

    /// Validates and wraps `s`.
    pub fn new(s: &str) -> Result<Self, InvalidClientId> {
        let ok =
            (1..=Self::MAX_LEN).contains(&s.len()) && s.bytes().all(|b| (0x20..=0x7e).contains(&b));
        if ok {
            Ok(ClientId(Arc::from(s)))
        } else {
            Err(InvalidClientId)
        }
    }

    /// The client of a request: the given `client_id`, or
    /// [`ClientId::first_party`] when there is none.
    pub fn new_or_first_party(s: Option<&str>) -> Result<Self, InvalidClientId> {
        s.map_or_else(|| Ok(Self::first_party()), Self::new)
    }

    /// The client of first-party logins (`"first-party"`).
    pub fn first_party() -> Self {
        ClientId(Arc::from(Self::FIRST_PARTY))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientId({:?})", &*self.0)
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
    /// The profile whose rules the session follows; `None` for the default one.
    pub profile: Option<ProfileName>,
    /// The user's [`UserEpoch::privileges`] when the current token was issued.
    pub privileges: u64,
    /// When the current token was issued: at login, then at each rotation.
    pub token_issued_at: Timestamp,
    /// Until when a re-authentication (step-up) counts, if there was one.
    pub elevated_until: Option<Timestamp>,
    /// The token replaced by the last rotation, so that it keeps working through a
    /// short overlap and is then refused with the reason it was replaced.
    pub previous: Option<ReplacedToken>,
    /// For a session ended with `displaced`: the client whose login displaced it.
    pub displaced_by: Option<Box<ClientInfo>>,
    /// The verifier hash the session's anti-CSRF token derives from, once its
    /// token has been rotated (the first token's; `None`: the current one), so the
    /// anti-CSRF token stays the same for the session's life.
    pub csrf_basis: Option<VerifierHash>,
}

/// A session token replaced by a rotation (renewal, step-up, privilege change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplacedToken {
    /// Hash of the replaced token's verifier.
    pub verifier_hash: VerifierHash,
    /// The replaced token is accepted before this instant (the overlap), refused
    /// from it on.
    pub valid_until: Timestamp,
    /// Why it was replaced: what its holder is told once it is refused.
    pub reason: Reason,
}

/// A rotation of a session's token, as a store applies it
/// ([`crate::Store::rotate_session_token`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRotation {
    /// Hash of the new token's verifier.
    pub verifier_hash: VerifierHash,
    /// Now.
    pub issued_at: Timestamp,
    /// The token being replaced, with its overlap and reason.
    pub previous: ReplacedToken,
    /// The new step-up deadline (unchanged if the rotation is not a step-up).
    pub elevated_until: Option<Timestamp>,
    /// The profile the session follows from now on.
    pub profile: Option<ProfileName>,
    /// The user's privilege count the new token is issued under.
    pub privileges: u64,
    /// The new idle deadline (never later than `absolute_deadline`).
    pub idle_deadline: Timestamp,
    /// The new absolute deadline (never later than the old one).
    pub absolute_deadline: Timestamp,
    /// The session's anti-CSRF basis (see [`SessionState::csrf_basis`]).
    pub csrf_basis: VerifierHash,
}

/// What an administrator (or the app, in sidecar mode) assigns to a user: the
/// profile whose rules the user's sessions follow, and roles that apps read back.
/// Changing either rotates the user's sessions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserAccess {
    /// The user's profile; `None` for the default one.
    pub profile: Option<ProfileName>,
    /// Role names, as the app defines them (at most [`UserAccess::MAX_ROLES`], each
    /// 1 to 64 characters of `a-z A-Z 0-9 _ - . :`), sorted and without duplicates.
    pub roles: Vec<String>,
}

/// Roles that cannot be assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("roles: at most 32, each 1 to 64 characters of letters, digits, '_', '-', '.' and ':'")]
pub struct InvalidRoles;

impl UserAccess {
    /// Most roles per user.
    pub const MAX_ROLES: usize = 32;

    /// Validates roles and puts them in canonical order (sorted, deduplicated).
    pub fn new(profile: Option<ProfileName>, roles: Vec<String>) -> Result<Self, InvalidRoles> {
        let valid = |r: &String| {
            (1..=64).contains(&r.len())
                && r.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
        };
        if roles.len() > Self::MAX_ROLES || !roles.iter().all(valid) {
            return Err(InvalidRoles);
        }
        let mut roles = roles;
        roles.sort();
        roles.dedup();
        Ok(UserAccess { profile, roles })
    }
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
///
/// Personal API tokens have their own floor: a bump ends them only when it says so
/// (by default a password change does, "sign out everywhere" does not), so an API
/// token is alive while its epoch is at least `api_token_floor`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserEpoch {
    /// Current epoch; starts at 0.
    pub epoch: u64,
    /// The most recent bump (number `epoch`): why and when. `None` while `epoch`
    /// is 0.
    pub last_bump: Option<Revocation>,
    /// The bumps before it, newest first: `earlier_bumps[i]` is bump number
    /// `epoch - 1 - i`. Kept so that a session ended by an earlier bump still
    /// reports *that* bump's reason after later ones ([`UserEpoch::bump_ending`]).
    pub earlier_bumps: [Option<Revocation>; EARLIER_BUMPS],
    /// API tokens created at an epoch below this are ended. Starts at 0.
    pub api_token_floor: u64,
    /// The bump that last raised `api_token_floor`.
    pub api_token_bump: Option<Revocation>,
    /// How many times the user's profile or roles have changed: a session holding
    /// a lower number is rotated (reason `privilege_changed`) at its next use.
    pub privileges: u64,
}

/// How many bumps before the last one a [`UserEpoch`] remembers.
pub const EARLIER_BUMPS: usize = 3;

/// An epoch bump: why, and whether it also ends the user's API tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochBump {
    /// Reason and time, recorded as the user's `last_bump`.
    pub revocation: Revocation,
    /// Whether API tokens created before the bump end too.
    pub end_api_tokens: bool,
}

impl UserEpoch {
    /// This epoch after `bump`: what every store computes, atomically.
    #[must_use]
    pub fn bumped(self, bump: EpochBump) -> UserEpoch {
        let epoch = self.epoch + 1;
        let (api_token_floor, api_token_bump) = if bump.end_api_tokens {
            (epoch, Some(bump.revocation))
        } else {
            (self.api_token_floor, self.api_token_bump)
        };
        let mut earlier_bumps = [None; EARLIER_BUMPS];
        earlier_bumps[0] = self.last_bump;
        earlier_bumps[1..].copy_from_slice(&self.earlier_bumps[..EARLIER_BUMPS - 1]);
        UserEpoch {
            epoch,
            last_bump: Some(bump.revocation),
            earlier_bumps,
            api_token_floor,
            api_token_bump,
            privileges: self.privileges,
        }
    }

    /// The bump that ended a session (or token) created at `epoch`: bump number
    /// `epoch + 1`, or — if it is older than the remembered history — the oldest
    /// remembered bump (which came after it). `None` if nothing ended it, or if a
    /// store lost every bump it should remember.
    pub fn bump_ending(&self, epoch: u64) -> Option<Revocation> {
        if epoch >= self.epoch {
            return None;
        }
        // Bump number `self.epoch - k` sits at position k: 0 = last, 1.. = earlier.
        let newest_first = std::iter::once(self.last_bump).chain(self.earlier_bumps);
        let exact = usize::try_from(self.epoch - epoch - 1).unwrap_or(usize::MAX);
        newest_first.take(exact.saturating_add(1)).flatten().last()
    }
}

/// A secret sealed so that only the holder of another token can open it: the
/// successor of a rotated refresh token, kept so that a retry within the grace
/// window gets the same successor. A store dump alone cannot open it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SealedSecret(pub [u8; 32]);

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealedSecret(..)")
    }
}

/// How a refresh token was replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// When.
    pub at: Timestamp,
    /// The successor's id.
    pub successor: TokenId,
    /// The successor's verifier, sealed under this token's verifier.
    pub sealed_successor: SealedSecret,
}

/// A refresh token: server-side state bound to a session. It lives exactly as long
/// as its session, and is replaced (rotated) on every use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshState {
    /// Public id (token selector).
    pub id: TokenId,
    /// Hash of the token's secret verifier.
    pub verifier_hash: VerifierHash,
    /// The session it belongs to.
    pub session_id: SessionId,
    /// The session's user.
    pub user_id: UserId,
    /// When it was issued.
    pub created_at: Timestamp,
    /// The client it was issued to: only that client may use it, and its
    /// successor is bound to the same. `None` only for tokens stored before
    /// refresh tokens were bound to a client; the first use of such a token binds
    /// its successor to the client that uses it.
    pub client_id: Option<ClientId>,
    /// Set once, when it is used and replaced; never cleared.
    pub rotated: Option<Rotation>,
}

/// A user's personal API token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::struct_field_names)]
pub struct ApiTokenRecord {
    /// Public id (token selector).
    pub id: TokenId,
    /// Hash of the token's secret verifier.
    pub verifier_hash: VerifierHash,
    /// Owner.
    pub user_id: UserId,
    /// The owner's label for it (1 to 100 characters).
    pub name: String,
    /// The user's epoch when it was created.
    pub epoch: u64,
    /// Creation time.
    pub created_at: Timestamp,
    /// It ends with `absolute_timeout` at this instant.
    pub expires_at: Timestamp,
    /// Last use (coalesced like session touches), if any.
    pub last_used_at: Option<Timestamp>,
    /// Set once when it is revoked; never cleared.
    pub revoked: Option<Revocation>,
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

impl ApiTokenRecord {
    /// When the token ended, or will end without further action: the earliest of
    /// its revocation, the bump that raised the API-token floor above its epoch,
    /// and its expiry.
    pub fn ends_at(&self, user: &UserEpoch) -> Timestamp {
        // Below the floor without a recorded bump (a store lost it): ended long ago.
        let floor = (self.epoch < user.api_token_floor)
            .then(|| user.api_token_bump.map_or(Timestamp::EPOCH, |b| b.at));
        [self.revoked.map(|r| r.at), floor, Some(self.expires_at)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(self.expires_at)
    }
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
    fn each_session_is_told_the_bump_that_ended_it() {
        use crate::reason::Reason;
        let rev = |reason, ms| Revocation {
            reason,
            at: Timestamp::from_millis(ms),
        };
        let bump = |reason, ms| EpochBump {
            revocation: rev(reason, ms),
            end_api_tokens: false,
        };
        let mut e = UserEpoch::default();
        assert_eq!(e.bump_ending(0), None);
        let reasons = [
            Reason::RevokedByAdmin,
            Reason::PasswordChanged,
            Reason::SignedOutEverywhere,
            Reason::RevokedByUser,
            Reason::Displaced,
        ];
        for (i, r) in reasons.into_iter().enumerate() {
            e = e.bumped(bump(r, i as i64));
        }
        assert_eq!(e.epoch, 5);
        // Sessions born at epochs 1..=4 were ended by bumps 2..=5, all remembered.
        assert_eq!(e.bump_ending(4), Some(rev(Reason::Displaced, 4)));
        assert_eq!(e.bump_ending(3), Some(rev(Reason::RevokedByUser, 3)));
        assert_eq!(e.bump_ending(1), Some(rev(Reason::PasswordChanged, 1)));
        // Bump 1 is beyond the history: the oldest remembered one stands in.
        assert_eq!(e.bump_ending(0), Some(rev(Reason::PasswordChanged, 1)));
        assert_eq!(
            e.bump_ending(5),
            None,
            "a current session was ended by nothing"
        );
        // A store that lost the history still ends the session.
        let lost = UserEpoch {
            earlier_bumps: [None; EARLIER_BUMPS],
            ..e
        };
        assert_eq!(lost.bump_ending(1), Some(rev(Reason::Displaced, 4)));
    }

    #[test]
    fn password_hash_debug_is_opaque() {
        let h = PasswordHash::from_phc("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into());
        assert_eq!(format!("{h:?}"), "PasswordHash(..)");
    }
}
