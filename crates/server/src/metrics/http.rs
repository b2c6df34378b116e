//! Requests by route template and status class, and their durations:
//! [`RequestMetricsLayer`] around the router.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::response::Response;
use metrics::{Counter, Histogram};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::{HTTP_DURATION, HTTP_REQUESTS, Registrar};

/// The label of requests no route matched (404, and the 405 of a known path
/// with another method is its route's).
pub const UNMATCHED: &str = "unmatched";

/// Status classes, `1xx` to `5xx`.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The handles of one route.
struct RouteHandles {
    duration: Histogram,
    answered: [Counter; CLASSES.len()],
}

/// The request series of every route template, registered up front, found by
/// the template without a lock. Cheap to clone (one shared pointer: a request
/// pays one reference count for it).
#[derive(Clone)]
pub struct RouteTable(Arc<Table>);

struct Table {
    index: HashMap<&'static str, usize>,
    /// `routes[0]` is [`UNMATCHED`].
    routes: Vec<RouteHandles>,
}

impl std::fmt::Debug for RouteTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteTable")
            .field("routes", &self.0.index.len())
            .finish()
    }
}

impl RouteTable {
    pub(super) fn register(r: &Registrar<'_>, templates: &[&'static str]) -> Self {
        let mut index = HashMap::with_capacity(templates.len());
        let mut routes = vec![Self::handles(r, UNMATCHED)];
        for &t in templates {
            if !index.contains_key(t) {
                index.insert(t, routes.len());
                routes.push(Self::handles(r, t));
            }
        }
        RouteTable(Arc::new(Table { index, routes }))
    }

    fn handles(r: &Registrar<'_>, route: &'static str) -> RouteHandles {
        RouteHandles {
            duration: r.histogram(HTTP_DURATION, [("route", route)]),
            answered: CLASSES
                .map(|class| r.counter(HTTP_REQUESTS, [("route", route), ("status", class)])),
        }
    }

    /// The position of `req`'s route template (0: unmatched, or a template
    /// that was not registered).
    fn route_of(&self, req: &Request) -> usize {
        req.extensions()
            .get::<MatchedPath>()
            .and_then(|p| self.0.index.get(p.as_str()).copied())
            .unwrap_or(0)
    }

    fn record(&self, route: usize, started: Instant, status: u16) {
        let Some(h) = self.0.routes.get(route) else {
            return;
        };
        h.duration.record(started.elapsed());
        let class = usize::from(status / 100).clamp(1, CLASSES.len()) - 1;
        h.answered[class].increment(1);
    }
}

/// Counts and times every request by its route template: see
/// [`super::Metrics::routes`].
#[derive(Debug, Clone)]
pub struct RequestMetricsLayer {
    table: RouteTable,
}

impl RequestMetricsLayer {
    /// The layer counting into `table`.
    pub fn new(table: RouteTable) -> Self {
        RequestMetricsLayer { table }
    }
}

impl<S> Layer<S> for RequestMetricsLayer {
    type Service = RequestMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestMetrics {
            inner,
            table: self.table.clone(),
        }
    }
}

/// The middleware of [`RequestMetricsLayer`].
#[derive(Debug, Clone)]
pub struct RequestMetrics<S> {
    inner: S,
    table: RouteTable,
}

impl<S> Service<Request> for RequestMetrics<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Timed<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let route = self.table.route_of(&req);
        Timed {
            inner: self.inner.call(req),
            table: self.table.clone(),
            route,
            started: Instant::now(),
        }
    }
}

pin_project! {
    /// The future of [`RequestMetrics`]: the handler's, recorded when it ends.
    pub struct Timed<F> {
        #[pin]
        inner: F,
        table: RouteTable,
        route: usize,
        started: Instant,
    }
}

impl<F, E> Future for Timed<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = ready!(this.inner.poll(cx));
        // An error never reaches a client as such (the router's is infallible):
        // only answers are counted.
        if let Ok(response) = &res {
            this.table
                .record(*this.route, *this.started, response.status().as_u16());
        }
        Poll::Ready(res)
    }
}
