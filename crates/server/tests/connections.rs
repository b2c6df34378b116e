//! Slow and flooding clients against a real server on port 0, with short
//! `[server]` timeouts so the tests stay quick: a half-sent or trickled head, a
//! trickled body and an idle connection are closed; a full server answers 503
//! with `Retry-After` and closes; each with the passing case beside it. The
//! tests assert that connections are closed (or answered), never how fast.

mod common;
mod process;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{ADMIN_TOKEN, ORIGIN, TestApp};
use process::{closed, header, read_head};
use tokio::sync::oneshot;

/// The bound on every blocking socket operation of a test: a server that never
/// closes fails the test instead of hanging it (not a timing assertion).
const GUARD: Duration = Duration::from_secs(10);

/// A server over a fresh app configured with `server` (the `[server]` table's
/// keys), running on its own thread's runtime until dropped.
struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl Running {
    fn start(server: &str) -> Running {
        let toml = format!(
            "public_origin = \"{ORIGIN}\"\nadmin_token = \"{ADMIN_TOKEN}\"\n[server]\n{server}\n"
        );
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let app = TestApp::with_toml(&toml);
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                addr_tx.send(listener.local_addr()?).unwrap();
                sessionguard_server::run(listener, app.state, async {
                    let _ = stopped.await;
                })
                .await
            })
        });
        let addr = addr_rx.recv_timeout(GUARD).expect("the server starts");
        Running {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect_timeout(&self.addr, GUARD).unwrap();
        s.set_read_timeout(Some(GUARD)).unwrap();
        s.set_write_timeout(Some(GUARD)).unwrap();
        s
    }

    /// Stops the server (shutdown, then drain) and returns what `run` returned.
    fn stop(mut self) -> std::io::Result<()> {
        let _ = self.stop.take().unwrap().send(());
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one response (head and `Content-Length` body) from `s`; `None` if the
/// connection closes first.
fn read_response(s: &mut TcpStream) -> Option<(String, String)> {
    let head = read_head(s)?;
    let len: usize = header(&head, "content-length").map_or(0, |v| v.parse().unwrap());
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    Some((head, String::from_utf8(body).unwrap()))
}

/// Whether the server closed `s`: a read sees the end of the stream (or a
/// reset) before any byte of an answer.
#[track_caller]
fn assert_closed_without_answer(s: &mut TcpStream) {
    let mut buf = [0u8; 256];
    match s.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!(
            "answered instead of closed: {}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e) if closed(&e) => {}
        Err(e) => panic!("still open: {e}"),
    }
}

#[track_caller]
fn assert_closed(s: &mut TcpStream) {
    let mut buf = [0u8; 256];
    match s.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!(
            "more after the answer: {}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e) if closed(&e) => {}
        Err(e) => panic!("still open: {e}"),
    }
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";

fn status(head: &str) -> u16 {
    head[9..12].parse().unwrap()
}

#[test]
fn a_head_sent_in_time_is_answered_and_a_half_sent_one_is_closed() {
    let server = Running::start("header_read_timeout = \"300ms\"");
    let mut ok = server.connect();
    ok.write_all(HEALTHZ).unwrap();
    let (head, _) = read_response(&mut ok).expect("answered");
    assert_eq!(status(&head), 200, "{head}");

    let mut slow = server.connect();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        .unwrap();
    assert_closed_without_answer(&mut slow);

    let mut silent = server.connect();
    assert_closed_without_answer(&mut silent);
}

#[test]
fn a_head_trickled_byte_by_byte_is_closed_before_it_ends() {
    let server = Running::start("header_read_timeout = \"300ms\"");
    let mut s = server.connect();
    // A head that would take 40 × 100 ms to send; each byte arrives well within
    // the timeout of the one before, which must not matter.
    let head = format!(
        "GET /healthz HTTP/1.1\r\nX-Slow: {}\r\n\r\n",
        "a".repeat(40)
    );
    let started = Instant::now();
    let mut cut = false;
    for b in head.bytes() {
        if s.write_all(&[b]).is_err() {
            cut = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        assert!(started.elapsed() < 2 * GUARD, "the server never closed");
    }
    if !cut {
        // Everything was written before the close was noticed: the close
        // still came instead of an answer.
        assert_closed_without_answer(&mut s);
    }
}

#[test]
fn a_trickled_body_gets_408_and_the_connection_closes() {
    let server = Running::start("request_timeout = \"500ms\"");
    let body = r#"{"username":"nobody","password":"not the password at all"}"#;
    let head = format!(
        "POST /v1/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );

    // Passing case: the whole body at once is answered (401: no such user).
    let mut ok = server.connect();
    ok.write_all(head.as_bytes()).unwrap();
    ok.write_all(body.as_bytes()).unwrap();
    let (answer, _) = read_response(&mut ok).expect("answered");
    assert_eq!(status(&answer), 401, "{answer}");

    // Failing case: ten bytes of it, then nothing.
    let mut slow = server.connect();
    slow.write_all(head.as_bytes()).unwrap();
    slow.write_all(&body.as_bytes()[..10]).unwrap();
    let (answer, problem) = read_response(&mut slow).expect("a 408 before the close");
    assert_eq!(status(&answer), 408, "{answer}");
    assert_eq!(header(&answer, "connection"), Some("close"), "{answer}");
    let problem: serde_json::Value = serde_json::from_str(&problem).unwrap();
    assert_eq!(problem["code"], "request_timeout");
    assert_closed(&mut slow);
}

#[test]
fn a_kept_alive_connection_serves_the_next_request_and_an_idle_one_is_closed() {
    let server = Running::start("keep_alive_timeout = \"300ms\"");
    let mut s = server.connect();
    s.write_all(HEALTHZ).unwrap();
    let (head, _) = read_response(&mut s).expect("answered");
    assert_eq!(status(&head), 200);
    // Passing case: the next request on the same connection, at once.
    s.write_all(HEALTHZ).unwrap();
    let (head, _) = read_response(&mut s).expect("the connection was kept");
    assert_eq!(status(&head), 200);
    // Failing case: nothing more; the server closes the idle connection.
    assert_closed(&mut s);
}

#[test]
fn beyond_max_connections_a_client_gets_503_with_retry_after_then_a_close() {
    let server = Running::start("max_connections = 2\nheader_read_timeout = \"20s\"");
    let mut first = server.connect();
    let second = server.connect();

    let mut third = server.connect();
    third.write_all(HEALTHZ).unwrap();
    let (head, body) = read_response(&mut third).expect("a 503 before the close");
    assert_eq!(status(&head), 503, "{head}");
    assert_eq!(header(&head, "retry-after"), Some("1"), "{head}");
    assert_eq!(
        header(&head, "content-type"),
        Some("application/problem+json")
    );
    let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["code"], "server_busy");
    assert_closed(&mut third);

    // The connections within the limit are served as usual.
    first.write_all(HEALTHZ).unwrap();
    assert_eq!(status(&read_response(&mut first).unwrap().0), 200);

    // Once one closes, a new connection is served again (polled: the server
    // notices the close asynchronously).
    drop(second);
    let started = Instant::now();
    loop {
        let mut next = server.connect();
        next.write_all(HEALTHZ).unwrap();
        let (head, _) = read_response(&mut next).expect("an answer");
        if status(&head) == 200 {
            break;
        }
        assert_eq!(status(&head), 503);
        assert!(started.elapsed() < GUARD, "the slot was never freed");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn shutdown_refuses_new_connections_and_finishes_the_request_in_flight() {
    let server = Running::start("shutdown_grace = \"20s\"");
    let addr = server.addr;
    let body = r#"{"username":"nobody","password":"not the password at all"}"#;
    let mut s = server.connect();
    write!(
        s,
        "POST /v1/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Expect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    // The handler reads the body: the request is in flight.
    let (head, _) = read_response(&mut s).expect("100 Continue");
    assert_eq!(status(&head), 100, "{head}");

    let stopping = std::thread::spawn(move || server.stop());
    let started = Instant::now();
    while TcpStream::connect_timeout(&addr, GUARD).is_ok() {
        assert!(started.elapsed() < GUARD, "still accepting after shutdown");
        std::thread::sleep(Duration::from_millis(20));
    }
    s.write_all(body.as_bytes()).unwrap();
    let (head, _) = read_response(&mut s).expect("the request in flight is answered");
    assert_eq!(status(&head), 401, "{head}");
    assert_closed(&mut s);
    stopping.join().unwrap().unwrap();
}

#[test]
fn past_the_shutdown_grace_a_request_still_in_flight_is_cut_off() {
    let server = Running::start("shutdown_grace = \"300ms\"\nrequest_timeout = \"1h\"");
    let mut s = server.connect();
    s.write_all(
        b"POST /v1/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
          Expect: 100-continue\r\nContent-Length: 20\r\n\r\n",
    )
    .unwrap();
    let (head, _) = read_response(&mut s).expect("100 Continue");
    assert_eq!(status(&head), 100, "{head}");
    // The body never comes: `run` still returns once the grace is over.
    server.stop().unwrap();
    assert_closed_without_answer(&mut s);
}
