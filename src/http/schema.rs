//! Shapes of the HTTP API's bodies for the OpenAPI document
//! ([`super::openapi`]), where a handler builds its JSON by hand. Each is
//! checked against live answers by the schemathesis run (response
//! conformance) and its examples by `tests/openapi.rs`, so they cannot
//! drift from the code unnoticed.
#![allow(dead_code)] // Read by the OpenAPI derive, never constructed.

use serde_json::Value;
use utoipa::ToSchema;

/// Every refusal: `{ error: { code, message, details? } }`.
#[derive(ToSchema)]
pub struct ErrorReply {
    pub error: ErrorBody,
}

#[derive(ToSchema)]
pub struct ErrorBody {
    #[schema(example = "VALIDATION_FAILED")]
    pub code: ErrorCode,
    #[schema(example = "`companyId` is required")]
    pub message: String,
    /// Which field failed, which batch index, …
    #[schema(value_type = Option<Object>, example = json!({ "field": "companyId" }))]
    pub details: Option<Value>,
}

/// The protocol's error codes (`crate::error::Code`).
#[derive(ToSchema)]
#[schema(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    Unauthorized,
    InvalidToken,
    TokenExpired,
    LimitExceeded,
    Forbidden,
    InvalidRoom,
    UnknownEvent,
    ValidationFailed,
    RateLimited,
    PayloadTooLarge,
    NotFound,
    Conflict,
    Unavailable,
    Internal,
}

/// `{ status }` of `/health/live` and `/health/ready`.
#[derive(ToSchema)]
pub struct Status {
    #[schema(example = "ok")]
    pub status: String,
}

/// `GET /health/websocket`.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct WebsocketHealth {
    /// `ok` or `degraded`.
    #[schema(example = "ok")]
    pub status: String,
    #[schema(example = "websocket")]
    pub service: String,
    #[schema(example = 12)]
    pub connected_clients: u64,
    #[schema(example = "switchyard-a")]
    pub node: String,
    /// `local` or `redis`.
    #[schema(example = "redis")]
    pub adapter: String,
    #[schema(example = "ok")]
    pub database: String,
    #[schema(example = "postgres")]
    pub database_backend: String,
    /// `ok`, `error` or `disabled`.
    #[schema(example = "ok")]
    pub redis: String,
    #[schema(example = 3600)]
    pub uptime_seconds: u64,
    #[schema(example = "0.1.0")]
    pub version: String,
}

/// One event of `POST /api/v1/events` (the body is one or an array of 1–1000).
#[derive(ToSchema, serde::Deserialize)]
#[schema(rename_all = "camelCase")]
pub struct EventIn {
    /// A catalog event type.
    #[schema(rename = "type", example = "order:updated")]
    pub event_type: String,
    #[schema(example = "acme")]
    pub company_id: String,
    /// Logical rooms; with `users` and `roles` none = `company`.
    #[schema(example = json!(["order:67890"]))]
    pub rooms: Option<Vec<String>>,
    #[schema(example = json!(["u-42"]))]
    pub users: Option<Vec<String>>,
    #[schema(example = json!(["supervisor"]))]
    pub roles: Option<Vec<String>>,
    /// Validated against the type's schema.
    #[schema(value_type = Object, example = json!({ "orderId": "67890", "status": "released" }))]
    pub payload: Value,
    /// `low`, `medium`, `high` or `critical`.
    #[schema(example = "high")]
    pub priority: Option<String>,
    #[schema(example = "erp")]
    pub source: Option<String>,
    /// 1–128 characters: a retry returns the first result.
    #[schema(example = "erp-7731")]
    pub idempotency_key: Option<String>,
}

/// The body of `POST /api/v1/events`: one event or a batch.
#[derive(ToSchema, serde::Deserialize)]
#[serde(untagged)]
#[schema(no_recursion)]
pub enum PublishBody {
    #[schema(title = "one event")]
    One(EventIn),
    #[schema(title = "a batch")]
    Batch(Vec<EventIn>),
}

/// `202` of `POST /api/v1/events`.
#[derive(ToSchema)]
pub struct Published {
    pub events: Vec<PublishedEvent>,
}

#[derive(ToSchema)]
pub struct PublishedEvent {
    #[schema(example = "0193a1b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b")]
    pub id: String,
    /// Per room, the offset the event took (durable types only).
    #[schema(value_type = Object, example = json!({ "order:67890": 17 }))]
    pub offsets: Value,
}

/// One line of `GET /api/v1/events`.
#[derive(ToSchema)]
pub struct LoggedEvent {
    #[schema(example = "0193a1b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b")]
    pub id: String,
    #[schema(rename = "type", example = "order:updated")]
    pub event_type: String,
    #[schema(example = "order:67890")]
    pub room: String,
    #[schema(example = 17)]
    pub offset: i64,
    #[schema(value_type = Object, example = json!({ "orderId": "67890" }))]
    pub payload: Value,
    #[schema(example = "high")]
    pub priority: String,
    #[schema(example = "erp")]
    pub source: String,
    #[schema(example = "2026-12-01T03:40:00Z")]
    pub timestamp: String,
}

/// `GET /api/v1/events`.
#[derive(ToSchema)]
pub struct History {
    pub events: Vec<LoggedEvent>,
    /// The `after` of the next page, or null at the end.
    #[schema(example = 17)]
    pub next: Option<i64>,
}

/// One reading of `POST /api/v1/telemetry` (the body is one or an array).
#[derive(ToSchema, serde::Deserialize)]
#[schema(rename_all = "camelCase")]
pub struct Reading {
    #[schema(example = "acme")]
    pub company_id: String,
    #[schema(example = 59)]
    pub endpoint_id: i64,
    #[schema(value_type = Object, example = 21.5)]
    pub value: Value,
    #[schema(value_type = Object, example = "2026-12-01T03:40:00Z")]
    pub timestamp: Value,
}

/// The body of `POST /api/v1/telemetry`.
#[derive(ToSchema, serde::Deserialize)]
#[serde(untagged)]
#[schema(no_recursion)]
pub enum TelemetryBody {
    #[schema(title = "one reading")]
    One(Reading),
    #[schema(title = "a batch")]
    Batch(Vec<Reading>),
}

/// `202` of `POST /api/v1/telemetry`.
#[derive(ToSchema)]
pub struct Accepted {
    #[schema(example = 10)]
    pub accepted: u64,
}

/// A document (SPEC §6).
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct Document {
    #[schema(rename = "type", example = "order")]
    pub doc_type: String,
    #[schema(example = "67890")]
    pub id: String,
    /// 0 = does not exist.
    #[schema(example = 3)]
    pub version: i64,
    #[schema(value_type = Object, example = json!({ "status": "released", "qty": 40 }))]
    pub data: Value,
    #[schema(example = "2026-12-01T03:40:00Z")]
    pub created_at: Option<String>,
    #[schema(example = "2026-12-01T03:41:00Z")]
    pub updated_at: Option<String>,
    #[schema(example = "u-42")]
    pub updated_by: Option<String>,
}

/// `GET /api/v1/documents/{type}/{id}`.
#[derive(ToSchema)]
pub struct DocumentReply {
    pub document: Document,
}

/// The body of `PATCH /api/v1/documents/{type}/{id}`.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct DocumentPatch {
    /// The version the changes were made on.
    #[schema(example = 3)]
    pub base_version: i64,
    /// Top-level fields; null deletes one.
    #[schema(value_type = Object, example = json!({ "status": "done" }))]
    pub changes: Value,
    /// ISO-8601 or ms since the epoch (the edit's time, for last-write-wins).
    #[schema(value_type = Option<Object>, example = "2026-12-01T03:41:00Z")]
    pub edited_at: Option<Value>,
    #[schema(example = "m-1")]
    pub client_mutation_id: Option<String>,
    #[schema(example = "erp")]
    pub updated_by: Option<String>,
}

/// `200` of `PATCH /api/v1/documents/{type}/{id}`.
#[derive(ToSchema)]
pub struct DocumentUpdated {
    /// `applied` or `merged`.
    #[schema(example = "applied")]
    pub status: String,
    #[schema(example = 4)]
    pub version: i64,
    pub document: Document,
    /// With `merged`: the conflicting fields and how they were resolved.
    #[schema(value_type = Option<Object>)]
    pub conflict: Option<Value>,
    /// A retry of an earlier `clientMutationId`.
    #[schema(example = false)]
    pub duplicate: Option<bool>,
}

/// One version of `GET /api/v1/documents/{type}/{id}/history`.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct DocumentVersion {
    #[schema(example = 4)]
    pub version: i64,
    #[schema(value_type = Object, example = json!({ "status": "done" }))]
    pub changes: Value,
    #[schema(example = "u-42")]
    pub updated_by: String,
    #[schema(example = "2026-12-01T03:41:00Z")]
    pub updated_at: String,
    #[schema(example = "2026-12-01T03:41:00Z")]
    pub edited_at: String,
}

/// `GET /api/v1/documents/{type}/{id}/history`.
#[derive(ToSchema)]
pub struct DocumentHistory {
    pub versions: Vec<DocumentVersion>,
    #[schema(example = json!(null))]
    pub next: Option<i64>,
}
