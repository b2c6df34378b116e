//! Refresh tokens: server-side state bound to a session, rotated on every use.
//!
//! A refresh token is valid exactly while its session is: it dies with the session
//! (logout, password change, revocation, idle or absolute timeout) and can never
//! extend the session past its absolute deadline — refreshing only counts as
//! activity. Each use replaces it by a successor (rotation). Presenting a token that
//! was already replaced is reuse: someone else may hold a copy, so the whole session
//! is revoked (`refresh_reuse_detected`). The one exception is a repeat of the token
//! that was *just* replaced, within [`Policy::refresh_reuse_grace`]: a client
//! retrying after a lost response, or two tabs racing, gets the same successor back.
//!
//! A refresh token is bound to the [`ClientId`] it was issued to, and so is each
//! successor. Presented by another client (a missing `client_id` is the
//! first-party client), an unused token is refused with
//! [`Error::ClientMismatch`] and changes nothing; a token already replaced is
//! honoured as a repeat only for its own client, so for another one it is
//! reuse. Both the refusal (`refresh_client_mismatch`) and an honoured repeat
//! (`refresh_repeated`) are audit events: a replay inside the grace window leaves
//! a trace.
//!
//! [`Policy::refresh_reuse_grace`]: crate::Policy::refresh_reuse_grace

use crate::audit::EventKind;
use crate::clock::{Clock, Timestamp};
use crate::model::{ClientId, RefreshState, Rotation, SealedSecret};
use crate::observe::{Observation, RefreshOutcome};
use crate::reason::Reason;
use crate::store::Store;
use crate::token::{Token, TokenKind};

use super::{Engine, Error, Rejection, Result, ValidSession};

/// The outcome of a refresh: the (still live) session and the refresh token to use
/// next time. The token is secret: hand it to the client once.
#[derive(Debug)]
pub struct Refreshed {
    /// The session, as of this refresh.
    pub session: ValidSession,
    /// The successor refresh token.
    pub refresh: Token,
}

impl<S: Store, C: Clock> Engine<S, C> {
    /// Issues the first refresh token of `session` (at a token login), bound to
    /// `client`.
    pub async fn issue_refresh(&self, session: &ValidSession, client: &ClientId) -> Result<Token> {
        let token = Token::generate_in(TokenKind::Refresh, session.id().shard());
        self.store
            .insert_refresh(RefreshState {
                id: token.id(),
                verifier_hash: token.verifier_hash(),
                session_id: session.id(),
                user_id: session.user_id().clone(),
                created_at: self.clock.now(),
                client_id: Some(client.clone()),
                rotated: None,
            })
            .await?;
        Ok(token)
    }

    /// Uses a refresh token on behalf of `client`: checks it, its client and its
    /// session, records activity, and rotates it; the successor is bound to the
    /// same client. See the module documentation for reuse, the grace window and
    /// the client binding.
    pub async fn refresh(&self, presented: &str, client: &ClientId) -> Result<Refreshed> {
        let now = self.clock.now();
        let (parsed, state) = self
            .check_refresh(presented)
            .await
            .inspect_err(|e| self.refresh_refused(e))?;
        // Checked before the session, so that another client's attempt is not
        // activity. A token stored before binding existed binds its successor now.
        if state.rotated.is_none() && state.client_id.as_ref().is_some_and(|c| c != client) {
            self.record(
                EventKind::RefreshClientMismatch,
                Some(&state.user_id),
                Some(&state.session_id),
                None,
            )
            .await;
            tracing::warn!(
                target: super::LIFECYCLE,
                event = "refresh_client_mismatch",
                user = %state.user_id,
                session = %state.session_id,
                "a refresh token was presented by another client than it was issued to; refused"
            );
            self.observer
                .tell(Observation::Refresh(RefreshOutcome::ClientMismatch));
            return Err(Error::ClientMismatch);
        }
        let session = self
            .validate_authenticated_id(&state.session_id, true)
            .await
            .inspect_err(|e| self.refresh_refused(e))?;
        let done = match state.rotated {
            Some(done) => done,
            None => {
                let successor = Token::generate_in(TokenKind::Refresh, state.id.shard());
                let rotation = Rotation {
                    at: now,
                    successor: successor.id(),
                    sealed_successor: SealedSecret(parsed.seal(&successor)),
                };
                let record = RefreshState {
                    id: successor.id(),
                    verifier_hash: successor.verifier_hash(),
                    session_id: state.session_id,
                    user_id: state.user_id.clone(),
                    created_at: now,
                    client_id: Some(client.clone()),
                    rotated: None,
                };
                match self
                    .store
                    .rotate_refresh(&parsed.id(), rotation, record)
                    .await?
                {
                    None => {
                        self.observer
                            .tell(Observation::Refresh(RefreshOutcome::Rotated));
                        self.record(
                            EventKind::Refreshed,
                            Some(&state.user_id),
                            Some(&state.session_id),
                            None,
                        )
                        .await;
                        return Ok(Refreshed {
                            session,
                            refresh: successor,
                        });
                    }
                    Some(done) => done,
                }
            }
        };
        let grace = self.policy_of(session.profile()).refresh_reuse_grace;
        if let Some(again) = self
            .repeat_within_grace(&parsed, done, client, now, grace)
            .await?
        {
            self.observer
                .tell(Observation::Refresh(RefreshOutcome::Repeated));
            self.record(
                EventKind::RefreshRepeated,
                Some(&state.user_id),
                Some(&state.session_id),
                None,
            )
            .await;
            return Ok(Refreshed {
                session,
                refresh: again,
            });
        }
        // Reuse of a replaced token: whoever holds the live successor, this copy is
        // suspect, so the whole session ends.
        self.observer
            .tell(Observation::Refresh(RefreshOutcome::ReuseDetected));
        self.end(
            &state.session_id,
            Reason::RefreshReuseDetected,
            EventKind::RefreshReuseDetected,
        )
        .await?;
        tracing::warn!(
            target: super::LIFECYCLE,
            event = "refresh_reuse_detected",
            user = %state.user_id,
            session = %state.session_id,
            "a rotated refresh token was presented again; the session is revoked"
        );
        Err(Error::Rejected(Rejection::ended(crate::Revocation {
            reason: Reason::RefreshReuseDetected,
            at: now,
        })))
    }

    /// Reports a refresh refused for `err`: a rejection with its reason; a store
    /// failure decides nothing and is not reported.
    fn refresh_refused(&self, err: &Error) {
        if let Error::Rejected(r) = err {
            self.observer
                .tell(Observation::Refresh(RefreshOutcome::Rejected(r.reason)));
        }
    }

    /// Ends the session of a genuine refresh token with `reason` (logout or RFC 7009
    /// revocation with a refresh token). Anything else is ignored. Returns whether
    /// this call revoked it.
    pub async fn revoke_by_refresh_token(&self, presented: &str, reason: Reason) -> Result<bool> {
        match self.check_refresh(presented).await {
            Ok((_, state)) => self.revoke(&state.session_id, reason).await,
            Err(Error::Rejected(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The session a genuine refresh token belongs to, if it is live (for
    /// introspection). Does not rotate or record activity.
    pub async fn refresh_token_session(&self, presented: &str) -> Result<ValidSession> {
        let (_, state) = self.check_refresh(presented).await?;
        if state.rotated.is_some() {
            // A replaced token is not active, even within the grace window.
            return Err(Error::Rejected(Rejection::INVALID));
        }
        self.validate_authenticated_id(&state.session_id, false)
            .await
    }

    async fn check_refresh(&self, presented: &str) -> Result<(Token, RefreshState)> {
        let parsed = Token::parse(presented, TokenKind::Refresh)
            .map_err(|_| Error::Rejected(Rejection::INVALID))?;
        match self.store.load_refresh(&parsed.id()).await? {
            Some(state) if parsed.verify(&state.verifier_hash) => Ok((parsed, state)),
            _ => Err(Error::Rejected(Rejection::INVALID)),
        }
    }

    /// The successor handed out by `done`, if `done` is recent enough, its
    /// successor has not itself been used, and `client` is the one it is bound to:
    /// a retry, not a theft.
    async fn repeat_within_grace(
        &self,
        parsed: &Token,
        done: Rotation,
        client: &ClientId,
        now: Timestamp,
        grace: std::time::Duration,
    ) -> Result<Option<Token>> {
        if grace.is_zero() || done.at > now || now.duration_since(done.at) > grace {
            return Ok(None);
        }
        let Some(next) = self.store.load_refresh(&done.successor).await? else {
            return Ok(None);
        };
        if next.rotated.is_some() || next.client_id.as_ref().is_some_and(|c| c != client) {
            return Ok(None);
        }
        let again = parsed.unseal(TokenKind::Refresh, done.successor, &done.sealed_successor.0);
        Ok(again.verify(&next.verifier_hash).then_some(again))
    }
}
