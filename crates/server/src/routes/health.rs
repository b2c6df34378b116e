//! Health endpoints: liveness (`/healthz`) and readiness (`/readyz`).
//!
//! Liveness says the process serves HTTP; it never touches the store, so an
//! orchestrator does not restart a node because its store is away. Readiness
//! says the node can serve sessions now: its store answers, and (on Redis) every
//! master keeps every key (`maxmemory-policy noeviction`). A load balancer sends
//! no traffic to a node that is not ready.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use sessionguard_core::{Clock, Store};

use crate::error::ApiError;
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
