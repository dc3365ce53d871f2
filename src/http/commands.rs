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
use super::schema::{CommandAccepted, CommandIn, CommandList, CommandReply, ErrorReply};
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

#[utoipa::path(
    post, path = "/api/v1/commands", operation_id = "sendCommand", tag = "commands",
    request_body = CommandIn,
    security(("apiKey" = [])),
    responses(
        (status = 202, description = "Stored as queued and delivered to the target room", body = CommandAccepted),
        (status = 400, description = "Unknown command, bad target or args (details name the field)", body = ErrorReply),
        (status = 401, description = "No valid API key", body = ErrorReply),
        (status = 409, description = "INTERLOCKED: a catalog interlock holds (the message says why)", body = ErrorReply),
        (status = 413, description = "Body too large", body = ErrorReply),
        (status = 429, description = "Too many failed key attempts", body = ErrorReply),
        (status = 503, description = "Storage unavailable", body = ErrorReply),
    )
)]
pub async fn send(
    key: ApiKey,
    state: State<AppState>,
    body: Bytes,
) -> AppResult<(StatusCode, Json<Value>)> {
    send_command(key, state, body).await
}

/// The control panel's path for `POST /api/v1/commands`.
#[utoipa::path(
    post, path = "/api/os/command", operation_id = "sendCommandOs", tag = "commands",
    request_body = CommandIn,
    security(("apiKey" = [])),
    responses(
        (status = 202, description = "As POST /api/v1/commands", body = CommandAccepted),
        (status = 400, description = "Unknown command, bad target or args", body = ErrorReply),
        (status = 401, description = "No valid API key", body = ErrorReply),
        (status = 409, description = "INTERLOCKED", body = ErrorReply),
        (status = 413, description = "Body too large", body = ErrorReply),
        (status = 429, description = "Too many failed key attempts", body = ErrorReply),
        (status = 503, description = "Storage unavailable", body = ErrorReply),
    )
)]
pub async fn send_os(
    key: ApiKey,
    state: State<AppState>,
    body: Bytes,
) -> AppResult<(StatusCode, Json<Value>)> {
    send_command(key, state, body).await
}

async fn send_command(
    _: ApiKey,
    State(state): State<AppState>,
    body: Bytes,
) -> AppResult<(StatusCode, Json<Value>)> {
    let value: Value = super::json_body(&body)?;
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

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct CompanyQuery {
    #[param(value_type = String, example = "acme", pattern = r"^[A-Za-z0-9_.@-]{1,64}$")]
    company_id: CompanyId,
}

/// The command's id.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct CommandPath {
    #[param(example = "0193a1b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b")]
    id: String,
}

#[utoipa::path(
    get, path = "/api/v1/commands/{id}", operation_id = "getCommand", tag = "commands",
    params(CommandPath, CompanyQuery),
    security(("apiKey" = [])),
    responses(
        (status = 200, description = "The command with its transitions", body = CommandReply),
        (status = 400, description = "Bad query", body = ErrorReply),
        (status = 401, description = "No valid API key", body = ErrorReply),
        (status = 404, description = "No such command in this company", body = ErrorReply),
        (status = 429, description = "Too many failed key attempts", body = ErrorReply),
        (status = 503, description = "Storage unavailable", body = ErrorReply),
    )
)]
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

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    #[param(value_type = String, example = "acme", pattern = r"^[A-Za-z0-9_.@-]{1,64}$")]
    company_id: CompanyId,
    /// Only commands to this room (default: every target).
    #[param(example = "device:p1")]
    target: Option<String>,
    /// Created at or after (ISO-8601 or ms; default: the beginning).
    #[param(example = "2026-01-01T00:00:00Z")]
    from: Option<String>,
    /// Created before (ISO-8601 or ms; default: no end).
    #[param(example = "2026-01-02T00:00:00Z")]
    to: Option<String>,
    /// 1–1000 (default 100).
    #[param(example = 100, minimum = 1, maximum = 1000)]
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
#[utoipa::path(
    get, path = "/api/v1/commands", operation_id = "listCommands", tag = "commands",
    params(ListQuery),
    security(("apiKey" = [])),
    responses(
        (status = 200, description = "A page of commands, oldest first", body = CommandList),
        (status = 400, description = "Bad query (details name the field)", body = ErrorReply),
        (status = 401, description = "No valid API key", body = ErrorReply),
        (status = 429, description = "Too many failed key attempts", body = ErrorReply),
        (status = 503, description = "Storage unavailable", body = ErrorReply),
    )
)]
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
