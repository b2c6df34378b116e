//! Prometheus metrics: what the server decided and how fast, for operators.
//!
//! Served as `GET /metrics` (the Prometheus text format) on the main listener
//! with the admin token, and without authentication on `metrics_listen` when
//! that is configured (a separate address, for a scraper on a private network).
//! The text comes from `metrics-exporter-prometheus`; each [`Metrics`] has its
//! own registry (no global recorder), so several servers in one process, as in
//! tests, never mix their counts.
//!
//! Where each event is counted, once:
//!
//! | series | counted in | labels |
//! |---|---|---|
//! | `sessionguard_credential_checks_total` | the engine's [`Observer`] hook (every check of a session, access or API token, whoever asks: the JSON API, the pages, forward-auth, introspection), and [`Metrics::access_token_refused`] for access tokens refused before the engine (signature, claims) | `credential` (`session_token`, `access_token`, `api_token`), `outcome` (`valid` or the reason code) |
//! | `sessionguard_refreshes_total` | the engine's hook | `outcome` (`rotated`, `repeated`, `reuse_detected`, `client_mismatch`, or the reason code of a refusal) |
//! | `sessionguard_revocations_total` | the engine's hook (only revocations that took effect) | `scope` (`session`, `user`, `api_token`), `reason` |
//! | `sessionguard_password_checks_total` | the engine's hook | `outcome` (`verified`, `failed`) |
//! | `sessionguard_password_throttled_total` | the engine's hook (each answers 429 `too_many_attempts`) | `key` (`known_device`, `account_client`, `client`) |
//! | `sessionguard_logins_total` | `routes::session::password_login` (`POST /v1/login`, the password grant, the sign-in page) | `outcome` ([`LoginOutcome`]) |
//! | `sessionguard_shed_total` | the connection loop (503 at `max_connections`) and the password-hash queue (503 when full) | `cause` (`connection_limit`, `password_hash_queue`) |
//! | `sessionguard_open_connections` | the connection loop | |
//! | `sessionguard_store_call_duration_seconds`, `sessionguard_store_errors_total` | [`Measured`], the store wrapper of `serve` | `op` (the `Store` method) |
//! | `sessionguard_http_requests_total`, `sessionguard_http_request_duration_seconds` | [`RequestMetricsLayer`], around the router | `route` (the route template, `unmatched` for 404s), `status` (`2xx`…`5xx`) |
//!
//! Labels are route templates, reason codes and outcomes: never user or session
//! ids, tokens or raw paths. Every series is registered when the registry is
//! made (at zero), and a request pays only atomic increments on handles held
//! here: the engine's hook adds no allocation and no formatting to the check
//! path.

mod http;
mod store;

use std::fmt;
use std::sync::Arc;

use metrics::{
    Counter, Gauge, Histogram, Key, KeyName, Label, Metadata, Recorder, SharedString, Unit,
};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use sessionguard_core::Reason;
use sessionguard_core::observe::{
    Credential, Observation, Observer, RefreshOutcome, RevocationScope, ThrottledBy,
};

pub use http::{RequestMetrics, RequestMetricsLayer, RouteTable, UNMATCHED};
pub use store::{Measured, StoreOp};

use crate::error::ApiError;

/// The media type of `GET /metrics`: the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How often the histograms' samples are folded into their buckets when no
/// scrape does it ([`Metrics::upkeep`]).
pub const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

const CHECKS: &str = "sessionguard_credential_checks_total";
const REFRESHES: &str = "sessionguard_refreshes_total";
const REVOCATIONS: &str = "sessionguard_revocations_total";
const PASSWORD_CHECKS: &str = "sessionguard_password_checks_total";
const THROTTLED: &str = "sessionguard_password_throttled_total";
const LOGINS: &str = "sessionguard_logins_total";
const SHED: &str = "sessionguard_shed_total";
const OPEN_CONNECTIONS: &str = "sessionguard_open_connections";
const STORE_DURATION: &str = "sessionguard_store_call_duration_seconds";
const STORE_ERRORS: &str = "sessionguard_store_errors_total";
const HTTP_REQUESTS: &str = "sessionguard_http_requests_total";
const HTTP_DURATION: &str = "sessionguard_http_request_duration_seconds";

/// Bucket bounds of store calls, in seconds: from an in-memory read (tens of
/// microseconds) to a slow Redis or disk write.
const STORE_BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0,
];
/// Bucket bounds of requests, in seconds: from a session check to a password
/// hash waiting in the queue.
const HTTP_BUCKETS: [f64; 14] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Outcomes of a check: live, or one of the reasons.
const OUTCOMES: usize = 1 + Reason::ALL.len();
/// Outcomes of a refresh: the four named ones, or a refusal's reason.
const REFRESH_NAMED: [&str; 4] = ["rotated", "repeated", "reuse_detected", "client_mismatch"];
const REFRESH_OUTCOMES: usize = REFRESH_NAMED.len() + Reason::ALL.len();

/// How a password login ended (`sessionguard_logins_total{outcome}`): the
/// problem code it was answered with, or `succeeded`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoginOutcome {
    /// A session was created.
    Succeeded,
    /// Wrong username or password (401 `invalid_credentials`).
    InvalidCredentials,
    /// Held back by the password throttle (429 `too_many_attempts`).
    TooManyAttempts,
    /// The password-hash queue was full (503 `server_busy`).
    ServerBusy,
    /// The account holds as many sessions as allowed and refuses more (409
    /// `session_limit_reached`).
    SessionLimitReached,
    /// The user's credentials changed during the login (409 `conflict`).
    Conflict,
    /// The store or the server failed (5xx).
    Error,
}

impl LoginOutcome {
    /// Every outcome, in the order of [`LoginOutcome::index`].
    pub const ALL: [LoginOutcome; 7] = [
        LoginOutcome::Succeeded,
        LoginOutcome::InvalidCredentials,
        LoginOutcome::TooManyAttempts,
        LoginOutcome::ServerBusy,
        LoginOutcome::SessionLimitReached,
        LoginOutcome::Conflict,
        LoginOutcome::Error,
    ];

    /// The label value.
    pub const fn code(self) -> &'static str {
        match self {
            LoginOutcome::Succeeded => "succeeded",
            LoginOutcome::InvalidCredentials => "invalid_credentials",
            LoginOutcome::TooManyAttempts => "too_many_attempts",
            LoginOutcome::ServerBusy => "server_busy",
            LoginOutcome::SessionLimitReached => "session_limit_reached",
            LoginOutcome::Conflict => "conflict",
            LoginOutcome::Error => "error",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }

    /// The outcome of a login answered with `result`.
    pub fn of<T>(result: &Result<T, ApiError>) -> Self {
        match result {
            Ok(_) => LoginOutcome::Succeeded,
            Err(ApiError::InvalidCredentials) => LoginOutcome::InvalidCredentials,
            Err(ApiError::TooManyAttempts { .. }) => LoginOutcome::TooManyAttempts,
            Err(ApiError::Busy { .. }) => LoginOutcome::ServerBusy,
            Err(ApiError::SessionLimitReached) => LoginOutcome::SessionLimitReached,
            Err(ApiError::Conflict(_)) => LoginOutcome::Conflict,
            Err(_) => LoginOutcome::Error,
        }
    }
}

/// Why the server refused work without starting it (`sessionguard_shed_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Shed {
    /// A connection beyond `max_connections`.
    ConnectionLimit,
    /// A password check finding the hash queue full.
    PasswordHashQueue,
}

impl Shed {
    const ALL: [Shed; 2] = [Shed::ConnectionLimit, Shed::PasswordHashQueue];

    const fn code(self) -> &'static str {
        match self {
            Shed::ConnectionLimit => "connection_limit",
            Shed::PasswordHashQueue => "password_hash_queue",
        }
    }
}

/// The server's metrics: a registry with every series registered, and the
/// handles that count into it. Cheap to clone (shared).
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// `[credential][0 = valid, 1 + reason tag]`.
    checks: [[Counter; OUTCOMES]; Credential::ALL.len()],
    /// `[named outcome | 4 + reason tag]`.
    refreshes: [Counter; REFRESH_OUTCOMES],
    /// `[scope][reason tag]`.
    revocations: [[Counter; Reason::ALL.len()]; RevocationScope::ALL.len()],
    /// `[failed, verified]`.
    password_checks: [Counter; 2],
    throttled: [Counter; ThrottledBy::ALL.len()],
    logins: [Counter; LoginOutcome::ALL.len()],
    shed: [Counter; Shed::ALL.len()],
    open_connections: Gauge,
    store: store::StoreMetrics,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Every metric is the server's, at level info.
static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

impl Metrics {
    /// A fresh registry with every series registered at zero.
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(STORE_DURATION.to_owned()), &STORE_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(HTTP_DURATION.to_owned()), &HTTP_BUCKETS)
            })
            .expect("the bucket lists are not empty")
            .build_recorder();
        let handle = recorder.handle();
        let r = Registrar(&recorder);
        r.describe(
            CHECKS,
            Unit::Count,
            "Credentials checked, by kind and outcome (valid or the reason code).",
        );
        r.describe(REFRESHES, Unit::Count, "Refresh-token uses, by outcome.");
        r.describe(
            REVOCATIONS,
            Unit::Count,
            "Revocations that took effect, by scope and reason.",
        );
        r.describe(
            PASSWORD_CHECKS,
            Unit::Count,
            "Password checks settled, by outcome.",
        );
        r.describe(
            THROTTLED,
            Unit::Count,
            "Password checks refused by the throttle (429), by the key that held them back.",
        );
        r.describe(LOGINS, Unit::Count, "Password logins, by outcome.");
        r.describe(
            SHED,
            Unit::Count,
            "Work refused at capacity (503), by cause.",
        );
        r.describe_gauge(OPEN_CONNECTIONS, "Open client connections.");
        r.describe_histogram(STORE_DURATION, "Store calls, by operation.");
        r.describe(
            STORE_ERRORS,
            Unit::Count,
            "Store calls that failed (backend or corrupt data), by operation.",
        );
        r.describe(
            HTTP_REQUESTS,
            Unit::Count,
            "Requests answered, by route template and status class.",
        );
        r.describe_histogram(HTTP_DURATION, "Request durations, by route template.");

        let checks = std::array::from_fn(|c| {
            let credential = Credential::ALL[c].code();
            std::array::from_fn(|o| {
                r.counter(
                    CHECKS,
                    [("credential", credential), ("outcome", outcome_code(o))],
                )
            })
        });
        let refreshes = std::array::from_fn(|o| {
            let outcome = REFRESH_NAMED
                .get(o)
                .copied()
                .unwrap_or_else(|| Reason::ALL[o - REFRESH_NAMED.len()].code());
            r.counter(REFRESHES, [("outcome", outcome)])
        });
        let revocations = std::array::from_fn(|s| {
            let scope = RevocationScope::ALL[s].code();
            std::array::from_fn(|reason| {
                r.counter(
                    REVOCATIONS,
                    [("scope", scope), ("reason", Reason::ALL[reason].code())],
                )
            })
        });
        let password_checks = [
            r.counter(PASSWORD_CHECKS, [("outcome", "failed")]),
            r.counter(PASSWORD_CHECKS, [("outcome", "verified")]),
        ];
        let throttled =
            std::array::from_fn(|k| r.counter(THROTTLED, [("key", ThrottledBy::ALL[k].code())]));
        let logins =
            std::array::from_fn(|o| r.counter(LOGINS, [("outcome", LoginOutcome::ALL[o].code())]));
        let shed = std::array::from_fn(|c| r.counter(SHED, [("cause", Shed::ALL[c].code())]));
        let open_connections = r.gauge(OPEN_CONNECTIONS);
        let store = store::StoreMetrics::register(&r);
        Metrics {
            inner: Arc::new(Inner {
                checks,
                refreshes,
                revocations,
                password_checks,
                throttled,
                logins,
                shed,
                open_connections,
                store,
                handle,
                recorder,
            }),
        }
    }

    /// The Prometheus text of every series now ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        self.inner.handle.render()
    }

    /// Folds the histograms' recorded samples into their buckets. Rendering
    /// does it too; run it every [`UPKEEP_INTERVAL`] so samples never pile up
    /// between scrapes.
    pub fn upkeep(&self) {
        self.inner.handle.run_upkeep();
    }

    /// Counts a password login that ended with `outcome`.
    pub fn login(&self, outcome: LoginOutcome) {
        self.inner.logins[outcome.index()].increment(1);
    }

    /// Counts work refused at capacity.
    pub fn shed(&self, cause: Shed) {
        self.inner.shed[cause as usize].increment(1);
    }

    /// Counts an access token refused before its session was looked at (its
    /// signature, header or claims): `invalid_token`. The engine counts every
    /// other access-token check.
    pub fn access_token_refused(&self) {
        self.count_check(Credential::AccessToken, Err(Reason::InvalidToken));
    }

    /// A connection opened: counted until the returned guard is dropped.
    pub fn connection_opened(&self) -> OpenConnection {
        self.inner.open_connections.increment(1.0);
        OpenConnection(self.inner.open_connections.clone())
    }

    /// Wraps `store` so that each of its calls is timed and each failure
    /// counted, by operation.
    pub fn measure<S>(&self, store: S) -> Measured<S> {
        Measured::new(store, self.inner.store.clone())
    }

    /// The request counters of `routes` (route templates), for
    /// [`RequestMetricsLayer`].
    pub fn routes(&self, routes: &[&'static str]) -> RouteTable {
        RouteTable::register(&Registrar(&self.inner.recorder), routes)
    }

    fn count_check(&self, credential: Credential, outcome: Result<(), Reason>) {
        let at = match outcome {
            Ok(()) => 0,
            Err(reason) => 1 + usize::from(reason.tag()),
        };
        if let Some(c) = self.inner.checks[credential.index()].get(at) {
            c.increment(1);
        }
    }
}

/// One open connection in `sessionguard_open_connections`, until dropped.
#[derive(Debug)]
pub struct OpenConnection(Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

impl Observer for Metrics {
    fn observe(&self, event: Observation) {
        let m = &*self.inner;
        match event {
            Observation::Check {
                credential,
                outcome,
            } => self.count_check(credential, outcome),
            Observation::Refresh(outcome) => {
                let at = match outcome {
                    RefreshOutcome::Rotated => 0,
                    RefreshOutcome::Repeated => 1,
                    RefreshOutcome::ReuseDetected => 2,
                    RefreshOutcome::ClientMismatch => 3,
                    RefreshOutcome::Rejected(reason) => {
                        REFRESH_NAMED.len() + usize::from(reason.tag())
                    }
                    _ => return,
                };
                if let Some(c) = m.refreshes.get(at) {
                    c.increment(1);
                }
            }
            Observation::Revoked { scope, reason } => {
                if let Some(c) = m.revocations[scope.index()].get(usize::from(reason.tag())) {
                    c.increment(1);
                }
            }
            Observation::PasswordChecked { verified } => {
                m.password_checks[usize::from(verified)].increment(1);
            }
            Observation::Throttled(key) => m.throttled[key.index()].increment(1),
            _ => {}
        }
    }
}

/// The label value of check outcome `at`: `valid`, or a reason's code.
fn outcome_code(at: usize) -> &'static str {
    match at {
        0 => "valid",
        n => Reason::ALL[n - 1].code(),
    }
}

/// Registers series with one recorder.
struct Registrar<'a>(&'a PrometheusRecorder);

impl Registrar<'_> {
    fn key<const N: usize>(name: &'static str, labels: [(&'static str, &'static str); N]) -> Key {
        Key::from_parts(name, labels.map(|(k, v)| Label::new(k, v)).to_vec())
    }

    fn counter<const N: usize>(
        &self,
        name: &'static str,
        labels: [(&'static str, &'static str); N],
    ) -> Counter {
        let counter = self.0.register_counter(&Self::key(name, labels), &METADATA);
        // At zero from the start: a series that exists only after its first
        // event breaks `rate()` over a scrape that saw none.
        counter.increment(0);
        counter
    }

    fn gauge(&self, name: &'static str) -> Gauge {
        let gauge = self
            .0
            .register_gauge(&Key::from_static_name(name), &METADATA);
        gauge.set(0.0);
        gauge
    }

    fn histogram<const N: usize>(
        &self,
        name: &'static str,
        labels: [(&'static str, &'static str); N],
    ) -> Histogram {
        self.0
            .register_histogram(&Self::key(name, labels), &METADATA)
    }

    fn describe(&self, name: &'static str, unit: Unit, help: &'static str) {
        self.0.describe_counter(
            KeyName::from_const_str(name),
            Some(unit),
            SharedString::const_str(help),
        );
    }

    fn describe_gauge(&self, name: &'static str, help: &'static str) {
        self.0.describe_gauge(
            KeyName::from_const_str(name),
            None,
            SharedString::const_str(help),
        );
    }

    fn describe_histogram(&self, name: &'static str, help: &'static str) {
        self.0.describe_histogram(
            KeyName::from_const_str(name),
            Some(Unit::Seconds),
            SharedString::const_str(help),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_is_there_from_the_start() {
        let m = Metrics::new();
        let text = m.render();
        for line in [
            r#"sessionguard_credential_checks_total{credential="session_token",outcome="valid"} 0"#,
            r#"sessionguard_credential_checks_total{credential="api_token",outcome="renewed"} 0"#,
            r#"sessionguard_refreshes_total{outcome="reuse_detected"} 0"#,
            r#"sessionguard_refreshes_total{outcome="logged_out"} 0"#,
            r#"sessionguard_revocations_total{scope="user",reason="password_changed"} 0"#,
            r#"sessionguard_logins_total{outcome="too_many_attempts"} 0"#,
            r#"sessionguard_shed_total{cause="password_hash_queue"} 0"#,
            r#"sessionguard_store_errors_total{op="load_session"} 0"#,
            "sessionguard_open_connections 0",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }

    #[test]
    fn observations_move_their_own_series_only() {
        let m = Metrics::new();
        m.observe(Observation::Check {
            credential: Credential::AccessToken,
            outcome: Err(Reason::LoggedOut),
        });
        m.observe(Observation::Refresh(RefreshOutcome::Rejected(
            Reason::IdleTimeout,
        )));
        let text = m.render();
        assert!(text.contains(
            r#"sessionguard_credential_checks_total{credential="access_token",outcome="logged_out"} 1"#
        ));
        assert!(text.contains(
            r#"sessionguard_credential_checks_total{credential="session_token",outcome="logged_out"} 0"#
        ));
        assert!(text.contains(r#"sessionguard_refreshes_total{outcome="idle_timeout"} 1"#));
        assert!(text.contains(r#"sessionguard_refreshes_total{outcome="rotated"} 0"#));
    }

    #[test]
    fn connections_are_counted_while_open() {
        let m = Metrics::new();
        let a = m.connection_opened();
        let b = m.connection_opened();
        assert!(m.render().contains("sessionguard_open_connections 2"));
        drop((a, b));
        assert!(m.render().contains("sessionguard_open_connections 0"));
    }
}
