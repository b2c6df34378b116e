//! Remote mode: the app asks a running `sessionguard serve` about each
//! request, through its forward-auth endpoint (`GET /v1/auth`), over
//! kept-alive connections.
//!
//! **No cache by default**: every request is asked about, so a logout, a
//! revocation or a password change anywhere takes effect on the app's next
//! request. [`Remote::with_cache`] remembers positive answers for a short
//! time instead, and relaxes exactly that: a credential ended elsewhere keeps
//! working on this app until its remembered answer expires (at most the
//! cache's time to live). Only requests whose method cannot change state are
//! answered from the cache, so a state-changing request always gets the
//! server's answer (the cross-site rule included).

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::http::request::Parts;
use axum::http::uri::{InvalidUri, PathAndQuery, Uri};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, header};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use sessionguard_core::{
    ClientInfo, Clock, Identity, Reason, Rejection, Revocation, SystemClock, Timestamp, TokenId,
    UserId,
};
use sessionguard_http::forward::{self, MISSING_CREDENTIALS};
use sessionguard_http::{Credential, CredentialSource, cookie, csrf};
use sha2::{Digest, Sha256};

use crate::layer::{Authority, Checked, Sealed, SessionLayer};
use crate::session::{Described, Session, SessionRejection};

/// How long one question to the server may take before the request is refused
/// (503), by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The remote [`Authority`]: a sessionguard server's forward-auth endpoint.
/// Cheap to clone (one shared connection pool).
///
/// ```no_run
/// use axum::{Router, routing::get};
/// use sessionguard_axum::{Remote, Session};
///
/// let sessions = Remote::new("http://127.0.0.1:8080").unwrap();
/// let app: Router = Router::new()
///     .route("/me", get(|s: Session| async move { s.user_id().to_string() }))
///     .layer(sessions.layer());
/// ```
#[derive(Clone)]
pub struct Remote<C = SystemClock> {
    // The client is a handle on one shared pool: clones share connections.
    client: Client<HttpConnector, Empty<Bytes>>,
    auth: Uri,
    timeout: Duration,
    cache: Option<Arc<Cache>>,
    clock: C,
}

impl<C> fmt::Debug for Remote<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote")
            .field("auth", &self.auth)
            .field("timeout", &self.timeout)
            .field("cache", &self.cache.as_ref().map(|c| c.ttl))
            .finish()
    }
}

impl Remote<SystemClock> {
    /// The server at `base` (`http://host:port`, reached over a trusted network:
    /// this client speaks plain HTTP/1.1), asked at `base/v1/auth`.
    pub fn new(base: &str) -> Result<Self, InvalidUri> {
        Self::with_clock(base, SystemClock)
    }
}

impl<C: Clock + Clone> Remote<C> {
    /// [`Remote::new`] with the clock that dates answers (and expires cached
    /// ones).
    pub fn with_clock(base: &str, clock: C) -> Result<Self, InvalidUri> {
        let auth: Uri = format!("{}/v1/auth", base.trim_end_matches('/')).parse()?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        // Kept-alive connections, reused across requests.
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Ok(Remote {
            client,
            auth,
            timeout: DEFAULT_TIMEOUT,
            cache: None,
            clock,
        })
    }

    /// Remembers the server's positive answers for `ttl`, for at most
    /// `capacity` credentials. **Relaxes revocation**: a logout, revocation or
    /// password change elsewhere takes effect on this app only once the
    /// remembered answer expires (at most `ttl` later). Requests that can
    /// change state are always asked about.
    #[must_use]
    pub fn with_cache(mut self, ttl: Duration, capacity: usize) -> Self {
        self.cache = Some(Arc::new(Cache {
            ttl,
            capacity,
            entries: Mutex::new(HashMap::new()),
        }));
        self
    }

    /// How long one question may take (default [`DEFAULT_TIMEOUT`]); past it
    /// the request is refused with 503.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The layer that checks every request with this authority.
    pub fn layer(&self) -> SessionLayer<Self> {
        SessionLayer::new(self.clone())
    }
}

impl<C> Sealed for Remote<C> {}

impl<C: Clock + Clone> Authority for Remote<C> {
    async fn authenticate(&self, parts: &Parts) -> Result<Checked, SessionRejection> {
        let shared = self;
        let credential = match Credential::from_headers(&parts.headers) {
            Ok(Some(c)) => c,
            // Nothing to ask about.
            Ok(None) => {
                return Err(SessionRejection::Unauthenticated {
                    rejection: None,
                    bearer: false,
                });
            }
            Err(unreadable) => {
                return Err(SessionRejection::rejected(
                    Rejection::INVALID,
                    unreadable.source == CredentialSource::Bearer,
                ));
            }
        };
        let cacheable = !csrf::is_unsafe(&parts.method);
        let key = shared.cache.as_ref().map(|_| cache_key(&credential));
        let now = shared.clock.now();
        if let (true, Some(cache), Some(key)) = (cacheable, &shared.cache, &key)
            && let Some(session) = cache.get(key, now)
        {
            return Ok(Checked {
                session,
                renewed: None,
            });
        }
        let question = shared.question(&credential, parts)?;
        let answer = tokio::time::timeout(shared.timeout, shared.client.request(question)).await;
        let answer = match answer {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => {
                tracing::error!(error = %e, server = %shared.auth, "sessionguard server unreachable");
                return Err(SessionRejection::Unavailable);
            }
            Err(_) => {
                tracing::error!(server = %shared.auth, "sessionguard server did not answer in time");
                return Err(SessionRejection::Unavailable);
            }
        };
        let (head, body) = answer.into_parts();
        // Read whole, so that the connection goes back to the pool.
        let body = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                tracing::error!(error = %e, "sessionguard server's answer was cut off");
                return Err(SessionRejection::Unavailable);
            }
        };
        let checked = read_answer(head.status, &head.headers, &body, &credential, now)?;
        if let (true, Some(cache), Some(key), None) =
            (cacheable, &shared.cache, key, &checked.renewed)
        {
            cache.insert(key, checked.session.clone(), now);
        }
        Ok(checked)
    }
}

impl<C> Remote<C> {
    /// `GET /v1/auth` about this request: its credential (only the session
    /// cookie of its cookies), method, origin headers and URL.
    fn question(
        &self,
        credential: &Credential,
        parts: &Parts,
    ) -> Result<Request<Empty<Bytes>>, SessionRejection> {
        let mut q = Request::builder()
            .method(Method::GET)
            .uri(self.auth.clone());
        let h = q.headers_mut().ok_or(SessionRejection::Unavailable)?;
        let token = credential.token();
        let value = match credential.source() {
            CredentialSource::Cookie => format!("{}={token}", cookie::SESSION_COOKIE),
            _ => format!("Bearer {token}"),
        };
        let value = HeaderValue::try_from(value)
            .map_err(|_| SessionRejection::rejected(Rejection::INVALID, credential.is_bearer()))?;
        let name = match credential.source() {
            CredentialSource::Cookie => header::COOKIE,
            _ => header::AUTHORIZATION,
        };
        h.insert(name, value);
        if let Ok(method) = HeaderValue::from_str(parts.method.as_str()) {
            h.insert(forward::X_FORWARDED_METHOD, method);
        }
        for name in [header::ORIGIN, csrf::SEC_FETCH_SITE] {
            if let Some(v) = parts.headers.get(&name) {
                h.insert(name, v.clone());
            }
        }
        if let Some(host) = parts.headers.get(header::HOST) {
            h.insert(forward::X_FORWARDED_HOST, host.clone());
        }
        if let Some(Ok(uri)) = parts
            .uri
            .path_and_query()
            .map(PathAndQuery::as_str)
            .map(HeaderValue::from_str)
        {
            h.insert(forward::X_FORWARDED_URI, uri);
        }
        q.body(Empty::new())
            .map_err(|_| SessionRejection::Unavailable)
    }
}

/// The server's answer as a [`Checked`] or a refusal.
fn read_answer(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    credential: &Credential,
    now: Timestamp,
) -> Result<Checked, SessionRejection> {
    let text = |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    match status {
        StatusCode::OK => {
            let user = headers
                .get(forward::X_AUTH_USER_ID)
                .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
                .and_then(|u| UserId::new(u).ok())
                .ok_or_else(|| malformed("no valid X-Auth-User-Id"))?;
            let username = headers
                .get(forward::X_AUTH_USERNAME)
                .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
                .map(str::to_owned);
            let roles = text(&forward::X_AUTH_ROLES)
                .unwrap_or_default()
                .split(',')
                .filter(|r| !r.is_empty())
                .map(str::to_owned)
                .collect();
            let session_id = text(&forward::X_AUTH_SESSION_ID).and_then(|s| TokenId::parse(s).ok());
            let step_up_until = text(&forward::X_AUTH_STEP_UP_UNTIL).and_then(parse_time);
            let csrf_token = text(&forward::X_AUTH_CSRF_TOKEN).map(str::to_owned);
            let api_token = match (session_id, credential.form()) {
                (None, sessionguard_http::TokenForm::Api) => {
                    TokenId::parse(api_token_id(credential.token())?).ok()
                }
                _ => None,
            };
            let renewed = headers
                .get_all(header::SET_COOKIE)
                .iter()
                .find(|v| cookie::is_session_cookie(v))
                .cloned();
            let session = Session::told(
                Described {
                    user_id: user,
                    identity: Arc::new(Identity::new(username, roles)),
                    session_id,
                    api_token,
                    step_up_until,
                    checked_at: now,
                    source: credential.source(),
                },
                csrf_token,
            );
            Ok(Checked { session, renewed })
        }
        StatusCode::UNAUTHORIZED => {
            let bearer = text(&header::WWW_AUTHENTICATE)
                .is_some_and(|c| c.contains("error=\"invalid_token\""));
            let code = text(&forward::X_AUTH_REASON).unwrap_or("invalid_token");
            if code == MISSING_CREDENTIALS {
                return Err(SessionRejection::Unauthenticated {
                    rejection: None,
                    bearer,
                });
            }
            Err(SessionRejection::rejected(rejection_of(code, body), bearer))
        }
        StatusCode::FORBIDDEN if text(&forward::X_AUTH_REASON) == Some("cross_origin_request") => {
            Err(SessionRejection::CrossOrigin)
        }
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => Err(SessionRejection::HeadersTooLarge),
        other => {
            tracing::error!(
                status = other.as_u16(),
                "unexpected answer from the sessionguard server"
            );
            Err(SessionRejection::Unavailable)
        }
    }
}

/// The rejection a 401 describes: the reason, and from the problem document
/// when the session ended and who displaced it.
fn rejection_of(code: &str, body: &[u8]) -> Rejection {
    #[derive(Deserialize)]
    struct Problem {
        ended_at: Option<String>,
        displaced_by: Option<Displacer>,
    }
    #[derive(Deserialize)]
    struct Displacer {
        user_agent: Option<String>,
        ip: Option<String>,
    }
    let reason = Reason::from_code(code).unwrap_or(Reason::InvalidToken);
    let problem: Option<Problem> = serde_json::from_slice(body).ok();
    let at = problem
        .as_ref()
        .and_then(|p| p.ended_at.as_deref())
        .and_then(parse_time);
    let Some(at) = at.filter(|_| reason != Reason::InvalidToken) else {
        return Rejection::INVALID;
    };
    let mut rejection = Rejection::ended(Revocation { reason, at });
    rejection.displaced_by = problem.and_then(|p| p.displaced_by).map(|d| {
        let ip = d.ip.as_deref().and_then(|ip| ip.parse::<IpAddr>().ok());
        Box::new(ClientInfo::new(d.user_agent.as_deref(), ip))
    });
    rejection
}

/// An RFC 3339 instant.
fn parse_time(s: &str) -> Option<Timestamp> {
    let t = humantime::parse_rfc3339_weak(s).ok()?;
    let ms = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
    Some(Timestamp::from_millis(i64::try_from(ms).ok()?))
}

/// The public id of a personal API token (its selector), from the token text.
fn api_token_id(token: &str) -> Result<&str, SessionRejection> {
    // `sga_` then the id's 22 characters: the public selector (the rest is the
    // secret, never kept).
    token
        .get(4..4 + TokenId::TEXT_LEN)
        .ok_or(SessionRejection::Unavailable)
}

fn malformed(what: &'static str) -> SessionRejection {
    tracing::error!(
        problem = what,
        "malformed answer from the sessionguard server"
    );
    SessionRejection::Unavailable
}

/// Remembered positive answers, by a digest of the credential (never the
/// credential itself).
struct Cache {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<[u8; 32], (Timestamp, Session)>>,
}

impl Cache {
    fn get(&self, key: &[u8; 32], now: Timestamp) -> Option<Session> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        match entries.get(key) {
            Some((until, session)) if now < *until => Some(session.clone()),
            _ => None,
        }
    }

    fn insert(&self, key: [u8; 32], session: Session, now: Timestamp) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.capacity {
            entries.retain(|_, (until, _)| now < *until);
            if entries.len() >= self.capacity {
                return;
            }
        }
        entries.insert(key, (now.saturating_add(self.ttl), session));
    }
}

fn cache_key(credential: &Credential) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"sessionguard-axum/remote-cache/v1\0");
    h.update([u8::from(credential.is_bearer())]);
    h.update(credential.token().as_bytes());
    h.finalize().into()
}
