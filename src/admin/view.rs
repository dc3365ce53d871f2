//! What the admin API shows, as plain data, and the pure functions that
//! build one node's answer from its sessions and merge every node's answers
//! into one reply. Unit-tested without sockets or Redis.

use std::collections::{BTreeMap, BTreeSet};

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
    }
}

/// This node's connections that match `filter`, oldest first.
pub fn list(node: &str, sessions: &[SessionView], filter: &Filter) -> Vec<Connection> {
    let mut matching: Vec<&SessionView> = sessions
        .iter()
        .filter(|s| filter.matches(&s.identity))
        .collect();
    matching.sort_by(|a, b| (a.connected_at, &a.id).cmp(&(b.connected_at, &b.id)));
    matching.into_iter().map(|s| connection(node, s)).collect()
}

/// Every node's connections in one list: by company, user, then time.
pub fn merge_connections(per_node: Vec<Vec<Connection>>) -> Vec<Connection> {
    let mut all: Vec<Connection> = per_node.into_iter().flatten().collect();
    all.sort_by(|a, b| {
        (&a.company_id, &a.user_id, &a.connected_at, &a.socket_id).cmp(&(
            &b.company_id,
            &b.user_id,
            &b.connected_at,
            &b.socket_id,
        ))
    });
    all
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
mod tests {
    use super::*;
    use crate::domain::Role;

    fn session(id: &str, company: &str, user: &str, at: i64, rooms: &[&str]) -> SessionView {
        SessionView {
            id: id.to_string(),
            identity: Identity {
                user_id: user.to_string(),
                company_id: company.to_string(),
                role: Role::Operator,
                permissions: vec![],
                expires_at: 0,
            },
            rooms: rooms
                .iter()
                .map(|r| RoomName::parse(r).expect("room"))
                .collect(),
            transport: "socketio",
            connected_at: at,
        }
    }

    #[test]
    fn list_filters_by_company_and_user_and_names_the_node() {
        let sessions = vec![
            session("s2", "acme", "u1", 20, &["order:1"]),
            session("s1", "acme", "u2", 10, &[]),
            session("s3", "other", "u1", 5, &[]),
        ];
        let only_acme = Filter {
            company_id: Some("acme".into()),
            user_id: None,
        };
        let listed = list("n1", &sessions, &only_acme);
        assert_eq!(
            listed
                .iter()
                .map(|c| c.socket_id.as_str())
                .collect::<Vec<_>>(),
            ["s1", "s2"]
        );
        assert_eq!(
            listed[1].rooms,
            ["company", "user:u1", "role:operator", "order:1"]
        );
        assert_eq!(listed[1].node, "n1");
        let one_user = Filter {
            company_id: Some("acme".into()),
            user_id: Some("u1".into()),
        };
        assert_eq!(list("n1", &sessions, &one_user).len(), 1);
        // A user id alone matches that user in every company.
        let user_only = Filter {
            company_id: None,
            user_id: Some("u1".into()),
        };
        assert_eq!(list("n1", &sessions, &user_only).len(), 2);
    }

    #[test]
    fn stats_count_users_and_rooms_once_across_nodes() {
        let all = Filter::default();
        let a = node_part(
            "a",
            &[
                session("s1", "acme", "u1", 1, &["order:1"]),
                session("s2", "acme", "u1", 2, &[]),
            ],
            &all,
            10,
            ReplayLag::default(),
        );
        let b = node_part(
            "b",
            &[
                session("s3", "acme", "u1", 3, &["order:1", "machine:m1"]),
                session("s4", "other", "u9", 4, &[]),
            ],
            &all,
            5,
            ReplayLag::default(),
        );
        let (nodes, companies, total) = merge_stats(vec![b, a]);
        assert_eq!(total, 4);
        assert_eq!(nodes[0].node, "a");
        assert_eq!(nodes[0].connections, 2);
        assert_eq!(
            companies[0],
            CompanyStats {
                company_id: "acme".into(),
                connections: 3,
                users: 1,
                // company, user:u1, role:operator, order:1, machine:m1
                rooms: 5,
            }
        );
        assert_eq!(companies[1].company_id, "other");
    }

    #[test]
    fn node_part_respects_the_company_filter() {
        let only = Filter {
            company_id: Some("other".into()),
            user_id: None,
        };
        let part = node_part(
            "a",
            &[
                session("s1", "acme", "u1", 1, &[]),
                session("s2", "other", "u2", 1, &[]),
            ],
            &only,
            0,
            ReplayLag::default(),
        );
        assert_eq!(part.connections, 1);
        assert_eq!(part.companies.keys().collect::<Vec<_>>(), ["other"]);
    }

    #[test]
    fn merged_connections_are_ordered_by_company_user_time() {
        let x = list("a", &[session("s1", "b", "u", 1, &[])], &Filter::default());
        let y = list("b", &[session("s2", "a", "u", 2, &[])], &Filter::default());
        let merged = merge_connections(vec![x, y]);
        assert_eq!(merged[0].company_id, "a");
        assert_eq!(merged[1].node, "a");
    }
}
