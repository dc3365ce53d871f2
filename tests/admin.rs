//! The admin API on one node without Redis (SQLite): the node answers alone
//! (`incomplete: []`), a kick sends `session:revoked` and ends only the
//! target user's session, statistics count it; the two-node cluster is
//! `clients/tests/test/admin.test.js`.

mod common;

use common::client::Client;
use serde_json::Value;
use switchyard::domain::Role;

async fn admin(method: reqwest::Method, url: String) -> (u16, Value) {
    let res = reqwest::Client::new()
        .request(method, url)
        .bearer_auth("admin-key")
        .send()
        .await
        .expect("request");
    (res.status().as_u16(), res.json().await.expect("json"))
}

#[tokio::test]
async fn a_single_node_lists_kicks_and_counts_its_own_sessions() {
    let app = common::spawn_app(&common::sqlite_url(), &[("ADMIN_API_KEYS", "admin-key")]).await;
    let mut target = Client::with_token(&app.url(), &app.token("u1", "acme", Role::Operator)).await;
    target.expect("session").await;
    let mut bystander =
        Client::with_token(&app.url(), &app.token("u1", "other", Role::Operator)).await;
    bystander.expect("session").await;

    let (status, listing) = admin(
        reqwest::Method::GET,
        format!("{}/api/v1/admin/connections?companyId=acme", app.url()),
    )
    .await;
    assert_eq!(status, 200, "{listing}");
    assert_eq!(listing["incomplete"], serde_json::json!([]));
    let rows = listing["connections"].as_array().expect("array");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["userId"], "u1");
    assert_eq!(rows[0]["node"], app.config.node_id.as_str());

    let (status, stats) = admin(
        reqwest::Method::GET,
        format!("{}/api/v1/admin/stats", app.url()),
    )
    .await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["connections"], 2);
    assert_eq!(stats["companies"].as_array().map(Vec::len), Some(2));

    let (status, kicked) = admin(
        reqwest::Method::DELETE,
        format!(
            "{}/api/v1/admin/users/u1/connections?companyId=acme",
            app.url()
        ),
    )
    .await;
    assert_eq!(status, 200, "{kicked}");
    assert_eq!(kicked["disconnected"], 1);
    let revoked = target.expect("session:revoked").await;
    assert_eq!(revoked[0]["reason"], "REVOKED");
    // The bystander (same user id, another company) is still served.
    let pong = bystander.emit_with_ack("ping", serde_json::json!({})).await;
    assert_eq!(pong["pong"], true, "{pong}");
    // And the kicked session is gone from the listing.
    let mut left = usize::MAX;
    for _ in 0..40 {
        let (_, listing) = admin(
            reqwest::Method::GET,
            format!("{}/api/v1/admin/connections?companyId=acme", app.url()),
        )
        .await;
        left = listing["connections"].as_array().map_or(0, Vec::len);
        if left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(left, 0);
    app.stop().await;
}

/// `GET /api/v1/admin/connections?limit=&cursor=`: pages in (node, socketId)
/// order that together list every connection once; `nextCursor` is null on
/// the last page; out-of-range limits and foreign cursors are 400s naming
/// the field.
#[tokio::test]
async fn the_listing_comes_in_pages_that_cover_every_connection_once() {
    let app = common::spawn_app(&common::sqlite_url(), &[("ADMIN_API_KEYS", "admin-key")]).await;
    let mut clients = Vec::new();
    for n in 0..5 {
        let token = app.token(&format!("u{n}"), "acme", Role::Operator);
        let mut c = Client::with_token(&app.url(), &token).await;
        c.expect("session").await;
        clients.push(c);
    }
    let mut expected: Vec<String> = clients
        .iter()
        .map(|c| c.sid.clone().expect("sid"))
        .collect();
    expected.sort();
    let base = format!("{}/api/v1/admin/connections", app.url());

    let (status, all) = admin(reqwest::Method::GET, base.clone()).await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["nextCursor"], Value::Null, "one page by default: {all}");
    assert_eq!(all["connections"].as_array().map(Vec::len), Some(5));

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let url = match &cursor {
            None => format!("{base}?limit=2"),
            Some(c) => format!("{base}?limit=2&cursor={c}"),
        };
        let (status, page) = admin(reqwest::Method::GET, url).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["incomplete"], serde_json::json!([]));
        let rows = page["connections"].as_array().expect("rows");
        assert!(rows.len() <= 2, "{page}");
        seen.extend(
            rows.iter()
                .map(|r| r["socketId"].as_str().expect("id").to_string()),
        );
        pages += 1;
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => {
                assert_eq!(page["nextCursor"], Value::Null);
                break;
            }
        }
        assert!(pages < 10, "the cursor does not advance");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, expected, "every connection once, by socket id");

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("cursor=zz", "cursor"),
        ("cursor=5b5d", "cursor"),
    ] {
        let (status, body) = admin(reqwest::Method::GET, format!("{base}?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["code"], "VALIDATION_FAILED", "{query}");
        assert_eq!(body["error"]["details"]["field"], field, "{query}: {body}");
    }
    app.stop().await;
}
