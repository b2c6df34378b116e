//! The web pages for people: signing in, the account page (sessions, password,
//! API tokens, recent security events) and the idle-timeout warning.
//!
//! Server-rendered HTML from compile-time templates (`templates/`, askama) that
//! works without JavaScript; the two small scripts in `static/` add the
//! idle-timeout warning and a copy button. Every action goes through the very
//! functions, engine operations and rules of the JSON API — the login path
//! (`routes::session::password_login`), the origin rule
//! ([`crate::csrf::check_origin`]) and the session's anti-CSRF token, the step-up
//! rule, the session list, sign-out of others, the password change, API tokens
//! and the user's events — never a copy of them.
//!
//! | page | does |
//! |---|---|
//! | `GET /login` | the sign-in form; says in words why the browser's session ended (its dead cookie, or `?reason=<code>`) |
//! | `POST /login` | signs in (origin rule): `303` to a same-origin `return_to`, else `/account`; 401 "Wrong username or password" |
//! | `GET /account` | sessions, password change, API tokens, recent security events; `303` to `/login?return_to=/account` when not signed in |
//! | `POST /account/sessions/{id}/revoke` | signs one other session out (`revoked_by_user`) |
//! | `POST /account/sessions/revoke-others` | signs every other session out (`signed_out_everywhere`) |
//! | `POST /account/password` | changes the password: every other session and (by policy) every API token ends |
//! | `POST /account/api-tokens` | creates an API token, shown once on the page it redirects to |
//! | `POST /account/api-tokens/{id}/revoke` | revokes an API token |
//! | `POST /logout` | signs this session out (`logged_out`), `303` to `/login?reason=logged_out` |
//! | `GET /static/{file}` | `idle-warning.js`, `account.js`, `pages.css`, `favicon.svg` |
//! | `GET /favicon.ico` | the icon, for pages that name none (JSON answers opened in a browser) |
//!
//! Rules every page follows:
//!
//! - **Only the cookie.** Pages authenticate by the session cookie alone; an
//!   `Authorization` header is not a browser's and is ignored. Viewing a page is
//!   activity (the idle deadline moves, the cookie is renewed when due).
//! - **CSRF.** Every state change is a form `POST` answered with `303`. It must
//!   pass the origin rule (before the session is even looked up) and carry the
//!   session's anti-CSRF token in the form field `csrf_token`; sign-in, which has
//!   no session yet, is protected by the origin rule alone, as `POST /v1/login`.
//! - **Step-up.** Changing the password and creating an API token need a recently
//!   authenticated session (`step_up_ttl`), as in the JSON API. The pages never
//!   skip that rule; they satisfy it: the password form's **Current password**,
//!   and on a session past its step-up window a **Confirm your password** field
//!   in the token form, re-authenticate through the step-up of
//!   `POST /v1/session/elevate` (`routes::session::reauthenticate`)
//!   before the action runs, so the user never meets a bare 403.
//! - **Headers.** [`CONTENT_SECURITY_POLICY`] (no inline script or style, no
//!   framing), `Referrer-Policy: same-origin`, `X-Content-Type-Options: nosniff`,
//!   `X-Frame-Options: DENY`, `Cross-Origin-Opener-Policy: same-origin`, and
//!   `Cache-Control: no-store` (static files excepted).
//! - **Nothing echoed.** Reasons and notices in the URL are codes mapped to fixed
//!   sentences; unknown codes show nothing. A `return_to` is kept only when it is
//!   a path on this origin ([`login::same_origin_path`]).

mod account;
mod assets;
mod auth;
mod device;
mod login;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::map_response;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use sessionguard_core::{Clock, Store, Timestamp};

use crate::state::AppState;

pub use login::same_origin_path;

/// The Content-Security-Policy of every page: scripts, styles, images and
/// fetches from this origin only (no inline code at all), forms posted only to
/// this origin, no framing, no `<base>`.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// The pages' routes (templates and handlers), for [`router`] and for the
/// application's list of route templates.
pub fn routes<S: Store, C: Clock>() -> Vec<(&'static str, MethodRouter<AppState<S, C>>)> {
    vec![
        (
            "/login",
            get(login::show::<S, C>).post(login::submit::<S, C>),
        ),
        ("/logout", post(account::sign_out::<S, C>)),
        ("/account", get(account::show::<S, C>)),
        ("/account/password", post(account::change_password::<S, C>)),
        (
            "/account/sessions/revoke-others",
            post(account::sign_out_others::<S, C>),
        ),
        (
            "/account/sessions/{id}/revoke",
            post(account::sign_out_session::<S, C>),
        ),
        ("/account/api-tokens", post(account::create_token::<S, C>)),
        (
            "/account/api-tokens/{id}/revoke",
            post(account::revoke_token::<S, C>),
        ),
        ("/static/{file}", get(assets::serve)),
        ("/favicon.ico", get(assets::favicon)),
    ]
}

/// The pages' routes with their security headers, to be merged into the
/// application's router.
pub fn router<S: Store, C: Clock>() -> Router<AppState<S, C>> {
    routes::<S, C>()
        .into_iter()
        .fold(Router::new(), |router, (path, route)| {
            router.route(path, route)
        })
        .layer(map_response(security_headers))
}

/// Adds the pages' security headers (see the module documentation).
async fn security_headers(mut res: Response) -> Response {
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    res
}

/// A rendered template with `status`; a template that fails to render (a bug)
/// is a 500 page.
fn html(status: StatusCode, page: &impl askama::Template) -> Response {
    match page.render() {
        Ok(body) => (status, Html(body)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a page template failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html("<!doctype html><title>Error</title><p>Something went wrong.</p>"),
            )
                .into_response()
        }
    }
}

/// `303 See Other` to `location`, a path of this origin.
fn see_other(location: &str) -> Response {
    match HeaderValue::try_from(location) {
        Ok(v) => (StatusCode::SEE_OTHER, [(header::LOCATION, v)]).into_response(),
        // Locations are built from fixed paths and checked `return_to` values.
        Err(_) => (StatusCode::SEE_OTHER, [(header::LOCATION, "/account")]).into_response(),
    }
}

/// A time as the pages show it: the machine-readable RFC 3339 text for
/// `<time datetime>` and a short UTC text for people.
#[derive(Debug, Clone)]
struct When {
    iso: String,
    text: String,
}

impl From<Timestamp> for When {
    fn from(t: Timestamp) -> Self {
        let iso = t.to_rfc3339();
        // `YYYY-MM-DDTHH:MM:SSZ` → `YYYY-MM-DD HH:MM UTC`.
        let text = match (iso.get(..10), iso.get(11..16)) {
            (Some(day), Some(minute)) => format!("{day} {minute} UTC"),
            _ => iso.clone(),
        };
        When { iso, text }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_shown_to_the_minute_in_utc() {
        let w = When::from(Timestamp::from_millis(1_767_323_045_000));
        assert_eq!(w.iso, "2026-01-02T03:04:05Z");
        assert_eq!(w.text, "2026-01-02 03:04 UTC");
    }

    #[test]
    fn the_policy_allows_no_inline_code_and_no_framing() {
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "frame-ancestors 'none'",
            "form-action 'self'",
        ] {
            assert!(CONTENT_SECURITY_POLICY.contains(directive), "{directive}");
        }
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
    }
}
