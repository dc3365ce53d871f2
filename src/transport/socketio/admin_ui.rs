//! The server side of the official socket.io Admin UI (`@socket.io/admin-ui`,
//! its static bundle unchanged) on the `/admin` namespace, when `ADMIN_UI=on`.
//!
//! The UI's protocol (from the package's own server, `dist/index.js`): it
//! connects with `auth = { username, password }` (or `{ sessionId }` after a
//! first success, which the server sent as `session`); the server sends
//! `config { supportedFeatures }`, then in development mode `all_sockets`,
//! and every 2 s one `server_stats` per server. Here every node's figures
//! come from the admin service (`crate::admin`, cluster-wide over Redis), so
//! the UI connected to one node lists every node; a node that does not
//! answer gets no `server_stats` and the UI marks it unhealthy. `all_sockets`
//! is re-sent with each round, so the socket list stays current without the
//! per-event feed (`socket_connected`, …), which is not implemented.
//!
//! Who sees what:
//! - `ADMIN_UI_USERNAME` / `ADMIN_UI_PASSWORD`: the operator, every company;
//! - any username with a JWT of role `admin` as the password: that company's
//!   admin, who sees only that company's connections and counts (node
//!   figures are that company's connections on each node).
//!
//! Read-only (no feature but `AGGREGATED_EVENTS` and `ALL_EVENTS` offered)
//! unless `ADMIN_UI_READONLY=off`, which adds `DISCONNECT`: the UI's
//! disconnect button ends that one session (`session:revoked` first),
//! within the admin's company.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use socketioxide::adapter::Adapter;
use socketioxide::extract::{Data, SocketRef, State, TryData};

use super::pending;
use crate::admin::view::{Connection, Filter, NodePart};
use crate::config::AdminUi;
use crate::domain::Role;
use crate::error::{AppError, Code};
use crate::state::AppState;

pub const NAMESPACE: &str = "/admin";
/// The UI expects a `server_stats` every 2 s (its own server's period).
const EVERY: Duration = Duration::from_secs(2);
/// UI sessions (`sessionId`) live this long at most.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// At most this many live UI sessions are remembered per node.
const MAX_SESSIONS: usize = 1024;

/// Whose connections an admin sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    Company(String),
}

impl Scope {
    pub fn filter(&self) -> Filter {
        Filter {
            company_id: match self {
                Scope::All => None,
                Scope::Company(c) => Some(c.clone()),
            },
            user_id: None,
        }
    }
}

/// Session ids handed to the UI after a login, so it reconnects without
/// the password (per node: behind a balancer the UI may have to log in again).
#[derive(Default)]
pub struct UiSessions {
    // std Mutex: one map operation at a time.
    by_id: Mutex<HashMap<String, (Scope, Instant)>>,
}

impl UiSessions {
    fn open(&self, scope: Scope, ttl: Duration) -> String {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let mut map = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        map.retain(|_, (_, until)| *until > now);
        if map.len() >= MAX_SESSIONS {
            return id; // not remembered: the UI asks for the password again
        }
        map.insert(id.clone(), (scope, now + ttl));
        id
    }

    fn find(&self, id: &str) -> Option<Scope> {
        let map = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
        map.get(id)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(scope, _)| scope.clone())
    }
}

/// Who the credentials are (pure but for the JWT check).
pub fn scope_of(
    ui: &AdminUi,
    state: &AppState,
    auth: &Value,
) -> Result<(Scope, Duration), AppError> {
    let text = |k: &str| auth.get(k).and_then(Value::as_str).unwrap_or_default();
    let (username, password) = (text("username"), text("password"));
    let operator = crate::auth::api_key::is_valid(std::slice::from_ref(&ui.password), password);
    if operator && username == ui.username {
        return Ok((Scope::All, SESSION_TTL));
    }
    if password.matches('.').count() == 2 {
        let identity = state.verifier.verify(password)?;
        if identity.role != Role::Admin {
            return Err(AppError::new(
                Code::Forbidden,
                "the Admin UI needs a token with role admin",
            ));
        }
        let left = identity.expires_at_ms() - crate::domain::now_ms();
        let ttl = Duration::from_millis(left.max(0) as u64).min(SESSION_TTL);
        return Ok((Scope::Company(identity.company_id), ttl));
    }
    Err(AppError::new(Code::Unauthorized, "invalid credentials"))
}

/// Connect middleware of `/admin`: checks the credentials or the session id.
pub async fn authenticate<A: Adapter>(
    s: SocketRef<A>,
    State(state): State<AppState>,
    State(sessions): State<Arc<UiSessions>>,
    TryData(auth): TryData<Value>,
) -> Result<(), AppError> {
    let Some(ui) = state.config.admin_ui.as_ref() else {
        return Err(AppError::new(Code::NotFound, "the Admin UI is off"));
    };
    let auth = auth.unwrap_or(Value::Null);
    let known = auth
        .get("sessionId")
        .and_then(Value::as_str)
        .and_then(|id| sessions.find(id));
    let scope = match known {
        Some(scope) => scope,
        None => match scope_of(ui, &state, &auth) {
            Ok((scope, ttl)) => {
                s.extensions
                    .insert(NewSession(sessions.open(scope.clone(), ttl)));
                scope
            }
            Err(e) => {
                crate::metrics::refused(e.code.as_str());
                pending::close_refused(s.req_parts(), s.id, s.transport_type(), s.protocol());
                return Err(e);
            }
        },
    };
    pending::authenticated(s.req_parts());
    tracing::info!(?scope, "admin UI connected");
    s.extensions.insert(scope);
    Ok(())
}

#[derive(Clone)]
struct NewSession(String);

/// After CONNECT: `session`, `config`, then the periodic rounds.
pub async fn on_connect<A: Adapter>(s: SocketRef<A>, State(state): State<AppState>) {
    let Some(scope) = s.extensions.get::<Scope>() else {
        return;
    };
    if let Some(NewSession(id)) = s.extensions.get::<NewSession>() {
        let _ = s.emit("session", &id);
    }
    let readonly = state.config.admin_ui.as_ref().is_none_or(|ui| ui.readonly);
    let mut features = vec!["AGGREGATED_EVENTS", "ALL_EVENTS"];
    if !readonly {
        features.insert(0, "DISCONNECT");
        s.on("_disconnect", on_disconnect_request::<A>);
    }
    let _ = s.emit("config", &json!({ "supportedFeatures": features }));
    let token = state.tasks.child_token();
    let stop = token.clone();
    s.on_disconnect(move || async move { stop.cancel() });
    let tasks = state.tasks.clone();
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        loop {
            tokio::select! {
                _ = tick.tick() => round(&s, &state, &scope).await,
                _ = token.cancelled() => return,
            }
        }
    });
}

/// One round: every node's `server_stats`, then the socket list.
async fn round<A: Adapter>(s: &SocketRef<A>, state: &AppState, scope: &Scope) {
    let filter = scope.filter();
    let (parts, _) = state.admin.node_parts(&filter).await;
    for part in &parts {
        let _ = s.emit("server_stats", &server_stats(part));
    }
    let listing = state
        .admin
        .connections(&filter, &crate::admin::view::Page::all())
        .await;
    let sockets: Vec<Value> = listing.connections.iter().map(serialized_socket).collect();
    let _ = s.emit("all_sockets", &sockets);
}

/// A node's figures as the UI's `ServerStats`.
pub fn server_stats(part: &NodePart) -> Value {
    json!({
        "serverId": part.node,
        "hostname": if part.hostname.is_empty() { &part.node } else { &part.hostname },
        "pid": part.pid,
        "uptime": part.uptime_seconds,
        "clientsCount": part.connections,
        "pollingClientsCount": 0,
        "aggregatedEvents": [],
        "namespaces": [{ "name": "/", "socketsCount": part.connections }],
    })
}

/// A connection as the UI's `SerializedSocket`.
pub fn serialized_socket(c: &Connection) -> Value {
    let issued = time::OffsetDateTime::parse(
        &c.connected_at,
        &time::format_description::well_known::Rfc3339,
    )
    .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
    .unwrap_or_default();
    json!({
        "id": c.socket_id,
        "clientId": c.socket_id,
        "transport": c.transport,
        "nsp": "/",
        "data": { "userId": c.user_id, "companyId": c.company_id, "role": c.role, "node": c.node },
        "handshake": {
            "address": c.address.as_deref().unwrap_or(&c.node),
            "headers": {},
            "query": {},
            "issued": issued,
            "secure": false,
            "time": c.connected_at,
            "url": "/socket.io/",
            "xdomain": false,
        },
        "rooms": c.rooms,
    })
}

/// The UI's disconnect button: `_disconnect (nsp, close, filter)`, where
/// `filter` is a socket id. Only sessions within the admin's scope.
async fn on_disconnect_request<A: Adapter>(
    s: SocketRef<A>,
    State(state): State<AppState>,
    Data(args): Data<Value>,
) {
    let Some(scope) = s.extensions.get::<Scope>() else {
        return;
    };
    let filter = match &args {
        Value::Array(items) => items.get(2).and_then(Value::as_str).map(str::to_string),
        _ => None,
    };
    let Some(id) = filter else { return };
    let company = match &scope {
        Scope::All => None,
        Scope::Company(c) => Some(c.as_str()),
    };
    let (n, _) = state.admin.drop_session(&id, company).await;
    tracing::info!(session = %id, dropped = n, "admin UI: disconnect");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_becomes_the_uis_socket_shape() {
        let c = Connection {
            socket_id: "s1".into(),
            user_id: "u1".into(),
            company_id: "acme".into(),
            role: "operator".into(),
            rooms: vec!["company".into(), "user:u1".into()],
            transport: "socketio".into(),
            connected_at: "2026-12-01T03:40:00Z".into(),
            node: "a".into(),
            address: Some("203.0.113.7".into()),
        };
        let v = serialized_socket(&c);
        assert_eq!(v["id"], "s1");
        assert_eq!(v["handshake"]["address"], "203.0.113.7");
        let unknown = Connection { address: None, ..c };
        assert_eq!(serialized_socket(&unknown)["handshake"]["address"], "a");
        assert_eq!(v["nsp"], "/");
        assert_eq!(v["rooms"], json!(["company", "user:u1"]));
        assert_eq!(v["handshake"]["issued"], 1_796_096_400_000_i64);
        assert_eq!(v["data"]["companyId"], "acme");
    }

    #[test]
    fn node_figures_become_server_stats() {
        let part = NodePart {
            node: "a".into(),
            connections: 3,
            uptime_seconds: 9,
            ..NodePart::default()
        };
        let v = server_stats(&part);
        assert_eq!(v["serverId"], "a");
        assert_eq!(v["hostname"], "a");
        assert_eq!(v["clientsCount"], 3);
        assert_eq!(
            v["namespaces"][0],
            json!({ "name": "/", "socketsCount": 3 })
        );
    }

    #[test]
    fn scopes_filter_by_company() {
        assert_eq!(Scope::All.filter(), Filter::default());
        assert_eq!(
            Scope::Company("acme".into()).filter().company_id.as_deref(),
            Some("acme")
        );
    }
}
