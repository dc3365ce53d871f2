//! Storage down (SPEC §9, issue 3): durable publishes answer UNAVAILABLE /
//! 503, ephemeral traffic and new connections go on, health says degraded,
//! and everything recovers by itself when the database is back.

mod common;

use std::time::Duration;

use common::client::Client;
use common::switchable::Switchable;
use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;
use switchyard::domain::Role;

fn order(n: i64) -> Value {
    json!({ "orderId": n.to_string(), "oldStatus": "a", "newStatus": "b", "timestamp": "2026-11-22T10:00:00Z" })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_refuses_durable_keeps_ephemeral_and_recovers() {
    let db = Switchable::new("sy_outage_").await;
    let url = db.url.clone();
    let app = common::spawn_app(&url, &[]).await;
    let mut sup = Client::with_token(&app.url(), &app.token("s1", "acme", Role::Supervisor)).await;
    let mut op = Client::with_token(&app.url(), &app.token("o1", "acme", Role::Operator)).await;
    sup.expect("session").await;
    op.expect("session").await;
    let ack = sup
        .emit_with_ack(
            "event:publish",
            json!({ "type": "order:status_changed", "payload": order(1) }),
        )
        .await;
    assert_eq!(ack["offset"], 1);

    // The database goes away: no new connections, existing ones killed.
    db.set_reachable(false).await;
    let ack = sup
        .emit_with_ack(
            "event:publish",
            json!({ "type": "order:status_changed", "payload": order(2) }),
        )
        .await;
    assert_eq!(ack["error"]["code"], "UNAVAILABLE", "{ack}");
    let http = reqwest::Client::new();
    let res = http
        .post(format!("{}/api/v1/events", app.url()))
        .bearer_auth("test-key")
        .json(&json!({ "type": "order:status_changed", "companyId": "acme", "payload": order(3) }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    let ack = sup.emit_with_ack("event:publish", json!({ "type": "dashboard:refresh", "payload": { "timestamp": "2026-11-22T10:00:00Z" } })).await;
    assert_eq!(ack["ok"], true, "ephemeral events still flow: {ack}");
    assert_eq!(
        op.expect("dashboard:refresh").await[0]["timestamp"],
        "2026-11-22T10:00:00Z"
    );
    let health = http
        .get(format!("{}/health/websocket", app.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 503);
    let body: Value = health.json().await.unwrap();
    assert_eq!(
        (body["status"].as_str(), body["database"].as_str()),
        (Some("degraded"), Some("error"))
    );
    // New clients still connect and get `session` during the outage.
    let mut late = Client::with_token(&app.url(), &app.token("o2", "acme", Role::Operator)).await;
    late.expect("session").await;

    // The database comes back: durable publishing resumes with the next offset.
    db.set_reachable(true).await;
    let mut recovered = Value::Null;
    for _ in 0..50 {
        recovered = sup
            .emit_with_ack(
                "event:publish",
                json!({ "type": "order:status_changed", "payload": order(4) }),
            )
            .await;
        if recovered["ok"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(recovered["offset"], 2, "{recovered}");
    let args = op.expect("order:status_changed").await;
    assert_eq!(args[1]["offset"], 2);
    app.stop().await;
    db.drop().await;
}

/// An offline decision due while the database is away fails (settles
/// are made in batches, so a whole batch fails together); the sweep makes
/// it once the database is back: the supervisor hears exactly one
/// `user:offline`, none during the outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_decision_missed_during_an_outage_is_made_once_when_the_database_is_back() {
    let db = Switchable::new("sy_settle_").await;
    let url = db.url.clone();
    let app = common::spawn_app(&url, &[("WS_PRESENCE_GRACE_MS", "300")]).await;
    let mut sup = Client::with_token(&app.url(), &app.token("s1", "acme", Role::Supervisor)).await;
    sup.expect("session").await;
    let op = Client::with_token(&app.url(), &app.token("o1", "acme", Role::Operator)).await;
    assert_eq!(sup.expect("user:online").await[0]["userId"], "o1");
    op.disconnect();
    // The departure is stored (its socket row gone) before the outage.
    let rows = PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    let mut left = false;
    for _ in 0..100 {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM presence_sockets WHERE company_id = 'acme' AND user_id = 'o1'",
        )
        .fetch_one(&rows)
        .await
        .unwrap();
        if n == 0 {
            left = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(left, "o1's departure was stored");
    rows.close().await;

    db.set_reachable(false).await;
    // The grace period (300 ms) ends during the outage: that settle fails.
    let during: Vec<String> = sup
        .drain(Duration::from_millis(1500))
        .await
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| name.starts_with("user:"))
        .collect();
    assert!(during.is_empty(), "nothing decided while away: {during:?}");

    db.set_reachable(true).await;
    let offline = sup.expect("user:offline").await;
    assert_eq!(offline[0]["userId"], "o1", "{offline:?}");
    let more: Vec<String> = sup
        .drain(Duration::from_millis(1500))
        .await
        .into_iter()
        .filter(|(name, _)| name.starts_with("user:"))
        .map(|(name, args)| format!("{name} {}", args[0]))
        .collect();
    assert!(more.is_empty(), "decided once: {more:?}");
    app.stop().await;
    db.drop().await;
}

/// PostgreSQL stopped outright (a private cluster, fast shutdown) while a
/// backend publishes over HTTP ten times a second, then started again. The
/// pool retries refused connections until its acquire timeout (3 s); every
/// publish during the outage, and a document update after them (its own
/// breaker), must still be refused with UNAVAILABLE well before that, and
/// publishing resumes by itself after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_while_postgres_is_stopped_is_refused_in_well_under_the_pool_timeout() {
    use common::private_pg::PrivatePg;
    use std::sync::Arc;
    use std::time::Instant;

    let pg = Arc::new(tokio::task::spawn_blocking(PrivatePg::start).await.unwrap());
    let app = common::spawn_app(&pg.url(), &[]).await;
    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/events", app.url());
    let publish = |n: i64| {
        let http = http.clone();
        let url = url.clone();
        async move {
            let started = Instant::now();
            let res = http
                .post(&url)
                .bearer_auth("test-key")
                .json(
                    &json!({ "type": "order:status_changed", "companyId": "acme",
                               "rooms": ["order:1"], "payload": order(n) }),
                )
                .send()
                .await
                .expect("the server answers");
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            (status, body, started.elapsed())
        }
    };
    assert_eq!(publish(0).await.0, 202, "published before the outage");
    // A socket connected before the outage updates a document during it
    // (document turns have their own breaker, still closed then).
    let mut writer =
        Client::with_token(&app.url(), &app.token("s1", "acme", Role::Supervisor)).await;
    writer.expect("session").await;

    let p = pg.clone();
    tokio::task::spawn_blocking(move || p.stop()).await.unwrap();
    // Health checks (a load balancer's, every few seconds) use the pool
    // too: their failures drop the pool's dead connections until one has
    // to wait for a new connection, so the publishes below find none.
    for _ in 0..20 {
        let started = Instant::now();
        let _ = http
            .get(format!("{}/health/websocket", app.url()))
            .send()
            .await;
        if started.elapsed() > Duration::from_millis(500) {
            break;
        }
    }
    let mut refusals = Vec::new();
    for n in 1..=30 {
        let (status, body, took) = publish(n).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (503, Some("UNAVAILABLE")),
            "{body}"
        );
        refusals.push(took);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = Instant::now();
    let update = writer
        .emit_with_ack(
            "document:update",
            json!({ "type": "order", "id": "42", "baseVersion": 0,
                    "changes": { "status": "planned" } }),
        )
        .await;
    assert_eq!(update["error"]["code"], "UNAVAILABLE", "{update}");
    refusals.push(started.elapsed());
    let slowest = refusals.iter().max().copied().unwrap_or_default();
    assert!(
        slowest < Duration::from_millis(1_500),
        "slowest refusal took {slowest:?}: {refusals:?}"
    );

    let p = pg.clone();
    tokio::task::spawn_blocking(move || p.resume())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 100;
    while publish(n).await.0 != 202 {
        assert!(Instant::now() < deadline, "publishing did not resume");
        n += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.stop().await;
}

/// A socket's presence registration whose connection ends during its
/// COMMIT (written locally while the COMMIT waits for a synchronous
/// standby that does not exist; then its backend is terminated) took its
/// user online without anyone announcing it. The node asks the database
/// once it answers: `user:online` goes out, once, and the user is listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_whose_commit_lost_its_connection_still_announces_user_online_once() {
    let (pg, app) = app_whose_commits_can_wait().await;
    let (mut sup, op_token, _) = op_came_and_went(&app).await;

    pg.stall_commits(true).await;
    let mut op = Client::with_token(&app.url(), &op_token).await;
    assert!(
        pg.end_the_waiting_commit().await,
        "op's registration waited in its COMMIT and was ended"
    );
    pg.stall_commits(false).await;
    op.expect("session").await;
    op_online_once(&mut sup, Duration::from_millis(1500)).await;
    let listed = sup.emit_with_ack("presence:list", json!({})).await;
    let users: Vec<&str> = listed["users"]
        .as_array()
        .map(|u| u.iter().filter_map(|u| u["userId"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(users, vec!["op", "sup"], "{listed}");
    app.stop().await;
}

/// The same for a socket that registers with an entity room (named in
/// `auth.offsets`): its registration also took its user into the room,
/// and `presence:joined` goes out to the room, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_with_an_entity_room_still_announces_presence_joined_once() {
    let (pg, app) = app_whose_commits_can_wait().await;
    let c = common::unique("c");
    let mut sup = Client::with_token(&app.url(), &app.token("sup", &c, Role::Supervisor)).await;
    sup.expect("session").await;
    let subscribed = sup
        .emit_with_ack("subscribe", json!({ "room": "order:1" }))
        .await;
    assert_eq!(subscribed["ok"], true, "{subscribed}");
    // op has been in order:1 before: reconnecting, it reads its cursors
    // and writes nothing before its presence registration.
    let auth = json!({ "token": app.token("op", &c, Role::Operator), "offsets": { "order:1": 0 } });
    let connect = || async {
        Client::connect(&app.url(), "", auth.clone())
            .await
            .unwrap_or_else(|e| panic!("{e:?}"))
    };
    let mut op = connect().await;
    op.expect("session").await;
    assert_eq!(sup.expect("presence:joined").await[0]["userId"], "op");
    op.disconnect();
    assert_eq!(sup.expect("presence:left").await[0]["userId"], "op");

    pg.stall_commits(true).await;
    let mut op = connect().await;
    assert!(
        pg.end_the_waiting_commit().await,
        "op's registration waited in its COMMIT and was ended"
    );
    pg.stall_commits(false).await;
    op.expect("session").await;
    let heard = sup.drain(Duration::from_millis(2000)).await;
    let joined: Vec<&Value> = heard
        .iter()
        .filter(|(name, _)| name == "presence:joined")
        .map(|(_, args)| &args[0])
        .collect();
    assert_eq!(joined.len(), 1, "{heard:?}");
    assert_eq!(
        (joined[0]["userId"].as_str(), joined[0]["room"].as_str()),
        (Some("op"), Some("order:1")),
        "{heard:?}"
    );
    app.stop().await;
}

/// The same when the database restarts under the waiting COMMIT and op
/// leaves while it is down: op's slot is gone from the node, but its
/// registration still owes the `user:online` it made, and it is
/// announced once the database answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_leaves_while_its_registration_is_unsure_still_gets_it_announced() {
    let (pg, app) = app_whose_commits_can_wait().await;
    let (mut sup, op_token, _) = op_came_and_went(&app).await;

    pg.stall_commits(true).await;
    let op = Client::with_token(&app.url(), &op_token).await;
    assert!(
        pg.waiting_commit().await.is_some(),
        "op's registration waits in its COMMIT"
    );
    tokio::task::block_in_place(|| pg.stop());
    op.disconnect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let heard = sup.drain(Duration::from_millis(100)).await;
    assert!(
        heard.iter().all(|(name, _)| !name.starts_with("user:")),
        "nothing announced while the database is down: {heard:?}"
    );
    tokio::task::block_in_place(|| pg.resume());
    pg.stall_commits(false).await;
    let heard = sup.drain(Duration::from_secs(4)).await;
    let user_events: Vec<String> = heard
        .iter()
        .filter(|(name, _)| name.starts_with("user:"))
        .map(|(name, args)| format!("{name} {}", args[0]["userId"]))
        .collect();
    assert_eq!(
        user_events.first().map(String::as_str),
        Some("user:online \"op\""),
        "{user_events:?}"
    );
    assert_eq!(
        user_events
            .iter()
            .filter(|e| e.starts_with("user:online"))
            .count(),
        1,
        "{user_events:?}"
    );
    app.stop().await;
}

/// A `subscribe` whose presence write fails (its backend terminated
/// while it waits for op's row, locked by another transaction) leaves the
/// socket rows as they were, so their count shows no drift; the next
/// heartbeat still registers the socket again with its rooms, and the
/// room hears `presence:joined` and lists op.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_whose_presence_write_failed_is_repaired_by_the_heartbeat() {
    let db = common::fresh_postgres("sy_rooms_").await;
    let app = common::spawn_app(
        &db,
        &[("WS_PRESENCE_TTL", "3"), ("WS_PRESENCE_GRACE_MS", "200")],
    )
    .await;
    let c = common::unique("c");
    let mut sup = Client::with_token(&app.url(), &app.token("sup", &c, Role::Supervisor)).await;
    sup.expect("session").await;
    let subscribed = sup
        .emit_with_ack("subscribe", json!({ "room": "order:1" }))
        .await;
    assert_eq!(subscribed["ok"], true, "{subscribed}");
    let mut op = Client::with_token(&app.url(), &app.token("op", &c, Role::Operator)).await;
    op.expect("session").await;

    let admin = PgPoolOptions::new()
        .max_connections(2)
        .connect(&db)
        .await
        .unwrap();
    let mut holder = admin.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM presence_users WHERE company_id = $1 AND user_id = 'op' FOR UPDATE")
        .bind(&c)
        .execute(&mut *holder)
        .await
        .unwrap();
    let ack = op.emit_ack_id("subscribe", json!({ "room": "order:1" }));
    terminate_the_lock_waiter(&admin).await;
    holder.rollback().await.unwrap();
    assert_eq!(
        op.ack(ack).await["ok"],
        true,
        "the subscription itself holds"
    );

    let joined = sup.expect("presence:joined").await;
    assert_eq!(
        (joined[0]["userId"].as_str(), joined[0]["room"].as_str()),
        (Some("op"), Some("order:1")),
        "{joined:?}"
    );
    let listed = sup
        .emit_with_ack("presence:list", json!({ "room": "order:1" }))
        .await;
    let users: Vec<&str> = listed["users"]
        .as_array()
        .map(|u| u.iter().filter_map(|u| u["userId"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(users, vec!["op", "sup"], "{listed}");
    admin.close().await;
    app.stop().await;
}

/// Terminates the one backend of this database that waits for a lock.
async fn terminate_the_lock_waiter(admin: &sqlx::PgPool) {
    let mut blocked = None;
    for _ in 0..80 {
        blocked = sqlx::query_scalar::<_, i32>(
            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()",
        )
        .fetch_optional(admin)
        .await
        .unwrap();
        if blocked.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = blocked.expect("a write waits for the locked row");
    let ended: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(admin)
        .await
        .unwrap();
    assert!(ended);
}

/// The other outcome: a registration whose backend is terminated before
/// its COMMIT (it waits for op's row, locked by another transaction) did
/// not take op online. The follow-up finds nothing owed, and the
/// heartbeat's drift repair registers the socket again and announces
/// `user:online`: once, not once more for the failed registration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_that_did_not_commit_is_announced_once_by_the_repair() {
    let db = common::fresh_postgres("sy_unsure_").await;
    let app = common::spawn_app(
        &db,
        &[("WS_PRESENCE_TTL", "3"), ("WS_PRESENCE_GRACE_MS", "200")],
    )
    .await;
    let (mut sup, op_token, c) = op_came_and_went(&app).await;

    let admin = PgPoolOptions::new()
        .max_connections(2)
        .connect(&db)
        .await
        .unwrap();
    let mut holder = admin.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM presence_users WHERE company_id = $1 AND user_id = 'op' FOR UPDATE")
        .bind(&c)
        .execute(&mut *holder)
        .await
        .unwrap();
    let mut op = Client::with_token(&app.url(), &op_token).await;
    terminate_the_lock_waiter(&admin).await;
    holder.rollback().await.unwrap();
    op.expect("session").await;

    op_online_once(&mut sup, Duration::from_millis(2500)).await;
    admin.close().await;
    app.stop().await;
}

/// A supervisor watching a new company, op's token and the company: op connected (its
/// cursors and user row exist) and left, and is offline. Reconnecting, op
/// reads its cursors and writes nothing before its presence registration.
async fn op_came_and_went(app: &common::TestApp) -> (Client, String, String) {
    let c = common::unique("c");
    let mut sup = Client::with_token(&app.url(), &app.token("sup", &c, Role::Supervisor)).await;
    sup.expect("session").await;
    let op_token = app.token("op", &c, Role::Operator);
    let mut op = Client::with_token(&app.url(), &op_token).await;
    op.expect("session").await;
    assert_eq!(sup.expect("user:online").await[0]["userId"], "op");
    op.disconnect();
    assert_eq!(sup.expect("user:offline").await[0]["userId"], "op");
    (sup, op_token, c)
}

/// `sup` hears op come online, and no other `user:*` event within `quiet`.
async fn op_online_once(sup: &mut Client, quiet: Duration) {
    let online = sup.expect("user:online").await;
    assert_eq!(online[0]["userId"], "op", "{online:?}");
    let more: Vec<String> = sup
        .drain(quiet)
        .await
        .into_iter()
        .filter(|(name, _)| name.starts_with("user:"))
        .map(|(name, args)| format!("{name} {}", args[0]))
        .collect();
    assert!(more.is_empty(), "announced once: {more:?}");
}

/// A node on a private PostgreSQL whose COMMITs can be made to wait
/// ([`common::private_pg::PrivatePg::stall_commits`]). Its heartbeat, which
/// would also ask about failed registrations, beats at start-up and then
/// not for 200 s: only a failed registration's own follow-up answers.
async fn app_whose_commits_can_wait() -> (common::private_pg::PrivatePg, common::TestApp) {
    let pg = tokio::task::spawn_blocking(common::private_pg::PrivatePg::start)
        .await
        .unwrap();
    pg.commit_synchronously().await;
    let app = common::spawn_app(
        &pg.url(),
        &[("WS_PRESENCE_TTL", "600"), ("WS_PRESENCE_GRACE_MS", "200")],
    )
    .await;
    (pg, app)
}
