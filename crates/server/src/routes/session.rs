//! The end-user API: login, the current session, logout, password change and the
//! user's list of sessions. Cookie (browser) and bearer flows alike (a bearer
//! credential is a session token or an access token); every rule about validity
//! is the engine's.

use std::fmt;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sessionguard_core::{
    ClientInfo, Clock, DeviceSecret, Issued, Password, PasswordHash, PasswordHasher, Reason,
    Rejection, Store, TokenId, UserRecord, ValidSession,
};
use sessionguard_http::{CredentialSource, TokenForm, cookie};
use zeroize::Zeroizing;

use crate::access::client_of;
use crate::csrf::SameOrigin;
use crate::error::ApiError;
use crate::extract::{
    CheckedSession, Client, Credential, JsonBody, JsonOrForm, LiveSession, OptionalBody, PathParam,
    PeekSession, QueryParams, authenticate_credential, unreadable,
};
use crate::metrics::LoginOutcome;
use crate::passwords::{Checker, Passed, check_password, device_cookie, device_of};
use crate::routes::{SessionList, SessionView};
use crate::state::AppState;

/// `{"username","password"}` for login.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct LoginBody {
    username: String,
    password: String,
}

/// `{"current_password","new_password"}`.
#[derive(Deserialize, utoipa::ToSchema)]
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
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct RotatedSession {
    #[serde(flatten)]
    view: SessionView,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_token: Option<String>,
}

/// `{"refresh_token"}`, optional, for logout with a refresh token.
#[derive(Deserialize, utoipa::ToSchema)]
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
/// wrong passwords are answered alike, in the same time. Password checks are
/// throttled ([`crate::passwords`]): 429 `too_many_attempts` with `Retry-After`
/// after repeated failures. The answer also keeps this browser as a known device
/// of the account (`__Host-sg_device`), whose checks count apart from others'.
pub async fn login<S: Store, C: Clock>(
    State(state): State<AppState<S, C>>,
    _: SameOrigin,
    headers: HeaderMap,
    Client(client): Client,
    JsonOrForm(body): JsonOrForm<LoginBody>,
) -> Result<Response, ApiError> {
    let login = password_login(
        &state,
        &headers,
        client,
        &body.username,
        body.password,
        true,
    )
    .await?;
    let view = Json(SessionView::from(&login.issued.session));
    Ok(with_login_cookies(&state, StatusCode::OK, &login, view))
}

/// The answer to a browser's password login: `body` with the new session's
/// cookie and, when the device is to be remembered, the known-device cookie
/// ([`crate::passwords::device_cookie`]). Shared by `POST /v1/login` and the
/// sign-in page.
pub(crate) fn with_login_cookies<S: Store, C: Clock>(
    state: &AppState<S, C>,
    status: StatusCode,
    login: &PasswordLogin,
    body: impl IntoResponse,
) -> Response {
    let mut res = with_cookie(status, &login.issued, body);
    if let Some(device) = &login.device {
        let ttl = state.engine().throttle_rule().known_device_ttl;
        res.headers_mut()
            .append(header::SET_COOKIE, device_cookie(device, ttl));
    }
    res
}

/// A password login that passed: the new session, and the device secret to keep
/// in the device cookie (when asked to remember the device).
#[derive(Debug)]
pub struct PasswordLogin {
    /// The new session and its token.
    pub issued: Issued,
    /// The device secret for [`crate::passwords::device_cookie`].
    pub device: Option<DeviceSecret>,
}

/// The password login shared by the cookie flow, the token endpoint and any
/// login form: looks the user up, verifies the password (against a dummy hash
/// for unknown users, so both failures take the same time and get the same
/// answer) through the throttle and the bounded hash queue
/// ([`crate::passwords::check_password`]), and starts a new session with the
/// user's credential epoch, revoking any session token presented in `headers`
/// (anti-fixation). With `remember`, the answer is to carry the device cookie
/// ([`PasswordLogin::device`]).
///
/// Every call is counted in `sessionguard_logins_total` by its outcome
/// ([`crate::metrics::LoginOutcome`]).
pub async fn password_login<S: Store, C: Clock>(
    state: &AppState<S, C>,
    headers: &HeaderMap,
    client: ClientInfo,
    username: &str,
    password: String,
    remember: bool,
) -> Result<PasswordLogin, ApiError> {
    let login = async {
        let password = Password::new(password).map_err(|_| ApiError::InvalidCredentials)?;
        let device = device_of(headers);
        let user = state
            .engine()
            .store()
            .find_user_by_username(username)
            .await?;
        let hash = user.as_ref().map(|u| u.password_hash.clone());
        let known = user.as_ref().map(|u| u.id.clone());
        let who = Checker {
            account: username,
            client: client.ip(),
            device: device.as_ref(),
            // The user, if the name exists; never the name itself: a password typed
            // into the wrong field must not reach the logs.
            user: known.as_ref(),
            session: None,
            remember,
        };
        let passed = check_password(state, who, move |h| {
            h.verify(&password, hash.as_ref()).then_some(())
        })
        .await?;
        let Some(UserRecord { id, epoch, .. }) = user else {
            // A verified password without a user cannot happen (`verify(.., None)`
            // always fails); refuse rather than continue.
            return Err(ApiError::InvalidCredentials);
        };
        // A credential that cannot even be read cannot be a live session to revoke.
        let presented = sessionguard_http::Credential::from_headers(headers)
            .ok()
            .flatten();
        let issued = state
            .engine()
            .login(
                &id,
                epoch,
                client,
                presented.as_ref().map(sessionguard_http::Credential::token),
            )
            .await
            .map_err(|e| match e {
                sessionguard_core::Error::Rejected(_) => {
                    ApiError::Conflict("the user's credentials changed during login")
                }
                other => other.into(),
            })?;
        Ok(PasswordLogin {
            issued,
            device: passed.device,
        })
    }
    .await;
    state.metrics().login(LoginOutcome::of(&login));
    login
}

/// Checks the password of the user of `session` (step-up, password
/// change) through the throttle and the hash queue, as their own account from
/// this client or device; `job` as in [`check_password`].
async fn check_own_password<S: Store, C: Clock, T: Send + 'static>(
    state: &AppState<S, C>,
    session: &ValidSession,
    headers: &HeaderMap,
    client: &ClientInfo,
    job: impl FnOnce(&PasswordHasher, Option<&PasswordHash>) -> Option<T> + Send + 'static,
) -> Result<Passed<T>, ApiError> {
    let user_id = session.user_id();
    let user = state.engine().store().get_user(user_id).await?;
    // Sidecar users have no password here: their checks count under their id,
    // and `verify(.., None)` fails after the dummy hash, in the same time.
    let account = user
        .as_ref()
        .map_or_else(|| user_id.to_string(), |u| u.username.clone());
    let hash = user.map(|u| u.password_hash);
    let device = device_of(headers);
    let who = Checker {
        account: &account,
        client: client.ip(),
        device: device.as_ref(),
        user: Some(user_id),
        session: Some(session.id()),
        remember: false,
    };
    check_password(state, who, move |h| job(h, hash.as_ref())).await
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
#[derive(Serialize, utoipa::ToSchema)]
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
#[derive(Deserialize, utoipa::ToSchema)]
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
    headers: HeaderMap,
    Client(client): Client,
    JsonBody(body): JsonBody<ElevateBody>,
) -> Result<Response, ApiError> {
    let issued = reauthenticate(
        &state,
        &auth.session,
        auth.credential.is_bearer(),
        &headers,
        &client,
        body.password,
    )
    .await?;
    let view = SessionView::from(&issued.session);
    if let Some(old) = &auth.access {
        let access = state.issue_access_token(&issued.session, &client_of(old))?;
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
/// `password` against the session's user through the throttle and the hash queue
/// ([`check_own_password`]; a wrong one is 401 `invalid_credentials`) and then
/// [`sessionguard_core::Engine::elevate`]s the session, whose new token the caller
/// hands to the client (the presented one ends at once). `bearer` says how the
/// session's credential was presented, for the rejection if it ended meanwhile.
pub(crate) async fn reauthenticate<S: Store, C: Clock>(
    state: &AppState<S, C>,
    session: &ValidSession,
    bearer: bool,
    headers: &HeaderMap,
    client: &ClientInfo,
    password: String,
) -> Result<Issued, ApiError> {
    let password = Password::new(password).ok();
    check_own_password(state, session, headers, client, move |h, hash| {
        password.is_some_and(|p| h.verify(&p, hash)).then_some(())
    })
    .await?;
    state
        .engine()
        .elevate(session)
        .await
        .map_err(|e| ApiError::session(e, bearer))
}

/// The answer of a step-up with an access token: the session and a new access
/// token. Secret: `Debug` omits the token.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ElevatedAccess {
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
    // The credential is read from the headers once; which one decides is below.
    let presented = sessionguard_http::Credential::from_headers(&headers);
    let bearer = match &presented {
        Ok(Some(c)) => c.is_bearer(),
        Ok(None) => false,
        Err(unreadable) => unreadable.source == CredentialSource::Bearer,
    };
    if let Ok(Some(c)) = &presented
        && c.is_bearer()
        && c.form() == TokenForm::Refresh
    {
        logout_with_refresh_token(&state, c.token(), true).await?;
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    // A body's refresh token counts only when no bearer credential (even a broken
    // one) decides the request.
    if !bearer && let Some(refresh) = body.and_then(|b| b.refresh_token).map(Zeroizing::new) {
        logout_with_refresh_token(&state, &refresh, false).await?;
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let presented = presented
        .map(|c| c.map(Credential::from))
        .map_err(unreadable);
    let auth: PeekSession = authenticate_credential(presented, &method, &headers, &state).await?;
    // The session (and CSRF) is checked; revoking it by id is durable before we
    // answer. Losing a race to another revocation still ends the session.
    state
        .engine()
        .revoke(&auth.session.id(), Reason::LoggedOut)
        .await?;
    let mut res = StatusCode::NO_CONTENT.into_response();
    // Only the cookie that authenticated the request is cleared: with a bearer
    // token, a cookie in the same client belongs to another, still live session.
    if auth.credential.source() == CredentialSource::Cookie {
        res.headers_mut()
            .insert(header::SET_COOKIE, cookie::clear_cookie());
    }
    Ok(res)
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
    headers: HeaderMap,
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
        &headers,
        client,
        body.current_password,
        new,
    )
    .await?;
    if let Some(old) = &auth.access {
        let pair = state
            .issue_token_pair(&issued.session, &client_of(old))
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
/// the session passed the step-up rule: verifies `current` through the throttle
/// and the hash queue ([`check_own_password`]; 401 `invalid_credentials` if
/// wrong), stores the hash of `new` — which ends every session of the user, this
/// one included, with their refresh tokens and, by policy, API tokens — and
/// returns the new session of this device. `bearer` says how the session's
/// credential was presented, for the rejection if it ended meanwhile.
pub(crate) async fn set_password<S: Store, C: Clock>(
    state: &AppState<S, C>,
    session: &ValidSession,
    bearer: bool,
    headers: &HeaderMap,
    client: ClientInfo,
    current: String,
    new: Password,
) -> Result<Issued, ApiError> {
    let current = Password::new(current).map_err(|_| ApiError::InvalidCredentials)?;
    let new_hash = check_own_password(state, session, headers, &client, move |h, hash| {
        h.verify(&current, hash).then(|| h.hash(&new))
    })
    .await?
    .value;
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
    let mut res = (status, body).into_response();
    res.headers_mut()
        .insert(header::SET_COOKIE, cookie::session_cookie(&issued.token));
    res
}
