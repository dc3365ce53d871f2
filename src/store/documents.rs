//! Storage of last-write-wins documents (SPEC §6): the records and the
//! [`DocumentStore`] interface. The merge rules live in
//! `crate::documents::lww`; this module only persists what they decide.
//!
//! Writers of one document are serialised by the database: a writer takes a
//! [`DocumentLock`] (the row lock in PostgreSQL, the single writer connection
//! in SQLite), reads the current state, decides, and commits the new version,
//! its history row and the mutation result in the same transaction. Every
//! version number is therefore used exactly once, across any number of nodes.
//!
//! Several documents can be held in one transaction ([`DocumentsLock`]):
//! a commit costs the same for one document as for a hundred, so updates
//! of many documents that wait at the same moment share one (see
//! `crate::documents::writer`).

use std::collections::{BTreeMap, HashMap, HashSet};

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

/// One document a [`DocumentsLock`] is asked for, with the scoped
/// idempotency keys of the updates waiting for it (distinct).
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    pub key: DocKey,
    pub mutation_keys: Vec<String>,
}

/// Whether taking several documents waits for ones another writer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockWait {
    /// Wait for every document (one held elsewhere delays the whole lock).
    Wait,
    /// Leave out the documents another transaction holds right now, so
    /// one contended document cannot stall the others; the caller takes
    /// those on their own. A document another writer is creating at that
    /// very moment is still waited for (an insert cannot skip). SQLite has
    /// a single writer: nothing is left out.
    SkipLocked,
}

/// A document held by a [`DocumentsLock`].
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    pub key: DocKey,
    /// The current state ([`StoredDocument::absent`] for a new document).
    pub current: StoredDocument,
    /// The results remembered for those of its mutation keys already used.
    pub firsts: HashMap<String, Value>,
    pub mutation_keys: Vec<String>,
}

/// What one held document gets: consecutive versions after its current
/// one, in order, and the results to remember under mutation keys.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DocCommit {
    pub writes: Vec<DocumentWrite>,
    pub results: Vec<(String, Value)>,
}

/// Several documents held for writing in one transaction: nothing else can
/// write them until [`DocumentsLock::commit`] or drop (which rolls back).
#[async_trait]
pub trait DocumentsLock: Send {
    /// The documents held, in the order they were asked for (without the
    /// ones [`LockWait::SkipLocked`] left out).
    fn held(&self) -> &[Held];

    /// Writes `commits[i]` for `held()[i]`, all or nothing, in one commit.
    async fn commit(self: Box<Self>, commits: &[DocCommit]) -> Result<(), StoreError>;
}

/// The documents' keys must be distinct: one transaction cannot hold a
/// document twice.
pub(super) fn check_distinct(wanted: &[Wanted]) -> Result<(), StoreError> {
    let mut seen = HashSet::new();
    match wanted.iter().find(|w| !seen.insert(&w.key)) {
        Some(w) => Err(StoreError::Corrupt(format!(
            "document {}/{} asked for twice in one lock",
            w.key.doc_type, w.key.doc_id
        ))),
        None => Ok(()),
    }
}

/// `commits` must match the held documents one for one, and each chain
/// must follow its document's version.
pub(super) fn check_commits(held: &[Held], commits: &[DocCommit]) -> Result<(), StoreError> {
    if held.len() != commits.len() {
        return Err(StoreError::Corrupt(format!(
            "{} commits for {} held documents",
            commits.len(),
            held.len()
        )));
    }
    for (h, c) in held.iter().zip(commits) {
        check_chain(&h.current, &c.writes)?;
    }
    Ok(())
}

/// One document held through a [`DocumentsLock`] of one.
struct One(Box<dyn DocumentsLock>);

impl One {
    fn held(&self) -> Result<&Held, StoreError> {
        self.0
            .held()
            .first()
            .ok_or_else(|| StoreError::Corrupt("a lock of one document holds none".into()))
    }
}

#[async_trait]
impl DocumentLock for One {
    fn current(&self) -> &StoredDocument {
        // `lock_document_for` checked that the document is held.
        &self.0.held()[0].current
    }

    fn mutation_keys(&self) -> &[String] {
        &self.0.held()[0].mutation_keys
    }

    fn first_result_of(&self, mutation_key: &str) -> Option<&Value> {
        self.0.held().first()?.firsts.get(mutation_key)
    }

    async fn commit_all(
        self: Box<Self>,
        writes: &[DocumentWrite],
        results: &[(String, Value)],
    ) -> Result<(), StoreError> {
        self.held()?;
        let commit = DocCommit {
            writes: writes.to_vec(),
            results: results.to_vec(),
        };
        self.0.commit(std::slice::from_ref(&commit)).await
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
    ) -> Result<Box<dyn DocumentLock>, StoreError> {
        let wanted = Wanted {
            key: key.clone(),
            mutation_keys,
        };
        let lock = self.lock_documents(vec![wanted], LockWait::Wait).await?;
        let one = One(lock);
        one.held()?;
        Ok(Box::new(one))
    }

    /// Takes several documents (distinct keys) for writing in one
    /// transaction, in a fixed order so that two writers cannot deadlock.
    async fn lock_documents(
        &self,
        wanted: Vec<Wanted>,
        wait: LockWait,
    ) -> Result<Box<dyn DocumentsLock>, StoreError>;

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
