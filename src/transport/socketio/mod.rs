//! The Socket.IO transport: socketioxide with the local or Redis adapter,
//! on the path `/socket.io/`.
//!
//! - [`pending`]: Engine.IO sessions before their CONNECT (per-IP count,
//!   refused ones closed).
//! - [`connect`]: the connect middleware (authentication, limits, the
//!   session), `api::open` as the first job, `api::close` on disconnect.
//! - [`dispatch`]: the ordered message handler: events → `api::start` → ack.
//! - [`sink`]: a socket as a session's sink; [`proof`]: the heartbeat proof
//!   window behind offline-queue cursors.
//! - [`hub`]: ephemeral delivery through the adapter, with role filtering.
//! - [`admin_ui`]: the `/admin` namespace of the official socket.io Admin UI
//!   (`ADMIN_UI=on`), over the admin service.

pub mod admin_ui;
pub mod connect;
pub mod dispatch;
pub mod hub;
pub mod pending;
pub mod proof;
pub mod sink;

use std::sync::Arc;

use axum::Router;
use socketioxide::adapter::{Adapter, Emitter, LocalAdapter};
use socketioxide::handler::ConnectHandler;
use socketioxide::{ParserConfig, SocketIo, SocketIoBuilder};
use socketioxide_redis::drivers::fred::FredDriver;
use socketioxide_redis::{FredAdapter, RedisAdapterCtr};

use super::Closer;
use crate::config::Config;
use crate::state::AppState;
use connect::{authenticate, on_connect};

/// The engine's settings (limits, buffers, timeouts) from the configuration.
fn engine(config: &Config) -> SocketIoBuilder {
    SocketIo::builder()
        .ping_interval(config.ping_interval)
        .ping_timeout(config.ping_timeout)
        // The engine refuses frames above twice the event limit; events
        // between the two limits get a PAYLOAD_TOO_LARGE ack instead.
        .max_payload(2 * config.max_payload as u64)
        .ws_max_message_size(2 * config.max_payload)
        .ws_max_frame_size(2 * config.max_payload)
        // Per-socket outgoing packets. The channel allocates as it
        // fills, so idle sockets pay nothing; durable events never
        // overflow it (they wait and catch up), ephemeral bursts beyond
        // it are dropped and counted.
        .max_buffer_size(256)
        // Most events are small; a 1 KiB read buffer (default 4 KiB)
        // matters at tens of thousands of idle connections.
        .ws_read_buffer_size(1024)
        // Sessions that have not connected (refused ones included) are
        // closed after this (EIO=4; EIO=3 is closed on refusal).
        .connect_timeout(config.ws_connect_timeout)
        .with_parser(
            ParserConfig::common()
                .max_incoming_binaries(crate::limits::BINARY_MAX_ATTACHMENTS)
                .max_incoming_binary_buf_size(crate::limits::BINARY_MAX_BYTES)
                .packet_completion_timeout(config.ws_connect_timeout),
        )
}

/// Builds the Socket.IO service (with the Redis adapter when `redis` is
/// given), registers its hub, and returns its routes and its closer.
pub async fn mount(
    state: &AppState,
    redis: Option<RedisAdapterCtr<FredDriver>>,
) -> anyhow::Result<(Router, Closer)> {
    let engine = engine(&state.config);
    Ok(match redis {
        Some(ctr) => {
            let (layer, io) = engine
                .with_adapter::<FredAdapter<Emitter>>(ctr)
                .with_state(state.clone())
                .with_state(Arc::new(admin_ui::UiSessions::default()))
                .build_layer();
            io.ns(
                "/",
                on_connect::<FredAdapter<Emitter>>.with(authenticate::<FredAdapter<Emitter>>),
            )
            .await
            .map_err(|e| anyhow::anyhow!("REDIS_URL: adapter init failed: {e}"))?;
            if state.config.admin_ui.is_some() {
                type A = FredAdapter<Emitter>;
                io.ns(
                    admin_ui::NAMESPACE,
                    admin_ui::on_connect::<A>.with(admin_ui::authenticate::<A>),
                )
                .await
                .map_err(|e| anyhow::anyhow!("REDIS_URL: adapter init failed: {e}"))?;
            }
            (routes(state, layer), wire(state, io))
        }
        None => {
            let (layer, io) = local(engine)
                .with_state(state.clone())
                .with_state(Arc::new(admin_ui::UiSessions::default()))
                .build_layer();
            io.ns(
                "/",
                on_connect::<LocalAdapter>.with(authenticate::<LocalAdapter>),
            );
            if state.config.admin_ui.is_some() {
                io.ns(
                    admin_ui::NAMESPACE,
                    admin_ui::on_connect::<LocalAdapter>
                        .with(admin_ui::authenticate::<LocalAdapter>),
                );
            }
            (routes(state, layer), wire(state, io))
        }
    })
}

fn local(builder: SocketIoBuilder) -> SocketIoBuilder<LocalAdapter> {
    builder
}

/// The Socket.IO service, behind the count of sessions not yet authenticated.
fn routes(state: &AppState, layer: socketioxide::layer::SocketIoLayer<impl Adapter>) -> Router {
    let config = &state.config;
    let per_ip = config
        .max_connections_per_ip
        .map_or(config.max_pending_per_ip, |n| {
            n.min(config.max_pending_per_ip)
        });
    let pending = pending::PendingSessions::new(per_ip, state.tasks.clone());
    Router::new()
        .layer(layer)
        .layer(pending::PendingLayer::new(pending, "/socket.io"))
}

/// Registers the hub; the closer ends every engine connection without a
/// DISCONNECT packet, so socket.io clients reconnect (to another node).
fn wire<A: Adapter>(state: &AppState, io: SocketIo<A>) -> Closer {
    state.fanout.register(Arc::new(hub::IoHub::new(io.clone())));
    Box::new(move || Box::pin(async move { io.close().await }))
}
