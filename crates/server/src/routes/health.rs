//! Health endpoints: liveness (`/healthz`) and readiness (`/readyz`).
//!
//! Liveness says the process serves HTTP; it never touches the store, so an
//! orchestrator does not restart a node because its store is away. Readiness
//! says the node can serve sessions now: its store answers, and (on Redis) every
//! master keeps every key (`maxmemory-policy noeviction`). A load balancer sends
//! no traffic to a node that is not ready.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sessionguard_core::{Clock, Store};

use crate::error::ApiError;
use crate::extract::Admin;
use crate::metrics::{self, Metrics};
use crate::state::AppState;

/// `GET /healthz`: the process is up and serving.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: `200 {"status":"ready"}` when the store can serve now
/// ([`Store::ready`]); otherwise `503` with the problem code `store_unavailable`
/// (the cause is logged, never shown). Checked at every call, never cached.
pub async fn readyz<S: Store, C: Clock>(
    State(state): State<AppState<S, C>>,
) -> Result<Json<Value>, ApiError> {
    state
        .engine()
        .store()
        .ready()
        .await
        .map_err(ApiError::Store)?;
    Ok(Json(json!({ "status": "ready" })))
}

/// `GET /metrics` on the main listener: the Prometheus text of
/// [`crate::metrics`], for the admin token only (401 `admin_unauthorized`
/// otherwise). Without authentication on `metrics_listen`.
pub async fn metrics<S: Store, C: Clock>(
    State(state): State<AppState<S, C>>,
    _: Admin,
) -> Response {
    metrics_text(state.metrics())
}

/// The answer of `GET /metrics`: every series, as Prometheus text.
pub fn metrics_text(metrics: &Metrics) -> Response {
    let mut res = metrics.render().into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(metrics::CONTENT_TYPE),
    );
    res
}
