//! Access tokens: short-lived JWTs (invariant 8) that name the session they came
//! from in `sid`, and the token pair a token client receives.
//!
//! ## What a JWT proves here, and what it does not
//!
//! This server never trusts an access token's signature alone: after
//! [`Verifier::verify`](sessionguard_jwt::Verifier::verify) (issuer, audience,
//! expiry, algorithm pinned to the key, all at the engine's clock), the session
//! the token names must still be alive
//! ([`Engine::validate_authenticated_id`](sessionguard_core::Engine::validate_authenticated_id)).
//! So after a logout, a password change or any revocation, this server refuses
//! the access token at once, with the reason code (invariant 2).
//!
//! A resource server that verifies access tokens **offline**, with nothing but the
//! JWKS, cannot know that: it accepts a token until its `exp`, at most
//! `policy.access_token_ttl` (default 5 minutes) after a logout. That is the price
//! of offline verification and the reason the lifetime is short. A resource
//! server that must honour a logout at once calls `POST /v1/introspect` instead.

use std::fmt;

use serde::Serialize;
use sessionguard_core::{ClientId, Clock, Store, Token, ValidSession};
use sessionguard_http::check::AccessTokens;
pub use sessionguard_jwt::looks_like_jwt;
use sessionguard_jwt::{AccessClaims, JwtError};
use zeroize::Zeroizing;

use crate::error::ApiError;
use crate::state::AppState;

/// The longest `client_id` accepted, in bytes.
pub const MAX_CLIENT_ID_LEN: usize = ClientId::MAX_LEN;

/// Whether `client_id` is acceptable (RFC 6749 §A.1: visible ASCII and spaces),
/// 1 to [`MAX_CLIENT_ID_LEN`] bytes ([`ClientId::new`]).
pub fn valid_client_id(client_id: &str) -> bool {
    ClientId::new(client_id).is_ok()
}

/// The client an access token was issued to: its `client_id` claim, or the
/// first-party client for a token without one (issued before every token
/// carried it). A token keeps its client through a step-up or a password change.
pub fn client_of(claims: &AccessClaims) -> ClientId {
    claims
        .client_id()
        .and_then(|c| ClientId::new(c).ok())
        .unwrap_or_else(ClientId::first_party)
}

/// A signed access token and its lifetime. The token is zeroized on drop and
/// never printed.
pub struct AccessToken {
    token: Zeroizing<String>,
    expires_in: u64,
}

impl AccessToken {
    /// The signed token: hand it to the client once.
    pub fn secret(&self) -> &str {
        &self.token
    }

    /// Its lifetime in seconds.
    pub fn expires_in(&self) -> u64 {
        self.expires_in
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("token", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// The answer of a token grant (RFC 6749 §5.1): a new access token, the refresh
/// token to use next, and the session they belong to. Secret: `Debug` shows
/// neither token.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenPair {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
    refresh_token: String,
    session_id: String,
}

impl TokenPair {
    /// The pair for `session`: `access` and the refresh token `refresh`.
    pub fn new(session: &ValidSession, access: &AccessToken, refresh: &Token) -> Self {
        TokenPair {
            access_token: access.token.to_string(),
            token_type: "Bearer",
            expires_in: access.expires_in,
            refresh_token: refresh.reveal().to_string(),
            session_id: session.id().to_string(),
        }
    }
}

impl fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenPair")
            .field("session_id", &self.session_id)
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

impl<S: Store, C: Clock> AppState<S, C> {
    /// Signs an access token for `session` with the active key: `iss`, `sub` (the
    /// user id), `aud`, `iat`, `exp`, a random `jti`, `sid` and `client_id`, the
    /// client the grant was made for (RFC 9068 §2.2; `"first-party"` for grants
    /// made without one, [`ClientId::first_party`]). It lives
    /// `policy.access_token_ttl`, but never past the session's absolute deadline.
    /// Time is the engine's clock.
    pub fn issue_access_token(
        &self,
        session: &ValidSession,
        client: &ClientId,
    ) -> Result<AccessToken, ApiError> {
        let engine = self.engine();
        let now = engine.clock().now();
        let ttl = engine
            .policy_of(session.profile())
            .access_token_ttl
            .min(session.absolute_deadline().duration_since(now));
        let verifier = self.verifier();
        let claims = AccessClaims::new(
            verifier.issuer(),
            session.user_id().as_str(),
            verifier.audience(),
            session.id(),
            now,
            ttl,
        )
        .with_client_id(client.as_str());
        let token = self
            .keys()
            .sign(&claims)
            .map_err(|e| ApiError::Internal(format!("signing an access token failed: {e}")))?;
        let lifetime = claims.exp().duration_since(claims.iat());
        Ok(AccessToken {
            token: Zeroizing::new(token),
            expires_in: lifetime.as_secs(),
        })
    }

    /// Issues an access token and the first refresh token for a new `session`,
    /// both for `client` (the refresh token is bound to it).
    pub async fn issue_token_pair(
        &self,
        session: &ValidSession,
        client: &ClientId,
    ) -> Result<TokenPair, ApiError> {
        let refresh = self.engine().issue_refresh(session, client).await?;
        let access = self.issue_access_token(session, client)?;
        Ok(TokenPair::new(session, &access, &refresh))
    }

    /// Verifies an access token's signature and claims at the engine's clock.
    /// Says nothing about its session: see [`AppState::access_session`]. A
    /// signature verified before is not computed again
    /// ([`sessionguard_jwt::SignatureMemo`]); everything else is checked every time.
    ///
    /// A token signed by a key this node does not know is checked once more
    /// after reloading the shared key set, if keys are shared: another node may
    /// just have rotated in a new key.
    pub async fn verify_access_token(&self, token: &str) -> Result<AccessClaims, ApiError> {
        self.verify_jwt(token)
            .await
            .map_err(ApiError::InvalidAccessToken)
    }

    /// [`AppState::verify_access_token`], with the rule that failed.
    async fn verify_jwt(&self, token: &str) -> Result<AccessClaims, JwtError> {
        let now = self.engine().clock().now();
        let memo = self.signature_memo();
        let verified = match self
            .verifier()
            .verify_memoized(&self.keys(), token, now, memo)
        {
            Err(JwtError::UnknownKey) if self.reload_shared_keys().await => self
                .verifier()
                .verify_memoized(&self.keys(), token, now, memo),
            other => other,
        };
        // Refused before the engine sees it: counted here (the engine counts
        // the checks of the session behind a verified token).
        if verified.is_err() {
            self.metrics().access_token_refused();
        }
        verified
    }

    /// Verifies an access token and checks that the session it names is alive on
    /// this server (recording activity with `touch`) and accepts the token
    /// ([`Engine::validate_access`](sessionguard_core::Engine::validate_access):
    /// `sub` is the session's user, the token is not older than the session's
    /// current token). A bad token is `invalid_token`; a token whose session ended
    /// gets the session's reason.
    pub async fn access_session(
        &self,
        token: &str,
        touch: bool,
    ) -> Result<(ValidSession, AccessClaims), ApiError> {
        let claims = self.verify_access_token(token).await?;
        let session = self
            .engine()
            .validate_access(&claims.sid(), claims.sub(), claims.iat(), touch)
            .await
            .map_err(|e| ApiError::session(e, true))?;
        Ok((session, claims))
    }
}

/// The server verifies access tokens with its own keys (reloading shared ones
/// for an unknown `kid`), wherever a request is checked by
/// [`sessionguard_http::check`].
impl<S: Store, C: Clock> AccessTokens for AppState<S, C> {
    async fn verify(&self, token: &str) -> Result<AccessClaims, JwtError> {
        self.verify_jwt(token).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids() {
        assert!(valid_client_id("my-app"));
        assert!(valid_client_id("my app 1.0"));
        assert!(!valid_client_id(""));
        assert!(!valid_client_id("tab\there"));
        assert!(!valid_client_id("é"));
        assert!(!valid_client_id(&"a".repeat(256)));
    }
}
