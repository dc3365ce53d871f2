//! `GET /metrics` (Prometheus text format), and the internal listener.
//!
//! Without `METRICS_ADDR` the public port serves `/metrics` (the simple
//! setup). With it, only the internal listener does: the public port
//! answers 404, so the figures are reachable only where the operator bound
//! them, e.g. a private interface or loopback. The internal listener also
//! serves the HTTP API (admin included, same keys; no socket.io or plain
//! transports), so the admin API can be kept off the public interface too.

use std::future::Future;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

/// The `/metrics` route.
pub fn routes() -> Router {
    Router::new().route("/metrics", get(scrape))
}

async fn scrape() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        super::render(),
    )
}

/// Serves `router` on the internal listener until `shutdown` resolves.
pub async fn serve_internal(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    if let Err(e) = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(error = %e, "METRICS_ADDR listener failed");
    }
}
