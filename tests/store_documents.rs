//! Document store contract tests: the same cases on PostgreSQL and SQLite.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use switchyard::documents::lww;
use switchyard::store::documents::{
    DocCommit, DocKey, DocumentWrite, LockWait, StoredDocument, Wanted,
};
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

/// Several documents in one lock: new and existing ones held together,
/// each written (or not) as its commit says, every history row and
/// mutation result under its own document, all in one transaction; a key
/// asked twice and a commit list that does not match are refused, and a
/// refused commit writes nothing for any of them.
#[tokio::test]
async fn one_lock_holds_several_documents_and_commits_them_together() {
    for (backend, store) in common::stores().await {
        let company = common::unique("c");
        let (a, b, c) = (key(&company, "a"), key(&company, "b"), key(&company, "c"));
        write(store.as_ref(), &b, json!({"x": 1}), "u").await;
        let wanted = |k: &DocKey, m: &[&str]| Wanted {
            key: k.clone(),
            mutation_keys: m.iter().map(|s| s.to_string()).collect(),
        };
        let twice = store
            .lock_documents(vec![wanted(&a, &[]), wanted(&a, &[])], LockWait::Wait)
            .await;
        assert!(
            matches!(twice.err(), Some(StoreError::Corrupt(_))),
            "{backend}"
        );

        let ask = || {
            vec![
                wanted(&c, &["m:c"]),
                wanted(&a, &["m:a"]),
                wanted(&b, &["m:b"]),
            ]
        };
        let lock = store.lock_documents(ask(), LockWait::Wait).await.unwrap();
        let held: Vec<&DocKey> = lock.held().iter().map(|h| &h.key).collect();
        assert_eq!(held, vec![&c, &a, &b], "{backend}: in the order asked");
        assert_eq!(lock.held()[2].current.version, 1, "{backend}");
        assert!(!lock.held()[0].current.exists(), "{backend}");
        let wa = decide(
            &lock.held()[1].current,
            0,
            &obj(json!({"y": 2})),
            "ua",
            2_000,
        )
        .unwrap();
        let wb = decide(
            &lock.held()[2].current,
            1,
            &obj(json!({"x": 3})),
            "ub",
            3_000,
        )
        .unwrap();
        let commits = |wa: &DocumentWrite, wb: &DocumentWrite| {
            vec![
                DocCommit::default(),
                DocCommit {
                    writes: vec![wa.clone()],
                    results: vec![("m:a".into(), json!({"version": 1}))],
                },
                DocCommit {
                    writes: vec![wb.clone()],
                    results: vec![("m:b".into(), json!({"version": 2}))],
                },
            ]
        };
        let mut short = commits(&wa, &wb);
        short.pop();
        let err = lock.commit(&short).await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{backend}: {err}");
        let mut hole = wb.clone();
        hole.version = 3;
        let lock = store.lock_documents(ask(), LockWait::Wait).await.unwrap();
        let err = lock.commit(&commits(&wa, &hole)).await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{backend}: {err}");
        assert_eq!(
            store.document(&a).await.unwrap(),
            None,
            "{backend}: nothing written"
        );
        assert_eq!(
            store.document(&b).await.unwrap().unwrap().version,
            1,
            "{backend}"
        );

        let lock = store.lock_documents(ask(), LockWait::Wait).await.unwrap();
        lock.commit(&commits(&wa, &wb)).await.unwrap();
        assert_eq!(
            store.document(&c).await.unwrap(),
            None,
            "{backend}: c not written"
        );
        let da = store.document(&a).await.unwrap().unwrap();
        assert_eq!(
            (da.version, da.data, da.created_at),
            (1, obj(json!({"y": 2})), 2_000)
        );
        let db = store.document(&b).await.unwrap().unwrap();
        assert_eq!(
            (db.version, db.data),
            (2, obj(json!({"x": 3}))),
            "{backend}"
        );
        let history = store.document_history(&b, 0, 10).await.unwrap();
        assert_eq!(
            history.iter().map(|v| v.version).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(history[1].updated_by, "ub", "{backend}");

        let lock = store.lock_documents(ask(), LockWait::Wait).await.unwrap();
        assert_eq!(lock.held()[0].firsts.get("m:c"), None, "{backend}");
        assert_eq!(
            lock.held()[1].firsts.get("m:a"),
            Some(&json!({"version": 1})),
            "{backend}"
        );
        assert_eq!(
            lock.held()[2].firsts.get("m:b"),
            Some(&json!({"version": 2})),
            "{backend}"
        );
        assert_eq!(
            lock.held()[2].firsts.get("m:a"),
            None,
            "{backend}: per document"
        );
    }
}

/// On PostgreSQL a lock that may skip leaves out, at once, a document
/// another writer holds, and takes the rest (new documents included); one
/// that waits gets held and being-created ones once their writers are done.
/// (A skipping lock still waits for a document another writer is creating
/// at that very moment: an insert cannot skip.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipping_leaves_out_documents_another_writer_holds() {
    let url = common::fresh_postgres("sy_skip_").await;
    let store = store::connect(&url).await.expect("postgres");
    store.migrate().await.expect("migrations");
    let company = common::unique("c");
    let (held_elsewhere, new_elsewhere, free, fresh) = (
        key(&company, "held"),
        key(&company, "creating"),
        key(&company, "free"),
        key(&company, "fresh"),
    );
    write(store.as_ref(), &held_elsewhere, json!({"x": 1}), "u").await;
    write(store.as_ref(), &free, json!({"x": 1}), "u").await;
    let other = store.lock_document(&held_elsewhere, None).await.unwrap();
    let ask = |keys: &[&DocKey]| -> Vec<Wanted> {
        keys.iter()
            .map(|k| Wanted {
                key: (*k).clone(),
                mutation_keys: vec![],
            })
            .collect()
    };
    let lock = tokio::time::timeout(
        Duration::from_secs(2),
        store.lock_documents(ask(&[&held_elsewhere, &free, &fresh]), LockWait::SkipLocked),
    )
    .await
    .expect("skipping does not wait")
    .unwrap();
    let held: Vec<&DocKey> = lock.held().iter().map(|h| &h.key).collect();
    assert_eq!(held, vec![&free, &fresh]);
    drop(lock);

    let creating = store.lock_document(&new_elsewhere, None).await.unwrap();
    let all = [&held_elsewhere, &new_elsewhere, &free, &fresh];
    let waiting = tokio::spawn({
        let store = store.clone();
        let wanted = ask(&all);
        async move {
            let lock = store.lock_documents(wanted, LockWait::Wait).await.unwrap();
            lock.held()
                .iter()
                .map(|h| h.current.version)
                .collect::<Vec<_>>()
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "waits for the held documents");
    let w = decide(other.current(), 1, &obj(json!({"x": 2})), "o", 2_000).unwrap();
    other.commit(Some(&w), &json!({})).await.unwrap();
    drop(creating);
    let versions = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("taken once released")
        .unwrap();
    assert_eq!(versions, vec![2, 0, 1, 0]);
    common::drop_postgres(&url).await;
}
