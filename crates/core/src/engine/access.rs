//! Token rotation: periodic renewal, step-up (re-authentication) and privilege
//! changes.
//!
//! A session keeps its id (the public selector) for life; rotation replaces its
//! secret verifier, so the token text changes and the old token stops working:
//!
//! - **Renewal** (`renewal_interval`): a token older than the interval is replaced
//!   on the next request that can carry the new one (a cookie). The old token keeps
//!   working for `renewal_overlap`, so requests already in flight do not fail, and
//!   is then refused with `renewed`.
//! - **Step-up** ([`Engine::elevate`]): after the holder re-authenticates, the
//!   session gets a new token and counts as recently authenticated for
//!   `step_up_ttl`; the old token dies at once with `privilege_changed`.
//! - **Privilege change** ([`Engine::update_user_access`]): an administrator
//!   changes a user's profile or roles; each of the user's sessions is rotated at
//!   its next use and from then on follows the new profile. The old token keeps
//!   working for `renewal_overlap` (the holder did nothing wrong), then is refused
//!   with `privilege_changed`.
//!
//! Each rotation is a compare-and-set on the current verifier
//! ([`crate::Store::rotate_session_token`]): of simultaneous rotations of one
//! token exactly one wins, and the losers' requests are served by the overlap.

use std::time::Duration;

use crate::audit::EventKind;
use crate::clock::{Clock, Timestamp};
use crate::model::{ReplacedToken, SessionState, TokenRotation, UserAccess, UserEpoch, UserId};
use crate::profile::ProfileName;
use crate::reason::Reason;
use crate::store::Store;
use crate::token::{Token, TokenKind};

use super::{Engine, Error, Issued, Rejection, Result, ValidSession, privileges_changed};

/// A checked session, and the token that replaced the presented one if this check
/// rotated it: the caller must hand it to the client (a new cookie).
#[derive(Debug)]
pub struct Validated {
    /// The session.
    pub session: ValidSession,
    /// The new token, if the presented one was just replaced.
    pub new_token: Option<Token>,
}

impl<S: Store, C: Clock> Engine<S, C> {
    /// Checks a session token, records activity and, where due, rotates the token:
    /// for requests whose response can carry a new token (cookies). Rotation is due
    /// when the user's privileges changed since the token was issued, or the token
    /// is older than the profile's `renewal_interval`. A token presented within its
    /// overlap after a rotation is accepted but not rotated again.
    pub async fn validate_renewing(&self, token: &str) -> Result<Validated> {
        self.validate_rotating(token, true).await
    }

    /// Like [`Engine::validate_renewing`], for a client that can receive a new
    /// token but does not renew it periodically (a bearer session token, handed
    /// back in a response body): with `periodic` false, rotates only after a
    /// privilege change.
    pub async fn validate_rotating(&self, token: &str, periodic: bool) -> Result<Validated> {
        let now = self.clock.now();
        let (state, epoch, previous) = self.check(token, now).await?;
        // A token presented in its overlap is served as it is, never rotated again.
        let due = if previous {
            None
        } else {
            self.rotation_due(&state, &epoch, now, periodic)
        };
        if let Some(reason) = due {
            let overlap = self.policy_of(state.profile.as_ref()).renewal_overlap;
            let (new_token, rotated) = self
                .rotate(&state, &epoch, reason, overlap, None, now)
                .await?;
            if let Some(rotated) = rotated {
                return Ok(Validated {
                    session: self.valid(&rotated, epoch.privileges),
                    new_token: Some(new_token),
                });
            }
            // Another request rotated it first; this one is served by the overlap.
        }
        Ok(Validated {
            session: self.touch(state, now, epoch.privileges).await?,
            new_token: None,
        })
    }

    fn rotation_due(
        &self,
        state: &SessionState,
        epoch: &UserEpoch,
        now: Timestamp,
        periodic: bool,
    ) -> Option<Reason> {
        if privileges_changed(state, epoch) {
            return Some(Reason::PrivilegeChanged);
        }
        if !periodic {
            return None;
        }
        let interval = self.policy_of(state.profile.as_ref()).renewal_interval;
        (!interval.is_zero() && now.duration_since(state.token_issued_at) >= interval)
            .then_some(Reason::Renewed)
    }

    /// Step-up: the holder of `session` has just re-authenticated (the caller
    /// verified the password). The session gets a new token and counts as
    /// recently authenticated for the profile's `step_up_ttl`; the old token dies
    /// at once with `privilege_changed`.
    pub async fn elevate(&self, session: &ValidSession) -> Result<Issued> {
        let now = self.clock.now();
        let (state, epoch) = self.live(&session.id, now).await?;
        if !state.verifier_hash.ct_eq(&session.verifier_hash) {
            // The token that authenticated this request was replaced meanwhile.
            return Err(Error::Rejected(Rejection::ended(crate::Revocation {
                reason: Reason::PrivilegeChanged,
                at: now,
            })));
        }
        let ttl = self.policy_of(state.profile.as_ref()).step_up_ttl;
        let until = now.saturating_add(ttl);
        match self
            .rotate(
                &state,
                &epoch,
                Reason::PrivilegeChanged,
                Duration::ZERO,
                Some(until),
                now,
            )
            .await?
        {
            (token, Some(rotated)) => {
                self.record(
                    EventKind::Elevated,
                    Some(&rotated.user_id),
                    Some(&rotated.id),
                    None,
                )
                .await;
                Ok(Issued {
                    token,
                    session: self.valid(&rotated, epoch.privileges),
                })
            }
            (_, None) => Err(Error::Rejected(Rejection::ended(crate::Revocation {
                reason: Reason::PrivilegeChanged,
                at: now,
            }))),
        }
    }

    /// Fails with [`Error::StepUpRequired`] (and records it) unless `session`
    /// counts as recently authenticated: within `step_up_ttl` of its login or of
    /// its last step-up.
    pub async fn require_step_up(&self, session: &ValidSession) -> Result<()> {
        if session.is_elevated(self.clock.now()) {
            return Ok(());
        }
        self.record(
            EventKind::StepUpRequired,
            Some(&session.user_id),
            Some(&session.id),
            None,
        )
        .await;
        Err(Error::StepUpRequired)
    }

    /// Assigns a profile and roles to `user`. Every session of the user is rotated
    /// at its next use (`privilege_changed`) and then follows the new profile; if
    /// the new profile allows fewer concurrent sessions than the user holds, the
    /// least recently used ones end at once with `privilege_changed`. Durable.
    pub async fn update_user_access(&self, user: &UserId, access: UserAccess) -> Result<UserEpoch> {
        if let Some(name) = &access.profile
            && self.profiles.get(name.as_str()).is_none()
        {
            return Err(Error::InvalidInput("profile is not defined"));
        }
        let max = self.policy_of(access.profile.as_ref()).max_sessions;
        let epoch = self.store.set_user_access(user, access).await?;
        self.record(EventKind::UserUpdated, Some(user), None, None)
            .await;
        if max > 0 {
            let live = self.list_sessions(user).await?;
            let keep = usize::try_from(max).unwrap_or(usize::MAX);
            for r in live.iter().skip(keep) {
                self.revoke(&r.state.id, Reason::PrivilegeChanged).await?;
            }
        }
        Ok(epoch)
    }

    /// Replaces the token of `state` (whose verifier is the current one) and returns
    /// the new token, with the rotated state if this call won the compare-and-set.
    /// The session adopts its user's current profile; its absolute deadline never
    /// moves later.
    pub(super) async fn rotate(
        &self,
        state: &SessionState,
        user: &UserEpoch,
        reason: Reason,
        overlap: Duration,
        elevated_until: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<(Token, Option<SessionState>)> {
        let profile: Option<ProfileName> = self.store.user_access(&state.user_id).await?.profile;
        let policy = self.policy_of(profile.as_ref());
        let absolute_deadline = state
            .absolute_deadline
            .min(state.created_at.saturating_add(policy.absolute_timeout));
        let token = Token::regenerate(TokenKind::Session, state.id);
        let rotation = TokenRotation {
            verifier_hash: token.verifier_hash(),
            issued_at: now,
            previous: ReplacedToken {
                verifier_hash: state.verifier_hash,
                valid_until: now.saturating_add(overlap),
                reason,
            },
            elevated_until: elevated_until.or(state.elevated_until),
            profile,
            privileges: user.privileges,
            idle_deadline: now
                .saturating_add(policy.idle_timeout)
                .min(absolute_deadline),
            absolute_deadline,
            csrf_basis: state.csrf_basis.unwrap_or(state.verifier_hash),
        };
        let won = self
            .store
            .rotate_session_token(&state.id, state.verifier_hash, rotation.clone())
            .await?;
        if !won {
            return Ok((token, None));
        }
        if reason != Reason::PrivilegeChanged || elevated_until.is_none() {
            let kind = if reason == Reason::Renewed {
                EventKind::TokenRenewed
            } else {
                EventKind::TokenRotated
            };
            self.record(kind, Some(&state.user_id), Some(&state.id), Some(reason))
                .await;
        }
        let mut rotated = state.clone();
        rotated.verifier_hash = rotation.verifier_hash;
        rotated.token_issued_at = now;
        rotated.previous = Some(rotation.previous);
        rotated.elevated_until = rotation.elevated_until;
        rotated.profile = rotation.profile;
        rotated.privileges = rotation.privileges;
        rotated.idle_deadline = rotation.idle_deadline;
        rotated.absolute_deadline = rotation.absolute_deadline;
        rotated.last_seen_at = rotated.last_seen_at.max(now);
        rotated.csrf_basis = Some(rotation.csrf_basis);
        Ok((token, Some(rotated)))
    }
}
