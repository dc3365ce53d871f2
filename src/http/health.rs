//! `GET /health/websocket`, `/health/live`, `/health/ready` (SPEC §10).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::state::AppState;

async fn database_ok(state: &AppState) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await,
        Ok(Ok(()))
    )
}

#[utoipa::path(get, path = "/health/live", operation_id = "healthLive", tag = "health",
    responses((status = 200, description = "The process serves requests", body = super::schema::Status)))]
pub async fn live() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

#[utoipa::path(get, path = "/health/ready", operation_id = "healthReady", tag = "health",
    responses(
        (status = 200, description = "Ready: the database answers, not shutting down", body = super::schema::Status),
        (status = 503, description = "Not ready (`status: unavailable`)", body = super::schema::Status),
    ))]
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let ready = !state.is_shutting_down() && database_ok(&state).await;
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(json!({ "status": if ready { "ok" } else { "unavailable" } })),
    )
}

#[utoipa::path(get, path = "/health/websocket", operation_id = "healthWebsocket", tag = "health",
    responses(
        (status = 200, description = "Healthy", body = super::schema::WebsocketHealth),
        (status = 503, description = "Degraded (database or Redis)", body = super::schema::WebsocketHealth),
    ))]
pub async fn websocket(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let database = database_ok(&state).await;
    let redis = state.redis.as_ref().map(|r| r.is_healthy());
    let ok = database && redis.unwrap_or(true);
    let body = json!({
        "status": if ok { "ok" } else { "degraded" },
        "service": "websocket",
        "connectedClients": state.sessions.len(),
        "node": state.config.node_id,
        "adapter": if state.redis.is_some() { "redis" } else { "local" },
        "database": if database { "ok" } else { "error" },
        "databaseBackend": state.store.backend(),
        "redis": match redis { None => "disabled", Some(true) => "ok", Some(false) => "error" },
        "uptimeSeconds": state.started.elapsed().as_secs(),
        "version": env!("CARGO_PKG_VERSION"),
    });
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}
