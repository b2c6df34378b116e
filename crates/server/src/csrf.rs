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
//! request with neither header is not from a browser and is allowed.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, Method};
use sessionguard_core::{Clock, Store, ValidSession};

use crate::error::ApiError;
use crate::state::AppState;

/// The header that carries the session's anti-CSRF token.
pub const CSRF_HEADER: HeaderName = HeaderName::from_static("x-csrf-token");

const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// Whether `method` can change state (and so needs protection when a cookie
/// authenticates it).
pub fn is_unsafe(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// Refuses a browser request that did not come from `public_origin`.
pub fn check_origin(headers: &HeaderMap, public_origin: &str) -> Result<(), ApiError> {
    if let Some(site) = headers.get(SEC_FETCH_SITE) {
        match site.as_bytes() {
            b"same-origin" | b"none" => return Ok(()),
            b"cross-site" | b"same-site" => return Err(ApiError::CrossOrigin),
            // An unknown value says nothing; fall through to Origin.
            _ => {}
        }
    }
    match headers.get(axum::http::header::ORIGIN) {
        None => Ok(()),
        Some(origin)
            if origin
                .as_bytes()
                .eq_ignore_ascii_case(public_origin.as_bytes()) =>
        {
            Ok(())
        }
        Some(_) => Err(ApiError::CrossOrigin),
    }
}

/// Refuses a request that does not carry `session`'s anti-CSRF token.
pub fn check_token(headers: &HeaderMap, session: &ValidSession) -> Result<(), ApiError> {
    let presented = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or(ApiError::CsrfTokenInvalid)?;
    if session.verify_csrf(presented) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const ORIGIN: &str = "https://app.example";

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn fetch_metadata_decides_first() {
        assert!(check_origin(&headers(&[("sec-fetch-site", "same-origin")]), ORIGIN).is_ok());
        assert!(check_origin(&headers(&[("sec-fetch-site", "none")]), ORIGIN).is_ok());
        assert!(check_origin(&headers(&[("sec-fetch-site", "cross-site")]), ORIGIN).is_err());
        assert!(check_origin(&headers(&[("sec-fetch-site", "same-site")]), ORIGIN).is_err());
    }

    #[test]
    fn origin_must_equal_the_public_origin() {
        assert!(check_origin(&headers(&[("origin", "https://app.example")]), ORIGIN).is_ok());
        assert!(check_origin(&headers(&[("origin", "HTTPS://APP.example")]), ORIGIN).is_ok());
        assert!(check_origin(&headers(&[("origin", "https://evil.example")]), ORIGIN).is_err());
        assert!(check_origin(&headers(&[("origin", "null")]), ORIGIN).is_err());
        assert!(check_origin(&headers(&[("origin", "https://app.example:444")]), ORIGIN).is_err());
    }

    #[test]
    fn unknown_fetch_site_falls_back_to_origin() {
        let h = headers(&[
            ("sec-fetch-site", "weird"),
            ("origin", "https://evil.example"),
        ]);
        assert!(check_origin(&h, ORIGIN).is_err());
        assert!(check_origin(&headers(&[("sec-fetch-site", "weird")]), ORIGIN).is_ok());
    }

    #[test]
    fn requests_without_browser_headers_pass() {
        assert!(check_origin(&HeaderMap::new(), ORIGIN).is_ok());
    }

    #[test]
    fn safe_methods_are_not_checked() {
        assert!(!is_unsafe(&Method::GET));
        assert!(!is_unsafe(&Method::HEAD));
        assert!(is_unsafe(&Method::POST));
        assert!(is_unsafe(&Method::DELETE));
        assert!(is_unsafe(&Method::PATCH));
        assert!(is_unsafe(&Method::PUT));
    }
}
