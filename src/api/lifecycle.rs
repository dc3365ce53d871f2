//! A connection's life, whatever its transport: [`open`] runs as the
//! session's first job (rooms, the offline queue and `auth.offsets`
//! replay, presence, then the `session` message, then live delivery and
//! the token-expiry timer); [`close`] runs once when it ends (offline-queue
//! cursors saved, feeds and presence left, counters released).

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use crate::domain::{Role, RoomName, now_ms};
use crate::replay::offline;
use crate::rooms::resume::Resume;
use crate::rooms::{Denial, automatic_rooms};
use crate::session::Session;
use crate::state::AppState;

/// The `session` message (SPEC §2).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Welcome {
    pub socket_id: String,
    pub user_id: String,
    pub company_id: String,
    pub role: Role,
    pub rooms: Vec<RoomName>,
    pub server_time: i64,
    pub replayed: usize,
    pub denied: Vec<Denial>,
}

/// Sets a new session up and sends it `session`. Entity rooms named in
/// `auth.offsets` (`resume`) are joined as `subscribe` would join them;
/// `session.denied` says which were not and why.
pub async fn open(state: &AppState, session: &Arc<Session>, resume: Resume) {
    let Some(sink) = session.sink() else { return };
    let identity = session.identity();
    let automatic = automatic_rooms(&identity);
    let extra = resume.extra;
    session.add_rooms(&extra);
    let rooms: Vec<RoomName> = automatic.iter().chain(&extra).cloned().collect();
    let welcome_rooms = rooms.clone();
    sink.join(&identity.company_id, &rooms);
    let durable = &state.durable;
    let replay = async {
        let members =
            offline::replay_on_connect(durable, session, &sink, &resume.offsets, &extra).await;
        let merged = durable.replay_merged(&members).await;
        (members, merged)
    };
    // Registered before `session`: a client that has `session` is listed.
    // The registration needs nothing of the replay, so the two wait on the
    // database side by side: in a connect storm a connect then waits for
    // one batch less before `session`.
    let ((members, merged), ()) = tokio::join!(replay, state.presence.join(session, &extra));
    let replayed = merged.sent;
    crate::metrics::replayed(replayed as u64);
    let welcome = Welcome {
        socket_id: session.id.to_string(),
        user_id: identity.user_id,
        company_id: identity.company_id,
        role: identity.role,
        rooms,
        server_time: now_ms(),
        replayed,
        denied: resume.denied,
    };
    let welcome = serde_json::to_value(&welcome).unwrap_or_default();
    if sink.emit_one("session", &welcome).is_err() {
        tracing::debug!(session = %session.id, "could not send session");
    }
    offline::go_live(durable, members, &merged.read_through);
    // A device gets the commands that waited for it (after `session`).
    state.commands.joined(session, &welcome_rooms).await;
    state
        .tasks
        .spawn_until_done(expiry_watch(state.verifier.leeway_ms(), session.clone()));
}

/// Sends `session:expired` and ends the connection when `exp` (+ leeway)
/// passes without an `auth:refresh`. Ends with the session.
async fn expiry_watch(leeway_ms: i64, session: Arc<Session>) {
    loop {
        let exp_ms = session.identity().expires_at.saturating_mul(1000);
        let deadline_ms = exp_ms.saturating_add(leeway_ms);
        let wait = (deadline_ms - now_ms()).max(0) as u64;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait)) => {
                if session.identity().expires_at.saturating_mul(1000) != exp_ms {
                    continue; // refreshed while we slept
                }
                if let Some(sink) = session.sink() {
                    let _ = sink.emit_one(
                        "session:expired",
                        &json!({ "reason": "TOKEN_EXPIRED", "expiredAt": exp_ms }),
                    );
                    sink.disconnect();
                }
                return;
            }
            _ = session.refreshed.notified() => continue,
            _ = session.closed.cancelled() => return,
        }
    }
}

/// Cleans a session up, once (later calls do nothing). Transports call it
/// when a connection ends; shutdown calls it for every session.
pub async fn close(state: &AppState, session: &Session, reason: &str) {
    if !session.close() {
        return;
    }
    state.sessions.remove(session.id);
    crate::metrics::connection_closed();
    state.limits.release(session.ip);
    offline::leave(&state.durable, session, reason).await;
    state.presence.leave(session.id).await;
}
