//! `GET /v1/auth` (any method): forward authentication for reverse proxies
//! (nginx `auth_request`, Caddy `forward_auth`, Traefik `forwardAuth`) and for
//! `sessionguard-axum`'s remote mode. The headers are
//! [`sessionguard_http::forward`]'s.
//!
//! It does the work of one session check and nothing more: the credential is
//! parsed (no store call for a malformed one), checked with one store read
//! (touch coalesced as everywhere; a cookie due for renewal is rotated and the
//! new one set in `Set-Cookie`), and the user's username and roles come from
//! the engine's identity memo ([`sessionguard_core::Engine::identity`]) under
//! the privilege count read with the session. A live credential gets `200`
//! with an empty body and the identity headers.
//!
//! | credential | check |
//! |---|---|
//! | session cookie | `Engine::validate_renewing`; the origin rule when the original method can change state |
//! | `Bearer sgs_…` (session token) | `Engine::validate` |
//! | `Bearer <JWT>` (access token) | signature and claims, then `Engine::validate_access` |
//! | `Bearer sga_…` (personal API token) | `Engine::validate_api_token` (no session: no `X-Auth-Session-Id`) |
//! | anything else, or nothing | `401` |
//!
//! A refusal is `401` with `X-Auth-Reason` (the reason code, `invalid_token`,
//! or `missing_credentials` when the request carries no credential at all),
//! `WWW-Authenticate` and a problem document; with `?redirect=login` it is a
//! `302` to the login page instead (an absolute URL on the public origin, which
//! every proxy passes on unchanged), with the original URL as `return_to` when
//! it is on the public origin. A cookie-authenticated request whose original
//! method can change state and whose `Sec-Fetch-Site`/`Origin` say it came
//! from another site is `403 cross_origin_request` (with `X-Auth-Reason`), so
//! putting an app behind the proxy cannot open it to cross-site request
//! forgery. The session's anti-CSRF token is not required here: the upstream's
//! own forms do not know it.

use axum::body::Body;
use axum::extract::{FromRequestParts as _, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sessionguard_core::{Clock, Identity, Rejection, Store};
use sessionguard_http::check::{Checked, Refused, check_request};
use sessionguard_http::forward::{self, X_AUTH_REASON};
use sessionguard_http::problem::{self, Problem};

use crate::context::Renewal;
use crate::error::ApiError;
use crate::extract::QueryParams;
use crate::state::AppState;

/// `?redirect=login`.
#[derive(Debug, Deserialize)]
pub struct AuthQuery {
    redirect: Option<String>,
}

/// `GET /v1/auth` (any method): see the module documentation. The request's
/// parts are read in place (no copy of its headers: this runs before every
/// request a proxy passes on).
pub async fn auth<S: Store, C: Clock>(
    State(state): State<AppState<S, C>>,
    req: Request,
) -> Result<Response, ApiError> {
    let (mut parts, _) = req.into_parts();
    let redirect = match parts.uri.query() {
        None => false,
        Some(_) => {
            let QueryParams(query) =
                QueryParams::<AuthQuery>::from_request_parts(&mut parts, &state).await?;
            match query.redirect.as_deref() {
                None => false,
                Some("login") => true,
                Some(_) => return Err(ApiError::InvalidQuery("redirect")),
            }
        }
    };
    let renewal = parts.extensions.get::<Renewal>();
    let headers = &parts.headers;
    let original = forward::original_method(headers, &parts.method);
    let checked = check_request(
        state.engine(),
        headers,
        &original,
        state.public_origin(),
        &state,
    )
    .await;
    let login = || redirect.then(|| login_redirect(&state, headers));
    match checked {
        Ok(mut who) => {
            if let (Some(token), Some(slot)) = (who.renewed.take(), renewal) {
                slot.set(token);
            }
            let identity = state.engine().identity(&who.user, who.privileges).await?;
            Ok(authorized(&who, &identity))
        }
        Err(Refused::CrossOrigin) => {
            let mut res = ApiError::CrossOrigin.into_response();
            res.headers_mut().insert(
                X_AUTH_REASON,
                HeaderValue::from_static("cross_origin_request"),
            );
            Ok(res)
        }
        Err(Refused::Missing) => Ok(refused(forward::MISSING_CREDENTIALS, None, false, login())),
        Err(Refused::Rejected { rejection, bearer }) => Ok(refused(
            rejection.reason.code(),
            Some(&rejection),
            bearer,
            login(),
        )),
        Err(Refused::Failed(e)) => Err(e.into()),
        Err(other) => Err(ApiError::Internal(format!("unexpected refusal {other:?}"))),
    }
}

/// `200`, no body, the identity headers.
fn authorized(who: &Checked, identity: &Identity) -> Response {
    let mut res = Response::new(Body::empty());
    let h = res.headers_mut();
    // User ids and usernames have no control characters: always header values
    // (UTF-8 beyond ASCII is carried as opaque bytes).
    if let Ok(v) = HeaderValue::from_bytes(who.user.as_str().as_bytes()) {
        h.insert(forward::X_AUTH_USER_ID, v);
    }
    if let Some(v) = identity
        .username()
        .and_then(|u| HeaderValue::from_bytes(u.as_bytes()).ok())
    {
        h.insert(forward::X_AUTH_USERNAME, v);
    }
    if let Some(session) = &who.session {
        if let Ok(v) = HeaderValue::try_from(session.id().to_string()) {
            h.insert(forward::X_AUTH_SESSION_ID, v);
        }
        if let Ok(v) = HeaderValue::try_from(session.step_up_until().to_rfc3339()) {
            h.insert(forward::X_AUTH_STEP_UP_UNTIL, v);
        }
        if let Ok(v) = HeaderValue::try_from(session.csrf_token()) {
            h.insert(forward::X_AUTH_CSRF_TOKEN, v);
        }
    }
    // Roles are `a-z A-Z 0-9 _ - . :`: always a header value.
    if let Ok(v) = HeaderValue::try_from(identity.roles().join(",")) {
        h.insert(forward::X_AUTH_ROLES, v);
    }
    res
}

/// `401` with the reason and the challenge (and a problem document), or the
/// `302` to the login page when `redirect` gives its location.
fn refused(
    code: &'static str,
    rejection: Option<&Rejection>,
    bearer: bool,
    redirect: Option<HeaderValue>,
) -> Response {
    tracing::debug!(code, status = 401, "forward-auth refused");
    let reason = HeaderValue::from_static(code);
    if let Some(location) = redirect {
        let mut res = StatusCode::FOUND.into_response();
        res.headers_mut().insert(header::LOCATION, location);
        res.headers_mut().insert(X_AUTH_REASON, reason);
        return res;
    }
    let problem = match rejection {
        Some(r) => Problem::session(r),
        None => Problem::new(
            StatusCode::UNAUTHORIZED,
            forward::MISSING_CREDENTIALS,
            "Credentials required",
            "The request carries neither a session cookie nor a bearer token.",
        ),
    };
    let mut res: Response = problem.response();
    res.headers_mut()
        .insert(header::WWW_AUTHENTICATE, problem::challenge(bearer));
    res.headers_mut().insert(X_AUTH_REASON, reason);
    res
}

/// The login page's absolute location on the public origin, with the original
/// URL when it is on that origin.
fn login_redirect<S: Store, C: Clock>(state: &AppState<S, C>, headers: &HeaderMap) -> HeaderValue {
    let original = forward::original_url(headers, state.public_origin());
    forward::login_location(state.public_origin(), original.as_deref())
}
