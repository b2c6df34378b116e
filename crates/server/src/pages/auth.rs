//! Who is asking, for a page: the session cookie checked by the engine, the
//! origin rule and the anti-CSRF form field for posted forms, and how a page
//! refuses (in words, or by sending the browser to sign in).

use askama::Template;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use sessionguard_core::{Clock, Store, StoreError, ValidSession};

use crate::context::Renewal;
use crate::csrf;
use crate::error::ApiError;
use crate::extract::{Credential, form_bytes, parse_form, validate_cookie};
use crate::state::AppState;

use super::{html, see_other};

/// Where a page sends a browser that is not (or no longer) signed in. The login
/// page finds the reason in the browser's dead cookie.
pub(super) const SIGN_IN: &str = "/login?return_to=/account";

/// Why a page did not do what was asked.
#[derive(Debug)]
pub(super) enum PageError {
    /// No live session: `303` to [`SIGN_IN`].
    SignIn,
    /// Refused: a page saying why in words, with the failure's status.
    Refused(ApiError),
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        match e {
            // The session ended while the request was served.
            ApiError::Session { .. } => PageError::SignIn,
            other => PageError::Refused(other),
        }
    }
}

impl From<StoreError> for PageError {
    fn from(e: StoreError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<sessionguard_core::Error> for PageError {
    fn from(e: sessionguard_core::Error) -> Self {
        ApiError::session(e, false).into()
    }
}

/// The page of a refusal.
#[derive(Template)]
#[template(path = "refused.html")]
struct RefusedPage {
    title: &'static str,
    message: &'static str,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::SignIn => see_other(SIGN_IN),
            PageError::Refused(e) => {
                e.log();
                let (title, message) = in_words(&e);
                html(e.status(), &RefusedPage { title, message })
            }
        }
    }
}

/// A refusal said to a person: a title and a sentence, never internals.
fn in_words(e: &ApiError) -> (&'static str, &'static str) {
    match e {
        ApiError::CrossOrigin => (
            "Request refused",
            "This form was sent from another website, so it was refused and nothing was \
             changed.",
        ),
        ApiError::CsrfTokenInvalid => (
            "Form out of date",
            "This form is out of date, so nothing was changed. Open your account page again \
             and retry.",
        ),
        ApiError::NotFound => (
            "Not found",
            "That session or token does not exist or has already ended.",
        ),
        ApiError::Store(_) => (
            "Service unavailable",
            "The service is unavailable right now and nothing was changed. Please try again \
             in a moment.",
        ),
        ApiError::Conflict(_) => (
            "Please try again",
            "Something changed at the same moment, so nothing was done. Please try again.",
        ),
        ApiError::PayloadTooLarge
        | ApiError::UnsupportedMediaType
        | ApiError::Malformed { .. }
        | ApiError::HeadersTooLarge => (
            "Request not understood",
            "The form could not be read, so nothing was changed. Please go back and try again.",
        ),
        _ => (
            "Something went wrong",
            "The request could not be completed. Please try again.",
        ),
    }
}

/// The signed-in session of a page request: the session cookie alone, checked
/// as activity, with a token due for renewal replaced (the new cookie goes out
/// with whatever the page answers). An unsafe method must first pass the origin
/// rule, so a refused cross-site request is not activity.
#[derive(Debug)]
pub(super) struct PageSession(pub(super) ValidSession);

impl<S: Store, C: Clock> FromRequestParts<AppState<S, C>> for PageSession {
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState<S, C>,
    ) -> Result<Self, Self::Rejection> {
        if csrf::is_unsafe(&parts.method) {
            csrf::check_origin(&parts.headers, state.public_origin())?;
        }
        let Some(credential) = Credential::from_cookie(&parts.headers).ok().flatten() else {
            return Err(PageError::SignIn);
        };
        let engine = state.engine();
        let checked = match parts.extensions.get::<Renewal>() {
            Some(slot) => validate_cookie(engine, credential.token(), slot).await,
            None => engine.validate(credential.token()).await,
        };
        Ok(PageSession(checked?))
    }
}

/// A posted form of a signed-in page: [`PageSession`] (origin rule, session
/// check), then the form body, whose `csrf_token` field must be the session's
/// anti-CSRF token (403 otherwise).
#[derive(Debug)]
pub(super) struct PageForm<T> {
    /// The session, checked.
    pub(super) session: ValidSession,
    /// The form's other fields.
    pub(super) form: T,
}

/// The anti-CSRF field every posted form carries.
#[derive(Deserialize)]
struct CsrfField {
    csrf_token: Option<String>,
}

impl<S: Store, C: Clock, T: DeserializeOwned> FromRequest<AppState<S, C>> for PageForm<T> {
    type Rejection = PageError;

    async fn from_request(req: Request, state: &AppState<S, C>) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let PageSession(session) = PageSession::from_request_parts(&mut parts, state).await?;
        let bytes = form_bytes(Request::from_parts(parts, body), state).await?;
        let CsrfField { csrf_token } = parse_form(&bytes)?;
        if !csrf_token.is_some_and(|t| session.verify_csrf(&t)) {
            return Err(ApiError::CsrfTokenInvalid.into());
        }
        let form = parse_form(&bytes)?;
        Ok(PageForm { session, form })
    }
}
