//! [`AppState`]: what every handler shares.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use sessionguard_core::throttle::ThrottleRuleError;
use sessionguard_core::{Clock, Engine, PasswordHasher, ProfileError, Store, SystemClock};
use sessionguard_jwt::{Algorithm, KeySet, SignatureMemo, Verifier};
use tokio::sync::Semaphore;

use crate::audit_log;
use crate::config::{AdminToken, Config, IntrospectionToken, ServerConfig};
use crate::error::ApiError;
use crate::metrics::{Metrics, Shed};
use crate::shared_keys::SharedKeys;

/// Why an [`AppState`] could not be built from a configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// A policy profile is invalid (normally caught by [`Config`]).
    #[error("invalid policy profiles")]
    Profiles(#[source] ProfileError),
    /// The password throttle's rule is invalid (normally caught by [`Config`]).
    #[error("invalid password throttle")]
    Throttle(#[source] ThrottleRuleError),
    /// The audit mirror's file could not be opened.
    #[error("cannot open the audit mirror {target}")]
    AuditMirror {
        /// The configured mirror.
        target: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The engine, the password hasher, the signing keys and the request-facing
/// settings, shared by every handler. Cheap to clone.
pub struct AppState<S, C = SystemClock> {
    inner: Arc<Shared<S, C>>,
}

/// How many verified access-token signatures a node remembers (a 32-byte digest
/// and an expiry each: about 5 MiB when full). Tokens live minutes, so this covers
/// 100 000 clients each presenting its current token; past it, signatures are
/// verified every time until remembered ones expire.
pub const SIGNATURE_MEMO_CAPACITY: usize = 100_000;

struct Shared<S, C> {
    engine: Engine<S, C>,
    hasher: PasswordHasher,
    // One argon2id computation per CPU at a time: each holds 19 MiB and a core for
    // tens of milliseconds, so more in parallel would only add memory, not speed.
    hashing: Arc<Semaphore>,
    /// Password jobs admitted (running or waiting for `hashing`); at
    /// `hash_capacity` a new one is refused instead of queued, so a flood of
    /// logins cannot make every login wait without bound.
    hash_admitted: Arc<AtomicUsize>,
    hash_capacity: usize,
    /// The `[server]` settings: connection limits, timeouts, shutdown grace.
    server: ServerConfig,
    public_origin: String,
    admin_token: Option<AdminToken>,
    introspection_tokens: Vec<IntrospectionToken>,
    // A std `RwLock` around an `Arc` (the `ArcSwap` pattern without the crate): a
    // request holds the read lock only to clone the pointer, then signs or verifies
    // outside it; a rotation or reload swaps the whole set under the write lock. So
    // requests never wait for each other, never hold it across an `.await`, and
    // never see half a key set.
    keys: RwLock<Arc<KeySet>>,
    verifier: Verifier,
    /// Access-token signatures already verified ([`SignatureMemo`]).
    signatures: SignatureMemo,
    key_algorithm: Algorithm,
    rotation_period: Duration,
    /// The key set shared with other nodes, if any.
    shared_keys: Option<Arc<dyn SharedKeys>>,
    /// When this node last reloaded the shared set for an unknown key.
    last_reload: Mutex<Option<Instant>>,
    /// The Prometheus registry; also the engine's observer.
    metrics: Metrics,
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
            .field(
                "introspection_tokens",
                &self.inner.introspection_tokens.len(),
            )
            .field("verifier", &self.inner.verifier)
            .finish_non_exhaustive()
    }
}

impl<S: Store, C: Clock> AppState<S, C> {
    /// Builds the state from a validated configuration, a store and a clock, with
    /// a fresh in-memory signing key (for tests and embedding; `serve` uses the
    /// key file through [`AppState::with_keys`]).
    pub fn new(config: &Config, store: S, clock: C) -> Result<Self, StateError> {
        let keys = KeySet::generate(config.keys.algorithm, clock.now());
        Self::with_keys(config, store, clock, keys)
    }

    /// Like [`AppState::new`], signing access tokens with `keys`.
    pub fn with_keys(
        config: &Config,
        store: S,
        clock: C,
        keys: KeySet,
    ) -> Result<Self, StateError> {
        Self::with_shared_keys(config, store, clock, keys, None)
    }

    /// Like [`AppState::with_keys`], for keys shared with other nodes through
    /// `shared`: an access token signed by a key this node does not know yet is
    /// checked again after reloading the set ([`crate::shared_keys`]).
    pub fn with_shared_keys(
        config: &Config,
        store: S,
        clock: C,
        keys: KeySet,
        shared: Option<Arc<dyn SharedKeys>>,
    ) -> Result<Self, StateError> {
        Self::with_metrics(config, store, clock, keys, shared, Metrics::new())
    }

    /// Like [`AppState::with_shared_keys`], counting into `metrics` (which the
    /// caller may also have wrapped the store with, [`Metrics::measure`]). The
    /// engine reports its decisions to it ([`sessionguard_core::observe`]).
    pub fn with_metrics(
        config: &Config,
        store: S,
        clock: C,
        keys: KeySet,
        shared: Option<Arc<dyn SharedKeys>>,
        metrics: Metrics,
    ) -> Result<Self, StateError> {
        let mut engine = Engine::with_profiles(store, clock, config.profiles.clone())
            .map_err(StateError::Profiles)?
            .with_audit_retention(config.audit.retention)
            .with_throttle(config.throttle)
            .map_err(StateError::Throttle)?
            .with_observer(Arc::new(metrics.clone()));
        let mirror = audit_log::open_mirror(&config.audit.mirror).map_err(|source| {
            StateError::AuditMirror {
                target: format!("{:?}", config.audit.mirror),
                source,
            }
        })?;
        if let Some(mirror) = mirror {
            engine = engine.with_audit_mirror(mirror);
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(AppState {
            inner: Arc::new(Shared {
                engine,
                hasher: PasswordHasher::owasp(),
                hashing: Arc::new(Semaphore::new(cpus)),
                hash_admitted: Arc::new(AtomicUsize::new(0)),
                hash_capacity: cpus.saturating_add(config.server.password_hash_queue),
                server: config.server.clone(),
                public_origin: config.public_origin.clone(),
                admin_token: config.admin_token.clone(),
                introspection_tokens: config.introspection_tokens.clone(),
                keys: RwLock::new(Arc::new(keys)),
                verifier: Verifier::new(config.issuer.clone(), config.audience.clone()),
                signatures: SignatureMemo::new(SIGNATURE_MEMO_CAPACITY),
                key_algorithm: config.keys.algorithm,
                rotation_period: config.keys.rotation_period,
                shared_keys: shared,
                last_reload: Mutex::new(None),
                metrics,
            }),
        })
    }

    /// Reloads the shared key set, if there is one and it was not reloaded in the
    /// last second (so forged key ids cannot make a node hammer the store).
    /// Returns whether the keys now in use were reloaded.
    pub async fn reload_shared_keys(&self) -> bool {
        let Some(shared) = &self.inner.shared_keys else {
            return false;
        };
        {
            let mut last = self
                .inner
                .last_reload
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
                return false;
            }
            *last = Some(Instant::now());
        }
        let loaded = match shared.load().await {
            Ok(Some(json)) => KeySet::from_json_secret(&json).map_err(|e| e.to_string()),
            Ok(None) => return false,
            Err(e) => Err(crate::error::chain(&e)),
        };
        match loaded {
            Ok(keys) => {
                self.set_keys(keys);
                true
            }
            Err(why) => {
                tracing::error!(error = %why, "cannot reload the shared signing keys");
                false
            }
        }
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

    /// Whether `presented` is the admin token or a configured introspection token.
    /// Every configured token is compared (in constant time), whichever matches.
    pub fn may_introspect(&self, presented: &[u8]) -> bool {
        let admin = self
            .inner
            .admin_token
            .as_ref()
            .is_some_and(|t| t.matches(presented));
        self.inner
            .introspection_tokens
            .iter()
            .fold(admin, |any, t| t.matches(presented) | any)
    }

    /// The current signing keys: a snapshot, unaffected by a later rotation.
    pub fn keys(&self) -> Arc<KeySet> {
        // The lock guards only a pointer swap, which cannot panic: a poisoned lock
        // still holds a whole key set.
        let guard = self
            .inner
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        Arc::clone(&guard)
    }

    /// Replaces the signing keys (after a rotation or a reload of the key file).
    pub fn set_keys(&self, keys: KeySet) {
        let keys = Arc::new(keys);
        *self
            .inner
            .keys
            .write()
            .unwrap_or_else(PoisonError::into_inner) = keys;
    }

    /// Access-token signatures this node has verified, so that a token presented
    /// again skips the public-key operation (every other check still runs).
    pub fn signature_memo(&self) -> &SignatureMemo {
        &self.inner.signatures
    }

    /// The verifier of access tokens: the configured issuer and audience.
    pub fn verifier(&self) -> &Verifier {
        &self.inner.verifier
    }

    /// The algorithm of new signing keys.
    pub fn key_algorithm(&self) -> Algorithm {
        self.inner.key_algorithm
    }

    /// How old the active signing key may get before it is rotated.
    pub fn rotation_period(&self) -> Duration {
        self.inner.rotation_period
    }

    /// The server's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The `[server]` settings.
    pub fn server_config(&self) -> &ServerConfig {
        &self.inner.server
    }

    /// How many password jobs may be admitted at once: one running per CPU,
    /// plus `password_hash_queue` waiting.
    pub fn password_hash_capacity(&self) -> usize {
        self.inner.hash_capacity
    }

    /// How many password jobs are admitted now: running, or waiting for a worker.
    pub fn password_jobs(&self) -> usize {
        self.inner.hash_admitted.load(Ordering::Acquire)
    }

    /// Runs password work (argon2id hashing or verification) on the blocking pool,
    /// at most one job per CPU at a time. When [`AppState::password_hash_capacity`]
    /// jobs are already running or waiting, refuses at once with
    /// [`ApiError::Busy`] (503, `Retry-After`): a bounded wait, never an
    /// unbounded queue.
    pub async fn with_hasher<T, F>(&self, job: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&PasswordHasher) -> T + Send + 'static,
    {
        let Some(admitted) = Admission::enter(&self.inner.hash_admitted, self.inner.hash_capacity)
        else {
            self.inner.metrics.shed(Shed::PasswordHashQueue);
            return Err(ApiError::Busy {
                retry_after: HASH_QUEUE_RETRY,
            });
        };
        let permit = Arc::clone(&self.inner.hashing)
            .acquire_owned()
            .await
            .map_err(|_| ApiError::Internal("the hashing semaphore is closed".into()))?;
        let inner = Arc::clone(&self.inner);
        // argon2 is CPU-bound for tens of milliseconds: off the async workers, so it
        // never stalls other requests; the permit and the admission are released
        // when the job ends (or, if the request goes away while waiting, then).
        tokio::task::spawn_blocking(move || {
            let _held = (permit, admitted);
            job(&inner.hasher)
        })
        .await
        .map_err(|e| ApiError::Internal(format!("password hashing job failed: {e}")))
    }
}

/// What a client refused by a full password-hash queue is told to wait.
pub const HASH_QUEUE_RETRY: Duration = Duration::from_secs(1);

/// One admitted password job: counted in `hash_admitted` until dropped.
struct Admission(Arc<AtomicUsize>);

impl Admission {
    /// Admits a job unless `capacity` are already admitted.
    fn enter(count: &Arc<AtomicUsize>, capacity: usize) -> Option<Self> {
        // Increment first, then check: of simultaneous callers at the edge, the
        // ones past it undo their increment, so never more than `capacity` hold one.
        if count.fetch_add(1, Ordering::AcqRel) >= capacity {
            count.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Admission(Arc::clone(count)))
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
