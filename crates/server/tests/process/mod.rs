//! Running the built `sessionguard` binary in tests: start it on port 0, read its
//! stdout contract, talk raw HTTP/1.1 to it, stop it gently or kill it.

#![allow(dead_code)] // each test crate uses its own subset

use std::io;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A server process, killed if the test fails before stopping it.
pub(crate) struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Server {
    pub(crate) fn start(args: &[&str]) -> Server {
        Self::start_logging(args, &[("RUST_LOG", "warn")], Stdio::null())
    }

    /// [`Server::start`] with `env` set and the logs (standard error) sent to
    /// `logs`.
    pub(crate) fn start_logging(args: &[&str], env: &[(&str, &str)], logs: Stdio) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sessionguard"))
            .args(args)
            .env_remove("SESSIONGUARD_ADMIN_TOKEN")
            .env_remove("SESSIONGUARD_LISTEN")
            .env_remove("SESSIONGUARD_LOG_FORMAT")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(logs)
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        // A thread reads stdout so that a silent server fails the test instead of
        // hanging it.
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Server { child, lines }
    }

    /// The next stdout line (a generous guard, not a timing assertion).
    pub(crate) fn line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(60))
            .expect("the server printed nothing")
    }

    pub(crate) fn terminate(mut self) -> Option<i32> {
        self.sigterm();
        self.child.wait().unwrap().code()
    }

    /// Sends SIGTERM without waiting for the process to end.
    pub(crate) fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to end; its exit code.
    pub(crate) fn wait(mut self) -> Option<i32> {
        self.child.wait().unwrap().code()
    }
}

impl Server {
    /// The process id, e.g. to read its memory in `/proc/<pid>/status`.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process with SIGKILL: no shutdown, no flush, no destructors.
    pub(crate) fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bound on every socket operation of a test request (connect, write, each
/// read): a hung server fails the test instead of hanging it. Not a timing
/// assertion.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One HTTP/1.1 exchange over a fresh connection; returns status, head and body.
/// Panics if the server does not answer completely.
pub(crate) fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    try_http(addr, method, path, headers, body)
        .unwrap_or_else(|e| panic!("{method} {path}: no complete answer: {e}"))
}

/// One HTTP/1.1 exchange over a fresh connection, each socket operation bounded
/// by [`REQUEST_TIMEOUT`]. `Ok` only for a complete response: a status line,
/// headers and, when the response has a `Content-Length`, that many body bytes.
/// Anything less (refused, reset, cut off, timed out) is an `Err`: the caller
/// cannot know whether the server acted on the request.
pub(crate) fn try_http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> io::Result<(u16, String, String)> {
    let sock: SocketAddr = addr
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{addr}: {e}")))?;
    let mut stream = TcpStream::connect_timeout(&sock, REQUEST_TIMEOUT)?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let raw = String::from_utf8(raw)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "response is not UTF-8"))?;
    let cut = |what: &str| io::Error::new(io::ErrorKind::UnexpectedEof, what.to_owned());
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| cut("no end of head"))?;
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| cut("no status line"))?;
    if let Some(len) = header(head, "content-length") {
        let len: usize = len.parse().map_err(|_| cut("bad content-length"))?;
        if body.len() != len {
            return Err(cut("body shorter than its content-length"));
        }
    }
    Ok((status, head.to_owned(), body.to_owned()))
}

/// The value of the first header `name` (case-insensitive) in a response head.
pub(crate) fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A string member of a JSON body; panics (showing the body) if it is missing.
pub(crate) fn json_field(body: &str, field: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {body}"))
        .to_owned()
}

/// The value a response head sets for cookie `name`, if any (and not empty).
pub(crate) fn set_cookie(head: &str, name: &str) -> Option<String> {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.trim().eq_ignore_ascii_case("set-cookie"))
        .filter_map(|(_, v)| v.trim().strip_prefix(name)?.strip_prefix('='))
        .filter_map(|v| v.split(';').next())
        .find(|v| !v.is_empty())
        .map(str::to_owned)
}

/// The session token a response sets in `__Host-sg_session`; panics if none.
pub(crate) fn cookie_of(head: &str) -> String {
    set_cookie(head, "__Host-sg_session").unwrap_or_else(|| panic!("no session cookie in {head}"))
}

/// The next response head on `s` (up to its blank line), or `None` if the
/// server closes the connection (or resets it) first.
pub(crate) fn read_head(s: &mut TcpStream) -> Option<String> {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(0) => return None,
            Ok(_) => raw.push(byte[0]),
            Err(e) if closed(&e) => return None,
            Err(e) => panic!("neither an answer nor a close: {e}"),
        }
    }
    Some(String::from_utf8(raw).expect("a UTF-8 head"))
}

/// Whether a socket error says the server closed the connection.
pub(crate) fn closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// Reads the start-up lines up to the listening line; returns them and the address.
pub(crate) fn startup(server: &Server) -> (Vec<String>, String) {
    let mut lines = Vec::new();
    loop {
        let line = server.line();
        if let Some(addr) = line.strip_prefix("sessionguard listening on http://") {
            return (lines, addr.to_owned());
        }
        lines.push(line);
    }
}

/// A started `serve --demo` on a data folder: its address and this run's admin
/// token (`--demo` prints a fresh one at every start when none is configured).
pub(crate) struct Running {
    pub(crate) server: Server,
    pub(crate) addr: String,
    pub(crate) admin: String,
}

/// Starts `serve --demo` on port 0 with the embedded store in `data`.
pub(crate) fn start(data: &str) -> Running {
    start_with(data, &[])
}

/// [`start`] with more arguments for `serve` (e.g. `--config FILE`).
pub(crate) fn start_with(data: &str, extra: &[&str]) -> Running {
    let mut args = vec![
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data,
        "--demo",
    ];
    args.extend_from_slice(extra);
    let server = Server::start(&args);
    let (lines, addr) = startup(&server);
    let admin = lines
        .iter()
        .find_map(|l| l.strip_prefix("admin token: "))
        .expect("--demo prints an admin token when none is configured")
        .to_owned();
    Running {
        server,
        addr,
        admin,
    }
}

impl Running {
    /// `POST /v1/admin/users`: creates a user; returns its id.
    pub(crate) fn create_user(&self, name: &str, password: &str) -> String {
        let bearer = format!("Bearer {}", self.admin);
        let body = serde_json::json!({ "username": name, "password": password }).to_string();
        let (status, _, body) = http(
            &self.addr,
            "POST",
            "/v1/admin/users",
            &[
                ("authorization", &bearer),
                ("content-type", "application/json"),
            ],
            &body,
        );
        assert_eq!(status, 201, "{body}");
        json_field(&body, "id")
    }

    /// Kills the server with SIGKILL (see [`Server::kill9`]).
    pub(crate) fn kill9(self) {
        self.server.kill9();
    }
}

/// A browser's session: the cookie value and its anti-CSRF token.
pub(crate) struct Browser {
    pub(crate) cookie: String,
    pub(crate) csrf: String,
}

/// `POST /v1/login` at `addr`: the browser session, or the status of a refusal.
pub(crate) fn login(addr: &str, name: &str, password: &str) -> Result<Browser, u16> {
    let body = serde_json::json!({ "username": name, "password": password }).to_string();
    let (status, head, body) = http(
        addr,
        "POST",
        "/v1/login",
        &[("content-type", "application/json")],
        &body,
    );
    if status != 200 {
        return Err(status);
    }
    Ok(Browser {
        cookie: cookie_of(&head),
        csrf: json_field(&body, "csrf_token"),
    })
}

/// `GET /v1/session/status` at `addr` with the cookie: the user id, or the
/// rejection's code.
pub(crate) fn status(addr: &str, b: &Browser) -> Result<String, String> {
    let cookie = format!("__Host-sg_session={}", b.cookie);
    let (status, _, body) = http(
        addr,
        "GET",
        "/v1/session/status",
        &[("cookie", &cookie)],
        "",
    );
    match status {
        200 => Ok(json_field(&body, "user_id")),
        401 => Err(json_field(&body, "code")),
        other => panic!("unexpected {other}: {body}"),
    }
}

/// A cookie-authenticated `POST` with the session's anti-CSRF token.
pub(crate) fn post_as(addr: &str, b: &Browser, path: &str, json: &str) -> (u16, String, String) {
    let cookie = format!("__Host-sg_session={}", b.cookie);
    http(
        addr,
        "POST",
        path,
        &[
            ("cookie", &cookie),
            ("x-csrf-token", &b.csrf),
            ("content-type", "application/json"),
        ],
        json,
    )
}
