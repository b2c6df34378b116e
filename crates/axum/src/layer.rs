//! [`SessionLayer`]: checks every request's credential once, leaves the result
//! for the extractors, and sets a renewed session cookie on the response.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Request, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Limited};
use sessionguard_http::{CredentialSource, cookie, csrf};
use tower::{Layer, Service};

use crate::session::{Authentication, Session, SessionRejection};

/// The largest form body read for its `csrf_token` field, in bytes.
pub const FORM_LIMIT: usize = 64 * 1024;

mod private {
    pub trait Sealed {}
}
pub(crate) use private::Sealed;

/// Who decides about sessions: [`InProcess`](crate::InProcess) (an engine over
/// any store, in this process) or [`Remote`](crate::Remote) (a running
/// sessionguard server). Not implementable outside this crate.
pub trait Authority: Sealed + Clone + Send + Sync + 'static {
    #[doc(hidden)]
    fn authenticate(
        &self,
        parts: &Parts,
    ) -> impl Future<Output = Result<Checked, SessionRejection>> + Send;
}

/// A request's live credential, and the renewed session cookie to set.
#[doc(hidden)]
#[derive(Debug)]
pub struct Checked {
    pub(crate) session: Session,
    pub(crate) renewed: Option<HeaderValue>,
}

/// The tower layer: in front of the routes that use [`Session`],
/// `Option<Session>`, [`RequireRole`](crate::RequireRole) or
/// [`StepUp`](crate::StepUp).
///
/// For each request it:
///
/// 1. refuses headers over 16 KiB in all, or 8 KiB for one `Cookie` or
///    `Authorization` (431);
/// 2. checks the credential — the session cookie, or `Authorization: Bearer`
///    with a session token, an access token or a personal API token — with its
///    [`Authority`], once; a cookie-authenticated request whose method can
///    change state must come from the public origin (Fetch Metadata, then
///    `Origin`) and carry the session's anti-CSRF token in the `X-CSRF-Token`
///    header or, for an `application/x-www-form-urlencoded` body (read up to
///    [`FORM_LIMIT`] bytes), a `csrf_token` field;
/// 3. leaves the outcome for the extractors, which refuse with its reason;
/// 4. sets a renewed session cookie (periodic renewal, a privilege change) on
///    the response, unless the handler set or cleared the cookie itself.
///
/// ```no_run
/// use axum::{Router, routing::get};
/// use sessionguard_axum::{InProcess, Session};
/// use sessionguard_core::{Engine, MemoryStore, Policy};
///
/// let engine = Engine::new(MemoryStore::new(), Policy::default()).unwrap();
/// let sessions = InProcess::new(engine, "https://app.example");
/// let app: Router = Router::new()
///     .route("/me", get(|s: Session| async move { s.user_id().to_string() }))
///     .layer(sessions.layer());
/// ```
#[derive(Clone)]
pub struct SessionLayer<A> {
    authority: A,
    require_csrf_token: bool,
}

impl<A: fmt::Debug> fmt::Debug for SessionLayer<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionLayer")
            .field("authority", &self.authority)
            .field("require_csrf_token", &self.require_csrf_token)
            .finish()
    }
}

impl<A: Authority> SessionLayer<A> {
    /// The layer over `authority`, with every check on.
    pub fn new(authority: A) -> Self {
        SessionLayer {
            authority,
            require_csrf_token: true,
        }
    }

    /// **Weakens cross-site protection**: cookie-authenticated requests that can
    /// change state no longer need the session's anti-CSRF token; only the
    /// origin rule (Fetch Metadata, `Origin`) protects them. For apps that
    /// check the token themselves ([`Session::verify_csrf`]) in a way this
    /// layer cannot see (multipart forms, for example).
    #[must_use]
    pub fn insecure_skip_csrf_token(mut self) -> Self {
        self.require_csrf_token = false;
        self
    }
}

impl<A: Clone, I> Layer<I> for SessionLayer<A> {
    type Service = SessionService<A, I>;

    fn layer(&self, inner: I) -> Self::Service {
        SessionService {
            authority: self.authority.clone(),
            require_csrf_token: self.require_csrf_token,
            inner,
        }
    }
}

/// The service of [`SessionLayer`].
#[derive(Clone)]
pub struct SessionService<A, I> {
    authority: A,
    require_csrf_token: bool,
    inner: I,
}

impl<A: fmt::Debug, I> fmt::Debug for SessionService<A, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionService")
            .field("authority", &self.authority)
            .finish_non_exhaustive()
    }
}

impl<A, I> Service<Request<Body>> for SessionService<A, I>
where
    A: Authority,
    I: Service<Request<Body>, Error = Infallible> + Clone + Send + 'static,
    I::Response: IntoResponse,
    I::Future: Send,
{
    type Response = Response;
    type Error = Infallible;
    // One allocation per request: the future awaits the check, then the inner
    // service, and cannot be named without it.
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        // The clone that was driven to readiness serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let authority = self.authority.clone();
        let require_csrf_token = self.require_csrf_token;
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            if cookie::headers_too_large(&parts.headers) {
                return Ok(SessionRejection::HeadersTooLarge.into_response());
            }
            let (outcome, renewed, body) = match authority.authenticate(&parts).await {
                Ok(Checked { session, renewed }) => {
                    let needs_token = require_csrf_token
                        && session.source() == CredentialSource::Cookie
                        && csrf::is_unsafe(&parts.method);
                    if needs_token {
                        match csrf_token(&session, &parts.headers, body).await {
                            Ok((true, body)) => (Ok(session), renewed, body),
                            Ok((false, body)) => {
                                (Err(SessionRejection::CsrfTokenInvalid), renewed, body)
                            }
                            Err(refusal) => return Ok(refusal.into_response()),
                        }
                    } else {
                        (Ok(session), renewed, body)
                    }
                }
                Err(refusal) => (Err(refusal), None, body),
            };
            parts.extensions.insert(Authentication(outcome));
            let res = inner
                .call(Request::from_parts(parts, body))
                .await?
                .into_response();
            Ok(match renewed {
                Some(cookie) => with_renewed_cookie(res, cookie),
                None => res,
            })
        })
    }
}

/// Whether the request carries `session`'s anti-CSRF token: in the
/// `X-CSRF-Token` header, else in the `csrf_token` field of a form body (read
/// whole, up to [`FORM_LIMIT`] bytes, and handed on). `Err` only for a form
/// body that cannot be read within the limit.
async fn csrf_token(
    session: &Session,
    headers: &HeaderMap,
    body: Body,
) -> Result<(bool, Body), SessionRejection> {
    if let Some(v) = headers.get(csrf::CSRF_HEADER) {
        let ok = v.to_str().is_ok_and(|t| session.verify_csrf(t));
        return Ok((ok, body));
    }
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form {
        return Ok((false, body));
    }
    let bytes: Bytes = Limited::new(body, FORM_LIMIT)
        .collect()
        .await
        .map_err(|_| SessionRejection::PayloadTooLarge)?
        .to_bytes();
    let ok = form_field(&bytes, "csrf_token").is_some_and(|t| session.verify_csrf(&t));
    Ok((ok, Body::from(bytes)))
}

/// The first value of `name` in a form body.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .ok()?
        .into_iter()
        .find_map(|(k, v)| (k == name).then_some(v))
}

/// Sets `cookie` on `res` unless the handler set or cleared the session
/// cookie itself (a login, a logout, a password change win).
fn with_renewed_cookie(mut res: Response, cookie: HeaderValue) -> Response {
    if !cookie::sets_session_cookie(res.headers()) {
        res.headers_mut().append(header::SET_COOKIE, cookie);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields() {
        assert_eq!(
            form_field(b"a=1&csrf_token=x%2By&csrf_token=z", "csrf_token").as_deref(),
            Some("x+y")
        );
        assert_eq!(form_field(b"a=1", "csrf_token"), None);
        assert_eq!(form_field(b"%zz", "csrf_token"), None);
    }
}
