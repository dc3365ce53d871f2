//! Webhook test support: a real HTTP receiver that checks signatures with
//! the documented scheme (its own HMAC code, not the server's), fails the
//! first attempts of each event when told to, and records everything; and
//! a fresh Postgres database per test (delivery loops claim every due row
//! of a database, so tests must not share one).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub event_id: String,
    pub body: String,
    pub signature_ok: bool,
    pub status: u16,
}

#[derive(Default)]
struct Inner {
    secret: String,
    /// Answer 500 to the first `fail_first` attempts of each event id.
    fail_first: usize,
    attempts: HashMap<String, usize>,
    log: Vec<Received>,
    delay: Duration,
}

#[derive(Clone)]
pub struct Receiver {
    inner: Arc<Mutex<Inner>>,
    pub addr: SocketAddr,
    stop: Arc<tokio::sync::Notify>,
}

/// The receiver's check, written from docs/protocol.md: `v1=` hex of
/// HMAC-SHA256(secret, "{Switchyard-Timestamp}.{body}"), timestamp within 5 min.
pub fn verify(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let get = |h: &str| {
        headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (Some(ts), Some(sig)) = (get("switchyard-timestamp"), get("switchyard-signature")) else {
        return false;
    };
    let Ok(ts_n) = ts.parse::<i64>() else {
        return false;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    if (now - ts_n).abs() > 300 {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(body);
    let want = hex::encode(mac.finalize().into_bytes());
    sig.split(',')
        .filter_map(|p| p.trim().strip_prefix("v1="))
        .any(|given| given == want)
}

async fn hook(State(r): State<Arc<Mutex<Inner>>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let delay = r.lock().unwrap().delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut r = r.lock().unwrap();
    let event_id = headers
        .get("switchyard-event-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let signature_ok = verify(&r.secret, &headers, &body);
    let n = {
        let n = r.attempts.entry(event_id.clone()).or_default();
        *n += 1;
        *n
    };
    let status = if !signature_ok {
        StatusCode::UNAUTHORIZED
    } else if n <= r.fail_first {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::NO_CONTENT
    };
    r.log.push(Received {
        event_id,
        body: String::from_utf8_lossy(&body).into_owned(),
        signature_ok,
        status: status.as_u16(),
    });
    status
}

impl Receiver {
    pub async fn start(secret: &str, fail_first: usize) -> Receiver {
        let inner = Arc::new(Mutex::new(Inner {
            secret: secret.into(),
            fail_first,
            ..Default::default()
        }));
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(hook))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(tokio::sync::Notify::new());
        let s = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { s.notified().await })
                .await;
        });
        Receiver { inner, addr, stop }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn set_secret(&self, secret: &str) {
        self.inner.lock().unwrap().secret = secret.into();
    }

    pub fn set_delay(&self, d: Duration) {
        self.inner.lock().unwrap().delay = d;
    }

    pub fn log(&self) -> Vec<Received> {
        self.inner.lock().unwrap().log.clone()
    }

    /// Event ids answered with success (each once: de-duplicated by id),
    /// and how many successful requests each got.
    pub fn delivered(&self) -> HashMap<String, usize> {
        let mut out = HashMap::new();
        for r in self.log() {
            if (200..300).contains(&r.status) {
                *out.entry(r.event_id).or_default() += 1;
            }
        }
        out
    }

    /// Waits until `done(self)` or panics after `wait`.
    pub async fn wait_for(&self, wait: Duration, what: &str, done: impl Fn(&Receiver) -> bool) {
        let deadline = tokio::time::Instant::now() + wait;
        while !done(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "receiver: {what} not seen within {wait:?}; log: {:?}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn stop(&self) {
        self.stop.notify_one();
    }
}
