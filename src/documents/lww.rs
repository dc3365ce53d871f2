//! The last-write-wins merge of one document update (SPEC §6), free of I/O.
//!
//! Given the stored document (with, per top-level field, the version, edit
//! time and author of its last write) and an update based on `baseVersion`:
//!
//! - `baseVersion` > current: refused ([`FutureBase`]); the writer has seen a
//!   version that does not exist.
//! - `baseVersion` = current: every change is written (`applied`).
//! - `baseVersion` < current (`merged`): a field of the update is *contested*
//!   when another write changed it after `baseVersion` (its stored version is
//!   greater). A contested field goes to the later edit, comparing
//!   `(editedAt, author)` pairs: the later `editedAt` wins; on equal times the
//!   greater author id (byte order) wins; the same author at the same
//!   millisecond means the incoming write wins (it arrived last). Uncontested
//!   fields are written.
//! - The incoming `editedAt` is clamped to the server clock (`now`), so a
//!   client clock in the future cannot win every later conflict.
//! - A contested field whose incoming value equals the stored one is not
//!   reported as a conflict (there is nothing to tell the user), but it is
//!   resolved by the same rule: when the incoming edit is later it is written,
//!   so the field's edit time stays that of its latest write.
//! - Every field the update does not lose is written, even when its value does
//!   not change, and a new version is created only when at least one is.
//!
//! Why it converges: each field behaves as a last-write-wins register. The
//! first write of a field after a common base takes the field; every later one
//! is contested and keeps the greater `(editedAt, author)`. So concurrent
//! updates from the same base end on the same data whatever the arrival order
//! (property-tested below), and the database's serial order of versions makes
//! every replica that replays the history agree.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::store::documents::{FieldMeta, StoredDocument};

/// One incoming update.
#[derive(Debug, Clone)]
pub struct Update<'a> {
    pub base_version: i64,
    /// Top-level fields to set; `null` deletes the field.
    pub changes: &'a Map<String, Value>,
    /// The client's edit time (ms since the epoch); `None` = `now`.
    pub edited_at: Option<i64>,
    pub author: &'a str,
    /// The server's clock when the update is merged.
    pub now: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Applied,
    Merged,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Applied => "applied",
            Status::Merged => "merged",
        }
    }
}

/// Which write a contested field went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Winner {
    Incoming,
    Stored,
}

/// The fields where this update disagreed with a later-than-base write,
/// each keyed by field: stored value before this update, the update's value,
/// and the value after resolution (`null` = absent).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Conflict {
    pub fields: Vec<String>,
    pub original: Map<String, Value>,
    pub incoming: Map<String, Value>,
    pub resolved: Map<String, Value>,
    /// The stored write each field was contested with, and who won.
    pub against: BTreeMap<String, (FieldMeta, Winner)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MergeOutcome {
    pub status: Status,
    /// The edit time used for this update (clamped to `now`).
    pub edited_at: i64,
    /// The version after this update: current + 1, or current when nothing
    /// was written.
    pub version: i64,
    /// What this update writes (`null` = delete). Empty = nothing to write.
    pub changes: Map<String, Value>,
    /// The whole document after this update.
    pub data: Map<String, Value>,
    pub fields: BTreeMap<String, FieldMeta>,
    pub conflict: Option<Conflict>,
}

/// `baseVersion` is newer than the stored version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FutureBase {
    pub base_version: i64,
    pub current: i64,
}

/// The edit time an update competes with: the client's, never later than
/// the server's clock; the server's receive time when the client gave none.
pub fn effective_edit_time(edited_at: Option<i64>, now: i64) -> i64 {
    edited_at.map_or(now, |t| t.min(now))
}

/// Whether an incoming edit takes a contested field from the stored write:
/// later edit time, then greater author id, then the incoming one.
pub fn incoming_wins(edited_at: i64, author: &str, stored: &FieldMeta) -> bool {
    (edited_at, author) >= (stored.edited_at, stored.author.as_str())
}

pub fn merge(stored: &StoredDocument, update: &Update<'_>) -> Result<MergeOutcome, FutureBase> {
    if update.base_version > stored.version {
        return Err(FutureBase {
            base_version: update.base_version,
            current: stored.version,
        });
    }
    let edited_at = effective_edit_time(update.edited_at, update.now);
    let mut out = MergeOutcome {
        status: if update.base_version == stored.version {
            Status::Applied
        } else {
            Status::Merged
        },
        edited_at,
        version: stored.version,
        changes: Map::new(),
        data: stored.data.clone(),
        fields: stored.fields.clone(),
        conflict: None,
    };
    let mut conflict = Conflict::default();
    let written = FieldMeta {
        version: stored.version + 1,
        edited_at,
        author: update.author.to_string(),
    };
    for (name, incoming) in update.changes {
        if keeps_field(stored, update, edited_at, name, incoming, &mut conflict) {
            out.write(name, incoming, &written);
        }
    }
    if !out.changes.is_empty() {
        out.version = written.version;
    }
    out.conflict = (!conflict.fields.is_empty()).then_some(conflict);
    Ok(out)
}

/// Whether the update keeps field `name`: always when uncontested, else when
/// its edit is the later one. A contested field whose values differ is
/// recorded in `conflict`.
fn keeps_field(
    stored: &StoredDocument,
    update: &Update<'_>,
    edited_at: i64,
    name: &str,
    incoming: &Value,
    conflict: &mut Conflict,
) -> bool {
    let Some(meta) = stored
        .fields
        .get(name)
        .filter(|meta| meta.version > update.base_version)
    else {
        return true;
    };
    let wins = incoming_wins(edited_at, update.author, meta);
    let current = stored.data.get(name).unwrap_or(&Value::Null);
    if incoming != current {
        conflict.record(name, current, incoming, meta, wins);
    }
    wins
}

impl Conflict {
    fn record(
        &mut self,
        name: &str,
        current: &Value,
        incoming: &Value,
        meta: &FieldMeta,
        wins: bool,
    ) {
        let (resolved, winner) = if wins {
            (incoming, Winner::Incoming)
        } else {
            (current, Winner::Stored)
        };
        self.fields.push(name.to_string());
        self.original.insert(name.to_string(), current.clone());
        self.incoming.insert(name.to_string(), incoming.clone());
        self.resolved.insert(name.to_string(), resolved.clone());
        self.against
            .insert(name.to_string(), (meta.clone(), winner));
    }
}

impl MergeOutcome {
    /// Sets (or, for `null`, deletes) a field and records its write.
    fn write(&mut self, name: &str, value: &Value, meta: &FieldMeta) {
        if value.is_null() {
            self.data.remove(name);
        } else {
            self.data.insert(name.to_string(), value.clone());
        }
        self.fields.insert(name.to_string(), meta.clone());
        self.changes.insert(name.to_string(), value.clone());
    }
}

#[cfg(test)]
mod tests;
