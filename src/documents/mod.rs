//! Last-write-wins documents (SPEC §6), shared by every transport
//! (`document:get`, `document:update`) and the HTTP API: permissions, the
//! update path (lock → merge → validate → commit), reads, and the
//! `document:updated` announcement. [`Documents`] is the service; it owns
//! the store, the catalog's document schemas, the fan-out and the limits.
//!
//! - [`lww`]: the pure merge rules (conflicts, tie-break, clamping).
//! - [`bounds`]: what a document may hold; compaction of deleted fields' metadata.
//! - [`request`]: parsing and validation of what clients send.
//! - [`view`]: the JSON shapes sent back and broadcast.
//! - `hot`: updates of one document queued on this node, taken in one turn.
//! - `writer`: runs the turns, many documents per transaction.
//! - `unsure`: a turn whose connection ended mid-way: announced if the history shows it committed.
//!
//! The database arbitrates concurrent writers: an update holds the
//! document's lock (see `store::documents`) from reading the current version
//! to committing the next one, so the merge always runs against the latest
//! state and every version number is used once, on any number of nodes.

pub mod bounds;
mod hot;
pub mod lww;
pub mod request;
mod unsure;
mod update;
pub mod view;
mod writer;

use std::sync::Arc;

use serde_json::Value;

use crate::catalog::Catalog;
use crate::domain::{Role, SessionId};
use crate::error::{AppError, AppResult, Code};
use crate::fanout::{Fanout, Hub, Signal};
use crate::store::breaker::Breaker;
use crate::store::documents::{DocumentVersion, StoredDocument};
use crate::store::{Store, StoreError};
use crate::tasks::Tasks;
use request::DocRef;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// Whether `role` may read or write documents of `doc_type`. Types without a
/// catalog entry are open to every role (SPEC §3 default permissions).
pub fn authorize(catalog: &Catalog, doc_type: &str, role: Role, access: Access) -> AppResult<()> {
    let Some(spec) = catalog.document(doc_type) else {
        return Ok(());
    };
    let (roles, verb) = match access {
        Access::Read => (spec.read, "read"),
        Access::Write => (spec.write, "write"),
    };
    if roles.contains(role) {
        Ok(())
    } else {
        Err(AppError::new(
            Code::Forbidden,
            format!("role `{role}` may not {verb} `{doc_type}` documents"),
        ))
    }
}

/// Storage failures: an unreachable database (or one known to be down, or
/// too slow: the breaker's refusals) is UNAVAILABLE (retry later); anything
/// else is a bug or corruption, logged and reported as INTERNAL.
fn store_error(e: StoreError) -> AppError {
    match e {
        StoreError::Db(e) => AppError::unavailable(e),
        StoreError::Unavailable(cause) => AppError::unavailable(cause),
        other => AppError::internal(other),
    }
}

/// Who writes, and where their mutation ids live.
#[derive(Debug, Clone, Copy)]
pub struct Writer<'a> {
    pub company_id: &'a str,
    /// Recorded as the author of each field written; breaks edit-time ties.
    pub author: &'a str,
    /// Prefix of the idempotency key, so two users' (or the HTTP API's and a
    /// user's) `clientMutationId`s never collide.
    pub mutation_scope: &'a str,
}

/// What an update produced for the caller to send.
#[derive(Debug, Clone)]
pub struct Updated {
    /// `{ status, version, document, conflict? }`: the ack / response body.
    pub result: Value,
    /// The `document:updated` body, when this call wrote a version.
    pub updated: Option<Value>,
    /// The `document:conflict` body, when fields were in conflict.
    pub conflict: Option<Value>,
    /// A retry of an earlier `clientMutationId`: `result` is the first one.
    pub duplicate: bool,
}

/// The documents service. Cloning it is cheap and shares everything (turns
/// run on tasks of their own, see `writer`).
#[derive(Clone)]
pub struct Documents {
    store: Arc<dyn Store>,
    catalog: Arc<Catalog>,
    fanout: Arc<Fanout>,
    limits: bounds::Limits,
    hot: Arc<hot::Hot<update::Queued>>,
    /// Refuses turns at once while the database is known to be down: a
    /// turn would otherwise wait out the pool's connection timeout, and the
    /// updates queued behind it each wait out their own, one after another.
    breaker: Arc<Breaker>,
    /// Runs the batches of turns (tracked, so shutdown waits for them).
    tasks: Tasks,
    /// Where documents with updates due are handed for a batch.
    writer: writer::Writer,
}

impl Documents {
    pub fn new(
        store: Arc<dyn Store>,
        catalog: Arc<Catalog>,
        fanout: Arc<Fanout>,
        limits: bounds::Limits,
        tasks: Tasks,
    ) -> Self {
        let (writer, inbox) = writer::Writer::new();
        let docs = Self {
            breaker: Breaker::new(store.clone(), tasks.clone()),
            store,
            catalog,
            fanout,
            limits,
            tasks: tasks.clone(),
            hot: Arc::default(),
            writer,
        };
        tasks.spawn_until_done(writer::run(docs.clone(), inbox, tasks.child_token()));
        docs
    }

    /// The catalog whose document entries gate access ([`authorize`]).
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The document, or `None` when it does not exist.
    pub async fn get(&self, company_id: &str, doc: &DocRef) -> AppResult<Option<StoredDocument>> {
        self.store
            .document(&doc.key(company_id))
            .await
            .map_err(store_error)
    }

    /// Versions after `after`, at most `limit`, as history entries.
    pub async fn history(
        &self,
        company_id: &str,
        doc: &DocRef,
        after: i64,
        limit: i64,
    ) -> AppResult<Vec<DocumentVersion>> {
        self.store
            .document_history(&doc.key(company_id), after, limit)
            .await
            .map_err(store_error)
    }

    /// `document:updated` to the document's room, except the writer's session.
    pub async fn announce(
        &self,
        company_id: &str,
        doc: &DocRef,
        updated: Value,
        exclude: Option<SessionId>,
    ) {
        let signal = Signal {
            company: company_id.to_string(),
            room: doc.room(),
            event: "document:updated",
            data: updated,
            exclude,
        };
        self.fanout.emit(&signal).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_roles_gate_reads_and_writes_and_unknown_types_are_open() {
        let c = Catalog::load(None).unwrap();
        assert!(authorize(&c, "order", Role::Operator, Access::Read).is_ok());
        assert_eq!(
            authorize(&c, "order", Role::Operator, Access::Write)
                .unwrap_err()
                .code,
            Code::Forbidden
        );
        assert!(authorize(&c, "order", Role::Supervisor, Access::Write).is_ok());
        assert!(authorize(&c, "project", Role::Supervisor, Access::Write).is_err());
        assert!(authorize(&c, "project", Role::Manager, Access::Write).is_ok());
        assert!(authorize(&c, "checklist", Role::Operator, Access::Write).is_ok());
    }
}
