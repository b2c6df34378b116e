//! Running the built `sessionguard` binary in tests: start it on port 0, read its
//! stdout contract, talk raw HTTP/1.1 to it, stop it gently or kill it.

#![allow(dead_code)] // each test crate uses its own subset

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
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
        let mut child = Command::new(env!("CARGO_BIN_EXE_sessionguard"))
            .args(args)
            .env_remove("SESSIONGUARD_ADMIN_TOKEN")
            .env_remove("SESSIONGUARD_LISTEN")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
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
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        self.child.wait().unwrap().code()
    }
}

impl Server {
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

/// One HTTP/1.1 exchange over a fresh connection; returns status, head and body.
pub(crate) fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(req.as_bytes()).unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_owned(), body.to_owned())
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
