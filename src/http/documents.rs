//! `GET`/`PATCH /api/v1/documents/{type}/{id}?companyId=` and
//! `GET /api/v1/documents/{type}/{id}/history` (SPEC §6), for backends
//! holding an API key. Same semantics as the socket API; the author is the
//! body's `updatedBy` (default `api`) and `clientMutationId`s are scoped to
//! the HTTP API.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::api_key::ApiKey;
use super::schema::{DocumentHistory, DocumentPatch, DocumentReply, DocumentUpdated, ErrorReply};
use crate::documents::request::{DocRef, parse_update};
use crate::documents::{Writer, view};
use crate::domain::CompanyId;
use crate::domain::identity::valid_id;
use crate::error::{AppError, AppResult, Code};
use crate::state::AppState;

/// Author recorded for HTTP writes that do not name one.
const DEFAULT_AUTHOR: &str = "api";

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct DocQuery {
    #[param(example = "acme", pattern = r"^[A-Za-z0-9_.@-]{1,64}$")]
    company_id: String,
    /// History only: versions after this one.
    #[param(example = 0, minimum = 0)]
    after: Option<i64>,
    /// History only: 1–1000 (default 100).
    #[param(example = 100, minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

/// The path of a document route (documentation of the `(type, id)` pair
/// that [`DocRef::parse`] checks).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct DocPath {
    /// Document type.
    #[param(example = "order", max_length = 64, pattern = r"^[a-z][a-z0-9_-]*$")]
    r#type: String,
    /// Document id.
    #[param(example = "67890", pattern = r"^[A-Za-z0-9_.@-]{1,128}$")]
    id: String,
}

fn target(
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<DocQuery>, QueryRejection>,
) -> AppResult<(DocRef, DocQuery)> {
    let Path((doc_type, doc_id)) =
        path.map_err(|e| AppError::new(Code::ValidationFailed, e.body_text()))?;
    let Query(q) = query.map_err(|e| AppError::new(Code::ValidationFailed, e.body_text()))?;
    CompanyId::parse(q.company_id.as_str()).map_err(|e| {
        AppError::new(e.code, format!("`companyId`: {}", e.message))
            .with_details(json!({ "field": "companyId" }))
    })?;
    Ok((DocRef::parse(&doc_type, &doc_id)?, q))
}

/// `{ document }`, or 404 `NOT_FOUND`.
#[utoipa::path(
    get, path = "/api/v1/documents/{type}/{id}", operation_id = "getDocument", tag = "documents",
    params(DocPath, DocQuery),
    security(("apiKey" = [])),
    responses(
        (status = 200, description = "The document", body = DocumentReply),
        (status = 400, description = "Bad type, id or company", body = ErrorReply),
        (status = 401, description = "No valid API key", body = ErrorReply),
        (status = 429, description = "Too many failed key attempts", body = ErrorReply),
        (status = 404, description = "No such document", body = ErrorReply),
        (status = 503, description = "Storage unavailable", body = ErrorReply),
    )
)]
pub async fn get(
    _: ApiKey,
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<DocQuery>, QueryRejection>,
) -> AppResult<Json<Value>> {
    let (doc, q) = target(path, query)?;
    let stored = state
        .documents
        .get(&q.company_id, &doc)
        .await?
        .ok_or_else(|| {
            AppError::new(
                Code::NotFound,
                format!("no `{}` document `{}`", doc.doc_type, doc.doc_id),
            )
        })?;
    Ok(Json(json!({ "document": view::document(&doc, &stored) })))
}

/// Body `{ baseVersion, changes, editedAt?, clientMutationId?, updatedBy? }`
/// → `{ status, version, document, conflict? }`; subscribers of the
/// document's room get `document:updated`.
/// Last-write-wins update (SPEC §6).
#[utoipa::path(
    patch, path = "/api/v1/documents/{type}/{id}", operation_id = "updateDocument", tag = "documents",
    params(DocPath, DocQuery),
    request_body = DocumentPatch,
    security(("apiKey" = [])),
    responses(
        (status = 200, description = "Applied or merged", body = DocumentUpdated),
        (status = 400, description = "Bad shape, schema violation, baseVersion ahead", body = ErrorReply),
        (status = 401, description = "No valid API key", body = ErrorReply),
        (status = 429, description = "Too many failed key attempts", body = ErrorReply),
        (status = 403, description = "Type not writable", body = ErrorReply),
        (status = 409, description = "Conflict", body = ErrorReply),
        (status = 413, description = "Document too large", body = ErrorReply),
        (status = 503, description = "Storage unavailable", body = ErrorReply),
    )
)]
pub async fn patch(
    _: ApiKey,
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<DocQuery>, QueryRejection>,
    body: Bytes,
) -> AppResult<Json<Value>> {
    let (doc, q) = target(path, query)?;
    let body: Value = super::json_body(&body)?;
    crate::domain::text::refuse_nul(&body)?;
    let author = match body.get("updatedBy") {
        None | Some(Value::Null) => DEFAULT_AUTHOR.to_string(),
        Some(Value::String(s)) if valid_id(s) => s.clone(),
        Some(_) => {
            return Err(AppError::new(
                Code::ValidationFailed,
                "`updatedBy` must be 1-64 characters of letters, digits, _ . @ -",
            )
            .with_details(json!({ "field": "updatedBy" })));
        }
    };
    let req = parse_update(&body)?;
    let writer = Writer {
        company_id: &q.company_id,
        author: &author,
        mutation_scope: "k",
    };
    let out = state.documents.update(writer, &doc, &req).await?;
    if let Some(updated) = out.updated {
        state
            .documents
            .announce(&q.company_id, &doc, updated, None)
            .await;
    }
    let mut result = out.result;
    if out.duplicate {
        result["duplicate"] = json!(true);
    }
    Ok(Json(result))
}

/// `?companyId=&after=&limit=` → `{ versions: [{ version, changes,
/// updatedBy, updatedAt, editedAt }], next }` (`next` = the `after` of the
/// following page, or null).
#[utoipa::path(
    get, path = "/api/v1/documents/{type}/{id}/history", operation_id = "documentHistory", tag = "documents",
    params(DocPath, DocQuery),
    security(("apiKey" = [])),
    responses(
        (status = 200, description = "Versions, oldest first", body = DocumentHistory),
        (status = 400, description = "Bad type, id or company", body = ErrorReply),
        (status = 401, description = "No valid API key", body = ErrorReply),
        (status = 429, description = "Too many failed key attempts", body = ErrorReply),
        (status = 503, description = "Storage unavailable", body = ErrorReply),
    )
)]
pub async fn history(
    _: ApiKey,
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<DocQuery>, QueryRejection>,
) -> AppResult<Json<Value>> {
    let (doc, q) = target(path, query)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let versions = state
        .documents
        .history(&q.company_id, &doc, q.after.unwrap_or(0).max(0), limit)
        .await?;
    let next = (versions.len() as i64 == limit)
        .then(|| versions.last().map(|v| v.version))
        .flatten();
    let versions: Vec<Value> = versions.iter().map(view::version).collect();
    Ok(Json(json!({ "versions": versions, "next": next })))
}
