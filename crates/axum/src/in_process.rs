//! In-process mode: the app is its own session authority, with the engine over
//! any store in its own process — memory, the embedded SQLite store, or Redis
//! shared with `sessionguard serve` nodes (then sessions are shared, and a
//! revocation by any node or app process is seen by every other at its next
//! check).

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};

use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponseParts, ResponseParts};
use sessionguard_core::{
    ClientInfo, Clock, Engine, Identity, Reason, Store, SystemClock, Token, UserId,
};
use sessionguard_http::check::{AccessTokens, Refused, check_request};
use sessionguard_http::{Credential, CredentialSource, TokenForm, cookie, csrf};
use sessionguard_jwt::{AccessClaims, JwtError, KeySet, SignatureMemo, Verifier};

use crate::layer::{Authority, Checked, Sealed, SessionLayer};
use crate::session::{IdentitySource, Session, SessionRejection};

/// How many verified access-token signatures an in-process authority
/// remembers (as the server does: a digest and an expiry each).
const SIGNATURE_MEMO_CAPACITY: usize = 100_000;

/// The in-process [`Authority`]: an [`Engine`] over store `S` in this process.
/// Cheap to clone (one shared engine).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use axum::{Router, routing::get};
/// use sessionguard_axum::{InProcess, Session};
/// use sessionguard_core::{Engine, Policy};
/// use sessionguard_store_sqlite::SqliteStore;
///
/// let store = SqliteStore::open("app-data/sessions.db")?;
/// let engine = Engine::new(store, Policy::default())?;
/// let sessions = InProcess::new(engine, "https://app.example");
/// let app: Router = Router::new()
///     .route("/me", get(|s: Session| async move { s.user_id().to_string() }))
///     .layer(sessions.layer());
/// # Ok(()) }
/// ```
pub struct InProcess<S, C = SystemClock> {
    inner: Arc<Shared<S, C>>,
}

struct Shared<S, C> {
    engine: Engine<S, C>,
    public_origin: String,
    access: RwLock<Option<Arc<AccessKeys>>>,
    signatures: SignatureMemo,
}

/// The keys and verifier of accepted access tokens.
struct AccessKeys {
    verifier: Verifier,
    keys: KeySet,
}

impl<S, C> Clone for InProcess<S, C> {
    fn clone(&self) -> Self {
        InProcess {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S, C> fmt::Debug for InProcess<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InProcess")
            .field("engine", &self.inner.engine)
            .field("public_origin", &self.inner.public_origin)
            .finish_non_exhaustive()
    }
}

impl<S: Store, C: Clock> InProcess<S, C> {
    /// The authority of `engine`, for an app served at `public_origin` (the
    /// origin browsers see, e.g. `https://app.example`: state-changing cookie
    /// requests from any other origin are refused). Access tokens (JWTs) are
    /// refused until [`InProcess::accept_access_tokens`].
    pub fn new(engine: Engine<S, C>, public_origin: impl Into<String>) -> Self {
        InProcess {
            inner: Arc::new(Shared {
                engine,
                public_origin: public_origin.into(),
                access: RwLock::new(None),
                signatures: SignatureMemo::new(SIGNATURE_MEMO_CAPACITY),
            }),
        }
    }

    /// Accepts access tokens signed by `keys` for `verifier`'s issuer and
    /// audience (a sessionguard server's key set and its `issuer`/`audience`),
    /// from now on; call again with the new set after a rotation. The session
    /// each token names must be alive, and accept it, exactly as on the
    /// server ([`sessionguard_core::access_token_verdict`]).
    pub fn accept_access_tokens(&self, verifier: Verifier, keys: KeySet) {
        let keys = Arc::new(AccessKeys { verifier, keys });
        *self
            .inner
            .access
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(keys);
    }

    /// The engine: every rule and store operation of sessionguard.
    pub fn engine(&self) -> &Engine<S, C> {
        &self.inner.engine
    }

    /// The layer that checks every request with this authority.
    pub fn layer(&self) -> SessionLayer<Self> {
        SessionLayer::new(self.clone())
    }

    /// Logs `user` in, for an app that verified the user's credentials itself
    /// (its own login form, its own users): a new session, whose token goes
    /// into the session cookie when the answer carries the returned
    /// [`LoggedIn`]. A session token the request presented (cookie or bearer)
    /// is revoked first (`superseded`): no identifier is ever adopted. The
    /// user's concurrent-session limit applies (409 `session_limit_reached`
    /// with `reject_new`; the oldest is displaced with `evict_oldest`).
    ///
    /// `headers` are the login request's (its credential, its user agent, its
    /// `Sec-Fetch-Site` and `Origin`: a login from another site is refused
    /// with 403 `cross_origin_request`, against login CSRF); `ip` is the
    /// client's address, when the app knows it.
    pub async fn log_in(
        &self,
        user: &UserId,
        headers: &HeaderMap,
        ip: Option<IpAddr>,
    ) -> Result<LoggedIn, SessionRejection> {
        csrf::check_origin(headers, &self.inner.public_origin)
            .map_err(|_| SessionRejection::CrossOrigin)?;
        let engine = self.engine();
        let epoch = engine
            .store()
            .user_epoch(user)
            .await
            .map_err(|e| failed(e.into()))?
            .epoch;
        // A credential that cannot even be read cannot be a live session to revoke.
        let presented = Credential::from_headers(headers)
            .ok()
            .flatten()
            .filter(|c| c.form() == TokenForm::Session);
        let issued = engine
            .login(
                user,
                epoch,
                client(headers, ip),
                presented.as_ref().map(Credential::token),
            )
            .await
            .map_err(|e| engine_error(e, false))?;
        self.logged_in(user, issued).await
    }

    /// Logs the session out: it is revoked in the store (`logged_out`) before
    /// this returns, on every process sharing the store; the returned
    /// [`LoggedOut`] clears the cookie when the cookie carried the session.
    /// For a personal API token, nothing ends (API tokens are revoked one by
    /// one, `Engine::revoke_own_api_token`).
    pub async fn log_out(&self, session: &Session) -> Result<LoggedOut, SessionRejection> {
        if let Some(id) = session.session_id() {
            self.engine()
                .revoke(&id, Reason::LoggedOut)
                .await
                .map_err(|e| engine_error(e, false))?;
        }
        Ok(LoggedOut {
            clear_cookie: session.source() == CredentialSource::Cookie,
        })
    }

    /// The user of `session` changed their password (in the app's own user
    /// store): every session of the user ends with `password_changed` — on
    /// every process sharing the store — and so, by the profile's policy, do
    /// their personal API tokens; this device gets a fresh session in the
    /// returned [`LoggedIn`]. Ask for a recent authentication first
    /// ([`StepUp`](crate::StepUp)).
    pub async fn password_changed(
        &self,
        session: &Session,
        headers: &HeaderMap,
        ip: Option<IpAddr>,
    ) -> Result<LoggedIn, SessionRejection> {
        let engine = self.engine();
        let user = session.user_id();
        let epoch = engine
            .revoke_user(user, Reason::PasswordChanged)
            .await
            .map_err(|e| engine_error(e, false))?;
        let issued = engine
            .create_session(user, epoch.epoch, client(headers, ip))
            .await
            .map_err(|e| engine_error(e, false))?;
        self.logged_in(user, issued).await
    }

    async fn logged_in(
        &self,
        user: &UserId,
        issued: sessionguard_core::Issued,
    ) -> Result<LoggedIn, SessionRejection> {
        let engine = self.engine();
        let session = Session::checked(
            user.clone(),
            issued.session.user_privileges(),
            self.identities(),
            Some(issued.session),
            None,
            engine.clock().now(),
            CredentialSource::Cookie,
        );
        Ok(LoggedIn {
            session,
            token: issued.token,
        })
    }
}

impl<S: Store, C: Clock> InProcess<S, C> {
    /// Where this authority's sessions learn their user's identity.
    fn identities(&self) -> Arc<dyn IdentitySource> {
        // Unsized coercion of the one shared engine.
        let shared: Arc<Shared<S, C>> = Arc::clone(&self.inner);
        shared
    }
}

impl<S: Store, C: Clock> IdentitySource for Shared<S, C> {
    fn identity<'a>(
        &'a self,
        user: &'a UserId,
        privileges: u64,
    ) -> Pin<Box<dyn Future<Output = Result<Arc<Identity>, SessionRejection>> + Send + 'a>> {
        Box::pin(async move {
            self.engine
                .identity(user, privileges)
                .await
                .map_err(|e| engine_error(e, false))
        })
    }
}

impl<S, C> Sealed for InProcess<S, C> {}

impl<S: Store, C: Clock> Authority for InProcess<S, C> {
    async fn authenticate(&self, parts: &Parts) -> Result<Checked, SessionRejection> {
        let shared = &*self.inner;
        let checked = check_request(
            &shared.engine,
            &parts.headers,
            &parts.method,
            &shared.public_origin,
            shared,
        )
        .await;
        match checked {
            Ok(c) => Ok(Checked {
                renewed: c.renewed.as_ref().map(cookie::session_cookie),
                session: Session::checked(
                    c.user,
                    c.privileges,
                    self.identities(),
                    c.session,
                    c.api_token,
                    shared.engine.clock().now(),
                    c.source,
                ),
            }),
            Err(Refused::Missing) => Err(SessionRejection::Unauthenticated {
                rejection: None,
                bearer: false,
            }),
            Err(Refused::Rejected { rejection, bearer }) => {
                Err(SessionRejection::rejected(rejection, bearer))
            }
            Err(Refused::CrossOrigin) => Err(SessionRejection::CrossOrigin),
            Err(Refused::Failed(e)) => Err(failed(e)),
            Err(other) => {
                tracing::error!(refusal = ?other, "unexpected refusal");
                Err(SessionRejection::Unavailable)
            }
        }
    }
}

impl<S: Store, C: Clock> AccessTokens for Shared<S, C> {
    async fn verify(&self, token: &str) -> Result<AccessClaims, JwtError> {
        let access = self
            .access
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(access) = access else {
            return Err(JwtError::UnknownKey);
        };
        let now = self.engine.clock().now();
        access
            .verifier
            .verify_memoized(&access.keys, token, now, &self.signatures)
    }
}

/// The client of a request: its user agent, and the address the app gives.
fn client(headers: &HeaderMap, ip: Option<IpAddr>) -> ClientInfo {
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| std::str::from_utf8(v.as_bytes()).ok());
    ClientInfo::new(user_agent, ip)
}

/// An engine failure as a refusal; failures of the store are logged here,
/// once, with their cause.
fn engine_error(err: sessionguard_core::Error, bearer: bool) -> SessionRejection {
    match err {
        sessionguard_core::Error::Rejected(r) => SessionRejection::rejected(r, bearer),
        sessionguard_core::Error::LimitReached => SessionRejection::SessionLimitReached,
        sessionguard_core::Error::StepUpRequired => SessionRejection::StepUpRequired,
        other => failed(other),
    }
}

fn failed(err: sessionguard_core::Error) -> SessionRejection {
    let mut chain = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(e) = source {
        chain.push_str(": ");
        chain.push_str(&e.to_string());
        source = e.source();
    }
    tracing::error!(error = %chain, "session store failure");
    SessionRejection::Unavailable
}

/// A new session for the response: its token goes into the session cookie
/// (`Set-Cookie`) when this is part of the answer; a bearer client gets
/// [`LoggedIn::token`] instead. The token is never printed.
///
/// ```
/// use axum::response::{IntoResponse, Redirect};
/// use sessionguard_axum::LoggedIn;
///
/// fn after_login(logged_in: LoggedIn) -> impl IntoResponse {
///     (logged_in, Redirect::to("/"))
/// }
/// ```
pub struct LoggedIn {
    session: Session,
    token: Token,
}

impl LoggedIn {
    /// The new session.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The new session's token, for a client that sends it as a bearer token
    /// (hand it over once; browsers get the cookie).
    pub fn token(&self) -> &Token {
        &self.token
    }

    /// The `Set-Cookie` value that carries the new session.
    pub fn cookie(&self) -> HeaderValue {
        cookie::session_cookie(&self.token)
    }
}

impl fmt::Debug for LoggedIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoggedIn")
            .field("session", &self.session)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl IntoResponseParts for LoggedIn {
    type Error = std::convert::Infallible;

    fn into_response_parts(self, mut res: ResponseParts) -> Result<ResponseParts, Self::Error> {
        res.headers_mut().append(header::SET_COOKIE, self.cookie());
        Ok(res)
    }
}

/// A logout for the response: clears the session cookie when the cookie
/// carried the session (a courtesy: the session is already revoked).
#[derive(Debug, Clone, Copy)]
pub struct LoggedOut {
    clear_cookie: bool,
}

impl IntoResponseParts for LoggedOut {
    type Error = std::convert::Infallible;

    fn into_response_parts(self, mut res: ResponseParts) -> Result<ResponseParts, Self::Error> {
        if self.clear_cookie {
            res.headers_mut()
                .append(header::SET_COOKIE, cookie::clear_cookie());
        }
        Ok(res)
    }
}
