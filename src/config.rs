//! Typed configuration read from the environment (and an optional `.env`).
//!
//! Every variable is listed in `.env.example` with its default. Parsing is
//! strict: a value that does not parse fails startup with an error naming the
//! variable, so a typo never silently falls back to a default.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use thiserror::Error;

pub use crate::client_ip::{ForwardingHeader, TrustedProxies};
pub use crate::secret::{Secret, SecretUrl};

/// A configuration problem, always naming the variable at fault.
#[derive(Debug, Error)]
#[error("invalid configuration: {var}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub reason: String,
}

fn bad(var: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        reason: reason.into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where JWT verification keys come from.
#[derive(Debug, Clone)]
pub enum JwtKeySource {
    /// HS256 with a shared secret; `generated` when dev mode made one up.
    Secret { secret: Secret, generated: bool },
    /// RS256/ES256 with an SPKI PEM public key (the algorithm follows the key).
    PublicKeyFile(PathBuf),
}

/// Webhook delivery (see `crate::webhooks`): `WEBHOOK_*`.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// `WEBHOOK_ALLOW_PRIVATE`: allow loopback/private targets (tests, dev).
    pub allow_private: bool,
    /// `WEBHOOK_TIMEOUT_MS`: one request, connect to last byte of the head.
    pub timeout: Duration,
    /// `WEBHOOK_RETRY_BASE_MS`: the first retry delay (doubled per failure).
    pub retry_base: Duration,
    /// `WEBHOOK_RETRY_MAX_MS`: the longest delay between attempts.
    pub retry_max: Duration,
    /// `WEBHOOK_RETRY_FOR_MS`: how long a delivery is retried before it is dead.
    pub retry_for: Duration,
    /// `WEBHOOK_POLL_MS`: how often a node looks for due deliveries.
    pub poll: Duration,
    /// `WEBHOOK_REFRESH_MS`: how often a node re-reads the endpoints.
    pub refresh: Duration,
    /// `WEBHOOK_CONCURRENCY`: requests in flight per node.
    pub concurrency: usize,
}

/// Secrets are typed ([`Secret`], [`SecretUrl`]) so that `{:?}` of a
/// `Config` (and any log line built from one) never shows them.
#[derive(Debug, Clone)]
pub struct Config {
    pub env: Environment,
    pub host: IpAddr,
    pub port: u16,
    pub node_id: String,
    pub database_url: SecretUrl,
    pub redis_url: Option<SecretUrl>,
    pub redis_prefix: String,
    pub jwt_key: JwtKeySource,
    pub jwt_issuer: Option<String>,
    pub jwt_audience: Option<String>,
    pub jwt_leeway: Duration,
    /// `JWT_MAX_TTL`: the longest lifetime a token may have (`exp − iat`,
    /// and `exp − now`); `None` = no limit.
    pub jwt_max_ttl: Option<Duration>,
    pub api_keys: Vec<Secret>,
    /// `ADMIN_API_KEYS`: keys for the admin API (`/api/v1/admin/...`); separate
    /// from `API_KEYS`, which publish but never administer.
    pub admin_api_keys: Vec<Secret>,
    /// `API_KEY_FAILURE_LIMIT`: failed API-key attempts per IP (IPv6: per
    /// /64) per minute before the HTTP API answers 429.
    pub api_key_failure_limit: u32,
    /// `None` = any origin (development default); `Some(empty)` = same-origin only.
    pub cors_origins: Option<Vec<String>>,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
    pub max_payload: usize,
    pub max_subscriptions: usize,
    /// Largest document (its JSON data plus its field metadata), bytes:
    /// bigger results are PAYLOAD_TOO_LARGE.
    pub document_max_bytes: usize,
    /// Most fields a document (and one update) may have (`DOCUMENT_MAX_FIELDS`).
    pub document_max_fields: usize,
    pub rate_limit: f64,
    pub rate_burst: f64,
    /// `WS_USER_RATE_LIMIT` / `WS_USER_RATE_BURST`: one bucket per user and
    /// node, shared by all the user's sockets on that node.
    pub user_rate_limit: f64,
    pub user_rate_burst: f64,
    pub message_queue_ttl: Duration,
    /// `COMMAND_RETENTION`: how long a finished (succeeded or failed) device
    /// command is kept, from when it finished, before the retention sweep
    /// deletes it. Open commands are never deleted.
    pub command_retention: Duration,
    /// How long a dead node's sockets count as present (`WS_PRESENCE_TTL`).
    /// `WS_PRESENCE`: whether presence (online/offline, `presence:list`) runs.
    pub presence: bool,
    pub presence_ttl: Duration,
    /// How long after a user's last socket left `user:offline` waits for a
    /// reconnect (`WS_PRESENCE_GRACE_MS`).
    pub presence_grace: Duration,
    /// Most users online in a company for which each arrival and departure
    /// is sent to the whole company (`WS_PRESENCE_BROADCAST_MAX`); above it,
    /// `presence:batch` frames go to the sessions that asked for them.
    pub presence_broadcast_max: usize,
    pub catalog_file: Option<PathBuf>,
    /// Telemetry rules merged over the catalog's `rules` (`RULES_FILE`).
    pub rules_file: Option<PathBuf>,
    pub http_body_limit: usize,
    /// Time allowed for a request's headers, and for the first request of a
    /// new or idle keep-alive connection (`HTTP_HEADER_TIMEOUT_MS`).
    pub http_header_timeout: Duration,
    /// Time allowed for a request's body once its headers are in
    /// (`HTTP_BODY_TIMEOUT_MS`).
    pub http_body_timeout: Duration,
    /// TCP connections served at once (`HTTP_MAX_CONNECTIONS`; default from
    /// the descriptor limit), beyond which new ones are closed at once.
    pub http_max_connections: usize,
    /// Engine sessions that have not connected to a namespace after this are
    /// closed (`WS_CONNECT_TIMEOUT_MS`).
    pub ws_connect_timeout: Duration,
    /// Engine sessions per IP not yet authenticated (`WS_MAX_PENDING_PER_IP`).
    pub max_pending_per_ip: usize,
    /// `TRUSTED_PROXIES`: the peers whose `X-Forwarded-For` names the
    /// client (see `crate::client_ip`); empty = the TCP peer is the client.
    pub trusted_proxies: TrustedProxies,
    pub shutdown_grace: Duration,
    pub log_format: LogFormat,
    /// `METRICS_ADDR`: an internal listener for `/metrics`; when set, the
    /// public port no longer serves it.
    pub metrics_addr: Option<SocketAddr>,
    /// `ADMIN_TIMEOUT_MS`: how long a cluster-wide admin question waits for
    /// the other nodes before naming the silent ones in `incomplete`.
    pub admin_timeout: Duration,
    /// `ADMIN_UI=on` (+ credentials): the `/admin` namespace of the official
    /// socket.io Admin UI. `None` = off.
    pub admin_ui: Option<AdminUi>,
    /// `WS_JSON_PATH`: the paths of the plain JSON WebSocket endpoint.
    pub ws_json_paths: Vec<String>,
    /// The Server-Sent Events paths: `/api/v1/stream` plus `SSE_PATHS`.
    pub sse_paths: Vec<String>,
    pub webhooks: WebhookSettings,
}

/// `ADMIN_UI_USERNAME` / `ADMIN_UI_PASSWORD` / `ADMIN_UI_READONLY`.
#[derive(Debug, Clone)]
pub struct AdminUi {
    pub username: String,
    pub password: Secret,
    /// `ADMIN_UI_READONLY=off` allows the UI's disconnect action.
    pub readonly: bool,
}

/// `COMMAND_RETENTION` default: 30 days, long enough for a month's audit of
/// who commanded what (`GET /api/v1/commands`), short enough that the table
/// stays bounded.
pub const DEFAULT_COMMAND_RETENTION: Duration = Duration::from_secs(30 * 86_400);

/// The Server-Sent Events endpoint every node serves.
pub const SSE_PATH: &str = "/api/v1/stream";

/// A list of URL paths (`WS_JSON_PATH`, `SSE_PATHS`): each must start with
/// `/` and not be taken by another endpoint.
fn paths(v: &Vars, var: &'static str, default: &[&str]) -> Result<Vec<String>, ConfigError> {
    let mut list: Vec<String> = Vec::new();
    // Each path once: the router refuses a path twice.
    for path in v
        .list(var)
        .unwrap_or_else(|| default.iter().map(|p| p.to_string()).collect())
    {
        if !list.contains(&path) {
            list.push(path);
        }
    }
    for path in &list {
        if !path.starts_with('/') || path.contains(['?', '#', '{', '}', '*']) {
            return Err(bad(
                var,
                format!("`{path}` must be a plain path starting with /"),
            ));
        }
        if path.starts_with("/socket.io") || path.starts_with("/health") || path == "/metrics" {
            return Err(bad(var, format!("`{path}` is taken by another endpoint")));
        }
    }
    Ok(list)
}

/// Reads variables from a map so tests never touch the process environment.
struct Vars(HashMap<String, String>);

impl Vars {
    fn get(&self, var: &str) -> Option<&str> {
        self.0.get(var).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    fn parse<T: std::str::FromStr>(&self, var: &'static str, default: T) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(var) {
            None => Ok(default),
            Some(raw) => raw
                .parse()
                .map_err(|e| bad(var, format!("`{raw}` is not valid: {e}"))),
        }
    }

    fn optional_usize(&self, var: &'static str) -> Result<Option<usize>, ConfigError> {
        match self.get(var) {
            None | Some("0") => Ok(None),
            Some(raw) => raw
                .parse()
                .map(Some)
                .map_err(|e| bad(var, format!("`{raw}` is not a count: {e}"))),
        }
    }

    fn millis(&self, var: &'static str, default_ms: u64) -> Result<Duration, ConfigError> {
        let ms: u64 = self.parse(var, default_ms)?;
        if ms == 0 {
            return Err(bad(var, "must be greater than 0 ms"));
        }
        Ok(Duration::from_millis(ms))
    }

    fn seconds(&self, var: &'static str, default_s: u64) -> Result<Duration, ConfigError> {
        Ok(Duration::from_secs(self.parse(var, default_s)?))
    }

    /// A duration in seconds (`3600`) or humantime (`1h`); unset = `None`.
    fn optional_duration(&self, var: &'static str) -> Result<Option<Duration>, ConfigError> {
        match self.any_duration(var)? {
            Some(d) if d.is_zero() => {
                Err(bad(var, "must be greater than 0 (unset it for no limit)"))
            }
            d => Ok(d),
        }
    }

    /// A duration in seconds (`86400`) or humantime (`30d`), greater than 0;
    /// unset = `default`.
    fn duration(&self, var: &'static str, default: Duration) -> Result<Duration, ConfigError> {
        match self.any_duration(var)? {
            Some(d) if d.is_zero() => Err(bad(var, "must be greater than 0")),
            d => Ok(d.unwrap_or(default)),
        }
    }

    fn any_duration(&self, var: &'static str) -> Result<Option<Duration>, ConfigError> {
        let Some(raw) = self.get(var) else {
            return Ok(None);
        };
        let parsed = match raw.parse::<u64>() {
            Ok(secs) => Duration::from_secs(secs),
            Err(_) => humantime::parse_duration(raw).map_err(|e| {
                bad(
                    var,
                    format!("`{raw}` is neither seconds nor a duration: {e}"),
                )
            })?,
        };
        Ok(Some(parsed))
    }

    /// A positive events/s rate.
    fn rate(&self, var: &'static str, default: f64, min: f64) -> Result<f64, ConfigError> {
        let rate: f64 = self.parse(var, default)?;
        if !(rate.is_finite() && rate >= min && rate > 0.0) {
            return Err(bad(
                var,
                format!("must be a number of events/s, at least {min}"),
            ));
        }
        Ok(rate)
    }

    fn list(&self, var: &'static str) -> Option<Vec<String>> {
        self.get(var).map(|raw| {
            raw.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
    }
}

impl Config {
    /// Loads `.env` (if present) then reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        // A missing .env is normal; a malformed one is not.
        if let Err(e) = dotenvy::dotenv()
            && !e.not_found()
        {
            return Err(bad(".env", e.to_string()));
        }
        Self::from_map(std::env::vars().collect())
    }

    pub fn from_map(map: HashMap<String, String>) -> Result<Self, ConfigError> {
        let v = Vars(map);
        let env = match v.get("SWITCHYARD_ENV").unwrap_or("development") {
            "development" | "dev" => Environment::Development,
            "production" | "prod" => Environment::Production,
            other => {
                return Err(bad(
                    "SWITCHYARD_ENV",
                    format!("`{other}` must be development or production"),
                ));
            }
        };
        let jwt_key = jwt_key(&v, env)?;
        let rate_limit: f64 = v.parse("WS_RATE_LIMIT", 20.0)?;
        if !(rate_limit.is_finite() && rate_limit > 0.0) {
            return Err(bad(
                "WS_RATE_LIMIT",
                "must be a positive number of events/s",
            ));
        }
        let rate_burst: f64 = v.parse("WS_RATE_BURST", rate_limit * 2.0)?;
        if !(rate_burst.is_finite() && rate_burst >= 1.0) {
            return Err(bad("WS_RATE_BURST", "must be at least 1"));
        }
        // A user's sockets together: three sockets' worth by default.
        let user_rate_limit = v.rate("WS_USER_RATE_LIMIT", rate_limit * 3.0, 0.0)?;
        let user_rate_burst = v.rate("WS_USER_RATE_BURST", user_rate_limit * 2.0, 1.0)?;
        let max_payload: usize = v.parse("WS_MAX_PAYLOAD", 65_536)?;
        if max_payload < 1024 {
            return Err(bad("WS_MAX_PAYLOAD", "must be at least 1024 bytes"));
        }
        let document_max_bytes: usize = v.parse("DOCUMENT_MAX_BYTES", 262_144)?;
        if document_max_bytes < 1024 {
            return Err(bad("DOCUMENT_MAX_BYTES", "must be at least 1024 bytes"));
        }
        let document_max_fields: usize = v.parse("DOCUMENT_MAX_FIELDS", 1_000)?;
        if document_max_fields == 0 {
            return Err(bad("DOCUMENT_MAX_FIELDS", "must be at least 1"));
        }
        let max_pending_per_ip: usize = v.parse("WS_MAX_PENDING_PER_IP", 64)?;
        if max_pending_per_ip == 0 {
            return Err(bad("WS_MAX_PENDING_PER_IP", "must be at least 1"));
        }
        let http_max_connections: usize = v.parse(
            "HTTP_MAX_CONNECTIONS",
            default_max_connections(nofile_limit()),
        )?;
        if http_max_connections == 0 {
            return Err(bad("HTTP_MAX_CONNECTIONS", "must be at least 1"));
        }
        let presence_ttl = v.seconds("WS_PRESENCE_TTL", 300)?;
        if presence_ttl.is_zero() {
            return Err(bad("WS_PRESENCE_TTL", "must be at least 1 second"));
        }
        let cors_origins = match v.list("CORS_ORIGINS") {
            Some(list) if list.iter().any(|o| o == "*") => None,
            Some(list) => Some(list),
            None if env == Environment::Production => Some(Vec::new()),
            None => None,
        };
        let ws_json_paths = paths(&v, "WS_JSON_PATH", &["/ws"])?;
        let mut sse_paths = vec![SSE_PATH.to_string()];
        sse_paths.extend(
            paths(&v, "SSE_PATHS", &[])?
                .into_iter()
                .filter(|p| p != SSE_PATH),
        );
        if let Some(p) = sse_paths.iter().find(|p| ws_json_paths.contains(p)) {
            return Err(bad("SSE_PATHS", format!("`{p}` is also in WS_JSON_PATH")));
        }
        let webhooks = webhook_settings(&v)?;
        Ok(Config {
            env,
            host: v.parse("HOST", IpAddr::from([0, 0, 0, 0]))?,
            port: v.parse("PORT", 3001)?,
            node_id: v
                .get("NODE_ID")
                .map(str::to_string)
                .unwrap_or_else(default_node_id),
            database_url: SecretUrl::new(v.get("DATABASE_URL").unwrap_or("sqlite://switchyard.db")),
            redis_url: v.get("REDIS_URL").map(SecretUrl::new),
            redis_prefix: v.get("REDIS_PREFIX").unwrap_or("switchyard").to_string(),
            jwt_key,
            jwt_issuer: v.get("JWT_ISSUER").map(str::to_string),
            jwt_audience: v.get("JWT_AUDIENCE").map(str::to_string),
            jwt_leeway: v.seconds("JWT_LEEWAY", 30)?,
            jwt_max_ttl: v.optional_duration("JWT_MAX_TTL")?,
            api_keys: v
                .list("API_KEYS")
                .unwrap_or_default()
                .into_iter()
                .map(Secret::new)
                .collect(),
            admin_api_keys: v
                .list("ADMIN_API_KEYS")
                .unwrap_or_default()
                .into_iter()
                .map(Secret::new)
                .collect(),
            api_key_failure_limit: match v.parse("API_KEY_FAILURE_LIMIT", 10u32)? {
                0 => return Err(bad("API_KEY_FAILURE_LIMIT", "must be at least 1")),
                n => n,
            },
            cors_origins,
            ping_interval: v.millis("WS_PING_INTERVAL", 25_000)?,
            ping_timeout: v.millis("WS_PING_TIMEOUT", 20_000)?,
            max_connections: v.optional_usize("WS_MAX_CONNECTIONS")?,
            max_connections_per_ip: v.optional_usize("WS_MAX_CONNECTIONS_PER_IP")?,
            max_payload,
            max_subscriptions: v.parse("WS_MAX_SUBSCRIPTIONS", 50)?,
            document_max_bytes,
            document_max_fields,
            rate_limit,
            rate_burst,
            user_rate_limit,
            user_rate_burst,
            message_queue_ttl: v.seconds("WS_MESSAGE_QUEUE_TTL", 86_400)?,
            command_retention: v.duration("COMMAND_RETENTION", DEFAULT_COMMAND_RETENTION)?,
            presence: match v.get("WS_PRESENCE").unwrap_or("on") {
                "on" | "true" => true,
                "off" | "false" => false,
                other => return Err(bad("WS_PRESENCE", format!("`{other}` must be on or off"))),
            },
            presence_ttl,
            presence_grace: v.millis("WS_PRESENCE_GRACE_MS", 5_000)?,
            presence_broadcast_max: v.parse("WS_PRESENCE_BROADCAST_MAX", 500)?,
            catalog_file: v.get("CATALOG_FILE").map(PathBuf::from),
            rules_file: v.get("RULES_FILE").map(PathBuf::from),
            http_body_limit: v.parse("HTTP_BODY_LIMIT", 1_048_576)?,
            http_header_timeout: v.millis("HTTP_HEADER_TIMEOUT_MS", 10_000)?,
            http_body_timeout: v.millis("HTTP_BODY_TIMEOUT_MS", 30_000)?,
            http_max_connections,
            ws_connect_timeout: v.millis("WS_CONNECT_TIMEOUT_MS", 10_000)?,
            max_pending_per_ip,
            trusted_proxies: TrustedProxies::parse(&v.list("TRUSTED_PROXIES").unwrap_or_default())
                .map_err(|e| bad("TRUSTED_PROXIES", e.to_string()))?
                .with_header(match v.get("FORWARDED_HEADER") {
                    None => ForwardingHeader::default(),
                    Some(name) => ForwardingHeader::parse(name).ok_or_else(|| {
                        bad(
                            "FORWARDED_HEADER",
                            format!("`{name}` is not `x-forwarded-for` or `forwarded`"),
                        )
                    })?,
                }),
            shutdown_grace: v.seconds("SHUTDOWN_GRACE", 10)?,
            log_format: match v.get("LOG_FORMAT").unwrap_or("text") {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                other => {
                    return Err(bad("LOG_FORMAT", format!("`{other}` must be text or json")));
                }
            },
            admin_timeout: match v.millis("ADMIN_TIMEOUT_MS", 1_500)? {
                d if d.is_zero() => return Err(bad("ADMIN_TIMEOUT_MS", "must be at least 1 ms")),
                d => d,
            },
            admin_ui: admin_ui(&v)?,
            ws_json_paths,
            sse_paths,
            metrics_addr: match v.get("METRICS_ADDR") {
                None => None,
                Some(raw) => {
                    Some(raw.parse().map_err(|e| {
                        bad("METRICS_ADDR", format!("`{raw}` is not host:port: {e}"))
                    })?)
                }
            },
            webhooks,
        })
    }

    pub fn is_production(&self) -> bool {
        self.env == Environment::Production
    }
}

fn on_off(v: &Vars, var: &'static str, default: bool) -> Result<bool, ConfigError> {
    match v.get(var) {
        None => Ok(default),
        Some("on" | "true") => Ok(true),
        Some("off" | "false") => Ok(false),
        Some(other) => Err(bad(var, format!("`{other}` must be on or off"))),
    }
}

fn admin_ui(v: &Vars) -> Result<Option<AdminUi>, ConfigError> {
    if !on_off(v, "ADMIN_UI", false)? {
        return Ok(None);
    }
    let username = v
        .get("ADMIN_UI_USERNAME")
        .filter(|u| !u.is_empty())
        .ok_or_else(|| bad("ADMIN_UI_USERNAME", "required when ADMIN_UI=on"))?;
    let password = match v.get("ADMIN_UI_PASSWORD") {
        Some(p) if p.len() >= 12 => p,
        _ => {
            return Err(bad(
                "ADMIN_UI_PASSWORD",
                "required when ADMIN_UI=on, at least 12 characters",
            ));
        }
    };
    Ok(Some(AdminUi {
        username: username.to_string(),
        password: Secret::new(password),
        readonly: on_off(v, "ADMIN_UI_READONLY", true)?,
    }))
}

fn webhook_settings(v: &Vars) -> Result<WebhookSettings, ConfigError> {
    let retry_base = v.millis("WEBHOOK_RETRY_BASE_MS", 10_000)?;
    let retry_max = v.millis("WEBHOOK_RETRY_MAX_MS", 3_600_000)?;
    if retry_max < retry_base {
        return Err(bad(
            "WEBHOOK_RETRY_MAX_MS",
            "must be at least WEBHOOK_RETRY_BASE_MS",
        ));
    }
    let concurrency: usize = v.parse("WEBHOOK_CONCURRENCY", 16)?;
    if concurrency == 0 {
        return Err(bad("WEBHOOK_CONCURRENCY", "must be at least 1"));
    }
    Ok(WebhookSettings {
        allow_private: on_off(v, "WEBHOOK_ALLOW_PRIVATE", false)?,
        timeout: v.millis("WEBHOOK_TIMEOUT_MS", 10_000)?,
        retry_base,
        retry_max,
        retry_for: v.millis("WEBHOOK_RETRY_FOR_MS", 86_400_000)?,
        poll: v.millis("WEBHOOK_POLL_MS", 1_000)?,
        refresh: v.millis("WEBHOOK_REFRESH_MS", 5_000)?,
        concurrency,
    })
}

fn jwt_key(v: &Vars, env: Environment) -> Result<JwtKeySource, ConfigError> {
    match (v.get("JWT_SECRET"), v.get("JWT_PUBLIC_KEY_FILE")) {
        (Some(_), Some(_)) => Err(bad(
            "JWT_PUBLIC_KEY_FILE",
            "set either JWT_SECRET (HS256) or JWT_PUBLIC_KEY_FILE (RS256/ES256), not both",
        )),
        (Some(secret), None) if secret.len() < 16 => Err(bad(
            "JWT_SECRET",
            "must be at least 16 characters (use a long random string)",
        )),
        (Some(secret), None) => Ok(JwtKeySource::Secret {
            secret: Secret::new(secret),
            generated: false,
        }),
        (None, Some(path)) => Ok(JwtKeySource::PublicKeyFile(PathBuf::from(path))),
        (None, None) if env == Environment::Production => Err(bad(
            "JWT_SECRET",
            "required when SWITCHYARD_ENV=production (or set JWT_PUBLIC_KEY_FILE)",
        )),
        (None, None) => Ok(JwtKeySource::Secret {
            secret: Secret::new(random_secret()),
            generated: true,
        }),
    }
}

fn random_secret() -> String {
    use rand::Rng;
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The soft limit on open descriptors (`ulimit -n`, systemd `LimitNOFILE`),
/// from `/proc/self/limits`; `None` where that file does not exist.
pub fn nofile_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Descriptors kept for everything but client connections: the database
/// pool, Redis, files, the runtime (an idle node uses about 20).
pub const DESCRIPTOR_HEADROOM: u64 = 128;

/// Connections the accept loop keeps for health checks beyond
/// `HTTP_MAX_CONNECTIONS` (see `server`); counted in the descriptor budget.
pub const RESERVE_SLOTS: usize = 16;

/// Client connections the descriptor limit can hold with room to spare (and
/// room for the health reserve, see `crate::server`); 10,000 when unknown.
fn default_max_connections(nofile: Option<u64>) -> usize {
    match nofile {
        Some(n) => {
            let spare = DESCRIPTOR_HEADROOM + RESERVE_SLOTS as u64;
            n.saturating_sub(spare).max(16) as usize
        }
        None => 10_000,
    }
}

fn default_node_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "node".to_string());
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_map(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn defaults_start_a_dev_server_with_generated_secret() {
        let c = cfg(&[]).expect("defaults are valid");
        assert_eq!(c.port, 3001);
        assert_eq!(c.database_url.expose(), "sqlite://switchyard.db");
        assert_eq!(c.metrics_addr, None);
        assert_eq!(c.max_payload, 65_536);
        assert_eq!(c.max_subscriptions, 50);
        assert_eq!(c.document_max_bytes, 262_144);
        assert_eq!(c.rate_burst, 40.0);
        assert!(matches!(
            c.jwt_key,
            JwtKeySource::Secret {
                generated: true,
                ..
            }
        ));
        assert!(c.cors_origins.is_none());
    }

    #[test]
    fn the_admin_ui_is_off_by_default_and_needs_credentials_when_on() {
        let c = cfg(&[]).expect("defaults");
        assert!(c.admin_ui.is_none());
        assert_eq!(c.admin_timeout, Duration::from_millis(1500));
        assert_eq!(
            cfg(&[("ADMIN_UI", "on")]).unwrap_err().var,
            "ADMIN_UI_USERNAME"
        );
        let short = [
            ("ADMIN_UI", "on"),
            ("ADMIN_UI_USERNAME", "ops"),
            ("ADMIN_UI_PASSWORD", "short"),
        ];
        assert_eq!(cfg(&short).unwrap_err().var, "ADMIN_UI_PASSWORD");
        assert_eq!(cfg(&[("ADMIN_UI", "maybe")]).unwrap_err().var, "ADMIN_UI");
        assert_eq!(
            cfg(&[("ADMIN_TIMEOUT_MS", "0")]).unwrap_err().var,
            "ADMIN_TIMEOUT_MS"
        );
        let on = [
            ("ADMIN_UI", "on"),
            ("ADMIN_UI_USERNAME", "ops"),
            ("ADMIN_UI_PASSWORD", "ui-password-secret-42"),
        ];
        let ui = cfg(&on).expect("valid").admin_ui.expect("on");
        assert!(ui.readonly, "read-only unless ADMIN_UI_READONLY=off");
        assert_eq!(ui.password.expose(), "ui-password-secret-42");
        let writable = [on.as_slice(), &[("ADMIN_UI_READONLY", "off")]].concat();
        assert!(
            !cfg(&writable)
                .expect("valid")
                .admin_ui
                .expect("on")
                .readonly
        );
        assert!(!format!("{:?}", cfg(&on).expect("valid")).contains("ui-password-secret-42"));
    }

    #[test]
    fn transport_paths() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.ws_json_paths, ["/ws"]);
        assert_eq!(c.sse_paths, [SSE_PATH]);
        let c = cfg(&[
            ("WS_JSON_PATH", "/,/ws,/dev"),
            ("SSE_PATHS", "/api/os/events"),
        ])
        .unwrap();
        assert_eq!(c.ws_json_paths, ["/", "/ws", "/dev"]);
        assert_eq!(c.sse_paths, [SSE_PATH, "/api/os/events"]);
        for (var, value) in [
            ("WS_JSON_PATH", "ws"),
            ("WS_JSON_PATH", "/socket.io"),
            ("SSE_PATHS", "/health/x"),
            ("SSE_PATHS", "/a?b"),
        ] {
            assert_eq!(cfg(&[(var, value)]).unwrap_err().var, var, "{value}");
        }
        let clash = cfg(&[("WS_JSON_PATH", "/x"), ("SSE_PATHS", "/x")]).unwrap_err();
        assert_eq!(clash.var, "SSE_PATHS");
    }

    #[test]
    fn production_requires_a_secret() {
        let err = cfg(&[("SWITCHYARD_ENV", "production")]).unwrap_err();
        assert_eq!(err.var, "JWT_SECRET");
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, val) in [
            ("PORT", "http"),
            ("WS_RATE_LIMIT", "-1"),
            ("WS_PING_INTERVAL", "0"),
            ("LOG_FORMAT", "xml"),
            ("HOST", "nowhere"),
            ("WS_MAX_PAYLOAD", "10"),
            ("DOCUMENT_MAX_BYTES", "100"),
            ("JWT_MAX_TTL", "0"),
            ("JWT_MAX_TTL", "soon"),
            ("WS_USER_RATE_LIMIT", "0"),
            ("WS_USER_RATE_BURST", "0.5"),
            ("API_KEY_FAILURE_LIMIT", "0"),
            ("METRICS_ADDR", "9090"),
            ("WEBHOOK_ALLOW_PRIVATE", "yes"),
            ("WEBHOOK_TIMEOUT_MS", "0"),
            ("WEBHOOK_RETRY_MAX_MS", "5"),
            ("WEBHOOK_CONCURRENCY", "0"),
            ("COMMAND_RETENTION", "0"),
            ("COMMAND_RETENTION", "forever"),
            ("COMMAND_RETENTION", "-5"),
        ] {
            let err = cfg(&[(var, val)]).unwrap_err();
            assert_eq!(err.var, var, "{err}");
        }
    }

    #[test]
    fn command_retention_defaults_to_30_days_and_reads_seconds_or_durations() {
        let c = cfg(&[]).expect("defaults are valid");
        assert_eq!(c.command_retention, Duration::from_secs(30 * 86_400));
        for (raw, secs) in [("3600", 3600), ("7d", 7 * 86_400), ("90m", 5400)] {
            let c = cfg(&[("COMMAND_RETENTION", raw)]).expect("valid");
            assert_eq!(c.command_retention, Duration::from_secs(secs), "{raw}");
        }
    }

    #[test]
    fn token_lifetime_and_user_rate() {
        let c = cfg(&[("WS_RATE_LIMIT", "10")]).expect("valid");
        assert_eq!(c.jwt_max_ttl, None);
        assert_eq!((c.user_rate_limit, c.user_rate_burst), (30.0, 60.0));
        assert_eq!(c.api_key_failure_limit, 10);
        for (raw, secs) in [("3600", 3600), ("1h", 3600), ("90m", 5400)] {
            let c = cfg(&[("JWT_MAX_TTL", raw)]).expect("valid");
            assert_eq!(c.jwt_max_ttl, Some(Duration::from_secs(secs)), "{raw}");
        }
    }

    #[test]
    fn webhook_defaults_retry_for_a_day_and_refuse_private_targets() {
        let w = cfg(&[]).expect("defaults are valid").webhooks;
        assert!(!w.allow_private);
        assert_eq!(w.timeout, Duration::from_secs(10));
        assert_eq!(
            (w.retry_base, w.retry_max),
            (Duration::from_secs(10), Duration::from_secs(3600))
        );
        assert_eq!(w.retry_for, Duration::from_secs(86_400));
        assert_eq!(
            (w.poll, w.refresh, w.concurrency),
            (Duration::from_secs(1), Duration::from_secs(5), 16)
        );
        let w = cfg(&[
            ("WEBHOOK_ALLOW_PRIVATE", "on"),
            ("WEBHOOK_RETRY_BASE_MS", "100"),
            ("WEBHOOK_RETRY_MAX_MS", "100"),
            ("WEBHOOK_RETRY_FOR_MS", "1500"),
        ])
        .expect("valid")
        .webhooks;
        assert!(w.allow_private);
        assert_eq!(w.retry_for, Duration::from_millis(1500));
    }

    #[test]
    fn presence_grace_and_ttl() {
        let c = cfg(&[]).expect("defaults are valid");
        assert_eq!(c.presence_grace, Duration::from_millis(5_000));
        assert_eq!(c.presence_ttl, Duration::from_secs(300));
        assert_eq!(c.presence_broadcast_max, 500);
        let c = cfg(&[("WS_PRESENCE_GRACE_MS", "750"), ("WS_PRESENCE_TTL", "3")]).expect("valid");
        assert_eq!(c.presence_grace, Duration::from_millis(750));
        assert_eq!(c.presence_ttl, Duration::from_secs(3));
        for (var, val) in [
            ("WS_PRESENCE_GRACE_MS", "0"),
            ("WS_PRESENCE_GRACE_MS", "5s"),
            ("WS_PRESENCE_TTL", "0"),
            ("WS_PRESENCE_TTL", "-1"),
        ] {
            assert_eq!(cfg(&[(var, val)]).unwrap_err().var, var, "{var}={val}");
        }
    }

    #[test]
    fn connection_caps_follow_the_descriptor_limit() {
        assert_eq!(default_max_connections(Some(1024)), 1024 - 128 - 16);
        assert_eq!(default_max_connections(Some(20_000)), 20_000 - 128 - 16);
        assert_eq!(default_max_connections(Some(100)), 16);
        assert_eq!(default_max_connections(None), 10_000);
        let c = cfg(&[
            ("HTTP_MAX_CONNECTIONS", "500"),
            ("WS_CONNECT_TIMEOUT_MS", "1500"),
        ])
        .expect("valid");
        assert_eq!(c.http_max_connections, 500);
        assert_eq!(c.ws_connect_timeout, Duration::from_millis(1500));
        assert_eq!(c.http_header_timeout, Duration::from_secs(10));
        assert_eq!(c.http_body_timeout, Duration::from_secs(30));
        assert_eq!(c.max_pending_per_ip, 64);
        assert_eq!(c.document_max_fields, 1_000);
        for (var, val) in [
            ("HTTP_MAX_CONNECTIONS", "0"),
            ("HTTP_HEADER_TIMEOUT_MS", "0"),
            ("HTTP_BODY_TIMEOUT_MS", "0"),
            ("WS_CONNECT_TIMEOUT_MS", "soon"),
            ("WS_MAX_PENDING_PER_IP", "0"),
            ("DOCUMENT_MAX_FIELDS", "0"),
        ] {
            assert_eq!(cfg(&[(var, val)]).unwrap_err().var, var, "{var}={val}");
        }
    }

    #[test]
    fn trusted_proxies_are_addresses_and_blocks() {
        assert!(cfg(&[]).expect("defaults").trusted_proxies.is_empty());
        let c = cfg(&[("TRUSTED_PROXIES", "10.0.0.5, 10.1.0.0/16,fd00::/8")]).expect("valid");
        let shown: Vec<String> = c
            .trusted_proxies
            .ranges()
            .iter()
            .map(|r| r.to_string())
            .collect();
        assert_eq!(shown, ["10.0.0.5/32", "10.1.0.0/16", "fd00::/8"]);
        for bad in ["nginx", "10.0.0.5,10.0.0.0/40", "10.0.0.1/8"] {
            let err = cfg(&[("TRUSTED_PROXIES", bad)]).unwrap_err();
            assert_eq!(err.var, "TRUSTED_PROXIES", "{bad}");
        }
        // The message names the bad entry, not just the variable.
        let err = cfg(&[("TRUSTED_PROXIES", "10.0.0.5, lb.internal")]).unwrap_err();
        assert!(err.to_string().contains("`lb.internal`"), "{err}");
        assert_eq!(
            c.trusted_proxies.header(),
            ForwardingHeader::XForwardedFor,
            "the default header"
        );
        let c = cfg(&[("FORWARDED_HEADER", "Forwarded")]).expect("valid");
        assert_eq!(c.trusted_proxies.header(), ForwardingHeader::Forwarded);
        let err = cfg(&[("FORWARDED_HEADER", "x-real-ip")]).unwrap_err();
        assert_eq!(err.var, "FORWARDED_HEADER");
        assert!(err.to_string().contains("`x-real-ip`"), "{err}");
    }

    #[test]
    fn short_secret_is_refused() {
        assert_eq!(
            cfg(&[("JWT_SECRET", "short")]).unwrap_err().var,
            "JWT_SECRET"
        );
    }

    #[test]
    fn secrets_are_not_in_debug_output() {
        let c = cfg(&[
            ("JWT_SECRET", "jwt-secret-value-1234"),
            (
                "DATABASE_URL",
                "postgres://app:db-pass-5678@db.internal:5432/sy",
            ),
            (
                "REDIS_URL",
                "redis://default:redis-pass-9012@cache.internal:6379/0",
            ),
            ("API_KEYS", "api-key-one-3456,api-key-two-7890"),
            ("ADMIN_API_KEYS", "admin-key-5566"),
        ])
        .expect("valid");
        let shown = format!("{c:?}");
        for secret in [
            "admin-key-5566",
            "jwt-secret-value-1234",
            "db-pass-5678",
            "redis-pass-9012",
            "api-key-one-3456",
            "api-key-two-7890",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        // What is not secret stays useful: which host, which user.
        assert!(
            shown.contains("postgres://app:***@db.internal:5432/sy"),
            "{shown}"
        );
        assert!(
            shown.contains("redis://default:***@cache.internal:6379/0"),
            "{shown}"
        );
        let generated = cfg(&[]).expect("valid");
        let JwtKeySource::Secret { secret, .. } = &generated.jwt_key else {
            panic!("a generated secret");
        };
        assert!(!format!("{generated:?}").contains(secret.expose()));
    }

    #[test]
    fn metrics_addr_is_host_and_port() {
        let c = cfg(&[("METRICS_ADDR", "127.0.0.1:9464")]).expect("valid");
        assert_eq!(
            c.metrics_addr,
            Some("127.0.0.1:9464".parse().expect("addr"))
        );
    }
}
