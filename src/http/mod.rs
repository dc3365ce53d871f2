//! The HTTP API: health, event publishing and history (by offset, and by
//! time range in `history`), telemetry ingest, documents, device commands,
//! the admin API, the webhook admin API (`webhooks`), and the OpenAPI document
//! ([`openapi`], which holds the route table).
//! Served by the same axum router (and port) as the Socket.IO layer;
//! `/metrics` is added by `crate::app` (see `crate::metrics::http`).

pub mod admin;
pub mod api_key;
pub mod commands;
pub mod documents;
pub mod events;
pub mod health;
pub mod history;
pub mod openapi;
pub mod origin;
pub mod schema;
pub mod schema_hooks;
pub mod webhooks;

use axum::Router;

use crate::error::{AppError, AppResult, Code};
use crate::state::AppState;

/// A request body as JSON, or the refusal every JSON route gives.
pub(crate) fn json_body(body: &[u8]) -> AppResult<serde_json::Value> {
    serde_json::from_slice(body).map_err(|e| {
        AppError::new(
            Code::ValidationFailed,
            format!("body is not valid JSON: {e}"),
        )
    })
}

/// Every route of [`openapi::router`] (the route table and its document).
pub fn routes(state: AppState) -> Router {
    let (router, _doc) = openapi::router().split_for_parts();
    router.with_state(state)
}
