//! Personal API tokens (`sga_…`): long-lived credentials a user creates for
//! scripts and integrations, managed with a session (cookie with the CSRF rules,
//! bearer session token or bearer access token). A token is shown once, at
//! creation; lists never carry it. The engine bounds its lifetime by
//! `policy.api_token_max_ttl` and ends it on a password change unless
//! `policy.revoke_api_tokens_on_password_change` is off. Resource servers check
//! one with `POST /v1/introspect`.

use std::fmt;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sessionguard_core::{ApiTokenRecord, Clock, Store, Token, TokenId, ValidSession};

use crate::error::ApiError;
use crate::extract::{JsonBody, LiveSession, PathParam};
use crate::state::AppState;

/// `{"name","expires_in"?}`: `expires_in` in seconds, at most (and by default)
/// `policy.api_token_max_ttl`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewApiToken {
    name: String,
    expires_in: Option<i64>,
}

/// The one response that carries an API token: `{"id","token","name",
/// "created_at","expires_at"}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedApiToken {
    id: String,
    token: String,
    name: String,
    created_at: String,
    expires_at: String,
}

impl fmt::Debug for CreatedApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreatedApiToken")
            .field("id", &self.id)
            .field("token", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// One entry of a list of API tokens: never the token itself.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiTokenItem {
    id: String,
    name: String,
    created_at: String,
    last_used_at: Option<String>,
    expires_at: String,
}

impl From<&ApiTokenRecord> for ApiTokenItem {
    fn from(r: &ApiTokenRecord) -> Self {
        ApiTokenItem {
            id: r.id.to_string(),
            name: r.name.clone(),
            created_at: r.created_at.to_rfc3339(),
            last_used_at: r.last_used_at.map(|t| t.to_rfc3339()),
            expires_at: r.expires_at.to_rfc3339(),
        }
    }
}

/// `{"api_tokens": [...]}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiTokenList {
    api_tokens: Vec<ApiTokenItem>,
}

/// `POST /v1/api-tokens`: creates an API token for the session's user; 201 with
/// the token, shown this once. 422 `invalid_name` or `invalid_expiry`; 403
/// `step_up_required` when the session is older than `step_up_ttl` and has not
/// stepped up since.
pub async fn create<S: Store, C: Clock>(
    State(state): State<AppState<S, C>>,
    auth: LiveSession,
    JsonBody(body): JsonBody<NewApiToken>,
) -> Result<(StatusCode, Json<CreatedApiToken>), ApiError> {
    let (token, record) = create_token(
        &state,
        &auth.session,
        auth.credential.is_bearer(),
        &body.name,
        body.expires_in,
    )
    .await?;
    let body = CreatedApiToken {
        id: record.id.to_string(),
        token: token.reveal().to_string(),
        name: record.name,
        created_at: record.created_at.to_rfc3339(),
        expires_at: record.expires_at.to_rfc3339(),
    };
    Ok((StatusCode::CREATED, Json(body)))
}

/// The creation shared by `POST /v1/api-tokens` and the account page: the
/// step-up rule (403 `step_up_required`), the lifetime (`expires_in` seconds, at
/// most and by default the profile's `api_token_max_ttl`; 422 `invalid_expiry`)
/// and the name (422 `invalid_name`). Returns the token, to be shown once, and
/// its record. `bearer` says how the session's credential was presented, for the
/// rejection if it ended meanwhile.
pub(crate) async fn create_token<S: Store, C: Clock>(
    state: &AppState<S, C>,
    session: &ValidSession,
    bearer: bool,
    name: &str,
    expires_in: Option<i64>,
) -> Result<(Token, ApiTokenRecord), ApiError> {
    let engine = state.engine();
    engine
        .require_step_up(session)
        .await
        .map_err(|e| ApiError::session(e, bearer))?;
    let ttl = match expires_in {
        None => None,
        Some(secs) => {
            let ttl = u64::try_from(secs)
                .ok()
                .filter(|&s| s > 0)
                .map(Duration::from_secs)
                .ok_or(ApiError::InvalidExpiry)?;
            if ttl
                > engine
                    .policy_of_user(session.user_id())
                    .await?
                    .api_token_max_ttl
            {
                return Err(ApiError::InvalidExpiry);
            }
            Some(ttl)
        }
    };
    engine
        .create_api_token(session.user_id(), name, ttl)
        .await
        .map_err(|e| match e {
            // The expiry was checked above, so the engine's remaining input rule is
            // the name's.
            sessionguard_core::Error::InvalidInput(_) => ApiError::InvalidName,
            other => ApiError::session(other, bearer),
        })
}

/// `GET /v1/api-tokens`: the user's live API tokens, newest first, without secrets.
pub async fn list<S: Store, C: Clock>(
    State(state): State<AppState<S, C>>,
    auth: LiveSession,
) -> Result<Json<ApiTokenList>, ApiError> {
    let records = state
        .engine()
        .list_api_tokens(auth.session.user_id())
        .await?;
    Ok(Json(ApiTokenList {
        api_tokens: records.iter().map(ApiTokenItem::from).collect(),
    }))
}

/// `DELETE /v1/api-tokens/{id}`: revokes one of the user's live API tokens
/// (`revoked_by_user`); 404 for anything else, so other users' tokens cannot be
/// probed.
pub async fn revoke<S: Store, C: Clock>(
    State(state): State<AppState<S, C>>,
    auth: LiveSession,
    PathParam(id): PathParam,
) -> Result<StatusCode, ApiError> {
    let id = TokenId::parse(&id).map_err(|_| ApiError::NotFound)?;
    state
        .engine()
        .revoke_own_api_token(auth.session.user_id(), &id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
