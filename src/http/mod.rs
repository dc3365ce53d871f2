//! The HTTP API: health, event publishing and history (by offset, and by
//! time range in `history`), telemetry ingest, documents, the webhook admin
//! API (`webhooks`).
//! Served by the same axum router (and port) as the Socket.IO layer;
//! `/metrics` is added by `crate::app` (see `crate::metrics::http`).

pub mod api_key;
pub mod documents;
pub mod events;
pub mod health;
pub mod history;
pub mod origin;
pub mod webhooks;

use axum::Router;
use axum::routing::{get, post};

use crate::state::AppState;

pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/health/websocket", get(health::websocket))
        .route("/api/v1/events", post(events::publish).get(history::get))
        .route("/api/v1/telemetry", post(events::telemetry))
        .route(
            "/api/v1/documents/{type}/{id}",
            get(documents::get).patch(documents::patch),
        )
        .route(
            "/api/v1/documents/{type}/{id}/history",
            get(documents::history),
        )
        .merge(webhooks::routes())
        .with_state(state)
}
