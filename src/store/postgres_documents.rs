//! PostgreSQL implementation of [`DocumentStore`].
//!
//! A writer locks the document's row (`SELECT … FOR UPDATE`) for the whole
//! transaction, so writers of one document on any number of nodes take turns
//! and each sees the version its predecessor committed. A new document gets a
//! placeholder row (version 0) first, so concurrent creators queue on that
//! row's lock too instead of racing to insert. The `UPDATE` is additionally a
//! compare-and-swap on the version, and `document_versions`' primary key
//! rejects any reuse of a version number.

use std::collections::{BTreeMap, HashMap, HashSet};

use async_trait::async_trait;
use serde_json::{Map, Value};
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{Postgres, Row, Transaction};

use super::PgStore;
use super::StoreError;
use super::documents::{
    DocCommit, DocKey, DocumentStore, DocumentVersion, DocumentsLock, FieldMeta, Held, LockWait,
    StoredDocument, Wanted, check_commits, check_distinct, to_text,
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

/// The columns of a locked row, with its key.
const SELECT_LOCKED: &str =
    "SELECT d.company_id, d.doc_type, d.doc_id, d.version, d.data, d.fields,
            d.created_at, d.updated_at, d.updated_by, d.compacted_version
     FROM documents d
     JOIN UNNEST($1::text[], $2::text[], $3::text[]) AS u(c, t, i)
       ON d.company_id = u.c AND d.doc_type = u.t AND d.doc_id = u.i
     ORDER BY d.company_id, d.doc_type, d.doc_id";

fn key_from_row(row: &PgRow) -> Result<DocKey, StoreError> {
    Ok(DocKey {
        company_id: row.try_get("company_id")?,
        doc_type: row.try_get("doc_type")?,
        doc_id: row.try_get("doc_id")?,
    })
}

/// The key columns of `keys`, as three arrays for `UNNEST`.
fn columns<'a>(
    keys: impl Iterator<Item = &'a DocKey>,
) -> (Vec<&'a str>, Vec<&'a str>, Vec<&'a str>) {
    let mut cols = (Vec::new(), Vec::new(), Vec::new());
    for k in keys {
        cols.0.push(k.company_id.as_str());
        cols.1.push(k.doc_type.as_str());
        cols.2.push(k.doc_id.as_str());
    }
    cols
}

/// Locks the existing rows of `keys` in key order (the order every writer
/// uses, so two batches cannot deadlock on existing rows).
async fn lock_rows(
    tx: &mut Transaction<'static, Postgres>,
    keys: &[&DocKey],
    wait: LockWait,
) -> Result<HashMap<DocKey, StoredDocument>, StoreError> {
    let skip = match wait {
        LockWait::Wait => "",
        LockWait::SkipLocked => " SKIP LOCKED",
    };
    let (c, t, i) = columns(keys.iter().copied());
    let rows = sqlx::query(&format!("{SELECT_LOCKED} FOR UPDATE OF d{skip}"))
        .bind(c)
        .bind(t)
        .bind(i)
        .fetch_all(&mut **tx)
        .await?;
    rows.iter()
        .map(|row| Ok((key_from_row(row)?, document_from_row(row)?)))
        .collect()
}

/// Inserts a placeholder row (version 0) for each of `keys` that has no
/// row, so creators queue on a row lock too; returns the ones inserted
/// (held by this transaction). A concurrent creator's insert makes this
/// wait, then insert nothing for that key.
async fn insert_placeholders(
    tx: &mut Transaction<'static, Postgres>,
    keys: &[&DocKey],
) -> Result<HashSet<DocKey>, StoreError> {
    let (c, t, i) = columns(keys.iter().copied());
    let rows = sqlx::query(
        "INSERT INTO documents
           (company_id, doc_type, doc_id, version, data, fields, created_at, updated_at, updated_by)
         SELECT c, t, i, 0, '{}', '{}', 0, 0, ''
         FROM UNNEST($1::text[], $2::text[], $3::text[]) AS u(c, t, i)
         WHERE NOT EXISTS (
           SELECT 1 FROM documents d WHERE d.company_id = u.c AND d.doc_type = u.t AND d.doc_id = u.i)
         ORDER BY c, t, i
         ON CONFLICT DO NOTHING
         RETURNING company_id, doc_type, doc_id",
    )
    .bind(c)
    .bind(t)
    .bind(i)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter().map(key_from_row).collect()
}

/// The remembered results of those of `held`'s mutation keys already used.
async fn first_results(
    tx: &mut Transaction<'static, Postgres>,
    held: &mut [Held],
) -> Result<(), StoreError> {
    let asked: Vec<(&DocKey, &str)> = held
        .iter()
        .flat_map(|h| h.mutation_keys.iter().map(move |m| (&h.key, m.as_str())))
        .collect();
    if asked.is_empty() {
        return Ok(());
    }
    let (c, t, i) = columns(asked.iter().map(|a| a.0));
    let m: Vec<&str> = asked.iter().map(|a| a.1).collect();
    let rows = sqlx::query(
        "SELECT m.company_id, m.doc_type, m.doc_id, m.key, m.result FROM document_mutations m
         JOIN UNNEST($1::text[], $2::text[], $3::text[], $4::text[]) AS u(c, t, i, k)
           ON m.company_id = u.c AND m.doc_type = u.t AND m.doc_id = u.i AND m.key = u.k",
    )
    .bind(c)
    .bind(t)
    .bind(i)
    .bind(m)
    .fetch_all(&mut **tx)
    .await?;
    let mut by_key: HashMap<DocKey, &mut Held> =
        held.iter_mut().map(|h| (h.key.clone(), h)).collect();
    for row in &rows {
        let Json(result): Json<Value> = row.try_get("result")?;
        if let Some(h) = by_key.get_mut(&key_from_row(row)?) {
            h.firsts.insert(row.try_get("key")?, result);
        }
    }
    Ok(())
}

pub struct PgDocumentsLock {
    tx: Transaction<'static, Postgres>,
    held: Vec<Held>,
}

#[async_trait]
impl DocumentsLock for PgDocumentsLock {
    fn held(&self) -> &[Held] {
        &self.held
    }

    /// One statement for all of it: every written document's row moves to
    /// its last version (a compare-and-swap on the locked one), every
    /// version gets its history row, every mutation its result.
    async fn commit(mut self: Box<Self>, commits: &[DocCommit]) -> Result<(), StoreError> {
        check_commits(&self.held, commits)?;
        let now = crate::domain::now_ms();
        let mut docs = Rows::default();
        let mut versions = Rows::default();
        let mut mutations = Rows::default();
        for (h, c) in self.held.iter().zip(commits) {
            if let (Some(first), Some(last)) = (c.writes.first(), c.writes.last()) {
                docs.key(&h.key);
                docs.ints[0].push(last.version);
                docs.texts[0].push(to_text(&last.data)?);
                docs.texts[1].push(to_text(&last.fields)?);
                docs.ints[1].push(last.updated_at);
                docs.texts[2].push(last.updated_by.clone());
                docs.ints[2].push(h.current.version);
                docs.ints[3].push(last.compacted_version);
                docs.ints[4].push(first.updated_at);
            }
            for w in &c.writes {
                versions.key(&h.key);
                versions.ints[0].push(w.version);
                versions.texts[0].push(to_text(&w.changes)?);
                versions.texts[1].push(w.updated_by.clone());
                versions.ints[1].push(w.edited_at);
                versions.ints[2].push(w.updated_at);
            }
            for (k, r) in &c.results {
                mutations.key(&h.key);
                mutations.texts[0].push(k.clone());
                mutations.texts[1].push(to_text(r)?);
            }
        }
        let expected = docs.len() as i64;
        let moved: i64 = sqlx::query_scalar(
            "WITH d AS (
               UPDATE documents AS d SET version = u.v, data = u.data::jsonb, fields = u.fields::jsonb,
                      updated_at = u.ua, updated_by = u.ub, compacted_version = u.cv,
                      created_at = CASE WHEN d.version = 0 THEN u.ca ELSE d.created_at END
               FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[], $6::text[],
                           $7::int8[], $8::text[], $9::int8[], $10::int8[], $11::int8[])
                    AS u(c, t, i, v, data, fields, ua, ub, ov, cv, ca)
               WHERE d.company_id = u.c AND d.doc_type = u.t AND d.doc_id = u.i AND d.version = u.ov
               RETURNING 1
             ), v AS (
               INSERT INTO document_versions
                 (company_id, doc_type, doc_id, version, changes, updated_by, edited_at, updated_at)
               SELECT c, t, i, v, ch::jsonb, ub, ea, ua
               FROM UNNEST($12::text[], $13::text[], $14::text[], $15::int8[], $16::text[], $17::text[],
                           $18::int8[], $19::int8[]) AS u(c, t, i, v, ch, ub, ea, ua)
             ), m AS (
               INSERT INTO document_mutations (company_id, doc_type, doc_id, key, result, created_at)
               SELECT c, t, i, k, r::jsonb, $25
               FROM UNNEST($20::text[], $21::text[], $22::text[], $23::text[], $24::text[]) AS u(c, t, i, k, r)
             )
             SELECT count(*) FROM d",
        )
        .bind(&docs.keys.0)
        .bind(&docs.keys.1)
        .bind(&docs.keys.2)
        .bind(&docs.ints[0])
        .bind(&docs.texts[0])
        .bind(&docs.texts[1])
        .bind(&docs.ints[1])
        .bind(&docs.texts[2])
        .bind(&docs.ints[2])
        .bind(&docs.ints[3])
        .bind(&docs.ints[4])
        .bind(&versions.keys.0)
        .bind(&versions.keys.1)
        .bind(&versions.keys.2)
        .bind(&versions.ints[0])
        .bind(&versions.texts[0])
        .bind(&versions.texts[1])
        .bind(&versions.ints[1])
        .bind(&versions.ints[2])
        .bind(&mutations.keys.0)
        .bind(&mutations.keys.1)
        .bind(&mutations.keys.2)
        .bind(&mutations.texts[0])
        .bind(&mutations.texts[1])
        .bind(now)
        .fetch_one(&mut *self.tx)
        .await?;
        if moved != expected {
            // Dropping the transaction rolls the history rows back too.
            return Err(StoreError::Corrupt(format!(
                "{} of {expected} documents moved past their version while locked",
                expected - moved
            )));
        }
        self.tx.commit().await?;
        Ok(())
    }
}

/// Columns for one `UNNEST`: the document key and the other values.
#[derive(Default)]
struct Rows {
    keys: (Vec<String>, Vec<String>, Vec<String>),
    ints: [Vec<i64>; 5],
    texts: [Vec<String>; 3],
}

impl Rows {
    fn key(&mut self, k: &DocKey) {
        self.keys.0.push(k.company_id.clone());
        self.keys.1.push(k.doc_type.clone());
        self.keys.2.push(k.doc_id.clone());
    }

    fn len(&self) -> usize {
        self.keys.0.len()
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

    async fn lock_documents(
        &self,
        wanted: Vec<Wanted>,
        wait: LockWait,
    ) -> Result<Box<dyn DocumentsLock>, StoreError> {
        check_distinct(&wanted)?;
        let mut tx = self.pool.begin().await?;
        let keys: Vec<&DocKey> = wanted.iter().map(|w| &w.key).collect();
        let mut found = lock_rows(&mut tx, &keys, wait).await?;
        let rest: Vec<&DocKey> = keys
            .iter()
            .copied()
            .filter(|k| !found.contains_key(*k))
            .collect();
        if !rest.is_empty() {
            // Not there, or (skipping) held by another writer: inserting
            // only what this statement's snapshot lacks tells them apart
            // without waiting (the unique check of a row another writer is
            // updating would wait for its commit).
            let created = insert_placeholders(&mut tx, &rest).await?;
            let raced: Vec<&DocKey> = rest
                .iter()
                .copied()
                .filter(|k| !created.contains(*k))
                .collect();
            found.extend(created.into_iter().map(|k| (k, StoredDocument::absent())));
            if wait == LockWait::Wait && !raced.is_empty() {
                // Created by a concurrent writer since the first look.
                found.extend(lock_rows(&mut tx, &raced, wait).await?);
            }
        }
        let mut held: Vec<Held> = wanted
            .into_iter()
            .filter_map(|w| {
                let current = found.remove(&w.key)?;
                Some(Held {
                    key: w.key,
                    current,
                    firsts: HashMap::new(),
                    mutation_keys: w.mutation_keys,
                })
            })
            .collect();
        first_results(&mut tx, &mut held).await?;
        Ok(Box::new(PgDocumentsLock { tx, held }))
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
