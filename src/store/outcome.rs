//! What became of an append whose callers were told "not known to be
//! stored": the log writer gave up waiting for it
//! ([`super::breaker::Unfinished::GivenUp`]), or its connection ended while
//! the database may have been committing it (the server restarted, the
//! backend was terminated: the error arrives after a COMMIT that went
//! through, see [`StoreError::outcome_unknown`]). If its events are in the
//! log they must still reach the live feeds; otherwise members learn of
//! them only when a later event of the same room reveals the gap, or never.
//!
//! A late result says so itself. A connection that ended leaves the log to
//! say, once the database answers again ([`once_answering`], which
//! document turns use too); the events' ids are unique, so they are found
//! or they were not stored. One exception: a backend the
//! database has not noticed is gone (a broken link, not a restart) may
//! still commit after the log was read; its events then reach members the
//! other ways.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::breaker::Breaker;
use super::{Appended, NewEvent, Store, StoreError};

/// The end of an append nobody waits for any more.
pub type Late = Pin<Box<dyn Future<Output = Result<Vec<Appended>, StoreError>> + Send>>;

/// How long the database is waited for (it may stay down): after that,
/// members find the events by the gap or on reconnect, and a document's
/// version at the next update or on reconnect.
const ASK_FOR: Duration = Duration::from_secs(300);

/// Between two asks while the database does not answer.
const ASK_EVERY: Duration = Duration::from_millis(250);

/// An event's id and its rooms, in the order of its results.
pub type Placement = (String, Vec<String>);

pub fn placements(events: &[NewEvent]) -> Vec<Placement> {
    events
        .iter()
        .map(|e| (e.id.clone(), e.rooms.clone()))
        .collect()
}

/// The batch's results if it committed: from `late` itself, or from the
/// log when `late` ended with its connection. `None`: not stored, not
/// known before shutdown (`stop`) or within [`ASK_FOR`].
pub async fn committed(
    late: Late,
    events: Vec<Placement>,
    store: Arc<dyn Store>,
    breaker: Arc<Breaker>,
    stop: CancellationToken,
) -> Option<Vec<Appended>> {
    match late.await {
        Ok(appended) => Some(appended),
        Err(e) if e.outcome_unknown() => {
            tracing::warn!(error = %e, events = events.len(), "an append's connection ended mid-way; asking the log whether it committed");
            let ids: Vec<String> = events.iter().map(|(id, _)| id.clone()).collect();
            let rows = once_answering(&breaker, stop, || store.stored_offsets(&ids)).await?;
            recovered(&events, rows)
        }
        Err(_) => None,
    }
}

/// `ask`'s answer once the database answers again (the breaker's own
/// probe closed it), asked again while it fails. `None` at shutdown
/// (`stop`) or after [`ASK_FOR`].
pub async fn once_answering<T, F, Fut>(
    breaker: &Breaker,
    stop: CancellationToken,
    mut ask: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let asking = async {
        loop {
            if breaker.check().is_ok() {
                match ask().await {
                    Ok(answer) => return answer,
                    Err(e) => tracing::debug!(error = %e, "cannot ask the database yet"),
                }
            }
            tokio::time::sleep(ASK_EVERY).await;
        }
    };
    tokio::select! {
        answer = tokio::time::timeout(ASK_FOR, asking) => answer.ok(),
        () = stop.cancelled() => None,
    }
}

/// The results a committed batch had, rebuilt from its rows in the log;
/// `None` when none of its events is there (a transaction is whole: it did
/// not commit). An event of a committed batch with no rows was a duplicate
/// of an earlier idempotency key: it wrote nothing and is not delivered.
pub fn recovered(events: &[Placement], rows: Vec<(String, String, i64)>) -> Option<Vec<Appended>> {
    if rows.is_empty() {
        return None;
    }
    let mut stored: HashMap<String, HashMap<String, i64>> = HashMap::new();
    for (id, room, offset) in rows {
        stored.entry(id).or_default().insert(room, offset);
    }
    Some(
        events
            .iter()
            .map(|(id, rooms)| match stored.get(id) {
                Some(at) => Appended {
                    id: id.clone(),
                    offsets: rooms
                        .iter()
                        .filter_map(|r| at.get(r).map(|&o| (r.clone(), o)))
                        .collect(),
                    duplicate: false,
                },
                None => Appended {
                    id: id.clone(),
                    offsets: Vec::new(),
                    duplicate: true,
                },
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placement(id: &str, rooms: &[&str]) -> Placement {
        (id.into(), rooms.iter().map(|r| r.to_string()).collect())
    }

    #[test]
    fn a_batch_with_no_rows_in_the_log_did_not_commit() {
        assert_eq!(recovered(&[placement("a", &["r"])], Vec::new()), None);
    }

    #[test]
    fn results_follow_the_events_and_their_rooms_order() {
        let events = [
            placement("a", &["order:1", "company"]),
            placement("dup", &["company"]),
            placement("b", &["company"]),
        ];
        let rows = vec![
            ("b".into(), "company".into(), 8),
            ("a".into(), "company".into(), 7),
            ("a".into(), "order:1".into(), 3),
        ];
        let got = recovered(&events, rows).expect("committed");
        assert_eq!(
            got,
            vec![
                Appended {
                    id: "a".into(),
                    offsets: vec![("order:1".into(), 3), ("company".into(), 7)],
                    duplicate: false,
                },
                Appended {
                    id: "dup".into(),
                    offsets: vec![],
                    duplicate: true,
                },
                Appended {
                    id: "b".into(),
                    offsets: vec![("company".into(), 8)],
                    duplicate: false,
                },
            ]
        );
        assert!(got[1].duplicate, "a duplicate is not handed over");
    }
}
