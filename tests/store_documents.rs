//! Document store contract tests: the same cases on PostgreSQL and SQLite.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Map, Value, json};
use switchyard::documents::lww;
use switchyard::store::documents::{DocKey, DocumentWrite, StoredDocument};
use switchyard::store::{self, Store, StoreError};

fn key(company: &str, id: &str) -> DocKey {
    DocKey {
        company_id: company.into(),
        doc_type: "order".into(),
        doc_id: id.into(),
    }
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

/// The write the merge decides for `changes` over `current`.
fn decide(
    current: &StoredDocument,
    base: i64,
    changes: &Map<String, Value>,
    author: &str,
    now: i64,
) -> Option<DocumentWrite> {
    let out = lww::merge(
        current,
        &lww::Update {
            base_version: base,
            changes,
            edited_at: None,
            author,
            now,
        },
    )
    .expect("base not in the future");
    (!out.changes.is_empty()).then(|| DocumentWrite {
        version: out.version,
        data: out.data,
        fields: out.fields,
        changes: out.changes,
        updated_by: author.into(),
        edited_at: out.edited_at,
        updated_at: now,
        compacted_version: current.compacted_version,
    })
}

/// One update based on the current version, committed; returns its version.
async fn write(store: &dyn Store, k: &DocKey, changes: Value, author: &str) -> i64 {
    let lock = store.lock_document(k, None).await.expect("lock");
    let current = lock.current().clone();
    let w = decide(&current, current.version, &obj(changes), author, 1_000)
        .expect("something to write");
    let version = w.version;
    lock.commit(Some(&w), &json!({ "version": version }))
        .await
        .expect("commit");
    version
}

#[tokio::test]
async fn create_read_update_and_history() {
    for (backend, store) in common::stores().await {
        let company = common::unique("c");
        let k = key(&company, "1");
        assert_eq!(store.document(&k).await.unwrap(), None, "{backend}");
        let lock = store.lock_document(&k, None).await.unwrap();
        assert_eq!(lock.current(), &StoredDocument::absent(), "{backend}");
        drop(lock);
        assert_eq!(
            write(
                store.as_ref(),
                &k,
                json!({"status": "planned", "notes": "n"}),
                "u1"
            )
            .await,
            1
        );
        let doc = store.document(&k).await.unwrap().expect("exists");
        assert_eq!(doc.version, 1, "{backend}");
        assert_eq!(doc.data, obj(json!({"status": "planned", "notes": "n"})));
        assert_eq!(doc.updated_by, "u1");
        assert_eq!(doc.fields["status"].version, 1);
        assert_eq!(
            write(
                store.as_ref(),
                &k,
                json!({"status": "running", "notes": null}),
                "u2"
            )
            .await,
            2
        );
        let doc = store.document(&k).await.unwrap().expect("exists");
        assert_eq!(doc.data, obj(json!({"status": "running"})), "{backend}");
        assert_eq!(doc.fields["notes"].version, 2, "{backend}: tombstone kept");
        assert_eq!(doc.updated_by, "u2");
        let history = store.document_history(&k, 0, 10).await.unwrap();
        assert_eq!(
            history
                .iter()
                .map(|v| (v.version, v.changes.clone(), v.updated_by.as_str()))
                .collect::<Vec<_>>(),
            vec![
                (1, obj(json!({"status": "planned", "notes": "n"})), "u1"),
                (2, obj(json!({"status": "running", "notes": null})), "u2"),
            ],
            "{backend}"
        );
        let page = store.document_history(&k, 1, 10).await.unwrap();
        assert_eq!(page.len(), 1, "{backend}");
        assert_eq!(page[0].version, 2);
        assert_eq!(store.document_history(&k, 0, 1).await.unwrap().len(), 1);
        // The same type and id in another company is another document.
        let other = key(&common::unique("c"), "1");
        assert_eq!(store.document(&other).await.unwrap(), None, "{backend}");
        assert!(
            store
                .document_history(&other, 0, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }
}

#[tokio::test]
async fn a_write_must_follow_the_locked_version_and_a_dropped_lock_writes_nothing() {
    for (backend, store) in common::stores().await {
        let k = key(&common::unique("c"), "cas");
        write(store.as_ref(), &k, json!({"a": 1}), "u1").await;
        // A write that skips a version is refused, and nothing of it remains.
        let lock = store.lock_document(&k, None).await.unwrap();
        let current = lock.current().clone();
        let mut w = decide(&current, 1, &obj(json!({"a": 2})), "u1", 2_000).unwrap();
        w.version = 3;
        let err = lock.commit(Some(&w), &json!({})).await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{backend}: {err}");
        assert_eq!(
            store.document(&k).await.unwrap().unwrap().version,
            1,
            "{backend}"
        );
        // Decided but never committed: rolled back when dropped.
        let lock = store.lock_document(&k, Some("m-dropped")).await.unwrap();
        drop(lock);
        let doc = store.document(&k).await.unwrap().unwrap();
        assert_eq!(
            (doc.version, doc.data),
            (1, obj(json!({"a": 1}))),
            "{backend}"
        );
        // A new document whose first writer gave up does not exist.
        let fresh = key(&k.company_id, "never");
        drop(store.lock_document(&fresh, None).await.unwrap());
        assert_eq!(store.document(&fresh).await.unwrap(), None, "{backend}");
        assert_eq!(
            write(store.as_ref(), &fresh, json!({"x": 1}), "u1").await,
            1,
            "{backend}"
        );
        assert_eq!(store.document_history(&k, 0, 10).await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn a_mutation_key_remembers_the_first_result() {
    for (backend, store) in common::stores().await {
        let k = key(&common::unique("c"), "idem");
        let lock = store.lock_document(&k, Some("u:u1:m1")).await.unwrap();
        assert_eq!(lock.first_result(), None, "{backend}");
        let w = decide(lock.current(), 0, &obj(json!({"a": 1})), "u1", 1).unwrap();
        lock.commit(Some(&w), &json!({ "status": "applied", "version": 1 }))
            .await
            .unwrap();
        let again = store.lock_document(&k, Some("u:u1:m1")).await.unwrap();
        assert_eq!(
            again.first_result(),
            Some(&json!({ "status": "applied", "version": 1 })),
            "{backend}"
        );
        drop(again);
        // Keys are per document: the same key on another document is new.
        let elsewhere = store
            .lock_document(&key(&k.company_id, "idem-2"), Some("u:u1:m1"))
            .await
            .unwrap();
        assert_eq!(elsewhere.first_result(), None, "{backend}");
        drop(elsewhere);
        // A result without a write (every field lost) is remembered too.
        let lock = store.lock_document(&k, Some("u:u1:m2")).await.unwrap();
        lock.commit(None, &json!({ "status": "merged", "version": 1 }))
            .await
            .unwrap();
        let again = store.lock_document(&k, Some("u:u1:m2")).await.unwrap();
        assert_eq!(
            again.first_result().map(|r| r["status"].clone()),
            Some(json!("merged"))
        );
        drop(again);
        assert_eq!(
            store.document(&k).await.unwrap().unwrap().version,
            1,
            "{backend}"
        );
    }
}

/// Writers increment one counter field, each reading the value under the
/// lock: no increment may be lost and every version is used exactly once.
async fn hammer(nodes: Vec<Arc<dyn Store>>, k: DocKey, writers_per_node: usize, each: usize) {
    let mut tasks = Vec::new();
    for (n, store) in nodes.into_iter().enumerate() {
        for w in 0..writers_per_node {
            let store = store.clone();
            let k = k.clone();
            tasks.push(tokio::spawn(async move {
                let author = format!("n{n}w{w}");
                for _ in 0..each {
                    let lock = store.lock_document(&k, None).await.expect("lock");
                    let current = lock.current().clone();
                    let count = current
                        .data
                        .get("count")
                        .and_then(Value::as_i64)
                        .unwrap_or(0);
                    let mut changes = obj(json!({ "count": count + 1 }));
                    changes.insert(author.clone(), json!(true));
                    let w = decide(&current, current.version, &changes, &author, 1).unwrap();
                    lock.commit(Some(&w), &Value::Null).await.expect("commit");
                }
            }));
        }
    }
    for t in tasks {
        t.await.expect("writer task");
    }
}

async fn assert_every_version_once(store: &dyn Store, k: &DocKey, total: i64) {
    let doc = store.document(k).await.unwrap().expect("exists");
    assert_eq!(doc.version, total);
    assert_eq!(doc.data["count"], json!(total), "no lost update");
    let mut versions = Vec::new();
    let mut after = 0;
    loop {
        let page = store.document_history(k, after, 97).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.version;
        versions.extend(page.iter().map(|v| v.version));
    }
    assert_eq!(versions, (1..=total).collect::<Vec<_>>());
    let distinct: BTreeSet<i64> = versions.iter().copied().collect();
    assert_eq!(distinct.len() as i64, total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_on_two_postgres_pools_use_each_version_once() {
    let url = common::postgres_url();
    let a = store::connect(&url).await.expect("postgres");
    a.migrate().await.expect("migrations");
    let b = store::connect(&url).await.expect("postgres");
    let k = key(&common::unique("c"), "hot");
    // 2 nodes × 4 writers × 50 updates, several of them creating the document.
    hammer(vec![a.clone(), b], k.clone(), 4, 50).await;
    assert_every_version_once(a.as_ref(), &k, 400).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_on_sqlite_use_each_version_once() {
    let lite = store::connect(&common::sqlite_url()).await.expect("sqlite");
    lite.migrate().await.expect("migrations");
    let k = key(&common::unique("c"), "hot");
    hammer(vec![lite.clone()], k.clone(), 6, 40).await;
    assert_every_version_once(lite.as_ref(), &k, 240).await;
}

/// Several queued updates in one turn: consecutive versions committed
/// together with their history rows and mutation results; a chain with a
/// hole is refused whole.
#[tokio::test]
async fn one_turn_commits_consecutive_versions_and_their_mutation_results() {
    for (backend, store) in common::stores().await {
        let k = key(&common::unique("c"), "turn");
        let keys = vec!["u:a:1".to_string(), "u:b:1".to_string()];
        let lock = store.lock_document_for(&k, keys.clone()).await.unwrap();
        assert_eq!(lock.first_result_of("u:a:1"), None, "{backend}");
        let w1 = decide(lock.current(), 0, &obj(json!({"a": 1})), "a", 1_000).unwrap();
        let after1 = StoredDocument {
            version: w1.version,
            data: w1.data.clone(),
            fields: w1.fields.clone(),
            created_at: 1_000,
            updated_at: 1_000,
            updated_by: "a".into(),
            compacted_version: 0,
        };
        let w2 = decide(&after1, 1, &obj(json!({"b": 2})), "b", 2_000).unwrap();
        let mut hole = w2.clone();
        hole.version = 3;
        let err = lock.commit_all(&[w1.clone(), hole], &[]).await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{backend}: {err}");
        assert_eq!(store.document(&k).await.unwrap(), None, "{backend}");
        let lock = store.lock_document_for(&k, keys.clone()).await.unwrap();
        lock.commit_all(
            &[w1, w2],
            &[
                (
                    keys[0].clone(),
                    json!({ "status": "applied", "version": 1 }),
                ),
                (
                    keys[1].clone(),
                    json!({ "status": "applied", "version": 2 }),
                ),
            ],
        )
        .await
        .unwrap();
        let doc = store.document(&k).await.unwrap().unwrap();
        assert_eq!(
            (
                doc.version,
                doc.data,
                doc.created_at,
                doc.updated_by.as_str()
            ),
            (2, obj(json!({"a": 1, "b": 2})), 1_000, "b"),
            "{backend}"
        );
        let history = store.document_history(&k, 0, 10).await.unwrap();
        assert_eq!(
            history.iter().map(|v| v.version).collect::<Vec<_>>(),
            vec![1, 2],
            "{backend}"
        );
        assert_eq!(history[1].changes, obj(json!({"b": 2})));
        let again = store
            .lock_document_for(&k, vec![keys[1].clone(), "u:c:9".into()])
            .await
            .unwrap();
        assert_eq!(
            again.first_result_of(&keys[1]),
            Some(&json!({ "status": "applied", "version": 2 })),
            "{backend}"
        );
        assert_eq!(again.first_result_of("u:c:9"), None, "{backend}");
    }
}
