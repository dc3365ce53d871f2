//! A private PostgreSQL cluster for tests that stop and start the database
//! (the shared one is never touched): `initdb` + `pg_ctl` as the `postgres`
//! OS user (initdb refuses root), trust auth, fsync off, on a free loopback
//! port in a temp dir; removed (immediate stop) when dropped. The same
//! recipe as `clients/tests/test/services.js`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct PrivatePg {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn postgres_id(flag: &str) -> u32 {
    let out = Command::new("id")
        .args([flag, "postgres"])
        .output()
        .expect("`id` runs");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a `postgres` OS user (the PostgreSQL server package)")
}

fn reachable(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(300),
    )
    .is_ok()
}

impl PrivatePg {
    /// A fresh cluster, started. `SY_TEST_PG_BIN` overrides the binaries'
    /// directory (default `/usr/lib/postgresql/15/bin`).
    pub fn start() -> PrivatePg {
        let bin = PathBuf::from(
            std::env::var("SY_TEST_PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into()),
        );
        let dir = std::env::temp_dir().join(super::unique("sy-pg-"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::os::unix::fs::chown(&dir, Some(postgres_id("-u")), Some(postgres_id("-g")))
            .expect("chown the cluster's dir to postgres");
        let pg = PrivatePg {
            port: free_port(),
            dir,
            bin,
        };
        pg.as_postgres(&[
            "initdb",
            "-D",
            &pg.data(),
            "--auth=trust",
            "-U",
            "postgres",
            "--no-sync",
        ]);
        pg.resume();
        pg
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn as_postgres(&self, args: &[&str]) -> bool {
        let program = self.bin.join(args[0]).display().to_string();
        Command::new("runuser")
            .args(["-u", "postgres", "--", &program])
            .args(&args[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// Starts the (stopped) cluster and waits until it accepts connections.
    pub fn resume(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("log").display().to_string();
        assert!(
            self.as_postgres(&[
                "pg_ctl",
                "-D",
                &self.data(),
                "-o",
                &opts,
                "-l",
                &log,
                "-w",
                "-t",
                "30",
                "start",
            ]),
            "pg_ctl start failed: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        self.wait(true);
    }

    /// Fast shutdown: sessions terminated (their transactions rolled back),
    /// new connections refused; returns once it no longer listens.
    pub fn stop(&self) {
        self.as_postgres(&[
            "pg_ctl",
            "-D",
            &self.data(),
            "-m",
            "fast",
            "-w",
            "-t",
            "30",
            "stop",
        ]);
        self.wait(false);
    }

    fn wait(&self, up: bool) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while reachable(self.port) != up {
            assert!(
                Instant::now() < deadline,
                "postgres on {} did not {}",
                self.port,
                if up { "start" } else { "stop" }
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// COMMITs that wait: with `synchronous_commit = on` and a synchronous
/// standby that does not exist, a COMMIT is written locally and then
/// waits for the standby (tests of writes whose outcome is unknown).
impl PrivatePg {
    /// Runs one statement on a connection of its own.
    pub async fn run(&self, sql: &str) {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&self.url())
            .await
            .expect("postgres");
        sqlx::query(sql).execute(&pool).await.expect(sql);
        pool.close().await;
    }

    /// Sessions opened from now on commit synchronously (the cluster's
    /// default is off): their COMMITs can be made to wait.
    pub async fn commit_synchronously(&self) {
        self.run("ALTER DATABASE postgres SET synchronous_commit = on")
            .await;
    }

    /// From now on the COMMITs of sessions opened after
    /// [`Self::commit_synchronously`] wait for a standby (`true`) or not.
    pub async fn stall_commits(&self, stall: bool) {
        match stall {
            true => {
                self.run("ALTER SYSTEM SET synchronous_standby_names = 'nobody'")
                    .await
            }
            false => {
                self.run("ALTER SYSTEM RESET synchronous_standby_names")
                    .await
            }
        }
        self.run("SELECT pg_reload_conf()").await;
        // Backends read the new setting before their next command.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    /// The backend whose COMMIT waits for the standby, once there is one
    /// (waits at most 4 s).
    pub async fn waiting_commit(&self) -> Option<i32> {
        let pool = sqlx::PgPool::connect(&self.url()).await.expect("postgres");
        let mut found = None;
        for _ in 0..80 {
            let waiting: Vec<i32> =
                sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE wait_event = 'SyncRep'")
                    .fetch_all(&pool)
                    .await
                    .expect("pg_stat_activity");
            if let [pid] = waiting[..] {
                found = Some(pid);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        pool.close().await;
        found
    }

    /// Terminates the backend whose COMMIT waits for the standby (its
    /// transaction is committed locally; its client gets an error). `false`
    /// if none waited within 4 s.
    pub async fn end_the_waiting_commit(&self) -> bool {
        let Some(pid) = self.waiting_commit().await else {
            return false;
        };
        let pool = sqlx::PgPool::connect(&self.url()).await.expect("postgres");
        let done: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .fetch_one(&pool)
            .await
            .expect("pg_terminate_backend");
        pool.close().await;
        done
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        self.as_postgres(&["pg_ctl", "-D", &self.data(), "-m", "immediate", "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
