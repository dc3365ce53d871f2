//! The built `switchyard` binary as a child process, for tests that attack it
//! below the protocol and measure what it holds: resident memory
//! (`/proc/<pid>/status` VmRSS) and open descriptors (`/proc/<pid>/fd`).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Server {
    child: Child,
    pub port: u16,
    pub pid: u32,
    dir: std::path::PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Server {
    /// Starts `switchyard serve` on a free loopback port with a fresh SQLite
    /// database, `env` on top of the defaults, and `nofile` as its descriptor
    /// limit (soft and hard) when given. Waits for `/health/live`.
    pub async fn start(env: &[(&str, &str)], nofile: Option<u32>) -> Server {
        // SWITCHYARD_BIN runs the attacks against another build (e.g. an
        // older one, to see them succeed).
        let bin = std::env::var("SWITCHYARD_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_switchyard").to_string());
        let port = free_port();
        let dir = std::env::temp_dir().join(super::unique("sy-proc-"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut cmd = match nofile {
            // `ulimit -n` sets both limits; `exec` keeps the pid.
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" serve"))
                    .arg(&bin);
                c
            }
            None => {
                let mut c = Command::new(&bin);
                c.arg("serve");
                c
            }
        };
        let log = std::fs::File::create(dir.join("server.log")).expect("log file");
        cmd.current_dir(&dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("JWT_SECRET", super::SECRET)
            .env(
                "DATABASE_URL",
                format!("sqlite://{}", dir.join("sy.db").display()),
            )
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn switchyard");
        let pid = child.id();
        let server = Server {
            child,
            port,
            pid,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while server.get("/health/live", Duration::from_secs(1)).await != Some(200) {
            assert!(
                Instant::now() < deadline,
                "server did not start: {}",
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// Resident memory, KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .expect("the server is running");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// Open file descriptors.
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid))
            .map(|d| d.count())
            .expect("the server is running")
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// A plain `GET` on a new connection: the status code, or `None` when
    /// no answer came within `wait`.
    pub async fn get(&self, path: &str, wait: Duration) -> Option<u16> {
        let attempt = async {
            let mut s = TcpStream::connect(self.addr()).await.ok()?;
            let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            s.write_all(req.as_bytes()).await.ok()?;
            let mut buf = [0u8; 512];
            let mut got = 0;
            while got < 12 {
                match s.read(&mut buf[got..]).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => got += n,
                }
            }
            std::str::from_utf8(&buf[9..12]).ok()?.parse().ok()
        };
        tokio::time::timeout(wait, attempt).await.ok().flatten()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits until the peer closes `stream` (EOF or error); `false` if it is
/// still open after `wait`. Whatever the server sends meanwhile is discarded.
pub async fn closed_by_peer(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let read_to_end = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(wait, read_to_end).await.is_ok()
}
