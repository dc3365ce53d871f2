//! Requests about the connection itself: `auth:refresh` (a later token for
//! the same user), `events:ack` (the client confirms durable events) and
//! `session:status` (what the session is).

use std::sync::Arc;

use super::reply::{Acked, Refreshed, Reply, Status};
use super::request::{Ack, AuthRefresh};
use crate::error::{AppError, AppResult, Code};
use crate::replay::offline;
use crate::session::Session;
use crate::state::AppState;

/// `auth:refresh { token }`: same user, company and role, later expiry.
pub fn refresh(state: &AppState, session: &Session, req: AuthRefresh) -> AppResult<Reply> {
    let next = state.verifier.verify(&req.token)?;
    let current = session.identity();
    if next.user_id != current.user_id || next.company_id != current.company_id {
        return Err(AppError::new(
            Code::Forbidden,
            "the new token must name the same user (sub) and companyId",
        ));
    }
    // A role change would need different automatic rooms; keep it simple and
    // explicit: the role of a live session is fixed, reconnect to change it.
    if next.role != current.role {
        return Err(AppError::new(
            Code::Forbidden,
            "the new token has a different role; reconnect to change roles",
        ));
    }
    let expires_at = next.expires_at_ms();
    session.replace_identity(next);
    Ok(Reply::Refreshed(Refreshed {
        ok: true,
        expires_at,
    }))
}

/// `events:ack { room, offset }` → `{ ok, room, offset }` (the position
/// acknowledged, never past what was sent).
pub async fn ack(state: &AppState, session: &Arc<Session>, req: Ack) -> AppResult<Reply> {
    let offset = offline::ack(&state.durable, session, &req.room, req.offset.0).await?;
    Ok(Reply::Acked(Acked {
        ok: true,
        room: req.room,
        offset,
    }))
}

/// `session:status` → identity, rooms (automatic ones included), transport.
pub fn status(session: &Session) -> Reply {
    let identity = session.identity();
    let rooms = super::rooms::names(session);
    Reply::Status(Status {
        ok: true,
        session_id: session.id.to_string(),
        transport: session.transport,
        expires_at: identity.expires_at_ms(),
        user_id: identity.user_id,
        company_id: identity.company_id,
        role: identity.role,
        device_id: session.device_id.clone(),
        rooms,
        connected_at: session.connected_at,
        server_time: crate::domain::now_ms(),
    })
}
