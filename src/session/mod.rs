//! A connection, whatever its transport: the verified identity, its
//! device, its logical rooms, its rate buckets and its ordered job queue
//! ([`queue`]), and the [`Sink`] through which its transport sends.
//!
//! Everything above this module (rooms, publishing, durable delivery and
//! replay, documents, presence, typing) works on a [`Session`]; a transport
//! (socket.io today) creates one per connection, gives it a sink, feeds its
//! requests through `api`, and closes it when the connection ends.
//! [`Sessions`] is this node's registry of open sessions.

pub mod pipeline;
pub mod queue;
mod registry;
mod sink;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::domain::{Identity, RoomName, SessionId};
use crate::limits::{Admission, TokenBucket};
use crate::throttle::users::{self, UserBucket};
pub use pipeline::Pipeline;
pub use queue::{Job, QUEUE_CAPACITY, Worker};
pub use registry::Sessions;
pub use sink::{SendFail, Sink};

/// The buckets an incoming request draws from: the session's own and the
/// one its user shares with its other sessions on this node.
pub struct Rates {
    pub session: TokenBucket,
    pub user: UserBucket,
}

/// A request refused by a rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateRefusal {
    /// The user's shared bucket refused, not the session's own.
    pub per_user: bool,
    /// Refused so often for so long that the connection should be dropped.
    pub abusive: bool,
}

/// What a transport knows about a new connection.
pub struct Opening {
    pub id: SessionId,
    /// The transport's name (`socketio`), for listings.
    pub transport: &'static str,
    pub identity: Identity,
    pub device_id: Option<String>,
    pub connected_at: i64,
    pub ip: Option<IpAddr>,
    pub rates: Rates,
}

pub struct Session {
    pub id: SessionId,
    pub transport: &'static str,
    identity: RwLock<Identity>,
    pub device_id: Option<String>,
    pub connected_at: i64,
    /// The client's address (behind `TRUSTED_PROXIES`, the forwarded one:
    /// `crate::client_ip`), for the per-IP connection count and listings.
    pub ip: Option<IpAddr>,
    /// Rooms joined beyond the automatic ones, in join order. Ours, not the
    /// transport's: every transport has the same rooms. Empty (no
    /// allocation) for the many sessions that only have automatic rooms.
    rooms: Mutex<Vec<RoomName>>,
    /// Set by the transport once; cleared on close (the sink may hold the
    /// connection, which may hold this session).
    sink: Mutex<Option<Arc<dyn Sink>>>,
    queue: mpsc::Sender<Job>,
    /// Durable publishes between queued in the writer and answered.
    pub pipeline: Pipeline,
    /// Cancelled when the session closes (and at shutdown): ends its worker
    /// and timers.
    pub closed: CancellationToken,
    /// Set by the first [`Session::close`], so clean-up runs once.
    closing: AtomicBool,
    /// Woken when the token is refreshed, so the expiry timer re-reads `exp`.
    pub refreshed: Notify,
    start: Mutex<Option<oneshot::Sender<()>>>,
    rate: Mutex<TokenBucket>,
    user_rate: UserBucket,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Session {
    /// Creates the session and its worker; the worker runs the queue once
    /// [`Session::start`] is called. `closed` should be a child of the
    /// application's token.
    pub fn new(o: Opening, closed: CancellationToken) -> (Arc<Self>, Worker) {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let (start_tx, start_rx) = oneshot::channel();
        let session = Arc::new(Self {
            id: o.id,
            transport: o.transport,
            identity: RwLock::new(o.identity),
            device_id: o.device_id,
            connected_at: o.connected_at,
            ip: o.ip,
            rooms: Mutex::new(Vec::new()),
            sink: Mutex::new(None),
            queue: tx,
            pipeline: Pipeline::default(),
            closed: closed.clone(),
            closing: AtomicBool::new(false),
            refreshed: Notify::new(),
            start: Mutex::new(Some(start_tx)),
            rate: Mutex::new(o.rates.session),
            user_rate: o.rates.user,
        });
        let pipeline = session.pipeline.clone();
        (session, Worker::new(rx, start_rx, closed, pipeline))
    }

    pub fn identity(&self) -> Identity {
        self.identity
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn replace_identity(&self, identity: Identity) {
        *self.identity.write().unwrap_or_else(|e| e.into_inner()) = identity;
        self.refreshed.notify_one();
    }

    pub fn set_sink(&self, sink: Arc<dyn Sink>) {
        *lock(&self.sink) = Some(sink);
    }

    /// The transport's sink; `None` once the session closed.
    pub fn sink(&self) -> Option<Arc<dyn Sink>> {
        lock(&self.sink).clone()
    }

    /// The rooms joined beyond the automatic ones.
    pub fn joined(&self) -> Vec<RoomName> {
        lock(&self.rooms).clone()
    }

    pub fn is_in(&self, room: &RoomName) -> bool {
        crate::rooms::automatic_rooms(&self.identity()).contains(room)
            || lock(&self.rooms).contains(room)
    }

    /// Records rooms joined (automatic ones are implied and not stored).
    pub fn add_rooms(&self, rooms: &[RoomName]) {
        let automatic = crate::rooms::automatic_rooms(&self.identity());
        let mut joined = lock(&self.rooms);
        for room in rooms {
            if !automatic.contains(room) && !joined.contains(room) {
                joined.push(room.clone());
            }
        }
    }

    pub fn remove_room(&self, room: &RoomName) {
        lock(&self.rooms).retain(|r| r != room);
    }

    /// Queues a job; `false` when the queue is full or the session is gone.
    pub fn enqueue(&self, job: Job) -> bool {
        self.queue.try_send(job).is_ok()
    }

    /// A place in the queue, or `None` when it is full or closed.
    pub fn reserve(&self) -> Option<mpsc::Permit<'_, Job>> {
        self.queue.try_reserve().ok()
    }

    /// Takes a token for one incoming request from the session's bucket,
    /// then from its user's.
    pub fn admit(&self) -> Result<(), RateRefusal> {
        let own = lock(&self.rate).admit();
        let (verdict, per_user) = match own {
            Admission::Allowed => (users::admit(&self.user_rate), true),
            refused => (refused, false),
        };
        match verdict {
            Admission::Allowed => Ok(()),
            v => Err(RateRefusal {
                per_user,
                abusive: v == Admission::Abusive,
            }),
        }
    }

    /// Lets the worker begin (idempotent).
    pub fn start(&self) {
        if let Some(tx) = lock(&self.start).take() {
            let _ = tx.send(());
        }
    }

    /// Whether [`Session::close`] ran.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Marks the session closed: its worker and timers stop and its sink is
    /// let go. `true` only for the first call, which owns the clean-up.
    pub fn close(&self) -> bool {
        if self.closing.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.closed.cancel();
        lock(&self.sink).take();
        true
    }
}
