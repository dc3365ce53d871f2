//! Builds the application (storage, catalog, the services in dependency
//! order, the transports and the router) and serves HTTP and every
//! transport on one port until a shutdown signal; then stops every session,
//! every connection and every background task.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use tokio::net::TcpListener;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;

use crate::admin::Admin;
use crate::auth::JwtVerifier;
use crate::catalog::Catalog;
use crate::config::{Config, JwtKeySource};
use crate::documents::Documents;
use crate::error::Code;
use crate::events::Publisher;
use crate::events::conflate::Conflator;
use crate::fanout::Fanout;
use crate::limits::ConnectionLimits;
use crate::presence::Presence;
use crate::replay::DurableHub;
use crate::session::Sessions;
use crate::state::{AppState, Services};
use crate::store::Store;
use crate::tasks::Tasks;
use crate::throttle::{KeyFailures, UserRates};
use crate::transport::Closer;
use crate::{cluster, http, store};

pub struct App {
    listener: TcpListener,
    router: Router,
    /// `METRICS_ADDR`: the internal listener for `/metrics`, when set.
    metrics_listener: Option<TcpListener>,
    state: AppState,
    closers: Vec<Closer>,
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
        log_trusted_proxies(&config);
        let verifier = JwtVerifier::from_config(&config)?;
        let catalog = Catalog::load(config.catalog_file.as_deref())?;
        let rules = crate::rules::spec::load(&catalog, config.rules_file.as_deref())?;
        crate::metrics::register(&crate::metrics::series::Labels {
            event_types: catalog.type_names().collect(),
            refusal_codes: Code::ALL.map(Code::as_str).to_vec(),
            auth_failure_reasons: Code::AUTH_FAILURES.map(Code::as_str).to_vec(),
        });
        let store = store::connect(config.database_url.expose())
            .await
            .with_context(|| format!("DATABASE_URL: cannot open {}", config.database_url))?;
        store
            .migrate()
            .await
            .context("DATABASE_URL: migrations failed")?;
        let tasks = Tasks::new();
        let (adapter, redis) = match &config.redis_url {
            Some(_) => {
                let (ctr, link) = cluster::connect(&config, &tasks).await?;
                (Some(ctr), Some(link))
            }
            None => (None, None),
        };
        let state = services(config, verifier, store, catalog, redis, tasks).await?;
        if let Some(r) = crate::rules::Rules::start(
            rules,
            state.store.clone(),
            state.publisher.clone(),
            &state.tasks,
        ) {
            tracing::info!(rules = r.len(), "telemetry rules loaded");
        }
        let (socketio, closer) = crate::transport::socketio::mount(&state, adapter).await?;
        let plain = crate::transport::mount_plain(&state).await?;
        let gauges = crate::gauges::Sources {
            store: state.store.clone(),
            redis: state.redis.clone(),
            queue_ttl_ms: state.config.message_queue_ttl.as_millis() as i64,
        };
        crate::gauges::sample(&gauges, true).await;
        state.tasks.spawn(crate::gauges::run(gauges));
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
            // Before socket.io's router, whose engine serves as the fallback
            // (a router merged after it would replace that fallback).
            .merge(plain)
            .merge(socketio)
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                http::origin::check,
            ))
            .layer(tower::util::MapRequestLayer::new(
                http::origin::own_request_parts,
            ))
            .layer(DefaultBodyLimit::max(state.config.http_body_limit))
            .layer(cors(&state.config))
            .layer(TraceLayer::new_for_http().make_span_with(request_span));
        let addr = SocketAddr::new(state.config.host, state.config.port);
        let listener = crate::server::listen(addr)
            .with_context(|| format!("HOST/PORT: cannot listen on {addr}"))?;
        Ok(Self {
            listener,
            router,
            metrics_listener,
            state,
            closers: vec![closer],
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The internal `/metrics` listener's address (`METRICS_ADDR`), if any.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `signal` resolves, then shuts down gracefully (SPEC §1):
    /// refuse new connections; close every session (offline-queue cursors
    /// saved) and let requests in flight finish (durable writes); remove
    /// this node's presence; close every transport's connections without a
    /// DISCONNECT packet so socket.io clients reconnect (to another node);
    /// drain HTTP; then stop every background task and return.
    pub async fn run_until(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let state = self.state.clone();
        let closers = self.closers;
        let shutdown = async move {
            signal.await;
            tracing::info!("shutting down: draining sessions");
            close_sessions(&state).await;
            for close in closers {
                close().await;
            }
        };
        let options = crate::server::Options::from_config(&self.state.config);
        if let Some(listener) = self.metrics_listener {
            // Stopped with every other background task, after the public port.
            // `/metrics` and the HTTP API (the admin API with it, same keys):
            // operators reach both on an interface the public cannot.
            let router = crate::metrics::http::routes()
                .merge(http::routes(self.state.clone()))
                .layer(DefaultBodyLimit::max(self.state.config.http_body_limit))
                .layer(TraceLayer::new_for_http());
            self.state.tasks.spawn(crate::metrics::http::serve_internal(
                listener,
                router,
                std::future::pending(),
            ));
        }
        crate::server::serve(self.listener, self.router, options, shutdown).await;
        if !self
            .state
            .tasks
            .shutdown(self.state.config.shutdown_grace)
            .await
        {
            tracing::warn!("shutdown grace elapsed with background tasks still running");
        }
        Ok(())
    }
}

/// The services, each built with the narrow dependencies it owns, in
/// dependency order; then their background loops.
async fn services(
    config: Config,
    verifier: JwtVerifier,
    store: Arc<dyn Store>,
    catalog: Catalog,
    redis: Option<cluster::RedisLink>,
    tasks: Tasks,
) -> anyhow::Result<AppState> {
    let catalog = Arc::new(catalog);
    let fanout = Fanout::new();
    let durable = DurableHub::new(store.clone(), catalog.clone(), tasks.clone());
    if let Some(link) = &redis {
        let bus = crate::replay::bus::durable_bus(&config, durable.clone(), link, &tasks).await?;
        durable.set_bus(bus);
    }
    let webhooks = crate::webhooks::Webhooks::start(
        store.clone(),
        config.webhooks.clone(),
        config.node_id.clone(),
        &tasks,
    )
    .await
    .context("webhooks: endpoints not loaded")?;
    let publisher = Arc::new(publisher(
        &config, &store, &catalog, &durable, &fanout, &webhooks, &tasks,
    ));
    let documents = documents(&config, &store, &catalog, &fanout, &tasks);
    let presence = Presence::new(
        crate::presence::Settings {
            enabled: config.presence,
            node_id: config.node_id.clone(),
            grace: config.presence_grace,
            ttl: config.presence_ttl,
            broadcast_max: config.presence_broadcast_max,
        },
        store.clone(),
        fanout.clone(),
        tasks.clone(),
    );
    presence.set_webhooks(webhooks.clone());
    presence.start();
    let commands = crate::commands::Commands::new(
        store.clone(),
        catalog.clone(),
        publisher.clone(),
        fanout.clone(),
        presence.clone(),
        tasks.clone(),
        config.command_retention,
    );
    commands.start();
    tasks.spawn(crate::replay::prune_forever(store.clone()));
    tasks.spawn(crate::replay::cursors::save_forever(
        durable.clone(),
        store.clone(),
    ));
    let sessions = Arc::new(Sessions::default());
    let admin = admin(&config, &sessions, &store, &tasks).await?;
    Ok(AppState::new(Services {
        user_rates: UserRates::new(config.user_rate_limit, config.user_rate_burst),
        key_failures: KeyFailures::new(config.api_key_failure_limit),
        config,
        verifier,
        store,
        catalog,
        publisher,
        durable,
        fanout,
        documents,
        commands,
        presence,
        sessions,
        admin,
        webhooks,
        limits: ConnectionLimits::default(),
        redis,
        tasks,
        started: Instant::now(),
    }))
}

/// The admin service; with Redis, this node answers the others' questions
/// and asks them (`crate::cluster::rpc`).
async fn admin(
    config: &Config,
    sessions: &Arc<Sessions>,
    store: &Arc<dyn Store>,
    tasks: &Tasks,
) -> anyhow::Result<Admin> {
    let local = crate::admin::Local::new(config.node_id.clone(), sessions.clone());
    let rpc = match &config.redis_url {
        Some(_) => Some(
            crate::cluster::rpc::Rpc::start(
                config,
                config.node_id.clone(),
                config.presence_ttl,
                local.clone(),
                tasks,
            )
            .await?,
        ),
        None => None,
    };
    Ok(Admin::new(
        local,
        rpc,
        store.clone(),
        config.admin_timeout,
        config.message_queue_ttl.as_millis() as i64,
    ))
}

fn publisher(
    config: &Config,
    store: &Arc<dyn Store>,
    catalog: &Arc<Catalog>,
    durable: &Arc<DurableHub>,
    fanout: &Arc<Fanout>,
    webhooks: &Arc<crate::webhooks::Webhooks>,
    tasks: &Tasks,
) -> Publisher {
    Publisher::new(
        catalog.clone(),
        store::batch::Appender::new(store.clone(), tasks),
        durable.clone(),
        fanout.clone(),
        Conflator::new(fanout.clone(), tasks.clone()),
        webhooks.clone(),
        crate::events::Settings {
            max_payload: config.max_payload,
            queue_ttl_ms: config.message_queue_ttl.as_millis() as i64,
        },
    )
}

fn documents(
    config: &Config,
    store: &Arc<dyn Store>,
    catalog: &Arc<Catalog>,
    fanout: &Arc<Fanout>,
    tasks: &Tasks,
) -> Documents {
    Documents::new(
        store.clone(),
        catalog.clone(),
        fanout.clone(),
        crate::documents::bounds::Limits {
            max_fields: config.document_max_fields,
            max_bytes: config.document_max_bytes,
            tombstone_ttl_ms: store::IDEMPOTENCY_TTL_MS,
        },
        tasks.clone(),
    )
}

/// Closes every session of every transport (socketioxide's `io.close()`
/// runs no disconnect handlers), waits for their workers to finish the
/// request in hand, and removes this node's presence rows at once.
async fn close_sessions(state: &AppState) {
    state.tasks.begin_draining();
    for session in state.sessions.all() {
        crate::api::close(state, &session, "server shutdown").await;
    }
    if !state
        .sessions
        .drain_workers(state.config.shutdown_grace)
        .await
    {
        tracing::warn!("shutdown grace elapsed with session work still running");
    }
    state.presence.leave_node().await;
}

/// Says at startup whose `X-Forwarded-For` is believed, if anyone's.
fn log_trusted_proxies(config: &Config) {
    if config.trusted_proxies.is_empty() {
        return;
    }
    let ranges: Vec<String> = config
        .trusted_proxies
        .ranges()
        .iter()
        .map(ToString::to_string)
        .collect();
    tracing::info!(
        proxies = %ranges.join(","),
        "TRUSTED_PROXIES: a request from these peers is from the client its X-Forwarded-For names"
    );
}

/// The span of one HTTP request: the client's address (behind trusted
/// proxies, the forwarded one) rather than nothing, and the path without
/// its query, which may carry a token (`?token=`).
fn request_span(req: &::http::Request<axum::body::Body>) -> tracing::Span {
    tracing::debug_span!(
        "request",
        method = %req.method(),
        path = %req.uri().path(),
        client = crate::client_ip::of(req.extensions()).map(tracing::field::display),
    )
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
