//! The per-document queue of updates waiting for their turn on this node
//! (one turn per document at a time; see `writer` for who runs them).
//!
//! Writers of one document take turns on its lock, and each turn costs a
//! transaction and a commit: one hot document did 205–408 updates/s. So
//! updates of one document that arrive while another of its updates is
//! being written wait here, and the next turn takes all of them: merged in
//! arrival order under one lock, their versions committed together (see
//! `update.rs`). Every version number is still used once; each update is
//! still merged against the state its predecessor left.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use crate::store::documents::DocKey;

/// Most updates one turn takes: bounds the transaction and the latency of
/// the first in line.
pub const MAX_GROUP: usize = 256;

/// Documents with a turn running on this node, and what waits for the next.
pub struct Hot<T> {
    // std Mutex: never held across an await.
    queues: Mutex<HashMap<DocKey, Vec<T>>>,
}

impl<T> Default for Hot<T> {
    fn default() -> Self {
        Self {
            queues: Mutex::new(HashMap::new()),
        }
    }
}

impl<T> Hot<T> {
    fn queues(&self) -> MutexGuard<'_, HashMap<DocKey, Vec<T>>> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `item`; `true` when no turn is running for the document (the
    /// caller must then start one, which [`Self::next`] feeds).
    pub fn push(&self, key: &DocKey, item: T) -> bool {
        let mut queues = self.queues();
        match queues.get_mut(key) {
            Some(queue) => {
                queue.push(item);
                false
            }
            None => {
                queues.insert(key.clone(), vec![item]);
                true
            }
        }
    }

    /// The next group for the running turn, oldest first; `None` (and the
    /// document is no longer running) when nothing waits.
    pub fn next(&self, key: &DocKey) -> Option<Vec<T>> {
        let mut queues = self.queues();
        let queue = queues.get_mut(key)?;
        if queue.is_empty() {
            queues.remove(key);
            return None;
        }
        let n = queue.len().min(MAX_GROUP);
        Some(queue.drain(..n).collect())
    }

    /// After a turn: `true` when updates wait for the document's next one
    /// (it stays running); otherwise it is no longer running.
    pub fn more(&self, key: &DocKey) -> bool {
        let mut queues = self.queues();
        match queues.get(key) {
            Some(queue) if !queue.is_empty() => true,
            _ => {
                queues.remove(key);
                false
            }
        }
    }

    /// Drops what waits for a turn that ended without draining (it
    /// panicked): the waiters are told, and the next push starts a turn.
    pub fn abandon(&self, key: &DocKey) {
        self.queues().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> DocKey {
        DocKey {
            company_id: "c".into(),
            doc_type: "order".into(),
            doc_id: id.into(),
        }
    }

    #[test]
    fn one_turn_per_document_takes_what_waits_in_order() {
        let hot = Hot::default();
        assert!(hot.push(&key("1"), 1));
        assert!(!hot.push(&key("1"), 2), "a turn is running");
        assert!(hot.push(&key("2"), 10), "another document has its own");
        assert_eq!(hot.next(&key("1")), Some(vec![1, 2]));
        assert!(!hot.push(&key("1"), 3), "still running until drained");
        assert!(hot.more(&key("1")), "3 waits");
        assert_eq!(hot.next(&key("1")), Some(vec![3]));
        assert!(!hot.more(&key("1")), "drained");
        assert!(
            hot.push(&key("1"), 7),
            "drained: the next push starts a turn"
        );
        assert_eq!(hot.next(&key("1")), Some(vec![7]));
        assert_eq!(hot.next(&key("1")), None);
        assert!(
            hot.push(&key("1"), 4),
            "drained: the next push starts a turn"
        );
        hot.push(&key("1"), 5);
        hot.abandon(&key("1"));
        assert!(
            hot.push(&key("1"), 6),
            "abandoned: the next push starts a turn"
        );
        for i in 0..(MAX_GROUP + 5) {
            hot.push(&key("3"), i);
        }
        assert_eq!(hot.next(&key("3")).map(|g| g.len()), Some(MAX_GROUP));
        assert_eq!(hot.next(&key("3")).map(|g| g.len()), Some(5));
    }
}
