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
