//! `event:publish` from a socket (SPEC §4).

use serde_json::{Value, json};
use socketioxide::adapter::Adapter;

use super::Ctx;
use crate::catalog::Priority;
use crate::domain::{RoomName, Targets};
use crate::error::{AppError, AppResult, Code};
use crate::events::{self, Draft};
use crate::socket::rooms::authorize;

fn field<'a>(data: &'a Value, name: &str) -> AppResult<Option<&'a str>> {
    match data.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(
            AppError::new(Code::ValidationFailed, format!("`{name}` must be a string"))
                .with_details(json!({ "field": name })),
        ),
    }
}

pub async fn publish<A: Adapter>(ctx: &Ctx<A>, data: Value) -> AppResult<Value> {
    if !data.is_object() {
        return Err(AppError::new(
            Code::ValidationFailed,
            "expected { type, room?, payload, priority?, clientEventId? }",
        ));
    }
    let event_type = field(&data, "type")?.ok_or_else(|| {
        AppError::new(Code::ValidationFailed, "`type` is required")
            .with_details(json!({"field": "type"}))
    })?;
    let state = &ctx.state;
    let spec = state.catalog.event(event_type)?;
    let identity = ctx.session.identity();
    if !spec.publish.contains(identity.role) {
        return Err(AppError::new(
            Code::Forbidden,
            format!("role `{}` may not publish `{event_type}`", identity.role),
        ));
    }
    let room = RoomName::parse(field(&data, "room")?.unwrap_or("company"))?;
    authorize(&identity, &state.catalog, &room)?;
    let priority = match field(&data, "priority")? {
        None => None,
        Some(p) => Some(Priority::parse(p).ok_or_else(|| {
            AppError::new(
                Code::ValidationFailed,
                "`priority` must be low, medium, high or critical",
            )
            .with_details(json!({"field": "priority"}))
        })?),
    };
    let client_event_id = field(&data, "clientEventId")?;
    if client_event_id.is_some_and(|id| id.is_empty() || id.len() > 128) {
        return Err(AppError::new(
            Code::ValidationFailed,
            "`clientEventId` must be 1-128 characters",
        ));
    }
    let payload = data.get("payload").cloned().unwrap_or(Value::Null);
    let prepared = events::prepare(
        spec,
        Draft {
            company: &identity.company_id,
            event_type,
            rooms: Targets::one(room),
            payload,
            priority,
            source: "socket".into(),
            publisher: Some(identity.user_id.clone()),
            // Scoped per user so two users' ids never collide.
            idempotency_key: client_event_id.map(|id| format!("c:{}:{id}", identity.user_id)),
        },
        state.config.max_payload,
    )?;
    let appended = events::persist(
        &state.appender,
        std::slice::from_ref(&prepared),
        state.queue_ttl_ms(),
    )
    .await?
    .pop()
    .flatten();
    let mut ack = json!({ "ok": true, "id": prepared.id });
    if let Some(a) = &appended {
        ack["id"] = json!(a.id);
        if let Some((_, offset)) = a.offsets.first() {
            ack["offset"] = json!(offset);
        }
        if a.duplicate {
            ack["duplicate"] = json!(true);
            return Ok(ack);
        }
    }
    events::dispatch(state, &prepared, appended.as_ref(), Some(ctx.socket.id)).await;
    Ok(ack)
}
