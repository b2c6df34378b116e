//! Several `sessionguard` processes over one Redis: what one node does (logout,
//! password change, displacement, revoke-all, key rotation) holds on every other
//! node at its next request; and a Redis Cluster master failover loses no
//! acknowledged revocation, with the node recovering without a restart.
//!
//! The Redis servers and the cluster are started by the tests on loopback ports
//! (`sessionguard_test_kit::redis`); without `redis-server` the tests fail.

#![cfg(unix)]

mod process;

use std::path::Path;
use std::time::{Duration, Instant};

use process::{Browser, Server, cookie_of, http, json_field, startup, try_http};
use sessionguard_core::TokenId;
use sessionguard_test_kit::fixtures::TempDir;
use sessionguard_test_kit::redis::{RedisCluster, RedisServer};

const ADMIN: &str = "an-admin-token-of-at-least-32-characters";
const PASSWORD: &str = "correct horse battery staple";

/// A node: a `sessionguard serve` process on port 0.
struct Node {
    _server: Server,
    addr: String,
}

/// Writes a configuration for nodes over `urls` (one key space per test).
fn config(dir: &Path, urls: &[String], prefix: &str, extra: &str) -> String {
    let urls = urls
        .iter()
        .map(|u| format!("{u:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let text = format!(
        "admin_token = \"{ADMIN}\"\npublic_origin = \"https://login.example\"\n{extra}\n[store]\nkind = \"redis\"\nurls = [{urls}]\nprefix = \"{prefix}\"\n"
    );
    let path = dir.join(format!("{prefix}.toml"));
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

fn node(config: &str) -> Node {
    let server = Server::start(&["serve", "--listen", "127.0.0.1:0", "--config", config]);
    let (_, addr) = startup(&server);
    Node {
        _server: server,
        addr,
    }
}

fn prefix() -> String {
    format!("t{}", TokenId::random().to_string().replace(['-', '_'], ""))
}

impl Node {
    fn admin(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let bearer = format!("Bearer {ADMIN}");
        let (status, _, body) = http(
            &self.addr,
            method,
            path,
            &[
                ("authorization", &bearer),
                ("content-type", "application/json"),
            ],
            body,
        );
        (status, body)
    }

    fn create_user(&self, name: &str) -> String {
        let body = format!(r#"{{"username":"{name}","password":"{PASSWORD}"}}"#);
        let (status, body) = self.admin("POST", "/v1/admin/users", &body);
        assert_eq!(status, 201, "{body}");
        json_field(&body, "id")
    }

    fn login(&self, name: &str, password: &str) -> Browser {
        process::login(&self.addr, name, password).expect("the login succeeds")
    }

    fn status(&self, b: &Browser) -> Result<String, String> {
        process::status(&self.addr, b)
    }

    fn post_as(&self, b: &Browser, path: &str, json: &str) -> (u16, String, String) {
        process::post_as(&self.addr, b, path, json)
    }

    /// A password grant: the access token.
    fn token_login(&self, name: &str) -> String {
        let body =
            format!("grant_type=password&username={name}&password=correct+horse+battery+staple");
        let (status, _, body) = http(
            &self.addr,
            "POST",
            "/v1/token",
            &[("content-type", "application/x-www-form-urlencoded")],
            &body,
        );
        assert_eq!(status, 200, "{body}");
        json_field(&body, "access_token")
    }

    /// `GET /v1/session` with a bearer token: status and body.
    fn bearer_session(&self, token: &str) -> (u16, String) {
        let bearer = format!("Bearer {token}");
        let (status, _, body) = http(
            &self.addr,
            "GET",
            "/v1/session",
            &[("authorization", &bearer)],
            "",
        );
        (status, body)
    }
}

#[test]
fn what_one_node_does_holds_on_the_other_at_once() {
    let redis = RedisServer::start();
    let dir = TempDir::new();
    let cfg = config(
        dir.path(),
        &[redis.url()],
        &prefix(),
        "[profiles.admin]\nmax_sessions = 1",
    );
    let (a, b) = (node(&cfg), node(&cfg));
    let alice = a.create_user("alice");

    // A login on A is a session on B.
    let s = a.login("alice", PASSWORD);
    assert_eq!(b.status(&s), Ok(alice.clone()));
    // A logout on B ends it on A, with its reason.
    let (status, _, body) = b.post_as(&s, "/v1/logout", "");
    assert_eq!(status, 204, "{body}");
    assert_eq!(a.status(&s), Err("logged_out".into()));

    // A password change on B ends alice's other sessions on A.
    let on_a = a.login("alice", PASSWORD);
    let on_b = b.login("alice", PASSWORD);
    let body = format!(
        r#"{{"current_password":"{PASSWORD}","new_password":"a whole new password here"}}"#
    );
    let (status, head, body) = b.post_as(&on_b, "/v1/password", &body);
    assert_eq!(status, 200, "{body}");
    let fresh = Browser {
        cookie: cookie_of(&head),
        csrf: json_field(&body, "csrf_token"),
    };
    assert_eq!(a.status(&on_a), Err("password_changed".into()));
    assert_eq!(a.status(&on_b), Err("password_changed".into()));
    assert_eq!(a.status(&fresh), Ok(alice.clone()));

    // An admin revoke-all on A ends the fresh session on B.
    let (status, body) = a.admin(
        "POST",
        &format!("/v1/admin/users/{alice}/revoke"),
        r#"{"reason":"revoked_by_admin"}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(b.status(&fresh), Err("revoked_by_admin".into()));

    // Displacement: bob has the `admin` profile, one session at a time.
    let bob = a.create_user("bob");
    let (status, body) = b.admin(
        "POST",
        &format!("/v1/admin/users/{bob}"),
        r#"{"profile":"admin"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let first = a.login("bob", PASSWORD);
    let second = b.login("bob", PASSWORD);
    assert_eq!(a.status(&first), Err("displaced".into()));
    assert_eq!(a.status(&second), Ok(bob));

    // The nodes share one audit log.
    let (status, body) = b.admin("GET", &format!("/v1/admin/events?user_id={alice}"), "");
    assert_eq!(status, 200, "{body}");
    for event in [
        "login_succeeded",
        "logged_out",
        "password_changed",
        "user_sessions_revoked",
    ] {
        assert!(
            body.contains(&format!("\"event\":\"{event}\"")),
            "{event}: {body}"
        );
    }
}

#[test]
fn every_node_verifies_access_tokens_signed_by_any_node_even_after_a_rotation() {
    let redis = RedisServer::start();
    let dir = TempDir::new();
    let cfg = config(dir.path(), &[redis.url()], &prefix(), "");
    let a = node(&cfg);
    let b = node(&cfg);
    a.create_user("carol");
    let token = a.token_login("carol");
    let (status, body) = b.bearer_session(&token);
    assert_eq!(status, 200, "{body}");

    // A rotation through the CLI; a node started after it signs with the new key,
    // which B has not loaded yet: B reloads the shared set when it meets it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sessionguard"))
        .args(["keys", "rotate", "--config", &cfg])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rotated = String::from_utf8(out.stdout).unwrap();
    assert!(rotated.starts_with("rotated: new key "), "{rotated}");
    let c = node(&cfg);
    let newer = c.token_login("carol");
    let (status, body) = b.bearer_session(&newer);
    assert_eq!(status, 200, "{body}");
    // Tokens signed before the rotation still verify everywhere.
    let (status, body) = c.bearer_session(&token);
    assert_eq!(status, 200, "{body}");
    // A forged key id is still refused.
    let (status, body) =
        b.bearer_session("eyJhbGciOiJFZERTQSIsImtpZCI6Im5vcGUiLCJ0eXAiOiJhdCtqd3QifQ.e30.AAAA");
    assert_eq!(status, 401, "{body}");
}

/// A sidecar session (no password hashing: many sessions quickly).
fn sidecar(n: &Node, user: &str) -> String {
    let (status, body) = n.admin(
        "POST",
        "/v1/admin/sessions",
        &format!(r#"{{"user_id":"{user}"}}"#),
    );
    assert_eq!(status, 201, "{body}");
    json_field(&body, "session_token")
}

/// `GET /v1/session/status` with a bearer token; `None` if the node did not
/// answer completely (a failover in progress).
fn try_status(n: &Node, token: &str) -> Option<(u16, String)> {
    let bearer = format!("Bearer {token}");
    try_http(
        &n.addr,
        "GET",
        "/v1/session/status",
        &[("authorization", &bearer)],
        "",
    )
    .ok()
    .map(|(s, _, b)| (s, b))
}

#[test]
fn a_master_failover_loses_no_acknowledged_revocation() {
    let mut cluster = RedisCluster::start();
    let dir = TempDir::new();
    let cfg = config(dir.path(), &cluster.urls(), &prefix(), "");
    let n = node(&cfg);

    // 60 users, spread over the shards (and so over the masters), 2 sessions each;
    // one of each pair is logged out, acknowledged with a 204.
    let mut live = Vec::new();
    let mut ended = Vec::new();
    for i in 0..60 {
        let user = format!("app-user-{i}");
        let keep = sidecar(&n, &user);
        let gone = sidecar(&n, &user);
        let bearer = format!("Bearer {gone}");
        let (status, _, body) = http(
            &n.addr,
            "POST",
            "/v1/logout",
            &[("authorization", &bearer)],
            "",
        );
        assert_eq!(status, 204, "{body}");
        live.push(keep);
        ended.push(gone);
    }

    // A bounded load runs through the kill: a client logs out sessions of its own
    // pool one after another, remembering which logouts were acknowledged.
    let pool: Vec<String> = (0..40)
        .map(|i| sidecar(&n, &format!("app-load-{i}")))
        .collect();
    let addr = n.addr.clone();
    let load = std::thread::spawn(move || {
        let mut acknowledged = Vec::new();
        for token in pool {
            let bearer = format!("Bearer {token}");
            let answer = try_http(
                &addr,
                "POST",
                "/v1/logout",
                &[("authorization", &bearer)],
                "",
            );
            match answer {
                Ok((204, _, _)) => acknowledged.push(token),
                // Refused while the cluster fails over (or for want of a replica
                // afterwards): not acknowledged, so nothing is promised.
                Ok((503, _, _)) | Err(_) => {}
                Ok((status, _, body)) => panic!("unexpected {status}: {body}"),
            }
        }
        acknowledged
    });

    // Kill a master: its replica takes over.
    let victim = cluster.masters()[0];
    cluster.kill_master(victim);
    let acknowledged = load.join().unwrap();
    assert!(!acknowledged.is_empty(), "the load made progress");
    ended.extend(acknowledged);

    // The node recovers without a restart: every session answers again within a
    // generous bound (not a timing assertion), and no acknowledged logout is
    // undone.
    let deadline = Instant::now() + Duration::from_secs(60);
    for (token, expect_live) in live
        .iter()
        .map(|t| (t, true))
        .chain(ended.iter().map(|t| (t, false)))
    {
        loop {
            match try_status(&n, token) {
                Some((200, body)) => {
                    assert!(expect_live, "a logged-out session came back: {body}");
                    break;
                }
                Some((401, body)) => {
                    assert!(!expect_live, "a live session was lost: {body}");
                    assert_eq!(json_field(&body, "code"), "logged_out");
                    break;
                }
                // 503 while the cluster elects the new master; then it answers.
                Some((503, _)) | None => {
                    assert!(Instant::now() < deadline, "the node did not recover");
                    std::thread::sleep(Duration::from_millis(100));
                }
                Some((other, body)) => panic!("unexpected {other}: {body}"),
            }
        }
    }
}

#[test]
fn a_node_refuses_to_start_on_an_evicting_redis_and_is_not_ready_while_it_evicts() {
    let redis = RedisServer::start();
    let dir = TempDir::new();
    let cfg = config(dir.path(), &[redis.url()], &prefix(), "");
    let set_policy = |policy: &str| {
        let out = redis.cli(&["config", "set", "maxmemory-policy", policy]);
        assert_eq!(out.trim(), "OK", "{out}");
    };

    // Refused at start: exit code 1 (a run-time failure), naming the node, the
    // policy and the remedy; nothing on stdout, so nothing listens.
    set_policy("allkeys-lru");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sessionguard"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config", &cfg])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "Redis on 127.0.0.1:{} has maxmemory-policy allkeys-lru: sessionguard needs noeviction",
            redis.port()
        )),
        "{stderr}"
    );

    // With noeviction it starts and is ready; while a policy that evicts is set,
    // readiness fails (liveness does not), and it comes back with the policy.
    set_policy("noeviction");
    let n = node(&cfg);
    let ready = || http(&n.addr, "GET", "/readyz", &[], "");
    let (status, _, body) = ready();
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ready"}"#));
    set_policy("volatile-lru");
    let (status, _, body) = ready();
    assert_eq!(status, 503, "{body}");
    assert_eq!(json_field(&body, "code"), "store_unavailable");
    assert!(!body.contains("volatile-lru"), "no internals: {body}");
    let (status, _, _) = http(&n.addr, "GET", "/healthz", &[], "");
    assert_eq!(status, 200);
    set_policy("noeviction");
    assert_eq!(ready().0, 200);
}

/// `POST /v1/login` at `addr` with extra headers: status, head, body.
fn login_with(addr: &str, name: &str, password: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let body = serde_json::json!({ "username": name, "password": password }).to_string();
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    let (status, head, body) = http(addr, "POST", "/v1/login", &all, &body);
    (status, format!("{head}\r\n\r\n{body}"))
}

/// The `__Host-sg_device` cookie a response head sets, as a `Cookie` pair.
fn device_cookie_of(head: &str) -> String {
    let value = process::set_cookie(head, "__Host-sg_device")
        .unwrap_or_else(|| panic!("no device cookie in {head}"));
    format!("__Host-sg_device={value}")
}

#[test]
fn wrong_passwords_on_one_node_throttle_the_account_on_the_other_but_not_the_users_browser() {
    let redis = RedisServer::start();
    let dir = TempDir::new();
    let cfg = config(
        dir.path(),
        &[redis.url()],
        &prefix(),
        "[policy]\nthrottle_failures = 3\nthrottle_delay = \"1h\"",
    );
    let (a, b) = (node(&cfg), node(&cfg));
    a.create_user("alice");
    a.create_user("bob");

    // Alice signed in on A from her browser before: it holds the device cookie.
    let (status, head) = login_with(&a.addr, "alice", PASSWORD, &[]);
    assert_eq!(status, 200, "{head}");
    let device = device_cookie_of(&head);

    // A guesser fails three times on A...
    for _ in 0..3 {
        let (status, body) = login_with(&a.addr, "alice", "a wrong guess at it", &[]);
        assert_eq!(status, 401, "{body}");
    }
    // ...and on B even the right password waits, with the wait to go.
    let (status, answer) = login_with(&b.addr, "alice", PASSWORD, &[]);
    assert_eq!(status, 429, "{answer}");
    assert!(answer.contains(r#""code":"too_many_attempts""#), "{answer}");
    let wait: u64 = process::header(&answer, "retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((3000..=3600).contains(&wait), "{wait}");

    // Alice's browser signs in on B: her known device counts apart.
    let (status, answer) = login_with(&b.addr, "alice", PASSWORD, &[("cookie", &device)]);
    assert_eq!(status, 200, "{answer}");
    // And another account from the same client is not held back.
    let (status, answer) = login_with(&b.addr, "bob", PASSWORD, &[]);
    assert_eq!(status, 200, "{answer}");
}
