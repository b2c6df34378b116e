//! Graceful shutdown of the real binary: SIGTERM stops accepting, finishes the
//! request in flight within `shutdown_grace`, closes the store and exits 0; a
//! request still in flight when the grace is over is cut off, and the process
//! still exits 0.

#![cfg(unix)]

mod process;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use process::{REQUEST_TIMEOUT, Running, cookie_of, json_field, read_head, start_with, status};
use sessionguard_test_kit::fixtures::TempDir;

const PASSWORD: &str = "correct horse battery staple";

/// Starts `serve --demo` on `data` with a configuration file holding `server`
/// as its `[server]` table.
fn start(data: &TempDir, server: &str) -> Running {
    let cfg = data.path().join("sessionguard.toml");
    std::fs::write(&cfg, format!("[server]\n{server}\n")).unwrap();
    let dir = data.path().join("data");
    start_with(dir.to_str().unwrap(), &["--config", cfg.to_str().unwrap()])
}

/// Opens a login whose body is held back: returns the connection once the
/// server has asked for the body (`100 Continue`), so the request is in flight.
fn login_in_flight(addr: &str, body: &str) -> TcpStream {
    let addr: SocketAddr = addr.parse().unwrap();
    let mut s = TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT).unwrap();
    s.set_read_timeout(Some(REQUEST_TIMEOUT)).unwrap();
    write!(
        s,
        "POST /v1/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Expect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    let head = read_head(&mut s).expect("100 Continue");
    assert!(head.starts_with("HTTP/1.1 100"), "{head}");
    s
}

/// Waits until `addr` refuses connections (the listener is closed).
fn until_refused(addr: &str) {
    let addr: SocketAddr = addr.parse().unwrap();
    let started = Instant::now();
    while TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT).is_ok() {
        assert!(
            started.elapsed() < REQUEST_TIMEOUT,
            "still accepting after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_finishes_the_request_in_flight_then_exits_0() {
    let data = TempDir::new();
    let run = start(&data, "shutdown_grace = \"30s\"");
    run.create_user("alice", PASSWORD);
    let body = serde_json::json!({ "username": "alice", "password": PASSWORD }).to_string();
    let mut s = login_in_flight(&run.addr, &body);

    run.server.sigterm();
    until_refused(&run.addr);
    s.write_all(body.as_bytes()).unwrap();
    let head = read_head(&mut s).expect("the login in flight is answered");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let cookie = cookie_of(&head);
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    let csrf = json_field(&String::from_utf8_lossy(&rest), "csrf_token");
    assert_eq!(run.server.wait(), Some(0));

    // The store was closed cleanly: it opens again, with the session in it.
    let run = start(&data, "");
    let browser = process::Browser { cookie, csrf };
    assert!(status(&run.addr, &browser).is_ok(), "the session survived");
    assert_eq!(run.server.terminate(), Some(0));
}

#[test]
fn past_the_grace_a_request_in_flight_is_cut_off_and_the_server_exits_0() {
    let data = TempDir::new();
    let run = start(
        &data,
        "shutdown_grace = \"300ms\"\nrequest_timeout = \"1h\"",
    );
    let mut s = login_in_flight(&run.addr, "{\"username\":\"alice\"}");
    run.server.sigterm();
    // The body never comes.
    assert_eq!(run.server.wait(), Some(0));
    assert_eq!(read_head(&mut s), None, "cut off without an answer");
}

#[test]
fn sigterm_right_after_the_listening_line_is_a_clean_shutdown() {
    // The handlers are installed before the server says it listens: a SIGTERM
    // sent the moment that line is read shuts down cleanly (exit 0), rather
    // than ending the process by the signal's default action.
    for _ in 0..5 {
        let data = TempDir::new();
        let run = start(&data, "");
        run.server.sigterm();
        assert_eq!(run.server.wait(), Some(0));
    }
}
