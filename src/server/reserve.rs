//! The reserve: a few connection slots beyond `HTTP_MAX_CONNECTIONS`, so a
//! health check still gets an answer when idle connections fill the main
//! slots. A reserve connection serves one request, and only health; when
//! the reserve is full, a new connection takes the slot of the oldest one
//! that has not sent a request yet (an idle connection cannot block health).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

struct Entry {
    /// Ends the connection (see `super::io::Guarded`).
    kill: CancellationToken,
    /// Set once a request arrived: such a connection is not evicted.
    active: AtomicBool,
}

#[derive(Default)]
pub struct Reserve {
    /// Oldest first. A std mutex: held for a few pointer operations, never
    /// across an await.
    entries: Mutex<VecDeque<Arc<Entry>>>,
}

/// A reserve slot; the slot is free again when this is dropped.
pub struct ReserveGuard {
    reserve: Arc<Reserve>,
    entry: Arc<Entry>,
}

impl ReserveGuard {
    /// The handle the connection's request handler marks it active with.
    pub fn ticket(&self) -> Ticket {
        Ticket(self.entry.clone())
    }
}

/// Marks a reserve connection as serving a request (no longer evictable).
#[derive(Clone)]
pub struct Ticket(Arc<Entry>);

impl Ticket {
    pub fn activate(&self) {
        self.0.active.store(true, Ordering::Release);
    }
}

impl Drop for ReserveGuard {
    fn drop(&mut self) {
        let mut entries = self.reserve.lock();
        entries.retain(|e| !Arc::ptr_eq(e, &self.entry));
    }
}

impl Reserve {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<Entry>>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a new connection whose kill switch is `kill`, evicting the
    /// oldest idle reserve connection if needed; `None` when every reserve
    /// connection is serving a request.
    pub fn admit(
        self: &Arc<Self>,
        capacity: usize,
        kill: CancellationToken,
    ) -> Option<ReserveGuard> {
        let mut entries = self.lock();
        if entries.len() >= capacity {
            let idle = entries
                .iter()
                .position(|e| !e.active.load(Ordering::Acquire))?;
            if let Some(evicted) = entries.remove(idle) {
                evicted.kill.cancel();
            }
        }
        let entry = Arc::new(Entry {
            kill,
            active: AtomicBool::new(false),
        });
        entries.push_back(entry.clone());
        Some(ReserveGuard {
            reserve: self.clone(),
            entry,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_reserve_evicts_the_oldest_idle_connection() {
        let reserve = Arc::new(Reserve::default());
        let kills: Vec<CancellationToken> = (0..3).map(|_| CancellationToken::new()).collect();
        let a = reserve.admit(2, kills[0].clone()).expect("free");
        let b = reserve.admit(2, kills[1].clone()).expect("free");
        a.ticket().activate();
        let c = reserve.admit(2, kills[2].clone()).expect("evicts b");
        assert!(kills[1].is_cancelled() && !kills[0].is_cancelled());
        drop(b);
        c.ticket().activate();
        assert!(
            reserve.admit(2, CancellationToken::new()).is_none(),
            "both serving"
        );
        drop(a);
        assert!(reserve.admit(2, CancellationToken::new()).is_some());
    }
}
