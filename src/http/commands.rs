//! `POST /api/v1/commands` (and the control panel's `POST /api/os/command`),
//! `GET /api/v1/commands/{id}`, `GET /api/v1/commands?target=&from=&to=`
//! (API key), over [`crate::commands::Commands`].

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::api_key::ApiKey;
use crate::commands::request::SendCommand;
use crate::commands::{Sender, view};
use crate::documents::request::parse_time;
use crate::domain::parse::{from_value, invalid};
use crate::domain::{CompanyId, RoomName};
use crate::error::{AppError, AppResult, Code};
use crate::state::AppState;

/// `{ companyId, target, name, args, timeoutMs?, clientCommandId? }`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SendIn {
    company_id: CompanyId,
    #[serde(flatten)]
    command: SendCommand,
}

pub async fn send(
    _: ApiKey,
    State(state): State<AppState>,
    body: Bytes,
) -> AppResult<(StatusCode, Json<Value>)> {
    let value: Value = serde_json::from_slice(&body).map_err(|e| {
        AppError::new(
            Code::ValidationFailed,
            format!("body is not valid JSON: {e}"),
        )
    })?;
    crate::domain::text::refuse_nul(&value)?;
    let req: SendIn = from_value(
        &value,
        "{ companyId, target, name, args, timeoutMs?, clientCommandId? }",
    )?;
    let company = req.company_id.as_str();
    let sent = state
        .commands
        .send(Sender::Backend { company }, req.command)
        .await?;
    let c = &sent.command;
    let mut body = json!({ "commandId": c.id, "status": c.status });
    if sent.duplicate {
        body["duplicate"] = json!(true);
    }
    Ok((StatusCode::ACCEPTED, Json(body)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompanyQuery {
    company_id: CompanyId,
}

pub async fn get(
    _: ApiKey,
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<CompanyQuery>, axum::extract::rejection::QueryRejection>,
) -> AppResult<Json<Value>> {
    let Query(q) = query.map_err(|e| AppError::new(Code::ValidationFailed, e.body_text()))?;
    let c = state.commands.get(q.company_id.as_str(), &id).await?;
    Ok(Json(json!({ "command": view::record(&c) })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    company_id: CompanyId,
    target: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<i64>,
}

/// `from`/`to` as ISO-8601 or milliseconds.
fn time(field: &str, raw: Option<&str>, default: i64) -> AppResult<i64> {
    let Some(raw) = raw else { return Ok(default) };
    let v = match raw.parse::<i64>() {
        Ok(ms) => json!(ms),
        Err(_) => json!(raw),
    };
    parse_time(&v).map_err(|_| {
        invalid(
            field,
            format!("`{field}` must be an ISO-8601 time or milliseconds since the epoch"),
        )
    })
}

/// Commands created in `[from, to)` (default: all), oldest first; `next`
/// is the `from` of the following page.
pub async fn list(
    _: ApiKey,
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> AppResult<Json<Value>> {
    let Query(q) = query.map_err(|e| AppError::new(Code::ValidationFailed, e.body_text()))?;
    let target = q.target.as_deref().map(RoomName::parse).transpose()?;
    let from = time("from", q.from.as_deref(), 0)?;
    let to = time("to", q.to.as_deref(), i64::MAX)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let commands = state
        .commands
        .list(q.company_id.as_str(), target.as_ref(), from, to, limit)
        .await?;
    // Commands created in the same millisecond as the last one of a full
    // page come again on the next: a page boundary never loses one.
    let next = (commands.len() as i64 == limit)
        .then(|| commands.last().map(|c| c.created_at))
        .flatten();
    let commands: Vec<Value> = commands.iter().map(view::record).collect();
    Ok(Json(json!({ "commands": commands, "next": next })))
}
