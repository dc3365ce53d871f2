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
//!
//! Finished commands are deleted after `COMMAND_RETENTION` (`retention.rs`).
//!
//! Files: this one sends; `device.rs` is the device's side (ack, result,
//! the commands waiting when it joins); `announce.rs` announces and sweeps;
//! `retention.rs` prunes; [`request`] and [`view`] are the wire shapes.

mod announce;
mod device;
pub mod request;
mod retention;
pub mod view;

use std::sync::Arc;
use std::time::Duration;

use crate::catalog::{Catalog, CommandSpec};
use crate::domain::command::Step;
use crate::domain::{Identity, RoomName, now_ms};
use crate::error::{AppError, AppResult, Code};
use crate::events::Publisher;
use crate::fanout::{Fanout, Hub};
use crate::presence::Presence;
use crate::store::Store;
use crate::store::commands::{NewCommand, Outcome, StoredCommand};
use crate::store::documents::DocKey;
use crate::tasks::Tasks;
use request::SendCommand;

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
    /// `COMMAND_RETENTION`: finished commands older than this are deleted.
    retention: Duration,
}

impl Commands {
    pub fn new(
        store: Arc<dyn Store>,
        catalog: Arc<Catalog>,
        publisher: Arc<Publisher>,
        fanout: Arc<Fanout>,
        presence: Arc<Presence>,
        tasks: Tasks,
        retention: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            catalog,
            publisher,
            fanout,
            presence,
            tasks,
            retention,
        })
    }

    /// Starts the timeout sweep and the retention of finished commands.
    pub fn start(self: &Arc<Self>) {
        let me = self.clone();
        self.tasks.spawn(async move { me.sweep_forever().await });
        let me = self.clone();
        self.tasks.spawn(async move { me.retain_forever().await });
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
        self.fanout.deliver(&announce::delivery(&command)).await;
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

    /// One guarded transition; announced when this call made it.
    pub(super) async fn step(
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
}
