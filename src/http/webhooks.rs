//! The webhook admin API (`ADMIN_API_KEYS`), over `crate::webhooks`:
//!
//! - `POST /api/v1/admin/webhooks` `{ companyId, url, types?, minPriority?, secret?, description? }`
//!   → 201 with the endpoint and its `secret` (shown only here);
//! - `GET /api/v1/admin/webhooks?companyId=` → `{ webhooks }` (no secrets);
//! - `GET /api/v1/admin/webhooks/{id}` → the endpoint and `stats`;
//! - `DELETE /api/v1/admin/webhooks/{id}` → 204 (its outbox rows go too);
//! - `GET /api/v1/admin/webhooks/{id}/dead-letters?limit=` → `{ deadLetters }`;
//! - `POST /api/v1/admin/webhooks/{id}/dead-letters/{deliveryId}/redeliver` → 202.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

use super::api_key::AdminKey;
use super::schema::ErrorReply;
use super::schema_hooks::{DeadLetters, WebhookCreated, WebhookDetail, WebhookIn, WebhookList};
use crate::catalog::Priority;
use crate::domain::CompanyId;
use crate::domain::iso8601;
use crate::domain::parse::{from_value, invalid};
use crate::error::{AppError, AppResult, Code};
use crate::state::AppState;
use crate::store::webhooks::{DeadLetter, DeliveryStats, Endpoint};
use crate::webhooks::{NewEndpoint, WebhookError};

/// Most event types one endpoint names.
const MAX_TYPES: usize = 100;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateWebhook {
    company_id: CompanyId,
    url: String,
    #[serde(default, deserialize_with = "type_names")]
    types: Vec<String>,
    #[serde(default, deserialize_with = "crate::api::request::priority")]
    min_priority: Option<Priority>,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default, deserialize_with = "description")]
    description: Option<String>,
}

fn type_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let names = Vec::<String>::deserialize(d)?;
    if names.len() > MAX_TYPES {
        return Err(serde::de::Error::custom(format!(
            "`types` holds at most {MAX_TYPES} names"
        )));
    }
    for n in &names {
        if n.is_empty()
            || n.len() > crate::domain::event_type::MAX_TYPE_LEN
            || n.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(serde::de::Error::custom(format!(
                "`types`: `{n}` is not an event type name"
            )));
        }
    }
    Ok(names)
}

fn description<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Option::<String>::deserialize(d)? {
        Some(t) if t.chars().count() > 200 => Err(serde::de::Error::custom(
            "`description` is at most 200 characters",
        )),
        t => Ok(t),
    }
}

fn refused(e: WebhookError) -> AppError {
    match e {
        WebhookError::Target(t) => invalid("url", t.to_string()),
        WebhookError::Invalid { field, message } => invalid(field, message),
        WebhookError::Store(s) => AppError::unavailable(s),
    }
}

fn endpoint_json(e: &Endpoint) -> Value {
    json!({
        "id": e.id,
        "companyId": e.company_id,
        "url": e.url,
        "types": e.types,
        "minPriority": e.min_priority,
        "description": e.description,
        "createdAt": iso8601(e.created_at),
    })
}

fn stats_json(s: &DeliveryStats) -> Value {
    json!({
        "pending": s.pending,
        "delivered": s.delivered,
        "dead": s.dead,
        "lastDeliveredAt": s.last_delivered_at.map(iso8601),
    })
}

fn dead_json(d: &DeadLetter) -> Value {
    json!({
        "deliveryId": d.id,
        "eventId": d.event_id,
        "eventType": d.event_type,
        "attempts": d.attempts,
        "lastStatus": d.last_status,
        "lastError": d.last_error,
        "createdAt": iso8601(d.created_at),
        "failedAt": d.failed_at.map(iso8601),
    })
}

/// Registers an endpoint; the reply holds its signing secret (shown only here).
#[utoipa::path(
    post, path = "/api/v1/admin/webhooks", operation_id = "createWebhook", tag = "admin",
    request_body = WebhookIn,
    security(("adminKey" = [])),
    responses(
        (status = 201, description = "Registered", body = WebhookCreated),
        (status = 400, description = "Invalid endpoint (details name the field)", body = ErrorReply),
        (status = 413, description = "Body too large", body = ErrorReply),
        (status = 401, description = "No valid admin API key", body = ErrorReply),
        (status = 429, description = "Too many failed key attempts", body = ErrorReply),
        (status = 503, description = "Storage unavailable", body = ErrorReply),
    )
)]
pub async fn create(
    _: AdminKey,
    State(state): State<AppState>,
    body: Bytes,
) -> AppResult<(StatusCode, Json<Value>)> {
    let value: Value = super::json_body(&body)?;
    let req: CreateWebhook = from_value(&value, "{ companyId, url, types?, minPriority? }")?;
    let endpoint = state
        .webhooks
        .create(NewEndpoint {
            company_id: req.company_id.as_str().to_string(),
            url: req.url,
            secret: req.secret,
            types: req.types,
            min_priority: req.min_priority,
            description: req.description,
        })
        .await
        .map_err(refused)?;
    let mut out = endpoint_json(&endpoint);
    out["secret"] = json!(endpoint.secret);
    Ok((StatusCode::CREATED, Json(out)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this company's endpoints.
    #[param(value_type = Option<String>, example = "acme", pattern = r"^[A-Za-z0-9_.@-]{1,64}$")]
    company_id: Option<CompanyId>,
}

/// The endpoints, without their secrets.
#[utoipa::path(
    get, path = "/api/v1/admin/webhooks", operation_id = "listWebhooks", tag = "admin",
    params(ListQuery),
    security(("adminKey" = [])),
    responses(
        (status = 200, description = "The endpoints", body = WebhookList),
        (status = 400, description = "Bad query", body = ErrorReply),
        (status = 401, description = "No valid admin API key", body = ErrorReply),
        (status = 429, description = "Too many failed key attempts", body = ErrorReply),
        (status = 503, description = "Storage unavailable", body = ErrorReply),
    )
)]
pub async fn list(
    _: AdminKey,
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> AppResult<Json<Value>> {
    let Query(q) = query.map_err(|e| AppError::new(Code::ValidationFailed, e.body_text()))?;
    let all = state
        .webhooks
        .list(q.company_id.as_ref().map(CompanyId::as_str))
        .await
        .map_err(AppError::unavailable)?;
    let webhooks: Vec<Value> = all.iter().map(endpoint_json).collect();
    Ok(Json(json!({ "webhooks": webhooks })))
}

fn not_found(id: &str) -> AppError {
    AppError::new(Code::NotFound, format!("no webhook `{id}`"))
}

/// One endpoint and its delivery counts.
#[utoipa::path(
    get, path = "/api/v1/admin/webhooks/{id}", operation_id = "getWebhook", tag = "admin",
    params(("id" = String, Path, description = "The endpoint's id")),
    security(("adminKey" = [])),
    responses(
        (status = 200, description = "The endpoint", body = WebhookDetail),
        (status = 404, description = "No such endpoint", body = ErrorReply),
        (status = 401, description = "No valid admin API key", body = ErrorReply),
        (status = 429, description = "Too many failed key attempts", body = ErrorReply),
        (status = 503, description = "Storage unavailable", body = ErrorReply),
    )
)]
pub async fn show(
    _: AdminKey,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> AppResult<Json<Value>> {
    let (endpoint, stats) = state
        .webhooks
        .get(&id)
        .await
        .map_err(AppError::unavailable)?
        .ok_or_else(|| not_found(&id))?;
    let mut out = endpoint_json(&endpoint);
    out["stats"] = stats_json(&stats);
    Ok(Json(out))
}

/// Deletes an endpoint and its pending deliveries.
#[utoipa::path(
    delete, path = "/api/v1/admin/webhooks/{id}", operation_id = "deleteWebhook", tag = "admin",
    params(("id" = String, Path, description = "The endpoint's id")),
    security(("adminKey" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such endpoint", body = ErrorReply),
        (status = 401, description = "No valid admin API key", body = ErrorReply),
        (status = 429, description = "Too many failed key attempts", body = ErrorReply),
        (status = 503, description = "Storage unavailable", body = ErrorReply),
    )
)]
pub async fn remove(
    _: AdminKey,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    if state
        .webhooks
        .delete(&id)
        .await
        .map_err(AppError::unavailable)?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(&id))
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadQuery {
    /// 1–1000 (default 100).
    #[param(example = 100, minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

/// Deliveries of an endpoint whose retry schedule ran out.
#[utoipa::path(
    get, path = "/api/v1/admin/webhooks/{id}/dead-letters", operation_id = "webhookDeadLetters", tag = "admin",
    params(("id" = String, Path, description = "The endpoint's id"), DeadQuery),
    security(("adminKey" = [])),
    responses(
        (status = 200, description = "Dead deliveries, newest first", body = DeadLetters),
        (status = 400, description = "Bad query", body = ErrorReply),
        (status = 404, description = "No such endpoint", body = ErrorReply),
        (status = 401, description = "No valid admin API key", body = ErrorReply),
        (status = 429, description = "Too many failed key attempts", body = ErrorReply),
        (status = 503, description = "Storage unavailable", body = ErrorReply),
    )
)]
pub async fn dead_letters(
    _: AdminKey,
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<DeadQuery>, QueryRejection>,
) -> AppResult<Json<Value>> {
    let Query(q) = query.map_err(|e| AppError::new(Code::ValidationFailed, e.body_text()))?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    if state
        .webhooks
        .get(&id)
        .await
        .map_err(AppError::unavailable)?
        .is_none()
    {
        return Err(not_found(&id));
    }
    let dead = state
        .webhooks
        .dead_letters(&id, limit)
        .await
        .map_err(AppError::unavailable)?;
    let dead: Vec<Value> = dead.iter().map(dead_json).collect();
    Ok(Json(json!({ "deadLetters": dead })))
}

/// Schedules a dead delivery again (a new 24 h window).
#[utoipa::path(
    post, path = "/api/v1/admin/webhooks/{id}/dead-letters/{delivery}/redeliver", operation_id = "redeliverWebhook", tag = "admin",
    params(
        ("id" = String, Path, description = "The endpoint's id"),
        ("delivery" = String, Path, description = "The dead delivery's `deliveryId`"),
    ),
    security(("adminKey" = [])),
    responses(
        (status = 202, description = "Scheduled"),
        (status = 400, description = "`deliveryId` is not an integer", body = ErrorReply),
        (status = 404, description = "No such dead delivery", body = ErrorReply),
        (status = 401, description = "No valid admin API key", body = ErrorReply),
        (status = 429, description = "Too many failed key attempts", body = ErrorReply),
        (status = 503, description = "Storage unavailable", body = ErrorReply),
    )
)]
pub async fn redeliver(
    _: AdminKey,
    State(state): State<AppState>,
    Path((id, delivery)): Path<(String, String)>,
) -> AppResult<StatusCode> {
    let delivery: i64 = delivery
        .parse()
        .map_err(|_| invalid("deliveryId", "`deliveryId` must be an integer"))?;
    if state
        .webhooks
        .redeliver(&id, delivery)
        .await
        .map_err(AppError::unavailable)?
    {
        Ok(StatusCode::ACCEPTED)
    } else {
        Err(AppError::new(
            Code::NotFound,
            format!("webhook `{id}` has no dead delivery {delivery}"),
        ))
    }
}
