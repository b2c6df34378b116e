//! The session credential of a request, as presented and not yet checked.
//!
//! A request presents at most one credential: `Authorization: Bearer <token>`
//! if it has one (bearer wins), else the session cookie ([`crate::cookie`]).
//! Other `Authorization` schemes are ignored. A credential whose bytes are not
//! UTF-8 cannot be a token of ours and is [`Unreadable`] (answered as
//! `invalid_token`).
//!
//! The bearer value's form says what it claims to be ([`TokenForm`]): a session
//! token (`sgs_…`), a refresh token (`sgr_…`), a personal API token (`sga_…`) or
//! an access token (a JWT). Only the engine and the JWT verifier decide whether
//! it is genuine.

use std::fmt;

use http::{HeaderMap, header};
use sessionguard_core::TokenKind;
use zeroize::Zeroizing;

use crate::cookie;

/// How a session credential was presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CredentialSource {
    /// The `__Host-sg_session` cookie: an ambient credential, CSRF-checked.
    Cookie,
    /// `Authorization: Bearer`: sent deliberately, so not CSRF-checked.
    Bearer,
}

/// What a presented token claims to be, by its form alone: nothing is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenForm {
    /// `sgs_…`: a session token.
    Session,
    /// `sgr_…`: a refresh token.
    Refresh,
    /// `sga_…`: a personal API token.
    Api,
    /// The shape of a JWT ([`sessionguard_jwt::looks_like_jwt`]): an access token.
    Access,
    /// Anything else.
    Unknown,
}

impl TokenForm {
    /// The form of `token`.
    pub fn of(token: &str) -> Self {
        let has = |kind: TokenKind| token.starts_with(kind.prefix());
        if has(TokenKind::Session) {
            TokenForm::Session
        } else if has(TokenKind::Refresh) {
            TokenForm::Refresh
        } else if has(TokenKind::ApiToken) {
            TokenForm::Api
        } else if sessionguard_jwt::looks_like_jwt(token) {
            TokenForm::Access
        } else {
            TokenForm::Unknown
        }
    }
}

/// A credential header that is present but cannot be a token: not UTF-8, or an
/// empty bearer token. Answered as `invalid_token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unreadable {
    /// Where it was presented.
    pub source: CredentialSource,
}

/// A session credential as presented by the client, not yet checked. The text is
/// zeroized on drop and never printed.
pub struct Credential {
    token: Zeroizing<String>,
    source: CredentialSource,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("source", &self.source)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// The session credential as it sits in the request's headers, borrowed (no
/// copy of the secret is made): what [`Credential::from_headers`] finds.
#[derive(Clone, Copy)]
pub struct Presented<'a> {
    token: &'a str,
    source: CredentialSource,
}

impl fmt::Debug for Presented<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Presented")
            .field("source", &self.source)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl<'a> Presented<'a> {
    /// Finds the session credential: a bearer token if there is one (it wins),
    /// else the session cookie; `None` if there is neither.
    pub fn find(headers: &'a HeaderMap) -> Result<Option<Presented<'a>>, Unreadable> {
        if let Some(token) = bearer(headers) {
            let token = token.ok_or(Unreadable {
                source: CredentialSource::Bearer,
            })?;
            return Ok(Some(Presented {
                token,
                source: CredentialSource::Bearer,
            }));
        }
        match cookie::find(headers) {
            None => Ok(None),
            Some(Ok(token)) => Ok(Some(Presented {
                token,
                source: CredentialSource::Cookie,
            })),
            Some(Err(cookie::NotUtf8)) => Err(Unreadable {
                source: CredentialSource::Cookie,
            }),
        }
    }

    /// The token text.
    pub fn token(&self) -> &'a str {
        self.token
    }

    /// How it was presented.
    pub fn source(&self) -> CredentialSource {
        self.source
    }

    /// Whether it came as a bearer token.
    pub fn is_bearer(&self) -> bool {
        self.source == CredentialSource::Bearer
    }

    /// What the token claims to be, by its form.
    pub fn form(&self) -> TokenForm {
        TokenForm::of(self.token)
    }
}

impl Credential {
    /// Finds the session credential: a bearer token if there is one (it wins),
    /// else the session cookie; `None` if there is neither. The text is copied
    /// into memory zeroized on drop ([`Presented::find`] borrows instead).
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<Credential>, Unreadable> {
        Ok(Presented::find(headers)?.map(|p| Credential::new(p.token, p.source)))
    }

    /// The session cookie alone, whatever `Authorization` says: the credential
    /// of the web pages, which browsers reach with nothing else.
    pub fn from_cookie(headers: &HeaderMap) -> Result<Option<Credential>, Unreadable> {
        match cookie::find(headers) {
            None => Ok(None),
            Some(Ok(token)) => Ok(Some(Credential::new(token, CredentialSource::Cookie))),
            Some(Err(cookie::NotUtf8)) => Err(Unreadable {
                source: CredentialSource::Cookie,
            }),
        }
    }

    /// A credential with this text, presented this way.
    pub fn new(token: &str, source: CredentialSource) -> Self {
        Credential {
            token: Zeroizing::new(token.to_owned()),
            source,
        }
    }

    /// The token text.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// How it was presented.
    pub fn source(&self) -> CredentialSource {
        self.source
    }

    /// Whether it came as a bearer token.
    pub fn is_bearer(&self) -> bool {
        self.source == CredentialSource::Bearer
    }

    /// What the token claims to be, by its form.
    pub fn form(&self) -> TokenForm {
        TokenForm::of(&self.token)
    }

    /// Whether it is a bearer value shaped like a JWT, that is a would-be access
    /// token (our opaque tokens never have that shape).
    pub fn is_access_token(&self) -> bool {
        self.is_bearer() && sessionguard_jwt::looks_like_jwt(&self.token)
    }
}

/// The bearer token of the first `Authorization: Bearer` header (scheme in any
/// case, surrounding whitespace trimmed): `None` if there is none, `Some(None)`
/// if it is empty or not UTF-8.
pub fn bearer(headers: &HeaderMap) -> Option<Option<&str>> {
    headers.get_all(header::AUTHORIZATION).iter().find_map(|v| {
        let bytes = v.as_bytes();
        let scheme_ok =
            bytes.len() >= 7 && bytes[..6].eq_ignore_ascii_case(b"bearer") && bytes[6] == b' ';
        scheme_ok.then(|| {
            std::str::from_utf8(&bytes[7..])
                .ok()
                .map(str::trim)
                .filter(|t| !t.is_empty())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    use crate::test_headers::with;

    #[test]
    fn bearer_wins_over_cookie() {
        let mut h = with(header::COOKIE, b"__Host-sg_session=from-cookie");
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer from-bearer"),
        );
        let c = Credential::from_headers(&h).unwrap().unwrap();
        assert_eq!(c.token(), "from-bearer");
        assert!(c.is_bearer());
    }

    #[test]
    fn the_cookie_is_used_without_a_bearer_token() {
        let h = with(header::COOKIE, b"a=b; __Host-sg_session=tok");
        let c = Credential::from_headers(&h).unwrap().unwrap();
        assert_eq!(c.token(), "tok");
        assert_eq!(c.source(), CredentialSource::Cookie);
    }

    #[test]
    fn non_utf8_credentials_are_unreadable() {
        let h = with(header::COOKIE, b"__Host-sg_session=\xff\xfe");
        assert_eq!(
            Credential::from_headers(&h).unwrap_err().source,
            CredentialSource::Cookie
        );
        let h = with(header::AUTHORIZATION, b"Bearer \xff");
        assert_eq!(
            Credential::from_headers(&h).unwrap_err().source,
            CredentialSource::Bearer
        );
        let h = with(header::AUTHORIZATION, b"Bearer   ");
        assert!(Credential::from_headers(&h).is_err());
    }

    #[test]
    fn other_authorization_schemes_and_empty_cookies_are_ignored() {
        assert!(
            Credential::from_headers(&with(header::AUTHORIZATION, b"Basic YTpi"))
                .unwrap()
                .is_none()
        );
        assert!(
            Credential::from_headers(&with(header::AUTHORIZATION, b"Bearerx y"))
                .unwrap()
                .is_none()
        );
        assert!(
            Credential::from_headers(&with(header::COOKIE, b"__Host-sg_session="))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        let h = with(header::AUTHORIZATION, b"bEaReR  tok ");
        assert_eq!(bearer(&h), Some(Some("tok")));
    }

    #[test]
    fn debug_redacts_the_token() {
        let h = with(header::AUTHORIZATION, b"bearer sgs_secret");
        let c = Credential::from_headers(&h).unwrap().unwrap();
        assert!(!format!("{c:?}").contains("secret"));
    }

    #[test]
    fn forms() {
        assert_eq!(TokenForm::of("sgs_x"), TokenForm::Session);
        assert_eq!(TokenForm::of("sgr_x"), TokenForm::Refresh);
        assert_eq!(TokenForm::of("sga_x"), TokenForm::Api);
        assert_eq!(TokenForm::of("a.b.c"), TokenForm::Access);
        assert_eq!(TokenForm::of("sgx_x"), TokenForm::Unknown);
        let cookie = Credential::new("a.b.c", CredentialSource::Cookie);
        assert!(
            !cookie.is_access_token(),
            "only a bearer value is an access token"
        );
        assert!(Credential::new("a.b.c", CredentialSource::Bearer).is_access_token());
    }
}
