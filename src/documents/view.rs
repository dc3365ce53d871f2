//! The wire shapes of documents (SPEC §6), in one place so the socket and
//! HTTP APIs say the same thing: the document object, the update result, the
//! `document:updated` and `document:conflict` bodies and history entries.
//! Times are ISO-8601 strings, like event timestamps.

use serde_json::{Map, Value, json};

use super::lww::{Conflict, Status, Winner};
use super::request::DocRef;
use crate::domain::iso8601;
use crate::store::documents::{DocumentVersion, DocumentWrite, StoredDocument};

/// `{ type, id, version, data, createdAt, updatedAt, updatedBy }`; a document
/// that does not exist is version 0 with empty data and null times.
pub fn document(doc: &DocRef, stored: &StoredDocument) -> Value {
    let exists = stored.exists();
    json!({
        "type": doc.doc_type,
        "id": doc.doc_id,
        "version": stored.version,
        "data": stored.data,
        "createdAt": exists.then(|| iso8601(stored.created_at)),
        "updatedAt": exists.then(|| iso8601(stored.updated_at)),
        "updatedBy": exists.then_some(stored.updated_by.as_str()),
    })
}

/// The answer to an update, remembered for retries: `{ status, version,
/// document }`, plus `conflict` (an object, or null) when `merged`.
pub fn result(status: Status, version: i64, document: Value, conflict: Option<Value>) -> Value {
    let mut out = json!({ "status": status.as_str(), "version": version, "document": document });
    if status == Status::Merged {
        out["conflict"] = conflict.unwrap_or(Value::Null);
    }
    out
}

/// What is remembered of an update under its `clientMutationId`: its
/// outcome (`status`, `version`, and `conflict` without the values), not the
/// document, which can be as large as `DOCUMENT_MAX_BYTES`.
pub fn mutation_record(result: &Value) -> Value {
    let mut record = json!({ "status": result["status"], "version": result["version"] });
    if let Some(conflict) = result.get("conflict") {
        record["conflict"] = strip_values(conflict);
    }
    record
}

fn strip_values(conflict: &Value) -> Value {
    match conflict {
        Value::Object(c) => Value::Object(
            c.iter()
                .filter(|(k, _)| {
                    !matches!(
                        k.as_str(),
                        "originalValue" | "incomingValue" | "resolvedValue"
                    )
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The answer to a retried `clientMutationId`: the first outcome, with the
/// document as it is now (the first answer's document when nobody wrote
/// since; `document.version` says).
pub fn retry(doc: &DocRef, record: &Value, current: &StoredDocument) -> Value {
    let mut out = json!({
        "status": record["status"],
        "version": record["version"],
        "document": document(doc, current),
    });
    if let Some(conflict) = record.get("conflict") {
        out["conflict"] = strip_values(conflict);
    }
    out
}

/// `document:updated`: what one version changed.
pub fn updated(doc: &DocRef, w: &DocumentWrite) -> Value {
    json!({
        "type": doc.doc_type,
        "id": doc.doc_id,
        "version": w.version,
        "changes": w.changes,
        "updatedBy": w.updated_by,
        "updatedAt": iso8601(w.updated_at),
    })
}

/// `document:conflict`: the fields the writer disagreed on, their values
/// before, as sent and after, and for each why it went the way it did.
pub fn conflict(doc: &DocRef, c: &Conflict, version: i64, edited_at: i64) -> Value {
    let resolution: Map<String, Value> = c
        .against
        .iter()
        .map(|(field, (stored, winner))| {
            let why = json!({
                "winner": match winner { Winner::Incoming => "incoming", Winner::Stored => "stored" },
                "storedVersion": stored.version,
                "storedEditedAt": iso8601(stored.edited_at),
                "storedBy": stored.author,
                "incomingEditedAt": iso8601(edited_at),
            });
            (field.clone(), why)
        })
        .collect();
    json!({
        "type": doc.doc_type,
        "id": doc.doc_id,
        "strategy": "last-write-wins",
        "conflictedFields": c.fields,
        "originalValue": c.original,
        "incomingValue": c.incoming,
        "resolvedValue": c.resolved,
        "version": version,
        "resolution": resolution,
    })
}

/// One history entry: `{ version, changes, updatedBy, updatedAt, editedAt }`.
pub fn version(v: &DocumentVersion) -> Value {
    json!({
        "version": v.version,
        "changes": v.changes,
        "updatedBy": v.updated_by,
        "updatedAt": iso8601(v.updated_at),
        "editedAt": iso8601(v.edited_at),
    })
}
