//! Switchyard: a self-hosted, Socket.IO-compatible real-time server for
//! operations software. The map, lowest layer first; a module imports only
//! modules of lower layers (`tests/layers.rs` fails on any import circle).
//!
//! **Foundations**
//! - [`metrics`]: Prometheus metrics, named in one place, all registered at startup; sampled gauges.
//! - [`secret`]: redacted types for keys and connection URLs (never in logs or `Debug`).
//! - [`tasks`]: the one cancellation token and task tracker of every background loop.
//! - [`client_ip`]: the client's address behind `TRUSTED_PROXIES` (`X-Forwarded-For`),
//!   derived once per request by [`server`] and read by every per-IP limit.
//! - [`config`]: environment → typed [`config::Config`]; errors name the variable.
//! - [`error`]: the protocol's error codes and their one mapping to acks and HTTP.
//! - [`domain`]: pure types and rules: roles, identities, company/user/session ids,
//!   room names, event type names, request parsing that names the failing field,
//!   the presence state machine.
//!
//! **Rules and storage**
//! - [`catalog`]: event types, schemas, priorities, publish/receive roles,
//!   server-only types (refused from every client path); commands; the JSON export.
//! - [`store`]: the storage interface with its PostgreSQL and SQLite implementations,
//!   the group-commit writer and its circuit breaker.
//! - [`limits`], [`throttle`]: connection limits, token buckets, per-user and API-key throttles.
//! - [`auth`]: JWT verification/minting, token sources, the API-key check.
//! - [`rooms`]: who may be in which room (pure): automatic rooms, `subscribe` and resume plans.
//! - [`cluster`]: Redis client settings, the health link, the self-probe, and
//!   `rpc` (ask every node over Redis; name the ones that did not answer).
//! - [`server`]: the accept loop under axum (connection cap, timeouts, descriptors).
//! - [`gauges`]: gauges sampled on a timer (database/Redis up, pool use, offline backlog).
//!
//! **Sessions and delivery**
//! - [`session`]: a connection whatever its transport: identity, rooms, rate buckets,
//!   the ordered job queue, the [`session::Sink`] a transport implements; the
//!   per-node [`session::Sessions`] registry.
//! - [`fanout`]: ephemeral delivery to rooms through every transport's hub.
//!
//! **Services** (each owns its narrow dependencies; built in [`app`])
//! - [`replay`]: durable delivery per session (feeds, catch-up, offline queue,
//!   cursors, retention) and the Redis bus between nodes.
//! - [`webhooks`]: per-company webhook endpoints, the durable outbox, signed
//!   deliveries with retries and dead letters, SSRF-checked targets.
//! - [`events`]: the [`events::Publisher`]: validation, durable append, conflation, delivery.
//! - [`documents`]: last-write-wins documents: merge, permissions, shapes, announcements.
//! - [`presence`]: who is online across the cluster (database-backed, exactly-once
//!   transitions), entity-room presence, typing.
//! - [`commands`]: device commands: send, deliver, ack/result, TIMEOUT sweep, interlocks,
//!   retention of finished ones (`COMMAND_RETENTION`)
//!   (the state machine is [`domain::command`]; the database arbitrates each transition).
//! - [`rules`]: telemetry rules: deadbands and thresholds that raise/clear alarms once across
//!   nodes (the publisher's observer; evaluation in [`domain::rule`]; `RULES_FILE`); the
//!   `rules` of `switchyard catalog --json`.
//!
//! - [`admin`]: the admin API's service: every node's connections, kicks and
//!   statistics over `cluster::rpc`, naming nodes that did not answer.
//!
//! **Serving**
//! - [`state`]: [`state::AppState`], which holds the services (no logic).
//! - [`api`]: the one route table, typed requests and replies, the handlers, and a
//!   connection's life cycle (`open`, `close`), shared by every transport.
//! - [`transport`]: thin over `api`: Socket.IO (socketioxide + its Redis adapter),
//!   plain JSON over WebSocket (`transport::ws`), Server-Sent Events
//!   (`transport::sse`), and what the two plain ones share (their sink, frame
//!   formats, their sessions by room, the Redis relay of their ephemeral deliveries
//!   to the nodes that want them).
//! - [`http`]: health, metrics, the event, telemetry and document APIs (API keys);
//!   event history by time range (pages and NDJSON); the admin API and the
//!   webhook admin API; the OpenAPI document.
//! - [`app`]: builds everything, serves HTTP and the transports on one port (and `/metrics`
//!   on `METRICS_ADDR` when set), shuts down.
#![forbid(unsafe_code)]

pub mod admin;
pub mod api;
pub mod app;
pub mod auth;
pub mod catalog;
pub mod client_ip;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod documents;
pub mod domain;
pub mod error;
pub mod events;
pub mod fanout;
pub mod gauges;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod presence;
pub mod replay;
pub mod rooms;
pub mod rules;
pub mod secret;
pub mod server;
pub mod session;
pub mod state;
pub mod store;
pub mod tasks;
pub mod throttle;
pub mod transport;
pub mod webhooks;

pub use app::App;
pub use config::Config;
