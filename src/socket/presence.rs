//! `presence:list` and `user:typing` (SPEC §7): parse, check, hand over to
//! [`crate::presence`].

use serde_json::{Value, json};
use socketioxide::adapter::Adapter;

use super::Ctx;
use super::rooms::authorize;
use crate::domain::RoomName;
use crate::error::{AppError, AppResult, Code};
use crate::presence::{self, typing};

/// `presence:list { room? }` → `{ ok, users: [{ userId, role, connections, since }] }`.
pub async fn list<A: Adapter>(ctx: &Ctx<A>, data: Value) -> AppResult<Value> {
    let bad = || AppError::new(Code::ValidationFailed, "expected { room?: string }");
    let room = match data.as_object().ok_or_else(bad)?.get("room") {
        None | Some(Value::Null) => RoomName::company(),
        Some(Value::String(room)) => RoomName::parse(room)?,
        Some(_) => return Err(bad()),
    };
    let identity = ctx.session.identity();
    authorize(&identity, &ctx.state.catalog, &room)?;
    let users = presence::list(&ctx.state, &identity.company_id, &room).await?;
    Ok(json!({ "ok": true, "users": users }))
}

/// `user:typing { room, isTyping }` → `{ ok: true }`; relayed to the room
/// the socket is in, except the socket itself.
pub async fn typing<A: Adapter>(ctx: &Ctx<A>, data: Value) -> AppResult<Value> {
    let bad = || {
        AppError::new(
            Code::ValidationFailed,
            "expected { room: string, isTyping: boolean }",
        )
    };
    let room = data.get("room").and_then(Value::as_str).ok_or_else(bad)?;
    let is_typing = data
        .get("isTyping")
        .and_then(Value::as_bool)
        .ok_or_else(bad)?;
    let room = RoomName::parse(room)?;
    let identity = ctx.session.identity();
    let internal = room.internal(&identity.company_id);
    if !ctx.socket.rooms().iter().any(|r| *r == internal) {
        return Err(AppError::new(
            Code::Forbidden,
            format!("subscribe to `{room}` before typing in it"),
        ));
    }
    let key = typing::TypingKey {
        company: identity.company_id,
        room: room.as_str().to_string(),
        user: identity.user_id,
    };
    typing::typed(&ctx.state, key, ctx.socket.id, is_typing).await;
    Ok(json!({ "ok": true }))
}
