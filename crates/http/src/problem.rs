//! The answer to a refused request: an RFC 9457 problem document with a stable
//! `code` (invariant 9), and for 401s an RFC 6750 `WWW-Authenticate` challenge.
//!
//! The body is `{"type","title","status","detail","code"}`, where `type` is
//! `urn:sessionguard:problem:<code>`; a refused session adds `ended_at` (when it
//! ended) and, for `displaced`, `displaced_by` (the client whose login displaced
//! it). Bodies never carry a token, a password or an internal error.
//!
//! ```
//! use sessionguard_core::{Reason, Rejection};
//! use sessionguard_http::problem::{self, Problem};
//!
//! let res: http::Response<Vec<u8>> = Problem::session(&Rejection::INVALID).response();
//! assert_eq!(res.status(), 401);
//! assert_eq!(res.headers()["content-type"], problem::PROBLEM_JSON);
//! let body: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
//! assert_eq!(body["code"], Reason::InvalidToken.code());
//! ```

use std::borrow::Cow;

use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use sessionguard_core::{ClientInfo, Rejection};

/// The media type of every problem document.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The realm named in `WWW-Authenticate` challenges.
pub const REALM: &str = "sessionguard";

/// The title of every refused session.
pub const SESSION_TITLE: &str = "Session not valid";

/// The `WWW-Authenticate` challenge of a 401. With `bearer` (the request
/// presented a bearer token that was refused) it carries RFC 6750's
/// `error="invalid_token"`.
pub fn challenge(bearer: bool) -> HeaderValue {
    if bearer {
        HeaderValue::from_static(r#"Bearer realm="sessionguard", error="invalid_token""#)
    } else {
        HeaderValue::from_static(r#"Bearer realm="sessionguard""#)
    }
}

/// A client as shown to the holder of a displaced session: where the login that
/// displaced it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientView {
    user_agent: Option<String>,
    ip: Option<String>,
}

impl From<&ClientInfo> for ClientView {
    fn from(c: &ClientInfo) -> Self {
        ClientView {
            user_agent: c.user_agent().map(str::to_owned),
            ip: c.ip().map(|ip| ip.to_string()),
        }
    }
}

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize)]
pub struct Problem<'a> {
    r#type: String,
    title: &'a str,
    status: u16,
    detail: Cow<'a, str>,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ended_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    displaced_by: Option<ClientView>,
}

impl<'a> Problem<'a> {
    /// A problem with this status, stable code, title and detail. The detail must
    /// echo no submitted value.
    pub fn new(
        status: StatusCode,
        code: &'a str,
        title: &'a str,
        detail: impl Into<Cow<'a, str>>,
    ) -> Self {
        Problem {
            r#type: format!("urn:sessionguard:problem:{code}"),
            title,
            status: status.as_u16(),
            detail: detail.into(),
            code,
            ended_at: None,
            displaced_by: None,
        }
    }

    /// The 401 of a refused session: its reason as the code, the reason's
    /// description, when it ended and, if displaced, by whom.
    pub fn session(rejection: &Rejection) -> Problem<'static> {
        let reason = rejection.reason;
        Problem::new(
            StatusCode::UNAUTHORIZED,
            reason.code(),
            SESSION_TITLE,
            reason.describe(),
        )
        .with_rejection(rejection)
    }

    /// Adds what a rejection knows: when the session ended, and who displaced it.
    #[must_use]
    pub fn with_rejection(mut self, rejection: &Rejection) -> Self {
        self.ended_at = rejection.at.map(|t| t.to_rfc3339());
        self.displaced_by = rejection.displaced_by.as_deref().map(ClientView::from);
        self
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The stable code.
    pub fn code(&self) -> &str {
        self.code
    }

    /// The JSON body.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec())
    }

    /// The response: the status, `Content-Type: application/problem+json` and the
    /// body; a 401 also gets the [`challenge`] without `error` (add
    /// `challenge(true)` over it for a refused bearer token).
    pub fn response<B: From<Vec<u8>>>(&self) -> http::Response<B> {
        let mut res = http::Response::new(B::from(self.to_json()));
        *res.status_mut() = self.status();
        let headers = res.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if self.status == StatusCode::UNAUTHORIZED.as_u16() {
            headers.insert(header::WWW_AUTHENTICATE, challenge(false));
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sessionguard_core::{Reason, Revocation, Timestamp};

    #[test]
    fn a_refused_session_names_its_reason_and_end() {
        let at = Timestamp::from_millis(1_800_000_000_000);
        let rejection = Rejection::ended(Revocation {
            reason: Reason::LoggedOut,
            at,
        });
        let p = Problem::session(&rejection);
        let v: serde_json::Value = serde_json::from_slice(&p.to_json()).unwrap();
        assert_eq!(v["type"], "urn:sessionguard:problem:logged_out");
        assert_eq!(v["code"], "logged_out");
        assert_eq!(v["status"], 401);
        assert_eq!(v["title"], SESSION_TITLE);
        assert_eq!(v["ended_at"], at.to_rfc3339());
        assert!(v.get("displaced_by").is_none());
    }

    #[test]
    fn an_invalid_token_has_no_end() {
        let v: serde_json::Value =
            serde_json::from_slice(&Problem::session(&Rejection::INVALID).to_json()).unwrap();
        assert_eq!(v["code"], "invalid_token");
        assert!(v.get("ended_at").is_none());
    }

    #[test]
    fn challenges() {
        assert_eq!(challenge(false), r#"Bearer realm="sessionguard""#);
        assert_eq!(
            challenge(true),
            r#"Bearer realm="sessionguard", error="invalid_token""#
        );
        let res: http::Response<Vec<u8>> =
            Problem::new(StatusCode::FORBIDDEN, "x", "X", "x.").response();
        assert!(res.headers().get(header::WWW_AUTHENTICATE).is_none());
    }
}
