//! Forward authentication behind real reverse proxies, each running the
//! configuration the project ships for it — nginx (`examples/nginx.conf`,
//! `auth_request`), Caddy (`examples/Caddyfile`) and Traefik v3
//! (`examples/traefik.yml`, `forwardAuth`) — in front of a small upstream that
//! echoes the headers it receives, and the real `sessionguard` binary. Every
//! behaviour is a test behind each proxy. `scripts/test` installs the proxies
//! (nginx from Debian; Caddy and Traefik, pinned, in `target/proxies-venv`);
//! without them these tests fail.
//!
//! Everything listens on 127.0.0.1: sessionguard and the upstream on port 0,
//! the proxy on a port picked free just before it starts.

mod process;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use axum::http::HeaderMap;
use process::{Browser, Running, cookie_of, header, http, json_field, login, start_with};
use serde_json::Value;

/// The upstream app: answers every request with the headers it received, as a
/// JSON object (name → value), and counts the requests that reached it.
struct Echo {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    _runtime: tokio::runtime::Runtime,
}

impl Echo {
    fn start() -> Echo {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&hits);
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().fallback(move |headers: HeaderMap| {
            let counter = Arc::clone(&counter);
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                let seen: BTreeMap<String, String> = headers
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.as_str().to_owned(),
                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                        )
                    })
                    .collect();
                Json(seen)
            }
        });
        runtime.spawn(async move { axum::serve(listener, app).await });
        Echo {
            addr,
            hits,
            _runtime: runtime,
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// A proxy the project ships a configuration for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Debian's nginx (`auth_request`), `examples/nginx.conf`.
    Nginx,
    /// Caddy (`reverse_proxy` with `handle_response`), `examples/Caddyfile`.
    Caddy,
    /// Traefik v3 (`forwardAuth`), `examples/traefik.yml`.
    Traefik,
}

/// A proxy process, killed when dropped.
struct Proxy {
    child: Child,
    addr: String,
    dir: PathBuf,
    log: PathBuf,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The nginx binary: on the PATH, or where Debian puts it.
fn nginx_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("nginx"))
            .find(|p| p.is_file())
    });
    on_path
        .or_else(|| Some(PathBuf::from("/usr/sbin/nginx")).filter(|p| p.is_file()))
        .expect("nginx is not installed: scripts/test installs it (Debian package nginx)")
}

/// Caddy's or Traefik's binary, from the pinned releases `scripts/test`
/// installs in `target/proxies-venv`.
fn venv_binary(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/proxies-venv/bin")
        .join(name);
    assert!(
        path.is_file(),
        "{} is missing: scripts/test installs it",
        path.display()
    );
    path
}

/// A free loopback port (bound and released: the proxies cannot report the
/// port they got for port 0).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The shipped example for `kind`.
fn example(kind: Kind) -> String {
    let name = match kind {
        Kind::Nginx => "nginx.conf",
        Kind::Caddy => "Caddyfile",
        Kind::Traefik => "traefik.yml",
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name);
    std::fs::read_to_string(&path).unwrap()
}

/// `text` with every `from` replaced by `to`; `from` must occur exactly
/// `times` times (the example changed shape otherwise: update this test).
fn replace(text: &str, from: &str, to: &str, times: usize) -> String {
    assert_eq!(
        text.matches(from).count(),
        times,
        "the example's {from:?} changed: update this test"
    );
    text.replace(from, to)
}

/// `examples/nginx.conf`, made to run here: the upstreams are ours, the server
/// listens on plain HTTP on `port`. Each replaced line must be in the example.
fn nginx_config(sessionguard: &str, app: &SocketAddr, port: u16) -> String {
    let mut replaced = 0;
    let mut lines = Vec::new();
    for line in example(Kind::Nginx).lines() {
        let t = line.trim();
        let new = if t == "server 127.0.0.1:8080;" {
            Some(format!("server {sessionguard};"))
        } else if t == "server 127.0.0.1:3000;" {
            Some(format!("server {app};"))
        } else if t == "listen 443 ssl;" {
            Some(format!("listen 127.0.0.1:{port};"))
        } else if t.starts_with("ssl_certificate") {
            Some(String::new())
        } else {
            None
        };
        match new {
            Some(new) => {
                replaced += 1;
                lines.push(new);
            }
            None => lines.push(line.to_owned()),
        }
    }
    assert_eq!(
        replaced, 5,
        "examples/nginx.conf changed shape: update this test"
    );
    lines.join("\n")
}

/// `examples/Caddyfile`, made to run here: the upstreams are ours, the site is
/// plain HTTP on `port`, and Caddy keeps its state in `dir` with no admin
/// endpoint.
fn caddy_config(sessionguard: &str, app: &SocketAddr, port: u16, dir: &Path) -> String {
    let site = replace(
        &example(Kind::Caddy),
        "\napp.example.com {",
        &format!("\nhttp://127.0.0.1:{port} {{"),
        1,
    );
    // Two upstream lines each, plus the header comment's mention.
    let site = replace(&site, "127.0.0.1:8080", sessionguard, 3);
    let site = replace(&site, "127.0.0.1:3000", &app.to_string(), 3);
    format!(
        "{{\n\tadmin off\n\tpersist_config off\n\tauto_https off\n\tstorage file_system {}\n}}\n{site}",
        dir.join("caddy").display()
    )
}

/// `examples/traefik.yml`, made to run here: the services are ours, the host
/// rules name 127.0.0.1, and the routers serve the plain-HTTP entry point.
fn traefik_config(sessionguard: &str, app: &SocketAddr) -> String {
    let dynamic = replace(
        &example(Kind::Traefik),
        "Host(`app.example.com`)",
        "Host(`127.0.0.1`)",
        3,
    );
    // The two forwardAuth addresses, the service URL, the header comment.
    let dynamic = replace(&dynamic, "127.0.0.1:8080", sessionguard, 4);
    let dynamic = replace(&dynamic, "127.0.0.1:3000", &app.to_string(), 2);
    replace(&dynamic, "      tls: {}\n", "", 3)
}

/// Starts `kind` on 127.0.0.1:`port` in front of `sessionguard` and `app`,
/// and waits (bounded) until it passes requests to sessionguard.
fn start_proxy(kind: Kind, sessionguard: &str, app: &SocketAddr, port: u16) -> Proxy {
    let dir = tempfile::tempdir().unwrap().keep();
    let d = dir.display();
    let log = dir.join("proxy.log");
    let mut command = match kind {
        Kind::Nginx => {
            let config = format!(
                "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
                 error_log {d}/proxy.log warn;\nevents {{ worker_connections 128; }}\n\
                 http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
                 fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
                 {}\n}}\n",
                nginx_config(sessionguard, app, port)
            );
            let conf = dir.join("nginx.conf");
            std::fs::write(&conf, config).unwrap();
            let mut c = Command::new(nginx_binary());
            c.arg("-p")
                .arg(&dir)
                .arg("-e")
                .arg(&log)
                .arg("-c")
                .arg(&conf);
            c.stderr(Stdio::null());
            c
        }
        Kind::Caddy => {
            let conf = dir.join("Caddyfile");
            std::fs::write(&conf, caddy_config(sessionguard, app, port, &dir)).unwrap();
            let mut c = Command::new(venv_binary("caddy"));
            c.args(["run", "--adapter", "caddyfile", "--config"])
                .arg(&conf)
                .env("HOME", &dir)
                .env("XDG_CONFIG_HOME", &dir)
                .env("XDG_DATA_HOME", &dir);
            c.stderr(std::fs::File::create(&log).unwrap());
            c
        }
        Kind::Traefik => {
            let conf = dir.join("dynamic.yml");
            std::fs::write(&conf, traefik_config(sessionguard, app)).unwrap();
            let mut c = Command::new(venv_binary("traefik"));
            c.arg(format!("--entryPoints.web.address=127.0.0.1:{port}"))
                .arg(format!("--providers.file.filename={}", conf.display()))
                .args([
                    "--global.checkNewVersion=false",
                    "--global.sendAnonymousUsage=false",
                    "--log.level=ERROR",
                ])
                .env("HOME", &dir);
            c.stderr(std::fs::File::create(&log).unwrap());
            c
        }
    };
    let child = command
        .current_dir(&dir)
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{kind:?} does not start: {e}"));
    let addr = format!("127.0.0.1:{port}");
    let mut proxy = Proxy {
        child,
        addr,
        dir,
        log,
    };
    // A bounded wait until the proxy routes to sessionguard (Traefik loads its
    // routes after it starts listening); not a timing assertion.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok((200, _, _)) = process::try_http(&proxy.addr, "GET", "/login", &[], "") {
            break;
        }
        if let Some(status) = proxy.child.try_wait().unwrap() {
            let log = std::fs::read_to_string(&proxy.log).unwrap_or_default();
            panic!("{kind:?} exited ({status}): {log}");
        }
        assert!(
            Instant::now() < deadline,
            "{kind:?} did not pass /login to sessionguard within 30 s: {}",
            std::fs::read_to_string(&proxy.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    proxy
}

/// sessionguard with its public origin on the proxy's address, the upstream,
/// and the proxy in front of both.
struct Stack {
    sg: Running,
    echo: Echo,
    proxy: Proxy,
    _data: tempfile::TempDir,
}

fn stack(kind: Kind) -> Stack {
    let echo = Echo::start();
    // The proxy's port must be known before sessionguard starts: its public origin.
    let port = free_port();
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("sessionguard.toml");
    std::fs::write(
        &config,
        format!("public_origin = \"http://127.0.0.1:{port}\"\n"),
    )
    .unwrap();
    let sg = start_with(
        data.path().join("data").to_str().unwrap(),
        &["--config", config.to_str().unwrap()],
    );
    let proxy = start_proxy(kind, &sg.addr, &echo.addr, port);
    Stack {
        sg,
        echo,
        proxy,
        _data: data,
    }
}

impl Stack {
    fn origin(&self) -> String {
        format!("http://{}", self.proxy.addr)
    }

    /// One request through the proxy.
    fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
        let (status, head, body) = http(&self.proxy.addr, method, path, headers, body);
        Answer { status, head, body }
    }

    /// Alice, created through the admin API, logged in through the proxy.
    fn alice(&self) -> (String, Browser) {
        let id = self.sg.create_user("alice", PASSWORD);
        let browser = login(&self.proxy.addr, "alice", PASSWORD).expect("login through the proxy");
        (id, browser)
    }
}

struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        header(&self.head, name)
    }

    /// What the upstream saw, from its echo.
    fn seen(&self) -> Value {
        assert_eq!(self.status, 200, "{}\n{}", self.head, self.body);
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not the echo ({e}): {}", self.body))
    }
}

const PASSWORD: &str = "correct horse battery staple";

fn cookie(b: &Browser) -> String {
    format!("__Host-sg_session={}", b.cookie)
}

/// No credential: APIs get 401, browsers the login page, and an identity the
/// client claims itself gets it nowhere.
fn without_a_credential_apis_get_401_and_browsers_the_login_page(kind: Kind) {
    let s = stack(kind);
    let res = s.send("GET", "/api/orders", &[], "");
    assert_eq!(res.status, 401, "{}", res.head);
    assert_eq!(res.header("x-auth-reason"), Some("missing_credentials"));
    assert!(res.header("www-authenticate").is_some());
    let res = s.send("GET", "/orders?page=2", &[], "");
    assert_eq!(res.status, 302, "{}", res.head);
    let port = s.proxy.addr.rsplit(':').next().unwrap();
    assert_eq!(
        res.header("location"),
        Some(
            format!(
                "http://127.0.0.1:{port}/login?return_to=http%3A%2F%2F127.0.0.1%3A{port}%2Forders%3Fpage%3D2"
            )
            .as_str()
        ),
        "the login page on the proxy's (public) origin"
    );
    // An identity claimed by the client itself gets it nowhere.
    let res = s.send(
        "GET",
        "/api/orders",
        &[("x-auth-user-id", "mallory"), ("x-auth-roles", "admin")],
        "",
    );
    assert_eq!(res.status, 401);
    // sessionguard's own files pass without a credential (the sign-in page
    // needs them), the app's other /static/ files stay the app's.
    for (file, kind) in [
        ("idle-warning.js", "javascript"),
        ("account.js", "javascript"),
        ("pages.css", "text/css"),
        ("favicon.svg", "image/svg+xml"),
    ] {
        let res = s.send("GET", &format!("/static/{file}"), &[], "");
        assert_eq!(res.status, 200, "{file}: {}", res.head);
        let content_type = res.header("content-type").unwrap_or_default();
        assert!(content_type.contains(kind), "{file}: {content_type}");
    }
    let res = s.send("GET", "/static/app.css", &[], "");
    assert_eq!(res.status, 302, "the app's own file is behind the check");
    assert_eq!(s.echo.hits(), 0, "nothing reached the app");
}

/// A live session reaches the app with its identity (the client's own identity
/// headers replaced), a cross-site POST does not, and a logout through the
/// proxy ends it for the app at once.
fn a_session_reaches_the_app_with_its_identity_until_it_logs_out(kind: Kind) {
    let s = stack(kind);
    let (id, browser) = s.alice();
    let c = cookie(&browser);
    let res = s.send(
        "GET",
        "/api/me",
        &[
            ("cookie", &c),
            ("x-auth-user-id", "mallory"),
            ("x-auth-username", "mallory"),
            ("x-auth-roles", "admin"),
            ("x-auth-csrf-token", "forged"),
        ],
        "",
    );
    let seen = res.seen();
    assert_eq!(seen["x-auth-user-id"], id.as_str());
    assert_eq!(seen["x-auth-username"], "alice");
    assert_eq!(seen["x-auth-session-id"].as_str().unwrap().len(), 22);
    assert!(seen["x-auth-step-up-until"].is_string());
    assert_eq!(seen["x-auth-csrf-token"], browser.csrf.as_str());
    // No roles: sessionguard answers an empty X-Auth-Roles, which nginx leaves
    // out and Caddy and Traefik pass on; the client's own value is gone.
    assert_eq!(
        seen.get("x-auth-roles").map_or(Some(""), Value::as_str),
        Some(""),
        "no roles, and the client's are stripped: {seen}"
    );
    assert!(res.header("set-cookie").is_none());

    // Browser pages pass too.
    assert_eq!(
        s.send("GET", "/dashboard", &[("cookie", &c)], "").status,
        200
    );
    // sessionguard's account page, served through the proxy on the app's origin.
    let res = s.send("GET", "/account", &[("cookie", &c)], "");
    assert_eq!(res.status, 200, "{}", res.head);
    assert!(res.body.contains("Your sessions"), "{}", res.body);

    // A cross-site POST with the cookie never reaches the app; a same-origin one does.
    let hits = s.echo.hits();
    let res = s.send(
        "POST",
        "/api/orders",
        &[("cookie", &c), ("origin", "https://evil.example")],
        "{}",
    );
    assert_eq!(res.status, 403, "{}", res.head);
    assert_eq!(res.header("x-auth-reason"), Some("cross_origin_request"));
    let res = s.send(
        "POST",
        "/api/orders",
        &[("cookie", &c), ("sec-fetch-site", "cross-site")],
        "{}",
    );
    assert_eq!(res.status, 403);
    assert_eq!(s.echo.hits(), hits);
    let origin = s.origin();
    let res = s.send(
        "POST",
        "/api/orders",
        &[
            ("cookie", &c),
            ("origin", &origin),
            ("content-type", "application/json"),
        ],
        "{}",
    );
    assert_eq!(res.seen()["x-auth-user-id"], id.as_str());

    // Logout through the proxy ends the session for the app at once.
    let res = s.send(
        "POST",
        "/v1/logout",
        &[
            ("cookie", &c),
            ("x-csrf-token", &browser.csrf),
            ("origin", &origin),
        ],
        "",
    );
    assert_eq!(res.status, 204, "{}\n{}", res.head, res.body);
    let res = s.send("GET", "/api/me", &[("cookie", &c)], "");
    assert_eq!(res.status, 401);
    assert_eq!(res.header("x-auth-reason"), Some("logged_out"));
    let res = s.send("GET", "/dashboard", &[("cookie", &c)], "");
    assert_eq!(res.status, 302);
    assert_eq!(res.header("x-auth-reason"), Some("logged_out"));
    assert!(
        res.header("location")
            .unwrap()
            .starts_with(&format!("{origin}/login?return_to="))
    );
}

/// A role change reaches the app with a renewed cookie passed on to the
/// client, personal API tokens are credentials through the proxy, and the
/// account page's Sign out reaches sessionguard.
fn a_role_change_reaches_the_app_with_a_renewed_cookie_and_api_tokens_pass(kind: Kind) {
    let s = stack(kind);
    let (id, browser) = s.alice();
    let admin = format!("Bearer {}", s.sg.admin);
    let (status, _, body) = http(
        &s.sg.addr,
        "POST",
        &format!("/v1/admin/users/{id}"),
        &[
            ("authorization", &admin),
            ("content-type", "application/json"),
        ],
        r#"{"roles":["ops","billing"]}"#,
    );
    assert_eq!(status, 200, "{body}");
    let res = s.send("GET", "/api/me", &[("cookie", &cookie(&browser))], "");
    assert_eq!(res.seen()["x-auth-roles"], "billing,ops");
    let renewed = cookie_of(&res.head);
    assert_ne!(
        renewed, browser.cookie,
        "the privilege change rotated the cookie"
    );
    let res = s.send(
        "GET",
        "/api/me",
        &[("cookie", &format!("__Host-sg_session={renewed}"))],
        "",
    );
    assert_eq!(res.seen()["x-auth-roles"], "billing,ops");

    // A personal API token, created with the session, is a credential here too.
    let bearer = format!("Bearer {renewed}");
    let res = s.send(
        "POST",
        "/v1/api-tokens",
        &[
            ("authorization", &bearer),
            ("content-type", "application/json"),
        ],
        r#"{"name":"ci"}"#,
    );
    assert_eq!(res.status, 201, "{}", res.body);
    let token = json_field(&res.body, "token");
    let res = s.send(
        "GET",
        "/api/me",
        &[("authorization", &format!("Bearer {token}"))],
        "",
    );
    let seen = res.seen();
    assert_eq!(seen["x-auth-user-id"], id.as_str());
    assert_eq!(seen["x-auth-roles"], "billing,ops");
    assert!(seen.get("x-auth-session-id").is_none());

    // The account page's Sign out, through the proxy, ends the session too.
    let browser = login(&s.proxy.addr, "alice", PASSWORD).expect("login through the proxy");
    let c = cookie(&browser);
    let origin = s.origin();
    let form = format!("csrf_token={}", browser.csrf);
    let res = s.send(
        "POST",
        "/logout",
        &[
            ("cookie", &c),
            ("origin", &origin),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        &form,
    );
    assert_eq!(res.status, 303, "{}\n{}", res.head, res.body);
    assert_eq!(res.header("location"), Some("/login?reason=logged_out"));
    let res = s.send("GET", "/api/me", &[("cookie", &c)], "");
    assert_eq!(res.status, 401);
    assert_eq!(res.header("x-auth-reason"), Some("logged_out"));
}

/// Each behaviour, as a test of its own, behind each proxy.
macro_rules! behind {
    ($proxy:ident, $kind:expr) => {
        mod $proxy {
            use super::*;

            #[test]
            fn without_a_credential_apis_get_401_and_browsers_the_login_page() {
                super::without_a_credential_apis_get_401_and_browsers_the_login_page($kind);
            }

            #[test]
            fn a_session_reaches_the_app_with_its_identity_until_it_logs_out() {
                super::a_session_reaches_the_app_with_its_identity_until_it_logs_out($kind);
            }

            #[test]
            fn a_role_change_reaches_the_app_with_a_renewed_cookie_and_api_tokens_pass() {
                super::a_role_change_reaches_the_app_with_a_renewed_cookie_and_api_tokens_pass(
                    $kind,
                );
            }
        }
    };
}

behind!(nginx, Kind::Nginx);
behind!(caddy, Kind::Caddy);
behind!(traefik, Kind::Traefik);
