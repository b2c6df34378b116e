//! The session engine: every rule about when a session is valid lives here.
//!
//! ```text
//! login ──► create ──► [active] ──validate/touch──► [active]
//!                          │
//!        ┌─────────────────┼──────────────────────┬───────────────────┐
//!   revoke (reason)   epoch bump (reason)   idle deadline      absolute deadline
//!        └─────────────────┴──────────────────────┴───────────────────┘
//!                          ▼
//!                  [ended: reason, at]  ──purge after retention──► gone (invalid_token)
//! ```
//!
//! Validity is decided here, server-side, at every check (invariant 2): the token
//! must parse, its record must exist, its verifier must match in constant time, and
//! the session must not be revoked, out of date with the user's credential epoch,
//! idle past its idle deadline or past its absolute deadline.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::audit::{AuditEvent, EventKind, EventQuery};
use crate::clock::{Clock, SystemClock, Timestamp};
use crate::model::{
    ClientInfo, EpochBump, PasswordHash, SessionId, SessionRecord, SessionState, UserEpoch, UserId,
};
use crate::observe::{self, Credential, Observation, Observer, RevocationScope};
use crate::policy::{Policy, PolicyError};
use crate::profile::{ProfileError, ProfileName, Profiles};
use crate::reason::{Reason, Revocation};
use crate::store::{Purged, Store, StoreError};
use crate::throttle::{ThrottleRule, ThrottleRuleError};
use crate::token::{Token, TokenKind, VerifierHash};

mod access;
mod access_token;
mod api_token;
mod identity;
mod refresh;
mod throttle;

pub use access::Validated;
pub use access_token::access_token_verdict;
pub use api_token::{ValidApiToken, api_token_verdict};
pub use identity::{IDENTITY_MEMO_CAPACITY, Identity};
pub use refresh::Refreshed;
pub use throttle::{PasswordAttempt, PasswordCheck};

/// Why a token was refused, and since when. Safe to show to the token's holder.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rejection {
    /// The reason code.
    pub reason: Reason,
    /// When the session ended; `None` for `invalid_token`.
    pub at: Option<Timestamp>,
    /// For `displaced`: the client whose login displaced the session, so the app
    /// can tell its user "someone signed in as you from …".
    pub displaced_by: Option<Box<ClientInfo>>,
}

impl Rejection {
    /// The rejection for anything that is not a live token of ours.
    pub const INVALID: Rejection = Rejection {
        reason: Reason::InvalidToken,
        at: None,
        displaced_by: None,
    };

    /// The rejection for an end recorded as `r`.
    pub fn ended(r: Revocation) -> Self {
        Rejection {
            reason: r.reason,
            at: Some(r.at),
            displaced_by: None,
        }
    }
}

/// A failed engine operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The token or session is not valid.
    #[error("session rejected: {}", .0.reason)]
    Rejected(Rejection),
    /// The named record does not exist (or is not the caller's).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// An argument breaks a rule; the text says which, and holds no secret.
    #[error("invalid input: {0}")]
    InvalidInput(&'static str),
    /// The user holds as many live sessions as the policy allows, and it says to
    /// refuse new ones (`on_limit = "reject_new"`).
    #[error("the concurrent-session limit is reached")]
    LimitReached,
    /// The action needs a recently authenticated session: log in again or step up
    /// ([`Engine::elevate`]).
    #[error("the action needs a recent re-authentication")]
    StepUpRequired,
    /// A genuine refresh token was presented by a client other than the one it
    /// was issued to ([`Engine::refresh`]); nothing changed.
    #[error("the refresh token was issued to another client")]
    ClientMismatch,
    /// Too many wrong passwords from this client for this account (or from this
    /// client at all): no password may be checked before `retry_at`
    /// ([`Engine::begin_password_check`]).
    #[error("too many failed password attempts")]
    Throttled {
        /// When a password may be checked again.
        retry_at: Timestamp,
    },
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => Error::NotFound(what),
            StoreError::LimitReached => Error::LimitReached,
            other => Error::Store(other),
        }
    }
}

/// Result of engine operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A session that passed every check at one instant. Only the engine constructs
/// it, so holding one proves the check happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidSession {
    id: SessionId,
    verifier_hash: VerifierHash,
    user_id: UserId,
    profile: Option<ProfileName>,
    created_at: Timestamp,
    last_seen_at: Timestamp,
    idle_deadline: Timestamp,
    absolute_deadline: Timestamp,
    token_issued_at: Timestamp,
    step_up_until: Timestamp,
    csrf_basis: VerifierHash,
    user_privileges: u64,
}

impl ValidSession {
    fn from_state(s: &SessionState, policy: &Policy, user_privileges: u64) -> Self {
        let fresh = s.created_at.saturating_add(policy.step_up_ttl);
        ValidSession {
            id: s.id,
            verifier_hash: s.verifier_hash,
            user_id: s.user_id.clone(),
            profile: s.profile.clone(),
            created_at: s.created_at,
            last_seen_at: s.last_seen_at,
            idle_deadline: s.idle_deadline,
            absolute_deadline: s.absolute_deadline,
            token_issued_at: s.token_issued_at,
            step_up_until: s.elevated_until.map_or(fresh, |e| e.max(fresh)),
            csrf_basis: s.csrf_basis.unwrap_or(s.verifier_hash),
            user_privileges,
        }
    }

    /// The user's privilege count ([`UserEpoch::privileges`]) as the check that
    /// produced this session read it, together with the session: it changes
    /// whenever the user's profile or roles change, so what is known of the user
    /// under this count is current ([`Engine::identity`]).
    pub fn user_privileges(&self) -> u64 {
        self.user_privileges
    }

    /// The profile whose rules the session follows (`None`: the default one).
    pub fn profile(&self) -> Option<&ProfileName> {
        self.profile.as_ref()
    }
    /// When the session's current token was issued (login, or the last rotation).
    /// Access tokens issued before it belong to a replaced token.
    pub fn token_issued_at(&self) -> Timestamp {
        self.token_issued_at
    }
    /// Until when the session counts as recently authenticated: `step_up_ttl`
    /// after login, or after the last step-up.
    pub fn step_up_until(&self) -> Timestamp {
        self.step_up_until
    }
    /// Whether the session counts as recently authenticated at `now`.
    pub fn is_elevated(&self, now: Timestamp) -> bool {
        now < self.step_up_until
    }

    /// The session's public id.
    pub fn id(&self) -> SessionId {
        self.id
    }
    /// Its owner.
    pub fn user_id(&self) -> &UserId {
        &self.user_id
    }
    /// Login time.
    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }
    /// Last recorded activity.
    pub fn last_seen_at(&self) -> Timestamp {
        self.last_seen_at
    }
    /// When it ends without further activity.
    pub fn idle_deadline(&self) -> Timestamp {
        self.idle_deadline
    }
    /// When it ends regardless of activity.
    pub fn absolute_deadline(&self) -> Timestamp {
        self.absolute_deadline
    }

    /// The session's anti-CSRF token: derived from the stored hash of the
    /// session's first token, so it is stable for the session's life (rotations
    /// included), differs between sessions, cannot be computed by a cross-site
    /// attacker, and reveals no token. Browsers send it back in a header on
    /// state-changing requests.
    pub fn csrf_token(&self) -> String {
        csrf_token_for(&self.csrf_basis)
    }

    /// Whether `presented` is this session's anti-CSRF token (constant time).
    pub fn verify_csrf(&self, presented: &str) -> bool {
        let expected = self.csrf_token();
        presented.len() == expected.len()
            && bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))
    }
}

fn csrf_token_for(hash: &VerifierHash) -> String {
    let mut h = Sha256::new();
    h.update(b"sessionguard/csrf/v1");
    h.update(hash.as_bytes());
    URL_SAFE_NO_PAD.encode(h.finalize())
}

/// A freshly created session and its token. The token is handed to the client once
/// and then dropped (and zeroized); only its hash is stored.
#[derive(Debug)]
pub struct Issued {
    /// The secret token.
    pub token: Token,
    /// The new session.
    pub session: ValidSession,
}

/// Creates, checks, renews and ends sessions over a [`Store`].
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use sessionguard_core::{ClientInfo, Engine, MemoryStore, Policy, Reason, UserId};
///
/// let engine = Engine::new(MemoryStore::new(), Policy::default()).unwrap();
/// let user = UserId::new("alice").unwrap();
/// let issued = engine.create_session(&user, 0, ClientInfo::default()).await.unwrap();
/// let token = issued.token.reveal();
///
/// assert!(engine.validate(&token).await.is_ok());
/// engine.logout(&token).await.unwrap();
/// let err = engine.validate(&token).await.unwrap_err();
/// assert!(matches!(err, sessionguard_core::Error::Rejected(r) if r.reason == Reason::LoggedOut));
/// # });
/// ```
pub struct Engine<S, C = SystemClock> {
    store: S,
    clock: C,
    profiles: Profiles,
    audit_retention: Duration,
    mirror: Option<AuditMirror>,
    identities: identity::IdentityMemo,
    throttle: ThrottleRule,
    observer: observe::Slot,
}

/// A copy of every audit event, handed over after the event is stored (for
/// example to print it as a JSON line).
pub type AuditMirror = Arc<dyn Fn(&AuditEvent) + Send + Sync>;

/// How long audit events are kept by default: 90 days.
pub const DEFAULT_AUDIT_RETENTION: Duration = Duration::from_secs(90 * 86_400);

impl<S, C> fmt::Debug for Engine<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("profiles", &self.profiles)
            .field("audit_retention", &self.audit_retention)
            .field("identities", &self.identities)
            .field("throttle", &self.throttle)
            .field("observer", &self.observer)
            .finish_non_exhaustive()
    }
}

impl<S: Store> Engine<S, SystemClock> {
    /// An engine on the system clock.
    pub fn new(store: S, policy: Policy) -> Result<Self, PolicyError> {
        Self::with_clock(store, SystemClock, policy)
    }
}

impl<S: Store, C: Clock> Engine<S, C> {
    /// An engine on the given clock, with `policy` as the `standard` (default)
    /// profile and the other built-in profiles as they are.
    pub fn with_clock(store: S, clock: C, policy: Policy) -> Result<Self, PolicyError> {
        policy.validate()?;
        Ok(Self::build(store, clock, Profiles::with_standard(policy)))
    }

    /// An engine on the given clock with the given profiles.
    pub fn with_profiles(store: S, clock: C, profiles: Profiles) -> Result<Self, ProfileError> {
        profiles.validate()?;
        Ok(Self::build(store, clock, profiles))
    }

    fn build(store: S, clock: C, profiles: Profiles) -> Self {
        Engine {
            store,
            clock,
            profiles,
            audit_retention: DEFAULT_AUDIT_RETENTION,
            mirror: None,
            identities: identity::IdentityMemo::new(IDENTITY_MEMO_CAPACITY),
            throttle: ThrottleRule::default(),
            observer: observe::Slot::default(),
        }
    }

    /// Tells `observer` of every decision of this engine ([`crate::observe`]):
    /// credential checks, refreshes, revocations, throttled and settled password
    /// checks. One observer per engine; a later call replaces it.
    #[must_use]
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = observe::Slot::new(observer);
        self
    }

    /// Throttles password checks by `rule` instead of [`ThrottleRule::default`].
    pub fn with_throttle(mut self, rule: ThrottleRule) -> Result<Self, ThrottleRuleError> {
        rule.validate()?;
        self.throttle = rule;
        Ok(self)
    }

    /// Keeps audit events for `retention` (default 90 days) instead.
    #[must_use]
    pub fn with_audit_retention(mut self, retention: Duration) -> Self {
        self.audit_retention = retention;
        self
    }

    /// Hands a copy of every audit event to `mirror` once it is stored.
    #[must_use]
    pub fn with_audit_mirror(mut self, mirror: AuditMirror) -> Self {
        self.mirror = Some(mirror);
        self
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The clock.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// The default profile's policy.
    pub fn policy(&self) -> &Policy {
        self.profiles.default_policy()
    }

    /// Every profile.
    pub fn profiles(&self) -> &Profiles {
        &self.profiles
    }

    /// The policy of profile `name` (the default one for `None` or an unknown name).
    pub fn policy_of(&self, name: Option<&ProfileName>) -> &Policy {
        self.profiles.resolve(name)
    }

    /// Creates a session for `user`, who was authenticated while the user's
    /// credential epoch was `epoch` (read together with the credentials). The id and
    /// token are always fresh: no client-chosen identifier is ever adopted. The
    /// session follows the user's profile, whose concurrent-session limit the store
    /// enforces atomically: at the limit the least recently used session is
    /// displaced, or the login fails with [`Error::LimitReached`].
    ///
    /// Fails with `Rejected(password_changed)` (or whichever reason bumped the epoch)
    /// if the user's epoch moved since it was read.
    pub async fn create_session(
        &self,
        user: &UserId,
        epoch: u64,
        client: ClientInfo,
    ) -> Result<Issued> {
        self.create(user, epoch, client, EventKind::LoginSucceeded)
            .await
    }

    async fn create(
        &self,
        user: &UserId,
        epoch: u64,
        client: ClientInfo,
        event: EventKind,
    ) -> Result<Issued> {
        let now = self.clock.now();
        // Read before the profile: a change landing in between leaves the session
        // with an older count, so it is rotated onto the new profile at its next
        // use (never the reverse).
        let privileges = self.store.user_epoch(user).await?.privileges;
        let profile = self.store.user_access(user).await?.profile;
        let policy = self.profiles.resolve(profile.as_ref());
        let token = Token::generate_in(TokenKind::Session, user.shard());
        let absolute_deadline = now.saturating_add(policy.absolute_timeout);
        let state = SessionState {
            id: token.id(),
            verifier_hash: token.verifier_hash(),
            user_id: user.clone(),
            epoch,
            created_at: now,
            last_seen_at: now,
            idle_deadline: now
                .saturating_add(policy.idle_timeout)
                .min(absolute_deadline),
            absolute_deadline,
            revoked: None,
            profile,
            privileges,
            token_issued_at: now,
            elevated_until: None,
            previous: None,
            displaced_by: None,
            csrf_basis: None,
        };
        let session = ValidSession::from_state(&state, policy, privileges);
        let limit = policy.session_limit();
        // The login's events carry the new session's client (for a sidecar login,
        // the app's user, not the app calling us).
        let record = SessionRecord {
            state,
            client: client.clone(),
        };
        match self.store.insert_session(record, limit).await {
            Ok(displaced) => {
                for id in &displaced {
                    self.observer.tell(Observation::Revoked {
                        scope: RevocationScope::Session,
                        reason: Reason::Displaced,
                    });
                    let reason = Some(Reason::Displaced);
                    self.record_from(&client, EventKind::Displaced, Some(user), Some(id), reason)
                        .await;
                }
                self.record_from(&client, event, Some(user), Some(&session.id), None)
                    .await;
                Ok(Issued { token, session })
            }
            Err(StoreError::EpochMoved) => {
                let e = self.store.user_epoch(user).await?;
                Err(Error::Rejected(
                    e.last_bump.map_or(Rejection::INVALID, Rejection::ended),
                ))
            }
            Err(StoreError::LimitReached) => {
                self.record_from(&client, EventKind::LoginRefused, Some(user), None, None)
                    .await;
                Err(Error::LimitReached)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Logs `user` in: revokes the session token the client presented with the
    /// login request, if it is a live token of ours (reason `superseded`), then
    /// creates a new session. Anti-fixation: the presented token is never reused.
    pub async fn login(
        &self,
        user: &UserId,
        epoch: u64,
        client: ClientInfo,
        presented: Option<&str>,
    ) -> Result<Issued> {
        if let Some(old) = presented {
            self.revoke_token(old, Reason::Superseded).await?;
        }
        self.create_session(user, epoch, client).await
    }

    /// Checks a session token and records activity, extending the idle deadline (at
    /// most up to the absolute deadline). Writes are coalesced per
    /// [`Policy::touch_interval`]. Never rotates the token: see
    /// [`Engine::validate_renewing`] for requests that can carry a new one.
    pub async fn validate(&self, token: &str) -> Result<ValidSession> {
        let now = self.clock.now();
        let (state, epoch, _) = self.check(token, now).await?;
        self.touch(state, now, epoch.privileges).await
    }

    /// Checks a session token without recording activity: the idle deadline does not
    /// move (for "you will be signed out in N minutes" warnings).
    pub async fn status(&self, token: &str) -> Result<ValidSession> {
        let now = self.clock.now();
        let (state, epoch, _) = self.check(token, now).await?;
        Ok(self.valid(&state, epoch.privileges))
    }

    /// Checks the session `id` that the caller has **already authenticated** by
    /// other means — a JWT access token whose signature it verified, naming the
    /// session in `sid` — and, with `touch`, records activity. Never call it with an
    /// id taken from unauthenticated input: the id is public.
    ///
    /// With `touch`, a session whose user's privileges changed since its token was
    /// issued is rotated first (`privilege_changed`), so access tokens issued
    /// before then ([`ValidSession::token_issued_at`]) can be refused.
    pub async fn validate_authenticated_id(
        &self,
        id: &SessionId,
        touch: bool,
    ) -> Result<ValidSession> {
        let now = self.clock.now();
        let (state, epoch) = self.live(id, now).await?;
        if !touch {
            return Ok(self.valid(&state, epoch.privileges));
        }
        if privileges_changed(&state, &epoch) {
            // Nobody holds this session's own token (its client holds access and
            // refresh tokens), so the new one is dropped at once.
            let (_, rotated) = self
                .rotate(
                    &state,
                    &epoch,
                    Reason::PrivilegeChanged,
                    Duration::ZERO,
                    None,
                    now,
                )
                .await?;
            if let Some(rotated) = rotated {
                return Ok(self.valid(&rotated, epoch.privileges));
            }
            let (state, epoch) = self.live(id, now).await?;
            return Ok(self.valid(&state, epoch.privileges));
        }
        self.touch(state, now, epoch.privileges).await
    }

    async fn touch(
        &self,
        mut state: SessionState,
        now: Timestamp,
        user_privileges: u64,
    ) -> Result<ValidSession> {
        let policy = self.profiles.resolve(state.profile.as_ref());
        if now.duration_since(state.last_seen_at) >= policy.touch_interval() {
            let idle = now
                .saturating_add(policy.idle_timeout)
                .min(state.absolute_deadline);
            if idle > state.idle_deadline {
                self.store.touch_session(&state.id, now, idle).await?;
                state.last_seen_at = now;
                state.idle_deadline = idle;
            }
        }
        Ok(ValidSession::from_state(&state, policy, user_privileges))
    }

    fn valid(&self, state: &SessionState, user_privileges: u64) -> ValidSession {
        ValidSession::from_state(
            state,
            self.profiles.resolve(state.profile.as_ref()),
            user_privileges,
        )
    }

    /// Ends the session of `token` with `logged_out`. Fails like
    /// [`Engine::status`] if the token is not live. Durable when it returns.
    pub async fn logout(&self, token: &str) -> Result<ValidSession> {
        let session = self.status(token).await?;
        self.end(&session.id, Reason::LoggedOut, EventKind::LoggedOut)
            .await?;
        Ok(session)
    }

    /// Revokes the session of `token` with `reason` if the token is genuine (its
    /// verifier matches); anything else is ignored. Returns whether it revoked.
    /// Knowing a session's public id is not enough to end it.
    pub async fn revoke_token(&self, token: &str, reason: Reason) -> Result<bool> {
        let Ok(parsed) = Token::parse(token, TokenKind::Session) else {
            return Ok(false);
        };
        match self.store.load_session(&parsed.id()).await? {
            Some((state, _)) if parsed.verify(&state.verifier_hash) => {
                self.revoke(&state.id, reason).await
            }
            _ => Ok(false),
        }
    }

    /// Revokes one session by id with `reason`. Returns whether this call revoked
    /// it (`false` if it was already revoked or is unknown). Durable when it returns.
    pub async fn revoke(&self, id: &SessionId, reason: Reason) -> Result<bool> {
        let kind = if reason == Reason::LoggedOut {
            EventKind::LoggedOut
        } else {
            EventKind::SessionRevoked
        };
        self.end(id, reason, kind).await
    }

    async fn end(&self, id: &SessionId, reason: Reason, kind: EventKind) -> Result<bool> {
        debug_assert!(reason.is_revocation(), "{reason} is derived, never stored");
        let at = self.clock.now();
        let revoked = self
            .store
            .revoke_session(id, Revocation { reason, at })
            .await?;
        if revoked {
            self.observer.tell(Observation::Revoked {
                scope: RevocationScope::Session,
                reason,
            });
            let user = self.store.load_session(id).await?.map(|(s, _)| s.user_id);
            self.record(kind, user.as_ref(), Some(id), Some(reason))
                .await;
        }
        Ok(revoked)
    }

    /// Revokes the session `id` on behalf of its owner (`revoked_by_user`). Fails
    /// with `NotFound` if it is not a live session of `owner`, so users cannot
    /// probe or end other users' sessions.
    pub async fn revoke_own(&self, owner: &UserId, id: &SessionId) -> Result<()> {
        let now = self.clock.now();
        match self.store.load_session(id).await? {
            Some((state, epoch))
                if &state.user_id == owner && verdict(&state, &epoch, now).is_ok() =>
            {
                self.revoke(id, Reason::RevokedByUser).await?;
                Ok(())
            }
            _ => Err(Error::NotFound("session")),
        }
    }

    /// Ends every session of `user` at once (O(1): a credential-epoch bump).
    /// Durable when it returns.
    pub async fn revoke_user(&self, user: &UserId, reason: Reason) -> Result<UserEpoch> {
        debug_assert!(reason.is_revocation(), "{reason} is derived, never stored");
        let at = self.clock.now();
        let end_api_tokens = reason == Reason::PasswordChanged
            && self
                .policy_of_user(user)
                .await?
                .revoke_api_tokens_on_password_change;
        let epoch = self
            .store
            .revoke_user_sessions(
                user,
                EpochBump {
                    revocation: Revocation { reason, at },
                    end_api_tokens,
                },
                None,
            )
            .await?;
        self.observer.tell(Observation::Revoked {
            scope: RevocationScope::User,
            reason,
        });
        self.record(
            EventKind::UserSessionsRevoked,
            Some(user),
            None,
            Some(reason),
        )
        .await;
        Ok(epoch)
    }

    /// Ends every session of the current session's user except the current one.
    pub async fn revoke_others(&self, current: &ValidSession, reason: Reason) -> Result<UserEpoch> {
        debug_assert!(reason.is_revocation(), "{reason} is derived, never stored");
        let at = self.clock.now();
        let epoch = self
            .store
            .revoke_user_sessions(
                &current.user_id,
                EpochBump {
                    revocation: Revocation { reason, at },
                    end_api_tokens: false,
                },
                Some(&current.id),
            )
            .await?;
        self.observer.tell(Observation::Revoked {
            scope: RevocationScope::User,
            reason,
        });
        self.record(
            EventKind::UserSessionsRevoked,
            Some(&current.user_id),
            Some(&current.id),
            Some(reason),
        )
        .await;
        Ok(epoch)
    }

    /// Stores a new password hash for the current session's user, which ends every
    /// session of that user (this one included) with `password_changed`, and
    /// returns a fresh session for the device that made the change.
    ///
    /// The caller decides whether the change needs a step-up first
    /// ([`Engine::require_step_up`]).
    pub async fn change_password(
        &self,
        current: &ValidSession,
        new_hash: PasswordHash,
        client: ClientInfo,
    ) -> Result<Issued> {
        let at = self.clock.now();
        let policy = self.profiles.resolve(current.profile.as_ref());
        let epoch = self
            .store
            .set_password(
                &current.user_id,
                new_hash,
                EpochBump {
                    revocation: Revocation {
                        reason: Reason::PasswordChanged,
                        at,
                    },
                    end_api_tokens: policy.revoke_api_tokens_on_password_change,
                },
            )
            .await?;
        self.observer.tell(Observation::Revoked {
            scope: RevocationScope::User,
            reason: Reason::PasswordChanged,
        });
        self.record(
            EventKind::PasswordChanged,
            Some(&current.user_id),
            Some(&current.id),
            Some(Reason::PasswordChanged),
        )
        .await;
        self.create(
            &current.user_id,
            epoch.epoch,
            client,
            EventKind::LoginSucceeded,
        )
        .await
    }

    /// The live sessions of `user`, most recently active first.
    pub async fn list_sessions(&self, user: &UserId) -> Result<Vec<SessionRecord>> {
        let now = self.clock.now();
        let epoch = self.store.user_epoch(user).await?;
        let mut live: Vec<SessionRecord> = self
            .store
            .list_user_sessions(user)
            .await?
            .into_iter()
            .filter(|r| verdict(&r.state, &epoch, now).is_ok())
            .collect();
        live.sort_by_key(|r| std::cmp::Reverse(r.state.last_seen_at));
        Ok(live)
    }

    /// Deletes records that ended more than `tombstone_retention` ago (the longest
    /// of any profile), and audit events older than the audit retention. Returns
    /// how many records were deleted.
    pub async fn purge_expired(&self) -> Result<Purged> {
        let now = self.clock.now();
        let retention = self
            .profiles
            .iter()
            .map(|(_, p)| p.tombstone_retention)
            .max()
            .unwrap_or_default();
        let purged = self.store.purge(now.saturating_sub(retention)).await?;
        let events = self
            .store
            .purge_events(now.saturating_sub(self.audit_retention))
            .await?;
        tracing::debug!(
            target: LIFECYCLE,
            event = "purged",
            sessions = purged.sessions,
            refresh_tokens = purged.refresh_tokens,
            api_tokens = purged.api_tokens,
            audit_events = events
        );
        Ok(purged)
    }

    /// Records an audit event that happened outside the engine (a failed login,
    /// a refused action), with the current request's client.
    pub async fn record(
        &self,
        kind: EventKind,
        user: Option<&UserId>,
        session: Option<&SessionId>,
        reason: Option<Reason>,
    ) {
        let client = crate::audit::current_client();
        self.record_from(&client, kind, user, session, reason).await;
    }

    /// Records an audit event caused by `client`.
    async fn record_from(
        &self,
        client: &ClientInfo,
        kind: EventKind,
        user: Option<&UserId>,
        session: Option<&SessionId>,
        reason: Option<Reason>,
    ) {
        let event = AuditEvent {
            id: 0,
            at: self.clock.now(),
            kind,
            user: user.cloned(),
            session: session.copied(),
            client: client.clone(),
            reason,
        };
        tracing::info!(
            target: LIFECYCLE,
            event = kind.code(),
            user = user.map(tracing::field::display),
            session = session.map(tracing::field::display),
            reason = reason.map(Reason::code),
        );
        // The action the event records has already happened (and is durable), so a
        // failure to log it must not undo or deny it: it is reported loudly instead.
        match self.store.append_event(event.clone()).await {
            Ok(id) => {
                if let Some(mirror) = &self.mirror {
                    mirror(&AuditEvent { id, ..event });
                }
            }
            Err(e) => {
                tracing::error!(target: LIFECYCLE, event = kind.code(), error = %e, "could not store an audit event");
            }
        }
    }

    /// The audit events matching `query`.
    pub async fn events(&self, query: &EventQuery) -> Result<Vec<AuditEvent>> {
        Ok(self.store.list_events(query).await?)
    }

    /// The policy of `user`'s profile.
    pub async fn policy_of_user(&self, user: &UserId) -> Result<&Policy> {
        let access = self.store.user_access(user).await?;
        Ok(self.profiles.resolve(access.profile.as_ref()))
    }

    /// Checks a presented session token: its current token, or the one the last
    /// rotation replaced while its overlap lasts (`true` in the result). Returns
    /// the user's epoch read with it (one store call). The outcome is reported
    /// to the observer.
    async fn check(&self, token: &str, now: Timestamp) -> Result<(SessionState, UserEpoch, bool)> {
        // The outcome is reported where it is decided (one future, nothing moved
        // for it: this is the path of every request).
        let refused = |r: Rejection| {
            self.observer.tell(Observation::Check {
                credential: Credential::SessionToken,
                outcome: Err(r.reason),
            });
            Error::Rejected(r)
        };
        // Parsing rejects malformed, foreign and mistyped tokens before any lookup.
        let parsed =
            Token::parse(token, TokenKind::Session).map_err(|_| refused(Rejection::INVALID))?;
        let Some((state, epoch)) = self.store.load_session(&parsed.id()).await? else {
            return Err(refused(Rejection::INVALID));
        };
        // The verifier is checked before anything about the session is revealed.
        let previous = if parsed.verify(&state.verifier_hash) {
            false
        } else {
            match state.previous {
                Some(prev) if parsed.verify(&prev.verifier_hash) => {
                    decide_rejection(&state, &epoch, now).map_err(refused)?;
                    if now >= prev.valid_until {
                        return Err(refused(Rejection::ended(Revocation {
                            reason: prev.reason,
                            at: prev.valid_until,
                        })));
                    }
                    true
                }
                _ => return Err(refused(Rejection::INVALID)),
            }
        };
        decide_rejection(&state, &epoch, now).map_err(refused)?;
        self.observer.tell(Observation::Check {
            credential: Credential::SessionToken,
            outcome: Ok(()),
        });
        Ok((state, epoch, previous))
    }

    /// The live state of session `id`, authenticated by the caller, with its
    /// user's epoch.
    async fn live(&self, id: &SessionId, now: Timestamp) -> Result<(SessionState, UserEpoch)> {
        let Some((state, epoch)) = self.store.load_session(id).await? else {
            return Err(Error::Rejected(Rejection::INVALID));
        };
        decide(&state, &epoch, now)?;
        Ok((state, epoch))
    }
}

/// [`verdict`], with the displacing client attached to a `displaced` rejection.
fn decide(state: &SessionState, epoch: &UserEpoch, now: Timestamp) -> Result<()> {
    decide_rejection(state, epoch, now).map_err(Error::Rejected)
}

/// [`decide`], the rejection alone.
fn decide_rejection(
    state: &SessionState,
    epoch: &UserEpoch,
    now: Timestamp,
) -> Result<(), Rejection> {
    verdict(state, epoch, now).map_err(|mut r| {
        if r.reason == Reason::Displaced {
            r.displaced_by.clone_from(&state.displaced_by);
        }
        r
    })
}

/// Whether the user's profile or roles changed after the session's token was
/// issued (a count, so a change in the very millisecond of a login is not missed).
fn privileges_changed(state: &SessionState, epoch: &UserEpoch) -> bool {
    state.privileges < epoch.privileges
}

/// The `tracing` target of lifecycle events (sessions created and revoked with
/// their reason, password changes). Fields are public ids and reason codes, never
/// secrets.
pub const LIFECYCLE: &str = "sessionguard::lifecycle";

/// Whether a session is live at `now`, or the first reason it ended.
///
/// Every way a session can end has a time; of those that apply (a revocation always
/// applies, a deadline once it has passed), the earliest is the reason reported. So
/// a session revoked after it had already timed out says `idle_timeout`, and one
/// that timed out after a password change says `password_changed`. On a tie the
/// earlier-listed cause wins: a recorded revocation, then the epoch, then the
/// absolute deadline (an idle deadline capped by it says `absolute_timeout`).
///
/// A session from a *later* epoch than its user's cannot have been written by a
/// correct store: the store lost (or rolled back) the user's epoch record, and
/// with it the bumps that ended sessions. It is refused (`invalid_token`) rather
/// than judged against a record that forgot them.
pub fn verdict(state: &SessionState, user: &UserEpoch, now: Timestamp) -> Result<(), Rejection> {
    if state.epoch > user.epoch {
        return Err(Rejection::INVALID);
    }
    let stale_epoch = if state.epoch < user.epoch {
        // An epoch is only ever bumped with a reason; if a store lost it, the session
        // is ended all the same.
        Some(user.bump_ending(state.epoch).ok_or(Rejection::INVALID)?)
    } else {
        None
    };
    let idle = Revocation {
        reason: Reason::IdleTimeout,
        at: state.idle_deadline,
    };
    let absolute = Revocation {
        reason: Reason::AbsoluteTimeout,
        at: state.absolute_deadline,
    };
    let first = [state.revoked, stale_epoch]
        .into_iter()
        .flatten()
        .chain([absolute, idle].into_iter().filter(|d| d.at <= now))
        .min_by_key(|r| r.at);
    match first {
        Some(end) => Err(Rejection::ended(end)),
        None => Ok(()),
    }
}
