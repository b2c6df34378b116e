//! Personal API tokens: long-lived credentials a user creates for scripts and
//! integrations. Shown once, hashed at rest, bounded by
//! [`Policy::api_token_max_ttl`], and ended by a password change unless
//! [`Policy::revoke_api_tokens_on_password_change`] is off.
//!
//! [`Policy::api_token_max_ttl`]: crate::Policy::api_token_max_ttl
//! [`Policy::revoke_api_tokens_on_password_change`]: crate::Policy::revoke_api_tokens_on_password_change

use std::time::Duration;

use crate::audit::EventKind;
use crate::clock::{Clock, Timestamp};
use crate::model::{ApiTokenRecord, UserEpoch, UserId};
use crate::observe::{Credential, Observation, RevocationScope};
use crate::reason::{Reason, Revocation};
use crate::store::{Store, StoreError};
use crate::token::{Token, TokenId, TokenKind};

use super::{Engine, Error, Rejection, Result};

/// Longest API-token name, in characters.
const MAX_NAME_CHARS: usize = 100;

/// How stale `last_used_at` may be before a use is written again.
const USE_INTERVAL: Duration = Duration::from_secs(60);

/// An API token that passed every check at one instant. Only the engine builds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidApiToken {
    record: ApiTokenRecord,
    user_privileges: u64,
}

impl ValidApiToken {
    /// The token's public id.
    pub fn id(&self) -> TokenId {
        self.record.id
    }
    /// Its owner.
    pub fn user_id(&self) -> &UserId {
        &self.record.user_id
    }
    /// The owner's label.
    pub fn name(&self) -> &str {
        &self.record.name
    }
    /// Creation time.
    pub fn created_at(&self) -> Timestamp {
        self.record.created_at
    }
    /// Expiry.
    pub fn expires_at(&self) -> Timestamp {
        self.record.expires_at
    }
    /// The owner's privilege count as this check read it (see
    /// [`ValidSession::user_privileges`](super::ValidSession::user_privileges)).
    pub fn user_privileges(&self) -> u64 {
        self.user_privileges
    }
}

/// Whether an API token is live at `now`, or the first reason it ended (expiry
/// reads as `absolute_timeout`).
pub fn api_token_verdict(
    record: &ApiTokenRecord,
    user: &UserEpoch,
    now: Timestamp,
) -> Result<(), Rejection> {
    // Created at a later epoch than its user's: the store lost the user's epoch
    // record (see `verdict`).
    if record.epoch > user.epoch {
        return Err(Rejection::INVALID);
    }
    let floor = if record.epoch < user.api_token_floor {
        // The floor is only ever raised with a reason; if a store lost it, the token
        // is ended all the same.
        Some(user.api_token_bump.ok_or(Rejection::INVALID)?)
    } else {
        None
    };
    let expiry = Revocation {
        reason: Reason::AbsoluteTimeout,
        at: record.expires_at,
    };
    let first = [record.revoked, floor]
        .into_iter()
        .flatten()
        .chain((expiry.at <= now).then_some(expiry))
        .min_by_key(|r| r.at);
    match first {
        Some(end) => Err(Rejection::ended(end)),
        None => Ok(()),
    }
}

impl<S: Store, C: Clock> Engine<S, C> {
    /// Creates an API token for `user`, valid for `ttl` (at most, and by default,
    /// [`crate::Policy::api_token_max_ttl`]). Returns the secret token — to be shown
    /// once — and its record.
    pub async fn create_api_token(
        &self,
        user: &UserId,
        name: &str,
        ttl: Option<Duration>,
    ) -> Result<(Token, ApiTokenRecord)> {
        let name = name.trim();
        if name.is_empty()
            || name.chars().count() > MAX_NAME_CHARS
            || name.chars().any(char::is_control)
        {
            return Err(Error::InvalidInput(
                "name must be 1 to 100 characters without control characters",
            ));
        }
        let max = self.policy_of_user(user).await?.api_token_max_ttl;
        let ttl = ttl.unwrap_or(max);
        if ttl.is_zero() || ttl > max {
            return Err(Error::InvalidInput(
                "expires_in must be positive and at most api_token_max_ttl",
            ));
        }
        let now = self.clock.now();
        let epoch = self.store.user_epoch(user).await?;
        let token = Token::generate_in(TokenKind::ApiToken, user.shard());
        let record = ApiTokenRecord {
            id: token.id(),
            verifier_hash: token.verifier_hash(),
            user_id: user.clone(),
            name: name.to_owned(),
            epoch: epoch.epoch,
            created_at: now,
            expires_at: now.saturating_add(ttl),
            last_used_at: None,
            revoked: None,
        };
        match self.store.insert_api_token(record.clone()).await {
            Ok(()) => {
                self.record(EventKind::ApiTokenCreated, Some(user), None, None)
                    .await;
                Ok((token, record))
            }
            Err(StoreError::EpochMoved) => {
                let e = self.store.user_epoch(user).await?;
                Err(Error::Rejected(
                    e.last_bump.map_or(Rejection::INVALID, Rejection::ended),
                ))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Checks an API token and records its use (coalesced to once a minute).
    pub async fn validate_api_token(&self, presented: &str) -> Result<ValidApiToken> {
        let now = self.clock.now();
        let (mut record, user_privileges) = self.check_api_token(presented, now).await?;
        if record
            .last_used_at
            .is_none_or(|t| now.duration_since(t) >= USE_INTERVAL)
        {
            self.store.touch_api_token(&record.id, now).await?;
            record.last_used_at = Some(now);
        }
        Ok(ValidApiToken {
            record,
            user_privileges,
        })
    }

    /// Checks an API token without recording a use (for introspection).
    pub async fn api_token_status(&self, presented: &str) -> Result<ValidApiToken> {
        let (record, user_privileges) = self.check_api_token(presented, self.clock.now()).await?;
        Ok(ValidApiToken {
            record,
            user_privileges,
        })
    }

    /// The live record of an API token, with its user's privilege count. The
    /// outcome is reported to the observer.
    async fn check_api_token(
        &self,
        presented: &str,
        now: Timestamp,
    ) -> Result<(ApiTokenRecord, u64)> {
        let checked = self.judge_api_token(presented, now).await;
        self.observer.check(Credential::ApiToken, &checked);
        checked
    }

    async fn judge_api_token(
        &self,
        presented: &str,
        now: Timestamp,
    ) -> Result<(ApiTokenRecord, u64)> {
        let parsed = Token::parse(presented, TokenKind::ApiToken)
            .map_err(|_| Error::Rejected(Rejection::INVALID))?;
        let Some((record, epoch)) = self.store.load_api_token(&parsed.id()).await? else {
            return Err(Error::Rejected(Rejection::INVALID));
        };
        if !parsed.verify(&record.verifier_hash) {
            return Err(Error::Rejected(Rejection::INVALID));
        }
        api_token_verdict(&record, &epoch, now).map_err(Error::Rejected)?;
        Ok((record, epoch.privileges))
    }

    /// The live API tokens of `user`, newest first.
    pub async fn list_api_tokens(&self, user: &UserId) -> Result<Vec<ApiTokenRecord>> {
        let now = self.clock.now();
        let epoch = self.store.user_epoch(user).await?;
        let mut live: Vec<_> = self
            .store
            .list_user_api_tokens(user)
            .await?
            .into_iter()
            .filter(|t| api_token_verdict(t, &epoch, now).is_ok())
            .collect();
        live.sort_by_key(|t| std::cmp::Reverse(t.created_at));
        Ok(live)
    }

    /// Revokes the API token `id` on behalf of its owner (`revoked_by_user`).
    /// `NotFound` if it is not a live token of `owner`.
    pub async fn revoke_own_api_token(&self, owner: &UserId, id: &TokenId) -> Result<()> {
        let now = self.clock.now();
        match self.store.load_api_token(id).await? {
            Some((record, epoch))
                if &record.user_id == owner && api_token_verdict(&record, &epoch, now).is_ok() =>
            {
                self.revoke_api_token(id, Reason::RevokedByUser).await?;
                Ok(())
            }
            _ => Err(Error::NotFound("api_token")),
        }
    }

    /// Revokes a genuine API token presented in full (RFC 7009). Anything else is
    /// ignored. Returns whether this call revoked it.
    pub async fn revoke_api_token_by_token(&self, presented: &str, reason: Reason) -> Result<bool> {
        let Ok(parsed) = Token::parse(presented, TokenKind::ApiToken) else {
            return Ok(false);
        };
        match self.store.load_api_token(&parsed.id()).await? {
            Some((record, _)) if parsed.verify(&record.verifier_hash) => {
                self.revoke_api_token(&record.id, reason).await
            }
            _ => Ok(false),
        }
    }

    async fn revoke_api_token(&self, id: &TokenId, reason: Reason) -> Result<bool> {
        let at = self.clock.now();
        let revoked = self
            .store
            .revoke_api_token(id, Revocation { reason, at })
            .await?;
        if revoked {
            self.observer.tell(Observation::Revoked {
                scope: RevocationScope::ApiToken,
                reason,
            });
            let user = self.store.load_api_token(id).await?.map(|(t, _)| t.user_id);
            self.record(
                EventKind::ApiTokenRevoked,
                user.as_ref(),
                None,
                Some(reason),
            )
            .await;
        }
        Ok(revoked)
    }
}
