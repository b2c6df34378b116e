//! `sgbench`: the benchmark-only helper of `scripts/bench`.
//!
//! | subcommand | does |
//! |---|---|
//! | `peer --mode bare\|tower-sessions\|tower-sessions-redis --listen ADDR [--sessions N --cookies FILE] [--redis URL --pool P]` | a peer server: bare axum hello world (the ceiling), axum + tower-sessions `MemoryStore`, or axum + tower-sessions' `RedisStore` over fred (a pool of P clients, default 1) on a loopback Redis (both seeded with N sessions whose cookie values go to FILE) |
//! | `peer --mode sg-axum --store memory\|sqlite --origin URL --listen ADDR [--sessions N --cookies FILE] [--db FILE]` | scenario 8: the hello handler behind `sessionguard-axum` in-process, over a `MemoryStore` seeded with N sessions (tokens to FILE) or the SQLite store at `--db` |
//! | `peer --mode bare-auth --listen ADDR` | scenario 9b: a bare handler answering `GET /v1/auth`'s identity headers with no check |
//! | `seed-sessions --url URL --n N --out FILE` | N sidecar sessions through `POST /v1/admin/sessions` (admin token from `SGBENCH_ADMIN_TOKEN`); writes `token\tsession_id\tuser_id` lines |
//! | `mint --keys FILE --iss ISS --aud AUD --in FILE --out FILE` | one access token (JWT) per session of `--in`, signed with the server's key file |
//! | `seed-refresh --url URL --chains N --out FILE --login-out FILE` | N users with a password, one `grant_type=password` grant each; writes the refresh tokens and the first user's `username\tpassword` |
//! | `hash-time [--rounds R]` | median seconds of one argon2id hash with `PasswordHasher::owasp()` |
//! | `mem --variant V --n N` | bytes per live session of an in-process store filled with N records (RSS delta ÷ N) |
//! | `revoke --store sqlite --dir DIR \| --store redis --redis URL [--prefix P] [--sessions N --reps-one R --reps-many R --reason CODE]` | revoke-all through the engine on the real store (a SQLite data dir on disk, or a loopback Redis): median and max wall time of `Engine::revoke_user` for a user with 1 and with N sessions (default 10 000), then checks that they are refused: `store\tsessions\treps\tmedian_ms\tmax_ms\tchecked` |
//! | `redis-mem --redis URL (--keys FILE \| --prefix P)` | exact `MEMORY USAGE` of the listed keys, or of the sessionguard keys under prefix P grouped by kind: `class\tdescription\tkeys\tbytes` |
//! | `table --results FILE` | the markdown results table from the script's results file |
//!
//! Nothing here is product code; it never listens anywhere but where it is told
//! (the script only tells it loopback addresses).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufWriter, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let cmd = args
        .next()
        .ok_or_else(|| anyhow!("usage: sgbench <subcommand> [--key value]..."))?;
    let opts = Opts::parse(args)?;
    match cmd.as_str() {
        "peer" => runtime()?.block_on(peer(&opts)),
        "seed-sessions" => runtime()?.block_on(seed_sessions(&opts)),
        "seed-refresh" => runtime()?.block_on(seed_refresh(&opts)),
        "mint" => mint(&opts),
        "hash-time" => hash_time(&opts),
        "mem" => mem(&opts),
        "redis-mem" => runtime()?.block_on(redis_mem(&opts)),
        "revoke" => runtime()?.block_on(revoke(&opts)),
        "table" => table(&opts),
        other => bail!("unknown subcommand {other}"),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    // Like the product: a multi-thread runtime with one worker per available core
    // (the script pins processes with taskset, which this respects).
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// `--key value` pairs.
struct Opts(HashMap<String, String>);

impl Opts {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Self> {
        let mut map = HashMap::new();
        while let Some(k) = args.next() {
            let key = k
                .strip_prefix("--")
                .ok_or_else(|| anyhow!("expected --key, got {k}"))?;
            let v = args
                .next()
                .ok_or_else(|| anyhow!("--{key} needs a value"))?;
            map.insert(key.to_owned(), v);
        }
        Ok(Opts(map))
    }
    fn get(&self, key: &str) -> Result<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| anyhow!("missing --{key}"))
    }
    fn num(&self, key: &str, default: usize) -> Result<usize> {
        self.0.get(key).map_or(Ok(default), |v| {
            v.parse().with_context(|| format!("--{key}"))
        })
    }
}

fn create_file(path: &str) -> Result<BufWriter<std::fs::File>> {
    Ok(BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("create {path}"))?,
    ))
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

// ---------------------------------------------------------------------------
// Peer servers
// ---------------------------------------------------------------------------

async fn peer(opts: &Opts) -> Result<()> {
    use axum::Router;
    use axum::routing::get;

    let listen: SocketAddr = opts.get("listen")?.parse()?;
    if !listen.ip().is_loopback() {
        bail!("the benchmark peers listen on loopback only");
    }
    let app = match opts.get("mode")? {
        "bare" => Router::new().route("/", get(|| async { "hello" })),
        "tower-sessions" => {
            use tower_sessions::{SessionManagerLayer, SessionStore, session::Id, session::Record};
            use tower_sessions_memory_store::MemoryStore;

            let n = opts.num("sessions", 100_000)?;
            let store = MemoryStore::default();
            let mut out = create_file(opts.get("cookies")?)?;
            let expiry = time::OffsetDateTime::now_utc() + time::Duration::days(1);
            for i in 0..n {
                let mut data = HashMap::new();
                data.insert(
                    "user_id".to_owned(),
                    serde_json::json!(format!("app-user-{i:06}")),
                );
                let mut record = Record {
                    id: Id::default(),
                    data,
                    expiry_date: expiry,
                };
                store
                    .create(&mut record)
                    .await
                    .map_err(|e| anyhow!("{e}"))?;
                writeln!(out, "{}", record.id)?;
            }
            out.flush()?;
            // Plain cookie settings (no signing): the cheapest tower-sessions setup.
            let layer = SessionManagerLayer::new(store).with_secure(true);
            Router::new().route("/", get(ts_read)).layer(layer)
        }
        "tower-sessions-redis" => {
            // tower-sessions 0.14 with its published Redis store (see Cargo.toml for
            // why 0.14), over fred; set up as the store's documentation shows.
            use tower_sessions_014::{
                SessionManagerLayer, SessionStore, session::Id, session::Record,
            };
            use tower_sessions_redis_store::RedisStore;
            use tower_sessions_redis_store::fred::prelude::{ClientLike as _, Config, Pool};

            let n = opts.num("sessions", 100_000)?;
            let url = opts.get("redis")?;
            if !url.starts_with("redis://127.") {
                bail!("the benchmark peers talk to a loopback Redis only");
            }
            let pool = Pool::new(
                Config::from_url(url)?,
                None,
                None,
                None,
                opts.num("pool", 1)?,
            )?;
            pool.init().await?;
            let store = RedisStore::new(pool);
            let expiry = time::OffsetDateTime::now_utc() + time::Duration::days(1);
            // Created through the store (SET NX with EXAT), 64 at a time.
            let ids: Vec<String> = {
                use futures_util::stream::{self, StreamExt as _, TryStreamExt as _};
                stream::iter(0..n)
                    .map(|i| {
                        let store = store.clone();
                        async move {
                            let mut data = HashMap::new();
                            data.insert(
                                "user_id".to_owned(),
                                serde_json::json!(format!("app-user-{i:06}")),
                            );
                            let mut record = Record {
                                id: Id::default(),
                                data,
                                expiry_date: expiry,
                            };
                            store
                                .create(&mut record)
                                .await
                                .map_err(|e| anyhow!("{e}"))?;
                            Ok::<_, anyhow::Error>(record.id.to_string())
                        }
                    })
                    .buffer_unordered(64)
                    .try_collect()
                    .await?
            };
            let mut out = create_file(opts.get("cookies")?)?;
            for id in &ids {
                writeln!(out, "{id}")?;
            }
            out.flush()?;
            let layer = SessionManagerLayer::new(store).with_secure(true);
            Router::new().route("/", get(ts_redis_read)).layer(layer)
        }
        "sg-axum" => sg_axum(opts).await?,
        "bare-auth" => Router::new().route("/v1/auth", axum::routing::any(bare_auth)),
        other => bail!("unknown peer mode {other}"),
    };
    let listener = tokio::net::TcpListener::bind(listen).await?;
    say(&format!(
        "peer listening on http://{}",
        listener.local_addr()?
    ));
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! { _ = term.recv() => {}, _ = tokio::signal::ctrl_c() => {} }
        })
        .await?;
    Ok(())
}

/// The read-only tower-sessions handler: loads the session and one value from it.
async fn ts_read(session: tower_sessions::Session) -> Result<String, axum::http::StatusCode> {
    use axum::http::StatusCode;
    match session.get::<String>("user_id").await {
        Ok(Some(user)) => Ok(user),
        Ok(None) => Err(StatusCode::UNAUTHORIZED),
        Err(_) => Err(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

/// Scenario 8: the hello handler behind `sessionguard-axum` in-process. With
/// `--store memory`, `--sessions N` sidecar sessions are created through the
/// engine at start and their tokens written to `--cookies FILE`; with `--store
/// sqlite`, the embedded store at `--db FILE` (a server's seeded data folder,
/// the server stopped) is opened as it is. The handler reads the session's
/// user, as 2's reads one value.
async fn sg_axum(opts: &Opts) -> Result<axum::Router> {
    use axum::routing::get;
    use sessionguard_axum::InProcess;
    use sessionguard_core::{ClientInfo, Engine, MemoryStore, Policy, UserId};

    // As the server in the benchmark: a long idle timeout, so that no seeded
    // session ends during the run (the check does not depend on it).
    let mut policy = Policy::default();
    policy.idle_timeout = Duration::from_secs(8 * 3600);
    let origin = opts.get("origin")?;
    let app = match opts.get("store")? {
        "memory" => {
            let engine = Engine::new(MemoryStore::new(), policy)?;
            let n = opts.num("sessions", 100_000)?;
            let mut out = create_file(opts.get("cookies")?)?;
            for i in 0..n {
                let user = UserId::new(&format!("app-user-{i:06}"))?;
                let issued = engine
                    .create_session(&user, 0, ClientInfo::default())
                    .await?;
                writeln!(out, "{}", issued.token.reveal().as_str())?;
            }
            out.flush()?;
            let sessions = InProcess::new(engine, origin);
            axum::Router::new()
                .route("/", get(sg_read))
                .layer(sessions.layer())
        }
        "sqlite" => {
            let store = sessionguard_store_sqlite::SqliteStore::open(opts.get("db")?)?;
            let sessions = InProcess::new(Engine::new(store, policy)?, origin);
            axum::Router::new()
                .route("/", get(sg_read))
                .layer(sessions.layer())
        }
        other => bail!("unknown --store {other}"),
    };
    Ok(app)
}

/// The sessionguard-axum handler of scenario 8: the session's user.
async fn sg_read(session: sessionguard_axum::Session) -> String {
    session.user_id().as_str().to_owned()
}

/// Scenario 9b: a bare handler answering what `GET /v1/auth` answers for a
/// live cookie (the identity headers, no body) without checking anything.
async fn bare_auth() -> impl axum::response::IntoResponse {
    (
        [
            ("x-auth-user-id", "app-user-000042"),
            ("x-auth-session-id", "AAECAwQFBgcICQoLDA0ODw"),
            ("x-auth-roles", ""),
            ("x-auth-step-up-until", "2026-12-01T12:05:00Z"),
            (
                "x-auth-csrf-token",
                "r7eEkbRmz900ZwEHw0_Mcigw8b4vV6aU0jxP0CAid_s",
            ),
        ],
        "",
    )
}

/// The same handler for scenario 7a (tower-sessions 0.14, the Redis store's release).
async fn ts_redis_read(
    session: tower_sessions_014::Session,
) -> Result<String, axum::http::StatusCode> {
    use axum::http::StatusCode;
    match session.get::<String>("user_id").await {
        Ok(Some(user)) => Ok(user),
        Ok(None) => Err(StatusCode::UNAUTHORIZED),
        Err(_) => Err(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

// ---------------------------------------------------------------------------
// Redis memory
// ---------------------------------------------------------------------------

/// `MEMORY USAGE key SAMPLES 0` (exact) of every key listed in `--keys FILE`
/// (first tab-separated field), or of every key matching `--prefix P` (`P:*`),
/// grouped by what the key holds. Prints `class\tdescription\tkeys\tbytes` lines.
async fn redis_mem(opts: &Opts) -> Result<()> {
    use futures_util::stream::{self, StreamExt as _, TryStreamExt as _};
    use tower_sessions_redis_store::fred::prelude::{
        Client, ClientLike as _, Config, MemoryInterface as _,
    };

    let url = opts.get("redis")?;
    if !url.starts_with("redis://127.") {
        bail!("redis-mem reads a loopback Redis only");
    }
    let client = Client::new(Config::from_url(url)?, None, None, None);
    client.init().await?;
    let keys: Vec<String> = if let Ok(file) = opts.get("keys") {
        let text = std::fs::read_to_string(file)?;
        text.lines()
            .filter_map(|l| l.split('\t').next())
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .collect()
    } else {
        let prefix = opts.get("prefix")?;
        let found: Vec<tower_sessions_redis_store::fred::types::Key> = client
            .scan_buffered(format!("{prefix}:*"), Some(1000), None)
            .try_collect()
            .await?;
        found
            .iter()
            .filter_map(|k| k.as_str().map(str::to_owned))
            .collect()
    };
    let sizes: Vec<(String, u64)> = stream::iter(keys)
        .map(|k| {
            let client = client.clone();
            async move {
                let bytes: Option<u64> = client.memory_usage(k.as_str(), Some(0)).await?;
                Ok::<_, anyhow::Error>((k, bytes.unwrap_or(0)))
            }
        })
        .buffer_unordered(128)
        .try_collect()
        .await?;
    let mut groups: std::collections::BTreeMap<&'static str, (u64, u64)> = Default::default();
    for (k, bytes) in &sizes {
        let class = if opts.get("keys").is_ok() {
            "listed"
        } else {
            key_class(k)
        };
        let g = groups.entry(class).or_default();
        g.0 += 1;
        g.1 += bytes;
    }
    for (class, (count, bytes)) in groups {
        say(&format!(
            "{class}\t{}\t{count}\t{bytes}",
            class_description(class)
        ));
    }
    client.quit().await?;
    Ok(())
}

/// What a sessionguard Redis key holds, from its layout (`P:{T}:s:<id>`, …; see
/// crates/store-redis/src/keys.rs).
fn key_class(key: &str) -> &'static str {
    let Some((_, rest)) = key.split_once(':') else {
        return "other";
    };
    if rest.starts_with("{events}") {
        return "events";
    }
    if rest.starts_with("{keys}") {
        return "keys";
    }
    let Some((_, rest)) = rest.split_once("}:") else {
        return "other";
    };
    match rest.split(':').next().unwrap_or("") {
        "s" => "s",
        "us" => "us",
        "ua" => "ua",
        "epoch" => "epoch",
        "ver" => "ver",
        "access" => "access",
        "cred" => "cred",
        "r" => "r",
        "a" => "a",
        "name" => "name",
        _ => "other",
    }
}

fn class_description(class: &str) -> &'static str {
    match class {
        "listed" => "the listed keys",
        "s" => "session hashes (`P:{T}:s:<id>`)",
        "us" => "users' session sets (`P:{T}:us:<user>`)",
        "ua" => "users' API-token sets",
        "epoch" => "per-shard credential-epoch hashes (`P:{T}:epoch`)",
        "ver" => "per-shard version hashes (`P:{T}:ver`)",
        "access" => "per-shard profile and roles hashes",
        "cred" => "per-shard credential hashes",
        "r" => "refresh tokens",
        "a" => "API tokens",
        "name" => "username index",
        "events" => "audit log (`P:{events}:*`)",
        "keys" => "shared signing keys (`P:{keys}:signing`)",
        _ => "other keys",
    }
}

// ---------------------------------------------------------------------------
// Seeding sessionguard
// ---------------------------------------------------------------------------

fn admin_token() -> Result<String> {
    std::env::var("SGBENCH_ADMIN_TOKEN").context("SGBENCH_ADMIN_TOKEN is not set")
}

fn client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(64)
        .build()?)
}

async fn seed_sessions(opts: &Opts) -> Result<()> {
    let url = opts.get("url")?.trim_end_matches('/').to_owned();
    let n = opts.num("n", 100_000)?;
    let conc = opts.num("concurrency", 32)?;
    let token = admin_token()?;
    let http = client()?;
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (http, next, url, token) = (http.clone(), next.clone(), url.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(got);
                }
                let user = format!("app-user-{i:06}");
                let res = http
                    .post(format!("{url}/v1/admin/sessions"))
                    .bearer_auth(&token)
                    .json(&serde_json::json!({ "user_id": user }))
                    .send()
                    .await?;
                let status = res.status();
                let body: serde_json::Value = res.json().await?;
                if status.as_u16() != 201 {
                    bail!("POST /v1/admin/sessions answered {status}: {body}");
                }
                let field = |k: &str| {
                    body[k]
                        .as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| anyhow!("no {k}"))
                };
                got.push(format!(
                    "{}\t{}\t{}",
                    field("session_token")?,
                    field("session_id")?,
                    field("user_id")?
                ));
            }
        }));
    }
    let mut out = create_file(opts.get("out")?)?;
    for t in tasks {
        for line in t.await?? {
            writeln!(out, "{line}")?;
        }
    }
    out.flush()?;
    let secs = started.elapsed().as_secs_f64();
    say(&format!(
        "seeded {n} sidecar sessions in {secs:.1} s ({:.0}/s)",
        n as f64 / secs
    ));
    Ok(())
}

async fn seed_refresh(opts: &Opts) -> Result<()> {
    let url = opts.get("url")?.trim_end_matches('/').to_owned();
    let chains = opts.num("chains", 64)?;
    let http = client()?;
    let password = format!("bench-password-{}", sessionguard_core::TokenId::random());
    let mut out = create_file(opts.get("out")?)?;
    let mut first_user = None;
    // One user per chain: the default profile allows 10 concurrent sessions per
    // user, so more chains of one user would displace each other. Sequential: the
    // server hashes one password at a time per core anyway.
    for i in 0..chains {
        let username = format!("bench-{}-{i}", std::process::id());
        let res = http
            .post(format!("{url}/v1/admin/users"))
            .bearer_auth(admin_token()?)
            .json(&serde_json::json!({ "username": username, "password": password }))
            .send()
            .await?;
        if res.status().as_u16() != 201 {
            bail!(
                "POST /v1/admin/users answered {}: {}",
                res.status(),
                res.text().await?
            );
        }
        let res = http
            .post(format!("{url}/v1/token"))
            .form(&[
                ("grant_type", "password"),
                ("username", &username),
                ("password", &password),
            ])
            .send()
            .await?;
        let status = res.status();
        let body: serde_json::Value = res.json().await?;
        let refresh = body["refresh_token"]
            .as_str()
            .ok_or_else(|| anyhow!("grant answered {status}: {body}"))?;
        writeln!(out, "{refresh}")?;
        first_user.get_or_insert(username);
    }
    out.flush()?;
    let username = first_user.ok_or_else(|| anyhow!("--chains must be at least 1"))?;
    let mut login = create_file(opts.get("login-out")?)?;
    writeln!(login, "{username}\t{password}")?;
    login.flush()?;
    say(&format!("made {chains} refresh chains, one user each"));
    Ok(())
}

fn mint(opts: &Opts) -> Result<()> {
    use sessionguard_core::{Clock as _, SessionId, SystemClock};
    use sessionguard_jwt::{AccessClaims, Algorithm, KeySet};

    let keys = KeySet::load_or_create(opts.get("keys")?, Algorithm::EdDSA, SystemClock.now())?;
    let (iss, aud) = (opts.get("iss")?, opts.get("aud")?);
    let ttl = Duration::from_secs(opts.num("ttl-secs", 3600)? as u64);
    let input = std::fs::File::open(opts.get("in")?)?;
    let mut out = create_file(opts.get("out")?)?;
    let now = SystemClock.now();
    let mut n = 0usize;
    for line in std::io::BufReader::new(input).lines() {
        let line = line?;
        let mut f = line.split('\t');
        let (_, sid, sub) = (f.next(), f.next(), f.next());
        let (Some(sid), Some(sub)) = (sid, sub) else {
            bail!("bad sessions line")
        };
        let sid = SessionId::parse(sid).map_err(|e| anyhow!("bad session id: {e:?}"))?;
        let claims = AccessClaims::new(iss, sub, aud, sid, now, ttl);
        writeln!(out, "{}", keys.sign(&claims)?)?;
        n += 1;
    }
    out.flush()?;
    say(&format!(
        "minted {n} access tokens (EdDSA, ttl {} s)",
        ttl.as_secs()
    ));
    Ok(())
}

// ---------------------------------------------------------------------------
// Revoke-all
// ---------------------------------------------------------------------------

/// Times `Engine::revoke_user` (what `POST /v1/admin/users/{id}/revoke` calls) on a
/// real durable store: for a user with 1 session and for a user with `--sessions`
/// (default 10 000), each repetition on a fresh user whose sessions are created
/// first through `Engine::create_session` (what `POST /v1/admin/sessions` calls),
/// after one untimed revoke-all of another user (a warm-up). Only the revoke-all
/// call is timed. After each one, outside the timing, a sample of the user's
/// sessions (all of them for 1; 100 random ones plus the first and the last
/// otherwise) must be refused with the reason given, and a session of another
/// user must still be valid. Prints one line per user size:
/// `store\tsessions\treps\tmedian_ms\tmax_ms\tchecked` (checked: the user's
/// sessions checked after each revoke-all).
async fn revoke(opts: &Opts) -> Result<()> {
    use sessionguard_core::{Engine, Policy, Reason};

    let reason_code = opts
        .0
        .get("reason")
        .map_or("revoked_by_admin", String::as_str);
    let reason = Reason::from_code(reason_code)
        .filter(|r| {
            [
                Reason::RevokedByAdmin,
                Reason::SignedOutEverywhere,
                Reason::PasswordChanged,
            ]
            .contains(r)
        })
        .ok_or_else(|| {
            anyhow!("--reason: one of revoked_by_admin, signed_out_everywhere, password_changed")
        })?;
    let many = opts.num("sessions", 10_000)?;
    let plan = [
        (1, opts.num("reps-one", 5)?),
        (many, opts.num("reps-many", 3)?),
    ];
    // Users of this run only, so that runs can share a data dir or a Redis.
    let run = format!(
        "revoke-{}-{}",
        std::process::id(),
        sessionguard_core::TokenId::random()
    );
    // Unlimited sessions per user: the measured user holds `--sessions` of them,
    // beyond the default profile's limit of 10.
    let mut policy = Policy::default();
    policy.max_sessions = 0;
    match opts.get("store")? {
        "sqlite" => {
            use sessionguard_store_sqlite::SqliteStore;
            let path = std::path::Path::new(opts.get("dir")?).join("sessionguard.db");
            let store = tokio::task::spawn_blocking(move || SqliteStore::open(path)).await??;
            let engine = Engine::new(store, policy)?;
            revoke_runs(&engine, "sqlite", &run, &plan, reason).await?;
        }
        "redis" => {
            use sessionguard_store_redis::{RedisConfig, RedisStore};
            let url = opts.get("redis")?;
            if !url.starts_with("redis://127.") {
                bail!("revoke talks to a loopback Redis only");
            }
            let mut config = RedisConfig::new([url]);
            config.prefix = opts
                .0
                .get("prefix")
                .cloned()
                .unwrap_or_else(|| "sgbench-revoke".into());
            let engine = Engine::new(RedisStore::connect(config).await?, policy)?;
            revoke_runs(&engine, "redis", &run, &plan, reason).await?;
        }
        other => bail!("--store: sqlite or redis, not {other}"),
    }
    Ok(())
}

async fn revoke_runs<S: sessionguard_core::Store>(
    engine: &sessionguard_core::Engine<S>,
    store: &str,
    run: &str,
    plan: &[(usize, usize)],
    reason: sessionguard_core::Reason,
) -> Result<()> {
    use sessionguard_core::UserId;

    // Another user's session, which no revoke-all of this run may end.
    let bystander = UserId::new(&format!("{run}-bystander"))?;
    let bystander_token = create_sessions(engine, &bystander, 1).await?.remove(0);
    // One untimed revoke-all first, so that one-time costs (SQLite preparing its
    // statements, the first write to a fresh file) land in no repetition.
    let warm_up = UserId::new(&format!("{run}-warm-up"))?;
    create_sessions(engine, &warm_up, 1).await?;
    engine.revoke_user(&warm_up, reason).await?;
    for &(n, reps) in plan {
        let mut times = Vec::with_capacity(reps);
        let mut checked = 0;
        for rep in 0..reps {
            let user = UserId::new(&format!("{run}-{n}-{rep}"))?;
            let started = Instant::now();
            let tokens = create_sessions(engine, &user, n).await?;
            let created = started.elapsed().as_secs_f64();
            let sample = revoke_sample(&tokens, rep);
            // Genuinely live before: otherwise "refused after" would prove nothing.
            for &i in &sample {
                engine
                    .status(&tokens[i])
                    .await
                    .with_context(|| format!("session {i} of {n} before revoke-all"))?;
            }

            let t = Instant::now();
            engine.revoke_user(&user, reason).await?;
            let took = t.elapsed();

            for &i in &sample {
                match engine.status(&tokens[i]).await {
                    Err(sessionguard_core::Error::Rejected(r)) if r.reason == reason => {}
                    other => bail!(
                        "session {i} of {n} after revoke-all: expected {reason}, got {other:?}"
                    ),
                }
            }
            engine
                .status(&bystander_token)
                .await
                .context("another user's session after revoke-all")?;
            checked = sample.len();
            eprintln!(
                "revoke {store}: {n} session(s), rep {}: created in {created:.2} s ({:.0}/s), revoke-all {:.3} ms, {checked} checked",
                rep + 1,
                n as f64 / created,
                took.as_secs_f64() * 1e3
            );
            times.push(took.as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        let median = if times.len() % 2 == 1 {
            times[times.len() / 2]
        } else {
            (times[times.len() / 2 - 1] + times[times.len() / 2]) / 2.0
        };
        let max = times.last().copied().unwrap_or(f64::NAN);
        say(&format!(
            "{store}\t{n}\t{reps}\t{median:.3}\t{max:.3}\t{checked}"
        ));
    }
    Ok(())
}

/// `n` sidecar sessions of `user`, as `POST /v1/admin/sessions` makes them (the
/// user's current epoch, no client metadata), 32 at a time. Their tokens.
async fn create_sessions<S: sessionguard_core::Store>(
    engine: &sessionguard_core::Engine<S>,
    user: &sessionguard_core::UserId,
    n: usize,
) -> Result<Vec<String>> {
    use futures_util::stream::{self, StreamExt as _, TryStreamExt as _};
    use sessionguard_core::ClientInfo;

    let epoch = engine.store().user_epoch(user).await?.epoch;
    stream::iter(0..n)
        .map(|_| async move {
            let issued = engine
                .create_session(user, epoch, ClientInfo::default())
                .await?;
            Ok::<_, anyhow::Error>(issued.token.reveal().to_string())
        })
        .buffered(32)
        .try_collect()
        .await
}

/// Which sessions to check after a revoke-all: all of them up to 102, else the
/// first, the last and 100 picked at random (a different draw per repetition).
fn revoke_sample(tokens: &[String], rep: usize) -> Vec<usize> {
    let n = tokens.len();
    if n <= 102 {
        return (0..n).collect();
    }
    let mut state =
        0x9E37_79B9_7F4A_7C15_u64 ^ (rep as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03);
    let mut sample = vec![0, n - 1];
    sample.extend((0..100).map(|_| {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_F491_4F6C_DD1D) % n as u64) as usize
    }));
    sample
}

// ---------------------------------------------------------------------------
// argon2 bound
// ---------------------------------------------------------------------------

fn hash_time(opts: &Opts) -> Result<()> {
    use sessionguard_core::{Password, PasswordHasher};
    let rounds = opts.num("rounds", 7)?;
    let hasher = PasswordHasher::owasp(); // hashes its dummy once: a warm-up
    let pw = Password::new_for_setting("correct horse battery staple".into())
        .map_err(|e| anyhow!("{e}"))?;
    let mut times: Vec<f64> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(hasher.hash(&pw));
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    say(&format!("{:.6}", times[times.len() / 2]));
    Ok(())
}

// ---------------------------------------------------------------------------
// Memory per live session
// ---------------------------------------------------------------------------

fn rss_bytes() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or_else(|| anyhow!("no VmRSS"))?;
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow!("bad VmRSS"))?
        .parse()?;
    Ok(kb * 1024)
}

/// Prints `variant\tn\tbytes_per_session\trss_delta`.
fn mem(opts: &Opts) -> Result<()> {
    use sessionguard_core::*;
    let n = opts.num("n", 1_000_000)?;
    let variant = opts.get("variant")?.to_owned();
    let now = Timestamp::from_millis(1_800_000_000_000);
    // The baseline is taken before anything is made, so that the heap blocks a
    // record owns (the user id's `Arc<str>`, a user agent) count. The staging
    // vectors are far above glibc's mmap threshold: they go back to the OS when
    // freed, before the second reading.
    let before = rss_bytes()?;
    let after;
    match variant.as_str() {
        // sidecar: one session per user, no client metadata (POST /v1/admin/sessions without UA/IP)
        // login: one session per user, with a 111-byte user agent and an IPv4 address
        // shared: ten sessions per user, no client metadata
        "sg-sidecar" | "sg-login" | "sg-shared" => {
            let per_user = if variant == "sg-shared" { 10 } else { 1 };
            let ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";
            let users: Vec<UserId> = (0..n.div_ceil(per_user))
                .map(|_| UserId::random())
                .collect();
            let records: Vec<SessionRecord> = (0..n)
                .map(|i| {
                    let user = users[i / per_user].clone();
                    // As the engine makes them: the token id carries its user's shard.
                    let token = Token::generate_in(TokenKind::Session, user.shard());
                    let client = if variant == "sg-login" {
                        ClientInfo::new(Some(ua), Some("203.0.113.7".parse().expect("ip")))
                    } else {
                        ClientInfo::default()
                    };
                    SessionRecord {
                        // The fields of a fresh session on the default profile, as
                        // `Engine` fills them at login or sidecar creation.
                        state: SessionState {
                            id: token.id(),
                            verifier_hash: token.verifier_hash(),
                            user_id: user,
                            epoch: 0,
                            created_at: now,
                            last_seen_at: now,
                            idle_deadline: now.saturating_add(Duration::from_secs(1800)),
                            absolute_deadline: now.saturating_add(Duration::from_secs(43_200)),
                            revoked: None,
                            profile: None,
                            privileges: 0,
                            token_issued_at: now,
                            elevated_until: None,
                            previous: None,
                            displaced_by: None,
                            csrf_basis: None,
                        },
                        client,
                    }
                })
                .collect();
            // The user ids are shared (Arc) between a user's sessions, as in the server.
            drop(users);
            let index = MemoryIndex::new();
            for r in records {
                index
                    .insert_session(r, SessionLimit::NONE)
                    .map_err(|e| anyhow!("{e}"))?;
            }
            after = rss_bytes()?;
            assert_eq!(index.session_count(), n);
            std::hint::black_box(&index);
        }
        "tower-sessions" => {
            use tower_sessions::{SessionStore, session::Id, session::Record};
            let rt = tokio::runtime::Builder::new_current_thread().build()?;
            let store = tower_sessions_memory_store::MemoryStore::default();
            let expiry = time::OffsetDateTime::now_utc() + time::Duration::days(1);
            let users: Vec<String> = (0..n).map(|_| format!("u_{}", TokenId::random())).collect();
            rt.block_on(async {
                for u in users {
                    let mut data = HashMap::new();
                    data.insert("user_id".to_owned(), serde_json::Value::String(u));
                    let mut record = Record {
                        id: Id::default(),
                        data,
                        expiry_date: expiry,
                    };
                    store
                        .create(&mut record)
                        .await
                        .map_err(|e| anyhow!("{e}"))?;
                }
                Ok::<_, anyhow::Error>(())
            })?;
            after = rss_bytes()?;
            std::hint::black_box(&store);
        }
        "sizes" => {
            use sessionguard_core::token::VerifierHash;
            use std::mem::size_of;
            let lines = [
                (
                    "SessionRecord (as loaded; the index keeps a 96 B slot, rare fields boxed)",
                    size_of::<SessionRecord>(),
                ),
                ("  SessionState", size_of::<SessionState>()),
                ("    SessionId (16-byte selector)", size_of::<SessionId>()),
                ("    VerifierHash (SHA-256)", size_of::<VerifierHash>()),
                ("    UserId (Arc<str> fat pointer)", size_of::<UserId>()),
                ("    epoch u64", 8),
                ("    privileges u64", 8),
                (
                    "    5 x Timestamp (created, last seen, idle, absolute, token issued)",
                    5 * size_of::<Timestamp>(),
                ),
                (
                    "    Option<Timestamp> (elevated_until)",
                    size_of::<Option<Timestamp>>(),
                ),
                ("    Option<Revocation>", size_of::<Option<Revocation>>()),
                ("    Option<ProfileName>", size_of::<Option<ProfileName>>()),
                (
                    "    Option<ReplacedToken> (previous)",
                    size_of::<Option<ReplacedToken>>(),
                ),
                (
                    "    Option<Box<ClientInfo>> (displaced_by)",
                    size_of::<Option<Box<ClientInfo>>>(),
                ),
                (
                    "    Option<VerifierHash> (csrf_basis)",
                    size_of::<Option<VerifierHash>>(),
                ),
                (
                    "  ClientInfo (Option<Box<str>> + Option<IpAddr>)",
                    size_of::<ClientInfo>(),
                ),
                ("SessionId (map key)", size_of::<SessionId>()),
                (
                    "UserEpoch (per user; kept aside in the index only once bumped)",
                    size_of::<UserEpoch>(),
                ),
            ];
            for (k, v) in lines {
                say(&format!("{k}\t{v}"));
            }
            return Ok(());
        }
        other => bail!("unknown variant {other}"),
    }
    let delta = after.saturating_sub(before);
    say(&format!(
        "{variant}\t{n}\t{:.0}\t{delta}",
        delta as f64 / n as f64
    ));
    Ok(())
}

// ---------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------

/// One measured scenario, as the script records it.
struct Row {
    id: String,
    label: String,
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    requests: u64,
    bad: u64,
    server_cpu: String,
    core1: String,
    before: String,
}

/// Reads the script's results file: `row\tid\tlabel\trps\tp50\tp99\trequests\tbad\tserver_cpu\tcore1\tbefore`
/// and `kv\tkey\tvalue` lines; prints the markdown table with ratios and targets.
fn table(opts: &Opts) -> Result<()> {
    let text = std::fs::read_to_string(opts.get("results")?)?;
    let mut rows: Vec<Row> = Vec::new();
    let mut kv: HashMap<String, String> = HashMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        match f.first() {
            Some(&"row") if f.len() >= 11 => rows.push(Row {
                id: f[1].into(),
                label: f[2].into(),
                rps: f[3].parse()?,
                p50_us: f[4].parse()?,
                p99_us: f[5].parse()?,
                requests: f[6].parse()?,
                bad: f[7].parse()?,
                server_cpu: f[8].into(),
                core1: f[9].into(),
                before: f[10].into(),
            }),
            Some(&"kv") if f.len() >= 3 => {
                kv.insert(f[1].into(), f[2].into());
            }
            _ => {}
        }
    }
    let rps = |id: &str| rows.iter().find(|r| r.id == id).map(|r| r.rps);
    let ratio = |a: &str, b: &str| match (rps(a), rps(b)) {
        (Some(x), Some(y)) if y > 0.0 => Some(x / y),
        _ => None,
    };
    let verdict = |r: Option<f64>, target: f64| match r {
        Some(r) => format!(
            "{r:.2}× (target ≥ {target}×: {})",
            if r >= target { "met" } else { "**missed**" }
        ),
        None => "n/a".into(),
    };
    let plain = |r: Option<f64>| r.map_or("n/a".into(), |r| format!("{r:.2}×"));
    let ms = |us: f64| format!("{:.2}", us / 1000.0);

    let mut out = String::new();
    let _ = writeln!(
        out,
        "| # | scenario | req/s | p50 ms | p99 ms | requests | non-2xx/errors | server process CPU (core 0 busy) | core 1 busy (load generator) | machine busy before / others during | ratios and targets |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for r in &rows {
        let ratios = match r.id.as_str() {
            "3a" => format!(
                "vs tower-sessions (2): {}; vs bare axum (1): {}",
                verdict(ratio("3a", "2"), 1.15),
                verdict(ratio("3a", "1"), 0.95)
            ),
            "3b" => format!(
                "vs tower-sessions (2): {}; vs bare axum (1): {}",
                verdict(ratio("3b", "2"), 1.15),
                verdict(ratio("3b", "1"), 0.95)
            ),
            "4a" => format!("vs cookie status (3a): {}", verdict(ratio("4a", "3a"), 0.8)),
            "4b" => format!(
                "vs cookie session (3b): {}",
                verdict(ratio("4b", "3b"), 0.8)
            ),
            "4c" => format!(
                "vs cookie status (3a): {}; vs 4a: {}",
                plain(ratio("4c", "3a")),
                plain(ratio("4c", "4a"))
            ),
            "2" => format!("vs bare axum (1): {}", plain(ratio("2", "1"))),
            "6v" => format!("vs cookie status alone (3a): {}", plain(ratio("6v", "3a"))),
            "3c" => format!(
                "vs 3a (info level, the default): {}",
                plain(ratio("3c", "3a"))
            ),
            "7a" => format!(
                "vs tower-sessions MemoryStore (2): {}",
                plain(ratio("7a", "2"))
            ),
            "7b" => format!(
                "vs tower-sessions Redis (7a): {}; vs sessionguard embedded (3a): {}",
                verdict(ratio("7b", "7a"), 2.0),
                plain(ratio("7b", "3a"))
            ),
            "8a" | "8b" => format!(
                "vs tower-sessions (2): {}; vs bare axum (1): {}",
                verdict(ratio(&r.id, "2"), 1.15),
                verdict(ratio(&r.id, "1"), 0.85)
            ),
            "9a" => format!("vs bare headers (9b): {}", verdict(ratio("9a", "9b"), 0.8)),
            "10a" => format!("vs nginx straight (10b): {}", plain(ratio("10a", "10b"))),
            "6l" => match (rps("6l"), kv.get("argon2_bound_server")) {
                (Some(l), Some(b)) => {
                    let b: f64 = b.parse().unwrap_or(f64::NAN);
                    format!(
                        "argon2 bound on the server's 1 core: {b:.1}/s → {:.0}% of it",
                        100.0 * l / b
                    )
                }
                _ => String::new(),
            },
            _ => String::new(),
        };
        let bad = if r.bad > 0 {
            format!("**{}**", r.bad)
        } else {
            "0".into()
        };
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.id,
            r.label,
            r.rps,
            ms(r.p50_us),
            ms(r.p99_us),
            r.requests,
            bad,
            r.server_cpu,
            r.core1,
            r.before,
            ratios
        );
    }
    print!("{out}");
    Ok(())
}
