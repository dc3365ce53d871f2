//! The admin API (SPEC §10; `ADMIN_API_KEYS` only): every connection on
//! every node, kicking a user everywhere, cluster statistics. Thin over
//! [`crate::admin`]; every reply names the nodes that did not answer in
//! time (`incomplete`). The connection listing comes in pages (`limit`,
//! `cursor` → `nextCursor`) in `(node, socketId)` order.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::api_key::AdminKey;
use super::schema::ErrorReply;
use crate::admin::view::{CompanyStats, Connection, Filter, NodeStats, Page, Position};
use crate::domain::CompanyId;
use crate::domain::identity::valid_id;
use crate::domain::parse::invalid;
use crate::error::{AppError, AppResult, Code};
use crate::state::AppState;

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ConnectionsQuery {
    /// Only this company's connections.
    #[param(value_type = Option<String>, example = "acme", pattern = r"^[A-Za-z0-9_.@-]{1,64}$")]
    company_id: Option<CompanyId>,
    /// Only this user's connections.
    #[param(example = "u-42", pattern = r"^[A-Za-z0-9_.@-]{1,64}$")]
    user_id: Option<String>,
    /// Rows per page, 1-1000 (default 1000).
    #[param(example = 100, minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// The `nextCursor` of the previous page (opaque); absent for the first page.
    #[param(
        example = "5b22737769746368796172642d61222c226b335839714171305032664c6b55316141414142225d"
    )]
    cursor: Option<String>,
}

/// Rows per page of the connection listing: the default and the most.
pub const MAX_PAGE: usize = 1000;

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct CompanyQuery {
    /// The user's company (required: a kick never crosses companies).
    #[param(value_type = String, example = "acme", pattern = r"^[A-Za-z0-9_.@-]{1,64}$")]
    company_id: CompanyId,
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// Only this company's figures.
    #[param(value_type = Option<String>, example = "acme", pattern = r"^[A-Za-z0-9_.@-]{1,64}$")]
    company_id: Option<CompanyId>,
}

/// `GET /api/v1/admin/connections`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionsReply {
    pub connections: Vec<Connection>,
    /// The `cursor` of the next page, or null on the last page.
    #[schema(example = json!(null))]
    pub next_cursor: Option<String>,
    /// Known nodes that did not answer in time: their connections are
    /// missing from this page (later pages may hold rows of theirs).
    #[schema(example = json!([]))]
    pub incomplete: Vec<String>,
}

/// `DELETE /api/v1/admin/users/{userId}/connections`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KickReply {
    /// Sessions disconnected (each got `session:revoked` first).
    #[schema(example = 2)]
    pub disconnected: u64,
    /// Known nodes that did not answer in time: the user's sessions there may remain.
    #[schema(example = json!([]))]
    pub incomplete: Vec<String>,
}

/// `GET /api/v1/admin/stats`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatsReply {
    /// Open connections on the nodes that answered.
    #[schema(example = 120)]
    pub connections: u64,
    pub nodes: Vec<NodeStats>,
    pub companies: Vec<CompanyStats>,
    /// Durable events waiting for offline devices (an upper bound; null
    /// when the database did not answer).
    #[schema(example = 3)]
    pub queued_durable_events: Option<u64>,
    #[schema(example = json!([]))]
    pub incomplete: Vec<String>,
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> AppResult<T> {
    q.map(|Query(q)| q)
        .map_err(|e| AppError::new(Code::ValidationFailed, e.body_text()))
}

/// The opaque cursor: the `(node, socketId)` of a page's last row.
pub fn encode_cursor(p: &Position) -> String {
    hex::encode(serde_json::json!([p.node, p.socket_id]).to_string())
}

pub fn decode_cursor(raw: &str) -> AppResult<Position> {
    let bad = || invalid("cursor", "`cursor` is not a cursor this API returned");
    let bytes = hex::decode(raw).map_err(|_| bad())?;
    let (node, socket_id): (String, String) = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    Ok(Position { node, socket_id })
}

fn page(q: &ConnectionsQuery) -> AppResult<Page> {
    let limit = match q.limit {
        None => MAX_PAGE,
        Some(n) if (1..=MAX_PAGE as i64).contains(&n) => n as usize,
        Some(_) => {
            return Err(invalid("limit", format!("`limit` must be 1-{MAX_PAGE}")));
        }
    };
    Ok(Page {
        after: q.cursor.as_deref().map(decode_cursor).transpose()?,
        limit,
    })
}

fn user_id(raw: &str, field: &str) -> AppResult<String> {
    if valid_id(raw) {
        Ok(raw.to_string())
    } else {
        Err(AppError::new(
            Code::ValidationFailed,
            format!("`{field}` must be 1-64 characters of letters, digits, _ . @ -"),
        )
        .with_details(serde_json::json!({ "field": field })))
    }
}

/// Every connection on every node (filtered by company and user), a page
/// at a time in `(node, socketId)` order: follow `nextCursor` until it is null.
#[utoipa::path(
    get, path = "/api/v1/admin/connections", operation_id = "adminConnections", tag = "admin",
    params(ConnectionsQuery),
    security(("adminKey" = [])),
    responses(
        (status = 200, description = "A page of the connections on every node that answered", body = ConnectionsReply),
        (status = 400, description = "Bad query (details name the field: `limit`, `cursor`, ...)", body = ErrorReply),
        (status = 401, description = "No valid admin API key", body = ErrorReply),
        (status = 429, description = "Too many failed key attempts", body = ErrorReply),
    )
)]
pub async fn connections(
    _: AdminKey,
    State(state): State<AppState>,
    q: Result<Query<ConnectionsQuery>, QueryRejection>,
) -> AppResult<Json<ConnectionsReply>> {
    let q = query(q)?;
    let page = page(&q)?;
    let filter = Filter {
        company_id: q.company_id.map(|c| c.as_str().to_string()),
        user_id: q
            .user_id
            .as_deref()
            .map(|u| user_id(u, "userId"))
            .transpose()?,
    };
    let listing = state.admin.connections(&filter, &page).await;
    Ok(Json(ConnectionsReply {
        connections: listing.connections,
        next_cursor: listing.next.as_ref().map(encode_cursor),
        incomplete: listing.incomplete,
    }))
}

/// Disconnects every session of the user on every node (they get
/// `session:revoked` first), and nobody else's.
#[utoipa::path(
    delete, path = "/api/v1/admin/users/{userId}/connections", operation_id = "adminKickUser", tag = "admin",
    params(("userId" = String, Path, description = "The user whose sessions end", example = "u-42", pattern = r"^[A-Za-z0-9_.@-]{1,64}$"), CompanyQuery),
    security(("adminKey" = [])),
    responses(
        (status = 200, description = "Sessions disconnected on every node that answered", body = KickReply),
        (status = 400, description = "Bad user or company id", body = ErrorReply),
        (status = 401, description = "No valid admin API key", body = ErrorReply),
        (status = 429, description = "Too many failed key attempts", body = ErrorReply),
    )
)]
pub async fn kick(
    _: AdminKey,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    q: Result<Query<CompanyQuery>, QueryRejection>,
) -> AppResult<Json<KickReply>> {
    let Path(raw) = path.map_err(|e| AppError::new(Code::ValidationFailed, e.body_text()))?;
    let user = user_id(&raw, "userId")?;
    let q = query(q)?;
    let (disconnected, incomplete) = state.admin.kick(q.company_id.as_str(), &user).await;
    Ok(Json(KickReply {
        disconnected,
        incomplete,
    }))
}

/// Per-node and per-company figures, and the offline-queue backlog.
#[utoipa::path(
    get, path = "/api/v1/admin/stats", operation_id = "adminStats", tag = "admin",
    params(StatsQuery),
    security(("adminKey" = [])),
    responses(
        (status = 200, description = "Figures of every node that answered", body = StatsReply),
        (status = 400, description = "Bad query", body = ErrorReply),
        (status = 401, description = "No valid admin API key", body = ErrorReply),
        (status = 429, description = "Too many failed key attempts", body = ErrorReply),
    )
)]
pub async fn stats(
    _: AdminKey,
    State(state): State<AppState>,
    q: Result<Query<StatsQuery>, QueryRejection>,
) -> AppResult<Json<StatsReply>> {
    let q = query(q)?;
    let filter = Filter {
        company_id: q.company_id.map(|c| c.as_str().to_string()),
        user_id: None,
    };
    let s = state.admin.stats(&filter).await;
    Ok(Json(StatsReply {
        connections: s.connections,
        nodes: s.nodes,
        companies: s.companies,
        queued_durable_events: s.queued_durable_events,
        incomplete: s.incomplete,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(limit: Option<i64>, cursor: Option<&str>) -> ConnectionsQuery {
        ConnectionsQuery {
            company_id: None,
            user_id: None,
            limit,
            cursor: cursor.map(str::to_string),
        }
    }

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let p = Position {
            node: "switchyard-a".into(),
            socket_id: "k3X9qAq0P2fLkU1aAAAB".into(),
        };
        let c = encode_cursor(&p);
        assert_eq!(decode_cursor(&c).expect("round trip"), p);
        let (one, object) = (hex::encode("[\"a\"]"), hex::encode("{}"));
        for bad in ["zz", "", "00", one.as_str(), object.as_str()] {
            let e = decode_cursor(bad).expect_err(bad);
            assert_eq!(e.code, Code::ValidationFailed);
            assert!(e.message.contains("cursor"), "{}", e.message);
        }
    }

    #[test]
    fn pages_default_to_the_most_and_refuse_out_of_range_limits() {
        assert_eq!(page(&q(None, None)).expect("default").limit, MAX_PAGE);
        assert_eq!(page(&q(Some(5), None)).expect("5").limit, 5);
        for bad in [0, -1, MAX_PAGE as i64 + 1] {
            let e = page(&q(Some(bad), None)).expect_err("out of range");
            assert!(e.message.contains("limit"), "{}", e.message);
        }
        assert!(page(&q(None, Some("nope"))).is_err());
    }
}
