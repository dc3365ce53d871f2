//! The device's side of a command: `command:ack`, `command:result`, and the
//! open commands a device gets when it joins a room.

use serde_json::json;

use super::request::{self, CommandResult};
use super::{Commands, view};
use crate::domain::command::{Refusal, Status, Step, path};
use crate::domain::{Identity, RoomName, now_ms};
use crate::error::{AppError, AppResult, Code};
use crate::session::Session;
use crate::store::commands::{Outcome, StoredCommand};

impl Commands {
    /// `command:ack { commandId }` from a device.
    pub async fn ack(&self, session: &Session, id: &str) -> AppResult<StoredCommand> {
        let identity = session.identity();
        let c = self.answerable(session, &identity, id).await?;
        let outcome = Outcome {
            answered_by: Some(identity.user_id.clone()),
            ..Outcome::default()
        };
        self.advance(c, Step::Ack, outcome).await
    }

    /// `command:result { commandId, ok, value?, error? }` from a device.
    pub async fn result(&self, session: &Session, r: CommandResult) -> AppResult<StoredCommand> {
        let identity = session.identity();
        let c = self.answerable(session, &identity, &r.command_id.0).await?;
        let (goal, outcome) = if r.ok {
            (
                Step::Succeed,
                Outcome {
                    actual_value: r.value,
                    ..Outcome::default()
                },
            )
        } else {
            let (code, message) = r
                .error
                .unwrap_or(request::DeviceError::Text(String::new()))
                .parts();
            (
                Step::Fail,
                Outcome {
                    actual_value: r.value,
                    error_code: Some(code),
                    error_message: Some(message),
                    ..Outcome::default()
                },
            )
        };
        let outcome = Outcome {
            answered_by: Some(identity.user_id.clone()),
            ..outcome
        };
        self.advance(c, goal, outcome).await
    }

    /// The command, if this session may answer it: same company, the
    /// catalog's answer rights, and in the target room.
    async fn answerable(
        &self,
        session: &Session,
        identity: &Identity,
        id: &str,
    ) -> AppResult<StoredCommand> {
        let c = self.get(&identity.company_id, id).await?;
        let may = self
            .catalog
            .command(&c.name)
            .is_ok_and(|spec| spec.may_answer(identity));
        if !may {
            return Err(AppError::new(
                Code::Forbidden,
                format!("this client may not answer `{}` commands", c.name),
            ));
        }
        let in_room = RoomName::parse(&c.target).is_ok_and(|room| session.is_in(&room));
        if !in_room {
            return Err(AppError::new(
                Code::Forbidden,
                format!("only a client in `{}` may answer this command", c.target),
            ));
        }
        Ok(c)
    }

    /// Moves `c` towards what `goal` reaches, one guarded step at a time.
    /// When another node moved it first (a racing delivery, the timeout
    /// sweep), the path is planned again from what that node stored.
    async fn advance(
        &self,
        mut c: StoredCommand,
        goal: Step,
        outcome: Outcome,
    ) -> AppResult<StoredCommand> {
        // Each retry follows a transition another caller made; the machine
        // has four, so this bounds the loop without ever cutting it short.
        for _ in 0..=Status::ALL.len() {
            let steps = match path(c.status, goal) {
                Ok(steps) => steps,
                // A repeated ack: nothing to do, the current state answers.
                Err(Refusal::AlreadyPast(_)) => return Ok(c),
                Err(Refusal::Finished(_)) => return Err(finished(&c)),
            };
            let mut raced = false;
            for step in steps {
                let mut o = Outcome {
                    answered_by: outcome.answered_by.clone(),
                    ..Outcome::default()
                };
                match step {
                    // The result window opens with the ack.
                    Step::Ack => o.deadline_at = Some(now_ms().saturating_add(c.timeout_ms)),
                    Step::Succeed | Step::Fail => o = outcome.clone(),
                    _ => {}
                }
                match self.step(&c, step, &o).await? {
                    Some(next) => c = next,
                    None => {
                        c = self.get(&c.company_id, &c.id).await?;
                        raced = true;
                        break;
                    }
                }
            }
            if !raced {
                return Ok(c);
            }
        }
        Err(AppError::new(
            Code::Conflict,
            format!("command `{}` kept changing; retry", c.id),
        ))
    }

    /// A session joined `rooms`: if it may answer commands, it gets the
    /// open commands of those rooms, in the order they were sent, and those
    /// still `queued` become `sent`.
    pub async fn joined(&self, session: &Session, rooms: &[RoomName]) {
        let identity = session.identity();
        if rooms.is_empty() || !self.catalog.answers_commands(&identity) {
            return;
        }
        let Some(sink) = session.sink() else { return };
        let targets: Vec<String> = rooms.iter().map(|r| r.as_str().to_string()).collect();
        let pending = match self
            .store
            .pending_commands(&identity.company_id, &targets, now_ms())
            .await
        {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the commands waiting for a device");
                return;
            }
        };
        for c in pending {
            let may = self
                .catalog
                .command(&c.name)
                .is_ok_and(|spec| spec.may_answer(&identity));
            if !may {
                continue;
            }
            if sink
                .emit("command", &view::delivery(&c), &view::delivery_meta(&c))
                .is_err()
            {
                return;
            }
            if c.status == Status::Queued {
                if let Err(e) = self.step(&c, Step::Deliver, &Outcome::default()).await {
                    tracing::warn!(error = %e, command = %c.id, "cannot mark a command sent");
                }
            }
        }
    }
}

/// The refusal of an answer to a finished command.
fn finished(c: &StoredCommand) -> AppError {
    let timed_out = c.error_code.as_deref() == Some(Code::Timeout.as_str());
    let (code, why) = match timed_out {
        true => (Code::Timeout, "timed out".to_string()),
        false => (Code::Conflict, format!("already {}", c.status)),
    };
    AppError::new(code, format!("command `{}` {why}", c.id))
        .with_details(json!({ "commandId": c.id, "status": c.status }))
}
