//! The admin API (bearer admin token): users with credentials, and sidecar mode
//! for apps that keep their own user database.

use std::fmt;
use std::net::IpAddr;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sessionguard_core::{ClientInfo, Clock, Password, Reason, Store, UserAccess, UserId};

use crate::error::ApiError;
use crate::extract::{Admin, JsonBody, PathParam};
use crate::routes::SessionList;
use crate::state::AppState;

/// Longest username, in characters.
pub const MAX_USERNAME_CHARS: usize = 64;

/// The reasons an admin may give for ending all of a user's sessions.
const ADMIN_REASONS: [Reason; 3] = [
    Reason::PasswordChanged,
    Reason::RevokedByAdmin,
    Reason::SignedOutEverywhere,
];

/// `{"username","password"}`.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewUser {
    username: String,
    password: String,
}

impl fmt::Debug for NewUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewUser")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// `{"id"}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedUser {
    id: String,
}

/// `{"user_id","user_agent"?,"ip"?}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewSession {
    user_id: String,
    user_agent: Option<String>,
    ip: Option<String>,
}

/// A sidecar session: the only response that carries a session token in its body,
/// for the app to hand to its client.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedSession {
    session_token: String,
    session_id: String,
    user_id: String,
    created_at: String,
    idle_expires_at: String,
    absolute_expires_at: String,
}

impl fmt::Debug for CreatedSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreatedSession")
            .field("session_id", &self.session_id)
            .field("user_id", &self.user_id)
            .field("session_token", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// `{"reason"}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct RevokeBody {
    reason: String,
}

/// `{"user_id","reason","revoked_at"}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Revoked {
    user_id: String,
    reason: &'static str,
    revoked_at: String,
}

/// `POST /v1/admin/users`: creates a user with a password.
pub async fn create_user<S: Store, C: Clock>(
    State(state): State<AppState<S, C>>,
    _: Admin,
    JsonBody(body): JsonBody<NewUser>,
) -> Result<(StatusCode, Json<CreatedUser>), ApiError> {
    validate_username(&body.username)?;
    let password = Password::new_for_setting(body.password).map_err(ApiError::WeakPassword)?;
    let hash = state.with_hasher(move |h| h.hash(&password)).await?;
    let id = UserId::random();
    state
        .engine()
        .store()
        .create_user(&id, &body.username, hash)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedUser { id: id.to_string() }),
    ))
}

/// `POST /v1/admin/sessions`: creates a session for a user of the app's own
/// database (sidecar mode) and returns its token.
pub async fn create_session<S: Store, C: Clock>(
    State(state): State<AppState<S, C>>,
    _: Admin,
    JsonBody(body): JsonBody<NewSession>,
) -> Result<(StatusCode, Json<CreatedSession>), ApiError> {
    let user = UserId::new(&body.user_id).map_err(|_| ApiError::InvalidUserId)?;
    let ip = match body.ip.as_deref() {
        Some(ip) => Some(
            ip.parse::<IpAddr>()
                .map_err(|_| ApiError::malformed("`ip` is not an IP address."))?,
        ),
        None => None,
    };
    let client = ClientInfo::new(body.user_agent.as_deref(), ip);
    let engine = state.engine();
    let epoch = engine.store().user_epoch(&user).await?.epoch;
    let issued = engine
        .create_session(&user, epoch, client)
        .await
        .map_err(|e| match e {
            sessionguard_core::Error::Rejected(_) => {
                ApiError::Conflict("the user's sessions were revoked concurrently")
            }
            other => other.into(),
        })?;
    let s = &issued.session;
    let body = CreatedSession {
        session_token: issued.token.reveal().to_string(),
        session_id: s.id().to_string(),
        user_id: s.user_id().to_string(),
        created_at: s.created_at().to_rfc3339(),
        idle_expires_at: s.idle_deadline().to_rfc3339(),
        absolute_expires_at: s.absolute_deadline().to_rfc3339(),
    };
    Ok((StatusCode::CREATED, Json(body)))
}

/// `POST /v1/admin/users/{id}/revoke`: ends every session of the user at once.
pub async fn revoke_user<S: Store, C: Clock>(
    State(state): State<AppState<S, C>>,
    _: Admin,
    PathParam(id): PathParam,
    JsonBody(body): JsonBody<RevokeBody>,
) -> Result<Json<Revoked>, ApiError> {
    let user = UserId::new(&id).map_err(|_| ApiError::InvalidUserId)?;
    let reason = Reason::from_code(&body.reason)
        .filter(|r| ADMIN_REASONS.contains(r))
        .ok_or(ApiError::InvalidReason)?;
    let epoch = state.engine().revoke_user(&user, reason).await?;
    let revoked_at = epoch
        .last_bump
        .map_or_else(|| state.engine().clock().now(), |b| b.at);
    Ok(Json(Revoked {
        user_id: user.to_string(),
        reason: reason.code(),
        revoked_at: revoked_at.to_rfc3339(),
    }))
}

/// `{"profile"?, "roles"?}`: what to change; an absent field is left as it is,
/// `"profile": null` returns the user to the default profile.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserUpdate {
    #[serde(default, deserialize_with = "some")]
    profile: Option<Option<String>>,
    roles: Option<Vec<String>>,
}

/// Lets `"profile": null` (clear) differ from an absent `profile` (keep).
fn some<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// A user as the admin API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserView {
    user_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    /// The profile the user's sessions follow (the default one if not assigned).
    profile: String,
    /// Whether the profile is assigned (`false`: the default applies).
    profile_assigned: bool,
    roles: Vec<String>,
}

async fn user_view<S: Store, C: Clock>(
    state: &AppState<S, C>,
    user: &UserId,
) -> Result<UserView, ApiError> {
    let store = state.engine().store();
    let access = store.user_access(user).await?;
    let username = store.get_user(user).await?.map(|u| u.username);
    let profiles = state.engine().profiles();
    let profile = access
        .profile
        .as_ref()
        .filter(|p| profiles.get(p.as_str()).is_some())
        .unwrap_or_else(|| profiles.default_name());
    Ok(UserView {
        user_id: user.to_string(),
        username,
        profile: profile.to_string(),
        profile_assigned: access.profile.is_some(),
        roles: access.roles,
    })
}

/// `GET /v1/admin/users/{id}`: the user's profile and roles (and username, for
/// users with credentials here).
pub async fn get_user<S: Store, C: Clock>(
    State(state): State<AppState<S, C>>,
    _: Admin,
    PathParam(id): PathParam,
) -> Result<Json<UserView>, ApiError> {
    let user = UserId::new(&id).map_err(|_| ApiError::InvalidUserId)?;
    Ok(Json(user_view(&state, &user).await?))
}

/// `POST /v1/admin/users/{id}`: changes a user's profile and/or roles (also for
/// sidecar users). Every session of the user gets a new token at its next
/// request (`privilege_changed`) and follows the new profile from then on; if the
/// new profile allows fewer concurrent sessions, the least recently used ones end
/// now. 422 `invalid_profile` / `invalid_roles`.
pub async fn update_user<S: Store, C: Clock>(
    State(state): State<AppState<S, C>>,
    _: Admin,
    PathParam(id): PathParam,
    JsonBody(body): JsonBody<UserUpdate>,
) -> Result<Json<UserView>, ApiError> {
    let user = UserId::new(&id).map_err(|_| ApiError::InvalidUserId)?;
    let engine = state.engine();
    let current = engine.store().user_access(&user).await?;
    let profile = match body.profile {
        None => current.profile,
        Some(None) => None,
        Some(Some(name)) => Some(
            engine
                .profiles()
                .get(&name)
                .map(|(n, _)| n.clone())
                .ok_or(ApiError::InvalidProfile)?,
        ),
    };
    let roles = body.roles.unwrap_or(current.roles);
    let access = UserAccess::new(profile, roles).map_err(|_| ApiError::InvalidRoles)?;
    engine.update_user_access(&user, access).await?;
    Ok(Json(user_view(&state, &user).await?))
}

/// `GET /v1/admin/users/{id}/sessions`: the user's live sessions.
pub async fn list_user_sessions<S: Store, C: Clock>(
    State(state): State<AppState<S, C>>,
    _: Admin,
    PathParam(id): PathParam,
) -> Result<Json<SessionList>, ApiError> {
    let user = UserId::new(&id).map_err(|_| ApiError::InvalidUserId)?;
    let records = state.engine().list_sessions(&user).await?;
    Ok(Json(SessionList::new(&records, None)))
}

/// A username is 1 to 64 characters, without control characters, invisible
/// formatting characters (bidirectional overrides and isolates, zero-width
/// characters), or whitespace at either end — so that neither `"alice "` nor
/// `"\u{202e}ecila"` can pass for `"alice"`.
fn validate_username(name: &str) -> Result<(), ApiError> {
    let chars = name.chars().count();
    let ok = (1..=MAX_USERNAME_CHARS).contains(&chars)
        && !name
            .chars()
            .any(|c| c.is_control() || is_invisible_format(c))
        && name.trim() == name;
    if ok {
        Ok(())
    } else {
        Err(ApiError::InvalidUsername)
    }
}

/// Unicode format characters that change how text displays without showing
/// themselves: bidirectional marks, embeddings, overrides and isolates, and
/// zero-width characters.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert!(validate_username("alice").is_ok());
        assert!(validate_username("Zoë Ångström").is_ok());
        assert!(validate_username(&"é".repeat(64)).is_ok());
        assert!(validate_username("").is_err());
        assert!(validate_username(&"a".repeat(65)).is_err());
        assert!(validate_username(" alice").is_err());
        assert!(validate_username("alice\t").is_err());
        assert!(validate_username("al\u{0}ice").is_err());
        assert!(
            validate_username("\u{202e}ecila").is_err(),
            "right-to-left override"
        );
        assert!(
            validate_username("ali\u{200b}ce").is_err(),
            "zero-width space"
        );
        assert!(validate_username("alice\u{2066}").is_err(), "isolate");
        assert!(
            validate_username("علي").is_ok(),
            "right-to-left scripts are fine"
        );
    }
}
