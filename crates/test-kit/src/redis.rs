//! Redis for tests: one `redis-server`, or a Redis Cluster of three masters with
//! one replica each, on free loopback ports, in a temporary directory, killed when
//! dropped.
//!
//! They need `redis-server` and `redis-cli` on the `PATH` (Debian's `redis-server`
//! and `redis-tools`; `scripts/test` installs them). When either is missing or a
//! server does not come up, [`RedisServer::start`] and [`RedisCluster::start`]
//! panic with a message that says so: a test that needs Redis fails, it never
//! skips.
//!
//! Persistence is off (`--save "" --appendonly no`): what these servers keep only
//! has to survive the loss of a process while its replica lives, which is what the
//! cluster's replicas are for.

use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::fixtures::TempDir;

/// How long a server or a cluster may take to come up (or to fail over).
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How often readiness is polled.
const POLL: Duration = Duration::from_millis(50);

/// The cluster's node timeout: how long a master may be unreachable before its
/// replica is promoted. Short, so failover tests take seconds.
const NODE_TIMEOUT_MS: &str = "1000";

/// A port a cluster node can use: its bus port (`port + 10000`) must exist too.
const MAX_CLUSTER_PORT: u16 = 55_535;

/// One `redis-server` on a free loopback port, killed (and its directory
/// removed) on drop.
#[derive(Debug)]
pub struct RedisServer {
    node: Node,
    _dir: TempDir,
}

impl RedisServer {
    /// Starts a server and waits until it answers `PING`.
    ///
    /// # Panics
    /// If `redis-server` or `redis-cli` is not installed, or the server does not
    /// come up: the message says which, and how to install them.
    pub fn start() -> RedisServer {
        require_binaries();
        let dir = TempDir::new();
        let node = Node::spawn(dir.path(), &[], false);
        RedisServer { node, _dir: dir }
    }

    /// Starts a replica of this server (`--replicaof`) and waits until its link
    /// to this server is up.
    ///
    /// # Panics
    /// If the replica does not come up or does not link in time.
    pub fn start_replica(&self) -> RedisServer {
        let dir = TempDir::new();
        let port = self.node.port.to_string();
        let node = Node::spawn(dir.path(), &["--replicaof", "127.0.0.1", &port], false);
        let deadline = Instant::now() + READY_TIMEOUT;
        while info_field(node.port, "replication", "master_link_status").as_deref() != Some("up") {
            assert!(
                Instant::now() < deadline,
                "the replica on {} did not link to 127.0.0.1:{port} within {READY_TIMEOUT:?}",
                node.port
            );
            sleep(POLL);
        }
        RedisServer { node, _dir: dir }
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.node.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        url(self.node.port)
    }

    /// Runs `redis-cli` against the server and returns its output.
    ///
    /// # Panics
    /// If `redis-cli` fails.
    pub fn cli(&self, args: &[&str]) -> String {
        cli(self.node.port, args)
    }
}

/// A Redis Cluster of three masters with one replica each, on free loopback
/// ports; every node is killed (and the directory removed) on drop.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<Node>,
    _dir: TempDir,
}

/// One line of `CLUSTER NODES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNode {
    /// The node's id.
    pub id: String,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Whether it is a master (else a replica).
    pub master: bool,
    /// For a replica, its master's id.
    pub master_id: Option<String>,
    /// Whether the cluster considers it failed (`fail` or `fail?`).
    pub failed: bool,
}

impl RedisCluster {
    /// Starts six cluster-enabled servers, joins them into three masters with one
    /// replica each, and waits until every node reports `cluster_state:ok` and
    /// every replica's link to its master is up.
    ///
    /// # Panics
    /// If `redis-server` or `redis-cli` is not installed, or the cluster does not
    /// form in time.
    pub fn start() -> RedisCluster {
        require_binaries();
        let dir = TempDir::new();
        let nodes: Vec<Node> = (0..6).map(|_| Node::spawn(dir.path(), &[], true)).collect();
        let mut args = vec!["--cluster".to_owned(), "create".to_owned()];
        args.extend(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)));
        args.extend(
            ["--cluster-replicas", "1", "--cluster-yes"]
                .iter()
                .map(|s| (*s).to_owned()),
        );
        let out = Command::new("redis-cli")
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli runs");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = RedisCluster { nodes, _dir: dir };
        cluster.wait_until_healthy(6);
        cluster
    }

    /// `redis://127.0.0.1:<port>` of every node still running (seeds for a client).
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| url(n.port)).collect()
    }

    /// The ports of every node still running.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// Runs `redis-cli` against the node on `port` and returns its output.
    ///
    /// # Panics
    /// If `redis-cli` fails.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        cli(port, args)
    }

    /// The cluster's nodes as a running node sees them.
    pub fn cluster_nodes(&self) -> Vec<ClusterNode> {
        parse_cluster_nodes(&cli(self.nodes[0].port, &["cluster", "nodes"]))
    }

    /// The ports of the live masters.
    pub fn masters(&self) -> Vec<u16> {
        self.cluster_nodes()
            .into_iter()
            .filter(|n| n.master && !n.failed)
            .map(|n| n.port)
            .collect()
    }

    /// The port of the master that serves `key` now.
    pub fn master_of_key(&self, key: &str) -> u16 {
        let slot: u16 = cli(self.nodes[0].port, &["cluster", "keyslot", key])
            .trim()
            .parse()
            .expect("CLUSTER KEYSLOT answers a number");
        self.masters()
            .into_iter()
            .find(|port| owns_slot(*port, slot))
            .expect("some master serves every slot")
    }

    /// Kills the master on `port` (SIGKILL: no goodbye to the cluster) and waits
    /// until its replica has been promoted and every remaining node reports
    /// `cluster_state:ok`. Returns the promoted replica's port.
    ///
    /// # Panics
    /// If `port` is not a live master, or the failover does not complete in time.
    pub fn kill_master(&mut self, port: u16) -> u16 {
        let nodes = self.cluster_nodes();
        let master = nodes
            .iter()
            .find(|n| n.port == port && n.master && !n.failed)
            .unwrap_or_else(|| panic!("127.0.0.1:{port} is not a live master"))
            .clone();
        let replica = nodes
            .iter()
            .find(|n| n.master_id.as_deref() == Some(master.id.as_str()))
            .unwrap_or_else(|| panic!("the master on {port} has no replica"))
            .port;
        let i = self
            .nodes
            .iter()
            .position(|n| n.port == port)
            .expect("the master is one of ours");
        drop(self.nodes.remove(i));
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let promoted = info_field(replica, "replication", "role").as_deref() == Some("master");
            let all_ok = self.nodes.iter().all(|n| {
                info_field_cmd(n.port, &["cluster", "info"], "cluster_state").as_deref()
                    == Some("ok")
            });
            if promoted && all_ok {
                return replica;
            }
            assert!(
                Instant::now() < deadline,
                "the replica on {replica} was not promoted within {READY_TIMEOUT:?} \
                 after the master on {port} was killed"
            );
            sleep(POLL);
        }
    }

    fn wait_until_healthy(&self, known: usize) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let healthy = self.nodes.iter().all(|n| {
                let info = cli(n.port, &["cluster", "info"]);
                let field = |k: &str| field_of(&info, k);
                field("cluster_state").as_deref() == Some("ok")
                    && field("cluster_known_nodes") == Some(known.to_string())
                    && field("cluster_slots_ok").as_deref() == Some("16384")
            }) && self.nodes.iter().all(|n| {
                let info = cli(n.port, &["info", "replication"]);
                match field_of(&info, "role").as_deref() {
                    Some("master") => true,
                    Some("slave") => field_of(&info, "master_link_status").as_deref() == Some("up"),
                    _ => false,
                }
            });
            let nodes = self.cluster_nodes();
            let shape = nodes.iter().filter(|n| n.master).count() == 3
                && nodes.iter().filter(|n| !n.master).count() == 3;
            if healthy && shape {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the Redis Cluster on ports {:?} did not become healthy within {READY_TIMEOUT:?}: {}",
                self.ports(),
                cli(self.nodes[0].port, &["cluster", "info"])
            );
            sleep(POLL);
        }
    }
}

/// Whether the node on `port` serves `slot`, by its own line (`myself`) of
/// `CLUSTER NODES`.
fn owns_slot(port: u16, slot: u16) -> bool {
    let nodes = cli(port, &["cluster", "nodes"]);
    nodes
        .lines()
        .find(|l| {
            l.split_whitespace()
                .nth(2)
                .is_some_and(|f| f.contains("myself"))
        })
        .is_some_and(|line| {
            line.split_whitespace().skip(8).any(|range| {
                let mut ends = range.split('-');
                let lo = ends.next().and_then(|s| s.parse::<u16>().ok());
                let hi = ends.next().and_then(|s| s.parse::<u16>().ok()).or(lo);
                matches!((lo, hi), (Some(lo), Some(hi)) if (lo..=hi).contains(&slot))
            })
        })
}

fn parse_cluster_nodes(text: &str) -> Vec<ClusterNode> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            let port = f[1].split('@').next()?.rsplit(':').next()?.parse().ok()?;
            let flags = f[2];
            Some(ClusterNode {
                id: f[0].to_owned(),
                port,
                master: flags.contains("master"),
                master_id: (f[3] != "-").then(|| f[3].to_owned()),
                failed: flags.contains("fail"),
            })
        })
        .collect()
}

/// A running `redis-server`, killed on drop.
#[derive(Debug)]
struct Node {
    child: Child,
    port: u16,
}

impl Node {
    /// Starts `redis-server` on a free port in a directory of its own under
    /// `parent`, retrying with another port if the chosen one was taken meanwhile.
    fn spawn(parent: &Path, extra: &[&str], cluster: bool) -> Node {
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = free_port(cluster);
            let dir: PathBuf = parent.join(port.to_string());
            std::fs::create_dir_all(&dir).expect("the temp dir is writable");
            let log = dir.join("redis.log");
            let mut cmd = Command::new("redis-server");
            cmd.args(["--port", &port.to_string()])
                .args(["--bind", "127.0.0.1"])
                .args(["--save", ""])
                .args(["--appendonly", "no"])
                // A replica's first sync starts at once, not after 5 seconds.
                .args(["--repl-diskless-sync-delay", "0"])
                .args(["--daemonize", "no"])
                .arg("--dir")
                .arg(&dir)
                .arg("--logfile")
                .arg(&log);
            if cluster {
                cmd.args(["--cluster-enabled", "yes"])
                    .args(["--cluster-config-file", "nodes.conf"])
                    .args(["--cluster-node-timeout", NODE_TIMEOUT_MS]);
            }
            cmd.args(extra)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let child = match cmd.spawn() {
                Ok(c) => c,
                Err(e) if e.kind() == ErrorKind::NotFound => missing("redis-server"),
                Err(e) => panic!("cannot start redis-server: {e}"),
            };
            let mut node = Node { child, port };
            if node.wait_ready() {
                return node;
            }
            last_log = std::fs::read_to_string(&log).unwrap_or_default();
        }
        panic!("redis-server did not start on a free loopback port (5 tries); its log:\n{last_log}")
    }

    /// Waits until the server answers `PING`; `false` if it exited first.
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Some(out) = try_cli(self.port, &["ping"])
                && out.trim() == "PONG"
            {
                return true;
            }
            sleep(POLL);
        }
        false
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn url(port: u16) -> String {
    format!("redis://127.0.0.1:{port}")
}

/// A loopback port that is free now (and, for a cluster node, whose bus port is
/// free too).
fn free_port(cluster: bool) -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("loopback ports can be bound");
        let port = listener
            .local_addr()
            .expect("a bound socket has an address")
            .port();
        if !cluster {
            return port;
        }
        if port <= MAX_CLUSTER_PORT && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

fn require_binaries() {
    for bin in ["redis-server", "redis-cli"] {
        match Command::new(bin)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
        {
            Ok(s) if s.success() => {}
            Ok(s) => panic!("`{bin} --version` failed ({s}); is Redis installed correctly?"),
            Err(e) if e.kind() == ErrorKind::NotFound => missing(bin),
            Err(e) => panic!("cannot run {bin}: {e}"),
        }
    }
}

fn missing(bin: &str) -> ! {
    panic!(
        "{bin} is not installed (or not on PATH): the Redis store's tests need a real \
         redis-server and redis-cli. Install them with \
         `apt-get install redis-server redis-tools` (scripts/test does this)."
    )
}

/// Runs `redis-cli -p <port> <args>`; `None` if it failed.
fn try_cli(port: u16, args: &[&str]) -> Option<String> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.success() && !text.starts_with("Could not connect")).then_some(text)
}

fn cli(port: u16, args: &[&str]) -> String {
    try_cli(port, args).unwrap_or_else(|| panic!("redis-cli -p {port} {args:?} failed"))
}

/// The value of `field:` in `INFO <section>` of the node on `port`.
fn info_field(port: u16, section: &str, field: &str) -> Option<String> {
    info_field_cmd(port, &["info", section], field)
}

fn info_field_cmd(port: u16, args: &[&str], field: &str) -> Option<String> {
    field_of(&try_cli(port, args)?, field)
}

fn field_of(info: &str, field: &str) -> Option<String> {
    info.lines().find_map(|l| {
        let (k, v) = l.trim().split_once(':')?;
        (k == field).then(|| v.to_owned())
    })
}
