//! The HTTP server under the axum router: an accept loop that bounds what
//! clients can hold before they authenticate.
//!
//! - At most `HTTP_MAX_CONNECTIONS` TCP connections are served (default:
//!   the descriptor limit minus headroom, see `config`); a connection holds
//!   its slot until it closes, WebSocket upgrades included ([`io::Guarded`]).
//! - Beyond that, a small reserve ([`reserve`]) serves health checks only;
//!   when it is full too, new connections are closed at once.
//! - `HTTP_HEADER_TIMEOUT_MS` bounds the wait for a request's headers, which
//!   also ends connections that never send a request and idle keep-alive
//!   connections (hyper starts that timer as soon as it waits for a request);
//!   `HTTP_BODY_TIMEOUT_MS` bounds the wait for its body ([`body`]).
//! - `accept` errors for want of descriptors (EMFILE) back off instead of
//!   spinning; the connections already open run on, time out, and free them.
//! - Graceful shutdown: stop accepting, let requests in flight finish (within
//!   `SHUTDOWN_GRACE`), close idle connections.
//! - Each request carries its client's address ([`ClientIp`], derived here
//!   and nowhere else from the TCP peer and `TRUSTED_PROXIES`): per request,
//!   not per connection, because a proxy's keep-alive connection carries
//!   many clients' requests.
//!
//! axum's own `serve` has none of these knobs, hence this loop (HTTP/1.1 with
//! upgrades, which is all socket.io and the HTTP API use).

mod body;
pub mod io;
mod reserve;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::client_ip::{ClientIp, TrustedProxies};
use crate::error::{AppError, Code};
use io::{Guarded, Slot};
use reserve::{Reserve, Ticket};

pub use crate::config::RESERVE_SLOTS;
/// A reserve connection must send its request within this.
const RESERVE_HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause after `accept` failed for want of resources.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// At most one log line per this interval about failing `accept`s.
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(10);
/// Connections the kernel completes and queues for `accept` (capped by
/// `net.core.somaxconn`). tokio's `bind` asks for 1,024: in a connect
/// burst whose handshakes keep the one core busy, the queue overflowed,
/// the kernel dropped SYNs, and those clients waited out the 1 s SYN
/// retransmission (50 of 19,500 connects in one bench run, p99 1,027 ms).
pub const LISTEN_BACKLOG: u32 = 8192;

/// A listener on `addr` with [`LISTEN_BACKLOG`] (and `SO_REUSEADDR`, as
/// tokio's `bind` sets it, so a restart does not wait for TIME_WAIT).
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

#[derive(Debug, Clone)]
pub struct Options {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub shutdown_grace: Duration,
    /// Whose `X-Forwarded-For` names the client (shared by every connection).
    pub trusted_proxies: Arc<TrustedProxies>,
}

impl Options {
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            max_connections: config.http_max_connections,
            header_timeout: config.http_header_timeout,
            body_timeout: config.http_body_timeout,
            shutdown_grace: config.shutdown_grace,
            trusted_proxies: Arc::new(config.trusted_proxies.clone()),
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    options: Options,
    shutdown: impl Future<Output = ()> + Send,
) {
    warn_if_above_descriptor_limit(options.max_connections);
    let main = Arc::new(Semaphore::new(options.max_connections));
    let reserve = Arc::new(Reserve::default());
    let stop = CancellationToken::new();
    let tasks = TaskTracker::new();
    let mut last_log: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            Err(e) if per_connection(&e) => continue,
            Err(e) => {
                accept_failed(&e, &mut last_log);
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                }
            }
        };
        no_delay(&stream);
        let kill = CancellationToken::new();
        let conn = Conn {
            router: router.clone(),
            peer,
            trusted_proxies: options.trusted_proxies.clone(),
            body_timeout: options.body_timeout,
            stop: stop.clone(),
        };
        match main.clone().try_acquire_owned() {
            Ok(permit) => {
                let (io, handle) = Guarded::new(stream, Slot::Main(permit), kill);
                tasks.spawn(conn.run(io, handle, None, options.header_timeout));
            }
            Err(_) => match reserve.admit(RESERVE_SLOTS, kill.clone()) {
                Some(guard) => {
                    let ticket = guard.ticket();
                    let (io, handle) = Guarded::new(stream, Slot::Reserve(guard), kill);
                    let timeout = RESERVE_HEADER_TIMEOUT.min(options.header_timeout);
                    tasks.spawn(conn.run(io, handle, Some(ticket), timeout));
                }
                None => refuse(stream),
            },
        }
    }
    drop(listener);
    stop.cancel();
    tasks.close();
    if tokio::time::timeout(options.shutdown_grace, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace elapsed with HTTP requests still running");
    }
}

/// Small frames go out at once. With Nagle's algorithm on, a frame written
/// while an earlier one is unacknowledged (a document update's broadcast,
/// then its ack) waits for the client's delayed ACK: 40 ms on Linux, which
/// was the documents bench's 44 ms p50 and its 250-280 updates/s.
fn no_delay(stream: &TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "could not set TCP_NODELAY");
    }
}

/// Errors that concern one connection only (it was reset before we took it).
fn per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted
    )
}

fn accept_failed(e: &std::io::Error, last_log: &mut Option<Instant>) {
    crate::metrics::accept_error();
    if last_log.is_none_or(|t| t.elapsed() >= ACCEPT_LOG_EVERY) {
        *last_log = Some(Instant::now());
        tracing::warn!(
            error = %e,
            "cannot accept connections (out of file descriptors?); retrying every {} ms. \
             Raise the descriptor limit (LimitNOFILE / ulimit -n) or lower HTTP_MAX_CONNECTIONS",
            ACCEPT_BACKOFF.as_millis()
        );
    }
}

fn refuse(stream: TcpStream) {
    crate::metrics::http_connection_refused();
    drop(stream);
}

fn warn_if_above_descriptor_limit(max_connections: usize) {
    if let Some(nofile) = crate::config::nofile_limit() {
        let needed = max_connections as u64 + RESERVE_SLOTS as u64;
        if needed + crate::config::DESCRIPTOR_HEADROOM > nofile {
            tracing::warn!(
                "HTTP_MAX_CONNECTIONS={max_connections} (+{RESERVE_SLOTS} reserved for health) \
                 leaves too few of the {nofile} file descriptors allowed; raise LimitNOFILE / \
                 ulimit -n or `accept` will fail before the cap"
            );
        }
    }
}

/// What a connection task needs to serve requests.
struct Conn {
    router: Router,
    peer: SocketAddr,
    trusted_proxies: Arc<TrustedProxies>,
    body_timeout: Duration,
    stop: CancellationToken,
}

impl Conn {
    /// Serves one connection. `reserve` = a reserve connection: one request,
    /// health only.
    async fn run(
        self,
        io: Guarded,
        handle: io::ConnectionHandle,
        reserve: Option<Ticket>,
        header_timeout: Duration,
    ) {
        let Conn {
            router,
            peer,
            trusted_proxies,
            body_timeout,
            stop,
        } = self;
        let keep_alive = reserve.is_none();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            let client = crate::client_ip::derive(peer.ip(), req.headers(), &trusted_proxies);
            // No `ConnectInfo` beside it: nothing downstream can count the
            // proxy's address by mistake.
            req.extensions_mut().insert(ClientIp(client));
            req.extensions_mut().insert(handle.clone());
            let req = body::with_deadline(req, body_timeout);
            let router = router.clone();
            let reserve = reserve.clone();
            async move {
                match reserve {
                    None => router.oneshot(req).await,
                    Some(ticket) => {
                        ticket.activate();
                        if req.uri().path().starts_with("/health/") {
                            router.oneshot(req).await
                        } else {
                            Ok::<_, Infallible>(busy())
                        }
                    }
                }
            }
        });
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .keep_alive(keep_alive);
        let conn = builder
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        tokio::pin!(conn);
        let ended = tokio::select! {
            ended = conn.as_mut() => ended,
            _ = stop.cancelled() => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(e) = ended {
            tracing::debug!(%peer, error = %e, "connection ended");
        }
    }
}

/// The answer on a reserve connection to anything but health.
fn busy() -> Response {
    crate::metrics::http_connection_refused();
    AppError::new(
        Code::LimitExceeded,
        "the server is at its connection limit (HTTP_MAX_CONNECTIONS); retry later",
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_connections_send_small_frames_at_once() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let _client = TcpStream::connect(addr).await.expect("connect");
        let (accepted, _) = listener.accept().await.expect("accept");
        assert!(
            !accepted.nodelay().expect("read TCP_NODELAY"),
            "the default is Nagle on"
        );
        no_delay(&accepted);
        assert!(accepted.nodelay().expect("read TCP_NODELAY"));
    }

    /// A burst of connects while nothing accepts: the kernel completes and
    /// queues them all (tokio's `bind`, backlog 1,024, dropped the SYNs
    /// beyond that, and those clients waited out a 1 s retransmission).
    #[tokio::test]
    async fn a_connect_burst_beyond_1024_is_queued_not_dropped() {
        const BURST: usize = 1500;
        let somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .unwrap_or(4096);
        assert!(
            somaxconn > BURST,
            "net.core.somaxconn is {somaxconn}: the kernel caps every backlog there"
        );
        let listener = listen("127.0.0.1:0".parse().expect("addr")).expect("listen");
        let addr = listener.local_addr().expect("addr");
        let connects = (0..BURST)
            .map(|_| tokio::time::timeout(Duration::from_millis(700), TcpStream::connect(addr)));
        let results = futures::future::join_all(connects).await;
        let connected = results.iter().filter(|r| matches!(r, Ok(Ok(_)))).count();
        assert_eq!(connected, BURST, "connects completed within 0.7 s");
        drop(listener);
    }
}
