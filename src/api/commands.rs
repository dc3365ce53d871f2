//! `command:send`, `command:ack`, `command:result` (SPEC §13): thin over
//! [`crate::commands::Commands`].

use std::sync::Arc;

use super::reply::{Command, Reply};
use crate::commands::Sender;
use crate::commands::request::{AckCommand, CommandResult, SendCommand};
use crate::error::AppResult;
use crate::session::Session;
use crate::state::AppState;
use crate::store::commands::StoredCommand;

fn reply(c: &StoredCommand, duplicate: bool) -> Reply {
    Reply::Command(Command {
        ok: true,
        command_id: c.id.clone(),
        status: c.status,
        duplicate,
    })
}

pub async fn send(state: &AppState, session: &Arc<Session>, req: SendCommand) -> AppResult<Reply> {
    let identity = session.identity();
    let sent = state.commands.send(Sender::User(&identity), req).await?;
    Ok(reply(&sent.command, sent.duplicate))
}

pub async fn ack(state: &AppState, session: &Arc<Session>, req: AckCommand) -> AppResult<Reply> {
    let c = state.commands.ack(session, &req.command_id.0).await?;
    Ok(reply(&c, false))
}

pub async fn result(
    state: &AppState,
    session: &Arc<Session>,
    req: CommandResult,
) -> AppResult<Reply> {
    let c = state.commands.result(session, req).await?;
    Ok(reply(&c, false))
}
