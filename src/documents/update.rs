//! The update path (SPEC §6): lock the document, merge last-write-wins,
//! check the result against the limits and the schema, commit the next
//! version with its history row and mutation id.

use serde_json::{Value, json};

use super::request::{DocRef, UpdateRequest};
use super::{Documents, Updated, Writer, bounds, lww, store_error, view};
use crate::domain::now_ms;
use crate::error::{AppError, AppResult, Code};
use crate::store::documents::{DocumentWrite, StoredDocument};

/// What an update decided while holding the lock.
struct Plan {
    write: Option<DocumentWrite>,
    result: Value,
    conflict: Option<Value>,
}

impl Documents {
    /// Applies one update. Refusals (future base, size, schema) write nothing.
    pub async fn update(
        &self,
        writer: Writer<'_>,
        doc: &DocRef,
        req: &UpdateRequest,
    ) -> AppResult<Updated> {
        let mutation_key = req
            .mutation_id
            .as_ref()
            .map(|id| format!("{}:{id}", writer.mutation_scope));
        let lock = self
            .store
            .lock_document(&doc.key(writer.company_id), mutation_key.as_deref())
            .await
            .map_err(store_error)?;
        if let Some(first) = lock.first_result() {
            // Dropping the lock rolls back: a retry writes nothing.
            return Ok(Updated {
                result: view::retry(doc, first, lock.current()),
                updated: None,
                conflict: None,
                duplicate: true,
            });
        }
        let plan = self.plan(doc, lock.current(), writer.author, req)?;
        // A retry needs the outcome, not a copy of the document (see view::retry).
        let record = view::mutation_record(&plan.result);
        lock.commit(plan.write.as_ref(), &record)
            .await
            .map_err(store_error)?;
        Ok(Updated {
            updated: plan.write.as_ref().map(|w| view::updated(doc, w)),
            result: plan.result,
            conflict: plan.conflict,
            duplicate: false,
        })
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
