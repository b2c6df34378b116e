//! # sessionguard-axum
//!
//! sessionguard inside an axum app: a tower [`SessionLayer`] that checks every
//! request's credential once, and extractors that hand the result to handlers —
//! [`Session`] (401 with the reason without one), `Option<Session>`, the role
//! guard [`RequireRole`] and the step-up guard [`StepUp`]. The rules are
//! sessionguard's own, applied by the same code as the server's
//! (`sessionguard-http`, `sessionguard-core`): idle and absolute timeouts,
//! revocation with a reason, the credential epoch, the session cookie
//! `__Host-sg_session`, the cross-site rule and the anti-CSRF token.
//!
//! Two ways to decide:
//!
//! - [`InProcess`]: the app is its own session authority — an
//!   [`Engine`](sessionguard_core::Engine) over any store in the app's own
//!   process: [`MemoryStore`](sessionguard_core::MemoryStore), the embedded
//!   SQLite store, or Redis shared with `sessionguard serve` nodes (sessions
//!   shared, revocation seen by every process at its next check). Helpers for
//!   apps with their own login form: [`InProcess::log_in`],
//!   [`InProcess::log_out`], [`InProcess::password_changed`].
//! - [`Remote`]: the app asks a running `sessionguard serve` about each
//!   request (its forward-auth endpoint, `GET /v1/auth`, over kept-alive
//!   connections). No cache by default, so a logout anywhere takes effect on
//!   the next request; [`Remote::with_cache`] relaxes exactly that.
//!
//! ## A request's life
//!
//! 1. The layer refuses oversized headers (431), then finds the credential:
//!    `Authorization: Bearer` (a session token, an access token when accepted,
//!    or a personal API token) or the session cookie.
//! 2. A cookie-authenticated request whose method can change state must come
//!    from the public origin (`Sec-Fetch-Site`, else `Origin`) — checked before
//!    any store call — and carry the session's anti-CSRF token (the
//!    `X-CSRF-Token` header, or a `csrf_token` field of a form body).
//! 3. The check: one store read in the steady state (the touch coalesced); a
//!    cookie due for renewal is rotated, and the layer sets the new one on the
//!    response.
//! 4. Extractors take the outcome; a refusal is an RFC 9457 problem document
//!    with a stable `code` ([`SessionRejection`]).
//!
//! ```no_run
//! use axum::{Router, routing::{get, post}};
//! use axum::http::HeaderMap;
//! use axum::response::{IntoResponse, Redirect};
//! use sessionguard_axum::{InProcess, LoggedIn, Session, SessionRejection};
//! use sessionguard_core::{Engine, MemoryStore, Policy, UserId};
//!
//! type Sessions = InProcess<MemoryStore>;
//!
//! async fn login(
//!     axum::extract::State(sessions): axum::extract::State<Sessions>,
//!     headers: HeaderMap,
//! ) -> Result<impl IntoResponse, SessionRejection> {
//!     // ... the app verifies the user's password itself, then:
//!     let user = UserId::new("alice").unwrap();
//!     let logged_in: LoggedIn = sessions.log_in(&user, &headers, None).await?;
//!     Ok((logged_in, Redirect::to("/")))
//! }
//!
//! async fn home(session: Session) -> String {
//!     format!("hello {}", session.user_id())
//! }
//!
//! # async fn run() {
//! let engine = Engine::new(MemoryStore::new(), Policy::default()).unwrap();
//! let sessions = InProcess::new(engine, "https://app.example");
//! let app = Router::new()
//!     .route("/", get(home))
//!     .route("/login", post(login))
//!     .layer(sessions.layer())
//!     .with_state(sessions);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await.unwrap();
//! axum::serve(listener, app).await.unwrap();
//! # }
//! ```
//!
//! A runnable site with a page behind login: `cargo run -p sessionguard-axum
//! --example site`.

// Library code states its invariants with `expect`; tests may unwrap.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod in_process;
mod layer;
mod remote;
mod session;

pub use in_process::{InProcess, LoggedIn, LoggedOut};
#[doc(hidden)]
pub use layer::Checked;
pub use layer::{Authority, FORM_LIMIT, SessionLayer, SessionService};
pub use remote::{DEFAULT_TIMEOUT, Remote};
pub use session::{RequireRole, Role, Session, SessionRejection, StepUp};
