//! Connections, script calls and durable acknowledgements.
//!
//! One connection type for a single server and for a cluster; both multiplex
//! every request of the process over one TCP connection per node, so a request
//! never waits for a connection to be checked out.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{
    MultipleNodeRoutingInfo, ResponsePolicy, Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr,
};
use redis::{Cmd, ErrorKind, RedisError, RedisResult, ServerErrorKind, Value};
use sessionguard_core::{StoreError, StoreResult};

use crate::BackendError;
use crate::scripts::Lua;

/// A multiplexed connection to one server or to a cluster. Clones share it.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    /// Sends one command, routed by its first key (in a cluster).
    pub(crate) async fn cmd(&self, cmd: &Cmd) -> RedisResult<Value> {
        checked(match self {
            Conn::Single(c) => c.clone().send_packed_command(cmd).await,
            Conn::Cluster(c) => c.clone().req_packed_command(cmd).await,
        })
    }

    /// Sends `pipeline` as one round trip to the master that serves `key`.
    pub(crate) async fn pipeline_on_master_of(
        &self,
        key: &str,
        pipeline: &redis::Pipeline,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        match self {
            Conn::Single(c) => c.clone().send_packed_commands(pipeline, 0, count).await,
            Conn::Cluster(c) => {
                let route = Route::with_key(key, SlotAddr::Master);
                c.clone()
                    .route_pipeline(
                        pipeline.clone(),
                        0,
                        count,
                        SingleNodeRoutingInfo::SpecificNode(route),
                    )
                    .await
            }
        }
    }

    /// Sends one command to the master that serves `key`, whatever its own keys.
    pub(crate) async fn cmd_on_master_of(&self, key: &str, cmd: Cmd) -> RedisResult<Value> {
        checked(match self {
            Conn::Single(c) => c.clone().send_packed_command(&cmd).await,
            Conn::Cluster(c) => {
                let route = Route::with_key(key, SlotAddr::Master);
                c.clone()
                    .route_command(
                        cmd,
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
                    )
                    .await
            }
        })
    }

    /// Sends one command to every master (the one server, if not a cluster).
    pub(crate) async fn cmd_on_all_masters(&self, cmd: Cmd) -> RedisResult<Value> {
        checked(match self {
            Conn::Single(c) => c.clone().send_packed_command(&cmd).await,
            Conn::Cluster(c) => {
                c.clone()
                    .route_command(
                        cmd,
                        RoutingInfo::MultiNode((
                            MultipleNodeRoutingInfo::AllMasters,
                            Some(ResponsePolicy::AllSucceeded),
                        )),
                    )
                    .await
            }
        })
    }

    /// Sends one command to a node of the cluster by address (the one server, if
    /// not a cluster).
    pub(crate) async fn cmd_on_node(&self, node: &Node, cmd: Cmd) -> RedisResult<Value> {
        checked(match self {
            Conn::Single(c) => c.clone().send_packed_command(&cmd).await,
            Conn::Cluster(c) => {
                c.clone()
                    .route_command(
                        cmd,
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                            host: node.host.clone(),
                            port: node.port,
                        }),
                    )
                    .await
            }
        })
    }

    /// The masters that serve slots: the one server, or every live cluster master.
    pub(crate) async fn masters(&self) -> StoreResult<Vec<Node>> {
        match self {
            Conn::Single(_) => Ok(vec![Node {
                host: String::new(),
                port: 0,
            }]),
            Conn::Cluster(_) => {
                let nodes = cluster_nodes(self).await?;
                Ok(nodes
                    .into_iter()
                    .filter(|n| n.master && n.serves_slots && !n.failed)
                    .map(|n| n.node)
                    .collect())
            }
        }
    }

    /// How many replicas every master has at least: what `WAIT` can demand.
    pub(crate) async fn replicas_of_every_master(&self) -> StoreResult<usize> {
        match self {
            Conn::Single(_) => {
                let info = text(
                    self.cmd(redis::cmd("INFO").arg("replication"))
                        .await
                        .map_err(StoreError::backend)?,
                    "INFO replication",
                )?;
                Ok(info_field(&info, "connected_slaves")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0))
            }
            Conn::Cluster(_) => {
                let nodes = cluster_nodes(self).await?;
                let masters = nodes.iter().filter(|n| n.master && n.serves_slots);
                Ok(masters
                    .map(|m| {
                        nodes
                            .iter()
                            .filter(|r| !r.failed && r.master_id.as_deref() == Some(&m.id))
                            .count()
                    })
                    .min()
                    .unwrap_or(0))
            }
        }
    }

    /// Runs `lua` with `EVALSHA`, and with `EVAL` (which also caches it) if the
    /// node answers `NOSCRIPT` (flushed, restarted, or a freshly promoted replica).
    pub(crate) async fn eval(
        &self,
        lua: &Lua,
        keys: &[String],
        args: &[Vec<u8>],
    ) -> StoreResult<Value> {
        match self.cmd(&evalsha(lua, keys, args)).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => self
                .cmd(&eval(lua, keys, args))
                .await
                .map_err(|e| script_failed(lua, e)),
            other => other.map_err(|e| script_failed(lua, e)),
        }
    }

    /// Runs `lua` on `keys` without arguments, like [`Conn::eval`]; the command is
    /// built in one buffer of the right size (the check's hot path).
    pub(crate) async fn eval_keys(&self, lua: &Lua, keys: &[&str]) -> StoreResult<Value> {
        let sha = lua.script.get_hash();
        let size = sha.len() + 2 + keys.iter().map(|k| k.len()).sum::<usize>();
        let mut cmd = Cmd::with_capacity(3 + keys.len(), 7 + size);
        cmd.arg("EVALSHA").arg(sha).arg(keys.len());
        for key in keys {
            cmd.arg(*key);
        }
        match self.cmd(&cmd).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                let mut cmd = redis::cmd("EVAL");
                cmd.arg(lua.body.as_bytes()).arg(keys.len()).arg(keys);
                self.cmd(&cmd).await.map_err(|e| script_failed(lua, e))
            }
            other => other.map_err(|e| script_failed(lua, e)),
        }
    }

    /// Runs `lua` and then `WAIT replicas timeout` on the same connection to the
    /// master that took the write, as one pipeline (one round trip); fails if
    /// fewer than `replicas` replicas acknowledged it.
    pub(crate) async fn eval_durably(
        &self,
        lua: &Lua,
        keys: &[String],
        args: &[Vec<u8>],
        replicas: usize,
        timeout: Duration,
    ) -> StoreResult<Value> {
        if replicas == 0 {
            return self.eval(lua, keys, args).await;
        }
        let route = keys.first().map_or("", String::as_str);
        let wait = wait_cmd(replicas, timeout);
        let mut by_body = false;
        loop {
            let mut pipeline = redis::pipe();
            pipeline.add_command(if by_body {
                eval(lua, keys, args)
            } else {
                evalsha(lua, keys, args)
            });
            pipeline.add_command(wait.clone());
            let mut replies = self
                .pipeline_on_master_of(route, &pipeline, 2)
                .await
                .map_err(|e| script_failed(lua, e))?;
            let (Some(acked), Some(result), None) = (replies.pop(), replies.pop(), replies.pop())
            else {
                return Err(unexpected("a script and WAIT", "not two replies"));
            };
            match result {
                Value::ServerError(e)
                    if e.kind() == Some(ServerErrorKind::NoScript) && !by_body =>
                {
                    by_body = true;
                }
                Value::ServerError(e) if is_redirect(e.kind()) => {
                    // The slot moved (failover, resharding): let the cluster client
                    // follow the redirection, then wait on the slot's new master.
                    let result = self.eval(lua, keys, args).await?;
                    let acked = self
                        .cmd_on_master_of(route, wait.clone())
                        .await
                        .map_err(StoreError::backend)?;
                    check_acked(acked, replicas, timeout)?;
                    return Ok(result);
                }
                Value::ServerError(e) => return Err(script_failed(lua, RedisError::from(e))),
                result => {
                    check_acked(acked, replicas, timeout)?;
                    return Ok(result);
                }
            }
        }
    }

    /// Fails unless every master runs at least `min` (major, minor).
    pub(crate) async fn require_version(&self, min: (u32, u32)) -> StoreResult<()> {
        for node in self.masters().await? {
            let info = text(
                self.cmd_on_node(&node, redis::cmd("INFO").arg("server").clone())
                    .await
                    .map_err(StoreError::backend)?,
                "INFO server",
            )?;
            let found = info_field(&info, "redis_version").unwrap_or("unknown");
            let mut parts = found.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
            let version = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
            if version < min {
                return Err(StoreError::backend(BackendError::Version {
                    node: format!("{}:{}", node.host, node.port),
                    found: found.to_owned(),
                    required: format!("{}.{}", min.0, min.1),
                }));
            }
        }
        Ok(())
    }

    /// Every master's `maxmemory-policy`, read from `INFO memory` (managed Redis
    /// services that disable `CONFIG` still answer it).
    pub(crate) async fn eviction_policies(&self) -> StoreResult<Vec<(Node, String)>> {
        let mut out = Vec::new();
        for node in self.masters().await? {
            let info = text(
                self.cmd_on_node(&node, redis::cmd("INFO").arg("memory").clone())
                    .await
                    .map_err(StoreError::backend)?,
                "INFO memory",
            )?;
            let policy = info_field(&info, "maxmemory_policy").unwrap_or("unknown");
            out.push((node, policy.to_owned()));
        }
        Ok(out)
    }

    /// Loads every script on every master, so the first calls need no fallback.
    pub(crate) async fn load_scripts(&self, scripts: &[&Lua]) -> StoreResult<()> {
        for lua in scripts {
            let mut cmd = redis::cmd("SCRIPT");
            cmd.arg("LOAD").arg(lua.body.as_bytes());
            self.cmd_on_all_masters(cmd)
                .await
                .map_err(|e| script_failed(lua, e))?;
        }
        Ok(())
    }
}

/// A single command's error reply as an error (the raw connection APIs return it
/// as a value).
fn checked(reply: RedisResult<Value>) -> RedisResult<Value> {
    match reply {
        Ok(Value::ServerError(e)) => Err(e.into()),
        other => other,
    }
}

fn wait_cmd(replicas: usize, timeout: Duration) -> Cmd {
    let mut cmd = redis::cmd("WAIT");
    cmd.arg(replicas).arg(
        u64::try_from(timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1),
    );
    cmd
}

fn check_acked(acked: Value, replicas: usize, timeout: Duration) -> StoreResult<()> {
    let acked = match acked {
        Value::Int(n) => usize::try_from(n).unwrap_or(0),
        Value::ServerError(e) => return Err(StoreError::backend(RedisError::from(e))),
        other => return Err(unexpected("WAIT", &format!("{other:?}"))),
    };
    if acked < replicas {
        return Err(StoreError::backend(BackendError::NotAcknowledged {
            wanted: replicas,
            acked,
            timeout,
        }));
    }
    Ok(())
}

fn is_redirect(kind: Option<ServerErrorKind>) -> bool {
    matches!(
        kind,
        Some(
            ServerErrorKind::Moved
                | ServerErrorKind::Ask
                | ServerErrorKind::TryAgain
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::MasterDown
                | ServerErrorKind::ReadOnly
        )
    )
}

fn evalsha(lua: &Lua, keys: &[String], args: &[Vec<u8>]) -> Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(lua.script.get_hash())
        .arg(keys.len())
        .arg(keys)
        .arg(args);
    cmd
}

fn eval(lua: &Lua, keys: &[String], args: &[Vec<u8>]) -> Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(lua.body.as_bytes())
        .arg(keys.len())
        .arg(keys)
        .arg(args);
    cmd
}

fn script_failed(lua: &Lua, e: RedisError) -> StoreError {
    StoreError::backend(BackendError::Script {
        script: lua.name,
        source: e,
    })
}

pub(crate) fn unexpected(what: &str, reply: &str) -> StoreError {
    StoreError::backend(BackendError::UnexpectedReply {
        what: what.to_owned(),
        reply: reply.chars().take(200).collect(),
    })
}

/// A node's address, as the cluster client knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    pub(crate) host: String,
    pub(crate) port: u16,
}

#[derive(Debug)]
struct ClusterNode {
    id: String,
    node: Node,
    master: bool,
    master_id: Option<String>,
    failed: bool,
    serves_slots: bool,
}

async fn cluster_nodes(conn: &Conn) -> StoreResult<Vec<ClusterNode>> {
    let reply = conn
        .cmd(redis::cmd("CLUSTER").arg("NODES"))
        .await
        .map_err(StoreError::backend)?;
    let text = text(reply, "CLUSTER NODES")?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            let addr = f[1].split('@').next()?;
            let (host, port) = addr.rsplit_once(':')?;
            Some(ClusterNode {
                id: f[0].to_owned(),
                node: Node {
                    host: host.to_owned(),
                    port: port.parse().ok()?,
                },
                master: f[2].contains("master"),
                master_id: (f[3] != "-").then(|| f[3].to_owned()),
                failed: f[2].contains("fail") || f[2].contains("noaddr"),
                serves_slots: f.len() > 8,
            })
        })
        .collect())
}

/// A reply that is text (bulk or simple string).
pub(crate) fn text(v: Value, what: &str) -> StoreResult<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b).map_err(|_| unexpected(what, "not UTF-8")),
        Value::SimpleString(s) => Ok(s),
        Value::VerbatimString { text, .. } => Ok(text),
        other => Err(unexpected(what, &format!("{other:?}"))),
    }
}

pub(crate) fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines().find_map(|l| {
        let (k, v) = l.trim().split_once(':')?;
        (k == field).then_some(v)
    })
}

/// An integer reply.
pub(crate) fn int(v: &Value, what: &str) -> StoreResult<i64> {
    match v {
        Value::Int(n) => Ok(*n),
        other => Err(unexpected(what, &format!("{other:?}"))),
    }
}

/// A string reply, or `None` for nil (Lua's `false`).
pub(crate) fn opt_bytes(v: Value, what: &str) -> StoreResult<Option<Vec<u8>>> {
    match v {
        Value::Nil => Ok(None),
        Value::BulkString(b) => Ok(Some(b)),
        Value::SimpleString(s) => Ok(Some(s.into_bytes())),
        Value::Int(n) => Ok(Some(n.to_string().into_bytes())),
        other => Err(unexpected(what, &format!("{other:?}"))),
    }
}

pub(crate) fn bytes(v: Value, what: &str) -> StoreResult<Vec<u8>> {
    opt_bytes(v, what)?.ok_or_else(|| unexpected(what, "nil"))
}

/// An array reply (nil reads as empty).
pub(crate) fn array(v: Value, what: &str) -> StoreResult<Vec<Value>> {
    match v {
        Value::Array(a) | Value::Set(a) => Ok(a),
        Value::Nil => Ok(Vec::new()),
        other => Err(unexpected(what, &format!("{other:?}"))),
    }
}

/// A hash as `HGETALL` returns it.
pub(crate) fn pairs(v: Value, what: &str) -> StoreResult<Vec<(Vec<u8>, Vec<u8>)>> {
    match v {
        Value::Map(m) => m
            .into_iter()
            .map(|(k, v)| Ok((bytes(k, what)?, bytes(v, what)?)))
            .collect(),
        other => {
            let flat = array(other, what)?;
            if flat.len() % 2 != 0 {
                return Err(unexpected(what, "an odd number of hash fields"));
            }
            let mut out = Vec::with_capacity(flat.len() / 2);
            let mut it = flat.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                out.push((bytes(k, what)?, bytes(v, what)?));
            }
            Ok(out)
        }
    }
}
