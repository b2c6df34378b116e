//! Connections: the accept loop, the connection cap, the timeouts that close slow
//! and idle clients, and the graceful drain at shutdown ([`serve`]).
//!
//! Each accepted TCP connection is served by hyper's HTTP/1.1 connection, with
//! the [`crate::router`] as its service, under a watchdog that knows what the
//! connection is doing:
//!
//! | the connection is | it is closed when | setting |
//! |---|---|---|
//! | new, nothing received | the first request's head is not complete in time | `header_read_timeout` |
//! | receiving a request's head | the head is not complete in time from its first byte | `header_read_timeout` |
//! | serving a request (body included) | the response is not ready in time: answered 408 `request_timeout`, then closed | `request_timeout` |
//! | idle between requests | no new request starts in time | `keep_alive_timeout` |
//!
//! Only what was received is watched — a client trickling a head or a body one
//! byte at a time gains nothing by it — and no deadline moves with a client's
//! activity except the end of one exchange and the start of the next.
//!
//! At most `max_connections` are open; a connection beyond is answered one 503
//! `server_busy` problem document with `Retry-After` and closed, so a full
//! server sheds load with a clear answer instead of queueing or falling over.
//!
//! When `shutdown` completes, the listener is closed (new connections are
//! refused), idle connections are closed, each in-flight request is finished
//! and its connection then closed; after `shutdown_grace` whatever is left is
//! cut off.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::response::{IntoResponse, Response};
use axum::routing::future::RouteFuture;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tower::Service as _;

use crate::config::ServerConfig;
use crate::context::no_store;
use crate::error::ApiError;
use crate::metrics::{Metrics, OpenConnection, Shed};

/// What a client refused at the connection limit is told to wait.
pub const BUSY_RETRY: Duration = Duration::from_secs(1);

/// How many refused connections may be answered at once; beyond, a refused
/// connection is closed without an answer (the flood is then no client's).
const SHED_CONCURRENCY: usize = 256;

/// How long a refused connection may take to send its request head.
const SHED_TIMEOUT: Duration = Duration::from_secs(1);

/// How long the loop pauses after an accept error that is not one
/// connection's (e.g. no file descriptor left), so it does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Serves `app` on `listener` under `limits` until `shutdown` completes, then
/// drains: see the module documentation. Open connections and connections
/// refused at the limit are counted in `metrics`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerConfig,
    metrics: Metrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let limits = Arc::new(limits);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let shedding = Arc::new(Semaphore::new(SHED_CONCURRENCY));
    let at_limit = AtomicBool::new(false);
    let (stop, stopped) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            // Shutdown first: once asked to stop, no further connection is taken.
            biased;
            () = &mut shutdown => break,
            Some(ended) = connections.join_next(), if !connections.is_empty() => {
                if let Err(e) = ended {
                    tracing::error!(error = %e, "a connection task failed");
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match Arc::clone(&slots).try_acquire_owned() {
                    Ok(slot) => {
                        at_limit.store(false, Ordering::Relaxed);
                        let conn = connection(
                            stream,
                            peer,
                            app.clone(),
                            Arc::clone(&limits),
                            stopped.clone(),
                            (slot, metrics.connection_opened()),
                        );
                        connections.spawn(conn);
                    }
                    Err(_) => {
                        if !at_limit.swap(true, Ordering::Relaxed) {
                            tracing::warn!(
                                max_connections = limits.max_connections,
                                "connection limit reached: new connections are answered 503"
                            );
                        }
                        metrics.shed(Shed::ConnectionLimit);
                        shed(stream, &shedding, &limits);
                    }
                },
                Err(e) if is_connection_error(&e) => {}
                Err(e) => {
                    tracing::error!(error = %e, "cannot accept connections");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
        }
    }
    // Closing the listener refuses new connections at once.
    drop(listener);
    // A send error means no connection is left to tell.
    let _ = stop.send(true);
    let open = connections.len();
    if open > 0 {
        tracing::info!(open, grace = ?limits.shutdown_grace, "finishing in-flight requests");
    }
    let drain = async {
        while let Some(ended) = connections.join_next().await {
            if let Err(e) = ended {
                tracing::error!(error = %e, "a connection task failed");
            }
        }
    };
    if tokio::time::timeout(limits.shutdown_grace, drain)
        .await
        .is_err()
    {
        tracing::warn!(
            cut = connections.len(),
            "shutdown grace over: closing the connections still open"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// Accept errors of one connection (it went away before being accepted),
/// which say nothing about the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Serves one connection under its watchdog until it ends, is found slow or
/// idle, or is told to stop and finishes its request. `_slot` is its place
/// under `max_connections` and in the open-connection gauge, released when it
/// ends.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: Arc<ServerConfig>,
    mut stop: watch::Receiver<bool>,
    _slot: (OwnedSemaphorePermit, OpenConnection),
) {
    let activity = Arc::new(Activity::new(Instant::now()));
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: Arc::clone(&activity),
    });
    let service = ConnService {
        app,
        peer,
        activity: Arc::clone(&activity),
        request_timeout: limits.request_timeout,
    };
    let mut builder = http1::Builder::new();
    // The watchdog below keeps the time; hyper's own header timer would also
    // count idle time between requests.
    builder.header_read_timeout(None);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let watchdog =
        tokio::time::sleep_until(activity.deadline(&limits).unwrap_or_else(Instant::now));
    tokio::pin!(watchdog);
    let mut stopping = *stop.borrow();
    if stopping {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    // A client that goes away mid-request is routine.
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = activity.changed.notified() => {
                let now = Instant::now();
                let next = activity.deadline(&limits).unwrap_or(now + limits.request_timeout);
                watchdog.as_mut().reset(next);
            }
            () = &mut watchdog => {
                let now = Instant::now();
                match activity.deadline(&limits) {
                    Some(deadline) if deadline <= now => {
                        tracing::debug!(%peer, "closing a slow or idle connection");
                        return;
                    }
                    Some(deadline) => watchdog.as_mut().reset(deadline),
                    // In flight: the request's own deadline answers it (408);
                    // look again once it could have.
                    None => watchdog.as_mut().reset(now + limits.request_timeout),
                }
            }
            changed = stop.changed(), if !stopping => {
                // Told to stop (or the server is gone): finish the request in
                // flight, if any, then close; an idle connection closes now.
                let _ = changed;
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Answers a connection beyond the limit with one 503 and closes it, if fewer
/// than [`SHED_CONCURRENCY`] are being answered; else closes it at once.
fn shed(stream: TcpStream, shedding: &Arc<Semaphore>, limits: &ServerConfig) {
    let Ok(permit) = Arc::clone(shedding).try_acquire_owned() else {
        return;
    };
    let wait = SHED_TIMEOUT.min(limits.header_read_timeout);
    tokio::spawn(async move {
        let _permit = permit;
        let service = hyper::service::service_fn(|_: Request<Incoming>| async {
            Ok::<_, Infallible>(busy_response())
        });
        let conn = http1::Builder::new()
            .keep_alive(false)
            .header_read_timeout(None)
            .serve_connection(TokioIo::new(stream), service);
        // Reading the head first lets the client read the answer instead of
        // meeting a reset; a client too slow for even that is just closed.
        let _ = tokio::time::timeout(wait, conn).await;
    });
}

/// The 503 of a connection refused at the limit.
fn busy_response() -> Response {
    no_store(
        ApiError::Busy {
            retry_after: BUSY_RETRY,
        }
        .into_response(),
    )
}

/// What one connection is doing, for its watchdog, which `changed` wakes when
/// a deadline may have moved earlier (a request ended, a head began).
#[derive(Debug)]
struct Activity {
    phase: Mutex<Phase>,
    changed: Notify,
}

#[derive(Debug, Clone, Copy)]
struct Phase {
    /// A request is being served (its head was read, its response not produced).
    in_flight: bool,
    /// Whether a request was served on the connection yet.
    served: bool,
    /// When the connection opened or its last request ended.
    idle_since: Instant,
    /// The first byte received since then, if any.
    first_byte: Option<Instant>,
}

impl Activity {
    fn new(now: Instant) -> Self {
        Activity {
            phase: Mutex::new(Phase {
                in_flight: false,
                served: false,
                idle_since: now,
                first_byte: None,
            }),
            changed: Notify::new(),
        }
    }

    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        // Each update is a few plain stores: a poisoned phase is still whole.
        self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bytes arrived from the client.
    fn received(&self) {
        let mut p = self.phase();
        if !p.in_flight && p.first_byte.is_none() {
            p.first_byte = Some(Instant::now());
            drop(p);
            self.changed.notify_one();
        }
    }

    fn request_started(&self) {
        let mut p = self.phase();
        p.in_flight = true;
        p.first_byte = None;
    }

    fn request_ended(&self) {
        let mut p = self.phase();
        p.in_flight = false;
        p.served = true;
        p.idle_since = Instant::now();
        p.first_byte = None;
        drop(p);
        self.changed.notify_one();
    }

    /// When the connection is to be closed unless something changes; `None`
    /// while a request is in flight (its own deadline answers it).
    fn deadline(&self, limits: &ServerConfig) -> Option<Instant> {
        let p = *self.phase();
        if p.in_flight {
            return None;
        }
        Some(match p.first_byte {
            Some(first) => first + limits.header_read_timeout,
            None if p.served => p.idle_since + limits.keep_alive_timeout,
            None => p.idle_since + limits.header_read_timeout,
        })
    }
}

/// The connection's socket, telling [`Activity`] when bytes arrive.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.received();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The router as one connection's service: gives each request the peer's
/// address (`ConnectInfo`) and its `request_timeout`.
#[derive(Clone)]
struct ConnService {
    app: Router,
    peer: SocketAddr,
    activity: Arc<Activity>,
    request_timeout: Duration,
}

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response;
    type Error = Infallible;
    type Future = Timed;

    fn call(&self, req: Request<Incoming>) -> Timed {
        self.activity.request_started();
        let mut req = req.map(Body::new);
        req.extensions_mut().insert(ConnectInfo(self.peer));
        // A `Router` is always ready: no `poll_ready` needed before `call`.
        let inner = self.app.clone().call(req);
        Timed {
            inner,
            deadline: tokio::time::sleep(self.request_timeout),
            _in_flight: InFlight(Arc::clone(&self.activity)),
        }
    }
}

/// Marks the end of a request when its response is produced, or when hyper
/// drops it (the client went away).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

pin_project! {
    /// A request under its `request_timeout`: the router's answer, or 408 once
    /// the time is up (the handler, waiting for a trickled body or anything
    /// else, is dropped; the 408 carries `Connection: close`).
    struct Timed {
        #[pin]
        inner: RouteFuture<Infallible>,
        #[pin]
        deadline: Sleep,
        _in_flight: InFlight,
    }
}

impl Future for Timed {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(res) = this.inner.poll(cx) {
            return Poll::Ready(res);
        }
        if this.deadline.poll(cx).is_ready() {
            return Poll::Ready(Ok(no_store(ApiError::RequestTimeout.into_response())));
        }
        Poll::Pending
    }
}
