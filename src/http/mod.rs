//! The HTTP API: health, event publishing and history (by offset, and by
//! time range in `history`), telemetry ingest, documents, the admin API,
//! the webhook admin API (`webhooks`), and the OpenAPI document
//! ([`openapi`], which holds the route table).
//! Served by the same axum router (and port) as the Socket.IO layer;
//! `/metrics` is added by `crate::app` (see `crate::metrics::http`).

pub mod admin;
pub mod api_key;
pub mod documents;
pub mod events;
pub mod health;
pub mod history;
pub mod openapi;
pub mod origin;
pub mod schema;
pub mod webhooks;

use axum::Router;

use crate::state::AppState;

/// Every route of [`openapi::router`] (the route table and its document).
pub fn routes(state: AppState) -> Router {
    let (router, _doc) = openapi::router().split_for_parts();
    router.with_state(state)
}
