//! `POST /api/v1/events`, `GET /api/v1/events`, `POST /api/v1/telemetry`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::api_key::ApiKey;
use crate::catalog::Priority;
use crate::domain::identity::valid_id;
use crate::domain::{Role, RoomName, Targets, iso8601};
use crate::error::{AppError, AppResult, Code};
use crate::events::{Draft, Prepared};
use crate::state::AppState;

/// At most this many events per request.
const MAX_BATCH: usize = 1000;

fn parse_body(body: &Bytes) -> AppResult<Vec<Value>> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        AppError::new(
            Code::ValidationFailed,
            format!("body is not valid JSON: {e}"),
        )
    })?;
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

fn str_field<'a>(o: &'a Map<String, Value>, name: &str) -> AppResult<Option<&'a str>> {
    match o.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(AppError::new(
            Code::ValidationFailed,
            format!("`{name}` must be a string"),
        )),
    }
}

fn str_list(o: &Map<String, Value>, name: &str) -> AppResult<Vec<String>> {
    match o.get(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                _ => Err(AppError::new(
                    Code::ValidationFailed,
                    format!("`{name}` must be an array of strings"),
                )),
            })
            .collect(),
        Some(_) => Err(AppError::new(
            Code::ValidationFailed,
            format!("`{name}` must be an array"),
        )),
    }
}

/// The target rooms of an HTTP event: rooms, user rooms, role rooms, each
/// once; none = company.
fn targets(o: &Map<String, Value>) -> AppResult<Targets> {
    let mut rooms = Targets::default();
    for r in str_list(o, "rooms")? {
        rooms.push(RoomName::parse(&r)?);
    }
    for u in str_list(o, "users")? {
        if !valid_id(&u) {
            return Err(AppError::new(
                Code::ValidationFailed,
                format!("`{u}` is not a valid user id"),
            ));
        }
        rooms.push(RoomName::user(&u));
    }
    for r in str_list(o, "roles")? {
        let role = Role::parse(&r)
            .ok_or_else(|| AppError::new(Code::ValidationFailed, format!("`{r}` is not a role")))?;
        rooms.push(RoomName::role(role));
    }
    if rooms.is_empty() {
        rooms.push(RoomName::company());
    }
    Ok(rooms)
}

fn prepare_one(state: &AppState, item: &Value) -> AppResult<Prepared> {
    crate::domain::text::refuse_nul(item)?;
    let o = item
        .as_object()
        .ok_or_else(|| AppError::new(Code::ValidationFailed, "each event must be a JSON object"))?;
    let event_type = str_field(o, "type")?
        .ok_or_else(|| AppError::new(Code::ValidationFailed, "`type` is required"))?;
    let company = company_id(o.get("companyId"))?;
    let spec = state.publisher.spec(event_type)?;
    let priority = match str_field(o, "priority")? {
        None => None,
        Some(p) => Some(Priority::parse(p).ok_or_else(|| {
            AppError::new(
                Code::ValidationFailed,
                "`priority` must be low, medium, high or critical",
            )
        })?),
    };
    let source = str_field(o, "source")?
        .unwrap_or("api")
        .chars()
        .take(64)
        .collect();
    let idempotency_key = match str_field(o, "idempotencyKey")? {
        Some(k) if k.is_empty() || k.len() > 128 => {
            return Err(AppError::new(
                Code::ValidationFailed,
                "`idempotencyKey` must be 1-128 characters",
            ));
        }
        k => k.map(|k| format!("k:{k}")),
    };
    state.publisher.prepare(
        spec,
        Draft {
            company: &company,
            event_type,
            rooms: targets(o)?,
            payload: o.get("payload").cloned().unwrap_or(Value::Null),
            priority,
            source,
            publisher: None,
            idempotency_key,
        },
    )
}

fn company_id(v: Option<&Value>) -> AppResult<String> {
    let id = match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => {
            return Err(AppError::new(
                Code::ValidationFailed,
                "`companyId` is required",
            ));
        }
    };
    if !valid_id(&id) {
        return Err(AppError::new(
            Code::ValidationFailed,
            "`companyId` must be 1-64 characters of letters, digits, _ . @ -",
        ));
    }
    Ok(id)
}

/// Validates the whole batch, appends its durable events in one transaction,
/// then delivers: nothing is half-published.
async fn publish_batch(state: &AppState, batch: Vec<Prepared>) -> AppResult<Vec<Value>> {
    let appended = state.publisher.persist(&batch).await?;
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
        out.push(json!({ "id": id, "offsets": offsets }));
        state
            .publisher
            .dispatch(prepared, appended.as_ref(), None)
            .await;
    }
    Ok(out)
}

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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryQuery {
    company_id: String,
    room: String,
    #[serde(default)]
    after: i64,
    limit: Option<i64>,
}

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
            &q.company_id,
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
pub async fn telemetry(
    _: ApiKey,
    State(state): State<AppState>,
    body: Bytes,
) -> AppResult<(StatusCode, Json<Value>)> {
    let items = parse_body(&body)?;
    let spec = state.publisher.spec("telemetry")?;
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
                    company: &company,
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
    publish_batch(&state, batch).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "accepted": accepted }))))
}
