//! Per-socket session: the verified identity and the ordered job queue.
//!
//! socketioxide spawns a task per incoming message, so two events of one
//! socket could be handled out of order. Every event is instead turned into a
//! job (in arrival order, by a synchronous handler) and run by one worker per
//! socket, one job at a time: a publish sent before another gets the lower
//! offset. The first job is the connection's own setup (rooms, `session`),
//! so nothing a client sends is handled before it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use futures::future::BoxFuture;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::domain::Identity;
use crate::limits::{Admission, TokenBucket};
use crate::replay::Member;
use crate::throttle::users::{self, UserBucket};

pub type Job = BoxFuture<'static, ()>;

/// The buckets an incoming event draws from: the socket's own and the one
/// its user shares with its other sockets on this node.
pub struct Rates {
    pub socket: TokenBucket,
    pub user: UserBucket,
}

/// An event refused by a rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateRefusal {
    /// The user's shared bucket refused, not the socket's own.
    pub per_user: bool,
    /// Refused so often for so long that the socket should be dropped.
    pub abusive: bool,
}

/// How many events a socket may have waiting; beyond that it is refused with
/// RATE_LIMITED rather than buffered without bound.
pub const QUEUE_CAPACITY: usize = 256;

pub struct Session {
    identity: RwLock<Identity>,
    pub device_id: Option<String>,
    /// `auth.offsets` from the handshake (room → last offset seen).
    pub offsets: HashMap<String, i64>,
    pub connected_at: i64,
    /// Peer address, for the per-IP connection count.
    pub ip: Option<std::net::IpAddr>,
    queue: mpsc::Sender<Job>,
    /// Cancelled when the socket goes away: ends its worker and timers.
    pub closed: CancellationToken,
    /// Woken when the token is refreshed, so the expiry timer re-reads `exp`.
    pub refreshed: Notify,
    start: Mutex<Option<oneshot::Sender<()>>>,
    rate: Mutex<TokenBucket>,
    user_rate: UserBucket,
    /// This socket's positions in durable feeds, by logical room.
    members: Mutex<HashMap<String, Arc<Member>>>,
}

impl Session {
    /// Creates the session and the receiving half of its queue; the worker
    /// runs the queue once [`Session::start`] is called (after CONNECT is sent).
    pub fn new(
        identity: Identity,
        device_id: Option<String>,
        offsets: HashMap<String, i64>,
        connected_at: i64,
        ip: Option<std::net::IpAddr>,
        rate: Rates,
    ) -> (Arc<Self>, Worker) {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let (start_tx, start_rx) = oneshot::channel();
        let closed = CancellationToken::new();
        let session = Arc::new(Self {
            identity: RwLock::new(identity),
            device_id,
            offsets,
            connected_at,
            ip,
            queue: tx,
            closed: closed.clone(),
            refreshed: Notify::new(),
            start: Mutex::new(Some(start_tx)),
            members: Mutex::new(HashMap::new()),
            rate: Mutex::new(rate.socket),
            user_rate: rate.user,
        });
        (
            session,
            Worker {
                rx,
                start: start_rx,
                closed,
            },
        )
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

    /// Queues a job; `false` when the queue is full or the socket is gone.
    pub fn enqueue(&self, job: Job) -> bool {
        self.queue.try_send(job).is_ok()
    }

    fn members(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Member>>> {
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_member(&self, member: Arc<Member>) {
        self.members().insert(member.room.clone(), member);
    }

    pub fn member(&self, room: &str) -> Option<Arc<Member>> {
        self.members().get(room).cloned()
    }

    pub fn remove_member(&self, room: &str) {
        self.members().remove(room);
    }

    pub fn take_members(&self) -> Vec<Arc<Member>> {
        self.members().drain().map(|(_, m)| m).collect()
    }

    /// Takes a token for one incoming event from the socket's bucket, then
    /// from its user's.
    pub fn admit(&self) -> Result<(), RateRefusal> {
        let own = self.rate.lock().unwrap_or_else(|e| e.into_inner()).admit();
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

    /// A place in the queue, or `None` when it is full or closed.
    pub fn reserve(&self) -> Option<mpsc::Permit<'_, Job>> {
        self.queue.try_reserve().ok()
    }

    /// Lets the worker begin (idempotent).
    pub fn start(&self) {
        if let Some(tx) = self.start.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = tx.send(());
        }
    }

    pub fn close(&self) {
        self.closed.cancel();
    }
}

pub struct Worker {
    rx: mpsc::Receiver<Job>,
    start: oneshot::Receiver<()>,
    closed: CancellationToken,
}

impl Worker {
    /// Runs jobs in order until the socket closes. A job already running when
    /// the socket closes is finished (it may be a durable write).
    pub async fn run(mut self) {
        tokio::select! {
            started = &mut self.start => if started.is_err() { return },
            _ = self.closed.cancelled() => return,
        }
        loop {
            let job = tokio::select! {
                biased;
                job = self.rx.recv() => job,
                _ = self.closed.cancelled() => None,
            };
            match job {
                Some(job) => job.await,
                None => return,
            }
        }
    }
}
