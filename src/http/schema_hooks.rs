//! Shapes of the webhook admin API and of the time-range history for the
//! OpenAPI document ([`super::openapi`]); like [`super::schema`], checked
//! against live answers by the schemathesis run and their examples by
//! `tests/openapi.rs`.
#![allow(dead_code)] // Read by the OpenAPI derive, never constructed.

use serde_json::Value;
use utoipa::ToSchema;
use utoipa::openapi::schema::{AnyOfBuilder, Schema};
use utoipa::openapi::{Ref, RefOr};

/// The body of `POST /api/v1/admin/webhooks`.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct WebhookIn {
    #[schema(example = "acme", pattern = r"^[A-Za-z0-9_.@-]{1,64}$")]
    pub company_id: String,
    /// `http` or `https`; private and loopback targets only with `WEBHOOK_ALLOW_PRIVATE=on`.
    #[schema(example = "https://hooks.example.com/switchyard", max_length = 2048)]
    pub url: String,
    /// Event type names (lifecycle types such as `user:online` by name); empty or absent = any type.
    #[schema(example = json!(["alarm", "quality_alert"]), max_items = 100)]
    pub types: Option<Vec<String>>,
    /// Only events of this priority or higher.
    #[schema(example = "high")]
    pub min_priority: Option<String>,
    /// The signing secret; generated (`whsec_…`) when absent.
    #[schema(example = "whsec_0123456789abcdef0123")]
    pub secret: Option<String>,
    #[schema(example = "quality team pager", max_length = 200)]
    pub description: Option<String>,
}

/// A webhook endpoint (its secret is shown only when it is created).
#[derive(ToSchema, serde::Serialize)]
#[schema(rename_all = "camelCase")]
pub struct Webhook {
    #[schema(example = "wh_0193a1b27c3d")]
    pub id: String,
    #[schema(example = "acme")]
    pub company_id: String,
    #[schema(example = "https://hooks.example.com/switchyard")]
    pub url: String,
    #[schema(example = json!(["alarm"]))]
    pub types: Vec<String>,
    #[schema(example = "high")]
    pub min_priority: Option<String>,
    pub description: Option<String>,
    #[schema(example = "2026-12-01T03:40:00Z")]
    pub created_at: String,
}

/// `201` of `POST /api/v1/admin/webhooks`: the endpoint and its secret.
#[derive(ToSchema, serde::Serialize)]
#[schema(rename_all = "camelCase")]
pub struct WebhookCreated {
    #[schema(inline)]
    #[serde(flatten)]
    pub endpoint: Webhook,
    #[schema(example = "whsec_0123456789abcdef0123")]
    pub secret: String,
}

/// `GET /api/v1/admin/webhooks`.
#[derive(ToSchema)]
pub struct WebhookList {
    pub webhooks: Vec<Webhook>,
}

/// Delivery counts of one endpoint.
#[derive(ToSchema, serde::Serialize)]
#[schema(rename_all = "camelCase")]
pub struct DeliveryStats {
    #[schema(example = 0)]
    pub pending: i64,
    #[schema(example = 12)]
    pub delivered: i64,
    #[schema(example = 0)]
    pub dead: i64,
    pub last_delivered_at: Option<String>,
}

/// `GET /api/v1/admin/webhooks/{id}`: the endpoint and its delivery counts.
#[derive(ToSchema, serde::Serialize)]
pub struct WebhookDetail {
    #[schema(inline)]
    #[serde(flatten)]
    pub endpoint: Webhook,
    pub stats: DeliveryStats,
}

/// A delivery whose retry schedule ran out.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct DeadLetter {
    #[schema(example = 7)]
    pub delivery_id: i64,
    #[schema(example = "0193a1b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b")]
    pub event_id: String,
    #[schema(example = "quality_alert")]
    pub event_type: String,
    #[schema(example = 30)]
    pub attempts: i64,
    #[schema(example = 500)]
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    #[schema(example = "2026-12-01T03:40:00Z")]
    pub created_at: String,
    pub failed_at: Option<String>,
}

/// `GET /api/v1/admin/webhooks/{id}/dead-letters`.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct DeadLetters {
    pub dead_letters: Vec<DeadLetter>,
}

/// One event of a time range.
#[derive(ToSchema, serde::Serialize)]
pub struct RangeEvent {
    #[schema(example = "0193a1b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b")]
    pub id: String,
    #[schema(rename = "type", example = "alarm")]
    pub event_type: String,
    #[schema(value_type = Object, example = json!({ "alarmId": 42 }))]
    pub payload: Value,
    #[schema(example = "high")]
    pub priority: String,
    #[schema(example = "erp")]
    pub source: String,
    #[schema(example = "2026-12-01T03:40:00Z")]
    pub timestamp: String,
    /// With a `room` filter: the room and the event's offset there.
    #[schema(example = "line:3")]
    pub room: Option<String>,
    #[schema(example = 17)]
    pub offset: Option<i64>,
    /// The publishing user, for events published by a client.
    pub publisher: Option<String>,
}

/// A page of a time range.
#[derive(ToSchema, serde::Serialize)]
pub struct RangePage {
    pub events: Vec<RangeEvent>,
    /// The `cursor` of the next page, or null at the end.
    #[schema(example = json!(null))]
    pub next: Option<String>,
}

/// `GET /api/v1/events`: a page of the offset history or of a time range.
/// `anyOf`, not `oneOf`: an empty page is valid under both.
pub struct EventsPage;

impl utoipa::PartialSchema for EventsPage {
    fn schema() -> RefOr<Schema> {
        AnyOfBuilder::new()
            .item(Ref::from_schema_name("History"))
            .item(Ref::from_schema_name("RangePage"))
            .description(Some(
                "A page of the offset history (`next`: the next `after`) or of a time range \
                 (`next`: the next `cursor`)",
            ))
            .into()
    }
}

impl ToSchema for EventsPage {}
