//! Device commands (SPEC §13, issue 15): `command:send` stores a command
//! (`queued`), delivers it to the target room as `command` `(payload, meta)`,
//! and every transition — `sent`, `acked`, `succeeded | failed` — is
//! persisted with its time and announced as the durable `command_status`
//! in `command:{commandId}` and the sender's user room.
//!
//! The life cycle is the pure machine of [`crate::domain::command`]; the
//! database arbitrates each transition (see `crate::store::commands`), so
//! when nodes race — two devices answering, every node's timeout sweep —
//! exactly one makes it and only that one announces it.
//!
//! `sent` means a device could have it: at send time when presence shows
//! someone other than the sender in the target room, or when a client that
//! may answer joins that room (it then gets every open command of the room,
//! in order). A device that acks or answers a command still `queued` implies
//! the steps before, so watchers always see every state. A command not
//! answered by its deadline (`timeoutMs` after it was sent, and again after
//! its ack) fails with `TIMEOUT`: every node sweeps every
//! [`SWEEP_INTERVAL`], the database picks who expires each command.

pub mod request;
pub mod view;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::catalog::{Catalog, CommandSpec, RoleSet};
use crate::domain::command::{Refusal, Status, Step, path};
use crate::domain::{Identity, RoomName, Targets, now_ms};
use crate::error::{AppError, AppResult, Code};
use crate::events::{Draft, Publisher};
use crate::fanout::{Delivery, Fanout, Hub};
use crate::presence::Presence;
use crate::session::Session;
use crate::store::Store;
use crate::store::commands::{NewCommand, Outcome, StoredCommand};
use crate::store::documents::DocKey;
use crate::tasks::Tasks;
use request::{CommandResult, SendCommand};

/// How often each node looks for commands past their deadline.
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(200);
/// Commands expired per sweep query.
const SWEEP_BATCH: i64 = 256;

/// Who sends: a user (socket) or a backend (HTTP API key).
pub enum Sender<'a> {
    User(&'a Identity),
    Backend { company: &'a str },
}

impl Sender<'_> {
    fn company(&self) -> &str {
        match self {
            Sender::User(i) => &i.company_id,
            Sender::Backend { company } => company,
        }
    }

    fn user(&self) -> Option<&str> {
        match self {
            Sender::User(i) => Some(&i.user_id),
            Sender::Backend { .. } => None,
        }
    }
}

/// The answer to `command:send`.
pub struct Sent {
    pub command: StoredCommand,
    /// A retried `clientCommandId`: the first command, nothing sent again.
    pub duplicate: bool,
}

pub struct Commands {
    store: Arc<dyn Store>,
    catalog: Arc<Catalog>,
    publisher: Arc<Publisher>,
    fanout: Arc<Fanout>,
    presence: Arc<Presence>,
    tasks: Tasks,
}

impl Commands {
    pub fn new(
        store: Arc<dyn Store>,
        catalog: Arc<Catalog>,
        publisher: Arc<Publisher>,
        fanout: Arc<Fanout>,
        presence: Arc<Presence>,
        tasks: Tasks,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            catalog,
            publisher,
            fanout,
            presence,
            tasks,
        })
    }

    /// Starts the timeout sweep.
    pub fn start(self: &Arc<Self>) {
        let me = self.clone();
        self.tasks.spawn(async move { me.sweep_forever().await });
    }

    /// `command:send` / `POST /api/v1/commands`: checks rights, args and
    /// interlocks, stores the command, announces `queued`, delivers it.
    pub async fn send(self: &Arc<Self>, sender: Sender<'_>, req: SendCommand) -> AppResult<Sent> {
        let spec = self.catalog.command(&req.name)?;
        if let Sender::User(identity) = &sender {
            if !spec.send.contains(identity.role) {
                return Err(AppError::new(
                    Code::Forbidden,
                    format!("role `{}` may not send `{}`", identity.role, req.name),
                ));
            }
            crate::rooms::authorize(identity, &self.catalog, &req.target)?;
        }
        spec.validate_args(&req.args)?;
        let company = sender.company();
        self.check_interlocks(spec, company, &req.target).await?;
        let key = req.client_command_id.map(|id| match sender.user() {
            // Scoped per user so two users' ids never collide.
            Some(user) => format!("c:{user}:{id}"),
            None => format!("k:{id}"),
        });
        let inserted = self
            .store
            .insert_command(&NewCommand {
                id: uuid::Uuid::now_v7().to_string(),
                company_id: company.to_string(),
                target: req.target.as_str().to_string(),
                name: req.name.clone(),
                args: req.args,
                sender: sender.user().map(str::to_string),
                timeout_ms: req.timeout_ms.unwrap_or(spec.timeout_ms),
                created_at: now_ms(),
                idempotency_key: key,
            })
            .await
            .map_err(AppError::unavailable)?;
        if inserted.duplicate {
            return Ok(Sent {
                command: inserted.command,
                duplicate: true,
            });
        }
        let command = inserted.command;
        self.announce(&command).await;
        self.fanout.deliver(&delivery(&command)).await;
        // The sender's ack says `queued`; `sent` follows when presence shows
        // a listener (off the sender's path: it is a database read).
        let me = self.clone();
        let (c, target) = (command.clone(), req.target);
        self.tasks.spawn(async move {
            if me.someone_listens(&c, &target).await {
                if let Err(e) = me.step(&c, Step::Deliver, &Outcome::default()).await {
                    tracing::warn!(error = %e, command = %c.id, "cannot mark a command sent");
                }
            }
        });
        Ok(Sent {
            command,
            duplicate: false,
        })
    }

    async fn check_interlocks(
        &self,
        spec: &CommandSpec,
        company: &str,
        target: &RoomName,
    ) -> AppResult<()> {
        for lock in &spec.interlocks {
            if lock.target.as_deref().is_some_and(|t| t != target.as_str()) {
                continue;
            }
            let doc = self
                .store
                .document(&DocKey {
                    company_id: company.to_string(),
                    doc_type: lock.doc_type.clone(),
                    doc_id: lock.doc_id.clone(),
                })
                .await
                .map_err(AppError::unavailable)?;
            if lock.holds(target.as_str(), doc.as_ref().map(|d| &d.data)) {
                return Err(lock.refusal(&spec.name));
            }
        }
        Ok(())
    }

    /// Whether presence (cluster-wide) shows anyone but the sender in the
    /// target room. Presence off or down: no (the command stays `queued`
    /// until a device joins or answers).
    async fn someone_listens(&self, c: &StoredCommand, target: &RoomName) -> bool {
        match self.presence.list(&c.company_id, target).await {
            Ok(users) => users
                .iter()
                .any(|u| Some(u.user_id.as_str()) != c.sender.as_deref()),
            Err(_) => false,
        }
    }

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

    /// One guarded transition; announced when this call made it.
    async fn step(
        &self,
        c: &StoredCommand,
        step: Step,
        outcome: &Outcome,
    ) -> AppResult<Option<StoredCommand>> {
        let next = self
            .store
            .transition_command(&c.company_id, &c.id, step, now_ms(), outcome)
            .await
            .map_err(AppError::unavailable)?;
        if let Some(next) = &next {
            self.announce(next).await;
        }
        Ok(next)
    }

    /// `GET /api/v1/commands/{id}`, and the look-up before an answer.
    pub async fn get(&self, company: &str, id: &str) -> AppResult<StoredCommand> {
        self.store
            .command(company, id)
            .await
            .map_err(AppError::unavailable)?
            .ok_or_else(|| AppError::new(Code::NotFound, format!("no command `{id}`")))
    }

    /// Commands of a target (or all) created in `[from, to)`, oldest first.
    pub async fn list(
        &self,
        company: &str,
        target: Option<&RoomName>,
        from: i64,
        to: i64,
        limit: i64,
    ) -> AppResult<Vec<StoredCommand>> {
        self.store
            .list_commands(company, target.map(RoomName::as_str), from, to, limit)
            .await
            .map_err(AppError::unavailable)
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

    /// Publishes the command's current status as `command_status` (durable)
    /// to `command:{id}` and the sender's user room. The transition is
    /// already stored: a failure here is logged, and the status stays
    /// readable through the HTTP API.
    async fn announce(&self, c: &StoredCommand) {
        if let Err(e) = self.try_announce(c).await {
            tracing::warn!(error = %e, command = %c.id, status = %c.status, "command_status not published");
        }
    }

    async fn try_announce(&self, c: &StoredCommand) -> AppResult<()> {
        let spec = self.publisher.spec("command_status")?;
        let mut rooms = Targets::one(RoomName::parse(&format!("command:{}", c.id))?);
        if let Some(user) = &c.sender {
            rooms.push(RoomName::user(user));
        }
        let prepared = self.publisher.prepare(
            spec,
            Draft {
                company: &c.company_id,
                event_type: "command_status",
                rooms,
                payload: view::status(c),
                priority: None,
                source: "commands".into(),
                publisher: None,
                // One status event per transition, whoever retries.
                idempotency_key: Some(format!("cmd:{}:{}", c.id, c.status)),
            },
        )?;
        let appended = self
            .publisher
            .persist(std::slice::from_ref(&prepared))
            .await?
            .pop()
            .flatten();
        self.publisher
            .dispatch(&prepared, appended.as_ref(), None)
            .await;
        Ok(())
    }

    async fn sweep_forever(&self) {
        let mut tick = tokio::time::interval(SWEEP_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match self.store.expire_commands(now_ms(), SWEEP_BATCH).await {
                Ok(expired) => {
                    for c in expired {
                        self.announce(&c).await;
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "command timeout sweep failed; retrying");
                }
            }
        }
    }
}

/// The `command` event for the target room.
fn delivery(c: &StoredCommand) -> Delivery {
    Delivery {
        company: c.company_id.clone(),
        room: c.target.clone(),
        event_type: "command".into(),
        payload: view::delivery(c),
        meta: view::delivery_meta(c),
        receive: RoleSet::ALL,
        exclude: None,
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
