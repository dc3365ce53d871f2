//! Who may be in which room, free of I/O: the automatic rooms of an
//! identity, the permission rule ([`authorize`]), the decision of what a
//! `subscribe` joins ([`plan_subscribe`]) and what `auth.offsets` resumes
//! ([`resume`]). Every transport applies these same rules.

pub mod resume;

use std::collections::BTreeSet;

use serde::Serialize;

use crate::catalog::Catalog;
use crate::domain::room::RoomKind;
use crate::domain::{Identity, RoomName};
use crate::error::{AppError, AppResult, Code};

/// A room a request named that was not joined, and why.
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
/// the session is already in beyond its automatic rooms.
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
}
