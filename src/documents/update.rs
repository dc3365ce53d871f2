//! The update path (SPEC §6): lock the document, merge last-write-wins,
//! check the result against the limits and the schema, commit the next
//! version with its history row and mutation id. Updates of one document
//! queued on this node meanwhile share the turn (see `hot`); documents due
//! at the same moment share the transaction (see `writer`).

use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::request::{DocRef, UpdateRequest};
use super::unsure::{Unsure, Written};
use super::{Documents, Updated, Writer, bounds, lww, store_error, view};
use crate::domain::now_ms;
use crate::error::{AppError, AppResult, Code};
use crate::store::StoreError;
use crate::store::breaker::Unfinished;
use crate::store::documents::{
    DocCommit, DocKey, DocumentWrite, Held, LockWait, StoredDocument, Wanted,
};

/// A turn taking longer is given up and the database treated as down: its
/// waiters must not hang on a dead link. (A COMMIT the database already has
/// may still land; [`Documents::apply`] announces it then.)
const TURN_TIMEOUT: Duration = Duration::from_secs(5);

/// What an update decided while holding the lock.
struct Plan {
    write: Option<DocumentWrite>,
    result: Value,
    conflict: Option<Value>,
}

/// What a turn needs of one update.
#[derive(Clone)]
struct Job {
    doc: DocRef,
    author: String,
    /// The scoped `clientMutationId`.
    mutation_key: Option<String>,
    req: UpdateRequest,
}

/// An update waiting for its document's turn.
pub(super) struct Queued {
    job: Job,
    reply: oneshot::Sender<AppResult<Updated>>,
}

/// One document's updates as a turn takes them (without their replies:
/// the turn runs on a task of its own, see [`Documents::apply`]).
struct Turn {
    key: DocKey,
    jobs: Vec<Job>,
}

/// Should a turn panic, its documents' waiters are told instead of waiting
/// forever (and the next update of each starts a turn).
struct Abandon<'a>(&'a Documents, &'a [DocKey]);

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for key in self.1 {
                self.0.hot.abandon(key);
            }
        }
    }
}

/// The updates of one document taken for a turn, oldest first.
pub(super) struct Group {
    key: DocKey,
    items: Vec<Queued>,
}

/// What a turn did for each of its groups, in order: `None` for a
/// document another writer held (left out by [`LockWait::SkipLocked`]).
type Turned = Vec<Option<Vec<AppResult<Updated>>>>;

/// How a turn's transaction ended.
enum TurnEnd {
    Committed(Turned),
    /// Its connection ended while the database may have been committing
    /// it ([`StoreError::outcome_unknown`]): what it would have written.
    Unknown(Vec<Unsure>, StoreError),
}

impl Documents {
    /// Applies one update. Refusals (future base, size, schema) write nothing.
    /// Updates of the same document arriving meanwhile on this node are
    /// merged in arrival order in the same turn (see `hot`), and turns of
    /// documents due at the same moment share a transaction (see `writer`).
    pub async fn update(
        &self,
        writer: Writer<'_>,
        doc: &DocRef,
        req: &UpdateRequest,
    ) -> AppResult<Updated> {
        let key = doc.key(writer.company_id);
        let (reply, answer) = oneshot::channel();
        let item = Queued {
            job: Job {
                doc: doc.clone(),
                author: writer.author.to_string(),
                mutation_key: req
                    .mutation_id
                    .as_ref()
                    .map(|id| format!("{}:{id}", writer.mutation_scope)),
                req: req.clone(),
            },
            reply,
        };
        if self.hot.push(&key, item) {
            self.due(key);
        }
        answer.await.unwrap_or_else(|_| {
            Err(AppError::new(
                Code::Unavailable,
                "the document's update was interrupted; try again",
            ))
        })
    }

    /// Hands a document whose updates wait to the writer; when the writer
    /// has stopped (shutdown), they are dropped and their callers told.
    pub(super) fn due(&self, key: DocKey) {
        if let Err(key) = self.writer.due(key) {
            self.hot.abandon(&key);
        }
    }

    /// One batch: the next group of each document in `keys`, under one
    /// lock and one commit. A document another node holds right now is left
    /// out and taken on its own task (waiting for it), so it cannot stall
    /// the rest; documents with more updates waiting go back to the writer.
    pub(super) async fn batch(&self, keys: Vec<DocKey>) {
        let groups: Vec<Group> = keys
            .iter()
            .filter_map(|key| {
                let items = self.hot.next(key)?;
                Some(Group {
                    key: key.clone(),
                    items,
                })
            })
            .collect();
        let done: Vec<DocKey> = groups.iter().map(|g| g.key.clone()).collect();
        let _guard = Abandon(self, &done);
        let updates: usize = groups.iter().map(|g| g.items.len()).sum();
        // Documents whose turn continues on a task of their own: that task
        // hands them back, not this batch (two turns of one document must
        // never run at once).
        let mut handed_off: Vec<DocKey> = Vec::new();
        match self.apply(&groups, LockWait::SkipLocked).await {
            Ok(turned) => {
                for (group, outcomes) in groups.into_iter().zip(turned) {
                    match outcomes {
                        Some(outcomes) => reply(group.items, outcomes),
                        None => {
                            handed_off.push(group.key.clone());
                            let this = self.clone();
                            self.tasks.spawn_until_done(async move {
                                let key = group.key.clone();
                                let _guard = Abandon(&this, std::slice::from_ref(&key));
                                this.alone(group).await;
                                this.next_turn(&key);
                            });
                        }
                    }
                }
            }
            Err(e) if updates == 1 => {
                for group in groups {
                    reply_err(group.items, &e);
                }
            }
            // The shared commit failed: each update on its own, so one
            // cannot fail the others.
            Err(_) => {
                for group in groups {
                    for item in group.items {
                        let one = Group {
                            key: group.key.clone(),
                            items: vec![item],
                        };
                        self.alone(one).await;
                    }
                }
            }
        }
        for key in done.iter().filter(|k| !handed_off.contains(k)) {
            self.next_turn(key);
        }
    }

    /// After a document's turn: hands it back to the writer when more of its
    /// updates wait.
    fn next_turn(&self, key: &DocKey) {
        if self.hot.more(key) {
            self.due(key.clone());
        }
    }

    /// One group in a turn of its own, waiting for its document.
    async fn alone(&self, group: Group) {
        let groups = [group];
        let outcome = self.apply(&groups, LockWait::Wait).await;
        let [group] = groups;
        match outcome {
            Ok(mut turned) => match turned.pop().flatten() {
                Some(outcomes) => reply(group.items, outcomes),
                None => reply_err(
                    group.items,
                    &AppError::internal("a turn of one document left it out"),
                ),
            },
            Err(e) => reply_err(group.items, &e),
        }
    }

    /// One turn under the breaker: refused at once while the database is
    /// known to be down, given up after [`TURN_TIMEOUT`]. Giving up does
    /// not stop a COMMIT the database already has: the turn runs on a task
    /// of its own, and if it commits after all, its new versions are
    /// announced then (their writers were told UNAVAILABLE; without this
    /// the others saw them only at the next update or on reconnect). A
    /// turn whose connection ended during its COMMIT is looked up in the
    /// history once the database answers (`unsure`).
    async fn apply(&self, groups: &[Group], wait: LockWait) -> AppResult<Turned> {
        let turns: Vec<Turn> = groups
            .iter()
            .map(|g| Turn {
                key: g.key.clone(),
                jobs: g.items.iter().map(|q| q.job.clone()).collect(),
            })
            .collect();
        let this = self.clone();
        let waited = self
            .breaker
            .run_to_end(TURN_TIMEOUT, async move {
                let turned = this.turn(&turns, wait).await?;
                Ok((turns, turned))
            })
            .await;
        match waited {
            Ok((_, TurnEnd::Committed(turned))) => Ok(turned),
            Ok((_, TurnEnd::Unknown(unsure, e))) => {
                // The turn reports this failure as a value (it carries what
                // the turn wrote), so the breaker has not judged it yet.
                self.breaker.failed(&e).await;
                let this = self.clone();
                self.tasks
                    .spawn_until_done(async move { this.announce_if_stored(unsure).await });
                Err(store_error(e.not_known()))
            }
            Err(Unfinished::Failed(e)) => Err(store_error(e)),
            Err(Unfinished::GivenUp(e, late)) => {
                let this = self.clone();
                self.tasks.spawn_until_done(async move {
                    match late.await {
                        Ok(Ok((turns, TurnEnd::Committed(turned)))) => {
                            this.announce_late(&turns, turned).await
                        }
                        Ok(Ok((_, TurnEnd::Unknown(unsure, _)))) => {
                            this.announce_if_stored(unsure).await
                        }
                        _ => {}
                    }
                });
                Err(store_error(e))
            }
        }
    }

    /// `document:updated` for the versions a turn given up on wrote after
    /// all, to everyone in each document's room.
    async fn announce_late(&self, turns: &[Turn], turned: Turned) {
        tracing::warn!(
            "a document turn given up on committed after all; announcing its versions now"
        );
        for (turn, outcomes) in turns.iter().zip(turned) {
            for (job, outcome) in turn.jobs.iter().zip(outcomes.into_iter().flatten()) {
                if let Ok(Updated {
                    updated: Some(updated),
                    ..
                }) = outcome
                {
                    self.announce(&turn.key.company_id, &job.doc, updated, None)
                        .await;
                }
            }
        }
    }

    /// One turn: lock the documents, merge each one's updates in order
    /// against the state the one before it left, commit every version and
    /// mutation result at once. An update refused (future base, size,
    /// schema) writes nothing; a retry of a mutation id answers with its
    /// first result.
    async fn turn(&self, groups: &[Turn], wait: LockWait) -> Result<TurnEnd, StoreError> {
        let wanted: Vec<Wanted> = groups
            .iter()
            .map(|g| {
                let mut keys: Vec<String> = Vec::new();
                for item in &g.jobs {
                    if let Some(k) = &item.mutation_key
                        && !keys.contains(k)
                    {
                        keys.push(k.clone());
                    }
                }
                Wanted {
                    key: g.key.clone(),
                    mutation_keys: keys,
                }
            })
            .collect();
        let lock = self.store.lock_documents(wanted, wait).await?;
        let mut turned: Turned = groups.iter().map(|_| None).collect();
        let mut commits = Vec::with_capacity(lock.held().len());
        // The group each commit is for.
        let mut placed = Vec::with_capacity(lock.held().len());
        let mut next = 0;
        for held in lock.held() {
            // Held documents come in the order asked for, some left out.
            let Some(i) = (next..groups.len()).find(|&i| groups[i].key == held.key) else {
                return Err(StoreError::Corrupt(format!(
                    "document {}/{} held but not asked for",
                    held.key.doc_type, held.key.doc_id
                )));
            };
            next = i + 1;
            let (outcomes, commit) = self.decide(held, &groups[i].jobs);
            turned[i] = Some(outcomes);
            commits.push(commit);
            placed.push(i);
        }
        match lock.commit(&commits).await {
            Ok(()) => Ok(TurnEnd::Committed(turned)),
            Err(e) if e.outcome_unknown() => {
                let unsure = unsure(groups, &turned, placed.into_iter().zip(commits));
                Ok(TurnEnd::Unknown(unsure, e))
            }
            Err(e) => Err(e),
        }
    }

    /// What one held document's updates decide, in order.
    fn decide(&self, held: &Held, items: &[Job]) -> (Vec<AppResult<Updated>>, DocCommit) {
        let mut state = held.current.clone();
        let mut commit = DocCommit::default();
        let mut outcomes = Vec::with_capacity(items.len());
        for item in items {
            let earlier = item.mutation_key.as_ref().and_then(|k| {
                held.firsts
                    .get(k)
                    .or_else(|| commit.results.iter().find(|(r, _)| r == k).map(|(_, v)| v))
            });
            if let Some(first) = earlier {
                outcomes.push(Ok(Updated {
                    result: view::retry(&item.doc, first, &state),
                    updated: None,
                    conflict: None,
                    duplicate: true,
                }));
                continue;
            }
            let plan = match self.plan(&item.doc, &state, &item.author, &item.req) {
                Ok(plan) => plan,
                Err(e) => {
                    outcomes.push(Err(e));
                    continue;
                }
            };
            if let Some(k) = &item.mutation_key {
                // A retry needs the outcome, not a copy of the document (see view::retry).
                commit
                    .results
                    .push((k.clone(), view::mutation_record(&plan.result)));
            }
            let updated = plan.write.as_ref().map(|w| view::updated(&item.doc, w));
            if let Some(w) = plan.write {
                state = written(&state, &w);
                commit.writes.push(w);
            }
            outcomes.push(Ok(Updated {
                updated,
                result: plan.result,
                conflict: plan.conflict,
                duplicate: false,
            }));
        }
        (outcomes, commit)
    }

    /// Merges `req` into `current`, checks the result and builds the answer.
    fn plan(
        &self,
        doc: &DocRef,
        current: &StoredDocument,
        author: &str,
        req: &UpdateRequest,
    ) -> AppResult<Plan> {
        let now = now_ms();
        bounds::check_update(self.limits, current, req)?;
        let merged = lww::merge(
            current,
            &lww::Update {
                base_version: req.base_version,
                changes: &req.changes,
                edited_at: req.edited_at,
                author,
                now,
            },
        )
        .map_err(future_base)?;
        let write = (!merged.changes.is_empty()).then(|| {
            let mut fields = merged.fields;
            let dropped = bounds::compact(&merged.data, &mut fields, now, self.limits);
            DocumentWrite {
                version: merged.version,
                data: merged.data,
                fields,
                changes: merged.changes,
                updated_by: author.to_string(),
                edited_at: merged.edited_at,
                updated_at: now,
                compacted_version: current.compacted_version.max(dropped),
            }
        });
        let after = match &write {
            Some(w) => {
                self.check_document(doc, w)?;
                written(current, w)
            }
            None => current.clone(),
        };
        let conflict = merged
            .conflict
            .as_ref()
            .map(|c| view::conflict(doc, c, merged.version, merged.edited_at));
        if conflict.is_some() {
            crate::metrics::conflict();
        }
        let result = view::result(
            merged.status,
            merged.version,
            view::document(doc, &after),
            conflict.clone(),
        );
        Ok(Plan {
            write,
            result,
            conflict,
        })
    }

    /// The merged document must fit the limits (checked first, as sizes are
    /// everywhere) and its type's schema.
    fn check_document(&self, doc: &DocRef, w: &DocumentWrite) -> AppResult<()> {
        bounds::check_written(self.limits, w)?;
        match self.catalog.document(&doc.doc_type) {
            Some(spec) => spec.validate(&doc.doc_type, &Value::Object(w.data.clone())),
            None => Ok(()),
        }
    }
}

fn reply(items: Vec<Queued>, outcomes: Vec<AppResult<Updated>>) {
    for (item, outcome) in items.into_iter().zip(outcomes) {
        let _ = item.reply.send(outcome);
    }
}

fn reply_err(items: Vec<Queued>, e: &AppError) {
    for item in items {
        let _ = item.reply.send(Err(e.clone()));
    }
}

fn future_base(f: lww::FutureBase) -> AppError {
    AppError::new(
        Code::Conflict,
        format!(
            "baseVersion {} is ahead of the document's version {}; fetch it again",
            f.base_version, f.current
        ),
    )
    .with_details(json!({ "field": "baseVersion", "version": f.current }))
}

/// The document as stored once `w` is committed over `current`.
fn written(current: &StoredDocument, w: &DocumentWrite) -> StoredDocument {
    StoredDocument {
        version: w.version,
        data: w.data.clone(),
        fields: w.fields.clone(),
        created_at: if current.exists() {
            current.created_at
        } else {
            w.updated_at
        },
        updated_at: w.updated_at,
        updated_by: w.updated_by.clone(),
        compacted_version: w.compacted_version,
    }
}

/// What each held document's versions of a turn would have been, with
/// their announcements (in the order [`Documents::decide`] wrote them).
fn unsure(
    groups: &[Turn],
    turned: &Turned,
    commits: impl Iterator<Item = (usize, DocCommit)>,
) -> Vec<Unsure> {
    commits
        .filter_map(|(i, commit)| {
            let doc = groups[i].jobs.first()?.doc.clone();
            let announced = turned[i]
                .iter()
                .flatten()
                .filter_map(|o| o.as_ref().ok()?.updated.clone());
            let written = commit
                .writes
                .iter()
                .zip(announced)
                .map(|(w, updated)| Written::new(w, updated))
                .collect();
            Some(Unsure {
                key: groups[i].key.clone(),
                doc,
                written,
            })
        })
        .collect()
}
