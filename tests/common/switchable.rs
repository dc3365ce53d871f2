//! A database that a test can make unreachable and reachable again.

use sqlx::postgres::PgPoolOptions;

/// A database of its own on the shared cluster that a test can make
/// unreachable: new connections refused, existing ones terminated.
pub struct Switchable {
    admin: sqlx::PgPool,
    name: String,
    pub url: String,
}

impl Switchable {
    pub async fn new(prefix: &str) -> Self {
        let url = super::fresh_postgres(prefix).await;
        let name = url.rsplit_once('/').unwrap().1.to_string();
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(&super::postgres_url())
            .await
            .expect("postgres");
        Self { admin, name, url }
    }

    pub async fn set_reachable(&self, on: bool) {
        let name = &self.name;
        sqlx::query(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS {on}"))
            .execute(&self.admin)
            .await
            .unwrap();
        if !on {
            sqlx::query(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
            ))
            .execute(&self.admin)
            .await
            .unwrap();
        }
    }

    pub async fn drop(self) {
        let name = &self.name;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&self.admin)
            .await
            .ok();
    }
}
