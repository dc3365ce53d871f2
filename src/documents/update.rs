//! The update path (SPEC §6): lock the document, merge last-write-wins,
//! check the result against the limits and the schema, commit the next
//! version with its history row and mutation id. Updates of one document
//! queued on this node meanwhile share the turn (see `hot`).

use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::request::{DocRef, UpdateRequest};
use super::{Documents, Updated, Writer, bounds, lww, store_error, view};
use crate::domain::now_ms;
use crate::error::{AppError, AppResult, Code};
use crate::store::StoreError;
use crate::store::documents::{DocKey, DocumentWrite, StoredDocument};

/// A turn taking longer is given up (its transaction rolled back) and the
/// database treated as down: its waiters must not hang on a dead link.
const TURN_TIMEOUT: Duration = Duration::from_secs(5);

/// What an update decided while holding the lock.
struct Plan {
    write: Option<DocumentWrite>,
    result: Value,
    conflict: Option<Value>,
}

/// An update waiting for its document's turn.
pub(super) struct Queued {
    doc: DocRef,
    author: String,
    /// The scoped `clientMutationId`.
    mutation_key: Option<String>,
    req: UpdateRequest,
    reply: oneshot::Sender<AppResult<Updated>>,
}

impl Documents {
    /// Applies one update. Refusals (future base, size, schema) write nothing.
    /// Updates of the same document arriving meanwhile on this node are
    /// merged in arrival order in the same turn (see `hot`).
    pub async fn update(
        &self,
        writer: Writer<'_>,
        doc: &DocRef,
        req: &UpdateRequest,
    ) -> AppResult<Updated> {
        let key = doc.key(writer.company_id);
        let (reply, answer) = oneshot::channel();
        let item = Queued {
            doc: doc.clone(),
            author: writer.author.to_string(),
            mutation_key: req
                .mutation_id
                .as_ref()
                .map(|id| format!("{}:{id}", writer.mutation_scope)),
            req: req.clone(),
            reply,
        };
        if self.hot.push(&key, item) {
            // Its own task: a caller that goes away (its connection closed)
            // must not stop the turn the others wait on.
            let this = self.clone();
            self.tasks
                .spawn_until_done(async move { this.turns(key).await });
        }
        answer.await.unwrap_or_else(|_| {
            Err(AppError::new(
                Code::Unavailable,
                "the document's update was interrupted; try again",
            ))
        })
    }

    /// Runs the document's turns until nothing waits.
    async fn turns(&self, key: DocKey) {
        /// Should a turn panic, its waiters are told instead of waiting forever.
        struct Abandon<'a>(&'a Documents, &'a DocKey);
        impl Drop for Abandon<'_> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    self.0.hot.abandon(self.1);
                }
            }
        }
        let _guard = Abandon(self, &key);
        while let Some(group) = self.hot.next(&key) {
            let shared = if group.len() > 1 {
                self.apply(&key, &group).await.ok()
            } else {
                None
            };
            match shared {
                Some(outcomes) => {
                    for (item, outcome) in group.into_iter().zip(outcomes) {
                        let _ = item.reply.send(outcome);
                    }
                }
                // Alone, or the shared commit failed: each update on its
                // own, so one cannot fail the others.
                None => {
                    for item in group {
                        let outcome = match self.apply(&key, std::slice::from_ref(&item)).await {
                            Ok(mut outcomes) => outcomes.pop().unwrap_or_else(|| {
                                Err(AppError::internal("an update produced no outcome"))
                            }),
                            Err(e) => Err(e),
                        };
                        let _ = item.reply.send(outcome);
                    }
                }
            }
        }
    }

    /// One turn under the breaker: refused at once while the database is
    /// known to be down, given up after [`TURN_TIMEOUT`].
    async fn apply(&self, key: &DocKey, group: &[Queued]) -> AppResult<Vec<AppResult<Updated>>> {
        self.breaker
            .run(TURN_TIMEOUT, self.turn(key, group))
            .await
            .map_err(store_error)
    }

    /// One turn: lock, merge each update in order against the state the one
    /// before it left, commit every version and mutation result at once.
    /// An update refused (future base, size, schema) writes nothing; a retry
    /// of a mutation id answers with its first result.
    async fn turn(
        &self,
        key: &DocKey,
        group: &[Queued],
    ) -> Result<Vec<AppResult<Updated>>, StoreError> {
        let mut keys: Vec<String> = Vec::new();
        for item in group {
            if let Some(k) = &item.mutation_key
                && !keys.contains(k)
            {
                keys.push(k.clone());
            }
        }
        let lock = self.store.lock_document_for(key, keys).await?;
        let mut state = lock.current().clone();
        let mut writes: Vec<DocumentWrite> = Vec::new();
        let mut records: Vec<(String, Value)> = Vec::new();
        let mut outcomes = Vec::with_capacity(group.len());
        for item in group {
            let earlier = item.mutation_key.as_ref().and_then(|k| {
                lock.first_result_of(k)
                    .or_else(|| records.iter().find(|(r, _)| r == k).map(|(_, v)| v))
            });
            if let Some(first) = earlier {
                outcomes.push(Ok(Updated {
                    result: view::retry(&item.doc, first, &state),
                    updated: None,
                    conflict: None,
                    duplicate: true,
                }));
                continue;
            }
            let plan = match self.plan(&item.doc, &state, &item.author, &item.req) {
                Ok(plan) => plan,
                Err(e) => {
                    outcomes.push(Err(e));
                    continue;
                }
            };
            if let Some(k) = &item.mutation_key {
                // A retry needs the outcome, not a copy of the document (see view::retry).
                records.push((k.clone(), view::mutation_record(&plan.result)));
            }
            let updated = plan.write.as_ref().map(|w| view::updated(&item.doc, w));
            if let Some(w) = plan.write {
                state = written(&state, &w);
                writes.push(w);
            }
            outcomes.push(Ok(Updated {
                updated,
                result: plan.result,
                conflict: plan.conflict,
                duplicate: false,
            }));
        }
        lock.commit_all(&writes, &records).await?;
        Ok(outcomes)
    }

    /// Merges `req` into `current`, checks the result and builds the answer.
    fn plan(
        &self,
        doc: &DocRef,
        current: &StoredDocument,
        author: &str,
        req: &UpdateRequest,
    ) -> AppResult<Plan> {
        let now = now_ms();
        bounds::check_update(self.limits, current, req)?;
        let merged = lww::merge(
            current,
            &lww::Update {
                base_version: req.base_version,
                changes: &req.changes,
                edited_at: req.edited_at,
                author,
                now,
            },
        )
        .map_err(future_base)?;
        let write = (!merged.changes.is_empty()).then(|| {
            let mut fields = merged.fields;
            let dropped = bounds::compact(&merged.data, &mut fields, now, self.limits);
            DocumentWrite {
                version: merged.version,
                data: merged.data,
                fields,
                changes: merged.changes,
                updated_by: author.to_string(),
                edited_at: merged.edited_at,
                updated_at: now,
                compacted_version: current.compacted_version.max(dropped),
            }
        });
        let after = match &write {
            Some(w) => {
                self.check_document(doc, w)?;
                written(current, w)
            }
            None => current.clone(),
        };
        let conflict = merged
            .conflict
            .as_ref()
            .map(|c| view::conflict(doc, c, merged.version, merged.edited_at));
        if conflict.is_some() {
            crate::metrics::conflict();
        }
        let result = view::result(
            merged.status,
            merged.version,
            view::document(doc, &after),
            conflict.clone(),
        );
        Ok(Plan {
            write,
            result,
            conflict,
        })
    }

    /// The merged document must fit the limits (checked first, as sizes are
    /// everywhere) and its type's schema.
    fn check_document(&self, doc: &DocRef, w: &DocumentWrite) -> AppResult<()> {
        bounds::check_written(self.limits, w)?;
        match self.catalog.document(&doc.doc_type) {
            Some(spec) => spec.validate(&doc.doc_type, &Value::Object(w.data.clone())),
            None => Ok(()),
        }
    }
}

fn future_base(f: lww::FutureBase) -> AppError {
    AppError::new(
        Code::Conflict,
        format!(
            "baseVersion {} is ahead of the document's version {}; fetch it again",
            f.base_version, f.current
        ),
    )
    .with_details(json!({ "field": "baseVersion", "version": f.current }))
}

/// The document as stored once `w` is committed over `current`.
fn written(current: &StoredDocument, w: &DocumentWrite) -> StoredDocument {
    StoredDocument {
        version: w.version,
        data: w.data.clone(),
        fields: w.fields.clone(),
        created_at: if current.exists() {
            current.created_at
        } else {
            w.updated_at
        },
        updated_at: w.updated_at,
        updated_by: w.updated_by.clone(),
        compacted_version: w.compacted_version,
    }
}
