//! The session check of a request, as the forward-auth endpoint and the
//! middleware's in-process mode both do it: find the credential, apply the
//! cross-site rule, check it through the engine, and learn who the user is.
//!
//! | credential | check |
//! |---|---|
//! | session cookie | the origin rule when the method can change state (before any store call), then `Engine::validate_renewing`: a token due for rotation is replaced and the new one returned |
//! | `Bearer sgs_…` (session token) | `Engine::validate` |
//! | `Bearer <JWT>` (access token) | the caller's [`AccessTokens`] (signature, claims), then `Engine::validate_access` |
//! | `Bearer sga_…` (personal API token) | `Engine::validate_api_token` |
//! | anything else | `invalid_token`; nothing at all: [`Refused::Missing`] |
//!
//! The caller learns who the user is when it needs to: `Engine::identity`
//! with [`Checked::privileges`] gives the username and roles, remembered under
//! the privilege count the check read (in the steady state, no store read).

use std::future::Future;

use http::{HeaderMap, Method};
use sessionguard_core::{Clock, Rejection, Store, Token, TokenId, UserId, ValidSession};
use sessionguard_jwt::{AccessClaims, JwtError};

use crate::credential::{CredentialSource, Presented, TokenForm};
use crate::csrf;

/// How access tokens (JWTs) are verified where the check runs: signature,
/// header and claims, at the engine's time. The session they name is then the
/// engine's to check.
pub trait AccessTokens: Send + Sync {
    /// The verified claims of `token`, or why it is not one of ours.
    fn verify(&self, token: &str) -> impl Future<Output = Result<AccessClaims, JwtError>> + Send;
}

/// Access tokens are not accepted: every JWT is `invalid_token`.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoAccessTokens;

impl AccessTokens for NoAccessTokens {
    async fn verify(&self, _: &str) -> Result<AccessClaims, JwtError> {
        Err(JwtError::UnknownKey)
    }
}

/// A live credential: who, how, and what the check changed.
#[derive(Debug)]
pub struct Checked {
    /// The credential's user.
    pub user: UserId,
    /// The user's privilege count read with the credential
    /// (`ValidSession::user_privileges`): the key of `Engine::identity`.
    pub privileges: u64,
    /// The session, unless the credential was a personal API token.
    pub session: Option<ValidSession>,
    /// The personal API token's id, if that was the credential.
    pub api_token: Option<TokenId>,
    /// How the credential came.
    pub source: CredentialSource,
    /// The session token that replaced the presented cookie, to set as the
    /// cookie on the response.
    pub renewed: Option<Token>,
}

/// Why a check refused a request.
#[derive(Debug)]
#[non_exhaustive]
pub enum Refused {
    /// The request carries no credential at all (`missing_credentials`).
    Missing,
    /// The credential is not, or no longer, a live one (the reason code).
    Rejected {
        /// Why, and since when.
        rejection: Rejection,
        /// Whether it came as a bearer token.
        bearer: bool,
    },
    /// A cookie-authenticated request that can change state came from another
    /// site (`cross_origin_request`); no store call was made.
    CrossOrigin,
    /// The engine or the store failed: the request must be refused, never let
    /// through.
    Failed(sessionguard_core::Error),
}

impl Refused {
    fn from_engine(err: sessionguard_core::Error, bearer: bool) -> Self {
        match err {
            sessionguard_core::Error::Rejected(rejection) => {
                Refused::Rejected { rejection, bearer }
            }
            other => Refused::Failed(other),
        }
    }
}

/// Checks the credential of a request whose method is `method` (for a proxied
/// request, the original one) against `engine`; cookie-authenticated requests
/// that can change state must pass the origin rule against `public_origin`.
/// See the module documentation.
pub async fn check_request<S: Store, C: Clock, A: AccessTokens>(
    engine: &sessionguard_core::Engine<S, C>,
    headers: &HeaderMap,
    method: &Method,
    public_origin: &str,
    access: &A,
) -> Result<Checked, Refused> {
    let credential = match Presented::find(headers) {
        Ok(Some(c)) => c,
        Ok(None) => return Err(Refused::Missing),
        Err(unreadable) => {
            return Err(Refused::Rejected {
                rejection: Rejection::INVALID,
                bearer: unreadable.source == CredentialSource::Bearer,
            });
        }
    };
    let source = credential.source();
    let bearer = credential.is_bearer();
    let reject = |e| Refused::from_engine(e, bearer);
    let mut renewed = None;
    let session = match (source, credential.form()) {
        (CredentialSource::Cookie, _) => {
            if csrf::is_unsafe(method) {
                // Before the lookup: a refused cross-site request is not activity.
                csrf::check_origin(headers, public_origin).map_err(|_| Refused::CrossOrigin)?;
            }
            let checked = engine
                .validate_renewing(credential.token())
                .await
                .map_err(reject)?;
            renewed = checked.new_token;
            checked.session
        }
        (_, TokenForm::Session) => engine.validate(credential.token()).await.map_err(reject)?,
        (_, TokenForm::Access) => {
            let claims =
                access
                    .verify(credential.token())
                    .await
                    .map_err(|_| Refused::Rejected {
                        rejection: Rejection::INVALID,
                        bearer: true,
                    })?;
            engine
                .validate_access(&claims.sid(), claims.sub(), claims.iat(), true)
                .await
                .map_err(reject)?
        }
        (_, TokenForm::Api) => {
            let token = engine
                .validate_api_token(credential.token())
                .await
                .map_err(reject)?;
            return Ok(Checked {
                user: token.user_id().clone(),
                privileges: token.user_privileges(),
                session: None,
                api_token: Some(token.id()),
                source,
                renewed: None,
            });
        }
        _ => {
            return Err(Refused::Rejected {
                rejection: Rejection::INVALID,
                bearer: true,
            });
        }
    };
    Ok(Checked {
        user: session.user_id().clone(),
        privileges: session.user_privileges(),
        session: Some(session),
        api_token: None,
        source,
        renewed,
    })
}
