//! The end-user API: login, the current session, logout, password change and the
//! user's list of sessions. Cookie (browser) and bearer flows alike; every rule
//! about validity is the engine's.

use std::fmt;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sessionguard_core::{Clock, Issued, Password, Reason, Store, TokenId, UserRecord};

use crate::csrf::SameOrigin;
use crate::error::ApiError;
use crate::extract::{
    Client, Credential, JsonBody, JsonOrForm, LiveSession, PathParam, PeekSession, SESSION_COOKIE,
};
use crate::routes::{SessionList, SessionView};
use crate::state::AppState;

/// The session cookie's attributes. No `Max-Age`: a browser-session cookie; the
/// server-side idle and absolute deadlines are the control, never the cookie's life.
const COOKIE_ATTRIBUTES: &str = "Path=/; Secure; HttpOnly; SameSite=Lax";

/// The `Set-Cookie` value that makes browsers drop the session cookie.
const CLEAR_COOKIE: &str = "__Host-sg_session=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0";

/// `{"username","password"}` for login.
#[derive(Deserialize)]
pub struct LoginBody {
    username: String,
    password: String,
}

/// `{"current_password","new_password"}`.
#[derive(Deserialize)]
pub struct PasswordBody {
    current_password: String,
    new_password: String,
}

impl fmt::Debug for LoginBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginBody")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl fmt::Debug for PasswordBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordBody(<redacted>)")
    }
}

/// A session view plus, for bearer clients only, the new token.
#[derive(Serialize)]
struct RotatedSession {
    #[serde(flatten)]
    view: SessionView,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_token: Option<String>,
}

/// `POST /v1/login`: checks the password and starts a new session, revoking any
/// session token presented with the request (anti-fixation). Unknown users and
/// wrong passwords are answered alike, in the same time.
pub async fn login<S: Store, C: Clock>(
    State(state): State<AppState<S, C>>,
    _: SameOrigin,
    headers: HeaderMap,
    Client(client): Client,
    JsonOrForm(body): JsonOrForm<LoginBody>,
) -> Result<Response, ApiError> {
    let password = Password::new(body.password).map_err(|_| ApiError::InvalidCredentials)?;
    let user = state
        .engine()
        .store()
        .find_user_by_username(&body.username)
        .await?;
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    let verified = state
        .with_hasher(move |h| h.verify(&password, hash.as_ref()))
        .await?;
    let Some(UserRecord { id, epoch, .. }) = user.filter(|_| verified) else {
        // No username: a password typed into the wrong field must not reach the logs.
        tracing::info!(target: sessionguard_core::engine::LIFECYCLE, event = "login_failed");
        return Err(ApiError::InvalidCredentials);
    };
    // A credential that cannot even be read cannot be a live session to revoke.
    let presented = Credential::from_headers(&headers).ok().flatten();
    let issued = state
        .engine()
        .login(
            &id,
            epoch,
            client,
            presented.as_ref().map(Credential::token),
        )
        .await
        .map_err(|e| match e {
            sessionguard_core::Error::Rejected(_) => {
                ApiError::Conflict("the user's credentials changed during login")
            }
            other => other.into(),
        })?;
    Ok(with_cookie(
        StatusCode::OK,
        &issued,
        Json(SessionView::from(&issued.session)),
    ))
}

/// `GET /v1/session`: the current session; counts as activity.
pub async fn current(auth: LiveSession) -> Json<SessionView> {
    Json(SessionView::from(&auth.session))
}

/// `GET /v1/session/status`: the current session without counting as activity.
pub async fn status(auth: PeekSession) -> Json<SessionView> {
    Json(SessionView::from(&auth.session))
}

/// `POST /v1/logout`: revokes the session (durably) before answering, and clears
/// the cookie for cookie clients.
pub async fn logout<S: Store, C: Clock>(
    State(state): State<AppState<S, C>>,
    auth: PeekSession,
) -> Result<Response, ApiError> {
    // The extractor has checked the session (and CSRF); revoking it by id is durable
    // before we answer. Losing a race to another revocation still ends the session.
    state
        .engine()
        .revoke(&auth.session.id(), Reason::LoggedOut)
        .await?;
    let mut res = StatusCode::NO_CONTENT.into_response();
    // Only the cookie that authenticated the request is cleared: with a bearer
    // token, a cookie in the same client belongs to another, still live session.
    if !auth.credential.is_bearer() {
        res.headers_mut()
            .insert(header::SET_COOKIE, HeaderValue::from_static(CLEAR_COOKIE));
    }
    Ok(res)
}

/// `POST /v1/password`: verifies the current password, stores the new one (which
/// ends every session of the user, this one included) and starts a new session
/// for this device. Cookie clients get it as a cookie; bearer clients in the body.
pub async fn change_password<S: Store, C: Clock>(
    State(state): State<AppState<S, C>>,
    auth: LiveSession,
    Client(client): Client,
    JsonBody(body): JsonBody<PasswordBody>,
) -> Result<Response, ApiError> {
    let new = Password::new_for_setting(body.new_password).map_err(ApiError::WeakPassword)?;
    let current = Password::new(body.current_password).map_err(|_| ApiError::InvalidCredentials)?;
    let user = state
        .engine()
        .store()
        .get_user(auth.session.user_id())
        .await?;
    let hash = user.map(|u| u.password_hash);
    // Sidecar users have no password here: `verify(.., None)` fails after the dummy hash.
    let new_hash = state
        .with_hasher(move |h| h.verify(&current, hash.as_ref()).then(|| h.hash(&new)))
        .await?
        .ok_or(ApiError::InvalidCredentials)?;
    let issued = state
        .engine()
        .change_password(&auth.session, new_hash, client)
        .await
        .map_err(|e| auth.credential.reject(e))?;
    let view = SessionView::from(&issued.session);
    if auth.credential.is_bearer() {
        let body = RotatedSession {
            view,
            session_token: Some(issued.token.reveal().to_string()),
        };
        return Ok((StatusCode::OK, Json(body)).into_response());
    }
    let body = RotatedSession {
        view,
        session_token: None,
    };
    Ok(with_cookie(StatusCode::OK, &issued, Json(body)))
}

/// `GET /v1/sessions`: the user's live sessions, the caller's marked `current`.
pub async fn list<S: Store, C: Clock>(
    State(state): State<AppState<S, C>>,
    auth: LiveSession,
) -> Result<Json<SessionList>, ApiError> {
    let records = state.engine().list_sessions(auth.session.user_id()).await?;
    Ok(Json(SessionList::new(&records, Some(&auth.session.id()))))
}

/// `DELETE /v1/sessions/{id}`: ends one of the caller's own sessions
/// (`revoked_by_user`); 404 for anything else.
pub async fn revoke<S: Store, C: Clock>(
    State(state): State<AppState<S, C>>,
    auth: LiveSession,
    PathParam(id): PathParam,
) -> Result<StatusCode, ApiError> {
    let id = TokenId::parse(&id).map_err(|_| ApiError::InvalidSessionId)?;
    state
        .engine()
        .revoke_own(auth.session.user_id(), &id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/sessions/revoke-others`: ends every other session of the user
/// (`signed_out_everywhere`); this one survives.
pub async fn revoke_others<S: Store, C: Clock>(
    State(state): State<AppState<S, C>>,
    auth: LiveSession,
) -> Result<StatusCode, ApiError> {
    state
        .engine()
        .revoke_others(&auth.session, Reason::SignedOutEverywhere)
        .await
        .map_err(|e| auth.credential.reject(e))?;
    Ok(StatusCode::NO_CONTENT)
}

/// A response carrying `issued`'s token in the session cookie. The token goes only
/// into `Set-Cookie`, never into the body.
fn with_cookie(status: StatusCode, issued: &Issued, body: impl IntoResponse) -> Response {
    let token = issued.token.reveal();
    let cookie = format!("{SESSION_COOKIE}={}; {COOKIE_ATTRIBUTES}", token.as_str());
    let mut res = (status, body).into_response();
    match HeaderValue::try_from(cookie) {
        Ok(v) => {
            res.headers_mut().insert(header::SET_COOKIE, v);
            res
        }
        // Tokens are base64url: always a valid header value.
        Err(_) => ApiError::Internal("session token is not a header value".into()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clearing_cookie_matches_the_session_cookie() {
        assert!(CLEAR_COOKIE.starts_with(&format!("{SESSION_COOKIE}=;")));
        assert!(CLEAR_COOKIE.contains(COOKIE_ATTRIBUTES));
    }
}
