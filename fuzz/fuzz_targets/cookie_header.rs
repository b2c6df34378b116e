//! The server's credential extraction, `Credential::from_headers`, on arbitrary
//! `Cookie` and `Authorization` header bytes.
//!
//! Input: lines separated by `\n`; a line's first byte names the header (`C`
//! `Cookie`, `A` `Authorization`, anything else an unrelated `X-Other`) and the
//! rest is its value. Lines that are not valid header values (control bytes) are
//! dropped: no HTTP parser would pass them on.
//!
//! Invariants:
//! - nothing panics, and the answer is the same when asked twice;
//! - the answer is the documented one, computed here independently (see
//!   `expected`): bearer wins, else the session cookie, non-UTF-8 is refused;
//! - an error is always `401 invalid_token`;
//! - `Debug` shows no token;
//! - only bearer credentials can be access tokens.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use libfuzzer_sys::fuzz_target;
use sessionguard_server::extract::{Credential, CredentialSource, SESSION_COOKIE};

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        let Some((&which, value)) = line.split_first() else {
            continue;
        };
        let name = match which {
            b'C' => header::COOKIE,
            b'A' => header::AUTHORIZATION,
            _ => HeaderName::from_static("x-other"),
        };
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(name, value);
        }
    }
    check(&headers);
});

fn check(headers: &HeaderMap) {
    let result = Credential::from_headers(headers);
    let again = Credential::from_headers(headers);
    assert_eq!(summary(&result), summary(&again), "not deterministic");
    assert_eq!(
        summary(&result),
        expected(headers),
        "not the documented credential"
    );

    match result {
        Err(e) => {
            assert_eq!(e.status(), StatusCode::UNAUTHORIZED, "{e:?}");
            assert_eq!(e.code(), "invalid_token", "{e:?}");
        }
        Ok(None) => {}
        Ok(Some(credential)) => {
            assert!(!credential.token().is_empty(), "an empty credential");
            let debug = format!("{credential:?}");
            assert!(
                debug == r#"Credential { source: Bearer, token: "<redacted>" }"#
                    || debug == r#"Credential { source: Cookie, token: "<redacted>" }"#,
                "Debug of a credential: {debug}"
            );
            match credential.source() {
                CredentialSource::Bearer => assert!(credential.is_bearer()),
                CredentialSource::Cookie => {
                    assert!(!credential.is_bearer());
                    assert!(!credential.is_access_token(), "a cookie as an access token");
                }
                _ => panic!("an unknown credential source"),
            }
        }
    }
}

/// What the documentation promises, written independently of the extractor:
/// the first `Authorization` value with the `Bearer ` scheme (any case) decides
/// if there is one (its trimmed rest, which must be non-empty UTF-8); otherwise
/// the first non-empty `__Host-sg_session` cookie (RFC 6265 pairs separated by
/// `;`, optional whitespace, optionally double-quoted), which must be UTF-8.
fn expected(headers: &HeaderMap) -> String {
    let first_bearer = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .map(HeaderValue::as_bytes)
        .find(|v| v.len() >= 7 && v[..7].eq_ignore_ascii_case(b"bearer "));
    if let Some(value) = first_bearer {
        return match std::str::from_utf8(&value[7..]).map(str::trim) {
            Ok(token) if !token.is_empty() => format!("Bearer {token}"),
            _ => "err invalid_token".to_owned(),
        };
    }
    for value in headers.get_all(header::COOKIE) {
        for pair in value.as_bytes().split(|&b| b == b';') {
            let Some(eq) = pair.iter().position(|&b| b == b'=') else {
                continue;
            };
            if pair[..eq].trim_ascii() != SESSION_COOKIE.as_bytes() {
                continue;
            }
            let mut v = pair[eq + 1..].trim_ascii();
            if v.len() >= 2 && v[0] == b'"' && v[v.len() - 1] == b'"' {
                v = &v[1..v.len() - 1];
            }
            if v.is_empty() {
                continue;
            }
            return match std::str::from_utf8(v) {
                Ok(token) => format!("Cookie {token}"),
                Err(_) => "err invalid_token".to_owned(),
            };
        }
    }
    "none".to_owned()
}

/// Comparable outline of a result (`Credential` has no `PartialEq`).
fn summary(r: &Result<Option<Credential>, sessionguard_server::ApiError>) -> String {
    match r {
        Ok(Some(c)) => format!("{:?} {}", c.source(), c.token()),
        Ok(None) => "none".to_owned(),
        Err(e) => format!("err {}", e.code()),
    }
}
