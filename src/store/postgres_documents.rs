//! PostgreSQL implementation of [`DocumentStore`].
//!
//! A writer locks the document's row (`SELECT … FOR UPDATE`) for the whole
//! transaction, so writers of one document on any number of nodes take turns
//! and each sees the version its predecessor committed. A new document gets a
//! placeholder row (version 0) first, so concurrent creators queue on that
//! row's lock too instead of racing to insert. The `UPDATE` is additionally a
//! compare-and-swap on the version, and `document_versions`' primary key
//! rejects any reuse of a version number.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::{Map, Value};
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{Postgres, Row, Transaction};

use super::PgStore;
use super::StoreError;
use super::documents::{
    DocKey, DocumentLock, DocumentStore, DocumentVersion, DocumentWrite, FieldMeta, StoredDocument,
    check_successor,
};

const SELECT_DOCUMENT: &str = "SELECT version, data, fields, created_at, updated_at, updated_by,
            compacted_version
     FROM documents WHERE company_id = $1 AND doc_type = $2 AND doc_id = $3";

fn document_from_row(row: &PgRow) -> Result<StoredDocument, StoreError> {
    let Json(data): Json<Map<String, Value>> = row.try_get("data")?;
    let Json(fields): Json<BTreeMap<String, FieldMeta>> = row.try_get("fields")?;
    Ok(StoredDocument {
        version: row.try_get("version")?,
        data,
        fields,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        updated_by: row.try_get("updated_by")?,
        compacted_version: row.try_get("compacted_version")?,
    })
}

async fn select_for_update(
    tx: &mut Transaction<'static, Postgres>,
    key: &DocKey,
) -> Result<Option<PgRow>, StoreError> {
    Ok(sqlx::query(&format!("{SELECT_DOCUMENT} FOR UPDATE"))
        .bind(&key.company_id)
        .bind(&key.doc_type)
        .bind(&key.doc_id)
        .fetch_optional(&mut **tx)
        .await?)
}

pub struct PgDocumentLock {
    tx: Transaction<'static, Postgres>,
    key: DocKey,
    mutation_key: Option<String>,
    current: StoredDocument,
    first: Option<Value>,
}

#[async_trait]
impl DocumentLock for PgDocumentLock {
    fn current(&self) -> &StoredDocument {
        &self.current
    }

    fn first_result(&self) -> Option<&Value> {
        self.first.as_ref()
    }

    async fn commit(
        mut self: Box<Self>,
        write: Option<&DocumentWrite>,
        result: &Value,
    ) -> Result<(), StoreError> {
        let key = &self.key;
        if let Some(w) = write {
            check_successor(&self.current, w)?;
            let updated = sqlx::query(
                "UPDATE documents SET version = $4, data = $5, fields = $6, updated_at = $7,
                        updated_by = $8, compacted_version = $10,
                        created_at = CASE WHEN version = 0 THEN $7 ELSE created_at END
                 WHERE company_id = $1 AND doc_type = $2 AND doc_id = $3 AND version = $9",
            )
            .bind(&key.company_id)
            .bind(&key.doc_type)
            .bind(&key.doc_id)
            .bind(w.version)
            .bind(Json(&w.data))
            .bind(Json(&w.fields))
            .bind(w.updated_at)
            .bind(&w.updated_by)
            .bind(self.current.version)
            .bind(w.compacted_version)
            .execute(&mut *self.tx)
            .await?;
            if updated.rows_affected() != 1 {
                return Err(StoreError::Corrupt(format!(
                    "document {}/{} moved past version {} while locked",
                    key.doc_type, key.doc_id, self.current.version
                )));
            }
            sqlx::query(
                "INSERT INTO document_versions
                   (company_id, doc_type, doc_id, version, changes, updated_by, edited_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&key.company_id)
            .bind(&key.doc_type)
            .bind(&key.doc_id)
            .bind(w.version)
            .bind(Json(&w.changes))
            .bind(&w.updated_by)
            .bind(w.edited_at)
            .bind(w.updated_at)
            .execute(&mut *self.tx)
            .await?;
        }
        if let Some(mutation) = &self.mutation_key {
            sqlx::query(
                "INSERT INTO document_mutations (company_id, doc_type, doc_id, key, result, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&key.company_id)
            .bind(&key.doc_type)
            .bind(&key.doc_id)
            .bind(mutation)
            .bind(Json(result))
            .bind(crate::domain::now_ms())
            .execute(&mut *self.tx)
            .await?;
        }
        self.tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl DocumentStore for PgStore {
    async fn document(&self, key: &DocKey) -> Result<Option<StoredDocument>, StoreError> {
        let row = sqlx::query(&format!("{SELECT_DOCUMENT} AND version > 0"))
            .bind(&key.company_id)
            .bind(&key.doc_type)
            .bind(&key.doc_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(document_from_row).transpose()
    }

    async fn lock_document(
        &self,
        key: &DocKey,
        mutation_key: Option<&str>,
    ) -> Result<Box<dyn DocumentLock>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = match select_for_update(&mut tx, key).await? {
            Some(row) => row,
            None => {
                // A concurrent creator's insert makes this one wait, then do
                // nothing; either way the row exists and can be locked.
                sqlx::query(
                    "INSERT INTO documents
                       (company_id, doc_type, doc_id, version, data, fields, created_at, updated_at, updated_by)
                     VALUES ($1, $2, $3, 0, '{}', '{}', 0, 0, '') ON CONFLICT DO NOTHING",
                )
                .bind(&key.company_id)
                .bind(&key.doc_type)
                .bind(&key.doc_id)
                .execute(&mut *tx)
                .await?;
                select_for_update(&mut tx, key).await?.ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "document {}/{} vanished",
                        key.doc_type, key.doc_id
                    ))
                })?
            }
        };
        let current = document_from_row(&row)?;
        let first = match mutation_key {
            None => None,
            Some(mutation) => sqlx::query_scalar::<_, Json<Value>>(
                "SELECT result FROM document_mutations
                 WHERE company_id = $1 AND doc_type = $2 AND doc_id = $3 AND key = $4",
            )
            .bind(&key.company_id)
            .bind(&key.doc_type)
            .bind(&key.doc_id)
            .bind(mutation)
            .fetch_optional(&mut *tx)
            .await?
            .map(|Json(v)| v),
        };
        Ok(Box::new(PgDocumentLock {
            tx,
            key: key.clone(),
            mutation_key: mutation_key.map(str::to_string),
            current,
            first,
        }))
    }

    async fn prune_mutations(&self, before: i64) -> Result<u64, StoreError> {
        Ok(
            sqlx::query("DELETE FROM document_mutations WHERE created_at < $1")
                .bind(before)
                .execute(&self.pool)
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
             WHERE company_id = $1 AND doc_type = $2 AND doc_id = $3 AND version > $4
             ORDER BY version LIMIT $5",
        )
        .bind(&key.company_id)
        .bind(&key.doc_type)
        .bind(&key.doc_id)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let Json(changes): Json<Map<String, Value>> = row.try_get("changes")?;
                Ok(DocumentVersion {
                    version: row.try_get("version")?,
                    changes,
                    updated_by: row.try_get("updated_by")?,
                    edited_at: row.try_get("edited_at")?,
                    updated_at: row.try_get("updated_at")?,
                })
            })
            .collect()
    }
}
