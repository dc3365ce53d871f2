//! `document:get` and `document:update` (SPEC §6): check the role, run the
//! documents service, then tell the writer about conflicts and the
//! document's room about the new version.

use std::sync::Arc;

use serde_json::Value;

use super::reply::{Document, Reply, Updated};
use super::request::DocumentUpdate;
use crate::documents::request::DocRef;
use crate::documents::{Access, Writer, authorize, view};
use crate::error::AppResult;
use crate::session::Session;
use crate::state::AppState;
use crate::store::documents::StoredDocument;

/// `{ type, id }` → `{ ok, document }`; a document that does not exist is
/// version 0 with empty data, so a client can base its first update on it.
pub async fn get(state: &AppState, session: &Arc<Session>, doc: DocRef) -> AppResult<Reply> {
    let identity = session.identity();
    let docs = &state.documents;
    authorize(docs.catalog(), &doc.doc_type, identity.role, Access::Read)?;
    let stored = docs
        .get(&identity.company_id, &doc)
        .await?
        .unwrap_or_else(StoredDocument::absent);
    Ok(Reply::Document(Document {
        ok: true,
        document: view::document(&doc, &stored),
    }))
}

/// → `{ ok, status, version, document, conflict? }`. The conflict message
/// and the broadcast go out before the reply, so a writer holding its reply
/// has also received its `document:conflict`.
pub async fn update(
    state: &AppState,
    session: &Arc<Session>,
    req: DocumentUpdate,
) -> AppResult<Reply> {
    let DocumentUpdate { doc, update } = req;
    let identity = session.identity();
    let docs = &state.documents;
    authorize(docs.catalog(), &doc.doc_type, identity.role, Access::Write)?;
    let scope = format!("u:{}", identity.user_id);
    let writer = Writer {
        company_id: &identity.company_id,
        author: &identity.user_id,
        mutation_scope: &scope,
    };
    let out = docs.update(writer, &doc, &update).await?;
    if let (Some(conflict), Some(sink)) = (&out.conflict, session.sink()) {
        let _ = sink.emit_one("document:conflict", conflict);
    }
    if let Some(updated) = out.updated {
        docs.announce(&identity.company_id, &doc, updated, Some(session.id))
            .await;
    }
    let result = match out.result {
        Value::Object(map) => map,
        _ => Default::default(),
    };
    Ok(Reply::Updated(Updated {
        ok: true,
        result,
        duplicate: out.duplicate,
    }))
}
