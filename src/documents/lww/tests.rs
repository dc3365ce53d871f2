//! Unit and property tests of the merge rules.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::*;

const NOW: i64 = 10_000_000;

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn merge_at(
    stored: &StoredDocument,
    base: i64,
    changes: &Map<String, Value>,
    edited_at: Option<i64>,
    author: &str,
) -> MergeOutcome {
    merge(
        stored,
        &Update {
            base_version: base,
            changes,
            edited_at,
            author,
            now: NOW,
        },
    )
    .expect("base is not in the future")
}

/// What the store holds after `out` is committed.
fn commit(stored: &StoredDocument, out: &MergeOutcome, author: &str) -> StoredDocument {
    if out.changes.is_empty() {
        return stored.clone();
    }
    StoredDocument {
        version: out.version,
        data: out.data.clone(),
        fields: out.fields.clone(),
        created_at: if stored.exists() {
            stored.created_at
        } else {
            NOW
        },
        updated_at: NOW,
        updated_by: author.to_string(),
        compacted_version: 0,
    }
}

fn write(
    stored: &StoredDocument,
    base: i64,
    changes: Value,
    edited_at: Option<i64>,
    author: &str,
) -> StoredDocument {
    let out = merge_at(stored, base, &obj(changes), edited_at, author);
    commit(stored, &out, author)
}

#[test]
fn current_base_applies_every_change_and_null_deletes() {
    let empty = StoredDocument::absent();
    let out = merge_at(&empty, 0, &obj(json!({"a": 1, "b": "x"})), None, "u1");
    assert_eq!(out.status, Status::Applied);
    assert_eq!(out.version, 1);
    assert_eq!(out.data, obj(json!({"a": 1, "b": "x"})));
    assert_eq!(out.changes, obj(json!({"a": 1, "b": "x"})));
    assert_eq!(
        out.edited_at, NOW,
        "no editedAt = the server's receive time"
    );
    assert_eq!(out.conflict, None);
    let v1 = commit(&empty, &out, "u1");
    let out = merge_at(&v1, 1, &obj(json!({"a": 2, "b": null})), Some(5), "u2");
    assert_eq!(out.status, Status::Applied);
    assert_eq!(out.version, 2);
    assert_eq!(out.data, obj(json!({"a": 2})));
    assert_eq!(out.changes, obj(json!({"a": 2, "b": null})));
    assert_eq!(
        out.fields.get("b"),
        Some(&FieldMeta {
            version: 2,
            edited_at: 5,
            author: "u2".into()
        }),
        "a deleted field keeps its last write as a tombstone"
    );
}

#[test]
fn stale_update_of_untouched_fields_merges_without_conflict() {
    let v1 = write(
        &StoredDocument::absent(),
        0,
        json!({"a": 1, "b": 1}),
        None,
        "alice",
    );
    let v2 = write(&v1, 1, json!({"b": 2}), None, "bob");
    let out = merge_at(&v2, 1, &obj(json!({"a": 5})), Some(1), "carol");
    assert_eq!(out.status, Status::Merged);
    assert_eq!(out.conflict, None);
    assert_eq!(out.version, 3);
    assert_eq!(out.data, obj(json!({"a": 5, "b": 2})));
    assert_eq!(out.changes, obj(json!({"a": 5})));
}

/// The tablet that was offline for an hour: its edit is older than the one
/// stored since, so it loses that field although it arrives later.
#[test]
fn offline_edit_loses_to_a_newer_stored_edit() {
    let v1 = write(
        &StoredDocument::absent(),
        0,
        json!({"status": "planned"}),
        Some(100),
        "alice",
    );
    let v2 = write(&v1, 1, json!({"status": "running"}), Some(5_000), "bob");
    let out = merge_at(
        &v2,
        1,
        &obj(json!({"status": "paused", "notes": "jam"})),
        Some(2_000),
        "carol",
    );
    assert_eq!(out.status, Status::Merged);
    assert_eq!(out.version, 3);
    assert_eq!(out.data, obj(json!({"status": "running", "notes": "jam"})));
    assert_eq!(out.changes, obj(json!({"notes": "jam"})));
    let c = out.conflict.expect("status is in conflict");
    assert_eq!(c.fields, vec!["status"]);
    assert_eq!(c.original, obj(json!({"status": "running"})));
    assert_eq!(c.incoming, obj(json!({"status": "paused"})));
    assert_eq!(c.resolved, obj(json!({"status": "running"})));
    let (meta, winner) = &c.against["status"];
    assert_eq!((meta.edited_at, meta.author.as_str()), (5_000, "bob"));
    assert_eq!(*winner, Winner::Stored);
}

#[test]
fn newer_stale_edit_wins_its_conflict() {
    let v1 = write(
        &StoredDocument::absent(),
        0,
        json!({"status": "planned"}),
        Some(100),
        "alice",
    );
    let v2 = write(&v1, 1, json!({"status": "running"}), Some(5_000), "bob");
    let out = merge_at(
        &v2,
        1,
        &obj(json!({"status": "paused"})),
        Some(6_000),
        "carol",
    );
    let c = out.conflict.expect("conflict");
    assert_eq!(c.resolved, obj(json!({"status": "paused"})));
    assert_eq!(c.against["status"].1, Winner::Incoming);
    assert_eq!(out.data, obj(json!({"status": "paused"})));
    assert_eq!(out.version, 3);
}

#[test]
fn future_edit_times_are_clamped_to_the_server_clock() {
    assert_eq!(effective_edit_time(Some(NOW + 3_600_000), NOW), NOW);
    assert_eq!(effective_edit_time(Some(5), NOW), 5);
    assert_eq!(effective_edit_time(None, NOW), NOW);
    // "zed" edited at NOW; "amy" claims an edit an hour ahead. Clamped, the
    // two tie at NOW and the tie-break (greater author) keeps zed's value.
    let v1 = write(&StoredDocument::absent(), 0, json!({"x": 0}), None, "u0");
    let v2 = write(&v1, 1, json!({"x": "zed"}), Some(NOW), "zed");
    let out = merge_at(
        &v2,
        1,
        &obj(json!({"x": "amy"})),
        Some(NOW + 3_600_000),
        "amy",
    );
    assert_eq!(out.edited_at, NOW);
    assert_eq!(out.data["x"], "zed");
    assert!(out.changes.is_empty());
}

#[test]
fn equal_times_go_to_the_greater_author_in_either_order() {
    let base = write(&StoredDocument::absent(), 0, json!({"x": 0}), Some(1), "u0");
    for order in [["amy", "bob"], ["bob", "amy"]] {
        let mut doc = base.clone();
        for author in order {
            doc = write(&doc, 1, json!({ "x": author }), Some(50), author);
        }
        assert_eq!(doc.data["x"], "bob", "order {order:?}");
        assert_eq!(doc.fields["x"].author, "bob");
    }
}

#[test]
fn same_author_same_time_goes_to_the_incoming_write() {
    let base = write(&StoredDocument::absent(), 0, json!({"x": 0}), Some(1), "u0");
    let v2 = write(&base, 1, json!({"x": "first"}), Some(50), "amy");
    let out = merge_at(&v2, 1, &obj(json!({"x": "second"})), Some(50), "amy");
    assert_eq!(out.data["x"], "second");
    assert_eq!(
        out.conflict.expect("conflict").against["x"].1,
        Winner::Incoming
    );
}

#[test]
fn a_base_version_from_the_future_is_refused() {
    let v1 = write(&StoredDocument::absent(), 0, json!({"x": 0}), None, "u0");
    let changes = obj(json!({"x": 1}));
    let err = merge(
        &v1,
        &Update {
            base_version: 2,
            changes: &changes,
            edited_at: None,
            author: "u1",
            now: NOW,
        },
    )
    .unwrap_err();
    assert_eq!(
        err,
        FutureBase {
            base_version: 2,
            current: 1
        }
    );
}

#[test]
fn losing_every_field_writes_no_version() {
    let v1 = write(&StoredDocument::absent(), 0, json!({"x": 0}), Some(1), "u0");
    let v2 = write(&v1, 1, json!({"x": 1}), Some(100), "bob");
    let out = merge_at(&v2, 1, &obj(json!({"x": 2})), Some(50), "amy");
    assert_eq!(out.status, Status::Merged);
    assert_eq!(out.version, 2);
    assert!(out.changes.is_empty());
    assert_eq!(out.data, v2.data);
    assert_eq!(out.conflict.expect("conflict").fields, vec!["x"]);
}

#[test]
fn agreeing_with_a_newer_value_is_not_a_conflict() {
    let v1 = write(&StoredDocument::absent(), 0, json!({"x": 0}), Some(1), "u0");
    let v2 = write(&v1, 1, json!({"x": "done"}), Some(100), "bob");
    let out = merge_at(&v2, 1, &obj(json!({"x": "done"})), Some(50), "amy");
    assert_eq!(out.conflict, None);
    assert!(
        out.changes.is_empty(),
        "the older identical edit loses quietly"
    );
}

/// A deletion of a field nobody set still counts as the field's latest
/// write: an older concurrent set must not bring it back.
#[test]
fn deleting_an_absent_field_beats_an_older_concurrent_set_in_either_order() {
    let base = write(&StoredDocument::absent(), 0, json!({"y": 0}), Some(1), "u0");
    let set_old = json!({"x": "old"});
    let delete_new = json!({"x": null});
    for order in [
        [(&set_old, 10, "amy"), (&delete_new, 20, "bob")],
        [(&delete_new, 20, "bob"), (&set_old, 10, "amy")],
    ] {
        let mut doc = base.clone();
        for (changes, t, author) in order {
            doc = write(&doc, 1, changes.clone(), Some(t), author);
        }
        assert_eq!(doc.data, obj(json!({"y": 0})), "{order:?}");
    }
}

// ---------------------------------------------------------------------------
// properties

const FIELDS: [&str; 4] = ["a", "b", "c", "d"];

fn arb_changes() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(
        prop::sample::select(FIELDS.to_vec()),
        prop::option::of(0..3i64),
        1..=4,
    )
    .prop_map(|m| {
        m.into_iter()
            .map(|(k, v)| (k.to_string(), v.map_or(Value::Null, Value::from)))
            .collect()
    })
}

/// Updates from distinct authors with edit times drawn from a small range
/// (so ties happen), each as (author, editedAt, changes).
fn arb_concurrent() -> impl Strategy<Value = Vec<(String, i64, Map<String, Value>)>> {
    prop::collection::vec((0..4i64, arb_changes()), 1..8).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (t, c))| (format!("u{}", (i * 7) % 10 + i * 10), 1_000 + t, c))
            .collect()
    })
}

fn run_concurrent(
    initial: &StoredDocument,
    updates: &[(String, i64, Map<String, Value>)],
) -> StoredDocument {
    let base = initial.version;
    updates
        .iter()
        .fold(initial.clone(), |doc, (author, t, changes)| {
            let out = merge_at(&doc, base, changes, Some(*t), author);
            commit(&doc, &out, author)
        })
}

/// Per field, the value of the write with the greatest (editedAt, author).
fn register_max(
    initial: &Map<String, Value>,
    updates: &[(String, i64, Map<String, Value>)],
) -> Map<String, Value> {
    let mut best: BTreeMap<&str, (i64, &str, &Value)> = BTreeMap::new();
    for (author, t, changes) in updates {
        for (field, value) in changes {
            let entry = best.entry(field).or_insert((*t, author, value));
            if (*t, author.as_str()) >= (entry.0, entry.1) {
                *entry = (*t, author, value);
            }
        }
    }
    let mut data = initial.clone();
    for (field, (_, _, value)) in best {
        if value.is_null() {
            data.remove(field);
        } else {
            data.insert(field.to_string(), value.clone());
        }
    }
    data
}

proptest! {
    /// The same concurrent updates (same base, same edit times) end on the
    /// same data in any arrival order, and that data is, per field, the
    /// latest edit.
    #[test]
    fn concurrent_updates_converge_in_any_arrival_order(
        (updates, shuffled) in arb_concurrent()
            .prop_flat_map(|u| (Just(u.clone()), Just(u).prop_shuffle()))
    ) {
        let initial = write(
            &StoredDocument::absent(), 0, json!({"a": "init", "d": "init"}), Some(1), "u0",
        );
        let one = run_concurrent(&initial, &updates);
        let other = run_concurrent(&initial, &shuffled);
        prop_assert_eq!(&one.data, &other.data);
        prop_assert_eq!(&one.data, &register_max(&initial.data, &updates));
    }

    /// Any sequence of updates with any base at or below the current version:
    /// each write takes exactly the next version, and replaying the changes
    /// of the written versions in order rebuilds the document.
    #[test]
    fn versions_are_consecutive_and_history_replays_to_the_document(
        steps in prop::collection::vec((0..4i64, 0..2_000i64, 0..5usize, arb_changes()), 1..30)
    ) {
        let mut doc = StoredDocument::absent();
        let mut history: Vec<(i64, Map<String, Value>)> = Vec::new();
        for (lag, t, who, changes) in steps {
            let base = (doc.version - lag).max(0);
            let author = format!("u{who}");
            let out = merge_at(&doc, base, &changes, Some(t), &author);
            if out.changes.is_empty() {
                prop_assert_eq!(out.version, doc.version);
            } else {
                prop_assert_eq!(out.version, doc.version + 1);
                history.push((out.version, out.changes.clone()));
            }
            doc = commit(&doc, &out, &author);
        }
        let versions: Vec<i64> = history.iter().map(|(v, _)| *v).collect();
        prop_assert_eq!(versions, (1..=doc.version).collect::<Vec<_>>());
        let mut replayed = Map::new();
        for (_, changes) in &history {
            for (k, v) in changes {
                if v.is_null() { replayed.remove(k); } else { replayed.insert(k.clone(), v.clone()); }
            }
        }
        prop_assert_eq!(replayed, doc.data);
    }
}
