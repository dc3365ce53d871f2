//! `event:publish` (SPEC §4): check the role and the room, then the
//! publisher validates, appends (durable types) and delivers, except to the
//! publishing session. A durable publish finishes off the session's queue
//! (see `crate::session::pipeline`).

use std::sync::Arc;

use super::Started;
use super::reply::{Published, Reply};
use super::request::Publish;
use crate::domain::{RoomName, Targets};
use crate::error::{AppError, AppResult, Code};
use crate::events::{Draft, Prepared};
use crate::rooms::authorize;
use crate::session::Session;
use crate::state::AppState;
use crate::store::Appended;

/// Handles `event:publish`. A durable event is queued in the group-commit
/// writer here, in the session's request order; its commit, delivery and
/// ack are the returned [`Started::Pending`], which the transport lets
/// finish off the session's queue (`crate::session::pipeline`). Everything
/// else is answered at once, after the session's publishes in flight.
pub async fn start(state: &AppState, session: &Arc<Session>, req: Publish) -> Started {
    let prepared = match prepare(state, session, req) {
        Ok(prepared) => prepared,
        Err(e) => return Started::Done(Err(e)),
    };
    if !prepared.durable || prepared.suppressed {
        // Delivered after the durable events published before it.
        session.pipeline.settle().await;
        let ack = published(&prepared, None);
        state.publisher.dispatch(&prepared, Some(session.id)).await;
        return Started::Done(Ok(Reply::Published(ack)));
    }
    let Some(slot) = session.pipeline.enter().await else {
        return Started::Done(Err(AppError::new(
            Code::Unavailable,
            "this connection is closing",
        )));
    };
    let queued = match state
        .publisher
        .persist_queued(std::slice::from_ref(&prepared), Some(session.id))
        .await
    {
        Ok(queued) => queued,
        Err(e) => return Started::Done(Err(e)),
    };
    Started::Pending(Box::pin(async move {
        // Delivered by the writer once committed (`Publisher::persist`).
        let appended = queued.await?.pop().flatten();
        drop(slot);
        Ok(Reply::Published(published(&prepared, appended.as_ref())))
    }))
}

/// Checks the role and the room, validates and observes the event.
fn prepare(state: &AppState, session: &Arc<Session>, req: Publish) -> AppResult<Prepared> {
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
    Ok(prepared)
}

/// The ack: the event id, and for a durable event its offset and whether
/// it was a duplicate (then it is not delivered again).
fn published(prepared: &Prepared, appended: Option<&Appended>) -> Published {
    let mut ack = Published {
        ok: true,
        id: prepared.id.clone(),
        offset: None,
        duplicate: false,
        suppressed: prepared.suppressed,
    };
    if let Some(a) = appended {
        ack.id = a.id.clone();
        ack.offset = a.offsets.first().map(|(_, offset)| *offset);
        ack.duplicate = a.duplicate;
    }
    ack
}
