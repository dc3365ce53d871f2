//! This node's open sessions, by id, whatever their transport: the count
//! behind the connection limit and health, the sessions graceful shutdown
//! closes, and what an admin listing shows. The per-session workers are
//! tracked here so shutdown can wait for requests in flight (durable writes).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio_util::task::TaskTracker;

use super::{Session, Worker};
use crate::domain::SessionId;
use crate::tasks::Tasks;

#[derive(Default)]
pub struct Sessions {
    // std Mutex: held for one map operation, never across an await.
    by_id: Mutex<HashMap<SessionId, Arc<Session>>>,
    workers: TaskTracker,
}

impl Sessions {
    fn map(&self) -> MutexGuard<'_, HashMap<SessionId, Arc<Session>>> {
        self.by_id.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers an open session and starts its worker (it runs jobs once
    /// the session is started).
    pub fn insert(&self, tasks: &Tasks, session: Arc<Session>, worker: Worker) {
        tasks.spawn_until_done(self.workers.track_future(worker.run()));
        self.map().insert(session.id, session);
    }

    pub fn remove(&self, id: SessionId) -> Option<Arc<Session>> {
        self.map().remove(&id)
    }

    pub fn get(&self, id: SessionId) -> Option<Arc<Session>> {
        self.map().get(&id).cloned()
    }

    /// Open sessions on this node.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every open session (a snapshot).
    pub fn all(&self) -> Vec<Arc<Session>> {
        self.map().values().cloned().collect()
    }

    /// Waits (at most `grace`) for the workers of closed sessions to finish
    /// the job they were running; `false` if some were still running.
    pub async fn drain_workers(&self, grace: Duration) -> bool {
        self.workers.close();
        tokio::time::timeout(grace, self.workers.wait())
            .await
            .is_ok()
    }
}
