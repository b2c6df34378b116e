//! # sessionguard-store-redis
//!
//! The scale-out [`Store`] of sessionguard: several stateless `sessionguard` nodes
//! over one Redis server or one Redis Cluster (Redis 7.0 or later). A revocation
//! acknowledged by one node is what every node reads next.
//!
//! ```no_run
//! # async fn demo() -> sessionguard_core::StoreResult<()> {
//! use sessionguard_store_redis::{RedisConfig, RedisStore};
//!
//! // One URL: a single server (or, detected, a cluster node); several: a cluster.
//! let mut config = RedisConfig::new(["redis://127.0.0.1:6379"]);
//! config.prefix = "sg".into();
//! let store = RedisStore::connect(config).await?;
//! # let _ = store; Ok(()) }
//! ```
//!
//! **Client: redis-rs.** One multiplexed connection per node
//! ([`redis::aio::ConnectionManager`] for a single server, which also reconnects;
//! [`redis::cluster_async::ClusterConnection`] for a cluster) carries every request
//! of the process, pipelined, so no request waits to check a connection out of a
//! pool. redis-rs was chosen over fred because it is the most used Rust client,
//! is maintained under the Redis organisation, has both modes behind one
//! `ConnectionLike` trait, and lets a command or a pipeline be routed to the
//! master of a chosen slot (which `WAIT` needs, below); fred would do too, and
//! was not measured against it.
//!
//! **Layout: one slot per user.** Every token id starts with its user's shard
//! (`TokenId::shard`), and every key of a user's records carries the shard as its
//! hash tag, `P:{xxxx}:…`, so everything an atomic step touches is in one hash
//! slot of a cluster. A record whose id is not in its user's shard is refused.
//! The table of keys is in the `keys` module. A session is one packed binary
//! string (fixed-offset head, then length-prefixed groups), so a check reads it
//! with one `GET` and gets one string back; refresh and API tokens are hashes
//! with short field names (the `codec` module).
//!
//! **Atomicity: server-side scripts.** Every operation that a race could break is
//! one Lua script, loaded once on every master and called by `EVALSHA` (falling
//! back to `EVAL` when a node answers `NOSCRIPT`: after `SCRIPT FLUSH`, a restart
//! or a failover). Compound decisions are made from a consistent snapshot and
//! committed by a script that re-checks what they depended on (optimistic
//! concurrency, retried after a short random pause when another writer won):
//!
//! - `insert_session` at a limit: a snapshot script returns the user's version
//!   counter, epoch and sessions; the same planning as the memory store picks the
//!   sessions to displace; the commit script checks that the id is free, the epoch
//!   unchanged and the version unchanged, then displaces, inserts and bumps the
//!   version. Two logins at the limit therefore never both commit on the same
//!   count.
//! - `revoke_user_sessions`, `set_password`: the new epoch is computed from the
//!   one read, and written by a compare-and-set on the whole epoch record
//!   (together with the kept session, or the new password hash).
//! - Everything else (`rotate_refresh`, `rotate_session_token`, revocations,
//!   touches, `set_user_access`, inserts) is a single script with the contract's
//!   conditions.
//!
//! **Round trips.** `load_session` (the hot path) and `load_api_token` are one
//! script: the record and its user's epoch in one round trip, read atomically (a
//! revoke-all that keeps one session moves that session's epoch and the user's
//! together, and a check must not see one without the other). The session's
//! script is a `GET` and an `HGET`, and answers one string: the packed record
//! followed by the epoch record. Revoke-all is one
//! epoch write, O(1) whatever the number of sessions. Durable writes are one
//! round trip too: the script and `WAIT` travel as one pipeline.
//!
//! **Durability: `WAIT`.** When the masters have replicas, every write the
//! contract calls durable is followed, on the same connection to the same master,
//! by `WAIT n timeout`; if fewer than `n` replicas acknowledge it in time the call
//! fails with [`StoreError::Backend`] (source [`BackendError::NotAcknowledged`]): the
//! change may exist, but it was not acknowledged, so the server does not answer
//! 2xx. A master failover therefore cannot lose an acknowledged logout. Writes go
//! through their own connections, so a `WAIT` never delays the reads queued behind
//! it. Touches are not waited for (the contract allows losing them). After a
//! failover the promoted replica has no replica of its own until one is attached
//! (the old master rejoining as one, or a new node): until then durable writes to
//! its slots fail rather than being acknowledged without a copy, while reads and
//! the other masters' writes go on.
//!
//! A write whose connection breaks after Redis ran it may be retried by the
//! cluster client and then report the state it had already made (a second
//! revocation reports `false`); the outcome stored is the same.
//!
//! Recommended Redis settings: a replica for every master (`WAIT` is what makes an
//! acknowledgement survive the loss of a master), `appendonly yes` with
//! `appendfsync everysec` (or `always`, if the simultaneous loss of a master and
//! its replicas must not lose the last second). Required: `maxmemory-policy
//! noeviction` on every master, since an evicting policy could drop an epoch
//! record and so resurrect ended sessions: [`RedisStore::connect`] refuses
//! anything else, and [`Store::ready`] reports it while it lasts.
//!
//! **Fail closed on a lost epoch record.** Every session, and every API token,
//! is inserted together with its user's epoch record (created if missing), so a
//! missing record is a lost one: the session or token is refused (`load_*`
//! answer `None`, and a warning is logged). A record created again later carries
//! an anchor, the time it was created less a minute of clock slack, and judges
//! only records created from then on, so a login after the loss does not bring
//! older sessions back. See `docs/REDIS.md`, "Failing closed".
//!
//! **Expiry: native TTLs.** A session key expires at its idle deadline plus the
//! configured retention (re-set on touch and rotation, frozen on revocation), a
//! refresh token at its session's absolute deadline plus retention, an API token
//! at its expiry plus retention; never earlier than retention after the write, so
//! a clock far from Redis's (a test clock) does not lose records at once. So
//! tombstones live until their token could no longer have been valid, plus the
//! retention. Epochs, credentials and profiles never expire. [`Store::purge`]
//! still meets its contract exactly: it sweeps every master with `SCAN` and
//! deletes, one atomic script per record, what has ended by the cutoff. Production
//! relies on the TTLs; the sweep only catches records that ended early (revoked,
//! or below a raised API-token floor).
//!
//! **Costs, as measured by this crate's tests and example** (`tests/redis.rs`,
//! `examples/check_cost.rs`; Redis 7.0): `MEMORY USAGE` of a session key is 360
//! bytes with a 110-byte user agent and an IP address, 216 bytes without client
//! metadata; with its share of the user's set, epoch and version entries about
//! 524 bytes per session (5 sessions per user). A check (`load_session`) costs
//! about 8 µs of Redis CPU and 3 µs of client CPU.
//!
//! Round trips, with `WAIT` (pipelined) where durable:
//!
//! | operation | round trips |
//! |---|---|
//! | `load_session`, `load_api_token`, `load_refresh`, `user_epoch`, `get_user`, `user_access`, lists | 1 |
//! | `touch_session`, `touch_api_token` | 1 (no `WAIT`) |
//! | `revoke_session`, `revoke_api_token`, `rotate_session_token`, `rotate_refresh`, `insert_refresh`, `insert_api_token`, `set_user_access`, `append_event` | 1 |
//! | `insert_session` without a limit | 1 |
//! | `insert_session` with a limit | 2 (snapshot, commit), more only when another login of the same user wins the race |
//! | `revoke_user_sessions`, `set_password` | 2 (read, compare-and-set), same |
//! | `find_user_by_username` | 2 |
//! | `create_user` | 3 (reserve the name, credentials, keep the name) |
//! | `purge` | a `SCAN` sweep of every master (see above) |
//! | `throttle_attempt`, `throttle_settle` | 1 (no `WAIT`: throttle records are not durable; the `throttle` module) |

mod codec;
mod conn;
mod events;
mod keys;
mod purge;
mod scripts;
mod sessions;
mod throttle;
mod tokens;
mod users;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use sessionguard_core::token::VerifierHash;
use sessionguard_core::{
    ApiTokenRecord, AuditEvent, EpochBump, EventQuery, PasswordHash, Purged, RefreshState,
    Revocation, Rotation, SessionId, SessionLimit, SessionRecord, SessionState, Shard, Store,
    StoreError, StoreResult, Timestamp, TokenId, TokenRotation, UserAccess, UserEpoch, UserId,
    UserRecord,
};
use sessionguard_core::{Attempt, Settle, ThrottleKey, ThrottleLimit};

use crate::conn::{Conn, text};
use crate::keys::Keys;
use crate::scripts::SCRIPTS;

/// The oldest Redis the scripts run on (`PEXPIRETIME` is 7.0's).
const MIN_REDIS: (u32, u32) = (7, 0);

/// How many write connections (per node) share the durable writes: a write
/// waiting for its replicas holds up the writes queued behind it on the same
/// connection, not those on the others.
const WRITERS: usize = 4;

/// How to reach Redis, and how to keep records there.
///
/// ```
/// use std::time::Duration;
/// use sessionguard_store_redis::RedisConfig;
///
/// let mut c = RedisConfig::new(["redis://10.0.0.1:6379", "redis://10.0.0.2:6379"]);
/// c.retention = Duration::from_secs(2 * 3600);
/// assert_eq!(c.prefix, "sg");
/// assert_eq!(c.wait_replicas, None);
/// assert_eq!(c.wait_timeout, Duration::from_secs(1));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct RedisConfig {
    /// `redis://` (or `rediss://`) URLs. One URL: a single server, or a cluster if
    /// that node says it is in one; several: seed nodes of a cluster.
    pub urls: Vec<String>,
    /// The first part of every key, so several deployments (or tests) can share a
    /// Redis. Default `sg`. 1 to 64 characters, without `{`, `}` or whitespace.
    pub prefix: String,
    /// How long an ended record is kept after the last moment its token could
    /// have been valid (pass the longest `tombstone_retention` of the policies).
    /// Default 1 hour.
    pub retention: Duration,
    /// How many replicas must acknowledge a durable write (`WAIT`). `None`
    /// (default): decided at connect, 1 if every master has a replica, else 0.
    pub wait_replicas: Option<usize>,
    /// How long a durable write waits for its replicas before it fails. Default 1s.
    pub wait_timeout: Duration,
    /// How long any other request may take before it fails. Default 2s.
    pub response_timeout: Duration,
}

impl RedisConfig {
    /// The defaults, for these URLs.
    pub fn new<S: Into<String>>(urls: impl IntoIterator<Item = S>) -> Self {
        RedisConfig {
            urls: urls.into_iter().map(Into::into).collect(),
            prefix: "sg".into(),
            retention: Duration::from_secs(3600),
            wait_replicas: None,
            wait_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(2),
        }
    }

    fn validate(&self) -> Result<(), BackendError> {
        let bad = |problem: &str| Err(BackendError::Config(problem.to_owned()));
        if self.urls.is_empty() {
            return bad("urls: at least one redis:// URL is needed");
        }
        if self.prefix.is_empty()
            || self.prefix.len() > 64
            || self
                .prefix
                .chars()
                .any(|c| matches!(c, '{' | '}') || c.is_whitespace() || c.is_control())
        {
            return bad("prefix: 1 to 64 characters, without '{', '}' or whitespace");
        }
        if self.wait_timeout.is_zero() {
            return bad("wait_timeout: must not be zero (WAIT 0 waits forever)");
        }
        Ok(())
    }
}

/// URLs may hold a password: `Debug` shows them without.
impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let urls: Vec<String> = self.urls.iter().map(|u| redact(u)).collect();
        f.debug_struct("RedisConfig")
            .field("urls", &urls)
            .field("prefix", &self.prefix)
            .field("retention", &self.retention)
            .field("wait_replicas", &self.wait_replicas)
            .field("wait_timeout", &self.wait_timeout)
            .field("response_timeout", &self.response_timeout)
            .finish()
    }
}

/// The `host:port` of a `redis://` URL, without scheme, credentials or path.
fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split(['/', '?']).next().unwrap_or(rest).to_owned()
}

/// `scheme://user:secret@host` → `scheme://***@host`.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***{}", &url[..s], &url[at..]),
        _ => url.to_owned(),
    }
}

/// Why the Redis store failed, as the source of a [`StoreError::Backend`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The configuration cannot be used.
    #[error("invalid Redis store configuration: {0}")]
    Config(String),
    /// A durable write was applied by the master but fewer replicas than required
    /// acknowledged it in time: it may or may not survive a failover.
    #[error(
        "the write was acknowledged by {acked} replica(s) within {timeout:?}, {wanted} required; \
         it may exist but is not durable"
    )]
    NotAcknowledged {
        /// Replicas required.
        wanted: usize,
        /// Replicas that acknowledged.
        acked: usize,
        /// How long the write waited.
        timeout: Duration,
    },
    /// A record's id is not in its user's shard, so it cannot be kept with the
    /// user's other records (ids minted by the engine always are).
    #[error(
        "the {kind} id {id} is in shard {id_shard:04x}, but its user {user:?} is in shard \
         {user_shard:04x}: a record's id must be in its user's shard"
    )]
    ShardMismatch {
        /// What kind of record.
        kind: &'static str,
        /// The record's id.
        id: TokenId,
        /// The id's shard.
        id_shard: u16,
        /// The user.
        user: UserId,
        /// The user's shard.
        user_shard: u16,
    },
    /// Another writer kept changing the user's records: an optimistic commit was
    /// retried as often as allowed.
    #[error("gave up {operation} after {attempts} attempts: the user's records kept changing")]
    Contention {
        /// The operation.
        operation: &'static str,
        /// How many commits were tried.
        attempts: u32,
    },
    /// A script failed on the server (or could not be sent).
    #[error("the {script} script failed")]
    Script {
        /// The script's name.
        script: &'static str,
        /// What Redis (or the client) said.
        #[source]
        source: redis::RedisError,
    },
    /// A master may evict keys (`maxmemory-policy` other than `noeviction`): it
    /// could drop a user's credential epoch and so bring sessions ended by a
    /// password change or a revoke-all back, so the store refuses to run on it.
    #[error(
        "Redis on {node} has maxmemory-policy {policy}: sessionguard needs noeviction, \
         because an evicted credential epoch would bring ended sessions back \
         (set `maxmemory-policy noeviction` on every master)"
    )]
    Eviction {
        /// The master (`host:port`).
        node: String,
        /// Its `maxmemory-policy`.
        policy: String,
    },
    /// A Redis node is older than the scripts need.
    #[error("Redis {found} on {node} is too old: {required} or later is required")]
    Version {
        /// The node.
        node: String,
        /// Its version.
        found: String,
        /// The oldest supported.
        required: String,
    },
    /// Redis answered something this store never asks for.
    #[error("unexpected reply to {what}: {reply}")]
    UnexpectedReply {
        /// The request.
        what: String,
        /// The reply (cut).
        reply: String,
    },
}

/// The Redis [`Store`]. Cheap to clone: clones share the connections.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    config: RedisConfig,
    keys: Keys,
    /// Loads, touches and snapshots.
    reader: Conn,
    /// Durable writes, each followed by `WAIT` on its connection.
    writers: Vec<Conn>,
    next_writer: AtomicUsize,
    /// Replicas every durable write waits for.
    wait_replicas: usize,
    cluster: bool,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("config", &self.inner.config)
            .field("cluster", &self.inner.cluster)
            .field("wait_replicas", &self.inner.wait_replicas)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects (a single server, or a cluster for several URLs or a node that is
    /// in one), loads the scripts on every master and, unless configured, detects
    /// how many replicas durable writes wait for.
    ///
    /// # Errors
    /// [`StoreError::Backend`]: an invalid configuration ([`BackendError::Config`])
    /// or an unreachable Redis.
    pub async fn connect(config: RedisConfig) -> StoreResult<RedisStore> {
        config.validate().map_err(StoreError::backend)?;
        let writer_timeout = config.response_timeout + config.wait_timeout;
        let connect = |cluster: bool, timeout| {
            let urls = config.urls.clone();
            async move {
                if cluster {
                    clustered(&urls, timeout).await
                } else {
                    single(&urls[0], timeout).await
                }
            }
        };
        // Several URLs are a cluster's seeds; one URL may be a cluster node too.
        let (cluster, reader) = if config.urls.len() > 1 {
            (true, connect(true, config.response_timeout).await?)
        } else {
            let probe = connect(false, config.response_timeout).await?;
            let info = text(
                probe
                    .cmd(redis::cmd("INFO").arg("cluster"))
                    .await
                    .map_err(StoreError::backend)?,
                "INFO cluster",
            )?;
            if conn::info_field(&info, "cluster_enabled") == Some("1") {
                (true, connect(true, config.response_timeout).await?)
            } else {
                (false, probe)
            }
        };
        reader.require_version(MIN_REDIS).await?;
        let mut writers = Vec::with_capacity(WRITERS);
        for _ in 0..WRITERS {
            writers.push(connect(cluster, writer_timeout).await?);
        }
        reader.load_scripts(&SCRIPTS.all()).await?;
        let wait_replicas = match config.wait_replicas {
            Some(n) => n,
            None => usize::from(reader.replicas_of_every_master().await? > 0),
        };
        let store = RedisStore {
            inner: Arc::new(Inner {
                keys: Keys::new(&config.prefix),
                config,
                reader,
                writers,
                next_writer: AtomicUsize::new(0),
                wait_replicas,
                cluster,
            }),
        };
        store.check_eviction_policy().await?;
        tracing::info!(
            cluster,
            wait_replicas,
            prefix = %store.inner.config.prefix,
            "connected to the Redis session store"
        );
        Ok(store)
    }

    /// Fails with [`BackendError::Eviction`] unless every master's
    /// `maxmemory-policy` is `noeviction`, or with the connection's error if one
    /// does not answer. [`RedisStore::connect`] checks it, and
    /// [`Store::ready`] checks it again, so that a policy changed while the
    /// store runs makes readiness fail.
    ///
    /// An evicting policy could drop a user's credential-epoch record: the
    /// sessions a password change or a revoke-all ended would then pass again.
    /// (Should a record be lost all the same, the store refuses the sessions that
    /// depended on it: see `docs/REDIS.md`.)
    pub async fn check_eviction_policy(&self) -> StoreResult<()> {
        for (node, policy) in self.inner.reader.eviction_policies().await? {
            if policy != "noeviction" {
                let node = if self.inner.cluster {
                    format!("{}:{}", node.host, node.port)
                } else {
                    host_of(&self.inner.config.urls[0])
                };
                return Err(StoreError::backend(BackendError::Eviction { node, policy }));
            }
        }
        Ok(())
    }

    /// How many replicas durable writes wait for.
    pub fn wait_replicas(&self) -> usize {
        self.inner.wait_replicas
    }

    /// Whether the store is on a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.inner.cluster
    }

    /// The servers' shared signing keys (a JSON document), if any were stored.
    pub async fn load_signing_keys(&self) -> StoreResult<Option<String>> {
        let key = self.inner.keys.signing_keys();
        let reply = self
            .inner
            .reader
            .cmd(redis::cmd("GET").arg(&key))
            .await
            .map_err(StoreError::backend)?;
        conn::opt_bytes(reply, "GET signing keys")?
            .map(|b| {
                String::from_utf8(b)
                    .map_err(|_| StoreError::Corrupt("the signing keys are not UTF-8".into()))
            })
            .transpose()
    }

    /// Replaces the shared signing keys by `new` if they are still `expected`
    /// (`None`: if there are none yet); returns whether it did. Durable.
    pub async fn swap_signing_keys(&self, expected: Option<&str>, new: &str) -> StoreResult<bool> {
        let keys = vec![self.inner.keys.signing_keys()];
        let args = vec![
            if expected.is_some() {
                b"1".to_vec()
            } else {
                b"0".to_vec()
            },
            expected.unwrap_or_default().as_bytes().to_vec(),
            new.as_bytes().to_vec(),
        ];
        let reply = self
            .durable(&SCRIPTS.swap_signing_keys, &keys, &args)
            .await?;
        Ok(conn::int(&reply, "swap_signing_keys")? == 1)
    }

    fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    fn writer(&self) -> &Conn {
        let i = self.inner.next_writer.fetch_add(1, Ordering::Relaxed) % self.inner.writers.len();
        &self.inner.writers[i]
    }

    /// Runs a read-only script (or a buffered write such as a touch).
    async fn read(
        &self,
        lua: &scripts::Lua,
        keys: &[String],
        args: &[Vec<u8>],
    ) -> StoreResult<redis::Value> {
        self.inner.reader.eval(lua, keys, args).await
    }

    /// Runs a script whose effect the contract calls durable: acknowledged by the
    /// required replicas before this returns.
    async fn durable(
        &self,
        lua: &scripts::Lua,
        keys: &[String],
        args: &[Vec<u8>],
    ) -> StoreResult<redis::Value> {
        self.writer()
            .eval_durably(
                lua,
                keys,
                args,
                self.inner.wait_replicas,
                self.inner.config.wait_timeout,
            )
            .await
    }

    /// When a record that ends at `end` expires: `end` plus retention, and never
    /// less than retention from now.
    fn expiry(&self, end: Timestamp) -> i64 {
        let retention = i64::try_from(self.inner.config.retention.as_millis()).unwrap_or(i64::MAX);
        end.as_millis()
            .saturating_add(retention)
            .max(wall_clock_ms().saturating_add(retention))
    }

    fn retention_ms(&self) -> i64 {
        i64::try_from(self.inner.config.retention.as_millis()).unwrap_or(i64::MAX)
    }
}

fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

async fn single(url: &str, timeout: Duration) -> StoreResult<Conn> {
    let client = redis::Client::open(url).map_err(StoreError::backend)?;
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(timeout))
        .set_connection_timeout(Some(timeout));
    let conn = ConnectionManager::new_with_config(client, config)
        .await
        .map_err(StoreError::backend)?;
    Ok(Conn::Single(conn))
}

async fn clustered(urls: &[String], timeout: Duration) -> StoreResult<Conn> {
    let client = ClusterClientBuilder::new(urls.iter().map(String::as_str))
        .response_timeout(timeout)
        .connection_timeout(timeout)
        .build()
        .map_err(StoreError::backend)?;
    let conn = client
        .get_async_connection()
        .await
        .map_err(StoreError::backend)?;
    Ok(Conn::Cluster(conn))
}

/// Refuses a record whose id is not in its user's shard.
fn same_shard(kind: &'static str, id: &TokenId, user: &UserId) -> StoreResult<Shard> {
    let (id_shard, user_shard) = (id.shard(), user.shard());
    if id_shard == user_shard {
        return Ok(user_shard);
    }
    Err(StoreError::backend(BackendError::ShardMismatch {
        kind,
        id: *id,
        id_shard: id_shard.0,
        user: user.clone(),
        user_shard: user_shard.0,
    }))
}

/// Arguments of a script call, built in order.
#[derive(Debug, Default)]
struct Args(Vec<Vec<u8>>);

impl Args {
    fn new() -> Self {
        Args(Vec::with_capacity(32))
    }

    fn push(&mut self, v: impl Into<Vec<u8>>) -> &mut Self {
        self.0.push(v.into());
        self
    }

    fn num(&mut self, n: impl fmt::Display) -> &mut Self {
        self.push(n.to_string())
    }

    fn pairs(&mut self, pairs: codec::Pairs) -> &mut Self {
        for (k, v) in pairs {
            self.0.push(k.as_bytes().to_vec());
            self.0.push(v);
        }
        self
    }
}

/// A short random pause before retrying an optimistic commit that lost a race;
/// longer as attempts accumulate, so contenders spread out.
async fn backoff(attempt: u32) {
    let cap = 1u32 << attempt.min(5);
    let jitter = getrandom::u32().unwrap_or(0) % cap;
    tokio::time::sleep(Duration::from_micros(200 + u64::from(jitter) * 250)).await;
}

/// How many times an optimistic commit is tried before giving up.
const MAX_ATTEMPTS: u32 = 100;

impl Store for RedisStore {
    async fn insert_session(
        &self,
        record: SessionRecord,
        limit: SessionLimit,
    ) -> StoreResult<Vec<SessionId>> {
        self.insert_session_impl(record, limit).await
    }

    async fn rotate_session_token(
        &self,
        id: &SessionId,
        expected: VerifierHash,
        rotation: TokenRotation,
    ) -> StoreResult<bool> {
        self.rotate_session_token_impl(id, expected, rotation).await
    }

    async fn load_session(&self, id: &SessionId) -> StoreResult<Option<(SessionState, UserEpoch)>> {
        self.load_session_impl(id).await
    }

    async fn touch_session(
        &self,
        id: &SessionId,
        seen_at: Timestamp,
        idle_deadline: Timestamp,
    ) -> StoreResult<()> {
        self.touch_session_impl(id, seen_at, idle_deadline).await
    }

    async fn revoke_session(&self, id: &SessionId, revocation: Revocation) -> StoreResult<bool> {
        self.revoke_session_impl(id, revocation).await
    }

    async fn revoke_user_sessions(
        &self,
        user: &UserId,
        bump: EpochBump,
        keep: Option<&SessionId>,
    ) -> StoreResult<UserEpoch> {
        self.revoke_user_sessions_impl(user, bump, keep).await
    }

    async fn user_epoch(&self, user: &UserId) -> StoreResult<UserEpoch> {
        self.user_epoch_impl(user).await
    }

    async fn list_user_sessions(&self, user: &UserId) -> StoreResult<Vec<SessionRecord>> {
        self.list_user_sessions_impl(user).await
    }

    async fn purge(&self, cutoff: Timestamp) -> StoreResult<Purged> {
        self.purge_impl(cutoff).await
    }

    async fn create_user(
        &self,
        id: &UserId,
        username: &str,
        password_hash: PasswordHash,
    ) -> StoreResult<()> {
        self.create_user_impl(id, username, password_hash).await
    }

    async fn find_user_by_username(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        self.find_user_by_username_impl(username).await
    }

    async fn get_user(&self, id: &UserId) -> StoreResult<Option<UserRecord>> {
        self.get_user_impl(id).await
    }

    async fn set_password(
        &self,
        id: &UserId,
        password_hash: PasswordHash,
        bump: EpochBump,
    ) -> StoreResult<UserEpoch> {
        self.set_password_impl(id, password_hash, bump).await
    }

    async fn insert_refresh(&self, record: RefreshState) -> StoreResult<()> {
        self.insert_refresh_impl(record).await
    }

    async fn load_refresh(&self, id: &TokenId) -> StoreResult<Option<RefreshState>> {
        self.load_refresh_impl(id).await
    }

    async fn rotate_refresh(
        &self,
        id: &TokenId,
        rotation: Rotation,
        successor: RefreshState,
    ) -> StoreResult<Option<Rotation>> {
        self.rotate_refresh_impl(id, rotation, successor).await
    }

    async fn insert_api_token(&self, record: ApiTokenRecord) -> StoreResult<()> {
        self.insert_api_token_impl(record).await
    }

    async fn load_api_token(
        &self,
        id: &TokenId,
    ) -> StoreResult<Option<(ApiTokenRecord, UserEpoch)>> {
        self.load_api_token_impl(id).await
    }

    async fn touch_api_token(&self, id: &TokenId, used_at: Timestamp) -> StoreResult<()> {
        self.touch_api_token_impl(id, used_at).await
    }

    async fn revoke_api_token(&self, id: &TokenId, revocation: Revocation) -> StoreResult<bool> {
        self.revoke_api_token_impl(id, revocation).await
    }

    async fn list_user_api_tokens(&self, user: &UserId) -> StoreResult<Vec<ApiTokenRecord>> {
        self.list_user_api_tokens_impl(user).await
    }

    async fn user_access(&self, user: &UserId) -> StoreResult<UserAccess> {
        self.user_access_impl(user).await
    }

    async fn set_user_access(&self, user: &UserId, access: UserAccess) -> StoreResult<UserEpoch> {
        self.set_user_access_impl(user, access).await
    }

    async fn append_event(&self, event: AuditEvent) -> StoreResult<u64> {
        self.append_event_impl(event).await
    }

    async fn list_events(&self, query: &EventQuery) -> StoreResult<Vec<AuditEvent>> {
        self.list_events_impl(query).await
    }

    async fn purge_events(&self, cutoff: Timestamp) -> StoreResult<u64> {
        self.purge_events_impl(cutoff).await
    }

    /// Every master answers, and each one's `maxmemory-policy` is `noeviction`
    /// ([`RedisStore::check_eviction_policy`]).
    async fn ready(&self) -> StoreResult<()> {
        self.check_eviction_policy().await
    }

    async fn throttle_attempt(
        &self,
        key: &ThrottleKey,
        limit: ThrottleLimit,
        now: Timestamp,
        create: bool,
    ) -> StoreResult<Attempt> {
        self.throttle_attempt_impl(key, limit, now, create).await
    }

    async fn throttle_settle(
        &self,
        key: &ThrottleKey,
        settle: Settle,
        now: Timestamp,
    ) -> StoreResult<()> {
        self.throttle_settle_impl(key, settle, now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_validated_and_debug_hides_passwords() {
        let mut c = RedisConfig::new(["redis://:hunter2@127.0.0.1:6379"]);
        assert!(c.validate().is_ok());
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(format!("{c:?}").contains("redis://***@127.0.0.1:6379"));
        c.prefix = "a{b}".into();
        assert!(c.validate().is_err());
        c.prefix = String::new();
        assert!(c.validate().is_err());
        let none: [&str; 0] = [];
        assert!(RedisConfig::new(none).validate().is_err());
        assert_eq!(host_of("redis://:hunter2@10.0.0.1:6379/0"), "10.0.0.1:6379");
        assert_eq!(host_of("rediss://cache.example:6380"), "cache.example:6380");
    }
}
