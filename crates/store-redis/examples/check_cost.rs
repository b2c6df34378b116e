//! What one session check (`load_session`) costs, on both sides of the wire.
//!
//! ```text
//! redis-server --port 18598 --save "" --appendonly no --bind 127.0.0.1 &
//! cargo run --release -p sessionguard-store-redis --example check_cost -- \
//!     [redis://127.0.0.1:18598] [sessions] [checks] [in flight]
//! ```
//!
//! Creates `sessions` (default 100 000) sidecar sessions, one user each, under a
//! fresh prefix; then runs `checks` (default 200 000) `load_session` calls on
//! random sessions with `in flight` (default 64) at a time, and prints:
//!
//! - Redis CPU per check: the server's `used_cpu_user + used_cpu_sys` growth
//!   (command execution, the script engine and socket I/O), and the
//!   `usec_per_call` of each command in `INFO commandstats` (execution only);
//! - this process's CPU per check (user + system, from `/proc/self/stat`);
//! - `MEMORY USAGE` per session of the session keys, the users' session sets and
//!   the shards' version hashes.
//!
//! Both CPU figures are CPU time, not wall time, so they hold up on a shared
//! machine better than throughput does. The keys are left in place (use a
//! throwaway server).

#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use sessionguard_core::{ClientInfo, SessionLimit, Store, TokenId};
use sessionguard_store_redis::{RedisConfig, RedisStore};
use sessionguard_test_kit::fixtures;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "redis://127.0.0.1:18598".into());
    let sessions: usize = args.next().map_or(Ok(100_000), |s| s.parse())?;
    let checks: usize = args.next().map_or(Ok(200_000), |s| s.parse())?;
    let in_flight: usize = args.next().map_or(Ok(64), |s| s.parse())?;
    // One thread: the figure is the cost of the checks, not of handing them
    // between threads.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run(url, sessions, checks, in_flight))
}

async fn run(url: String, sessions: usize, checks: usize, in_flight: usize) -> Result<()> {
    let mut config = RedisConfig::new([url.clone()]);
    // Short, like a deployment's: key names count in `MEMORY USAGE`.
    config.prefix = format!("c{:04x}", TokenId::random().shard().0);
    let prefix = config.prefix.clone();
    let store = RedisStore::connect(config).await?;
    let mut raw = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;

    // Sidecar sessions: one user each, no client metadata.
    let started = Instant::now();
    let mut ids = Vec::with_capacity(sessions);
    let mut pending = tokio::task::JoinSet::new();
    for i in 0..sessions {
        let user = fixtures::user(&format!("user-{i}"));
        let (_token, mut rec) = fixtures::session(&user, 0, 0);
        rec.client = ClientInfo::default();
        ids.push(rec.state.id);
        let store = store.clone();
        pending.spawn(async move { store.insert_session(rec, SessionLimit::NONE).await });
        if pending.len() >= in_flight {
            pending.join_next().await.expect("a pending insert")??;
        }
    }
    while let Some(done) = pending.join_next().await {
        done??;
    }
    println!(
        "created {sessions} sessions in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Warm up (connections, allocator), then measure.
    check_all(&store, &ids, 10_000.min(checks), in_flight).await?;
    redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .exec_async(&mut raw)
        .await?;
    let redis_before = redis_cpu(&mut raw).await?;
    let cpu_before = process_cpu()?;
    let started = Instant::now();
    check_all(&store, &ids, checks, in_flight).await?;
    let wall = started.elapsed().as_secs_f64();
    let cpu = process_cpu()? - cpu_before;
    let redis = redis_cpu(&mut raw).await? - redis_before;
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut raw)
        .await?;

    let per = |secs: f64| secs * 1e6 / checks as f64;
    println!(
        "{checks} checks, {in_flight} in flight: {:.0} checks/s",
        checks as f64 / wall
    );
    println!("client CPU per check (user + sys):  {:6.2} µs", per(cpu));
    println!("Redis CPU per check (user + sys):   {:6.2} µs", per(redis));
    for line in stats.lines().filter(|l| l.starts_with("cmdstat_")) {
        let name = line.split(':').next().unwrap_or("");
        if matches!(name, "cmdstat_config" | "cmdstat_info") {
            continue;
        }
        let field = |f: &str| {
            line.split([':', ','])
                .find_map(|kv| kv.strip_prefix(f)?.strip_prefix('='))
                .unwrap_or("?")
                .to_owned()
        };
        println!(
            "  {name}: {} calls, {} µs per call (execution)",
            field("calls"),
            field("usec_per_call")
        );
    }

    memory(&mut raw, &prefix, sessions).await
}

/// `count` checks of random sessions, `in_flight` at a time; every one must be found.
async fn check_all(
    store: &RedisStore,
    ids: &[TokenId],
    count: usize,
    in_flight: usize,
) -> Result<()> {
    let ids: Arc<[TokenId]> = ids.into();
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..in_flight {
        let (store, ids) = (store.clone(), Arc::clone(&ids));
        let share = count / in_flight + usize::from(w < count % in_flight);
        // xorshift: cheap, and different for every worker.
        let mut x = 0x9e37_79b9_7f4a_7c15_u64 ^ (w as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        workers.spawn(async move {
            for _ in 0..share {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let id = &ids[(x % ids.len() as u64) as usize];
                if store.load_session(id).await?.is_none() {
                    return Err(sessionguard_core::StoreError::Corrupt(format!(
                        "session {id} not found"
                    )));
                }
            }
            Ok(())
        });
    }
    while let Some(done) = workers.join_next().await {
        done??;
    }
    Ok(())
}

/// This process's CPU time (user + system, all threads), in seconds.
fn process_cpu() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name (which is in parentheses): utime is the
    // 12th and stime the 13th of them, in clock ticks (USER_HZ, 100 on Linux).
    let rest = stat.rsplit_once(')').ok_or("malformed /proc/self/stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    Ok(ticks as f64 / 100.0)
}

/// The server's CPU time (user + system), in seconds.
async fn redis_cpu(raw: &mut redis::aio::MultiplexedConnection) -> Result<f64> {
    let info: String = redis::cmd("INFO").arg("cpu").query_async(raw).await?;
    let field = |name: &str| -> f64 {
        info.lines()
            .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':')?.parse().ok())
            .unwrap_or(0.0)
    };
    Ok(field("used_cpu_user") + field("used_cpu_sys"))
}

/// `MEMORY USAGE` (exact) of every key under the prefix, by kind, per session.
async fn memory(
    raw: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
    sessions: usize,
) -> Result<()> {
    let mut keys = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(5000)
            .query_async(raw)
            .await?;
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    let mut by_kind: BTreeMap<String, (u64, usize)> = BTreeMap::new();
    for chunk in keys.chunks(1000) {
        let mut pipe = redis::pipe();
        for k in chunk {
            pipe.cmd("MEMORY").arg("USAGE").arg(k).arg("SAMPLES").arg(0);
        }
        let sizes: Vec<Option<u64>> = pipe.query_async(raw).await?;
        for (k, size) in chunk.iter().zip(sizes) {
            let kind = k.split(':').nth(2).unwrap_or("?").to_owned();
            let e = by_kind.entry(kind).or_default();
            e.0 += size.unwrap_or(0);
            e.1 += 1;
        }
    }
    println!("MEMORY USAGE per session ({sessions} sessions):");
    let mut total = 0;
    for (kind, (bytes, count)) in &by_kind {
        total += bytes;
        println!(
            "  {kind:6} {count:7} keys  {:6.1} B per key  {:6.1} B per session",
            *bytes as f64 / *count as f64,
            *bytes as f64 / sessions as f64
        );
    }
    println!(
        "  all     {:6.1} B per session",
        total as f64 / sessions as f64
    );
    Ok(())
}
