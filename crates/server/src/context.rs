//! Per-request context: the client recorded with audit events, and the renewed
//! session cookie a request may have to carry back.
//!
//! [`RequestContextLayer`] runs around every handler (inside the panic and trace
//! layers). In one step, with no boxing:
//!
//! - it refuses a request whose headers are too large (431,
//!   [`sessionguard_http::cookie::headers_too_large`]) before anything reads them;
//! - it sets the request's client (user agent, TCP peer address) for the audit
//!   events the engine records while serving it
//!   ([`sessionguard_core::audit::with_client_from`], built only if an event is
//!   recorded), and gives a request that carries cookies a [`Renewal`] slot. When
//!   a cookie-authenticated request finds its session due for a new token
//!   (periodic renewal, a privilege change), the extractor puts the new token in
//!   the slot, and this middleware sets it as the session cookie on whatever
//!   response the handler produced — unless the handler set or cleared the
//!   cookie itself (login, logout, password change, step-up), which then wins;
//! - it marks every answer `Cache-Control: no-store` unless the handler chose
//!   otherwise (the JWKS is cacheable).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};

use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use pin_project_lite::pin_project;
use sessionguard_core::audit::{self, ClientScope};
use sessionguard_core::{ClientInfo, Token};
use sessionguard_http::cookie::{self, headers_too_large};
use tower::{Layer, Service};

use crate::error::ApiError;

/// Where an extractor leaves a session token that replaced the presented one.
#[derive(Debug, Clone, Default)]
pub struct Renewal(Arc<Mutex<Option<Token>>>);

impl Renewal {
    /// Leaves `token` to be set as the session cookie on the response.
    pub fn set(&self, token: Token) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(token);
    }

    fn take(&self) -> Option<Token> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// The client of a request: its user agent and TCP peer address
/// (`X-Forwarded-For` is not trusted; the address is absent when the router is
/// called without a connection, as in tests).
pub fn client_of(headers: &HeaderMap, peer: Option<&ConnectInfo<SocketAddr>>) -> ClientInfo {
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| std::str::from_utf8(v.as_bytes()).ok());
    ClientInfo::new(user_agent, peer.map(|ConnectInfo(addr)| addr.ip()))
}

/// The layer of [`RequestContext`]: see the module documentation.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestContextLayer;

impl<S> Layer<S> for RequestContextLayer {
    type Service = RequestContext<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestContext { inner }
    }
}

/// The middleware: see the module documentation.
#[derive(Debug, Clone)]
pub struct RequestContext<S> {
    inner: S,
}

impl<S> Service<Request> for RequestContext<S>
where
    S: Service<Request>,
    S::Response: IntoResponse,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ContextFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        if headers_too_large(req.headers()) {
            return ContextFuture::Refused {
                response: Some(ApiError::HeadersTooLarge.into_response()),
            };
        }
        // The client is built only if the request records an audit event: a cheap
        // copy of the header value (reference-counted bytes) and the address now.
        let user_agent = req.headers().get(header::USER_AGENT).cloned();
        let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().copied();
        let client = move || {
            let ua = user_agent
                .as_ref()
                .and_then(|v| std::str::from_utf8(v.as_bytes()).ok());
            ClientInfo::new(ua, peer.map(|ConnectInfo(addr)| addr.ip()))
        };
        // Only a cookie can be renewed in passing.
        let renewal = req
            .headers()
            .contains_key(header::COOKIE)
            .then(Renewal::default);
        if let Some(slot) = &renewal {
            req.extensions_mut().insert(slot.clone());
        }
        ContextFuture::Running {
            inner: audit::with_client_from(client, self.inner.call(req)),
            renewal,
        }
    }
}

pin_project! {
    /// The future of [`RequestContext`].
    #[project = ContextProj]
    pub enum ContextFuture<F> {
        /// Refused before the handler ran.
        Refused { response: Option<Response> },
        /// The handler's future, with the client in scope.
        Running {
            #[pin]
            inner: ClientScope<F>,
            renewal: Option<Renewal>,
        },
    }
}

impl<F, R, E> Future for ContextFuture<F>
where
    F: Future<Output = Result<R, E>>,
    R: IntoResponse,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let res = match self.project() {
            ContextProj::Refused { response } => response.take().unwrap_or_else(|| {
                ApiError::Internal("request context polled after completion".into()).into_response()
            }),
            ContextProj::Running { inner, renewal } => {
                let res = ready!(inner.poll(cx))?.into_response();
                match renewal.take().and_then(|slot| slot.take()) {
                    Some(token) => with_renewed_cookie(res, &token),
                    None => res,
                }
            }
        };
        Poll::Ready(Ok(no_store(res)))
    }
}

/// Sets `token` as the session cookie on `res`, unless the handler set or
/// cleared the cookie itself.
fn with_renewed_cookie(mut res: Response, token: &Token) -> Response {
    if !cookie::sets_session_cookie(res.headers()) {
        res.headers_mut()
            .append(header::SET_COOKIE, cookie::session_cookie(token));
    }
    res
}

/// Marks `res` `Cache-Control: no-store` unless it says otherwise: answers carry
/// session state and tokens, which no cache may keep.
pub(crate) fn no_store(mut res: Response) -> Response {
    res.headers_mut()
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    res
}
