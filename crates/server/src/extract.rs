//! Extractors: request bodies, session credentials, client metadata, and admin
//! and introspection authentication. Every rejection is an [`ApiError`], so no
//! input gets axum's plain-text defaults.
//!
//! A session is accepted as the session cookie, as a bearer session token
//! (`sgs_…`) or as a bearer access token (a JWT from `POST /v1/token`). An access
//! token is verified (signature with its key's pinned algorithm, issuer, audience,
//! expiry, at the engine's clock) **and** the session it names must still be
//! alive here, so this server refuses it at once after a logout; see
//! [`crate::access`] for what offline verifiers accept instead.

use std::net::SocketAddr;
use std::ops::Deref;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use serde::de::DeserializeOwned;
use sessionguard_core::{ClientInfo, Clock, Engine, Rejection, Store, Token, ValidSession};
pub use sessionguard_http::CredentialSource;
pub use sessionguard_http::cookie::{CREDENTIAL_HEADER_LIMIT, HEADER_BLOCK_LIMIT, SESSION_COOKIE};
pub(crate) use sessionguard_http::credential::bearer;
use sessionguard_jwt::AccessClaims;

use crate::context::{Renewal, client_of};
use crate::csrf;
use crate::error::ApiError;
use crate::state::AppState;

/// Largest accepted request body, in bytes.
pub const BODY_LIMIT: usize = 16 * 1024;

/// A JSON request body (`application/json` or `application/*+json`), at most
/// [`BODY_LIMIT`] bytes.
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if media_type(req.headers()) != Some(Media::Json) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = read_body(req, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// A JSON or `application/x-www-form-urlencoded` request body (for login, so that
/// a plain HTML form can post to it).
#[derive(Debug, Clone)]
pub struct JsonOrForm<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonOrForm<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let media = media_type(req.headers()).ok_or(ApiError::UnsupportedMediaType)?;
        let bytes = read_body(req, state).await?;
        match media {
            Media::Json => parse_json(&bytes).map(JsonOrForm),
            Media::Form => parse_form(&bytes).map(JsonOrForm),
        }
    }
}

/// An optional JSON or form body: `None` when the request has no body, an empty
/// one, or one of another media type (which is then ignored, as it was before the
/// endpoint took a body). A JSON or form body that does not parse is refused.
#[derive(Debug, Clone)]
pub struct OptionalBody<T>(pub Option<T>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OptionalBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Some(media) = media_type(req.headers()) else {
            return Ok(OptionalBody(None));
        };
        let bytes = read_body(req, state).await?;
        if bytes.is_empty() {
            return Ok(OptionalBody(None));
        }
        match media {
            Media::Json => parse_json(&bytes).map(|b| OptionalBody(Some(b))),
            Media::Form => parse_form(&bytes).map(|b| OptionalBody(Some(b))),
        }
    }
}

/// The bytes of a form body (`application/x-www-form-urlencoded`, as HTML forms
/// send), at most [`BODY_LIMIT`]: 415 for another media type. Parse it with
/// [`parse_form`].
pub(crate) async fn form_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    if media_type(req.headers()) != Some(Media::Form) {
        return Err(ApiError::UnsupportedMediaType);
    }
    read_body(req, state).await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Media {
    Json,
    Form,
}

fn media_type(headers: &HeaderMap) -> Option<Media> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next()?.trim().to_ascii_lowercase();
    let (kind, subtype) = essence.split_once('/')?;
    match (kind, subtype) {
        ("application", "json") => Some(Media::Json),
        ("application", s) if s.ends_with("+json") => Some(Media::Json),
        ("application", "x-www-form-urlencoded") => Some(Media::Form),
        _ => None,
    }
}

async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::malformed("The request body could not be read.")
        }
    })
}

/// Parses JSON; error details give the position or the missing field name, never
/// a submitted value (which could be a password). Every body of the API is a
/// JSON object: anything else is 422 (serde would otherwise read a struct from
/// an array of its fields in order, `[null, null]` for `{"a":null,"b":null}`).
fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b != b'{') {
        // Well-formed JSON of another type is a shape error; anything else is syntax.
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
                Ok(_) => ApiError::Malformed {
                    status: StatusCode::UNPROCESSABLE_ENTITY,
                    detail: "The body must be a JSON object.".to_owned(),
                },
                Err(e) => ApiError::malformed(format!(
                    "The body is not valid JSON (line {}, column {}).",
                    e.line(),
                    e.column()
                )),
            },
        );
    }
    serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        let at = format!("line {}, column {}", e.line(), e.column());
        match e.classify() {
            Category::Data => ApiError::Malformed {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                detail: missing_field(&e.to_string()).unwrap_or_else(|| {
                    format!("A field is missing or has the wrong type or value ({at}).")
                }),
            },
            Category::Syntax | Category::Eof | Category::Io => {
                ApiError::malformed(format!("The body is not valid JSON ({at})."))
            }
        }
    })
}

/// Parses a form body: 422 naming a missing field, never echoing a value.
pub(crate) fn parse_form<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_urlencoded::from_bytes(bytes).map_err(|e| ApiError::Malformed {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        detail: missing_field(&e.to_string())
            .unwrap_or_else(|| "The form body is malformed or a field is missing.".to_owned()),
    })
}

/// `"missing field `x`"` from a serde message, which names the field and no value.
fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    let (field, _) = rest.split_once('`')?;
    Some(format!("Missing field `{field}`."))
}

/// A path parameter, with a problem document for anything axum cannot decode.
#[derive(Debug, Clone)]
pub struct PathParam(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(p)| PathParam(p))
            .map_err(|_| ApiError::malformed("The path parameter is not valid."))
    }
}

/// Query parameters, with a problem document (400 `malformed_request`) for a
/// query that does not decode; the message echoes no value.
#[derive(Debug, Clone)]
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        serde_urlencoded::from_str(query)
            .map(QueryParams)
            .map_err(|_| ApiError::malformed("The query string is not valid."))
    }
}

/// A session credential as presented by the client, not yet checked
/// ([`sessionguard_http::Credential`], whose methods it derefs to): the text is
/// zeroized on drop and never printed. Failures map to [`ApiError`]s.
pub struct Credential(sessionguard_http::Credential);

/// The shared credential's `Debug`: the source, never the token.
impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl Deref for Credential {
    type Target = sessionguard_http::Credential;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl From<sessionguard_http::Credential> for Credential {
    fn from(c: sessionguard_http::Credential) -> Self {
        Credential(c)
    }
}

impl Credential {
    /// Finds the session credential: a bearer token if there is one (it wins),
    /// else the session cookie. A credential that is not valid UTF-8 is refused as
    /// `invalid_token`; other schemes of `Authorization` are ignored.
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<Credential>, ApiError> {
        sessionguard_http::Credential::from_headers(headers)
            .map(|c| c.map(Credential))
            .map_err(unreadable)
    }

    /// The session cookie alone, whatever `Authorization` says: the credential of
    /// the web pages, which browsers reach with nothing else. A value that is not
    /// UTF-8 is refused as `invalid_token`.
    pub fn from_cookie(headers: &HeaderMap) -> Result<Option<Credential>, ApiError> {
        sessionguard_http::Credential::from_cookie(headers)
            .map(|c| c.map(Credential))
            .map_err(unreadable)
    }

    /// Maps an engine failure about this credential to a response.
    pub fn reject(&self, err: sessionguard_core::Error) -> ApiError {
        ApiError::session(err, self.is_bearer())
    }
}

/// The answer to a credential that cannot be a token: `invalid_token`.
pub(crate) fn unreadable(e: sessionguard_http::Unreadable) -> ApiError {
    ApiError::Session {
        rejection: Rejection::INVALID,
        bearer: e.source == CredentialSource::Bearer,
    }
}

/// A request authenticated by a live session (cookie, bearer session token or
/// bearer access token), with CSRF protection applied for cookie-authenticated
/// unsafe methods. With `TOUCH` the check counts as activity and extends the idle
/// deadline ([`LiveSession`], [`sessionguard_core::Engine::validate`]); without,
/// it does not ([`PeekSession`], [`sessionguard_core::Engine::status`]).
#[derive(Debug)]
pub struct Authenticated<const TOUCH: bool = false> {
    /// The session, as checked.
    pub session: ValidSession,
    /// The credential it was checked with.
    pub credential: Credential,
    /// The verified claims, when the credential was an access token.
    pub access: Option<AccessClaims>,
}

/// A session check that counts as activity.
pub type LiveSession = Authenticated<true>;

/// A session check that does not count as activity.
pub type PeekSession = Authenticated<false>;

impl<S: Store, C: Clock, const TOUCH: bool> FromRequestParts<AppState<S, C>>
    for Authenticated<TOUCH>
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState<S, C>,
    ) -> Result<Self, Self::Rejection> {
        let renewal = parts.extensions.get::<Renewal>().cloned();
        let (auth, _) = authenticate_renewing(
            Credential::from_headers(&parts.headers),
            &parts.method,
            &parts.headers,
            state,
            renewal.as_ref(),
            false,
        )
        .await?;
        Ok(auth)
    }
}

/// The check of `GET /v1/session`, the endpoint session-token clients (sidecar
/// apps) call on every request: a [`LiveSession`] that, for a bearer session
/// token whose user's privileges changed, also replaces the token and hands the
/// new one to the handler (`new_token`) to return in the body — the one place
/// a bearer client is sure to read it. Cookies are rotated as everywhere.
#[derive(Debug)]
pub struct CheckedSession {
    /// The check.
    pub auth: LiveSession,
    /// The bearer session token that replaced the presented one, if any.
    pub new_token: Option<Token>,
}

impl<S: Store, C: Clock> FromRequestParts<AppState<S, C>> for CheckedSession {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState<S, C>,
    ) -> Result<Self, Self::Rejection> {
        let renewal = parts.extensions.get::<Renewal>().cloned();
        let (auth, new_token) = authenticate_renewing(
            Credential::from_headers(&parts.headers),
            &parts.method,
            &parts.headers,
            state,
            renewal.as_ref(),
            true,
        )
        .await?;
        Ok(CheckedSession { auth, new_token })
    }
}

/// Authenticates a request by its session credential (see the module docs),
/// recording activity when `TOUCH`. Cookie-authenticated unsafe methods are
/// CSRF-checked; bearer credentials are not (nothing ambient to forge). Never
/// rotates the token.
pub async fn authenticate<S: Store, C: Clock, const TOUCH: bool>(
    method: &Method,
    headers: &HeaderMap,
    state: &AppState<S, C>,
) -> Result<Authenticated<TOUCH>, ApiError> {
    let credential = Credential::from_headers(headers);
    authenticate_credential(credential, method, headers, state).await
}

/// [`authenticate`] with the request's credential already parsed
/// ([`Credential::from_headers`]), so a handler that looks at the credential
/// first reads the headers once.
pub async fn authenticate_credential<S: Store, C: Clock, const TOUCH: bool>(
    credential: Result<Option<Credential>, ApiError>,
    method: &Method,
    headers: &HeaderMap,
    state: &AppState<S, C>,
) -> Result<Authenticated<TOUCH>, ApiError> {
    Ok(
        authenticate_renewing(credential, method, headers, state, None, false)
            .await?
            .0,
    )
}

/// [`authenticate`], and with `TOUCH`, a session cookie and a `renewal` slot,
/// replaces a token that is due for rotation (renewal interval, privilege
/// change), leaving the new one in the slot for the response's cookie. With
/// `rotate_bearer`, a bearer session token is rotated after a privilege change
/// and the new one returned.
async fn authenticate_renewing<S: Store, C: Clock, const TOUCH: bool>(
    credential: Result<Option<Credential>, ApiError>,
    method: &Method,
    headers: &HeaderMap,
    state: &AppState<S, C>,
    renewal: Option<&Renewal>,
    rotate_bearer: bool,
) -> Result<(Authenticated<TOUCH>, Option<Token>), ApiError> {
    let credential = credential?.ok_or(ApiError::Session {
        rejection: Rejection::INVALID,
        bearer: false,
    })?;
    if credential.is_access_token() {
        let (session, claims) = state.access_session(credential.token(), TOUCH).await?;
        let auth = Authenticated {
            session,
            credential,
            access: Some(claims),
        };
        return Ok((auth, None));
    }
    let cookie_unsafe = !credential.is_bearer() && csrf::is_unsafe(method);
    if cookie_unsafe {
        // Before the lookup: a refused cross-site request is not activity.
        csrf::check_origin(headers, state.public_origin())?;
    }
    let engine = state.engine();
    let mut new_bearer_token = None;
    let checked = match renewal {
        Some(slot) if TOUCH && !credential.is_bearer() => {
            validate_cookie(engine, credential.token(), slot).await
        }
        _ if TOUCH && rotate_bearer => engine
            .validate_rotating(credential.token(), false)
            .await
            .map(|v| {
                new_bearer_token = v.new_token;
                v.session
            }),
        _ if TOUCH => engine.validate(credential.token()).await,
        _ => engine.status(credential.token()).await,
    };
    let session = checked.map_err(|e| credential.reject(e))?;
    if cookie_unsafe {
        csrf::check_token(headers, &session)?;
    }
    let auth = Authenticated {
        session,
        credential,
        access: None,
    };
    Ok((auth, new_bearer_token))
}

/// Checks a session cookie's token as activity and, when the session is due for
/// a new token (renewal interval, privilege change), replaces it and leaves the
/// new one in `slot`, for the response to carry as the cookie.
pub(crate) async fn validate_cookie<S: Store, C: Clock>(
    engine: &Engine<S, C>,
    token: &str,
    slot: &Renewal,
) -> Result<ValidSession, sessionguard_core::Error> {
    let validated = engine.validate_renewing(token).await?;
    if let Some(token) = validated.new_token {
        slot.set(token);
    }
    Ok(validated.session)
}

/// The client's user agent and address, for the user's list of sessions. The
/// address is the TCP peer's (`X-Forwarded-For` is not trusted); absent when the
/// router is called without a connection (tests).
#[derive(Debug, Clone)]
pub struct Client(pub ClientInfo);

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Client(client_of(
            &parts.headers,
            parts.extensions.get::<ConnectInfo<SocketAddr>>(),
        )))
    }
}

/// Proof that the request carries the configured admin token as a bearer token.
/// With no admin token configured, every admin request is refused.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

impl<S: Store, C: Clock> FromRequestParts<AppState<S, C>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState<S, C>,
    ) -> Result<Self, Self::Rejection> {
        let presented = bearer(&parts.headers);
        match (state.admin_token(), presented) {
            (Some(expected), Some(Some(token))) if expected.matches(token.as_bytes()) => Ok(Admin),
            (_, presented) => Err(ApiError::AdminUnauthorized {
                bearer: presented.is_some(),
            }),
        }
    }
}

/// Proof that the request carries, as a bearer token, a configured introspection
/// token or the admin token (RFC 7662 §2.1: the caller of introspection is
/// authenticated). With neither configured, every introspection is refused.
#[derive(Debug, Clone, Copy)]
pub struct Introspector;

impl<S: Store, C: Clock> FromRequestParts<AppState<S, C>> for Introspector {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState<S, C>,
    ) -> Result<Self, Self::Rejection> {
        match bearer(&parts.headers) {
            Some(Some(token)) if state.may_introspect(token.as_bytes()) => Ok(Introspector),
            presented => Err(ApiError::IntrospectionUnauthorized {
                bearer: presented.is_some(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(name: header::HeaderName, value: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.append(name, HeaderValue::from_bytes(value).unwrap());
        h
    }

    #[test]
    fn debug_shows_the_source_and_redacts_the_token() {
        let h = with(header::AUTHORIZATION, b"Bearer sgs_secret");
        let c = Credential::from_headers(&h).unwrap().unwrap();
        assert_eq!(
            format!("{c:?}"),
            r#"Credential { source: Bearer, token: "<redacted>" }"#
        );
    }

    #[test]
    fn non_utf8_credentials_are_invalid_tokens() {
        let h = with(header::COOKIE, b"__Host-sg_session=\xff\xfe");
        assert_eq!(
            Credential::from_headers(&h).unwrap_err().code(),
            "invalid_token"
        );
        let h = with(header::AUTHORIZATION, b"Bearer \xff");
        assert!(matches!(
            Credential::from_headers(&h).unwrap_err(),
            ApiError::Session { bearer: true, .. }
        ));
    }

    #[test]
    fn media_types() {
        let ct = |v: &'static str| with(header::CONTENT_TYPE, v.as_bytes());
        assert_eq!(
            media_type(&ct("application/json; charset=utf-8")),
            Some(Media::Json)
        );
        assert_eq!(
            media_type(&ct("Application/Problem+JSON")),
            Some(Media::Json)
        );
        assert_eq!(
            media_type(&ct("application/x-www-form-urlencoded")),
            Some(Media::Form)
        );
        assert_eq!(media_type(&ct("text/plain")), None);
        assert_eq!(media_type(&HeaderMap::new()), None);
    }

    #[test]
    fn json_errors_do_not_echo_values() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Body {
            password: String,
        }
        let err = parse_json::<Body>(br#"{"password": 12345678}"#).unwrap_err();
        assert_eq!(err.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(!format!("{err:?}").contains("12345678"));
        let err = parse_json::<Body>(b"{}").unwrap_err();
        assert!(format!("{err}").contains("`password`"));
        let err = parse_json::<Body>(b"{").unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn json_bodies_must_be_objects() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Body {
            a: Option<String>,
            b: Option<String>,
        }
        assert!(parse_json::<Body>(br#" {"a": "x"}"#).is_ok());
        for shape in [
            &b"[null, null]"[..],
            b"[\"x\", \"y\"]",
            b"\"x\"",
            b"42",
            b"null",
        ] {
            let err = parse_json::<Body>(shape).unwrap_err();
            assert_eq!(err.status(), StatusCode::UNPROCESSABLE_ENTITY, "{shape:?}");
            assert_eq!(err.code(), "malformed_request");
        }
        let err = parse_json::<Body>(b"[1,").unwrap_err();
        assert_eq!(
            err.status(),
            StatusCode::BAD_REQUEST,
            "broken JSON stays a syntax error"
        );
    }
}
