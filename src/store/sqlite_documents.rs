//! SQLite implementation of [`DocumentStore`].
//!
//! Writes go through the single writer connection (see `sqlite.rs`), so a
//! writer's transaction — read, decide, write — runs alone: the next writer
//! of any document waits for the pool. Reads use the reader pool. The write
//! is still a compare-and-swap on the version and the history's primary key
//! still rejects a reused version, as in PostgreSQL.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use serde_json::{Map, Value};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, Transaction};

use super::SqliteStore;
use super::StoreError;
use super::documents::{
    DocCommit, DocKey, DocumentStore, DocumentVersion, DocumentWrite, DocumentsLock, FieldMeta,
    Held, LockWait, StoredDocument, Wanted, check_commits, check_distinct, check_successor,
    from_text, to_text,
};

const SELECT_DOCUMENT: &str = "SELECT version, data, fields, created_at, updated_at, updated_by,
            compacted_version
     FROM documents WHERE company_id = ? AND doc_type = ? AND doc_id = ? AND version > 0";

fn document_from_row(row: &SqliteRow) -> Result<StoredDocument, StoreError> {
    let data: String = row.try_get("data")?;
    let fields: String = row.try_get("fields")?;
    Ok(StoredDocument {
        version: row.try_get("version")?,
        data: from_text::<Map<String, Value>>(&data)?,
        fields: from_text::<BTreeMap<String, FieldMeta>>(&fields)?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        updated_by: row.try_get("updated_by")?,
        compacted_version: row.try_get("compacted_version")?,
    })
}

pub struct SqliteDocumentsLock {
    tx: Transaction<'static, Sqlite>,
    held: Vec<Held>,
}

/// Writes `w` over `current` (the row as it stands in this transaction).
async fn write(
    tx: &mut Transaction<'static, Sqlite>,
    key: &DocKey,
    current: &StoredDocument,
    w: &DocumentWrite,
) -> Result<(), StoreError> {
    check_successor(current, w)?;
    let (data, fields) = (to_text(&w.data)?, to_text(&w.fields)?);
    let written = if current.exists() {
        sqlx::query(
            "UPDATE documents SET version = ?, data = ?, fields = ?, updated_at = ?, updated_by = ?,
                    compacted_version = ?
             WHERE company_id = ? AND doc_type = ? AND doc_id = ? AND version = ?",
        )
        .bind(w.version)
        .bind(data)
        .bind(fields)
        .bind(w.updated_at)
        .bind(&w.updated_by)
        .bind(w.compacted_version)
        .bind(&key.company_id)
        .bind(&key.doc_type)
        .bind(&key.doc_id)
        .bind(current.version)
        .execute(&mut **tx)
        .await?
    } else {
        sqlx::query(
            "INSERT INTO documents
               (company_id, doc_type, doc_id, version, data, fields, created_at, updated_at, updated_by,
                compacted_version)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&key.company_id)
        .bind(&key.doc_type)
        .bind(&key.doc_id)
        .bind(w.version)
        .bind(data)
        .bind(fields)
        .bind(w.updated_at)
        .bind(w.updated_at)
        .bind(&w.updated_by)
        .bind(w.compacted_version)
        .execute(&mut **tx)
        .await?
    };
    if written.rows_affected() != 1 {
        return Err(StoreError::Corrupt(format!(
            "document {}/{} moved past version {} while locked",
            key.doc_type, key.doc_id, current.version
        )));
    }
    sqlx::query(
        "INSERT INTO document_versions
           (company_id, doc_type, doc_id, version, changes, updated_by, edited_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&key.company_id)
    .bind(&key.doc_type)
    .bind(&key.doc_id)
    .bind(w.version)
    .bind(to_text(&w.changes)?)
    .bind(&w.updated_by)
    .bind(w.edited_at)
    .bind(w.updated_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[async_trait]
impl DocumentsLock for SqliteDocumentsLock {
    fn held(&self) -> &[Held] {
        &self.held
    }

    async fn commit(mut self: Box<Self>, commits: &[DocCommit]) -> Result<(), StoreError> {
        check_commits(&self.held, commits)?;
        let now = crate::domain::now_ms();
        for (h, c) in self.held.iter().zip(commits) {
            let mut current = h.current.clone();
            for w in &c.writes {
                write(&mut self.tx, &h.key, &current, w).await?;
                // The next write follows this one (and the row now exists).
                current.version = w.version;
                if current.created_at == 0 {
                    current.created_at = w.updated_at;
                }
            }
            for (mutation, result) in &c.results {
                sqlx::query(
                    "INSERT INTO document_mutations (company_id, doc_type, doc_id, key, result, created_at)
                     VALUES (?, ?, ?, ?, ?, ?)",
                )
                .bind(&h.key.company_id)
                .bind(&h.key.doc_type)
                .bind(&h.key.doc_id)
                .bind(mutation)
                .bind(to_text(result)?)
                .bind(now)
                .execute(&mut *self.tx)
                .await?;
            }
        }
        self.tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl DocumentStore for SqliteStore {
    async fn document(&self, key: &DocKey) -> Result<Option<StoredDocument>, StoreError> {
        let row = sqlx::query(SELECT_DOCUMENT)
            .bind(&key.company_id)
            .bind(&key.doc_type)
            .bind(&key.doc_id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(document_from_row).transpose()
    }

    /// The single writer connection holds every document at once, so
    /// [`LockWait::SkipLocked`] leaves nothing out.
    async fn lock_documents(
        &self,
        wanted: Vec<Wanted>,
        _wait: LockWait,
    ) -> Result<Box<dyn DocumentsLock>, StoreError> {
        check_distinct(&wanted)?;
        let mut tx = self.writer.begin().await?;
        let mut held = Vec::with_capacity(wanted.len());
        for Wanted { key, mutation_keys } in wanted {
            let current = match sqlx::query(SELECT_DOCUMENT)
                .bind(&key.company_id)
                .bind(&key.doc_type)
                .bind(&key.doc_id)
                .fetch_optional(&mut *tx)
                .await?
            {
                Some(row) => document_from_row(&row)?,
                None => StoredDocument::absent(),
            };
            let mut firsts = HashMap::new();
            for mutation in &mutation_keys {
                let first = sqlx::query_scalar::<_, String>(
                    "SELECT result FROM document_mutations
                     WHERE company_id = ? AND doc_type = ? AND doc_id = ? AND key = ?",
                )
                .bind(&key.company_id)
                .bind(&key.doc_type)
                .bind(&key.doc_id)
                .bind(mutation)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(text) = first {
                    firsts.insert(mutation.clone(), from_text::<Value>(&text)?);
                }
            }
            held.push(Held {
                key,
                current,
                firsts,
                mutation_keys,
            });
        }
        Ok(Box::new(SqliteDocumentsLock { tx, held }))
    }

    async fn prune_mutations(&self, before: i64) -> Result<u64, StoreError> {
        Ok(
            sqlx::query("DELETE FROM document_mutations WHERE created_at < ?")
                .bind(before)
                .execute(&self.writer)
                .await?
                .rows_affected(),
        )
    }

    async fn document_history(
        &self,
        key: &DocKey,
        after: i64,
        limit: i64,
    ) -> Result<Vec<DocumentVersion>, StoreError> {
        let rows = sqlx::query(
            "SELECT version, changes, updated_by, edited_at, updated_at FROM document_versions
             WHERE company_id = ? AND doc_type = ? AND doc_id = ? AND version > ?
             ORDER BY version LIMIT ?",
        )
        .bind(&key.company_id)
        .bind(&key.doc_type)
        .bind(&key.doc_id)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                let changes: String = row.try_get("changes")?;
                Ok(DocumentVersion {
                    version: row.try_get("version")?,
                    changes: from_text(&changes)?,
                    updated_by: row.try_get("updated_by")?,
                    edited_at: row.try_get("edited_at")?,
                    updated_at: row.try_get("updated_at")?,
                })
            })
            .collect()
    }
}
