//! `GET /account` and its forms: the user's sessions, password change, API
//! tokens and recent security events, and signing out.

use std::fmt;

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sessionguard_core::{
    ClientInfo, Clock, Issued, Password, Reason, Store, Token, TokenId, ValidSession,
};
use sessionguard_http::cookie;
use zeroize::Zeroizing;

use crate::error::ApiError;
use crate::extract::{Client, PathParam};
use crate::routes::api_tokens::create_token as create_api_token;
use crate::routes::events::{describe, own_events};
use crate::routes::session::{reauthenticate, set_password};
use crate::state::AppState;

use super::auth::{PageError, PageForm, PageSession};
use super::{When, device, html, see_other};

/// The cookie that carries a just-created API token from the form's `303` to the
/// page that shows it, once. `SameSite=Strict`, `HttpOnly`, a minute at most, and
/// cleared by that page.
const NEW_TOKEN_COOKIE: &str = "__Host-sg_new_api_token";
/// The attributes of [`NEW_TOKEN_COOKIE`].
const NEW_TOKEN_ATTRIBUTES: &str = "Path=/; Secure; HttpOnly; SameSite=Strict";

/// How many recent security events the page lists.
const EVENTS_SHOWN: usize = 20;

/// What the page says after a form did its work (`?notice=<code>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Notice {
    PasswordChanged,
    SessionEnded,
    OthersSignedOut,
    TokenCreated,
    TokenRevoked,
}

impl Notice {
    const ALL: [Notice; 5] = [
        Notice::PasswordChanged,
        Notice::SessionEnded,
        Notice::OthersSignedOut,
        Notice::TokenCreated,
        Notice::TokenRevoked,
    ];

    fn code(self) -> &'static str {
        match self {
            Notice::PasswordChanged => "password_changed",
            Notice::SessionEnded => "session_ended",
            Notice::OthersSignedOut => "others_signed_out",
            Notice::TokenCreated => "token_created",
            Notice::TokenRevoked => "token_revoked",
        }
    }

    fn from_code(code: &str) -> Option<Notice> {
        Notice::ALL.into_iter().find(|n| n.code() == code)
    }

    /// Where a form that did this sends the browser.
    fn location(self) -> String {
        let section = match self {
            Notice::PasswordChanged => "password",
            Notice::SessionEnded | Notice::OthersSignedOut => "sessions",
            Notice::TokenCreated | Notice::TokenRevoked => "api-tokens",
        };
        format!("/account?notice={}#{section}", self.code())
    }

    fn sentence(self, tokens_end_with_password: bool) -> &'static str {
        match self {
            Notice::PasswordChanged if tokens_end_with_password => {
                "Your password was changed. Every other session and every API token has ended."
            }
            Notice::PasswordChanged => "Your password was changed. Every other session has ended.",
            Notice::SessionEnded => "The session was signed out.",
            Notice::OthersSignedOut => "All your other sessions were signed out.",
            Notice::TokenCreated => "Your API token was created.",
            Notice::TokenRevoked => "The API token was revoked.",
        }
    }
}

/// Which form a problem belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Password,
    Token,
}

/// A form shown again with what was wrong.
#[derive(Debug)]
struct Problem {
    form: Form,
    message: String,
    status: StatusCode,
}

/// One row of "Your sessions".
#[derive(Debug)]
struct SessionRow {
    id: String,
    device: String,
    ip: String,
    created: When,
    last_active: When,
    current: bool,
}

/// One row of "API tokens".
#[derive(Debug)]
struct TokenRow {
    id: String,
    name: String,
    created: When,
    expires: When,
    last_used: Option<When>,
}

/// One entry of "Recent security events".
#[derive(Debug)]
struct EventRow {
    at: When,
    text: String,
}

/// The account page.
#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    username: Option<String>,
    csrf_token: String,
    notice: Option<&'static str>,
    sessions: Vec<SessionRow>,
    has_others: bool,
    tokens_end_with_password: bool,
    password_error: Option<String>,
    token_error: Option<String>,
    /// Whether creating a token needs the password again (step-up).
    token_needs_password: bool,
    /// The token just created, shown this once.
    new_token: Option<Zeroizing<String>>,
    tokens: Vec<TokenRow>,
    events: Vec<EventRow>,
}

impl fmt::Debug for AccountPage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountPage")
            .field("username", &self.username)
            .field("notice", &self.notice)
            .field("sessions", &self.sessions.len())
            .field("new_token", &self.new_token.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

/// What a render adds to the page's data.
#[derive(Default)]
struct Extras {
    notice: Option<Notice>,
    problem: Option<Problem>,
    new_token: Option<Zeroizing<String>>,
}

/// Renders the account page for `session`.
async fn render<S: Store, C: Clock>(
    state: &AppState<S, C>,
    session: &ValidSession,
    extras: Extras,
) -> Result<Response, PageError> {
    let engine = state.engine();
    let user = session.user_id();
    let username = engine.store().get_user(user).await?.map(|u| u.username);
    let policy = engine.policy_of_user(user).await?;
    let tokens_end_with_password = policy.revoke_api_tokens_on_password_change;

    let current = session.id();
    let mut records = engine.list_sessions(user).await?;
    // This device first, then the most recently active.
    records.sort_by_key(|r| {
        (
            r.state.id != current,
            std::cmp::Reverse(r.state.last_seen_at),
        )
    });
    let sessions: Vec<SessionRow> = records
        .iter()
        .map(|r| SessionRow {
            id: r.state.id.to_string(),
            device: device::name(r.client.user_agent()).into_owned(),
            ip: r
                .client
                .ip()
                .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string()),
            created: r.state.created_at.into(),
            last_active: r.state.last_seen_at.into(),
            current: r.state.id == current,
        })
        .collect();

    let tokens = engine
        .list_api_tokens(user)
        .await?
        .iter()
        .map(|t| TokenRow {
            id: t.id.to_string(),
            name: t.name.clone(),
            created: t.created_at.into(),
            expires: t.expires_at.into(),
            last_used: t.last_used_at.map(When::from),
        })
        .collect();

    let events = own_events(state, user, None)
        .await?
        .iter()
        .take(EVENTS_SHOWN)
        .map(|e| EventRow {
            at: e.at.into(),
            text: describe(e, |ua| device::name(Some(ua))),
        })
        .collect();

    let (status, password_error, token_error) = match extras.problem {
        None => (StatusCode::OK, None, None),
        Some(p) if p.form == Form::Password => (p.status, Some(p.message), None),
        Some(p) => (p.status, None, Some(p.message)),
    };
    let page = AccountPage {
        username,
        csrf_token: session.csrf_token(),
        notice: extras.notice.map(|n| n.sentence(tokens_end_with_password)),
        has_others: sessions.iter().any(|s| !s.current),
        sessions,
        tokens_end_with_password,
        password_error,
        token_error,
        token_needs_password: !session.is_elevated(engine.clock().now()),
        new_token: extras.new_token,
        tokens,
        events,
    };
    Ok(html(status, &page))
}

/// `?notice=` of the account page.
#[derive(Debug, Default, Deserialize)]
struct AccountQuery {
    notice: Option<String>,
}

/// `GET /account`: the page, for a signed-in browser (`303` to the sign-in page
/// otherwise). A token created by the form just before is shown this once.
pub(super) async fn show<S: Store, C: Clock>(
    State(state): State<AppState<S, C>>,
    PageSession(session): PageSession,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, PageError> {
    // A query that does not parse is ignored: this page shows nothing from it.
    let query: AccountQuery =
        serde_urlencoded::from_str(query.as_deref().unwrap_or_default()).unwrap_or_default();
    let presented = cookie::find_named(&headers, NEW_TOKEN_COOKIE).and_then(Result::ok);
    let new_token = match presented {
        Some(token) => match state.engine().api_token_status(token).await {
            // Only the user's own live token is shown; anything else is dropped.
            Ok(t) if t.user_id() == session.user_id() => Some(Zeroizing::new(token.to_owned())),
            _ => None,
        },
        None => None,
    };
    let extras = Extras {
        notice: query.notice.as_deref().and_then(Notice::from_code),
        problem: None,
        new_token,
    };
    let mut res = render(&state, &session, extras).await?;
    if presented.is_some() {
        let clear = format!("{NEW_TOKEN_COOKIE}=; {NEW_TOKEN_ATTRIBUTES}; Max-Age=0");
        if let Ok(v) = HeaderValue::try_from(clear) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    Ok(res)
}

/// A form that carries nothing but its anti-CSRF token.
#[derive(Debug, Deserialize)]
pub(super) struct NoFields {}

/// `POST /logout`: ends this session (`logged_out`), durably, then `303` to the
/// sign-in page, which says so; the cookie is cleared.
pub(super) async fn sign_out<S: Store, C: Clock>(
    State(state): State<AppState<S, C>>,
    form: PageForm<NoFields>,
) -> Result<Response, PageError> {
    state
        .engine()
        .revoke(&form.session.id(), Reason::LoggedOut)
        .await?;
    let mut res = see_other(&format!("/login?reason={}", Reason::LoggedOut.code()));
    res.headers_mut()
        .append(header::SET_COOKIE, cookie::clear_cookie());
    Ok(res)
}

/// `POST /account/sessions/{id}/revoke`: ends one of the user's sessions
/// (`revoked_by_user`), as `DELETE /v1/sessions/{id}`.
pub(super) async fn sign_out_session<S: Store, C: Clock>(
    State(state): State<AppState<S, C>>,
    PathParam(id): PathParam,
    form: PageForm<NoFields>,
) -> Result<Response, PageError> {
    let id = TokenId::parse(&id).map_err(|_| ApiError::NotFound)?;
    state
        .engine()
        .revoke_own(form.session.user_id(), &id)
        .await
        .map_err(ApiError::from)?;
    Ok(see_other(&Notice::SessionEnded.location()))
}

/// `POST /account/sessions/revoke-others`: ends every other session of the user
/// (`signed_out_everywhere`), as `POST /v1/sessions/revoke-others`.
pub(super) async fn sign_out_others<S: Store, C: Clock>(
    State(state): State<AppState<S, C>>,
    form: PageForm<NoFields>,
) -> Result<Response, PageError> {
    state
        .engine()
        .revoke_others(&form.session, Reason::SignedOutEverywhere)
        .await?;
    Ok(see_other(&Notice::OthersSignedOut.location()))
}

/// The password form's fields.
#[derive(Deserialize)]
pub(super) struct PasswordForm {
    current_password: String,
    new_password: String,
}

impl fmt::Debug for PasswordForm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordForm(<redacted>)")
    }
}

/// `POST /account/password`: the password change of `POST /v1/password`. A
/// session past its step-up window is first re-authenticated with the current
/// password (the step-up of `POST /v1/session/elevate`), so the step-up rule is
/// met rather than skipped. Success: every session of the user ends (and by
/// policy every API token), this browser gets a new session, and the page says
/// so. A wrong current password or a too short new one: the form again.
pub(super) async fn change_password<S: Store, C: Clock>(
    State(state): State<AppState<S, C>>,
    Client(client): Client,
    headers: HeaderMap,
    PageForm { session, form }: PageForm<PasswordForm>,
) -> Result<Response, PageError> {
    let new = match Password::new_for_setting(form.new_password) {
        Ok(p) => p,
        Err(e) => {
            let e = ApiError::WeakPassword(e);
            let again = form_again(Form::Password, &e, &e.detail());
            return render(&state, &session, again).await;
        }
    };
    let (session, elevated) =
        match step_up(&state, session, &headers, &client, &form.current_password).await? {
            Ok(stepped) => stepped,
            Err((session, e)) => {
                return render(
                    &state,
                    &session,
                    form_again(Form::Password, &e, WRONG_PASSWORD),
                )
                .await;
            }
        };
    let changed = set_password(
        &state,
        &session,
        false,
        &headers,
        client,
        form.current_password,
        new,
    );
    let res = match changed.await {
        Ok(issued) => {
            return Ok(with_session_cookie(
                see_other(&Notice::PasswordChanged.location()),
                &issued.token,
            ));
        }
        Err(e @ ApiError::InvalidCredentials) => {
            render(
                &state,
                &session,
                form_again(Form::Password, &e, WRONG_PASSWORD),
            )
            .await?
        }
        Err(e) => PageError::from(e).into_response(),
    };
    Ok(with_new_token(res, elevated.as_ref()))
}

/// What the password form says when the current password is wrong.
const WRONG_PASSWORD: &str = "Your current password is wrong, so it was not changed.";

/// The page again with `message` at `form`, answered with `e`'s status (and `e`
/// logged, once).
fn form_again(form: Form, e: &ApiError, message: &str) -> Extras {
    e.log();
    Extras {
        problem: Some(Problem {
            form,
            message: message.to_owned(),
            status: e.status(),
        }),
        ..Extras::default()
    }
}

/// Meets the step-up rule for `session`: unchanged when it is recently
/// authenticated; else re-authenticated with `password` through the step-up of
/// `POST /v1/session/elevate`, returning the stepped-up session and its new token
/// (which the response must set as the cookie: the old one ended). A wrong
/// password is the inner `Err`, with the session unchanged.
async fn step_up<S: Store, C: Clock>(
    state: &AppState<S, C>,
    session: ValidSession,
    headers: &HeaderMap,
    client: &ClientInfo,
    password: &str,
) -> Result<Result<(ValidSession, Option<Token>), (ValidSession, ApiError)>, PageError> {
    if session.is_elevated(state.engine().clock().now()) {
        return Ok(Ok((session, None)));
    }
    match reauthenticate(state, &session, false, headers, client, password.to_owned()).await {
        Ok(Issued { token, session }) => Ok(Ok((session, Some(token)))),
        Err(e @ ApiError::InvalidCredentials) => Ok(Err((session, e))),
        Err(e) => Err(e.into()),
    }
}

/// `res` carrying `token` as the session cookie.
fn with_session_cookie(mut res: Response, token: &Token) -> Response {
    res.headers_mut()
        .append(header::SET_COOKIE, cookie::session_cookie(token));
    res
}

/// `res`, carrying the session's new token as the cookie if a step-up just
/// replaced it (whatever the answer, the old token has ended).
fn with_new_token(res: Response, stepped_up: Option<&Token>) -> Response {
    match stepped_up {
        Some(token) => with_session_cookie(res, token),
        None => res,
    }
}

/// The token form's fields.
#[derive(Deserialize)]
pub(super) struct TokenForm {
    name: String,
    /// The password again, when the session is past its step-up window.
    password: Option<String>,
}

impl fmt::Debug for TokenForm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenForm")
            .field("name", &self.name)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// `POST /account/api-tokens`: the creation of `POST /v1/api-tokens`, with the
/// profile's longest lifetime. On a session past its step-up window, the form's
/// password re-authenticates first (as for the password change); without one,
/// the form comes back asking for it (403). Success: `303` to the page, which
/// shows the token once.
pub(super) async fn create_token<S: Store, C: Clock>(
    State(state): State<AppState<S, C>>,
    Client(client): Client,
    headers: HeaderMap,
    PageForm { session, form }: PageForm<TokenForm>,
) -> Result<Response, PageError> {
    let password = form.password.filter(|p| !p.is_empty());
    let elevated_now = session.is_elevated(state.engine().clock().now());
    let (session, elevated) = match password {
        Some(password) if !elevated_now => {
            match step_up(&state, session, &headers, &client, &password).await? {
                Ok(stepped) => stepped,
                Err((session, e)) => {
                    let message = "Your password is wrong, so no token was created.";
                    return render(&state, &session, form_again(Form::Token, &e, message)).await;
                }
            }
        }
        _ => (session, None),
    };
    let res = match create_api_token(&state, &session, false, &form.name, None).await {
        Ok((token, _)) => {
            let value = format!(
                "{NEW_TOKEN_COOKIE}={}; {NEW_TOKEN_ATTRIBUTES}; Max-Age=60",
                token.reveal().as_str()
            );
            let mut res = see_other(&Notice::TokenCreated.location());
            // Tokens are base64url: always a valid header value.
            if let Ok(v) = HeaderValue::try_from(value) {
                res.headers_mut().append(header::SET_COOKIE, v);
            }
            res
        }
        Err(e @ ApiError::StepUpRequired) => {
            let message = "For your security, enter your password again to create a token.";
            render(&state, &session, form_again(Form::Token, &e, message)).await?
        }
        Err(e @ ApiError::InvalidName) => {
            let message = "Give the token a name of 1 to 100 characters.";
            render(&state, &session, form_again(Form::Token, &e, message)).await?
        }
        Err(e) => PageError::from(e).into_response(),
    };
    Ok(with_new_token(res, elevated.as_ref()))
}

/// `POST /account/api-tokens/{id}/revoke`: revokes one of the user's API tokens
/// (`revoked_by_user`), as `DELETE /v1/api-tokens/{id}`.
pub(super) async fn revoke_token<S: Store, C: Clock>(
    State(state): State<AppState<S, C>>,
    PathParam(id): PathParam,
    form: PageForm<NoFields>,
) -> Result<Response, PageError> {
    let id = TokenId::parse(&id).map_err(|_| ApiError::NotFound)?;
    state
        .engine()
        .revoke_own_api_token(form.session.user_id(), &id)
        .await
        .map_err(ApiError::from)?;
    Ok(see_other(&Notice::TokenRevoked.location()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_round_trip_and_point_at_their_section() {
        for n in Notice::ALL {
            assert_eq!(Notice::from_code(n.code()), Some(n));
            assert!(n.location().starts_with("/account?notice="));
        }
        assert_eq!(Notice::from_code("<script>"), None);
        assert!(
            Notice::PasswordChanged
                .sentence(true)
                .contains("every API token")
        );
        assert!(!Notice::PasswordChanged.sentence(false).contains("token"));
    }
}
