//! [`AppState`]: what every handler shares.

use std::fmt;
use std::sync::Arc;

use sessionguard_core::{Clock, Engine, PasswordHasher, PolicyError, Store, SystemClock};
use tokio::sync::Semaphore;

use crate::config::{AdminToken, Config};
use crate::error::ApiError;

/// The engine, the password hasher and the request-facing settings, shared by
/// every handler. Cheap to clone.
pub struct AppState<S, C = SystemClock> {
    inner: Arc<Shared<S, C>>,
}

struct Shared<S, C> {
    engine: Engine<S, C>,
    hasher: PasswordHasher,
    // One argon2id computation per CPU at a time: each holds 19 MiB and a core for
    // tens of milliseconds, so more in parallel would only add memory, not speed.
    hashing: Arc<Semaphore>,
    public_origin: String,
    admin_token: Option<AdminToken>,
}

impl<S, C> Clone for AppState<S, C> {
    fn clone(&self) -> Self {
        AppState {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S, C> fmt::Debug for AppState<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppState")
            .field("engine", &self.inner.engine)
            .field("public_origin", &self.inner.public_origin)
            .field("admin_api", &self.inner.admin_token.is_some())
            .finish_non_exhaustive()
    }
}

impl<S: Store, C: Clock> AppState<S, C> {
    /// Builds the state from a validated configuration, a store and a clock.
    pub fn new(config: &Config, store: S, clock: C) -> Result<Self, PolicyError> {
        let engine = Engine::with_clock(store, clock, config.policy.clone())?;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(AppState {
            inner: Arc::new(Shared {
                engine,
                hasher: PasswordHasher::owasp(),
                hashing: Arc::new(Semaphore::new(cpus)),
                public_origin: config.public_origin.clone(),
                admin_token: config.admin_token.clone(),
            }),
        })
    }

    /// The session engine.
    pub fn engine(&self) -> &Engine<S, C> {
        &self.inner.engine
    }

    /// The trusted browser origin.
    pub fn public_origin(&self) -> &str {
        &self.inner.public_origin
    }

    /// The admin token, if the admin API is enabled.
    pub fn admin_token(&self) -> Option<&AdminToken> {
        self.inner.admin_token.as_ref()
    }

    /// Runs password work (argon2id hashing or verification) on the blocking pool,
    /// at most one job per CPU at a time.
    pub async fn with_hasher<T, F>(&self, job: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&PasswordHasher) -> T + Send + 'static,
    {
        let permit = Arc::clone(&self.inner.hashing)
            .acquire_owned()
            .await
            .map_err(|_| ApiError::Internal("the hashing semaphore is closed".into()))?;
        let inner = Arc::clone(&self.inner);
        // argon2 is CPU-bound for tens of milliseconds: off the async workers, so it
        // never stalls other requests; the permit is released when the job ends.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            job(&inner.hasher)
        })
        .await
        .map_err(|e| ApiError::Internal(format!("password hashing job failed: {e}")))
    }
}
