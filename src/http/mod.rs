//! The HTTP API: health, event publishing and history, telemetry ingest,
//! documents, device commands.
//! Served by the same axum router (and port) as the Socket.IO layer;
//! `/metrics` is added by `crate::app` (see `crate::metrics::http`).

pub mod api_key;
pub mod commands;
pub mod documents;
pub mod events;
pub mod health;
pub mod origin;

use axum::Router;
use axum::routing::{get, post};

use crate::state::AppState;

pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/health/websocket", get(health::websocket))
        .route("/api/v1/events", post(events::publish).get(events::history))
        .route("/api/v1/telemetry", post(events::telemetry))
        .route("/api/v1/commands", post(commands::send).get(commands::list))
        // The control panel's own path for the same request.
        .route("/api/os/command", post(commands::send))
        .route("/api/v1/commands/{id}", get(commands::get))
        .route(
            "/api/v1/documents/{type}/{id}",
            get(documents::get).patch(documents::patch),
        )
        .route(
            "/api/v1/documents/{type}/{id}/history",
            get(documents::history),
        )
        .with_state(state)
}
