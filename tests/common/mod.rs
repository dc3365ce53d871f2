//! Shared test support: databases for both backends, an in-process server on
//! an ephemeral port, tokens, and a minimal raw Engine.IO v4 / Socket.IO v5
//! WebSocket client (so tests see exactly what goes over the wire).
#![allow(dead_code)]

pub mod client;
pub mod presence;
pub mod private_pg;
pub mod process;
pub mod switchable;
pub mod webhooks;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use switchyard::config::Config;
use switchyard::store::{self, Store};
use switchyard::{App, domain::Role};

pub const SECRET: &str = "integration-test-secret-0123456789";

pub fn postgres_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

/// A new empty Postgres database; returns its URL. Drop it with [`drop_postgres`].
pub async fn fresh_postgres(prefix: &str) -> String {
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&postgres_url())
        .await
        .expect("postgres");
    let db = unique(prefix);
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&admin)
        .await
        .unwrap();
    format!("{}/{db}", postgres_url().rsplit_once('/').unwrap().0)
}

pub async fn drop_postgres(url: &str) {
    let db = url.rsplit_once('/').unwrap().1;
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&postgres_url())
        .await
        .expect("postgres");
    sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .execute(&admin)
        .await
        .ok();
}

pub fn sqlite_url() -> String {
    let dir = std::env::temp_dir().join("switchyard-tests");
    std::fs::create_dir_all(&dir).expect("temp dir");
    format!(
        "sqlite://{}",
        dir.join(format!("{}.db", unique("t"))).display()
    )
}

/// Both backends, migrated. Postgres must be reachable: the test script
/// checks it first and fails loudly if it is not. The Postgres store is on
/// a database of its own: the sweeps of servers other tests run on the
/// shared one (command timeouts and announcements, presence) would
/// otherwise act on this test's rows while it asserts on them.
/// `scripts/test.sh` drops these databases before the next run.
pub async fn stores() -> Vec<(&'static str, Arc<dyn Store>)> {
    let pg = store::connect(&fresh_postgres("sy_store_").await)
        .await
        .expect("postgres reachable (run scripts/test.sh)");
    pg.migrate().await.expect("postgres migrations");
    let lite = store::connect(&sqlite_url()).await.expect("sqlite");
    lite.migrate().await.expect("sqlite migrations");
    vec![("postgres", pg), ("sqlite", lite)]
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub config: Config,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn token(&self, user: &str, company: &str, role: Role) -> String {
        switchyard::auth::mint_token(
            &self.config,
            user,
            company,
            role,
            std::time::Duration::from_secs(3600),
        )
        .expect("mint")
    }

    /// `POST path` with the test API key and a JSON body: (status, body or null).
    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let res = reqwest::Client::new()
            .post(format!("{}{path}", self.url()))
            .bearer_auth("test-key")
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// `GET path` with the test API key: (status, body or null).
    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let res = reqwest::Client::new()
            .get(format!("{}{path}", self.url()))
            .bearer_auth("test-key")
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Graceful shutdown, as on SIGTERM.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(15), h).await;
        }
    }
}

pub async fn spawn_app(database_url: &str, extra: &[(&str, &str)]) -> TestApp {
    let mut vars: HashMap<String, String> = HashMap::from([
        ("HOST".into(), "127.0.0.1".into()),
        ("PORT".into(), "0".into()),
        ("JWT_SECRET".into(), SECRET.into()),
        ("DATABASE_URL".into(), database_url.into()),
        ("API_KEYS".into(), "test-key".into()),
        ("SHUTDOWN_GRACE".into(), "5".into()),
    ]);
    for (k, v) in extra {
        vars.insert(k.to_string(), v.to_string());
    }
    let config = Config::from_map(vars).expect("valid test config");
    let app = App::build(config.clone()).await.expect("app builds");
    let addr = app.local_addr().expect("bound");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    TestApp {
        addr,
        config,
        stop: Some(tx),
        handle: Some(handle),
    }
}
