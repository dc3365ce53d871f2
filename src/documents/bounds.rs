//! What a document may hold, and the compaction of its tombstones.
//!
//! A document is stored as its data plus, per top-level field, the metadata
//! of the field's last write (version, edit time, author), deleted fields
//! included: a deleted field's metadata is its *tombstone*, which lets a
//! stale writer's edit lose to a later deletion. Both count toward
//! `DOCUMENT_MAX_BYTES`, and a document has at most `DOCUMENT_MAX_FIELDS`
//! live fields; without that, deleting fields grows the stored document
//! while its data stays empty.
//!
//! Tombstones are dropped when the document is written: those whose edit
//! time is older than the idempotency TTL, then, oldest version first, as
//! many as needed to keep the entries within `DOCUMENT_MAX_FIELDS` and the
//! size within `DOCUMENT_MAX_BYTES`. The highest version dropped becomes the
//! document's `compacted_version`.
//!
//! Why the last-write-wins rules stay exact: a tombstone of version `v`
//! decides a merge only for an update whose `baseVersion` is below `v`
//! (the writer had not seen the deletion). An update whose base is at or
//! above `compacted_version` is decided exactly as before, since every
//! dropped tombstone is at or below its base. An update whose base is below
//! `compacted_version` and that writes a field without metadata might have
//! needed a dropped tombstone: it is refused with CONFLICT (the client
//! fetches the document and writes again), never guessed.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::request::UpdateRequest;
use crate::error::{AppError, AppResult, Code};
use crate::store::documents::{DocumentWrite, FieldMeta, StoredDocument};

/// The document limits of one server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_fields: usize,
    pub max_bytes: usize,
    /// Tombstones edited before `now - tombstone_ttl_ms` are dropped.
    pub tombstone_ttl_ms: i64,
}

/// Bytes of `v` as JSON.
fn json_len<T: serde::Serialize>(v: &T) -> usize {
    serde_json::to_vec(v).map_or(usize::MAX, |b| b.len())
}

/// Bytes of one `"name":{meta}` entry of the stored field map.
fn entry_len(name: &str, meta: &FieldMeta) -> usize {
    json_len(&name) + 1 + json_len(meta)
}

/// The stored size of a document: its data and its field metadata as JSON.
pub fn stored_size(data: &Map<String, Value>, fields: &BTreeMap<String, FieldMeta>) -> usize {
    json_len(data).saturating_add(json_len(fields))
}

/// Drops tombstones as the module doc says; returns the highest version
/// dropped (0 when none was).
pub fn compact(
    data: &Map<String, Value>,
    fields: &mut BTreeMap<String, FieldMeta>,
    now: i64,
    limits: Limits,
) -> i64 {
    let horizon = now.saturating_sub(limits.tombstone_ttl_ms);
    let mut dropped = 0;
    fields.retain(|name, meta| {
        let expired = !data.contains_key(name) && meta.edited_at < horizon;
        if expired {
            dropped = dropped.max(meta.version);
        }
        !expired
    });
    // Remaining tombstones, oldest write first (then by name, for a stable order).
    let mut tombstones: Vec<(i64, String)> = fields
        .iter()
        .filter(|(name, _)| !data.contains_key(*name))
        .map(|(name, meta)| (meta.version, name.clone()))
        .collect();
    tombstones.sort();
    let mut size = stored_size(data, fields);
    for (version, name) in tombstones {
        if fields.len() <= limits.max_fields && size <= limits.max_bytes {
            break;
        }
        if let Some(meta) = fields.remove(&name) {
            // The entry, and a separating comma unless it was the last one.
            let comma = usize::from(!fields.is_empty());
            size = size.saturating_sub(entry_len(&name, &meta) + comma);
            dropped = dropped.max(version);
        }
    }
    dropped
}

/// Before merging: an update names at most `max_fields` fields, and one
/// whose base predates compacted tombstones may not write a field those
/// might have decided (see the module doc).
pub fn check_update(
    limits: Limits,
    current: &StoredDocument,
    req: &UpdateRequest,
) -> AppResult<()> {
    if req.changes.len() > limits.max_fields {
        return Err(too_many_fields(req.changes.len(), limits.max_fields));
    }
    if req.base_version < current.compacted_version
        && req.changes.keys().any(|f| !current.fields.contains_key(f))
    {
        return Err(AppError::new(
            Code::Conflict,
            format!(
                "baseVersion {} is older than deletions this document no longer remembers \
                 (before version {}); fetch it again",
                req.base_version,
                current.compacted_version + 1
            ),
        )
        .with_details(json!({
            "field": "baseVersion",
            "version": current.version,
            "compactedVersion": current.compacted_version,
        })));
    }
    Ok(())
}

/// After merging and compacting: the live fields and the stored size.
pub fn check_written(limits: Limits, w: &DocumentWrite) -> AppResult<()> {
    if w.data.len() > limits.max_fields {
        return Err(too_many_fields(w.data.len(), limits.max_fields));
    }
    let (size, max) = (stored_size(&w.data, &w.fields), limits.max_bytes);
    if size > max {
        return Err(AppError::new(
            Code::PayloadTooLarge,
            format!(
                "the document would be {size} bytes with its field metadata; the limit is {max}"
            ),
        )
        .with_details(json!({ "size": size, "limit": max })));
    }
    Ok(())
}

fn too_many_fields(fields: usize, max: usize) -> AppError {
    AppError::new(
        Code::PayloadTooLarge,
        format!("{fields} fields; a document (and an update) may have at most {max}"),
    )
    .with_details(json!({ "fields": fields, "limit": max }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta(version: i64, edited_at: i64) -> FieldMeta {
        FieldMeta {
            version,
            edited_at,
            author: "u1".into(),
        }
    }

    const LIMITS: Limits = Limits {
        max_fields: 3,
        max_bytes: 10_000,
        tombstone_ttl_ms: 1_000,
    };

    #[test]
    fn drops_expired_then_oldest_tombstones_never_live_fields() {
        let data: Map<String, Value> = json!({ "live": 1 }).as_object().unwrap().clone();
        let mut fields = BTreeMap::from([
            ("live".to_string(), meta(1, 0)),
            ("old".to_string(), meta(2, 100)),
            ("a".to_string(), meta(4, 5_000)),
            ("b".to_string(), meta(3, 5_000)),
            ("c".to_string(), meta(5, 5_000)),
        ]);
        // "old" is past the TTL; then 4 entries > 3: "b" (version 3) goes.
        let dropped = compact(&data, &mut fields, 5_000, LIMITS);
        assert_eq!(dropped, 3);
        let kept: Vec<&str> = fields.keys().map(String::as_str).collect();
        assert_eq!(kept, ["a", "c", "live"]);
        // Nothing to drop: 0, and live fields stay even beyond the limits.
        let mut live = BTreeMap::from([("live".to_string(), meta(1, 0))]);
        let tight = Limits {
            max_bytes: 1,
            ..LIMITS
        };
        assert_eq!(compact(&data, &mut live, 5_000, tight), 0);
        assert_eq!(live.len(), 1);
    }

    #[test]
    fn keeps_the_stored_size_within_the_limit() {
        let data = Map::new();
        let mut fields: BTreeMap<String, FieldMeta> = (0..50)
            .map(|i| (format!("f{i:02}"), meta(i, 5_000)))
            .collect();
        let limits = Limits {
            max_fields: 1_000,
            max_bytes: 600,
            tombstone_ttl_ms: 1_000_000,
        };
        let dropped = compact(&data, &mut fields, 5_000, limits);
        assert!(stored_size(&data, &fields) <= 600);
        assert!(
            stored_size(&data, &fields) > 540,
            "drops no more than needed"
        );
        let oldest_kept = fields.values().map(|m| m.version).min().unwrap();
        assert_eq!(dropped + 1, oldest_kept);
    }
}
