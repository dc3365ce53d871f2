//! Builds the application (state, storage, catalog, adapter, router) and
//! serves HTTP and Socket.IO on one port until a shutdown signal.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use futures::future::BoxFuture;
use socketioxide::adapter::{Adapter, Emitter, LocalAdapter};
use socketioxide::handler::ConnectHandler;
use socketioxide::{ParserConfig, SocketIo, SocketIoBuilder};
use socketioxide_redis::FredAdapter;
use tokio::net::TcpListener;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;

use crate::auth::JwtVerifier;
use crate::catalog::Catalog;
use crate::config::{Config, JwtKeySource};
use crate::socket::broadcast::IoHub;
use crate::socket::connection::{self, authenticate, on_connect};
use crate::socket::session::Session;
use crate::state::AppState;
use crate::{cluster, http, store};

type Closer = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;

pub struct App {
    listener: TcpListener,
    router: Router,
    /// `METRICS_ADDR`: the internal listener for `/metrics`, when set.
    metrics_listener: Option<TcpListener>,
    state: AppState,
    close_sockets: Closer,
}

impl App {
    /// Everything that can fail at startup fails here, before the port opens.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        if let JwtKeySource::Secret {
            generated: true, ..
        } = &config.jwt_key
        {
            tracing::warn!(
                "JWT_SECRET is not set: using a random development secret for this run only; \
                 mint tokens with `switchyard token` while this server runs, or set JWT_SECRET"
            );
        }
        crate::metrics::install();
        let verifier = JwtVerifier::from_config(&config)?;
        let catalog = Catalog::load(config.catalog_file.as_deref())?;
        crate::metrics::register_event_types(catalog.type_names());
        let store = store::connect(config.database_url.expose())
            .await
            .with_context(|| format!("DATABASE_URL: cannot open {}", config.database_url))?;
        store
            .migrate()
            .await
            .context("DATABASE_URL: migrations failed")?;

        let engine = SocketIo::builder()
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
            );

        let (redis_parts, link) = match &config.redis_url {
            Some(_) => {
                let (ctr, link) = cluster::connect(&config).await?;
                (Some(ctr), Some(link))
            }
            None => (None, None),
        };
        let state = AppState::new(config, verifier, store, catalog, link);
        if state.redis.is_some() {
            let link = state
                .redis
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("REDIS_URL: no link"))?;
            let bus = cluster::durable_bus(&state.config, state.durable.clone(), link).await?;
            state.durable.set_bus(bus);
        }
        tokio::spawn(crate::replay::prune_forever(state.store.clone()));
        tokio::spawn(crate::replay::cursors::save_forever(
            state.durable.clone(),
            state.store.clone(),
        ));
        let (layer, close_sockets) = match redis_parts {
            Some(ctr) => {
                let (layer, io) = engine
                    .with_adapter::<FredAdapter<Emitter>>(ctr)
                    .with_state(state.clone())
                    .build_layer();
                io.ns(
                    "/",
                    on_connect::<FredAdapter<Emitter>>.with(authenticate::<FredAdapter<Emitter>>),
                )
                .await
                .map_err(|e| anyhow::anyhow!("REDIS_URL: adapter init failed: {e}"))?;
                (layer_router(&state, layer), wire(&state, io))
            }
            None => {
                let (layer, io) = local(engine).with_state(state.clone()).build_layer();
                io.ns(
                    "/",
                    on_connect::<LocalAdapter>.with(authenticate::<LocalAdapter>),
                );
                (layer_router(&state, layer), wire(&state, io))
            }
        };
        tokio::spawn(crate::presence::maintain(state.clone()));
        crate::metrics::sampler::sample(&state, true).await;
        tokio::spawn(crate::metrics::sampler::run(state.clone()));
        let metrics_listener = match state.config.metrics_addr {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("METRICS_ADDR: cannot listen on {addr}"))?,
            ),
            None => None,
        };
        let public_metrics = match metrics_listener {
            Some(_) => Router::new(),
            None => crate::metrics::http::routes(),
        };
        let router = http::routes(state.clone())
            .merge(public_metrics)
            .merge(layer)
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                http::origin::check,
            ))
            .layer(tower::util::MapRequestLayer::new(
                http::origin::own_request_parts,
            ))
            .layer(DefaultBodyLimit::max(state.config.http_body_limit))
            .layer(cors(&state.config))
            .layer(TraceLayer::new_for_http());
        let addr = SocketAddr::new(state.config.host, state.config.port);
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("HOST/PORT: cannot listen on {addr}"))?;
        Ok(Self {
            listener,
            router,
            metrics_listener,
            state,
            close_sockets,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The internal metrics listener's address (`METRICS_ADDR`), when set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `signal` resolves, then shuts down gracefully (SPEC §1):
    /// refuse new connections, let in-flight durable writes finish, close
    /// every transport without a DISCONNECT packet so socket.io clients
    /// reconnect (to another node), and return.
    pub async fn run_until(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let state = self.state.clone();
        let close = self.close_sockets;
        let shutdown = async move {
            signal.await;
            tracing::info!("shutting down: draining sockets");
            state.shutting_down.store(true, Ordering::Release);
            close().await;
        };
        let options = crate::server::Options::from_config(&self.state.config);
        let internal = self.metrics_listener.map(|listener| {
            let stop = tokio_util::sync::CancellationToken::new();
            let done = stop.clone().cancelled_owned();
            let router = crate::metrics::http::routes();
            let task = tokio::spawn(crate::metrics::http::serve_internal(listener, router, done));
            (stop, task)
        });
        crate::server::serve(self.listener, self.router, options, shutdown).await;
        if let Some((stop, task)) = internal {
            stop.cancel();
            let _ = task.await;
        }
        Ok(())
    }
}

fn local(builder: SocketIoBuilder) -> SocketIoBuilder<LocalAdapter> {
    builder
}

/// The Socket.IO service, behind the count of sessions not yet authenticated.
fn layer_router(
    state: &AppState,
    layer: socketioxide::layer::SocketIoLayer<impl Adapter>,
) -> Router {
    let config = &state.config;
    let per_ip = config
        .max_connections_per_ip
        .map_or(config.max_pending_per_ip, |n| {
            n.min(config.max_pending_per_ip)
        });
    let pending = crate::socket::pending::PendingSessions::new(per_ip);
    Router::new()
        .layer(layer)
        .layer(crate::socket::pending::PendingLayer::new(
            pending,
            "/socket.io",
        ))
}

/// Registers the delivery hub and returns the shutdown routine for this adapter.
fn wire<A: Adapter>(state: &AppState, io: SocketIo<A>) -> Closer {
    state.set_hub(Arc::new(IoHub::new(io.clone())));
    let state = state.clone();
    Box::new(move || {
        Box::pin(async move {
            let sockets = io.local().sockets();
            for s in &sockets {
                if let Some(session) = s.extensions.get::<Arc<Session>>() {
                    connection::cleanup::<A>(&state, &s.id.to_string(), &session, None).await;
                }
            }
            state.workers.close();
            if tokio::time::timeout(state.config.shutdown_grace, state.workers.wait())
                .await
                .is_err()
            {
                tracing::warn!("shutdown grace elapsed with socket work still running");
            }
            crate::presence::leave_node(&state).await;
            io.close().await;
        })
    })
}

fn cors(config: &Config) -> CorsLayer {
    match &config.cors_origins {
        None => CorsLayer::permissive(),
        Some(origins) => {
            let list: Vec<::http::HeaderValue> =
                origins.iter().filter_map(|o| o.parse().ok()).collect();
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(list))
                .allow_methods(tower_http::cors::Any)
                .allow_headers([::http::header::AUTHORIZATION, ::http::header::CONTENT_TYPE])
        }
    }
}
