//! Switchyard: a self-hosted, Socket.IO-compatible real-time server for
//! operations software. The map, following a request's path:
//!
//! - [`config`]: environment → typed [`config::Config`]; errors name the variable.
//! - [`app`]: builds state, storage, catalog and adapter; serves HTTP + Socket.IO on one port
//!   (and `/metrics` on `METRICS_ADDR` when set).
//! - [`server`]: the accept loop under axum: connection cap (with a health reserve), header
//!   and idle timeouts, descriptor exhaustion handled.
//! - [`auth`]: JWT verification/minting, the socket connect middleware, API keys.
//! - [`socket`]: connection life cycle, the ordered per-socket dispatcher,
//!   rooms, publishing, delivery (with role filtering and the Redis fallback).
//! - [`events`]: publishing shared by socket and HTTP: validation, durable append, conflation.
//! - [`presence`]: who is online across the cluster (database-backed, exactly-once transitions), typing.
//! - [`replay`]: live delivery of durable events per socket, catch-up, offline-queue cursors, retention.
//! - [`documents`]: last-write-wins documents shared by socket and HTTP: merge, permissions, shapes.
//! - [`catalog`]: event types, schemas, priorities, publish/receive roles.
//! - [`http`]: health, event API, telemetry ingest.
//! - [`limits`]: connection limits per node and per IP, per-socket rate limits.
//! - [`throttle`]: limits across connections: per-user event rate, failed API-key attempts per IP.
//! - [`metrics`]: Prometheus metrics, named in one place, all registered at startup; sampled gauges.
//! - [`secret`]: redacted types for keys and connection URLs (never in logs or `Debug`).
//! - [`store`]: the storage interface with its PostgreSQL and SQLite implementations.
//! - [`cluster`]: the Redis adapter wiring, Redis health and the self-probe, the durable bus.
//! - [`domain`]: pure types and rules (roles, identities, room names).
//! - [`error`]: the protocol's error codes and their one mapping to acks and HTTP.
#![forbid(unsafe_code)]

pub mod app;
pub mod auth;
pub mod catalog;
pub mod cluster;
pub mod config;
pub mod documents;
pub mod domain;
pub mod error;
pub mod events;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod presence;
pub mod replay;
pub mod secret;
pub mod server;
pub mod socket;
pub mod state;
pub mod store;
pub mod throttle;

pub use app::App;
pub use config::Config;
