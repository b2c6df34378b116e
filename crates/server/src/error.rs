//! [`ApiError`]: every failure the HTTP API can answer with, as an RFC 9457
//! problem document with a stable `code`.
//!
//! This is the single place where request failures are logged: server-side
//! failures (5xx) at `error` with their whole source chain, client errors at
//! `debug` with their code only. Bodies never carry internals, tokens or passwords.
//!
//! The one documented exception to problem documents is the token endpoint
//! (`POST /v1/token`) and the request errors of RFC 7009 revocation: OAuth client
//! libraries parse the RFC 6749 §5.2 form, so those errors are wrapped in
//! [`ApiError::OAuth`] and answered as `application/json`
//! `{"error","error_description","code"[,"ended_at"]}`, still with the stable
//! `code`, and still logged here.

use std::error::Error as StdError;
use std::fmt::Write as _;
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sessionguard_core::{PasswordError, Reason, Rejection, StoreError};
use sessionguard_http::problem::{self, Problem};
pub use sessionguard_http::problem::{ClientView, PROBLEM_JSON};
use sessionguard_jwt::JwtError;

/// Everything the API can fail with. Each variant maps to one status and one
/// stable snake_case `code` (see [`ApiError::code`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The session credential is missing, malformed, unknown or ended (401, the
    /// code is the [`sessionguard_core::Reason`] code).
    #[error("session rejected: {}", .rejection.reason)]
    Session {
        /// Why, and since when.
        rejection: Rejection,
        /// Whether the credential came as a bearer token (adds `error="invalid_token"`
        /// to the challenge, RFC 6750).
        bearer: bool,
    },
    /// A bearer value shaped like a JWT that is not a valid access token of ours:
    /// bad signature, unknown key, wrong algorithm, type, issuer or audience,
    /// expired, not yet valid, malformed (401 `invalid_token`). The cause is
    /// logged (it names the rule, never the token) and never shown.
    #[error("access token rejected: {0}")]
    InvalidAccessToken(#[source] JwtError),
    /// Wrong username or password; the same for both (401).
    #[error("invalid credentials")]
    InvalidCredentials,
    /// The admin API was called without the right admin token, or is disabled (401).
    #[error("admin authentication failed")]
    AdminUnauthorized {
        /// Whether a bearer token was presented.
        bearer: bool,
    },
    /// Introspection was called without the admin token or an introspection
    /// token (401).
    #[error("introspection authentication failed")]
    IntrospectionUnauthorized {
        /// Whether a bearer token was presented.
        bearer: bool,
    },
    /// A `grant_type` the token endpoint does not support (400).
    #[error("unsupported grant type")]
    UnsupportedGrantType,
    /// A refresh token presented with another `client_id` than it was issued to
    /// (400; `invalid_grant` at the token endpoint).
    #[error("refresh token issued to another client")]
    ClientMismatch,
    /// An API token name outside the rules (422).
    #[error("invalid API token name")]
    InvalidName,
    /// An API token lifetime that is not positive or exceeds
    /// `policy.api_token_max_ttl` (422).
    #[error("invalid API token expiry")]
    InvalidExpiry,
    /// A failure of an OAuth endpoint, answered in the RFC 6749 §5.2 form instead
    /// of a problem document (see the module docs). Never wraps a 5xx.
    #[error(transparent)]
    OAuth(Box<ApiError>),
    /// A browser request from another origin (403).
    #[error("cross-origin request refused")]
    CrossOrigin,
    /// A cookie-authenticated state-changing request without the session's
    /// anti-CSRF token (403).
    #[error("missing or wrong anti-CSRF token")]
    CsrfTokenInvalid,
    /// No such route or record (404).
    #[error("not found")]
    NotFound,
    /// The route exists but not with this method (405).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The username is already taken (409).
    #[error("username taken")]
    UsernameTaken,
    /// A concurrent change won a race; the request may be retried (409).
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// The user already holds as many sessions as the profile allows and it
    /// refuses new ones (409); signing out another session makes room.
    #[error("session limit reached")]
    SessionLimitReached,
    /// The action needs a recently authenticated session (403): step up with
    /// `POST /v1/session/elevate`, then retry.
    #[error("step-up required")]
    StepUpRequired,
    /// A profile name that is not defined (422).
    #[error("invalid profile")]
    InvalidProfile,
    /// Roles outside the rules (422).
    #[error("invalid roles")]
    InvalidRoles,
    /// A query parameter outside its rules (400).
    #[error("invalid query parameter {0}")]
    InvalidQuery(&'static str),
    /// A new password that does not meet the rules (422).
    #[error("weak password: {0}")]
    WeakPassword(PasswordError),
    /// A username outside the rules (400).
    #[error("invalid username")]
    InvalidUsername,
    /// A user id outside the rules (400).
    #[error("invalid user id")]
    InvalidUserId,
    /// A session id that does not parse (400).
    #[error("invalid session id")]
    InvalidSessionId,
    /// A revocation reason the endpoint does not accept (400).
    #[error("invalid reason")]
    InvalidReason,
    /// A body or parameter that cannot be understood (400 or 422).
    #[error("malformed request: {detail}")]
    Malformed {
        /// 400 for syntax, 422 for a well-formed body of the wrong shape.
        status: StatusCode,
        /// What is wrong, without echoing submitted values.
        detail: String,
    },
    /// The body's media type is not accepted here (415).
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// The body exceeds the limit (413).
    #[error("payload too large")]
    PayloadTooLarge,
    /// The header block, or one credential header, exceeds its limit (431).
    #[error("headers too large")]
    HeadersTooLarge,
    /// Too many wrong passwords from this client for this account (or from this
    /// client across accounts): no password is checked before `retry_after`
    /// has passed (429, `Retry-After`).
    #[error("too many failed password attempts")]
    TooManyAttempts {
        /// How long to wait.
        retry_after: Duration,
    },
    /// The request (its body included) took longer than `request_timeout`
    /// (408); the connection is closed.
    #[error("request timed out")]
    RequestTimeout,
    /// The server is at capacity — its connection limit, or its queue of
    /// password checks — and refused the work rather than queue it without
    /// bound (503, `Retry-After`).
    #[error("server busy")]
    Busy {
        /// When to try again.
        retry_after: Duration,
    },
    /// The store failed (503). Logged with its chain; never shown.
    #[error("store unavailable")]
    Store(#[source] StoreError),
    /// A bug (500). Logged; never shown.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Session { .. }
            | ApiError::InvalidAccessToken(_)
            | ApiError::InvalidCredentials
            | ApiError::AdminUnauthorized { .. }
            | ApiError::IntrospectionUnauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::UnsupportedGrantType | ApiError::ClientMismatch => StatusCode::BAD_REQUEST,
            ApiError::InvalidName | ApiError::InvalidExpiry => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::OAuth(inner) => inner.oauth_status(),
            ApiError::CrossOrigin | ApiError::CsrfTokenInvalid => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::UsernameTaken | ApiError::Conflict(_) | ApiError::SessionLimitReached => {
                StatusCode::CONFLICT
            }
            ApiError::StepUpRequired => StatusCode::FORBIDDEN,
            ApiError::InvalidProfile | ApiError::InvalidRoles => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::InvalidQuery(_) => StatusCode::BAD_REQUEST,
            ApiError::WeakPassword(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::InvalidUsername
            | ApiError::InvalidUserId
            | ApiError::InvalidSessionId
            | ApiError::InvalidReason => StatusCode::BAD_REQUEST,
            ApiError::Malformed { status, .. } => *status,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::TooManyAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::Store(_) | ApiError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable snake_case code clients branch on.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Session { rejection, .. } => rejection.reason.code(),
            ApiError::InvalidAccessToken(_) => Reason::InvalidToken.code(),
            ApiError::InvalidCredentials => "invalid_credentials",
            ApiError::AdminUnauthorized { .. } => "admin_unauthorized",
            ApiError::IntrospectionUnauthorized { .. } => "introspection_unauthorized",
            ApiError::UnsupportedGrantType => "unsupported_grant_type",
            ApiError::ClientMismatch => "client_mismatch",
            ApiError::InvalidName => "invalid_name",
            ApiError::InvalidExpiry => "invalid_expiry",
            ApiError::OAuth(inner) => inner.code(),
            ApiError::CrossOrigin => "cross_origin_request",
            ApiError::CsrfTokenInvalid => "csrf_token_invalid",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::UsernameTaken => "username_taken",
            ApiError::Conflict(_) => "conflict",
            ApiError::SessionLimitReached => "session_limit_reached",
            ApiError::StepUpRequired => "step_up_required",
            ApiError::InvalidProfile => "invalid_profile",
            ApiError::InvalidRoles => "invalid_roles",
            ApiError::InvalidQuery(_) => "invalid_query",
            ApiError::WeakPassword(_) => "weak_password",
            ApiError::InvalidUsername => "invalid_username",
            ApiError::InvalidUserId => "invalid_user_id",
            ApiError::InvalidSessionId => "invalid_session_id",
            ApiError::InvalidReason => "invalid_reason",
            ApiError::Malformed { .. } => "malformed_request",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::HeadersTooLarge => "headers_too_large",
            ApiError::TooManyAttempts { .. } => "too_many_attempts",
            ApiError::RequestTimeout => "request_timeout",
            ApiError::Busy { .. } => "server_busy",
            ApiError::Store(_) => "store_unavailable",
            ApiError::Internal(_) => "internal_error",
        }
    }

    /// A session-credential failure of an engine call, remembering how the
    /// credential was presented.
    pub fn session(err: sessionguard_core::Error, bearer: bool) -> Self {
        match err {
            sessionguard_core::Error::Rejected(rejection) => {
                ApiError::Session { rejection, bearer }
            }
            other => other.into(),
        }
    }

    /// A malformed-request error (400) with a detail that echoes no input.
    pub fn malformed(detail: impl Into<String>) -> Self {
        ApiError::Malformed {
            status: StatusCode::BAD_REQUEST,
            detail: detail.into(),
        }
    }

    /// This error as an OAuth endpoint answers it (RFC 6749 §5.2). Server-side
    /// failures (5xx) stay problem documents: they are not the client's to fix.
    pub fn oauth(self) -> Self {
        match self {
            already @ ApiError::OAuth(_) => already,
            e if e.status().is_server_error() => e,
            e => ApiError::OAuth(Box::new(e)),
        }
    }

    /// How long the client should wait before retrying, for the answers that
    /// say (`Retry-After`, in whole seconds rounded up, at least 1).
    fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::TooManyAttempts { retry_after } | ApiError::Busy { retry_after } => {
                Some(*retry_after)
            }
            ApiError::OAuth(inner) => inner.retry_after(),
            _ => None,
        }
    }

    /// The refusal of a password check the throttle holds back until
    /// `retry_at`, as seen at `now` (the engine's clock).
    pub fn throttled(
        retry_at: sessionguard_core::Timestamp,
        now: sessionguard_core::Timestamp,
    ) -> Self {
        ApiError::TooManyAttempts {
            retry_after: retry_at.duration_since(now),
        }
    }

    /// The RFC 6749 §5.2 `error` for this failure of an OAuth endpoint.
    fn oauth_error(&self) -> &'static str {
        match self {
            ApiError::Session { .. }
            | ApiError::InvalidCredentials
            | ApiError::ClientMismatch
            | ApiError::TooManyAttempts { .. }
            | ApiError::Conflict(_)
            | ApiError::SessionLimitReached => "invalid_grant",
            ApiError::UnsupportedGrantType => "unsupported_grant_type",
            _ => "invalid_request",
        }
    }

    /// The status of this failure of an OAuth endpoint: 400 for every RFC 6749
    /// §5.2 error, except refusals that are not about the parameters (a
    /// cross-origin browser, an oversized body), which keep their own.
    fn oauth_status(&self) -> StatusCode {
        match self {
            ApiError::CrossOrigin
            | ApiError::PayloadTooLarge
            | ApiError::TooManyAttempts { .. } => self.status(),
            _ => StatusCode::BAD_REQUEST,
        }
    }
    fn title(&self) -> &'static str {
        match self {
            ApiError::Session { .. } | ApiError::InvalidAccessToken(_) => problem::SESSION_TITLE,
            ApiError::InvalidCredentials => "Invalid credentials",
            ApiError::AdminUnauthorized { .. } => "Admin authentication required",
            ApiError::IntrospectionUnauthorized { .. } => "Introspection authentication required",
            ApiError::UnsupportedGrantType => "Unsupported grant type",
            ApiError::ClientMismatch => "Issued to another client",
            ApiError::InvalidName => "Invalid name",
            ApiError::InvalidExpiry => "Invalid expiry",
            ApiError::OAuth(inner) => inner.title(),
            ApiError::CrossOrigin => "Cross-origin request refused",
            ApiError::CsrfTokenInvalid => "Anti-CSRF token missing or wrong",
            ApiError::NotFound => "Not found",
            ApiError::MethodNotAllowed => "Method not allowed",
            ApiError::UsernameTaken => "Username taken",
            ApiError::Conflict(_) => "Conflict",
            ApiError::SessionLimitReached => "Session limit reached",
            ApiError::StepUpRequired => "Re-authentication required",
            ApiError::InvalidProfile => "Invalid profile",
            ApiError::InvalidRoles => "Invalid roles",
            ApiError::InvalidQuery(_) => "Invalid query parameter",
            ApiError::WeakPassword(_) => "Weak password",
            ApiError::InvalidUsername => "Invalid username",
            ApiError::InvalidUserId => "Invalid user id",
            ApiError::InvalidSessionId => "Invalid session id",
            ApiError::InvalidReason => "Invalid reason",
            ApiError::Malformed { .. } => "Malformed request",
            ApiError::UnsupportedMediaType => "Unsupported media type",
            ApiError::PayloadTooLarge => "Payload too large",
            ApiError::HeadersTooLarge => "Request headers too large",
            ApiError::TooManyAttempts { .. } => "Too many attempts",
            ApiError::RequestTimeout => "Request timeout",
            ApiError::Busy { .. } => "Server busy",
            ApiError::Store(_) => "Service unavailable",
            ApiError::Internal(_) => "Internal server error",
        }
    }

    pub(crate) fn detail(&self) -> String {
        match self {
            ApiError::Session { rejection, .. } => rejection.reason.describe().to_owned(),
            ApiError::InvalidAccessToken(_) => Reason::InvalidToken.describe().to_owned(),
            ApiError::InvalidCredentials => "The username or password is wrong.".to_owned(),
            ApiError::AdminUnauthorized { .. } => {
                "This endpoint needs the admin bearer token (the admin API is disabled when \
                 none is configured)."
                    .to_owned()
            }
            ApiError::IntrospectionUnauthorized { .. } => {
                "This endpoint needs a configured introspection token or the admin token as \
                 a bearer token."
                    .to_owned()
            }
            ApiError::UnsupportedGrantType => {
                "The grant_type must be password or refresh_token.".to_owned()
            }
            ApiError::ClientMismatch => {
                "The refresh token was issued to another client: send the client_id it was \
                 issued with (none for a first-party login)."
                    .to_owned()
            }
            ApiError::InvalidName => {
                "A name is 1 to 100 characters without control characters.".to_owned()
            }
            ApiError::InvalidExpiry => {
                "expires_in must be a positive number of seconds, at most the configured \
                 maximum lifetime of API tokens."
                    .to_owned()
            }
            ApiError::OAuth(inner) => inner.detail(),
            ApiError::CrossOrigin => {
                "State-changing browser requests must come from the configured public origin."
                    .to_owned()
            }
            ApiError::CsrfTokenInvalid => {
                "Cookie-authenticated state-changing requests must send the session's \
                 csrf_token in the X-CSRF-Token header."
                    .to_owned()
            }
            ApiError::NotFound => "No such resource.".to_owned(),
            ApiError::MethodNotAllowed => "This resource does not support the method.".to_owned(),
            ApiError::UsernameTaken => "A user with this username already exists.".to_owned(),
            ApiError::Conflict(what) => format!("{what}; the request may be retried."),
            ApiError::SessionLimitReached => {
                "The account already has as many active sessions as its policy allows. Sign \
                 out of another session first."
                    .to_owned()
            }
            ApiError::StepUpRequired => {
                "This action needs a recent sign-in. Confirm the password with POST \
                 /v1/session/elevate, then retry."
                    .to_owned()
            }
            ApiError::InvalidProfile => "The profile is not defined.".to_owned(),
            ApiError::InvalidRoles => format!(
                "{}.",
                capitalise(&sessionguard_core::InvalidRoles.to_string())
            ),
            ApiError::InvalidQuery(name) => format!("The query parameter {name} is not valid."),
            ApiError::WeakPassword(e) => format!("{}.", capitalise(&e.to_string())),
            ApiError::InvalidUsername => {
                "A username is 1 to 64 characters, without control characters and without \
                 whitespace at either end."
                    .to_owned()
            }
            ApiError::InvalidUserId => {
                "A user id is 1 to 128 bytes of UTF-8 without control characters.".to_owned()
            }
            ApiError::InvalidSessionId => "A session id is 22 characters of base64url.".to_owned(),
            ApiError::InvalidReason => {
                "The reason must be one of password_changed, revoked_by_admin, \
                 signed_out_everywhere."
                    .to_owned()
            }
            ApiError::Malformed { detail, .. } => detail.clone(),
            ApiError::UnsupportedMediaType => {
                "The body must be application/json (login, logout and the OAuth endpoints \
                 also accept application/x-www-form-urlencoded)."
                    .to_owned()
            }
            ApiError::PayloadTooLarge => "The request body exceeds 16 KiB.".to_owned(),
            ApiError::HeadersTooLarge => {
                "The request headers exceed 16 KiB in total, or a Cookie or Authorization \
                 header exceeds 8 KiB."
                    .to_owned()
            }
            ApiError::TooManyAttempts { .. } => {
                "Too many wrong passwords were tried for this account from this client. No \
                 password is checked until the time in Retry-After has passed; the wait grows \
                 with every further failure."
                    .to_owned()
            }
            ApiError::RequestTimeout => {
                "The request was not received in time; the connection is closed.".to_owned()
            }
            ApiError::Busy { .. } => {
                "The server is at capacity and did not start the request. Retry after the time \
                 in Retry-After."
                    .to_owned()
            }
            ApiError::Store(_) => {
                "The session store is unavailable; the request was not completed.".to_owned()
            }
            ApiError::Internal(_) => "An unexpected error occurred.".to_owned(),
        }
    }

    /// The `WWW-Authenticate` challenge for 401 responses (RFC 7235, RFC 6750).
    fn challenge(&self) -> Option<HeaderValue> {
        let bearer = match self {
            ApiError::Session { bearer, .. }
            | ApiError::AdminUnauthorized { bearer }
            | ApiError::IntrospectionUnauthorized { bearer } => *bearer,
            ApiError::InvalidAccessToken(_) => true,
            ApiError::InvalidCredentials => false,
            _ => return None,
        };
        Some(problem::challenge(bearer))
    }

    /// Logs this failure: server-side ones at `error` with their chain, client
    /// errors at `debug` with their code. Called once per answered failure, by
    /// [`IntoResponse`] here or by the page that shows it in words.
    pub(crate) fn log(&self) {
        let code = self.code();
        match self {
            ApiError::Store(e) => {
                tracing::error!(code, error = %chain(e), "store failure");
            }
            ApiError::Internal(what) => tracing::error!(code, error = %what, "internal error"),
            // JwtError messages name the failed rule, never the token or a claim.
            ApiError::InvalidAccessToken(e) => {
                tracing::debug!(code, status = 401, rule = %e, "access token refused");
            }
            ApiError::OAuth(inner) => inner.log(),
            _ => tracing::debug!(code, status = self.status().as_u16(), "request refused"),
        }
    }

    /// The session rejection this failure reports, if any (when the session
    /// ended, and for `displaced`, by whom).
    fn rejection(&self) -> Option<&Rejection> {
        match self {
            ApiError::Session { rejection, .. } => Some(rejection),
            ApiError::OAuth(inner) => inner.rejection(),
            _ => None,
        }
    }
}

impl From<sessionguard_core::Error> for ApiError {
    /// Maps an engine error met outside of credential checking. A rejection here is
    /// reported as from a cookie; use [`ApiError::session`] when the source is known.
    fn from(err: sessionguard_core::Error) -> Self {
        match err {
            sessionguard_core::Error::Rejected(rejection) => ApiError::Session {
                rejection,
                bearer: false,
            },
            sessionguard_core::Error::NotFound(_) => ApiError::NotFound,
            sessionguard_core::Error::LimitReached => ApiError::SessionLimitReached,
            sessionguard_core::Error::StepUpRequired => ApiError::StepUpRequired,
            sessionguard_core::Error::ClientMismatch => ApiError::ClientMismatch,
            sessionguard_core::Error::Store(e) => e.into(),
            // The time is the engine's: callers use `ApiError::throttled` with it.
            // Without it, the shortest honest answer.
            sessionguard_core::Error::Throttled { .. } => ApiError::TooManyAttempts {
                retry_after: Duration::from_secs(1),
            },
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound(_) => ApiError::NotFound,
            StoreError::Conflict("username") => ApiError::UsernameTaken,
            StoreError::EpochMoved => {
                ApiError::Conflict("the user's sessions were revoked concurrently")
            }
            StoreError::LimitReached => ApiError::SessionLimitReached,
            other => ApiError::Store(other),
        }
    }
}

/// The RFC 6749 §5.2 body, plus the stable `code` (and `ended_at` when known).
#[derive(Serialize)]
struct OAuthProblem {
    error: &'static str,
    error_description: String,
    code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ended_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    displaced_by: Option<ClientView>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log();
        let status = self.status();
        let code = self.code();
        if let ApiError::OAuth(inner) = &self {
            let rejection = self.rejection();
            let body = OAuthProblem {
                error: inner.oauth_error(),
                error_description: inner.detail(),
                code,
                ended_at: rejection.and_then(|r| r.at).map(|t| t.to_rfc3339()),
                displaced_by: rejection
                    .and_then(|r| r.displaced_by.as_deref())
                    .map(ClientView::from),
            };
            let body = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
            let mut res = (status, body).into_response();
            let headers = res.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            // RFC 6749 §5.1: token responses must not be cached, by old caches either.
            headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            if let Some(wait) = self.retry_after() {
                headers.insert(header::RETRY_AFTER, retry_after_value(wait));
            }
            return res;
        }
        let mut problem = Problem::new(status, code, self.title(), self.detail());
        if let Some(rejection) = self.rejection() {
            problem = problem.with_rejection(rejection);
        }
        let mut res: Response = problem.response();
        let headers = res.headers_mut();
        match self.challenge() {
            Some(challenge) => {
                headers.insert(header::WWW_AUTHENTICATE, challenge);
            }
            None => {
                headers.remove(header::WWW_AUTHENTICATE);
            }
        }
        if let Some(wait) = self.retry_after() {
            headers.insert(header::RETRY_AFTER, retry_after_value(wait));
        }
        if matches!(self, ApiError::RequestTimeout) {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        res
    }
}

/// `Retry-After` in whole seconds (RFC 9110 §10.2.3), rounded up, at least 1.
fn retry_after_value(wait: Duration) -> HeaderValue {
    let secs = wait.as_millis().div_ceil(1000).max(1);
    HeaderValue::from(u64::try_from(secs).unwrap_or(u64::MAX))
}

/// An error and all its sources, `: `-separated, for logs.
pub fn chain(err: &(dyn StdError + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        let _ = write!(out, ": {e}");
        next = e.source();
    }
    out
}

/// Logs a failure of background work (no request to answer), with its chain.
pub fn log_background(task: &'static str, err: &(dyn StdError + 'static)) {
    tracing::warn!(task, error = %chain(err), "background task failed");
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_failures_never_leak_their_cause() {
        let inner = std::io::Error::other("disk /var/secret full");
        let err = ApiError::from(StoreError::backend(inner));
        assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(err.code(), "store_unavailable");
        assert!(!err.detail().contains("disk"));
    }

    #[test]
    fn chain_lists_every_source() {
        let err = StoreError::backend(std::io::Error::other("disk full"));
        assert_eq!(chain(&err), "store backend failed: disk full");
    }

    #[test]
    fn bearer_rejections_carry_the_rfc6750_error() {
        let rejection = sessionguard_core::Error::Rejected(Rejection::INVALID);
        let bearer = ApiError::session(rejection, true);
        assert_eq!(
            bearer.challenge().unwrap(),
            r#"Bearer realm="sessionguard", error="invalid_token""#
        );
        assert_eq!(
            ApiError::InvalidCredentials.challenge().unwrap(),
            r#"Bearer realm="sessionguard""#
        );
        assert!(ApiError::NotFound.challenge().is_none());
        assert_eq!(bearer.code(), Reason::InvalidToken.code());
        let jwt = ApiError::InvalidAccessToken(JwtError::BadSignature);
        assert_eq!(jwt.code(), "invalid_token");
        assert_eq!(jwt.challenge(), bearer.challenge());
        assert!(
            !jwt.detail().contains("signature"),
            "the rule is logged, not shown"
        );
    }

    #[test]
    fn oauth_errors_keep_the_code_and_map_the_error() {
        let grant = ApiError::InvalidCredentials.oauth();
        assert_eq!(grant.status(), StatusCode::BAD_REQUEST);
        assert_eq!(grant.code(), "invalid_credentials");
        let ApiError::OAuth(inner) = &grant else {
            panic!("wrapped: {grant:?}")
        };
        assert_eq!(inner.oauth_error(), "invalid_grant");
        assert!(grant.challenge().is_none());
        let store = ApiError::from(StoreError::backend(std::io::Error::other("x"))).oauth();
        assert!(
            matches!(store, ApiError::Store(_)),
            "5xx stay problem documents"
        );
        assert_eq!(
            ApiError::CrossOrigin.oauth().status(),
            StatusCode::FORBIDDEN
        );
    }
}
