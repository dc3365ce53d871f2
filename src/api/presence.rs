//! `presence:list` and `user:typing` (SPEC §7): check, then hand over to
//! the presence service.

use std::sync::Arc;

use super::reply::{Done, Presence, Reply};
use super::request::{PresenceList, Typing};
use crate::domain::RoomName;
use crate::error::{AppError, AppResult, Code};
use crate::presence::typing::TypingKey;
use crate::rooms::authorize;
use crate::session::Session;
use crate::state::AppState;

/// → `{ ok, users: [{ userId, role, connections, since }] }`; with
/// `batches: true` the session also gets `presence:batch` frames from now
/// on (see `presence::broadcast`).
pub async fn list(state: &AppState, session: &Arc<Session>, req: PresenceList) -> AppResult<Reply> {
    let room = req.room.unwrap_or_else(RoomName::company);
    let identity = session.identity();
    authorize(&identity, &state.catalog, &room)?;
    if req.batches {
        if room != RoomName::company() {
            return Err(AppError::new(
                Code::ValidationFailed,
                "batches: presence:batch frames are about the company; list `company` to ask for them",
            ));
        }
        // Joined before the list is read: no transition falls between the
        // two.
        if let Some(sink) = session.sink() {
            sink.join(&identity.company_id, &[RoomName::presence_batches()]);
        }
    }
    let users = state.presence.list(&identity.company_id, &room).await?;
    Ok(Reply::Presence(Presence { ok: true, users }))
}

/// → `{ ok: true }`; relayed to the room the session is in, except itself.
pub async fn typing(state: &AppState, session: &Arc<Session>, req: Typing) -> AppResult<Reply> {
    if !session.is_in(&req.room) {
        return Err(AppError::new(
            Code::Forbidden,
            format!("subscribe to `{}` before typing in it", req.room),
        ));
    }
    let identity = session.identity();
    let key = TypingKey {
        company: identity.company_id,
        room: req.room.as_str().to_string(),
        user: identity.user_id,
    };
    state.presence.typed(key, session.id, req.is_typing).await;
    Ok(Reply::Done(Done { ok: true }))
}
