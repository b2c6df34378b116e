//! The session cookie (invariant 7) and the limits on the headers that carry
//! credentials.
//!
//! One cookie, `__Host-sg_session`, holds a browser's session token. The
//! `__Host-` prefix makes browsers insist on `Secure`, `Path=/` and no
//! `Domain`; `HttpOnly` keeps it from scripts; `SameSite=Lax` keeps it off
//! cross-site subrequests and form posts. It has no `Max-Age`: it is a
//! browser-session cookie, and the server-side idle and absolute deadlines are
//! the control, never the cookie's life.
//!
//! ```
//! use sessionguard_core::{Token, TokenKind};
//! use sessionguard_http::cookie;
//!
//! let token = Token::generate(TokenKind::Session);
//! let set = cookie::session_cookie(&token);
//! assert!(cookie::is_session_cookie(&set));
//! assert!(set.to_str().unwrap().ends_with("; Path=/; Secure; HttpOnly; SameSite=Lax"));
//! assert!(cookie::is_session_cookie(&cookie::clear_cookie()));
//! ```

use http::{HeaderMap, HeaderValue, header};
use sessionguard_core::Token;
use zeroize::Zeroizing;

macro_rules! name {
    () => {
        "__Host-sg_session"
    };
}
macro_rules! attributes {
    () => {
        "Path=/; Secure; HttpOnly; SameSite=Lax"
    };
}

/// The session cookie's name.
pub const SESSION_COOKIE: &str = name!();

/// The session cookie's attributes, the same on every `Set-Cookie`.
pub const COOKIE_ATTRIBUTES: &str = attributes!();

/// The `Set-Cookie` value that makes browsers drop the session cookie.
pub const CLEAR_COOKIE: &str = concat!(name!(), "=; ", attributes!(), "; Max-Age=0");

/// Largest accepted header block (names, values and separators), in bytes.
pub const HEADER_BLOCK_LIMIT: usize = 16 * 1024;

/// Largest accepted single `Cookie` or `Authorization` header value, in bytes.
pub const CREDENTIAL_HEADER_LIMIT: usize = 8 * 1024;

/// The `Set-Cookie` value carrying `token` in the session cookie.
pub fn session_cookie(token: &Token) -> HeaderValue {
    let token = token.reveal();
    let mut value = Zeroizing::new(String::with_capacity(
        SESSION_COOKIE.len() + 1 + token.len() + 2 + COOKIE_ATTRIBUTES.len(),
    ));
    value.push_str(SESSION_COOKIE);
    value.push('=');
    value.push_str(&token);
    value.push_str("; ");
    value.push_str(COOKIE_ATTRIBUTES);
    HeaderValue::from_str(&value).expect("a token is base64url after its prefix: a header value")
}

/// The `Set-Cookie` value that clears the session cookie ([`CLEAR_COOKIE`]).
pub fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static(CLEAR_COOKIE)
}

/// Whether a `Set-Cookie` value sets or clears the session cookie.
pub fn is_session_cookie(set_cookie: &HeaderValue) -> bool {
    set_cookie
        .as_bytes()
        .strip_prefix(SESSION_COOKIE.as_bytes())
        .is_some_and(|rest| rest.starts_with(b"="))
}

/// Whether a response's headers already set or clear the session cookie.
pub fn sets_session_cookie(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .any(is_session_cookie)
}

/// The session cookie's value in a request's `Cookie` headers: `None` if absent
/// or empty, `Some(Err(NotUtf8))` if it is not UTF-8 ([`find_named`]).
pub fn find(headers: &HeaderMap) -> Option<Result<&str, NotUtf8>> {
    find_named(headers, SESSION_COOKIE)
}

/// The value of the cookie `name` in a request's `Cookie` headers: `None` if
/// absent or empty, `Some(Err(NotUtf8))` if it is not UTF-8. Parsed as bytes, so
/// that other cookies' bytes do not matter; surrounding double quotes are
/// removed. The one cookie parser of sessionguard: the session cookie and the
/// server's other cookies (a known device, a token shown once) are read with it.
pub fn find_named<'h>(headers: &'h HeaderMap, name: &str) -> Option<Result<&'h str, NotUtf8>> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|&b| b == b'=')?;
            let (found, value) = (&pair[..eq], &pair[eq + 1..]);
            if found.trim_ascii() != name.as_bytes() {
                return None;
            }
            let value = value.trim_ascii();
            let value = value
                .strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(value);
            (!value.is_empty()).then(|| std::str::from_utf8(value).map_err(|_| NotUtf8))
        })
}

/// A session cookie whose value is not UTF-8 (so not a token of ours).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotUtf8;

/// Whether headers exceed [`HEADER_BLOCK_LIMIT`] in total or carry a credential
/// header over [`CREDENTIAL_HEADER_LIMIT`]: such a request is refused (431)
/// before anything reads them.
pub fn headers_too_large(headers: &HeaderMap) -> bool {
    let mut total = 0usize;
    for (name, value) in headers {
        // As on the wire: `name: value\r\n`.
        total = total.saturating_add(name.as_str().len() + value.len() + 4);
        let credential = name == header::COOKIE || name == header::AUTHORIZATION;
        if credential && value.len() > CREDENTIAL_HEADER_LIMIT {
            return true;
        }
    }
    total > HEADER_BLOCK_LIMIT
}

#[cfg(test)]
mod tests {
    use super::*;
    use sessionguard_core::TokenKind;

    use crate::test_headers::with;

    #[test]
    fn the_set_cookie_value_carries_the_token_and_every_attribute() {
        let token = Token::generate(TokenKind::Session);
        let set = session_cookie(&token);
        let expected = format!(
            "__Host-sg_session={}; Path=/; Secure; HttpOnly; SameSite=Lax",
            token.reveal().as_str()
        );
        assert_eq!(set.to_str().unwrap(), expected);
    }

    #[test]
    fn clearing_names_the_same_cookie_with_the_same_attributes() {
        assert!(CLEAR_COOKIE.starts_with(&format!("{SESSION_COOKIE}=;")));
        assert!(CLEAR_COOKIE.contains(COOKIE_ATTRIBUTES));
        assert!(CLEAR_COOKIE.ends_with("; Max-Age=0"));
    }

    #[test]
    fn only_the_session_cookie_counts_as_setting_it() {
        let mut h = HeaderMap::new();
        h.append(header::SET_COOKIE, HeaderValue::from_static("theme=dark"));
        h.append(
            header::SET_COOKIE,
            HeaderValue::from_static("__Host-sg_sessionx=1"),
        );
        assert!(!sets_session_cookie(&h));
        h.append(header::SET_COOKIE, clear_cookie());
        assert!(sets_session_cookie(&h));
    }

    #[test]
    fn the_cookie_is_found_among_others_and_other_bytes_do_not_matter() {
        let h = with(
            header::COOKIE,
            b"a=\xff\xfe; __Host-sg_session=\"tok\"; b=c",
        );
        assert_eq!(find(&h), Some(Ok("tok")));
        let h = with(header::COOKIE, b"__Host-sg_session=\xff\xfe");
        assert_eq!(find(&h), Some(Err(NotUtf8)));
    }

    #[test]
    fn empty_and_other_cookies_are_absent() {
        assert_eq!(find(&with(header::COOKIE, b"__Host-sg_session=")), None);
        assert_eq!(find(&with(header::COOKIE, b"sg_session=x")), None);
        assert_eq!(find(&HeaderMap::new()), None);
    }

    #[test]
    fn header_limits() {
        assert!(!headers_too_large(&with(header::COOKIE, &[b'a'; 8 * 1024])));
        assert!(headers_too_large(&with(
            header::COOKIE,
            &[b'a'; 8 * 1024 + 1]
        )));
        assert!(headers_too_large(&with(
            header::AUTHORIZATION,
            &[b'a'; 8 * 1024 + 1]
        )));
        let mut h = HeaderMap::new();
        for i in 0..3 {
            let name = header::HeaderName::from_bytes(format!("x-pad-{i}").as_bytes()).unwrap();
            h.insert(name, HeaderValue::from_bytes(&[b'a'; 6 * 1024]).unwrap());
        }
        assert!(headers_too_large(&h));
        h.remove("x-pad-2");
        assert!(!headers_too_large(&h));
    }
}
