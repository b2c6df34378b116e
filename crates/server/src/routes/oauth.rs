//! The OAuth-style endpoints for REST API clients and resource servers: the token
//! endpoint (RFC 6749 password and refresh-token grants), introspection (RFC 7662),
//! revocation (RFC 7009) and the JWKS (RFC 7517).
//!
//! Every rule about validity is the engine's: a refresh token lives exactly as
//! long as its session, rotates on every use, and a reused one ends the session.

use std::fmt;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sessionguard_core::{ClientId, Clock, Reason, Store, Timestamp, TokenKind, ValidSession};
use sessionguard_jwt::AccessClaims;
use zeroize::Zeroizing;

use crate::access::{TokenPair, looks_like_jwt};
use crate::csrf::SameOrigin;
use crate::error::ApiError;
use crate::extract::{Client, Introspector, JsonOrForm};
use crate::routes::session::password_login;
use crate::state::AppState;

/// `Cache-Control` of the JWKS: public keys, safe to cache briefly. Resource
/// servers should fetch it again when a token names a `kid` they do not know
/// (a key is published when it becomes active).
pub const JWKS_CACHE_CONTROL: &str = "public, max-age=300";

/// The parameters of `POST /v1/token` (RFC 6749 §4.3 and §6). All optional, so
/// that a missing one is answered in the OAuth form. Secrets are never printed.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct TokenRequest {
    grant_type: Option<String>,
    username: Option<String>,
    password: Option<String>,
    refresh_token: Option<String>,
    client_id: Option<String>,
}

impl fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRequest")
            .field("grant_type", &self.grant_type)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// `token=..[&token_type_hint=..]` of introspection and revocation. The hint (like
/// any other parameter) is accepted and ignored: a token's prefix, or its JWT
/// shape, already says what it is.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct TokenParam {
    token: Option<String>,
}

/// What a presented token is, by its form alone (nothing is checked yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Presented {
    Session,
    Refresh,
    Api,
    Access,
    Unknown,
}

impl Presented {
    fn of(token: &str) -> Self {
        let has = |kind: TokenKind| token.starts_with(kind.prefix());
        if has(TokenKind::Session) {
            Presented::Session
        } else if has(TokenKind::Refresh) {
            Presented::Refresh
        } else if has(TokenKind::ApiToken) {
            Presented::Api
        } else if looks_like_jwt(token) {
            Presented::Access
        } else {
            Presented::Unknown
        }
    }
}

impl fmt::Debug for TokenParam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenParam(<redacted>)")
    }
}

/// `POST /v1/token`: the token endpoint, origin-checked like login.
///
/// - `grant_type=password&username=..&password=..[&client_id=..]`: the cookie
///   login path exactly (same lookup, same dummy-hash timing, same revocation of a
///   presented session token), then a first refresh token, bound to the client;
///   no cookie is set.
/// - `grant_type=refresh_token&refresh_token=..[&client_id=..]`: rotates the
///   refresh token ([`sessionguard_core::Engine::refresh`]: reuse detection,
///   grace window and client binding included).
///
/// A request without `client_id` is made by the first-party client
/// (`"first-party"`, [`ClientId::first_party`]). Access tokens name the client in
/// `client_id`; a refresh token works only for the client it was issued to:
/// another `client_id`, none for a token issued with one, or one for a token
/// issued without, is `invalid_grant` with the code `client_mismatch`, and
/// changes nothing (a token already rotated, presented by another client, is
/// reuse, as it would be without the grace window).
///
/// Either answers `{"access_token","token_type":"Bearer","expires_in",
/// "refresh_token","session_id"}` with `Cache-Control: no-store` and
/// `Pragma: no-cache`. Errors use the RFC 6749 §5.2 form (see [`ApiError::OAuth`]):
/// `invalid_grant` with the code `invalid_credentials` or the session's reason,
/// `unsupported_grant_type`, `invalid_request`.
pub async fn token<S: Store, C: Clock>(
    State(state): State<AppState<S, C>>,
    origin: Result<SameOrigin, ApiError>,
    headers: HeaderMap,
    Client(client): Client,
    body: Result<JsonOrForm<TokenRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let grant = async {
        origin?;
        let JsonOrForm(TokenRequest {
            grant_type,
            username,
            password,
            refresh_token,
            client_id,
        }) = body?;
        // No `client_id` is the first-party client.
        let client_id = ClientId::new_or_first_party(client_id.as_deref()).map_err(|_| {
            ApiError::malformed("client_id must be 1 to 255 visible ASCII characters.")
        })?;
        match grant_type.as_deref() {
            Some("password") => {
                let username = required(username.as_deref(), "username")?;
                let password = password.ok_or_else(|| missing("password"))?;
                let login =
                    password_login(&state, &headers, client, username, password, false).await?;
                state
                    .issue_token_pair(&login.issued.session, &client_id)
                    .await
            }
            Some("refresh_token") => {
                let presented =
                    Zeroizing::new(refresh_token.ok_or_else(|| missing("refresh_token"))?);
                let refreshed = state.engine().refresh(&presented, &client_id).await?;
                let access = state.issue_access_token(&refreshed.session, &client_id)?;
                Ok(TokenPair::new(
                    &refreshed.session,
                    &access,
                    &refreshed.refresh,
                ))
            }
            Some(_) => Err(ApiError::UnsupportedGrantType),
            None => Err(missing("grant_type")),
        }
    };
    let pair = grant.await.map_err(ApiError::oauth)?;
    let mut res = (StatusCode::OK, Json(pair)).into_response();
    // RFC 6749 §5.1; `Cache-Control: no-store` is set for every response.
    res.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(res)
}

/// The RFC 7662 answer. An inactive token is exactly `{"active":false}`: every
/// other member is left out.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct Introspection {
    active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
}

impl Introspection {
    fn inactive() -> Self {
        Introspection::default()
    }

    /// A live session-bound token: it ends at the session's idle deadline unless
    /// the session is used meanwhile (never after the absolute deadline).
    fn session(
        token_type: &'static str,
        s: &ValidSession,
        iss: &str,
        iat: Option<Timestamp>,
    ) -> Self {
        Introspection {
            active: true,
            token_type: Some(token_type),
            sub: Some(s.user_id().to_string()),
            sid: Some(s.id().to_string()),
            exp: Some(s.idle_deadline().as_secs()),
            iat: iat.map(Timestamp::as_secs),
            iss: Some(iss.to_owned()),
            ..Introspection::default()
        }
    }

    /// A verified access token of a live session: its own claims.
    fn access(s: &ValidSession, claims: &AccessClaims) -> Self {
        Introspection {
            active: true,
            token_type: Some("access_token"),
            sub: Some(claims.sub().to_owned()),
            sid: Some(s.id().to_string()),
            exp: Some(claims.exp().as_secs()),
            iat: Some(claims.iat().as_secs()),
            iss: Some(claims.iss().to_owned()),
            aud: Some(match claims.aud() {
                [one] => json!(one),
                many => json!(many),
            }),
            client_id: claims.client_id().map(str::to_owned),
            jti: Some(claims.jti().to_owned()),
        }
    }
}

/// `POST /v1/introspect` (RFC 7662): is this token active, and what is it? For
/// resource servers that must honour a logout at once (the JWKS alone cannot).
///
/// The caller authenticates with `Authorization: Bearer` and a configured
/// introspection token or the admin token (else 401). Any token kind is accepted
/// — session (`sgs_`), refresh (`sgr_`), API (`sga_`) or access token (JWT) — and
/// anything unknown, malformed, ended or rotated is exactly `{"active":false}`. A
/// request without `token` is 400. Introspection never records activity.
///
/// An active answer has `token_type` (`session_token`, `refresh_token`,
/// `api_token`, `access_token`), `sub` (the user id), `iss`, and times in seconds
/// since the Unix epoch: for an access token its own `exp`, `iat`, `aud`, `jti`
/// and `client_id`; for an API token its expiry and creation; for session and
/// refresh tokens `sid` and, as `exp`, the session's idle deadline — the moment it
/// ends unless it is used (never after its absolute deadline) — and, for session
/// tokens, the login time as `iat`. A refresh token's own issue time is not known
/// here, so it has no `iat`.
pub async fn introspect<S: Store, C: Clock>(
    State(state): State<AppState<S, C>>,
    _: Introspector,
    JsonOrForm(req): JsonOrForm<TokenParam>,
) -> Result<Json<Introspection>, ApiError> {
    let token = Zeroizing::new(
        req.token
            .ok_or_else(|| ApiError::malformed("Missing parameter `token`."))?,
    );
    let engine = state.engine();
    let iss = state.verifier().issuer();
    let answer = match Presented::of(&token) {
        Presented::Session => live(engine.status(&token).await)?
            .map(|s| Introspection::session("session_token", &s, iss, Some(s.created_at()))),
        Presented::Refresh => live(engine.refresh_token_session(&token).await)?
            .map(|s| Introspection::session("refresh_token", &s, iss, None)),
        Presented::Api => api_token_status(&state, &token).await?,
        Presented::Access => match state.access_session(&token, false).await {
            Ok((s, claims)) => Some(Introspection::access(&s, &claims)),
            Err(e) if e.status().is_server_error() => return Err(e),
            Err(_) => None,
        },
        Presented::Unknown => None,
    };
    Ok(Json(answer.unwrap_or_else(Introspection::inactive)))
}

/// The session of an engine check, `None` if the token is not live; a failure of
/// the store is an error, never "inactive".
fn live<T>(checked: sessionguard_core::engine::Result<T>) -> Result<Option<T>, ApiError> {
    match checked {
        Ok(s) => Ok(Some(s)),
        Err(sessionguard_core::Error::Rejected(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// An API token's introspection: the engine's check without recording a use
/// (introspection never records activity).
async fn api_token_status<S: Store, C: Clock>(
    state: &AppState<S, C>,
    presented: &str,
) -> Result<Option<Introspection>, ApiError> {
    let Some(token) = live(state.engine().api_token_status(presented).await)? else {
        return Ok(None);
    };
    Ok(Some(Introspection {
        active: true,
        token_type: Some("api_token"),
        sub: Some(token.user_id().to_string()),
        exp: Some(token.expires_at().as_secs()),
        iat: Some(token.created_at().as_secs()),
        iss: Some(state.verifier().issuer().to_owned()),
        ..Introspection::default()
    }))
}

/// `POST /v1/revoke` (RFC 7009): ends whatever the token is — a session token's
/// session or an access token's session (`logged_out`), a refresh token's session
/// (`logged_out`), an API token (`revoked_by_user`). Always 200 `{}`, also for an
/// unknown, malformed or already ended token (RFC 7009 §2.2), so it reveals
/// nothing; only a request without `token` is 400 `invalid_request`.
///
/// No client authentication is required: possession of a token is proof enough
/// to end it, and every kind is checked in full before anything is revoked (the
/// secret verifier of an opaque token; for an access token the rules of every
/// other endpoint: signature, issuer, audience, expiry, a live session, and no
/// step-up or privilege change since it was issued), so a public id, a forged,
/// an expired or a superseded token ends nothing.
pub async fn revoke<S: Store, C: Clock>(
    State(state): State<AppState<S, C>>,
    body: Result<JsonOrForm<TokenParam>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let JsonOrForm(req) = body.map_err(ApiError::oauth)?;
    let token = Zeroizing::new(req.token.ok_or_else(|| missing("token").oauth())?);
    let engine = state.engine();
    match Presented::of(&token) {
        Presented::Session => {
            engine.revoke_token(&token, Reason::LoggedOut).await?;
        }
        Presented::Refresh => {
            engine
                .revoke_by_refresh_token(&token, Reason::LoggedOut)
                .await?;
        }
        Presented::Api => {
            engine
                .revoke_api_token_by_token(&token, Reason::RevokedByUser)
                .await?;
        }
        // The access-token rules of every endpoint (`AppState::access_session`):
        // a token that would be refused there (bad signature, expired, its
        // session over, issued before a step-up or a privilege change) ends
        // nothing here either.
        Presented::Access => match state.access_session(&token, true).await {
            Ok((session, _)) => {
                engine.revoke(&session.id(), Reason::LoggedOut).await?;
            }
            Err(e) if e.status().is_server_error() => return Err(e),
            Err(_) => {}
        },
        Presented::Unknown => {}
    }
    Ok(Json(json!({})))
}

/// `GET /.well-known/jwks.json`: the public keys that verify access tokens — the
/// active key and the retired ones whose tokens may not have expired yet. Never
/// private material. Cacheable for five minutes.
pub async fn jwks<S: Store, C: Clock>(State(state): State<AppState<S, C>>) -> Response {
    let mut res = Json(state.keys().jwks()).into_response();
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(JWKS_CACHE_CONTROL),
    );
    res
}

fn required<'a>(value: Option<&'a str>, name: &'static str) -> Result<&'a str, ApiError> {
    value.filter(|v| !v.is_empty()).ok_or_else(|| missing(name))
}

fn missing(name: &'static str) -> ApiError {
    ApiError::malformed(format!("Missing parameter `{name}`."))
}
