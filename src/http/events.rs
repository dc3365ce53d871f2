//! `POST /api/v1/events`, `GET /api/v1/events`, `POST /api/v1/telemetry`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::api_key::ApiKey;
use super::schema::{Accepted, ErrorReply, PublishBody, Published, TelemetryBody};
use crate::catalog::Priority;
use crate::domain::parse::{from_value, invalid};
use crate::domain::{CompanyId, Role, RoomName, Targets, UserId, iso8601};
use crate::error::{AppError, AppResult, Code};
use crate::events::{Draft, Prepared};
use crate::state::AppState;

/// At most this many events per request.
const MAX_BATCH: usize = 1000;

fn parse_body(body: &Bytes) -> AppResult<Vec<Value>> {
    let value: Value = super::json_body(body)?;
    let items = match value {
        Value::Array(items) => items,
        obj @ Value::Object(_) => vec![obj],
        _ => {
            return Err(AppError::new(
                Code::ValidationFailed,
                "body must be an event object or an array of them",
            ));
        }
    };
    if items.is_empty() || items.len() > MAX_BATCH {
        return Err(AppError::new(
            Code::ValidationFailed,
            format!("a batch holds 1 to {MAX_BATCH} events"),
        ));
    }
    Ok(items)
}

/// One event of `POST /api/v1/events`, parsed (SPEC §4).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventIn {
    #[serde(rename = "type")]
    event_type: String,
    company_id: CompanyId,
    #[serde(default)]
    rooms: Option<Vec<RoomName>>,
    #[serde(default)]
    users: Option<Vec<UserId>>,
    #[serde(default)]
    roles: Option<Vec<Role>>,
    #[serde(default)]
    payload: Value,
    #[serde(default, deserialize_with = "crate::api::request::priority")]
    priority: Option<Priority>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default, deserialize_with = "idempotency_key")]
    idempotency_key: Option<String>,
}

fn idempotency_key<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Option::<String>::deserialize(d)? {
        Some(k) if k.is_empty() || k.len() > 128 => Err(serde::de::Error::custom(
            "`idempotencyKey` must be 1-128 characters",
        )),
        k => Ok(k),
    }
}

impl EventIn {
    /// The target rooms: rooms, user rooms, role rooms, each once; none =
    /// company.
    fn targets(&mut self) -> Targets {
        let mut rooms = Targets::default();
        for room in self.rooms.take().unwrap_or_default() {
            rooms.push(room);
        }
        for user in self.users.take().unwrap_or_default() {
            rooms.push(RoomName::user(user.as_str()));
        }
        for role in self.roles.take().unwrap_or_default() {
            rooms.push(RoomName::role(role));
        }
        if rooms.is_empty() {
            rooms.push(RoomName::company());
        }
        rooms
    }
}

fn prepare_one(state: &AppState, item: &Value) -> AppResult<Prepared> {
    crate::domain::text::refuse_nul(item)?;
    let mut event: EventIn = from_value(item, "an event object { type, companyId, payload, … }")?;
    // Backends publish any type except the server's own (`command_status`).
    let spec = state.publisher.client_spec(&event.event_type)?;
    let rooms = event.targets();
    let source = event
        .source
        .as_deref()
        .unwrap_or("api")
        .chars()
        .take(64)
        .collect();
    state.publisher.prepare(
        spec,
        Draft {
            company: event.company_id.as_str(),
            event_type: &event.event_type,
            rooms,
            payload: event.payload,
            priority: event.priority,
            source,
            publisher: None,
            idempotency_key: event.idempotency_key.map(|k| format!("k:{k}")),
        },
    )
}

fn company_id(v: Option<&Value>) -> AppResult<CompanyId> {
    let v = v.ok_or_else(|| invalid("companyId", "`companyId` is required"))?;
    CompanyId::deserialize(v).map_err(|e| invalid("companyId", format!("`companyId`: {e}")))
}

/// Validates the whole batch, appends its durable events in one transaction,
/// then delivers: nothing is half-published.
async fn publish_batch(state: &AppState, mut batch: Vec<Prepared>) -> AppResult<Vec<Value>> {
    state.publisher.observe(&mut batch);
    let appended = state.publisher.persist(&batch, None).await?;
    let mut out = Vec::with_capacity(batch.len());
    for (prepared, appended) in batch.iter().zip(appended) {
        let offsets: Map<String, Value> = appended
            .as_ref()
            .map(|a| {
                a.offsets
                    .iter()
                    .map(|(r, o)| (r.clone(), json!(o)))
                    .collect()
            })
            .unwrap_or_default();
        let id = appended
            .as_ref()
            .map_or(prepared.id.clone(), |a| a.id.clone());
        let mut entry = json!({ "id": id, "offsets": offsets });
        if prepared.suppressed {
            entry["suppressed"] = json!(true);
        }
        out.push(entry);
        state.publisher.dispatch(prepared, None).await;
    }
    Ok(out)
}

/// Publishes one event or a batch (validated whole first: nothing is half-published).
#[utoipa::path(
    post, path = "/api/v1/events", operation_id = "publishEvents", tag = "events",
    request_body = PublishBody,
    security(("apiKey" = [])),
    responses(
        (status = 202, description = "Published", body = Published),
        (status = 400, description = "Invalid event (details name the field and index)", body = ErrorReply),
        (status = 401, description = "No valid API key", body = ErrorReply),
        (status = 429, description = "Too many failed key attempts", body = ErrorReply),
        (status = 403, description = "Room not allowed, or a server-only type such as `command_status`", body = ErrorReply),
        (status = 413, description = "Body or payload too large", body = ErrorReply),
        (status = 503, description = "Storage unavailable", body = ErrorReply),
    )
)]
pub async fn publish(
    _: ApiKey,
    State(state): State<AppState>,
    body: Bytes,
) -> AppResult<(StatusCode, Json<Value>)> {
    let items = parse_body(&body)?;
    let batch = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            prepare_one(&state, item).map_err(|mut e| {
                let mut details = e.details.take().unwrap_or_else(|| json!({}));
                details["index"] = json!(i);
                e.with_details(details)
            })
        })
        .collect::<AppResult<Vec<_>>>()?;
    let events = publish_batch(&state, batch).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "events": events }))))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    #[param(value_type = String, example = "acme", pattern = r"^[A-Za-z0-9_.@-]{1,64}$")]
    company_id: CompanyId,
    /// A logical room name.
    #[param(
        example = "order:67890",
        max_length = 128,
        pattern = r"^[a-z][a-z0-9_-]*(:[A-Za-z0-9_.@-]+)*$"
    )]
    room: String,
    /// Events after this offset (default 0).
    #[serde(default)]
    #[param(example = 0, minimum = 0)]
    after: i64,
    /// 1–1000 (default 100).
    #[param(example = 100, minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

/// A room's durable events after an offset, oldest first (documented with
/// [`super::history::get`], which routes here).
pub async fn history(
    _: ApiKey,
    State(state): State<AppState>,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> AppResult<Json<Value>> {
    let Query(q) = query.map_err(|e| AppError::new(Code::ValidationFailed, e.body_text()))?;
    let room = RoomName::parse(&q.room)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let events = state
        .store
        .events_after(
            q.company_id.as_str(),
            room.as_str(),
            q.after.max(0),
            limit,
            crate::domain::now_ms(),
        )
        .await
        .map_err(AppError::unavailable)?;
    let next = (events.len() as i64 == limit)
        .then(|| events.last().map(|e| e.offset))
        .flatten();
    let events: Vec<Value> = events
        .into_iter()
        .map(|e| {
            json!({
                "id": e.id, "type": e.event_type, "room": e.room, "offset": e.offset,
                "payload": e.payload, "priority": e.priority, "source": e.source,
                "timestamp": iso8601(e.created_at),
            })
        })
        .collect();
    Ok(Json(json!({ "events": events, "next": next })))
}

/// Readings `{ companyId, endpointId, value, timestamp }` → `telemetry`
/// events in `telemetry:{endpointId}`, conflated per endpoint.
#[utoipa::path(
    post, path = "/api/v1/telemetry", operation_id = "ingestTelemetry", tag = "events",
    request_body = TelemetryBody,
    security(("apiKey" = [])),
    responses(
        (status = 202, description = "Readings accepted", body = Accepted),
        (status = 400, description = "Invalid reading (details name the index)", body = ErrorReply),
        (status = 401, description = "No valid API key", body = ErrorReply),
        (status = 429, description = "Too many failed key attempts", body = ErrorReply),
        (status = 413, description = "Body too large", body = ErrorReply),
        (status = 503, description = "Storage unavailable", body = ErrorReply),
    )
)]
pub async fn telemetry(
    _: ApiKey,
    State(state): State<AppState>,
    body: Bytes,
) -> AppResult<(StatusCode, Json<Value>)> {
    let items = parse_body(&body)?;
    let spec = state.publisher.client_spec("telemetry")?;
    let mut batch = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let index = |e: AppError| e.with_details(json!({ "index": i }));
        let o = item.as_object().ok_or_else(|| {
            index(AppError::new(
                Code::ValidationFailed,
                "each reading must be an object",
            ))
        })?;
        let company = company_id(o.get("companyId")).map_err(index)?;
        let company = company.as_str();
        let endpoint = o.get("endpointId").and_then(Value::as_i64).ok_or_else(|| {
            index(AppError::new(
                Code::ValidationFailed,
                "`endpointId` must be an integer",
            ))
        })?;
        let mut payload = o.clone();
        payload.remove("companyId");
        let prepared = state
            .publisher
            .prepare(
                spec,
                Draft {
                    company,
                    event_type: "telemetry",
                    rooms: Targets::one(
                        RoomName::parse(&format!("telemetry:{endpoint}")).map_err(index)?,
                    ),
                    payload: Value::Object(payload),
                    priority: None,
                    source: "telemetry".into(),
                    publisher: None,
                    idempotency_key: None,
                },
            )
            .map_err(index)?;
        batch.push(prepared);
    }
    let accepted = batch.len();
    let events = publish_batch(&state, batch).await?;
    let suppressed = events
        .iter()
        .filter(|e| e.get("suppressed").is_some())
        .count();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "accepted": accepted, "suppressed": suppressed })),
    ))
}
