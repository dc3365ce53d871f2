//! What the admin API shows, as plain data, and the pure functions that
//! build one node's answer from its sessions and merge every node's answers
//! into one reply. Unit-tested without sockets or Redis.
//!
//! The connection listing is paged in `(node, socketId)` order: a stable
//! order that each node can cut on its own (a node answers at most one page
//! and one row after the [`Page`]'s position, so the asker knows whether
//! another page follows without any node sending everything).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::{Identity, RoomName, iso8601};

/// Which sessions a question is about: a company, and within it a user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

impl Filter {
    pub fn matches(&self, identity: &Identity) -> bool {
        self.company_id
            .as_ref()
            .is_none_or(|c| *c == identity.company_id)
            && self.user_id.as_ref().is_none_or(|u| *u == identity.user_id)
    }
}

/// A session as the admin sees it: what the listing shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionView {
    pub id: String,
    pub identity: Identity,
    pub rooms: Vec<RoomName>,
    pub transport: &'static str,
    pub connected_at: i64,
    /// The client's address (`crate::client_ip`), when known.
    pub ip: Option<IpAddr>,
}

/// A row's place in the listing's order: the last row of a page.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Position {
    pub node: String,
    pub socket_id: String,
}

/// Which rows a listing question wants: at most `limit` after `after`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Position>,
    pub limit: usize,
}

impl Page {
    /// Every row (the Admin UI's view; an asker that sends no page).
    pub fn all() -> Self {
        Page {
            after: None,
            limit: usize::MAX,
        }
    }

    /// Whether a row at (`node`, `socket_id`) comes after this page's start.
    fn admits(&self, node: &str, socket_id: &str) -> bool {
        self.after
            .as_ref()
            .is_none_or(|p| (node, socket_id) > (p.node.as_str(), p.socket_id.as_str()))
    }
}

/// One connection of `GET /api/v1/admin/connections`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    #[schema(example = "k3X9qAq0P2fLkU1aAAAB")]
    pub socket_id: String,
    #[schema(example = "u-42")]
    pub user_id: String,
    #[schema(example = "acme")]
    pub company_id: String,
    #[schema(example = "operator")]
    pub role: String,
    /// Logical room names (automatic rooms first).
    #[schema(example = json!(["company", "user:u-42", "role:operator", "order:67890"]))]
    pub rooms: Vec<String>,
    /// The session's transport (`socketio` for Socket.IO).
    #[schema(example = "socketio")]
    pub transport: String,
    /// ISO-8601.
    #[schema(example = "2026-12-01T03:40:00.000Z")]
    pub connected_at: String,
    /// The node serving it (`NODE_ID`).
    #[schema(example = "switchyard-a")]
    pub node: String,
    /// The client's IP address: the TCP peer, or behind a proxy listed in
    /// `TRUSTED_PROXIES` the address it forwarded (`X-Forwarded-For`).
    /// Null when unknown (and from nodes too old to say).
    #[serde(default)]
    #[schema(example = "203.0.113.7")]
    pub address: Option<String>,
}

pub fn connection(node: &str, s: &SessionView) -> Connection {
    let automatic = crate::rooms::automatic_rooms(&s.identity);
    Connection {
        socket_id: s.id.clone(),
        user_id: s.identity.user_id.clone(),
        company_id: s.identity.company_id.clone(),
        role: s.identity.role.as_str().to_string(),
        rooms: automatic
            .iter()
            .chain(s.rooms.iter())
            .map(|r| r.as_str().to_string())
            .collect(),
        transport: s.transport.to_string(),
        connected_at: iso8601(s.connected_at),
        node: node.to_string(),
        address: s.ip.map(|ip| ip.to_string()),
    }
}

/// This node's connections that match `filter` and come after the page's
/// start, by socket id: at most `limit + 1` (the extra row tells the asker
/// that another page follows).
pub fn list(node: &str, sessions: &[SessionView], filter: &Filter, page: &Page) -> Vec<Connection> {
    let mut matching: Vec<&SessionView> = sessions
        .iter()
        .filter(|s| filter.matches(&s.identity) && page.admits(node, &s.id))
        .collect();
    matching.sort_by(|a, b| a.id.cmp(&b.id));
    matching.truncate(page.limit.saturating_add(1));
    matching.into_iter().map(|s| connection(node, s)).collect()
}

/// One page of every node's connections, in `(node, socketId)` order, and
/// the position to continue after when more rows follow. Cuts again what
/// the nodes cut already, so a node that answered more (an older version
/// ignores the page) changes nothing.
pub fn merge_connections(
    per_node: Vec<Vec<Connection>>,
    page: &Page,
) -> (Vec<Connection>, Option<Position>) {
    let mut rows: Vec<Connection> = per_node
        .into_iter()
        .flatten()
        .filter(|c| page.admits(&c.node, &c.socket_id))
        .collect();
    rows.sort_by(|a, b| (&a.node, &a.socket_id).cmp(&(&b.node, &b.socket_id)));
    // A socket listed twice (a node answering twice) is one row.
    rows.dedup_by(|a, b| a.node == b.node && a.socket_id == b.socket_id);
    if rows.len() <= page.limit {
        return (rows, None);
    }
    rows.truncate(page.limit);
    let next = rows.last().map(|c| Position {
        node: c.node.clone(),
        socket_id: c.socket_id.clone(),
    });
    (rows, next)
}

/// How far behind live durable delivery readers were when served by
/// replay or catch-up, since the node started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplayLag {
    /// Events delivered by replay or catch-up.
    pub count: u64,
    pub mean_seconds: f64,
    pub max_seconds: f64,
}

/// One company's sessions on one node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompanyPart {
    pub connections: u64,
    pub users: BTreeSet<String>,
    pub rooms: BTreeSet<String>,
}

/// One node's answer to `stats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodePart {
    pub node: String,
    /// For the Admin UI's server list.
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub pid: u32,
    pub connections: u64,
    pub uptime_seconds: u64,
    pub replay_lag: ReplayLag,
    pub companies: BTreeMap<String, CompanyPart>,
}

/// One node's figures in `GET /api/v1/admin/stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeStats {
    #[schema(example = "switchyard-a")]
    pub node: String,
    #[schema(example = 120)]
    pub connections: u64,
    #[schema(example = 3600)]
    pub uptime_seconds: u64,
    pub replay_lag: ReplayLag,
}

/// One company's figures in `GET /api/v1/admin/stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompanyStats {
    #[schema(example = "acme")]
    pub company_id: String,
    /// Open connections on every node that answered.
    #[schema(example = 42)]
    pub connections: u64,
    /// Distinct users connected.
    #[schema(example = 17)]
    pub users: u64,
    /// Distinct logical rooms its connections are in.
    #[schema(example = 25)]
    pub rooms: u64,
}

/// This node's `stats` answer for the sessions that match `filter`.
pub fn node_part(
    node: &str,
    sessions: &[SessionView],
    filter: &Filter,
    uptime_seconds: u64,
    replay_lag: ReplayLag,
) -> NodePart {
    let mut companies: BTreeMap<String, CompanyPart> = BTreeMap::new();
    let mut connections = 0;
    for s in sessions.iter().filter(|s| filter.matches(&s.identity)) {
        connections += 1;
        let c = companies.entry(s.identity.company_id.clone()).or_default();
        c.connections += 1;
        c.users.insert(s.identity.user_id.clone());
        for room in crate::rooms::automatic_rooms(&s.identity)
            .iter()
            .chain(&s.rooms)
        {
            c.rooms.insert(room.as_str().to_string());
        }
    }
    NodePart {
        node: node.to_string(),
        hostname: String::new(),
        pid: 0,
        connections,
        uptime_seconds,
        replay_lag,
        companies,
    }
}

/// Every node's `stats` answers merged: nodes in name order, companies in
/// id order, users and rooms counted once across nodes.
pub fn merge_stats(parts: Vec<NodePart>) -> (Vec<NodeStats>, Vec<CompanyStats>, u64) {
    let mut companies: BTreeMap<String, CompanyPart> = BTreeMap::new();
    let mut nodes = Vec::with_capacity(parts.len());
    let mut total = 0;
    for part in parts {
        total += part.connections;
        for (id, c) in part.companies {
            let merged = companies.entry(id).or_default();
            merged.connections += c.connections;
            merged.users.extend(c.users);
            merged.rooms.extend(c.rooms);
        }
        nodes.push(NodeStats {
            node: part.node,
            connections: part.connections,
            uptime_seconds: part.uptime_seconds,
            replay_lag: part.replay_lag,
        });
    }
    nodes.sort_by(|a, b| a.node.cmp(&b.node));
    let companies = companies
        .into_iter()
        .map(|(company_id, c)| CompanyStats {
            company_id,
            connections: c.connections,
            users: c.users.len() as u64,
            rooms: c.rooms.len() as u64,
        })
        .collect();
    (nodes, companies, total)
}

#[cfg(test)]
#[path = "view_tests.rs"]
mod tests;
