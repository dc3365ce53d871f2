//! Presence (SPEC §7): who is online in each company and who is in each
//! entity room, counted over the sockets of every node; and typing
//! indicators ([`typing`]).
//!
//! The truth lives in the database behind [`crate::store::PresenceStore`]:
//! a row per socket, owned by the node process serving it, and a state row
//! per user. Nothing rests on the adapter's `fetch_sockets` (which silently
//! returns partial results when a node is slow). How it stays correct:
//!
//! - **Exactly one transition.** Registering a socket and deciding that a
//!   user went offline both run in a transaction that first locks the
//!   user's row, then applies the pure rules of [`transition`]. Whichever
//!   node's transaction flips the state emits the event, after commit;
//!   every other transaction sees the flipped state and emits nothing.
//! - **Grace.** When a socket leaves, its user's row records the time. If
//!   the user has no socket left, the node schedules a settle after
//!   `WS_PRESENCE_GRACE_MS`; it goes offline only if there is still no
//!   socket (on any node) and no socket left more recently. A reconnect
//!   within the grace period, on any node, finds the user still online: no
//!   offline/online pair.
//! - **Dead nodes.** Each node refreshes the heartbeat of all its rows in
//!   one UPDATE every `WS_PRESENCE_TTL`/3. Every node sweeps: rows whose
//!   heartbeat is older than the TTL are removed (their last heartbeat
//!   counts as the departure) and their users settled; so are online users
//!   whose settle timer was lost (a node that stopped after a departure).
//! - **Drift.** The heartbeat compares the number of rows it refreshed with
//!   the sockets this node registered; if they differ (a write failed while
//!   the database was away, or another node reaped us while we were cut
//!   off), or a room change failed since (rows cannot show that), it
//!   registers every socket again and removes its rows no socket backs.
//! - **Shutdown** removes all of this node's rows in one transaction as
//!   departures; clients reconnecting elsewhere within the grace period see
//!   no flap, the others go offline when another node's sweep settles them.
//!   Sockets that register or leave while the node drains write nothing of
//!   their own (a row written after that transaction would have no
//!   heartbeat behind it).
//! - **Entity rooms** follow the same rules per (user, room), under the
//!   same user row lock: the user's first socket in a room announces
//!   `presence:joined` to the room (except that socket); a departure that
//!   leaves the room without a socket of the user schedules the same settle,
//!   which announces `presence:left` once the grace period has passed with
//!   no socket of the user back in the room, on any node. Dead nodes'
//!   sockets, shutdown and drift leave rooms exactly as they leave the
//!   company. A socket without entity rooms costs no extra statement.
//!
//! - **Unknown outcomes.** A registration that fails may have committed
//!   (its connection ended during the COMMIT): the database is asked once
//!   it answers whether that registration took the user online, and its
//!   `user:online` is announced then ([`unsure`]).
//! - **Batches.** Sockets without entity rooms are registered, and leave,
//!   in batches of what waits on this node ([`registrar`]): one
//!   transaction locks the batch's users in key order (as every
//!   multi-user transaction does, so no two can deadlock) and applies the
//!   same rules to each socket in turn.
//! - **Storms.** Above `WS_PRESENCE_BROADCAST_MAX` users online in a
//!   company, company-wide transitions go out as `presence:batch` frames
//!   to the sessions that asked for them instead of one frame per user to
//!   everyone ([`broadcast`]).
//!
//! Per-node memory holds per-session state only: what was registered for
//! each session of this node (to re-register it), and typing states.
//! ("Socket" below means a session of any transport: presence counts
//! connections, whatever they speak.)

mod announce;
mod broadcast;
mod registrar;
mod sockets;
pub mod typing;
mod unsure;
mod upkeep;

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::domain::room::RoomKind;
use crate::domain::{RoomName, SessionId};
use crate::error::{AppError, AppResult, Code};
use crate::fanout::Fanout;
use crate::store::breaker::Breaker;
use crate::store::{PresentUser, SocketEntry, Store, UserKey};
use crate::tasks::Tasks;
use typing::Typing;

/// What this node registered for one of its sockets.
struct Slot {
    /// Kept current (rooms) so the socket can be registered again.
    entry: Mutex<SocketEntry>,
    /// Orders this socket's writes: a leave waits for a registration still
    /// in flight, so a socket that goes away while it is being registered
    /// leaves no row behind. `true` once the socket left.
    op: Arc<tokio::sync::Mutex<bool>>,
    /// Its registration failed and may have committed ([`unsure`]).
    unsure: AtomicBool,
    /// The time its registration wrote (ms): the rooms it entered are
    /// found by it ([`unsure`]).
    registered_at: i64,
}

impl Slot {
    fn entry(&self) -> MutexGuard<'_, SocketEntry> {
        self.entry.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What presence needs from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `WS_PRESENCE`: off = no rows, no announcements, `presence:list` refused.
    pub enabled: bool,
    /// `NODE_ID`.
    pub node_id: String,
    /// `WS_PRESENCE_GRACE_MS`.
    pub grace: Duration,
    /// `WS_PRESENCE_TTL`.
    pub ttl: Duration,
    /// `WS_PRESENCE_BROADCAST_MAX` (see [`broadcast`]).
    pub broadcast_max: usize,
}

/// The presence service: the database's presence rows (`store`), the
/// announcements (`fanout`), its timers and loops (`tasks`).
pub struct Presence {
    enabled: bool,
    /// This process's name in presence rows: `NODE_ID` plus a random part,
    /// so a restarted node never keeps its predecessor's rows alive.
    node: String,
    grace: Duration,
    ttl: Duration,
    // std Mutex: never held across an await.
    slots: Mutex<HashMap<SessionId, Arc<Slot>>>,
    /// Socket writes hold it shared; the heartbeat's drift check and
    /// re-registration hold it exclusively, so they see no write in flight.
    sync: tokio::sync::RwLock<()>,
    typing: Typing,
    broadcast: broadcast::Broadcast,
    /// Registrations and departures of sockets, in batches.
    registrar: registrar::Registrar,
    /// Says when the database answers again after a failed registration
    /// ([`unsure`]).
    breaker: Arc<Breaker>,
    /// The task that resolves unsure slots runs ([`unsure`]).
    resolving: AtomicBool,
    /// Slots of sockets that left while unsure ([`unsure`]).
    departed_unsure: Mutex<Vec<(SessionId, Arc<Slot>)>>,
    /// A room change failed: the rows' count cannot show it, so the next
    /// heartbeat registers every socket again ([`upkeep`]).
    rooms_drifted: AtomicBool,
    store: Arc<dyn Store>,
    fanout: Arc<Fanout>,
    tasks: Tasks,
    /// Where `user:online` / `user:offline` also go (set once at startup).
    webhooks: std::sync::OnceLock<Arc<crate::webhooks::Webhooks>>,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Presence {
    pub fn new(
        settings: Settings,
        store: Arc<dyn Store>,
        fanout: Arc<Fanout>,
        tasks: Tasks,
    ) -> Arc<Self> {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let broadcast = broadcast::Broadcast::new(settings.broadcast_max);
        let rule = registrar::SettleRule {
            ttl_ms: millis(settings.ttl),
            grace_ms: millis(settings.grace),
            count_up_to: broadcast.bound(),
        };
        Arc::new(Self {
            enabled: settings.enabled,
            node: format!("{}#{}", settings.node_id, &suffix[..12]),
            grace: settings.grace,
            ttl: settings.ttl,
            slots: Mutex::new(HashMap::new()),
            sync: tokio::sync::RwLock::new(()),
            typing: Typing::default(),
            broadcast,
            registrar: registrar::Registrar::new(store.clone(), &tasks, rule),
            breaker: Breaker::new(store.clone(), tasks.clone()),
            resolving: AtomicBool::new(false),
            departed_unsure: Mutex::new(Vec::new()),
            rooms_drifted: AtomicBool::new(false),
            store,
            fanout,
            tasks,
            webhooks: std::sync::OnceLock::new(),
        })
    }

    /// Sends presence transitions to the webhooks that name them.
    pub fn set_webhooks(&self, hooks: Arc<crate::webhooks::Webhooks>) {
        let _ = self.webhooks.set(hooks);
    }

    /// Starts the heartbeat and the sweep (see [`upkeep`]).
    pub fn start(self: &Arc<Self>) {
        if self.enabled {
            self.tasks.spawn(upkeep::maintain(self.clone()));
        }
    }

    fn slots(&self) -> MutexGuard<'_, HashMap<SessionId, Arc<Slot>>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn heartbeat_every(&self) -> Duration {
        (self.ttl / 3).max(Duration::from_millis(500))
    }

    /// Often enough to settle lost grace timers about on time, and dead
    /// nodes' users within a third of the TTL.
    fn sweep_every(&self) -> Duration {
        (self.ttl / 3)
            .min(self.grace)
            .clamp(Duration::from_millis(500), Duration::from_secs(30))
    }
}

fn entity_rooms(rooms: &[RoomName]) -> Vec<String> {
    rooms
        .iter()
        .filter(|r| matches!(r.kind(), RoomKind::Entity(_)))
        .map(|r| r.as_str().to_string())
        .collect()
}

impl Presence {
    /// `presence:list`: online users of the company, of a role or a user room,
    /// or the users subscribed to an entity room.
    pub async fn list(&self, company: &str, room: &RoomName) -> AppResult<Vec<PresentUser>> {
        if !self.enabled {
            return Err(AppError::new(
                Code::Unavailable,
                "presence is turned off on this server (WS_PRESENCE=off)",
            ));
        }
        let entity = matches!(room.kind(), RoomKind::Entity(_)).then_some(room.as_str());
        let users = self
            .store
            .presence_list(company, entity)
            .await
            .map_err(AppError::unavailable)?;
        Ok(match room.kind() {
            RoomKind::Company | RoomKind::Entity(_) => users,
            RoomKind::User(id) => users.into_iter().filter(|u| u.user_id == id).collect(),
            RoomKind::Role(role) => users.into_iter().filter(|u| u.role == role).collect(),
        })
    }

    fn settle_later(self: &Arc<Self>, user: UserKey) {
        let this = self.clone();
        self.tasks.spawn(async move {
            tokio::time::sleep(this.grace).await;
            // Boxed: inline, the settle's state (store call, broadcasts) made
            // every waiting timer 3.2 KB, and a reconnect storm starts one
            // per departed socket.
            Box::pin(this.settle(&user)).await;
        });
    }

    async fn settle(self: &Arc<Self>, user: &UserKey) {
        match self.registrar.settle(user).await {
            Ok(changes) => self.publish(user, changes, None).await,
            Err(e) => {
                tracing::warn!(error = %e, "presence: settle failed; the sweep will retry")
            }
        }
    }
}
