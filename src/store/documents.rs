//! Storage of last-write-wins documents (SPEC §6): the records and the
//! [`DocumentStore`] interface. The merge rules live in
//! `crate::documents::lww`; this module only persists what they decide.
//!
//! Writers of one document are serialised by the database: a writer takes a
//! [`DocumentLock`] (the row lock in PostgreSQL, the single writer connection
//! in SQLite), reads the current state, decides, and commits the new version,
//! its history row and the mutation result in the same transaction. Every
//! version number is therefore used exactly once, across any number of nodes.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::StoreError;

/// Which document: `(companyId, type, id)`, already validated.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DocKey {
    pub company_id: String,
    pub doc_type: String,
    pub doc_id: String,
}

/// The last change of one top-level field (a deleted field keeps its entry,
/// so a stale writer still sees that someone changed it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldMeta {
    pub version: i64,
    /// Milliseconds since the epoch, as resolved by the server (never in the future).
    pub edited_at: i64,
    pub author: String,
}

/// A document as stored. `version` 0 means it does not exist yet.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDocument {
    pub version: i64,
    pub data: Map<String, Value>,
    pub fields: BTreeMap<String, FieldMeta>,
    pub created_at: i64,
    pub updated_at: i64,
    pub updated_by: String,
    /// The highest version of a tombstone dropped by compaction (0 = none);
    /// see `crate::documents::bounds`.
    pub compacted_version: i64,
}

impl StoredDocument {
    /// The state of a document nobody has written yet.
    pub fn absent() -> Self {
        Self {
            version: 0,
            data: Map::new(),
            fields: BTreeMap::new(),
            created_at: 0,
            updated_at: 0,
            updated_by: String::new(),
            compacted_version: 0,
        }
    }

    pub fn exists(&self) -> bool {
        self.version > 0
    }
}

/// One new version, as decided by the merge.
#[derive(Debug, Clone, PartialEq)]
pub struct DocumentWrite {
    /// Always the current version + 1.
    pub version: i64,
    /// The whole document after this version.
    pub data: Map<String, Value>,
    pub fields: BTreeMap<String, FieldMeta>,
    /// What this version changed (`null` = field deleted), for the history.
    pub changes: Map<String, Value>,
    pub updated_by: String,
    pub edited_at: i64,
    pub updated_at: i64,
    /// Carried over from the current version, or raised by this write's compaction.
    pub compacted_version: i64,
}

/// One entry of a document's history.
#[derive(Debug, Clone, PartialEq)]
pub struct DocumentVersion {
    pub version: i64,
    pub changes: Map<String, Value>,
    pub updated_by: String,
    pub edited_at: i64,
    pub updated_at: i64,
}

/// A document held for writing. Nothing else can write the document until
/// [`DocumentLock::commit`] / [`DocumentLock::commit_all`] or drop (which
/// rolls back), so the holder must not wait on anything but its own decision.
///
/// One lock may carry several queued updates of the document (a hot
/// document): their mutation keys are looked up together, and their
/// versions are committed together, in order, in one transaction.
#[async_trait]
pub trait DocumentLock: Send {
    /// The current state ([`StoredDocument::absent`] for a new document).
    fn current(&self) -> &StoredDocument;

    /// The mutation keys the lock was taken with.
    fn mutation_keys(&self) -> &[String];

    /// The result remembered for `mutation_key` (one of the lock's), when
    /// that key was already used: the caller answers with it and writes
    /// nothing for it.
    fn first_result_of(&self, mutation_key: &str) -> Option<&Value>;

    /// [`Self::first_result_of`] the lock's first mutation key.
    fn first_result(&self) -> Option<&Value> {
        self.mutation_keys()
            .first()
            .and_then(|k| self.first_result_of(k))
    }

    /// Writes `writes` (consecutive versions after the current one, in
    /// order) and remembers each `(mutation key, result)`, atomically.
    async fn commit_all(
        self: Box<Self>,
        writes: &[DocumentWrite],
        results: &[(String, Value)],
    ) -> Result<(), StoreError>;

    /// Writes `write` (when something changed) and remembers `result` under
    /// the lock's first mutation key (when there is one), atomically.
    async fn commit(
        self: Box<Self>,
        write: Option<&DocumentWrite>,
        result: &Value,
    ) -> Result<(), StoreError> {
        let results: Vec<(String, Value)> = self
            .mutation_keys()
            .first()
            .map(|k| (k.clone(), result.clone()))
            .into_iter()
            .collect();
        let writes: Vec<DocumentWrite> = write.cloned().into_iter().collect();
        self.commit_all(&writes, &results).await
    }
}

#[async_trait]
pub trait DocumentStore: Send + Sync {
    /// The document, or `None` when it does not exist.
    async fn document(&self, key: &DocKey) -> Result<Option<StoredDocument>, StoreError>;

    /// Takes the document for writing; `mutation_key` is the scoped
    /// idempotency key of this update, if any.
    async fn lock_document(
        &self,
        key: &DocKey,
        mutation_key: Option<&str>,
    ) -> Result<Box<dyn DocumentLock>, StoreError> {
        let keys: Vec<String> = mutation_key.map(str::to_string).into_iter().collect();
        self.lock_document_for(key, keys).await
    }

    /// Takes the document for writing on behalf of several queued updates,
    /// with their scoped idempotency keys (distinct).
    async fn lock_document_for(
        &self,
        key: &DocKey,
        mutation_keys: Vec<String>,
    ) -> Result<Box<dyn DocumentLock>, StoreError>;

    /// Deletes the remembered results of mutation ids created before
    /// `before` (ms); returns how many.
    async fn prune_mutations(&self, before: i64) -> Result<u64, StoreError>;

    /// Versions after `after`, in version order, at most `limit`.
    async fn document_history(
        &self,
        key: &DocKey,
        after: i64,
        limit: i64,
    ) -> Result<Vec<DocumentVersion>, StoreError>;
}

/// JSON text of a stored column, for the SQLite backend and error messages.
pub(super) fn to_text<T: Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(super) fn from_text<T: for<'de> Deserialize<'de>>(s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Each write must follow the one before it (the first, the locked
/// version): anything else is a bug in the caller.
pub(super) fn check_chain(
    current: &StoredDocument,
    writes: &[DocumentWrite],
) -> Result<(), StoreError> {
    let mut before = current.version;
    for w in writes {
        if w.version != before + 1 {
            return Err(StoreError::Corrupt(format!(
                "document write of version {} over version {before}",
                w.version
            )));
        }
        before = w.version;
    }
    Ok(())
}

/// The write must follow the locked version exactly: anything else is a bug
/// in the caller, refused before it could reuse a version number.
pub(super) fn check_successor(
    current: &StoredDocument,
    write: &DocumentWrite,
) -> Result<(), StoreError> {
    if write.version == current.version + 1 {
        Ok(())
    } else {
        Err(StoreError::Corrupt(format!(
            "document write of version {} over version {}",
            write.version, current.version
        )))
    }
}
