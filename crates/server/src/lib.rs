//! # sessionguard-server
//!
//! The HTTP face of the sessionguard engine: a REST/JSON API under `/v1` with a
//! cookie flow for browsers, a bearer flow for APIs and an admin ("sidecar") API,
//! plus the `sessionguard` binary.
//!
//! A request goes: limits (headers, body) → route → extractors (credential,
//! CSRF, body) → handler → [`sessionguard_core::Engine`] → [`Store`]; every
//! failure becomes an [`ApiError`] problem document, logged once in [`error`].
//!
//! | endpoint | auth | does |
//! |---|---|---|
//! | `POST /v1/login` | none (origin-checked) | password → new session in `__Host-sg_session`; revokes a presented token |
//! | `POST /v1/token` | none (origin-checked) | OAuth token endpoint: `password` or `refresh_token` grant → access token (JWT) + refresh token; errors in RFC 6749 form |
//! | `GET /v1/session` | session | current session with the user's roles; extends the idle deadline; `?require=step_up` → 403 unless recently authenticated |
//! | `GET /v1/session/status` | session | current session; does not extend it |
//! | `GET /v1/auth` (any method) | session, access or API token | forward-auth for reverse proxies: 200 with `X-Auth-*` identity headers, or 401 with `X-Auth-Reason` (`?redirect=login`: 302 to the login page); one session check ([`routes::forward`]) |
//! | `POST /v1/session/elevate` | session | step-up: password → new token (old one ends, `privilege_changed`), recently authenticated for `step_up_ttl` |
//! | `GET /v1/events` | session | the user's own recent security events |
//! | `POST /v1/logout` | session or refresh token | revokes it (`logged_out`) with its refresh tokens, clears the cookie |
//! | `POST /v1/password` | session | new password; every session ends (`password_changed`), this device gets a new one (a new token pair for access-token clients) |
//! | `GET /v1/sessions` | session | the user's live sessions |
//! | `DELETE /v1/sessions/{id}` | session | ends one of them (`revoked_by_user`) |
//! | `POST /v1/sessions/revoke-others` | session | ends all but this one (`signed_out_everywhere`) |
//! | `POST /v1/api-tokens` | session | creates a personal API token (`sga_`), shown once |
//! | `GET /v1/api-tokens` | session | the user's live API tokens, without secrets |
//! | `DELETE /v1/api-tokens/{id}` | session | revokes one of them (`revoked_by_user`) |
//! | `POST /v1/introspect` | introspection or admin | RFC 7662: is a token (any kind) active? Never records activity |
//! | `POST /v1/revoke` | none (possession) | RFC 7009: ends a token of any kind; always 200 |
//! | `GET /.well-known/jwks.json` | none | the public keys of access tokens (cacheable 5 min) |
//! | `POST /v1/admin/users` | admin | creates a user with a password |
//! | `GET /v1/admin/users/{id}` | admin | a user's profile and roles |
//! | `POST /v1/admin/users/{id}` | admin | changes a user's profile and roles; their sessions rotate (`privilege_changed`) |
//! | `GET /v1/admin/events` | admin | the audit log, filtered by user and time, paged |
//! | `POST /v1/admin/sessions` | admin | sidecar: a session (and its token) for an app's user |
//! | `POST /v1/admin/users/{id}/revoke` | admin | ends every session of a user |
//! | `GET /v1/admin/users/{id}/sessions` | admin | a user's live sessions |
//! | `GET /healthz` | none | liveness: the process serves HTTP (the store is not asked) |
//! | `GET /readyz` | none | readiness: the store answers and, on Redis, evicts nothing; else 503 |
//! | `GET /metrics` | admin | Prometheus metrics ([`metrics`]); without authentication on `metrics_listen` |
//! | `GET /v1/openapi.json` | none | the OpenAPI 3.1 document of this API ([`openapi`]) |
//!
//! The web pages for people — `/login`, `/account` and its forms, `/logout`, and
//! the idle-timeout warning script under `/static/` — are HTML over the same
//! functions and rules: see [`pages`].
//!
//! "Session" means the session cookie or `Authorization: Bearer <token>` (bearer
//! wins), where the bearer token is a session token (`sgs_…`) or an access token
//! (a JWT from `/v1/token`); cookie-authenticated unsafe requests also need the
//! origin check and the `X-CSRF-Token` header ([`csrf`]). "Admin" means
//! `Authorization: Bearer <admin_token>`; "introspection" means one of the
//! configured `introspection_tokens` the same way.
//!
//! Access tokens are checked here against their session at every request, so a
//! logout ends them at once on this server. A resource server verifying them
//! offline with the JWKS accepts one until its `exp` (minutes); one that must
//! know at once uses `/v1/introspect` ([`access`]).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use sessionguard_core::{MemoryStore, SystemClock};
//! use sessionguard_server::{AppState, Config, Overrides};
//!
//! let config = Config::from_toml("", |_| None, &Overrides::default()).unwrap();
//! let state = AppState::new(&config, MemoryStore::new(), SystemClock).unwrap();
//! let listener = tokio::net::TcpListener::bind(config.listen).await?;
//! sessionguard_server::run(listener, state, std::future::pending()).await
//! # }
//! ```

pub mod access;
pub mod audit_log;
/// The session cookie: name, attributes, parsing, building, clearing, header
/// limits (shared with the middleware: [`sessionguard_http::cookie`]).
pub use sessionguard_http::cookie;
pub mod config;
pub mod conn;
pub mod context;
pub mod csrf;
pub mod error;
pub mod extract;
pub mod keys;
pub mod metrics;
pub mod openapi;
pub mod pages;
pub mod passwords;
pub mod policy_check;
pub mod routes;
pub mod shared_keys;
pub mod state;

use std::any::Any;
use std::future::Future;
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};

use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, any, delete, get, post};
use sessionguard_core::{Clock, Password, PasswordError, Store, SystemClock, TokenId, UserId};
use sessionguard_store_sqlite::SqliteStore;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

pub use config::{AdminToken, Config, ConfigError, IntrospectionToken, Overrides};
use config::{RedisSettings, StoreConfig};
pub use error::ApiError;
pub use keys::KEY_FILE;
use keys::KeySource;
pub use metrics::Metrics;
use sessionguard_store_redis::{RedisConfig, RedisStore};
pub use state::AppState;
use std::sync::Arc;

use routes::{admin, api_tokens, events, forward, health, oauth, session};

/// How often the reaper deletes expired session records in [`run`].
pub const REAP_INTERVAL: Duration = Duration::from_secs(60);

/// How often [`run`] checks that the store can serve ([`Store::ready`]), logging
/// when that changes.
pub const STORE_CHECK_INTERVAL: Duration = Duration::from_secs(30);

/// The store `serve` runs on: the durable embedded store.
type ProductionStore = SqliteStore;

/// The forward-auth endpoint's path ([`routes::forward`]).
pub const FORWARD_AUTH_PATH: &str = "/v1/auth";

/// The database file's name in the data folder.
pub const DB_FILE: &str = "sessionguard.db";

/// The JSON API's routes: each template with its handlers. With
/// [`pages::routes`], every route the application serves
/// ([`route_templates`]).
pub fn api_routes<S: Store, C: Clock>() -> Vec<(&'static str, MethodRouter<AppState<S, C>>)> {
    vec![
        ("/healthz", get(health::healthz)),
        ("/readyz", get(health::readyz::<S, C>)),
        ("/metrics", get(health::metrics::<S, C>)),
        ("/.well-known/jwks.json", get(oauth::jwks::<S, C>)),
        (openapi::PATH, get(openapi::serve)),
        ("/v1/login", post(session::login::<S, C>)),
        ("/v1/token", post(oauth::token::<S, C>)),
        ("/v1/introspect", post(oauth::introspect::<S, C>)),
        ("/v1/revoke", post(oauth::revoke::<S, C>)),
        ("/v1/logout", post(session::logout::<S, C>)),
        ("/v1/session", get(session::current::<S, C>)),
        ("/v1/session/status", get(session::status)),
        (FORWARD_AUTH_PATH, any(forward::auth::<S, C>)),
        ("/v1/session/elevate", post(session::elevate::<S, C>)),
        ("/v1/events", get(events::own_list::<S, C>)),
        ("/v1/password", post(session::change_password::<S, C>)),
        ("/v1/sessions", get(session::list::<S, C>)),
        (
            "/v1/sessions/revoke-others",
            post(session::revoke_others::<S, C>),
        ),
        ("/v1/sessions/{id}", delete(session::revoke::<S, C>)),
        (
            "/v1/api-tokens",
            post(api_tokens::create::<S, C>).get(api_tokens::list::<S, C>),
        ),
        ("/v1/api-tokens/{id}", delete(api_tokens::revoke::<S, C>)),
        ("/v1/admin/users", post(admin::create_user::<S, C>)),
        (
            "/v1/admin/users/{id}",
            get(admin::get_user::<S, C>).post(admin::update_user::<S, C>),
        ),
        ("/v1/admin/events", get(events::admin_list::<S, C>)),
        (
            "/v1/admin/users/{id}/revoke",
            post(admin::revoke_user::<S, C>),
        ),
        (
            "/v1/admin/users/{id}/sessions",
            get(admin::list_user_sessions::<S, C>),
        ),
        ("/v1/admin/sessions", post(admin::create_session::<S, C>)),
    ]
}

/// Every route template the application serves: the JSON API's
/// ([`api_routes`]) and the pages' ([`pages::routes`]). They label the request
/// metrics.
pub fn route_templates<S: Store, C: Clock>() -> Vec<&'static str> {
    api_routes::<S, C>()
        .into_iter()
        .chain(pages::routes::<S, C>())
        .map(|(path, _)| path)
        .collect()
}

/// The complete HTTP application over `state`.
pub fn router<S: Store, C: Clock>(state: AppState<S, C>) -> Router {
    let requests = state.metrics().routes(&route_templates::<S, C>());
    api_routes::<S, C>()
        .into_iter()
        .fold(Router::new(), |router, (path, route)| {
            router.route(path, route)
        })
        .merge(pages::router::<S, C>())
        // Must follow the routes: it applies to those already added.
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .fallback(|| async { ApiError::NotFound })
        .with_state(state)
        .layer(DefaultBodyLimit::max(extract::BODY_LIMIT))
        .layer(context::RequestContextLayer)
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    // Method and route template only: never headers, query or body.
                    let path = req
                        .extensions()
                        .get::<MatchedPath>()
                        .map_or("<unmatched>", MatchedPath::as_str);
                    // Forward-auth runs before every request a proxy passes on:
                    // its span is a debug one, so the default level pays nothing
                    // for it (its refusals are logged at debug too).
                    if path == FORWARD_AUTH_PATH {
                        tracing::debug_span!("request", method = %req.method(), path)
                    } else {
                        tracing::info_span!("request", method = %req.method(), path)
                    }
                })
                // Failures are logged once, by `ApiError`.
                .on_failure(()),
        )
        .layer(CatchPanicLayer::custom(panic_response))
        // Outermost: every answer is counted, a panic's 500 included.
        .layer(metrics::RequestMetricsLayer::new(requests))
}

/// The application of the `metrics_listen` address: `GET /metrics` without
/// authentication, and nothing else.
pub fn metrics_router(metrics: Metrics) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move { health::metrics_text(&metrics) }
            }),
        )
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .fallback(|| async { ApiError::NotFound })
        .layer(context::RequestContextLayer)
}

/// Serves `state` on `listener` until `shutdown` completes, with the reaper running
/// alongside, under the `[server]` limits of `state` ([`conn::serve`]: the
/// connection cap, the header, request and keep-alive timeouts). Once
/// `shutdown` completes, new connections are refused and in-flight requests get
/// `shutdown_grace` to finish before it returns.
pub async fn run<S: Store, C: Clock>(
    listener: TcpListener,
    state: AppState<S, C>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    run_with_metrics(listener, None, state, shutdown).await
}

/// How many connections the `metrics_listen` address keeps open at once (its
/// clients are a few scrapers); its timeouts are the `[server]` ones.
pub const METRICS_CONNECTIONS: usize = 16;

/// [`run`], also serving [`metrics_router`] on `metrics_listener` if given
/// (at most [`METRICS_CONNECTIONS`] connections, the `[server]` timeouts),
/// until the main listener has shut down.
pub async fn run_with_metrics<S: Store, C: Clock>(
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    state: AppState<S, C>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let reaper = spawn_reaper(state.clone(), REAP_INTERVAL);
    let watch = spawn_store_watch(state.clone(), STORE_CHECK_INTERVAL);
    let metrics = state.metrics().clone();
    let upkeep = spawn_metrics_upkeep(metrics.clone(), metrics::UPKEEP_INTERVAL);
    let limits = state.server_config().clone();
    // The metrics listener stops after the main one has drained, so a scrape
    // still sees the drain.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let side = metrics_listener.map(|l| {
        let app = metrics_router(metrics.clone());
        let mut limits = limits.clone();
        limits.max_connections = METRICS_CONNECTIONS;
        let mut stopped = stopped;
        let until = async move {
            // An error means the sender is gone: stop as well.
            let _ = stopped.wait_for(|s| *s).await;
        };
        tokio::spawn(conn::serve(l, app, limits, metrics.clone(), until))
    });
    let served = conn::serve(listener, router(state), limits, metrics, shutdown).await;
    // No receiver left only when there is no metrics listener.
    let _ = stop.send(true);
    if let Some(side) = side {
        match side.await {
            Ok(Err(e)) => error::log_background("metrics listener", &e),
            Err(e) => error::log_background("metrics listener", &e),
            Ok(Ok(())) => {}
        }
    }
    reaper.abort();
    watch.abort();
    upkeep.abort();
    served
}

/// Spawns the task that folds the histograms' samples into their buckets every
/// `every` ([`Metrics::upkeep`]). It runs until aborted.
pub fn spawn_metrics_upkeep(metrics: Metrics, every: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            metrics.upkeep();
        }
    })
}

/// Spawns the task that checks every `every` that the store can serve
/// ([`Store::ready`]: on Redis, also that no master may evict keys). A failure is
/// logged at `error` with its cause, again at every check while it lasts, and the
/// recovery at `info`; `GET /readyz` answers 503 meanwhile. It runs until aborted.
pub fn spawn_store_watch<S: Store, C: Clock>(
    state: AppState<S, C>,
    every: Duration,
) -> JoinHandle<()> {
    // A task of its own, like the reaper: a slow store never delays a request
    // through it, and missed ticks are skipped.
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await; // the first tick is immediate; the store was just opened
        let mut failing = false;
        loop {
            ticks.tick().await;
            match state.engine().store().ready().await {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!("the session store can serve again; ready");
                }
                Ok(()) => {}
                Err(e) => {
                    failing = true;
                    tracing::error!(
                        error = %error::chain(&e),
                        "the session store cannot serve safely; not ready (GET /readyz answers 503)"
                    );
                }
            }
        }
    })
}

/// Spawns the task that deletes expired session records every `every`
/// ([`sessionguard_core::Engine::purge_expired`]). It runs until aborted.
pub fn spawn_reaper<S: Store, C: Clock>(state: AppState<S, C>, every: Duration) -> JoinHandle<()> {
    // A task of its own: purging never delays a request, and a slow purge only
    // delays the next one (missed ticks are skipped, not bunched).
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await; // the first tick is immediate
        loop {
            ticks.tick().await;
            match state.engine().purge_expired().await {
                Ok(purged) => tracing::debug!(?purged, "purged expired records"),
                Err(e) => error::log_background("reaper", &e),
            }
        }
    })
}

/// A failure of the `serve` command (exit code 1).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The data folder could not be created.
    #[error("cannot create the data folder {}", .path.display())]
    DataDir {
        /// The folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The store could not be opened, written or flushed.
    #[error("the session store failed")]
    Store(#[source] sessionguard_core::StoreError),
    /// The server state could not be built (policy profiles, audit mirror).
    #[error("cannot set up the server")]
    State(#[source] state::StateError),
    /// The demo user's password could not be set.
    #[error("cannot create the demo user")]
    Demo(#[source] PasswordError),
    /// The signing keys could not be read, created or parsed.
    #[error("cannot load or create the signing keys ({source_of_keys})")]
    Keys {
        /// Where they live.
        source_of_keys: String,
        /// Why (never key material).
        #[source]
        source: keys::KeyError,
    },
    /// A bug in start-up work.
    #[error("{0}")]
    Internal(String),
    /// Binding or serving failed.
    #[error("cannot serve on {addr}")]
    Io {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// The `serve` command: opens the store — the embedded one ([`DB_FILE`] in the
/// data folder) or Redis (`[store] kind = "redis"`) — and the signing keys (the
/// key file [`KEY_FILE`], or the set shared in Redis; created if missing),
/// optionally sets up the demo user and admin token, binds, prints
/// `sessionguard listening on http://ADDR` to stdout and serves until SIGINT or
/// SIGTERM, with the reaper and the key upkeep ([`keys`]) running alongside.
pub async fn serve(mut config: Config, demo: bool) -> Result<(), ServeError> {
    policy_check::log_violations(&config.profiles);
    if config.store == StoreConfig::Embedded {
        create_data_dir(&config.data_dir).map_err(|source| ServeError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
    }
    let io_err = |source| ServeError::Io {
        addr: config.listen,
        source,
    };
    let listener = TcpListener::bind(config.listen).await.map_err(io_err)?;
    let addr = listener.local_addr().map_err(io_err)?;
    let metrics_listener = match config.metrics_listen {
        Some(at) => {
            let io_err = |source| ServeError::Io { addr: at, source };
            Some(TcpListener::bind(at).await.map_err(io_err)?)
        }
        None => None,
    };
    let listeners = (listener, metrics_listener);
    if config.public_origin == format!("http://{}", config.listen) {
        // The default origin follows the address actually bound (port 0), and so
        // do the issuer and audience that default to it.
        let bound = format!("http://{addr}");
        for id in [&mut config.issuer, &mut config.audience] {
            if *id == config.public_origin {
                id.clone_from(&bound);
            }
        }
        config.public_origin = bound;
    }
    match config.store.clone() {
        StoreConfig::Embedded => {
            let store = open_store(&config).await?;
            let keys = KeySource::File(config.data_dir.join(KEY_FILE));
            serve_on(config, listeners, store.clone(), keys, demo).await?;
            flush_store(store).await?;
        }
        StoreConfig::Redis(settings) => {
            let store = RedisStore::connect(redis_config(&config, settings))
                .await
                .map_err(ServeError::Store)?;
            let keys = KeySource::Shared(Arc::new(store.clone()));
            serve_on(config, listeners, store, keys, demo).await?;
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// Creates the data folder, and any missing parent, accessible to the owner only
/// (mode 0700 on Unix): it holds the store and the signing keys. An existing
/// folder is left as it is.
pub fn create_data_dir(path: &std::path::Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path)
}

/// The Redis store's settings from the configuration: records are kept (as
/// tombstones) for the longest `tombstone_retention` of any profile.
pub fn redis_config(config: &Config, settings: RedisSettings) -> RedisConfig {
    let retention = config
        .profiles
        .iter()
        .map(|(_, p)| p.tombstone_retention)
        .max()
        .unwrap_or(config.policy.tombstone_retention);
    let mut redis = RedisConfig::new(settings.urls);
    redis.prefix = settings.prefix;
    redis.retention = retention;
    redis.wait_replicas = settings.wait_replicas;
    redis.wait_timeout = settings.wait_timeout;
    redis
}

/// Serves `store` on the listeners (the main one, and the metrics one if
/// configured) until a shutdown signal, timing the store's calls.
async fn serve_on<S: Store>(
    mut config: Config,
    (listener, metrics_listener): (TcpListener, Option<TcpListener>),
    store: S,
    key_source: KeySource,
    demo: bool,
) -> Result<(), ServeError> {
    let addr = listener.local_addr().map_err(|source| ServeError::Io {
        addr: config.listen,
        source,
    })?;
    let source_of_keys = key_source.to_string();
    let shared = match &key_source {
        KeySource::Shared(s) => Some(Arc::clone(s)),
        KeySource::File(_) => None,
    };
    let (signing_keys, keeper) =
        keys::load_or_create(key_source, config.keys.algorithm, SystemClock.now())
            .await
            .map_err(|source| ServeError::Keys {
                source_of_keys,
                source,
            })?;
    if demo && config.admin_token.is_none() {
        let token = AdminToken::generate();
        say(&format!("admin token: {}", token.reveal()));
        config.admin_token = Some(token);
    }
    let metrics = Metrics::new();
    let store = metrics.measure(store);
    let state = AppState::with_metrics(&config, store, SystemClock, signing_keys, shared, metrics)
        .map_err(ServeError::State)?;
    if demo {
        ensure_demo_user(&state).await?;
    }
    let keeper = keys::spawn_key_keeper(state.clone(), keeper, keys::KEY_CHECK_INTERVAL);
    tracing::info!(%addr, public_origin = %config.public_origin, issuer = %config.issuer, "listening");
    let shutdown = shutdown_signal();
    if let Some(at) = metrics_listener.as_ref().and_then(|l| l.local_addr().ok()) {
        tracing::info!(addr = %at, "serving metrics");
        say(&format!("sessionguard metrics on http://{at}/metrics"));
    }
    say(&format!("sessionguard listening on http://{addr}"));
    let served = run_with_metrics(listener, metrics_listener, state, shutdown).await;
    keeper.abort();
    served.map_err(|source| ServeError::Io { addr, source })
}

/// Opens the embedded store, `sessionguard.db` in the data folder.
async fn open_store(config: &Config) -> Result<ProductionStore, ServeError> {
    let path = config.data_dir.join(DB_FILE);
    // Opening reads the whole file into memory: blocking work, off the async workers.
    tokio::task::spawn_blocking(move || SqliteStore::open(path))
        .await
        .map_err(|e| ServeError::Internal(format!("opening the store panicked: {e}")))?
        .map_err(ServeError::Store)
}

/// Writes the store's buffered activity before the process exits.
async fn flush_store(store: ProductionStore) -> Result<(), ServeError> {
    // SQLite I/O is blocking: off the async workers.
    tokio::task::spawn_blocking(move || store.flush())
        .await
        .map_err(|e| ServeError::Internal(format!("flushing the store panicked: {e}")))?
        .map_err(ServeError::Store)
}

/// Creates the user `demo` with a random password, printed once; says so if it
/// already exists.
async fn ensure_demo_user<S: Store, C: Clock>(state: &AppState<S, C>) -> Result<(), ServeError> {
    const NAME: &str = "demo";
    let store = state.engine().store();
    if store
        .find_user_by_username(NAME)
        .await
        .map_err(ServeError::Store)?
        .is_some()
    {
        say("demo user: demo (exists; its password was printed when it was created)");
        return Ok(());
    }
    let secret = TokenId::random().to_string();
    let password = Password::new_for_setting(secret.clone()).map_err(ServeError::Demo)?;
    let hash = state
        .with_hasher(move |h| h.hash(&password))
        .await
        .map_err(|e| ServeError::Internal(e.to_string()))?;
    store
        .create_user(&UserId::random(), NAME, hash)
        .await
        .map_err(ServeError::Store)?;
    say(&format!("demo user: {NAME} / {secret}"));
    Ok(())
}

/// Prints one line to stdout and flushes it, so that a parent process reading the
/// pipe sees it at once.
fn say(line: &str) {
    let mut out = io::stdout().lock();
    // Stdout going away (a closed pipe) must not stop the server.
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM. The handlers are installed when
/// this is called, before the server says it listens, so a signal sent as soon
/// as that line is read already means a clean shutdown (a signal's default
/// action would end the process at once).
#[cfg(unix)]
fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    // A handler that cannot be installed never fires: the other one, or a
    // SIGKILL, still ends the server.
    let handler = |kind, name| match signal(kind) {
        Ok(sig) => Some(sig),
        Err(e) => {
            error::log_background(name, &e);
            None
        }
    };
    let interrupt = handler(SignalKind::interrupt(), "SIGINT handler");
    let terminate = handler(SignalKind::terminate(), "SIGTERM handler");
    async move {
        let received = |sig: Option<tokio::signal::unix::Signal>| async move {
            match sig {
                Some(mut sig) => {
                    sig.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = received(interrupt) => {},
            () = received(terminate) => {},
        }
        tracing::info!("shutting down");
    }
}

/// Completes on Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            error::log_background("Ctrl-C handler", &e);
            std::future::pending::<()>().await;
        }
        tracing::info!("shutting down");
    }
}

/// Marks every response uncacheable: bodies carry session data and deadlines.
/// The last line of defence: a panicking handler answers 500 like any error.
fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "<non-string panic payload>".to_owned());
    context::no_store(ApiError::Internal(format!("handler panicked: {message}")).into_response())
}
