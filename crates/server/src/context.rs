//! Per-request context: the client recorded with audit events, and the renewed
//! session cookie a request may have to carry back.
//!
//! [`request_context`] runs around every handler. It sets the request's client
//! (user agent, TCP peer address) for the audit events the engine records while
//! serving it ([`sessionguard_core::audit::with_client`]), and gives the request a
//! [`Renewal`] slot. When a cookie-authenticated request finds its session due for
//! a new token (periodic renewal, a privilege change), the extractor puts the new
//! token in the slot, and this middleware sets it as the session cookie on
//! whatever response the handler produced — unless the handler set or cleared the
//! cookie itself (login, logout, password change, step-up), which then wins.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sessionguard_core::{ClientInfo, Token, audit};

use crate::error::ApiError;
use crate::extract::SESSION_COOKIE;

/// The session cookie's attributes. No `Max-Age`: a browser-session cookie; the
/// server-side idle and absolute deadlines are the control, never the cookie's life.
pub(crate) const COOKIE_ATTRIBUTES: &str = "Path=/; Secure; HttpOnly; SameSite=Lax";

/// The `Set-Cookie` value carrying `token` in the session cookie.
pub(crate) fn session_cookie(token: &Token) -> Result<HeaderValue, ApiError> {
    let token = token.reveal();
    HeaderValue::try_from(format!(
        "{SESSION_COOKIE}={}; {COOKIE_ATTRIBUTES}",
        token.as_str()
    ))
    // Tokens are base64url: always a valid header value.
    .map_err(|_| ApiError::Internal("session token is not a header value".into()))
}

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

/// Middleware: see the module documentation.
pub async fn request_context(mut req: Request, next: Next) -> Response {
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
    let mut res = audit::with_client_from(client, next.run(req)).await;
    if let Some(token) = renewal.and_then(|slot| slot.take()) {
        let handler_set_cookie = res.headers().get_all(header::SET_COOKIE).iter().any(|v| {
            v.as_bytes()
                .strip_prefix(SESSION_COOKIE.as_bytes())
                .is_some_and(|rest| rest.starts_with(b"="))
        });
        if !handler_set_cookie {
            match session_cookie(&token) {
                Ok(v) => {
                    res.headers_mut().append(header::SET_COOKIE, v);
                }
                Err(e) => return e.into_response(),
            }
        }
    }
    res
}
