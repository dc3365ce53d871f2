//! What a document may cost (issue 10): field metadata and tombstones count
//! toward the limits and old tombstones are compacted without breaking the
//! last-write-wins rules (item 9); `clientMutationId` records hold no copy
//! of the document and expire with the idempotency TTL (item 13).

mod common;

use common::client::Client;
use serde_json::{Map, Value, json};
use switchyard::domain::Role;
use switchyard::store::documents::DocKey;

fn backends() -> Vec<String> {
    vec![common::sqlite_url(), common::postgres_url()]
}

async fn connect(app: &common::TestApp, company: &str) -> Client {
    let mut c = Client::with_token(&app.url(), &app.token("s1", company, Role::Supervisor)).await;
    c.expect("session").await;
    c
}

fn update(id: &str, base: i64, changes: Value) -> Value {
    json!({ "type": "checklist", "id": id, "baseVersion": base, "changes": changes })
}

/// `{ "p{n}-{i}": value }` for `i` in `range`.
fn fields(prefix: &str, range: std::ops::Range<usize>, value: Value) -> Value {
    Value::Object(
        range
            .map(|i| (format!("{prefix}-{i}"), value.clone()))
            .collect::<Map<_, _>>(),
    )
}

async fn stored_fields(db: &str, company: &str, id: &str) -> usize {
    let store = switchyard::store::connect(db).await.expect("store");
    let key = DocKey {
        company_id: company.into(),
        doc_type: "checklist".into(),
        doc_id: id.into(),
    };
    store
        .document(&key)
        .await
        .expect("read")
        .map_or(0, |d| d.fields.len())
}

#[tokio::test]
async fn field_metadata_and_tombstones_are_bounded() {
    for db in backends() {
        let app = common::spawn_app(
            &db,
            &[
                ("DOCUMENT_MAX_FIELDS", "100"),
                ("DOCUMENT_MAX_BYTES", "8192"),
            ],
        )
        .await;
        let company = common::unique("c");
        let mut s = connect(&app, &company).await;
        // One update may not name more fields than a document may have.
        let ack = s
            .emit_with_ack(
                "document:update",
                update("1", 0, fields("a", 0..150, Value::Null)),
            )
            .await;
        assert_eq!(ack["error"]["code"], "PAYLOAD_TOO_LARGE", "{db}: {ack}");
        // Tombstones of 20 × 80 deleted fields: the oldest are compacted, so
        // the document never holds more than 100 entries of metadata.
        let mut version = 0;
        for n in 0..20 {
            let ack = s
                .emit_with_ack(
                    "document:update",
                    update("1", version, fields(&format!("t{n}"), 0..80, Value::Null)),
                )
                .await;
            assert_eq!(ack["ok"], true, "{db}: {ack}");
            version = ack["version"].as_i64().unwrap();
            assert_eq!(ack["document"]["data"], json!({}));
        }
        let held = stored_fields(&db, &company, "1").await;
        assert!(held <= 100, "{db}: {held} field entries stored");
        // A writer whose base predates compacted deletions cannot be merged
        // exactly: refused with CONFLICT, like a future base.
        let ack = s
            .emit_with_ack("document:update", update("1", 1, json!({ "t0-0": "back" })))
            .await;
        assert_eq!(ack["error"]["code"], "CONFLICT", "{db}: {ack}");
        assert_eq!(ack["error"]["details"]["field"], "baseVersion", "{ack}");
        // Fields with retained metadata still merge by the usual rules: the
        // latest tombstone wins against an older edit.
        let ack = s
            .emit_with_ack(
                "document:update",
                json!({ "type": "checklist", "id": "1", "baseVersion": version - 1,
                        "changes": { "t19-0": "old" }, "editedAt": 1_000 }),
            )
            .await;
        assert_eq!(ack["status"], "merged", "{db}: {ack}");
        assert_eq!(ack["document"]["data"], json!({}), "{db}: {ack}");
        // Live fields' metadata counts toward DOCUMENT_MAX_BYTES: 40 fields
        // with 100-byte names are 4.5 kB of data but over 8 kB with metadata.
        let long = "n".repeat(100);
        let ack = s
            .emit_with_ack(
                "document:update",
                update("2", 0, fields(&long, 0..40, json!(0))),
            )
            .await;
        assert_eq!(ack["error"]["code"], "PAYLOAD_TOO_LARGE", "{db}: {ack}");
        app.stop().await;
    }
}

async fn mutation_rows(db: &str, company: &str) -> Vec<i64> {
    let sql_pg =
        "SELECT octet_length(result::text)::BIGINT FROM document_mutations WHERE company_id = $1";
    let sql_lite = "SELECT length(result) FROM document_mutations WHERE company_id = ?";
    if db.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(db).await.expect("pg");
        sqlx::query_scalar(sql_pg)
            .bind(company)
            .fetch_all(&pool)
            .await
            .expect("rows")
    } else {
        let pool = sqlx::SqlitePool::connect(db).await.expect("sqlite");
        sqlx::query_scalar(sql_lite)
            .bind(company)
            .fetch_all(&pool)
            .await
            .expect("rows")
    }
}

async fn age_mutations(db: &str, company: &str) {
    let old = switchyard::domain::now_ms() - switchyard::store::IDEMPOTENCY_TTL_MS - 60_000;
    if db.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(db).await.expect("pg");
        sqlx::query("UPDATE document_mutations SET created_at = $1 WHERE company_id = $2")
            .bind(old)
            .bind(company)
            .execute(&pool)
            .await
            .expect("age");
    } else {
        let pool = sqlx::SqlitePool::connect(db).await.expect("sqlite");
        sqlx::query("UPDATE document_mutations SET created_at = ? WHERE company_id = ?")
            .bind(old)
            .bind(company)
            .execute(&pool)
            .await
            .expect("age");
    }
}

#[tokio::test]
async fn mutation_records_hold_no_document_copy_and_expire_with_the_idempotency_ttl() {
    for db in backends() {
        let app = common::spawn_app(&db, &[]).await;
        let company = common::unique("c");
        // A 200 kB document, written over HTTP (events are limited to 64 kB).
        let res = reqwest::Client::new()
            .patch(format!(
                "{}/api/v1/documents/checklist/big?companyId={company}",
                app.url()
            ))
            .bearer_auth("test-key")
            .json(&json!({ "baseVersion": 0, "changes": { "blob": "x".repeat(200_000) } }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{db}");
        let mut s = connect(&app, &company).await;
        let mutation = |n: i64| {
            json!({ "type": "checklist", "id": "big", "baseVersion": n,
                    "changes": { "count": n }, "clientMutationId": format!("m{n}") })
        };
        let first = s.emit_with_ack("document:update", mutation(1)).await;
        assert_eq!(first["version"], 2, "{db}: {first}");
        // A retry answers like the first time and writes nothing.
        let retry = s.emit_with_ack("document:update", mutation(1)).await;
        assert_eq!(retry["duplicate"], true, "{db}: {retry}");
        for key in ["status", "version", "document"] {
            assert_eq!(retry[key], first[key], "{db}: {key}");
        }
        for n in 2..=10 {
            let ack = s.emit_with_ack("document:update", mutation(n)).await;
            assert_eq!(ack["version"], n + 1, "{db}: {ack}");
        }
        // A retry after others wrote: the first outcome, the current document.
        let retry = s
            .emit_with_ack(
                "document:update",
                json!({ "type": "checklist", "id": "big", "baseVersion": 1,
                        "changes": { "count": 1 }, "clientMutationId": "m1" }),
            )
            .await;
        assert_eq!(retry["duplicate"], true, "{db}: {retry}");
        assert_eq!(retry["version"], 2, "{retry}");
        assert_eq!(retry["document"]["version"], 11, "{db}");
        let sizes = mutation_rows(&db, &company).await;
        assert_eq!(sizes.len(), 10, "{db}");
        assert!(
            sizes.iter().all(|s| *s < 2048),
            "{db}: mutation records of {sizes:?} bytes"
        );
        // Records older than the idempotency TTL are pruned.
        age_mutations(&db, &company).await;
        let store = switchyard::store::connect(&db).await.expect("store");
        store
            .prune(switchyard::domain::now_ms())
            .await
            .expect("prune");
        assert!(mutation_rows(&db, &company).await.is_empty(), "{db}");
        app.stop().await;
    }
}
