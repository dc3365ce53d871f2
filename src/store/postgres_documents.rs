//! PostgreSQL implementation of [`DocumentStore`].
//!
//! A writer locks the document's row (`SELECT … FOR UPDATE`) for the whole
//! transaction, so writers of one document on any number of nodes take turns
//! and each sees the version its predecessor committed. A new document gets a
//! placeholder row (version 0) first, so concurrent creators queue on that
//! row's lock too instead of racing to insert. The `UPDATE` is additionally a
//! compare-and-swap on the version, and `document_versions`' primary key
//! rejects any reuse of a version number.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use serde_json::{Map, Value};
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{Postgres, Row, Transaction};

use super::PgStore;
use super::StoreError;
use super::documents::{
    DocKey, DocumentLock, DocumentStore, DocumentVersion, DocumentWrite, FieldMeta, StoredDocument,
    check_chain, to_text,
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
    mutation_keys: Vec<String>,
    current: StoredDocument,
    firsts: HashMap<String, Value>,
}

#[async_trait]
impl DocumentLock for PgDocumentLock {
    fn current(&self) -> &StoredDocument {
        &self.current
    }

    fn mutation_keys(&self) -> &[String] {
        &self.mutation_keys
    }

    fn first_result_of(&self, mutation_key: &str) -> Option<&Value> {
        self.firsts.get(mutation_key)
    }

    /// One statement for all of it: the document row moves to the last
    /// version (a compare-and-swap on the locked one), every version gets
    /// its history row, every mutation its result.
    async fn commit_all(
        mut self: Box<Self>,
        writes: &[DocumentWrite],
        results: &[(String, Value)],
    ) -> Result<(), StoreError> {
        check_chain(&self.current, writes)?;
        let key = &self.key;
        let now = crate::domain::now_ms();
        let changes = writes
            .iter()
            .map(|w| to_text(&w.changes))
            .collect::<Result<Vec<_>, _>>()?;
        let mutation_results = results
            .iter()
            .map(|(_, r)| to_text(r))
            .collect::<Result<Vec<_>, _>>()?;
        let last = writes.last();
        let (data, fields) = match last {
            Some(w) => (Some(to_text(&w.data)?), Some(to_text(&w.fields)?)),
            None => (None, None),
        };
        let moved: i64 = sqlx::query_scalar(
            "WITH d AS (
               UPDATE documents SET version = $4, data = $5::jsonb, fields = $6::jsonb, updated_at = $7,
                      updated_by = $8, compacted_version = $10,
                      created_at = CASE WHEN version = 0 THEN $11 ELSE created_at END
               WHERE $5::text IS NOT NULL
                 AND company_id = $1 AND doc_type = $2 AND doc_id = $3 AND version = $9
               RETURNING 1
             ), v AS (
               INSERT INTO document_versions
                 (company_id, doc_type, doc_id, version, changes, updated_by, edited_at, updated_at)
               SELECT $1, $2, $3, v, c::jsonb, ub, ea, ua
               FROM UNNEST($12::int8[], $13::text[], $14::text[], $15::int8[], $16::int8[]) AS u(v, c, ub, ea, ua)
             ), m AS (
               INSERT INTO document_mutations (company_id, doc_type, doc_id, key, result, created_at)
               SELECT $1, $2, $3, k, r::jsonb, $17 FROM UNNEST($18::text[], $19::text[]) AS u(k, r)
             )
             SELECT count(*) FROM d",
        )
        .bind(&key.company_id)
        .bind(&key.doc_type)
        .bind(&key.doc_id)
        .bind(last.map_or(0, |w| w.version))
        .bind(data)
        .bind(fields)
        .bind(last.map_or(0, |w| w.updated_at))
        .bind(last.map_or("", |w| w.updated_by.as_str()))
        .bind(self.current.version)
        .bind(last.map_or(0, |w| w.compacted_version))
        .bind(writes.first().map_or(0, |w| w.updated_at))
        .bind(writes.iter().map(|w| w.version).collect::<Vec<_>>())
        .bind(changes)
        .bind(writes.iter().map(|w| w.updated_by.as_str()).collect::<Vec<_>>())
        .bind(writes.iter().map(|w| w.edited_at).collect::<Vec<_>>())
        .bind(writes.iter().map(|w| w.updated_at).collect::<Vec<_>>())
        .bind(now)
        .bind(results.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>())
        .bind(mutation_results)
        .fetch_one(&mut *self.tx)
        .await?;
        if last.is_some() && moved != 1 {
            // Dropping the transaction rolls the history rows back too.
            return Err(StoreError::Corrupt(format!(
                "document {}/{} moved past version {} while locked",
                key.doc_type, key.doc_id, self.current.version
            )));
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

    async fn lock_document_for(
        &self,
        key: &DocKey,
        mutation_keys: Vec<String>,
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
        let mut firsts = HashMap::new();
        if !mutation_keys.is_empty() {
            let rows: Vec<(String, Json<Value>)> = sqlx::query_as(
                "SELECT key, result FROM document_mutations
                 WHERE company_id = $1 AND doc_type = $2 AND doc_id = $3 AND key = ANY($4)",
            )
            .bind(&key.company_id)
            .bind(&key.doc_type)
            .bind(&key.doc_id)
            .bind(&mutation_keys)
            .fetch_all(&mut *tx)
            .await?;
            firsts.extend(rows.into_iter().map(|(k, Json(v))| (k, v)));
        }
        Ok(Box::new(PgDocumentLock {
            tx,
            key: key.clone(),
            mutation_keys,
            current,
            firsts,
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
