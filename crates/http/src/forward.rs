//! Forward authentication: the headers of `GET /v1/auth`, the endpoint a
//! reverse proxy (nginx `auth_request`, Caddy `forward_auth`, Traefik
//! `forwardAuth`) asks before it passes a request on, and that
//! `sessionguard-axum`'s remote mode asks too.
//!
//! **The question.** The proxy sends the original request's credential (the
//! `Cookie` or `Authorization` header), how it was made (`X-Forwarded-Method`
//! or `X-Original-Method`; `Origin`, `Sec-Fetch-Site`) and where it went
//! (`X-Forwarded-Uri` or `X-Original-URI`, `X-Forwarded-Host` or `Host`,
//! `X-Forwarded-Proto`).
//!
//! **The answer.** `200` with the identity headers ([`X_AUTH_USER_ID`],
//! [`X_AUTH_USERNAME`] when the user has one, [`X_AUTH_SESSION_ID`] for a
//! session, [`X_AUTH_ROLES`] comma-separated, [`X_AUTH_STEP_UP_UNTIL`] and
//! [`X_AUTH_CSRF_TOKEN`] for a session) and a
//! renewed session cookie in `Set-Cookie` when one is due; or `401` with
//! [`X_AUTH_REASON`] (a reason code, or [`MISSING_CREDENTIALS`]) and
//! `WWW-Authenticate`; or `403` with `X-Auth-Reason: cross_origin_request`
//! for a cookie-authenticated cross-origin request that can change state
//! ([`crate::csrf`] applied to the forwarded method).
//!
//! The proxy must set the identity headers on the request it passes on from
//! the answer, replacing whatever the client sent under those names: an
//! upstream trusts them only because the proxy overwrites them.

use http::{HeaderMap, HeaderName, HeaderValue, Method, header};

/// The user's id.
pub const X_AUTH_USER_ID: HeaderName = HeaderName::from_static("x-auth-user-id");
/// The user's username; absent for users without credentials here (sidecar).
pub const X_AUTH_USERNAME: HeaderName = HeaderName::from_static("x-auth-username");
/// The session's public id; absent for a personal API token (no session).
pub const X_AUTH_SESSION_ID: HeaderName = HeaderName::from_static("x-auth-session-id");
/// The user's roles, comma-separated (empty when none).
pub const X_AUTH_ROLES: HeaderName = HeaderName::from_static("x-auth-roles");
/// Until when the session counts as recently authenticated (RFC 3339); absent
/// for a personal API token.
pub const X_AUTH_STEP_UP_UNTIL: HeaderName = HeaderName::from_static("x-auth-step-up-until");
/// The session's anti-CSRF token, for a front door that checks it on the
/// app's behalf (the middleware's remote mode). A proxy that passes it to an
/// app must overwrite it like the identity headers.
pub const X_AUTH_CSRF_TOKEN: HeaderName = HeaderName::from_static("x-auth-csrf-token");
/// Why a request was refused: a reason code, `missing_credentials` or
/// `cross_origin_request`.
pub const X_AUTH_REASON: HeaderName = HeaderName::from_static("x-auth-reason");

/// The original request's method, as proxies name it.
pub const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
/// The original request's method, as nginx examples name it.
pub const X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
/// The original request's path and query, as Traefik and Caddy name it.
pub const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
/// The original request's path and query, as nginx examples name it.
pub const X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
/// The original request's host.
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// The original request's scheme.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// The reason code of a request that presented no credential at all.
pub const MISSING_CREDENTIALS: &str = "missing_credentials";

/// Where `?redirect=login` sends a refused browser: the login page.
pub const LOGIN_PATH: &str = "/login";

/// The identity headers, in the order they are written. What a proxy must
/// overwrite (or remove) on every request it passes on.
pub const IDENTITY_HEADERS: [HeaderName; 6] = [
    X_AUTH_USER_ID,
    X_AUTH_USERNAME,
    X_AUTH_SESSION_ID,
    X_AUTH_ROLES,
    X_AUTH_STEP_UP_UNTIL,
    X_AUTH_CSRF_TOKEN,
];

/// The original request's method: `X-Forwarded-Method`, else
/// `X-Original-Method`, else `own` (the method of the auth request itself,
/// which some proxies set to the original's). A value that is not a method is
/// treated as unsafe (`POST`), so a garbled header cannot dodge the cross-site
/// rule.
pub fn original_method(headers: &HeaderMap, own: &Method) -> Method {
    match headers
        .get(X_FORWARDED_METHOD)
        .or_else(|| headers.get(X_ORIGINAL_METHOD))
    {
        Some(v) => Method::from_bytes(v.as_bytes().trim_ascii()).unwrap_or(Method::POST),
        None => own.clone(),
    }
}

/// The original request's URL, if it was made to `public_origin` (ASCII
/// case-insensitively) and its path is plain: `X-Forwarded-Uri` or
/// `X-Original-URI` (a path starting with one `/`, of visible ASCII), on the
/// origin `X-Forwarded-Proto` (default: the public origin's scheme) `://`
/// `X-Forwarded-Host` or `Host` (the first of a list). Anything else is
/// `None`: a login redirect then carries no `return_to`.
pub fn original_url(headers: &HeaderMap, public_origin: &str) -> Option<String> {
    let first = |name: &HeaderName| -> Option<&str> {
        let v = headers.get(name)?.to_str().ok()?;
        Some(v.split(',').next()?.trim()).filter(|s| !s.is_empty())
    };
    let uri = first(&X_FORWARDED_URI).or_else(|| first(&X_ORIGINAL_URI))?;
    let plain = uri.starts_with('/')
        && !uri.starts_with("//")
        && !uri.starts_with("/\\")
        && uri.bytes().all(|b| b.is_ascii_graphic());
    if !plain {
        return None;
    }
    let (scheme, _) = public_origin.split_once("://")?;
    let proto = first(&X_FORWARDED_PROTO).unwrap_or(scheme);
    let host = first(&X_FORWARDED_HOST).or_else(|| first(&header::HOST))?;
    let origin_len = proto.len() + 3 + host.len();
    let same = origin_len == public_origin.len()
        && public_origin[..proto.len()].eq_ignore_ascii_case(proto)
        && public_origin[proto.len()..].starts_with("://")
        && public_origin[proto.len() + 3..].eq_ignore_ascii_case(host);
    same.then(|| format!("{public_origin}{uri}"))
}

/// The `Location` of a login redirect: [`LOGIN_PATH`] on `public_origin`,
/// with `return_to` (the original URL, percent-encoded) when there is one.
///
/// Absolute, so that it means the same wherever the proxy's answer goes: a
/// proxy that resolves a relative `Location` against the URL it asked
/// (Traefik's `forwardAuth` does) would otherwise send the browser to
/// sessionguard's internal address.
pub fn login_location(public_origin: &str, return_to: Option<&str>) -> HeaderValue {
    let extra = return_to.map_or(0, |url| 11 + url.len() * 3);
    let mut location = String::with_capacity(public_origin.len() + LOGIN_PATH.len() + extra);
    location.push_str(public_origin);
    location.push_str(LOGIN_PATH);
    if let Some(url) = return_to {
        location.push_str("?return_to=");
        for b in url.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                location.push(char::from(b));
            } else {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                location.push('%');
                location.push(char::from(HEX[usize::from(b >> 4)]));
                location.push(char::from(HEX[usize::from(b & 0xf)]));
            }
        }
    }
    // The public origin is validated as an ASCII origin at start-up.
    HeaderValue::from_str(&location).unwrap_or_else(|_| HeaderValue::from_static(LOGIN_PATH))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: &str = "https://app.example";

    use crate::test_headers::headers;

    #[test]
    fn the_forwarded_method_wins_then_the_original_then_the_own() {
        let h = headers(&[("x-forwarded-method", "POST"), ("x-original-method", "GET")]);
        assert_eq!(original_method(&h, &Method::GET), Method::POST);
        let h = headers(&[("x-original-method", "DELETE")]);
        assert_eq!(original_method(&h, &Method::GET), Method::DELETE);
        assert_eq!(
            original_method(&HeaderMap::new(), &Method::PUT),
            Method::PUT
        );
    }

    #[test]
    fn a_garbled_method_counts_as_unsafe() {
        let h = headers(&[("x-forwarded-method", "G E T")]);
        assert_eq!(original_method(&h, &Method::GET), Method::POST);
    }

    #[test]
    fn the_original_url_is_kept_only_on_the_public_origin() {
        let h = headers(&[
            ("x-forwarded-uri", "/app/page?x=1"),
            ("x-forwarded-host", "APP.example"),
            ("x-forwarded-proto", "https"),
        ]);
        assert_eq!(
            original_url(&h, ORIGIN).as_deref(),
            Some("https://app.example/app/page?x=1")
        );
        let h = headers(&[("x-original-uri", "/a"), ("host", "app.example")]);
        assert_eq!(
            original_url(&h, ORIGIN).as_deref(),
            Some("https://app.example/a")
        );
        for evil in [
            headers(&[("x-original-uri", "/a"), ("host", "evil.example")]),
            headers(&[("x-original-uri", "/a"), ("host", "app.example:8443")]),
            headers(&[
                ("x-original-uri", "/a"),
                ("host", "app.example"),
                ("x-forwarded-proto", "http"),
            ]),
            headers(&[
                ("x-original-uri", "//evil.example/a"),
                ("host", "app.example"),
            ]),
            headers(&[
                ("x-original-uri", "/\\evil.example"),
                ("host", "app.example"),
            ]),
            headers(&[
                ("x-original-uri", "https://evil.example/"),
                ("host", "app.example"),
            ]),
            headers(&[("x-original-uri", "/a b"), ("host", "app.example")]),
            headers(&[("host", "app.example")]),
        ] {
            assert_eq!(original_url(&evil, ORIGIN), None, "{evil:?}");
        }
    }

    #[test]
    fn the_login_location_encodes_the_return_url() {
        assert_eq!(login_location(ORIGIN, None), "https://app.example/login");
        assert_eq!(
            login_location(ORIGIN, Some("https://app.example/a?b=c&d")),
            "https://app.example/login?return_to=https%3A%2F%2Fapp.example%2Fa%3Fb%3Dc%26d"
        );
    }
}
