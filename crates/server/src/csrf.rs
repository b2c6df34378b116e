//! Cross-site request protection (invariant 7): an Origin / Fetch-Metadata check
//! plus the session's anti-CSRF token.
//!
//! Which requests are checked:
//!
//! | request | origin check | `X-CSRF-Token` |
//! |---|---|---|
//! | login (any credential or none) | yes (login CSRF) | no (no session yet) |
//! | cookie-authenticated POST/PUT/PATCH/DELETE | yes | yes |
//! | cookie-authenticated GET/HEAD/OPTIONS | no | no |
//! | bearer-authenticated | no | no (no ambient credential) |
//!
//! The origin check, in order: `Sec-Fetch-Site: same-origin | none` allows and
//! `cross-site | same-site` refuses; otherwise an `Origin` equal to the configured
//! public origin allows and any other `Origin` (including `null`) refuses; a
//! request with neither header is not from a browser and is allowed. The rule
//! itself is [`sessionguard_http::csrf`], shared with the middleware; this module
//! maps its refusals to [`ApiError`]s.

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use sessionguard_core::{Clock, Store, ValidSession};
pub use sessionguard_http::csrf::{CSRF_HEADER, is_unsafe};

use crate::error::ApiError;
use crate::state::AppState;

/// Refuses a browser request that did not come from `public_origin`
/// ([`sessionguard_http::csrf::check_origin`]).
pub fn check_origin(headers: &HeaderMap, public_origin: &str) -> Result<(), ApiError> {
    sessionguard_http::csrf::check_origin(headers, public_origin).map_err(|_| ApiError::CrossOrigin)
}

/// Refuses a request that does not carry `session`'s anti-CSRF token.
pub fn check_token(headers: &HeaderMap, session: &ValidSession) -> Result<(), ApiError> {
    if sessionguard_http::csrf::has_token(headers, session) {
        Ok(())
    } else {
        Err(ApiError::CsrfTokenInvalid)
    }
}

/// Extractor that passes only requests allowed by [`check_origin`]; used by login,
/// which has no session yet (login CSRF).
#[derive(Debug, Clone, Copy)]
pub struct SameOrigin;

impl<S: Store, C: Clock> FromRequestParts<AppState<S, C>> for SameOrigin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState<S, C>,
    ) -> Result<Self, Self::Rejection> {
        check_origin(&parts.headers, state.public_origin()).map(|()| SameOrigin)
    }
}
