//! The admin service (SPEC §10): every connection on every node, kicking a
//! user's sessions on every node, and cluster statistics, each answer
//! naming the nodes that did not answer in time (`incomplete`).
//!
//! Each node answers from its own [`Sessions`] registry ([`Local`], a
//! [`Responder`]); with Redis the question goes to every node through
//! [`crate::cluster::rpc`] (never socketioxide's `fetch_sockets`, which
//! drops slow nodes silently). [`view`] holds the pure shapes and merges.
//!
//! A kicked session gets `session:revoked` `{ reason: "REVOKED", message }`
//! and is then disconnected (a server-side disconnect: socket.io clients do
//! not reconnect by themselves).

pub mod view;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cluster::rpc::{Gathered, Responder, Rpc};
use crate::session::Sessions;
use crate::store::Store;
use view::{CompanyStats, Connection, Filter, NodePart, NodeStats, Page, Position, SessionView};

/// The message a kicked session receives before it is disconnected.
pub const REVOKED_EVENT: &str = "session:revoked";

/// How long the asking node waits for the others.
pub const DEFAULT_WAIT: Duration = Duration::from_millis(1500);

/// This node's side: answers from its own sessions.
pub struct Local {
    node: String,
    sessions: Arc<Sessions>,
    started: Instant,
}

impl Local {
    pub fn new(node: String, sessions: Arc<Sessions>) -> Arc<Self> {
        Arc::new(Self {
            node,
            sessions,
            started: Instant::now(),
        })
    }

    fn views(&self) -> Vec<SessionView> {
        self.sessions
            .all()
            .into_iter()
            .filter(|s| !s.is_closing())
            .map(|s| SessionView {
                id: s.id.to_string(),
                identity: s.identity(),
                rooms: s.joined(),
                transport: s.transport,
                connected_at: s.connected_at,
                ip: s.ip,
            })
            .collect()
    }

    /// Sends `session:revoked` to each matching session and disconnects it;
    /// returns how many. Both ids are required: a kick is never company-wide
    /// by accident.
    pub fn kick(&self, company_id: &str, user_id: &str, message: &str) -> u64 {
        let mut n = 0;
        for session in self.sessions.all() {
            let identity = session.identity();
            if identity.company_id != company_id
                || identity.user_id != user_id
                || session.is_closing()
            {
                continue;
            }
            if let Some(sink) = session.sink() {
                let _ = sink.emit_one(
                    REVOKED_EVENT,
                    &json!({ "reason": "REVOKED", "message": message }),
                );
                sink.disconnect();
                n += 1;
            }
        }
        if n > 0 {
            tracing::info!(
                company = company_id,
                user = user_id,
                sessions = n,
                "admin: sessions revoked"
            );
        }
        n
    }

    fn part(&self, filter: &Filter) -> NodePart {
        let (count, sum_ms, max_ms) = crate::metrics::replay_lag_summary();
        let lag = view::ReplayLag {
            count,
            mean_seconds: if count == 0 {
                0.0
            } else {
                sum_ms as f64 / count as f64 / 1000.0
            },
            max_seconds: max_ms as f64 / 1000.0,
        };
        let mut part = view::node_part(
            &self.node,
            &self.views(),
            filter,
            self.started.elapsed().as_secs(),
            lag,
        );
        part.hostname = hostname();
        part.pid = std::process::id();
        part
    }

    /// Disconnects one session (with `session:revoked`) if it belongs to
    /// `company` (any company when `None`); whether it was here.
    pub fn drop_session(&self, session_id: &str, company: Option<&str>, message: &str) -> bool {
        let Some(session) = self
            .sessions
            .all()
            .into_iter()
            .find(|s| s.id.to_string() == session_id)
        else {
            return false;
        };
        if company.is_some_and(|c| c != session.identity().company_id) || session.is_closing() {
            return false;
        }
        let Some(sink) = session.sink() else {
            return false;
        };
        let _ = sink.emit_one(
            REVOKED_EVENT,
            &json!({ "reason": "REVOKED", "message": message }),
        );
        sink.disconnect();
        true
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

fn filter_of(body: &Value) -> Filter {
    serde_json::from_value(body.get("filter").cloned().unwrap_or_default()).unwrap_or_default()
}

/// The page asked for; an asker that sends none (an older node) wants
/// every row, as it did before pages existed.
fn page_of(body: &Value) -> Page {
    body.get("page")
        .and_then(|p| serde_json::from_value(p.clone()).ok())
        .unwrap_or_else(Page::all)
}

impl Responder for Local {
    fn answer(&self, kind: &str, body: &Value) -> Value {
        match kind {
            "list" => json!(view::list(
                &self.node,
                &self.views(),
                &filter_of(body),
                &page_of(body)
            )),
            "stats" => serde_json::to_value(self.part(&filter_of(body))).unwrap_or_default(),
            "kick" => {
                let s = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or_default();
                if s("companyId").is_empty() || s("userId").is_empty() {
                    return json!(0);
                }
                json!(self.kick(s("companyId"), s("userId"), s("message")))
            }
            "drop" => {
                let id = body
                    .get("sessionId")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let company = body.get("companyId").and_then(Value::as_str);
                let message = body
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                json!(u64::from(self.drop_session(id, company, message)))
            }
            _ => Value::Null,
        }
    }
}

/// `GET /api/v1/admin/connections`: one page.
#[derive(Debug, Clone, PartialEq)]
pub struct Listing {
    pub connections: Vec<Connection>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<Position>,
    pub incomplete: Vec<String>,
}

/// `GET /api/v1/admin/stats`.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    pub nodes: Vec<NodeStats>,
    pub companies: Vec<CompanyStats>,
    pub connections: u64,
    /// Offline-queue backlog (the `websocket_queued_messages` figure), or
    /// `None` when the database did not answer.
    pub queued_durable_events: Option<u64>,
    pub incomplete: Vec<String>,
}

/// The admin service: this node's answers, and the cluster when there is one.
pub struct Admin {
    local: Arc<Local>,
    rpc: Option<Arc<Rpc>>,
    store: Arc<dyn Store>,
    wait: Duration,
    queue_ttl_ms: i64,
}

impl Admin {
    pub fn new(
        local: Arc<Local>,
        rpc: Option<Arc<Rpc>>,
        store: Arc<dyn Store>,
        wait: Duration,
        queue_ttl_ms: i64,
    ) -> Self {
        Self {
            local,
            rpc,
            store,
            wait,
            queue_ttl_ms,
        }
    }

    pub fn node(&self) -> &str {
        &self.local.node
    }

    async fn ask(&self, kind: &str, body: Value) -> Gathered {
        match &self.rpc {
            Some(rpc) => rpc.ask(kind, body, self.wait).await,
            None => Gathered {
                answers: vec![(self.local.node.clone(), self.local.answer(kind, &body))],
                incomplete: Vec::new(),
            },
        }
    }

    /// One page of the connections on every node that answers.
    pub async fn connections(&self, filter: &Filter, page: &Page) -> Listing {
        let gathered = self
            .ask("list", json!({ "filter": filter, "page": page }))
            .await;
        let per_node = gathered
            .answers
            .into_iter()
            .map(|(node, v)| {
                serde_json::from_value::<Vec<Connection>>(v).unwrap_or_else(|e| {
                    tracing::warn!(%node, error = %e, "admin: unreadable listing");
                    Vec::new()
                })
            })
            .collect();
        let (connections, next) = view::merge_connections(per_node, page);
        Listing {
            connections,
            next,
            incomplete: gathered.incomplete,
        }
    }

    /// Disconnects every session of the user on every node that answers;
    /// returns how many, and the nodes that did not answer.
    pub async fn kick(&self, company_id: &str, user_id: &str) -> (u64, Vec<String>) {
        let message = "an administrator ended this session";
        let gathered = self
            .ask(
                "kick",
                json!({ "companyId": company_id, "userId": user_id, "message": message }),
            )
            .await;
        let n = gathered
            .answers
            .iter()
            .filter_map(|(_, v)| v.as_u64())
            .sum();
        (n, gathered.incomplete)
    }

    /// Disconnects one session wherever it is (within `company` when
    /// given); how many (0 or 1), and the nodes that did not answer.
    pub async fn drop_session(
        &self,
        session_id: &str,
        company: Option<&str>,
    ) -> (u64, Vec<String>) {
        let gathered = self
            .ask(
                "drop",
                json!({ "sessionId": session_id, "companyId": company,
                        "message": "an administrator ended this session" }),
            )
            .await;
        let n = gathered
            .answers
            .iter()
            .filter_map(|(_, v)| v.as_u64())
            .sum();
        (n, gathered.incomplete)
    }

    /// Each answering node's own figures (for the Admin UI's server list).
    pub async fn node_parts(&self, filter: &Filter) -> (Vec<NodePart>, Vec<String>) {
        let gathered = self.ask("stats", json!({ "filter": filter })).await;
        let parts = gathered
            .answers
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_value::<NodePart>(v).ok())
            .collect();
        (parts, gathered.incomplete)
    }

    pub async fn stats(&self, filter: &Filter) -> Stats {
        let gathered = self.ask("stats", json!({ "filter": filter })).await;
        let parts = gathered
            .answers
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_value::<NodePart>(v).ok())
            .collect();
        let (nodes, companies, connections) = view::merge_stats(parts);
        let seen_since = crate::domain::now_ms() - self.queue_ttl_ms;
        let queued = tokio::time::timeout(self.wait, self.store.offline_backlog(seen_since))
            .await
            .ok()
            .and_then(Result::ok)
            .map(|n| n.max(0) as u64);
        Stats {
            nodes,
            companies,
            connections,
            queued_durable_events: queued,
            incomplete: gathered.incomplete,
        }
    }
}
