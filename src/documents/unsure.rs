//! A document turn whose connection ended while the database may have
//! been committing it (a restart, a terminated backend: see
//! [`crate::store::StoreError::outcome_unknown`]). Its writers were told
//! "not known to be stored"; once the database answers again, each
//! document's history says which of the turn's versions are there, and
//! those are announced (`document:updated`) as a late commit's are.
//! Without it the others saw those versions only at the next update or
//! on reconnect.

use serde_json::Value;

use super::Documents;
use super::request::DocRef;
use crate::store::documents::{DocKey, DocumentVersion, DocumentWrite};
use crate::store::outcome;

/// One document's versions a turn wrote, if it committed.
pub(super) struct Unsure {
    pub key: DocKey,
    pub doc: DocRef,
    pub written: Vec<Written>,
}

/// One version and its announcement.
pub(super) struct Written {
    pub version: i64,
    pub updated_by: String,
    pub updated_at: i64,
    pub updated: Value,
}

impl Written {
    pub fn new(write: &DocumentWrite, updated: Value) -> Self {
        Self {
            version: write.version,
            updated_by: write.updated_by.clone(),
            updated_at: write.updated_at,
            updated,
        }
    }
}

/// The announcements of those versions the history holds as this turn
/// wrote them: the same number, author and time. A version number another
/// node used after this turn rolled back has another author or time.
pub(super) fn stored<'a>(written: &'a [Written], history: &[DocumentVersion]) -> Vec<&'a Value> {
    written
        .iter()
        .filter(|w| {
            history.iter().any(|h| {
                h.version == w.version
                    && h.updated_by == w.updated_by
                    && h.updated_at == w.updated_at
            })
        })
        .map(|w| &w.updated)
        .collect()
}

impl Documents {
    /// Announces the versions of `unsure` that committed, once the
    /// database answers again (see the module's documentation).
    pub(super) async fn announce_if_stored(&self, unsure: Vec<Unsure>) {
        tracing::warn!(
            documents = unsure.len(),
            "a document turn's connection ended mid-way; asking the history whether it committed"
        );
        let stop = self.tasks.child_token();
        for doc in unsure {
            let Some(first) = doc.written.first() else {
                continue;
            };
            let (after, count) = (first.version - 1, doc.written.len() as i64);
            let store = self.store.clone();
            let history = outcome::once_answering(&self.breaker, stop.clone(), || {
                store.document_history(&doc.key, after, count)
            })
            .await;
            let Some(history) = history else {
                return; // shutdown, or the database stayed down
            };
            for updated in stored(&doc.written, &history) {
                self.announce(&doc.key.company_id, &doc.doc, updated.clone(), None)
                    .await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn written(version: i64, by: &str, at: i64) -> Written {
        Written {
            version,
            updated_by: by.into(),
            updated_at: at,
            updated: json!({ "version": version }),
        }
    }

    fn row(version: i64, by: &str, at: i64) -> DocumentVersion {
        DocumentVersion {
            version,
            changes: Default::default(),
            updated_by: by.into(),
            edited_at: at,
            updated_at: at,
        }
    }

    #[test]
    fn only_versions_written_as_this_turn_wrote_them_are_announced() {
        let turn = [written(4, "sam", 100), written(5, "olga", 100)];
        assert!(stored(&turn, &[]).is_empty(), "rolled back: nothing");
        assert_eq!(
            stored(&turn, &[row(4, "sam", 100), row(5, "olga", 100)]),
            vec![&json!({ "version": 4 }), &json!({ "version": 5 })]
        );
        assert!(
            stored(&turn, &[row(4, "ivan", 130), row(5, "sam", 131)]).is_empty(),
            "another node used the numbers after this turn rolled back"
        );
    }
}
