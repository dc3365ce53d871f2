//! `event:publish` (SPEC §4): check the role and the room, then the
//! publisher validates, appends (durable types) and delivers, except to the
//! publishing session.

use std::sync::Arc;

use super::reply::{Published, Reply};
use super::request::Publish;
use crate::domain::{RoomName, Targets};
use crate::error::{AppError, AppResult, Code};
use crate::events::Draft;
use crate::rooms::authorize;
use crate::session::Session;
use crate::state::AppState;

pub async fn publish(state: &AppState, session: &Arc<Session>, req: Publish) -> AppResult<Reply> {
    let publisher = &state.publisher;
    // Server-only types (`command_status`) first: no role may forge them.
    let spec = publisher.client_spec(&req.event_type)?;
    let identity = session.identity();
    if !spec.publish.contains(identity.role) {
        return Err(AppError::new(
            Code::Forbidden,
            format!(
                "role `{}` may not publish `{}`",
                identity.role, req.event_type
            ),
        ));
    }
    let room = req.room.unwrap_or_else(RoomName::company);
    authorize(&identity, publisher.catalog(), &room)?;
    let mut prepared = publisher.prepare(
        spec,
        Draft {
            company: &identity.company_id,
            event_type: &req.event_type,
            rooms: Targets::one(room),
            payload: req.payload,
            priority: req.priority,
            source: "socket".into(),
            publisher: Some(identity.user_id.clone()),
            // Scoped per user so two users' ids never collide.
            idempotency_key: req
                .client_event_id
                .map(|id| format!("c:{}:{id}", identity.user_id)),
        },
    )?;
    publisher.observe(std::slice::from_mut(&mut prepared));
    let appended = publisher
        .persist(std::slice::from_ref(&prepared))
        .await?
        .pop()
        .flatten();
    let mut ack = Published {
        ok: true,
        id: prepared.id.clone(),
        offset: None,
        duplicate: false,
        suppressed: prepared.suppressed,
    };
    if let Some(a) = &appended {
        ack.id = a.id.clone();
        ack.offset = a.offsets.first().map(|(_, offset)| *offset);
        if a.duplicate {
            ack.duplicate = true;
            return Ok(Reply::Published(ack));
        }
    }
    publisher
        .dispatch(&prepared, appended.as_ref(), Some(session.id))
        .await;
    Ok(Reply::Published(ack))
}
