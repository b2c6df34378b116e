//! The extractors: [`Session`] (and `Option<Session>`), the role guard
//! [`RequireRole`] and the step-up guard [`StepUp`], and their rejection,
//! [`SessionRejection`].

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sessionguard_core::{Identity, Rejection, SessionId, Timestamp, TokenId, UserId, ValidSession};
use sessionguard_http::CredentialSource;
use sessionguard_http::forward::MISSING_CREDENTIALS;
use sessionguard_http::problem::{self, Problem};
use subtle::ConstantTimeEq;

/// A live session (or personal API token) that authenticated the request, as
/// the [`SessionLayer`](crate::SessionLayer) checked it. Cheap to clone.
///
/// Who the user is beyond the id — username and roles — is learnt when first
/// asked for ([`Session::identity`], the role guard): a request that does not
/// ask pays for the session check alone.
///
/// As an extractor it rejects a request without a live credential with a 401
/// problem document carrying the reason (`logged_out`, `idle_timeout`,
/// `password_changed`, `missing_credentials`, …); a cookie-authenticated
/// request that can change state must also have passed the cross-site rule
/// and carry the session's anti-CSRF token (403 otherwise). `Option<Session>`
/// is `None` instead of those refusals (a store failure is still a 503).
///
/// ```
/// use sessionguard_axum::Session;
///
/// async fn whoami(session: Session) -> Result<String, sessionguard_axum::SessionRejection> {
///     let who = session.identity().await?;
///     Ok(format!("{} ({:?})", session.user_id(), who.username()))
/// }
/// async fn home(session: Option<Session>) -> &'static str {
///     if session.is_some() { "welcome back" } else { "hello, stranger" }
/// }
/// ```
#[derive(Clone)]
pub struct Session(Arc<Inner>);

struct Inner {
    user_id: UserId,
    identity: Who,
    session_id: Option<SessionId>,
    api_token: Option<TokenId>,
    step_up_until: Option<Timestamp>,
    checked_at: Timestamp,
    source: CredentialSource,
    csrf: Csrf,
}

/// Where the session's anti-CSRF token comes from.
enum Csrf {
    /// Derived from the checked session (in-process).
    Derived(ValidSession),
    /// As the sessionguard server said it (remote).
    Told(String),
    /// A personal API token has none.
    None,
}

/// Who the user is: known (the server said), or to be learnt from the
/// authority under the privilege count the check read.
enum Who {
    Known(Arc<Identity>),
    Lazy {
        privileges: u64,
        source: Arc<dyn IdentitySource>,
        known: OnceLock<Arc<Identity>>,
    },
}

/// Where an in-process session learns its user's identity (the engine).
pub(crate) trait IdentitySource: Send + Sync {
    fn identity<'a>(
        &'a self,
        user: &'a UserId,
        privileges: u64,
    ) -> Pin<Box<dyn Future<Output = Result<Arc<Identity>, SessionRejection>> + Send + 'a>>;
}

/// What a check learnt, for building a [`Session`].
pub(crate) struct Described {
    pub(crate) user_id: UserId,
    pub(crate) identity: Arc<Identity>,
    pub(crate) session_id: Option<SessionId>,
    pub(crate) api_token: Option<TokenId>,
    pub(crate) step_up_until: Option<Timestamp>,
    pub(crate) checked_at: Timestamp,
    pub(crate) source: CredentialSource,
}

impl Session {
    /// A session checked in-process; its user's identity comes from `source`
    /// when asked for.
    pub(crate) fn checked(
        user_id: UserId,
        privileges: u64,
        source_of_identity: Arc<dyn IdentitySource>,
        valid: Option<ValidSession>,
        api_token: Option<TokenId>,
        checked_at: Timestamp,
        source: CredentialSource,
    ) -> Session {
        Session(Arc::new(Inner {
            user_id,
            identity: Who::Lazy {
                privileges,
                source: source_of_identity,
                known: OnceLock::new(),
            },
            session_id: valid.as_ref().map(ValidSession::id),
            api_token,
            step_up_until: valid.as_ref().map(ValidSession::step_up_until),
            checked_at,
            source,
            csrf: valid.map_or(Csrf::None, Csrf::Derived),
        }))
    }

    /// A session as a sessionguard server described it.
    pub(crate) fn told(parts: Described, csrf_token: Option<String>) -> Session {
        Session(Arc::new(Inner {
            user_id: parts.user_id,
            identity: Who::Known(parts.identity),
            session_id: parts.session_id,
            api_token: parts.api_token,
            step_up_until: parts.step_up_until,
            checked_at: parts.checked_at,
            source: parts.source,
            csrf: csrf_token.map_or(Csrf::None, Csrf::Told),
        }))
    }

    /// The user.
    pub fn user_id(&self) -> &UserId {
        &self.0.user_id
    }

    /// The user's username (if the user has credentials in sessionguard: apps
    /// that keep their own users have none there) and roles. In-process, the
    /// first call reads them from the engine's identity memo (no store read
    /// unless the user's profile or roles changed since it was filled); later
    /// calls on this request are free. In remote mode the server said.
    pub async fn identity(&self) -> Result<Arc<Identity>, SessionRejection> {
        match &self.0.identity {
            Who::Known(identity) => Ok(Arc::clone(identity)),
            Who::Lazy {
                privileges,
                source,
                known,
            } => {
                if let Some(identity) = known.get() {
                    return Ok(Arc::clone(identity));
                }
                let identity = source.identity(&self.0.user_id, *privileges).await?;
                Ok(Arc::clone(known.get_or_init(|| identity)))
            }
        }
    }

    /// Fails with a 403 `role_required` unless the user holds `role` (the
    /// [`RequireRole`] extractor, for a role known only at run time).
    pub async fn require_role(&self, role: &str) -> Result<(), SessionRejection> {
        if self.identity().await?.has_role(role) {
            Ok(())
        } else {
            Err(SessionRejection::RoleRequired)
        }
    }

    /// The session's public id; `None` when a personal API token authenticated
    /// the request.
    pub fn session_id(&self) -> Option<SessionId> {
        self.0.session_id
    }

    /// The personal API token's id, if one authenticated the request.
    pub fn api_token_id(&self) -> Option<TokenId> {
        self.0.api_token
    }

    /// How the credential came: the session cookie or a bearer token.
    pub fn source(&self) -> CredentialSource {
        self.0.source
    }

    /// When the session was checked.
    pub fn checked_at(&self) -> Timestamp {
        self.0.checked_at
    }

    /// Until when the session counts as recently authenticated (step-up);
    /// `None` for a personal API token.
    pub fn step_up_until(&self) -> Option<Timestamp> {
        self.0.step_up_until
    }

    /// Whether the session counted as recently authenticated when it was
    /// checked (the [`StepUp`] guard).
    pub fn is_elevated(&self) -> bool {
        self.0.step_up_until.is_some_and(|t| self.0.checked_at < t)
    }

    /// The session's anti-CSRF token, for the app's forms (a hidden
    /// `csrf_token` field) and scripts (the `X-CSRF-Token` header); `None` for
    /// a personal API token. Stable for the session's life.
    pub fn csrf_token(&self) -> Option<String> {
        match &self.0.csrf {
            Csrf::Derived(valid) => Some(valid.csrf_token()),
            Csrf::Told(token) => Some(token.clone()),
            Csrf::None => None,
        }
    }

    /// Whether `presented` is the session's anti-CSRF token (constant time).
    pub fn verify_csrf(&self, presented: &str) -> bool {
        match &self.0.csrf {
            Csrf::Derived(valid) => valid.verify_csrf(presented),
            Csrf::Told(token) => {
                presented.len() == token.len()
                    && bool::from(presented.as_bytes().ct_eq(token.as_bytes()))
            }
            Csrf::None => false,
        }
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("user_id", &self.0.user_id)
            .field("session_id", &self.0.session_id)
            .field("api_token", &self.0.api_token)
            .field("source", &self.0.source)
            .finish_non_exhaustive()
    }
}

/// Why a request was refused. Every variant answers an RFC 9457 problem
/// document with a stable `code`; nothing of a token or an internal error is
/// shown.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SessionRejection {
    /// No live credential (401, the reason as the code; `missing_credentials`
    /// when the request carries none). Bearer refusals carry RFC 6750's
    /// `error="invalid_token"` in `WWW-Authenticate`.
    Unauthenticated {
        /// Why the credential was refused; `None` when there was none.
        rejection: Option<Rejection>,
        /// Whether it came as a bearer token.
        bearer: bool,
    },
    /// A cookie-authenticated request that can change state came from another
    /// site (403 `cross_origin_request`).
    CrossOrigin,
    /// A cookie-authenticated request that can change state lacks the
    /// session's anti-CSRF token (403 `csrf_token_invalid`).
    CsrfTokenInvalid,
    /// The user lacks the role a route requires (403 `role_required`).
    RoleRequired,
    /// The route needs a recent authentication (403 `step_up_required`).
    StepUpRequired,
    /// The user holds as many sessions as the policy allows and it refuses new
    /// ones (409 `session_limit_reached`).
    SessionLimitReached,
    /// The request headers are too large (431 `headers_too_large`).
    HeadersTooLarge,
    /// A form body to read the anti-CSRF token from is too large (413
    /// `payload_too_large`).
    PayloadTooLarge,
    /// The session store, or the sessionguard server in remote mode, could not
    /// answer (503 `store_unavailable`): the request is refused, never let
    /// through. Logged when answered.
    Unavailable,
    /// An extractor ran on a route without the
    /// [`SessionLayer`](crate::SessionLayer) (500 `internal_error`): a wiring
    /// mistake of the app.
    LayerMissing,
}

impl SessionRejection {
    /// The rejection of a credential refused for `rejection`.
    pub(crate) fn rejected(rejection: Rejection, bearer: bool) -> Self {
        SessionRejection::Unauthenticated {
            rejection: Some(rejection),
            bearer,
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            SessionRejection::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            SessionRejection::CrossOrigin
            | SessionRejection::CsrfTokenInvalid
            | SessionRejection::RoleRequired
            | SessionRejection::StepUpRequired => StatusCode::FORBIDDEN,
            SessionRejection::SessionLimitReached => StatusCode::CONFLICT,
            SessionRejection::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            SessionRejection::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            SessionRejection::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            SessionRejection::LayerMissing => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable code clients branch on.
    pub fn code(&self) -> &'static str {
        match self {
            SessionRejection::Unauthenticated {
                rejection: Some(r), ..
            } => r.reason.code(),
            SessionRejection::Unauthenticated {
                rejection: None, ..
            } => MISSING_CREDENTIALS,
            SessionRejection::CrossOrigin => "cross_origin_request",
            SessionRejection::CsrfTokenInvalid => "csrf_token_invalid",
            SessionRejection::RoleRequired => "role_required",
            SessionRejection::StepUpRequired => "step_up_required",
            SessionRejection::SessionLimitReached => "session_limit_reached",
            SessionRejection::HeadersTooLarge => "headers_too_large",
            SessionRejection::PayloadTooLarge => "payload_too_large",
            SessionRejection::Unavailable => "store_unavailable",
            SessionRejection::LayerMissing => "internal_error",
        }
    }

    fn problem(&self) -> Problem<'static> {
        let (title, detail) = match self {
            SessionRejection::Unauthenticated {
                rejection: Some(r), ..
            } => return Problem::session(r),
            SessionRejection::Unauthenticated {
                rejection: None, ..
            } => (
                "Credentials required",
                "The request carries neither a session cookie nor a bearer token.",
            ),
            SessionRejection::CrossOrigin => (
                "Cross-origin request refused",
                "State-changing browser requests must come from the configured public origin.",
            ),
            SessionRejection::CsrfTokenInvalid => (
                "Anti-CSRF token missing or wrong",
                "Cookie-authenticated state-changing requests must send the session's \
                 anti-CSRF token in the X-CSRF-Token header or a csrf_token form field.",
            ),
            SessionRejection::RoleRequired => (
                "Role required",
                "The user does not hold a role this resource requires.",
            ),
            SessionRejection::StepUpRequired => (
                "Re-authentication required",
                "This action needs a recent sign-in. Confirm the password, then retry.",
            ),
            SessionRejection::SessionLimitReached => (
                "Session limit reached",
                "The account already has as many active sessions as its policy allows. Sign \
                 out of another session first.",
            ),
            SessionRejection::HeadersTooLarge => (
                "Request headers too large",
                "The request headers exceed 16 KiB in total, or a Cookie or Authorization \
                 header exceeds 8 KiB.",
            ),
            SessionRejection::PayloadTooLarge => (
                "Payload too large",
                "The form body is too large to be checked.",
            ),
            SessionRejection::Unavailable => (
                "Service unavailable",
                "The session store is unavailable; the request was not completed.",
            ),
            SessionRejection::LayerMissing => {
                ("Internal server error", "An unexpected error occurred.")
            }
        };
        Problem::new(self.status(), self.code(), title, detail)
    }
}

impl fmt::Display for SessionRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "request refused: {}", self.code())
    }
}

impl std::error::Error for SessionRejection {}

impl IntoResponse for SessionRejection {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(code = self.code(), "session check failed");
        } else {
            tracing::debug!(
                code = self.code(),
                status = status.as_u16(),
                "request refused"
            );
        }
        let mut res: Response = self.problem().response();
        if let SessionRejection::Unauthenticated { bearer: true, .. } = self {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, problem::challenge(true));
        }
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }
}

/// What the layer left for the extractors.
#[derive(Clone)]
pub(crate) struct Authentication(pub(crate) Result<Session, SessionRejection>);

fn authentication(parts: &Parts) -> Result<Session, SessionRejection> {
    match parts.extensions.get::<Authentication>() {
        Some(Authentication(result)) => result.clone(),
        None => {
            tracing::error!("a sessionguard extractor ran on a route without SessionLayer");
            Err(SessionRejection::LayerMissing)
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        authentication(parts)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Session {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        match authentication(parts) {
            Ok(session) => Ok(Some(session)),
            Err(
                SessionRejection::Unauthenticated { .. }
                | SessionRejection::CrossOrigin
                | SessionRejection::CsrfTokenInvalid,
            ) => Ok(None),
            Err(other) => Err(other),
        }
    }
}

/// A role, named at compile time, for [`RequireRole`].
///
/// ```
/// use sessionguard_axum::{RequireRole, Role};
///
/// struct Admin;
/// impl Role for Admin {
///     const NAME: &'static str = "admin";
/// }
///
/// async fn admin_page(RequireRole(session, ..): RequireRole<Admin>) -> String {
///     format!("hello, admin {}", session.user_id())
/// }
/// ```
pub trait Role: Send + Sync + 'static {
    /// The role's name, as assigned to users (`POST /v1/admin/users/{id}`).
    const NAME: &'static str;
}

/// The role guard: a [`Session`] whose user holds role `R`, else 403
/// `role_required` (401 without a live session).
pub struct RequireRole<R: Role>(pub Session, pub PhantomData<R>);

impl<R: Role> fmt::Debug for RequireRole<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RequireRole")
            .field(&R::NAME)
            .field(&self.0)
            .finish()
    }
}

impl<S: Send + Sync, R: Role> FromRequestParts<S> for RequireRole<R> {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let session = authentication(parts)?;
        session.require_role(R::NAME).await?;
        Ok(RequireRole(session, PhantomData))
    }
}

/// The step-up guard: a [`Session`] that counts as recently authenticated
/// (within the profile's `step_up_ttl` of its login or last step-up), else 403
/// `step_up_required` (401 without a live session). A personal API token never
/// passes it.
///
/// ```
/// use sessionguard_axum::StepUp;
///
/// async fn delete_account(StepUp(session): StepUp) -> String {
///     format!("deleting {}", session.user_id())
/// }
/// ```
#[derive(Debug, Clone)]
pub struct StepUp(pub Session);

impl<S: Send + Sync> FromRequestParts<S> for StepUp {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let session = authentication(parts)?;
        if session.is_elevated() {
            Ok(StepUp(session))
        } else {
            Err(SessionRejection::StepUpRequired)
        }
    }
}
