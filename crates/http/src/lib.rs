//! # sessionguard-http
//!
//! The HTTP rules that every front door of sessionguard applies the same way:
//! the `sessionguard` server (`sessionguard-server`) and the middleware that
//! runs inside a Rust app (`sessionguard-axum`) both call these, so a session
//! cookie, a credential or a cross-site request is treated alike wherever it
//! arrives.
//!
//! - [`check`]: the session check of a request (credential, cross-site rule,
//!   engine, identity), as forward-auth and the middleware's in-process mode do
//!   it;
//! - [`cookie`]: the session cookie — its name, attributes, parsing, the
//!   `Set-Cookie` values that set and clear it — and the header limits;
//! - [`credential`]: finding the session credential of a request (bearer
//!   token or cookie) and telling the kinds of token apart by their form;
//! - [`csrf`]: the cross-site rule (Fetch Metadata, `Origin`) and the
//!   session's anti-CSRF token;
//! - [`forward`]: the headers of forward authentication (`GET /v1/auth`),
//!   written by the server and read by proxies and the middleware's remote mode;
//! - [`problem`]: the RFC 9457 problem document and the RFC 6750 challenge
//!   every refusal is answered with.
//!
//! Rules without HTTP live below this crate: what makes a session valid in
//! `sessionguard-core` ([`sessionguard_core::verdict`]), and what makes an
//! access token's session acceptable there too
//! ([`sessionguard_core::access_token_verdict`]). This crate has no server and
//! no framework: it speaks the [`http`] crate's types, and [`check`] awaits the
//! engine.
//!
//! ```
//! use http::{HeaderMap, HeaderValue, header};
//! use sessionguard_http::credential::{Credential, CredentialSource};
//!
//! let mut headers = HeaderMap::new();
//! headers.insert(header::COOKIE, HeaderValue::from_static("theme=dark; __Host-sg_session=sgs_x"));
//! let credential = Credential::from_headers(&headers).unwrap().unwrap();
//! assert_eq!(credential.source(), CredentialSource::Cookie);
//! assert_eq!(credential.token(), "sgs_x");
//! ```

// Library code states its invariants with `expect`; tests may unwrap.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod check;
pub mod cookie;
pub mod credential;
pub mod csrf;
pub mod forward;
pub mod problem;

pub use credential::{Credential, CredentialSource, Presented, TokenForm, Unreadable};

/// Header maps for the unit tests.
#[cfg(test)]
pub(crate) mod test_headers {
    use http::{HeaderMap, HeaderName, HeaderValue};

    /// One header, with any bytes as its value.
    pub(crate) fn with(name: HeaderName, value: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.append(name, HeaderValue::from_bytes(value).unwrap());
        h
    }

    /// Headers from name and value pairs.
    pub(crate) fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }
}
