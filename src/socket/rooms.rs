//! `subscribe`, `unsubscribe`, `rooms`: joining rooms within one's company.
//!
//! The decision of what a socket may join is the pure [`plan_subscribe`];
//! the handlers only parse, call it and apply the result.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::{Value, json};
use socketioxide::adapter::Adapter;

use super::{Ctx, replay};
use crate::catalog::Catalog;
use crate::domain::room::{RoomKind, split_internal};
use crate::domain::{Identity, RoomName};
use crate::error::{AppError, AppResult, Code};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Denial {
    pub room: String,
    pub code: Code,
    pub message: String,
}

impl Denial {
    pub fn new(room: &str, e: AppError) -> Self {
        Self {
            room: room.to_string(),
            code: e.code,
            message: e.message,
        }
    }
}

/// The rooms a client named: `{ room }` or `{ rooms: [...] }`.
pub fn requested_rooms(data: &Value) -> AppResult<Vec<String>> {
    let bad = || {
        AppError::new(
            Code::ValidationFailed,
            "expected { room: string } or { rooms: [string, ...] }",
        )
    };
    if let Some(room) = data.get("room") {
        return room.as_str().map(|r| vec![r.to_string()]).ok_or_else(bad);
    }
    let rooms = data
        .get("rooms")
        .and_then(Value::as_array)
        .ok_or_else(bad)?;
    if rooms.len() > 256 {
        return Err(AppError::new(
            Code::ValidationFailed,
            "at most 256 rooms per request",
        ));
    }
    rooms
        .iter()
        .map(|r| r.as_str().map(str::to_string).ok_or_else(bad))
        .collect()
}

pub fn automatic_rooms(identity: &Identity) -> [RoomName; 3] {
    [
        RoomName::company(),
        RoomName::user(&identity.user_id),
        RoomName::role(identity.role),
    ]
}

/// Whether `identity` may be in (subscribe to, or publish into) `room`.
pub fn authorize(identity: &Identity, catalog: &Catalog, room: &RoomName) -> AppResult<()> {
    let forbidden = |why: String| Err(AppError::new(Code::Forbidden, why));
    match room.kind() {
        RoomKind::Company => Ok(()),
        RoomKind::User(id) if id == identity.user_id || identity.is_admin() => Ok(()),
        RoomKind::User(_) => forbidden("another user's room is private to that user".into()),
        RoomKind::Role(r) if r == identity.role.as_str() || identity.is_admin() => Ok(()),
        RoomKind::Role(_) => forbidden("another role's room is reserved to that role".into()),
        RoomKind::Entity("document") => {
            let doc_type = room.as_str().split(':').nth(1).unwrap_or_default();
            match catalog.document(doc_type) {
                Some(spec) if !spec.read.contains(identity.role) => {
                    forbidden(format!("your role may not read `{doc_type}` documents"))
                }
                _ => Ok(()),
            }
        }
        RoomKind::Entity(kind) if catalog.may_join_kind(kind, identity.role) => Ok(()),
        RoomKind::Entity(kind) => {
            forbidden(format!("`{kind}` rooms are restricted to other roles"))
        }
    }
}

/// Decides which requested rooms to join. `current` holds the logical names
/// the socket is already in beyond its automatic rooms.
pub fn plan_subscribe(
    identity: &Identity,
    catalog: &Catalog,
    requested: &[String],
    current: &BTreeSet<String>,
    max_subscriptions: usize,
) -> (Vec<RoomName>, Vec<Denial>) {
    let automatic = automatic_rooms(identity);
    let mut count = current.len();
    let mut join = Vec::new();
    let mut denied = Vec::new();
    for raw in requested {
        let room =
            match RoomName::parse(raw).and_then(|r| authorize(identity, catalog, &r).map(|_| r)) {
                Ok(room) => room,
                Err(e) => {
                    denied.push(Denial::new(raw, e));
                    continue;
                }
            };
        let already =
            automatic.contains(&room) || current.contains(room.as_str()) || join.contains(&room);
        if !already {
            if count >= max_subscriptions {
                denied.push(Denial::new(
                    raw,
                    AppError::new(
                        Code::LimitExceeded,
                        format!("at most {max_subscriptions} subscriptions per connection"),
                    ),
                ));
                continue;
            }
            count += 1;
        }
        if !join.contains(&room) {
            join.push(room);
        }
    }
    (join, denied)
}

/// Logical names of the rooms this socket is in (its company's only).
pub fn joined<A: Adapter>(ctx: &Ctx<A>) -> Vec<String> {
    let company = ctx.session.identity().company_id;
    ctx.socket
        .rooms()
        .iter()
        .filter_map(|r| match split_internal(r) {
            Some((c, logical)) if c == company => Some(logical.to_string()),
            _ => None,
        })
        .collect()
}

pub async fn subscribe<A: Adapter>(ctx: &Ctx<A>, data: Value) -> AppResult<Value> {
    let requested = requested_rooms(&data)?;
    let offsets = replay::requested_offsets(&data)?;
    let identity = ctx.session.identity();
    let automatic = automatic_rooms(&identity);
    let current: BTreeSet<String> = joined(ctx)
        .into_iter()
        .filter(|r| !automatic.iter().any(|a| a.as_str() == r))
        .collect();
    let (join, denied) = plan_subscribe(
        &identity,
        &ctx.state.catalog,
        &requested,
        &current,
        ctx.state.config.max_subscriptions,
    );
    ctx.socket.join(
        join.iter()
            .map(|r| r.internal(&identity.company_id))
            .collect::<Vec<_>>(),
    );
    // Durable feeds: resume after the given offsets (replaying first), or
    // go live from the head for a room without an offset.
    let mut replayed = 0;
    for room in &join {
        let offset = offsets.get(room.as_str()).copied();
        if offset.is_none() && ctx.session.member(room.as_str()).is_some() {
            continue; // already live in this room
        }
        let member = replay::attach(ctx, room, offset);
        replayed += ctx.state.durable.catch_up(&member, true).await;
    }
    let sid = ctx.socket.id.to_string();
    crate::presence::rooms_changed(&ctx.state, &sid, &join, &[]).await;
    let mut ack = json!({
        "ok": true,
        "rooms": join.iter().map(RoomName::as_str).collect::<Vec<_>>(),
        "denied": denied,
    });
    crate::metrics::replayed(replayed as u64);
    if !offsets.is_empty() {
        ack["replayed"] = json!(replayed);
    }
    Ok(ack)
}

pub async fn unsubscribe<A: Adapter>(ctx: &Ctx<A>, data: Value) -> AppResult<Value> {
    let requested = requested_rooms(&data)?;
    let identity = ctx.session.identity();
    let automatic = automatic_rooms(&identity);
    let mut left = Vec::new();
    let mut gone = Vec::new();
    let mut denied = Vec::new();
    for raw in &requested {
        match RoomName::parse(raw) {
            Err(e) => denied.push(Denial::new(raw, e)),
            Ok(room) if automatic.contains(&room) => denied.push(Denial::new(
                raw,
                AppError::new(Code::Forbidden, "automatic rooms cannot be left"),
            )),
            Ok(room) => {
                ctx.socket.leave(room.internal(&identity.company_id));
                replay::detach(ctx, &room);
                left.push(room.as_str().to_string());
                gone.push(room);
            }
        }
    }
    let sid = ctx.socket.id.to_string();
    crate::presence::rooms_changed(&ctx.state, &sid, &[], &gone).await;
    Ok(json!({ "ok": true, "rooms": left, "denied": denied }))
}

pub fn list<A: Adapter>(ctx: &Ctx<A>) -> Value {
    let mut rooms = joined(ctx);
    rooms.sort();
    json!({ "ok": true, "rooms": rooms })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Role;

    fn id(role: Role) -> Identity {
        Identity {
            user_id: "u1".into(),
            company_id: "acme".into(),
            role,
            permissions: vec![],
            expires_at: 0,
        }
    }

    fn names(v: &[RoomName]) -> Vec<&str> {
        v.iter().map(RoomName::as_str).collect()
    }

    #[test]
    fn own_rooms_and_entities_are_allowed_others_are_not() {
        let c = Catalog::load(None).unwrap();
        let req: Vec<String> = [
            "order:1",
            "user:u1",
            "user:u2",
            "role:operator",
            "role:admin",
            "quality:line-1",
            "Bad Name",
        ]
        .map(String::from)
        .to_vec();
        let (join, denied) = plan_subscribe(&id(Role::Operator), &c, &req, &BTreeSet::new(), 50);
        assert_eq!(names(&join), vec!["order:1", "user:u1", "role:operator"]);
        let codes: Vec<(&str, Code)> = denied.iter().map(|d| (d.room.as_str(), d.code)).collect();
        assert_eq!(
            codes,
            vec![
                ("user:u2", Code::Forbidden),
                ("role:admin", Code::Forbidden),
                ("quality:line-1", Code::Forbidden),
                ("Bad Name", Code::InvalidRoom)
            ]
        );
    }

    #[test]
    fn admins_may_join_any_user_or_role_room() {
        let c = Catalog::load(None).unwrap();
        let req: Vec<String> = ["user:u2", "role:operator", "quality:x"]
            .map(String::from)
            .to_vec();
        let (join, denied) = plan_subscribe(&id(Role::Admin), &c, &req, &BTreeSet::new(), 50);
        assert_eq!(join.len(), 3);
        assert!(denied.is_empty());
    }

    #[test]
    fn limit_counts_existing_subscriptions_but_not_automatic_or_repeated_rooms() {
        let c = Catalog::load(None).unwrap();
        let current: BTreeSet<String> = ["order:1".to_string()].into();
        let req: Vec<String> = ["order:1", "company", "order:2", "order:2", "order:3"]
            .map(String::from)
            .to_vec();
        let (join, denied) = plan_subscribe(&id(Role::Operator), &c, &req, &current, 2);
        assert_eq!(names(&join), vec!["order:1", "company", "order:2"]);
        assert_eq!(denied.len(), 1);
        assert_eq!(
            (denied[0].room.as_str(), denied[0].code),
            ("order:3", Code::LimitExceeded)
        );
    }

    #[test]
    fn request_shapes() {
        assert_eq!(requested_rooms(&json!({"room": "a"})).unwrap(), vec!["a"]);
        assert_eq!(
            requested_rooms(&json!({"rooms": ["a", "b"]}))
                .unwrap()
                .len(),
            2
        );
        for bad in [
            json!({}),
            json!({"room": 1}),
            json!({"rooms": "a"}),
            json!({"rooms": [1]}),
            json!([1]),
        ] {
            assert_eq!(
                requested_rooms(&bad).unwrap_err().code,
                Code::ValidationFailed,
                "{bad}"
            );
        }
    }
}
