//! Unit tests of `admin::view`: filters, statistics, pages.

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
        ip: Some([10, 0, 0, 1].into()),
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
    let listed = list("n1", &sessions, &only_acme, &Page::all());
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
    assert_eq!(listed[1].address.as_deref(), Some("10.0.0.1"));
    let one_user = Filter {
        company_id: Some("acme".into()),
        user_id: Some("u1".into()),
    };
    assert_eq!(list("n1", &sessions, &one_user, &Page::all()).len(), 1);
    // A user id alone matches that user in every company.
    let user_only = Filter {
        company_id: None,
        user_id: Some("u1".into()),
    };
    assert_eq!(list("n1", &sessions, &user_only, &Page::all()).len(), 2);
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

fn ids(rows: &[Connection]) -> Vec<String> {
    rows.iter()
        .map(|c| format!("{}/{}", c.node, c.socket_id))
        .collect()
}

/// Every node answers a page question as `Local` does; one page merged.
fn ask(nodes: &[(&str, Vec<SessionView>)], page: &Page) -> (Vec<Connection>, Option<Position>) {
    let answers = nodes
        .iter()
        .map(|(node, sessions)| list(node, sessions, &Filter::default(), page))
        .collect();
    merge_connections(answers, page)
}

#[test]
fn pages_walk_every_node_in_node_and_socket_order_without_gaps_or_repeats() {
    let s = |id: &str| session(id, "acme", "u", 1, &[]);
    let nodes = [
        ("b", vec![s("s5"), s("s1"), s("s3")]),
        ("a", vec![s("s4"), s("s2")]),
        ("c", vec![]),
    ];
    let all = ask(&nodes, &Page::all());
    assert_eq!(ids(&all.0), ["a/s2", "a/s4", "b/s1", "b/s3", "b/s5"]);
    assert_eq!(all.1, None);
    let mut page = Page {
        after: None,
        limit: 2,
    };
    let mut walked = Vec::new();
    let mut pages = 0;
    loop {
        let (rows, next) = ask(&nodes, &page);
        assert!(rows.len() <= 2);
        walked.extend(ids(&rows));
        pages += 1;
        match next {
            Some(p) => page.after = Some(p),
            None => break,
        }
    }
    assert_eq!(walked, ids(&all.0));
    assert_eq!(pages, 3);
    // A page that ends exactly at the last row says there is no more.
    let exact = ask(
        &nodes,
        &Page {
            after: None,
            limit: 5,
        },
    );
    assert_eq!((exact.0.len(), exact.1), (5, None));
}

#[test]
fn each_node_answers_at_most_one_row_beyond_the_page() {
    let sessions: Vec<SessionView> = (0..50)
        .map(|i| session(&format!("s{i:02}"), "acme", "u", i, &[]))
        .collect();
    let page = Page {
        after: Some(Position {
            node: "a".into(),
            socket_id: "s09".into(),
        }),
        limit: 10,
    };
    let rows = list("a", &sessions, &Filter::default(), &page);
    assert_eq!(rows.len(), 11);
    assert_eq!(rows[0].socket_id, "s10");
    // Nodes before the position's node have nothing to add.
    let before = Page {
        after: Some(Position {
            node: "b".into(),
            socket_id: String::new(),
        }),
        limit: 10,
    };
    assert!(list("a", &sessions, &Filter::default(), &before).is_empty());
}

#[test]
fn an_answer_that_ignored_the_page_is_cut_by_the_asker() {
    // An older node answers every row, in its own order.
    let everything = list(
        "a",
        &[
            session("s3", "acme", "u", 1, &[]),
            session("s1", "acme", "u", 2, &[]),
            session("s2", "acme", "u", 3, &[]),
        ],
        &Filter::default(),
        &Page::all(),
    );
    let page = Page {
        after: Some(Position {
            node: "a".into(),
            socket_id: "s1".into(),
        }),
        limit: 1,
    };
    let (rows, next) = merge_connections(vec![everything], &page);
    assert_eq!(ids(&rows), ["a/s2"]);
    assert_eq!(next.map(|p| p.socket_id), Some("s2".to_string()));
}

#[test]
fn rows_from_older_nodes_without_an_address_still_read() {
    let row = serde_json::json!({
        "socketId": "s1", "userId": "u", "companyId": "acme", "role": "operator",
        "rooms": [], "transport": "socketio", "connectedAt": "2026-12-01T00:00:00.000Z",
        "node": "old",
    });
    let c: Connection = serde_json::from_value(row).expect("an older node's row");
    assert_eq!(c.address, None);
}
