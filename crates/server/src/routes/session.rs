//! The end-user API: login, the current session, logout, password change and the
//! user's list of sessions. Cookie (browser) and bearer flows alike (a bearer
//! credential is a session token or an access token); every rule about validity
//! is the engine's.

use std::fmt;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sessionguard_core::{
    ClientInfo, Clock, EventKind, Issued, Password, Reason, Rejection, Store, TokenId, TokenKind,
    UserRecord, ValidSession,
};
use zeroize::Zeroizing;

use crate::context::session_cookie;
use crate::csrf::SameOrigin;
use crate::error::ApiError;
use crate::extract::{
    CheckedSession, Client, Credential, JsonBody, JsonOrForm, LiveSession, OptionalBody, PathParam,
    PeekSession, QueryParams, authenticate, bearer,
};
use crate::routes::{SessionList, SessionView};
use crate::state::AppState;

/// The `Set-Cookie` value that makes browsers drop the session cookie.
pub(crate) const CLEAR_COOKIE: &str =
    "__Host-sg_session=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0";

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

/// `{"refresh_token"}`, optional, for logout with a refresh token.
#[derive(Deserialize)]
pub struct LogoutBody {
    refresh_token: Option<String>,
}

impl fmt::Debug for LogoutBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LogoutBody(<redacted>)")
    }
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
    let issued = password_login(&state, &headers, client, &body.username, body.password).await?;
    Ok(with_cookie(
        StatusCode::OK,
        &issued,
        Json(SessionView::from(&issued.session)),
    ))
}

/// The password login shared by the cookie flow and the token endpoint: looks the
/// user up, verifies the password (against a dummy hash for unknown users, so both
/// failures take the same time and get the same answer) and starts a new session
/// with the user's credential epoch, revoking any session token presented in
/// `headers` (anti-fixation).
pub(crate) async fn password_login<S: Store, C: Clock>(
    state: &AppState<S, C>,
    headers: &HeaderMap,
    client: ClientInfo,
    username: &str,
    password: String,
) -> Result<Issued, ApiError> {
    let password = Password::new(password).map_err(|_| ApiError::InvalidCredentials)?;
    let user = state
        .engine()
        .store()
        .find_user_by_username(username)
        .await?;
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    let verified = state
        .with_hasher(move |h| h.verify(&password, hash.as_ref()))
        .await?;
    let known = user.as_ref().map(|u| u.id.clone());
    let Some(UserRecord { id, epoch, .. }) = user.filter(|_| verified) else {
        // The user, if the name exists; never the name itself: a password typed
        // into the wrong field must not reach the logs.
        state
            .engine()
            .record(EventKind::LoginFailed, known.as_ref(), None, None)
            .await;
        return Err(ApiError::InvalidCredentials);
    };
    // A credential that cannot even be read cannot be a live session to revoke.
    let presented = Credential::from_headers(headers).ok().flatten();
    state
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
        })
}

/// `?require=step_up` on `GET /v1/session`.
#[derive(Debug, Deserialize)]
pub struct CurrentQuery {
    require: Option<String>,
}

/// `GET /v1/session`: the current session with the user's profile and roles;
/// counts as activity. With `?require=step_up`, answers 403 `step_up_required`
/// unless the session was authenticated within `step_up_ttl` (login or
/// `POST /v1/session/elevate`), so an app can guard a sensitive page with it.
///
/// After a change of the user's profile or roles, a bearer session token is
/// replaced here: the new one is in `session_token` (the old one works for
/// `renewal_overlap`, then is refused with `privilege_changed`).
pub async fn current<S: Store, C: Clock>(
    State(state): State<AppState<S, C>>,
    CheckedSession { auth, new_token }: CheckedSession,
    QueryParams(query): QueryParams<CurrentQuery>,
) -> Result<Json<CurrentSession>, ApiError> {
    match query.require.as_deref() {
        None => {}
        Some("step_up") => state.engine().require_step_up(&auth.session).await?,
        Some(_) => return Err(ApiError::InvalidQuery("require")),
    }
    let access = state
        .engine()
        .store()
        .user_access(auth.session.user_id())
        .await?;
    Ok(Json(CurrentSession {
        view: SessionView::from(&auth.session),
        roles: access.roles,
        session_token: new_token.map(|t| t.reveal().to_string()),
    }))
}

/// The current session and the user's roles (and, for a bearer session token
/// just replaced, the new token).
#[derive(Serialize)]
pub struct CurrentSession {
    #[serde(flatten)]
    view: SessionView,
    roles: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_token: Option<String>,
}

impl fmt::Debug for CurrentSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CurrentSession")
            .field("view", &self.view)
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

/// `{"password"}` for a step-up.
#[derive(Deserialize)]
pub struct ElevateBody {
    password: String,
}

impl fmt::Debug for ElevateBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ElevateBody(<redacted>)")
    }
}

/// `POST /v1/session/elevate`: re-authentication for sensitive actions. Checks the
/// user's password; the session gets a new token (the old one ends at once with
/// `privilege_changed`) and counts as recently authenticated until
/// `step_up_until`. Cookie clients get the new token as a cookie; bearer
/// session-token clients in the body (`session_token`); access-token clients get
/// a new access token (`access_token`, `expires_in`), since older ones are refused
/// from now on. A wrong password is 401 `invalid_credentials` and is audited.
pub async fn elevate<S: Store, C: Clock>(
    State(state): State<AppState<S, C>>,
    auth: LiveSession,
    JsonBody(body): JsonBody<ElevateBody>,
) -> Result<Response, ApiError> {
    let issued = reauthenticate(
        &state,
        &auth.session,
        auth.credential.is_bearer(),
        body.password,
    )
    .await?;
    let view = SessionView::from(&issued.session);
    if let Some(old) = &auth.access {
        let access = state.issue_access_token(&issued.session, old.client_id())?;
        return Ok(Json(ElevatedAccess {
            view,
            access_token: access.secret().to_owned(),
            token_type: "Bearer",
            expires_in: access.expires_in(),
        })
        .into_response());
    }
    if auth.credential.is_bearer() {
        let body = RotatedSession {
            view,
            session_token: Some(issued.token.reveal().to_string()),
        };
        return Ok(Json(body).into_response());
    }
    let body = RotatedSession {
        view,
        session_token: None,
    };
    Ok(with_cookie(StatusCode::OK, &issued, Json(body)))
}

/// The step-up shared by `POST /v1/session/elevate` and the account page: checks
/// `password` against the session's user (a wrong one is 401
/// `invalid_credentials` and is audited as a failed sign-in) and then
/// [`sessionguard_core::Engine::elevate`]s the session, whose new token the caller
/// hands to the client (the presented one ends at once). `bearer` says how the
/// session's credential was presented, for the rejection if it ended meanwhile.
pub(crate) async fn reauthenticate<S: Store, C: Clock>(
    state: &AppState<S, C>,
    session: &ValidSession,
    bearer: bool,
    password: String,
) -> Result<Issued, ApiError> {
    let engine = state.engine();
    let user = engine.store().get_user(session.user_id()).await?;
    let hash = user.map(|u| u.password_hash);
    let password = Password::new(password).ok();
    // Sidecar users have no password here: `verify(.., None)` fails after the
    // dummy hash, in the same time.
    let verified = state
        .with_hasher(move |h| password.is_some_and(|p| h.verify(&p, hash.as_ref())))
        .await?;
    if !verified {
        engine
            .record(
                EventKind::LoginFailed,
                Some(session.user_id()),
                Some(&session.id()),
                None,
            )
            .await;
        return Err(ApiError::InvalidCredentials);
    }
    engine
        .elevate(session)
        .await
        .map_err(|e| ApiError::session(e, bearer))
}

/// The answer of a step-up with an access token: the session and a new access
/// token. Secret: `Debug` omits the token.
#[derive(Serialize)]
struct ElevatedAccess {
    #[serde(flatten)]
    view: SessionView,
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
}

/// `GET /v1/session/status`: the current session without counting as activity.
pub async fn status(auth: PeekSession) -> Json<SessionView> {
    Json(SessionView::from(&auth.session))
}

/// `POST /v1/logout`: revokes the session (durably) before answering; 204.
///
/// The credential, in order of precedence:
/// 1. `Authorization: Bearer` with a refresh token (`sgr_…`), a session token or an
///    access token;
/// 2. a `refresh_token` in the body (JSON or form), sent deliberately like a
///    bearer token, so not CSRF-checked;
/// 3. the session cookie (CSRF-checked), which is then cleared.
///
/// Ending the session ends its refresh tokens and access tokens with it (on this
/// server; see [`crate::access`] for offline verifiers). A dead or unknown
/// credential is 401 with its reason.
pub async fn logout<S: Store, C: Clock>(
    State(state): State<AppState<S, C>>,
    method: Method,
    headers: HeaderMap,
    OptionalBody(body): OptionalBody<LogoutBody>,
) -> Result<Response, ApiError> {
    if let Some(refresh) = presented_refresh_token(&headers, body) {
        let bearer = bearer(&headers).is_some();
        logout_with_refresh_token(&state, &refresh, bearer).await?;
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let auth: PeekSession = authenticate(&method, &headers, &state).await?;
    // The session (and CSRF) is checked; revoking it by id is durable before we
    // answer. Losing a race to another revocation still ends the session.
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

/// The refresh token a logout presents: the bearer token if it is one; else, when
/// there is no bearer credential at all, the body's.
fn presented_refresh_token(
    headers: &HeaderMap,
    body: Option<LogoutBody>,
) -> Option<Zeroizing<String>> {
    match bearer(headers) {
        Some(Some(t)) if t.starts_with(TokenKind::Refresh.prefix()) => {
            Some(Zeroizing::new(t.to_owned()))
        }
        // Another bearer credential (or a broken one) decides the request.
        Some(_) => None,
        None => body.and_then(|b| b.refresh_token).map(Zeroizing::new),
    }
}

/// Ends the session of a refresh token, or says why it cannot: a live token's
/// session is revoked (`logged_out`); a dead one gets its session's reason. A
/// genuine token that was already rotated still ends its session (whoever holds
/// it, ending the session is the safe outcome); anything else is `invalid_token`.
async fn logout_with_refresh_token<S: Store, C: Clock>(
    state: &AppState<S, C>,
    token: &str,
    bearer: bool,
) -> Result<(), ApiError> {
    let engine = state.engine();
    match engine.refresh_token_session(token).await {
        Ok(_) => {}
        Err(sessionguard_core::Error::Rejected(r)) if r.reason != Reason::InvalidToken => {
            return Err(ApiError::Session {
                rejection: r,
                bearer,
            });
        }
        Err(sessionguard_core::Error::Rejected(_)) => {}
        Err(e) => return Err(e.into()),
    }
    if engine
        .revoke_by_refresh_token(token, Reason::LoggedOut)
        .await?
    {
        return Ok(());
    }
    // Not revoked by this call: unknown, forged, or ended meanwhile. Say which.
    match engine.refresh_token_session(token).await {
        Err(sessionguard_core::Error::Rejected(rejection)) => {
            Err(ApiError::Session { rejection, bearer })
        }
        Err(e) => Err(e.into()),
        // Live yet not revoked cannot happen; refuse rather than claim success.
        Ok(_) => Err(ApiError::Session {
            rejection: Rejection::INVALID,
            bearer,
        }),
    }
}

/// `POST /v1/password`: verifies the current password, stores the new one (which
/// ends every session of the user, this one included, with their refresh tokens
/// and, by policy, API tokens) and starts a new session for this device. Cookie
/// clients get it as a cookie; bearer session-token clients get the new session
/// token in the body; access-token clients get a new token pair
/// (`{"access_token","token_type","expires_in","refresh_token","session_id"}`).
pub async fn change_password<S: Store, C: Clock>(
    State(state): State<AppState<S, C>>,
    auth: LiveSession,
    Client(client): Client,
    JsonBody(body): JsonBody<PasswordBody>,
) -> Result<Response, ApiError> {
    state
        .engine()
        .require_step_up(&auth.session)
        .await
        .map_err(|e| auth.credential.reject(e))?;
    let new = Password::new_for_setting(body.new_password).map_err(ApiError::WeakPassword)?;
    let issued = set_password(
        &state,
        &auth.session,
        auth.credential.is_bearer(),
        client,
        body.current_password,
        new,
    )
    .await?;
    if let Some(old) = &auth.access {
        let pair = state
            .issue_token_pair(&issued.session, old.client_id())
            .await?;
        return Ok((StatusCode::OK, Json(pair)).into_response());
    }
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

/// The password change shared by `POST /v1/password` and the account page, once
/// the session passed the step-up rule: verifies `current` (401
/// `invalid_credentials` if wrong), stores the hash of `new` — which ends every
/// session of the user, this one included, with their refresh tokens and, by
/// policy, API tokens — and returns the new session of this device. `bearer` says
/// how the session's credential was presented, for the rejection if it ended
/// meanwhile.
pub(crate) async fn set_password<S: Store, C: Clock>(
    state: &AppState<S, C>,
    session: &ValidSession,
    bearer: bool,
    client: ClientInfo,
    current: String,
    new: Password,
) -> Result<Issued, ApiError> {
    let current = Password::new(current).map_err(|_| ApiError::InvalidCredentials)?;
    let user = state.engine().store().get_user(session.user_id()).await?;
    let hash = user.map(|u| u.password_hash);
    // Sidecar users have no password here: `verify(.., None)` fails after the dummy hash.
    let new_hash = state
        .with_hasher(move |h| h.verify(&current, hash.as_ref()).then(|| h.hash(&new)))
        .await?
        .ok_or(ApiError::InvalidCredentials)?;
    state
        .engine()
        .change_password(session, new_hash, client)
        .await
        .map_err(|e| ApiError::session(e, bearer))
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
pub(crate) fn with_cookie(
    status: StatusCode,
    issued: &Issued,
    body: impl IntoResponse,
) -> Response {
    match session_cookie(&issued.token) {
        Ok(v) => {
            let mut res = (status, body).into_response();
            res.headers_mut().insert(header::SET_COOKIE, v);
            res
        }
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::COOKIE_ATTRIBUTES;
    use crate::extract::SESSION_COOKIE;

    #[test]
    fn clearing_cookie_matches_the_session_cookie() {
        assert!(CLEAR_COOKIE.starts_with(&format!("{SESSION_COOKIE}=;")));
        assert!(CLEAR_COOKIE.contains(COOKIE_ATTRIBUTES));
    }
}
