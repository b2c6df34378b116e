//! Configuration: a TOML file, overridden by environment variables, overridden by
//! command-line flags, turned into a validated [`Config`].
//!
//! ```toml
//! listen = "127.0.0.1:8080"
//! data_dir = "sessionguard-data"
//! public_origin = "http://127.0.0.1:8080"  # the trusted Origin for browser requests
//! admin_token = "..."                      # or SESSIONGUARD_ADMIN_TOKEN
//! issuer = "http://127.0.0.1:8080"         # `iss` of access tokens; default public_origin
//! audience = "http://127.0.0.1:8080"       # `aud` of access tokens; default public_origin
//! introspection_tokens = ["..."]           # resource servers allowed to call /v1/introspect
//! metrics_listen = "127.0.0.1:9090"        # GET /metrics without authentication there
//!                                          # (on `listen` it needs the admin token)
//! log_format = "text"                      # or "json": one JSON object per line
//! [policy]
//! profile = "standard"                     # the default profile: standard, sensitive, admin
//!                                          # or one defined under [profiles]
//! # Every key below overrides the default profile's own value.
//! idle_timeout = "30m"
//! absolute_timeout = "12h"
//! tombstone_retention = "1h"
//! access_token_ttl = "5m"
//! refresh_reuse_grace = "5s"               # "0s" turns the grace window off
//! api_token_max_ttl = "90d"
//! revoke_api_tokens_on_password_change = true
//! max_sessions = 10                        # live sessions per user; 0 = unlimited (flagged)
//! on_limit = "evict_oldest"                # or "reject_new"
//! step_up_ttl = "5m"
//! renewal_interval = "0s"                  # "0s" turns renewal off
//! renewal_overlap = "30s"
//! # The password throttle (one rule for every profile; not in [profiles.NAME]):
//! throttle_failures = 5                    # wrong passwords per account and client before waits
//! throttle_client_failures = 50            # per client address, across accounts; 0 = off
//! throttle_delay = "1s"                    # the first wait; doubles with every further failure
//! throttle_max_delay = "15m"               # the longest wait
//! [server]
//! header_read_timeout = "10s"              # a request's head must arrive within this
//! request_timeout = "30s"                  # head to response, body included (then 408)
//! keep_alive_timeout = "75s"               # an idle connection is closed after this
//! max_connections = 1000                   # more are answered 503 (Retry-After) and closed
//! shutdown_grace = "10s"                   # on SIGTERM, in-flight requests get this long
//! password_hash_queue = 32                 # password checks waiting for a worker; more get 503
//! [profiles.admin]                         # overrides fields of a built-in profile...
//! idle_timeout = "5m"
//! [profiles.partners]                      # ...or defines a profile, starting from
//! max_sessions = 2                         # the built-in `standard` values
//! on_limit = "reject_new"
//! [keys]
//! algorithm = "EdDSA"                      # or "ES256"
//! rotation_period = "30d"                  # at least 1h
//! [audit]
//! mirror = "off"                           # or "stdout", or a file to append JSON lines to
//! retention = "90d"                        # at least 1d
//! [store]
//! kind = "embedded"                        # or "redis": then urls = ["redis://127.0.0.1:6379"]
//!                                          # (several seed URLs = a cluster), prefix = "sg",
//!                                          # wait_replicas = "auto", wait_timeout = "1s"
//! ```
//!
//! Profiles are built in this order, each step overriding the one before: the
//! built-in profile (`standard`'s values for a new name), its `[profiles.NAME]`
//! table, then, for the default profile only, `[policy]` and the environment;
//! finally the values nobody set follow those that were set
//! ([`Policy::fit_unset`]), so only explicit contradictions are errors.
//! [`Config::policy`] is the default profile's resulting policy.
//!
//! Environment: `SESSIONGUARD_LISTEN`, `SESSIONGUARD_DATA_DIR`,
//! `SESSIONGUARD_PUBLIC_ORIGIN`, `SESSIONGUARD_ADMIN_TOKEN`,
//! `SESSIONGUARD_METRICS_LISTEN`, `SESSIONGUARD_LOG_FORMAT`,
//! `SESSIONGUARD_IDLE_TIMEOUT`, `SESSIONGUARD_ABSOLUTE_TIMEOUT` (the last two apply
//! to the default profile). Durations are human-readable (`90s`, `15m`, `12h`).
//! Unknown keys and profile names are errors, and every error names the dotted key
//! it is about (`policy.idle_timeout`, `profiles.admin.max_sessions`).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use sessionguard_core::policy::MAX_TIMEOUT;
use sessionguard_core::profile::{self, BUILT_IN};
use sessionguard_core::{
    OnLimit, Policy, ProfileError, ProfileName, Profiles, ThrottleRule, TokenId,
};
use sessionguard_jwt::Algorithm;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// A validated configuration.
#[derive(Clone)]
#[non_exhaustive]
pub struct Config {
    /// The address to listen on. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// The folder of the embedded store. Default `sessionguard-data`.
    pub data_dir: PathBuf,
    /// The origin browsers use to reach the service (`scheme://host[:port]`,
    /// normalised: lower case, default port omitted). Requests whose `Origin` is
    /// anything else are refused as cross-site. Default `http://<listen>`.
    pub public_origin: String,
    /// The admin API's bearer token. `None` disables the admin API.
    pub admin_token: Option<AdminToken>,
    /// The `iss` of access tokens, and the only issuer accepted when verifying
    /// them. Default: `public_origin`.
    pub issuer: String,
    /// The `aud` of access tokens, and the only audience accepted when verifying
    /// them. Default: `public_origin`.
    pub audience: String,
    /// The access tokens' signing keys.
    pub keys: KeysConfig,
    /// Bearer tokens of resource servers allowed to call `POST /v1/introspect`
    /// (the admin token may too). Empty by default.
    pub introspection_tokens: Vec<IntrospectionToken>,
    /// The default profile's policy: session timeouts, limits and token lifetimes.
    /// Always equal to `profiles.default_policy()`.
    pub policy: Policy,
    /// Every policy profile (the built-in ones, overridden or extended by
    /// `[profiles.NAME]`) and which one is the default (`policy.profile`).
    pub profiles: Profiles,
    /// The `[audit]` table: where the audit log is mirrored, and how long it is kept.
    pub audit: AuditConfig,
    /// The `[store]` table: where sessions live.
    pub store: StoreConfig,
    /// The password throttle: the `throttle_*` keys of `[policy]`.
    pub throttle: ThrottleRule,
    /// The `[server]` table: connection limits and timeouts, shutdown, the
    /// password-hashing queue.
    pub server: ServerConfig,
    /// `metrics_listen`: a second address serving `GET /metrics` without
    /// authentication (for a Prometheus scraper on a private network). `None`
    /// (default): metrics only on `listen`, with the admin token.
    pub metrics_listen: Option<SocketAddr>,
    /// `log_format`: how the `serve` command writes its logs to standard error.
    pub log_format: LogFormat,
}

/// `log_format`: the shape of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LogFormat {
    /// `"text"` (default): one readable line per event.
    #[default]
    Text,
    /// `"json"`: one JSON object per line (`timestamp`, `level`, `target`,
    /// `fields`, and the request's span with its method and route template).
    Json,
}

/// The `[server]` table: how the server holds its ground against slow and
/// flooding clients, and how it stops.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerConfig {
    /// `header_read_timeout`: a request's head (request line and headers) must
    /// arrive within this, counted from the connection's start for its first
    /// request and from the first byte for later ones; else the connection is
    /// closed. Default 10 s.
    pub header_read_timeout: Duration,
    /// `request_timeout`: from a request's head to its response, reading the
    /// body included; past it the request is answered 408 `request_timeout`
    /// and the connection closed. Default 30 s.
    pub request_timeout: Duration,
    /// `keep_alive_timeout`: a connection idle between requests is closed after
    /// this. Default 75 s (longer than the usual 60 s of reverse proxies' pools,
    /// so the proxy closes first).
    pub keep_alive_timeout: Duration,
    /// `max_connections`: open connections at most; another is answered 503
    /// `server_busy` with `Retry-After` and closed. Default 1000 (below the
    /// common limit of 1024 open files; raise both together).
    pub max_connections: usize,
    /// `shutdown_grace`: after SIGTERM (or SIGINT), how long in-flight requests
    /// get to finish before their connections are closed. Default 10 s.
    pub shutdown_grace: Duration,
    /// `password_hash_queue`: password checks that may wait for a hashing worker
    /// (one per CPU); a check finding the queue full is answered 503
    /// `server_busy` with `Retry-After` instead of waiting. Default 32.
    pub password_hash_queue: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            keep_alive_timeout: Duration::from_secs(75),
            max_connections: 1000,
            shutdown_grace: Duration::from_secs(10),
            password_hash_queue: 32,
        }
    }
}

/// The `[store]` table.
#[derive(Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum StoreConfig {
    /// `kind = "embedded"` (default): the SQLite store in `data_dir`.
    #[default]
    Embedded,
    /// `kind = "redis"`: a Redis server (one URL) or Redis Cluster (several seed
    /// URLs), shared by every sessionguard node.
    Redis(RedisSettings),
}

/// `[store]` settings of `kind = "redis"`.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisSettings {
    /// `urls`: `redis://` or `rediss://` URLs; several mean a cluster. They may
    /// hold a password: never printed.
    pub urls: Vec<String>,
    /// `prefix` of every key (default `sg`): several deployments can share a
    /// Redis.
    pub prefix: String,
    /// `wait_replicas`: how many replicas must have a revocation before it is
    /// acknowledged; `None` (`"auto"`, default) is 1 when every master has a
    /// replica, else 0.
    pub wait_replicas: Option<usize>,
    /// `wait_timeout` (default 1s): how long to wait for them.
    pub wait_timeout: Duration,
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreConfig::Embedded => f.write_str("Embedded"),
            StoreConfig::Redis(r) => f.debug_tuple("Redis").field(r).finish(),
        }
    }
}

impl fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSettings")
            .field("urls", &format_args!("<{} url(s)>", self.urls.len()))
            .field("prefix", &self.prefix)
            .field("wait_replicas", &self.wait_replicas)
            .field("wait_timeout", &self.wait_timeout)
            .finish()
    }
}

/// The `[audit]` table. The audit log is always stored with the sessions; it can
/// also be mirrored, one JSON object per line, for a log shipper.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditConfig {
    /// `mirror`: `"off"` (default), `"stdout"`, or the path of a file to append to.
    pub mirror: AuditMirror,
    /// `retention`: events older than this are deleted. Default 90 days; at least
    /// 1 day.
    pub retention: Duration,
}

/// Where audit events are mirrored as JSON lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditMirror {
    /// Nowhere.
    Off,
    /// Standard output.
    Stdout,
    /// A file, appended to (created with mode 0600 if missing).
    File(PathBuf),
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            mirror: AuditMirror::Off,
            retention: sessionguard_core::engine::DEFAULT_AUDIT_RETENTION,
        }
    }
}

/// The `[keys]` table: how access tokens are signed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeysConfig {
    /// The algorithm of new keys: `EdDSA` (default) or `ES256`. A key keeps the
    /// algorithm it was made with.
    pub algorithm: Algorithm,
    /// The active key is replaced by a new one once it is this old (the old one
    /// stays published until its tokens have expired). Default 30 days; at
    /// least 1 hour.
    pub rotation_period: Duration,
}

impl Default for KeysConfig {
    fn default() -> Self {
        KeysConfig {
            algorithm: Algorithm::EdDSA,
            rotation_period: Duration::from_secs(30 * 86_400),
        }
    }
}

/// The shortest accepted `keys.rotation_period`.
pub const MIN_ROTATION_PERIOD: Duration = Duration::from_secs(3600);

/// The longest accepted `issuer` or `audience`, in bytes.
pub const MAX_IDENTIFIER_LEN: usize = 255;

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("public_origin", &self.public_origin)
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("keys", &self.keys)
            .field("introspection_tokens", &self.introspection_tokens)
            .field("policy", &self.policy)
            .field("profiles", &self.profiles)
            .field("audit", &self.audit)
            .field("store", &self.store)
            .field("throttle", &self.throttle)
            .field("server", &self.server)
            .field("metrics_listen", &self.metrics_listen)
            .field("log_format", &self.log_format)
            .finish()
    }
}

/// The admin API's bearer token: a secret. Zeroized on drop, redacted in `Debug`,
/// compared in constant time without revealing its length.
#[derive(Clone)]
pub struct AdminToken {
    token: Zeroizing<String>,
    /// [`secret_digest`] of the token: what a presented value is compared with.
    digest: Zeroizing<[u8; 32]>,
}

/// A fixed-size digest of a configured or presented secret, so that comparing
/// two of them takes the same time whatever their lengths: comparing the texts
/// themselves would stop at a length mismatch and tell the caller the length.
fn secret_digest(secret: &[u8]) -> Zeroizing<[u8; 32]> {
    use sha2::{Digest, Sha256};
    Zeroizing::new(
        Sha256::new()
            .chain_update(b"sessionguard/bearer-secret/v1\0")
            .chain_update(secret)
            .finalize()
            .into(),
    )
}

impl AdminToken {
    /// Shortest accepted token, in characters.
    pub const MIN_LEN: usize = 32;

    /// Validates a configured token: at least [`AdminToken::MIN_LEN`] characters of
    /// visible ASCII (it travels in an HTTP header).
    pub fn new(token: String) -> Result<Self, &'static str> {
        let token = Zeroizing::new(token);
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("must be visible ASCII characters without spaces");
        }
        if token.len() < Self::MIN_LEN {
            return Err("must be at least 32 characters");
        }
        Ok(Self::from_secret(token))
    }

    fn from_secret(token: Zeroizing<String>) -> Self {
        let digest = secret_digest(token.as_bytes());
        AdminToken { token, digest }
    }

    /// A fresh random token (44 characters, 256 bits from the OS CSPRNG).
    pub fn generate() -> Self {
        Self::from_secret(Zeroizing::new(format!(
            "{}{}",
            TokenId::random(),
            TokenId::random()
        )))
    }

    /// Whether `presented` is this token. Fixed-size digests of the two are
    /// compared in constant time, so the answer takes the same time wherever
    /// they differ and whatever their lengths: neither the token's bytes nor
    /// its length can be learnt by timing.
    pub fn matches(&self, presented: &[u8]) -> bool {
        secret_digest(presented).ct_eq(&*self.digest).into()
    }

    /// The token's text, to show its owner once (demo mode).
    pub fn reveal(&self) -> &str {
        &self.token
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

/// A resource server's credential for `POST /v1/introspect`: a secret, with the
/// same rules and protections as [`AdminToken`] (at least 32 visible ASCII
/// characters, zeroized on drop, redacted in `Debug`, compared in constant time
/// without revealing its length).
#[derive(Clone)]
pub struct IntrospectionToken(AdminToken);

impl IntrospectionToken {
    /// Validates a configured token like [`AdminToken::new`].
    pub fn new(token: String) -> Result<Self, &'static str> {
        AdminToken::new(token).map(IntrospectionToken)
    }

    /// Whether `presented` is this token ([`AdminToken::matches`]).
    pub fn matches(&self, presented: &[u8]) -> bool {
        self.0.matches(presented)
    }
}

impl fmt::Debug for IntrospectionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IntrospectionToken(<redacted>)")
    }
}

/// Values given on the command line; they override everything else.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<String>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
}

impl Overrides {
    /// Overrides from the two flags.
    pub fn new(listen: Option<String>, data_dir: Option<PathBuf>) -> Self {
        Overrides { listen, data_dir }
    }
}

/// Why a configuration was refused. Each message is one line and names the key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, has an unknown key or a value of the wrong type.
    #[error("{}line {line}: {message}", .path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default())]
    Syntax {
        /// The file, if the text came from one.
        path: Option<PathBuf>,
        /// 1-based line of the problem.
        line: usize,
        /// The parser's message (without the quoted source line, which could hold a
        /// secret).
        message: String,
    },
    /// A value is present but unusable.
    #[error("{key}{}: {problem}", .origin.suffix())]
    Invalid {
        /// The configuration key, e.g. `policy.idle_timeout`.
        key: &'static str,
        /// What is wrong.
        problem: String,
        /// Where the value came from.
        origin: Origin,
    },
    /// A field of a `[profiles.NAME]` table is present but unusable.
    #[error("profiles.{profile}.{key}: {problem}")]
    InvalidProfile {
        /// The profile (a valid profile name).
        profile: String,
        /// The field, e.g. `idle_timeout`.
        key: &'static str,
        /// What is wrong.
        problem: String,
    },
}

/// Where a configuration value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// The default or the TOML file.
    File,
    /// An environment variable.
    Env(&'static str),
    /// A command-line flag.
    Flag(&'static str),
}

impl Origin {
    fn suffix(self) -> String {
        match self {
            Origin::File => String::new(),
            Origin::Env(var) => format!(" (from {var})"),
            Origin::Flag(flag) => format!(" (from {flag})"),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    public_origin: Option<String>,
    admin_token: Option<String>,
    issuer: Option<String>,
    audience: Option<String>,
    introspection_tokens: Option<Vec<String>>,
    metrics_listen: Option<String>,
    log_format: Option<String>,
    #[serde(default)]
    policy: FilePolicy,
    #[serde(default)]
    profiles: BTreeMap<String, FileProfile>,
    #[serde(default)]
    keys: FileKeys,
    #[serde(default)]
    audit: FileAudit,
    #[serde(default)]
    store: FileStore,
    #[serde(default)]
    server: FileServer,
}

/// Declares the `[policy]` table and the `[profiles.NAME]` tables (the same keys
/// but `profile` and the throttle's, which are not per profile) from one list of
/// fields.
macro_rules! policy_tables {
    ($($field:ident: $ty:ty,)*) => {
        #[derive(Deserialize, Default)]
        #[serde(deny_unknown_fields)]
        struct FilePolicy {
            profile: Option<String>,
            throttle_failures: Option<u32>,
            throttle_client_failures: Option<u32>,
            throttle_delay: Option<String>,
            throttle_max_delay: Option<String>,
            $($field: Option<$ty>,)*
        }

        #[derive(Deserialize, Default)]
        #[serde(deny_unknown_fields)]
        struct FileProfile {
            $($field: Option<$ty>,)*
        }

        impl From<FileProfile> for FilePolicy {
            fn from(table: FileProfile) -> Self {
                FilePolicy {
                    profile: None,
                    throttle_failures: None,
                    throttle_client_failures: None,
                    throttle_delay: None,
                    throttle_max_delay: None,
                    $($field: table.$field,)*
                }
            }
        }
    };
}

policy_tables! {
    idle_timeout: String,
    absolute_timeout: String,
    tombstone_retention: String,
    access_token_ttl: String,
    refresh_reuse_grace: String,
    api_token_max_ttl: String,
    revoke_api_tokens_on_password_change: bool,
    max_sessions: u32,
    on_limit: String,
    step_up_ttl: String,
    renewal_interval: String,
    renewal_overlap: String,
}

/// The dotted `[policy]` key of each policy field.
const POLICY_KEYS: [(&str, &str); 12] = [
    ("idle_timeout", "policy.idle_timeout"),
    ("absolute_timeout", "policy.absolute_timeout"),
    ("tombstone_retention", "policy.tombstone_retention"),
    ("access_token_ttl", "policy.access_token_ttl"),
    ("refresh_reuse_grace", "policy.refresh_reuse_grace"),
    ("api_token_max_ttl", "policy.api_token_max_ttl"),
    (
        "revoke_api_tokens_on_password_change",
        "policy.revoke_api_tokens_on_password_change",
    ),
    ("max_sessions", "policy.max_sessions"),
    ("on_limit", "policy.on_limit"),
    ("step_up_ttl", "policy.step_up_ttl"),
    ("renewal_interval", "policy.renewal_interval"),
    ("renewal_overlap", "policy.renewal_overlap"),
];

/// The dotted key of policy field `field` in `[policy]`.
fn policy_key(field: &str) -> &'static str {
    POLICY_KEYS
        .iter()
        .find(|(f, _)| *f == field)
        .map_or("policy", |(_, key)| key)
}

/// Which table a policy field was read from, for error messages.
#[derive(Clone, Copy)]
enum Scope<'a> {
    /// `[policy]` (and the environment): the default profile.
    Policy,
    /// `[profiles.NAME]`.
    Profile(&'a ProfileName),
}

impl Scope<'_> {
    fn error(self, field: &'static str, problem: String, origin: Origin) -> ConfigError {
        match self {
            Scope::Policy => ConfigError::Invalid {
                key: policy_key(field),
                problem,
                origin,
            },
            Scope::Profile(name) => ConfigError::InvalidProfile {
                profile: name.to_string(),
                key: field,
                problem,
            },
        }
    }
}

/// The policy fields a table set, and where each value came from.
type SetFields = Vec<(&'static str, Origin)>;

impl FilePolicy {
    /// Sets on `policy` every field given in this table or, for the fields it
    /// names, in `env` (which wins). `profile` is not a policy field: the caller
    /// reads it first.
    fn apply(
        self,
        policy: &mut Policy,
        scope: Scope<'_>,
        env: impl Fn(&'static str) -> Sourced<String>,
    ) -> Result<SetFields, ConfigError> {
        let mut set = SetFields::new();
        let durations = [
            ("idle_timeout", self.idle_timeout, &mut policy.idle_timeout),
            (
                "absolute_timeout",
                self.absolute_timeout,
                &mut policy.absolute_timeout,
            ),
            (
                "tombstone_retention",
                self.tombstone_retention,
                &mut policy.tombstone_retention,
            ),
            (
                "access_token_ttl",
                self.access_token_ttl,
                &mut policy.access_token_ttl,
            ),
            (
                "refresh_reuse_grace",
                self.refresh_reuse_grace,
                &mut policy.refresh_reuse_grace,
            ),
            (
                "api_token_max_ttl",
                self.api_token_max_ttl,
                &mut policy.api_token_max_ttl,
            ),
            ("step_up_ttl", self.step_up_ttl, &mut policy.step_up_ttl),
            (
                "renewal_interval",
                self.renewal_interval,
                &mut policy.renewal_interval,
            ),
            (
                "renewal_overlap",
                self.renewal_overlap,
                &mut policy.renewal_overlap,
            ),
        ];
        for (field, file_value, slot) in durations {
            let raw = env(field).or(file_value.map(|v| (v, Origin::File)));
            if let Some((v, origin)) = raw {
                *slot = humantime::parse_duration(v.trim())
                    .map_err(|_| scope.error(field, format!("invalid duration {v:?}"), origin))?;
                set.push((field, origin));
            }
        }
        if let Some(v) = self.revoke_api_tokens_on_password_change {
            policy.revoke_api_tokens_on_password_change = v;
            set.push(("revoke_api_tokens_on_password_change", Origin::File));
        }
        if let Some(n) = self.max_sessions {
            policy.max_sessions = n;
            set.push(("max_sessions", Origin::File));
        }
        if let Some(v) = self.on_limit {
            policy.on_limit = OnLimit::parse(&v).ok_or_else(|| {
                scope.error(
                    "on_limit",
                    format!("must be \"evict_oldest\" or \"reject_new\" (got {v:?})"),
                    Origin::File,
                )
            })?;
            set.push(("on_limit", Origin::File));
        }
        Ok(set)
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileStore {
    kind: Option<String>,
    urls: Option<Vec<String>>,
    prefix: Option<String>,
    wait_replicas: Option<toml::Value>,
    wait_timeout: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileServer {
    header_read_timeout: Option<String>,
    request_timeout: Option<String>,
    keep_alive_timeout: Option<String>,
    max_connections: Option<u64>,
    shutdown_grace: Option<String>,
    password_hash_queue: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileAudit {
    mirror: Option<String>,
    retention: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileKeys {
    algorithm: Option<String>,
    rotation_period: Option<String>,
}

/// A raw value and where it came from.
type Sourced<T> = Option<(T, Origin)>;

/// Reads an environment variable for the configuration. Non-UTF-8 values are
/// replaced lossily, so that validation refuses them naming the variable.
pub fn process_env(key: &str) -> Option<String> {
    std::env::var_os(key).map(|v| v.to_string_lossy().into_owned())
}

impl Config {
    /// Loads the configuration from an optional TOML file, the environment (looked
    /// up through `env`, usually [`process_env`]) and the flags.
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
        flags: &Overrides,
    ) -> Result<Config, ConfigError> {
        let text = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                Some((text, path))
            }
            None => None,
        };
        let parsed = match &text {
            Some((text, path)) => parse_toml(text, Some(path))?,
            None => FileConfig::default(),
        };
        Self::build(parsed, env, flags)
    }

    /// Like [`Config::load`] with the file's text given directly.
    pub fn from_toml(
        text: &str,
        env: impl Fn(&str) -> Option<String>,
        flags: &Overrides,
    ) -> Result<Config, ConfigError> {
        Self::build(parse_toml(text, None)?, env, flags)
    }

    fn build(
        file: FileConfig,
        env: impl Fn(&str) -> Option<String>,
        flags: &Overrides,
    ) -> Result<Config, ConfigError> {
        let layer = |file_value: Option<String>, var: &'static str| -> Sourced<String> {
            match env(var) {
                Some(v) => Some((v, Origin::Env(var))),
                None => file_value.map(|v| (v, Origin::File)),
            }
        };

        let listen_raw = match &flags.listen {
            Some(v) => Some((v.clone(), Origin::Flag("--listen"))),
            None => layer(file.listen, "SESSIONGUARD_LISTEN"),
        };
        let listen = match listen_raw {
            Some((v, origin)) => v.parse::<SocketAddr>().map_err(|_| ConfigError::Invalid {
                key: "listen",
                problem: format!("invalid socket address {v:?} (expected IP:PORT)"),
                origin,
            })?,
            None => SocketAddr::from(([127, 0, 0, 1], 8080)),
        };

        let metrics_listen = match layer(file.metrics_listen, "SESSIONGUARD_METRICS_LISTEN") {
            Some((v, origin)) => {
                Some(v.parse::<SocketAddr>().map_err(|_| ConfigError::Invalid {
                    key: "metrics_listen",
                    problem: format!("invalid socket address {v:?} (expected IP:PORT)"),
                    origin,
                })?)
            }
            None => None,
        };
        let log_format = match layer(file.log_format, "SESSIONGUARD_LOG_FORMAT") {
            None => LogFormat::Text,
            Some((v, origin)) => match v.as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => {
                    return Err(ConfigError::Invalid {
                        key: "log_format",
                        problem: format!("must be \"text\" or \"json\" (got {v:?})"),
                        origin,
                    });
                }
            },
        };

        let data_dir = match &flags.data_dir {
            Some(d) => d.clone(),
            None => env("SESSIONGUARD_DATA_DIR")
                .map(PathBuf::from)
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("sessionguard-data")),
        };

        let explicit_origin = layer(file.public_origin, "SESSIONGUARD_PUBLIC_ORIGIN");
        let origin_given = explicit_origin.is_some();
        let public_origin = match explicit_origin {
            Some((v, origin)) => normalise_origin(&v).map_err(|problem| ConfigError::Invalid {
                key: "public_origin",
                problem: format!("{problem} (got {v:?})"),
                origin,
            })?,
            None => format!("http://{listen}"),
        };

        let admin_token = match layer(file.admin_token, "SESSIONGUARD_ADMIN_TOKEN") {
            // The value is a secret: it is never echoed in the error.
            Some((v, origin)) => {
                Some(AdminToken::new(v).map_err(|problem| ConfigError::Invalid {
                    key: "admin_token",
                    problem: problem.to_owned(),
                    origin,
                })?)
            }
            None => None,
        };

        let issuer = match file.issuer {
            Some(v) => identifier("issuer", v, true)?,
            None => public_origin.clone(),
        };
        let audience = match file.audience {
            Some(v) => identifier("audience", v, false)?,
            None => public_origin.clone(),
        };
        let introspection_tokens = file
            .introspection_tokens
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            // The values are secrets: an error names the position, never the value.
            .map(|(i, v)| {
                IntrospectionToken::new(v).map_err(|problem| ConfigError::Invalid {
                    key: "introspection_tokens",
                    problem: format!("entry {}: {problem}", i + 1),
                    origin: Origin::File,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;

        let mut keys = KeysConfig::default();
        if let Some(v) = file.keys.algorithm {
            keys.algorithm = v.parse().map_err(|_| ConfigError::Invalid {
                key: "keys.algorithm",
                problem: format!("must be \"EdDSA\" or \"ES256\" (got {v:?})"),
                origin: Origin::File,
            })?;
        }
        if let Some(v) = file.keys.rotation_period {
            let period = parse_duration("keys.rotation_period", &v, Origin::File)?;
            if !(MIN_ROTATION_PERIOD..=MAX_TIMEOUT).contains(&period) {
                return Err(ConfigError::Invalid {
                    key: "keys.rotation_period",
                    problem: "must be between 1h and 10 years".to_owned(),
                    origin: Origin::File,
                });
            }
            keys.rotation_period = period;
        }

        let mut file_policy = file.policy;
        let throttle = throttle_rule(&mut file_policy)?;
        let server = server_config(file.server)?;
        let profiles = build_profiles(file_policy, file.profiles, |field| match field {
            "idle_timeout" => layer(None, "SESSIONGUARD_IDLE_TIMEOUT"),
            "absolute_timeout" => layer(None, "SESSIONGUARD_ABSOLUTE_TIMEOUT"),
            _ => None,
        })?;
        let policy = profiles.default_policy().clone();

        let store = store_config(file.store)?;
        if matches!(store, StoreConfig::Redis(_)) && !origin_given {
            // Each node would default to its own address, so their access tokens'
            // issuer and audience would differ and cookies' origins with them.
            return Err(ConfigError::Invalid {
                key: "public_origin",
                problem: "must be set with [store] kind = \"redis\": every node serves the same \
                          origin"
                    .to_owned(),
                origin: Origin::File,
            });
        }

        let mut audit = AuditConfig::default();
        match file.audit.mirror.as_deref() {
            None | Some("off") => {}
            Some("stdout") => audit.mirror = AuditMirror::Stdout,
            Some("") => {
                return Err(ConfigError::Invalid {
                    key: "audit.mirror",
                    problem: "must be \"off\", \"stdout\" or a file path".to_owned(),
                    origin: Origin::File,
                });
            }
            Some(path) => audit.mirror = AuditMirror::File(PathBuf::from(path)),
        }
        if let Some(v) = file.audit.retention {
            let retention = parse_duration("audit.retention", &v, Origin::File)?;
            if !(Duration::from_secs(86_400)..=MAX_TIMEOUT).contains(&retention) {
                return Err(ConfigError::Invalid {
                    key: "audit.retention",
                    problem: "must be between 1d and 10 years".to_owned(),
                    origin: Origin::File,
                });
            }
            audit.retention = retention;
        }

        Ok(Config {
            listen,
            data_dir,
            public_origin,
            admin_token,
            issuer,
            audience,
            keys,
            introspection_tokens,
            policy,
            profiles,
            audit,
            store,
            throttle,
            server,
            metrics_listen,
            log_format,
        })
    }
}

/// The throttle's keys of `[policy]`, taken out of `policy` (they are not
/// profile fields), over [`ThrottleRule::default`].
fn throttle_rule(policy: &mut FilePolicy) -> Result<ThrottleRule, ConfigError> {
    let mut rule = ThrottleRule::default();
    if let Some(n) = policy.throttle_failures.take() {
        rule.failures = n;
    }
    if let Some(n) = policy.throttle_client_failures.take() {
        rule.client_failures = n;
    }
    let delay = policy
        .throttle_delay
        .take()
        .map(|v| parse_duration("policy.throttle_delay", &v, Origin::File))
        .transpose()?;
    let max_delay = policy
        .throttle_max_delay
        .take()
        .map(|v| parse_duration("policy.throttle_max_delay", &v, Origin::File))
        .transpose()?;
    // A default follows the value set beside it: only two set values can
    // contradict each other.
    match (delay, max_delay) {
        (Some(d), Some(m)) => (rule.delay, rule.max_delay) = (d, m),
        (Some(d), None) => (rule.delay, rule.max_delay) = (d, rule.max_delay.max(d)),
        (None, Some(m)) => (rule.delay, rule.max_delay) = (rule.delay.min(m), m),
        (None, None) => {}
    }
    rule.validate().map_err(|e| ConfigError::Invalid {
        key: match e.key {
            "failures" => "policy.throttle_failures",
            "delay" => "policy.throttle_delay",
            _ => "policy.throttle_max_delay",
        },
        problem: e.problem.to_owned(),
        origin: Origin::File,
    })?;
    Ok(rule)
}

/// The shortest accepted server timeout: short enough for tests, long enough
/// that no real client is cut off by accident of a typo such as `"10"`.
const MIN_SERVER_TIMEOUT: Duration = Duration::from_millis(10);
/// The longest accepted server timeout or grace.
const MAX_SERVER_TIMEOUT: Duration = Duration::from_secs(3600);

/// The `[server]` table over [`ServerConfig::default`].
fn server_config(file: FileServer) -> Result<ServerConfig, ConfigError> {
    let mut server = ServerConfig::default();
    let timeout = |key: &'static str, v: Option<String>, min: Duration, slot: &mut Duration| {
        let Some(v) = v else { return Ok(()) };
        let d = parse_duration(key, &v, Origin::File)?;
        if !(min..=MAX_SERVER_TIMEOUT).contains(&d) {
            return Err(ConfigError::Invalid {
                key,
                problem: format!("must be between {} and 1h", humantime::format_duration(min)),
                origin: Origin::File,
            });
        }
        *slot = d;
        Ok(())
    };
    timeout(
        "server.header_read_timeout",
        file.header_read_timeout,
        MIN_SERVER_TIMEOUT,
        &mut server.header_read_timeout,
    )?;
    timeout(
        "server.request_timeout",
        file.request_timeout,
        MIN_SERVER_TIMEOUT,
        &mut server.request_timeout,
    )?;
    timeout(
        "server.keep_alive_timeout",
        file.keep_alive_timeout,
        MIN_SERVER_TIMEOUT,
        &mut server.keep_alive_timeout,
    )?;
    timeout(
        "server.shutdown_grace",
        file.shutdown_grace,
        Duration::ZERO,
        &mut server.shutdown_grace,
    )?;
    let count = |key: &'static str, v: Option<u64>, range: std::ops::RangeInclusive<u64>| match v {
        None => Ok(None),
        Some(n) if range.contains(&n) => Ok(usize::try_from(n).ok()),
        Some(_) => Err(ConfigError::Invalid {
            key,
            problem: format!("must be between {} and {}", range.start(), range.end()),
            origin: Origin::File,
        }),
    };
    if let Some(n) = count(
        "server.max_connections",
        file.max_connections,
        1..=1_000_000,
    )? {
        server.max_connections = n;
    }
    if let Some(n) = count(
        "server.password_hash_queue",
        file.password_hash_queue,
        0..=100_000,
    )? {
        server.password_hash_queue = n;
    }
    Ok(server)
}

/// The longest accepted key prefix.
const MAX_PREFIX_LEN: usize = 64;

fn store_config(file: FileStore) -> Result<StoreConfig, ConfigError> {
    let invalid = |key: &'static str, problem: &str| ConfigError::Invalid {
        key,
        problem: problem.to_owned(),
        origin: Origin::File,
    };
    match file.kind.as_deref() {
        None | Some("embedded") => {
            let redis_only = [
                ("store.urls", file.urls.is_some()),
                ("store.prefix", file.prefix.is_some()),
                ("store.wait_replicas", file.wait_replicas.is_some()),
                ("store.wait_timeout", file.wait_timeout.is_some()),
            ];
            match redis_only.into_iter().find(|(_, set)| *set) {
                Some((key, _)) => Err(invalid(key, "only applies to kind = \"redis\"")),
                None => Ok(StoreConfig::Embedded),
            }
        }
        Some("redis") => {
            let urls = file.urls.unwrap_or_default();
            if urls.is_empty() {
                return Err(invalid(
                    "store.urls",
                    "kind = \"redis\" needs at least one URL",
                ));
            }
            // The URLs may hold a password: an error names the position only.
            for (i, url) in urls.iter().enumerate() {
                if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                    return Err(invalid(
                        "store.urls",
                        &format!("entry {} must start with redis:// or rediss://", i + 1),
                    ));
                }
            }
            let prefix = file.prefix.unwrap_or_else(|| "sg".to_owned());
            let prefix_ok = (1..=MAX_PREFIX_LEN).contains(&prefix.len())
                && prefix
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
            if !prefix_ok {
                return Err(invalid(
                    "store.prefix",
                    "must be 1 to 64 characters of letters, digits, '_', '-' and '.'",
                ));
            }
            let wait_replicas = match file.wait_replicas {
                None => None,
                Some(toml::Value::String(s)) if s == "auto" => None,
                Some(toml::Value::Integer(n)) if (0..=16).contains(&n) => {
                    Some(usize::try_from(n).unwrap_or_default())
                }
                Some(_) => {
                    return Err(invalid(
                        "store.wait_replicas",
                        "must be \"auto\" or a number from 0 to 16",
                    ));
                }
            };
            let wait_timeout = match file.wait_timeout {
                None => Duration::from_secs(1),
                Some(v) => {
                    let d = parse_duration("store.wait_timeout", &v, Origin::File)?;
                    if !(Duration::from_millis(10)..=Duration::from_secs(60)).contains(&d) {
                        return Err(invalid(
                            "store.wait_timeout",
                            "must be between 10ms and 60s",
                        ));
                    }
                    d
                }
            };
            Ok(StoreConfig::Redis(RedisSettings {
                urls,
                prefix,
                wait_replicas,
                wait_timeout,
            }))
        }
        Some(_) => Err(invalid("store.kind", "must be \"embedded\" or \"redis\"")),
    }
}

fn parse_toml(text: &str, path: Option<&Path>) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let start = e.span().map_or(0, |s| s.start.min(text.len()));
        let line = text[..start].matches('\n').count() + 1;
        // One line, and only the parser's message: its default rendering quotes the
        // source line, which could hold the admin token.
        let message = e.message().trim().replace('\n', "; ");
        let message = match key_at(text, line) {
            Some(key) => format!("{key}: {message}"),
            None => message,
        };
        ConfigError::Syntax {
            path: path.map(Path::to_owned),
            line,
            message,
        }
    })
}

/// The dotted key assigned on 1-based `line` (`policy.idle_timeout`), if the line
/// is a simple `key = value` (best effort, for error messages).
fn key_at(text: &str, line: usize) -> Option<String> {
    let mut table = None;
    for (i, l) in text.lines().enumerate() {
        let l = l.trim();
        if i + 1 == line {
            let (key, _) = l.split_once('=')?;
            let key = key.trim();
            let simple = !key.is_empty()
                && key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
            return simple.then(|| match table {
                Some(t) => format!("{t}.{key}"),
                None => key.to_owned(),
            });
        }
        if let Some(header) = l.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            table = Some(header.trim());
        }
    }
    None
}

fn parse_duration(key: &'static str, v: &str, origin: Origin) -> Result<Duration, ConfigError> {
    humantime::parse_duration(v.trim()).map_err(|_| ConfigError::Invalid {
        key,
        problem: format!("invalid duration {v:?}"),
        origin,
    })
}

/// Validates an `issuer` (`url`: an absolute URL, `scheme://...`) or `audience`:
/// 1 to [`MAX_IDENTIFIER_LEN`] bytes of visible ASCII. Tokens carry it verbatim
/// and verifiers compare it exactly, so nothing is normalised.
fn identifier(key: &'static str, v: String, url: bool) -> Result<String, ConfigError> {
    let problem = if v.is_empty() || v.len() > MAX_IDENTIFIER_LEN {
        Some("must be 1 to 255 characters")
    } else if !v.bytes().all(|b| b.is_ascii_graphic()) {
        Some("must be visible ASCII characters without spaces")
    } else if url
        && !v
            .split_once("://")
            .is_some_and(|(scheme, rest)| !scheme.is_empty() && !rest.is_empty())
    {
        Some("must be an absolute URL (scheme://host...)")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(ConfigError::Invalid {
            key,
            problem: format!("{problem} (got {v:?})"),
            origin: Origin::File,
        }),
        None => Ok(v),
    }
}

/// The profiles of a configuration: the built-in ones, then each `[profiles.NAME]`
/// table over the built-in profile of that name (or `standard`'s values), then
/// `[policy]` and `env` over the default profile; validated.
fn build_profiles(
    policy: FilePolicy,
    tables: BTreeMap<String, FileProfile>,
    env: impl Fn(&'static str) -> Sourced<String>,
) -> Result<Profiles, ConfigError> {
    let mut profiles = Profiles::default();
    let mut set_in_tables = BTreeMap::new();
    for (raw, table) in tables {
        let name = ProfileName::new(&raw).map_err(|e| ConfigError::Invalid {
            key: "profiles",
            problem: format!("invalid profile name {raw:?}: {e}"),
            origin: Origin::File,
        })?;
        let mut p = profile::built_in(name.as_str()).unwrap_or_default();
        let set = FilePolicy::from(table).apply(&mut p, Scope::Profile(&name), |_| None)?;
        set_in_tables.insert(name.to_string(), set);
        profiles.insert(name, p);
    }

    let mut policy = policy;
    let default = match policy.profile.take() {
        None => ProfileName::new("standard").expect("a valid name"),
        Some(v) => ProfileName::new(&v)
            .ok()
            .filter(|n| profiles.get(n.as_str()).is_some())
            .ok_or_else(|| ConfigError::Invalid {
                key: "policy.profile",
                problem: format!(
                    "unknown profile {v:?} (built in: {}; others need a [profiles.NAME] table)",
                    BUILT_IN.join(", ")
                ),
                origin: Origin::File,
            })?,
    };
    profiles.set_default(default.clone());
    let mut p = profiles.default_policy().clone();
    let set_in_policy = policy.apply(&mut p, Scope::Policy, env)?;
    profiles.insert(default.clone(), p);

    // Values nobody set follow the ones that were (`Policy::fit_unset`): only
    // explicit contradictions are errors.
    let names: Vec<ProfileName> = profiles.iter().map(|(n, _)| n.clone()).collect();
    for name in names {
        let in_table = set_in_tables.get(name.as_str());
        let in_policy = (name == default).then_some(&set_in_policy);
        let is_set = |key: &str| {
            [in_table, in_policy]
                .into_iter()
                .flatten()
                .any(|set| set.iter().any(|(field, _)| *field == key))
        };
        if let Some((_, policy)) = profiles.get(name.as_str()) {
            let mut policy = policy.clone();
            policy.fit_unset(is_set);
            profiles.insert(name, policy);
        }
    }

    profiles.validate().map_err(|e| match e {
        ProfileError::Policy { profile, source } => {
            let origin_in = |set: &SetFields| {
                set.iter()
                    .find(|(field, _)| *field == source.key)
                    .map(|(_, origin)| *origin)
            };
            let from_policy = origin_in(&set_in_policy);
            let from_table = set_in_tables.get(&profile).and_then(origin_in);
            // The default profile's fields are named as `[policy]` keys, unless the
            // offending value was set in its own `[profiles.NAME]` table only.
            if profile == default.as_str() && (from_policy.is_some() || from_table.is_none()) {
                ConfigError::Invalid {
                    key: policy_key(source.key),
                    problem: source.problem.to_owned(),
                    origin: from_policy.unwrap_or(Origin::File),
                }
            } else {
                ConfigError::InvalidProfile {
                    profile,
                    key: source.key,
                    problem: source.problem.to_owned(),
                }
            }
        }
        ProfileError::UnknownDefault(name) => ConfigError::Invalid {
            key: "policy.profile",
            problem: format!("unknown profile {name:?}"),
            origin: Origin::File,
        },
    })?;
    Ok(profiles)
}

/// Checks that `s` is `scheme://host[:port]` (http or https, nothing after) and
/// returns it the way browsers serialise an `Origin`: lower case, default port
/// omitted.
fn normalise_origin(s: &str) -> Result<String, &'static str> {
    const SHAPE: &str = "must be scheme://host[:port] with scheme http or https and no path";
    let (scheme, rest) = s.split_once("://").ok_or(SHAPE)?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return Err(SHAPE),
    };
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', '\\']) {
        return Err(SHAPE);
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (addr, after) = v6.split_once(']').ok_or(SHAPE)?;
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(SHAPE);
        }
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or(SHAPE)?),
        };
        (format!("[{addr}]"), port)
    } else {
        match rest.split_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (rest.to_owned(), None),
        }
    };
    let host = host.to_ascii_lowercase();
    let host_ok = host.starts_with('[')
        || (!host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
    if !host_ok {
        return Err(SHAPE);
    }
    match port {
        None => Ok(format!("{scheme}://{host}")),
        Some(p) => {
            let port: u16 = p
                .parse()
                .ok()
                .filter(|&n| n != 0 && p.bytes().all(|b| b.is_ascii_digit()))
                .ok_or(SHAPE)?;
            if port == default_port {
                Ok(format!("{scheme}://{host}"))
            } else {
                Ok(format!("{scheme}://{host}:{port}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalised_like_browsers_send_them() {
        for (given, want) in [
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("HTTPS://App.Example", "https://app.example"),
            ("https://app.example:443", "https://app.example"),
            ("http://app.example:80", "http://app.example"),
            ("http://[::1]:8080", "http://[::1]:8080"),
            ("http://[::1]", "http://[::1]"),
        ] {
            assert_eq!(normalise_origin(given).unwrap(), want, "{given}");
        }
    }

    #[test]
    fn anything_but_scheme_host_port_is_refused() {
        for bad in [
            "app.example",
            "ftp://app.example",
            "https://",
            "https://app.example/",
            "https://app.example/path",
            "https://user@app.example",
            "https://app.example:0",
            "https://app.example:99999",
            "https://app.example:+80",
            "https://app.example:",
            "https://app_example",
            "http://[::1",
            "http://[nope]:80",
            "http://[::1]x",
            "null",
        ] {
            assert!(normalise_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn admin_tokens_are_long_visible_ascii_and_compared_exactly() {
        assert!(AdminToken::new("a".repeat(31)).is_err());
        assert!(AdminToken::new(format!("{} ", "a".repeat(32))).is_err());
        assert!(AdminToken::new("é".repeat(20)).is_err());
        let t = AdminToken::new("a".repeat(32)).unwrap();
        assert!(t.matches("a".repeat(32).as_bytes()));
        // Longer, shorter, a prefix, one byte off: all refused, by the same
        // fixed-size comparison.
        assert!(!t.matches("a".repeat(33).as_bytes()));
        assert!(!t.matches("a".repeat(31).as_bytes()));
        assert!(!t.matches(format!("{}b", "a".repeat(31)).as_bytes()));
        assert!(!t.matches(b""));
        assert_eq!(secret_digest(b"").len(), secret_digest(&[b'a'; 4096]).len());
        let i = IntrospectionToken::new("b".repeat(40)).unwrap();
        assert!(i.matches("b".repeat(40).as_bytes()));
        assert!(!i.matches("b".repeat(39).as_bytes()));
        let g = AdminToken::generate();
        assert!(g.reveal().len() >= AdminToken::MIN_LEN);
        assert!(AdminToken::new(g.reveal().to_owned()).is_ok());
        assert_eq!(format!("{g:?}"), "AdminToken(<redacted>)");
    }
}
