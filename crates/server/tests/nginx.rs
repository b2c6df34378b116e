//! Forward authentication behind a real nginx (`auth_request`), with the
//! configuration the project ships (`examples/nginx.conf`), in front of a
//! small upstream that echoes the headers it receives, and the real
//! `sessionguard` binary. nginx is installed by `scripts/test`; without it this
//! test fails.
//!
//! Everything listens on 127.0.0.1: sessionguard and the upstream on port 0,
//! nginx on a port picked free just before it starts.

mod process;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
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

/// nginx, killed when dropped.
struct Nginx {
    child: Child,
    addr: String,
    dir: PathBuf,
}

impl Drop for Nginx {
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

/// A free loopback port (bound and released: nginx cannot listen on port 0).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `examples/nginx.conf`, made to run here: the upstreams are ours, the server
/// listens on plain HTTP on `port`. Each replaced line must be in the example.
fn example_config(sessionguard: &str, app: &SocketAddr, port: u16) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/nginx.conf");
    let example = std::fs::read_to_string(&path).unwrap();
    let mut replaced = 0;
    let mut lines = Vec::new();
    for line in example.lines() {
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

fn start_nginx(sessionguard: &str, app: &SocketAddr, port: u16) -> Nginx {
    let dir = tempfile::tempdir().unwrap().keep();
    let d = dir.display();
    let config = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log warn;\nevents {{ worker_connections 128; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         {}\n}}\n",
        example_config(sessionguard, app, port)
    );
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, config).unwrap();
    let child = Command::new(nginx_binary())
        .arg("-p")
        .arg(&dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx does not start");
    let addr = format!("127.0.0.1:{port}");
    let mut nginx = Nginx { child, addr, dir };
    // A bounded wait for the listening socket (not a timing assertion).
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(&nginx.addr).is_err() {
        if let Some(status) = nginx.child.try_wait().unwrap() {
            let log = std::fs::read_to_string(nginx.dir.join("error.log")).unwrap_or_default();
            panic!("nginx exited ({status}): {log}");
        }
        assert!(
            Instant::now() < deadline,
            "nginx did not listen within 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    nginx
}

/// sessionguard with its public origin on nginx's address, the upstream, and
/// nginx in front of both.
struct Stack {
    sg: Running,
    echo: Echo,
    nginx: Nginx,
    _data: tempfile::TempDir,
}

fn stack() -> Stack {
    let echo = Echo::start();
    // nginx's port must be known before sessionguard starts: its public origin.
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
    let nginx = start_nginx(&sg.addr, &echo.addr, port);
    Stack {
        sg,
        echo,
        nginx,
        _data: data,
    }
}

impl Stack {
    fn origin(&self) -> String {
        format!("http://{}", self.nginx.addr)
    }

    /// One request through nginx.
    fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
        let (status, head, body) = http(&self.nginx.addr, method, path, headers, body);
        Answer { status, head, body }
    }

    /// Alice, created through the admin API, logged in through nginx.
    fn alice(&self) -> (String, Browser) {
        let id = self.sg.create_user("alice", PASSWORD);
        let browser = login(&self.nginx.addr, "alice", PASSWORD).expect("login through nginx");
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

#[test]
fn without_a_credential_apis_get_401_and_browsers_the_login_page() {
    let s = stack();
    let res = s.send("GET", "/api/orders", &[], "");
    assert_eq!(res.status, 401, "{}", res.head);
    assert_eq!(res.header("x-auth-reason"), Some("missing_credentials"));
    assert!(res.header("www-authenticate").is_some());
    let res = s.send("GET", "/orders?page=2", &[], "");
    assert_eq!(res.status, 302, "{}", res.head);
    let port = s.nginx.addr.rsplit(':').next().unwrap();
    assert_eq!(
        res.header("location"),
        Some(
            format!("/login?return_to=http%3A%2F%2F127.0.0.1%3A{port}%2Forders%3Fpage%3D2")
                .as_str()
        )
    );
    // An identity claimed by the client itself gets it nowhere.
    let res = s.send(
        "GET",
        "/api/orders",
        &[("x-auth-user-id", "mallory"), ("x-auth-roles", "admin")],
        "",
    );
    assert_eq!(res.status, 401);
    assert_eq!(s.echo.hits(), 0, "nothing reached the app");
}

#[test]
fn a_session_reaches_the_app_with_its_identity_until_it_logs_out() {
    let s = stack();
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
    assert!(
        seen.get("x-auth-roles").is_none(),
        "no roles, and the client's are stripped: {seen}"
    );
    assert!(res.header("set-cookie").is_none());

    // Browser pages pass too.
    assert_eq!(
        s.send("GET", "/dashboard", &[("cookie", &c)], "").status,
        200
    );

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
            .starts_with("/login?return_to=")
    );
}

#[test]
fn a_role_change_reaches_the_app_with_a_renewed_cookie_and_api_tokens_pass() {
    let s = stack();
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
}
