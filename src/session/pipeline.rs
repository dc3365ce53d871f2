//! A session's durable publishes in flight at once.
//!
//! The ordered queue ([`super::queue`]) runs one request at a time, and a
//! durable publish used to hold it until its group commit was done: one
//! socket could have one event in the writer at a time, so a publisher was
//! bound by commit latency, not by the database. Now a durable publish
//! holds the queue only until its events are queued in the writer (behind
//! the ones it sent before, so offsets still follow arrival order); its
//! commit, delivery and ack finish off the queue, up to [`DEPTH`] at once.
//! Every other request first waits for those to finish ([`Pipeline::settle`]),
//! so it sees the state it would have seen before: a `subscribe`, a
//! document update or an ephemeral publish after a durable publish still
//! comes after it, as before.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Durable publishes one session may have between queued and answered.
pub const DEPTH: u32 = 32;

/// Clones share the slots (the session's worker holds one).
#[derive(Clone)]
pub struct Pipeline {
    slots: Arc<Semaphore>,
}

impl Default for Pipeline {
    fn default() -> Self {
        Self {
            slots: Arc::new(Semaphore::new(DEPTH as usize)),
        }
    }
}

impl Pipeline {
    /// A place for one more publish in flight, held until it is answered;
    /// waits while [`DEPTH`] are (the queue then waits too: backpressure).
    pub async fn enter(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().acquire_owned().await.ok()
    }

    /// Waits until no publish of this session is in flight.
    pub async fn settle(&self) {
        if self.slots.available_permits() == DEPTH as usize {
            return;
        }
        // Never closed: `Err` cannot happen, and would mean nothing waits.
        let _all = self.slots.acquire_many(DEPTH).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn settle_waits_for_every_publish_in_flight_and_enter_for_a_free_slot() {
        let short = std::time::Duration::from_millis(50);
        let p = Pipeline::default();
        p.settle().await; // nothing in flight: at once
        let first = p.enter().await.expect("a slot");
        let second = p.enter().await.expect("a slot");
        assert_eq!(p.slots.available_permits(), DEPTH as usize - 2);
        drop(first);
        let waited = tokio::time::timeout(short, p.settle()).await;
        assert!(waited.is_err(), "one publish is still in flight");
        drop(second);
        tokio::time::timeout(short, p.settle())
            .await
            .expect("settles once both are answered");

        let mut held = Vec::new();
        for _ in 0..DEPTH {
            held.push(p.enter().await.expect("a slot"));
        }
        let waiting = tokio::time::timeout(short, p.enter()).await;
        assert!(waiting.is_err(), "a publish beyond DEPTH waits");
        held.pop();
        assert!(p.enter().await.is_some());
    }
}
