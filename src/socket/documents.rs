//! `document:get` and `document:update` from a socket (SPEC §6): parse, check
//! the role, run [`crate::documents`], then tell the writer about conflicts
//! and the document's room about the new version.

use crate::socket::broadcast::Signal;
use serde_json::{Value, json};
use socketioxide::adapter::Adapter;

use super::Ctx;
use crate::documents::request::{DocRef, parse_update};
use crate::documents::{self, Access, Writer, view};
use crate::error::{AppError, AppResult, Code};
use crate::store::documents::StoredDocument;

/// `{ type, id }` → `{ ok, document }`; a document that does not exist is
/// version 0 with empty data, so a client can base its first update on it.
pub async fn get<A: Adapter>(ctx: &Ctx<A>, data: Value) -> AppResult<Value> {
    let doc = DocRef::from_payload(&data)?;
    let identity = ctx.session.identity();
    documents::authorize(
        &ctx.state.catalog,
        &doc.doc_type,
        identity.role,
        Access::Read,
    )?;
    let stored = documents::get(&ctx.state, &identity.company_id, &doc)
        .await?
        .unwrap_or_else(StoredDocument::absent);
    Ok(json!({ "ok": true, "document": view::document(&doc, &stored) }))
}

/// `{ type, id, baseVersion, changes, editedAt?, clientMutationId? }` →
/// `{ ok, status, version, document, conflict? }`. The conflict event and the
/// broadcast go out before the ack, so a writer holding its ack has also
/// received its `document:conflict`.
pub async fn update<A: Adapter>(ctx: &Ctx<A>, data: Value) -> AppResult<Value> {
    let max = ctx.state.config.max_payload;
    let size = serde_json::to_vec(&data).map_or(usize::MAX, |v| v.len());
    if size > max {
        return Err(AppError::new(
            Code::PayloadTooLarge,
            format!("the update is {size} bytes; the limit is {max}"),
        ));
    }
    let doc = DocRef::from_payload(&data)?;
    let identity = ctx.session.identity();
    documents::authorize(
        &ctx.state.catalog,
        &doc.doc_type,
        identity.role,
        Access::Write,
    )?;
    let req = parse_update(&data)?;
    let scope = format!("u:{}", identity.user_id);
    let writer = Writer {
        company_id: &identity.company_id,
        author: &identity.user_id,
        mutation_scope: &scope,
    };
    let out = documents::update(&ctx.state, writer, &doc, &req).await?;
    if let Some(conflict) = &out.conflict {
        let _ = ctx.socket.emit("document:conflict", conflict);
    }
    if let Some(updated) = &out.updated {
        ctx.state
            .hub()
            .emit(&Signal {
                company: identity.company_id.clone(),
                room: doc.room(),
                event: "document:updated",
                data: updated.clone(),
                exclude: Some(ctx.socket.id),
            })
            .await;
    }
    let mut ack = out.result;
    ack["ok"] = json!(true);
    if out.duplicate {
        ack["duplicate"] = json!(true);
    }
    Ok(ack)
}
