//! Cross-site request protection (invariant 7): the origin rule (Fetch
//! Metadata, then `Origin`) and the session's anti-CSRF token.
//!
//! A state-changing request authenticated by the session cookie must pass both;
//! a bearer credential is never ambient, so it needs neither.
//!
//! The origin rule, in order: `Sec-Fetch-Site: same-origin | none` allows and
//! `cross-site | same-site` refuses; otherwise an `Origin` equal to the public
//! origin (ASCII case-insensitively) allows and any other `Origin` (including
//! `null`) refuses; a request with neither header is not from a browser and is
//! allowed.
//!
//! ```
//! use http::{HeaderMap, HeaderValue, Method};
//! use sessionguard_http::csrf;
//!
//! let mut headers = HeaderMap::new();
//! headers.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
//! assert!(csrf::is_unsafe(&Method::POST));
//! assert!(csrf::check_origin(&headers, "https://app.example").is_err());
//! ```

use http::{HeaderMap, HeaderName, Method, header};
use sessionguard_core::ValidSession;

/// The header that carries the session's anti-CSRF token.
pub const CSRF_HEADER: HeaderName = HeaderName::from_static("x-csrf-token");

/// The Fetch Metadata header browsers send with every request.
pub const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// A browser request from another origin (answered `403 cross_origin_request`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrossOrigin;

/// Whether `method` can change state (and so needs protection when a cookie
/// authenticates it).
pub fn is_unsafe(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// Refuses a browser request that did not come from `public_origin`.
pub fn check_origin(headers: &HeaderMap, public_origin: &str) -> Result<(), CrossOrigin> {
    if let Some(site) = headers.get(SEC_FETCH_SITE) {
        match site.as_bytes() {
            b"same-origin" | b"none" => return Ok(()),
            b"cross-site" | b"same-site" => return Err(CrossOrigin),
            // An unknown value says nothing; fall through to Origin.
            _ => {}
        }
    }
    match headers.get(header::ORIGIN) {
        None => Ok(()),
        Some(origin)
            if origin
                .as_bytes()
                .eq_ignore_ascii_case(public_origin.as_bytes()) =>
        {
            Ok(())
        }
        Some(_) => Err(CrossOrigin),
    }
}

/// Whether the request carries `session`'s anti-CSRF token in [`CSRF_HEADER`]
/// (compared in constant time).
pub fn has_token(headers: &HeaderMap, session: &ValidSession) -> bool {
    headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|presented| session.verify_csrf(presented))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: &str = "https://app.example";

    use crate::test_headers::headers;

    #[test]
    fn fetch_metadata_decides_first() {
        assert!(check_origin(&headers(&[("sec-fetch-site", "same-origin")]), ORIGIN).is_ok());
        assert!(check_origin(&headers(&[("sec-fetch-site", "none")]), ORIGIN).is_ok());
        assert!(check_origin(&headers(&[("sec-fetch-site", "cross-site")]), ORIGIN).is_err());
        assert!(check_origin(&headers(&[("sec-fetch-site", "same-site")]), ORIGIN).is_err());
        let h = headers(&[
            ("sec-fetch-site", "same-origin"),
            ("origin", "https://evil.example"),
        ]);
        assert!(check_origin(&h, ORIGIN).is_ok());
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
        assert!(!is_unsafe(&Method::OPTIONS));
        assert!(is_unsafe(&Method::POST));
        assert!(is_unsafe(&Method::DELETE));
        assert!(is_unsafe(&Method::PATCH));
        assert!(is_unsafe(&Method::PUT));
    }
}
